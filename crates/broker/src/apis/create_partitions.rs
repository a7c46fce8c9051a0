//! CreatePartitions (key 37), v0-v3: grows topics' partition counts (never shrinks), with
//! `validate_only`. Checked here (UNKNOWN_TOPIC_OR_PARTITION, INVALID_REQUEST for the internal
//! topics, whose counts decide group and transactional-id routing, and for a topic named
//! twice), then done by the controller, whose Kafka errors and messages come back unchanged
//! (INVALID_PARTITIONS "Topic currently has N partitions, which is higher than the requested
//! M.", INVALID_REPLICA_ASSIGNMENT); answered once the new partitions are in this broker's
//! image.

use std::collections::HashSet;

use fjord_protocol::kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use fjord_protocol::kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ResponseError, VersionRange};

use fjord_controller::{
    ApiError, ControllerReply, ControllerRequest,
    CreatePartitionsRequest as ControllerCreatePartitions,
    CreatePartitionsTopic as ControllerTopic, ErrorCode,
};

use crate::replica_manager::{is_internal_topic, PARTITIONS_TOTAL_MAX};
use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 3 };

pub async fn handle(
    broker: &Broker,
    request: &CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut seen = HashSet::new();
    let duplicates: HashSet<&str> = request
        .topics
        .iter()
        .filter(|t| !seen.insert(t.name.as_str()))
        .map(|t| t.name.as_str())
        .collect();
    let image = broker.image();
    let mut results = Vec::with_capacity(request.topics.len());
    let mut forwarded = Vec::new();
    for topic in &request.topics {
        let failed = |error: ResponseError, message: String| {
            CreatePartitionsTopicResult::default()
                .with_name(topic.name.clone())
                .with_error_code(error.code())
                .with_error_message(Some(StrBytes::from_string(message)))
        };
        let name = topic.name.as_str();
        let local = if duplicates.contains(name) {
            Err(failed(
                ResponseError::InvalidRequest,
                "Duplicate topic in request.".to_string(),
            ))
        } else if is_internal_topic(name) {
            // Groups and transactional ids are routed by hash modulo this topic's partition count.
            Err(failed(
                ResponseError::InvalidRequest,
                format!("The number of partitions of {name} cannot change."),
            ))
        } else {
            match image.topic_by_name(name) {
                None => Err(failed(
                    ResponseError::UnknownTopicOrPartition,
                    format!("This server does not host topic '{name}'."),
                )),
                Some(existing) => {
                    let current = existing.partitions.len();
                    let added = usize::try_from(topic.count)
                        .unwrap_or(0)
                        .saturating_sub(current);
                    let current_count = i32::try_from(current).unwrap_or(i32::MAX);
                    // Kafka's broker-side wording (the controller checks again).
                    if topic.count == current_count {
                        Err(failed(
                            ResponseError::InvalidPartitions,
                            format!("Topic already has {current} partitions."),
                        ))
                    } else if topic.count < current_count {
                        Err(failed(
                            ResponseError::InvalidPartitions,
                            format!("Topic currently has {current} partitions, which is higher than the requested {}.", topic.count),
                        ))
                    } else if added > PARTITIONS_TOTAL_MAX {
                        Err(failed(
                            ResponseError::InvalidPartitions,
                            format!("Adding {added} partitions would exceed the limit of {PARTITIONS_TOTAL_MAX} partitions."),
                        ))
                    } else {
                        Ok(())
                    }
                }
            }
        };
        match local {
            Ok(()) => {
                forwarded.push(ControllerTopic {
                    name: name.to_string(),
                    count: topic.count,
                    assignments: topic.assignments.as_ref().map(|assignments| {
                        assignments
                            .iter()
                            .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
                            .collect()
                    }),
                });
                results.push((
                    CreatePartitionsTopicResult::default().with_name(topic.name.clone()),
                    true,
                ));
            }
            Err(result) => results.push((result, false)),
        }
    }
    if !forwarded.is_empty() {
        let timeout_ms = crate::forwarding::timeout_from_request(request.timeout_ms);
        let wanted: Vec<(String, i32)> = forwarded
            .iter()
            .map(|t| (t.name.clone(), t.count))
            .collect();
        let reply = broker
            .send_to_controller(
                ControllerRequest::CreatePartitions(ControllerCreatePartitions {
                    topics: forwarded,
                    validate_only: request.validate_only,
                }),
                timeout_ms,
            )
            .await
            .and_then(|reply| match reply {
                ControllerReply::CreatePartitions(reply) => Ok(reply.topics),
                other => Err(crate::forwarding::unexpected(&other)),
            });
        let errors: Vec<ApiError> = match reply {
            Ok(topics) => topics.into_iter().map(|(_, error)| error).collect(),
            Err(error) => wanted.iter().map(|_| error.clone()).collect(),
        };
        let grown: Vec<(String, i32)> = wanted
            .iter()
            .zip(&errors)
            .filter(|(_, error)| error.is_ok())
            .map(|(w, _)| w.clone())
            .collect();
        if !request.validate_only
            && !grown.is_empty()
            && !broker
                .wait_for_metadata(
                    |image| {
                        grown.iter().all(|(name, count)| {
                            image
                                .topic_by_name(name)
                                .is_some_and(|t| t.partitions.len() >= *count as usize)
                        })
                    },
                    timeout_ms,
                )
                .await
        {
            tracing::warn!(topics = ?grown, "new partitions did not reach this broker's image in time");
        }
        let mut errors = errors.into_iter();
        for (result, is_forwarded) in results.iter_mut() {
            if !*is_forwarded {
                continue;
            }
            let error = errors.next().unwrap_or_else(|| {
                ApiError::new(ErrorCode::UnknownServerError, "no answer for this topic")
            });
            if !error.is_ok() {
                let answered = std::mem::take(result);
                *result = answered
                    .with_error_code(error.code.code())
                    .with_error_message(error.message.map(StrBytes::from_string));
            }
        }
    }
    CreatePartitionsResponse::default().with_results(results.into_iter().map(|(r, _)| r).collect())
}
