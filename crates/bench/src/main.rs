//! `fjord-bench`: load generator and physical-limit baselines for Fjord.
//!
//! Works against any Kafka-compatible broker (it speaks Kafka through librdkafka, via the
//! `rdkafka` crate; the broker itself never links librdkafka).
//!
//! * `fjord-bench run --workload NAME` runs a preset modelled on the OpenMessaging Benchmark
//!   (`fjord-bench list` shows them) or a custom mix given by flags: N producers, M consumers
//!   (manual partition assignment, no consumer groups), max rate or `--rate-mb-s`, for a
//!   duration or a message count. It reports produce and consume throughput, end-to-end
//!   latency and produce-ack latency percentiles, as a table or `--json`.
//! * `fjord-bench baseline` measures TCP loopback copy throughput and sequential file write
//!   throughput (page cache, and with `fdatasync`) on the broker's filesystem.
//! * `fjord-bench create-topic` creates a topic and waits for its partitions (used by
//!   `scripts/bench` to measure the broker's memory per idle partition).
//!
//! `scripts/bench` drives all of it against a fresh broker and writes `bench/results/`.

mod baseline;
mod load;
mod quota;
mod stats;
mod workload;

use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use clap::{Args, Parser, Subcommand};

use crate::load::{RunOptions, RunResult};
use crate::stats::Percentiles;
use crate::workload::{preset, Workload, PRESETS};

#[derive(Parser, Debug)]
#[command(
    name = "fjord-bench",
    version,
    about = "Load generator and physical-limit baselines for Fjord (or any Kafka-compatible broker)",
    long_about = "Load generator and physical-limit baselines for Fjord (or any Kafka-compatible broker).\n\n\
        Built on librdkafka. Consumers use manual partition assignment (no consumer groups, no \
        commits); producers run with enable.idempotence=false. Throughput is in MB/s of payload \
        (10^6 bytes), latencies in milliseconds.\n\n\
        Typical use: `scripts/bench --quick` (fresh broker, baselines, every preset, results in \
        bench/results/), or `fjord-bench run --workload 16p-1kb --bootstrap HOST:PORT`."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run one workload (a preset, or custom flags) and report throughput and latency.
    Run(Box<RunArgs>),
    /// Measure TCP loopback and sequential file write throughput (physical limits).
    Baseline(BaselineArgs),
    /// List the workload presets.
    List,
    /// Create a topic (replication factor 1) and wait until all its partitions have a leader.
    CreateTopic(CreateTopicArgs),
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Broker bootstrap address (`bootstrap.servers`).
    #[arg(long, default_value = "127.0.0.1:9092", env = "FJORD_BENCH_BOOTSTRAP")]
    bootstrap: String,
    /// Preset: 1p-100b, 16p-1kb, 16p-1kb-latency, 16p-1kb-lz4, 16p-1kb-zstd, 1000p, catchup,
    /// replicated-rf3-acks-all (needs 3 brokers in `--bootstrap`'s cluster).
    /// Without it the run is `custom`, built from the flags below. Flags given together with a
    /// preset override the preset's values.
    #[arg(long, short = 'w', value_parser = clap::builder::PossibleValuesParser::new(PRESETS))]
    workload: Option<String>,
    /// Replication factor of the topic the run creates (e.g. 3 with `--acks all` against a
    /// 3-node cluster: the replicated-produce benchmark) [presets: 1, 3 for
    /// replicated-rf3-acks-all; custom default: 1].
    #[arg(long)]
    replication_factor: Option<i32>,
    /// Short run: 8 s per workload instead of 30 s, 256 MiB catch-up backlog instead of 2 GiB.
    #[arg(long)]
    quick: bool,
    /// Partitions of the topic to create [custom default: 1].
    #[arg(long, short = 'p')]
    partitions: Option<i32>,
    /// Payload size in bytes, at least 8 (the send timestamp) [custom default: 100].
    #[arg(long, short = 's')]
    message_size: Option<usize>,
    /// Producer acks [custom default: 1].
    #[arg(long, value_parser = ["0", "1", "all", "-1"])]
    acks: Option<String>,
    /// Producer threads [custom default: 1].
    #[arg(long)]
    producers: Option<usize>,
    /// Consumer threads; partitions are assigned to them round-robin [custom default: 1].
    #[arg(long)]
    consumers: Option<usize>,
    /// Total target produce rate in MB/s (10^6 bytes of payload per second); default: max rate.
    #[arg(long)]
    rate_mb_s: Option<f64>,
    /// Producer compression.type [custom default: none].
    #[arg(long, value_parser = ["none", "gzip", "snappy", "lz4", "zstd"])]
    compression: Option<String>,
    /// Producer linger.ms [presets: 5, or 1 for 16p-1kb-latency; custom default: 5].
    #[arg(long)]
    linger_ms: Option<u32>,
    /// Produce phase length in seconds [default: 30, or 8 with --quick].
    #[arg(long, short = 'd')]
    duration: Option<f64>,
    /// Stop after this many messages in total (or at --duration, whichever comes first).
    #[arg(long, short = 'n')]
    messages: Option<u64>,
    /// Catch-up mode: pre-fill this many MiB with no consumer running, then consume it all from
    /// the start as fast as possible [catchup preset: 2048, or 256 with --quick].
    #[arg(long)]
    backlog_mib: Option<u64>,
    /// Set a producer_byte_rate client quota of this many MB/s for the producers' client id
    /// (AlterClientQuotas) for the run, and report the achieved rate against it
    /// [produce-quota preset: 10].
    #[arg(long)]
    producer_quota_mb_s: Option<f64>,
    /// Use this topic instead of creating `fjord-bench-<workload>-<ms>` (created if missing;
    /// consumers read it from the beginning).
    #[arg(long)]
    topic: Option<String>,
    /// Print the result as JSON on stdout (the human table then goes to stderr).
    #[arg(long)]
    json: bool,
    /// Per-producer cap on MiB sent but not yet acknowledged; 0 = only librdkafka's 256 MiB
    /// queue. The cap keeps max-rate latencies about the broker, not the client's queue.
    #[arg(long, default_value_t = 8)]
    max_in_flight_mib: u64,
    /// No per-second progress lines on stderr.
    #[arg(long)]
    no_progress: bool,
    /// Key messages with one of N keys (uniform), e.g. for a compacted topic; default: no keys.
    #[arg(long, value_name = "N")]
    keys: Option<u64>,
    /// Config of the topic the run creates, NAME=VALUE; repeatable
    /// (e.g. --topic-config cleanup.policy=compact --topic-config segment.bytes=8388608).
    #[arg(long, value_name = "NAME=VALUE")]
    topic_config: Vec<String>,
    /// Idempotent producers (`enable.idempotence=true`, requires acks=all): the broker checks
    /// sequence numbers and deduplicates retries.
    #[arg(long)]
    idempotence: bool,
    /// A librdkafka setting for every client of the run, NAME=VALUE; repeatable. For a secured
    /// broker: `--client-config ssl.ca.location=ca.crt`, plus `sasl.mechanisms=SCRAM-SHA-512`,
    /// `sasl.username=...`, `sasl.password=...` for SASL_SSL. `security.protocol` defaults to
    /// the preset's (PLAINTEXT, or SSL / SASL_SSL for 16p-1kb-ssl / 16p-1kb-sasl-ssl).
    #[arg(long, value_name = "NAME=VALUE")]
    client_config: Vec<String>,
    /// The clients' `security.protocol` (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL)
    /// [presets: PLAINTEXT, SSL for 16p-1kb-ssl, SASL_SSL for 16p-1kb-sasl-ssl].
    #[arg(long, value_parser = ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"])]
    security_protocol: Option<String>,
}

#[derive(Args, Debug)]
struct BaselineArgs {
    /// Directory on the filesystem to measure (use the broker's data dir's filesystem).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// MiB copied over TCP loopback.
    #[arg(long, default_value_t = 2048)]
    tcp_mib: u64,
    /// MiB written per file test.
    #[arg(long, default_value_t = 2048)]
    file_mib: u64,
    /// Smaller sizes: 1 GiB over loopback, 512 MiB per file test.
    #[arg(long)]
    quick: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct CreateTopicArgs {
    /// Broker bootstrap address (`bootstrap.servers`).
    #[arg(long, default_value = "127.0.0.1:9092", env = "FJORD_BENCH_BOOTSTRAP")]
    bootstrap: String,
    /// Topic name.
    #[arg(long)]
    topic: String,
    /// Number of partitions.
    #[arg(long, short = 'p', default_value_t = 1)]
    partitions: i32,
    /// A librdkafka setting for the admin client, NAME=VALUE; repeatable (e.g.
    /// security.protocol=SSL, ssl.ca.location=ca.crt).
    #[arg(long, value_name = "NAME=VALUE")]
    client_config: Vec<String>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => cmd_run(*args),
        Command::Baseline(args) => cmd_baseline(args),
        Command::List => {
            for name in PRESETS {
                let brokers = workload::brokers_needed(name);
                let cluster = if brokers > 1 {
                    format!(" (needs {brokers} brokers)")
                } else {
                    String::new()
                };
                println!("{name:<24} {}{cluster}", workload::describe(name));
            }
            Ok(())
        }
        Command::CreateTopic(a) => {
            let client_config = key_values("--client-config", &a.client_config)?;
            load::create_topic(
                &a.bootstrap,
                &client_config,
                &a.topic,
                a.partitions,
                1,
                false,
                &[],
            )?;
            eprintln!("created {} with {} partitions", a.topic, a.partitions);
            Ok(())
        }
    }
}

fn build_workload(a: &RunArgs) -> Result<Workload> {
    let mut w = match &a.workload {
        Some(name) => preset(name, a.quick).with_context(|| format!("unknown workload {name}"))?,
        None => Workload {
            name: "custom".to_string(),
            partitions: 1,
            message_size: 100,
            acks: "1".to_string(),
            producers: 1,
            consumers: 1,
            rate_mb_s: None,
            compression: "none".to_string(),
            linger_ms: 5,
            duration_s: if a.quick {
                workload::QUICK_DURATION_S
            } else {
                workload::FULL_DURATION_S
            },
            messages: None,
            backlog_bytes: None,
            replication_factor: 1,
            min_insync_replicas: None,
            producer_quota_mb_s: None,
            security_protocol: "PLAINTEXT".to_string(),
        },
    };
    if let Some(v) = a.replication_factor {
        if v < 1 {
            bail!("--replication-factor must be at least 1");
        }
        w.replication_factor = v;
    }
    if let Some(v) = a.partitions {
        w.partitions = v;
    }
    if let Some(v) = a.message_size {
        w.message_size = v;
    }
    if let Some(v) = &a.acks {
        w.acks = v.clone();
    }
    if let Some(v) = a.producers {
        w.producers = v;
    }
    if let Some(v) = a.consumers {
        w.consumers = v;
    }
    if let Some(v) = a.rate_mb_s {
        if v <= 0.0 {
            bail!("--rate-mb-s must be positive");
        }
        w.rate_mb_s = Some(v);
    }
    if let Some(v) = &a.compression {
        w.compression = v.clone();
    }
    if let Some(v) = a.linger_ms {
        w.linger_ms = v;
    }
    if let Some(v) = a.duration {
        if v <= 0.0 {
            bail!("--duration must be positive");
        }
        w.duration_s = v;
    }
    if let Some(v) = a.messages {
        w.messages = Some(v);
    }
    if let Some(v) = a.producer_quota_mb_s {
        if v <= 0.0 {
            bail!("--producer-quota-mb-s must be positive");
        }
        w.producer_quota_mb_s = Some(v);
    }
    if let Some(v) = a.backlog_mib {
        w.backlog_bytes = Some(v << 20);
    }
    if let Some(v) = &a.security_protocol {
        w.security_protocol = v.clone();
    }
    if w.producer_quota_mb_s.is_some() && w.security_protocol != "PLAINTEXT" {
        // The quota is set with fjord-bench's own AlterClientQuotas request over plain TCP.
        bail!("a producer quota run needs security.protocol PLAINTEXT");
    }
    Ok(w)
}

fn cmd_run(a: RunArgs) -> Result<()> {
    let w = build_workload(&a)?;
    let opts = RunOptions {
        bootstrap: a.bootstrap.clone(),
        topic: a.topic.clone(),
        progress: !a.no_progress,
        max_in_flight_bytes: a.max_in_flight_mib << 20,
        keys: a.keys,
        idempotence: a.idempotence,
        replication_factor: w.replication_factor,
        topic_configs: topic_configs(&w, &a.topic_config)?,
        client_config: client_config(&w, &a.client_config)?,
    };
    let r = load::run(&w, &opts)?;
    let table = render_table(&r);
    if a.json {
        eprint!("{table}");
        println!(
            "{}",
            serde_json::to_string_pretty(&r).context("serializing the result")?
        );
    } else {
        print!("{table}");
    }
    Ok(())
}

fn cmd_baseline(a: BaselineArgs) -> Result<()> {
    let (tcp, file) = if a.quick {
        (1024, 512)
    } else {
        (a.tcp_mib, a.file_mib)
    };
    let b = baseline::run_all(tcp << 20, &a.dir, file << 20)?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&b).context("serializing the result")?
        );
    } else {
        println!(
            "TCP loopback copy:             {:>8.0} MB/s",
            b.tcp_loopback_mb_s
        );
        println!(
            "file write (page cache):       {:>8.0} MB/s",
            b.file_write_page_cache_mb_s
        );
        println!(
            "file write + fdatasync:        {:>8.0} MB/s",
            b.file_write_fdatasync_mb_s
        );
    }
    Ok(())
}

fn fmt_lat(p: &Option<Percentiles>) -> String {
    match p {
        Some(p) => format!(
            "p50 {:>8.2}  p99 {:>8.2}  p99.9 {:>8.2}  max {:>8.2} ms  (n={})",
            p.p50_ms, p.p99_ms, p.p999_ms, p.max_ms, p.count
        ),
        None => "-".to_string(),
    }
}

/// `NAME=VALUE` flags as pairs.
fn key_values(flag: &str, values: &[String]) -> Result<Vec<(String, String)>> {
    values
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("{flag} {kv}: expected NAME=VALUE"))
        })
        .collect()
}

/// The librdkafka settings every client of a run gets on top of its own: the workload's
/// `security.protocol` (unless a `--client-config` sets it), then every `--client-config`.
fn client_config(w: &Workload, flags: &[String]) -> Result<Vec<(String, String)>> {
    let mut settings = key_values("--client-config", flags)?;
    if !settings.iter().any(|(k, _)| k == "security.protocol") {
        settings.insert(
            0,
            ("security.protocol".to_string(), w.security_protocol.clone()),
        );
    }
    Ok(settings)
}

/// The topic configs of a run: the workload's `min.insync.replicas`, then every
/// `--topic-config NAME=VALUE` (which wins over the workload's).
fn topic_configs(w: &Workload, flags: &[String]) -> Result<Vec<(String, String)>> {
    let mut configs = key_values("--topic-config", flags)?;
    if let Some(min_isr) = w.min_insync_replicas {
        if !configs.iter().any(|(k, _)| k == "min.insync.replicas") {
            configs.insert(0, ("min.insync.replicas".to_string(), min_isr.to_string()));
        }
    }
    Ok(configs)
}

/// The human-readable report of one run.
fn render_table(r: &RunResult) -> String {
    let w = &r.workload;
    let mut s = String::new();
    let rate = w
        .rate_mb_s
        .map_or_else(|| "max".to_string(), |v| format!("{v} MB/s"));
    s.push_str(&format!(
        "\nworkload {}: {} partitions, {} B, acks={}, {} producer(s), {} consumer(s), rate {}, compression {}, replication factor {}, {}\n",
        w.name, w.partitions, w.message_size, w.acks, w.producers, w.consumers, rate, w.compression, w.replication_factor, w.security_protocol
    ));
    let row = |label: &str, t: &stats::Throughput| {
        format!(
            "  {label:<22} {:>10.1} MB/s {:>12.0} msg/s  ({} msgs in {:.2} s, {} errors)\n",
            t.mb_per_s, t.msgs_per_s, t.msgs, t.secs, t.errors
        )
    };
    let (plabel, clabel) = if w.backlog_bytes.is_some() {
        ("produce (backlog fill)", "consume (catch-up)")
    } else {
        ("produce", "consume")
    };
    s.push_str(&row(plabel, &r.produce));
    s.push_str(&row(clabel, &r.consume));
    s.push_str(&format!(
        "  {:<22} {}\n",
        "end-to-end latency",
        fmt_lat(&r.e2e_latency_ms)
    ));
    s.push_str(&format!(
        "  {:<22} {}\n",
        "produce-ack latency",
        fmt_lat(&r.ack_latency_ms)
    ));
    if let Some(q) = &r.quota {
        s.push_str(&format!(
            "  {:<22} {:>10.2} MB/s against a quota of {:.1} MB/s: {:.2}x (Kafka's ceiling for this length: {:.2}x)\n",
            "producer quota", q.achieved_mb_s, q.quota_mb_s, q.achieved_vs_quota, q.kafka_ceiling_vs_quota
        ));
    }
    for warning in &r.warnings {
        s.push_str(&format!("  warning: {warning}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_override_preset() {
        let cli = Cli::parse_from([
            "fjord-bench",
            "run",
            "--workload",
            "16p-1kb",
            "--quick",
            "--partitions",
            "4",
            "--rate-mb-s",
            "10",
        ]);
        let Command::Run(a) = cli.command else {
            panic!("expected run");
        };
        let w = build_workload(&a).expect("workload");
        assert_eq!(w.partitions, 4);
        assert_eq!(w.message_size, 1024);
        assert_eq!(w.rate_mb_s, Some(10.0));
        assert_eq!(w.duration_s, workload::QUICK_DURATION_S);
        assert_eq!(w.replication_factor, 1);
    }

    fn run_args(extra: &[&str]) -> RunArgs {
        let mut args = vec!["fjord-bench", "run"];
        args.extend_from_slice(extra);
        let Command::Run(a) = Cli::parse_from(args).command else {
            panic!("expected run");
        };
        *a
    }

    #[test]
    fn the_tls_presets_set_the_clients_security_protocol_and_flags_win() {
        let a = run_args(&[
            "-w",
            "16p-1kb-sasl-ssl",
            "--client-config",
            "sasl.username=admin",
        ]);
        let w = build_workload(&a).expect("workload");
        assert_eq!(w.security_protocol, "SASL_SSL");
        assert_eq!(w.partitions, 16);
        let settings = client_config(&w, &a.client_config).expect("settings");
        assert_eq!(
            settings,
            vec![
                ("security.protocol".to_string(), "SASL_SSL".to_string()),
                ("sasl.username".to_string(), "admin".to_string()),
            ]
        );
        // An explicit security.protocol is kept as given, not doubled.
        let a = run_args(&[
            "-w",
            "16p-1kb-ssl",
            "--client-config",
            "security.protocol=ssl",
        ]);
        let w = build_workload(&a).expect("workload");
        let settings = client_config(&w, &a.client_config).expect("settings");
        assert_eq!(
            settings,
            vec![("security.protocol".to_string(), "ssl".to_string())]
        );
        // Plain presets stay PLAINTEXT; --security-protocol overrides.
        let a = run_args(&["-w", "16p-1kb", "--security-protocol", "SSL"]);
        assert_eq!(
            build_workload(&a).expect("workload").security_protocol,
            "SSL"
        );
        let a = run_args(&["-w", "1p-100b"]);
        assert_eq!(
            build_workload(&a).expect("workload").security_protocol,
            "PLAINTEXT"
        );
    }

    #[test]
    fn bad_client_configs_and_a_secured_quota_run_are_refused() {
        let a = run_args(&["-w", "16p-1kb", "--client-config", "no-equals-sign"]);
        let w = build_workload(&a).expect("workload");
        assert!(client_config(&w, &a.client_config).is_err());
        let a = run_args(&["-w", "16p-1kb", "--client-config", "=value"]);
        assert!(client_config(&w, &a.client_config).is_err());
        let a = run_args(&["-w", "produce-quota", "--security-protocol", "SASL_SSL"]);
        assert!(build_workload(&a).is_err());
    }

    #[test]
    fn the_replicated_preset_sets_its_topic_and_flags_win() {
        let parse = |extra: &[&str]| {
            let mut args = vec!["fjord-bench", "run", "-w", "replicated-rf3-acks-all"];
            args.extend_from_slice(extra);
            let Command::Run(a) = Cli::parse_from(args).command else {
                panic!("expected run");
            };
            let w = build_workload(&a).expect("workload");
            let configs = topic_configs(&w, &a.topic_config).expect("configs");
            (w, configs)
        };
        let (w, configs) = parse(&[]);
        assert_eq!((w.replication_factor, w.acks.as_str()), (3, "all"));
        assert_eq!(
            configs,
            vec![("min.insync.replicas".to_string(), "2".to_string())]
        );
        let (w, configs) = parse(&[
            "--replication-factor",
            "2",
            "--topic-config",
            "min.insync.replicas=1",
        ]);
        assert_eq!(w.replication_factor, 2);
        assert_eq!(
            configs,
            vec![("min.insync.replicas".to_string(), "1".to_string())]
        );
    }
}
