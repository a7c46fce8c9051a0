//! Client-facing answers computed from a [`MetadataImage`], as Kafka's `KRaftMetadataCache`
//! computes them: the brokers clients may connect to, each partition's leader, replicas, ISR
//! and offline replicas, the controller id Metadata reports, the leader hint of KIP-951.
//!
//! Pure functions of one image and a listener name. The handlers call them once the broker
//! serves from the metadata log (issue 8); each request reads one image, so one answer never
//! mixes two metadata versions.

use fjord_metadata::{BrokerEndpoint, MetadataImage, PartitionRegistration, TopicImage};
use fjord_protocol::kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use fjord_protocol::kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use fjord_protocol::kafka_protocol::messages::{BrokerId, TopicName};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::ResponseError;

use crate::replica_manager::is_internal_topic;

/// The listener clients and brokers use; Fjord has one (security listeners come with issue 9).
pub const CLIENT_LISTENER_NAME: &str = "PLAINTEXT";
/// Kafka's `MetadataResponse.NO_LEADER_ID`.
pub const NO_LEADER_ID: i32 = -1;

/// Reads of one image for one listener.
#[derive(Clone, Copy)]
pub struct ImageView<'a> {
    image: &'a MetadataImage,
    listener: &'a str,
}

/// Where a partition's leader is, for KIP-951's `CurrentLeader` and `NodeEndpoints`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderHint {
    pub leader_id: i32,
    pub leader_epoch: i32,
    /// The leader's endpoint on the listener, when it has one.
    pub endpoint: Option<(String, u16, Option<String>)>,
}

impl<'a> ImageView<'a> {
    pub fn new(image: &'a MetadataImage, listener: &'a str) -> Self {
        Self { image, listener }
    }

    /// The endpoint of `broker_id` on our listener, fenced or not (Kafka's `getAliveEndpoint`
    /// does not look at fencing: a fenced broker leads nothing).
    fn endpoint(&self, broker_id: i32) -> Option<&'a BrokerEndpoint> {
        self.image
            .brokers
            .get(&broker_id)
            .and_then(|broker| broker.endpoint(self.listener))
    }

    /// Unfenced brokers with an endpoint on the listener, by id (`getAliveBrokerNodes`).
    pub fn alive_brokers(&self) -> Vec<MetadataResponseBroker> {
        self.image
            .brokers
            .values()
            .filter(|broker| !broker.fenced)
            .filter_map(|broker| {
                let endpoint = broker.endpoint(self.listener)?;
                Some(
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(broker.id))
                        .with_host(StrBytes::from_string(endpoint.host.clone()))
                        .with_port(i32::from(endpoint.port))
                        .with_rack(broker.rack.clone().map(StrBytes::from_string)),
                )
            })
            .collect()
    }

    /// DescribeCluster's brokers; fenced ones only when asked (v2 `IncludeFencedBrokers`).
    pub fn describe_cluster_brokers(&self, include_fenced: bool) -> Vec<DescribeClusterBroker> {
        self.image
            .brokers
            .values()
            .filter(|broker| include_fenced || !broker.fenced)
            .filter_map(|broker| {
                let endpoint = broker.endpoint(self.listener)?;
                Some(
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(broker.id))
                        .with_host(StrBytes::from_string(endpoint.host.clone()))
                        .with_port(i32::from(endpoint.port))
                        .with_rack(broker.rack.clone().map(StrBytes::from_string))
                        .with_is_fenced(broker.fenced),
                )
            })
            .collect()
    }

    /// The controller id Metadata and DescribeCluster report. Kafka's KRaft brokers answer a
    /// random alive broker (clients send controller-bound requests to any broker, which
    /// forwards them); `pick` chooses among the alive ids so callers decide the randomness and
    /// tests stay deterministic. `None` when no broker is alive.
    pub fn controller_id(&self, pick: impl FnOnce(usize) -> usize) -> Option<i32> {
        let alive: Vec<i32> = self
            .image
            .brokers
            .values()
            .filter(|broker| !broker.fenced)
            .map(|broker| broker.id)
            .collect();
        if alive.is_empty() {
            return None;
        }
        alive.get(pick(alive.len()) % alive.len()).copied()
    }

    /// Replicas on brokers that are unregistered, fenced or without the listener
    /// (`getOfflineReplicas`, without log-dir checks: Fjord has one log dir).
    pub fn offline_replicas(&self, partition: &PartitionRegistration) -> Vec<i32> {
        partition
            .replicas
            .iter()
            .copied()
            .filter(|id| {
                self.image
                    .brokers
                    .get(id)
                    .is_none_or(|broker| broker.fenced || broker.endpoint(self.listener).is_none())
            })
            .collect()
    }

    /// One partition of a Metadata answer (`getPartitionMetadata` for v1+, which does not
    /// filter replicas): LEADER_NOT_AVAILABLE with leader -1 when the leader has no endpoint
    /// (no leader, or an unregistered one); otherwise the leader with NONE.
    pub fn partition_metadata(
        &self,
        partition_index: i32,
        partition: &PartitionRegistration,
    ) -> MetadataResponsePartition {
        let (error, leader_id) = match self.endpoint(partition.leader) {
            Some(_) => (None, partition.leader),
            None => (Some(ResponseError::LeaderNotAvailable), NO_LEADER_ID),
        };
        MetadataResponsePartition::default()
            .with_error_code(error.map_or(0, |error| error.code()))
            .with_partition_index(partition_index)
            .with_leader_id(BrokerId(leader_id))
            .with_leader_epoch(partition.leader_epoch)
            .with_replica_nodes(partition.replicas.iter().copied().map(BrokerId).collect())
            .with_isr_nodes(partition.isr.iter().copied().map(BrokerId).collect())
            .with_offline_replicas(
                self.offline_replicas(partition)
                    .into_iter()
                    .map(BrokerId)
                    .collect(),
            )
    }

    /// One topic of a Metadata answer, partitions in index order.
    pub fn topic_metadata(
        &self,
        topic: &TopicImage,
        authorized_operations: i32,
    ) -> MetadataResponseTopic {
        MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
            .with_topic_id(topic.id)
            .with_is_internal(is_internal_topic(&topic.name))
            .with_partitions(
                topic
                    .partitions
                    .iter()
                    .map(|(index, partition)| self.partition_metadata(*index, partition))
                    .collect(),
            )
            .with_topic_authorized_operations(authorized_operations)
    }

    /// KIP-951: who leads `topic`'s partition now, for a NOT_LEADER_OR_FOLLOWER or
    /// FENCED_LEADER_EPOCH answer (Kafka `ReplicaManager.getCurrentLeader`). `None` when the
    /// partition is unknown.
    pub fn leader_hint(&self, topic: &TopicImage, partition_index: i32) -> Option<LeaderHint> {
        let partition = topic.partitions.get(&partition_index)?;
        let endpoint = self.endpoint(partition.leader).map(|endpoint| {
            let rack = self
                .image
                .brokers
                .get(&partition.leader)
                .and_then(|broker| broker.rack.clone());
            (endpoint.host.clone(), endpoint.port, rack)
        });
        Some(LeaderHint {
            leader_id: if endpoint.is_some() {
                partition.leader
            } else {
                NO_LEADER_ID
            },
            leader_epoch: partition.leader_epoch,
            endpoint,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use fjord_metadata::{
        MetadataDelta, MetadataRecord, PartitionChangeRecord, PartitionRecord,
        RegisterBrokerRecord, TopicRecord,
    };
    use uuid::Uuid;

    use super::*;

    const TOPIC_ID: Uuid = Uuid::from_u128(0x1234);

    fn register(id: i32, rack: Option<&str>, fenced: bool, epoch: i64) -> MetadataRecord {
        MetadataRecord::RegisterBroker(RegisterBrokerRecord {
            broker_id: id,
            incarnation_id: Uuid::from_u128(id as u128),
            broker_epoch: epoch,
            end_points: vec![BrokerEndpoint {
                name: CLIENT_LISTENER_NAME.to_string(),
                host: format!("host{id}"),
                port: 9090 + id as u16,
                security_protocol: 0,
            }],
            features: Vec::new(),
            rack: rack.map(str::to_string),
            fenced,
            in_controlled_shutdown: false,
        })
    }

    /// Brokers 1 (rack a), 2 (rack b), 3 (fenced); topic "t": partition 0 led by 1 with
    /// replicas [1,2,3], ISR [1,2]; partition 1 without leader; partition 2 led by 2 with
    /// replica 4 unregistered.
    fn image() -> Arc<MetadataImage> {
        let mut delta = MetadataDelta::new(Arc::new(MetadataImage::empty()));
        let records = vec![
            register(1, Some("a"), false, 10),
            register(2, Some("b"), false, 11),
            register(3, None, true, 12),
            MetadataRecord::Topic(TopicRecord {
                name: "t".to_string(),
                topic_id: TOPIC_ID,
            }),
            partition(0, &[1, 2, 3], &[1, 2], 1),
            partition(1, &[3], &[3], 3),
            partition(2, &[2, 4], &[2], 2),
        ];
        for record in &records {
            delta.replay(record).unwrap();
        }
        // Partition 1 loses its leader (broker 3 is fenced): leader epoch 1.
        let mut change = PartitionChangeRecord::unchanged(TOPIC_ID, 1);
        change.leader = -1;
        delta
            .replay(&MetadataRecord::PartitionChange(change))
            .unwrap();
        delta.apply(20, 1)
    }

    fn partition(index: i32, replicas: &[i32], isr: &[i32], leader: i32) -> MetadataRecord {
        MetadataRecord::Partition(PartitionRecord {
            partition_id: index,
            topic_id: TOPIC_ID,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            removing_replicas: Vec::new(),
            adding_replicas: Vec::new(),
            leader,
            leader_recovery_state: 0,
            leader_epoch: 0,
            partition_epoch: 0,
        })
    }

    #[test]
    fn alive_brokers_skip_fenced_ones_and_carry_racks() {
        let image = image();
        let view = ImageView::new(&image, CLIENT_LISTENER_NAME);
        let brokers = view.alive_brokers();
        let ids: Vec<i32> = brokers.iter().map(|b| b.node_id.0).collect();
        assert_eq!(ids, vec![1, 2]);
        assert_eq!(brokers[0].host.as_str(), "host1");
        assert_eq!(brokers[0].port, 9091);
        assert_eq!(brokers[1].rack.as_ref().map(|r| r.as_str()), Some("b"));
        let with_fenced = view.describe_cluster_brokers(true);
        assert_eq!(with_fenced.len(), 3);
        assert!(with_fenced[2].is_fenced);
        assert_eq!(view.describe_cluster_brokers(false).len(), 2);
        // Another listener name finds nobody.
        assert!(ImageView::new(&image, "SSL").alive_brokers().is_empty());
    }

    #[test]
    fn partitions_report_leader_replicas_isr_and_offline_replicas() {
        let image = image();
        let view = ImageView::new(&image, CLIENT_LISTENER_NAME);
        let topic = image.topic_by_name("t").unwrap();
        let answer = view.topic_metadata(topic, -2147483648);
        assert_eq!(answer.topic_id, TOPIC_ID);
        assert_eq!(answer.partitions.len(), 3);

        let p0 = &answer.partitions[0];
        assert_eq!(p0.error_code, 0);
        assert_eq!(p0.leader_id.0, 1);
        assert_eq!(
            p0.replica_nodes.iter().map(|b| b.0).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(
            p0.isr_nodes.iter().map(|b| b.0).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(
            p0.offline_replicas.iter().map(|b| b.0).collect::<Vec<_>>(),
            vec![3]
        );

        let p1 = &answer.partitions[1];
        assert_eq!(p1.error_code, ResponseError::LeaderNotAvailable.code());
        assert_eq!(p1.leader_id.0, NO_LEADER_ID);
        assert_eq!(p1.leader_epoch, 1, "the leader change bumped the epoch");

        let p2 = &answer.partitions[2];
        assert_eq!(p2.error_code, 0);
        assert_eq!(
            p2.offline_replicas.iter().map(|b| b.0).collect::<Vec<_>>(),
            vec![4]
        );
        assert!(!answer.is_internal);
    }

    #[test]
    fn controller_id_is_an_alive_broker_and_leader_hints_name_the_leader() {
        let image = image();
        let view = ImageView::new(&image, CLIENT_LISTENER_NAME);
        assert_eq!(view.controller_id(|_| 0), Some(1));
        assert_eq!(view.controller_id(|_| 1), Some(2));
        assert_eq!(
            view.controller_id(|n| n + 1),
            Some(2),
            "out-of-range picks wrap"
        );
        assert_eq!(
            ImageView::new(&MetadataImage::empty(), CLIENT_LISTENER_NAME).controller_id(|_| 0),
            None
        );
        let topic = image.topic_by_name("t").unwrap();
        assert_eq!(
            view.leader_hint(topic, 0),
            Some(LeaderHint {
                leader_id: 1,
                leader_epoch: 0,
                endpoint: Some(("host1".to_string(), 9091, Some("a".to_string()))),
            })
        );
        assert_eq!(
            view.leader_hint(topic, 1),
            Some(LeaderHint {
                leader_id: NO_LEADER_ID,
                leader_epoch: 1,
                endpoint: None,
            })
        );
        assert_eq!(view.leader_hint(topic, 9), None);
    }
}
