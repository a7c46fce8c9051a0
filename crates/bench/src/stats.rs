//! Latency histograms, throughput summaries and wall-clock helpers.

use std::time::{SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency the histograms track: 10 minutes, in microseconds.
const MAX_TRACKABLE_US: u64 = 600_000_000;

/// A fresh latency histogram in microseconds (3 significant digits).
pub fn new_histogram() -> Histogram<u64> {
    // Constant, valid bounds (1 µs .. 10 min, 3 significant figures): this cannot fail.
    Histogram::new_with_bounds(1, MAX_TRACKABLE_US, 3).expect("constant histogram bounds are valid")
}

/// Nanoseconds since the Unix epoch on this machine's realtime clock. Producers embed this in
/// the first 8 bytes of every payload; consumers and delivery callbacks subtract it.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The send timestamp embedded in a payload, if the payload is long enough.
pub fn read_timestamp(payload: Option<&[u8]>) -> Option<u64> {
    let bytes: [u8; 8] = payload?.get(..8)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// Records `now - sent` (clamped at 0) in microseconds.
pub fn record_latency(h: &mut Histogram<u64>, sent_ns: u64, now_ns: u64) {
    let us = now_ns.saturating_sub(sent_ns) / 1_000;
    h.saturating_record(us.max(1));
}

/// Latency percentiles in milliseconds.
#[derive(Clone, Debug, Serialize)]
pub struct Percentiles {
    /// Samples recorded.
    pub count: u64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
}

/// Summarises a microsecond histogram; `None` when it is empty.
pub fn summarize(h: &Histogram<u64>) -> Option<Percentiles> {
    if h.is_empty() {
        return None;
    }
    let ms = |us: u64| us as f64 / 1_000.0;
    Some(Percentiles {
        count: h.len(),
        mean_ms: h.mean() / 1_000.0,
        p50_ms: ms(h.value_at_quantile(0.50)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        p999_ms: ms(h.value_at_quantile(0.999)),
        max_ms: ms(h.max()),
    })
}

/// Messages and bytes moved over a time window.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Throughput {
    /// Messages (acknowledged, for produce; received, for consume).
    pub msgs: u64,
    /// Payload bytes.
    pub bytes: u64,
    /// Length of the measured window in seconds.
    pub secs: f64,
    /// Messages per second.
    pub msgs_per_s: f64,
    /// Payload MB (10^6 bytes) per second.
    pub mb_per_s: f64,
    /// Failed deliveries (produce) or consumer errors (consume).
    pub errors: u64,
    /// The first error seen, if any.
    pub first_error: Option<String>,
}

impl Throughput {
    /// A throughput over `secs` seconds (rates are 0 for an empty window).
    pub fn new(msgs: u64, bytes: u64, secs: f64, errors: u64, first_error: Option<String>) -> Self {
        let (msgs_per_s, mb_per_s) = if secs > 0.0 {
            (msgs as f64 / secs, bytes as f64 / secs / 1e6)
        } else {
            (0.0, 0.0)
        };
        Throughput {
            msgs,
            bytes,
            secs,
            msgs_per_s,
            mb_per_s,
            errors,
            first_error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_roundtrip() {
        let mut buf = vec![0u8; 16];
        buf[..8].copy_from_slice(&1234u64.to_le_bytes());
        assert_eq!(read_timestamp(Some(&buf)), Some(1234));
        assert_eq!(read_timestamp(Some(&buf[..4])), None);
        assert_eq!(read_timestamp(None), None);
    }

    #[test]
    fn percentiles() {
        let mut h = new_histogram();
        for i in 1..=1000u64 {
            record_latency(&mut h, 0, i * 1_000_000);
        }
        let p = summarize(&h).expect("non-empty");
        assert_eq!(p.count, 1000);
        assert!((p.p50_ms - 500.0).abs() < 1.0);
        assert!((p.max_ms - 1000.0).abs() < 1.0);
        assert!(summarize(&new_histogram()).is_none());
    }

    #[test]
    fn throughput_rates() {
        let t = Throughput::new(10, 2_000_000, 2.0, 0, None);
        assert_eq!(t.msgs_per_s, 5.0);
        assert_eq!(t.mb_per_s, 1.0);
        assert_eq!(Throughput::new(1, 1, 0.0, 0, None).mb_per_s, 0.0);
    }
}
