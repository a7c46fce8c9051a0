//! CreatePartitions (key 37), v0-v3: grows topics' partition counts (never shrinks), with
//! `validate_only`. Kafka's errors and messages: INVALID_PARTITIONS ("Topic currently has N
//! partitions, which is higher than the requested M."), UNKNOWN_TOPIC_OR_PARTITION,
//! INVALID_REPLICA_ASSIGNMENT for manual assignments naming another broker, INVALID_REQUEST for
//! `__consumer_offsets` (its count decides group routing) and for a topic named twice.

use std::collections::HashSet;

use fjord_protocol::kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use fjord_protocol::kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ResponseError, VersionRange};

use crate::replica_manager::CreatePartitionsError;
use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 3 };

pub fn handle(broker: &Broker, request: &CreatePartitionsRequest) -> CreatePartitionsResponse {
    let mut seen = HashSet::new();
    let duplicates: HashSet<&str> = request
        .topics
        .iter()
        .filter(|t| !seen.insert(t.name.as_str()))
        .map(|t| t.name.as_str())
        .collect();
    let node_id = broker.config().node_id;
    let results = request
        .topics
        .iter()
        .map(|topic| {
            let failed = |error: ResponseError, message: String| {
                CreatePartitionsTopicResult::default()
                    .with_name(topic.name.clone())
                    .with_error_code(error.code())
                    .with_error_message(Some(StrBytes::from_string(message)))
            };
            if duplicates.contains(topic.name.as_str()) {
                return failed(
                    ResponseError::InvalidRequest,
                    "Duplicate topic in request.".to_string(),
                );
            }
            if let Some(assignments) = &topic.assignments {
                let wrong = assignments
                    .iter()
                    .any(|a| a.broker_ids.iter().any(|b| b.0 != node_id) || a.broker_ids.len() != 1);
                if wrong {
                    return failed(
                        ResponseError::InvalidReplicaAssignment,
                        format!("This cluster has one broker (node {node_id}); each new partition must be assigned to it alone."),
                    );
                }
            }
            match broker.replica_manager().create_partitions(
                topic.name.as_str(),
                topic.count,
                request.validate_only,
            ) {
                Ok(()) => CreatePartitionsTopicResult::default().with_name(topic.name.clone()),
                Err(CreatePartitionsError::UnknownTopic(name)) => failed(
                    ResponseError::UnknownTopicOrPartition,
                    format!("This server does not host topic '{name}'."),
                ),
                Err(CreatePartitionsError::InvalidPartitions(message)) => {
                    failed(ResponseError::InvalidPartitions, message)
                }
                Err(CreatePartitionsError::InvalidRequest(message)) => {
                    failed(ResponseError::InvalidRequest, message)
                }
                Err(CreatePartitionsError::Broker(err)) => {
                    tracing::error!(topic = %topic.name.as_str(), error = %err, "CreatePartitions failed");
                    failed(ResponseError::KafkaStorageError, err.to_string())
                }
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}
