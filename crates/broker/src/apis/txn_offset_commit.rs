//! TxnOffsetCommit (key 28), v0-v5: a transactional producer commits a consumer group's offsets
//! as part of its transaction (exactly-once consume-transform-produce).
//!
//! As Kafka's `KafkaApis.handleTxnOffsetCommitRequest`: partitions of topics that do not exist
//! get UNKNOWN_TOPIC_OR_PARTITION here; the transaction is verified with the transaction
//! coordinator (v5, TV2 / KIP-890 part 2: the group's `__consumer_offsets` partition is added to
//! the transaction implicitly, since such clients do not send AddOffsetsToTxn); then the group's
//! shard checks member and generation (v3+) and writes one transactional batch with the
//! request's producer id and epoch. The offsets stay pending, invisible to OffsetFetch, until the
//! transaction's COMMIT marker (see `GroupCoordinator::complete_transaction`).

use std::collections::HashMap;

use fjord_protocol::kafka_protocol::messages::txn_offset_commit_request::TxnOffsetCommitRequestTopic;
use fjord_protocol::kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use fjord_protocol::kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use fjord_protocol::{ResponseError, VersionRange};
use tracing::debug;

use crate::time::now_ms;
use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 5 };

/// First version whose clients handle TRANSACTION_ABORTABLE (KIP-890 part 1).
const TRANSACTION_ABORTABLE_VERSION: i16 = 4;
/// First version of transactions V2 (KIP-890 part 2): no AddOffsetsToTxn before the commit.
const TRANSACTIONS_V2_VERSION: i16 = 5;
/// Versions before this predate KAFKA-7296: their clients may not retry
/// COORDINATOR_LOAD_IN_PROGRESS, so they get COORDINATOR_NOT_AVAILABLE instead (as Kafka).
const LOAD_IN_PROGRESS_VERSION: i16 = 2;

pub async fn handle(
    broker: &Broker,
    api_version: i16,
    request: &TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let manager = broker.replica_manager();
    let partition_exists = |topic: &str, partition: i32| {
        manager
            .topic(topic)
            .is_some_and(|t| usize::try_from(partition).is_ok_and(|p| p < t.partitions.len()))
    };
    // Only partitions that exist go to the coordinator.
    let valid_topics: Vec<TxnOffsetCommitRequestTopic> = request
        .topics
        .iter()
        .filter_map(|topic| {
            let partitions: Vec<_> = topic
                .partitions
                .iter()
                .filter(|p| partition_exists(&topic.name, p.partition_index))
                .cloned()
                .collect();
            (!partitions.is_empty()).then(|| topic.clone().with_partitions(partitions))
        })
        .collect();
    let mut errors: HashMap<(String, i32), i16> = HashMap::new();
    let mut request_error = None;
    if !valid_topics.is_empty() {
        let filtered = request.clone().with_topics(valid_topics);
        match commit(broker, api_version, &filtered, now_ms()).await {
            Ok(topics) => {
                for topic in topics {
                    for p in topic.partitions {
                        errors.insert((topic.name.to_string(), p.partition_index), p.error_code);
                    }
                }
            }
            Err(error) => request_error = Some(error),
        }
    }
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let code = if !partition_exists(&topic.name, p.partition_index) {
                        ResponseError::UnknownTopicOrPartition.code()
                    } else if let Some(error) = request_error {
                        error.code()
                    } else {
                        errors
                            .get(&(topic.name.to_string(), p.partition_index))
                            .copied()
                            .unwrap_or(0)
                    };
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(for_version(code, api_version))
                })
                .collect();
            TxnOffsetCommitResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}

/// The coordinator's part for partitions that exist: request checks, the transaction's
/// verification (outside any group shard lock), then the shard.
async fn commit(
    broker: &Broker,
    api_version: i16,
    request: &TxnOffsetCommitRequest,
    now_ms: i64,
) -> Result<Vec<TxnOffsetCommitResponseTopic>, ResponseError> {
    let coordinator = broker.group_coordinator();
    if !coordinator.is_active() {
        return Err(ResponseError::CoordinatorNotAvailable);
    }
    if request.group_id.is_empty() {
        return Err(ResponseError::InvalidGroupId);
    }
    if request.producer_id.0 < 0 {
        // A transactional write needs a producer; Kafka's verification refuses it the same way.
        return Err(ResponseError::InvalidProducerIdMapping);
    }
    let offsets_partition = coordinator.offsets_partition(request.group_id.as_str());
    if let Err(error) =
        verify_transaction(broker, request, api_version, offsets_partition, now_ms).await
    {
        debug!(
            transactional_id = request.transactional_id.as_str(),
            producer_id = request.producer_id.0,
            producer_epoch = request.producer_epoch,
            group = request.group_id.as_str(),
            error = ?error,
            "TxnOffsetCommit: transaction verification failed"
        );
        return Err(verification_error(error, api_version));
    }
    coordinator
        .commit_transactional_offsets(request, api_version, now_ms)
        .await
}

/// Checks with the transaction coordinator that the producer's ongoing transaction includes
/// the group's `__consumer_offsets` partition (Kafka's `maybeStartTransactionVerification`);
/// from v5 (transactions V2) it adds the partition, as the client sent no AddOffsetsToTxn.
/// Must be called without any group shard lock held (the transaction coordinator takes its
/// own lock, then may call into group shards).
async fn verify_transaction(
    broker: &Broker,
    request: &TxnOffsetCommitRequest,
    api_version: i16,
    offsets_partition: i32,
    now_ms: i64,
) -> Result<(), ResponseError> {
    let add = api_version >= TRANSACTIONS_V2_VERSION;
    broker
        .transaction_coordinator()
        .verify_or_add_partitions(
            request.transactional_id.as_str(),
            request.producer_id.0,
            request.producer_epoch,
            &[(
                crate::replica_manager::GROUP_METADATA_TOPIC_NAME.to_string(),
                offsets_partition,
            )],
            add,
            now_ms,
        )
        .await
}

/// Kafka's mapping of verification errors: a network error becomes the retriable
/// COORDINATOR_LOAD_IN_PROGRESS, and clients before v4 get INVALID_TXN_STATE instead of
/// TRANSACTION_ABORTABLE (`AddPartitionsToTxnManager`'s `defaultError`).
fn verification_error(error: ResponseError, api_version: i16) -> ResponseError {
    match error {
        ResponseError::NetworkException => ResponseError::CoordinatorLoadInProgress,
        ResponseError::TransactionAbortable if api_version < TRANSACTION_ABORTABLE_VERSION => {
            ResponseError::InvalidTxnState
        }
        other => other,
    }
}

/// Errors older clients do not know, replaced as Kafka does.
fn for_version(code: i16, api_version: i16) -> i16 {
    if api_version < LOAD_IN_PROGRESS_VERSION
        && code == ResponseError::CoordinatorLoadInProgress.code()
    {
        ResponseError::CoordinatorNotAvailable.code()
    } else {
        code
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_mapped_for_older_clients() {
        assert_eq!(
            verification_error(ResponseError::TransactionAbortable, 3),
            ResponseError::InvalidTxnState
        );
        assert_eq!(
            verification_error(ResponseError::TransactionAbortable, 4),
            ResponseError::TransactionAbortable
        );
        assert_eq!(
            verification_error(ResponseError::NetworkException, 5),
            ResponseError::CoordinatorLoadInProgress
        );
        assert_eq!(
            verification_error(ResponseError::ProducerFenced, 0),
            ResponseError::ProducerFenced
        );
        let loading = ResponseError::CoordinatorLoadInProgress.code();
        assert_eq!(
            for_version(loading, 1),
            ResponseError::CoordinatorNotAvailable.code()
        );
        assert_eq!(for_version(loading, 2), loading);
    }
}
