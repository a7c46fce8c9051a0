//! The load engine: N producer threads and M consumer threads on librdkafka.
//!
//! * Producers are [`ThreadedProducer`]s (librdkafka's own background thread serves delivery
//!   callbacks). Every payload carries the send time (ns since the Unix epoch, little endian)
//!   in its first 8 bytes; the delivery callback records produce-ack latency from it, the
//!   consumers record end-to-end latency. Everything runs on one machine, one clock.
//! * Consumers are [`BaseConsumer`]s with a manual `assign` of explicit partitions from the
//!   beginning of a freshly created topic: Fjord has no consumer groups yet, so `group.id` is
//!   set (librdkafka wants one) but nothing is ever committed.
//! * A monitor thread prints one progress line per second to stderr.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::Serialize;

use crate::stats::{
    self, new_histogram, now_ns, read_timestamp, record_latency, Percentiles, Throughput,
};
use crate::workload::Workload;

/// How long consumers may go without progress after the producers finished before the run
/// gives up waiting for the remaining messages.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
/// Head start of the consumers before the producers begin: connecting, metadata, ListOffsets
/// and the first (long-polling) fetch take a few hundred ms, which would otherwise show up as
/// end-to-end latency of the first messages (a client start-up artifact, not the broker's).
const CONSUMER_HEAD_START: Duration = Duration::from_millis(1500);
/// Size of the payload pool messages are cut from (see [`payload_pool`]).
const POOL_BYTES: usize = 8 << 20;

/// Options that are not part of the workload itself.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// `bootstrap.servers`.
    pub bootstrap: String,
    /// Topic to use; `None` creates `fjord-bench-<workload>-<unix ms>`.
    pub topic: Option<String>,
    /// Print a progress line per second to stderr.
    pub progress: bool,
    /// Per-producer cap on payload bytes sent but not yet acknowledged (0 = only librdkafka's
    /// own queue limit).
    pub max_in_flight_bytes: u64,
    /// Key every message with one of this many keys (`key-<n>`, uniformly at random), as a
    /// compacted topic needs; `None` sends keyless messages.
    pub keys: Option<u64>,
    /// Topic configs for the topic the run creates (e.g. `cleanup.policy=compact`).
    pub topic_configs: Vec<(String, String)>,
    /// Replicas per partition of the topic the run creates (3 with acks=all on a 3-node
    /// cluster measures replicated produce).
    pub replication_factor: i32,
    /// Producers use `enable.idempotence=true` (InitProducerId, sequence numbers, broker-side
    /// deduplication), as librdkafka and Java clients do by default.
    pub idempotence: bool,
    /// librdkafka settings every client gets on top of its own (`security.protocol`, the CA,
    /// SASL credentials), applied last.
    pub client_config: Vec<(String, String)>,
}

/// The result of one run, as printed by `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    /// What was run.
    pub workload: Workload,
    /// Topic used.
    pub topic: String,
    /// Broker address.
    pub bootstrap: String,
    /// Start of the run, ms since the Unix epoch.
    pub started_at_unix_ms: u64,
    /// Acknowledged produce traffic (for catch-up: the backlog fill).
    pub produce: Throughput,
    /// Consumed traffic (for catch-up: the drain of the backlog).
    pub consume: Throughput,
    /// Producer send -> consumer receipt (not measured for catch-up).
    pub e2e_latency_ms: Option<Percentiles>,
    /// Producer send -> delivery callback.
    pub ack_latency_ms: Option<Percentiles>,
    /// Seconds to create the topic and see all its partitions in metadata.
    pub topic_create_secs: f64,
    /// The produce rate achieved against the producer quota, for runs with one.
    pub quota: Option<crate::quota::QuotaResult>,
    /// Anything that went wrong but did not abort the run.
    pub warnings: Vec<String>,
}

/// Counters shared by all threads of a run.
#[derive(Default)]
struct Shared {
    /// Producers must stop sending.
    stop_producers: AtomicBool,
    /// All producers flushed: `acked_msgs` is final.
    producers_done: AtomicBool,
    /// Consumers must stop.
    stop_consumers: AtomicBool,
    sent_msgs: AtomicU64,
    sent_bytes: AtomicU64,
    acked_msgs: AtomicU64,
    acked_bytes: AtomicU64,
    produce_errors: AtomicU64,
    consumed_msgs: AtomicU64,
    consumed_bytes: AtomicU64,
    consume_errors: AtomicU64,
    /// Realtime ns of the last delivery callback / last received message.
    last_ack_ns: AtomicU64,
    last_consume_ns: AtomicU64,
    first_produce_error: Mutex<Option<String>>,
    first_consume_error: Mutex<Option<String>>,
}

fn note_error(slot: &Mutex<Option<String>>, e: impl std::fmt::Display) {
    let mut s = slot.lock();
    if s.is_none() {
        *s = Some(e.to_string());
    }
}

/// Producer context: counts acknowledgements and records produce-ack latency.
struct ProdContext {
    shared: Arc<Shared>,
    /// Payload bytes acknowledged (or failed) for this producer: bounds its in-flight window.
    done_bytes: AtomicU64,
    ack_hist: Mutex<Histogram<u64>>,
}

impl ClientContext for ProdContext {}

impl ProducerContext for ProdContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let now = now_ns();
        match result {
            Ok(m) => {
                let payload = m.payload();
                let len = payload.map_or(0, <[u8]>::len) as u64;
                self.done_bytes.fetch_add(len, Ordering::Relaxed);
                self.shared.acked_msgs.fetch_add(1, Ordering::Relaxed);
                self.shared.acked_bytes.fetch_add(len, Ordering::Relaxed);
                self.shared.last_ack_ns.fetch_max(now, Ordering::Relaxed);
                if let Some(sent) = read_timestamp(payload) {
                    record_latency(&mut self.ack_hist.lock(), sent, now);
                }
            }
            Err((e, m)) => {
                let len = m.payload().map_or(0, <[u8]>::len) as u64;
                self.done_bytes.fetch_add(len, Ordering::Relaxed);
                self.shared.produce_errors.fetch_add(1, Ordering::Relaxed);
                note_error(&self.shared.first_produce_error, e);
            }
        }
    }
}

/// librdkafka producer settings. The tuning follows what the OpenMessaging Benchmark Kafka
/// driver and Confluent's throughput guidance use:
/// * `linger.ms` from the workload: 5 ms to fill batches at max rate, 1 ms for the latency run;
/// * `batch.size=1000000`: up to ~1 MB per partition batch, just under the default
///   `message.max.bytes` (1,000,000) so a full batch is never rejected;
/// * `queue.buffering.max.messages=1000000`, `queue.buffering.max.kbytes=262144` (256 MiB):
///   a large local queue so the sender thread rarely sees `QueueFull` at max rate;
/// * `enable.idempotence` from `--idempotence` (default off, so runs compare with older
///   results; librdkafka then also caps in-flight requests at 5, as below);
/// * `max.in.flight.requests.per.connection=5` (the usual Kafka value);
/// * `message.timeout.ms=120000`: a failed delivery is reported, not retried forever.
fn producer_config(opts: &RunOptions, w: &Workload, idempotence: bool) -> ClientConfig {
    let bootstrap = &opts.bootstrap;
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("client.id", crate::quota::PRODUCER_CLIENT_ID)
        .set("acks", &w.acks)
        .set(
            "enable.idempotence",
            if idempotence { "true" } else { "false" },
        )
        .set("compression.type", &w.compression)
        .set("linger.ms", w.linger_ms.to_string())
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "262144")
        .set("max.in.flight.requests.per.connection", "5")
        .set("message.timeout.ms", "120000");
    apply(&mut c, &opts.client_config);
    c
}

/// Sets every `(name, value)` of `settings` on `c` (later settings win).
fn apply(c: &mut ClientConfig, settings: &[(String, String)]) {
    for (name, value) in settings {
        c.set(name, value);
    }
}

/// librdkafka consumer settings:
/// * `group.id` is required by librdkafka even with manual `assign`; offsets are never
///   committed (`enable.auto.commit=false`, `enable.auto.offset.store=false`);
/// * `fetch.queue.backoff.ms=10`: librdkafka 2.x otherwise backs off 1 s when its local queue
///   is full, which would show up as a consume stall that is not the broker's fault;
/// * `fetch.wait.max.ms=100`: long-poll bound when the consumer is caught up;
/// * `max.partition.fetch.bytes`/`fetch.max.bytes` at Kafka's defaults (1 MiB / 50 MiB).
fn consumer_config(opts: &RunOptions) -> ClientConfig {
    let bootstrap = &opts.bootstrap;
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("client.id", "fjord-bench-consumer")
        .set("group.id", "fjord-bench")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.queue.backoff.ms", "10")
        .set("fetch.wait.max.ms", "100")
        .set("max.partition.fetch.bytes", "1048576")
        .set("fetch.max.bytes", "52428800");
    apply(&mut c, &opts.client_config);
    c
}

/// Creates `topic` with `partitions` partitions of `replication_factor` replicas and waits
/// until the metadata shows all of them. An existing topic is accepted when `allow_existing`.
pub fn create_topic(
    bootstrap: &str,
    client_config: &[(String, String)],
    topic: &str,
    partitions: i32,
    replication_factor: i32,
    allow_existing: bool,
    configs: &[(String, String)],
) -> Result<()> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "fjord-bench-admin");
    apply(&mut config, client_config);
    let admin: AdminClient<DefaultClientContext> =
        config.create().context("creating the admin client")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("creating a tokio runtime")?;
    let mut new_topic = NewTopic::new(
        topic,
        partitions,
        TopicReplication::Fixed(replication_factor),
    );
    for (name, value) in configs {
        new_topic = new_topic.set(name, value);
    }
    let opts = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(60)))
        .request_timeout(Some(Duration::from_secs(60)));
    let results = rt
        .block_on(admin.create_topics([&new_topic], &opts))
        .with_context(|| format!("CreateTopics {topic} on {bootstrap}"))?;
    for r in results {
        match r {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) if allow_existing => {}
            Err((name, code)) => bail!("CreateTopics {name}: {code}"),
        }
    }
    // Wait for every partition to have a leader in metadata.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let md = admin
            .inner()
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .context("fetching metadata")?;
        let ready = md.topics().iter().any(|t| {
            t.name() == topic
                && t.error().is_none()
                && t.partitions().len() as i32 >= partitions
                && t.partitions().iter().all(|p| p.leader() >= 0)
        });
        if ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("topic {topic} did not show {partitions} partitions with leaders within 60 s");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Pseudo-random payload bytes drawn from a 16-symbol alphabet (4 bits of entropy per byte),
/// so lz4/zstd have something realistic to do (about 2:1) instead of compressing a repeated
/// buffer to nothing. Messages are cut from random offsets of this pool.
fn payload_pool() -> Vec<u8> {
    const ALPHABET: &[u8; 16] = b"abcdefghijklmnop";
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut v = Vec::with_capacity(POOL_BYTES);
    while v.len() < POOL_BYTES {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        for i in 0..16 {
            v.push(ALPHABET[((x >> (i * 4)) & 0xF) as usize]);
        }
    }
    v
}

/// What one producer thread must do.
#[derive(Clone, Copy)]
struct Budget {
    deadline: Option<Instant>,
    max_msgs: Option<u64>,
    max_bytes: Option<u64>,
    /// Messages per second for this producer; `None` = max rate.
    rate_msgs: Option<f64>,
    /// Most payload bytes sent but not yet acknowledged (0 = no limit).
    max_in_flight: u64,
    /// Number of distinct keys, if messages are keyed.
    keys: Option<u64>,
}

fn producer_thread(
    cfg: ClientConfig,
    topic: String,
    size: usize,
    budget: Budget,
    shared: Arc<Shared>,
    pool: Arc<Vec<u8>>,
    seed: u64,
) -> Result<Histogram<u64>> {
    let ctx = ProdContext {
        shared: shared.clone(),
        done_bytes: AtomicU64::new(0),
        ack_hist: Mutex::new(new_histogram()),
    };
    let producer: ThreadedProducer<ProdContext> = cfg
        .create_with_context(ctx)
        .context("creating a producer")?;
    let mut buf = vec![0u8; size];
    let span = pool.len().saturating_sub(size).max(1);
    let mut rng = seed | 1;
    let start = Instant::now();
    let (mut sent, mut sent_bytes) = (0u64, 0u64);
    'send: loop {
        if shared.stop_producers.load(Ordering::Relaxed)
            || budget.deadline.is_some_and(|d| Instant::now() >= d)
            || budget.max_msgs.is_some_and(|m| sent >= m)
            || budget.max_bytes.is_some_and(|m| sent_bytes >= m)
        {
            break;
        }
        if let Some(rate) = budget.rate_msgs {
            // Pace against the schedule; only sleep when more than 1 ms ahead (finer sleeps
            // cost more than they save), bursts catch up automatically.
            let due = start + Duration::from_secs_f64(sent as f64 / rate);
            let now = Instant::now();
            if due > now + Duration::from_millis(1) {
                thread::sleep(due - now);
            }
        }
        // Max-rate backpressure: without it the sender fills librdkafka's queue at memcpy speed
        // and the measured latencies are the client's own queueing delay, not the broker's.
        while budget.max_in_flight > 0
            && sent_bytes.saturating_sub(producer.context().done_bytes.load(Ordering::Relaxed))
                >= budget.max_in_flight
        {
            if shared.stop_producers.load(Ordering::Relaxed) {
                break 'send;
            }
            thread::sleep(Duration::from_micros(200));
        }
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let off = (rng % span as u64) as usize;
        let n = size.min(pool.len());
        buf[..n].copy_from_slice(&pool[off..off + n]);
        buf[..8].copy_from_slice(&now_ns().to_le_bytes());
        let key = budget
            .keys
            .map(|keys| format!("key-{}", (rng >> 7) % keys.max(1)));
        let mut record: BaseRecord<'_, str, [u8]> = BaseRecord::to(&topic).payload(&buf[..]);
        if let Some(key) = &key {
            record = record.key(key.as_str());
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    if shared.stop_producers.load(Ordering::Relaxed) {
                        break 'send;
                    }
                    thread::sleep(Duration::from_micros(500));
                }
                Err((e, _)) => {
                    shared.produce_errors.fetch_add(1, Ordering::Relaxed);
                    note_error(&shared.first_produce_error, &e);
                    continue 'send;
                }
            }
        }
        sent += 1;
        sent_bytes += size as u64;
        shared.sent_msgs.fetch_add(1, Ordering::Relaxed);
        shared.sent_bytes.fetch_add(size as u64, Ordering::Relaxed);
    }
    if let Err(e) = producer.flush(Duration::from_secs(120)) {
        note_error(&shared.first_produce_error, format!("flush: {e}"));
    }
    let hist = producer.context().ack_hist.lock().clone();
    Ok(hist)
}

fn consumer_thread(
    cfg: ClientConfig,
    topic: String,
    partitions: Vec<i32>,
    shared: Arc<Shared>,
    measure_e2e: bool,
) -> Result<Histogram<u64>> {
    let consumer: BaseConsumer = cfg.create().context("creating a consumer")?;
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        tpl.add_partition_offset(&topic, *p, Offset::Beginning)
            .context("building the assignment")?;
    }
    consumer.assign(&tpl).context("assign")?;
    let mut hist = new_histogram();
    loop {
        if shared.stop_consumers.load(Ordering::Relaxed) {
            break;
        }
        if shared.producers_done.load(Ordering::Acquire)
            && shared.consumed_msgs.load(Ordering::Relaxed)
                >= shared.acked_msgs.load(Ordering::Relaxed)
        {
            break;
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let now = now_ns();
                let payload = m.payload();
                shared.consumed_msgs.fetch_add(1, Ordering::Relaxed);
                shared
                    .consumed_bytes
                    .fetch_add(payload.map_or(0, <[u8]>::len) as u64, Ordering::Relaxed);
                shared.last_consume_ns.fetch_max(now, Ordering::Relaxed);
                if measure_e2e {
                    if let Some(sent) = read_timestamp(payload) {
                        record_latency(&mut hist, sent, now);
                    }
                }
            }
            Some(Err(e)) => {
                shared.consume_errors.fetch_add(1, Ordering::Relaxed);
                note_error(&shared.first_consume_error, e);
            }
            None => {}
        }
    }
    Ok(hist)
}

/// Prints one line per second until `stop` is set.
fn monitor(shared: Arc<Shared>, stop: Arc<AtomicBool>, label: String) {
    let start = Instant::now();
    let (mut last_p, mut last_pm, mut last_c, mut last_cm) = (0u64, 0u64, 0u64, 0u64);
    let mut last_t = start;
    while !stop.load(Ordering::Relaxed) {
        // Sleep in small steps so the monitor ends promptly.
        let tick = last_t + Duration::from_secs(1);
        while Instant::now() < tick && !stop.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_millis(50));
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let now = Instant::now();
        let dt = now.duration_since(last_t).as_secs_f64().max(1e-9);
        let (p, pm) = (
            shared.acked_bytes.load(Ordering::Relaxed),
            shared.acked_msgs.load(Ordering::Relaxed),
        );
        let (c, cm) = (
            shared.consumed_bytes.load(Ordering::Relaxed),
            shared.consumed_msgs.load(Ordering::Relaxed),
        );
        let in_flight = shared.sent_msgs.load(Ordering::Relaxed).saturating_sub(pm);
        let errors = shared.produce_errors.load(Ordering::Relaxed)
            + shared.consume_errors.load(Ordering::Relaxed);
        eprintln!(
            "[{label} {:>5.1}s] produce {:>8.1} MB/s {:>9.0} msg/s | consume {:>8.1} MB/s {:>9.0} msg/s | unacked {:>8} | lag {:>9} | errors {}",
            now.duration_since(start).as_secs_f64(),
            (p - last_p) as f64 / dt / 1e6,
            (pm - last_pm) as f64 / dt,
            (c - last_c) as f64 / dt / 1e6,
            (cm - last_cm) as f64 / dt,
            in_flight,
            pm.saturating_sub(cm),
            errors,
        );
        (last_p, last_pm, last_c, last_cm, last_t) = (p, pm, c, cm, now);
    }
}

fn join<T>(h: thread::JoinHandle<Result<T>>, what: &str) -> Result<T> {
    h.join().map_err(|_| anyhow!("{what} thread panicked"))?
}

/// Runs `w` against `opts.bootstrap` and returns the measurements.
pub fn run(w: &Workload, opts: &RunOptions) -> Result<RunResult> {
    if w.message_size < 8 {
        bail!("--message-size must be at least 8 (the send timestamp)");
    }
    if w.producers == 0 || w.consumers == 0 || w.partitions <= 0 {
        bail!("producers, consumers and partitions must all be at least 1");
    }
    let started_at_unix_ms = now_ns() / 1_000_000;
    let topic = opts
        .topic
        .clone()
        .unwrap_or_else(|| format!("fjord-bench-{}-{}", w.name, started_at_unix_ms));
    let t = Instant::now();
    create_topic(
        &opts.bootstrap,
        &opts.client_config,
        &topic,
        w.partitions,
        opts.replication_factor,
        opts.topic.is_some(),
        &opts.topic_configs,
    )?;
    let topic_create_secs = t.elapsed().as_secs_f64();
    eprintln!(
        "fjord-bench: workload {} on {} topic {} ({} partitions, created in {:.2} s)",
        w.name, opts.bootstrap, topic, w.partitions, topic_create_secs
    );

    if let Some(quota_mb_s) = w.producer_quota_mb_s {
        crate::quota::set_producer_quota(
            &opts.bootstrap,
            crate::quota::PRODUCER_CLIENT_ID,
            Some(quota_mb_s * 1e6),
        )?;
        eprintln!("fjord-bench: producer_byte_rate quota of {quota_mb_s} MB/s set");
    }

    let shared = Arc::new(Shared::default());
    let pool = Arc::new(payload_pool());
    let catchup = w.backlog_bytes.is_some();
    let mut warnings = Vec::new();

    let spawn_consumers =
        |shared: &Arc<Shared>| -> Vec<thread::JoinHandle<Result<Histogram<u64>>>> {
            (0..w.consumers)
                .map(|i| {
                    let parts: Vec<i32> = (0..w.partitions)
                        .filter(|p| (*p as usize) % w.consumers == i)
                        .collect();
                    let (cfg, topic, shared) =
                        (consumer_config(opts), topic.clone(), shared.clone());
                    thread::spawn(move || consumer_thread(cfg, topic, parts, shared, !catchup))
                })
                .collect()
        };

    let monitor_stop = Arc::new(AtomicBool::new(false));
    let monitor_handle = opts.progress.then(|| {
        let (s, m) = (shared.clone(), monitor_stop.clone());
        let label = w.name.clone();
        thread::spawn(move || monitor(s, m, label))
    });

    // Consumers start first (from the beginning of the new topic) except in catch-up mode,
    // where they start once the backlog is complete.
    let mut consumers = if catchup {
        Vec::new()
    } else {
        let c = spawn_consumers(&shared);
        thread::sleep(CONSUMER_HEAD_START);
        c
    };

    let n = w.producers as u64;
    let per = |total: u64, i: u64| total / n + u64::from(i < total % n);
    let produce_start = Instant::now();
    let produce_start_ns = now_ns();
    let deadline = (!catchup).then(|| produce_start + Duration::from_secs_f64(w.duration_s));
    let producers: Vec<_> = (0..n)
        .map(|i| {
            let budget = Budget {
                deadline,
                max_msgs: w.messages.map(|m| per(m, i)),
                max_bytes: w.backlog_bytes.map(|b| per(b, i)),
                rate_msgs: w
                    .rate_mb_s
                    .map(|r| r * 1e6 / w.message_size as f64 / n as f64),
                max_in_flight: opts.max_in_flight_bytes,
                keys: opts.keys,
            };
            let (cfg, topic, shared, pool) = (
                producer_config(opts, w, opts.idempotence),
                topic.clone(),
                shared.clone(),
                pool.clone(),
            );
            let size = w.message_size;
            thread::spawn(move || {
                producer_thread(cfg, topic, size, budget, shared, pool, 0x5DEECE66D + i)
            })
        })
        .collect();
    let mut ack_hist = new_histogram();
    for h in producers {
        ack_hist
            .add(join(h, "producer")?)
            .map_err(|e| anyhow!("merging histograms: {e}"))?;
    }
    let produce_secs = produce_start.elapsed().as_secs_f64();
    shared.producers_done.store(true, Ordering::Release);
    let quota = w.producer_quota_mb_s.map(|quota_mb_s| {
        if let Err(e) = crate::quota::set_producer_quota(
            &opts.bootstrap,
            crate::quota::PRODUCER_CLIENT_ID,
            None,
        ) {
            warnings.push(format!("removing the producer quota failed: {e:#}"));
        }
        let acked_bytes = shared.acked_bytes.load(Ordering::Relaxed);
        crate::quota::QuotaResult::new(
            quota_mb_s,
            acked_bytes as f64 / 1e6 / produce_secs.max(f64::MIN_POSITIVE),
            produce_secs,
        )
    });
    let acked = shared.acked_msgs.load(Ordering::Relaxed);

    let consume_start = Instant::now();
    let consume_start_ns = if catchup { now_ns() } else { produce_start_ns };
    if catchup {
        eprintln!("fjord-bench: backlog of {acked} messages written in {produce_secs:.1} s; consuming it from the start");
        consumers = spawn_consumers(&shared);
    }
    // Wait for the consumers to catch up, giving up after DRAIN_TIMEOUT without progress.
    let mut last = (shared.consumed_msgs.load(Ordering::Relaxed), Instant::now());
    loop {
        let got = shared.consumed_msgs.load(Ordering::Relaxed);
        if got >= acked {
            break;
        }
        if got != last.0 {
            last = (got, Instant::now());
        } else if last.1.elapsed() > DRAIN_TIMEOUT {
            warnings.push(format!(
                "consumers stalled: {got} of {acked} acknowledged messages received, no progress for {} s",
                DRAIN_TIMEOUT.as_secs()
            ));
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    shared.stop_consumers.store(true, Ordering::Relaxed);
    let mut e2e_hist = new_histogram();
    for h in consumers {
        e2e_hist
            .add(join(h, "consumer")?)
            .map_err(|e| anyhow!("merging histograms: {e}"))?;
    }
    monitor_stop.store(true, Ordering::Relaxed);
    if let Some(h) = monitor_handle {
        let _ = h.join();
    }

    let consumed = shared.consumed_msgs.load(Ordering::Relaxed);
    if consumed > acked {
        warnings.push(format!(
            "received {consumed} messages but only {acked} were acknowledged (duplicates from producer retries?)"
        ));
    }
    let last_consume = shared.last_consume_ns.load(Ordering::Relaxed);
    let consume_secs = if last_consume > consume_start_ns {
        (last_consume - consume_start_ns) as f64 / 1e9
    } else {
        consume_start.elapsed().as_secs_f64()
    };
    let produce = Throughput::new(
        acked,
        shared.acked_bytes.load(Ordering::Relaxed),
        produce_secs,
        shared.produce_errors.load(Ordering::Relaxed),
        shared.first_produce_error.lock().clone(),
    );
    let consume = Throughput::new(
        consumed,
        shared.consumed_bytes.load(Ordering::Relaxed),
        consume_secs,
        shared.consume_errors.load(Ordering::Relaxed),
        shared.first_consume_error.lock().clone(),
    );
    if produce.errors > 0 {
        warnings.push(format!(
            "{} produce errors, first: {}",
            produce.errors,
            produce.first_error.as_deref().unwrap_or("?")
        ));
    }
    if consume.errors > 0 {
        warnings.push(format!(
            "{} consumer errors, first: {}",
            consume.errors,
            consume.first_error.as_deref().unwrap_or("?")
        ));
    }
    Ok(RunResult {
        workload: w.clone(),
        topic,
        bootstrap: opts.bootstrap.clone(),
        started_at_unix_ms,
        produce,
        consume,
        e2e_latency_ms: stats::summarize(&e2e_hist),
        ack_latency_ms: stats::summarize(&ack_hist),
        topic_create_secs,
        quota,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_is_low_entropy_text() {
        let p = payload_pool();
        assert!(p.len() >= POOL_BYTES);
        assert!(p.iter().all(|b| (b'a'..=b'p').contains(b)));
    }
}
