//! The log cleaner with transactions (Kafka's `LogCleaner` + `CleanedTransactionMetadata`):
//! aborted records are removed and never shadow committed ones, committed records are kept,
//! nothing at or above the last stable offset is touched, markers and transaction index
//! entries go once their data is gone, and the last batch of each tracked producer stays.

use std::collections::BTreeMap;

use fjord_protocol::batch_builder::{
    encode_uncompressed_with_producer, ProducerFields, Record, TRANSACTIONAL_ATTRIBUTE,
};
use fjord_protocol::control::EndTxnMarker;
use fjord_protocol::records::BatchIter;
use fjord_storage::cleaner::clean;
use fjord_storage::{AppendOrigin, CleanerConfig, Log, LogConfig, Throttler};

const NOW_MS: i64 = 10_000_000;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 300,
        index_interval_bytes: 100,
        compact: true,
        min_cleanable_dirty_ratio: 0.0,
        delete_retention_ms: 1_000,
        retention_ms: -1,
        ..LogConfig::default()
    }
}

/// One batch of `(key, value)` records; producer id -1 for a plain producer.
fn batch(producer_id: i64, sequence: i32, txn: bool, records: &[(&str, &str)]) -> Vec<u8> {
    let records: Vec<Record<'_>> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            timestamp_delta: i as i64,
            key: Some(key.as_bytes()),
            value: Some(value.as_bytes()),
            ..Record::default()
        })
        .collect();
    encode_uncompressed_with_producer(
        0,
        NOW_MS - 10_000,
        if txn { TRANSACTIONAL_ATTRIBUTE } else { 0 },
        ProducerFields {
            producer_id,
            producer_epoch: if producer_id < 0 { -1 } else { 0 },
            base_sequence: if producer_id < 0 { -1 } else { sequence },
        },
        &records,
    )
}

fn produce(log: &mut Log, bytes: &[u8]) -> i64 {
    let info = log
        .append_batch(bytes, 0, NOW_MS - 10_000, AppendOrigin::Client)
        .unwrap();
    let end = log.log_end_offset();
    log.update_high_watermark(end);
    info.first_offset
}

fn end_txn(log: &mut Log, producer_id: i64, commit: bool, timestamp: i64) -> i64 {
    let marker = EndTxnMarker {
        commit,
        coordinator_epoch: 0,
    };
    let info = log
        .append_end_txn_marker(producer_id, 0, marker, 0, timestamp)
        .unwrap();
    let end = log.log_end_offset();
    log.update_high_watermark(end);
    info.first_offset
}

/// Filler from a plain producer, to roll segments.
fn filler(log: &mut Log, count: usize) {
    for i in 0..count {
        let key = format!("filler-{}", i % 3);
        produce(log, &batch(-1, -1, false, &[(&key, "x")]));
    }
}

/// Offset -> (producer id, key, value).
type Records = BTreeMap<i64, (i64, String, String)>;

/// Every record, plus the control batches' offsets.
fn read_all(log: &Log) -> (Records, Vec<i64>) {
    let mut records = BTreeMap::new();
    let mut markers = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.high_watermark() {
        let data = log
            .read(offset, 1 << 20, log.high_watermark(), true)
            .unwrap();
        let bytes = data.records.read_to_bytes().unwrap();
        if bytes.is_empty() {
            break;
        }
        for item in BatchIter::new(&bytes) {
            let (header, range) = item.unwrap();
            offset = header.next_offset();
            if header.is_control() {
                markers.push(header.base_offset);
                continue;
            }
            fjord_protocol::records::for_each_key_value(&bytes[range], |o, k, v| {
                records.insert(
                    o,
                    (
                        header.producer_id,
                        String::from_utf8_lossy(k.unwrap_or_default()).into_owned(),
                        String::from_utf8_lossy(v.unwrap_or_default()).into_owned(),
                    ),
                );
            })
            .unwrap();
        }
    }
    (records, markers)
}

fn clean_once(log: &mut Log) -> bool {
    let Some(task) = log.log_to_clean(NOW_MS).unwrap() else {
        return false;
    };
    let cleaned = clean(
        &task,
        &CleanerConfig::default(),
        NOW_MS,
        &Throttler::new(f64::MAX),
    )
    .unwrap();
    let Some((_, committed)) = log.swap_cleaned(cleaned).unwrap() else {
        return false;
    };
    committed.finish().unwrap();
    true
}

#[test]
fn aborted_records_go_committed_stay_and_the_lso_bounds_cleaning() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), true, NOW_MS).unwrap();
    // Producer 1 commits a, b; producer 2 overwrites both, in two batches, and aborts.
    produce(
        &mut log,
        &batch(1, 0, true, &[("a", "committed-a"), ("b", "committed-b")]),
    );
    let commit_marker = end_txn(&mut log, 1, true, NOW_MS - 10_000);
    let aborted_first = produce(&mut log, &batch(2, 0, true, &[("a", "aborted-a")]));
    filler(&mut log, 3);
    let aborted_last = produce(&mut log, &batch(2, 1, true, &[("b", "aborted-b")]));
    let abort_marker = end_txn(&mut log, 2, false, NOW_MS - 10_000);
    filler(&mut log, 4);
    // Producer 3's transaction stays open: nothing from it on may be cleaned.
    let lso = produce(&mut log, &batch(3, 0, true, &[("c", "pending")]));
    produce(&mut log, &batch(-1, -1, false, &[("d", "old-d")]));
    produce(&mut log, &batch(-1, -1, false, &[("d", "new-d")]));
    filler(&mut log, 6);
    assert_eq!(log.last_stable_offset(), lso);
    let (before, _) = read_all(&log);

    assert!(clean_once(&mut log));
    while clean_once(&mut log) {}
    let (after, markers) = read_all(&log);
    // Committed values survive: the aborted ones later in the log did not shadow them.
    let value_of = |key: &str| {
        after
            .values()
            .filter(|(_, k, _)| k == key)
            .map(|(_, _, v)| v.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(value_of("a"), vec!["committed-a"]);
    assert_eq!(value_of("b"), vec!["committed-b", "aborted-b"]);
    // The aborted batch is gone, but producer 2's last batch stays (its sequence state).
    assert!(!after.contains_key(&aborted_first));
    assert!(after.contains_key(&aborted_last));
    // Nothing at or above the LSO was touched, superseded or not.
    let tail = |records: &Records| {
        records
            .range(lso..)
            .map(|(o, r)| (*o, r.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(tail(&after), tail(&before));
    assert!(log.cleaner_checkpoint() <= lso);
    // Markers whose transactions still have data stay, and so does the abort's index entry.
    assert!(markers.contains(&commit_marker));
    assert!(markers.contains(&abort_marker));
    let aborted = log.collect_aborted_transactions(0, i64::MAX);
    assert_eq!(aborted.len(), 1);
    assert_eq!(aborted[0].last_offset, abort_marker);

    // Once producer 2 is forgotten its last batch goes too, then its marker and index entry.
    assert_eq!(
        log.remove_expired_producers(NOW_MS, 1),
        2,
        "producers 1 and 2"
    );
    // Producer 3's transaction ends, so the rest of the log becomes cleanable.
    end_txn(&mut log, 3, true, NOW_MS - 10_000);
    assert_eq!(log.first_unstable_offset(), None);
    let roll_and_clean = |log: &mut Log| {
        filler(log, 6);
        while clean_once(log) {}
    };
    roll_and_clean(&mut log);
    let (after, _) = read_all(&log);
    assert!(!after.contains_key(&aborted_last));
    roll_and_clean(&mut log);
    let (after, markers) = read_all(&log);
    assert!(
        !markers.contains(&abort_marker),
        "marker of a transaction without data"
    );
    assert!(
        markers.contains(&commit_marker),
        "its transaction still has data"
    );
    assert!(log.collect_aborted_transactions(0, i64::MAX).is_empty());
    assert_eq!(value_of_in(&after, "a"), vec!["committed-a"]);
    assert_eq!(value_of_in(&after, "b"), vec!["committed-b"]);

    // The cleaned log reopens with the same state after a crash. Expiry is not logged: the
    // replay brings expired producers back until the next expiry run (as in Kafka).
    log.remove_expired_producers(NOW_MS, 1);
    let producers = log.active_producers();
    let lso = log.last_stable_offset();
    drop(log);
    let mut log = Log::open(dir.path(), config(), false, NOW_MS).unwrap();
    log.remove_expired_producers(NOW_MS, 1);
    assert_eq!(log.active_producers(), producers);
    assert_eq!(log.last_stable_offset(), lso);
    assert_eq!(read_all(&log).0, after);
}

fn value_of_in(records: &Records, key: &str) -> Vec<String> {
    records
        .values()
        .filter(|(_, k, _)| k == key)
        .map(|(_, _, v)| v.clone())
        .collect()
}

#[test]
fn the_transaction_index_follows_segments_through_the_swap() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(
        dir.path(),
        LogConfig {
            delete_retention_ms: i64::MAX,
            ..config()
        },
        true,
        NOW_MS,
    )
    .unwrap();
    // Several aborted transactions of a producer whose later batches keep it active.
    for i in 0..4 {
        produce(&mut log, &batch(1, i, true, &[("k", "aborted")]));
        filler(&mut log, 2);
        end_txn(&mut log, 1, false, NOW_MS - 10_000);
    }
    filler(&mut log, 8);
    let before = log.collect_aborted_transactions(0, i64::MAX);
    assert_eq!(before.len(), 4);
    while clean_once(&mut log) {}
    // First pass: data of the first three is gone, their entries stay with their markers
    // (data was seen in that pass); the last batch of producer 1 is still there.
    let after_first = log.collect_aborted_transactions(0, i64::MAX);
    assert_eq!(after_first.len(), 4, "{after_first:?}");
    let txnindex_files = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            let name = name.to_string_lossy();
            name.ends_with(".txnindex") || name.ends_with(".cleaned")
        })
        .count();
    assert!(txnindex_files > 0);
    // A later pass sees no data of the first three: their entries go (markers stay: retention).
    filler(&mut log, 6);
    while clean_once(&mut log) {}
    let after_second = log.collect_aborted_transactions(0, i64::MAX);
    assert_eq!(after_second, before[3..].to_vec());
    // And the files say the same after a restart.
    log.close().unwrap();
    let log = Log::open(dir.path(), config(), true, NOW_MS).unwrap();
    assert_eq!(log.collect_aborted_transactions(0, i64::MAX), after_second);
}
