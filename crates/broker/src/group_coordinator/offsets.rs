//! Committed offsets of one coordinator shard (Kafka's `OffsetMetadataManager`).
//!
//! The in-memory map changes only by replaying records, the same way at start-up (from the
//! log) and at run time (after the records were appended): what is in memory is always what
//! the log says.

use std::collections::{BTreeMap, HashMap};

use super::persistence::{CoordinatorRecord, OffsetCommitValue};

/// One committed offset (Kafka's `OffsetAndMetadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetAndMetadata {
    pub committed_offset: i64,
    pub leader_epoch: Option<i32>,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
    /// Only for commits of OffsetCommit v2-v4 with an explicit retention time.
    pub expire_timestamp_ms: Option<i64>,
}

impl OffsetAndMetadata {
    pub fn from_record(value: &OffsetCommitValue) -> Self {
        Self {
            committed_offset: value.offset,
            leader_epoch: (value.leader_epoch >= 0).then_some(value.leader_epoch),
            metadata: value.metadata.clone(),
            commit_timestamp_ms: value.commit_timestamp_ms,
            expire_timestamp_ms: (value.expire_timestamp_ms >= 0)
                .then_some(value.expire_timestamp_ms),
        }
    }

    pub fn to_record(&self) -> OffsetCommitValue {
        OffsetCommitValue {
            offset: self.committed_offset,
            leader_epoch: self.leader_epoch.unwrap_or(-1),
            metadata: self.metadata.clone(),
            commit_timestamp_ms: self.commit_timestamp_ms,
            expire_timestamp_ms: self.expire_timestamp_ms.unwrap_or(-1),
        }
    }
}

/// From when `offsets.retention.minutes` counts (Kafka's `OffsetExpirationCondition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetExpiration {
    /// An empty group: from when it became empty (or, if unknown, from the commit).
    SinceGroupEmpty { state_timestamp_ms: Option<i64> },
    /// A standalone consumer's offsets (or those of topics an active consumer group no longer
    /// subscribes to): from the commit.
    SinceCommit,
}

impl OffsetExpiration {
    pub fn is_expired(self, offset: &OffsetAndMetadata, now_ms: i64, retention_ms: i64) -> bool {
        if let Some(expire_ms) = offset.expire_timestamp_ms {
            return now_ms >= expire_ms;
        }
        let base_ms = match self {
            OffsetExpiration::SinceGroupEmpty {
                state_timestamp_ms: Some(ts),
            } => ts,
            _ => offset.commit_timestamp_ms,
        };
        now_ms.saturating_sub(base_ms) >= retention_ms
    }
}

type TopicOffsets = BTreeMap<String, BTreeMap<i32, OffsetAndMetadata>>;

#[derive(Debug, Default)]
pub struct OffsetMetadataManager {
    offsets_by_group: HashMap<String, TopicOffsets>,
    offsets_count: usize,
}

impl OffsetMetadataManager {
    /// Applies one offset record (`None` = tombstone).
    pub fn replay(
        &mut self,
        group: &str,
        topic: &str,
        partition: i32,
        value: Option<&OffsetCommitValue>,
    ) {
        match value {
            Some(value) => {
                let previous = self
                    .offsets_by_group
                    .entry(group.to_string())
                    .or_default()
                    .entry(topic.to_string())
                    .or_default()
                    .insert(partition, OffsetAndMetadata::from_record(value));
                if previous.is_none() {
                    self.offsets_count += 1;
                }
            }
            None => {
                let Some(topics) = self.offsets_by_group.get_mut(group) else {
                    return;
                };
                if let Some(partitions) = topics.get_mut(topic) {
                    if partitions.remove(&partition).is_some() {
                        self.offsets_count -= 1;
                    }
                    if partitions.is_empty() {
                        topics.remove(topic);
                    }
                }
                if topics.is_empty() {
                    self.offsets_by_group.remove(group);
                }
            }
        }
    }

    pub fn get(&self, group: &str, topic: &str, partition: i32) -> Option<&OffsetAndMetadata> {
        self.offsets_by_group
            .get(group)?
            .get(topic)?
            .get(&partition)
    }

    pub fn group_offsets(&self, group: &str) -> Option<&TopicOffsets> {
        self.offsets_by_group.get(group)
    }

    pub fn has_offsets(&self, group: &str) -> bool {
        self.offsets_by_group.contains_key(group)
    }

    pub fn offsets_count(&self) -> usize {
        self.offsets_count
    }

    fn tombstone(group: &str, topic: &str, partition: i32) -> CoordinatorRecord {
        CoordinatorRecord::OffsetCommit {
            group: group.to_string(),
            topic: topic.to_string(),
            partition,
            value: None,
        }
    }

    /// Tombstones for every offset of the group (DeleteGroups).
    pub fn delete_all_offsets(&self, group: &str, records: &mut Vec<CoordinatorRecord>) -> usize {
        let Some(topics) = self.offsets_by_group.get(group) else {
            return 0;
        };
        let before = records.len();
        for (topic, partitions) in topics {
            for partition in partitions.keys() {
                records.push(Self::tombstone(group, topic, *partition));
            }
        }
        records.len() - before
    }

    /// Tombstones for the group's expired offsets, skipping topics the group still subscribes
    /// to. Returns whether every offset of the group expired (so the group may go too).
    pub fn cleanup_expired_offsets(
        &self,
        group: &str,
        expiration: Option<OffsetExpiration>,
        is_subscribed: impl Fn(&str) -> bool,
        now_ms: i64,
        retention_ms: i64,
        records: &mut Vec<CoordinatorRecord>,
    ) -> bool {
        let Some(topics) = self.offsets_by_group.get(group) else {
            return true;
        };
        let Some(expiration) = expiration else {
            return false;
        };
        let mut all_expired = true;
        for (topic, partitions) in topics {
            if is_subscribed(topic) {
                all_expired = false;
                continue;
            }
            for (partition, offset) in partitions {
                if expiration.is_expired(offset, now_ms, retention_ms) {
                    tracing::debug!(group, topic, partition, "offset expired");
                    records.push(Self::tombstone(group, topic, *partition));
                } else {
                    all_expired = false;
                }
            }
        }
        all_expired
    }

    /// Tombstones for every group's offsets of a deleted topic.
    pub fn on_topic_deleted(&self, topic: &str, records: &mut Vec<CoordinatorRecord>) {
        for (group, topics) in &self.offsets_by_group {
            if let Some(partitions) = topics.get(topic) {
                for partition in partitions.keys() {
                    records.push(Self::tombstone(group, topic, *partition));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(offset: i64, commit_ms: i64) -> OffsetCommitValue {
        OffsetCommitValue {
            offset,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: commit_ms,
            expire_timestamp_ms: -1,
        }
    }

    #[test]
    fn replay_puts_and_tombstones_remove() {
        let mut offsets = OffsetMetadataManager::default();
        offsets.replay("g", "t", 0, Some(&value(5, 0)));
        offsets.replay("g", "t", 1, Some(&value(6, 0)));
        offsets.replay("g", "t", 0, Some(&value(7, 0)));
        assert_eq!(offsets.offsets_count(), 2);
        assert_eq!(offsets.get("g", "t", 0).unwrap().committed_offset, 7);
        offsets.replay("g", "t", 0, None);
        offsets.replay("g", "t", 1, None);
        offsets.replay("g", "t", 1, None);
        assert_eq!(offsets.offsets_count(), 0);
        assert!(!offsets.has_offsets("g"));
    }

    #[test]
    fn expiration_counts_from_empty_or_from_commit() {
        let offset = OffsetAndMetadata::from_record(&value(1, 1_000));
        let retention = 100;
        let since_empty = OffsetExpiration::SinceGroupEmpty {
            state_timestamp_ms: Some(2_000),
        };
        assert!(!since_empty.is_expired(&offset, 2_099, retention));
        assert!(since_empty.is_expired(&offset, 2_100, retention));
        assert!(OffsetExpiration::SinceCommit.is_expired(&offset, 1_100, retention));
        assert!(!OffsetExpiration::SinceCommit.is_expired(&offset, 1_099, retention));
        let explicit = OffsetAndMetadata {
            expire_timestamp_ms: Some(5_000),
            ..offset
        };
        assert!(!OffsetExpiration::SinceCommit.is_expired(&explicit, 4_999, retention));
        assert!(OffsetExpiration::SinceCommit.is_expired(&explicit, 5_000, retention));
    }

    #[test]
    fn cleanup_keeps_subscribed_topics() {
        let mut offsets = OffsetMetadataManager::default();
        offsets.replay("g", "kept", 0, Some(&value(1, 0)));
        offsets.replay("g", "gone", 0, Some(&value(1, 0)));
        let mut records = Vec::new();
        let all = offsets.cleanup_expired_offsets(
            "g",
            Some(OffsetExpiration::SinceCommit),
            |topic| topic == "kept",
            10_000,
            100,
            &mut records,
        );
        assert!(!all);
        assert_eq!(records.len(), 1);
        assert!(
            matches!(&records[0], CoordinatorRecord::OffsetCommit { topic, value: None, .. } if topic == "gone")
        );
    }
}
