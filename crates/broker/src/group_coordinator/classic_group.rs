//! A classic consumer group (the JoinGroup/SyncGroup protocol): its members, state,
//! generation, selected protocol and leader (Kafka's `ClassicGroup` and `ClassicGroupMember`).
//!
//! This is the group's data and the invariants between its fields. The protocol itself (what a
//! JoinGroup does in each state, timers, persistence) is in `group_metadata_manager`.
//!
//! ```text
//!            +---------------------------------------------+
//!            v                                             |
//!  Empty --> PreparingRebalance --> CompletingRebalance --> Stable
//!    ^          |    ^                     |                 |
//!    |          |    +---------------------+-----------------+
//!    +----------+ (join phase ends with no member)
//!  any state --> Dead (group deleted)
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;
use fjord_protocol::kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use fjord_protocol::kafka_protocol::messages::{JoinGroupResponse, SyncGroupResponse};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::ResponseError;
use tokio::sync::oneshot;

use super::persistence::{GroupMetadataValue, MemberMetadata};

/// The protocol type of Kafka consumers; groups of this type have subscriptions the
/// coordinator can read (for OffsetDelete's GROUP_SUBSCRIBED_TO_TOPIC check).
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClassicGroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl ClassicGroupState {
    /// The name Kafka uses on the wire (DescribeGroups, ListGroups).
    pub fn name(self) -> &'static str {
        match self {
            ClassicGroupState::Empty => "Empty",
            ClassicGroupState::PreparingRebalance => "PreparingRebalance",
            ClassicGroupState::CompletingRebalance => "CompletingRebalance",
            ClassicGroupState::Stable => "Stable",
            ClassicGroupState::Dead => "Dead",
        }
    }

    fn valid_previous_states(self) -> &'static [ClassicGroupState] {
        use ClassicGroupState::*;
        match self {
            Empty => &[PreparingRebalance],
            PreparingRebalance => &[Stable, CompletingRebalance, Empty],
            CompletingRebalance => &[PreparingRebalance],
            Stable => &[CompletingRebalance],
            Dead => &[Stable, PreparingRebalance, CompletingRebalance, Empty, Dead],
        }
    }
}

/// One protocol a member supports (for consumers: an assignor name and its subscription).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protocol {
    pub name: String,
    pub metadata: Bytes,
}

pub struct ClassicGroupMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub protocol_type: String,
    /// In the member's order of preference.
    pub protocols: Vec<Protocol>,
    pub assignment: Bytes,
    /// The parked JoinGroup of this member, answered when the join phase completes.
    awaiting_join: Option<oneshot::Sender<JoinGroupResponse>>,
    /// The parked SyncGroup of this member, answered when the leader's assignment is stored.
    awaiting_sync: Option<oneshot::Sender<SyncGroupResponse>>,
    /// Joined during the current rebalance: its session cannot be kept alive by a parked
    /// JoinGroup (see `has_satisfied_heartbeat`).
    pub is_new: bool,
}

impl std::fmt::Debug for ClassicGroupMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClassicGroupMember")
            .field("member_id", &self.member_id)
            .field("group_instance_id", &self.group_instance_id)
            .field("awaiting_join", &self.awaiting_join.is_some())
            .field("awaiting_sync", &self.awaiting_sync.is_some())
            .finish_non_exhaustive()
    }
}

impl ClassicGroupMember {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        member_id: String,
        group_instance_id: Option<String>,
        client_id: String,
        client_host: String,
        rebalance_timeout_ms: i32,
        session_timeout_ms: i32,
        protocol_type: String,
        protocols: Vec<Protocol>,
    ) -> Self {
        Self {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            protocol_type,
            protocols,
            assignment: Bytes::new(),
            awaiting_join: None,
            awaiting_sync: None,
            is_new: false,
        }
    }

    pub fn is_awaiting_join(&self) -> bool {
        self.awaiting_join.is_some()
    }

    pub fn is_awaiting_sync(&self) -> bool {
        self.awaiting_sync.is_some()
    }

    pub fn is_static(&self) -> bool {
        self.group_instance_id.is_some()
    }

    pub fn metadata(&self, protocol_name: &str) -> Option<&Bytes> {
        self.protocols
            .iter()
            .find(|p| p.name == protocol_name)
            .map(|p| &p.metadata)
    }

    /// Whether an expired session should be forgiven: a member with a parked JoinGroup or
    /// SyncGroup cannot heartbeat (its connection is busy), unless it is new in this
    /// rebalance, in which case the join deadline applies.
    pub fn has_satisfied_heartbeat(&self) -> bool {
        !self.is_new && (self.is_awaiting_join() || self.is_awaiting_sync())
    }

    /// Same protocols, same metadata, same order.
    pub fn matches(&self, protocols: &[Protocol]) -> bool {
        self.protocols == protocols
    }

    /// The member's most preferred protocol among `candidates`.
    fn vote<'a>(&'a self, candidates: &HashSet<&str>) -> Option<&'a str> {
        self.protocols
            .iter()
            .map(|p| p.name.as_str())
            .find(|name| candidates.contains(name))
    }

    pub fn set_awaiting_sync(&mut self, sender: oneshot::Sender<SyncGroupResponse>) {
        self.awaiting_sync = Some(sender);
    }
}

pub struct ClassicGroup {
    group_id: String,
    state: ClassicGroupState,
    previous_state: ClassicGroupState,
    /// When the group entered its current state (offset expiration counts from it).
    state_timestamp_ms: Option<i64>,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    generation_id: i32,
    leader_id: Option<String>,
    /// Sorted by member id, so leader election and responses are deterministic.
    members: BTreeMap<String, ClassicGroupMember>,
    /// group.instance.id -> member id.
    static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED that have not joined yet (KIP-394).
    pending_join_members: HashSet<String>,
    /// Members of the current generation that have not sent SyncGroup yet.
    pending_sync_members: HashSet<String>,
    /// A new member joined during the initial rebalance delay, so the delay is extended.
    pub new_member_added: bool,
    /// Topics the members subscribe to, when their protocol is the consumer protocol and
    /// every subscription could be read.
    subscribed_topics: Option<HashSet<String>>,
}

impl std::fmt::Debug for ClassicGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClassicGroup")
            .field("group_id", &self.group_id)
            .field("state", &self.state)
            .field("generation_id", &self.generation_id)
            .field("leader_id", &self.leader_id)
            .field("members", &self.members.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl ClassicGroup {
    pub fn new(group_id: String, now_ms: i64) -> Self {
        Self {
            group_id,
            state: ClassicGroupState::Empty,
            previous_state: ClassicGroupState::Dead,
            state_timestamp_ms: Some(now_ms),
            protocol_type: None,
            protocol_name: None,
            generation_id: 0,
            leader_id: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending_join_members: HashSet::new(),
            pending_sync_members: HashSet::new(),
            new_member_added: false,
            subscribed_topics: None,
        }
    }

    /// Rebuilds a group from its last `GroupMetadataValue` (log replay): Stable with its
    /// members and their assignments, or Empty.
    pub fn from_record(group_id: String, value: &GroupMetadataValue) -> Self {
        let mut group = Self::new(group_id, value.current_state_timestamp_ms);
        group.state_timestamp_ms =
            (value.current_state_timestamp_ms >= 0).then_some(value.current_state_timestamp_ms);
        group.generation_id = value.generation;
        group.protocol_type =
            (!value.protocol_type.is_empty()).then(|| value.protocol_type.clone());
        group.protocol_name = value.protocol.clone();
        group.leader_id = value.leader.clone();
        let protocol_name = value.protocol.clone().unwrap_or_default();
        for m in &value.members {
            let mut member = ClassicGroupMember::new(
                m.member_id.clone(),
                m.group_instance_id.clone(),
                m.client_id.clone(),
                m.client_host.clone(),
                m.rebalance_timeout_ms,
                m.session_timeout_ms,
                value.protocol_type.clone(),
                vec![Protocol {
                    name: protocol_name.clone(),
                    metadata: m.subscription.clone(),
                }],
            );
            member.assignment = m.assignment.clone();
            if let Some(instance_id) = &m.group_instance_id {
                group
                    .static_members
                    .insert(instance_id.clone(), m.member_id.clone());
            }
            group.members.insert(m.member_id.clone(), member);
        }
        if group.members.is_empty() {
            group.state = ClassicGroupState::Empty;
            group.leader_id = None;
        } else {
            group.state = ClassicGroupState::Stable;
            if group
                .leader_id
                .as_ref()
                .is_none_or(|leader| !group.members.contains_key(leader))
            {
                group.leader_id = group.members.keys().next().cloned();
            }
        }
        group.subscribed_topics = group.compute_subscribed_topics();
        group
    }

    /// The record persisted after a rebalance: every member with its metadata for the selected
    /// protocol and its assignment from `assignment` (or its current one).
    pub fn to_record(&self, assignment: Option<&HashMap<String, Bytes>>) -> GroupMetadataValue {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        GroupMetadataValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation_id,
            protocol: self.protocol_name.clone(),
            leader: self.leader_id.clone(),
            current_state_timestamp_ms: self.state_timestamp_ms.unwrap_or(-1),
            members: self
                .members
                .values()
                .map(|m| MemberMetadata {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata(&protocol).cloned().unwrap_or_default(),
                    assignment: assignment
                        .and_then(|a| a.get(&m.member_id).cloned())
                        .unwrap_or_else(|| m.assignment.clone()),
                })
                .collect(),
        }
    }

    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    pub fn state(&self) -> ClassicGroupState {
        self.state
    }

    pub fn previous_state(&self) -> ClassicGroupState {
        self.previous_state
    }

    pub fn is_in_state(&self, state: ClassicGroupState) -> bool {
        self.state == state
    }

    pub fn state_timestamp_ms(&self) -> Option<i64> {
        self.state_timestamp_ms
    }

    pub fn generation_id(&self) -> i32 {
        self.generation_id
    }

    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    pub fn protocol_name(&self) -> Option<&str> {
        self.protocol_name.as_deref()
    }

    pub fn leader_id(&self) -> Option<&str> {
        self.leader_id.as_deref()
    }

    pub fn is_leader(&self, member_id: &str) -> bool {
        self.leader_id.as_deref() == Some(member_id)
    }

    pub fn has_member(&self, member_id: &str) -> bool {
        self.members.contains_key(member_id)
    }

    pub fn member(&self, member_id: &str) -> Option<&ClassicGroupMember> {
        self.members.get(member_id)
    }

    pub fn member_mut(&mut self, member_id: &str) -> Option<&mut ClassicGroupMember> {
        self.members.get_mut(member_id)
    }

    pub fn members(&self) -> impl Iterator<Item = &ClassicGroupMember> {
        self.members.values()
    }

    pub fn member_ids(&self) -> Vec<String> {
        self.members.keys().cloned().collect()
    }

    pub fn num_members(&self) -> usize {
        self.members.len()
    }

    /// A group no member uses the group management of: offsets committed with generation -1
    /// by a standalone consumer or an admin tool.
    pub fn is_simple_group(&self) -> bool {
        self.protocol_type.is_none()
            && self.members.is_empty()
            && self.pending_join_members.is_empty()
    }

    /// Adds a member (with its parked JoinGroup, if any). The first member fixes the group's
    /// protocol type and becomes leader if there is none.
    pub fn add(
        &mut self,
        mut member: ClassicGroupMember,
        join: Option<oneshot::Sender<JoinGroupResponse>>,
    ) {
        if let Some(instance_id) = &member.group_instance_id {
            self.static_members
                .insert(instance_id.clone(), member.member_id.clone());
        }
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if self.leader_id.is_none() {
            self.leader_id = Some(member.member_id.clone());
        }
        member.awaiting_join = join;
        self.pending_join_members.remove(&member.member_id);
        self.members.insert(member.member_id.clone(), member);
    }

    /// Removes a member (or a pending one). If it was the leader, another member takes over.
    /// A request of the member still parked is answered with UNKNOWN_MEMBER_ID.
    pub fn remove(&mut self, member_id: &str) {
        if let Some(mut removed) = self.members.remove(member_id) {
            if let Some(join) = removed.awaiting_join.take() {
                let _ = join.send(
                    JoinGroupResponse::default()
                        .with_error_code(ResponseError::UnknownMemberId.code()),
                );
            }
            if let Some(sync) = removed.awaiting_sync.take() {
                let _ = sync.send(
                    SyncGroupResponse::default()
                        .with_error_code(ResponseError::UnknownMemberId.code()),
                );
            }
            if let Some(instance_id) = &removed.group_instance_id {
                if self.static_members.get(instance_id).map(String::as_str) == Some(member_id) {
                    self.static_members.remove(instance_id);
                }
            }
        }
        if self.is_leader(member_id) {
            self.leader_id = self.members.keys().next().cloned();
        }
        self.pending_join_members.remove(member_id);
        self.pending_sync_members.remove(member_id);
    }

    /// At the end of a join phase: if the leader did not rejoin, a member that did becomes
    /// leader. False when no member rejoined.
    pub fn maybe_elect_new_joined_leader(&mut self) -> bool {
        let Some(leader) = self.leader_id.clone() else {
            return false;
        };
        if self
            .members
            .get(&leader)
            .is_some_and(ClassicGroupMember::is_awaiting_join)
        {
            return true;
        }
        match self.members.values().find(|m| m.is_awaiting_join()) {
            Some(member) => {
                tracing::info!(group = %self.group_id, old_leader = %leader, new_leader = %member.member_id,
                    "group leader did not rejoin before the rebalance timeout; elected a member that did");
                self.leader_id = Some(member.member_id.clone());
                true
            }
            None => false,
        }
    }

    /// A static member rejoined with a new member id: the old id is fenced (its parked requests
    /// get FENCED_INSTANCE_ID) and the new one takes its place, assignment and leadership.
    /// Returns false if `old_member_id` is not a member.
    pub fn replace_static_member(
        &mut self,
        group_instance_id: &str,
        old_member_id: &str,
        new_member_id: &str,
    ) -> bool {
        let Some(mut old) = self.members.remove(old_member_id) else {
            return false;
        };
        if let Some(join) = old.awaiting_join.take() {
            let _ = join.send(
                JoinGroupResponse::default()
                    .with_error_code(ResponseError::FencedInstanceId.code())
                    .with_member_id(StrBytes::from_string(old_member_id.to_string()))
                    .with_protocol_name(None),
            );
        }
        if let Some(sync) = old.awaiting_sync.take() {
            let _ = sync.send(
                SyncGroupResponse::default()
                    .with_error_code(ResponseError::FencedInstanceId.code()),
            );
        }
        old.member_id = new_member_id.to_string();
        old.is_new = false;
        self.members.insert(new_member_id.to_string(), old);
        if self.is_leader(old_member_id) {
            self.leader_id = Some(new_member_id.to_string());
        }
        if self.pending_sync_members.remove(old_member_id) {
            self.pending_sync_members.insert(new_member_id.to_string());
        }
        self.static_members
            .insert(group_instance_id.to_string(), new_member_id.to_string());
        true
    }

    pub fn is_pending_member(&self, member_id: &str) -> bool {
        self.pending_join_members.contains(member_id)
    }

    pub fn add_pending_member(&mut self, member_id: String) {
        self.pending_join_members.insert(member_id);
    }

    pub fn num_pending_join_members(&self) -> usize {
        self.pending_join_members.len()
    }

    pub fn add_pending_sync_member(&mut self, member_id: String) {
        if self.members.contains_key(&member_id) {
            self.pending_sync_members.insert(member_id);
        }
    }

    pub fn remove_pending_sync_member(&mut self, member_id: &str) {
        self.pending_sync_members.remove(member_id);
    }

    pub fn has_received_sync_from_all_members(&self) -> bool {
        self.pending_sync_members.is_empty()
    }

    pub fn pending_sync_members(&self) -> Vec<String> {
        self.pending_sync_members.iter().cloned().collect()
    }

    pub fn clear_pending_sync_members(&mut self) {
        self.pending_sync_members.clear();
    }

    pub fn has_static_member(&self, group_instance_id: &str) -> bool {
        self.static_members.contains_key(group_instance_id)
    }

    pub fn static_member_id(&self, group_instance_id: &str) -> Option<&str> {
        self.static_members
            .get(group_instance_id)
            .map(String::as_str)
    }

    /// Members whose JoinGroup is not parked.
    pub fn not_yet_rejoined_members(&self) -> Vec<String> {
        self.members
            .values()
            .filter(|m| !m.is_awaiting_join())
            .map(|m| m.member_id.clone())
            .collect()
    }

    pub fn num_awaiting_join_response(&self) -> usize {
        self.members
            .values()
            .filter(|m| m.is_awaiting_join())
            .count()
    }

    pub fn has_all_members_joined(&self) -> bool {
        self.members
            .values()
            .all(ClassicGroupMember::is_awaiting_join)
            && self.pending_join_members.is_empty()
    }

    /// The join phase lasts as long as the slowest member's rebalance timeout.
    pub fn rebalance_timeout_ms(&self) -> i32 {
        self.members
            .values()
            .map(|m| m.rebalance_timeout_ms)
            .max()
            .unwrap_or(0)
    }

    /// Kafka's member id: client id (or group instance id) and a random UUID.
    pub fn generate_member_id(client_id: &str, group_instance_id: Option<&str>) -> String {
        format!(
            "{}-{}",
            group_instance_id.unwrap_or(client_id),
            uuid::Uuid::new_v4()
        )
    }

    /// The member id must be known, and a static member's must be its instance's current one.
    pub fn validate_member(
        &self,
        member_id: &str,
        group_instance_id: Option<&str>,
        operation: &str,
    ) -> Result<(), ResponseError> {
        if let Some(instance_id) = group_instance_id {
            match self.static_member_id(instance_id) {
                None => return Err(ResponseError::UnknownMemberId),
                Some(existing) if existing != member_id => {
                    tracing::info!(group = %self.group_id, member_id, instance_id, existing, operation,
                        "fenced a static member that is not its instance's current member id");
                    return Err(ResponseError::FencedInstanceId);
                }
                Some(_) => {}
            }
        }
        if !self.has_member(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        Ok(())
    }

    pub fn can_rebalance(&self) -> bool {
        ClassicGroupState::PreparingRebalance
            .valid_previous_states()
            .contains(&self.state)
    }

    pub fn transition_to(&mut self, state: ClassicGroupState, now_ms: i64) {
        if !state.valid_previous_states().contains(&self.state) {
            // A coordinator bug, never client input: log it loudly rather than take the broker
            // down, and follow the transition anyway (Kafka throws IllegalStateException).
            tracing::error!(group = %self.group_id, from = self.state.name(), to = state.name(),
                "invalid classic group state transition");
        }
        self.previous_state = self.state;
        self.state = state;
        self.state_timestamp_ms = Some(now_ms);
    }

    /// Protocols every member supports.
    fn candidate_protocols(&self) -> HashSet<&str> {
        let mut members = self.members.values();
        let Some(first) = members.next() else {
            return HashSet::new();
        };
        let mut candidates: HashSet<&str> =
            first.protocols.iter().map(|p| p.name.as_str()).collect();
        for member in members {
            let names: HashSet<&str> = member.protocols.iter().map(|p| p.name.as_str()).collect();
            candidates.retain(|name| names.contains(name));
        }
        candidates
    }

    /// Kafka's protocol selection: each member votes for its most preferred protocol among those
    /// all members support; the most votes win (ties go to the smallest name, so the result does
    /// not depend on hash order).
    pub fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for member in self.members.values() {
            if let Some(name) = member.vote(&candidates) {
                *votes.entry(name).or_default() += 1;
            }
        }
        let mut best: Option<(&str, usize)> = None;
        for (name, count) in votes {
            if best.is_none_or(|(_, best_count)| count > best_count) {
                best = Some((name, count));
            }
        }
        best.map(|(name, _)| name.to_string())
    }

    /// Whether a member with this protocol type and these protocols can join: an empty group
    /// takes any non-empty type and protocol list; otherwise the type must match and at least
    /// one protocol must be supported by every current member.
    pub fn supports_protocols(&self, protocol_type: &str, protocols: &[Protocol]) -> bool {
        if self.is_in_state(ClassicGroupState::Empty) {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        let candidates = self.candidate_protocols();
        protocols
            .iter()
            .any(|p| candidates.contains(p.name.as_str()))
    }

    /// A JoinGroup from an existing member: new protocols and timeouts, and its JoinGroup is
    /// parked (`join` Some) or not.
    pub fn update_member(
        &mut self,
        member_id: &str,
        protocols: Vec<Protocol>,
        rebalance_timeout_ms: i32,
        session_timeout_ms: i32,
        join: Option<oneshot::Sender<JoinGroupResponse>>,
    ) {
        if let Some(member) = self.members.get_mut(member_id) {
            member.protocols = protocols;
            member.rebalance_timeout_ms = rebalance_timeout_ms;
            member.session_timeout_ms = session_timeout_ms;
            member.awaiting_join = join;
        }
    }

    /// Takes the member's parked JoinGroup out, to answer it elsewhere.
    pub fn take_join_future(
        &mut self,
        member_id: &str,
    ) -> Option<oneshot::Sender<JoinGroupResponse>> {
        self.members
            .get_mut(member_id)
            .and_then(|m| m.awaiting_join.take())
    }

    /// Answers the member's parked JoinGroup, if any.
    pub fn complete_join_future(&mut self, member_id: &str, response: JoinGroupResponse) -> bool {
        match self
            .members
            .get_mut(member_id)
            .and_then(|m| m.awaiting_join.take())
        {
            Some(sender) => {
                // The receiver is gone if the client's connection closed: nothing to do.
                let _ = sender.send(response);
                true
            }
            None => false,
        }
    }

    /// Answers the member's parked SyncGroup, if any.
    pub fn complete_sync_future(&mut self, member_id: &str, response: SyncGroupResponse) -> bool {
        match self
            .members
            .get_mut(member_id)
            .and_then(|m| m.awaiting_sync.take())
        {
            Some(sender) => {
                let _ = sender.send(response);
                true
            }
            None => false,
        }
    }

    /// Answers every parked JoinGroup and SyncGroup with `error` (group unloaded or deleted).
    pub fn complete_all_futures(&mut self, error: ResponseError) {
        for member in self.members.values_mut() {
            if let Some(join) = member.awaiting_join.take() {
                let _ = join.send(
                    JoinGroupResponse::default()
                        .with_error_code(error.code())
                        .with_member_id(StrBytes::from_string(member.member_id.clone())),
                );
            }
            if let Some(sync) = member.awaiting_sync.take() {
                let _ = sync.send(SyncGroupResponse::default().with_error_code(error.code()));
            }
        }
    }

    /// Ends a join phase: next generation, protocol selected, CompletingRebalance (or Empty
    /// without members).
    pub fn init_next_generation(&mut self, now_ms: i64) {
        self.generation_id = self.generation_id.wrapping_add(1);
        if self.members.is_empty() {
            self.protocol_name = None;
            self.transition_to(ClassicGroupState::Empty, now_ms);
        } else {
            self.protocol_name = self.select_protocol();
            self.transition_to(ClassicGroupState::CompletingRebalance, now_ms);
        }
        self.subscribed_topics = self.compute_subscribed_topics();
        self.clear_pending_sync_members();
    }

    /// What the leader gets in its JoinGroup response: every member's metadata for the selected
    /// protocol.
    pub fn current_members_for_leader(&self) -> Vec<JoinGroupResponseMember> {
        let protocol = self.protocol_name.as_deref().unwrap_or_default();
        self.members
            .values()
            .map(|m| {
                JoinGroupResponseMember::default()
                    .with_member_id(StrBytes::from_string(m.member_id.clone()))
                    .with_group_instance_id(m.group_instance_id.clone().map(StrBytes::from_string))
                    .with_metadata(m.metadata(protocol).cloned().unwrap_or_default())
            })
            .collect()
    }

    pub fn group_assignment(&self) -> HashMap<String, Bytes> {
        self.members
            .values()
            .map(|m| (m.member_id.clone(), m.assignment.clone()))
            .collect()
    }

    /// The topics the members subscribe to, if known (consumer protocol, readable metadata).
    pub fn subscribed_topics(&self) -> Option<&HashSet<String>> {
        self.subscribed_topics.as_ref()
    }

    pub fn uses_consumer_protocol(&self) -> bool {
        self.protocol_type.as_deref() == Some(CONSUMER_PROTOCOL_TYPE)
    }

    /// Whether offsets of `topic` may not be deleted while the group is active.
    pub fn is_subscribed_to_topic(&self, topic: &str) -> bool {
        match &self.subscribed_topics {
            Some(topics) => topics.contains(topic),
            // Unknown subscriptions: assume the worst for consumer groups.
            None => self.uses_consumer_protocol(),
        }
    }

    fn compute_subscribed_topics(&self) -> Option<HashSet<String>> {
        if !self.uses_consumer_protocol() {
            return None;
        }
        if self.members.is_empty() {
            return Some(HashSet::new());
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = HashSet::new();
        for member in self.members.values() {
            topics.extend(parse_subscription_topics(member.metadata(protocol)?)?);
        }
        Some(topics)
    }
}

/// The topics of a `ConsumerProtocolSubscription` (every version starts with the v0 layout:
/// version `i16`, then an array of `i16`-length strings). `None` if it cannot be read.
pub fn parse_subscription_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut buf = metadata;
    let mut take = |n: usize| -> Option<&[u8]> {
        if n > buf.len() {
            return None;
        }
        let (head, tail) = buf.split_at(n);
        buf = tail;
        Some(head)
    };
    let _version = take(2)?;
    let count = i32::from_be_bytes(take(4)?.try_into().ok()?);
    let count = usize::try_from(count).ok()?;
    let mut topics = Vec::with_capacity(count.min(metadata.len()));
    for _ in 0..count {
        let length = i16::from_be_bytes(take(2)?.try_into().ok()?);
        let length = usize::try_from(length).ok()?;
        topics.push(String::from_utf8(take(length)?.to_vec()).ok()?);
    }
    Some(topics)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn protocols(names: &[&str]) -> Vec<Protocol> {
        names
            .iter()
            .map(|n| Protocol {
                name: n.to_string(),
                metadata: Bytes::from_static(b"m"),
            })
            .collect()
    }

    fn member(id: &str, names: &[&str]) -> ClassicGroupMember {
        ClassicGroupMember::new(
            id.into(),
            None,
            "client".into(),
            "/127.0.0.1".into(),
            60_000,
            10_000,
            "consumer".into(),
            protocols(names),
        )
    }

    #[test]
    fn protocol_selection_is_by_vote_among_common_protocols() {
        let mut group = ClassicGroup::new("g".into(), 0);
        group.add(member("a", &["range", "roundrobin"]), None);
        group.add(member("b", &["roundrobin", "range"]), None);
        group.add(member("c", &["roundrobin", "sticky"]), None);
        // Only roundrobin is common to all three.
        assert_eq!(group.select_protocol().as_deref(), Some("roundrobin"));
        group.transition_to(ClassicGroupState::PreparingRebalance, 1);
        assert!(group.supports_protocols("consumer", &protocols(&["roundrobin"])));
        assert!(!group.supports_protocols("consumer", &protocols(&["range"])));
        assert!(!group.supports_protocols("connect", &protocols(&["roundrobin"])));
    }

    #[test]
    fn empty_group_accepts_any_non_empty_protocol() {
        let group = ClassicGroup::new("g".into(), 0);
        assert!(group.supports_protocols("consumer", &protocols(&["x"])));
        assert!(!group.supports_protocols("", &protocols(&["x"])));
        assert!(!group.supports_protocols("consumer", &[]));
    }

    #[test]
    fn removing_the_leader_elects_another_member() {
        let mut group = ClassicGroup::new("g".into(), 0);
        group.add(member("a", &["range"]), None);
        group.add(member("b", &["range"]), None);
        assert_eq!(group.leader_id(), Some("a"));
        group.remove("a");
        assert_eq!(group.leader_id(), Some("b"));
        group.remove("b");
        assert_eq!(group.leader_id(), None);
    }

    #[test]
    fn static_member_replacement_fences_the_old_member_id() {
        let mut group = ClassicGroup::new("g".into(), 0);
        let mut m = member("old", &["range"]);
        m.group_instance_id = Some("i1".into());
        let (tx, mut rx) = oneshot::channel();
        group.add(m, Some(tx));
        assert!(group.replace_static_member("i1", "old", "new"));
        assert_eq!(
            rx.try_recv().unwrap().error_code,
            ResponseError::FencedInstanceId.code()
        );
        assert_eq!(group.static_member_id("i1"), Some("new"));
        assert_eq!(group.leader_id(), Some("new"));
        assert_eq!(
            group.validate_member("old", Some("i1"), "test"),
            Err(ResponseError::FencedInstanceId)
        );
        assert_eq!(group.validate_member("new", Some("i1"), "test"), Ok(()));
        assert_eq!(
            group.validate_member("new", Some("i2"), "test"),
            Err(ResponseError::UnknownMemberId)
        );
    }

    #[test]
    fn subscriptions_are_read_from_the_v0_prefix() {
        let mut bytes = vec![0, 1, 0, 0, 0, 2, 0, 1, b'a', 0, 2, b'b', b'c'];
        bytes.extend_from_slice(&[0, 0, 0, 0]); // v1 user data and later fields are ignored
        assert_eq!(
            parse_subscription_topics(&bytes),
            Some(vec!["a".to_string(), "bc".to_string()])
        );
        assert_eq!(parse_subscription_topics(&[0, 1, 0, 0, 0, 9]), None);
    }

    #[test]
    fn record_round_trip_restores_a_stable_group() {
        let mut group = ClassicGroup::new("g".into(), 0);
        let mut m = member("a", &["range"]);
        m.group_instance_id = Some("i".into());
        m.assignment = Bytes::from_static(b"asg");
        group.add(m, None);
        group.transition_to(ClassicGroupState::PreparingRebalance, 5);
        group.init_next_generation(6);
        let restored = ClassicGroup::from_record("g".into(), &group.to_record(None));
        assert_eq!(restored.state(), ClassicGroupState::Stable);
        assert_eq!(restored.generation_id(), 1);
        assert_eq!(restored.protocol_name(), Some("range"));
        assert_eq!(restored.leader_id(), Some("a"));
        assert_eq!(restored.static_member_id("i"), Some("a"));
        assert_eq!(
            restored.member("a").unwrap().assignment,
            Bytes::from_static(b"asg")
        );
        assert_eq!(restored.state_timestamp_ms(), Some(6));
    }
}
