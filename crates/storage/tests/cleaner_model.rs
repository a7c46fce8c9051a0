//! Randomized test of the log cleaner against a model: random keyed appends (with tombstones and
//! every codec), cleaner passes with offset maps small enough to need several passes, clean
//! restarts and crashes. After every step the log must be an in-order subsequence of what was
//! appended (same offsets, keys and values), every key's latest record must still be there
//! (unless it is an expired tombstone), and below the cleaner checkpoint no record may be
//! superseded by a later one with the same key.

use std::collections::HashMap;
use std::path::Path;

use bytes::Bytes;
use fjord_storage::cleaner::clean;
use fjord_storage::{AppendOrigin, CleanerConfig, Log, LogConfig, Throttler};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use proptest::prelude::*;

const NOW_MS: i64 = 10_000_000;

#[derive(Debug, Clone)]
enum Op {
    /// Records as (key id, value: None = tombstone), one batch.
    Append {
        records: Vec<(u8, Option<u8>)>,
        codec: usize,
    },
    /// A cleaner pass whose offset map holds about this many keys; without `finish`, the
    /// lock-free tail of the swap never runs (as if the broker died right after the swap).
    Clean {
        map_keys: u64,
        finish: bool,
    },
    Reopen {
        crash: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (proptest::collection::vec((0u8..12, proptest::option::weighted(0.8, any::<u8>())), 1..8), 0usize..5)
            .prop_map(|(records, codec)| Op::Append { records, codec }),
        2 => (1u64..40, proptest::bool::weighted(0.8))
            .prop_map(|(map_keys, finish)| Op::Clean { map_keys, finish }),
        1 => any::<bool>().prop_map(|crash| Op::Reopen { crash }),
    ]
}

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

type Entry = (i64, Vec<u8>, Option<Vec<u8>>);

fn encode(records: &[(u8, Option<u8>)], codec: usize, timestamp: i64) -> Vec<u8> {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32,
            timestamp,
            key: Some(Bytes::from(vec![b'k', *key])),
            value: value.map(|v| Bytes::from(vec![v; 1 + usize::from(v % 40)])),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: CODECS[codec],
        },
    )
    .unwrap();
    buf.to_vec()
}

fn config(delete_retention_ms: i64) -> LogConfig {
    LogConfig {
        segment_bytes: 600,
        index_interval_bytes: 100,
        compact: true,
        min_cleanable_dirty_ratio: 0.0,
        delete_retention_ms,
        retention_ms: -1,
        ..LogConfig::default()
    }
}

fn read_all(log: &Log) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut offset = log.log_start_offset();
    let end = log.high_watermark();
    while offset < end {
        let data = log.read(offset, 1 << 20, end, true).unwrap();
        let bytes = data.records.read_to_bytes().unwrap();
        if bytes.is_empty() {
            break;
        }
        for item in fjord_protocol::records::BatchIter::new(&bytes) {
            let (header, range) = item.unwrap();
            fjord_protocol::records::verify_crc(&bytes[range.clone()], &header).unwrap();
            fjord_protocol::records::for_each_key_value(&bytes[range], |o, k, v| {
                if o >= offset {
                    entries.push((o, k.unwrap().to_vec(), v.map(<[u8]>::to_vec)));
                }
            })
            .unwrap();
            offset = header.last_offset() + 1;
        }
    }
    entries
}

fn check(log: &Log, appended: &[Entry], tombstones_expire: bool) -> Result<(), TestCaseError> {
    let present = read_all(log);
    // An in-order subsequence of what was appended, with the same offsets, keys and values.
    let by_offset: HashMap<i64, &Entry> = appended.iter().map(|e| (e.0, e)).collect();
    for pair in present.windows(2) {
        prop_assert!(pair[0].0 < pair[1].0, "offsets out of order");
    }
    for entry in &present {
        prop_assert_eq!(Some(&entry), by_offset.get(&entry.0), "record changed");
    }
    let present_offsets: std::collections::HashSet<i64> = present.iter().map(|e| e.0).collect();
    let mut latest: HashMap<&[u8], &Entry> = HashMap::new();
    for entry in appended {
        latest.insert(&entry.1, entry);
    }
    let checkpoint = log.cleaner_checkpoint();
    for entry in latest.values() {
        let expired_tombstone = entry.2.is_none() && tombstones_expire && entry.0 < checkpoint;
        prop_assert_eq!(
            present_offsets.contains(&entry.0),
            !expired_tombstone,
            "latest record at offset {} (checkpoint {})",
            entry.0,
            checkpoint
        );
    }
    // Below the checkpoint nothing is superseded by a later record also below it.
    let mut last_below: HashMap<&[u8], i64> = HashMap::new();
    for entry in appended.iter().filter(|e| e.0 < checkpoint) {
        last_below.insert(&entry.1, entry.0);
    }
    for entry in present.iter().filter(|e| e.0 < checkpoint) {
        prop_assert_eq!(
            last_below[entry.1.as_slice()],
            entry.0,
            "superseded record kept"
        );
    }
    Ok(())
}

fn run(ops: &[Op], tombstones_expire: bool, dir: &Path) -> Result<(), TestCaseError> {
    let delete_retention_ms = if tombstones_expire { 0 } else { i64::MAX };
    let mut log = Some(Log::open(dir, config(delete_retention_ms), true, NOW_MS).unwrap());
    let mut appended: Vec<Entry> = Vec::new();
    for op in ops {
        let current = log.as_mut().unwrap();
        match op {
            Op::Append { records, codec } => {
                let mut batch = encode(records, *codec, NOW_MS - 1_000);
                let info = current
                    .append(&mut batch, 0, NOW_MS, AppendOrigin::Client)
                    .unwrap();
                for (i, (key, value)) in records.iter().enumerate() {
                    appended.push((
                        info.first_offset + i as i64,
                        vec![b'k', *key],
                        value.map(|v| vec![v; 1 + usize::from(v % 40)]),
                    ));
                }
                let end = current.log_end_offset();
                current.update_high_watermark(end);
            }
            Op::Clean { map_keys, finish } => {
                if let Some(task) = current.log_to_clean(NOW_MS).unwrap() {
                    let cleaner = CleanerConfig {
                        dedupe_buffer_size_bytes: map_keys * 25 * 2,
                        io_max_bytes_per_second: f64::MAX,
                        io_buffer_size_bytes: 256,
                    };
                    let cleaned =
                        clean(&task, &cleaner, NOW_MS, &Throttler::new(f64::MAX)).unwrap();
                    let (_, committed) = current.swap_cleaned(cleaned).unwrap().expect("swapped");
                    if *finish {
                        committed.finish().unwrap();
                    }
                }
            }
            Op::Reopen { crash } => {
                let old = log.take().unwrap();
                if *crash {
                    drop(old);
                } else {
                    old.close().unwrap();
                }
                let mut reopened =
                    Log::open(dir, config(delete_retention_ms), !crash, NOW_MS).unwrap();
                let end = reopened.log_end_offset();
                reopened.update_high_watermark(end);
                log = Some(reopened);
            }
        }
        check(log.as_ref().unwrap(), &appended, tombstones_expire)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn cleaner_matches_the_model(
        ops in proptest::collection::vec(op(), 1..60),
        tombstones_expire in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        run(&ops, tombstones_expire, dir.path())?;
    }
}

/// A fixed case with an obvious answer, so the randomized test cannot pass by cleaning nothing.
#[test]
fn many_updates_of_three_keys_compact_to_three_records_plus_the_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(0), true, NOW_MS).unwrap();
    let mut appended = Vec::new();
    for i in 0..200u8 {
        let records = [(i % 3, Some(i))];
        let mut batch = encode(&records, usize::from(i % 5), NOW_MS - 1_000);
        let info = log
            .append(&mut batch, 0, NOW_MS, AppendOrigin::Client)
            .unwrap();
        appended.push((
            info.first_offset,
            vec![b'k', i % 3],
            Some(vec![i; 1 + usize::from(i % 40)]),
        ));
    }
    let end = log.log_end_offset();
    log.update_high_watermark(end);
    let size_before = log.size_bytes();
    let task = log.log_to_clean(NOW_MS).unwrap().expect("dirty log");
    let cleaned = clean(
        &task,
        &CleanerConfig::default(),
        NOW_MS,
        &Throttler::new(f64::MAX),
    )
    .unwrap();
    let (stats, committed) = log.swap_cleaned(cleaned).unwrap().expect("swapped");
    committed.finish().unwrap();
    assert!(stats.records_removed > 150, "{stats:?}");
    let active_base = *log.segment_base_offsets().last().unwrap();
    let present = read_all(&log);
    let below_active = present.iter().filter(|e| e.0 < active_base).count();
    assert!(
        below_active <= 3,
        "{below_active} records below the active segment"
    );
    assert!(
        log.size_bytes() < size_before / 2,
        "{} of {size_before} bytes left",
        log.size_bytes()
    );
    check(&log, &appended, true).unwrap();
    // Nothing new: no second pass is due.
    assert!(log.log_to_clean(NOW_MS).unwrap().is_none());
    // And the result survives a restart.
    log.close().unwrap();
    let log = Log::open(dir.path(), config(0), true, NOW_MS).unwrap();
    assert_eq!(read_all(&log), present);
}

/// Crash points of a pass: before the manifest is written the old log stays; once it is, the
/// next start completes the swap.
#[test]
fn a_crash_before_or_after_the_swap_manifest_leaves_a_whole_log() {
    for manifest_written in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), config(i64::MAX), true, NOW_MS).unwrap();
        for i in 0..120u8 {
            let mut batch = encode(&[(i % 4, Some(i))], 0, NOW_MS - 1_000);
            log.append(&mut batch, 0, NOW_MS, AppendOrigin::Client)
                .unwrap();
        }
        let end = log.log_end_offset();
        log.update_high_watermark(end);
        let before = read_all(&log);
        let task = log.log_to_clean(NOW_MS).unwrap().unwrap();
        let cleaned = clean(
            &task,
            &CleanerConfig::default(),
            NOW_MS,
            &Throttler::new(f64::MAX),
        )
        .unwrap();
        if manifest_written {
            cleaned.write_swap_manifest_for_test().unwrap();
        }
        drop(cleaned);
        drop(log); // kill -9: no close
        let log = Log::open(dir.path(), config(i64::MAX), false, NOW_MS).unwrap();
        let after = read_all(&log);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".cleaned") || n == "cleaner-swap")
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        if manifest_written {
            assert!(after.len() < before.len() / 2, "swap completed");
            let mut latest = HashMap::new();
            for e in &before {
                latest.insert(e.1.clone(), e.clone());
            }
            for e in latest.values() {
                assert!(after.contains(e), "latest value {e:?} lost");
            }
        } else {
            assert_eq!(after, before, "old log intact");
        }
    }
}
