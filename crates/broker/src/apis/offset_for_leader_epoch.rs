//! OffsetForLeaderEpoch (key 23), v2 and up: the end offset of a leader epoch (KIP-101/279),
//! which consumers use to detect log truncation after a leader change and followers to find
//! where their log diverges from the leader's.
//!
//! As Kafka's `ReplicaManager.lastOffsetForLeaderEpoch` (`fetchOnlyFromLeader` for consumers
//! and replicas alike): a broker with no replica answers NOT_LEADER_OR_FOLLOWER; a replica
//! first checks `current_leader_epoch` (newer than its own: UNKNOWN_LEADER_EPOCH, older:
//! FENCED_LEADER_EPOCH, -1: not checked), then answers only if it leads the partition.

use fjord_protocol::kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use fjord_protocol::kafka_protocol::messages::{
    OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
};
use fjord_protocol::{ResponseError, VersionRange};

use crate::partition::PartitionError;
use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 2, max: 4 };

const UNDEFINED_EPOCH: i32 = -1;
const UNDEFINED_OFFSET: i64 = -1;

pub fn handle(
    broker: &Broker,
    request: &OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let manager = broker.replica_manager();
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let response = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(UNDEFINED_EPOCH)
                        .with_end_offset(UNDEFINED_OFFSET);
                    let Some(partition) = manager.partition(&topic.topic, p.partition) else {
                        return response
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    if !partition.is_hosted() {
                        return response.with_error_code(ResponseError::NotLeaderOrFollower.code());
                    }
                    if let Err(error) = partition.check_leader_epoch(p.current_leader_epoch) {
                        return response.with_error_code(error.code());
                    }
                    match partition.end_offset_for_epoch(p.leader_epoch) {
                        Ok(Some((epoch, end_offset))) => response
                            .with_leader_epoch(epoch)
                            .with_end_offset(end_offset),
                        Ok(None) => response,
                        Err(PartitionError::Deleted) => {
                            response.with_error_code(ResponseError::UnknownTopicOrPartition.code())
                        }
                        Err(
                            PartitionError::NotLeaderOrFollower | PartitionError::NotEnoughReplicas,
                        ) => response.with_error_code(ResponseError::NotLeaderOrFollower.code()),
                        Err(PartitionError::Storage(err)) => {
                            tracing::error!(error = %err, "epoch lookup failed");
                            response.with_error_code(ResponseError::KafkaStorageError.code())
                        }
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
