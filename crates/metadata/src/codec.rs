//! The bytes of metadata records: Kafka's `ApiMessageAndVersion` serialization
//! (`AbstractApiMessageSerde`): frame version (unsigned varint, always 1), apiKey (unsigned
//! varint), version (unsigned varint), then the message body in Kafka's *flexible* encoding:
//! big-endian ints, `uuid` as 16 bytes (most significant first), compact strings and arrays
//! (unsigned varint length + 1, 0 = null), and after every struct a tagged-fields section
//! (unsigned varint count, then per field: tag, size, bytes). Tagged fields are written only
//! when they differ from the schema default, in ascending tag order.
//!
//! One version per record, encoded and accepted exactly (any other version is
//! [`CodecError::UnsupportedVersion`]):
//!
//! | record | apiKey | version | tagged fields (tag: field, written when) |
//! |---|---|---|---|
//! | RegisterBrokerRecord | 0 | 1 | — (v1 adds InControlledShutdown; no IsMigratingZkBroker/LogDirs) |
//! | UnregisterBrokerRecord | 1 | 0 | — |
//! | TopicRecord | 2 | 0 | — |
//! | PartitionRecord | 3 | 0 | 0: LeaderRecoveryState, != 0 (v0: no Directories) |
//! | ConfigRecord | 4 | 0 | — |
//! | PartitionChangeRecord | 5 | 0 | 0: Isr, 1: Leader (!= -2), 2: Replicas, 3: RemovingReplicas, 4: AddingReplicas (lists when not null), 5: LeaderRecoveryState (!= -1) |
//! | FenceBrokerRecord | 7 | 0 | — |
//! | UnfenceBrokerRecord | 8 | 0 | — |
//! | RemoveTopicRecord | 9 | 0 | — |
//! | FeatureLevelRecord | 12 | 0 | — |
//! | ProducerIdsRecord | 15 | 0 | — |
//! | BrokerRegistrationChangeRecord | 17 | 1 | 0: Fenced (!= 0), 1: InControlledShutdown (!= 0) |
//! | UserScramCredentialRecord | 11 | 0 | — (Salt, StoredKey, ServerKey as compact bytes) |
//! | ClientQuotaRecord | 14 | 0 | — (Entity[] of {EntityType, EntityName nullable}, Key, Value float64, Remove) |
//! | AccessControlEntryRecord | 18 | 0 | — |
//! | RemoveAccessControlEntryRecord | 19 | 0 | — |
//! | NoOpRecord | 20 | 0 | — |
//! | RemoveUserScramCredentialRecord | 22 | 0 | — |
//! | FjordClusterIdRecord | 10000 | 0 | — (body: ClusterId compact string) |
//!
//! Unknown tags are skipped, as Kafka's generated readers do (they keep them as unknown tagged
//! fields; Fjord drops them). A known tagged field must fill its declared size exactly.
//!
//! A Raft entry's payload is a *batch*: an unsigned varint record count, then the frames back to
//! back ([`encode_batch`], [`decode_batch`]). Decoding never panics and never allocates more than
//! the input can describe: every length is checked against [`STRING_LEN_MAX_BYTES`],
//! [`ARRAY_LEN_MAX`] and the bytes remaining.

use uuid::Uuid;

use crate::records::{
    api_key, AccessControlEntryRecord, BrokerEndpoint, BrokerFeature,
    BrokerRegistrationChangeRecord, ClientQuotaEntityData, ClientQuotaRecord, ClusterIdRecord,
    ConfigRecord, FeatureLevelRecord, FenceBrokerRecord, MetadataRecord, PartitionChangeRecord,
    PartitionRecord, ProducerIdsRecord, RegisterBrokerRecord, RemoveAccessControlEntryRecord,
    RemoveTopicRecord, RemoveUserScramCredentialRecord, TopicRecord, UnfenceBrokerRecord,
    UnregisterBrokerRecord, UserScramCredentialRecord, LEADER_RECOVERY_STATE_NO_CHANGE,
    LEADER_RECOVERY_STATE_RECOVERED, NO_LEADER_CHANGE,
};

/// The `ApiMessageAndVersion` frame version Kafka writes and Fjord accepts.
pub const FRAME_VERSION: u32 = 1;
/// Longest string accepted (Kafka's `Short.MAX_VALUE`, below 32 KiB).
pub const STRING_LEN_MAX_BYTES: usize = 32_767;
/// Longest `bytes` field accepted (salts and SCRAM keys are a few dozen bytes).
pub const BYTES_LEN_MAX: usize = 32_767;
/// Most elements accepted in one array, and most records in one batch.
pub const ARRAY_LEN_MAX: usize = 1_000_000;

/// Why bytes are not a valid record or batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("truncated: {needed} bytes needed at position {position}, {remaining} left")]
    Truncated {
        position: usize,
        needed: usize,
        remaining: usize,
    },
    #[error("unsigned varint longer than 5 bytes at position {position}")]
    VarintTooLong { position: usize },
    #[error("unsupported frame version {version} (only {FRAME_VERSION})")]
    UnsupportedFrameVersion { version: u32 },
    #[error("unknown metadata record apiKey {api_key}")]
    UnknownApiKey { api_key: u32 },
    #[error("unsupported version {version} of metadata record apiKey {api_key} (only {expected})")]
    UnsupportedVersion {
        api_key: u16,
        version: u32,
        expected: u16,
    },
    #[error("{field}: string of {len} bytes is longer than {STRING_LEN_MAX_BYTES}")]
    StringTooLong { field: &'static str, len: usize },
    #[error("{field}: {len} bytes is longer than {BYTES_LEN_MAX}")]
    BytesTooLong { field: &'static str, len: usize },
    #[error("{field}: invalid UTF-8")]
    InvalidUtf8 { field: &'static str },
    #[error("{field}: null is not allowed")]
    UnexpectedNull { field: &'static str },
    #[error("{field}: {len} elements exceed the limit or the bytes left")]
    ArrayTooLong { field: &'static str, len: usize },
    #[error("tagged field {tag}: {left} of its bytes unread")]
    TaggedFieldSize { tag: u32, left: usize },
    #[error("{count} bytes after the last record")]
    TrailingBytes { count: usize },
}

/// A flexible-version writer over a byte vector.
struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

impl Writer<'_> {
    fn uvarint(&mut self, mut v: u32) {
        while v >= 0x80 {
            self.out.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.out.push(v as u8);
    }
    fn i8(&mut self, v: i8) {
        self.out.push(v as u8);
    }
    fn bool(&mut self, v: bool) {
        self.out.push(u8::from(v));
    }
    fn i16(&mut self, v: i16) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }
    fn u16(&mut self, v: u16) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }
    fn i32(&mut self, v: i32) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }
    fn uuid(&mut self, v: &Uuid) {
        self.out.extend_from_slice(v.as_bytes());
    }
    fn f64(&mut self, v: f64) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }
    /// Compact (non-nullable) bytes.
    fn bytes(&mut self, v: &[u8]) {
        debug_assert!(v.len() <= BYTES_LEN_MAX, "bytes too long to encode");
        self.len(Some(v.len()));
        self.out.extend_from_slice(v);
    }
    /// Compact length: `len + 1`, 0 for null.
    fn len(&mut self, len: Option<usize>) {
        let v = len.map_or(0, |l| l.saturating_add(1));
        // Lengths beyond u32 cannot be described by Kafka's encoding; callers validate sizes
        // long before (strings, arrays of brokers).
        debug_assert!(v <= u32::MAX as usize);
        self.uvarint(u32::try_from(v).unwrap_or(u32::MAX));
    }
    fn string(&mut self, s: &str) {
        debug_assert!(s.len() <= STRING_LEN_MAX_BYTES, "string too long to encode");
        self.len(Some(s.len()));
        self.out.extend_from_slice(s.as_bytes());
    }
    fn nullable_string(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.string(s),
            None => self.len(None),
        }
    }
    fn i32_array(&mut self, v: &[i32]) {
        self.len(Some(v.len()));
        for x in v {
            self.i32(*x);
        }
    }
    /// A tagged-fields section; `fields` must be in ascending tag order.
    fn tagged_fields(&mut self, fields: &[(u32, Vec<u8>)]) {
        debug_assert!(fields.windows(2).all(|w| w[0].0 < w[1].0));
        // The count is a plain unsigned varint (not a compact length); at most a handful.
        self.uvarint(fields.len() as u32);
        for (tag, data) in fields {
            self.uvarint(*tag);
            self.uvarint(data.len() as u32);
            self.out.extend_from_slice(data);
        }
    }
    fn no_tagged_fields(&mut self) {
        self.uvarint(0);
    }
}

/// Encodes one field into its own buffer (for a tagged field's data).
fn tagged(f: impl FnOnce(&mut Writer<'_>)) -> Vec<u8> {
    let mut data = Vec::new();
    f(&mut Writer { out: &mut data });
    data
}

/// A flexible-version reader over a byte slice.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if n > self.remaining() {
            return Err(CodecError::Truncated {
                position: self.pos,
                needed: n,
                remaining: self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    /// Kafka `ByteUtils.readUnsignedVarint`: at most 5 bytes.
    fn uvarint(&mut self) -> Result<u32, CodecError> {
        let start = self.pos;
        let mut value: u32 = 0;
        for i in 0..5 {
            let b = self.take(1)?[0];
            value |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(CodecError::VarintTooLong { position: start })
    }
    fn i8(&mut self) -> Result<i8, CodecError> {
        Ok(i8::from_be_bytes(self.array()?))
    }
    fn bool(&mut self) -> Result<bool, CodecError> {
        Ok(self.take(1)?[0] != 0)
    }
    fn i16(&mut self) -> Result<i16, CodecError> {
        Ok(i16::from_be_bytes(self.array()?))
    }
    fn u16(&mut self) -> Result<u16, CodecError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn i32(&mut self) -> Result<i32, CodecError> {
        Ok(i32::from_be_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, CodecError> {
        Ok(i64::from_be_bytes(self.array()?))
    }
    fn uuid(&mut self) -> Result<Uuid, CodecError> {
        Ok(Uuid::from_bytes(self.array()?))
    }
    fn f64(&mut self) -> Result<f64, CodecError> {
        Ok(f64::from_be_bytes(self.array()?))
    }
    fn bytes(&mut self, field: &'static str) -> Result<Vec<u8>, CodecError> {
        let len = self.len()?.ok_or(CodecError::UnexpectedNull { field })?;
        if len > BYTES_LEN_MAX {
            return Err(CodecError::BytesTooLong { field, len });
        }
        Ok(self.take(len)?.to_vec())
    }
    /// Compact length: `None` for null.
    fn len(&mut self) -> Result<Option<usize>, CodecError> {
        let v = self.uvarint()?;
        Ok(v.checked_sub(1).map(|l| l as usize))
    }
    fn nullable_string(&mut self, field: &'static str) -> Result<Option<String>, CodecError> {
        let Some(len) = self.len()? else {
            return Ok(None);
        };
        if len > STRING_LEN_MAX_BYTES {
            return Err(CodecError::StringTooLong { field, len });
        }
        let bytes = self.take(len)?;
        let s = std::str::from_utf8(bytes).map_err(|_| CodecError::InvalidUtf8 { field })?;
        Ok(Some(s.to_string()))
    }
    fn string(&mut self, field: &'static str) -> Result<String, CodecError> {
        self.nullable_string(field)?
            .ok_or(CodecError::UnexpectedNull { field })
    }
    /// An array length, checked against the limit and `min_element_bytes` per element.
    fn array_len(
        &mut self,
        field: &'static str,
        min_element_bytes: usize,
    ) -> Result<Option<usize>, CodecError> {
        let Some(len) = self.len()? else {
            return Ok(None);
        };
        if len > ARRAY_LEN_MAX || len.saturating_mul(min_element_bytes) > self.remaining() {
            return Err(CodecError::ArrayTooLong { field, len });
        }
        Ok(Some(len))
    }
    fn nullable_i32_array(&mut self, field: &'static str) -> Result<Option<Vec<i32>>, CodecError> {
        let Some(len) = self.array_len(field, 4)? else {
            return Ok(None);
        };
        let mut v = Vec::with_capacity(len);
        for _ in 0..len {
            v.push(self.i32()?);
        }
        Ok(Some(v))
    }
    fn i32_array(&mut self, field: &'static str) -> Result<Vec<i32>, CodecError> {
        self.nullable_i32_array(field)?
            .ok_or(CodecError::UnexpectedNull { field })
    }
    fn struct_array<T>(
        &mut self,
        field: &'static str,
        min_element_bytes: usize,
        mut element: impl FnMut(&mut Self) -> Result<T, CodecError>,
    ) -> Result<Vec<T>, CodecError> {
        let len = self
            .array_len(field, min_element_bytes)?
            .ok_or(CodecError::UnexpectedNull { field })?;
        let mut v = Vec::with_capacity(len);
        for _ in 0..len {
            v.push(element(self)?);
        }
        Ok(v)
    }
    /// A tagged-fields section. `known(tag, reader)` decodes a known tag from a reader over
    /// exactly its bytes and returns `Ok(true)`, or returns `Ok(false)` to skip it.
    fn tagged_fields(
        &mut self,
        mut known: impl FnMut(u32, &mut Reader<'a>) -> Result<bool, CodecError>,
    ) -> Result<(), CodecError> {
        let count = self.uvarint()? as usize;
        // Each tagged field takes at least two bytes (tag, size).
        if count.saturating_mul(2) > self.remaining() {
            return Err(CodecError::ArrayTooLong {
                field: "tagged fields",
                len: count,
            });
        }
        for _ in 0..count {
            let tag = self.uvarint()?;
            let size = self.uvarint()? as usize;
            let mut sub = Reader::new(self.take(size)?);
            if known(tag, &mut sub)? && sub.remaining() > 0 {
                return Err(CodecError::TaggedFieldSize {
                    tag,
                    left: sub.remaining(),
                });
            }
        }
        Ok(())
    }
    fn no_known_tagged_fields(&mut self) -> Result<(), CodecError> {
        self.tagged_fields(|_, _| Ok(false))
    }
}

/// The version Fjord writes and accepts for `api_key`, or `None` if the key is unknown.
pub fn record_version(api_key: u16) -> Option<u16> {
    match api_key {
        api_key::REGISTER_BROKER | api_key::BROKER_REGISTRATION_CHANGE => Some(1),
        api_key::UNREGISTER_BROKER
        | api_key::TOPIC
        | api_key::PARTITION
        | api_key::CONFIG
        | api_key::PARTITION_CHANGE
        | api_key::FENCE_BROKER
        | api_key::UNFENCE_BROKER
        | api_key::REMOVE_TOPIC
        | api_key::FEATURE_LEVEL
        | api_key::PRODUCER_IDS
        | api_key::NO_OP
        | api_key::USER_SCRAM_CREDENTIAL
        | api_key::CLIENT_QUOTA
        | api_key::ACCESS_CONTROL_ENTRY
        | api_key::REMOVE_ACCESS_CONTROL_ENTRY
        | api_key::REMOVE_USER_SCRAM_CREDENTIAL
        | api_key::FJORD_CLUSTER_ID => Some(0),
        _ => None,
    }
}

/// Appends one record's `ApiMessageAndVersion` frame to `out`.
pub fn encode_record(record: &MetadataRecord, out: &mut Vec<u8>) {
    let key = record.api_key();
    let version = record_version(key).unwrap_or(0);
    let mut w = Writer { out };
    w.uvarint(FRAME_VERSION);
    w.uvarint(u32::from(key));
    w.uvarint(u32::from(version));
    match record {
        MetadataRecord::RegisterBroker(r) => {
            w.i32(r.broker_id);
            w.uuid(&r.incarnation_id);
            w.i64(r.broker_epoch);
            w.len(Some(r.end_points.len()));
            for e in &r.end_points {
                w.string(&e.name);
                w.string(&e.host);
                w.u16(e.port);
                w.i16(e.security_protocol);
                w.no_tagged_fields();
            }
            w.len(Some(r.features.len()));
            for f in &r.features {
                w.string(&f.name);
                w.i16(f.min_supported_version);
                w.i16(f.max_supported_version);
                w.no_tagged_fields();
            }
            w.nullable_string(r.rack.as_deref());
            w.bool(r.fenced);
            w.bool(r.in_controlled_shutdown);
            w.no_tagged_fields();
        }
        MetadataRecord::UnregisterBroker(r) => {
            w.i32(r.broker_id);
            w.i64(r.broker_epoch);
            w.no_tagged_fields();
        }
        MetadataRecord::Topic(r) => {
            w.string(&r.name);
            w.uuid(&r.topic_id);
            w.no_tagged_fields();
        }
        MetadataRecord::Partition(r) => {
            w.i32(r.partition_id);
            w.uuid(&r.topic_id);
            w.i32_array(&r.replicas);
            w.i32_array(&r.isr);
            w.i32_array(&r.removing_replicas);
            w.i32_array(&r.adding_replicas);
            w.i32(r.leader);
            w.i32(r.leader_epoch);
            w.i32(r.partition_epoch);
            let mut tags = Vec::new();
            if r.leader_recovery_state != LEADER_RECOVERY_STATE_RECOVERED {
                tags.push((0, tagged(|t| t.i8(r.leader_recovery_state))));
            }
            w.tagged_fields(&tags);
        }
        MetadataRecord::Config(r) => {
            w.i8(r.resource_type);
            w.string(&r.resource_name);
            w.string(&r.name);
            w.nullable_string(r.value.as_deref());
            w.no_tagged_fields();
        }
        MetadataRecord::PartitionChange(r) => {
            w.i32(r.partition_id);
            w.uuid(&r.topic_id);
            let mut tags = Vec::new();
            if let Some(isr) = &r.isr {
                tags.push((0, tagged(|t| t.i32_array(isr))));
            }
            if r.leader != NO_LEADER_CHANGE {
                tags.push((1, tagged(|t| t.i32(r.leader))));
            }
            if let Some(replicas) = &r.replicas {
                tags.push((2, tagged(|t| t.i32_array(replicas))));
            }
            if let Some(removing) = &r.removing_replicas {
                tags.push((3, tagged(|t| t.i32_array(removing))));
            }
            if let Some(adding) = &r.adding_replicas {
                tags.push((4, tagged(|t| t.i32_array(adding))));
            }
            if r.leader_recovery_state != LEADER_RECOVERY_STATE_NO_CHANGE {
                tags.push((5, tagged(|t| t.i8(r.leader_recovery_state))));
            }
            w.tagged_fields(&tags);
        }
        MetadataRecord::FenceBroker(r) => {
            w.i32(r.id);
            w.i64(r.epoch);
            w.no_tagged_fields();
        }
        MetadataRecord::UnfenceBroker(r) => {
            w.i32(r.id);
            w.i64(r.epoch);
            w.no_tagged_fields();
        }
        MetadataRecord::RemoveTopic(r) => {
            w.uuid(&r.topic_id);
            w.no_tagged_fields();
        }
        MetadataRecord::FeatureLevel(r) => {
            w.string(&r.name);
            w.i16(r.feature_level);
            w.no_tagged_fields();
        }
        MetadataRecord::ProducerIds(r) => {
            w.i32(r.broker_id);
            w.i64(r.broker_epoch);
            w.i64(r.next_producer_id);
            w.no_tagged_fields();
        }
        MetadataRecord::BrokerRegistrationChange(r) => {
            w.i32(r.broker_id);
            w.i64(r.broker_epoch);
            let mut tags = Vec::new();
            if r.fenced != 0 {
                tags.push((0, tagged(|t| t.i8(r.fenced))));
            }
            if r.in_controlled_shutdown != 0 {
                tags.push((1, tagged(|t| t.i8(r.in_controlled_shutdown))));
            }
            w.tagged_fields(&tags);
        }
        MetadataRecord::NoOp => w.no_tagged_fields(),
        MetadataRecord::ClusterId(r) => {
            w.string(&r.cluster_id);
            w.no_tagged_fields();
        }
        MetadataRecord::UserScramCredential(r) => {
            w.string(&r.name);
            w.i8(r.mechanism);
            w.bytes(&r.salt);
            w.bytes(&r.stored_key);
            w.bytes(&r.server_key);
            w.i32(r.iterations);
            w.no_tagged_fields();
        }
        MetadataRecord::ClientQuota(r) => {
            w.len(Some(r.entity.len()));
            for e in &r.entity {
                w.string(&e.entity_type);
                w.nullable_string(e.entity_name.as_deref());
                w.no_tagged_fields();
            }
            w.string(&r.key);
            w.f64(r.value);
            w.bool(r.remove);
            w.no_tagged_fields();
        }
        MetadataRecord::AccessControlEntry(r) => {
            w.uuid(&r.id);
            w.i8(r.resource_type);
            w.string(&r.resource_name);
            w.i8(r.pattern_type);
            w.string(&r.principal);
            w.string(&r.host);
            w.i8(r.operation);
            w.i8(r.permission_type);
            w.no_tagged_fields();
        }
        MetadataRecord::RemoveAccessControlEntry(r) => {
            w.uuid(&r.id);
            w.no_tagged_fields();
        }
        MetadataRecord::RemoveUserScramCredential(r) => {
            w.string(&r.name);
            w.i8(r.mechanism);
            w.no_tagged_fields();
        }
    }
}

/// Decodes exactly one frame; bytes after it are [`CodecError::TrailingBytes`].
pub fn decode_record(bytes: &[u8]) -> Result<MetadataRecord, CodecError> {
    let mut r = Reader::new(bytes);
    let record = read_record(&mut r)?;
    if r.remaining() > 0 {
        return Err(CodecError::TrailingBytes {
            count: r.remaining(),
        });
    }
    Ok(record)
}

/// One Raft entry's payload: uvarint record count, then each record's frame.
pub fn encode_batch(records: &[MetadataRecord]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 * records.len() + 5);
    debug_assert!(records.len() <= ARRAY_LEN_MAX, "batch too large to decode");
    Writer { out: &mut out }.uvarint(u32::try_from(records.len()).unwrap_or(u32::MAX));
    for record in records {
        encode_record(record, &mut out);
    }
    out
}

/// Decodes a payload written by [`encode_batch`]; all bytes must be used.
pub fn decode_batch(bytes: &[u8]) -> Result<Vec<MetadataRecord>, CodecError> {
    let mut r = Reader::new(bytes);
    let count = r.uvarint()? as usize;
    // A frame takes at least 4 bytes (frame version, apiKey, version, tagged fields).
    if count > ARRAY_LEN_MAX || count.saturating_mul(4) > r.remaining() {
        return Err(CodecError::ArrayTooLong {
            field: "batch",
            len: count,
        });
    }
    let mut records = Vec::with_capacity(count);
    for _ in 0..count {
        records.push(read_record(&mut r)?);
    }
    if r.remaining() > 0 {
        return Err(CodecError::TrailingBytes {
            count: r.remaining(),
        });
    }
    Ok(records)
}

fn read_record(r: &mut Reader<'_>) -> Result<MetadataRecord, CodecError> {
    let frame_version = r.uvarint()?;
    if frame_version != FRAME_VERSION {
        return Err(CodecError::UnsupportedFrameVersion {
            version: frame_version,
        });
    }
    let raw_key = r.uvarint()?;
    let (key, expected) = u16::try_from(raw_key)
        .ok()
        .and_then(|k| Some((k, record_version(k)?)))
        .ok_or(CodecError::UnknownApiKey { api_key: raw_key })?;
    let version = r.uvarint()?;
    if version != u32::from(expected) {
        return Err(CodecError::UnsupportedVersion {
            api_key: key,
            version,
            expected,
        });
    }
    let record = match key {
        api_key::REGISTER_BROKER => {
            let broker_id = r.i32()?;
            let incarnation_id = r.uuid()?;
            let broker_epoch = r.i64()?;
            // name(1) + host(1) + port(2) + protocol(2) + tagged fields(1)
            let end_points = r.struct_array("EndPoints", 7, |r| {
                let e = BrokerEndpoint {
                    name: r.string("EndPoints.Name")?,
                    host: r.string("EndPoints.Host")?,
                    port: r.u16()?,
                    security_protocol: r.i16()?,
                };
                r.no_known_tagged_fields()?;
                Ok(e)
            })?;
            // name(1) + min(2) + max(2) + tagged fields(1)
            let features = r.struct_array("Features", 6, |r| {
                let f = BrokerFeature {
                    name: r.string("Features.Name")?,
                    min_supported_version: r.i16()?,
                    max_supported_version: r.i16()?,
                };
                r.no_known_tagged_fields()?;
                Ok(f)
            })?;
            let rack = r.nullable_string("Rack")?;
            let fenced = r.bool()?;
            let in_controlled_shutdown = r.bool()?;
            r.no_known_tagged_fields()?;
            MetadataRecord::RegisterBroker(RegisterBrokerRecord {
                broker_id,
                incarnation_id,
                broker_epoch,
                end_points,
                features,
                rack,
                fenced,
                in_controlled_shutdown,
            })
        }
        api_key::UNREGISTER_BROKER => {
            let record = UnregisterBrokerRecord {
                broker_id: r.i32()?,
                broker_epoch: r.i64()?,
            };
            r.no_known_tagged_fields()?;
            MetadataRecord::UnregisterBroker(record)
        }
        api_key::TOPIC => {
            let record = TopicRecord {
                name: r.string("Name")?,
                topic_id: r.uuid()?,
            };
            r.no_known_tagged_fields()?;
            MetadataRecord::Topic(record)
        }
        api_key::PARTITION => {
            let mut record = PartitionRecord {
                partition_id: r.i32()?,
                topic_id: r.uuid()?,
                replicas: r.i32_array("Replicas")?,
                isr: r.i32_array("Isr")?,
                removing_replicas: r.i32_array("RemovingReplicas")?,
                adding_replicas: r.i32_array("AddingReplicas")?,
                leader: r.i32()?,
                leader_recovery_state: LEADER_RECOVERY_STATE_RECOVERED,
                leader_epoch: r.i32()?,
                partition_epoch: r.i32()?,
            };
            r.tagged_fields(|tag, t| match tag {
                0 => {
                    record.leader_recovery_state = t.i8()?;
                    Ok(true)
                }
                _ => Ok(false),
            })?;
            MetadataRecord::Partition(record)
        }
        api_key::CONFIG => {
            let record = ConfigRecord {
                resource_type: r.i8()?,
                resource_name: r.string("ResourceName")?,
                name: r.string("Name")?,
                value: r.nullable_string("Value")?,
            };
            r.no_known_tagged_fields()?;
            MetadataRecord::Config(record)
        }
        api_key::PARTITION_CHANGE => {
            let mut record = PartitionChangeRecord::unchanged(Uuid::nil(), 0);
            record.partition_id = r.i32()?;
            record.topic_id = r.uuid()?;
            r.tagged_fields(|tag, t| {
                match tag {
                    0 => record.isr = t.nullable_i32_array("Isr")?,
                    1 => record.leader = t.i32()?,
                    2 => record.replicas = t.nullable_i32_array("Replicas")?,
                    3 => record.removing_replicas = t.nullable_i32_array("RemovingReplicas")?,
                    4 => record.adding_replicas = t.nullable_i32_array("AddingReplicas")?,
                    5 => record.leader_recovery_state = t.i8()?,
                    _ => return Ok(false),
                }
                Ok(true)
            })?;
            MetadataRecord::PartitionChange(record)
        }
        api_key::FENCE_BROKER => {
            let record = FenceBrokerRecord {
                id: r.i32()?,
                epoch: r.i64()?,
            };
            r.no_known_tagged_fields()?;
            MetadataRecord::FenceBroker(record)
        }
        api_key::UNFENCE_BROKER => {
            let record = UnfenceBrokerRecord {
                id: r.i32()?,
                epoch: r.i64()?,
            };
            r.no_known_tagged_fields()?;
            MetadataRecord::UnfenceBroker(record)
        }
        api_key::REMOVE_TOPIC => {
            let record = RemoveTopicRecord {
                topic_id: r.uuid()?,
            };
            r.no_known_tagged_fields()?;
            MetadataRecord::RemoveTopic(record)
        }
        api_key::FEATURE_LEVEL => {
            let record = FeatureLevelRecord {
                name: r.string("Name")?,
                feature_level: r.i16()?,
            };
            r.no_known_tagged_fields()?;
            MetadataRecord::FeatureLevel(record)
        }
        api_key::PRODUCER_IDS => {
            let record = ProducerIdsRecord {
                broker_id: r.i32()?,
                broker_epoch: r.i64()?,
                next_producer_id: r.i64()?,
            };
            r.no_known_tagged_fields()?;
            MetadataRecord::ProducerIds(record)
        }
        api_key::BROKER_REGISTRATION_CHANGE => {
            let mut record = BrokerRegistrationChangeRecord {
                broker_id: r.i32()?,
                broker_epoch: r.i64()?,
                fenced: 0,
                in_controlled_shutdown: 0,
            };
            r.tagged_fields(|tag, t| {
                match tag {
                    0 => record.fenced = t.i8()?,
                    1 => record.in_controlled_shutdown = t.i8()?,
                    _ => return Ok(false),
                }
                Ok(true)
            })?;
            MetadataRecord::BrokerRegistrationChange(record)
        }
        api_key::NO_OP => {
            r.no_known_tagged_fields()?;
            MetadataRecord::NoOp
        }
        api_key::FJORD_CLUSTER_ID => {
            let record = ClusterIdRecord {
                cluster_id: r.string("ClusterId")?,
            };
            r.no_known_tagged_fields()?;
            MetadataRecord::ClusterId(record)
        }
        api_key::USER_SCRAM_CREDENTIAL => {
            let record = UserScramCredentialRecord {
                name: r.string("Name")?,
                mechanism: r.i8()?,
                salt: r.bytes("Salt")?,
                stored_key: r.bytes("StoredKey")?,
                server_key: r.bytes("ServerKey")?,
                iterations: r.i32()?,
            };
            r.no_known_tagged_fields()?;
            MetadataRecord::UserScramCredential(record)
        }
        api_key::CLIENT_QUOTA => {
            // type(1) + name(1) + tagged fields(1)
            let entity = r.struct_array("Entity", 3, |r| {
                let e = ClientQuotaEntityData {
                    entity_type: r.string("Entity.EntityType")?,
                    entity_name: r.nullable_string("Entity.EntityName")?,
                };
                r.no_known_tagged_fields()?;
                Ok(e)
            })?;
            let record = ClientQuotaRecord {
                entity,
                key: r.string("Key")?,
                value: r.f64()?,
                remove: r.bool()?,
            };
            r.no_known_tagged_fields()?;
            MetadataRecord::ClientQuota(record)
        }
        api_key::ACCESS_CONTROL_ENTRY => {
            let record = AccessControlEntryRecord {
                id: r.uuid()?,
                resource_type: r.i8()?,
                resource_name: r.string("ResourceName")?,
                pattern_type: r.i8()?,
                principal: r.string("Principal")?,
                host: r.string("Host")?,
                operation: r.i8()?,
                permission_type: r.i8()?,
            };
            r.no_known_tagged_fields()?;
            MetadataRecord::AccessControlEntry(record)
        }
        api_key::REMOVE_ACCESS_CONTROL_ENTRY => {
            let record = RemoveAccessControlEntryRecord { id: r.uuid()? };
            r.no_known_tagged_fields()?;
            MetadataRecord::RemoveAccessControlEntry(record)
        }
        api_key::REMOVE_USER_SCRAM_CREDENTIAL => {
            let record = RemoveUserScramCredentialRecord {
                name: r.string("Name")?,
                mechanism: r.i8()?,
            };
            r.no_known_tagged_fields()?;
            MetadataRecord::RemoveUserScramCredential(record)
        }
        other => {
            return Err(CodecError::UnknownApiKey {
                api_key: u32::from(other),
            })
        }
    };
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::strategy::Union;

    fn uuid() -> impl Strategy<Value = Uuid> {
        any::<u128>().prop_map(Uuid::from_u128)
    }
    fn text() -> impl Strategy<Value = String> {
        ".{0,12}"
    }
    fn bytes() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>(), 0..40)
    }
    fn ints() -> impl Strategy<Value = Vec<i32>> {
        prop::collection::vec(any::<i32>(), 0..6)
    }

    /// Any value of every field, not only ones replay accepts: the codec must carry them all.
    fn any_record() -> impl Strategy<Value = MetadataRecord> {
        let endpoint =
            (text(), text(), any::<u16>(), any::<i16>()).prop_map(|(n, h, p, s)| BrokerEndpoint {
                name: n,
                host: h,
                port: p,
                security_protocol: s,
            });
        let feature = (text(), any::<i16>(), any::<i16>()).prop_map(|(n, a, b)| BrokerFeature {
            name: n,
            min_supported_version: a,
            max_supported_version: b,
        });
        let register = (
            any::<i32>(),
            uuid(),
            any::<i64>(),
            prop::collection::vec(endpoint, 0..3),
            prop::collection::vec(feature, 0..3),
            prop::option::of(text()),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(id, inc, ep, eps, fs, rack, f, cs)| {
                MetadataRecord::RegisterBroker(RegisterBrokerRecord {
                    broker_id: id,
                    incarnation_id: inc,
                    broker_epoch: ep,
                    end_points: eps,
                    features: fs,
                    rack,
                    fenced: f,
                    in_controlled_shutdown: cs,
                })
            });
        let partition = (
            any::<i32>(),
            uuid(),
            (ints(), ints(), ints(), ints()),
            any::<i32>(),
            any::<i8>(),
            any::<i32>(),
            any::<i32>(),
        )
            .prop_map(|(p, t, (r, i, rm, ad), l, lrs, le, pe)| {
                MetadataRecord::Partition(PartitionRecord {
                    partition_id: p,
                    topic_id: t,
                    replicas: r,
                    isr: i,
                    removing_replicas: rm,
                    adding_replicas: ad,
                    leader: l,
                    leader_recovery_state: lrs,
                    leader_epoch: le,
                    partition_epoch: pe,
                })
            });
        let change = (
            any::<i32>(),
            uuid(),
            prop::option::of(ints()),
            prop_oneof![Just(-2), Just(-1), any::<i32>()],
            (
                prop::option::of(ints()),
                prop::option::of(ints()),
                prop::option::of(ints()),
            ),
            prop_oneof![Just(-1i8), Just(0), Just(1), any::<i8>()],
        )
            .prop_map(|(p, t, isr, leader, (r, rm, ad), lrs)| {
                MetadataRecord::PartitionChange(PartitionChangeRecord {
                    partition_id: p,
                    topic_id: t,
                    isr,
                    leader,
                    replicas: r,
                    removing_replicas: rm,
                    adding_replicas: ad,
                    leader_recovery_state: lrs,
                })
            });
        Union::new(vec![
            register.boxed(),
            (any::<i32>(), any::<i64>())
                .prop_map(|(b, e)| {
                    MetadataRecord::UnregisterBroker(UnregisterBrokerRecord {
                        broker_id: b,
                        broker_epoch: e,
                    })
                })
                .boxed(),
            (text(), uuid())
                .prop_map(|(n, t)| {
                    MetadataRecord::Topic(TopicRecord {
                        name: n,
                        topic_id: t,
                    })
                })
                .boxed(),
            partition.boxed(),
            (any::<i8>(), text(), text(), prop::option::of(text()))
                .prop_map(|(t, r, n, v)| {
                    MetadataRecord::Config(ConfigRecord {
                        resource_type: t,
                        resource_name: r,
                        name: n,
                        value: v,
                    })
                })
                .boxed(),
            change.boxed(),
            (any::<i32>(), any::<i64>())
                .prop_map(|(id, epoch)| {
                    MetadataRecord::FenceBroker(FenceBrokerRecord { id, epoch })
                })
                .boxed(),
            (any::<i32>(), any::<i64>())
                .prop_map(|(id, epoch)| {
                    MetadataRecord::UnfenceBroker(UnfenceBrokerRecord { id, epoch })
                })
                .boxed(),
            uuid()
                .prop_map(|t| MetadataRecord::RemoveTopic(RemoveTopicRecord { topic_id: t }))
                .boxed(),
            (text(), any::<i16>())
                .prop_map(|(n, l)| {
                    MetadataRecord::FeatureLevel(FeatureLevelRecord {
                        name: n,
                        feature_level: l,
                    })
                })
                .boxed(),
            (any::<i32>(), any::<i64>(), any::<i64>())
                .prop_map(|(b, e, n)| {
                    MetadataRecord::ProducerIds(ProducerIdsRecord {
                        broker_id: b,
                        broker_epoch: e,
                        next_producer_id: n,
                    })
                })
                .boxed(),
            (any::<i32>(), any::<i64>(), any::<i8>(), any::<i8>())
                .prop_map(|(b, e, f, s)| {
                    MetadataRecord::BrokerRegistrationChange(BrokerRegistrationChangeRecord {
                        broker_id: b,
                        broker_epoch: e,
                        fenced: f,
                        in_controlled_shutdown: s,
                    })
                })
                .boxed(),
            Just(MetadataRecord::NoOp).boxed(),
            text()
                .prop_map(|c| MetadataRecord::ClusterId(ClusterIdRecord { cluster_id: c }))
                .boxed(),
            (
                text(),
                any::<i8>(),
                (bytes(), bytes(), bytes()),
                any::<i32>(),
            )
                .prop_map(
                    |(name, mechanism, (salt, stored_key, server_key), iterations)| {
                        MetadataRecord::UserScramCredential(UserScramCredentialRecord {
                            name,
                            mechanism,
                            salt,
                            stored_key,
                            server_key,
                            iterations,
                        })
                    },
                )
                .boxed(),
            (
                prop::collection::vec(
                    (text(), prop::option::of(text())).prop_map(|(t, n)| ClientQuotaEntityData {
                        entity_type: t,
                        entity_name: n,
                    }),
                    0..3,
                ),
                text(),
                any::<u64>().prop_map(f64::from_bits),
                any::<bool>(),
            )
                .prop_map(|(entity, key, value, remove)| {
                    MetadataRecord::ClientQuota(ClientQuotaRecord {
                        entity,
                        key,
                        value,
                        remove,
                    })
                })
                .boxed(),
            (
                uuid(),
                (any::<i8>(), any::<i8>(), any::<i8>(), any::<i8>()),
                (text(), text(), text()),
            )
                .prop_map(|(id, (rt, pt, op, perm), (name, principal, host))| {
                    MetadataRecord::AccessControlEntry(AccessControlEntryRecord {
                        id,
                        resource_type: rt,
                        resource_name: name,
                        pattern_type: pt,
                        principal,
                        host,
                        operation: op,
                        permission_type: perm,
                    })
                })
                .boxed(),
            uuid()
                .prop_map(|id| {
                    MetadataRecord::RemoveAccessControlEntry(RemoveAccessControlEntryRecord { id })
                })
                .boxed(),
            (text(), any::<i8>())
                .prop_map(|(name, mechanism)| {
                    MetadataRecord::RemoveUserScramCredential(RemoveUserScramCredentialRecord {
                        name,
                        mechanism,
                    })
                })
                .boxed(),
        ])
    }

    fn frame(record: &MetadataRecord) -> Vec<u8> {
        let mut out = Vec::new();
        encode_record(record, &mut out);
        out
    }

    proptest! {
        #[test]
        fn every_record_round_trips(record in any_record()) {
            let bytes = frame(&record);
            prop_assert_eq!(decode_record(&bytes), Ok(record.clone()));
            // A frame cut anywhere is an error, never a panic or another record.
            for cut in 0..bytes.len() {
                prop_assert!(decode_record(&bytes[..cut]).is_err());
            }
        }

        #[test]
        fn batches_round_trip(records in prop::collection::vec(any_record(), 0..8)) {
            let bytes = encode_batch(&records);
            prop_assert_eq!(decode_batch(&bytes), Ok(records));
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_batch(&bytes);
            let _ = decode_record(&bytes);
        }

        #[test]
        fn decoding_corrupted_batches_never_panics(
            records in prop::collection::vec(any_record(), 1..4),
            flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        ) {
            let mut bytes = encode_batch(&records);
            for (at, value) in flips {
                let i = at % bytes.len();
                bytes[i] = value;
            }
            if let Ok(decoded) = decode_batch(&bytes) {
                // Whatever decodes is a set of records the codec round-trips (the bytes may
                // differ only where the encoding has freedom: unknown tags, bool bytes).
                prop_assert_eq!(decode_batch(&encode_batch(&decoded)), Ok(decoded));
            }
        }
    }

    const TOPIC_ID: Uuid = Uuid::from_u128(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10);
    const TOPIC_ID_BYTES: [u8; 16] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];

    /// Golden bytes, worked out by hand from `TopicRecord.json` (apiKey 2, version 0, flexible
    /// "0+"): frame version uvarint 1 = 01, apiKey uvarint 2 = 02, version uvarint 0 = 00;
    /// Name "foo" as a compact string (uvarint 3+1 = 04, then the UTF-8 bytes); TopicId as 16
    /// bytes, most significant first; the empty tagged-field section (uvarint 0 = 00).
    #[test]
    fn golden_topic_record() {
        let record = MetadataRecord::Topic(TopicRecord {
            name: "foo".into(),
            topic_id: TOPIC_ID,
        });
        let mut expected = vec![0x01, 0x02, 0x00, 0x04, b'f', b'o', b'o'];
        expected.extend_from_slice(&TOPIC_ID_BYTES);
        expected.push(0x00);
        assert_eq!(frame(&record), expected);
        assert_eq!(decode_record(&expected), Ok(record));
    }

    /// Golden bytes from `PartitionChangeRecord.json` (apiKey 5, version 0): header 01 05 00;
    /// PartitionId int32 1 = 00 00 00 01; TopicId 16 bytes; then, since every other field is
    /// tagged in v0, a tagged-field section holding only the fields that differ from their
    /// defaults, in tag order: count 02; tag 0 (Isr [1, 2]): tag 00, size 09, compact array
    /// length 2+1 = 03, 00 00 00 01, 00 00 00 02; tag 1 (Leader 2, default -2): tag 01, size 04,
    /// 00 00 00 02. Replicas/Removing/Adding (null) and LeaderRecoveryState (-1) are defaults
    /// and absent.
    #[test]
    fn golden_partition_change_record() {
        let mut change = PartitionChangeRecord::unchanged(TOPIC_ID, 1);
        change.isr = Some(vec![1, 2]);
        change.leader = 2;
        let record = MetadataRecord::PartitionChange(change);
        let mut expected = vec![0x01, 0x05, 0x00, 0x00, 0x00, 0x00, 0x01];
        expected.extend_from_slice(&TOPIC_ID_BYTES);
        expected.extend_from_slice(&[
            0x02, // two tagged fields
            0x00, 0x09, 0x03, 0, 0, 0, 1, 0, 0, 0, 2, // tag 0: Isr
            0x01, 0x04, 0, 0, 0, 2, // tag 1: Leader
        ]);
        assert_eq!(frame(&record), expected);
        assert_eq!(decode_record(&expected), Ok(record));
    }

    /// Golden bytes from `BrokerRegistrationChangeRecord.json` (apiKey 17 = uvarint 11,
    /// version 1): header 01 11 01; BrokerId int32 3 = 00 00 00 03; BrokerEpoch int64 42 =
    /// 00 00 00 00 00 00 00 2a; tagged fields: Fenced (tag 0, int8 1 = fence) differs from its
    /// default 0 and is written as tag 00, size 01, 01; InControlledShutdown (tag 1) is 0, the
    /// default, and absent; so count 01.
    #[test]
    fn golden_broker_registration_change_record() {
        let record = MetadataRecord::BrokerRegistrationChange(BrokerRegistrationChangeRecord {
            broker_id: 3,
            broker_epoch: 42,
            fenced: 1,
            in_controlled_shutdown: 0,
        });
        let expected = vec![
            0x01, 0x11, 0x01, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0x2a, 0x01, 0x00, 0x01, 0x01,
        ];
        assert_eq!(frame(&record), expected);
        assert_eq!(decode_record(&expected), Ok(record));
    }

    /// A batch is a uvarint count and the frames; NoOpRecord is the header (01 14 00) and an
    /// empty tagged-field section; apiKey 10000 is the two-byte uvarint 90 4e.
    #[test]
    fn golden_batch_with_noop_and_cluster_id() {
        let records = vec![
            MetadataRecord::NoOp,
            MetadataRecord::ClusterId(ClusterIdRecord {
                cluster_id: "c".into(),
            }),
        ];
        let expected = vec![
            0x02, 0x01, 0x14, 0x00, 0x00, 0x01, 0x90, 0x4e, 0x00, 0x02, b'c', 0x00,
        ];
        assert_eq!(encode_batch(&records), expected);
        assert_eq!(decode_batch(&expected), Ok(records));
    }

    /// Golden bytes from `AccessControlEntryRecord.json` (apiKey 18 = uvarint 12, version 0):
    /// header 01 12 00; Id 16 bytes; ResourceType int8 2 (TOPIC); ResourceName "foo" (04 f o o);
    /// PatternType 3 (LITERAL); Principal "User:a" (07 U s e r : a); Host "*" (02 2a);
    /// Operation 3 (READ); PermissionType 3 (ALLOW); empty tagged fields 00.
    #[test]
    fn golden_access_control_entry_record() {
        let record = MetadataRecord::AccessControlEntry(AccessControlEntryRecord {
            id: TOPIC_ID,
            resource_type: 2,
            resource_name: "foo".into(),
            pattern_type: 3,
            principal: "User:a".into(),
            host: "*".into(),
            operation: 3,
            permission_type: 3,
        });
        let mut expected = vec![0x01, 0x12, 0x00];
        expected.extend_from_slice(&TOPIC_ID_BYTES);
        expected.extend_from_slice(&[0x02, 0x04, b'f', b'o', b'o', 0x03, 0x07]);
        expected.extend_from_slice(b"User:a");
        expected.extend_from_slice(&[0x02, b'*', 0x03, 0x03, 0x00]);
        assert_eq!(frame(&record), expected);
        assert_eq!(decode_record(&expected), Ok(record));
        // RemoveAccessControlEntryRecord (19 = 13): header, Id, tagged fields.
        let remove = MetadataRecord::RemoveAccessControlEntry(RemoveAccessControlEntryRecord {
            id: TOPIC_ID,
        });
        let mut expected = vec![0x01, 0x13, 0x00];
        expected.extend_from_slice(&TOPIC_ID_BYTES);
        expected.push(0x00);
        assert_eq!(frame(&remove), expected);
        assert_eq!(decode_record(&expected), Ok(remove));
    }

    /// Golden bytes from `UserScramCredentialRecord.json` (apiKey 11 = 0b, version 0): header
    /// 01 0b 00; Name "bob" (04 b o b); Mechanism int8 1 (SCRAM-SHA-256); Salt [1, 2] as compact
    /// bytes (03 01 02); StoredKey [3] (02 03); ServerKey [] (01); Iterations int32 4096
    /// (00 00 10 00); tagged fields 00. RemoveUserScramCredentialRecord (22 = 16): Name, Mechanism.
    #[test]
    fn golden_user_scram_credential_records() {
        let record = MetadataRecord::UserScramCredential(UserScramCredentialRecord {
            name: "bob".into(),
            mechanism: 1,
            salt: vec![1, 2],
            stored_key: vec![3],
            server_key: vec![],
            iterations: 4096,
        });
        let expected = vec![
            0x01, 0x0b, 0x00, 0x04, b'b', b'o', b'b', 0x01, 0x03, 0x01, 0x02, 0x02, 0x03, 0x01,
            0x00, 0x00, 0x10, 0x00, 0x00,
        ];
        assert_eq!(frame(&record), expected);
        assert_eq!(decode_record(&expected), Ok(record));
        let remove = MetadataRecord::RemoveUserScramCredential(RemoveUserScramCredentialRecord {
            name: "bob".into(),
            mechanism: 2,
        });
        let expected = vec![0x01, 0x16, 0x00, 0x04, b'b', b'o', b'b', 0x02, 0x00];
        assert_eq!(frame(&remove), expected);
        assert_eq!(decode_record(&expected), Ok(remove));
    }

    /// Golden bytes from `ClientQuotaRecord.json` (apiKey 14 = 0e, version 0): header 01 0e 00;
    /// Entity array of one (02): EntityType "user" (05 u s e r), EntityName null (00), the
    /// element's tagged fields 00; Key "producer_byte_rate" (18 bytes: 13 ...); Value float64
    /// 1024.0 = 40 90 00 00 00 00 00 00; Remove false 00; tagged fields 00.
    #[test]
    fn golden_client_quota_record() {
        let record = MetadataRecord::ClientQuota(ClientQuotaRecord {
            entity: vec![ClientQuotaEntityData {
                entity_type: "user".into(),
                entity_name: None,
            }],
            key: "producer_byte_rate".into(),
            value: 1024.0,
            remove: false,
        });
        let mut expected = vec![
            0x01, 0x0e, 0x00, 0x02, 0x05, b'u', b's', b'e', b'r', 0x00, 0x00,
        ];
        expected.push(0x13);
        expected.extend_from_slice(b"producer_byte_rate");
        expected.extend_from_slice(&[0x40, 0x90, 0, 0, 0, 0, 0, 0, 0x00, 0x00]);
        assert_eq!(frame(&record), expected);
        assert_eq!(decode_record(&expected), Ok(record));
    }

    #[test]
    fn frame_errors() {
        // Frame version 0 (KRaft preview) and 2 are refused.
        assert_eq!(
            decode_record(&[0x00, 0x14, 0x00, 0x00]),
            Err(CodecError::UnsupportedFrameVersion { version: 0 })
        );
        assert_eq!(
            decode_record(&[0x02, 0x14, 0x00, 0x00]),
            Err(CodecError::UnsupportedFrameVersion { version: 2 })
        );
        // apiKey 6 is unassigned in Kafka's MetadataRecordType; 70000 does not fit a short.
        assert_eq!(
            decode_record(&[0x01, 0x06, 0x00, 0x00]),
            Err(CodecError::UnknownApiKey { api_key: 6 })
        );
        assert_eq!(
            decode_record(&[0x01, 0xf0, 0xa2, 0x04, 0x00, 0x00]),
            Err(CodecError::UnknownApiKey { api_key: 70000 })
        );
        // RegisterBrokerRecord v0 is not the version Fjord accepts.
        assert_eq!(
            decode_record(&[0x01, 0x00, 0x00]),
            Err(CodecError::UnsupportedVersion {
                api_key: 0,
                version: 0,
                expected: 1
            })
        );
        assert_eq!(
            decode_record(&[0x01, 0x14, 0x00, 0x00, 0x00]),
            Err(CodecError::TrailingBytes { count: 1 })
        );
        assert_eq!(
            decode_record(&[0x01, 0x14, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
            Err(CodecError::VarintTooLong { position: 3 })
        );
    }

    #[test]
    fn hostile_lengths_are_refused_before_allocating() {
        // A PartitionRecord claiming 999,999 replicas in a few bytes.
        let mut bytes = vec![0x01, 0x03, 0x00, 0, 0, 0, 0];
        bytes.extend_from_slice(&TOPIC_ID_BYTES);
        bytes.extend_from_slice(&[0xc0, 0x84, 0x3d]); // uvarint 1,000,000 = 999,999 + 1
        assert!(matches!(
            decode_record(&bytes),
            Err(CodecError::ArrayTooLong {
                field: "Replicas",
                len: 999_999
            })
        ));
        // A string of 40,000 bytes is over the limit even when the bytes are there.
        let mut bytes = vec![0x01, 0x02, 0x00, 0xc1, 0xb8, 0x02];
        bytes.extend(std::iter::repeat_n(b'a', 40_000));
        assert_eq!(
            decode_record(&bytes),
            Err(CodecError::StringTooLong {
                field: "Name",
                len: 40_000
            })
        );
        // A batch claiming more records than bytes.
        assert!(matches!(
            decode_batch(&[0x05, 0x01, 0x14, 0x00, 0x00]),
            Err(CodecError::ArrayTooLong { field: "batch", .. })
        ));
        // A non-nullable string given as null.
        assert_eq!(
            decode_record(&[0x01, 0x02, 0x00, 0x00]),
            Err(CodecError::UnexpectedNull { field: "Name" })
        );
        // Invalid UTF-8.
        assert_eq!(
            decode_record(&[0x01, 0x02, 0x00, 0x02, 0xff]),
            Err(CodecError::InvalidUtf8 { field: "Name" })
        );
    }

    #[test]
    fn unknown_tags_are_skipped_and_known_tags_must_fit() {
        // NoOpRecord with an unknown tag 7 of two bytes.
        assert_eq!(
            decode_record(&[0x01, 0x14, 0x00, 0x01, 0x07, 0x02, 0xaa, 0xbb]),
            Ok(MetadataRecord::NoOp)
        );
        // BrokerRegistrationChangeRecord whose Fenced tag claims two bytes for an int8.
        let bytes = [
            0x01, 0x11, 0x01, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0x2a, 0x01, 0x00, 0x02, 0x01, 0x00,
        ];
        assert_eq!(
            decode_record(&bytes),
            Err(CodecError::TaggedFieldSize { tag: 0, left: 1 })
        );
    }
}
