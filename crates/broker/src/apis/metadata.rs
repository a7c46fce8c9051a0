//! Metadata (key 3): brokers, cluster id, controller, and per topic its id and partitions with
//! leader, leader epoch, replicas and ISR. Auto-creates requested topics when allowed.

use std::sync::Arc;

use fjord_protocol::kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use fjord_protocol::kafka_protocol::messages::{
    BrokerId, MetadataRequest, MetadataResponse, TopicName,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ResponseError, VersionRange};
use uuid::Uuid;

use super::AUTHORIZED_OPERATIONS_OMITTED;
use crate::replica_manager::{is_internal_topic, validate_topic_name, CreateTopicError, Topic};
use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 13 };

/// Topic operations an unsecured broker allows: READ(3), WRITE(4), CREATE(5), DELETE(6),
/// ALTER(7), DESCRIBE(8), DESCRIBE_CONFIGS(10), ALTER_CONFIGS(11), as Kafka's bit set.
const TOPIC_OPERATIONS_ALL: i32 =
    (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);
/// Cluster operations: CREATE(5), ALTER(7), DESCRIBE(8), CLUSTER_ACTION(9),
/// DESCRIBE_CONFIGS(10), ALTER_CONFIGS(11), IDEMPOTENT_WRITE(12).
const CLUSTER_OPERATIONS_ALL: i32 =
    (1 << 5) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12);

pub fn handle(broker: &Broker, api_version: i16, request: &MetadataRequest) -> MetadataResponse {
    let config = broker.config();
    // v0 had no null: an empty list meant "all topics".
    let all_topics = match &request.topics {
        None => true,
        Some(topics) => topics.is_empty() && api_version == 0,
    };
    // Before v4 the flag did not exist and auto creation was implied.
    let allow_auto_create = api_version < 4 || request.allow_auto_topic_creation;
    let topic_operations = if request.include_topic_authorized_operations {
        TOPIC_OPERATIONS_ALL
    } else {
        AUTHORIZED_OPERATIONS_OMITTED
    };
    let topics = if all_topics {
        broker
            .replica_manager()
            .topics()
            .iter()
            .map(|topic| describe_topic(broker, topic, topic_operations))
            .collect()
    } else {
        request
            .topics
            .iter()
            .flatten()
            .map(|requested| match &requested.name {
                Some(name) => by_name(broker, name, allow_auto_create, topic_operations),
                None => by_id(broker, requested.topic_id, topic_operations),
            })
            .collect()
    };
    let cluster_operations = if request.include_cluster_authorized_operations {
        CLUSTER_OPERATIONS_ALL
    } else {
        AUTHORIZED_OPERATIONS_OMITTED
    };
    MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(config.node_id))
            .with_host(StrBytes::from_string(config.advertised_host.clone()))
            .with_port(config.advertised_port)])
        .with_cluster_id(Some(StrBytes::from_string(broker.cluster_id().to_string())))
        .with_controller_id(BrokerId(config.node_id))
        .with_cluster_authorized_operations(cluster_operations)
        .with_topics(topics)
}

fn by_name(
    broker: &Broker,
    name: &TopicName,
    allow_auto_create: bool,
    operations: i32,
) -> MetadataResponseTopic {
    let error = |code: ResponseError| {
        MetadataResponseTopic::default()
            .with_name(Some(name.clone()))
            .with_error_code(code.code())
            .with_topic_authorized_operations(operations)
    };
    if validate_topic_name(name).is_err() {
        return error(ResponseError::InvalidTopicException);
    }
    match broker
        .replica_manager()
        .topic_or_auto_create(name, allow_auto_create)
    {
        Ok(Some(topic)) => describe_topic(broker, &topic, operations),
        Ok(None) => error(ResponseError::UnknownTopicOrPartition),
        Err(CreateTopicError::InvalidName(_)) => error(ResponseError::InvalidTopicException),
        Err(err) => {
            tracing::warn!(topic = %name.as_str(), error = %err, "auto topic creation failed");
            error(ResponseError::UnknownServerError)
        }
    }
}

fn by_id(broker: &Broker, topic_id: Uuid, operations: i32) -> MetadataResponseTopic {
    match broker.replica_manager().topic_by_id(&topic_id) {
        Some(topic) => describe_topic(broker, &topic, operations),
        None => MetadataResponseTopic::default()
            .with_topic_id(topic_id)
            .with_error_code(ResponseError::UnknownTopicId.code())
            .with_topic_authorized_operations(operations),
    }
}

fn describe_topic(broker: &Broker, topic: &Arc<Topic>, operations: i32) -> MetadataResponseTopic {
    let node = BrokerId(broker.config().node_id);
    let partitions = topic
        .partitions
        .iter()
        .map(|partition| {
            MetadataResponsePartition::default()
                .with_partition_index(partition.index)
                .with_leader_id(node)
                .with_leader_epoch(partition.leader_epoch)
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(
            topic.name.to_string(),
        ))))
        .with_topic_id(topic.id)
        .with_is_internal(is_internal_topic(&topic.name))
        .with_partitions(partitions)
        .with_topic_authorized_operations(operations)
}
