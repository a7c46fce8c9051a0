//! Snapshot records: the image written as records (Kafka `MetadataImage.write`), so that
//! replaying them on an empty image yields the same image. Snapshots
//! (`<offset>-<epoch>.checkpoint`) and the migration of a single-node data dir use them.
//!
//! Order: `FjordClusterIdRecord`, `FeatureLevelRecord`s (Kafka writes features first so a reader
//! learns `metadata.version` before anything else), brokers (`RegisterBrokerRecord` with their
//! current fenced / controlled-shutdown state), per topic a `TopicRecord` and its
//! `PartitionRecord`s, `ConfigRecord`s, and the `ProducerIdsRecord` (only once a block was
//! allocated; broker id and epoch -1 as Kafka's `ProducerIdsImage.write`), then the security
//! metadata: a `ClientQuotaRecord` per entity and key, an `AccessControlEntryRecord` per ACL (its
//! id kept), a `UserScramCredentialRecord` per user and mechanism.

use crate::image::MetadataImage;
use crate::records::{
    AccessControlEntryRecord, BrokerFeature, ClientQuotaRecord, ClusterIdRecord, ConfigRecord,
    FeatureLevelRecord, MetadataRecord, ProducerIdsRecord, RegisterBrokerRecord, TopicRecord,
    UserScramCredentialRecord,
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
    for (entity, values) in image.client_quotas.iter() {
        for (key, value) in values {
            out.push(MetadataRecord::ClientQuota(ClientQuotaRecord {
                entity: ClientQuotaRecord::entity_data(entity),
                key: key.clone(),
                value: *value,
                remove: false,
            }));
        }
    }
    for (id, acl) in image.acls.iter() {
        out.push(MetadataRecord::AccessControlEntry(
            AccessControlEntryRecord::new(*id, acl),
        ));
    }
    for ((user, mechanism), credential) in image.scram_credentials.iter() {
        out.push(MetadataRecord::UserScramCredential(
            UserScramCredentialRecord::new(user, *mechanism, credential),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use proptest::prelude::*;
    use uuid::Uuid;

    use super::*;
    use crate::codec::{decode_batch, encode_batch};
    use crate::delta::MetadataDelta;
    use crate::records::*;
    use crate::security::ScramMechanism;

    /// splitmix64: many choices from the two numbers proptest gives each step.
    struct Choices(u64);

    impl Choices {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
        fn coin(&mut self) -> bool {
            self.next() & 1 == 1
        }
        fn pick<T: Clone>(&mut self, items: &[T]) -> Option<T> {
            if items.is_empty() {
                return None;
            }
            Some(items[self.below(items.len() as u64) as usize].clone())
        }
        /// A non-empty subset of `from` (kept in `from`'s order), or of its first element.
        fn subset(&mut self, from: &[i32]) -> Vec<i32> {
            let bits = self.next();
            let mut out: Vec<i32> = from
                .iter()
                .enumerate()
                .filter(|(i, _)| bits >> i & 1 == 1)
                .map(|(_, b)| *b)
                .collect();
            if out.is_empty() {
                out.extend(from.first());
            }
            out
        }
        /// Distinct broker ids in a shuffled order (0..6; brokers need not be registered).
        fn replicas(&mut self) -> Vec<i32> {
            let mut all: Vec<i32> = (0..6).collect();
            for i in (1..all.len()).rev() {
                let j = self.below(i as u64 + 1) as usize;
                all.swap(i, j);
            }
            let n = 1 + self.below(4) as usize;
            all.truncate(n);
            all
        }
    }

    /// One step's records, valid on `image` (the controller's side of the contract).
    fn step_records(
        image: &MetadataImage,
        kind: u8,
        c: &mut Choices,
        step: u64,
    ) -> Vec<MetadataRecord> {
        let brokers: Vec<_> = image.brokers.values().cloned().collect();
        let topics: Vec<_> = image.topics.values().cloned().collect();
        let epoch = 1_000 + step as i64;
        match kind {
            0 | 1 => {
                let id = c.below(5) as i32;
                let endpoints = (0..1 + c.below(2))
                    .map(|i| BrokerEndpoint {
                        name: ["PLAINTEXT", "CONTROLLER"][i as usize].into(),
                        host: format!("host{id}"),
                        port: 9092 + c.below(100) as u16,
                        security_protocol: 0,
                    })
                    .collect();
                vec![MetadataRecord::RegisterBroker(RegisterBrokerRecord {
                    broker_id: id,
                    incarnation_id: Uuid::from_u128(c.next() as u128),
                    broker_epoch: epoch,
                    end_points: endpoints,
                    features: vec![BrokerFeature {
                        name: METADATA_VERSION_FEATURE.into(),
                        min_supported_version: 1,
                        max_supported_version: 1 + c.below(20) as i16,
                    }],
                    rack: c.coin().then(|| format!("rack{}", c.below(3))),
                    fenced: true,
                    in_controlled_shutdown: false,
                })]
            }
            2 => {
                let Some(b) = c.pick(&brokers) else {
                    return vec![];
                };
                let change = match c.below(3) {
                    0 => MetadataRecord::FenceBroker(FenceBrokerRecord {
                        id: b.id,
                        epoch: b.epoch,
                    }),
                    1 => MetadataRecord::UnfenceBroker(UnfenceBrokerRecord {
                        id: b.id,
                        epoch: b.epoch,
                    }),
                    _ => MetadataRecord::BrokerRegistrationChange(BrokerRegistrationChangeRecord {
                        broker_id: b.id,
                        broker_epoch: b.epoch,
                        fenced: c.below(3) as i8 - 1,
                        in_controlled_shutdown: c.below(2) as i8,
                    }),
                };
                vec![change]
            }
            3 => {
                let Some(b) = c.pick(&brokers) else {
                    return vec![];
                };
                vec![MetadataRecord::UnregisterBroker(UnregisterBrokerRecord {
                    broker_id: b.id,
                    broker_epoch: b.epoch,
                })]
            }
            4 | 5 => {
                let name = format!("t{}", c.below(6));
                if image.topic_by_name(&name).is_some() {
                    return vec![];
                }
                let topic_id = Uuid::from_u128(u128::from(c.next()) << 64 | u128::from(step));
                let mut out = vec![MetadataRecord::Topic(TopicRecord { name, topic_id })];
                for partition_id in 0..1 + c.below(3) as i32 {
                    out.push(MetadataRecord::Partition(random_partition(
                        c,
                        topic_id,
                        partition_id,
                    )));
                }
                out
            }
            6 => {
                let Some(t) = c.pick(&topics) else {
                    return vec![];
                };
                vec![MetadataRecord::RemoveTopic(RemoveTopicRecord {
                    topic_id: t.id,
                })]
            }
            7 => {
                // CreatePartitions: the next partition id.
                let Some(t) = c.pick(&topics) else {
                    return vec![];
                };
                let next = t.partitions.keys().next_back().map_or(0, |p| p + 1);
                vec![MetadataRecord::Partition(random_partition(c, t.id, next))]
            }
            8 | 9 => {
                let Some(t) = c.pick(&topics) else {
                    return vec![];
                };
                let pids: Vec<i32> = t.partitions.keys().copied().collect();
                let Some(pid) = c.pick(&pids) else {
                    return vec![];
                };
                let p = &t.partitions[&pid];
                let mut r = PartitionChangeRecord::unchanged(t.id, pid);
                let replicas = if c.coin() {
                    let next = c.replicas();
                    r.replicas = Some(next.clone());
                    r.adding_replicas = Some(if c.coin() { c.subset(&next) } else { vec![] });
                    r.removing_replicas = Some(if c.coin() { c.subset(&next) } else { vec![] });
                    next
                } else {
                    p.replicas.clone()
                };
                let isr_stays = p.isr.iter().all(|b| replicas.contains(b));
                let isr = if !isr_stays || c.coin() {
                    let isr = c.subset(&replicas);
                    r.isr = Some(isr.clone());
                    isr
                } else {
                    p.isr.clone()
                };
                let keep_leader_ok = p.leader == NO_LEADER || isr.contains(&p.leader);
                r.leader = match c.below(3) {
                    0 if keep_leader_ok => NO_LEADER_CHANGE,
                    1 => NO_LEADER,
                    _ => c.pick(&isr).unwrap_or(NO_LEADER),
                };
                r.leader_recovery_state = c.below(3) as i8 - 1;
                vec![MetadataRecord::PartitionChange(r)]
            }
            10 => {
                let mut names: Vec<String> = topics.iter().map(|t| t.name.clone()).collect();
                names.push("gone".into());
                let (resource_type, resource_name) = if c.coin() {
                    (
                        CONFIG_RESOURCE_TYPE_TOPIC,
                        c.pick(&names).unwrap_or_default(),
                    )
                } else {
                    (
                        CONFIG_RESOURCE_TYPE_BROKER,
                        c.pick(&["".to_string(), "1".into()]).unwrap_or_default(),
                    )
                };
                vec![MetadataRecord::Config(ConfigRecord {
                    resource_type,
                    resource_name,
                    name: format!("key.{}", c.below(3)),
                    value: (c.below(3) > 0).then(|| c.below(100).to_string()),
                })]
            }
            11 => vec![MetadataRecord::ProducerIds(ProducerIdsRecord {
                broker_id: 1,
                broker_epoch: epoch,
                next_producer_id: image.next_producer_id.max(0) + 1 + c.below(1000) as i64,
            })],
            12 => {
                let (name, level) = match c.below(3) {
                    0 => (METADATA_VERSION_FEATURE, 1 + c.below(20) as i16),
                    1 => (KRAFT_VERSION_FEATURE, c.below(2) as i16),
                    _ => ("group.version", c.below(3) as i16),
                };
                vec![MetadataRecord::FeatureLevel(FeatureLevelRecord {
                    name: name.into(),
                    feature_level: level,
                })]
            }
            13 => vec![MetadataRecord::ClusterId(ClusterIdRecord {
                cluster_id: "MkU3OEVBNTcwNTJENDM2Qk".into(),
            })],
            14 => {
                // CreateAcls or DeleteAcls.
                let ids: Vec<Uuid> = image.acls.keys().copied().collect();
                if c.coin() {
                    if let Some(id) = c.pick(&ids) {
                        return vec![MetadataRecord::RemoveAccessControlEntry(
                            RemoveAccessControlEntryRecord { id },
                        )];
                    }
                }
                vec![MetadataRecord::AccessControlEntry(
                    AccessControlEntryRecord {
                        id: Uuid::from_u128(u128::from(c.next()) << 64 | u128::from(step)),
                        resource_type: 2 + c.below(6) as i8,
                        resource_name: format!("r{}", c.below(3)),
                        pattern_type: 3 + c.below(2) as i8,
                        principal: format!("User:u{}", c.below(3)),
                        host: "*".into(),
                        operation: 2 + c.below(14) as i8,
                        permission_type: 2 + c.below(2) as i8,
                    },
                )]
            }
            15 => {
                // AlterUserScramCredentials or AlterClientQuotas.
                let user = format!("u{}", c.below(3));
                let mechanism = 1 + c.below(2) as i8;
                let exists = ScramMechanism::from_code(mechanism)
                    .is_some_and(|m| image.scram_credentials.contains_key(&(user.clone(), m)));
                match c.below(3) {
                    0 if exists => vec![MetadataRecord::RemoveUserScramCredential(
                        RemoveUserScramCredentialRecord {
                            name: user,
                            mechanism,
                        },
                    )],
                    0 | 1 => vec![MetadataRecord::UserScramCredential(
                        UserScramCredentialRecord {
                            name: user,
                            mechanism,
                            salt: vec![c.below(256) as u8; 4],
                            stored_key: vec![1; 32],
                            server_key: vec![2; 32],
                            iterations: 4096,
                        },
                    )],
                    _ => {
                        let mut entity = vec![ClientQuotaEntityData {
                            entity_type: "user".into(),
                            entity_name: c.coin().then_some(user),
                        }];
                        if c.coin() {
                            entity.push(ClientQuotaEntityData {
                                entity_type: "client-id".into(),
                                entity_name: c.coin().then(|| "c".to_string()),
                            });
                        }
                        vec![MetadataRecord::ClientQuota(ClientQuotaRecord {
                            entity,
                            key: ["producer_byte_rate", "consumer_byte_rate"][c.below(2) as usize]
                                .into(),
                            value: 1000.0 * c.below(5) as f64,
                            remove: c.below(3) == 0,
                        })]
                    }
                }
            }
            _ => vec![MetadataRecord::NoOp],
        }
    }

    fn random_partition(c: &mut Choices, topic_id: Uuid, partition_id: i32) -> PartitionRecord {
        let replicas = c.replicas();
        let isr = c.subset(&replicas);
        let leader = if c.below(4) == 0 { NO_LEADER } else { isr[0] };
        PartitionRecord {
            partition_id,
            topic_id,
            adding_replicas: if c.below(4) == 0 {
                c.subset(&replicas)
            } else {
                vec![]
            },
            removing_replicas: vec![],
            replicas,
            isr,
            leader,
            leader_recovery_state: c.below(2) as i8,
            leader_epoch: c.below(5) as i32,
            partition_epoch: c.below(5) as i32,
        }
    }

    /// Kafka's `localChanges` contract, checked from the two images alone.
    fn check_local_changes(prev: &MetadataImage, delta: &MetadataDelta, next: &MetadataImage) {
        for node in 0..6 {
            let changes = delta.local_changes(node);
            let mut leaders = BTreeSet::new();
            let mut followers = BTreeSet::new();
            let mut deletes = BTreeSet::new();
            for t in next.topics.values() {
                for (pid, p) in &t.partitions {
                    let before = prev.partition(&t.id, *pid);
                    let changed = before.is_none_or(|b| b.partition_epoch != p.partition_epoch);
                    if p.is_replica(node) && changed {
                        if p.leader == node {
                            leaders.insert((t.id, *pid));
                        } else {
                            followers.insert((t.id, *pid));
                        }
                    }
                }
            }
            for t in prev.topics.values() {
                for (pid, p) in &t.partitions {
                    let now = next.partition(&t.id, *pid);
                    if p.is_replica(node) && now.is_none_or(|n| !n.is_replica(node)) {
                        deletes.insert((t.id, t.name.clone(), *pid));
                    }
                }
            }
            let got_leaders: BTreeSet<_> = changes
                .leaders
                .iter()
                .map(|l| (l.topic_id, l.partition_id))
                .collect();
            let got_followers: BTreeSet<_> = changes
                .followers
                .iter()
                .map(|l| (l.topic_id, l.partition_id))
                .collect();
            assert_eq!(got_leaders, leaders, "leaders of node {node}");
            assert_eq!(got_followers, followers, "followers of node {node}");
            assert_eq!(
                changes.deletes.iter().cloned().collect::<BTreeSet<_>>(),
                deletes
            );
            for l in changes.leaders.iter().chain(&changes.followers) {
                assert_eq!(
                    Some(&l.registration),
                    next.partition(&l.topic_id, l.partition_id)
                );
            }
        }
    }

    fn replay_on_empty(records: &[MetadataRecord], offset: i64, epoch: i32) -> Arc<MetadataImage> {
        let mut delta = MetadataDelta::new(Arc::new(MetadataImage::empty()));
        for r in records {
            delta
                .replay(r)
                .unwrap_or_else(|e| panic!("replay of {r:?} failed: {e}"));
        }
        delta.apply(offset, epoch)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Random valid logs: one delta per step (checking `local_changes`), one delta over
        /// the whole log, the snapshot of the result, and the log through the codec all give
        /// the same image.
        #[test]
        fn log_snapshot_and_codec_agree(steps in prop::collection::vec((0u8..18, any::<u64>()), 0..80)) {
            let mut image = Arc::new(MetadataImage::empty());
            let mut log: Vec<MetadataRecord> = Vec::new();
            let mut batches: Vec<Vec<MetadataRecord>> = Vec::new();
            for (step, (kind, seed)) in steps.iter().enumerate() {
                let mut c = Choices(*seed);
                let records = step_records(&image, *kind, &mut c, step as u64);
                let mut delta = MetadataDelta::new(image.clone());
                for r in &records {
                    if let Err(e) = delta.replay(r) {
                        panic!("valid record refused: {r:?}: {e}");
                    }
                }
                let next = delta.clone().apply(step as i64, 1);
                check_local_changes(&image, &delta, &next);
                image = next;
                log.extend(records.iter().cloned());
                batches.push(records);
            }
            let (offset, epoch) = (image.offset, image.epoch);
            // The same log as one delta.
            prop_assert_eq!(&*replay_on_empty(&log, offset, epoch), &*image);
            // The snapshot of the image rebuilds it.
            let snapshot = image_to_records(&image);
            prop_assert_eq!(&*replay_on_empty(&snapshot, offset, epoch), &*image);
            // The snapshot of the snapshot is the same records (deterministic order).
            prop_assert_eq!(image_to_records(&replay_on_empty(&snapshot, offset, epoch)), snapshot);
            // Through the codec, batch by batch.
            let mut decoded = Vec::new();
            for b in &batches {
                decoded.extend(decode_batch(&encode_batch(b)).unwrap());
            }
            prop_assert_eq!(&decoded, &log);
            prop_assert_eq!(&*replay_on_empty(&decoded, offset, epoch), &*image);
        }
    }

    #[test]
    fn large_image_round_trips_through_snapshot_and_codec() {
        let mut records = Vec::new();
        for t in 0..2_000u128 {
            let topic_id = Uuid::from_u128(t + 1);
            records.push(MetadataRecord::Topic(TopicRecord {
                name: format!("topic-{t}"),
                topic_id,
            }));
            for p in 0..3 {
                let replicas = vec![p, (p + 1) % 3, (p + 2) % 3];
                records.push(MetadataRecord::Partition(PartitionRecord {
                    partition_id: p,
                    topic_id,
                    isr: replicas.clone(),
                    leader: replicas[0],
                    replicas,
                    removing_replicas: vec![],
                    adding_replicas: vec![],
                    leader_recovery_state: 0,
                    leader_epoch: 3,
                    partition_epoch: 7,
                }));
            }
        }
        let image = replay_on_empty(&records, 10, 2);
        assert_eq!(image.topics.len(), 2_000);
        let snapshot = image_to_records(&image);
        assert_eq!(snapshot.len(), records.len());
        let decoded = decode_batch(&encode_batch(&snapshot)).unwrap();
        assert_eq!(*replay_on_empty(&decoded, 10, 2), *image);
    }

    #[test]
    fn snapshot_order_starts_with_cluster_id_and_features() {
        let mut d = MetadataDelta::new(Arc::new(MetadataImage::empty()));
        d.replay(&MetadataRecord::ProducerIds(ProducerIdsRecord {
            broker_id: 1,
            broker_epoch: 3,
            next_producer_id: 5000,
        }))
        .unwrap();
        d.replay(&MetadataRecord::FeatureLevel(FeatureLevelRecord {
            name: METADATA_VERSION_FEATURE.into(),
            feature_level: 7,
        }))
        .unwrap();
        d.replay(&MetadataRecord::ClusterId(ClusterIdRecord {
            cluster_id: "c1".into(),
        }))
        .unwrap();
        let image = d.apply(3, 1);
        let records = image_to_records(&image);
        assert_eq!(
            records,
            vec![
                MetadataRecord::ClusterId(ClusterIdRecord {
                    cluster_id: "c1".into()
                }),
                MetadataRecord::FeatureLevel(FeatureLevelRecord {
                    name: METADATA_VERSION_FEATURE.into(),
                    feature_level: 7,
                }),
                MetadataRecord::ProducerIds(ProducerIdsRecord {
                    broker_id: -1,
                    broker_epoch: -1,
                    next_producer_id: 5000,
                }),
            ]
        );
        assert!(image_to_records(&MetadataImage::empty()).is_empty());
    }
}
