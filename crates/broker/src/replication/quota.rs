//! Replication throttles (Kafka `ReplicationQuotaManager`, KIP-73): a byte-rate quota on the
//! replication traffic of *throttled* replicas, one for the leader side (responses to follower
//! fetches, `leader.replication.throttled.rate`) and one for the follower side (what the
//! fetcher asks for, `follower.replication.throttled.rate`).
//!
//! Which replicas are throttled is a topic config: `leader.replication.throttled.replicas` /
//! `follower.replication.throttled.replicas`, a list of `partition:broker` entries or `*`
//! ([`ThrottledReplicas`], Kafka `parseThrottledPartitions`: a broker keeps the partitions
//! listed with its own id). Kafka's rules, kept by the callers:
//! - every byte of a throttled partition is recorded, exceeded or not (`record`);
//! - the leader holds back (answers without records) a throttled partition for a follower
//!   that is *not in the ISR* while the quota is exceeded (`shouldLeaderThrottle`), so ISR
//!   members never fall out of sync because of a throttle;
//! - the follower leaves a throttled partition out of its fetch while the quota is exceeded
//!   and the partition is not caught up (`shouldFollowerThrottle`).
//!
//! Kafka measures a rate over a window of samples; this is a token bucket of one second's
//! worth of bytes that may go into debt (recording ignores the quota, as Kafka's), so the
//! long-run rate is the configured one and a burst is at most one second of it plus one
//! response. Pure: time comes in as `now_ms` (a monotonic clock in the shell).

use std::collections::BTreeSet;

/// Kafka's "no throttle" value for the rates (`Long.MAX_VALUE`, `QuotaConfig`).
pub const UNLIMITED_RATE_BYTES_PER_S: u64 = i64::MAX as u64;

/// How many seconds of the rate the bucket holds (the largest burst after an idle period).
const BURST_S: f64 = 1.0;

/// A topic's throttled replicas config, as one broker reads it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ThrottledReplicas {
    /// Empty or unset.
    #[default]
    None,
    /// `*`: every partition of the topic, on every broker.
    All,
    /// The partitions listed with this broker's id.
    Partitions(BTreeSet<i32>),
}

impl ThrottledReplicas {
    /// Parses `value` for broker `broker_id` (Kafka `ThrottledReplicaListValidator` and
    /// `parseThrottledPartitions`): `""`, `*`, or `partition:broker,...`.
    pub fn parse(value: &str, broker_id: i32) -> Result<Self, String> {
        let value = value.trim();
        if value.is_empty() {
            return Ok(ThrottledReplicas::None);
        }
        if value == "*" {
            return Ok(ThrottledReplicas::All);
        }
        let mut partitions = BTreeSet::new();
        for entry in value.split(',') {
            let (partition, broker) = parse_entry(entry.trim()).ok_or_else(|| {
                format!(
                    "{value} must be the literal '*' or a list of replicas in the form \
                     [PartitionId]:[BrokerId],[PartitionId]:[BrokerId],..."
                )
            })?;
            if broker == broker_id {
                partitions.insert(partition);
            }
        }
        Ok(ThrottledReplicas::Partitions(partitions))
    }

    /// Whether `partition` is throttled on this broker.
    pub fn contains(&self, partition: i32) -> bool {
        match self {
            ThrottledReplicas::None => false,
            ThrottledReplicas::All => true,
            ThrottledReplicas::Partitions(set) => set.contains(&partition),
        }
    }
}

fn parse_entry(entry: &str) -> Option<(i32, i32)> {
    let (partition, broker) = entry.split_once(':')?;
    let partition: i32 = partition.trim().parse().ok()?;
    let broker: i32 = broker.trim().parse().ok()?;
    (partition >= 0 && broker >= 0).then_some((partition, broker))
}

/// Checks a throttled replicas value without a broker in mind (topic config validation).
pub fn validate_throttled_replicas(value: &str) -> Result<(), String> {
    ThrottledReplicas::parse(value, -1).map(|_| ())
}

/// The token bucket of one side's quota, with the accounting the metrics show.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicationQuota {
    /// Bytes that may still go out; negative while in debt (= quota exceeded).
    available_bytes: f64,
    last_refill_ms: i64,
    /// Bytes recorded (throttled partitions' traffic).
    recorded_bytes: u64,
    /// Total time the quota was (or, up to `exceeded_until_ms`, will be) exceeded.
    exceeded_ms: i64,
    /// When the current debt is paid off at the current rate.
    exceeded_until_ms: i64,
}

impl ReplicationQuota {
    pub fn new(now_ms: i64) -> Self {
        Self {
            available_bytes: 0.0,
            last_refill_ms: now_ms,
            recorded_bytes: 0,
            exceeded_ms: 0,
            exceeded_until_ms: now_ms,
        }
    }

    fn refill(&mut self, now_ms: i64, rate_bytes_per_s: u64) {
        let elapsed_ms = now_ms.saturating_sub(self.last_refill_ms).max(0);
        self.last_refill_ms = self.last_refill_ms.max(now_ms);
        if rate_bytes_per_s >= UNLIMITED_RATE_BYTES_PER_S {
            // No quota: nothing is owed; a later limit starts from an empty bucket.
            self.available_bytes = 0.0;
            return;
        }
        let rate = rate_bytes_per_s as f64;
        self.available_bytes =
            (self.available_bytes + rate * elapsed_ms as f64 / 1000.0).min(rate * BURST_S);
    }

    /// Kafka `ReplicaQuota.record`: counts `bytes` of throttled traffic, exceeded or not.
    pub fn record(&mut self, bytes: u64, now_ms: i64, rate_bytes_per_s: u64) {
        self.recorded_bytes = self.recorded_bytes.saturating_add(bytes);
        self.refill(now_ms, rate_bytes_per_s);
        if rate_bytes_per_s >= UNLIMITED_RATE_BYTES_PER_S {
            return;
        }
        self.available_bytes -= bytes as f64;
        if self.available_bytes < 0.0 {
            let rate = (rate_bytes_per_s.max(1)) as f64;
            let debt_ms = (-self.available_bytes * 1000.0 / rate).ceil();
            let until_ms = now_ms.saturating_add(debt_ms.min(i64::MAX as f64) as i64);
            let from_ms = now_ms.max(self.exceeded_until_ms);
            if until_ms > from_ms {
                self.exceeded_ms = self.exceeded_ms.saturating_add(until_ms - from_ms);
            }
            self.exceeded_until_ms = self.exceeded_until_ms.max(until_ms);
        }
    }

    /// Kafka `ReplicaQuota.isQuotaExceeded`.
    pub fn is_exceeded(&mut self, now_ms: i64, rate_bytes_per_s: u64) -> bool {
        if rate_bytes_per_s >= UNLIMITED_RATE_BYTES_PER_S {
            return false;
        }
        self.refill(now_ms, rate_bytes_per_s);
        self.available_bytes < 0.0
    }

    /// Bytes recorded so far.
    pub fn recorded_bytes(&self) -> u64 {
        self.recorded_bytes
    }

    /// Milliseconds the quota has been exceeded up to `now_ms`.
    pub fn exceeded_ms(&self, now_ms: i64) -> i64 {
        let ahead_ms = self.exceeded_until_ms.saturating_sub(now_ms).max(0);
        self.exceeded_ms.saturating_sub(ahead_ms).max(0)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn throttled_replicas_parse_like_kafka() {
        assert_eq!(ThrottledReplicas::parse("", 1), Ok(ThrottledReplicas::None));
        assert_eq!(
            ThrottledReplicas::parse(" * ", 1),
            Ok(ThrottledReplicas::All)
        );
        let parsed = ThrottledReplicas::parse("0:1,1:2, 2:1", 1).unwrap();
        assert!(parsed.contains(0) && parsed.contains(2) && !parsed.contains(1));
        let other = ThrottledReplicas::parse("0:1,1:2,2:1", 3).unwrap();
        assert!(!other.contains(0) && !other.contains(1));
        assert!(ThrottledReplicas::All.contains(7));
        assert!(!ThrottledReplicas::None.contains(0));
        for bad in ["0", "a:1", "0:1,", "1:-2", "*,0:1"] {
            assert!(validate_throttled_replicas(bad).is_err(), "{bad}");
        }
        assert!(validate_throttled_replicas("0:1,1:2").is_ok());
    }

    #[test]
    fn unlimited_is_never_exceeded_but_still_records() {
        let mut quota = ReplicationQuota::new(0);
        quota.record(1 << 40, 0, UNLIMITED_RATE_BYTES_PER_S);
        assert!(!quota.is_exceeded(0, UNLIMITED_RATE_BYTES_PER_S));
        assert_eq!(quota.recorded_bytes(), 1 << 40);
        assert_eq!(quota.exceeded_ms(10_000), 0);
    }

    #[test]
    fn debt_is_paid_off_at_the_rate() {
        let mut quota = ReplicationQuota::new(0);
        // 1000 B/s: one second of idle time fills the bucket to 1000 bytes.
        assert!(!quota.is_exceeded(1_000, 1_000));
        quota.record(3_000, 1_000, 1_000);
        assert!(quota.is_exceeded(1_000, 1_000));
        // 2000 bytes of debt take two seconds.
        assert!(quota.is_exceeded(2_999, 1_000));
        assert!(!quota.is_exceeded(3_000, 1_000));
        assert_eq!(quota.exceeded_ms(3_000), 2_000);
        assert_eq!(
            quota.exceeded_ms(2_000),
            1_000,
            "no time counted ahead of now"
        );
        // Raising the rate to unlimited lifts the throttle at once.
        quota.record(10_000, 3_000, 1_000);
        assert!(quota.is_exceeded(3_000, 1_000));
        assert!(!quota.is_exceeded(3_000, UNLIMITED_RATE_BYTES_PER_S));
    }

    proptest! {
        /// Bytes sent only while the quota is not exceeded stay within the rate times the
        /// elapsed time, plus the burst and the last (unchecked) response.
        #[test]
        fn long_run_rate_stays_within_the_quota(
            rate in 1_000u64..100_000,
            sends in proptest::collection::vec((0i64..50, 1u64..20_000), 1..200),
        ) {
            let mut quota = ReplicationQuota::new(0);
            let mut now_ms = 0i64;
            let mut sent = 0u64;
            let mut largest = 0u64;
            for (step_ms, bytes) in sends {
                now_ms += step_ms;
                if !quota.is_exceeded(now_ms, rate) {
                    quota.record(bytes, now_ms, rate);
                    sent += bytes;
                    largest = largest.max(bytes);
                }
            }
            let allowed = rate as f64 * (now_ms as f64 / 1000.0 + BURST_S) + largest as f64;
            prop_assert!(sent as f64 <= allowed, "sent {sent} > allowed {allowed}");
            prop_assert!(quota.exceeded_ms(now_ms) <= now_ms);
        }
    }
}
