//! `PartitionChangeBuilder` (Kafka `controller/PartitionChangeBuilder.java`) and the KIP-455
//! reassignment helpers (`PartitionReassignmentReplicas.java`, `PartitionReassignmentRevert.java`).
//!
//! Every leader, ISR or assignment change of an existing partition goes through
//! [`PartitionChangeBuilder::build`]: the caller sets targets (ISR, replicas, adding/removing,
//! leader recovery state), the builder completes a reassignment the target ISR covers, elects a
//! leader, forces leader epoch bumps where Kafka does, and returns the
//! [`PartitionChangeRecord`] (or `None` when nothing changes).
//!
//! Elections (design 4; no ELR, KIP-966 is a non-goal):
//! * a leader is *valid* if it is in the target ISR and acceptable (the caller's predicate:
//!   registered, unfenced, not in controlled shutdown, not the broker being removed);
//! * [`Election::Preferred`]: `replicas[0]` if valid, else the current leader if valid, else the
//!   first valid replica, else none;
//! * [`Election::Clean`]: the current leader if valid, else the first valid replica in
//!   assignment order, else none;
//! * [`Election::Unclean`]: as clean, then any acceptable replica: ISR = [leader], leader
//!   recovery state RECOVERING (KIP-704), logged at WARN.
//!
//! Epochs: replay bumps the leader epoch whenever `Leader != -2`; the builder sets the leader on
//! every leader change and also re-sets the same leader when a reassignment drops replicas
//! (`triggerLeaderEpochBumpForReplicaReassignmentIfNeeded`). ISR shrinks do not bump it
//! (metadata.version >= 3.6, KAFKA-15021). An empty target ISR is never written: the last
//! member stays and the partition becomes leaderless.

use std::collections::BTreeSet;

use fjord_metadata::{
    LeaderRecoveryState, PartitionChangeRecord, PartitionRegistration,
    LEADER_RECOVERY_STATE_RECOVERING, NO_LEADER, NO_LEADER_CHANGE,
};
use uuid::Uuid;

/// The kind of leader election a change runs (Kafka `PartitionChangeBuilder.Election`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Election {
    Preferred,
    Clean,
    Unclean,
}

/// The result of [`PartitionChangeBuilder::elect_leader`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ElectionResult {
    /// The new leader or [`NO_LEADER`].
    pub node: i32,
    pub unclean: bool,
}

/// Builds the `PartitionChangeRecord` of one partition.
pub struct PartitionChangeBuilder<'p, F: Fn(i32) -> bool> {
    partition: &'p PartitionRegistration,
    topic_id: Uuid,
    partition_id: i32,
    is_acceptable_leader: F,
    election: Election,
    target_isr: Vec<i32>,
    target_replicas: Vec<i32>,
    target_removing: Vec<i32>,
    target_adding: Vec<i32>,
    target_leader_recovery_state: LeaderRecoveryState,
}

impl<'p, F: Fn(i32) -> bool> PartitionChangeBuilder<'p, F> {
    /// A builder whose targets are the partition's current state and whose election is clean.
    pub fn new(
        partition: &'p PartitionRegistration,
        topic_id: Uuid,
        partition_id: i32,
        is_acceptable_leader: F,
    ) -> Self {
        Self {
            partition,
            topic_id,
            partition_id,
            is_acceptable_leader,
            election: Election::Clean,
            target_isr: partition.isr.clone(),
            target_replicas: partition.replicas.clone(),
            target_removing: partition.removing_replicas.clone(),
            target_adding: partition.adding_replicas.clone(),
            target_leader_recovery_state: partition.leader_recovery_state,
        }
    }

    pub fn set_election(mut self, election: Election) -> Self {
        self.election = election;
        self
    }

    pub fn set_target_isr(mut self, isr: Vec<i32>) -> Self {
        self.target_isr = isr;
        self
    }

    pub fn set_target_replicas(mut self, replicas: Vec<i32>) -> Self {
        self.target_replicas = replicas;
        self
    }

    pub fn set_target_removing(mut self, removing: Vec<i32>) -> Self {
        self.target_removing = removing;
        self
    }

    pub fn set_target_adding(mut self, adding: Vec<i32>) -> Self {
        self.target_adding = adding;
        self
    }

    pub fn set_target_leader_recovery_state(mut self, state: LeaderRecoveryState) -> Self {
        self.target_leader_recovery_state = state;
        self
    }

    fn is_valid_new_leader(&self, replica: i32) -> bool {
        self.target_isr.contains(&replica) && (self.is_acceptable_leader)(replica)
    }

    /// Kafka `electLeader`, on the current targets.
    pub fn elect_leader(&self) -> ElectionResult {
        let clean = |node| ElectionResult {
            node,
            unclean: false,
        };
        if self.election == Election::Preferred {
            if let Some(&preferred) = self.target_replicas.first() {
                if self.is_valid_new_leader(preferred) {
                    return clean(preferred);
                }
            }
            if self.is_valid_new_leader(self.partition.leader) {
                return clean(self.partition.leader);
            }
            return match self
                .target_replicas
                .iter()
                .skip(1)
                .find(|r| self.is_valid_new_leader(**r))
            {
                Some(&r) => clean(r),
                None => clean(NO_LEADER),
            };
        }
        if self.is_valid_new_leader(self.partition.leader) {
            return clean(self.partition.leader);
        }
        if let Some(&r) = self
            .target_replicas
            .iter()
            .find(|r| self.is_valid_new_leader(**r))
        {
            return clean(r);
        }
        if self.election == Election::Unclean {
            if let Some(&r) = self
                .target_replicas
                .iter()
                .find(|r| (self.is_acceptable_leader)(**r))
            {
                return ElectionResult {
                    node: r,
                    unclean: true,
                };
            }
        }
        clean(NO_LEADER)
    }

    fn complete_reassignment_if_needed(&mut self) {
        let reassignment = PartitionReassignmentReplicas {
            removing: self.target_removing.clone(),
            adding: self.target_adding.clone(),
            replicas: self.target_replicas.clone(),
        };
        if let Some(done) = reassignment.maybe_complete_reassignment(&self.target_isr) {
            self.target_isr = done.isr;
            self.target_replicas = done.replicas;
            self.target_removing.clear();
            self.target_adding.clear();
        }
    }

    fn try_election(&mut self, record: &mut PartitionChangeRecord) {
        let result = self.elect_leader();
        if result.node == self.partition.leader {
            return;
        }
        record.leader = result.node;
        if result.unclean {
            tracing::warn!(
                topic_id = %self.topic_id,
                partition = self.partition_id,
                leader = result.node,
                "unclean leader election: data may be lost"
            );
            record.isr = Some(vec![result.node]);
            if self.partition.leader_recovery_state != LeaderRecoveryState::Recovering {
                record.leader_recovery_state = LEADER_RECOVERY_STATE_RECOVERING;
            }
        }
    }

    /// The change, or `None` if it would change nothing.
    pub fn build(mut self) -> Option<PartitionChangeRecord> {
        let mut record = PartitionChangeRecord::unchanged(self.topic_id, self.partition_id);
        self.complete_reassignment_if_needed();
        self.try_election(&mut record);
        // triggerLeaderEpochBumpForReplicaReassignmentIfNeeded
        if record.leader == NO_LEADER_CHANGE
            && !self
                .partition
                .replicas
                .iter()
                .all(|r| self.target_replicas.contains(r))
        {
            record.leader = self.partition.leader;
        }
        if record.isr.is_none()
            && !self.target_isr.is_empty()
            && self.target_isr != self.partition.isr
        {
            record.isr = Some(self.target_isr.clone());
        }
        if !self.target_replicas.is_empty() && self.target_replicas != self.partition.replicas {
            record.replicas = Some(self.target_replicas.clone());
        }
        if self.target_removing != self.partition.removing_replicas {
            record.removing_replicas = Some(self.target_removing.clone());
        }
        if self.target_adding != self.partition.adding_replicas {
            record.adding_replicas = Some(self.target_adding.clone());
        }
        if self.target_leader_recovery_state != self.partition.leader_recovery_state {
            record.leader_recovery_state = self.target_leader_recovery_state.as_i8();
        }
        let unchanged = PartitionChangeRecord::unchanged(self.topic_id, self.partition_id);
        (record != unchanged).then_some(record)
    }
}

/// The replica lists of a reassignment from `current` to `target` (Kafka
/// `PartitionReassignmentReplicas`): `replicas` = target then (current − target), `adding` =
/// target − current, `removing` = current − target (both sorted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionReassignmentReplicas {
    pub removing: Vec<i32>,
    pub adding: Vec<i32>,
    pub replicas: Vec<i32>,
}

/// Replicas and ISR once a reassignment completes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompletedReassignment {
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

impl PartitionReassignmentReplicas {
    pub fn new(current: &[i32], target: &[i32]) -> Self {
        let removing: BTreeSet<i32> = current
            .iter()
            .filter(|r| !target.contains(r))
            .copied()
            .collect();
        let adding: BTreeSet<i32> = target
            .iter()
            .filter(|r| !current.contains(r))
            .copied()
            .collect();
        let mut replicas = target.to_vec();
        replicas.extend(removing.iter().copied());
        Self {
            removing: removing.into_iter().collect(),
            adding: adding.into_iter().collect(),
            replicas,
        }
    }

    pub fn is_reassignment_in_progress(&self) -> bool {
        !self.removing.is_empty() || !self.adding.is_empty()
    }

    /// Kafka `maybeCompleteReassignment`: complete once the target ISR (minus removing
    /// replicas) is non-empty and covers every remaining replica.
    pub fn maybe_complete_reassignment(&self, target_isr: &[i32]) -> Option<CompletedReassignment> {
        if !self.is_reassignment_in_progress() {
            return None;
        }
        let isr: Vec<i32> = target_isr
            .iter()
            .filter(|r| !self.removing.contains(r))
            .copied()
            .collect();
        let replicas: Vec<i32> = self
            .replicas
            .iter()
            .filter(|r| !self.removing.contains(r))
            .copied()
            .collect();
        if isr.is_empty() || replicas.is_empty() {
            return None;
        }
        if !replicas.iter().all(|r| isr.contains(r)) {
            return None;
        }
        Some(CompletedReassignment { replicas, isr })
    }
}

/// Kafka `PartitionReassignmentRevert`: the state a cancelled reassignment returns to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionReassignmentRevert {
    /// Replicas minus the adding ones.
    pub replicas: Vec<i32>,
    /// ISR minus the adding ones; if that is empty, the first reverted replica (unclean).
    pub isr: Vec<i32>,
    /// Reverting needs an unclean election (no ISR member survives).
    pub unclean: bool,
}

impl PartitionReassignmentRevert {
    pub fn new(partition: &PartitionRegistration) -> Self {
        let adding = &partition.adding_replicas;
        let replicas: Vec<i32> = partition
            .replicas
            .iter()
            .filter(|r| !adding.contains(r))
            .copied()
            .collect();
        let mut isr: Vec<i32> = partition
            .isr
            .iter()
            .filter(|r| !adding.contains(r))
            .copied()
            .collect();
        let unclean = isr.is_empty();
        if unclean {
            // Kafka: the first remaining replica joins the ISR (an unclean election). The
            // replica list cannot be empty: adding replicas are a strict part of it.
            isr.extend(replicas.first().copied());
        }
        Self {
            replicas,
            isr,
            unclean,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fjord_metadata::{LEADER_RECOVERY_STATE_NO_CHANGE, LEADER_RECOVERY_STATE_RECOVERED};

    const T: Uuid = Uuid::from_u128(0xabc);

    fn part(replicas: &[i32], isr: &[i32], leader: i32) -> PartitionRegistration {
        PartitionRegistration {
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            removing_replicas: vec![],
            adding_replicas: vec![],
            leader,
            leader_recovery_state: LeaderRecoveryState::Recovered,
            leader_epoch: 100,
            partition_epoch: 200,
        }
    }

    fn all(_: i32) -> bool {
        true
    }

    #[test]
    fn no_change_builds_nothing() {
        let p = part(&[2, 1, 3], &[2, 1, 3], 1);
        assert_eq!(PartitionChangeBuilder::new(&p, T, 0, all).build(), None);
    }

    #[test]
    fn clean_election_keeps_acceptable_leader_else_first_isr_replica_in_order() {
        let p = part(&[2, 1, 3], &[2, 1, 3], 1);
        let b = PartitionChangeBuilder::new(&p, T, 0, all);
        assert_eq!(b.elect_leader().node, 1);
        let b = PartitionChangeBuilder::new(&p, T, 0, |r| r != 1);
        assert_eq!(
            b.elect_leader(),
            ElectionResult {
                node: 2,
                unclean: false
            }
        );
        let b = PartitionChangeBuilder::new(&p, T, 0, |r| r == 3);
        assert_eq!(b.elect_leader().node, 3);
        let b = PartitionChangeBuilder::new(&p, T, 0, |_| false);
        assert_eq!(b.elect_leader().node, NO_LEADER);
    }

    #[test]
    fn preferred_election_rules() {
        let p = part(&[2, 1, 3], &[2, 1, 3], 1);
        let b = PartitionChangeBuilder::new(&p, T, 0, all).set_election(Election::Preferred);
        assert_eq!(b.elect_leader().node, 2);
        // Preferred not in ISR: keep the valid current leader.
        let p2 = part(&[2, 1, 3], &[1, 3], 1);
        let b = PartitionChangeBuilder::new(&p2, T, 0, all).set_election(Election::Preferred);
        assert_eq!(b.elect_leader().node, 1);
        // Preferred and leader unacceptable: next valid replica.
        let b = PartitionChangeBuilder::new(&p, T, 0, |r| r == 3).set_election(Election::Preferred);
        assert_eq!(b.elect_leader().node, 3);
    }

    #[test]
    fn unclean_election_resets_isr_and_marks_recovering() {
        let p = part(&[2, 1, 3], &[2], NO_LEADER);
        let b = PartitionChangeBuilder::new(&p, T, 0, |r| r != 2);
        assert_eq!(b.elect_leader().node, NO_LEADER);
        let rec = PartitionChangeBuilder::new(&p, T, 0, |r| r != 2)
            .set_election(Election::Unclean)
            .build()
            .unwrap();
        assert_eq!(rec.leader, 1);
        assert_eq!(rec.isr, Some(vec![1]));
        assert_eq!(rec.leader_recovery_state, LEADER_RECOVERY_STATE_RECOVERING);
        let next = p.merge(&rec);
        assert_eq!(next.leader_epoch, 101);
        assert_eq!(next.leader_recovery_state, LeaderRecoveryState::Recovering);
    }

    #[test]
    fn isr_shrink_does_not_bump_leader_epoch_but_leader_change_does() {
        let p = part(&[2, 1, 3], &[2, 1, 3], 1);
        let rec = PartitionChangeBuilder::new(&p, T, 0, all)
            .set_target_isr(vec![2, 1])
            .build()
            .unwrap();
        assert_eq!(rec.leader, NO_LEADER_CHANGE);
        assert_eq!(rec.isr, Some(vec![2, 1]));
        let next = p.merge(&rec);
        assert_eq!((next.leader_epoch, next.partition_epoch), (100, 201));
        // Removing the leader from the ISR elects the first remaining ISR replica.
        let rec = PartitionChangeBuilder::new(&p, T, 0, |r| r != 1)
            .set_target_isr(vec![2, 3])
            .build()
            .unwrap();
        assert_eq!(rec.leader, 2);
        assert_eq!(p.merge(&rec).leader_epoch, 101);
    }

    #[test]
    fn removing_last_isr_member_keeps_it_and_leaves_partition_leaderless() {
        let p = part(&[1, 2], &[1], 1);
        let rec = PartitionChangeBuilder::new(&p, T, 0, |r| r != 1)
            .set_target_isr(vec![])
            .build()
            .unwrap();
        assert_eq!(rec.leader, NO_LEADER);
        assert_eq!(rec.isr, None, "an empty ISR is never written");
        let next = p.merge(&rec);
        assert_eq!(next.isr, vec![1]);
        assert_eq!(next.leader, NO_LEADER);
    }

    #[test]
    fn recovery_state_change_is_written() {
        let mut p = part(&[1, 2], &[1], 1);
        p.leader_recovery_state = LeaderRecoveryState::Recovering;
        let rec = PartitionChangeBuilder::new(&p, T, 0, all)
            .set_target_leader_recovery_state(LeaderRecoveryState::Recovered)
            .build()
            .unwrap();
        assert_eq!(rec.leader_recovery_state, LEADER_RECOVERY_STATE_RECOVERED);
        assert_eq!(rec.leader, NO_LEADER_CHANGE);
        let rec = PartitionChangeBuilder::new(&p, T, 0, all)
            .set_target_isr(vec![1, 2])
            .build()
            .unwrap();
        assert_eq!(rec.leader_recovery_state, LEADER_RECOVERY_STATE_NO_CHANGE);
    }

    #[test]
    fn reassignment_replicas_as_kafka() {
        let r = PartitionReassignmentReplicas::new(&[0, 1, 2], &[0, 1, 3]);
        assert_eq!(r.removing, vec![2]);
        assert_eq!(r.adding, vec![3]);
        assert_eq!(r.replicas, vec![0, 1, 3, 2]);
        assert!(r.is_reassignment_in_progress());
        assert_eq!(r.maybe_complete_reassignment(&[0, 1, 2]), None);
        assert_eq!(
            r.maybe_complete_reassignment(&[0, 1, 2, 3]),
            Some(CompletedReassignment {
                replicas: vec![0, 1, 3],
                isr: vec![0, 1, 3]
            })
        );
        let same = PartitionReassignmentReplicas::new(&[0, 1], &[1, 0]);
        assert!(!same.is_reassignment_in_progress());
        assert_eq!(same.replicas, vec![1, 0]);
    }

    #[test]
    fn completing_reassignment_that_drops_leader_elects_from_target_and_bumps() {
        let mut p = part(&[3, 4, 1, 2], &[1, 2, 3, 4], 1);
        p.adding_replicas = vec![3, 4];
        p.removing_replicas = vec![1, 2];
        let rec = PartitionChangeBuilder::new(&p, T, 0, all).build().unwrap();
        assert_eq!(rec.replicas, Some(vec![3, 4]));
        assert_eq!(rec.isr, Some(vec![3, 4]));
        assert_eq!(rec.leader, 3);
        assert_eq!(rec.adding_replicas, Some(vec![]));
        assert_eq!(rec.removing_replicas, Some(vec![]));
    }

    #[test]
    fn dropping_replicas_forces_leader_epoch_bump_with_same_leader() {
        let mut p = part(&[1, 2, 3], &[1, 2, 3], 1);
        p.removing_replicas = vec![3];
        let rec = PartitionChangeBuilder::new(&p, T, 0, all).build().unwrap();
        assert_eq!(rec.replicas, Some(vec![1, 2]));
        assert_eq!(rec.leader, 1, "same leader re-set to bump the epoch");
        assert_eq!(p.merge(&rec).leader_epoch, 101);
    }

    #[test]
    fn revert_removes_adding_replicas() {
        let mut p = part(&[3, 1, 2], &[1, 2], 1);
        p.adding_replicas = vec![3];
        let r = PartitionReassignmentRevert::new(&p);
        assert_eq!(r.replicas, vec![1, 2]);
        assert_eq!(r.isr, vec![1, 2]);
        assert!(!r.unclean);
        let mut q = part(&[3, 1], &[3], 3);
        q.adding_replicas = vec![3];
        q.removing_replicas = vec![1];
        let r = PartitionReassignmentRevert::new(&q);
        assert!(r.unclean);
        assert_eq!(r.isr, vec![1]);
    }
}
