//! # fjord-storage: the partition log, laid out on disk exactly like Kafka's
//!
//! This is the only crate that touches log files, and it never opens a socket.
//!
//! ## On-disk layout
//!
//! ```text
//! {data_dir}/
//!   .lock                        exclusive lock held while a broker uses the directory
//!   .kafka_cleanshutdown         present only between a clean shutdown and the next start
//!   meta.properties              version=1, node.id, cluster.id
//!   topics.json                  topic names, ids, partition counts and configs
//!   broker-configs.json          dynamic broker configs (cluster default and this broker's)
//!   {topic}-{partition}/         one directory per partition log
//!     00000000000000000000.log        segment: v2 record batches exactly as on the wire,
//!                                     base offset and partition leader epoch patched
//!     00000000000000000000.index      OffsetIndex: 8-byte entries (relative offset u32,
//!                                     file position u32), one per `index_interval_bytes`
//!     00000000000000000000.timeindex  TimeIndex: 12-byte entries (max timestamp so far i64,
//!                                     relative offset u32)
//!     00000000000000000000.txnindex   TransactionIndex: aborted transactions whose ABORT marker
//!                                     is in this segment, Kafka's 34-byte entries (created with
//!                                     the first entry)
//!     00000000000000000100.snapshot   producer state as of offset 100 (written at each roll and
//!                                     at close; see `producer_state`)
//!     leader-epoch-checkpoint         "0\n{count}\n{epoch} {start_offset}\n..."
//!     recovery-point-offset-checkpoint  "0\n{offset}\n": everything below is fsynced
//!     log-start-offset-checkpoint  "0\n{offset}\n": log start inside the first segment (DeleteRecords)
//!     cleaner-offset-checkpoint    "0\n{offset}\n": compacted logs: the cleaner's first dirty offset
//!     cleaner-swap                 only during a cleaner swap: replaced range and new segments
//!     *.cleaned, cleaner-swap.prepared  a cleaner pass's output before its swap (strays at start)
//!   {topic}-{partition}.{uuid}-delete/  a log being deleted (removed on next start)
//! ```
//!
//! A segment file is named after its base offset (the first offset it may hold), zero-padded
//! to 20 digits. All integers in index files are big-endian, offsets relative to the segment's
//! base offset. Index entries point at the start of a batch and name that batch's last offset.
//!
//! Indexes are kept in memory and written out when a segment rolls, on flush and on close.
//! After a crash every segment ending above the recovery point (always the active one; also
//! sealed segments the background sync had not reached) and any segment whose index is
//! missing or implausible is rescanned batch by batch, checking lengths and CRCs, truncated at the first torn or
//! corrupt batch, and its indexes rebuilt.

mod broker_configs;
mod checkpoints;
pub mod cleaner;
mod epoch;
mod file_records;
mod index;
mod log;
mod manager;
mod metadata_log;
pub mod producer_ids;
mod producer_state;
mod segment;
mod txn_index;

use std::io;
use std::path::PathBuf;

pub use broker_configs::{read_dynamic_broker_configs, DynamicBrokerConfigs};
pub use checkpoints::{
    kafka_uuid_string, read_partition_metadata, read_replication_offset_checkpoint,
    write_partition_metadata, write_replication_offset_checkpoint, PARTITION_METADATA_FILE,
    REPLICATION_OFFSET_CHECKPOINT_FILE,
};
pub use cleaner::{CleanedLog, CleanerConfig, CleanerStats, LogToClean, Throttler};
pub use file_records::FileRecords;
pub use fjord_protocol::records::RecordError;
pub use log::{
    FetchDataInfo, Isolation, Log, LogAppendInfo, LogConfig, SwapCommitted, TimestampAndOffset,
};
pub use manager::{
    load_legacy_topics, read_meta_properties, rename_legacy_metadata_files, write_meta_properties,
    LogManager, MetaProperties, TopicRecord, MIGRATED_SUFFIX, STRAY_DIR_SUFFIX,
};
pub use metadata_log::{
    read_metadata_log, MetadataHardState, MetadataLog, MetadataLogEntry, MetadataSnapshot,
    RecoveredMetadataLog, METADATA_ENTRIES_FILE_NAME, METADATA_ENTRY_PAYLOAD_BYTES_MAX,
    METADATA_LOG_DIR_NAME, METADATA_SNAPSHOT_BYTES_MAX, METADATA_SNAPSHOT_VOTERS_BYTES_MAX,
    QUORUM_STATE_FILE_NAME,
};
pub use producer_state::{
    ActiveProducer, AppendOrigin, ProducerStateError, MAX_PRODUCERS_PER_PARTITION,
    NUM_BATCHES_TO_RETAIN,
};
pub use txn_index::AbortedTxn;

/// Everything that can go wrong in storage.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{operation} {}: {source}", path.display())]
    Io {
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("offset {offset} is out of range [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    #[error("invalid records: {0}")]
    InvalidRecords(#[from] RecordError),
    #[error("records of {size_bytes} bytes exceed segment size {segment_bytes}")]
    RecordBatchTooLarge {
        size_bytes: usize,
        segment_bytes: u64,
    },
    #[error("corrupt log {} at position {position}: {source}", path.display())]
    CorruptLog {
        path: PathBuf,
        position: u64,
        #[source]
        source: RecordError,
    },
    #[error("corrupt file {}: {reason}", path.display())]
    CorruptFile { path: PathBuf, reason: String },
    #[error("data directory {} is locked by another broker", path.display())]
    DirectoryLocked { path: PathBuf },
    #[error("invalid topic name {name:?}")]
    InvalidTopicName { name: String },
    #[error("json {}: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A follower append whose batch starts below the log end offset or below the end of the
    /// previous batch in the same call (Kafka's `UnexpectedAppendOffsetException`): the
    /// fetcher's state is out of step with the log, and nothing was written.
    #[error("unexpected append offset: batch at offset {offset}, expected at least {expected}")]
    UnexpectedAppendOffset { offset: i64, expected: i64 },
    /// The producer state refused an append (idempotence, fencing, transactions).
    #[error(transparent)]
    Producer(#[from] ProducerStateError),
}

/// Wraps an `io::Error` with what we were doing and to which file.
pub(crate) fn io_error(
    operation: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> StorageError {
    let path = path.into();
    move |source| StorageError::Io {
        operation,
        path,
        source,
    }
}

/// Writes `contents` to `path` atomically: temp file, fsync, rename, fsync the directory.
pub(crate) fn write_atomically(
    path: &std::path::Path,
    contents: &[u8],
) -> Result<(), StorageError> {
    write_replacing(path, contents, true)
}

/// Replaces `path` with `contents` through a temp file and a rename, so a reader or a process
/// crash sees the old or the new file, never a mix. With `durable`, the file and its directory
/// are fsynced too (without it a power loss may leave the old file, an empty one, or none).
pub(crate) fn write_replacing(
    path: &std::path::Path,
    contents: &[u8],
    durable: bool,
) -> Result<(), StorageError> {
    use std::io::Write;
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp_path = PathBuf::from(tmp_name);
    let mut file = std::fs::File::create(&tmp_path).map_err(io_error("create", &tmp_path))?;
    file.write_all(contents)
        .map_err(io_error("write", &tmp_path))?;
    if durable {
        file.sync_all().map_err(io_error("fsync", &tmp_path))?;
    }
    std::fs::rename(&tmp_path, path).map_err(io_error("rename", path))?;
    if durable {
        if let Some(parent) = path.parent() {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Deletes `path`; a file that is already gone is fine.
pub(crate) fn remove_file_if_exists(path: &std::path::Path) -> Result<(), StorageError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(io_error("remove", path)(error)),
    }
}

/// Fsyncs a directory so that creates, renames and deletes in it are durable.
pub(crate) fn sync_dir(dir: &std::path::Path) -> Result<(), StorageError> {
    let handle = std::fs::File::open(dir).map_err(io_error("open dir", dir))?;
    handle.sync_all().map_err(io_error("fsync dir", dir))
}

/// Total and usable bytes of the file system holding `path` (`statvfs`), for DescribeLogDirs.
pub fn filesystem_space_bytes(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_path` is a valid NUL-terminated string and `stat` points to writable memory
    // of the right type; statvfs fills it entirely when it returns 0.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so the struct is initialised.
    let stat = unsafe { stat.assume_init() };
    // These are u32 or u64 depending on the platform's libc; u64 on the 64-bit Linux we build.
    #[allow(clippy::useless_conversion)]
    let block = u64::from(stat.f_frsize);
    #[allow(clippy::useless_conversion)]
    Some((
        u64::from(stat.f_blocks).saturating_mul(block),
        u64::from(stat.f_bavail).saturating_mul(block),
    ))
}
