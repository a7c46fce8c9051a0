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
