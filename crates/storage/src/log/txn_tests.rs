//! The log with idempotent and transactional producers: duplicates, markers, the transaction
//! index across segments, the last stable offset, snapshots and recovery.

use super::*;
use crate::producer_state::ProducerStateError;
use fjord_protocol::batch_builder::{
    encode_uncompressed_with_producer, ProducerFields, Record, TRANSACTIONAL_ATTRIBUTE,
};

const PID: i64 = 7;

fn producer_batch(producer_id: i64, epoch: i16, sequence: i32, count: usize, txn: bool) -> Vec<u8> {
    let value = [b'v'; 20];
    let records: Vec<Record<'_>> = (0..count)
        .map(|i| Record {
            timestamp_delta: i as i64,
            key: Some(b"k"),
            value: Some(&value),
            ..Record::default()
        })
        .collect();
    encode_uncompressed_with_producer(
        0,
        1_000,
        if txn { TRANSACTIONAL_ATTRIBUTE } else { 0 },
        ProducerFields {
            producer_id,
            producer_epoch: epoch,
            base_sequence: sequence,
        },
        &records,
    )
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 400,
        index_interval_bytes: 100,
        ..LogConfig::default()
    }
}

fn abort(log: &mut Log, producer_id: i64, epoch: i16) -> LogAppendInfo {
    let marker = EndTxnMarker {
        commit: false,
        coordinator_epoch: 0,
    };
    let info = log
        .append_end_txn_marker(producer_id, epoch, marker, 0, 2_000)
        .unwrap();
    let end = log.log_end_offset();
    log.update_high_watermark(end);
    info
}

fn commit(log: &mut Log, producer_id: i64, epoch: i16) -> LogAppendInfo {
    let marker = EndTxnMarker {
        commit: true,
        coordinator_epoch: 0,
    };
    let info = log
        .append_end_txn_marker(producer_id, epoch, marker, 0, 2_000)
        .unwrap();
    let end = log.log_end_offset();
    log.update_high_watermark(end);
    info
}

fn produce(log: &mut Log, batch: &[u8]) -> Result<LogAppendInfo, StorageError> {
    let info = log.append_batch(batch, 0, 1_000, AppendOrigin::Client)?;
    let end = log.log_end_offset();
    log.update_high_watermark(end);
    Ok(info)
}

#[test]
fn a_retried_batch_is_answered_with_its_original_offsets_and_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), true, 0).unwrap();
    let first = producer_batch(PID, 0, 0, 3, false);
    let info = produce(&mut log, &first).unwrap();
    assert_eq!(
        (info.first_offset, info.last_offset, info.duplicate),
        (0, 2, false)
    );
    produce(&mut log, &producer_batch(PID, 0, 3, 2, false)).unwrap();
    let size = log.size_bytes();
    let retry = produce(&mut log, &first).unwrap();
    assert_eq!(
        (retry.first_offset, retry.last_offset, retry.duplicate),
        (0, 2, true)
    );
    assert_eq!(retry.records_count, 0);
    assert_eq!(log.log_end_offset(), 5);
    assert_eq!(log.size_bytes(), size, "nothing written");
    // The multi-batch path finds it too.
    let mut copy = first.clone();
    assert!(
        log.append(&mut copy, 0, 0, AppendOrigin::Client)
            .unwrap()
            .duplicate
    );
    let error = produce(&mut log, &producer_batch(PID, 0, 9, 1, false)).unwrap_err();
    assert!(matches!(
        error,
        StorageError::Producer(ProducerStateError::OutOfOrderSequence { .. })
    ));
    assert_eq!(log.log_end_offset(), 5, "a refused batch writes nothing");
}

#[test]
fn a_multi_batch_append_is_checked_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), true, 0).unwrap();
    let mut records = producer_batch(PID, 0, 0, 1, false);
    records.extend(producer_batch(PID, 0, 5, 1, false));
    assert!(log
        .append(&mut records, 0, 0, AppendOrigin::Client)
        .is_err());
    assert_eq!(log.log_end_offset(), 0);
    assert!(log.active_producers().is_empty());
}

#[test]
fn markers_complete_transactions_and_index_aborts_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), true, 0).unwrap();
    // Producer 1's transaction spans several segments before its abort.
    produce(&mut log, &producer_batch(1, 0, 0, 2, true)).unwrap(); // 0-1
    produce(&mut log, &producer_batch(2, 0, 0, 2, true)).unwrap(); // 2-3
    assert_eq!(log.first_unstable_offset(), Some(0));
    assert_eq!(log.last_stable_offset(), 0);
    for i in 0..6 {
        produce(&mut log, &producer_batch(1, 0, 2 + 2 * i, 2, true)).unwrap();
    }
    assert!(log.segments.len() > 2, "the transaction spans segments");
    let marker = abort(&mut log, 1, 0);
    assert_eq!(marker.first_offset, 16);
    // Producer 2's transaction still holds the LSO.
    assert_eq!(log.last_stable_offset(), 2);
    commit(&mut log, 2, 0);
    assert_eq!(log.first_unstable_offset(), None);
    assert_eq!(log.last_stable_offset(), log.high_watermark());
    let aborted = AbortedTxn {
        producer_id: 1,
        first_offset: 0,
        last_offset: 16,
        last_stable_offset: 2,
    };
    assert_eq!(log.collect_aborted_transactions(0, 100), vec![aborted]);
    assert_eq!(log.collect_aborted_transactions(5, 6), vec![aborted]);
    assert_eq!(log.collect_aborted_transactions(17, 100), vec![]);
    assert_eq!(log.collect_aborted_transactions(0, 0), vec![]);
    // The entry lives in the marker's segment only.
    let holding: Vec<i64> = log
        .segments
        .iter()
        .filter(|s| !s.txn_index.entries().is_empty())
        .map(|s| s.base_offset)
        .collect();
    assert_eq!(
        holding,
        vec![log.segments[log.segment_index_for(16)].base_offset]
    );

    // A marker for a producer without a transaction here is written all the same.
    let before = log.log_end_offset();
    commit(&mut log, 3, 0);
    assert_eq!(log.log_end_offset(), before + 1);
    assert_eq!(log.collect_aborted_transactions(0, 100).len(), 1);
}

#[test]
fn read_committed_stops_at_the_lso_and_reports_aborted_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default(), true, 0).unwrap();
    produce(&mut log, &producer_batch(-1, -1, -1, 2, false)).unwrap(); // 0-1
    produce(&mut log, &producer_batch(1, 0, 0, 2, true)).unwrap(); // 2-3
    abort(&mut log, 1, 0); // 4
    produce(&mut log, &producer_batch(2, 0, 0, 2, true)).unwrap(); // 5-6
    produce(&mut log, &producer_batch(-1, -1, -1, 1, false)).unwrap(); // 7
    assert_eq!(log.last_stable_offset(), 5);
    let committed = log
        .read_with_isolation(0, usize::MAX, true, Isolation::ReadCommitted)
        .unwrap();
    let bytes = committed.records.read_to_bytes().unwrap();
    let last = BatchIter::new(&bytes).last().unwrap().unwrap().0;
    assert_eq!(last.next_offset(), 5, "nothing at or above the LSO");
    assert_eq!(
        committed.aborted_transactions,
        Some(vec![AbortedTxn {
            producer_id: 1,
            first_offset: 2,
            last_offset: 4,
            last_stable_offset: 5
        }])
    );
    let uncommitted = log
        .read_with_isolation(0, usize::MAX, true, Isolation::ReadUncommitted)
        .unwrap();
    assert_eq!(uncommitted.aborted_transactions, None);
    assert!(uncommitted.records.size_bytes() > committed.records.size_bytes());
    // From the LSO: nothing yet.
    let blocked = log
        .read_with_isolation(5, usize::MAX, true, Isolation::ReadCommitted)
        .unwrap();
    assert!(blocked.records.is_empty());
    commit(&mut log, 2, 0);
    let unblocked = log
        .read_with_isolation(5, usize::MAX, true, Isolation::ReadCommitted)
        .unwrap();
    assert!(!unblocked.records.is_empty());
    assert_eq!(unblocked.aborted_transactions, Some(vec![]));
}

#[test]
fn producer_state_survives_clean_and_crash_restarts() {
    for crash in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), config(), true, 0).unwrap();
        for i in 0..8 {
            produce(&mut log, &producer_batch(1, 0, 2 * i, 2, false)).unwrap();
        }
        produce(&mut log, &producer_batch(2, 0, 0, 2, true)).unwrap();
        abort(&mut log, 2, 0);
        produce(&mut log, &producer_batch(3, 0, 0, 2, true)).unwrap();
        let producers = log.active_producers();
        let aborted = log.collect_aborted_transactions(0, i64::MAX);
        let lso = log.last_stable_offset();
        assert!(dir.path().read_dir().unwrap().any(|e| e
            .unwrap()
            .path()
            .extension()
            .is_some_and(|x| x == "snapshot")));
        if crash {
            drop(log);
        } else {
            log.close().unwrap();
        }
        let mut log = Log::open(dir.path(), config(), !crash, 0).unwrap();
        assert_eq!(log.active_producers(), producers, "crash: {crash}");
        assert_eq!(log.collect_aborted_transactions(0, i64::MAX), aborted);
        assert_eq!(
            log.last_stable_offset(),
            lso,
            "the open transaction still blocks (crash: {crash})"
        );
        // Deduplication still works after the restart.
        let retry = produce(&mut log, &producer_batch(1, 0, 14, 2, false)).unwrap();
        assert!(retry.duplicate);
    }
}

#[test]
fn a_corrupt_snapshot_falls_back_to_an_older_one_or_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), true, 0).unwrap();
    for i in 0..10 {
        // Producer 1 is transactional and commits every other batch; 2 and 3 are idempotent.
        let producer_id = 1 + i64::from(i % 3);
        produce(
            &mut log,
            &producer_batch(producer_id, 0, i / 3, 1, producer_id == 1),
        )
        .unwrap();
        if producer_id == 1 && i % 2 == 1 {
            commit(&mut log, 1, 0);
        }
    }
    let producers = log.active_producers();
    let lso = log.last_stable_offset();
    log.close().unwrap();
    let mut snapshots = crate::producer_state::list_snapshots(dir.path()).unwrap();
    assert!(snapshots.len() >= 2, "{snapshots:?}");
    // Damage the newest, then every one.
    for round in 0..2 {
        let targets = if round == 0 {
            vec![snapshots.pop().unwrap()]
        } else {
            // Opening pruned some: whatever is left.
            crate::producer_state::list_snapshots(dir.path()).unwrap()
        };
        for offset in targets {
            let path = crate::producer_state::snapshot_path(dir.path(), offset);
            let mut bytes = std::fs::read(&path).unwrap();
            let last = bytes.len() - 1;
            bytes[last] ^= 0xff;
            std::fs::write(&path, bytes).unwrap();
        }
        let log = Log::open(dir.path(), config(), true, 0).unwrap();
        assert_eq!(log.active_producers(), producers, "round {round}");
        assert_eq!(log.last_stable_offset(), lso);
        drop(log);
    }
}

#[test]
fn truncation_rewinds_producer_state_and_the_transaction_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), true, 0).unwrap();
    produce(&mut log, &producer_batch(1, 0, 0, 2, true)).unwrap(); // 0-1
    abort(&mut log, 1, 0); // 2
    produce(&mut log, &producer_batch(1, 0, 2, 2, true)).unwrap(); // 3-4
    let producers_at_5 = log.active_producers();
    for i in 0..6 {
        produce(&mut log, &producer_batch(2, 0, 2 * i, 2, false)).unwrap();
    }
    abort(&mut log, 1, 0);
    assert_eq!(log.collect_aborted_transactions(0, i64::MAX).len(), 2);
    log.truncate_to(5).unwrap();
    assert_eq!(log.active_producers(), producers_at_5);
    assert_eq!(log.collect_aborted_transactions(0, i64::MAX).len(), 1);
    assert_eq!(log.first_unstable_offset(), Some(3));
    // Producer 2 is gone: its first batch is no longer a duplicate.
    let info = produce(&mut log, &producer_batch(2, 0, 0, 2, false)).unwrap();
    assert!(!info.duplicate);
    assert_eq!(info.first_offset, 5);
    let offsets = crate::producer_state::list_snapshots(dir.path()).unwrap();
    assert!(offsets.iter().all(|o| *o <= 5), "{offsets:?}");
}

#[test]
fn retention_takes_transaction_indexes_and_old_snapshots_along() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(
        dir.path(),
        LogConfig {
            retention_bytes: 0,
            ..config()
        },
        true,
        0,
    )
    .unwrap();
    for i in 0..10 {
        produce(&mut log, &producer_batch(1, 0, 2 * i, 2, true)).unwrap();
        abort(&mut log, 1, 0);
    }
    log.flush().unwrap();
    assert!(log.delete_retained_segments(0).unwrap() > 0);
    let first = log.segments[0].base_offset;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if let Some(stem) = name
            .strip_suffix(".txnindex")
            .or_else(|| name.strip_suffix(".snapshot"))
        {
            assert!(stem.parse::<i64>().unwrap() >= first, "{name} left behind");
        }
    }
    assert!(log
        .collect_aborted_transactions(0, i64::MAX)
        .iter()
        .all(|t| t.last_offset >= first));
}

#[test]
fn expired_producers_are_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), true, 0).unwrap();
    produce(&mut log, &producer_batch(1, 0, 0, 1, false)).unwrap();
    produce(&mut log, &producer_batch(2, 0, 0, 1, true)).unwrap();
    assert_eq!(log.remove_expired_producers(1_000_000, 1_000), 1);
    assert_eq!(log.active_producers().len(), 1);
    assert_eq!(log.active_producers()[0].current_txn_start_offset, 1);
}
