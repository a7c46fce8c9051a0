//! A broker-only node's metadata (design 3.3): an observer of the metadata quorum.
//!
//! Kafka's broker-only nodes (`process.roles=broker`) are KRaft observers: they fetch the
//! committed `__cluster_metadata` log from the leader, keep it on disk, and replay it through
//! the `MetadataLoader` into images for the broker's publishers. Fjord's do the same with
//! FetchMetadata ([`crate::metadata_fetch`]) from any voter:
//!
//! - [`MetadataObserver`] (sans-IO apart from its own files) keeps the fetched entries in the
//!   voters' layout (`{data_dir}/__cluster_metadata-0/`, `fjord_storage::MetadataLog`) minus
//!   `quorum-state`: everything it holds is committed, so a restart replays the whole local
//!   log and resumes fetching after its last index. Entries are replayed into a delta *before*
//!   they are written (nothing that fails to replay is kept), written and fsynced, then
//!   published. It snapshots its own image every `snapshot_interval_bytes` of entries, as the
//!   voters do, so the local log stays small. A voter's snapshot (when the observer is behind
//!   the voters' compaction) arrives in chunks through [`SnapshotDownload`] and replaces the
//!   local log.
//! - [`ObserverRuntime`] shares it between tasks like [`crate::metadata_runtime`] does for
//!   voters: one lock, images to the publisher (the broker's `publish_metadata`) in log order
//!   and to subscribers. A failure (an entry that does not replay, a failed disk) poisons it;
//!   the node must restart.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use fjord_metadata::{decode_batch, encode_batch, image_to_records, MetadataDelta, MetadataImage};
use fjord_storage::{MetadataLog, MetadataLogEntry, StorageError, METADATA_SNAPSHOT_BYTES_MAX};
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

use crate::metadata_node::PublishedImage;
use crate::metadata_runtime::{Publisher, RuntimeFailed};

/// Why the observer cannot go on; the node must stop (and, after a fix, restart).
#[derive(Debug, thiserror::Error)]
pub enum ObserverError {
    #[error("metadata log: {0}")]
    Storage(#[from] StorageError),
    #[error("committed metadata entry {index} does not decode: {reason}")]
    Decode { index: u64, reason: String },
    #[error("committed metadata entry {index} does not replay: {reason}")]
    Replay { index: u64, reason: String },
    #[error("fetched entry {got} does not follow the last entry {last}")]
    NotContiguous { last: u64, got: u64 },
    #[error("snapshot download: {0}")]
    Snapshot(String),
    #[error("{0} holds a voter's metadata log (quorum-state), whose tail may be uncommitted; a broker-only node keeps committed entries only: move that directory away and the node fetches the log from the voters")]
    VoterLog(String),
}

/// Replays one entry's records into `delta` (an empty payload is a leader's no-op entry).
fn replay_entry(delta: &mut MetadataDelta, entry: &MetadataLogEntry) -> Result<(), ObserverError> {
    if entry.payload.is_empty() {
        return Ok(());
    }
    let records = decode_batch(&entry.payload).map_err(|error| ObserverError::Decode {
        index: entry.index,
        reason: error.to_string(),
    })?;
    for record in &records {
        delta
            .replay(record)
            .map_err(|error| ObserverError::Replay {
                index: entry.index,
                reason: error.to_string(),
            })?;
    }
    Ok(())
}

/// The image a snapshot's records describe, staged on the empty image.
fn replay_snapshot(index: u64, data: &[u8]) -> Result<MetadataDelta, ObserverError> {
    let records = decode_batch(data).map_err(|error| ObserverError::Decode {
        index,
        reason: format!("snapshot: {error}"),
    })?;
    let mut delta = MetadataDelta::new(Arc::new(MetadataImage::empty()));
    for record in &records {
        delta
            .replay(record)
            .map_err(|error| ObserverError::Replay {
                index,
                reason: format!("snapshot: {error}"),
            })?;
    }
    Ok(delta)
}

/// The observer's log and image; see the module docs.
pub struct MetadataObserver {
    log: MetadataLog,
    image: Arc<MetadataImage>,
    /// Index and term of the last entry held and applied (0, 0 when empty).
    last: (u64, u64),
    bytes_since_snapshot: u64,
    snapshot_interval_bytes: u64,
}

impl MetadataObserver {
    /// Opens (creating if needed) the local metadata log in `dir` and replays it: the newest
    /// snapshot, then every entry after it (all committed). A voter's log (it has
    /// `quorum-state`, and maybe an uncommitted tail) is refused.
    pub fn open(dir: &Path, snapshot_interval_bytes: u64) -> Result<Self, ObserverError> {
        if dir.join(fjord_storage::QUORUM_STATE_FILE_NAME).exists() {
            return Err(ObserverError::VoterLog(dir.display().to_string()));
        }
        let (log, recovered) = MetadataLog::open(dir)?;
        let mut last = (0, 0);
        let mut delta = match &recovered.snapshot {
            Some(snapshot) => {
                last = (snapshot.index, snapshot.term);
                replay_snapshot(snapshot.index, &snapshot.data)?
            }
            None => MetadataDelta::new(Arc::new(MetadataImage::empty())),
        };
        let mut bytes_since_snapshot = 0;
        for entry in &recovered.entries {
            replay_entry(&mut delta, entry)?;
            last = (entry.index, entry.term);
            bytes_since_snapshot += entry.payload.len() as u64;
        }
        let image = delta.apply(last.0 as i64, last.1 as i32);
        Ok(Self {
            log,
            image,
            last,
            bytes_since_snapshot,
            snapshot_interval_bytes,
        })
    }

    pub fn image(&self) -> &Arc<MetadataImage> {
        &self.image
    }

    /// The index to fetch from next.
    pub fn next_index(&self) -> u64 {
        self.last.0 + 1
    }

    /// Index and term of the last entry applied.
    pub fn last(&self) -> (u64, u64) {
        self.last
    }

    /// Takes fetched committed entries: those already held are skipped, the rest must
    /// continue the log. Replayed, then written and fsynced, then the new image is returned
    /// (`None` when nothing was new).
    pub fn append_committed(
        &mut self,
        entries: &[MetadataLogEntry],
    ) -> Result<Option<PublishedImage>, ObserverError> {
        let new: Vec<MetadataLogEntry> = entries
            .iter()
            .filter(|e| e.index > self.last.0)
            .cloned()
            .collect();
        let Some(first) = new.first() else {
            return Ok(None);
        };
        if first.index != self.last.0 + 1 {
            return Err(ObserverError::NotContiguous {
                last: self.last.0,
                got: first.index,
            });
        }
        let mut delta = MetadataDelta::new(self.image.clone());
        let mut last = self.last;
        for entry in &new {
            if entry.index != last.0 + 1 || entry.term < last.1 {
                return Err(ObserverError::NotContiguous {
                    last: last.0,
                    got: entry.index,
                });
            }
            replay_entry(&mut delta, entry)?;
            last = (entry.index, entry.term);
        }
        self.log.append(&new)?;
        self.log.sync()?;
        self.bytes_since_snapshot += new.iter().map(|e| e.payload.len() as u64).sum::<u64>();
        self.last = last;
        let image = delta.clone().apply(last.0 as i64, last.1 as i32);
        self.image = image.clone();
        self.maybe_snapshot()?;
        Ok(Some(PublishedImage { delta, image }))
    }

    /// Replaces log and image with a voter's snapshot (everything up to `index`); the delta
    /// returned starts from the empty image (it lists everything as created).
    pub fn install_snapshot(
        &mut self,
        index: u64,
        term: u64,
        data: &[u8],
    ) -> Result<PublishedImage, ObserverError> {
        if index <= self.last.0 {
            return Err(ObserverError::Snapshot(format!(
                "snapshot {index} is not ahead of the last entry {}",
                self.last.0
            )));
        }
        let delta = replay_snapshot(index, data)?;
        // No voter configuration: an observer has none (a voter refuses this snapshot).
        self.log.save_snapshot(index, term, &[], data)?;
        self.last = (index, term);
        self.bytes_since_snapshot = 0;
        let image = delta.clone().apply(index as i64, term as i32);
        self.image = image.clone();
        Ok(PublishedImage { delta, image })
    }

    fn maybe_snapshot(&mut self) -> Result<(), ObserverError> {
        if self.bytes_since_snapshot < self.snapshot_interval_bytes || self.last.0 == 0 {
            return Ok(());
        }
        let data = encode_batch(&image_to_records(&self.image));
        self.log
            .save_snapshot(self.last.0, self.last.1, &[], &data)?;
        self.bytes_since_snapshot = 0;
        Ok(())
    }
}

/// A voter's snapshot being fetched chunk by chunk (FetchMetadataSnapshot), bounded by
/// `METADATA_SNAPSHOT_BYTES_MAX`.
#[derive(Debug)]
pub struct SnapshotDownload {
    pub index: u64,
    pub term: u64,
    size_bytes: u64,
    data: Vec<u8>,
}

impl SnapshotDownload {
    pub fn new(index: u64, term: u64, size_bytes: u64) -> Result<Self, ObserverError> {
        if size_bytes > METADATA_SNAPSHOT_BYTES_MAX as u64 {
            return Err(ObserverError::Snapshot(format!(
                "snapshot of {size_bytes} bytes exceeds {METADATA_SNAPSHOT_BYTES_MAX}"
            )));
        }
        Ok(Self {
            index,
            term,
            size_bytes,
            data: Vec::new(),
        })
    }

    /// Where the next chunk starts.
    pub fn position(&self) -> u64 {
        self.data.len() as u64
    }

    pub fn is_complete(&self) -> bool {
        self.position() == self.size_bytes
    }

    /// Adds the chunk a voter sent for (`index`, `term`) of `size_bytes` at `position`.
    /// A chunk of another snapshot, size or position, or past the end, is an error (the
    /// caller starts over).
    pub fn accept(
        &mut self,
        index: u64,
        term: u64,
        size_bytes: u64,
        position: u64,
        chunk: &[u8],
    ) -> Result<(), ObserverError> {
        if (index, term, size_bytes) != (self.index, self.term, self.size_bytes) {
            return Err(ObserverError::Snapshot(format!(
                "chunk of snapshot ({index}, {term}, {size_bytes} bytes) while fetching ({}, {}, {} bytes)",
                self.index, self.term, self.size_bytes
            )));
        }
        if position != self.position() {
            return Err(ObserverError::Snapshot(format!(
                "chunk at {position}, expected {}",
                self.position()
            )));
        }
        if chunk.is_empty() && !self.is_complete() {
            return Err(ObserverError::Snapshot("empty chunk".into()));
        }
        if self.position() + chunk.len() as u64 > self.size_bytes {
            return Err(ObserverError::Snapshot("chunk past the end".into()));
        }
        self.data.extend_from_slice(chunk);
        Ok(())
    }

    /// The whole snapshot, once complete.
    pub fn into_data(self) -> Option<Bytes> {
        self.is_complete().then(|| Bytes::from(self.data))
    }
}

/// A [`MetadataObserver`] shared between the fetch task and the broker; see the module docs.
pub struct ObserverRuntime {
    observer: Mutex<MetadataObserver>,
    publisher: RwLock<Option<Publisher>>,
    image: watch::Sender<Arc<MetadataImage>>,
    failed: RwLock<Option<String>>,
}

impl ObserverRuntime {
    pub fn new(observer: MetadataObserver) -> Arc<Self> {
        let (image, _) = watch::channel(observer.image().clone());
        Arc::new(Self {
            observer: Mutex::new(observer),
            publisher: RwLock::new(None),
            image,
            failed: RwLock::new(None),
        })
    }

    /// Installs the function every new image goes to (the broker's `publish_metadata`).
    pub fn set_publisher(&self, publisher: Publisher) {
        *self.publisher.write() = Some(publisher);
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.image.subscribe()
    }

    pub fn next_index(&self) -> u64 {
        self.observer.lock().next_index()
    }

    pub fn failure(&self) -> Option<RuntimeFailed> {
        self.failed.read().clone().map(RuntimeFailed)
    }

    /// Takes fetched committed entries (blocking: writes and fsyncs).
    pub fn append_committed(&self, entries: &[MetadataLogEntry]) -> Result<(), RuntimeFailed> {
        self.run(|observer| observer.append_committed(entries))
    }

    /// Installs a voter's snapshot (blocking: writes and fsyncs).
    pub fn install_snapshot(
        &self,
        index: u64,
        term: u64,
        data: &[u8],
    ) -> Result<(), RuntimeFailed> {
        self.run(|observer| observer.install_snapshot(index, term, data).map(Some))
    }

    fn run(
        &self,
        step: impl FnOnce(&mut MetadataObserver) -> Result<Option<PublishedImage>, ObserverError>,
    ) -> Result<(), RuntimeFailed> {
        if let Some(failed) = self.failure() {
            return Err(failed);
        }
        let mut observer = self.observer.lock();
        match step(&mut observer) {
            Ok(Some(published)) => {
                // Under the lock: publishers see images in log order.
                if let Some(publisher) = self.publisher.read().as_ref() {
                    publisher(&published.delta, &published.image);
                }
                self.image.send_replace(published.image);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(error) => {
                let reason = error.to_string();
                tracing::error!(error = %reason, "metadata observer failed; the node must restart");
                *self.failed.write() = Some(reason.clone());
                Err(RuntimeFailed(reason))
            }
        }
    }
}

#[cfg(test)]
mod tests;
