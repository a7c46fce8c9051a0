//! AddPartitionsToTxn (key 24), v0-v5.
//!
//! v0-v3 come from producers: one transaction, its partitions added before the producer
//! writes to them. v4-v5 are Kafka's broker-to-broker batches (KIP-890 part 1): several
//! transactions, each either `verify_only` (are these partitions in the ongoing transaction?)
//! or an add on behalf of a TV2 producer (v5). Fjord serves both for any caller.
//!
//! As in Kafka, one unknown partition fails the whole transaction: it gets
//! UNKNOWN_TOPIC_OR_PARTITION, the others OPERATION_NOT_ATTEMPTED. Internal topics cannot be
//! added by producers (TOPIC_AUTHORIZATION_FAILED, Kafka's answer for them). PRODUCER_FENCED is
//! answered as INVALID_PRODUCER_EPOCH below v2.

use std::collections::{BTreeMap, BTreeSet};

use fjord_protocol::kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use fjord_protocol::kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use fjord_protocol::kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, TopicName, TransactionalId,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ResponseError, VersionRange};

use crate::replica_manager::is_internal_topic;
use crate::time::now_ms;
use crate::transaction_coordinator::metadata::{TV_0, TV_2};
use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 5 };

/// First batched version (KIP-890 part 1).
const BATCHED_VERSION: i16 = 4;
/// First version where PRODUCER_FENCED may be returned.
const PRODUCER_FENCED_VERSION: i16 = 2;
/// First version with TRANSACTION_ABORTABLE (KIP-890), and of TV2 adds.
const TV2_VERSION: i16 = 5;

/// Each partition's error code (0 = none).
type Results = BTreeMap<(String, i32), i16>;

pub async fn handle(
    broker: &Broker,
    api_version: i16,
    request: &AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    if api_version < BATCHED_VERSION {
        let results = handle_transaction(
            broker,
            api_version,
            request.v3_and_below_transactional_id.as_str(),
            request.v3_and_below_producer_id.0,
            request.v3_and_below_producer_epoch,
            false,
            &request.v3_and_below_topics,
        )
        .await;
        return AddPartitionsToTxnResponse::default()
            .with_results_by_topic_v3_and_below(topic_results(results));
    }
    let mut results = Vec::with_capacity(request.transactions.len());
    for transaction in &request.transactions {
        let topics = handle_transaction(
            broker,
            api_version,
            transaction.transactional_id.as_str(),
            transaction.producer_id.0,
            transaction.producer_epoch,
            transaction.verify_only,
            &transaction.topics,
        )
        .await;
        results.push(
            AddPartitionsToTxnResult::default()
                .with_transactional_id(TransactionalId(StrBytes::from_string(
                    transaction.transactional_id.to_string(),
                )))
                .with_topic_results(topic_results(topics)),
        );
    }
    AddPartitionsToTxnResponse::default().with_results_by_transaction(results)
}

async fn handle_transaction(
    broker: &Broker,
    api_version: i16,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    verify_only: bool,
    topics: &[AddPartitionsToTxnTopic],
) -> Results {
    let partitions: BTreeSet<(String, i32)> = topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.name.to_string(), *p)))
        .collect();
    let mut failed: BTreeMap<(String, i32), ResponseError> = BTreeMap::new();
    for (topic, partition) in &partitions {
        let error = if api_version < BATCHED_VERSION && is_internal_topic(topic) {
            Some(ResponseError::TopicAuthorizationFailed)
        } else if broker
            .replica_manager()
            .partition(topic, *partition)
            .is_none()
        {
            Some(ResponseError::UnknownTopicOrPartition)
        } else {
            None
        };
        if let Some(error) = error {
            failed.insert((topic.clone(), *partition), error);
        }
    }
    if !failed.is_empty() {
        return partitions
            .into_iter()
            .map(|tp| {
                let error = failed
                    .get(&tp)
                    .copied()
                    .unwrap_or(ResponseError::OperationNotAttempted);
                (tp, error.code())
            })
            .collect();
    }
    let coordinator = broker.transaction_coordinator();
    let all = |error: ResponseError| -> Results {
        let error =
            if api_version < PRODUCER_FENCED_VERSION && error == ResponseError::ProducerFenced {
                ResponseError::InvalidProducerEpoch
            } else {
                error
            };
        partitions
            .iter()
            .map(|tp| (tp.clone(), error.code()))
            .collect()
    };
    if verify_only {
        let list: Vec<(String, i32)> = partitions.iter().cloned().collect();
        return match coordinator.verify_partitions_in_transaction(
            transactional_id,
            producer_id,
            producer_epoch,
            &list,
        ) {
            Ok(found) => {
                let missing = if api_version >= TV2_VERSION {
                    ResponseError::TransactionAbortable
                } else {
                    ResponseError::InvalidTxnState
                };
                list.into_iter()
                    .zip(found)
                    .map(|(tp, found)| (tp, if found { 0 } else { missing.code() }))
                    .collect()
            }
            Err(error) => all(error),
        };
    }
    let client_transaction_version = if api_version >= TV2_VERSION {
        TV_2
    } else {
        TV_0
    };
    match coordinator
        .add_partitions_to_transaction(
            transactional_id,
            producer_id,
            producer_epoch,
            &partitions,
            client_transaction_version,
            now_ms(),
        )
        .await
    {
        Ok(()) => partitions.iter().map(|tp| (tp.clone(), 0)).collect(),
        Err(error) => all(error),
    }
}

fn topic_results(results: Results) -> Vec<AddPartitionsToTxnTopicResult> {
    let mut by_topic: BTreeMap<String, Vec<AddPartitionsToTxnPartitionResult>> = BTreeMap::new();
    for ((topic, partition), error_code) in results {
        by_topic.entry(topic).or_default().push(
            AddPartitionsToTxnPartitionResult::default()
                .with_partition_index(partition)
                .with_partition_error_code(error_code),
        );
    }
    by_topic
        .into_iter()
        .map(|(topic, results)| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(TopicName(StrBytes::from_string(topic)))
                .with_results_by_partition(results)
        })
        .collect()
}
