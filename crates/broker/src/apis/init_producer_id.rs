//! InitProducerId (key 22), v0-v5: a producer id and epoch for an idempotent producer (no
//! transactional id) or a transactional one (which fences older instances of it).
//!
//! v3+ carry the producer id and epoch the client had (KIP-360), so a producer can bump its
//! epoch after an error without losing its id. As in Kafka, PRODUCER_FENCED is answered as
//! INVALID_PRODUCER_EPOCH below v4, which old clients do not know.

use fjord_protocol::kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProducerId,
};
use fjord_protocol::{ResponseError, VersionRange};

use crate::time::now_ms;
use crate::transaction_coordinator::metadata::{NO_PRODUCER_EPOCH, NO_PRODUCER_ID};
use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 5 };

/// First version where PRODUCER_FENCED may be returned.
const PRODUCER_FENCED_VERSION: i16 = 4;

pub async fn handle(
    broker: &Broker,
    api_version: i16,
    request: &InitProducerIdRequest,
) -> InitProducerIdResponse {
    // A producer id block from the controller first, so the id below is at hand (errors
    // surface from `init_producer_id` as COORDINATOR_LOAD_IN_PROGRESS, which clients retry).
    if let Err(error) = broker
        .transaction_coordinator()
        .ensure_producer_id_block()
        .await
    {
        tracing::debug!(?error, "no producer id block yet");
    }
    let expected = match (request.producer_id.0, request.producer_epoch) {
        (NO_PRODUCER_ID, NO_PRODUCER_EPOCH) => Ok(None),
        (NO_PRODUCER_ID, _) | (_, NO_PRODUCER_EPOCH) => Err(ResponseError::InvalidRequest),
        (producer_id, epoch) => Ok(Some((producer_id, epoch))),
    };
    let result = match expected {
        Ok(expected) => {
            broker
                .transaction_coordinator()
                .init_producer_id(
                    request.transactional_id.as_ref().map(|id| id.as_str()),
                    request.transaction_timeout_ms,
                    expected,
                    now_ms(),
                )
                .await
        }
        Err(error) => Err(error),
    };
    match result {
        Ok((producer_id, producer_epoch)) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(producer_epoch),
        Err(error) => {
            let error = if api_version < PRODUCER_FENCED_VERSION
                && error == ResponseError::ProducerFenced
            {
                ResponseError::InvalidProducerEpoch
            } else {
                error
            };
            InitProducerIdResponse::default()
                .with_error_code(error.code())
                .with_producer_id(ProducerId(NO_PRODUCER_ID))
                .with_producer_epoch(NO_PRODUCER_EPOCH)
        }
    }
}
