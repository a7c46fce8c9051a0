//! CreateTopics (key 19): validated here with Kafka's broker-side checks and error codes, then
//! created by the controller (placement, INVALID_REPLICATION_FACTOR, INVALID_REPLICA_ASSIGNMENT,
//! TOPIC_ALREADY_EXISTS come from it unchanged); answered once the topics are in this broker's
//! metadata image.

use std::collections::BTreeMap;

use fjord_protocol::kafka_protocol::messages::create_topics_request::CreatableTopic;
use fjord_protocol::kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use fjord_protocol::kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ResponseError, VersionRange};

use fjord_controller::{
    ApiError, CreatableTopic as ControllerTopic, CreateTopicsRequest as ControllerCreateTopics,
};

use crate::replica_manager::{is_internal_topic, validate_topic_name, PARTITIONS_TOTAL_MAX};
use crate::topic_config::validate_topic_configs;
use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 2, max: 7 };

pub async fn handle(
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
    // Local validation first (Kafka's broker-side checks); what passes goes to the controller
    // in one request, answered in request order.
    let mut results: Vec<Option<CreatableTopicResult>> = Vec::with_capacity(request.topics.len());
    let mut forwarded = Vec::new();
    let mut configs_of = Vec::new();
    for topic in &request.topics {
        let local = if duplicates.contains(topic.name.as_str()) {
            // Kafka rejects every occurrence of a name listed twice.
            Err(failure(
                topic,
                ResponseError::InvalidRequest,
                "Duplicate topic name.".to_string(),
            ))
        } else if is_internal_topic(&topic.name) {
            // The coordinators create them, with their own partition counts and configs.
            Err(failure(
                topic,
                ResponseError::InvalidRequest,
                format!("Creation of internal topic {} is prohibited: the broker creates it on first use.", topic.name.as_str()),
            ))
        } else {
            validate(broker, topic).map_err(|result| *result)
        };
        match local {
            Ok((creatable, configs)) => {
                forwarded.push(creatable);
                configs_of.push(configs);
                results.push(None);
            }
            Err(result) => results.push(Some(result)),
        }
    }
    if !forwarded.is_empty() {
        let timeout_ms = crate::forwarding::timeout_from_request(request.timeout_ms);
        let outcome = broker
            .create_topics_via_controller(
                ControllerCreateTopics {
                    topics: forwarded.clone(),
                    validate_only: request.validate_only,
                },
                timeout_ms,
            )
            .await;
        let mut replies = match outcome {
            Ok(reply) => reply.topics.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(error) => forwarded.iter().map(|_| Err(error.clone())).collect(),
        }
        .into_iter();
        let mut configs_of = configs_of.into_iter();
        let mut request_topics = request.topics.iter();
        for slot in results.iter_mut() {
            let topic = request_topics.next();
            if slot.is_some() {
                continue;
            }
            let (Some(topic), Some(reply), Some(configs)) =
                (topic, replies.next(), configs_of.next())
            else {
                continue;
            };
            *slot = Some(match reply {
                Ok(reply) if reply.error.is_ok() => succeeded(
                    broker,
                    api_version,
                    topic,
                    &reply,
                    &configs,
                    request.validate_only,
                ),
                Ok(reply) => controller_failure(topic, &reply.error),
                Err(error) => controller_failure(topic, &error),
            });
        }
    }
    let topics = results
        .into_iter()
        .zip(&request.topics)
        .map(|(result, topic)| {
            result.unwrap_or_else(|| {
                failure(
                    topic,
                    ResponseError::UnknownServerError,
                    "no answer for this topic".into(),
                )
            })
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

/// The controller's error, code and message unchanged.
fn controller_failure(topic: &CreatableTopic, error: &ApiError) -> CreatableTopicResult {
    CreatableTopicResult::default()
        .with_name(topic.name.clone())
        .with_error_code(error.code.code())
        .with_error_message(error.message.clone().map(StrBytes::from_string))
        .with_num_partitions(-1)
        .with_replication_factor(-1)
}

/// Kafka's broker-side checks: assignments and counts not both, partition indexes 0..n, a
/// positive replication factor, valid topic configs. Returns the controller's request entry
/// and the validated configs.
fn validate(
    broker: &Broker,
    topic: &CreatableTopic,
) -> Result<(ControllerTopic, BTreeMap<String, String>), Box<CreatableTopicResult>> {
    let config = broker.config();
    let explicit_assignment = !topic.assignments.is_empty();
    if explicit_assignment && (topic.num_partitions != -1 || topic.replication_factor != -1) {
        return Err(Box::new(failure(
            topic,
            ResponseError::InvalidRequest,
            "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.".into(),
        )));
    }
    if explicit_assignment {
        let mut indexes: Vec<i32> = topic
            .assignments
            .iter()
            .map(|a| a.partition_index)
            .collect();
        indexes.sort_unstable();
        if indexes.iter().enumerate().any(|(i, p)| *p != i as i32) {
            return Err(Box::new(failure(
                topic,
                ResponseError::InvalidReplicaAssignment,
                "Partitions should be consecutive and start at 0.".into(),
            )));
        }
    }
    let partitions = if explicit_assignment {
        topic.assignments.len() as i32
    } else if topic.num_partitions == -1 {
        config.num_partitions
    } else {
        topic.num_partitions
    };
    if let Err(message) = validate_topic_name(&topic.name) {
        return Err(Box::new(failure(
            topic,
            ResponseError::InvalidTopicException,
            message,
        )));
    }
    if partitions <= 0 {
        return Err(Box::new(failure(
            topic,
            ResponseError::InvalidPartitions,
            "Number of partitions must be larger than 0.".into(),
        )));
    }
    if partitions as usize > PARTITIONS_TOTAL_MAX {
        return Err(Box::new(failure(
            topic,
            ResponseError::InvalidPartitions,
            format!("Creating {partitions} partitions would exceed the limit of {PARTITIONS_TOTAL_MAX} partitions."),
        )));
    }
    let replication_factor = if topic.replication_factor == -1 {
        config.default_replication_factor
    } else {
        topic.replication_factor
    };
    if !explicit_assignment && replication_factor <= 0 {
        return Err(Box::new(failure(
            topic,
            ResponseError::InvalidReplicationFactor,
            "Replication factor must be larger than 0.".into(),
        )));
    }
    let requested: BTreeMap<String, Option<String>> = topic
        .configs
        .iter()
        .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
        .collect();
    let configs = match validate_topic_configs(&requested) {
        Ok(configs) => configs,
        Err(message) => {
            return Err(Box::new(failure(
                topic,
                ResponseError::InvalidConfig,
                message,
            )))
        }
    };
    let creatable = ControllerTopic {
        name: topic.name.to_string(),
        num_partitions: if explicit_assignment { -1 } else { partitions },
        replication_factor: if explicit_assignment {
            -1
        } else {
            replication_factor
        },
        assignments: topic
            .assignments
            .iter()
            .map(|a| {
                (
                    a.partition_index,
                    a.broker_ids.iter().map(|b| b.0).collect(),
                )
            })
            .collect(),
        configs: configs
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect(),
    };
    Ok((creatable, configs))
}

fn succeeded(
    broker: &Broker,
    api_version: i16,
    topic: &CreatableTopic,
    reply: &fjord_controller::CreatableTopicResult,
    configs: &BTreeMap<String, String>,
    validate_only: bool,
) -> CreatableTopicResult {
    let mut result = CreatableTopicResult::default()
        .with_name(topic.name.clone())
        .with_num_partitions(reply.num_partitions)
        .with_replication_factor(reply.replication_factor);
    if api_version >= 7 && !validate_only {
        result = result.with_topic_id(reply.topic_id);
    }
    if api_version >= 5 {
        let described = crate::topic_config::describe(configs, &broker.config())
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
