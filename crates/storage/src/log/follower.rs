//! The storage side of replication: a follower appends a leader's batches as they are,
//! truncates, and moves its high watermark; a new leader records its epoch's start.

use std::ops::Range;

use fjord_protocol::records::{self, BatchIter, RecordBatchHeader};

use super::{producer_batches, AppendSummary, Log, LogAppendInfo, SEGMENT_BYTES_MAX};
use crate::producer_state::{Analysis, AppendOrigin, ProducerUpdate};
use crate::StorageError;

impl Log {
    /// Appends whole v2 batches exactly as a leader's Fetch returned them (Kafka's
    /// `appendAsFollower`): offsets, partition leader epochs and producer fields are kept, and
    /// the bytes are written unchanged.
    ///
    /// Each batch's length, magic, CRC and codec are checked. The first base offset must be at
    /// least the log end offset and each batch must start after the previous one ends (gaps are
    /// fine: a compacted leader), else [`StorageError::UnexpectedAppendOffset`]; a refused call
    /// writes nothing. A batch with a partition leader epoch newer than the cache's latest
    /// starts that epoch. Producer state is updated as replication (no sequence checks), and
    /// replicated ABORT markers go to the transaction index. Segments roll as for leader
    /// appends, and also when a batch's offsets would not fit the active segment's u32 relative
    /// offsets. The high watermark does not move.
    pub fn append_as_follower(
        &mut self,
        records: &[u8],
        now_ms: i64,
    ) -> Result<LogAppendInfo, StorageError> {
        let batches = self.check_follower_batches(records)?;
        let log_start_offset = self.log_start_offset;
        let (Some((first, _)), Some((last, _))) = (batches.first(), batches.last()) else {
            let log_end_offset = self.log_end_offset();
            return Ok(LogAppendInfo {
                first_offset: log_end_offset,
                last_offset: log_end_offset - 1,
                max_timestamp: crate::segment::NO_TIMESTAMP,
                offset_of_max_timestamp: -1,
                log_start_offset,
                records_count: 0,
                duplicate: false,
                flushed: false,
            });
        };
        let (first_offset, last_offset) = (first.base_offset, last.last_offset());
        // Replication-origin analysis does not refuse today (it only logs anomalies), but if it
        // ever does, the whole call must be refused before a byte is written.
        let all: Vec<(RecordBatchHeader, u64)> = batches
            .iter()
            .map(|(header, range)| (*header, range.start as u64))
            .collect();
        let all_producer_batches =
            producer_batches(&all, |position, size| &records[position..position + size])?;
        self.producer_state
            .analyze(&all_producer_batches, AppendOrigin::Replication)?;

        let segment_bytes = self.config.segment_bytes.min(SEGMENT_BYTES_MAX);
        let mut summary = AppendSummary::empty();
        let mut records_count = 0u64;
        let mut start = 0;
        while start < batches.len() {
            let (header, range) = &batches[start];
            if self.should_roll(range.len() as u64, header.last_offset(), now_ms)
                || !self.active().can_hold_offset(header.last_offset())
            {
                // At the batch's base offset, not the log end: after a gap the log end may be
                // too far below the batch for its relative offsets.
                self.roll_at(header.base_offset, now_ms)?;
            }
            // Then as many following batches as the active segment takes in one write.
            let active = self.active();
            let mut group_bytes = range.len() as u64;
            let mut end = start + 1;
            while let Some((next, next_range)) = batches.get(end) {
                // A control batch (transaction marker) ends its group: the transaction completes
                // before any later batch's producer state applies, so the last stable offset
                // recorded for an abort is the one the leader recorded when it wrote the marker.
                if batches[end - 1].0.is_control() {
                    break;
                }
                let next_bytes = next_range.len() as u64;
                if active.size_bytes + group_bytes + next_bytes > segment_bytes
                    || !active.can_hold_offset(next.last_offset())
                {
                    break;
                }
                group_bytes += next_bytes;
                end += 1;
            }
            let group = &batches[start..end];
            for (header, _) in group {
                summary.add(header);
                records_count += u64::try_from(header.records_count).unwrap_or(0);
            }
            // Producer state is applied group by group: a roll before the next group writes a
            // snapshot that must include everything below the new segment.
            self.append_follower_group(records, group)?;
            start = end;
        }

        self.unflushed_messages = self.unflushed_messages.saturating_add(records_count);
        let flushed = self.unflushed_messages >= self.config.flush_interval_messages
            || now_ms.saturating_sub(self.last_flush_ms) >= self.config.flush_interval_ms;
        if flushed {
            self.flush_at(now_ms)?;
        }
        Ok(LogAppendInfo {
            first_offset,
            last_offset,
            max_timestamp: summary.max_timestamp,
            offset_of_max_timestamp: summary.offset_of_max_timestamp,
            log_start_offset,
            records_count,
            duplicate: false,
            flushed,
        })
    }

    /// Splits `records` into batches and checks them, and their offsets against the log, before
    /// anything is written.
    ///
    /// Not `records::validate_batch`: that is the produce path's check and requires
    /// `lastOffsetDelta == recordsCount - 1` and at least one record, which a compacted
    /// leader's batches need not satisfy (the cleaner keeps a batch's offset range when it
    /// drops records from it). Length, magic, CRC and codec are checked the same way.
    fn check_follower_batches(
        &self,
        records: &[u8],
    ) -> Result<Vec<(RecordBatchHeader, Range<usize>)>, StorageError> {
        let mut batches = Vec::new();
        let mut expected = self.log_end_offset();
        for item in BatchIter::new(records) {
            let (header, range) = item?;
            records::verify_crc(&records[range.clone()], &header)?;
            header.compression()?;
            let consistent = header.last_offset_delta >= 0
                && header.records_count >= 0
                && header
                    .base_offset
                    .checked_add(i64::from(header.last_offset_delta))
                    .is_some();
            if !consistent {
                return Err(records::RecordError::InconsistentOffsetRange {
                    last_offset_delta: header.last_offset_delta,
                    records_count: header.records_count,
                }
                .into());
            }
            self.check_append_size(range.len())?;
            if header.base_offset < expected {
                return Err(StorageError::UnexpectedAppendOffset {
                    offset: header.base_offset,
                    expected,
                });
            }
            expected = header.last_offset() + 1;
            batches.push((header, range));
        }
        Ok(batches)
    }

    /// Writes consecutive batches of `records` to the active segment in one write, then starts
    /// new epochs and applies them to the producer state.
    fn append_follower_group(
        &mut self,
        records: &[u8],
        group: &[(RecordBatchHeader, Range<usize>)],
    ) -> Result<(), StorageError> {
        let (Some((_, first)), Some((_, last))) = (group.first(), group.last()) else {
            return Ok(());
        };
        let (start, end) = (first.start, last.end);
        let headers: Vec<(RecordBatchHeader, u64)> = group
            .iter()
            .map(|(header, range)| (*header, (range.start - start) as u64))
            .collect();
        let bytes = &records[start..end];
        let producer_batches =
            producer_batches(&headers, |position, size| &bytes[position..position + size])?;
        let update = if producer_batches.is_empty() {
            ProducerUpdate::default()
        } else {
            match self
                .producer_state
                .analyze(&producer_batches, AppendOrigin::Replication)?
            {
                Analysis::Update(update) => update,
                // Only client appends are checked for duplicates; a replicated batch is
                // always applied.
                Analysis::Duplicate(_) => ProducerUpdate::default(),
            }
        };
        self.active_mut().append(&[bytes], &headers)?;
        let mut epochs_changed = false;
        for (header, _) in &headers {
            // Kafka's `maybeAssignEpochStartOffset`: the first batch of a newer epoch starts it.
            let epoch = header.partition_leader_epoch;
            if epoch >= 0
                && self
                    .epoch_cache
                    .latest_epoch()
                    .is_none_or(|latest| latest < epoch)
            {
                epochs_changed |= self.epoch_cache.assign(epoch, header.base_offset);
            }
        }
        if epochs_changed {
            // As on the leader's append path: made durable by the next flush, and re-derived
            // from the batch headers by crash recovery.
            self.epoch_cache.persist_lazily()?;
        }
        self.apply_producer_update(update)
    }

    /// Kafka's `maybeIncrementHighWatermark` for a follower (the leader's HW, capped at our log
    /// end offset): raises the high watermark to `min(high_watermark, log end offset)` if that
    /// is higher than the current one. Returns whether it moved. Never lowers it.
    pub fn maybe_increment_high_watermark(&mut self, high_watermark: i64) -> bool {
        let candidate = high_watermark.min(self.log_end_offset());
        if candidate <= self.high_watermark {
            return false;
        }
        self.high_watermark = candidate;
        // Markers below the new HW make their transactions stable (LSO).
        self.producer_state
            .on_high_watermark_updated(self.high_watermark);
        true
    }

    /// Records that `epoch` starts at `start_offset` (Kafka's `maybeAssignEpochStartOffset`),
    /// for a replica becoming leader at `epoch` with `start_offset` its log end offset, so that
    /// OffsetForLeaderEpoch answers for the new epoch before its first batch.
    pub fn assign_epoch_start_offset(
        &mut self,
        epoch: i32,
        start_offset: i64,
    ) -> Result<(), StorageError> {
        if self.epoch_cache.assign(epoch, start_offset) {
            // Persisted as the append path does; a leader that crashes before its next flush
            // is elected again at a newer epoch, which is assigned anew.
            self.epoch_cache.persist_lazily()?;
        }
        Ok(())
    }

    /// The leader epoch cache's entries as `(epoch, start_offset)`, oldest first.
    pub fn epoch_entries(&self) -> Vec<(i32, i64)> {
        self.epoch_cache
            .entries()
            .iter()
            .map(|entry| (entry.epoch, entry.start_offset))
            .collect()
    }
}
