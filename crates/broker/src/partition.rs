//! One topic partition as this broker sees it: its log (when hosted here) plus the leader and
//! ISR state the metadata image published for it (Kafka `Partition` with its
//! `LeaderAndIsr`).
//!
//! Every partition of every topic in the image has a `Partition`; only the ones whose replicas
//! include this node have a log. `ReplicaManager::apply_delta` keeps the published state
//! (leader, leader epoch, partition epoch, replicas, ISR) current; handlers ask
//! [`Partition::is_leader`] before serving Produce, ListOffsets and consumer Fetch before v11
//! and answer NOT_LEADER_OR_FOLLOWER otherwise, as Kafka does; from v11 (KIP-392) any hosted
//! replica serves consumers up to its own high watermark, and the leader may name a
//! [`Partition::preferred_read_replica`]. The topic's throttled replica lists (KIP-73) are
//! kept as two flags, read lock-free on the replication paths.
//!
//! Replication (design section 5): while this node leads, the partition holds a
//! [`LeaderState`] (followers, ISR, high watermark rules); appends move the high watermark
//! through it, follower fetches are served by [`Partition::serve_follower_fetch`], and
//! [`Partition::apply_state`] turns a new registration from the image into Kafka's
//! `makeLeader`/`makeFollower`. Lock order: leader state, then log.
//!
//! The log sits behind a mutex. Appends need `&mut`; reads only need `&` but take the same lock
//! for now, because a read is a few `pread`s from the page cache. The `Option` becomes `None`
//! when the topic is deleted, so requests holding an `Arc<Partition>` from before the deletion
//! answer UNKNOWN_TOPIC_OR_PARTITION instead of touching a removed directory.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use fjord_protocol::control::EndTxnMarker;
use fjord_protocol::ResponseError;
pub use fjord_storage::Isolation;
use fjord_storage::{
    ActiveProducer, AppendOrigin, FetchDataInfo, Log, LogAppendInfo, StorageError,
    TimestampAndOffset,
};
use parking_lot::{Mutex, RwLock};
use uuid::Uuid;

use crate::metrics::{Counter, PartitionTraffic, ISR_EXPANDS, ISR_SHRINKS, LOG_FLUSH_DURATION};
use crate::replication::{
    AckDecision, AlterPartitionItem, AlterPartitionOutcome, BrokerStatus, FetchPartitionRequest,
    FetchPartitionResponse, FollowerFetchEffects, IsrState, LeaderAndIsr, LeaderState,
    NotEnoughReplicas, PartitionRegistration, ReplicationConfig,
};

/// Kafka's defaults for a partition built without topic configs (tests and tools).
pub const DEFAULT_REPLICATION_CONFIG: ReplicationConfig = ReplicationConfig {
    replica_lag_time_max_ms: 30_000,
    min_insync_replicas: 1,
};

/// The registered brokers as the last published image has them (epoch, fenced, controlled
/// shutdown): what ISR eligibility and follower broker-epoch checks read. Shared by every
/// partition; swapped whole on each image.
#[derive(Default)]
pub struct BrokerDirectory {
    statuses: RwLock<Arc<BTreeMap<i32, BrokerStatus>>>,
}

impl BrokerDirectory {
    /// A directory holding `statuses` (tests and tools; brokers use [`BrokerDirectory::update`]).
    pub fn from_statuses(statuses: BTreeMap<i32, BrokerStatus>) -> Self {
        Self {
            statuses: RwLock::new(Arc::new(statuses)),
        }
    }

    pub fn snapshot(&self) -> Arc<BTreeMap<i32, BrokerStatus>> {
        self.statuses.read().clone()
    }

    /// Takes the brokers of `image`.
    pub fn update(&self, image: &fjord_metadata::MetadataImage) {
        let statuses = image
            .brokers
            .iter()
            .map(|(&id, broker)| {
                (
                    id,
                    BrokerStatus {
                        broker_epoch: broker.epoch,
                        fenced: broker.fenced,
                        in_controlled_shutdown: broker.in_controlled_shutdown,
                    },
                )
            })
            .collect();
        *self.statuses.write() = Arc::new(statuses);
    }

    /// The broker epoch of `broker_id`, -1 if it is not registered.
    pub fn broker_epoch(&self, broker_id: i32) -> i64 {
        self.statuses
            .read()
            .get(&broker_id)
            .map_or(-1, |status| status.broker_epoch)
    }
}

/// What a new registration changed in this replica's role (Kafka `makeLeader`/`makeFollower`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleChange {
    /// Nothing the replication shell must act on.
    Unchanged,
    /// Leads now: `became` when it did not lead before (stop fetching it).
    Leader {
        became: bool,
        high_watermark_moved: bool,
    },
    /// Follows `leader` (-1: nobody leads) at `leader_epoch`; `resigned` when it led before
    /// (parked produces fail with NOT_LEADER_OR_FOLLOWER).
    Follower {
        leader: i32,
        leader_epoch: i32,
        resigned: bool,
    },
}

/// The leader epoch of a partition when it is created (Kafka's initial `LeaderEpoch`).
pub const INITIAL_LEADER_EPOCH: i32 = 0;

/// A partition's leader, epochs and replica sets as the metadata image last published them
/// (Kafka `PartitionRegistration`, the part the data plane needs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionState {
    /// Leader broker id, -1 when the partition has none.
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

impl PartitionState {
    /// The registration the replication cores take.
    pub fn registration(&self) -> PartitionRegistration {
        PartitionRegistration {
            leader: self.leader,
            leader_epoch: self.leader_epoch,
            partition_epoch: self.partition_epoch,
            replicas: self.replicas.clone(),
            isr: self.isr.clone(),
        }
    }

    /// This node alone leads, at the initial epochs (tests and tools).
    pub fn sole_leader(node_id: i32) -> Self {
        Self {
            leader: node_id,
            leader_epoch: INITIAL_LEADER_EPOCH,
            partition_epoch: 0,
            replicas: vec![node_id],
            isr: vec![node_id],
        }
    }

    /// The state a registration of the metadata image describes.
    pub fn from_registration(registration: &fjord_metadata::PartitionRegistration) -> Self {
        Self {
            leader: registration.leader,
            leader_epoch: registration.leader_epoch,
            partition_epoch: registration.partition_epoch,
            replicas: registration.replicas.clone(),
            isr: registration.isr.clone(),
        }
    }
}

pub struct Partition {
    pub topic: Arc<str>,
    pub topic_id: Uuid,
    pub index: i32,
    /// This node's id: the partition is led here when `state.leader` is it.
    local_broker_id: i32,
    /// As published by the last metadata image that changed this partition.
    state: RwLock<PartitionState>,
    /// The leader side of replication while this node leads (locked before `log`).
    leader: Mutex<Option<LeaderState>>,
    /// Brokers of the image, for ISR eligibility.
    brokers: Arc<BrokerDirectory>,
    /// `None` when this node hosts no replica of the partition, or after deletion/shutdown.
    log: Mutex<Option<Log>>,
    /// The log's offsets, republished after every change so that readers who only need them
    /// (a fetch with nothing new to read, which is most partitions of a wide fetch) take no lock.
    published: PublishedOffsets,
    /// Produce and Fetch traffic, summed per topic by the metrics scrape.
    pub traffic: PartitionTraffic,
    /// This replica is in the topic's `leader.replication.throttled.replicas` (KIP-73).
    leader_throttled: AtomicBool,
    /// This replica is in the topic's `follower.replication.throttled.replicas`.
    follower_throttled: AtomicBool,
}

#[derive(Default)]
struct PublishedOffsets {
    log_start_offset: AtomicI64,
    log_end_offset: AtomicI64,
    /// Stored last with `Release`: a reader that sees a high watermark also sees the data
    /// below it, which was written under the log lock before the store.
    high_watermark: AtomicI64,
    /// Stored before the high watermark; at most the high watermark it is published with.
    last_stable_offset: AtomicI64,
    deleted: AtomicBool,
}

impl PublishedOffsets {
    fn publish(&self, log: &Log) {
        self.log_start_offset
            .store(log.log_start_offset(), Ordering::Relaxed);
        self.log_end_offset
            .store(log.log_end_offset(), Ordering::Relaxed);
        self.last_stable_offset
            .store(log.last_stable_offset(), Ordering::Relaxed);
        self.high_watermark
            .store(log.high_watermark(), Ordering::Release);
    }

    fn load(&self) -> Option<PartitionOffsets> {
        if self.deleted.load(Ordering::Acquire) {
            return None;
        }
        let high_watermark = self.high_watermark.load(Ordering::Acquire);
        Some(PartitionOffsets {
            log_start_offset: self.log_start_offset.load(Ordering::Relaxed),
            log_end_offset: self.log_end_offset.load(Ordering::Relaxed),
            high_watermark,
            last_stable_offset: self.last_stable_offset.load(Ordering::Relaxed),
        })
    }
}

/// Offsets a reader needs alongside the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub high_watermark: i64,
    /// `read_committed` consumers read below this (Kafka's last stable offset).
    pub last_stable_offset: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error("partition was deleted")]
    Deleted,
    /// Not in the role the operation needs (leader for appends and follower fetches,
    /// follower for replicated appends): NOT_LEADER_OR_FOLLOWER.
    #[error("this replica is not the leader (or not a follower) of the partition")]
    NotLeaderOrFollower,
    /// acks=all refused: the ISR is below the effective `min.insync.replicas`.
    #[error("the in-sync replicas are fewer than min.insync.replicas")]
    NotEnoughReplicas,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl Partition {
    /// A partition hosted here with `log`, in `state` as the image has it, with Kafka's
    /// default replication settings and no other brokers known (tests and tools).
    pub fn new(
        topic: Arc<str>,
        topic_id: Uuid,
        index: i32,
        log: Log,
        local_broker_id: i32,
        state: PartitionState,
    ) -> Self {
        Self::hosted(
            topic,
            topic_id,
            index,
            log,
            local_broker_id,
            state,
            Arc::new(BrokerDirectory::default()),
            DEFAULT_REPLICATION_CONFIG,
        )
    }

    /// A partition hosted here with `log`: leads at once if `state` names this node.
    #[allow(clippy::too_many_arguments)]
    pub fn hosted(
        topic: Arc<str>,
        topic_id: Uuid,
        index: i32,
        log: Log,
        local_broker_id: i32,
        state: PartitionState,
        brokers: Arc<BrokerDirectory>,
        config: ReplicationConfig,
    ) -> Self {
        let partition = Self {
            topic,
            topic_id,
            index,
            local_broker_id,
            state: RwLock::new(PartitionState {
                leader: -1,
                ..state.clone()
            }),
            leader: Mutex::new(None),
            brokers,
            published: {
                let published = PublishedOffsets::default();
                published.publish(&log);
                published
            },
            log: Mutex::new(Some(log)),
            traffic: PartitionTraffic::default(),
            leader_throttled: AtomicBool::new(false),
            follower_throttled: AtomicBool::new(false),
        };
        if let Err(err) = partition.apply_state(state, config, crate::time::monotonic_ms()) {
            tracing::warn!(topic = %partition.topic, partition = index, error = %err, "could not take the leadership of a partition");
        }
        partition
    }

    /// A partition of a known topic that this node hosts no replica of: it only carries the
    /// published state (for leader hints); every log operation answers `Deleted`.
    pub fn remote(
        topic: Arc<str>,
        topic_id: Uuid,
        index: i32,
        local_broker_id: i32,
        state: PartitionState,
    ) -> Self {
        let published = PublishedOffsets::default();
        published.deleted.store(true, Ordering::Release);
        Self {
            topic,
            topic_id,
            index,
            local_broker_id,
            state: RwLock::new(state),
            leader: Mutex::new(None),
            brokers: Arc::new(BrokerDirectory::default()),
            published,
            log: Mutex::new(None),
            traffic: PartitionTraffic::default(),
            leader_throttled: AtomicBool::new(false),
            follower_throttled: AtomicBool::new(false),
        }
    }

    /// Takes the topic's throttled replica lists as they apply to this replica
    /// (`topic_config::replication_throttles`).
    pub fn set_replication_throttles(&self, (leader, follower): (bool, bool)) {
        self.leader_throttled.store(leader, Ordering::Relaxed);
        self.follower_throttled.store(follower, Ordering::Relaxed);
    }

    /// Whether the leader's answers to follower fetches of this partition count against
    /// `leader.replication.throttled.rate`.
    pub fn is_leader_throttled(&self) -> bool {
        self.leader_throttled.load(Ordering::Relaxed)
    }

    /// Whether this follower's fetches of the partition count against
    /// `follower.replication.throttled.rate`.
    pub fn is_follower_throttled(&self) -> bool {
        self.follower_throttled.load(Ordering::Relaxed)
    }

    /// Whether `broker_id` is in the ISR as published (Kafka `inSyncReplicaIds`).
    pub fn isr_contains(&self, broker_id: i32) -> bool {
        self.state.read().isr.contains(&broker_id)
    }

    /// KIP-392 (Kafka `ReplicaManager.findPreferredReadReplica`): while this node leads, the
    /// follower a consumer in `client_rack` fetching at `fetch_offset` should read from, per
    /// `selector`, with brokers (racks, liveness, endpoints on `listener_name`, the listener the
    /// fetch came in on) from `image`. `None`: read here.
    pub fn preferred_read_replica(
        &self,
        selector: crate::replication::ReplicaSelector,
        client_rack: &str,
        fetch_offset: i64,
        image: &fjord_metadata::MetadataImage,
        listener_name: &str,
        now_ms: i64,
    ) -> Option<i32> {
        let rack_of = |id: i32| image.brokers.get(&id).and_then(|b| b.rack.as_deref());
        let leader_rack = rack_of(self.local_broker_id);
        if client_rack.is_empty() || leader_rack == Some(client_rack) {
            return None;
        }
        let leader = self.leader.lock();
        let leader = leader.as_ref()?;
        let isr = leader.isr_state().isr();
        let candidates: Vec<crate::replication::ReplicaCandidate<'_>> = leader
            .followers()
            .map(|(id, follower)| crate::replication::ReplicaCandidate {
                broker_id: id,
                rack: rack_of(id),
                alive: image.brokers.get(&id).is_some_and(|b| {
                    // The consumer must be able to reach it on the listener it came in on.
                    !b.fenced && b.endpoint(listener_name).is_some()
                }),
                in_isr: isr.contains(&id),
                log_start_offset: follower.log_start_offset,
                log_end_offset: follower.log_end_offset,
                time_since_last_caught_up_ms: now_ms
                    .saturating_sub(follower.last_caught_up_time_ms)
                    .max(0),
            })
            .collect();
        crate::replication::preferred_read_replica(
            selector,
            client_rack,
            leader_rack,
            &candidates,
            fetch_offset,
        )
    }

    /// The current leader epoch (as published).
    pub fn leader_epoch(&self) -> i32 {
        self.state.read().leader_epoch
    }

    /// Leader, epochs, replicas and ISR as published.
    pub fn state(&self) -> PartitionState {
        self.state.read().clone()
    }

    /// Takes the state of a newer image without touching the replication role (a partition
    /// not hosted here keeps it for leader hints).
    pub fn set_state(&self, state: PartitionState) {
        *self.state.write() = state;
    }

    /// Kafka `Partition.makeLeader`/`makeFollower` for a registration of the image: as leader,
    /// a new leadership starts ([`LeaderState::become_leader`]: epoch start offset at the log
    /// end, followers reset) or a newer partition epoch is applied (one at our own partition
    /// epoch is ignored); the high watermark is tried. As follower, the leader state goes.
    /// `now_ms` is the monotonic clock (`time::monotonic_ms`): the leader state measures lag.
    pub fn apply_state(
        &self,
        state: PartitionState,
        config: ReplicationConfig,
        now_ms: i64,
    ) -> Result<RoleChange, PartitionError> {
        let mut leader = self.leader.lock();
        let mut guard = self.log.lock();
        *self.state.write() = state.clone();
        let Some(log) = guard.as_mut() else {
            *leader = None;
            return Ok(RoleChange::Unchanged);
        };
        if state.leader != self.local_broker_id {
            let resigned = leader.take().is_some();
            return Ok(RoleChange::Follower {
                leader: state.leader,
                leader_epoch: state.leader_epoch,
                resigned,
            });
        }
        let registration = state.registration();
        let brokers = self.brokers.snapshot();
        let became = match leader.as_mut() {
            Some(current) => {
                current.set_config(config);
                let proposal = proposed_isr_change(current);
                current
                    .apply_registration(&registration, log, now_ms)
                    .map_err(leader_state_error)?;
                // The image may bring our AlterPartition's result before its answer does.
                count_committed_isr_change(proposal, current);
                false
            }
            None => {
                let local = (
                    self.local_broker_id,
                    self.brokers.broker_epoch(self.local_broker_id),
                );
                *leader = Some(
                    LeaderState::become_leader(
                        self.topic_id,
                        self.index,
                        local,
                        &registration,
                        config,
                        log,
                        now_ms,
                    )
                    .map_err(leader_state_error)?,
                );
                true
            }
        };
        let high_watermark_moved = leader
            .as_ref()
            .is_some_and(|l| l.maybe_increment_high_watermark(log, now_ms, &*brokers));
        self.published.publish(log);
        Ok(RoleChange::Leader {
            became,
            high_watermark_moved,
        })
    }

    /// Topic config (`min.insync.replicas`) or broker config (`replica.lag.time.max.ms`)
    /// changes for a partition led here.
    pub fn set_replication_config(&self, config: ReplicationConfig) {
        if let Some(leader) = self.leader.lock().as_mut() {
            leader.set_config(config);
        }
    }

    /// Whether the leader side of replication runs here (this node leads and hosts it).
    pub fn has_leader_state(&self) -> bool {
        self.leader.lock().is_some()
    }

    /// Kafka `leaderEpochStartOffsetOpt`: the log end offset when this node's current
    /// leadership began (its leader epoch's start offset); `None` unless this node leads.
    pub fn leader_epoch_start_offset(&self) -> Option<i64> {
        self.leader
            .lock()
            .as_ref()
            .map(|l| l.leader_epoch_start_offset())
    }

    /// `(committed ISR size, replicas)` while leading: under-replicated when smaller.
    pub fn isr_and_replicas(&self) -> Option<(usize, usize)> {
        self.leader
            .lock()
            .as_ref()
            .map(|l| (l.isr_state().isr().len(), l.replicas().len()))
    }

    /// Kafka `appendRecordsToLeader`'s min ISR check for acks=all.
    pub fn check_append(&self, acks_all: bool) -> Result<(), PartitionError> {
        match self.leader.lock().as_ref() {
            Some(leader) => leader
                .check_append(acks_all)
                .map_err(|NotEnoughReplicas { .. }| PartitionError::NotEnoughReplicas),
            None => Err(PartitionError::NotLeaderOrFollower),
        }
    }

    /// Kafka `checkEnoughReplicasReachOffset` for a produce ending before `required_offset`.
    pub fn check_enough_replicas(
        &self,
        required_offset: i64,
    ) -> Result<AckDecision, PartitionError> {
        let leader = self.leader.lock();
        let leader = leader.as_ref().ok_or(PartitionError::NotLeaderOrFollower)?;
        let high_watermark = self.offsets()?.high_watermark;
        Ok(leader.check_enough_replicas(required_offset, high_watermark))
    }

    /// The leader's side of one partition of a follower's Fetch (see
    /// `replication::serve_follower_fetch`).
    /// `now_ms` is the monotonic clock (`time::monotonic_ms`): the leader state measures lag.
    pub fn serve_follower_fetch(
        &self,
        replica: (i32, i64),
        request: &FetchPartitionRequest,
        max_bytes: usize,
        now_ms: i64,
    ) -> Result<(FetchPartitionResponse, FollowerFetchEffects), PartitionError> {
        let mut leader = self.leader.lock();
        let leader = leader.as_mut().ok_or(PartitionError::NotLeaderOrFollower)?;
        let brokers = self.brokers.snapshot();
        self.with_log(|log| {
            let served = crate::replication::serve_follower_fetch(
                leader, log, &*brokers, replica, request, max_bytes, now_ms,
            );
            if served.1.high_watermark_moved {
                self.published.publish(log);
            }
            Ok(served)
        })
    }

    /// Kafka `maybeShrinkIsr` (the `isr-expiration` task): the AlterPartition entry removing
    /// followers that have not caught up within `replica.lag.time.max.ms`.
    /// `now_ms` is the monotonic clock (`time::monotonic_ms`): the leader state measures lag.
    pub fn maybe_shrink_isr(&self, now_ms: i64) -> Option<AlterPartitionItem> {
        let mut leader = self.leader.lock();
        let leader = leader.as_mut()?;
        let log_end_offset = self.offsets().ok()?.log_end_offset;
        leader.maybe_shrink_isr(now_ms, log_end_offset)
    }

    /// The controller's answer to an ISR change this leader proposed; `None` when it no longer
    /// leads.
    /// `now_ms` is the monotonic clock (`time::monotonic_ms`): the leader state measures lag.
    pub fn on_alter_partition_result(
        &self,
        sent: &AlterPartitionItem,
        result: Result<LeaderAndIsr, fjord_protocol::ResponseError>,
        now_ms: i64,
    ) -> Option<AlterPartitionOutcome> {
        let mut leader = self.leader.lock();
        let leader = leader.as_mut()?;
        let brokers = self.brokers.snapshot();
        let proposal = proposed_isr_change(leader);
        self.with_log(|log| {
            let outcome = leader.on_alter_partition_result(sent, result, log, now_ms, &*brokers);
            count_committed_isr_change(proposal, leader);
            self.published.publish(log);
            Ok(outcome)
        })
        .ok()
    }

    /// Runs `f` on the log of a follower (the replica fetcher's appends and truncations),
    /// then republishes the offsets. Refused while this node leads the partition.
    pub fn with_follower_log<T>(&self, f: impl FnOnce(&mut Log) -> T) -> Result<T, PartitionError> {
        let leader = self.leader.lock();
        if leader.is_some() {
            return Err(PartitionError::NotLeaderOrFollower);
        }
        let mut guard = self.log.lock();
        let log = guard.as_mut().ok_or(PartitionError::Deleted)?;
        let result = f(log);
        self.published.publish(log);
        Ok(result)
    }

    /// The high watermark to checkpoint (`replication-offset-checkpoint`), if hosted.
    pub fn checkpoint_high_watermark(&self) -> Option<i64> {
        self.offsets().ok().map(|o| o.high_watermark)
    }

    /// Whether this node hosts a replica (a log) of the partition.
    pub fn is_hosted(&self) -> bool {
        self.log.lock().is_some()
    }

    /// Whether this node hosts the partition and leads it.
    pub fn is_leader(&self) -> bool {
        self.state.read().leader == self.local_broker_id && self.is_hosted()
    }

    fn with_log<T>(
        &self,
        f: impl FnOnce(&mut Log) -> Result<T, StorageError>,
    ) -> Result<T, PartitionError> {
        let mut guard = self.log.lock();
        let log = guard.as_mut().ok_or(PartitionError::Deleted)?;
        Ok(f(log)?)
    }

    /// Appends validated batches as leader, checked against the producer state as `origin`
    /// demands (`Coordinator` for the group coordinator's writes). On a single node the high
    /// watermark follows the log end offset at once: the in-sync replica set is this broker
    /// alone.
    pub fn append_as_leader(
        &self,
        records: &mut [u8],
        now_ms: i64,
        origin: AppendOrigin,
    ) -> Result<LogAppendInfo, PartitionError> {
        self.append_with(|log, leader_epoch| log.append(records, leader_epoch, now_ms, origin))
    }

    /// Appends one validated client batch without modifying its bytes (see
    /// `Log::append_batch`). A duplicate answers the original offsets with `duplicate` set.
    pub fn append_batch_as_leader(
        &self,
        batch: &[u8],
        now_ms: i64,
    ) -> Result<LogAppendInfo, PartitionError> {
        let info = self.append_with(|log, leader_epoch| {
            log.append_batch(batch, leader_epoch, now_ms, AppendOrigin::Client)
        })?;
        self.count_produced(&info, batch.len());
        Ok(info)
    }

    /// Produce traffic for the metrics; a duplicate wrote nothing.
    pub fn count_produced(&self, info: &LogAppendInfo, size_bytes: usize) {
        if info.duplicate {
            return;
        }
        self.traffic.bytes_in.add(size_bytes as u64);
        self.traffic.messages_in.add(info.records_count);
    }

    /// Writes a transaction marker (WriteTxnMarkers; see `Log::append_end_txn_marker`).
    pub fn append_end_txn_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        marker: EndTxnMarker,
        now_ms: i64,
    ) -> Result<LogAppendInfo, PartitionError> {
        self.append_with(|log, leader_epoch| {
            log.append_end_txn_marker(producer_id, producer_epoch, marker, leader_epoch, now_ms)
        })
    }

    /// See `Log::has_ongoing_transaction`.
    pub fn has_ongoing_transaction(
        &self,
        producer_id: i64,
        producer_epoch: i16,
    ) -> Result<bool, PartitionError> {
        self.with_log(|log| Ok(log.has_ongoing_transaction(producer_id, producer_epoch)))
    }

    /// The producers this replica's log tracks (DescribeProducers; any replica answers, as
    /// Kafka's `Partition.activeProducerState`, so a follower's state can be inspected).
    pub fn active_producers(&self) -> Result<Vec<ActiveProducer>, PartitionError> {
        self.with_log(|log| Ok(log.active_producers()))
    }

    /// Forgets idle producers (`producer.id.expiration.ms`); the broker calls it periodically.
    pub fn remove_expired_producers(
        &self,
        now_ms: i64,
        producer_id_expiration_ms: i64,
    ) -> Result<usize, PartitionError> {
        self.with_log(|log| Ok(log.remove_expired_producers(now_ms, producer_id_expiration_ms)))
    }

    /// Appends as leader at the leader state's epoch, then tries the high watermark (Kafka
    /// `appendRecordsToLeader` + `maybeIncrementLeaderHW`): with no follower in the ISR (a
    /// single node) it follows the log end at once.
    fn append_with(
        &self,
        append: impl FnOnce(&mut Log, i32) -> Result<LogAppendInfo, StorageError>,
    ) -> Result<LogAppendInfo, PartitionError> {
        let leader = self.leader.lock();
        let leader = leader.as_ref().ok_or(PartitionError::NotLeaderOrFollower)?;
        self.with_log(|log| {
            // Two clock reads per append: the only way to time a flush the append triggers.
            let started = std::time::Instant::now();
            let info = append(log, leader.leader_epoch())?;
            if info.flushed {
                LOG_FLUSH_DURATION.observe(started.elapsed());
            }
            if leader.followers_count() == 0 {
                // Alone in the ISR (a single node): no broker lookups on the hot path.
                let log_end_offset = log.log_end_offset();
                log.maybe_increment_high_watermark(log_end_offset);
            } else {
                let brokers = self.brokers.snapshot();
                // `now_ms` is the wall clock of the records; followers' lag is monotonic.
                leader.maybe_increment_high_watermark(log, crate::time::monotonic_ms(), &*brokers);
            }
            self.published.publish(log);
            Ok(info)
        })
    }

    /// Reads below the high watermark (`ReadUncommitted`) or the last stable offset
    /// (`ReadCommitted`, with the aborted transactions of the returned data).
    pub fn read(
        &self,
        fetch_offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
        isolation: Isolation,
    ) -> Result<(FetchDataInfo, PartitionOffsets), PartitionError> {
        self.with_log(|log| {
            let data =
                log.read_with_isolation(fetch_offset, max_bytes, min_one_batch, isolation)?;
            Ok((data, offsets_of(log)))
        })
    }

    /// Kafka's leader epoch fencing for a request that names the epoch it believes current
    /// (`current_leader_epoch`, -1 = not checked): newer than ours is UNKNOWN_LEADER_EPOCH (we
    /// have not caught up), older is FENCED_LEADER_EPOCH (the client is behind).
    pub fn check_leader_epoch(&self, current_leader_epoch: i32) -> Result<(), ResponseError> {
        let leader_epoch = self.leader_epoch();
        if current_leader_epoch > leader_epoch {
            return Err(ResponseError::UnknownLeaderEpoch);
        }
        if current_leader_epoch >= 0 && current_leader_epoch < leader_epoch {
            return Err(ResponseError::FencedLeaderEpoch);
        }
        Ok(())
    }

    /// The current offsets, without taking the log lock.
    pub fn offsets(&self) -> Result<PartitionOffsets, PartitionError> {
        self.published.load().ok_or(PartitionError::Deleted)
    }

    pub fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<TimestampAndOffset>, PartitionError> {
        self.with_log(|log| log.fetch_offset_for_timestamp(timestamp_ms))
    }

    pub fn offset_of_max_timestamp(&self) -> Result<Option<TimestampAndOffset>, PartitionError> {
        self.with_log(|log| log.offset_of_max_timestamp())
    }

    pub fn epoch_for_offset(&self, offset: i64) -> Result<Option<i32>, PartitionError> {
        self.with_log(|log| Ok(log.epoch_for_offset(offset)))
    }

    /// OffsetForLeaderEpoch (Kafka `Partition.lastOffsetForLeaderEpoch` with
    /// `fetchOnlyFromLeader`): the end offset of `epoch` (or of the largest epoch below it) in
    /// the leader's log; NOT_LEADER_OR_FOLLOWER unless this node leads.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Result<Option<(i32, i64)>, PartitionError> {
        self.with_leader_log(|log| Ok(log.end_offset_for_epoch(epoch)))
    }

    /// Kafka `Partition.leaderLogIfLocal`: runs `f` on the log only while this node leads the
    /// partition. The leader lock is held throughout (lock order: leader state, then log), so
    /// leadership cannot move to another broker in the middle of `f`.
    fn with_leader_log<T>(
        &self,
        f: impl FnOnce(&mut Log) -> Result<T, StorageError>,
    ) -> Result<T, PartitionError> {
        let leader = self.leader.lock();
        if leader.is_none() {
            return Err(if self.is_hosted() {
                PartitionError::NotLeaderOrFollower
            } else {
                PartitionError::Deleted
            });
        }
        self.with_log(f)
    }

    pub fn flush(&self) -> Result<(), PartitionError> {
        let started = std::time::Instant::now();
        self.with_log(|log| log.flush())?;
        LOG_FLUSH_DURATION.observe(started.elapsed());
        Ok(())
    }

    pub fn flush_if_due(&self, now_ms: i64) -> Result<bool, PartitionError> {
        let started = std::time::Instant::now();
        let flushed = self.with_log(|log| log.flush_if_due(now_ms))?;
        if flushed {
            LOG_FLUSH_DURATION.observe(started.elapsed());
        }
        Ok(flushed)
    }

    /// Fsyncs segments sealed since the last call, without holding the log lock during the
    /// fsync (appends continue), then moves the log's recovery point. Returns whether there
    /// was anything to sync.
    pub fn sync_sealed_segments(&self) -> Result<bool, PartitionError> {
        let Some(sync) = self.with_log(|log| Ok(log.sealed_segments_to_sync()))? else {
            return Ok(false);
        };
        let started = std::time::Instant::now();
        sync.run()?;
        LOG_FLUSH_DURATION.observe(started.elapsed());
        self.with_log(|log| log.mark_synced(&sync))?;
        Ok(true)
    }

    /// Retention: deletes expired, oversized or DeleteRecords-ed head segments (see
    /// `Log::delete_retained_segments`) and republishes the log start offset.
    pub fn delete_retained_segments(&self, now_ms: i64) -> Result<usize, PartitionError> {
        self.with_log(|log| {
            let deleted = log.delete_retained_segments(now_ms)?;
            if deleted > 0 {
                self.published.publish(log);
            }
            Ok(deleted)
        })
    }

    /// DeleteRecords on the leader (Kafka `Partition.deleteRecordsOnLeader`): `offset` -1
    /// means the high watermark. Returns the new low watermark (log start offset); followers
    /// take it from the leader's fetch responses. NOT_LEADER_OR_FOLLOWER unless this node leads.
    pub fn delete_records_before(&self, offset: i64, now_ms: i64) -> Result<i64, PartitionError> {
        self.with_leader_log(|log| {
            let target = if offset == -1 {
                log.high_watermark()
            } else {
                offset
            };
            let low_watermark = log.delete_records_before(target, now_ms)?;
            self.published.publish(log);
            Ok(low_watermark)
        })
    }

    /// New topic configs take effect on the live log.
    pub fn set_log_config(&self, config: fjord_storage::LogConfig) -> Result<(), PartitionError> {
        self.with_log(|log| {
            log.set_config(config);
            Ok(())
        })
    }

    /// Log cleaner, first locked step: what a pass would clean, if this log is due.
    pub fn log_to_clean(
        &self,
        now_ms: i64,
    ) -> Result<Option<fjord_storage::LogToClean>, PartitionError> {
        self.with_log(|log| log.log_to_clean(now_ms))
    }

    /// Log cleaner, last locked step: swaps a finished pass in (`None` if the log changed
    /// meanwhile and the pass was dropped). Offsets do not move: compaction only removes
    /// records below the high watermark.
    pub fn swap_cleaned(
        &self,
        cleaned: fjord_storage::CleanedLog,
    ) -> Result<Option<fjord_storage::CleanerStats>, PartitionError> {
        let Some((stats, committed)) = self.with_log(|log| log.swap_cleaned(cleaned))? else {
            return Ok(None);
        };
        // The directory fsync that makes the swap durable runs without the lock: appends and
        // reads carry on (a crash before it redoes the swap from its manifest).
        committed.finish()?;
        Ok(Some(stats))
    }

    /// Bytes of log on disk (DescribeLogDirs).
    pub fn size_bytes(&self) -> Result<u64, PartitionError> {
        self.with_log(|log| Ok(log.size_bytes()))
    }

    /// Takes the log out, leaving the partition answering "deleted" from now on.
    pub fn take_log(&self) -> Option<Log> {
        let mut leader = self.leader.lock();
        *leader = None;
        let mut guard = self.log.lock();
        self.published.deleted.store(true, Ordering::Release);
        guard.take()
    }
}

fn leader_state_error(error: crate::replication::LeaderStateError) -> PartitionError {
    match error {
        crate::replication::LeaderStateError::Storage(err) => PartitionError::Storage(err),
        crate::replication::LeaderStateError::NotLeader { .. } => {
            PartitionError::NotLeaderOrFollower
        }
    }
}

/// The ISR change this leader proposed and has not seen committed: the counter its commit
/// increments ([`ISR_EXPANDS`], [`ISR_SHRINKS`]) and the ISR it asked for.
fn proposed_isr_change(leader: &LeaderState) -> Option<(&'static Counter, BTreeSet<i32>)> {
    match leader.isr_state() {
        IsrState::PendingExpand { sent, .. } => Some((&ISR_EXPANDS, sent.new_isr())),
        IsrState::PendingShrink { sent, .. } => Some((&ISR_SHRINKS, sent.new_isr())),
        IsrState::Committed { .. } => None,
    }
}

/// Kafka counts an ISR expansion or shrink once the controller committed the leader's
/// proposal (`PendingExpandIsr`/`PendingShrinkIsr.notifyListener`). Here the commit reaches
/// the leader by the AlterPartition answer or, often first on the controller's own node, by
/// the metadata image; either way the proposal is counted once, when the committed ISR
/// becomes the one it asked for (the later path then finds nothing pending).
fn count_committed_isr_change(
    proposal: Option<(&'static Counter, BTreeSet<i32>)>,
    leader: &LeaderState,
) {
    let Some((counter, proposed_isr)) = proposal else {
        return;
    };
    if matches!(leader.isr_state(), IsrState::Committed { isr } if *isr == proposed_isr) {
        counter.inc();
    }
}

fn offsets_of(log: &Log) -> PartitionOffsets {
    PartitionOffsets {
        log_start_offset: log.log_start_offset(),
        log_end_offset: log.log_end_offset(),
        high_watermark: log.high_watermark(),
        last_stable_offset: log.last_stable_offset(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transactions_publish_the_lso_and_read_committed_stops_there() {
        use fjord_protocol::batch_builder::{
            encode_uncompressed_with_producer, ProducerFields, Record, TRANSACTIONAL_ATTRIBUTE,
        };
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), fjord_storage::LogConfig::default(), true, 0).unwrap();
        let partition = Partition::new(
            Arc::from("t"),
            Uuid::nil(),
            0,
            log,
            1,
            PartitionState::sole_leader(1),
        );
        let batch = |producer_id: i64, transactional: bool| {
            encode_uncompressed_with_producer(
                0,
                1_000,
                if transactional {
                    TRANSACTIONAL_ATTRIBUTE
                } else {
                    0
                },
                ProducerFields {
                    producer_id,
                    producer_epoch: 0,
                    base_sequence: 0,
                },
                &[Record {
                    value: Some(b"v"),
                    ..Record::default()
                }],
            )
        };
        partition
            .append_batch_as_leader(&batch(1, false), 0)
            .unwrap();
        let txn = partition
            .append_batch_as_leader(&batch(2, true), 0)
            .unwrap();
        let retry = partition
            .append_batch_as_leader(&batch(2, true), 0)
            .unwrap();
        assert!(retry.duplicate);
        assert_eq!(retry.first_offset, txn.first_offset);
        let offsets = partition.offsets().unwrap();
        assert_eq!((offsets.high_watermark, offsets.last_stable_offset), (2, 1));
        let (data, read_offsets) = partition
            .read(0, usize::MAX, true, Isolation::ReadCommitted)
            .unwrap();
        assert_eq!(read_offsets, offsets);
        assert_eq!(data.aborted_transactions, Some(vec![]));
        let (all, _) = partition
            .read(0, usize::MAX, true, Isolation::ReadUncommitted)
            .unwrap();
        assert!(all.records.size_bytes() > data.records.size_bytes());
        let marker = EndTxnMarker {
            commit: false,
            coordinator_epoch: 0,
        };
        partition.append_end_txn_marker(2, 0, marker, 0).unwrap();
        let offsets = partition.offsets().unwrap();
        assert_eq!((offsets.high_watermark, offsets.last_stable_offset), (3, 3));
        let (data, _) = partition
            .read(0, usize::MAX, true, Isolation::ReadCommitted)
            .unwrap();
        assert_eq!(data.aborted_transactions.map(|a| a.len()), Some(1));
        assert_eq!(partition.active_producers().unwrap().len(), 2);
        assert_eq!(partition.remove_expired_producers(i64::MAX, 1).unwrap(), 2);
        // The coordinator's transactional writes (offset commits) carry no sequence checks.
        let mut stale = batch(2, true);
        fjord_protocol::records::set_base_offset(&mut stale, 0);
        assert!(partition
            .append_as_leader(&mut stale, 0, AppendOrigin::Coordinator)
            .is_ok());
    }

    #[test]
    fn leader_epoch_fencing_follows_kafka() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), fjord_storage::LogConfig::default(), true, 0).unwrap();
        let partition = Partition::new(
            Arc::from("t"),
            Uuid::nil(),
            0,
            log,
            1,
            PartitionState::sole_leader(1),
        );
        assert!(partition.is_leader());
        partition.set_state(PartitionState {
            leader_epoch: 5,
            ..PartitionState::sole_leader(1)
        });
        assert_eq!(
            partition.check_leader_epoch(-1),
            Ok(()),
            "-1 means unchecked"
        );
        assert_eq!(partition.check_leader_epoch(5), Ok(()));
        assert_eq!(
            partition.check_leader_epoch(6),
            Err(ResponseError::UnknownLeaderEpoch)
        );
        assert_eq!(
            partition.check_leader_epoch(4),
            Err(ResponseError::FencedLeaderEpoch)
        );
        // Another broker leads now: this replica follows.
        partition.set_state(PartitionState {
            leader: 2,
            leader_epoch: 6,
            partition_epoch: 1,
            replicas: vec![1, 2],
            isr: vec![1, 2],
        });
        assert!(partition.is_hosted() && !partition.is_leader());
        let remote = Partition::remote(
            Arc::from("t"),
            Uuid::nil(),
            1,
            1,
            PartitionState::sole_leader(1),
        );
        assert!(!remote.is_hosted() && !remote.is_leader());
        assert!(matches!(remote.offsets(), Err(PartitionError::Deleted)));
    }
}
