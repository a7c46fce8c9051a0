//! Where a voter keeps its Raft log: [`RaftLogStore`] and its two implementations.
//!
//! [`FileLogStore`] is the real one: `fjord_storage::MetadataLog` in
//! `{data_dir}/__cluster_metadata-0/`, with the entries after the snapshot (and the snapshot
//! itself) cached in memory, because the Raft library reads them constantly and the metadata
//! log is small (the controller snapshots it regularly). [`MemLogStore`] is the simulation's:
//! a simulated disk with an explicit durable prefix, shared between handles so that it
//! outlives the "process" (the [`crate::MetadataQuorum`]) that owns one, and
//! [`MemLogStore::crash`] drops whatever was not synced, as a power loss does.
//!
//! The store speaks plain integers and bytes (`fjord_storage`'s types); the adapter to the
//! Raft library's `Storage` trait lives in `quorum.rs`.

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use fjord_storage::{
    MetadataHardState, MetadataLog, MetadataLogEntry, MetadataSnapshot, StorageError,
};

/// A voter's durable Raft state: log entries, hard state, latest snapshot.
///
/// Contract (what the quorum relies on):
/// - `append` writes entries whose indexes continue the log, or overwrite a suffix (entries at
///   or above the first new index are dropped first); nothing is durable before `sync`.
/// - `set_hard_state` and `save_snapshot` are durable when they return.
/// - `save_snapshot` drops the entries it covers; the entries after it stay only if the log
///   holds the snapshot's index with the snapshot's term (otherwise the log is replaced).
/// - Reads (`first_index`, `last_index`, `term`, `entries`) see everything appended, synced
///   or not.
pub trait RaftLogStore {
    /// Appends `entries` (consecutive indexes), truncating a conflicting suffix first.
    fn append(&mut self, entries: &[MetadataLogEntry]) -> Result<(), StorageError>;
    /// Makes every appended entry durable.
    fn sync(&mut self) -> Result<(), StorageError>;
    /// The hard state last stored (all zero if none).
    fn hard_state(&self) -> MetadataHardState;
    /// Stores the hard state durably.
    fn set_hard_state(&mut self, state: MetadataHardState) -> Result<(), StorageError>;
    /// The latest snapshot.
    fn snapshot(&self) -> Option<MetadataSnapshot>;
    /// Stores `snapshot` durably and compacts the log (see the trait docs).
    fn save_snapshot(&mut self, snapshot: MetadataSnapshot) -> Result<(), StorageError>;
    /// Index of the first entry held: the snapshot's index + 1 (1 without a snapshot).
    fn first_index(&self) -> u64;
    /// Index of the last entry held (the snapshot's index if the log is empty).
    fn last_index(&self) -> u64;
    /// Term of the entry at `index` if held, or of the snapshot if `index` is its index
    /// (0 for index 0 without a snapshot).
    fn term(&self, index: u64) -> Option<u64>;
    /// Entries `[low, high)` (`first_index <= low <= high <= last_index + 1`), stopping once
    /// their payloads exceed `size_bytes_max` but always returning at least one if any.
    fn entries(&self, low: u64, high: u64, size_bytes_max: u64) -> Vec<MetadataLogEntry>;
}

/// Shared read logic over "snapshot + entries after it".
fn term_in(snapshot: Option<(u64, u64)>, entries: &[MetadataLogEntry], index: u64) -> Option<u64> {
    let (snapshot_index, snapshot_term) = snapshot.unwrap_or((0, 0));
    if index == snapshot_index {
        return Some(snapshot_term);
    }
    if index < snapshot_index {
        return None;
    }
    entries
        .get((index - snapshot_index - 1) as usize)
        .map(|e| e.term)
}

fn entries_in(
    snapshot_index: u64,
    entries: &[MetadataLogEntry],
    low: u64,
    high: u64,
    size_bytes_max: u64,
) -> Vec<MetadataLogEntry> {
    let start = low.saturating_sub(snapshot_index + 1) as usize;
    let end = (high.saturating_sub(snapshot_index + 1) as usize).min(entries.len());
    let mut out = Vec::new();
    let mut size_bytes = 0u64;
    for entry in entries.get(start..end).unwrap_or(&[]) {
        size_bytes += entry.payload.len() as u64;
        if !out.is_empty() && size_bytes > size_bytes_max {
            break;
        }
        out.push(entry.clone());
    }
    out
}

/// Applies Raft's append rule to an in-memory list of the entries after a snapshot; returns
/// how many of the old entries were kept.
fn append_in(
    snapshot_index: u64,
    held: &mut Vec<MetadataLogEntry>,
    new: &[MetadataLogEntry],
) -> usize {
    let Some(first) = new.first() else {
        return held.len();
    };
    debug_assert!(first.index > snapshot_index);
    let keep = (first.index - snapshot_index - 1) as usize;
    debug_assert!(keep <= held.len());
    held.truncate(keep);
    held.extend_from_slice(new);
    keep
}

/// Compacts `held` for a snapshot at (`index`, `term`): keeps the entries after it only if
/// the log holds `index` with `term`.
fn compact_in(
    old_snapshot: Option<(u64, u64)>,
    held: &mut Vec<MetadataLogEntry>,
    index: u64,
    term: u64,
) {
    let old_index = old_snapshot.map_or(0, |(i, _)| i);
    if index > old_index && term_in(old_snapshot, held, index) == Some(term) {
        held.drain(..(index - old_index) as usize);
    } else {
        held.clear();
    }
}

/// The real store: `fjord_storage::MetadataLog` plus an in-memory copy of its entries.
#[derive(Debug)]
pub struct FileLogStore {
    log: MetadataLog,
    hard_state: MetadataHardState,
    snapshot: Option<MetadataSnapshot>,
    /// The entries after the snapshot, as in the file.
    entries: Vec<MetadataLogEntry>,
}

impl FileLogStore {
    /// Opens (creating if needed) the metadata log in `dir`, normally
    /// `{data_dir}/__cluster_metadata-0` ([`fjord_storage::METADATA_LOG_DIR_NAME`]).
    pub fn open(dir: &Path) -> Result<FileLogStore, StorageError> {
        let (log, recovered) = MetadataLog::open(dir)?;
        Ok(FileLogStore {
            log,
            hard_state: recovered.hard_state,
            snapshot: recovered.snapshot,
            entries: recovered.entries,
        })
    }

    fn snapshot_id(&self) -> Option<(u64, u64)> {
        self.snapshot.as_ref().map(|s| (s.index, s.term))
    }
}

impl RaftLogStore for FileLogStore {
    fn append(&mut self, entries: &[MetadataLogEntry]) -> Result<(), StorageError> {
        self.log.append(entries)?;
        let snapshot_index = self.log.first_index() - 1;
        append_in(snapshot_index, &mut self.entries, entries);
        debug_assert_eq!(self.log.last_index(), self.last_index());
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.log.sync()
    }

    fn hard_state(&self) -> MetadataHardState {
        self.hard_state
    }

    fn set_hard_state(&mut self, state: MetadataHardState) -> Result<(), StorageError> {
        if state != self.hard_state {
            self.log.set_hard_state(&state)?;
            self.hard_state = state;
        }
        Ok(())
    }

    fn snapshot(&self) -> Option<MetadataSnapshot> {
        self.snapshot.clone()
    }

    fn save_snapshot(&mut self, snapshot: MetadataSnapshot) -> Result<(), StorageError> {
        self.log.save_snapshot(
            snapshot.index,
            snapshot.term,
            &snapshot.voters,
            &snapshot.data,
        )?;
        compact_in(
            self.snapshot_id(),
            &mut self.entries,
            snapshot.index,
            snapshot.term,
        );
        self.snapshot = Some(snapshot);
        debug_assert_eq!(self.log.last_index(), self.last_index());
        Ok(())
    }

    fn first_index(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |s| s.index) + 1
    }

    fn last_index(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |s| s.index) + self.entries.len() as u64
    }

    fn term(&self, index: u64) -> Option<u64> {
        term_in(self.snapshot_id(), &self.entries, index)
    }

    fn entries(&self, low: u64, high: u64, size_bytes_max: u64) -> Vec<MetadataLogEntry> {
        let snapshot_index = self.first_index() - 1;
        entries_in(snapshot_index, &self.entries, low, high, size_bytes_max)
    }
}

/// The simulated disk behind [`MemLogStore`] handles.
#[derive(Debug, Default)]
struct MemDisk {
    /// The entries after the snapshot, as written.
    entries: Vec<MetadataLogEntry>,
    /// How many of `entries` are durable.
    durable_count: usize,
    hard_state: MetadataHardState,
    snapshot: Option<MetadataSnapshot>,
    /// Counts syncs down; the sync that finds it at 0 fails (fault injection).
    syncs_until_failure: Option<u64>,
    syncs: u64,
}

/// The simulation's store: a cloneable handle to one simulated disk. The quorum owns one
/// handle, the simulator keeps another to crash and reopen it. Hard state and snapshots are
/// durable at once (atomic file replacement); entries only after `sync`; a suffix truncation is
/// durable at once, as in [`MetadataLog`]. Not `Send`: the simulation is single-threaded.
#[derive(Debug, Clone, Default)]
pub struct MemLogStore {
    disk: Rc<RefCell<MemDisk>>,
}

impl MemLogStore {
    /// An empty disk.
    pub fn new() -> MemLogStore {
        MemLogStore::default()
    }

    /// Power loss: every entry not synced is gone.
    pub fn crash(&self) {
        self.crash_keeping_unsynced(0);
    }

    /// Process crash (`kill -9`): the page cache survives, so up to `count` of the entries
    /// written but not synced survive too (a prefix of them), the rest is lost.
    pub fn crash_keeping_unsynced(&self, count: usize) {
        let mut disk = self.disk.borrow_mut();
        let keep = disk
            .durable_count
            .saturating_add(count)
            .min(disk.entries.len());
        disk.entries.truncate(keep);
        disk.durable_count = keep;
        disk.syncs_until_failure = None;
    }

    /// Makes the sync after `syncs` more successful ones fail with an I/O error (the caller
    /// then treats the node as crashed).
    pub fn fail_sync_after(&self, syncs: u64) {
        self.disk.borrow_mut().syncs_until_failure = Some(syncs);
    }

    /// Entries written but not yet synced.
    pub fn unsynced_count(&self) -> usize {
        let disk = self.disk.borrow();
        disk.entries.len() - disk.durable_count
    }

    /// How many syncs succeeded on this disk.
    pub fn sync_count(&self) -> u64 {
        self.disk.borrow().syncs
    }

    fn snapshot_id(disk: &MemDisk) -> Option<(u64, u64)> {
        disk.snapshot.as_ref().map(|s| (s.index, s.term))
    }
}

impl RaftLogStore for MemLogStore {
    fn append(&mut self, entries: &[MetadataLogEntry]) -> Result<(), StorageError> {
        let mut disk = self.disk.borrow_mut();
        let disk = &mut *disk;
        let snapshot_index = disk.snapshot.as_ref().map_or(0, |s| s.index);
        if let Some(first) = entries.first() {
            let last = snapshot_index + disk.entries.len() as u64;
            assert!(
                first.index > snapshot_index && first.index <= last + 1,
                "append at {} to a log ending at {last}",
                first.index
            );
        }
        let kept = append_in(snapshot_index, &mut disk.entries, entries);
        disk.durable_count = disk.durable_count.min(kept);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        let mut disk = self.disk.borrow_mut();
        match disk.syncs_until_failure {
            Some(0) => {
                disk.syncs_until_failure = None;
                return Err(StorageError::Io {
                    operation: "fsync",
                    path: "simulated-disk".into(),
                    source: std::io::Error::other("injected sync failure"),
                });
            }
            Some(n) => disk.syncs_until_failure = Some(n - 1),
            None => {}
        }
        disk.durable_count = disk.entries.len();
        disk.syncs += 1;
        Ok(())
    }

    fn hard_state(&self) -> MetadataHardState {
        self.disk.borrow().hard_state
    }

    fn set_hard_state(&mut self, state: MetadataHardState) -> Result<(), StorageError> {
        self.disk.borrow_mut().hard_state = state;
        Ok(())
    }

    fn snapshot(&self) -> Option<MetadataSnapshot> {
        self.disk.borrow().snapshot.clone()
    }

    fn save_snapshot(&mut self, snapshot: MetadataSnapshot) -> Result<(), StorageError> {
        let mut disk = self.disk.borrow_mut();
        let disk = &mut *disk;
        let old = MemLogStore::snapshot_id(disk);
        assert!(old.is_none_or(|(index, _)| index < snapshot.index));
        compact_in(old, &mut disk.entries, snapshot.index, snapshot.term);
        // The compacted log is rewritten durably, as MetadataLog does.
        disk.durable_count = disk.entries.len();
        disk.snapshot = Some(snapshot);
        Ok(())
    }

    fn first_index(&self) -> u64 {
        self.disk.borrow().snapshot.as_ref().map_or(0, |s| s.index) + 1
    }

    fn last_index(&self) -> u64 {
        let disk = self.disk.borrow();
        disk.snapshot.as_ref().map_or(0, |s| s.index) + disk.entries.len() as u64
    }

    fn term(&self, index: u64) -> Option<u64> {
        let disk = self.disk.borrow();
        term_in(MemLogStore::snapshot_id(&disk), &disk.entries, index)
    }

    fn entries(&self, low: u64, high: u64, size_bytes_max: u64) -> Vec<MetadataLogEntry> {
        let disk = self.disk.borrow();
        let snapshot_index = disk.snapshot.as_ref().map_or(0, |s| s.index);
        entries_in(snapshot_index, &disk.entries, low, high, size_bytes_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn entry(index: u64, term: u64) -> MetadataLogEntry {
        MetadataLogEntry {
            index,
            term,
            payload: Bytes::from(format!("{index}/{term}")),
        }
    }

    fn snapshot(index: u64, term: u64) -> MetadataSnapshot {
        MetadataSnapshot {
            index,
            term,
            voters: Bytes::from_static(b"v"),
            data: Bytes::from(format!("state@{index}")),
        }
    }

    /// Both stores answer the same after the same operations (the file store checked across
    /// a reopen too).
    #[test]
    fn file_and_memory_stores_agree() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = FileLogStore::open(dir.path()).unwrap();
        let mut mem = MemLogStore::new();
        let stores: [&mut dyn RaftLogStore; 2] = [&mut file, &mut mem];
        for store in stores {
            assert_eq!((store.first_index(), store.last_index()), (1, 0));
            assert_eq!(store.term(0), Some(0));
            store
                .append(&(1..=6).map(|i| entry(i, 1)).collect::<Vec<_>>())
                .unwrap();
            store.append(&[entry(5, 2), entry(6, 2)]).unwrap();
            store.sync().unwrap();
            store
                .set_hard_state(MetadataHardState {
                    term: 2,
                    vote: 1,
                    commit: 5,
                })
                .unwrap();
            store.save_snapshot(snapshot(3, 1)).unwrap();
            assert_eq!((store.first_index(), store.last_index()), (4, 6));
            assert_eq!(store.term(3), Some(1));
            assert_eq!(store.term(2), None);
            assert_eq!(store.term(6), Some(2));
            assert_eq!(store.term(7), None);
            assert_eq!(store.entries(4, 7, u64::MAX).len(), 3);
            assert_eq!(store.entries(4, 7, 0), vec![entry(4, 1)]);
            assert_eq!(store.entries(5, 7, 3), vec![entry(5, 2)]);
        }
        drop(file);
        let file = FileLogStore::open(dir.path()).unwrap();
        assert_eq!(file.entries(4, 7, u64::MAX), mem.entries(4, 7, u64::MAX));
        assert_eq!(file.hard_state(), mem.hard_state());
        assert_eq!(file.snapshot(), mem.snapshot());
        // A snapshot whose term conflicts replaces the log.
        for store in [
            &mut FileLogStore::open(dir.path()).unwrap() as &mut dyn RaftLogStore,
            &mut mem,
        ] {
            store.save_snapshot(snapshot(5, 3)).unwrap();
            assert_eq!((store.first_index(), store.last_index()), (6, 5));
        }
    }

    #[test]
    fn mem_store_crash_drops_unsynced_entries_only() {
        let mut store = MemLogStore::new();
        let disk = store.clone();
        store.append(&[entry(1, 1), entry(2, 1)]).unwrap();
        store.sync().unwrap();
        store.append(&[entry(3, 1), entry(4, 1)]).unwrap();
        assert_eq!(disk.unsynced_count(), 2);
        disk.crash_keeping_unsynced(1);
        assert_eq!(store.last_index(), 3);
        disk.crash();
        assert_eq!(store.last_index(), 3, "kept entries became durable");
        store.append(&[entry(4, 2)]).unwrap();
        disk.crash();
        assert_eq!(store.last_index(), 3);
        // A truncation is durable at once.
        store.append(&[entry(2, 3)]).unwrap();
        disk.crash();
        assert_eq!(store.last_index(), 1);
        disk.fail_sync_after(1);
        store.sync().unwrap();
        assert!(store.sync().is_err());
        store.sync().unwrap();
    }
}
