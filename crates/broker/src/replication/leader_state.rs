//! `LeaderState`: what the leader of one partition knows about its followers and its ISR, and
//! the rules that move the high watermark and the ISR (Kafka's `Partition` leader side,
//! `Replica`/`ReplicaState`, `PartitionState`).
//!
//! Pure: no locks, no clock (time comes in as `now_ms`: the broker passes
//! [`crate::time::monotonic_ms`], so a wall-clock jump cannot make followers look lagging or
//! caught up), no I/O except through the [`ReplicaLog`] it is handed.
//!
//! - Follower fetches ([`LeaderState::on_follower_fetch`], Kafka
//!   `Replica.updateFetchStateOrThrow`) record each follower's log end offset, log start
//!   offset, broker epoch and `last_caught_up_time_ms`: the fetch time if the fetch reached the
//!   leader's log end offset, else the previous fetch's time if this one reached the log end
//!   offset the leader had then.
//! - High watermark ([`LeaderState::maybe_increment_high_watermark`], Kafka
//!   `maybeIncrementLeaderHW`): the minimum log end offset of the leader and of the *maximal*
//!   ISR (committed ISR plus a pending addition, KIP-497) and of followers that are caught up
//!   and eligible but not yet in it; monotonic. **It does not move while the committed ISR is
//!   smaller than the effective `min.insync.replicas`**: Kafka does this since 3.7 (KIP-966
//!   part 1, `if (isUnderMinIsr) return false` at the top of `maybeIncrementLeaderHW` in the
//!   reference snapshot), so that a write is never committed by fewer replicas than
//!   `min.insync.replicas` even for acks=1 producers.
//! - ISR changes ([`LeaderState::maybe_shrink_isr`], [`LeaderState::maybe_expand_isr`]): one
//!   AlterPartition in flight ([`IsrState`]); an expansion counts the new member at once
//!   (stricter HW), a shrink only once the controller committed it. The committed ISR changes
//!   only through [`LeaderState::on_alter_partition_result`] or a newer registration from the
//!   metadata image ([`LeaderState::apply_registration`]).
//! - acks=all ([`LeaderState::check_append`], [`LeaderState::check_enough_replicas`]): Kafka's
//!   `appendRecordsToLeader` min ISR check and `checkEnoughReplicasReachOffset`.

use std::collections::{BTreeMap, BTreeSet};

use fjord_protocol::ResponseError;
use uuid::Uuid;

use super::replica_log::ReplicaLog;
use fjord_storage::StorageError;

/// A follower's offsets before its first fetch in this leadership (Kafka `UnknownOffset`).
pub const UNKNOWN_OFFSET: i64 = -1;

/// A broker epoch that skips the epoch checks (Kafka: fetches from old clients, ISR members
/// whose epoch the leader has not learned yet).
pub const NO_BROKER_EPOCH: i64 = -1;

/// The partition as the metadata image has it (Kafka `PartitionRegistration` /
/// `LeaderAndIsrPartitionState`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRegistration {
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

/// What the image says about a broker, for ISR eligibility (Kafka `KRaftMetadataCache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerStatus {
    pub broker_epoch: i64,
    pub fenced: bool,
    pub in_controlled_shutdown: bool,
}

/// Looks up brokers in the current metadata image.
pub trait BrokerView {
    /// `None` for a broker that is not registered.
    fn broker_status(&self, broker_id: i32) -> Option<BrokerStatus>;
}

impl BrokerView for BTreeMap<i32, BrokerStatus> {
    fn broker_status(&self, broker_id: i32) -> Option<BrokerStatus> {
        self.get(&broker_id).copied()
    }
}

/// Settings read on every decision (topic or broker configs; may change at runtime).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicationConfig {
    /// `replica.lag.time.max.ms`.
    pub replica_lag_time_max_ms: i64,
    /// The topic's `min.insync.replicas`.
    pub min_insync_replicas: usize,
}

/// The leader's view of one follower (Kafka `ReplicaState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerState {
    pub log_end_offset: i64,
    pub log_start_offset: i64,
    /// The broker epoch its last fetch carried (KIP-903); `None` before the first fetch.
    pub broker_epoch: Option<i64>,
    /// The largest time at which this follower's fetch offset had reached the leader's log end.
    pub last_caught_up_time_ms: i64,
    pub last_fetch_time_ms: i64,
    /// The leader's log end offset when that last fetch arrived.
    pub last_fetch_leader_log_end_offset: i64,
}

impl FollowerState {
    /// Kafka's `resetReplicaState` for a new leader: nothing known but whether it was in sync.
    fn new_leader(now_ms: i64, in_isr: bool) -> Self {
        Self {
            log_end_offset: UNKNOWN_OFFSET,
            log_start_offset: UNKNOWN_OFFSET,
            broker_epoch: None,
            last_caught_up_time_ms: if in_isr { now_ms } else { 0 },
            last_fetch_time_ms: 0,
            last_fetch_leader_log_end_offset: UNKNOWN_OFFSET,
        }
    }

    /// Kafka's `resetReplicaState` for a leader re-elected in a new epoch: offsets kept.
    fn reelected(self, now_ms: i64, leader_log_end_offset: i64, in_isr: bool) -> Self {
        Self {
            last_fetch_leader_log_end_offset: leader_log_end_offset,
            last_fetch_time_ms: if in_isr { now_ms } else { 0 },
            last_caught_up_time_ms: if in_isr { now_ms } else { 0 },
            ..self
        }
    }

    /// Kafka `ReplicaState.isCaughtUp`.
    pub fn is_caught_up(&self, leader_log_end_offset: i64, now_ms: i64, lag_max_ms: i64) -> bool {
        self.log_end_offset == leader_log_end_offset
            || now_ms.saturating_sub(self.last_caught_up_time_ms) <= lag_max_ms
    }
}

/// One AlterPartition entry (Kafka `AlterPartitionRequestData.PartitionData`, v3+).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterPartitionItem {
    pub topic_id: Uuid,
    pub partition: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// `(broker id, broker epoch)`; `NO_BROKER_EPOCH` where the leader does not know it.
    pub new_isr_with_epochs: Vec<(i32, i64)>,
}

impl AlterPartitionItem {
    pub fn new_isr(&self) -> BTreeSet<i32> {
        self.new_isr_with_epochs.iter().map(|&(id, _)| id).collect()
    }
}

/// The controller's answer to an accepted AlterPartition (Kafka `LeaderAndIsr`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderAndIsr {
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub isr: Vec<i32>,
}

/// The ISR with at most one change in flight (Kafka `PartitionState`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IsrState {
    Committed {
        isr: BTreeSet<i32>,
    },
    /// `isr` is still the committed ISR; `adding` already counts for the high watermark.
    PendingExpand {
        isr: BTreeSet<i32>,
        adding: i32,
        sent: AlterPartitionItem,
    },
    /// `isr` is still the committed ISR, and counts in full until the controller agrees.
    PendingShrink {
        isr: BTreeSet<i32>,
        removing: BTreeSet<i32>,
        sent: AlterPartitionItem,
    },
}

impl IsrState {
    /// The committed ISR.
    pub fn isr(&self) -> &BTreeSet<i32> {
        match self {
            IsrState::Committed { isr }
            | IsrState::PendingExpand { isr, .. }
            | IsrState::PendingShrink { isr, .. } => isr,
        }
    }

    /// The committed ISR plus a pending addition (KIP-497): what the high watermark and acks
    /// wait for.
    pub fn maximal_isr(&self) -> BTreeSet<i32> {
        let mut isr = self.isr().clone();
        if let IsrState::PendingExpand { adding, .. } = self {
            isr.insert(*adding);
        }
        isr
    }

    pub fn is_inflight(&self) -> bool {
        !matches!(self, IsrState::Committed { .. })
    }

    fn sent(&self) -> Option<&AlterPartitionItem> {
        match self {
            IsrState::Committed { .. } => None,
            IsrState::PendingExpand { sent, .. } | IsrState::PendingShrink { sent, .. } => {
                Some(sent)
            }
        }
    }
}

/// A fetch from a follower, as the leader's fetch path saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerFetch {
    pub replica_id: i32,
    /// The broker epoch in the request (`ReplicaState.ReplicaEpoch`, KIP-903), or -1.
    pub broker_epoch: i64,
    pub fetch_offset: i64,
    pub log_start_offset: i64,
    pub now_ms: i64,
    /// The leader's log end offset *before* the read (so appends racing with the fetch cannot
    /// keep a follower out of sync; Kafka's `initialLogEndOffset`).
    pub leader_log_end_offset: i64,
}

/// Why a follower's fetch is refused (Kafka `followerReplicaOrThrow`,
/// `updateFetchStateOrThrow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FollowerFetchError {
    /// Not one of the partition's replicas (for example a reassignment the leader has not
    /// seen yet): UNKNOWN_LEADER_EPOCH so that the follower retries.
    #[error("broker {0} is not a replica of this partition")]
    NotReplica(i32),
    /// A fetch from an older incarnation of the broker.
    #[error("stale broker epoch {request} for broker {broker_id}, image has {image}")]
    StaleBrokerEpoch {
        broker_id: i32,
        request: i64,
        image: i64,
    },
}

impl FollowerFetchError {
    pub fn response_error(&self) -> ResponseError {
        match self {
            FollowerFetchError::NotReplica(_) => ResponseError::UnknownLeaderEpoch,
            FollowerFetchError::StaleBrokerEpoch { .. } => ResponseError::NotLeaderOrFollower,
        }
    }
}

/// What a follower fetch led to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FollowerFetchEffects {
    /// An ISR expansion to send to the controller.
    pub alter_partition: Option<AlterPartitionItem>,
    /// The high watermark rose: complete parked produces, wake consumers.
    pub high_watermark_moved: bool,
}

/// acks=all refused before appending (Kafka `NotEnoughReplicasException`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("ISR of {isr_size} is below the effective min.insync.replicas {min_isr}")]
pub struct NotEnoughReplicas {
    pub isr_size: usize,
    pub min_isr: usize,
}

/// Whether a parked acks=all produce can answer (Kafka `checkEnoughReplicasReachOffset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckDecision {
    /// The high watermark passed the produce with enough replicas: NONE.
    Satisfied,
    /// The high watermark passed it but the maximal ISR is now below min ISR.
    NotEnoughReplicasAfterAppend,
    /// Not yet.
    Wait,
}

/// What an AlterPartition answer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlterPartitionOutcome {
    /// The ISR in the answer is now the committed one.
    Committed { high_watermark_moved: bool },
    /// The answer was for another proposal or is stale; nothing changed.
    Ignored,
    /// The controller rejected it without applying it; back to the last committed ISR.
    Reverted,
    /// Stay pending until the metadata image brings the partition's new state.
    AwaitMetadata,
    /// Send the same item again.
    Retry(AlterPartitionItem),
}

/// A registration that does not make this broker leader, or a storage failure while
/// recording the new epoch's start.
#[derive(Debug, thiserror::Error)]
pub enum LeaderStateError {
    #[error("registration names leader {leader}, not this broker {local}")]
    NotLeader { leader: i32, local: i32 },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The leader side of one partition led by this broker (see the module docs).
#[derive(Debug, Clone)]
pub struct LeaderState {
    pub topic_id: Uuid,
    pub partition: i32,
    local_broker_id: i32,
    local_broker_epoch: i64,
    leader_epoch: i32,
    partition_epoch: i32,
    replicas: Vec<i32>,
    isr: IsrState,
    followers: BTreeMap<i32, FollowerState>,
    /// The log end offset when this leader epoch began (Kafka `leaderEpochStartOffsetOpt`).
    leader_epoch_start_offset: i64,
    config: ReplicationConfig,
}

/// `min(min.insync.replicas, replication factor)` (Kafka `effectiveMinIsr`).
pub fn effective_min_isr(min_insync_replicas: usize, replication_factor: usize) -> usize {
    min_insync_replicas.min(replication_factor)
}

impl LeaderState {
    /// Kafka `makeLeader` for a broker that was not leading: records the epoch's start in the
    /// log (`maybeAssignEpochStartOffset` at the log end offset) and resets every follower.
    /// The caller then tries [`LeaderState::maybe_increment_high_watermark`].
    pub fn become_leader(
        topic_id: Uuid,
        partition: i32,
        (local_broker_id, local_broker_epoch): (i32, i64),
        registration: &PartitionRegistration,
        config: ReplicationConfig,
        log: &mut impl ReplicaLog,
        now_ms: i64,
    ) -> Result<Self, LeaderStateError> {
        if registration.leader != local_broker_id {
            return Err(LeaderStateError::NotLeader {
                leader: registration.leader,
                local: local_broker_id,
            });
        }
        let start = log.log_end_offset();
        log.assign_epoch_start_offset(registration.leader_epoch, start)?;
        let isr: BTreeSet<i32> = registration.isr.iter().copied().collect();
        let followers = registration
            .replicas
            .iter()
            .filter(|&&id| id != local_broker_id)
            .map(|&id| (id, FollowerState::new_leader(now_ms, isr.contains(&id))))
            .collect();
        let state = Self {
            topic_id,
            partition,
            local_broker_id,
            local_broker_epoch,
            leader_epoch: registration.leader_epoch,
            partition_epoch: registration.partition_epoch,
            replicas: registration.replicas.clone(),
            isr: IsrState::Committed { isr },
            followers,
            leader_epoch_start_offset: start,
            config,
        };
        state.check_invariants();
        Ok(state)
    }

    /// Kafka `makeLeader` while already leading: a registration with a newer partition epoch
    /// replaces replicas and the committed ISR (ending any pending change), and a new leader
    /// epoch starts as in [`LeaderState::become_leader`] but keeps what followers reported.
    /// Returns `Ok(false)` for a registration that is not newer.
    ///
    /// **Differs from Kafka at an equal partition epoch.** Kafka's `makeLeader` takes those
    /// too (the AlterPartition answer may bring the epoch before the metadata does) and
    /// resets a pending ISR change. The simulation found what that allows: the leader commits
    /// ISR {2,3} at epoch 5 from the answer, proposes adding 1 (whose log end reached the high
    /// watermark), then the metadata for epoch 5 arrives and drops the pending addition; the
    /// high watermark passes 1's log end while the controller admits 1 into the ISR, and a
    /// failover to 1 loses acknowledged records. A registration at our own partition epoch
    /// carries nothing we do not know (the same controller state), so it is ignored here and
    /// the pending change stays until its answer or a newer epoch.
    pub fn apply_registration(
        &mut self,
        registration: &PartitionRegistration,
        log: &mut impl ReplicaLog,
        now_ms: i64,
    ) -> Result<bool, LeaderStateError> {
        if registration.partition_epoch <= self.partition_epoch {
            debug_assert!(
                registration.partition_epoch < self.partition_epoch
                    || (registration.leader_epoch == self.leader_epoch
                        && registration.isr.iter().copied().collect::<BTreeSet<_>>()
                            == *self.isr.isr()),
                "one partition epoch, one partition state"
            );
            return Ok(false);
        }
        if registration.leader != self.local_broker_id {
            return Err(LeaderStateError::NotLeader {
                leader: registration.leader,
                local: self.local_broker_id,
            });
        }
        let isr: BTreeSet<i32> = registration.isr.iter().copied().collect();
        let new_epoch = registration.leader_epoch > self.leader_epoch;
        if new_epoch {
            let start = log.log_end_offset();
            log.assign_epoch_start_offset(registration.leader_epoch, start)?;
            self.leader_epoch_start_offset = start;
            self.leader_epoch = registration.leader_epoch;
        }
        let mut followers = BTreeMap::new();
        for &id in registration
            .replicas
            .iter()
            .filter(|&&id| id != self.local_broker_id)
        {
            let in_isr = isr.contains(&id);
            let state = match self.followers.get(&id) {
                Some(old) if new_epoch => {
                    old.reelected(now_ms, self.leader_epoch_start_offset, in_isr)
                }
                Some(old) => *old,
                None => FollowerState::new_leader(now_ms, in_isr),
            };
            followers.insert(id, state);
        }
        self.followers = followers;
        self.replicas = registration.replicas.clone();
        self.partition_epoch = registration.partition_epoch;
        self.isr = IsrState::Committed { isr };
        self.check_invariants();
        Ok(true)
    }

    fn check_invariants(&self) {
        debug_assert!(
            self.replicas.contains(&self.local_broker_id),
            "the leader is a replica"
        );
        debug_assert!(
            self.isr.isr().iter().all(|id| self.replicas.contains(id)),
            "ISR {:?} within replicas {:?}",
            self.isr,
            self.replicas
        );
        debug_assert!(!self.isr.isr().is_empty(), "the ISR is never empty");
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    pub fn partition_epoch(&self) -> i32 {
        self.partition_epoch
    }

    pub fn replicas(&self) -> &[i32] {
        &self.replicas
    }

    pub fn isr_state(&self) -> &IsrState {
        &self.isr
    }

    pub fn leader_epoch_start_offset(&self) -> i64 {
        self.leader_epoch_start_offset
    }

    /// How many followers (replicas other than this leader) the partition has.
    pub fn followers_count(&self) -> usize {
        self.followers.len()
    }

    pub fn follower(&self, replica_id: i32) -> Option<&FollowerState> {
        self.followers.get(&replica_id)
    }

    /// Every follower with what the leader knows of it.
    pub fn followers(&self) -> impl Iterator<Item = (i32, &FollowerState)> {
        self.followers.iter().map(|(&id, state)| (id, state))
    }

    pub fn config(&self) -> ReplicationConfig {
        self.config
    }

    /// Topic config changes (`min.insync.replicas`) and dynamic broker configs.
    pub fn set_config(&mut self, config: ReplicationConfig) {
        self.config = config;
    }

    /// `min(min.insync.replicas, replication factor)`.
    pub fn effective_min_isr(&self) -> usize {
        effective_min_isr(self.config.min_insync_replicas, self.replicas.len())
    }

    /// Kafka `isUnderMinIsr`: the *committed* ISR is below the effective min ISR.
    pub fn is_under_min_isr(&self) -> bool {
        self.isr.isr().len() < self.effective_min_isr()
    }

    /// Kafka `Replica.updateFetchStateOrThrow` (see module docs). `image_broker_epoch` is the
    /// follower's epoch in the metadata image; a request with an older one is fenced.
    pub fn on_follower_fetch(
        &mut self,
        fetch: &FollowerFetch,
        image_broker_epoch: Option<i64>,
    ) -> Result<(), FollowerFetchError> {
        let state = self
            .followers
            .get_mut(&fetch.replica_id)
            .ok_or(FollowerFetchError::NotReplica(fetch.replica_id))?;
        if let Some(image) = image_broker_epoch {
            if fetch.broker_epoch != NO_BROKER_EPOCH && image > fetch.broker_epoch {
                return Err(FollowerFetchError::StaleBrokerEpoch {
                    broker_id: fetch.replica_id,
                    request: fetch.broker_epoch,
                    image,
                });
            }
        }
        let last_caught_up_time_ms = if fetch.fetch_offset >= fetch.leader_log_end_offset {
            state.last_caught_up_time_ms.max(fetch.now_ms)
        } else if fetch.fetch_offset >= state.last_fetch_leader_log_end_offset {
            state.last_caught_up_time_ms.max(state.last_fetch_time_ms)
        } else {
            state.last_caught_up_time_ms
        };
        *state = FollowerState {
            log_end_offset: fetch.fetch_offset,
            log_start_offset: fetch.log_start_offset,
            broker_epoch: Some(fetch.broker_epoch),
            last_caught_up_time_ms,
            last_fetch_time_ms: fetch.now_ms,
            last_fetch_leader_log_end_offset: fetch
                .leader_log_end_offset
                .max(state.last_fetch_leader_log_end_offset),
        };
        Ok(())
    }

    /// Kafka `updateFollowerFetchState`: records the fetch, then maybe expands the ISR and
    /// maybe raises the high watermark.
    pub fn handle_follower_fetch(
        &mut self,
        fetch: &FollowerFetch,
        log: &mut impl ReplicaLog,
        brokers: &impl BrokerView,
    ) -> Result<FollowerFetchEffects, FollowerFetchError> {
        let image_epoch = brokers
            .broker_status(fetch.replica_id)
            .map(|status| status.broker_epoch);
        let previous_end = self
            .followers
            .get(&fetch.replica_id)
            .map(|state| state.log_end_offset);
        self.on_follower_fetch(fetch, image_epoch)?;
        let alter_partition =
            self.maybe_expand_isr(fetch.replica_id, log.high_watermark(), brokers);
        let high_watermark_moved = previous_end != Some(fetch.fetch_offset)
            && self.maybe_increment_high_watermark(log, fetch.now_ms, brokers);
        Ok(FollowerFetchEffects {
            alter_partition,
            high_watermark_moved,
        })
    }

    /// Kafka `isReplicaIsrEligible`: registered, unfenced, not shutting down, and the broker
    /// epoch of its fetches matches the image (or is -1).
    fn is_isr_eligible(&self, replica_id: i32, brokers: &impl BrokerView) -> bool {
        let Some(stored) = self.followers.get(&replica_id).and_then(|s| s.broker_epoch) else {
            return false;
        };
        let Some(status) = brokers.broker_status(replica_id) else {
            return false;
        };
        !status.fenced
            && !status.in_controlled_shutdown
            && (stored == NO_BROKER_EPOCH || stored == status.broker_epoch)
    }

    /// The high watermark the leader could move to now (before the monotonic and min ISR
    /// rules): the minimum log end offset of the leader, the maximal ISR, and caught-up
    /// eligible followers outside it (so a catching-up follower is not left behind forever).
    pub fn high_watermark_candidate(
        &self,
        leader_log_end_offset: i64,
        now_ms: i64,
        brokers: &impl BrokerView,
    ) -> i64 {
        let maximal = self.isr.maximal_isr();
        let mut candidate = leader_log_end_offset;
        for (&id, state) in &self.followers {
            if state.log_end_offset >= candidate {
                continue;
            }
            let waits = maximal.contains(&id)
                || (state.is_caught_up(
                    leader_log_end_offset,
                    now_ms,
                    self.config.replica_lag_time_max_ms,
                ) && self.is_isr_eligible(id, brokers));
            if waits {
                candidate = state.log_end_offset;
            }
        }
        candidate
    }

    /// Kafka `maybeIncrementLeaderHW` (see module docs). Returns whether the high watermark
    /// rose.
    pub fn maybe_increment_high_watermark(
        &self,
        log: &mut impl ReplicaLog,
        now_ms: i64,
        brokers: &impl BrokerView,
    ) -> bool {
        if self.is_under_min_isr() {
            return false;
        }
        let candidate = self.high_watermark_candidate(log.log_end_offset(), now_ms, brokers);
        log.maybe_increment_high_watermark(candidate)
    }

    /// Kafka `getOutOfSyncReplicas`: committed ISR followers not caught up within
    /// `replica.lag.time.max.ms`; none while a change is in flight.
    pub fn shrink_candidates(&self, now_ms: i64, leader_log_end_offset: i64) -> BTreeSet<i32> {
        if self.isr.is_inflight() {
            return BTreeSet::new();
        }
        self.isr
            .isr()
            .iter()
            .copied()
            .filter(|&id| id != self.local_broker_id)
            .filter(|id| {
                self.followers.get(id).is_none_or(|state| {
                    !state.is_caught_up(
                        leader_log_end_offset,
                        now_ms,
                        self.config.replica_lag_time_max_ms,
                    )
                })
            })
            .collect()
    }

    /// Kafka `maybeShrinkIsr` (run every `replica.lag.time.max.ms / 2`): proposes the ISR
    /// without the out-of-sync followers. The high watermark keeps counting them until the
    /// controller commits the change.
    pub fn maybe_shrink_isr(
        &mut self,
        now_ms: i64,
        leader_log_end_offset: i64,
    ) -> Option<AlterPartitionItem> {
        let removing = self.shrink_candidates(now_ms, leader_log_end_offset);
        if removing.is_empty() {
            return None;
        }
        let isr = self.isr.isr().clone();
        let new_isr: BTreeSet<i32> = isr.difference(&removing).copied().collect();
        let sent = self.prepare_isr_change(&new_isr);
        self.isr = IsrState::PendingShrink {
            isr,
            removing,
            sent: sent.clone(),
        };
        Some(sent)
    }

    /// Kafka `canAddReplicaToIsr && isFollowerInSync`: no change in flight, not in the ISR,
    /// eligible, and its log end offset reached both the high watermark and the start of this
    /// leader epoch (so it holds everything this leader may have committed).
    pub fn expand_candidate(
        &self,
        replica_id: i32,
        leader_high_watermark: i64,
        brokers: &impl BrokerView,
    ) -> bool {
        let Some(state) = self.followers.get(&replica_id) else {
            return false;
        };
        !self.isr.is_inflight()
            && !self.isr.isr().contains(&replica_id)
            && self.is_isr_eligible(replica_id, brokers)
            && state.log_end_offset >= leader_high_watermark
            && state.log_end_offset >= self.leader_epoch_start_offset
    }

    /// Kafka `maybeExpandIsr`: proposes the ISR plus `replica_id`, counted at once for the
    /// high watermark (KIP-497).
    pub fn maybe_expand_isr(
        &mut self,
        replica_id: i32,
        leader_high_watermark: i64,
        brokers: &impl BrokerView,
    ) -> Option<AlterPartitionItem> {
        if !self.expand_candidate(replica_id, leader_high_watermark, brokers) {
            return None;
        }
        let isr = self.isr.isr().clone();
        let mut new_isr = isr.clone();
        new_isr.insert(replica_id);
        let sent = self.prepare_isr_change(&new_isr);
        self.isr = IsrState::PendingExpand {
            isr,
            adding: replica_id,
            sent: sent.clone(),
        };
        Some(sent)
    }

    /// The AlterPartition entry for `new_isr` at our epochs, each member with the broker epoch
    /// its fetches carried (ours for the leader; -1 if unknown, which the controller accepts).
    pub fn prepare_isr_change(&self, new_isr: &BTreeSet<i32>) -> AlterPartitionItem {
        let new_isr_with_epochs = new_isr
            .iter()
            .map(|&id| {
                let epoch = if id == self.local_broker_id {
                    self.local_broker_epoch
                } else {
                    self.followers
                        .get(&id)
                        .and_then(|state| state.broker_epoch)
                        .unwrap_or(NO_BROKER_EPOCH)
                };
                (id, epoch)
            })
            .collect();
        AlterPartitionItem {
            topic_id: self.topic_id,
            partition: self.partition,
            leader_epoch: self.leader_epoch,
            partition_epoch: self.partition_epoch,
            new_isr_with_epochs,
        }
    }

    /// Kafka `submitAlterPartition`'s completion (`handleAlterPartitionUpdate` /
    /// `handleAlterPartitionError`) for the answer to `sent`.
    pub fn on_alter_partition_result(
        &mut self,
        sent: &AlterPartitionItem,
        result: Result<LeaderAndIsr, ResponseError>,
        log: &mut impl ReplicaLog,
        now_ms: i64,
        brokers: &impl BrokerView,
    ) -> AlterPartitionOutcome {
        if self.isr.sent() != Some(sent) {
            // Superseded by a registration from the image (or another proposal).
            return AlterPartitionOutcome::Ignored;
        }
        match result {
            Ok(answer) => {
                if answer.leader_epoch != self.leader_epoch
                    || answer.partition_epoch < self.partition_epoch
                {
                    return AlterPartitionOutcome::Ignored;
                }
                self.partition_epoch = answer.partition_epoch;
                self.isr = IsrState::Committed {
                    isr: answer.isr.iter().copied().collect(),
                };
                self.check_invariants();
                AlterPartitionOutcome::Committed {
                    high_watermark_moved: self.maybe_increment_high_watermark(log, now_ms, brokers),
                }
            }
            Err(ResponseError::OperationNotAttempted | ResponseError::IneligibleReplica) => {
                // The controller says the partition epoch is right and nothing was applied.
                let isr = self.isr.isr().clone();
                self.isr = IsrState::Committed { isr };
                AlterPartitionOutcome::Reverted
            }
            Err(
                ResponseError::UnknownTopicOrPartition
                | ResponseError::UnknownTopicId
                | ResponseError::FencedLeaderEpoch
                | ResponseError::InvalidUpdateVersion
                | ResponseError::InvalidRequest
                | ResponseError::NewLeaderElected,
            ) => AlterPartitionOutcome::AwaitMetadata,
            Err(_) => AlterPartitionOutcome::Retry(sent.clone()),
        }
    }

    /// Kafka `appendRecordsToLeader`'s check: acks=all is refused before the append while
    /// the committed ISR is below the effective min ISR.
    pub fn check_append(&self, acks_all: bool) -> Result<(), NotEnoughReplicas> {
        if acks_all && self.is_under_min_isr() {
            return Err(NotEnoughReplicas {
                isr_size: self.isr.isr().len(),
                min_isr: self.effective_min_isr(),
            });
        }
        Ok(())
    }

    /// Kafka `checkEnoughReplicasReachOffset(required_offset)` (the produce's last offset + 1).
    pub fn check_enough_replicas(&self, required_offset: i64, high_watermark: i64) -> AckDecision {
        if high_watermark < required_offset {
            AckDecision::Wait
        } else if self.effective_min_isr() <= self.isr.maximal_isr().len() {
            AckDecision::Satisfied
        } else {
            AckDecision::NotEnoughReplicasAfterAppend
        }
    }
}

#[cfg(test)]
#[path = "leader_state_tests.rs"]
mod tests;
