//! # fjord
//!
//! One binary: `fjord serve` runs a Kafka-compatible broker; `fjord group`, `fjord topic`,
//! `fjord config`, `fjord txn`, `fjord acl`, `fjord user` and `fjord quota` administer it (or
//! any Kafka). Settings use Kafka's names and
//! come from defaults, a TOML file, `FJORD_*` environment variables and flags, in that order of
//! precedence (see `fjord serve --help`).

mod acl_cli;
mod admin;
mod client;
mod client_security;
mod cluster_cli;
mod connection;
mod consume_cli;
// The cluster wiring (issue 8) uses them; until then only their tests do.
mod consumer_group;
#[cfg_attr(not(test), allow(dead_code))]
mod controller_client;
#[cfg_attr(not(test), allow(dead_code))]
mod controller_listener;
mod controller_security;
mod group_cli;
mod http;
mod metadata_service;
mod node_client;
mod observer_service;
mod output;
mod partition_cli;
mod produce_cli;
mod quota_cli;
// The cluster wiring (issue 8) uses it; until then only its tests do.
#[cfg_attr(not(test), allow(dead_code))]
mod raft_transport;
mod secure;
mod server;
mod settings;
mod splice;
mod test_hooks;
mod tls;
mod topic_cli;
mod txn_cli;
mod user_cli;

use std::path::PathBuf;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use fjord_broker::config::SETTINGS;
use fjord_broker::BrokerConfig;
use settings::{MergedSettings, Origin};
use tracing::{info, warn};

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
    /// The cluster: id, brokers, API versions (info), health and the metadata quorum
    /// (status, describe-quorum), decommissioning (unregister)
    Cluster(cluster_cli::ClusterArgs),
    /// Partitions on any Kafka-compatible cluster: describe (leader, replicas, ISR), elect
    /// leaders, reassign replicas with Kafka's plan format, rebalance
    Partition(partition_cli::PartitionArgs),
    /// ACLs on any Kafka-compatible broker: list, create, delete (like kafka-acls.sh, with
    /// its --producer/--consumer shortcuts)
    Acl(acl_cli::AclArgs),
    /// SCRAM users (SASL/SCRAM-SHA-256 and -512 credentials) on any Kafka-compatible broker:
    /// list, describe, create (the password is salted locally), delete
    User(user_cli::UserArgs),
    /// Client quotas per user and/or client id (producer_byte_rate, consumer_byte_rate,
    /// request_percentage) on any Kafka-compatible broker: list, describe, set, delete
    Quota(quota_cli::QuotaArgs),
    /// Produce records from stdin or a file (text lines or JSON objects), like kcat -P
    Produce(produce_cli::ProduceArgs),
    /// Consume records and print them (text template or JSON lines), alone or in a consumer
    /// group, like kcat -C
    Consume(consume_cli::ConsumeArgs),
    /// Print a shell completion script for fjord to stdout
    #[command(after_long_help = COMPLETIONS_HELP)]
    Completions {
        /// Shell to complete for
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

const COMPLETIONS_HELP: &str = "Install:
  bash:       fjord completions bash > ~/.local/share/bash-completion/completions/fjord
  zsh:        fjord completions zsh > ~/.zfunc/_fjord   (with fpath+=~/.zfunc before compinit in ~/.zshrc)
  fish:       fjord completions fish > ~/.config/fish/completions/fjord.fish
  elvish:     fjord completions elvish >> ~/.config/elvish/rc.elv
  powershell: fjord completions powershell >> $PROFILE
Or load into the current shell only, e.g. bash: source <(fjord completions bash)";

// The dedicated flags have no clap `env`: their variables (FJORD_DATA_DIR, ...) are the
// settings' own, read with the other FJORD_* variables, so a value's source is known exactly.
#[derive(clap::Args)]
struct ServeArgs {
    /// Directory for logs and metadata [default: ./fjord-data] (setting: data.dir, env FJORD_DATA_DIR, Kafka: log.dirs)
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address of the Kafka listener [default: 127.0.0.1:9092] (setting: listen, env FJORD_LISTEN, Kafka: listeners)
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// Address of the HTTP listener for /metrics (Prometheus), /health/live and /health/ready
    /// [default: 127.0.0.1:9644] (setting: metrics.listen, env FJORD_METRICS_LISTEN)
    #[arg(long, value_name = "HOST:PORT")]
    metrics_listen: Option<String>,
    /// Address given to clients in Metadata [default: the listen address] (setting: advertised.listener, env FJORD_ADVERTISED_LISTENER, Kafka: advertised.listeners)
    #[arg(long, value_name = "HOST:PORT")]
    advertised_listener: Option<String>,
    /// This broker's id [default: 1] (setting: node.id, env FJORD_NODE_ID, Kafka: node.id)
    #[arg(long, value_name = "N")]
    node_id: Option<i32>,
    /// What this node runs: broker,controller (default), broker or controller (setting:
    /// process.roles, env FJORD_PROCESS_ROLES)
    #[arg(long, value_name = "ROLES")]
    process_roles: Option<String>,
    /// Address of the controller listener; needed on a controller of a multi-node quorum
    /// (setting: controller.listen, env FJORD_CONTROLLER_LISTEN)
    #[arg(long, value_name = "HOST:PORT")]
    controller_listen: Option<String>,
    /// The controllers as ID@HOST:PORT,... [default: this node alone] (setting:
    /// controller.quorum.voters, env FJORD_CONTROLLER_QUORUM_VOTERS)
    #[arg(long, value_name = "VOTERS")]
    controller_quorum_voters: Option<String>,
    /// This broker's rack, for replica placement and fetch-from-follower (setting: broker.rack,
    /// env FJORD_BROKER_RACK)
    #[arg(long, value_name = "RACK")]
    broker_rack: Option<String>,
    /// Secure in one step: creates once (in DATA_DIR/security) a CA, a broker certificate and
    /// the `admin` SCRAM user, serves SASL_SSL (SCRAM-SHA-256/512) on the listen address with
    /// the ACL authorizer on and User:admin as super user, and prints client settings for
    /// librdkafka, kafka-python and the Java client. Settings given explicitly still win,
    /// except the listener, which becomes SASL_SSL.
    #[arg(long)]
    secure: bool,
    /// TOML file with settings under Kafka's names, e.g. `"num.partitions" = 3`
    #[arg(long, value_name = "FILE", env = "FJORD_CONFIG")]
    config: Option<PathBuf>,
    /// Set any broker setting, e.g. `--set message.max.bytes=2097152`; repeatable
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Print every setting's effective value and its source (default, config file, env, flag,
    /// dynamic broker config) as text or json, then exit without opening the data directory
    /// or binding anything
    #[arg(
        long,
        value_name = "FORMAT",
        value_enum,
        num_args = 0..=1,
        default_missing_value = "text"
    )]
    print_config: Option<output::OutputFormat>,
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
    help.push_str("\nPrecedence: defaults < --config file < FJORD_* environment < flags < dynamic broker configs.\nUnknown keys and misspelled FJORD_* variables are refused at start. --print-config shows every effective value and its source; fjord.toml in the repository is a commented sample with every setting.\n[dynamic]: can also be changed while running (fjord config alter --broker N | --broker-defaults), kept in broker-configs.json in the data dir.\nSIGTERM or Ctrl-C: stop accepting, finish in-flight requests, flush and close logs, exit 0.\nLog level: RUST_LOG (default info), e.g. RUST_LOG=fjord=debug.\n");
    help
}

/// The settings from the config file, `FJORD_*` variables, `--set` and the dedicated flags,
/// in that order of precedence, each with where it came from.
fn merged_settings(args: &ServeArgs) -> anyhow::Result<MergedSettings> {
    let mut merged = MergedSettings::default();
    if let Some(path) = &args.config {
        let from_file = settings::read_config_file(path)?;
        merged.extend(from_file, |_| Origin::ConfigFile(path.clone()));
    }
    let from_env = settings::from_environment(|name| std::env::var(name).ok());
    merged.extend(from_env, |key| Origin::Env(settings::env_var_name(key)));
    for assignment in &args.set {
        let (key, value) = settings::parse_assignment(assignment)?;
        merged.insert(key, value, Origin::SetFlag);
    }
    let flags = [
        (
            "data.dir",
            "--data-dir",
            args.data_dir.as_ref().map(|d| d.display().to_string()),
        ),
        ("listen", "--listen", args.listen.clone()),
        (
            "metrics.listen",
            "--metrics-listen",
            args.metrics_listen.clone(),
        ),
        (
            "advertised.listener",
            "--advertised-listener",
            args.advertised_listener.clone(),
        ),
        ("node.id", "--node-id", args.node_id.map(|n| n.to_string())),
        (
            "process.roles",
            "--process-roles",
            args.process_roles.clone(),
        ),
        (
            "controller.listen",
            "--controller-listen",
            args.controller_listen.clone(),
        ),
        (
            "controller.quorum.voters",
            "--controller-quorum-voters",
            args.controller_quorum_voters.clone(),
        ),
        ("broker.rack", "--broker-rack", args.broker_rack.clone()),
    ];
    for (key, flag, value) in flags {
        if let Some(value) = value {
            merged.insert(key.to_string(), value, Origin::Flag(flag));
        }
    }
    Ok(merged)
}

/// The validated static configuration, as a start would use it (before dynamic configs), and
/// the merged settings it came from. Fails on a misspelled `FJORD_*` variable, an unknown key
/// or an invalid value, naming it and where it was given. The hidden test hooks are taken out
/// of the settings first (see `test_hooks`).
type StaticConfig = (
    BrokerConfig,
    MergedSettings,
    test_hooks::TestHooks,
    Option<server::SecureAdmin>,
);

fn static_config(args: &ServeArgs) -> anyhow::Result<StaticConfig> {
    let env_names = std::env::vars_os().filter_map(|(name, _)| name.into_string().ok());
    for name in settings::check_environment_names(env_names)? {
        warn!(variable = %name, "ignoring an environment variable that is no fjord setting");
    }
    let mut merged = merged_settings(args)?;
    let secure_admin = if args.secure {
        Some(apply_secure(&mut merged)?)
    } else {
        None
    };
    let hooks = test_hooks::take_test_hooks(&mut merged, |name| std::env::var(name).ok())?;
    merged.check_known_keys()?;
    let config = BrokerConfig::from_settings(&merged.values).map_err(|err| merged.explain(err))?;
    Ok((config, merged, hooks, secure_admin))
}

/// `--secure`: creates or loads the security material and puts its settings under the merged
/// ones (explicit settings win, except the listener, which becomes SASL_SSL on the same
/// address). Returns what the server needs once ready: the admin user to create and the
/// client settings to print.
fn apply_secure(merged: &mut MergedSettings) -> anyhow::Result<server::SecureAdmin> {
    let data_dir = merged
        .values
        .get("data.dir")
        .cloned()
        .unwrap_or_else(|| "./fjord-data".to_string());
    let listen = merged
        .values
        .get("listen")
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:9092".to_string());
    let first = listen.split(',').next().unwrap_or_default().trim();
    let address = first.rsplit("://").next().unwrap_or(first);
    let (host, port) = address
        .rsplit_once(':')
        .with_context(|| format!("--secure: cannot read HOST:PORT from listen {listen:?}"))?;
    let port: u16 = port
        .parse()
        .with_context(|| format!("--secure: bad port in listen {listen:?}"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let mut hosts = vec![host.clone()];
    if let Some(advertised) = merged.values.get("advertised.listener") {
        let advertised = advertised.rsplit("://").next().unwrap_or(advertised);
        if let Some((advertised_host, _)) = advertised.rsplit_once(':') {
            hosts.push(advertised_host.to_string());
        }
    }
    let setup = secure::SecureSetup::load_or_create(std::path::Path::new(&data_dir), &hosts)?;
    if setup.created {
        info!(dir = %setup.dir.display(), "--secure: created a CA, a broker certificate and the admin user's password");
    }
    for (key, value) in setup.broker_settings(&host, port) {
        let (key, value) = fjord_broker::config::canonical_setting(&key, &value);
        if key == "listen" || !merged.values.contains_key(&key) {
            merged.insert(key, value, Origin::Flag("--secure"));
        }
    }
    let bootstrap_host = if host == "0.0.0.0" || host == "::" {
        "127.0.0.1".to_string()
    } else {
        host
    };
    let bootstrap = if bootstrap_host.contains(':') {
        format!("[{bootstrap_host}]:{port}")
    } else {
        format!("{bootstrap_host}:{port}")
    };
    Ok(server::SecureAdmin {
        user: secure::ADMIN_USER.to_string(),
        password: setup.admin_password.clone(),
        iterations: secure::ADMIN_ITERATIONS,
        banner: setup.client_settings_text(&bootstrap),
    })
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
        .with_ansi(stderr_wants_colour())
        .init();
    if !matches!(cli.command, Command::Serve(_)) {
        die_quietly_on_closed_stdout();
    }
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Group(args) => group_cli::run(args),
        Command::Topic(args) => topic_cli::run_topic(args),
        Command::Config(args) => topic_cli::run_config(args),
        Command::Txn(args) => txn_cli::run(args),
        Command::Cluster(args) => cluster_cli::run(args),
        Command::Partition(args) => partition_cli::run(args),
        Command::Produce(args) => produce_cli::run(args),
        Command::Consume(args) => consume_cli::run(args),
        Command::Acl(args) => acl_cli::run(args),
        Command::User(args) => user_cli::run(args),
        Command::Quota(args) => quota_cli::run(args),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "fjord", &mut std::io::stdout());
            Ok(())
        }
    };
    // Every command reports a failure as one line (causes joined with ": "), not a backtrace.
    if let Err(err) = result {
        eprintln!("Error: {err:#}");
        std::process::exit(1);
    }
    Ok(())
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let (config, merged, hooks, secure_admin) = static_config(&args)?;
    if let Some(format) = args.print_config {
        return settings::print_effective_settings(&merged, &config, format);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("fjord")
        .build()
        .context("cannot start the async runtime")?;
    test_hooks::install(&hooks, config.node_id);
    runtime.block_on(server::serve(
        config,
        hooks.peer_addresses,
        secure_admin,
        shutdown_signal(),
    ))
}

/// Client commands piped into `head` and the like end silently when the reader goes away, as
/// Unix tools do, instead of panicking in `println!`. Not for `serve`: a broker must see EPIPE
/// on a closed client socket as an error, never die of it.
fn die_quietly_on_closed_stdout() {
    #[cfg(unix)]
    // SAFETY: called before any thread is started; restoring the default disposition of
    // SIGPIPE affects nothing but how a write to a closed pipe ends the process.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Colours only on a terminal, and never with `NO_COLOR` set (no-color.org): log files and
/// journald get plain text.
fn stderr_wants_colour() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
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

    /// Every subcommand and argument below `command`, as "fjord serve --listen", that has no
    /// help text. clap's own `help` and `version` are exempt.
    fn missing_help(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            if help.trim().is_empty() {
                missing.push(format!("{path} {id}"));
            }
        }
        for sub in command.get_subcommands() {
            let sub_path = format!("{path} {}", sub.get_name());
            if sub.get_name() == "help" {
                continue;
            }
            let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
            if about.trim().is_empty() {
                missing.push(sub_path.clone());
            }
            missing_help(sub, &sub_path, missing);
        }
    }

    #[test]
    fn every_subcommand_and_argument_has_help() {
        let mut missing = Vec::new();
        missing_help(&super::Cli::command(), "fjord", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:?}");
    }

    #[test]
    fn the_help_check_finds_missing_help() {
        let command = clap::Command::new("t")
            .arg(clap::Arg::new("documented").long("documented").help("x"))
            .subcommand(clap::Command::new("bare").arg(clap::Arg::new("undocumented")));
        let mut missing = Vec::new();
        missing_help(&command, "t", &mut missing);
        assert_eq!(missing, ["t bare", "t bare undocumented"]);
    }
}
