//! The metadata records: one Rust struct per KRaft record Fjord writes or replays.
//!
//! Each struct mirrors the Kafka schema of the same name in
//! `metadata/src/main/resources/common/metadata/*.json` at the version [`crate::codec`] encodes
//! (fields Fjord never uses at that version, such as `IsMigratingZkBroker`, `LogDirs` or
//! `Directories`, belong to later versions and are absent). Field names are the schema's in
//! snake case. The only non-Kafka record is [`ClusterIdRecord`] (apiKey 10000), Fjord's bootstrap
//! entry that forms the cluster id (design 2).
//!
//! Sentinels follow Kafka: a partition without a leader has `leader == NO_LEADER` (-1); in a
//! [`PartitionChangeRecord`] `leader == NO_LEADER_CHANGE` (-2) and `None` lists mean "unchanged",
//! `leader_recovery_state == -1` means unchanged. [`FenceBrokerRecord`] and [`UnfenceBrokerRecord`]
//! are legacy records that Fjord decodes and replays but never writes (the controller writes
//! [`BrokerRegistrationChangeRecord`] instead, as Kafka does since 3.3).

use uuid::Uuid;

use crate::security::{
    AclOperation, AclPatternType, AclPermissionType, AclResourceType, ClientQuotaEntity,
    ScramCredential, ScramMechanism, StandardAcl,
};

/// `Leader` value of a partition that has no leader.
pub const NO_LEADER: i32 = -1;
/// `Leader` value of a [`PartitionChangeRecord`] that leaves the leader (and leader epoch) alone.
pub const NO_LEADER_CHANGE: i32 = -2;
/// `LeaderRecoveryState` value of a [`PartitionChangeRecord`] that leaves it alone.
pub const LEADER_RECOVERY_STATE_NO_CHANGE: i8 = -1;
/// `LeaderRecoveryState`: the leader was elected from the ISR, or has recovered (KIP-704).
pub const LEADER_RECOVERY_STATE_RECOVERED: i8 = 0;
/// `LeaderRecoveryState`: the leader came from an unclean election and is still recovering.
pub const LEADER_RECOVERY_STATE_RECOVERING: i8 = 1;
/// `BrokerRegistrationChangeRecord.Fenced`: the broker was fenced.
pub const FENCING_CHANGE_FENCE: i8 = 1;
/// `BrokerRegistrationChangeRecord.Fenced`: no change.
pub const FENCING_CHANGE_NONE: i8 = 0;
/// `BrokerRegistrationChangeRecord.Fenced`: the broker was unfenced.
pub const FENCING_CHANGE_UNFENCE: i8 = -1;
/// `BrokerRegistrationChangeRecord.InControlledShutdown`: no change.
pub const CONTROLLED_SHUTDOWN_CHANGE_NONE: i8 = 0;
/// `BrokerRegistrationChangeRecord.InControlledShutdown`: the broker entered controlled shutdown.
pub const CONTROLLED_SHUTDOWN_CHANGE_IN_CONTROLLED_SHUTDOWN: i8 = 1;
/// `ConfigRecord.ResourceType` of a topic (Kafka `ConfigResource.Type.TOPIC`).
pub const CONFIG_RESOURCE_TYPE_TOPIC: i8 = 2;
/// `ConfigRecord.ResourceType` of a broker (Kafka `ConfigResource.Type.BROKER`).
pub const CONFIG_RESOURCE_TYPE_BROKER: i8 = 4;
/// The feature that versions the metadata log itself.
pub const METADATA_VERSION_FEATURE: &str = "metadata.version";
/// The feature that versions KRaft (0 = static voters, as Fjord runs).
pub const KRAFT_VERSION_FEATURE: &str = "kraft.version";

/// One listener of a broker (`RegisterBrokerRecord.EndPoints[]`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BrokerEndpoint {
    /// The listener name, e.g. `PLAINTEXT`.
    pub name: String,
    pub host: String,
    pub port: u16,
    /// Kafka `SecurityProtocol` id (0 PLAINTEXT, 1 SSL, 2 SASL_PLAINTEXT, 3 SASL_SSL).
    pub security_protocol: i16,
}

/// A feature range a broker supports (`RegisterBrokerRecord.Features[]`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BrokerFeature {
    pub name: String,
    pub min_supported_version: i16,
    pub max_supported_version: i16,
}

/// `RegisterBrokerRecord` (apiKey 0): a broker registered; its epoch is the record's offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterBrokerRecord {
    pub broker_id: i32,
    /// Random per broker process: a second process with the same id is a different incarnation.
    pub incarnation_id: Uuid,
    pub broker_epoch: i64,
    pub end_points: Vec<BrokerEndpoint>,
    pub features: Vec<BrokerFeature>,
    pub rack: Option<String>,
    /// Always true when the controller registers a broker; snapshots write the current state.
    pub fenced: bool,
    pub in_controlled_shutdown: bool,
}

/// `UnregisterBrokerRecord` (apiKey 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnregisterBrokerRecord {
    pub broker_id: i32,
    pub broker_epoch: i64,
}

/// `TopicRecord` (apiKey 2): a topic was created; its partitions follow as [`PartitionRecord`]s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicRecord {
    pub name: String,
    pub topic_id: Uuid,
}

/// `PartitionRecord` (apiKey 3): the full registration of a new partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionRecord {
    pub partition_id: i32,
    pub topic_id: Uuid,
    /// In preferred order: `replicas[0]` is the preferred leader.
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub removing_replicas: Vec<i32>,
    pub adding_replicas: Vec<i32>,
    /// The leader, or [`NO_LEADER`].
    pub leader: i32,
    /// [`LEADER_RECOVERY_STATE_RECOVERED`] or [`LEADER_RECOVERY_STATE_RECOVERING`] (tagged field 0).
    pub leader_recovery_state: i8,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
}

/// `ConfigRecord` (apiKey 4): one config key of a topic or broker set or (value `None`) deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigRecord {
    /// [`CONFIG_RESOURCE_TYPE_TOPIC`] or [`CONFIG_RESOURCE_TYPE_BROKER`].
    pub resource_type: i8,
    /// Topic name, broker id as a string, or "" for the cluster-wide broker default.
    pub resource_name: String,
    pub name: String,
    pub value: Option<String>,
}

/// `PartitionChangeRecord` (apiKey 5): a change of leader, ISR or assignment of one partition.
///
/// Every field but the ids is a tagged field in Kafka's schema and is written only when it
/// differs from its default (the "unchanged" sentinel).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionChangeRecord {
    pub partition_id: i32,
    pub topic_id: Uuid,
    /// The new ISR, or `None` if unchanged.
    pub isr: Option<Vec<i32>>,
    /// The new leader, [`NO_LEADER`] for none, [`NO_LEADER_CHANGE`] if unchanged. Any other value
    /// (even the current leader) bumps the leader epoch on replay.
    pub leader: i32,
    pub replicas: Option<Vec<i32>>,
    pub removing_replicas: Option<Vec<i32>>,
    pub adding_replicas: Option<Vec<i32>>,
    /// -1 unchanged, 0 recovered, 1 recovering.
    pub leader_recovery_state: i8,
}

impl PartitionChangeRecord {
    /// A record that changes nothing yet (every field at its "unchanged" sentinel); set the
    /// fields that change. Replaying it alone still bumps the partition epoch.
    pub fn unchanged(topic_id: Uuid, partition_id: i32) -> Self {
        Self {
            partition_id,
            topic_id,
            isr: None,
            leader: NO_LEADER_CHANGE,
            replicas: None,
            removing_replicas: None,
            adding_replicas: None,
            leader_recovery_state: LEADER_RECOVERY_STATE_NO_CHANGE,
        }
    }
}

/// `FenceBrokerRecord` (apiKey 7): legacy; replayed, never written by Fjord.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FenceBrokerRecord {
    pub id: i32,
    pub epoch: i64,
}

/// `UnfenceBrokerRecord` (apiKey 8): legacy; replayed, never written by Fjord.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnfenceBrokerRecord {
    pub id: i32,
    pub epoch: i64,
}

/// `RemoveTopicRecord` (apiKey 9): the topic, its partitions and its configs are gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoveTopicRecord {
    pub topic_id: Uuid,
}

/// `FeatureLevelRecord` (apiKey 12): a finalized feature level; level 0 removes the feature
/// (except `metadata.version`, which must be at least 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeatureLevelRecord {
    pub name: String,
    pub feature_level: i16,
}

/// `ProducerIdsRecord` (apiKey 15): a block of producer ids was handed to a broker; the next
/// block starts at `next_producer_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerIdsRecord {
    pub broker_id: i32,
    pub broker_epoch: i64,
    pub next_producer_id: i64,
}

/// `BrokerRegistrationChangeRecord` (apiKey 17): fence, unfence, or controlled shutdown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerRegistrationChangeRecord {
    pub broker_id: i32,
    pub broker_epoch: i64,
    /// [`FENCING_CHANGE_FENCE`] (1), [`FENCING_CHANGE_NONE`] (0) or [`FENCING_CHANGE_UNFENCE`] (-1).
    pub fenced: i8,
    /// [`CONTROLLED_SHUTDOWN_CHANGE_NONE`] (0) or
    /// [`CONTROLLED_SHUTDOWN_CHANGE_IN_CONTROLLED_SHUTDOWN`] (1).
    pub in_controlled_shutdown: i8,
}

/// `UserScramCredentialRecord` (apiKey 11): a user's SCRAM credential for one mechanism was
/// created or replaced (AlterUserScramCredentials upsertion).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserScramCredentialRecord {
    pub name: String,
    /// [`ScramMechanism::code`] (1 SCRAM-SHA-256, 2 SCRAM-SHA-512).
    pub mechanism: i8,
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: i32,
}

impl UserScramCredentialRecord {
    /// The record that stores `credential` for (`name`, `mechanism`).
    pub fn new(name: &str, mechanism: ScramMechanism, credential: &ScramCredential) -> Self {
        Self {
            name: name.to_string(),
            mechanism: mechanism.code(),
            salt: credential.salt.clone(),
            stored_key: credential.stored_key.clone(),
            server_key: credential.server_key.clone(),
            iterations: credential.iterations,
        }
    }

    /// The credential it stores.
    pub fn credential(&self) -> ScramCredential {
        ScramCredential {
            salt: self.salt.clone(),
            stored_key: self.stored_key.clone(),
            server_key: self.server_key.clone(),
            iterations: self.iterations,
        }
    }
}

/// One `ClientQuotaRecord.Entity[]` element: an entity type and its name (`None` = the
/// type's default entity).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientQuotaEntityData {
    pub entity_type: String,
    pub entity_name: Option<String>,
}

/// `ClientQuotaRecord` (apiKey 14): one quota key of one entity set, or (`remove`) deleted.
#[derive(Clone, Debug)]
pub struct ClientQuotaRecord {
    pub entity: Vec<ClientQuotaEntityData>,
    pub key: String,
    /// Ignored when `remove` is set.
    pub value: f64,
    pub remove: bool,
}

impl ClientQuotaRecord {
    /// The record's entity as the image keys it; `None` if a type repeats or the list is
    /// empty.
    pub fn entity_map(&self) -> Option<ClientQuotaEntity> {
        let mut out = ClientQuotaEntity::new();
        for e in &self.entity {
            if out
                .insert(e.entity_type.clone(), e.entity_name.clone())
                .is_some()
            {
                return None;
            }
        }
        (!out.is_empty()).then_some(out)
    }

    /// The entity list of a record for `entity` (in entity type order).
    pub fn entity_data(entity: &ClientQuotaEntity) -> Vec<ClientQuotaEntityData> {
        entity
            .iter()
            .map(|(t, n)| ClientQuotaEntityData {
                entity_type: t.clone(),
                entity_name: n.clone(),
            })
            .collect()
    }
}

/// Equality compares `value` by its bits, so that the codec's round trip is exact (NaN
/// included) and [`MetadataRecord`] can stay `Eq`.
impl PartialEq for ClientQuotaRecord {
    fn eq(&self, other: &Self) -> bool {
        self.entity == other.entity
            && self.key == other.key
            && self.value.to_bits() == other.value.to_bits()
            && self.remove == other.remove
    }
}

impl Eq for ClientQuotaRecord {}

/// `AccessControlEntryRecord` (apiKey 18): an ACL was created (CreateAcls). The codes are
/// Kafka's (see [`crate::security`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessControlEntryRecord {
    pub id: Uuid,
    pub resource_type: i8,
    pub resource_name: String,
    pub pattern_type: i8,
    pub principal: String,
    pub host: String,
    pub operation: i8,
    pub permission_type: i8,
}

impl AccessControlEntryRecord {
    /// The record that creates `acl` under `id`.
    pub fn new(id: Uuid, acl: &StandardAcl) -> Self {
        Self {
            id,
            resource_type: acl.resource_type.code(),
            resource_name: acl.resource_name.clone(),
            pattern_type: acl.pattern_type.code(),
            principal: acl.principal.clone(),
            host: acl.host.clone(),
            operation: acl.operation.code(),
            permission_type: acl.permission_type.code(),
        }
    }

    /// The ACL, or the name of the first field whose code is not a concrete Kafka value.
    pub fn acl(&self) -> Result<StandardAcl, &'static str> {
        Ok(StandardAcl {
            resource_type: AclResourceType::from_code(self.resource_type).ok_or("ResourceType")?,
            resource_name: self.resource_name.clone(),
            pattern_type: AclPatternType::from_code(self.pattern_type).ok_or("PatternType")?,
            principal: self.principal.clone(),
            host: self.host.clone(),
            operation: AclOperation::from_code(self.operation).ok_or("Operation")?,
            permission_type: AclPermissionType::from_code(self.permission_type)
                .ok_or("PermissionType")?,
        })
    }
}

/// `RemoveAccessControlEntryRecord` (apiKey 19): the ACL with this id was deleted (DeleteAcls).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoveAccessControlEntryRecord {
    pub id: Uuid,
}

/// `RemoveUserScramCredentialRecord` (apiKey 22): a user's credential for one mechanism was
/// deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoveUserScramCredentialRecord {
    pub name: String,
    pub mechanism: i8,
}

/// `FjordClusterIdRecord` (Fjord-only apiKey 10000): the cluster id, formed once by the first
/// Raft leader of an empty log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterIdRecord {
    pub cluster_id: String,
}

/// One metadata record; a Raft entry's payload is a list of them, applied atomically.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetadataRecord {
    RegisterBroker(RegisterBrokerRecord),
    UnregisterBroker(UnregisterBrokerRecord),
    Topic(TopicRecord),
    Partition(PartitionRecord),
    Config(ConfigRecord),
    PartitionChange(PartitionChangeRecord),
    FenceBroker(FenceBrokerRecord),
    UnfenceBroker(UnfenceBrokerRecord),
    RemoveTopic(RemoveTopicRecord),
    FeatureLevel(FeatureLevelRecord),
    ProducerIds(ProducerIdsRecord),
    BrokerRegistrationChange(BrokerRegistrationChangeRecord),
    /// `NoOpRecord` (apiKey 20): written when idle so observers see the log advance.
    NoOp,
    ClusterId(ClusterIdRecord),
    UserScramCredential(UserScramCredentialRecord),
    ClientQuota(ClientQuotaRecord),
    AccessControlEntry(AccessControlEntryRecord),
    RemoveAccessControlEntry(RemoveAccessControlEntryRecord),
    RemoveUserScramCredential(RemoveUserScramCredentialRecord),
}

/// The apiKey of each record, as in Kafka's `MetadataRecordType` (plus Fjord's 10000).
pub mod api_key {
    pub const REGISTER_BROKER: u16 = 0;
    pub const UNREGISTER_BROKER: u16 = 1;
    pub const TOPIC: u16 = 2;
    pub const PARTITION: u16 = 3;
    pub const CONFIG: u16 = 4;
    pub const PARTITION_CHANGE: u16 = 5;
    pub const FENCE_BROKER: u16 = 7;
    pub const UNFENCE_BROKER: u16 = 8;
    pub const REMOVE_TOPIC: u16 = 9;
    pub const USER_SCRAM_CREDENTIAL: u16 = 11;
    pub const FEATURE_LEVEL: u16 = 12;
    pub const CLIENT_QUOTA: u16 = 14;
    pub const PRODUCER_IDS: u16 = 15;
    pub const BROKER_REGISTRATION_CHANGE: u16 = 17;
    pub const ACCESS_CONTROL_ENTRY: u16 = 18;
    pub const REMOVE_ACCESS_CONTROL_ENTRY: u16 = 19;
    pub const NO_OP: u16 = 20;
    pub const REMOVE_USER_SCRAM_CREDENTIAL: u16 = 22;
    pub const FJORD_CLUSTER_ID: u16 = 10000;
}

impl MetadataRecord {
    /// The record's apiKey (its type in the `ApiMessageAndVersion` frame).
    pub fn api_key(&self) -> u16 {
        match self {
            MetadataRecord::RegisterBroker(_) => api_key::REGISTER_BROKER,
            MetadataRecord::UnregisterBroker(_) => api_key::UNREGISTER_BROKER,
            MetadataRecord::Topic(_) => api_key::TOPIC,
            MetadataRecord::Partition(_) => api_key::PARTITION,
            MetadataRecord::Config(_) => api_key::CONFIG,
            MetadataRecord::PartitionChange(_) => api_key::PARTITION_CHANGE,
            MetadataRecord::FenceBroker(_) => api_key::FENCE_BROKER,
            MetadataRecord::UnfenceBroker(_) => api_key::UNFENCE_BROKER,
            MetadataRecord::RemoveTopic(_) => api_key::REMOVE_TOPIC,
            MetadataRecord::FeatureLevel(_) => api_key::FEATURE_LEVEL,
            MetadataRecord::ProducerIds(_) => api_key::PRODUCER_IDS,
            MetadataRecord::BrokerRegistrationChange(_) => api_key::BROKER_REGISTRATION_CHANGE,
            MetadataRecord::NoOp => api_key::NO_OP,
            MetadataRecord::ClusterId(_) => api_key::FJORD_CLUSTER_ID,
            MetadataRecord::UserScramCredential(_) => api_key::USER_SCRAM_CREDENTIAL,
            MetadataRecord::ClientQuota(_) => api_key::CLIENT_QUOTA,
            MetadataRecord::AccessControlEntry(_) => api_key::ACCESS_CONTROL_ENTRY,
            MetadataRecord::RemoveAccessControlEntry(_) => api_key::REMOVE_ACCESS_CONTROL_ENTRY,
            MetadataRecord::RemoveUserScramCredential(_) => api_key::REMOVE_USER_SCRAM_CREDENTIAL,
        }
    }

    /// The Kafka schema name of the record, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            MetadataRecord::RegisterBroker(_) => "RegisterBrokerRecord",
            MetadataRecord::UnregisterBroker(_) => "UnregisterBrokerRecord",
            MetadataRecord::Topic(_) => "TopicRecord",
            MetadataRecord::Partition(_) => "PartitionRecord",
            MetadataRecord::Config(_) => "ConfigRecord",
            MetadataRecord::PartitionChange(_) => "PartitionChangeRecord",
            MetadataRecord::FenceBroker(_) => "FenceBrokerRecord",
            MetadataRecord::UnfenceBroker(_) => "UnfenceBrokerRecord",
            MetadataRecord::RemoveTopic(_) => "RemoveTopicRecord",
            MetadataRecord::FeatureLevel(_) => "FeatureLevelRecord",
            MetadataRecord::ProducerIds(_) => "ProducerIdsRecord",
            MetadataRecord::BrokerRegistrationChange(_) => "BrokerRegistrationChangeRecord",
            MetadataRecord::NoOp => "NoOpRecord",
            MetadataRecord::ClusterId(_) => "FjordClusterIdRecord",
            MetadataRecord::UserScramCredential(_) => "UserScramCredentialRecord",
            MetadataRecord::ClientQuota(_) => "ClientQuotaRecord",
            MetadataRecord::AccessControlEntry(_) => "AccessControlEntryRecord",
            MetadataRecord::RemoveAccessControlEntry(_) => "RemoveAccessControlEntryRecord",
            MetadataRecord::RemoveUserScramCredential(_) => "RemoveUserScramCredentialRecord",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_partition_change_uses_kafka_sentinels() {
        let id = Uuid::from_u128(7);
        let r = PartitionChangeRecord::unchanged(id, 3);
        assert_eq!(r.leader, -2);
        assert_eq!(r.leader_recovery_state, -1);
        assert_eq!(r.isr, None);
        assert_eq!(r.replicas, None);
        assert_eq!((r.topic_id, r.partition_id), (id, 3));
    }

    #[test]
    fn api_keys_match_kafka_metadata_record_type() {
        assert_eq!(MetadataRecord::NoOp.api_key(), 20);
        let r = MetadataRecord::BrokerRegistrationChange(BrokerRegistrationChangeRecord {
            broker_id: 1,
            broker_epoch: 2,
            fenced: 0,
            in_controlled_shutdown: 0,
        });
        assert_eq!(r.api_key(), 17);
        assert_eq!(r.name(), "BrokerRegistrationChangeRecord");
        let c = MetadataRecord::ClusterId(ClusterIdRecord {
            cluster_id: "x".into(),
        });
        assert_eq!(c.api_key(), 10000);
    }
}
