//! Replication's per-data-dir and per-partition metadata files, in Kafka's formats so that a
//! data dir stays readable by Kafka's tools:
//!
//! - `replication-offset-checkpoint` (data dir): the high watermark of every local replica,
//!   `0\n{count}\n{topic} {partition} {offset}\n...` (Kafka's `OffsetCheckpointFile`).
//! - `partition.metadata` (partition dir): `version: 0\ntopic_id: {id}\n`, the id as Kafka's
//!   `Uuid.toString` (URL-safe base64 of the 16 bytes, no padding).

use std::collections::BTreeMap;
use std::path::Path;

use uuid::Uuid;

use crate::{io_error, StorageError};

pub const REPLICATION_OFFSET_CHECKPOINT_FILE: &str = "replication-offset-checkpoint";
pub const PARTITION_METADATA_FILE: &str = "partition.metadata";

/// Reads `{data_dir}/replication-offset-checkpoint`. A missing file is an empty map (a new
/// data dir); an unreadable one is an error naming the file and line, never a guess: a wrong
/// high watermark would expose or hide acknowledged records.
pub fn read_replication_offset_checkpoint(
    data_dir: &Path,
) -> Result<BTreeMap<(String, i32), i64>, StorageError> {
    let path = data_dir.join(REPLICATION_OFFSET_CHECKPOINT_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(error) => return Err(io_error("read", &path)(error)),
    };
    parse_offset_checkpoint(&text).map_err(|reason| StorageError::CorruptFile { path, reason })
}

/// Replaces `{data_dir}/replication-offset-checkpoint` durably (temp file, fsync, rename,
/// directory fsync), so a crash leaves the old or the new checkpoint.
pub fn write_replication_offset_checkpoint(
    data_dir: &Path,
    offsets: &BTreeMap<(String, i32), i64>,
) -> Result<(), StorageError> {
    let mut text = format!("0\n{}\n", offsets.len());
    for ((topic, partition), offset) in offsets {
        text.push_str(&format!("{topic} {partition} {offset}\n"));
    }
    crate::write_atomically(
        &data_dir.join(REPLICATION_OFFSET_CHECKPOINT_FILE),
        text.as_bytes(),
    )
}

/// Kafka's `CheckpointFileWithFailureHandler.read`: version 0, the entry count, then exactly
/// that many `topic partition offset` lines. Errors name the 1-based line.
fn parse_offset_checkpoint(text: &str) -> Result<BTreeMap<(String, i32), i64>, String> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line));
    let missing = |what: &str| format!("missing {what}");
    let (line_no, version) = lines.next().ok_or_else(|| missing("version line"))?;
    if version.trim() != "0" {
        return Err(format!("line {line_no}: unsupported version {version:?}"));
    }
    let (line_no, count) = lines.next().ok_or_else(|| missing("entry count line"))?;
    let count: usize = count
        .trim()
        .parse()
        .map_err(|_| format!("line {line_no}: invalid entry count {count:?}"))?;
    let mut offsets = BTreeMap::new();
    for _ in 0..count {
        let (line_no, line) = lines
            .next()
            .ok_or_else(|| format!("expected {count} entries, found {}", offsets.len()))?;
        // Topic names cannot contain spaces (only [a-zA-Z0-9._-]), so a space splits fields.
        let fields: Vec<&str> = line.split(' ').collect();
        let [topic, partition, offset] = fields.as_slice() else {
            return Err(format!(
                "line {line_no}: expected \"topic partition offset\", found {line:?}"
            ));
        };
        let partition: i32 = partition
            .parse()
            .ok()
            .filter(|p: &i32| *p >= 0)
            .ok_or_else(|| format!("line {line_no}: invalid partition {partition:?}"))?;
        let offset: i64 = offset
            .parse()
            .map_err(|_| format!("line {line_no}: invalid offset {offset:?}"))?;
        if topic.is_empty() {
            return Err(format!("line {line_no}: empty topic name"));
        }
        offsets.insert((topic.to_string(), partition), offset);
    }
    if let Some((line_no, extra)) = lines.find(|(_, line)| !line.trim().is_empty()) {
        return Err(format!(
            "line {line_no}: unexpected line after {count} entries: {extra:?}"
        ));
    }
    Ok(offsets)
}

/// Reads `{dir}/partition.metadata`: `None` if the partition has none yet.
pub fn read_partition_metadata(dir: &Path) -> Result<Option<Uuid>, StorageError> {
    let path = dir.join(PARTITION_METADATA_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error("read", &path)(error)),
    };
    parse_partition_metadata(&text)
        .map(Some)
        .map_err(|reason| StorageError::CorruptFile { path, reason })
}

/// Writes `{dir}/partition.metadata` durably (Kafka's `PartitionMetadataFile`).
pub fn write_partition_metadata(dir: &Path, topic_id: Uuid) -> Result<(), StorageError> {
    let text = format!("version: 0\ntopic_id: {}\n", kafka_uuid_string(topic_id));
    crate::write_atomically(&dir.join(PARTITION_METADATA_FILE), text.as_bytes())
}

fn parse_partition_metadata(text: &str) -> Result<Uuid, String> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line));
    let (line_no, version) = lines.next().ok_or("missing version line")?;
    match version.split_once(':') {
        Some(("version", value)) if value.trim() == "0" => {}
        _ => {
            return Err(format!(
                "line {line_no}: expected \"version: 0\", found {version:?}"
            ))
        }
    }
    let (line_no, topic_id) = lines.next().ok_or("missing topic_id line")?;
    match topic_id.split_once(':') {
        Some(("topic_id", value)) => parse_kafka_uuid(value.trim())
            .ok_or_else(|| format!("line {line_no}: invalid topic id {:?}", value.trim())),
        _ => Err(format!(
            "line {line_no}: expected \"topic_id: <id>\", found {topic_id:?}"
        )),
    }
}

const BASE64_URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Kafka's `Uuid.toString`: URL-safe base64 without padding of the 16 bytes (22 characters).
pub fn kafka_uuid_string(id: Uuid) -> String {
    let mut out = String::with_capacity(22);
    for chunk in id.as_bytes().chunks(3) {
        let mut buf = [0u8; 3];
        buf[..chunk.len()].copy_from_slice(chunk);
        let n = u32::from(buf[0]) << 16 | u32::from(buf[1]) << 8 | u32::from(buf[2]);
        // A full chunk gives 4 characters, the trailing 1-byte chunk 2.
        for i in 0..chunk.len() + 1 {
            out.push(char::from(BASE64_URL[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

/// The inverse of [`kafka_uuid_string`]; `None` unless exactly 22 valid characters whose
/// unused low bits are zero (so each id has one spelling).
pub(crate) fn parse_kafka_uuid(text: &str) -> Option<Uuid> {
    if text.len() != 22 {
        return None;
    }
    let mut values = [0u8; 22];
    for (slot, c) in values.iter_mut().zip(text.bytes()) {
        *slot = BASE64_URL.iter().position(|b| *b == c)? as u8;
    }
    // 22 characters hold 132 bits: the 128 of the id, then 4 zero padding bits.
    let (last, head) = values.split_last()?;
    if last & 0b1111 != 0 {
        return None;
    }
    let bits = head
        .iter()
        .fold(0u128, |bits, value| bits << 6 | u128::from(*value));
    Some(Uuid::from_u128(bits << 2 | u128::from(last >> 4)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replication_offset_checkpoint_round_trips_in_kafka_format() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_replication_offset_checkpoint(dir.path())
            .unwrap()
            .is_empty());
        let mut offsets = BTreeMap::new();
        offsets.insert(("orders".to_string(), 0), 42);
        offsets.insert(("my.dotted-topic_name".to_string(), 17), 0);
        offsets.insert(("__consumer_offsets".to_string(), 3), i64::MAX);
        write_replication_offset_checkpoint(dir.path(), &offsets).unwrap();
        let text =
            std::fs::read_to_string(dir.path().join(REPLICATION_OFFSET_CHECKPOINT_FILE)).unwrap();
        assert_eq!(
            text,
            format!(
                "0\n3\n__consumer_offsets 3 {}\nmy.dotted-topic_name 17 0\norders 0 42\n",
                i64::MAX
            )
        );
        assert_eq!(
            read_replication_offset_checkpoint(dir.path()).unwrap(),
            offsets
        );
        // No temp file left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        write_replication_offset_checkpoint(dir.path(), &BTreeMap::new()).unwrap();
        assert!(read_replication_offset_checkpoint(dir.path())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn corrupt_replication_offset_checkpoint_names_file_and_line() {
        let cases = [
            ("1\n0\n", "line 1"),
            ("0\nx\n", "line 2"),
            ("0\n2\na 0 1\n", "expected 2 entries"),
            ("0\n1\na 0\n", "line 3"),
            ("0\n1\na -1 5\n", "line 3"),
            ("0\n1\na 0 five\n", "line 3"),
            ("0\n1\na 0 1\nb 0 1\n", "line 4"),
            ("", "missing version"),
        ];
        for (text, expected) in cases {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(REPLICATION_OFFSET_CHECKPOINT_FILE);
            std::fs::write(&path, text).unwrap();
            let error = read_replication_offset_checkpoint(dir.path()).unwrap_err();
            let message = error.to_string();
            assert!(
                matches!(error, StorageError::CorruptFile { .. }),
                "{text:?}: {message}"
            );
            assert!(
                message.contains(REPLICATION_OFFSET_CHECKPOINT_FILE),
                "{message}"
            );
            assert!(message.contains(expected), "{text:?}: {message}");
        }
    }

    #[test]
    fn partition_metadata_round_trips_with_kafka_uuid_strings() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_partition_metadata(dir.path()).unwrap(), None);
        // Kafka: new Uuid(0x1234567890abcdefL, 0xfedcba0987654321L).toString()
        let id = Uuid::from_u128(0x1234_5678_90ab_cdef_fedc_ba09_8765_4321);
        assert_eq!(kafka_uuid_string(id), "EjRWeJCrze_-3LoJh2VDIQ");
        assert_eq!(kafka_uuid_string(Uuid::nil()), "AAAAAAAAAAAAAAAAAAAAAA");
        write_partition_metadata(dir.path(), id).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join(PARTITION_METADATA_FILE)).unwrap(),
            "version: 0\ntopic_id: EjRWeJCrze_-3LoJh2VDIQ\n"
        );
        assert_eq!(read_partition_metadata(dir.path()).unwrap(), Some(id));
        for bad in [
            "version: 1\ntopic_id: EjRWeJCrze_-3LoJh2VDIQ\n",
            "version: 0\n",
            "version: 0\ntopic_id: EjRWeJCrze_-3LoJh2VDIR\n",
            "version: 0\ntopic_id: not-an-id\n",
        ] {
            std::fs::write(dir.path().join(PARTITION_METADATA_FILE), bad).unwrap();
            let error = read_partition_metadata(dir.path()).unwrap_err();
            assert!(
                error.to_string().contains(PARTITION_METADATA_FILE),
                "{error}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn kafka_uuid_strings_round_trip(bits: u128) {
            let id = Uuid::from_u128(bits);
            let text = kafka_uuid_string(id);
            proptest::prop_assert_eq!(text.len(), 22);
            proptest::prop_assert_eq!(parse_kafka_uuid(&text), Some(id));
        }
    }
}
