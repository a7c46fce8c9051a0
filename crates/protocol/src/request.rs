//! Request decoding: the header first (so the broker can check the API and version it supports
//! before touching the body), then the body into a typed [`RequestKind`].
//!
//! Every decode runs under `catch_unwind`: the generated decoders come from a third-party crate,
//! and a malformed request must cost the sender its connection, never the broker its process.

use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::Decodable;

/// Bytes every request starts with: api key (2), api version (2), correlation id (4).
pub const REQUEST_PREFIX_BYTES: usize = 8;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("request of {size_bytes} bytes is too short to hold a request header")]
    TooShort { size_bytes: usize },
    #[error("unknown api key {api_key} (correlation id {correlation_id})")]
    UnknownApiKey { api_key: i16, correlation_id: i32 },
    #[error("malformed request header for {api_key:?} v{api_version}: {reason}")]
    MalformedHeader {
        api_key: ApiKey,
        api_version: i16,
        correlation_id: i32,
        reason: String,
    },
    #[error("malformed {api_key:?} v{api_version} request body: {reason}")]
    MalformedBody {
        api_key: ApiKey,
        api_version: i16,
        correlation_id: i32,
        reason: String,
    },
}

/// The fixed-position fields every request header version shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestPrefix {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
}

/// Reads api key, version and correlation id without decoding anything else.
pub fn peek_prefix(frame: &[u8]) -> Result<RequestPrefix, RequestError> {
    let Some(prefix) = frame.get(..REQUEST_PREFIX_BYTES) else {
        return Err(RequestError::TooShort {
            size_bytes: frame.len(),
        });
    };
    Ok(RequestPrefix {
        api_key: i16::from_be_bytes([prefix[0], prefix[1]]),
        api_version: i16::from_be_bytes([prefix[2], prefix[3]]),
        correlation_id: i32::from_be_bytes([prefix[4], prefix[5], prefix[6], prefix[7]]),
    })
}

/// A request whose header is decoded and whose body is still bytes.
#[derive(Debug, Clone)]
pub struct RequestFrame {
    pub api_key: ApiKey,
    pub header: RequestHeader,
    pub body: Bytes,
}

/// Decodes the request header (v0, v1 or v2, as the API and version dictate).
pub fn decode_header(frame: Bytes) -> Result<RequestFrame, RequestError> {
    let prefix = peek_prefix(&frame)?;
    let api_key = ApiKey::try_from(prefix.api_key).map_err(|()| RequestError::UnknownApiKey {
        api_key: prefix.api_key,
        correlation_id: prefix.correlation_id,
    })?;
    let header_version = api_key.request_header_version(prefix.api_version);
    let mut buf = frame;
    let decoded = catch_unwind(AssertUnwindSafe(|| {
        RequestHeader::decode(&mut buf, header_version)
    }));
    let malformed = |reason: String| RequestError::MalformedHeader {
        api_key,
        api_version: prefix.api_version,
        correlation_id: prefix.correlation_id,
        reason,
    };
    match decoded {
        Ok(Ok(header)) => Ok(RequestFrame {
            api_key,
            header,
            body: buf,
        }),
        Ok(Err(err)) => Err(malformed(err.to_string())),
        Err(_) => Err(malformed("decoder panicked".to_string())),
    }
}

/// Decodes the body of a request whose header was decoded by [`decode_header`].
///
/// The caller must have checked that the version is one it supports; versions outside the
/// generated range are rejected here too.
pub fn decode_body(frame: &RequestFrame) -> Result<RequestKind, RequestError> {
    let api_version = frame.header.request_api_version;
    let malformed = |reason: String| RequestError::MalformedBody {
        api_key: frame.api_key,
        api_version,
        correlation_id: frame.header.correlation_id,
        reason,
    };
    let known = frame.api_key.valid_versions();
    if api_version < known.min || api_version > known.max {
        return Err(malformed("version outside the known range".to_string()));
    }
    let mut body = frame.body.clone();
    match catch_unwind(AssertUnwindSafe(|| {
        RequestKind::decode(frame.api_key, &mut body, api_version)
    })) {
        Ok(Ok(request)) => Ok(request),
        Ok(Err(err)) => Err(malformed(err.to_string())),
        Err(_) => Err(malformed("decoder panicked".to_string())),
    }
}

/// Test and tooling helper: encodes a request (header and body, no length prefix).
pub fn encode_request(
    header: &RequestHeader,
    body: &RequestKind,
) -> Result<bytes::BytesMut, crate::response::EncodeError> {
    use crate::response::EncodeError;
    use kafka_protocol::protocol::Encodable;
    let api_key = ApiKey::try_from(header.request_api_key)
        .map_err(|()| EncodeError("unknown api key".to_string()))?;
    let mut buf = bytes::BytesMut::new();
    header
        .encode(
            &mut buf,
            api_key.request_header_version(header.request_api_version),
        )
        .map_err(|err| EncodeError(err.to_string()))?;
    body.encode(&mut buf, header.request_api_version)
        .map_err(|err| EncodeError(err.to_string()))?;
    Ok(buf)
}
