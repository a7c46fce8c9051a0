//! Producer ids (Kafka's `ProducerIdManager`): handed out from blocks of
//! [`PRODUCER_ID_BLOCK_SIZE`] ids whose end is persisted before the first id of the block is
//! used, so no id is ever handed out twice, across crashes and restarts. A crash wastes the
//! rest of the current block, as in Kafka.

use std::sync::Arc;

use fjord_protocol::ResponseError;
use parking_lot::Mutex;
use tracing::{error, info};

/// Ids per block (Kafka's `ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE`).
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

/// Where the high-water mark lives: `producer-id-block` in the data directory (or memory in
/// tests).
pub trait ProducerIdBlockStore: Send + Sync {
    /// The first id never handed out; `None` if no block was ever taken.
    fn load(&self) -> Result<Option<i64>, String>;
    /// Persists `next_producer_id` durably; returns once it is on disk.
    fn save(&self, next_producer_id: i64) -> Result<(), String>;
}

/// The data directory's `producer-id-block` file (written by the storage crate).
pub struct FileProducerIdBlockStore {
    data_dir: std::path::PathBuf,
}

impl FileProducerIdBlockStore {
    pub fn new(data_dir: impl Into<std::path::PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
        }
    }
}

impl ProducerIdBlockStore for FileProducerIdBlockStore {
    fn load(&self) -> Result<Option<i64>, String> {
        fjord_storage::producer_ids::load_producer_id_block(&self.data_dir)
            .map_err(|e| e.to_string())
    }

    fn save(&self, next_producer_id: i64) -> Result<(), String> {
        fjord_storage::producer_ids::save_producer_id_block(&self.data_dir, next_producer_id)
            .map_err(|e| e.to_string())
    }
}

/// Why a producer id could not be handed out.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProducerIdError {
    #[error("cannot persist the producer id block: {0}")]
    Storage(String),
    #[error("producer ids are exhausted")]
    Exhausted,
}

impl ProducerIdError {
    /// The error code a client gets: a storage failure is retriable (Kafka's
    /// COORDINATOR_LOAD_IN_PROGRESS when no block is available yet); exhaustion is not.
    pub fn response_error(&self) -> ResponseError {
        match self {
            ProducerIdError::Storage(_) => ResponseError::CoordinatorLoadInProgress,
            ProducerIdError::Exhausted => ResponseError::UnknownServerError,
        }
    }
}

struct Block {
    next: i64,
    /// First id past the persisted block.
    end: i64,
}

pub struct ProducerIdManager {
    store: Arc<dyn ProducerIdBlockStore>,
    block: Mutex<Block>,
    block_size: i64,
}

impl ProducerIdManager {
    /// Reads the high-water mark; the first block is taken on first use.
    pub fn open(store: Arc<dyn ProducerIdBlockStore>) -> Result<Self, ProducerIdError> {
        Self::with_block_size(store, PRODUCER_ID_BLOCK_SIZE)
    }

    pub fn with_block_size(
        store: Arc<dyn ProducerIdBlockStore>,
        block_size: i64,
    ) -> Result<Self, ProducerIdError> {
        let start = store.load().map_err(ProducerIdError::Storage)?.unwrap_or(0);
        Ok(Self {
            store,
            block: Mutex::new(Block {
                next: start,
                end: start,
            }),
            block_size: block_size.max(1),
        })
    }

    /// The next producer id (Kafka's `generateProducerId`).
    pub fn generate_producer_id(&self) -> Result<i64, ProducerIdError> {
        let mut block = self.block.lock();
        if block.next >= block.end {
            let end = block
                .next
                .checked_add(self.block_size)
                .ok_or(ProducerIdError::Exhausted)?;
            if let Err(err) = self.store.save(end) {
                error!(error = %err, "cannot persist the producer id block");
                return Err(ProducerIdError::Storage(err));
            }
            info!(
                first = block.next,
                last = end - 1,
                "allocated a producer id block"
            );
            block.end = end;
        }
        let id = block.next;
        block.next += 1;
        Ok(id)
    }
}

/// A store in memory, for tests.
#[derive(Default)]
pub struct MemoryProducerIdBlockStore {
    pub next: Mutex<Option<i64>>,
    pub fail: std::sync::atomic::AtomicBool,
}

impl ProducerIdBlockStore for MemoryProducerIdBlockStore {
    fn load(&self) -> Result<Option<i64>, String> {
        Ok(*self.next.lock())
    }

    fn save(&self, next_producer_id: i64) -> Result<(), String> {
        if self.fail.load(std::sync::atomic::Ordering::Relaxed) {
            return Err("disk on fire".into());
        }
        *self.next.lock() = Some(next_producer_id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_across_restarts_of_the_file_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(FileProducerIdBlockStore::new(dir.path()));
        let manager = ProducerIdManager::with_block_size(store.clone(), 10).unwrap();
        let first: Vec<i64> = (0..15)
            .map(|_| manager.generate_producer_id().unwrap())
            .collect();
        assert_eq!(first, (0..15).collect::<Vec<_>>());
        // "Crash": a new manager over the same file starts past the persisted block.
        drop(manager);
        let manager = ProducerIdManager::with_block_size(store, 10).unwrap();
        let next = manager.generate_producer_id().unwrap();
        assert_eq!(next, 20);
        assert!(!first.contains(&next));
    }

    #[test]
    fn a_failed_persist_hands_out_nothing() {
        let store = Arc::new(MemoryProducerIdBlockStore::default());
        store.fail.store(true, std::sync::atomic::Ordering::Relaxed);
        let manager = ProducerIdManager::with_block_size(store.clone(), 10).unwrap();
        assert!(matches!(
            manager.generate_producer_id(),
            Err(ProducerIdError::Storage(_))
        ));
        store
            .fail
            .store(false, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(manager.generate_producer_id().unwrap(), 0);
        assert_eq!(*store.next.lock(), Some(10));
    }
}
