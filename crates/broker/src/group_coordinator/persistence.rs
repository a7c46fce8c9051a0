//! The record codec for `__consumer_offsets`, byte for byte Kafka's.
//!
//! Every record is a key and a value, each a big-endian `i16` version followed by the struct
//! in Kafka's message encoding (`group-coordinator/src/main/resources/common/message/*.json`).
//! The key's version tells the record type, as in Kafka's coordinator runtime:
//!
//! | key version | key | value versions |
//! |---|---|---|
//! | 0, 1 | `OffsetCommitKey { group, topic, partition }` | `OffsetCommitValue` 0-4 |
//! | 2 | `GroupMetadataKey { group }` | `GroupMetadataValue` 0-4 |
//! | 3 and up | KIP-848 consumer group records | not handled yet (skipped on load) |
//!
//! A null value is a tombstone: the offset or the group is deleted. Fjord writes the versions a
//! Kafka 3.x/4.x broker writes (`OffsetCommitKey` v1, `OffsetCommitValue` v3, or v1 when the
//! commit carries an expire timestamp, `GroupMetadataKey` v2, `GroupMetadataValue` v3), and reads
//! every version, so a Kafka tool that dumps `__consumer_offsets` recognises Fjord's records and
//! Fjord could load a log a Kafka broker wrote.
//!
//! Decoding never panics and never allocates more than the input could hold: the input comes
//! from disk, and a torn or foreign record must cost a warning, not the broker.

use bytes::Bytes;

pub use crate::coordinator_record::{string_fits, RecordCodecError};
use crate::coordinator_record::{Reader, Writer};

/// The version of `OffsetCommitKey` written.
pub const OFFSET_COMMIT_KEY_VERSION: i16 = 1;
/// The version of `OffsetCommitValue` written when the commit has no expire timestamp.
pub const OFFSET_COMMIT_VALUE_VERSION: i16 = 3;
/// The version of `OffsetCommitValue` written when it has one (only v1 has the field).
pub const OFFSET_COMMIT_VALUE_VERSION_WITH_EXPIRE: i16 = 1;
/// The version of `GroupMetadataKey` written (and the only one that exists).
pub const GROUP_METADATA_KEY_VERSION: i16 = 2;
/// The version of `GroupMetadataValue` written: Kafka's highest non-flexible version.
pub const GROUP_METADATA_VALUE_VERSION: i16 = 3;
/// Highest value version Kafka defines for both value types (v4 is the first flexible one).
const VALUE_VERSION_MAX: i16 = 4;

/// `OffsetCommitValue`: one committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitValue {
    pub offset: i64,
    /// -1 when the committer did not know it (v3+; -1 when read from older versions).
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
    /// Only in v1: the per-commit retention of OffsetCommit v2-v4 requests; -1 = none.
    pub expire_timestamp_ms: i64,
}

/// One member in `GroupMetadataValue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberMetadata {
    pub member_id: String,
    /// Static membership (KIP-345), v3+.
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// v1+; -1 when read from v0.
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// The member's metadata for the group's selected protocol.
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// `GroupMetadataValue`: a classic group after a rebalance (or on becoming empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetadataValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// When the group entered its current state (v2+; -1 when unknown).
    pub current_state_timestamp_ms: i64,
    pub members: Vec<MemberMetadata>,
}

/// One record of `__consumer_offsets`, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoordinatorRecord {
    OffsetCommit {
        group: String,
        topic: String,
        partition: i32,
        /// `None` is a tombstone.
        value: Option<OffsetCommitValue>,
    },
    GroupMetadata {
        group: String,
        /// `None` is a tombstone.
        value: Option<GroupMetadataValue>,
    },
}

impl CoordinatorRecord {
    /// The group the record belongs to.
    pub fn group(&self) -> &str {
        match self {
            CoordinatorRecord::OffsetCommit { group, .. }
            | CoordinatorRecord::GroupMetadata { group, .. } => group,
        }
    }
}

// ------------------------------------------------------------------------------ encoding

/// `OffsetCommitKey` v1.
pub fn encode_offset_commit_key(group: &str, topic: &str, partition: i32) -> Vec<u8> {
    let mut w = Writer::new(OFFSET_COMMIT_KEY_VERSION, false);
    w.string(group);
    w.string(topic);
    w.i32(partition);
    w.finish()
}

/// `OffsetCommitValue` v3, or v1 when it has an expire timestamp.
pub fn encode_offset_commit_value(value: &OffsetCommitValue) -> Vec<u8> {
    let version = if value.expire_timestamp_ms >= 0 {
        OFFSET_COMMIT_VALUE_VERSION_WITH_EXPIRE
    } else {
        OFFSET_COMMIT_VALUE_VERSION
    };
    encode_offset_commit_value_version(value, version)
}

fn encode_offset_commit_value_version(value: &OffsetCommitValue, version: i16) -> Vec<u8> {
    let mut w = Writer::new(version, version >= 4);
    w.i64(value.offset);
    if version >= 3 {
        w.i32(value.leader_epoch);
    }
    w.string(&value.metadata);
    w.i64(value.commit_timestamp_ms);
    if version == 1 {
        w.i64(value.expire_timestamp_ms);
    }
    w.tagged_fields();
    w.finish()
}

/// `GroupMetadataKey` v2.
pub fn encode_group_metadata_key(group: &str) -> Vec<u8> {
    let mut w = Writer::new(GROUP_METADATA_KEY_VERSION, false);
    w.string(group);
    w.finish()
}

/// `GroupMetadataValue` v3.
pub fn encode_group_metadata_value(value: &GroupMetadataValue) -> Vec<u8> {
    encode_group_metadata_value_version(value, GROUP_METADATA_VALUE_VERSION)
}

fn encode_group_metadata_value_version(value: &GroupMetadataValue, version: i16) -> Vec<u8> {
    let mut w = Writer::new(version, version >= 4);
    w.string(&value.protocol_type);
    w.i32(value.generation);
    w.nullable_string(value.protocol.as_deref());
    w.nullable_string(value.leader.as_deref());
    if version >= 2 {
        w.i64(value.current_state_timestamp_ms);
    }
    w.array_length(Some(value.members.len()));
    for member in &value.members {
        w.string(&member.member_id);
        if version >= 3 {
            w.nullable_string(member.group_instance_id.as_deref());
        }
        w.string(&member.client_id);
        w.string(&member.client_host);
        if version >= 1 {
            w.i32(member.rebalance_timeout_ms);
        }
        w.i32(member.session_timeout_ms);
        w.bytes(&member.subscription);
        w.bytes(&member.assignment);
        w.tagged_fields();
    }
    w.tagged_fields();
    w.finish()
}

/// The key and value bytes of a record (value `None` = tombstone).
pub fn encode_record(record: &CoordinatorRecord) -> (Vec<u8>, Option<Vec<u8>>) {
    match record {
        CoordinatorRecord::OffsetCommit {
            group,
            topic,
            partition,
            value,
        } => (
            encode_offset_commit_key(group, topic, *partition),
            value.as_ref().map(encode_offset_commit_value),
        ),
        CoordinatorRecord::GroupMetadata { group, value } => (
            encode_group_metadata_key(group),
            value.as_ref().map(encode_group_metadata_value),
        ),
    }
}

/// One uncompressed v2 record batch holding `records`, all stamped `now_ms`: what the
/// coordinator appends for one operation, so the operation's records land atomically.
pub fn encode_batch(records: &[CoordinatorRecord], now_ms: i64) -> Vec<u8> {
    encode_batch_with_producer(records, None, now_ms)
}

/// [`encode_batch`] for a transactional write (TxnOffsetCommit): the producer's id and epoch,
/// the transactional attribute and base sequence 0, as Kafka's coordinator runtime writes them.
/// `None` writes a plain batch (producer fields -1).
pub fn encode_batch_with_producer(
    records: &[CoordinatorRecord],
    producer: Option<(i64, i16)>,
    now_ms: i64,
) -> Vec<u8> {
    let encoded: Vec<(Vec<u8>, Option<Vec<u8>>)> = records.iter().map(encode_record).collect();
    crate::coordinator_record::encode_batch(&encoded, producer, now_ms)
}

// ------------------------------------------------------------------------------ decoding

/// Decodes an `OffsetCommitValue` of any version.
pub fn decode_offset_commit_value(buf: &[u8]) -> Result<OffsetCommitValue, RecordCodecError> {
    let (version, mut r) = Reader::versioned(buf, "OffsetCommitValue")?;
    if !(0..=VALUE_VERSION_MAX).contains(&version) {
        return Err(RecordCodecError::UnknownVersion {
            what: "OffsetCommitValue",
            version,
        });
    }
    r.set_flexible(version >= 4);
    let offset = r.i64()?;
    let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
    let metadata = r.string()?;
    let commit_timestamp_ms = r.i64()?;
    let expire_timestamp_ms = if version == 1 { r.i64()? } else { -1 };
    r.tagged_fields()?;
    r.finish()?;
    Ok(OffsetCommitValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
        expire_timestamp_ms,
    })
}

/// Decodes a `GroupMetadataValue` of any version.
pub fn decode_group_metadata_value(buf: &[u8]) -> Result<GroupMetadataValue, RecordCodecError> {
    let (version, mut r) = Reader::versioned(buf, "GroupMetadataValue")?;
    if !(0..=VALUE_VERSION_MAX).contains(&version) {
        return Err(RecordCodecError::UnknownVersion {
            what: "GroupMetadataValue",
            version,
        });
    }
    r.set_flexible(version >= 4);
    let protocol_type = r.string()?;
    let generation = r.i32()?;
    let protocol = r.nullable_string()?;
    let leader = r.nullable_string()?;
    let current_state_timestamp_ms = if version >= 2 { r.i64()? } else { -1 };
    let count = r.array_length()?;
    let mut members = Vec::with_capacity(count);
    for _ in 0..count {
        let member_id = r.string()?;
        let group_instance_id = if version >= 3 {
            r.nullable_string()?
        } else {
            None
        };
        let client_id = r.string()?;
        let client_host = r.string()?;
        let rebalance_timeout_ms = if version >= 1 { r.i32()? } else { -1 };
        let session_timeout_ms = r.i32()?;
        let subscription = r.bytes()?;
        let assignment = r.bytes()?;
        r.tagged_fields()?;
        members.push(MemberMetadata {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    r.tagged_fields()?;
    r.finish()?;
    Ok(GroupMetadataValue {
        protocol_type,
        generation,
        protocol,
        leader,
        current_state_timestamp_ms,
        members,
    })
}

/// Decodes one record from its key and value (`None` = tombstone).
pub fn decode_record(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Result<CoordinatorRecord, RecordCodecError> {
    let key = key.ok_or(RecordCodecError::MissingKey)?;
    let (version, mut r) = Reader::versioned(key, "coordinator record key")?;
    match version {
        0 | 1 => {
            r.set_what("OffsetCommitKey");
            let group = r.string()?;
            let topic = r.string()?;
            let partition = r.i32()?;
            r.finish()?;
            Ok(CoordinatorRecord::OffsetCommit {
                group,
                topic,
                partition,
                value: value.map(decode_offset_commit_value).transpose()?,
            })
        }
        2 => {
            r.set_what("GroupMetadataKey");
            let group = r.string()?;
            r.finish()?;
            Ok(CoordinatorRecord::GroupMetadata {
                group,
                value: value.map(decode_group_metadata_value).transpose()?,
            })
        }
        v if v > 2 => Err(RecordCodecError::UnsupportedRecordType(v)),
        v => Err(RecordCodecError::UnknownVersion {
            what: "coordinator record key",
            version: v,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn offset_value(expire: i64) -> OffsetCommitValue {
        OffsetCommitValue {
            offset: 42,
            leader_epoch: 3,
            metadata: "meta".into(),
            commit_timestamp_ms: 1_700_000_000_000,
            expire_timestamp_ms: expire,
        }
    }

    /// Bytes checked against Kafka's layout by hand: version, then the fields in spec order.
    #[test]
    fn offset_commit_records_use_kafka_layout() {
        let key = encode_offset_commit_key("g", "t", 7);
        assert_eq!(key, [0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 7]);
        let value = encode_offset_commit_value(&offset_value(-1));
        let mut expected = vec![0, 3];
        expected.extend_from_slice(&42i64.to_be_bytes());
        expected.extend_from_slice(&3i32.to_be_bytes());
        expected.extend_from_slice(&[0, 4]);
        expected.extend_from_slice(b"meta");
        expected.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
        assert_eq!(value, expected);
        // With an expire timestamp only v1 can carry it: no leader epoch, expire at the end.
        let v1 = encode_offset_commit_value(&offset_value(5));
        assert_eq!(&v1[..2], &[0, 1]);
        assert_eq!(v1.len(), 2 + 8 + 2 + 4 + 8 + 8);
        assert_eq!(decode_offset_commit_value(&v1).unwrap().leader_epoch, -1);
    }

    #[test]
    fn group_metadata_key_is_version_two() {
        assert_eq!(encode_group_metadata_key("ab"), [0, 2, 0, 2, b'a', b'b']);
        let record = decode_record(Some(&encode_group_metadata_key("ab")), None).unwrap();
        assert_eq!(
            record,
            CoordinatorRecord::GroupMetadata {
                group: "ab".into(),
                value: None
            }
        );
    }

    #[test]
    fn consumer_group_records_are_reported_as_unsupported() {
        // ConsumerGroupMetadataKey is key version 3 in Kafka.
        let key = [0u8, 3, 0, 1, b'g'];
        assert_eq!(
            decode_record(Some(&key), Some(&[0, 0])),
            Err(RecordCodecError::UnsupportedRecordType(3))
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode_record(None, None).is_err());
        assert!(decode_record(Some(&[0]), None).is_err());
        // A member count far beyond the bytes left.
        let mut value = vec![0, 3, 0, 0, 0, 0, 0, 1, 255, 255, 255, 255];
        value.extend_from_slice(&0i64.to_be_bytes());
        value.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(decode_group_metadata_value(&value).is_err());
    }

    fn arb_string() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9._-]{0,20}"
    }

    fn arb_member() -> impl Strategy<Value = MemberMetadata> {
        (
            arb_string(),
            proptest::option::of(arb_string()),
            arb_string(),
            arb_string(),
            any::<i32>(),
            any::<i32>(),
            proptest::collection::vec(any::<u8>(), 0..40),
            proptest::collection::vec(any::<u8>(), 0..40),
        )
            .prop_map(
                |(member_id, group_instance_id, client_id, client_host, rt, st, sub, asg)| {
                    MemberMetadata {
                        member_id,
                        group_instance_id,
                        client_id,
                        client_host,
                        rebalance_timeout_ms: rt,
                        session_timeout_ms: st,
                        subscription: Bytes::from(sub),
                        assignment: Bytes::from(asg),
                    }
                },
            )
    }

    fn arb_group_value() -> impl Strategy<Value = GroupMetadataValue> {
        (
            arb_string(),
            any::<i32>(),
            proptest::option::of(arb_string()),
            proptest::option::of(arb_string()),
            any::<i64>(),
            proptest::collection::vec(arb_member(), 0..5),
        )
            .prop_map(
                |(protocol_type, generation, protocol, leader, ts, members)| GroupMetadataValue {
                    protocol_type,
                    generation,
                    protocol,
                    leader,
                    current_state_timestamp_ms: ts,
                    members,
                },
            )
    }

    /// What a value looks like after a trip through `version`: fields the version lacks come
    /// back as their defaults.
    fn group_value_at(mut value: GroupMetadataValue, version: i16) -> GroupMetadataValue {
        if version < 2 {
            value.current_state_timestamp_ms = -1;
        }
        for member in &mut value.members {
            if version < 3 {
                member.group_instance_id = None;
            }
            if version < 1 {
                member.rebalance_timeout_ms = -1;
            }
        }
        value
    }

    proptest! {
        #[test]
        fn group_metadata_round_trips_at_every_version(value in arb_group_value(), version in 0i16..=4) {
            let bytes = encode_group_metadata_value_version(&value, version);
            prop_assert_eq!(decode_group_metadata_value(&bytes).unwrap(), group_value_at(value, version));
        }

        #[test]
        fn offset_commit_round_trips_at_every_version(
            offset in any::<i64>(), epoch in any::<i32>(), metadata in arb_string(),
            ts in any::<i64>(), expire in any::<i64>(), version in 0i16..=4,
        ) {
            let value = OffsetCommitValue {
                offset, leader_epoch: epoch, metadata, commit_timestamp_ms: ts, expire_timestamp_ms: expire,
            };
            let bytes = encode_offset_commit_value_version(&value, version);
            let mut expected = value.clone();
            if version < 3 { expected.leader_epoch = -1; }
            if version != 1 { expected.expire_timestamp_ms = -1; }
            prop_assert_eq!(decode_offset_commit_value(&bytes).unwrap(), expected);
        }

        #[test]
        fn records_round_trip_through_the_written_versions(
            group in arb_string(), topic in arb_string(), partition in any::<i32>(),
            tombstone in any::<bool>(), group_value in arb_group_value(),
        ) {
            let offset = CoordinatorRecord::OffsetCommit {
                group: group.clone(), topic, partition,
                value: (!tombstone).then(|| offset_value(-1)),
            };
            let (k, v) = encode_record(&offset);
            prop_assert_eq!(decode_record(Some(&k), v.as_deref()).unwrap(), offset);
            let metadata = CoordinatorRecord::GroupMetadata {
                group, value: (!tombstone).then_some(group_value),
            };
            let (k, v) = encode_record(&metadata);
            prop_assert_eq!(decode_record(Some(&k), v.as_deref()).unwrap(), metadata);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(
            key in proptest::collection::vec(any::<u8>(), 0..64),
            value in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..128)),
        ) {
            let _ = decode_record(Some(&key), value.as_deref());
        }
    }
}
