//! `ReplicaLog`: the part of a partition log that replication reads and moves, so that the
//! cores ([`super::LeaderState`], [`super::FetcherCore`]) run unchanged over the real
//! `fjord_storage::Log` and over [`SimLog`], the in-memory log of the deterministic simulation.
//!
//! The operations are Kafka's `UnifiedLog` ones that `Partition`, `ReplicaFetcherThread` and
//! `AbstractFetcherThread` call: log start/end offsets, high watermark (the leader's monotonic
//! `maybeIncrementHighWatermark`, the follower's `maybeUpdateHighWatermark`), the leader epoch
//! cache (`latestEpoch`, `endOffsetForEpoch`, `maybeAssignEpochStartOffset`), appends as leader
//! and as follower, `truncateTo`, `truncateFullyAndStartAt`, `maybeIncrementLogStartOffset` and
//! a read up to the log end (`FetchIsolation.LOG_END`, what a leader serves to followers).
//!
//! `SimLog` keeps whole v2 batches in memory (base offset, last offset, partition leader epoch,
//! CRC as the payload's identity, and the bytes to serve) and reproduces the storage rules that
//! replication depends on: offsets strictly increasing, follower batches kept as they are,
//! epoch cache entries from batch headers with Kafka's `LeaderEpochFileCache` rules, the
//! high watermark clamped into `[log start, log end]`. It has no segments, indexes, producer
//! state or transactions. The `contract` tests run the same scripted operations against both
//! implementations and compare everything observable.
//!
//! `SimLog` also models its disk (design section 9, `SimDisk`): the log file is the batches'
//! bytes in order, durable up to the last [`SimLog::flush`] (fsync) and volatile beyond. A
//! process crash (kill -9) keeps everything (the page cache survives); a power cut
//! ([`SimLog::power_cut`]) keeps the flushed prefix plus a prefix of the volatile tail whose
//! last bytes may be torn (zero-filled), and recovery cuts the file at the first batch that is
//! incomplete, out of order or fails its CRC, as `LogSegment::recover` does. Truncations are
//! durable at once.

use bytes::Bytes;
use fjord_protocol::records::{self, BatchIter};
use fjord_storage::{Isolation, Log, LogAppendInfo, StorageError};

/// What a leader reads for a follower: whole batches from the fetch offset, up to the log end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowerRead {
    pub records: Bytes,
    /// The offset just after the returned batches (the fetch offset when none were returned).
    pub next_offset: i64,
}

/// The log operations replication needs (see the module docs for the Kafka names).
pub trait ReplicaLog {
    fn log_start_offset(&self) -> i64;
    fn log_end_offset(&self) -> i64;
    fn high_watermark(&self) -> i64;
    /// The newest epoch in the leader epoch cache; `None` for an empty cache.
    fn latest_epoch(&self) -> Option<i32>;
    /// Kafka's `LeaderEpochFileCache.endOffsetFor`: `(largest epoch <= epoch, its end offset)`;
    /// `None` is UNDEFINED (no epochs, a negative epoch, or one newer than every known one).
    fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)>;
    /// Appends a client's batches as leader: offsets from the log end, `leader_epoch` stamped.
    fn append_as_leader(
        &mut self,
        records: &mut [u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<LogAppendInfo, StorageError>;
    /// Appends a leader's batches unchanged (offsets >= log end, strictly increasing).
    fn append_as_follower(
        &mut self,
        records: &[u8],
        now_ms: i64,
    ) -> Result<LogAppendInfo, StorageError>;
    /// Whole batches from `fetch_offset` up to the log end, at most `max_bytes` but at least
    /// one batch (what a leader answers a follower's fetch with).
    fn read_to_log_end(
        &self,
        fetch_offset: i64,
        max_bytes: usize,
    ) -> Result<FollowerRead, StorageError>;
    /// Removes every batch from the one containing `offset` onwards; at or beyond the log end,
    /// only epoch entries starting at the log end (Kafka `truncateTo`).
    fn truncate_to(&mut self, offset: i64) -> Result<(), StorageError>;
    /// Empties the log; log start, log end and high watermark become `offset`.
    fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<(), StorageError>;
    /// A new leader records where its epoch starts (its log end offset).
    fn assign_epoch_start_offset(&mut self, epoch: i32, offset: i64) -> Result<(), StorageError>;
    /// The leader's rule: raises the high watermark to `min(high_watermark, log end)` if that
    /// is higher. Returns whether it moved; never lowers it.
    fn maybe_increment_high_watermark(&mut self, high_watermark: i64) -> bool;
    /// The follower's rule (Kafka `maybeUpdateHighWatermark`): sets the high watermark to the
    /// leader's, clamped into `[log start, log end]`; it may go down (a new leader's high
    /// watermark can trail the old one's). Returns whether it changed.
    fn update_follower_high_watermark(&mut self, high_watermark: i64) -> bool;
    /// Raises the log start offset (a follower following its leader's DeleteRecords or
    /// retention). Never above the high watermark: a higher value is capped at it.
    fn maybe_increment_log_start_offset(
        &mut self,
        offset: i64,
        now_ms: i64,
    ) -> Result<bool, StorageError>;
}

impl ReplicaLog for Log {
    fn log_start_offset(&self) -> i64 {
        Log::log_start_offset(self)
    }

    fn log_end_offset(&self) -> i64 {
        Log::log_end_offset(self)
    }

    fn high_watermark(&self) -> i64 {
        Log::high_watermark(self)
    }

    fn latest_epoch(&self) -> Option<i32> {
        Log::latest_epoch(self)
    }

    fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        Log::end_offset_for_epoch(self, epoch)
    }

    fn append_as_leader(
        &mut self,
        records: &mut [u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<LogAppendInfo, StorageError> {
        Log::append(
            self,
            records,
            leader_epoch,
            now_ms,
            fjord_storage::AppendOrigin::Client,
        )
    }

    fn append_as_follower(
        &mut self,
        records: &[u8],
        now_ms: i64,
    ) -> Result<LogAppendInfo, StorageError> {
        Log::append_as_follower(self, records, now_ms)
    }

    fn read_to_log_end(
        &self,
        fetch_offset: i64,
        max_bytes: usize,
    ) -> Result<FollowerRead, StorageError> {
        let data = self.read_with_isolation(fetch_offset, max_bytes, true, Isolation::LogEnd)?;
        Ok(FollowerRead {
            records: data.records.read_to_bytes()?,
            next_offset: data.next_offset,
        })
    }

    fn truncate_to(&mut self, offset: i64) -> Result<(), StorageError> {
        Log::truncate_to(self, offset)
    }

    fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<(), StorageError> {
        Log::truncate_fully_and_start_at(self, offset)
    }

    fn assign_epoch_start_offset(&mut self, epoch: i32, offset: i64) -> Result<(), StorageError> {
        Log::assign_epoch_start_offset(self, epoch, offset)
    }

    fn maybe_increment_high_watermark(&mut self, high_watermark: i64) -> bool {
        Log::maybe_increment_high_watermark(self, high_watermark)
    }

    fn update_follower_high_watermark(&mut self, high_watermark: i64) -> bool {
        let before = Log::high_watermark(self);
        self.update_high_watermark(high_watermark);
        Log::high_watermark(self) != before
    }

    fn maybe_increment_log_start_offset(
        &mut self,
        offset: i64,
        now_ms: i64,
    ) -> Result<bool, StorageError> {
        let target = offset.min(Log::high_watermark(self));
        if target <= Log::log_start_offset(self) {
            return Ok(false);
        }
        self.delete_records_before(target, now_ms)?;
        Ok(true)
    }
}

/// One batch held by a [`SimLog`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimBatch {
    pub base_offset: i64,
    pub last_offset: i64,
    pub epoch: i32,
    /// The batch's CRC-32C: it covers attributes, producer fields and records but not the base
    /// offset or epoch, so equal CRCs at equal offsets and epochs mean the same batch.
    pub payload_id: u32,
    pub bytes: Bytes,
}

/// An in-memory [`ReplicaLog`] for tests and the deterministic simulation (see module docs).
#[derive(Debug, Clone, Default)]
pub struct SimLog {
    batches: Vec<SimBatch>,
    log_start_offset: i64,
    /// The log end offset when `batches` is empty or ends below it (after a full truncation).
    next_offset: i64,
    high_watermark: i64,
    /// `(epoch, start_offset)`, epochs and start offsets strictly increasing (Kafka's
    /// `LeaderEpochFileCache` entries).
    epochs: Vec<(i32, i64)>,
    /// Where the log (re)started: the log end after truncating every batch away, as a `Log`'s
    /// first segment's base offset.
    base_offset: i64,
    /// Everything below this offset is on disk (fsynced); a batch boundary.
    flushed_offset: i64,
}

/// What a [`SimLog::power_cut`] did to the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PowerCut {
    /// The log end offset before the cut.
    pub log_end_offset_before: i64,
    /// The log end offset recovery left.
    pub log_end_offset_after: i64,
    /// Bytes of the volatile tail that reached the disk, torn ones included.
    pub kept_bytes: usize,
    /// Whether recovery found a torn or corrupt batch in them (and cut it).
    pub torn: bool,
}

impl SimLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// The readable batches: from the one holding the log start offset.
    pub fn batches(&self) -> &[SimBatch] {
        let first = self
            .batches
            .partition_point(|batch| batch.last_offset < self.log_start_offset);
        &self.batches[first..]
    }

    pub fn epoch_entries(&self) -> &[(i32, i64)] {
        &self.epochs
    }

    /// The high watermark at open, from the checkpoint (see `Log::set_initial_high_watermark`).
    pub fn set_initial_high_watermark(&mut self, high_watermark: i64) {
        self.high_watermark = high_watermark.clamp(self.log_start_offset, self.next_offset);
    }

    /// fsync: everything appended so far survives a power cut.
    pub fn flush(&mut self) {
        self.flushed_offset = self.next_offset;
    }

    /// The offset below which the log is durable.
    pub fn flushed_offset(&self) -> i64 {
        self.flushed_offset
    }

    /// The size of the unflushed tail of the log file.
    pub fn unflushed_bytes(&self) -> usize {
        let first = self.first_unflushed_batch();
        self.batches[first..].iter().map(|b| b.bytes.len()).sum()
    }

    fn first_unflushed_batch(&self) -> usize {
        self.batches
            .partition_point(|batch| batch.last_offset < self.flushed_offset)
    }

    /// A power cut, then recovery at open (see the module docs). The file keeps its flushed
    /// prefix and the first `kept_bytes` of the unflushed tail, of which the last
    /// `torn_bytes` are zeros (a write the disk did not finish). Recovery re-reads the tail
    /// and keeps its batches up to the first one that is incomplete, out of order or fails its
    /// CRC (`LogSegment::recover`); the log is truncated there, which also drops the epoch
    /// cache entries beyond it and clamps the high watermark.
    pub fn power_cut(
        &mut self,
        kept_bytes: usize,
        torn_bytes: usize,
    ) -> Result<PowerCut, StorageError> {
        let before = self.next_offset;
        let first = self.first_unflushed_batch();
        let mut tail: Vec<u8> = self.batches[first..]
            .iter()
            .flat_map(|batch| batch.bytes.iter().copied())
            .collect();
        tail.truncate(kept_bytes);
        let kept_bytes = tail.len();
        let torn_from = kept_bytes.saturating_sub(torn_bytes);
        tail[torn_from..].fill(0);
        let mut valid_end = self.batches[..first]
            .last()
            .map_or(self.base_offset, |batch| batch.last_offset + 1)
            .max(self.base_offset);
        let mut valid_bytes = 0;
        for item in BatchIter::new(&tail) {
            let Ok((header, range)) = item else { break };
            let in_order = header.base_offset >= valid_end && header.last_offset_delta >= 0;
            if !in_order || records::verify_crc(&tail[range.clone()], &header).is_err() {
                break;
            }
            valid_end = header.last_offset() + 1;
            valid_bytes = range.end;
        }
        let torn = valid_bytes < kept_bytes;
        if valid_end < self.next_offset {
            self.truncate_to(valid_end)?;
        }
        assert!(
            self.next_offset == valid_end,
            "recovery keeps exactly the valid prefix"
        );
        self.flushed_offset = self.next_offset;
        Ok(PowerCut {
            log_end_offset_before: before,
            log_end_offset_after: self.next_offset,
            kept_bytes,
            torn,
        })
    }

    /// Kafka's `LeaderEpochFileCache.assign`: drops entries that conflict with the new one.
    fn assign_epoch(&mut self, epoch: i32, start_offset: i64) {
        if epoch < 0 || start_offset < 0 {
            return;
        }
        let needed = self.epochs.last().is_none_or(|&(last_epoch, last_start)| {
            epoch != last_epoch || start_offset < last_start
        });
        if !needed {
            return;
        }
        while self
            .epochs
            .last()
            .is_some_and(|&(e, s)| e >= epoch || s >= start_offset)
        {
            self.epochs.pop();
        }
        self.epochs.push((epoch, start_offset));
    }

    fn after_truncation(&mut self) {
        let end = self.next_offset;
        self.flushed_offset = self.flushed_offset.min(end);
        while self.epochs.last().is_some_and(|&(_, start)| start >= end) {
            self.epochs.pop();
        }
        self.high_watermark = self.high_watermark.clamp(self.log_start_offset, end);
    }

    /// Splits `records` into `(base_offset, last_offset, epoch, crc, bytes)`, checking CRCs.
    fn parse(records: &[u8]) -> Result<Vec<SimBatch>, StorageError> {
        let mut out = Vec::new();
        for item in BatchIter::new(records) {
            let (header, range) = item?;
            let bytes = &records[range];
            records::verify_crc(bytes, &header)?;
            out.push(SimBatch {
                base_offset: header.base_offset,
                last_offset: header.last_offset(),
                epoch: header.partition_leader_epoch,
                payload_id: header.crc,
                bytes: Bytes::copy_from_slice(bytes),
            });
        }
        Ok(out)
    }

    fn info(&self, batches: &[SimBatch]) -> LogAppendInfo {
        let first_offset = batches
            .first()
            .map_or(self.next_offset, |batch| batch.base_offset);
        let last_offset = batches
            .last()
            .map_or(self.next_offset - 1, |batch| batch.last_offset);
        LogAppendInfo {
            first_offset,
            last_offset,
            max_timestamp: -1,
            offset_of_max_timestamp: -1,
            log_start_offset: self.log_start_offset,
            records_count: batches
                .iter()
                .map(|batch| (batch.last_offset - batch.base_offset + 1) as u64)
                .sum(),
            duplicate: false,
            flushed: false,
        }
    }
}

impl ReplicaLog for SimLog {
    fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    fn log_end_offset(&self) -> i64 {
        self.next_offset
    }

    fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    fn latest_epoch(&self) -> Option<i32> {
        self.epochs.last().map(|&(epoch, _)| epoch)
    }

    fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        if epoch < 0 {
            return None;
        }
        if self.latest_epoch() == Some(epoch) {
            return Some((epoch, self.next_offset));
        }
        let higher = self.epochs.partition_point(|&(e, _)| e <= epoch);
        let (_, higher_start) = *self.epochs.get(higher)?;
        match higher.checked_sub(1) {
            Some(floor) => Some((self.epochs[floor].0, higher_start)),
            None => Some((epoch, higher_start)),
        }
    }

    fn append_as_leader(
        &mut self,
        records: &mut [u8],
        leader_epoch: i32,
        _now_ms: i64,
    ) -> Result<LogAppendInfo, StorageError> {
        // Offsets first, as `Log::append` patches them, then parse (the CRC does not cover
        // the patched fields).
        let mut positions = Vec::new();
        let mut next = self.next_offset;
        for item in BatchIter::new(records) {
            let (header, range) = item?;
            records::verify_crc(&records[range.clone()], &header)?;
            positions.push((range, next));
            next += i64::from(header.last_offset_delta) + 1;
        }
        for (range, base_offset) in &positions {
            records::set_base_offset(&mut records[range.clone()], *base_offset);
            records::set_partition_leader_epoch(&mut records[range.clone()], leader_epoch);
        }
        let batches = Self::parse(records)?;
        let info = self.info(&batches);
        if let Some(first) = batches.first() {
            self.assign_epoch(leader_epoch, first.base_offset);
        }
        self.next_offset = next;
        self.batches.extend(batches);
        Ok(info)
    }

    fn append_as_follower(
        &mut self,
        records: &[u8],
        _now_ms: i64,
    ) -> Result<LogAppendInfo, StorageError> {
        let batches = Self::parse(records)?;
        let mut expected = self.next_offset;
        for batch in &batches {
            if batch.base_offset < expected {
                return Err(StorageError::UnexpectedAppendOffset {
                    offset: batch.base_offset,
                    expected,
                });
            }
            expected = batch.last_offset + 1;
        }
        let info = self.info(&batches);
        for batch in batches {
            if batch.epoch >= 0
                && self
                    .latest_epoch()
                    .is_none_or(|latest| latest < batch.epoch)
            {
                self.assign_epoch(batch.epoch, batch.base_offset);
            }
            self.next_offset = batch.last_offset + 1;
            self.batches.push(batch);
        }
        Ok(info)
    }

    fn read_to_log_end(
        &self,
        fetch_offset: i64,
        max_bytes: usize,
    ) -> Result<FollowerRead, StorageError> {
        if fetch_offset < self.log_start_offset || fetch_offset > self.next_offset {
            return Err(StorageError::OffsetOutOfRange {
                offset: fetch_offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: self.next_offset,
            });
        }
        let first = self
            .batches
            .partition_point(|batch| batch.last_offset < fetch_offset);
        let mut out = Vec::new();
        let mut next_offset = fetch_offset;
        for batch in &self.batches[first..] {
            if !out.is_empty() && out.len() + batch.bytes.len() > max_bytes {
                break;
            }
            out.extend_from_slice(&batch.bytes);
            next_offset = batch.last_offset + 1;
        }
        Ok(FollowerRead {
            records: Bytes::from(out),
            next_offset,
        })
    }

    fn truncate_to(&mut self, offset: i64) -> Result<(), StorageError> {
        if offset >= self.next_offset {
            // As `Log::truncate_to`: an epoch assigned at the log end and never used goes.
            self.after_truncation();
            return Ok(());
        }
        if offset < self.log_start_offset {
            return self.truncate_fully_and_start_at(offset.max(0));
        }
        // From the batch containing `offset` onwards (truncation points are batch boundaries).
        let keep = self
            .batches
            .partition_point(|batch| batch.last_offset < offset);
        self.batches.truncate(keep);
        self.next_offset = self
            .batches
            .last()
            .map_or(self.base_offset, |batch| batch.last_offset + 1);
        if self.next_offset < self.log_start_offset {
            // The log start was inside the removed batch (as `Log::truncate_to`).
            return self.truncate_fully_and_start_at(offset);
        }
        self.after_truncation();
        Ok(())
    }

    fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<(), StorageError> {
        if offset < 0 {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: self.next_offset,
            });
        }
        self.batches.clear();
        self.epochs.clear();
        self.base_offset = offset;
        self.log_start_offset = offset;
        self.next_offset = offset;
        self.high_watermark = offset;
        self.flushed_offset = offset;
        Ok(())
    }

    fn assign_epoch_start_offset(&mut self, epoch: i32, offset: i64) -> Result<(), StorageError> {
        self.assign_epoch(epoch, offset);
        Ok(())
    }

    fn maybe_increment_high_watermark(&mut self, high_watermark: i64) -> bool {
        let candidate = high_watermark.min(self.next_offset);
        if candidate <= self.high_watermark {
            return false;
        }
        self.high_watermark = candidate;
        true
    }

    fn update_follower_high_watermark(&mut self, high_watermark: i64) -> bool {
        let before = self.high_watermark;
        self.high_watermark = high_watermark.clamp(self.log_start_offset, self.next_offset);
        self.high_watermark != before
    }

    fn maybe_increment_log_start_offset(
        &mut self,
        offset: i64,
        _now_ms: i64,
    ) -> Result<bool, StorageError> {
        let target = offset.min(self.high_watermark);
        if target <= self.log_start_offset {
            return Ok(false);
        }
        // Batches below the new start stay (as in a `Log` segment until retention deletes it)
        // but are no longer read or listed.
        self.log_start_offset = target;
        // Kafka's `truncateFromStart`: the epoch covering the new start begins there.
        let covering = self.epochs.partition_point(|&(_, start)| start <= target);
        if covering > 0 {
            self.epochs.drain(..covering - 1);
            if self.epochs[0].1 < target {
                self.epochs[0].1 = target;
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
#[path = "replica_log_tests.rs"]
pub(crate) mod tests;
