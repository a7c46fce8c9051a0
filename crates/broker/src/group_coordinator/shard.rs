//! One coordinator shard: the groups and offsets of one `__consumer_offsets` partition
//! (Kafka's `GroupCoordinatorShard`). Everything a shard does is serialised by its lock in
//! [`super::GroupCoordinator`]; its records go to its own partition, in the order its state
//! changed, so replaying the partition rebuilds the shard.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use fjord_protocol::kafka_protocol::messages::describe_groups_response::{
    DescribedGroup, DescribedGroupMember,
};
use fjord_protocol::kafka_protocol::messages::list_groups_response::ListedGroup;
use fjord_protocol::kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use fjord_protocol::kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use fjord_protocol::kafka_protocol::messages::{
    GroupId, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, OffsetCommitRequest,
    SyncGroupRequest, SyncGroupResponse, TxnOffsetCommitRequest,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::ResponseError;
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use super::classic_group::{ClassicGroup, ClassicGroupState};
use super::consumer_group::ConsumerGroup;
use super::group_metadata_manager::{Group, GroupMetadataManager, JoinRequest};
use super::offsets::{OffsetAndMetadata, OffsetExpiration, OffsetMetadataManager};
use super::persistence::CoordinatorRecord;
use super::timer::{TimerKey, TimerTask};
use super::{
    AppendError, CoordinatorLog, GroupCoordinatorConfig, GroupsCount, RequestContext,
    TransactionalProducer, TIMER_TASKS_PER_POLL_MAX,
};

/// One partition's committed offset as OffsetFetch reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedOffset {
    pub partition: i32,
    /// -1 when nothing is committed.
    pub committed_offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    /// UNSTABLE_OFFSET_COMMIT when asked for stable offsets while a transaction has one
    /// pending for the partition (the offset is then -1).
    pub error: Option<ResponseError>,
}

impl FetchedOffset {
    /// Nothing committed (or an error): offset and leader epoch -1, no metadata.
    pub fn none(partition: i32, error: Option<ResponseError>) -> Self {
        Self {
            partition,
            committed_offset: -1,
            leader_epoch: -1,
            metadata: String::new(),
            error,
        }
    }
}

/// Kafka's error mapping for a failed offset commit append.
fn offset_commit_append_error(error: &AppendError) -> ResponseError {
    match error {
        AppendError::TooLarge { .. } => ResponseError::InvalidCommitOffsetSize,
        AppendError::Unavailable(_) => ResponseError::CoordinatorNotAvailable,
        AppendError::NotLeader(_) => ResponseError::NotCoordinator,
        AppendError::Storage(_) => ResponseError::NotCoordinator,
        AppendError::Rejected(error) => *error,
    }
}

/// Kafka's error mapping for other coordinator writes (tombstones).
fn write_append_error(error: &AppendError) -> ResponseError {
    match error {
        AppendError::TooLarge { .. } => ResponseError::UnknownServerError,
        AppendError::Unavailable(_) => ResponseError::CoordinatorNotAvailable,
        AppendError::NotLeader(_) => ResponseError::NotCoordinator,
        AppendError::Storage(_) => ResponseError::NotCoordinator,
        AppendError::Rejected(error) => *error,
    }
}

/// Kafka's `ClassicGroup.validateOffsetCommit`. Transactional commits (TxnOffsetCommit) skip
/// the group state checks: v0-v2 carry no member id or generation at all.
fn validate_offset_commit(
    group: &ClassicGroup,
    member_id: &str,
    group_instance_id: Option<&str>,
    generation_id: i32,
    is_transactional: bool,
) -> Result<(), ResponseError> {
    if group.is_in_state(ClassicGroupState::Dead) {
        return Err(ResponseError::CoordinatorNotAvailable);
    }
    if generation_id < 0 && group.is_in_state(ClassicGroupState::Empty) {
        // An admin tool or a consumer with manual assignment: allowed while nobody uses
        // the group's membership.
        return Ok(());
    }
    if generation_id >= 0 || !member_id.is_empty() || group_instance_id.is_some() {
        let operation = if is_transactional {
            "txn-offset-commit"
        } else {
            "offset-commit"
        };
        group.validate_member(member_id, group_instance_id, operation)?;
        if generation_id != group.generation_id() {
            return Err(ResponseError::IllegalGeneration);
        }
    } else if !is_transactional && !group.is_in_state(ClassicGroupState::Empty) {
        return Err(ResponseError::UnknownMemberId);
    }
    if !is_transactional && group.is_in_state(ClassicGroupState::CompletingRebalance) {
        // The member has its new generation but not its assignment yet.
        return Err(ResponseError::RebalanceInProgress);
    }
    Ok(())
}

/// From when the group's offsets expire, if they can (Kafka's
/// `ClassicGroup.offsetExpirationCondition`).
fn offset_expiration(group: &ClassicGroup) -> Option<OffsetExpiration> {
    match group.protocol_type() {
        None => Some(OffsetExpiration::SinceCommit),
        Some(_) if group.is_in_state(ClassicGroupState::Empty) => {
            Some(OffsetExpiration::SinceGroupEmpty {
                state_timestamp_ms: group.state_timestamp_ms(),
            })
        }
        Some(_)
            if group.uses_consumer_protocol()
                && group.subscribed_topics().is_some()
                && group.is_in_state(ClassicGroupState::Stable) =>
        {
            Some(OffsetExpiration::SinceCommit)
        }
        Some(_) => None,
    }
}

pub struct GroupCoordinatorShard {
    partition: i32,
    config: Arc<GroupCoordinatorConfig>,
    log: Arc<dyn CoordinatorLog>,
    groups: GroupMetadataManager,
    offsets: OffsetMetadataManager,
    /// KIP-848 groups (see `consumer_groups.rs`); a group id is either here or classic.
    pub(super) consumer_groups: BTreeMap<String, ConsumerGroup>,
}

impl GroupCoordinatorShard {
    pub fn new(
        config: Arc<GroupCoordinatorConfig>,
        log: Arc<dyn CoordinatorLog>,
        partition: i32,
        groups_count: Arc<GroupsCount>,
        now_ms: i64,
    ) -> Self {
        let mut groups =
            GroupMetadataManager::new(config.clone(), log.clone(), partition, groups_count);
        groups.timer_mut().schedule(
            TimerKey::GroupMetadataExpiration,
            now_ms.saturating_add(config.offsets_retention_check_interval_ms),
            TimerTask::CleanupGroupMetadata,
        );
        Self {
            partition,
            config,
            log,
            groups,
            offsets: OffsetMetadataManager::default(),
            consumer_groups: BTreeMap::new(),
        }
    }

    pub(super) fn config(&self) -> &GroupCoordinatorConfig {
        &self.config
    }

    pub fn partition(&self) -> i32 {
        self.partition
    }

    pub fn groups(&self) -> &GroupMetadataManager {
        &self.groups
    }

    pub fn offsets(&self) -> &OffsetMetadataManager {
        &self.offsets
    }

    /// This shard's groups (classic, KIP-848, and ids that only have committed offsets) with
    /// their committed offsets, until `snapshots` holds `groups_max`.
    pub(super) fn append_metrics_snapshot(
        &self,
        snapshots: &mut Vec<crate::metrics::GroupSnapshot>,
        groups_max: usize,
    ) {
        use crate::metrics::GroupSnapshot;
        let committed = |group_id: &str| -> Vec<(String, i32, i64)> {
            self.offsets
                .group_offsets(group_id)
                .map(|topics| {
                    topics
                        .iter()
                        .flat_map(|(topic, partitions)| {
                            partitions
                                .iter()
                                .map(move |(p, o)| (topic.clone(), *p, o.committed_offset))
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut seen = std::collections::HashSet::new();
        let classic = self.groups.groups().map(|(id, group)| {
            let members = match group {
                super::group_metadata_manager::Group::Classic(g) => g.members().count(),
            };
            (id, Some(group.state_name()), members)
        });
        let consumer = self
            .consumer_groups
            .iter()
            .map(|(id, group)| (id, Some(group.state().name()), group.members.len()));
        let offsets_only = self
            .offsets
            .groups_with_offsets()
            .map(|(id, _)| (id, None, 0));
        for (group_id, state, members) in classic.chain(consumer).chain(offsets_only) {
            if snapshots.len() >= groups_max {
                return;
            }
            if !seen.insert(group_id.as_str()) {
                continue;
            }
            snapshots.push(GroupSnapshot {
                group_id: group_id.clone(),
                state,
                members,
                committed: committed(group_id),
            });
        }
    }

    // ------------------------------------------------------------------------ load

    /// Applies one record read back from the shard's partition at `record_offset`;
    /// `producer_id` is that of a transactional batch (Kafka's `replay(offset, producerId, ..)`).
    pub fn replay(
        &mut self,
        record_offset: i64,
        producer_id: Option<i64>,
        record: &CoordinatorRecord,
        now_ms: i64,
    ) {
        match record {
            CoordinatorRecord::OffsetCommit {
                group,
                topic,
                partition,
                value,
            } => {
                if value.is_some() {
                    // Offsets without group metadata belong to a simple (standalone) group.
                    self.groups.ensure_group_for_replay(group, now_ms);
                }
                self.offsets.replay(
                    record_offset,
                    producer_id,
                    group,
                    topic,
                    *partition,
                    value.as_ref(),
                );
            }
            CoordinatorRecord::GroupMetadata { group, value } => {
                self.groups.replay_group_metadata(group, value.as_ref());
            }
        }
    }

    /// Before the shard is dropped because its partition is led elsewhere now.
    pub fn unload(&mut self) {
        self.groups.unload();
    }

    pub fn on_loaded(&mut self, now_ms: i64) {
        self.groups.on_loaded(now_ms);
    }

    /// The producer's transaction ended with a marker in this shard's partition (appended just
    /// now, or replayed at load): its pending offsets are committed or dropped.
    pub fn complete_transaction(&mut self, producer_id: i64, commit: bool, now_ms: i64) {
        for group in self.offsets.replay_end_transaction(producer_id, commit) {
            // The group exists since its pending offsets were replayed (groups with open
            // transactions are not expired); kept as a guard so offsets never lack a group.
            if !self.consumer_groups.contains_key(&group) {
                self.groups.ensure_group_for_replay(&group, now_ms);
            }
        }
        debug!(
            partition = self.partition,
            producer_id,
            result = if commit { "COMMIT" } else { "ABORT" },
            "transaction completed"
        );
    }

    // ------------------------------------------------------------------------ timers

    pub fn next_deadline_ms(&self) -> Option<i64> {
        self.groups.next_deadline_ms()
    }

    /// Runs every timer task due at `now_ms`. Bounded, so a task that keeps rescheduling
    /// itself for "now" cannot hold the shard forever.
    pub fn poll_timers(&mut self, now_ms: i64) {
        self.expire_consumer_group_members(now_ms);
        for _ in 0..TIMER_TASKS_PER_POLL_MAX {
            let Some((key, task)) = self.groups.timer_mut().pop_due(now_ms) else {
                return;
            };
            match task {
                TimerTask::CleanupGroupMetadata => self.cleanup_group_metadata(now_ms),
                task => self.groups.run_timer(key, task, now_ms),
            }
        }
        warn!(
            partition = self.partition,
            "timer tasks left over after the per-poll limit"
        );
    }

    // ------------------------------------------------------------------------ membership

    pub fn join_group(
        &mut self,
        ctx: &RequestContext,
        request: JoinRequest,
        now_ms: i64,
    ) -> oneshot::Receiver<JoinGroupResponse> {
        self.groups.join_group(ctx, request, now_ms)
    }

    pub fn sync_group(
        &mut self,
        request: &SyncGroupRequest,
        now_ms: i64,
    ) -> oneshot::Receiver<SyncGroupResponse> {
        self.groups.sync_group(request, now_ms)
    }

    pub fn heartbeat(
        &mut self,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
        now_ms: i64,
    ) -> Result<(), ResponseError> {
        self.groups.heartbeat(
            group_id,
            member_id,
            group_instance_id,
            generation_id,
            now_ms,
        )
    }

    pub fn leave_group(&mut self, request: &LeaveGroupRequest, now_ms: i64) -> LeaveGroupResponse {
        self.groups.leave_group(request, now_ms)
    }

    pub fn complete_all_futures(&mut self, error: ResponseError) {
        self.groups.complete_all_futures(error);
    }

    // ------------------------------------------------------------------------ offsets

    /// One partition of a (transactional) offset commit: the `OffsetCommit` record to write,
    /// or OFFSET_METADATA_TOO_LARGE.
    #[allow(clippy::too_many_arguments)]
    fn offset_commit_record(
        &self,
        group_id: &str,
        topic: &str,
        partition: i32,
        (committed_offset, committed_leader_epoch): (i64, i32),
        metadata: Option<&str>,
        expire_timestamp_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<CoordinatorRecord, ResponseError> {
        let metadata = metadata.unwrap_or_default().to_string();
        if metadata.len() > self.config.offset_metadata_max_bytes {
            return Err(ResponseError::OffsetMetadataTooLarge);
        }
        let offset = OffsetAndMetadata {
            committed_offset,
            leader_epoch: (committed_leader_epoch >= 0).then_some(committed_leader_epoch),
            metadata,
            commit_timestamp_ms: now_ms,
            expire_timestamp_ms,
            record_offset: -1,
        };
        Ok(CoordinatorRecord::OffsetCommit {
            group: group_id.to_string(),
            topic: topic.to_string(),
            partition,
            value: Some(offset.to_record()),
        })
    }

    /// Kafka's `OffsetMetadataManager.commitOffset`. The request holds only partitions that
    /// exist (the handler answered the others). Acknowledged once the records are in the log.
    pub fn commit_offsets(
        &mut self,
        request: &OffsetCommitRequest,
        api_version: i16,
        now_ms: i64,
    ) -> Vec<OffsetCommitResponseTopic> {
        let group_id = request.group_id.as_str();
        let member_id = request.member_id.as_str();
        let instance_id = request.group_instance_id.as_ref().map(|s| s.as_str());
        let generation_id = request.generation_id_or_member_epoch;
        let all_failed = |error: ResponseError| -> Vec<OffsetCommitResponseTopic> {
            request
                .topics
                .iter()
                .map(|t| {
                    OffsetCommitResponseTopic::default()
                        .with_name(t.name.clone())
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    OffsetCommitResponsePartition::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(error.code())
                                })
                                .collect(),
                        )
                })
                .collect()
        };
        let consumer_group = self.consumer_groups.get(group_id);
        let validation = match self.groups.classic_group(group_id) {
            _ if consumer_group.is_some() => consumer_group.map_or(Ok(()), |g| {
                g.validate_offset_commit(member_id, generation_id, api_version)
            }),
            Some(group) => {
                validate_offset_commit(group, member_id, instance_id, generation_id, false)
            }
            None if generation_id < 0 => {
                info!(
                    group = group_id,
                    "creating a simple consumer group for a manual offset commit"
                );
                self.groups
                    .get_or_create_classic_group(group_id, now_ms)
                    .map(|_| ())
            }
            // v9 answers GROUP_ID_NOT_FOUND, older versions ILLEGAL_GENERATION (as Kafka).
            None if api_version >= 9 => Err(ResponseError::GroupIdNotFound),
            None => Err(ResponseError::IllegalGeneration),
        };
        if let Err(error) = validation {
            return all_failed(error);
        }
        if !member_id.is_empty() {
            self.groups
                .touch_member_session(group_id, member_id, now_ms);
        }
        let expire_timestamp_ms = (request.retention_time_ms != -1)
            .then(|| now_ms.saturating_add(request.retention_time_ms));
        let mut records = Vec::new();
        let mut response = Vec::with_capacity(request.topics.len());
        for topic in &request.topics {
            let mut partitions = Vec::with_capacity(topic.partitions.len());
            for p in &topic.partitions {
                let error = match self.offset_commit_record(
                    group_id,
                    &topic.name,
                    p.partition_index,
                    (p.committed_offset, p.committed_leader_epoch),
                    p.committed_metadata.as_deref(),
                    expire_timestamp_ms,
                    now_ms,
                ) {
                    Ok(record) => {
                        records.push(record);
                        0
                    }
                    Err(error) => error.code(),
                };
                partitions.push(
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(error),
                );
            }
            response.push(
                OffsetCommitResponseTopic::default()
                    .with_name(topic.name.clone())
                    .with_partitions(partitions),
            );
        }
        if records.is_empty() {
            return response;
        }
        match self
            .log
            .append_batch(self.partition, &records, None, now_ms)
        {
            Ok(base_offset) => {
                for (offset, record) in (base_offset..).zip(&records) {
                    self.replay(offset, None, record, now_ms);
                }
                response
            }
            Err(err) => {
                warn!(group = group_id, error = %err, "offset commit could not be written");
                all_failed(offset_commit_append_error(&err))
            }
        }
    }

    /// Kafka's `OffsetMetadataManager.commitTransactionalOffset`. The request holds only
    /// partitions that exist; the transaction was verified by the handler. The records go to
    /// the log as one transactional batch of the request's producer, and to the producer's
    /// pending offsets, committed only by the transaction's COMMIT marker.
    pub fn commit_transactional_offsets(
        &mut self,
        request: &TxnOffsetCommitRequest,
        api_version: i16,
        now_ms: i64,
    ) -> Vec<TxnOffsetCommitResponseTopic> {
        let group_id = request.group_id.as_str();
        let member_id = request.member_id.as_str();
        let instance_id = request.group_instance_id.as_ref().map(|s| s.as_str());
        let generation_id = request.generation_id;
        let producer = TransactionalProducer {
            producer_id: request.producer_id.0,
            producer_epoch: request.producer_epoch,
        };
        let all_failed = |error: ResponseError| -> Vec<TxnOffsetCommitResponseTopic> {
            request
                .topics
                .iter()
                .map(|t| {
                    TxnOffsetCommitResponseTopic::default()
                        .with_name(t.name.clone())
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    TxnOffsetCommitResponsePartition::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(error.code())
                                })
                                .collect(),
                        )
                })
                .collect()
        };
        // Kafka's `validateTransactionalOffsetCommit`.
        let validation = if let Some(group) = self.consumer_groups.get(group_id) {
            group.validate_transactional_offset_commit(member_id, generation_id)
        } else {
            match self.groups.classic_group(group_id) {
                Some(group) => {
                    validate_offset_commit(group, member_id, instance_id, generation_id, true)
                }
                None if generation_id < 0 => {
                    info!(
                        group = group_id,
                        "creating a simple consumer group for a transactional offset commit"
                    );
                    self.groups
                        .get_or_create_classic_group(group_id, now_ms)
                        .map(|_| ())
                }
                None => Err(ResponseError::IllegalGeneration),
            }
        };
        if let Err(error) = validation {
            debug!(group = group_id, member_id, generation_id, api_version, error = ?error,
                "transactional offset commit refused");
            return all_failed(error);
        }
        let mut records = Vec::new();
        let mut response = Vec::with_capacity(request.topics.len());
        for topic in &request.topics {
            let mut partitions = Vec::with_capacity(topic.partitions.len());
            for p in &topic.partitions {
                let error = match self.offset_commit_record(
                    group_id,
                    &topic.name,
                    p.partition_index,
                    (p.committed_offset, p.committed_leader_epoch),
                    p.committed_metadata.as_deref(),
                    None,
                    now_ms,
                ) {
                    Ok(record) => {
                        records.push(record);
                        0
                    }
                    Err(error) => error.code(),
                };
                partitions.push(
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(error),
                );
            }
            response.push(
                TxnOffsetCommitResponseTopic::default()
                    .with_name(topic.name.clone())
                    .with_partitions(partitions),
            );
        }
        if records.is_empty() {
            return response;
        }
        let pending = self.offsets.pending_count();
        let limit = self.config.pending_transactional_offsets_max;
        if pending.saturating_add(records.len()) > limit {
            warn!(
                partition = self.partition,
                group = group_id,
                pending,
                offsets = records.len(),
                limit,
                "transactional offset commit refused: too many offsets pending in transactions"
            );
            return all_failed(ResponseError::CoordinatorNotAvailable);
        }
        match self
            .log
            .append_batch(self.partition, &records, Some(producer), now_ms)
        {
            Ok(base_offset) => {
                for (offset, record) in (base_offset..).zip(&records) {
                    self.replay(offset, Some(producer.producer_id), record, now_ms);
                }
                debug!(
                    group = group_id,
                    producer_id = producer.producer_id,
                    producer_epoch = producer.producer_epoch,
                    offsets = records.len(),
                    "transactional offsets pending"
                );
                response
            }
            Err(err) => {
                warn!(group = group_id, producer_id = producer.producer_id, error = %err,
                    "transactional offset commit could not be written");
                all_failed(offset_commit_append_error(&err))
            }
        }
    }

    /// Committed offsets of `topics` (`None`: every committed offset of the group). An unknown
    /// group has no offsets: -1 for requested partitions, nothing otherwise. Offsets pending in
    /// transactions are never returned; with `require_stable` a partition that has one answers
    /// UNSTABLE_OFFSET_COMMIT instead of its committed offset (Kafka's `fetchOffsets` and
    /// `fetchAllOffsets`: per partition, and for all offsets only partitions with a committed
    /// offset are listed).
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        topics: Option<&[(String, Vec<i32>)]>,
        require_stable: bool,
    ) -> Vec<(String, Vec<FetchedOffset>)> {
        let known = self.consumer_groups.contains_key(group_id)
            || matches!(
                self.groups.group(group_id),
                Some(Group::Classic(g)) if !g.is_in_state(ClassicGroupState::Dead)
            );
        let fetched = |offset: Option<&OffsetAndMetadata>, topic: &str, partition: i32| {
            if require_stable && self.offsets.has_pending(group_id, topic, partition) {
                return FetchedOffset::none(partition, Some(ResponseError::UnstableOffsetCommit));
            }
            match offset {
                Some(o) => FetchedOffset {
                    partition,
                    committed_offset: o.committed_offset,
                    leader_epoch: o.leader_epoch.unwrap_or(-1),
                    metadata: o.metadata.clone(),
                    error: None,
                },
                None => FetchedOffset::none(partition, None),
            }
        };
        match topics {
            Some(topics) => topics
                .iter()
                .map(|(topic, partitions)| {
                    let offsets = partitions
                        .iter()
                        .map(|p| {
                            let offset = known
                                .then(|| self.offsets.get(group_id, topic, *p))
                                .flatten();
                            fetched(offset, topic, *p)
                        })
                        .collect();
                    (topic.clone(), offsets)
                })
                .collect(),
            None if !known => Vec::new(),
            None => self
                .offsets
                .group_offsets(group_id)
                .map(|topics| {
                    topics
                        .iter()
                        .map(|(topic, partitions)| {
                            let offsets = partitions
                                .iter()
                                .map(|(p, offset)| fetched(Some(offset), topic, *p))
                                .collect();
                            (topic.clone(), offsets)
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Kafka's `OffsetMetadataManager.deleteOffsets`: per topic, GROUP_SUBSCRIBED_TO_TOPIC
    /// while the group consumes it, otherwise tombstones for the committed partitions.
    #[allow(clippy::type_complexity)]
    pub fn delete_offsets(
        &mut self,
        group_id: &str,
        topics: &[(String, Vec<i32>)],
        now_ms: i64,
    ) -> Result<Vec<(String, Vec<(i32, Option<ResponseError>)>)>, ResponseError> {
        let Some(Group::Classic(group)) = self.groups.group(group_id) else {
            return Err(ResponseError::GroupIdNotFound);
        };
        match group.state() {
            ClassicGroupState::Dead => return Err(ResponseError::GroupIdNotFound),
            ClassicGroupState::Stable
            | ClassicGroupState::PreparingRebalance
            | ClassicGroupState::CompletingRebalance
                if !group.uses_consumer_protocol() =>
            {
                return Err(ResponseError::NonEmptyGroup)
            }
            _ => {}
        }
        let mut records = Vec::new();
        let mut results = Vec::with_capacity(topics.len());
        for (topic, partitions) in topics {
            let subscribed = group.is_subscribed_to_topic(topic);
            let mut outcome = Vec::with_capacity(partitions.len());
            for partition in partitions {
                if subscribed {
                    outcome.push((*partition, Some(ResponseError::GroupSubscribedToTopic)));
                    continue;
                }
                // Also when only a transaction has an offset pending for the partition.
                if self.offsets.get(group_id, topic, *partition).is_some()
                    || self.offsets.has_pending(group_id, topic, *partition)
                {
                    records.push(CoordinatorRecord::OffsetCommit {
                        group: group_id.to_string(),
                        topic: topic.clone(),
                        partition: *partition,
                        value: None,
                    });
                }
                outcome.push((*partition, None));
            }
            results.push((topic.clone(), outcome));
        }
        if !records.is_empty() {
            self.log
                .append(self.partition, &records, now_ms)
                .map_err(|err| write_append_error(&err))?;
            for record in &records {
                self.apply_tombstone(record);
            }
        }
        Ok(results)
    }

    // ------------------------------------------------------------------------ admin

    /// Kafka's `GroupMetadataManager.describeGroups` for one group; `None` if unknown.
    pub fn describe_group(&self, group_id: &str) -> Option<DescribedGroup> {
        let Group::Classic(group) = self.groups.group(group_id)?;
        let stable_protocol = group
            .is_in_state(ClassicGroupState::Stable)
            .then(|| group.protocol_name().unwrap_or_default());
        let members = group
            .members()
            .map(|m| {
                let described = DescribedGroupMember::default()
                    .with_member_id(StrBytes::from_string(m.member_id.clone()))
                    .with_group_instance_id(m.group_instance_id.clone().map(StrBytes::from_string))
                    .with_client_id(StrBytes::from_string(m.client_id.clone()))
                    .with_client_host(StrBytes::from_string(m.client_host.clone()));
                match stable_protocol {
                    // Metadata and assignment only once they are settled.
                    Some(protocol) => described
                        .with_member_metadata(m.metadata(protocol).cloned().unwrap_or_default())
                        .with_member_assignment(m.assignment.clone()),
                    None => described,
                }
            })
            .collect();
        Some(
            DescribedGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(group_id.to_string())))
                .with_group_state(StrBytes::from_static_str(group.state().name()))
                .with_protocol_type(StrBytes::from_string(
                    group.protocol_type().unwrap_or_default().to_string(),
                ))
                .with_protocol_data(StrBytes::from_string(
                    stable_protocol.unwrap_or_default().to_string(),
                ))
                .with_members(members),
        )
    }

    /// Groups matching the (lower-case) state and type filters; empty filters match all.
    pub fn list_groups(
        &self,
        states: &HashSet<String>,
        types: &HashSet<String>,
    ) -> Vec<ListedGroup> {
        self.groups
            .groups()
            .filter(|(_, group)| {
                (states.is_empty() || states.contains(&group.state_name().to_ascii_lowercase()))
                    && (types.is_empty() || types.contains(group.type_name()))
            })
            .filter(|(group_id, _)| !self.consumer_groups.contains_key(*group_id))
            .map(|(group_id, group)| {
                ListedGroup::default()
                    .with_group_id(GroupId(StrBytes::from_string(group_id.clone())))
                    .with_protocol_type(StrBytes::from_string(group.protocol_type().to_string()))
                    .with_group_state(StrBytes::from_static_str(group.state_name()))
                    .with_group_type(StrBytes::from_static_str(group.type_name()))
            })
            .chain(self.list_consumer_groups(states, types))
            .collect()
    }

    /// Kafka's `GroupCoordinatorShard.deleteGroups`: Empty groups only; tombstones for their
    /// offsets and metadata, written in one batch.
    pub fn delete_groups(
        &mut self,
        group_ids: &[String],
        now_ms: i64,
    ) -> Vec<(String, Option<ResponseError>)> {
        let mut records = Vec::new();
        let mut results: Vec<(String, Option<ResponseError>)> = Vec::with_capacity(group_ids.len());
        let mut deleted = Vec::new();
        for group_id in group_ids {
            if let Some(group) = self.consumer_groups.get(group_id) {
                // KIP-848 membership is not persisted: deleting is dropping it and its offsets.
                let validation = if group.members.is_empty() {
                    Ok(())
                } else {
                    Err(ResponseError::NonEmptyGroup)
                };
                if validation.is_ok() && !deleted.contains(group_id) {
                    self.offsets.delete_all_offsets(group_id, &mut records);
                    deleted.push(group_id.clone());
                    self.consumer_groups.remove(group_id);
                }
                results.push((group_id.clone(), validation.err()));
                continue;
            }
            let validation = match self.groups.group(group_id) {
                None => Err(ResponseError::GroupIdNotFound),
                Some(Group::Classic(g)) => match g.state() {
                    ClassicGroupState::Dead => Err(ResponseError::GroupIdNotFound),
                    ClassicGroupState::Empty => Ok(()),
                    _ => Err(ResponseError::NonEmptyGroup),
                },
            };
            if validation.is_ok() && !deleted.contains(group_id) {
                self.offsets.delete_all_offsets(group_id, &mut records);
                records.push(CoordinatorRecord::GroupMetadata {
                    group: group_id.clone(),
                    value: None,
                });
                deleted.push(group_id.clone());
            }
            results.push((group_id.clone(), validation.err()));
        }
        if records.is_empty() {
            return results;
        }
        if let Err(err) = self.log.append(self.partition, &records, now_ms) {
            warn!(groups = ?deleted, error = %err, "group deletion could not be written");
            let error = write_append_error(&err);
            for (group_id, result) in &mut results {
                if deleted.contains(group_id) {
                    *result = Some(error);
                }
            }
            return results;
        }
        for record in &records {
            self.apply_tombstone(record);
        }
        info!(groups = ?deleted, "deleted groups");
        results
    }

    /// Tombstones for the offsets of a deleted topic (Kafka's `onPartitionsDeleted`).
    pub fn on_topic_deleted(&mut self, topic: &str, now_ms: i64) {
        let mut records = Vec::new();
        self.offsets.on_topic_deleted(topic, &mut records);
        if records.is_empty() {
            return;
        }
        match self.log.append(self.partition, &records, now_ms) {
            Ok(()) => {
                for record in &records {
                    self.apply_tombstone(record);
                }
            }
            Err(err) => {
                warn!(topic, error = %err, "could not delete the offsets of a deleted topic")
            }
        }
    }

    fn apply_tombstone(&mut self, record: &CoordinatorRecord) {
        match record {
            CoordinatorRecord::OffsetCommit {
                group,
                topic,
                partition,
                value: None,
            } => self
                .offsets
                .replay(-1, None, group, topic, *partition, None),
            CoordinatorRecord::GroupMetadata { group, value: None } => {
                self.groups.remove_group(group)
            }
            other => warn!(?other, "not a tombstone"),
        }
    }

    /// Kafka's `cleanupGroupMetadata`: expired offsets go, and so do Empty groups left without
    /// offsets. Runs every `offsets.retention.check.interval.ms`.
    fn cleanup_group_metadata(&mut self, now_ms: i64) {
        let retention_ms = self.config.offsets_retention_ms;
        let mut records = Vec::new();
        for group_id in self.groups.group_ids() {
            let Some(Group::Classic(group)) = self.groups.group(&group_id) else {
                continue;
            };
            let all_expired = self.offsets.cleanup_expired_offsets(
                &group_id,
                offset_expiration(group),
                |topic| group.is_subscribed_to_topic(topic),
                now_ms,
                retention_ms,
                &mut records,
            );
            // A group with a member id handed out (MEMBER_ID_REQUIRED) is about to be joined.
            if all_expired
                && group.is_in_state(ClassicGroupState::Empty)
                && group.num_pending_join_members() == 0
            {
                records.push(CoordinatorRecord::GroupMetadata {
                    group: group_id,
                    value: None,
                });
            }
        }
        // KIP-848 groups (Kafka's `ConsumerGroup.offsetExpirationCondition`): offsets of topics
        // no member subscribes to expire from their commit; an empty group whose offsets are
        // all gone is dropped (its membership was never persisted, so no tombstone).
        let mut drop_consumer_groups = Vec::new();
        for (group_id, group) in &self.consumer_groups {
            let subscribed: HashSet<&str> = group
                .members
                .values()
                .flat_map(|m| m.subscribed_topic_names.iter().map(String::as_str))
                .collect();
            let all_expired = self.offsets.cleanup_expired_offsets(
                group_id,
                Some(OffsetExpiration::SinceCommit),
                |topic| subscribed.contains(topic),
                now_ms,
                retention_ms,
                &mut records,
            );
            if all_expired && group.members.is_empty() {
                drop_consumer_groups.push(group_id.clone());
            }
        }
        for group_id in drop_consumer_groups {
            self.consumer_groups.remove(&group_id);
        }
        self.groups.timer_mut().schedule(
            TimerKey::GroupMetadataExpiration,
            now_ms.saturating_add(self.config.offsets_retention_check_interval_ms),
            TimerTask::CleanupGroupMetadata,
        );
        if records.is_empty() {
            return;
        }
        match self.log.append(self.partition, &records, now_ms) {
            Ok(()) => {
                for record in &records {
                    self.apply_tombstone(record);
                }
                info!(
                    partition = self.partition,
                    tombstones = records.len(),
                    "expired offsets and empty groups"
                );
            }
            Err(err) => {
                warn!(partition = self.partition, error = %err, "offset expiration could not be written")
            }
        }
    }
}
