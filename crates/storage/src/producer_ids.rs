//! `producer-id-block`: the high-water mark of the producer ids this broker has handed out.
//!
//! The transaction coordinator's `ProducerIdManager` (broker crate) takes producer ids in
//! blocks. Before it hands out any id of a new block it persists the block's end here, so after
//! a crash or a restart it starts above every id it may have given a producer: ids are never
//! reused (Kafka keeps the same high-water mark in ZooKeeper or in the KRaft metadata log).
//!
//! The file holds a version line and the first id not yet allocated, as Kafka's checkpoint
//! files do: `"0\n{next_producer_id}\n"`. It is replaced atomically and durably (temp file,
//! fsync, rename, fsync of the directory).

use std::path::Path;

use crate::{io_error, write_atomically, LogManager, StorageError};

/// The file's name in the data directory.
pub const PRODUCER_ID_BLOCK_FILE_NAME: &str = "producer-id-block";
const VERSION: i64 = 0;
/// The file is two short lines; anything much larger is not ours.
const FILE_BYTES_MAX: u64 = 4096;

/// Reads the first producer id not yet allocated; `None` if no block was ever allocated.
pub fn load_producer_id_block(data_dir: &Path) -> Result<Option<i64>, StorageError> {
    let path = data_dir.join(PRODUCER_ID_BLOCK_FILE_NAME);
    let corrupt = |reason: &str| StorageError::CorruptFile {
        path: path.clone(),
        reason: reason.to_string(),
    };
    match std::fs::metadata(&path) {
        Ok(meta) if meta.len() > FILE_BYTES_MAX => return Err(corrupt("file is too large")),
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error("stat", &path)(error)),
    }
    let text = std::fs::read_to_string(&path).map_err(io_error("read", &path))?;
    let mut lines = text.lines();
    let version: i64 = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| corrupt("missing version line"))?;
    if version != VERSION {
        return Err(corrupt("unknown version"));
    }
    let next: i64 = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| corrupt("missing next producer id"))?;
    if next < 0 {
        return Err(corrupt("negative producer id"));
    }
    Ok(Some(next))
}

/// Persists `next_producer_id` (the end of the block about to be used) atomically and
/// durably; returns once it is on disk.
pub fn save_producer_id_block(data_dir: &Path, next_producer_id: i64) -> Result<(), StorageError> {
    let path = data_dir.join(PRODUCER_ID_BLOCK_FILE_NAME);
    write_atomically(&path, format!("{VERSION}\n{next_producer_id}\n").as_bytes())
}

impl LogManager {
    /// See [`load_producer_id_block`].
    pub fn load_producer_id_block(&self) -> Result<Option<i64>, StorageError> {
        load_producer_id_block(self.data_dir())
    }

    /// See [`save_producer_id_block`].
    pub fn save_producer_id_block(&self, next_producer_id: i64) -> Result<(), StorageError> {
        save_producer_id_block(self.data_dir(), next_producer_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_missing_and_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_producer_id_block(dir.path()).unwrap(), None);
        save_producer_id_block(dir.path(), 1000).unwrap();
        assert_eq!(load_producer_id_block(dir.path()).unwrap(), Some(1000));
        save_producer_id_block(dir.path(), 2000).unwrap();
        let (manager, _) = LogManager::open(dir.path()).unwrap();
        assert_eq!(manager.load_producer_id_block().unwrap(), Some(2000));
        std::fs::write(dir.path().join(PRODUCER_ID_BLOCK_FILE_NAME), b"0\nabc\n").unwrap();
        assert!(matches!(
            manager.load_producer_id_block(),
            Err(StorageError::CorruptFile { .. })
        ));
        std::fs::write(dir.path().join(PRODUCER_ID_BLOCK_FILE_NAME), b"7\n10\n").unwrap();
        assert!(manager.load_producer_id_block().is_err());
    }
}
