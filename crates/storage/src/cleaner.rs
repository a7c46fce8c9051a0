//! The log cleaner's work on one log: Kafka's `Cleaner` (compaction of `cleanup.policy=compact`
//! logs to the latest record per key).
//!
//! A pass has three steps, so that the partition's lock is held only for the first and last:
//!
//! 1. [`Log::log_to_clean`](crate::Log::log_to_clean) (under the lock) picks the sealed
//!    segments below the first uncleanable offset (active segment, high watermark,
//!    `min.compaction.lag.ms`) and measures the dirty ratio against `min.cleanable.dirty.ratio`
//!    and `max.compaction.lag.ms`. It hands out the segments' open files.
//! 2. [`clean`] (no lock: producers and consumers carry on) builds the [`OffsetMap`] of the
//!    dirty section (key digest → latest offset, bounded by `log.cleaner.dedupe.buffer.size`),
//!    then copies the log from its start into new segments named `*.cleaned`, dropping records
//!    superseded by a later one with the same key, keyless records, and tombstones older than
//!    `delete.retention.ms`. Batches that keep every record are copied byte for byte; others
//!    are rebuilt with their own codec ([`fjord_protocol::filter`]). Reads and writes are
//!    throttled to `log.cleaner.io.max.bytes.per.second`. The new files are fsynced.
//! 3. [`Log::swap_cleaned`](crate::Log::swap_cleaned) (under the lock) checks that the log
//!    still has the segments that were cleaned (retention or truncation may have removed them
//!    meanwhile: the pass is then dropped), writes the `cleaner-swap` manifest, deletes the
//!    replaced files, renames the new ones into place and removes the manifest.
//!
//! Crash safety: until the manifest is durable, the `.cleaned` files are strays that the next
//! start deletes. Once it is, the next start completes the swap from it (see
//! [`complete_interrupted_swap`]). Either way every latest value is in the log. Kafka marks the
//! same moment by renaming `.cleaned` files to `.swap`; a manifest also covers a group whose
//! records were all removed, which a swap file's own offsets cannot name.
//!
//! Offsets are preserved: a rebuilt batch keeps its base offset and last offset delta, so the
//! log has gaps but no renumbering.
//!
//! Transactions (Kafka's `CleanedTransactionMetadata`): nothing at or above the first unstable
//! offset is cleaned. Records of aborted transactions never enter the offset map and their
//! batches are dropped; control batches never enter the map. A marker stays while its
//! transaction still had data in the pass (an ABORT then keeps its transaction index entry in
//! the new segment); once the data is gone it is removed when older than
//! `delete.retention.ms` (by its timestamp: Kafka counts from when it first became removable,
//! which needs a delete horizon stamped into the batch). The last batch of each producer the
//! partition tracks is kept whole (Kafka keeps its header only), so its sequence and epoch
//! survive a log replay.

use std::collections::HashMap;
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::collections::{HashSet, VecDeque};

use fjord_protocol::control::{self, ControlRecord};
use fjord_protocol::filter::{filter_batch, FilteredBatch};
use fjord_protocol::records::{self, RecordBatchHeader, RecordError};

use crate::log::LogConfig;
use crate::segment::LogSegment;
use crate::txn_index::AbortedTxn;
use crate::{io_error, remove_file_if_exists, StorageError};

/// The files of a segment, by extension.
const SEGMENT_FILE_KINDS: [&str; 4] = ["log", "index", "timeindex", "txnindex"];

/// Suffix of the cleaner's new segment files before the swap.
pub(crate) const CLEANED_SUFFIX: &str = ".cleaned";
/// The swap manifest: "0\n{first replaced base offset}\n{end of replaced range}\n{count}\n" and
/// one new segment base offset per line.
pub(crate) const SWAP_MANIFEST_FILE: &str = "cleaner-swap";
/// Per-log cleaner checkpoint: the first dirty offset ("0\n{offset}\n"), Kafka's
/// `cleaner-offset-checkpoint` kept per log like the other checkpoints.
pub(crate) const CLEANER_CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";

/// Memory a hash table slot costs: a 16-byte key digest, an 8-byte offset and hashbrown's
/// control byte.
const OFFSET_MAP_SLOT_BYTES: u64 = 25;

/// The cleaner's settings (broker-wide, Kafka's `log.cleaner.*`).
#[derive(Debug, Clone)]
pub struct CleanerConfig {
    /// `log.cleaner.dedupe.buffer.size`: memory of the offset map.
    pub dedupe_buffer_size_bytes: u64,
    /// `log.cleaner.io.max.bytes.per.second`: read plus write rate.
    pub io_max_bytes_per_second: f64,
    /// `log.cleaner.io.buffer.size`: read buffer (grown to one batch when a batch is larger).
    pub io_buffer_size_bytes: usize,
}

impl Default for CleanerConfig {
    fn default() -> Self {
        CleanerConfig {
            dedupe_buffer_size_bytes: 128 << 20,
            io_max_bytes_per_second: f64::MAX,
            io_buffer_size_bytes: 512 << 10,
        }
    }
}

/// Key digest → offset of the latest record with that key (Kafka's `SkimpyOffsetMap`). Keys are
/// stored as 128-bit digests so memory does not depend on key sizes; a collision (odds around
/// 2^-64 for a billion keys) would drop one key's records.
#[derive(Debug)]
pub struct OffsetMap {
    entries: HashMap<[u64; 2], i64>,
    capacity_entries: usize,
}

impl OffsetMap {
    /// A map whose table never outgrows `memory_bytes`: the table is allocated once, at the
    /// largest power-of-two slot count that fits, and holds 7/8 of its slots (hashbrown's load
    /// factor), so it never reallocates. At most `expected_entries` slots are reserved.
    pub fn with_memory(memory_bytes: u64, expected_entries: usize) -> Self {
        let slots_max = (memory_bytes / OFFSET_MAP_SLOT_BYTES).max(16);
        let slots = if slots_max.is_power_of_two() {
            slots_max
        } else {
            slots_max.next_power_of_two() / 2
        };
        let capacity_entries = ((slots / 8) * 7) as usize;
        let reserve = capacity_entries.min(expected_entries.max(16));
        OffsetMap {
            entries: HashMap::with_capacity(reserve),
            capacity_entries,
        }
    }

    pub fn capacity_entries(&self) -> usize {
        self.capacity_entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn digest(key: &[u8]) -> [u64; 2] {
        // Two SipHash passes with different prefixes: 128 bits, no extra dependency.
        let mut first = std::collections::hash_map::DefaultHasher::new();
        0u8.hash(&mut first);
        key.hash(&mut first);
        let mut second = std::collections::hash_map::DefaultHasher::new();
        1u8.hash(&mut second);
        key.hash(&mut second);
        [first.finish(), second.finish()]
    }

    /// Records `offset` as the latest for `key`. False when the map is full and `key` is new.
    pub fn put(&mut self, key: &[u8], offset: i64) -> bool {
        let digest = Self::digest(key);
        if let Some(latest) = self.entries.get_mut(&digest) {
            *latest = (*latest).max(offset);
            return true;
        }
        if self.entries.len() >= self.capacity_entries {
            return false;
        }
        self.entries.insert(digest, offset);
        true
    }

    pub fn get(&self, key: &[u8]) -> Option<i64> {
        self.entries.get(&Self::digest(key)).copied()
    }
}

/// Limits the cleaner's I/O rate (Kafka's `Throttler`): sleeps whenever the bytes so far are
/// ahead of the rate since the start.
#[derive(Debug)]
pub struct Throttler {
    bytes_per_second: f64,
    started: Instant,
    bytes: std::cell::Cell<u64>,
    /// Set at shutdown: the pass stops at its next read and leaves only strays behind.
    cancelled: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl Throttler {
    pub fn new(bytes_per_second: f64) -> Self {
        Throttler {
            bytes_per_second,
            started: Instant::now(),
            bytes: std::cell::Cell::new(0),
            cancelled: None,
        }
    }

    /// A throttler whose pass stops (with an `Interrupted` error) once `cancelled` is set.
    pub fn with_cancel(
        bytes_per_second: f64,
        cancelled: Arc<std::sync::atomic::AtomicBool>,
    ) -> Self {
        Throttler {
            cancelled: Some(cancelled),
            ..Throttler::new(bytes_per_second)
        }
    }

    fn check_cancelled(&self, path: &Path) -> Result<(), StorageError> {
        match &self.cancelled {
            Some(flag) if flag.load(std::sync::atomic::Ordering::Relaxed) => {
                Err(StorageError::Io {
                    operation: "clean",
                    path: path.to_path_buf(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::Interrupted,
                        "log cleaning cancelled",
                    ),
                })
            }
            _ => Ok(()),
        }
    }

    /// Accounts for `bytes` of I/O and sleeps if that puts the cleaner ahead of its rate.
    pub fn maybe_throttle(&self, bytes: u64) {
        let total = self.bytes.get().saturating_add(bytes);
        self.bytes.set(total);
        if !self.bytes_per_second.is_finite() || self.bytes_per_second >= f64::MAX / 2.0 {
            return;
        }
        let due = Duration::from_secs_f64(total as f64 / self.bytes_per_second.max(1.0));
        let elapsed = self.started.elapsed();
        if due > elapsed {
            std::thread::sleep(due - elapsed);
        }
    }
}

/// A sealed segment as the cleaner sees it: its open file and extent, taken under the lock.
#[derive(Debug, Clone)]
pub(crate) struct SegmentRef {
    pub base_offset: i64,
    pub next_offset: i64,
    pub size_bytes: u64,
    pub created_ms: i64,
    pub file: Arc<File>,
    pub path: Arc<PathBuf>,
}

/// A log that needs cleaning, with what the pass needs to run without the log's lock.
#[derive(Debug)]
pub struct LogToClean {
    pub(crate) dir: PathBuf,
    pub(crate) segments: Vec<SegmentRef>,
    pub(crate) first_dirty_offset: i64,
    pub(crate) truncations: u64,
    pub(crate) config: LogConfig,
    /// Aborted transactions overlapping the cleanable segments.
    pub(crate) aborted_txns: Vec<AbortedTxn>,
    /// Per tracked producer: the last offset of its last data batch (if any) and its epoch.
    pub(crate) last_records_of_producers: HashMap<i64, (Option<i64>, i16)>,
    /// Bytes already cleaned (below the first dirty offset) among `segments`.
    pub clean_bytes: u64,
    /// Bytes not yet cleaned among `segments`.
    pub dirty_bytes: u64,
    /// Whether `max.compaction.lag.ms` forces this pass whatever the ratio.
    pub forced_by_max_lag: bool,
}

impl LogToClean {
    /// dirty / (clean + dirty): how much of the cleanable log a pass could shrink.
    pub fn dirty_ratio(&self) -> f64 {
        let total = self.clean_bytes + self.dirty_bytes;
        if total == 0 {
            0.0
        } else {
            self.dirty_bytes as f64 / total as f64
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// What a pass measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CleanerStats {
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_read: u64,
    pub records_removed: u64,
    pub tombstones_removed: u64,
    pub keys_in_map: usize,
    pub segments_replaced: usize,
    pub segments_written: usize,
    pub elapsed: Duration,
}

/// A finished pass, waiting for [`Log::swap_cleaned`](crate::Log::swap_cleaned).
#[derive(Debug)]
pub struct CleanedLog {
    pub(crate) dir: PathBuf,
    /// The segments the new ones replace: base offset and file (to check they are unchanged).
    pub(crate) replaced: Vec<(i64, Arc<File>)>,
    /// Where the replaced range ends (the next offset of its last segment).
    pub(crate) replaced_end_offset: i64,
    pub(crate) new_segments: Vec<LogSegment>,
    /// The next pass starts here: the end of what the offset map covered.
    pub(crate) next_dirty_offset: i64,
    pub(crate) truncations: u64,
    pub stats: CleanerStats,
}

impl CleanedLog {
    /// The manifest [`Log::swap_cleaned`](crate::Log::swap_cleaned) writes for this pass.
    pub(crate) fn swap_manifest(&self) -> SwapManifest {
        SwapManifest {
            first_replaced_offset: self.replaced.first().map_or(0, |r| r.0),
            replaced_end_offset: self.replaced_end_offset,
            new_base_offsets: self.new_segments.iter().map(|s| s.base_offset).collect(),
        }
    }

    /// Removes this pass's output without swapping it in (benchmarks repeat a pass).
    #[doc(hidden)]
    pub fn discard_for_bench(self) {
        self.discard();
    }

    /// Writes only the swap manifest, as a crash right after that step would leave things.
    #[doc(hidden)]
    pub fn write_swap_manifest_for_test(&self) -> Result<(), StorageError> {
        crate::write_atomically(
            &self.dir.join(SWAP_MANIFEST_FILE),
            self.swap_manifest().encode().as_bytes(),
        )
    }

    /// Removes the new files of a pass that will not be swapped in.
    pub(crate) fn discard(self) {
        let prepared = self.dir.join(PREPARED_MANIFEST_FILE);
        let outputs = self.new_segments.iter().flat_map(|segment| {
            [
                segment.log_path(),
                segment.offset_index.path(),
                segment.time_index.path(),
                segment.txn_index.path(),
            ]
        });
        for path in std::iter::once(prepared.as_path()).chain(outputs) {
            if let Err(err) = remove_file_if_exists(path) {
                tracing::warn!(%err, "could not remove cleaner output");
            }
        }
    }
}

/// Runs the unlocked part of a pass: offset map, then the rewrite into `.cleaned` segments.
pub fn clean(
    task: &LogToClean,
    config: &CleanerConfig,
    now_ms: i64,
    throttler: &Throttler,
) -> Result<CleanedLog, StorageError> {
    let started = Instant::now();
    let mut stats = CleanerStats::default();
    let dirty_span: i64 = task
        .segments
        .iter()
        .filter(|s| s.next_offset > task.first_dirty_offset)
        .map(|s| s.next_offset - s.base_offset.max(task.first_dirty_offset))
        .sum();
    let mut map = OffsetMap::with_memory(
        config.dedupe_buffer_size_bytes,
        usize::try_from(dirty_span).unwrap_or(usize::MAX),
    );
    let map_end = build_offset_map(task, config, &mut map, throttler, &mut stats)?;
    // One view of the transactions over the whole rewrite: a transaction's data and its
    // marker may be in different groups.
    let mut txns = TxnCleaning::new(&task.aborted_txns, i64::MIN);
    stats.keys_in_map = map.len();

    // Every segment starting below the map's end is rewritten; later ones wait for a pass
    // whose map covers them.
    let to_rewrite: Vec<&SegmentRef> = task
        .segments
        .iter()
        .filter(|s| s.base_offset < map_end)
        .collect();
    let mut new_segments = Vec::new();
    let result = (|| {
        for group in group_segments(&to_rewrite, task.config.segment_bytes) {
            let segment = rewrite_group(
                task, config, &group, &map, &mut txns, map_end, now_ms, throttler, &mut stats,
            )?;
            new_segments.push(segment);
        }
        Ok::<(), StorageError>(())
    })();
    let replaced: Vec<(i64, Arc<File>)> = to_rewrite
        .iter()
        .map(|s| (s.base_offset, Arc::clone(&s.file)))
        .collect();
    let cleaned = CleanedLog {
        dir: task.dir.clone(),
        replaced,
        replaced_end_offset: to_rewrite.last().map_or(map_end, |s| s.next_offset),
        new_segments,
        next_dirty_offset: map_end,
        truncations: task.truncations,
        stats,
    };
    if let Err(err) = result {
        cleaned.discard();
        return Err(err);
    }
    // The manifest's bytes are fsynced here, outside the partition lock; the swap only renames
    // the file into place (one directory fsync under the lock instead of two fsyncs).
    if let Err(err) = write_prepared_manifest(&cleaned) {
        cleaned.discard();
        return Err(err);
    }
    let mut cleaned = cleaned;
    cleaned.stats.segments_replaced = cleaned.replaced.len();
    cleaned.stats.segments_written = cleaned.new_segments.len();
    cleaned.stats.elapsed = started.elapsed();
    Ok(cleaned)
}

/// Fills `map` from the dirty section, segment by segment, until it is done or the map is
/// full. Returns the offset the map covers up to (exclusive).
fn build_offset_map(
    task: &LogToClean,
    config: &CleanerConfig,
    map: &mut OffsetMap,
    throttler: &Throttler,
    stats: &mut CleanerStats,
) -> Result<i64, StorageError> {
    let first_dirty = task.first_dirty_offset;
    let mut map_end = first_dirty;
    let mut txns = TxnCleaning::new(&task.aborted_txns, first_dirty);
    for segment in task.segments.iter().filter(|s| s.next_offset > first_dirty) {
        let mut full_at = None;
        stats.bytes_read += for_each_batch(segment, config, throttler, |header, batch| {
            if header.last_offset() < first_dirty {
                return Ok(true);
            }
            if header.is_control() {
                txns.on_control_batch_read(header, control_record(batch));
                return Ok(true);
            }
            if txns.on_batch_read(header) {
                return Ok(true); // aborted: its keys must not shadow committed records
            }
            let stopped = records::find_record(batch, |record| {
                if record.offset < first_dirty {
                    return std::ops::ControlFlow::Continue(());
                }
                match record.key {
                    Some(key) if !map.put(key, record.offset) => {
                        std::ops::ControlFlow::Break(record.offset)
                    }
                    _ => std::ops::ControlFlow::Continue(()),
                }
            })
            .map_err(|source| corrupt(segment, source))?;
            full_at = stopped;
            Ok(stopped.is_none())
        })?;
        if let Some(offset) = full_at {
            // The first key that did not fit: everything before it is mapped.
            return Ok(offset.max(first_dirty));
        }
        map_end = segment.next_offset;
    }
    Ok(map_end)
}

/// Consecutive segments whose bytes fit one new segment and whose offsets fit its index
/// (Kafka's `groupSegmentsBySize`).
fn group_segments<'a>(
    segments: &[&'a SegmentRef],
    segment_bytes_max: u64,
) -> Vec<Vec<&'a SegmentRef>> {
    let size_max = segment_bytes_max.min(i32::MAX as u64);
    let mut groups: Vec<Vec<&SegmentRef>> = Vec::new();
    for segment in segments {
        if let Some(group) = groups.last_mut() {
            let size: u64 = group.iter().map(|s| s.size_bytes).sum();
            let span = segment.next_offset - group[0].base_offset;
            if size + segment.size_bytes <= size_max && span <= i64::from(u32::MAX) {
                group.push(segment);
                continue;
            }
        }
        groups.push(vec![segment]);
    }
    groups
}

/// Copies one group of old segments into a new `.cleaned` segment, keeping what survives.
#[allow(clippy::too_many_arguments)]
fn rewrite_group(
    task: &LogToClean,
    config: &CleanerConfig,
    group: &[&SegmentRef],
    map: &OffsetMap,
    txns: &mut TxnCleaning,
    map_end: i64,
    now_ms: i64,
    throttler: &Throttler,
    stats: &mut CleanerStats,
) -> Result<LogSegment, StorageError> {
    let base_offset = group[0].base_offset;
    remove_stale_output(&task.dir, base_offset)?;
    let mut output = LogSegment::open_with_suffix(
        &task.dir,
        base_offset,
        CLEANED_SUFFIX,
        task.config.index_interval_bytes,
        group[0].created_ms,
    )?;
    let mut pending = PendingWrites::default();
    let delete_retention_ms = task.config.delete_retention_ms;
    for segment in group {
        let mut bytes_written = 0u64;
        let bytes_read = for_each_batch(segment, config, throttler, |header, batch| {
            let records_count = u64::try_from(header.records_count).unwrap_or(0);
            stats.records_read += records_count;
            let last_record = (header.producer_id >= 0)
                .then(|| task.last_records_of_producers.get(&header.producer_id))
                .flatten();
            if header.is_control() {
                let (removable, index_entry) =
                    txns.on_control_batch_read(header, control_record(batch));
                if let Some(entry) = index_entry {
                    output.txn_index.append(entry)?;
                }
                // The marker carrying a producer's latest epoch stays (fencing after replay).
                let producers_last = last_record.is_some_and(|(last_data_offset, epoch)| {
                    last_data_offset.is_none() && *epoch == header.producer_epoch
                });
                let expired = now_ms.saturating_sub(header.max_timestamp) > delete_retention_ms;
                if removable && expired && !producers_last {
                    stats.records_removed += records_count;
                } else {
                    pending.push(batch.to_vec(), *header);
                }
                return Ok(true);
            }
            let aborted = txns.on_batch_read(header);
            if last_record.is_some_and(|(last_data_offset, _)| {
                *last_data_offset == Some(header.last_offset())
            }) {
                // A producer's last batch keeps its sequence numbers in the log.
                pending.push(batch.to_vec(), *header);
                return Ok(true);
            }
            if aborted {
                stats.records_removed += records_count;
                return Ok(true);
            }
            let tombstone_expired =
                now_ms.saturating_sub(header.max_timestamp) > delete_retention_ms;
            let mut tombstones_removed = 0u64;
            let filtered = filter_batch(batch, |record| {
                let Some(key) = record.key else {
                    return false; // Kafka's cleaner drops keyless records too.
                };
                if map.get(key).is_some_and(|latest| record.offset < latest) {
                    return false;
                }
                let removable_tombstone =
                    record.value.is_none() && record.offset < map_end && tombstone_expired;
                tombstones_removed += u64::from(removable_tombstone);
                !removable_tombstone
            })
            .map_err(|source| corrupt(segment, source))?;
            stats.tombstones_removed += tombstones_removed;
            match filtered {
                FilteredBatch::Unchanged => pending.push(batch.to_vec(), *header),
                FilteredBatch::Removed => {
                    stats.records_removed += u64::try_from(header.records_count).unwrap_or(0);
                }
                FilteredBatch::Rebuilt(rebuilt) => {
                    let new_header = RecordBatchHeader::parse(&rebuilt)
                        .map_err(|source| corrupt(segment, source))?;
                    stats.records_removed +=
                        u64::try_from(header.records_count - new_header.records_count).unwrap_or(0);
                    pending.push(rebuilt, new_header);
                }
            }
            if pending.bytes >= config.io_buffer_size_bytes {
                let written = pending.flush_into(&mut output)?;
                bytes_written += written;
                throttler.maybe_throttle(written);
            }
            Ok(true)
        })?;
        stats.bytes_read += bytes_read;
        stats.bytes_written += bytes_written;
    }
    stats.bytes_written += pending.flush_into(&mut output)?;
    // Always a transaction index file, even empty: the swap renames it over a same-named old
    // segment's index, which must not survive with entries of data that is gone.
    output.txn_index.create_file()?;
    output.persist(true)?;
    Ok(output)
}

/// Batches waiting to be appended to the new segment with one write.
#[derive(Default)]
struct PendingWrites {
    batches: Vec<(Vec<u8>, RecordBatchHeader)>,
    bytes: usize,
}

impl PendingWrites {
    fn push(&mut self, batch: Vec<u8>, header: RecordBatchHeader) {
        self.bytes += batch.len();
        self.batches.push((batch, header));
    }

    fn flush_into(&mut self, output: &mut LogSegment) -> Result<u64, StorageError> {
        if self.batches.is_empty() {
            return Ok(0);
        }
        let mut parts: Vec<&[u8]> = Vec::with_capacity(self.batches.len());
        let mut headers = Vec::with_capacity(self.batches.len());
        let mut position = 0u64;
        for (batch, header) in &self.batches {
            parts.push(batch);
            headers.push((*header, position));
            position += batch.len() as u64;
        }
        output.append(&parts, &headers)?;
        self.batches.clear();
        self.bytes = 0;
        Ok(position)
    }
}

/// The control record of a control batch; an unreadable one counts as an unknown type (the
/// batch is then kept).
fn control_record(batch: &[u8]) -> Option<ControlRecord> {
    match control::read_control_record(batch) {
        Ok(record) => record,
        Err(error) => {
            tracing::warn!(%error, "unreadable control batch kept by the cleaner");
            Some(ControlRecord::Other { control_type: -1 })
        }
    }
}

/// What the cleaner knows of transactions while it walks the log in offset order (Kafka's
/// `CleanedTransactionMetadata`).
#[derive(Debug)]
struct TxnCleaning {
    /// Aborted transactions not reached yet, by first offset.
    aborted: VecDeque<AbortedTxn>,
    /// Aborted transactions reached but whose marker is still ahead, by producer id, with
    /// whether any of their batches was seen in this pass.
    ongoing_aborted: HashMap<i64, (AbortedTxn, bool)>,
    /// Producers whose committed (or not yet known aborted) transaction had batches in this
    /// pass, until their marker.
    ongoing_committed: HashSet<i64>,
}

impl TxnCleaning {
    /// Tracks the aborted transactions whose marker is at or after `start_offset`.
    fn new(aborted: &[AbortedTxn], start_offset: i64) -> Self {
        let mut aborted: Vec<AbortedTxn> = aborted
            .iter()
            .filter(|txn| txn.last_offset >= start_offset)
            .copied()
            .collect();
        aborted.sort_by_key(|txn| txn.first_offset);
        TxnCleaning {
            aborted: aborted.into(),
            ongoing_aborted: HashMap::new(),
            ongoing_committed: HashSet::new(),
        }
    }

    fn consume_up_to(&mut self, offset: i64) {
        while self
            .aborted
            .front()
            .is_some_and(|txn| txn.first_offset <= offset)
        {
            if let Some(txn) = self.aborted.pop_front() {
                self.ongoing_aborted
                    .entry(txn.producer_id)
                    .or_insert((txn, false));
            }
        }
    }

    /// A data batch: true if it belongs to an aborted transaction.
    fn on_batch_read(&mut self, header: &RecordBatchHeader) -> bool {
        self.consume_up_to(header.last_offset());
        if !header.is_transactional() {
            return false;
        }
        match self.ongoing_aborted.get_mut(&header.producer_id) {
            Some((_, seen)) => {
                *seen = true;
                true
            }
            None => {
                self.ongoing_committed.insert(header.producer_id);
                false
            }
        }
    }

    /// A control batch: whether it may be removed (its transaction has no data left in this
    /// pass), and the transaction index entry to keep for an ABORT whose data was seen.
    fn on_control_batch_read(
        &mut self,
        header: &RecordBatchHeader,
        record: Option<ControlRecord>,
    ) -> (bool, Option<AbortedTxn>) {
        self.consume_up_to(header.last_offset());
        match record {
            Some(ControlRecord::EndTxn(marker)) if !marker.commit => {
                match self.ongoing_aborted.remove(&header.producer_id) {
                    Some((txn, true)) => (false, Some(txn)),
                    _ => (true, None),
                }
            }
            Some(ControlRecord::EndTxn(_)) => {
                (!self.ongoing_committed.remove(&header.producer_id), None)
            }
            // Kafka: an empty control batch was cleaned already.
            None => (true, None),
            Some(ControlRecord::Other { .. }) => (false, None),
        }
    }
}

fn corrupt(segment: &SegmentRef, source: RecordError) -> StorageError {
    StorageError::CorruptLog {
        path: segment.path.to_path_buf(),
        position: 0,
        source,
    }
}

/// Calls `visit(header, whole batch)` on every batch of a sealed segment in order, reading
/// `io_buffer_size_bytes` at a time, until it returns false.
fn for_each_batch(
    segment: &SegmentRef,
    config: &CleanerConfig,
    throttler: &Throttler,
    mut visit: impl FnMut(&RecordBatchHeader, &[u8]) -> Result<bool, StorageError>,
) -> Result<u64, StorageError> {
    let mut bytes_read = 0u64;
    let mut buffer = vec![
        0u8;
        config
            .io_buffer_size_bytes
            .max(records::RECORD_BATCH_HEADER_BYTES)
    ];
    let mut position = 0u64;
    while position < segment.size_bytes {
        throttler.check_cancelled(&segment.path)?;
        let want = (segment.size_bytes - position).min(buffer.len() as u64) as usize;
        segment
            .file
            .read_exact_at(&mut buffer[..want], position)
            .map_err(io_error("read", segment.path.as_path()))?;
        bytes_read += want as u64;
        throttler.maybe_throttle(want as u64);
        let mut consumed = 0usize;
        for item in records::BatchIter::new(&buffer[..want]) {
            match item {
                Ok((header, range)) => {
                    consumed = range.end;
                    if !visit(&header, &buffer[range])? {
                        return Ok(bytes_read);
                    }
                }
                Err(err) if err.is_truncated() && position + (want as u64) < segment.size_bytes => {
                    break
                }
                Err(source) => {
                    return Err(StorageError::CorruptLog {
                        path: segment.path.to_path_buf(),
                        position: position + consumed as u64,
                        source,
                    })
                }
            }
        }
        if consumed == 0 {
            // One batch is larger than the buffer: grow it to that batch (bounded by the
            // segment, which is bounded by segment.bytes).
            let header = RecordBatchHeader::parse(&buffer[..want]).map_err(|source| {
                StorageError::CorruptLog {
                    path: segment.path.to_path_buf(),
                    position,
                    source,
                }
            })?;
            let needed = header.total_size_bytes();
            if needed as u64 > segment.size_bytes - position {
                return Err(StorageError::CorruptLog {
                    path: segment.path.to_path_buf(),
                    position,
                    source: RecordError::Truncated {
                        needed_bytes: needed,
                        available_bytes: (segment.size_bytes - position) as usize,
                    },
                });
            }
            buffer.resize(needed, 0);
            continue;
        }
        position += consumed as u64;
    }
    Ok(bytes_read)
}

/// Deletes `.cleaned` files left for `base_offset` by an earlier pass that failed.
fn remove_stale_output(dir: &Path, base_offset: i64) -> Result<(), StorageError> {
    for kind in SEGMENT_FILE_KINDS {
        let path = dir.join(crate::segment::segment_file_name(base_offset, kind) + CLEANED_SUFFIX);
        remove_file_if_exists(&path)?;
    }
    Ok(())
}

/// The manifest of a finished pass, written and fsynced under a temporary name.
pub(crate) const PREPARED_MANIFEST_FILE: &str = "cleaner-swap.prepared";

fn write_prepared_manifest(cleaned: &CleanedLog) -> Result<(), StorageError> {
    use std::io::Write;
    let path = cleaned.dir.join(PREPARED_MANIFEST_FILE);
    let mut file = File::create(&path).map_err(io_error("create", &path))?;
    file.write_all(cleaned.swap_manifest().encode().as_bytes())
        .map_err(io_error("write", &path))?;
    file.sync_all().map_err(io_error("fsync", &path))
}

/// The swap manifest's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SwapManifest {
    pub first_replaced_offset: i64,
    pub replaced_end_offset: i64,
    pub new_base_offsets: Vec<i64>,
}

impl SwapManifest {
    pub fn encode(&self) -> String {
        let mut text = format!(
            "0\n{}\n{}\n{}\n",
            self.first_replaced_offset,
            self.replaced_end_offset,
            self.new_base_offsets.len()
        );
        for base in &self.new_base_offsets {
            text.push_str(&format!("{base}\n"));
        }
        text
    }

    pub fn decode(text: &str) -> Option<SwapManifest> {
        let mut lines = text.lines();
        (lines.next()? == "0").then_some(())?;
        let first_replaced_offset = lines.next()?.parse().ok()?;
        let replaced_end_offset = lines.next()?.parse().ok()?;
        let count: usize = lines.next()?.parse().ok()?;
        let new_base_offsets: Vec<i64> = lines
            .take(count)
            .map(|l| l.parse().ok())
            .collect::<Option<_>>()?;
        (new_base_offsets.len() == count).then_some(SwapManifest {
            first_replaced_offset,
            replaced_end_offset,
            new_base_offsets,
        })
    }

    /// Carries the swap out; idempotent, so a crash at any point is completed by running it
    /// again. Old segments in the replaced range that are not replaced by a same-named new one
    /// are deleted; every `.cleaned` file is renamed into place (replacing a same-named old
    /// one atomically); then the manifest goes.
    pub fn complete(&self, dir: &Path) -> Result<(), StorageError> {
        for entry in std::fs::read_dir(dir).map_err(io_error("list", dir))? {
            let path = entry.map_err(io_error("list", dir))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some((stem, extension)) = name.split_once('.') else {
                continue;
            };
            if !SEGMENT_FILE_KINDS.contains(&extension) || stem.len() != 20 {
                continue;
            }
            let Ok(base) = stem.parse::<i64>() else {
                continue;
            };
            let replaced = base >= self.first_replaced_offset && base < self.replaced_end_offset;
            if replaced && !self.new_base_offsets.contains(&base) {
                std::fs::remove_file(&path).map_err(io_error("remove", &path))?;
            }
        }
        for base in &self.new_base_offsets {
            for kind in SEGMENT_FILE_KINDS {
                let final_path = dir.join(crate::segment::segment_file_name(*base, kind));
                let cleaned_path =
                    PathBuf::from(format!("{}{CLEANED_SUFFIX}", final_path.display()));
                match std::fs::rename(&cleaned_path, &final_path) {
                    Ok(()) => {}
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                    Err(err) => return Err(io_error("rename", &cleaned_path)(err)),
                }
            }
        }
        crate::sync_dir(dir)?;
        remove_manifest(dir)
    }
}

/// Removes the manifest of a completed swap. Not fsynced: a manifest that comes back after a
/// crash is harmless, because completing it again finds every segment in its range already
/// named in it (later passes only name new segments after existing ones, rolls start above
/// the range).
pub(crate) fn remove_manifest(dir: &Path) -> Result<(), StorageError> {
    remove_file_if_exists(&dir.join(SWAP_MANIFEST_FILE))
}

/// At log open, before the directory is scanned: finishes a swap a crash interrupted.
pub(crate) fn complete_interrupted_swap(dir: &Path) -> Result<(), StorageError> {
    let path = dir.join(SWAP_MANIFEST_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(io_error("read", &path)(err)),
    };
    // Written atomically (temp file, fsync, rename), so it is whole or absent.
    let manifest = SwapManifest::decode(&text).ok_or_else(|| StorageError::CorruptFile {
        path: path.clone(),
        reason: "unreadable cleaner swap manifest".into(),
    })?;
    tracing::info!(dir = %dir.display(), first_offset = manifest.first_replaced_offset,
        end_offset = manifest.replaced_end_offset, "completing a log cleaner swap interrupted by a crash");
    manifest.complete(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_map_is_bounded_and_keeps_the_latest_offset() {
        let mut map = OffsetMap::with_memory(16 * 25 * 8, 1_000_000);
        let capacity = map.capacity_entries();
        assert!(capacity as u64 * OFFSET_MAP_SLOT_BYTES <= 16 * 25 * 8);
        for i in 0..capacity {
            assert!(map.put(format!("key-{i}").as_bytes(), i as i64));
        }
        assert!(!map.put(b"one too many", 7));
        assert!(map.put(b"key-3", 100), "an existing key is always updated");
        assert_eq!(map.get(b"key-3"), Some(100));
        assert!(map.put(b"key-3", 50));
        assert_eq!(map.get(b"key-3"), Some(100), "the latest offset wins");
        assert_eq!(map.get(b"absent"), None);
    }

    #[test]
    fn swap_manifest_round_trips() {
        let manifest = SwapManifest {
            first_replaced_offset: 0,
            replaced_end_offset: 500,
            new_base_offsets: vec![0, 200],
        };
        assert_eq!(SwapManifest::decode(&manifest.encode()), Some(manifest));
        assert_eq!(SwapManifest::decode("0\n1\n2\n3\n4\n"), None);
    }
}
