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
