//! DeleteRecords (key 21), v0-v2: moves each partition's log start offset (low watermark) to
//! the given offset (-1: the high watermark), deleting the segments entirely below it, as
//! Kafka's `ReplicaManager.deleteRecords`. The new log start offset is durable before the answer.
//! Only the partition's leader deletes (Kafka `Partition.deleteRecordsOnLeader`); followers
//! move their log start offset when the leader's fetch responses carry it. Errors per
//! partition: UNKNOWN_TOPIC_OR_PARTITION, NOT_LEADER_OR_FOLLOWER (a follower, or a broker with
//! no replica), POLICY_VIOLATION (a `cleanup.policy` without `delete`, as Kafka's
//! `config.delete` check), OFFSET_OUT_OF_RANGE (beyond the high watermark or below -1),
//! KAFKA_STORAGE_ERROR.

use fjord_protocol::kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use fjord_protocol::kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use fjord_protocol::{ResponseError, VersionRange};
use fjord_storage::StorageError;

use crate::partition::PartitionError;
use crate::replica_manager::is_internal_topic;
use crate::time::now_ms;
use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 2 };

pub fn handle(broker: &Broker, request: &DeleteRecordsRequest) -> DeleteRecordsResponse {
    let now_ms = now_ms();
    let config = broker.config();
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let result = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_low_watermark(-1);
                    if is_internal_topic(topic.name.as_str()) {
                        // Only the coordinators decide what leaves their topics.
                        return result.with_error_code(ResponseError::InvalidTopicException.code());
                    }
                    let Some(partition) = broker
                        .replica_manager()
                        .partition(topic.name.as_str(), p.partition_index)
                    else {
                        return result
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    if !partition.is_hosted() || !partition.is_leader() {
                        // A follower, or a known topic without a replica here (Kafka's
                        // `HostedPartition.None`). The deletion re-checks under the lock.
                        return result.with_error_code(ResponseError::NotLeaderOrFollower.code());
                    }
                    let deletes = broker
                        .replica_manager()
                        .topic(topic.name.as_str())
                        .is_some_and(|t| crate::topic_config::deletes(&t.configs, &config));
                    if !deletes {
                        return result.with_error_code(ResponseError::PolicyViolation.code());
                    }
                    match partition.delete_records_before(p.offset, now_ms) {
                        Ok(low_watermark) => result.with_low_watermark(low_watermark),
                        Err(PartitionError::Storage(StorageError::OffsetOutOfRange { .. })) => {
                            result.with_error_code(ResponseError::OffsetOutOfRange.code())
                        }
                        Err(PartitionError::Deleted) => result
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code()),
                        Err(PartitionError::NotLeaderOrFollower | PartitionError::NotEnoughReplicas) => result
                            .with_error_code(ResponseError::NotLeaderOrFollower.code()),
                        Err(PartitionError::Storage(err)) => {
                            tracing::error!(topic = %topic.name.as_str(), partition = p.partition_index, error = %err, "DeleteRecords failed");
                            result.with_error_code(ResponseError::KafkaStorageError.code())
                        }
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}
