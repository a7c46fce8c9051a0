//! `fjord topic ...` and `fjord config ...`: topic and config administration against any
//! Kafka-compatible broker (like `kafka-topics.sh` and `kafka-configs.sh`).

use std::collections::BTreeSet;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use fjord_protocol::kafka_protocol::messages::create_topics_request::{
    CreatableTopic, CreatableTopicConfig,
};
use fjord_protocol::kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use fjord_protocol::kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use fjord_protocol::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsTopic,
};
use fjord_protocol::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use fjord_protocol::kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    IncrementalAlterConfigsRequest, ListOffsetsRequest, MetadataRequest, MetadataResponse,
    TopicName,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ApiKey, RequestKind, ResponseKind};

use crate::admin::{check, error_name, AdminClient, ConnectArgs};
use crate::group_cli::print_table;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// Kafka's numbering of `ConfigSource` in DescribeConfigs.
const SOURCE_NAMES: &[&str] = &[
    "unknown",
    "topic",
    "dynamic broker",
    "dynamic default broker",
    "static broker",
    "default",
    "broker logger",
];

#[derive(Args)]
pub struct TopicArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(subcommand)]
    command: TopicCommand,
}

#[derive(Subcommand)]
enum TopicCommand {
    /// List topics with their partition counts
    List {
        /// Also list internal topics (__consumer_offsets)
        #[arg(long)]
        include_internal: bool,
    },
    /// Create a topic
    Create {
        name: String,
        /// Partitions [default: the broker's num.partitions]
        #[arg(long)]
        partitions: Option<i32>,
        /// Replication factor [default: the broker's default.replication.factor]
        #[arg(long)]
        replication_factor: Option<i16>,
        /// A topic config, e.g. --config retention.ms=86400000 (repeatable)
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
    },
    /// Show a topic: id, configs that differ from the defaults, and per partition the
    /// leader, log start and log end offsets
    Describe { name: String },
    /// Change topic configs: --set KEY=VALUE and --delete KEY (back to the default)
    AlterConfig {
        name: String,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
    },
    /// Delete topics and their data
    Delete {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

#[derive(Args)]
pub struct ConfigArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Show a broker's settings with their sources (or the cluster-wide dynamic defaults with
    /// --broker-defaults, or a topic's configs with --topic)
    Describe {
        /// Broker id [default: the broker connected to]
        #[arg(long)]
        broker: Option<i32>,
        /// The dynamic cluster-wide broker defaults (Kafka: --entity-default)
        #[arg(long, conflicts_with = "broker")]
        broker_defaults: bool,
        /// Describe this topic's configs instead
        #[arg(long, conflicts_with_all = ["broker", "broker_defaults"])]
        topic: Option<String>,
        /// Only settings that are not at their default
        #[arg(long)]
        changed: bool,
    },
    /// Change dynamic broker settings of one broker (--broker N) or the cluster-wide defaults
    /// (--broker-defaults): --set KEY=VALUE and --delete KEY (back to the level below)
    Alter {
        /// Broker id
        #[arg(long, required_unless_present = "broker_defaults")]
        broker: Option<i32>,
        /// The cluster-wide defaults every broker falls back to (Kafka: --entity-default)
        #[arg(long, conflicts_with = "broker")]
        broker_defaults: bool,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
    },
}

pub fn run_topic(args: TopicArgs) -> Result<()> {
    let mut client = args.connect.connect()?;
    match args.command {
        TopicCommand::List { include_internal } => list(&mut client, include_internal),
        TopicCommand::Create {
            name,
            partitions,
            replication_factor,
            configs,
        } => create(&mut client, &name, partitions, replication_factor, &configs),
        TopicCommand::Describe { name } => describe(&mut client, &name),
        TopicCommand::AlterConfig { name, set, delete } => {
            alter(&mut client, RESOURCE_TOPIC, &name, &set, &delete)
        }
        TopicCommand::Delete { names } => delete_topics(&mut client, &names),
    }
}

pub fn run_config(args: ConfigArgs) -> Result<()> {
    let mut client = args.connect.connect()?;
    match args.command {
        ConfigCommand::Describe {
            broker,
            broker_defaults,
            topic,
            changed,
        } => {
            if let Some(topic) = topic {
                return describe_configs(&mut client, RESOURCE_TOPIC, &topic, changed);
            }
            if broker_defaults {
                return describe_configs(&mut client, RESOURCE_BROKER, "", changed);
            }
            let id = match broker {
                Some(id) => id,
                None => client.connected_broker_id()?,
            };
            let mut node = client.broker_client(id)?;
            describe_configs(node.client(), RESOURCE_BROKER, &id.to_string(), changed)
        }
        ConfigCommand::Alter {
            broker,
            broker_defaults,
            set,
            delete,
        } => match broker {
            Some(id) if !broker_defaults => {
                let mut node = client.broker_client(id)?;
                alter(
                    node.client(),
                    RESOURCE_BROKER,
                    &id.to_string(),
                    &set,
                    &delete,
                )
            }
            _ => alter(&mut client, RESOURCE_BROKER, "", &set, &delete),
        },
    }
}

fn metadata(client: &mut AdminClient, topics: Option<Vec<String>>) -> Result<MetadataResponse> {
    let request = MetadataRequest::default()
        .with_topics(topics.map(|names| {
            names
                .into_iter()
                .map(|n| {
                    MetadataRequestTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(n))))
                })
                .collect()
        }))
        .with_allow_auto_topic_creation(false);
    match client.send(ApiKey::Metadata, 12, RequestKind::Metadata(request))? {
        ResponseKind::Metadata(response) => Ok(response),
        _ => bail!("unexpected answer to Metadata"),
    }
}

fn list(client: &mut AdminClient, include_internal: bool) -> Result<()> {
    let response = metadata(client, None)?;
    let mut rows: Vec<Vec<String>> = response
        .topics
        .iter()
        .filter(|t| include_internal || !t.is_internal)
        .filter_map(|t| {
            let name = t.name.as_ref()?.to_string();
            Some(vec![
                name,
                t.partitions.len().to_string(),
                if t.is_internal { "yes" } else { "" }.to_string(),
            ])
        })
        .collect();
    rows.sort();
    print_table(&["TOPIC", "PARTITIONS", "INTERNAL"], &rows);
    Ok(())
}

fn key_value(text: &str) -> Result<(String, String)> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| anyhow!("expected KEY=VALUE, got {text:?}"))?;
    Ok((key.trim().to_string(), value.trim().to_string()))
}

fn create(
    client: &mut AdminClient,
    name: &str,
    partitions: Option<i32>,
    replication_factor: Option<i16>,
    configs: &[String],
) -> Result<()> {
    let configs = configs
        .iter()
        .map(|c| {
            let (key, value) = key_value(c)?;
            Ok(CreatableTopicConfig::default()
                .with_name(StrBytes::from_string(key))
                .with_value(Some(StrBytes::from_string(value))))
        })
        .collect::<Result<Vec<_>>>()?;
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.to_string())))
            .with_num_partitions(partitions.unwrap_or(-1))
            .with_replication_factor(replication_factor.unwrap_or(-1))
            .with_configs(configs)]);
    let ResponseKind::CreateTopics(response) =
        client.send(ApiKey::CreateTopics, 7, RequestKind::CreateTopics(request))?
    else {
        bail!("unexpected answer to CreateTopics");
    };
    let result = response
        .topics
        .first()
        .ok_or_else(|| anyhow!("CreateTopics answered nothing"))?;
    if result.error_code != 0 {
        bail!(
            "could not create {name}: {}{}",
            error_name(result.error_code),
            result
                .error_message
                .as_ref()
                .map_or(String::new(), |m| format!(": {}", m.as_str()))
        );
    }
    println!(
        "Created topic {name} ({} partitions).",
        result.num_partitions
    );
    Ok(())
}

fn describe(client: &mut AdminClient, name: &str) -> Result<()> {
    let response = metadata(client, Some(vec![name.to_string()]))?;
    let topic = response
        .topics
        .first()
        .ok_or_else(|| anyhow!("no metadata for {name}"))?;
    check(topic.error_code, &format!("looking up topic {name}"))?;
    println!(
        "Topic {name}: id {}, {} partition(s){}",
        topic.topic_id,
        topic.partitions.len(),
        if topic.is_internal { ", internal" } else { "" }
    );
    let partitions: Vec<i32> = topic.partitions.iter().map(|p| p.partition_index).collect();
    let earliest = list_offsets(client, name, &partitions, -2)?;
    let latest = list_offsets(client, name, &partitions, -1)?;
    let mut rows: Vec<Vec<String>> = topic
        .partitions
        .iter()
        .map(|p| {
            let i = p.partition_index;
            vec![
                i.to_string(),
                p.leader_id.0.to_string(),
                earliest.get(&i).map_or("-".into(), |o| o.to_string()),
                latest.get(&i).map_or("-".into(), |o| o.to_string()),
            ]
        })
        .collect();
    rows.sort_by_key(|r| r[0].parse::<i32>().unwrap_or(0));
    print_table(
        &["PARTITION", "LEADER", "LOG-START-OFFSET", "LOG-END-OFFSET"],
        &rows,
    );
    println!();
    describe_configs(client, RESOURCE_TOPIC, name, true)
}

fn list_offsets(
    client: &mut AdminClient,
    topic: &str,
    partitions: &[i32],
    timestamp: i64,
) -> Result<std::collections::BTreeMap<i32, i64>> {
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(
                partitions
                    .iter()
                    .map(|p| {
                        ListOffsetsPartition::default()
                            .with_partition_index(*p)
                            .with_timestamp(timestamp)
                    })
                    .collect(),
            )]);
    let ResponseKind::ListOffsets(response) =
        client.send(ApiKey::ListOffsets, 7, RequestKind::ListOffsets(request))?
    else {
        bail!("unexpected answer to ListOffsets");
    };
    Ok(response
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .filter(|p| p.error_code == 0)
        .map(|p| (p.partition_index, p.offset))
        .collect())
}

fn describe_configs(
    client: &mut AdminClient,
    resource_type: i8,
    name: &str,
    changed_only: bool,
) -> Result<()> {
    let request = DescribeConfigsRequest::default()
        .with_include_synonyms(false)
        .with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(StrBytes::from_string(name.to_string()))
            .with_configuration_keys(None)]);
    let ResponseKind::DescribeConfigs(response) = client.send(
        ApiKey::DescribeConfigs,
        4,
        RequestKind::DescribeConfigs(request),
    )?
    else {
        bail!("unexpected answer to DescribeConfigs");
    };
    let result = response
        .results
        .first()
        .ok_or_else(|| anyhow!("DescribeConfigs answered nothing"))?;
    if result.error_code != 0 {
        bail!(
            "could not describe configs of {name:?}: {}{}",
            error_name(result.error_code),
            result
                .error_message
                .as_ref()
                .map_or(String::new(), |m| format!(": {}", m.as_str()))
        );
    }
    let default_source = 5;
    let rows: Vec<Vec<String>> = result
        .configs
        .iter()
        .filter(|c| !changed_only || c.config_source != default_source)
        .map(|c| {
            vec![
                c.name.to_string(),
                if c.is_sensitive {
                    "(sensitive)".to_string()
                } else {
                    c.value
                        .as_ref()
                        .map_or("null".to_string(), |v| v.to_string())
                },
                SOURCE_NAMES
                    .get(usize::try_from(c.config_source).unwrap_or(0))
                    .unwrap_or(&"unknown")
                    .to_string(),
            ]
        })
        .collect();
    if rows.is_empty() {
        println!("(all configs at their defaults)");
        return Ok(());
    }
    print_table(&["CONFIG", "VALUE", "SOURCE"], &rows);
    Ok(())
}

fn alter(
    client: &mut AdminClient,
    resource_type: i8,
    name: &str,
    set: &[String],
    delete: &[String],
) -> Result<()> {
    if set.is_empty() && delete.is_empty() {
        bail!("nothing to change: give --set KEY=VALUE or --delete KEY");
    }
    let mut seen = BTreeSet::new();
    let mut configs = Vec::new();
    for text in set {
        let (key, value) = key_value(text)?;
        seen.insert(key.clone());
        configs.push(
            AlterableConfig::default()
                .with_name(StrBytes::from_string(key))
                .with_config_operation(0)
                .with_value(Some(StrBytes::from_string(value))),
        );
    }
    for key in delete {
        if !seen.insert(key.clone()) {
            bail!("{key} is both set and deleted");
        }
        configs.push(
            AlterableConfig::default()
                .with_name(StrBytes::from_string(key.clone()))
                .with_config_operation(1),
        );
    }
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
    let result = response
        .responses
        .first()
        .ok_or_else(|| anyhow!("IncrementalAlterConfigs answered nothing"))?;
    if result.error_code != 0 {
        bail!(
            "could not alter configs of {name:?}: {}{}",
            error_name(result.error_code),
            result
                .error_message
                .as_ref()
                .map_or(String::new(), |m| format!(": {}", m.as_str()))
        );
    }
    if resource_type == RESOURCE_BROKER && name.is_empty() {
        println!("Altered the cluster-wide broker defaults.");
    } else if resource_type == RESOURCE_BROKER {
        println!("Altered configs of broker {name}.");
    } else {
        println!("Altered configs of {name}.");
    }
    Ok(())
}

fn delete_topics(client: &mut AdminClient, names: &[String]) -> Result<()> {
    let request = DeleteTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topic_names(
            names
                .iter()
                .map(|n| TopicName(StrBytes::from_string(n.clone())))
                .collect(),
        );
    let version = client.version_for(ApiKey::DeleteTopics, 5);
    let ResponseKind::DeleteTopics(response) = client
        .send(
            ApiKey::DeleteTopics,
            version,
            RequestKind::DeleteTopics(request),
        )
        .context("DeleteTopics")?
    else {
        bail!("unexpected answer to DeleteTopics");
    };
    let mut failed = 0;
    for result in &response.responses {
        let name = result.name.as_ref().map_or("?", |n| n.as_str());
        if result.error_code == 0 {
            println!("Deleted topic {name}.");
        } else {
            failed += 1;
            eprintln!("Could not delete {name}: {}", error_name(result.error_code));
        }
    }
    if failed > 0 {
        bail!("{failed} topic(s) not deleted");
    }
    Ok(())
}
