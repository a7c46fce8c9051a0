//! The async shell around the replication cores (`crate::replication`, design section 5):
//! it moves requests and answers between the cores, the network ([`NodeChannel`],
//! [`ControllerChannel`]) and the partition logs.
//!
//! - Roles ([`ReplicationShell::on_applied`], Kafka `ReplicaManager.applyDelta`): a partition
//!   led here leaves its fetcher; one followed here goes to the fetcher of its leader at the
//!   new leader epoch; a resigned leadership fails its parked produces.
//! - Follower fetchers (Kafka `ReplicaFetcherManager`/`ReplicaFetcherThread`): one tokio task
//!   per leader broker drives a [`FetcherCore`] and sends Fetch v15 (`ReplicaState` with this
//!   broker's id and epoch), OffsetForLeaderEpoch and ListOffsets through the node channel.
//! - Delayed produces (Kafka `DelayedProduce` in a `DelayedOperationPurgatory`): acks=all
//!   produces wait in a [`Purgatory`] until the high watermark passes them; completed when
//!   the high watermark moves (follower fetch, ISR change), failed on leadership loss.
//! - ISR changes (Kafka `AlterPartitionManager`): an [`AlterPartitionBatcher`] driven by a
//!   task that sends `ControllerRequest::AlterPartition` and hands the answers back.
//! - Timers: ISR shrink every `replica.lag.time.max.ms` / 2 (Kafka `isr-expiration`) and the
//!   `replication-offset-checkpoint` every `replica.high.watermark.checkpoint.interval.ms`.
//!
//! Tasks start with [`ReplicationShell::start`] (from `Broker::set_node_channel`, in a tokio
//! runtime) and stop when the broker's shutdown signal flips.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fjord_controller::{
    AlterPartitionData, AlterPartitionRequest, AlterPartitionTopic, ControllerReply,
    ControllerRequest,
};
use fjord_protocol::kafka_protocol::messages::fetch_request::{
    FetchPartition, FetchTopic, ReplicaState,
};
use fjord_protocol::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsTopic,
};
use fjord_protocol::kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use fjord_protocol::kafka_protocol::messages::{
    BrokerId, FetchRequest, ListOffsetsRequest, OffsetForLeaderEpochRequest, TopicName,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ApiKey, RequestKind, ResponseError, ResponseKind};
use parking_lot::{Mutex, RwLock};
use tokio::sync::{oneshot, watch, Notify};
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::controller_channel::ControllerChannel;
use crate::metrics::Counter;
use crate::node_channel::{NodeChannel, NodeRequest};
use crate::partition::{Partition, PartitionError, RoleChange};
use crate::replica_manager::{AppliedDelta, ReplicaManager};
use crate::replication::alter_partition::AlterPartitionResult;
use crate::replication::{
    AckDecision, AlterPartitionBatch, AlterPartitionBatcher, AlterPartitionItem,
    AlterPartitionOutcome, BatchFailure, EpochEndOffset, EpochRequest, FetchOutcome,
    FetchPartitionRequest, FetchPartitionResponse, FetcherConfig, FetcherCore,
    FollowerFetchEffects, LeaderAndIsr, LeaderOffsets, OffsetsRequest, PartitionKey,
    PartitionRequest, Purgatory, ReplicationQuota,
};
// Every interval here (purgatory deadlines, ISR lag, fetcher backoff, timers) is measured on
// the monotonic clock: a wall-clock jump must not expire acks=all waits or shrink ISRs.
use crate::time::monotonic_ms;

/// Fetch version the follower sends: the first with `ReplicaState` (KIP-903).
pub const REPLICA_FETCH_VERSION: i16 = 15;
const OFFSET_FOR_LEADER_EPOCH_VERSION: i16 = 4;
const LIST_OFFSETS_VERSION: i16 = 7;
/// Fetch's FINAL_EPOCH: no fetch session (every fetch names all its partitions).
const SESSIONLESS_EPOCH: i32 = -1;
/// How long a request to another node may take beyond its own wait.
const REQUEST_TIMEOUT_MS: u64 = 30_000;
/// How long an AlterPartition may wait for the controller before it is sent again.
const ALTER_PARTITION_TIMEOUT_MS: u64 = 5_000;
/// Pause before resending an AlterPartition that failed as a whole.
const ALTER_PARTITION_RETRY_MS: u64 = 100;
/// Bounds: parked produces, queued ISR changes, partitions per fetcher.
pub const PARKED_PRODUCES_MAX: usize = 100_000;
const ALTER_PARTITION_ITEMS_PER_REQUEST_MAX: usize = 1_000;
const ALTER_PARTITION_QUEUED_MAX: usize = 100_000;
const FETCHER_PARTITIONS_MAX: usize = crate::replica_manager::PARTITIONS_TOTAL_MAX;
/// ListOffsets timestamps.
const EARLIEST_TIMESTAMP: i64 = -2;
const LATEST_TIMESTAMP: i64 = -1;

/// How an acks=all produce to one partition ends.
pub type AckResult = Option<ResponseError>;

/// An acks=all produce waiting for the high watermark.
pub struct ParkedProduce {
    required_offset: i64,
    reply: oneshot::Sender<AckResult>,
}

/// The fast path's answer, or a receiver for the parked produce's.
pub enum ProduceWait {
    Done(AckResult),
    Parked(oneshot::Receiver<AckResult>),
}

/// ISR change counters (Kafka `IsrShrinksPerSec`, `IsrExpandsPerSec`).
#[derive(Default)]
pub struct ReplicationMetrics {
    pub isr_shrinks: Counter,
    pub isr_expands: Counter,
}

/// Which side of replication a quota limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaSide {
    /// The leader answering follower fetches (`leader.replication.throttled.rate`).
    Leader,
    /// The follower fetcher (`follower.replication.throttled.rate`).
    Follower,
}

impl QuotaSide {
    pub fn label(self) -> &'static str {
        match self {
            QuotaSide::Leader => "leader",
            QuotaSide::Follower => "follower",
        }
    }

    /// This side's rate in `config` (bytes/s).
    pub fn rate_bytes_per_s(self, config: &crate::BrokerConfig) -> u64 {
        match self {
            QuotaSide::Leader => config.leader_replication_throttled_rate,
            QuotaSide::Follower => config.follower_replication_throttled_rate,
        }
    }
}

/// One side's quota and its counters.
struct SideQuota {
    bucket: Mutex<ReplicationQuota>,
    /// Partition reads held back because the quota was exceeded.
    held_back: Counter,
}

/// What `/metrics` shows of one side's quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaStats {
    pub throttled_bytes: u64,
    pub exceeded_ms: i64,
    pub held_back: u64,
}

/// The leader and follower replication quotas of this broker (Kafka `QuotaFactory`'s
/// `leader` and `follower` `ReplicationQuotaManager`s). The lock is only taken for partitions
/// listed as throttled; time is a monotonic clock from the broker's start.
pub struct ReplicationQuotas {
    leader: SideQuota,
    follower: SideQuota,
    clock: std::time::Instant,
}

impl Default for ReplicationQuotas {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplicationQuotas {
    pub fn new() -> Self {
        let side = || SideQuota {
            bucket: Mutex::new(ReplicationQuota::new(0)),
            held_back: Counter::new(),
        };
        Self {
            leader: side(),
            follower: side(),
            clock: std::time::Instant::now(),
        }
    }

    fn side(&self, side: QuotaSide) -> &SideQuota {
        match side {
            QuotaSide::Leader => &self.leader,
            QuotaSide::Follower => &self.follower,
        }
    }

    fn now_ms(&self) -> i64 {
        i64::try_from(self.clock.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    /// Kafka `isQuotaExceeded` at `rate_bytes_per_s`.
    pub fn is_exceeded(&self, side: QuotaSide, rate_bytes_per_s: u64) -> bool {
        if rate_bytes_per_s >= crate::replication::UNLIMITED_RATE_BYTES_PER_S {
            return false;
        }
        let now_ms = self.now_ms();
        self.side(side)
            .bucket
            .lock()
            .is_exceeded(now_ms, rate_bytes_per_s)
    }

    /// Kafka `record`: `bytes` of throttled traffic went out (or were fetched).
    pub fn record(&self, side: QuotaSide, bytes: u64, rate_bytes_per_s: u64) {
        let now_ms = self.now_ms();
        self.side(side)
            .bucket
            .lock()
            .record(bytes, now_ms, rate_bytes_per_s);
    }

    /// A throttled partition was held back (no records sent, or left out of a fetch).
    pub fn count_held_back(&self, side: QuotaSide) {
        self.side(side).held_back.inc();
    }

    pub fn stats(&self, side: QuotaSide) -> QuotaStats {
        let now_ms = self.now_ms();
        let quota = self.side(side);
        let bucket = quota.bucket.lock();
        QuotaStats {
            throttled_bytes: bucket.recorded_bytes(),
            exceeded_ms: bucket.exceeded_ms(now_ms),
            held_back: quota.held_back.get(),
        }
    }
}

/// One follower fetcher: the partitions fetched from one leader broker.
struct Fetcher {
    leader_id: i32,
    core: Mutex<FetcherCore>,
    wake: Notify,
    running: AtomicBool,
}

pub struct ReplicationShell {
    node_id: i32,
    replica_manager: Arc<ReplicaManager>,
    controller: Arc<dyn ControllerChannel>,
    node_channel: RwLock<Option<Arc<dyn NodeChannel>>>,
    purgatory: Mutex<Purgatory<ParkedProduce>>,
    alter_partition: Mutex<AlterPartitionBatcher>,
    alter_partition_wake: Notify,
    fetchers: Mutex<BTreeMap<i32, Arc<Fetcher>>>,
    runtime: Mutex<Option<tokio::runtime::Handle>>,
    shutdown: watch::Receiver<bool>,
    pub metrics: ReplicationMetrics,
    /// Replication throttles (leader and follower side).
    pub quotas: ReplicationQuotas,
}

impl ReplicationShell {
    pub fn new(
        node_id: i32,
        replica_manager: Arc<ReplicaManager>,
        controller: Arc<dyn ControllerChannel>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            node_id,
            replica_manager,
            controller,
            node_channel: RwLock::new(None),
            purgatory: Mutex::new(Purgatory::new(PARKED_PRODUCES_MAX)),
            alter_partition: Mutex::new(AlterPartitionBatcher::new(
                node_id,
                -1,
                ALTER_PARTITION_ITEMS_PER_REQUEST_MAX,
                ALTER_PARTITION_QUEUED_MAX,
            )),
            alter_partition_wake: Notify::new(),
            fetchers: Mutex::new(BTreeMap::new()),
            runtime: Mutex::new(None),
            shutdown,
            metrics: ReplicationMetrics::default(),
            quotas: ReplicationQuotas::new(),
        }
    }

    /// Takes the channel follower fetchers send through (replacing an earlier one).
    pub fn set_node_channel(&self, channel: Arc<dyn NodeChannel>) {
        *self.node_channel.write() = Some(channel);
        for fetcher in self.fetchers.lock().values() {
            fetcher.wake.notify_one();
        }
    }

    /// Starts the background tasks on the current tokio runtime (once): AlterPartition,
    /// timers, and a fetcher task per leader broker. Without a runtime it does nothing.
    pub fn start(self: &Arc<Self>) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            warn!("replication tasks not started: no tokio runtime");
            return;
        };
        {
            let mut runtime = self.runtime.lock();
            if runtime.is_some() {
                return;
            }
            *runtime = Some(handle.clone());
        }
        handle.spawn(self.clone().run_alter_partition());
        handle.spawn(self.clone().run_timers());
        let fetchers: Vec<Arc<Fetcher>> = self.fetchers.lock().values().cloned().collect();
        for fetcher in fetchers {
            self.spawn_fetcher(&fetcher);
        }
    }

    fn spawn_fetcher(self: &Arc<Self>, fetcher: &Arc<Fetcher>) {
        let Some(handle) = self.runtime.lock().clone() else {
            return;
        };
        if fetcher.running.swap(true, Ordering::AcqRel) {
            return;
        }
        handle.spawn(self.clone().run_fetcher(fetcher.clone()));
    }

    /// Reacts to what `ReplicaManager::apply_delta` did (Kafka `makeLeader`/`makeFollower`).
    pub fn on_applied(self: &Arc<Self>, applied: &AppliedDelta) {
        for key in &applied.removed {
            self.remove_from_fetchers(key);
            self.fail_parked(key, ResponseError::NotLeaderOrFollower);
        }
        for (topic_id, index, change) in &applied.role_changes {
            let key = (*topic_id, *index);
            match *change {
                RoleChange::Unchanged => {}
                RoleChange::Leader {
                    became,
                    high_watermark_moved,
                } => {
                    if became {
                        self.remove_from_fetchers(&key);
                    }
                    if high_watermark_moved {
                        if let Some(partition) =
                            self.replica_manager.partition_by_id(topic_id, *index)
                        {
                            self.complete_parked(&partition);
                        }
                    }
                }
                RoleChange::Follower {
                    leader,
                    leader_epoch,
                    resigned,
                } => {
                    if resigned {
                        self.fail_parked(&key, ResponseError::NotLeaderOrFollower);
                    }
                    self.follow(key, leader, leader_epoch);
                }
            }
        }
    }

    fn remove_from_fetchers(&self, key: &PartitionKey) {
        for fetcher in self.fetchers.lock().values() {
            fetcher.core.lock().remove_partition(key);
        }
    }

    /// Moves `key` to the fetcher of `leader` (none while nobody leads).
    fn follow(self: &Arc<Self>, key: PartitionKey, leader: i32, leader_epoch: i32) {
        let fetcher = {
            let mut fetchers = self.fetchers.lock();
            for (id, fetcher) in fetchers.iter() {
                if *id != leader {
                    fetcher.core.lock().remove_partition(&key);
                }
            }
            if leader < 0 || leader == self.node_id {
                return;
            }
            let config = self.replica_manager.config();
            fetchers
                .entry(leader)
                .or_insert_with(|| {
                    Arc::new(Fetcher {
                        leader_id: leader,
                        core: Mutex::new(FetcherCore::new(
                            leader,
                            FetcherConfig {
                                fetch_backoff_ms: config.replica_fetch_backoff_ms,
                                max_partitions: FETCHER_PARTITIONS_MAX,
                            },
                        )),
                        wake: Notify::new(),
                        running: AtomicBool::new(false),
                    })
                })
                .clone()
        };
        let Some(partition) = self.replica_manager.partition_by_id(&key.0, key.1) else {
            return;
        };
        let added = partition
            .with_follower_log(|log| fetcher.core.lock().add_partition(key, leader_epoch, &*log));
        match added {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => {
                warn!(topic = %partition.topic, partition = key.1, error = %err, "cannot fetch the partition")
            }
            Err(err) => {
                debug!(topic = %partition.topic, partition = key.1, error = %err, "not following the partition")
            }
        }
        fetcher.wake.notify_one();
        self.spawn_fetcher(&fetcher);
    }

    // ---- delayed produces ----

    /// Kafka `DelayedProduce`: answers at once if the high watermark already passed
    /// `required_offset` (a single node always does), else parks until it does, the
    /// leadership ends, or `timeout_ms` passes.
    pub fn wait_for_acks(
        &self,
        partition: &Partition,
        required_offset: i64,
        timeout_ms: i64,
    ) -> ProduceWait {
        let now_ms = monotonic_ms();
        let mut purgatory = self.purgatory.lock();
        for expired in purgatory.expire(now_ms) {
            let _ = expired.reply.send(Some(ResponseError::RequestTimedOut));
        }
        match partition.check_enough_replicas(required_offset) {
            Ok(AckDecision::Satisfied) => return ProduceWait::Done(None),
            Ok(AckDecision::NotEnoughReplicasAfterAppend) => {
                return ProduceWait::Done(Some(ResponseError::NotEnoughReplicasAfterAppend))
            }
            Ok(AckDecision::Wait) => {}
            Err(_) => return ProduceWait::Done(Some(ResponseError::NotLeaderOrFollower)),
        }
        let (reply, receiver) = oneshot::channel();
        let parked = ParkedProduce {
            required_offset,
            reply,
        };
        let key = (partition.topic_id, partition.index);
        match purgatory.park(
            key,
            required_offset,
            now_ms.saturating_add(timeout_ms.max(0)),
            parked,
        ) {
            Ok(()) => ProduceWait::Parked(receiver),
            Err(full) => {
                warn!(max_parked = full.max_parked, "produce purgatory full");
                ProduceWait::Done(Some(ResponseError::RequestTimedOut))
            }
        }
    }

    /// A coordinator write's acks=all wait (Kafka appends `__consumer_offsets` and
    /// `__transaction_state` records with `requiredAcks = -1`): [`Self::wait_for_acks`], then
    /// the parked answer, at most `timeout_ms`. `Ok` once the high watermark reached
    /// `required_offset` with enough in-sync replicas; else the produce error
    /// (NOT_ENOUGH_REPLICAS_AFTER_APPEND, NOT_LEADER_OR_FOLLOWER, REQUEST_TIMED_OUT), which
    /// the coordinators map to their own (see
    /// [`crate::replica_manager::coordinator_commit_error`]). No lock is held while waiting.
    pub async fn wait_committed(
        &self,
        partition: &Partition,
        required_offset: i64,
        timeout_ms: i64,
    ) -> Result<(), ResponseError> {
        let receiver = match self.wait_for_acks(partition, required_offset, timeout_ms) {
            ProduceWait::Done(None) => return Ok(()),
            ProduceWait::Done(Some(error)) => return Err(error),
            ProduceWait::Parked(receiver) => receiver,
        };
        let timeout = Duration::from_millis(timeout_ms.max(0).unsigned_abs());
        match tokio::time::timeout(timeout, receiver).await {
            Ok(Ok(None)) => Ok(()),
            Ok(Ok(Some(error))) => Err(error),
            // Timed out, or the purgatory dropped it (expired by another waiter).
            Ok(Err(_)) | Err(_) => Err(ResponseError::RequestTimedOut),
        }
    }

    /// How many produces wait for the high watermark.
    pub fn parked_produces(&self) -> usize {
        self.purgatory.lock().len()
    }

    /// The high watermark of `partition` moved: answers the produces it passed.
    pub fn complete_parked(&self, partition: &Partition) {
        let Ok(offsets) = partition.offsets() else {
            return;
        };
        let key = (partition.topic_id, partition.index);
        let mut purgatory = self.purgatory.lock();
        for parked in purgatory.on_high_watermark(&key, offsets.high_watermark) {
            let answer = match partition.check_enough_replicas(parked.required_offset) {
                Ok(AckDecision::Satisfied) => None,
                Ok(AckDecision::NotEnoughReplicasAfterAppend) => {
                    Some(ResponseError::NotEnoughReplicasAfterAppend)
                }
                Ok(AckDecision::Wait) => {
                    debug_assert!(false, "completed below the high watermark");
                    Some(ResponseError::RequestTimedOut)
                }
                Err(_) => Some(ResponseError::NotLeaderOrFollower),
            };
            let _ = parked.reply.send(answer);
        }
    }

    fn fail_parked(&self, key: &PartitionKey, error: ResponseError) {
        for parked in self.purgatory.lock().fail_partition(key) {
            let _ = parked.reply.send(Some(error));
        }
    }

    // ---- leader side ----

    /// What a follower's fetch of `partition` led to: an ISR expansion to send, a high
    /// watermark that moved (parked produces complete, consumers wake).
    pub fn on_follower_fetch(&self, partition: &Partition, effects: FollowerFetchEffects) {
        if let Some(item) = effects.alter_partition {
            self.metrics.isr_expands.inc();
            self.submit_alter_partition(partition, item);
        }
        if effects.high_watermark_moved {
            self.complete_parked(partition);
            self.replica_manager.data_arrived.notify_waiters();
        }
    }

    fn submit_alter_partition(&self, partition: &Partition, item: AlterPartitionItem) {
        let submitted = self.alter_partition.lock().submit(item.clone());
        match submitted {
            Ok(()) => self.alter_partition_wake.notify_one(),
            Err(err) => {
                // Kafka: OPERATION_NOT_ATTEMPTED, back to the committed ISR.
                partition.on_alter_partition_result(
                    &item,
                    Err(err.response_error()),
                    monotonic_ms(),
                );
            }
        }
    }

    async fn run_alter_partition(self: Arc<Self>) {
        let mut shutdown = self.shutdown.clone();
        loop {
            if *shutdown.borrow() {
                return;
            }
            let batch = {
                let mut batcher = self.alter_partition.lock();
                batcher.set_broker_epoch(self.replica_manager.brokers().broker_epoch(self.node_id));
                batcher.next_request()
            };
            let Some(batch) = batch else {
                tokio::select! {
                    _ = self.alter_partition_wake.notified() => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            };
            let response = alter_partition_answers(
                self.controller
                    .send(alter_partition_request(&batch), ALTER_PARTITION_TIMEOUT_MS)
                    .await
                    .ok(),
            );
            let whole_failed = response.is_err();
            let results = self.alter_partition.lock().on_response(response);
            let now_ms = monotonic_ms();
            for (item, result) in results {
                let Some(partition) = self
                    .replica_manager
                    .partition_by_id(&item.topic_id, item.partition)
                else {
                    continue;
                };
                match partition.on_alter_partition_result(&item, result, now_ms) {
                    Some(AlterPartitionOutcome::Committed {
                        high_watermark_moved,
                    }) => {
                        info!(topic = %partition.topic, partition = item.partition, isr = ?item.new_isr(), "ISR changed");
                        if high_watermark_moved {
                            self.complete_parked(&partition);
                            self.replica_manager.data_arrived.notify_waiters();
                        }
                    }
                    Some(AlterPartitionOutcome::Retry(item)) => {
                        self.submit_alter_partition(&partition, item)
                    }
                    _ => {}
                }
            }
            if whole_failed {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(ALTER_PARTITION_RETRY_MS)) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }

    /// The ISR shrink check and the high watermark checkpoint.
    async fn run_timers(self: Arc<Self>) {
        let mut shutdown = self.shutdown.clone();
        let mut next_checkpoint_ms = monotonic_ms();
        loop {
            let config = self.replica_manager.config();
            let shrink_interval_ms = (config.replica_lag_time_max_ms / 2).max(1);
            let checkpoint_interval_ms = config.replica_high_watermark_checkpoint_interval_ms;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(shrink_interval_ms.unsigned_abs())) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return;
            }
            self.shrink_isrs();
            let now_ms = monotonic_ms();
            if now_ms >= next_checkpoint_ms {
                next_checkpoint_ms = now_ms.saturating_add(checkpoint_interval_ms);
                let manager = self.replica_manager.clone();
                let written =
                    tokio::task::spawn_blocking(move || manager.checkpoint_high_watermarks()).await;
                if let Ok(Err(err)) = written {
                    warn!(error = %err, "writing the replication offset checkpoint failed");
                }
            }
        }
    }

    /// Kafka `maybeShrinkIsr` for every partition led here.
    pub fn shrink_isrs(&self) {
        let now_ms = monotonic_ms();
        for partition in self.replica_manager.led_partitions() {
            if let Some(item) = partition.maybe_shrink_isr(now_ms) {
                info!(topic = %partition.topic, partition = partition.index, new_isr = ?item.new_isr(), "shrinking the ISR");
                self.metrics.isr_shrinks.inc();
                self.submit_alter_partition(&partition, item);
            }
        }
    }

    // ---- follower fetchers ----

    async fn run_fetcher(self: Arc<Self>, fetcher: Arc<Fetcher>) {
        let mut shutdown = self.shutdown.clone();
        loop {
            if *shutdown.borrow() {
                fetcher.running.store(false, Ordering::Release);
                return;
            }
            let config = self.replica_manager.config();
            let now_ms = monotonic_ms();
            let mut requests = Vec::new();
            let mut wake_at_ms: Option<i64> = None;
            {
                // Lock order: partition (leader, log) before the fetcher core, as `follow` and
                // the publish path take them; the core is locked per partition, never across
                // `with_follower_log`.
                let keys: Vec<PartitionKey> = fetcher
                    .core
                    .lock()
                    .partitions()
                    .map(|(key, _)| *key)
                    .collect();
                for key in keys {
                    let Some(partition) = self.replica_manager.partition_by_id(&key.0, key.1)
                    else {
                        fetcher.core.lock().remove_partition(&key);
                        continue;
                    };
                    match partition
                        .with_follower_log(|log| fetcher.core.lock().poll(&key, log, now_ms))
                    {
                        // The core is locked again after the partition lock was released.
                        Ok(Ok(Some(PartitionRequest::Fetch(_))))
                            if self.follower_throttled(
                                &partition,
                                &fetcher.core.lock(),
                                &key,
                                &config,
                            ) =>
                        {
                            // Kafka `shouldFollowerThrottle`: left out of this round.
                            self.quotas.count_held_back(QuotaSide::Follower);
                            let until =
                                now_ms.saturating_add(config.replica_fetch_backoff_ms.min(100));
                            wake_at_ms = Some(wake_at_ms.map_or(until, |w| w.min(until)));
                        }
                        Ok(Ok(Some(request))) => requests.push((partition, request)),
                        Ok(Ok(None)) => {
                            let delayed = fetcher
                                .core
                                .lock()
                                .partition(&key)
                                .and_then(|s| s.delayed_until_ms);
                            if let Some(until) = delayed {
                                wake_at_ms = Some(wake_at_ms.map_or(until, |w| w.min(until)));
                            }
                        }
                        Ok(Err(err)) => {
                            warn!(topic = %partition.topic, partition = key.1, error = %err, "follower log failed")
                        }
                        Err(_) => {
                            fetcher.core.lock().remove_partition(&key);
                        }
                    }
                }
            }
            let channel = self.node_channel.read().clone();
            let (Some(channel), false) = (channel, requests.is_empty()) else {
                let sleep_ms = wake_at_ms.map_or(1_000, |at| (at - now_ms).clamp(1, 1_000));
                tokio::select! {
                    _ = fetcher.wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(sleep_ms.unsigned_abs())) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            };
            let ok = self
                .fetch_round(&fetcher, channel.as_ref(), requests, &config)
                .await;
            if !ok {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(config.replica_fetch_backoff_ms.unsigned_abs())) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }

    /// Kafka `shouldFollowerThrottle`: a partition listed in
    /// `follower.replication.throttled.replicas` that is not caught up with the leader's high
    /// watermark waits while the follower quota is exceeded.
    fn follower_throttled(
        &self,
        partition: &Partition,
        core: &FetcherCore,
        key: &PartitionKey,
        config: &crate::BrokerConfig,
    ) -> bool {
        if !partition.is_follower_throttled() {
            return false;
        }
        let in_sync = core
            .partition(key)
            .and_then(|state| state.lag)
            .is_some_and(|lag| lag <= 0);
        !in_sync
            && self.quotas.is_exceeded(
                QuotaSide::Follower,
                QuotaSide::Follower.rate_bytes_per_s(config),
            )
    }

    /// Sends one round of requests to the leader and hands the answers to the core. Returns
    /// false when the leader could not be reached (the caller backs off).
    async fn fetch_round(
        &self,
        fetcher: &Fetcher,
        channel: &dyn NodeChannel,
        requests: Vec<(Arc<Partition>, PartitionRequest)>,
        config: &crate::BrokerConfig,
    ) -> bool {
        let leader = fetcher.leader_id;
        let mut fetches = Vec::new();
        let mut epochs = Vec::new();
        let mut offsets = Vec::new();
        for (partition, request) in requests {
            match request {
                PartitionRequest::Fetch(r) => fetches.push((partition, r)),
                PartitionRequest::OffsetForLeaderEpoch(r) => epochs.push((partition, r)),
                PartitionRequest::ListOffsets(r) => offsets.push((partition, r)),
            }
        }
        let mut reached = true;
        if !epochs.is_empty() {
            reached &= self.epoch_round(fetcher, channel, epochs).await;
        }
        if !offsets.is_empty() {
            reached &= self.offsets_round(fetcher, channel, offsets).await;
        }
        if fetches.is_empty() {
            return reached;
        }
        let request = self.fetch_request(&fetches, config);
        let timeout_ms =
            REQUEST_TIMEOUT_MS + config.replica_fetch_wait_max_ms.unsigned_abs() as u64;
        let response = channel
            .send(
                leader,
                NodeRequest {
                    api_key: ApiKey::Fetch,
                    api_version: REPLICA_FETCH_VERSION,
                    body: RequestKind::Fetch(request),
                    timeout_ms,
                },
            )
            .await;
        let response = match response {
            Ok(ResponseKind::Fetch(response)) => response,
            Ok(_) => return false,
            Err(err) => {
                debug!(leader, error = %err, "replica fetch failed");
                return false;
            }
        };
        let top_level = ResponseError::try_from_code(response.error_code);
        let mut answers: BTreeMap<PartitionKey, FetchPartitionResponse> = BTreeMap::new();
        for topic in response.responses {
            for p in topic.partitions {
                let diverging = (p.diverging_epoch.epoch >= 0 || p.diverging_epoch.end_offset >= 0)
                    .then_some(EpochEndOffset {
                        epoch: p.diverging_epoch.epoch,
                        end_offset: p.diverging_epoch.end_offset,
                    });
                answers.insert(
                    (topic.topic_id, p.partition_index),
                    FetchPartitionResponse {
                        error: ResponseError::try_from_code(p.error_code),
                        high_watermark: p.high_watermark,
                        log_start_offset: p.log_start_offset,
                        diverging_epoch: diverging,
                        records: p.records.unwrap_or_default(),
                    },
                );
            }
        }
        let now_ms = monotonic_ms();
        let follower_rate = QuotaSide::Follower.rate_bytes_per_s(config);
        let mut high_watermark_moved = false;
        for (partition, request) in fetches {
            let answer = match (top_level, answers.remove(&request.key)) {
                (Some(error), _) => FetchPartitionResponse::error(error),
                (None, Some(answer)) => answer,
                // Not in the answer: ask again next round.
                (None, None) => continue,
            };
            let size_bytes = answer.records.len() as u64;
            partition.traffic.replication_bytes_in.add(size_bytes);
            if partition.is_follower_throttled() {
                self.quotas
                    .record(QuotaSide::Follower, size_bytes, follower_rate);
            }
            // Partition locks first, then the core (see `run_fetcher`).
            let outcome = partition.with_follower_log(|log| {
                fetcher
                    .core
                    .lock()
                    .on_fetch_response(&request, answer, log, now_ms)
            });
            high_watermark_moved |= matches!(
                outcome,
                Ok(Ok(FetchOutcome::Appended {
                    high_watermark_changed: true,
                    ..
                }))
            );
            self.log_outcome(&partition, outcome);
        }
        if high_watermark_moved {
            // Consumers parked on this follower (KIP-392) read up to its high watermark.
            self.replica_manager.data_arrived.notify_waiters();
        }
        reached && top_level.is_none()
    }

    fn fetch_request(
        &self,
        fetches: &[(Arc<Partition>, FetchPartitionRequest)],
        config: &crate::BrokerConfig,
    ) -> FetchRequest {
        let mut topics: BTreeMap<Uuid, Vec<FetchPartition>> = BTreeMap::new();
        for (_, r) in fetches {
            topics.entry(r.key.0).or_default().push(
                FetchPartition::default()
                    .with_partition(r.key.1)
                    .with_current_leader_epoch(r.current_leader_epoch)
                    .with_fetch_offset(r.fetch_offset)
                    .with_last_fetched_epoch(r.last_fetched_epoch.unwrap_or(-1))
                    .with_log_start_offset(r.log_start_offset)
                    .with_partition_max_bytes(config.replica_fetch_max_bytes),
            );
        }
        FetchRequest::default()
            .with_replica_state(
                ReplicaState::default()
                    .with_replica_id(BrokerId(self.node_id))
                    .with_replica_epoch(self.replica_manager.brokers().broker_epoch(self.node_id)),
            )
            .with_max_wait_ms(config.replica_fetch_wait_max_ms)
            .with_min_bytes(config.replica_fetch_min_bytes)
            .with_max_bytes(config.replica_fetch_response_max_bytes)
            .with_isolation_level(0)
            .with_session_id(0)
            .with_session_epoch(SESSIONLESS_EPOCH)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(topic_id, partitions)| {
                        FetchTopic::default()
                            .with_topic_id(topic_id)
                            .with_partitions(partitions)
                    })
                    .collect(),
            )
    }

    async fn epoch_round(
        &self,
        fetcher: &Fetcher,
        channel: &dyn NodeChannel,
        requests: Vec<(Arc<Partition>, EpochRequest)>,
    ) -> bool {
        let mut topics: BTreeMap<Arc<str>, Vec<OffsetForLeaderPartition>> = BTreeMap::new();
        for (partition, r) in &requests {
            topics.entry(partition.topic.clone()).or_default().push(
                OffsetForLeaderPartition::default()
                    .with_partition(r.key.1)
                    .with_current_leader_epoch(r.current_leader_epoch)
                    .with_leader_epoch(r.leader_epoch),
            );
        }
        let request = OffsetForLeaderEpochRequest::default()
            .with_replica_id(BrokerId(self.node_id))
            .with_topics(
                topics
                    .into_iter()
                    .map(|(name, partitions)| {
                        OffsetForLeaderTopic::default()
                            .with_topic(topic_name(&name))
                            .with_partitions(partitions)
                    })
                    .collect(),
            );
        let response = channel
            .send(
                fetcher.leader_id,
                NodeRequest {
                    api_key: ApiKey::OffsetForLeaderEpoch,
                    api_version: OFFSET_FOR_LEADER_EPOCH_VERSION,
                    body: RequestKind::OffsetForLeaderEpoch(request),
                    timeout_ms: REQUEST_TIMEOUT_MS,
                },
            )
            .await;
        let Ok(ResponseKind::OffsetForLeaderEpoch(response)) = response else {
            return false;
        };
        let mut answers = BTreeMap::new();
        for topic in &response.topics {
            for p in &topic.partitions {
                let answer = match ResponseError::try_from_code(p.error_code) {
                    Some(error) => Err(error),
                    None => Ok(EpochEndOffset {
                        epoch: p.leader_epoch,
                        end_offset: p.end_offset,
                    }),
                };
                answers.insert((topic.topic.to_string(), p.partition), answer);
            }
        }
        let now_ms = monotonic_ms();
        for (partition, request) in requests {
            let Some(answer) = answers.remove(&(partition.topic.to_string(), request.key.1)) else {
                continue;
            };
            let outcome = partition.with_follower_log(|log| {
                fetcher
                    .core
                    .lock()
                    .on_epoch_response(&request, answer, log, now_ms)
            });
            self.log_outcome(&partition, outcome);
        }
        true
    }

    async fn offsets_round(
        &self,
        fetcher: &Fetcher,
        channel: &dyn NodeChannel,
        requests: Vec<(Arc<Partition>, OffsetsRequest)>,
    ) -> bool {
        let mut found: [BTreeMap<(String, i32), Result<i64, ResponseError>>; 2] =
            [BTreeMap::new(), BTreeMap::new()];
        for (slot, timestamp) in [EARLIEST_TIMESTAMP, LATEST_TIMESTAMP]
            .into_iter()
            .enumerate()
        {
            let mut topics: BTreeMap<Arc<str>, Vec<ListOffsetsPartition>> = BTreeMap::new();
            for (partition, r) in &requests {
                topics.entry(partition.topic.clone()).or_default().push(
                    ListOffsetsPartition::default()
                        .with_partition_index(r.key.1)
                        .with_current_leader_epoch(r.current_leader_epoch)
                        .with_timestamp(timestamp),
                );
            }
            let request = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(self.node_id))
                .with_topics(
                    topics
                        .into_iter()
                        .map(|(name, partitions)| {
                            ListOffsetsTopic::default()
                                .with_name(topic_name(&name))
                                .with_partitions(partitions)
                        })
                        .collect(),
                );
            let response = channel
                .send(
                    fetcher.leader_id,
                    NodeRequest {
                        api_key: ApiKey::ListOffsets,
                        api_version: LIST_OFFSETS_VERSION,
                        body: RequestKind::ListOffsets(request),
                        timeout_ms: REQUEST_TIMEOUT_MS,
                    },
                )
                .await;
            let Ok(ResponseKind::ListOffsets(response)) = response else {
                return false;
            };
            for topic in &response.topics {
                for p in &topic.partitions {
                    let answer = match ResponseError::try_from_code(p.error_code) {
                        Some(error) => Err(error),
                        None => Ok(p.offset),
                    };
                    found[slot].insert((topic.name.to_string(), p.partition_index), answer);
                }
            }
        }
        let now_ms = monotonic_ms();
        for (partition, request) in requests {
            let name = (partition.topic.to_string(), request.key.1);
            let (Some(earliest), Some(latest)) = (found[0].remove(&name), found[1].remove(&name))
            else {
                continue;
            };
            let answer = earliest
                .and_then(|earliest| latest.map(|latest| LeaderOffsets { earliest, latest }));
            let outcome = partition.with_follower_log(|log| {
                fetcher
                    .core
                    .lock()
                    .on_leader_offsets(&request, answer, log, now_ms)
            });
            self.log_outcome(&partition, outcome);
        }
        true
    }

    fn log_outcome(
        &self,
        partition: &Partition,
        outcome: Result<Result<FetchOutcome, fjord_storage::StorageError>, PartitionError>,
    ) {
        match outcome {
            Ok(Ok(FetchOutcome::Truncated {
                offset,
                below_high_watermark,
                ..
            })) => {
                if below_high_watermark {
                    warn!(topic = %partition.topic, partition = partition.index, offset, "truncated below the high watermark (unclean election?)");
                } else {
                    info!(topic = %partition.topic, partition = partition.index, offset, "truncated a divergent log tail");
                }
            }
            Ok(Ok(FetchOutcome::RestartedAt { offset })) => {
                info!(topic = %partition.topic, partition = partition.index, offset, "restarted the log at the leader's log start");
            }
            Ok(Ok(_)) => {}
            Ok(Err(err)) => {
                warn!(topic = %partition.topic, partition = partition.index, error = %err, "replicating the partition failed")
            }
            // Leads now, or was deleted: the next round drops it.
            Err(_) => {}
        }
    }
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// The controller request for one AlterPartition batch (v3: topic ids, ISR with epochs).
/// Public for the deterministic simulation, which drives the same conversion.
pub fn alter_partition_request(batch: &AlterPartitionBatch) -> ControllerRequest {
    let mut topics: BTreeMap<Uuid, Vec<AlterPartitionData>> = BTreeMap::new();
    for item in &batch.items {
        topics
            .entry(item.topic_id)
            .or_default()
            .push(AlterPartitionData {
                partition_index: item.partition,
                leader_epoch: item.leader_epoch,
                new_isr_with_epochs: item
                    .new_isr_with_epochs
                    .iter()
                    .map(|&(broker_id, broker_epoch)| fjord_controller::BrokerState {
                        broker_id,
                        broker_epoch,
                    })
                    .collect(),
                leader_recovery_state: 0,
                partition_epoch: item.partition_epoch,
            });
    }
    ControllerRequest::AlterPartition(AlterPartitionRequest {
        broker_id: batch.broker_id,
        broker_epoch: batch.broker_epoch,
        topics: topics
            .into_iter()
            .map(|(topic_id, partitions)| AlterPartitionTopic {
                topic_id,
                partitions,
            })
            .collect(),
    })
}

/// The per-partition results of an AlterPartition reply for
/// [`AlterPartitionBatcher::on_response`]; `None` (timeout, disconnection, no controller) and
/// unexpected replies are retriable failures of the whole request.
pub fn alter_partition_answers(
    reply: Option<ControllerReply>,
) -> Result<Vec<(PartitionKey, AlterPartitionResult)>, BatchFailure> {
    match reply {
        Some(ControllerReply::AlterPartition(reply)) => {
            match ResponseError::try_from_code(reply.error.code()) {
                Some(error) => Err(BatchFailure::Error(error)),
                None => Ok(reply
                    .topics
                    .iter()
                    .flat_map(|topic| {
                        topic.partitions.iter().map(|p| {
                            let result = match ResponseError::try_from_code(p.error.code()) {
                                Some(error) => Err(error),
                                None => Ok(LeaderAndIsr {
                                    leader_epoch: p.leader_epoch,
                                    partition_epoch: p.partition_epoch,
                                    isr: p.isr.clone(),
                                }),
                            };
                            ((topic.topic_id, p.partition_index), result)
                        })
                    })
                    .collect()),
            }
        }
        Some(ControllerReply::Error(error)) => {
            match ResponseError::try_from_code(error.code.code()) {
                Some(error) => Err(BatchFailure::Error(error)),
                None => Err(BatchFailure::Retriable),
            }
        }
        Some(_) | None => Err(BatchFailure::Retriable),
    }
}
