//! Kafka's `LogCleaner` scheduling: which compacted log to clean next.
//!
//! One cleaner thread (Kafka's `log.cleaner.threads` = 1 default) calls
//! [`ReplicaManager::clean_dirtiest_log`] in a loop and sleeps `log.cleaner.backoff.ms` when no
//! log is due. Each call picks the log a pass would shrink most (highest dirty ratio; logs past
//! `max.compaction.lag.ms` first) and runs one pass: the partition lock is held only to pick
//! the segments and to swap the result in (see `fjord_storage::cleaner`), so producers and
//! consumers carry on while the cleaner reads and writes.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use fjord_storage::cleaner::clean;
use fjord_storage::{CleanerConfig, CleanerStats, LogToClean, Throttler};
use tracing::{info, warn};

use crate::config::BrokerConfig;
use crate::partition::{Partition, PartitionError};
use crate::replica_manager::ReplicaManager;

/// The cleaner's broker-wide settings.
pub fn cleaner_config(config: &BrokerConfig) -> CleanerConfig {
    CleanerConfig {
        dedupe_buffer_size_bytes: config.log_cleaner_dedupe_buffer_size,
        io_max_bytes_per_second: config.log_cleaner_io_max_bytes_per_second,
        io_buffer_size_bytes: config.log_cleaner_io_buffer_size,
    }
}

/// One finished pass.
#[derive(Debug)]
pub struct CleanedPartition {
    pub topic: Arc<str>,
    pub partition: i32,
    pub stats: CleanerStats,
}

impl ReplicaManager {
    /// Runs one cleaner pass on the dirtiest due log. `None` if no log is due (or the pass was
    /// dropped because the log changed under it).
    /// Setting `cancelled` stops a pass in progress (at shutdown).
    pub fn clean_dirtiest_log(
        &self,
        cleaner: &CleanerConfig,
        now_ms: i64,
        cancelled: &Arc<AtomicBool>,
    ) -> Option<CleanedPartition> {
        let (partition, task) = self.dirtiest_log(now_ms)?;
        let throttler =
            Throttler::with_cancel(cleaner.io_max_bytes_per_second, Arc::clone(cancelled));
        let cleaned = match clean(&task, cleaner, now_ms, &throttler) {
            Ok(cleaned) => cleaned,
            Err(err) => {
                // Kafka marks the partition uncleanable; here it is retried next time round.
                warn!(topic = %partition.topic, partition = partition.index, error = %err, "log cleaning failed");
                return None;
            }
        };
        let swap_started = std::time::Instant::now();
        let swapped = partition.swap_cleaned(cleaned);
        // The swap is the only part of a pass that holds the partition lock.
        let swap_ms = swap_started.elapsed().as_secs_f64() * 1e3;
        match swapped {
            Ok(Some(stats)) => {
                let seconds = stats.elapsed.as_secs_f64().max(1e-6);
                info!(
                    topic = %partition.topic,
                    partition = partition.index,
                    read_mb = stats.bytes_read as f64 / 1e6,
                    written_mb = stats.bytes_written as f64 / 1e6,
                    read_mb_per_s = stats.bytes_read as f64 / 1e6 / seconds,
                    records_removed = stats.records_removed,
                    tombstones_removed = stats.tombstones_removed,
                    keys = stats.keys_in_map,
                    segments = stats.segments_replaced,
                    swap_ms,
                    "cleaned log"
                );
                Some(CleanedPartition {
                    topic: Arc::clone(&partition.topic),
                    partition: partition.index,
                    stats,
                })
            }
            Ok(None) | Err(PartitionError::Deleted) => None,
            Err(err) => {
                warn!(topic = %partition.topic, partition = partition.index, error = %err, "swapping cleaned segments failed");
                None
            }
        }
    }

    /// The due log with the most to gain: forced by `max.compaction.lag.ms` first, then by
    /// dirty ratio (Kafka's `LogCleanerManager.grabFilthiestCompactedLog`).
    fn dirtiest_log(&self, now_ms: i64) -> Option<(Arc<Partition>, LogToClean)> {
        let mut best: Option<(Arc<Partition>, LogToClean)> = None;
        for topic in self.topics() {
            for partition in &topic.partitions {
                let task = match partition.log_to_clean(now_ms) {
                    Ok(Some(task)) => task,
                    Ok(None) | Err(PartitionError::Deleted) => continue,
                    Err(err) => {
                        warn!(topic = %topic.name, partition = partition.index, error = %err, "could not inspect log for cleaning");
                        continue;
                    }
                };
                let better = best.as_ref().is_none_or(|(_, current)| {
                    (task.forced_by_max_lag, task.dirty_ratio())
                        > (current.forced_by_max_lag, current.dirty_ratio())
                });
                if better {
                    best = Some((Arc::clone(partition), task));
                }
            }
        }
        best
    }
}
