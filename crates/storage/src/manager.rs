//! `LogManager`: owns the data directory, its lock, the clean-shutdown marker and the
//! broker-level metadata files.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::log::{Log, LogConfig};
use crate::{io_error, sync_dir, write_atomically, StorageError};

const LOCK_FILE_NAME: &str = ".lock";
const CLEAN_SHUTDOWN_FILE_NAME: &str = ".kafka_cleanshutdown";
const META_PROPERTIES_FILE_NAME: &str = "meta.properties";
const TOPICS_FILE_NAME: &str = "topics.json";
const DELETE_DIR_SUFFIX: &str = "-delete";
/// Kafka's `StrayDirSuffix`: a partition directory moved aside because the metadata does not
/// assign the partition to this broker (KAFKA-14616).
pub const STRAY_DIR_SUFFIX: &str = "-stray";
/// Longest directory name most file systems accept (Kafka caps renamed log dirs at it).
const DIR_NAME_LENGTH_MAX: usize = 255;

/// A topic as persisted in `topics.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub name: String,
    pub topic_id: uuid::Uuid,
    pub partitions: i32,
    pub configs: BTreeMap<String, String>,
}

/// `meta.properties`, as Kafka writes it for a KRaft broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaProperties {
    pub version: i32,
    pub node_id: i32,
    pub cluster_id: String,
}

#[derive(Debug)]
pub struct LogManager {
    data_dir: PathBuf,
    /// Held open for its exclusive lock; released when the manager is dropped.
    _lock_file: File,
    /// No broker had opened the directory before this one (see [`LogManager::is_new_directory`]).
    new_directory: bool,
}

impl LogManager {
    /// Opens `data_dir`, locking it against other brokers. Returns whether the previous run
    /// shut down cleanly; the marker is removed so that a crash from now on is detected. A
    /// directory no broker has opened before has no marker either, but had no previous run:
    /// see [`LogManager::is_new_directory`].
    pub fn open(data_dir: &Path) -> Result<(LogManager, bool), StorageError> {
        std::fs::create_dir_all(data_dir).map_err(io_error("create dir", data_dir))?;
        let lock_path = data_dir.join(LOCK_FILE_NAME);
        let marker_path = data_dir.join(CLEAN_SHUTDOWN_FILE_NAME);
        // The lock file is created by the first open and never removed, so its absence means
        // no broker ever opened the directory (other nodes' files, such as the metadata log,
        // may already be there).
        let new_directory = !lock_path.exists() && !marker_path.exists();
        let lock_file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error("open", &lock_path))?;
        match lock_file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StorageError::DirectoryLocked {
                    path: data_dir.to_path_buf(),
                })
            }
            Err(std::fs::TryLockError::Error(error)) => {
                return Err(io_error("lock", &lock_path)(error))
            }
        }
        let had_clean_shutdown = marker_path.exists();
        if had_clean_shutdown {
            std::fs::remove_file(&marker_path).map_err(io_error("remove", &marker_path))?;
            sync_dir(data_dir)?;
        }
        let manager = LogManager {
            data_dir: data_dir.to_path_buf(),
            _lock_file: lock_file,
            new_directory,
        };
        manager.remove_deleted_logs()?;
        Ok((manager, had_clean_shutdown))
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Whether this is the first time a broker opened the directory (it had no lock file and
    /// no clean-shutdown marker). Its missing marker is then no sign of an unclean shutdown:
    /// there was no previous run. Only an existing directory without the marker is unclean.
    pub fn is_new_directory(&self) -> bool {
        self.new_directory
    }

    /// Finishes deletions interrupted by a crash.
    fn remove_deleted_logs(&self) -> Result<(), StorageError> {
        let entries =
            std::fs::read_dir(&self.data_dir).map_err(io_error("list", &self.data_dir))?;
        for entry in entries {
            let path = entry.map_err(io_error("list", &self.data_dir))?.path();
            let is_deleted_log = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(DELETE_DIR_SUFFIX));
            if is_deleted_log && path.is_dir() {
                std::fs::remove_dir_all(&path).map_err(io_error("remove dir", &path))?;
            }
        }
        Ok(())
    }

    /// Reads `meta.properties`, `None` if it does not exist yet.
    pub fn read_meta_properties(&self) -> Result<Option<MetaProperties>, StorageError> {
        read_meta_properties(&self.data_dir)
    }

    pub fn write_meta_properties(&self, meta: &MetaProperties) -> Result<(), StorageError> {
        write_meta_properties(&self.data_dir, meta)
    }

    /// Topics from `topics.json`; empty if the file does not exist yet.
    pub fn load_topics(&self) -> Result<Vec<TopicRecord>, StorageError> {
        Ok(load_legacy_topics(&self.data_dir)?.unwrap_or_default())
    }

    /// Replaces `topics.json` atomically. Only tests and fixtures write it now: since issue 8
    /// topics live in the metadata log, and `topics.json` is read once for migration.
    pub fn save_topics(&self, topics: &[TopicRecord]) -> Result<(), StorageError> {
        let path = self.data_dir.join(TOPICS_FILE_NAME);
        let json = serde_json::to_vec_pretty(topics).map_err(|source| StorageError::Json {
            path: path.clone(),
            source,
        })?;
        write_atomically(&path, &json)
    }

    fn log_dir(&self, topic: &str, partition: i32) -> Result<PathBuf, StorageError> {
        validate_topic_name(topic)?;
        if partition < 0 {
            return Err(StorageError::InvalidTopicName {
                name: format!("{topic}-{partition}"),
            });
        }
        Ok(self.data_dir.join(format!("{topic}-{partition}")))
    }

    /// Opens (recovering if needed) the log of `topic`-`partition` whose topic has id
    /// `topic_id` (Kafka `LogManager.getOrCreateLog` with its `partition.metadata` check). A new
    /// log gets a `partition.metadata` naming the id. A directory whose `partition.metadata`
    /// names another id holds a deleted topic of the same name (deleted while this node was
    /// away): it is removed and the log starts empty. Returns the log and whether an old
    /// directory was removed.
    pub fn open_log_with_topic_id(
        &self,
        topic: &str,
        partition: i32,
        topic_id: uuid::Uuid,
        config: LogConfig,
        had_clean_shutdown: bool,
        now_ms: i64,
    ) -> Result<(Log, bool), StorageError> {
        let dir = self.log_dir(topic, partition)?;
        let mut replaced = false;
        if dir.is_dir() {
            if let Some(existing) = crate::checkpoints::read_partition_metadata(&dir)? {
                if existing != topic_id {
                    self.delete_dir(&dir)?;
                    replaced = true;
                }
            }
        }
        let log = Log::open(&dir, config, had_clean_shutdown, now_ms)?;
        if crate::checkpoints::read_partition_metadata(&dir)?.is_none() {
            crate::checkpoints::write_partition_metadata(&dir, topic_id)?;
        }
        Ok((log, replaced))
    }

    /// `(topic, partition)` of every partition directory in the data dir (names of the form
    /// `{topic}-{partition}` with a valid topic name, not being deleted), sorted.
    pub fn partition_dirs(&self) -> Result<Vec<(String, i32)>, StorageError> {
        let entries =
            std::fs::read_dir(&self.data_dir).map_err(io_error("list", &self.data_dir))?;
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_error("list", &self.data_dir))?;
            if !entry.path().is_dir() {
                continue;
            }
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let Some((topic, partition)) = name.rsplit_once('-') else {
                continue;
            };
            let Ok(partition) = partition.parse::<i32>() else {
                continue;
            };
            if partition >= 0
                && validate_topic_name(topic).is_ok()
                && name != crate::METADATA_LOG_DIR_NAME
            {
                out.push((topic.to_owned(), partition));
            }
        }
        out.sort();
        Ok(out)
    }

    pub fn open_log(
        &self,
        topic: &str,
        partition: i32,
        config: LogConfig,
        had_clean_shutdown: bool,
        now_ms: i64,
    ) -> Result<Log, StorageError> {
        let dir = self.log_dir(topic, partition)?;
        Log::open(&dir, config, had_clean_shutdown, now_ms)
    }

    /// Moves the directory of `topic`-`partition` aside as a stray (Kafka
    /// `LogManager.asyncDelete(isStray = true)`): renamed to
    /// `{topic}-{partition}.{unique id}-stray` (the topic cut so the name stays within 255
    /// bytes, as Kafka's `logStrayDirName`), the data dir fsynced. A stray is never listed by
    /// [`LogManager::partition_dirs`], opened or served again, and not deleted: its data is
    /// left for an operator to inspect or remove. The log must not be open.
    pub fn rename_stray_log_dir(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<PathBuf, StorageError> {
        let dir = self.log_dir(topic, partition)?;
        let suffix = format!(
            "-{partition}.{}{STRAY_DIR_SUFFIX}",
            uuid::Uuid::new_v4().simple()
        );
        // Topic names are ASCII (validated by `log_dir`), so any byte index is a boundary.
        let topic_length = topic
            .len()
            .min(DIR_NAME_LENGTH_MAX.saturating_sub(suffix.len()));
        let stray = self
            .data_dir
            .join(format!("{}{suffix}", &topic[..topic_length]));
        std::fs::rename(&dir, &stray).map_err(io_error("rename", &dir))?;
        sync_dir(&self.data_dir)?;
        Ok(stray)
    }

    /// Renames the log's directory out of the way first (so a crash mid-delete can't leave a
    /// half-deleted log that looks live), then removes it.
    pub fn delete_log(&self, log: Log) -> Result<(), StorageError> {
        let dir = log.dir().to_path_buf();
        drop(log);
        self.delete_dir(&dir)
    }

    fn delete_dir(&self, dir: &Path) -> Result<(), StorageError> {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("log")
            .to_owned();
        let doomed = self.data_dir.join(format!(
            "{name}.{}{DELETE_DIR_SUFFIX}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::rename(dir, &doomed).map_err(io_error("rename", dir))?;
        sync_dir(&self.data_dir)?;
        std::fs::remove_dir_all(&doomed).map_err(io_error("remove dir", &doomed))
    }

    /// Marks the shutdown clean; call after every log has been closed.
    pub fn write_clean_shutdown_marker(&self) -> Result<(), StorageError> {
        write_atomically(&self.data_dir.join(CLEAN_SHUTDOWN_FILE_NAME), b"")
    }
}

/// `topics.json` of a pre-cluster data dir: `None` if the file does not exist.
pub fn load_legacy_topics(data_dir: &Path) -> Result<Option<Vec<TopicRecord>>, StorageError> {
    let path = data_dir.join(TOPICS_FILE_NAME);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error("read", &path)(error)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| StorageError::Json { path, source })
}

/// Suffix of a legacy metadata file whose content is in the metadata log (design 3.4).
pub const MIGRATED_SUFFIX: &str = ".migrated";

/// Renames the pre-cluster metadata files (`topics.json`, `broker-configs.json`,
/// `producer-id-block`) that exist to `{name}.migrated`, then fsyncs the directory. Call only
/// once the metadata log holds their content; calling it again is harmless.
pub fn rename_legacy_metadata_files(data_dir: &Path) -> Result<(), StorageError> {
    let names = [
        TOPICS_FILE_NAME,
        crate::broker_configs::BROKER_CONFIGS_FILE_NAME,
        crate::producer_ids::PRODUCER_ID_BLOCK_FILE_NAME,
    ];
    let mut renamed = false;
    for name in names {
        let from = data_dir.join(name);
        if !from.exists() {
            continue;
        }
        let to = data_dir.join(format!("{name}{MIGRATED_SUFFIX}"));
        std::fs::rename(&from, &to).map_err(io_error("rename", &from))?;
        renamed = true;
    }
    if renamed {
        sync_dir(data_dir)?;
    }
    Ok(())
}

/// Kafka's rule: 1-249 chars of `[a-zA-Z0-9._-]`, not `.` or `..`. It also keeps a topic
/// name from escaping the data directory.
fn validate_topic_name(name: &str) -> Result<(), StorageError> {
    let valid = !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(StorageError::InvalidTopicName {
            name: name.to_owned(),
        })
    }
}

fn parse_meta_properties(text: &str) -> Result<MetaProperties, String> {
    let mut properties = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("bad line {line:?}"))?;
        properties.insert(key.trim(), value.trim());
    }
    let get = |key: &str| {
        properties
            .get(key)
            .copied()
            .ok_or_else(|| format!("missing {key}"))
    };
    Ok(MetaProperties {
        version: get("version")?
            .parse()
            .map_err(|e| format!("bad version: {e}"))?,
        node_id: get("node.id")?
            .parse()
            .map_err(|e| format!("bad node.id: {e}"))?,
        cluster_id: get("cluster.id")?.to_owned(),
    })
}

/// Reads `{data_dir}/meta.properties`, `None` if it does not exist yet. A free function: the
/// metadata log is opened (and its cluster id checked) before the `LogManager` takes the data
/// dir's lock.
pub fn read_meta_properties(data_dir: &Path) -> Result<Option<MetaProperties>, StorageError> {
    let path = data_dir.join(META_PROPERTIES_FILE_NAME);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error("read", &path)(error)),
    };
    parse_meta_properties(&text)
        .map(Some)
        .map_err(|reason| StorageError::CorruptFile { path, reason })
}

/// Replaces `{data_dir}/meta.properties` atomically.
pub fn write_meta_properties(data_dir: &Path, meta: &MetaProperties) -> Result<(), StorageError> {
    let text = format!(
        "#\n#{}\nversion={}\nnode.id={}\ncluster.id={}\n",
        "Written by fjord", meta.version, meta.node_id, meta.cluster_id
    );
    write_atomically(&data_dir.join(META_PROPERTIES_FILE_NAME), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_marker_and_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let (manager, clean) = LogManager::open(dir.path()).unwrap();
        assert!(!clean);
        assert!(manager.is_new_directory(), "first open: no previous run");
        assert!(matches!(
            LogManager::open(dir.path()),
            Err(StorageError::DirectoryLocked { .. })
        ));
        assert_eq!(manager.read_meta_properties().unwrap(), None);
        let meta = MetaProperties {
            version: 1,
            node_id: 3,
            cluster_id: "abcDEF123".into(),
        };
        manager.write_meta_properties(&meta).unwrap();
        assert_eq!(manager.read_meta_properties().unwrap(), Some(meta));

        assert!(manager.load_topics().unwrap().is_empty());
        let topics = vec![TopicRecord {
            name: "orders".into(),
            topic_id: uuid::Uuid::new_v4(),
            partitions: 3,
            configs: BTreeMap::from([("segment.bytes".into(), "1024".into())]),
        }];
        manager.save_topics(&topics).unwrap();
        assert_eq!(manager.load_topics().unwrap(), topics);

        manager.write_clean_shutdown_marker().unwrap();
        drop(manager);
        let (manager, clean) = LogManager::open(dir.path()).unwrap();
        assert!(clean);
        assert!(!manager.is_new_directory());
        assert!(!dir.path().join(CLEAN_SHUTDOWN_FILE_NAME).exists());
        drop(manager);
        let (manager, clean) = LogManager::open(dir.path()).unwrap();
        assert!(!clean, "marker is consumed on open");
        assert!(
            !manager.is_new_directory(),
            "an existing dir without the marker is unclean"
        );
    }

    #[test]
    fn strays_are_renamed_aside_and_no_longer_listed() {
        let dir = tempfile::tempdir().unwrap();
        let (manager, _) = LogManager::open(dir.path()).unwrap();
        let long_topic = "t".repeat(249);
        for (topic, partition) in [("ghost", 3), (long_topic.as_str(), 0), ("kept", 0)] {
            let log = manager
                .open_log(topic, partition, LogConfig::default(), true, 0)
                .unwrap();
            drop(log);
        }
        std::fs::write(dir.path().join("ghost-3").join("evidence"), b"data").unwrap();
        let stray = manager.rename_stray_log_dir("ghost", 3).unwrap();
        let name = stray.file_name().unwrap().to_str().unwrap().to_owned();
        assert!(
            name.starts_with("ghost-3.") && name.ends_with(STRAY_DIR_SUFFIX),
            "{name}"
        );
        assert_eq!(
            std::fs::read(stray.join("evidence")).unwrap(),
            b"data",
            "kept, not deleted"
        );
        assert!(!dir.path().join("ghost-3").exists());
        // Kafka's cap: the topic is cut so that the name fits in 255 bytes.
        let stray = manager.rename_stray_log_dir(&long_topic, 0).unwrap();
        let name = stray.file_name().unwrap().to_str().unwrap().to_owned();
        assert_eq!(name.len(), DIR_NAME_LENGTH_MAX, "{name}");
        assert!(name.ends_with(STRAY_DIR_SUFFIX));
        assert_eq!(
            manager.partition_dirs().unwrap(),
            vec![("kept".to_string(), 0)]
        );
        // The same partition can become a stray again.
        drop(
            manager
                .open_log("ghost", 3, LogConfig::default(), true, 0)
                .unwrap(),
        );
        manager.rename_stray_log_dir("ghost", 3).unwrap();
        assert!(matches!(
            manager.rename_stray_log_dir("ghost", 3),
            Err(StorageError::Io { .. })
        ));
        // Strays survive a restart (only `-delete` dirs are finished off at open).
        drop(manager);
        let (manager, _) = LogManager::open(dir.path()).unwrap();
        let strays = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_str()
                    .unwrap()
                    .ends_with(STRAY_DIR_SUFFIX)
            })
            .count();
        assert_eq!(strays, 3);
        assert_eq!(
            manager.partition_dirs().unwrap(),
            vec![("kept".to_string(), 0)]
        );
    }

    #[test]
    fn a_directory_other_files_were_written_to_is_still_new_until_a_broker_opened_it() {
        let dir = tempfile::tempdir().unwrap();
        // What the metadata quorum and the cluster id check write before the broker opens.
        std::fs::create_dir(dir.path().join("__cluster_metadata-0")).unwrap();
        write_meta_properties(
            dir.path(),
            &MetaProperties {
                version: 1,
                node_id: 1,
                cluster_id: "abcDEF123".into(),
            },
        )
        .unwrap();
        let (manager, clean) = LogManager::open(dir.path()).unwrap();
        assert!(!clean && manager.is_new_directory());
        drop(manager);
        // A crash (no marker written) on the next start is unclean.
        let (manager, clean) = LogManager::open(dir.path()).unwrap();
        assert!(!clean && !manager.is_new_directory());
    }

    #[test]
    fn open_and_delete_logs() {
        let dir = tempfile::tempdir().unwrap();
        let (manager, _) = LogManager::open(dir.path()).unwrap();
        for bad in ["", ".", "..", "a/b", "../x", "with space"] {
            assert!(matches!(
                manager.open_log(bad, 0, LogConfig::default(), true, 0),
                Err(StorageError::InvalidTopicName { .. })
            ));
        }
        let log = manager
            .open_log("t", 2, LogConfig::default(), true, 0)
            .unwrap();
        assert_eq!(log.dir(), dir.path().join("t-2"));
        assert!(dir.path().join("t-2").is_dir());
        manager.delete_log(log).unwrap();
        assert!(!dir.path().join("t-2").exists());

        // A deletion interrupted by a crash is finished on the next open.
        std::fs::create_dir(dir.path().join("t-3.0123abcd-delete")).unwrap();
        drop(manager);
        let (_manager, _) = LogManager::open(dir.path()).unwrap();
        assert!(!dir.path().join("t-3.0123abcd-delete").exists());
    }

    #[test]
    fn partition_metadata_is_written_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let (manager, _) = LogManager::open(dir.path()).unwrap();
        let (id_a, id_b) = (uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2));
        let (log, replaced) = manager
            .open_log_with_topic_id("t", 0, id_a, LogConfig::default(), true, 0)
            .unwrap();
        assert!(!replaced);
        assert_eq!(
            crate::checkpoints::read_partition_metadata(log.dir()).unwrap(),
            Some(id_a)
        );
        std::fs::write(log.dir().join("marker"), b"old").unwrap();
        drop(log);
        // Same id: the directory is kept.
        let (log, replaced) = manager
            .open_log_with_topic_id("t", 0, id_a, LogConfig::default(), true, 0)
            .unwrap();
        assert!(!replaced && log.dir().join("marker").exists());
        drop(log);
        // Another id: the old topic's directory goes, the new log starts empty.
        let (log, replaced) = manager
            .open_log_with_topic_id("t", 0, id_b, LogConfig::default(), true, 0)
            .unwrap();
        assert!(replaced && !log.dir().join("marker").exists());
        assert_eq!(
            crate::checkpoints::read_partition_metadata(log.dir()).unwrap(),
            Some(id_b)
        );
        std::fs::create_dir(dir.path().join("not-a-partition")).unwrap();
        assert_eq!(
            manager.partition_dirs().unwrap(),
            vec![("t".to_string(), 0)]
        );
    }

    #[test]
    fn legacy_files_are_renamed_once() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_legacy_topics(dir.path()).unwrap(), None);
        let (manager, _) = LogManager::open(dir.path()).unwrap();
        manager.save_topics(&[]).unwrap();
        crate::producer_ids::save_producer_id_block(dir.path(), 1000).unwrap();
        assert_eq!(load_legacy_topics(dir.path()).unwrap(), Some(Vec::new()));
        rename_legacy_metadata_files(dir.path()).unwrap();
        assert_eq!(load_legacy_topics(dir.path()).unwrap(), None);
        assert!(dir.path().join("topics.json.migrated").exists());
        assert!(dir.path().join("producer-id-block.migrated").exists());
        rename_legacy_metadata_files(dir.path()).unwrap();
    }
}
