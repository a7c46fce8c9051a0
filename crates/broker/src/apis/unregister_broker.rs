//! UnregisterBroker (key 64), v0: removes a broker's registration (the last step of
//! decommissioning: reassign its partitions away, stop it, unregister). Forwarded to the
//! active controller, which takes the broker out of every ISR and leadership and writes
//! UnregisterBrokerRecord; BROKER_ID_NOT_REGISTERED for an unknown id (Kafka's "Broker ID 9
//! is not currently registered"). Answered once this broker's image no longer has the broker.

use fjord_controller::{
    ControllerReply, ControllerRequest, UnregisterBrokerRequest as ControllerUnregister,
};
use fjord_protocol::kafka_protocol::messages::{UnregisterBrokerRequest, UnregisterBrokerResponse};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::VersionRange;

use crate::forwarding::{unexpected, CONTROLLER_REQUEST_TIMEOUT_MS};
use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 0 };

pub async fn handle(
    broker: &Broker,
    request: &UnregisterBrokerRequest,
) -> UnregisterBrokerResponse {
    let broker_id = request.broker_id.0;
    let reply = broker
        .send_to_controller(
            ControllerRequest::UnregisterBroker(ControllerUnregister { broker_id }),
            CONTROLLER_REQUEST_TIMEOUT_MS,
        )
        .await
        .and_then(|reply| match reply {
            ControllerReply::UnregisterBroker(error) => Ok(error),
            other => Err(unexpected(&other)),
        });
    let error = reply.unwrap_or_else(|error| error);
    if error.is_ok()
        && !broker
            .wait_for_metadata(
                |image| image.broker(broker_id).is_none(),
                CONTROLLER_REQUEST_TIMEOUT_MS,
            )
            .await
    {
        tracing::warn!(
            broker_id,
            "the unregistration did not reach this broker's image in time"
        );
    }
    UnregisterBrokerResponse::default()
        .with_error_code(error.code.code())
        .with_error_message(error.message.map(StrBytes::from_string))
}
