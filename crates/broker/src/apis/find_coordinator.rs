//! FindCoordinator (key 10), v0-v6, including batched lookups (`coordinator_keys`, v4+).
//!
//! A group's coordinator is the leader of its `__consumer_offsets` partition
//! (`partition_for(group_id)`), a transactional id's the leader of its `__transaction_state`
//! partition, both read from the metadata image. The internal topic is created through the
//! controller on first use (Kafka's `AutoTopicCreationManager`); until it is in this broker's
//! image, or while the partition has no leader, the answer is COORDINATOR_NOT_AVAILABLE and
//! clients retry.
//! Share coordinators (key type 2) and unknown key types: INVALID_REQUEST, as Kafka without a
//! share coordinator.

use fjord_protocol::kafka_protocol::messages::find_coordinator_response::Coordinator;
use fjord_protocol::kafka_protocol::messages::{
    BrokerId, FindCoordinatorRequest, FindCoordinatorResponse,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ResponseError, VersionRange};

use crate::replica_manager::{GROUP_METADATA_TOPIC_NAME, TRANSACTION_STATE_TOPIC_NAME};
use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 6 };

/// First version with `coordinator_keys` (KIP-699).
const BATCHED_VERSION: i16 = 4;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

struct Found {
    node_id: i32,
    host: String,
    port: i32,
}

async fn lookup(
    broker: &Broker,
    listener_name: &str,
    key_type: i8,
    key: &str,
) -> Result<Found, (ResponseError, String)> {
    let (topic_name, partition) = match key_type {
        KEY_TYPE_GROUP => (
            GROUP_METADATA_TOPIC_NAME,
            broker.group_coordinator().partition_for(key),
        ),
        KEY_TYPE_TRANSACTION => (
            TRANSACTION_STATE_TOPIC_NAME,
            broker.transaction_coordinator().partition_for(key),
        ),
        other => {
            return Err((
                ResponseError::InvalidRequest,
                format!("Coordinator key type {other} is not supported."),
            ))
        }
    };
    tracing::trace!(key, key_type, partition, "coordinator lookup");
    let not_available = |why: &str| {
        (
            ResponseError::CoordinatorNotAvailable,
            format!("{topic_name} is not available: {why}"),
        )
    };
    // Created through the controller on first use; until it is in the image clients retry.
    if broker.internal_topic_or_create(topic_name).await.is_none() {
        return Err(not_available("it is being created"));
    }
    // The coordinator is the leader of the key's partition.
    let image = broker.image();
    let leader = image
        .topic_by_name(topic_name)
        .and_then(|topic| topic.partitions.get(&partition))
        .map(|registration| registration.leader)
        .ok_or_else(|| not_available("no such partition"))?;
    let endpoint = image
        .broker_endpoint(leader, listener_name)
        .ok_or_else(|| not_available("its partition has no leader"))?;
    Ok(Found {
        node_id: leader,
        host: endpoint.host.clone(),
        port: i32::from(endpoint.port),
    })
}

/// The coordinator's endpoint on `listener_name`, the listener the request came in on.
pub async fn handle(
    broker: &Broker,
    listener_name: &str,
    api_version: i16,
    request: &FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    if api_version >= BATCHED_VERSION {
        let mut coordinators = Vec::with_capacity(request.coordinator_keys.len());
        for key in &request.coordinator_keys {
            let coordinator = Coordinator::default().with_key(key.clone());
            coordinators.push(
                match lookup(broker, listener_name, request.key_type, key).await {
                    Ok(found) => coordinator
                        .with_node_id(BrokerId(found.node_id))
                        .with_host(StrBytes::from_string(found.host))
                        .with_port(found.port)
                        .with_error_message(None),
                    Err((error, message)) => coordinator
                        .with_node_id(BrokerId(-1))
                        .with_port(-1)
                        .with_error_code(error.code())
                        .with_error_message(Some(StrBytes::from_string(message))),
                },
            );
        }
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let response = FindCoordinatorResponse::default();
    match lookup(broker, listener_name, request.key_type, &request.key).await {
        Ok(found) => response
            .with_node_id(BrokerId(found.node_id))
            .with_host(StrBytes::from_string(found.host))
            .with_port(found.port)
            .with_error_message(None),
        Err((error, message)) => response
            .with_error_code(error.code())
            .with_error_message(Some(StrBytes::from_string(message)))
            .with_node_id(BrokerId(-1))
            .with_port(-1),
    }
}
