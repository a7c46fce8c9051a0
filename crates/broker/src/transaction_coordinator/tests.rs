//! State machine tests (Kafka's `TransactionCoordinatorTest` essentials): an in-memory log,
//! a fake marker writer, and time moved by hand.

use std::collections::BTreeSet;
use std::sync::atomic::AtomicBool;

use parking_lot::Mutex;

use super::producer_id_manager::MemoryProducerIdBlockStore;
use super::*;
use crate::testing::CompleteNow;

const START_MS: i64 = 1_000_000;
const TIMEOUT_MS: i32 = 60_000;
const EXPIRATION_MS: i64 = 3_600_000;

#[derive(Default)]
struct MemoryLog {
    batches: Mutex<Vec<(i32, Vec<TransactionLogRecord>)>>,
    fail: AtomicBool,
    /// Appends stay above the high watermark: commit waits time out.
    uncommitted: AtomicBool,
}

impl TransactionStateLog for MemoryLog {
    fn append(
        &self,
        partition: i32,
        records: &[TransactionLogRecord],
        _: i64,
    ) -> Result<i64, TxnAppendError> {
        if self.fail.load(Ordering::Relaxed) {
            return Err(TxnAppendError::Storage("disk on fire".into()));
        }
        // What is stored is what a load reads back: through the codec.
        let decoded = records
            .iter()
            .map(|r| {
                let (key, value) = transaction_log::encode_record(r);
                transaction_log::decode_record(Some(&key), value.as_deref()).unwrap()
            })
            .collect();
        let mut batches = self.batches.lock();
        batches.push((partition, decoded));
        Ok(batches.len() as i64)
    }

    fn is_committed(&self, _: i32, _: i64) -> bool {
        !self.uncommitted.load(Ordering::Relaxed)
    }

    fn wait_for_commit(&self, _: i32, _: i64) -> CommitFuture {
        let answer = if self.uncommitted.load(Ordering::Relaxed) {
            Err(ResponseError::RequestTimedOut)
        } else {
            Ok(())
        };
        Box::pin(std::future::ready(answer))
    }
}

impl MemoryLog {
    fn records(&self) -> Vec<TransactionLogRecord> {
        self.batches
            .lock()
            .iter()
            .flat_map(|(_, b)| b.clone())
            .collect()
    }

    fn states(&self, transactional_id: &str) -> Vec<Option<TransactionState>> {
        self.records()
            .into_iter()
            .filter(|r| r.transactional_id == transactional_id)
            .map(|r| r.value.map(|v| v.state))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct MarkerCall {
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    partitions: Vec<(String, i32)>,
}

/// Records every call; answers each partition with the error set for it, or success.
#[derive(Default)]
struct FakeWriter {
    calls: Mutex<Vec<MarkerCall>>,
    errors: Mutex<Vec<((String, i32), ResponseError)>>,
}

impl TxnMarkerWriter for FakeWriter {
    fn write_markers(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
        partitions: &[(String, i32)],
    ) -> Vec<((String, i32), Result<(), ResponseError>)> {
        assert_eq!(coordinator_epoch, COORDINATOR_EPOCH);
        self.calls.lock().push(MarkerCall {
            producer_id,
            producer_epoch,
            commit,
            partitions: partitions.to_vec(),
        });
        let errors = self.errors.lock();
        partitions
            .iter()
            .map(|tp| {
                let result = match errors.iter().find(|(p, _)| p == tp) {
                    Some((_, error)) => Err(*error),
                    None => Ok(()),
                };
                (tp.clone(), result)
            })
            .collect()
    }
}

impl FakeWriter {
    fn calls(&self) -> Vec<MarkerCall> {
        self.calls.lock().clone()
    }

    fn fail(&self, tp: (String, i32), error: ResponseError) {
        self.errors.lock().push((tp, error));
    }

    fn heal(&self) {
        self.errors.lock().clear();
    }
}

fn config() -> TransactionCoordinatorConfig {
    TransactionCoordinatorConfig {
        transactional_id_expiration_ms: EXPIRATION_MS,
        transaction_max_timeout_ms: 900_000,
        abort_timed_out_transactions_interval_ms: 10_000,
        remove_expired_transactional_ids_interval_ms: 60_000,
        batch_bytes_max: 1 << 20,
        transactional_ids_max: 5,
        partitions_per_transaction_max: 4,
    }
}

struct Harness {
    coordinator: TransactionCoordinator,
    log: Arc<MemoryLog>,
    writer: Arc<FakeWriter>,
    ids: Arc<MemoryProducerIdBlockStore>,
}

impl Harness {
    fn new() -> Self {
        Self::with(
            Arc::new(MemoryLog::default()),
            Arc::new(MemoryProducerIdBlockStore::default()),
        )
    }

    /// A coordinator over an existing log (a restart): the records are replayed.
    fn with(log: Arc<MemoryLog>, ids: Arc<MemoryProducerIdBlockStore>) -> Self {
        let writer = Arc::new(FakeWriter::default());
        let coordinator = TransactionCoordinator::with_log(
            config(),
            log.clone(),
            ProducerIdManager::with_block_size(ids.clone(), 10).unwrap(),
            writer.clone(),
            4,
            START_MS,
        );
        coordinator.replay(log.records());
        Self {
            coordinator,
            log,
            writer,
            ids,
        }
    }

    fn restart(&self) -> Self {
        Self::with(self.log.clone(), self.ids.clone())
    }

    fn init(&self, id: &str, now: i64) -> Result<(i64, i16), ResponseError> {
        self.coordinator
            .init_producer_id(Some(id), TIMEOUT_MS, None, now)
            .now()
    }

    fn add(
        &self,
        id: &str,
        pid: i64,
        epoch: i16,
        tps: &[(&str, i32)],
        now: i64,
    ) -> Result<(), ResponseError> {
        let set: BTreeSet<(String, i32)> = tps.iter().map(|(t, p)| (t.to_string(), *p)).collect();
        self.coordinator
            .add_partitions_to_transaction(id, pid, epoch, &set, metadata::TV_0, now)
            .now()
    }

    fn md(&self, id: &str) -> TransactionMetadata {
        self.coordinator.transaction_metadata(id).unwrap()
    }
}

fn tp(topic: &str, partition: i32) -> (String, i32) {
    (topic.to_string(), partition)
}

#[test]
fn idempotent_producers_get_fresh_ids_at_epoch_zero() {
    let h = Harness::new();
    let a = h
        .coordinator
        .init_producer_id(None, 0, None, START_MS)
        .now()
        .unwrap();
    let b = h
        .coordinator
        .init_producer_id(None, 0, None, START_MS)
        .now()
        .unwrap();
    assert_eq!((a.1, b.1), (0, 0));
    assert_ne!(a.0, b.0);
    assert!(
        h.log.records().is_empty(),
        "no transactional state for idempotent producers"
    );
}

#[test]
fn init_validates_like_kafka() {
    let h = Harness::new();
    let c = &h.coordinator;
    assert_eq!(
        c.init_producer_id(Some(""), TIMEOUT_MS, None, START_MS)
            .now(),
        Err(ResponseError::InvalidRequest)
    );
    assert_eq!(
        c.init_producer_id(Some("t"), 0, None, START_MS).now(),
        Err(ResponseError::InvalidTransactionTimeout)
    );
    assert_eq!(
        c.init_producer_id(Some("t"), 900_001, None, START_MS).now(),
        Err(ResponseError::InvalidTransactionTimeout)
    );
    for i in 0..5 {
        h.init(&format!("id-{i}"), START_MS).unwrap();
    }
    assert_eq!(
        h.init("one-too-many", START_MS),
        Err(ResponseError::CoordinatorNotAvailable)
    );
    assert_eq!(c.transactional_ids_count(), 5);
}

#[test]
fn init_creates_then_bumps_and_kip_360_retries() {
    let h = Harness::new();
    let (pid, epoch) = h.init("t", START_MS).unwrap();
    assert_eq!(epoch, 0);
    assert_eq!(h.init("t", START_MS + 1).unwrap(), (pid, 1));
    assert_eq!(h.log.states("t"), vec![Some(TransactionState::Empty); 2]);
    // KIP-360: the producer knows (pid, 1): bump to 2 with last epoch 1.
    let c = &h.coordinator;
    assert_eq!(
        c.init_producer_id(Some("t"), TIMEOUT_MS, Some((pid, 1)), START_MS + 2)
            .now(),
        Ok((pid, 2))
    );
    // A retry of that call (response lost) gets the same answer.
    assert_eq!(
        c.init_producer_id(Some("t"), TIMEOUT_MS, Some((pid, 1)), START_MS + 3)
            .now(),
        Ok((pid, 2))
    );
    // An older epoch is fenced, and so is a foreign producer id.
    assert_eq!(
        c.init_producer_id(Some("t"), TIMEOUT_MS, Some((pid, 0)), START_MS + 4)
            .now(),
        Err(ResponseError::ProducerFenced)
    );
    assert_eq!(
        c.init_producer_id(Some("t"), TIMEOUT_MS, Some((pid + 100, 5)), START_MS + 4)
            .now(),
        Err(ResponseError::ProducerFenced)
    );
}

#[test]
fn a_new_producer_instance_fences_the_old_one() {
    let h = Harness::new();
    let (pid, e0) = h.init("t", START_MS).unwrap();
    let (_, e1) = h.init("t", START_MS).unwrap();
    assert_eq!(
        h.add("t", pid, e0, &[("a", 0)], START_MS),
        Err(ResponseError::ProducerFenced)
    );
    assert_eq!(
        h.coordinator
            .end_transaction("t", pid, e0, true, metadata::TV_0, START_MS)
            .now(),
        Err(ResponseError::ProducerFenced)
    );
    assert_eq!(
        h.coordinator
            .end_transaction("t", pid + 1, e1, true, metadata::TV_0, START_MS)
            .now(),
        Err(ResponseError::InvalidProducerIdMapping)
    );
    assert_eq!(
        h.add("unknown", pid, e1, &[("a", 0)], START_MS),
        Err(ResponseError::InvalidProducerIdMapping)
    );
}

#[test]
fn commit_writes_markers_to_exactly_the_transactions_partitions() {
    let h = Harness::new();
    let (pid, epoch) = h.init("t", START_MS).unwrap();
    h.add("t", pid, epoch, &[("a", 0), ("b", 1)], START_MS + 1)
        .unwrap();
    h.add("t", pid, epoch, &[("a", 0), ("a", 2)], START_MS + 2)
        .unwrap();
    assert_eq!(h.md("t").state, TransactionState::Ongoing);
    assert_eq!(h.md("t").txn_start_timestamp, START_MS + 1);
    // Already in the transaction: nothing appended.
    let appended = h.log.records().len();
    h.add("t", pid, epoch, &[("b", 1)], START_MS + 3).unwrap();
    assert_eq!(h.log.records().len(), appended);

    let result = h
        .coordinator
        .end_transaction("t", pid, epoch, true, metadata::TV_0, START_MS + 4)
        .now();
    assert_eq!(result, Ok((pid, epoch)));
    assert_eq!(
        h.writer.calls(),
        vec![MarkerCall {
            producer_id: pid,
            producer_epoch: epoch,
            commit: true,
            partitions: vec![tp("a", 0), tp("a", 2), tp("b", 1)],
        }]
    );
    let md = h.md("t");
    assert_eq!(md.state, TransactionState::CompleteCommit);
    assert!(md.topic_partitions.is_empty());
    use TransactionState::*;
    assert_eq!(
        h.log.states("t"),
        vec![
            Some(Empty),
            Some(Ongoing),
            Some(Ongoing),
            Some(PrepareCommit),
            Some(CompleteCommit)
        ]
    );
    // PrepareCommit's record names every partition (a restart must re-send them all).
    let prepare = h.log.records()[3].value.clone().unwrap();
    assert_eq!(prepare.partitions.len(), 3);
    // A retry of the commit is answered OK without a new record; an abort is refused.
    assert_eq!(
        h.coordinator
            .end_transaction("t", pid, epoch, true, metadata::TV_0, START_MS + 5)
            .now(),
        Ok((pid, epoch))
    );
    assert_eq!(
        h.coordinator
            .end_transaction("t", pid, epoch, false, metadata::TV_0, START_MS + 5)
            .now(),
        Err(ResponseError::InvalidTxnState)
    );
    assert_eq!(h.log.records().len(), 5);
    // The next transaction starts from CompleteCommit.
    h.add("t", pid, epoch, &[("c", 0)], START_MS + 6).unwrap();
    assert_eq!(h.md("t").txn_start_timestamp, START_MS + 6);
}

#[test]
fn abort_writes_abort_markers_and_empty_end_is_invalid_for_tv1() {
    let h = Harness::new();
    let (pid, epoch) = h.init("t", START_MS).unwrap();
    assert_eq!(
        h.coordinator
            .end_transaction("t", pid, epoch, false, metadata::TV_0, START_MS)
            .now(),
        Err(ResponseError::InvalidTxnState)
    );
    h.add("t", pid, epoch, &[("a", 0)], START_MS).unwrap();
    h.coordinator
        .end_transaction("t", pid, epoch, false, metadata::TV_0, START_MS + 1)
        .now()
        .unwrap();
    let calls = h.writer.calls();
    assert_eq!(calls.len(), 1);
    assert!(!calls[0].commit);
    assert_eq!(h.md("t").state, TransactionState::CompleteAbort);
}

#[test]
fn tv2_end_bumps_the_epoch_and_markers_carry_it() {
    let h = Harness::new();
    let c = &h.coordinator;
    let (pid, epoch) = h.init("t", START_MS).unwrap();
    // TV2: partitions are added implicitly by produce.
    c.verify_or_add_partitions("t", pid, epoch, &[tp("a", 0)], true, START_MS)
        .now()
        .unwrap();
    assert_eq!(h.md("t").client_transaction_version, metadata::TV_2);
    let (pid2, epoch2) = c
        .end_transaction("t", pid, epoch, true, metadata::TV_2, START_MS + 1)
        .now()
        .unwrap();
    assert_eq!((pid2, epoch2), (pid, epoch + 1));
    assert_eq!(h.writer.calls()[0].producer_epoch, epoch + 1);
    assert_eq!(h.md("t").state, TransactionState::CompleteCommit);
    // A retry with the old epoch is recognised (its bump is ours) and answered the same.
    assert_eq!(
        c.end_transaction("t", pid, epoch, true, metadata::TV_2, START_MS + 2)
            .now(),
        Ok((pid, epoch + 1))
    );
    // The old epoch cannot add partitions any more.
    assert_eq!(
        c.verify_or_add_partitions("t", pid, epoch, &[tp("a", 0)], true, START_MS + 2)
            .now(),
        Err(ResponseError::ProducerFenced)
    );
    // Ending with nothing produced (TV2) bumps again without markers.
    assert_eq!(
        c.end_transaction("t", pid, epoch2, false, metadata::TV_2, START_MS + 3)
            .now(),
        Ok((pid, epoch2 + 1))
    );
    assert_eq!(h.writer.calls().len(), 1);
    assert_eq!(h.md("t").state, TransactionState::CompleteAbort);
}

#[test]
fn tv2_epoch_overflow_moves_to_a_new_producer_id() {
    let h = Harness::new();
    let c = &h.coordinator;
    let (pid, _) = h.init("t", START_MS).unwrap();
    // Jump the epoch near the end (as many bumps would).
    {
        let mut shard = c.state.shard("t").lock();
        let entry = shard.transactions.get_mut("t").unwrap();
        entry.metadata.producer_epoch = i16::MAX - 1;
    }
    let epoch = i16::MAX - 1;
    c.verify_or_add_partitions("t", pid, epoch, &[tp("a", 0)], true, START_MS)
        .now()
        .unwrap();
    let (new_pid, new_epoch) = c
        .end_transaction("t", pid, epoch, true, metadata::TV_2, START_MS + 1)
        .now()
        .unwrap();
    assert_ne!(new_pid, pid);
    assert_eq!(new_epoch, 0);
    // The markers still use the old producer id at the bumped epoch.
    assert_eq!(h.writer.calls()[0].producer_id, pid);
    assert_eq!(h.writer.calls()[0].producer_epoch, i16::MAX);
    let md = h.md("t");
    assert_eq!(
        (md.producer_id, md.producer_epoch, md.previous_producer_id),
        (new_pid, 0, pid)
    );
    // A retry from before the rotation is recognised.
    assert_eq!(
        c.end_transaction("t", pid, epoch, true, metadata::TV_2, START_MS + 2)
            .now(),
        Ok((new_pid, 0))
    );
}

#[test]
fn init_with_exhausted_epoch_rotates_the_producer_id() {
    let h = Harness::new();
    let (pid, _) = h.init("t", START_MS).unwrap();
    h.coordinator
        .state
        .shard("t")
        .lock()
        .transactions
        .get_mut("t")
        .unwrap()
        .metadata
        .producer_epoch = i16::MAX - 1;
    let (new_pid, epoch) = h.init("t", START_MS + 1).unwrap();
    assert_ne!(new_pid, pid);
    assert_eq!(epoch, 0);
}

#[test]
fn failed_markers_keep_the_transaction_preparing_and_the_timer_retries() {
    let h = Harness::new();
    let c = &h.coordinator;
    let (pid, epoch) = h.init("t", START_MS).unwrap();
    h.add("t", pid, epoch, &[("a", 0), ("gone", 0)], START_MS)
        .unwrap();
    h.writer
        .fail(tp("a", 0), ResponseError::NotLeaderOrFollower);
    h.writer
        .fail(tp("gone", 0), ResponseError::UnknownTopicOrPartition);
    // Answered once PrepareCommit is durable.
    assert_eq!(
        c.end_transaction("t", pid, epoch, true, metadata::TV_0, START_MS + 1)
            .now(),
        Ok((pid, epoch))
    );
    let md = h.md("t");
    assert_eq!(md.state, TransactionState::PrepareCommit);
    // The deleted partition's marker was dropped; the other one is retried.
    assert_eq!(md.topic_partitions, BTreeSet::from([tp("a", 0)]));
    // Everything else waits: CONCURRENT_TRANSACTIONS.
    assert_eq!(
        c.end_transaction("t", pid, epoch, true, metadata::TV_0, START_MS + 2)
            .now(),
        Err(ResponseError::ConcurrentTransactions)
    );
    assert_eq!(
        c.end_transaction("t", pid, epoch, false, metadata::TV_0, START_MS + 2)
            .now(),
        Err(ResponseError::InvalidTxnState)
    );
    assert_eq!(
        h.add("t", pid, epoch, &[("b", 0)], START_MS + 2),
        Err(ResponseError::ConcurrentTransactions)
    );
    assert_eq!(
        h.init("t", START_MS + 2),
        Err(ResponseError::ConcurrentTransactions)
    );
    assert_eq!(
        c.verify_or_add_partitions("t", pid, epoch, &[tp("a", 0)], false, START_MS + 2)
            .now(),
        Err(ResponseError::ConcurrentTransactions)
    );
    // Not before the backoff.
    assert_eq!(c.retry_pending_markers(START_MS + 2), 0);
    h.writer.heal();
    c.poll_timers(START_MS + 1 + MARKER_RETRY_BACKOFF_MS);
    let calls = h.writer.calls();
    assert_eq!(calls.last().unwrap().partitions, vec![tp("a", 0)]);
    assert_eq!(h.md("t").state, TransactionState::CompleteCommit);
    assert_eq!(h.init("t", START_MS + 3), Ok((pid, epoch + 1)));
}

#[test]
fn init_during_an_ongoing_transaction_aborts_it_and_fences_the_old_producer() {
    let h = Harness::new();
    let (pid, epoch) = h.init("t", START_MS).unwrap();
    h.add("t", pid, epoch, &[("a", 0)], START_MS).unwrap();
    // Kafka's PrepareEpochFence path: the client retries.
    assert_eq!(
        h.init("t", START_MS + 1),
        Err(ResponseError::ConcurrentTransactions)
    );
    let calls = h.writer.calls();
    assert_eq!(calls.len(), 1);
    assert!(!calls[0].commit);
    assert!(calls[0].producer_epoch > epoch);
    assert_eq!(h.md("t").state, TransactionState::CompleteAbort);
    // The zombie is fenced, whatever it tries.
    assert_eq!(
        h.add("t", pid, epoch, &[("b", 0)], START_MS + 2),
        Err(ResponseError::ProducerFenced)
    );
    for tv in [metadata::TV_0, metadata::TV_2] {
        assert_eq!(
            h.coordinator
                .end_transaction("t", pid, epoch, true, tv, START_MS + 2)
                .now(),
            Err(ResponseError::ProducerFenced)
        );
        assert_eq!(
            h.coordinator
                .end_transaction("t", pid, epoch, false, tv, START_MS + 2)
                .now(),
            Err(ResponseError::ProducerFenced)
        );
    }
    // The new instance's retry gets a fresh epoch.
    let (pid2, epoch2) = h.init("t", START_MS + 3).unwrap();
    assert_eq!(pid2, pid);
    assert!(epoch2 > calls[0].producer_epoch);
}

#[test]
fn timed_out_transactions_are_aborted_and_their_producer_fenced() {
    let h = Harness::new();
    let c = &h.coordinator;
    let (pid, epoch) = h.init("t", START_MS).unwrap();
    h.add("t", pid, epoch, &[("a", 0)], START_MS).unwrap();
    let (pid_u, epoch_u) = h.init("u", START_MS).unwrap();
    h.add(
        "u",
        pid_u,
        epoch_u,
        &[("b", 0)],
        START_MS + TIMEOUT_MS as i64,
    )
    .unwrap();
    assert_eq!(
        c.abort_timed_out_transactions(START_MS + TIMEOUT_MS as i64),
        0
    );
    assert_eq!(
        c.abort_timed_out_transactions(START_MS + TIMEOUT_MS as i64 + 1),
        1
    );
    let calls = h.writer.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!((calls[0].producer_id, calls[0].commit), (pid, false));
    assert_eq!(calls[0].partitions, vec![tp("a", 0)]);
    assert_eq!(h.md("t").state, TransactionState::CompleteAbort);
    assert_eq!(h.md("u").state, TransactionState::Ongoing);
    assert_eq!(
        c.end_transaction("t", pid, epoch, true, metadata::TV_0, START_MS + 70_000)
            .now(),
        Err(ResponseError::ProducerFenced)
    );
    // The timer task runs the same scan at its interval.
    c.poll_timers(START_MS + 2 * TIMEOUT_MS as i64 + 10_000);
    assert_eq!(h.md("u").state, TransactionState::CompleteAbort);
}

#[test]
fn idle_transactional_ids_expire_with_a_tombstone() {
    let h = Harness::new();
    let c = &h.coordinator;
    let (pid, epoch) = h.init("idle", START_MS).unwrap();
    let (pid_b, epoch_b) = h.init("busy", START_MS).unwrap();
    h.add("busy", pid_b, epoch_b, &[("a", 0)], START_MS)
        .unwrap();
    assert_eq!(
        c.remove_expired_transactional_ids(START_MS + EXPIRATION_MS - 1),
        0
    );
    // Ongoing transactions never expire (they time out first).
    assert_eq!(
        c.remove_expired_transactional_ids(START_MS + EXPIRATION_MS),
        1
    );
    assert!(c.transaction_metadata("idle").is_none());
    assert!(c.transaction_metadata("busy").is_some());
    assert_eq!(h.log.states("idle").last(), Some(&None));
    assert_eq!(c.transactional_ids_count(), 1);
    assert_eq!(
        h.add("idle", pid, epoch, &[("a", 0)], START_MS + EXPIRATION_MS),
        Err(ResponseError::InvalidProducerIdMapping)
    );
    assert_eq!(
        c.describe_transaction("idle").error_code,
        ResponseError::TransactionalIdNotFound.code()
    );
    // The expiry survives a restart.
    let h2 = h.restart();
    assert!(h2.coordinator.transaction_metadata("idle").is_none());
}

#[test]
fn state_is_reloaded_from_the_log_and_preparing_transactions_complete() {
    let h = Harness::new();
    let (pid, epoch) = h.init("t", START_MS).unwrap();
    h.add("t", pid, epoch, &[("a", 0), ("b", 3)], START_MS)
        .unwrap();
    let (pid_o, epoch_o) = h.init("ongoing", START_MS).unwrap();
    h.add("ongoing", pid_o, epoch_o, &[("c", 0)], START_MS)
        .unwrap();
    // A crash between PrepareCommit and the markers.
    h.writer
        .fail(tp("a", 0), ResponseError::NotLeaderOrFollower);
    h.writer
        .fail(tp("b", 3), ResponseError::NotLeaderOrFollower);
    h.coordinator
        .end_transaction("t", pid, epoch, true, metadata::TV_0, START_MS + 1)
        .now()
        .unwrap();

    let h2 = h.restart();
    let md = h2.md("t");
    assert_eq!(md.state, TransactionState::PrepareCommit);
    assert_eq!(md.topic_partitions.len(), 2);
    assert_eq!(
        h2.md("ongoing").topic_partitions,
        BTreeSet::from([tp("c", 0)])
    );
    assert_eq!(h2.coordinator.transactional_ids_count(), 2);
    // The first timer run re-sends the markers and completes the transaction.
    h2.coordinator.poll_timers(START_MS + 2);
    assert_eq!(
        h2.writer.calls(),
        vec![MarkerCall {
            producer_id: pid,
            producer_epoch: epoch,
            commit: true,
            partitions: vec![tp("a", 0), tp("b", 3)],
        }]
    );
    assert_eq!(h2.md("t").state, TransactionState::CompleteCommit);
    // The ongoing one continues with the same producer.
    h2.add("ongoing", pid_o, epoch_o, &[("d", 0)], START_MS + 3)
        .unwrap();
}

#[test]
fn producer_ids_are_never_reused_across_restarts() {
    let h = Harness::new();
    let mut seen = BTreeSet::new();
    for i in 0..3 {
        seen.insert(h.init(&format!("t{i}"), START_MS).unwrap().0);
    }
    seen.insert(
        h.coordinator
            .init_producer_id(None, 0, None, START_MS)
            .now()
            .unwrap()
            .0,
    );
    let h2 = h.restart();
    for _ in 0..25 {
        let (pid, _) = h2
            .coordinator
            .init_producer_id(None, 0, None, START_MS)
            .now()
            .unwrap();
        assert!(seen.insert(pid), "producer id {pid} reused");
    }
    // Existing transactional ids keep theirs.
    assert_eq!(h2.init("t0", START_MS).unwrap().0, h.md("t0").producer_id);
}

#[test]
fn a_failed_append_changes_nothing() {
    let h = Harness::new();
    let (pid, epoch) = h.init("t", START_MS).unwrap();
    h.log.fail.store(true, Ordering::Relaxed);
    assert_eq!(
        h.add("t", pid, epoch, &[("a", 0)], START_MS),
        Err(ResponseError::NotCoordinator)
    );
    assert_eq!(h.md("t").state, TransactionState::Empty);
    assert_eq!(h.init("t", START_MS), Err(ResponseError::NotCoordinator));
    assert_eq!(h.md("t").producer_epoch, epoch);
    assert_eq!(h.init("new", START_MS), Err(ResponseError::NotCoordinator));
    assert!(h.coordinator.transaction_metadata("new").is_none());
    h.log.fail.store(false, Ordering::Relaxed);
    h.add("t", pid, epoch, &[("a", 0)], START_MS).unwrap();
}

#[test]
fn verification_follows_kip_890() {
    let h = Harness::new();
    let c = &h.coordinator;
    let (pid, epoch) = h.init("t", START_MS).unwrap();
    let a0 = [tp("a", 0)];
    assert_eq!(
        c.verify_or_add_partitions("t", pid, epoch, &a0, false, START_MS)
            .now(),
        Err(ResponseError::InvalidTxnState)
    );
    assert_eq!(
        c.verify_or_add_partitions("nope", pid, epoch, &a0, false, START_MS)
            .now(),
        Err(ResponseError::InvalidProducerIdMapping)
    );
    assert_eq!(
        c.verify_or_add_partitions("t", pid + 1, epoch, &a0, false, START_MS)
            .now(),
        Err(ResponseError::InvalidProducerIdMapping)
    );
    assert_eq!(
        c.verify_or_add_partitions("t", pid, epoch + 1, &a0, true, START_MS)
            .now(),
        Err(ResponseError::ProducerFenced)
    );
    h.add("t", pid, epoch, &[("a", 0)], START_MS).unwrap();
    assert_eq!(
        c.verify_or_add_partitions("t", pid, epoch, &a0, false, START_MS)
            .now(),
        Ok(())
    );
    assert_eq!(
        c.verify_partitions_in_transaction("t", pid, epoch, &[tp("a", 0), tp("b", 0)]),
        Ok(vec![true, false])
    );
    // Limits: partitions per transaction.
    assert_eq!(
        h.add(
            "t",
            pid,
            epoch,
            &[("b", 0), ("b", 1), ("b", 2), ("b", 3)],
            START_MS
        ),
        Err(ResponseError::InvalidRequest)
    );
}

#[test]
fn describe_and_list_filter_like_kafka() {
    let h = Harness::new();
    let c = &h.coordinator;
    let (pid, epoch) = h.init("alpha", START_MS).unwrap();
    h.add(
        "alpha",
        pid,
        epoch,
        &[("a", 0), ("a", 1), ("b", 0)],
        START_MS,
    )
    .unwrap();
    let (pid_b, _) = h.init("beta", START_MS).unwrap();
    let described = c.describe_transaction("alpha");
    assert_eq!(described.error_code, 0);
    assert_eq!(described.transaction_state.as_str(), "Ongoing");
    assert_eq!(described.topics.len(), 2);
    assert_eq!(described.topics[0].partitions, vec![0, 1]);
    assert_eq!(described.transaction_start_time_ms, START_MS);
    assert_eq!(
        c.describe_transaction("").error_code,
        ResponseError::InvalidRequest.code()
    );

    let names = |r: &ListTransactionsResponse| -> Vec<String> {
        r.transaction_states
            .iter()
            .map(|t| t.transactional_id.to_string())
            .collect()
    };
    let all = c.list_transactions(&[], &[], -1, None, START_MS);
    assert_eq!(names(&all), vec!["alpha", "beta"]);
    let ongoing = c.list_transactions(&["Ongoing".into(), "Bogus".into()], &[], -1, None, START_MS);
    assert_eq!(names(&ongoing), vec!["alpha"]);
    assert_eq!(ongoing.unknown_state_filters.len(), 1);
    assert_eq!(
        names(&c.list_transactions(&[], &[pid_b], -1, None, START_MS)),
        vec!["beta"]
    );
    // Running longer than 1s: only alpha (beta has no transaction, start -1 counts as old in
    // Kafka too; filter by state to exclude it).
    let long = c.list_transactions(&["Ongoing".into()], &[], 1_000, None, START_MS + 5_000);
    assert_eq!(names(&long), vec!["alpha"]);
    assert!(
        names(&c.list_transactions(&[], &[], 10_000, None, START_MS + 5_000))
            .contains(&"beta".to_string())
    );
    assert_eq!(
        names(&c.list_transactions(&[], &[], -1, Some("al.*"), START_MS)),
        vec!["alpha"]
    );
    assert!(names(&c.list_transactions(&[], &[], -1, Some("lph"), START_MS)).is_empty());
    assert_eq!(
        c.list_transactions(&[], &[], -1, Some("(unclosed"), START_MS)
            .error_code,
        ResponseError::InvalidRegularExpression.code()
    );
}

#[test]
fn shutdown_answers_coordinator_not_available() {
    let h = Harness::new();
    h.coordinator.shutdown();
    assert_eq!(
        h.init("t", START_MS),
        Err(ResponseError::CoordinatorNotAvailable)
    );
    assert_eq!(
        h.coordinator
            .list_transactions(&[], &[], -1, None, START_MS)
            .error_code,
        ResponseError::CoordinatorNotAvailable.code()
    );
}

/// Kafka's `appendTransactionToLog` with acks=-1: an EndTxn whose PrepareCommit is not
/// committed in time answers COORDINATOR_NOT_AVAILABLE, and no marker goes out until the record
/// is committed; then the timer writes them and completes the transaction.
#[test]
fn markers_wait_for_the_commit_of_prepare_commit() {
    let h = Harness::new();
    let c = &h.coordinator;
    let (pid, epoch) = h.init("t", START_MS).unwrap();
    h.add("t", pid, epoch, &[("a", 0)], START_MS).unwrap();
    h.log.uncommitted.store(true, Ordering::Relaxed);
    assert_eq!(
        c.end_transaction("t", pid, epoch, true, metadata::TV_0, START_MS + 1)
            .now(),
        Err(ResponseError::CoordinatorNotAvailable)
    );
    // In the leader's log and in memory, but no marker before the commit.
    assert_eq!(h.md("t").state, TransactionState::PrepareCommit);
    assert!(h.writer.calls().is_empty());
    c.retry_pending_markers(START_MS + 10_000);
    assert!(h.writer.calls().is_empty());
    // Other operations on the id wait for the same commit.
    assert_eq!(
        h.init("t", START_MS + 10_000),
        Err(ResponseError::CoordinatorNotAvailable)
    );
    h.log.uncommitted.store(false, Ordering::Relaxed);
    c.retry_pending_markers(START_MS + 20_000);
    assert_eq!(h.writer.calls().len(), 1);
    assert!(h.writer.calls()[0].commit);
    assert_eq!(h.md("t").state, TransactionState::CompleteCommit);
    assert_eq!(
        h.log.states("t").last(),
        Some(&Some(TransactionState::CompleteCommit))
    );
}

/// A timed-out transaction's PrepareAbort: markers only once it is committed.
#[test]
fn timed_out_aborts_write_markers_after_the_commit() {
    let h = Harness::new();
    let c = &h.coordinator;
    let (pid, epoch) = h.init("t", START_MS).unwrap();
    h.add("t", pid, epoch, &[("a", 0)], START_MS).unwrap();
    h.log.uncommitted.store(true, Ordering::Relaxed);
    let later = START_MS + i64::from(TIMEOUT_MS) + 1;
    assert_eq!(c.abort_timed_out_transactions(later), 0);
    assert_eq!(h.md("t").state, TransactionState::PrepareAbort);
    assert!(h.writer.calls().is_empty());
    h.log.uncommitted.store(false, Ordering::Relaxed);
    c.retry_pending_markers(later + 1_000);
    assert_eq!(h.writer.calls().len(), 1);
    assert!(!h.writer.calls()[0].commit);
    assert_eq!(h.md("t").state, TransactionState::CompleteAbort);
}
