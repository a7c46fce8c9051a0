//! Three brokers in one process (`testing::Cluster`: one metadata quorum, in-process node
//! channels): acks=all produces to an RF=3 topic with min.insync.replicas=2, followers copy
//! the batches byte for byte, ISR shrink and expansion, NOT_ENOUGH_REPLICAS, and a leader
//! change that keeps every acknowledged record.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fjord_broker::testing::Cluster;
use fjord_broker::{Broker, BrokerConfig, Outcome};
use fjord_controller::{
    ControllerReply, ControllerRequest, CreatableTopic, CreateTopicsRequest, ErrorCode,
};
use fjord_protocol::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use fjord_protocol::kafka_protocol::messages::{ProduceRequest, RequestHeader, TopicName};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ApiKey, RequestKind, ResponseError, ResponseKind};

const TOPIC: &str = "replicated";
const LAG_MS: &str = "3000";

fn config(dir: &std::path::Path, node_id: i32) -> BrokerConfig {
    let mut values = BTreeMap::new();
    values.insert("data.dir".to_string(), dir.display().to_string());
    values.insert("node.id".to_string(), node_id.to_string());
    values.insert(
        "listen".to_string(),
        format!("127.0.0.1:{}", 19_090 + node_id),
    );
    values.insert("replica.lag.time.max.ms".to_string(), LAG_MS.to_string());
    values.insert("replica.fetch.wait.max.ms".to_string(), "100".to_string());
    values.insert("replica.fetch.backoff.ms".to_string(), "50".to_string());
    values.insert("log.cleaner.enable".to_string(), "false".to_string());
    BrokerConfig::from_settings(&values).unwrap()
}

async fn create_topic(cluster: &Cluster) {
    let reply = cluster
        .channel
        .send(
            ControllerRequest::CreateTopics(CreateTopicsRequest {
                topics: vec![CreatableTopic {
                    name: TOPIC.to_string(),
                    num_partitions: 1,
                    replication_factor: 3,
                    assignments: Vec::new(),
                    configs: vec![("min.insync.replicas".to_string(), Some("2".to_string()))],
                }],
                validate_only: false,
            }),
            10_000,
        )
        .await
        .unwrap();
    let ControllerReply::CreateTopics(reply) = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(reply.topics[0].error.code, ErrorCode::None, "{reply:?}");
}

async fn produce(broker: &Broker, value: &[u8], acks: i16) -> (Option<ResponseError>, i64) {
    let records = Bytes::from(fjord_protocol::batch_builder::encode_values(
        1_000, 2, value,
    ));
    let request = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(15_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(9);
    match broker.handle(&header, RequestKind::Produce(request)).await {
        Outcome::Respond(ResponseKind::Produce(r)) => {
            let p = &r.responses[0].partition_responses[0];
            (ResponseError::try_from_code(p.error_code), p.base_offset)
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// Waits until `check` holds (polling), panicking with `what` after 20 s.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn state(broker: &Broker) -> fjord_broker::partition::PartitionState {
    broker
        .replica_manager()
        .partition(TOPIC, 0)
        .unwrap()
        .state()
}

fn offsets(broker: &Broker) -> fjord_broker::partition::PartitionOffsets {
    broker
        .replica_manager()
        .partition(TOPIC, 0)
        .unwrap()
        .offsets()
        .unwrap()
}

/// The whole log, as bytes.
fn log_bytes(broker: &Broker) -> Bytes {
    let partition = broker.replica_manager().partition(TOPIC, 0).unwrap();
    let (data, _) = partition
        .read(
            0,
            usize::MAX,
            true,
            fjord_broker::partition::Isolation::LogEnd,
        )
        .unwrap();
    data.records.read_to_bytes().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_all_replicates_shrinks_and_expands_the_isr_and_survives_a_leader_change() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let configs = dirs
        .iter()
        .enumerate()
        .map(|(i, dir)| config(dir.path(), i as i32 + 1))
        .collect();
    let cluster = Arc::new(Cluster::start(configs, 1_000).unwrap());
    create_topic(&cluster).await;
    eventually("the topic on every broker", || {
        cluster.brokers.iter().all(|b| {
            b.replica_manager()
                .partition(TOPIC, 0)
                .is_some_and(|p| p.is_hosted())
        })
    })
    .await;
    let leader_id = state(&cluster.brokers[0]).leader;
    let leader = cluster.broker(leader_id).clone();
    let followers: Vec<i32> = (1..=3).filter(|id| *id != leader_id).collect();

    // acks=all: answered once both followers have the batch; their logs equal the leader's.
    for i in 0..3 {
        let (error, base_offset) = produce(&leader, format!("v{i}").as_bytes(), -1).await;
        assert_eq!(error, None);
        assert_eq!(base_offset, i * 2);
    }
    assert!(offsets(&leader).high_watermark >= 6);
    eventually("followers with the leader's bytes", || {
        followers
            .iter()
            .all(|id| log_bytes(cluster.broker(*id)) == log_bytes(&leader))
    })
    .await;
    eventually("follower high watermarks", || {
        followers
            .iter()
            .all(|id| offsets(cluster.broker(*id)).high_watermark == 6)
    })
    .await;

    // One follower cut off: the next acks=all produce waits until it left the ISR (after
    // replica.lag.time.max.ms) and succeeds with two in-sync replicas.
    let (lost, kept) = (followers[1], followers[0]);
    cluster.network.set_down(lost, true);
    let (error, _) = produce(&leader, b"two-replicas", -1).await;
    assert_eq!(error, None);
    assert!(!state(&leader).isr.contains(&lost));
    assert_eq!(state(&leader).isr.len(), 2);

    // The second follower too: once it fell behind and left the ISR, the ISR is below
    // min.insync.replicas and acks=all is refused before appending.
    cluster.network.set_down(kept, true);
    let (error, _) = produce(&leader, b"acks-one", 1).await;
    assert_eq!(error, None);
    eventually("an ISR of the leader alone", || {
        state(&leader).isr == vec![leader_id]
    })
    .await;
    let (error, _) = produce(&leader, b"refused", -1).await;
    assert_eq!(error, Some(ResponseError::NotEnoughReplicas));

    // Both come back: they catch up and rejoin the ISR.
    cluster.network.set_down(kept, false);
    cluster.network.set_down(lost, false);
    eventually("the full ISR again", || state(&leader).isr.len() == 3).await;
    let (error, acked_offset) = produce(&leader, b"after-rejoin", -1).await;
    assert_eq!(error, None);
    eventually("caught-up followers", || {
        followers
            .iter()
            .all(|id| log_bytes(cluster.broker(*id)) == log_bytes(&leader))
    })
    .await;
    let acknowledged = log_bytes(&leader);

    // A divergent tail on the old leader: acks=1 while it is cut off, then it is fenced
    // (no heartbeats) and another replica is elected.
    cluster.network.set_down(leader_id, true);
    let (error, _) = produce(&leader, b"lost-tail", 1).await;
    assert_eq!(error, None);
    let leader_index = (leader_id - 1) as usize;
    cluster.set_heartbeating(leader_index, false);
    eventually("a new leader", || {
        let s = state(cluster.broker(followers[0]));
        s.leader != leader_id && s.leader >= 0
    })
    .await;
    let new_leader_id = state(cluster.broker(followers[0])).leader;
    let new_leader = cluster.broker(new_leader_id).clone();
    assert!(
        log_bytes(&new_leader).starts_with(&acknowledged),
        "the new leader has every acknowledged record"
    );
    assert!(offsets(&new_leader).log_end_offset >= acked_offset + 2);
    let (error, _) = produce(&new_leader, b"new-epoch", -1).await;
    assert_eq!(error, None);

    // The old leader comes back as a follower and truncates its divergent tail.
    cluster.network.set_down(leader_id, false);
    cluster.set_heartbeating(leader_index, true);
    eventually("the old leader following with the new leader's log", || {
        state(&leader).leader == new_leader_id && log_bytes(&leader) == log_bytes(&new_leader)
    })
    .await;
}
