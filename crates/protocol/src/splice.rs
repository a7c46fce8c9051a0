//! Responses whose record data is written from elsewhere (a file range, by `sendfile`)
//! instead of being copied into the response buffer.
//!
//! The generated encoder only knows byte fields it holds. So the broker puts a small
//! [`placeholder`] where each record set goes, the response is encoded as usual (it is small:
//! headers, offsets, names), and [`encode_response_with_external`] then cuts the encoding at
//! each placeholder, rewrites the length prefix in front of it to the real record set's length
//! and fixes the frame size. The caller writes the parts in order, filling each
//! [`FramePart::External`] with exactly the length it declared.
//!
//! Placeholders are 16 bytes: a per-process random 12-byte tag and a 4-byte index. The split
//! checks that it finds exactly the placeholders `0..n`, in order, each behind a length prefix
//! of 16, and no stray tag; otherwise (a client-chosen topic id that happens to contain the
//! tag, which needs the tag, a 96-bit secret) it reports [`SpliceError::Placeholders`] and the
//! caller falls back to putting the bytes in the response.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseKind};

use crate::frame::LENGTH_PREFIX_BYTES;
use crate::response::{encode_response, EncodeError};

const TAG_BYTES: usize = 12;
/// Length of a placeholder: tag plus big-endian index.
pub const PLACEHOLDER_BYTES: usize = TAG_BYTES + 4;

/// One piece of an encoded response frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FramePart {
    /// Bytes to write as they are.
    Inline(Bytes),
    /// The caller writes external record set `index` here, exactly the length it declared.
    External(usize),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpliceError {
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The encoding did not show exactly the expected placeholders; encode the records inline.
    #[error("placeholders not found as expected in the encoded response")]
    Placeholders,
    #[error("response larger than 2 GiB")]
    TooLarge,
}

fn tag() -> &'static [u8; TAG_BYTES] {
    static TAG: OnceLock<[u8; TAG_BYTES]> = OnceLock::new();
    TAG.get_or_init(|| {
        // `RandomState` is seeded from the OS's randomness: enough to keep the tag
        // unpredictable for clients without another dependency.
        let mut tag = [0u8; TAG_BYTES];
        let high = RandomState::new().build_hasher().finish().to_le_bytes();
        let low = RandomState::new().build_hasher().finish().to_le_bytes();
        tag[..8].copy_from_slice(&high);
        tag[8..].copy_from_slice(&low[..TAG_BYTES - 8]);
        tag
    })
}

/// The placeholder for external record set `index`, to put in a record field.
pub fn placeholder(index: usize) -> Bytes {
    let mut buf = BytesMut::with_capacity(PLACEHOLDER_BYTES);
    buf.put_slice(tag());
    buf.put_u32(u32::try_from(index).unwrap_or(u32::MAX));
    buf.freeze()
}

/// Which external record set `field` stands for, if it is a placeholder.
pub fn placeholder_index(field: &[u8]) -> Option<usize> {
    if field.len() != PLACEHOLDER_BYTES || &field[..TAG_BYTES] != tag() {
        return None;
    }
    let index = u32::from_be_bytes(field[TAG_BYTES..].try_into().ok()?);
    usize::try_from(index).ok()
}

/// Encodes a response whose record fields hold placeholders `0..external_sizes.len()` and
/// returns the frame as parts; `External(i)` stands for `external_sizes[i]` bytes.
pub fn encode_response_with_external(
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    body: &ResponseKind,
    external_sizes: &[u64],
) -> Result<Vec<FramePart>, SpliceError> {
    let encoded = encode_response(api_key, api_version, correlation_id, body)?;
    let compact = api_key.response_header_version(api_version) >= 1;
    split_at_placeholders(encoded, compact, external_sizes)
}

/// Cuts `frame` at each placeholder (see the module docs).
fn split_at_placeholders(
    frame: Bytes,
    compact: bool,
    external_sizes: &[u64],
) -> Result<Vec<FramePart>, SpliceError> {
    let old_prefix: &[u8] = if compact {
        // Compact bytes: unsigned varint of length + 1; 17 fits one byte.
        &[PLACEHOLDER_BYTES as u8 + 1]
    } else {
        &(PLACEHOLDER_BYTES as i32).to_be_bytes()
    };
    let mut parts = Vec::with_capacity(external_sizes.len() * 2 + 1);
    let mut inline = BytesMut::with_capacity(frame.len());
    let mut cursor = LENGTH_PREFIX_BYTES;
    let mut frame_size_bytes = frame.len() - LENGTH_PREFIX_BYTES;
    inline.put_i32(0); // the frame size, patched below
    for (index, &size_bytes) in external_sizes.iter().enumerate() {
        let found = find(&frame[cursor..], tag()).ok_or(SpliceError::Placeholders)? + cursor;
        let at = &frame[found..];
        if placeholder_index(
            at.get(..PLACEHOLDER_BYTES)
                .ok_or(SpliceError::Placeholders)?,
        ) != Some(index)
            || found < cursor + old_prefix.len()
            || &frame[found - old_prefix.len()..found] != old_prefix
        {
            return Err(SpliceError::Placeholders);
        }
        inline.put_slice(&frame[cursor..found - old_prefix.len()]);
        let before = inline.len();
        if compact {
            put_unsigned_varint(&mut inline, size_bytes + 1);
        } else {
            inline.put_i32(i32::try_from(size_bytes).map_err(|_| SpliceError::TooLarge)?);
        }
        let new_prefix_bytes = inline.len() - before;
        frame_size_bytes = (frame_size_bytes - old_prefix.len() - PLACEHOLDER_BYTES)
            .checked_add(new_prefix_bytes)
            .and_then(|n| n.checked_add(usize::try_from(size_bytes).ok()?))
            .ok_or(SpliceError::TooLarge)?;
        parts.push(FramePart::Inline(inline.split().freeze()));
        parts.push(FramePart::External(index));
        cursor = found + PLACEHOLDER_BYTES;
    }
    if find(&frame[cursor..], tag()).is_some() {
        return Err(SpliceError::Placeholders);
    }
    inline.put_slice(&frame[cursor..]);
    parts.push(FramePart::Inline(inline.freeze()));
    let frame_size = i32::try_from(frame_size_bytes).map_err(|_| SpliceError::TooLarge)?;
    patch_frame_size(&mut parts, frame_size);
    Ok(parts)
}

fn patch_frame_size(parts: &mut [FramePart], frame_size: i32) {
    if let Some(FramePart::Inline(first)) = parts.first_mut() {
        let mut patched = BytesMut::from(&first[..]);
        patched[..LENGTH_PREFIX_BYTES].copy_from_slice(&frame_size.to_be_bytes());
        *first = patched.freeze();
    }
}

fn put_unsigned_varint(buf: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        buf.put_u8((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    buf.put_u8(value as u8);
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{FetchResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use proptest::prelude::*;

    fn fetch_response(records: Vec<Bytes>) -> ResponseKind {
        let partitions = records
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                PartitionData::default()
                    .with_partition_index(i as i32)
                    .with_high_watermark(42)
                    .with_records(Some(r))
            })
            .collect();
        ResponseKind::Fetch(FetchResponse::default().with_responses(
            vec![FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(partitions)],
        ))
    }

    fn assemble(parts: &[FramePart], external: &[Bytes]) -> Vec<u8> {
        let mut out = Vec::new();
        for part in parts {
            match part {
                FramePart::Inline(b) => out.extend_from_slice(b),
                FramePart::External(i) => out.extend_from_slice(&external[*i]),
            }
        }
        out
    }

    proptest! {
        /// Splicing the external records in gives byte for byte the frame that carrying
        /// them inline gives, at every Fetch version (plain and compact length prefixes).
        #[test]
        fn spliced_frame_equals_inline_frame(
            version in 4i16..=17,
            sizes in proptest::collection::vec(0usize..300, 0..6),
        ) {
            let external: Vec<Bytes> = sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| Bytes::from(vec![i as u8; n]))
                .collect();
            let inline = encode_response(
                ApiKey::Fetch, version, 7, &fetch_response(external.clone())).unwrap();
            let with_placeholders =
                fetch_response((0..external.len()).map(placeholder).collect());
            let lens: Vec<u64> = external.iter().map(|b| b.len() as u64).collect();
            let parts = encode_response_with_external(
                ApiKey::Fetch, version, 7, &with_placeholders, &lens).unwrap();
            prop_assert_eq!(assemble(&parts, &external), inline.to_vec());
        }
    }

    #[test]
    fn a_stray_tag_is_refused() {
        // A record field that is not the expected placeholder (here: placeholder 1 where 0
        // was expected) must not be spliced.
        let body = fetch_response(vec![placeholder(1)]);
        assert_eq!(
            encode_response_with_external(ApiKey::Fetch, 12, 1, &body, &[10]),
            Err(SpliceError::Placeholders)
        );
        let body = fetch_response(vec![placeholder(0), placeholder(0)]);
        assert_eq!(
            encode_response_with_external(ApiKey::Fetch, 12, 1, &body, &[10]),
            Err(SpliceError::Placeholders)
        );
    }

    #[test]
    fn large_external_sizes_get_long_prefixes() {
        let body = fetch_response(vec![placeholder(0)]);
        let parts = encode_response_with_external(ApiKey::Fetch, 16, 9, &body, &[1 << 20]).unwrap();
        let FramePart::Inline(head) = &parts[0] else {
            panic!("first part must be inline")
        };
        let size = i32::from_be_bytes(head[..4].try_into().unwrap()) as usize;
        let inline_bytes: usize = parts
            .iter()
            .map(|p| match p {
                FramePart::Inline(b) => b.len(),
                FramePart::External(_) => 1 << 20,
            })
            .sum();
        assert_eq!(size + 4, inline_bytes);
    }
}
