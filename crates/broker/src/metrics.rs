//! Broker metrics in the Prometheus text exposition format (0.0.4), hand-written: atomic
//! counters and gauges, fixed-bucket histograms, and a renderer.
//!
//! Hot paths only touch atomics: per-API statistics sit in a fixed array indexed by API key and
//! error code, per-topic traffic in counters every [`crate::partition::Partition`] owns (summed
//! per topic at scrape time). Everything derived from state (log sizes and offsets, consumer
//! group lag, topic counts) is computed when `/metrics` is scraped.
//!
//! Per-topic, per-partition and per-group families can grow with what clients create, so a
//! scrape emits at most [`LABELLED_SERIES_PER_SCRAPE_MAX`] of their series; the rest are
//! counted in `fjord_metrics_series_dropped_total`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fjord_protocol::{ApiKey, ResponseError, ResponseKind};

mod error_counts;
mod process;

pub use error_counts::{error_counts, for_each_error_code};

/// Series of per-topic, per-partition and per-group families one scrape may emit.
pub const LABELLED_SERIES_PER_SCRAPE_MAX: usize = 50_000;

/// API keys with their own slot (Kafka's keys are below 100); larger ones share the last.
const API_KEY_SLOTS: usize = 100;
/// Error codes -1..=158 have their own slot; others share the last (Kafka's go to ~130).
const ERROR_CODE_SLOTS: usize = 160;

/// Histogram bucket upper bounds, in seconds (Prometheus' `le`).
pub const DURATION_BUCKETS_SECONDS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The same bounds in nanoseconds, so an observation is placed by integer comparisons.
const DURATION_BUCKETS_NS: [u64; 16] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// Every log flush (fsync) the broker does. Process-wide like Kafka's `LogFlushStats`: flushes
/// happen deep inside partitions, which should not need a handle to the broker's metrics.
pub static LOG_FLUSH_DURATION: Histogram = Histogram::new();

/// Kafka's `IsrShrinksPerSec`: ISR shrinks the controller accepted from this broker as leader
/// (counted when the AlterPartition answer commits a proposed shrink). Process-wide like
/// [`LOG_FLUSH_DURATION`] and for the same reason: the answer is applied inside a partition.
/// One broker per process in production; in-process test clusters share it.
pub static ISR_SHRINKS: Counter = Counter::new();

/// Kafka's `IsrExpandsPerSec`: ISR expansions the controller accepted from this broker as
/// leader (see [`ISR_SHRINKS`]).
pub static ISR_EXPANDS: Counter = Counter::new();

#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub const fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub const fn new() -> Self {
        Self(AtomicI64::new(0))
    }

    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Decrements a gauge when dropped: a parked request counts until it leaves, however it ends
/// (answered, timed out, or its connection dropped).
pub struct GaugeGuard<'a>(&'a Gauge);

impl<'a> GaugeGuard<'a> {
    pub fn enter(gauge: &'a Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A duration histogram over [`DURATION_BUCKETS_SECONDS`]. Buckets are stored per bucket (not
/// cumulative) so an observation is one increment; the renderer accumulates.
#[derive(Debug)]
pub struct Histogram {
    /// `buckets[i]`: observations in `(bound[i-1], bound[i]]`; the last is above every bound.
    buckets: [AtomicU64; DURATION_BUCKETS_NS.len() + 1],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

/// A histogram's state at one instant, buckets cumulative as Prometheus expects.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `cumulative[i]`: observations `<= DURATION_BUCKETS_SECONDS[i]`; the last one is `+Inf`.
    pub cumulative: [u64; DURATION_BUCKETS_NS.len() + 1],
    pub sum_seconds: f64,
    pub count: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    pub const fn new() -> Self {
        Self {
            buckets: [const { AtomicU64::new(0) }; DURATION_BUCKETS_NS.len() + 1],
            count: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, duration: Duration) {
        let ns = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        let index = DURATION_BUCKETS_NS.partition_point(|bound| *bound < ns);
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = [0u64; DURATION_BUCKETS_NS.len() + 1];
        let mut running = 0u64;
        for (slot, bucket) in cumulative.iter_mut().zip(&self.buckets) {
            running = running.saturating_add(bucket.load(Ordering::Relaxed));
            *slot = running;
        }
        // `_count` equals the `+Inf` bucket, as Prometheus requires, even while observations
        // race with the scrape.
        HistogramSnapshot {
            cumulative,
            sum_seconds: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
            count: running,
        }
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// One API's request statistics.
struct ApiStats {
    requests: Counter,
    duration: Histogram,
    errors: [Counter; ERROR_CODE_SLOTS],
}

impl ApiStats {
    fn new() -> Self {
        Self {
            requests: Counter::new(),
            duration: Histogram::new(),
            errors: [const { Counter::new() }; ERROR_CODE_SLOTS],
        }
    }
}

/// Traffic of one partition, counted by Produce and Fetch; summed per topic at scrape.
/// As Kafka's `BytesInPerSec`/`BytesOutPerSec`, the client counters leave replication out:
/// that goes to `replication_bytes_in` (records a follower fetched from its leader) and
/// `replication_bytes_out` (records a leader sent to followers).
#[derive(Debug, Default)]
pub struct PartitionTraffic {
    pub bytes_in: Counter,
    pub messages_in: Counter,
    pub bytes_out: Counter,
    pub messages_out: Counter,
    pub replication_bytes_in: Counter,
    pub replication_bytes_out: Counter,
}

/// The broker's own metrics (the rest is computed at scrape time).
pub struct BrokerMetrics {
    api: Box<[ApiStats]>,
    /// Open Kafka connections.
    pub connections: Gauge,
    pub connections_accepted: Counter,
    /// Closed at accept because `max.connections` were open.
    pub connections_rejected: Counter,
    /// Fetches parked until data arrives or `max_wait_ms` passes.
    pub fetch_purgatory: Gauge,
    /// Produce requests waiting for replication: always 0 on a single node.
    pub produce_purgatory: Gauge,
    series_dropped: Counter,
    started: Instant,
    start_time_unix_seconds: f64,
    /// SASL authentications by mechanism and result (shared with every connection's
    /// `SaslServerAuthenticator`).
    pub sasl: std::sync::Arc<SaslMetrics>,
}

/// Rendered as `fjord_sasl_authentications_total{mechanism,result}`.
pub use fjord_sasl::SaslMetrics;

impl Default for BrokerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

fn api_slot(api_key: i16) -> usize {
    usize::try_from(api_key)
        .unwrap_or(API_KEY_SLOTS - 1)
        .min(API_KEY_SLOTS - 1)
}

fn error_slot(code: i16) -> usize {
    usize::try_from(i32::from(code) + 1)
        .unwrap_or(ERROR_CODE_SLOTS - 1)
        .min(ERROR_CODE_SLOTS - 1)
}

fn code_of_slot(slot: usize) -> i16 {
    i16::try_from(slot).unwrap_or(i16::MAX) - 1
}

impl BrokerMetrics {
    pub fn new() -> Self {
        Self {
            api: (0..API_KEY_SLOTS).map(|_| ApiStats::new()).collect(),
            connections: Gauge::new(),
            connections_accepted: Counter::new(),
            connections_rejected: Counter::new(),
            fetch_purgatory: Gauge::new(),
            produce_purgatory: Gauge::new(),
            series_dropped: Counter::new(),
            sasl: std::sync::Arc::default(),
            started: Instant::now(),
            start_time_unix_seconds: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        }
    }

    /// One request answered (or closed on): counts it and its duration, from decoded to
    /// written. Error codes are counted separately ([`BrokerMetrics::count_errors`]) because
    /// the response is consumed by writing it.
    pub fn record_request(&self, api_key: ApiKey, duration: Duration) {
        let stats = &self.api[api_slot(api_key as i16)];
        stats.requests.inc();
        stats.duration.observe(duration);
    }

    /// Every error code in `response` (Kafka's `errorCounts()`), under its API.
    pub fn count_errors(&self, api_key: ApiKey, response: &ResponseKind) {
        let stats = &self.api[api_slot(api_key as i16)];
        for_each_error_code(response, &mut |code| stats.errors[error_slot(code)].inc());
    }

    /// A request the connection refused before any handler saw it (e.g. an unsupported
    /// version): counted with its error, without a duration.
    pub fn record_rejected_request(&self, api_key: ApiKey, error: ResponseError) {
        let stats = &self.api[api_slot(api_key as i16)];
        stats.requests.inc();
        stats.errors[error_slot(error.code())].inc();
    }

    pub fn requests(&self, api_key: ApiKey) -> u64 {
        self.api[api_slot(api_key as i16)].requests.get()
    }

    pub fn errors(&self, api_key: ApiKey, error: ResponseError) -> u64 {
        self.api[api_slot(api_key as i16)].errors[error_slot(error.code())].get()
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

/// Kafka's upper-snake error name (`UNKNOWN_TOPIC_OR_PARTITION`) for a non-zero code.
pub fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".to_string(),
        Some(ResponseError::Unknown(code)) => format!("UNKNOWN_ERROR_CODE_{code}"),
        Some(error) => upper_snake(&format!("{error:?}")),
    }
}

fn upper_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// Kafka's API name as `ApiKey`'s Debug writes it (`Produce`, `ListOffsets`).
pub fn api_name(api_key: ApiKey) -> String {
    format!("{api_key:?}")
}

// ------------------------------------------------------------------------------- rendering

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
}

impl MetricType {
    fn name(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
        }
    }
}

/// Writes the text exposition format. Samples of one family must be written together, right
/// after its [`TextEncoder::family`] call; writing a family's header twice is a no-op, so a
/// family's HELP and TYPE appear once.
pub struct TextEncoder {
    out: String,
    families: std::collections::HashSet<&'static str>,
    labelled_series_left: usize,
    labelled_series_dropped: u64,
}

impl TextEncoder {
    pub fn new(labelled_series_max: usize) -> Self {
        Self {
            out: String::with_capacity(16 * 1024),
            families: std::collections::HashSet::new(),
            labelled_series_left: labelled_series_max,
            labelled_series_dropped: 0,
        }
    }

    pub fn family(&mut self, name: &'static str, help: &str, kind: MetricType) {
        if !self.families.insert(name) {
            return;
        }
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.name());
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        write_labels(&mut self.out, labels, None);
        self.out.push(' ');
        write_value(&mut self.out, value);
        self.out.push('\n');
    }

    /// A series of a family whose cardinality clients control (topics, partitions, groups):
    /// written while the scrape's budget lasts, else counted as dropped.
    pub fn bounded_sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> bool {
        if self.labelled_series_left == 0 {
            self.labelled_series_dropped += 1;
            return false;
        }
        self.labelled_series_left -= 1;
        self.sample(name, labels, value);
        true
    }

    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], snapshot: &HistogramSnapshot) {
        let bucket = format!("{name}_bucket");
        for (bound, count) in DURATION_BUCKETS_SECONDS.iter().zip(&snapshot.cumulative) {
            let le = format_value(*bound);
            self.out.push_str(&bucket);
            write_labels(&mut self.out, labels, Some(&le));
            let _ = writeln!(self.out, " {count}");
        }
        self.out.push_str(&bucket);
        write_labels(&mut self.out, labels, Some("+Inf"));
        let _ = writeln!(self.out, " {}", snapshot.count);
        self.sample(&format!("{name}_sum"), labels, snapshot.sum_seconds);
        self.sample(&format!("{name}_count"), labels, snapshot.count as f64);
    }

    pub fn labelled_series_dropped(&self) -> u64 {
        self.labelled_series_dropped
    }

    pub fn finish(self) -> String {
        self.out
    }
}

fn write_labels(out: &mut String, labels: &[(&str, &str)], le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (name, value) in labels.iter().copied().chain(le.map(|le| ("le", le))) {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(name);
        out.push_str("=\"");
        escape_label_value_into(out, value);
        out.push('"');
    }
    out.push('}');
}

/// Label values escape backslash, double quote and newline (exposition format 0.0.4).
pub fn escape_label_value_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// HELP text escapes backslash and newline.
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

fn format_value(value: f64) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

fn write_value(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value == f64::INFINITY {
        out.push_str("+Inf");
    } else if value == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        let _ = write!(out, "{}", value as i64);
    } else {
        let _ = write!(out, "{value}");
    }
}

// ------------------------------------------------------------------------------ the scrape

/// One consumer group as the scrape sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSnapshot {
    pub group_id: String,
    /// Kafka's state name (`Stable`, `Empty`, ...); `None` for a group that only has
    /// committed offsets (standalone consumers).
    pub state: Option<&'static str>,
    pub members: usize,
    /// (topic, partition, committed offset), sorted.
    pub committed: Vec<(String, i32, i64)>,
}

impl crate::Broker {
    /// Everything `/metrics` shows about this broker, in the text exposition format.
    pub fn render_metrics(&self) -> String {
        let metrics = self.metrics();
        let mut encoder = TextEncoder::new(LABELLED_SERIES_PER_SCRAPE_MAX);
        render_requests(&mut encoder, metrics);
        render_connections(&mut encoder, metrics);
        render_sasl(&mut encoder, &metrics.sasl);
        render_topics(&mut encoder, self);
        render_replication_quotas(&mut encoder, self);
        crate::quota::render_metrics(&mut encoder, self.client_quotas());
        render_groups(&mut encoder, self);
        encoder.family(
            "fjord_authorization_failures_total",
            "Requests or parts of requests refused by the ACL authorizer, by resource type.",
            MetricType::Counter,
        );
        for (resource_type, count) in self.authorization_metrics().snapshot() {
            encoder.sample(
                "fjord_authorization_failures_total",
                &[("resource_type", resource_type)],
                count as f64,
            );
        }
        encoder.family(
            "fjord_log_flush_duration_seconds",
            "Log flushes (fsync of segments, indexes and directory).",
            MetricType::Histogram,
        );
        encoder.histogram(
            "fjord_log_flush_duration_seconds",
            &[],
            &LOG_FLUSH_DURATION.snapshot(),
        );
        encoder.family(
            "fjord_up_seconds",
            "Seconds since the broker started opening its data directory.",
            MetricType::Gauge,
        );
        encoder.sample("fjord_up_seconds", &[], metrics.uptime().as_secs_f64());
        metrics
            .series_dropped
            .add(encoder.labelled_series_dropped());
        encoder.family(
            "fjord_metrics_series_dropped_total",
            "Per-topic, per-partition and per-group series left out of scrapes because one scrape emits at most 50000 of them.",
            MetricType::Counter,
        );
        encoder.sample(
            "fjord_metrics_series_dropped_total",
            &[],
            metrics.series_dropped.get() as f64,
        );
        render_process(&mut encoder, Some(metrics.start_time_unix_seconds));
        encoder.finish()
    }
}

/// What `/metrics` shows before the broker has opened its data directory: the process only.
pub fn render_process_metrics() -> String {
    let mut encoder = TextEncoder::new(0);
    render_process(&mut encoder, None);
    encoder.finish()
}

fn render_requests(encoder: &mut TextEncoder, metrics: &BrokerMetrics) {
    let active: Vec<(usize, String)> = metrics
        .api
        .iter()
        .enumerate()
        .filter(|(_, stats)| stats.requests.get() > 0)
        .filter_map(|(slot, _)| {
            let key = ApiKey::try_from(i16::try_from(slot).ok()?).ok()?;
            Some((slot, api_name(key)))
        })
        .collect();
    encoder.family(
        "fjord_requests_total",
        "Requests by Kafka API.",
        MetricType::Counter,
    );
    for (slot, api) in &active {
        let value = metrics.api[*slot].requests.get() as f64;
        encoder.sample("fjord_requests_total", &[("api", api)], value);
    }
    encoder.family(
        "fjord_request_duration_seconds",
        "Time from a request decoded to its response written.",
        MetricType::Histogram,
    );
    for (slot, api) in &active {
        let snapshot = metrics.api[*slot].duration.snapshot();
        encoder.histogram("fjord_request_duration_seconds", &[("api", api)], &snapshot);
    }
    encoder.family(
        "fjord_request_errors_total",
        "Error codes in responses (top-level and per partition or resource, like Kafka's errorCounts), by API and Kafka error name.",
        MetricType::Counter,
    );
    for (slot, api) in &active {
        for (error_slot, counter) in metrics.api[*slot].errors.iter().enumerate() {
            let count = counter.get();
            if count == 0 {
                continue;
            }
            let error = error_name(code_of_slot(error_slot));
            encoder.sample(
                "fjord_request_errors_total",
                &[("api", api), ("error", &error)],
                count as f64,
            );
        }
    }
    encoder.family(
        "fjord_purgatory_size",
        "Requests parked waiting: fetch long polls; produce waits for replication (always 0 on one node).",
        MetricType::Gauge,
    );
    encoder.sample(
        "fjord_purgatory_size",
        &[("purgatory", "produce")],
        metrics.produce_purgatory.get() as f64,
    );
    encoder.sample(
        "fjord_purgatory_size",
        &[("purgatory", "fetch")],
        metrics.fetch_purgatory.get() as f64,
    );
}

fn render_connections(encoder: &mut TextEncoder, metrics: &BrokerMetrics) {
    let families: [(&'static str, &str, MetricType, f64); 3] = [
        (
            "fjord_connections",
            "Open Kafka connections.",
            MetricType::Gauge,
            metrics.connections.get() as f64,
        ),
        (
            "fjord_connections_accepted_total",
            "Kafka connections accepted.",
            MetricType::Counter,
            metrics.connections_accepted.get() as f64,
        ),
        (
            "fjord_connections_rejected_total",
            "Kafka connections closed at accept because max.connections were open.",
            MetricType::Counter,
            metrics.connections_rejected.get() as f64,
        ),
    ];
    for (name, help, kind, value) in families {
        encoder.family(name, help, kind);
        encoder.sample(name, &[], value);
    }
}

fn render_sasl(encoder: &mut TextEncoder, sasl: &SaslMetrics) {
    const NAME: &str = "fjord_sasl_authentications_total";
    encoder.family(
        NAME,
        "SASL authentications and re-authentications, by mechanism and result (success, failure).",
        MetricType::Counter,
    );
    for mechanism in crate::security::sasl::Mechanism::ALL {
        for (success, result) in [(true, "success"), (false, "failure")] {
            encoder.sample(
                NAME,
                &[("mechanism", mechanism.name()), ("result", result)],
                sasl.get(mechanism, success) as f64,
            );
        }
    }
}

/// A family's name, help, and how to read its value from a row.
type Family<F> = (&'static str, &'static str, F);
type ReadTraffic = fn(&PartitionTraffic) -> u64;
type ReadRow = fn(&PartitionRow) -> Option<f64>;

/// Per-topic traffic and per-partition log state, read once per partition.
struct PartitionRow {
    topic: std::sync::Arc<str>,
    partition: String,
    size_bytes: Option<u64>,
    offsets: Option<crate::partition::PartitionOffsets>,
}

fn render_topics(encoder: &mut TextEncoder, broker: &crate::Broker) {
    let topics = broker.replica_manager().topics();
    let partitions_total: usize = topics
        .iter()
        .map(|t| t.partitions.iter().filter(|p| p.is_hosted()).count())
        .sum();
    encoder.family("fjord_topics", "Topics hosted.", MetricType::Gauge);
    encoder.sample("fjord_topics", &[], topics.len() as f64);
    encoder.family("fjord_partitions", "Partitions hosted.", MetricType::Gauge);
    encoder.sample("fjord_partitions", &[], partitions_total as f64);
    // Kafka's UnderReplicatedPartitions: partitions this broker leads whose ISR is smaller
    // than their replica set.
    let under_replicated = topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .filter_map(|p| p.isr_and_replicas())
        .filter(|(isr, replicas)| isr < replicas)
        .count();
    encoder.family(
        "fjord_under_replicated_partitions",
        "Partitions led here whose in-sync replicas are fewer than their replicas.",
        MetricType::Gauge,
    );
    encoder.sample(
        "fjord_under_replicated_partitions",
        &[],
        under_replicated as f64,
    );
    let isr_changes: [(&str, &str, &Counter); 2] = [
        (
            "fjord_isr_shrinks_total",
            "In-sync replica set shrinks committed by the controller for partitions led here.",
            &ISR_SHRINKS,
        ),
        (
            "fjord_isr_expands_total",
            "In-sync replica set expansions committed by the controller for partitions led here.",
            &ISR_EXPANDS,
        ),
    ];
    for (name, help, counter) in isr_changes {
        encoder.family(name, help, MetricType::Counter);
        encoder.sample(name, &[], counter.get() as f64);
    }

    let traffic: [Family<ReadTraffic>; 6] = [
        (
            "fjord_topic_bytes_in_total",
            "Record batch bytes appended by Produce.",
            |t| t.bytes_in.get(),
        ),
        (
            "fjord_topic_messages_in_total",
            "Records appended by Produce (record counts from batch headers).",
            |t| t.messages_in.get(),
        ),
        (
            "fjord_topic_bytes_out_total",
            "Record bytes sent in Fetch responses to consumers (by a leader, or by a follower under KIP-392); replication is not counted.",
            |t| t.bytes_out.get(),
        ),
        (
            "fjord_topic_messages_out_total",
            "Offsets delivered by Fetch responses to consumers (from the fetch offset to the end of the returned batches).",
            |t| t.messages_out.get(),
        ),
        (
            "fjord_topic_replication_bytes_in_total",
            "Record bytes this broker fetched as a follower from partition leaders.",
            |t| t.replication_bytes_in.get(),
        ),
        (
            "fjord_topic_replication_bytes_out_total",
            "Record bytes this broker sent as a leader in answers to follower fetches.",
            |t| t.replication_bytes_out.get(),
        ),
    ];
    for (name, help, read) in traffic {
        encoder.family(name, help, MetricType::Counter);
        for topic in &topics {
            let total: u64 = topic.partitions.iter().map(|p| read(&p.traffic)).sum();
            encoder.bounded_sample(name, &[("topic", &topic.name)], total as f64);
        }
    }

    let rows: Vec<PartitionRow> = topics
        .iter()
        .flat_map(|topic| topic.partitions.iter())
        .filter(|partition| partition.is_hosted())
        .take(LABELLED_SERIES_PER_SCRAPE_MAX)
        .map(|partition| PartitionRow {
            topic: partition.topic.clone(),
            partition: partition.index.to_string(),
            size_bytes: partition.size_bytes().ok(),
            offsets: partition.offsets().ok(),
        })
        .collect();
    let per_partition: [Family<ReadRow>; 3] = [
        (
            "fjord_log_size_bytes",
            "Bytes of a partition's log on disk.",
            |r| r.size_bytes.map(|s| s as f64),
        ),
        (
            "fjord_log_start_offset",
            "A partition's log start offset.",
            |r| r.offsets.map(|o| o.log_start_offset as f64),
        ),
        (
            "fjord_log_end_offset",
            "A partition's log end offset.",
            |r| r.offsets.map(|o| o.log_end_offset as f64),
        ),
    ];
    for (name, help, read) in per_partition {
        encoder.family(name, help, MetricType::Gauge);
        for row in &rows {
            if let Some(value) = read(row) {
                encoder.bounded_sample(
                    name,
                    &[("topic", &row.topic), ("partition", &row.partition)],
                    value,
                );
            }
        }
    }
}

/// Replication throttles (Kafka's `LeaderReplication`/`FollowerReplication` quota metrics).
fn render_replication_quotas(encoder: &mut TextEncoder, broker: &crate::Broker) {
    use crate::replication_shell::QuotaSide;
    let quotas = &broker.replication().quotas;
    let sides = [QuotaSide::Leader, QuotaSide::Follower];
    let stats = sides.map(|side| (side.label(), quotas.stats(side)));
    type ReadStats = fn(&crate::replication_shell::QuotaStats) -> f64;
    let families: [(&'static str, &str, ReadStats); 3] = [
        (
            "fjord_replication_throttled_bytes_total",
            "Replication bytes of throttled replicas (leader/follower.replication.throttled.replicas) counted against the replication quota.",
            |s| s.throttled_bytes as f64,
        ),
        (
            "fjord_replication_throttled_seconds_total",
            "Time the replication quota (leader/follower.replication.throttled.rate) was exceeded.",
            |s| s.exceeded_ms as f64 / 1000.0,
        ),
        (
            "fjord_replication_throttled_partition_fetches_total",
            "Partition reads of throttled, not in-sync replicas held back because the replication quota was exceeded.",
            |s| s.held_back as f64,
        ),
    ];
    for (name, help, read) in families {
        encoder.family(name, help, MetricType::Counter);
        for (label, stats) in &stats {
            encoder.sample(name, &[("side", label)], read(stats));
        }
    }
}

fn render_groups(encoder: &mut TextEncoder, broker: &crate::Broker) {
    let groups = broker
        .group_coordinator()
        .metrics_snapshot(LABELLED_SERIES_PER_SCRAPE_MAX);
    let mut states: BTreeMap<&'static str, u64> = BTreeMap::new();
    for state in groups.iter().filter_map(|g| g.state) {
        *states.entry(state).or_default() += 1;
    }
    encoder.family(
        "fjord_consumer_groups",
        "Consumer groups by state.",
        MetricType::Gauge,
    );
    for (state, count) in &states {
        encoder.sample("fjord_consumer_groups", &[("state", state)], *count as f64);
    }
    encoder.family(
        "fjord_consumer_group_members",
        "Members of a consumer group.",
        MetricType::Gauge,
    );
    for group in groups.iter().filter(|g| g.state.is_some()) {
        encoder.bounded_sample(
            "fjord_consumer_group_members",
            &[("group", &group.group_id)],
            group.members as f64,
        );
    }
    encoder.family(
        "fjord_consumer_group_lag",
        "High watermark minus committed offset, per partition with a committed offset.",
        MetricType::Gauge,
    );
    let manager = broker.replica_manager();
    for group in &groups {
        for (topic, partition, committed) in &group.committed {
            let Some(offsets) = manager
                .partition(topic, *partition)
                .and_then(|p| p.offsets().ok())
            else {
                continue;
            };
            let lag = (offsets.high_watermark - committed).max(0);
            let partition = partition.to_string();
            encoder.bounded_sample(
                "fjord_consumer_group_lag",
                &[
                    ("group", &group.group_id),
                    ("topic", topic),
                    ("partition", &partition),
                ],
                lag as f64,
            );
        }
    }
}

fn render_process(encoder: &mut TextEncoder, start_time_unix_seconds: Option<f64>) {
    encoder.family(
        "fjord_build_info",
        "Always 1; the version label says which Fjord this is.",
        MetricType::Gauge,
    );
    encoder.sample(
        "fjord_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    let stats = process::ProcessStats::read();
    let start = stats.start_time_unix_seconds.or(start_time_unix_seconds);
    let families: [(&'static str, &str, MetricType, Option<f64>); 6] = [
        (
            "process_cpu_seconds_total",
            "User and system CPU time spent in seconds.",
            MetricType::Counter,
            stats.cpu_seconds,
        ),
        (
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            MetricType::Gauge,
            stats.resident_memory_bytes,
        ),
        (
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            MetricType::Gauge,
            stats.virtual_memory_bytes,
        ),
        (
            "process_open_fds",
            "Number of open file descriptors.",
            MetricType::Gauge,
            stats.open_fds,
        ),
        (
            "process_max_fds",
            "Maximum number of open file descriptors.",
            MetricType::Gauge,
            stats.max_fds,
        ),
        (
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            MetricType::Gauge,
            start,
        ),
    ];
    for (name, help, kind, value) in families {
        if let Some(value) = value {
            encoder.family(name, help, kind);
            encoder.sample(name, &[], value);
        }
    }
}

#[cfg(test)]
mod tests;
