//! A transactional id's state (Kafka's `TransactionMetadata`, `TransactionState`,
//! `TxnTransitMetadata`).
//!
//! Every change is prepared as a [`TxnTransitMetadata`] (the whole target state), appended to
//! `__transaction_state`, and only then applied with
//! [`TransactionMetadata::complete_transition_to`], which checks Kafka's rules again. The shard
//! lock is held from prepare to complete, so unlike Kafka no `pendingState` is needed to keep
//! two transitions apart; an append that fails leaves the metadata as it was.

use std::collections::BTreeSet;

use super::transaction_log::TransactionLogValue;

/// Kafka's `RecordBatch.NO_PRODUCER_ID`.
pub const NO_PRODUCER_ID: i64 = -1;
/// Kafka's `RecordBatch.NO_PRODUCER_EPOCH`.
pub const NO_PRODUCER_EPOCH: i16 = -1;

/// `transaction.version` feature levels (Kafka's `TransactionVersion`): 0 and 1 are the
/// classic protocol, 2 is KIP-890 part 2 (the epoch is bumped by every EndTxn, partitions are
/// added implicitly by Produce and TxnOffsetCommit).
pub const TV_0: i16 = 0;
pub const TV_2: i16 = 2;

/// Whether a transaction version bumps the epoch at the end of every transaction.
pub fn supports_epoch_bump(transaction_version: i16) -> bool {
    transaction_version >= TV_2
}

/// Kafka's `TransactionMetadata.isEpochExhausted`: the last epoch is kept so the coordinator
/// can always fence.
pub fn is_epoch_exhausted(producer_epoch: i16) -> bool {
    producer_epoch >= i16::MAX - 1
}

/// Kafka's `TransactionState`, with its ids (persisted) and names (DescribeTransactions,
/// ListTransactions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TransactionState {
    /// No transaction (after InitProducerId, or after a completed one's state was rewritten).
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    /// Being expired; never persisted (a tombstone is).
    Dead,
    /// Bumping the epoch to fence a producer; never persisted by Fjord (it goes straight to
    /// PrepareAbort with the bumped epoch).
    PrepareEpochFence,
}

impl TransactionState {
    pub const ALL: [TransactionState; 8] = [
        TransactionState::Empty,
        TransactionState::Ongoing,
        TransactionState::PrepareCommit,
        TransactionState::PrepareAbort,
        TransactionState::CompleteCommit,
        TransactionState::CompleteAbort,
        TransactionState::Dead,
        TransactionState::PrepareEpochFence,
    ];

    pub fn id(self) -> i8 {
        match self {
            TransactionState::Empty => 0,
            TransactionState::Ongoing => 1,
            TransactionState::PrepareCommit => 2,
            TransactionState::PrepareAbort => 3,
            TransactionState::CompleteCommit => 4,
            TransactionState::CompleteAbort => 5,
            TransactionState::Dead => 6,
            TransactionState::PrepareEpochFence => 7,
        }
    }

    pub fn from_id(id: i8) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.id() == id)
    }

    /// The name clients see (Kafka's `TransactionState.name`).
    pub fn name(self) -> &'static str {
        match self {
            TransactionState::Empty => "Empty",
            TransactionState::Ongoing => "Ongoing",
            TransactionState::PrepareCommit => "PrepareCommit",
            TransactionState::PrepareAbort => "PrepareAbort",
            TransactionState::CompleteCommit => "CompleteCommit",
            TransactionState::CompleteAbort => "CompleteAbort",
            TransactionState::Dead => "Dead",
            TransactionState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Kafka's `validPreviousStates`.
    pub fn valid_previous_states(self) -> &'static [TransactionState] {
        use TransactionState::*;
        match self {
            Empty => &[Empty, CompleteCommit, CompleteAbort],
            Ongoing => &[Ongoing, Empty, CompleteCommit, CompleteAbort],
            PrepareCommit => &[Ongoing],
            PrepareAbort => &[Ongoing, PrepareEpochFence],
            CompleteCommit => &[PrepareCommit],
            CompleteAbort => &[PrepareAbort],
            Dead => &[Empty, CompleteAbort, CompleteCommit],
            PrepareEpochFence => &[Ongoing],
        }
    }

    /// Whether a transactional id in this state may expire.
    pub fn is_expiration_allowed(self) -> bool {
        matches!(
            self,
            TransactionState::Empty
                | TransactionState::CompleteCommit
                | TransactionState::CompleteAbort
        )
    }

    /// PrepareCommit or PrepareAbort: markers are being written.
    pub fn is_prepare(self) -> bool {
        matches!(
            self,
            TransactionState::PrepareCommit | TransactionState::PrepareAbort
        )
    }
}

impl std::fmt::Display for TransactionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An illegal transition: a coordinator bug, never client input. Reported as
/// UNKNOWN_SERVER_ERROR (Kafka throws `IllegalStateException`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("transactional id {transactional_id}: illegal transition from {from} to {to}: {reason}")]
pub struct IllegalTransition {
    pub transactional_id: String,
    pub from: TransactionState,
    pub to: TransactionState,
    pub reason: &'static str,
}

/// The target of a transition (Kafka's immutable `TxnTransitMetadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnTransitMetadata {
    pub producer_id: i64,
    pub previous_producer_id: i64,
    pub next_producer_id: i64,
    pub producer_epoch: i16,
    pub last_producer_epoch: i16,
    pub txn_timeout_ms: i32,
    pub state: TransactionState,
    pub topic_partitions: BTreeSet<(String, i32)>,
    pub txn_start_timestamp: i64,
    pub txn_last_update_timestamp: i64,
    pub client_transaction_version: i16,
}

impl TxnTransitMetadata {
    /// The record value that persists this transition.
    pub fn to_log_value(&self) -> TransactionLogValue {
        TransactionLogValue {
            producer_id: self.producer_id,
            previous_producer_id: self.previous_producer_id,
            next_producer_id: self.next_producer_id,
            producer_epoch: self.producer_epoch,
            transaction_timeout_ms: self.txn_timeout_ms,
            state: self.state,
            partitions: if self.state == TransactionState::Empty {
                BTreeSet::new()
            } else {
                self.topic_partitions.clone()
            },
            last_update_timestamp_ms: self.txn_last_update_timestamp,
            start_timestamp_ms: self.txn_start_timestamp,
            client_transaction_version: self.client_transaction_version,
        }
    }
}

/// One transactional id's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionMetadata {
    pub transactional_id: String,
    pub producer_id: i64,
    /// The producer id of the last committed transaction (KIP-360/890 retries over a rotation).
    pub previous_producer_id: i64,
    /// TV2: the producer id to move to when the current transaction completes (the epoch
    /// overflowed).
    pub next_producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last bump (in memory only: -1 after a load, as in Kafka).
    pub last_producer_epoch: i16,
    pub txn_timeout_ms: i32,
    pub state: TransactionState,
    /// The transaction's partitions. In PrepareCommit/PrepareAbort, the ones whose marker is
    /// still to be written (markers written are removed, in memory only, as Kafka does).
    pub topic_partitions: BTreeSet<(String, i32)>,
    /// When the first partition was added (-1 without a transaction).
    pub txn_start_timestamp: i64,
    pub txn_last_update_timestamp: i64,
    pub client_transaction_version: i16,
}

impl TransactionMetadata {
    /// A transactional id seen for the first time, with a fresh producer id (epoch -1 until
    /// the first InitProducerId transition completes).
    pub fn new(
        transactional_id: String,
        producer_id: i64,
        txn_timeout_ms: i32,
        now_ms: i64,
    ) -> Self {
        Self {
            transactional_id,
            producer_id,
            previous_producer_id: NO_PRODUCER_ID,
            next_producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            txn_timeout_ms,
            state: TransactionState::Empty,
            topic_partitions: BTreeSet::new(),
            txn_start_timestamp: -1,
            txn_last_update_timestamp: now_ms,
            client_transaction_version: TV_0,
        }
    }

    /// The metadata a persisted value describes (Kafka's `readTxnRecordValue`).
    pub fn from_log_value(transactional_id: String, value: TransactionLogValue) -> Self {
        Self {
            transactional_id,
            producer_id: value.producer_id,
            previous_producer_id: value.previous_producer_id,
            next_producer_id: value.next_producer_id,
            producer_epoch: value.producer_epoch,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            txn_timeout_ms: value.transaction_timeout_ms,
            state: value.state,
            topic_partitions: if value.state == TransactionState::Empty {
                BTreeSet::new()
            } else {
                value.partitions
            },
            txn_start_timestamp: value.start_timestamp_ms,
            txn_last_update_timestamp: value.last_update_timestamp_ms,
            client_transaction_version: value.client_transaction_version,
        }
    }

    pub fn is_producer_epoch_exhausted(&self) -> bool {
        is_epoch_exhausted(self.producer_epoch)
    }

    fn has_pending_transaction(&self) -> bool {
        matches!(
            self.state,
            TransactionState::Ongoing
                | TransactionState::PrepareAbort
                | TransactionState::PrepareCommit
        )
    }

    fn illegal(&self, to: TransactionState, reason: &'static str) -> IllegalTransition {
        IllegalTransition {
            transactional_id: self.transactional_id.clone(),
            from: self.state,
            to,
            reason,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn prepare_transition_to(
        &self,
        state: TransactionState,
        producer_id: i64,
        next_producer_id: i64,
        producer_epoch: i16,
        last_producer_epoch: i16,
        txn_timeout_ms: i32,
        topic_partitions: BTreeSet<(String, i32)>,
        txn_start_timestamp: i64,
        now_ms: i64,
        client_transaction_version: i16,
    ) -> Result<TxnTransitMetadata, IllegalTransition> {
        if producer_id < 0 {
            return Err(self.illegal(state, "negative producer id"));
        }
        if state != TransactionState::Dead && producer_epoch < 0 {
            return Err(self.illegal(state, "negative producer epoch"));
        }
        if !state.valid_previous_states().contains(&self.state) {
            return Err(self.illegal(state, "not a valid previous state"));
        }
        Ok(TxnTransitMetadata {
            producer_id,
            previous_producer_id: self.producer_id,
            next_producer_id,
            producer_epoch,
            last_producer_epoch,
            txn_timeout_ms,
            state,
            topic_partitions,
            txn_start_timestamp,
            // Time never goes backwards in the log (Kafka checks it in completeTransitionTo).
            txn_last_update_timestamp: now_ms.max(self.txn_last_update_timestamp),
            client_transaction_version,
        })
    }

    /// InitProducerId on a transactional id with no transaction: bump the epoch (Kafka's
    /// `prepareIncrementProducerEpoch`). `expected_epoch` is the KIP-360 epoch of the request.
    /// `Ok(Err(PRODUCER_FENCED))` when the expected epoch is neither the current nor the last.
    pub fn prepare_increment_producer_epoch(
        &self,
        txn_timeout_ms: i32,
        expected_epoch: Option<i16>,
        now_ms: i64,
    ) -> Result<Result<TxnTransitMetadata, fjord_protocol::ResponseError>, IllegalTransition> {
        if self.is_producer_epoch_exhausted() {
            return Err(self.illegal(TransactionState::Empty, "producer epoch exhausted"));
        }
        let bumped = self.producer_epoch + 1;
        let (epoch, last) = match expected_epoch {
            None => (bumped, NO_PRODUCER_EPOCH),
            Some(expected)
                if self.producer_epoch == NO_PRODUCER_EPOCH || expected == self.producer_epoch =>
            {
                (bumped, self.producer_epoch)
            }
            // A retry of a bump whose response was lost.
            Some(expected) if expected == self.last_producer_epoch => {
                (self.producer_epoch, self.last_producer_epoch)
            }
            Some(_) => return Ok(Err(fjord_protocol::ResponseError::ProducerFenced)),
        };
        self.prepare_transition_to(
            TransactionState::Empty,
            self.producer_id,
            NO_PRODUCER_ID,
            epoch,
            last,
            txn_timeout_ms,
            BTreeSet::new(),
            -1,
            now_ms,
            TV_0,
        )
        .map(Ok)
    }

    /// InitProducerId with the epoch exhausted: a new producer id at epoch 0.
    pub fn prepare_producer_id_rotation(
        &self,
        new_producer_id: i64,
        txn_timeout_ms: i32,
        now_ms: i64,
        record_last_epoch: bool,
    ) -> Result<TxnTransitMetadata, IllegalTransition> {
        if self.has_pending_transaction() {
            return Err(self.illegal(TransactionState::Empty, "transaction still pending"));
        }
        self.prepare_transition_to(
            TransactionState::Empty,
            new_producer_id,
            NO_PRODUCER_ID,
            0,
            if record_last_epoch {
                self.producer_epoch
            } else {
                NO_PRODUCER_EPOCH
            },
            txn_timeout_ms,
            BTreeSet::new(),
            -1,
            now_ms,
            TV_0,
        )
    }

    /// AddPartitionsToTxn / AddOffsetsToTxn / an implicit TV2 add.
    pub fn prepare_add_partitions(
        &self,
        added: &BTreeSet<(String, i32)>,
        now_ms: i64,
        client_transaction_version: i16,
    ) -> Result<TxnTransitMetadata, IllegalTransition> {
        let start = match self.state {
            TransactionState::Empty
            | TransactionState::CompleteAbort
            | TransactionState::CompleteCommit => now_ms,
            _ => self.txn_start_timestamp,
        };
        let mut partitions = self.topic_partitions.clone();
        partitions.extend(added.iter().cloned());
        self.prepare_transition_to(
            TransactionState::Ongoing,
            self.producer_id,
            NO_PRODUCER_ID,
            self.producer_epoch,
            self.last_producer_epoch,
            self.txn_timeout_ms,
            partitions,
            start,
            now_ms,
            client_transaction_version,
        )
    }

    /// EndTxn: to PrepareCommit or PrepareAbort. With TV2 the epoch is bumped (markers carry
    /// the bumped epoch); `next_producer_id` is set when that bump exhausts the epoch.
    pub fn prepare_abort_or_commit(
        &self,
        state: TransactionState,
        client_transaction_version: i16,
        next_producer_id: i64,
        now_ms: i64,
    ) -> Result<TxnTransitMetadata, IllegalTransition> {
        let (epoch, last) = if supports_epoch_bump(client_transaction_version) {
            let bumped = self
                .producer_epoch
                .checked_add(1)
                .ok_or_else(|| self.illegal(state, "producer epoch overflow"))?;
            (bumped, self.producer_epoch)
        } else {
            (self.producer_epoch, self.last_producer_epoch)
        };
        self.prepare_transition_to(
            state,
            self.producer_id,
            next_producer_id,
            epoch,
            last,
            self.txn_timeout_ms,
            self.topic_partitions.clone(),
            self.txn_start_timestamp,
            now_ms,
            client_transaction_version,
        )
    }

    /// TV2 EndTxn of a transaction with no partitions (the client ended a transaction in which
    /// nothing was produced): the epoch is bumped and the transaction goes through PrepareX with
    /// no markers to write. Kafka accepts the abort from Empty (KIP-890); Fjord also the commit
    /// and both from CompleteCommit/CompleteAbort (see the README).
    pub fn prepare_empty_end(
        &self,
        state: TransactionState,
        next_producer_id: i64,
        now_ms: i64,
    ) -> Result<TxnTransitMetadata, IllegalTransition> {
        if !matches!(
            self.state,
            TransactionState::Empty
                | TransactionState::CompleteCommit
                | TransactionState::CompleteAbort
        ) || !state.is_prepare()
        {
            return Err(self.illegal(state, "not an empty transaction"));
        }
        let bumped = self
            .producer_epoch
            .checked_add(1)
            .ok_or_else(|| self.illegal(state, "producer epoch overflow"))?;
        Ok(TxnTransitMetadata {
            producer_id: self.producer_id,
            previous_producer_id: self.producer_id,
            next_producer_id,
            producer_epoch: bumped,
            last_producer_epoch: self.producer_epoch,
            txn_timeout_ms: self.txn_timeout_ms,
            state,
            topic_partitions: BTreeSet::new(),
            txn_start_timestamp: now_ms,
            txn_last_update_timestamp: now_ms.max(self.txn_last_update_timestamp),
            client_transaction_version: TV_2,
        })
    }

    /// Fencing an Ongoing transaction (timeout, or InitProducerId from a new producer
    /// instance): Kafka's PrepareEpochFence followed by the abort at the server's transaction
    /// version (2), which bumps twice; so the fenced producer's epoch is two behind and a TV2
    /// EndTxn retry check can never mistake it for its own bump. Near the end of the epoch
    /// range the producer id moves to `new_producer_id()` instead.
    pub fn prepare_fence_and_abort(
        &self,
        new_producer_id: impl FnOnce() -> Result<i64, fjord_protocol::ResponseError>,
        now_ms: i64,
    ) -> Result<Result<TxnTransitMetadata, fjord_protocol::ResponseError>, IllegalTransition> {
        if self.state != TransactionState::Ongoing {
            return Err(self.illegal(TransactionState::PrepareAbort, "fencing needs Ongoing"));
        }
        let (epoch, last, next_producer_id) = if self.producer_epoch <= i16::MAX - 2 {
            (
                self.producer_epoch + 2,
                self.producer_epoch + 1,
                NO_PRODUCER_ID,
            )
        } else {
            match new_producer_id() {
                Ok(id) => (i16::MAX, self.producer_epoch, id),
                Err(err) => return Ok(Err(err)),
            }
        };
        Ok(Ok(TxnTransitMetadata {
            producer_id: self.producer_id,
            previous_producer_id: self.producer_id,
            next_producer_id,
            producer_epoch: epoch,
            last_producer_epoch: last,
            txn_timeout_ms: self.txn_timeout_ms,
            state: TransactionState::PrepareAbort,
            topic_partitions: self.topic_partitions.clone(),
            txn_start_timestamp: self.txn_start_timestamp,
            txn_last_update_timestamp: now_ms.max(self.txn_last_update_timestamp),
            client_transaction_version: TV_2,
        }))
    }

    /// Markers written: to CompleteCommit or CompleteAbort (Kafka's `prepareComplete`). With
    /// TV2 and a next producer id, the producer id moves to it at epoch 0.
    pub fn prepare_complete(&self, now_ms: i64) -> Result<TxnTransitMetadata, IllegalTransition> {
        let state = match self.state {
            TransactionState::PrepareCommit => TransactionState::CompleteCommit,
            TransactionState::PrepareAbort => TransactionState::CompleteAbort,
            other => return Err(self.illegal(other, "not preparing")),
        };
        let (producer_id, epoch) = if supports_epoch_bump(self.client_transaction_version)
            && self.next_producer_id != NO_PRODUCER_ID
        {
            (self.next_producer_id, 0)
        } else {
            (self.producer_id, self.producer_epoch)
        };
        let mut transit = self.prepare_transition_to(
            state,
            producer_id,
            NO_PRODUCER_ID,
            epoch,
            self.producer_epoch,
            self.txn_timeout_ms,
            BTreeSet::new(),
            self.txn_start_timestamp,
            now_ms,
            self.client_transaction_version,
        )?;
        if transit.txn_start_timestamp == -1 {
            transit.txn_start_timestamp = now_ms;
        }
        Ok(transit)
    }

    /// Expiration: the tombstone's transition (never persisted as a value).
    pub fn prepare_dead(&self, now_ms: i64) -> Result<TxnTransitMetadata, IllegalTransition> {
        self.prepare_transition_to(
            TransactionState::Dead,
            self.producer_id,
            NO_PRODUCER_ID,
            self.producer_epoch,
            self.last_producer_epoch,
            self.txn_timeout_ms,
            BTreeSet::new(),
            self.txn_start_timestamp,
            now_ms,
            self.client_transaction_version,
        )
    }

    /// Applies a transition whose record is in the log (Kafka's `completeTransitionTo`,
    /// checks included).
    pub fn complete_transition_to(
        &mut self,
        transit: &TxnTransitMetadata,
    ) -> Result<(), IllegalTransition> {
        use TransactionState::*;
        let to = transit.state;
        let empty_end = to.is_prepare()
            && matches!(self.state, Empty | CompleteCommit | CompleteAbort)
            && transit.topic_partitions.is_empty()
            && supports_epoch_bump(transit.client_transaction_version);
        let fence = to == PrepareAbort
            && self.state == Ongoing
            && (transit.producer_epoch > self.producer_epoch.saturating_add(1)
                || transit.next_producer_id != NO_PRODUCER_ID
                    && transit.producer_epoch == i16::MAX);
        if !to.valid_previous_states().contains(&self.state) && !empty_end {
            return Err(self.illegal(to, "not a valid previous state"));
        }
        if transit.txn_last_update_timestamp < self.txn_last_update_timestamp {
            return Err(self.illegal(to, "update time went backwards"));
        }
        match to {
            Empty => {
                let bump_ok = transit.producer_epoch == self.producer_epoch.wrapping_add(1)
                    || (transit.producer_epoch == 0 && transit.producer_id != self.producer_id);
                if (self.producer_epoch != transit.producer_epoch && !bump_ok)
                    || !transit.topic_partitions.is_empty()
                    || transit.txn_start_timestamp != -1
                {
                    return Err(self.illegal(to, "unexpected metadata"));
                }
                self.txn_timeout_ms = transit.txn_timeout_ms;
                self.producer_epoch = transit.producer_epoch;
                self.last_producer_epoch = transit.last_producer_epoch;
                self.producer_id = transit.producer_id;
                self.previous_producer_id = transit.previous_producer_id;
                self.next_producer_id = NO_PRODUCER_ID;
            }
            Ongoing => {
                if transit.producer_id != self.producer_id
                    || transit.producer_epoch != self.producer_epoch
                    || !self.topic_partitions.is_subset(&transit.topic_partitions)
                    || self.txn_timeout_ms != transit.txn_timeout_ms
                {
                    return Err(self.illegal(to, "unexpected metadata"));
                }
                self.txn_start_timestamp = transit.txn_start_timestamp;
                self.topic_partitions = transit.topic_partitions.clone();
            }
            PrepareAbort | PrepareCommit => {
                let epoch_ok = if fence
                    || empty_end
                    || supports_epoch_bump(transit.client_transaction_version)
                {
                    transit.producer_epoch > self.producer_epoch
                        || transit.next_producer_id != NO_PRODUCER_ID
                } else {
                    transit.producer_epoch == self.producer_epoch
                };
                if transit.producer_id != self.producer_id
                    || !epoch_ok
                    || (!empty_end && self.topic_partitions != transit.topic_partitions)
                    || self.txn_timeout_ms != transit.txn_timeout_ms
                {
                    return Err(self.illegal(to, "unexpected metadata"));
                }
                self.producer_epoch = transit.producer_epoch;
                self.last_producer_epoch = transit.last_producer_epoch;
                self.next_producer_id = transit.next_producer_id;
                self.txn_start_timestamp = transit.txn_start_timestamp;
                self.topic_partitions = transit.topic_partitions.clone();
            }
            CompleteAbort | CompleteCommit => {
                let rotated = transit.producer_id != self.producer_id;
                if (rotated && transit.producer_id != self.next_producer_id)
                    || (!rotated && transit.producer_epoch != self.producer_epoch)
                    || self.txn_timeout_ms != transit.txn_timeout_ms
                    || transit.txn_start_timestamp == -1
                {
                    return Err(self.illegal(to, "unexpected metadata"));
                }
                self.txn_start_timestamp = transit.txn_start_timestamp;
                self.topic_partitions.clear();
                if supports_epoch_bump(transit.client_transaction_version) {
                    self.producer_epoch = transit.producer_epoch;
                    self.last_producer_epoch = transit.last_producer_epoch;
                    self.previous_producer_id = transit.previous_producer_id;
                    self.producer_id = transit.producer_id;
                    self.next_producer_id = transit.next_producer_id;
                }
            }
            PrepareEpochFence | Dead => {
                return Err(self.illegal(to, "never completed"));
            }
        }
        self.client_transaction_version = transit.client_transaction_version;
        self.txn_last_update_timestamp = transit.txn_last_update_timestamp;
        self.state = to;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TransactionState::*;

    fn tp(topic: &str, partition: i32) -> (String, i32) {
        (topic.to_string(), partition)
    }

    #[test]
    fn ids_and_names_round_trip() {
        for state in TransactionState::ALL {
            assert_eq!(TransactionState::from_id(state.id()), Some(state));
            assert_eq!(TransactionState::from_name(state.name()), Some(state));
        }
        assert_eq!(TransactionState::from_id(8), None);
    }

    #[test]
    fn a_tv1_transaction_walks_kafkas_states() {
        let mut md = TransactionMetadata::new("t".into(), 5, 1000, 0);
        let t = md
            .prepare_increment_producer_epoch(1000, None, 1)
            .unwrap()
            .unwrap();
        md.complete_transition_to(&t).unwrap();
        assert_eq!((md.state, md.producer_epoch), (Empty, 0));
        let t = md
            .prepare_add_partitions(&BTreeSet::from([tp("a", 0)]), 2, TV_0)
            .unwrap();
        md.complete_transition_to(&t).unwrap();
        assert_eq!((md.state, md.txn_start_timestamp), (Ongoing, 2));
        let t = md
            .prepare_abort_or_commit(PrepareCommit, TV_0, -1, 3)
            .unwrap();
        md.complete_transition_to(&t).unwrap();
        assert_eq!((md.state, md.producer_epoch), (PrepareCommit, 0));
        let t = md.prepare_complete(4).unwrap();
        md.complete_transition_to(&t).unwrap();
        assert_eq!(md.state, CompleteCommit);
        assert!(md.topic_partitions.is_empty());
        // Illegal: commit again without a transaction.
        assert!(md
            .prepare_abort_or_commit(PrepareCommit, TV_0, -1, 5)
            .is_err());
    }

    #[test]
    fn tv2_bumps_on_end_and_rotates_at_overflow() {
        let mut md = TransactionMetadata::new("t".into(), 5, 1000, 0);
        md.producer_epoch = i16::MAX - 2;
        md.state = Ongoing;
        md.topic_partitions.insert(tp("a", 0));
        md.txn_start_timestamp = 1;
        let t = md
            .prepare_abort_or_commit(PrepareAbort, TV_2, 6, 3)
            .unwrap();
        md.complete_transition_to(&t).unwrap();
        assert_eq!((md.producer_epoch, md.next_producer_id), (i16::MAX - 1, 6));
        let t = md.prepare_complete(4).unwrap();
        md.complete_transition_to(&t).unwrap();
        assert_eq!((md.producer_id, md.producer_epoch), (6, 0));
        assert_eq!(md.previous_producer_id, 5);
    }

    #[test]
    fn fencing_bumps_twice() {
        let mut md = TransactionMetadata::new("t".into(), 5, 1000, 0);
        md.producer_epoch = 3;
        md.state = Ongoing;
        md.topic_partitions.insert(tp("a", 0));
        md.txn_start_timestamp = 1;
        let t = md.prepare_fence_and_abort(|| Ok(9), 2).unwrap().unwrap();
        md.complete_transition_to(&t).unwrap();
        assert_eq!((md.state, md.producer_epoch), (PrepareAbort, 5));
        md.state = Ongoing;
        md.producer_epoch = i16::MAX - 1;
        let t = md.prepare_fence_and_abort(|| Ok(9), 3).unwrap().unwrap();
        md.complete_transition_to(&t).unwrap();
        let t = md.prepare_complete(4).unwrap();
        md.complete_transition_to(&t).unwrap();
        assert_eq!((md.producer_id, md.producer_epoch), (9, 0));
    }
}
