//! Kafka's metrics `Rate` over a `SampledStat` (`WindowedSum`), the measurement every client
//! quota is checked against, with injected time.
//!
//! A rate keeps `samples + 1` samples (one extra for the sample overlapping the window's
//! start); a sample is complete once it is `window_ms` old, and recording into a complete one
//! advances to the next, recycling the oldest. Samples without an event for
//! `samples * window_ms` are reset before every measurement (Kafka's
//! `purgeObsoleteSamples`). The rate is the sum of the samples divided by the elapsed window,
//! which counts at least `samples - 1` full windows (so a burst after idleness is spread over
//! the whole quota window instead of the first milliseconds of a sample).

/// `quota.window.num` samples of `quota.window.size.seconds` each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateConfig {
    pub samples: u32,
    pub window_ms: i64,
}

impl RateConfig {
    /// Kafka's defaults: 11 samples of 1 s.
    pub const KAFKA_DEFAULT: RateConfig = RateConfig {
        samples: 11,
        window_ms: 1000,
    };

    pub fn new(samples: u32, window_ms: i64) -> Self {
        assert!(samples >= 1, "a rate needs at least one sample");
        assert!(window_ms >= 1, "a sample window is at least 1 ms");
        Self { samples, window_ms }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Sample {
    value: f64,
    event_count: u64,
    start_ms: i64,
    last_event_ms: i64,
}

impl Sample {
    fn new(now_ms: i64) -> Self {
        Self {
            value: 0.0,
            event_count: 0,
            start_ms: now_ms,
            last_event_ms: now_ms,
        }
    }

    fn reset(&mut self, now_ms: i64) {
        *self = Self::new(now_ms);
    }

    fn is_complete(&self, now_ms: i64, config: &RateConfig) -> bool {
        now_ms.saturating_sub(self.start_ms) >= config.window_ms
    }
}

/// Kafka `Rate(TimeUnit.SECONDS, new WindowedSum())`: units per second.
#[derive(Clone, Debug, Default)]
pub struct Rate {
    /// At most `config.samples + 1` entries.
    samples: Vec<Sample>,
    current: usize,
}

impl Rate {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `value` at `now_ms` (negative values "unrecord", as Kafka's fetch quota does).
    pub fn record(&mut self, config: &RateConfig, value: f64, now_ms: i64) {
        if self.samples.is_empty() {
            self.samples.push(Sample::new(now_ms));
            self.current = 0;
        }
        if self.samples[self.current].is_complete(now_ms, config) {
            self.advance(config, now_ms);
        }
        let sample = &mut self.samples[self.current];
        sample.value += value;
        sample.event_count += 1;
        sample.last_event_ms = now_ms;
    }

    fn advance(&mut self, config: &RateConfig, now_ms: i64) {
        let samples_max = config.samples as usize + 1;
        self.current = (self.current + 1) % samples_max;
        if self.current >= self.samples.len() {
            self.samples.push(Sample::new(now_ms));
            self.current = self.samples.len() - 1;
        } else {
            self.samples[self.current].reset(now_ms);
        }
        debug_assert!(self.samples.len() <= samples_max);
    }

    fn purge_obsolete_samples(&mut self, config: &RateConfig, now_ms: i64) {
        let expire_age_ms = i64::from(config.samples).saturating_mul(config.window_ms);
        for sample in &mut self.samples {
            if now_ms.saturating_sub(sample.last_event_ms) >= expire_age_ms {
                sample.reset(now_ms);
            }
        }
    }

    /// Kafka `Rate.windowSize`: the elapsed time the sum is spread over, at least
    /// `samples - 1` full windows and at least 1 ms.
    pub fn window_size_ms(&mut self, config: &RateConfig, now_ms: i64) -> i64 {
        self.purge_obsolete_samples(config, now_ms);
        let oldest_start_ms = self
            .samples
            .iter()
            .map(|s| s.start_ms)
            .min()
            .unwrap_or(now_ms);
        let mut elapsed_ms = now_ms.saturating_sub(oldest_start_ms);
        let full_windows = elapsed_ms / config.window_ms;
        let full_windows_min = i64::from(config.samples) - 1;
        if full_windows < full_windows_min {
            elapsed_ms += (full_windows_min - full_windows) * config.window_ms;
        }
        elapsed_ms.max(1)
    }

    /// Units per second at `now_ms` (Kafka `Rate.measure`).
    pub fn measure(&mut self, config: &RateConfig, now_ms: i64) -> f64 {
        self.purge_obsolete_samples(config, now_ms);
        let sum: f64 = self.samples.iter().map(|s| s.value).sum();
        sum / (self.window_size_ms(config, now_ms) as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: RateConfig = RateConfig::KAFKA_DEFAULT;

    #[test]
    fn a_first_burst_is_spread_over_the_whole_quota_window() {
        let mut rate = Rate::new();
        rate.record(&CONFIG, 10_000.0, 5_000);
        // 10 full windows are assumed: 10_000 bytes / 10 s.
        assert_eq!(rate.window_size_ms(&CONFIG, 5_000), 10_000);
        assert!((rate.measure(&CONFIG, 5_000) - 1_000.0).abs() < 1e-9);
        // 500 ms later: 10.5 s.
        assert!((rate.measure(&CONFIG, 5_500) - 10_000.0 / 10.5).abs() < 1e-9);
    }

    #[test]
    fn samples_rotate_and_old_ones_expire() {
        let mut rate = Rate::new();
        for second in 0..30 {
            rate.record(&CONFIG, 100.0, second * 1000);
        }
        // 12 samples kept (11 + the overlapping one); the one of t=18 s is 11 s old at
        // t=29 s and purged: 1100 bytes over the 10 s since t=19 s.
        let measured = rate.measure(&CONFIG, 29_000);
        assert!((measured - 110.0).abs() < 1e-9, "{measured}");
        // After 11 idle windows everything is purged.
        assert_eq!(rate.measure(&CONFIG, 29_000 + 11_000), 0.0);
    }

    #[test]
    fn unrecording_brings_the_sum_back() {
        let mut rate = Rate::new();
        rate.record(&CONFIG, 500.0, 0);
        let before = rate.measure(&CONFIG, 100);
        rate.record(&CONFIG, 300.0, 100);
        rate.record(&CONFIG, -300.0, 100);
        assert!((rate.measure(&CONFIG, 100) - before).abs() < 1e-9);
    }
}
