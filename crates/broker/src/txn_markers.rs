//! Writing transaction markers on this node: the transaction coordinator's side of Kafka's
//! WriteTxnMarkers. For every partition of a transaction the COMMIT or ABORT control batch is
//! appended to the partition's log (which completes the producer's transaction there, moves
//! the last stable offset and, for an abort, records it in the aborted-transaction index); for
//! a `__consumer_offsets` partition the group coordinator then applies or drops the
//! transaction's pending offsets, as Kafka's `GroupCoordinator.onTransactionCompleted` does.
//!
//! Lock order: the transaction coordinator calls this without its own locks held; a marker
//! takes the partition's log lock, then (offsets partitions) the group coordinator's shard lock.

use std::sync::Arc;

use fjord_protocol::control::EndTxnMarker;
use fjord_protocol::ResponseError;
use fjord_storage::{ProducerStateError, StorageError};

use crate::group_coordinator::GroupCoordinator;
use crate::partition::PartitionError;
use crate::replica_manager::{ReplicaManager, GROUP_METADATA_TOPIC_NAME};
use crate::time::now_ms;
use crate::transaction_coordinator::TxnMarkerWriter;

/// Appends markers to the partitions this broker hosts.
pub struct LocalTxnMarkerWriter {
    replica_manager: Arc<ReplicaManager>,
    group_coordinator: Arc<GroupCoordinator>,
}

impl LocalTxnMarkerWriter {
    pub fn new(
        replica_manager: Arc<ReplicaManager>,
        group_coordinator: Arc<GroupCoordinator>,
    ) -> Self {
        Self {
            replica_manager,
            group_coordinator,
        }
    }

    fn write_one(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        marker: EndTxnMarker,
        topic: &str,
        index: i32,
    ) -> Result<(), ResponseError> {
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
        match partition.append_end_txn_marker(producer_id, producer_epoch, marker, now_ms) {
            Ok(_) => {}
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
        }
        if topic == GROUP_METADATA_TOPIC_NAME {
            self.group_coordinator
                .complete_transaction(index, producer_id, marker.commit, now_ms);
        }
        Ok(())
    }
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
        let results = partitions
            .iter()
            .map(|(topic, index)| {
                let result = self.write_one(producer_id, producer_epoch, marker, topic, *index);
                ((topic.clone(), *index), result)
            })
            .collect();
        // read_committed fetches parked at the last stable offset can move on.
        self.replica_manager.data_arrived.notify_waiters();
        results
    }
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
        let multi_threaded = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if !multi_threaded {
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
