//! DescribeProducers (key 61), v0: the active producers of a partition from this broker's
//! replica's producer state (Kafka's `ProducerStateManager.activeProducers`): id, epoch, last
//! sequence and timestamp, coordinator epoch and where its open transaction began. What
//! `kafka-transactions.sh describe-producers` and `fjord txn producers` show.
//!
//! As Kafka (`ReplicaManager.activeProducerState`): any replica answers (admin clients send to
//! the leader unless told a broker id, which is how a follower's state is inspected); a broker
//! with no replica of a known partition answers NOT_LEADER_OR_FOLLOWER.

use fjord_protocol::kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use fjord_protocol::kafka_protocol::messages::{
    DescribeProducersRequest, DescribeProducersResponse, ProducerId,
};
use fjord_protocol::{ResponseError, VersionRange};

use crate::partition::PartitionError;
use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 0 };

pub fn handle(broker: &Broker, request: &DescribeProducersRequest) -> DescribeProducersResponse {
    let manager = broker.replica_manager();
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partition_indexes
                .iter()
                .map(|&index| {
                    let response = PartitionResponse::default().with_partition_index(index);
                    let Some(partition) = manager.partition(&topic.name, index) else {
                        return response
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    if !partition.is_hosted() {
                        return response
                            .with_error_code(ResponseError::NotLeaderOrFollower.code());
                    }
                    match partition.active_producers() {
                        Ok(producers) => response.with_active_producers(
                            producers
                                .into_iter()
                                .map(|p| {
                                    ProducerState::default()
                                        .with_producer_id(ProducerId(p.producer_id))
                                        .with_producer_epoch(i32::from(p.producer_epoch))
                                        .with_last_sequence(p.last_sequence)
                                        .with_last_timestamp(p.last_timestamp_ms)
                                        .with_coordinator_epoch(p.coordinator_epoch)
                                        .with_current_txn_start_offset(p.current_txn_start_offset)
                                })
                                .collect(),
                        ),
                        Err(PartitionError::Deleted) => response
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code()),
                        Err(PartitionError::NotLeaderOrFollower | PartitionError::NotEnoughReplicas) => response
                            .with_error_code(ResponseError::NotLeaderOrFollower.code()),
                        Err(PartitionError::Storage(err)) => {
                            tracing::error!(topic = %topic.name.as_str(), partition = index, error = %err, "describe producers failed");
                            response.with_error_code(ResponseError::KafkaStorageError.code())
                        }
                    }
                })
                .collect();
            TopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}
