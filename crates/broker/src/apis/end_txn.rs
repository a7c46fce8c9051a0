//! EndTxn (key 26), v0-v5: commits or aborts the transaction. The answer comes once
//! PrepareCommit/PrepareAbort is in `__transaction_state`; the markers follow (written inline
//! on this single node, retried by the coordinator's timer on failure).
//!
//! v5 is transaction version 2 (KIP-890): the producer epoch is bumped by every EndTxn and the
//! response carries the producer id and epoch to use next. PRODUCER_FENCED is answered as
//! INVALID_PRODUCER_EPOCH below v2, as in Kafka.

use fjord_protocol::kafka_protocol::messages::{EndTxnRequest, EndTxnResponse, ProducerId};
use fjord_protocol::{ResponseError, VersionRange};

use crate::time::now_ms;
use crate::transaction_coordinator::metadata::{TV_0, TV_2};
use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 5 };

/// First version where PRODUCER_FENCED may be returned.
const PRODUCER_FENCED_VERSION: i16 = 2;
/// First version of transaction version 2 (and of the producer id/epoch response fields).
const TV2_VERSION: i16 = 5;

pub async fn handle(broker: &Broker, api_version: i16, request: &EndTxnRequest) -> EndTxnResponse {
    let client_transaction_version = if api_version >= TV2_VERSION {
        TV_2
    } else {
        TV_0
    };
    let result = broker
        .transaction_coordinator()
        .end_transaction(
            request.transactional_id.as_str(),
            request.producer_id.0,
            request.producer_epoch,
            request.committed,
            client_transaction_version,
            now_ms(),
        )
        .await;
    match result {
        Ok((producer_id, producer_epoch)) => {
            let response = EndTxnResponse::default();
            if api_version >= TV2_VERSION {
                response
                    .with_producer_id(ProducerId(producer_id))
                    .with_producer_epoch(producer_epoch)
            } else {
                response
            }
        }
        Err(error) => {
            let error = if api_version < PRODUCER_FENCED_VERSION
                && error == ResponseError::ProducerFenced
            {
                ResponseError::InvalidProducerEpoch
            } else {
                error
            };
            EndTxnResponse::default().with_error_code(error.code())
        }
    }
}
