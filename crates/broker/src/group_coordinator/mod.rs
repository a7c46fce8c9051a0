//! The group coordinator: consumer groups (classic JoinGroup/SyncGroup protocol) and committed
//! offsets, persisted in `__consumer_offsets` (Kafka's `GroupCoordinatorService`).
//!
//! Layout follows Kafka's new coordinator (KIP-848 era):
//!
//! - [`GroupCoordinator`] routes each group to a shard: `partition_for(group_id)`, Kafka's
//!   `Utils.abs(groupId.hashCode) % offsets.topic.num.partitions`. On a single node every
//!   shard is local; replication can later move shards with their partition's leadership.
//! - [`shard::GroupCoordinatorShard`] owns one partition's groups
//!   ([`group_metadata_manager::GroupMetadataManager`], classic groups in [`classic_group`])
//!   and offsets ([`offsets::OffsetMetadataManager`]), its timers ([`timer`]), and appends its
//!   records ([`persistence`], Kafka's byte layout) to its partition.
//! - At start-up every partition of `__consumer_offsets` is replayed into its shard.
//!
//! JoinGroup and SyncGroup are long polls: the shard parks a `oneshot::Sender` in the member
//! and the handler awaits the receiver outside the shard's lock. Timers (sessions, join and
//! sync deadlines, the initial rebalance delay, offset expiration) run in [`run_timers`], a task
//! the server spawns, and after every operation on the shard it touched. Time is passed in as
//! milliseconds, so tests drive it.
//!
//! Replication (Kafka appends coordinator records with acks=-1 and answers once the high
//! watermark passes them):
//!
//! - A shard applies its records to memory at the leader's local append, under its lock
//!   (Kafka's coordinator runtime replays records as it writes them). The append is refused
//!   while the partition's ISR is below `min.insync.replicas`.
//! - Every operation that goes through a shard's write path (JoinGroup, SyncGroup, Heartbeat,
//!   LeaveGroup, OffsetCommit, TxnOffsetCommit, OffsetDelete, DeleteGroups,
//!   ConsumerGroupHeartbeat) answers only once the partition's high watermark reached its log
//!   end offset as it was right after the operation ([`CoordinatorLog::wait_for_commit`],
//!   the replication purgatory; the lock is released first). That is Kafka's "wait for the
//!   last written offset": an answer never reflects state a failover could still lose,
//!   including records of other operations it depends on. On one node the wait ends at once.
//! - If the wait fails (too few in-sync replicas, REQUEST_TIMED_OUT after
//!   `COORDINATOR_WRITE_TIMEOUT_MS`, leadership lost) the answer is COORDINATOR_NOT_AVAILABLE
//!   or NOT_COORDINATOR (Kafka's mapping) and memory keeps the change: the record is in the
//!   leader's log, so memory equals that log. The record either commits later (the high
//!   watermark passes every record of a leader that stays leader, the ISR shrinking if need
//!   be) or the leadership moves, and then the shard is dropped and, when this node leads
//!   again, rebuilt from its log. Nothing is rolled back by hand.
//! - Loads replay to the log end, not the high watermark: a new leader's high watermark may
//!   lag records the previous leader acknowledged, and answers wait for their commit anyway.
//! - Reads (OffsetFetch, DescribeGroups, ListGroups) answer from memory at once, so they may
//!   show a change whose commit is still pending (design Q4). Kafka reads at the last
//!   committed offset; here the cost is bounded: such a change is either committed moments
//!   later or lost with a failover, and then a consumer re-reads from an older offset
//!   (re-consumption, never loss).

pub mod assignor;
pub mod classic_group;
pub mod consumer_group;
pub mod consumer_groups;
pub mod group_metadata_manager;
pub mod offsets;
pub mod persistence;
pub mod shard;
pub mod timer;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fjord_protocol::control::ControlRecord;
use fjord_protocol::kafka_protocol::messages::consumer_group_describe_response;
use fjord_protocol::kafka_protocol::messages::describe_groups_response::DescribedGroup;
use fjord_protocol::kafka_protocol::messages::list_groups_response::ListedGroup;
use fjord_protocol::kafka_protocol::messages::offset_commit_response::OffsetCommitResponseTopic;
use fjord_protocol::kafka_protocol::messages::txn_offset_commit_response::TxnOffsetCommitResponseTopic;
use fjord_protocol::kafka_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, GroupId, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, OffsetCommitRequest,
    SyncGroupRequest, SyncGroupResponse, TxnOffsetCommitRequest,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::records::BatchIter;
use fjord_protocol::ResponseError;
use parking_lot::Mutex;
use tokio::sync::{watch, Notify};
use tracing::{info, warn};

use crate::config::BrokerConfig;
use crate::error::BrokerError;
use crate::partition::{Partition, PartitionError};
use crate::replica_manager::{
    committed_now, coordinator_commit_error, wait_for_coordinator_commit, CommitFuture,
    CoordinatorAppendError, ReplicaManager, GROUP_METADATA_TOPIC_NAME,
};
use crate::replication_shell::ReplicationShell;
use crate::time::now_ms;
use classic_group::Protocol;
use group_metadata_manager::JoinRequest;
use persistence::CoordinatorRecord;
use shard::{FetchedOffset, GroupCoordinatorShard};

/// Groups hosted across all shards. Kafka has no such limit; each group costs memory and
/// timers, and a client can create groups at will (a JoinGroup or a manual commit).
pub const GROUPS_COUNT_MAX: usize = 100_000;
/// Protocol metadata a member may send in one JoinGroup, summed over its protocols (a
/// consumer's subscription, per assignor). Kafka bounds it only by the request size.
pub const MEMBER_PROTOCOL_METADATA_BYTES_MAX: usize = 1024 * 1024;
/// Protocols (assignors) one member may list.
pub const PROTOCOLS_PER_MEMBER_MAX: usize = 64;
/// Assignment bytes the leader may give one member.
pub const MEMBER_ASSIGNMENT_BYTES_MAX: usize = 1024 * 1024;
/// How long a new member's JoinGroup may stay parked before the member is dropped (Kafka's
/// `group.classic.new.member.join.timeout.ms` default).
pub const NEW_MEMBER_JOIN_TIMEOUT_MS: i64 = 5 * 60 * 1000;
/// Transactional offsets pending (committed by ongoing transactions, not yet ended by a marker)
/// in one shard. Kafka has no such limit; each costs memory until its transaction ends, which
/// the client decides (up to `transaction.max.timeout.ms`). A TxnOffsetCommit above it is
/// answered COORDINATOR_NOT_AVAILABLE (retriable) until transactions end. Replay is not bounded:
/// the log is the truth.
pub const PENDING_TRANSACTIONAL_OFFSETS_MAX: usize = 100_000;
/// Timer tasks one poll of one shard runs at most.
pub const TIMER_TASKS_PER_POLL_MAX: usize = 100_000;
/// Bytes read per call when replaying `__consumer_offsets` at start-up.
const LOAD_READ_BYTES: usize = 4 * 1024 * 1024;
/// The timer task sleeps at most this long between checks, so a missed wake-up costs at most
/// this much delay.
const TIMER_IDLE_SLEEP_MS: i64 = 1_000;

/// The coordinator's settings, from the broker config.
#[derive(Debug, Clone)]
pub struct GroupCoordinatorConfig {
    pub initial_rebalance_delay_ms: i32,
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    pub group_max_size: usize,
    pub offsets_retention_ms: i64,
    pub offsets_retention_check_interval_ms: i64,
    pub offset_metadata_max_bytes: usize,
    pub new_member_join_timeout_ms: i64,
    /// Largest record batch the coordinator writes for one operation (`message.max.bytes`).
    pub batch_bytes_max: usize,
    pub groups_count_max: usize,
    /// Offsets pending in transactions per shard (`PENDING_TRANSACTIONAL_OFFSETS_MAX`).
    pub pending_transactional_offsets_max: usize,
    pub consumer_heartbeat_interval_ms: i32,
    pub consumer_session_timeout_ms: i32,
    pub consumer_assignor: String,
}

impl GroupCoordinatorConfig {
    pub fn from_broker(config: &BrokerConfig) -> Self {
        Self {
            initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms,
            min_session_timeout_ms: config.group_min_session_timeout_ms,
            max_session_timeout_ms: config.group_max_session_timeout_ms,
            group_max_size: config.group_max_size,
            offsets_retention_ms: config.offsets_retention_ms,
            offsets_retention_check_interval_ms: config.offsets_retention_check_interval_ms,
            offset_metadata_max_bytes: config.offset_metadata_max_bytes,
            new_member_join_timeout_ms: NEW_MEMBER_JOIN_TIMEOUT_MS,
            batch_bytes_max: config.message_max_bytes,
            groups_count_max: GROUPS_COUNT_MAX,
            pending_transactional_offsets_max: PENDING_TRANSACTIONAL_OFFSETS_MAX,
            consumer_heartbeat_interval_ms: config.group_consumer_heartbeat_interval_ms,
            consumer_session_timeout_ms: config.group_consumer_session_timeout_ms,
            consumer_assignor: config.group_consumer_assignor.clone(),
        }
    }
}

/// Who sent a request, for member ids and DescribeGroups.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    pub api_version: i16,
    pub client_id: String,
    /// Kafka's format: "/" and the IP address.
    pub client_host: String,
}

/// Why a coordinator write failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppendError {
    #[error("record batch of {size_bytes} bytes exceeds {limit_bytes} bytes")]
    TooLarge {
        size_bytes: usize,
        limit_bytes: usize,
    },
    #[error("__consumer_offsets is not available: {0}")]
    Unavailable(String),
    /// This broker no longer leads the shard's partition (NOT_COORDINATOR).
    #[error("not the leader of the __consumer_offsets partition: {0}")]
    NotLeader(String),
    #[error("storage: {0}")]
    Storage(String),
    /// The log refused the batch with this Kafka error (a transactional write from a fenced
    /// producer epoch: INVALID_PRODUCER_EPOCH, PRODUCER_FENCED).
    #[error("refused: {0:?}")]
    Rejected(ResponseError),
}

/// The producer of a transactional coordinator write (TxnOffsetCommit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransactionalProducer {
    pub producer_id: i64,
    pub producer_epoch: i16,
}

/// Where a shard's records go: a partition of `__consumer_offsets` (or, in tests, memory).
pub trait CoordinatorLog: Send + Sync {
    /// Appends `records` (not empty) as one batch to `partition` (the leader's local append,
    /// refused while the ISR is below `min.insync.replicas`), with the offset of the first
    /// record. The batch is not committed yet: answers wait for
    /// [`CoordinatorLog::wait_for_commit`]. With a `producer` the batch is transactional,
    /// carrying the producer's id and epoch; its records count only once the transaction's
    /// marker commits.
    fn append_batch(
        &self,
        partition: i32,
        records: &[CoordinatorRecord],
        producer: Option<TransactionalProducer>,
        now_ms: i64,
    ) -> Result<i64, AppendError>;

    /// Appends `records` as one plain batch (see [`CoordinatorLog::append_batch`]); nothing
    /// for no records.
    fn append(
        &self,
        partition: i32,
        records: &[CoordinatorRecord],
        now_ms: i64,
    ) -> Result<(), AppendError> {
        if records.is_empty() {
            return Ok(());
        }
        self.append_batch(partition, records, None, now_ms)
            .map(|_| ())
    }

    /// Resolves once everything appended to `partition` so far is committed (the high
    /// watermark passed it with enough in-sync replicas), or with the produce error that
    /// prevented it. The future holds no lock. An in-memory log is committed at once.
    fn wait_for_commit(&self, partition: i32) -> CommitFuture {
        let _ = partition;
        committed_now()
    }
}

/// The broker-wide count of groups, bounded by `GROUPS_COUNT_MAX`.
#[derive(Debug)]
pub struct GroupsCount {
    count: AtomicUsize,
    max: usize,
}

impl GroupsCount {
    pub fn new(max: usize) -> Self {
        Self {
            count: AtomicUsize::new(0),
            max,
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn get(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Counts one more group unless the limit is reached.
    pub fn try_add(&self) -> bool {
        self.count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Counts a group loaded from the log: the log is the truth, even above the limit.
    pub fn add_unbounded(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    pub fn remove(&self) {
        let _ = self
            .count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }
}

/// Java's `String.hashCode`: over UTF-16 code units, `h = 31 * h + c`, wrapping.
pub fn java_string_hash_code(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// Kafka's `Utils.abs(groupId.hashCode) % partitions`: the `__consumer_offsets` partition, and
/// so the shard, of a group. (`Utils.abs` maps `i32::MIN` to 0.)
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    let hash = java_string_hash_code(group_id);
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % partitions.max(1)
}

/// Appends coordinator records to `__consumer_offsets` through the normal log append path,
/// creating the topic on first use.
pub struct OffsetsTopicLog {
    replica_manager: Arc<ReplicaManager>,
    /// The purgatory writes wait in for the high watermark.
    replication: Arc<ReplicationShell>,
    batch_bytes_max: usize,
}

impl OffsetsTopicLog {
    pub fn new(
        replica_manager: Arc<ReplicaManager>,
        replication: Arc<ReplicationShell>,
        batch_bytes_max: usize,
    ) -> Self {
        Self {
            replica_manager,
            replication,
            batch_bytes_max,
        }
    }
}

impl CoordinatorLog for OffsetsTopicLog {
    fn append_batch(
        &self,
        partition: i32,
        records: &[CoordinatorRecord],
        producer: Option<TransactionalProducer>,
        now_ms: i64,
    ) -> Result<i64, AppendError> {
        if records.is_empty() {
            // A batch needs a record; callers never ask for an empty one.
            return Err(AppendError::Storage("no records to append".to_string()));
        }
        let mut batch = persistence::encode_batch_with_producer(
            records,
            producer.map(|p| (p.producer_id, p.producer_epoch)),
            now_ms,
        );
        // The topic is created through the controller before a coordinator writes (see
        // `Broker::internal_topic_or_create`); until it is in the image nothing can be written.
        let topic = self.replica_manager.offsets_topic().ok_or_else(|| {
            AppendError::Unavailable(format!("{GROUP_METADATA_TOPIC_NAME} does not exist yet"))
        })?;
        let info = self
            .replica_manager
            .append_coordinator_batch(&topic, partition, &mut batch, self.batch_bytes_max, now_ms)
            .map_err(|err| match err {
                CoordinatorAppendError::TooLarge {
                    size_bytes,
                    limit_bytes,
                } => AppendError::TooLarge {
                    size_bytes,
                    limit_bytes,
                },
                CoordinatorAppendError::Unavailable(reason) => AppendError::Unavailable(reason),
                CoordinatorAppendError::NotLeader(reason) => AppendError::NotLeader(reason),
                // A transactional offset commit from a fenced or finished producer epoch.
                CoordinatorAppendError::Storage(fjord_storage::StorageError::Producer(err)) => {
                    AppendError::Rejected(match err {
                        fjord_storage::ProducerStateError::InvalidProducerEpoch { .. } => {
                            ResponseError::ProducerFenced
                        }
                        fjord_storage::ProducerStateError::InvalidTxnState { .. } => {
                            ResponseError::InvalidTxnState
                        }
                        _ => ResponseError::InvalidProducerEpoch,
                    })
                }
                CoordinatorAppendError::Storage(err) => AppendError::Storage(err.to_string()),
            })?;
        Ok(info.first_offset)
    }

    fn wait_for_commit(&self, partition: i32) -> CommitFuture {
        wait_for_coordinator_commit(
            &self.replica_manager,
            &self.replication,
            GROUP_METADATA_TOPIC_NAME,
            partition,
            None,
        )
    }
}

/// A shard's ownership (Kafka `CoordinatorRuntime`'s states, without a separate loading phase:
/// a shard is loaded synchronously when its partition's leadership arrives).
const SHARD_NOT_OWNED: u8 = 0;
const SHARD_ACTIVE: u8 = 2;

pub struct GroupCoordinator {
    config: Arc<GroupCoordinatorConfig>,
    shards: Vec<Mutex<GroupCoordinatorShard>>,
    /// Per shard: whether this broker coordinates its groups (leads its `__consumer_offsets`
    /// partition). Requests for groups of other shards answer NOT_COORDINATOR.
    ownership: Vec<std::sync::atomic::AtomicU8>,
    /// The log shards write to and are reloaded from on election.
    log: Arc<dyn CoordinatorLog>,
    replica_manager: Option<Arc<ReplicaManager>>,
    groups_count: Arc<GroupsCount>,
    /// Wakes [`run_timers`] when an operation scheduled a deadline earlier than the one it
    /// sleeps towards.
    timers_changed: Notify,
    /// The deadline the timer task sleeps towards (i64::MAX when it is not sleeping on one).
    timer_wake_ms: AtomicI64,
    active: AtomicBool,
}

impl GroupCoordinator {
    /// Opens the coordinator of this broker: one shard per `__consumer_offsets` partition
    /// (the topic's actual count if it exists, so replayed records stay with their shard), each
    /// loaded from its partition.
    pub fn open(
        config: &BrokerConfig,
        replica_manager: Arc<ReplicaManager>,
        replication: Arc<ReplicationShell>,
        now_ms: i64,
    ) -> Result<Self, BrokerError> {
        let coordinator_config = GroupCoordinatorConfig::from_broker(config);
        let (existing, partitions) = replica_manager.internal_topic_and_partitions(
            GROUP_METADATA_TOPIC_NAME,
            config.offsets_topic_num_partitions,
        );
        let log: Arc<dyn CoordinatorLog> = Arc::new(OffsetsTopicLog::new(
            replica_manager.clone(),
            replication,
            coordinator_config.batch_bytes_max,
        ));
        let mut coordinator = Self::with_log(coordinator_config, log, partitions, now_ms);
        coordinator.replica_manager = Some(replica_manager.clone());
        if let Some(topic) = existing {
            let started = std::time::Instant::now();
            for (shard, partition) in coordinator.shards.iter().zip(&topic.partitions) {
                load_partition(partition, &mut shard.lock(), now_ms)?;
            }
            info!(
                groups = coordinator.groups_count.get(),
                partitions,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "loaded consumer groups and offsets from __consumer_offsets"
            );
        }
        for shard in &coordinator.shards {
            shard.lock().on_loaded(now_ms);
        }
        Ok(coordinator)
    }

    /// A coordinator writing to `log` (tests use an in-memory log).
    pub fn with_log(
        config: GroupCoordinatorConfig,
        log: Arc<dyn CoordinatorLog>,
        partitions: i32,
        now_ms: i64,
    ) -> Self {
        let config = Arc::new(config);
        let groups_count = Arc::new(GroupsCount::new(config.groups_count_max));
        let shards = (0..partitions.max(1))
            .map(|partition| {
                Mutex::new(GroupCoordinatorShard::new(
                    config.clone(),
                    log.clone(),
                    partition,
                    groups_count.clone(),
                    now_ms,
                ))
            })
            .collect();
        let ownership = (0..partitions.max(1))
            .map(|_| std::sync::atomic::AtomicU8::new(SHARD_ACTIVE))
            .collect();
        Self {
            config,
            shards,
            ownership,
            log,
            replica_manager: None,
            groups_count,
            timers_changed: Notify::new(),
            timer_wake_ms: AtomicI64::new(i64::MAX),
            active: AtomicBool::new(true),
        }
    }

    pub fn config(&self) -> &GroupCoordinatorConfig {
        &self.config
    }

    pub fn partitions(&self) -> i32 {
        self.shards.len() as i32
    }

    pub fn partition_for(&self, group_id: &str) -> i32 {
        partition_for(group_id, self.partitions())
    }

    pub fn groups_count(&self) -> usize {
        self.groups_count.get()
    }

    /// Whether this broker coordinates the groups of `__consumer_offsets` partition `partition`.
    pub fn owns_partition(&self, partition: i32) -> bool {
        self.ownership
            .get(partition as usize)
            .is_some_and(|o| o.load(Ordering::Acquire) == SHARD_ACTIVE)
    }

    /// COORDINATOR_NOT_AVAILABLE while shutting down, NOT_COORDINATOR for a group whose
    /// partition another broker leads.
    fn check(&self, group_id: &str) -> Result<(), ResponseError> {
        if !self.is_active() {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if !self.owns_partition(self.partition_for(group_id)) {
            return Err(ResponseError::NotCoordinator);
        }
        Ok(())
    }

    /// Follows the leadership of `__consumer_offsets` (Kafka `GroupCoordinatorService.onElection`
    /// / `onResignation`): a partition this broker now leads (`elected`: newly, or again with a
    /// new leader epoch) has its shard reloaded from the log; a partition led elsewhere has its
    /// shard unloaded (parked requests answer NOT_COORDINATOR, clients find the new one).
    pub fn sync_leadership(&self, leading: &dyn Fn(i32) -> bool, elected: &[i32], now_ms: i64) {
        for (index, shard) in self.shards.iter().enumerate() {
            let partition = index as i32;
            let owned = self.owns_partition(partition);
            let lead = leading(partition);
            if lead && (!owned || elected.contains(&partition)) {
                self.load_shard(partition, now_ms);
            } else if !lead && owned {
                self.ownership[index].store(SHARD_NOT_OWNED, Ordering::Release);
                self.reset_shard(&mut shard.lock(), partition, now_ms);
                info!(
                    partition,
                    "resigned as group coordinator of __consumer_offsets partition"
                );
            }
        }
    }

    /// Replaces a shard with an empty one (its groups leave the broker-wide count first).
    fn reset_shard(&self, shard: &mut GroupCoordinatorShard, partition: i32, now_ms: i64) {
        shard.unload();
        *shard = GroupCoordinatorShard::new(
            self.config.clone(),
            self.log.clone(),
            partition,
            self.groups_count.clone(),
            now_ms,
        );
    }

    /// Rebuilds shard `partition` from its `__consumer_offsets` partition and makes it active.
    fn load_shard(&self, partition: i32, now_ms: i64) {
        let Some(replica_manager) = &self.replica_manager else {
            return;
        };
        let Some(log_partition) = replica_manager.partition(GROUP_METADATA_TOPIC_NAME, partition)
        else {
            return;
        };
        let mut shard = self.shards[partition as usize].lock();
        self.reset_shard(&mut shard, partition, now_ms);
        match load_partition(&log_partition, &mut shard, now_ms) {
            Ok(()) => {
                shard.on_loaded(now_ms);
                self.ownership[partition as usize].store(SHARD_ACTIVE, Ordering::Release);
                info!(
                    partition,
                    "elected group coordinator of __consumer_offsets partition: loaded"
                );
            }
            Err(error) => {
                self.ownership[partition as usize].store(SHARD_NOT_OWNED, Ordering::Release);
                tracing::error!(partition, %error, "loading a group coordinator shard failed");
            }
        }
    }

    fn shard(&self, group_id: &str) -> &Mutex<GroupCoordinatorShard> {
        &self.shards[self.partition_for(group_id) as usize]
    }

    /// Runs `f` on the group's shard, then the shard's due timers, then wakes the timer task
    /// if `f` scheduled something earlier than it expects.
    fn with_shard<T>(
        &self,
        group_id: &str,
        now_ms: i64,
        f: impl FnOnce(&mut GroupCoordinatorShard) -> T,
    ) -> T {
        let (result, next) = {
            let mut shard = self.shard(group_id).lock();
            let result = f(&mut shard);
            shard.poll_timers(now_ms);
            (result, shard.next_deadline_ms())
        };
        if next.is_some_and(|next| next < self.timer_wake_ms.load(Ordering::Acquire)) {
            self.timers_changed.notify_one();
        }
        result
    }

    /// Waits until everything the shard of `group_id` has written is committed (Kafka's
    /// coordinator runtime completes a write operation once the high watermark passes the
    /// shard's last written offset), holding no lock. The error is the coordinator's
    /// (COORDINATOR_NOT_AVAILABLE or NOT_COORDINATOR, see `coordinator_commit_error`).
    async fn committed(&self, group_id: &str) -> Result<(), ResponseError> {
        let partition = self.partition_for(group_id);
        self.log.wait_for_commit(partition).await.map_err(|error| {
            let mapped = coordinator_commit_error(error);
            warn!(group = group_id, partition, ?error, answer = ?mapped,
                    "__consumer_offsets write not committed");
            mapped
        })
    }

    /// Groups and their committed offsets for the metrics scrape: at most `groups_max`
    /// groups, each shard locked once in turn.
    pub fn metrics_snapshot(&self, groups_max: usize) -> Vec<crate::metrics::GroupSnapshot> {
        let mut snapshots = Vec::new();
        for shard in &self.shards {
            if snapshots.len() >= groups_max {
                break;
            }
            let shard = shard.lock();
            shard.append_metrics_snapshot(&mut snapshots, groups_max);
        }
        snapshots
    }

    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    // ------------------------------------------------------------------------ timers

    /// The earliest timer deadline of any shard.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        self.shards
            .iter()
            .filter_map(|shard| shard.lock().next_deadline_ms())
            .min()
    }

    /// Runs every timer due at `now_ms` (session expiry, join/sync deadlines, initial
    /// rebalance delay, offset expiration).
    pub fn poll_timers(&self, now_ms: i64) {
        for shard in &self.shards {
            let mut shard = shard.lock();
            if shard.next_deadline_ms().is_some_and(|d| d <= now_ms) {
                shard.poll_timers(now_ms);
            }
        }
    }

    /// The coordinator's timer loop, until `shutdown` flips: sleeps until the next deadline or
    /// until an operation schedules an earlier one.
    pub async fn run_timers(&self, mut shutdown: watch::Receiver<bool>) {
        loop {
            let notified = self.timers_changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // Until the next wake-up time is published, any new deadline must wake us: an
            // operation between our look at the shards and the store below would otherwise
            // compare against a stale time and not notify.
            self.timer_wake_ms.store(i64::MAX, Ordering::Release);
            let now = now_ms();
            self.poll_timers(now);
            let wake_ms = self
                .next_deadline_ms()
                .unwrap_or(i64::MAX)
                .min(now.saturating_add(TIMER_IDLE_SLEEP_MS));
            self.timer_wake_ms.store(wake_ms, Ordering::Release);
            let sleep_ms = wake_ms.saturating_sub(now_ms()).max(0) as u64;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(sleep_ms)) => {}
                _ = &mut notified => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }

    /// Broker shutdown: parked JoinGroup/SyncGroup requests are answered NOT_COORDINATOR (as
    /// Kafka does when a shard is unloaded; clients look for the coordinator again), and new
    /// requests get COORDINATOR_NOT_AVAILABLE.
    pub fn shutdown(&self) {
        self.active.store(false, Ordering::Release);
        for shard in &self.shards {
            shard
                .lock()
                .complete_all_futures(ResponseError::NotCoordinator);
        }
    }

    // ------------------------------------------------------------------------ membership

    /// JoinGroup: validated here (group id, session timeout, sizes), then the group's shard;
    /// waits for the join phase to complete.
    pub async fn join_group(
        &self,
        ctx: &RequestContext,
        request: &JoinGroupRequest,
        now_ms: i64,
    ) -> JoinGroupResponse {
        let member_id = request.member_id.to_string();
        let error = |code: ResponseError| {
            JoinGroupResponse::default()
                .with_error_code(code.code())
                .with_member_id(StrBytes::from_string(member_id.clone()))
        };
        if !self.is_active() {
            return error(ResponseError::CoordinatorNotAvailable);
        }
        if request.group_id.is_empty() {
            return error(ResponseError::InvalidGroupId);
        }
        if !self.owns_partition(self.partition_for(request.group_id.as_str())) {
            return error(ResponseError::NotCoordinator);
        }
        if request.session_timeout_ms < self.config.min_session_timeout_ms
            || request.session_timeout_ms > self.config.max_session_timeout_ms
        {
            return error(ResponseError::InvalidSessionTimeout);
        }
        let metadata_bytes: usize = request.protocols.iter().map(|p| p.metadata.len()).sum();
        if request.protocols.len() > PROTOCOLS_PER_MEMBER_MAX
            || metadata_bytes > MEMBER_PROTOCOL_METADATA_BYTES_MAX
        {
            warn!(
                group = request.group_id.as_str(),
                protocols = request.protocols.len(),
                metadata_bytes,
                "JoinGroup refused: protocol metadata above the limits"
            );
            return error(ResponseError::InvalidRequest);
        }
        let join = JoinRequest {
            group_id: request.group_id.to_string(),
            member_id: member_id.clone(),
            group_instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
            protocol_type: request.protocol_type.to_string(),
            protocols: request
                .protocols
                .iter()
                .map(|p| Protocol {
                    name: p.name.to_string(),
                    metadata: p.metadata.clone(),
                })
                .collect(),
            session_timeout_ms: request.session_timeout_ms,
            rebalance_timeout_ms: request.rebalance_timeout_ms,
            reason: request.reason.as_ref().map(|s| s.to_string()),
        };
        let group_id = join.group_id.clone();
        let rx = self.with_shard(&group_id, now_ms, |shard| {
            shard.join_group(ctx, join, now_ms)
        });
        // The sender is dropped only if the group vanished with the request parked.
        let response = rx
            .await
            .unwrap_or_else(|_| error(ResponseError::CoordinatorNotAvailable));
        match self.committed(&group_id).await {
            Ok(()) => response,
            Err(code) => error(code),
        }
    }

    /// SyncGroup: a follower's waits for the leader's assignment.
    pub async fn sync_group(&self, request: &SyncGroupRequest, now_ms: i64) -> SyncGroupResponse {
        let error = |code: ResponseError| SyncGroupResponse::default().with_error_code(code.code());
        if !self.is_active() {
            return error(ResponseError::CoordinatorNotAvailable);
        }
        if request.group_id.is_empty() {
            return error(ResponseError::InvalidGroupId);
        }
        if !self.owns_partition(self.partition_for(request.group_id.as_str())) {
            return error(ResponseError::NotCoordinator);
        }
        let rx = self.with_shard(request.group_id.as_str(), now_ms, |shard| {
            shard.sync_group(request, now_ms)
        });
        let response = rx
            .await
            .unwrap_or_else(|_| error(ResponseError::CoordinatorNotAvailable));
        // The assignment is answered once its GroupMetadata record is committed.
        match self.committed(request.group_id.as_str()).await {
            Ok(()) => response,
            Err(code) => error(code),
        }
    }

    pub async fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
        now_ms: i64,
    ) -> Result<(), ResponseError> {
        if !self.is_active() {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        if !self.owns_partition(self.partition_for(group_id)) {
            return Err(ResponseError::NotCoordinator);
        }
        let result = self.with_shard(group_id, now_ms, |shard| {
            shard.heartbeat(
                group_id,
                member_id,
                group_instance_id,
                generation_id,
                now_ms,
            )
        });
        self.committed(group_id).await?;
        result
    }

    pub async fn leave_group(
        &self,
        request: &LeaveGroupRequest,
        now_ms: i64,
    ) -> LeaveGroupResponse {
        let error =
            |code: ResponseError| LeaveGroupResponse::default().with_error_code(code.code());
        if !self.is_active() {
            return error(ResponseError::CoordinatorNotAvailable);
        }
        if request.group_id.is_empty() {
            return error(ResponseError::InvalidGroupId);
        }
        if !self.owns_partition(self.partition_for(request.group_id.as_str())) {
            return error(ResponseError::NotCoordinator);
        }
        let response = self.with_shard(request.group_id.as_str(), now_ms, |shard| {
            shard.leave_group(request, now_ms)
        });
        match self.committed(request.group_id.as_str()).await {
            Ok(()) => response,
            Err(code) => error(code),
        }
    }

    // ------------------------------------------------------------------------ offsets

    /// OffsetCommit for partitions that exist (the handler answered the others), answered
    /// once the records are committed.
    pub async fn commit_offsets(
        &self,
        request: &OffsetCommitRequest,
        api_version: i16,
        now_ms: i64,
    ) -> Result<Vec<OffsetCommitResponseTopic>, ResponseError> {
        if !self.is_active() {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if request.group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        if !self.owns_partition(self.partition_for(request.group_id.as_str())) {
            return Err(ResponseError::NotCoordinator);
        }
        let topics = self.with_shard(request.group_id.as_str(), now_ms, |shard| {
            shard.commit_offsets(request, api_version, now_ms)
        });
        self.committed(request.group_id.as_str()).await?;
        Ok(topics)
    }

    /// TxnOffsetCommit (Kafka's `GroupCoordinatorService.commitTransactionalOffsets`) for
    /// partitions that exist (the handler answered the others, and verified the transaction):
    /// one transactional batch with the request's producer id and epoch; the offsets stay
    /// pending until [`GroupCoordinator::complete_transaction`].
    pub async fn commit_transactional_offsets(
        &self,
        request: &TxnOffsetCommitRequest,
        api_version: i16,
        now_ms: i64,
    ) -> Result<Vec<TxnOffsetCommitResponseTopic>, ResponseError> {
        if !self.is_active() {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if request.group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        if !self.owns_partition(self.partition_for(request.group_id.as_str())) {
            return Err(ResponseError::NotCoordinator);
        }
        let topics = self.with_shard(request.group_id.as_str(), now_ms, |shard| {
            shard.commit_transactional_offsets(request, api_version, now_ms)
        });
        self.committed(request.group_id.as_str()).await?;
        Ok(topics)
    }

    /// A transaction ended: its COMMIT (`commit`) or ABORT marker was just appended to
    /// `__consumer_offsets` partition `offsets_partition` by the transaction marker writer.
    /// The producer's pending offsets there become committed (where no later plain commit
    /// exists) or are dropped (Kafka's `replayEndTransactionMarker`). Takes only the shard's
    /// lock and never calls the transaction coordinator (lock order: transaction coordinator,
    /// group shard, partition).
    pub fn complete_transaction(
        &self,
        offsets_partition: i32,
        producer_id: i64,
        commit: bool,
        now_ms: i64,
    ) {
        let Some(shard) = usize::try_from(offsets_partition)
            .ok()
            .and_then(|i| self.shards.get(i))
        else {
            warn!(
                offsets_partition,
                producer_id, commit, "transaction marker for a partition this coordinator lacks"
            );
            return;
        };
        shard
            .lock()
            .complete_transaction(producer_id, commit, now_ms);
    }

    /// The `__consumer_offsets` partition a group's offsets (and so a transaction's
    /// TxnOffsetCommit for it) are written to.
    pub fn offsets_partition(&self, group_id: &str) -> i32 {
        self.partition_for(group_id)
    }

    /// OffsetFetch of one group. With `require_stable` (v7+) partitions with offsets pending in
    /// a transaction answer UNSTABLE_OFFSET_COMMIT; without it pending offsets are not visible.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        topics: Option<&[(String, Vec<i32>)]>,
        require_stable: bool,
    ) -> Result<Vec<(String, Vec<FetchedOffset>)>, ResponseError> {
        if !self.is_active() {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        if !self.owns_partition(self.partition_for(group_id)) {
            return Err(ResponseError::NotCoordinator);
        }
        Ok(self
            .shard(group_id)
            .lock()
            .fetch_offsets(group_id, topics, require_stable))
    }

    #[allow(clippy::type_complexity)]
    pub async fn delete_offsets(
        &self,
        group_id: &str,
        topics: &[(String, Vec<i32>)],
        now_ms: i64,
    ) -> Result<Vec<(String, Vec<(i32, Option<ResponseError>)>)>, ResponseError> {
        if !self.is_active() {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        if !self.owns_partition(self.partition_for(group_id)) {
            return Err(ResponseError::NotCoordinator);
        }
        let result = self.with_shard(group_id, now_ms, |shard| {
            shard.delete_offsets(group_id, topics, now_ms)
        });
        self.committed(group_id).await?;
        result
    }

    /// Drops every committed offset of a deleted topic.
    pub fn on_topic_deleted(&self, topic: &str, now_ms: i64) {
        for shard in &self.shards {
            shard.lock().on_topic_deleted(topic, now_ms);
        }
    }

    // ------------------------------------------------------------------------ admin

    /// DescribeGroups: `None` for a group this coordinator does not know.
    /// ConsumerGroupHeartbeat (KIP-848).
    pub async fn consumer_group_heartbeat(
        &self,
        ctx: &RequestContext,
        request: &ConsumerGroupHeartbeatRequest,
        topic_metadata: &(dyn Fn(&str) -> Option<assignor::TopicMetadata> + Sync),
        now_ms: i64,
    ) -> ConsumerGroupHeartbeatResponse {
        let interval_ms = self.config.consumer_heartbeat_interval_ms;
        let error = if !self.is_active() {
            Some(ResponseError::CoordinatorNotAvailable)
        } else if request.group_id.is_empty() {
            Some(ResponseError::InvalidGroupId)
        } else if !self.owns_partition(self.partition_for(request.group_id.as_str())) {
            Some(ResponseError::NotCoordinator)
        } else {
            None
        };
        if let Some(error) = error {
            return ConsumerGroupHeartbeatResponse::default()
                .with_error_code(error.code())
                .with_heartbeat_interval_ms(interval_ms);
        }
        let response = self.with_shard(request.group_id.as_str(), now_ms, |shard| {
            shard.consumer_group_heartbeat(ctx, request, topic_metadata, now_ms)
        });
        match self.committed(request.group_id.as_str()).await {
            Ok(()) => response,
            Err(error) => ConsumerGroupHeartbeatResponse::default()
                .with_error_code(error.code())
                .with_heartbeat_interval_ms(interval_ms),
        }
    }

    /// ConsumerGroupDescribe (KIP-848): one entry per requested group.
    pub fn consumer_group_describe(
        &self,
        group_ids: &[String],
        topic_name: &dyn Fn(&uuid::Uuid) -> Option<String>,
    ) -> Vec<consumer_group_describe_response::DescribedGroup> {
        group_ids
            .iter()
            .map(|group_id| {
                if let Err(code) = self.check(group_id) {
                    return consumer_group_describe_response::DescribedGroup::default()
                        .with_group_id(GroupId(StrBytes::from_string(group_id.clone())))
                        .with_error_code(code.code());
                }
                self.shard(group_id)
                    .lock()
                    .consumer_group_describe(group_id, topic_name)
            })
            .collect()
    }

    pub fn describe_group(&self, group_id: &str) -> Result<Option<DescribedGroup>, ResponseError> {
        self.check(group_id)?;
        Ok(self.shard(group_id).lock().describe_group(group_id))
    }

    /// ListGroups across all shards, sorted by group id. Filters are case-insensitive.
    pub fn list_groups(
        &self,
        states: &[String],
        types: &[String],
    ) -> Result<Vec<ListedGroup>, ResponseError> {
        if !self.is_active() {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        let states: HashSet<String> = states
            .iter()
            .map(|s| s.trim().to_ascii_lowercase())
            .collect();
        let types: HashSet<String> = types.iter().map(|s| s.to_ascii_lowercase()).collect();
        let mut groups: Vec<ListedGroup> = self
            .shards
            .iter()
            .enumerate()
            .filter(|(partition, _)| self.owns_partition(*partition as i32))
            .flat_map(|(_, shard)| shard.lock().list_groups(&states, &types))
            .collect();
        groups.sort_by(|a, b| a.group_id.as_str().cmp(b.group_id.as_str()));
        Ok(groups)
    }

    /// DeleteGroups: each group's error, or `None` when deleted (and the tombstones
    /// committed).
    pub async fn delete_groups(
        &self,
        group_ids: &[String],
        now_ms: i64,
    ) -> Vec<(String, Option<ResponseError>)> {
        if !self.is_active() {
            return group_ids
                .iter()
                .map(|g| (g.clone(), Some(ResponseError::CoordinatorNotAvailable)))
                .collect();
        }
        let mut by_shard: BTreeMap<i32, Vec<String>> = BTreeMap::new();
        for group_id in group_ids {
            by_shard
                .entry(self.partition_for(group_id))
                .or_default()
                .push(group_id.clone());
        }
        let mut results: Vec<(String, Option<ResponseError>)> = Vec::with_capacity(group_ids.len());
        let mut written = Vec::new();
        for (partition, ids) in by_shard {
            if !self.owns_partition(partition) {
                results.extend(
                    ids.into_iter()
                        .map(|id| (id, Some(ResponseError::NotCoordinator))),
                );
                continue;
            }
            let mut shard = self.shards[partition as usize].lock();
            results.extend(shard.delete_groups(&ids, now_ms));
            written.push((partition, ids));
        }
        // Each shard's tombstones are answered once committed (no shard lock held).
        for (partition, ids) in written {
            let Some(first) = ids.first() else { continue };
            if let Err(error) = self.committed(first).await {
                for (id, result) in &mut results {
                    if result.is_none() && self.partition_for(id) == partition {
                        *result = Some(error);
                    }
                }
            }
        }
        // Answer in request order.
        group_ids
            .iter()
            .map(|g| {
                let error = results.iter().find(|(id, _)| id == g).and_then(|(_, e)| *e);
                (g.clone(), error)
            })
            .collect()
    }
}

/// Replays one `__consumer_offsets` partition into its shard. Undecodable records are logged
/// and skipped: the rest of the partition is still served. Transactions still open at the end
/// of the log keep their offsets pending: the transaction coordinator writes their marker later
/// (or aborts them on timeout) and calls [`GroupCoordinator::complete_transaction`].
fn load_partition(
    partition: &Partition,
    shard: &mut GroupCoordinatorShard,
    now_ms: i64,
) -> Result<(), BrokerError> {
    let offsets = match partition.offsets() {
        Ok(offsets) => offsets,
        Err(_) => return Ok(()),
    };
    let mut position = offsets.log_start_offset;
    let mut stats = ReplayStats::default();
    // To the log end, as Kafka's coordinator loader: a new leader's high watermark may still
    // lag records the previous leader acknowledged (committed, but the followers had not
    // learned it yet). Answers wait for the commit of everything loaded (`wait_for_commit`).
    while position < offsets.log_end_offset {
        let data = match partition.read(
            position,
            LOAD_READ_BYTES,
            true,
            crate::partition::Isolation::LogEnd,
        ) {
            Ok((data, _)) => data,
            Err(
                PartitionError::Deleted
                | PartitionError::NotLeaderOrFollower
                | PartitionError::NotEnoughReplicas,
            ) => return Ok(()),
            Err(PartitionError::Storage(err)) => return Err(err.into()),
        };
        if data.records.is_empty() {
            break;
        }
        // Reads hand out file ranges (for sendfile); replay needs the bytes.
        let records = data.records.read_to_bytes()?;
        let Some(next) = replay_batches(shard, &records, position, now_ms, &mut stats) else {
            break;
        };
        if next <= position {
            break;
        }
        position = next;
    }
    if stats.records > 0 || stats.skipped > 0 || stats.markers > 0 {
        info!(
            partition = partition.index,
            records = stats.records,
            skipped = stats.skipped,
            transaction_markers = stats.markers,
            pending_transactional_offsets = shard.offsets().pending_count(),
            "replayed __consumer_offsets partition"
        );
    }
    Ok(())
}

/// What a replay went through.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct ReplayStats {
    records: usize,
    skipped: usize,
    markers: usize,
}

/// Replays whole batches read from the shard's partition starting at offset `position`:
/// records of plain batches are applied, those of transactional batches go to their producer's
/// pending offsets, and transaction markers (control batches) complete them. Returns the offset
/// after the last batch, or `None` where a batch cannot be read (the load stops there).
fn replay_batches(
    shard: &mut GroupCoordinatorShard,
    records: &Bytes,
    position: i64,
    now_ms: i64,
    stats: &mut ReplayStats,
) -> Option<i64> {
    let partition = shard.partition();
    let mut next = position;
    for batch in BatchIter::new(records) {
        let Ok((header, range)) = batch else {
            warn!(
                partition,
                offset = next,
                "unreadable batch in __consumer_offsets; stopping the load of this partition here"
            );
            return None;
        };
        next = header.next_offset();
        let bytes: Bytes = records.slice(range);
        if header.is_control() {
            match fjord_protocol::control::read_control_record(&bytes) {
                Ok(Some(ControlRecord::EndTxn(marker))) => {
                    stats.markers += 1;
                    shard.complete_transaction(header.producer_id, marker.commit, now_ms);
                }
                Ok(_) => {}
                Err(err) => {
                    warn!(partition, offset = header.base_offset, producer_id = header.producer_id, error = %err,
                        "skipped an unreadable control batch in __consumer_offsets")
                }
            }
            continue;
        }
        let producer_id = header.is_transactional().then_some(header.producer_id);
        let result = fjord_protocol::records::for_each_key_value(&bytes, |offset, key, value| {
            match persistence::decode_record(key, value) {
                Ok(record) => {
                    shard.replay(offset, producer_id, &record, now_ms);
                    stats.records += 1;
                }
                Err(err) => {
                    stats.skipped += 1;
                    warn!(partition, offset, error = %err, "skipped a __consumer_offsets record");
                }
            }
        });
        if let Err(err) = result {
            warn!(partition, offset = header.base_offset, error = %err, "skipped an unreadable __consumer_offsets batch");
        }
    }
    Some(next)
}

/// The group ids of a DescribeGroups/DeleteGroups request as strings.
pub fn group_ids(ids: &[GroupId]) -> Vec<String> {
    ids.iter().map(|g| g.to_string()).collect()
}

#[cfg(test)]
mod tests;
