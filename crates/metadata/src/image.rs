//! `MetadataImage`: the immutable cluster metadata at one offset of the metadata log (Kafka
//! `image/MetadataImage.java`).
//!
//! An image is built only by [`crate::MetadataDelta::apply`] and shared as `Arc<MetadataImage>`:
//! handlers hold the one they started with while the `MetadataLoader` publishes the next. Topics
//! are `Arc<TopicImage>` so the next image shares every topic a delta did not touch.
//!
//! Epoch rules (replay computes them, design 3.1): a partition's `partition_epoch` grows by one
//! per [`PartitionChangeRecord`]; its `leader_epoch` grows by one whenever the record's `Leader`
//! is not -2 (`NO_LEADER_CHANGE`), even when it names the current leader. A broker's `epoch` is
//! the offset of its `RegisterBrokerRecord`.

use std::collections::BTreeMap;
use std::sync::Arc;

use uuid::Uuid;

use crate::records::{
    BrokerEndpoint, PartitionChangeRecord, PartitionRecord, CONFIG_RESOURCE_TYPE_BROKER,
    CONFIG_RESOURCE_TYPE_TOPIC, LEADER_RECOVERY_STATE_NO_CHANGE, LEADER_RECOVERY_STATE_RECOVERED,
    LEADER_RECOVERY_STATE_RECOVERING, NO_LEADER, NO_LEADER_CHANGE,
};
use crate::security::{
    ClientQuotaEntity, ClientQuotaValues, ScramCredential, ScramMechanism, StandardAcl,
};

/// The cluster metadata at `offset` (the last applied record's offset, -1 when empty).
#[derive(Clone, Debug, PartialEq)]
pub struct MetadataImage {
    /// Offset (Raft index) of the last entry applied; -1 for the empty image.
    pub offset: i64,
    /// Metadata leader epoch (Raft term) of that entry; -1 for the empty image.
    pub epoch: i32,
    /// Set by the bootstrap `FjordClusterIdRecord`.
    pub cluster_id: Option<String>,
    /// Finalized feature levels (`metadata.version`, ...); features at level 0 are absent.
    pub features: BTreeMap<String, i16>,
    /// Registered brokers, fenced or not.
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    pub topics: BTreeMap<Uuid, Arc<TopicImage>>,
    /// Topic name -> id; always the inverse of `topics`.
    pub topic_ids_by_name: BTreeMap<String, Uuid>,
    /// Dynamic configs per resource; a resource with no keys is absent.
    pub configs: BTreeMap<ConfigResource, BTreeMap<String, String>>,
    /// The first producer id of the next block, -1 before any block was allocated.
    pub next_producer_id: i64,
    /// ACLs by id (`AccessControlEntryRecord.Id`; Kafka `AclsImage`). Shared between images
    /// until a delta changes them.
    pub acls: Arc<BTreeMap<Uuid, StandardAcl>>,
    /// SCRAM credentials by (user, mechanism) (Kafka `ScramImage`).
    pub scram_credentials: Arc<BTreeMap<(String, ScramMechanism), ScramCredential>>,
    /// Client quotas by entity (Kafka `ClientQuotasImage`); an entity without keys is absent.
    pub client_quotas: Arc<BTreeMap<ClientQuotaEntity, ClientQuotaValues>>,
}

/// One registered broker (Kafka `BrokerRegistration`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerRegistration {
    pub id: i32,
    pub incarnation_id: Uuid,
    /// The broker epoch: offset of the record that registered it.
    pub epoch: i64,
    /// Listeners in registration order.
    pub endpoints: Vec<BrokerEndpoint>,
    /// Feature name -> (min, max) supported level.
    pub supported_features: BTreeMap<String, FeatureRange>,
    pub rack: Option<String>,
    pub fenced: bool,
    pub in_controlled_shutdown: bool,
}

/// A broker's supported range of one feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeatureRange {
    pub min: i16,
    pub max: i16,
}

impl BrokerRegistration {
    /// The endpoint of the listener named `listener_name`, if the broker has one.
    pub fn endpoint(&self, listener_name: &str) -> Option<&BrokerEndpoint> {
        self.endpoints.iter().find(|e| e.name == listener_name)
    }
}

/// One topic and its partitions (Kafka `TopicImage`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicImage {
    pub name: String,
    pub id: Uuid,
    pub partitions: BTreeMap<i32, PartitionRegistration>,
}

/// KIP-704 leader recovery state of a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LeaderRecoveryState {
    /// Leader elected from the ISR, or recovered from an unclean election.
    Recovered,
    /// Leader elected uncleanly and still recovering: it expands no ISR.
    Recovering,
}

impl LeaderRecoveryState {
    /// From the records' int8 value (0 or 1); `None` for anything else.
    pub fn from_i8(value: i8) -> Option<Self> {
        match value {
            LEADER_RECOVERY_STATE_RECOVERED => Some(Self::Recovered),
            LEADER_RECOVERY_STATE_RECOVERING => Some(Self::Recovering),
            _ => None,
        }
    }

    /// The records' int8 value.
    pub fn as_i8(self) -> i8 {
        match self {
            Self::Recovered => LEADER_RECOVERY_STATE_RECOVERED,
            Self::Recovering => LEADER_RECOVERY_STATE_RECOVERING,
        }
    }

    /// Kafka `LeaderRecoveryState.changeTo`: -1 keeps the state, 0/1 set it. Other values are
    /// refused by replay before a merge; here they keep the state.
    pub fn change_to(self, value: i8) -> Self {
        if value == LEADER_RECOVERY_STATE_NO_CHANGE {
            return self;
        }
        Self::from_i8(value).unwrap_or(self)
    }
}

/// The replica assignment, ISR, leader and epochs of one partition (Kafka `PartitionRegistration`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionRegistration {
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub removing_replicas: Vec<i32>,
    pub adding_replicas: Vec<i32>,
    /// Leader broker id or -1 (`NO_LEADER`).
    pub leader: i32,
    pub leader_recovery_state: LeaderRecoveryState,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
}

impl PartitionRegistration {
    /// The registration a `PartitionRecord` describes, or `None` if its leader recovery state is
    /// not 0 or 1.
    pub fn from_record(record: &PartitionRecord) -> Option<Self> {
        Some(Self {
            replicas: record.replicas.clone(),
            isr: record.isr.clone(),
            removing_replicas: record.removing_replicas.clone(),
            adding_replicas: record.adding_replicas.clone(),
            leader: record.leader,
            leader_recovery_state: LeaderRecoveryState::from_i8(record.leader_recovery_state)?,
            leader_epoch: record.leader_epoch,
            partition_epoch: record.partition_epoch,
        })
    }

    /// The `PartitionRecord` that recreates this registration (snapshots, migration).
    pub fn to_record(&self, topic_id: Uuid, partition_id: i32) -> PartitionRecord {
        PartitionRecord {
            partition_id,
            topic_id,
            replicas: self.replicas.clone(),
            isr: self.isr.clone(),
            removing_replicas: self.removing_replicas.clone(),
            adding_replicas: self.adding_replicas.clone(),
            leader: self.leader,
            leader_recovery_state: self.leader_recovery_state.as_i8(),
            leader_epoch: self.leader_epoch,
            partition_epoch: self.partition_epoch,
        }
    }

    /// Kafka `PartitionRegistration.merge`: the registration after `record`. Lists that are
    /// `None` stay; the partition epoch grows by one; a `Leader` other than -2 sets the leader
    /// (-1 = none) and grows the leader epoch by one.
    pub fn merge(&self, record: &PartitionChangeRecord) -> PartitionRegistration {
        let (leader, leader_epoch) = if record.leader == NO_LEADER_CHANGE {
            (self.leader, self.leader_epoch)
        } else {
            (record.leader, self.leader_epoch.wrapping_add(1))
        };
        PartitionRegistration {
            replicas: record
                .replicas
                .clone()
                .unwrap_or_else(|| self.replicas.clone()),
            isr: record.isr.clone().unwrap_or_else(|| self.isr.clone()),
            removing_replicas: record
                .removing_replicas
                .clone()
                .unwrap_or_else(|| self.removing_replicas.clone()),
            adding_replicas: record
                .adding_replicas
                .clone()
                .unwrap_or_else(|| self.adding_replicas.clone()),
            leader,
            leader_recovery_state: self
                .leader_recovery_state
                .change_to(record.leader_recovery_state),
            leader_epoch,
            partition_epoch: self.partition_epoch.wrapping_add(1),
        }
    }

    /// Whether `broker_id` is one of the replicas.
    pub fn is_replica(&self, broker_id: i32) -> bool {
        self.replicas.contains(&broker_id)
    }

    /// Whether the partition has a leader.
    pub fn has_leader(&self) -> bool {
        self.leader != NO_LEADER
    }

    /// Replicas on brokers that are not registered or are fenced, in replica order (the
    /// Metadata response's `OfflineReplicas`; Kafka `KRaftMetadataCache.getOfflineReplicas`
    /// without the listener and log-dir checks).
    pub fn offline_replicas(&self, image: &MetadataImage) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|id| image.brokers.get(id).is_none_or(|b| b.fenced))
            .collect()
    }
}

/// The kind of a config resource (Kafka `ConfigResource.Type`, only the two Fjord stores).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConfigResourceType {
    Topic,
    Broker,
}

impl ConfigResourceType {
    /// From `ConfigRecord.ResourceType` (2 topic, 4 broker).
    pub fn from_i8(value: i8) -> Option<Self> {
        match value {
            CONFIG_RESOURCE_TYPE_TOPIC => Some(Self::Topic),
            CONFIG_RESOURCE_TYPE_BROKER => Some(Self::Broker),
            _ => None,
        }
    }

    /// `ConfigRecord.ResourceType` value.
    pub fn as_i8(self) -> i8 {
        match self {
            Self::Topic => CONFIG_RESOURCE_TYPE_TOPIC,
            Self::Broker => CONFIG_RESOURCE_TYPE_BROKER,
        }
    }
}

/// A config resource: a topic by name, or a broker by id string ("" = cluster default).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConfigResource {
    pub resource_type: ConfigResourceType,
    pub name: String,
}

impl ConfigResource {
    pub fn topic(name: impl Into<String>) -> Self {
        Self {
            resource_type: ConfigResourceType::Topic,
            name: name.into(),
        }
    }

    pub fn broker(name: impl Into<String>) -> Self {
        Self {
            resource_type: ConfigResourceType::Broker,
            name: name.into(),
        }
    }
}

impl Default for MetadataImage {
    fn default() -> Self {
        Self::empty()
    }
}

impl MetadataImage {
    /// The image before any record: offset and epoch -1, no producer id block yet.
    pub fn empty() -> Self {
        Self {
            offset: -1,
            epoch: -1,
            cluster_id: None,
            features: BTreeMap::new(),
            brokers: BTreeMap::new(),
            topics: BTreeMap::new(),
            topic_ids_by_name: BTreeMap::new(),
            configs: BTreeMap::new(),
            next_producer_id: -1,
            acls: Arc::default(),
            scram_credentials: Arc::default(),
            client_quotas: Arc::default(),
        }
    }

    /// Whether no record was ever applied.
    pub fn is_empty(&self) -> bool {
        *self == Self::empty()
    }

    pub fn topic(&self, topic_id: &Uuid) -> Option<&Arc<TopicImage>> {
        self.topics.get(topic_id)
    }

    pub fn topic_by_name(&self, name: &str) -> Option<&Arc<TopicImage>> {
        self.topic_ids_by_name
            .get(name)
            .and_then(|id| self.topics.get(id))
    }

    pub fn partition(&self, topic_id: &Uuid, partition_id: i32) -> Option<&PartitionRegistration> {
        self.topics
            .get(topic_id)
            .and_then(|t| t.partitions.get(&partition_id))
    }

    pub fn broker(&self, broker_id: i32) -> Option<&BrokerRegistration> {
        self.brokers.get(&broker_id)
    }

    /// The endpoint of `listener_name` on broker `broker_id`, if registered with that listener.
    pub fn broker_endpoint(&self, broker_id: i32, listener_name: &str) -> Option<&BrokerEndpoint> {
        self.brokers
            .get(&broker_id)
            .and_then(|b| b.endpoint(listener_name))
    }

    /// Registered, unfenced brokers in id order.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerRegistration> + '_ {
        self.brokers.values().filter(|b| !b.fenced)
    }

    /// The dynamic configs of a resource (empty if none).
    pub fn config(&self, resource: &ConfigResource) -> Option<&BTreeMap<String, String>> {
        self.configs.get(resource)
    }

    /// The finalized `metadata.version`, if bootstrapped.
    pub fn metadata_version(&self) -> Option<i16> {
        self.features
            .get(crate::records::METADATA_VERSION_FEATURE)
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(leader: i32) -> PartitionRegistration {
        PartitionRegistration {
            replicas: vec![1, 2, 3],
            isr: vec![1, 2, 3],
            removing_replicas: vec![],
            adding_replicas: vec![],
            leader,
            leader_recovery_state: LeaderRecoveryState::Recovered,
            leader_epoch: 5,
            partition_epoch: 9,
        }
    }

    #[test]
    fn merge_isr_only_bumps_partition_epoch() {
        let id = Uuid::from_u128(1);
        let mut r = PartitionChangeRecord::unchanged(id, 0);
        r.isr = Some(vec![1, 2]);
        let next = reg(1).merge(&r);
        assert_eq!(next.isr, vec![1, 2]);
        assert_eq!(next.replicas, vec![1, 2, 3]);
        assert_eq!(next.leader, 1);
        assert_eq!(next.leader_epoch, 5);
        assert_eq!(next.partition_epoch, 10);
    }

    #[test]
    fn merge_same_leader_still_bumps_leader_epoch() {
        let mut r = PartitionChangeRecord::unchanged(Uuid::from_u128(1), 0);
        r.leader = 1;
        let next = reg(1).merge(&r);
        assert_eq!(
            (next.leader, next.leader_epoch, next.partition_epoch),
            (1, 6, 10)
        );
        r.leader = NO_LEADER;
        r.leader_recovery_state = 1;
        let none = next.merge(&r);
        assert_eq!(
            (none.leader, none.leader_epoch, none.partition_epoch),
            (-1, 7, 11)
        );
        assert_eq!(none.leader_recovery_state, LeaderRecoveryState::Recovering);
        assert!(!none.has_leader());
        assert!(none.is_replica(3));
        assert!(!none.is_replica(4));
    }

    #[test]
    fn merge_replaces_lists_given() {
        let mut r = PartitionChangeRecord::unchanged(Uuid::from_u128(1), 0);
        r.replicas = Some(vec![1, 2, 3, 4]);
        r.adding_replicas = Some(vec![4]);
        r.removing_replicas = Some(vec![3]);
        let next = reg(1).merge(&r);
        assert_eq!(next.replicas, vec![1, 2, 3, 4]);
        assert_eq!(next.adding_replicas, vec![4]);
        assert_eq!(next.removing_replicas, vec![3]);
        assert_eq!(next.isr, vec![1, 2, 3]);
    }

    #[test]
    fn offline_replicas_are_unregistered_or_fenced() {
        let mut image = MetadataImage::empty();
        for (id, fenced) in [(1, false), (2, true)] {
            image.brokers.insert(
                id,
                BrokerRegistration {
                    id,
                    incarnation_id: Uuid::from_u128(id as u128),
                    epoch: 10,
                    endpoints: vec![BrokerEndpoint {
                        name: "PLAINTEXT".into(),
                        host: "localhost".into(),
                        port: 9092,
                        security_protocol: 0,
                    }],
                    supported_features: BTreeMap::new(),
                    rack: None,
                    fenced,
                    in_controlled_shutdown: false,
                },
            );
        }
        assert_eq!(reg(1).offline_replicas(&image), vec![2, 3]);
        assert_eq!(
            image.live_brokers().map(|b| b.id).collect::<Vec<_>>(),
            vec![1]
        );
        assert_eq!(
            image.broker_endpoint(1, "PLAINTEXT").map(|e| e.port),
            Some(9092)
        );
        assert!(image.broker_endpoint(1, "SSL").is_none());
        assert!(image.broker_endpoint(3, "PLAINTEXT").is_none());
    }
}
