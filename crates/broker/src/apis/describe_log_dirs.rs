//! DescribeLogDirs (key 35), v1-v4: the one log directory (`data.dir`) with the size of every
//! partition (all topics when the request names none), and from v4 the file system's total
//! and usable bytes. `offset_lag` is 0: there are no future (moving) replicas.

use std::collections::BTreeMap;

use fjord_protocol::kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use fjord_protocol::kafka_protocol::messages::{
    DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::VersionRange;

use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 1, max: 4 };

pub fn handle(broker: &Broker, request: &DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    let manager = broker.replica_manager();
    // Requested partitions by topic; `None`: everything.
    let wanted: Option<BTreeMap<String, Vec<i32>>> = request.topics.as_ref().map(|topics| {
        topics
            .iter()
            .map(|t| (t.topic.to_string(), t.partitions.clone()))
            .collect()
    });
    let mut topics = Vec::new();
    for topic in manager.topics() {
        let indexes: Vec<i32> = match &wanted {
            None => (0..topic.partitions.len() as i32).collect(),
            Some(w) => match w.get(topic.name.as_ref()) {
                Some(indexes) => indexes.clone(),
                None => continue,
            },
        };
        let partitions: Vec<DescribeLogDirsPartition> = indexes
            .iter()
            .filter_map(|i| {
                let partition = topic.partitions.get(usize::try_from(*i).ok()?)?;
                let size = partition.size_bytes().ok()?;
                Some(
                    DescribeLogDirsPartition::default()
                        .with_partition_index(*i)
                        .with_partition_size(i64::try_from(size).unwrap_or(i64::MAX)),
                )
            })
            .collect();
        if !partitions.is_empty() {
            topics.push(
                DescribeLogDirsTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.name.to_string())))
                    .with_partitions(partitions),
            );
        }
    }
    let data_dir = &broker.config().data_dir;
    let log_dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.clone());
    let (total, usable) = fjord_storage::filesystem_space_bytes(&log_dir).unwrap_or((0, 0));
    let to_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    DescribeLogDirsResponse::default().with_results(vec![DescribeLogDirsResult::default()
        .with_log_dir(StrBytes::from_string(log_dir.display().to_string()))
        .with_topics(topics)
        .with_total_bytes(to_i64(total))
        .with_usable_bytes(to_i64(usable))])
}
