//! KIP-890 transaction verification across the cluster (Kafka's `AddPartitionsToTxnManager`).
//!
//! Before a partition leader appends a producer's first transactional batch (Produce), and
//! before a group coordinator stores transactional offsets (TxnOffsetCommit), the producer's
//! transaction coordinator must confirm that the partition is part of the ongoing transaction
//! (transactions version 2 clients: add it). In a cluster that coordinator usually runs on
//! another node: the leader of the transactional id's `__transaction_state` partition. Kafka
//! sends it an inter-broker AddPartitionsToTxn (v4+, `verify_only`; v5 without `verify_only`
//! to add); so does [`verify_or_add_partitions`] when the local coordinator answers
//! NOT_COORDINATOR. Asking only the local coordinator refused every transactional write to a
//! partition led elsewhere (NOT_COORDINATOR, which produce answers as the retriable
//! NOT_ENOUGH_REPLICAS) until the client's delivery timeout.
//!
//! Errors are the coordinator's, as if local; a node that cannot be reached (or no known
//! coordinator) answers NOT_COORDINATOR, which callers map to their retriable error. The
//! requests go through the broker's node channel, which keeps follower fetches on connections
//! of their own (an AddPartitionsToTxn that adds waits for the coordinator's high watermark,
//! which may wait for this node's fetches: on one in-order connection they would queue behind
//! it).

use fjord_protocol::kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use fjord_protocol::kafka_protocol::messages::{
    AddPartitionsToTxnRequest, ProducerId, TopicName, TransactionalId,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ApiKey, RequestKind, ResponseError, ResponseKind};

use crate::node_channel::NodeRequest;
use crate::replica_manager::TRANSACTION_STATE_TOPIC_NAME;
use crate::Broker;

/// AddPartitionsToTxn v4: the first inter-broker version (batched, `verify_only`).
const VERIFY_VERSION: i16 = 4;
/// AddPartitionsToTxn v5: transactions version 2 (the coordinator adds the partitions).
const ADD_VERSION: i16 = 5;
/// How long a leader waits for the remote coordinator's verdict.
const VERIFY_TIMEOUT_MS: u64 = 5_000;

/// Ok(()) if every partition is in the ongoing transaction of `transactional_id` at exactly
/// (`producer_id`, `producer_epoch`); with `add`, the coordinator adds the missing ones first.
/// Asks the local transaction coordinator, and the coordinator's node when it is elsewhere.
pub async fn verify_or_add_partitions(
    broker: &Broker,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    partitions: &[(String, i32)],
    add: bool,
    now_ms: i64,
) -> Result<(), ResponseError> {
    let local = broker
        .transaction_coordinator()
        .verify_or_add_partitions(
            transactional_id,
            producer_id,
            producer_epoch,
            partitions,
            add,
            now_ms,
        )
        .await;
    match local {
        Err(ResponseError::NotCoordinator) => {
            verify_remotely(
                broker,
                transactional_id,
                producer_id,
                producer_epoch,
                partitions,
                add,
            )
            .await
        }
        other => other,
    }
}

/// The node leading the transactional id's `__transaction_state` partition, if it is another.
fn remote_coordinator(broker: &Broker, transactional_id: &str) -> Option<i32> {
    let state_partition = broker
        .transaction_coordinator()
        .partition_for(transactional_id);
    let image = broker.image();
    let leader = image
        .topic_by_name(TRANSACTION_STATE_TOPIC_NAME)?
        .partitions
        .get(&state_partition)?
        .leader;
    (leader >= 0 && leader != broker.config().node_id).then_some(leader)
}

async fn verify_remotely(
    broker: &Broker,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    partitions: &[(String, i32)],
    add: bool,
) -> Result<(), ResponseError> {
    let Some(channel) = broker.replication().node_channel() else {
        return Err(ResponseError::NotCoordinator);
    };
    let Some(coordinator) = remote_coordinator(broker, transactional_id) else {
        return Err(ResponseError::NotCoordinator);
    };
    let mut topics: std::collections::BTreeMap<&str, Vec<i32>> = Default::default();
    for (topic, index) in partitions {
        topics.entry(topic.as_str()).or_default().push(*index);
    }
    let request = AddPartitionsToTxnRequest::default().with_transactions(vec![
        AddPartitionsToTxnTransaction::default()
            .with_transactional_id(TransactionalId(StrBytes::from_string(
                transactional_id.to_string(),
            )))
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(producer_epoch)
            .with_verify_only(!add)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(name, indexes)| {
                        AddPartitionsToTxnTopic::default()
                            .with_name(TopicName(StrBytes::from_string(name.to_string())))
                            .with_partitions(indexes)
                    })
                    .collect(),
            ),
    ]);
    let response = channel
        .send(
            coordinator,
            NodeRequest {
                api_key: ApiKey::AddPartitionsToTxn,
                api_version: if add { ADD_VERSION } else { VERIFY_VERSION },
                body: RequestKind::AddPartitionsToTxn(request),
                timeout_ms: VERIFY_TIMEOUT_MS,
            },
        )
        .await;
    let response = match response {
        Ok(ResponseKind::AddPartitionsToTxn(response)) => response,
        Ok(_) => return Err(ResponseError::UnknownServerError),
        Err(error) => {
            tracing::debug!(coordinator, transactional_id, %error, "transaction verification: coordinator unreachable");
            return Err(ResponseError::NotCoordinator);
        }
    };
    if response.error_code != 0 {
        return Err(error_from_code(response.error_code));
    }
    let result = response
        .results_by_transaction
        .iter()
        .find(|r| r.transactional_id.as_str() == transactional_id);
    for (topic, index) in partitions {
        let code = result
            .into_iter()
            .flat_map(|r| r.topic_results.iter())
            .filter(|t| t.name.as_str() == topic)
            .flat_map(|t| t.results_by_partition.iter())
            .find(|p| p.partition_index == *index)
            .map_or(ResponseError::UnknownServerError.code(), |p| {
                p.partition_error_code
            });
        if code != 0 {
            return Err(error_from_code(code));
        }
    }
    Ok(())
}

fn error_from_code(code: i16) -> ResponseError {
    ResponseError::try_from_code(code).unwrap_or(ResponseError::UnknownServerError)
}
