//! Response encoding: length prefix, response header (v0 or v1, as the API and version
//! dictate) and body, in one buffer ready for the socket.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::Encodable;

use crate::frame::LENGTH_PREFIX_BYTES;

/// Encoding failed: a field held a value its version cannot express. This is a broker bug,
/// never a client's fault, so the caller logs it and closes the connection.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("failed to encode message: {0}")]
pub struct EncodeError(pub String);

/// Room for headers and per-partition fields around the record data.
const RESPONSE_OVERHEAD_BYTES: usize = 4096;

/// A capacity that fits the encoded response, so a fetch response carrying megabytes of
/// records is written into one allocation instead of growing (and copying) by doubling.
fn size_hint_bytes(body: &ResponseKind) -> usize {
    let records_bytes: usize = match body {
        ResponseKind::Fetch(fetch) => fetch
            .responses
            .iter()
            .flat_map(|t| &t.partitions)
            .filter_map(|p| p.records.as_ref())
            .map(|r| r.len())
            .sum(),
        _ => 0,
    };
    records_bytes + RESPONSE_OVERHEAD_BYTES
}

/// Encodes a complete response frame: `[length][header][body]`.
pub fn encode_response(
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<Bytes, EncodeError> {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = api_key.response_header_version(api_version);
    let mut buf = BytesMut::with_capacity(size_hint_bytes(body));
    buf.put_i32(0); // patched below, once the size is known
    header
        .encode(&mut buf, header_version)
        .map_err(|err| EncodeError(err.to_string()))?;
    body.encode(&mut buf, api_version)
        .map_err(|err| EncodeError(err.to_string()))?;
    let size_bytes = i32::try_from(buf.len() - LENGTH_PREFIX_BYTES)
        .map_err(|_| EncodeError("response larger than 2 GiB".to_string()))?;
    buf[..LENGTH_PREFIX_BYTES].copy_from_slice(&size_bytes.to_be_bytes());
    Ok(buf.freeze())
}

/// Decoding a response failed (client side: the CLI's admin client).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed {api_key:?} v{api_version} response: {reason}")]
pub struct DecodeError {
    pub api_key: ApiKey,
    pub api_version: i16,
    pub reason: String,
}

/// Decodes a response frame (without its length prefix) to a request of `api_key` at
/// `api_version`: the header (v0 or v1 as the API and version dictate) and the body.
pub fn decode_response(
    api_key: ApiKey,
    api_version: i16,
    mut frame: Bytes,
) -> Result<(ResponseHeader, ResponseKind), DecodeError> {
    use kafka_protocol::protocol::Decodable;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    let malformed = |reason: String| DecodeError {
        api_key,
        api_version,
        reason,
    };
    let header_version = api_key.response_header_version(api_version);
    match catch_unwind(AssertUnwindSafe(|| {
        let header =
            ResponseHeader::decode(&mut frame, header_version).map_err(|e| e.to_string())?;
        let body =
            ResponseKind::decode(api_key, &mut frame, api_version).map_err(|e| e.to_string())?;
        Ok::<_, String>((header, body))
    })) {
        Ok(Ok(decoded)) => Ok(decoded),
        Ok(Err(reason)) => Err(malformed(reason)),
        Err(_) => Err(malformed("decoder panicked".to_string())),
    }
}

#[cfg(test)]
mod decode_tests {
    use super::*;
    use kafka_protocol::messages::list_groups_response::ListedGroup;
    use kafka_protocol::messages::{GroupId, ListGroupsResponse};
    use kafka_protocol::protocol::StrBytes;

    #[test]
    fn decode_reverses_encode_at_every_version() {
        let body = ResponseKind::ListGroups(ListGroupsResponse::default().with_groups(vec![
            ListedGroup::default()
                .with_group_id(GroupId(StrBytes::from_static_str("g")))
                .with_protocol_type(StrBytes::from_static_str("consumer")),
        ]));
        let versions = ApiKey::ListGroups.valid_versions();
        for version in versions.min..=versions.max {
            let frame = encode_response(ApiKey::ListGroups, version, 42, &body).unwrap();
            let (header, decoded) = decode_response(
                ApiKey::ListGroups,
                version,
                frame.slice(LENGTH_PREFIX_BYTES..),
            )
            .unwrap();
            assert_eq!(header.correlation_id, 42);
            assert_eq!(decoded, body, "v{version}");
        }
        let garbage = Bytes::from_static(&[0, 0, 0, 1, 0xff]);
        assert!(decode_response(ApiKey::ListGroups, 4, garbage).is_err());
    }
}
