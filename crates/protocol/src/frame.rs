//! Kafka framing: every request and response is a 4-byte big-endian length followed by that
//! many bytes.
//!
//! [`decode_frame`] follows the mini-redis convention: `Ok(None)` means "need more bytes",
//! `Ok(Some(frame))` hands out one complete frame and consumes it from the buffer, and an error
//! means the stream is unusable and the connection must be closed (Kafka closes the connection
//! on a negative or oversized size, see `NetworkReceive` / `InvalidReceiveException`).

use bytes::{Buf, Bytes, BytesMut};

/// Size of the length prefix in bytes.
pub const LENGTH_PREFIX_BYTES: usize = 4;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame size {size_bytes} is negative")]
    NegativeSize { size_bytes: i32 },
    #[error("frame size {size_bytes} exceeds the limit of {size_bytes_max} bytes (socket.request.max.bytes)")]
    TooLarge {
        size_bytes: usize,
        size_bytes_max: usize,
    },
}

/// Reads the declared size of the next frame without consuming anything, once 4 bytes are there.
pub fn peek_frame_size(buf: &[u8], size_bytes_max: usize) -> Result<Option<usize>, FrameError> {
    let Some(prefix) = buf.get(..LENGTH_PREFIX_BYTES) else {
        return Ok(None);
    };
    let size_bytes = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    if size_bytes < 0 {
        return Err(FrameError::NegativeSize { size_bytes });
    }
    let size_bytes = size_bytes as usize;
    if size_bytes > size_bytes_max {
        return Err(FrameError::TooLarge {
            size_bytes,
            size_bytes_max,
        });
    }
    Ok(Some(size_bytes))
}

/// Splits one complete frame (without its length prefix) off the front of `buf`.
pub fn decode_frame(
    buf: &mut BytesMut,
    size_bytes_max: usize,
) -> Result<Option<Bytes>, FrameError> {
    let Some(size_bytes) = peek_frame_size(buf, size_bytes_max)? else {
        return Ok(None);
    };
    if buf.len() < LENGTH_PREFIX_BYTES + size_bytes {
        // Reserve what the rest of this frame needs so the next reads fill it without regrowing.
        buf.reserve(LENGTH_PREFIX_BYTES + size_bytes - buf.len());
        return Ok(None);
    }
    buf.advance(LENGTH_PREFIX_BYTES);
    Ok(Some(buf.split_to(size_bytes).freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn framed(payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as i32).to_be_bytes().to_vec();
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn needs_more_bytes_until_complete() {
        let wire = framed(b"hello");
        for cut in 0..wire.len() {
            let mut buf = BytesMut::from(&wire[..cut]);
            assert_eq!(decode_frame(&mut buf, 100).unwrap(), None, "cut at {cut}");
        }
        let mut buf = BytesMut::from(&wire[..]);
        assert_eq!(decode_frame(&mut buf, 100).unwrap().unwrap(), &b"hello"[..]);
        assert!(buf.is_empty());
    }

    #[test]
    fn rejects_negative_and_oversized() {
        let mut buf = BytesMut::from(&(-1i32).to_be_bytes()[..]);
        assert_eq!(
            decode_frame(&mut buf, 100),
            Err(FrameError::NegativeSize { size_bytes: -1 })
        );
        let mut buf = BytesMut::from(&101i32.to_be_bytes()[..]);
        assert!(matches!(
            decode_frame(&mut buf, 100),
            Err(FrameError::TooLarge { .. })
        ));
        let mut buf = BytesMut::from(&framed(&[7u8; 100])[..]);
        assert_eq!(decode_frame(&mut buf, 100).unwrap().unwrap().len(), 100);
    }

    proptest! {
        /// Any sequence of frames, delivered in arbitrary chunks, comes out whole and in order.
        #[test]
        fn frames_survive_arbitrary_chunking(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20),
            chunk in 1usize..64,
        ) {
            let wire: Vec<u8> = payloads.iter().flat_map(|p| framed(p)).collect();
            let mut buf = BytesMut::new();
            let mut out = Vec::new();
            for piece in wire.chunks(chunk) {
                buf.extend_from_slice(piece);
                while let Some(frame) = decode_frame(&mut buf, 1000).unwrap() {
                    out.push(frame.to_vec());
                }
            }
            prop_assert_eq!(out, payloads);
            prop_assert!(buf.is_empty());
        }

        /// Garbage never panics: it yields frames, asks for more, or errors.
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = decode_frame(&mut buf, 64) {}
        }
    }
}
