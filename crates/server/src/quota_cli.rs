//! `fjord quota ...`: client quotas on any Kafka-compatible broker, as Kafka's
//! `kafka-configs.sh --entity-type users|clients --add-config producer_byte_rate=...` manages
//! them: `list` and `describe` (DescribeClientQuotas), `set` and `delete`
//! (AlterClientQuotas).
//!
//! A quota entity is a user, a client id, or a user and a client id together, each either
//! named or the default of its type (Kafka `ClientQuotaEntity`; the broker picks the most
//! specific entity that matches a connection, `/users/u/clients/c` first). The keys are
//! Kafka's: `producer_byte_rate` and `consumer_byte_rate` (bytes per second, per broker) and
//! `request_percentage` (percent of one request handler thread and one network thread);
//! `--set KEY=VALUE` passes any other key (e.g. `controller_mutation_rate`) through.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Result};
use clap::{Args, Subcommand};
use fjord_metadata::security::{
    CONSUMER_BYTE_RATE, PRODUCER_BYTE_RATE, QUOTA_ENTITY_CLIENT_ID, QUOTA_ENTITY_USER,
    REQUEST_PERCENTAGE,
};
use fjord_protocol::kafka_protocol::messages::alter_client_quotas_request::{
    EntityData as AlterEntityData, EntryData as AlterEntryData, OpData,
};
use fjord_protocol::kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use fjord_protocol::kafka_protocol::messages::{
    AlterClientQuotasRequest, DescribeClientQuotasRequest,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ApiKey, RequestKind, ResponseKind};
use serde_json::{json, Value};

use crate::acl_cli::error_text;
use crate::admin::{AdminClient, ConnectArgs};
use crate::output::{print_json, print_table, OutputFormat};

/// DescribeClientQuotas component match types (Kafka `ClientQuotaFilterComponent`).
const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;
/// How the text tables show the default entity of a type (Kafka's `<default>`).
const DEFAULT_ENTITY_TEXT: &str = "<default>";
/// The keys with their own table column, in column order.
const KNOWN_KEYS: [&str; 3] = [PRODUCER_BYTE_RATE, CONSUMER_BYTE_RATE, REQUEST_PERCENTAGE];

#[derive(Args)]
pub struct QuotaArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(subcommand)]
    command: QuotaCommand,
}

#[derive(Subcommand, Debug, PartialEq)]
enum QuotaCommand {
    /// List quota entities and their quotas: all of them, or those that include the given
    /// user and/or client id (e.g. --user alice also shows alice's per-client-id quotas)
    List {
        #[command(flatten)]
        entity: EntityArgs,
    },
    /// Show the quotas set on exactly one entity (a user, a client id, or both)
    #[command(group = entity_group())]
    Describe {
        #[command(flatten)]
        entity: EntityArgs,
    },
    /// Set quotas of one entity (a user, a client id, or both); other keys stay as they are
    #[command(group = entity_group())]
    #[command(group = clap::ArgGroup::new("value").required(true).multiple(true).args(["producer_byte_rate", "consumer_byte_rate", "request_percentage", "set"]))]
    Set {
        #[command(flatten)]
        entity: EntityArgs,
        #[command(flatten)]
        values: QuotaValues,
    },
    /// Remove quotas of one entity: the keys given with --key, or all of them
    #[command(group = entity_group())]
    Delete {
        #[command(flatten)]
        entity: EntityArgs,
        /// Quota key to remove, e.g. producer_byte_rate (repeatable) [default: every key set]
        #[arg(long = "key", value_name = "KEY")]
        keys: Vec<String>,
    },
}

/// One of the entity flags is required (describe, set, delete).
fn entity_group() -> clap::ArgGroup {
    clap::ArgGroup::new("entity")
        .required(true)
        .multiple(true)
        .args(["user", "user_default", "client_id", "client_default"])
}

/// A quota entity (or, for `list`, a filter) from the flags.
#[derive(Args, Debug, Default, PartialEq)]
struct EntityArgs {
    /// The user (the principal's name, e.g. alice for User:alice) (Kafka: --entity-type users
    /// --entity-name)
    #[arg(long, value_name = "NAME", conflicts_with = "user_default")]
    user: Option<String>,
    /// The default user: every user without a quota of its own (Kafka: --user-defaults)
    #[arg(long)]
    user_default: bool,
    /// The client id (Kafka: --entity-type clients --entity-name)
    #[arg(long, value_name = "NAME", conflicts_with = "client_default")]
    client_id: Option<String>,
    /// The default client id: every client id without a quota of its own (Kafka:
    /// --client-defaults)
    #[arg(long)]
    client_default: bool,
}

/// The values of `set`.
#[derive(Args, Debug, Default, PartialEq)]
struct QuotaValues {
    /// Produce bytes per second per broker (producer_byte_rate)
    #[arg(long, value_name = "BYTES_PER_SECOND")]
    producer_byte_rate: Option<u64>,
    /// Fetch bytes per second per broker (consumer_byte_rate)
    #[arg(long, value_name = "BYTES_PER_SECOND")]
    consumer_byte_rate: Option<u64>,
    /// Percent of a request handler thread and a network thread, per quota window
    /// (request_percentage)
    #[arg(long, value_name = "PERCENT")]
    request_percentage: Option<f64>,
    /// Any other quota key, e.g. --set controller_mutation_rate=10 (repeatable)
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

/// An entity as (entity type, name) pairs sorted by type; `None` is the type's default.
type Entity = Vec<(String, Option<String>)>;

impl EntityArgs {
    fn entity(&self) -> Entity {
        let mut entity = Vec::new();
        if let Some(user) = &self.user {
            entity.push((QUOTA_ENTITY_USER.to_string(), Some(user.clone())));
        } else if self.user_default {
            entity.push((QUOTA_ENTITY_USER.to_string(), None));
        }
        if let Some(client_id) = &self.client_id {
            entity.push((QUOTA_ENTITY_CLIENT_ID.to_string(), Some(client_id.clone())));
        } else if self.client_default {
            entity.push((QUOTA_ENTITY_CLIENT_ID.to_string(), None));
        }
        entity.sort();
        entity
    }
}

/// Kafka's wording of an entity: `user 'alice', the default client-id`.
fn entity_text(entity: &Entity) -> String {
    if entity.is_empty() {
        return "no entity".to_string();
    }
    entity
        .iter()
        .map(|(kind, name)| match name {
            Some(name) => format!("{kind} '{name}'"),
            None => format!("the default {kind}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn entity_json(entity: &Entity) -> Value {
    let map: serde_json::Map<String, Value> = entity
        .iter()
        .map(|(kind, name)| (kind.clone(), name.clone().map_or(Value::Null, Value::from)))
        .collect();
    Value::Object(map)
}

/// A quota value as Kafka's tools print it, without a needless `.0` on whole numbers.
fn value_text(value: f64) -> String {
    const EXACT_INTEGER_MAX: f64 = 9_007_199_254_740_992.0; // 2^53
    if value.is_finite() && value.fract() == 0.0 && value.abs() <= EXACT_INTEGER_MAX {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

/// The DescribeClientQuotas request of a filter: `strict` asks for exactly this entity, else
/// every entity that includes these components.
fn describe_request(entity: &Entity, strict: bool) -> DescribeClientQuotasRequest {
    DescribeClientQuotasRequest::default()
        .with_components(
            entity
                .iter()
                .map(|(kind, name)| {
                    ComponentData::default()
                        .with_entity_type(StrBytes::from_string(kind.clone()))
                        .with_match_type(if name.is_some() {
                            MATCH_EXACT
                        } else {
                            MATCH_DEFAULT
                        })
                        .with_match(name.clone().map(StrBytes::from_string))
                })
                .collect(),
        )
        .with_strict(strict)
}

/// Quotas per entity, sorted by entity.
type Quotas = BTreeMap<Entity, BTreeMap<String, f64>>;

fn describe_quotas(client: &mut AdminClient, entity: &Entity, strict: bool) -> Result<Quotas> {
    let ResponseKind::DescribeClientQuotas(response) = client.send(
        ApiKey::DescribeClientQuotas,
        1,
        RequestKind::DescribeClientQuotas(describe_request(entity, strict)),
    )?
    else {
        bail!("unexpected answer to DescribeClientQuotas");
    };
    if response.error_code != 0 {
        bail!(
            "could not describe quotas: {}",
            error_text(response.error_code, response.error_message.as_ref())
        );
    }
    let mut quotas = Quotas::new();
    for entry in response.entries.iter().flatten() {
        let mut entity: Entity = entry
            .entity
            .iter()
            .map(|e| {
                (
                    e.entity_type.to_string(),
                    e.entity_name.as_ref().map(|n| n.to_string()),
                )
            })
            .collect();
        entity.sort();
        let values = quotas.entry(entity).or_default();
        for value in &entry.values {
            values.insert(value.key.to_string(), value.value);
        }
    }
    Ok(quotas)
}

/// The key -> value changes of `set`: the dedicated flags and `--set KEY=VALUE`.
fn set_operations(values: &QuotaValues) -> Result<BTreeMap<String, f64>> {
    let mut ops = BTreeMap::new();
    if let Some(rate) = values.producer_byte_rate {
        ops.insert(PRODUCER_BYTE_RATE.to_string(), rate as f64);
    }
    if let Some(rate) = values.consumer_byte_rate {
        ops.insert(CONSUMER_BYTE_RATE.to_string(), rate as f64);
    }
    if let Some(percentage) = values.request_percentage {
        ops.insert(REQUEST_PERCENTAGE.to_string(), percentage);
    }
    for assignment in &values.set {
        let (key, value) = assignment
            .split_once('=')
            .ok_or_else(|| anyhow!("expected KEY=VALUE, got {assignment:?}"))?;
        let key = key.trim().to_string();
        let value: f64 = value
            .trim()
            .parse()
            .map_err(|_| anyhow!("cannot parse the quota value of {key}: {value:?}"))?;
        if ops.insert(key.clone(), value).is_some() {
            bail!("{key} is given twice");
        }
    }
    for (key, value) in &ops {
        if !value.is_finite() || *value <= 0.0 {
            bail!("{key} must be a positive number, got {value}");
        }
    }
    Ok(ops)
}

/// An AlterClientQuotas request changing one entity: `set` values and `remove` keys.
fn alter_request(
    entity: &Entity,
    set: &BTreeMap<String, f64>,
    remove: &[String],
) -> AlterClientQuotasRequest {
    let mut ops: Vec<OpData> = set
        .iter()
        .map(|(key, value)| {
            OpData::default()
                .with_key(StrBytes::from_string(key.clone()))
                .with_value(*value)
                .with_remove(false)
        })
        .collect();
    ops.extend(remove.iter().map(|key| {
        OpData::default()
            .with_key(StrBytes::from_string(key.clone()))
            .with_remove(true)
    }));
    AlterClientQuotasRequest::default()
        .with_entries(vec![AlterEntryData::default()
            .with_entity(
                entity
                    .iter()
                    .map(|(kind, name)| {
                        AlterEntityData::default()
                            .with_entity_type(StrBytes::from_string(kind.clone()))
                            .with_entity_name(name.clone().map(StrBytes::from_string))
                    })
                    .collect(),
            )
            .with_ops(ops)])
        .with_validate_only(false)
}

fn alter_quotas(
    client: &mut AdminClient,
    entity: &Entity,
    request: AlterClientQuotasRequest,
) -> Result<()> {
    let ResponseKind::AlterClientQuotas(response) = client.send(
        ApiKey::AlterClientQuotas,
        1,
        RequestKind::AlterClientQuotas(request),
    )?
    else {
        bail!("unexpected answer to AlterClientQuotas");
    };
    let entry = response
        .entries
        .first()
        .ok_or_else(|| anyhow!("AlterClientQuotas answered nothing"))?;
    if entry.error_code != 0 {
        bail!(
            "could not change the quotas of {}: {}",
            entity_text(entity),
            error_text(entry.error_code, entry.error_message.as_ref())
        );
    }
    Ok(())
}

pub fn run(args: QuotaArgs) -> Result<()> {
    let output = args.connect.output();
    match args.command {
        QuotaCommand::List { entity } => {
            let mut client = args.connect.connect()?;
            let quotas = describe_quotas(&mut client, &entity.entity(), false)?;
            print_quotas(&quotas, output)
        }
        QuotaCommand::Describe { entity } => {
            let entity = entity.entity();
            let mut client = args.connect.connect()?;
            let quotas = describe_quotas(&mut client, &entity, true)?;
            if output == OutputFormat::Text && quotas.is_empty() {
                println!("(no quotas set for {})", entity_text(&entity));
                return Ok(());
            }
            print_quotas(&quotas, output)
        }
        QuotaCommand::Set { entity, values } => {
            let entity = entity.entity();
            let set = set_operations(&values)?;
            let mut client = args.connect.connect()?;
            alter_quotas(&mut client, &entity, alter_request(&entity, &set, &[]))?;
            if output == OutputFormat::Json {
                return print_json(&json!({ "entity": entity_json(&entity), "set": set }));
            }
            let pairs: Vec<String> = set
                .iter()
                .map(|(k, v)| format!("{k}={}", value_text(*v)))
                .collect();
            println!(
                "Set quotas of {}: {}.",
                entity_text(&entity),
                pairs.join(", ")
            );
            Ok(())
        }
        QuotaCommand::Delete { entity, keys } => {
            let entity = entity.entity();
            let mut client = args.connect.connect()?;
            let current = describe_quotas(&mut client, &entity, true)?;
            let present: Vec<String> = current
                .get(&entity)
                .map(|values| values.keys().cloned().collect())
                .unwrap_or_default();
            let remove = keys_to_remove(&entity, &present, &keys)?;
            alter_quotas(
                &mut client,
                &entity,
                alter_request(&entity, &BTreeMap::new(), &remove),
            )?;
            if output == OutputFormat::Json {
                return print_json(&json!({ "entity": entity_json(&entity), "deleted": remove }));
            }
            println!(
                "Deleted quotas of {}: {}.",
                entity_text(&entity),
                remove.join(", ")
            );
            Ok(())
        }
    }
}

/// The keys `delete` removes: those asked for, which must be set (as `kafka-configs.sh`
/// checks: "Invalid config(s)"), or every key that is set.
fn keys_to_remove(entity: &Entity, present: &[String], asked: &[String]) -> Result<Vec<String>> {
    if present.is_empty() {
        bail!("no quotas are set for {}", entity_text(entity));
    }
    if asked.is_empty() {
        return Ok(present.to_vec());
    }
    let missing: Vec<&str> = asked
        .iter()
        .filter(|k| !present.contains(k))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        bail!(
            "{} has no quota {} (set: {})",
            entity_text(entity),
            missing.join(", "),
            present.join(", ")
        );
    }
    let mut keys = asked.to_vec();
    keys.sort();
    keys.dedup();
    Ok(keys)
}

/// The text cell of an entity type in `entity`: the name, `<default>`, or `-` when the entity
/// has no component of that type.
fn entity_cell(entity: &Entity, kind: &str) -> String {
    match entity.iter().find(|(k, _)| k == kind) {
        Some((_, Some(name))) => name.clone(),
        Some((_, None)) => DEFAULT_ENTITY_TEXT.to_string(),
        None => "-".to_string(),
    }
}

fn quota_rows(quotas: &Quotas) -> Vec<Vec<String>> {
    quotas
        .iter()
        .map(|(entity, values)| {
            let mut row = vec![
                entity_cell(entity, QUOTA_ENTITY_USER),
                entity_cell(entity, QUOTA_ENTITY_CLIENT_ID),
            ];
            row.extend(
                KNOWN_KEYS
                    .iter()
                    .map(|key| values.get(*key).map_or("-".to_string(), |v| value_text(*v))),
            );
            // Keys without a column, and entity types other than user and client-id (ip).
            let mut other: Vec<String> = entity
                .iter()
                .filter(|(k, _)| k != QUOTA_ENTITY_USER && k != QUOTA_ENTITY_CLIENT_ID)
                .map(|(k, name)| format!("{k}={}", name.as_deref().unwrap_or(DEFAULT_ENTITY_TEXT)))
                .collect();
            other.extend(
                values
                    .iter()
                    .filter(|(k, _)| !KNOWN_KEYS.contains(&k.as_str()))
                    .map(|(k, v)| format!("{k}={}", value_text(*v))),
            );
            row.push(other.join(","));
            row
        })
        .collect()
}

fn quotas_json(quotas: &Quotas) -> Value {
    let entries: Vec<Value> = quotas
        .iter()
        .map(|(entity, values)| json!({ "entity": entity_json(entity), "quotas": values }))
        .collect();
    json!({ "quotas": entries })
}

fn print_quotas(quotas: &Quotas, output: OutputFormat) -> Result<()> {
    if output == OutputFormat::Json {
        return print_json(&quotas_json(quotas));
    }
    print_table(
        &[
            "USER",
            "CLIENT-ID",
            "PRODUCER-BYTE-RATE",
            "CONSUMER-BYTE-RATE",
            "REQUEST-PERCENTAGE",
            "OTHER",
        ],
        &quota_rows(quotas),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl_cli::wire_round_trip;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        quota: QuotaArgs,
    }

    fn parse(args: &[&str]) -> Result<QuotaCommand, clap::Error> {
        let mut argv = vec!["quota"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).map(|cli| cli.quota.command)
    }

    fn user(name: Option<&str>) -> (String, Option<String>) {
        ("user".to_string(), name.map(str::to_string))
    }

    fn client(name: Option<&str>) -> (String, Option<String>) {
        ("client-id".to_string(), name.map(str::to_string))
    }

    #[test]
    fn entity_flags_make_kafka_entities() {
        let Ok(QuotaCommand::Set { entity, values }) = parse(&[
            "set",
            "--user",
            "alice",
            "--client-default",
            "--producer-byte-rate",
            "1048576",
            "--request-percentage",
            "12.5",
        ]) else {
            panic!("set");
        };
        assert_eq!(entity.entity(), vec![client(None), user(Some("alice"))]);
        assert_eq!(
            set_operations(&values).expect("valid"),
            BTreeMap::from([
                (PRODUCER_BYTE_RATE.to_string(), 1_048_576.0),
                (REQUEST_PERCENTAGE.to_string(), 12.5),
            ])
        );
        assert_eq!(
            entity_text(&entity.entity()),
            "the default client-id, user 'alice'"
        );
        // describe, set and delete need an entity; set needs a value; a name and the default
        // of one type exclude each other.
        assert!(parse(&["describe"]).is_err());
        assert!(parse(&["set", "--user", "a"]).is_err());
        assert!(parse(&["delete"]).is_err());
        assert!(parse(&[
            "set",
            "--user",
            "a",
            "--user-default",
            "--producer-byte-rate",
            "1"
        ])
        .is_err());
        assert!(parse(&["set", "--user", "a", "--producer-byte-rate", "-1"]).is_err());
        assert!(matches!(parse(&["list"]), Ok(QuotaCommand::List { .. })));
    }

    #[test]
    fn set_values_must_be_positive_numbers_given_once() {
        let values = |set: &[&str]| QuotaValues {
            set: set.iter().map(|s| s.to_string()).collect(),
            ..QuotaValues::default()
        };
        assert_eq!(
            set_operations(&values(&["controller_mutation_rate=10"])).expect("valid"),
            BTreeMap::from([("controller_mutation_rate".to_string(), 10.0)])
        );
        assert!(set_operations(&values(&["controller_mutation_rate"])).is_err());
        assert!(set_operations(&values(&["x=fast"])).is_err());
        assert!(set_operations(&values(&["x=0"])).is_err());
        assert!(set_operations(&values(&["x=NaN"])).is_err());
        let twice = QuotaValues {
            producer_byte_rate: Some(5),
            set: vec!["producer_byte_rate=6".into()],
            ..QuotaValues::default()
        };
        assert!(set_operations(&twice).is_err());
    }

    #[test]
    fn requests_round_trip_through_the_codec() {
        let entity = vec![client(None), user(Some("alice"))];
        let request = RequestKind::AlterClientQuotas(alter_request(
            &entity,
            &BTreeMap::from([(CONSUMER_BYTE_RATE.to_string(), 2048.0)]),
            &[PRODUCER_BYTE_RATE.to_string()],
        ));
        let RequestKind::AlterClientQuotas(decoded) =
            wire_round_trip(ApiKey::AlterClientQuotas, 1, &request)
        else {
            panic!("not AlterClientQuotas");
        };
        let entry = &decoded.entries[0];
        let entities: Vec<(&str, Option<&str>)> = entry
            .entity
            .iter()
            .map(|e| (e.entity_type.as_str(), e.entity_name.as_deref()))
            .collect();
        assert_eq!(entities, vec![("client-id", None), ("user", Some("alice"))]);
        let ops: Vec<(&str, f64, bool)> = entry
            .ops
            .iter()
            .map(|o| (o.key.as_str(), o.value, o.remove))
            .collect();
        assert_eq!(
            ops,
            vec![
                ("consumer_byte_rate", 2048.0, false),
                ("producer_byte_rate", 0.0, true)
            ]
        );
        assert!(!decoded.validate_only);

        let request = RequestKind::DescribeClientQuotas(describe_request(&entity, true));
        let RequestKind::DescribeClientQuotas(decoded) =
            wire_round_trip(ApiKey::DescribeClientQuotas, 1, &request)
        else {
            panic!("not DescribeClientQuotas");
        };
        assert!(decoded.strict);
        let components: Vec<(&str, i8, Option<&str>)> = decoded
            .components
            .iter()
            .map(|c| (c.entity_type.as_str(), c.match_type, c._match.as_deref()))
            .collect();
        assert_eq!(
            components,
            vec![
                ("client-id", MATCH_DEFAULT, None),
                ("user", MATCH_EXACT, Some("alice"))
            ]
        );
        let everything = describe_request(&Vec::new(), false);
        assert!(everything.components.is_empty() && !everything.strict);
    }

    #[test]
    fn delete_removes_the_keys_that_are_set() {
        let entity = vec![user(Some("a"))];
        let present = vec![
            CONSUMER_BYTE_RATE.to_string(),
            PRODUCER_BYTE_RATE.to_string(),
        ];
        assert_eq!(keys_to_remove(&entity, &present, &[]).unwrap(), present);
        assert_eq!(
            keys_to_remove(&entity, &present, &[PRODUCER_BYTE_RATE.to_string()]).unwrap(),
            vec![PRODUCER_BYTE_RATE.to_string()]
        );
        let err = keys_to_remove(&entity, &present, &[REQUEST_PERCENTAGE.to_string()]).unwrap_err();
        assert!(
            err.to_string().contains("has no quota request_percentage"),
            "{err}"
        );
        let err = keys_to_remove(&entity, &[], &[]).unwrap_err();
        assert_eq!(err.to_string(), "no quotas are set for user 'a'");
    }

    #[test]
    fn quotas_print_as_a_table_and_as_json() {
        let quotas: Quotas = BTreeMap::from([
            (
                vec![user(Some("alice"))],
                BTreeMap::from([(PRODUCER_BYTE_RATE.to_string(), 1024.0)]),
            ),
            (
                vec![client(Some("app")), user(None)],
                BTreeMap::from([
                    (REQUEST_PERCENTAGE.to_string(), 12.5),
                    ("controller_mutation_rate".to_string(), 3.0),
                ]),
            ),
            (
                vec![("ip".to_string(), Some("10.0.0.1".to_string()))],
                BTreeMap::from([("connection_creation_rate".to_string(), 5.0)]),
            ),
        ]);
        let rows = quota_rows(&quotas);
        assert!(rows.contains(&vec![
            "<default>".to_string(),
            "app".into(),
            "-".into(),
            "-".into(),
            "12.5".into(),
            "controller_mutation_rate=3".into(),
        ]));
        assert!(rows.contains(&vec![
            "alice".to_string(),
            "-".into(),
            "1024".into(),
            "-".into(),
            "-".into(),
            "".into(),
        ]));
        assert!(rows.contains(&vec![
            "-".to_string(),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            "ip=10.0.0.1,connection_creation_rate=5".into(),
        ]));
        let json = quotas_json(&quotas);
        assert!(json["quotas"].as_array().expect("array").contains(&json!({
            "entity": { "client-id": "app", "user": null },
            "quotas": { "controller_mutation_rate": 3.0, "request_percentage": 12.5 },
        })));
        assert_eq!(value_text(1e20), "100000000000000000000");
        assert_eq!(value_text(0.5), "0.5");
    }
}
