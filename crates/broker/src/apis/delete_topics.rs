//! DeleteTopics (key 20): by name (v1-v5) or by name or id (v6+).

use fjord_protocol::kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use fjord_protocol::kafka_protocol::messages::{
    DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ResponseError, VersionRange};
use uuid::Uuid;

use crate::replica_manager::is_internal_topic;
use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 1, max: 6 };

pub fn handle(
    broker: &Broker,
    api_version: i16,
    request: &DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let targets: Vec<(Option<TopicName>, Uuid)> = if api_version >= 6 {
        request
            .topics
            .iter()
            .map(|t| (t.name.clone(), t.topic_id))
            .collect()
    } else {
        request
            .topic_names
            .iter()
            .map(|name| (Some(name.clone()), Uuid::nil()))
            .collect()
    };
    let responses = targets
        .into_iter()
        .map(|(name, topic_id)| delete_one(broker, name, topic_id))
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}

fn delete_one(broker: &Broker, name: Option<TopicName>, topic_id: Uuid) -> DeletableTopicResult {
    let manager = broker.replica_manager();
    let (topic, missing) = match &name {
        Some(name) => (manager.topic(name), ResponseError::UnknownTopicOrPartition),
        None => (
            manager.topic_by_id(&topic_id),
            ResponseError::UnknownTopicId,
        ),
    };
    let result = DeletableTopicResult::default()
        .with_name(name)
        .with_topic_id(topic_id);
    let Some(topic) = topic else {
        return result.with_error_code(missing.code());
    };
    let result = result
        .with_name(Some(TopicName(StrBytes::from_string(
            topic.name.to_string(),
        ))))
        .with_topic_id(topic.id);
    if is_internal_topic(&topic.name) {
        // Deleting it would lose every group and committed offset (Kafka allows it; Fjord
        // does not).
        return result
            .with_error_code(ResponseError::InvalidRequest.code())
            .with_error_message(Some(StrBytes::from_string(format!(
                "Deletion of internal topic {} is prohibited.",
                topic.name
            ))));
    }
    match manager.delete_topic(&topic) {
        Ok(()) => {
            // Kafka's onPartitionsDeleted: committed offsets of the topic go too.
            broker
                .group_coordinator()
                .on_topic_deleted(&topic.name, crate::time::now_ms());
            result
        }
        Err(err) => {
            tracing::warn!(topic = %topic.name, error = %err, "delete topic failed");
            result
                .with_error_code(ResponseError::KafkaStorageError.code())
                .with_error_message(Some(StrBytes::from_string(err.to_string())))
        }
    }
}
