//! The broker as a state machine over the metadata image: logs opened and deleted as deltas
//! arrive, followers and non-hosted partitions answering NOT_LEADER_OR_FOLLOWER with KIP-951
//! hints, and a pre-cluster data dir migrated into the metadata log.

use fjord_broker::testing::CompleteNow;
use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use fjord_broker::controller_channel::{ControllerChannel, ControllerChannelError};
use fjord_broker::node_channel::BoxFuture;
use fjord_broker::testing::SingleNode;
use fjord_broker::{Broker, BrokerConfig, Outcome};
use fjord_controller::{ControllerReply, ControllerRequest};
use fjord_metadata::{
    BrokerEndpoint, ConfigRecord, ConfigResource, MetadataDelta, MetadataImage, MetadataRecord,
    PartitionChangeRecord, PartitionRecord, RegisterBrokerRecord, RemoveTopicRecord, TopicRecord,
    CONFIG_RESOURCE_TYPE_TOPIC,
};
use fjord_protocol::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use fjord_protocol::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsTopic,
};
use fjord_protocol::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use fjord_protocol::kafka_protocol::messages::*;
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ApiKey, RequestKind, ResponseError, ResponseKind};
use uuid::Uuid;

const TOPIC_ID: Uuid = Uuid::from_u128(0xfeed);
const CLUSTER_ID: &str = "image-test-cluster-00A";

/// A controller channel for brokers whose images the test builds itself: nothing may reach it.
struct NoController;

impl ControllerChannel for NoController {
    fn send(
        &self,
        request: ControllerRequest,
        _timeout_ms: u64,
    ) -> BoxFuture<'_, Result<ControllerReply, ControllerChannelError>> {
        panic!("unexpected controller request {request:?}")
    }
}

fn config(dir: &std::path::Path) -> BrokerConfig {
    let values = BTreeMap::from([
        ("data.dir".to_string(), dir.display().to_string()),
        ("auto.create.topics.enable".to_string(), "false".to_string()),
    ]);
    BrokerConfig::from_settings(&values).unwrap()
}

fn register(id: i32, epoch: i64) -> MetadataRecord {
    MetadataRecord::RegisterBroker(RegisterBrokerRecord {
        broker_id: id,
        incarnation_id: Uuid::from_u128(id as u128),
        broker_epoch: epoch,
        end_points: vec![BrokerEndpoint {
            name: "PLAINTEXT".to_string(),
            host: format!("host{id}"),
            port: 9090 + id as u16,
            security_protocol: 0,
        }],
        features: Vec::new(),
        rack: Some(format!("rack{id}")),
        fenced: false,
        in_controlled_shutdown: false,
    })
}

fn partition(id: i32, replicas: &[i32], leader: i32, leader_epoch: i32) -> MetadataRecord {
    MetadataRecord::Partition(PartitionRecord {
        partition_id: id,
        topic_id: TOPIC_ID,
        replicas: replicas.to_vec(),
        isr: replicas.to_vec(),
        removing_replicas: Vec::new(),
        adding_replicas: Vec::new(),
        leader,
        leader_recovery_state: 0,
        leader_epoch,
        partition_epoch: 0,
    })
}

fn apply(
    base: &Arc<MetadataImage>,
    records: &[MetadataRecord],
) -> (MetadataDelta, Arc<MetadataImage>) {
    let mut delta = MetadataDelta::new(base.clone());
    for record in records {
        delta.replay(record).unwrap();
    }
    let image = delta.clone().apply(base.offset + 1, 1);
    (delta, image)
}

/// Brokers 1 (this one) and 2; topic "t": partition 0 follows broker 2 (replicas 1, 2),
/// partition 1 lives on broker 2 only, partition 2 is led here.
fn cluster_image() -> Arc<MetadataImage> {
    let base = Arc::new(MetadataImage::empty());
    let (_, image) = apply(
        &base,
        &[
            MetadataRecord::ClusterId(fjord_metadata::ClusterIdRecord {
                cluster_id: CLUSTER_ID.to_string(),
            }),
            register(1, 0),
            register(2, 0),
            MetadataRecord::Topic(TopicRecord {
                name: "t".to_string(),
                topic_id: TOPIC_ID,
            }),
            partition(0, &[1, 2], 2, 3),
            partition(1, &[2], 2, 0),
            partition(2, &[1], 1, 0),
        ],
    );
    image
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn call(broker: &Broker, api_key: ApiKey, version: i16, request: RequestKind) -> ResponseKind {
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version);
    match block_on(broker.handle(&header, request))
        .into_inline()
        .unwrap()
    {
        Outcome::Respond(response) => response,
        other => panic!("unexpected outcome {other:?}"),
    }
}

fn batch() -> Bytes {
    Bytes::from(fjord_protocol::batch_builder::encode_values(1_000, 2, b"v"))
}

/// acks=1: these tests are about who leads; the followers of `cluster_image` never fetch,
/// so acks=all would wait for them (and time out).
fn produce(broker: &Broker, partition: i32) -> ProduceResponse {
    let request =
        ProduceRequest::default()
            .with_acks(1)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(batch()))])]);
    let ResponseKind::Produce(response) =
        call(broker, ApiKey::Produce, 11, RequestKind::Produce(request))
    else {
        panic!("not a produce response")
    };
    response
}

#[test]
fn followers_and_remote_partitions_answer_not_leader_with_kip_951_hints() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(config(dir.path()), cluster_image(), Arc::new(NoController)).unwrap();
    assert_eq!(broker.cluster_id(), CLUSTER_ID);
    let topic = broker.replica_manager().topic("t").unwrap();
    assert_eq!(topic.partitions.len(), 3);
    // Logs exist for the replicas assigned here, with partition.metadata.
    assert!(topic.partitions[0].is_hosted() && !topic.partitions[0].is_leader());
    assert!(!topic.partitions[1].is_hosted());
    assert!(topic.partitions[2].is_leader());
    assert!(dir.path().join("t-0/partition.metadata").exists());
    assert!(!dir.path().join("t-1").exists());
    assert_eq!(topic.partitions[0].leader_epoch(), 3);

    // Produce v11: NOT_LEADER_OR_FOLLOWER with CurrentLeader and the leader's endpoint.
    let response = produce(&broker, 0);
    let p = &response.responses[0].partition_responses[0];
    assert_eq!(p.error_code, ResponseError::NotLeaderOrFollower.code());
    assert_eq!(
        (p.current_leader.leader_id.0, p.current_leader.leader_epoch),
        (2, 3)
    );
    assert_eq!(response.node_endpoints.len(), 1);
    let endpoint = &response.node_endpoints[0];
    assert_eq!(
        (endpoint.node_id.0, endpoint.host.as_str(), endpoint.port),
        (2, "host2", 9092)
    );
    assert_eq!(endpoint.rack.as_deref(), Some("rack2"));
    // A partition of a known topic not hosted here: NOT_LEADER_OR_FOLLOWER too.
    let response = produce(&broker, 1);
    let p = &response.responses[0].partition_responses[0];
    assert_eq!(p.error_code, ResponseError::NotLeaderOrFollower.code());
    assert_eq!(p.current_leader.leader_id.0, 2);
    // The partition led here takes the write.
    let response = produce(&broker, 2);
    assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
    assert!(response.node_endpoints.is_empty());

    // Consumer Fetch v16: a partition not hosted here answers as Produce, with NodeEndpoints;
    // the follower replica serves it (KIP-392: v11+ consumers may read from followers).
    let fetch = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic_id(TOPIC_ID)
            .with_partitions(
                (0..3)
                    .map(|p| {
                        FetchPartition::default()
                            .with_partition(p)
                            .with_partition_max_bytes(1 << 20)
                    })
                    .collect(),
            )]);
    let ResponseKind::Fetch(response) = call(
        &broker,
        ApiKey::Fetch,
        16,
        RequestKind::Fetch(fetch.clone()),
    ) else {
        panic!("not a fetch response")
    };
    let partitions = &response.responses[0].partitions;
    let codes: Vec<i16> = partitions.iter().map(|p| p.error_code).collect();
    let not_leader = ResponseError::NotLeaderOrFollower.code();
    assert_eq!(codes, vec![0, not_leader, 0]);
    assert_eq!(partitions[0].preferred_read_replica.0, -1);
    assert_eq!(partitions[1].current_leader.leader_id.0, 2);
    assert_eq!(partitions[1].current_leader.leader_epoch, 0);
    assert_eq!(
        partitions[2].records.as_ref().map(|r| r.is_empty()),
        Some(false)
    );
    assert_eq!(response.node_endpoints.len(), 1);
    assert_eq!(response.node_endpoints[0].node_id.0, 2);
    // Before v11 (no client metadata) only the leader serves consumers.
    let fetch_v10 = fetch.with_topics(vec![FetchTopic::default()
        .with_topic(TopicName(StrBytes::from_static_str("t")))
        .with_partitions(vec![FetchPartition::default()
            .with_partition(0)
            .with_partition_max_bytes(1 << 20)])]);
    let ResponseKind::Fetch(response) =
        call(&broker, ApiKey::Fetch, 10, RequestKind::Fetch(fetch_v10))
    else {
        panic!("not a fetch response")
    };
    assert_eq!(response.responses[0].partitions[0].error_code, not_leader);

    // ListOffsets: the leader only.
    let list = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(
                (0..3)
                    .map(|p| {
                        ListOffsetsPartition::default()
                            .with_partition_index(p)
                            .with_timestamp(-1)
                    })
                    .collect(),
            )]);
    let ResponseKind::ListOffsets(response) = call(
        &broker,
        ApiKey::ListOffsets,
        7,
        RequestKind::ListOffsets(list),
    ) else {
        panic!("not a list offsets response")
    };
    let answers: Vec<(i16, i64)> = response.topics[0]
        .partitions
        .iter()
        .map(|p| (p.error_code, p.offset))
        .collect();
    assert_eq!(answers, vec![(not_leader, -1), (not_leader, -1), (0, 2)]);

    // Metadata answers from the image: both brokers, leaders and replicas as registered.
    let ResponseKind::Metadata(metadata) = call(
        &broker,
        ApiKey::Metadata,
        12,
        RequestKind::Metadata(MetadataRequest::default().with_topics(None)),
    ) else {
        panic!("not a metadata response")
    };
    assert_eq!(metadata.brokers.len(), 2);
    let leaders: Vec<(i32, i32)> = metadata.topics[0]
        .partitions
        .iter()
        .map(|p| (p.leader_id.0, p.leader_epoch))
        .collect();
    assert_eq!(leaders, vec![(2, 3), (2, 0), (1, 0)]);
    broker.close().unwrap();
}

#[test]
fn apply_delta_opens_moves_and_deletes_logs() {
    let dir = tempfile::tempdir().unwrap();
    let image = cluster_image();
    let broker = Broker::open(config(dir.path()), image.clone(), Arc::new(NoController)).unwrap();
    assert!(!dir.path().join("t-1").exists());

    // Partition 1 gains a replica here and this node becomes its leader; partition 0's
    // leadership moves here too (leader epoch bump); the topic's configs change.
    let mut move_here = PartitionChangeRecord::unchanged(TOPIC_ID, 1);
    move_here.replicas = Some(vec![2, 1]);
    move_here.isr = Some(vec![2, 1]);
    move_here.leader = 1;
    let mut elect_here = PartitionChangeRecord::unchanged(TOPIC_ID, 0);
    elect_here.leader = 1;
    let (delta, image) = apply(
        &image,
        &[
            MetadataRecord::PartitionChange(move_here),
            MetadataRecord::PartitionChange(elect_here),
            MetadataRecord::Config(ConfigRecord {
                resource_type: CONFIG_RESOURCE_TYPE_TOPIC,
                resource_name: "t".to_string(),
                name: "retention.ms".to_string(),
                value: Some("1234".to_string()),
            }),
        ],
    );
    broker.publish_metadata(&delta, &image).unwrap();
    let topic = broker.replica_manager().topic("t").unwrap();
    assert!(
        topic.partitions[1].is_leader(),
        "a new local leader has a log"
    );
    assert!(dir.path().join("t-1/partition.metadata").exists());
    assert!(topic.partitions[0].is_leader());
    assert_eq!(topic.partitions[0].leader_epoch(), 4);
    assert_eq!(
        topic.configs.get("retention.ms").map(String::as_str),
        Some("1234")
    );
    assert_eq!(broker.image().offset, image.offset);
    assert_eq!(
        produce(&broker, 0).responses[0].partition_responses[0].error_code,
        0
    );

    // Partition 2 moves away from this node entirely: its log goes.
    let mut move_away = PartitionChangeRecord::unchanged(TOPIC_ID, 2);
    move_away.replicas = Some(vec![2]);
    move_away.isr = Some(vec![2]);
    move_away.leader = 2;
    let (delta, image) = apply(&image, &[MetadataRecord::PartitionChange(move_away)]);
    broker.publish_metadata(&delta, &image).unwrap();
    assert!(!dir.path().join("t-2").exists());
    let topic = broker.replica_manager().topic("t").unwrap();
    assert!(!topic.partitions[2].is_hosted());
    assert_eq!(topic.partitions[2].state().leader, 2);
    assert_eq!(topic.partitions[0].state().leader, 1);

    // The topic is deleted: every local log goes, and the table forgets it.
    let (delta, image) = apply(
        &image,
        &[MetadataRecord::RemoveTopic(RemoveTopicRecord {
            topic_id: TOPIC_ID,
        })],
    );
    broker.publish_metadata(&delta, &image).unwrap();
    assert!(broker.replica_manager().topic("t").is_none());
    assert!(!dir.path().join("t-0").exists() && !dir.path().join("t-1").exists());
    // A waiter sees the published image.
    assert!(block_on(
        broker.wait_for_metadata(|i| i.topic_by_name("t").is_none(), 0)
    ));
    assert!(!block_on(
        broker.wait_for_metadata(|i| i.topic_by_name("t").is_some(), 10)
    ));
    broker.close().unwrap();
}

#[test]
fn a_legacy_data_dir_is_migrated_into_the_metadata_log() {
    let dir = tempfile::tempdir().unwrap();
    let legacy_id = Uuid::from_u128(0xabc);
    // A data dir as the single-node release left it: topics.json with configs,
    // broker-configs.json, producer-id-block, meta.properties, a log with data.
    {
        let (manager, _) = fjord_storage::LogManager::open(dir.path()).unwrap();
        manager
            .write_meta_properties(&fjord_storage::MetaProperties {
                version: 1,
                node_id: 1,
                cluster_id: CLUSTER_ID.to_string(),
            })
            .unwrap();
        manager
            .save_topics(&[fjord_storage::TopicRecord {
                name: "orders".to_string(),
                topic_id: legacy_id,
                partitions: 2,
                configs: BTreeMap::from([("retention.ms".to_string(), "86400000".to_string())]),
            }])
            .unwrap();
        manager
            .save_dynamic_broker_configs(&fjord_storage::DynamicBrokerConfigs {
                cluster_default: BTreeMap::from([(
                    "log.retention.ms".to_string(),
                    "7200000".to_string(),
                )]),
                broker: BTreeMap::from([("message.max.bytes".to_string(), "500000".to_string())]),
            })
            .unwrap();
        fjord_storage::producer_ids::save_producer_id_block(dir.path(), 5_000).unwrap();
        let mut log = manager
            .open_log("orders", 1, fjord_storage::LogConfig::default(), true, 0)
            .unwrap();
        let mut records = batch().to_vec();
        log.append(&mut records, 0, 1_000, fjord_storage::AppendOrigin::Client)
            .unwrap();
        log.close().unwrap();
        manager.write_clean_shutdown_marker().unwrap();
    }

    // What the legacy files hold, and the image their records make.
    let legacy = fjord_broker::migration::read_legacy_metadata(dir.path())
        .unwrap()
        .expect("topics.json exists");
    assert_eq!(legacy.topics.len(), 1);
    assert_eq!(legacy.topics[0].topic_id, legacy_id);
    assert_eq!(legacy.next_producer_id, Some(5_000));
    assert_eq!(legacy.broker_configs["message.max.bytes"], "500000");
    let mut records = fjord_metadata::bootstrap_records(CLUSTER_ID, 21);
    records.extend(fjord_metadata::migration_records(1, &legacy));
    let (_, image) = apply(&Arc::new(MetadataImage::empty()), &records);
    assert_eq!(image.topic_by_name("orders").unwrap().partitions.len(), 2);
    assert_eq!(
        image
            .config(&ConfigResource::broker(""))
            .unwrap()
            .get("log.retention.ms")
            .map(String::as_str),
        Some("7200000")
    );

    // The broker migrates at its first start and serves the old data.
    let node = SingleNode::start(config(dir.path())).unwrap();
    assert_eq!(node.cluster_id(), CLUSTER_ID);
    let topic = node.replica_manager().topic("orders").unwrap();
    assert_eq!(topic.id, legacy_id);
    assert_eq!(topic.configs["retention.ms"], "86400000");
    assert_eq!(topic.partitions[1].offsets().unwrap().log_end_offset, 2);
    assert!(dir.path().join("orders-1/partition.metadata").exists());
    let effective = node.config();
    assert_eq!(effective.log_retention_ms, 7_200_000);
    assert_eq!(effective.message_max_bytes, 500_000);
    for name in ["topics.json", "broker-configs.json", "producer-id-block"] {
        assert!(!dir.path().join(name).exists(), "{name} renamed");
        assert!(dir.path().join(format!("{name}.migrated")).exists());
    }
    // Producer ids continue past the migrated block.
    let (producer_id, _) = node
        .transaction_coordinator()
        .init_producer_id(None, 0, None, 1_000)
        .now()
        .unwrap();
    assert!(producer_id >= 5_000, "{producer_id}");
    node.close().unwrap();
    drop(node);

    // A restart finds everything in the metadata log.
    let node = SingleNode::start(config(dir.path())).unwrap();
    let topic = node.replica_manager().topic("orders").unwrap();
    assert_eq!(topic.id, legacy_id);
    assert_eq!(topic.partitions[1].offsets().unwrap().log_end_offset, 2);
    node.close().unwrap();
}

/// A controller that never answers in time.
struct UnreachableController;

impl ControllerChannel for UnreachableController {
    fn send(
        &self,
        _request: ControllerRequest,
        timeout_ms: u64,
    ) -> BoxFuture<'_, Result<ControllerReply, ControllerChannelError>> {
        Box::pin(async move { Err(ControllerChannelError::Timeout { timeout_ms }) })
    }
}

#[test]
fn an_unreachable_controller_answers_request_timed_out() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(
        config(dir.path()),
        cluster_image(),
        Arc::new(UnreachableController),
    )
    .unwrap();
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(50)
        .with_topics(vec![create_topics_request::CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("new")))
            .with_num_partitions(1)
            .with_replication_factor(1)]);
    let ResponseKind::CreateTopics(response) = call(
        &broker,
        ApiKey::CreateTopics,
        7,
        RequestKind::CreateTopics(request),
    ) else {
        panic!("not a create topics response")
    };
    assert_eq!(
        response.topics[0].error_code,
        ResponseError::RequestTimedOut.code()
    );
    // Locally invalid requests never reach the controller.
    let request = CreateTopicsRequest::default().with_topics(vec![
        create_topics_request::CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("bad name")))
            .with_num_partitions(1)
            .with_replication_factor(1),
    ]);
    let ResponseKind::CreateTopics(response) = call(
        &broker,
        ApiKey::CreateTopics,
        7,
        RequestKind::CreateTopics(request),
    ) else {
        panic!("not a create topics response")
    };
    assert_eq!(
        response.topics[0].error_code,
        ResponseError::InvalidTopicException.code()
    );
    // Config changes time out the same way; the image (and the logs) keep the old configs.
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
        incremental_alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("t"))
            .with_configs(vec![
                incremental_alter_configs_request::AlterableConfig::default()
                    .with_name(StrBytes::from_static_str("retention.ms"))
                    .with_config_operation(0)
                    .with_value(Some(StrBytes::from_static_str("1000"))),
            ]),
    ]);
    let ResponseKind::IncrementalAlterConfigs(response) = call(
        &broker,
        ApiKey::IncrementalAlterConfigs,
        1,
        RequestKind::IncrementalAlterConfigs(request),
    ) else {
        panic!("not an incremental alter configs response")
    };
    assert_eq!(
        response.responses[0].error_code,
        ResponseError::RequestTimedOut.code()
    );
    assert!(broker
        .replica_manager()
        .topic("t")
        .unwrap()
        .configs
        .is_empty());
    broker.close().unwrap();
}

#[test]
fn stray_partition_dirs_are_renamed_once_caught_up_and_never_served() {
    let dir = tempfile::tempdir().unwrap();
    // Left by earlier assignments: partition 1 of "t" now lives on broker 2 only, and topic
    // "gone" was deleted while this node was away.
    for stray in ["t-1", "gone-0"] {
        std::fs::create_dir_all(dir.path().join(stray)).unwrap();
        std::fs::write(dir.path().join(stray).join("evidence"), stray).unwrap();
    }
    let image = cluster_image();
    let broker = Broker::open(config(dir.path()), image.clone(), Arc::new(NoController)).unwrap();
    // At open the image may still trail the metadata log: nothing is renamed yet.
    assert!(dir.path().join("t-1").exists() && dir.path().join("gone-0").exists());

    let renamed = broker
        .replica_manager()
        .rename_stray_partition_dirs()
        .unwrap();
    assert_eq!(renamed, vec![("gone".to_string(), 0), ("t".to_string(), 1)]);
    let strays: BTreeMap<String, String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .ends_with(fjord_storage::STRAY_DIR_SUFFIX)
        })
        .map(|p| {
            let name = p.file_name().unwrap().to_str().unwrap().to_owned();
            let evidence = std::fs::read_to_string(p.join("evidence")).unwrap();
            (name.split('.').next().unwrap().to_owned(), evidence)
        })
        .collect();
    assert_eq!(
        strays,
        BTreeMap::from([
            ("gone-0".to_string(), "gone-0".to_string()),
            ("t-1".to_string(), "t-1".to_string()),
        ]),
        "moved aside with their data"
    );
    assert!(!dir.path().join("t-1").exists() && !dir.path().join("gone-0").exists());
    // The hosted partitions keep their logs.
    assert!(dir.path().join("t-0").exists() && dir.path().join("t-2").exists());
    assert_eq!(
        broker
            .replica_manager()
            .rename_stray_partition_dirs()
            .unwrap(),
        Vec::<(String, i32)>::new()
    );

    // Partition 1 assigned here again: a fresh log, not the stray's data.
    let mut move_here = PartitionChangeRecord::unchanged(TOPIC_ID, 1);
    move_here.replicas = Some(vec![2, 1]);
    move_here.isr = Some(vec![2, 1]);
    move_here.leader = 1;
    let (delta, image) = apply(&image, &[MetadataRecord::PartitionChange(move_here)]);
    broker.publish_metadata(&delta, &image).unwrap();
    assert!(dir.path().join("t-1/partition.metadata").exists());
    assert!(!dir.path().join("t-1/evidence").exists());

    // After shutdown the table is empty, but nothing is taken for a stray.
    broker.close().unwrap();
    assert_eq!(
        broker
            .replica_manager()
            .rename_stray_partition_dirs()
            .unwrap(),
        Vec::<(String, i32)>::new()
    );
    assert!(dir.path().join("t-0").exists() && dir.path().join("t-1").exists());
}
