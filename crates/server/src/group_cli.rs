//! `fjord group ...`: consumer group administration against any Kafka-compatible broker, in
//! the manner of Kafka's `kafka-consumer-groups.sh` (list, describe with lag, delete, and
//! reset-offsets, which is a dry run unless `--execute` is given).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Buf;
use clap::{Args, Subcommand};
use fjord_protocol::kafka_protocol::messages::consumer_protocol_assignment::ConsumerProtocolAssignment;
use fjord_protocol::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsTopic,
};
use fjord_protocol::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use fjord_protocol::kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use fjord_protocol::kafka_protocol::messages::{
    BrokerId, ConsumerGroupDescribeRequest, DeleteGroupsRequest, DescribeGroupsRequest, GroupId,
    ListGroupsRequest, ListOffsetsRequest, MetadataRequest, OffsetCommitRequest,
    OffsetFetchRequest, TopicName,
};
use fjord_protocol::kafka_protocol::protocol::{Decodable, StrBytes};
use fjord_protocol::{ApiKey, RequestKind, ResponseKind};

use crate::admin::{check, error_name, AdminClient, ConnectArgs};
use crate::output::{non_empty, print_json, print_table, OutputFormat};
use serde_json::{json, Value};

#[derive(Args)]
pub struct GroupArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(subcommand)]
    command: GroupCommand,
}

#[derive(Subcommand)]
enum GroupCommand {
    /// List consumer groups (ListGroups), optionally only those in the given states
    List {
        /// Only groups in this state: Empty, Stable, PreparingRebalance, CompletingRebalance,
        /// Dead (repeatable)
        #[arg(long = "state", value_name = "STATE")]
        states: Vec<String>,
    },
    /// Show groups' state, members, and per partition the committed offset, log end offset,
    /// lag and owner
    Describe {
        /// Groups to describe
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Delete groups with no active members, and their committed offsets
    Delete {
        /// Groups to delete
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Change a group's committed offsets (the group must have no active members). Shows the
    /// plan only, unless --execute is given
    ResetOffsets(ResetArgs),
}

#[derive(Args)]
struct ResetArgs {
    /// Group whose offsets to reset
    #[arg(long)]
    group: String,
    /// TOPIC or TOPIC:P,P,... (repeatable); all partitions when none are given
    #[arg(
        long = "topic",
        value_name = "TOPIC[:PARTITIONS]",
        required_unless_present = "all_topics"
    )]
    topics: Vec<String>,
    /// Every topic the group has committed offsets for
    #[arg(long, conflicts_with = "topics")]
    all_topics: bool,
    #[command(flatten)]
    target: ResetTarget,
    /// Commit the new offsets (without it, only print the plan)
    #[arg(long)]
    execute: bool,
}

#[derive(Args)]
#[group(required = true, multiple = false)]
struct ResetTarget {
    /// To the log start offset
    #[arg(long)]
    to_earliest: bool,
    /// To the log end offset
    #[arg(long)]
    to_latest: bool,
    /// To this offset (clamped to the partition's earliest..latest)
    #[arg(long, value_name = "OFFSET")]
    to_offset: Option<i64>,
    /// By N from the committed offset (negative moves back; clamped)
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    shift_by: Option<i64>,
    /// To the first offset with a timestamp at or after this time: epoch milliseconds, or UTC
    /// as YYYY-MM-DDTHH:MM:SS[.mmm][Z]
    #[arg(long, value_name = "TIME")]
    to_datetime: Option<String>,
}

pub fn run(args: GroupArgs) -> Result<()> {
    let output = args.connect.output();
    let mut client = args.connect.connect()?;
    match args.command {
        GroupCommand::List { states } => list(&mut client, &states, output),
        GroupCommand::Describe { groups } => describe_groups(&mut client, &groups, output),
        GroupCommand::Delete { groups } => delete(&mut client, &groups, output),
        GroupCommand::ResetOffsets(reset) => reset_offsets(&mut client, &reset, output),
    }
}

fn list(client: &mut AdminClient, states: &[String], output: OutputFormat) -> Result<()> {
    let request = ListGroupsRequest::default().with_states_filter(
        states
            .iter()
            .map(|s| StrBytes::from_string(s.clone()))
            .collect(),
    );
    if !states.is_empty() && client.version_for(ApiKey::ListGroups, 4) < 4 {
        bail!(
            "{} cannot filter groups by state (ListGroups < v4)",
            client.address()
        );
    }
    let ResponseKind::ListGroups(response) =
        client.send(ApiKey::ListGroups, 4, RequestKind::ListGroups(request))?
    else {
        bail!("unexpected answer to ListGroups");
    };
    check(response.error_code, "ListGroups")?;
    if output == OutputFormat::Json {
        let mut groups: Vec<Value> = response
            .groups
            .iter()
            .map(|g| {
                json!({
                    "group": g.group_id.as_str(),
                    "state": non_empty(g.group_state.as_str()),
                    "protocol_type": non_empty(g.protocol_type.as_str()),
                })
            })
            .collect();
        groups.sort_by(|a, b| a["group"].as_str().cmp(&b["group"].as_str()));
        return print_json(&json!({ "groups": groups }));
    }
    let mut rows: Vec<Vec<String>> = response
        .groups
        .iter()
        .map(|g| {
            vec![
                g.group_id.to_string(),
                if g.group_state.is_empty() {
                    "-".to_string()
                } else {
                    g.group_state.to_string()
                },
                g.protocol_type.to_string(),
            ]
        })
        .collect();
    rows.sort();
    print_table(&["GROUP", "STATE", "PROTOCOL-TYPE"], &rows);
    Ok(())
}

/// A group as DescribeGroups shows it, with each member's assigned partitions.
struct GroupDescription {
    state: String,
    protocol_type: String,
    protocol: String,
    /// (topic, partition) -> (member id, host, client id)
    owners: BTreeMap<(String, i32), (String, String, String)>,
    members: usize,
}

fn describe_group(client: &mut AdminClient, group: &str) -> Result<GroupDescription> {
    if let Some(description) = describe_consumer_group(client, group)? {
        return Ok(description);
    }
    let request = DescribeGroupsRequest::default()
        .with_groups(vec![GroupId(StrBytes::from_string(group.to_string()))]);
    let ResponseKind::DescribeGroups(response) = client.send(
        ApiKey::DescribeGroups,
        5,
        RequestKind::DescribeGroups(request),
    )?
    else {
        bail!("unexpected answer to DescribeGroups");
    };
    let described = response
        .groups
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("DescribeGroups answered no group"))?;
    check(described.error_code, &format!("describing group {group}"))?;
    let mut owners = BTreeMap::new();
    if described.protocol_type.as_str() == "consumer" {
        for member in &described.members {
            for (topic, partition) in assigned_partitions(&member.member_assignment) {
                owners.insert(
                    (topic, partition),
                    (
                        member.member_id.to_string(),
                        member.client_host.to_string(),
                        member.client_id.to_string(),
                    ),
                );
            }
        }
    }
    Ok(GroupDescription {
        state: described.group_state.to_string(),
        protocol_type: described.protocol_type.to_string(),
        protocol: described.protocol_data.to_string(),
        members: described.members.len(),
        owners,
    })
}

/// A KIP-848 group through ConsumerGroupDescribe; `None` if the broker lacks the API or the
/// group is not a consumer-protocol group (then DescribeGroups knows it).
fn describe_consumer_group(
    client: &mut AdminClient,
    group: &str,
) -> Result<Option<GroupDescription>> {
    if !client.supports(ApiKey::ConsumerGroupDescribe) {
        return Ok(None);
    }
    let request = ConsumerGroupDescribeRequest::default()
        .with_group_ids(vec![GroupId(StrBytes::from_string(group.to_string()))]);
    let ResponseKind::ConsumerGroupDescribe(response) = client.send(
        ApiKey::ConsumerGroupDescribe,
        1,
        RequestKind::ConsumerGroupDescribe(request),
    )?
    else {
        bail!("unexpected answer to ConsumerGroupDescribe");
    };
    let Some(described) = response.groups.into_iter().next() else {
        return Ok(None);
    };
    if described.error_code != 0 {
        return Ok(None);
    }
    let mut owners = BTreeMap::new();
    for member in &described.members {
        for tp in &member.assignment.topic_partitions {
            for p in &tp.partitions {
                owners.insert(
                    (tp.topic_name.to_string(), *p),
                    (
                        member.member_id.to_string(),
                        member.client_host.to_string(),
                        member.client_id.to_string(),
                    ),
                );
            }
        }
    }
    Ok(Some(GroupDescription {
        state: described.group_state.to_string(),
        protocol_type: "consumer".to_string(),
        protocol: format!(
            "{} (server-side, epoch {})",
            described.assignor_name.as_str(),
            described.group_epoch
        ),
        members: described.members.len(),
        owners,
    }))
}

/// The partitions in a consumer member's assignment (Kafka's ConsumerProtocolAssignment:
/// an i16 version, then the struct). Undecodable assignments count as none.
fn assigned_partitions(assignment: &bytes::Bytes) -> Vec<(String, i32)> {
    let mut buf = assignment.clone();
    if buf.remaining() < 2 {
        return Vec::new();
    }
    let version = buf.get_i16().clamp(0, 3);
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ConsumerProtocolAssignment::decode(&mut buf, version)
    }));
    match decoded {
        Ok(Ok(assignment)) => assignment
            .assigned_partitions
            .iter()
            .flat_map(|tp| tp.partitions.iter().map(|p| (tp.topic.to_string(), *p)))
            .collect(),
        _ => Vec::new(),
    }
}

/// Committed offsets of `group`: (topic, partition) -> offset (-1 = none).
fn committed_offsets(
    client: &mut AdminClient,
    group: &str,
) -> Result<BTreeMap<(String, i32), i64>> {
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_topics(None);
    let ResponseKind::OffsetFetch(response) =
        client.send(ApiKey::OffsetFetch, 7, RequestKind::OffsetFetch(request))?
    else {
        bail!("unexpected answer to OffsetFetch");
    };
    check(
        response.error_code,
        &format!("fetching offsets of group {group}"),
    )?;
    let mut offsets = BTreeMap::new();
    for topic in &response.topics {
        for partition in &topic.partitions {
            check(partition.error_code, "OffsetFetch")?;
            offsets.insert(
                (topic.name.to_string(), partition.partition_index),
                partition.committed_offset,
            );
        }
    }
    Ok(offsets)
}

/// ListOffsets for each partition at `timestamp` (-2 earliest, -1 latest, else time).
fn list_offsets(
    client: &mut AdminClient,
    partitions: &BTreeSet<(String, i32)>,
    timestamp: i64,
) -> Result<BTreeMap<(String, i32), i64>> {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in partitions {
        by_topic.entry(topic).or_default().push(*partition);
    }
    let topics = by_topic
        .iter()
        .map(|(topic, parts)| {
            ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(
                    parts
                        .iter()
                        .map(|p| {
                            ListOffsetsPartition::default()
                                .with_partition_index(*p)
                                .with_timestamp(timestamp)
                        })
                        .collect(),
                )
        })
        .collect();
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(topics);
    let ResponseKind::ListOffsets(response) =
        client.send(ApiKey::ListOffsets, 7, RequestKind::ListOffsets(request))?
    else {
        bail!("unexpected answer to ListOffsets");
    };
    let mut offsets = BTreeMap::new();
    for topic in &response.topics {
        for partition in &topic.partitions {
            if partition.error_code != 0 {
                bail!(
                    "ListOffsets for {}-{} failed: {}",
                    topic.name.as_str(),
                    partition.partition_index,
                    error_name(partition.error_code)
                );
            }
            offsets.insert(
                (topic.name.to_string(), partition.partition_index),
                partition.offset,
            );
        }
    }
    Ok(offsets)
}

/// One partition of a described group: committed offset, log end and owner, `None` where
/// absent.
struct PartitionLag {
    topic: String,
    partition: i32,
    current_offset: Option<i64>,
    log_end_offset: Option<i64>,
    /// (member id, host, client id)
    owner: Option<(String, String, String)>,
}

impl PartitionLag {
    fn lag(&self) -> Option<i64> {
        Some((self.log_end_offset? - self.current_offset?).max(0))
    }

    fn to_json(&self) -> Value {
        let (member, host, client_id) = match &self.owner {
            Some((m, h, c)) => (non_empty(m), non_empty(h), non_empty(c)),
            None => (Value::Null, Value::Null, Value::Null),
        };
        json!({
            "topic": self.topic,
            "partition": self.partition,
            "current_offset": self.current_offset,
            "log_end_offset": self.log_end_offset,
            "lag": self.lag(),
            "consumer_id": member,
            "host": host,
            "client_id": client_id,
        })
    }
}

/// What `fjord group describe` shows of one group.
struct GroupReport {
    group: String,
    description: GroupDescription,
    partitions: Vec<PartitionLag>,
}

fn group_report(client: &mut AdminClient, group: &str) -> Result<GroupReport> {
    let mut coordinator = client.coordinator_for(group)?;
    let coordinator = coordinator.client();
    let description = describe_group(coordinator, group)?;
    let committed = committed_offsets(coordinator, group)?;
    let partitions: BTreeSet<(String, i32)> = committed
        .iter()
        .filter(|(_, offset)| **offset >= 0)
        .map(|(tp, _)| tp.clone())
        .chain(description.owners.keys().cloned())
        .collect();
    let log_end = if partitions.is_empty() {
        BTreeMap::new()
    } else {
        list_offsets(coordinator, &partitions, -1)?
    };
    let partitions = partitions
        .into_iter()
        .map(|tp| PartitionLag {
            current_offset: committed.get(&tp).copied().filter(|o| *o >= 0),
            log_end_offset: log_end.get(&tp).copied(),
            owner: description.owners.get(&tp).cloned(),
            topic: tp.0,
            partition: tp.1,
        })
        .collect();
    Ok(GroupReport {
        group: group.to_string(),
        description,
        partitions,
    })
}

fn describe_groups(
    client: &mut AdminClient,
    groups: &[String],
    output: OutputFormat,
) -> Result<()> {
    if output == OutputFormat::Text {
        for group in groups {
            print_group_report(&group_report(client, group)?);
        }
        return Ok(());
    }
    let mut reports = Vec::with_capacity(groups.len());
    for group in groups {
        let report = group_report(client, group)?;
        let d = &report.description;
        reports.push(json!({
            "group": report.group,
            "state": non_empty(&d.state),
            "members": d.members,
            "protocol_type": non_empty(&d.protocol_type),
            "assignor": non_empty(&d.protocol),
            "partitions": report.partitions.iter().map(PartitionLag::to_json).collect::<Vec<_>>(),
        }));
    }
    print_json(&json!({ "groups": reports }))
}

fn print_group_report(report: &GroupReport) {
    let description = &report.description;
    let group = &report.group;
    println!(
        "Group {group}: state {}, {} member(s), protocol type {}, assignor {}",
        description.state,
        description.members,
        if description.protocol_type.is_empty() {
            "-"
        } else {
            &description.protocol_type
        },
        if description.protocol.is_empty() {
            "-"
        } else {
            &description.protocol
        },
    );
    if report.partitions.is_empty() {
        println!("(no committed offsets and no assigned partitions)");
        return;
    }
    let dash = || "-".to_string();
    let rows: Vec<Vec<String>> = report
        .partitions
        .iter()
        .map(|p| {
            let (member, host, client_id) =
                p.owner.clone().unwrap_or_else(|| (dash(), dash(), dash()));
            vec![
                group.to_string(),
                p.topic.clone(),
                p.partition.to_string(),
                p.current_offset.map_or_else(dash, |c| c.to_string()),
                p.log_end_offset.map_or_else(dash, |e| e.to_string()),
                p.lag().map_or_else(dash, |l| l.to_string()),
                member,
                host,
                client_id,
            ]
        })
        .collect();
    print_table(
        &[
            "GROUP",
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG",
            "CONSUMER-ID",
            "HOST",
            "CLIENT-ID",
        ],
        &rows,
    );
}

fn delete(client: &mut AdminClient, groups: &[String], output: OutputFormat) -> Result<()> {
    let mut failed = 0;
    let mut results = Vec::new();
    for group in groups {
        let mut coordinator = client.coordinator_for(group)?;
        let request = DeleteGroupsRequest::default()
            .with_groups_names(vec![GroupId(StrBytes::from_string(group.clone()))]);
        let ResponseKind::DeleteGroups(response) = coordinator.client().send(
            ApiKey::DeleteGroups,
            2,
            RequestKind::DeleteGroups(request),
        )?
        else {
            bail!("unexpected answer to DeleteGroups");
        };
        for result in &response.results {
            let error = (result.error_code != 0).then(|| error_name(result.error_code));
            if error.is_some() {
                failed += 1;
            }
            match (&error, output) {
                (_, OutputFormat::Json) => results.push(json!({
                    "group": result.group_id.as_str(),
                    "error": error,
                })),
                (None, OutputFormat::Text) => {
                    println!("Deleted group {}", result.group_id.as_str())
                }
                (Some(error), OutputFormat::Text) => eprintln!(
                    "Could not delete group {}: {error}",
                    result.group_id.as_str()
                ),
            }
        }
    }
    if output == OutputFormat::Json {
        print_json(&json!({ "results": results }))?;
    }
    if failed > 0 {
        bail!("{failed} group(s) not deleted");
    }
    Ok(())
}

fn reset_offsets(client: &mut AdminClient, args: &ResetArgs, output: OutputFormat) -> Result<()> {
    let mut coordinator = client.coordinator_for(&args.group)?;
    let coordinator = coordinator.client();
    let description = describe_group(coordinator, &args.group)?;
    if args.execute && !matches!(description.state.as_str(), "Empty" | "Dead" | "") {
        bail!(
            "group {} is {} with {} member(s): offsets can only be reset while it has no active members",
            args.group,
            description.state,
            description.members
        );
    }
    let committed = committed_offsets(coordinator, &args.group)?;
    let partitions = partitions_to_reset(coordinator, args, &committed)?;
    if partitions.is_empty() {
        bail!("no partitions to reset");
    }
    let earliest = list_offsets(coordinator, &partitions, -2)?;
    let latest = list_offsets(coordinator, &partitions, -1)?;
    let target = &args.target;
    let by_time = match &target.to_datetime {
        Some(time) => Some(list_offsets(
            coordinator,
            &partitions,
            parse_time_ms(time)?,
        )?),
        None => None,
    };
    let mut plan: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for tp in &partitions {
        let low = earliest.get(tp).copied().unwrap_or(0);
        let high = latest.get(tp).copied().unwrap_or(low);
        let current = committed.get(tp).copied().filter(|o| *o >= 0);
        let wanted = if target.to_earliest {
            low
        } else if target.to_latest {
            high
        } else if let Some(offset) = target.to_offset {
            offset
        } else if let Some(shift) = target.shift_by {
            current
                .ok_or_else(|| anyhow!("{}-{} has no committed offset to shift", tp.0, tp.1))?
                .saturating_add(shift)
        } else if let Some(found) = &by_time {
            // No record at or after the time: Kafka resets to the log end.
            found.get(tp).copied().filter(|o| *o >= 0).unwrap_or(high)
        } else {
            bail!("no reset target given");
        };
        plan.insert(tp.clone(), wanted.clamp(low, high));
    }
    if output == OutputFormat::Json {
        if args.execute {
            commit(coordinator, &args.group, &plan)?;
        }
        let partitions: Vec<Value> = plan
            .iter()
            .map(|(tp, new)| {
                json!({
                    "topic": tp.0,
                    "partition": tp.1,
                    "current_offset": committed.get(tp).copied().filter(|o| *o >= 0),
                    "new_offset": new,
                })
            })
            .collect();
        return print_json(&json!({
            "group": args.group,
            "executed": args.execute,
            "partitions": partitions,
        }));
    }
    let rows: Vec<Vec<String>> = plan
        .iter()
        .map(|(tp, new)| {
            vec![
                args.group.clone(),
                tp.0.clone(),
                tp.1.to_string(),
                committed
                    .get(tp)
                    .copied()
                    .filter(|o| *o >= 0)
                    .map_or("-".to_string(), |o| o.to_string()),
                new.to_string(),
            ]
        })
        .collect();
    print_table(
        &[
            "GROUP",
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "NEW-OFFSET",
        ],
        &rows,
    );
    if !args.execute {
        println!("Dry run: nothing changed. Add --execute to commit these offsets.");
        return Ok(());
    }
    commit(coordinator, &args.group, &plan)?;
    println!(
        "Committed {} offset(s) for group {}.",
        plan.len(),
        args.group
    );
    Ok(())
}

fn partitions_to_reset(
    client: &mut AdminClient,
    args: &ResetArgs,
    committed: &BTreeMap<(String, i32), i64>,
) -> Result<BTreeSet<(String, i32)>> {
    if args.all_topics {
        return Ok(committed.keys().cloned().collect());
    }
    let mut partitions = BTreeSet::new();
    for spec in &args.topics {
        match spec.split_once(':') {
            Some((topic, list)) => {
                for p in list.split(',') {
                    let p: i32 = p
                        .trim()
                        .parse()
                        .with_context(|| format!("bad partition {p:?} in {spec:?}"))?;
                    partitions.insert((topic.to_string(), p));
                }
            }
            None => {
                for p in topic_partitions(client, spec)? {
                    partitions.insert((spec.clone(), p));
                }
            }
        }
    }
    Ok(partitions)
}

fn topic_partitions(client: &mut AdminClient, topic: &str) -> Result<Vec<i32>> {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
            TopicName(StrBytes::from_string(topic.to_string())),
        ))]))
        .with_allow_auto_topic_creation(false);
    let ResponseKind::Metadata(response) =
        client.send(ApiKey::Metadata, 12, RequestKind::Metadata(request))?
    else {
        bail!("unexpected answer to Metadata");
    };
    let found = response
        .topics
        .first()
        .ok_or_else(|| anyhow!("no metadata for topic {topic}"))?;
    check(found.error_code, &format!("looking up topic {topic}"))?;
    Ok(found.partitions.iter().map(|p| p.partition_index).collect())
}

fn commit(
    client: &mut AdminClient,
    group: &str,
    plan: &BTreeMap<(String, i32), i64>,
) -> Result<()> {
    let mut by_topic: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for ((topic, partition), offset) in plan {
        by_topic.entry(topic).or_default().push(
            OffsetCommitRequestPartition::default()
                .with_partition_index(*partition)
                .with_committed_offset(*offset)
                .with_committed_metadata(Some(StrBytes::from_static_str(""))),
        );
    }
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(StrBytes::from_static_str(""))
        .with_topics(
            by_topic
                .into_iter()
                .map(|(topic, partitions)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                        .with_partitions(partitions)
                })
                .collect(),
        );
    let ResponseKind::OffsetCommit(response) =
        client.send(ApiKey::OffsetCommit, 8, RequestKind::OffsetCommit(request))?
    else {
        bail!("unexpected answer to OffsetCommit");
    };
    for topic in &response.topics {
        for partition in &topic.partitions {
            if partition.error_code != 0 {
                bail!(
                    "committing {}-{} failed: {}",
                    topic.name.as_str(),
                    partition.partition_index,
                    error_name(partition.error_code)
                );
            }
        }
    }
    Ok(())
}

/// Epoch milliseconds, or `YYYY-MM-DDTHH:MM:SS[.mmm][Z]` read as UTC.
pub(crate) fn parse_time_ms(text: &str) -> Result<i64> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    let bad = || anyhow!("cannot read {text:?} as epoch ms or YYYY-MM-DDTHH:MM:SS[.mmm][Z]");
    let text = text.strip_suffix('Z').unwrap_or(text);
    let (date, time) = text.split_once('T').ok_or_else(bad)?;
    let mut date_parts = date.splitn(3, '-').map(|p| p.parse::<i64>());
    let (Some(Ok(year)), Some(Ok(month)), Some(Ok(day))) =
        (date_parts.next(), date_parts.next(), date_parts.next())
    else {
        return Err(bad());
    };
    let (hms, millis) = match time.split_once('.') {
        Some((hms, frac)) => {
            let digits: String = frac.chars().chain("000".chars()).take(3).collect();
            (hms, digits.parse::<i64>().map_err(|_| bad())?)
        }
        None => (time, 0),
    };
    let mut time_parts = hms.splitn(3, ':').map(|p| p.parse::<i64>());
    let (Some(Ok(hour)), Some(Ok(minute)), second) =
        (time_parts.next(), time_parts.next(), time_parts.next())
    else {
        return Err(bad());
    };
    let second = match second {
        Some(Ok(s)) => s,
        None => 0,
        Some(Err(_)) => return Err(bad()),
    };
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || !(0..24).contains(&hour)
        || !(0..60).contains(&minute)
        || !(0..61).contains(&second)
    {
        return Err(bad());
    }
    let days = days_from_civil(year, month, day);
    Ok(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_utc() {
        assert_eq!(parse_time_ms("0").unwrap(), 0);
        assert_eq!(parse_time_ms("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(
            parse_time_ms("2026-11-23T19:30:00").unwrap(),
            1_795_462_200_000
        );
        assert_eq!(
            parse_time_ms("2000-02-29T12:00:00.5").unwrap(),
            951_825_600_500
        );
        assert!(parse_time_ms("2026-13-01T00:00:00").is_err());
        assert!(parse_time_ms("yesterday").is_err());
    }
}
