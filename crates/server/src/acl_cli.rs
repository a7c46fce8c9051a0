//! `fjord acl ...`: ACL administration against any Kafka-compatible broker, in the manner of
//! Kafka's `kafka-acls.sh` (`AclCommand`): `list` (DescribeAcls), `create` (CreateAcls) and
//! `delete` (DeleteAcls).
//!
//! An ACL binds a resource pattern (type, name, pattern type) to an access control entry
//! (principal, host, operation, permission type). The flags expand the way `kafka-acls.sh`
//! expands them: every resource given (`--topic`, `--group`, `--transactional-id`,
//! `--cluster`) gets every principal x host x operation; `--producer` means WRITE, DESCRIBE and
//! CREATE on the topics and WRITE, DESCRIBE on the transactional ids (plus IDEMPOTENT_WRITE on
//! the cluster with `--idempotent`); `--consumer` means READ, DESCRIBE on the topics and READ on
//! the groups. Names on the wire are Kafka's numeric codes (`fjord_metadata::security`); the
//! text and JSON output use Kafka's enum names (`TOPIC`, `LITERAL`, `IDEMPOTENT_WRITE`,
//! `ALLOW`), as `AclBinding.toString()` prints them.
//!
//! Deviations from `kafka-acls.sh`, each because its behaviour surprises: `--cluster` is
//! always the literal `kafka-cluster` resource (the Kafka tool drops it silently with a
//! non-literal `--resource-pattern-type`); `delete` without `--operation` or host flags
//! matches any operation and any host (the Kafka tool matches only ALL and `*`); `delete`
//! without a resource flag matches every resource; and instead of asking interactively,
//! `delete` needs `--yes` when a filter would match every ACL of its resources (no principal
//! and no operation given).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{anyhow, bail, Result};
use clap::{Args, Subcommand, ValueEnum};
use fjord_metadata::security::{AclOperation, AclPatternType, AclPermissionType, AclResourceType};
use fjord_protocol::kafka_protocol::messages::create_acls_request::AclCreation;
use fjord_protocol::kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use fjord_protocol::kafka_protocol::messages::{
    CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ApiKey, RequestKind, ResponseKind};
use serde_json::{json, Value};

use crate::admin::{error_name, AdminClient, ConnectArgs};
use crate::output::{print_json, print_table, OutputFormat};

/// The name of the one cluster resource (Kafka `Resource.CLUSTER_NAME`).
const CLUSTER_RESOURCE_NAME: &str = "kafka-cluster";
/// The host of an ACL that applies to every client address (Kafka `AclEntry.WILDCARD_HOST`).
const WILDCARD_HOST: &str = "*";
/// Highest request versions this tool sends (all three APIs are at v3 in Kafka 3.x/4.x).
const CREATE_ACLS_VERSION_MAX: i16 = 3;
const DESCRIBE_ACLS_VERSION_MAX: i16 = 3;
const DELETE_ACLS_VERSION_MAX: i16 = 3;

#[derive(Args)]
pub struct AclArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(subcommand)]
    command: AclCommand,
}

#[derive(Subcommand, Debug, PartialEq)]
enum AclCommand {
    /// List ACLs (DescribeAcls): all of them, or those on the given resources and of the
    /// given principals (kafka-acls.sh --list)
    List(ListArgs),
    /// Add ACLs (CreateAcls): every --allow-principal/--deny-principal gets every operation on
    /// every resource given, from every host given (kafka-acls.sh --add)
    Create(CreateArgs),
    /// Remove the ACLs that match (DeleteAcls) and print them (kafka-acls.sh --remove)
    Delete(DeleteArgs),
}

/// The resources an ACL command is about.
#[derive(Args, Debug, Default, PartialEq)]
struct ResourceArgs {
    /// A topic; '*' is every topic (repeatable)
    #[arg(long = "topic", value_name = "TOPIC")]
    topics: Vec<String>,
    /// A consumer group; '*' is every group (repeatable)
    #[arg(long = "group", value_name = "GROUP")]
    groups: Vec<String>,
    /// A transactional id; '*' is every transactional id (repeatable)
    #[arg(long = "transactional-id", value_name = "ID")]
    transactional_ids: Vec<String>,
    /// The cluster (the resource of cluster-wide operations such as IDEMPOTENT_WRITE, CREATE
    /// of topics, ALTER_CONFIGS of brokers)
    #[arg(long)]
    cluster: bool,
    /// How the names of --topic/--group/--transactional-id are matched; create takes literal
    /// or prefixed [default: literal; list and delete without a resource flag: any]
    #[arg(long, value_enum, value_name = "TYPE")]
    resource_pattern_type: Option<PatternTypeArg>,
}

impl ResourceArgs {
    fn is_empty(&self) -> bool {
        self.topics.is_empty()
            && self.groups.is_empty()
            && self.transactional_ids.is_empty()
            && !self.cluster
    }
}

/// `--resource-pattern-type`: Kafka `PatternType` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum PatternTypeArg {
    /// The resource name as written; '*' matches every name
    Literal,
    /// Every resource whose name starts with the given name
    Prefixed,
    /// (list, delete) Every ACL that applies to the named resource
    Match,
    /// (list, delete) ACLs of any pattern type on exactly this name
    Any,
}

impl PatternTypeArg {
    fn code(self) -> i8 {
        match self {
            Self::Literal => AclPatternType::Literal.code(),
            Self::Prefixed => AclPatternType::Prefixed.code(),
            Self::Match => AclPatternType::MATCH_CODE,
            Self::Any => AclPatternType::ANY_CODE,
        }
    }
}

#[derive(Args, Debug, PartialEq)]
struct ListArgs {
    #[command(flatten)]
    resources: ResourceArgs,
    /// Only ACLs of this principal, as Type:name, e.g. User:alice (repeatable)
    #[arg(long = "principal", value_name = "PRINCIPAL", value_parser = parse_principal)]
    principals: Vec<String>,
}

/// The access control entries of `create` and `delete`, and the role shortcuts.
#[derive(Args, Debug, Default, PartialEq)]
struct EntryArgs {
    /// Principal to allow, as Type:name, e.g. User:alice; User:* is every user (repeatable)
    #[arg(long = "allow-principal", value_name = "PRINCIPAL", value_parser = parse_principal)]
    allow_principals: Vec<String>,
    /// Principal to deny, as Type:name; DENY beats ALLOW, so this carves exceptions out of a
    /// wider allow such as User:* (repeatable)
    #[arg(long = "deny-principal", value_name = "PRINCIPAL", value_parser = parse_principal)]
    deny_principals: Vec<String>,
    /// Client IP address the --allow-principal entries apply to [default: '*', every host;
    /// delete: any host] (repeatable)
    #[arg(
        long = "allow-host",
        value_name = "HOST",
        requires = "allow_principals"
    )]
    allow_hosts: Vec<String>,
    /// Client IP address the --deny-principal entries apply to [default: '*', every host;
    /// delete: any host] (repeatable)
    #[arg(long = "deny-host", value_name = "HOST", requires = "deny_principals")]
    deny_hosts: Vec<String>,
    /// Operation allowed or denied: All, Read, Write, Create, Delete, Alter, Describe,
    /// ClusterAction, DescribeConfigs, AlterConfigs, IdempotentWrite, CreateTokens,
    /// DescribeTokens, TwoPhaseCommit (Kafka's names; case and underscores do not matter)
    /// [default: All; delete: any operation] (repeatable)
    #[arg(long = "operation", value_name = "OPERATION", value_parser = parse_operation)]
    operations: Vec<AclOperation>,
    /// Producer role: WRITE, DESCRIBE and CREATE on the --topic resources, WRITE and DESCRIBE
    /// on the --transactional-id resources
    #[arg(long, requires = "topics", conflicts_with_all = ["operations", "deny_principals", "deny_hosts"])]
    producer: bool,
    /// Consumer role: READ and DESCRIBE on the --topic resources, READ on the --group
    /// resources (needs both)
    #[arg(long, requires_all = ["topics", "groups"], conflicts_with_all = ["operations", "deny_principals", "deny_hosts"])]
    consumer: bool,
    /// With --producer: also IDEMPOTENT_WRITE on the cluster (needed by idempotent producers
    /// without a transactional id on brokers before Kafka 3.0)
    #[arg(long, requires = "producer")]
    idempotent: bool,
}

#[derive(Args, Debug, PartialEq)]
#[command(group = clap::ArgGroup::new("principal").multiple(true).required(true).args(["allow_principals", "deny_principals"]))]
#[command(group = clap::ArgGroup::new("resource").multiple(true).required(true).args(["topics", "groups", "transactional_ids", "cluster"]))]
struct CreateArgs {
    #[command(flatten)]
    resources: ResourceArgs,
    #[command(flatten)]
    entries: EntryArgs,
}

#[derive(Args, Debug, PartialEq)]
struct DeleteArgs {
    #[command(flatten)]
    resources: ResourceArgs,
    #[command(flatten)]
    entries: EntryArgs,
    /// Confirm a delete that matches every ACL of its resources (no principal and no
    /// operation given), or of the whole cluster (no resource either)
    #[arg(long, visible_alias = "force")]
    yes: bool,
}

pub fn run(args: AclArgs) -> Result<()> {
    let output = args.connect.output();
    match args.command {
        AclCommand::List(list_args) => {
            let filters = list_filters(&list_args)?;
            let mut client = args.connect.connect()?;
            let acls = describe_acls(&mut client, &filters)?;
            print_acls(&acls, "acls", None, output)
        }
        AclCommand::Create(create_args) => {
            let bindings = create_bindings(&create_args)?;
            let mut client = args.connect.connect()?;
            create_acls(&mut client, &bindings, output)
        }
        AclCommand::Delete(delete_args) => {
            let filters = delete_filters(&delete_args)?;
            let mut client = args.connect.connect()?;
            delete_acls(&mut client, &filters, output)
        }
    }
}

/// One ACL with Kafka's numeric codes (those of a foreign broker may be unknown to Fjord, so
/// they stay numbers until printed).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct AclBinding {
    resource_type: i8,
    resource_name: String,
    pattern_type: i8,
    principal: String,
    host: String,
    operation: i8,
    permission_type: i8,
}

impl AclBinding {
    fn row(&self) -> Vec<String> {
        vec![
            resource_type_name(self.resource_type),
            self.resource_name.clone(),
            pattern_type_name(self.pattern_type),
            self.principal.clone(),
            self.host.clone(),
            operation_name(self.operation),
            permission_type_name(self.permission_type),
        ]
    }

    fn to_json(&self) -> Value {
        json!({
            "resource_type": resource_type_name(self.resource_type),
            "resource_name": self.resource_name,
            "pattern_type": pattern_type_name(self.pattern_type),
            "principal": self.principal,
            "host": self.host,
            "operation": operation_name(self.operation),
            "permission_type": permission_type_name(self.permission_type),
        })
    }

    /// `Kafka AclBinding` style, for error messages.
    fn describe(&self) -> String {
        format!(
            "{} {} on {} {:?} ({}) for {} from {}",
            permission_type_name(self.permission_type),
            operation_name(self.operation),
            resource_type_name(self.resource_type),
            self.resource_name,
            pattern_type_name(self.pattern_type),
            self.principal,
            self.host
        )
    }
}

/// A resource pattern filter: `None` name and the ANY codes match everything.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ResourceFilter {
    resource_type: i8,
    name: Option<String>,
    pattern_type: i8,
}

/// An access control entry filter: `None` and the ANY codes match everything.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct EntryFilter {
    principal: Option<String>,
    host: Option<String>,
    operation: i8,
    permission_type: i8,
}

/// A filter of DescribeAcls and DeleteAcls.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct AclFilter {
    resource: ResourceFilter,
    entry: EntryFilter,
}

/// `Type:name` as Kafka's `SecurityUtils.parseKafkaPrincipal` takes it (the name may contain
/// further colons; neither part may be empty).
fn parse_principal(text: &str) -> Result<String, String> {
    let text = text.trim();
    match text.split_once(':') {
        Some((kind, name)) if !kind.is_empty() && !name.is_empty() => Ok(text.to_string()),
        _ => Err(format!(
            "expected a principal as Type:name (e.g. User:alice), got {text:?}"
        )),
    }
}

/// Every operation with Kafka's enum name (`AclOperation.name()`).
const OPERATIONS: &[(AclOperation, &str)] = &[
    (AclOperation::All, "ALL"),
    (AclOperation::Read, "READ"),
    (AclOperation::Write, "WRITE"),
    (AclOperation::Create, "CREATE"),
    (AclOperation::Delete, "DELETE"),
    (AclOperation::Alter, "ALTER"),
    (AclOperation::Describe, "DESCRIBE"),
    (AclOperation::ClusterAction, "CLUSTER_ACTION"),
    (AclOperation::DescribeConfigs, "DESCRIBE_CONFIGS"),
    (AclOperation::AlterConfigs, "ALTER_CONFIGS"),
    (AclOperation::IdempotentWrite, "IDEMPOTENT_WRITE"),
    (AclOperation::CreateTokens, "CREATE_TOKENS"),
    (AclOperation::DescribeTokens, "DESCRIBE_TOKENS"),
    (AclOperation::TwoPhaseCommit, "TWO_PHASE_COMMIT"),
];

/// An operation by Kafka's name, in any of the spellings `SecurityUtils.operation` takes
/// (`IdempotentWrite`, `IDEMPOTENTWRITE`) and also `IDEMPOTENT_WRITE`/`idempotent-write`.
fn parse_operation(text: &str) -> Result<AclOperation, String> {
    let wanted: String = text
        .trim()
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .collect::<String>()
        .to_ascii_uppercase();
    OPERATIONS
        .iter()
        .find(|(_, name)| name.replace('_', "") == wanted)
        .map(|(operation, _)| *operation)
        .ok_or_else(|| {
            let names: Vec<String> = OPERATIONS.iter().map(|(op, _)| pascal_name(*op)).collect();
            format!(
                "unknown operation {text:?}; valid operations: {}",
                names.join(", ")
            )
        })
}

/// Kafka's `SecurityUtils.operationName`: `IdempotentWrite`.
fn pascal_name(operation: AclOperation) -> String {
    let name = operation_name(operation.code());
    name.split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or(String::new(), |first| {
                first.to_string() + &chars.as_str().to_ascii_lowercase()
            })
        })
        .collect()
}

fn operation_name(code: i8) -> String {
    if code == AclOperation::ANY_CODE {
        return "ANY".to_string();
    }
    AclOperation::from_code(code)
        .and_then(|op| OPERATIONS.iter().find(|(o, _)| *o == op))
        .map_or_else(|| format!("UNKNOWN({code})"), |(_, name)| name.to_string())
}

fn resource_type_name(code: i8) -> String {
    match AclResourceType::from_code(code) {
        Some(AclResourceType::Topic) => "TOPIC".to_string(),
        Some(AclResourceType::Group) => "GROUP".to_string(),
        Some(AclResourceType::Cluster) => "CLUSTER".to_string(),
        Some(AclResourceType::TransactionalId) => "TRANSACTIONAL_ID".to_string(),
        Some(AclResourceType::DelegationToken) => "DELEGATION_TOKEN".to_string(),
        Some(AclResourceType::User) => "USER".to_string(),
        None if code == AclResourceType::ANY_CODE => "ANY".to_string(),
        None => format!("UNKNOWN({code})"),
    }
}

fn pattern_type_name(code: i8) -> String {
    match AclPatternType::from_code(code) {
        Some(AclPatternType::Literal) => "LITERAL".to_string(),
        Some(AclPatternType::Prefixed) => "PREFIXED".to_string(),
        None if code == AclPatternType::ANY_CODE => "ANY".to_string(),
        None if code == AclPatternType::MATCH_CODE => "MATCH".to_string(),
        None => format!("UNKNOWN({code})"),
    }
}

fn permission_type_name(code: i8) -> String {
    match AclPermissionType::from_code(code) {
        Some(AclPermissionType::Allow) => "ALLOW".to_string(),
        Some(AclPermissionType::Deny) => "DENY".to_string(),
        None if code == AclPermissionType::ANY_CODE => "ANY".to_string(),
        None => format!("UNKNOWN({code})"),
    }
}

/// The operations Kafka accepts on a resource type besides ALL (`AclEntry.supportedOperations`).
fn supported_operations(resource_type: AclResourceType) -> &'static [AclOperation] {
    use AclOperation::*;
    match resource_type {
        AclResourceType::Topic => &[
            Read,
            Write,
            Create,
            Describe,
            Delete,
            Alter,
            DescribeConfigs,
            AlterConfigs,
        ],
        AclResourceType::Group => &[Read, Describe, Delete, DescribeConfigs, AlterConfigs],
        AclResourceType::Cluster => &[
            Create,
            ClusterAction,
            DescribeConfigs,
            AlterConfigs,
            IdempotentWrite,
            Alter,
            Describe,
        ],
        AclResourceType::TransactionalId => &[Describe, Write],
        AclResourceType::DelegationToken => &[Describe],
        AclResourceType::User => &[CreateTokens, DescribeTokens],
    }
}

/// The resource filters of the resource flags, `pattern` applied to every named resource
/// (the cluster is always the literal `kafka-cluster`), sorted.
fn resource_filters(resources: &ResourceArgs, pattern: PatternTypeArg) -> Vec<ResourceFilter> {
    let named = |resource_type: AclResourceType, names: &[String]| {
        names
            .iter()
            .map(move |name| ResourceFilter {
                resource_type: resource_type.code(),
                name: Some(name.trim().to_string()),
                pattern_type: pattern.code(),
            })
            .collect::<Vec<_>>()
    };
    let mut filters: BTreeSet<ResourceFilter> = BTreeSet::new();
    filters.extend(named(AclResourceType::Topic, &resources.topics));
    filters.extend(named(AclResourceType::Group, &resources.groups));
    filters.extend(named(
        AclResourceType::TransactionalId,
        &resources.transactional_ids,
    ));
    if resources.cluster {
        filters.insert(ResourceFilter {
            resource_type: AclResourceType::Cluster.code(),
            name: Some(CLUSTER_RESOURCE_NAME.to_string()),
            pattern_type: AclPatternType::Literal.code(),
        });
    }
    filters.into_iter().collect()
}

/// Which operations each resource gets, as `AclCommand.getResourceFilterToAcls` expands them:
/// `--operation` (or `default_operation`) on every resource without a role flag; with
/// `--producer`/`--consumer` the role's operations on the resource types it covers (other
/// resources given are left out, as in Kafka). Checks every operation against the resource
/// type, as `AclCommand.validateOperation` does.
fn operations_per_resource(
    resources: &[ResourceFilter],
    entries: &EntryArgs,
    default_operation: i8,
) -> Result<BTreeMap<ResourceFilter, BTreeSet<i8>>> {
    use AclOperation::*;
    let codes = |ops: &[AclOperation]| ops.iter().map(|o| o.code()).collect::<BTreeSet<i8>>();
    let mut map: BTreeMap<ResourceFilter, BTreeSet<i8>> = BTreeMap::new();
    let of_type = |t: AclResourceType| {
        resources
            .iter()
            .filter(move |r| r.resource_type == t.code())
            .cloned()
    };
    if !entries.producer && !entries.consumer {
        let operations = if entries.operations.is_empty() {
            BTreeSet::from([default_operation])
        } else {
            codes(&entries.operations)
        };
        for resource in resources {
            map.insert(resource.clone(), operations.clone());
        }
    }
    if entries.producer {
        for topic in of_type(AclResourceType::Topic) {
            map.entry(topic)
                .or_default()
                .extend(codes(&[Write, Describe, Create]));
        }
        for id in of_type(AclResourceType::TransactionalId) {
            map.entry(id).or_default().extend(codes(&[Write, Describe]));
        }
        if entries.idempotent {
            let cluster = ResourceFilter {
                resource_type: AclResourceType::Cluster.code(),
                name: Some(CLUSTER_RESOURCE_NAME.to_string()),
                pattern_type: AclPatternType::Literal.code(),
            };
            map.entry(cluster)
                .or_default()
                .extend(codes(&[IdempotentWrite]));
        }
    }
    if entries.consumer {
        if !entries.producer
            && resources.iter().any(|r| {
                r.resource_type == AclResourceType::Cluster.code()
                    || r.resource_type == AclResourceType::TransactionalId.code()
            })
        {
            bail!("with --consumer (and no --producer), give no --cluster or --transactional-id");
        }
        for topic in of_type(AclResourceType::Topic) {
            map.entry(topic)
                .or_default()
                .extend(codes(&[Read, Describe]));
        }
        for group in of_type(AclResourceType::Group) {
            map.entry(group).or_default().extend(codes(&[Read]));
        }
    }
    for (resource, operations) in &map {
        let Some(resource_type) = AclResourceType::from_code(resource.resource_type) else {
            continue;
        };
        let supported = supported_operations(resource_type);
        for code in operations {
            let valid = *code == AclOperation::ANY_CODE
                || *code == All.code()
                || supported.iter().any(|s| s.code() == *code);
            if !valid {
                let names: Vec<String> = std::iter::once(All)
                    .chain(supported.iter().copied())
                    .map(pascal_name)
                    .collect();
                bail!(
                    "{} {} cannot have operation {}: a {} supports {}",
                    resource_type_name(resource.resource_type),
                    resource.name.as_deref().unwrap_or("*"),
                    operation_name(*code),
                    resource_type_name(resource.resource_type).to_lowercase(),
                    names.join(", ")
                );
            }
        }
    }
    Ok(map)
}

/// The entries (permission, principal, host) of the principal and host flags. Without a host
/// flag the host is `default_host` (`Some("*")` when creating, `None` = any host when deleting).
fn principal_entries(
    entries: &EntryArgs,
    default_host: Option<&str>,
) -> Vec<(i8, String, Option<String>)> {
    let mut out = Vec::new();
    let sides = [
        (
            AclPermissionType::Allow,
            &entries.allow_principals,
            &entries.allow_hosts,
        ),
        (
            AclPermissionType::Deny,
            &entries.deny_principals,
            &entries.deny_hosts,
        ),
    ];
    for (permission, principals, hosts) in sides {
        let hosts: Vec<Option<String>> = if hosts.is_empty() {
            vec![default_host.map(str::to_string)]
        } else {
            hosts.iter().map(|h| Some(h.trim().to_string())).collect()
        };
        for principal in principals {
            for host in &hosts {
                out.push((permission.code(), principal.clone(), host.clone()));
            }
        }
    }
    out
}

/// The ACLs `fjord acl create` asks for.
fn create_bindings(args: &CreateArgs) -> Result<Vec<AclBinding>> {
    let pattern = args
        .resources
        .resource_pattern_type
        .unwrap_or(PatternTypeArg::Literal);
    if !matches!(pattern, PatternTypeArg::Literal | PatternTypeArg::Prefixed) {
        bail!("--resource-pattern-type must be literal or prefixed when creating ACLs");
    }
    let resources = resource_filters(&args.resources, pattern);
    let per_resource =
        operations_per_resource(&resources, &args.entries, AclOperation::All.code())?;
    let entries = principal_entries(&args.entries, Some(WILDCARD_HOST));
    let mut bindings = BTreeSet::new();
    for (resource, operations) in &per_resource {
        let name = resource
            .name
            .clone()
            .ok_or_else(|| anyhow!("a created ACL needs a resource name"))?;
        for operation in operations {
            for (permission_type, principal, host) in &entries {
                bindings.insert(AclBinding {
                    resource_type: resource.resource_type,
                    resource_name: name.clone(),
                    pattern_type: resource.pattern_type,
                    principal: principal.clone(),
                    host: host.clone().unwrap_or_else(|| WILDCARD_HOST.to_string()),
                    operation: *operation,
                    permission_type: *permission_type,
                });
            }
        }
    }
    if bindings.is_empty() {
        bail!("these flags describe no ACL (--producer/--consumer cover only --topic, --group and --transactional-id)");
    }
    Ok(bindings.into_iter().collect())
}

/// The resource filter that matches every resource.
fn any_resource(pattern: Option<PatternTypeArg>) -> ResourceFilter {
    ResourceFilter {
        resource_type: AclResourceType::ANY_CODE,
        name: None,
        pattern_type: pattern.map_or(AclPatternType::ANY_CODE, PatternTypeArg::code),
    }
}

/// The DescribeAcls filters of `fjord acl list`: resources x principals.
fn list_filters(args: &ListArgs) -> Result<Vec<AclFilter>> {
    let resources = if args.resources.is_empty() {
        vec![any_resource(args.resources.resource_pattern_type)]
    } else {
        let pattern = args
            .resources
            .resource_pattern_type
            .unwrap_or(PatternTypeArg::Literal);
        resource_filters(&args.resources, pattern)
    };
    let principals: Vec<Option<String>> = if args.principals.is_empty() {
        vec![None]
    } else {
        args.principals.iter().cloned().map(Some).collect()
    };
    let mut filters = Vec::new();
    for resource in &resources {
        for principal in &principals {
            filters.push(AclFilter {
                resource: resource.clone(),
                entry: EntryFilter {
                    principal: principal.clone(),
                    host: None,
                    operation: AclOperation::ANY_CODE,
                    permission_type: AclPermissionType::ANY_CODE,
                },
            });
        }
    }
    Ok(filters)
}

/// The DeleteAcls filters of `fjord acl delete`. Refuses a filter that matches every ACL of
/// its resources unless `--yes` is given.
fn delete_filters(args: &DeleteArgs) -> Result<Vec<AclFilter>> {
    let entries = &args.entries;
    let resources = if args.resources.is_empty() {
        if entries.producer || entries.consumer {
            bail!("--producer and --consumer need the resources they apply to");
        }
        vec![any_resource(args.resources.resource_pattern_type)]
    } else {
        let pattern = args
            .resources
            .resource_pattern_type
            .unwrap_or(PatternTypeArg::Literal);
        resource_filters(&args.resources, pattern)
    };
    let per_resource = operations_per_resource(&resources, entries, AclOperation::ANY_CODE)?;
    let principals = principal_entries(entries, None);
    let no_principal = principals.is_empty();
    let mut filters = BTreeSet::new();
    for (resource, operations) in &per_resource {
        for operation in operations {
            if no_principal {
                if *operation == AclOperation::ANY_CODE && !args.yes {
                    let scope = match &resource.name {
                        None => "every ACL of the cluster".to_string(),
                        Some(name) => format!(
                            "every ACL of {} {name:?} ({})",
                            resource_type_name(resource.resource_type),
                            pattern_type_name(resource.pattern_type)
                        ),
                    };
                    bail!("this would delete {scope}; add --yes to confirm, or narrow it with --allow-principal/--deny-principal or --operation");
                }
                filters.insert(AclFilter {
                    resource: resource.clone(),
                    entry: EntryFilter {
                        principal: None,
                        host: None,
                        operation: *operation,
                        permission_type: AclPermissionType::ANY_CODE,
                    },
                });
            }
            for (permission_type, principal, host) in &principals {
                filters.insert(AclFilter {
                    resource: resource.clone(),
                    entry: EntryFilter {
                        principal: Some(principal.clone()),
                        host: host.clone(),
                        operation: *operation,
                        permission_type: *permission_type,
                    },
                });
            }
        }
    }
    Ok(filters.into_iter().collect())
}

fn str_bytes(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// `NAME (code): message` of a failed result (no message part when the broker gave none).
pub(crate) fn error_text(error_code: i16, message: Option<&StrBytes>) -> String {
    match message.map(|m| m.as_str()).filter(|m| !m.is_empty()) {
        Some(message) => format!("{}: {message}", error_name(error_code)),
        None => error_name(error_code),
    }
}

fn describe_request(filter: &AclFilter) -> DescribeAclsRequest {
    DescribeAclsRequest::default()
        .with_resource_type_filter(filter.resource.resource_type)
        .with_resource_name_filter(filter.resource.name.as_deref().map(str_bytes))
        .with_pattern_type_filter(filter.resource.pattern_type)
        .with_principal_filter(filter.entry.principal.as_deref().map(str_bytes))
        .with_host_filter(filter.entry.host.as_deref().map(str_bytes))
        .with_operation(filter.entry.operation)
        .with_permission_type(filter.entry.permission_type)
}

/// The ACLs that match any of `filters` (one DescribeAcls each), sorted, without duplicates.
fn describe_acls(client: &mut AdminClient, filters: &[AclFilter]) -> Result<Vec<AclBinding>> {
    let mut acls = BTreeSet::new();
    for filter in filters {
        let ResponseKind::DescribeAcls(response) = client.send(
            ApiKey::DescribeAcls,
            DESCRIBE_ACLS_VERSION_MAX,
            RequestKind::DescribeAcls(describe_request(filter)),
        )?
        else {
            bail!("unexpected answer to DescribeAcls");
        };
        if response.error_code != 0 {
            bail!(
                "could not list ACLs: {}",
                error_text(response.error_code, response.error_message.as_ref())
            );
        }
        for resource in &response.resources {
            for acl in &resource.acls {
                acls.insert(AclBinding {
                    resource_type: resource.resource_type,
                    resource_name: resource.resource_name.to_string(),
                    pattern_type: resource.pattern_type,
                    principal: acl.principal.to_string(),
                    host: acl.host.to_string(),
                    operation: acl.operation,
                    permission_type: acl.permission_type,
                });
            }
        }
    }
    Ok(acls.into_iter().collect())
}

fn create_request(bindings: &[AclBinding]) -> CreateAclsRequest {
    CreateAclsRequest::default().with_creations(
        bindings
            .iter()
            .map(|b| {
                AclCreation::default()
                    .with_resource_type(b.resource_type)
                    .with_resource_name(str_bytes(&b.resource_name))
                    .with_resource_pattern_type(b.pattern_type)
                    .with_principal(str_bytes(&b.principal))
                    .with_host(str_bytes(&b.host))
                    .with_operation(b.operation)
                    .with_permission_type(b.permission_type)
            })
            .collect(),
    )
}

fn create_acls(
    client: &mut AdminClient,
    bindings: &[AclBinding],
    output: OutputFormat,
) -> Result<()> {
    let ResponseKind::CreateAcls(response) = client.send(
        ApiKey::CreateAcls,
        CREATE_ACLS_VERSION_MAX,
        RequestKind::CreateAcls(create_request(bindings)),
    )?
    else {
        bail!("unexpected answer to CreateAcls");
    };
    if response.results.len() != bindings.len() {
        bail!(
            "CreateAcls answered {} results for {} ACLs",
            response.results.len(),
            bindings.len()
        );
    }
    let mut created = Vec::new();
    let mut failures = Vec::new();
    for (binding, result) in bindings.iter().zip(&response.results) {
        if result.error_code == 0 {
            created.push(binding.clone());
        } else {
            failures.push(format!(
                "could not create ACL {}: {}",
                binding.describe(),
                error_text(result.error_code, result.error_message.as_ref())
            ));
        }
    }
    finish(&created, &failures, "created", "Created", output)
}

/// Prints what was done and fails with every failure (text: the failures on stderr first).
fn finish(
    done: &[AclBinding],
    failures: &[String],
    json_key: &str,
    verb: &str,
    output: OutputFormat,
) -> Result<()> {
    let summary = failures.first().cloned().unwrap_or_default();
    print_acls(done, json_key, Some((verb, failures)), output)?;
    match failures.len() {
        0 => Ok(()),
        1 => Err(anyhow!(summary)),
        n => Err(anyhow!("{summary} (and {} more failures)", n - 1)),
    }
}

fn delete_request(filters: &[AclFilter]) -> DeleteAclsRequest {
    DeleteAclsRequest::default().with_filters(
        filters
            .iter()
            .map(|f| {
                DeleteAclsFilter::default()
                    .with_resource_type_filter(f.resource.resource_type)
                    .with_resource_name_filter(f.resource.name.as_deref().map(str_bytes))
                    .with_pattern_type_filter(f.resource.pattern_type)
                    .with_principal_filter(f.entry.principal.as_deref().map(str_bytes))
                    .with_host_filter(f.entry.host.as_deref().map(str_bytes))
                    .with_operation(f.entry.operation)
                    .with_permission_type(f.entry.permission_type)
            })
            .collect(),
    )
}

fn delete_acls(
    client: &mut AdminClient,
    filters: &[AclFilter],
    output: OutputFormat,
) -> Result<()> {
    let ResponseKind::DeleteAcls(response) = client.send(
        ApiKey::DeleteAcls,
        DELETE_ACLS_VERSION_MAX,
        RequestKind::DeleteAcls(delete_request(filters)),
    )?
    else {
        bail!("unexpected answer to DeleteAcls");
    };
    let mut deleted = BTreeSet::new();
    let mut failures = Vec::new();
    for result in &response.filter_results {
        if result.error_code != 0 {
            failures.push(format!(
                "could not delete ACLs: {}",
                error_text(result.error_code, result.error_message.as_ref())
            ));
            continue;
        }
        for acl in &result.matching_acls {
            let binding = AclBinding {
                resource_type: acl.resource_type,
                resource_name: acl.resource_name.to_string(),
                pattern_type: acl.pattern_type,
                principal: acl.principal.to_string(),
                host: acl.host.to_string(),
                operation: acl.operation,
                permission_type: acl.permission_type,
            };
            if acl.error_code == 0 {
                deleted.insert(binding);
            } else {
                failures.push(format!(
                    "could not delete ACL {}: {}",
                    binding.describe(),
                    error_text(acl.error_code, acl.error_message.as_ref())
                ));
            }
        }
    }
    let deleted: Vec<AclBinding> = deleted.into_iter().collect();
    finish(&deleted, &failures, "deleted", "Deleted", output)
}

const ACL_HEADERS: [&str; 7] = [
    "RESOURCE-TYPE",
    "RESOURCE-NAME",
    "PATTERN-TYPE",
    "PRINCIPAL",
    "HOST",
    "OPERATION",
    "PERMISSION",
];

/// Prints ACLs as a table (with a "Created N ACL(s):" line for a change) or as
/// `{json_key: [...], "errors": [...]}` (no `errors` for a listing).
fn print_acls(
    acls: &[AclBinding],
    json_key: &str,
    change: Option<(&str, &[String])>,
    output: OutputFormat,
) -> Result<()> {
    if output == OutputFormat::Json {
        let mut document = serde_json::Map::new();
        document.insert(
            json_key.to_string(),
            Value::from(acls.iter().map(AclBinding::to_json).collect::<Vec<_>>()),
        );
        if let Some((_, errors)) = change {
            document.insert("errors".to_string(), Value::from(errors.to_vec()));
        }
        return print_json(&Value::Object(document));
    }
    if let Some((verb, errors)) = change {
        for error in errors {
            eprintln!("{error}");
        }
        if acls.is_empty() {
            println!("{verb} no ACLs.");
            return Ok(());
        }
        println!("{verb} {} ACL(s):", acls.len());
    }
    let rows: Vec<Vec<String>> = acls.iter().map(AclBinding::row).collect();
    print_table(&ACL_HEADERS, &rows);
    Ok(())
}

/// Test helper shared by the ACL, user and quota tests: a request as the broker decodes it.
#[cfg(test)]
pub(crate) fn wire_round_trip(api_key: ApiKey, version: i16, request: &RequestKind) -> RequestKind {
    use fjord_protocol::kafka_protocol::messages::RequestHeader;
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("test")));
    let bytes = fjord_protocol::request::encode_request(&header, request).expect("encodes");
    let frame = fjord_protocol::request::decode_header(bytes::Bytes::from(bytes)).expect("header");
    fjord_protocol::request::decode_body(&frame).expect("body")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        acl: AclArgs,
    }

    fn parse(args: &[&str]) -> Result<AclCommand, clap::Error> {
        let mut argv = vec!["acl"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).map(|cli| cli.acl.command)
    }

    fn create(args: &[&str]) -> Result<Vec<AclBinding>> {
        let mut argv = vec!["create"];
        argv.extend_from_slice(args);
        match parse(&argv) {
            Ok(AclCommand::Create(create)) => create_bindings(&create),
            Ok(other) => panic!("parsed as {other:?}"),
            Err(err) => Err(anyhow!("{err}")),
        }
    }

    fn delete(args: &[&str]) -> Result<Vec<AclFilter>> {
        let mut argv = vec!["delete"];
        argv.extend_from_slice(args);
        match parse(&argv) {
            Ok(AclCommand::Delete(delete)) => delete_filters(&delete),
            Ok(other) => panic!("parsed as {other:?}"),
            Err(err) => Err(anyhow!("{err}")),
        }
    }

    /// (resource type, name, pattern, principal, host, operation, permission) as names.
    fn names(bindings: &[AclBinding]) -> Vec<Vec<String>> {
        bindings.iter().map(AclBinding::row).collect()
    }

    fn row(cells: [&str; 7]) -> Vec<String> {
        cells.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn operations_parse_in_every_kafka_spelling() {
        for spelling in [
            "IdempotentWrite",
            "IDEMPOTENTWRITE",
            "IDEMPOTENT_WRITE",
            "idempotent-write",
        ] {
            assert_eq!(parse_operation(spelling), Ok(AclOperation::IdempotentWrite));
        }
        assert_eq!(parse_operation("read"), Ok(AclOperation::Read));
        assert_eq!(parse_operation(" All "), Ok(AclOperation::All));
        let err = parse_operation("Fly").unwrap_err();
        assert!(
            err.contains("DescribeConfigs") && err.contains("TwoPhaseCommit"),
            "{err}"
        );
        assert_eq!(pascal_name(AclOperation::ClusterAction), "ClusterAction");
        assert_eq!(operation_name(AclOperation::ANY_CODE), "ANY");
        assert_eq!(operation_name(99), "UNKNOWN(99)");
    }

    #[test]
    fn principals_need_a_type_and_a_name() {
        assert_eq!(parse_principal("User:alice"), Ok("User:alice".to_string()));
        assert_eq!(parse_principal("User:*"), Ok("User:*".to_string()));
        assert_eq!(
            parse_principal("User:CN=a,O=b:c"),
            Ok("User:CN=a,O=b:c".to_string())
        );
        assert!(parse_principal("alice").is_err());
        assert!(parse_principal("User:").is_err());
        assert!(parse_principal(":alice").is_err());
        assert!(parse(&["create", "--topic", "t", "--allow-principal", "alice"]).is_err());
    }

    #[test]
    fn create_expands_principals_hosts_operations_and_resources() {
        let acls = create(&[
            "--topic",
            "orders",
            "--group",
            "billing",
            "--allow-principal",
            "User:alice",
            "--allow-host",
            "10.0.0.1",
            "--allow-host",
            "10.0.0.2",
            "--deny-principal",
            "User:mallory",
            "--operation",
            "Read",
            "--operation",
            "Describe",
        ])
        .expect("valid");
        // 2 resources x 2 operations x (2 allow hosts + 1 deny host).
        assert_eq!(acls.len(), 12);
        let rows = names(&acls);
        assert!(rows.contains(&row([
            "TOPIC",
            "orders",
            "LITERAL",
            "User:alice",
            "10.0.0.2",
            "READ",
            "ALLOW"
        ])));
        assert!(rows.contains(&row([
            "GROUP",
            "billing",
            "LITERAL",
            "User:mallory",
            "*",
            "DESCRIBE",
            "DENY"
        ])));
    }

    #[test]
    fn create_defaults_to_all_from_every_host_and_takes_prefixed() {
        let acls = create(&[
            "--topic",
            "logs-",
            "--resource-pattern-type",
            "prefixed",
            "--allow-principal",
            "User:*",
        ])
        .expect("valid");
        assert_eq!(
            names(&acls),
            vec![row([
                "TOPIC", "logs-", "PREFIXED", "User:*", "*", "ALL", "ALLOW"
            ])]
        );
        let err = create(&[
            "--topic",
            "t",
            "--resource-pattern-type",
            "match",
            "--allow-principal",
            "User:a",
        ])
        .unwrap_err();
        assert!(err.to_string().contains("literal or prefixed"), "{err}");
    }

    #[test]
    fn producer_consumer_and_idempotent_expand_like_kafka_acls() {
        let acls = create(&[
            "--producer",
            "--idempotent",
            "--topic",
            "t",
            "--transactional-id",
            "tx",
            "--group",
            "g",
            "--allow-principal",
            "User:p",
        ])
        .expect("valid");
        let rows: Vec<(String, String)> = acls
            .iter()
            .map(|a| {
                (
                    resource_type_name(a.resource_type),
                    operation_name(a.operation),
                )
            })
            .collect();
        let expected: Vec<(String, String)> = [
            ("TOPIC", "WRITE"),
            ("TOPIC", "CREATE"),
            ("TOPIC", "DESCRIBE"),
            ("CLUSTER", "IDEMPOTENT_WRITE"),
            ("TRANSACTIONAL_ID", "WRITE"),
            ("TRANSACTIONAL_ID", "DESCRIBE"),
        ]
        .iter()
        .map(|(t, o)| (t.to_string(), o.to_string()))
        .collect();
        // Sorted by resource type code (TOPIC 2, CLUSTER 4, TRANSACTIONAL_ID 5), then operation code.
        assert_eq!(rows, expected);
        assert!(acls
            .iter()
            .all(|a| a.resource_type != AclResourceType::Group.code()));
        let cluster = acls
            .iter()
            .find(|a| a.resource_type == AclResourceType::Cluster.code())
            .expect("cluster ACL");
        assert_eq!(cluster.resource_name, "kafka-cluster");

        let acls = create(&[
            "--consumer",
            "--topic",
            "t",
            "--group",
            "g",
            "--allow-principal",
            "User:c",
        ])
        .expect("valid");
        assert_eq!(
            names(&acls),
            vec![
                row(["TOPIC", "t", "LITERAL", "User:c", "*", "READ", "ALLOW"]),
                row(["TOPIC", "t", "LITERAL", "User:c", "*", "DESCRIBE", "ALLOW"]),
                row(["GROUP", "g", "LITERAL", "User:c", "*", "READ", "ALLOW"]),
            ]
        );

        // Both roles at once: the topic gets the union.
        let acls = create(&[
            "--producer",
            "--consumer",
            "--topic",
            "t",
            "--group",
            "g",
            "--allow-principal",
            "User:pc",
        ])
        .expect("valid");
        let topic_ops: BTreeSet<String> = acls
            .iter()
            .filter(|a| a.resource_type == AclResourceType::Topic.code())
            .map(|a| operation_name(a.operation))
            .collect();
        assert_eq!(
            topic_ops,
            ["CREATE", "DESCRIBE", "READ", "WRITE"]
                .iter()
                .map(|s| s.to_string())
                .collect()
        );
    }

    #[test]
    fn role_flags_refuse_what_kafka_acls_refuses() {
        let cases: &[&[&str]] = &[
            // --producer without --topic
            &["--producer", "--group", "g", "--allow-principal", "User:a"],
            // --consumer without --group
            &["--consumer", "--topic", "t", "--allow-principal", "User:a"],
            // --idempotent without --producer
            &[
                "--idempotent",
                "--topic",
                "t",
                "--allow-principal",
                "User:a",
            ],
            // a role with --operation or --deny-principal
            &[
                "--producer",
                "--topic",
                "t",
                "--operation",
                "Read",
                "--allow-principal",
                "User:a",
            ],
            &[
                "--consumer",
                "--topic",
                "t",
                "--group",
                "g",
                "--deny-principal",
                "User:a",
            ],
            // --consumer with --cluster (and no --producer)
            &[
                "--consumer",
                "--topic",
                "t",
                "--group",
                "g",
                "--cluster",
                "--allow-principal",
                "User:a",
            ],
            // a host without its principal
            &[
                "--topic",
                "t",
                "--allow-principal",
                "User:a",
                "--deny-host",
                "1.2.3.4",
            ],
        ];
        for args in cases {
            assert!(create(args).is_err(), "accepted {args:?}");
        }
    }

    #[test]
    fn operations_are_checked_against_the_resource_type() {
        let err = create(&[
            "--topic",
            "t",
            "--operation",
            "IdempotentWrite",
            "--allow-principal",
            "User:a",
        ])
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot have operation IDEMPOTENT_WRITE"),
            "{err}"
        );
        assert!(create(&[
            "--transactional-id",
            "tx",
            "--operation",
            "Read",
            "--allow-principal",
            "User:a"
        ])
        .is_err());
        assert!(create(&[
            "--cluster",
            "--operation",
            "ClusterAction",
            "--allow-principal",
            "User:broker"
        ])
        .is_ok());
    }

    #[test]
    fn delete_of_every_acl_needs_yes() {
        let err = delete(&["--topic", "t"]).unwrap_err();
        assert!(err.to_string().contains("--yes"), "{err}");
        let err = delete(&[]).unwrap_err();
        assert!(
            err.to_string().contains("every ACL of the cluster"),
            "{err}"
        );
        let filters = delete(&["--topic", "t", "--yes"]).expect("confirmed");
        assert_eq!(
            filters,
            vec![AclFilter {
                resource: ResourceFilter {
                    resource_type: AclResourceType::Topic.code(),
                    name: Some("t".into()),
                    pattern_type: AclPatternType::Literal.code(),
                },
                entry: EntryFilter {
                    principal: None,
                    host: None,
                    operation: AclOperation::ANY_CODE,
                    permission_type: AclPermissionType::ANY_CODE,
                },
            }]
        );
        // --force is Kafka's spelling.
        assert!(delete(&["--force"]).is_ok());
        // Narrowed by operation: no confirmation needed.
        let filters = delete(&["--topic", "t", "--operation", "Write"]).expect("narrow");
        assert_eq!(filters[0].entry.operation, AclOperation::Write.code());
    }

    #[test]
    fn delete_by_principal_matches_any_host_and_operation() {
        let filters = delete(&["--allow-principal", "User:bob"]).expect("valid");
        assert_eq!(
            filters,
            vec![AclFilter {
                resource: ResourceFilter {
                    resource_type: AclResourceType::ANY_CODE,
                    name: None,
                    pattern_type: AclPatternType::ANY_CODE,
                },
                entry: EntryFilter {
                    principal: Some("User:bob".into()),
                    host: None,
                    operation: AclOperation::ANY_CODE,
                    permission_type: AclPermissionType::Allow.code(),
                },
            }]
        );
        let filters = delete(&[
            "--producer",
            "--topic",
            "t",
            "--resource-pattern-type",
            "match",
            "--allow-principal",
            "User:p",
            "--allow-host",
            "10.1.1.1",
        ])
        .expect("valid");
        assert_eq!(filters.len(), 3);
        assert!(filters
            .iter()
            .all(|f| f.resource.pattern_type == AclPatternType::MATCH_CODE
                && f.entry.host.as_deref() == Some("10.1.1.1")));
    }

    #[test]
    fn list_filters_cross_resources_and_principals() {
        let Ok(AclCommand::List(args)) = parse(&["list"]) else {
            panic!("list");
        };
        let filters = list_filters(&args).expect("filters");
        assert_eq!(filters.len(), 1);
        assert_eq!(filters[0].resource, any_resource(None));
        let Ok(AclCommand::List(args)) = parse(&[
            "list",
            "--topic",
            "a",
            "--cluster",
            "--principal",
            "User:x",
            "--principal",
            "User:y",
        ]) else {
            panic!("list");
        };
        let filters = list_filters(&args).expect("filters");
        assert_eq!(filters.len(), 4);
        assert!(filters
            .iter()
            .any(|f| f.resource.name.as_deref() == Some("kafka-cluster")
                && f.entry.principal.as_deref() == Some("User:y")));
        // A pattern type alone filters by it across all resources.
        let Ok(AclCommand::List(args)) = parse(&["list", "--resource-pattern-type", "prefixed"])
        else {
            panic!("list");
        };
        let filters = list_filters(&args).expect("filters");
        assert_eq!(
            filters[0].resource.pattern_type,
            AclPatternType::Prefixed.code()
        );
    }

    #[test]
    fn requests_carry_kafka_codes_through_the_codec() {
        let acls = create(&[
            "--topic",
            "t",
            "--allow-principal",
            "User:a",
            "--operation",
            "Write",
        ])
        .expect("valid");
        let request = RequestKind::CreateAcls(create_request(&acls));
        let RequestKind::CreateAcls(decoded) = wire_round_trip(ApiKey::CreateAcls, 3, &request)
        else {
            panic!("not CreateAcls");
        };
        let creation = &decoded.creations[0];
        assert_eq!(
            (
                creation.resource_type,
                creation.resource_name.as_str(),
                creation.resource_pattern_type,
                creation.principal.as_str(),
                creation.host.as_str(),
                creation.operation,
                creation.permission_type
            ),
            (2, "t", 3, "User:a", "*", 4, 3)
        );

        let filters = delete(&["--deny-principal", "User:m", "--group", "g"]).expect("valid");
        let request = RequestKind::DeleteAcls(delete_request(&filters));
        let RequestKind::DeleteAcls(decoded) = wire_round_trip(ApiKey::DeleteAcls, 3, &request)
        else {
            panic!("not DeleteAcls");
        };
        let filter = &decoded.filters[0];
        assert_eq!(filter.resource_type_filter, 3);
        assert_eq!(filter.resource_name_filter.as_deref(), Some("g"));
        assert_eq!(filter.principal_filter.as_deref(), Some("User:m"));
        assert_eq!(filter.host_filter, None);
        assert_eq!(filter.operation, 1);
        assert_eq!(filter.permission_type, 2);

        let request = RequestKind::DescribeAcls(describe_request(&AclFilter {
            resource: any_resource(None),
            entry: EntryFilter {
                principal: None,
                host: None,
                operation: AclOperation::ANY_CODE,
                permission_type: AclPermissionType::ANY_CODE,
            },
        }));
        let RequestKind::DescribeAcls(decoded) = wire_round_trip(ApiKey::DescribeAcls, 3, &request)
        else {
            panic!("not DescribeAcls");
        };
        assert_eq!(decoded.resource_type_filter, 1);
        assert_eq!(decoded.resource_name_filter, None);
        assert_eq!(decoded.pattern_type_filter, 1);
    }

    #[test]
    fn output_uses_kafka_enum_names() {
        let binding = AclBinding {
            resource_type: AclResourceType::TransactionalId.code(),
            resource_name: "tx".into(),
            pattern_type: AclPatternType::Prefixed.code(),
            principal: "User:a".into(),
            host: "*".into(),
            operation: AclOperation::IdempotentWrite.code(),
            permission_type: AclPermissionType::Deny.code(),
        };
        assert_eq!(
            binding.to_json(),
            json!({
                "resource_type": "TRANSACTIONAL_ID",
                "resource_name": "tx",
                "pattern_type": "PREFIXED",
                "principal": "User:a",
                "host": "*",
                "operation": "IDEMPOTENT_WRITE",
                "permission_type": "DENY",
            })
        );
        assert_eq!(resource_type_name(42), "UNKNOWN(42)");
        assert_eq!(
            error_text(
                54,
                Some(&StrBytes::from_static_str(
                    "Security features are disabled."
                ))
            ),
            "SECURITY_DISABLED (54): Security features are disabled."
        );
        assert_eq!(
            error_text(54, Some(&StrBytes::from_static_str(""))),
            "SECURITY_DISABLED (54)"
        );
    }
}
