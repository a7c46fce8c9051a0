//! `fjord-metadata`: Fjord's cluster metadata model (issue 8, design sections 3.1-3.2), the
//! KRaft way. Pure library: no tokio, no files, no sockets.
//!
//! Topics, partitions, brokers, configs, features and producer-id blocks live in one
//! replicated metadata log (Kafka's `__cluster_metadata`), written by the active
//! `QuorumController` and read by every node's `MetadataLoader`. This crate holds what both
//! sides share:
//!
//! * [`records`]: one struct per metadata record ([`MetadataRecord`]);
//! * [`codec`]: their bytes, Kafka's `ApiMessageAndVersion` framing ([`encode_batch`],
//!   [`decode_batch`]);
//! * [`image`]: the immutable [`MetadataImage`] at one offset;
//! * [`delta`]: [`MetadataDelta`], which replays (and validates) records on an image and
//!   applies into the next one, plus [`MetadataDelta::local_changes`] for the
//!   `ReplicaManager`;
//! * [`snapshot`]: [`image_to_records`], the image as records for snapshots;
//! * [`security`], [`acl_filter`]: ACLs, SCRAM credentials and client quotas as the image holds
//!   them, and Kafka's `AclBindingFilter` over ACLs;
//! * [`migration`]: [`bootstrap_records`] of a new log and [`migration_records`] that carry a
//!   single-node data dir (`topics.json`, ...) into it.
//!
//! # Records
//!
//! | record (apiKey) | fields | written on |
//! |---|---|---|
//! | RegisterBrokerRecord (0) | BrokerId, IncarnationId, BrokerEpoch, EndPoints, Features, Rack, Fenced, InControlledShutdown | BrokerRegistration |
//! | UnregisterBrokerRecord (1) | BrokerId, BrokerEpoch | UnregisterBroker |
//! | TopicRecord (2), RemoveTopicRecord (9) | Name, TopicId / TopicId | CreateTopics / DeleteTopics |
//! | PartitionRecord (3) | PartitionId, TopicId, Replicas, Isr, Removing/AddingReplicas, Leader, LeaderRecoveryState, LeaderEpoch, PartitionEpoch | CreateTopics, CreatePartitions |
//! | ConfigRecord (4) | ResourceType (2 topic, 4 broker), ResourceName, Name, Value (null = delete) | IncrementalAlterConfigs, CreateTopics |
//! | PartitionChangeRecord (5) | PartitionId, TopicId, Isr, Leader (-2 unchanged, -1 none), Replicas, Removing/AddingReplicas, LeaderRecoveryState | leader, ISR, assignment changes |
//! | FenceBrokerRecord (7), UnfenceBrokerRecord (8) | Id, Epoch | replayed, never written |
//! | FeatureLevelRecord (12) | Name, FeatureLevel | bootstrap |
//! | ProducerIdsRecord (15) | BrokerId, BrokerEpoch, NextProducerId | AllocateProducerIds |
//! | BrokerRegistrationChangeRecord (17) | BrokerId, BrokerEpoch, Fenced (1 / 0 / -1), InControlledShutdown | fence, unfence, controlled shutdown |
//! | UserScramCredentialRecord (11), RemoveUserScramCredentialRecord (22) | Name, Mechanism, Salt, StoredKey, ServerKey, Iterations / Name, Mechanism | AlterUserScramCredentials |
//! | ClientQuotaRecord (14) | Entity[] {EntityType, EntityName (null = default)}, Key, Value, Remove | AlterClientQuotas |
//! | AccessControlEntryRecord (18), RemoveAccessControlEntryRecord (19) | Id, ResourceType, ResourceName, PatternType, Principal, Host, Operation, PermissionType / Id | CreateAcls / DeleteAcls |
//! | NoOpRecord (20) | — | idle ticks |
//! | FjordClusterIdRecord (10000) | ClusterId | bootstrap only (Fjord's only own record) |
//!
//! # Epoch rules
//!
//! Replaying a `PartitionChangeRecord` (Kafka `PartitionRegistration.merge`) grows the partition
//! epoch by one, and grows the leader epoch by one whenever the record's Leader is not -2, even
//! when it names the current leader: that is how the controller forces a leader epoch bump. A
//! broker's epoch is the offset of the entry holding its `RegisterBrokerRecord`; every later
//! record about the broker must carry exactly that epoch. An image's `offset`/`epoch` are the
//! Raft index and term of the last entry applied.
//!
//! # Why Kafka's format
//!
//! The records, their field names, versions and the flexible wire encoding follow Kafka's
//! schemas so that Kafka's controller and image code, KIPs and intuition apply one to one when
//! reading Fjord, and so that the schema JSON is the spec of our bytes (golden tests are worked
//! out from it). Byte compatibility with Kafka tools is not a goal (design 1): Fjord picks one
//! version per record and adds the cluster-id record.

pub mod acl_filter;
pub mod codec;
pub mod delta;
pub mod image;
pub mod migration;
pub mod records;
pub mod security;
pub mod snapshot;

pub use acl_filter::AclBindingFilter;
pub use codec::{decode_batch, decode_record, encode_batch, encode_record, CodecError};
pub use delta::{
    LocalPartition, LocalReplicaChanges, MetadataBatch, MetadataDelta, MetadataPublisher,
    ReplayError, TopicDelta,
};
pub use image::{
    BrokerRegistration, ConfigResource, ConfigResourceType, FeatureRange, LeaderRecoveryState,
    MetadataImage, PartitionRegistration, TopicImage,
};
pub use migration::{bootstrap_records, migration_records, LegacyMetadata, LegacyTopic};
pub use records::*;
pub use snapshot::image_to_records;
