//! Fetch (key 1), v4 and up: read whole batches by file position, with
//! - fetch sessions (KIP-227, see [`crate::fetch_session`]),
//! - long polling: wait up to `max_wait_ms` until `min_bytes` are there, woken by appends,
//! - limits: `max_bytes` for the response (capped by the broker's `fetch.max.bytes`) and
//!   `partition_max_bytes` per partition, with Kafka's rule that the first partition with data
//!   returns at least one whole batch even if it is larger than the limits,
//! - `isolation_level`: read_committed reads stop at the last stable offset (the first offset
//!   of a transaction still open), and each partition's answer lists the aborted transactions
//!   overlapping the returned data, so the consumer can drop their records (Kafka's
//!   `FetchResponse.abortedTransactions`); control batches are returned like any batch,
//! - followers (replica id >= 0: `replica_id` up to v14, `ReplicaState.ReplicaId` from v15):
//!   each partition is served by `Partition::serve_follower_fetch` (leader epoch and
//!   divergence checks, DivergingEpoch, a read up to the log end, the follower's state, ISR
//!   expansion and high watermark); a high watermark that moved completes parked produces and
//!   wakes consumer fetches. Consumers keep reading up to the high watermark / LSO,
//! - fetch from follower (KIP-392): a consumer fetch (v11+, Kafka's `ClientMetadata`) is
//!   served by any replica hosted here, leader or follower, up to its own high watermark
//!   (LSO for read_committed); with `replica.selector.class` set, the leader answers a
//!   consumer that names a `rack_id` with `preferred_read_replica` (Kafka
//!   `findPreferredReadReplica`, see `replication::replica_selector`) and no records,
//! - replication throttles (KIP-73): a follower fetch of a partition in the topic's
//!   `leader.replication.throttled.replicas` from a follower outside the ISR gets no records
//!   while `leader.replication.throttled.rate` is exceeded (Kafka `shouldLeaderThrottle`);
//!   bytes sent for throttled partitions count against it,
//! - leadership: a partition this broker does not host (or, before v11, does not lead)
//!   answers NOT_LEADER_OR_FOLLOWER with KIP-951's `CurrentLeader` (v12+) and `NodeEndpoints`
//!   (v16+) from the metadata image.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fjord_protocol::kafka_protocol::messages::fetch_request::FetchPartition;
use fjord_protocol::kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData,
};
use fjord_protocol::kafka_protocol::messages::{
    BrokerId, FetchRequest, FetchResponse, ProducerId, TopicName,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::splice::placeholder;
use fjord_protocol::{ResponseError, VersionRange};
use fjord_storage::{AbortedTxn, FileRecords, StorageError};
use uuid::Uuid;

use crate::fetch_session::{
    CachedPartition, FetchKey, SessionError, FINAL_EPOCH, INITIAL_EPOCH, INVALID_SESSION_ID,
};
use crate::metadata_view::{ImageView, LeaderHint};
use crate::metrics::GaugeGuard;
use crate::partition::{Isolation, Partition, PartitionError, PartitionOffsets};
use crate::replication_shell::QuotaSide;
use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 4, max: 18 };

/// First version that names topics by id.
const TOPIC_ID_VERSION: i16 = 13;
/// Longest a fetch may park, whatever it asks for.
const MAX_WAIT_MS_CAP: i32 = 300_000;
const READ_COMMITTED: i8 = 1;

/// One partition to read, with where to read from.
struct PlannedRead {
    key: FetchKey,
    fetch_offset: i64,
    partition_max_bytes: i32,
    current_leader_epoch: i32,
    /// KIP-320, followers only (-1: none).
    last_fetched_epoch: i32,
    /// The follower's log start offset (-1 for consumers).
    log_start_offset: i64,
}

/// First Fetch version whose follower id is in `ReplicaState` (KIP-903).
const REPLICA_STATE_VERSION: i16 = 15;
/// First Fetch version with `rack_id` (KIP-392): Kafka builds `ClientMetadata` from it, and
/// consumers may then read from followers.
const CLIENT_METADATA_VERSION: i16 = 11;

/// Who a consumer fetch comes from (Kafka `ClientMetadata`, v11+) and how the leader picks a
/// preferred read replica for it.
struct ClientMetadata {
    rack_id: String,
    selector: Option<crate::replication::ReplicaSelector>,
    /// One image for the whole request: racks and liveness of the replicas.
    image: Option<Arc<fjord_metadata::MetadataImage>>,
    /// The listener the fetch came in on: a preferred replica must have an endpoint there.
    listener_name: String,
}

impl ClientMetadata {
    fn of(
        broker: &Broker,
        listener_name: &str,
        api_version: i16,
        request: &FetchRequest,
    ) -> Option<Self> {
        if api_version < CLIENT_METADATA_VERSION {
            return None;
        }
        let rack_id = request.rack_id.to_string();
        let selector = broker.config().replica_selector;
        let image = (selector.is_some() && !rack_id.is_empty()).then(|| broker.image());
        Some(Self {
            rack_id,
            selector,
            // Only needed (and allocated) when a follower may be chosen.
            listener_name: if image.is_some() {
                listener_name.to_string()
            } else {
                String::new()
            },
            image,
        })
    }

    /// Kafka `findPreferredReadReplica` for a partition led here.
    fn preferred_read_replica(&self, partition: &Partition, fetch_offset: i64) -> Option<i32> {
        let (Some(selector), Some(image)) = (self.selector, self.image.as_deref()) else {
            return None;
        };
        partition.preferred_read_replica(
            selector,
            &self.rack_id,
            fetch_offset,
            image,
            &self.listener_name,
            // Follower catch-up times are on the monotonic clock (`serve_follower_fetch`).
            crate::time::monotonic_ms(),
        )
    }
}

/// The follower a fetch comes from: (broker id, broker epoch), `None` for consumers.
pub(crate) fn follower_of(api_version: i16, request: &FetchRequest) -> Option<(i32, i64)> {
    let (replica_id, replica_epoch) = if api_version >= REPLICA_STATE_VERSION {
        (
            request.replica_state.replica_id.0,
            request.replica_state.replica_epoch,
        )
    } else {
        (request.replica_id.0, -1)
    };
    (replica_id >= 0).then_some((replica_id, replica_epoch))
}

/// How the request relates to a fetch session.
enum SessionMode {
    /// No session: every partition is in the request and in the response.
    Sessionless,
    /// A full fetch that opens a session.
    Full,
    /// An incremental fetch on an existing session.
    Incremental { session_id: i32 },
}

/// The response carries a [`placeholder`] for each partition's records; the returned file
/// ranges (placeholder `i` is `file_records[i]`) are spliced in when the response is written.
///
/// KIP-951 leader hints name the leader's endpoint on `listener_name`, the listener the request
/// came in on.
pub async fn handle(
    broker: &Broker,
    listener_name: &str,
    api_version: i16,
    request: FetchRequest,
) -> (FetchResponse, Vec<FileRecords>) {
    let (mode, reads) = match plan(broker, api_version, &request) {
        Ok(planned) => planned,
        Err(error) => {
            return (
                FetchResponse::default().with_error_code(error.code()),
                Vec::new(),
            );
        }
    };
    let max_bytes = usize::try_from(request.max_bytes.max(0))
        .unwrap_or(0)
        .min(broker.config().fetch_max_bytes);
    let min_bytes = usize::try_from(request.min_bytes.max(0)).unwrap_or(0);
    let max_wait = Duration::from_millis(request.max_wait_ms.clamp(0, MAX_WAIT_MS_CAP) as u64);
    let deadline = tokio::time::Instant::now() + max_wait;
    let read_committed = request.isolation_level == READ_COMMITTED;
    let isolation = if read_committed {
        Isolation::ReadCommitted
    } else {
        Isolation::ReadUncommitted
    };

    let follower = follower_of(api_version, &request);
    let client = match follower {
        Some(_) => None,
        None => ClientMetadata::of(broker, listener_name, api_version, &request),
    };
    let partitions = resolve_partitions(broker, &reads);
    let mut shutdown = broker.shutdown_signal();
    let results = loop {
        // Register for wake-ups before reading, so an append between the read and the wait
        // is not missed.
        let notified = broker.replica_manager().data_arrived.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let (results, bytes_read, any_error) = read_all(
            broker,
            (follower, client.as_ref()),
            &reads,
            &partitions,
            max_bytes,
            isolation,
        );
        let satisfied = bytes_read >= min_bytes.max(1) || any_error || min_bytes == 0;
        if satisfied || tokio::time::Instant::now() >= deadline || *shutdown.borrow() {
            break results;
        }
        // Parked: counted in the fetch purgatory until woken, or until dropped with its
        // connection.
        let _parked = GaugeGuard::enter(&broker.metrics().fetch_purgatory);
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = shutdown.changed() => {}
        }
    };
    count_fetched(follower.is_some(), &reads, &partitions, &results);
    let (session_id, include) = finish_session(broker, &mode, &reads, &results);
    let hints = leader_hints(broker, listener_name, &reads, &results);
    let (responses, file_records) = build_topics(
        api_version,
        read_committed,
        reads,
        results,
        &include,
        &hints,
    );
    let mut response = FetchResponse::default()
        .with_session_id(session_id)
        .with_responses(responses);
    if api_version >= NODE_ENDPOINTS_VERSION {
        let mut endpoints = std::collections::BTreeMap::new();
        for hint in hints.iter().flatten() {
            if let Some((host, port, rack)) = &hint.endpoint {
                endpoints.insert(
                    hint.leader_id,
                    NodeEndpoint::default()
                        .with_node_id(BrokerId(hint.leader_id))
                        .with_host(StrBytes::from_string(host.clone()))
                        .with_port(i32::from(*port))
                        .with_rack(rack.clone().map(StrBytes::from_string)),
                );
            }
        }
        response = response.with_node_endpoints(endpoints.into_values().collect());
    }
    (response, file_records)
}

/// First Fetch version with KIP-951's `CurrentLeader` per partition.
const CURRENT_LEADER_VERSION: i16 = 12;
/// First Fetch version with KIP-951's `NodeEndpoints`.
const NODE_ENDPOINTS_VERSION: i16 = 16;

/// Per read: who leads it now, for NOT_LEADER_OR_FOLLOWER and FENCED_LEADER_EPOCH answers
/// (Kafka `ReplicaManager.getCurrentLeader`, from one image).
fn leader_hints(
    broker: &Broker,
    listener_name: &str,
    reads: &[PlannedRead],
    results: &[ReadResult],
) -> Vec<Option<LeaderHint>> {
    let wants_hint = |result: &ReadResult| {
        matches!(
            result.error,
            Some(ResponseError::NotLeaderOrFollower | ResponseError::FencedLeaderEpoch)
        )
    };
    if !results.iter().any(wants_hint) {
        return vec![None; reads.len()];
    }
    let image = broker.image();
    let view = ImageView::new(&image, listener_name);
    reads
        .iter()
        .zip(results)
        .map(|(read, result)| {
            if !wants_hint(result) {
                return None;
            }
            let topic = image.topic_by_name(&read.key.topic)?;
            view.leader_hint(topic, read.key.partition)
        })
        .collect()
}

/// Fetch traffic for the metrics: the bytes sent, and the offsets delivered (from the fetch
/// offset to the end of the returned batches; compaction gaps count as delivered). What
/// followers fetch is replication traffic, counted apart (Kafka `ReplicationBytesOutPerSec`).
fn count_fetched(
    from_follower: bool,
    reads: &[PlannedRead],
    partitions: &[Option<Arc<Partition>>],
    results: &[ReadResult],
) {
    for ((read, partition), result) in reads.iter().zip(partitions).zip(results) {
        let Some(partition) = partition else { continue };
        if !result.has_records() {
            continue;
        }
        if from_follower {
            partition
                .traffic
                .replication_bytes_out
                .add(result.size_bytes() as u64);
            continue;
        }
        partition.traffic.bytes_out.add(result.size_bytes() as u64);
        let delivered = result.next_offset.saturating_sub(read.fetch_offset).max(0);
        partition.traffic.messages_out.add(delivered as u64);
    }
}

/// Works out the partitions to read and the session they belong to.
fn plan(
    broker: &Broker,
    api_version: i16,
    request: &FetchRequest,
) -> Result<(SessionMode, Vec<PlannedRead>), ResponseError> {
    let requested: Vec<(FetchKey, &FetchPartition)> = request
        .topics
        .iter()
        .flat_map(|topic| {
            let (name, topic_id) = resolve(broker, api_version, &topic.topic, topic.topic_id);
            topic.partitions.iter().map(move |p| {
                (
                    FetchKey {
                        topic: name.clone(),
                        topic_id,
                        partition: p.partition,
                    },
                    p,
                )
            })
        })
        .collect();
    let to_read = |key: FetchKey, p: &FetchPartition| PlannedRead {
        key,
        fetch_offset: p.fetch_offset,
        partition_max_bytes: p.partition_max_bytes,
        current_leader_epoch: p.current_leader_epoch,
        last_fetched_epoch: p.last_fetched_epoch,
        log_start_offset: p.log_start_offset,
    };
    let session_id = request.session_id;
    let epoch = request.session_epoch;
    let mut cache = broker.fetch_sessions().lock();
    if epoch == FINAL_EPOCH || epoch == INITIAL_EPOCH {
        if session_id != INVALID_SESSION_ID {
            cache.remove(session_id);
        }
        let reads: Vec<PlannedRead> = requested.into_iter().map(|(k, p)| to_read(k, p)).collect();
        if epoch == FINAL_EPOCH {
            return Ok((SessionMode::Sessionless, reads));
        }
        return Ok((SessionMode::Full, reads));
    }
    if session_id == INVALID_SESSION_ID {
        return Err(ResponseError::InvalidFetchSessionEpoch);
    }
    let session = cache
        .begin_incremental(session_id, epoch)
        .map_err(|err| match err {
            SessionError::NotFound => ResponseError::FetchSessionIdNotFound,
            SessionError::InvalidEpoch => ResponseError::InvalidFetchSessionEpoch,
        })?;
    for (key, p) in requested {
        if !session.upsert(key, p.fetch_offset, p.partition_max_bytes) {
            return Err(ResponseError::InvalidRequest);
        }
    }
    for forgotten in &request.forgotten_topics_data {
        let (name, topic_id) = resolve(broker, api_version, &forgotten.topic, forgotten.topic_id);
        for partition in &forgotten.partitions {
            session.forget(&FetchKey {
                topic: name.clone(),
                topic_id,
                partition: *partition,
            });
        }
    }
    let reads = session
        .partitions
        .iter()
        .map(|(key, cached)| PlannedRead {
            key: key.clone(),
            fetch_offset: cached.fetch_offset,
            partition_max_bytes: cached.partition_max_bytes,
            current_leader_epoch: -1,
            last_fetched_epoch: -1,
            log_start_offset: -1,
        })
        .collect();
    Ok((SessionMode::Incremental { session_id }, reads))
}

/// Names and ids of a requested topic: by name before v13, by id from v13.
fn resolve(broker: &Broker, api_version: i16, name: &TopicName, topic_id: Uuid) -> (String, Uuid) {
    let manager = broker.replica_manager();
    if api_version >= TOPIC_ID_VERSION {
        let name = manager
            .topic_by_id(&topic_id)
            .map(|t| t.name.to_string())
            .unwrap_or_default();
        (name, topic_id)
    } else {
        let id = manager.topic(name).map(|t| t.id).unwrap_or_else(Uuid::nil);
        (name.to_string(), id)
    }
}

/// The outcome of reading one partition.
struct ReadResult {
    error: Option<ResponseError>,
    offsets: Option<PartitionOffsets>,
    records: FileRecords,
    /// read_committed only: aborted transactions overlapping `records`.
    aborted_transactions: Vec<AbortedTxn>,
    /// The offset after `records` (for the metrics).
    next_offset: i64,
    /// A follower's records, read into memory by the replication core (instead of `records`).
    inline_records: Option<bytes::Bytes>,
    /// A follower's log diverges from ours (KIP-320): no records, truncate first.
    diverging_epoch: Option<crate::replication::EpochEndOffset>,
    /// KIP-392: the consumer should read this partition from that broker (no records).
    preferred_read_replica: Option<i32>,
}

impl ReadResult {
    fn data(offsets: PartitionOffsets, records: FileRecords) -> Self {
        Self {
            error: None,
            offsets: Some(offsets),
            records,
            aborted_transactions: Vec::new(),
            next_offset: -1,
            inline_records: None,
            diverging_epoch: None,
            preferred_read_replica: None,
        }
    }

    /// Bytes of records the result carries.
    fn size_bytes(&self) -> usize {
        match &self.inline_records {
            Some(bytes) => bytes.len(),
            None => usize::try_from(self.records.size_bytes()).unwrap_or(usize::MAX),
        }
    }

    fn has_records(&self) -> bool {
        self.size_bytes() > 0
    }

    fn failed(error: ResponseError, offsets: Option<PartitionOffsets>) -> Self {
        Self {
            error: Some(error),
            offsets,
            records: FileRecords::empty(),
            aborted_transactions: Vec::new(),
            next_offset: -1,
            inline_records: None,
            diverging_epoch: None,
            preferred_read_replica: None,
        }
    }
}

/// The partitions a fetch reads, looked up once per request rather than on every wake-up.
/// A partition deleted while the fetch waits answers through `PartitionError::Deleted`.
fn resolve_partitions(broker: &Broker, reads: &[PlannedRead]) -> Vec<Option<Arc<Partition>>> {
    let manager = broker.replica_manager();
    reads
        .iter()
        .map(|read| manager.partition(&read.key.topic, read.key.partition))
        .collect()
}

fn read_all(
    broker: &Broker,
    (follower, client): (Option<(i32, i64)>, Option<&ClientMetadata>),
    reads: &[PlannedRead],
    partitions: &[Option<Arc<Partition>>],
    max_bytes: usize,
    isolation: Isolation,
) -> (Vec<ReadResult>, usize, bool) {
    let mut remaining_bytes = max_bytes;
    let mut bytes_read = 0usize;
    let mut any_error = false;
    let mut min_one_batch = true;
    let results = reads
        .iter()
        .zip(partitions)
        .map(|(read, partition)| {
            let result = match follower {
                Some(replica) => {
                    read_for_follower(broker, replica, read, partition.as_deref(), remaining_bytes)
                }
                None => read_one(
                    client,
                    read,
                    partition.as_deref(),
                    remaining_bytes,
                    min_one_batch,
                    isolation,
                ),
            };
            if result.has_records() {
                let size_bytes = result.size_bytes();
                min_one_batch = false;
                bytes_read = bytes_read.saturating_add(size_bytes);
                remaining_bytes = remaining_bytes.saturating_sub(size_bytes);
            }
            // Kafka answers at once on errors, divergence and a preferred read replica.
            any_error |= result.error.is_some()
                || result.diverging_epoch.is_some()
                || result.preferred_read_replica.is_some();
            result
        })
        .collect();
    (results, bytes_read, any_error)
}

/// One partition of a follower's fetch (Kafka `Partition.fetchRecords` for a follower, then
/// `updateFollowerFetchState`).
fn read_for_follower(
    broker: &Broker,
    replica: (i32, i64),
    read: &PlannedRead,
    partition: Option<&Partition>,
    remaining_bytes: usize,
) -> ReadResult {
    let Some(partition) = partition else {
        return ReadResult::failed(ResponseError::UnknownTopicOrPartition, None);
    };
    let request = crate::replication::FetchPartitionRequest {
        key: (partition.topic_id, partition.index),
        fetch_offset: read.fetch_offset,
        current_leader_epoch: read.current_leader_epoch,
        last_fetched_epoch: (read.last_fetched_epoch >= 0).then_some(read.last_fetched_epoch),
        log_start_offset: read.log_start_offset,
    };
    let limit = usize::try_from(read.partition_max_bytes.max(0))
        .unwrap_or(0)
        .min(remaining_bytes)
        .max(1);
    // Kafka `shouldLeaderThrottle`, decided before the read as Kafka does: a throttled
    // replica outside the ISR gets no records while the leader quota is exceeded (its fetch
    // position is still recorded).
    let config = broker.config();
    let leader_rate = QuotaSide::Leader.rate_bytes_per_s(&config);
    let quotas = &broker.replication().quotas;
    let throttled = partition.is_leader_throttled();
    let hold_back = throttled
        && !partition.isr_contains(replica.0)
        && quotas.is_exceeded(QuotaSide::Leader, leader_rate);
    let served =
        partition.serve_follower_fetch(replica, &request, limit, crate::time::monotonic_ms());
    let (mut answer, effects) = match served {
        Ok(served) => served,
        Err(PartitionError::Deleted) => {
            return ReadResult::failed(ResponseError::UnknownTopicOrPartition, None)
        }
        Err(PartitionError::Storage(err)) => {
            tracing::error!(topic = %read.key.topic, partition = read.key.partition, error = %err, "follower read failed");
            return ReadResult::failed(ResponseError::KafkaStorageError, None);
        }
        Err(_) => return ReadResult::failed(ResponseError::NotLeaderOrFollower, None),
    };
    broker.replication().on_follower_fetch(partition, effects);
    if let Some(error) = answer.error {
        return ReadResult::failed(error, None);
    }
    if hold_back && !answer.records.is_empty() {
        answer.records = bytes::Bytes::new();
        quotas.count_held_back(QuotaSide::Leader);
    } else if throttled {
        quotas.record(QuotaSide::Leader, answer.records.len() as u64, leader_rate);
    }
    let last_stable_offset = partition
        .offsets()
        .map_or(answer.high_watermark, |o| o.last_stable_offset);
    let offsets = PartitionOffsets {
        log_start_offset: answer.log_start_offset,
        log_end_offset: -1,
        high_watermark: answer.high_watermark,
        last_stable_offset: last_stable_offset.min(answer.high_watermark),
    };
    let mut result = ReadResult::data(offsets, FileRecords::empty());
    result.diverging_epoch = answer.diverging_epoch;
    if !answer.records.is_empty() {
        result.inline_records = Some(answer.records);
    }
    result
}

fn read_one(
    client: Option<&ClientMetadata>,
    read: &PlannedRead,
    partition: Option<&Partition>,
    remaining_bytes: usize,
    min_one_batch: bool,
    isolation: Isolation,
) -> ReadResult {
    let unknown = if read.key.topic.is_empty() {
        ResponseError::UnknownTopicId
    } else {
        ResponseError::UnknownTopicOrPartition
    };
    let Some(partition) = partition else {
        return ReadResult::failed(unknown, None);
    };
    if let Err(error) = partition.check_leader_epoch(read.current_leader_epoch) {
        return ReadResult::failed(error, None);
    }
    if !partition.is_hosted() {
        return ReadResult::failed(ResponseError::NotLeaderOrFollower, None);
    }
    if !partition.is_leader() && client.is_none() {
        // Before v11 (no client metadata) consumers read from the leader only (Kafka
        // `FetchParams.fetchOnlyLeader`); from v11 any replica serves up to its high watermark.
        return ReadResult::failed(ResponseError::NotLeaderOrFollower, None);
    }
    if let Some(replica) = client
        .filter(|_| partition.is_leader())
        .and_then(|client| client.preferred_read_replica(partition, read.fetch_offset))
    {
        return match partition.offsets() {
            Ok(offsets) => {
                let mut result = ReadResult::data(offsets, FileRecords::empty());
                result.preferred_read_replica = Some(replica);
                result
            }
            Err(_) => ReadResult::failed(unknown, None),
        };
    }
    let limit = usize::try_from(read.partition_max_bytes.max(0))
        .unwrap_or(0)
        .min(remaining_bytes);
    if limit == 0 && !min_one_batch {
        return match partition.offsets() {
            Ok(offsets) => ReadResult::data(offsets, FileRecords::empty()),
            Err(_) => ReadResult::failed(unknown, None),
        };
    }
    // Fast path: nothing new at this offset. Most partitions of a wide fetch woken by an
    // append elsewhere are in this state; answer from the published offsets, lock-free.
    if let Ok(offsets) = partition.offsets() {
        let readable_end = match isolation {
            Isolation::ReadCommitted => offsets.last_stable_offset,
            Isolation::ReadUncommitted => offsets.high_watermark,
            Isolation::LogEnd => offsets.log_end_offset,
        };
        if read.fetch_offset == readable_end && read.fetch_offset >= offsets.log_start_offset {
            return ReadResult::data(offsets, FileRecords::empty());
        }
    }
    match partition.read(read.fetch_offset, limit, min_one_batch, isolation) {
        Ok((data, offsets)) => {
            let mut result = ReadResult::data(offsets, data.records);
            result.next_offset = data.next_offset;
            result.aborted_transactions = data.aborted_transactions.unwrap_or_default();
            result
        }
        Err(PartitionError::Storage(StorageError::OffsetOutOfRange { .. })) => {
            ReadResult::failed(ResponseError::OffsetOutOfRange, partition.offsets().ok())
        }
        Err(PartitionError::Deleted) => ReadResult::failed(unknown, None),
        Err(PartitionError::NotLeaderOrFollower | PartitionError::NotEnoughReplicas) => {
            ReadResult::failed(ResponseError::NotLeaderOrFollower, None)
        }
        Err(PartitionError::Storage(err)) => {
            tracing::error!(topic = %read.key.topic, partition = read.key.partition, error = %err, "read failed");
            ReadResult::failed(ResponseError::KafkaStorageError, None)
        }
    }
}

/// Creates or updates the session after the read. Returns the session id for the response
/// and, per partition, whether the response carries it: everything for full fetches, only
/// what changed (data, offsets, errors) for incremental ones.
fn finish_session(
    broker: &Broker,
    mode: &SessionMode,
    reads: &[PlannedRead],
    results: &[ReadResult],
) -> (i32, Vec<bool>) {
    let remember = |cached: &mut CachedPartition, result: &ReadResult| {
        if let Some(offsets) = result.offsets {
            cached.last_high_watermark = offsets.high_watermark;
            cached.last_log_start_offset = offsets.log_start_offset;
        }
    };
    let all = vec![true; reads.len()];
    let mut cache = broker.fetch_sessions().lock();
    match mode {
        SessionMode::Sessionless => (INVALID_SESSION_ID, all),
        SessionMode::Full => {
            let partitions = reads
                .iter()
                .zip(results)
                .map(|(read, result)| {
                    let mut cached =
                        CachedPartition::new(read.fetch_offset, read.partition_max_bytes);
                    remember(&mut cached, result);
                    (read.key.clone(), cached)
                })
                .collect();
            (cache.create(partitions), all)
        }
        SessionMode::Incremental { session_id } => {
            let Some(session) = cache.get_mut(*session_id) else {
                // Evicted while this fetch waited: the client will fall back to a full fetch.
                return (*session_id, all);
            };
            let include = reads
                .iter()
                .zip(results)
                .map(|(read, result)| {
                    let Some(cached) = session.get_mut(&read.key) else {
                        return true;
                    };
                    let offsets_changed = result.offsets.is_some_and(|o| {
                        o.high_watermark != cached.last_high_watermark
                            || o.log_start_offset != cached.last_log_start_offset
                    });
                    remember(cached, result);
                    result.error.is_some()
                        || result.has_records()
                        || result.diverging_epoch.is_some()
                        || result.preferred_read_replica.is_some()
                        || offsets_changed
                })
                .collect();
            (*session_id, include)
        }
    }
}

fn build_topics(
    api_version: i16,
    read_committed: bool,
    reads: Vec<PlannedRead>,
    results: Vec<ReadResult>,
    include: &[bool],
    hints: &[Option<LeaderHint>],
) -> (Vec<FetchableTopicResponse>, Vec<FileRecords>) {
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    let mut file_records = Vec::new();
    let mut topic_index: HashMap<(String, Uuid), usize> = HashMap::new();
    for (((read, result), included), hint) in reads.into_iter().zip(results).zip(include).zip(hints)
    {
        if !included {
            continue;
        }
        let offsets = result.offsets.unwrap_or(PartitionOffsets {
            log_start_offset: -1,
            log_end_offset: -1,
            high_watermark: -1,
            last_stable_offset: -1,
        });
        let aborted_transactions = read_committed.then(|| {
            result
                .aborted_transactions
                .iter()
                .map(|txn| {
                    AbortedTransaction::default()
                        .with_producer_id(ProducerId(txn.producer_id))
                        .with_first_offset(txn.first_offset)
                })
                .collect()
        });
        let mut partition = PartitionData::default()
            .with_partition_index(read.key.partition)
            .with_error_code(result.error.map_or(0, |e| e.code()))
            .with_high_watermark(offsets.high_watermark)
            .with_last_stable_offset(offsets.last_stable_offset)
            .with_log_start_offset(offsets.log_start_offset)
            .with_aborted_transactions(aborted_transactions)
            .with_preferred_read_replica(BrokerId(result.preferred_read_replica.unwrap_or(-1)))
            .with_records(Some(if let Some(inline) = result.inline_records {
                inline
            } else if result.records.is_empty() {
                Default::default()
            } else {
                file_records.push(result.records);
                placeholder(file_records.len() - 1)
            }));
        if let Some(diverging) = result.diverging_epoch {
            partition.diverging_epoch = partition
                .diverging_epoch
                .with_epoch(diverging.epoch)
                .with_end_offset(diverging.end_offset);
        }
        if let (Some(hint), true) = (hint, api_version >= CURRENT_LEADER_VERSION) {
            partition = partition.with_current_leader(
                LeaderIdAndEpoch::default()
                    .with_leader_id(BrokerId(hint.leader_id))
                    .with_leader_epoch(hint.leader_epoch),
            );
        }
        let slot = *topic_index
            .entry((read.key.topic.clone(), read.key.topic_id))
            .or_insert_with(|| {
                let mut topic = FetchableTopicResponse::default();
                if api_version >= TOPIC_ID_VERSION {
                    topic = topic.with_topic_id(read.key.topic_id);
                } else {
                    topic =
                        topic.with_topic(TopicName(StrBytes::from_string(read.key.topic.clone())));
                }
                topics.push(topic);
                topics.len() - 1
            });
        topics[slot].partitions.push(partition);
    }
    (topics, file_records)
}
