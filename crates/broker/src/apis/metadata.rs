//! Metadata (key 3): brokers, cluster id, controller, and per topic its id and partitions with
//! leader, leader epoch, replicas, ISR and offline replicas, all from this broker's metadata
//! image (Kafka `KRaftMetadataCache`, see [`crate::metadata_view`]). Auto-creates requested
//! topics through the controller when allowed; a topic not in the image yet answers
//! LEADER_NOT_AVAILABLE, as Kafka does.

use fjord_protocol::kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use fjord_protocol::kafka_protocol::messages::{
    BrokerId, MetadataRequest, MetadataResponse, TopicName,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ResponseError, VersionRange};

use super::AUTHORIZED_OPERATIONS_OMITTED;
use crate::forwarding::AutoCreated;
use crate::metadata_view::ImageView;
use crate::replica_manager::validate_topic_name;
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

/// Answers with the brokers' endpoints on `listener_name`, the listener the request came in
/// on (brokers without it are left out, as Kafka does).
pub async fn handle(
    broker: &Broker,
    listener_name: &str,
    api_version: i16,
    request: &MetadataRequest,
) -> MetadataResponse {
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
    let mut topics = Vec::new();
    if !all_topics {
        // Auto-creation first (it may publish new images), then one image answers everything.
        for requested in request.topics.iter().flatten() {
            if let Some(name) = &requested.name {
                topics.push(by_name(broker, name, allow_auto_create).await);
            }
        }
    }
    let image = broker.image();
    let view = ImageView::new(&image, listener_name);
    let topics = if all_topics {
        image
            .topic_ids_by_name
            .values()
            .filter_map(|id| image.topic(id))
            .map(|topic| view.topic_metadata(topic, topic_operations))
            .collect()
    } else {
        let mut by_name_results = topics.into_iter();
        request
            .topics
            .iter()
            .flatten()
            .map(|requested| match &requested.name {
                Some(name) => match by_name_results.next() {
                    Some(Lookup::Found) => match image.topic_by_name(name) {
                        Some(topic) => view.topic_metadata(topic, topic_operations),
                        None => {
                            error_topic(name, ResponseError::LeaderNotAvailable, topic_operations)
                        }
                    },
                    Some(Lookup::Error(code)) => error_topic(name, code, topic_operations),
                    None => error_topic(name, ResponseError::UnknownServerError, topic_operations),
                },
                None => match image.topic(&requested.topic_id) {
                    Some(topic) => view.topic_metadata(topic, topic_operations),
                    None => MetadataResponseTopic::default()
                        .with_topic_id(requested.topic_id)
                        .with_error_code(ResponseError::UnknownTopicId.code())
                        .with_topic_authorized_operations(topic_operations),
                },
            })
            .collect()
    };
    let cluster_operations = if request.include_cluster_authorized_operations {
        CLUSTER_OPERATIONS_ALL
    } else {
        AUTHORIZED_OPERATIONS_OMITTED
    };
    MetadataResponse::default()
        .with_brokers(view.alive_brokers())
        .with_cluster_id(Some(StrBytes::from_string(broker.cluster_id())))
        .with_controller_id(BrokerId(controller_id(&view)))
        .with_cluster_authorized_operations(cluster_operations)
        .with_topics(topics)
}

/// Kafka's KRaft brokers report a random alive broker as the controller (clients send
/// controller-bound requests to any broker, which forwards them); -1 when none is alive.
pub fn controller_id(view: &ImageView<'_>) -> i32 {
    view.controller_id(|alive| (crate::time::now_ms().unsigned_abs() as usize) % alive.max(1))
        .unwrap_or(crate::metadata_view::NO_LEADER_ID)
}

enum Lookup {
    /// The topic exists (or is being created) in the image.
    Found,
    Error(ResponseError),
}

fn error_topic(name: &TopicName, code: ResponseError, operations: i32) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(name.clone()))
        .with_error_code(code.code())
        .with_topic_authorized_operations(operations)
}

async fn by_name(broker: &Broker, name: &TopicName, allow_auto_create: bool) -> Lookup {
    if validate_topic_name(name).is_err() {
        return Lookup::Error(ResponseError::InvalidTopicException);
    }
    match broker.topic_or_auto_create(name, allow_auto_create).await {
        AutoCreated::Exists(_) => Lookup::Found,
        // The image is read after this: a topic that arrived meanwhile is answered in full,
        // else LEADER_NOT_AVAILABLE, as Kafka answers a topic being created.
        AutoCreated::Creating => Lookup::Found,
        AutoCreated::Unknown => Lookup::Error(ResponseError::UnknownTopicOrPartition),
        AutoCreated::Failed(error) => {
            tracing::warn!(topic = %name.as_str(), code = ?error.code, message = ?error.message, "auto topic creation failed");
            Lookup::Error(match error.code {
                fjord_controller::ErrorCode::InvalidTopicException => {
                    ResponseError::InvalidTopicException
                }
                fjord_controller::ErrorCode::InvalidReplicationFactor
                | fjord_controller::ErrorCode::RequestTimedOut => ResponseError::LeaderNotAvailable,
                _ => ResponseError::UnknownServerError,
            })
        }
    }
}
