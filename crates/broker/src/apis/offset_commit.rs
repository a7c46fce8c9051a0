//! OffsetCommit (key 8), v2-v9 (v0-v1 are gone from Kafka 4 and from the codec).
//!
//! Partitions of topics that do not exist get UNKNOWN_TOPIC_OR_PARTITION here, as Kafka's
//! request handler does; the rest go to the group's coordinator shard, which checks the
//! member and generation (generation -1 with no member id: a standalone consumer's commit,
//! allowed while the group has no members), writes one record per partition to
//! `__consumer_offsets`, and answers once the records are committed (the partition's high
//! watermark passed them with enough in-sync replicas; see `group_coordinator`).

use std::collections::HashMap;

use fjord_protocol::kafka_protocol::messages::offset_commit_request::OffsetCommitRequestTopic;
use fjord_protocol::kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use fjord_protocol::kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use fjord_protocol::{ResponseError, VersionRange};

use crate::time::now_ms;
use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 2, max: 9 };

pub async fn handle(
    broker: &Broker,
    api_version: i16,
    request: &OffsetCommitRequest,
) -> OffsetCommitResponse {
    let manager = broker.replica_manager();
    let partition_exists = |topic: &str, partition: i32| {
        manager
            .topic(topic)
            .is_some_and(|t| usize::try_from(partition).is_ok_and(|p| p < t.partitions.len()))
    };
    // Only partitions that exist go to the coordinator.
    let valid_topics: Vec<OffsetCommitRequestTopic> = request
        .topics
        .iter()
        .filter_map(|topic| {
            let partitions: Vec<_> = topic
                .partitions
                .iter()
                .filter(|p| partition_exists(&topic.name, p.partition_index))
                .cloned()
                .collect();
            (!partitions.is_empty()).then(|| topic.clone().with_partitions(partitions))
        })
        .collect();
    let mut errors: HashMap<(String, i32), i16> = HashMap::new();
    let mut group_error = None;
    if !valid_topics.is_empty() {
        let filtered = request.clone().with_topics(valid_topics);
        match broker
            .group_coordinator()
            .commit_offsets(&filtered, api_version, now_ms())
            .await
        {
            Ok(topics) => {
                for topic in topics {
                    for p in topic.partitions {
                        errors.insert((topic.name.to_string(), p.partition_index), p.error_code);
                    }
                }
            }
            Err(error) => group_error = Some(error),
        }
    } else if request.group_id.is_empty() {
        group_error = Some(ResponseError::InvalidGroupId);
    }
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let code = if !partition_exists(&topic.name, p.partition_index) {
                        ResponseError::UnknownTopicOrPartition.code()
                    } else if let Some(error) = group_error {
                        error.code()
                    } else {
                        errors
                            .get(&(topic.name.to_string(), p.partition_index))
                            .copied()
                            .unwrap_or(0)
                    };
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
