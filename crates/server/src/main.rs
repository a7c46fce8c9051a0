//! # fjord
//!
//! One binary: `fjord serve` runs a Kafka-compatible broker; `fjord group`, `fjord topic`,
//! `fjord config` and `fjord txn` administer it (or any Kafka). Settings use Kafka's names and
//! come from defaults, a TOML file, `FJORD_*` environment variables and flags, in that order of
//! precedence (see `fjord serve --help`).

mod admin;
mod client;
mod cluster_cli;
mod connection;
mod consume_cli;
mod consumer_group;
mod group_cli;
mod output;
mod produce_cli;
mod server;
mod settings;
mod splice;
mod topic_cli;
mod txn_cli;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fjord_broker::config::SETTINGS;
use fjord_broker::{Broker, BrokerConfig};
use tracing::info;

#[global_allocator]
static ALLOCATOR: fjord_protocol::alloc::HostileSizeGuard = fjord_protocol::alloc::HostileSizeGuard;

#[derive(Parser)]
#[command(name = "fjord", version, about = "Fjord: a Kafka-compatible event streaming broker in one binary.", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker. Any Kafka client can connect to it unchanged.
    #[command(after_long_help = settings_help())]
    Serve(ServeArgs),
    /// Consumer groups on any Kafka-compatible broker: list, describe (with lag), delete,
    /// reset-offsets (dry run unless --execute)
    Group(group_cli::GroupArgs),
    /// Topics on any Kafka-compatible broker: list, create, describe (offsets and configs),
    /// alter-config, delete
    Topic(topic_cli::TopicArgs),
    /// Broker settings and topic configs with their sources: describe, alter
    Config(topic_cli::ConfigArgs),
    /// Transactions on any Kafka-compatible broker: list, describe a transactional id,
    /// producers of a partition (like kafka-transactions.sh)
    Txn(txn_cli::TxnArgs),
    /// The cluster as the connected broker describes it: id, controller, brokers, API versions
    Cluster(cluster_cli::ClusterArgs),
    /// Produce records from stdin or a file (text lines or JSON objects), like kcat -P
    Produce(produce_cli::ProduceArgs),
    /// Consume records and print them (text template or JSON lines), alone or in a consumer
    /// group, like kcat -C
    Consume(consume_cli::ConsumeArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Directory for logs and metadata [default: ./fjord-data] (setting: data.dir, Kafka: log.dirs)
    #[arg(long, value_name = "DIR", env = "FJORD_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address of the Kafka listener [default: 127.0.0.1:9092] (setting: listen, Kafka: listeners)
    #[arg(long, value_name = "HOST:PORT", env = "FJORD_LISTEN")]
    listen: Option<String>,
    /// Address given to clients in Metadata [default: the listen address] (Kafka: advertised.listeners)
    #[arg(long, value_name = "HOST:PORT", env = "FJORD_ADVERTISED_LISTENER")]
    advertised_listener: Option<String>,
    /// This broker's id [default: 1] (Kafka: node.id)
    #[arg(long, value_name = "N", env = "FJORD_NODE_ID")]
    node_id: Option<i32>,
    /// TOML file with settings under Kafka's names, e.g. `"num.partitions" = 3`
    #[arg(long, value_name = "FILE", env = "FJORD_CONFIG")]
    config: Option<PathBuf>,
    /// Set any broker setting, e.g. `--set message.max.bytes=2097152`; repeatable
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

fn settings_help() -> String {
    let mut help = String::from(
        "Settings (Kafka names; set in the --config file, as FJORD_<KEY> environment variables with dots as underscores, or with --set):\n",
    );
    for spec in SETTINGS {
        help.push_str(&format!(
            "  {:<45} default {:<20} {}{}\n",
            spec.key,
            if spec.default.is_empty() {
                "\"\""
            } else {
                spec.default
            },
            spec.doc,
            if fjord_broker::dynamic_config::is_dynamic(spec.key) {
                " [dynamic]"
            } else {
                ""
            }
        ));
    }
    help.push_str("\nPrecedence: defaults < --config file < FJORD_* environment < flags < dynamic broker configs.\n[dynamic]: can also be changed while running (fjord config alter --broker N | --broker-defaults), kept in broker-configs.json in the data dir.\nSIGTERM or Ctrl-C: stop accepting, finish in-flight requests, flush and close logs, exit 0.\nLog level: RUST_LOG (default info), e.g. RUST_LOG=fjord=debug.\n");
    help
}

fn merged_settings(args: &ServeArgs) -> anyhow::Result<BTreeMap<String, String>> {
    let mut merged = BTreeMap::new();
    if let Some(path) = &args.config {
        merged.extend(settings::read_config_file(path)?);
    }
    merged.extend(settings::from_environment(|name| std::env::var(name).ok()));
    for assignment in &args.set {
        let (key, value) = settings::parse_assignment(assignment)?;
        merged.insert(key, value);
    }
    let flags = [
        (
            "data.dir",
            args.data_dir.as_ref().map(|d| d.display().to_string()),
        ),
        ("listen", args.listen.clone()),
        ("advertised.listener", args.advertised_listener.clone()),
        ("node.id", args.node_id.map(|n| n.to_string())),
    ];
    for (key, value) in flags {
        if let Some(value) = value {
            merged.insert(key.to_string(), value);
        }
    }
    Ok(merged)
}

fn main() -> anyhow::Result<()> {
    fjord_protocol::alloc::keep_freed_memory_for_reuse();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let admin_result = match cli.command {
        Command::Serve(args) => return serve(args),
        Command::Group(args) => group_cli::run(args),
        Command::Topic(args) => topic_cli::run_topic(args),
        Command::Config(args) => topic_cli::run_config(args),
        Command::Txn(args) => txn_cli::run(args),
        Command::Cluster(args) => cluster_cli::run(args),
        Command::Produce(args) => produce_cli::run(args),
        Command::Consume(args) => consume_cli::run(args),
    };
    // Admin commands report failures as one line (with causes), not a backtrace.
    if let Err(err) = admin_result {
        eprintln!("Error: {err:#}");
        std::process::exit(1);
    }
    Ok(())
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = BrokerConfig::from_settings(&merged_settings(&args)?)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("fjord")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        // Recover first, bind second: once the port accepts, the broker can serve.
        let broker = Arc::new(Broker::open(config.clone()).with_context(|| {
            format!("cannot open data directory {}", config.data_dir.display())
        })?);
        let listener = tokio::net::TcpListener::bind(&config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        info!(
            listen = %config.listen,
            advertised = %format!("{}:{}", config.advertised_host, config.advertised_port),
            data_dir = %config.data_dir.display(),
            node_id = config.node_id,
            cluster_id = broker.cluster_id(),
            "fjord broker ready"
        );
        server::run(listener, broker, shutdown_signal()).await
    })
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    info!("shutdown signal received");
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
