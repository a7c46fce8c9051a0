//! Records that carry a pre-cluster single-node data dir into the metadata log (design 3.4),
//! and the bootstrap records of a new log (design 2).
//!
//! The legacy files (`topics.json`, `broker-configs.json`, `producer-id-block`) are read by the
//! storage crate; their content is passed here as plain data so this crate stays free of files.
//! Every migrated partition gets replicas = ISR = `[node_id]`, leader `node_id`, leader epoch 0
//! and partition epoch 0: the leader epoch the single node already stamped in its batches.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::records::{
    ClusterIdRecord, ConfigRecord, FeatureLevelRecord, MetadataRecord, PartitionRecord,
    ProducerIdsRecord, TopicRecord, CONFIG_RESOURCE_TYPE_BROKER, CONFIG_RESOURCE_TYPE_TOPIC,
    KRAFT_VERSION_FEATURE, LEADER_RECOVERY_STATE_RECOVERED, METADATA_VERSION_FEATURE,
};

/// A topic of `topics.json`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegacyTopic {
    pub name: String,
    pub topic_id: Uuid,
    pub partitions: i32,
    pub configs: BTreeMap<String, String>,
}

/// What a single-node data dir holds besides its logs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LegacyMetadata {
    pub topics: Vec<LegacyTopic>,
    /// `broker-configs.json` cluster defaults (resource name "").
    pub cluster_default_broker_configs: BTreeMap<String, String>,
    /// `broker-configs.json` settings of this node (resource name = node id).
    pub broker_configs: BTreeMap<String, String>,
    /// `producer-id-block`, if a block was ever allocated.
    pub next_producer_id: Option<i64>,
}

/// The first entry of a new metadata log: `FjordClusterIdRecord` then the finalized features
/// (`metadata.version`, and `kraft.version` 0 as Kafka writes it).
pub fn bootstrap_records(cluster_id: &str, metadata_version: i16) -> Vec<MetadataRecord> {
    vec![
        MetadataRecord::ClusterId(ClusterIdRecord {
            cluster_id: cluster_id.to_string(),
        }),
        MetadataRecord::FeatureLevel(FeatureLevelRecord {
            name: METADATA_VERSION_FEATURE.to_string(),
            feature_level: metadata_version,
        }),
        MetadataRecord::FeatureLevel(FeatureLevelRecord {
            name: KRAFT_VERSION_FEATURE.to_string(),
            feature_level: 0,
        }),
    ]
}

/// The records that recreate `legacy` on node `node_id`, in replay order: per topic its
/// `TopicRecord`, `PartitionRecord`s and topic `ConfigRecord`s; the broker `ConfigRecord`s; the
/// `ProducerIdsRecord`. Meant to follow [`bootstrap_records`] on an empty log. The list may be
/// longer than one controller entry (`MAX_RECORDS_PER_USER_OP`); the caller decides how to
/// split it.
pub fn migration_records(node_id: i32, legacy: &LegacyMetadata) -> Vec<MetadataRecord> {
    let mut out = Vec::new();
    for topic in &legacy.topics {
        out.push(MetadataRecord::Topic(TopicRecord {
            name: topic.name.clone(),
            topic_id: topic.topic_id,
        }));
        for partition_id in 0..topic.partitions {
            out.push(MetadataRecord::Partition(PartitionRecord {
                partition_id,
                topic_id: topic.topic_id,
                replicas: vec![node_id],
                isr: vec![node_id],
                removing_replicas: vec![],
                adding_replicas: vec![],
                leader: node_id,
                leader_recovery_state: LEADER_RECOVERY_STATE_RECOVERED,
                leader_epoch: 0,
                partition_epoch: 0,
            }));
        }
        push_configs(
            &mut out,
            CONFIG_RESOURCE_TYPE_TOPIC,
            &topic.name,
            &topic.configs,
        );
    }
    push_configs(
        &mut out,
        CONFIG_RESOURCE_TYPE_BROKER,
        "",
        &legacy.cluster_default_broker_configs,
    );
    push_configs(
        &mut out,
        CONFIG_RESOURCE_TYPE_BROKER,
        &node_id.to_string(),
        &legacy.broker_configs,
    );
    if let Some(next_producer_id) = legacy.next_producer_id.filter(|n| *n >= 0) {
        out.push(MetadataRecord::ProducerIds(ProducerIdsRecord {
            broker_id: node_id,
            broker_epoch: -1,
            next_producer_id,
        }));
    }
    out
}

fn push_configs(
    out: &mut Vec<MetadataRecord>,
    resource_type: i8,
    resource_name: &str,
    configs: &BTreeMap<String, String>,
) {
    for (name, value) in configs {
        out.push(MetadataRecord::Config(ConfigRecord {
            resource_type,
            resource_name: resource_name.to_string(),
            name: name.clone(),
            value: Some(value.clone()),
        }));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::delta::MetadataDelta;
    use crate::image::{ConfigResource, LeaderRecoveryState, MetadataImage};

    #[test]
    fn migrated_single_node_image() {
        let legacy = LegacyMetadata {
            topics: vec![
                LegacyTopic {
                    name: "orders".into(),
                    topic_id: Uuid::from_u128(1),
                    partitions: 3,
                    configs: [("cleanup.policy".to_string(), "compact".to_string())].into(),
                },
                LegacyTopic {
                    name: "__consumer_offsets".into(),
                    topic_id: Uuid::from_u128(2),
                    partitions: 50,
                    configs: BTreeMap::new(),
                },
            ],
            cluster_default_broker_configs: [("log.retention.ms".to_string(), "1".to_string())]
                .into(),
            broker_configs: [("log.cleaner.threads".to_string(), "2".to_string())].into(),
            next_producer_id: Some(3000),
        };
        let mut records = bootstrap_records("MkU3OEVBNTcwNTJENDM2Qk", 7);
        records.extend(migration_records(1, &legacy));
        let mut delta = MetadataDelta::new(Arc::new(MetadataImage::empty()));
        delta.replay_all(&records).unwrap();
        let image = delta.apply(0, 0);
        assert_eq!(image.cluster_id.as_deref(), Some("MkU3OEVBNTcwNTJENDM2Qk"));
        assert_eq!(image.metadata_version(), Some(7));
        assert_eq!(image.topics.len(), 2);
        let orders = image.topic_by_name("orders").unwrap();
        assert_eq!(orders.id, Uuid::from_u128(1));
        assert_eq!(orders.partitions.len(), 3);
        let p = &orders.partitions[&2];
        assert_eq!(
            (p.replicas.as_slice(), p.isr.as_slice()),
            (&[1][..], &[1][..])
        );
        assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (1, 0, 0));
        assert_eq!(p.leader_recovery_state, LeaderRecoveryState::Recovered);
        assert_eq!(
            image
                .topic_by_name("__consumer_offsets")
                .unwrap()
                .partitions
                .len(),
            50
        );
        assert_eq!(
            image.config(&ConfigResource::topic("orders")).unwrap()["cleanup.policy"],
            "compact"
        );
        assert_eq!(
            image.config(&ConfigResource::broker("")).unwrap()["log.retention.ms"],
            "1"
        );
        assert_eq!(
            image.config(&ConfigResource::broker("1")).unwrap()["log.cleaner.threads"],
            "2"
        );
        assert_eq!(image.next_producer_id, 3000);
        // The node leads every migrated partition.
        let mut delta = MetadataDelta::new(Arc::new(MetadataImage::empty()));
        delta.replay_all(&records).unwrap();
        let local = delta.local_changes(1);
        assert_eq!(local.leaders.len(), 53);
        assert!(local.followers.is_empty() && local.deletes.is_empty());
    }
}
