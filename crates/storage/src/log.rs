//! `Log`: one partition's ordered list of segments, plus its leader epoch cache.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fjord_protocol::control::{self, ControlRecord, EndTxnMarker};
use fjord_protocol::records::{self, BatchIter, RecordBatchHeader, RECORD_BATCH_HEADER_BYTES};

use crate::epoch::LeaderEpochFileCache;
use crate::file_records::FileRecords;
use crate::producer_state::{
    ActiveProducer, AppendOrigin, BatchMetadata, ProducerBatch, ProducerStateManager,
    ProducerUpdate,
};
use crate::segment::LogSegment;
use crate::txn_index::AbortedTxn;
use crate::{io_error, remove_file_if_exists, StorageError};

/// Per-log settings, named and defaulted like Kafka's topic configs.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes`: roll when the active segment would exceed this.
    pub segment_bytes: u64,
    /// `segment.ms`: roll when the active segment is older than this.
    pub segment_ms: i64,
    /// `index.interval.bytes`: bytes of log between offset index entries.
    pub index_interval_bytes: u64,
    /// `flush.messages`: fsync after this many records (`u64::MAX` = leave it to the OS).
    pub flush_interval_messages: u64,
    /// `flush.ms`: fsync when the last flush is older than this (`i64::MAX` = never).
    pub flush_interval_ms: i64,
    /// `retention.ms`: sealed segments whose newest record is older than this are deleted
    /// (-1 = keep forever).
    pub retention_ms: i64,
    /// `retention.bytes`: sealed segments are deleted from the head while the log stays at
    /// least this large without them (-1 = no size limit).
    pub retention_bytes: i64,
    /// `cleanup.policy` contains `compact`: the log cleaner keeps the latest record per key.
    pub compact: bool,
    /// `min.cleanable.dirty.ratio`: clean once the uncleaned part is this share of the log.
    pub min_cleanable_dirty_ratio: f64,
    /// `delete.retention.ms`: how long a tombstone (null value) stays readable.
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`: records younger than this are never compacted.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a record older than this is cleaned whatever the dirty ratio.
    pub max_compaction_lag_ms: i64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            index_interval_bytes: 4096,
            flush_interval_messages: u64::MAX,
            flush_interval_ms: i64::MAX,
            retention_ms: 7 * 24 * 60 * 60 * 1000,
            retention_bytes: -1,
            compact: false,
            min_cleanable_dirty_ratio: 0.5,
            delete_retention_ms: 24 * 60 * 60 * 1000,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
        }
    }
}

/// What an append did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogAppendInfo {
    pub first_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub offset_of_max_timestamp: i64,
    pub log_start_offset: i64,
    pub records_count: u64,
    /// A client's retry of a batch already in the log (same producer, epoch and sequence
    /// range as one of its last five): nothing was written, and `first_offset`/`last_offset`
    /// are those the batch got the first time (Kafka answers such a retry with its original
    /// base offset and no error).
    pub duplicate: bool,
    /// This append also flushed the log (`flush.messages` or `flush.ms` was reached).
    pub flushed: bool,
}

/// Result of a read: a file range of whole batches, possibly empty.
#[derive(Debug, Clone)]
pub struct FetchDataInfo {
    pub records: FileRecords,
    pub log_start_offset: i64,
    /// `read_committed` reads: the aborted transactions overlapping the returned data, for the
    /// consumer to drop their records. `None` for `read_uncommitted`.
    pub aborted_transactions: Option<Vec<AbortedTxn>>,
    /// The offset just after the returned batches (the fetch offset when none were returned).
    pub next_offset: i64,
}

/// A fetch's isolation level (Kafka's `IsolationLevel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// Everything below the high watermark.
    #[default]
    ReadUncommitted,
    /// Only below the last stable offset, with the aborted transactions of what is returned.
    ReadCommitted,
    /// Everything up to the log end offset: a follower replicating from this leader (Kafka's
    /// `FetchIsolation.LOG_END`). Never for clients: records above the high watermark are
    /// not committed and may still be truncated away.
    LogEnd,
}

/// A ListOffsets answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampAndOffset {
    pub timestamp: i64,
    pub offset: i64,
    pub leader_epoch: Option<i32>,
}

/// Positions in index files are u32, so a segment can never grow past this (Kafka's
/// `segment.bytes` is an int for the same reason).
const SEGMENT_BYTES_MAX: u64 = i32::MAX as u64;

/// Leftovers of an interrupted cleaner pass (`.cleaned` output, its `.prepared` manifest) or
/// file replacement; a committed swap is completed from its manifest before the scan.
const STRAY_SUFFIXES: [&str; 5] = [".cleaned", ".prepared", ".swap", ".deleted", ".tmp"];

/// Per-log file holding the recovery point: every offset below it is on disk (fsynced).
/// Kafka keeps one `recovery-point-offset-checkpoint` per data dir; one per log fits our
/// layout (like `leader-epoch-checkpoint`) and needs no cross-partition coordination.
pub(crate) const RECOVERY_POINT_FILE: &str = "recovery-point-offset-checkpoint";

/// Per-log file holding the log start offset when it is inside the first segment (after
/// DeleteRecords); Kafka's `log-start-offset-checkpoint`, kept per log like the recovery point.
pub(crate) const LOG_START_OFFSET_FILE: &str = "log-start-offset-checkpoint";

/// One partition's log.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    config: LogConfig,
    /// Ordered by base offset; never empty; the last is the active segment.
    segments: Vec<LogSegment>,
    log_start_offset: i64,
    high_watermark: i64,
    epoch_cache: LeaderEpochFileCache,
    unflushed_messages: u64,
    last_flush_ms: i64,
    /// Everything below this offset is fsynced (Kafka's recovery point). After a crash,
    /// recovery rescans the segments from the one holding it.
    recovery_point: i64,
    /// Bumped by every truncation, so a background sync that started before one cannot move
    /// the recovery point over data written after it.
    truncations: u64,
    /// The log cleaner's first dirty offset: everything below was compacted by an earlier pass.
    cleaner_checkpoint: i64,
    /// Idempotent and transactional producers: sequences, epochs, ongoing transactions.
    producer_state: ProducerStateManager,
    /// Offsets of the producer snapshot files on disk.
    snapshots: BTreeSet<i64>,
}

/// Sealed segments waiting for their fsync, taken from the log under its lock and run
/// without it (see [`Log::sealed_segments_to_sync`]).
#[derive(Debug)]
pub struct SegmentSync {
    files: Vec<(Arc<File>, PathBuf)>,
    index_paths: Vec<PathBuf>,
    dir: PathBuf,
    recovery_point: i64,
    truncations: u64,
}

impl SegmentSync {
    /// Fsyncs the sealed segments, their indexes and the directory. Takes no lock: the log
    /// keeps appending meanwhile.
    pub fn run(&self) -> Result<(), StorageError> {
        for (file, path) in &self.files {
            file.sync_all().map_err(io_error("fsync", path))?;
        }
        for path in &self.index_paths {
            match File::open(path) {
                Ok(file) => file.sync_all().map_err(io_error("fsync", path))?,
                // Not written yet or removed meanwhile: a rebuilt index is always possible.
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(io_error("open", path)(err)),
            }
        }
        crate::sync_dir(&self.dir)
    }
}

impl Log {
    /// Opens the log in `dir`, creating it if missing, recovering after a crash when
    /// `had_clean_shutdown` is false.
    ///
    /// The high watermark starts at the log end offset: there is no replication yet, so
    /// everything on disk was acknowledged by the only replica.
    pub fn open(
        dir: &Path,
        config: LogConfig,
        had_clean_shutdown: bool,
        now_ms: i64,
    ) -> Result<Log, StorageError> {
        std::fs::create_dir_all(dir).map_err(io_error("create dir", dir))?;
        crate::cleaner::complete_interrupted_swap(dir)?;
        let base_offsets = scan_dir(dir)?;
        let mut segments = Vec::with_capacity(base_offsets.len().max(1));
        for base_offset in base_offsets {
            segments.push(LogSegment::open(
                dir,
                base_offset,
                config.index_interval_bytes,
                now_ms,
            )?);
        }
        if segments.is_empty() {
            segments.push(LogSegment::open(
                dir,
                0,
                config.index_interval_bytes,
                now_ms,
            )?);
        }
        // Without a trustworthy recovery point every segment is rescanned (slow, but safe).
        let recovery_point = if had_clean_shutdown {
            i64::MAX
        } else {
            read_checkpoint(dir, RECOVERY_POINT_FILE).unwrap_or(i64::MIN)
        };
        let (segments, first_rescanned) = load_segments(segments, recovery_point)?;
        let log_end_offset = segments.last().map_or(0, |s| s.next_offset);
        let log_start_offset = read_checkpoint(dir, LOG_START_OFFSET_FILE)
            .filter(|offset| *offset <= log_end_offset)
            .unwrap_or(i64::MIN)
            .max(segments[0].base_offset);
        let epoch_cache = if had_clean_shutdown {
            let mut cache = LeaderEpochFileCache::load(dir)?;
            if cache.truncate_from_end(log_end_offset) {
                cache.persist()?;
            }
            cache
        } else {
            recover_epoch_cache(dir, &segments, first_rescanned, log_end_offset)?
        };
        // Everything is on disk now: clean shutdown fsynced it (and `close` recorded the
        // recovery point), recovery fsynced what it scanned and records it here. A clean start
        // writes nothing: one file write per partition would slow every start-up.
        if !had_clean_shutdown {
            write_recovery_point(dir, log_end_offset)?;
        }
        // Producer state comes from a snapshot no later than the first rescanned segment
        // (whose transaction index recovery emptied) and a replay of the log after it.
        let snapshot_at_most = match first_rescanned {
            Some(index) if !had_clean_shutdown => segments[index].base_offset,
            _ => log_end_offset,
        };
        let mut log = Log {
            dir: dir.to_path_buf(),
            config,
            segments,
            log_start_offset,
            high_watermark: log_end_offset,
            epoch_cache,
            unflushed_messages: 0,
            last_flush_ms: now_ms,
            recovery_point: log_end_offset,
            truncations: 0,
            cleaner_checkpoint: read_checkpoint(dir, crate::cleaner::CLEANER_CHECKPOINT_FILE)
                .unwrap_or(0),
            producer_state: ProducerStateManager::default(),
            snapshots: crate::producer_state::list_snapshots(dir)?
                .into_iter()
                .collect(),
        };
        log.load_producer_state(snapshot_at_most)?;
        log.prune_snapshots()?;
        Ok(log)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// Sets the high watermark a log starts with (Kafka's `UnifiedLog` initialised from the
    /// `replication-offset-checkpoint`), clamped to `[log_start_offset, log_end_offset]`: a
    /// checkpoint older than a truncation or DeleteRecords can be outside the log. Called once
    /// after [`Log::open`], whose high watermark is the log end offset (single-node behaviour).
    pub fn set_initial_high_watermark(&mut self, high_watermark: i64) {
        self.update_high_watermark(high_watermark);
    }

    /// Sets the high watermark, clamped to `[log_start_offset, log_end_offset]`.
    pub fn update_high_watermark(&mut self, offset: i64) {
        self.high_watermark = offset.clamp(self.log_start_offset, self.log_end_offset());
        self.producer_state
            .on_high_watermark_updated(self.high_watermark);
    }

    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size_bytes).sum()
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.epoch_cache.latest_epoch()
    }

    /// Kafka's `LeaderEpochFileCache.endOffsetFor`: `(largest epoch <= requested, its end
    /// offset)`. Like Kafka, an epoch older than every known one answers
    /// `(requested, first known start offset)`; `None` means UNDEFINED.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        self.epoch_cache
            .end_offset_for(epoch, self.log_end_offset())
    }

    pub fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        self.epoch_cache.epoch_for_offset(offset)
    }

    fn active(&self) -> &LogSegment {
        // `segments` is never empty: open creates one and truncation keeps one.
        debug_assert!(!self.segments.is_empty());
        &self.segments[self.segments.len() - 1]
    }

    fn active_mut(&mut self) -> &mut LogSegment {
        debug_assert!(!self.segments.is_empty());
        let last = self.segments.len() - 1;
        &mut self.segments[last]
    }

    /// Appends `records` (one or more batches the caller validated with
    /// `records::validate_batch`), assigning offsets from the log end offset by patching each
    /// batch's base offset and partition leader epoch in place.
    ///
    /// Batches with a producer id are checked against the producer state first (see
    /// [`AppendOrigin`]); if any is refused nothing is written. A client's retry of a batch
    /// already in the log writes nothing and answers with the original offsets
    /// ([`LogAppendInfo::duplicate`]).
    pub fn append(
        &mut self,
        records: &mut [u8],
        leader_epoch: i32,
        now_ms: i64,
        origin: AppendOrigin,
    ) -> Result<LogAppendInfo, StorageError> {
        self.check_append_size(records.len())?;
        let first_offset = self.log_end_offset();
        let (summary, batches) = assign_offsets(records, first_offset, leader_epoch)?;
        let producer_batches = producer_batches(&batches, |position, size| {
            &records[position..position + size]
        })?;
        let update = match self.analyze_producers(&producer_batches, origin)? {
            Ok(update) => update,
            Err(duplicate) => return Ok(duplicate),
        };
        let info = self.append_assigned(&[records], &batches, summary, leader_epoch, now_ms)?;
        self.apply_producer_update(update)?;
        Ok(info)
    }

    /// Appends one validated batch without modifying (or copying) it: the base offset and
    /// partition leader epoch are patched in a copy of its header, and header and body go to
    /// the file in one `pwritev`. The produce path uses this; the request's bytes are shared.
    /// Producer state is checked as for [`Log::append`].
    pub fn append_batch(
        &mut self,
        batch: &[u8],
        leader_epoch: i32,
        now_ms: i64,
        origin: AppendOrigin,
    ) -> Result<LogAppendInfo, StorageError> {
        self.check_append_size(batch.len())?;
        let mut header = RecordBatchHeader::parse(batch)?;
        if header.total_size_bytes() != batch.len() || header.last_offset_delta < 0 {
            return Err(records::RecordError::InconsistentOffsetRange {
                last_offset_delta: header.last_offset_delta,
                records_count: header.records_count,
            }
            .into());
        }
        let first_offset = self.log_end_offset();
        let mut head = [0u8; RECORD_BATCH_HEADER_BYTES];
        head.copy_from_slice(&batch[..RECORD_BATCH_HEADER_BYTES]);
        records::set_base_offset(&mut head, first_offset);
        records::set_partition_leader_epoch(&mut head, leader_epoch);
        header.base_offset = first_offset;
        header.partition_leader_epoch = leader_epoch;
        let producer_batches = producer_batches(&[(header, 0)], |_, _| batch)?;
        let update = match self.analyze_producers(&producer_batches, origin)? {
            Ok(update) => update,
            Err(duplicate) => return Ok(duplicate),
        };
        let mut summary = AppendSummary::empty();
        summary.add(&header);
        let info = self.append_assigned(
            &[&head, &batch[RECORD_BATCH_HEADER_BYTES..]],
            &[(header, 0)],
            summary,
            leader_epoch,
            now_ms,
        )?;
        self.apply_producer_update(update)?;
        Ok(info)
    }

    /// Writes a transaction marker (COMMIT or ABORT) for `producer_id`, as the transaction
    /// coordinator asks (WriteTxnMarkers), and completes the producer's transaction on this
    /// partition if one is ongoing. A marker whose producer epoch is older than the
    /// producer's is refused (INVALID_PRODUCER_EPOCH), as is one from an older coordinator
    /// (TRANSACTION_COORDINATOR_FENCED). An ABORT adds the transaction to the transaction
    /// index; a marker for a producer without a transaction here is written all the same.
    pub fn append_end_txn_marker(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        marker: EndTxnMarker,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<LogAppendInfo, StorageError> {
        let batch = control::encode_end_txn_marker(producer_id, producer_epoch, marker, now_ms);
        self.append_batch(&batch, leader_epoch, now_ms, AppendOrigin::Coordinator)
    }

    /// Checks an append against the producer state: `Ok(Ok(update))` to write and then apply,
    /// `Ok(Err(info))` for a duplicate (answer `info`, write nothing).
    fn analyze_producers(
        &self,
        batches: &[ProducerBatch],
        origin: AppendOrigin,
    ) -> Result<Result<ProducerUpdate, LogAppendInfo>, StorageError> {
        if batches.is_empty() {
            return Ok(Ok(ProducerUpdate::default()));
        }
        match self.producer_state.analyze(batches, origin)? {
            crate::producer_state::Analysis::Update(update) => Ok(Ok(update)),
            crate::producer_state::Analysis::Duplicate(original) => {
                Ok(Err(self.duplicate_append_info(original)))
            }
        }
    }

    fn duplicate_append_info(&self, original: BatchMetadata) -> LogAppendInfo {
        LogAppendInfo {
            first_offset: original.first_offset(),
            last_offset: original.last_offset,
            max_timestamp: original.timestamp,
            offset_of_max_timestamp: original.last_offset,
            log_start_offset: self.log_start_offset,
            records_count: 0,
            duplicate: true,
            flushed: false,
        }
    }

    /// Applies a written append to the producer state; aborted transactions go to the
    /// transaction index of the segment holding their marker (the active one).
    fn apply_producer_update(&mut self, update: ProducerUpdate) -> Result<(), StorageError> {
        if update.is_empty() {
            return Ok(());
        }
        for (txn, last_stable_offset) in self.producer_state.apply(update) {
            if !txn.is_aborted {
                continue;
            }
            let index = self.segment_index_for(txn.last_offset);
            self.segments[index].txn_index.append(AbortedTxn {
                producer_id: txn.producer_id,
                first_offset: txn.first_offset,
                last_offset: txn.last_offset,
                last_stable_offset,
            })?;
        }
        Ok(())
    }

    /// Whether `producer_id` at `producer_epoch` has a transaction open on this partition (Kafka's
    /// `UnifiedLog.hasOngoingTransaction`): its next transactional batch belongs to that
    /// transaction, so only a producer's first transactional batch on a partition needs the
    /// coordinator's verification (KIP-890).
    pub fn has_ongoing_transaction(&self, producer_id: i64, producer_epoch: i16) -> bool {
        self.producer_state.entry(producer_id).is_some_and(|entry| {
            entry.producer_epoch == producer_epoch && entry.current_txn_first_offset.is_some()
        })
    }

    /// Kafka's first unstable offset: where the earliest transaction that is ongoing (or
    /// whose marker is above the high watermark) starts, never below the log start offset.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.producer_state
            .first_unstable_offset()
            .map(|offset| offset.max(self.log_start_offset))
    }

    /// The last stable offset: `read_committed` consumers read below it. The first unstable
    /// offset if there is one below the high watermark, else the high watermark.
    pub fn last_stable_offset(&self) -> i64 {
        match self.first_unstable_offset() {
            Some(offset) if offset < self.high_watermark => offset,
            _ => self.high_watermark,
        }
    }

    /// Aborted transactions overlapping `[start_offset, upper_bound_offset)`: marker at or
    /// after `start_offset`, first offset below `upper_bound_offset` (Kafka's
    /// `collectAbortedTransactions`). Searches from the segment holding `start_offset` on
    /// (an entry lives with its marker, which may be segments after the transaction's data),
    /// until an entry's last stable offset shows that no later one can overlap.
    pub fn collect_aborted_transactions(
        &self,
        start_offset: i64,
        upper_bound_offset: i64,
    ) -> Vec<AbortedTxn> {
        let mut aborted = Vec::new();
        for segment in &self.segments[self.segment_index_for(start_offset)..] {
            let found = segment.txn_index.collect(start_offset, upper_bound_offset);
            aborted.extend(found.aborted);
            if found.complete {
                break;
            }
        }
        aborted
    }

    /// The producers this partition tracks, by producer id (DescribeProducers).
    pub fn active_producers(&self) -> Vec<ActiveProducer> {
        self.producer_state.active_producers()
    }

    /// Kafka's `producer.id.expiration.ms`: forgets producers without an ongoing transaction
    /// whose last write is at least `producer_id_expiration_ms` old. Returns how many.
    pub fn remove_expired_producers(
        &mut self,
        now_ms: i64,
        producer_id_expiration_ms: i64,
    ) -> usize {
        self.producer_state
            .remove_expired(now_ms, producer_id_expiration_ms)
    }

    fn check_append_size(&self, size_bytes: usize) -> Result<(), StorageError> {
        let segment_bytes = self.config.segment_bytes.min(SEGMENT_BYTES_MAX);
        if size_bytes as u64 > segment_bytes {
            return Err(StorageError::RecordBatchTooLarge {
                size_bytes,
                segment_bytes,
            });
        }
        Ok(())
    }

    /// The common tail of both appends: roll if needed, write, index, epoch, flush policy.
    fn append_assigned(
        &mut self,
        parts: &[&[u8]],
        batches: &[(RecordBatchHeader, u64)],
        summary: AppendSummary,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<LogAppendInfo, StorageError> {
        let first_offset = self.log_end_offset();
        if summary.records_count == 0 {
            return Ok(LogAppendInfo {
                first_offset,
                last_offset: first_offset - 1,
                max_timestamp: crate::segment::NO_TIMESTAMP,
                offset_of_max_timestamp: -1,
                log_start_offset: self.log_start_offset,
                records_count: 0,
                duplicate: false,
                flushed: false,
            });
        }
        let size_bytes: u64 = parts.iter().map(|p| p.len() as u64).sum();
        let last_offset = first_offset + summary.records_count as i64 - 1;
        if self.should_roll(size_bytes, last_offset, now_ms) {
            self.roll(now_ms)?;
        }
        self.active_mut().append(parts, batches)?;
        if self.epoch_cache.assign(leader_epoch, first_offset) {
            // No fsync here: one per partition on its first append was the main cost of
            // producing to many new partitions. Made durable with the next flush.
            self.epoch_cache.persist_lazily()?;
        }
        self.unflushed_messages = self
            .unflushed_messages
            .saturating_add(summary.records_count);
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
            log_start_offset: self.log_start_offset,
            records_count: summary.records_count,
            duplicate: false,
            flushed,
        })
    }

    fn should_roll(&self, append_bytes: u64, last_offset: i64, now_ms: i64) -> bool {
        let active = self.active();
        if active.is_empty() {
            return false;
        }
        let segment_bytes = self.config.segment_bytes.min(SEGMENT_BYTES_MAX);
        active.size_bytes + append_bytes > segment_bytes
            || now_ms.saturating_sub(active.created_ms) > self.config.segment_ms
            || active.offset_index.is_full()
            || active.time_index.is_full()
            || !active.can_hold_offset(last_offset)
    }

    /// Seals the active segment (indexes written) and starts a new one at the log end offset.
    /// Nothing is fsynced here: that would stall every produce to this partition behind the
    /// whole segment's write-back. The broker's flusher syncs sealed segments in the
    /// background ([`Log::sealed_segments_to_sync`]), as Kafka schedules its flush on roll;
    /// until it has, the recovery point stays below them and a crash rescans them.
    fn roll(&mut self, now_ms: i64) -> Result<(), StorageError> {
        let new_base_offset = self.log_end_offset();
        self.roll_at(new_base_offset, now_ms)
    }

    /// [`Log::roll`] to a new segment based at `new_base_offset` (at least the log end offset).
    /// A follower rolls at the incoming batch's base offset, which may be past the log end
    /// after a compacted leader's gap, so that its relative offsets fit the segment's u32 index.
    fn roll_at(&mut self, new_base_offset: i64, now_ms: i64) -> Result<(), StorageError> {
        debug_assert!(new_base_offset >= self.log_end_offset());
        self.active_mut().persist(false)?;
        let segment = LogSegment::open(
            &self.dir,
            new_base_offset,
            self.config.index_interval_bytes,
            now_ms,
        )?;
        // A leftover file at this offset (from an earlier truncation) must not be reused.
        if !segment.is_empty() {
            return Err(StorageError::CorruptFile {
                path: segment.log_path().to_path_buf(),
                reason: "segment to roll to already exists and is not empty".into(),
            });
        }
        self.segments.push(segment);
        // The producer state as of the new segment's start (this append is applied after
        // its write), so that opening the log replays at most the segments after it. Not
        // fsynced here: the background segment sync does, with the sealed segment.
        self.write_snapshot(new_base_offset, false)?;
        self.prune_snapshots()?;
        tracing::debug!(dir = %self.dir.display(), new_base_offset, "rolled log segment");
        Ok(())
    }

    /// The sealed segments not yet known to be on disk, for [`SegmentSync::run`] outside the
    /// log's lock; then [`Log::mark_synced`] moves the recovery point. `None` if all are.
    pub fn sealed_segments_to_sync(&self) -> Option<SegmentSync> {
        let active_base_offset = self.active().base_offset;
        if self.recovery_point >= active_base_offset {
            return None;
        }
        let sealed = &self.segments[..self.segments.len() - 1];
        let pending: Vec<&LogSegment> = sealed
            .iter()
            .filter(|s| s.next_offset > self.recovery_point)
            .collect();
        Some(SegmentSync {
            files: pending
                .iter()
                .map(|s| (s.shared_file(), s.log_path().to_path_buf()))
                .collect(),
            index_paths: pending
                .iter()
                .flat_map(|s| {
                    [
                        s.offset_index.path().to_path_buf(),
                        s.time_index.path().to_path_buf(),
                        s.txn_index.path().to_path_buf(),
                    ]
                })
                // The producer snapshots written at these segments' rolls.
                .chain(
                    self.snapshots
                        .range(self.recovery_point.saturating_add(1)..=active_base_offset)
                        .map(|offset| crate::producer_state::snapshot_path(&self.dir, *offset)),
                )
                // The epoch checkpoint is written lazily (no fsync) on append; once the recovery
                // point passes these segments, recovery no longer re-derives their epochs.
                .chain([self.dir.join(crate::epoch::CHECKPOINT_FILE_NAME)])
                .collect(),
            dir: self.dir.clone(),
            recovery_point: active_base_offset,
            truncations: self.truncations,
        })
    }

    /// Records that `sync` completed: its segments are on disk.
    pub fn mark_synced(&mut self, sync: &SegmentSync) -> Result<(), StorageError> {
        if sync.truncations != self.truncations || sync.recovery_point <= self.recovery_point {
            return Ok(());
        }
        self.set_recovery_point(sync.recovery_point)?;
        self.prune_snapshots()
    }

    /// Kafka's `deleteOldSegments` for `cleanup.policy=delete`: deletes sealed segments from
    /// the head while they are entirely below the log start offset, older than
    /// `retention.ms` (by their newest record's timestamp) or beyond `retention.bytes`, and only
    /// below the high watermark. The active segment is never deleted (it rolls by
    /// `segment.ms`/`segment.bytes` first). A reader holding a `FileRecords` of a deleted
    /// segment still reads it: the file lives until its last handle closes. Returns how many
    /// segments were deleted.
    pub fn delete_retained_segments(&mut self, now_ms: i64) -> Result<usize, StorageError> {
        let mut deleted = 0;
        let mut size_bytes = self.size_bytes();
        while self.segments.len() > 1 {
            let head = &self.segments[0];
            if head.next_offset > self.high_watermark {
                break;
            }
            let below_start = head.next_offset <= self.log_start_offset;
            let newest_ms = if head.max_timestamp_so_far >= 0 {
                head.max_timestamp_so_far
            } else {
                head.created_ms
            };
            let expired = self.config.retention_ms >= 0
                && now_ms.saturating_sub(newest_ms) > self.config.retention_ms;
            let oversized = self.config.retention_bytes >= 0
                && size_bytes.saturating_sub(head.size_bytes) >= self.config.retention_bytes as u64;
            if !(below_start || expired || oversized) {
                break;
            }
            let segment = self.segments.remove(0);
            size_bytes -= segment.size_bytes;
            delete_segment_files(&segment)?;
            tracing::info!(dir = %self.dir.display(), base_offset = segment.base_offset,
                reason = if below_start { "log start offset" } else if expired { "retention.ms" } else { "retention.bytes" },
                "deleted log segment");
            deleted += 1;
        }
        if deleted > 0 {
            let first_base_offset = self.segments[0].base_offset;
            self.advance_log_start_offset(first_base_offset)?;
            self.prune_snapshots()?;
        }
        Ok(deleted)
    }

    /// DeleteRecords: moves the log start offset to `offset` (at most the high watermark) and
    /// deletes the segments entirely below it. Returns the new log start offset.
    pub fn delete_records_before(&mut self, offset: i64, now_ms: i64) -> Result<i64, StorageError> {
        if offset > self.high_watermark || offset < 0 {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: self.log_end_offset(),
            });
        }
        if offset > self.log_start_offset {
            self.advance_log_start_offset(offset)?;
            self.delete_retained_segments(now_ms)?;
        }
        Ok(self.log_start_offset)
    }

    fn advance_log_start_offset(&mut self, offset: i64) -> Result<(), StorageError> {
        if offset <= self.log_start_offset {
            return Ok(());
        }
        self.log_start_offset = offset;
        if self.epoch_cache.truncate_from_start(offset) {
            self.epoch_cache.persist_lazily()?;
        }
        if self.recovery_point < offset {
            self.set_recovery_point(offset.min(self.log_end_offset()))?;
        }
        // Durable: a log start offset that went backwards after a crash would resurrect
        // records a DeleteRecords removed.
        crate::write_atomically(
            &self.dir.join(LOG_START_OFFSET_FILE),
            format!("0\n{offset}\n").as_bytes(),
        )
    }

    /// Applies changed topic configs (AlterConfigs) from the next append or retention run.
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    /// Base offsets of the segments, oldest first (the last is the active segment).
    pub fn segment_base_offsets(&self) -> Vec<i64> {
        self.segments.iter().map(|s| s.base_offset).collect()
    }

    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }

    /// Moves the recovery point and records it. The file is replaced without fsync: if the
    /// write is lost the older, lower value stays, which only means more rescanning.
    fn set_recovery_point(&mut self, offset: i64) -> Result<(), StorageError> {
        debug_assert!(offset <= self.log_end_offset());
        self.recovery_point = offset;
        write_recovery_point(&self.dir, offset)
    }

    /// The whole batches from the one containing `fetch_offset` up to `max_bytes` (or the
    /// first whole batch regardless when `min_one_batch`, Kafka's KIP-74 rule), never a batch
    /// that reaches `max_offset_exclusive` (the high watermark). Like Kafka's `Log.read` it
    /// stays within one segment; the next read continues in the next one. The answer is a file
    /// range, not bytes: the caller decides whether to `sendfile` it or read it.
    pub fn read(
        &self,
        fetch_offset: i64,
        max_bytes: usize,
        max_offset_exclusive: i64,
        min_one_batch: bool,
    ) -> Result<FetchDataInfo, StorageError> {
        self.read_range(fetch_offset, max_bytes, max_offset_exclusive, min_one_batch)
            .map(|(data, _)| data)
    }

    /// A fetch at an isolation level: `ReadUncommitted` reads below the high watermark,
    /// `LogEnd` up to the log end offset (followers), `ReadCommitted` below the last stable
    /// offset and also reports the aborted
    /// transactions overlapping `[fetch_offset, end of the returned data)` (Kafka's
    /// `addAbortedTransactions`: the end is the offset of the batch after the returned ones,
    /// or the next segment's base offset).
    pub fn read_with_isolation(
        &self,
        fetch_offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
        isolation: Isolation,
    ) -> Result<FetchDataInfo, StorageError> {
        match isolation {
            Isolation::ReadUncommitted => {
                self.read(fetch_offset, max_bytes, self.high_watermark, min_one_batch)
            }
            Isolation::LogEnd => self.read(
                fetch_offset,
                max_bytes,
                self.log_end_offset(),
                min_one_batch,
            ),
            Isolation::ReadCommitted => {
                let last_stable_offset = self.last_stable_offset();
                let (mut data, upper_bound_offset) =
                    self.read_range(fetch_offset, max_bytes, last_stable_offset, min_one_batch)?;
                let aborted = if data.records.is_empty() {
                    Vec::new()
                } else {
                    self.collect_aborted_transactions(fetch_offset, upper_bound_offset)
                };
                data.aborted_transactions = Some(aborted);
                Ok(data)
            }
        }
    }

    /// [`Log::read`], plus the offset just after the returned data.
    fn read_range(
        &self,
        fetch_offset: i64,
        max_bytes: usize,
        max_offset_exclusive: i64,
        min_one_batch: bool,
    ) -> Result<(FetchDataInfo, i64), StorageError> {
        let log_end_offset = self.log_end_offset();
        if fetch_offset < self.log_start_offset || fetch_offset > log_end_offset {
            return Err(StorageError::OffsetOutOfRange {
                offset: fetch_offset,
                log_start_offset: self.log_start_offset,
                log_end_offset,
            });
        }
        let first_segment = self.segment_index_for(fetch_offset);
        let mut records = FileRecords::empty();
        let mut upper_bound_offset = fetch_offset;
        for (index, segment) in self.segments.iter().enumerate().skip(first_segment) {
            let Some((start, first)) = segment.find_batch_position(fetch_offset)? else {
                continue;
            };
            if first.last_offset() >= max_offset_exclusive {
                break;
            }
            // Where the high watermark cuts this segment: it always falls on a batch boundary
            // (followers append whole batches), so the batch that reaches it starts there.
            let visible_end = if max_offset_exclusive >= segment.next_offset {
                segment.size_bytes
            } else {
                match segment.find_batch_position(max_offset_exclusive)? {
                    Some((position, _)) => position,
                    None => segment.size_bytes,
                }
            };
            let first_end = start + first.total_size_bytes() as u64;
            let budget_end = start.saturating_add(max_bytes as u64);
            let end = if budget_end >= visible_end {
                visible_end
            } else {
                let boundary = segment.last_batch_boundary(start, budget_end)?;
                if boundary == start && min_one_batch {
                    first_end
                } else {
                    boundary
                }
            };
            records = segment.slice(start, end);
            upper_bound_offset = match segment.read_header_at(end)? {
                Some(next) => next.base_offset,
                None => self
                    .segments
                    .get(index + 1)
                    .map_or(log_end_offset, |s| s.base_offset),
            };
            break;
        }
        let data = FetchDataInfo {
            records,
            log_start_offset: self.log_start_offset,
            aborted_transactions: None,
            next_offset: upper_bound_offset,
        };
        Ok((data, upper_bound_offset))
    }

    /// Index of the last segment whose base offset is `<= offset` (0 if none).
    fn segment_index_for(&self, offset: i64) -> usize {
        self.segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1)
    }

    /// First record with timestamp `>= target_ms` (ListOffsets by time).
    pub fn fetch_offset_for_timestamp(
        &self,
        target_ms: i64,
    ) -> Result<Option<TimestampAndOffset>, StorageError> {
        // Like Kafka: the first segment whose largest timestamp reaches the target holds it.
        let Some(segment) = self
            .segments
            .iter()
            .find(|s| !s.is_empty() && s.max_timestamp_so_far >= target_ms)
        else {
            return Ok(None);
        };
        Ok(segment
            .find_offset_by_timestamp(target_ms)?
            .map(|(header, offset, timestamp)| TimestampAndOffset {
                timestamp,
                offset,
                leader_epoch: (header.partition_leader_epoch >= 0)
                    .then_some(header.partition_leader_epoch),
            }))
    }

    /// The exact record carrying the largest timestamp (ListOffsets MAX_TIMESTAMP). The epoch
    /// is the latest leader epoch, as Kafka answers.
    pub fn offset_of_max_timestamp(&self) -> Result<Option<TimestampAndOffset>, StorageError> {
        let mut best: Option<&LogSegment> = None;
        for segment in self.segments.iter().filter(|s| !s.is_empty()) {
            if best.is_none_or(|b| segment.max_timestamp_so_far > b.max_timestamp_so_far) {
                best = Some(segment);
            }
        }
        let Some(segment) = best else {
            return Ok(None);
        };
        let target_offset = segment.offset_of_max_timestamp_so_far;
        let Some((position, header)) = segment.find_batch_position(target_offset)? else {
            return Ok(None);
        };
        let batch = segment.read_batch(position, &header)?;
        let found = records::find_record_offset_with_timestamp(&batch, header.max_timestamp)
            .map_err(|source| StorageError::CorruptLog {
                path: segment.log_path().to_path_buf(),
                position,
                source,
            })?;
        Ok(found.map(|(offset, timestamp)| TimestampAndOffset {
            timestamp,
            offset,
            leader_epoch: self.latest_epoch(),
        }))
    }

    /// Removes every batch from the one containing `offset` onwards, like Kafka's
    /// `truncateTo` (a follower truncating to the leader's log). Below the log start offset
    /// the log is emptied and restarts at `offset`. At or beyond the log end only epoch cache
    /// entries starting at the log end go (an epoch assigned on becoming leader, unused).
    pub fn truncate_to(&mut self, offset: i64) -> Result<(), StorageError> {
        let log_end_offset = self.log_end_offset();
        if offset >= log_end_offset {
            // Nothing to remove, but like Kafka's `truncateTo` the epoch cache loses entries
            // starting at the log end: a replica that became leader (assigning its epoch at
            // its log end) and was replaced before appending anything must not keep claiming
            // that epoch, or its fetches would report it as the last fetched epoch forever.
            if self.epoch_cache.truncate_from_end(log_end_offset) {
                self.epoch_cache.persist()?;
            }
            return Ok(());
        }
        if offset < self.log_start_offset {
            return self.truncate_fully_and_start_at(offset.max(0));
        }
        let keep = self.segment_index_for(offset) + 1;
        self.delete_segments_from(keep)?;
        let active = self.active_mut();
        let position = match active.find_batch_position(offset)? {
            Some((position, _)) => position,
            None => active.size_bytes,
        };
        active.truncate_to_position(position)?;
        active.persist(true)?;
        if self.log_end_offset() < self.log_start_offset {
            // The log start is inside the batch holding `offset` (DeleteRecords, or a follower
            // following its leader's, moved it there): nothing at or above the log start is
            // left, so the log restarts at `offset` like Kafka's `truncateFullyAndStartAt`.
            return self.truncate_fully_and_start_at(offset);
        }
        self.after_truncation()?;
        // Kafka's `truncateAndReload`: the state of the remaining log, from the newest
        // snapshot at or below its end.
        let log_end_offset = self.log_end_offset();
        self.load_producer_state(log_end_offset)?;
        self.prune_snapshots()
    }

    /// Empties the log and restarts it at `offset` (Kafka's `truncateFullyAndStartAt`): a
    /// follower whose fetch offset is below the leader's log start. Segments, producer state
    /// and snapshots go, the epoch cache is cleared, log start, log end and high watermark all
    /// become `offset`.
    ///
    /// Crash safety: segments are deleted newest first, so a crash midway leaves a shorter
    /// prefix of the old log (or none; the log then reopens empty), which the follower's next
    /// fetch sends back here. The log start checkpoint is rewritten once the new segment
    /// exists, so a stale one cannot move the log start of the new log on the next open.
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<(), StorageError> {
        if offset < 0 {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: self.log_end_offset(),
            });
        }
        self.delete_segments_from(0)?;
        self.producer_state.clear();
        for snapshot in std::mem::take(&mut self.snapshots) {
            remove_file_if_exists(&crate::producer_state::snapshot_path(&self.dir, snapshot))?;
        }
        let now_ms = self.last_flush_ms;
        self.segments.push(LogSegment::open(
            &self.dir,
            offset,
            self.config.index_interval_bytes,
            now_ms,
        )?);
        self.log_start_offset = offset;
        // Kafka's `clearAndFlush`: epochs of the old log say nothing about the new one (an
        // entry below `offset` would survive `truncate_from_end` in `after_truncation`).
        if self.epoch_cache.clear() {
            self.epoch_cache.persist()?;
        }
        crate::write_atomically(
            &self.dir.join(LOG_START_OFFSET_FILE),
            format!("0\n{offset}\n").as_bytes(),
        )?;
        self.after_truncation()
    }

    fn after_truncation(&mut self) -> Result<(), StorageError> {
        let log_end_offset = self.log_end_offset();
        self.truncations += 1;
        if self.recovery_point > log_end_offset {
            self.set_recovery_point(log_end_offset)?;
        }
        if self.epoch_cache.truncate_from_end(log_end_offset) {
            self.epoch_cache.persist()?;
        }
        self.high_watermark = self
            .high_watermark
            .clamp(self.log_start_offset, log_end_offset);
        self.producer_state
            .on_high_watermark_updated(self.high_watermark);
        // Kafka's `LogCleanerManager.maybeTruncateCheckpoint`: what is gone is not clean.
        self.cleaner_checkpoint = self.cleaner_checkpoint.min(log_end_offset);
        crate::sync_dir(&self.dir)
    }

    fn delete_segments_from(&mut self, first: usize) -> Result<(), StorageError> {
        for segment in self.segments.drain(first..).rev() {
            delete_segment_files(&segment)?;
        }
        Ok(())
    }

    /// Fsyncs the active segment and writes its indexes.
    pub fn flush(&mut self) -> Result<(), StorageError> {
        let now_ms = self.last_flush_ms;
        self.flush_at(now_ms)
    }

    /// Flushes if unflushed messages are older than `flush_interval_ms` (Kafka's log flusher,
    /// run periodically by the broker so an idle partition is flushed too). Returns whether it
    /// flushed.
    pub fn flush_if_due(&mut self, now_ms: i64) -> Result<bool, StorageError> {
        if self.unflushed_messages == 0
            || now_ms.saturating_sub(self.last_flush_ms) < self.config.flush_interval_ms
        {
            return Ok(false);
        }
        self.flush_at(now_ms)?;
        Ok(true)
    }

    fn flush_at(&mut self, now_ms: i64) -> Result<(), StorageError> {
        if let Some(sync) = self.sealed_segments_to_sync() {
            sync.run()?;
        }
        self.active_mut().persist(true)?;
        self.epoch_cache.persist_if_dirty()?;
        crate::sync_dir(&self.dir)?;
        self.unflushed_messages = 0;
        self.last_flush_ms = now_ms;
        let log_end_offset = self.log_end_offset();
        self.set_recovery_point(log_end_offset)?;
        self.prune_snapshots()
    }

    /// Flushes and writes every segment's indexes and a producer snapshot at the log end
    /// offset, so the next open can trust them and replays nothing.
    pub fn close(mut self) -> Result<(), StorageError> {
        for segment in &mut self.segments {
            segment.persist(true)?;
        }
        let log_end_offset = self.log_end_offset();
        self.write_snapshot(log_end_offset, true)?;
        self.epoch_cache.persist()?;
        crate::sync_dir(&self.dir)?;
        let log_end_offset = self.log_end_offset();
        self.set_recovery_point(log_end_offset)
    }

    /// Writes the producer snapshot for `offset` (the log end offset now), replacing the file
    /// atomically; `durable` fsyncs it and the directory.
    fn write_snapshot(&mut self, offset: i64, durable: bool) -> Result<(), StorageError> {
        debug_assert_eq!(offset, self.log_end_offset());
        let bytes = self.producer_state.encode_snapshot(offset);
        let path = crate::producer_state::snapshot_path(&self.dir, offset);
        crate::write_replacing(&path, &bytes, durable)?;
        self.snapshots.insert(offset);
        Ok(())
    }

    /// Deletes the snapshots no open can use: those above the log end offset (their data is
    /// gone) and those older than the newest one at or below the start of the segment holding
    /// the recovery point (crash recovery replays from there at the earliest).
    fn prune_snapshots(&mut self) -> Result<(), StorageError> {
        let log_end_offset = self.log_end_offset();
        let recovery_segment = self.segment_index_for(self.recovery_point.min(log_end_offset));
        let keep_from = self.segments[recovery_segment].base_offset;
        let floor = self.snapshots.range(..=keep_from).next_back().copied();
        let doomed: Vec<i64> = self
            .snapshots
            .iter()
            .copied()
            .filter(|offset| *offset > log_end_offset || floor.is_some_and(|f| *offset < f))
            .collect();
        for offset in doomed {
            remove_file_if_exists(&crate::producer_state::snapshot_path(&self.dir, offset))?;
            self.snapshots.remove(&offset);
        }
        Ok(())
    }

    /// Rebuilds the producer state (Kafka's `loadProducerState`): the newest valid snapshot at
    /// or below `snapshot_at_most` (corrupt ones are deleted; none: empty state from the first
    /// segment), then every batch after it, which also refills the transaction indexes that
    /// recovery emptied.
    fn load_producer_state(&mut self, snapshot_at_most: i64) -> Result<(), StorageError> {
        let log_end_offset = self.log_end_offset();
        let limit = snapshot_at_most.min(log_end_offset);
        let candidates: Vec<i64> = self.snapshots.range(..=limit).rev().copied().collect();
        let mut replay_from = None;
        for offset in candidates {
            match crate::producer_state::read_snapshot(&self.dir, offset) {
                Ok(entries) => {
                    tracing::debug!(dir = %self.dir.display(), offset, producers = entries.len(),
                        "loaded producer snapshot");
                    self.producer_state.load(entries);
                    replay_from = Some(offset);
                    break;
                }
                Err(StorageError::CorruptFile { path, reason }) => {
                    tracing::warn!(path = %path.display(), %reason,
                        "ignoring unreadable producer snapshot");
                }
                Err(StorageError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(other) => return Err(other),
            }
            remove_file_if_exists(&crate::producer_state::snapshot_path(&self.dir, offset))?;
            self.snapshots.remove(&offset);
        }
        let replay_from = match replay_from {
            Some(offset) => offset,
            None => {
                self.producer_state.clear();
                self.segments[0].base_offset
            }
        };
        self.replay_producer_state(replay_from)?;
        // Replayed markers are below the high watermark: their transactions are stable.
        self.producer_state
            .on_high_watermark_updated(self.high_watermark);
        Ok(())
    }

    /// Applies every batch from `from_offset` to the log end to the producer state, as a
    /// follower would (no checks), adding aborted transactions to the transaction index of
    /// their marker's segment unless it has them already.
    fn replay_producer_state(&mut self, from_offset: i64) -> Result<(), StorageError> {
        let mut replayed = 0u64;
        for index in self.segment_index_for(from_offset)..self.segments.len() {
            let Some((mut position, _)) = self.segments[index].find_batch_position(from_offset)?
            else {
                continue;
            };
            while let Some(header) = self.segments[index].read_header_at(position)? {
                position += header.total_size_bytes() as u64;
                if header.producer_id < 0 {
                    continue;
                }
                let marker = if header.is_control() {
                    let batch = self.segments[index]
                        .read_batch(position - header.total_size_bytes() as u64, &header)?;
                    match end_txn_marker(&batch) {
                        Ok(marker) => marker,
                        Err(error) => {
                            tracing::warn!(dir = %self.dir.display(), offset = header.base_offset,
                                %error, "skipping unreadable control batch");
                            None
                        }
                    }
                } else {
                    None
                };
                let batch = ProducerBatch { header, marker };
                match self
                    .producer_state
                    .analyze(&[batch], AppendOrigin::Replication)
                {
                    Ok(crate::producer_state::Analysis::Update(update)) => {
                        for (txn, last_stable_offset) in self.producer_state.apply(update) {
                            if txn.is_aborted {
                                self.segments[index].txn_index.append_if_new(AbortedTxn {
                                    producer_id: txn.producer_id,
                                    first_offset: txn.first_offset,
                                    last_offset: txn.last_offset,
                                    last_stable_offset,
                                })?;
                            }
                        }
                    }
                    Ok(crate::producer_state::Analysis::Duplicate(_)) => {}
                    Err(error) => {
                        tracing::warn!(dir = %self.dir.display(), offset = header.base_offset,
                            %error, "producer state replay skipped a batch");
                    }
                }
                replayed += 1;
            }
        }
        tracing::debug!(dir = %self.dir.display(), from_offset, replayed, "replayed producer state");
        Ok(())
    }

    /// Removes the log directory and everything in it.
    pub fn delete(self) -> Result<(), StorageError> {
        let dir = self.dir.clone();
        drop(self);
        std::fs::remove_dir_all(&dir).map_err(io_error("remove dir", &dir))
    }
}

/// Offsets and timestamps gathered while patching an append's batches.
struct AppendSummary {
    records_count: u64,
    max_timestamp: i64,
    offset_of_max_timestamp: i64,
}

impl AppendSummary {
    fn empty() -> Self {
        AppendSummary {
            records_count: 0,
            max_timestamp: crate::segment::NO_TIMESTAMP,
            offset_of_max_timestamp: -1,
        }
    }

    /// Accounts for one batch whose base offset is already assigned.
    fn add(&mut self, header: &RecordBatchHeader) {
        let last_offset = header.last_offset();
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.offset_of_max_timestamp = last_offset;
        }
        self.records_count += u64::from(header.last_offset_delta as u32) + 1;
    }
}

/// The batches of an append that carry a producer id, with the marker of each control batch.
/// `bytes_of(position, size)` gives a batch's bytes.
fn producer_batches<'a>(
    batches: &[(RecordBatchHeader, u64)],
    bytes_of: impl Fn(usize, usize) -> &'a [u8],
) -> Result<Vec<ProducerBatch>, StorageError> {
    let mut out = Vec::new();
    for (header, position) in batches {
        if header.producer_id < 0 {
            continue;
        }
        let marker = if header.is_control() {
            end_txn_marker(bytes_of(*position as usize, header.total_size_bytes()))?
        } else {
            None
        };
        out.push(ProducerBatch {
            header: *header,
            marker,
        });
    }
    Ok(out)
}

/// The transaction marker of a control batch (`None` for other control types).
fn end_txn_marker(batch: &[u8]) -> Result<Option<EndTxnMarker>, records::RecordError> {
    Ok(match control::read_control_record(batch)? {
        Some(ControlRecord::EndTxn(marker)) => Some(marker),
        Some(ControlRecord::Other { .. }) | None => None,
    })
}

/// Patches base offsets (consecutive from `first_offset`) and leader epochs in place; returns
/// the patched headers with their positions in `records`.
fn assign_offsets(
    records: &mut [u8],
    first_offset: i64,
    leader_epoch: i32,
) -> Result<(AppendSummary, Vec<(RecordBatchHeader, u64)>), StorageError> {
    let mut ranges = Vec::new();
    for item in BatchIter::new(records) {
        let (header, range) = item?;
        if header.last_offset_delta < 0 {
            return Err(records::RecordError::InconsistentOffsetRange {
                last_offset_delta: header.last_offset_delta,
                records_count: header.records_count,
            }
            .into());
        }
        ranges.push((header, range));
    }
    let mut summary = AppendSummary::empty();
    let mut batches = Vec::with_capacity(ranges.len());
    let mut next_offset = first_offset;
    for (mut header, range) in ranges {
        let position = range.start as u64;
        let batch = &mut records[range];
        records::set_base_offset(batch, next_offset);
        records::set_partition_leader_epoch(batch, leader_epoch);
        header.base_offset = next_offset;
        header.partition_leader_epoch = leader_epoch;
        summary.add(&header);
        next_offset = header.last_offset() + 1;
        batches.push((header, position));
    }
    Ok((summary, batches))
}

/// Lists segment base offsets in `dir`, deleting stray files and orphan indexes.
fn scan_dir(dir: &Path) -> Result<Vec<i64>, StorageError> {
    let mut log_offsets = Vec::new();
    let mut index_files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error("list", dir))? {
        let path = entry.map_err(io_error("list", dir))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if STRAY_SUFFIXES.iter().any(|suffix| name.ends_with(suffix)) {
            tracing::info!(path = %path.display(), "deleting stray file");
            remove_file_if_exists(&path)?;
            continue;
        }
        let Some((stem, extension)) = name.split_once('.') else {
            continue;
        };
        let base_offset = match stem.parse::<i64>() {
            Ok(offset) if stem.len() == 20 && offset >= 0 => offset,
            _ => continue,
        };
        match extension {
            "log" => log_offsets.push(base_offset),
            "index" | "timeindex" | "txnindex" => index_files.push((base_offset, path)),
            _ => {}
        }
    }
    for (base_offset, path) in index_files {
        if !log_offsets.contains(&base_offset) {
            remove_file_if_exists(&path)?;
        }
    }
    log_offsets.sort_unstable();
    Ok(log_offsets)
}
/// Loads every segment's indexes, rescanning (and truncating at the first bad batch) each
/// segment that may hold data not known to be on disk: those ending above `recovery_point`
/// (`i64::MAX` after a clean shutdown: none), and any whose indexes are missing or implausible.
/// Returns the segments and the index of the first one rescanned for the recovery point.
fn load_segments(
    mut segments: Vec<LogSegment>,
    recovery_point: i64,
) -> Result<(Vec<LogSegment>, Option<usize>), StorageError> {
    let mut index = 0;
    let mut first_rescanned = None;
    while index < segments.len() {
        let is_active = index + 1 == segments.len();
        // A segment ends where the next begins; the active one's end is unknown until scanned.
        let may_hold_unsynced = recovery_point != i64::MAX
            && (is_active || segments[index + 1].base_offset > recovery_point);
        let segment = &mut segments[index];
        // Indexes are only worth loading where the data is trusted.
        if may_hold_unsynced || !segment.load_indexes()? {
            if may_hold_unsynced {
                first_rescanned.get_or_insert(index);
            }
            let outcome = segment.recover(true)?;
            segment.persist(true)?;
            if outcome.truncated_bytes > 0 && !is_active {
                for later in segments.drain(index + 1..) {
                    delete_segment_files(&later)?;
                }
            }
        }
        // The transaction index of a segment that may hold unsynced data may be missing
        // entries (or hold some of lost markers): it is rebuilt by the producer state replay.
        if may_hold_unsynced {
            segments[index].load_txn_index()?;
            segments[index].txn_index.reset()?;
        } else {
            segments[index].load_txn_index()?;
        }
        index += 1;
    }
    check_contiguous(&segments)?;
    Ok((segments, first_rescanned))
}

/// A one-offset checkpoint file ("0\n{offset}\n"); `None` if missing or unreadable.
fn read_checkpoint(dir: &Path, file_name: &str) -> Option<i64> {
    let text = std::fs::read_to_string(dir.join(file_name)).ok()?;
    let mut lines = text.lines();
    (lines.next()? == "0").then_some(())?;
    lines.next()?.trim().parse().ok()
}

fn write_recovery_point(dir: &Path, offset: i64) -> Result<(), StorageError> {
    crate::write_replacing(
        &dir.join(RECOVERY_POINT_FILE),
        format!("0\n{offset}\n").as_bytes(),
        false,
    )
}

/// Segments must not overlap: each starts at or after the previous one ends.
fn check_contiguous(segments: &[LogSegment]) -> Result<(), StorageError> {
    for pair in segments.windows(2) {
        if pair[0].next_offset > pair[1].base_offset {
            return Err(StorageError::CorruptFile {
                path: pair[1].log_path().to_path_buf(),
                reason: format!(
                    "segment overlaps the previous one, which ends at offset {}",
                    pair[0].next_offset
                ),
            });
        }
    }
    Ok(())
}

fn delete_segment_files(segment: &LogSegment) -> Result<(), StorageError> {
    remove_file_if_exists(segment.log_path())?;
    remove_file_if_exists(segment.offset_index.path())?;
    remove_file_if_exists(segment.time_index.path())?;
    remove_file_if_exists(segment.txn_index.path())
}

mod cleaning;
mod follower;
pub use cleaning::SwapCommitted;
#[cfg(test)]
mod follower_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod txn_tests;

/// The leader epoch cache after an unclean shutdown. The checkpoint may be stale, missing or
/// torn (it is written without fsync on the append path), so, like Kafka's segment recovery,
/// epochs are re-derived from the batch headers: from every segment if the checkpoint is
/// unreadable or empty, else from the active segment (the one recovery scanned).
fn recover_epoch_cache(
    dir: &Path,
    segments: &[LogSegment],
    first_rescanned: Option<usize>,
    log_end_offset: i64,
) -> Result<LeaderEpochFileCache, StorageError> {
    let (mut cache, rescan_all) = match LeaderEpochFileCache::load(dir) {
        Ok(cache) => {
            let empty = cache.latest_epoch().is_none();
            (cache, empty)
        }
        Err(StorageError::CorruptFile { path, reason }) => {
            tracing::warn!(path = %path.display(), %reason, "leader epoch checkpoint unreadable; rebuilding it from the log");
            (LeaderEpochFileCache::empty(dir), true)
        }
        Err(other) => return Err(other),
    };
    cache.truncate_from_end(log_end_offset);
    let first = if rescan_all {
        0
    } else {
        first_rescanned.unwrap_or(segments.len().saturating_sub(1))
    };
    // The rescanned segments' epochs are re-derived, and only from a batch whose epoch is newer
    // than the latest (Kafka's `LogSegment.recover`): re-assigning an epoch that started in an
    // earlier segment at this segment's first batch would pop the true entry and every newer
    // one, moving that epoch's start forward.
    if let Some(segment) = segments.get(first) {
        cache.truncate_from_end(segment.base_offset);
    }
    for segment in &segments[first..] {
        let mut position = 0;
        while let Some(header) = segment.read_header_at(position)? {
            let epoch = header.partition_leader_epoch;
            if cache.latest_epoch().is_none_or(|latest| epoch > latest) {
                cache.assign(epoch, header.base_offset);
            }
            position += header.total_size_bytes() as u64;
        }
    }
    cache.persist()?;
    Ok(cache)
}
