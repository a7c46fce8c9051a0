//! Producer ids (Kafka's `ProducerIdManager`, the `RPCProducerIdManager` flavour): handed out
//! from blocks of [`PRODUCER_ID_BLOCK_SIZE`] ids that a [`ProducerIdBlockStore`] allocates.
//! Since issue 8 the store is the controller (AllocateProducerIds through the
//! `ControllerChannel`, [`crate::producer_id_blocks::ControllerProducerIdBlockStore`]): a
//! block is committed in the metadata log before any of its ids is used, so no id is handed
//! out twice, across crashes, restarts and brokers. A crash wastes the rest of the current
//! block, as in Kafka.
//!
//! Allocation is asynchronous while handing out ids is not (it happens under coordinator
//! locks). So the manager prefetches: once 90% of the current block is used, the next block
//! is requested in the background; [`ProducerIdManager::ensure_block`] lets an async handler
//! wait for a block before it takes an id. With no block at hand the answer is
//! COORDINATOR_LOAD_IN_PROGRESS and the client retries, as Kafka's broker answers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use fjord_protocol::ResponseError;
use parking_lot::Mutex;
use tracing::{error, info};

use crate::node_channel::BoxFuture;

/// Ids per block (Kafka's `ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE`).
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

/// Where blocks of producer ids come from.
pub trait ProducerIdBlockStore: Send + Sync {
    /// Allocates the next block of `block_size` ids; returns its first id and length. A store
    /// that answers without waiting (files, memory) returns a ready future.
    fn allocate(&self, block_size: i64) -> BoxFuture<'_, Result<(i64, i64), String>>;

    /// Whether `allocate` always returns a ready future (then ids can be handed out from a
    /// synchronous caller without a prefetched block).
    fn answers_at_once(&self) -> bool {
        false
    }
}

/// A block store in the data dir's `producer-id-block` file (the pre-cluster store; tests).
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
    fn allocate(&self, block_size: i64) -> BoxFuture<'_, Result<(i64, i64), String>> {
        let result = (|| {
            let start = fjord_storage::producer_ids::load_producer_id_block(&self.data_dir)
                .map_err(|e| e.to_string())?
                .unwrap_or(0);
            let end = start
                .checked_add(block_size)
                .ok_or_else(|| "producer ids are exhausted".to_string())?;
            fjord_storage::producer_ids::save_producer_id_block(&self.data_dir, end)
                .map_err(|e| e.to_string())?;
            Ok((start, block_size))
        })();
        Box::pin(std::future::ready(result))
    }

    fn answers_at_once(&self) -> bool {
        true
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ProducerIdError {
    #[error("cannot allocate a producer id block: {0}")]
    Storage(String),
    /// No block at hand; one is being fetched.
    #[error("no producer id block is available yet")]
    NotAvailable,
    #[error("producer ids are exhausted")]
    Exhausted,
}

impl ProducerIdError {
    pub fn response_error(&self) -> ResponseError {
        match self {
            ProducerIdError::Storage(_) | ProducerIdError::NotAvailable => {
                ResponseError::CoordinatorLoadInProgress
            }
            ProducerIdError::Exhausted => ResponseError::UnknownServerError,
        }
    }
}

#[derive(Default)]
struct Blocks {
    /// The block ids are taken from: `next..end`.
    next: i64,
    end: i64,
    /// A block fetched ahead of need.
    prefetched: Option<(i64, i64)>,
}

impl Blocks {
    fn remaining(&self) -> i64 {
        self.end - self.next
    }

    fn install(&mut self, (start, len): (i64, i64)) {
        if self.remaining() <= 0 {
            self.next = start;
            self.end = start.saturating_add(len);
        } else if self.prefetched.is_none() {
            self.prefetched = Some((start, len));
        }
    }
}

struct Inner {
    store: Arc<dyn ProducerIdBlockStore>,
    blocks: Mutex<Blocks>,
    fetching: AtomicBool,
    block_size: i64,
}

pub struct ProducerIdManager {
    inner: Arc<Inner>,
}

impl ProducerIdManager {
    pub fn open(store: Arc<dyn ProducerIdBlockStore>) -> Result<Self, ProducerIdError> {
        Self::with_block_size(store, PRODUCER_ID_BLOCK_SIZE)
    }

    /// A manager that has no block yet; the first id allocates one.
    pub fn with_block_size(
        store: Arc<dyn ProducerIdBlockStore>,
        block_size: i64,
    ) -> Result<Self, ProducerIdError> {
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                blocks: Mutex::new(Blocks::default()),
                fetching: AtomicBool::new(false),
                block_size: block_size.max(1),
            }),
        })
    }

    /// Hands out the next id. When the block is used up and no prefetched one is there, a
    /// store that answers at once is asked directly; otherwise a fetch starts in the
    /// background and the caller gets [`ProducerIdError::NotAvailable`].
    pub fn generate_producer_id(&self) -> Result<i64, ProducerIdError> {
        let mut blocks = self.inner.blocks.lock();
        if blocks.remaining() <= 0 {
            if let Some(next) = blocks.prefetched.take() {
                blocks.install(next);
            } else {
                drop(blocks);
                self.allocate_now_or_in_background()?;
                blocks = self.inner.blocks.lock();
                if blocks.remaining() <= 0 {
                    return Err(ProducerIdError::NotAvailable);
                }
            }
        }
        let id = blocks.next;
        blocks.next += 1;
        // Prefetch at 90% of the block, as Kafka's RPCProducerIdManager does.
        let prefetch =
            blocks.prefetched.is_none() && blocks.remaining() * 10 < self.inner.block_size;
        drop(blocks);
        if prefetch {
            self.fetch_in_background();
        }
        Ok(id)
    }

    /// Waits until a block is at hand (fetching one if needed): async handlers call it before
    /// work that takes ids, so the first InitProducerId of a broker succeeds.
    pub async fn ensure_block(&self) -> Result<(), ProducerIdError> {
        {
            let mut blocks = self.inner.blocks.lock();
            if blocks.remaining() > 0 {
                return Ok(());
            }
            if let Some(next) = blocks.prefetched.take() {
                blocks.install(next);
                return Ok(());
            }
        }
        let block = self
            .inner
            .store
            .allocate(self.inner.block_size)
            .await
            .map_err(|err| {
                error!(error = %err, "cannot allocate a producer id block");
                ProducerIdError::Storage(err)
            })?;
        info!(
            first = block.0,
            count = block.1,
            "allocated a producer id block"
        );
        self.inner.blocks.lock().install(block);
        Ok(())
    }

    /// Polls the store's allocation once: ready (file and memory stores) installs the block;
    /// pending goes to the background.
    fn allocate_now_or_in_background(&self) -> Result<(), ProducerIdError> {
        if !self.inner.store.answers_at_once() {
            self.fetch_in_background();
            return Ok(());
        }
        let mut future = self.inner.store.allocate(self.inner.block_size);
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        match future.as_mut().poll(&mut context) {
            std::task::Poll::Ready(Ok(block)) => {
                info!(
                    first = block.0,
                    count = block.1,
                    "allocated a producer id block"
                );
                self.inner.blocks.lock().install(block);
                Ok(())
            }
            std::task::Poll::Ready(Err(err)) => {
                error!(error = %err, "cannot allocate a producer id block");
                Err(ProducerIdError::Storage(err))
            }
            std::task::Poll::Pending => {
                drop(future);
                self.fetch_in_background();
                Ok(())
            }
        }
    }

    /// Starts one background allocation if none runs (needs a tokio runtime; without one the
    /// next `ensure_block` fetches).
    fn fetch_in_background(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.inner.fetching.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = self.inner.clone();
        runtime.spawn(async move {
            match inner.store.allocate(inner.block_size).await {
                Ok(block) => {
                    info!(
                        first = block.0,
                        count = block.1,
                        "prefetched a producer id block"
                    );
                    inner.blocks.lock().install(block);
                }
                Err(err) => error!(error = %err, "cannot prefetch a producer id block"),
            }
            inner.fetching.store(false, Ordering::Release);
        });
    }
}

/// A store in memory, for tests.
#[derive(Default)]
pub struct MemoryProducerIdBlockStore {
    pub next: Mutex<Option<i64>>,
    pub fail: std::sync::atomic::AtomicBool,
}

impl ProducerIdBlockStore for MemoryProducerIdBlockStore {
    fn allocate(&self, block_size: i64) -> BoxFuture<'_, Result<(i64, i64), String>> {
        let result = if self.fail.load(std::sync::atomic::Ordering::Relaxed) {
            Err("disk on fire".to_string())
        } else {
            let mut next = self.next.lock();
            let start = next.unwrap_or(0);
            *next = Some(start + block_size);
            Ok((start, block_size))
        };
        Box::pin(std::future::ready(result))
    }

    fn answers_at_once(&self) -> bool {
        true
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

    /// A store like the controller's: answers only after a wait, never synchronously.
    #[derive(Default)]
    struct SlowStore {
        next: Mutex<i64>,
        calls: std::sync::atomic::AtomicUsize,
    }

    impl ProducerIdBlockStore for SlowStore {
        fn allocate(&self, block_size: i64) -> BoxFuture<'_, Result<(i64, i64), String>> {
            Box::pin(async move {
                tokio::task::yield_now().await;
                self.calls.fetch_add(1, Ordering::Relaxed);
                let mut next = self.next.lock();
                let start = *next;
                *next += block_size;
                Ok((start, block_size))
            })
        }
    }

    #[tokio::test]
    async fn an_asynchronous_store_is_awaited_first_and_prefetched_at_90_percent() {
        let store = Arc::new(SlowStore::default());
        let manager = ProducerIdManager::with_block_size(store.clone(), 10).unwrap();
        // No block yet and the store cannot answer at once: retriable, and a fetch starts.
        assert!(matches!(
            manager.generate_producer_id(),
            Err(ProducerIdError::NotAvailable)
        ));
        assert_eq!(
            ProducerIdError::NotAvailable.response_error(),
            ResponseError::CoordinatorLoadInProgress
        );
        manager.ensure_block().await.unwrap();
        let ids: Vec<i64> = (0..10)
            .map(|_| manager.generate_producer_id().unwrap())
            .collect();
        // The first block may be the background fetch's or ensure_block's; ids are dense.
        let first = ids[0];
        assert_eq!(ids, (first..first + 10).collect::<Vec<_>>());
        // The last id of the block started a prefetch; once it lands, ids continue without
        // a wait and never repeat.
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        let next = manager.generate_producer_id().unwrap();
        assert!(!ids.contains(&next));
        assert!(store.calls.load(Ordering::Relaxed) >= 2);
    }
}
