//! OffsetDelete (key 47), v0: deletes a group's committed offsets of some partitions, unless
//! the group is active and consumes the topic (GROUP_SUBSCRIBED_TO_TOPIC), or is active and
//! not a consumer group (NON_EMPTY_GROUP).

use fjord_protocol::kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use fjord_protocol::kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};
use fjord_protocol::{ResponseError, VersionRange};

use crate::time::now_ms;
use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 0 };

pub async fn handle(broker: &Broker, request: &OffsetDeleteRequest) -> OffsetDeleteResponse {
    let manager = broker.replica_manager();
    let partition_exists = |topic: &str, partition: i32| {
        manager
            .topic(topic)
            .is_some_and(|t| usize::try_from(partition).is_ok_and(|p| p < t.partitions.len()))
    };
    let valid: Vec<(String, Vec<i32>)> = request
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| p.partition_index)
                .filter(|p| partition_exists(&t.name, *p))
                .collect();
            (t.name.to_string(), partitions)
        })
        .filter(|(_, partitions): &(String, Vec<i32>)| !partitions.is_empty())
        .collect();
    let results = match broker
        .group_coordinator()
        .delete_offsets(&request.group_id, &valid, now_ms())
        .await
    {
        Ok(results) => results,
        Err(error) => return OffsetDeleteResponse::default().with_error_code(error.code()),
    };
    let topics = request
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let error = if !partition_exists(&t.name, p.partition_index) {
                        Some(ResponseError::UnknownTopicOrPartition)
                    } else {
                        results
                            .iter()
                            .filter(|(name, _)| name == t.name.as_str())
                            .flat_map(|(_, outcome)| outcome)
                            .find(|(index, _)| *index == p.partition_index)
                            .and_then(|(_, error)| *error)
                    };
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(error.map_or(0, |e| e.code()))
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}
