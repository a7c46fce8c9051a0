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
use crate::output::{non_negative, print_json, print_table, OutputFormat};
use serde_json::{json, Value};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// Kafka's numbering of `ConfigSource` in DescribeConfigs, as the text table names them.
const SOURCE_NAMES: &[&str] = &[
    "unknown",
    "topic",
    "dynamic broker",
    "dynamic default broker",
    "static broker",
    "default",
    "broker logger",
];
/// The same sources as `--output json` names them: Kafka's `ConfigEntry.ConfigSource` names.
const SOURCE_JSON_NAMES: &[&str] = &[
    "UNKNOWN",
    "DYNAMIC_TOPIC_CONFIG",
    "DYNAMIC_BROKER_CONFIG",
    "DYNAMIC_DEFAULT_BROKER_CONFIG",
    "STATIC_BROKER_CONFIG",
    "DEFAULT_CONFIG",
    "DYNAMIC_BROKER_LOGGER_CONFIG",
];
const SOURCE_DEFAULT: i8 = 5;

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
        /// Name of the topic to create
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
    Describe {
        /// Topic to describe
        name: String,
    },
    /// Change topic configs: --set KEY=VALUE and --delete KEY (back to the default)
    AlterConfig {
        /// Topic whose configs to change
        name: String,
        /// Set a topic config, e.g. --set retention.ms=86400000 (repeatable)
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Remove a topic config override, back to the broker default (repeatable)
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
    },
    /// Delete topics and their data
    Delete {
        /// Topics to delete
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
        /// Set a dynamic broker setting, e.g. --set log.retention.ms=3600000 (repeatable)
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Remove a dynamic broker setting, back to the level below (repeatable)
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
    },
}

pub fn run_topic(args: TopicArgs) -> Result<()> {
    let output = args.connect.output();
    let mut client = args.connect.connect()?;
    match args.command {
        TopicCommand::List { include_internal } => list(&mut client, include_internal, output),
        TopicCommand::Create {
            name,
            partitions,
            replication_factor,
            configs,
        } => {
            let request = CreateArgs {
                name: &name,
                partitions,
                replication_factor,
                configs: &configs,
            };
            create(&mut client, &request, output)
        }
        TopicCommand::Describe { name } => describe(&mut client, &name, output),
        TopicCommand::AlterConfig { name, set, delete } => {
            let change = Alteration {
                resource_type: RESOURCE_TOPIC,
                name: &name,
                set: &set,
                delete: &delete,
            };
            alter(&mut client, &change, output)
        }
        TopicCommand::Delete { names } => delete_topics(&mut client, &names, output),
    }
}

pub fn run_config(args: ConfigArgs) -> Result<()> {
    let output = args.connect.output();
    let mut client = args.connect.connect()?;
    match args.command {
        ConfigCommand::Describe {
            broker,
            broker_defaults,
            topic,
            changed,
        } => {
            if let Some(topic) = topic {
                let configs = describe_configs(&mut client, RESOURCE_TOPIC, &topic, changed)?;
                return print_configs(RESOURCE_TOPIC, &topic, &configs, output);
            }
            if broker_defaults {
                let configs = describe_configs(&mut client, RESOURCE_BROKER, "", changed)?;
                return print_configs(RESOURCE_BROKER, "", &configs, output);
            }
            let id = match broker {
                Some(id) => id,
                None => client.connected_broker_id()?,
            };
            let mut node = client.broker_client(id)?;
            let name = id.to_string();
            let configs = describe_configs(node.client(), RESOURCE_BROKER, &name, changed)?;
            print_configs(RESOURCE_BROKER, &name, &configs, output)
        }
        ConfigCommand::Alter {
            broker,
            broker_defaults,
            set,
            delete,
        } => {
            let name = match broker {
                Some(id) if !broker_defaults => id.to_string(),
                _ => String::new(),
            };
            let change = Alteration {
                resource_type: RESOURCE_BROKER,
                name: &name,
                set: &set,
                delete: &delete,
            };
            match broker {
                Some(id) if !broker_defaults => {
                    let mut node = client.broker_client(id)?;
                    alter(node.client(), &change, output)
                }
                _ => alter(&mut client, &change, output),
            }
        }
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

fn list(client: &mut AdminClient, include_internal: bool, output: OutputFormat) -> Result<()> {
    let response = metadata(client, None)?;
    if output == OutputFormat::Json {
        let mut topics: Vec<(String, usize, bool)> = response
            .topics
            .iter()
            .filter(|t| include_internal || !t.is_internal)
            .filter_map(|t| {
                Some((
                    t.name.as_ref()?.to_string(),
                    t.partitions.len(),
                    t.is_internal,
                ))
            })
            .collect();
        topics.sort();
        let topics: Vec<Value> = topics
            .into_iter()
            .map(|(topic, partitions, internal)| {
                json!({ "topic": topic, "partitions": partitions, "internal": internal })
            })
            .collect();
        return print_json(&json!({ "topics": topics }));
    }
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

/// What `fjord topic create` asks for.
struct CreateArgs<'a> {
    name: &'a str,
    partitions: Option<i32>,
    replication_factor: Option<i16>,
    configs: &'a [String],
}

fn create(client: &mut AdminClient, args: &CreateArgs, output: OutputFormat) -> Result<()> {
    let CreateArgs {
        name,
        partitions,
        replication_factor,
        configs,
    } = *args;
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
    if output == OutputFormat::Json {
        return print_json(&json!({
            "created": name,
            "partitions": non_negative(i64::from(result.num_partitions)),
            "replication_factor": non_negative(i64::from(result.replication_factor)),
        }));
    }
    println!(
        "Created topic {name} ({} partitions).",
        result.num_partitions
    );
    Ok(())
}

fn describe(client: &mut AdminClient, name: &str, output: OutputFormat) -> Result<()> {
    let response = metadata(client, Some(vec![name.to_string()]))?;
    let topic = response
        .topics
        .first()
        .ok_or_else(|| anyhow!("no metadata for {name}"))?;
    check(topic.error_code, &format!("looking up topic {name}"))?;
    let mut partitions: Vec<(i32, i32)> = topic
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.leader_id.0))
        .collect();
    partitions.sort();
    let indexes: Vec<i32> = partitions.iter().map(|(i, _)| *i).collect();
    let earliest = list_offsets(client, name, &indexes, -2)?;
    let latest = list_offsets(client, name, &indexes, -1)?;
    if output == OutputFormat::Json {
        let configs = describe_configs(client, RESOURCE_TOPIC, name, true)?;
        let partitions: Vec<Value> = partitions
            .iter()
            .map(|(i, leader)| {
                json!({
                    "partition": i,
                    "leader": non_negative(i64::from(*leader)),
                    "log_start_offset": earliest.get(i),
                    "log_end_offset": latest.get(i),
                })
            })
            .collect();
        return print_json(&json!({
            "topic": name,
            "topic_id": topic.topic_id.to_string(),
            "internal": topic.is_internal,
            "partitions": partitions,
            "configs": configs.iter().map(ConfigEntry::to_json).collect::<Vec<_>>(),
        }));
    }
    println!(
        "Topic {name}: id {}, {} partition(s){}",
        topic.topic_id,
        topic.partitions.len(),
        if topic.is_internal { ", internal" } else { "" }
    );
    let rows: Vec<Vec<String>> = partitions
        .iter()
        .map(|(i, leader)| {
            vec![
                i.to_string(),
                leader.to_string(),
                earliest.get(i).map_or("-".into(), |o| o.to_string()),
                latest.get(i).map_or("-".into(), |o| o.to_string()),
            ]
        })
        .collect();
    print_table(
        &["PARTITION", "LEADER", "LOG-START-OFFSET", "LOG-END-OFFSET"],
        &rows,
    );
    println!();
    let configs = describe_configs(client, RESOURCE_TOPIC, name, true)?;
    print_configs(RESOURCE_TOPIC, name, &configs, OutputFormat::Text)
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

/// One config as DescribeConfigs reports it.
struct ConfigEntry {
    name: String,
    /// `None` for a sensitive or null value.
    value: Option<String>,
    sensitive: bool,
    /// Kafka's `ConfigSource` number.
    source: i8,
}

impl ConfigEntry {
    fn source_name(&self, names: &[&'static str]) -> &'static str {
        usize::try_from(self.source)
            .ok()
            .and_then(|i| names.get(i))
            .copied()
            .unwrap_or(names[0])
    }

    fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "value": self.value,
            "source": self.source_name(SOURCE_JSON_NAMES),
            "sensitive": self.sensitive,
        })
    }
}

/// The configs of one resource (only those not at their default with `changed_only`).
fn describe_configs(
    client: &mut AdminClient,
    resource_type: i8,
    name: &str,
    changed_only: bool,
) -> Result<Vec<ConfigEntry>> {
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
    Ok(result
        .configs
        .iter()
        .filter(|c| !changed_only || c.config_source != SOURCE_DEFAULT)
        .map(|c| ConfigEntry {
            name: c.name.to_string(),
            value: if c.is_sensitive {
                None
            } else {
                c.value.as_ref().map(|v| v.to_string())
            },
            sensitive: c.is_sensitive,
            source: c.config_source,
        })
        .collect())
}

/// JSON name of a config resource: `topic`, `broker` or `broker_defaults` (resource name "").
fn resource_kind(resource_type: i8, name: &str) -> &'static str {
    match (resource_type, name.is_empty()) {
        (RESOURCE_TOPIC, _) => "topic",
        (_, true) => "broker_defaults",
        _ => "broker",
    }
}

fn print_configs(
    resource_type: i8,
    name: &str,
    configs: &[ConfigEntry],
    output: OutputFormat,
) -> Result<()> {
    if output == OutputFormat::Json {
        return print_json(&json!({
            "resource": resource_kind(resource_type, name),
            "name": crate::output::non_empty(name),
            "configs": configs.iter().map(ConfigEntry::to_json).collect::<Vec<_>>(),
        }));
    }
    if configs.is_empty() {
        println!("(all configs at their defaults)");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = configs
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                match (&c.value, c.sensitive) {
                    (_, true) => "(sensitive)".to_string(),
                    (Some(value), false) => value.clone(),
                    (None, false) => "null".to_string(),
                },
                c.source_name(SOURCE_NAMES).to_string(),
            ]
        })
        .collect();
    print_table(&["CONFIG", "VALUE", "SOURCE"], &rows);
    Ok(())
}

/// A config change of one resource: `--set KEY=VALUE` and `--delete KEY`.
struct Alteration<'a> {
    resource_type: i8,
    /// Topic name, broker id, or "" for the cluster-wide broker defaults.
    name: &'a str,
    set: &'a [String],
    delete: &'a [String],
}

fn alter(client: &mut AdminClient, change: &Alteration, output: OutputFormat) -> Result<()> {
    let Alteration {
        resource_type,
        name,
        set,
        delete,
    } = *change;
    if set.is_empty() && delete.is_empty() {
        bail!("nothing to change: give --set KEY=VALUE or --delete KEY");
    }
    let mut seen = BTreeSet::new();
    let mut configs = Vec::new();
    let mut set_json = serde_json::Map::new();
    for text in set {
        let (key, value) = key_value(text)?;
        seen.insert(key.clone());
        set_json.insert(key.clone(), Value::from(value.clone()));
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
    if output == OutputFormat::Json {
        return print_json(&json!({
            "resource": resource_kind(resource_type, name),
            "name": crate::output::non_empty(name),
            "set": set_json,
            "deleted": delete,
        }));
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

fn delete_topics(client: &mut AdminClient, names: &[String], output: OutputFormat) -> Result<()> {
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
    let mut results = Vec::new();
    for result in &response.responses {
        let name = result.name.as_ref().map_or("?", |n| n.as_str());
        let error = (result.error_code != 0).then(|| error_name(result.error_code));
        if error.is_some() {
            failed += 1;
        }
        match (&error, output) {
            (_, OutputFormat::Json) => results.push(json!({ "topic": name, "error": error })),
            (None, OutputFormat::Text) => println!("Deleted topic {name}."),
            (Some(error), OutputFormat::Text) => eprintln!("Could not delete {name}: {error}"),
        }
    }
    if output == OutputFormat::Json {
        print_json(&json!({ "results": results }))?;
    }
    if failed > 0 {
        bail!("{failed} topic(s) not deleted");
    }
    Ok(())
}
