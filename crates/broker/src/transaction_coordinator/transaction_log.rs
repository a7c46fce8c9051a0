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
pub use crate::coordinator_record::string_fits;
use crate::coordinator_record::{Reader, Writer};

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

/// Why a record could not be decoded (the coordinators' shared record codec error).
pub type TransactionLogError = crate::coordinator_record::RecordCodecError;

// ------------------------------------------------------------------------------ encoding

pub fn encode_key(transactional_id: &str) -> Vec<u8> {
    let mut w = Writer::new(KEY_VERSION, false);
    w.string(transactional_id);
    w.finish()
}

pub fn encode_value(value: &TransactionLogValue) -> Vec<u8> {
    encode_value_version(value, VALUE_VERSION)
}

/// Encodes at `version` (0 or 1). v0 drops the KIP-890 fields.
pub fn encode_value_version(value: &TransactionLogValue, version: i16) -> Vec<u8> {
    let flexible = version >= 1;
    let mut w = Writer::new(version, flexible);
    w.i64(value.producer_id);
    w.i16(value.producer_epoch);
    w.i32(value.transaction_timeout_ms);
    w.i8(value.state.id());
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
                w.i32(p);
            }
            w.tagged_fields();
        }
    }
    w.i64(value.last_update_timestamp_ms);
    w.i64(value.start_timestamp_ms);
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
            w.raw(&data);
        }
    }
    w.finish()
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
    crate::coordinator_record::encode_batch(&encoded, None, now_ms)
}

// ------------------------------------------------------------------------------ decoding

pub fn decode_key(buf: &[u8]) -> Result<String, TransactionLogError> {
    let (version, mut r) = Reader::versioned(buf, "TransactionLogKey")?;
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
    let (version, mut r) = Reader::versioned(buf, what)?;
    if !(0..=VALUE_VERSION_MAX).contains(&version) {
        return Err(TransactionLogError::UnknownVersion { what, version });
    }
    r.set_flexible(version >= 1);
    let producer_id = r.i64()?;
    let producer_epoch = r.i16()?;
    let transaction_timeout_ms = r.i32()?;
    let status = r.i8()?;
    let state = TransactionState::from_id(status)
        .ok_or_else(|| r.malformed("unknown transaction status"))?;
    let mut partitions = BTreeSet::new();
    // A topic entry takes at least 3 bytes (flexible: 1 + 1 + 1).
    if let Some(topics) = r.nullable_array_length(3)? {
        for _ in 0..topics {
            let topic = r.string()?;
            let count = r
                .nullable_array_length(4)?
                .ok_or_else(|| r.malformed("null partition list"))?;
            for _ in 0..count {
                partitions.insert((topic.clone(), r.i32()?));
            }
            r.tagged_fields()?;
        }
    }
    let last_update_timestamp_ms = r.i64()?;
    let start_timestamp_ms = r.i64()?;
    let mut previous_producer_id = NO_PRODUCER_ID;
    let mut next_producer_id = NO_PRODUCER_ID;
    let mut client_transaction_version = 0i16;
    r.tagged_fields_with(|tag, data| {
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
