//! The durable Raft log of the metadata quorum: `{data_dir}/__cluster_metadata-0/`.
//!
//! KRaft keeps the `__cluster_metadata` partition as a Kafka log plus `quorum-state` and
//! `.checkpoint` snapshots. Fjord's metadata quorum (crate `fjord-raft`) needs the same three
//! things, but the Raft library wants a plain entry log: `{index, term, payload}` with suffix
//! truncation on conflicts, an explicit fsync before anything is reported persisted, and
//! application-built snapshots that compact the log. The metadata log is small (the controller
//! snapshots it every `metadata.log.max.record.bytes.between.snapshots`), so this module keeps
//! one file of entries and the file positions of its entries in memory. It knows nothing of
//! Raft types: integers and bytes only (payloads are opaque).
//!
//! ## Files
//!
//! ```text
//! __cluster_metadata-0/
//!   raft-entries.log          records [len u32][crc32c u32][index u64][term u64][payload]
//!                             (big-endian; len = 16 + payload length; the CRC-32C covers
//!                             index, term and payload), indexes strictly consecutive
//!   quorum-state              {"version":0,"term":..,"vote":..,"commit":..} (Kafka's file
//!                             name), replaced atomically: temp, fsync, rename, fsync dir
//!   {index:020}-{term:010}.checkpoint   the newest snapshot: [version u32][crc32c u32 of the
//!                             rest][index u64][term u64][voters_len u32][voters][data_len u64]
//!                             [data], written atomically
//! ```
//!
//! ## Crash safety
//!
//! - `append` writes at the end of the file; `sync` fsyncs; the caller reports entries
//!   persisted only after `sync`. A suffix truncation (a Raft conflict) is made durable at
//!   once (`ftruncate` + fsync), so bytes of the old suffix can never resurface between the
//!   new records after a power loss.
//! - `open` scans every record; a torn or corrupt tail (short header, short record, impossible
//!   length, CRC mismatch) is cut with a warning: those entries were never synced. A record
//!   whose CRC is valid but whose index does not continue the log, or whose term goes down,
//!   cannot come from a crash and fails as [`StorageError::CorruptFile`].
//! - `save_snapshot` writes the checkpoint atomically first, then rewrites the log without the
//!   entries it covers (temp + rename), then deletes older checkpoints. A crash between the
//!   steps leaves a log that still holds covered entries; `open` drops them the same way.
//!   If the log has the snapshot's index with the snapshot's term, the entries after it stay
//!   (Raft's log matching: the prefixes agree); otherwise the whole log is replaced (a snapshot
//!   installed from the leader).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::{io_error, remove_file_if_exists, sync_dir, write_atomically, StorageError};

/// The metadata log's directory name in the data directory (KRaft's).
pub const METADATA_LOG_DIR_NAME: &str = "__cluster_metadata-0";
/// The file of entries inside [`METADATA_LOG_DIR_NAME`].
pub const METADATA_ENTRIES_FILE_NAME: &str = "raft-entries.log";
/// The hard state file (KRaft's name).
pub const QUORUM_STATE_FILE_NAME: &str = "quorum-state";
/// Largest payload of one entry.
pub const METADATA_ENTRY_PAYLOAD_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Largest snapshot (voters plus data).
pub const METADATA_SNAPSHOT_BYTES_MAX: usize = 256 * 1024 * 1024;
/// Largest voters (configuration) blob of a snapshot.
pub const METADATA_SNAPSHOT_VOTERS_BYTES_MAX: usize = 64 * 1024;

const CHECKPOINT_SUFFIX: &str = ".checkpoint";
const CHECKPOINT_VERSION: u32 = 0;
const CHECKPOINT_HEADER_BYTES: usize = 4 + 4 + 8 + 8 + 4;
const QUORUM_STATE_VERSION: u32 = 0;
const QUORUM_STATE_BYTES_MAX: u64 = 4096;
/// `[len u32][crc u32]`.
const RECORD_HEADER_BYTES: usize = 8;
/// `[index u64][term u64]`, the part of `len` that is not payload.
const RECORD_FIXED_BYTES: usize = 16;

/// One Raft log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataLogEntry {
    pub index: u64,
    pub term: u64,
    pub payload: Bytes,
}

/// Raft's hard state: current term, the vote cast in it (0 = none), the commit index known.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MetadataHardState {
    pub term: u64,
    pub vote: u64,
    pub commit: u64,
}

/// An application-built snapshot: everything up to and including `index` (of `term`).
/// `voters` is the quorum configuration as the caller encodes it; `data` is the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataSnapshot {
    pub index: u64,
    pub term: u64,
    pub voters: Bytes,
    pub data: Bytes,
}

/// What [`MetadataLog::open`] found: the newest snapshot, the hard state (all zero if none
/// was ever written) and the entries after the snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveredMetadataLog {
    pub snapshot: Option<MetadataSnapshot>,
    pub hard_state: MetadataHardState,
    pub entries: Vec<MetadataLogEntry>,
}

/// Where an entry is in the file.
#[derive(Debug, Clone, Copy)]
struct EntryLocation {
    term: u64,
    position: u64,
}

/// The metadata quorum's durable log; see the module docs.
#[derive(Debug)]
pub struct MetadataLog {
    dir: PathBuf,
    entries_path: PathBuf,
    file: File,
    /// Index of `locations[0]`; `snapshot_index + 1` once open has reconciled the log.
    first_index: u64,
    locations: Vec<EntryLocation>,
    /// End of the last record written.
    end_position: u64,
    /// Everything below this file position is on disk.
    synced_position: u64,
    /// `(index, term)` of the newest snapshot.
    snapshot_id: Option<(u64, u64)>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct QuorumStateFile {
    version: u32,
    term: u64,
    vote: u64,
    commit: u64,
}

fn invalid_input(operation: &'static str, path: &Path, reason: String) -> StorageError {
    StorageError::Io {
        operation,
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidInput, reason),
    }
}

fn corrupt(path: &Path, reason: String) -> StorageError {
    StorageError::CorruptFile {
        path: path.to_path_buf(),
        reason,
    }
}

fn encode_record(entry: &MetadataLogEntry, out: &mut Vec<u8>) {
    let len = RECORD_FIXED_BYTES + entry.payload.len();
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    let body_start = out.len() + RECORD_HEADER_BYTES;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&entry.index.to_be_bytes());
    out.extend_from_slice(&entry.term.to_be_bytes());
    out.extend_from_slice(&entry.payload);
    let crc = crc32c::crc32c(&out[body_start..]);
    out[body_start - 4..body_start].copy_from_slice(&crc.to_be_bytes());
}

fn be_u32(bytes: &[u8]) -> u32 {
    let mut buf = [0; 4];
    buf.copy_from_slice(&bytes[..4]);
    u32::from_be_bytes(buf)
}

fn be_u64(bytes: &[u8]) -> u64 {
    let mut buf = [0; 8];
    buf.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(buf)
}

/// One record parsed from the file.
struct ScannedRecord {
    position: u64,
    entry: MetadataLogEntry,
}

/// Parses records from the start of `bytes`; stops at the first torn or corrupt record and
/// returns the valid ones and where the valid prefix ends (with the reason it stopped early).
fn scan_records(bytes: &Bytes) -> (Vec<ScannedRecord>, usize, Option<String>) {
    let mut records = Vec::new();
    let mut position = 0usize;
    loop {
        let rest = &bytes[position..];
        if rest.is_empty() {
            return (records, position, None);
        }
        if rest.len() < RECORD_HEADER_BYTES {
            return (records, position, Some("torn record header".into()));
        }
        let len = be_u32(rest) as usize;
        let crc = be_u32(&rest[4..]);
        if !(RECORD_FIXED_BYTES..=RECORD_FIXED_BYTES + METADATA_ENTRY_PAYLOAD_BYTES_MAX)
            .contains(&len)
        {
            return (records, position, Some(format!("impossible length {len}")));
        }
        if rest.len() < RECORD_HEADER_BYTES + len {
            return (records, position, Some("torn record".into()));
        }
        let body = &rest[RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + len];
        if crc32c::crc32c(body) != crc {
            return (records, position, Some("CRC mismatch".into()));
        }
        let payload_start = position + RECORD_HEADER_BYTES + RECORD_FIXED_BYTES;
        records.push(ScannedRecord {
            position: position as u64,
            entry: MetadataLogEntry {
                index: be_u64(body),
                term: be_u64(&body[8..]),
                payload: bytes.slice(payload_start..position + RECORD_HEADER_BYTES + len),
            },
        });
        position += RECORD_HEADER_BYTES + len;
    }
}

fn checkpoint_file_name(index: u64, term: u64) -> String {
    format!("{index:020}-{term:010}{CHECKPOINT_SUFFIX}")
}

fn parse_checkpoint_file_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(CHECKPOINT_SUFFIX)?;
    let (index, term) = stem.split_once('-')?;
    if index.len() != 20 || term.len() != 10 {
        return None;
    }
    Some((index.parse().ok()?, term.parse().ok()?))
}

fn encode_checkpoint(index: u64, term: u64, voters: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(CHECKPOINT_HEADER_BYTES + voters.len() + 8 + data.len());
    out.extend_from_slice(&CHECKPOINT_VERSION.to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&index.to_be_bytes());
    out.extend_from_slice(&term.to_be_bytes());
    out.extend_from_slice(&(voters.len() as u32).to_be_bytes());
    out.extend_from_slice(voters);
    out.extend_from_slice(&(data.len() as u64).to_be_bytes());
    out.extend_from_slice(data);
    let crc = crc32c::crc32c(&out[8..]);
    out[4..8].copy_from_slice(&crc.to_be_bytes());
    out
}

fn read_checkpoint(path: &Path, index: u64, term: u64) -> Result<MetadataSnapshot, StorageError> {
    let size = std::fs::metadata(path)
        .map_err(io_error("stat", path))?
        .len();
    let size_max = (CHECKPOINT_HEADER_BYTES
        + METADATA_SNAPSHOT_VOTERS_BYTES_MAX
        + 8
        + METADATA_SNAPSHOT_BYTES_MAX) as u64;
    if size > size_max {
        return Err(corrupt(path, format!("{size} bytes is too large")));
    }
    let bytes = Bytes::from(std::fs::read(path).map_err(io_error("read", path))?);
    if bytes.len() < CHECKPOINT_HEADER_BYTES + 8 {
        return Err(corrupt(path, "truncated checkpoint".into()));
    }
    if be_u32(&bytes) != CHECKPOINT_VERSION {
        return Err(corrupt(path, "unknown checkpoint version".into()));
    }
    if crc32c::crc32c(&bytes[8..]) != be_u32(&bytes[4..]) {
        return Err(corrupt(path, "checkpoint CRC mismatch".into()));
    }
    let (file_index, file_term) = (be_u64(&bytes[8..]), be_u64(&bytes[16..]));
    if (file_index, file_term) != (index, term) {
        return Err(corrupt(
            path,
            "checkpoint name and contents disagree".into(),
        ));
    }
    let voters_len = be_u32(&bytes[24..]) as usize;
    let voters_end = CHECKPOINT_HEADER_BYTES + voters_len;
    if voters_len > METADATA_SNAPSHOT_VOTERS_BYTES_MAX || bytes.len() < voters_end + 8 {
        return Err(corrupt(path, "bad voters length".into()));
    }
    let data_len = be_u64(&bytes[voters_end..]);
    if data_len != (bytes.len() - voters_end - 8) as u64 {
        return Err(corrupt(path, "bad data length".into()));
    }
    Ok(MetadataSnapshot {
        index,
        term,
        voters: bytes.slice(CHECKPOINT_HEADER_BYTES..voters_end),
        data: bytes.slice(voters_end + 8..),
    })
}

/// Lists `(index, term, path)` of every checkpoint in `dir`, oldest first.
fn list_checkpoints(dir: &Path) -> Result<Vec<(u64, u64, PathBuf)>, StorageError> {
    let mut found = Vec::new();
    for item in std::fs::read_dir(dir).map_err(io_error("list", dir))? {
        let item = item.map_err(io_error("list", dir))?;
        let name = item.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some((index, term)) = parse_checkpoint_file_name(name) {
            found.push((index, term, item.path()));
        }
    }
    found.sort();
    Ok(found)
}

fn read_hard_state(path: &Path) -> Result<MetadataHardState, StorageError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.len() > QUORUM_STATE_BYTES_MAX => {
            return Err(corrupt(path, "file is too large".into()))
        }
        Ok(_) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Ok(MetadataHardState::default())
        }
        Err(error) => return Err(io_error("stat", path)(error)),
    }
    let bytes = std::fs::read(path).map_err(io_error("read", path))?;
    let state: QuorumStateFile =
        serde_json::from_slice(&bytes).map_err(|source| StorageError::Json {
            path: path.to_path_buf(),
            source,
        })?;
    if state.version != QUORUM_STATE_VERSION {
        return Err(corrupt(path, format!("unknown version {}", state.version)));
    }
    Ok(MetadataHardState {
        term: state.term,
        vote: state.vote,
        commit: state.commit,
    })
}

/// Reads the metadata log in `dir` without changing anything (no lock, no tail cut, no
/// compaction finished): for tools that look at a data dir while its node runs
/// (`fjord serve --print-config`). `None` if there is no metadata log. Entries stop at the
/// first torn or corrupt record; entries the newest snapshot covers are skipped.
pub fn read_metadata_log(dir: &Path) -> Result<Option<RecoveredMetadataLog>, StorageError> {
    if !dir.exists() {
        return Ok(None);
    }
    let checkpoints = list_checkpoints(dir)?;
    let snapshot = match checkpoints.last() {
        Some((index, term, path)) => Some(read_checkpoint(path, *index, *term)?),
        None => None,
    };
    let hard_state = read_hard_state(&dir.join(QUORUM_STATE_FILE_NAME))?;
    let entries_path = dir.join(METADATA_ENTRIES_FILE_NAME);
    let contents = match std::fs::read(&entries_path) {
        Ok(contents) => Bytes::from(contents),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Bytes::new(),
        Err(error) => return Err(io_error("read", &entries_path)(error)),
    };
    let (records, _, _) = scan_records(&contents);
    let after = snapshot.as_ref().map_or(0, |s| s.index);
    Ok(Some(RecoveredMetadataLog {
        snapshot,
        hard_state,
        entries: records
            .into_iter()
            .map(|r| r.entry)
            .filter(|entry| entry.index > after)
            .collect(),
    }))
}

impl MetadataLog {
    /// Opens (creating if needed) the metadata log in `dir` (normally
    /// `{data_dir}/__cluster_metadata-0`) and recovers it: newest checkpoint, hard state,
    /// entries after the checkpoint. Cuts a torn tail; see the module docs.
    pub fn open(dir: &Path) -> Result<(MetadataLog, RecoveredMetadataLog), StorageError> {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(io_error("create dir", dir))?;
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
        }
        // Temp files of interrupted atomic writes.
        for item in std::fs::read_dir(dir).map_err(io_error("list", dir))? {
            let item = item.map_err(io_error("list", dir))?;
            if item.file_name().to_string_lossy().ends_with(".tmp") {
                remove_file_if_exists(&item.path())?;
            }
        }

        let checkpoints = list_checkpoints(dir)?;
        let snapshot = match checkpoints.last() {
            Some((index, term, path)) => Some(read_checkpoint(path, *index, *term)?),
            None => None,
        };
        for (_, _, path) in checkpoints.iter().rev().skip(1) {
            remove_file_if_exists(path)?;
        }
        let hard_state = read_hard_state(&dir.join(QUORUM_STATE_FILE_NAME))?;

        let entries_path = dir.join(METADATA_ENTRIES_FILE_NAME);
        let created = !entries_path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&entries_path)
            .map_err(io_error("open", &entries_path))?;
        if created {
            sync_dir(dir)?;
        }
        let size = file
            .metadata()
            .map_err(io_error("stat", &entries_path))?
            .len();
        let mut contents = vec![0; size as usize];
        file.read_exact_at(&mut contents, 0)
            .map_err(io_error("read", &entries_path))?;
        let contents = Bytes::from(contents);
        let (records, valid_len, stop_reason) = scan_records(&contents);
        if let Some(reason) = stop_reason {
            tracing::warn!(path = %entries_path.display(), position = valid_len,
                cut_bytes = contents.len() - valid_len, %reason,
                "metadata log: cutting a torn or corrupt tail (never synced)");
            file.set_len(valid_len as u64)
                .map_err(io_error("truncate", &entries_path))?;
            file.sync_all().map_err(io_error("fsync", &entries_path))?;
        }
        for pair in records.windows(2) {
            let (previous, next) = (&pair[0].entry, &pair[1].entry);
            if next.index != previous.index + 1 {
                return Err(corrupt(
                    &entries_path,
                    format!("entry {} follows entry {}", next.index, previous.index),
                ));
            }
            if next.term < previous.term {
                return Err(corrupt(
                    &entries_path,
                    format!(
                        "entry {} has term {} below the term {} before it",
                        next.index, next.term, previous.term
                    ),
                ));
            }
        }

        let snapshot_id = snapshot.as_ref().map(|s| (s.index, s.term));
        let mut log = MetadataLog {
            dir: dir.to_path_buf(),
            entries_path,
            file,
            first_index: snapshot_id.map_or(1, |(index, _)| index + 1),
            locations: Vec::new(),
            end_position: valid_len as u64,
            synced_position: valid_len as u64,
            snapshot_id,
        };
        let first_found = records.first().map(|r| r.entry.index);
        let (keep_from, rewrite) = match (first_found, snapshot_id) {
            (None, _) => (0, false),
            (Some(first), None) => {
                if first != 1 {
                    return Err(corrupt(
                        &log.entries_path,
                        format!("log starts at entry {first} without a snapshot"),
                    ));
                }
                (0, false)
            }
            (Some(first), Some((snapshot_index, snapshot_term))) => {
                if first > snapshot_index + 1 {
                    return Err(corrupt(
                        &log.entries_path,
                        format!("log starts at entry {first} after snapshot {snapshot_index}"),
                    ));
                }
                if first == snapshot_index + 1 {
                    (0, false)
                } else {
                    let at = (snapshot_index - first) as usize;
                    match records.get(at) {
                        Some(r) if r.entry.term == snapshot_term => (at + 1, true),
                        _ => (records.len(), true),
                    }
                }
            }
        };
        let kept = &records[keep_from.min(records.len())..];
        if rewrite {
            // Finish the compaction a crash interrupted.
            let from = kept.first().map_or(valid_len as u64, |r| r.position);
            log.rewrite_from(from, valid_len as u64)?;
        }
        let base = kept.first().map_or(0, |r| r.position);
        log.locations = kept
            .iter()
            .map(|r| EntryLocation {
                term: r.entry.term,
                position: r.position - base,
            })
            .collect();
        if let Some(first) = kept.first() {
            log.first_index = first.entry.index;
        }
        let recovered = RecoveredMetadataLog {
            snapshot,
            hard_state,
            entries: kept.iter().map(|r| r.entry.clone()).collect(),
        };
        Ok((log, recovered))
    }

    /// The directory of this log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Index of the first entry held (the snapshot's index + 1, or 1).
    pub fn first_index(&self) -> u64 {
        self.first_index
    }

    /// Index of the last entry held (the snapshot's index, or 0, if none).
    pub fn last_index(&self) -> u64 {
        self.first_index + self.locations.len() as u64 - 1
    }

    /// Term of the entry at `index`, if held (or if it is the snapshot's index).
    pub fn term(&self, index: u64) -> Option<u64> {
        if let Some((snapshot_index, snapshot_term)) = self.snapshot_id {
            if index == snapshot_index {
                return Some(snapshot_term);
            }
        }
        if index < self.first_index {
            return None;
        }
        self.locations
            .get((index - self.first_index) as usize)
            .map(|l| l.term)
    }

    /// Appends `entries` (consecutive indexes, non-decreasing terms). The first may overwrite
    /// a suffix: entries at or above its index are dropped first, durably, as Raft requires
    /// on a conflict. Nothing is durable before [`MetadataLog::sync`].
    pub fn append(&mut self, entries: &[MetadataLogEntry]) -> Result<(), StorageError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let path = self.entries_path.clone();
        for pair in entries.windows(2) {
            if pair[1].index != pair[0].index + 1 || pair[1].term < pair[0].term {
                return Err(invalid_input(
                    "append",
                    &path,
                    format!(
                        "entry {} (term {}) cannot follow entry {} (term {})",
                        pair[1].index, pair[1].term, pair[0].index, pair[0].term
                    ),
                ));
            }
        }
        if let Some(entry) = entries
            .iter()
            .find(|e| e.payload.len() > METADATA_ENTRY_PAYLOAD_BYTES_MAX)
        {
            return Err(invalid_input(
                "append",
                &path,
                format!(
                    "entry {} has {} bytes, more than {METADATA_ENTRY_PAYLOAD_BYTES_MAX}",
                    entry.index,
                    entry.payload.len()
                ),
            ));
        }
        let snapshot_index = self.first_index - 1;
        if first.index <= snapshot_index || first.index > self.last_index() + 1 {
            return Err(invalid_input(
                "append",
                &path,
                format!(
                    "entry {} does not continue the log [{}, {}]",
                    first.index,
                    self.first_index,
                    self.last_index()
                ),
            ));
        }
        let previous_term = self.term(first.index - 1).unwrap_or(0);
        if first.term < previous_term {
            return Err(invalid_input(
                "append",
                &path,
                format!(
                    "entry {} has term {} below the previous term {previous_term}",
                    first.index, first.term
                ),
            ));
        }
        if first.index <= self.last_index() {
            let keep = (first.index - self.first_index) as usize;
            let cut_position = self.locations[keep].position;
            self.locations.truncate(keep);
            self.file
                .set_len(cut_position)
                .map_err(io_error("truncate", &path))?;
            // Durable at once: stale records must never reappear after a power loss.
            self.file.sync_all().map_err(io_error("fsync", &path))?;
            self.end_position = cut_position;
            self.synced_position = cut_position;
        }
        let mut buffer = Vec::new();
        for entry in entries {
            self.locations.push(EntryLocation {
                term: entry.term,
                position: self.end_position + buffer.len() as u64,
            });
            encode_record(entry, &mut buffer);
        }
        if let Err(error) = self.file.write_all_at(&buffer, self.end_position) {
            // Forget what may be half written; the next append or open cuts it.
            let kept = (first.index - self.first_index) as usize;
            self.locations.truncate(kept);
            return Err(io_error("write", &path)(error));
        }
        self.end_position += buffer.len() as u64;
        Ok(())
    }

    /// Makes every appended entry durable (fsync).
    pub fn sync(&mut self) -> Result<(), StorageError> {
        if self.synced_position == self.end_position {
            return Ok(());
        }
        self.file
            .sync_data()
            .map_err(io_error("fsync", &self.entries_path))?;
        self.synced_position = self.end_position;
        Ok(())
    }

    /// Replaces `quorum-state` atomically and durably.
    pub fn set_hard_state(&mut self, state: &MetadataHardState) -> Result<(), StorageError> {
        let path = self.dir.join(QUORUM_STATE_FILE_NAME);
        let file = QuorumStateFile {
            version: QUORUM_STATE_VERSION,
            term: state.term,
            vote: state.vote,
            commit: state.commit,
        };
        let bytes = serde_json::to_vec(&file).map_err(|source| StorageError::Json {
            path: path.clone(),
            source,
        })?;
        write_atomically(&path, &bytes)
    }

    /// `(index, term)` of the newest snapshot.
    pub fn latest_snapshot_id(&self) -> Option<(u64, u64)> {
        self.snapshot_id
    }

    /// Reads the newest snapshot back from its checkpoint file.
    pub fn latest_snapshot(&self) -> Result<Option<MetadataSnapshot>, StorageError> {
        match self.snapshot_id {
            Some((index, term)) => {
                let path = self.dir.join(checkpoint_file_name(index, term));
                read_checkpoint(&path, index, term).map(Some)
            }
            None => Ok(None),
        }
    }

    /// Writes a snapshot of everything up to `index` (of `term`) atomically, then compacts
    /// the log: entries up to `index` go; the entries after it stay only if the log holds
    /// `index` with `term` (else the snapshot replaces the whole log, as when a follower
    /// installs the leader's snapshot). Older checkpoints are deleted last.
    pub fn save_snapshot(
        &mut self,
        index: u64,
        term: u64,
        voters: &[u8],
        data: &[u8],
    ) -> Result<(), StorageError> {
        let path = self.dir.join(checkpoint_file_name(index, term));
        if let Some((snapshot_index, _)) = self.snapshot_id {
            if index <= snapshot_index {
                return Err(invalid_input(
                    "save snapshot",
                    &path,
                    format!("snapshot {index} is not newer than snapshot {snapshot_index}"),
                ));
            }
        }
        if index == 0 {
            return Err(invalid_input(
                "save snapshot",
                &path,
                "snapshot index 0".into(),
            ));
        }
        if data.len() > METADATA_SNAPSHOT_BYTES_MAX
            || voters.len() > METADATA_SNAPSHOT_VOTERS_BYTES_MAX
        {
            return Err(invalid_input(
                "save snapshot",
                &path,
                format!(
                    "snapshot of {} + {} bytes exceeds the limits {METADATA_SNAPSHOT_VOTERS_BYTES_MAX} + {METADATA_SNAPSHOT_BYTES_MAX}",
                    voters.len(),
                    data.len()
                ),
            ));
        }
        write_atomically(&path, &encode_checkpoint(index, term, voters, data))?;

        let keep_suffix = self.term(index) == Some(term) && index >= self.first_index;
        let (from, kept) = if keep_suffix {
            let at = (index + 1 - self.first_index) as usize;
            let from = self
                .locations
                .get(at)
                .map_or(self.end_position, |l| l.position);
            (from, self.locations.split_off(at))
        } else {
            (self.end_position, Vec::new())
        };
        self.rewrite_from(from, self.end_position)?;
        self.locations = kept
            .into_iter()
            .map(|l| EntryLocation {
                term: l.term,
                position: l.position - from,
            })
            .collect();
        self.first_index = index + 1;
        let old_snapshot = self.snapshot_id.replace((index, term));
        for (old_index, old_term, old_path) in list_checkpoints(&self.dir)? {
            if (old_index, old_term) != (index, term) {
                remove_file_if_exists(&old_path)?;
            }
        }
        debug_assert!(old_snapshot.is_none_or(|(i, _)| i < index));
        Ok(())
    }

    /// Replaces the entries file with its bytes `[from, to)` (temp, fsync, rename, fsync dir)
    /// and reopens it.
    fn rewrite_from(&mut self, from: u64, to: u64) -> Result<(), StorageError> {
        let path = self.entries_path.clone();
        let mut kept = vec![0; (to - from) as usize];
        self.file
            .read_exact_at(&mut kept, from)
            .map_err(io_error("read", &path))?;
        let mut tmp_name = path.as_os_str().to_owned();
        tmp_name.push(".tmp");
        let tmp_path = PathBuf::from(tmp_name);
        {
            let mut tmp = File::create(&tmp_path).map_err(io_error("create", &tmp_path))?;
            tmp.write_all(&kept).map_err(io_error("write", &tmp_path))?;
            tmp.sync_all().map_err(io_error("fsync", &tmp_path))?;
        }
        std::fs::rename(&tmp_path, &path).map_err(io_error("rename", &path))?;
        sync_dir(&self.dir)?;
        self.file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_error("open", &path))?;
        self.end_position = to - from;
        self.synced_position = self.end_position;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
