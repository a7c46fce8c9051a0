//! Kafka's sparse OffsetIndex and TimeIndex, kept in memory and persisted as flat files.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::{io_error, StorageError};

/// Kafka's default `segment.index.bytes` is 10 MiB; we cap entry counts the same way so a
/// segment rolls before its index would exceed what Kafka would allow.
const INDEX_FILE_BYTES_MAX: usize = 10 * 1024 * 1024;

/// One fixed-size index entry.
pub(crate) trait IndexEntry: Copy + std::fmt::Debug {
    const ENTRY_BYTES: usize;
    fn encode(&self, out: &mut Vec<u8>);
    fn decode(bytes: &[u8]) -> Self;
}

/// OffsetIndex entry: the last offset of a batch and the file position where the batch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

/// TimeIndex entry: the largest timestamp seen so far in the segment and the (last) offset
/// of the batch that carried it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
}

fn be_u32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

impl IndexEntry for OffsetEntry {
    const ENTRY_BYTES: usize = 8;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
        out.extend_from_slice(&self.position.to_be_bytes());
    }
    fn decode(bytes: &[u8]) -> Self {
        OffsetEntry {
            relative_offset: be_u32(&bytes[0..4]),
            position: be_u32(&bytes[4..8]),
        }
    }
}

impl IndexEntry for TimeEntry {
    const ENTRY_BYTES: usize = 12;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
    }
    fn decode(bytes: &[u8]) -> Self {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&bytes[0..8]);
        TimeEntry {
            timestamp: i64::from_be_bytes(ts),
            relative_offset: be_u32(&bytes[8..12]),
        }
    }
}

/// An index file's entries in memory plus how many of them are already on disk, so that
/// persisting only appends the new tail.
#[derive(Debug)]
pub(crate) struct IndexFile<E: IndexEntry> {
    path: PathBuf,
    pub entries: Vec<E>,
    /// Entries known to be on disk, in order. Truncation lowers it.
    persisted_entries: usize,
    /// Set when truncation means the file holds entries past `persisted_entries`.
    file_needs_truncate: bool,
}

impl<E: IndexEntry> IndexFile<E> {
    pub fn new_empty(path: PathBuf) -> Self {
        IndexFile {
            path,
            entries: Vec::new(),
            persisted_entries: 0,
            file_needs_truncate: true,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Points the index at its file's new name after a rename (the log cleaner's swap).
    pub fn set_path(&mut self, path: PathBuf) {
        self.path = path;
    }

    pub fn max_entries() -> usize {
        INDEX_FILE_BYTES_MAX / E::ENTRY_BYTES
    }

    pub fn is_full(&self) -> bool {
        self.entries.len() >= Self::max_entries()
    }

    /// Loads the file if it exists and its length is a whole number of entries.
    /// Returns `Ok(None)` when the file is missing or has a torn size (caller rebuilds).
    pub fn load(path: PathBuf) -> Result<Option<Self>, StorageError> {
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(io_error("read", &path)(error)),
        };
        if bytes.len() % E::ENTRY_BYTES != 0 {
            return Ok(None);
        }
        let entries: Vec<E> = bytes.chunks_exact(E::ENTRY_BYTES).map(E::decode).collect();
        Ok(Some(IndexFile {
            path,
            persisted_entries: entries.len(),
            entries,
            file_needs_truncate: false,
        }))
    }

    pub fn clear(&mut self) {
        self.truncate_entries(0);
    }

    pub fn truncate_entries(&mut self, len: usize) {
        if len < self.entries.len() {
            self.entries.truncate(len);
            if len < self.persisted_entries {
                self.persisted_entries = len;
                self.file_needs_truncate = true;
            }
        }
    }

    /// Writes entries not yet on disk (and trims the file after a truncation); fsyncs if asked.
    pub fn persist(&mut self, fsync: bool) -> Result<(), StorageError> {
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&self.path)
            .map_err(io_error("open", &self.path))?;
        let entries_bytes = (self.entries.len() * E::ENTRY_BYTES) as u64;
        if self.file_needs_truncate {
            file.set_len((self.persisted_entries * E::ENTRY_BYTES) as u64)
                .map_err(io_error("truncate", &self.path))?;
            self.file_needs_truncate = false;
        }
        let mut tail =
            Vec::with_capacity((self.entries.len() - self.persisted_entries) * E::ENTRY_BYTES);
        for entry in &self.entries[self.persisted_entries..] {
            entry.encode(&mut tail);
        }
        let start = (self.persisted_entries * E::ENTRY_BYTES) as u64;
        file.write_all_at(&tail, start)
            .map_err(io_error("write", &self.path))?;
        self.persisted_entries = self.entries.len();
        debug_assert_eq!(start + tail.len() as u64, entries_bytes);
        if fsync {
            file.sync_all().map_err(io_error("fsync", &self.path))?;
        }
        Ok(())
    }
}

impl IndexFile<OffsetEntry> {
    /// Position of the last indexed batch whose last offset is `<= relative_offset`, or 0:
    /// scanning forward from there reaches the batch containing the offset.
    pub fn lookup(&self, relative_offset: u64) -> u32 {
        let count = self
            .entries
            .partition_point(|e| u64::from(e.relative_offset) <= relative_offset);
        match count {
            0 => 0,
            n => self.entries[n - 1].position,
        }
    }

    /// Position of the last indexed batch that starts at or before `position`, or 0. Entries
    /// grow in position as in offset, so this is a binary search too; a forward walk of batch
    /// headers from there finds the last batch boundary at or before `position`.
    pub fn lookup_position(&self, position: u64) -> u32 {
        let count = self
            .entries
            .partition_point(|e| u64::from(e.position) <= position);
        match count {
            0 => 0,
            n => self.entries[n - 1].position,
        }
    }

    /// Entries must increase strictly in both offset and position and stay inside the log.
    pub fn is_plausible(&self, log_size_bytes: u64) -> bool {
        self.entries
            .windows(2)
            .all(|w| w[0].relative_offset < w[1].relative_offset && w[0].position < w[1].position)
            && self
                .entries
                .last()
                .is_none_or(|e| u64::from(e.position) < log_size_bytes)
    }

    pub fn append(&mut self, entry: OffsetEntry) {
        debug_assert!(self.entries.last().is_none_or(|last| {
            last.relative_offset < entry.relative_offset && last.position < entry.position
        }));
        self.entries.push(entry);
    }
}

impl IndexFile<TimeEntry> {
    /// Largest relative offset whose entry timestamp is strictly below `target_ms`: every
    /// record up to that offset is older than the target, so a search may start after it.
    pub fn last_offset_before(&self, target_ms: i64) -> Option<u32> {
        let count = self.entries.partition_point(|e| e.timestamp < target_ms);
        count
            .checked_sub(1)
            .map(|i| self.entries[i].relative_offset)
    }

    pub fn is_plausible(&self) -> bool {
        self.entries.windows(2).all(|w| {
            w[0].timestamp < w[1].timestamp && w[0].relative_offset <= w[1].relative_offset
        })
    }

    /// Appends only when the timestamp grows, like Kafka's `TimeIndex.maybeAppend`.
    pub fn maybe_append(&mut self, entry: TimeEntry) {
        if self
            .entries
            .last()
            .is_none_or(|last| entry.timestamp > last.timestamp)
        {
            debug_assert!(self
                .entries
                .last()
                .is_none_or(|last| last.relative_offset <= entry.relative_offset));
            self.entries.push(entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_lookup_and_persist_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        let mut index = IndexFile::<OffsetEntry>::new_empty(path.clone());
        assert_eq!(index.lookup(100), 0);
        for (off, pos) in [(9u32, 100u32), (19, 250), (29, 400)] {
            index.append(OffsetEntry {
                relative_offset: off,
                position: pos,
            });
        }
        assert_eq!(index.lookup(0), 0);
        assert_eq!(index.lookup(9), 100);
        assert_eq!(index.lookup(18), 100);
        assert_eq!(index.lookup(19), 250);
        assert_eq!(index.lookup(1000), 400);
        index.persist(true).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 24);
        index.truncate_entries(1);
        assert_eq!(index.entries.len(), 1);
        index.persist(false).unwrap();
        let loaded = IndexFile::<OffsetEntry>::load(path.clone())
            .unwrap()
            .unwrap();
        assert_eq!(loaded.entries, index.entries);
        std::fs::write(&path, [0u8; 7]).unwrap();
        assert!(IndexFile::<OffsetEntry>::load(path).unwrap().is_none());
    }

    #[test]
    fn time_index_only_grows() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = IndexFile::<TimeEntry>::new_empty(dir.path().join("0.timeindex"));
        index.maybe_append(TimeEntry {
            timestamp: 10,
            relative_offset: 1,
        });
        index.maybe_append(TimeEntry {
            timestamp: 10,
            relative_offset: 2,
        });
        index.maybe_append(TimeEntry {
            timestamp: 20,
            relative_offset: 3,
        });
        assert_eq!(index.entries.len(), 2);
        assert_eq!(index.last_offset_before(10), None);
        assert_eq!(index.last_offset_before(11), Some(1));
        assert_eq!(index.last_offset_before(21), Some(3));
    }
}
