//! Arbitrary bytes through the request path of the broker's connection loop:
//! `frame::decode_frame` (1 MiB limit) until it needs more bytes or errors, and for every frame,
//! plus the raw input taken as one frame, `request::decode_header` then `request::decode_body`.
//!
//! Must never panic, abort or run out of memory. The decoders contain panics of the generated
//! kafka-protocol code with `catch_unwind` (that is production behaviour: the sender loses its
//! connection), so panics inside them are tolerated; see `fjord_fuzz::expect_caught`.
#![no_main]

use bytes::{Bytes, BytesMut};
use fjord_protocol::frame::{self, LENGTH_PREFIX_BYTES};
use fjord_protocol::request::{self, RequestError};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static A: fjord_protocol::alloc::HostileSizeGuard = fjord_protocol::alloc::HostileSizeGuard;

/// Like a broker with `socket.request.max.bytes` = 1 MiB.
const FRAME_BYTES_MAX: usize = 1 << 20;

fn decode_request(frame: Bytes) {
    let prefix = request::peek_prefix(&frame);
    let header = fjord_fuzz::expect_caught("request::decode_header", || request::decode_header(frame.clone()));
    match (&prefix, &header) {
        (Err(_), Ok(_)) => panic!("decode_header accepted a frame peek_prefix rejected"),
        (Ok(p), Ok(h)) => {
            assert_eq!(p.api_key, h.header.request_api_key);
            assert_eq!(p.api_version, h.header.request_api_version);
            assert_eq!(p.correlation_id, h.header.correlation_id);
            assert!(h.body.len() <= frame.len() - request::REQUEST_PREFIX_BYTES);
        }
        (_, Err(RequestError::TooShort { size_bytes })) => assert_eq!(*size_bytes, frame.len()),
        _ => {}
    }
    if let Ok(request_frame) = header {
        let _ = fjord_fuzz::expect_caught("request::decode_body", || request::decode_body(&request_frame));
    }
}

fuzz_target!(init: fjord_fuzz::install_panic_hook(), |data: &[u8]| {
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.len();
        let declared = frame::peek_frame_size(&buf, FRAME_BYTES_MAX);
        match frame::decode_frame(&mut buf, FRAME_BYTES_MAX) {
            Ok(Some(f)) => {
                let size = declared.expect("peek agreed").expect("complete frame has a size");
                assert_eq!(f.len(), size);
                assert_eq!(buf.len(), before - LENGTH_PREFIX_BYTES - size);
                decode_request(f);
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "decode_frame consumed bytes without a frame");
                break;
            }
            Err(e) => {
                assert_eq!(declared, Err(e));
                break;
            }
        }
    }
    decode_request(Bytes::copy_from_slice(data));
});
