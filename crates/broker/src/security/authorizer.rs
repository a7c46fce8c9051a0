//! ACL authorization (Kafka's `StandardAuthorizer` and `StandardAuthorizerData`): may this
//! principal, from this host, perform this operation on this resource?
//!
//! The ACLs come from the metadata image (`MetadataImage.acls`, replayed from
//! `AccessControlEntryRecord`s). Kafka keeps them in a sorted set and walks it per check; here
//! an [`AclIndex`] is built once per published ACL set (the image shares the map between
//! images until a delta changes it, so the index is rebuilt only when the `Arc` changes) and a
//! check is a few hash lookups: the literal name, the literal wildcard `*`, and one lookup per
//! distinct prefix length of the prefixed ACLs of that resource type.
//!
//! Semantics, as `StandardAuthorizerData.findResult`:
//! * super users (`super.users`) are always allowed;
//! * an ACL matches when its principal is the caller's or `User:*`, its host is `*` or the
//!   caller's IP, and its resource pattern covers the name (LITERAL: equal, or the wildcard
//!   `*`; PREFIXED: a prefix of the name);
//! * a matching DENY for the operation (or ALL) wins over any ALLOW;
//! * an ALLOW for ALL allows everything; an ALLOW for READ, WRITE, DELETE or ALTER also allows
//!   DESCRIBE, and one for ALTER_CONFIGS also DESCRIBE_CONFIGS (DENY ACLs imply nothing);
//! * without any ACL on the resource the answer is `allow.everyone.if.no.acl.found`; with ACLs
//!   on it but none allowing, deny.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use fjord_metadata::security::{
    AclOperation, AclPatternType, AclPermissionType, AclResourceType, StandardAcl,
};
use parking_lot::RwLock;
use uuid::Uuid;

use super::KafkaPrincipal;

/// Kafka's wildcard resource name and host.
pub const WILDCARD: &str = "*";
/// Kafka `WILDCARD_PRINCIPAL`: an ACL for it matches every principal.
pub const WILDCARD_PRINCIPAL: &str = "User:*";
/// The name of the one CLUSTER resource (Kafka `CLUSTER_NAME`).
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// The `authorizer.class.name` values that turn the authorizer on.
pub const AUTHORIZER_CLASS_NAMES: &[&str] = &[
    "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "fjord",
];

/// The ACL set as loaded from the image.
pub type AclMap = BTreeMap<Uuid, StandardAcl>;

/// The operations a resource type supports (Kafka `AclEntry.supportedOperations`): what
/// `authorized_operations` fields are computed over.
pub fn supported_operations(resource_type: AclResourceType) -> &'static [AclOperation] {
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
        AclResourceType::TransactionalId => &[Describe, Write, TwoPhaseCommit],
        AclResourceType::DelegationToken => &[Describe],
        AclResourceType::User => &[CreateTokens, DescribeTokens],
    }
}

/// Kafka's `Utils.to32BitField` of operation codes: bit `code` set per operation.
pub fn operations_bit_field(operations: impl IntoIterator<Item = AclOperation>) -> i32 {
    operations
        .into_iter()
        .fold(0i32, |bits, operation| bits | (1i32 << operation.code()))
}

/// `authorizer.class.name`, `super.users` and `allow.everyone.if.no.acl.found`, parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthorizerConfig {
    /// `authorizer.class.name` names the standard authorizer.
    pub enabled: bool,
    /// `super.users`, as `Type:name` strings.
    pub super_users: BTreeSet<String>,
    pub allow_everyone_if_no_acl_found: bool,
}

impl AuthorizerConfig {
    /// Parses the three settings; `Err(reason)` names what is wrong.
    pub fn parse(
        class_name: &str,
        super_users: &str,
        allow_everyone_if_no_acl_found: bool,
    ) -> Result<Self, String> {
        let class_name = class_name.trim();
        let enabled = if class_name.is_empty() {
            false
        } else if AUTHORIZER_CLASS_NAMES.contains(&class_name) {
            true
        } else {
            return Err(format!(
                "unknown authorizer {class_name:?}: use {} (or fjord), or leave it empty for none",
                AUTHORIZER_CLASS_NAMES[0]
            ));
        };
        let mut users = BTreeSet::new();
        for entry in super_users
            .split(';')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let principal = KafkaPrincipal::parse(entry).ok_or_else(|| {
                format!("super user {entry:?} is not a principal of the form User:name")
            })?;
            users.insert(principal.to_string());
        }
        Ok(Self {
            enabled,
            super_users: users,
            allow_everyone_if_no_acl_found,
        })
    }
}

/// One ACL as the index keeps it (the resource part is the index key).
#[derive(Clone, Debug, PartialEq, Eq)]
struct AclEntry {
    principal: String,
    host: String,
    operation: AclOperation,
    permission: AclPermissionType,
}

/// The ACLs of one resource type.
#[derive(Debug, Default)]
struct TypeIndex {
    /// LITERAL ACLs by resource name (the wildcard `*` is a key like any other).
    literal: HashMap<String, Vec<AclEntry>>,
    /// PREFIXED ACLs by prefix.
    prefixed: HashMap<String, Vec<AclEntry>>,
    /// The byte lengths of the prefixes in `prefixed`: a check looks up only these.
    prefix_lengths: BTreeSet<usize>,
}

/// The ACLs of one image, indexed for checks (built once per ACL set).
#[derive(Debug, Default)]
pub struct AclIndex {
    by_type: HashMap<AclResourceType, TypeIndex>,
    acl_count: usize,
}

/// What a search over the ACLs found (Kafka `MatchingRuleBuilder`).
#[derive(Default)]
struct Matching {
    has_resource_acls: bool,
    allowed: bool,
    denied: bool,
}

/// Whether `acl` allows (`Some(true)`), denies (`Some(false)`) or says nothing about the
/// operation for this caller (Kafka `findResult`).
fn find_result(
    entry: &AclEntry,
    principal: &str,
    host: &str,
    operation: AclOperation,
) -> Option<bool> {
    if entry.principal != principal && entry.principal != WILDCARD_PRINCIPAL {
        return None;
    }
    if entry.host != WILDCARD && entry.host != host {
        return None;
    }
    if entry.operation != AclOperation::All {
        let matches = match entry.permission {
            AclPermissionType::Allow => match operation {
                AclOperation::Describe => matches!(
                    entry.operation,
                    AclOperation::Describe
                        | AclOperation::Read
                        | AclOperation::Write
                        | AclOperation::Delete
                        | AclOperation::Alter
                ),
                AclOperation::DescribeConfigs => matches!(
                    entry.operation,
                    AclOperation::DescribeConfigs | AclOperation::AlterConfigs
                ),
                other => other == entry.operation,
            },
            AclPermissionType::Deny => entry.operation == operation,
        };
        if !matches {
            return None;
        }
    }
    Some(entry.permission == AclPermissionType::Allow)
}

impl AclIndex {
    /// Indexes every ACL of `acls`.
    pub fn build(acls: &AclMap) -> Self {
        let mut by_type: HashMap<AclResourceType, TypeIndex> = HashMap::new();
        for acl in acls.values() {
            let index = by_type.entry(acl.resource_type).or_default();
            let entry = AclEntry {
                principal: acl.principal.clone(),
                host: acl.host.clone(),
                operation: acl.operation,
                permission: acl.permission_type,
            };
            match acl.pattern_type {
                AclPatternType::Literal => index
                    .literal
                    .entry(acl.resource_name.clone())
                    .or_default()
                    .push(entry),
                AclPatternType::Prefixed => {
                    index.prefix_lengths.insert(acl.resource_name.len());
                    index
                        .prefixed
                        .entry(acl.resource_name.clone())
                        .or_default()
                        .push(entry);
                }
            }
        }
        Self {
            by_type,
            acl_count: acls.len(),
        }
    }

    pub fn len(&self) -> usize {
        self.acl_count
    }

    pub fn is_empty(&self) -> bool {
        self.acl_count == 0
    }

    /// The ACL lists whose pattern covers `name`: literal, wildcard, and every prefix.
    fn matching_lists<'a>(
        &'a self,
        resource_type: AclResourceType,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Vec<AclEntry>> + 'a {
        let index = self.by_type.get(&resource_type);
        let literal = index.and_then(|i| i.literal.get(name));
        let wildcard = index
            .filter(|_| name != WILDCARD)
            .and_then(|i| i.literal.get(WILDCARD));
        let prefixed = index.into_iter().flat_map(move |i| {
            i.prefix_lengths
                .range(..=name.len())
                .filter_map(move |length| name.get(..*length))
                .filter_map(move |prefix| i.prefixed.get(prefix))
        });
        literal.into_iter().chain(wildcard).chain(prefixed)
    }

    fn matching(
        &self,
        principal: &str,
        host: &str,
        resource_type: AclResourceType,
        name: &str,
        operation: AclOperation,
    ) -> Matching {
        let mut matching = Matching::default();
        for list in self.matching_lists(resource_type, name) {
            matching.has_resource_acls |= !list.is_empty();
            for entry in list {
                match find_result(entry, principal, host, operation) {
                    Some(true) => matching.allowed = true,
                    Some(false) => {
                        matching.denied = true;
                        return matching;
                    }
                    None => {}
                }
            }
        }
        matching
    }
}

/// Who asks, in the form ACLs are matched against: `Type:name` and the client IP as text
/// (empty for in-process callers, which only host `*` ACLs match). Built once per request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caller {
    pub principal: String,
    pub host: String,
}

impl Caller {
    pub fn new(principal: &KafkaPrincipal, client_address: Option<IpAddr>) -> Self {
        Self {
            principal: principal.to_string(),
            host: client_address.map(|ip| ip.to_string()).unwrap_or_default(),
        }
    }
}

/// The authorizer: its settings and the index of the last ACL set it saw.
pub struct Authorizer {
    config: AuthorizerConfig,
    /// The ACL map the index was built from (compared by pointer) and the index.
    cache: RwLock<(Arc<AclMap>, Arc<AclIndex>)>,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Authorizer {
    pub fn new(config: AuthorizerConfig) -> Self {
        Self {
            config,
            cache: RwLock::new((Arc::default(), Arc::default())),
        }
    }

    pub fn config(&self) -> &AuthorizerConfig {
        &self.config
    }

    /// The index of `acls`, built only when `acls` is another map than last time (images
    /// share the map until a delta changes the ACLs).
    pub fn index(&self, acls: &Arc<AclMap>) -> Arc<AclIndex> {
        {
            let cache = self.cache.read();
            if Arc::ptr_eq(&cache.0, acls) {
                return cache.1.clone();
            }
        }
        let index = Arc::new(AclIndex::build(acls));
        *self.cache.write() = (acls.clone(), index.clone());
        index
    }

    /// Whether `principal` is one of `super.users`.
    pub fn is_super_user(&self, principal: &KafkaPrincipal) -> bool {
        self.config.super_users.contains(&principal.to_string())
    }

    /// Kafka `StandardAuthorizer.authorize` for one action on a literal resource.
    pub fn authorize(
        &self,
        index: &AclIndex,
        caller: &Caller,
        resource_type: AclResourceType,
        name: &str,
        operation: AclOperation,
    ) -> bool {
        if self.config.super_users.contains(&caller.principal) {
            return true;
        }
        let matching = index.matching(
            &caller.principal,
            &caller.host,
            resource_type,
            name,
            operation,
        );
        if matching.denied {
            return false;
        }
        if matching.allowed {
            return true;
        }
        !matching.has_resource_acls && self.config.allow_everyone_if_no_acl_found
    }

    /// Kafka `Authorizer.authorizeByResourceType`: may the caller perform `operation` on at
    /// least one resource of this type? True when some ALLOW ACL for it (or ALL) matches the
    /// caller and no DENY of the same caller covers it (a literal `*` DENY covers everything;
    /// a DENY on a prefix covers the ALLOW patterns starting with it; a literal DENY covers a
    /// literal ALLOW of the same name).
    pub fn authorize_any(
        &self,
        index: &AclIndex,
        caller: &Caller,
        resource_type: AclResourceType,
        operation: AclOperation,
    ) -> bool {
        let (principal, host) = (&caller.principal, &caller.host);
        if self.config.super_users.contains(principal) {
            return true;
        }
        let Some(type_index) = index.by_type.get(&resource_type) else {
            return self.config.allow_everyone_if_no_acl_found;
        };
        let applies = |entry: &AclEntry, permission: AclPermissionType| {
            entry.permission == permission
                && (entry.principal == *principal || entry.principal == WILDCARD_PRINCIPAL)
                && (entry.host == WILDCARD || entry.host == *host)
                && (entry.operation == operation || entry.operation == AclOperation::All)
        };
        let any = |list: &Vec<AclEntry>, permission| list.iter().any(|e| applies(e, permission));
        let mut denied_literals: HashSet<&str> = HashSet::new();
        let mut denied_prefixes: Vec<&str> = Vec::new();
        for (name, list) in &type_index.literal {
            if any(list, AclPermissionType::Deny) {
                if name == WILDCARD {
                    return false;
                }
                denied_literals.insert(name);
            }
        }
        for (prefix, list) in &type_index.prefixed {
            if any(list, AclPermissionType::Deny) {
                denied_prefixes.push(prefix);
            }
        }
        let covered = |name: &str| denied_prefixes.iter().any(|p| name.starts_with(p));
        let literal_allowed = type_index.literal.iter().any(|(name, list)| {
            any(list, AclPermissionType::Allow)
                && (name == WILDCARD
                    || (!denied_literals.contains(name.as_str()) && !covered(name)))
        });
        let prefixed_allowed = type_index
            .prefixed
            .iter()
            .any(|(prefix, list)| any(list, AclPermissionType::Allow) && !covered(prefix));
        literal_allowed || prefixed_allowed
    }

    /// Kafka `AuthHelper.authorizedOperations`: the bit field of the supported operations of
    /// `resource_type` the caller may perform on `name`.
    pub fn authorized_operations(
        &self,
        index: &AclIndex,
        caller: &Caller,
        resource_type: AclResourceType,
        name: &str,
    ) -> i32 {
        operations_bit_field(
            supported_operations(resource_type)
                .iter()
                .copied()
                .filter(|operation| self.authorize(index, caller, resource_type, name, *operation)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use AclOperation::*;
    use AclPatternType::*;
    use AclPermissionType::*;
    use AclResourceType::*;

    fn acl(
        resource_type: AclResourceType,
        name: &str,
        pattern_type: AclPatternType,
        principal: &str,
        host: &str,
        operation: AclOperation,
        permission_type: AclPermissionType,
    ) -> StandardAcl {
        StandardAcl {
            resource_type,
            resource_name: name.to_string(),
            pattern_type,
            principal: principal.to_string(),
            host: host.to_string(),
            operation,
            permission_type,
        }
    }

    fn map(acls: Vec<StandardAcl>) -> Arc<AclMap> {
        Arc::new(
            acls.into_iter()
                .enumerate()
                .map(|(i, acl)| (Uuid::from_u128(i as u128 + 1), acl))
                .collect(),
        )
    }

    fn authorizer(super_users: &str, allow_everyone: bool) -> Authorizer {
        Authorizer::new(AuthorizerConfig::parse("fjord", super_users, allow_everyone).unwrap())
    }

    const HOST: &str = "192.168.0.1";

    fn caller(principal: &str) -> Caller {
        Caller::new(
            &KafkaPrincipal::parse(principal).unwrap(),
            Some(HOST.parse().unwrap()),
        )
    }

    fn check(
        authorizer: &Authorizer,
        acls: &Arc<AclMap>,
        principal: &str,
        resource_type: AclResourceType,
        name: &str,
        operation: AclOperation,
    ) -> bool {
        let index = authorizer.index(acls);
        authorizer.authorize(&index, &caller(principal), resource_type, name, operation)
    }

    #[test]
    fn config_parses_class_names_and_super_users() {
        let off = AuthorizerConfig::parse("", "", false).unwrap();
        assert!(!off.enabled);
        let on = AuthorizerConfig::parse(
            "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "User:admin; User:broker",
            true,
        )
        .unwrap();
        assert!(on.enabled);
        assert!(on.allow_everyone_if_no_acl_found);
        assert_eq!(
            on.super_users.iter().cloned().collect::<Vec<_>>(),
            vec!["User:admin".to_string(), "User:broker".to_string()]
        );
        assert!(
            AuthorizerConfig::parse("kafka.security.authorizer.AclAuthorizer", "", false).is_err()
        );
        assert!(AuthorizerConfig::parse("fjord", "admin", false).is_err());
    }

    /// Kafka `StandardAuthorizerTest` / `AclAuthorizerTest` cases, one row each.
    #[test]
    fn table_of_kafka_cases() {
        let acls = map(vec![
            acl(Topic, "foo", Literal, "User:alice", "*", Read, Allow),
            acl(Topic, "bar", Prefixed, "User:bob", "*", Write, Allow),
            acl(Topic, "bar-secret", Literal, "User:bob", "*", Write, Deny),
            acl(Topic, "*", Literal, "User:*", "*", Describe, Allow),
            acl(Topic, "hosty", Literal, "User:carol", HOST, Alter, Allow),
            acl(
                Topic,
                "hosty",
                Literal,
                "User:carol",
                "10.0.0.1",
                Delete,
                Allow,
            ),
            acl(Group, "g", Prefixed, "User:alice", "*", All, Allow),
            acl(Group, "gx", Literal, "User:alice", "*", Delete, Deny),
            acl(
                Cluster,
                CLUSTER_NAME,
                Literal,
                "User:ops",
                "*",
                AlterConfigs,
                Allow,
            ),
            acl(TransactionalId, "tx", Literal, "User:*", "*", Write, Allow),
            acl(
                TransactionalId,
                "tx",
                Literal,
                "User:mallory",
                "*",
                All,
                Deny,
            ),
            acl(Topic, "denyread", Literal, "User:dave", "*", Read, Deny),
            acl(Topic, "denyread", Literal, "User:dave", "*", All, Allow),
        ]);
        let a = authorizer("User:root", false);
        let rows: &[(&str, AclResourceType, &str, AclOperation, bool)] = &[
            ("User:alice", Topic, "foo", Read, true),
            ("User:alice", Topic, "foo", Describe, true), // implied by READ (and `*` DESCRIBE)
            ("User:alice", Topic, "foo", Write, false),
            ("User:alice", Topic, "foo2", Read, false), // literal is exact
            ("User:bob", Topic, "foo", Read, false),
            ("User:bob", Topic, "bar", Write, true), // prefix equal to the name
            ("User:bob", Topic, "bar-1", Write, true),
            ("User:bob", Topic, "ba", Write, false),
            ("User:bob", Topic, "bar-secret", Write, false), // deny beats allow
            ("User:bob", Topic, "bar-secret", Describe, true), // a DENY implies nothing
            ("User:anyone", Topic, "whatever", Describe, true), // wildcard + User:*
            ("User:anyone", Topic, "whatever", Read, false),
            ("User:carol", Topic, "hosty", Alter, true), // host matches
            ("User:carol", Topic, "hosty", Delete, false), // other host
            ("User:alice", Group, "g1", Read, true),     // ALL via prefix
            ("User:alice", Group, "gx", Read, true),
            ("User:alice", Group, "gx", Delete, false),
            ("User:alice", Group, "other", Read, false),
            ("User:ops", Cluster, CLUSTER_NAME, AlterConfigs, true),
            ("User:ops", Cluster, CLUSTER_NAME, DescribeConfigs, true), // implied
            ("User:ops", Cluster, CLUSTER_NAME, Describe, false),
            ("User:ops", Cluster, CLUSTER_NAME, ClusterAction, false),
            ("User:zed", TransactionalId, "tx", Write, true),
            ("User:zed", TransactionalId, "tx", Describe, true),
            ("User:mallory", TransactionalId, "tx", Write, false), // DENY ALL
            ("User:dave", Topic, "denyread", Read, false),
            ("User:dave", Topic, "denyread", Write, true),
            ("User:root", Topic, "anything", Delete, true), // super user
            ("User:root", Cluster, CLUSTER_NAME, ClusterAction, true),
            ("Group:alice", Topic, "foo", Read, false), // another principal type
        ];
        for (principal, resource_type, name, operation, expected) in rows {
            assert_eq!(
                check(&a, &acls, principal, *resource_type, name, *operation),
                *expected,
                "{principal} {resource_type:?} {name} {operation:?}"
            );
        }
    }

    #[test]
    fn no_acl_on_the_resource_follows_allow_everyone() {
        let acls = map(vec![acl(
            Topic, "guarded", Literal, "User:a", "*", Read, Allow,
        )]);
        let strict = authorizer("", false);
        let open = authorizer("", true);
        assert!(!check(&strict, &acls, "User:b", Topic, "free", Read));
        assert!(check(&open, &acls, "User:b", Topic, "free", Read));
        // ACLs exist on `guarded`, none for b: denied even when everyone is allowed elsewhere.
        assert!(!check(&open, &acls, "User:b", Topic, "guarded", Read));
        assert!(check(&open, &acls, "User:a", Topic, "guarded", Read));
    }

    #[test]
    fn the_index_is_rebuilt_only_for_a_new_acl_map() {
        let a = authorizer("", false);
        let first = map(vec![acl(Topic, "t", Literal, "User:a", "*", Read, Allow)]);
        let index = a.index(&first);
        assert!(Arc::ptr_eq(&index, &a.index(&first)));
        let second = map(vec![]);
        let rebuilt = a.index(&second);
        assert!(!Arc::ptr_eq(&index, &rebuilt));
        assert!(rebuilt.is_empty());
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn authorize_any_is_kafkas_authorize_by_resource_type() {
        let a = authorizer("User:root", false);
        let any = |acls: &Arc<AclMap>, principal: &str| {
            a.authorize_any(&a.index(acls), &caller(principal), Topic, Write)
        };
        let allow_one = map(vec![acl(Topic, "t", Literal, "User:p", "*", Write, Allow)]);
        assert!(any(&allow_one, "User:p"));
        assert!(!any(&allow_one, "User:q"));
        assert!(any(&allow_one, "User:root"));
        let denied_everywhere = map(vec![
            acl(Topic, "t", Literal, "User:p", "*", Write, Allow),
            acl(Topic, "*", Literal, "User:p", "*", Write, Deny),
        ]);
        assert!(!any(&denied_everywhere, "User:p"));
        let covered_by_prefix = map(vec![
            acl(Topic, "team-a", Literal, "User:p", "*", Write, Allow),
            acl(Topic, "team-", Prefixed, "User:p", "*", Write, Deny),
        ]);
        assert!(!any(&covered_by_prefix, "User:p"));
        let prefix_allowed = map(vec![
            acl(Topic, "team-", Prefixed, "User:*", "*", All, Allow),
            acl(Topic, "team-x", Literal, "User:p", "*", Write, Deny),
        ]);
        assert!(any(&prefix_allowed, "User:p"));
    }

    #[test]
    fn authorized_operations_are_a_bit_field_of_supported_ones() {
        let acls = map(vec![
            acl(Topic, "t", Literal, "User:a", "*", Read, Allow),
            acl(Topic, "t", Literal, "User:a", "*", AlterConfigs, Allow),
        ]);
        let a = authorizer("User:root", false);
        let index = a.index(&acls);
        let ops = |principal: &str| {
            a.authorized_operations(
                &index,
                &Caller::new(&KafkaPrincipal::parse(principal).unwrap(), None),
                Topic,
                "t",
            )
        };
        assert_eq!(
            ops("User:a"),
            (1 << Read.code())
                | (1 << Describe.code())
                | (1 << AlterConfigs.code())
                | (1 << DescribeConfigs.code())
        );
        assert_eq!(ops("User:b"), 0);
        assert_eq!(
            ops("User:root"),
            operations_bit_field(supported_operations(Topic).iter().copied())
        );
    }

    fn arb_acl() -> impl Strategy<Value = StandardAcl> {
        let names = prop::sample::select(vec!["a", "ab", "abc", "b", "*"]);
        let principals = prop::sample::select(vec!["User:p", "User:q", "User:*"]);
        let hosts = prop::sample::select(vec!["*", HOST, "10.0.0.9"]);
        let operations = prop::sample::select(vec![All, Read, Write, Describe, Alter]);
        (
            prop::sample::select(vec![Topic, Group]),
            names,
            prop::sample::select(vec![Literal, Prefixed]),
            principals,
            hosts,
            operations,
            prop::sample::select(vec![Allow, Deny]),
        )
            .prop_map(|(t, n, pt, p, h, o, perm)| acl(t, n, pt, p, h, o, perm))
    }

    proptest! {
        /// Adding a DENY never grants anything; adding an ALLOW never takes anything away.
        #[test]
        fn deny_never_grants_and_allow_never_revokes(
            acls in prop::collection::vec(arb_acl(), 0..12),
            extra in arb_acl(),
            allow_everyone in any::<bool>(),
        ) {
            let a = authorizer("", allow_everyone);
            let before = map(acls.clone());
            let mut with_extra = acls;
            with_extra.push(extra.clone());
            let after = map(with_extra);
            for principal in ["User:p", "User:q"] {
                for resource_type in [Topic, Group] {
                    for name in ["a", "ab", "abc", "b", "c"] {
                        for operation in [Read, Write, Describe, Alter, Delete] {
                            let was = check(&a, &before, principal, resource_type, name, operation);
                            let now = check(&a, &after, principal, resource_type, name, operation);
                            match extra.permission_type {
                                Deny => prop_assert!(!now || was, "a DENY granted {principal} {name} {operation:?}"),
                                Allow => if !allow_everyone {
                                    prop_assert!(now || !was, "an ALLOW revoked {principal} {name} {operation:?}");
                                },
                            }
                        }
                    }
                }
            }
        }

        /// The index answers exactly what a scan of every ACL with Kafka's rules answers.
        #[test]
        fn the_index_agrees_with_a_linear_scan(
            acls in prop::collection::vec(arb_acl(), 0..12),
            name in prop::sample::select(vec!["a", "ab", "abc", "b", "c", "*"]),
            operation in prop::sample::select(vec![Read, Write, Describe, Alter, Delete]),
        ) {
            let a = authorizer("", false);
            let set = map(acls.clone());
            let scan = {
                let covering: Vec<&StandardAcl> = acls.iter().filter(|acl| acl.resource_type == Topic && match acl.pattern_type {
                    Literal => acl.resource_name == name || acl.resource_name == WILDCARD,
                    Prefixed => name.starts_with(acl.resource_name.as_str()),
                }).collect();
                let results: Vec<Option<bool>> = covering.iter().map(|acl| find_result(&AclEntry {
                    principal: acl.principal.clone(),
                    host: acl.host.clone(),
                    operation: acl.operation,
                    permission: acl.permission_type,
                }, "User:p", HOST, operation)).collect();
                !results.contains(&Some(false)) && results.contains(&Some(true))
            };
            prop_assert_eq!(check(&a, &set, "User:p", Topic, name, operation), scan);
        }
    }
}
