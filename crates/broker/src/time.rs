//! Wall-clock time in Kafka's unit (milliseconds since the Unix epoch).

/// Milliseconds since the Unix epoch; 0 if the clock reads before 1970.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
