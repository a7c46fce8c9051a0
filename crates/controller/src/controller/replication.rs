//! ISR and leadership changes: AlterPartition, ElectLeaders, preferred-leader rebalancing and
//! KIP-455 reassignments (Kafka `ReplicationControlManager.alterPartition`, `electLeaders`,
//! `maybeBalancePartitionLeaders`, `alterPartitionReassignments`,
//! `listPartitionReassignments`).

use std::collections::BTreeSet;

use fjord_metadata::{
    LeaderRecoveryState, MetadataDelta, MetadataRecord, PartitionRegistration, NO_LEADER,
    NO_LEADER_CHANGE,
};
use uuid::Uuid;

use super::{HandlerResult, QuorumController, Txn};
use crate::api::{
    AlterPartitionData, AlterPartitionPartitionReply, AlterPartitionReassignmentsReply,
    AlterPartitionReassignmentsRequest, AlterPartitionReply, AlterPartitionRequest,
    AlterPartitionTopicReply, ApiError, ControllerReply, ElectLeadersReply, ElectLeadersRequest,
    ElectionType, ErrorCode, ListPartitionReassignmentsReply, ListPartitionReassignmentsRequest,
    OngoingReassignment, PartitionResult,
};
use crate::partition_change::{
    Election, PartitionChangeBuilder, PartitionReassignmentReplicas, PartitionReassignmentRevert,
};
use crate::ControllerError;

fn partition_reply(
    index: i32,
    error: ErrorCode,
    p: Option<&PartitionRegistration>,
) -> AlterPartitionPartitionReply {
    match p {
        Some(p) if error.is_none() => AlterPartitionPartitionReply {
            partition_index: index,
            error,
            leader_id: p.leader,
            leader_epoch: p.leader_epoch,
            isr: p.isr.clone(),
            leader_recovery_state: p.leader_recovery_state.as_i8(),
            partition_epoch: p.partition_epoch,
        },
        _ => AlterPartitionPartitionReply {
            partition_index: index,
            error,
            leader_id: NO_LEADER,
            leader_epoch: -1,
            isr: Vec::new(),
            leader_recovery_state: 0,
            partition_epoch: -1,
        },
    }
}

impl QuorumController {
    /// Kafka `alterPartition` (v3 semantics).
    pub(super) fn alter_partition(
        &mut self,
        txn: &mut Txn,
        req: AlterPartitionRequest,
    ) -> HandlerResult {
        let stale = match txn.delta.broker(req.broker_id) {
            None => true,
            Some(b) => b.epoch != req.broker_epoch,
        };
        if stale {
            return Ok(ControllerReply::AlterPartition(AlterPartitionReply {
                error: ErrorCode::StaleBrokerEpoch,
                topics: Vec::new(),
            }));
        }
        let mut topics = Vec::with_capacity(req.topics.len());
        for topic in req.topics {
            let mut partitions = Vec::with_capacity(topic.partitions.len());
            let name = txn.delta.topic_name(&topic.topic_id).map(str::to_string);
            for data in topic.partitions {
                let Some(name) = &name else {
                    partitions.push(partition_reply(
                        data.partition_index,
                        ErrorCode::UnknownTopicId,
                        None,
                    ));
                    continue;
                };
                let reply =
                    self.alter_one_partition(txn, req.broker_id, topic.topic_id, name, &data)?;
                partitions.push(reply);
            }
            topics.push(AlterPartitionTopicReply {
                topic_id: topic.topic_id,
                partitions,
            });
        }
        Ok(ControllerReply::AlterPartition(AlterPartitionReply {
            error: ErrorCode::None,
            topics,
        }))
    }

    fn alter_one_partition(
        &self,
        txn: &mut Txn,
        broker_id: i32,
        topic_id: Uuid,
        topic: &str,
        data: &AlterPartitionData,
    ) -> Result<AlterPartitionPartitionReply, ControllerError> {
        let index = data.partition_index;
        let Some(partition) = txn.delta.partition(&topic_id, index).cloned() else {
            return Ok(partition_reply(
                index,
                ErrorCode::UnknownTopicOrPartition,
                None,
            ));
        };
        let error = self.validate_alter_partition(&txn.delta, broker_id, &partition, data);
        if !error.is_none() {
            return Ok(partition_reply(index, error, None));
        }
        let target_state = LeaderRecoveryState::from_i8(data.leader_recovery_state)
            .unwrap_or(partition.leader_recovery_state);
        let election = if self.unclean_enabled(&txn.delta, topic) {
            Election::Unclean
        } else {
            Election::Clean
        };
        let record = {
            let delta = &txn.delta;
            PartitionChangeBuilder::new(&partition, topic_id, index, |r| {
                self.is_active_broker(delta, r)
            })
            .set_election(election)
            .set_target_isr(
                data.new_isr_with_epochs
                    .iter()
                    .map(|b| b.broker_id)
                    .collect(),
            )
            .set_target_leader_recovery_state(target_state)
            .build()
        };
        let Some(record) = record else {
            return Ok(partition_reply(index, ErrorCode::None, Some(&partition)));
        };
        if txn.room() == 0 {
            return Ok(partition_reply(
                index,
                ErrorCode::ThrottlingQuotaExceeded,
                None,
            ));
        }
        let leader = record.leader;
        txn.push(MetadataRecord::PartitionChange(record))?;
        if leader != broker_id && leader != NO_LEADER_CHANGE {
            // The change completed a reassignment that moved leadership away.
            return Ok(partition_reply(index, ErrorCode::NewLeaderElected, None));
        }
        Ok(partition_reply(
            index,
            ErrorCode::None,
            txn.delta.partition(&topic_id, index),
        ))
    }

    /// Kafka `validateAlterPartitionData`, in its order (design 4).
    fn validate_alter_partition(
        &self,
        delta: &MetadataDelta,
        broker_id: i32,
        partition: &PartitionRegistration,
        data: &AlterPartitionData,
    ) -> ErrorCode {
        if data.leader_epoch > partition.leader_epoch
            || data.partition_epoch > partition.partition_epoch
        {
            return ErrorCode::NotController;
        }
        if data.leader_epoch < partition.leader_epoch {
            return ErrorCode::FencedLeaderEpoch;
        }
        if broker_id != partition.leader {
            return ErrorCode::InvalidRequest;
        }
        if data.partition_epoch < partition.partition_epoch {
            return ErrorCode::InvalidUpdateVersion;
        }
        let new_isr: Vec<i32> = data
            .new_isr_with_epochs
            .iter()
            .map(|b| b.broker_id)
            .collect();
        let distinct: BTreeSet<i32> = new_isr.iter().copied().collect();
        if distinct.len() != new_isr.len()
            || !new_isr.iter().all(|r| partition.replicas.contains(r))
        {
            return ErrorCode::InvalidRequest;
        }
        if !new_isr.contains(&partition.leader) {
            return ErrorCode::InvalidRequest;
        }
        let Some(requested_state) = LeaderRecoveryState::from_i8(data.leader_recovery_state) else {
            return ErrorCode::InvalidRequest;
        };
        if requested_state == LeaderRecoveryState::Recovering && new_isr.len() > 1 {
            return ErrorCode::InvalidRequest;
        }
        if partition.leader_recovery_state == LeaderRecoveryState::Recovered
            && requested_state == LeaderRecoveryState::Recovering
        {
            return ErrorCode::InvalidRequest;
        }
        let ineligible = data.new_isr_with_epochs.iter().any(|member| {
            !self.is_active_broker(delta, member.broker_id)
                || (member.broker_epoch != -1
                    && delta
                        .broker(member.broker_id)
                        .is_some_and(|b| b.epoch != member.broker_epoch))
        });
        if ineligible {
            return ErrorCode::IneligibleReplica;
        }
        ErrorCode::None
    }

    /// Kafka `electLeaders`.
    pub(super) fn elect_leaders(
        &mut self,
        txn: &mut Txn,
        req: ElectLeadersRequest,
    ) -> HandlerResult {
        let elect_all = req.topic_partitions.is_none();
        let targets: Vec<(String, Vec<i32>)> = match req.topic_partitions {
            Some(t) => t,
            None => self
                .speculative
                .topics
                .values()
                .map(|t| (t.name.clone(), t.partitions.keys().copied().collect()))
                .collect(),
        };
        let mut results = Vec::new();
        for (topic, partitions) in targets {
            for partition in partitions {
                let error = self.elect_leader(txn, &topic, partition, req.election_type)?;
                if elect_all && error.code == ErrorCode::ElectionNotNeeded {
                    continue;
                }
                if elect_all && error.code == ErrorCode::ThrottlingQuotaExceeded {
                    // The rest is left for a later request (or the periodic rebalance).
                    break;
                }
                results.push(PartitionResult {
                    topic: topic.clone(),
                    partition,
                    error,
                });
            }
        }
        Ok(ControllerReply::ElectLeaders(ElectLeadersReply { results }))
    }

    fn elect_leader(
        &self,
        txn: &mut Txn,
        topic: &str,
        partition_id: i32,
        election_type: ElectionType,
    ) -> Result<ApiError, ControllerError> {
        let Some(topic_id) = txn.delta.topic_id(topic) else {
            return Ok(ApiError::new(
                ErrorCode::UnknownTopicOrPartition,
                format!("No such topic as {topic}"),
            ));
        };
        let Some(partition) = txn.delta.partition(&topic_id, partition_id).cloned() else {
            return Ok(ApiError::new(
                ErrorCode::UnknownTopicOrPartition,
                format!("No such partition as {topic}-{partition_id}"),
            ));
        };
        let not_needed = match election_type {
            ElectionType::Preferred => partition.replicas.first() == Some(&partition.leader),
            ElectionType::Unclean => partition.leader != NO_LEADER,
        };
        if not_needed {
            return Ok(ApiError::code_only(ErrorCode::ElectionNotNeeded));
        }
        let election = match election_type {
            ElectionType::Preferred => Election::Preferred,
            ElectionType::Unclean => Election::Unclean,
        };
        let record = {
            let delta = &txn.delta;
            PartitionChangeBuilder::new(&partition, topic_id, partition_id, |r| {
                self.is_active_broker(delta, r)
            })
            .set_election(election)
            .build()
        };
        match record {
            None => Ok(ApiError::code_only(match election_type {
                ElectionType::Preferred => ErrorCode::PreferredLeaderNotAvailable,
                ElectionType::Unclean => ErrorCode::EligibleLeadersNotAvailable,
            })),
            Some(_) if txn.room() == 0 => Ok(ApiError::new(
                ErrorCode::ThrottlingQuotaExceeded,
                "Too many elections in one request; retry the rest.",
            )),
            Some(record) => {
                txn.push(MetadataRecord::PartitionChange(record))?;
                Ok(ApiError::NONE)
            }
        }
    }

    /// Kafka `maybeBalancePartitionLeaders`: preferred elections where the preferred replica
    /// is an acceptable ISR member but does not lead, at most `max_elections_per_imbalance`.
    /// Returns whether more may remain.
    pub(super) fn balance_partition_leaders(&self, txn: &mut Txn) -> Result<bool, ControllerError> {
        let limit = self.config.max_elections_per_imbalance.min(txn.room());
        let mut written = 0;
        for (topic_id, partition_id) in self.partition_keys() {
            let Some(partition) = txn.delta.partition(&topic_id, partition_id) else {
                continue;
            };
            let Some(&preferred) = partition.replicas.first() else {
                continue;
            };
            if partition.leader == preferred
                || !partition.isr.contains(&preferred)
                || !self.is_active_broker(&txn.delta, preferred)
            {
                continue;
            }
            if written == limit {
                return Ok(true);
            }
            let partition = partition.clone();
            let record = {
                let delta = &txn.delta;
                PartitionChangeBuilder::new(&partition, topic_id, partition_id, |r| {
                    self.is_active_broker(delta, r)
                })
                .set_election(Election::Preferred)
                .build()
            };
            if let Some(record) = record {
                txn.push(MetadataRecord::PartitionChange(record))?;
                written += 1;
            }
        }
        Ok(false)
    }

    /// Kafka `alterPartitionReassignments` (KIP-455).
    pub(super) fn alter_partition_reassignments(
        &mut self,
        txn: &mut Txn,
        req: AlterPartitionReassignmentsRequest,
    ) -> HandlerResult {
        let mut results = Vec::new();
        for (topic, partitions) in req.topics {
            for (partition, target) in partitions {
                let error = self.alter_partition_reassignment(txn, &topic, partition, target)?;
                results.push(PartitionResult {
                    topic: topic.clone(),
                    partition,
                    error,
                });
            }
        }
        Ok(ControllerReply::AlterPartitionReassignments(
            AlterPartitionReassignmentsReply { results },
        ))
    }

    fn alter_partition_reassignment(
        &self,
        txn: &mut Txn,
        topic: &str,
        partition_id: i32,
        target: Option<Vec<i32>>,
    ) -> Result<ApiError, ControllerError> {
        let Some(topic_id) = txn.delta.topic_id(topic) else {
            return Ok(ApiError::new(
                ErrorCode::UnknownTopicOrPartition,
                format!("Unable to find a topic named {topic}."),
            ));
        };
        let Some(part) = txn.delta.partition(&topic_id, partition_id).cloned() else {
            return Ok(ApiError::new(
                ErrorCode::UnknownTopicOrPartition,
                format!("Unable to find partition {topic}:{partition_id}."),
            ));
        };
        let unclean = self.unclean_enabled(&txn.delta, topic);
        let record = {
            let delta = &txn.delta;
            let builder = PartitionChangeBuilder::new(&part, topic_id, partition_id, |r| {
                self.is_active_broker(delta, r)
            });
            match target {
                None => {
                    // cancelPartitionReassignment
                    if part.adding_replicas.is_empty() && part.removing_replicas.is_empty() {
                        return Ok(ApiError::code_only(ErrorCode::NoReassignmentInProgress));
                    }
                    let revert = PartitionReassignmentRevert::new(&part);
                    if revert.unclean {
                        if !unclean {
                            return Ok(ApiError::new(
                                ErrorCode::InvalidReplicaAssignment,
                                format!("Unable to revert partition assignment for {topic}:{partition_id} because it would require an unclean leader election."),
                            ));
                        }
                        if !revert
                            .replicas
                            .iter()
                            .any(|r| self.is_active_broker(delta, *r))
                        {
                            return Ok(ApiError::new(
                                ErrorCode::InvalidReplicaAssignment,
                                format!("Unable to revert partition assignment for {topic}:{partition_id}: no remaining replica can lead."),
                            ));
                        }
                    }
                    builder
                        .set_election(if unclean {
                            Election::Unclean
                        } else {
                            Election::Clean
                        })
                        .set_target_isr(revert.isr)
                        .set_target_replicas(revert.replicas)
                        .set_target_removing(Vec::new())
                        .set_target_adding(Vec::new())
                        .build()
                }
                Some(target) => {
                    // changePartitionReassignment
                    if let Err(e) = self.validate_reassignment_target(delta, &target) {
                        return Ok(e);
                    }
                    let r = PartitionReassignmentReplicas::new(&part.replicas, &target);
                    let mut builder = builder;
                    if r.replicas != part.replicas {
                        builder = builder.set_target_replicas(r.replicas);
                    }
                    if !r.removing.is_empty() {
                        builder = builder.set_target_removing(r.removing);
                    }
                    if !r.adding.is_empty() {
                        builder = builder.set_target_adding(r.adding);
                    }
                    builder.build()
                }
            }
        };
        if let Some(record) = record {
            if txn.room() == 0 {
                return Ok(ApiError::new(
                    ErrorCode::ThrottlingQuotaExceeded,
                    "Too many reassignments in one request; retry the rest.",
                ));
            }
            txn.push(MetadataRecord::PartitionChange(record))?;
        }
        Ok(ApiError::NONE)
    }

    /// Kafka `validateManualPartitionAssignment` for a reassignment target.
    fn validate_reassignment_target(
        &self,
        delta: &MetadataDelta,
        target: &[i32],
    ) -> Result<(), ApiError> {
        let err = |m: String| Err(ApiError::new(ErrorCode::InvalidReplicaAssignment, m));
        if target.is_empty() {
            return err("The manual partition assignment includes an empty replica list.".into());
        }
        let mut seen = BTreeSet::new();
        for id in target {
            if delta.broker(*id).is_none() {
                return err(format!(
                    "The manual partition assignment includes broker {id}, but no such broker is registered."
                ));
            }
            if !seen.insert(*id) {
                return err(format!(
                    "The manual partition assignment includes the broker {id} more than once."
                ));
            }
        }
        Ok(())
    }

    /// Kafka `listPartitionReassignments`, on the committed image.
    pub(super) fn list_partition_reassignments(
        &self,
        req: ListPartitionReassignmentsRequest,
    ) -> ControllerReply {
        let image = &self.committed;
        let mut out = Vec::new();
        let mut add = |topic: &str, partition: i32, p: &PartitionRegistration| {
            if !p.adding_replicas.is_empty() || !p.removing_replicas.is_empty() {
                out.push(OngoingReassignment {
                    topic: topic.to_string(),
                    partition,
                    replicas: p.replicas.clone(),
                    adding_replicas: p.adding_replicas.clone(),
                    removing_replicas: p.removing_replicas.clone(),
                });
            }
        };
        match req.topics {
            None => {
                for t in image.topics.values() {
                    for (id, p) in &t.partitions {
                        add(&t.name, *id, p);
                    }
                }
            }
            Some(topics) => {
                for (name, partitions) in topics {
                    if let Some(t) = image.topic_by_name(&name) {
                        for id in partitions {
                            if let Some(p) = t.partitions.get(&id) {
                                add(&t.name, id, p);
                            }
                        }
                    }
                }
            }
        }
        ControllerReply::ListPartitionReassignments(ListPartitionReassignmentsReply {
            error: ApiError::NONE,
            reassignments: out,
        })
    }
}
