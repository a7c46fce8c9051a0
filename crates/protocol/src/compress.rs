//! Compression of a record section, for the one place the broker writes compressed batches
//! itself: the log cleaner re-compressing a batch it filtered, with the batch's own codec (as
//! Kafka's `MemoryRecords.filterTo` does). Framings match what Kafka's Java code writes, so
//! every client reads the result: gzip, snappy in xerial stream framing, lz4 frames with
//! independent 64 KiB blocks, zstd frames.

use std::io::Write;

use crate::records::{Compression, RecordError};

/// snappy-java's stream header: magic, version 1, compatible version 1.
const XERIAL_HEADER: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
/// snappy-java's default block size (bytes of input per compressed block).
const XERIAL_BLOCK_BYTES: usize = 32 * 1024;
/// zstd level Kafka uses by default (`compression.zstd.level`).
const ZSTD_LEVEL: i32 = 3;

fn failed(reason: impl std::fmt::Display) -> RecordError {
    RecordError::Decompression {
        reason: format!("compression failed: {reason}"),
    }
}

/// Compresses `data` with `codec` (`None` returns a copy).
pub fn compress(codec: Compression, data: &[u8]) -> Result<Vec<u8>, RecordError> {
    match codec {
        Compression::None => Ok(data.to_vec()),
        Compression::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(data).map_err(failed)?;
            encoder.finish().map_err(failed)
        }
        Compression::Snappy => snappy_xerial(data),
        Compression::Lz4 => {
            let mut encoder = lz4::EncoderBuilder::new()
                .block_size(lz4::BlockSize::Max64KB)
                .block_mode(lz4::BlockMode::Independent)
                .checksum(lz4::ContentChecksum::NoChecksum)
                .build(Vec::new())
                .map_err(failed)?;
            encoder.write_all(data).map_err(failed)?;
            let (out, result) = encoder.finish();
            result.map_err(failed)?;
            Ok(out)
        }
        Compression::Zstd => zstd::bulk::compress(data, ZSTD_LEVEL).map_err(failed),
    }
}

fn snappy_xerial(data: &[u8]) -> Result<Vec<u8>, RecordError> {
    let mut encoder = snap::raw::Encoder::new();
    let mut out = Vec::with_capacity(XERIAL_HEADER.len() + data.len() / 2);
    out.extend_from_slice(XERIAL_HEADER);
    for block in data.chunks(XERIAL_BLOCK_BYTES) {
        let compressed = encoder.compress_vec(block).map_err(failed)?;
        out.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
        out.extend_from_slice(&compressed);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decompress::{decompress_bounded, DECOMPRESSED_BYTES_MAX};

    #[test]
    fn every_codec_round_trips_through_the_decompressor() {
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_be_bytes())
            .collect();
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            for input in [&data[..], &data[..1], &[][..]] {
                let compressed = compress(codec, input).unwrap();
                let back = decompress_bounded(codec, &compressed, DECOMPRESSED_BYTES_MAX).unwrap();
                assert_eq!(back, input, "{codec:?}");
            }
        }
    }
}
