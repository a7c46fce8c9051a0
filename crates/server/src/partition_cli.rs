//! `fjord partition ...`: partition leadership and replica placement against any Kafka
//! (like `kafka-topics.sh --describe`, `kafka-leader-election.sh` and
//! `kafka-reassign-partitions.sh`), with plain Kafka requests: Metadata for the current state,
//! ElectLeaders (43), AlterPartitionReassignments (45) and ListPartitionReassignments (46).
//!
//! Reassignment plans are Kafka's JSON format
//! (`{"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[1,2,3]}]}`, optional
//! `log_dirs` accepted and ignored), so plans move between Fjord and Kafka tools.
//! `--generate` proposes a plan like Kafka's: partition `p` of each topic (counting on across
//! topics) is led by the `p`-th broker of the list, its followers striped after it with a
//! shift that grows every full round (Kafka's `AdminUtils.assignReplicasToBrokers` without
//! the random start, so a plan is reproducible); the replication factor of each partition is
//! kept. Racks are not considered.
//!
//! `--execute --throttle BYTES_PER_S` throttles the moves as Kafka's tool does (KIP-73), with
//! IncrementalAlterConfigs (44): per topic, `leader.replication.throttled.replicas` lists the
//! partitions' current replicas (`partition:broker`, the possible sources) and
//! `follower.replication.throttled.replicas` the new ones (the destinations); every broker
//! involved gets `leader.replication.throttled.rate` and `follower.replication.throttled.rate`
//! (sent to that broker, as its own dynamic config). `--verify` removes all of them, on every
//! broker and every topic of the plan, once no reassignment of the plan is in progress
//! (`--preserve-throttles` keeps them).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use fjord_protocol::kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use fjord_protocol::kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use fjord_protocol::kafka_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsTopics;
use fjord_protocol::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use fjord_protocol::kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId, ElectLeadersRequest,
    ListPartitionReassignmentsRequest, MetadataRequest, MetadataResponse, TopicName,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ApiKey, RequestKind, ResponseKind};
use serde_json::{json, Value};

use crate::admin::{check, error_name, AdminClient, ConnectArgs};
use crate::output::{print_json, print_table, OutputFormat};

/// Largest plan file read (a plan of 100,000 partitions is a few MB).
const PLAN_SIZE_BYTES_MAX: u64 = 64 << 20;

#[derive(Args)]
pub struct PartitionArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(subcommand)]
    command: PartitionCommand,
}

#[derive(Subcommand)]
enum PartitionCommand {
    /// Leader, leader epoch, replicas, ISR and offline replicas of every partition (of one
    /// topic, or of all)
    Describe {
        /// Only this topic [default: all topics]
        topic: Option<String>,
        /// Only partitions whose ISR is smaller than their replica list
        #[arg(long)]
        under_replicated: bool,
    },
    /// Elect leaders: the preferred replica (first in the replica list) or, unclean, any live
    /// replica even outside the ISR (may lose data)
    Elect {
        /// Election type
        #[arg(long = "type", value_enum, value_name = "TYPE")]
        election_type: ElectionKind,
        /// Topic of the partitions to elect (all its partitions without --partition)
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        topic: Option<String>,
        /// Partition of --topic
        #[arg(long, requires = "topic")]
        partition: Option<i32>,
        /// Every partition of the cluster
        #[arg(long)]
        all: bool,
    },
    /// Move replicas with a plan in Kafka's reassignment JSON format: --generate a plan,
    /// then --execute, --verify or --cancel it
    Reassign(ReassignArgs),
    /// Spread the replicas of every topic (or of --topics) evenly over the brokers and start
    /// moving them (generate + execute); --dry-run only prints the plan
    Rebalance {
        /// Topics to rebalance, comma-separated [default: all topics]
        #[arg(long, value_delimiter = ',', value_name = "T1,T2")]
        topics: Vec<String>,
        /// Brokers to place replicas on, comma-separated [default: every live broker]
        #[arg(long, value_delimiter = ',', value_name = "1,2,3")]
        brokers: Vec<i32>,
        /// Print the plan without executing it
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ElectionKind {
    /// The first replica of the replica list, if it is in the ISR
    Preferred,
    /// Any live replica, even one outside the ISR (may lose acknowledged records)
    Unclean,
}

#[derive(Args)]
#[command(group = clap::ArgGroup::new("action").required(true).args(["generate", "execute", "verify", "cancel"]))]
struct ReassignArgs {
    /// Reassignment plan (Kafka's JSON format) for --execute, --verify and --cancel
    #[arg(long, value_name = "FILE", required_unless_present = "generate")]
    plan: Option<PathBuf>,
    /// Start the reassignments of the plan; prints the current assignment first (keep it to
    /// roll back)
    #[arg(long)]
    execute: bool,
    /// Report which reassignments of the plan are complete or still in progress; once none is,
    /// remove the replication throttles (unless --preserve-throttles)
    #[arg(long)]
    verify: bool,
    /// With --execute: limit the replication traffic of the moving replicas to this many
    /// bytes per second (leader and follower side, on every broker involved) until --verify
    /// finds the reassignment complete
    #[arg(long, value_name = "BYTES_PER_S", requires = "execute")]
    throttle: Option<u64>,
    /// With --verify: keep the replication throttles even when the reassignment is complete
    #[arg(long, requires = "verify")]
    preserve_throttles: bool,
    /// Cancel the reassignments of the plan that are still in progress
    #[arg(long)]
    cancel: bool,
    /// Print the current assignment of --topics and a proposed plan spreading them over
    /// --brokers
    #[arg(long, requires_all = ["topics", "brokers"])]
    generate: bool,
    /// Topics for --generate, comma-separated
    #[arg(long, value_delimiter = ',', value_name = "T1,T2")]
    topics: Vec<String>,
    /// Brokers for --generate, comma-separated
    #[arg(long, value_delimiter = ',', value_name = "1,2,3")]
    brokers: Vec<i32>,
}

pub fn run(args: PartitionArgs) -> Result<()> {
    crate::client::check_address(args.connect.bootstrap())?;
    let output = args.connect.output();
    let mut client = args.connect.connect()?;
    match args.command {
        PartitionCommand::Describe {
            topic,
            under_replicated,
        } => describe(&mut client, topic, under_replicated, output),
        PartitionCommand::Elect {
            election_type,
            topic,
            partition,
            all,
        } => {
            let target = if all {
                None
            } else {
                let topic = topic.ok_or_else(|| anyhow!("name --topic or --all"))?;
                Some((topic, partition))
            };
            elect(&mut client, election_type, target, output)
        }
        PartitionCommand::Reassign(reassign) => {
            if reassign.generate {
                let current = current_assignment(&mut client, Some(&reassign.topics))?;
                let proposed = generate(&current, &reassign.brokers)?;
                return print_generated(&current, &proposed, output);
            }
            let path = reassign
                .plan
                .as_deref()
                .ok_or_else(|| anyhow!("--plan FILE is required"))?;
            let plan = read_plan(path)?;
            if reassign.execute {
                execute(&mut client, &plan, reassign.throttle, output)
            } else if reassign.verify {
                verify(&mut client, &plan, reassign.preserve_throttles, output)
            } else {
                cancel(&mut client, &plan, output)
            }
        }
        PartitionCommand::Rebalance {
            topics,
            brokers,
            dry_run,
        } => rebalance(&mut client, &topics, brokers, dry_run, output),
    }
}

// ------------------------------------------------------------------------------- metadata

/// Metadata of `topics` (all topics for `None`), without auto-creation.
pub fn metadata(client: &mut AdminClient, topics: Option<&[String]>) -> Result<MetadataResponse> {
    let request = MetadataRequest::default()
        .with_topics(topics.map(|names| {
            names
                .iter()
                .map(|n| {
                    MetadataRequestTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(n.clone()))))
                })
                .collect()
        }))
        .with_allow_auto_topic_creation(false);
    match client.send(ApiKey::Metadata, 12, RequestKind::Metadata(request))? {
        ResponseKind::Metadata(response) => Ok(response),
        _ => bail!("unexpected answer to Metadata"),
    }
}

/// One partition as Metadata describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionState {
    pub topic: String,
    pub partition: i32,
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub offline: Vec<i32>,
    /// Metadata's partition error (LEADER_NOT_AVAILABLE for a leaderless one), 0 if none.
    pub error_code: i16,
}

impl PartitionState {
    pub fn under_replicated(&self) -> bool {
        self.isr.len() < self.replicas.len()
    }

    pub fn is_offline(&self) -> bool {
        self.leader < 0
    }
}

/// Every partition of `response`, sorted by topic and partition; fails on a topic error
/// (e.g. UNKNOWN_TOPIC_OR_PARTITION for a named topic).
pub fn partitions_of(response: &MetadataResponse) -> Result<Vec<PartitionState>> {
    let mut out = Vec::new();
    for topic in &response.topics {
        let name = topic
            .name
            .as_ref()
            .map(|n| n.to_string())
            .unwrap_or_default();
        if topic.error_code != 0 {
            bail!("topic {name:?}: {}", error_name(topic.error_code));
        }
        for p in &topic.partitions {
            let ids = |ids: &[BrokerId]| ids.iter().map(|b| b.0).collect::<Vec<i32>>();
            out.push(PartitionState {
                topic: name.clone(),
                partition: p.partition_index,
                leader: p.leader_id.0,
                leader_epoch: p.leader_epoch,
                replicas: ids(&p.replica_nodes),
                isr: ids(&p.isr_nodes),
                offline: ids(&p.offline_replicas),
                error_code: p.error_code,
            });
        }
    }
    out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(out)
}

fn ids_text(ids: &[i32]) -> String {
    if ids.is_empty() {
        return "-".to_string();
    }
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

fn describe(
    client: &mut AdminClient,
    topic: Option<String>,
    under_replicated: bool,
    output: OutputFormat,
) -> Result<()> {
    let topics = topic.map(|t| vec![t]);
    let partitions: Vec<PartitionState> = partitions_of(&metadata(client, topics.as_deref())?)?
        .into_iter()
        .filter(|p| !under_replicated || p.under_replicated())
        .collect();
    if output == OutputFormat::Json {
        let partitions: Vec<Value> = partitions
            .iter()
            .map(|p| {
                json!({
                    "topic": p.topic,
                    "partition": p.partition,
                    "leader": (p.leader >= 0).then_some(p.leader),
                    "leader_epoch": p.leader_epoch,
                    "replicas": p.replicas,
                    "isr": p.isr,
                    "offline_replicas": p.offline,
                    "under_replicated": p.under_replicated(),
                })
            })
            .collect();
        return print_json(&json!({ "partitions": partitions }));
    }
    let rows: Vec<Vec<String>> = partitions
        .iter()
        .map(|p| {
            vec![
                p.topic.clone(),
                p.partition.to_string(),
                if p.leader >= 0 {
                    p.leader.to_string()
                } else {
                    "none".to_string()
                },
                p.leader_epoch.to_string(),
                ids_text(&p.replicas),
                ids_text(&p.isr),
                ids_text(&p.offline),
            ]
        })
        .collect();
    print_table(
        &[
            "TOPIC",
            "PARTITION",
            "LEADER",
            "EPOCH",
            "REPLICAS",
            "ISR",
            "OFFLINE",
        ],
        &rows,
    );
    Ok(())
}

// ------------------------------------------------------------------------------- elections

fn elect(
    client: &mut AdminClient,
    kind: ElectionKind,
    target: Option<(String, Option<i32>)>,
    output: OutputFormat,
) -> Result<()> {
    if !client.supports(ApiKey::ElectLeaders) {
        bail!("{} does not support ElectLeaders", client.address());
    }
    if kind == ElectionKind::Unclean && client.version_for(ApiKey::ElectLeaders, 2) < 1 {
        bail!(
            "{} supports preferred elections only (ElectLeaders v0)",
            client.address()
        );
    }
    let topic_partitions = match target {
        None => None,
        Some((topic, Some(partition))) => Some(vec![(topic, vec![partition])]),
        Some((topic, None)) => {
            let partitions = partitions_of(&metadata(client, Some(std::slice::from_ref(&topic)))?)?
                .iter()
                .map(|p| p.partition)
                .collect();
            Some(vec![(topic, partitions)])
        }
    };
    let request = ElectLeadersRequest::default()
        .with_election_type(match kind {
            ElectionKind::Preferred => 0,
            ElectionKind::Unclean => 1,
        })
        .with_timeout_ms(i32::try_from(client_timeout_ms(client)).unwrap_or(i32::MAX))
        .with_topic_partitions(topic_partitions.map(|topics| {
            topics
                .into_iter()
                .map(|(topic, partitions)| {
                    TopicPartitions::default()
                        .with_topic(TopicName(StrBytes::from_string(topic)))
                        .with_partitions(partitions)
                })
                .collect()
        }));
    let ResponseKind::ElectLeaders(response) =
        client.send(ApiKey::ElectLeaders, 2, RequestKind::ElectLeaders(request))?
    else {
        bail!("unexpected answer to ElectLeaders");
    };
    check(response.error_code, "ElectLeaders")?;
    let mut results: Vec<(String, i32, i16, Option<String>)> = response
        .replica_election_results
        .iter()
        .flat_map(|t| {
            t.partition_result.iter().map(|p| {
                (
                    t.topic.to_string(),
                    p.partition_id,
                    p.error_code,
                    p.error_message
                        .as_ref()
                        .filter(|m| !m.is_empty())
                        .map(|m| m.to_string()),
                )
            })
        })
        .collect();
    results.sort();
    // ELECTION_NOT_NEEDED is not a failure (the leader already is the one asked for).
    const ELECTION_NOT_NEEDED: i16 = 84;
    let failed = results
        .iter()
        .filter(|(_, _, code, _)| *code != 0 && *code != ELECTION_NOT_NEEDED)
        .count();
    if output == OutputFormat::Json {
        print_json(&json!({
            "type": match kind { ElectionKind::Preferred => "preferred", ElectionKind::Unclean => "unclean" },
            "results": results.iter().map(|(topic, partition, code, message)| json!({
                "topic": topic,
                "partition": partition,
                "result": election_result(*code),
                "error": (*code != 0 && *code != ELECTION_NOT_NEEDED).then(|| error_text(*code, message.as_deref())),
            })).collect::<Vec<_>>(),
        }))?;
    } else {
        if results.is_empty() {
            println!("No partition needed an election.");
        }
        let rows: Vec<Vec<String>> = results
            .iter()
            .map(|(topic, partition, code, message)| {
                vec![
                    topic.clone(),
                    partition.to_string(),
                    match *code {
                        0 | ELECTION_NOT_NEEDED => election_result(*code).to_string(),
                        _ => error_text(*code, message.as_deref()),
                    },
                ]
            })
            .collect();
        if !rows.is_empty() {
            print_table(&["TOPIC", "PARTITION", "RESULT"], &rows);
        }
    }
    if failed > 0 {
        let failures = results
            .iter()
            .filter(|(_, _, code, _)| *code != 0 && *code != ELECTION_NOT_NEEDED)
            .map(|(topic, partition, code, message)| {
                (
                    format!("{topic}-{partition}"),
                    error_text(*code, message.as_deref()),
                )
            });
        bail!("{failed} election(s) failed: {}", summary(failures));
    }
    Ok(())
}

fn election_result(code: i16) -> &'static str {
    match code {
        0 => "elected",
        84 => "not needed",
        _ => "failed",
    }
}

fn error_text(code: i16, message: Option<&str>) -> String {
    match message {
        Some(message) => format!("{}: {message}", error_name(code)),
        None => error_name(code),
    }
}

/// The first few `(partition, error)` failures for a one-line error, "..." after them.
fn summary(failures: impl Iterator<Item = (String, String)>) -> String {
    const SHOWN_MAX: usize = 3;
    let mut parts: Vec<String> = Vec::new();
    for (i, (partition, error)) in failures.enumerate() {
        if i == SHOWN_MAX {
            parts.push("...".to_string());
            break;
        }
        parts.push(format!("{partition}: {error}"));
    }
    parts.join("; ")
}

fn client_timeout_ms(client: &AdminClient) -> u64 {
    u64::try_from(client.timeout().as_millis()).unwrap_or(u64::MAX)
}

// ------------------------------------------------------------------------------- plans

/// A reassignment plan: (topic, partition) -> target replicas, in Kafka's JSON format.
pub type Plan = BTreeMap<(String, i32), Vec<i32>>;

/// Parses Kafka's reassignment JSON: version 1, a `partitions` list of `topic`,
/// `partition`, `replicas` (`log_dirs` ignored); each partition at most once, no duplicate
/// broker in a replica list.
pub fn parse_plan(text: &str) -> Result<Plan> {
    let document: Value = serde_json::from_str(text).context("the plan is not JSON")?;
    let version = document.get("version").and_then(Value::as_i64).unwrap_or(1);
    if version != 1 {
        bail!("plan version {version} is not supported (only 1)");
    }
    let partitions = document
        .get("partitions")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("the plan has no \"partitions\" list"))?;
    let mut plan = Plan::new();
    for (i, entry) in partitions.iter().enumerate() {
        let topic = entry
            .get("topic")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("partitions[{i}] has no \"topic\""))?;
        let partition = entry
            .get("partition")
            .and_then(Value::as_i64)
            .and_then(|p| i32::try_from(p).ok())
            .filter(|p| *p >= 0)
            .ok_or_else(|| anyhow!("partitions[{i}] has no valid \"partition\""))?;
        let replicas = entry
            .get("replicas")
            .and_then(Value::as_array)
            .ok_or_else(|| anyhow!("partitions[{i}] has no \"replicas\" list"))?
            .iter()
            .map(|r| {
                r.as_i64()
                    .and_then(|r| i32::try_from(r).ok())
                    .ok_or_else(|| anyhow!("partitions[{i}] has a replica that is not a broker id"))
            })
            .collect::<Result<Vec<i32>>>()?;
        if replicas.is_empty() {
            bail!("partitions[{i}] ({topic}-{partition}) has an empty replica list");
        }
        if replicas.iter().collect::<BTreeSet<_>>().len() != replicas.len() {
            bail!("partitions[{i}] ({topic}-{partition}) names a broker twice");
        }
        if plan
            .insert((topic.to_string(), partition), replicas)
            .is_some()
        {
            bail!("{topic}-{partition} appears twice in the plan");
        }
    }
    Ok(plan)
}

fn read_plan(path: &Path) -> Result<Plan> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    if size > PLAN_SIZE_BYTES_MAX {
        bail!(
            "{} is larger than {PLAN_SIZE_BYTES_MAX} bytes",
            path.display()
        );
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_plan(&text).with_context(|| format!("bad plan {}", path.display()))
}

/// Kafka's JSON for a plan.
pub fn plan_json(plan: &Plan) -> Value {
    json!({
        "version": 1,
        "partitions": plan.iter().map(|((topic, partition), replicas)| json!({
            "topic": topic, "partition": partition, "replicas": replicas,
        })).collect::<Vec<_>>(),
    })
}

/// The current replicas of every partition of `topics` (all topics for `None`).
fn current_assignment(client: &mut AdminClient, topics: Option<&[String]>) -> Result<Plan> {
    Ok(partitions_of(&metadata(client, topics)?)?
        .into_iter()
        .map(|p| ((p.topic, p.partition), p.replicas))
        .collect())
}

/// A plan placing every partition of `current` on `brokers` (see the module docs), keeping
/// each partition's replication factor.
pub fn generate(current: &Plan, brokers: &[i32]) -> Result<Plan> {
    let mut brokers: Vec<i32> = brokers.to_vec();
    brokers.sort_unstable();
    brokers.dedup();
    let n = brokers.len();
    if n == 0 {
        bail!("no broker to place replicas on");
    }
    let mut proposed = Plan::new();
    for (index, (key, replicas)) in current.iter().enumerate() {
        let rf = replicas.len();
        if rf > n {
            bail!(
                "{}-{} has {rf} replicas but only {n} broker(s) were given",
                key.0,
                key.1
            );
        }
        let first = index % n;
        let shift = if n > 1 { (index / n) % (n - 1) } else { 0 };
        let mut target = vec![brokers[first]];
        for j in 0..rf.saturating_sub(1) {
            // Kafka's replicaIndex: never the first broker again.
            let offset = 1 + (shift + j) % (n - 1);
            target.push(brokers[(first + offset) % n]);
        }
        debug_assert_eq!(
            target.iter().collect::<BTreeSet<_>>().len(),
            target.len(),
            "a broker twice in {target:?}"
        );
        proposed.insert(key.clone(), target);
    }
    Ok(proposed)
}

fn print_generated(current: &Plan, proposed: &Plan, output: OutputFormat) -> Result<()> {
    if output == OutputFormat::Json {
        return print_json(&json!({
            "current": plan_json(current),
            "proposed": plan_json(proposed),
        }));
    }
    println!("Current partition replica assignment");
    println!("{}", plan_json(current));
    println!();
    println!("Proposed partition reassignment configuration");
    println!("{}", plan_json(proposed));
    Ok(())
}

// ------------------------------------------------------------------------------- reassignments

/// Sends AlterPartitionReassignments for `plan` (`None` replicas cancel); returns per
/// partition the error (`None` = accepted).
fn alter_reassignments(
    client: &mut AdminClient,
    plan: &BTreeMap<(String, i32), Option<Vec<i32>>>,
) -> Result<BTreeMap<(String, i32), Option<String>>> {
    if !client.supports(ApiKey::AlterPartitionReassignments) {
        bail!(
            "{} does not support AlterPartitionReassignments",
            client.address()
        );
    }
    let mut topics: BTreeMap<&str, Vec<ReassignablePartition>> = BTreeMap::new();
    for ((topic, partition), replicas) in plan {
        topics.entry(topic).or_default().push(
            ReassignablePartition::default()
                .with_partition_index(*partition)
                .with_replicas(
                    replicas
                        .as_ref()
                        .map(|r| r.iter().map(|&id| BrokerId(id)).collect()),
                ),
        );
    }
    let request = AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(i32::try_from(client_timeout_ms(client)).unwrap_or(i32::MAX))
        .with_topics(
            topics
                .into_iter()
                .map(|(topic, partitions)| {
                    ReassignableTopic::default()
                        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                        .with_partitions(partitions)
                })
                .collect(),
        );
    let ResponseKind::AlterPartitionReassignments(response) = client.send(
        ApiKey::AlterPartitionReassignments,
        0,
        RequestKind::AlterPartitionReassignments(request),
    )?
    else {
        bail!("unexpected answer to AlterPartitionReassignments");
    };
    if response.error_code != 0 {
        bail!(
            "AlterPartitionReassignments failed: {}",
            error_text(
                response.error_code,
                response.error_message.as_deref().filter(|m| !m.is_empty())
            )
        );
    }
    Ok(response
        .responses
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    (t.name.to_string(), p.partition_index),
                    (p.error_code != 0).then(|| {
                        error_text(
                            p.error_code,
                            p.error_message.as_deref().filter(|m| !m.is_empty()),
                        )
                    }),
                )
            })
        })
        .collect())
}

/// Ongoing reassignments of the plan's partitions: (topic, partition) -> (replicas, adding,
/// removing).
type Ongoing = BTreeMap<(String, i32), (Vec<i32>, Vec<i32>, Vec<i32>)>;

fn list_reassignments(client: &mut AdminClient, plan: &Plan) -> Result<Ongoing> {
    if !client.supports(ApiKey::ListPartitionReassignments) {
        bail!(
            "{} does not support ListPartitionReassignments",
            client.address()
        );
    }
    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in plan.keys() {
        topics.entry(topic).or_default().push(*partition);
    }
    let request = ListPartitionReassignmentsRequest::default()
        .with_timeout_ms(i32::try_from(client_timeout_ms(client)).unwrap_or(i32::MAX))
        .with_topics(Some(
            topics
                .into_iter()
                .map(|(topic, partitions)| {
                    ListPartitionReassignmentsTopics::default()
                        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                        .with_partition_indexes(partitions)
                })
                .collect(),
        ));
    let ResponseKind::ListPartitionReassignments(response) = client.send(
        ApiKey::ListPartitionReassignments,
        0,
        RequestKind::ListPartitionReassignments(request),
    )?
    else {
        bail!("unexpected answer to ListPartitionReassignments");
    };
    check(response.error_code, "ListPartitionReassignments")?;
    let ids = |ids: &[BrokerId]| ids.iter().map(|b| b.0).collect::<Vec<i32>>();
    Ok(response
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    (t.name.to_string(), p.partition_index),
                    (
                        ids(&p.replicas),
                        ids(&p.adding_replicas),
                        ids(&p.removing_replicas),
                    ),
                )
            })
        })
        .collect())
}

/// Prints per-partition outcomes (`None` = ok) and fails if any failed.
fn report_outcomes(
    what: &str,
    outcomes: &BTreeMap<(String, i32), Option<String>>,
    extra: &[(&str, Value)],
    output: OutputFormat,
) -> Result<()> {
    let failed = outcomes.values().filter(|e| e.is_some()).count();
    if output == OutputFormat::Json {
        let mut document = json!({
            "results": outcomes.iter().map(|((topic, partition), error)| json!({
                "topic": topic, "partition": partition, "error": error,
            })).collect::<Vec<_>>(),
        });
        if let Some(map) = document.as_object_mut() {
            for (key, value) in extra {
                map.insert(key.to_string(), value.clone());
            }
        }
        print_json(&document)?;
    } else {
        let rows: Vec<Vec<String>> = outcomes
            .iter()
            .map(|((topic, partition), error)| {
                vec![
                    topic.clone(),
                    partition.to_string(),
                    error.clone().unwrap_or_else(|| what.to_string()),
                ]
            })
            .collect();
        print_table(&["TOPIC", "PARTITION", "RESULT"], &rows);
    }
    if failed > 0 {
        let failures = outcomes.iter().filter_map(|((topic, partition), error)| {
            error
                .as_ref()
                .map(|error| (format!("{topic}-{partition}"), error.clone()))
        });
        bail!("{failed} partition(s) failed: {}", summary(failures));
    }
    Ok(())
}

// ---------------------------------------------------------------------------- throttles

/// Kafka's topic-level throttle configs (`QuotaConfig`).
const LEADER_THROTTLED_REPLICAS: &str = "leader.replication.throttled.replicas";
const FOLLOWER_THROTTLED_REPLICAS: &str = "follower.replication.throttled.replicas";
/// Kafka's broker-level throttle configs (dynamic, per broker).
const LEADER_THROTTLED_RATE: &str = "leader.replication.throttled.rate";
const FOLLOWER_THROTTLED_RATE: &str = "follower.replication.throttled.rate";
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

/// One partition's move (Kafka `PartitionMove`): where it is, where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMove {
    pub sources: BTreeSet<i32>,
    pub destinations: BTreeSet<i32>,
}

/// Kafka `calculateProposedMoveMap`: sources are the current replicas (for a partition
/// already moving, its replicas without the ones being added), destinations the plan's
/// replicas that are not sources.
pub fn move_map(
    plan: &Plan,
    current: &Plan,
    ongoing: &Ongoing,
) -> BTreeMap<(String, i32), PartitionMove> {
    plan.iter()
        .map(|(key, target)| {
            let sources: BTreeSet<i32> = match ongoing.get(key) {
                Some((replicas, adding, _)) => replicas
                    .iter()
                    .filter(|id| !adding.contains(id))
                    .copied()
                    .collect(),
                None => current.get(key).into_iter().flatten().copied().collect(),
            };
            let destinations = target
                .iter()
                .filter(|id| !sources.contains(id))
                .copied()
                .collect();
            (
                key.clone(),
                PartitionMove {
                    sources,
                    destinations,
                },
            )
        })
        .collect()
}

/// Kafka `calculateLeaderThrottles`/`calculateFollowerThrottles`: per topic, the
/// `partition:broker` lists of sources (leader side) and destinations (follower side).
pub fn throttled_replicas(
    moves: &BTreeMap<(String, i32), PartitionMove>,
) -> BTreeMap<String, (String, String)> {
    let mut lists: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> = BTreeMap::new();
    for ((topic, partition), m) in moves {
        let entry = lists.entry(topic.clone()).or_default();
        entry
            .0
            .extend(m.sources.iter().map(|b| format!("{partition}:{b}")));
        entry
            .1
            .extend(m.destinations.iter().map(|b| format!("{partition}:{b}")));
    }
    let join = |set: BTreeSet<String>| set.into_iter().collect::<Vec<_>>().join(",");
    lists
        .into_iter()
        .map(|(topic, (leader, follower))| (topic, (join(leader), join(follower))))
        .collect()
}

/// IncrementalAlterConfigs of one resource: `Some(value)` sets, `None` deletes.
fn alter_configs(
    client: &mut AdminClient,
    resource_type: i8,
    name: &str,
    ops: &[(&str, Option<String>)],
) -> Result<()> {
    use fjord_protocol::kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    use fjord_protocol::kafka_protocol::messages::IncrementalAlterConfigsRequest;
    if !client.supports(ApiKey::IncrementalAlterConfigs) {
        bail!(
            "{} does not support IncrementalAlterConfigs",
            client.address()
        );
    }
    let configs = ops
        .iter()
        .map(|(key, value)| {
            AlterableConfig::default()
                .with_name(StrBytes::from_string(key.to_string()))
                .with_config_operation(if value.is_some() { 0 } else { 1 })
                .with_value(value.clone().map(StrBytes::from_string))
        })
        .collect();
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(StrBytes::from_string(name.to_string()))
            .with_configs(configs),
    ]);
    let ResponseKind::IncrementalAlterConfigs(response) = client.send(
        ApiKey::IncrementalAlterConfigs,
        1,
        RequestKind::IncrementalAlterConfigs(request),
    )?
    else {
        bail!("unexpected answer to IncrementalAlterConfigs");
    };
    for result in &response.responses {
        if result.error_code != 0 {
            bail!(
                "could not alter the configs of {name:?}: {}",
                error_text(result.error_code, result.error_message.as_deref())
            );
        }
    }
    Ok(())
}

/// Sets the broker-level throttle rates on `broker` (sent to that broker).
fn alter_broker_configs(
    client: &mut AdminClient,
    broker: i32,
    ops: &[(&str, Option<String>)],
) -> Result<()> {
    let mut node = client.broker_client(broker)?;
    alter_configs(node.client(), RESOURCE_BROKER, &broker.to_string(), ops)
}

/// Kafka `modifyReassignmentThrottle`: the topic lists, then the rates on every broker of
/// the moves. Returns the brokers throttled.
fn set_throttles(
    client: &mut AdminClient,
    moves: &BTreeMap<(String, i32), PartitionMove>,
    rate_bytes_per_s: u64,
) -> Result<Vec<i32>> {
    for (topic, (leader, follower)) in throttled_replicas(moves) {
        alter_configs(
            client,
            RESOURCE_TOPIC,
            &topic,
            &[
                (LEADER_THROTTLED_REPLICAS, Some(leader)),
                (FOLLOWER_THROTTLED_REPLICAS, Some(follower)),
            ],
        )?;
    }
    let brokers: BTreeSet<i32> = moves
        .values()
        .flat_map(|m| m.sources.iter().chain(&m.destinations).copied())
        .collect();
    let rate = rate_bytes_per_s.to_string();
    for &broker in &brokers {
        alter_broker_configs(
            client,
            broker,
            &[
                (LEADER_THROTTLED_RATE, Some(rate.clone())),
                (FOLLOWER_THROTTLED_RATE, Some(rate.clone())),
            ],
        )?;
    }
    Ok(brokers.into_iter().collect())
}

/// Kafka `clearAllThrottles`: the rates of every broker of the cluster and of the plan, the
/// lists of every topic of the plan. A broker that cannot be reached is reported and
/// skipped (run --verify again once it is back). Returns the brokers and topics cleared.
fn clear_throttles(client: &mut AdminClient, plan: &Plan) -> Result<(Vec<i32>, Vec<String>)> {
    let mut brokers: BTreeSet<i32> = crate::cluster_cli::live_brokers(client)?
        .into_iter()
        .collect();
    brokers.extend(plan.values().flatten().copied());
    let mut cleared = Vec::new();
    for broker in brokers {
        let ops = [
            (LEADER_THROTTLED_RATE, None),
            (FOLLOWER_THROTTLED_RATE, None),
        ];
        match alter_broker_configs(client, broker, &ops) {
            Ok(()) => cleared.push(broker),
            Err(err) => eprintln!("warning: throttle of broker {broker} not cleared: {err:#}"),
        }
    }
    let topics: BTreeSet<String> = plan.keys().map(|(t, _)| t.clone()).collect();
    for topic in &topics {
        alter_configs(
            client,
            RESOURCE_TOPIC,
            topic,
            &[
                (LEADER_THROTTLED_REPLICAS, None),
                (FOLLOWER_THROTTLED_REPLICAS, None),
            ],
        )?;
    }
    Ok((cleared, topics.into_iter().collect()))
}

fn execute(
    client: &mut AdminClient,
    plan: &Plan,
    throttle_bytes_per_s: Option<u64>,
    output: OutputFormat,
) -> Result<()> {
    let topics: Vec<String> = plan
        .keys()
        .map(|(t, _)| t.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let current: Plan = current_assignment(client, Some(&topics))?
        .into_iter()
        .filter(|(key, _)| plan.contains_key(key))
        .collect();
    if output == OutputFormat::Text {
        println!("Current partition replica assignment (save it to roll back with --execute)");
        println!("{}", plan_json(&current));
        println!();
    }
    let mut throttled = None;
    if let Some(rate) = throttle_bytes_per_s {
        let ongoing = list_reassignments(client, plan)?;
        let moves = move_map(plan, &current, &ongoing);
        let brokers = set_throttles(client, &moves, rate)?;
        if output == OutputFormat::Text {
            println!(
                "Warning: You must run --verify periodically, until the reassignment completes, \
                 to ensure the throttle is removed."
            );
            println!(
                "The inter-broker throttle limit was set to {rate} B/s on brokers {}",
                ids_text(&brokers)
            );
        }
        throttled = Some(json!({ "rate_bytes_per_s": rate, "brokers": brokers }));
    }
    let request = plan
        .iter()
        .map(|(key, replicas)| (key.clone(), Some(replicas.clone())))
        .collect();
    let outcomes = alter_reassignments(client, &request)?;
    let mut extra = vec![("current", plan_json(&current))];
    extra.extend(throttled.map(|throttle| ("throttle", throttle)));
    report_outcomes("started", &outcomes, &extra, output)
}

fn cancel(client: &mut AdminClient, plan: &Plan, output: OutputFormat) -> Result<()> {
    let request = plan.keys().map(|key| (key.clone(), None)).collect();
    let outcomes = alter_reassignments(client, &request)?;
    report_outcomes("cancelled", &outcomes, &[], output)
}

/// Kafka's `--verify`: complete when the partition's replicas are the plan's and no
/// reassignment is in progress; in progress when one is listed; else the replicas differ.
fn verify(
    client: &mut AdminClient,
    plan: &Plan,
    preserve_throttles: bool,
    output: OutputFormat,
) -> Result<()> {
    let ongoing = list_reassignments(client, plan)?;
    let topics: Vec<String> = plan
        .keys()
        .map(|(t, _)| t.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let current = current_assignment(client, Some(&topics))?;
    let mut states = Vec::new();
    for (key, target) in plan {
        let replicas = current.get(key).cloned().unwrap_or_default();
        let state = if ongoing.contains_key(key) {
            "in_progress"
        } else if replicas == *target {
            "complete"
        } else {
            "different"
        };
        states.push((key.clone(), state, target.clone(), replicas));
    }
    let incomplete = states.iter().filter(|s| s.1 != "complete").count();
    let in_progress = states.iter().any(|s| s.1 == "in_progress");
    // Kafka: throttles go once nothing of the plan is moving any more.
    let cleared = if in_progress || preserve_throttles {
        None
    } else {
        Some(clear_throttles(client, plan)?)
    };
    if output == OutputFormat::Json {
        print_json(&json!({
            "partitions": states.iter().map(|((topic, partition), state, target, replicas)| json!({
                "topic": topic, "partition": partition, "state": state,
                "target_replicas": target, "replicas": replicas,
            })).collect::<Vec<_>>(),
            "complete": incomplete == 0,
            "throttles_cleared": cleared.as_ref().map(|(brokers, topics)| json!({
                "brokers": brokers, "topics": topics,
            })),
        }))?;
    } else {
        let rows: Vec<Vec<String>> = states
            .iter()
            .map(|((topic, partition), state, target, replicas)| {
                vec![
                    topic.clone(),
                    partition.to_string(),
                    state.replace('_', " "),
                    ids_text(target),
                    ids_text(replicas),
                ]
            })
            .collect();
        print_table(
            &["TOPIC", "PARTITION", "STATE", "TARGET", "REPLICAS"],
            &rows,
        );
        if let Some((brokers, topics)) = &cleared {
            println!(
                "Cleared broker-level throttles on brokers {} and topic-level throttles on topics {}",
                ids_text(brokers),
                topics.join(",")
            );
        }
    }
    // Like Kafka's tool, an incomplete reassignment is not an error: the state says it.
    Ok(())
}

fn rebalance(
    client: &mut AdminClient,
    topics: &[String],
    brokers: Vec<i32>,
    dry_run: bool,
    output: OutputFormat,
) -> Result<()> {
    let brokers = if brokers.is_empty() {
        crate::cluster_cli::live_brokers(client)?
    } else {
        brokers
    };
    let current = current_assignment(client, (!topics.is_empty()).then_some(topics))?;
    let proposed = generate(&current, &brokers)?;
    let moves: Plan = proposed
        .into_iter()
        .filter(|(key, target)| current.get(key) != Some(target))
        .collect();
    if moves.is_empty() || dry_run {
        if output == OutputFormat::Json {
            return print_json(&json!({
                "brokers": brokers,
                "plan": plan_json(&moves),
                "executed": false,
            }));
        }
        if moves.is_empty() {
            println!(
                "The replicas are already balanced over brokers {}.",
                ids_text(&brokers)
            );
        } else {
            println!("Proposed partition reassignment configuration (not executed)");
            println!("{}", plan_json(&moves));
        }
        return Ok(());
    }
    let request = moves
        .iter()
        .map(|(key, replicas)| (key.clone(), Some(replicas.clone())))
        .collect();
    let outcomes = alter_reassignments(client, &request)?;
    if output == OutputFormat::Text {
        println!(
            "Moving {} partition(s) over brokers {} (check with fjord partition reassign --verify):",
            moves.len(),
            ids_text(&brokers)
        );
    }
    report_outcomes("started", &outcomes, &[("plan", plan_json(&moves))], output)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(entries: &[(&str, i32, &[i32])]) -> Plan {
        entries
            .iter()
            .map(|(t, p, r)| ((t.to_string(), *p), r.to_vec()))
            .collect()
    }

    #[test]
    fn throttles_list_sources_for_leaders_and_destinations_for_followers() {
        let target = plan(&[("t", 0, &[1, 2, 4]), ("t", 1, &[3, 4]), ("u", 0, &[1])]);
        let current = plan(&[("t", 0, &[1, 2, 3]), ("t", 1, &[1, 2]), ("u", 0, &[1])]);
        let mut ongoing = Ongoing::new();
        // t-1 is already moving from [1, 2] to [1, 5]: replicas [1, 2, 5], adding 5.
        ongoing.insert(("t".into(), 1), (vec![1, 2, 5], vec![5], vec![2]));
        let moves = move_map(&target, &current, &ongoing);
        let set = |ids: &[i32]| ids.iter().copied().collect::<BTreeSet<i32>>();
        assert_eq!(moves[&("t".to_string(), 0)].sources, set(&[1, 2, 3]));
        assert_eq!(moves[&("t".to_string(), 0)].destinations, set(&[4]));
        assert_eq!(moves[&("t".to_string(), 1)].sources, set(&[1, 2]));
        assert_eq!(moves[&("t".to_string(), 1)].destinations, set(&[3, 4]));
        assert!(moves[&("u".to_string(), 0)].destinations.is_empty());
        let lists = throttled_replicas(&moves);
        assert_eq!(
            lists["t"],
            ("0:1,0:2,0:3,1:1,1:2".to_string(), "0:4,1:3,1:4".to_string())
        );
        assert_eq!(lists["u"], ("0:1".to_string(), String::new()));
    }

    #[test]
    fn kafka_plans_parse_and_print_back() {
        let text = r#"{"version":1,"partitions":[
            {"topic":"a","partition":1,"replicas":[2,3],"log_dirs":["any","any"]},
            {"topic":"a","partition":0,"replicas":[1]}]}"#;
        let parsed = parse_plan(text).unwrap();
        assert_eq!(parsed, plan(&[("a", 0, &[1]), ("a", 1, &[2, 3])]));
        assert_eq!(parse_plan(&plan_json(&parsed).to_string()).unwrap(), parsed);
    }

    #[test]
    fn bad_plans_are_refused() {
        for bad in [
            "not json",
            r#"{"version":2,"partitions":[]}"#,
            r#"{"version":1}"#,
            r#"{"partitions":[{"topic":"a","partition":0,"replicas":[]}]}"#,
            r#"{"partitions":[{"topic":"a","partition":0,"replicas":[1,1]}]}"#,
            r#"{"partitions":[{"topic":"a","partition":-1,"replicas":[1]}]}"#,
            r#"{"partitions":[{"topic":"a","partition":0,"replicas":[1]},{"topic":"a","partition":0,"replicas":[2]}]}"#,
        ] {
            assert!(parse_plan(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn generated_plans_spread_leaders_and_replicas_evenly() {
        let current: Plan = (0..6).map(|p| (("t".to_string(), p), vec![1, 2])).collect();
        let proposed = generate(&current, &[3, 1, 2]).unwrap();
        let mut leaders = BTreeMap::new();
        let mut replicas = BTreeMap::new();
        for target in proposed.values() {
            assert_eq!(target.len(), 2);
            assert_ne!(target[0], target[1]);
            *leaders.entry(target[0]).or_insert(0) += 1;
            for r in target {
                *replicas.entry(*r).or_insert(0) += 1;
            }
        }
        assert_eq!(leaders, BTreeMap::from([(1, 2), (2, 2), (3, 2)]));
        assert_eq!(replicas, BTreeMap::from([(1, 4), (2, 4), (3, 4)]));
        // Too few brokers for the replication factor.
        assert!(generate(&current, &[1]).is_err());
        assert!(generate(&current, &[]).is_err());
        // Reproducible.
        assert_eq!(generate(&current, &[1, 2, 3]).unwrap(), proposed);
    }
}
