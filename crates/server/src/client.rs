//! The data-plane side of the CLI (`fjord produce`, `fjord consume`): a metadata cache that
//! routes each partition's requests to its leader over one connection per broker, refreshing
//! metadata on NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION and lost connections with
//! bounded retries; Kafka's default partitioner (murmur2); record batch encoding and decoding
//! with headers; and SIGINT/SIGTERM handling for the blocking loops.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use fjord_protocol::batch_builder::{encode_uncompressed, Header, Record};
use fjord_protocol::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use fjord_protocol::kafka_protocol::messages::{MetadataRequest, TopicName};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::records::{
    rebuild_batch, record_section, Compression, RECORD_BATCH_HEADER_BYTES,
};
use fjord_protocol::{ApiKey, RequestKind, ResponseError, ResponseKind};

use crate::admin::{error_name, AdminClient};

/// Metadata version the data commands speak (v12: topic ids in the answer, names still used).
const METADATA_VERSION_MAX: i16 = 12;
/// Attempts of one request before its error is reported (Kafka clients retry for
/// `delivery.timeout.ms`; a CLI should fail fast instead).
pub const ATTEMPTS_MAX: u32 = 5;
const BACKOFF_INITIAL: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_millis(1_000);

/// Set by SIGINT/SIGTERM; the produce and consume loops poll it.
static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_signal: libc::c_int) {
    // Only an atomic store: the one thing that is async-signal-safe here.
    STOP_REQUESTED.store(true, Ordering::SeqCst);
}

/// Makes SIGINT and SIGTERM request a clean stop instead of killing the process.
pub fn install_stop_handlers() {
    let handler = on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

pub fn stop_requested() -> bool {
    STOP_REQUESTED.load(Ordering::SeqCst)
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Whether `err` came from the socket (refused, reset, timed out): worth a reconnect.
pub fn is_connection_error(err: &anyhow::Error) -> bool {
    err.chain()
        .any(|cause| cause.downcast_ref::<std::io::Error>().is_some())
}

/// Errors after which fresh metadata may route the request elsewhere (Kafka's
/// `InvalidMetadataException` subclasses, as far as a single request is concerned).
pub fn needs_metadata_refresh(error_code: i16) -> bool {
    matches!(
        ResponseError::try_from_code(error_code),
        Some(
            ResponseError::NotLeaderOrFollower
                | ResponseError::UnknownTopicOrPartition
                | ResponseError::LeaderNotAvailable
                | ResponseError::FencedLeaderEpoch
                | ResponseError::UnknownLeaderEpoch
                | ResponseError::KafkaStorageError
        )
    )
}

/// Errors a producer may retry as they are (Kafka's `RetriableException`s a CLI meets).
pub fn is_retriable(error_code: i16) -> bool {
    needs_metadata_refresh(error_code)
        || matches!(
            ResponseError::try_from_code(error_code),
            Some(
                ResponseError::RequestTimedOut
                    | ResponseError::NotEnoughReplicas
                    | ResponseError::NotEnoughReplicasAfterAppend
                    | ResponseError::CorruptMessage
                    | ResponseError::NetworkException
                    | ResponseError::CoordinatorLoadInProgress
                    | ResponseError::CoordinatorNotAvailable
                    | ResponseError::NotCoordinator
            )
        )
}

/// Exponential backoff between attempts, capped.
pub fn backoff(attempt: u32) -> Duration {
    BACKOFF_INITIAL
        .saturating_mul(1 << attempt.min(4))
        .min(BACKOFF_MAX)
}

/// A broker of the cluster as Metadata/DescribeCluster names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

impl BrokerInfo {
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Connections to the cluster: the bootstrap one for metadata, one per broker for data.
pub struct Cluster {
    bootstrap: String,
    timeout: Duration,
    metadata_client: Option<AdminClient>,
    connections: HashMap<i32, AdminClient>,
    brokers: BTreeMap<i32, BrokerInfo>,
    /// Topic -> partition -> leader node id (-1 = none).
    leaders: HashMap<String, BTreeMap<i32, i32>>,
}

impl Cluster {
    /// Connects to the bootstrap broker (one attempt: a stopped broker is an error at once).
    pub fn connect(bootstrap: &str, timeout: Duration) -> Result<Self> {
        let client = AdminClient::connect(bootstrap, timeout)?;
        Ok(Cluster {
            bootstrap: bootstrap.to_string(),
            timeout,
            metadata_client: Some(client),
            connections: HashMap::new(),
            brokers: BTreeMap::new(),
            leaders: HashMap::new(),
        })
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The bootstrap connection (reconnected if it was lost), for requests any broker answers.
    pub fn any_client(&mut self) -> Result<&mut AdminClient> {
        match &mut self.metadata_client {
            Some(client) => Ok(client),
            slot => Ok(slot.insert(AdminClient::connect(&self.bootstrap, self.timeout)?)),
        }
    }

    /// Forgets the bootstrap connection after a socket error, so the next use reconnects.
    pub fn drop_any_client(&mut self) {
        self.metadata_client = None;
    }

    /// The partitions of `topic` (sorted), from cached or fresh metadata.
    pub fn partitions(&mut self, topic: &str, auto_create: bool) -> Result<Vec<i32>> {
        if !self.leaders.contains_key(topic) {
            self.refresh(topic, auto_create)?;
        }
        Ok(self
            .leaders
            .get(topic)
            .map(|p| p.keys().copied().collect())
            .unwrap_or_default())
    }

    /// Fetches metadata for `topic`, retrying while it is unknown (being auto-created) or has
    /// no leader yet, as clients do, up to [`ATTEMPTS_MAX`] attempts.
    pub fn refresh(&mut self, topic: &str, auto_create: bool) -> Result<()> {
        let mut attempt = 0;
        loop {
            match self.try_refresh(topic, auto_create) {
                Ok(()) => return Ok(()),
                Err(RefreshError::Retriable(err)) if attempt + 1 < ATTEMPTS_MAX => {
                    tracing::debug!(topic, attempt, "metadata not ready: {err:#}");
                }
                Err(RefreshError::Retriable(err) | RefreshError::Fatal(err)) => return Err(err),
            }
            std::thread::sleep(backoff(attempt));
            attempt += 1;
        }
    }

    fn try_refresh(&mut self, topic: &str, auto_create: bool) -> Result<(), RefreshError> {
        let request = MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
                TopicName(StrBytes::from_string(topic.to_string())),
            ))]))
            .with_allow_auto_topic_creation(auto_create);
        let client = self.any_client().map_err(RefreshError::Fatal)?;
        let response = match client.send(
            ApiKey::Metadata,
            METADATA_VERSION_MAX,
            RequestKind::Metadata(request),
        ) {
            Ok(ResponseKind::Metadata(response)) => response,
            Ok(_) => {
                return Err(RefreshError::Fatal(anyhow!(
                    "unexpected answer to Metadata"
                )))
            }
            Err(err) if is_connection_error(&err) => {
                self.drop_any_client();
                return Err(RefreshError::Retriable(err));
            }
            Err(err) => return Err(RefreshError::Fatal(err)),
        };
        self.brokers = response
            .brokers
            .iter()
            .map(|b| {
                let info = BrokerInfo {
                    node_id: b.node_id.0,
                    host: b.host.to_string(),
                    port: b.port,
                    rack: b.rack.as_ref().map(|r| r.to_string()),
                };
                (info.node_id, info)
            })
            .collect();
        let found = response
            .topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == topic))
            .ok_or_else(|| RefreshError::Fatal(anyhow!("Metadata did not answer for {topic}")))?;
        if found.error_code != 0 {
            let err = anyhow!("topic {topic}: {}", error_name(found.error_code));
            return Err(if needs_metadata_refresh(found.error_code) && auto_create {
                RefreshError::Retriable(err)
            } else {
                RefreshError::Fatal(err)
            });
        }
        let leaders: BTreeMap<i32, i32> = found
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.leader_id.0))
            .collect();
        if leaders.is_empty() || leaders.values().any(|leader| *leader < 0) {
            return Err(RefreshError::Retriable(anyhow!(
                "topic {topic}: {}",
                error_name(ResponseError::LeaderNotAvailable.code())
            )));
        }
        self.leaders.insert(topic.to_string(), leaders);
        Ok(())
    }

    /// The leader of `topic`/`partition` as its node id, from the cache.
    pub fn leader_id(&mut self, topic: &str, partition: i32) -> Result<i32> {
        if !self.leaders.contains_key(topic) {
            self.refresh(topic, false)?;
        }
        self.leaders
            .get(topic)
            .and_then(|p| p.get(&partition))
            .copied()
            .ok_or_else(|| {
                anyhow!(
                    "{topic}/{partition}: {}",
                    error_name(ResponseError::UnknownTopicOrPartition.code())
                )
            })
    }

    /// The connection to broker `node_id`, opened on first use.
    pub fn broker_client(&mut self, node_id: i32) -> Result<&mut AdminClient> {
        if !self.connections.contains_key(&node_id) {
            let address = self
                .brokers
                .get(&node_id)
                .map(BrokerInfo::address)
                .ok_or_else(|| anyhow!("no broker with id {node_id} in the metadata"))?;
            let client = AdminClient::connect(&address, self.timeout)?;
            self.connections.insert(node_id, client);
        }
        self.connections
            .get_mut(&node_id)
            .ok_or_else(|| anyhow!("no connection to broker {node_id}"))
    }

    /// Forgets the connection to `node_id` and the cached leaders, after a socket error or a
    /// stale-metadata answer: the next request reconnects and re-reads metadata.
    pub fn invalidate(&mut self, node_id: i32) {
        self.connections.remove(&node_id);
        self.leaders.clear();
    }
}

enum RefreshError {
    Retriable(anyhow::Error),
    Fatal(anyhow::Error),
}

/// Kafka's `Utils.murmur2` (the Java client's default partitioner hash), bit for bit.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len();
    let mut h: u32 = SEED ^ (length as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The Java client's partition for a keyed record: `toPositive(murmur2(key)) % numPartitions`.
pub fn partition_for_key(key: &[u8], partition_count: usize) -> i32 {
    let positive = (murmur2(key) & 0x7fff_ffff) as usize;
    (positive % partition_count.max(1)) as i32
}

/// A record to produce, owning its bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutgoingRecord {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub partition: Option<i32>,
    pub timestamp_ms: Option<i64>,
}

impl OutgoingRecord {
    /// Bytes the record adds to a batch, roughly (for batch sizing; varints are small).
    pub fn size_bytes(&self) -> usize {
        let field = |b: &Option<Vec<u8>>| b.as_ref().map_or(0, Vec::len) + 5;
        21 + field(&self.key)
            + field(&self.value)
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + 5 + field(v))
                .sum::<usize>()
    }
}

/// Codec bits of a batch's attributes.
fn codec_attribute(codec: Compression) -> i16 {
    match codec {
        Compression::None => 0,
        Compression::Gzip => 1,
        Compression::Snappy => 2,
        Compression::Lz4 => 3,
        Compression::Zstd => 4,
    }
}

/// One v2 batch of `records` (producer id -1), compressed with `codec`.
pub fn encode_batch(records: &[OutgoingRecord], codec: Compression) -> Result<Vec<u8>> {
    let now = now_ms();
    let base_timestamp = records
        .first()
        .map_or(now, |r| r.timestamp_ms.unwrap_or(now));
    let headers: Vec<Vec<Header<'_>>> = records
        .iter()
        .map(|r| {
            r.headers
                .iter()
                .map(|(k, v)| (k.as_bytes(), v.as_deref()))
                .collect()
        })
        .collect();
    let encoded: Vec<Record<'_>> = records
        .iter()
        .zip(&headers)
        .map(|(r, h)| Record {
            timestamp_delta: r.timestamp_ms.unwrap_or(now).wrapping_sub(base_timestamp),
            key: r.key.as_deref(),
            value: r.value.as_deref(),
            headers: h,
        })
        .collect();
    let plain = encode_uncompressed(0, base_timestamp, codec_attribute(codec), &encoded);
    if codec == Compression::None {
        return Ok(plain);
    }
    let section = plain
        .get(RECORD_BATCH_HEADER_BYTES..)
        .ok_or_else(|| anyhow!("encoded batch shorter than its header"))?;
    let compressed =
        fjord_protocol::compress::compress(codec, section).context("cannot compress batch")?;
    let max_timestamp = encoded
        .iter()
        .map(|r| base_timestamp.wrapping_add(r.timestamp_delta))
        .max()
        .unwrap_or(base_timestamp);
    let count = i32::try_from(records.len()).context("too many records in one batch")?;
    Ok(rebuild_batch(&plain, &compressed, count, max_timestamp))
}

/// One fetched record, headers included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedRecord {
    pub offset: i64,
    pub timestamp_ms: i64,
    pub log_append_time: bool,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// A fetched batch: its header fields the consumer needs, and its records (none for a control
/// batch).
#[derive(Debug)]
pub struct FetchedBatch {
    pub next_offset: i64,
    pub producer_id: i64,
    pub transactional: bool,
    pub control: bool,
    pub records: Vec<FetchedRecord>,
}

/// Decodes the batches of a fetch response's record set. A batch cut short at the end (the
/// broker may return a partial last batch) ends the list without an error.
pub fn decode_batches(records: &[u8]) -> Result<Vec<FetchedBatch>> {
    let mut out = Vec::new();
    for item in fjord_protocol::records::BatchIter::new(records) {
        let (header, range) = match item {
            Ok(item) => item,
            Err(err) if err.is_truncated() => break,
            Err(err) => return Err(anyhow!("bad record batch from the broker: {err}")),
        };
        let batch = &records[range];
        let mut fetched = FetchedBatch {
            next_offset: header.next_offset(),
            producer_id: header.producer_id,
            transactional: header.is_transactional(),
            control: header.is_control(),
            records: Vec::new(),
        };
        if !header.is_control() {
            let (header, section) = record_section(batch)
                .map_err(|err| anyhow!("bad record batch from the broker: {err}"))?;
            fetched.records = parse_records(&section, &header).map_err(|reason| {
                anyhow!(
                    "bad record in batch at offset {}: {reason}",
                    header.base_offset
                )
            })?;
        }
        out.push(fetched);
    }
    Ok(out)
}

/// A bounds-checked reader of record fields.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if n > self.buf.len() {
            return Err("field runs past the end of the record");
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn varlong(&mut self) -> Result<i64, &'static str> {
        let mut raw: u64 = 0;
        for i in 0..10 {
            let byte = self.take(1)?[0];
            raw |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
            }
        }
        Err("varint longer than 10 bytes")
    }

    fn varint(&mut self) -> Result<i32, &'static str> {
        i32::try_from(self.varlong()?).map_err(|_| "varint out of range")
    }

    fn sized(&mut self) -> Result<Option<Vec<u8>>, &'static str> {
        match self.varint()? {
            -1 => Ok(None),
            n if n < 0 => Err("negative length"),
            n => Ok(Some(self.take(n as usize)?.to_vec())),
        }
    }
}

fn parse_records(
    section: &[u8],
    header: &fjord_protocol::records::RecordBatchHeader,
) -> Result<Vec<FetchedRecord>, &'static str> {
    let mut reader = Reader { buf: section };
    // The count comes from the wire: cap the preallocation by what the bytes can hold.
    let count = usize::try_from(header.records_count).map_err(|_| "negative record count")?;
    let mut records = Vec::with_capacity(count.min(section.len() / 7 + 1));
    for _ in 0..count {
        let length = usize::try_from(reader.varint()?).map_err(|_| "negative record length")?;
        let mut record = Reader {
            buf: reader.take(length)?,
        };
        let _attributes = record.take(1)?;
        let timestamp_delta = record.varlong()?;
        let offset_delta = record.varint()?;
        let key = record.sized()?;
        let value = record.sized()?;
        let header_count =
            usize::try_from(record.varint()?).map_err(|_| "negative header count")?;
        let mut headers = Vec::with_capacity(header_count.min(record.buf.len() / 2 + 1));
        for _ in 0..header_count {
            let name = record.sized()?.ok_or("null header key")?;
            headers.push((name, record.sized()?));
        }
        let log_append_time = header.timestamp_type_is_log_append();
        records.push(FetchedRecord {
            offset: header.base_offset.saturating_add(i64::from(offset_delta)),
            timestamp_ms: if log_append_time {
                header.max_timestamp
            } else {
                header.base_timestamp.wrapping_add(timestamp_delta)
            },
            log_append_time,
            key,
            value,
            headers,
        });
    }
    Ok(records)
}

/// `Err` naming the Kafka error of a per-partition answer.
pub fn partition_error(what: &str, topic: &str, partition: i32, error_code: i16) -> anyhow::Error {
    anyhow!(
        "{what} {topic}/{partition} failed: {}",
        error_name(error_code)
    )
}

/// Fails unless `address` looks like HOST:PORT (clap gives it unchecked).
pub fn check_address(address: &str) -> Result<()> {
    match address.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => bail!("--bootstrap {address:?} is not HOST:PORT"),
    }
}

const BASE64_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (RFC 4648), for binary keys, values and headers in JSON.
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(
                    BASE64_ALPHABET[((n >> (18 - 6 * i)) & 63) as usize],
                ));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional, no whitespace).
pub fn base64_decode(text: &str) -> Result<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut bits: u32 = 0;
    let mut bit_count = 0;
    for c in text.bytes() {
        let value = BASE64_ALPHABET
            .iter()
            .position(|a| *a == c)
            .ok_or_else(|| anyhow!("invalid base64 character {:?}", char::from(c)))?;
        bits = (bits << 6) | value as u32;
        bit_count += 6;
        if bit_count >= 8 {
            bit_count -= 8;
            out.push((bits >> bit_count) as u8);
            bits &= (1 << bit_count) - 1;
        }
    }
    if bit_count >= 6 {
        bail!("invalid base64 length");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_and_matches_rfc4648() {
        for (plain, encoded) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foobar", "Zm9vYmFy"),
            (b"\xff\x00\xfe", "/wD+"),
        ] {
            assert_eq!(base64_encode(plain), encoded);
            assert_eq!(base64_decode(encoded).unwrap(), plain);
        }
        assert!(base64_decode("Zm9v!").is_err());
        assert!(base64_decode("Z").is_err());
    }

    #[test]
    fn murmur2_matches_kafkas_utils_test_vectors() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, expected) in cases {
            assert_eq!(murmur2(key), expected, "{:?}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn keyed_partition_is_the_positive_hash_modulo_the_count() {
        // murmur2("21") = -973932308; & 0x7fffffff = 1173551340; % 3 = 0, % 7 = 1.
        assert_eq!(partition_for_key(b"21", 3), 1_173_551_340 % 3);
        assert_eq!(partition_for_key(b"21", 7), 1_173_551_340 % 7);
        assert_eq!(partition_for_key(b"abc", 1), 0);
    }

    #[test]
    fn batches_round_trip_with_headers_through_every_codec() {
        let records = vec![
            OutgoingRecord {
                key: Some(b"k1".to_vec()),
                value: Some(b"v1".to_vec()),
                headers: vec![("h".into(), Some(b"x".to_vec())), ("n".into(), None)],
                timestamp_ms: Some(1_700_000_000_000),
                ..Default::default()
            },
            OutgoingRecord {
                key: None,
                value: None,
                timestamp_ms: Some(1_700_000_000_005),
                ..Default::default()
            },
        ];
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let batch = encode_batch(&records, codec).unwrap();
            fjord_protocol::records::validate_batch(&batch).unwrap();
            let decoded = decode_batches(&batch).unwrap();
            assert_eq!(decoded.len(), 1, "{codec:?}");
            let got = &decoded[0].records;
            assert_eq!(got.len(), 2, "{codec:?}");
            assert_eq!(got[0].key.as_deref(), Some(&b"k1"[..]));
            assert_eq!(got[0].value.as_deref(), Some(&b"v1"[..]));
            assert_eq!(
                got[0].headers,
                vec![(b"h".to_vec(), Some(b"x".to_vec())), (b"n".to_vec(), None)]
            );
            assert_eq!(got[0].timestamp_ms, 1_700_000_000_000);
            assert_eq!((got[1].offset, got[1].timestamp_ms), (1, 1_700_000_000_005));
            assert_eq!((got[1].key.clone(), got[1].value.clone()), (None, None));
        }
    }

    #[test]
    fn a_partial_last_batch_is_dropped_and_garbage_is_an_error() {
        let one = encode_batch(
            &[OutgoingRecord {
                value: Some(b"v".to_vec()),
                ..Default::default()
            }],
            Compression::None,
        )
        .unwrap();
        let mut two = one.clone();
        two.extend_from_slice(&one[..one.len() - 3]);
        assert_eq!(decode_batches(&two).unwrap().len(), 1);
        let mut corrupt = one.clone();
        let last = corrupt.len() - 1;
        corrupt[RECORD_BATCH_HEADER_BYTES] = 0x7f; // record length beyond the section
        corrupt[last] ^= 0xff;
        assert!(decode_batches(&corrupt).is_err());
    }
}
