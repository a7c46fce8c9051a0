//! ListOffsets (key 2), v1 and up: earliest (-2), latest (-1), max timestamp (-3), earliest
//! local (-4), earliest pending upload (-5), and by timestamp (the first record whose
//! timestamp is at or after the target). Answered by the partition's leader only
//! (NOT_LEADER_OR_FOLLOWER elsewhere, as Kafka), except to debugging tools (replica id -2).
//!
//! KIP-207: a new leader's high watermark may lag the start offset of its leader epoch until
//! the followers have fetched (the old high watermark is all it knows). Until it catches up, a
//! client (replica id -1, either isolation level) asking for the latest offset, or for an
//! offset by timestamp or max timestamp that is at or beyond what it may read, gets
//! OFFSET_NOT_AVAILABLE (LEADER_NOT_AVAILABLE before v5) and retries, instead of an offset
//! below records that already exist (Kafka `Partition.fetchOffsetForTimestamp`). Earliest
//! offsets are always answered; replicas are never refused.

use fjord_protocol::kafka_protocol::messages::list_offsets_request::ListOffsetsPartition;
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
/// First version that knows OFFSET_NOT_AVAILABLE (older ones get LEADER_NOT_AVAILABLE).
const OFFSET_NOT_AVAILABLE_VERSION: i16 = 5;

/// Who asks, which decides the last offset an answer may point at (Kafka's
/// `isolationLevelOpt`: defined for clients only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Requester {
    /// A consumer or admin client: bounded by the high watermark, or by the last stable
    /// offset for read_committed; subject to KIP-207's OFFSET_NOT_AVAILABLE.
    Client { read_committed: bool },
    /// A follower replica of the partition or a debugging tool: bounded by the log end.
    Replica,
}

pub fn handle(
    broker: &Broker,
    api_version: i16,
    request: &ListOffsetsRequest,
) -> ListOffsetsResponse {
    let manager = broker.replica_manager();
    let replica_id = request.replica_id.0;
    let node_id = broker.config().node_id;
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let found = manager.topic(&topic.name);
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let partition = found.as_ref().and_then(|t| {
                        usize::try_from(p.partition_index)
                            .ok()
                            .and_then(|i| t.partitions.get(i))
                    });
                    let Some(partition) = partition else {
                        let response = ListOffsetsPartitionResponse::default()
                            .with_partition_index(p.partition_index);
                        return failure(response, ResponseError::UnknownTopicOrPartition);
                    };
                    // A follower (a replica id naming another replica of the partition)
                    // asks for the leader's log end, not the high watermark (Kafka: no
                    // isolation for replicas). Clients send -1; a default 0 is no replica.
                    let follower = replica_id >= 0
                        && replica_id != node_id
                        && partition.state().replicas.contains(&replica_id);
                    let requester = if follower || replica_id == DEBUGGING_REPLICA_ID {
                        Requester::Replica
                    } else {
                        Requester::Client {
                            read_committed: request.isolation_level == READ_COMMITTED,
                        }
                    };
                    let fetch_only_from_leader = replica_id != DEBUGGING_REPLICA_ID;
                    list_partition(partition, p, requester, fetch_only_from_leader, api_version)
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// One partition of a ListOffsets request (Kafka `ReplicaManager.fetchOffset` for a partition
/// without remote storage).
fn list_partition(
    partition: &Partition,
    p: &ListOffsetsPartition,
    requester: Requester,
    fetch_only_from_leader: bool,
    api_version: i16,
) -> ListOffsetsPartitionResponse {
    let response = ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
    if let Err(error) = partition.check_leader_epoch(p.current_leader_epoch) {
        return failure(response, error);
    }
    // As Kafka: only the leader answers, except to debugging tools.
    if fetch_only_from_leader && !partition.is_leader() {
        return failure(response, ResponseError::NotLeaderOrFollower);
    }
    match lookup(partition, p.timestamp, requester) {
        Ok(found) => {
            let found = found.unwrap_or(TimestampAndOffset {
                timestamp: UNKNOWN,
                offset: UNKNOWN,
                leader_epoch: None,
            });
            let response = response
                .with_timestamp(found.timestamp)
                .with_offset(found.offset);
            if api_version >= LEADER_EPOCH_VERSION {
                response.with_leader_epoch(found.leader_epoch.unwrap_or(-1))
            } else {
                response
            }
        }
        Err(LookupError::OffsetNotAvailable) if api_version >= OFFSET_NOT_AVAILABLE_VERSION => {
            failure(response, ResponseError::OffsetNotAvailable)
        }
        Err(LookupError::OffsetNotAvailable) => {
            failure(response, ResponseError::LeaderNotAvailable)
        }
        Err(LookupError::Partition(PartitionError::Deleted)) => {
            failure(response, ResponseError::UnknownTopicOrPartition)
        }
        Err(LookupError::Partition(
            PartitionError::NotLeaderOrFollower | PartitionError::NotEnoughReplicas,
        )) => failure(response, ResponseError::NotLeaderOrFollower),
        Err(LookupError::Partition(PartitionError::Storage(err))) => {
            tracing::error!(topic = %partition.topic, partition = partition.index, error = %err, "offset lookup failed");
            failure(response, ResponseError::KafkaStorageError)
        }
    }
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

#[derive(Debug)]
enum LookupError {
    /// KIP-207: the high watermark lags the leader epoch's start offset.
    OffsetNotAvailable,
    Partition(PartitionError),
}

impl From<PartitionError> for LookupError {
    fn from(error: PartitionError) -> Self {
        LookupError::Partition(error)
    }
}

/// Kafka's `Partition.fetchOffsetForTimestamp` and the use `ReplicaManager.fetchOffset` makes of
/// its answer: LATEST and timestamp lookups are bounded by the last offset the requester may
/// read (the last stable offset for read_committed); an answer at or beyond it is no answer,
/// or OFFSET_NOT_AVAILABLE while a client's view lags the leader epoch's start (KIP-207).
fn lookup(
    partition: &Partition,
    timestamp: i64,
    requester: Requester,
) -> Result<Option<TimestampAndOffset>, LookupError> {
    let offsets = partition.offsets()?;
    let last_fetchable_offset = match requester {
        Requester::Replica => offsets.log_end_offset,
        Requester::Client {
            read_committed: true,
        } => offsets.last_stable_offset,
        Requester::Client {
            read_committed: false,
        } => offsets.high_watermark,
    };
    // Clients only, whatever their isolation level; measured against the high watermark.
    let offsets_unavailable = matches!(requester, Requester::Client { .. })
        && partition
            .leader_epoch_start_offset()
            .is_some_and(|start| start > offsets.high_watermark);
    let at = |offset: i64| -> Result<Option<TimestampAndOffset>, LookupError> {
        Ok(Some(TimestampAndOffset {
            timestamp: UNKNOWN,
            offset,
            leader_epoch: partition
                .epoch_for_offset(offset)?
                .or(Some(partition.leader_epoch())),
        }))
    };
    let found = match timestamp {
        LATEST_TIMESTAMP if offsets_unavailable => return Err(LookupError::OffsetNotAvailable),
        LATEST_TIMESTAMP => return at(last_fetchable_offset),
        EARLIEST_TIMESTAMP | EARLIEST_LOCAL_TIMESTAMP => return at(offsets.log_start_offset),
        // No tiered storage: nothing is pending upload.
        EARLIEST_PENDING_UPLOAD_TIMESTAMP => None,
        MAX_TIMESTAMP => partition.offset_of_max_timestamp()?,
        t if t >= 0 => partition.offset_for_timestamp(t)?,
        _ => None,
    };
    match found {
        // Only what this requester may read is an answer.
        Some(found) if found.offset < last_fetchable_offset => Ok(Some(found)),
        _ if offsets_unavailable => Err(LookupError::OffsetNotAvailable),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use fjord_protocol::batch_builder::encode_values;
    use fjord_storage::{AppendOrigin, Log, LogConfig};
    use uuid::Uuid;

    use super::*;
    use crate::partition::PartitionState;

    const CLIENT: Requester = Requester::Client {
        read_committed: false,
    };

    /// A partition that has just become leader at epoch 3 with 4 records (timestamps
    /// 1000..1003) it wrote as a follower: its high watermark (0) lags the epoch's start (4),
    /// because follower 2 has not fetched from the new leader yet.
    fn new_leader(dir: &std::path::Path) -> Partition {
        let mut log = Log::open(dir, LogConfig::default(), true, 0).unwrap();
        log.append_batch(&encode_values(1_000, 4, b"v"), 2, 0, AppendOrigin::Client)
            .unwrap();
        assert_eq!((log.log_end_offset(), log.high_watermark()), (4, 0));
        let state = PartitionState {
            leader: 1,
            leader_epoch: 3,
            partition_epoch: 3,
            replicas: vec![1, 2],
            isr: vec![1, 2],
        };
        Partition::new(Arc::from("t"), Uuid::nil(), 0, log, 1, state)
    }

    fn ask(
        partition: &Partition,
        timestamp: i64,
        requester: Requester,
        version: i16,
    ) -> (i16, i64) {
        let request = ListOffsetsPartition::default()
            .with_partition_index(0)
            .with_current_leader_epoch(-1)
            .with_timestamp(timestamp);
        let response = list_partition(partition, &request, requester, true, version);
        (response.error_code, response.offset)
    }

    #[test]
    fn a_lagging_new_leader_answers_offset_not_available_to_clients() {
        let dir = tempfile::tempdir().unwrap();
        let partition = new_leader(dir.path());
        assert_eq!(partition.leader_epoch_start_offset(), Some(4));
        let not_available = ResponseError::OffsetNotAvailable.code();
        for read_committed in [false, true] {
            let client = Requester::Client { read_committed };
            assert_eq!(
                ask(&partition, LATEST_TIMESTAMP, client, 10),
                (not_available, -1)
            );
            assert_eq!(
                ask(&partition, MAX_TIMESTAMP, client, 10),
                (not_available, -1)
            );
            // Records exist at and after this timestamp, all beyond the high watermark.
            assert_eq!(ask(&partition, 1_001, client, 10), (not_available, -1));
            // Nothing at or after it at all: still unavailable (it may be written meanwhile).
            assert_eq!(ask(&partition, 5_000, client, 10), (not_available, -1));
            // The log start is always known.
            assert_eq!(ask(&partition, EARLIEST_TIMESTAMP, client, 10), (0, 0));
            assert_eq!(
                ask(&partition, EARLIEST_LOCAL_TIMESTAMP, client, 10),
                (0, 0)
            );
        }
        // Before v5 the error did not exist: LEADER_NOT_AVAILABLE, also retriable.
        assert_eq!(
            ask(&partition, LATEST_TIMESTAMP, CLIENT, 4),
            (ResponseError::LeaderNotAvailable.code(), -1)
        );
        // Replicas and debugging tools read up to the log end and are never refused.
        assert_eq!(
            ask(&partition, LATEST_TIMESTAMP, Requester::Replica, 10),
            (0, 4)
        );
        assert_eq!(ask(&partition, 1_001, Requester::Replica, 10), (0, 1));
        assert_eq!(
            ask(&partition, MAX_TIMESTAMP, Requester::Replica, 10),
            (0, 3)
        );
    }

    #[test]
    fn a_caught_up_leader_answers_clients_up_to_the_high_watermark() {
        let dir = tempfile::tempdir().unwrap();
        let partition = new_leader(dir.path());
        // The follower left the ISR: the high watermark is the leader's log end, the epoch's
        // start offset, and every lookup is answered again.
        partition
            .apply_state(
                PartitionState {
                    leader: 1,
                    leader_epoch: 3,
                    partition_epoch: 4,
                    replicas: vec![1, 2],
                    isr: vec![1],
                },
                crate::partition::DEFAULT_REPLICATION_CONFIG,
                0,
            )
            .unwrap();
        assert_eq!(partition.offsets().unwrap().high_watermark, 4);
        assert_eq!(ask(&partition, LATEST_TIMESTAMP, CLIENT, 10), (0, 4));
        assert_eq!(ask(&partition, MAX_TIMESTAMP, CLIENT, 10), (0, 3));
        assert_eq!(ask(&partition, 1_001, CLIENT, 10), (0, 1));
        // Past the newest record: no offset, no error.
        assert_eq!(ask(&partition, 5_000, CLIENT, 10), (0, -1));
        // A follower does not answer ListOffsets.
        partition
            .apply_state(
                PartitionState {
                    leader: 2,
                    leader_epoch: 4,
                    partition_epoch: 5,
                    replicas: vec![1, 2],
                    isr: vec![1, 2],
                },
                crate::partition::DEFAULT_REPLICATION_CONFIG,
                0,
            )
            .unwrap();
        assert_eq!(partition.leader_epoch_start_offset(), None);
        assert_eq!(
            ask(&partition, LATEST_TIMESTAMP, CLIENT, 10),
            (ResponseError::NotLeaderOrFollower.code(), -1)
        );
    }
}
