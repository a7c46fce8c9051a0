use super::*;
use fjord_protocol::records::{validate_batch, RecordBatchHeader};
use proptest::prelude::*;
use std::os::unix::fs::FileExt;

/// An uncompressed v2 batch with `timestamps.len()` records of `value_bytes` each
/// (record `i` holds bytes of value `i`).
fn batch_with_timestamps(timestamps: &[i64], value_bytes: usize) -> Vec<u8> {
    use fjord_protocol::batch_builder::{encode_uncompressed, Record};
    let base_ts = timestamps[0];
    let values: Vec<Vec<u8>> = (0..timestamps.len())
        .map(|i| vec![i as u8; value_bytes])
        .collect();
    let records: Vec<Record<'_>> = timestamps
        .iter()
        .zip(&values)
        .map(|(ts, value)| Record {
            timestamp_delta: ts - base_ts,
            value: Some(value),
            ..Record::default()
        })
        .collect();
    let out = encode_uncompressed(0, base_ts, 0, &records);
    validate_batch(&out).unwrap();
    out
}

fn batch(records: usize, value_bytes: usize) -> Vec<u8> {
    let timestamps: Vec<i64> = (0..records as i64).map(|i| 1_000 + i).collect();
    batch_with_timestamps(&timestamps, value_bytes)
}

fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 1_000,
        index_interval_bytes: 150,
        ..LogConfig::default()
    }
}

fn headers(bytes: &[u8]) -> Vec<RecordBatchHeader> {
    BatchIter::new(bytes).map(|r| r.unwrap().0).collect()
}

fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

/// Appends `count` batches and returns them as stored (offsets patched).
fn append_batches(log: &mut Log, count: usize, epoch: i32) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let mut b = batch(1 + i % 4, 30 + (i * 7) % 50);
            log.append(&mut b, epoch, 0, AppendOrigin::Client).unwrap();
            b
        })
        .collect()
}

#[test]
fn append_read_round_trip_across_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), false, 0).unwrap();
    assert_eq!(log.log_end_offset(), 0);
    let mut stored = Vec::new();
    let mut expected_offset = 0;
    for i in 0..40 {
        let mut b = batch(1 + i % 4, 30 + i);
        let info = log.append(&mut b, 0, 0, AppendOrigin::Client).unwrap();
        assert_eq!(info.first_offset, expected_offset);
        assert_eq!(info.records_count as usize, 1 + i % 4);
        assert_eq!(
            info.last_offset,
            expected_offset + info.records_count as i64 - 1
        );
        let header = validate_batch(&b).unwrap();
        assert_eq!(header.base_offset, expected_offset);
        assert_eq!(header.partition_leader_epoch, 0);
        expected_offset = info.last_offset + 1;
        stored.push(b);
    }
    assert_eq!(log.log_end_offset(), expected_offset);
    assert!(
        log_files(dir.path()).len() > 3,
        "small segment_bytes must roll"
    );
    let all: Vec<u8> = stored.concat();
    assert_eq!(log.size_bytes(), all.len() as u64);
    // Reading from any offset returns the batch containing it and everything after, one
    // segment per read, as a consumer sees it.
    let mut batch_start = 0;
    for b in &stored {
        let header = RecordBatchHeader::parse(b).unwrap();
        for offset in header.base_offset..=header.last_offset() {
            let data = log.read(offset, usize::MAX, i64::MAX, false).unwrap();
            assert_eq!(data.log_start_offset, 0);
            let first = bytes_of(&data);
            assert!(
                first.len() >= b.len() && first.len() <= all.len() - batch_start,
                "offset {offset}"
            );
            assert_eq!(
                read_through(&log, offset),
                &all[batch_start..],
                "offset {offset}"
            );
        }
        batch_start += b.len();
    }
}

fn bytes_of(data: &FetchDataInfo) -> Vec<u8> {
    data.records.read_to_bytes().unwrap().to_vec()
}

/// Everything from the batch containing `offset` to the log end, read the way a consumer
/// does: one read per segment, each continuing after the last batch of the previous one.
fn read_through(log: &Log, mut offset: i64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let data = bytes_of(&log.read(offset, usize::MAX, i64::MAX, false).unwrap());
        if data.is_empty() {
            return out;
        }
        let mut next = offset;
        for item in BatchIter::new(&data) {
            let (header, _) = item.unwrap();
            next = header.next_offset();
        }
        out.extend_from_slice(&data);
        offset = next;
    }
}

#[test]
fn read_limits() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), false, 0).unwrap();
    let stored = append_batches(&mut log, 12, 0);
    let first = stored[0].len();
    let leo = log.log_end_offset();

    let empty = log.read(0, first - 1, leo, false).unwrap();
    assert!(empty.records.is_empty());
    let one = log.read(0, first - 1, leo, true).unwrap();
    assert_eq!(bytes_of(&one), stored[0]);
    let one = log.read(0, 1, leo, true).unwrap();
    assert_eq!(bytes_of(&one), stored[0]);
    let two = log.read(0, first + stored[1].len() + stored[2].len() - 1, leo, false);
    assert_eq!(bytes_of(&two.unwrap()), stored[..2].concat());

    // The high watermark caps the read at a batch boundary.
    let hw = RecordBatchHeader::parse(&stored[3]).unwrap().base_offset;
    let capped = log.read(0, usize::MAX, hw, true).unwrap();
    assert_eq!(bytes_of(&capped), stored[..3].concat());
    assert!(log
        .read(hw, usize::MAX, hw, true)
        .unwrap()
        .records
        .is_empty());

    assert!(log
        .read(leo, usize::MAX, leo, true)
        .unwrap()
        .records
        .is_empty());
    assert!(matches!(
        log.read(leo + 1, 100, leo, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert!(matches!(
        log.read(-1, 100, leo, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn high_watermark_is_clamped() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), false, 0).unwrap();
    append_batches(&mut log, 3, 0);
    log.update_high_watermark(1_000);
    assert_eq!(log.high_watermark(), log.log_end_offset());
    log.update_high_watermark(-5);
    assert_eq!(log.high_watermark(), 0);
    log.update_high_watermark(2);
    assert_eq!(log.high_watermark(), 2);
}

#[test]
fn offset_index_is_sparse_and_used() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        index_interval_bytes: 200,
        ..LogConfig::default()
    };
    let mut log = Log::open(dir.path(), config, false, 0).unwrap();
    let stored = append_batches(&mut log, 30, 0);
    let segment = log.active();
    let entries = &segment.offset_index.entries;
    assert!(entries.len() > 3 && entries.len() < stored.len());
    // Every entry points at the start of a batch whose last offset it names.
    for entry in entries {
        let header = segment
            .read_header_at(u64::from(entry.position))
            .unwrap()
            .unwrap();
        assert_eq!(header.last_offset(), i64::from(entry.relative_offset));
    }
    for target in [0, 5, 17, 40, log.log_end_offset() - 1] {
        let (position, header) = segment.find_batch_position(target).unwrap().unwrap();
        assert!(header.base_offset <= target && target <= header.last_offset());
        assert!(u64::from(segment.offset_index.lookup(target as u64)) <= position);
    }
    log.close().unwrap();
    let index_path = dir.path().join("00000000000000000000.index");
    assert_eq!(std::fs::metadata(index_path).unwrap().len() % 8, 0);
}

#[test]
fn timestamp_lookups() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), false, 0).unwrap();
    assert_eq!(log.fetch_offset_for_timestamp(0).unwrap(), None);
    assert_eq!(log.offset_of_max_timestamp().unwrap(), None);
    // Offsets 0-2 @ 100,300,200; 3-4 @ 250,260; 5-7 @ 900,150,400; then more, older ones.
    for (epoch, timestamps) in [
        (1, vec![100, 300, 200]),
        (1, vec![250, 260]),
        (3, vec![900, 150, 400]),
        (3, vec![50, 60]),
    ] {
        let mut b = batch_with_timestamps(&timestamps, 200);
        log.append(&mut b, epoch, 0, AppendOrigin::Client).unwrap();
    }
    let at = |t| {
        log.fetch_offset_for_timestamp(t)
            .unwrap()
            .map(|x| (x.offset, x.timestamp))
    };
    assert_eq!(at(0), Some((0, 100)));
    assert_eq!(at(150), Some((1, 300)));
    assert_eq!(at(300), Some((1, 300)));
    assert_eq!(at(301), Some((5, 900)));
    assert_eq!(at(901), None);
    let found = log.fetch_offset_for_timestamp(500).unwrap().unwrap();
    assert_eq!(found.leader_epoch, Some(3));
    let max = log.offset_of_max_timestamp().unwrap().unwrap();
    assert_eq!(
        (max.offset, max.timestamp, max.leader_epoch),
        (5, 900, Some(3))
    );

    // Same answers from indexes loaded after a clean close, and rebuilt after a crash.
    log.close().unwrap();
    for clean in [true, false] {
        let log = Log::open(dir.path(), small_config(), clean, 0).unwrap();
        let found = log.fetch_offset_for_timestamp(301).unwrap().unwrap();
        assert_eq!((found.offset, found.timestamp), (5, 900));
        assert_eq!(log.offset_of_max_timestamp().unwrap().unwrap().offset, 5);
        assert_eq!(log.fetch_offset_for_timestamp(901).unwrap(), None);
        drop(log);
    }
}

fn all_records(log: &Log) -> Vec<u8> {
    read_through(log, log.log_start_offset())
}

#[test]
fn clean_reopen_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), false, 0).unwrap();
    let stored = append_batches(&mut log, 25, 4);
    let leo = log.log_end_offset();
    log.close().unwrap();
    let mut log = Log::open(dir.path(), small_config(), true, 0).unwrap();
    assert_eq!(log.log_end_offset(), leo);
    assert_eq!(log.high_watermark(), leo);
    assert_eq!(all_records(&log), stored.concat());
    assert_eq!(log.latest_epoch(), Some(4));
    let more = append_batches(&mut log, 3, 4);
    assert_eq!(all_records(&log), [stored, more].concat().concat());
}

/// Appends 10 batches, crashes, damages the last segment with `damage`, reopens uncleanly and
/// checks that exactly the batches before `expected_survivors` remain.
fn crash_and_check(damage: impl FnOnce(&Path, u64, usize), expected_survivors: usize) {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 100_000,
        index_interval_bytes: 100,
        ..LogConfig::default()
    };
    let mut log = Log::open(dir.path(), config.clone(), false, 0).unwrap();
    let stored = append_batches(&mut log, 10, 2);
    log.flush().unwrap();
    drop(log); // a crash: no close
    let file = log_files(dir.path()).pop().unwrap();
    let len = std::fs::metadata(&file).unwrap().len();
    damage(&file, len, stored.last().unwrap().len());
    let log = Log::open(dir.path(), config.clone(), false, 0).unwrap();
    let survivors = &stored[..expected_survivors];
    let leo = survivors
        .last()
        .map_or(0, |b| RecordBatchHeader::parse(b).unwrap().next_offset());
    assert_eq!(log.log_end_offset(), leo);
    assert_eq!(all_records(&log), survivors.concat());
    assert_eq!(
        std::fs::metadata(&file).unwrap().len(),
        survivors.concat().len() as u64
    );
    // Indexes were rebuilt consistently: every offset is still readable.
    for offset in 0..leo {
        assert!(!log.read(offset, 1, leo, true).unwrap().records.is_empty());
    }
    drop(log);
    let log = Log::open(dir.path(), config, false, 0).unwrap();
    assert_eq!(log.log_end_offset(), leo);
}

fn set_len(file: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn write_at(file: &Path, bytes: &[u8], position: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .unwrap()
        .write_all_at(bytes, position)
        .unwrap();
}

#[test]
fn recovery_drops_torn_tail() {
    crash_and_check(|file, len, _| set_len(file, len - 1), 9);
    crash_and_check(|file, len, last| set_len(file, len - last as u64 + 5), 9);
    crash_and_check(|file, len, last| set_len(file, len - last as u64 - 1), 8);
    crash_and_check(|file, len, _| set_len(file, len), 10);
}

#[test]
fn recovery_drops_appended_garbage() {
    crash_and_check(|file, len, _| write_at(file, &[0xAB; 100], len), 10);
    crash_and_check(|file, len, _| write_at(file, &[0; 3], len), 10);
}

#[test]
fn recovery_drops_corrupt_batch_and_after() {
    // A flipped byte in the last batch's records.
    crash_and_check(|file, len, _| write_at(file, &[0xFF], len - 3), 9);
    // A flipped CRC in the second-to-last batch drops it and the last one.
    crash_and_check(
        |file, len, last| {
            let position = len - last as u64 - 10;
            let mut byte = [0u8];
            std::fs::File::open(file)
                .unwrap()
                .read_exact_at(&mut byte, position)
                .unwrap();
            write_at(file, &[byte[0] ^ 1], position);
        },
        8,
    );
}

#[test]
fn recovery_removes_stray_files_and_stale_index_entries() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), false, 0).unwrap();
    let stored = append_batches(&mut log, 20, 0);
    log.close().unwrap();
    for stray in [
        "00000000000000000000.log.deleted",
        "00000000000000000005.index.swap",
        "x.cleaned",
    ] {
        std::fs::write(dir.path().join(stray), b"junk").unwrap();
    }
    // Cut the active segment to nothing: its (now stale) index entries must go too.
    let active = log_files(dir.path()).pop().unwrap();
    set_len(&active, 0);
    let log = Log::open(dir.path(), small_config(), false, 0).unwrap();
    for stray in [
        "00000000000000000000.log.deleted",
        "00000000000000000005.index.swap",
        "x.cleaned",
    ] {
        assert!(!dir.path().join(stray).exists());
    }
    assert!(log.active().offset_index.entries.is_empty());
    let survivors = all_records(&log);
    assert!(stored.concat().starts_with(&survivors));
    assert_eq!(log.log_end_offset(), log.active().base_offset);
}

#[test]
fn leader_epoch_cache() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), false, 0).unwrap();
    assert_eq!(log.latest_epoch(), None);
    assert_eq!(log.end_offset_for_epoch(0), None);
    append_batches(&mut log, 2, 0); // offsets 0..=2
    append_batches(&mut log, 2, 2); // offsets 3..=5
    let start_of_5 = log.log_end_offset();
    append_batches(&mut log, 1, 5);
    assert_eq!(log.latest_epoch(), Some(5));
    assert_eq!(log.epoch_for_offset(0), Some(0));
    assert_eq!(log.epoch_for_offset(3), Some(2));
    assert_eq!(log.epoch_for_offset(start_of_5), Some(5));
    assert_eq!(log.end_offset_for_epoch(0), Some((0, 3)));
    assert_eq!(log.end_offset_for_epoch(1), Some((0, 3)));
    assert_eq!(log.end_offset_for_epoch(3), Some((2, start_of_5)));
    assert_eq!(log.end_offset_for_epoch(5), Some((5, log.log_end_offset())));
    assert_eq!(log.end_offset_for_epoch(6), None);
    let text = std::fs::read_to_string(dir.path().join("leader-epoch-checkpoint")).unwrap();
    assert_eq!(text, format!("0\n3\n0 0\n2 3\n5 {start_of_5}\n"));

    // Truncating below epoch 5's start forgets it, and that survives a crash.
    log.truncate_to(start_of_5).unwrap();
    assert_eq!(log.latest_epoch(), Some(2));
    assert_eq!(log.end_offset_for_epoch(2), Some((2, start_of_5)));
    drop(log);
    let log = Log::open(dir.path(), small_config(), false, 0).unwrap();
    assert_eq!(log.latest_epoch(), Some(2));
    assert_eq!(log.log_end_offset(), start_of_5);
}

#[test]
fn epoch_checkpoint_lost_or_torn_in_a_crash_is_rebuilt_from_the_batches() {
    for damage in ["missing", "torn", "stale"] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), small_config(), false, 0).unwrap();
        append_batches(&mut log, 12, 0); // spans several segments
        let start_of_3 = log.log_end_offset();
        append_batches(&mut log, 3, 3);
        let checkpoint = dir.path().join("leader-epoch-checkpoint");
        match damage {
            "missing" => std::fs::remove_file(&checkpoint).unwrap(),
            "torn" => std::fs::write(&checkpoint, "0\n2\n0 0\n3").unwrap(),
            _ => {
                // What a power loss can leave: a roll fsyncs the checkpoint, so only epochs
                // that started in the active segment can be missing from it.
                let active_base = log.active().base_offset;
                let durable = if start_of_3 < active_base {
                    format!("0\n2\n0 0\n3 {start_of_3}\n")
                } else {
                    "0\n1\n0 0\n".to_string()
                };
                std::fs::write(&checkpoint, durable).unwrap();
            }
        }
        drop(log); // crash: no clean close
        let log = Log::open(dir.path(), small_config(), false, 0).unwrap();
        assert_eq!(log.latest_epoch(), Some(3), "{damage}");
        assert_eq!(log.epoch_for_offset(0), Some(0), "{damage}");
        assert_eq!(
            log.end_offset_for_epoch(0),
            Some((0, start_of_3)),
            "{damage}"
        );
        let text = std::fs::read_to_string(&checkpoint).unwrap();
        assert_eq!(text, format!("0\n2\n0 0\n3 {start_of_3}\n"), "{damage}");
    }
}

#[test]
fn truncate_to_mid_batch_and_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), false, 0).unwrap();
    let stored = append_batches(&mut log, 30, 0);
    let headers: Vec<_> = stored
        .iter()
        .map(|b| RecordBatchHeader::parse(b).unwrap())
        .collect();
    let segments_before = log_files(dir.path()).len();
    // Offset inside batch 7: batch 7 and later go.
    let target = headers[7].base_offset + i64::from(headers[7].last_offset_delta.min(1));
    log.truncate_to(target).unwrap();
    assert_eq!(log.log_end_offset(), headers[7].base_offset);
    assert_eq!(all_records(&log), stored[..7].concat());
    assert!(log_files(dir.path()).len() < segments_before);
    let more = append_batches(&mut log, 5, 0);
    assert_eq!(
        all_records(&log),
        [&stored[..7], &more[..]].concat().concat()
    );
    assert_eq!(headers_of_all(&log).len(), 12);

    // Below the log start offset: empty and restart there.
    log.truncate_to(-1).unwrap();
    assert_eq!(log.log_end_offset(), 0);
    assert!(all_records(&log).is_empty());
}

fn headers_of_all(log: &Log) -> Vec<RecordBatchHeader> {
    headers(&all_records(log))
}

#[test]
fn rejects_oversized_append_and_handles_empty() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), false, 0).unwrap();
    let mut big = batch(1, 2_000);
    assert!(matches!(
        log.append(&mut big, 0, 0, AppendOrigin::Client),
        Err(StorageError::RecordBatchTooLarge { .. })
    ));
    let info = log.append(&mut [], 0, 0, AppendOrigin::Client).unwrap();
    assert_eq!(info.records_count, 0);
    assert_eq!(log.log_end_offset(), 0);
}

#[test]
fn time_based_roll() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_ms: 1_000,
        ..LogConfig::default()
    };
    let mut log = Log::open(dir.path(), config, false, 0).unwrap();
    log.append(&mut batch(1, 10), 0, 10, AppendOrigin::Client)
        .unwrap();
    log.append(&mut batch(1, 10), 0, 500, AppendOrigin::Client)
        .unwrap();
    assert_eq!(log_files(dir.path()).len(), 1);
    log.append(&mut batch(1, 10), 0, 1_001, AppendOrigin::Client)
        .unwrap();
    assert_eq!(log_files(dir.path()).len(), 2);
}

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<(usize, usize)>),
    TruncateTo(u8),
    ReopenClean,
    Crash(Damage),
}

#[derive(Debug, Clone)]
enum Damage {
    None,
    CutTail(u16),
    Garbage(Vec<u8>),
    FlipInLastBatch(u16, u8),
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let damage = prop_oneof![
        Just(Damage::None),
        any::<u16>().prop_map(Damage::CutTail),
        proptest::collection::vec(any::<u8>(), 1..80).prop_map(Damage::Garbage),
        (any::<u16>(), 1u8..=255).prop_map(|(at, mask)| Damage::FlipInLastBatch(at, mask)),
    ];
    prop_oneof![
        6 => proptest::collection::vec((1usize..5, 0usize..60), 1..4).prop_map(Op::Append),
        1 => any::<u8>().prop_map(Op::TruncateTo),
        1 => Just(Op::ReopenClean),
        2 => damage.prop_map(Op::Crash),
    ]
}

/// The model: stored batches in offset order.
struct Model {
    batches: Vec<Vec<u8>>,
}

impl Model {
    fn log_end_offset(&self) -> i64 {
        self.batches
            .last()
            .map_or(0, |b| RecordBatchHeader::parse(b).unwrap().next_offset())
    }

    /// Drops batches from the end until `bytes` have been removed from the tail.
    fn cut_tail(&mut self, mut bytes: u64) {
        while bytes > 0 {
            let last = self.batches.pop().unwrap();
            bytes = bytes.saturating_sub(last.len() as u64);
        }
    }
}

fn check(log: &Log, model: &Model) {
    assert_eq!(log.log_end_offset(), model.log_end_offset());
    assert_eq!(all_records(log), model.batches.concat());
    for b in &model.batches {
        let header = RecordBatchHeader::parse(b).unwrap();
        let read = log.read(header.last_offset(), 1, i64::MAX, true).unwrap();
        assert_eq!(bytes_of(&read), b[..]);
    }
}

fn damage_active_segment(dir: &Path, damage: &Damage, model: &mut Model) {
    let file = log_files(dir).pop().unwrap();
    let len = std::fs::metadata(&file).unwrap().len();
    match damage {
        Damage::None => {}
        Damage::Garbage(bytes) => {
            // A lone zero-length-looking header could be read as a valid prefix only with a
            // matching CRC, which random bytes won't have.
            write_at(&file, bytes, len);
        }
        Damage::CutTail(cut) => {
            if len > 0 {
                let cut = 1 + u64::from(*cut) % len;
                set_len(&file, len - cut);
                model.cut_tail(cut);
            }
        }
        Damage::FlipInLastBatch(at, mask) => {
            if len > 0 {
                let last = model.batches.last().unwrap().len() as u64;
                // Only the CRC-covered part: the base offset, length and epoch are not checked
                // by the CRC (as in Kafka).
                let covered = last - 17;
                let position = len - covered + u64::from(*at) % covered;
                let mut byte = [0u8];
                std::fs::File::open(&file)
                    .unwrap()
                    .read_exact_at(&mut byte, position)
                    .unwrap();
                write_at(&file, &[byte[0] ^ mask], position);
                model.batches.pop();
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn prop_log_matches_model(ops in proptest::collection::vec(op_strategy(), 1..25)) {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_bytes: 1_200,
            index_interval_bytes: 120,
            ..LogConfig::default()
        };
        let mut log = Log::open(dir.path(), config.clone(), false, 0).unwrap();
        let mut model = Model { batches: Vec::new() };
        for op in ops {
            match op {
                Op::Append(shapes) => {
                    let mut records: Vec<u8> =
                        shapes.iter().map(|&(n, size)| batch(n, size)).collect::<Vec<_>>().concat();
                    let info = log.append(&mut records, 1, 0, AppendOrigin::Client).unwrap();
                    prop_assert_eq!(info.first_offset, model.log_end_offset());
                    for (_, range) in BatchIter::new(&records).map(Result::unwrap) {
                        model.batches.push(records[range].to_vec());
                    }
                }
                Op::TruncateTo(fraction) => {
                    let offset = model.log_end_offset() * i64::from(fraction) / 255;
                    log.truncate_to(offset).unwrap();
                    model.batches.retain(|b| RecordBatchHeader::parse(b).unwrap().last_offset() < offset);
                }
                Op::ReopenClean => {
                    log.close().unwrap();
                    log = Log::open(dir.path(), config.clone(), true, 0).unwrap();
                }
                Op::Crash(damage) => {
                    drop(log);
                    // Damage only the active segment's own batches.
                    let active_len = log_files(dir.path()).last().map_or(0, |f| std::fs::metadata(f).unwrap().len());
                    if active_len > 0 {
                        damage_active_segment(dir.path(), &damage, &mut model);
                    }
                    log = Log::open(dir.path(), config.clone(), false, 0).unwrap();
                }
            }
            check(&log, &model);
        }
    }
}

#[test]
fn flush_if_due_flushes_only_unflushed_data_past_flush_ms() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        flush_interval_ms: 100,
        ..LogConfig::default()
    };
    let mut log = Log::open(dir.path(), config, true, 0).unwrap();
    assert!(!log.flush_if_due(1_000).unwrap(), "nothing unflushed yet");
    let mut b = batch(2, 10);
    log.append(&mut b, 0, 1_000, AppendOrigin::Client).unwrap();
    // The append itself flushed (1000 - 0 >= 100); nothing is pending afterwards.
    assert!(!log.flush_if_due(5_000).unwrap());
    let mut b = batch(1, 10);
    log.append(&mut b, 0, 1_050, AppendOrigin::Client).unwrap();
    assert!(
        !log.flush_if_due(1_099).unwrap(),
        "not yet 100 ms since the last flush"
    );
    assert!(log.flush_if_due(1_100).unwrap());
    assert!(!log.flush_if_due(1_200).unwrap(), "already flushed");
}

proptest! {
    /// Any byte budget yields the longest run of whole batches that fits it (or the first
    /// batch alone when it does not fit and `min_one_batch`), within the segment of the
    /// fetch offset: the offset index shortcut must never cut a batch or skip one.
    #[test]
    fn read_budget_yields_longest_whole_batch_prefix(
        count in 1usize..60,
        index_interval_bytes in 1u64..400,
        start_index in 0usize..60,
        max_bytes in 0usize..3_000,
        min_one_batch in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig { segment_bytes: 2_000, index_interval_bytes, ..LogConfig::default() };
        let mut log = Log::open(dir.path(), config, false, 0).unwrap();
        let stored = append_batches(&mut log, count, 0);
        let start_index = start_index % count;
        let start = RecordBatchHeader::parse(&stored[start_index]).unwrap();
        let segment_rest = bytes_of(&log.read(start.base_offset, usize::MAX, i64::MAX, false).unwrap());
        let got = bytes_of(&log.read(start.base_offset, max_bytes, i64::MAX, min_one_batch).unwrap());
        let mut expected = Vec::new();
        for item in BatchIter::new(&segment_rest) {
            let (_, range) = item.unwrap();
            let batch = &segment_rest[range];
            if expected.len() + batch.len() > max_bytes {
                if expected.is_empty() && min_one_batch {
                    expected.extend_from_slice(batch);
                }
                break;
            }
            expected.extend_from_slice(batch);
        }
        prop_assert_eq!(got, expected);
    }
}

proptest! {
    /// `append_batch` (header patched in a copy, written with the untouched body in one
    /// `pwritev`) leaves exactly the same log as `append` (patched in place), across rolls.
    #[test]
    fn append_batch_matches_append(
        shapes in proptest::collection::vec((1usize..5, 0usize..150), 1..30),
        epoch in 0i32..5,
    ) {
        let dir_a = tempfile::tempdir().unwrap();
        let dir_b = tempfile::tempdir().unwrap();
        let mut a = Log::open(dir_a.path(), small_config(), false, 0).unwrap();
        let mut b = Log::open(dir_b.path(), small_config(), false, 0).unwrap();
        for (records, value_bytes) in shapes {
            let original = batch(records, value_bytes);
            let untouched = original.clone();
            let info_a = a.append_batch(&original, epoch, 0, AppendOrigin::Client).unwrap();
            prop_assert_eq!(&original, &untouched, "append_batch must not modify its input");
            let mut copy = original.clone();
            let info_b = b.append(&mut copy, epoch, 0, AppendOrigin::Client).unwrap();
            prop_assert_eq!(info_a, info_b);
        }
        prop_assert_eq!(all_records(&a), all_records(&b));
        let files = |d: &Path| log_files(d).into_iter().map(|f| std::fs::read(f).unwrap()).collect::<Vec<_>>();
        prop_assert_eq!(files(dir_a.path()), files(dir_b.path()));
        drop(a);
        let reopened = Log::open(dir_a.path(), small_config(), false, 0).unwrap();
        prop_assert_eq!(reopened.log_end_offset(), b.log_end_offset());
    }
}

/// Rolling does not fsync; until the background sync has run, a crash rescans the sealed
/// segments above the recovery point too, so damage there is cut off like in the active one.
#[test]
fn unsynced_sealed_segments_are_rescanned_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), false, 0).unwrap();
    let stored = append_batches(&mut log, 30, 0);
    assert!(log_files(dir.path()).len() >= 3, "must roll");
    assert_eq!(log.recovery_point(), 0);
    drop(log); // crash: nothing was synced

    // Damage the last batch of the first (sealed) segment.
    let first_segment = &log_files(dir.path())[0];
    let len = std::fs::metadata(first_segment).unwrap().len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(first_segment)
        .unwrap();
    file.write_all_at(&[0xff], len - 1).unwrap();

    let log = Log::open(dir.path(), small_config(), false, 0).unwrap();
    let kept = all_records(&log);
    assert!(
        kept.len() < len as usize,
        "the damaged batch and everything after it are gone"
    );
    let expected: Vec<u8> = stored.concat()[..kept.len()].to_vec();
    assert_eq!(kept, expected, "what is left is an intact prefix");
    assert_eq!(log.recovery_point(), log.log_end_offset());
}

#[test]
fn background_sync_moves_the_recovery_point_unless_a_truncation_intervened() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), false, 0).unwrap();
    append_batches(&mut log, 30, 0);
    let sync = log
        .sealed_segments_to_sync()
        .expect("sealed segments to sync");
    sync.run().unwrap();
    log.mark_synced(&sync).unwrap();
    let active_base = *log.segment_base_offsets().last().unwrap();
    assert_eq!(log.recovery_point(), active_base);
    assert!(log.sealed_segments_to_sync().is_none());
    let on_disk = std::fs::read_to_string(dir.path().join(RECOVERY_POINT_FILE)).unwrap();
    assert_eq!(on_disk, format!("0\n{active_base}\n"));

    append_batches(&mut log, 30, 0);
    let sync = log.sealed_segments_to_sync().unwrap();
    log.truncate_to(active_base - 1).unwrap();
    let truncated_to = log.log_end_offset();
    assert!(truncated_to < active_base);
    assert_eq!(log.recovery_point(), truncated_to);
    append_batches(&mut log, 30, 0);
    sync.run().unwrap();
    log.mark_synced(&sync).unwrap();
    assert_eq!(
        log.recovery_point(),
        truncated_to,
        "stale sync must not count"
    );
}

fn retention_config(retention_ms: i64, retention_bytes: i64) -> LogConfig {
    LogConfig {
        retention_ms,
        retention_bytes,
        ..small_config()
    }
}

#[test]
fn retention_by_size_deletes_head_segments_and_moves_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), retention_config(-1, 2_500), false, 0).unwrap();
    append_batches(&mut log, 60, 0);
    let leo = log.log_end_offset();
    log.update_high_watermark(leo);
    let segments_before = log.segment_base_offsets().len();
    assert!(segments_before > 4);
    let deleted = log.delete_retained_segments(0).unwrap();
    assert!(deleted > 0);
    assert!(log.size_bytes() >= 2_500, "never below retention.bytes");
    let first = log.segment_base_offsets()[0];
    assert_eq!(log.log_start_offset(), first);
    assert!(
        log.size_bytes() - segment_size(&log, 0) < 2_500,
        "deleted as much as allowed"
    );
    assert!(matches!(
        log.read(first - 1, 100, i64::MAX, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert_eq!(log_files(dir.path()).len(), segments_before - deleted);
    // Nothing more to delete: idempotent.
    assert_eq!(log.delete_retained_segments(0).unwrap(), 0);
}

fn segment_size(log: &Log, index: usize) -> u64 {
    let offsets = log.segment_base_offsets();
    let start = offsets[index];
    let data = log.read(start, usize::MAX, i64::MAX, false).unwrap();
    data.records.size_bytes()
}

#[test]
fn retention_by_time_uses_the_newest_record_and_keeps_the_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    // Batches carry timestamps around 1_000 ms.
    let mut log = Log::open(dir.path(), retention_config(10_000, -1), false, 0).unwrap();
    append_batches(&mut log, 30, 0);
    let leo = log.log_end_offset();
    log.update_high_watermark(leo);
    assert_eq!(
        log.delete_retained_segments(5_000).unwrap(),
        0,
        "not expired yet"
    );
    let deleted = log.delete_retained_segments(1_000_000).unwrap();
    assert_eq!(
        log.segment_base_offsets().len(),
        1,
        "all sealed segments expired"
    );
    assert!(deleted > 0);
    assert_eq!(log.log_end_offset(), leo, "the active segment stays");
    assert_eq!(log.log_start_offset(), log.segment_base_offsets()[0]);
}

#[test]
fn delete_records_moves_the_log_start_durably_and_respects_the_high_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), retention_config(-1, -1), false, 0).unwrap();
    append_batches(&mut log, 30, 0);
    let leo = log.log_end_offset();
    log.update_high_watermark(leo - 5);
    assert!(
        log.delete_records_before(leo, 0).is_err(),
        "beyond the high watermark"
    );
    let target = leo / 2;
    assert_eq!(log.delete_records_before(target, 0).unwrap(), target);
    assert_eq!(log.log_start_offset(), target);
    assert!(log.segment_base_offsets()[0] <= target);
    assert!(matches!(
        log.read(target - 1, 100, i64::MAX, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    // Going backwards is a no-op.
    assert_eq!(log.delete_records_before(1, 0).unwrap(), target);
    drop(log); // crash
    let log = Log::open(dir.path(), retention_config(-1, -1), false, 0).unwrap();
    assert_eq!(log.log_start_offset(), target, "survives a crash");
    log.close().unwrap();
    let log = Log::open(dir.path(), retention_config(-1, -1), true, 0).unwrap();
    assert_eq!(log.log_start_offset(), target, "survives a clean restart");
    assert_eq!(log.epoch_for_offset(target), Some(0));
}
