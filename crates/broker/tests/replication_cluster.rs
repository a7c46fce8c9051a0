//! Three brokers in one process (`testing::Cluster`: one metadata quorum, in-process node
//! channels): acks=all produces to an RF=3 topic with min.insync.replicas=2, followers copy
//! the batches byte for byte, ISR shrink and expansion, NOT_ENOUGH_REPLICAS, and a leader
//! change that keeps every acknowledged record; KIP-392 fetch from follower (the leader's
//! preferred read replica, a follower serving consumers up to its high watermark) and the
//! leader's replication throttle.

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
    config_with(dir, node_id, &[])
}

fn config_with(dir: &std::path::Path, node_id: i32, extra: &[(&str, &str)]) -> BrokerConfig {
    let mut values = BTreeMap::new();
    for (key, value) in extra {
        values.insert(key.to_string(), value.to_string());
    }
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
    create_topic_with(cluster, &[]).await
}

async fn create_topic_with(cluster: &Cluster, extra: &[(&str, &str)]) {
    let mut configs = vec![("min.insync.replicas".to_string(), Some("2".to_string()))];
    configs.extend(
        extra
            .iter()
            .map(|(k, v)| (k.to_string(), Some(v.to_string()))),
    );
    let reply = cluster
        .channel
        .send(
            ControllerRequest::CreateTopics(CreateTopicsRequest {
                topics: vec![CreatableTopic {
                    name: TOPIC.to_string(),
                    num_partitions: 1,
                    replication_factor: 3,
                    assignments: Vec::new(),
                    configs,
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

const RACK_AWARE: &str = "org.apache.kafka.common.replica.RackAwareReplicaSelector";

/// Three brokers in racks rack-1..rack-3 with the rack-aware replica selector, `extra`
/// settings on each, the topic created (RF=3) with `topic_configs`, everything hosted.
async fn rack_cluster(
    dirs: &[tempfile::TempDir],
    extra: &[(&str, &str)],
    topic_configs: &[(&str, &str)],
) -> Arc<Cluster> {
    let configs = dirs
        .iter()
        .enumerate()
        .map(|(i, dir)| {
            let rack = format!("rack-{}", i + 1);
            let mut settings = vec![
                ("broker.rack", rack.as_str()),
                ("replica.selector.class", RACK_AWARE),
            ];
            settings.extend_from_slice(extra);
            config_with(dir.path(), i as i32 + 1, &settings)
        })
        .collect();
    let cluster = Arc::new(Cluster::start(configs, 1_000).unwrap());
    create_topic_with(&cluster, topic_configs).await;
    eventually("the topic on every broker", || {
        cluster.brokers.iter().all(|b| {
            b.replica_manager()
                .partition(TOPIC, 0)
                .is_some_and(|p| p.is_hosted())
        })
    })
    .await;
    cluster
}

/// One partition of a consumer Fetch answer.
struct Fetched {
    error: Option<ResponseError>,
    high_watermark: i64,
    preferred_read_replica: i32,
    records: Bytes,
}

/// A sessionless consumer fetch (`version` >= 4, topic by name) of partition 0 at `offset`.
async fn consumer_fetch(broker: &Broker, version: i16, rack: &str, offset: i64) -> Fetched {
    use fjord_protocol::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use fjord_protocol::kafka_protocol::messages::FetchRequest;
    let request = FetchRequest::default()
        .with_replica_id(fjord_protocol::kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_rack_id(StrBytes::from_string(rack.to_string()))
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])]);
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Fetch as i16)
        .with_request_api_version(version);
    let (response, files) = match broker.handle(&header, RequestKind::Fetch(request)).await {
        Outcome::RespondWithFileRecords(ResponseKind::Fetch(r), files) => (r, files),
        Outcome::Respond(ResponseKind::Fetch(r)) => (r, Vec::new()),
        other => panic!("unexpected {other:?}"),
    };
    let p = &response.responses[0].partitions[0];
    let mut records = Vec::new();
    for file in files {
        records.extend_from_slice(&file.read_to_bytes().unwrap());
    }
    Fetched {
        error: ResponseError::try_from_code(p.error_code),
        high_watermark: p.high_watermark,
        preferred_read_replica: p.preferred_read_replica.0,
        records: Bytes::from(records),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_are_sent_to_a_same_rack_follower_which_serves_up_to_its_high_watermark() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let cluster = rack_cluster(&dirs, &[], &[]).await;
    let leader_id = state(&cluster.brokers[0]).leader;
    let leader = cluster.broker(leader_id).clone();
    let follower_id = (1..=3).find(|id| *id != leader_id).unwrap();
    let follower = cluster.broker(follower_id).clone();
    for i in 0..3 {
        let (error, _) = produce(&leader, format!("v{i}").as_bytes(), -1).await;
        assert_eq!(error, None);
    }
    eventually("the follower's log and high watermark", || {
        log_bytes(&follower) == log_bytes(&leader) && offsets(&follower).high_watermark == 6
    })
    .await;

    // The leader: a consumer in the follower's rack is sent there, without records.
    let answer = consumer_fetch(&leader, 12, &format!("rack-{follower_id}"), 0).await;
    assert_eq!(answer.error, None);
    assert_eq!(answer.preferred_read_replica, follower_id);
    assert!(answer.records.is_empty());
    assert_eq!(answer.high_watermark, 6);
    // In the leader's rack, without a rack, or in an unknown rack: the leader serves.
    for rack in [format!("rack-{leader_id}"), String::new(), "rack-9".into()] {
        let answer = consumer_fetch(&leader, 12, &rack, 0).await;
        assert_eq!(answer.preferred_read_replica, -1, "rack {rack:?}");
        assert_eq!(answer.records, log_bytes(&leader), "rack {rack:?}");
    }
    // A fetch offset beyond the follower's log end: the leader serves.
    let answer = consumer_fetch(&leader, 12, &format!("rack-{follower_id}"), 7).await;
    assert_eq!(answer.preferred_read_replica, -1);

    // The follower serves v11+ consumers the same bytes; before v11 only leaders serve.
    let answer = consumer_fetch(&follower, 11, &format!("rack-{follower_id}"), 0).await;
    assert_eq!(answer.error, None);
    assert_eq!(answer.preferred_read_replica, -1);
    assert_eq!(answer.records, log_bytes(&leader));
    assert_eq!(answer.high_watermark, 6);
    let old = consumer_fetch(&follower, 10, "", 0).await;
    assert_eq!(old.error, Some(ResponseError::NotLeaderOrFollower));

    // Cut off, with its high watermark behind its log end: it serves only below the high
    // watermark; between the two nothing (no error), past the log end OFFSET_OUT_OF_RANGE.
    cluster.network.set_down(follower_id, true);
    let partition = follower.replica_manager().partition(TOPIC, 0).unwrap();
    // A fetch already in flight when the link went down may still raise the high watermark
    // again: retry until three reads in a row saw the lowered one.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (below, between, beyond) = loop {
        assert!(
            Instant::now() < deadline,
            "the follower's high watermark kept moving"
        );
        partition
            .with_follower_log(|log| {
                fjord_broker::replication::ReplicaLog::update_follower_high_watermark(log, 4)
            })
            .unwrap();
        let below = consumer_fetch(&follower, 12, "", 0).await;
        let between = consumer_fetch(&follower, 12, "", 5).await;
        let beyond = consumer_fetch(&follower, 12, "", 7).await;
        if [&below, &between, &beyond]
            .iter()
            .all(|a| a.high_watermark == 4)
        {
            break (below, between, beyond);
        }
    };
    assert_eq!(below.error, None);
    let batches: Vec<i64> = fjord_protocol::records::BatchIter::new(&below.records)
        .map(|b| b.unwrap().0.base_offset)
        .collect();
    assert_eq!(
        batches,
        vec![0, 2],
        "only the batches below the high watermark"
    );
    assert_eq!(between.error, None);
    assert!(between.records.is_empty());
    assert_eq!(beyond.error, Some(ResponseError::OffsetOutOfRange));
    cluster.network.set_down(follower_id, false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_throttles_a_listed_replica_out_of_the_isr_but_not_the_isr() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    // 1 byte/s: after the first throttled response the quota stays exceeded.
    let cluster = rack_cluster(
        &dirs,
        &[("leader.replication.throttled.rate", "1")],
        &[("leader.replication.throttled.replicas", "*")],
    )
    .await;
    let leader_id = state(&cluster.brokers[0]).leader;
    let leader = cluster.broker(leader_id).clone();
    let followers: Vec<i32> = (1..=3).filter(|id| *id != leader_id).collect();
    let (lagging, in_sync) = (followers[0], followers[1]);
    let quotas = &leader.replication().quotas;
    use fjord_broker::replication_shell::QuotaSide;

    // One follower cut off until it leaves the ISR; records go on with the other.
    cluster.network.set_down(lagging, true);
    let (error, _) = produce(&leader, b"first", -1).await;
    assert_eq!(error, None);
    eventually("the lagging follower out of the ISR", || {
        !state(&leader).isr.contains(&lagging)
    })
    .await;
    for i in 0..5 {
        let (error, _) = produce(&leader, format!("v{i}").as_bytes(), -1).await;
        assert_eq!(error, None, "ISR members are never throttled");
    }
    assert!(quotas.stats(QuotaSide::Leader).throttled_bytes > 0);

    // Back: its fetches are held back while the quota is exceeded.
    cluster.network.set_down(lagging, false);
    eventually("a held-back fetch of the lagging follower", || {
        quotas.stats(QuotaSide::Leader).held_back > 0
    })
    .await;
    assert!(offsets(cluster.broker(lagging)).log_end_offset < offsets(&leader).log_end_offset);
    let (error, _) = produce(&leader, b"still-acked", -1).await;
    assert_eq!(error, None);
    assert!(offsets(cluster.broker(in_sync)).log_end_offset >= 14);
    let rendered = leader.render_metrics();
    assert!(
        rendered.contains("fjord_replication_throttled_partition_fetches_total{side=\"leader\"}")
    );
}
