//! ListOffsets (key 2), v1 and up: earliest (-2), latest (-1), max timestamp (-3), earliest
//! local (-4), earliest pending upload (-5), and by timestamp (the first record whose
//! timestamp is at or after the target). Answered by the partition's leader only
//! (NOT_LEADER_OR_FOLLOWER elsewhere, as Kafka).

use fjord_protocol::kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use fjord_protocol::kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use fjord_protocol::{ResponseError, VersionRange};
use fjord_storage::TimestampAndOffset;

use crate::partition::{Partition, PartitionError};
use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 1, max: 10 };

const LATEST_TIMESTAMP: i64 = -1;
/// `isolation_level` 1: read_committed (reads stop at the last stable offset).
const READ_COMMITTED: i8 = 1;
const EARLIEST_TIMESTAMP: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL_TIMESTAMP: i64 = -4;
const EARLIEST_PENDING_UPLOAD_TIMESTAMP: i64 = -5;
/// First version whose response carries the leader epoch.
const LEADER_EPOCH_VERSION: i16 = 4;
/// Kafka's `ListOffsetsRequest.DEBUGGING_REPLICA_ID`: may read from a follower.
const DEBUGGING_REPLICA_ID: i32 = -2;
/// Kafka's "no such offset" answer.
const UNKNOWN: i64 = -1;

pub fn handle(
    broker: &Broker,
    api_version: i16,
    request: &ListOffsetsRequest,
) -> ListOffsetsResponse {
    let manager = broker.replica_manager();
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let found = manager.topic(&topic.name);
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let response = ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
                    let partition = found
                        .as_ref()
                        .and_then(|t| usize::try_from(p.partition_index).ok().and_then(|i| t.partitions.get(i)));
                    let Some(partition) = partition else {
                        return failure(response, ResponseError::UnknownTopicOrPartition);
                    };
                    if let Err(error) = partition.check_leader_epoch(p.current_leader_epoch) {
                        return failure(response, error);
                    }
                    // As Kafka: only the leader answers, except to debugging tools.
                    if !partition.is_leader() && request.replica_id.0 != DEBUGGING_REPLICA_ID {
                        return failure(response, ResponseError::NotLeaderOrFollower);
                    }
                    // A follower (a replica id naming another replica of the partition)
                    // asks for the leader's log end, not the high watermark (Kafka: no
                    // isolation for replicas). Clients send -1; a default 0 is no replica.
                    let replica_id = request.replica_id.0;
                    let follower = replica_id >= 0
                        && replica_id != broker.config().node_id
                        && partition.state().replicas.contains(&replica_id);
                    match lookup(partition, p.timestamp, request.isolation_level == READ_COMMITTED, follower) {
                        Ok(found) => {
                            let found = found.unwrap_or(TimestampAndOffset {
                                timestamp: UNKNOWN,
                                offset: UNKNOWN,
                                leader_epoch: None,
                            });
                            let response = response.with_timestamp(found.timestamp).with_offset(found.offset);
                            if api_version >= LEADER_EPOCH_VERSION {
                                response.with_leader_epoch(found.leader_epoch.unwrap_or(-1))
                            } else {
                                response
                            }
                        }
                        Err(PartitionError::Deleted) => failure(response, ResponseError::UnknownTopicOrPartition),
                        Err(PartitionError::NotLeaderOrFollower | PartitionError::NotEnoughReplicas) => failure(response, ResponseError::NotLeaderOrFollower),
                        Err(PartitionError::Storage(err)) => {
                            tracing::error!(topic = %topic.name.as_str(), partition = p.partition_index, error = %err, "offset lookup failed");
                            failure(response, ResponseError::KafkaStorageError)
                        }
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

fn failure(
    response: ListOffsetsPartitionResponse,
    error: ResponseError,
) -> ListOffsetsPartitionResponse {
    response
        .with_error_code(error.code())
        .with_timestamp(UNKNOWN)
        .with_offset(UNKNOWN)
        .with_leader_epoch(-1)
}

/// Kafka's `Partition.fetchOffsetForTimestamp`: LATEST and timestamp lookups are bounded by the
/// last offset the isolation level may read (the last stable offset for read_committed).
fn lookup(
    partition: &Partition,
    timestamp: i64,
    read_committed: bool,
    follower: bool,
) -> Result<Option<TimestampAndOffset>, PartitionError> {
    let offsets = partition.offsets()?;
    let last_fetchable_offset = if follower {
        offsets.log_end_offset
    } else if read_committed {
        offsets.last_stable_offset
    } else {
        offsets.high_watermark
    };
    let at = |offset: i64| -> Result<Option<TimestampAndOffset>, PartitionError> {
        Ok(Some(TimestampAndOffset {
            timestamp: UNKNOWN,
            offset,
            leader_epoch: partition
                .epoch_for_offset(offset)?
                .or(Some(partition.leader_epoch())),
        }))
    };
    match timestamp {
        LATEST_TIMESTAMP => at(last_fetchable_offset),
        EARLIEST_TIMESTAMP | EARLIEST_LOCAL_TIMESTAMP => at(offsets.log_start_offset),
        // No tiered storage: nothing is pending upload.
        EARLIEST_PENDING_UPLOAD_TIMESTAMP => Ok(None),
        MAX_TIMESTAMP => partition.offset_of_max_timestamp(),
        t if t >= 0 => {
            let found = partition.offset_for_timestamp(t)?;
            // Only what this isolation level may read is an answer.
            Ok(found.filter(|f| f.offset < last_fetchable_offset))
        }
        _ => Ok(None),
    }
}
