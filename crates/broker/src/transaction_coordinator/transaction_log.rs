//! The record codec for `__transaction_state`, byte for byte Kafka's `TransactionLog`
//! (`transaction-coordinator/src/main/resources/common/message/TransactionLog{Key,Value}.json`).
//!
//! Key and value are each a big-endian `i16` version followed by the struct in Kafka's message
//! encoding:
//!
//! - `TransactionLogKey` v0: `transactional_id: string`.
//! - `TransactionLogValue` v0: `producer_id: i64, producer_epoch: i16, transaction_timeout_ms:
//!   i32, transaction_status: i8, transaction_partitions: nullable [topic: string,
//!   partition_ids: [i32]], transaction_last_update_timestamp_ms: i64,
//!   transaction_start_timestamp_ms: i64`.
//! - v1 (flexible, compact strings and arrays, KIP-890) adds tagged fields:
//!   0 `previous_producer_id: i64` (default -1), 1 `next_producer_id: i64` (default -1),
//!   2 `client_transaction_version: i16` (default 0).
//!
//! A null value is a tombstone: the transactional id expired. Kafka writes the value version of
//! the finalized `transaction.version` (v1 from level 2); so does Fjord (it finalizes level 2).
//! Decoding never panics and never allocates more than the input could hold: the input comes
//! from disk.

use std::collections::{BTreeMap, BTreeSet};

use super::metadata::TransactionState;

/// The only `TransactionLogKey` version.
pub const KEY_VERSION: i16 = 0;
/// The `TransactionLogValue` version written (`transaction.version` 2).
pub const VALUE_VERSION: i16 = 1;
const VALUE_VERSION_MAX: i16 = 1;
const NO_PRODUCER_ID: i64 = -1;

/// `TransactionLogValue`: the persisted part of a [`super::metadata::TransactionMetadata`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionLogValue {
    pub producer_id: i64,
    pub previous_producer_id: i64,
    pub next_producer_id: i64,
    pub producer_epoch: i16,
    pub transaction_timeout_ms: i32,
    pub state: TransactionState,
    /// Empty in state Empty (written as null there, as Kafka does).
    pub partitions: BTreeSet<(String, i32)>,
    pub last_update_timestamp_ms: i64,
    pub start_timestamp_ms: i64,
    pub client_transaction_version: i16,
}

/// One record of `__transaction_state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionLogRecord {
    pub transactional_id: String,
    /// `None` is a tombstone.
    pub value: Option<TransactionLogValue>,
}

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransactionLogError {
    #[error("record has no key")]
    MissingKey,
    #[error("{what} ends early")]
    Truncated { what: &'static str },
    #[error("{what} has {bytes} bytes left over")]
    TrailingBytes { what: &'static str, bytes: usize },
    #[error("{what} version {version} is not known")]
    UnknownVersion { what: &'static str, version: i16 },
    #[error("{what}: {reason}")]
    Malformed {
        what: &'static str,
        reason: &'static str,
    },
}

// ------------------------------------------------------------------------------ encoding

struct Writer {
    buf: Vec<u8>,
    flexible: bool,
}

impl Writer {
    fn new(version: i16, flexible: bool) -> Self {
        Self {
            buf: version.to_be_bytes().to_vec(),
            flexible,
        }
    }

    fn unsigned_varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    fn string(&mut self, s: &str) {
        if self.flexible {
            self.unsigned_varint(s.len() as u64 + 1);
        } else {
            // Strings are bounded by callers (`string_fits`); saturate rather than wrap.
            let len = i16::try_from(s.len()).unwrap_or(i16::MAX);
            self.buf.extend_from_slice(&len.to_be_bytes());
        }
        self.buf.extend_from_slice(s.as_bytes());
    }

    /// An array length (`None` = null array).
    fn array_length(&mut self, n: Option<usize>) {
        if self.flexible {
            self.unsigned_varint(n.map_or(0, |n| n as u64 + 1));
        } else {
            let len = n.map_or(-1, |n| i32::try_from(n).unwrap_or(i32::MAX));
            self.buf.extend_from_slice(&len.to_be_bytes());
        }
    }

    fn no_tagged_fields(&mut self) {
        if self.flexible {
            self.unsigned_varint(0);
        }
    }
}

/// Whether `s` fits a Kafka `string` (i16 length).
pub fn string_fits(s: &str) -> bool {
    s.len() <= i16::MAX as usize
}

pub fn encode_key(transactional_id: &str) -> Vec<u8> {
    let mut w = Writer::new(KEY_VERSION, false);
    w.string(transactional_id);
    w.buf
}

pub fn encode_value(value: &TransactionLogValue) -> Vec<u8> {
    encode_value_version(value, VALUE_VERSION)
}

/// Encodes at `version` (0 or 1). v0 drops the KIP-890 fields.
pub fn encode_value_version(value: &TransactionLogValue, version: i16) -> Vec<u8> {
    let flexible = version >= 1;
    let mut w = Writer::new(version, flexible);
    w.buf.extend_from_slice(&value.producer_id.to_be_bytes());
    w.buf.extend_from_slice(&value.producer_epoch.to_be_bytes());
    w.buf
        .extend_from_slice(&value.transaction_timeout_ms.to_be_bytes());
    w.buf.push(value.state.id() as u8);
    if value.state == TransactionState::Empty {
        w.array_length(None);
    } else {
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (topic, partition) in &value.partitions {
            by_topic.entry(topic).or_default().push(*partition);
        }
        w.array_length(Some(by_topic.len()));
        for (topic, partitions) in by_topic {
            w.string(topic);
            w.array_length(Some(partitions.len()));
            for p in partitions {
                w.buf.extend_from_slice(&p.to_be_bytes());
            }
            w.no_tagged_fields();
        }
    }
    w.buf
        .extend_from_slice(&value.last_update_timestamp_ms.to_be_bytes());
    w.buf
        .extend_from_slice(&value.start_timestamp_ms.to_be_bytes());
    if flexible {
        let mut tags: Vec<(u64, Vec<u8>)> = Vec::new();
        if value.previous_producer_id != NO_PRODUCER_ID {
            tags.push((0, value.previous_producer_id.to_be_bytes().to_vec()));
        }
        if value.next_producer_id != NO_PRODUCER_ID {
            tags.push((1, value.next_producer_id.to_be_bytes().to_vec()));
        }
        if value.client_transaction_version != 0 {
            tags.push((2, value.client_transaction_version.to_be_bytes().to_vec()));
        }
        w.unsigned_varint(tags.len() as u64);
        for (tag, data) in tags {
            w.unsigned_varint(tag);
            w.unsigned_varint(data.len() as u64);
            w.buf.extend_from_slice(&data);
        }
    }
    w.buf
}

/// Key and value bytes of a record (`None` value = tombstone).
pub fn encode_record(record: &TransactionLogRecord) -> (Vec<u8>, Option<Vec<u8>>) {
    (
        encode_key(&record.transactional_id),
        record.value.as_ref().map(encode_value),
    )
}

/// The records as one uncompressed batch (Kafka's `TransactionLog.EnforcedCompression`).
pub fn encode_batch(records: &[TransactionLogRecord], now_ms: i64) -> Vec<u8> {
    let encoded: Vec<(Vec<u8>, Option<Vec<u8>>)> = records.iter().map(encode_record).collect();
    let records: Vec<fjord_protocol::batch_builder::Record<'_>> = encoded
        .iter()
        .map(|(key, value)| fjord_protocol::batch_builder::Record {
            timestamp_delta: 0,
            key: Some(key),
            value: value.as_deref(),
            headers: &[],
        })
        .collect();
    fjord_protocol::batch_builder::encode_uncompressed(0, now_ms, 0, &records)
}

// ------------------------------------------------------------------------------ decoding

struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
    flexible: bool,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TransactionLogError> {
        if n > self.buf.len() {
            return Err(TransactionLogError::Truncated { what: self.what });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], TransactionLogError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn i8(&mut self) -> Result<i8, TransactionLogError> {
        Ok(i8::from_be_bytes(self.array()?))
    }

    fn i16(&mut self) -> Result<i16, TransactionLogError> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    fn i32(&mut self) -> Result<i32, TransactionLogError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, TransactionLogError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    fn unsigned_varint(&mut self) -> Result<u64, TransactionLogError> {
        let mut value = 0u64;
        for shift in (0..35).step_by(7) {
            let byte = self.take(1)?[0];
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.malformed("varint longer than 5 bytes"))
    }

    fn malformed(&self, reason: &'static str) -> TransactionLogError {
        TransactionLogError::Malformed {
            what: self.what,
            reason,
        }
    }

    /// A length: `None` for null.
    fn length(&mut self, classic_i16: bool) -> Result<Option<usize>, TransactionLogError> {
        let n: i64 = if self.flexible {
            self.unsigned_varint()? as i64 - 1
        } else if classic_i16 {
            i64::from(self.i16()?)
        } else {
            i64::from(self.i32()?)
        };
        match n {
            -1 => Ok(None),
            n if n < 0 => Err(self.malformed("negative length")),
            n => Ok(Some(n as usize)),
        }
    }

    fn string(&mut self) -> Result<String, TransactionLogError> {
        let len = self
            .length(true)?
            .ok_or_else(|| self.malformed("null string"))?;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| self.malformed("string is not UTF-8"))
    }

    /// An array length, checked against the bytes left (each element takes at least
    /// `min_element_bytes`), so a hostile count cannot make us allocate.
    fn array_length(
        &mut self,
        min_element_bytes: usize,
    ) -> Result<Option<usize>, TransactionLogError> {
        let n = self.length(false)?;
        if let Some(n) = n {
            if n.saturating_mul(min_element_bytes) > self.buf.len() {
                return Err(TransactionLogError::Truncated { what: self.what });
            }
        }
        Ok(n)
    }

    /// Reads tagged fields, handing known ones to `on_tag`.
    fn tagged_fields(
        &mut self,
        mut on_tag: impl FnMut(u64, &'a [u8]) -> Result<(), TransactionLogError>,
    ) -> Result<(), TransactionLogError> {
        if !self.flexible {
            return Ok(());
        }
        let count = self.unsigned_varint()?;
        for _ in 0..count {
            let tag = self.unsigned_varint()?;
            let size = usize::try_from(self.unsigned_varint()?)
                .map_err(|_| self.malformed("tagged field too large"))?;
            let data = self.take(size)?;
            on_tag(tag, data)?;
        }
        Ok(())
    }

    fn finish(self) -> Result<(), TransactionLogError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(TransactionLogError::TrailingBytes {
                what: self.what,
                bytes: self.buf.len(),
            })
        }
    }
}

fn versioned<'a>(
    buf: &'a [u8],
    what: &'static str,
) -> Result<(i16, Reader<'a>), TransactionLogError> {
    let mut reader = Reader {
        buf,
        what,
        flexible: false,
    };
    let version = reader.i16()?;
    Ok((version, reader))
}

pub fn decode_key(buf: &[u8]) -> Result<String, TransactionLogError> {
    let (version, mut r) = versioned(buf, "TransactionLogKey")?;
    if version != KEY_VERSION {
        return Err(TransactionLogError::UnknownVersion {
            what: "TransactionLogKey",
            version,
        });
    }
    let id = r.string()?;
    r.finish()?;
    Ok(id)
}

pub fn decode_value(buf: &[u8]) -> Result<TransactionLogValue, TransactionLogError> {
    let what = "TransactionLogValue";
    let (version, mut r) = versioned(buf, what)?;
    if !(0..=VALUE_VERSION_MAX).contains(&version) {
        return Err(TransactionLogError::UnknownVersion { what, version });
    }
    r.flexible = version >= 1;
    let producer_id = r.i64()?;
    let producer_epoch = r.i16()?;
    let transaction_timeout_ms = r.i32()?;
    let status = r.i8()?;
    let state = TransactionState::from_id(status)
        .ok_or_else(|| r.malformed("unknown transaction status"))?;
    let mut partitions = BTreeSet::new();
    // A topic entry takes at least 3 bytes (flexible: 1 + 1 + 1).
    if let Some(topics) = r.array_length(3)? {
        for _ in 0..topics {
            let topic = r.string()?;
            let count = r
                .array_length(4)?
                .ok_or_else(|| r.malformed("null partition list"))?;
            for _ in 0..count {
                partitions.insert((topic.clone(), r.i32()?));
            }
            r.tagged_fields(|_, _| Ok(()))?;
        }
    }
    let last_update_timestamp_ms = r.i64()?;
    let start_timestamp_ms = r.i64()?;
    let mut previous_producer_id = NO_PRODUCER_ID;
    let mut next_producer_id = NO_PRODUCER_ID;
    let mut client_transaction_version = 0i16;
    r.tagged_fields(|tag, data| {
        let bad = TransactionLogError::Malformed {
            what,
            reason: "tagged field has the wrong size",
        };
        match tag {
            0 => previous_producer_id = i64::from_be_bytes(data.try_into().map_err(|_| bad)?),
            1 => next_producer_id = i64::from_be_bytes(data.try_into().map_err(|_| bad)?),
            2 => client_transaction_version = i16::from_be_bytes(data.try_into().map_err(|_| bad)?),
            _ => {}
        }
        Ok(())
    })?;
    r.finish()?;
    if state == TransactionState::Empty {
        partitions.clear();
    }
    Ok(TransactionLogValue {
        producer_id,
        previous_producer_id,
        next_producer_id,
        producer_epoch,
        transaction_timeout_ms,
        state,
        partitions,
        last_update_timestamp_ms,
        start_timestamp_ms,
        client_transaction_version,
    })
}

/// Decodes one record (key, optional value).
pub fn decode_record(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Result<TransactionLogRecord, TransactionLogError> {
    let key = key.ok_or(TransactionLogError::MissingKey)?;
    let transactional_id = decode_key(key)?;
    let value = value.map(decode_value).transpose()?;
    Ok(TransactionLogRecord {
        transactional_id,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn value(state: TransactionState) -> TransactionLogValue {
        TransactionLogValue {
            producer_id: 7,
            previous_producer_id: -1,
            next_producer_id: -1,
            producer_epoch: 3,
            transaction_timeout_ms: 60_000,
            state,
            partitions: if state == TransactionState::Empty {
                BTreeSet::new()
            } else {
                BTreeSet::from([
                    ("a".to_string(), 0),
                    ("a".to_string(), 2),
                    ("b".to_string(), 1),
                ])
            },
            last_update_timestamp_ms: 1_000,
            start_timestamp_ms: 900,
            client_transaction_version: 0,
        }
    }

    #[test]
    fn v0_layout_is_kafkas() {
        let bytes = encode_value_version(&value(TransactionState::Empty), 0);
        let mut expected = vec![0, 0];
        expected.extend_from_slice(&7i64.to_be_bytes());
        expected.extend_from_slice(&3i16.to_be_bytes());
        expected.extend_from_slice(&60_000i32.to_be_bytes());
        expected.push(0);
        expected.extend_from_slice(&(-1i32).to_be_bytes());
        expected.extend_from_slice(&1_000i64.to_be_bytes());
        expected.extend_from_slice(&900i64.to_be_bytes());
        assert_eq!(bytes, expected);
        assert_eq!(encode_key("tx"), vec![0, 0, 0, 2, b't', b'x']);
    }

    #[test]
    fn v1_layout_has_compact_fields_and_tags() {
        let mut v = value(TransactionState::PrepareCommit);
        v.next_producer_id = 9;
        v.client_transaction_version = 2;
        let bytes = encode_value(&v);
        assert_eq!(&bytes[..2], &[0, 1]);
        // After the fixed fields: compact array of 2 topics.
        assert_eq!(bytes[2 + 8 + 2 + 4 + 1], 3);
        let tail = &bytes[bytes.len() - 1 - (1 + 1 + 8) - (1 + 1 + 2)..];
        assert_eq!(tail[0], 2, "two tagged fields");
        assert_eq!(decode_value(&bytes).unwrap(), v);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode_value(&[]).is_err());
        assert!(decode_value(&[0, 9, 1]).is_err());
        assert!(decode_key(&[0, 0, 0, 9, b'a']).is_err());
        assert!(decode_record(None, None).is_err());
        let mut bytes = encode_value_version(&value(TransactionState::Ongoing), 0);
        bytes[2 + 8 + 2 + 4] = 42;
        assert!(decode_value(&bytes).is_err());
    }

    fn arb_state() -> impl Strategy<Value = TransactionState> {
        (0i8..=7).prop_map(|id| TransactionState::from_id(id).unwrap_or(TransactionState::Empty))
    }

    proptest! {
        #[test]
        fn values_round_trip_at_both_versions(
            state in arb_state(),
            producer_id in 0i64..i64::MAX,
            epoch in -1i16..i16::MAX,
            prev in -1i64..100,
            next in -1i64..100,
            tv in 0i16..=2,
            partitions in proptest::collection::btree_set(("[a-z]{1,5}", 0i32..100), 0..10),
            version in 0i16..=1,
        ) {
            let v = TransactionLogValue {
                producer_id,
                previous_producer_id: if version == 1 { prev } else { -1 },
                next_producer_id: if version == 1 { next } else { -1 },
                producer_epoch: epoch,
                transaction_timeout_ms: 1000,
                state,
                partitions: if state == TransactionState::Empty { BTreeSet::new() } else { partitions },
                last_update_timestamp_ms: 5,
                start_timestamp_ms: -1,
                client_transaction_version: if version == 1 { tv } else { 0 },
            };
            prop_assert_eq!(decode_value(&encode_value_version(&v, version)).unwrap(), v);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_value(&bytes);
            let _ = decode_key(&bytes);
        }
    }
}
