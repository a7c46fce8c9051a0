//! `TransactionIndex`: a segment's aborted transactions (Kafka's `.txnindex`).
//!
//! When an ABORT marker is appended, the aborted transaction (producer id, first offset, the
//! marker's offset as last offset, and the last stable offset right after it completed) is
//! added to the index of the segment holding the marker. A `read_committed` fetch collects the
//! aborted transactions overlapping what it returns, so the consumer can drop their records.
//!
//! The file holds Kafka's entries exactly: `version: i16` (0), `producerId: i64`,
//! `firstOffset: i64`, `lastOffset: i64`, `lastStableOffset: i64`, big-endian, 34 bytes each,
//! in increasing `lastOffset` order. It is created with the first entry, appended without fsync
//! (the flusher and the background segment sync fsync it with its segment) and rebuilt from
//! the log when its segment is rescanned after a crash.
//!
//! Entries are also kept in memory, so a fetch never reads the file. The bound is the log
//! itself: one 32-byte entry per ABORT marker batch in the segment, and a marker batch takes at
//! least 78 bytes of log, so the entries of a segment never exceed half its size (in practice
//! they are a tiny fraction: one per aborted transaction, not per record).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::{io_error, remove_file_if_exists, StorageError};

/// Kafka's `AbortedTxn.CURRENT_VERSION`.
const ENTRY_VERSION: i16 = 0;
/// Kafka's `AbortedTxn.TOTAL_SIZE`.
pub(crate) const ENTRY_BYTES: usize = 34;

/// One aborted transaction, as the transaction index stores it and a `read_committed` fetch
/// reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AbortedTxn {
    pub producer_id: i64,
    /// Offset of the transaction's first batch on this partition.
    pub first_offset: i64,
    /// Offset of the ABORT marker.
    pub last_offset: i64,
    /// The partition's last stable offset once this transaction completed.
    pub last_stable_offset: i64,
}

impl AbortedTxn {
    fn encode(&self) -> [u8; ENTRY_BYTES] {
        let mut out = [0u8; ENTRY_BYTES];
        out[0..2].copy_from_slice(&ENTRY_VERSION.to_be_bytes());
        out[2..10].copy_from_slice(&self.producer_id.to_be_bytes());
        out[10..18].copy_from_slice(&self.first_offset.to_be_bytes());
        out[18..26].copy_from_slice(&self.last_offset.to_be_bytes());
        out[26..34].copy_from_slice(&self.last_stable_offset.to_be_bytes());
        out
    }

    /// `None` for an entry of an unknown version.
    fn decode(bytes: &[u8; ENTRY_BYTES]) -> Option<AbortedTxn> {
        let i64_at = |at: usize| {
            let mut buf = [0u8; 8];
            buf.copy_from_slice(&bytes[at..at + 8]);
            i64::from_be_bytes(buf)
        };
        (i16::from_be_bytes([bytes[0], bytes[1]]) == ENTRY_VERSION).then(|| AbortedTxn {
            producer_id: i64_at(2),
            first_offset: i64_at(10),
            last_offset: i64_at(18),
            last_stable_offset: i64_at(26),
        })
    }
}

/// What a search of one segment's index found (Kafka's `TxnIndexSearchResult`).
#[derive(Debug, Default)]
pub(crate) struct TxnIndexSearch {
    pub aborted: Vec<AbortedTxn>,
    /// An entry's last stable offset reached the upper bound: no later segment can hold an
    /// aborted transaction that started below it.
    pub complete: bool,
}

/// One segment's transaction index: its entries in memory plus the file.
#[derive(Debug)]
pub(crate) struct TransactionIndex {
    path: PathBuf,
    entries: Vec<AbortedTxn>,
    /// Opened (and the file created) on the first append, as Kafka does.
    file: Option<File>,
}

impl TransactionIndex {
    pub fn new_empty(path: PathBuf) -> Self {
        TransactionIndex {
            path,
            entries: Vec::new(),
            file: None,
        }
    }

    /// Loads the index file of a segment holding offsets below `next_offset`. A missing file is
    /// an empty index. The valid prefix is kept: a torn tail (a crash mid-append), an entry of
    /// an unknown version, one out of order or one beyond the segment's data is cut off with
    /// everything after it (the log is the truth; recovery rebuilds what the log implies).
    pub fn load(path: PathBuf, base_offset: i64, next_offset: i64) -> Result<Self, StorageError> {
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::new_empty(path))
            }
            Err(err) => return Err(io_error("open", &path)(err)),
        };
        let size = file.metadata().map_err(io_error("stat", &path))?.len();
        // The file was written by us, one entry per marker batch in a segment of at most
        // 2 GiB, so its size is bounded by the segment's; a larger one is garbage.
        if size > i32::MAX as u64 {
            return Err(StorageError::CorruptFile {
                path,
                reason: format!("transaction index of {size} bytes"),
            });
        }
        let mut bytes = vec![0u8; size as usize];
        file.read_exact_at(&mut bytes, 0)
            .map_err(io_error("read", &path))?;
        let mut entries = Vec::with_capacity(bytes.len() / ENTRY_BYTES);
        for chunk in bytes.chunks_exact(ENTRY_BYTES) {
            let mut raw = [0u8; ENTRY_BYTES];
            raw.copy_from_slice(chunk);
            let Some(entry) = AbortedTxn::decode(&raw) else {
                break;
            };
            let in_order = entries
                .last()
                .is_none_or(|last: &AbortedTxn| entry.last_offset > last.last_offset);
            let in_segment = entry.last_offset >= base_offset && entry.last_offset < next_offset;
            if !in_order || !in_segment || entry.first_offset > entry.last_offset {
                break;
            }
            entries.push(entry);
        }
        let valid_bytes = (entries.len() * ENTRY_BYTES) as u64;
        if valid_bytes < size {
            tracing::warn!(path = %path.display(), valid_bytes, size,
                "truncating torn or invalid tail of transaction index");
            file.set_len(valid_bytes)
                .map_err(io_error("truncate", &path))?;
        }
        Ok(TransactionIndex {
            path,
            entries,
            file: Some(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file was renamed (cleaner swap); an open handle follows the rename.
    pub fn set_path(&mut self, path: PathBuf) {
        self.path = path;
    }

    #[cfg(test)]
    pub fn entries(&self) -> &[AbortedTxn] {
        &self.entries
    }

    pub fn last_offset(&self) -> Option<i64> {
        self.entries.last().map(|e| e.last_offset)
    }

    fn file(&mut self) -> Result<&File, StorageError> {
        if self.file.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .read(true)
                .write(true)
                .truncate(false)
                .open(&self.path)
                .map_err(io_error("open", &self.path))?;
            self.file = Some(file);
        }
        // Just set if it was missing.
        self.file.as_ref().ok_or_else(|| StorageError::CorruptFile {
            path: self.path.clone(),
            reason: "transaction index not open".into(),
        })
    }

    /// Appends an entry. Last offsets must increase, as in Kafka: each is a marker's offset.
    pub fn append(&mut self, txn: AbortedTxn) -> Result<(), StorageError> {
        if let Some(last) = self.last_offset() {
            if txn.last_offset <= last {
                return Err(StorageError::CorruptFile {
                    path: self.path.clone(),
                    reason: format!(
                        "aborted transaction ending at {} appended after one ending at {last}",
                        txn.last_offset
                    ),
                });
            }
        }
        let position = (self.entries.len() * ENTRY_BYTES) as u64;
        let bytes = txn.encode();
        let path = self.path.clone();
        self.file()?
            .write_all_at(&bytes, position)
            .map_err(io_error("write", &path))?;
        self.entries.push(txn);
        Ok(())
    }

    /// Appends `txn` unless an entry at or after its marker is already there: replaying the
    /// log over an index that survived (recovery, truncation) must not add entries twice.
    pub fn append_if_new(&mut self, txn: AbortedTxn) -> Result<(), StorageError> {
        if self
            .last_offset()
            .is_some_and(|last| last >= txn.last_offset)
        {
            return Ok(());
        }
        self.append(txn)
    }

    /// Drops the entries whose marker is at or after `offset` (Kafka's `truncateTo`).
    pub fn truncate_to(&mut self, offset: i64) -> Result<(), StorageError> {
        let keep = self.entries.partition_point(|e| e.last_offset < offset);
        if keep == self.entries.len() {
            return Ok(());
        }
        self.entries.truncate(keep);
        self.set_file_len()
    }

    /// Empties the index (its segment is being rescanned and the index rebuilt).
    pub fn reset(&mut self) -> Result<(), StorageError> {
        self.entries.clear();
        match &self.file {
            Some(_) => self.set_file_len(),
            None => remove_file_if_exists(&self.path),
        }
    }

    fn set_file_len(&mut self) -> Result<(), StorageError> {
        let len = (self.entries.len() * ENTRY_BYTES) as u64;
        let path = self.path.clone();
        self.file()?
            .set_len(len)
            .map_err(io_error("truncate", &path))
    }

    /// Makes sure the file exists even when empty: the cleaner's output always has one, so a
    /// swap's rename replaces a same-named old index instead of leaving its stale entries.
    pub fn create_file(&mut self) -> Result<(), StorageError> {
        self.file().map(|_| ())
    }

    /// Fsyncs the file, if there is one.
    pub fn sync(&self) -> Result<(), StorageError> {
        match &self.file {
            Some(file) => file.sync_all().map_err(io_error("fsync", &self.path)),
            None => Ok(()),
        }
    }

    /// Kafka's `collectAbortedTxns`: entries overlapping `[fetch_offset, upper_bound_offset)`.
    pub fn collect(&self, fetch_offset: i64, upper_bound_offset: i64) -> TxnIndexSearch {
        let mut search = TxnIndexSearch::default();
        // Entries ending before the fetch offset cannot overlap; skip them by binary search.
        let start = self
            .entries
            .partition_point(|e| e.last_offset < fetch_offset);
        for entry in &self.entries[start..] {
            if entry.first_offset < upper_bound_offset {
                search.aborted.push(*entry);
            }
            if entry.last_stable_offset >= upper_bound_offset {
                search.complete = true;
                break;
            }
        }
        search
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(producer_id: i64, first: i64, last: i64, lso: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id,
            first_offset: first,
            last_offset: last,
            last_stable_offset: lso,
        }
    }

    #[test]
    fn entries_use_kafkas_34_byte_format() {
        let entry = txn(7, 10, 20, 21);
        let bytes = entry.encode();
        assert_eq!(&bytes[0..2], &[0, 0], "version 0");
        assert_eq!(&bytes[2..10], &7i64.to_be_bytes());
        assert_eq!(&bytes[26..34], &21i64.to_be_bytes());
        assert_eq!(AbortedTxn::decode(&bytes), Some(entry));
        let mut unknown = bytes;
        unknown[1] = 1;
        assert_eq!(AbortedTxn::decode(&unknown), None);
    }

    #[test]
    fn file_round_trips_and_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000.txnindex");
        let mut index = TransactionIndex::new_empty(path.clone());
        assert!(!path.exists(), "created lazily");
        index.append(txn(1, 0, 5, 6)).unwrap();
        index.append(txn(2, 3, 9, 10)).unwrap();
        index.append(txn(1, 12, 15, 16)).unwrap();
        assert!(
            index.append(txn(3, 0, 15, 16)).is_err(),
            "last offsets increase"
        );
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            3 * ENTRY_BYTES as u64
        );
        let loaded = TransactionIndex::load(path.clone(), 0, 100).unwrap();
        assert_eq!(loaded.entries(), index.entries());

        index.truncate_to(9).unwrap();
        assert_eq!(index.entries(), &[txn(1, 0, 5, 6)]);
        let loaded = TransactionIndex::load(path.clone(), 0, 100).unwrap();
        assert_eq!(loaded.entries(), &[txn(1, 0, 5, 6)]);
        index.reset().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }

    #[test]
    fn torn_tail_and_entries_beyond_the_segment_are_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000100.txnindex");
        let mut index = TransactionIndex::new_empty(path.clone());
        index.append(txn(1, 90, 105, 106)).unwrap();
        index.append(txn(2, 100, 110, 111)).unwrap();
        index.append(txn(3, 100, 150, 151)).unwrap();
        drop(index);
        // A torn fourth entry.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&txn(4, 1, 2, 3).encode()[..20]);
        std::fs::write(&path, &bytes).unwrap();
        let loaded = TransactionIndex::load(path.clone(), 100, 1_000).unwrap();
        assert_eq!(loaded.entries().len(), 3);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            3 * ENTRY_BYTES as u64
        );
        // The segment now ends at 120: the entry at 150 is stale.
        let loaded = TransactionIndex::load(path.clone(), 100, 120).unwrap();
        assert_eq!(
            loaded.entries(),
            &[txn(1, 90, 105, 106), txn(2, 100, 110, 111)]
        );
        let missing = TransactionIndex::load(dir.path().join("absent"), 0, 10).unwrap();
        assert!(missing.entries().is_empty());
    }

    #[test]
    fn collect_follows_kafka() {
        let mut index = TransactionIndex::new_empty(PathBuf::from("/nonexistent/x.txnindex"));
        // In memory only (append writes the file, so build entries directly).
        index.entries = vec![
            txn(1, 0, 10, 11),
            txn(2, 5, 20, 5),
            txn(3, 15, 30, 40),
            txn(4, 35, 50, 51),
        ];
        let found = index.collect(11, 16);
        assert_eq!(found.aborted, vec![txn(2, 5, 20, 5), txn(3, 15, 30, 40)]);
        assert!(found.complete, "txn 3's LSO 40 >= 16");
        let found = index.collect(0, 100);
        assert_eq!(found.aborted.len(), 4);
        assert!(!found.complete);
        let found = index.collect(51, 100);
        assert!(found.aborted.is_empty());
    }
}
