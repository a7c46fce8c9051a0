//! Produce (key 0), v3 and up: validate each record batch as bytes (lengths, magic, CRC-32C),
//! check it against `max.message.bytes`, then append it with offsets patched in place. The
//! batch is never decompressed here.
//!
//! acks=0 gets no response at all; acks=1 is answered once the batch is in the leader's log;
//! acks=-1 (all) is refused with NOT_ENOUGH_REPLICAS while the ISR is below the effective
//! `min.insync.replicas`, and after the append waits (Kafka `DelayedProduce`) until the high
//! watermark passes the batch (NONE), the ISR fell below min ISR
//! (NOT_ENOUGH_REPLICAS_AFTER_APPEND), the leadership moved (NOT_LEADER_OR_FOLLOWER) or the
//! request's `timeout_ms` passed (REQUEST_TIMED_OUT). A single node answers at once: its
//! high watermark follows its log end. A partition
//! this broker does not lead answers NOT_LEADER_OR_FOLLOWER with KIP-951's `CurrentLeader`
//! and `NodeEndpoints` (v10+), so the producer goes to the new leader without a Metadata
//! round trip.

use bytes::{Bytes, BytesMut};
use fjord_protocol::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use fjord_protocol::kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse,
    TopicProduceResponse,
};
use fjord_protocol::kafka_protocol::messages::{
    BrokerId, ProduceRequest, ProduceResponse, TopicName,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::records::{self, RecordError};
use fjord_protocol::{ResponseError, VersionRange};
use fjord_storage::{ProducerStateError, StorageError};

use crate::forwarding::AutoCreated;
use crate::metadata_view::ImageView;
use crate::metrics::GaugeGuard;
use crate::partition::PartitionError;
use crate::replica_manager::{is_internal_topic, validate_topic_name, Topic};
use crate::replication_shell::ProduceWait;
use crate::time::now_ms;
use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 3, max: 13 };

/// First version that names topics by id instead of by name.
const TOPIC_ID_VERSION: i16 = 13;
/// First version sent only by clients using transactions version 2 (KIP-890 part 2).
const IMPLICIT_ADD_PARTITION_VERSION: i16 = 12;
/// First version whose clients know TRANSACTION_ABORTABLE (KIP-890 part 1 error handling).
const TRANSACTION_ABORTABLE_VERSION: i16 = 11;

/// The request's transaction, for the batches that belong to one.
struct TxnContext {
    api_version: i16,
    transactional_id: Option<String>,
    add_partitions: bool,
    /// The transaction coordinator's verdict per (topic, partition) whose transactional batch
    /// needed verifying, obtained before any append (see [`verify_transactions`]).
    verified: std::collections::HashMap<(String, i32), Result<(), ResponseError>>,
}

/// Handles a produce request. The response is built for every acks value; for acks=0 the
/// caller sends nothing, or closes the connection if a partition failed (see [`any_error`]).
///
/// KIP-951 leader hints name the leader's endpoint on `listener_name`, the listener the request
/// came in on.
pub async fn handle(
    broker: &Broker,
    listener_name: &str,
    api_version: i16,
    request: ProduceRequest,
) -> ProduceResponse {
    let acks = request.acks;
    let acks_valid = matches!(acks, -1..=1);
    let mut responses = Vec::with_capacity(request.topic_data.len());
    let mut appended_any = false;
    // Once per request: dynamic broker configs may swap it at any time.
    let config = broker.config();
    let mut txn = TxnContext {
        api_version,
        transactional_id: request.transactional_id.as_ref().map(|id| id.to_string()),
        // KIP-890 part 2: a client that sends Produce v12+ uses transactions version 2 and
        // does not add partitions itself; the partition is added on its first write.
        add_partitions: api_version >= IMPLICIT_ADD_PARTITION_VERSION,
        verified: std::collections::HashMap::new(),
    };
    if !acks_valid {
        // Checked per partition below (Kafka answers INVALID_REQUIRED_ACKS per partition).
    } else if has_transactional_batch(&request) && txn.transactional_id.is_none() {
        // Kafka's KafkaApis: transactional records need an (authorized) transactional id.
        return whole_request_error(
            api_version,
            request,
            ResponseError::TransactionalIdAuthorizationFailed,
        );
    }
    // Topics first (auto-creation goes through the controller), then the appends.
    let mut topics = Vec::with_capacity(request.topic_data.len());
    for topic_data in &request.topic_data {
        topics.push(resolve_topic(broker, api_version, topic_data).await);
    }
    if acks_valid {
        txn.verified = verify_transactions(broker, &txn, &request.topic_data, &topics).await;
    }
    let mut hints = LeaderHints {
        listener_name: listener_name.to_string(),
        ..LeaderHints::default()
    };
    // acks=all partitions that must wait for the high watermark: (topic slot, partition slot,
    // partition, offset the high watermark must reach).
    let mut pending = Vec::new();
    let timeout_ms = i64::from(request.timeout_ms);
    for (topic_data, topic) in request.topic_data.into_iter().zip(topics) {
        let mut partition_responses = Vec::with_capacity(topic_data.partition_data.len());
        for partition_data in topic_data.partition_data {
            let response = if !acks_valid {
                error_response(
                    partition_data.index,
                    ResponseError::InvalidRequiredAcks,
                    None,
                )
            } else {
                match &topic {
                    Ok(topic) => {
                        let (response, wait) = produce_to_partition(
                            broker,
                            &config,
                            &txn,
                            acks,
                            topic,
                            partition_data,
                            &mut appended_any,
                            &mut hints,
                        );
                        if let Some(wait) = wait {
                            pending.push((responses.len(), partition_responses.len(), wait));
                        }
                        response
                    }
                    Err(code) => error_response(partition_data.index, *code, None),
                }
            };
            partition_responses.push(response);
        }
        let mut topic_response =
            TopicProduceResponse::default().with_partition_responses(partition_responses);
        if api_version >= TOPIC_ID_VERSION {
            topic_response = topic_response.with_topic_id(topic_data.topic_id);
        } else {
            topic_response = topic_response.with_name(topic_data.name);
        }
        responses.push(topic_response);
    }
    if appended_any {
        // Followers long-polling for these batches wake first: the wait below needs them.
        broker.replica_manager().data_arrived.notify_waiters();
    }
    await_acks(broker, &mut responses, pending, timeout_ms).await;
    let mut response = ProduceResponse::default().with_responses(responses);
    if api_version >= LEADER_HINT_VERSION {
        response = response.with_node_endpoints(
            hints
                .endpoints
                .into_values()
                .map(|(id, host, port, rack)| {
                    NodeEndpoint::default()
                        .with_node_id(BrokerId(id))
                        .with_host(StrBytes::from_string(host))
                        .with_port(i32::from(port))
                        .with_rack(rack.map(StrBytes::from_string))
                })
                .collect(),
        );
    }
    response
}

/// An acks=all append waiting for the high watermark to reach `required_offset`.
struct AckWait {
    partition: std::sync::Arc<crate::partition::Partition>,
    required_offset: i64,
}

/// Waits for every acks=all partition of the request (all parked first, so they wait
/// together), then writes the outcomes into the responses.
async fn await_acks(
    broker: &Broker,
    responses: &mut [TopicProduceResponse],
    pending: Vec<(usize, usize, AckWait)>,
    timeout_ms: i64,
) {
    if pending.is_empty() {
        return;
    }
    let deadline =
        tokio::time::Instant::now() + std::time::Duration::from_millis(timeout_ms.max(0) as u64);
    let shell = broker.replication();
    let waits: Vec<_> = pending
        .into_iter()
        .map(|(topic, slot, wait)| {
            let outcome = shell.wait_for_acks(&wait.partition, wait.required_offset, timeout_ms);
            (topic, slot, outcome)
        })
        .collect();
    let parked = waits
        .iter()
        .filter(|(_, _, w)| matches!(w, ProduceWait::Parked(_)))
        .count();
    let _gauge = (parked > 0).then(|| GaugeGuard::enter(&broker.metrics().produce_purgatory));
    for (topic, slot, outcome) in waits {
        let error = match outcome {
            ProduceWait::Done(error) => error,
            ProduceWait::Parked(receiver) => {
                match tokio::time::timeout_at(deadline, receiver).await {
                    Ok(Ok(error)) => error,
                    // Timed out, or the purgatory dropped it (expired by another produce).
                    Ok(Err(_)) | Err(_) => Some(ResponseError::RequestTimedOut),
                }
            }
        };
        if let (Some(error), Some(response)) = (
            error,
            responses
                .get_mut(topic)
                .and_then(|t| t.partition_responses.get_mut(slot)),
        ) {
            response.error_code = error.code();
        }
    }
}

/// First Produce version with KIP-951's `CurrentLeader` and `NodeEndpoints`.
const LEADER_HINT_VERSION: i16 = 10;

/// The leaders named in NOT_LEADER_OR_FOLLOWER answers, for the response's `NodeEndpoints`.
#[derive(Default)]
struct LeaderHints {
    /// The listener the request came in on: the hints are endpoints on it.
    listener_name: String,
    endpoints: std::collections::BTreeMap<i32, (i32, String, u16, Option<String>)>,
}

/// NOT_LEADER_OR_FOLLOWER for a partition of a known topic this broker does not lead (or
/// host), with KIP-951's `CurrentLeader` from the image (Kafka `ReplicaManager.getCurrentLeader`).
fn not_leader(
    broker: &Broker,
    api_version: i16,
    topic: &Topic,
    index: i32,
    hints: &mut LeaderHints,
) -> PartitionProduceResponse {
    let mut response = error_response(index, ResponseError::NotLeaderOrFollower, None);
    if api_version < LEADER_HINT_VERSION {
        return response;
    }
    let image = broker.image();
    let view = ImageView::new(&image, &hints.listener_name);
    let Some(hint) = image
        .topic(&topic.id)
        .and_then(|topic_image| view.leader_hint(topic_image, index))
    else {
        return response;
    };
    response = response.with_current_leader(
        LeaderIdAndEpoch::default()
            .with_leader_id(BrokerId(hint.leader_id))
            .with_leader_epoch(hint.leader_epoch),
    );
    if let Some((host, port, rack)) = hint.endpoint {
        hints
            .endpoints
            .insert(hint.leader_id, (hint.leader_id, host, port, rack));
    }
    response
}

/// Whether any partition in the response failed. With acks=0 Kafka closes the connection in
/// that case: it is the only way such a producer learns that something went wrong.
pub fn any_error(response: &ProduceResponse) -> bool {
    response
        .responses
        .iter()
        .flat_map(|t| &t.partition_responses)
        .any(|p| p.error_code != 0)
}

async fn resolve_topic(
    broker: &Broker,
    api_version: i16,
    topic_data: &TopicProduceData,
) -> Result<std::sync::Arc<Topic>, ResponseError> {
    let manager = broker.replica_manager();
    if api_version >= TOPIC_ID_VERSION {
        let topic = manager
            .topic_by_id(&topic_data.topic_id)
            .ok_or(ResponseError::UnknownTopicId)?;
        if is_internal_topic(&topic.name) {
            return Err(ResponseError::InvalidTopicException);
        }
        return Ok(topic);
    }
    let name: &TopicName = &topic_data.name;
    // Kafka: "Cannot append to internal topic"; only the group coordinator writes there.
    if validate_topic_name(name).is_err() || is_internal_topic(name) {
        return Err(ResponseError::InvalidTopicException);
    }
    match broker.topic_or_auto_create(name, true).await {
        AutoCreated::Exists(topic) => Ok(topic),
        AutoCreated::Unknown => Err(ResponseError::UnknownTopicOrPartition),
        // Retriable: the producer asks for metadata and tries again.
        AutoCreated::Creating => Err(ResponseError::LeaderNotAvailable),
        AutoCreated::Failed(error) => {
            tracing::warn!(topic = %name.as_str(), code = ?error.code, message = ?error.message, "auto topic creation on produce failed");
            Err(ResponseError::UnknownTopicOrPartition)
        }
    }
}

fn error_response(
    index: i32,
    error: ResponseError,
    message: Option<String>,
) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(error.code())
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
        .with_error_message(message.map(StrBytes::from_string))
}

/// Kafka's split between a corrupt batch (CORRUPT_MESSAGE) and a well-formed one it refuses
/// (INVALID_RECORD).
fn record_error_code(err: &RecordError) -> ResponseError {
    match err {
        RecordError::UnsupportedMagic { .. }
        | RecordError::EmptyBatch
        | RecordError::InconsistentOffsetRange { .. }
        | RecordError::InvalidCompression { .. } => ResponseError::InvalidRecord,
        _ => ResponseError::CorruptMessage,
    }
}

#[allow(clippy::too_many_arguments)]
fn produce_to_partition(
    broker: &Broker,
    config: &crate::BrokerConfig,
    txn: &TxnContext,
    acks: i16,
    topic: &Topic,
    data: PartitionProduceData,
    appended_any: &mut bool,
    hints: &mut LeaderHints,
) -> (PartitionProduceResponse, Option<AckWait>) {
    let index = data.index;
    let Some(partition) = usize::try_from(index)
        .ok()
        .and_then(|i| topic.partitions.get(i))
    else {
        return (
            error_response(index, ResponseError::UnknownTopicOrPartition, None),
            None,
        );
    };
    if !partition.is_leader() {
        return (
            not_leader(broker, txn.api_version, topic, index, hints),
            None,
        );
    }
    let response = append_to_partition(
        broker,
        config,
        txn,
        acks,
        topic,
        partition,
        data,
        appended_any,
        hints,
    );
    match response {
        Ok((response, info)) if acks == -1 => {
            let wait = AckWait {
                partition: partition.clone(),
                required_offset: info.last_offset.saturating_add(1),
            };
            (response, Some(wait))
        }
        Ok((response, _)) => (response, None),
        Err(response) => (response, None),
    }
}

/// Validates and appends one partition's batch. `Ok` carries the append's offsets; `Err` is
/// the partition's final answer (returned once per partition, so not boxed).
#[allow(clippy::too_many_arguments, clippy::result_large_err)]
fn append_to_partition(
    broker: &Broker,
    config: &crate::BrokerConfig,
    txn: &TxnContext,
    acks: i16,
    topic: &Topic,
    partition: &std::sync::Arc<crate::partition::Partition>,
    data: PartitionProduceData,
    appended_any: &mut bool,
    hints: &mut LeaderHints,
) -> Result<(PartitionProduceResponse, fjord_storage::LogAppendInfo), PartitionProduceResponse> {
    let index = data.index;
    let records = data.records.unwrap_or_default();
    let max_message_bytes = crate::topic_config::max_message_bytes(&topic.configs, config);
    if let Err((error, message)) = validate_records(&records, max_message_bytes) {
        tracing::debug!(topic = %topic.name, partition = index, %message, "rejected produce");
        let mut response = error_response(index, error, Some(message.clone()));
        if error == ResponseError::InvalidRecord {
            response = response.with_record_errors(vec![BatchIndexAndErrorMessage::default()
                .with_batch_index(0)
                .with_batch_index_error_message(Some(StrBytes::from_string(message)))]);
        }
        return Err(response);
    }
    if crate::topic_config::is_compacted(&topic.configs, config) {
        if let Err((error, message)) = check_keys(&records, &topic.name, index) {
            tracing::debug!(topic = %topic.name, partition = index, %message, "rejected produce");
            let mut response = error_response(index, error, Some(message.clone()));
            if error == ResponseError::InvalidRecord {
                response = response.with_record_errors(vec![BatchIndexAndErrorMessage::default()
                    .with_batch_index(0)
                    .with_batch_index_error_message(Some(StrBytes::from_string(message)))]);
            }
            return Err(response);
        }
    }
    let now_ms = now_ms();
    if let Err(error) = verify_transaction(txn, &records, topic, partition) {
        tracing::debug!(topic = %topic.name, partition = index, ?error, "transactional produce refused by the transaction coordinator");
        return Err(error_response(index, error, None));
    }
    // Kafka `appendRecordsToLeader`: acks=all needs min.insync.replicas in the ISR first.
    if let Err(error) = partition.check_append(acks == -1) {
        return Err(match error {
            PartitionError::NotEnoughReplicas => {
                error_response(index, ResponseError::NotEnoughReplicas, None)
            }
            _ => not_leader(broker, txn.api_version, topic, index, hints),
        });
    }
    let (appended, log_append_time_ms) =
        if crate::topic_config::uses_log_append_time(&topic.configs) {
            // The stamp changes CRC-covered fields, so this path edits (a copy of) the batch.
            // Exactly one batch per partition (checked above): one stamp covers the request.
            let mut buffer = into_mut(records);
            records::set_log_append_time(&mut buffer, now_ms);
            let appended = partition.append_as_leader(
                &mut buffer,
                now_ms,
                fjord_storage::AppendOrigin::Client,
            );
            if let Ok(info) = &appended {
                partition.count_produced(info, buffer.len());
            }
            (appended, now_ms)
        } else {
            // The request's bytes go to the file as they are; only a copy of the header is
            // patched. No copy of the records.
            (partition.append_batch_as_leader(&records, now_ms), -1)
        };
    match appended {
        Ok(info) => {
            if info.duplicate {
                // Kafka answers a retried batch it already has with the original offsets.
                tracing::debug!(topic = %topic.name, partition = index, base_offset = info.first_offset, "duplicate batch from an idempotent producer");
            } else {
                *appended_any = true;
            }
            let response = PartitionProduceResponse::default()
                .with_index(index)
                .with_base_offset(info.first_offset)
                .with_log_append_time_ms(if info.duplicate {
                    -1
                } else {
                    log_append_time_ms
                })
                .with_log_start_offset(info.log_start_offset);
            Ok((response, info))
        }
        Err(PartitionError::Storage(StorageError::Producer(err))) => {
            // Expected in normal operation (retries, fencing): not a broker failure.
            tracing::debug!(topic = %topic.name, partition = index, error = %err, "produce refused by producer state");
            Err(error_response(
                index,
                producer_error_code(&err),
                Some(err.to_string()),
            ))
        }
        Err(PartitionError::Deleted) => Err(error_response(
            index,
            ResponseError::UnknownTopicOrPartition,
            None,
        )),
        Err(PartitionError::NotLeaderOrFollower) => {
            Err(not_leader(broker, txn.api_version, topic, index, hints))
        }
        Err(PartitionError::NotEnoughReplicas) => Err(error_response(
            index,
            ResponseError::NotEnoughReplicas,
            None,
        )),
        Err(PartitionError::Storage(err @ StorageError::RecordBatchTooLarge { .. })) => {
            // Kafka: RecordBatchTooLargeException, a final error the producer must not retry.
            tracing::debug!(topic = %topic.name, partition = index, error = %err, "rejected produce");
            Err(error_response(
                index,
                ResponseError::RecordListTooLarge,
                Some(err.to_string()),
            ))
        }
        Err(PartitionError::Storage(err)) => {
            tracing::error!(topic = %topic.name, partition = index, error = %err, "append failed");
            Err(error_response(
                index,
                ResponseError::KafkaStorageError,
                None,
            ))
        }
    }
}

/// A compacted topic keeps the latest record per key, so every record needs one (Kafka's
/// `LogValidator` check). Decompresses compressed batches: the one produce-path feature that
/// needs the records themselves. Control batches (transaction markers) carry no user keys.
fn check_keys(records: &[u8], topic: &str, partition: i32) -> Result<(), (ResponseError, String)> {
    let header = records::RecordBatchHeader::parse(records)
        .map_err(|e| (ResponseError::CorruptMessage, e.to_string()))?;
    if header.is_control() {
        return Ok(());
    }
    let mut keyless = false;
    records::for_each_key_value(records, |_, key, _| keyless |= key.is_none())
        .map_err(|e| (ResponseError::CorruptMessage, e.to_string()))?;
    if keyless {
        return Err((
            ResponseError::InvalidRecord,
            format!("Compacted topic cannot accept message without key in topic partition {topic}-{partition}."),
        ));
    }
    Ok(())
}

/// Takes the request's bytes for in-place patching, copying only if they are shared.
fn into_mut(records: Bytes) -> BytesMut {
    records
        .try_into_mut()
        .unwrap_or_else(|shared| BytesMut::from(&shared[..]))
}

/// Produce v3+ carries exactly one v2 batch per partition (Kafka's `ProduceRequest.validateRecords`).
fn validate_records(
    records: &[u8],
    max_message_bytes: usize,
) -> Result<(), (ResponseError, String)> {
    if records.is_empty() {
        return Err((
            ResponseError::InvalidRecord,
            "Produce request must carry one record batch".into(),
        ));
    }
    let mut batches = 0usize;
    for batch in records::BatchIter::new(records) {
        let (header, range) =
            batch.map_err(|err| (ResponseError::CorruptMessage, err.to_string()))?;
        batches += 1;
        if batches > 1 {
            return Err((
                ResponseError::InvalidRecord,
                "Produce requests with version 3 and up may contain exactly one record batch"
                    .into(),
            ));
        }
        if range.len() > max_message_bytes {
            return Err((
                ResponseError::MessageTooLarge,
                format!(
                    "The record batch of {} bytes exceeds max.message.bytes {max_message_bytes}",
                    range.len()
                ),
            ));
        }
        if header.is_control() {
            // Kafka's LogValidator: only transaction coordinators write markers.
            return Err((
                ResponseError::InvalidRecord,
                "Clients are not allowed to write control records".into(),
            ));
        }
        let batch_bytes = records.get(range).unwrap_or_default();
        records::validate_batch(batch_bytes)
            .map_err(|err| (record_error_code(&err), err.to_string()))?;
    }
    Ok(())
}

/// Kafka's error for each way producer state refuses a batch.
fn producer_error_code(err: &ProducerStateError) -> ResponseError {
    match err {
        ProducerStateError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        ProducerStateError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        ProducerStateError::ControlBatchFromClient | ProducerStateError::InvalidSequence { .. } => {
            ResponseError::InvalidRecord
        }
        // Every producer of the partition has an open transaction: retriable, like a full
        // coordinator (Kafka has no such limit).
        ProducerStateError::TooManyProducers { .. } => ResponseError::NotEnoughReplicas,
        ProducerStateError::TransactionCoordinatorFenced { .. } => {
            ResponseError::TransactionCoordinatorFenced
        }
        ProducerStateError::InvalidTxnState { .. } => ResponseError::InvalidTxnState,
    }
}

/// Whether any partition carries a transactional batch (read from the batch header only).
fn has_transactional_batch(request: &ProduceRequest) -> bool {
    request
        .topic_data
        .iter()
        .flat_map(|t| &t.partition_data)
        .filter_map(|p| p.records.as_deref())
        .any(|records| {
            records::RecordBatchHeader::parse(records).is_ok_and(|h| h.is_transactional())
        })
}

/// The same error for every partition of the request.
fn whole_request_error(
    api_version: i16,
    request: ProduceRequest,
    error: ResponseError,
) -> ProduceResponse {
    let responses = request
        .topic_data
        .into_iter()
        .map(|topic_data| {
            let partitions = topic_data
                .partition_data
                .iter()
                .map(|p| error_response(p.index, error, None))
                .collect();
            let topic = TopicProduceResponse::default().with_partition_responses(partitions);
            if api_version >= TOPIC_ID_VERSION {
                topic.with_topic_id(topic_data.topic_id)
            } else {
                topic.with_name(topic_data.name)
            }
        })
        .collect();
    ProduceResponse::default().with_responses(responses)
}

/// KIP-890: a transactional batch is appended only if its partition is part of the producer's
/// ongoing transaction, which the transaction coordinator confirms (and, for transactions
/// version 2 clients, arranges: an AddPartitions record answered once committed in
/// `__transaction_state`). This keeps a late or zombie write from opening a transaction that
/// nobody will ever end, which would stall read_committed consumers at the last stable offset
/// forever ("hanging transactions"). Runs before any append, holding no lock, so the
/// coordinator's commit wait never blocks a partition.
async fn verify_transactions(
    broker: &Broker,
    txn: &TxnContext,
    topic_data: &[TopicProduceData],
    topics: &[Result<std::sync::Arc<Topic>, ResponseError>],
) -> std::collections::HashMap<(String, i32), Result<(), ResponseError>> {
    let mut verified = std::collections::HashMap::new();
    let Some(transactional_id) = txn.transactional_id.as_deref() else {
        return verified;
    };
    for (data, topic) in topic_data.iter().zip(topics) {
        let Ok(topic) = topic else { continue };
        for partition_data in &data.partition_data {
            let index = partition_data.index;
            let Some(partition) = usize::try_from(index)
                .ok()
                .and_then(|i| topic.partitions.get(i))
            else {
                continue;
            };
            let Some(records) = partition_data.records.as_deref() else {
                continue;
            };
            let Ok(header) = records::RecordBatchHeader::parse(records) else {
                continue; // refused by validation later
            };
            // As in Kafka, only a producer's first batch of a transaction on this partition is
            // verified: later ones belong to the transaction already open here (a stale epoch
            // is refused by the append itself).
            if !header.is_transactional()
                || !partition.is_leader()
                || partition
                    .has_ongoing_transaction(header.producer_id, header.producer_epoch)
                    .unwrap_or(false)
            {
                continue;
            }
            let verdict = crate::txn_verification::verify_or_add_partitions(
                broker,
                transactional_id,
                header.producer_id,
                header.producer_epoch,
                &[(topic.name.to_string(), index)],
                txn.add_partitions,
                now_ms(),
            )
            .await
            .map_err(|error| verification_error_for(error, txn.api_version));
            verified.insert((topic.name.to_string(), index), verdict);
        }
    }
    verified
}

/// The verdict [`verify_transactions`] obtained for a transactional batch, if it needed one.
fn verify_transaction(
    txn: &TxnContext,
    records: &[u8],
    topic: &Topic,
    partition: &crate::partition::Partition,
) -> Result<(), ResponseError> {
    let Ok(header) = records::RecordBatchHeader::parse(records) else {
        return Ok(()); // validated before: unreachable in practice
    };
    if !header.is_transactional() {
        return Ok(());
    }
    if txn.transactional_id.is_none() {
        return Err(ResponseError::TransactionalIdAuthorizationFailed);
    }
    txn.verified
        .get(&(topic.name.to_string(), partition.index))
        .copied()
        .unwrap_or(Ok(()))
}

/// Kafka's translation of the coordinator's verdict into produce errors
/// (`AddPartitionsToTxnManager` and `ReplicaManager.handleProduceAppend`): retriable coordinator
/// errors become NOT_ENOUGH_REPLICAS, which every client retries without a metadata refresh;
/// PRODUCER_FENCED becomes INVALID_PRODUCER_EPOCH; clients older than Produce v11 do not know
/// TRANSACTION_ABORTABLE and get INVALID_TXN_STATE.
fn verification_error_for(error: ResponseError, api_version: i16) -> ResponseError {
    match error {
        ResponseError::CoordinatorNotAvailable
        | ResponseError::CoordinatorLoadInProgress
        | ResponseError::NotCoordinator
        | ResponseError::ConcurrentTransactions => ResponseError::NotEnoughReplicas,
        ResponseError::ProducerFenced => ResponseError::InvalidProducerEpoch,
        ResponseError::TransactionAbortable if api_version < TRANSACTION_ABORTABLE_VERSION => {
            ResponseError::InvalidTxnState
        }
        other => other,
    }
}
