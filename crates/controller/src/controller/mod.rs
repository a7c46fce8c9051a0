//! `QuorumController` (Kafka `controller/QuorumController.java` without its event queue): the
//! pure state machine of the active controller.
//!
//! # State
//! * `committed`: the image of every batch the driver passed to [`QuorumController::replay`].
//! * `speculative`: `committed` plus the records of every result this controller returned and
//!   the driver proposed but that has not committed yet (`pending`). Requests validate against
//!   it, as Kafka's controller works on its in-memory state ahead of the commit
//!   (`SnapshotRegistry`); [`QuorumController::on_resigned`] drops it (Kafka
//!   `revertToSnapshot`).
//! * soft state, never written to the log: broker sessions ([`BrokerHeartbeatManager`]), the
//!   set of brokers whose fencing spans several entries, timers, the seeded RNG.
//!
//! # Driver contract
//! * Call [`QuorumController::replay`] with every committed entry in order, also entries
//!   without records (a new Raft leader's empty entry) as empty batches, on every voter,
//!   active or not.
//! * Call [`QuorumController::on_became_active`] once this node leads and every entry before
//!   its term's first entry (and that one) was replayed (Kafka's listener fires only after
//!   catching up to the epoch start); propose what it returns.
//! * Propose every result with records as one entry, in order; release replies per
//!   [`ControllerResult`]'s rules; call [`QuorumController::tick`] periodically (a few times per
//!   second) and propose its results.
//! * On losing leadership call [`QuorumController::on_resigned`] and answer NOT_CONTROLLER to
//!   every unreleased reply.
//!
//! The broker epoch of a registration is the offset the controller predicts for the entry
//! (`next_write_offset`, as Kafka's `OffsetControlManager.nextWriteOffset`): the committed
//! offset + 1 at activation plus one per proposed entry. If the driver ever proposes at another
//! index, replay notices it, logs a warning and re-bases; the broker epoch then differs from
//! the offset but remains unique and increasing, and unfencing uses the real offset learned at
//! replay (Kafka's `registerBrokerRecordOffsets`).
//!
//! # Bounds
//! Every result holds at most `max_records_per_entry` records (Kafka `MAX_RECORDS_PER_USER_OP`,
//! 10000). Work that needs more (fencing a broker that leads 50k partitions, a controlled
//! shutdown, elections after an unfence) writes the first chunk with the request and the rest
//! in later [`QuorumController::tick`]s; fencing writes the broker's fence record last, so the
//! image never shows a fenced broker as a leader. Per-item overflow in admin requests is
//! answered with THROTTLING_QUOTA_EXCEEDED (retriable).

mod cluster;
mod replication;
mod security;
mod topics;

pub use security::validate_new_acl;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use fjord_metadata::{ConfigResource, MetadataBatch, MetadataDelta, MetadataImage, MetadataRecord};
use uuid::Uuid;

use crate::api::{ApiError, ControllerReply, ControllerRequest, ControllerResult, ErrorCode};
use crate::heartbeat::BrokerHeartbeatManager;
use crate::invariants;
use crate::rng::ControllerRng;
use crate::ControllerError;

/// `metadata.version` Fjord bootstraps with: Kafka 3.9-IV0 (feature level 21), whose records
/// (`BrokerRegistrationChangeRecord` with `InControlledShutdown`, KIP-704 recovery state, no
/// ISR-shrink epoch bump) are the ones Fjord writes.
pub const DEFAULT_METADATA_VERSION: i16 = 21;
/// Kafka `QuorumController.MAX_RECORDS_PER_USER_OP`.
pub const MAX_RECORDS_PER_USER_OP: usize = 10_000;
/// Kafka `ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE`.
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;
/// The topic config (and broker default) that enables unclean elections.
pub const UNCLEAN_LEADER_ELECTION_ENABLE: &str = "unclean.leader.election.enable";

/// Settings of the controller, Kafka names in the docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerConfig {
    /// `node.id` of this controller (its dynamic broker configs count for unclean elections).
    pub node_id: i32,
    /// A pre-seeded cluster id (`fjord storage format --cluster-id`, legacy data dirs); `None`
    /// generates one from the RNG at bootstrap.
    pub cluster_id: Option<String>,
    /// The `metadata.version` written at bootstrap.
    pub metadata_version: i16,
    /// `broker.session.timeout.ms`.
    pub broker_session_timeout_ms: i64,
    /// `num.partitions` (CreateTopics with -1).
    pub num_partitions: i32,
    /// `default.replication.factor` (CreateTopics with -1).
    pub default_replication_factor: i16,
    /// `auto.leader.rebalance.enable`.
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.check.interval.seconds`, in ms.
    pub leader_imbalance_check_interval_ms: i64,
    /// `unclean.leader.election.enable` (static default; topic and dynamic broker configs win).
    pub unclean_leader_election_enable: bool,
    /// `unclean.leader.election.interval.ms`: how often leaderless partitions are retried.
    pub unclean_leader_election_interval_ms: i64,
    /// `metadata.max.idle.interval.ms`: a NoOpRecord after this long without writes; 0 = never.
    pub metadata_max_idle_interval_ms: i64,
    /// Records per entry (Kafka `MAX_RECORDS_PER_USER_OP`); at least 2.
    pub max_records_per_entry: usize,
    /// Preferred-leader elections per rebalance entry (Kafka `maxElectionsPerImbalance`).
    pub max_elections_per_imbalance: usize,
    /// Seed of the placement / id RNG.
    pub seed: u64,
    /// Records written right after the bootstrap entry of an empty log, in entries of at most
    /// `max_records_per_entry` (a single-node data dir from before the metadata log:
    /// `fjord_metadata::migration::migration_records`). A `RegisterBrokerRecord` among them
    /// gets its entry's offset as broker epoch.
    pub initial_records: Vec<MetadataRecord>,
    /// The incarnation id of the broker running in this same process (combined node): its
    /// registration replaces this node's previous one at once instead of waiting for the old
    /// session to expire (DUPLICATE_BROKER_REGISTRATION), since that process is gone.
    pub local_broker_incarnation: Option<uuid::Uuid>,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            node_id: 1,
            cluster_id: None,
            metadata_version: DEFAULT_METADATA_VERSION,
            broker_session_timeout_ms: 9_000,
            num_partitions: 1,
            default_replication_factor: 1,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_ms: 300_000,
            unclean_leader_election_enable: false,
            unclean_leader_election_interval_ms: 300_000,
            metadata_max_idle_interval_ms: 500,
            max_records_per_entry: MAX_RECORDS_PER_USER_OP,
            max_elections_per_imbalance: 1_000,
            seed: 0,
            initial_records: Vec::new(),
            local_broker_incarnation: None,
        }
    }
}

/// Validates config changes before the controller writes them (the broker's `config.rs` rules
/// live in the broker today, design 4). The controller itself checks only that resources
/// exist and the operations are well-formed.
pub trait ConfigValidator: Send {
    /// `value` is the new value, `None` for a deletion.
    fn validate(
        &self,
        resource: &ConfigResource,
        name: &str,
        value: Option<&str>,
    ) -> Result<(), ApiError>;
}

/// Accepts every config change (the caller validated them).
#[derive(Clone, Copy, Debug, Default)]
pub struct AcceptAllConfigs;

impl ConfigValidator for AcceptAllConfigs {
    fn validate(&self, _: &ConfigResource, _: &str, _: Option<&str>) -> Result<(), ApiError> {
        Ok(())
    }
}

/// A proposed entry that has not committed yet.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PendingEntry {
    offset: i64,
    records: Vec<MetadataRecord>,
}

/// The records of one result being built, replayed as they are added so that later checks of
/// the same request see earlier changes.
pub(crate) struct Txn {
    pub(crate) delta: MetadataDelta,
    pub(crate) records: Vec<MetadataRecord>,
    max_records: usize,
}

impl Txn {
    fn new(base: Arc<MetadataImage>, max_records: usize) -> Self {
        Self {
            delta: MetadataDelta::new(base),
            records: Vec::new(),
            max_records,
        }
    }

    /// Replays and keeps `record`; an error is a controller bug.
    pub(crate) fn push(&mut self, record: MetadataRecord) -> Result<(), ControllerError> {
        assert!(self.records.len() < self.max_records, "entry cap exceeded");
        self.delta
            .replay(&record)
            .map_err(|source| ControllerError::Internal {
                record: record.name(),
                source,
            })?;
        self.records.push(record);
        Ok(())
    }

    /// How many more records fit in this entry.
    pub(crate) fn room(&self) -> usize {
        self.max_records - self.records.len()
    }
}

/// The sans-IO KRaft controller. See the module docs for the driver contract.
pub struct QuorumController {
    config: ControllerConfig,
    validator: Box<dyn ConfigValidator>,
    rng: ControllerRng,
    committed: Arc<MetadataImage>,
    speculative: Arc<MetadataImage>,
    pending: VecDeque<PendingEntry>,
    active: bool,
    next_write_offset: i64,
    /// Offset of each broker's `RegisterBrokerRecord` as committed (Kafka
    /// `registerBrokerRecordOffsets`); missing (snapshots) = the broker epoch.
    register_offsets: BTreeMap<i32, i64>,
    heartbeats: BrokerHeartbeatManager,
    /// Brokers being fenced over several entries: not acceptable as leaders or ISR members.
    fencing: BTreeSet<i32>,
    /// Some chunked work (fencing, controlled shutdown, elections) may be left for `tick`.
    sweep_needed: bool,
    next_balance_ms: i64,
    next_unclean_ms: i64,
    last_write_ms: i64,
}

impl QuorumController {
    /// An inactive controller over the empty log.
    pub fn new(config: ControllerConfig) -> Self {
        assert!(
            config.max_records_per_entry >= 2,
            "max_records_per_entry < 2"
        );
        let empty = Arc::new(MetadataImage::empty());
        Self {
            rng: ControllerRng::new(config.seed),
            config,
            validator: Box::new(AcceptAllConfigs),
            committed: empty.clone(),
            speculative: empty,
            pending: VecDeque::new(),
            active: false,
            next_write_offset: 0,
            register_offsets: BTreeMap::new(),
            heartbeats: BrokerHeartbeatManager::new(),
            fencing: BTreeSet::new(),
            sweep_needed: false,
            next_balance_ms: 0,
            next_unclean_ms: 0,
            last_write_ms: 0,
        }
    }

    /// Installs the validator config changes go through.
    pub fn set_config_validator(&mut self, validator: Box<dyn ConfigValidator>) {
        self.validator = validator;
    }

    pub fn config(&self) -> &ControllerConfig {
        &self.config
    }

    pub fn is_active(&self) -> bool {
        self.active
    }

    /// The image of every committed batch replayed.
    pub fn committed_image(&self) -> &Arc<MetadataImage> {
        &self.committed
    }

    /// The committed image plus every proposed, uncommitted result.
    pub fn speculative_image(&self) -> &Arc<MetadataImage> {
        &self.speculative
    }

    /// Number of proposed entries not yet committed.
    pub fn pending_entries(&self) -> usize {
        self.pending.len()
    }

    /// The offset the next proposed entry is expected at.
    pub fn next_write_offset(&self) -> i64 {
        self.next_write_offset
    }

    /// Broker sessions (soft state).
    pub fn heartbeats(&self) -> &BrokerHeartbeatManager {
        &self.heartbeats
    }

    /// Brokers whose fencing is spread over several entries.
    pub fn brokers_being_fenced(&self) -> &BTreeSet<i32> {
        &self.fencing
    }

    // ---- lifecycle ----

    /// This node became the active controller. Resets soft state (every broker's last contact
    /// becomes `now_ms`, so a failover fences nobody) and, on a log without a cluster id,
    /// returns the bootstrap entry: `FjordClusterIdRecord` + `FeatureLevelRecord`
    /// (`metadata.version`).
    pub fn on_became_active(&mut self, now_ms: i64) -> Vec<ControllerResult> {
        self.active = true;
        self.speculative = self.committed.clone();
        self.pending.clear();
        self.fencing.clear();
        self.next_write_offset = self.committed.offset + 1;
        self.heartbeats
            .reset(self.committed.brokers.keys().copied(), now_ms);
        for b in self.committed.brokers.values() {
            if b.in_controlled_shutdown && !b.fenced {
                self.heartbeats
                    .maybe_update_controlled_shutdown_offset(b.id, self.committed.offset);
            }
        }
        self.next_balance_ms =
            now_ms.saturating_add(self.config.leader_imbalance_check_interval_ms);
        self.next_unclean_ms =
            now_ms.saturating_add(self.config.unclean_leader_election_interval_ms);
        self.last_write_ms = now_ms;
        self.sweep_needed = true;
        if self.committed.cluster_id.is_some() {
            return Vec::new();
        }
        let cluster_id = match &self.config.cluster_id {
            Some(id) => id.clone(),
            None => crate::rng::kafka_uuid_string(self.rng.uuid()),
        };
        let mut txn = self.txn();
        let bootstrap = [
            MetadataRecord::ClusterId(fjord_metadata::ClusterIdRecord { cluster_id }),
            MetadataRecord::FeatureLevel(fjord_metadata::FeatureLevelRecord {
                name: fjord_metadata::METADATA_VERSION_FEATURE.to_string(),
                feature_level: self.config.metadata_version,
            }),
        ];
        for r in bootstrap {
            if let Err(e) = txn.push(r) {
                debug_assert!(false, "{e}");
                tracing::error!(error = %e, "bootstrap records do not replay");
                return Vec::new();
            }
        }
        let mut results = vec![self.finish(txn, ControllerReply::Internal, now_ms)];
        let initial = self.config.initial_records.clone();
        for chunk in initial.chunks(self.config.max_records_per_entry) {
            let offset = self.next_write_offset;
            let mut txn = self.txn();
            for record in chunk {
                let mut record = record.clone();
                if let MetadataRecord::RegisterBroker(r) = &mut record {
                    r.broker_epoch = offset;
                }
                if let Err(e) = txn.push(record) {
                    tracing::error!(error = %e, "initial metadata records do not replay");
                    return results;
                }
            }
            results.push(self.finish(txn, ControllerReply::Internal, now_ms));
        }
        results
    }

    /// This node lost leadership: speculative state and soft state are dropped; the driver
    /// answers NOT_CONTROLLER to unreleased replies.
    pub fn on_resigned(&mut self) {
        self.active = false;
        self.speculative = self.committed.clone();
        self.pending.clear();
        self.fencing.clear();
        self.heartbeats = BrokerHeartbeatManager::new();
        self.sweep_needed = false;
    }

    /// Starts over from a snapshot's image: a voter whose log fell behind the leader's log
    /// start gets the leader's snapshot instead of the entries. Everything speculative or soft
    /// is dropped (the node is not active while it installs a snapshot); broker registration
    /// offsets become the broker epochs, which are the offsets of their registrations.
    pub fn load_snapshot(&mut self, image: Arc<MetadataImage>) {
        self.active = false;
        self.committed = image.clone();
        self.speculative = image;
        self.pending.clear();
        self.fencing.clear();
        self.heartbeats = BrokerHeartbeatManager::new();
        self.sweep_needed = false;
        self.register_offsets = self
            .committed
            .brokers
            .values()
            .map(|broker| (broker.id, broker.epoch))
            .collect();
        self.next_write_offset = self.committed.offset + 1;
    }

    /// Applies one committed entry. Errors mean the log and this replayer disagree: the node
    /// must stop (Kafka's controller faults the same way).
    pub fn replay(&mut self, batch: &MetadataBatch) -> Result<(), ControllerError> {
        if batch.offset <= self.committed.offset {
            return Err(ControllerError::OutOfOrder {
                offset: batch.offset,
                committed: self.committed.offset,
            });
        }
        let mut delta = MetadataDelta::new(self.committed.clone());
        delta
            .replay_all(&batch.records)
            .map_err(|source| ControllerError::Replay {
                offset: batch.offset,
                source,
            })?;
        let next = delta.apply(batch.offset, batch.epoch);
        if cfg!(debug_assertions) {
            if let Err(violation) = invariants::check_transition(&self.committed, &next) {
                panic!("invariant violated by entry {}: {violation}", batch.offset);
            }
        }
        self.committed = next;
        for r in &batch.records {
            match r {
                MetadataRecord::RegisterBroker(r) => {
                    if r.broker_epoch != batch.offset {
                        tracing::warn!(
                            broker = r.broker_id,
                            epoch = r.broker_epoch,
                            offset = batch.offset,
                            "broker epoch differs from its registration offset"
                        );
                    }
                    self.register_offsets.insert(r.broker_id, batch.offset);
                }
                MetadataRecord::UnregisterBroker(r) => {
                    self.register_offsets.remove(&r.broker_id);
                }
                _ => {}
            }
        }
        if !self.active {
            self.speculative = self.committed.clone();
            self.next_write_offset = batch.offset + 1;
            return Ok(());
        }
        self.advance_pending(batch);
        Ok(())
    }

    /// Matches a committed batch against the oldest pending entry (active controller).
    fn advance_pending(&mut self, batch: &MetadataBatch) {
        let Some(front) = self.pending.front() else {
            self.speculative = self.committed.clone();
            self.next_write_offset = self.next_write_offset.max(batch.offset + 1);
            return;
        };
        if batch.records.is_empty() {
            // An empty entry of Raft's own (never one of ours: results without records are not
            // proposed). It changes no state; if it took an offset we predicted for our
            // proposals, they land one later.
            if batch.offset >= front.offset {
                let shift = batch.offset - front.offset + 1;
                tracing::warn!(
                    offset = batch.offset,
                    "empty entry among proposals; re-basing"
                );
                for p in &mut self.pending {
                    p.offset += shift;
                }
                self.next_write_offset += shift;
            }
            return;
        }
        if front.records == batch.records {
            let shift = batch.offset - front.offset;
            if shift != 0 {
                tracing::warn!(
                    expected = front.offset,
                    offset = batch.offset,
                    "proposed entry committed at another offset; re-basing"
                );
                for p in &mut self.pending {
                    p.offset += shift;
                }
                self.next_write_offset += shift;
            }
            self.pending.pop_front();
            if self.pending.is_empty() {
                self.speculative = self.committed.clone();
            }
            return;
        }
        tracing::warn!(
            offset = batch.offset,
            pending = self.pending.len(),
            "committed entry is not the oldest proposal; dropping speculative state"
        );
        self.pending.clear();
        self.speculative = self.committed.clone();
        self.next_write_offset = self.next_write_offset.max(batch.offset + 1);
        self.sweep_needed = true;
    }

    // ---- requests ----

    /// Handles one request against the speculative image.
    pub fn handle(&mut self, now_ms: i64, request: ControllerRequest) -> ControllerResult {
        if !self.active {
            return ControllerResult {
                records: Vec::new(),
                reply: ControllerReply::Error(ApiError::new(
                    ErrorCode::NotController,
                    "This node is not the active controller.",
                )),
                offset: self.committed.offset,
            };
        }
        let mut txn = self.txn();
        let reply = match request {
            ControllerRequest::BrokerRegistration(r) => self.register_broker(now_ms, &mut txn, r),
            ControllerRequest::BrokerHeartbeat(r) => self.broker_heartbeat(now_ms, &mut txn, r),
            ControllerRequest::UnregisterBroker(r) => self.unregister_broker(&mut txn, r),
            ControllerRequest::CreateTopics(r) => self.create_topics(&mut txn, r),
            ControllerRequest::DeleteTopics(r) => self.delete_topics(&mut txn, r),
            ControllerRequest::CreatePartitions(r) => self.create_partitions(&mut txn, r),
            ControllerRequest::IncrementalAlterConfigs(r) => {
                self.incremental_alter_configs(&mut txn, r)
            }
            ControllerRequest::AlterConfigs(r) => self.alter_configs(&mut txn, r),
            ControllerRequest::AlterPartition(r) => self.alter_partition(&mut txn, r),
            ControllerRequest::ElectLeaders(r) => self.elect_leaders(&mut txn, r),
            ControllerRequest::AlterPartitionReassignments(r) => {
                self.alter_partition_reassignments(&mut txn, r)
            }
            ControllerRequest::ListPartitionReassignments(r) => {
                // A read: answered from the committed image, releasable at once (Kafka reads
                // at the last committed offset).
                return ControllerResult {
                    records: Vec::new(),
                    reply: self.list_partition_reassignments(r),
                    offset: self.committed.offset,
                };
            }
            ControllerRequest::AllocateProducerIds(r) => self.allocate_producer_ids(&mut txn, r),
            ControllerRequest::CreateAcls(r) => self.create_acls(&mut txn, r),
            ControllerRequest::DeleteAcls(r) => self.delete_acls(&mut txn, r),
            ControllerRequest::AlterUserScramCredentials(r) => {
                self.alter_user_scram_credentials(&mut txn, r)
            }
            ControllerRequest::AlterClientQuotas(r) => self.alter_client_quotas(&mut txn, r),
        };
        match reply {
            Ok(reply) => self.finish(txn, reply, now_ms),
            Err(e) => {
                debug_assert!(false, "controller bug: {e}");
                tracing::error!(error = %e, "controller bug; request refused");
                ControllerResult {
                    records: Vec::new(),
                    reply: ControllerReply::Error(ApiError::new(
                        ErrorCode::UnknownServerError,
                        e.to_string(),
                    )),
                    offset: self.last_proposed_offset(),
                }
            }
        }
    }

    /// Periodic work: continue chunked fencing / controlled shutdowns / elections, fence one
    /// broker whose session expired, preferred-leader rebalancing, unclean elections, NoOps.
    pub fn tick(&mut self, now_ms: i64) -> Vec<ControllerResult> {
        if !self.active {
            return Vec::new();
        }
        let mut out = Vec::new();
        match self.maintenance(now_ms) {
            Ok(Some(r)) => out.push(r),
            Ok(None) => {}
            Err(e) => {
                debug_assert!(false, "controller bug: {e}");
                tracing::error!(error = %e, "controller bug in tick");
            }
        }
        if self.config.auto_leader_rebalance_enable && now_ms >= self.next_balance_ms {
            let mut txn = self.txn();
            match self.balance_partition_leaders(&mut txn) {
                Ok(more) => {
                    self.next_balance_ms = if more {
                        now_ms
                    } else {
                        now_ms.saturating_add(self.config.leader_imbalance_check_interval_ms)
                    };
                    if !txn.records.is_empty() {
                        out.push(self.finish(txn, ControllerReply::Internal, now_ms));
                    }
                }
                Err(e) => {
                    debug_assert!(false, "controller bug: {e}");
                    tracing::error!(error = %e, "controller bug in leader rebalance");
                }
            }
        }
        if out.is_empty()
            && self.config.metadata_max_idle_interval_ms > 0
            && now_ms.saturating_sub(self.last_write_ms)
                >= self.config.metadata_max_idle_interval_ms
        {
            let mut txn = self.txn();
            if txn.push(MetadataRecord::NoOp).is_ok() {
                out.push(self.finish(txn, ControllerReply::Internal, now_ms));
            }
        }
        out
    }

    fn maintenance(&mut self, now_ms: i64) -> Result<Option<ControllerResult>, ControllerError> {
        let unclean_due = now_ms >= self.next_unclean_ms;
        if unclean_due {
            self.next_unclean_ms =
                now_ms.saturating_add(self.config.unclean_leader_election_interval_ms);
        }
        let mut txn = self.txn();
        let mut complete = true;
        // Chunked fencing first: these brokers are already unacceptable.
        for broker in self.fencing.clone() {
            complete &= self.fence_broker(&mut txn, broker)?;
        }
        // One stale broker per tick (Kafka `maybeFenceOneStaleBroker`).
        if txn.room() > 1 {
            let unfenced: Vec<i32> = self
                .broker_ids(&txn)
                .into_iter()
                .filter(|id| {
                    !self.fencing.contains(id) && txn.delta.broker(*id).is_some_and(|b| !b.fenced)
                })
                .collect();
            if let Some(stale) = self.heartbeats.find_one_stale_broker(
                unfenced.into_iter(),
                now_ms,
                self.config.broker_session_timeout_ms,
            ) {
                tracing::info!(broker = stale, "fencing broker: its session timed out");
                complete &= self.fence_broker(&mut txn, stale)?;
            }
        }
        if self.sweep_needed || unclean_due {
            // Brokers in controlled shutdown still leading or in multi-member ISRs.
            for id in self.broker_ids(&txn) {
                let shutting_down = txn
                    .delta
                    .broker(id)
                    .is_some_and(|b| b.in_controlled_shutdown && !b.fenced);
                if shutting_down && txn.room() > 0 {
                    let room = txn.room();
                    complete &= self.remove_broker_from_partitions(&mut txn, id, room)?;
                }
            }
            if txn.room() > 0 {
                let room = txn.room();
                complete &= self.elect_leaderless_partitions(&mut txn, room)?;
            } else {
                complete = false;
            }
            self.sweep_needed = !complete || !self.fencing.is_empty();
        }
        if txn.records.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.finish(txn, ControllerReply::Internal, now_ms)))
    }

    // ---- helpers shared by the request modules ----

    fn txn(&self) -> Txn {
        Txn::new(self.speculative.clone(), self.config.max_records_per_entry)
    }

    /// The offset of the last entry this controller proposed, or the committed offset.
    fn last_proposed_offset(&self) -> i64 {
        self.pending
            .back()
            .map_or(self.committed.offset, |p| p.offset)
    }

    /// Turns a finished transaction into a result (and a pending entry if it has records).
    fn finish(&mut self, txn: Txn, reply: ControllerReply, now_ms: i64) -> ControllerResult {
        if txn.records.is_empty() {
            return ControllerResult {
                records: Vec::new(),
                reply,
                offset: self.last_proposed_offset(),
            };
        }
        let offset = self.next_write_offset;
        let next = txn.delta.apply(offset, self.speculative.epoch);
        if cfg!(debug_assertions) {
            if let Err(violation) = invariants::check_transition(&self.speculative, &next) {
                panic!("controller would write an invariant violation: {violation}");
            }
        }
        self.speculative = next;
        self.pending.push_back(PendingEntry {
            offset,
            records: txn.records.clone(),
        });
        self.next_write_offset += 1;
        self.last_write_ms = now_ms;
        ControllerResult {
            records: txn.records,
            reply,
            offset,
        }
    }

    /// Registered, unfenced, not in controlled shutdown and not being fenced (Kafka
    /// `ClusterControlManager.isActive`): may lead and join ISRs.
    pub(crate) fn is_active_broker(&self, delta: &MetadataDelta, broker_id: i32) -> bool {
        !self.fencing.contains(&broker_id)
            && delta
                .broker(broker_id)
                .is_some_and(|b| !b.fenced && !b.in_controlled_shutdown)
    }

    /// Registered broker ids as staged in `txn`.
    pub(crate) fn broker_ids(&self, txn: &Txn) -> Vec<i32> {
        let mut ids: BTreeSet<i32> = self.speculative.brokers.keys().copied().collect();
        ids.extend(txn.delta.changed_brokers().keys().copied());
        ids.into_iter()
            .filter(|id| txn.delta.broker(*id).is_some())
            .collect()
    }

    /// (topic id, partition) of every partition of the speculative image, in order.
    pub(crate) fn partition_keys(&self) -> Vec<(Uuid, i32)> {
        self.speculative
            .topics
            .values()
            .flat_map(|t| t.partitions.keys().map(move |p| (t.id, *p)))
            .collect()
    }

    /// Whether unclean elections are enabled for `topic`: topic config, then this node's
    /// dynamic broker config, then the cluster default, then the static setting.
    pub(crate) fn unclean_enabled(&self, delta: &MetadataDelta, topic: &str) -> bool {
        let lookup = |resource: ConfigResource| {
            delta
                .config(&resource)
                .and_then(|c| c.get(UNCLEAN_LEADER_ELECTION_ENABLE))
                .map(|v| v.trim().eq_ignore_ascii_case("true"))
        };
        lookup(ConfigResource::topic(topic))
            .or_else(|| lookup(ConfigResource::broker(self.config.node_id.to_string())))
            .or_else(|| lookup(ConfigResource::broker("")))
            .unwrap_or(self.config.unclean_leader_election_enable)
    }

    /// The broker's registration offset: as committed, else its epoch (equal by construction).
    pub(crate) fn register_offset(&self, broker_id: i32, epoch: i64) -> i64 {
        match self.register_offsets.get(&broker_id) {
            Some(&offset)
                if self
                    .committed
                    .broker(broker_id)
                    .is_some_and(|b| b.epoch == epoch) =>
            {
                offset
            }
            _ => epoch,
        }
    }
}

/// Result type of request handlers: a reply, or a controller bug.
pub(crate) type HandlerResult = Result<ControllerReply, ControllerError>;

#[cfg(test)]
pub(crate) mod harness;
#[cfg(test)]
mod simulation;
#[cfg(test)]
mod tests;
