//! ElectLeaders (key 43), v0-v2: preferred (type 0) or unclean (type 1, v1+) leader elections,
//! for the named partitions or (null) every partition. Like a KRaft broker (Kafka's
//! `KafkaApis` forwards the request, `ControllerApis.handleElectLeaders` answers it) the
//! request goes to the active controller, which answers per partition: NONE,
//! ELECTION_NOT_NEEDED, PREFERRED_LEADER_NOT_AVAILABLE, ELIGIBLE_LEADERS_NOT_AVAILABLE or
//! UNKNOWN_TOPIC_OR_PARTITION; for "every partition" it leaves ELECTION_NOT_NEEDED out.
//!
//! Elections that succeeded are answered once this broker's image shows the new leader (the
//! preferred replica, or any leader for an unclean election), bounded by the request's
//! timeout, so a client that reads the partition back here sees the result (Kafka's
//! pre-KRaft `DelayedElectLeader` waited the same way).
//!
//! A whole-request failure (no controller in time: REQUEST_TIMED_OUT; an election type other
//! than 0 or 1: INVALID_REQUEST) is given to every named partition and, from v1, at the top
//! level too, as Kafka's `ElectLeadersRequest.getErrorResponse` does.

use fjord_controller::{
    ApiError, ControllerReply, ControllerRequest, ElectLeadersRequest as ControllerElectLeaders,
    ElectionType, ErrorCode, PartitionResult as ControllerPartitionResult,
};
use fjord_protocol::kafka_protocol::messages::elect_leaders_response::{
    PartitionResult, ReplicaElectionResult,
};
use fjord_protocol::kafka_protocol::messages::{
    ElectLeadersRequest, ElectLeadersResponse, TopicName,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::VersionRange;

use crate::forwarding::{timeout_from_request, unexpected};
use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 2 };

/// First version with `ElectionType` and the top-level `ErrorCode`.
const ELECTION_TYPE_VERSION: i16 = 1;

pub async fn handle(
    broker: &Broker,
    api_version: i16,
    request: &ElectLeadersRequest,
) -> ElectLeadersResponse {
    // v0 has no ElectionType: preferred.
    let election_type = match (api_version >= ELECTION_TYPE_VERSION, request.election_type) {
        (false, _) | (true, 0) => ElectionType::Preferred,
        (true, 1) => ElectionType::Unclean,
        (true, other) => {
            return whole_request_error(
                api_version,
                request,
                &ApiError::new(
                    ErrorCode::InvalidRequest,
                    format!("Unknown election type {other}."),
                ),
            )
        }
    };
    let topic_partitions: Option<Vec<(String, Vec<i32>)>> =
        request.topic_partitions.as_ref().map(|topics| {
            topics
                .iter()
                .map(|t| (t.topic.to_string(), t.partitions.clone()))
                .collect()
        });
    let timeout_ms = timeout_from_request(request.timeout_ms);
    let reply = broker
        .send_to_controller(
            ControllerRequest::ElectLeaders(ControllerElectLeaders {
                election_type,
                topic_partitions,
            }),
            timeout_ms,
        )
        .await
        .and_then(|reply| match reply {
            ControllerReply::ElectLeaders(reply) => Ok(reply.results),
            other => Err(unexpected(&other)),
        });
    let results = match reply {
        Ok(results) => results,
        Err(error) => return whole_request_error(api_version, request, &error),
    };
    wait_for_elected_leaders(broker, election_type, &results, timeout_ms).await;
    response_of(&results)
}

/// Waits until this broker's image shows a leader for every partition elected successfully.
async fn wait_for_elected_leaders(
    broker: &Broker,
    election_type: ElectionType,
    results: &[ControllerPartitionResult],
    timeout_ms: u64,
) {
    let elected: Vec<(&str, i32)> = results
        .iter()
        .filter(|r| r.error.is_ok())
        .map(|r| (r.topic.as_str(), r.partition))
        .collect();
    if elected.is_empty() {
        return;
    }
    let visible = broker
        .wait_for_metadata(
            |image| {
                elected.iter().all(|(topic, partition)| {
                    let Some(p) = image
                        .topic_by_name(topic)
                        .and_then(|t| t.partitions.get(partition))
                    else {
                        // Deleted meanwhile: nothing more to wait for.
                        return true;
                    };
                    match election_type {
                        ElectionType::Preferred => p.replicas.first() == Some(&p.leader),
                        ElectionType::Unclean => p.leader >= 0,
                    }
                })
            },
            timeout_ms,
        )
        .await;
    if !visible {
        tracing::warn!(
            partitions = elected.len(),
            "elected leaders did not reach this broker's image in time"
        );
    }
}

/// The controller's results grouped by topic (in answer order).
fn response_of(results: &[ControllerPartitionResult]) -> ElectLeadersResponse {
    let mut topics: Vec<ReplicaElectionResult> = Vec::new();
    for result in results {
        let partition = PartitionResult::default()
            .with_partition_id(result.partition)
            .with_error_code(result.error.code.code())
            .with_error_message(result.error.message.clone().map(StrBytes::from_string));
        match topics.last_mut() {
            Some(last) if last.topic.as_str() == result.topic => {
                last.partition_result.push(partition)
            }
            _ => topics.push(
                ReplicaElectionResult::default()
                    .with_topic(topic_name(&result.topic))
                    .with_partition_result(vec![partition]),
            ),
        }
    }
    ElectLeadersResponse::default()
        .with_error_code(0)
        .with_replica_election_results(topics)
}

/// `error` for every named partition, and at the top level from v1.
fn whole_request_error(
    api_version: i16,
    request: &ElectLeadersRequest,
    error: &ApiError,
) -> ElectLeadersResponse {
    let message = error.message.clone().map(StrBytes::from_string);
    let results = request
        .topic_partitions
        .iter()
        .flatten()
        .map(|t| {
            ReplicaElectionResult::default()
                .with_topic(t.topic.clone())
                .with_partition_result(
                    t.partitions
                        .iter()
                        .map(|&p| {
                            PartitionResult::default()
                                .with_partition_id(p)
                                .with_error_code(error.code.code())
                                .with_error_message(message.clone())
                        })
                        .collect(),
                )
        })
        .collect();
    let top_level = if api_version >= ELECTION_TYPE_VERSION {
        error.code.code()
    } else {
        0
    };
    ElectLeadersResponse::default()
        .with_error_code(top_level)
        .with_replica_election_results(results)
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}
