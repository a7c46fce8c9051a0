//! One topic partition hosted by this broker: its log plus the leader state around it.
//!
//! The log sits behind a mutex. Appends need `&mut`; reads only need `&` but take the same lock
//! for now, because a read is a few `pread`s from the page cache. The `Option` becomes `None`
//! when the topic is deleted, so requests holding an `Arc<Partition>` from before the deletion
//! answer UNKNOWN_TOPIC_OR_PARTITION instead of touching a removed directory.

use std::sync::Arc;

use fjord_storage::{FetchDataInfo, Log, LogAppendInfo, StorageError, TimestampAndOffset};
use parking_lot::Mutex;
use uuid::Uuid;

/// Single-node leader epoch. Replication (the cluster issue) will bump it on leader change.
pub const INITIAL_LEADER_EPOCH: i32 = 0;

pub struct Partition {
    pub topic: Arc<str>,
    pub topic_id: Uuid,
    pub index: i32,
    pub leader_epoch: i32,
    log: Mutex<Option<Log>>,
}

/// Offsets a reader needs alongside the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub high_watermark: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error("partition was deleted")]
    Deleted,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl Partition {
    pub fn new(topic: Arc<str>, topic_id: Uuid, index: i32, log: Log) -> Self {
        Self {
            topic,
            topic_id,
            index,
            leader_epoch: INITIAL_LEADER_EPOCH,
            log: Mutex::new(Some(log)),
        }
    }

    fn with_log<T>(
        &self,
        f: impl FnOnce(&mut Log) -> Result<T, StorageError>,
    ) -> Result<T, PartitionError> {
        let mut guard = self.log.lock();
        let log = guard.as_mut().ok_or(PartitionError::Deleted)?;
        Ok(f(log)?)
    }

    /// Appends validated batches as leader. On a single node the high watermark follows the log
    /// end offset at once: the in-sync replica set is this broker alone.
    pub fn append_as_leader(
        &self,
        records: &mut [u8],
        now_ms: i64,
    ) -> Result<LogAppendInfo, PartitionError> {
        let leader_epoch = self.leader_epoch;
        self.with_log(|log| {
            let info = log.append(records, leader_epoch, now_ms)?;
            let log_end_offset = log.log_end_offset();
            log.update_high_watermark(log_end_offset);
            Ok(info)
        })
    }

    pub fn read(
        &self,
        fetch_offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<(FetchDataInfo, PartitionOffsets), PartitionError> {
        self.with_log(|log| {
            let high_watermark = log.high_watermark();
            let data = log.read(fetch_offset, max_bytes, high_watermark, min_one_batch)?;
            Ok((data, offsets_of(log)))
        })
    }

    pub fn offsets(&self) -> Result<PartitionOffsets, PartitionError> {
        self.with_log(|log| Ok(offsets_of(log)))
    }

    pub fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<TimestampAndOffset>, PartitionError> {
        self.with_log(|log| log.fetch_offset_for_timestamp(timestamp_ms))
    }

    pub fn offset_of_max_timestamp(&self) -> Result<Option<TimestampAndOffset>, PartitionError> {
        self.with_log(|log| log.offset_of_max_timestamp())
    }

    pub fn epoch_for_offset(&self, offset: i64) -> Result<Option<i32>, PartitionError> {
        self.with_log(|log| Ok(log.epoch_for_offset(offset)))
    }

    pub fn end_offset_for_epoch(&self, epoch: i32) -> Result<Option<(i32, i64)>, PartitionError> {
        self.with_log(|log| Ok(log.end_offset_for_epoch(epoch)))
    }

    pub fn flush(&self) -> Result<(), PartitionError> {
        self.with_log(|log| log.flush())
    }

    pub fn flush_if_due(&self, now_ms: i64) -> Result<bool, PartitionError> {
        self.with_log(|log| log.flush_if_due(now_ms))
    }

    /// Takes the log out, leaving the partition answering "deleted" from now on.
    pub fn take_log(&self) -> Option<Log> {
        self.log.lock().take()
    }
}

fn offsets_of(log: &Log) -> PartitionOffsets {
    PartitionOffsets {
        log_start_offset: log.log_start_offset(),
        log_end_offset: log.log_end_offset(),
        high_watermark: log.high_watermark(),
    }
}
