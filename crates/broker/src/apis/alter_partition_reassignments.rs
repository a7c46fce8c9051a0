//! AlterPartitionReassignments (key 45), v0: starts (target replicas) or cancels (null)
//! partition reassignments (KIP-455). Forwarded to the active controller as a KRaft broker
//! does (`ControllerApis.handleAlterPartitionReassignments`); its per-partition answers come
//! back unchanged: UNKNOWN_TOPIC_OR_PARTITION, INVALID_REPLICA_ASSIGNMENT ("The manual
//! partition assignment includes broker 9, but no such broker is registered.", duplicates, an
//! empty list), NO_REASSIGNMENT_IN_PROGRESS for a cancel with nothing to cancel.
//!
//! A reassignment is *started* when the answer says NONE (the controller committed the
//! PartitionChangeRecord with the adding/removing replicas); it completes later when the new
//! replicas have joined the ISR. Started and cancelled reassignments are answered once this
//! broker's image shows them, bounded by the request's timeout.
//!
//! v1's `AllowReplicationFactorChange` is not offered (Fjord's controller has no such check).

use fjord_controller::{
    AlterPartitionReassignmentsRequest as ControllerAlterReassignments, ApiError, ControllerReply,
    ControllerRequest, ErrorCode, ReassignablePartition,
};
use fjord_metadata::MetadataImage;
use fjord_protocol::kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use fjord_protocol::kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, TopicName,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::VersionRange;

use crate::forwarding::{timeout_from_request, unexpected};
use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 0 };

pub async fn handle(
    broker: &Broker,
    request: &AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let topics: Vec<(String, Vec<ReassignablePartition>)> = request
        .topics
        .iter()
        .map(|t| {
            (
                t.name.to_string(),
                t.partitions
                    .iter()
                    .map(|p| {
                        (
                            p.partition_index,
                            p.replicas
                                .as_ref()
                                .map(|replicas| replicas.iter().map(|b| b.0).collect()),
                        )
                    })
                    .collect(),
            )
        })
        .collect();
    let timeout_ms = timeout_from_request(request.timeout_ms);
    let reply = broker
        .send_to_controller(
            ControllerRequest::AlterPartitionReassignments(ControllerAlterReassignments {
                topics: topics.clone(),
            }),
            timeout_ms,
        )
        .await
        .and_then(|reply| match reply {
            ControllerReply::AlterPartitionReassignments(reply) => Ok(reply.results),
            other => Err(unexpected(&other)),
        });
    let results = match reply {
        Ok(results) => results,
        Err(error) => return whole_request_error(request, &error),
    };
    // (topic, partition, target) of every change the controller accepted.
    let accepted: Vec<(&str, i32, Option<&Vec<i32>>)> = topics
        .iter()
        .flat_map(|(name, partitions)| {
            partitions
                .iter()
                .map(move |(index, target)| (name.as_str(), *index, target.as_ref()))
        })
        .filter(|(name, index, _)| {
            results
                .iter()
                .any(|r| r.topic == *name && r.partition == *index && r.error.is_ok())
        })
        .collect();
    if !accepted.is_empty()
        && !broker
            .wait_for_metadata(|image| all_visible(image, &accepted), timeout_ms)
            .await
    {
        tracing::warn!(
            partitions = accepted.len(),
            "reassignments did not reach this broker's image in time"
        );
    }
    let mut responses: Vec<ReassignableTopicResponse> = Vec::new();
    for result in &results {
        let partition = ReassignablePartitionResponse::default()
            .with_partition_index(result.partition)
            .with_error_code(result.error.code.code())
            .with_error_message(result.error.message.clone().map(StrBytes::from_string));
        match responses.last_mut() {
            Some(last) if last.name.as_str() == result.topic => last.partitions.push(partition),
            _ => responses.push(
                ReassignableTopicResponse::default()
                    .with_name(TopicName(StrBytes::from_string(result.topic.clone())))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    AlterPartitionReassignmentsResponse::default()
        .with_error_code(0)
        .with_error_message(None)
        .with_responses(responses)
}

/// Whether `image` shows every accepted change: a target's replicas first in the replica
/// list with the reassignment under way or complete; a cancel's lists cleared.
fn all_visible(image: &MetadataImage, accepted: &[(&str, i32, Option<&Vec<i32>>)]) -> bool {
    accepted.iter().all(|(topic, index, target)| {
        let Some(p) = image
            .topic_by_name(topic)
            .and_then(|t| t.partitions.get(index))
        else {
            return true;
        };
        let in_progress = !p.adding_replicas.is_empty() || !p.removing_replicas.is_empty();
        match target {
            None => !in_progress,
            Some(target) => {
                p.replicas.starts_with(target) && (in_progress || p.replicas.len() == target.len())
            }
        }
    })
}

/// `error` at the top level and for every partition (Kafka's `getErrorResponse`).
fn whole_request_error(
    request: &AlterPartitionReassignmentsRequest,
    error: &ApiError,
) -> AlterPartitionReassignmentsResponse {
    let message = error.message.clone().map(StrBytes::from_string);
    let code = if error.code == ErrorCode::None {
        ErrorCode::UnknownServerError.code()
    } else {
        error.code.code()
    };
    AlterPartitionReassignmentsResponse::default()
        .with_error_code(code)
        .with_error_message(message.clone())
        .with_responses(
            request
                .topics
                .iter()
                .map(|t| {
                    ReassignableTopicResponse::default()
                        .with_name(t.name.clone())
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    ReassignablePartitionResponse::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(code)
                                        .with_error_message(message.clone())
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
}
