//! AddOffsetsToTxn (key 25), v0-v4: adds the group's `__consumer_offsets` partition to the
//! transaction, so the group's TxnOffsetCommit can follow and the markers reach the group
//! coordinator. PRODUCER_FENCED is answered as INVALID_PRODUCER_EPOCH below v2, as in Kafka.

use std::collections::BTreeSet;

use fjord_protocol::kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};
use fjord_protocol::{ResponseError, VersionRange};

use crate::replica_manager::GROUP_METADATA_TOPIC_NAME;
use crate::time::now_ms;
use crate::transaction_coordinator::metadata::TV_0;
use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 4 };

/// First version where PRODUCER_FENCED may be returned.
const PRODUCER_FENCED_VERSION: i16 = 2;

pub async fn handle(
    broker: &Broker,
    api_version: i16,
    request: &AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    let result = add(broker, request).await;
    let error = match result {
        Ok(()) => return AddOffsetsToTxnResponse::default(),
        Err(ResponseError::ProducerFenced) if api_version < PRODUCER_FENCED_VERSION => {
            ResponseError::InvalidProducerEpoch
        }
        Err(error) => error,
    };
    AddOffsetsToTxnResponse::default().with_error_code(error.code())
}

async fn add(broker: &Broker, request: &AddOffsetsToTxnRequest) -> Result<(), ResponseError> {
    if request.group_id.is_empty() {
        return Err(ResponseError::InvalidGroupId);
    }
    // The partition must exist when its marker is written (the caller created the topic
    // through the controller if needed).
    if broker.replica_manager().offsets_topic().is_none() {
        return Err(ResponseError::CoordinatorNotAvailable);
    }
    let partition = broker
        .group_coordinator()
        .partition_for(request.group_id.as_str());
    let partitions = BTreeSet::from([(GROUP_METADATA_TOPIC_NAME.to_string(), partition)]);
    broker
        .transaction_coordinator()
        .add_partitions_to_transaction(
            request.transactional_id.as_str(),
            request.producer_id.0,
            request.producer_epoch,
            &partitions,
            TV_0,
            now_ms(),
        )
        .await
}
