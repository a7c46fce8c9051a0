//! Log cleaner throughput: one full pass (offset map plus rewrite into `.cleaned` segments, the
//! fsync of the new segments included) over a 64 MiB log of 1 KiB values with 20 000 keys,
//! about 3 updates per key. Reported as MB/s of log read (criterion's throughput).
//!
//! Run with `cargo bench -p fjord-storage --bench cleaner`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fjord_protocol::batch_builder::{encode_uncompressed, Record};
use fjord_storage::cleaner::clean;
use fjord_storage::{AppendOrigin, CleanerConfig, Log, LogConfig, Throttler};

const NOW_MS: i64 = 1_700_000_000_000;
const LOG_BYTES: u64 = 64 << 20;
const KEYS: u64 = 20_000;
const VALUE_BYTES: usize = 1024;
const RECORDS_PER_BATCH: u64 = 16;

fn compacted_log(dir: &std::path::Path) -> Log {
    let config = LogConfig {
        segment_bytes: 8 << 20,
        compact: true,
        min_cleanable_dirty_ratio: 0.0,
        retention_ms: -1,
        ..LogConfig::default()
    };
    let mut log = Log::open(dir, config, true, NOW_MS).expect("open log");
    let value = vec![b'v'; VALUE_BYTES];
    let mut n = 0u64;
    while log.size_bytes() < LOG_BYTES {
        let keys: Vec<String> = (0..RECORDS_PER_BATCH)
            .map(|i| format!("key-{}", (n + i).wrapping_mul(2_654_435_761) % KEYS))
            .collect();
        let records: Vec<Record<'_>> = keys
            .iter()
            .map(|key| Record {
                key: Some(key.as_bytes()),
                value: Some(&value),
                ..Record::default()
            })
            .collect();
        let mut batch = encode_uncompressed(0, NOW_MS - 60_000, 0, &records);
        log.append(&mut batch, 0, NOW_MS, AppendOrigin::Client)
            .expect("append");
        n += RECORDS_PER_BATCH;
    }
    let end = log.log_end_offset();
    log.update_high_watermark(end);
    log
}

fn cleaner_pass(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = compacted_log(dir.path());
    let mut group = c.benchmark_group("log_cleaner");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    let task = log
        .log_to_clean(NOW_MS)
        .expect("inspect")
        .expect("dirty log");
    group.throughput(Throughput::Bytes(task.clean_bytes + task.dirty_bytes));
    group.bench_function("full_pass_64mib_20k_keys", |b| {
        b.iter(|| {
            let cleaned = clean(
                &task,
                &CleanerConfig::default(),
                NOW_MS,
                &Throttler::new(f64::MAX),
            )
            .expect("clean");
            assert!(cleaned.stats.records_removed > 0);
            cleaned.discard_for_bench();
        })
    });
    group.finish();
}

criterion_group!(benches, cleaner_pass);
criterion_main!(benches);
