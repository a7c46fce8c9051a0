//! Micro-benchmarks of the partition log on real files (in a temporary directory): append with
//! index maintenance, offset lookup, fetch reads and timestamp lookup.
//!
//! Run with `cargo bench -p fjord-storage`; `cargo bench -p fjord-storage -- --test` runs
//! every benchmark once as a smoke test. Logs are never fsynced here (flush intervals are left
//! at "never"), so append measures the write into the page cache plus index upkeep.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fjord_protocol::batch_builder;
use fjord_storage::{AppendOrigin, Log, LogConfig};
use tempfile::TempDir;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
/// Value size of every record: a typical small event.
const VALUE_BYTES: usize = 100;
/// Approximate encoded size of one record with a null key and a `VALUE_BYTES` value.
const RECORD_BYTES_APPROX: usize = VALUE_BYTES + 8;
const NOW_MS: i64 = 1_700_000_000_000;
const LEADER_EPOCH: i32 = 3;

/// Records per batch so that a batch is about `target_bytes` long.
fn records_for(target_bytes: usize) -> usize {
    (target_bytes.saturating_sub(61) / RECORD_BYTES_APPROX).max(1)
}

/// One uncompressed batch of about `target_bytes`, record timestamps from `base_timestamp`.
fn batch_of_about(target_bytes: usize, base_timestamp: i64) -> Vec<u8> {
    batch_builder::encode_values(
        base_timestamp,
        records_for(target_bytes),
        &[b'v'; VALUE_BYTES],
    )
}

fn open_log(dir: &TempDir, config: LogConfig) -> Log {
    Log::open(dir.path(), config, true, NOW_MS).expect("open benchmark log")
}

/// A log of about `total_bytes` made of batches of about `batch_bytes`, record timestamps
/// increasing by 1 ms per record from `NOW_MS`, in segments of `segment_bytes`.
fn filled_log(total_bytes: usize, batch_bytes: usize, segment_bytes: u64) -> (TempDir, Log) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_bytes,
        ..LogConfig::default()
    };
    let mut log = open_log(&dir, config);
    let per_batch = records_for(batch_bytes) as i64;
    while log.size_bytes() < total_bytes as u64 {
        let mut batch = batch_of_about(batch_bytes, NOW_MS + log.log_end_offset());
        log.append(&mut batch, LEADER_EPOCH, NOW_MS, AppendOrigin::Client)
            .unwrap();
    }
    assert_eq!(log.log_end_offset() % per_batch, 0);
    (dir, log)
}

/// xorshift64: a fixed, cheap sequence of pseudo-random lookups, the same on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

fn bench_append(c: &mut Criterion) {
    /// Start over in a fresh directory (untimed) once the log reaches this size, so the
    /// benchmark neither fills the disk nor rolls segments.
    const RESET_BYTES: u64 = 256 * MIB as u64;
    let mut group = c.benchmark_group("log_append");
    let template = batch_of_about(16 * KIB, NOW_MS);
    group.throughput(Throughput::Bytes(template.len() as u64));
    group.bench_function("16KiB_batch", |b| {
        let mut dir = tempfile::tempdir().expect("tempdir");
        let mut log = open_log(&dir, LogConfig::default());
        let mut batch = template.clone();
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                if log.size_bytes() >= RESET_BYTES {
                    let fresh = tempfile::tempdir().expect("tempdir");
                    log = open_log(&fresh, LogConfig::default());
                    dir = fresh;
                }
                let start = Instant::now();
                black_box(
                    log.append(
                        black_box(&mut batch),
                        LEADER_EPOCH,
                        NOW_MS,
                        AppendOrigin::Client,
                    )
                    .unwrap(),
                );
                elapsed += start.elapsed();
            }
            elapsed
        })
    });
    group.finish();
}

/// `Log::read` of one batch at a random offset: the offset index lookup plus the scan to the
/// batch holding the offset and reading it. 32 MiB of 1 KiB batches in 8 MiB segments.
fn bench_lookup(c: &mut Criterion) {
    let (_dir, log) = filled_log(32 * MIB, KIB, 8 * MIB as u64);
    let end = log.log_end_offset();
    let mut group = c.benchmark_group("log_lookup");
    group.throughput(Throughput::Elements(1));
    group.bench_function("read_one_batch_random_offset", |b| {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        b.iter(|| {
            let offset = rng.below(end as u64) as i64;
            let data = log.read(offset, 1, end, true).unwrap();
            debug_assert!(!data.records.is_empty());
            data.records.read_to_bytes().unwrap()
        })
    });
    group.bench_function("fetch_offset_for_timestamp_random", |b| {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        b.iter(|| {
            let target = NOW_MS + rng.below(end as u64) as i64;
            let found = log.fetch_offset_for_timestamp(target).unwrap();
            debug_assert!(found.is_some());
            found
        })
    });
    group.finish();
}

/// `Log::read` of up to 1 MiB at a random offset of a warm (page-cached) 64 MiB log: finding
/// the file range (what a fetch does before `sendfile`), and finding plus copying it into
/// memory (what a transport that must see the bytes does).
fn bench_fetch_read(c: &mut Criterion) {
    let mut group = c.benchmark_group("log_read_1MiB");
    for batch_bytes in [16 * KIB, KIB] {
        let (_dir, log) = filled_log(64 * MIB, batch_bytes, LogConfig::default().segment_bytes);
        let end = log.log_end_offset();
        // Stay clear of the end so that every read returns a full 1 MiB worth of batches.
        let last_start = end - 2 * (MIB / batch_bytes) as i64 * records_for(batch_bytes) as i64;
        let sample = log.read(0, MIB, end, false).unwrap().records.size_bytes() as usize;
        for warm in (0..end).step_by(MIB / batch_bytes * records_for(batch_bytes)) {
            black_box(log.read(warm, MIB, end, false).unwrap());
        }
        group.throughput(Throughput::Bytes(sample as u64));
        group.bench_function(format!("{}KiB_batches_range", batch_bytes / KIB), |b| {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
            b.iter(|| {
                let offset = rng.below(last_start as u64) as i64;
                let data = log.read(offset, MIB, end, false).unwrap();
                debug_assert!(data.records.size_bytes() as usize + batch_bytes * 2 >= sample);
                data
            })
        });
        group.bench_function(format!("{}KiB_batches_copy", batch_bytes / KIB), |b| {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
            b.iter(|| {
                let offset = rng.below(last_start as u64) as i64;
                let data = log.read(offset, MIB, end, false).unwrap();
                data.records.read_to_bytes().unwrap()
            })
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_append, bench_lookup, bench_fetch_read
}
criterion_main!(benches);
