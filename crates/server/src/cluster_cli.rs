//! `fjord cluster ...`: `info` (the cluster id, the controller, the brokers from
//! DescribeCluster where supported, else Metadata, and the API versions the connected broker
//! supports), `status` (brokers with rack and fencing, the metadata quorum, under-replicated
//! and offline partition counts), `describe-quorum` (DescribeQuorum in full, like
//! `kafka-metadata-quorum.sh describe --status --replication`) and `unregister`
//! (UnregisterBroker). Plain Kafka requests: they work against any KRaft cluster.
//!
//! Only the metadata quorum's Raft leader describes the quorum; brokers forward DescribeQuorum
//! to it (Fjord and Kafka alike), so the connected broker answers. If it answers
//! NOT_LEADER_OR_FOLLOWER anyway (no leader reachable from it, an election under way), the
//! CLI asks every other broker Metadata lists until one answers.

use anyhow::{anyhow, bail, Result};
use clap::{Args, Subcommand};
use fjord_protocol::kafka_protocol::messages::describe_quorum_response::ReplicaState;
use fjord_protocol::kafka_protocol::messages::{
    describe_quorum_request, BrokerId, DescribeClusterRequest, DescribeQuorumRequest,
    DescribeQuorumResponse, MetadataRequest, TopicName, UnregisterBrokerRequest,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ApiKey, RequestKind, ResponseKind};
use serde_json::json;

use crate::admin::{check, error_name, AdminClient, ConnectArgs};
use crate::client::BrokerInfo;
use crate::output::print_table;
use crate::output::{print_json, OutputFormat};

#[derive(Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Cluster id, controller, brokers (id, host:port, rack) and the API versions the
    /// connected broker supports
    Info,
    /// Health at a glance: brokers (rack, fenced or not), the metadata quorum (leader, epoch,
    /// high watermark, each voter's lag) and the under-replicated and offline partition counts
    Status,
    /// The metadata quorum in detail: leader, epoch, high watermark, and per voter and
    /// observer its log end offset, lag and last fetch and caught-up times
    DescribeQuorum,
    /// Remove a broker's registration (decommissioning: reassign its partitions away and stop
    /// it first)
    Unregister {
        /// Id of the broker to unregister (Kafka's `kafka-cluster.sh unregister --id`)
        #[arg(long, visible_alias = "id", value_name = "N")]
        broker: i32,
    },
}

struct ClusterInfo {
    cluster_id: Option<String>,
    controller_id: i32,
    brokers: Vec<BrokerInfo>,
}

pub fn run(args: ClusterArgs) -> Result<()> {
    crate::client::check_address(args.connect.bootstrap())?;
    let mut client = args.connect.connect()?;
    match args.command {
        ClusterCommand::Info => info(&mut client, args.connect.output()),
        ClusterCommand::Status => status(&mut client, args.connect.output()),
        ClusterCommand::DescribeQuorum => describe_quorum(&mut client, args.connect.output()),
        ClusterCommand::Unregister { broker } => {
            unregister(&mut client, broker, args.connect.output())
        }
    }
}

fn info(client: &mut AdminClient, output: OutputFormat) -> Result<()> {
    let cluster = if client.supports(ApiKey::DescribeCluster) {
        describe_cluster(client)?
    } else {
        metadata(client)?
    };
    let versions = client.api_versions();
    let api_name = |key: i16| {
        ApiKey::try_from(key).map_or_else(
            |_| format!("Unknown({key})"),
            |k| format!("{k:?}").trim_end_matches("Key").to_string(),
        )
    };
    if output == OutputFormat::Json {
        return print_json(&json!({
            "cluster_id": cluster.cluster_id,
            "controller_id": cluster.controller_id,
            "brokers": cluster.brokers.iter().map(|b| json!({
                "node_id": b.node_id, "host": b.host, "port": b.port, "rack": b.rack,
            })).collect::<Vec<_>>(),
            "api_versions": versions.iter().map(|(key, min, max)| json!({
                "api": api_name(*key), "api_key": key, "min_version": min, "max_version": max,
            })).collect::<Vec<_>>(),
        }));
    }
    println!(
        "Cluster id:    {}",
        cluster.cluster_id.as_deref().unwrap_or("-")
    );
    println!("Controller id: {}", cluster.controller_id);
    println!("\nBrokers:");
    let rows: Vec<Vec<String>> = cluster
        .brokers
        .iter()
        .map(|b| {
            vec![
                b.node_id.to_string(),
                b.address(),
                b.rack.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    print_table(&["NodeId", "Address", "Rack"], &rows);
    println!("\nAPI versions of {}:", client.address());
    let rows: Vec<Vec<String>> = versions
        .iter()
        .map(|(key, min, max)| {
            vec![
                api_name(*key),
                key.to_string(),
                min.to_string(),
                max.to_string(),
            ]
        })
        .collect();
    print_table(&["Api", "Key", "MinVersion", "MaxVersion"], &rows);
    Ok(())
}

fn describe_cluster(client: &mut AdminClient) -> Result<ClusterInfo> {
    let ResponseKind::DescribeCluster(response) = client.send(
        ApiKey::DescribeCluster,
        1,
        RequestKind::DescribeCluster(DescribeClusterRequest::default()),
    )?
    else {
        bail!("unexpected answer to DescribeCluster");
    };
    check(response.error_code, "DescribeCluster")?;
    let mut brokers: Vec<BrokerInfo> = response
        .brokers
        .iter()
        .map(|b| BrokerInfo {
            node_id: b.broker_id.0,
            host: b.host.to_string(),
            port: b.port,
            rack: b.rack.as_ref().map(|r| r.to_string()),
        })
        .collect();
    brokers.sort_by_key(|b| b.node_id);
    Ok(ClusterInfo {
        cluster_id: Some(response.cluster_id.to_string()),
        controller_id: response.controller_id.0,
        brokers,
    })
}

fn metadata(client: &mut AdminClient) -> Result<ClusterInfo> {
    let request = MetadataRequest::default()
        .with_topics(Some(Vec::new()))
        .with_allow_auto_topic_creation(false);
    let ResponseKind::Metadata(response) =
        client.send(ApiKey::Metadata, 12, RequestKind::Metadata(request))?
    else {
        bail!("unexpected answer to Metadata");
    };
    let mut brokers: Vec<BrokerInfo> = response
        .brokers
        .iter()
        .map(|b| BrokerInfo {
            node_id: b.node_id.0,
            host: b.host.to_string(),
            port: b.port,
            rack: b.rack.as_ref().map(|r| r.to_string()),
        })
        .collect();
    brokers.sort_by_key(|b| b.node_id);
    Ok(ClusterInfo {
        cluster_id: response.cluster_id.as_ref().map(|c| c.to_string()),
        controller_id: response.controller_id.0,
        brokers,
    })
}

// ------------------------------------------------------------------------------- status

/// Kafka's metadata partition.
const METADATA_TOPIC: &str = "__cluster_metadata";
/// Kafka's NOT_LEADER_OR_FOLLOWER.
const NOT_LEADER_OR_FOLLOWER: i16 = 6;

/// A broker with its fencing state (DescribeCluster v2 lists fenced brokers too).
struct BrokerStatus {
    info: BrokerInfo,
    fenced: bool,
}

/// Every registered broker: DescribeCluster v2 with fenced ones where supported, else the
/// live ones (DescribeCluster v0-1 or Metadata), all unfenced.
fn broker_statuses(client: &mut AdminClient) -> Result<(ClusterInfo, Vec<BrokerStatus>)> {
    if client.supports(ApiKey::DescribeCluster)
        && client.version_for(ApiKey::DescribeCluster, 2) >= 2
    {
        let ResponseKind::DescribeCluster(response) = client.send(
            ApiKey::DescribeCluster,
            2,
            RequestKind::DescribeCluster(
                DescribeClusterRequest::default().with_include_fenced_brokers(true),
            ),
        )?
        else {
            bail!("unexpected answer to DescribeCluster");
        };
        check(response.error_code, "DescribeCluster")?;
        let mut statuses: Vec<BrokerStatus> = response
            .brokers
            .iter()
            .map(|b| BrokerStatus {
                info: BrokerInfo {
                    node_id: b.broker_id.0,
                    host: b.host.to_string(),
                    port: b.port,
                    rack: b.rack.as_ref().map(|r| r.to_string()),
                },
                fenced: b.is_fenced,
            })
            .collect();
        statuses.sort_by_key(|b| b.info.node_id);
        let cluster = ClusterInfo {
            cluster_id: Some(response.cluster_id.to_string()),
            controller_id: response.controller_id.0,
            brokers: Vec::new(),
        };
        return Ok((cluster, statuses));
    }
    let mut cluster = if client.supports(ApiKey::DescribeCluster) {
        describe_cluster(client)?
    } else {
        metadata(client)?
    };
    let statuses = std::mem::take(&mut cluster.brokers)
        .into_iter()
        .map(|info| BrokerStatus {
            info,
            fenced: false,
        })
        .collect();
    Ok((cluster, statuses))
}

/// The ids of the unfenced brokers.
pub fn live_brokers(client: &mut AdminClient) -> Result<Vec<i32>> {
    let (_, statuses) = broker_statuses(client)?;
    Ok(statuses
        .iter()
        .filter(|b| !b.fenced)
        .map(|b| b.info.node_id)
        .collect())
}

/// The quorum as its leader describes it.
struct Quorum {
    /// Which broker answered.
    answered_by: String,
    leader_id: i32,
    leader_epoch: i32,
    high_watermark: i64,
    voters: Vec<ReplicaState>,
    observers: Vec<ReplicaState>,
}

fn describe_quorum_request() -> DescribeQuorumRequest {
    DescribeQuorumRequest::default().with_topics(vec![describe_quorum_request::TopicData::default(
    )
    .with_topic_name(TopicName(StrBytes::from_static_str(METADATA_TOPIC)))
    .with_partitions(vec![
        describe_quorum_request::PartitionData::default().with_partition_index(0)
    ])])
}

/// The quorum from the first broker that answers DescribeQuorum without
/// NOT_LEADER_OR_FOLLOWER: the connected one (which forwards to the Raft leader), then the
/// others Metadata lists.
fn quorum(client: &mut AdminClient) -> Result<Quorum> {
    if !client.supports(ApiKey::DescribeQuorum) {
        bail!("{} does not support DescribeQuorum", client.address());
    }
    let mut last_error = None;
    let mut addresses = vec![client.address().to_string()];
    for (_, address) in client.cluster_brokers()? {
        if !addresses.contains(&address) {
            addresses.push(address);
        }
    }
    for address in addresses {
        let mut connection = match client.client_for(&address) {
            Ok(connection) => connection,
            Err(error) => {
                last_error = Some(error);
                continue;
            }
        };
        let peer = connection.client();
        let ResponseKind::DescribeQuorum(response) = peer.send(
            ApiKey::DescribeQuorum,
            2,
            RequestKind::DescribeQuorum(describe_quorum_request()),
        )?
        else {
            bail!("unexpected answer to DescribeQuorum");
        };
        match quorum_of(&response, &address) {
            Ok(quorum) => return Ok(quorum),
            Err((code, error)) if code == NOT_LEADER_OR_FOLLOWER => last_error = Some(error),
            Err((_, error)) => return Err(error),
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow!("no broker described the metadata quorum")))
}

fn quorum_of(
    response: &DescribeQuorumResponse,
    address: &str,
) -> std::result::Result<Quorum, (i16, anyhow::Error)> {
    let failed = |code: i16| (code, anyhow!("DescribeQuorum failed: {}", error_name(code)));
    if response.error_code != 0 {
        return Err(failed(response.error_code));
    }
    let partition = response
        .topics
        .iter()
        .flat_map(|t| &t.partitions)
        .next()
        .ok_or_else(|| (-1, anyhow!("DescribeQuorum answered no partition")))?;
    if partition.error_code != 0 {
        return Err(failed(partition.error_code));
    }
    Ok(Quorum {
        answered_by: address.to_string(),
        leader_id: partition.leader_id.0,
        leader_epoch: partition.leader_epoch,
        high_watermark: partition.high_watermark,
        voters: partition.current_voters.clone(),
        observers: partition.observers.clone(),
    })
}

impl Quorum {
    /// The leader's log end offset (its high watermark if it is not listed).
    fn leader_end_offset(&self) -> i64 {
        self.voters
            .iter()
            .find(|v| v.replica_id == BrokerId(self.leader_id))
            .map_or(self.high_watermark, |v| v.log_end_offset)
    }

    /// How far `replica` is behind the leader's log end offset (null if unknown).
    fn lag(&self, replica: &ReplicaState) -> Option<i64> {
        (replica.log_end_offset >= 0)
            .then(|| (self.leader_end_offset() - replica.log_end_offset).max(0))
    }

    fn replica_json(&self, replica: &ReplicaState, now_ms: i64) -> serde_json::Value {
        json!({
            "node_id": replica.replica_id.0,
            "log_end_offset": crate::output::non_negative(replica.log_end_offset),
            "lag": self.lag(replica),
            "last_fetch_ms_ago": ago(replica.last_fetch_timestamp, now_ms),
            "last_caught_up_ms_ago": ago(replica.last_caught_up_timestamp, now_ms),
        })
    }

    fn replica_row(&self, replica: &ReplicaState, role: &str, now_ms: i64) -> Vec<String> {
        let text = |value: Option<i64>| value.map_or_else(|| "-".to_string(), |v| v.to_string());
        vec![
            replica.replica_id.0.to_string(),
            role.to_string(),
            text((replica.log_end_offset >= 0).then_some(replica.log_end_offset)),
            text(self.lag(replica)),
            text(ago(replica.last_fetch_timestamp, now_ms)),
            text(ago(replica.last_caught_up_timestamp, now_ms)),
        ]
    }

    fn role(&self, replica: &ReplicaState) -> &'static str {
        if replica.replica_id == BrokerId(self.leader_id) {
            "leader"
        } else {
            "follower"
        }
    }
}

/// Milliseconds since `timestamp_ms` (null when unknown, -1).
fn ago(timestamp_ms: i64, now_ms: i64) -> Option<i64> {
    (timestamp_ms >= 0).then(|| (now_ms - timestamp_ms).max(0))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn status(client: &mut AdminClient, output: OutputFormat) -> Result<()> {
    let (cluster, brokers) = broker_statuses(client)?;
    let partitions =
        crate::partition_cli::partitions_of(&crate::partition_cli::metadata(client, None)?)?;
    let under_replicated = partitions.iter().filter(|p| p.under_replicated()).count();
    let offline = partitions.iter().filter(|p| p.is_offline()).count();
    // A Kafka without KRaft (or a broker that cannot describe it) still gets the rest.
    let quorum = if client.supports(ApiKey::DescribeQuorum) {
        Some(quorum(client))
    } else {
        None
    };
    let now = now_ms();
    // A broker that is a voter of the quorum is a combined node; one that is not is broker-only
    // (process.roles=broker, an observer). Unknown without DescribeQuorum.
    let roles = |node_id: i32| match &quorum {
        Some(Ok(q)) if q.voters.iter().any(|v| v.replica_id.0 == node_id) => "broker,controller",
        Some(Ok(_)) => "broker",
        _ => "-",
    };
    if output == OutputFormat::Json {
        let quorum_json = match &quorum {
            Some(Ok(q)) => json!({
                "leader_id": q.leader_id,
                "leader_epoch": q.leader_epoch,
                "high_watermark": q.high_watermark,
                "voters": q.voters.iter().map(|v| q.replica_json(v, now)).collect::<Vec<_>>(),
            }),
            Some(Err(error)) => json!({ "error": format!("{error:#}") }),
            None => serde_json::Value::Null,
        };
        return print_json(&json!({
            "cluster_id": cluster.cluster_id,
            "controller_id": cluster.controller_id,
            "brokers": brokers.iter().map(|b| json!({
                "node_id": b.info.node_id,
                "host": b.info.host,
                "port": b.info.port,
                "rack": b.info.rack,
                "fenced": b.fenced,
                "roles": roles(b.info.node_id),
            })).collect::<Vec<_>>(),
            "quorum": quorum_json,
            "partitions": partitions.len(),
            "under_replicated_partitions": under_replicated,
            "offline_partitions": offline,
        }));
    }
    println!(
        "Cluster id:    {}",
        cluster.cluster_id.as_deref().unwrap_or("-")
    );
    println!("\nBrokers:");
    let rows: Vec<Vec<String>> = brokers
        .iter()
        .map(|b| {
            vec![
                b.info.node_id.to_string(),
                b.info.address(),
                b.info.rack.clone().unwrap_or_else(|| "-".into()),
                if b.fenced { "fenced" } else { "unfenced" }.to_string(),
                roles(b.info.node_id).to_string(),
            ]
        })
        .collect();
    print_table(&["NODE", "ADDRESS", "RACK", "STATE", "ROLES"], &rows);
    println!("\nMetadata quorum:");
    match &quorum {
        Some(Ok(q)) => {
            println!("Leader:        {}", q.leader_id);
            println!("Epoch:         {}", q.leader_epoch);
            println!("High watermark: {}", q.high_watermark);
            let rows: Vec<Vec<String>> = q
                .voters
                .iter()
                .map(|v| q.replica_row(v, q.role(v), now))
                .collect();
            print_table(
                &[
                    "NODE",
                    "ROLE",
                    "LOG_END_OFFSET",
                    "LAG",
                    "LAST_FETCH_MS_AGO",
                    "CAUGHT_UP_MS_AGO",
                ],
                &rows,
            );
        }
        Some(Err(error)) => println!("unavailable: {error:#}"),
        None => println!("unavailable: the broker does not support DescribeQuorum"),
    }
    println!("\nPartitions:    {}", partitions.len());
    println!("Under-replicated: {under_replicated}");
    println!("Offline:       {offline}");
    Ok(())
}

fn describe_quorum(client: &mut AdminClient, output: OutputFormat) -> Result<()> {
    let q = quorum(client)?;
    let now = now_ms();
    if output == OutputFormat::Json {
        return print_json(&json!({
            "answered_by": q.answered_by,
            "leader_id": q.leader_id,
            "leader_epoch": q.leader_epoch,
            "high_watermark": q.high_watermark,
            "voters": q.voters.iter().map(|v| q.replica_json(v, now)).collect::<Vec<_>>(),
            "observers": q.observers.iter().map(|o| q.replica_json(o, now)).collect::<Vec<_>>(),
        }));
    }
    println!("Leader:         {}", q.leader_id);
    println!("Epoch:          {}", q.leader_epoch);
    println!("High watermark: {}", q.high_watermark);
    println!("Answered by:    {}", q.answered_by);
    println!();
    let rows: Vec<Vec<String>> = q
        .voters
        .iter()
        .map(|v| q.replica_row(v, q.role(v), now))
        .chain(
            q.observers
                .iter()
                .map(|o| q.replica_row(o, "observer", now)),
        )
        .collect();
    print_table(
        &[
            "NODE",
            "ROLE",
            "LOG_END_OFFSET",
            "LAG",
            "LAST_FETCH_MS_AGO",
            "CAUGHT_UP_MS_AGO",
        ],
        &rows,
    );
    Ok(())
}

fn unregister(client: &mut AdminClient, broker: i32, output: OutputFormat) -> Result<()> {
    if !client.supports(ApiKey::UnregisterBroker) {
        bail!("{} does not support UnregisterBroker", client.address());
    }
    let ResponseKind::UnregisterBroker(response) = client.send(
        ApiKey::UnregisterBroker,
        0,
        RequestKind::UnregisterBroker(
            UnregisterBrokerRequest::default().with_broker_id(BrokerId(broker)),
        ),
    )?
    else {
        bail!("unexpected answer to UnregisterBroker");
    };
    if response.error_code != 0 {
        bail!(
            "cannot unregister broker {broker}: {}{}",
            error_name(response.error_code),
            response
                .error_message
                .as_deref()
                .filter(|m| !m.is_empty())
                .map_or(String::new(), |m| format!(": {m}"))
        );
    }
    if output == OutputFormat::Json {
        return print_json(&json!({ "unregistered": broker }));
    }
    println!("Unregistered broker {broker}.");
    Ok(())
}
