//! OffsetFetch (key 9), v1-v9: committed offsets of one group (v1-v7; all partitions when the
//! topic list is null, v2+) or of several groups at once (v8+). Offsets pending in ongoing
//! transactions are never returned; with `require_stable` (v7+) a partition that has one
//! answers UNSTABLE_OFFSET_COMMIT (per partition, at every version, as Kafka), and the client
//! retries until the transaction ends.

use fjord_protocol::kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use fjord_protocol::kafka_protocol::messages::{
    OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ResponseError, VersionRange};

use crate::group_coordinator::shard::FetchedOffset;
use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 1, max: 9 };

/// First version with several groups per request.
const MULTI_GROUP_VERSION: i16 = 8;
/// First version with a top-level error code.
const ERROR_CODE_VERSION: i16 = 2;
/// First version with the committed leader epoch.
const LEADER_EPOCH_VERSION: i16 = 5;

type Fetched = Result<Vec<(String, Vec<FetchedOffset>)>, ResponseError>;

/// First version with `require_stable`.
const REQUIRE_STABLE_VERSION: i16 = 7;

fn fetch(
    broker: &Broker,
    group_id: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
) -> Fetched {
    broker
        .group_coordinator()
        .fetch_offsets(group_id, topics.as_deref(), require_stable)
}

pub fn handle(
    broker: &Broker,
    api_version: i16,
    request: &OffsetFetchRequest,
) -> OffsetFetchResponse {
    let require_stable = api_version >= REQUIRE_STABLE_VERSION && request.require_stable;
    if api_version >= MULTI_GROUP_VERSION {
        let groups = request
            .groups
            .iter()
            .map(|group| {
                let topics = group.topics.as_ref().map(|topics| {
                    topics
                        .iter()
                        .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
                        .collect()
                });
                let response =
                    OffsetFetchResponseGroup::default().with_group_id(group.group_id.clone());
                match fetch(broker, &group.group_id, topics, require_stable) {
                    Ok(topics) => response.with_topics(
                        topics
                            .into_iter()
                            .map(|(name, offsets)| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(TopicName(StrBytes::from_string(name)))
                                    .with_partitions(
                                        offsets.into_iter().map(partitions_v8).collect(),
                                    )
                            })
                            .collect(),
                    ),
                    Err(error) => response.with_error_code(error.code()),
                }
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let requested: Option<Vec<(String, Vec<i32>)>> = request.topics.as_ref().map(|topics| {
        topics
            .iter()
            .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    match fetch(broker, &request.group_id, requested.clone(), require_stable) {
        Ok(topics) => OffsetFetchResponse::default().with_topics(
            topics
                .into_iter()
                .map(|(name, offsets)| topic_v1(name, offsets, api_version, None))
                .collect(),
        ),
        Err(error) if api_version >= ERROR_CODE_VERSION => {
            OffsetFetchResponse::default().with_error_code(error.code())
        }
        // v1 has no top-level error: every requested partition carries it.
        Err(error) => OffsetFetchResponse::default().with_topics(
            requested
                .unwrap_or_default()
                .into_iter()
                .map(|(name, partitions)| {
                    let offsets = partitions
                        .into_iter()
                        .map(|partition| FetchedOffset::none(partition, None))
                        .collect();
                    topic_v1(name, offsets, api_version, Some(error))
                })
                .collect(),
        ),
    }
}

fn topic_v1(
    name: String,
    offsets: Vec<FetchedOffset>,
    api_version: i16,
    error: Option<ResponseError>,
) -> OffsetFetchResponseTopic {
    OffsetFetchResponseTopic::default()
        .with_name(TopicName(StrBytes::from_string(name)))
        .with_partitions(
            offsets
                .into_iter()
                .map(|o| {
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(o.partition)
                        .with_committed_offset(o.committed_offset)
                        .with_committed_leader_epoch(if api_version >= LEADER_EPOCH_VERSION {
                            o.leader_epoch
                        } else {
                            -1
                        })
                        .with_metadata(Some(StrBytes::from_string(o.metadata)))
                        .with_error_code(error.or(o.error).map_or(0, |e| e.code()))
                })
                .collect(),
        )
}

fn partitions_v8(o: FetchedOffset) -> OffsetFetchResponsePartitions {
    OffsetFetchResponsePartitions::default()
        .with_partition_index(o.partition)
        .with_committed_offset(o.committed_offset)
        .with_committed_leader_epoch(o.leader_epoch)
        .with_metadata(Some(StrBytes::from_string(o.metadata)))
        .with_error_code(o.error.map_or(0, |e| e.code()))
}
