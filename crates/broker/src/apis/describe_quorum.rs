//! DescribeQuorum (key 55), v0-v2: the metadata quorum of `__cluster_metadata`-0 as its Raft
//! leader sees it: leader, epoch (Raft term), high watermark (commit index), each voter's log
//! end offset and last fetch / caught-up times, and the brokers that are not voters as
//! observers with the metadata offset of their last heartbeat.
//!
//! Only the Raft leader can describe the quorum (Kafka's `KafkaRaftClient
//! .handleDescribeQuorumRequest`: a voter that is not the leader answers partition-level
//! NOT_LEADER_OR_FOLLOWER, `DescribeQuorumResponse.singletonErrorResponse`). That is what the
//! controller listener answers ([`answer_locally`]). On the broker listener, Kafka brokers
//! forward DescribeQuorum to the active controller (`KafkaApis`: `forwardToControllerOrFail`),
//! so any broker describes the quorum: a Fjord broker answers from its own node's quorum when
//! that node is the Raft leader (the [`QuorumDescriber`] the server installs,
//! [`crate::Broker::set_quorum_describer`]), and otherwise asks the leader through
//! [`crate::controller_channel::ControllerChannel::describe_quorum`] and relays its answer;
//! NOT_LEADER_OR_FOLLOWER only if no leader answered within [`FORWARD_TIMEOUT_MS`] (an
//! election in progress; clients retry). A request naming anything but
//! `__cluster_metadata`-0 gets UNKNOWN_TOPIC_OR_PARTITION per partition
//! (`getPartitionLevelErrorResponse`).

use std::sync::Arc;

use fjord_protocol::kafka_protocol::messages::describe_quorum_response::{
    PartitionData, TopicData,
};
use fjord_protocol::kafka_protocol::messages::{
    DescribeQuorumRequest, DescribeQuorumResponse, TopicName,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ResponseError, VersionRange};
use fjord_raft::QuorumDescription;

use crate::controller_wire::{describe_quorum_response_at, TickClock};
use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 2 };

/// Kafka's name of the metadata partition's topic.
pub const METADATA_TOPIC_NAME: &str = "__cluster_metadata";

/// First version with per-partition `ErrorMessage`.
const ERROR_MESSAGE_VERSION: i16 = 2;

/// What the Raft leader knows about its quorum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumSnapshot {
    pub description: QuorumDescription,
    /// Brokers that are not voters: (broker id, metadata offset of their last heartbeat).
    pub observers: Vec<(i32, i64)>,
    /// Converts Raft ticks into wall-clock times; `None` leaves the times at -1.
    pub clock: Option<TickClock>,
}

/// The quorum as this node's Raft voter sees it, `None` when this node is not the Raft leader
/// (or runs no voter).
pub type QuorumDescriber = Arc<dyn Fn() -> Option<QuorumSnapshot> + Send + Sync>;

/// How long a broker whose node is not the Raft leader looks for the leader's answer.
pub const FORWARD_TIMEOUT_MS: u64 = 5_000;

/// The broker listener's DescribeQuorum: answered here on the Raft leader, forwarded to the
/// leader elsewhere.
pub async fn handle(
    broker: &Broker,
    api_version: i16,
    request: &DescribeQuorumRequest,
) -> DescribeQuorumResponse {
    let snapshot = broker.quorum_snapshot();
    if snapshot.is_some() || !is_metadata_partition(request) {
        return answer_locally(snapshot, api_version, request);
    }
    match broker
        .controller()
        .describe_quorum(request.clone(), api_version, FORWARD_TIMEOUT_MS)
        .await
    {
        Some(response) => response,
        None => answer_locally(None, api_version, request),
    }
}

/// Whether `request` asks for `__cluster_metadata`-0 and nothing else.
fn is_metadata_partition(request: &DescribeQuorumRequest) -> bool {
    matches!(request.topics.as_slice(), [topic]
        if topic.topic_name.as_str() == METADATA_TOPIC_NAME
            && matches!(topic.partitions.as_slice(), [p] if p.partition_index == 0))
}

/// Kafka's `KafkaRaftClient.handleDescribeQuorumRequest` on a voter whose view of the quorum
/// is `snapshot` (`None`: not the Raft leader).
pub fn answer_locally(
    snapshot: Option<QuorumSnapshot>,
    api_version: i16,
    request: &DescribeQuorumRequest,
) -> DescribeQuorumResponse {
    if !is_metadata_partition(request) {
        let error = ResponseError::UnknownTopicOrPartition;
        let message = "This server does not host this topic-partition.";
        return DescribeQuorumResponse::default().with_topics(
            request
                .topics
                .iter()
                .map(|t| {
                    TopicData::default()
                        .with_topic_name(t.topic_name.clone())
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    partition_error(api_version, p.partition_index, error, message)
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    }
    match snapshot {
        Some(snapshot) => describe_quorum_response_at(
            &snapshot.description,
            &snapshot.observers,
            METADATA_TOPIC_NAME,
            snapshot.clock,
        ),
        None => DescribeQuorumResponse::default().with_topics(vec![TopicData::default()
            .with_topic_name(TopicName(StrBytes::from_static_str(METADATA_TOPIC_NAME)))
            .with_partitions(vec![partition_error(
                api_version,
                0,
                ResponseError::NotLeaderOrFollower,
                "For requests intended only for the leader, this error indicates that the broker is not the current leader. For requests intended for any replica, this error indicates that the broker is not a replica of the topic partition.",
            )])]),
    }
}

fn partition_error(
    api_version: i16,
    partition_index: i32,
    error: ResponseError,
    message: &'static str,
) -> PartitionData {
    // Other fields keep their defaults, as in Kafka's error responses.
    let partition = PartitionData::default()
        .with_partition_index(partition_index)
        .with_error_code(error.code());
    if api_version >= ERROR_MESSAGE_VERSION {
        partition.with_error_message(Some(StrBytes::from_static_str(message)))
    } else {
        partition
    }
}
