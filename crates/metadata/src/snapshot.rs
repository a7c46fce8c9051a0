//! Snapshot records: the image written as records (Kafka `MetadataImage.write`), so that
//! replaying them on an empty image yields the same image. Snapshots
//! (`<offset>-<epoch>.checkpoint`) and the migration of a single-node data dir use them.
//!
//! Order: `FjordClusterIdRecord`, `FeatureLevelRecord`s (Kafka writes features first so a reader
//! learns `metadata.version` before anything else), brokers (`RegisterBrokerRecord` with their
//! current fenced / controlled-shutdown state), per topic a `TopicRecord` and its
//! `PartitionRecord`s, `ConfigRecord`s, and the `ProducerIdsRecord` (only once a block was
//! allocated; broker id and epoch -1 as Kafka's `ProducerIdsImage.write`).

use crate::image::MetadataImage;
use crate::records::{
    BrokerFeature, ClusterIdRecord, ConfigRecord, FeatureLevelRecord, MetadataRecord,
    ProducerIdsRecord, RegisterBrokerRecord, TopicRecord,
};

/// The records that rebuild `image` from the empty image.
pub fn image_to_records(image: &MetadataImage) -> Vec<MetadataRecord> {
    let mut out = Vec::new();
    if let Some(cluster_id) = &image.cluster_id {
        out.push(MetadataRecord::ClusterId(ClusterIdRecord {
            cluster_id: cluster_id.clone(),
        }));
    }
    for (name, level) in &image.features {
        out.push(MetadataRecord::FeatureLevel(FeatureLevelRecord {
            name: name.clone(),
            feature_level: *level,
        }));
    }
    for b in image.brokers.values() {
        out.push(MetadataRecord::RegisterBroker(RegisterBrokerRecord {
            broker_id: b.id,
            incarnation_id: b.incarnation_id,
            broker_epoch: b.epoch,
            end_points: b.endpoints.clone(),
            features: b
                .supported_features
                .iter()
                .map(|(name, range)| BrokerFeature {
                    name: name.clone(),
                    min_supported_version: range.min,
                    max_supported_version: range.max,
                })
                .collect(),
            rack: b.rack.clone(),
            fenced: b.fenced,
            in_controlled_shutdown: b.in_controlled_shutdown,
        }));
    }
    for t in image.topics.values() {
        out.push(MetadataRecord::Topic(TopicRecord {
            name: t.name.clone(),
            topic_id: t.id,
        }));
        for (pid, p) in &t.partitions {
            out.push(MetadataRecord::Partition(p.to_record(t.id, *pid)));
        }
    }
    for (resource, configs) in &image.configs {
        for (name, value) in configs {
            out.push(MetadataRecord::Config(ConfigRecord {
                resource_type: resource.resource_type.as_i8(),
                resource_name: resource.name.clone(),
                name: name.clone(),
                value: Some(value.clone()),
            }));
        }
    }
    if image.next_producer_id >= 0 {
        out.push(MetadataRecord::ProducerIds(ProducerIdsRecord {
            broker_id: -1,
            broker_epoch: -1,
            next_producer_id: image.next_producer_id,
        }));
    }
    out
}
