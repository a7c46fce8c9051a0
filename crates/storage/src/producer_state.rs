//! Producer state of one partition: Kafka's `ProducerStateManager`, `ProducerAppendInfo`,
//! `ProducerStateEntry` and `BatchMetadata`, plus the producer snapshot files.
//!
//! For every producer id that wrote to the partition the log keeps its epoch, the metadata of
//! its last [`NUM_BATCHES_TO_RETAIN`] batches (to answer a retried batch with the offsets it
//! got the first time), the coordinator epoch of its last marker, and the first offset of its
//! ongoing transaction. Appends are checked against it before anything is written
//! ([`ProducerStateManager::analyze`]) and applied after the write
//! ([`ProducerStateManager::apply`]).
//!
//! The ongoing transactions give the first unstable offset, hence the last stable offset that
//! bounds `read_committed` fetches.
//!
//! ## Snapshots
//!
//! `{offset:020}.snapshot` holds the state as of `offset` (everything below it applied), so
//! that opening a log replays only the batches after the newest snapshot. Format (big-endian):
//!
//! ```text
//! version: u16 (1) | crc32c: u32 (of everything after it) | offset: i64 | count: u32
//! count x { producerId: i64, epoch: i16, coordinatorEpoch: i32, lastTimestamp: i64,
//!           currentTxnFirstOffset: i64 (-1 = none), batchCount: u8 (<= 5),
//!           batchCount x { lastSeq: i32, lastOffset: i64, offsetDelta: i32, timestamp: i64 } }
//! ```
//!
//! Unlike Kafka's snapshot (one batch per producer) all retained batches are kept, so a retry
//! of any of the last five batches is still recognised after a restart.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};

use fjord_protocol::control::EndTxnMarker;
use fjord_protocol::records::RecordBatchHeader;

use crate::{io_error, StorageError};

/// Kafka's `ProducerStateEntry.NUM_BATCHES_TO_RETAIN`: how many of a producer's latest batches
/// are remembered for duplicate detection (the most in-flight requests an idempotent producer
/// may have).
pub const NUM_BATCHES_TO_RETAIN: usize = 5;

/// Producers tracked per partition. Kafka has no such limit (only expiry by
/// `producer.id.expiration.ms`); a broker that serves one producer id per client instance can
/// be made to remember unboundedly many. At the limit the least recently active producer
/// without an ongoing transaction is forgotten (as if expired); if every tracked producer has
/// an ongoing transaction, new producers are refused.
pub const MAX_PRODUCERS_PER_PARTITION: usize = 100_000;

/// Kafka's `RecordBatch.NO_PRODUCER_EPOCH` and `NO_SEQUENCE`.
const NO_PRODUCER_EPOCH: i16 = -1;
const NO_SEQUENCE: i32 = -1;

/// Who is appending, which decides what is checked (Kafka's `AppendOrigin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOrigin {
    /// A producer: duplicates, epochs, sequences and transaction state are all checked.
    Client,
    /// The group or transaction coordinator: epochs and transaction state only (its batches
    /// carry no sequence numbers).
    Coordinator,
    /// A follower copying the leader (and the log replaying itself at open): nothing is
    /// checked, the state just follows the log.
    Replication,
}

/// A producer as `DescribeProducers` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveProducer {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// Sequence of the last record of its last batch (-1 if none since its last epoch change).
    pub last_sequence: i32,
    pub last_timestamp_ms: i64,
    pub coordinator_epoch: i32,
    /// First offset of its ongoing transaction, -1 if none.
    pub current_txn_start_offset: i64,
}

/// Why an append was refused by the producer state (Kafka's exceptions of the same names).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProducerStateError {
    /// INVALID_PRODUCER_EPOCH: the batch's or marker's epoch is older than the producer's.
    #[error("producer {producer_id}: epoch {producer_epoch} is older than the current epoch {current_epoch}")]
    InvalidProducerEpoch {
        producer_id: i64,
        producer_epoch: i16,
        current_epoch: i16,
    },
    /// OUT_OF_ORDER_SEQUENCE_NUMBER: a gap or a reordering in the producer's sequence numbers,
    /// or a new epoch not starting at sequence 0.
    #[error("producer {producer_id} epoch {producer_epoch}: sequence {sequence} does not follow {last_sequence}")]
    OutOfOrderSequence {
        producer_id: i64,
        producer_epoch: i16,
        sequence: i32,
        last_sequence: i32,
    },
    /// TRANSACTION_COORDINATOR_FENCED: a marker from a coordinator older than the last one.
    #[error("producer {producer_id}: coordinator epoch {coordinator_epoch} is older than {current_coordinator_epoch}")]
    TransactionCoordinatorFenced {
        producer_id: i64,
        coordinator_epoch: i32,
        current_coordinator_epoch: i32,
    },
    /// INVALID_TXN_STATE: a non-transactional batch while the producer's transaction is open.
    #[error("producer {producer_id}: non-transactional batch at offset {offset} during its ongoing transaction")]
    InvalidTxnState { producer_id: i64, offset: i64 },
    /// INVALID_RECORD: clients may not write control batches (Kafka's `LogValidator`).
    #[error("clients may not write control batches")]
    ControlBatchFromClient,
    /// INVALID_RECORD: a client batch with a producer id but no sequence number.
    #[error("producer {producer_id}: invalid base sequence {base_sequence}")]
    InvalidSequence {
        producer_id: i64,
        base_sequence: i32,
    },
    /// The partition tracks [`MAX_PRODUCERS_PER_PARTITION`] producers, all in transactions.
    #[error("partition already tracks {limit} producers with ongoing transactions")]
    TooManyProducers { limit: usize },
}

/// Kafka's `DefaultRecordBatch.incrementSequence`: sequences wrap from `i32::MAX` to 0.
pub(crate) fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    if sequence > i32::MAX - increment {
        increment - (i32::MAX - sequence) - 1
    } else {
        sequence + increment
    }
}

/// Kafka's `DefaultRecordBatch.decrementSequence`.
pub(crate) fn decrement_sequence(sequence: i32, decrement: i32) -> i32 {
    if sequence < decrement {
        i32::MAX - (decrement - sequence) + 1
    } else {
        sequence - decrement
    }
}

/// Sequence of a batch's last record (Kafka's `RecordBatch.lastSequence`).
pub(crate) fn batch_last_sequence(header: &RecordBatchHeader) -> i32 {
    if header.base_sequence == NO_SEQUENCE {
        NO_SEQUENCE
    } else {
        increment_sequence(header.base_sequence, header.last_offset_delta)
    }
}

fn in_sequence(last_sequence: i32, next_sequence: i32) -> bool {
    i64::from(next_sequence) == i64::from(last_sequence) + 1
        || (next_sequence == 0 && last_sequence == i32::MAX)
}

/// One remembered batch (Kafka's `BatchMetadata`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchMetadata {
    pub last_seq: i32,
    pub last_offset: i64,
    pub offset_delta: i32,
    pub timestamp: i64,
}

impl BatchMetadata {
    pub fn first_seq(&self) -> i32 {
        decrement_sequence(self.last_seq, self.offset_delta)
    }

    pub fn first_offset(&self) -> i64 {
        self.last_offset - i64::from(self.offset_delta)
    }
}

/// What the partition knows of one producer (Kafka's `ProducerStateEntry`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProducerStateEntry {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub coordinator_epoch: i32,
    pub last_timestamp: i64,
    pub current_txn_first_offset: Option<i64>,
    /// Oldest first, at most [`NUM_BATCHES_TO_RETAIN`], all of `producer_epoch`.
    pub batches: VecDeque<BatchMetadata>,
}

impl ProducerStateEntry {
    pub fn empty(producer_id: i64) -> Self {
        ProducerStateEntry {
            producer_id,
            producer_epoch: NO_PRODUCER_EPOCH,
            coordinator_epoch: -1,
            last_timestamp: crate::segment::NO_TIMESTAMP,
            current_txn_first_offset: None,
            batches: VecDeque::new(),
        }
    }

    pub fn last_seq(&self) -> i32 {
        self.batches.back().map_or(NO_SEQUENCE, |b| b.last_seq)
    }

    /// Last offset of the last remembered data batch, -1 if none.
    pub fn last_data_offset(&self) -> i64 {
        self.batches.back().map_or(-1, |b| b.last_offset)
    }

    /// A copy with the same epochs, timestamp and transaction but no batches: what a
    /// [`ProducerAppendInfo`] accumulates into (Kafka's `withProducerIdAndBatchMetadata`).
    fn without_batches(&self) -> Self {
        ProducerStateEntry {
            batches: VecDeque::new(),
            ..self.clone()
        }
    }

    /// A new epoch forgets the batches of the old one.
    fn maybe_update_epoch(&mut self, producer_epoch: i16) {
        if self.producer_epoch != producer_epoch {
            self.batches.clear();
            self.producer_epoch = producer_epoch;
        }
    }

    fn push_batch(&mut self, batch: BatchMetadata) {
        if self.batches.len() == NUM_BATCHES_TO_RETAIN {
            self.batches.pop_front();
        }
        self.batches.push_back(batch);
    }

    fn add_batch(&mut self, producer_epoch: i16, batch: BatchMetadata) {
        self.maybe_update_epoch(producer_epoch);
        self.push_batch(batch);
        self.last_timestamp = batch.timestamp;
    }

    /// Folds an append's accumulated entry into this one (Kafka's `update(nextEntry)`).
    fn update_from(&mut self, next: ProducerStateEntry) {
        self.maybe_update_epoch(next.producer_epoch);
        for batch in next.batches {
            self.push_batch(batch);
        }
        self.coordinator_epoch = next.coordinator_epoch;
        self.current_txn_first_offset = next.current_txn_first_offset;
        self.last_timestamp = next.last_timestamp;
    }

    /// The remembered batch with exactly this sequence range in the current epoch.
    pub fn find_duplicate(&self, header: &RecordBatchHeader) -> Option<BatchMetadata> {
        if header.producer_epoch != self.producer_epoch {
            return None;
        }
        let last_seq = batch_last_sequence(header);
        self.batches
            .iter()
            .find(|b| b.first_seq() == header.base_sequence && b.last_seq == last_seq)
            .copied()
    }

    fn to_active(&self) -> ActiveProducer {
        ActiveProducer {
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            last_sequence: self.last_seq(),
            last_timestamp_ms: self.last_timestamp,
            coordinator_epoch: self.coordinator_epoch,
            current_txn_start_offset: self.current_txn_first_offset.unwrap_or(-1),
        }
    }
}

/// A transaction that a marker completed on this partition (Kafka's `CompletedTxn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CompletedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The marker's offset.
    pub last_offset: i64,
    pub is_aborted: bool,
}

/// One producer's part of an append, checked against its state before the write (Kafka's
/// `ProducerAppendInfo`).
#[derive(Debug)]
pub(crate) struct ProducerAppendInfo {
    producer_id: i64,
    origin: AppendOrigin,
    /// The state before this append (empty for a new producer).
    current: ProducerStateEntry,
    /// The state this append leads to, batches of this append only.
    updated: ProducerStateEntry,
    /// First offsets of transactions this append starts.
    started_txns: Vec<i64>,
}

impl ProducerAppendInfo {
    fn new(current: ProducerStateEntry, origin: AppendOrigin) -> Self {
        ProducerAppendInfo {
            producer_id: current.producer_id,
            origin,
            updated: current.without_batches(),
            current,
            started_txns: Vec::new(),
        }
    }

    fn check_producer_epoch(&self, producer_epoch: i16) -> Result<(), ProducerStateError> {
        if producer_epoch < self.updated.producer_epoch {
            let error = ProducerStateError::InvalidProducerEpoch {
                producer_id: self.producer_id,
                producer_epoch,
                current_epoch: self.updated.producer_epoch,
            };
            if self.origin == AppendOrigin::Replication {
                tracing::warn!(%error, "replicated batch with an old producer epoch");
            } else {
                return Err(error);
            }
        }
        Ok(())
    }

    /// Kafka's `checkSequence`, client appends only.
    fn check_sequence(
        &self,
        producer_epoch: i16,
        first_seq: i32,
    ) -> Result<(), ProducerStateError> {
        if producer_epoch != self.updated.producer_epoch {
            // A new epoch must start at sequence 0. With no state at all (never seen,
            // expired or evicted) Kafka since KIP-360 (2.5) accepts any sequence, so a producer
            // whose batches retention removed goes on.
            if first_seq != 0 && self.updated.producer_epoch != NO_PRODUCER_EPOCH {
                return Err(ProducerStateError::OutOfOrderSequence {
                    producer_id: self.producer_id,
                    producer_epoch,
                    sequence: first_seq,
                    last_sequence: self.updated.last_seq(),
                });
            }
            return Ok(());
        }
        let current_last_seq = if !self.updated.batches.is_empty() {
            self.updated.last_seq()
        } else if producer_epoch == self.current.producer_epoch {
            self.current.last_seq()
        } else {
            NO_SEQUENCE
        };
        // Kafka accepts any sequence when there is no state at all. Later batches of the same
        // append must follow the earlier ones.
        let no_state =
            self.current.producer_epoch == NO_PRODUCER_EPOCH && self.updated.batches.is_empty();
        if no_state || in_sequence(current_last_seq, first_seq) {
            return Ok(());
        }
        Err(ProducerStateError::OutOfOrderSequence {
            producer_id: self.producer_id,
            producer_epoch,
            sequence: first_seq,
            last_sequence: current_last_seq,
        })
    }

    /// Kafka's `appendDataBatch`. `header` has its offsets assigned.
    fn append_data_batch(&mut self, header: &RecordBatchHeader) -> Result<(), ProducerStateError> {
        let first_offset = header.base_offset;
        let epoch = header.producer_epoch;
        self.check_producer_epoch(epoch)?;
        if self.origin == AppendOrigin::Client {
            self.check_sequence(epoch, header.base_sequence)?;
        }
        self.updated.add_batch(
            epoch,
            BatchMetadata {
                last_seq: batch_last_sequence(header),
                last_offset: header.last_offset(),
                offset_delta: header.last_offset_delta,
                timestamp: header.max_timestamp,
            },
        );
        match (
            self.updated.current_txn_first_offset,
            header.is_transactional(),
        ) {
            (Some(_), false) if self.origin != AppendOrigin::Replication => {
                Err(ProducerStateError::InvalidTxnState {
                    producer_id: self.producer_id,
                    offset: first_offset,
                })
            }
            (None, true) => {
                // This batch begins a transaction.
                self.updated.current_txn_first_offset = Some(first_offset);
                self.started_txns.push(first_offset);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Kafka's `appendEndTxnMarker`: the completed transaction, if one was ongoing here.
    fn append_end_txn_marker(
        &mut self,
        marker: EndTxnMarker,
        producer_epoch: i16,
        offset: i64,
        timestamp: i64,
    ) -> Result<Option<CompletedTxn>, ProducerStateError> {
        self.check_producer_epoch(producer_epoch)?;
        if self.updated.coordinator_epoch > marker.coordinator_epoch {
            let error = ProducerStateError::TransactionCoordinatorFenced {
                producer_id: self.producer_id,
                coordinator_epoch: marker.coordinator_epoch,
                current_coordinator_epoch: self.updated.coordinator_epoch,
            };
            if self.origin == AppendOrigin::Replication {
                tracing::info!(%error, "replicated marker from an older coordinator");
            } else {
                return Err(error);
            }
        }
        // A marker without data here changes neither the LSO nor the transaction index.
        let completed = self
            .updated
            .current_txn_first_offset
            .map(|first_offset| CompletedTxn {
                producer_id: self.producer_id,
                first_offset,
                last_offset: offset,
                is_aborted: !marker.commit,
            });
        self.updated.maybe_update_epoch(producer_epoch);
        self.updated.coordinator_epoch = marker.coordinator_epoch;
        self.updated.current_txn_first_offset = None;
        self.updated.last_timestamp = timestamp;
        Ok(completed)
    }
}

/// A batch as producer state sees it: its (offset-assigned) header and, for a control batch,
/// its transaction marker (`None` for other control types, which change nothing).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProducerBatch {
    pub header: RecordBatchHeader,
    pub marker: Option<EndTxnMarker>,
}

/// The outcome of checking an append against producer state.
#[derive(Debug)]
pub(crate) enum Analysis {
    /// A retry of a batch already in the log: write nothing, answer with its offsets.
    Duplicate(BatchMetadata),
    /// Valid: apply after writing.
    Update(ProducerUpdate),
}

/// What an append changes, to apply once its batches are written.
#[derive(Debug, Default)]
pub(crate) struct ProducerUpdate {
    infos: Vec<ProducerAppendInfo>,
    completed: Vec<CompletedTxn>,
}

impl ProducerUpdate {
    pub fn is_empty(&self) -> bool {
        self.infos.is_empty()
    }
}

/// The producer state of one partition (Kafka's `ProducerStateManager`).
#[derive(Debug)]
pub(crate) struct ProducerStateManager {
    producers: HashMap<i64, ProducerStateEntry>,
    /// Ongoing transactions: first offset -> producer id.
    ongoing_txns: BTreeMap<i64, i64>,
    /// Completed transactions whose marker is not below the high watermark yet: first offset
    /// -> marker offset. They still hold the last stable offset back.
    unreplicated_txns: BTreeMap<i64, i64>,
    max_producers: usize,
}

impl Default for ProducerStateManager {
    fn default() -> Self {
        Self::with_max_producers(MAX_PRODUCERS_PER_PARTITION)
    }
}

impl ProducerStateManager {
    pub fn with_max_producers(max_producers: usize) -> Self {
        ProducerStateManager {
            producers: HashMap::new(),
            ongoing_txns: BTreeMap::new(),
            unreplicated_txns: BTreeMap::new(),
            max_producers,
        }
    }

    pub fn clear(&mut self) {
        self.producers.clear();
        self.ongoing_txns.clear();
        self.unreplicated_txns.clear();
    }

    pub fn entry(&self, producer_id: i64) -> Option<&ProducerStateEntry> {
        self.producers.get(&producer_id)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// Checks an append's batches (offsets assigned, in log order) without changing anything.
    /// Kafka's `analyzeAndValidateProducerState`.
    pub fn analyze(
        &self,
        batches: &[ProducerBatch],
        origin: AppendOrigin,
    ) -> Result<Analysis, ProducerStateError> {
        let mut update = ProducerUpdate::default();
        for batch in batches {
            let header = &batch.header;
            if header.producer_id < 0 {
                continue;
            }
            if origin == AppendOrigin::Client {
                if header.is_control() {
                    return Err(ProducerStateError::ControlBatchFromClient);
                }
                if header.base_sequence < 0 {
                    return Err(ProducerStateError::InvalidSequence {
                        producer_id: header.producer_id,
                        base_sequence: header.base_sequence,
                    });
                }
                if let Some(duplicate) = self
                    .producers
                    .get(&header.producer_id)
                    .and_then(|entry| entry.find_duplicate(header))
                {
                    return Ok(Analysis::Duplicate(duplicate));
                }
            }
            let info = match update
                .infos
                .iter()
                .position(|i| i.producer_id == header.producer_id)
            {
                Some(index) => &mut update.infos[index],
                None => {
                    let current = self
                        .producers
                        .get(&header.producer_id)
                        .cloned()
                        .unwrap_or_else(|| ProducerStateEntry::empty(header.producer_id));
                    update.infos.push(ProducerAppendInfo::new(current, origin));
                    let last = update.infos.len() - 1;
                    &mut update.infos[last]
                }
            };
            if header.is_control() {
                if let Some(marker) = batch.marker {
                    let completed = info.append_end_txn_marker(
                        marker,
                        header.producer_epoch,
                        header.base_offset,
                        header.max_timestamp,
                    )?;
                    update.completed.extend(completed);
                }
            } else {
                info.append_data_batch(header)?;
            }
        }
        if origin != AppendOrigin::Replication {
            self.check_room_for(&update)?;
        }
        Ok(Analysis::Update(update))
    }

    /// New producers fit if the limit leaves room or enough idle producers can be forgotten.
    fn check_room_for(&self, update: &ProducerUpdate) -> Result<(), ProducerStateError> {
        let new = update
            .infos
            .iter()
            .filter(|i| !self.producers.contains_key(&i.producer_id))
            .count();
        let overflow = (self.producers.len() + new).saturating_sub(self.max_producers);
        if overflow == 0 {
            return Ok(());
        }
        let evictable = self
            .producers
            .values()
            .filter(|e| e.current_txn_first_offset.is_none())
            .count();
        if evictable >= overflow {
            Ok(())
        } else {
            Err(ProducerStateError::TooManyProducers {
                limit: self.max_producers,
            })
        }
    }

    /// Applies a checked append after its batches are in the log. Returns the completed
    /// transactions with the last stable offset right after each, for the transaction index
    /// (Kafka's order: all producers first, then each completion).
    pub fn apply(&mut self, update: ProducerUpdate) -> Vec<(CompletedTxn, i64)> {
        for info in update.infos {
            self.make_room_for(info.producer_id);
            for first_offset in &info.started_txns {
                self.ongoing_txns.insert(*first_offset, info.producer_id);
            }
            match self.producers.get_mut(&info.producer_id) {
                Some(entry) => entry.update_from(info.updated),
                None => {
                    self.producers.insert(info.producer_id, info.updated);
                }
            }
        }
        let mut completed = Vec::with_capacity(update.completed.len());
        for txn in update.completed {
            let last_stable_offset = self.last_stable_offset_after(&txn);
            self.complete_txn(&txn);
            completed.push((txn, last_stable_offset));
        }
        completed
    }

    /// Forgets the least recently active producer without a transaction when a new one would
    /// exceed the limit.
    fn make_room_for(&mut self, producer_id: i64) {
        if self.producers.len() < self.max_producers || self.producers.contains_key(&producer_id) {
            return;
        }
        let victim = self
            .producers
            .values()
            .filter(|e| e.current_txn_first_offset.is_none())
            .min_by_key(|e| e.last_timestamp)
            .map(|e| e.producer_id);
        match victim {
            Some(victim) => {
                tracing::warn!(
                    producer_id = victim,
                    limit = self.max_producers,
                    "forgetting the least recently active producer: too many producers"
                );
                self.producers.remove(&victim);
            }
            // Only possible when replaying the log (checked otherwise): follow the log.
            None => tracing::warn!(
                limit = self.max_producers,
                "more producers with ongoing transactions than the limit"
            ),
        }
    }

    /// Kafka's `lastStableOffset(completedTxn)`: the first offset of the earliest other
    /// ongoing transaction, else just after the marker.
    fn last_stable_offset_after(&self, txn: &CompletedTxn) -> i64 {
        self.ongoing_txns
            .iter()
            .find(|(_, producer_id)| **producer_id != txn.producer_id)
            .map_or(txn.last_offset + 1, |(first_offset, _)| *first_offset)
    }

    fn complete_txn(&mut self, txn: &CompletedTxn) {
        if self.ongoing_txns.remove(&txn.first_offset).is_none() {
            tracing::warn!(
                producer_id = txn.producer_id,
                first_offset = txn.first_offset,
                "completed a transaction that was not ongoing"
            );
            return;
        }
        self.unreplicated_txns
            .insert(txn.first_offset, txn.last_offset);
    }

    /// Completed transactions whose markers are now below the high watermark stop holding
    /// the last stable offset back.
    pub fn on_high_watermark_updated(&mut self, high_watermark: i64) {
        self.unreplicated_txns
            .retain(|_, last_offset| *last_offset >= high_watermark);
    }

    /// Kafka's `firstUnstableOffset`: the first offset of the earliest transaction that is
    /// ongoing or whose marker is not replicated yet.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        let ongoing = self.ongoing_txns.keys().next().copied();
        let unreplicated = self.unreplicated_txns.keys().next().copied();
        match (ongoing, unreplicated) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn active_producers(&self) -> Vec<ActiveProducer> {
        let mut producers: Vec<ActiveProducer> = self
            .producers
            .values()
            .map(ProducerStateEntry::to_active)
            .collect();
        producers.sort_by_key(|p| p.producer_id);
        producers
    }

    /// The last data offset (or, after only markers, the epoch) of each producer: the batches
    /// the cleaner keeps so that sequence and epoch state survive compaction.
    pub fn last_records(&self) -> HashMap<i64, (Option<i64>, i16)> {
        self.producers
            .values()
            .map(|e| {
                let last = e.last_data_offset();
                (
                    e.producer_id,
                    ((last >= 0).then_some(last), e.producer_epoch),
                )
            })
            .collect()
    }

    /// Kafka's `removeExpiredProducers`: forgets producers without an ongoing transaction
    /// whose last write is at least `expiration_ms` old. Returns how many.
    pub fn remove_expired(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, entry| {
            entry.current_txn_first_offset.is_some()
                || now_ms.saturating_sub(entry.last_timestamp) < expiration_ms
        });
        before - self.producers.len()
    }

    /// Replaces the state with a snapshot's entries.
    pub fn load(&mut self, entries: Vec<ProducerStateEntry>) {
        self.clear();
        for entry in entries {
            if let Some(first_offset) = entry.current_txn_first_offset {
                self.ongoing_txns.insert(first_offset, entry.producer_id);
            }
            self.producers.insert(entry.producer_id, entry);
        }
    }

    /// The snapshot of the current state as of `offset`.
    pub fn encode_snapshot(&self, offset: i64) -> Vec<u8> {
        let mut entries: Vec<&ProducerStateEntry> = self.producers.values().collect();
        entries.sort_by_key(|e| e.producer_id);
        encode_snapshot(offset, &entries)
    }
}

/// Snapshot format version.
const SNAPSHOT_VERSION: u16 = 1;
/// version + crc + offset + count.
const SNAPSHOT_HEADER_BYTES: usize = 2 + 4 + 8 + 4;
const SNAPSHOT_ENTRY_FIXED_BYTES: usize = 8 + 2 + 4 + 8 + 8 + 1;
const SNAPSHOT_BATCH_BYTES: usize = 4 + 8 + 4 + 8;
/// Entries a snapshot may hold: the producer limit, with room for producers in transactions
/// beyond it (never evicted); anything larger is not ours.
const SNAPSHOT_ENTRIES_MAX: usize = 10 * MAX_PRODUCERS_PER_PARTITION;
/// The largest file a snapshot can be (about 150 MB); checked before reading.
const SNAPSHOT_BYTES_MAX: u64 = (SNAPSHOT_HEADER_BYTES
    + SNAPSHOT_ENTRIES_MAX
        * (SNAPSHOT_ENTRY_FIXED_BYTES + NUM_BATCHES_TO_RETAIN * SNAPSHOT_BATCH_BYTES))
    as u64;

pub(crate) const SNAPSHOT_SUFFIX: &str = "snapshot";

fn encode_snapshot(offset: i64, entries: &[&ProducerStateEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        SNAPSHOT_HEADER_BYTES
            + entries.len() * (SNAPSHOT_ENTRY_FIXED_BYTES + 2 * SNAPSHOT_BATCH_BYTES),
    );
    out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
    out.extend_from_slice(&[0; 4]); // crc, set below
    out.extend_from_slice(&offset.to_be_bytes());
    out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for entry in entries {
        out.extend_from_slice(&entry.producer_id.to_be_bytes());
        out.extend_from_slice(&entry.producer_epoch.to_be_bytes());
        out.extend_from_slice(&entry.coordinator_epoch.to_be_bytes());
        out.extend_from_slice(&entry.last_timestamp.to_be_bytes());
        out.extend_from_slice(&entry.current_txn_first_offset.unwrap_or(-1).to_be_bytes());
        // At most NUM_BATCHES_TO_RETAIN (5), so it fits a byte.
        out.push(entry.batches.len() as u8);
        for batch in &entry.batches {
            out.extend_from_slice(&batch.last_seq.to_be_bytes());
            out.extend_from_slice(&batch.last_offset.to_be_bytes());
            out.extend_from_slice(&batch.offset_delta.to_be_bytes());
            out.extend_from_slice(&batch.timestamp.to_be_bytes());
        }
    }
    let crc = crc32c::crc32c(&out[6..]);
    out[2..6].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Reads big-endian integers off a byte slice; `None` past its end.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.bytes.split_first_chunk::<N>()?;
        self.bytes = rest;
        Some(*head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|b| b[0])
    }
    fn i16(&mut self) -> Option<i16> {
        self.take().map(i16::from_be_bytes)
    }
    fn i32(&mut self) -> Option<i32> {
        self.take().map(i32::from_be_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_be_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_be_bytes)
    }
}

/// Decodes a snapshot taken at `expected_offset`; `Err(reason)` if it is not a whole, valid
/// snapshot of that offset.
pub(crate) fn decode_snapshot(
    bytes: &[u8],
    expected_offset: i64,
) -> Result<Vec<ProducerStateEntry>, String> {
    if bytes.len() < SNAPSHOT_HEADER_BYTES {
        return Err(format!("{} bytes is shorter than a header", bytes.len()));
    }
    let version = u16::from_be_bytes([bytes[0], bytes[1]]);
    if version != SNAPSHOT_VERSION {
        return Err(format!("unknown version {version}"));
    }
    let crc = u32::from_be_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]);
    if crc32c::crc32c(&bytes[6..]) != crc {
        return Err("CRC mismatch".into());
    }
    let mut reader = Reader { bytes: &bytes[6..] };
    let truncated = || "truncated".to_string();
    let offset = reader.i64().ok_or_else(truncated)?;
    if offset != expected_offset {
        return Err(format!("holds offset {offset}, named {expected_offset}"));
    }
    let count = reader.u32().ok_or_else(truncated)? as usize;
    if count > SNAPSHOT_ENTRIES_MAX || count * SNAPSHOT_ENTRY_FIXED_BYTES > reader.bytes.len() {
        return Err(format!("implausible producer count {count}"));
    }
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        entries.push(decode_entry(&mut reader).ok_or_else(truncated)??);
    }
    if !reader.bytes.is_empty() {
        return Err(format!("{} trailing bytes", reader.bytes.len()));
    }
    Ok(entries)
}

fn decode_entry(reader: &mut Reader<'_>) -> Option<Result<ProducerStateEntry, String>> {
    let producer_id = reader.i64()?;
    let producer_epoch = reader.i16()?;
    let coordinator_epoch = reader.i32()?;
    let last_timestamp = reader.i64()?;
    let txn_first_offset = reader.i64()?;
    let batch_count = usize::from(reader.u8()?);
    if batch_count > NUM_BATCHES_TO_RETAIN || producer_id < 0 {
        return Some(Err(format!(
            "producer {producer_id} with {batch_count} batches"
        )));
    }
    let mut batches = VecDeque::with_capacity(batch_count);
    for _ in 0..batch_count {
        let last_seq = reader.i32()?;
        let last_offset = reader.i64()?;
        let offset_delta = reader.i32()?;
        let timestamp = reader.i64()?;
        if offset_delta < 0 {
            return Some(Err(format!("negative offset delta {offset_delta}")));
        }
        batches.push_back(BatchMetadata {
            last_seq,
            last_offset,
            offset_delta,
            timestamp,
        });
    }
    Some(Ok(ProducerStateEntry {
        producer_id,
        producer_epoch,
        coordinator_epoch,
        last_timestamp,
        current_txn_first_offset: (txn_first_offset >= 0).then_some(txn_first_offset),
        batches,
    }))
}

pub(crate) fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(crate::segment::segment_file_name(offset, SNAPSHOT_SUFFIX))
}

/// Reads the snapshot at `offset`; a missing, oversized or invalid file is `CorruptFile`.
pub(crate) fn read_snapshot(
    dir: &Path,
    offset: i64,
) -> Result<Vec<ProducerStateEntry>, StorageError> {
    let path = snapshot_path(dir, offset);
    let corrupt = |reason: String| StorageError::CorruptFile {
        path: path.clone(),
        reason,
    };
    let size = std::fs::metadata(&path)
        .map_err(io_error("stat", &path))?
        .len();
    if size > SNAPSHOT_BYTES_MAX {
        return Err(corrupt(format!("{size} bytes is larger than any snapshot")));
    }
    let bytes = std::fs::read(&path).map_err(io_error("read", &path))?;
    decode_snapshot(&bytes, offset).map_err(corrupt)
}

/// Offsets of the snapshot files in `dir`, ascending.
pub(crate) fn list_snapshots(dir: &Path) -> Result<Vec<i64>, StorageError> {
    let mut offsets = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error("list", dir))? {
        let path = entry.map_err(io_error("list", dir))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(stem) = name.strip_suffix(".snapshot") else {
            continue;
        };
        if let Ok(offset) = stem.parse::<i64>() {
            if stem.len() == 20 && offset >= 0 {
                offsets.push(offset);
            }
        }
    }
    offsets.sort_unstable();
    Ok(offsets)
}

#[cfg(test)]
mod tests;
