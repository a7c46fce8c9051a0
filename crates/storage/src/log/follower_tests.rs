//! Follower appends: a follower fed the leader's log in fetch-sized chunks ends up with the
//! same bytes and state; refusals, truncation, the high watermark.

use super::*;
use fjord_protocol::batch_builder::{
    encode_uncompressed, encode_uncompressed_with_producer, ProducerFields, Record,
    TRANSACTIONAL_ATTRIBUTE,
};
use proptest::prelude::*;

fn records(count: usize, value_bytes: usize) -> Vec<Vec<u8>> {
    (0..count).map(|i| vec![i as u8; value_bytes]).collect()
}

fn plain_batch(count: usize) -> Vec<u8> {
    let values = records(count, 25);
    let recs: Vec<Record<'_>> = values
        .iter()
        .map(|v| Record {
            value: Some(v),
            ..Record::default()
        })
        .collect();
    encode_uncompressed(0, 1_000, 0, &recs)
}

fn producer_batch(producer_id: i64, sequence: i32, count: usize, txn: bool) -> Vec<u8> {
    let values = records(count, 20);
    let recs: Vec<Record<'_>> = values
        .iter()
        .map(|v| Record {
            key: Some(b"k"),
            value: Some(v),
            ..Record::default()
        })
        .collect();
    encode_uncompressed_with_producer(
        0,
        1_000,
        if txn { TRANSACTIONAL_ATTRIBUTE } else { 0 },
        ProducerFields {
            producer_id,
            producer_epoch: 0,
            base_sequence: sequence,
        },
        &recs,
    )
}

/// A batch as a leader stores it: base offset and partition leader epoch set.
fn stored_batch(base_offset: i64, epoch: i32, count: usize) -> Vec<u8> {
    let mut batch = plain_batch(count);
    records::set_base_offset(&mut batch, base_offset);
    records::set_partition_leader_epoch(&mut batch, epoch);
    batch
}

fn config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: 100,
        ..LogConfig::default()
    }
}

/// All `.log` segment contents, oldest first.
fn segment_bytes(log: &Log) -> Vec<u8> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(log.dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| std::fs::read(f).unwrap())
        .collect()
}

/// Copies the leader's log from the follower's log end in reads of at most `chunk` bytes
/// (whole batches, at least one), until the follower has everything.
fn replicate(leader: &Log, follower: &mut Log, chunk: usize) {
    while follower.log_end_offset() < leader.log_end_offset() {
        let data = leader
            .read(follower.log_end_offset(), chunk, i64::MAX, true)
            .unwrap();
        let bytes = data.records.read_to_bytes().unwrap();
        if bytes.is_empty() {
            // A read stays within one segment; an exhausted one continues at the next.
            assert!(data.next_offset > follower.log_end_offset());
        }
        follower.append_as_follower(&bytes, 5_000).unwrap();
        follower.maybe_increment_high_watermark(leader.high_watermark());
    }
}

fn assert_same(leader: &Log, follower: &Log, context: &str) {
    assert_eq!(
        segment_bytes(follower),
        segment_bytes(leader),
        "{context}: bytes"
    );
    assert_eq!(
        follower.log_end_offset(),
        leader.log_end_offset(),
        "{context}"
    );
    assert_eq!(
        follower.epoch_entries(),
        leader.epoch_entries(),
        "{context}"
    );
    assert_eq!(
        follower.collect_aborted_transactions(0, i64::MAX),
        leader.collect_aborted_transactions(0, i64::MAX),
        "{context}: aborted transactions"
    );
    assert_eq!(
        follower.high_watermark(),
        leader.high_watermark(),
        "{context}"
    );
    assert_eq!(
        follower.last_stable_offset(),
        leader.last_stable_offset(),
        "{context}: LSO"
    );
    assert_eq!(
        follower.first_unstable_offset(),
        leader.first_unstable_offset(),
        "{context}"
    );
    assert_eq!(
        follower.active_producers(),
        leader.active_producers(),
        "{context}: producers"
    );
}

#[derive(Debug, Clone)]
enum Op {
    Plain(usize),
    Idempotent(i64, usize),
    TxnData(i64, usize),
    Marker(i64, bool),
    NewEpoch,
    Fetch(usize),
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1usize..5).prop_map(Op::Plain),
        2 => (1i64..3, 1usize..4).prop_map(|(p, n)| Op::Idempotent(p, n)),
        3 => (10i64..13, 1usize..4).prop_map(|(p, n)| Op::TxnData(p, n)),
        2 => (10i64..13, any::<bool>()).prop_map(|(p, c)| Op::Marker(p, c)),
        1 => Just(Op::NewEpoch),
        2 => (1usize..600).prop_map(Op::Fetch),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn prop_follower_copies_the_leader_byte_for_byte(
        ops in proptest::collection::vec(op_strategy(), 1..40),
        follower_segment_bytes in 300u64..2_000,
        final_chunk in 1usize..2_000,
    ) {
        let leader_dir = tempfile::tempdir().unwrap();
        let follower_dir = tempfile::tempdir().unwrap();
        let mut leader = Log::open(leader_dir.path(), config(400), true, 0).unwrap();
        let mut follower =
            Log::open(follower_dir.path(), config(follower_segment_bytes), true, 0).unwrap();
        let mut epoch = 0;
        let mut sequences = std::collections::HashMap::<i64, i32>::new();
        for op in &ops {
            match *op {
                Op::Plain(n) => {
                    leader.append(&mut plain_batch(n), epoch, 1_000, AppendOrigin::Client).unwrap();
                }
                Op::Idempotent(pid, n) | Op::TxnData(pid, n) => {
                    let txn = matches!(op, Op::TxnData(..));
                    let sequence = sequences.entry(pid).or_insert(0);
                    let batch = producer_batch(pid, *sequence, n, txn);
                    leader.append_batch(&batch, epoch, 1_000, AppendOrigin::Client).unwrap();
                    *sequence += n as i32;
                }
                Op::Marker(pid, commit) => {
                    let marker = EndTxnMarker { commit, coordinator_epoch: 0 };
                    leader.append_end_txn_marker(pid, 0, marker, epoch, 2_000).unwrap();
                }
                Op::NewEpoch => {
                    // A new leader epoch, with a batch in it (an epoch without batches exists
                    // only in the leader's cache, as in Kafka).
                    epoch += 1;
                    let end = leader.log_end_offset();
                    leader.assign_epoch_start_offset(epoch, end).unwrap();
                    leader.append(&mut plain_batch(1), epoch, 1_000, AppendOrigin::Client).unwrap();
                }
                Op::Fetch(chunk) => {
                    if follower.log_end_offset() < leader.log_end_offset() {
                        let data = leader
                            .read(follower.log_end_offset(), chunk, i64::MAX, true)
                            .unwrap();
                        let bytes = data.records.read_to_bytes().unwrap();
                        follower.append_as_follower(&bytes, 5_000).unwrap();
                        follower.maybe_increment_high_watermark(leader.high_watermark());
                    }
                }
            }
            // The leader's HW follows its LEO only sometimes, so the follower sees HW lag.
            if !matches!(op, Op::Fetch(_)) {
                let end = leader.log_end_offset();
                leader.update_high_watermark(end);
            }
        }
        replicate(&leader, &mut follower, final_chunk);
        assert_same(&leader, &follower, "after replication");

        follower.close().unwrap();
        let mut follower =
            Log::open(follower_dir.path(), config(follower_segment_bytes), true, 0).unwrap();
        follower.maybe_increment_high_watermark(leader.high_watermark());
        assert_same(&leader, &follower, "after clean reopen");

        drop(follower); // no close: the next open recovers as after a crash
        let follower =
            Log::open(follower_dir.path(), config(follower_segment_bytes), false, 0).unwrap();
        assert_same(&leader, &follower, "after crash reopen");
    }
}

/// The log's observable state, to show a refused append changed nothing.
type Observed = (Vec<u8>, i64, i64, Vec<(i32, i64)>, Vec<i64>);

fn snapshot(log: &Log) -> Observed {
    (
        segment_bytes(log),
        log.log_end_offset(),
        log.high_watermark(),
        log.epoch_entries(),
        log.segment_base_offsets(),
    )
}

#[test]
fn refused_appends_leave_the_log_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(10_000), true, 0).unwrap();
    log.append_as_follower(&[stored_batch(0, 1, 3), stored_batch(5, 1, 2)].concat(), 0)
        .unwrap();
    assert_eq!(log.log_end_offset(), 7);
    let before = snapshot(&log);

    // Below the log end offset.
    let error = log
        .append_as_follower(&stored_batch(6, 1, 1), 0)
        .unwrap_err();
    assert!(
        matches!(
            error,
            StorageError::UnexpectedAppendOffset {
                offset: 6,
                expected: 7
            }
        ),
        "{error}"
    );
    // Not increasing within one call: the first (valid) batch must not be written either.
    let overlapping = [stored_batch(7, 1, 3), stored_batch(9, 1, 1)].concat();
    let error = log.append_as_follower(&overlapping, 0).unwrap_err();
    assert!(
        matches!(
            error,
            StorageError::UnexpectedAppendOffset {
                offset: 9,
                expected: 10
            }
        ),
        "{error}"
    );
    let repeated = [stored_batch(7, 1, 1), stored_batch(7, 1, 1)].concat();
    assert!(log.append_as_follower(&repeated, 0).is_err());
    // A corrupt CRC, in the second batch.
    let mut corrupt = [stored_batch(7, 1, 1), stored_batch(8, 2, 2)].concat();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    let error = log.append_as_follower(&corrupt, 0).unwrap_err();
    assert!(
        matches!(
            error,
            StorageError::InvalidRecords(records::RecordError::CrcMismatch { .. })
        ),
        "{error}"
    );
    // A torn batch.
    let torn = stored_batch(7, 1, 2);
    assert!(log.append_as_follower(&torn[..torn.len() - 3], 0).is_err());
    assert_eq!(snapshot(&log), before);

    // Nothing was left half-done: the next good append lands where it should.
    let info = log.append_as_follower(&stored_batch(7, 2, 2), 0).unwrap();
    assert_eq!(
        (info.first_offset, info.last_offset, info.records_count),
        (7, 8, 2)
    );
    assert_eq!(log.epoch_entries(), vec![(1, 0), (2, 7)]);
    // Empty input is a no-op.
    let info = log.append_as_follower(&[], 0).unwrap();
    assert_eq!(info.records_count, 0);
    assert_eq!(log.log_end_offset(), 9);
    assert_eq!(
        log.high_watermark(),
        0,
        "follower appends do not move the HW"
    );
}

#[test]
fn gaps_and_relative_offset_overflow_roll_at_the_batch_base_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(10_000), true, 0).unwrap();
    log.append_as_follower(&stored_batch(0, 0, 2), 0).unwrap();
    // A compacted leader's gap within u32 stays in the segment.
    log.append_as_follower(&stored_batch(1_000, 0, 1), 0)
        .unwrap();
    assert_eq!(log.segment_base_offsets(), vec![0]);
    // One beyond u32 relative offsets: a new segment at that batch, in the same call.
    let far = 1_000 + i64::from(u32::MAX) + 5;
    let batches = [stored_batch(1_001, 0, 1), stored_batch(far, 0, 3)].concat();
    let info = log.append_as_follower(&batches, 0).unwrap();
    assert_eq!((info.first_offset, info.last_offset), (1_001, far + 2));
    assert_eq!(log.segment_base_offsets(), vec![0, far]);
    assert_eq!(log.log_end_offset(), far + 3);
    let data = log.read(1_000, usize::MAX, i64::MAX, false).unwrap();
    assert_eq!(data.next_offset, far);
    let data = log.read(far + 1, usize::MAX, i64::MAX, false).unwrap();
    assert_eq!(
        data.records.read_to_bytes().unwrap().as_ref(),
        &stored_batch(far, 0, 3)[..]
    );
    let expected = segment_bytes(&log);
    drop(log);
    let log = Log::open(dir.path(), config(10_000), false, 0).unwrap();
    assert_eq!(log.log_end_offset(), far + 3);
    assert_eq!(segment_bytes(&log), expected);
}

#[test]
fn truncate_to_then_append_a_divergent_tail() {
    let (leader_dir, old_dir, follower_dir) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    // The old leader wrote 0..12 at epoch 1; the new leader has 0..6 of it and then epoch 2.
    let mut old = Log::open(old_dir.path(), config(300), true, 0).unwrap();
    let mut leader = Log::open(leader_dir.path(), config(300), true, 0).unwrap();
    for _ in 0..6 {
        old.append(&mut plain_batch(2), 1, 0, AppendOrigin::Client)
            .unwrap();
    }
    replicate(&old, &mut leader, 100);
    leader.truncate_to(6).unwrap();
    leader.assign_epoch_start_offset(2, 6).unwrap();
    for _ in 0..4 {
        leader
            .append(&mut plain_batch(3), 2, 0, AppendOrigin::Client)
            .unwrap();
    }
    let mut follower = Log::open(follower_dir.path(), config(500), true, 0).unwrap();
    replicate(&old, &mut follower, 250);
    assert_eq!(follower.end_offset_for_epoch(1), Some((1, 12)));
    // The fetcher's divergence answer: epoch 1 ends at 6 on the leader.
    assert_eq!(leader.end_offset_for_epoch(1), Some((1, 6)));
    follower.truncate_to(6).unwrap();
    assert_eq!(follower.log_end_offset(), 6);
    replicate(&leader, &mut follower, 200);
    let end = leader.log_end_offset();
    leader.update_high_watermark(end);
    follower.maybe_increment_high_watermark(end);
    assert_same(&leader, &follower, "after divergence");
    assert_eq!(follower.epoch_entries(), vec![(1, 0), (2, 6)]);
}

#[test]
fn truncate_fully_and_start_at_then_append_from_the_new_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(300), true, 0).unwrap();
    for _ in 0..8 {
        log.append(&mut plain_batch(2), 3, 0, AppendOrigin::Client)
            .unwrap();
    }
    log.append_batch(&producer_batch(10, 0, 2, true), 3, 0, AppendOrigin::Client)
        .unwrap();
    log.update_high_watermark(18);
    // A stale log start checkpoint above the new start must not survive the restart.
    log.delete_records_before(12, 0).unwrap();
    assert!(log.first_unstable_offset().is_some());

    log.truncate_fully_and_start_at(5).unwrap();
    let check = |log: &Log, context: &str| {
        assert_eq!(log.log_start_offset(), 5, "{context}");
        assert_eq!(log.high_watermark(), 5, "{context}");
        assert_eq!(log.segment_base_offsets()[0], 5, "{context}");
    };
    check(&log, "truncated");
    assert_eq!(log.log_end_offset(), 5);
    assert_eq!(log.epoch_entries(), vec![]);
    assert_eq!(log.active_producers(), vec![]);
    assert_eq!(log.first_unstable_offset(), None);
    assert!(log.truncate_fully_and_start_at(-1).is_err());

    log.append_as_follower(&[stored_batch(5, 7, 2), stored_batch(7, 7, 5)].concat(), 0)
        .unwrap();
    check(&log, "appended");
    assert_eq!(log.log_end_offset(), 12);
    assert_eq!(log.epoch_entries(), vec![(7, 5)]);
    let bytes = segment_bytes(&log);
    log.close().unwrap();
    let log = Log::open(dir.path(), config(300), true, 0).unwrap();
    assert_eq!(log.log_start_offset(), 5);
    assert_eq!(segment_bytes(&log), bytes);
    drop(log);
    let log = Log::open(dir.path(), config(300), false, 0).unwrap();
    assert_eq!(log.log_start_offset(), 5);
    assert_eq!(log.epoch_entries(), vec![(7, 5)]);
    assert_eq!(log.log_end_offset(), 12);
}

#[test]
fn maybe_increment_high_watermark_is_monotonic_and_capped_at_the_log_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(10_000), true, 0).unwrap();
    log.append_as_follower(&stored_batch(0, 0, 10), 0).unwrap();
    assert_eq!(log.high_watermark(), 0);
    assert!(log.maybe_increment_high_watermark(4));
    assert_eq!(log.high_watermark(), 4);
    assert!(!log.maybe_increment_high_watermark(3));
    assert!(!log.maybe_increment_high_watermark(4));
    assert_eq!(log.high_watermark(), 4);
    assert!(log.maybe_increment_high_watermark(1_000));
    assert_eq!(log.high_watermark(), 10);
    assert!(!log.maybe_increment_high_watermark(1_000));
    log.append_as_follower(&stored_batch(10, 0, 5), 0).unwrap();
    assert_eq!(log.high_watermark(), 10);
    assert!(log.maybe_increment_high_watermark(i64::MAX));
    assert_eq!(log.high_watermark(), 15);
}

#[test]
fn replicated_abort_markers_fill_the_transaction_index() {
    let (leader_dir, follower_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut leader = Log::open(leader_dir.path(), config(300), true, 0).unwrap();
    let mut follower = Log::open(follower_dir.path(), config(300), true, 0).unwrap();
    let abort = EndTxnMarker {
        commit: false,
        coordinator_epoch: 0,
    };
    leader
        .append_batch(&producer_batch(10, 0, 3, true), 0, 0, AppendOrigin::Client)
        .unwrap();
    leader
        .append(&mut plain_batch(2), 0, 0, AppendOrigin::Client)
        .unwrap();
    leader.append_end_txn_marker(10, 0, abort, 0, 0).unwrap();
    replicate(&leader, &mut follower, 1);
    let aborted = follower.collect_aborted_transactions(0, i64::MAX);
    assert_eq!(aborted.len(), 1);
    assert_eq!((aborted[0].first_offset, aborted[0].last_offset), (0, 5));
    // The follower's LSO waits for its own HW to pass the marker.
    assert_eq!(follower.first_unstable_offset(), Some(0));
    follower.maybe_increment_high_watermark(6);
    assert_eq!(follower.first_unstable_offset(), None);
    assert_eq!(follower.last_stable_offset(), 6);
}

#[test]
fn crash_recovery_keeps_an_epoch_that_started_before_the_rescanned_segment() {
    // Found by the equivalence proptest, on the leader path too: recovery re-assigned epoch 1
    // at the first rescanned segment's first batch, dropping (1, 2) and every newer entry.
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(300), true, 0).unwrap();
    log.append(&mut plain_batch(2), 0, 0, AppendOrigin::Client)
        .unwrap();
    for _ in 0..6 {
        log.append(&mut plain_batch(2), 1, 0, AppendOrigin::Client)
            .unwrap();
    }
    log.append(&mut plain_batch(2), 2, 0, AppendOrigin::Client)
        .unwrap();
    assert!(log.segment_base_offsets().len() > 2);
    let entries = log.epoch_entries();
    assert_eq!(entries, vec![(0, 0), (1, 2), (2, 14)]);
    log.flush().unwrap();
    // Only the active segment is rescanned; it starts inside epoch 1 or 2.
    drop(log);
    let log = Log::open(dir.path(), config(300), false, 0).unwrap();
    assert_eq!(log.epoch_entries(), entries);
}

#[test]
fn log_end_isolation_reads_above_the_high_watermark_up_to_the_log_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(10_000), true, 0).unwrap();
    log.append_as_follower(&stored_batch(0, 0, 3), 0).unwrap();
    log.append_as_follower(&stored_batch(3, 1, 2), 0).unwrap();
    assert!(log.maybe_increment_high_watermark(3));
    let committed = log
        .read_with_isolation(0, usize::MAX, true, Isolation::ReadUncommitted)
        .unwrap();
    assert_eq!(
        committed.next_offset, 3,
        "clients stop at the high watermark"
    );
    let all = log
        .read_with_isolation(0, usize::MAX, true, Isolation::LogEnd)
        .unwrap();
    assert_eq!(all.next_offset, 5, "followers read to the log end");
    let bytes = all.records.read_to_bytes().unwrap();
    let mut expected = stored_batch(0, 0, 3);
    expected.extend_from_slice(&stored_batch(3, 1, 2));
    assert_eq!(&bytes[..], &expected[..]);
    // At the log end there is nothing to read, and beyond it the offset is out of range.
    let at_end = log
        .read_with_isolation(5, usize::MAX, true, Isolation::LogEnd)
        .unwrap();
    assert!(at_end.records.is_empty());
    assert!(matches!(
        log.read_with_isolation(6, usize::MAX, true, Isolation::LogEnd),
        Err(StorageError::OffsetOutOfRange { offset: 6, .. })
    ));
}

#[test]
fn set_initial_high_watermark_clamps_into_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(10_000), true, 0).unwrap();
    log.append_as_follower(&stored_batch(0, 0, 10), 0).unwrap();
    log.append_as_follower(&stored_batch(10, 0, 10), 0).unwrap();
    log.close().unwrap();
    let mut log = Log::open(dir.path(), config(10_000), true, 0).unwrap();
    assert_eq!(log.high_watermark(), 20, "open starts at the log end");
    // A checkpoint within the log is taken as is, even below the log end.
    log.set_initial_high_watermark(7);
    assert_eq!(log.high_watermark(), 7);
    // A checkpoint from before a truncation is capped at the log end.
    log.set_initial_high_watermark(1_000);
    assert_eq!(log.high_watermark(), 20);
    // One from before DeleteRecords moved the log start is raised to the log start.
    log.delete_records_before(12, 0).unwrap();
    log.set_initial_high_watermark(3);
    assert_eq!(log.high_watermark(), 12);
    log.set_initial_high_watermark(-1);
    assert_eq!(log.high_watermark(), 12);
    // A client read stops there; a follower read does not.
    let data = log
        .read_with_isolation(12, usize::MAX, true, Isolation::ReadUncommitted)
        .unwrap();
    assert!(data.records.is_empty());
    let data = log
        .read_with_isolation(12, usize::MAX, true, Isolation::LogEnd)
        .unwrap();
    assert_eq!(data.next_offset, 20);
}

#[test]
fn truncate_into_the_batch_holding_the_log_start_restarts_the_log() {
    // DeleteRecords moved the log start inside a batch; a truncation to an offset of that
    // batch at or above the log start removes the whole batch, so nothing is left.
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(10_000), true, 0).unwrap();
    log.append_as_follower(&stored_batch(0, 0, 5), 0).unwrap();
    log.append_as_follower(&stored_batch(5, 1, 5), 0).unwrap();
    assert!(log.maybe_increment_high_watermark(10));
    assert_eq!(log.delete_records_before(7, 0).unwrap(), 7);
    log.truncate_to(8).unwrap();
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.high_watermark()
        ),
        (8, 8, 8)
    );
    assert_eq!(log.latest_epoch(), None);
    // The leader's batch straddling the new start is appended after restarting at its base,
    // which is what a follower does (Kafka's UnexpectedAppendOffset handling).
    log.truncate_fully_and_start_at(5).unwrap();
    log.append_as_follower(&stored_batch(5, 1, 5), 0).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (5, 10));
}

#[test]
fn truncate_at_the_log_end_drops_an_unused_epoch_assigned_there() {
    // Became leader at epoch 2 (assigned at the log end), wrote nothing, was replaced: as a
    // follower its last fetched epoch must go back to 1, or the new leader's divergence
    // answer (1, 5) truncates nothing and the follower asks again forever.
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(10_000), true, 0).unwrap();
    log.append_as_follower(&stored_batch(0, 1, 5), 0).unwrap();
    log.assign_epoch_start_offset(2, 5).unwrap();
    assert_eq!(log.latest_epoch(), Some(2));
    log.truncate_to(5).unwrap();
    assert_eq!(log.latest_epoch(), Some(1));
    assert_eq!(log.log_end_offset(), 5);
    assert_eq!(log.end_offset_for_epoch(1), Some((1, 5)));
    // Durable: the checkpoint was rewritten.
    log.close().unwrap();
    let log = Log::open(dir.path(), config(10_000), true, 0).unwrap();
    assert_eq!(log.latest_epoch(), Some(1));
}
