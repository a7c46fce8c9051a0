//! Decompression of a batch's record section with a bound on the output, so that a small
//! hostile batch (a "zip bomb") cannot make the broker allocate gigabytes. Used where the
//! broker must look inside compressed batches: the key check on compacted topics and replay of
//! internal topics. Kafka's codecs and framings: gzip, snappy (xerial framing or raw), lz4
//! (frame format), zstd.

use std::io::Read;

use crate::records::{Compression, RecordError};

/// Largest decompressed record section accepted (Kafka has no such bound; a batch is at most
/// `message.max.bytes` compressed, 1 MB by default).
pub const DECOMPRESSED_BYTES_MAX: usize = 64 << 20;

/// Snappy as the Java client writes it (xerial snappy-java stream framing).
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_BYTES: usize = 16;

fn failed(reason: impl std::fmt::Display) -> RecordError {
    RecordError::Decompression {
        reason: reason.to_string(),
    }
}

/// Decompresses `data`, failing if the output would exceed `limit_bytes`.
pub fn decompress_bounded(
    codec: Compression,
    data: &[u8],
    limit_bytes: usize,
) -> Result<Vec<u8>, RecordError> {
    match codec {
        Compression::None => Ok(data.to_vec()),
        Compression::Gzip => read_bounded(flate2::read::GzDecoder::new(data), limit_bytes),
        Compression::Lz4 => {
            let decoder = lz4::Decoder::new(data).map_err(failed)?;
            read_bounded(decoder, limit_bytes)
        }
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::new(data).map_err(failed)?;
            read_bounded(decoder, limit_bytes)
        }
        Compression::Snappy => snappy(data, limit_bytes),
    }
}

fn read_bounded(reader: impl Read, limit_bytes: usize) -> Result<Vec<u8>, RecordError> {
    let mut out = Vec::new();
    reader
        .take(limit_bytes as u64 + 1)
        .read_to_end(&mut out)
        .map_err(failed)?;
    if out.len() > limit_bytes {
        return Err(failed(format!(
            "decompressed records exceed {limit_bytes} bytes"
        )));
    }
    Ok(out)
}

fn snappy(data: &[u8], limit_bytes: usize) -> Result<Vec<u8>, RecordError> {
    let mut decoder = snap::raw::Decoder::new();
    let mut block = |compressed: &[u8], out: &mut Vec<u8>| -> Result<(), RecordError> {
        let size = snap::raw::decompress_len(compressed).map_err(failed)?;
        if out.len().saturating_add(size) > limit_bytes {
            return Err(failed(format!(
                "decompressed records exceed {limit_bytes} bytes"
            )));
        }
        let start = out.len();
        out.resize(start + size, 0);
        let written = decoder
            .decompress(compressed, &mut out[start..])
            .map_err(failed)?;
        out.truncate(start + written);
        Ok(())
    };
    let mut out = Vec::new();
    if !data.starts_with(XERIAL_MAGIC) {
        block(data, &mut out)?;
        return Ok(out);
    }
    let mut rest = data
        .get(XERIAL_HEADER_BYTES..)
        .ok_or_else(|| failed("truncated snappy header"))?;
    while !rest.is_empty() {
        let length = rest
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| failed("truncated snappy block length"))?;
        let compressed = rest
            .get(4..4 + length)
            .ok_or_else(|| failed("truncated snappy block"))?;
        block(compressed, &mut out)?;
        rest = &rest[4 + length..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use kafka_protocol::records::{
        Compression as KafkaCompression, Record, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType,
    };

    /// A batch compressed by kafka-protocol's encoder (the same framings clients use).
    fn compressed_batch(codec: KafkaCompression, value_bytes: usize) -> Vec<u8> {
        let record = Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: -1,
            timestamp: 0,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from(vec![b'a'; value_bytes])),
            headers: Default::default(),
            delete_horizon: false,
        };
        let mut buf = bytes::BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &[record],
            &RecordEncodeOptions {
                version: 2,
                compression: codec,
            },
        )
        .unwrap();
        buf.to_vec()
    }

    #[test]
    fn every_codec_decompresses_within_the_bound_and_refuses_beyond() {
        for (codec, ours) in [
            (KafkaCompression::Gzip, Compression::Gzip),
            (KafkaCompression::Snappy, Compression::Snappy),
            (KafkaCompression::Lz4, Compression::Lz4),
            (KafkaCompression::Zstd, Compression::Zstd),
        ] {
            let batch = compressed_batch(codec, 100_000);
            let section = &batch[crate::records::RECORD_BATCH_HEADER_BYTES..];
            let out = decompress_bounded(ours, section, 1 << 20).unwrap();
            assert!(out.len() > 100_000, "{ours:?}");
            // 100 KB of 'a' compresses to almost nothing: a 10 KB bound must refuse it.
            assert!(
                decompress_bounded(ours, section, 10_000).is_err(),
                "{ours:?}"
            );
            // Garbage never panics.
            let _ = decompress_bounded(ours, &section[..section.len() / 2], 1 << 20);
        }
    }
}
