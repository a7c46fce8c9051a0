//! KIP-848 consumer groups (`group.protocol=consumer`): the group epoch, the target
//! assignment computed by a server-side assignor, and each member's incremental
//! reconciliation towards it, as Kafka's `ConsumerGroup` and `CurrentAssignmentBuilder` do.
//!
//! Pure state: no I/O, no clock (times are passed in), so every transition is unit-tested.
//!
//! Epochs: the *group epoch* bumps whenever membership, a subscription or the metadata of a
//! subscribed topic changes; the *assignment epoch* is the group epoch the target assignment
//! was computed for (always caught up here: assignment runs inline). A member's *member epoch*
//! reaches the assignment epoch once it has given up every partition the target moves away
//! from it. Partitions another member still has to revoke are withheld until it has.

use std::collections::{BTreeMap, BTreeSet};

use fjord_protocol::ResponseError;

use super::assignor::{self, Assignment, TopicMetadata};

/// Member epoch in a heartbeat: join, leave, static member leaving temporarily.
pub const JOIN_EPOCH: i32 = 0;
pub const LEAVE_EPOCH: i32 = -1;
pub const LEAVE_STATIC_EPOCH: i32 = -2;

/// Where a member is in its reconciliation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// Owns its whole target at the assignment epoch.
    Stable,
    /// Must first revoke partitions the target gives to others; stays at its old epoch.
    UnrevokedPartitions,
    /// At the new epoch, waiting for partitions other members still hold.
    UnreleasedPartitions,
}

#[derive(Debug, Clone)]
pub struct ConsumerGroupMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: BTreeSet<String>,
    pub server_assignor: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    pub state: MemberState,
    /// What the member owns (as far as the coordinator told it).
    pub assigned: Assignment,
    /// What it was told to give up and has not yet confirmed.
    pub pending_revocation: Assignment,
    /// When it entered `UnrevokedPartitions` (for the rebalance timeout).
    pub revoking_since_ms: Option<i64>,
    pub last_heartbeat_ms: i64,
}

/// A ConsumerGroupHeartbeat, with "unchanged since last time" as `None`.
#[derive(Debug, Clone, Default)]
pub struct HeartbeatInput {
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub rebalance_timeout_ms: Option<i32>,
    pub subscribed_topic_names: Option<BTreeSet<String>>,
    pub server_assignor: Option<String>,
    /// The partitions the member reports owning.
    pub owned: Option<Assignment>,
    pub client_id: String,
    pub client_host: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatOutput {
    pub member_id: String,
    pub member_epoch: i32,
    /// The assignment to apply, when the member must learn it.
    pub assignment: Option<Assignment>,
}

/// Group state as ConsumerGroupDescribe and ListGroups name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerGroupState {
    Empty,
    Assigning,
    Reconciling,
    Stable,
}

impl ConsumerGroupState {
    /// KIP-848 spelling (ConsumerGroupDescribe).
    pub fn name(self) -> &'static str {
        match self {
            ConsumerGroupState::Empty => "Empty",
            ConsumerGroupState::Assigning => "Assigning",
            ConsumerGroupState::Reconciling => "Reconciling",
            ConsumerGroupState::Stable => "Stable",
        }
    }
}

/// Limits and defaults the coordinator passes in.
#[derive(Debug, Clone)]
pub struct ConsumerGroupConfig {
    pub max_size: usize,
    pub default_assignor: String,
}

#[derive(Debug, Clone)]
pub struct ConsumerGroup {
    pub group_id: String,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub members: BTreeMap<String, ConsumerGroupMember>,
    pub target: BTreeMap<String, Assignment>,
    /// Subscribed topics' metadata the target was computed from.
    pub subscribed_topics: BTreeMap<String, TopicMetadata>,
    /// Assignor the target was computed with.
    pub assignor: String,
}

impl ConsumerGroup {
    pub fn new(group_id: &str, default_assignor: &str) -> Self {
        ConsumerGroup {
            group_id: group_id.to_string(),
            group_epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            subscribed_topics: BTreeMap::new(),
            assignor: default_assignor.to_string(),
        }
    }

    pub fn state(&self) -> ConsumerGroupState {
        if self.members.is_empty() {
            ConsumerGroupState::Empty
        } else if self.assignment_epoch < self.group_epoch {
            ConsumerGroupState::Assigning
        } else if self
            .members
            .values()
            .any(|m| m.state != MemberState::Stable || m.member_epoch != self.assignment_epoch)
        {
            ConsumerGroupState::Reconciling
        } else {
            ConsumerGroupState::Stable
        }
    }

    /// Handles one heartbeat. `topic_metadata` looks up a topic by name (None if it does not
    /// exist); `new_member_id` is used when a member joins without an id (v0 clients).
    pub fn heartbeat(
        &mut self,
        input: HeartbeatInput,
        topic_metadata: &dyn Fn(&str) -> Option<TopicMetadata>,
        config: &ConsumerGroupConfig,
        new_member_id: impl FnOnce() -> String,
        now_ms: i64,
    ) -> Result<HeartbeatOutput, ResponseError> {
        if input.member_epoch == LEAVE_EPOCH || input.member_epoch == LEAVE_STATIC_EPOCH {
            return self.leave(&input, topic_metadata);
        }
        let joining = input.member_epoch == JOIN_EPOCH;
        if let Some(assignor) = &input.server_assignor {
            if !assignor::ASSIGNORS.contains(&assignor.as_str()) {
                return Err(ResponseError::UnsupportedAssignor);
            }
        }
        let member_id = if input.member_id.is_empty() {
            if !joining {
                return Err(ResponseError::UnknownMemberId);
            }
            new_member_id()
        } else {
            input.member_id.clone()
        };
        let mut bump = false;
        let mut member = match self.members.get(&member_id) {
            Some(existing) => {
                let mut member = existing.clone();
                if joining {
                    // A rejoin (e.g. after a fencing): start over from nothing owned.
                    member.member_epoch = 0;
                    member.assigned.clear();
                    member.pending_revocation.clear();
                    member.state = MemberState::Stable;
                } else {
                    check_epoch(&member, &input)?;
                }
                member
            }
            None => {
                if !joining {
                    return Err(ResponseError::UnknownMemberId);
                }
                if let Some(instance_id) = &input.instance_id {
                    // A static member coming back under a new member id takes over the old
                    // one's place (KIP-345 semantics carried into KIP-848).
                    if let Some(old) = self
                        .members
                        .values()
                        .find(|m| m.instance_id.as_deref() == Some(instance_id))
                        .map(|m| m.member_id.clone())
                    {
                        self.members.remove(&old);
                        if let Some(target) = self.target.remove(&old) {
                            self.target.insert(member_id.clone(), target);
                        }
                    }
                }
                if self.members.len() >= config.max_size {
                    return Err(ResponseError::GroupMaxSizeReached);
                }
                if input.subscribed_topic_names.is_none() {
                    return Err(ResponseError::InvalidRequest);
                }
                bump = true;
                ConsumerGroupMember {
                    member_id: member_id.clone(),
                    instance_id: input.instance_id.clone(),
                    rack_id: None,
                    client_id: input.client_id.clone(),
                    client_host: input.client_host.clone(),
                    subscribed_topic_names: BTreeSet::new(),
                    server_assignor: None,
                    rebalance_timeout_ms: 300_000,
                    member_epoch: 0,
                    previous_member_epoch: 0,
                    state: MemberState::Stable,
                    assigned: Assignment::new(),
                    pending_revocation: Assignment::new(),
                    revoking_since_ms: None,
                    last_heartbeat_ms: now_ms,
                }
            }
        };
        member.last_heartbeat_ms = now_ms;
        if let Some(rack) = input.rack_id.clone() {
            member.rack_id = Some(rack);
        }
        if let Some(timeout) = input.rebalance_timeout_ms.filter(|t| *t > 0) {
            member.rebalance_timeout_ms = timeout;
        }
        if let Some(subscribed) = input.subscribed_topic_names.clone() {
            if subscribed != member.subscribed_topic_names {
                member.subscribed_topic_names = subscribed;
                bump = true;
            }
        }
        if let Some(assignor) = input.server_assignor.clone() {
            if member.server_assignor.as_ref() != Some(&assignor) {
                member.server_assignor = Some(assignor);
                bump = true;
            }
        }
        let previous_assigned = member.assigned.clone();
        self.members.insert(member_id.clone(), member);
        // Metadata of subscribed topics changed (created, deleted, partitions added)?
        let metadata = self.subscribed_metadata(topic_metadata);
        if bump || metadata != self.subscribed_topics {
            self.group_epoch += 1;
            self.subscribed_topics = metadata;
            self.compute_target_assignment(config);
        }
        self.reconcile(&member_id, input.owned.as_ref(), now_ms);
        let member = &self.members[&member_id];
        let changed = member.assigned != previous_assigned;
        let owned_differs = input.owned.as_ref().is_some_and(|o| *o != member.assigned);
        Ok(HeartbeatOutput {
            member_id,
            member_epoch: member.member_epoch,
            assignment: (joining || changed || owned_differs).then(|| member.assigned.clone()),
        })
    }

    fn leave(
        &mut self,
        input: &HeartbeatInput,
        topic_metadata: &dyn Fn(&str) -> Option<TopicMetadata>,
    ) -> Result<HeartbeatOutput, ResponseError> {
        if !self.members.contains_key(&input.member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        self.remove_member(&input.member_id, topic_metadata);
        Ok(HeartbeatOutput {
            member_id: input.member_id.clone(),
            member_epoch: input.member_epoch,
            assignment: None,
        })
    }

    /// Removes a member (left, session expired, or fenced) and rebalances the rest.
    pub fn remove_member(
        &mut self,
        member_id: &str,
        topic_metadata: &dyn Fn(&str) -> Option<TopicMetadata>,
    ) -> bool {
        if self.members.remove(member_id).is_none() {
            return false;
        }
        self.target.remove(member_id);
        self.group_epoch += 1;
        self.subscribed_topics = self.subscribed_metadata(topic_metadata);
        let config = ConsumerGroupConfig {
            max_size: usize::MAX,
            default_assignor: self.assignor.clone(),
        };
        self.compute_target_assignment(&config);
        true
    }

    /// Members whose session expired or who did not revoke within their rebalance timeout.
    pub fn expired_members(&self, now_ms: i64, session_timeout_ms: i64) -> Vec<String> {
        self.members
            .values()
            .filter(|m| {
                now_ms.saturating_sub(m.last_heartbeat_ms) > session_timeout_ms
                    || m.revoking_since_ms.is_some_and(|since| {
                        now_ms.saturating_sub(since) > i64::from(m.rebalance_timeout_ms)
                    })
            })
            .map(|m| m.member_id.clone())
            .collect()
    }

    /// Checks an OffsetCommit from a member of this group: v9+ carry the member epoch; older
    /// versions cannot, so members must not use them (Kafka: UNSUPPORTED_VERSION).
    pub fn validate_offset_commit(
        &self,
        member_id: &str,
        member_epoch: i32,
        api_version: i16,
    ) -> Result<(), ResponseError> {
        if member_id.is_empty() && member_epoch < 0 {
            // Admin tools commit for an empty group with no member and epoch -1.
            return if self.members.is_empty() {
                Ok(())
            } else {
                Err(ResponseError::UnknownMemberId)
            };
        }
        let member = self
            .members
            .get(member_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        if api_version < 9 {
            return Err(ResponseError::UnsupportedVersion);
        }
        if member_epoch != member.member_epoch {
            return Err(ResponseError::StaleMemberEpoch);
        }
        Ok(())
    }

    /// Checks a TxnOffsetCommit (Kafka's `ConsumerGroup.validateOffsetCommit` with
    /// `isTransactional`): generation -1 is accepted while the group has no members; otherwise
    /// the member must exist and the generation must be its epoch. A stale epoch answers
    /// ILLEGAL_GENERATION, the error TxnOffsetCommit clients know (Kafka maps it the same way).
    pub fn validate_transactional_offset_commit(
        &self,
        member_id: &str,
        member_epoch: i32,
    ) -> Result<(), ResponseError> {
        if member_epoch < 0 && self.members.is_empty() {
            return Ok(());
        }
        let member = self
            .members
            .get(member_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        if member_epoch != member.member_epoch {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }

    fn subscribed_metadata(
        &self,
        topic_metadata: &dyn Fn(&str) -> Option<TopicMetadata>,
    ) -> BTreeMap<String, TopicMetadata> {
        self.members
            .values()
            .flat_map(|m| m.subscribed_topic_names.iter())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter_map(|name| topic_metadata(name).map(|t| (name.clone(), t)))
            .collect()
    }

    /// The assignor the members ask for (the most common choice), else the default.
    fn preferred_assignor(&self, config: &ConsumerGroupConfig) -> String {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = &m.server_assignor {
                *votes.entry(a).or_default() += 1;
            }
        }
        votes
            .into_iter()
            .max_by_key(|(name, n)| (*n, std::cmp::Reverse(*name)))
            .map_or(config.default_assignor.clone(), |(name, _)| {
                name.to_string()
            })
    }

    fn compute_target_assignment(&mut self, config: &ConsumerGroupConfig) {
        self.assignor = self.preferred_assignor(config);
        let subscriptions: BTreeMap<String, BTreeSet<String>> = self
            .members
            .iter()
            .map(|(id, m)| (id.clone(), m.subscribed_topic_names.clone()))
            .collect();
        let target = assignor::assign(
            &self.assignor,
            &subscriptions,
            &self.subscribed_topics,
            &self.target,
        )
        .unwrap_or_else(|| {
            assignor::uniform(&subscriptions, &self.subscribed_topics, &self.target)
        });
        self.target = target;
        self.assignment_epoch = self.group_epoch;
    }

    /// Moves `member_id` as far towards its target as it may go now (Kafka's
    /// `CurrentAssignmentBuilder`).
    fn reconcile(&mut self, member_id: &str, owned: Option<&Assignment>, now_ms: i64) {
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        // Partitions other members hold or still have to give up.
        let held_elsewhere: BTreeSet<(uuid::Uuid, i32)> = self
            .members
            .values()
            .filter(|m| m.member_id != member_id)
            .flat_map(|m| {
                flatten(&m.assigned)
                    .into_iter()
                    .chain(flatten(&m.pending_revocation))
            })
            .collect();
        let assignment_epoch = self.assignment_epoch;
        let Some(member) = self.members.get_mut(member_id) else {
            return;
        };
        if member.state == MemberState::UnrevokedPartitions {
            let still_owned = owned.is_none_or(|owned| {
                flatten(&member.pending_revocation)
                    .iter()
                    .any(|(t, p)| owned.get(t).is_some_and(|ps| ps.contains(p)))
            });
            if still_owned {
                return; // keep waiting for the revocation
            }
            member.pending_revocation.clear();
            member.revoking_since_ms = None;
            member.state = MemberState::Stable;
        }
        let assigned = flatten(&member.assigned);
        let wanted = flatten(&target);
        let revoke: BTreeSet<_> = assigned.difference(&wanted).copied().collect();
        if !revoke.is_empty() {
            member.assigned = unflatten(assigned.intersection(&wanted).copied());
            member.pending_revocation = unflatten(revoke.into_iter());
            member.state = MemberState::UnrevokedPartitions;
            member.revoking_since_ms = Some(now_ms);
            return;
        }
        let mut now_assigned = assigned.clone();
        let mut withheld = false;
        for tp in wanted.difference(&assigned) {
            if held_elsewhere.contains(tp) {
                withheld = true;
            } else {
                now_assigned.insert(*tp);
            }
        }
        member.assigned = unflatten(now_assigned.into_iter());
        if member.member_epoch != assignment_epoch {
            member.previous_member_epoch = member.member_epoch;
            member.member_epoch = assignment_epoch;
        }
        member.state = if withheld {
            MemberState::UnreleasedPartitions
        } else {
            MemberState::Stable
        };
    }
}

/// The request's epoch must be the member's, or its previous one if the last response was
/// lost and the member owns nothing it should not (Kafka's `throwIfMemberEpochIsInvalid`).
fn check_epoch(member: &ConsumerGroupMember, input: &HeartbeatInput) -> Result<(), ResponseError> {
    if input.member_epoch == member.member_epoch {
        return Ok(());
    }
    let owned_subset = input
        .owned
        .as_ref()
        .is_some_and(|owned| flatten(owned).is_subset(&flatten(&member.assigned)));
    if input.member_epoch == member.previous_member_epoch && owned_subset {
        return Ok(());
    }
    Err(ResponseError::FencedMemberEpoch)
}

fn flatten(assignment: &Assignment) -> BTreeSet<(uuid::Uuid, i32)> {
    assignment
        .iter()
        .flat_map(|(t, ps)| ps.iter().map(move |p| (*t, *p)))
        .collect()
}

fn unflatten(partitions: impl Iterator<Item = (uuid::Uuid, i32)>) -> Assignment {
    let mut out = Assignment::new();
    for (t, p) in partitions {
        out.entry(t).or_default().insert(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    const TOPIC: Uuid = Uuid::from_u128(7);

    fn metadata(name: &str) -> Option<TopicMetadata> {
        (name == "t").then(|| TopicMetadata {
            id: TOPIC,
            name: "t".into(),
            partitions: 6,
        })
    }

    fn config() -> ConsumerGroupConfig {
        ConsumerGroupConfig {
            max_size: 10,
            default_assignor: "uniform".into(),
        }
    }

    fn join(group: &mut ConsumerGroup, id: &str) -> HeartbeatOutput {
        group
            .heartbeat(
                HeartbeatInput {
                    member_id: id.into(),
                    member_epoch: JOIN_EPOCH,
                    subscribed_topic_names: Some(["t".to_string()].into()),
                    owned: Some(Assignment::new()),
                    ..HeartbeatInput::default()
                },
                &metadata,
                &config(),
                || unreachable!(),
                0,
            )
            .unwrap()
    }

    fn beat(
        group: &mut ConsumerGroup,
        id: &str,
        epoch: i32,
        owned: &Assignment,
    ) -> Result<HeartbeatOutput, ResponseError> {
        group.heartbeat(
            HeartbeatInput {
                member_id: id.into(),
                member_epoch: epoch,
                owned: Some(owned.clone()),
                ..HeartbeatInput::default()
            },
            &metadata,
            &config(),
            || unreachable!(),
            0,
        )
    }

    /// Drives every member with heartbeats, each applying what it is told, until all are
    /// stable; returns the final assignments.
    fn settle(group: &mut ConsumerGroup, owned: &mut BTreeMap<String, (i32, Assignment)>) {
        for _ in 0..10 {
            let ids: Vec<String> = owned.keys().cloned().collect();
            for id in ids {
                let (epoch, have) = owned[&id].clone();
                let out = beat(group, &id, epoch, &have).unwrap();
                let now = out.assignment.unwrap_or(have);
                owned.insert(id, (out.member_epoch, now));
            }
            if group.state() == ConsumerGroupState::Stable {
                return;
            }
        }
        panic!("did not settle: {group:?}");
    }

    fn all(owned: &BTreeMap<String, (i32, Assignment)>) -> Vec<i32> {
        let mut v: Vec<i32> = owned
            .values()
            .flat_map(|(_, a)| a.values().flatten().copied())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn members_join_reconcile_and_never_share_a_partition() {
        let mut group = ConsumerGroup::new("g", "uniform");
        let mut owned = BTreeMap::new();
        let first = join(&mut group, "a");
        assert_eq!(first.member_epoch, 1);
        owned.insert(
            "a".to_string(),
            (first.member_epoch, first.assignment.unwrap()),
        );
        assert_eq!(all(&owned), vec![0, 1, 2, 3, 4, 5]);
        for id in ["b", "c"] {
            let out = join(&mut group, id);
            owned.insert(id.to_string(), (out.member_epoch, out.assignment.unwrap()));
            // At no point may two members own the same partition.
            let flat = all(&owned);
            let unique: BTreeSet<_> = flat.iter().collect();
            assert_eq!(flat.len(), unique.len(), "{owned:?}");
            settle(&mut group, &mut owned);
            let flat = all(&owned);
            let unique: BTreeSet<_> = flat.iter().collect();
            assert_eq!(flat.len(), unique.len(), "{owned:?}");
        }
        assert_eq!(all(&owned), vec![0, 1, 2, 3, 4, 5]);
        assert!(owned
            .values()
            .all(|(_, a)| a.values().map(BTreeSet::len).sum::<usize>() == 2));
        assert_eq!(group.state(), ConsumerGroupState::Stable);
        assert!(owned.values().all(|(e, _)| *e == group.group_epoch));
    }

    #[test]
    fn a_leaving_member_s_partitions_move_to_the_others() {
        let mut group = ConsumerGroup::new("g", "uniform");
        let mut owned = BTreeMap::new();
        for id in ["a", "b", "c"] {
            let out = join(&mut group, id);
            owned.insert(id.to_string(), (out.member_epoch, out.assignment.unwrap()));
            settle(&mut group, &mut owned);
        }
        let (epoch, _) = owned.remove("c").unwrap();
        beat(&mut group, "c", LEAVE_EPOCH, &Assignment::new()).unwrap();
        let _ = epoch;
        settle(&mut group, &mut owned);
        assert_eq!(all(&owned), vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn stale_epochs_are_fenced_and_unknown_members_rejected() {
        let mut group = ConsumerGroup::new("g", "uniform");
        let out = join(&mut group, "a");
        let owned = out.assignment.unwrap();
        assert_eq!(
            beat(&mut group, "a", out.member_epoch + 5, &owned),
            Err(ResponseError::FencedMemberEpoch)
        );
        assert_eq!(
            beat(&mut group, "zz", 3, &owned),
            Err(ResponseError::UnknownMemberId)
        );
        assert_eq!(
            group.validate_offset_commit("a", out.member_epoch, 9),
            Ok(())
        );
        assert_eq!(
            group.validate_offset_commit("a", out.member_epoch - 1, 9),
            Err(ResponseError::StaleMemberEpoch)
        );
        assert_eq!(
            group.validate_offset_commit("", -1, 9),
            Err(ResponseError::UnknownMemberId)
        );
        assert_eq!(
            group.validate_offset_commit("x", 1, 9),
            Err(ResponseError::UnknownMemberId)
        );
    }

    #[test]
    fn a_member_that_does_not_revoke_in_time_expires() {
        let mut group = ConsumerGroup::new("g", "uniform");
        let a = join(&mut group, "a");
        let all_six = a.assignment.unwrap();
        let b = join(&mut group, "b");
        assert_eq!(
            b.assignment,
            Some(Assignment::new()),
            "b waits for a to release"
        );
        // At its next heartbeat `a` is told to revoke three partitions, and never confirms.
        let told = beat(&mut group, "a", a.member_epoch, &all_six).unwrap();
        assert_eq!(
            told.member_epoch, a.member_epoch,
            "a stays at its epoch until it revokes"
        );
        assert_eq!(
            told.assignment
                .unwrap()
                .values()
                .map(BTreeSet::len)
                .sum::<usize>(),
            3
        );
        assert_eq!(group.members["a"].state, MemberState::UnrevokedPartitions);
        let timeout = i64::from(group.members["a"].rebalance_timeout_ms);
        assert!(group.expired_members(timeout, i64::MAX).is_empty());
        assert_eq!(
            group.expired_members(timeout + 1, i64::MAX),
            vec!["a".to_string()]
        );
        assert_eq!(group.expired_members(10, 5).len(), 2, "session timeouts");
    }

    #[test]
    fn unknown_assignors_and_full_groups_are_refused() {
        let mut group = ConsumerGroup::new("g", "uniform");
        let input = HeartbeatInput {
            member_id: "a".into(),
            member_epoch: 0,
            subscribed_topic_names: Some(["t".to_string()].into()),
            server_assignor: Some("sticky-magic".into()),
            ..HeartbeatInput::default()
        };
        assert_eq!(
            group.heartbeat(input, &metadata, &config(), || unreachable!(), 0),
            Err(ResponseError::UnsupportedAssignor)
        );
        let small = ConsumerGroupConfig {
            max_size: 1,
            ..config()
        };
        let ok = HeartbeatInput {
            member_id: "a".into(),
            member_epoch: 0,
            subscribed_topic_names: Some(["t".to_string()].into()),
            ..HeartbeatInput::default()
        };
        group
            .heartbeat(ok.clone(), &metadata, &small, || unreachable!(), 0)
            .unwrap();
        let second = HeartbeatInput {
            member_id: "b".into(),
            ..ok
        };
        assert_eq!(
            group.heartbeat(second, &metadata, &small, || unreachable!(), 0),
            Err(ResponseError::GroupMaxSizeReached)
        );
    }
}
