//! The shard's KIP-848 side: ConsumerGroupHeartbeat and ConsumerGroupDescribe on
//! [`ConsumerGroup`]s, member expiry, and their place in ListGroups.
//!
//! Membership lives in memory only. Kafka also writes it to `__consumer_offsets`
//! (ConsumerGroupMetadata, TargetAssignment, CurrentMemberAssignment records); here a restart
//! forgets members, whose next heartbeat gets UNKNOWN_MEMBER_ID and rejoins (KIP-848 clients do
//! that by themselves). Committed offsets are persisted like any group's.

use std::collections::{BTreeSet, HashSet};

use fjord_protocol::kafka_protocol::messages::consumer_group_describe_response::{
    self as describe, DescribedGroup,
};
use fjord_protocol::kafka_protocol::messages::consumer_group_heartbeat_response::{
    self as heartbeat, ConsumerGroupHeartbeatResponse,
};
use fjord_protocol::kafka_protocol::messages::list_groups_response::ListedGroup;
use fjord_protocol::kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, GroupId, TopicName};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::ResponseError;
use tracing::info;

use super::assignor::{Assignment, TopicMetadata};
use super::classic_group::ClassicGroupState;
use super::consumer_group::{ConsumerGroup, ConsumerGroupConfig, HeartbeatInput};
use super::group_metadata_manager::Group;
use super::shard::GroupCoordinatorShard;
use super::RequestContext;

/// `member_type` in ConsumerGroupDescribe v1: this member speaks the consumer protocol.
const MEMBER_TYPE_CONSUMER: i8 = 1;

impl GroupCoordinatorShard {
    pub fn consumer_group_heartbeat(
        &mut self,
        ctx: &RequestContext,
        request: &ConsumerGroupHeartbeatRequest,
        topic_metadata: &dyn Fn(&str) -> Option<TopicMetadata>,
        now_ms: i64,
    ) -> ConsumerGroupHeartbeatResponse {
        let group_id = request.group_id.as_str();
        let interval_ms = self.config().consumer_heartbeat_interval_ms;
        let failed = |error: ResponseError, message: Option<String>| {
            ConsumerGroupHeartbeatResponse::default()
                .with_error_code(error.code())
                .with_error_message(message.map(StrBytes::from_string))
                .with_heartbeat_interval_ms(interval_ms)
        };
        if !self.consumer_groups.contains_key(group_id) {
            match self.groups().group(group_id) {
                Some(Group::Classic(classic))
                    if !classic.is_in_state(ClassicGroupState::Empty)
                        && !classic.is_in_state(ClassicGroupState::Dead) =>
                {
                    // Kafka converts a classic group online; we only take over empty ones.
                    return failed(
                        ResponseError::GroupIdNotFound,
                        Some(format!("group {group_id} is a classic group with members")),
                    );
                }
                _ => {}
            }
            if request.member_epoch != 0 {
                return failed(ResponseError::UnknownMemberId, None);
            }
            if self.consumer_groups.len() >= self.config().groups_count_max {
                return failed(ResponseError::GroupMaxSizeReached, None);
            }
            info!(group = group_id, "creating a consumer (KIP-848) group");
            self.consumer_groups.insert(
                group_id.to_string(),
                ConsumerGroup::new(group_id, &self.config().consumer_assignor),
            );
        }
        let config = ConsumerGroupConfig {
            max_size: self.config().group_max_size,
            default_assignor: self.config().consumer_assignor.clone(),
        };
        let input = heartbeat_input(ctx, request);
        let Some(group) = self.consumer_groups.get_mut(group_id) else {
            return failed(ResponseError::GroupIdNotFound, None);
        };
        let result = group.heartbeat(
            input,
            topic_metadata,
            &config,
            || uuid::Uuid::new_v4().to_string(),
            now_ms,
        );
        match result {
            Ok(out) => ConsumerGroupHeartbeatResponse::default()
                .with_member_id(Some(StrBytes::from_string(out.member_id)))
                .with_member_epoch(out.member_epoch)
                .with_heartbeat_interval_ms(interval_ms)
                .with_assignment(out.assignment.map(|a| {
                    heartbeat::Assignment::default().with_topic_partitions(
                        a.into_iter()
                            .map(|(topic_id, partitions)| {
                                heartbeat::TopicPartitions::default()
                                    .with_topic_id(topic_id)
                                    .with_partitions(partitions.into_iter().collect())
                            })
                            .collect(),
                    )
                })),
            Err(error) => failed(error, None),
        }
    }

    pub fn consumer_group_describe(
        &self,
        group_id: &str,
        topic_name: &dyn Fn(&uuid::Uuid) -> Option<String>,
    ) -> DescribedGroup {
        let Some(group) = self.consumer_groups.get(group_id) else {
            return DescribedGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(group_id.to_string())))
                .with_error_code(ResponseError::GroupIdNotFound.code())
                .with_group_state(StrBytes::from_static_str("Dead"))
                .with_authorized_operations(crate::apis::AUTHORIZED_OPERATIONS_OMITTED);
        };
        let assignment = |a: &Assignment| {
            describe::Assignment::default().with_topic_partitions(
                a.iter()
                    .map(|(id, partitions)| {
                        describe::TopicPartitions::default()
                            .with_topic_id(*id)
                            .with_topic_name(TopicName(StrBytes::from_string(
                                topic_name(id).unwrap_or_default(),
                            )))
                            .with_partitions(partitions.iter().copied().collect())
                    })
                    .collect(),
            )
        };
        let members = group
            .members
            .values()
            .map(|m| {
                describe::Member::default()
                    .with_member_id(StrBytes::from_string(m.member_id.clone()))
                    .with_instance_id(m.instance_id.clone().map(StrBytes::from_string))
                    .with_rack_id(m.rack_id.clone().map(StrBytes::from_string))
                    .with_member_epoch(m.member_epoch)
                    .with_client_id(StrBytes::from_string(m.client_id.clone()))
                    .with_client_host(StrBytes::from_string(m.client_host.clone()))
                    .with_subscribed_topic_names(
                        m.subscribed_topic_names
                            .iter()
                            .map(|t| TopicName(StrBytes::from_string(t.clone())))
                            .collect(),
                    )
                    .with_assignment(assignment(&m.assigned))
                    .with_target_assignment(assignment(
                        group.target.get(&m.member_id).unwrap_or(&Assignment::new()),
                    ))
                    .with_member_type(MEMBER_TYPE_CONSUMER)
            })
            .collect();
        DescribedGroup::default()
            .with_group_id(GroupId(StrBytes::from_string(group_id.to_string())))
            .with_group_state(StrBytes::from_static_str(group.state().name()))
            .with_group_epoch(group.group_epoch)
            .with_assignment_epoch(group.assignment_epoch)
            .with_assignor_name(StrBytes::from_string(group.assignor.clone()))
            .with_members(members)
            .with_authorized_operations(crate::apis::AUTHORIZED_OPERATIONS_OMITTED)
    }

    /// Removes members whose session expired or who did not revoke in time; their partitions
    /// go to the others at their next heartbeats.
    pub(super) fn expire_consumer_group_members(&mut self, now_ms: i64) {
        let session_timeout_ms = i64::from(self.config().consumer_session_timeout_ms);
        for (group_id, group) in &mut self.consumer_groups {
            let expired = group.expired_members(now_ms, session_timeout_ms);
            if expired.is_empty() {
                continue;
            }
            // The subscribed topics' metadata is kept as it was: the next heartbeat compares
            // it with the live metadata and recomputes if it changed.
            let known = group.subscribed_topics.clone();
            let lookup = move |name: &str| known.get(name).cloned();
            for member_id in expired {
                info!(group = %group_id, member = %member_id, "consumer group member expired");
                group.remove_member(&member_id, &lookup);
            }
        }
    }

    pub(super) fn list_consumer_groups(
        &self,
        states: &HashSet<String>,
        types: &HashSet<String>,
    ) -> Vec<ListedGroup> {
        self.consumer_groups
            .iter()
            .filter(|(_, g)| {
                (states.is_empty() || states.contains(&g.state().name().to_ascii_lowercase()))
                    && (types.is_empty() || types.contains("consumer"))
            })
            .map(|(id, g)| {
                ListedGroup::default()
                    .with_group_id(GroupId(StrBytes::from_string(id.clone())))
                    .with_protocol_type(StrBytes::from_static_str("consumer"))
                    .with_group_state(StrBytes::from_static_str(g.state().name()))
                    .with_group_type(StrBytes::from_static_str("consumer"))
            })
            .collect()
    }
}

fn heartbeat_input(
    ctx: &RequestContext,
    request: &ConsumerGroupHeartbeatRequest,
) -> HeartbeatInput {
    HeartbeatInput {
        member_id: request.member_id.to_string(),
        member_epoch: request.member_epoch,
        instance_id: request.instance_id.as_ref().map(|s| s.to_string()),
        rack_id: request.rack_id.as_ref().map(|s| s.to_string()),
        rebalance_timeout_ms: (request.rebalance_timeout_ms > 0)
            .then_some(request.rebalance_timeout_ms),
        subscribed_topic_names: request
            .subscribed_topic_names
            .as_ref()
            .map(|names| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>()),
        server_assignor: request.server_assignor.as_ref().map(|s| s.to_string()),
        owned: request.topic_partitions.as_ref().map(|tps| {
            tps.iter()
                .map(|tp| (tp.topic_id, tp.partitions.iter().copied().collect()))
                .filter(|(_, ps): &(uuid::Uuid, BTreeSet<i32>)| !ps.is_empty())
                .collect()
        }),
        client_id: ctx.client_id.clone(),
        client_host: ctx.client_host.clone(),
    }
}
