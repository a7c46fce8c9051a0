//! `fjord txn ...`: transactions on any Kafka-compatible broker, in the manner of Kafka's
//! `kafka-transactions.sh`: list the transactions every broker coordinates (ListTransactions),
//! describe one transactional id at its coordinator (FindCoordinator key type 1, then
//! DescribeTransactions), and show the producers a partition's leader knows (DescribeProducers).
//! The tables use `kafka-transactions.sh`'s column names; an absent value is `-`.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Result};
use clap::{Args, Subcommand};
use fjord_protocol::kafka_protocol::messages::describe_producers_request::TopicRequest;
use fjord_protocol::kafka_protocol::messages::describe_transactions_response::{
    TopicData, TransactionState,
};
use fjord_protocol::kafka_protocol::messages::list_transactions_response::TransactionState as Listing;
use fjord_protocol::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use fjord_protocol::kafka_protocol::messages::{
    DescribeProducersRequest, DescribeProducersResponse, DescribeTransactionsRequest,
    ListTransactionsRequest, MetadataRequest, ProducerId, TopicName, TransactionalId,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ApiKey, RequestKind, ResponseKind};

use crate::admin::{check, error_name, AdminClient, ConnectArgs, COORDINATOR_KEY_TYPE_TRANSACTION};
use crate::output::{non_negative, print_json, print_table, OutputFormat};
use fjord_protocol::kafka_protocol::messages::describe_producers_response::ProducerState;
use serde_json::{json, Value};

/// Highest ListTransactions version this tool speaks (v1: duration filter, v2: id pattern).
const LIST_TRANSACTIONS_VERSION_MAX: i16 = 2;
const LIST_HEADERS: &[&str] = &[
    "TransactionalId",
    "Coordinator",
    "ProducerId",
    "TransactionState",
];
const DESCRIBE_HEADERS: &[&str] = &[
    "CoordinatorId",
    "TransactionalId",
    "ProducerId",
    "ProducerEpoch",
    "TransactionState",
    "TransactionTimeoutMs",
    "CurrentTransactionStartTimeMs",
    "TransactionDurationMs",
    "TopicPartitions",
];
const PRODUCERS_HEADERS: &[&str] = &[
    "Partition",
    "ProducerId",
    "ProducerEpoch",
    "LatestCoordinatorEpoch",
    "LastSequence",
    "LastTimestamp",
    "CurrentTransactionStartOffset",
];

#[derive(Args)]
pub struct TxnArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(subcommand)]
    command: TxnCommand,
}

#[derive(Subcommand)]
enum TxnCommand {
    /// List the transactions of every broker in the cluster (ListTransactions): transactional
    /// id, coordinator, producer id and state
    #[command(after_help = columns_help(LIST_HEADERS, "One row per transaction, sorted by transactional id. Exits non-zero if a broker could not answer (the other brokers' rows are still shown)."))]
    List(ListArgs),
    /// Describe transactional ids at their coordinator (FindCoordinator, DescribeTransactions):
    /// producer id and epoch, state, timeout, start time and duration of the current
    /// transaction, and the partitions in it
    #[command(after_help = columns_help(DESCRIBE_HEADERS, "One row per transactional id; TransactionDurationMs is now minus the start time while a transaction is open (Ongoing, Prepare*), `-` otherwise. Exits non-zero if an id could not be described (TransactionalIdNotFound, no coordinator, ...)."))]
    Describe(DescribeArgs),
    /// Show the active producers of a topic's partitions as their leader (or --broker-id) keeps
    /// them (DescribeProducers): epoch, last sequence and timestamp, and the first offset of an
    /// open transaction
    #[command(visible_alias = "describe-producers")]
    #[command(after_help = columns_help(PRODUCERS_HEADERS, "One row per producer and partition; CurrentTransactionStartOffset is `-` when the producer has no open transaction. Exits non-zero if a partition could not be described."))]
    Producers(ProducersArgs),
}

/// The `--help` epilogue of a subcommand: its table's columns, then `notes`.
fn columns_help(headers: &[&str], notes: &str) -> String {
    format!("Output columns: {}\n{notes}", headers.join(" "))
}

#[derive(Args, Debug, PartialEq)]
struct ListArgs {
    /// Only transactions in this state: Empty, Ongoing, PrepareCommit, PrepareAbort,
    /// CompleteCommit, CompleteAbort, Dead, PrepareEpochFence (repeatable)
    #[arg(long = "state", value_name = "STATE")]
    states: Vec<String>,
    /// Only transactions of this producer id (repeatable)
    #[arg(long = "producer-id", value_name = "ID")]
    producer_ids: Vec<i64>,
    /// Only transactions running for longer than MS milliseconds (needs ListTransactions v1;
    /// Kafka tools: --duration-filter)
    #[arg(long, value_name = "MS", visible_alias = "duration-filter")]
    duration_filter_ms: Option<i64>,
    /// Only transactional ids matching this regular expression (needs ListTransactions v2)
    #[arg(long, value_name = "REGEX")]
    transactional_id_pattern: Option<String>,
}

#[derive(Args, Debug, PartialEq)]
struct DescribeArgs {
    /// Transactional id to describe (repeatable)
    #[arg(long = "transactional-id", value_name = "ID", required = true)]
    transactional_ids: Vec<String>,
}

#[derive(Args, Debug, PartialEq)]
struct ProducersArgs {
    /// Topic whose partitions to describe
    #[arg(long, value_name = "TOPIC")]
    topic: String,
    /// Partition to describe (repeatable) [default: every partition of the topic]
    #[arg(long = "partition", value_name = "P")]
    partitions: Vec<i32>,
    /// Ask this broker (a replica) instead of each partition's leader
    #[arg(long, value_name = "N")]
    broker_id: Option<i32>,
}

pub fn run(args: TxnArgs) -> Result<()> {
    let output = args.connect.output();
    let mut client = args.connect.connect()?;
    match args.command {
        TxnCommand::List(list_args) => list(&mut client, &list_args, output),
        TxnCommand::Describe(describe_args) => describe(&mut client, &describe_args, output),
        TxnCommand::Producers(producers_args) => producers(&mut client, &producers_args, output),
    }
}

/// The ListTransactions request for `args` at `version`, or why that version cannot carry it.
fn list_request(args: &ListArgs, version: i16, address: &str) -> Result<ListTransactionsRequest> {
    let mut request = ListTransactionsRequest::default()
        .with_state_filters(
            args.states
                .iter()
                .map(|s| StrBytes::from_string(s.clone()))
                .collect(),
        )
        .with_producer_id_filters(args.producer_ids.iter().map(|p| ProducerId(*p)).collect());
    if let Some(duration) = args.duration_filter_ms {
        if version < 1 {
            bail!("{address} cannot filter transactions by duration (ListTransactions < v1)");
        }
        request = request.with_duration_filter(duration);
    }
    if let Some(pattern) = &args.transactional_id_pattern {
        if version < 2 {
            bail!(
                "{address} cannot filter transactions by transactional id pattern (ListTransactions < v2)"
            );
        }
        request =
            request.with_transactional_id_pattern(Some(StrBytes::from_string(pattern.clone())));
    }
    Ok(request)
}

fn list_row(coordinator: i32, listing: &Listing) -> Vec<String> {
    vec![
        listing.transactional_id.to_string(),
        coordinator.to_string(),
        listing.producer_id.0.to_string(),
        listing.transaction_state.to_string(),
    ]
}

/// A ListTransactions entry as `--output json` shows it.
fn list_json(coordinator: i32, listing: &Listing) -> Value {
    json!({
        "transactional_id": listing.transactional_id.as_str(),
        "coordinator": coordinator,
        "producer_id": listing.producer_id.0,
        "state": listing.transaction_state.as_str(),
    })
}

/// The transactions one broker coordinates.
fn list_on(
    client: &mut AdminClient,
    node_id: i32,
    address: &str,
    args: &ListArgs,
) -> Result<Vec<Listing>> {
    let mut node = client.client_for(address)?;
    let node = node.client();
    let version = node.version_for(ApiKey::ListTransactions, LIST_TRANSACTIONS_VERSION_MAX);
    let request = list_request(args, version, address)?;
    let ResponseKind::ListTransactions(response) = node.send(
        ApiKey::ListTransactions,
        LIST_TRANSACTIONS_VERSION_MAX,
        RequestKind::ListTransactions(request),
    )?
    else {
        bail!("unexpected answer to ListTransactions");
    };
    check(response.error_code, "ListTransactions")?;
    if !response.unknown_state_filters.is_empty() {
        let unknown: Vec<&str> = response
            .unknown_state_filters
            .iter()
            .map(|s| s.as_str())
            .collect();
        eprintln!(
            "Warning: broker {node_id} does not know the state(s) {}",
            unknown.join(", ")
        );
    }
    Ok(response.transaction_states)
}

fn list(client: &mut AdminClient, args: &ListArgs, output: OutputFormat) -> Result<()> {
    let brokers = client.cluster_brokers()?;
    if brokers.is_empty() {
        bail!("{} named no brokers in Metadata", client.address());
    }
    let mut listings = Vec::new();
    let mut errors = Vec::new();
    for (node_id, address) in &brokers {
        match list_on(client, *node_id, address, args) {
            Ok(found) => listings.extend(found.into_iter().map(|l| (*node_id, l))),
            Err(err) => {
                if output == OutputFormat::Text {
                    eprintln!(
                        "Failed to list transactions on broker {node_id} ({address}): {err:#}"
                    );
                }
                errors.push(
                    json!({ "broker": node_id, "address": address, "error": format!("{err:#}") }),
                );
            }
        }
    }
    let failed = errors.len();
    listings.sort_by(|(a_node, a), (b_node, b)| {
        (a.transactional_id.as_str(), a_node).cmp(&(b.transactional_id.as_str(), b_node))
    });
    if output == OutputFormat::Json {
        let transactions: Vec<Value> = listings.iter().map(|(n, l)| list_json(*n, l)).collect();
        print_json(&json!({ "transactions": transactions, "errors": errors }))?;
    } else if failed < brokers.len() {
        let rows: Vec<Vec<String>> = listings.iter().map(|(n, l)| list_row(*n, l)).collect();
        print_table(LIST_HEADERS, &rows);
    }
    if failed > 0 {
        bail!(
            "{failed} of {} broker(s) could not list their transactions",
            brokers.len()
        );
    }
    Ok(())
}

/// `topic-partition` names, as Kafka prints a TopicPartition, sorted; `-` for none.
fn topic_partitions(topics: &[TopicData]) -> String {
    let mut partitions: Vec<(&str, i32)> = topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.topic.as_str(), *p)))
        .collect();
    partitions.sort();
    if partitions.is_empty() {
        return "-".to_string();
    }
    partitions
        .iter()
        .map(|(topic, partition)| format!("{topic}-{partition}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether a transaction is open in this state (Kafka's TransactionState names): only then
/// does it have a duration.
fn is_open(state: &str) -> bool {
    matches!(
        state,
        "Ongoing" | "PrepareCommit" | "PrepareAbort" | "PrepareEpochFence"
    )
}

/// A DescribeTransactions answer as a table row. The start time is the coordinator's (-1:
/// none); the duration is `now_ms` minus it while a transaction is open. Kafka's tool also
/// shows a duration for a completed transaction, which only measures time since it began.
fn describe_row(coordinator: i32, state: &TransactionState, now_ms: i64) -> Vec<String> {
    let started = state.transaction_start_time_ms;
    let start = if started >= 0 {
        started.to_string()
    } else {
        "-".to_string()
    };
    let duration = if started >= 0 && is_open(state.transaction_state.as_str()) {
        now_ms.saturating_sub(started).max(0).to_string()
    } else {
        "-".to_string()
    };
    vec![
        coordinator.to_string(),
        state.transactional_id.to_string(),
        state.producer_id.0.to_string(),
        state.producer_epoch.to_string(),
        state.transaction_state.to_string(),
        state.transaction_timeout_ms.to_string(),
        start,
        duration,
        topic_partitions(&state.topics),
    ]
}

/// A DescribeTransactions answer as `--output json` shows it; see [`describe_row`].
fn describe_json(coordinator: i32, state: &TransactionState, now_ms: i64) -> Value {
    let started = state.transaction_start_time_ms;
    let open = started >= 0 && is_open(state.transaction_state.as_str());
    let mut partitions: Vec<(&str, i32)> = state
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.topic.as_str(), *p)))
        .collect();
    partitions.sort();
    json!({
        "coordinator": coordinator,
        "transactional_id": state.transactional_id.as_str(),
        "producer_id": state.producer_id.0,
        "producer_epoch": state.producer_epoch,
        "state": state.transaction_state.as_str(),
        "timeout_ms": state.transaction_timeout_ms,
        "start_time_ms": non_negative(started),
        "duration_ms": open.then(|| now_ms.saturating_sub(started).max(0)),
        "topic_partitions": partitions
            .iter()
            .map(|(topic, partition)| json!({ "topic": topic, "partition": partition }))
            .collect::<Vec<_>>(),
    })
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The coordinator's id and its DescribeTransactions answer for `transactional_id`.
fn describe_one(
    client: &mut AdminClient,
    transactional_id: &str,
) -> Result<(i32, TransactionState)> {
    let (coordinator_id, address) =
        client.find_coordinator(COORDINATOR_KEY_TYPE_TRANSACTION, transactional_id)?;
    let mut coordinator = client.client_for(&address)?;
    let request =
        DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(
            StrBytes::from_string(transactional_id.to_string()),
        )]);
    let ResponseKind::DescribeTransactions(response) = coordinator.client().send(
        ApiKey::DescribeTransactions,
        0,
        RequestKind::DescribeTransactions(request),
    )?
    else {
        bail!("unexpected answer to DescribeTransactions");
    };
    let state = response
        .transaction_states
        .iter()
        .find(|s| s.transactional_id.as_str() == transactional_id)
        .ok_or_else(|| anyhow!("DescribeTransactions answered nothing for it"))?;
    check(state.error_code, "DescribeTransactions")?;
    Ok((coordinator_id, state.clone()))
}

fn describe(client: &mut AdminClient, args: &DescribeArgs, output: OutputFormat) -> Result<()> {
    let mut described = Vec::new();
    let mut errors = Vec::new();
    for id in &args.transactional_ids {
        match describe_one(client, id) {
            Ok(found) => described.push(found),
            Err(err) => {
                if output == OutputFormat::Text {
                    eprintln!(
                        "Failed to describe transaction state of transactional-id `{id}`: {err:#}"
                    );
                }
                errors.push(json!({ "transactional_id": id, "error": format!("{err:#}") }));
            }
        }
    }
    let failed = errors.len();
    let now = now_ms();
    if output == OutputFormat::Json {
        let transactions: Vec<Value> = described
            .iter()
            .map(|(coordinator, state)| describe_json(*coordinator, state, now))
            .collect();
        print_json(&json!({ "transactions": transactions, "errors": errors }))?;
    } else if !described.is_empty() {
        let rows: Vec<Vec<String>> = described
            .iter()
            .map(|(coordinator, state)| describe_row(*coordinator, state, now))
            .collect();
        print_table(DESCRIBE_HEADERS, &rows);
    }
    if failed > 0 {
        bail!("{failed} transactional id(s) not described");
    }
    Ok(())
}

/// A DescribeProducers partition answer as table rows, by producer id.
#[cfg(test)]
fn producer_rows(
    partition: &fjord_protocol::kafka_protocol::messages::describe_producers_response::PartitionResponse,
) -> Vec<Vec<String>> {
    let mut producers: Vec<_> = partition.active_producers.iter().collect();
    producers.sort_by_key(|p| p.producer_id.0);
    producers
        .iter()
        .map(|p| producer_row(partition.partition_index, p))
        .collect()
}

/// One producer of a partition as `--output json` shows it; see [`producer_row`].
fn producer_json(partition: i32, p: &ProducerState) -> Value {
    json!({
        "partition": partition,
        "producer_id": p.producer_id.0,
        "producer_epoch": p.producer_epoch,
        "coordinator_epoch": non_negative(i64::from(p.coordinator_epoch)),
        "last_sequence": p.last_sequence,
        "last_timestamp_ms": p.last_timestamp,
        "current_transaction_start_offset": non_negative(p.current_txn_start_offset),
    })
}

/// One producer of a partition as a table row.
fn producer_row(partition: i32, p: &ProducerState) -> Vec<String> {
    vec![
        partition.to_string(),
        p.producer_id.0.to_string(),
        p.producer_epoch.to_string(),
        // Kafka's tool prints an absent coordinator epoch as -1, any negative one too.
        p.coordinator_epoch.max(-1).to_string(),
        p.last_sequence.to_string(),
        p.last_timestamp.to_string(),
        if p.current_txn_start_offset >= 0 {
            p.current_txn_start_offset.to_string()
        } else {
            "-".to_string()
        },
    ]
}

/// Where the partitions of `topic` should be asked: broker id -> partitions, the brokers'
/// addresses, and the partitions that cannot be asked anywhere (partition, why).
struct Placement {
    by_broker: BTreeMap<i32, Vec<i32>>,
    addresses: BTreeMap<i32, String>,
    unplaced: Vec<(i32, String)>,
}

fn place_partitions(client: &mut AdminClient, args: &ProducersArgs) -> Result<Placement> {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
            TopicName(StrBytes::from_string(args.topic.clone())),
        ))]))
        .with_allow_auto_topic_creation(false);
    let ResponseKind::Metadata(response) =
        client.send(ApiKey::Metadata, 12, RequestKind::Metadata(request))?
    else {
        bail!("unexpected answer to Metadata");
    };
    let topic = response
        .topics
        .first()
        .ok_or_else(|| anyhow!("no metadata for topic {}", args.topic))?;
    check(
        topic.error_code,
        &format!("looking up topic {}", args.topic),
    )?;
    let leaders: BTreeMap<i32, i32> = topic
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.leader_id.0))
        .collect();
    let addresses: BTreeMap<i32, String> = response
        .brokers
        .iter()
        .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
        .collect();
    if let Some(id) = args.broker_id {
        if !addresses.contains_key(&id) {
            bail!("no broker with id {id} in the cluster metadata");
        }
    }
    let mut wanted: Vec<i32> = if args.partitions.is_empty() {
        leaders.keys().copied().collect()
    } else {
        args.partitions.clone()
    };
    wanted.sort_unstable();
    wanted.dedup();
    let mut by_broker: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    let mut unplaced = Vec::new();
    for partition in wanted {
        match (args.broker_id, leaders.get(&partition)) {
            (_, None) => unplaced.push((partition, "no such partition".to_string())),
            (Some(id), Some(_)) => by_broker.entry(id).or_default().push(partition),
            (None, Some(leader)) if addresses.contains_key(leader) => {
                by_broker.entry(*leader).or_default().push(partition)
            }
            (None, Some(leader)) => {
                unplaced.push((partition, format!("no leader (leader id {leader})")))
            }
        }
    }
    Ok(Placement {
        by_broker,
        addresses,
        unplaced,
    })
}

/// What DescribeProducers answered for one broker's partitions: (partition, producer), and
/// the partitions that failed (partition, error).
#[derive(Default)]
struct ProducersAnswer {
    rows: Vec<(i32, ProducerState)>,
    failed: Vec<(i32, String)>,
}

fn producers_answer(
    response: &DescribeProducersResponse,
    topic: &str,
    partitions: &[i32],
) -> ProducersAnswer {
    let mut answer = ProducersAnswer::default();
    let mut answered = Vec::new();
    for topic_answer in response.topics.iter().filter(|t| t.name.as_str() == topic) {
        for partition in &topic_answer.partitions {
            if !partitions.contains(&partition.partition_index) {
                continue;
            }
            answered.push(partition.partition_index);
            if partition.error_code == 0 {
                answer.rows.extend(
                    partition
                        .active_producers
                        .iter()
                        .map(|p| (partition.partition_index, p.clone())),
                );
            } else {
                answer.failed.push((
                    partition.partition_index,
                    format!(
                        "{}{}",
                        error_name(partition.error_code),
                        partition
                            .error_message
                            .as_ref()
                            .filter(|m| !m.is_empty())
                            .map_or(String::new(), |m| format!(": {}", m.as_str()))
                    ),
                ));
            }
        }
    }
    for partition in partitions {
        if !answered.contains(partition) {
            answer
                .failed
                .push((*partition, "missing from the answer".to_string()));
        }
    }
    answer
}

/// DescribeProducers for `partitions` of `topic` on the broker at `address`.
fn producers_on(
    client: &mut AdminClient,
    address: &str,
    topic: &str,
    partitions: &[i32],
) -> Result<ProducersAnswer> {
    let mut node = client.client_for(address)?;
    let request = DescribeProducersRequest::default().with_topics(vec![TopicRequest::default()
        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
        .with_partition_indexes(partitions.to_vec())]);
    let ResponseKind::DescribeProducers(response) = node.client().send(
        ApiKey::DescribeProducers,
        0,
        RequestKind::DescribeProducers(request),
    )?
    else {
        bail!("unexpected answer to DescribeProducers");
    };
    Ok(producers_answer(&response, topic, partitions))
}

fn producers(client: &mut AdminClient, args: &ProducersArgs, output: OutputFormat) -> Result<()> {
    let placement = place_partitions(client, args)?;
    let topic = &args.topic;
    // (partition, where it was asked, why it failed)
    let mut failed: Vec<(i32, String, String)> = placement
        .unplaced
        .into_iter()
        .map(|(partition, why)| (partition, "leader".to_string(), why))
        .collect();
    let mut rows = Vec::new();
    let mut described = 0;
    for (broker_id, partitions) in &placement.by_broker {
        let on = match args.broker_id {
            Some(_) => format!("broker {broker_id}"),
            None => format!("leader (broker {broker_id})"),
        };
        let answer = match placement.addresses.get(broker_id) {
            Some(address) => producers_on(client, address, topic, partitions),
            None => Err(anyhow!("no address for broker {broker_id}")),
        };
        match answer {
            Ok(answer) => {
                described += partitions.len() - answer.failed.len();
                rows.extend(answer.rows);
                failed.extend(
                    answer
                        .failed
                        .into_iter()
                        .map(|(p, why)| (p, on.clone(), why)),
                );
            }
            Err(err) => {
                failed.extend(
                    partitions
                        .iter()
                        .map(|p| (*p, on.clone(), format!("{err:#}"))),
                );
            }
        }
    }
    rows.sort_by_key(|(partition, p)| (*partition, p.producer_id.0));
    failed.sort();
    if output == OutputFormat::Json {
        let producers: Vec<Value> = rows.iter().map(|(n, p)| producer_json(*n, p)).collect();
        let errors: Vec<Value> = failed
            .iter()
            .map(
                |(partition, on, why)| json!({ "partition": partition, "asked": on, "error": why }),
            )
            .collect();
        print_json(&json!({ "topic": topic, "producers": producers, "errors": errors }))?;
        if !failed.is_empty() {
            bail!("{} partition(s) of {topic} not described", failed.len());
        }
        return Ok(());
    }
    if described > 0 {
        let rows: Vec<Vec<String>> = rows.iter().map(|(n, p)| producer_row(*n, p)).collect();
        print_table(PRODUCERS_HEADERS, &rows);
    }
    for (partition, on, why) in &failed {
        eprintln!("Failed to describe producers for partition {topic}-{partition} on {on}: {why}");
    }
    if !failed.is_empty() {
        bail!("{} partition(s) of {topic} not described", failed.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};
    use fjord_protocol::kafka_protocol::messages::describe_producers_response::{
        PartitionResponse, TopicResponse,
    };

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        txn: TxnArgs,
    }

    fn parse(args: &[&str]) -> Result<TxnCommand, clap::Error> {
        let mut argv = vec!["txn"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).map(|cli| cli.txn.command)
    }

    #[test]
    fn list_flags_parse() {
        let Ok(TxnCommand::List(args)) = parse(&[
            "list",
            "--state",
            "Ongoing",
            "--state",
            "PrepareCommit",
            "--producer-id",
            "7",
            "--duration-filter-ms",
            "60000",
        ]) else {
            panic!("list did not parse");
        };
        assert_eq!(
            args,
            ListArgs {
                states: vec!["Ongoing".into(), "PrepareCommit".into()],
                producer_ids: vec![7],
                duration_filter_ms: Some(60_000),
                transactional_id_pattern: None,
            }
        );
        // Kafka's spelling works too.
        let Ok(TxnCommand::List(args)) = parse(&["list", "--duration-filter", "5"]) else {
            panic!("--duration-filter did not parse");
        };
        assert_eq!(args.duration_filter_ms, Some(5));
        assert!(parse(&["list", "--producer-id", "x"]).is_err());
    }

    #[test]
    fn describe_needs_a_transactional_id() {
        assert!(parse(&["describe"]).is_err());
        let Ok(TxnCommand::Describe(args)) = parse(&[
            "describe",
            "--transactional-id",
            "a",
            "--transactional-id",
            "b",
        ]) else {
            panic!("describe did not parse");
        };
        assert_eq!(args.transactional_ids, ["a", "b"]);
    }

    #[test]
    fn producers_needs_a_topic() {
        assert!(parse(&["producers"]).is_err());
        assert!(parse(&["producers", "--partition", "0"]).is_err());
        let Ok(TxnCommand::Producers(args)) =
            parse(&["producers", "--topic", "t", "--partition", "2"])
        else {
            panic!("producers did not parse");
        };
        assert_eq!(
            args,
            ProducersArgs {
                topic: "t".into(),
                partitions: vec![2],
                broker_id: None,
            }
        );
        // Kafka's name for it works too.
        assert!(matches!(
            parse(&["describe-producers", "--topic", "t", "--broker-id", "1"]),
            Ok(TxnCommand::Producers(ProducersArgs {
                broker_id: Some(1),
                ..
            }))
        ));
    }

    #[test]
    fn connection_flags_go_anywhere() {
        let cli = Cli::try_parse_from([
            "txn",
            "list",
            "--bootstrap-server",
            "h:1",
            "--timeout-ms",
            "5",
        ]);
        assert!(cli.is_ok());
    }

    #[test]
    fn every_flag_and_subcommand_has_help() {
        let command = Cli::command();
        command.clone().debug_assert();
        for sub in command.get_subcommands() {
            assert!(sub.get_about().is_some(), "{} has no help", sub.get_name());
            assert!(
                sub.get_name() == "help" || sub.get_after_help().is_some(),
                "{} does not name its output columns",
                sub.get_name()
            );
            for arg in sub.get_arguments() {
                if arg.get_id() == "help" {
                    continue;
                }
                assert!(
                    arg.get_help().is_some(),
                    "{} --{} has no help",
                    sub.get_name(),
                    arg.get_id()
                );
            }
        }
    }

    fn list_args() -> ListArgs {
        ListArgs {
            states: vec!["Ongoing".into()],
            producer_ids: vec![3, 4],
            duration_filter_ms: None,
            transactional_id_pattern: None,
        }
    }

    #[test]
    fn list_request_carries_filters_its_version_has() {
        let request = list_request(&list_args(), 0, "b:1").unwrap();
        assert_eq!(
            request.state_filters,
            [StrBytes::from_static_str("Ongoing")]
        );
        assert_eq!(request.producer_id_filters, [ProducerId(3), ProducerId(4)]);
        assert_eq!(request.duration_filter, -1);
        assert_eq!(request.transactional_id_pattern, None);

        let with_duration = ListArgs {
            duration_filter_ms: Some(1000),
            ..list_args()
        };
        let err = list_request(&with_duration, 0, "b:1").unwrap_err();
        assert!(err.to_string().contains("ListTransactions < v1"), "{err}");
        assert_eq!(
            list_request(&with_duration, 1, "b:1")
                .unwrap()
                .duration_filter,
            1000
        );

        let with_pattern = ListArgs {
            transactional_id_pattern: Some("^app-".into()),
            ..list_args()
        };
        assert!(list_request(&with_pattern, 1, "b:1").is_err());
        assert_eq!(
            list_request(&with_pattern, 2, "b:1")
                .unwrap()
                .transactional_id_pattern
                .as_deref(),
            Some("^app-")
        );
    }

    #[test]
    fn list_rows_name_the_coordinator() {
        let listing = Listing::default()
            .with_transactional_id(TransactionalId(StrBytes::from_static_str("app-1")))
            .with_producer_id(ProducerId(42))
            .with_transaction_state(StrBytes::from_static_str("Ongoing"));
        assert_eq!(list_row(3, &listing), ["app-1", "3", "42", "Ongoing"]);
    }

    fn topic(name: &'static str, partitions: Vec<i32>) -> TopicData {
        TopicData::default()
            .with_topic(TopicName(StrBytes::from_static_str(name)))
            .with_partitions(partitions)
    }

    #[test]
    fn describe_row_of_an_open_transaction() {
        let state = TransactionState::default()
            .with_transactional_id(TransactionalId(StrBytes::from_static_str("app-1")))
            .with_producer_id(ProducerId(42))
            .with_producer_epoch(3)
            .with_transaction_state(StrBytes::from_static_str("Ongoing"))
            .with_transaction_timeout_ms(60_000)
            .with_transaction_start_time_ms(1_000)
            .with_topics(vec![topic("b", vec![1, 0]), topic("a", vec![5])]);
        assert_eq!(
            describe_row(1, &state, 3_500),
            [
                "1",
                "app-1",
                "42",
                "3",
                "Ongoing",
                "60000",
                "1000",
                "2500",
                "a-5,b-0,b-1"
            ]
        );
    }

    #[test]
    fn describe_row_without_a_transaction() {
        let state = TransactionState::default()
            .with_transactional_id(TransactionalId(StrBytes::from_static_str("app-1")))
            .with_transaction_state(StrBytes::from_static_str("CompleteCommit"))
            .with_transaction_start_time_ms(-1);
        let row = describe_row(1, &state, 3_500);
        assert_eq!(row[4], "CompleteCommit");
        assert_eq!(row[6..], ["-", "-", "-"]);
        // A completed transaction keeps its start time but has no duration.
        let completed = state.with_transaction_start_time_ms(1_000);
        assert_eq!(describe_row(1, &completed, 3_500)[6..], ["1000", "-", "-"]);
        let preparing =
            completed.with_transaction_state(StrBytes::from_static_str("PrepareCommit"));
        assert_eq!(describe_row(1, &preparing, 3_500)[6..8], ["1000", "2500"]);
    }

    #[test]
    fn producer_rows_by_producer_id() {
        let partition = PartitionResponse::default()
            .with_partition_index(2)
            .with_active_producers(vec![
                ProducerState::default()
                    .with_producer_id(ProducerId(9))
                    .with_producer_epoch(1)
                    .with_last_sequence(4)
                    .with_last_timestamp(1_700_000_000_000)
                    .with_coordinator_epoch(-1)
                    .with_current_txn_start_offset(-1),
                ProducerState::default()
                    .with_producer_id(ProducerId(5))
                    .with_producer_epoch(0)
                    .with_last_sequence(0)
                    .with_last_timestamp(1_700_000_000_001)
                    .with_coordinator_epoch(2)
                    .with_current_txn_start_offset(17),
            ]);
        assert_eq!(
            producer_rows(&partition),
            [
                ["2", "5", "0", "2", "0", "1700000000001", "17"],
                ["2", "9", "1", "-1", "4", "1700000000000", "-"],
            ]
        );
    }

    #[test]
    fn producers_answer_reports_failed_and_missing_partitions() {
        let response =
            DescribeProducersResponse::default().with_topics(vec![TopicResponse::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![
                    PartitionResponse::default()
                        .with_partition_index(0)
                        .with_active_producers(vec![
                            ProducerState::default().with_producer_id(ProducerId(8))
                        ]),
                    PartitionResponse::default()
                        .with_partition_index(1)
                        .with_error_code(6)
                        .with_error_message(Some(StrBytes::from_static_str("moved"))),
                    // Not asked for: ignored.
                    PartitionResponse::default().with_partition_index(9),
                ])]);
        let answer = producers_answer(&response, "t", &[0, 1, 2]);
        assert_eq!(answer.rows.len(), 1);
        assert_eq!(answer.rows[0].0, 0);
        assert_eq!(answer.rows[0].1.producer_id, ProducerId(8));
        assert_eq!(
            answer.failed,
            [
                (1, "NOT_LEADER_OR_FOLLOWER (6): moved".to_string()),
                (2, "missing from the answer".to_string())
            ]
        );
    }
}
