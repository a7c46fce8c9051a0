//! The locked steps of a log cleaner pass (see [`crate::cleaner`]): choosing what to clean and
//! swapping the cleaned segments in.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::{delete_segment_files, Log};
use crate::cleaner::{
    remove_manifest, CleanedLog, CleanerStats, LogToClean, SegmentRef, CLEANED_SUFFIX,
    CLEANER_CHECKPOINT_FILE, PREPARED_MANIFEST_FILE, SWAP_MANIFEST_FILE,
};
use crate::StorageError;

/// The tail of a swap that needs no lock: until it runs, the committed manifest makes the next
/// start redo the (idempotent) swap, so it may run after the log's lock is released.
#[derive(Debug)]
#[must_use = "finish() makes the swap durable and removes its manifest"]
pub struct SwapCommitted {
    dir: std::path::PathBuf,
}

impl SwapCommitted {
    pub fn finish(self) -> Result<(), StorageError> {
        crate::sync_dir(&self.dir)?;
        remove_manifest(&self.dir)
    }
}

impl Log {
    /// The log cleaner's first dirty offset.
    pub fn cleaner_checkpoint(&self) -> i64 {
        self.cleaner_checkpoint
    }

    /// What a cleaner pass would work on, if this log is compacted and due: its uncleaned part
    /// reaches `min.cleanable.dirty.ratio`, or holds a record older than
    /// `max.compaction.lag.ms`. Only sealed segments entirely below the last stable offset
    /// (the high watermark, or the first offset of an unfinished transaction, whose fate
    /// decides which records survive) and older than `min.compaction.lag.ms` (by their newest
    /// record) are cleanable.
    pub fn log_to_clean(&self, now_ms: i64) -> Result<Option<LogToClean>, StorageError> {
        if !self.config.compact {
            return Ok(None);
        }
        let first_dirty_offset = self.cleaner_checkpoint.max(self.log_start_offset);
        let min_lag_ms = self.config.min_compaction_lag_ms;
        let sealed = &self.segments[..self.segments.len() - 1];
        let first_uncleanable_offset = self.last_stable_offset();
        let cleanable: Vec<SegmentRef> = sealed
            .iter()
            .take_while(|s| s.next_offset <= first_uncleanable_offset)
            .take_while(|s| {
                min_lag_ms <= 0
                    || s.max_timestamp_so_far < 0
                    || now_ms.saturating_sub(s.max_timestamp_so_far) >= min_lag_ms
            })
            .map(|s| SegmentRef {
                base_offset: s.base_offset,
                next_offset: s.next_offset,
                size_bytes: s.size_bytes,
                created_ms: s.created_ms,
                file: s.shared_file(),
                path: Arc::new(s.log_path().to_path_buf()),
            })
            .collect();
        let (mut clean_bytes, mut dirty_bytes) = (0u64, 0u64);
        let mut first_dirty_segment = None;
        for segment in &cleanable {
            if segment.next_offset <= first_dirty_offset {
                clean_bytes += segment.size_bytes;
            } else {
                dirty_bytes += segment.size_bytes;
                first_dirty_segment.get_or_insert(segment);
            }
        }
        let Some(first_dirty_segment) = first_dirty_segment else {
            return Ok(None);
        };
        if dirty_bytes == 0 {
            return Ok(None);
        }
        // Kafka's max.compaction.lag.ms looks at the earliest timestamp of the dirty section.
        let max_lag_ms = self.config.max_compaction_lag_ms;
        let forced_by_max_lag = max_lag_ms < i64::MAX && {
            let segment = &self.segments[self.segment_index_for(first_dirty_segment.base_offset)];
            let earliest_ms = match segment.read_header_at(0)? {
                Some(header) if header.base_timestamp >= 0 => header.base_timestamp,
                _ => segment.created_ms,
            };
            now_ms.saturating_sub(earliest_ms) > max_lag_ms
        };
        let cleanable_start = cleanable.first().map_or(0, |s| s.base_offset);
        let cleanable_end = cleanable.last().map_or(0, |s| s.next_offset);
        let mut task = LogToClean {
            dir: self.dir.clone(),
            aborted_txns: Vec::new(),
            last_records_of_producers: HashMap::new(),
            segments: cleanable,
            first_dirty_offset,
            truncations: self.truncations,
            config: self.config.clone(),
            clean_bytes,
            dirty_bytes,
            forced_by_max_lag,
        };
        if !forced_by_max_lag && task.dirty_ratio() < self.config.min_cleanable_dirty_ratio {
            return Ok(None);
        }
        // Only for a pass that will run: the broker asks every compacted log often.
        task.aborted_txns = self.collect_aborted_transactions(cleanable_start, cleanable_end);
        task.last_records_of_producers = self.producer_state.last_records();
        Ok(Some(task))
    }

    /// Swaps a finished pass in, unless the log changed under it (retention deleted or a
    /// truncation rewrote one of the cleaned segments): then the pass is dropped and `None`
    /// returned. See [`crate::cleaner`] for the crash-safe order.
    ///
    /// The returned [`SwapCommitted`] must then be finished, preferably after releasing the
    /// log's lock: it makes the renames durable and removes the manifest.
    pub fn swap_cleaned(
        &mut self,
        cleaned: CleanedLog,
    ) -> Result<Option<(CleanerStats, SwapCommitted)>, StorageError> {
        let Some(start) = self.replaced_range_start(&cleaned) else {
            tracing::info!(dir = %self.dir.display(), "log changed during cleaning; dropping the pass");
            cleaned.discard();
            return Ok(None);
        };
        let manifest = cleaned.swap_manifest();
        let CleanedLog {
            dir,
            replaced,
            mut new_segments,
            next_dirty_offset,
            stats,
            ..
        } = cleaned;
        debug_assert_eq!(dir, self.dir);
        // From here on a crash completes the swap at the next start (the manifest's bytes were
        // fsynced by the pass; renaming it into place and fsyncing the directory commits it).
        let manifest_path = self.dir.join(SWAP_MANIFEST_FILE);
        let prepared_path = self.dir.join(PREPARED_MANIFEST_FILE);
        std::fs::rename(&prepared_path, &manifest_path)
            .map_err(crate::io_error("rename", &prepared_path))?;
        crate::sync_dir(&self.dir)?;
        let new_bases: HashSet<i64> = manifest.new_base_offsets.iter().copied().collect();
        let end = start + replaced.len();
        // The in-memory list changes only once every file is in place: if a step fails, the
        // old segments stay (their open files still read) and the next start completes the swap.
        for segment in &self.segments[start..end] {
            // A same-named new segment replaces the old files by rename below.
            if !new_bases.contains(&segment.base_offset) {
                delete_segment_files(segment)?;
            }
        }
        for segment in &mut new_segments {
            segment.change_file_suffix(CLEANED_SUFFIX, "")?;
        }
        self.segments.splice(start..end, new_segments);
        self.cleaner_checkpoint = next_dirty_offset;
        // Losing this write only means cleaning the same section again.
        crate::write_replacing(
            &self.dir.join(CLEANER_CHECKPOINT_FILE),
            format!("0\n{next_dirty_offset}\n").as_bytes(),
            false,
        )?;
        Ok(Some((
            stats,
            SwapCommitted {
                dir: self.dir.clone(),
            },
        )))
    }

    /// Where the cleaned segments sit in the log now, if they are all still there, unchanged
    /// and sealed.
    fn replaced_range_start(&self, cleaned: &CleanedLog) -> Option<usize> {
        if cleaned.truncations != self.truncations || cleaned.replaced.is_empty() {
            return None;
        }
        let first = cleaned.replaced[0].0;
        let start = self.segments.iter().position(|s| s.base_offset == first)?;
        let end = start + cleaned.replaced.len();
        if end >= self.segments.len() {
            return None; // would include the active segment
        }
        let unchanged = self.segments[start..end].iter().zip(&cleaned.replaced).all(
            |(segment, (base, file))| {
                segment.base_offset == *base && Arc::ptr_eq(&segment.shared_file(), file)
            },
        );
        unchanged.then_some(start)
    }
}
