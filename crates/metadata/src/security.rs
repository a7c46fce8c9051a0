//! Security metadata held in the image (issue 9, `docs/security-design.md`): ACLs, SCRAM
//! credentials and client quotas, under Kafka's names and with Kafka's numeric codes (the
//! values of `org.apache.kafka.common.resource.ResourceType`, `PatternType`,
//! `acl.AclOperation`, `acl.AclPermissionType` and `clients.admin.ScramMechanism`), so the
//! records, the wire APIs (CreateAcls, DescribeUserScramCredentials, ...) and the image all
//! speak the same numbers.
//!
//! Kafka keeps these in `AclsImage`, `ScramImage` and `ClientQuotasImage`; here they are three
//! fields of [`crate::MetadataImage`].

use std::collections::BTreeMap;

/// Kafka `ResourceType` codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AclResourceType {
    Topic,
    Group,
    Cluster,
    TransactionalId,
    DelegationToken,
    User,
}

impl AclResourceType {
    pub const ANY_CODE: i8 = 1;

    pub fn code(self) -> i8 {
        match self {
            Self::Topic => 2,
            Self::Group => 3,
            Self::Cluster => 4,
            Self::TransactionalId => 5,
            Self::DelegationToken => 6,
            Self::User => 7,
        }
    }

    /// A concrete resource type from its code (`ANY` and `UNKNOWN` are not one).
    pub fn from_code(code: i8) -> Option<Self> {
        Some(match code {
            2 => Self::Topic,
            3 => Self::Group,
            4 => Self::Cluster,
            5 => Self::TransactionalId,
            6 => Self::DelegationToken,
            7 => Self::User,
            _ => return None,
        })
    }
}

/// Kafka `PatternType` codes of a stored ACL (filters may also use ANY = 1 and MATCH = 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AclPatternType {
    /// The resource name as written; `*` is the wildcard that matches every name.
    Literal,
    /// Every resource whose name starts with the resource name.
    Prefixed,
}

impl AclPatternType {
    pub const ANY_CODE: i8 = 1;
    pub const MATCH_CODE: i8 = 2;

    pub fn code(self) -> i8 {
        match self {
            Self::Literal => 3,
            Self::Prefixed => 4,
        }
    }

    pub fn from_code(code: i8) -> Option<Self> {
        match code {
            3 => Some(Self::Literal),
            4 => Some(Self::Prefixed),
            _ => None,
        }
    }
}

/// Kafka `AclOperation` codes (a stored ACL never holds ANY = 1 or UNKNOWN = 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AclOperation {
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
    CreateTokens,
    DescribeTokens,
    TwoPhaseCommit,
}

impl AclOperation {
    pub const ANY_CODE: i8 = 1;

    pub fn code(self) -> i8 {
        match self {
            Self::All => 2,
            Self::Read => 3,
            Self::Write => 4,
            Self::Create => 5,
            Self::Delete => 6,
            Self::Alter => 7,
            Self::Describe => 8,
            Self::ClusterAction => 9,
            Self::DescribeConfigs => 10,
            Self::AlterConfigs => 11,
            Self::IdempotentWrite => 12,
            Self::CreateTokens => 13,
            Self::DescribeTokens => 14,
            Self::TwoPhaseCommit => 15,
        }
    }

    pub fn from_code(code: i8) -> Option<Self> {
        Some(match code {
            2 => Self::All,
            3 => Self::Read,
            4 => Self::Write,
            5 => Self::Create,
            6 => Self::Delete,
            7 => Self::Alter,
            8 => Self::Describe,
            9 => Self::ClusterAction,
            10 => Self::DescribeConfigs,
            11 => Self::AlterConfigs,
            12 => Self::IdempotentWrite,
            13 => Self::CreateTokens,
            14 => Self::DescribeTokens,
            15 => Self::TwoPhaseCommit,
            _ => return None,
        })
    }
}

/// Kafka `AclPermissionType` codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AclPermissionType {
    Deny,
    Allow,
}

impl AclPermissionType {
    pub const ANY_CODE: i8 = 1;

    pub fn code(self) -> i8 {
        match self {
            Self::Deny => 2,
            Self::Allow => 3,
        }
    }

    pub fn from_code(code: i8) -> Option<Self> {
        match code {
            2 => Some(Self::Deny),
            3 => Some(Self::Allow),
            _ => None,
        }
    }
}

/// One ACL as stored (Kafka `StandardAcl`, the body of an `AccessControlEntryRecord`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StandardAcl {
    pub resource_type: AclResourceType,
    /// `*` with [`AclPatternType::Literal`] is the wildcard resource.
    pub resource_name: String,
    pub pattern_type: AclPatternType,
    /// `Type:name`, e.g. `User:alice`; `User:*` matches every user.
    pub principal: String,
    /// A client IP address as text, or `*` for every host.
    pub host: String,
    pub operation: AclOperation,
    pub permission_type: AclPermissionType,
}

/// Kafka `ScramMechanism` codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScramMechanism {
    ScramSha256,
    ScramSha512,
}

impl ScramMechanism {
    pub fn code(self) -> i8 {
        match self {
            Self::ScramSha256 => 1,
            Self::ScramSha512 => 2,
        }
    }

    pub fn from_code(code: i8) -> Option<Self> {
        match code {
            1 => Some(Self::ScramSha256),
            2 => Some(Self::ScramSha512),
            _ => None,
        }
    }

    /// The SASL mechanism name (`SCRAM-SHA-256`, `SCRAM-SHA-512`).
    pub fn mechanism_name(self) -> &'static str {
        match self {
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_mechanism_name(name: &str) -> Option<Self> {
        match name {
            "SCRAM-SHA-256" => Some(Self::ScramSha256),
            "SCRAM-SHA-512" => Some(Self::ScramSha512),
            _ => None,
        }
    }

    /// Kafka's lowest accepted iteration count (`ScramMechanism.minIterations`).
    pub const ITERATIONS_MIN: i32 = 4096;
    /// Kafka's highest accepted iteration count (`ScramFormatter` limit).
    pub const ITERATIONS_MAX: i32 = 16384;

    fn hmac_algorithm(self) -> ring::hmac::Algorithm {
        match self {
            Self::ScramSha256 => ring::hmac::HMAC_SHA256,
            Self::ScramSha512 => ring::hmac::HMAC_SHA512,
        }
    }

    /// RFC 5802 `H(data)`.
    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        let algorithm = match self {
            Self::ScramSha256 => &ring::digest::SHA256,
            Self::ScramSha512 => &ring::digest::SHA512,
        };
        ring::digest::digest(algorithm, data).as_ref().to_vec()
    }

    /// RFC 5802 `HMAC(key, data)`.
    pub fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        let key = ring::hmac::Key::new(self.hmac_algorithm(), key);
        ring::hmac::sign(&key, data).as_ref().to_vec()
    }

    /// RFC 5802 `SaltedPassword := Hi(Normalize(password), salt, i)` (PBKDF2 with this
    /// mechanism's HMAC). `iterations` of 0 is treated as 1. Passwords are used as given
    /// (Kafka does not SASLprep them either).
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let algorithm = match self {
            Self::ScramSha256 => ring::pbkdf2::PBKDF2_HMAC_SHA256,
            Self::ScramSha512 => ring::pbkdf2::PBKDF2_HMAC_SHA512,
        };
        let mut out = vec![0u8; self.hash(b"").len()];
        let iterations = std::num::NonZeroU32::new(iterations).unwrap_or(std::num::NonZeroU32::MIN);
        ring::pbkdf2::derive(algorithm, iterations, salt, password, &mut out);
        out
    }
}

/// One user's salted SCRAM credential for one mechanism (RFC 5802 `StoredKey`/`ServerKey`; the
/// body of a `UserScramCredentialRecord`). The password itself is never stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: i32,
}

impl ScramCredential {
    /// The stored credential for a salted password (RFC 5802: `ClientKey := HMAC(SaltedPassword,
    /// "Client Key")`, `StoredKey := H(ClientKey)`, `ServerKey := HMAC(SaltedPassword, "Server
    /// Key")`), as Kafka's controller computes it from an AlterUserScramCredentials upsertion.
    pub fn from_salted_password(
        mechanism: ScramMechanism,
        salt: &[u8],
        salted_password: &[u8],
        iterations: i32,
    ) -> Self {
        let client_key = mechanism.hmac(salted_password, b"Client Key");
        Self {
            salt: salt.to_vec(),
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(salted_password, b"Server Key"),
            iterations,
        }
    }

    /// The stored credential for a password (what `fjord user create` and `--secure` send as
    /// salted password, and tests use).
    pub fn from_password(
        mechanism: ScramMechanism,
        password: &str,
        salt: &[u8],
        iterations: i32,
    ) -> Self {
        let salted = mechanism.salted_password(
            password.as_bytes(),
            salt,
            u32::try_from(iterations).unwrap_or(1),
        );
        Self::from_salted_password(mechanism, salt, &salted, iterations)
    }
}

/// Kafka's quota entity types (`ClientQuotaEntity.USER`, `CLIENT_ID`, `IP`).
pub const QUOTA_ENTITY_USER: &str = "user";
pub const QUOTA_ENTITY_CLIENT_ID: &str = "client-id";
pub const QUOTA_ENTITY_IP: &str = "ip";

/// Kafka's quota config keys (`QuotaConfig`).
pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
pub const REQUEST_PERCENTAGE: &str = "request_percentage";
pub const CONTROLLER_MUTATION_RATE: &str = "controller_mutation_rate";
pub const CONNECTION_CREATION_RATE: &str = "connection_creation_rate";

/// A client quota entity: entity type -> name, where `None` is the type's default entity
/// (Kafka `ClientQuotaEntity`; `{user: alice, client-id: None}` is "alice, any client id").
/// At most one entry per type.
pub type ClientQuotaEntity = BTreeMap<String, Option<String>>;

/// Quota key (`producer_byte_rate`, ...) -> value, for one entity. An entity without keys is
/// absent from the image.
pub type ClientQuotaValues = BTreeMap<String, f64>;

/// Kafka `KafkaPrincipal`: `Type:name`, e.g. `User:alice`; `User:ANONYMOUS` for a connection
/// that did not authenticate.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KafkaPrincipal {
    pub principal_type: String,
    pub name: String,
}

impl KafkaPrincipal {
    pub const USER_TYPE: &'static str = "User";

    pub fn user(name: impl Into<String>) -> Self {
        Self {
            principal_type: Self::USER_TYPE.to_string(),
            name: name.into(),
        }
    }

    /// Kafka `KafkaPrincipal.ANONYMOUS`.
    pub fn anonymous() -> Self {
        Self::user("ANONYMOUS")
    }

    /// Parses `Type:name` (the name may contain `:`).
    pub fn parse(text: &str) -> Option<Self> {
        let (principal_type, name) = text.split_once(':')?;
        if principal_type.is_empty() {
            return None;
        }
        Some(Self {
            principal_type: principal_type.to_string(),
            name: name.to_string(),
        })
    }
}

impl std::fmt::Display for KafkaPrincipal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.principal_type, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_match_kafka() {
        for code in 2..=7 {
            let t = AclResourceType::from_code(code).expect("resource type");
            assert_eq!(t.code(), code);
        }
        assert_eq!(AclResourceType::from_code(1), None);
        for code in 2..=15 {
            let op = AclOperation::from_code(code).expect("operation");
            assert_eq!(op.code(), code);
        }
        assert_eq!(AclOperation::Describe.code(), 8);
        assert_eq!(AclPatternType::Prefixed.code(), 4);
        assert_eq!(AclPermissionType::Allow.code(), 3);
        assert_eq!(
            ScramMechanism::from_mechanism_name("SCRAM-SHA-512"),
            Some(ScramMechanism::ScramSha512)
        );
        assert_eq!(ScramMechanism::ScramSha256.code(), 1);
    }

    /// RFC 7677's SCRAM-SHA-256 example: user "user", password "pencil", 4096 iterations, salt
    /// `W22ZaJ0SNY7soEsUEjb6gQ==`; the server signature it proves is derived from these keys.
    #[test]
    fn scram_sha256_keys_match_rfc7677() {
        let salt = [
            0x5b, 0x6d, 0x99, 0x68, 0x9d, 0x12, 0x35, 0x8e, 0xec, 0xa0, 0x4b, 0x14, 0x12, 0x36,
            0xfa, 0x81,
        ];
        let credential =
            ScramCredential::from_password(ScramMechanism::ScramSha256, "pencil", &salt, 4096);
        let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let server_signature =
            ScramMechanism::ScramSha256.hmac(&credential.server_key, auth_message.as_bytes());
        // v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=
        let expected = [
            0xea, 0xba, 0xe2, 0x4d, 0x10, 0x62, 0xdb, 0x75, 0xa9, 0x45, 0x1f, 0xf0, 0xb6, 0xea,
            0x7e, 0x98, 0xc8, 0x54, 0x65, 0x49, 0xff, 0x74, 0x1e, 0x67, 0x2d, 0x32, 0x51, 0xb2,
            0x39, 0x7d, 0xe4, 0x6e,
        ];
        assert_eq!(server_signature, expected);
        assert_eq!(credential.stored_key.len(), 32);
        let sha512 =
            ScramCredential::from_password(ScramMechanism::ScramSha512, "pencil", &salt, 4096);
        assert_eq!(sha512.server_key.len(), 64);
        assert_ne!(sha512.stored_key, sha512.server_key);
    }
}
