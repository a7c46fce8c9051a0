//! `LogSegment`: one `.log` file plus its `.index` and `.timeindex`.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fjord_protocol::records::{self, RecordBatchHeader, RECORD_BATCH_HEADER_BYTES};

use crate::file_records::FileRecords;
use crate::index::{IndexFile, OffsetEntry, TimeEntry};
use crate::txn_index::TransactionIndex;
use crate::{io_error, StorageError};

/// Kafka's `RecordBatch.NO_TIMESTAMP`.
pub(crate) const NO_TIMESTAMP: i64 = -1;

pub(crate) fn segment_file_name(base_offset: i64, suffix: &str) -> String {
    debug_assert!(base_offset >= 0);
    format!("{base_offset:020}.{suffix}")
}

#[derive(Debug)]
pub(crate) struct LogSegment {
    pub base_offset: i64,
    log_path: Arc<PathBuf>,
    /// Shared with the `FileRecords` reads hand out, so a range stays readable while it is
    /// being sent even if the segment is deleted meanwhile.
    file: Arc<File>,
    pub size_bytes: u64,
    /// Offset after the last batch in this segment (== base_offset when empty).
    pub next_offset: i64,
    pub offset_index: IndexFile<OffsetEntry>,
    pub time_index: IndexFile<TimeEntry>,
    /// Aborted transactions whose markers are in this segment.
    pub txn_index: TransactionIndex,
    bytes_since_last_index_entry: u64,
    index_interval_bytes: u64,
    pub max_timestamp_so_far: i64,
    /// Last offset of the first batch that reached `max_timestamp_so_far`.
    pub offset_of_max_timestamp_so_far: i64,
    pub created_ms: i64,
}

/// What a scan of a segment found.
pub(crate) struct ScanOutcome {
    /// Bytes cut off the end because they were torn or corrupt.
    pub truncated_bytes: u64,
}

impl LogSegment {
    /// Opens (creating if needed) the segment files without loading indexes; the caller then
    /// either loads or rebuilds them.
    pub fn open(
        dir: &Path,
        base_offset: i64,
        index_interval_bytes: u64,
        now_ms: i64,
    ) -> Result<Self, StorageError> {
        Self::open_with_suffix(dir, base_offset, "", index_interval_bytes, now_ms)
    }

    /// Like [`LogSegment::open`] for files named with an extra suffix (`.cleaned`: the log
    /// cleaner's output before the swap).
    pub fn open_with_suffix(
        dir: &Path,
        base_offset: i64,
        suffix: &str,
        index_interval_bytes: u64,
        now_ms: i64,
    ) -> Result<Self, StorageError> {
        let name = |kind: &str| dir.join(segment_file_name(base_offset, kind) + suffix);
        let log_path = name("log");
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(&log_path)
            .map_err(io_error("open", &log_path))?;
        let size_bytes = file.metadata().map_err(io_error("stat", &log_path))?.len();
        Ok(LogSegment {
            base_offset,
            file: Arc::new(file),
            size_bytes,
            next_offset: base_offset,
            offset_index: IndexFile::new_empty(name("index")),
            time_index: IndexFile::new_empty(name("timeindex")),
            txn_index: TransactionIndex::new_empty(name("txnindex")),
            log_path: Arc::new(log_path),
            bytes_since_last_index_entry: 0,
            index_interval_bytes,
            max_timestamp_so_far: NO_TIMESTAMP,
            offset_of_max_timestamp_so_far: base_offset,
            created_ms: now_ms,
        })
    }

    /// Renames the segment's four files from `old_suffix` to `new_suffix` (Kafka's
    /// `LogSegment.changeFileSuffixes`). Open handles follow the rename.
    pub fn change_file_suffix(
        &mut self,
        old_suffix: &str,
        new_suffix: &str,
    ) -> Result<(), StorageError> {
        // A missing index file is fine (indexes are rebuilt when missing); the log is not.
        let renamed = |path: &Path, required: bool| -> Result<PathBuf, StorageError> {
            let name = path.to_string_lossy();
            let stem = name
                .strip_suffix(old_suffix)
                .ok_or_else(|| StorageError::CorruptFile {
                    path: path.to_path_buf(),
                    reason: format!("expected the suffix {old_suffix:?}"),
                })?;
            let new_path = PathBuf::from(format!("{stem}{new_suffix}"));
            match std::fs::rename(path, &new_path) {
                Ok(()) => Ok(new_path),
                Err(err) if !required && err.kind() == std::io::ErrorKind::NotFound => Ok(new_path),
                Err(err) => Err(io_error("rename", path)(err)),
            }
        };
        let log_path = renamed(&self.log_path, true)?;
        self.log_path = Arc::new(log_path);
        let index_path = renamed(self.offset_index.path(), false)?;
        self.offset_index.set_path(index_path);
        let time_index_path = renamed(self.time_index.path(), false)?;
        self.time_index.set_path(time_index_path);
        let txn_index_path = renamed(self.txn_index.path(), false)?;
        self.txn_index.set_path(txn_index_path);
        Ok(())
    }

    /// The segment's file handle, for fsync outside the log's lock.
    pub fn shared_file(&self) -> Arc<File> {
        Arc::clone(&self.file)
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub fn is_empty(&self) -> bool {
        self.size_bytes == 0
    }

    pub fn relative(&self, offset: i64) -> u64 {
        debug_assert!(offset >= self.base_offset);
        (offset - self.base_offset) as u64
    }

    /// Whether `last_offset` can still be stored as a u32 relative offset in this segment.
    pub fn can_hold_offset(&self, last_offset: i64) -> bool {
        last_offset >= self.base_offset && self.relative(last_offset) <= u64::from(u32::MAX)
    }

    /// Tries the on-disk indexes; on success sets the in-memory state from them plus a header
    /// scan of the bytes after the last index entry. Returns false if they must be rebuilt.
    pub fn load_indexes(&mut self) -> Result<bool, StorageError> {
        let Some(offset_index) = IndexFile::<OffsetEntry>::load(self.offset_index.path().into())?
        else {
            return Ok(false);
        };
        let Some(time_index) = IndexFile::<TimeEntry>::load(self.time_index.path().into())? else {
            return Ok(false);
        };
        if !offset_index.is_plausible(self.size_bytes) || !time_index.is_plausible() {
            return Ok(false);
        }
        let start = offset_index
            .entries
            .last()
            .map_or(0, |e| u64::from(e.position));
        self.offset_index = offset_index;
        self.time_index = time_index;
        if let Some(last) = self.time_index.entries.last() {
            self.max_timestamp_so_far = last.timestamp;
            self.offset_of_max_timestamp_so_far =
                self.base_offset + i64::from(last.relative_offset);
        }
        // Walk the batches after the last index entry to find the next offset.
        let mut position = start;
        self.next_offset = self.base_offset;
        self.bytes_since_last_index_entry = 0;
        while position < self.size_bytes {
            match self.read_header_at(position) {
                // A corrupt header may claim a negative offset range: rebuild, never trust it.
                Ok(Some(header))
                    if header.base_offset >= self.next_offset && header.last_offset_delta >= 0 =>
                {
                    self.next_offset = header.next_offset();
                    self.track_max_timestamp(&header);
                    position += header.total_size_bytes() as u64;
                    self.bytes_since_last_index_entry += header.total_size_bytes() as u64;
                }
                _ => return Ok(false),
            }
        }
        // Entries naming offsets the log does not hold mean the index is stale.
        let next_relative = self.relative(self.next_offset);
        let beyond = |rel: Option<u32>| rel.is_some_and(|r| u64::from(r) >= next_relative);
        Ok(
            !beyond(self.offset_index.entries.last().map(|e| e.relative_offset))
                && !beyond(self.time_index.entries.last().map(|e| e.relative_offset)),
        )
    }

    /// Rescans the whole segment, rebuilding indexes and in-memory state. With `verify_crc`
    /// (crash recovery) every batch's CRC is checked; the segment is truncated at the first
    /// batch that is torn, corrupt or out of order.
    pub fn recover(&mut self, verify_crc: bool) -> Result<ScanOutcome, StorageError> {
        self.offset_index.clear();
        self.time_index.clear();
        self.bytes_since_last_index_entry = 0;
        self.max_timestamp_so_far = NO_TIMESTAMP;
        self.offset_of_max_timestamp_so_far = self.base_offset;
        self.next_offset = self.base_offset;
        let mut position = 0u64;
        let mut batch = Vec::new();
        while position < self.size_bytes {
            let Some(header) = self.scan_batch_at(position, verify_crc, &mut batch)? else {
                break;
            };
            self.index_batch(&header, position);
            position += header.total_size_bytes() as u64;
        }
        let truncated_bytes = self.size_bytes - position;
        if truncated_bytes > 0 {
            tracing::warn!(
                path = %self.log_path.display(),
                position,
                truncated_bytes,
                "truncating torn or corrupt tail of log segment"
            );
            self.truncate_file(position)?;
        }
        Ok(ScanOutcome { truncated_bytes })
    }

    /// One step of recovery: the batch at `position` if it is complete, in order and (when
    /// asked) passes its CRC; `None` where the valid prefix ends.
    fn scan_batch_at(
        &self,
        position: u64,
        verify_crc: bool,
        batch: &mut Vec<u8>,
    ) -> Result<Option<RecordBatchHeader>, StorageError> {
        let header = match self.read_header_at(position) {
            Ok(Some(header)) => header,
            Ok(None) | Err(StorageError::CorruptLog { .. }) => return Ok(None),
            Err(other) => return Err(other),
        };
        let size = header.total_size_bytes() as u64;
        let in_order = header.base_offset >= self.next_offset
            && header.last_offset_delta >= 0
            && self.can_hold_offset(header.last_offset());
        if position + size > self.size_bytes || !in_order {
            return Ok(None);
        }
        if verify_crc {
            batch.resize(size as usize, 0);
            self.read_exact_at(batch, position)?;
            if records::verify_crc(batch, &header).is_err() {
                return Ok(None);
            }
        }
        Ok(Some(header))
    }

    fn track_max_timestamp(&mut self, header: &RecordBatchHeader) {
        if header.max_timestamp > self.max_timestamp_so_far {
            self.max_timestamp_so_far = header.max_timestamp;
            self.offset_of_max_timestamp_so_far = header.last_offset();
        }
    }

    /// Index bookkeeping for a batch now in the file at `position`, like Kafka's
    /// `LogSegment.append`: an entry at most every `index_interval_bytes`.
    fn index_batch(&mut self, header: &RecordBatchHeader, position: u64) {
        debug_assert!(self.can_hold_offset(header.last_offset()));
        debug_assert!(position <= u64::from(u32::MAX));
        self.track_max_timestamp(header);
        if self.bytes_since_last_index_entry > self.index_interval_bytes {
            self.offset_index.append(OffsetEntry {
                relative_offset: self.relative(header.last_offset()) as u32,
                position: position as u32,
            });
            self.append_time_index_entry();
            self.bytes_since_last_index_entry = 0;
        }
        self.bytes_since_last_index_entry += header.total_size_bytes() as u64;
        self.next_offset = header.next_offset();
    }

    fn append_time_index_entry(&mut self) {
        if self.max_timestamp_so_far > NO_TIMESTAMP {
            let relative_offset = self.relative(self.offset_of_max_timestamp_so_far) as u32;
            self.time_index.maybe_append(TimeEntry {
                timestamp: self.max_timestamp_so_far,
                relative_offset,
            });
        }
    }

    /// Appends batches whose offsets are already assigned. `parts`, written back to back with
    /// one `pwritev`, are the batches' bytes; `batches` are their (patched) headers with their
    /// positions relative to the start of `parts`, for the indexes.
    pub fn append(
        &mut self,
        parts: &[&[u8]],
        batches: &[(RecordBatchHeader, u64)],
    ) -> Result<(), StorageError> {
        let start = self.size_bytes;
        let size_bytes: usize = parts.iter().map(|p| p.len()).sum();
        write_all_vectored_at(&self.file, parts, start)
            .map_err(io_error("write", self.log_path.as_path()))?;
        self.size_bytes += size_bytes as u64;
        for (header, relative_position) in batches {
            self.index_batch(header, start + relative_position);
        }
        Ok(())
    }

    /// Truncates the file to `position` and fixes the in-memory state by rescanning headers;
    /// aborted transactions whose markers are gone leave the transaction index.
    pub fn truncate_to_position(&mut self, position: u64) -> Result<(), StorageError> {
        self.truncate_file(position)?;
        self.recover(false)?;
        let next_offset = self.next_offset;
        self.txn_index.truncate_to(next_offset)
    }

    /// Loads the transaction index file, keeping only entries whose markers this segment
    /// holds (call once the segment's extent is known).
    pub fn load_txn_index(&mut self) -> Result<(), StorageError> {
        self.txn_index = TransactionIndex::load(
            self.txn_index.path().to_path_buf(),
            self.base_offset,
            self.next_offset,
        )?;
        Ok(())
    }

    fn truncate_file(&mut self, position: u64) -> Result<(), StorageError> {
        self.file
            .set_len(position)
            .map_err(io_error("truncate", self.log_path.as_path()))?;
        self.size_bytes = position;
        Ok(())
    }

    pub fn read_exact_at(&self, buf: &mut [u8], position: u64) -> Result<(), StorageError> {
        self.file
            .read_exact_at(buf, position)
            .map_err(io_error("read", self.log_path.as_path()))
    }

    /// The header of the batch at `position`; `None` at the end of the segment. A header that
    /// is cut short or invalid is `CorruptLog`.
    pub fn read_header_at(&self, position: u64) -> Result<Option<RecordBatchHeader>, StorageError> {
        if position >= self.size_bytes {
            return Ok(None);
        }
        let corrupt = |source| StorageError::CorruptLog {
            path: self.log_path.to_path_buf(),
            position,
            source,
        };
        let available = self.size_bytes - position;
        if available < RECORD_BATCH_HEADER_BYTES as u64 {
            return Err(corrupt(fjord_protocol::records::RecordError::Truncated {
                needed_bytes: RECORD_BATCH_HEADER_BYTES,
                available_bytes: available as usize,
            }));
        }
        let mut buf = [0u8; RECORD_BATCH_HEADER_BYTES];
        self.read_exact_at(&mut buf, position)?;
        RecordBatchHeader::parse(&buf).map(Some).map_err(corrupt)
    }

    /// Position of the first batch whose last offset is `>= offset`, if this segment has one.
    pub fn find_batch_position(
        &self,
        offset: i64,
    ) -> Result<Option<(u64, RecordBatchHeader)>, StorageError> {
        let start_offset = offset.max(self.base_offset);
        let mut position = u64::from(self.offset_index.lookup(self.relative(start_offset)));
        while let Some(header) = self.read_header_at(position)? {
            if header.last_offset() >= offset {
                return Ok(Some((position, header)));
            }
            position += header.total_size_bytes() as u64;
        }
        Ok(None)
    }

    /// End of the last whole batch that starts at or after `start` and ends at or before
    /// `limit` (`start` if the first batch is already longer). The offset index gets within
    /// `index_interval_bytes` of the answer; batch headers are walked from there.
    pub fn last_batch_boundary(&self, start: u64, limit: u64) -> Result<u64, StorageError> {
        let limit = limit.min(self.size_bytes);
        let mut position = u64::from(self.offset_index.lookup_position(limit)).max(start);
        while let Some(header) = self.read_header_at(position)? {
            let end = position + header.total_size_bytes() as u64;
            if end > limit {
                break;
            }
            position = end;
        }
        Ok(position)
    }

    /// The byte range `[start, end)` of this segment's file, without reading it.
    pub fn slice(&self, start: u64, end: u64) -> FileRecords {
        debug_assert!(start <= end && end <= self.size_bytes);
        FileRecords::new(
            Arc::clone(&self.file),
            Arc::clone(&self.log_path),
            start,
            end.saturating_sub(start),
        )
    }

    /// Reads the whole batch described by `header` at `position`.
    pub fn read_batch(
        &self,
        position: u64,
        header: &RecordBatchHeader,
    ) -> Result<Vec<u8>, StorageError> {
        let mut batch = vec![0u8; header.total_size_bytes()];
        self.read_exact_at(&mut batch, position)?;
        Ok(batch)
    }

    /// First record with timestamp `>= target_ms` in this segment, as (batch header, offset,
    /// timestamp). Uses the time index to skip what is certainly older.
    pub fn find_offset_by_timestamp(
        &self,
        target_ms: i64,
    ) -> Result<Option<(RecordBatchHeader, i64, i64)>, StorageError> {
        let start_offset = self
            .time_index
            .last_offset_before(target_ms)
            .map_or(self.base_offset, |rel| self.base_offset + i64::from(rel));
        let mut position = u64::from(self.offset_index.lookup(self.relative(start_offset)));
        while let Some(header) = self.read_header_at(position)? {
            if header.max_timestamp >= target_ms {
                let batch = self.read_batch(position, &header)?;
                let found = records::find_record_offset_at_or_after_timestamp(&batch, target_ms)
                    .map_err(|source| StorageError::CorruptLog {
                        path: self.log_path.to_path_buf(),
                        position,
                        source,
                    })?;
                if let Some((offset, timestamp)) = found {
                    return Ok(Some((header, offset, timestamp)));
                }
            }
            position += header.total_size_bytes() as u64;
        }
        Ok(None)
    }

    /// Writes indexes (with a final time index entry for the max timestamp, as Kafka does on
    /// roll and close) and optionally fsyncs everything.
    pub fn persist(&mut self, fsync: bool) -> Result<(), StorageError> {
        self.append_time_index_entry();
        self.offset_index.persist(fsync)?;
        self.time_index.persist(fsync)?;
        if fsync {
            self.txn_index.sync()?;
            self.file
                .sync_all()
                .map_err(io_error("fsync", self.log_path.as_path()))?;
        }
        Ok(())
    }
}

/// `pwritev` until every byte of `parts` is written at `position` (a short write continues
/// where it stopped). The standard library's `write_vectored_at` is not stable yet.
fn write_all_vectored_at(file: &File, parts: &[&[u8]], position: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut parts: Vec<&[u8]> = parts.iter().copied().filter(|p| !p.is_empty()).collect();
    let mut position = position;
    let mut first = 0;
    while first < parts.len() {
        // At most IOV_MAX (1024 on Linux) buffers per call.
        let batch = &parts[first..parts.len().min(first + 1024)];
        let iovecs: Vec<libc::iovec> = batch
            .iter()
            .map(|p| libc::iovec {
                iov_base: p.as_ptr() as *mut libc::c_void,
                iov_len: p.len(),
            })
            .collect();
        let offset = libc::off_t::try_from(position)
            .map_err(|_| std::io::Error::other("file position beyond off_t"))?;
        // SAFETY: every iovec points into a slice borrowed for the whole call, with its exact
        // length; the kernel only reads from them. The descriptor belongs to a live `File`.
        let written = unsafe {
            libc::pwritev(
                file.as_raw_fd(),
                iovecs.as_ptr(),
                iovecs.len() as i32,
                offset,
            )
        };
        if written < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let mut written = written as usize;
        position += written as u64;
        while written > 0 && first < parts.len() {
            let len = parts[first].len();
            if written >= len {
                written -= len;
                first += 1;
            } else {
                parts[first] = &parts[first][written..];
                written = 0;
            }
        }
    }
    Ok(())
}
