//! Writing transaction markers on this node: the transaction coordinator's side of Kafka's
//! WriteTxnMarkers. For every partition of a transaction the COMMIT or ABORT control batch is
//! appended to the partition's log (which completes the producer's transaction there, moves
//! the last stable offset and, for an abort, records it in the aborted-transaction index); for
//! a `__consumer_offsets` partition the group coordinator then applies or drops the
//! transaction's pending offsets, as Kafka's `GroupCoordinator.onTransactionCompleted` does.
//!
//! A marker counts as written only once it is committed (Kafka's `handleWriteTxnMarkersRequest`
//! appends with `requiredAcks = -1`): the writer waits in the replication purgatory until the
//! partition's high watermark passes the marker, so a leader failover cannot drop a marker the
//! coordinator already counted (it would then write CompleteCommit/CompleteAbort and leave the
//! partition's transaction hanging). A marker that is not committed in time is answered with
//! the produce error and the coordinator retries it; a second marker for a transaction that is
//! no longer ongoing changes nothing (`ProducerStateManager.appendEndTxnMarker`).
//!
//! Lock order: the transaction coordinator calls this without its own locks held; a marker
//! takes the partition's log lock, then (offsets partitions) the group coordinator's shard lock.

use std::sync::Arc;

use fjord_protocol::control::EndTxnMarker;
use fjord_protocol::ResponseError;
use fjord_storage::{ProducerStateError, StorageError};

use crate::group_coordinator::GroupCoordinator;
use crate::partition::PartitionError;
use crate::replica_manager::{
    wait_for_coordinator_commit, CommitFuture, ReplicaManager, GROUP_METADATA_TOPIC_NAME,
};
use crate::replication_shell::ReplicationShell;
use crate::time::now_ms;
use crate::transaction_coordinator::TxnMarkerWriter;

/// Appends markers to the partitions this broker hosts.
pub struct LocalTxnMarkerWriter {
    replica_manager: Arc<ReplicaManager>,
    group_coordinator: Arc<GroupCoordinator>,
    replication: Arc<ReplicationShell>,
}

impl LocalTxnMarkerWriter {
    pub fn new(
        replica_manager: Arc<ReplicaManager>,
        group_coordinator: Arc<GroupCoordinator>,
        replication: Arc<ReplicationShell>,
    ) -> Self {
        Self {
            replica_manager,
            group_coordinator,
            replication,
        }
    }

    fn write_one(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        marker: EndTxnMarker,
        topic: &str,
        index: i32,
    ) -> Result<i64, ResponseError> {
        let partition = self
            .replica_manager
            .partition(topic, index)
            .ok_or(ResponseError::UnknownTopicOrPartition)?;
        // Markers go to the leader only (Kafka `appendRecords` with `requiredAcks` from the
        // coordinator): a follower here would diverge from its leader.
        if !partition.is_leader() {
            return Err(ResponseError::NotLeaderOrFollower);
        }
        let now_ms = now_ms();
        let last_offset = match partition.append_end_txn_marker(
            producer_id,
            producer_epoch,
            marker,
            now_ms,
        ) {
            Ok(info) => info.last_offset,
            Err(PartitionError::Deleted) => return Err(ResponseError::UnknownTopicOrPartition),
            Err(PartitionError::NotLeaderOrFollower | PartitionError::NotEnoughReplicas) => {
                return Err(ResponseError::NotLeaderOrFollower)
            }
            Err(PartitionError::Storage(StorageError::Producer(err))) => {
                tracing::warn!(topic, partition = index, producer_id, error = %err, "transaction marker refused");
                return Err(marker_error_code(&err));
            }
            Err(PartitionError::Storage(err)) => {
                tracing::error!(topic, partition = index, producer_id, error = %err, "writing a transaction marker failed");
                return Err(ResponseError::KafkaStorageError);
            }
        };
        if topic == GROUP_METADATA_TOPIC_NAME {
            self.group_coordinator
                .complete_transaction(index, producer_id, marker.commit, now_ms);
        }
        Ok(last_offset)
    }

    /// The acks=all wait of a written marker: until the high watermark passes `last_offset`.
    fn wait_committed(&self, topic: &str, index: i32, last_offset: i64) -> CommitFuture {
        wait_for_coordinator_commit(
            &self.replica_manager,
            &self.replication,
            topic,
            index,
            Some(last_offset.saturating_add(1)),
        )
    }
}

/// Resolves a commit wait from synchronous code (the marker writer is called synchronously by
/// the coordinator and the WriteTxnMarkers handler). A wait that is already over (a single
/// node, a follower that fetched already) answers at once; otherwise this worker thread blocks
/// on it (tokio `block_in_place`), and outside a multi-threaded runtime the marker is reported
/// as not yet written (COORDINATOR_LOAD_IN_PROGRESS) so the coordinator's timer retries it.
fn resolve_commit(mut wait: CommitFuture) -> Result<(), ResponseError> {
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    if let std::task::Poll::Ready(result) = wait.as_mut().poll(&mut context) {
        return result;
    }
    if !in_multi_threaded_runtime() {
        return Err(ResponseError::CoordinatorLoadInProgress);
    }
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(wait))
}

impl TxnMarkerWriter for LocalTxnMarkerWriter {
    fn write_markers(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
        partitions: &[(String, i32)],
    ) -> Vec<((String, i32), Result<(), ResponseError>)> {
        let marker = EndTxnMarker {
            commit,
            coordinator_epoch,
        };
        // Every marker is appended first, then all are awaited: the waits overlap.
        let written: Vec<_> = partitions
            .iter()
            .map(|(topic, index)| {
                let result = self
                    .write_one(producer_id, producer_epoch, marker, topic, *index)
                    .map(|last_offset| self.wait_committed(topic, *index, last_offset));
                ((topic.clone(), *index), result)
            })
            .collect();
        // read_committed fetches parked at the last stable offset can move on.
        self.replica_manager.data_arrived.notify_waiters();
        written
            .into_iter()
            .map(|(tp, result)| (tp, result.and_then(resolve_commit)))
            .collect()
    }
}

/// Whether this thread may block on a future with tokio `block_in_place` (only inside a
/// multi-threaded runtime).
fn in_multi_threaded_runtime() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}

/// Kafka's errors for a refused marker (`TransactionMarkerRequestCompletionHandler` gives up
/// on both: the coordinator or the producer epoch is stale).
fn marker_error_code(err: &ProducerStateError) -> ResponseError {
    match err {
        ProducerStateError::TransactionCoordinatorFenced { .. } => {
            ResponseError::TransactionCoordinatorFenced
        }
        _ => ResponseError::InvalidProducerEpoch,
    }
}

/// Markers for partitions led anywhere in the cluster (Kafka's
/// `TransactionMarkerChannelManager`): partitions led here are written locally, the others are
/// sent as WriteTxnMarkers (v1) to their leader, one request per leader. The coordinator calls
/// it synchronously; a remote send blocks this worker thread for the round trip (tokio
/// `block_in_place`), and outside a multi-threaded runtime remote partitions answer
/// COORDINATOR_LOAD_IN_PROGRESS so the coordinator's timer retries them.
pub struct ClusterTxnMarkerWriter {
    local: LocalTxnMarkerWriter,
    node_id: i32,
    image: Box<dyn Fn() -> std::sync::Arc<fjord_metadata::MetadataImage> + Send + Sync>,
    channel: Arc<dyn crate::node_channel::NodeChannel>,
    timeout_ms: u64,
}

impl ClusterTxnMarkerWriter {
    pub fn new(
        local: LocalTxnMarkerWriter,
        node_id: i32,
        image: Box<dyn Fn() -> std::sync::Arc<fjord_metadata::MetadataImage> + Send + Sync>,
        channel: Arc<dyn crate::node_channel::NodeChannel>,
    ) -> Self {
        Self {
            local,
            node_id,
            image,
            channel,
            timeout_ms: 5_000,
        }
    }

    fn leader_of(
        &self,
        image: &fjord_metadata::MetadataImage,
        topic: &str,
        index: i32,
    ) -> Option<i32> {
        let topic = image.topic_by_name(topic)?;
        let leader = topic.partitions.get(&index)?.leader;
        (leader >= 0).then_some(leader)
    }

    fn send_remote(
        &self,
        leader: i32,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
        partitions: &[(String, i32)],
    ) -> Vec<((String, i32), Result<(), ResponseError>)> {
        use fjord_protocol::kafka_protocol::messages::write_txn_markers_request::{
            WritableTxnMarker, WritableTxnMarkerTopic,
        };
        use fjord_protocol::kafka_protocol::messages::{
            ProducerId, TopicName, WriteTxnMarkersRequest,
        };
        use fjord_protocol::kafka_protocol::protocol::StrBytes;
        let failed = |code: ResponseError| {
            partitions
                .iter()
                .map(|tp| (tp.clone(), Err(code)))
                .collect::<Vec<_>>()
        };
        if !in_multi_threaded_runtime() {
            return failed(ResponseError::CoordinatorLoadInProgress);
        }
        let mut topics: std::collections::BTreeMap<&str, Vec<i32>> = Default::default();
        for (topic, index) in partitions {
            topics.entry(topic.as_str()).or_default().push(*index);
        }
        let request =
            WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
                .with_producer_id(ProducerId(producer_id))
                .with_producer_epoch(producer_epoch)
                .with_transaction_result(commit)
                .with_coordinator_epoch(coordinator_epoch)
                .with_topics(
                    topics
                        .into_iter()
                        .map(|(name, indexes)| {
                            WritableTxnMarkerTopic::default()
                                .with_name(TopicName(StrBytes::from_string(name.to_string())))
                                .with_partition_indexes(indexes)
                        })
                        .collect(),
                )]);
        let send = self.channel.send(
            leader,
            crate::node_channel::NodeRequest {
                api_key: fjord_protocol::ApiKey::WriteTxnMarkers,
                api_version: 1,
                body: fjord_protocol::RequestKind::WriteTxnMarkers(request),
                timeout_ms: self.timeout_ms,
            },
        );
        let response =
            tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(send));
        let response = match response {
            Ok(fjord_protocol::ResponseKind::WriteTxnMarkers(response)) => response,
            Ok(_) | Err(_) => return failed(ResponseError::NotLeaderOrFollower),
        };
        partitions
            .iter()
            .map(|(topic, index)| {
                let code = response
                    .markers
                    .iter()
                    .flat_map(|m| m.topics.iter())
                    .filter(|t| t.name.as_str() == topic)
                    .flat_map(|t| t.partitions.iter())
                    .find(|p| p.partition_index == *index)
                    .map_or(ResponseError::UnknownServerError.code(), |p| p.error_code);
                let result = match code {
                    0 => Ok(()),
                    code => Err(ResponseError::try_from_code(code)
                        .unwrap_or(ResponseError::UnknownServerError)),
                };
                ((topic.clone(), *index), result)
            })
            .collect()
    }
}

impl TxnMarkerWriter for ClusterTxnMarkerWriter {
    fn write_markers(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
        partitions: &[(String, i32)],
    ) -> Vec<((String, i32), Result<(), ResponseError>)> {
        let image = (self.image)();
        let mut by_leader: std::collections::BTreeMap<i32, Vec<(String, i32)>> = Default::default();
        let mut results = Vec::with_capacity(partitions.len());
        for (topic, index) in partitions {
            match self.leader_of(&image, topic, *index) {
                Some(leader) => by_leader
                    .entry(leader)
                    .or_default()
                    .push((topic.clone(), *index)),
                // Gone (deleted topic): dropped, as Kafka does; leaderless: retried later.
                None if image.topic_by_name(topic).is_none() => results.push((
                    (topic.clone(), *index),
                    Err(ResponseError::UnknownTopicOrPartition),
                )),
                None => results.push((
                    (topic.clone(), *index),
                    Err(ResponseError::NotLeaderOrFollower),
                )),
            }
        }
        for (leader, group) in by_leader {
            if leader == self.node_id {
                results.extend(self.local.write_markers(
                    producer_id,
                    producer_epoch,
                    coordinator_epoch,
                    commit,
                    &group,
                ));
            } else {
                results.extend(self.send_remote(
                    leader,
                    producer_id,
                    producer_epoch,
                    coordinator_epoch,
                    commit,
                    &group,
                ));
            }
        }
        results
    }
}
