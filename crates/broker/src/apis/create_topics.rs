//! CreateTopics (key 19), with Kafka's validation and error codes.

use std::collections::BTreeMap;

use fjord_protocol::kafka_protocol::messages::create_topics_request::CreatableTopic;
use fjord_protocol::kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use fjord_protocol::kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ResponseError, VersionRange};

use crate::replica_manager::{is_internal_topic, CreateTopicError};
use crate::topic_config::validate_topic_configs;
use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 2, max: 7 };

pub fn handle(
    broker: &Broker,
    api_version: i16,
    request: &CreateTopicsRequest,
) -> CreateTopicsResponse {
    let mut seen = std::collections::HashSet::new();
    let duplicates: std::collections::HashSet<String> = request
        .topics
        .iter()
        .filter(|t| !seen.insert(t.name.to_string()))
        .map(|t| t.name.to_string())
        .collect();
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            if duplicates.contains(topic.name.as_str()) {
                // Kafka rejects every occurrence of a name listed twice.
                return failure(
                    topic,
                    ResponseError::InvalidRequest,
                    "Duplicate topic name.".to_string(),
                );
            }
            if is_internal_topic(&topic.name) {
                // The group coordinator creates it, with its own partition count and configs.
                return failure(
                    topic,
                    ResponseError::InvalidRequest,
                    format!("Creation of internal topic {} is prohibited: the broker creates it on first use.", topic.name.as_str()),
                );
            }
            create_one(broker, api_version, topic, request.validate_only)
        })
        .collect();
    CreateTopicsResponse::default().with_topics(topics)
}

fn failure(topic: &CreatableTopic, error: ResponseError, message: String) -> CreatableTopicResult {
    CreatableTopicResult::default()
        .with_name(topic.name.clone())
        .with_error_code(error.code())
        .with_error_message(Some(StrBytes::from_string(message)))
        .with_num_partitions(-1)
        .with_replication_factor(-1)
}

fn create_one(
    broker: &Broker,
    api_version: i16,
    topic: &CreatableTopic,
    validate_only: bool,
) -> CreatableTopicResult {
    let config = broker.config();
    let explicit_assignment = !topic.assignments.is_empty();
    if explicit_assignment && (topic.num_partitions != -1 || topic.replication_factor != -1) {
        return failure(
            topic,
            ResponseError::InvalidRequest,
            "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.".into(),
        );
    }
    let partitions = if explicit_assignment {
        // Manual assignment: partitions must be 0..n and every replica must be this broker.
        let mut indexes: Vec<i32> = topic
            .assignments
            .iter()
            .map(|a| a.partition_index)
            .collect();
        indexes.sort_unstable();
        if indexes.iter().enumerate().any(|(i, p)| *p != i as i32) {
            return failure(
                topic,
                ResponseError::InvalidReplicaAssignment,
                "Partitions should be consecutive and start at 0.".into(),
            );
        }
        if topic
            .assignments
            .iter()
            .any(|a| a.broker_ids.len() != 1 || a.broker_ids[0].0 != config.node_id)
        {
            return failure(
                topic,
                ResponseError::InvalidReplicaAssignment,
                format!(
                    "Replica assignments may only name broker {} on this single-node cluster.",
                    config.node_id
                ),
            );
        }
        indexes.len() as i32
    } else if topic.num_partitions == -1 {
        config.num_partitions
    } else {
        topic.num_partitions
    };
    let replication_factor = if topic.replication_factor == -1 {
        config.default_replication_factor
    } else {
        topic.replication_factor
    };
    if !explicit_assignment && replication_factor <= 0 {
        return failure(
            topic,
            ResponseError::InvalidReplicationFactor,
            "Replication factor must be larger than 0.".into(),
        );
    }
    if replication_factor > 1 {
        return failure(
            topic,
            ResponseError::InvalidReplicationFactor,
            format!("Unable to replicate the partition {replication_factor} time(s): The target replication factor of {replication_factor} cannot be reached because only 1 broker(s) are registered."),
        );
    }
    let requested: BTreeMap<String, Option<String>> = topic
        .configs
        .iter()
        .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
        .collect();
    let configs = match validate_topic_configs(&requested) {
        Ok(configs) => configs,
        Err(message) => return failure(topic, ResponseError::InvalidConfig, message),
    };
    match broker
        .replica_manager()
        .create_topic(&topic.name, partitions, configs, validate_only)
    {
        Ok(created) => {
            let mut result = CreatableTopicResult::default()
                .with_name(topic.name.clone())
                .with_num_partitions(partitions)
                .with_replication_factor(1);
            if api_version >= 7 && !validate_only {
                result = result.with_topic_id(created.id);
            }
            if api_version >= 5 {
                let described = crate::topic_config::describe(&created.configs, &broker.config())
                    .into_iter()
                    .map(|entry| {
                        CreatableTopicConfigs::default()
                            .with_name(StrBytes::from_string(entry.name))
                            .with_value(Some(StrBytes::from_string(entry.value)))
                            .with_config_source(entry.source.code())
                    })
                    .collect();
                result = result.with_configs(Some(described));
            }
            result
        }
        Err(CreateTopicError::AlreadyExists(name)) => failure(
            topic,
            ResponseError::TopicAlreadyExists,
            format!("Topic '{name}' already exists."),
        ),
        Err(CreateTopicError::InvalidName(message)) => {
            failure(topic, ResponseError::InvalidTopicException, message)
        }
        Err(CreateTopicError::InvalidPartitions(message)) => {
            failure(topic, ResponseError::InvalidPartitions, message)
        }
        Err(CreateTopicError::InvalidReplicationFactor(message)) => {
            failure(topic, ResponseError::InvalidReplicationFactor, message)
        }
        Err(CreateTopicError::Broker(err)) => {
            tracing::warn!(topic = %topic.name.as_str(), error = %err, "create topic failed");
            failure(topic, ResponseError::KafkaStorageError, err.to_string())
        }
    }
}
