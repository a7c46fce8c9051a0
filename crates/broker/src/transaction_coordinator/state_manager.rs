//! Kafka's `TransactionStateManager`: the transactional ids of each `__transaction_state`
//! partition (one shard per partition), the durable append of every transition, replay at
//! start-up, and the scans the timers run (timed-out transactions, expired transactional ids).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use fjord_protocol::records::BatchIter;
use fjord_protocol::ResponseError;
use parking_lot::Mutex;
use tracing::{error, info, warn};

use super::metadata::{TransactionMetadata, TransactionState, TxnTransitMetadata};
use super::transaction_log::{self, TransactionLogRecord};
use super::{TransactionCoordinatorConfig, TransactionStateLog};
use crate::error::BrokerError;
use crate::partition::{Partition, PartitionError};

/// Bytes read per call when replaying `__transaction_state` at start-up.
const LOAD_READ_BYTES: usize = 4 * 1024 * 1024;
/// Bytes of a tombstone beyond its key in a batch (record framing), for sizing expiry batches.
const TOMBSTONE_OVERHEAD_BYTES: usize = 32;

/// A transactional id in a shard: its metadata plus the marker bookkeeping (memory only).
#[derive(Debug, Clone)]
pub struct TxnEntry {
    pub metadata: TransactionMetadata,
    /// Markers of this PrepareCommit/PrepareAbort are being written by some thread (which
    /// holds no lock meanwhile); nobody else starts writing them.
    pub markers_in_flight: bool,
    /// When the timer may retry this transaction's markers.
    pub marker_retry_at_ms: i64,
    /// The `__transaction_state` offset after this id's last record: its state is committed
    /// once the high watermark reaches it (0: nothing uncommitted). Answers about the id wait
    /// for it; markers of a PrepareCommit/PrepareAbort are written only after it.
    pub written_offset: i64,
}

impl TxnEntry {
    pub fn new(metadata: TransactionMetadata) -> Self {
        Self {
            metadata,
            markers_in_flight: false,
            marker_retry_at_ms: 0,
            written_offset: 0,
        }
    }
}

/// One `__transaction_state` partition's transactional ids.
#[derive(Debug, Default)]
pub struct TxnShard {
    pub partition: i32,
    pub transactions: HashMap<String, TxnEntry>,
}

/// The count of transactional ids across shards, bounded by `transactional_ids_max`.
#[derive(Debug)]
pub struct TransactionalIdsCount {
    count: AtomicUsize,
    max: usize,
}

impl TransactionalIdsCount {
    pub fn new(max: usize) -> Self {
        Self {
            count: AtomicUsize::new(0),
            max,
        }
    }

    pub fn get(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    pub fn is_full(&self) -> bool {
        self.get() >= self.max
    }

    fn add(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    fn remove(&self) {
        let _ = self
            .count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }
}

pub struct TransactionStateManager {
    pub(super) config: Arc<TransactionCoordinatorConfig>,
    log: Arc<dyn TransactionStateLog>,
    pub(super) shards: Vec<Mutex<TxnShard>>,
    pub(super) count: TransactionalIdsCount,
}

impl TransactionStateManager {
    pub fn new(
        config: Arc<TransactionCoordinatorConfig>,
        log: Arc<dyn TransactionStateLog>,
        partitions: i32,
    ) -> Self {
        let count = TransactionalIdsCount::new(config.transactional_ids_max);
        Self {
            config,
            log,
            shards: (0..partitions.max(1))
                .map(|partition| {
                    Mutex::new(TxnShard {
                        partition,
                        transactions: HashMap::new(),
                    })
                })
                .collect(),
            count,
        }
    }

    pub fn partitions(&self) -> i32 {
        self.shards.len() as i32
    }

    /// Kafka's `partitionFor`: `Utils.abs(transactionalId.hashCode) % partitions`, the same
    /// rule as for groups.
    pub fn partition_for(&self, transactional_id: &str) -> i32 {
        crate::group_coordinator::partition_for(transactional_id, self.partitions())
    }

    pub fn shard(&self, transactional_id: &str) -> &Mutex<TxnShard> {
        &self.shards[self.partition_for(transactional_id) as usize]
    }

    /// Appends `transit` for `metadata` and applies it (Kafka's `appendTransactionToLog` and
    /// `completeTransitionTo`). The transition is checked on a copy first, so a record is only
    /// written if memory can follow it; a failed append changes nothing. A Dead transition
    /// writes a tombstone; the caller removes the entry. Returns the offset the high
    /// watermark must reach for the record to be committed (the caller keeps it in
    /// [`TxnEntry::written_offset`]): memory follows the leader's log at once, answers wait.
    pub fn append_transition(
        &self,
        partition: i32,
        metadata: &mut TransactionMetadata,
        transit: &TxnTransitMetadata,
        now_ms: i64,
    ) -> Result<i64, ResponseError> {
        let mut next = metadata.clone();
        let value = if transit.state == TransactionState::Dead {
            None
        } else {
            if let Err(err) = next.complete_transition_to(transit) {
                error!(error = %err, "transaction state transition refused");
                return Err(ResponseError::UnknownServerError);
            }
            Some(transit.to_log_value())
        };
        let record = TransactionLogRecord {
            transactional_id: metadata.transactional_id.clone(),
            value,
        };
        let written_offset = match self.log.append(partition, &[record], now_ms) {
            Ok(offset) => offset,
            Err(err) => {
                warn!(transactional_id = metadata.transactional_id.as_str(), to = %transit.state,
                    error = %err, "appending to __transaction_state failed; transition not applied");
                return Err(err.response_error());
            }
        };
        *metadata = next;
        Ok(written_offset)
    }

    /// Whether `partition`'s high watermark reached `offset`.
    pub fn is_committed(&self, partition: i32, offset: i64) -> bool {
        offset <= 0 || self.log.is_committed(partition, offset)
    }

    /// See [`super::TransactionStateLog::wait_for_commit`].
    pub fn wait_for_commit(&self, partition: i32, offset: i64) -> super::CommitFuture {
        self.log.wait_for_commit(partition, offset)
    }

    /// Inserts a transactional id created by a completed transition.
    pub fn insert(&self, shard: &mut TxnShard, entry: TxnEntry) {
        if shard
            .transactions
            .insert(entry.metadata.transactional_id.clone(), entry)
            .is_none()
        {
            self.count.add();
        }
    }

    /// Forgets every transactional id of a shard (its partition is led elsewhere, or it is
    /// about to be reloaded).
    pub fn clear(&self, shard: &mut TxnShard) {
        for _ in shard.transactions.drain() {
            self.count.remove();
        }
    }

    /// Removes an expired transactional id.
    fn remove(&self, shard: &mut TxnShard, transactional_id: &str) {
        if shard.transactions.remove(transactional_id).is_some() {
            self.count.remove();
        }
    }

    /// Ongoing transactions older than their timeout (Kafka's `timedOutTransactions`).
    pub fn timed_out_transactions(&self, shard: &TxnShard, now_ms: i64) -> Vec<String> {
        shard
            .transactions
            .values()
            .filter(|e| {
                !e.markers_in_flight
                    && e.metadata.state == TransactionState::Ongoing
                    && e.metadata
                        .txn_start_timestamp
                        .saturating_add(i64::from(e.metadata.txn_timeout_ms))
                        < now_ms
            })
            .map(|e| e.metadata.transactional_id.clone())
            .collect()
    }

    /// Expires the transactional ids of every shard idle longer than
    /// `transactional.id.expiration.ms` (Kafka's `removeExpiredTransactionalIds`): tombstones
    /// are appended in batches below `message.max.bytes`, then the ids are dropped. Returns how
    /// many were expired.
    pub fn remove_expired_transactional_ids(&self, now_ms: i64) -> usize {
        let mut removed = 0;
        for shard in &self.shards {
            let mut shard = shard.lock();
            let deadline = now_ms.saturating_sub(self.config.transactional_id_expiration_ms);
            let expired: Vec<String> = shard
                .transactions
                .values()
                .filter(|e| {
                    !e.markers_in_flight
                        && e.metadata.state.is_expiration_allowed()
                        && e.metadata.txn_last_update_timestamp <= deadline
                })
                .map(|e| e.metadata.transactional_id.clone())
                .collect();
            let batch_budget = self.config.batch_bytes_max.saturating_sub(128).max(1);
            let mut start = 0;
            while start < expired.len() {
                let mut end = start;
                let mut bytes = 0usize;
                while end < expired.len() {
                    let size = expired[end].len() + TOMBSTONE_OVERHEAD_BYTES;
                    if end > start && bytes + size > batch_budget {
                        break;
                    }
                    bytes += size;
                    end += 1;
                }
                let records: Vec<TransactionLogRecord> = expired[start..end]
                    .iter()
                    .map(|id| TransactionLogRecord {
                        transactional_id: id.clone(),
                        value: None,
                    })
                    .collect();
                match self.log.append(shard.partition, &records, now_ms) {
                    Ok(_) => {
                        for id in &expired[start..end] {
                            info!(transactional_id = id.as_str(), "expired transactional id");
                            self.remove(&mut shard, id);
                            removed += 1;
                        }
                    }
                    Err(err) => {
                        warn!(partition = shard.partition, error = %err,
                            "cannot write tombstones of expired transactional ids; retrying at the next check");
                        break;
                    }
                }
                start = end;
            }
        }
        removed
    }

    /// Replays one record at load (Kafka's `loadTransactionMetadata`): the last value of each
    /// transactional id wins, a tombstone removes it.
    pub fn replay(&self, shard: &mut TxnShard, record: TransactionLogRecord) {
        match record.value {
            None => self.remove(shard, &record.transactional_id),
            Some(value) => {
                let id = record.transactional_id;
                let metadata = TransactionMetadata::from_log_value(id, value);
                self.insert(shard, TxnEntry::new(metadata));
            }
        }
    }

    /// Replays one `__transaction_state` partition into its shard. Undecodable records are
    /// logged and skipped: the rest of the partition is still served.
    pub fn load_partition(
        &self,
        partition: &Partition,
        shard: &mut TxnShard,
    ) -> Result<(), BrokerError> {
        let offsets = match partition.offsets() {
            Ok(offsets) => offsets,
            Err(_) => return Ok(()),
        };
        let mut position = offsets.log_start_offset;
        let mut loaded = 0usize;
        let mut skipped = 0usize;
        // To the log end, as Kafka's `loadTransactionsForTxnTopicPartition`: a new leader's
        // high watermark may lag records the previous leader acknowledged. What is above the
        // high watermark is not committed yet: answers and markers wait for it.
        while position < offsets.log_end_offset {
            let data = match partition.read(
                position,
                LOAD_READ_BYTES,
                true,
                fjord_storage::Isolation::LogEnd,
            ) {
                Ok((data, _)) => data,
                Err(
                    PartitionError::Deleted
                    | PartitionError::NotLeaderOrFollower
                    | PartitionError::NotEnoughReplicas,
                ) => return Ok(()),
                Err(PartitionError::Storage(err)) => return Err(err.into()),
            };
            if data.records.is_empty() {
                break;
            }
            let records = data.records.read_to_bytes()?;
            let mut next = position;
            for batch in BatchIter::new(&records) {
                let Ok((header, range)) = batch else {
                    warn!(partition = partition.index, offset = next,
                        "unreadable batch in __transaction_state; stopping the load of this partition here");
                    return Ok(());
                };
                next = header.next_offset();
                if header.is_control() {
                    continue;
                }
                let bytes: Bytes = records.slice(range);
                let mut decoded = Vec::new();
                let result =
                    fjord_protocol::records::for_each_key_value(&bytes, |offset, key, value| {
                        match transaction_log::decode_record(key, value) {
                            Ok(record) => decoded.push(record),
                            Err(err) => {
                                skipped += 1;
                                warn!(partition = partition.index, offset, error = %err,
                                "skipped a __transaction_state record");
                            }
                        }
                    });
                if let Err(err) = result {
                    warn!(partition = partition.index, offset = header.base_offset, error = %err,
                        "skipped an unreadable __transaction_state batch");
                }
                for record in decoded {
                    self.replay(shard, record);
                    loaded += 1;
                }
            }
            if next <= position {
                break;
            }
            position = next;
        }
        if offsets.high_watermark < offsets.log_end_offset {
            for entry in shard.transactions.values_mut() {
                entry.written_offset = offsets.log_end_offset;
            }
        }
        if loaded > 0 || skipped > 0 {
            info!(
                partition = partition.index,
                records = loaded,
                skipped,
                transactional_ids = shard.transactions.len(),
                "replayed __transaction_state partition"
            );
        }
        Ok(())
    }
}
