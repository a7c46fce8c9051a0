//! ConsumerGroupHeartbeat (key 68), v0-v1: the KIP-848 consumer protocol. One request joins,
//! heartbeats, reports owned partitions and leaves; the answer carries the member epoch and,
//! when it changed, the member's assignment (see `group_coordinator::consumer_group`).
//! Subscriptions are by topic name; a (non-empty) regex subscription (v1) is not supported yet
//! and is answered INVALID_REQUEST.

use fjord_protocol::kafka_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ResponseError, VersionRange};

use crate::group_coordinator::assignor::TopicMetadata;
use crate::group_coordinator::RequestContext;
use crate::replica_manager::GROUP_METADATA_TOPIC_NAME;
use crate::time::now_ms;
use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 1 };

pub async fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    request: &ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    tracing::debug!(?request, "ConsumerGroupHeartbeat");
    // librdkafka sends an empty regex with a by-name subscription: that means "none".
    if request
        .subscribed_topic_regex
        .as_ref()
        .is_some_and(|regex| !regex.is_empty())
    {
        return ConsumerGroupHeartbeatResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code())
            .with_error_message(Some(StrBytes::from_static_str(
                "SubscribedTopicRegex is not supported by this broker; subscribe by name",
            )));
    }
    let manager = broker.replica_manager();
    let topic_metadata = |name: &str| {
        if name == GROUP_METADATA_TOPIC_NAME {
            return None;
        }
        manager.topic(name).map(|t| TopicMetadata {
            id: t.id,
            name: t.name.to_string(),
            partitions: i32::try_from(t.partitions.len()).unwrap_or(i32::MAX),
        })
    };
    broker
        .group_coordinator()
        .consumer_group_heartbeat(ctx, request, &topic_metadata, now_ms())
        .await
}
