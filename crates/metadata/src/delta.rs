//! `MetadataDelta`: records staged on top of an image (Kafka `image/MetadataDelta.java` and its
//! per-area deltas, `TopicsDelta`, `ClusterDelta`, `ConfigurationsDelta`, ...).
//!
//! The `MetadataLoader` replays each committed batch into a delta, then [`MetadataDelta::apply`]
//! yields the next [`MetadataImage`] and publishers see both (what changed, and the result).
//! [`MetadataDelta::replay`] validates before it stages: a record that names an unknown topic,
//! a missing partition, a stale broker epoch, ... is a [`ReplayError`] and leaves the delta as it
//! was. On a follower such an error means the log and the replayer disagree, which must stop the
//! node loudly (Kafka's `MetadataLoader` faults the same way).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use uuid::Uuid;

use crate::image::{
    BrokerRegistration, ConfigResource, ConfigResourceType, FeatureRange, LeaderRecoveryState,
    MetadataImage, PartitionRegistration, TopicImage,
};
use crate::records::{
    AccessControlEntryRecord, ClientQuotaRecord, RemoveAccessControlEntryRecord,
    RemoveUserScramCredentialRecord, UserScramCredentialRecord,
};
use crate::records::{
    BrokerRegistrationChangeRecord, ClusterIdRecord, ConfigRecord, FeatureLevelRecord,
    MetadataRecord, PartitionChangeRecord, PartitionRecord, ProducerIdsRecord,
    RegisterBrokerRecord, RemoveTopicRecord, TopicRecord, UnregisterBrokerRecord,
    CONTROLLED_SHUTDOWN_CHANGE_IN_CONTROLLED_SHUTDOWN, CONTROLLED_SHUTDOWN_CHANGE_NONE,
    FENCING_CHANGE_FENCE, FENCING_CHANGE_NONE, FENCING_CHANGE_UNFENCE,
    LEADER_RECOVERY_STATE_NO_CHANGE, METADATA_VERSION_FEATURE, NO_LEADER, NO_LEADER_CHANGE,
};
use crate::security::{
    ClientQuotaEntity, ClientQuotaValues, ScramCredential, ScramMechanism, StandardAcl,
};

/// Why a record could not be replayed on the current delta.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    #[error("unknown topic id {topic_id}")]
    UnknownTopic { topic_id: Uuid },
    #[error("a topic named {name:?} already exists")]
    DuplicateTopicName { name: String },
    #[error("topic id {topic_id} already used")]
    DuplicateTopicId { topic_id: Uuid },
    #[error("unknown partition {partition_id} of topic {topic_id}")]
    UnknownPartition { topic_id: Uuid, partition_id: i32 },
    #[error("partition {partition_id} of topic {topic_id} already exists")]
    DuplicatePartition { topic_id: Uuid, partition_id: i32 },
    #[error("invalid partition {partition_id} of topic {topic_id}: {reason}")]
    InvalidPartition {
        topic_id: Uuid,
        partition_id: i32,
        reason: &'static str,
    },
    #[error("invalid leader recovery state {value}")]
    InvalidLeaderRecoveryState { value: i8 },
    #[error("unknown broker {broker_id}")]
    UnknownBroker { broker_id: i32 },
    #[error(
        "stale epoch {record_epoch} for broker {broker_id} (registered epoch {current_epoch})"
    )]
    StaleBrokerEpoch {
        broker_id: i32,
        current_epoch: i64,
        record_epoch: i64,
    },
    #[error("invalid fencing change {value}")]
    InvalidFencingChange { value: i8 },
    #[error("invalid controlled shutdown change {value}")]
    InvalidControlledShutdownChange { value: i8 },
    #[error("unknown config resource type {value}")]
    UnknownConfigResourceType { value: i8 },
    #[error("invalid level {level} for feature {name:?}")]
    InvalidFeatureLevel { name: String, level: i16 },
    #[error("next producer id {next} does not exceed the current {current}")]
    ProducerIdNotIncreasing { current: i64, next: i64 },
    #[error("cluster id {record:?} differs from the formed {current:?}")]
    ClusterIdMismatch { current: String, record: String },
    #[error("ACL {id}: invalid {field} code {value}")]
    InvalidAclCode {
        id: Uuid,
        field: &'static str,
        value: i8,
    },
    #[error("ACL id {id} already used")]
    DuplicateAclId { id: Uuid },
    #[error("unknown ACL id {id}")]
    UnknownAcl { id: Uuid },
    #[error("unknown SCRAM mechanism {value}")]
    UnknownScramMechanism { value: i8 },
    #[error("no SCRAM credential of user {name:?} for mechanism {mechanism}")]
    UnknownScramCredential { name: String, mechanism: i8 },
    #[error("invalid client quota entity: {reason}")]
    InvalidClientQuotaEntity { reason: &'static str },
}

/// One committed metadata log entry: the records of one Raft entry, applied atomically.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetadataBatch {
    /// The entry's Raft index; the offset of each of its records.
    pub offset: i64,
    /// The entry's Raft term (metadata leader epoch).
    pub epoch: i32,
    pub records: Vec<MetadataRecord>,
}

/// Something that reacts to each new image (Kafka `MetadataPublisher`): dynamic configs,
/// `ReplicaManager::apply_delta`, coordinators, the handlers' image.
pub trait MetadataPublisher: Send + Sync {
    fn publish(&self, delta: &MetadataDelta, image: &Arc<MetadataImage>);
}

/// A topic touched by a delta: created in it, or changed partitions of a base topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicDelta {
    pub id: Uuid,
    pub name: String,
    /// The topic in the base image; `None` if created in this delta.
    pub base: Option<Arc<TopicImage>>,
    /// The new registration of each partition created or changed in this delta.
    pub partition_changes: BTreeMap<i32, PartitionRegistration>,
}

impl TopicDelta {
    /// The partition as the delta has it: changed, else the base's.
    pub fn partition(&self, partition_id: i32) -> Option<&PartitionRegistration> {
        self.partition_changes
            .get(&partition_id)
            .or_else(|| self.base.as_ref()?.partitions.get(&partition_id))
    }

    fn base_partition(&self, partition_id: i32) -> Option<&PartitionRegistration> {
        self.base.as_ref()?.partitions.get(&partition_id)
    }

    fn apply(&self) -> TopicImage {
        let mut partitions = self
            .base
            .as_ref()
            .map(|b| b.partitions.clone())
            .unwrap_or_default();
        for (id, p) in &self.partition_changes {
            partitions.insert(*id, p.clone());
        }
        TopicImage {
            name: self.name.clone(),
            id: self.id,
            partitions,
        }
    }
}

/// A partition this node has to lead or follow after a delta.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalPartition {
    pub topic_id: Uuid,
    pub topic_name: String,
    pub partition_id: i32,
    pub registration: PartitionRegistration,
    /// The leader epoch differs from the base image's (or the partition is new): for a leader,
    /// it was (re-)elected (Kafka's `electedLeaders`).
    pub leader_epoch_changed: bool,
}

/// What a delta means for the replicas on one node (Kafka `LocalReplicaChanges`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalReplicaChanges {
    /// Partitions (new or whose partition epoch changed) this node now leads.
    pub leaders: Vec<LocalPartition>,
    /// Partitions (new or whose partition epoch changed) this node now follows.
    pub followers: Vec<LocalPartition>,
    /// (topic id, topic name, partition) this node no longer hosts: deleted topics, and
    /// partitions it stopped being a replica of.
    pub deletes: Vec<(Uuid, String, i32)>,
}

/// Records staged on top of `base`.
#[derive(Clone, Debug)]
pub struct MetadataDelta {
    base: Arc<MetadataImage>,
    cluster_id: Option<String>,
    features: BTreeMap<String, Option<i16>>,
    brokers: BTreeMap<i32, Option<BrokerRegistration>>,
    changed_topics: BTreeMap<Uuid, TopicDelta>,
    created_topics: BTreeSet<Uuid>,
    /// Name -> id of `created_topics`, so name checks stay logarithmic when a snapshot creates
    /// every topic in one delta.
    created_topic_ids_by_name: BTreeMap<String, Uuid>,
    deleted_topics: BTreeSet<Uuid>,
    configs: BTreeMap<ConfigResource, BTreeMap<String, String>>,
    next_producer_id: Option<i64>,
    /// ACLs created (`Some`) or removed (`None`) in this delta, by id (Kafka `AclsDelta`).
    acls: BTreeMap<Uuid, Option<StandardAcl>>,
    /// SCRAM credentials set or removed (Kafka `ScramDelta`).
    scram_credentials: BTreeMap<(String, ScramMechanism), Option<ScramCredential>>,
    /// Complete new quota values of each entity touched (empty = none left; Kafka
    /// `ClientQuotasDelta`).
    client_quotas: BTreeMap<ClientQuotaEntity, ClientQuotaValues>,
}

impl MetadataDelta {
    pub fn new(base: Arc<MetadataImage>) -> Self {
        Self {
            base,
            cluster_id: None,
            features: BTreeMap::new(),
            brokers: BTreeMap::new(),
            changed_topics: BTreeMap::new(),
            created_topics: BTreeSet::new(),
            created_topic_ids_by_name: BTreeMap::new(),
            deleted_topics: BTreeSet::new(),
            configs: BTreeMap::new(),
            next_producer_id: None,
            acls: BTreeMap::new(),
            scram_credentials: BTreeMap::new(),
            client_quotas: BTreeMap::new(),
        }
    }

    /// The image this delta starts from.
    pub fn base(&self) -> &Arc<MetadataImage> {
        &self.base
    }

    /// Validates `record` against the image as staged so far and stages it. On error nothing
    /// is staged.
    pub fn replay(&mut self, record: &MetadataRecord) -> Result<(), ReplayError> {
        match record {
            MetadataRecord::RegisterBroker(r) => self.replay_register_broker(r),
            MetadataRecord::UnregisterBroker(r) => self.replay_unregister_broker(r),
            MetadataRecord::Topic(r) => self.replay_topic(r),
            MetadataRecord::Partition(r) => self.replay_partition(r),
            MetadataRecord::Config(r) => self.replay_config(r),
            MetadataRecord::PartitionChange(r) => self.replay_partition_change(r),
            MetadataRecord::FenceBroker(r) => {
                self.replay_registration_change(r.id, r.epoch, Some(true), None)
            }
            MetadataRecord::UnfenceBroker(r) => {
                self.replay_registration_change(r.id, r.epoch, Some(false), None)
            }
            MetadataRecord::RemoveTopic(r) => self.replay_remove_topic(r),
            MetadataRecord::FeatureLevel(r) => self.replay_feature_level(r),
            MetadataRecord::ProducerIds(r) => self.replay_producer_ids(r),
            MetadataRecord::BrokerRegistrationChange(r) => self.replay_broker_change(r),
            MetadataRecord::NoOp => Ok(()),
            MetadataRecord::ClusterId(r) => self.replay_cluster_id(r),
            MetadataRecord::AccessControlEntry(r) => self.replay_acl(r),
            MetadataRecord::RemoveAccessControlEntry(r) => self.replay_remove_acl(r),
            MetadataRecord::UserScramCredential(r) => self.replay_scram(r),
            MetadataRecord::RemoveUserScramCredential(r) => self.replay_remove_scram(r),
            MetadataRecord::ClientQuota(r) => self.replay_client_quota(r),
        }
    }

    /// Replays every record in order; stops at the first error (earlier records stay staged).
    pub fn replay_all<'a>(
        &mut self,
        records: impl IntoIterator<Item = &'a MetadataRecord>,
    ) -> Result<(), ReplayError> {
        records.into_iter().try_for_each(|r| self.replay(r))
    }

    // ---- current (staged) state ----

    /// The cluster id as staged.
    pub fn cluster_id(&self) -> Option<&str> {
        self.cluster_id
            .as_deref()
            .or(self.base.cluster_id.as_deref())
    }

    /// The broker as staged (`None` if not registered).
    pub fn broker(&self, broker_id: i32) -> Option<&BrokerRegistration> {
        match self.brokers.get(&broker_id) {
            Some(staged) => staged.as_ref(),
            None => self.base.brokers.get(&broker_id),
        }
    }

    /// The topic id of `name` as staged.
    pub fn topic_id(&self, name: &str) -> Option<Uuid> {
        if let Some(id) = self.base.topic_ids_by_name.get(name) {
            if !self.deleted_topics.contains(id) {
                return Some(*id);
            }
        }
        self.created_topic_ids_by_name.get(name).copied()
    }

    /// The topic's name if it exists as staged.
    pub fn topic_name(&self, topic_id: &Uuid) -> Option<&str> {
        if let Some(t) = self.changed_topics.get(topic_id) {
            return Some(&t.name);
        }
        if self.deleted_topics.contains(topic_id) {
            return None;
        }
        self.base.topics.get(topic_id).map(|t| t.name.as_str())
    }

    /// The partition as staged.
    pub fn partition(&self, topic_id: &Uuid, partition_id: i32) -> Option<&PartitionRegistration> {
        if let Some(t) = self.changed_topics.get(topic_id) {
            return t.partition(partition_id);
        }
        if self.deleted_topics.contains(topic_id) {
            return None;
        }
        self.base.partition(topic_id, partition_id)
    }

    /// The configs of `resource` as staged.
    pub fn config(&self, resource: &ConfigResource) -> Option<&BTreeMap<String, String>> {
        match self.configs.get(resource) {
            Some(c) => Some(c),
            None => self.base.configs.get(resource),
        }
    }

    /// The next producer id as staged.
    pub fn next_producer_id(&self) -> i64 {
        self.next_producer_id.unwrap_or(self.base.next_producer_id)
    }

    /// The ACL with `id` as staged.
    pub fn acl(&self, id: &Uuid) -> Option<&StandardAcl> {
        match self.acls.get(id) {
            Some(staged) => staged.as_ref(),
            None => self.base.acls.get(id),
        }
    }

    /// The SCRAM credential of (`user`, `mechanism`) as staged.
    pub fn scram_credential(
        &self,
        user: &str,
        mechanism: ScramMechanism,
    ) -> Option<&ScramCredential> {
        let key = (user.to_string(), mechanism);
        match self.scram_credentials.get(&key) {
            Some(staged) => staged.as_ref(),
            None => self.base.scram_credentials.get(&key),
        }
    }

    /// The quota values of `entity` as staged.
    pub fn client_quota(&self, entity: &ClientQuotaEntity) -> Option<&ClientQuotaValues> {
        match self.client_quotas.get(entity) {
            Some(v) => Some(v),
            None => self.base.client_quotas.get(entity),
        }
    }

    // ---- what changed ----

    /// Topics created or changed in this delta, by id.
    pub fn changed_topics(&self) -> &BTreeMap<Uuid, TopicDelta> {
        &self.changed_topics
    }

    /// Topics created in this delta (and not deleted again).
    pub fn created_topics(&self) -> &BTreeSet<Uuid> {
        &self.created_topics
    }

    /// Topics of the base image deleted in this delta.
    pub fn deleted_topics(&self) -> &BTreeSet<Uuid> {
        &self.deleted_topics
    }

    /// Brokers whose registration changed: the new registration, or `None` if unregistered.
    pub fn changed_brokers(&self) -> &BTreeMap<i32, Option<BrokerRegistration>> {
        &self.brokers
    }

    /// Resources whose configs changed, with their complete new configs (empty = none left).
    pub fn changed_configs(&self) -> &BTreeMap<ConfigResource, BTreeMap<String, String>> {
        &self.configs
    }

    /// Features whose level changed: the new level, or `None` if removed.
    pub fn changed_features(&self) -> &BTreeMap<String, Option<i16>> {
        &self.features
    }

    /// The cluster id if this delta formed it.
    pub fn formed_cluster_id(&self) -> Option<&str> {
        self.cluster_id.as_deref()
    }

    /// The new next producer id if this delta allocated a block.
    pub fn changed_next_producer_id(&self) -> Option<i64> {
        self.next_producer_id
    }

    /// ACLs created (`Some`) or removed (`None`) in this delta.
    pub fn changed_acls(&self) -> &BTreeMap<Uuid, Option<StandardAcl>> {
        &self.acls
    }

    /// SCRAM credentials set (`Some`) or removed (`None`) in this delta.
    pub fn changed_scram_credentials(
        &self,
    ) -> &BTreeMap<(String, ScramMechanism), Option<ScramCredential>> {
        &self.scram_credentials
    }

    /// Quota entities changed in this delta, with their complete new values (empty = none).
    pub fn changed_client_quotas(&self) -> &BTreeMap<ClientQuotaEntity, ClientQuotaValues> {
        &self.client_quotas
    }

    /// Whether nothing was staged (only NoOps replayed, say).
    pub fn is_empty(&self) -> bool {
        self.cluster_id.is_none()
            && self.features.is_empty()
            && self.brokers.is_empty()
            && self.changed_topics.is_empty()
            && self.deleted_topics.is_empty()
            && self.configs.is_empty()
            && self.next_producer_id.is_none()
            && self.acls.is_empty()
            && self.scram_credentials.is_empty()
            && self.client_quotas.is_empty()
    }

    /// The image after the staged records, at `offset`/`epoch`. Topics the delta did not touch
    /// are shared with the base image.
    pub fn apply(self, offset: i64, epoch: i32) -> Arc<MetadataImage> {
        debug_assert!(
            offset >= self.base.offset,
            "metadata offsets go forward: {offset} < {}",
            self.base.offset
        );
        let base = &self.base;
        let mut features = base.features.clone();
        for (name, level) in &self.features {
            match level {
                Some(l) => features.insert(name.clone(), *l),
                None => features.remove(name),
            };
        }
        let mut brokers = base.brokers.clone();
        for (id, b) in &self.brokers {
            match b {
                Some(b) => brokers.insert(*id, b.clone()),
                None => brokers.remove(id),
            };
        }
        let mut topics = base.topics.clone();
        let mut topic_ids_by_name = base.topic_ids_by_name.clone();
        for id in &self.deleted_topics {
            if let Some(t) = topics.remove(id) {
                topic_ids_by_name.remove(&t.name);
            }
        }
        for (id, t) in &self.changed_topics {
            topic_ids_by_name.insert(t.name.clone(), *id);
            topics.insert(*id, Arc::new(t.apply()));
        }
        let mut configs = base.configs.clone();
        for (resource, c) in &self.configs {
            if c.is_empty() {
                configs.remove(resource);
            } else {
                configs.insert(resource.clone(), c.clone());
            }
        }
        debug_assert_eq!(topics.len(), topic_ids_by_name.len());
        Arc::new(MetadataImage {
            offset,
            epoch,
            cluster_id: self.cluster_id.clone().or_else(|| base.cluster_id.clone()),
            features,
            brokers,
            topics,
            topic_ids_by_name,
            configs,
            next_producer_id: self.next_producer_id.unwrap_or(base.next_producer_id),
            acls: apply_changes(&base.acls, &self.acls),
            scram_credentials: apply_changes(&base.scram_credentials, &self.scram_credentials),
            client_quotas: if self.client_quotas.is_empty() {
                base.client_quotas.clone()
            } else {
                let mut quotas = (*base.client_quotas).clone();
                for (entity, values) in &self.client_quotas {
                    if values.is_empty() {
                        quotas.remove(entity);
                    } else {
                        quotas.insert(entity.clone(), values.clone());
                    }
                }
                Arc::new(quotas)
            },
        })
    }

    /// Kafka `TopicsDelta.localChanges(node_id)`: partitions changed in this delta where the
    /// node is a replica (leader if `leader == node_id`, else follower) unless their partition
    /// epoch is unchanged; partitions of deleted topics and partitions the node stopped being a
    /// replica of are deletes. Each list is in (topic id, partition) order.
    pub fn local_changes(&self, node_id: i32) -> LocalReplicaChanges {
        let mut out = LocalReplicaChanges::default();
        for t in self.changed_topics.values() {
            for (pid, p) in &t.partition_changes {
                let prev = t.base_partition(*pid);
                if !p.is_replica(node_id) {
                    if prev.is_some_and(|prev| prev.is_replica(node_id)) {
                        out.deletes.push((t.id, t.name.clone(), *pid));
                    }
                    continue;
                }
                if prev.is_some_and(|prev| prev.partition_epoch == p.partition_epoch) {
                    continue;
                }
                let local = LocalPartition {
                    topic_id: t.id,
                    topic_name: t.name.clone(),
                    partition_id: *pid,
                    registration: p.clone(),
                    leader_epoch_changed: prev
                        .is_none_or(|prev| prev.leader_epoch != p.leader_epoch),
                };
                if p.leader == node_id {
                    out.leaders.push(local);
                } else {
                    out.followers.push(local);
                }
            }
        }
        for id in &self.deleted_topics {
            if let Some(t) = self.base.topics.get(id) {
                for (pid, p) in &t.partitions {
                    if p.is_replica(node_id) {
                        out.deletes.push((t.id, t.name.clone(), *pid));
                    }
                }
            }
        }
        out.deletes.sort();
        out
    }

    // ---- replay of each record ----

    fn replay_cluster_id(&mut self, r: &ClusterIdRecord) -> Result<(), ReplayError> {
        if let Some(current) = self.cluster_id() {
            if current != r.cluster_id {
                return Err(ReplayError::ClusterIdMismatch {
                    current: current.to_string(),
                    record: r.cluster_id.clone(),
                });
            }
            return Ok(());
        }
        self.cluster_id = Some(r.cluster_id.clone());
        Ok(())
    }

    fn replay_feature_level(&mut self, r: &FeatureLevelRecord) -> Result<(), ReplayError> {
        if r.feature_level < 0 || (r.name == METADATA_VERSION_FEATURE && r.feature_level < 1) {
            return Err(ReplayError::InvalidFeatureLevel {
                name: r.name.clone(),
                level: r.feature_level,
            });
        }
        let level = (r.feature_level != 0).then_some(r.feature_level);
        self.features.insert(r.name.clone(), level);
        Ok(())
    }

    fn replay_register_broker(&mut self, r: &RegisterBrokerRecord) -> Result<(), ReplayError> {
        if let Some(current) = self.broker(r.broker_id) {
            if r.broker_epoch <= current.epoch {
                return Err(ReplayError::StaleBrokerEpoch {
                    broker_id: r.broker_id,
                    current_epoch: current.epoch,
                    record_epoch: r.broker_epoch,
                });
            }
        }
        let registration = BrokerRegistration {
            id: r.broker_id,
            incarnation_id: r.incarnation_id,
            epoch: r.broker_epoch,
            endpoints: r.end_points.clone(),
            supported_features: r
                .features
                .iter()
                .map(|f| {
                    (
                        f.name.clone(),
                        FeatureRange {
                            min: f.min_supported_version,
                            max: f.max_supported_version,
                        },
                    )
                })
                .collect(),
            rack: r.rack.clone(),
            fenced: r.fenced,
            in_controlled_shutdown: r.in_controlled_shutdown,
        };
        self.brokers.insert(r.broker_id, Some(registration));
        Ok(())
    }

    fn current_broker_with_epoch(
        &self,
        broker_id: i32,
        epoch: i64,
    ) -> Result<&BrokerRegistration, ReplayError> {
        let current = self
            .broker(broker_id)
            .ok_or(ReplayError::UnknownBroker { broker_id })?;
        if current.epoch != epoch {
            return Err(ReplayError::StaleBrokerEpoch {
                broker_id,
                current_epoch: current.epoch,
                record_epoch: epoch,
            });
        }
        Ok(current)
    }

    fn replay_unregister_broker(&mut self, r: &UnregisterBrokerRecord) -> Result<(), ReplayError> {
        self.current_broker_with_epoch(r.broker_id, r.broker_epoch)?;
        self.brokers.insert(r.broker_id, None);
        Ok(())
    }

    fn replay_broker_change(
        &mut self,
        r: &BrokerRegistrationChangeRecord,
    ) -> Result<(), ReplayError> {
        let fenced = match r.fenced {
            FENCING_CHANGE_FENCE => Some(true),
            FENCING_CHANGE_NONE => None,
            FENCING_CHANGE_UNFENCE => Some(false),
            value => return Err(ReplayError::InvalidFencingChange { value }),
        };
        let in_controlled_shutdown = match r.in_controlled_shutdown {
            CONTROLLED_SHUTDOWN_CHANGE_NONE => None,
            CONTROLLED_SHUTDOWN_CHANGE_IN_CONTROLLED_SHUTDOWN => Some(true),
            value => return Err(ReplayError::InvalidControlledShutdownChange { value }),
        };
        self.replay_registration_change(r.broker_id, r.broker_epoch, fenced, in_controlled_shutdown)
    }

    fn replay_registration_change(
        &mut self,
        broker_id: i32,
        epoch: i64,
        fenced: Option<bool>,
        in_controlled_shutdown: Option<bool>,
    ) -> Result<(), ReplayError> {
        let mut next = self.current_broker_with_epoch(broker_id, epoch)?.clone();
        if let Some(f) = fenced {
            next.fenced = f;
        }
        if let Some(s) = in_controlled_shutdown {
            next.in_controlled_shutdown = s;
        }
        self.brokers.insert(broker_id, Some(next));
        Ok(())
    }

    fn replay_topic(&mut self, r: &TopicRecord) -> Result<(), ReplayError> {
        if self.base.topics.contains_key(&r.topic_id)
            || self.changed_topics.contains_key(&r.topic_id)
        {
            return Err(ReplayError::DuplicateTopicId {
                topic_id: r.topic_id,
            });
        }
        if self.topic_id(&r.name).is_some() {
            return Err(ReplayError::DuplicateTopicName {
                name: r.name.clone(),
            });
        }
        self.changed_topics.insert(
            r.topic_id,
            TopicDelta {
                id: r.topic_id,
                name: r.name.clone(),
                base: None,
                partition_changes: BTreeMap::new(),
            },
        );
        self.created_topics.insert(r.topic_id);
        self.created_topic_ids_by_name
            .insert(r.name.clone(), r.topic_id);
        Ok(())
    }

    /// The topic's delta, created from the base image on first touch.
    fn topic_delta_mut(&mut self, topic_id: Uuid) -> Result<&mut TopicDelta, ReplayError> {
        if !self.changed_topics.contains_key(&topic_id) {
            if self.deleted_topics.contains(&topic_id) {
                return Err(ReplayError::UnknownTopic { topic_id });
            }
            let base = self
                .base
                .topics
                .get(&topic_id)
                .ok_or(ReplayError::UnknownTopic { topic_id })?
                .clone();
            self.changed_topics.insert(
                topic_id,
                TopicDelta {
                    id: topic_id,
                    name: base.name.clone(),
                    base: Some(base),
                    partition_changes: BTreeMap::new(),
                },
            );
        }
        self.changed_topics
            .get_mut(&topic_id)
            .ok_or(ReplayError::UnknownTopic { topic_id })
    }

    fn replay_partition(&mut self, r: &PartitionRecord) -> Result<(), ReplayError> {
        if self.topic_name(&r.topic_id).is_none() {
            return Err(ReplayError::UnknownTopic {
                topic_id: r.topic_id,
            });
        }
        if r.partition_id < 0 {
            return Err(invalid(r.topic_id, r.partition_id, "negative partition id"));
        }
        if self.partition(&r.topic_id, r.partition_id).is_some() {
            return Err(ReplayError::DuplicatePartition {
                topic_id: r.topic_id,
                partition_id: r.partition_id,
            });
        }
        let registration = PartitionRegistration::from_record(r).ok_or(
            ReplayError::InvalidLeaderRecoveryState {
                value: r.leader_recovery_state,
            },
        )?;
        check_partition(r.topic_id, r.partition_id, &registration)?;
        self.topic_delta_mut(r.topic_id)?
            .partition_changes
            .insert(r.partition_id, registration);
        Ok(())
    }

    fn replay_partition_change(&mut self, r: &PartitionChangeRecord) -> Result<(), ReplayError> {
        if self.topic_name(&r.topic_id).is_none() {
            return Err(ReplayError::UnknownTopic {
                topic_id: r.topic_id,
            });
        }
        let current =
            self.partition(&r.topic_id, r.partition_id)
                .ok_or(ReplayError::UnknownPartition {
                    topic_id: r.topic_id,
                    partition_id: r.partition_id,
                })?;
        if r.leader_recovery_state != LEADER_RECOVERY_STATE_NO_CHANGE
            && LeaderRecoveryState::from_i8(r.leader_recovery_state).is_none()
        {
            return Err(ReplayError::InvalidLeaderRecoveryState {
                value: r.leader_recovery_state,
            });
        }
        if r.leader < NO_LEADER_CHANGE {
            return Err(invalid(r.topic_id, r.partition_id, "leader below -2"));
        }
        let next = current.merge(r);
        check_partition(r.topic_id, r.partition_id, &next)?;
        self.topic_delta_mut(r.topic_id)?
            .partition_changes
            .insert(r.partition_id, next);
        Ok(())
    }

    fn replay_remove_topic(&mut self, r: &RemoveTopicRecord) -> Result<(), ReplayError> {
        let name = self
            .topic_name(&r.topic_id)
            .ok_or(ReplayError::UnknownTopic {
                topic_id: r.topic_id,
            })?
            .to_string();
        self.changed_topics.remove(&r.topic_id);
        if self.created_topics.remove(&r.topic_id) {
            self.created_topic_ids_by_name.remove(&name);
        } else {
            self.deleted_topics.insert(r.topic_id);
        }
        // Kafka's MetadataDelta also drops the topic's configs (ConfigurationsDelta).
        let resource = ConfigResource::topic(name);
        if self.config(&resource).is_some_and(|c| !c.is_empty()) {
            self.configs.insert(resource, BTreeMap::new());
        }
        Ok(())
    }

    fn replay_config(&mut self, r: &ConfigRecord) -> Result<(), ReplayError> {
        let resource_type = ConfigResourceType::from_i8(r.resource_type).ok_or(
            ReplayError::UnknownConfigResourceType {
                value: r.resource_type,
            },
        )?;
        let resource = ConfigResource {
            resource_type,
            name: r.resource_name.clone(),
        };
        let mut configs = self.config(&resource).cloned().unwrap_or_default();
        match &r.value {
            Some(v) => configs.insert(r.name.clone(), v.clone()),
            None => configs.remove(&r.name),
        };
        self.configs.insert(resource, configs);
        Ok(())
    }

    fn replay_acl(&mut self, r: &AccessControlEntryRecord) -> Result<(), ReplayError> {
        let acl = r.acl().map_err(|field| ReplayError::InvalidAclCode {
            id: r.id,
            field,
            value: match field {
                "ResourceType" => r.resource_type,
                "PatternType" => r.pattern_type,
                "Operation" => r.operation,
                _ => r.permission_type,
            },
        })?;
        if self.acl(&r.id).is_some() {
            return Err(ReplayError::DuplicateAclId { id: r.id });
        }
        self.acls.insert(r.id, Some(acl));
        Ok(())
    }

    fn replay_remove_acl(&mut self, r: &RemoveAccessControlEntryRecord) -> Result<(), ReplayError> {
        if self.acl(&r.id).is_none() {
            return Err(ReplayError::UnknownAcl { id: r.id });
        }
        self.acls.insert(r.id, None);
        Ok(())
    }

    fn replay_scram(&mut self, r: &UserScramCredentialRecord) -> Result<(), ReplayError> {
        let mechanism = ScramMechanism::from_code(r.mechanism)
            .ok_or(ReplayError::UnknownScramMechanism { value: r.mechanism })?;
        self.scram_credentials
            .insert((r.name.clone(), mechanism), Some(r.credential()));
        Ok(())
    }

    fn replay_remove_scram(
        &mut self,
        r: &RemoveUserScramCredentialRecord,
    ) -> Result<(), ReplayError> {
        let mechanism = ScramMechanism::from_code(r.mechanism)
            .ok_or(ReplayError::UnknownScramMechanism { value: r.mechanism })?;
        if self.scram_credential(&r.name, mechanism).is_none() {
            return Err(ReplayError::UnknownScramCredential {
                name: r.name.clone(),
                mechanism: r.mechanism,
            });
        }
        self.scram_credentials
            .insert((r.name.clone(), mechanism), None);
        Ok(())
    }

    fn replay_client_quota(&mut self, r: &ClientQuotaRecord) -> Result<(), ReplayError> {
        let entity = r
            .entity_map()
            .ok_or(ReplayError::InvalidClientQuotaEntity {
                reason: "empty or repeated entity type",
            })?;
        let mut values = self.client_quota(&entity).cloned().unwrap_or_default();
        if r.remove {
            values.remove(&r.key);
        } else {
            values.insert(r.key.clone(), r.value);
        }
        self.client_quotas.insert(entity, values);
        Ok(())
    }

    fn replay_producer_ids(&mut self, r: &ProducerIdsRecord) -> Result<(), ReplayError> {
        let current = self.next_producer_id();
        if r.next_producer_id <= current {
            return Err(ReplayError::ProducerIdNotIncreasing {
                current,
                next: r.next_producer_id,
            });
        }
        self.next_producer_id = Some(r.next_producer_id);
        Ok(())
    }
}

/// `base` with `changes` applied (`None` removes); `base` itself (shared) when nothing changed.
fn apply_changes<K: Ord + Clone, V: Clone>(
    base: &Arc<BTreeMap<K, V>>,
    changes: &BTreeMap<K, Option<V>>,
) -> Arc<BTreeMap<K, V>> {
    if changes.is_empty() {
        return base.clone();
    }
    let mut next = (**base).clone();
    for (k, v) in changes {
        match v {
            Some(v) => next.insert(k.clone(), v.clone()),
            None => next.remove(k),
        };
    }
    Arc::new(next)
}

fn invalid(topic_id: Uuid, partition_id: i32, reason: &'static str) -> ReplayError {
    ReplayError::InvalidPartition {
        topic_id,
        partition_id,
        reason,
    }
}

/// Invariant 2 of the design for one registration: replicas distinct and non-empty, ISR a
/// non-empty subset of the replicas, leader -1 or an ISR member, epochs not negative.
fn check_partition(
    topic_id: Uuid,
    partition_id: i32,
    p: &PartitionRegistration,
) -> Result<(), ReplayError> {
    if p.replicas.is_empty() {
        return Err(invalid(topic_id, partition_id, "no replicas"));
    }
    let distinct: BTreeSet<i32> = p.replicas.iter().copied().collect();
    if distinct.len() != p.replicas.len() {
        return Err(invalid(topic_id, partition_id, "duplicate replicas"));
    }
    if p.isr.is_empty() {
        return Err(invalid(topic_id, partition_id, "empty ISR"));
    }
    let isr: BTreeSet<i32> = p.isr.iter().copied().collect();
    if isr.len() != p.isr.len() || !isr.is_subset(&distinct) {
        return Err(invalid(topic_id, partition_id, "ISR not a set of replicas"));
    }
    if p.leader != NO_LEADER && !isr.contains(&p.leader) {
        return Err(invalid(topic_id, partition_id, "leader not in ISR"));
    }
    if p.removing_replicas
        .iter()
        .chain(&p.adding_replicas)
        .any(|b| !distinct.contains(b))
    {
        return Err(invalid(
            topic_id,
            partition_id,
            "adding or removing replica not a replica",
        ));
    }
    if p.leader_epoch < 0 || p.partition_epoch < 0 {
        return Err(invalid(topic_id, partition_id, "negative epoch"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{
        BrokerEndpoint, CONFIG_RESOURCE_TYPE_BROKER, CONFIG_RESOURCE_TYPE_TOPIC, NO_LEADER,
    };

    const T1: Uuid = Uuid::from_u128(0x1111);
    const T2: Uuid = Uuid::from_u128(0x2222);

    fn register(id: i32, epoch: i64) -> MetadataRecord {
        MetadataRecord::RegisterBroker(RegisterBrokerRecord {
            broker_id: id,
            incarnation_id: Uuid::from_u128(id as u128 + 100),
            broker_epoch: epoch,
            end_points: vec![BrokerEndpoint {
                name: "PLAINTEXT".into(),
                host: "localhost".into(),
                port: 9092 + id as u16,
                security_protocol: 0,
            }],
            features: vec![],
            rack: None,
            fenced: true,
            in_controlled_shutdown: false,
        })
    }

    fn topic(name: &str, id: Uuid) -> MetadataRecord {
        MetadataRecord::Topic(TopicRecord {
            name: name.into(),
            topic_id: id,
        })
    }

    fn partition(id: Uuid, p: i32, replicas: &[i32]) -> MetadataRecord {
        MetadataRecord::Partition(PartitionRecord {
            partition_id: p,
            topic_id: id,
            replicas: replicas.to_vec(),
            isr: replicas.to_vec(),
            removing_replicas: vec![],
            adding_replicas: vec![],
            leader: replicas[0],
            leader_recovery_state: 0,
            leader_epoch: 0,
            partition_epoch: 0,
        })
    }

    fn image_of(records: &[MetadataRecord]) -> Arc<MetadataImage> {
        let mut d = MetadataDelta::new(Arc::new(MetadataImage::empty()));
        d.replay_all(records).unwrap();
        d.apply(records.len() as i64, 1)
    }

    #[test]
    fn topics_and_partitions_apply() {
        let image = image_of(&[
            register(1, 0),
            register(2, 1),
            topic("a", T1),
            partition(T1, 0, &[1, 2]),
            partition(T1, 1, &[2, 1]),
        ]);
        let t = image.topic_by_name("a").unwrap();
        assert_eq!(t.id, T1);
        assert_eq!(t.partitions.len(), 2);
        assert_eq!(image.partition(&T1, 1).unwrap().leader, 2);
        assert_eq!(image.brokers.len(), 2);
        assert!(image.brokers[&1].fenced);
        assert_eq!(image.offset, 5);
    }

    #[test]
    fn failed_replay_leaves_delta_unchanged() {
        let base = image_of(&[register(1, 0), topic("a", T1), partition(T1, 0, &[1])]);
        let mut d = MetadataDelta::new(base.clone());
        let mut change = PartitionChangeRecord::unchanged(T1, 0);
        change.isr = Some(vec![1, 2]); // 2 is no replica
        let err = d
            .replay(&MetadataRecord::PartitionChange(change))
            .unwrap_err();
        assert!(
            matches!(err, ReplayError::InvalidPartition { .. }),
            "{err:?}"
        );
        assert!(d.is_empty());
        assert_eq!(
            d.replay(&topic("a", T2)).unwrap_err(),
            ReplayError::DuplicateTopicName { name: "a".into() }
        );
        assert_eq!(
            d.replay(&partition(T2, 0, &[1])).unwrap_err(),
            ReplayError::UnknownTopic { topic_id: T2 }
        );
        assert_eq!(
            d.replay(&MetadataRecord::PartitionChange(
                PartitionChangeRecord::unchanged(T1, 7)
            ))
            .unwrap_err(),
            ReplayError::UnknownPartition {
                topic_id: T1,
                partition_id: 7
            }
        );
        let stale = MetadataRecord::BrokerRegistrationChange(BrokerRegistrationChangeRecord {
            broker_id: 1,
            broker_epoch: 5,
            fenced: -1,
            in_controlled_shutdown: 0,
        });
        assert!(matches!(
            d.replay(&stale).unwrap_err(),
            ReplayError::StaleBrokerEpoch { .. }
        ));
        assert!(d.is_empty());
        assert_eq!(*d.apply(base.offset, base.epoch), *base);
    }

    #[test]
    fn local_changes_lead_follow_delete() {
        let base = image_of(&[
            register(1, 0),
            register(2, 1),
            topic("a", T1),
            partition(T1, 0, &[1, 2]),
            partition(T1, 1, &[2, 1]),
            partition(T1, 2, &[2]),
            topic("b", T2),
            partition(T2, 0, &[1]),
        ]);
        let mut d = MetadataDelta::new(base);
        // p0: leader moves to 2 (node 1 now follows).
        let mut c0 = PartitionChangeRecord::unchanged(T1, 0);
        c0.leader = 2;
        // p1: node 1 leaves the replicas.
        let mut c1 = PartitionChangeRecord::unchanged(T1, 1);
        c1.replicas = Some(vec![2]);
        c1.isr = Some(vec![2]);
        // p2: node 1 is not involved.
        let mut c2 = PartitionChangeRecord::unchanged(T1, 2);
        c2.leader = NO_LEADER;
        for c in [c0, c1, c2] {
            d.replay(&MetadataRecord::PartitionChange(c)).unwrap();
        }
        d.replay(&MetadataRecord::RemoveTopic(RemoveTopicRecord {
            topic_id: T2,
        }))
        .unwrap();
        let l1 = d.local_changes(1);
        assert!(l1.leaders.is_empty());
        assert_eq!(l1.followers.len(), 1);
        assert_eq!(l1.followers[0].partition_id, 0);
        assert_eq!(l1.followers[0].registration.leader_epoch, 1);
        assert_eq!(
            l1.deletes,
            vec![(T1, "a".to_string(), 1), (T2, "b".to_string(), 0)]
        );
        let l2 = d.local_changes(2);
        let led: Vec<i32> = l2.leaders.iter().map(|p| p.partition_id).collect();
        assert_eq!(led, vec![0, 1]);
        assert!(l2.leaders[0].leader_epoch_changed);
        assert!(!l2.leaders[1].leader_epoch_changed);
        assert_eq!(
            l2.followers
                .iter()
                .map(|p| p.partition_id)
                .collect::<Vec<_>>(),
            vec![2]
        );
        let image = d.apply(100, 2);
        assert!(image.topic_by_name("b").is_none());
        assert_eq!(image.topics.len(), 1);
    }

    fn config(resource_type: i8, name: &str, key: &str, value: Option<&str>) -> MetadataRecord {
        MetadataRecord::Config(ConfigRecord {
            resource_type,
            resource_name: name.into(),
            name: key.into(),
            value: value.map(str::to_string),
        })
    }

    #[test]
    fn delete_and_recreate_same_name_in_one_delta() {
        let base = image_of(&[topic("a", T1), partition(T1, 0, &[1])]);
        let mut d = MetadataDelta::new(base.clone());
        d.replay(&MetadataRecord::RemoveTopic(RemoveTopicRecord {
            topic_id: T1,
        }))
        .unwrap();
        assert_eq!(d.topic_id("a"), None);
        d.replay(&topic("a", T2)).unwrap();
        d.replay(&partition(T2, 0, &[1])).unwrap();
        assert_eq!(d.topic_id("a"), Some(T2));
        let local = d.local_changes(1);
        assert_eq!(local.deletes, vec![(T1, "a".to_string(), 0)]);
        assert_eq!(local.leaders.len(), 1);
        assert_eq!(local.leaders[0].topic_id, T2);
        assert!(d.deleted_topics().contains(&T1));
        assert!(d.created_topics().contains(&T2));
        let image = d.apply(10, 1);
        assert_eq!(image.topic_by_name("a").map(|t| t.id), Some(T2));
        assert!(image.topic(&T1).is_none());
        // Reusing a deleted topic's id is refused.
        let mut d = MetadataDelta::new(image);
        assert_eq!(
            d.replay(&topic("b", T2)).unwrap_err(),
            ReplayError::DuplicateTopicId { topic_id: T2 }
        );
    }

    #[test]
    fn create_then_remove_in_one_delta_leaves_no_trace() {
        let base = Arc::new(MetadataImage::empty());
        let mut d = MetadataDelta::new(base);
        d.replay_all(&[
            topic("a", T1),
            partition(T1, 0, &[1]),
            config(CONFIG_RESOURCE_TYPE_TOPIC, "a", "retention.ms", Some("1")),
            MetadataRecord::RemoveTopic(RemoveTopicRecord { topic_id: T1 }),
        ])
        .unwrap();
        assert!(d.deleted_topics().is_empty());
        assert!(d.changed_topics().is_empty());
        assert_eq!(d.local_changes(1), LocalReplicaChanges::default());
        let image = d.apply(4, 1);
        assert!(image.topics.is_empty() && image.topic_ids_by_name.is_empty());
        assert!(image.configs.is_empty(), "topic configs go with the topic");
    }

    #[test]
    fn remove_topic_drops_its_configs_and_apply_shares_untouched_topics() {
        let base = image_of(&[
            topic("a", T1),
            partition(T1, 0, &[1]),
            topic("b", T2),
            partition(T2, 0, &[1]),
            config(
                CONFIG_RESOURCE_TYPE_TOPIC,
                "a",
                "cleanup.policy",
                Some("compact"),
            ),
            config(CONFIG_RESOURCE_TYPE_TOPIC, "b", "retention.ms", Some("5")),
        ]);
        let mut d = MetadataDelta::new(base.clone());
        d.replay(&MetadataRecord::RemoveTopic(RemoveTopicRecord {
            topic_id: T1,
        }))
        .unwrap();
        assert_eq!(
            d.changed_configs().get(&ConfigResource::topic("a")),
            Some(&BTreeMap::new())
        );
        let image = d.apply(7, 1);
        assert!(image.config(&ConfigResource::topic("a")).is_none());
        assert_eq!(
            image
                .config(&ConfigResource::topic("b"))
                .and_then(|c| c.get("retention.ms")),
            Some(&"5".to_string())
        );
        assert!(Arc::ptr_eq(&image.topics[&T2], &base.topics[&T2]));
    }

    #[test]
    fn configs_set_and_delete() {
        let image = image_of(&[
            config(
                CONFIG_RESOURCE_TYPE_BROKER,
                "",
                "log.retention.ms",
                Some("10"),
            ),
            config(CONFIG_RESOURCE_TYPE_BROKER, "1", "a", Some("x")),
            config(CONFIG_RESOURCE_TYPE_BROKER, "1", "a", None),
            config(
                CONFIG_RESOURCE_TYPE_BROKER,
                "",
                "log.retention.ms",
                Some("20"),
            ),
        ]);
        assert_eq!(image.configs.len(), 1, "a resource without keys is absent");
        assert_eq!(
            image.config(&ConfigResource::broker("")).unwrap()["log.retention.ms"],
            "20"
        );
        let mut d = MetadataDelta::new(image);
        assert_eq!(
            d.replay(&config(3, "x", "k", Some("v"))).unwrap_err(),
            ReplayError::UnknownConfigResourceType { value: 3 }
        );
    }

    #[test]
    fn features_producer_ids_and_cluster_id() {
        let feature = |name: &str, level| {
            MetadataRecord::FeatureLevel(FeatureLevelRecord {
                name: name.into(),
                feature_level: level,
            })
        };
        let pids = |next| {
            MetadataRecord::ProducerIds(ProducerIdsRecord {
                broker_id: 1,
                broker_epoch: 0,
                next_producer_id: next,
            })
        };
        let cluster = |id: &str| {
            MetadataRecord::ClusterId(ClusterIdRecord {
                cluster_id: id.into(),
            })
        };
        let image = image_of(&[
            cluster("c1"),
            feature(METADATA_VERSION_FEATURE, 7),
            feature("group.version", 1),
            feature("group.version", 0),
            pids(1000),
            pids(2000),
        ]);
        assert_eq!(image.cluster_id.as_deref(), Some("c1"));
        assert_eq!(image.metadata_version(), Some(7));
        assert_eq!(image.features.len(), 1, "level 0 removes a feature");
        assert_eq!(image.next_producer_id, 2000);
        let mut d = MetadataDelta::new(image);
        assert_eq!(
            d.replay(&pids(2000)).unwrap_err(),
            ReplayError::ProducerIdNotIncreasing {
                current: 2000,
                next: 2000
            }
        );
        assert!(matches!(
            d.replay(&feature(METADATA_VERSION_FEATURE, 0)),
            Err(ReplayError::InvalidFeatureLevel { .. })
        ));
        assert!(matches!(
            d.replay(&cluster("c2")),
            Err(ReplayError::ClusterIdMismatch { .. })
        ));
        d.replay(&cluster("c1")).unwrap();
        assert!(d.is_empty());
    }

    #[test]
    fn broker_lifecycle_and_epochs() {
        let image = image_of(&[register(1, 10)]);
        let mut d = MetadataDelta::new(image);
        // Registration with a stale epoch, a change with the wrong epoch, a bad value.
        assert!(matches!(
            d.replay(&register(1, 10)),
            Err(ReplayError::StaleBrokerEpoch { .. })
        ));
        let change = |epoch, fenced, shutdown| {
            MetadataRecord::BrokerRegistrationChange(BrokerRegistrationChangeRecord {
                broker_id: 1,
                broker_epoch: epoch,
                fenced,
                in_controlled_shutdown: shutdown,
            })
        };
        assert_eq!(
            d.replay(&change(10, 2, 0)).unwrap_err(),
            ReplayError::InvalidFencingChange { value: 2 }
        );
        assert_eq!(
            d.replay(&change(10, 0, -1)).unwrap_err(),
            ReplayError::InvalidControlledShutdownChange { value: -1 }
        );
        d.replay(&change(10, -1, 0)).unwrap();
        assert!(!d.broker(1).unwrap().fenced);
        d.replay(&change(10, 0, 1)).unwrap();
        assert!(d.broker(1).unwrap().in_controlled_shutdown);
        assert!(!d.broker(1).unwrap().fenced, "0 leaves fencing alone");
        d.replay(&MetadataRecord::FenceBroker(
            crate::records::FenceBrokerRecord { id: 1, epoch: 10 },
        ))
        .unwrap();
        assert!(d.broker(1).unwrap().fenced);
        d.replay(&MetadataRecord::UnfenceBroker(
            crate::records::UnfenceBrokerRecord { id: 1, epoch: 10 },
        ))
        .unwrap();
        assert!(!d.broker(1).unwrap().fenced);
        // A newer registration (a restart) replaces it, fenced again.
        d.replay(&register(1, 20)).unwrap();
        assert!(d.broker(1).unwrap().fenced);
        assert!(!d.broker(1).unwrap().in_controlled_shutdown);
        assert!(matches!(
            d.replay(&MetadataRecord::UnregisterBroker(UnregisterBrokerRecord {
                broker_id: 1,
                broker_epoch: 10
            })),
            Err(ReplayError::StaleBrokerEpoch { .. })
        ));
        d.replay(&MetadataRecord::UnregisterBroker(UnregisterBrokerRecord {
            broker_id: 1,
            broker_epoch: 20,
        }))
        .unwrap();
        assert_eq!(
            d.replay(&change(20, 1, 0)).unwrap_err(),
            ReplayError::UnknownBroker { broker_id: 1 }
        );
        assert_eq!(d.changed_brokers().get(&1), Some(&None));
        let image = d.apply(30, 2);
        assert!(image.brokers.is_empty());
    }

    #[test]
    fn partition_validation() {
        let base = image_of(&[topic("a", T1), partition(T1, 0, &[1, 2])]);
        let mut d = MetadataDelta::new(base);
        assert_eq!(
            d.replay(&partition(T1, 0, &[1])).unwrap_err(),
            ReplayError::DuplicatePartition {
                topic_id: T1,
                partition_id: 0
            }
        );
        let MetadataRecord::Partition(mut p) = partition(T1, 1, &[1, 2]) else {
            unreachable!()
        };
        p.leader_recovery_state = 2;
        assert_eq!(
            d.replay(&MetadataRecord::Partition(p.clone())).unwrap_err(),
            ReplayError::InvalidLeaderRecoveryState { value: 2 }
        );
        p.leader_recovery_state = 0;
        p.isr = vec![];
        assert!(matches!(
            d.replay(&MetadataRecord::Partition(p.clone())),
            Err(ReplayError::InvalidPartition {
                reason: "empty ISR",
                ..
            })
        ));
        p.isr = vec![2];
        p.leader = 1;
        assert!(matches!(
            d.replay(&MetadataRecord::Partition(p.clone())),
            Err(ReplayError::InvalidPartition {
                reason: "leader not in ISR",
                ..
            })
        ));
        p.replicas = vec![1, 1];
        assert!(matches!(
            d.replay(&MetadataRecord::Partition(p.clone())),
            Err(ReplayError::InvalidPartition {
                reason: "duplicate replicas",
                ..
            })
        ));
        let mut c = PartitionChangeRecord::unchanged(T1, 0);
        c.leader_recovery_state = 3;
        assert_eq!(
            d.replay(&MetadataRecord::PartitionChange(c.clone()))
                .unwrap_err(),
            ReplayError::InvalidLeaderRecoveryState { value: 3 }
        );
        c.leader_recovery_state = -1;
        c.leader = -3;
        assert!(matches!(
            d.replay(&MetadataRecord::PartitionChange(c.clone())),
            Err(ReplayError::InvalidPartition { .. })
        ));
        // Dropping the leader from the ISR without moving leadership is refused.
        c.leader = NO_LEADER_CHANGE;
        c.isr = Some(vec![2]);
        assert!(matches!(
            d.replay(&MetadataRecord::PartitionChange(c.clone())),
            Err(ReplayError::InvalidPartition {
                reason: "leader not in ISR",
                ..
            })
        ));
        assert!(d.is_empty());
        c.leader = 2;
        d.replay(&MetadataRecord::PartitionChange(c)).unwrap();
        let p = d.partition(&T1, 0).unwrap();
        assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (2, 1, 1));
    }

    struct CountingPublisher(std::sync::atomic::AtomicUsize);

    impl MetadataPublisher for CountingPublisher {
        fn publish(&self, delta: &MetadataDelta, image: &Arc<MetadataImage>) {
            assert!(image.offset >= delta.base().offset);
            self.0.fetch_add(
                delta.changed_topics().len(),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
    }

    #[test]
    fn publishers_see_delta_and_image() {
        let counting = Arc::new(CountingPublisher(Default::default()));
        let publishers: Vec<Arc<dyn MetadataPublisher>> = vec![counting.clone()];
        let batch = MetadataBatch {
            offset: 3,
            epoch: 1,
            records: vec![topic("a", T1), partition(T1, 0, &[1])],
        };
        let mut d = MetadataDelta::new(Arc::new(MetadataImage::empty()));
        d.replay_all(&batch.records).unwrap();
        let image = d.clone().apply(batch.offset, batch.epoch);
        for p in &publishers {
            p.publish(&d, &image);
        }
        assert_eq!((image.offset, image.epoch), (3, 1));
        assert_eq!(counting.0.load(std::sync::atomic::Ordering::Relaxed), 1);
    }

    fn ace(id: Uuid, operation: i8) -> MetadataRecord {
        MetadataRecord::AccessControlEntry(AccessControlEntryRecord {
            id,
            resource_type: 2,
            resource_name: "t".into(),
            pattern_type: 3,
            principal: "User:alice".into(),
            host: "*".into(),
            operation,
            permission_type: 3,
        })
    }

    #[test]
    fn acl_replay_validates_ids_and_codes() {
        let empty = Arc::new(MetadataImage::empty());
        let a = Uuid::from_u128(1);
        let mut d = MetadataDelta::new(empty.clone());
        d.replay(&ace(a, 3)).unwrap();
        assert_eq!(
            d.replay(&ace(a, 4)),
            Err(ReplayError::DuplicateAclId { id: a })
        );
        // ANY (1) and UNKNOWN (0) are filter codes, never stored.
        let b = Uuid::from_u128(2);
        assert_eq!(
            d.replay(&ace(b, 1)),
            Err(ReplayError::InvalidAclCode {
                id: b,
                field: "Operation",
                value: 1
            })
        );
        assert_eq!(
            d.replay(&MetadataRecord::RemoveAccessControlEntry(
                RemoveAccessControlEntryRecord { id: b }
            )),
            Err(ReplayError::UnknownAcl { id: b })
        );
        let image = d.apply(1, 1);
        assert_eq!(image.acls.len(), 1);
        assert_eq!(image.acls[&a].principal, "User:alice");
        // A delta that does not touch ACLs shares the map; removing the ACL empties it.
        let mut d = MetadataDelta::new(image.clone());
        d.replay(&topic("x", T1)).unwrap();
        let next = d.apply(2, 1);
        assert!(Arc::ptr_eq(&next.acls, &image.acls));
        assert!(Arc::ptr_eq(
            &next.scram_credentials,
            &image.scram_credentials
        ));
        assert!(Arc::ptr_eq(&next.client_quotas, &image.client_quotas));
        let mut d = MetadataDelta::new(next);
        d.replay(&MetadataRecord::RemoveAccessControlEntry(
            RemoveAccessControlEntryRecord { id: a },
        ))
        .unwrap();
        // Removed, then created again under the same id within one delta: allowed.
        assert!(d.acl(&a).is_none());
        d.replay(&ace(a, 5)).unwrap();
        assert_eq!(d.changed_acls().len(), 1);
        let last = d.apply(3, 1);
        assert_eq!(
            last.acls[&a].operation,
            crate::security::AclOperation::Create
        );
    }

    #[test]
    fn scram_replay_upserts_and_removes() {
        let mut d = MetadataDelta::new(Arc::new(MetadataImage::empty()));
        let record = |mechanism: i8, iterations: i32| {
            MetadataRecord::UserScramCredential(UserScramCredentialRecord {
                name: "bob".into(),
                mechanism,
                salt: vec![1],
                stored_key: vec![2],
                server_key: vec![3],
                iterations,
            })
        };
        assert_eq!(
            d.replay(&record(3, 4096)),
            Err(ReplayError::UnknownScramMechanism { value: 3 })
        );
        d.replay(&record(1, 4096)).unwrap();
        d.replay(&record(1, 8192)).unwrap();
        let remove = |mechanism: i8| {
            MetadataRecord::RemoveUserScramCredential(RemoveUserScramCredentialRecord {
                name: "bob".into(),
                mechanism,
            })
        };
        assert_eq!(
            d.replay(&remove(2)),
            Err(ReplayError::UnknownScramCredential {
                name: "bob".into(),
                mechanism: 2
            })
        );
        let image = d.apply(1, 1);
        let key = ("bob".to_string(), ScramMechanism::ScramSha256);
        assert_eq!(image.scram_credentials[&key].iterations, 8192);
        let mut d = MetadataDelta::new(image);
        d.replay(&remove(1)).unwrap();
        assert!(d.apply(2, 1).scram_credentials.is_empty());
    }

    #[test]
    fn client_quota_replay_sets_and_removes_keys() {
        let quota = |entity: Vec<(&str, Option<&str>)>, key: &str, value: f64, remove: bool| {
            MetadataRecord::ClientQuota(ClientQuotaRecord {
                entity: entity
                    .into_iter()
                    .map(|(t, n)| crate::records::ClientQuotaEntityData {
                        entity_type: t.into(),
                        entity_name: n.map(str::to_string),
                    })
                    .collect(),
                key: key.into(),
                value,
                remove,
            })
        };
        let mut d = MetadataDelta::new(Arc::new(MetadataImage::empty()));
        assert!(matches!(
            d.replay(&quota(vec![], "producer_byte_rate", 1.0, false)),
            Err(ReplayError::InvalidClientQuotaEntity { .. })
        ));
        assert!(matches!(
            d.replay(&quota(
                vec![("user", None), ("user", Some("a"))],
                "producer_byte_rate",
                1.0,
                false
            )),
            Err(ReplayError::InvalidClientQuotaEntity { .. })
        ));
        let alice = vec![("user", Some("alice")), ("client-id", None)];
        d.replay(&quota(alice.clone(), "producer_byte_rate", 100.0, false))
            .unwrap();
        d.replay(&quota(alice.clone(), "consumer_byte_rate", 200.0, false))
            .unwrap();
        let image = d.apply(1, 1);
        let entity: ClientQuotaEntity = [
            ("user".to_string(), Some("alice".to_string())),
            ("client-id".to_string(), None),
        ]
        .into_iter()
        .collect();
        assert_eq!(image.client_quotas[&entity].len(), 2);
        let mut d = MetadataDelta::new(image);
        d.replay(&quota(alice.clone(), "producer_byte_rate", 0.0, true))
            .unwrap();
        d.replay(&quota(alice, "consumer_byte_rate", 0.0, true))
            .unwrap();
        assert!(d.apply(2, 1).client_quotas.is_empty());
    }
}
