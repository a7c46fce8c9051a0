//! The broker's two clocks, both in Kafka's unit (milliseconds).
//!
//! * [`now_ms`]: wall-clock time, milliseconds since the Unix epoch (Kafka's
//!   `time.milliseconds()`). For what is *stored or shown*: record and marker timestamps
//!   (`LogAppendTime`), time-based retention and roll, transaction start timestamps, offset
//!   commit times, DescribeQuorum's last-fetch timestamps. It can jump, forwards and backwards.
//! * [`monotonic_ms`]: a clock that never goes back (Kafka's `time.hiResClockMs()`), for every
//!   *interval*: the controller's broker sessions (heartbeat fencing), its periodic work, ISR
//!   lag (`replica.lag.time.max.ms`), the acks=all purgatory's deadlines, fetcher backoff,
//!   AlterPartition retries and timers. It starts at the wall-clock time of the first reading,
//!   so its values look like timestamps, and then moves with `std::time::Instant` only.
//!   Raft itself needs no clock value: its logical clock is the tick task.
//!
//! Test hook (clock jumps in chaos runs, docs/cluster-design.md Q8): after
//! [`set_clock_offset_file`] (the server calls it for `FJORD_TEST_CLOCK_OFFSET_FILE` when
//! `FJORD_TEST_HOOKS=1`), [`now_ms`] adds the signed milliseconds written in that file. The file
//! is re-read at most every [`OFFSET_REFRESH_INTERVAL_MS`] (on the monotonic clock); a missing
//! file means offset 0, unreadable content keeps the previous offset (a writer caught mid-way).
//! [`monotonic_ms`] ignores the offset: that is the point of having two clocks.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// How stale the clock offset read from the test hook's file may get.
pub const OFFSET_REFRESH_INTERVAL_MS: i64 = 100;

/// Largest offset honoured (about 10 years either way); anything bigger is ignored as garbage.
const OFFSET_ABS_MAX_MS: i64 = 10 * 366 * 24 * 3600 * 1000;

/// Milliseconds since the Unix epoch as the system clock says, without any test offset; 0 if
/// the clock reads before 1970.
pub fn system_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Wall-clock milliseconds since the Unix epoch, shifted by the test hook's offset if one is
/// installed. Use for timestamps, never to measure intervals (see the module docs).
pub fn now_ms() -> i64 {
    let system = system_now_ms();
    match OFFSET.get() {
        None => system,
        Some(offset) => system.saturating_add(offset.current_ms()),
    }
}

/// Monotonic milliseconds: never decreases within the process, unaffected by wall-clock jumps
/// (and by the test offset). Starts at the wall-clock time of the first call.
pub fn monotonic_ms() -> i64 {
    let origin = MONOTONIC_ORIGIN.get_or_init(|| (Instant::now(), system_now_ms()));
    let elapsed_ms = i64::try_from(origin.0.elapsed().as_millis()).unwrap_or(i64::MAX);
    origin.1.saturating_add(elapsed_ms)
}

static MONOTONIC_ORIGIN: OnceLock<(Instant, i64)> = OnceLock::new();
static OFFSET: OnceLock<OffsetFile> = OnceLock::new();

/// Installs the clock-jump test hook: from now on [`now_ms`] adds the milliseconds written in
/// `path` (an integer, optionally signed, surrounded by whitespace). Once per process; `false`
/// if a file was installed already.
pub fn set_clock_offset_file(path: PathBuf) -> bool {
    let file = OffsetFile::new(path);
    file.refresh(monotonic_ms());
    OFFSET.set(file).is_ok()
}

/// The offset [`now_ms`] currently applies (0 without the test hook).
pub fn clock_offset_ms() -> i64 {
    OFFSET.get().map_or(0, OffsetFile::current_ms)
}

/// The test hook's state: the cached offset and when to read the file again.
struct OffsetFile {
    path: PathBuf,
    offset_ms: AtomicI64,
    next_read_ms: AtomicI64,
    reading: AtomicBool,
}

impl OffsetFile {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            offset_ms: AtomicI64::new(0),
            next_read_ms: AtomicI64::new(i64::MIN),
            reading: AtomicBool::new(false),
        }
    }

    /// The cached offset, re-read first when it is older than the refresh interval. One caller
    /// reads the file; the others use the cached value meanwhile.
    fn current_ms(&self) -> i64 {
        let now = monotonic_ms();
        if now >= self.next_read_ms.load(Ordering::Acquire)
            && self
                .reading
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.refresh(now);
            self.reading.store(false, Ordering::Release);
        }
        self.offset_ms.load(Ordering::Acquire)
    }

    fn refresh(&self, now_monotonic_ms: i64) {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => {
                if let Some(offset) = parse_offset(&text) {
                    self.offset_ms.store(offset, Ordering::Release);
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                self.offset_ms.store(0, Ordering::Release);
            }
            Err(_) => {}
        }
        self.next_read_ms.store(
            now_monotonic_ms.saturating_add(OFFSET_REFRESH_INTERVAL_MS),
            Ordering::Release,
        );
    }
}

/// The offset written in the hook's file: one decimal integer of at most
/// `OFFSET_ABS_MAX_MS` in magnitude; `None` for anything else.
fn parse_offset(text: &str) -> Option<i64> {
    let text = text.trim();
    if text.is_empty() {
        return Some(0);
    }
    text.parse::<i64>()
        .ok()
        .filter(|offset| offset.unsigned_abs() <= OFFSET_ABS_MAX_MS.unsigned_abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_never_goes_back_and_starts_near_the_wall_clock() {
        let first = monotonic_ms();
        assert!((first - system_now_ms()).abs() < 60_000);
        let mut last = first;
        for _ in 0..1000 {
            let now = monotonic_ms();
            assert!(now >= last);
            last = now;
        }
    }

    #[test]
    fn offsets_parse_signed_and_refuse_garbage() {
        assert_eq!(parse_offset("5000\n"), Some(5000));
        assert_eq!(parse_offset("  -20000 "), Some(-20000));
        assert_eq!(parse_offset(""), Some(0));
        assert_eq!(parse_offset("12abc"), None);
        assert_eq!(parse_offset("1.5"), None);
        assert_eq!(parse_offset(&i64::MAX.to_string()), None);
    }

    #[test]
    fn the_offset_file_shifts_the_wall_clock_and_not_the_monotonic_one() {
        // Exercised on a private OffsetFile: the process-wide hook is set once and would leak
        // into every other test of the crate.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clock-offset");
        let file = OffsetFile::new(path.clone());
        assert_eq!(file.current_ms(), 0, "missing file: no offset");
        std::fs::write(&path, "3600000").unwrap();
        file.refresh(monotonic_ms());
        assert_eq!(file.current_ms(), 3_600_000);
        std::fs::write(&path, "-7200000").unwrap();
        file.refresh(monotonic_ms());
        assert_eq!(file.current_ms(), -7_200_000);
        std::fs::write(&path, "garbage").unwrap();
        file.refresh(monotonic_ms());
        assert_eq!(
            file.current_ms(),
            -7_200_000,
            "unreadable content keeps the offset"
        );
        std::fs::remove_file(&path).unwrap();
        file.refresh(monotonic_ms());
        assert_eq!(file.current_ms(), 0, "a removed file heals the clock");
    }

    #[test]
    fn the_file_is_read_again_only_after_the_refresh_interval() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clock-offset");
        std::fs::write(&path, "1000").unwrap();
        let file = OffsetFile::new(path.clone());
        assert_eq!(file.current_ms(), 1000);
        // Pretend the last read was just now and far from due: a new value is not seen yet.
        file.next_read_ms.store(i64::MAX, Ordering::Release);
        std::fs::write(&path, "2000").unwrap();
        assert_eq!(file.current_ms(), 1000);
        // Due again: the new value is read.
        file.next_read_ms.store(i64::MIN, Ordering::Release);
        assert_eq!(file.current_ms(), 2000);
    }
}
