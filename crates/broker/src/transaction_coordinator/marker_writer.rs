//! The in-process marker writer of a single node: Kafka's coordinator sends WriteTxnMarkers
//! to each partition's leader; here every leader is this broker, so the control batch is
//! appended directly.
//!
//! This minimal writer appends the control batch only. At integration it is replaced by one
//! that goes through the partition's producer state (`Partition::append_end_txn_marker`) and
//! completes transactional offset commits in the group coordinator.

use std::sync::Arc;

use fjord_protocol::control::{encode_end_txn_marker, EndTxnMarker};
use fjord_protocol::ResponseError;
use tracing::warn;

use super::TxnMarkerWriter;
use crate::partition::PartitionError;
use crate::replica_manager::ReplicaManager;
use crate::time::now_ms;

pub struct PartitionMarkerWriter {
    replica_manager: Arc<ReplicaManager>,
}

impl PartitionMarkerWriter {
    pub fn new(replica_manager: Arc<ReplicaManager>) -> Self {
        Self { replica_manager }
    }

    /// Writes one marker; the WriteTxnMarkers handler uses it per partition too.
    pub fn write_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
        topic: &str,
        partition: i32,
    ) -> Result<(), ResponseError> {
        let target = self
            .replica_manager
            .partition(topic, partition)
            .ok_or(ResponseError::UnknownTopicOrPartition)?;
        let now = now_ms();
        let mut batch = encode_end_txn_marker(
            producer_id,
            producer_epoch,
            EndTxnMarker {
                commit,
                coordinator_epoch,
            },
            now,
        );
        match target.append_as_leader(&mut batch, now) {
            Ok(_) => Ok(()),
            Err(PartitionError::Deleted) => Err(ResponseError::UnknownTopicOrPartition),
            Err(PartitionError::Storage(err)) => {
                warn!(topic, partition, error = %err, "cannot write a transaction marker");
                Err(ResponseError::KafkaStorageError)
            }
        }
    }
}

impl TxnMarkerWriter for PartitionMarkerWriter {
    fn write_markers(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
        partitions: &[(String, i32)],
    ) -> Vec<((String, i32), Result<(), ResponseError>)> {
        let results = partitions
            .iter()
            .map(|(topic, partition)| {
                let result = self.write_marker(
                    producer_id,
                    producer_epoch,
                    coordinator_epoch,
                    commit,
                    topic,
                    *partition,
                );
                ((topic.clone(), *partition), result)
            })
            .collect();
        // Consumers long-poll for the marker (read_committed reads up to it).
        self.replica_manager.data_arrived.notify_waiters();
        results
    }
}
