//! FindCoordinator (key 10), v0-v6, including batched lookups (`coordinator_keys`, v4+).
//!
//! Every group's coordinator is this broker. The lookup still goes through
//! `partition_for(group_id)` on `__consumer_offsets` (created here on first use, as Kafka
//! does), so that a replicated Fjord can answer with the partition's leader instead.
//!
//! Transaction coordinators (key type 1): this broker too, through `partition_for` on
//! `__transaction_state` (created here on first use).
//! Share coordinators (key type 2) and unknown key types: INVALID_REQUEST, as Kafka without a
//! share coordinator.

use fjord_protocol::kafka_protocol::messages::find_coordinator_response::Coordinator;
use fjord_protocol::kafka_protocol::messages::{
    BrokerId, FindCoordinatorRequest, FindCoordinatorResponse,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ResponseError, VersionRange};

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

fn lookup(broker: &Broker, key_type: i8, key: &str) -> Result<Found, (ResponseError, String)> {
    match key_type {
        KEY_TYPE_GROUP => {
            if let Err(err) = broker.replica_manager().offsets_topic_or_create() {
                tracing::warn!(error = %err, "cannot create __consumer_offsets");
                return Err((
                    ResponseError::CoordinatorNotAvailable,
                    format!("__consumer_offsets is not available: {err}"),
                ));
            }
            let partition = broker.group_coordinator().partition_for(key);
            tracing::trace!(group = key, partition, "coordinator lookup");
            let config = broker.config();
            Ok(Found {
                node_id: config.node_id,
                host: config.advertised_host.clone(),
                port: config.advertised_port,
            })
        }
        KEY_TYPE_TRANSACTION => {
            if let Err(err) = broker.replica_manager().transaction_state_topic_or_create() {
                tracing::warn!(error = %err, "cannot create __transaction_state");
                return Err((
                    ResponseError::CoordinatorNotAvailable,
                    format!("__transaction_state is not available: {err}"),
                ));
            }
            let partition = broker.transaction_coordinator().partition_for(key);
            tracing::trace!(transactional_id = key, partition, "coordinator lookup");
            let config = broker.config();
            Ok(Found {
                node_id: config.node_id,
                host: config.advertised_host.clone(),
                port: config.advertised_port,
            })
        }
        other => Err((
            ResponseError::InvalidRequest,
            format!("Coordinator key type {other} is not supported."),
        )),
    }
}

pub fn handle(
    broker: &Broker,
    api_version: i16,
    request: &FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    if api_version >= BATCHED_VERSION {
        let coordinators = request
            .coordinator_keys
            .iter()
            .map(|key| {
                let coordinator = Coordinator::default().with_key(key.clone());
                match lookup(broker, request.key_type, key) {
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
                }
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let response = FindCoordinatorResponse::default();
    match lookup(broker, request.key_type, &request.key) {
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
