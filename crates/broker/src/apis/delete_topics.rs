//! DeleteTopics (key 20): by name (v1-v5) or by name or id (v6+). Looked up in this broker's
//! image, deleted by the controller, answered once the deletion is in this broker's image (its
//! logs are gone and committed offsets of the topic dropped by then, see
//! `Broker::publish_metadata`).

use fjord_protocol::kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use fjord_protocol::kafka_protocol::messages::{
    DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ResponseError, VersionRange};
use uuid::Uuid;

use fjord_controller::{
    ApiError, ControllerReply, ControllerRequest, DeleteTopicsRequest as ControllerDeleteTopics,
    ErrorCode, TopicRef,
};

use crate::replica_manager::is_internal_topic;
use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 1, max: 6 };

pub async fn handle(
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
    // Local checks on this broker's image; the rest goes to the controller in one request.
    let image = broker.image();
    let mut results = Vec::with_capacity(targets.len());
    let mut forwarded = Vec::new();
    for (name, topic_id) in targets {
        let found = match &name {
            Some(name) => image.topic_by_name(name),
            None => image.topic(&topic_id),
        };
        let missing = if name.is_some() {
            ResponseError::UnknownTopicOrPartition
        } else {
            ResponseError::UnknownTopicId
        };
        let result = DeletableTopicResult::default()
            .with_name(name)
            .with_topic_id(topic_id);
        let Some(topic) = found else {
            results.push((result.with_error_code(missing.code()), None));
            continue;
        };
        let result = result
            .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
            .with_topic_id(topic.id);
        if is_internal_topic(&topic.name) {
            // Deleting it would lose every group and committed offset (Kafka allows it; Fjord
            // does not).
            results.push((
                result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(StrBytes::from_string(format!(
                        "Deletion of internal topic {} is prohibited.",
                        topic.name
                    )))),
                None,
            ));
            continue;
        }
        forwarded.push(TopicRef::Id(topic.id));
        results.push((result, Some(topic.id)));
    }
    if !forwarded.is_empty() {
        let timeout_ms = crate::forwarding::timeout_from_request(request.timeout_ms);
        let reply = broker
            .send_to_controller(
                ControllerRequest::DeleteTopics(ControllerDeleteTopics { topics: forwarded }),
                timeout_ms,
            )
            .await
            .and_then(|reply| match reply {
                ControllerReply::DeleteTopics(reply) => Ok(reply),
                other => Err(crate::forwarding::unexpected(&other)),
            });
        let errors: std::collections::HashMap<Uuid, ApiError> = match &reply {
            Ok(reply) => reply
                .topics
                .iter()
                .map(|t| (t.topic_id, t.error.clone()))
                .collect(),
            Err(error) => results
                .iter()
                .filter_map(|(_, id)| id.map(|id| (id, error.clone())))
                .collect(),
        };
        let deleted: Vec<Uuid> = errors
            .iter()
            .filter(|(_, e)| e.is_ok())
            .map(|(id, _)| *id)
            .collect();
        // Answer once the deletions are in this broker's image (their logs are gone then).
        if !deleted.is_empty()
            && !broker
                .wait_for_metadata(
                    |image| deleted.iter().all(|id| image.topic(id).is_none()),
                    timeout_ms,
                )
                .await
        {
            tracing::warn!(topics = ?deleted, "deleted topics did not leave this broker's image in time");
        }
        for (result, id) in results.iter_mut() {
            let Some(id) = id else { continue };
            let error = errors.get(id).cloned().unwrap_or_else(|| {
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
    DeleteTopicsResponse::default().with_responses(results.into_iter().map(|(r, _)| r).collect())
}
