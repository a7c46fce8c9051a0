//! The classic group protocol of one coordinator shard (Kafka's `GroupMetadataManager`):
//! JoinGroup, SyncGroup, Heartbeat, LeaveGroup, DescribeGroups, ListGroups, the timers that
//! drive rebalances and sessions, and the GroupMetadata records of completed rebalances.
//!
//! The functions follow Kafka's names and order closely (`classicGroupJoinExistingMember`
//! becomes [`join_existing_member`], ...) so that the Java code is a guide to this one.
//!
//! JoinGroup and SyncGroup are long polls: the handler gets a `oneshot::Receiver`, and the
//! sender is either answered at once or parked in the member until the join phase completes
//! (all members rejoined, or the rebalance timeout passed) or the leader's assignment is stored.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use fjord_protocol::kafka_protocol::messages::leave_group_response::MemberResponse;
use fjord_protocol::kafka_protocol::messages::{
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::ResponseError;
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use super::classic_group::{ClassicGroup, ClassicGroupMember, ClassicGroupState, Protocol};
use super::persistence::{CoordinatorRecord, GroupMetadataValue};
use super::timer::{Timer, TimerKey, TimerTask};
use super::{
    AppendError, CoordinatorLog, GroupCoordinatorConfig, GroupsCount, RequestContext,
    MEMBER_ASSIGNMENT_BYTES_MAX,
};

/// The group types a coordinator hosts. Kafka's layout: KIP-848 consumer groups
/// (ConsumerGroupHeartbeat) become a `Consumer(ConsumerGroup)` variant beside `Classic`, with
/// their own records (key versions 3 and up in `persistence`), and every match on `Group`
/// tells where they need handling.
#[derive(Debug)]
pub enum Group {
    Classic(ClassicGroup),
}

impl Group {
    /// Kafka's `Group.GroupType` name, as ListGroups v5 reports it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Group::Classic(_) => "classic",
        }
    }

    pub fn state_name(&self) -> &'static str {
        match self {
            Group::Classic(group) => group.state().name(),
        }
    }

    pub fn protocol_type(&self) -> &str {
        match self {
            Group::Classic(group) => group.protocol_type().unwrap_or_default(),
        }
    }

    /// Empty (no members): offsets may be deleted and the group removed.
    pub fn is_empty(&self) -> bool {
        match self {
            Group::Classic(group) => group.is_in_state(ClassicGroupState::Empty),
        }
    }
}

/// A JoinGroup request, decoded from the wire into owned values.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub group_id: String,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub protocol_type: String,
    pub protocols: Vec<Protocol>,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub reason: Option<String>,
}

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn join_error(member_id: &str, error: ResponseError) -> JoinGroupResponse {
    JoinGroupResponse::default()
        .with_error_code(error.code())
        .with_member_id(sb(member_id))
}

fn sync_error(error: ResponseError) -> SyncGroupResponse {
    SyncGroupResponse::default().with_error_code(error.code())
}

/// Kafka's `appendGroupMetadataErrorToResponseError`.
fn group_metadata_append_error(error: &AppendError) -> ResponseError {
    match error {
        AppendError::TooLarge { .. } => ResponseError::UnknownServerError,
        AppendError::Unavailable(_) => ResponseError::CoordinatorNotAvailable,
        AppendError::NotLeader(_) => ResponseError::NotCoordinator,
        AppendError::Storage(_) => ResponseError::NotCoordinator,
        // Group metadata is never written transactionally, so never fenced.
        AppendError::Rejected(_) => ResponseError::UnknownServerError,
    }
}

/// What the protocol functions need besides the group: configuration, the shard's timer and
/// log, and the time. Split from the groups map so both can be borrowed at once.
struct Ops<'a> {
    config: &'a GroupCoordinatorConfig,
    timer: &'a mut Timer,
    log: &'a dyn CoordinatorLog,
    partition: i32,
    now_ms: i64,
}

impl Ops<'_> {
    fn append(&self, records: &[CoordinatorRecord]) -> Result<(), AppendError> {
        self.log.append(self.partition, records, self.now_ms)
    }

    fn heartbeat_key(group: &ClassicGroup, member_id: &str) -> TimerKey {
        TimerKey::Heartbeat {
            group_id: group.group_id().to_string(),
            member_id: member_id.to_string(),
        }
    }

    fn reschedule_heartbeat(&mut self, group: &ClassicGroup, member_id: &str, timeout_ms: i64) {
        self.timer.schedule(
            Self::heartbeat_key(group, member_id),
            self.now_ms.saturating_add(timeout_ms),
            TimerTask::ExpireHeartbeat,
        );
    }

    /// The member's session restarts: it must heartbeat again within its session timeout.
    fn reschedule_member_heartbeat(&mut self, group: &ClassicGroup, member_id: &str) {
        if let Some(member) = group.member(member_id) {
            let timeout = i64::from(member.session_timeout_ms);
            self.reschedule_heartbeat(group, member_id, timeout);
        }
    }

    fn cancel_heartbeat(&mut self, group: &ClassicGroup, member_id: &str) {
        self.timer.cancel(&Self::heartbeat_key(group, member_id));
    }

    fn join_key(group: &ClassicGroup) -> TimerKey {
        TimerKey::Join {
            group_id: group.group_id().to_string(),
        }
    }

    fn sync_key(group: &ClassicGroup) -> TimerKey {
        TimerKey::Sync {
            group_id: group.group_id().to_string(),
        }
    }
}

pub struct GroupMetadataManager {
    config: Arc<GroupCoordinatorConfig>,
    log: Arc<dyn CoordinatorLog>,
    /// The `__consumer_offsets` partition this shard owns.
    partition: i32,
    groups: HashMap<String, Group>,
    timer: Timer,
    groups_count: Arc<GroupsCount>,
}

impl GroupMetadataManager {
    pub fn new(
        config: Arc<GroupCoordinatorConfig>,
        log: Arc<dyn CoordinatorLog>,
        partition: i32,
        groups_count: Arc<GroupsCount>,
    ) -> Self {
        Self {
            config,
            log,
            partition,
            groups: HashMap::new(),
            timer: Timer::default(),
            groups_count,
        }
    }

    pub fn config(&self) -> &GroupCoordinatorConfig {
        &self.config
    }

    pub fn timer_mut(&mut self) -> &mut Timer {
        &mut self.timer
    }

    pub fn next_deadline_ms(&self) -> Option<i64> {
        self.timer.next_deadline_ms()
    }

    pub fn group(&self, group_id: &str) -> Option<&Group> {
        self.groups.get(group_id)
    }

    pub fn classic_group(&self, group_id: &str) -> Option<&ClassicGroup> {
        match self.groups.get(group_id) {
            Some(Group::Classic(group)) => Some(group),
            None => None,
        }
    }

    pub fn groups(&self) -> impl Iterator<Item = (&String, &Group)> {
        self.groups.iter()
    }

    pub fn group_ids(&self) -> Vec<String> {
        self.groups.keys().cloned().collect()
    }

    fn split(&mut self, now_ms: i64) -> (&mut HashMap<String, Group>, Ops<'_>) {
        (
            &mut self.groups,
            Ops {
                config: &self.config,
                timer: &mut self.timer,
                log: self.log.as_ref(),
                partition: self.partition,
                now_ms,
            },
        )
    }

    /// The group, created Empty if missing and allowed (bounded by the broker-wide group
    /// count). Kafka's `getOrMaybeCreateClassicGroup`.
    pub fn get_or_create_classic_group(
        &mut self,
        group_id: &str,
        now_ms: i64,
    ) -> Result<&mut ClassicGroup, ResponseError> {
        if !self.groups.contains_key(group_id) {
            if !self.groups_count.try_add() {
                warn!(
                    group = group_id,
                    groups_max = self.groups_count.max(),
                    "refusing a new group: the broker hosts the most groups it may"
                );
                return Err(ResponseError::GroupMaxSizeReached);
            }
            debug!(group = group_id, "created classic group");
            self.groups.insert(
                group_id.to_string(),
                Group::Classic(ClassicGroup::new(group_id.to_string(), now_ms)),
            );
        }
        match self.groups.get_mut(group_id) {
            Some(Group::Classic(group)) => Ok(group),
            None => Err(ResponseError::GroupIdNotFound),
        }
    }

    /// Removes a group (DeleteGroups, expiration, tombstone replay): answers anything parked
    /// and drops its timers.
    pub fn remove_group(&mut self, group_id: &str) {
        if let Some(group) = self.groups.remove(group_id) {
            self.groups_count.remove();
            match group {
                Group::Classic(mut group) => {
                    group.complete_all_futures(ResponseError::CoordinatorNotAvailable);
                    for member_id in group.member_ids() {
                        self.timer.cancel(&Ops::heartbeat_key(&group, &member_id));
                    }
                    self.timer.cancel(&Ops::join_key(&group));
                    self.timer.cancel(&Ops::sync_key(&group));
                }
            }
        }
    }

    /// Answers every parked request with `error` (broker shutdown: Kafka answers
    /// NOT_COORDINATOR when a shard is unloaded, and clients look for the coordinator again).
    pub fn complete_all_futures(&mut self, error: ResponseError) {
        for group in self.groups.values_mut() {
            match group {
                Group::Classic(group) => group.complete_all_futures(error),
            }
        }
    }

    /// The shard's partition moved to another coordinator: parked requests get NOT_COORDINATOR
    /// and every group leaves the broker-wide count (the shard is then dropped).
    pub fn unload(&mut self) {
        self.complete_all_futures(ResponseError::NotCoordinator);
        for _ in self.groups.drain() {
            self.groups_count.remove();
        }
    }

    // ------------------------------------------------------------------------ replay

    /// Applies a GroupMetadata record read back from the log.
    pub fn replay_group_metadata(&mut self, group_id: &str, value: Option<&GroupMetadataValue>) {
        match value {
            Some(value) => {
                if !self.groups.contains_key(group_id) {
                    self.groups_count.add_unbounded();
                }
                self.groups.insert(
                    group_id.to_string(),
                    Group::Classic(ClassicGroup::from_record(group_id.to_string(), value)),
                );
            }
            None => {
                if self.groups.remove(group_id).is_some() {
                    self.groups_count.remove();
                }
            }
        }
    }

    /// An offset was replayed for a group with no metadata: a simple (standalone) group.
    pub fn ensure_group_for_replay(&mut self, group_id: &str, now_ms: i64) {
        if !self.groups.contains_key(group_id) {
            self.groups_count.add_unbounded();
            self.groups.insert(
                group_id.to_string(),
                Group::Classic(ClassicGroup::new(group_id.to_string(), now_ms)),
            );
        }
    }

    /// After the shard's log was replayed: every loaded member must heartbeat within its
    /// session timeout from now, and groups above `group.max.size` rebalance.
    pub fn on_loaded(&mut self, now_ms: i64) {
        let group_max_size = self.config.group_max_size;
        let (groups, mut ops) = self.split(now_ms);
        for group in groups.values_mut() {
            let Group::Classic(group) = group;
            for member_id in group.member_ids() {
                ops.reschedule_member_heartbeat(group, &member_id);
            }
            if group.num_members() > group_max_size {
                prepare_rebalance(&mut ops, group, "loaded group is above group.max.size");
            }
        }
    }

    // ------------------------------------------------------------------------ timers

    /// Runs one expired timer task.
    pub fn run_timer(&mut self, key: TimerKey, task: TimerTask, now_ms: i64) {
        let group_id = match &key {
            TimerKey::Heartbeat { group_id, .. }
            | TimerKey::Join { group_id }
            | TimerKey::Sync { group_id } => group_id.clone(),
            TimerKey::GroupMetadataExpiration => return,
        };
        let (groups, mut ops) = self.split(now_ms);
        let Some(Group::Classic(group)) = groups.get_mut(&group_id) else {
            debug!(group = %group_id, ?task, "timer for a group that no longer exists");
            return;
        };
        match (key, task) {
            (TimerKey::Heartbeat { member_id, .. }, TimerTask::ExpireHeartbeat) => {
                expire_heartbeat(&mut ops, group, &member_id)
            }
            (_, TimerTask::CompleteJoin) => complete_join(&mut ops, group),
            (
                _,
                TimerTask::InitialRebalance {
                    delay_ms,
                    remaining_ms,
                },
            ) => try_complete_initial_rebalance_else_schedule(
                &mut ops,
                group,
                delay_ms,
                remaining_ms,
            ),
            (_, TimerTask::ExpirePendingSync { generation_id }) => {
                expire_pending_sync(&mut ops, group, generation_id)
            }
            (key, task) => warn!(?key, ?task, "timer task does not match its key"),
        }
    }

    // ------------------------------------------------------------------------ JoinGroup

    /// Kafka's `classicGroupJoinToClassicGroup`. The answer comes on the returned receiver,
    /// at once or when the join phase completes.
    pub fn join_group(
        &mut self,
        ctx: &RequestContext,
        request: JoinRequest,
        now_ms: i64,
    ) -> oneshot::Receiver<JoinGroupResponse> {
        let (tx, rx) = oneshot::channel();
        let is_unknown_member = request.member_id.is_empty();
        let group_id = request.group_id.clone();
        let is_new_group = !self.groups.contains_key(&group_id);
        if is_new_group && !is_unknown_member {
            // A member id for a group that does not exist: the member must start over.
            let _ = tx.send(join_error(
                &request.member_id,
                ResponseError::UnknownMemberId,
            ));
            return rx;
        }
        if let Err(error) = self.get_or_create_classic_group(&request.group_id, now_ms) {
            let _ = tx.send(join_error("", error));
            return rx;
        }
        let (groups, mut ops) = self.split(now_ms);
        let Some(Group::Classic(group)) = groups.get_mut(&request.group_id) else {
            let _ = tx.send(join_error("", ResponseError::CoordinatorNotAvailable));
            return rx;
        };
        if !accept_joining_member(ops.config, group, &request.member_id) {
            group.remove(&request.member_id);
            ops.cancel_heartbeat(group, &request.member_id);
            info!(
                group = group.group_id(),
                group_max_size = ops.config.group_max_size,
                "refused a member: the group is full"
            );
            let _ = tx.send(join_error("", ResponseError::GroupMaxSizeReached));
        } else if is_unknown_member {
            join_new_member(&mut ops, ctx, request, group, tx);
        } else {
            join_existing_member(&mut ops, ctx, request, group, tx);
        }
        // A refused first join (bad protocol, full group) leaves nothing worth keeping: drop the
        // group at once, so failed joins cannot use up the broker's group count.
        let abandoned = matches!(groups.get(&group_id), Some(Group::Classic(g))
            if is_new_group && g.num_members() == 0 && g.num_pending_join_members() == 0);
        if abandoned {
            self.remove_group(&group_id);
        }
        rx
    }

    // ------------------------------------------------------------------------ SyncGroup

    /// Kafka's `classicGroupSync`. The leader's request stores the assignment and answers
    /// everyone; a follower's waits for the leader's unless the group is already Stable.
    pub fn sync_group(
        &mut self,
        request: &SyncGroupRequest,
        now_ms: i64,
    ) -> oneshot::Receiver<SyncGroupResponse> {
        let (tx, rx) = oneshot::channel();
        let group_id = request.group_id.as_str();
        let member_id = request.member_id.as_str();
        let (groups, mut ops) = self.split(now_ms);
        let group = match groups.get_mut(group_id) {
            Some(Group::Classic(group)) if !group.is_in_state(ClassicGroupState::Empty) => group,
            _ => {
                let _ = tx.send(sync_error(ResponseError::UnknownMemberId));
                return rx;
            }
        };
        if let Err(error) = validate_sync_group(group, request) {
            let _ = tx.send(sync_error(error));
            return rx;
        }
        match group.state() {
            ClassicGroupState::PreparingRebalance => {
                let _ = tx.send(sync_error(ResponseError::RebalanceInProgress));
            }
            ClassicGroupState::CompletingRebalance => {
                if let Some(member) = group.member_mut(member_id) {
                    member.set_awaiting_sync(tx);
                }
                remove_pending_sync_member(&mut ops, group, member_id);
                if group.is_leader(member_id) {
                    store_leader_assignment(&mut ops, group, request);
                }
            }
            ClassicGroupState::Stable => {
                remove_pending_sync_member(&mut ops, group, member_id);
                let assignment = group
                    .member(member_id)
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default();
                let _ = tx.send(
                    SyncGroupResponse::default()
                        .with_protocol_type(group.protocol_type().map(sb))
                        .with_protocol_name(group.protocol_name().map(sb))
                        .with_assignment(assignment),
                );
            }
            ClassicGroupState::Empty | ClassicGroupState::Dead => {
                let _ = tx.send(sync_error(ResponseError::CoordinatorNotAvailable));
            }
        }
        rx
    }

    // ------------------------------------------------------------------------ Heartbeat

    /// Kafka's `classicGroupHeartbeatToClassicGroup`.
    pub fn heartbeat(
        &mut self,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
        now_ms: i64,
    ) -> Result<(), ResponseError> {
        let (groups, mut ops) = self.split(now_ms);
        let Some(Group::Classic(group)) = groups.get_mut(group_id) else {
            return Err(ResponseError::UnknownMemberId);
        };
        if group.is_in_state(ClassicGroupState::Dead) {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        group.validate_member(member_id, group_instance_id, "heartbeat")?;
        if generation_id != group.generation_id() {
            return Err(ResponseError::IllegalGeneration);
        }
        match group.state() {
            ClassicGroupState::Empty | ClassicGroupState::Dead => {
                Err(ResponseError::UnknownMemberId)
            }
            ClassicGroupState::PreparingRebalance => {
                ops.reschedule_member_heartbeat(group, member_id);
                Err(ResponseError::RebalanceInProgress)
            }
            ClassicGroupState::CompletingRebalance | ClassicGroupState::Stable => {
                ops.reschedule_member_heartbeat(group, member_id);
                Ok(())
            }
        }
    }

    /// An offset commit from a member keeps its session alive while the group is Stable or
    /// rebalancing (Kafka does the same for the classic protocol).
    pub fn touch_member_session(&mut self, group_id: &str, member_id: &str, now_ms: i64) {
        let (groups, mut ops) = self.split(now_ms);
        if let Some(Group::Classic(group)) = groups.get_mut(group_id) {
            if group.is_in_state(ClassicGroupState::Stable)
                || group.is_in_state(ClassicGroupState::PreparingRebalance)
            {
                ops.reschedule_member_heartbeat(group, member_id);
            }
        }
    }

    // ------------------------------------------------------------------------ LeaveGroup

    /// Kafka's `classicGroupLeaveToClassicGroup`, in the v3+ shape (one result per member).
    pub fn leave_group(&mut self, request: &LeaveGroupRequest, now_ms: i64) -> LeaveGroupResponse {
        let (groups, mut ops) = self.split(now_ms);
        let Some(Group::Classic(group)) = groups.get_mut(request.group_id.as_str()) else {
            // Kafka: the group is not found, so no member of it is known.
            let members = request
                .members
                .iter()
                .map(|m| {
                    MemberResponse::default()
                        .with_member_id(m.member_id.clone())
                        .with_group_instance_id(m.group_instance_id.clone())
                        .with_error_code(ResponseError::UnknownMemberId.code())
                })
                .collect();
            return LeaveGroupResponse::default().with_members(members);
        };
        if group.is_in_state(ClassicGroupState::Dead) {
            return LeaveGroupResponse::default()
                .with_error_code(ResponseError::CoordinatorNotAvailable.code());
        }
        let mut responses = Vec::with_capacity(request.members.len());
        let mut left = Vec::new();
        for identity in &request.members {
            let member_id = identity.member_id.as_str();
            let instance_id = identity.group_instance_id.as_ref().map(|s| s.as_str());
            let reason = identity
                .reason
                .as_ref()
                .map_or("not provided", |r| r.as_str());
            let result = if member_id.is_empty() {
                // Administrative removal of a static member by its instance id.
                match instance_id
                    .and_then(|i| group.static_member_id(i))
                    .map(str::to_string)
                {
                    Some(current) => {
                        remove_current_member(&mut ops, group, &current, reason);
                        left.push(current);
                        Ok(())
                    }
                    None => Err(ResponseError::UnknownMemberId),
                }
            } else if group.is_pending_member(member_id) {
                group.remove(member_id);
                ops.cancel_heartbeat(group, member_id);
                info!(
                    group = group.group_id(),
                    member_id, reason, "pending member left the group"
                );
                left.push(member_id.to_string());
                Ok(())
            } else {
                group
                    .validate_member(member_id, instance_id, "leave-group")
                    .map(|()| {
                        remove_current_member(&mut ops, group, member_id, reason);
                        left.push(member_id.to_string());
                    })
            };
            responses.push(
                MemberResponse::default()
                    .with_member_id(identity.member_id.clone())
                    .with_group_instance_id(identity.group_instance_id.clone())
                    .with_error_code(result.err().map_or(0, |e| e.code())),
            );
        }
        if !left.is_empty() {
            let reason = format!("explicit LeaveGroup for members {left:?}");
            match group.state() {
                ClassicGroupState::Stable | ClassicGroupState::CompletingRebalance => {
                    maybe_prepare_rebalance_or_complete_join(&mut ops, group, &reason)
                }
                ClassicGroupState::PreparingRebalance => maybe_complete_join_phase(&mut ops, group),
                ClassicGroupState::Empty | ClassicGroupState::Dead => {}
            }
        }
        LeaveGroupResponse::default().with_members(responses)
    }
}

// ------------------------------------------------------------------------------ join paths

/// Kafka's `acceptJoiningMember`: bounded by `group.max.size`, counting members awaiting a
/// join response while rebalancing and all members otherwise.
fn accept_joining_member(
    config: &GroupCoordinatorConfig,
    group: &ClassicGroup,
    member_id: &str,
) -> bool {
    match group.state() {
        ClassicGroupState::Empty | ClassicGroupState::Dead => true,
        ClassicGroupState::PreparingRebalance => {
            group
                .member(member_id)
                .is_some_and(ClassicGroupMember::is_awaiting_join)
                || group.num_awaiting_join_response() < config.group_max_size
        }
        ClassicGroupState::CompletingRebalance | ClassicGroupState::Stable => {
            group.has_member(member_id) || group.num_members() < config.group_max_size
        }
    }
}

fn join_new_member(
    ops: &mut Ops<'_>,
    ctx: &RequestContext,
    request: JoinRequest,
    group: &mut ClassicGroup,
    tx: oneshot::Sender<JoinGroupResponse>,
) {
    if group.is_in_state(ClassicGroupState::Dead) {
        let _ = tx.send(join_error("", ResponseError::CoordinatorNotAvailable));
    } else if !group.supports_protocols(&request.protocol_type, &request.protocols) {
        let _ = tx.send(join_error("", ResponseError::InconsistentGroupProtocol));
    } else {
        let new_member_id =
            ClassicGroup::generate_member_id(&ctx.client_id, request.group_instance_id.as_deref());
        if request.group_instance_id.is_some() {
            join_new_static_member(ops, ctx, request, group, new_member_id, tx);
        } else {
            join_new_dynamic_member(ops, ctx, request, group, new_member_id, tx);
        }
    }
}

fn join_new_static_member(
    ops: &mut Ops<'_>,
    ctx: &RequestContext,
    request: JoinRequest,
    group: &mut ClassicGroup,
    new_member_id: String,
    tx: oneshot::Sender<JoinGroupResponse>,
) {
    let instance_id = request.group_instance_id.clone().unwrap_or_default();
    match group.static_member_id(&instance_id).map(str::to_string) {
        Some(existing) => {
            info!(group = group.group_id(), instance_id, old_member_id = %existing, %new_member_id,
                state = group.state().name(), "static member rejoined with an unknown member id; replacing the old one");
            update_static_member_then_rebalance_or_complete_join(
                ops,
                ctx,
                request,
                group,
                &existing,
                new_member_id,
                tx,
            );
        }
        None => {
            info!(group = group.group_id(), instance_id, member_id = %new_member_id,
                state = group.state().name(), "new static member joined");
            add_member_then_rebalance_or_complete_join(ops, ctx, request, group, new_member_id, tx);
        }
    }
}

fn join_new_dynamic_member(
    ops: &mut Ops<'_>,
    ctx: &RequestContext,
    request: JoinRequest,
    group: &mut ClassicGroup,
    new_member_id: String,
    tx: oneshot::Sender<JoinGroupResponse>,
) {
    if ctx.api_version >= 4 {
        // KIP-394: hand out a member id and have the client join again with it, so that a
        // client retrying a timed-out JoinGroup does not leave defunct members behind.
        if group.num_pending_join_members() >= ops.config.group_max_size {
            info!(
                group = group.group_id(),
                "refused a member id: too many pending members"
            );
            let _ = tx.send(join_error("", ResponseError::GroupMaxSizeReached));
            return;
        }
        debug!(group = group.group_id(), member_id = %new_member_id, "new dynamic member: MEMBER_ID_REQUIRED");
        group.add_pending_member(new_member_id.clone());
        ops.reschedule_heartbeat(group, &new_member_id, i64::from(request.session_timeout_ms));
        let _ = tx.send(join_error(&new_member_id, ResponseError::MemberIdRequired));
    } else {
        add_member_then_rebalance_or_complete_join(ops, ctx, request, group, new_member_id, tx);
    }
}

/// The response for a member that joins a generation already formed.
fn current_generation_response(
    group: &ClassicGroup,
    member_id: &str,
    include_members: bool,
) -> JoinGroupResponse {
    JoinGroupResponse::default()
        .with_members(if include_members {
            group.current_members_for_leader()
        } else {
            Vec::new()
        })
        .with_member_id(sb(member_id))
        .with_generation_id(group.generation_id())
        .with_protocol_name(group.protocol_name().map(sb))
        .with_protocol_type(group.protocol_type().map(sb))
        .with_leader(sb(group.leader_id().unwrap_or_default()))
}

fn join_existing_member(
    ops: &mut Ops<'_>,
    ctx: &RequestContext,
    request: JoinRequest,
    group: &mut ClassicGroup,
    tx: oneshot::Sender<JoinGroupResponse>,
) {
    let member_id = request.member_id.clone();
    if group.is_in_state(ClassicGroupState::Dead) {
        let _ = tx.send(join_error(
            &member_id,
            ResponseError::CoordinatorNotAvailable,
        ));
    } else if !group.supports_protocols(&request.protocol_type, &request.protocols) {
        let _ = tx.send(join_error(
            &member_id,
            ResponseError::InconsistentGroupProtocol,
        ));
    } else if group.is_pending_member(&member_id) {
        if request.group_instance_id.is_some() {
            // Pending member ids are only handed to dynamic members; a static instance cannot
            // claim one.
            let _ = tx.send(join_error(&member_id, ResponseError::UnknownMemberId));
            return;
        }
        debug!(group = group.group_id(), %member_id, "pending member joined with its member id");
        add_member_then_rebalance_or_complete_join(ops, ctx, request, group, member_id, tx);
    } else {
        if let Err(error) = group.validate_member(
            &member_id,
            request.group_instance_id.as_deref(),
            "join-group",
        ) {
            let _ = tx.send(join_error(&member_id, error));
            return;
        }
        let matches = group
            .member(&member_id)
            .is_some_and(|m| m.matches(&request.protocols));
        match group.state() {
            ClassicGroupState::PreparingRebalance => update_member_then_rebalance_or_complete_join(
                ops,
                request,
                group,
                tx,
                "member rejoined during PreparingRebalance",
            ),
            ClassicGroupState::CompletingRebalance if matches => {
                // The member lost its JoinGroup response: send this generation's again.
                let is_leader = group.is_leader(&member_id);
                let _ = tx.send(current_generation_response(group, &member_id, is_leader));
            }
            ClassicGroupState::CompletingRebalance => {
                update_member_then_rebalance_or_complete_join(
                    ops,
                    request,
                    group,
                    tx,
                    "member changed its metadata during CompletingRebalance",
                )
            }
            ClassicGroupState::Stable if group.is_leader(&member_id) => {
                // The leader rejoins to trigger a rebalance (e.g. topic metadata changed).
                update_member_then_rebalance_or_complete_join(
                    ops,
                    request,
                    group,
                    tx,
                    "leader rejoined a Stable group",
                )
            }
            ClassicGroupState::Stable if !matches => update_member_then_rebalance_or_complete_join(
                ops,
                request,
                group,
                tx,
                "member changed its metadata in a Stable group",
            ),
            ClassicGroupState::Stable => {
                let _ = tx.send(current_generation_response(group, &member_id, false));
            }
            ClassicGroupState::Empty | ClassicGroupState::Dead => {
                warn!(group = group.group_id(), %member_id, state = group.state().name(),
                    "rejoining member of a group in an unexpected state");
                let _ = tx.send(join_error(&member_id, ResponseError::UnknownMemberId));
            }
        }
    }
}

fn add_member_then_rebalance_or_complete_join(
    ops: &mut Ops<'_>,
    ctx: &RequestContext,
    request: JoinRequest,
    group: &mut ClassicGroup,
    member_id: String,
    tx: oneshot::Sender<JoinGroupResponse>,
) {
    let mut member = ClassicGroupMember::new(
        member_id.clone(),
        request.group_instance_id,
        ctx.client_id.clone(),
        ctx.client_host.clone(),
        request.rebalance_timeout_ms,
        request.session_timeout_ms,
        request.protocol_type,
        request.protocols,
    );
    member.is_new = true;
    if group.is_in_state(ClassicGroupState::PreparingRebalance)
        && group.previous_state() == ClassicGroupState::Empty
    {
        // Extend the initial rebalance delay: more members may be on their way.
        group.new_member_added = true;
    }
    group.add(member, Some(tx));
    // A new member cannot heartbeat while its JoinGroup is parked, and a disconnect is not
    // noticed: bound how long it can hold up the rebalance.
    ops.reschedule_heartbeat(group, &member_id, ops.config.new_member_join_timeout_ms);
    let reason = format!(
        "adding new member {member_id} (client reason: {})",
        request.reason.as_deref().unwrap_or("not provided")
    );
    maybe_prepare_rebalance_or_complete_join(ops, group, &reason);
}

fn update_member_then_rebalance_or_complete_join(
    ops: &mut Ops<'_>,
    request: JoinRequest,
    group: &mut ClassicGroup,
    tx: oneshot::Sender<JoinGroupResponse>,
    reason: &str,
) {
    group.update_member(
        &request.member_id,
        request.protocols,
        request.rebalance_timeout_ms,
        request.session_timeout_ms,
        Some(tx),
    );
    let reason = format!(
        "{reason}: {} (client reason: {})",
        request.member_id,
        request.reason.as_deref().unwrap_or("not provided")
    );
    maybe_prepare_rebalance_or_complete_join(ops, group, &reason);
}

/// KIP-345: a known static member restarted (new member id). In a Stable group whose
/// selected protocol stays the same, it takes over its old assignment without a rebalance.
fn update_static_member_then_rebalance_or_complete_join(
    ops: &mut Ops<'_>,
    ctx: &RequestContext,
    request: JoinRequest,
    group: &mut ClassicGroup,
    old_member_id: &str,
    new_member_id: String,
    tx: oneshot::Sender<JoinGroupResponse>,
) {
    let instance_id = request.group_instance_id.clone().unwrap_or_default();
    let current_leader = group.leader_id().map(str::to_string);
    if !group.replace_static_member(&instance_id, old_member_id, &new_member_id) {
        let _ = tx.send(join_error("", ResponseError::UnknownMemberId));
        return;
    }
    ops.cancel_heartbeat(group, old_member_id);
    ops.reschedule_member_heartbeat(group, &new_member_id);
    let Some(old) = group.member(&new_member_id) else {
        let _ = tx.send(join_error("", ResponseError::UnknownMemberId));
        return;
    };
    let (old_protocols, old_rebalance_timeout_ms, old_session_timeout_ms) = (
        old.protocols.clone(),
        old.rebalance_timeout_ms,
        old.session_timeout_ms,
    );
    group.update_member(
        &new_member_id,
        request.protocols.clone(),
        request.rebalance_timeout_ms,
        request.session_timeout_ms,
        Some(tx),
    );
    let reason = format!(
        "static member {new_member_id} (instance {instance_id}) rejoined (client reason: {})",
        request.reason.as_deref().unwrap_or("not provided")
    );
    match group.state() {
        ClassicGroupState::Stable => {
            if group.select_protocol().as_deref() != group.protocol_name() {
                maybe_prepare_rebalance_or_complete_join(ops, group, &reason);
                return;
            }
            info!(group = group.group_id(), instance_id, member_id = %new_member_id,
                "static member rejoined a Stable group without changing the protocol: no rebalance");
            let assignment = group.group_assignment();
            let record = CoordinatorRecord::GroupMetadata {
                group: group.group_id().to_string(),
                value: Some(group.to_record(Some(&assignment))),
            };
            match ops.append(&[record]) {
                Err(err) => {
                    warn!(group = group.group_id(), instance_id, error = %err,
                        "could not persist the static member's new member id; reverting");
                    let tx = group.take_join_future(&new_member_id);
                    group.update_member(
                        &new_member_id,
                        old_protocols,
                        old_rebalance_timeout_ms,
                        old_session_timeout_ms,
                        None,
                    );
                    group.replace_static_member(&instance_id, &new_member_id, old_member_id);
                    ops.cancel_heartbeat(group, &new_member_id);
                    ops.reschedule_member_heartbeat(group, old_member_id);
                    if let Some(tx) = tx {
                        let _ = tx.send(
                            JoinGroupResponse::default()
                                .with_error_code(group_metadata_append_error(&err).code())
                                .with_generation_id(group.generation_id())
                                .with_protocol_name(group.protocol_name().map(sb))
                                .with_protocol_type(group.protocol_type().map(sb))
                                .with_leader(sb(current_leader.as_deref().unwrap_or_default())),
                        );
                    }
                }
                Ok(()) if ctx.api_version >= 9 => {
                    // KIP-814: a restarted static leader learns it is leader but must not
                    // compute a new assignment.
                    let is_leader = group.is_leader(&new_member_id);
                    let response = current_generation_response(group, &new_member_id, is_leader)
                        .with_skip_assignment(is_leader);
                    group.complete_join_future(&new_member_id, response);
                }
                Ok(()) => {
                    // Before v9 the old leader id is returned, so a restarted leader acts as a
                    // follower and just syncs its old assignment.
                    let response = current_generation_response(group, &new_member_id, false)
                        .with_leader(sb(current_leader.as_deref().unwrap_or_default()));
                    group.complete_join_future(&new_member_id, response);
                }
            }
        }
        ClassicGroupState::CompletingRebalance => {
            // The leader may already have computed an assignment naming the old member id.
            prepare_rebalance(ops, group, &reason);
        }
        ClassicGroupState::PreparingRebalance => maybe_complete_join_phase(ops, group),
        ClassicGroupState::Empty | ClassicGroupState::Dead => {
            warn!(
                group = group.group_id(),
                instance_id,
                state = group.state().name(),
                "static member rejoined a group in an unexpected state"
            );
            group.complete_join_future(
                &new_member_id,
                join_error(&new_member_id, ResponseError::UnknownMemberId),
            );
        }
    }
}

// ------------------------------------------------------------------------------ rebalance

fn maybe_prepare_rebalance_or_complete_join(
    ops: &mut Ops<'_>,
    group: &mut ClassicGroup,
    reason: &str,
) {
    if group.can_rebalance() {
        prepare_rebalance(ops, group, reason);
    } else {
        maybe_complete_join_phase(ops, group);
    }
}

/// Starts a join phase. Members parked in SyncGroup are told to rejoin. An Empty group waits
/// `group.initial.rebalance.delay.ms` first, so that consumers starting together form one
/// generation instead of many.
fn prepare_rebalance(ops: &mut Ops<'_>, group: &mut ClassicGroup, reason: &str) {
    if group.is_in_state(ClassicGroupState::CompletingRebalance) {
        reset_and_propagate_assignment_with_error(ops, group, ResponseError::RebalanceInProgress);
    }
    remove_sync_expiration(ops, group);
    let is_initial_rebalance = group.is_in_state(ClassicGroupState::Empty);
    if is_initial_rebalance {
        let delay_ms = ops.config.initial_rebalance_delay_ms;
        let remaining_ms = group.rebalance_timeout_ms().saturating_sub(delay_ms).max(0);
        ops.timer.schedule(
            Ops::join_key(group),
            ops.now_ms.saturating_add(i64::from(delay_ms)),
            TimerTask::InitialRebalance {
                delay_ms,
                remaining_ms,
            },
        );
    }
    info!(
        group = group.group_id(),
        state = group.state().name(),
        generation = group.generation_id(),
        reason,
        "preparing to rebalance"
    );
    group.transition_to(ClassicGroupState::PreparingRebalance, ops.now_ms);
    if !is_initial_rebalance {
        maybe_complete_join_else_schedule(ops, group);
    }
}

fn maybe_complete_join_else_schedule(ops: &mut Ops<'_>, group: &mut ClassicGroup) {
    if group.has_all_members_joined() {
        complete_join(ops, group);
    } else {
        ops.timer.schedule(
            Ops::join_key(group),
            ops.now_ms
                .saturating_add(i64::from(group.rebalance_timeout_ms())),
            TimerTask::CompleteJoin,
        );
    }
}

/// Completes the join phase early once every member rejoined, except during the initial
/// rebalance delay.
fn maybe_complete_join_phase(ops: &mut Ops<'_>, group: &mut ClassicGroup) {
    if group.is_in_state(ClassicGroupState::PreparingRebalance)
        && group.previous_state() != ClassicGroupState::Empty
        && group.has_all_members_joined()
    {
        complete_join(ops, group);
    }
}

fn try_complete_initial_rebalance_else_schedule(
    ops: &mut Ops<'_>,
    group: &mut ClassicGroup,
    delay_ms: i32,
    remaining_ms: i32,
) {
    if group.new_member_added && remaining_ms != 0 {
        group.new_member_added = false;
        let new_delay_ms = ops.config.initial_rebalance_delay_ms.min(remaining_ms);
        let new_remaining_ms = remaining_ms.saturating_sub(delay_ms).max(0);
        ops.timer.schedule(
            Ops::join_key(group),
            ops.now_ms.saturating_add(i64::from(new_delay_ms)),
            TimerTask::InitialRebalance {
                delay_ms: new_delay_ms,
                remaining_ms: new_remaining_ms,
            },
        );
    } else {
        complete_join(ops, group);
    }
}

/// Kafka's `completeClassicGroupJoin`: dynamic members that did not rejoin are dropped, the
/// generation advances, and every parked JoinGroup is answered (the leader gets the members'
/// metadata). An Empty result is persisted at once; a non-empty one when the leader syncs.
fn complete_join(ops: &mut Ops<'_>, group: &mut ClassicGroup) {
    ops.timer.cancel(&Ops::join_key(group));
    let dropped: Vec<String> = group
        .not_yet_rejoined_members()
        .into_iter()
        .filter(|id| group.member(id).is_some_and(|m| !m.is_static()))
        .collect();
    for member_id in &dropped {
        group.remove(member_id);
        ops.cancel_heartbeat(group, member_id);
    }
    if !dropped.is_empty() {
        info!(group = group.group_id(), members = ?dropped, "removed dynamic members that did not rejoin");
    }
    if group.is_in_state(ClassicGroupState::Dead) {
        return;
    }
    if !group.maybe_elect_new_joined_leader() && group.num_members() > 0 {
        // Only static members that have not rejoined remain: wait for them (or for their
        // sessions to expire).
        warn!(
            group = group.group_id(),
            "could not complete the rebalance: no member rejoined"
        );
        ops.timer.schedule(
            Ops::join_key(group),
            ops.now_ms
                .saturating_add(i64::from(group.rebalance_timeout_ms())),
            TimerTask::CompleteJoin,
        );
        return;
    }
    group.init_next_generation(ops.now_ms);
    if group.is_in_state(ClassicGroupState::Empty) {
        info!(
            group = group.group_id(),
            generation = group.generation_id(),
            "group is now empty"
        );
        let record = CoordinatorRecord::GroupMetadata {
            group: group.group_id().to_string(),
            value: Some(group.to_record(None)),
        };
        if let Err(err) = ops.append(&[record]) {
            // Safe to lose: the previous generation, if replayed, has no live member.
            warn!(group = group.group_id(), error = %err, "could not persist the empty group");
        }
        return;
    }
    info!(
        group = group.group_id(),
        generation = group.generation_id(),
        members = group.num_members(),
        protocol = group.protocol_name().unwrap_or_default(),
        "join phase complete"
    );
    for member_id in group.member_ids() {
        let is_leader = group.is_leader(&member_id);
        let response = current_generation_response(group, &member_id, is_leader);
        group.complete_join_future(&member_id, response);
        ops.reschedule_member_heartbeat(group, &member_id);
        if let Some(member) = group.member_mut(&member_id) {
            member.is_new = false;
        }
        group.add_pending_sync_member(member_id);
    }
    ops.timer.schedule(
        Ops::sync_key(group),
        ops.now_ms
            .saturating_add(i64::from(group.rebalance_timeout_ms())),
        TimerTask::ExpirePendingSync {
            generation_id: group.generation_id(),
        },
    );
}

/// A session (or a pending member's join deadline) ran out.
fn expire_heartbeat(ops: &mut Ops<'_>, group: &mut ClassicGroup, member_id: &str) {
    if group.is_in_state(ClassicGroupState::Dead) {
        return;
    }
    if group.is_pending_member(member_id) {
        info!(
            group = group.group_id(),
            member_id, "pending member expired"
        );
        group.remove(member_id);
        if group.is_in_state(ClassicGroupState::PreparingRebalance)
            && group.has_all_members_joined()
        {
            complete_join(ops, group);
        }
        return;
    }
    let Some(member) = group.member(member_id) else {
        return;
    };
    if member.has_satisfied_heartbeat() {
        return;
    }
    info!(
        group = group.group_id(),
        member_id, "member session expired; removing it from the group"
    );
    remove_member_and_update_group(ops, group, member_id, "session expired");
}

fn remove_member_and_update_group(
    ops: &mut Ops<'_>,
    group: &mut ClassicGroup,
    member_id: &str,
    reason: &str,
) {
    // A new member may time out while its JoinGroup is parked: answer it so the client
    // rejoins if it is still alive.
    group.complete_join_future(member_id, join_error("", ResponseError::UnknownMemberId));
    group.remove(member_id);
    match group.state() {
        ClassicGroupState::Stable | ClassicGroupState::CompletingRebalance => {
            maybe_prepare_rebalance_or_complete_join(
                ops,
                group,
                &format!("removing member {member_id}: {reason}"),
            )
        }
        ClassicGroupState::PreparingRebalance if group.has_all_members_joined() => {
            complete_join(ops, group)
        }
        _ => {}
    }
}

/// The members of a new generation that never sent SyncGroup are removed and the group
/// rebalances without them.
fn expire_pending_sync(ops: &mut Ops<'_>, group: &mut ClassicGroup, generation_id: i32) {
    if generation_id != group.generation_id() {
        debug!(
            group = group.group_id(),
            generation_id,
            current = group.generation_id(),
            "stale sync expiration"
        );
        return;
    }
    if !matches!(
        group.state(),
        ClassicGroupState::CompletingRebalance | ClassicGroupState::Stable
    ) || group.has_received_sync_from_all_members()
    {
        return;
    }
    let pending = group.pending_sync_members();
    for member_id in &pending {
        group.remove(member_id);
        ops.cancel_heartbeat(group, member_id);
    }
    info!(group = group.group_id(), members = ?pending, "removed members that did not send SyncGroup in time");
    prepare_rebalance(ops, group, "members did not sync in time");
}

fn remove_current_member(
    ops: &mut Ops<'_>,
    group: &mut ClassicGroup,
    member_id: &str,
    reason: &str,
) {
    ops.cancel_heartbeat(group, member_id);
    info!(
        group = group.group_id(),
        member_id, reason, "member left the group"
    );
    group.complete_join_future(member_id, join_error("", ResponseError::UnknownMemberId));
    group.remove(member_id);
}

// ------------------------------------------------------------------------------ sync

fn validate_sync_group(
    group: &ClassicGroup,
    request: &SyncGroupRequest,
) -> Result<(), ResponseError> {
    if group.is_in_state(ClassicGroupState::Dead) {
        return Err(ResponseError::CoordinatorNotAvailable);
    }
    group.validate_member(
        request.member_id.as_str(),
        request.group_instance_id.as_ref().map(|s| s.as_str()),
        "sync-group",
    )?;
    if request.generation_id != group.generation_id() {
        return Err(ResponseError::IllegalGeneration);
    }
    let inconsistent = |requested: &Option<StrBytes>, current: Option<&str>| matches!((requested, current), (Some(r), Some(c)) if r.as_str() != c);
    if inconsistent(&request.protocol_type, group.protocol_type())
        || inconsistent(&request.protocol_name, group.protocol_name())
    {
        return Err(ResponseError::InconsistentGroupProtocol);
    }
    Ok(())
}

/// The leader's SyncGroup: persist the generation with its assignment, then answer every
/// parked SyncGroup and go Stable. Members the leader gave nothing get an empty assignment.
fn store_leader_assignment(
    ops: &mut Ops<'_>,
    group: &mut ClassicGroup,
    request: &SyncGroupRequest,
) {
    let mut assignment: HashMap<String, Bytes> = HashMap::with_capacity(group.num_members());
    for a in &request.assignments {
        if a.assignment.len() > MEMBER_ASSIGNMENT_BYTES_MAX {
            warn!(
                group = group.group_id(),
                member_id = a.member_id.as_str(),
                bytes = a.assignment.len(),
                limit_bytes = MEMBER_ASSIGNMENT_BYTES_MAX,
                "assignment too large"
            );
            reset_and_propagate_assignment_with_error(ops, group, ResponseError::InvalidRequest);
            return;
        }
        if group.has_member(a.member_id.as_str()) {
            assignment.insert(a.member_id.to_string(), a.assignment.clone());
        }
    }
    for member_id in group.member_ids() {
        if let std::collections::hash_map::Entry::Vacant(entry) = assignment.entry(member_id) {
            warn!(group = group.group_id(), member_id = %entry.key(), generation = group.generation_id(),
                "leader sent no assignment for a member; it gets an empty one");
            entry.insert(Bytes::new());
        }
    }
    info!(
        group = group.group_id(),
        generation = group.generation_id(),
        leader = request.member_id.as_str(),
        members = group.num_members(),
        "assignment received from the leader"
    );
    let record = CoordinatorRecord::GroupMetadata {
        group: group.group_id().to_string(),
        value: Some(group.to_record(Some(&assignment))),
    };
    match ops.append(&[record]) {
        Ok(()) => {
            set_and_propagate_assignment(ops, group, &assignment);
            group.transition_to(ClassicGroupState::Stable, ops.now_ms);
        }
        Err(err) => {
            let error = group_metadata_append_error(&err);
            warn!(group = group.group_id(), error = %err, "could not persist the group assignment");
            reset_and_propagate_assignment_with_error(ops, group, error);
            maybe_prepare_rebalance_or_complete_join(ops, group, "failed to store the assignment");
        }
    }
}

fn remove_pending_sync_member(ops: &mut Ops<'_>, group: &mut ClassicGroup, member_id: &str) {
    group.remove_pending_sync_member(member_id);
    let cancel = match group.state() {
        ClassicGroupState::Dead
        | ClassicGroupState::Empty
        | ClassicGroupState::PreparingRebalance => true,
        ClassicGroupState::CompletingRebalance | ClassicGroupState::Stable => {
            group.has_received_sync_from_all_members()
        }
    };
    if cancel {
        ops.timer.cancel(&Ops::sync_key(group));
    }
}

fn remove_sync_expiration(ops: &mut Ops<'_>, group: &mut ClassicGroup) {
    group.clear_pending_sync_members();
    ops.timer.cancel(&Ops::sync_key(group));
}

fn reset_and_propagate_assignment_with_error(
    ops: &mut Ops<'_>,
    group: &mut ClassicGroup,
    error: ResponseError,
) {
    for member_id in group.member_ids() {
        if let Some(member) = group.member_mut(&member_id) {
            member.assignment = Bytes::new();
        }
    }
    propagate_assignment(ops, group, Some(error));
}

fn set_and_propagate_assignment(
    ops: &mut Ops<'_>,
    group: &mut ClassicGroup,
    assignment: &HashMap<String, Bytes>,
) {
    for member_id in group.member_ids() {
        if let Some(member) = group.member_mut(&member_id) {
            member.assignment = assignment.get(&member_id).cloned().unwrap_or_default();
        }
    }
    propagate_assignment(ops, group, None);
}

fn propagate_assignment(ops: &mut Ops<'_>, group: &mut ClassicGroup, error: Option<ResponseError>) {
    let (protocol_type, protocol_name) = match error {
        None => (group.protocol_type().map(sb), group.protocol_name().map(sb)),
        Some(_) => (None, None),
    };
    for member_id in group.member_ids() {
        let assignment = group
            .member(&member_id)
            .map(|m| m.assignment.clone())
            .unwrap_or_default();
        let response = SyncGroupResponse::default()
            .with_error_code(error.map_or(0, |e| e.code()))
            .with_protocol_type(protocol_type.clone())
            .with_protocol_name(protocol_name.clone())
            .with_assignment(assignment);
        if group.complete_sync_future(&member_id, response) {
            // The session restarts once the member has its assignment: it could not heartbeat
            // while its SyncGroup was parked.
            ops.reschedule_member_heartbeat(group, &member_id);
        }
    }
}
