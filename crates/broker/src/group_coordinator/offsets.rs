//! Committed offsets of one coordinator shard (Kafka's `OffsetMetadataManager`).
//!
//! The in-memory map changes only by replaying records, the same way at start-up (from the
//! log) and at run time (after the records were appended): what is in memory is always what
//! the log says.
//!
//! Transactional offsets (TxnOffsetCommit) are records of transactional batches. Replayed, they
//! go to the pending offsets of their producer id, invisible to OffsetFetch, until the
//! transaction's marker: COMMIT moves them to the committed offsets (unless a non-transactional
//! commit of the same partition was written after them), ABORT drops them (Kafka's
//! `pendingTransactionalOffsets`, `openTransactionsByGroup`, `replayEndTransactionMarker`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use tracing::{debug, info};

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
    /// Offset of the record in `__consumer_offsets` (Kafka's `recordOffset`): when a
    /// transaction commits, its offsets replace only committed offsets written before them.
    pub record_offset: i64,
}

impl OffsetAndMetadata {
    pub fn from_record(record_offset: i64, value: &OffsetCommitValue) -> Self {
        Self {
            record_offset,
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

/// Removes one partition's offset from a group's map, dropping emptied topics. Returns whether
/// there was one.
fn remove_offset(topics: &mut TopicOffsets, topic: &str, partition: i32) -> bool {
    let Some(partitions) = topics.get_mut(topic) else {
        return false;
    };
    let removed = partitions.remove(&partition).is_some();
    if partitions.is_empty() {
        topics.remove(topic);
    }
    removed
}

#[derive(Debug, Default)]
pub struct OffsetMetadataManager {
    offsets_by_group: HashMap<String, TopicOffsets>,
    offsets_count: usize,
    /// Kafka's `pendingTransactionalOffsets`: per producer id, per group, the offsets of its
    /// ongoing transaction. A group stays listed (possibly with no offsets left, after a
    /// tombstone) until the transaction's marker.
    pending_by_producer: HashMap<i64, HashMap<String, TopicOffsets>>,
    /// Kafka's `openTransactionsByGroup`: the producer ids with pending offsets in each group.
    open_transactions_by_group: HashMap<String, BTreeSet<i64>>,
    pending_count: usize,
}

impl OffsetMetadataManager {
    /// Applies one offset record (`None` = tombstone) at `record_offset` in the log.
    /// `producer_id` is that of a transactional batch: the offset is pending until the
    /// transaction's marker. A tombstone removes the committed offset and any pending one.
    pub fn replay(
        &mut self,
        record_offset: i64,
        producer_id: Option<i64>,
        group: &str,
        topic: &str,
        partition: i32,
        value: Option<&OffsetCommitValue>,
    ) {
        match (value, producer_id) {
            (Some(value), None) => {
                let previous = self
                    .offsets_by_group
                    .entry(group.to_string())
                    .or_default()
                    .entry(topic.to_string())
                    .or_default()
                    .insert(
                        partition,
                        OffsetAndMetadata::from_record(record_offset, value),
                    );
                if previous.is_none() {
                    self.offsets_count += 1;
                }
            }
            (Some(value), Some(producer_id)) => {
                debug!(
                    group,
                    topic, partition, producer_id, "pending transactional offset"
                );
                let previous = self
                    .pending_by_producer
                    .entry(producer_id)
                    .or_default()
                    .entry(group.to_string())
                    .or_default()
                    .entry(topic.to_string())
                    .or_default()
                    .insert(
                        partition,
                        OffsetAndMetadata::from_record(record_offset, value),
                    );
                if previous.is_none() {
                    self.pending_count += 1;
                }
                self.open_transactions_by_group
                    .entry(group.to_string())
                    .or_default()
                    .insert(producer_id);
            }
            (None, _) => {
                if let Some(topics) = self.offsets_by_group.get_mut(group) {
                    if remove_offset(topics, topic, partition) {
                        self.offsets_count -= 1;
                    }
                    if topics.is_empty() {
                        self.offsets_by_group.remove(group);
                    }
                }
                let Some(open) = self.open_transactions_by_group.get(group) else {
                    return;
                };
                for producer_id in open {
                    let pending = self
                        .pending_by_producer
                        .get_mut(producer_id)
                        .and_then(|groups| groups.get_mut(group));
                    if let Some(topics) = pending {
                        if remove_offset(topics, topic, partition) {
                            self.pending_count -= 1;
                        }
                    }
                }
            }
        }
    }

    /// Kafka's `replayEndTransactionMarker`: the producer's transaction ended. On COMMIT its
    /// pending offsets become the committed ones, except where a non-transactional commit was
    /// written after them (the later record wins, as compaction would keep it); on ABORT they
    /// are dropped. Returns the groups whose committed offsets changed.
    pub fn replay_end_transaction(&mut self, producer_id: i64, commit: bool) -> Vec<String> {
        let Some(pending) = self.pending_by_producer.remove(&producer_id) else {
            debug!(
                producer_id,
                commit, "transaction marker without pending offsets; ignored"
            );
            return Vec::new();
        };
        for group in pending.keys() {
            if let Some(open) = self.open_transactions_by_group.get_mut(group) {
                open.remove(&producer_id);
                if open.is_empty() {
                    self.open_transactions_by_group.remove(group);
                }
            }
        }
        let count: usize = pending
            .values()
            .flat_map(|topics| topics.values())
            .map(BTreeMap::len)
            .sum();
        self.pending_count = self.pending_count.saturating_sub(count);
        if !commit {
            debug!(
                producer_id,
                offsets = count,
                "aborted transactional offsets"
            );
            return Vec::new();
        }
        let mut changed = Vec::new();
        for (group, topics) in pending {
            let mut materialized = false;
            for (topic, partitions) in topics {
                for (partition, offset) in partitions {
                    let committed = self
                        .offsets_by_group
                        .entry(group.clone())
                        .or_default()
                        .entry(topic.clone())
                        .or_default();
                    match committed.get(&partition) {
                        Some(existing) if existing.record_offset >= offset.record_offset => {
                            info!(
                                group = group.as_str(),
                                topic = topic.as_str(),
                                partition,
                                producer_id,
                                record_offset = offset.record_offset,
                                committed_record_offset = existing.record_offset,
                                "transactional offset not materialized: a later commit exists"
                            );
                        }
                        existing => {
                            if existing.is_none() {
                                self.offsets_count += 1;
                            }
                            committed.insert(partition, offset);
                            materialized = true;
                        }
                    }
                }
            }
            // Entries created above for nothing (every offset was older) are removed again.
            if let Some(topics) = self.offsets_by_group.get_mut(&group) {
                topics.retain(|_, partitions| !partitions.is_empty());
                if topics.is_empty() {
                    self.offsets_by_group.remove(&group);
                }
            }
            if materialized {
                changed.push(group);
            }
        }
        debug!(
            producer_id,
            offsets = count,
            "committed transactional offsets"
        );
        changed
    }

    /// Kafka's `hasPendingTransactionalOffsets`: an ongoing transaction committed an offset
    /// for this partition.
    pub fn has_pending(&self, group: &str, topic: &str, partition: i32) -> bool {
        let Some(open) = self.open_transactions_by_group.get(group) else {
            return false;
        };
        open.iter().any(|producer_id| {
            self.pending_by_producer
                .get(producer_id)
                .and_then(|groups| groups.get(group))
                .and_then(|topics| topics.get(topic))
                .is_some_and(|partitions| partitions.contains_key(&partition))
        })
    }

    /// Whether an ongoing transaction committed offsets for the group.
    pub fn has_open_transactions(&self, group: &str) -> bool {
        self.open_transactions_by_group.contains_key(group)
    }

    /// The pending offset of `producer_id`'s transaction for a partition.
    pub fn pending(
        &self,
        producer_id: i64,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Option<&OffsetAndMetadata> {
        self.pending_by_producer
            .get(&producer_id)?
            .get(group)?
            .get(topic)?
            .get(&partition)
    }

    /// Pending transactional offsets across all producers (bounded at run time by
    /// `PENDING_TRANSACTIONAL_OFFSETS_MAX`).
    pub fn pending_count(&self) -> usize {
        self.pending_count
    }

    /// The group's partitions with a pending transactional offset, of any producer.
    fn pending_partitions(&self, group: &str) -> BTreeSet<(&str, i32)> {
        let mut partitions = BTreeSet::new();
        let Some(open) = self.open_transactions_by_group.get(group) else {
            return partitions;
        };
        for producer_id in open {
            let pending = self
                .pending_by_producer
                .get(producer_id)
                .and_then(|groups| groups.get(group));
            for (topic, offsets) in pending.into_iter().flatten() {
                partitions.extend(offsets.keys().map(|p| (topic.as_str(), *p)));
            }
        }
        partitions
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

    /// Every group with committed offsets (pending transactional ones left out).
    pub fn groups_with_offsets(&self) -> impl Iterator<Item = (&String, &TopicOffsets)> {
        self.offsets_by_group.iter()
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

    /// Tombstones for every offset of the group (DeleteGroups), committed or pending in a
    /// transaction (one tombstone per partition).
    pub fn delete_all_offsets(&self, group: &str, records: &mut Vec<CoordinatorRecord>) -> usize {
        let before = records.len();
        if let Some(topics) = self.offsets_by_group.get(group) {
            for (topic, partitions) in topics {
                for partition in partitions.keys() {
                    records.push(Self::tombstone(group, topic, *partition));
                }
            }
        }
        for (topic, partition) in self.pending_partitions(group) {
            if self.get(group, topic, partition).is_none() {
                records.push(Self::tombstone(group, topic, partition));
            }
        }
        records.len() - before
    }

    /// Tombstones for the group's expired offsets, skipping topics the group still subscribes
    /// to and partitions with a pending transactional offset. Returns whether every offset of
    /// the group expired and no transaction has offsets pending in it (so the group may go too).
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
            return !self.has_open_transactions(group);
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
                if expiration.is_expired(offset, now_ms, retention_ms)
                    && !self.has_pending(group, topic, *partition)
                {
                    tracing::debug!(group, topic, partition, "offset expired");
                    records.push(Self::tombstone(group, topic, *partition));
                } else {
                    all_expired = false;
                }
            }
        }
        all_expired && !self.has_open_transactions(group)
    }

    /// Tombstones for every group's offsets of a deleted topic, committed or pending.
    pub fn on_topic_deleted(&self, topic: &str, records: &mut Vec<CoordinatorRecord>) {
        let mut deleted: BTreeSet<(&str, i32)> = BTreeSet::new();
        let committed = self.offsets_by_group.iter();
        let pending = self.pending_by_producer.values().flatten();
        for (group, topics) in committed.chain(pending) {
            if let Some(partitions) = topics.get(topic) {
                for partition in partitions.keys() {
                    if deleted.insert((group.as_str(), *partition)) {
                        records.push(Self::tombstone(group, topic, *partition));
                    }
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
        offsets.replay(0, None, "g", "t", 0, Some(&value(5, 0)));
        offsets.replay(0, None, "g", "t", 1, Some(&value(6, 0)));
        offsets.replay(0, None, "g", "t", 0, Some(&value(7, 0)));
        assert_eq!(offsets.offsets_count(), 2);
        assert_eq!(offsets.get("g", "t", 0).unwrap().committed_offset, 7);
        offsets.replay(0, None, "g", "t", 0, None);
        offsets.replay(0, None, "g", "t", 1, None);
        offsets.replay(0, None, "g", "t", 1, None);
        assert_eq!(offsets.offsets_count(), 0);
        assert!(!offsets.has_offsets("g"));
    }

    #[test]
    fn expiration_counts_from_empty_or_from_commit() {
        let offset = OffsetAndMetadata::from_record(0, &value(1, 1_000));
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
        offsets.replay(0, None, "g", "kept", 0, Some(&value(1, 0)));
        offsets.replay(0, None, "g", "gone", 0, Some(&value(1, 0)));
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

    #[test]
    fn pending_offsets_commit_abort_and_stay_invisible_meanwhile() {
        let mut offsets = OffsetMetadataManager::default();
        offsets.replay(0, None, "g", "t", 0, Some(&value(1, 0)));
        offsets.replay(1, Some(7), "g", "t", 0, Some(&value(10, 0)));
        offsets.replay(2, Some(7), "g", "t", 1, Some(&value(11, 0)));
        offsets.replay(3, Some(8), "g", "t", 2, Some(&value(12, 0)));
        assert_eq!(offsets.pending_count(), 3);
        assert_eq!(offsets.get("g", "t", 0).unwrap().committed_offset, 1);
        assert!(offsets.get("g", "t", 1).is_none());
        assert!(offsets.has_pending("g", "t", 0) && offsets.has_pending("g", "t", 2));
        assert!(!offsets.has_pending("g", "t", 3) && !offsets.has_pending("h", "t", 0));
        assert_eq!(
            offsets.pending(7, "g", "t", 1).unwrap().committed_offset,
            11
        );

        assert_eq!(
            offsets.replay_end_transaction(7, true),
            vec!["g".to_string()]
        );
        assert_eq!(offsets.get("g", "t", 0).unwrap().committed_offset, 10);
        assert_eq!(offsets.get("g", "t", 1).unwrap().committed_offset, 11);
        assert_eq!(offsets.offsets_count(), 2);
        assert!(
            offsets.has_open_transactions("g"),
            "producer 8 is still open"
        );

        assert!(offsets.replay_end_transaction(8, false).is_empty());
        assert!(offsets.get("g", "t", 2).is_none());
        assert_eq!(offsets.pending_count(), 0);
        assert!(!offsets.has_open_transactions("g"));
        // A second marker for the same producer finds nothing.
        assert!(offsets.replay_end_transaction(8, true).is_empty());
    }

    #[test]
    fn a_later_plain_commit_wins_over_an_earlier_transactional_one() {
        let mut offsets = OffsetMetadataManager::default();
        offsets.replay(5, Some(7), "g", "t", 0, Some(&value(10, 0)));
        offsets.replay(5, Some(7), "g", "t", 1, Some(&value(10, 0)));
        offsets.replay(6, None, "g", "t", 0, Some(&value(20, 0)));
        offsets.replay_end_transaction(7, true);
        assert_eq!(offsets.get("g", "t", 0).unwrap().committed_offset, 20);
        assert_eq!(offsets.get("g", "t", 1).unwrap().committed_offset, 10);
        assert_eq!(offsets.offsets_count(), 2);
        // Only older plain commits: nothing materialised, no empty maps left behind.
        offsets.replay(1, Some(9), "h", "t", 0, Some(&value(1, 0)));
        offsets.replay(2, None, "h", "t", 0, Some(&value(2, 0)));
        offsets.replay(3, None, "h", "t", 0, None);
        assert!(offsets.replay_end_transaction(9, true).is_empty());
        assert!(!offsets.has_offsets("h"));
    }

    #[test]
    fn tombstones_deletion_and_expiry_cover_pending_offsets() {
        let mut offsets = OffsetMetadataManager::default();
        offsets.replay(0, None, "g", "t", 0, Some(&value(1, 0)));
        offsets.replay(1, Some(7), "g", "t", 0, Some(&value(2, 0)));
        offsets.replay(2, Some(7), "g", "t", 1, Some(&value(3, 0)));
        offsets.replay(3, Some(8), "g", "t", 1, Some(&value(4, 0)));
        let mut records = Vec::new();
        assert_eq!(
            offsets.delete_all_offsets("g", &mut records),
            2,
            "one per partition"
        );
        let mut deleted = Vec::new();
        offsets.on_topic_deleted("t", &mut deleted);
        assert_eq!(deleted, records);
        // Nothing expires while a transaction is pending on the partition or the group.
        let mut expired = Vec::new();
        let all = offsets.cleanup_expired_offsets(
            "g",
            Some(OffsetExpiration::SinceCommit),
            |_| false,
            i64::MAX,
            1,
            &mut expired,
        );
        assert!(!all && expired.is_empty());
        // A tombstone removes the pending offsets of the partition too.
        offsets.replay(4, None, "g", "t", 1, None);
        assert!(!offsets.has_pending("g", "t", 1));
        assert_eq!(offsets.pending_count(), 1);
        offsets.replay_end_transaction(8, true);
        assert!(offsets.get("g", "t", 1).is_none());
        offsets.replay_end_transaction(7, false);
        let all = offsets.cleanup_expired_offsets(
            "g",
            Some(OffsetExpiration::SinceCommit),
            |_| false,
            i64::MAX,
            1,
            &mut expired,
        );
        assert!(all && expired.len() == 1);
    }
}
