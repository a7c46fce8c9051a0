//! `fjord cluster info`: the cluster id, the controller, the brokers (DescribeCluster where
//! supported, else Metadata) and the API versions the connected broker supports (ApiVersions).

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use fjord_protocol::kafka_protocol::messages::{DescribeClusterRequest, MetadataRequest};
use fjord_protocol::{ApiKey, RequestKind, ResponseKind};
use serde_json::json;

use crate::admin::{check, AdminClient, ConnectArgs};
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
