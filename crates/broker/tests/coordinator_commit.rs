//! Coordinator writes wait for the high watermark (Kafka appends `__consumer_offsets` and
//! `__transaction_state` records with acks=-1): three brokers in one process
//! (`testing::Cluster`), RF=3 internal topics, and the followers of the coordinator's
//! partition cut off. An OffsetCommit and an InitProducerId stay unanswered until the
//! followers fetch the record, then answer NONE with the record in every replica's log; with
//! too few in-sync replicas they answer COORDINATOR_NOT_AVAILABLE.
//!
//! Transaction markers (WriteTxnMarkers) likewise count as written only once committed.
//! A partition leader that is not the transaction coordinator verifies a transactional batch
//! (KIP-890) with the coordinator's node, not with its own coordinator.
//!
//! "Still pending" is checked by polling the request for a short while; every outcome asserted
//! is a final answer, never a duration.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fjord_broker::replica_manager::{GROUP_METADATA_TOPIC_NAME, TRANSACTION_STATE_TOPIC_NAME};
use fjord_broker::testing::Cluster;
use fjord_broker::{Broker, BrokerConfig, Outcome};
use fjord_controller::{
    ControllerReply, ControllerRequest, CreatableTopic, CreateTopicsRequest, ErrorCode,
};
use fjord_protocol::kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use fjord_protocol::kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use fjord_protocol::kafka_protocol::messages::{
    GroupId, InitProducerIdRequest, OffsetCommitRequest, ProducerId, RequestHeader, TopicName,
    TransactionalId, WriteTxnMarkersRequest,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ApiKey, RequestKind, ResponseError, ResponseKind};

const TOPIC: &str = "committed";
const GROUP: &str = "g";
const TRANSACTIONAL_ID: &str = "tx";

fn config(dir: &std::path::Path, node_id: i32) -> BrokerConfig {
    let values: BTreeMap<String, String> = [
        ("data.dir", dir.display().to_string()),
        ("node.id", node_id.to_string()),
        ("listen", format!("127.0.0.1:{}", 19_390 + node_id)),
        ("replica.lag.time.max.ms", "3000".to_string()),
        ("replica.fetch.wait.max.ms", "100".to_string()),
        ("replica.fetch.backoff.ms", "50".to_string()),
        ("log.cleaner.enable", "false".to_string()),
        // One partition each: one coordinator for every group and transactional id.
        ("offsets.topic.num.partitions", "1".to_string()),
        ("transaction.state.log.num.partitions", "1".to_string()),
        // __consumer_offsets takes the broker's min.insync.replicas: with 3, any follower
        // missing makes a commit fail, whichever comes first of the ISR shrink and the
        // timeout. __transaction_state has transaction.state.log.min.isr (2).
        ("min.insync.replicas", "3".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    BrokerConfig::from_settings(&values).unwrap()
}

async fn create_topic(cluster: &Cluster) {
    create_topic_with(cluster, TOPIC, 1).await;
}

async fn create_topic_with(cluster: &Cluster, name: &str, replication_factor: i16) {
    create(
        cluster,
        CreatableTopic {
            name: name.to_string(),
            num_partitions: 1,
            replication_factor,
            assignments: Vec::new(),
            configs: Vec::new(),
        },
    )
    .await;
}

/// Creates `topic` through the controller and asserts it was created.
async fn create(cluster: &Cluster, topic: CreatableTopic) {
    let reply = cluster
        .channel
        .send(
            ControllerRequest::CreateTopics(CreateTopicsRequest {
                topics: vec![topic],
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

/// Waits until `check` holds (polling), panicking with `what` after 30 s.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn partition(broker: &Broker, topic: &str) -> Arc<fjord_broker::partition::Partition> {
    broker.replica_manager().partition(topic, 0).unwrap()
}

/// The whole log of partition 0 of `topic`, as bytes.
fn log_bytes(broker: &Broker, topic: &str) -> Bytes {
    let (data, _) = partition(broker, topic)
        .read(
            0,
            usize::MAX,
            true,
            fjord_broker::partition::Isolation::LogEnd,
        )
        .unwrap();
    data.records.read_to_bytes().unwrap()
}

/// The internal topic `name` created through the controller, hosted by every broker with
/// all three replicas in sync; returns the leader's id.
async fn internal_topic(cluster: &Cluster, name: &str) -> i32 {
    let first = cluster.brokers[0].clone();
    eventually("the internal topic", || {
        cluster
            .brokers
            .iter()
            .all(|b| b.replica_manager().topic(name).is_some())
            || {
                // Creation is asynchronous through the controller: ask again until it shows.
                let broker = first.clone();
                let name = name.to_string();
                tokio::spawn(async move { broker.internal_topic_or_create(&name).await });
                false
            }
    })
    .await;
    eventually("every replica hosted and in sync", || {
        cluster
            .brokers
            .iter()
            .all(|b| partition(b, name).is_hosted())
            && {
                let leader = partition(&cluster.brokers[0], name).state().leader;
                leader > 0
                    && partition(cluster.broker(leader), name).isr_and_replicas() == Some((3, 3))
            }
    })
    .await;
    partition(&cluster.brokers[0], name).state().leader
}

async fn call(
    broker: Arc<Broker>,
    api_key: ApiKey,
    version: i16,
    request: RequestKind,
) -> ResponseKind {
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version);
    match broker.handle(&header, request).await {
        Outcome::Respond(response) => response,
        other => panic!("unexpected {other:?}"),
    }
}

/// A standalone consumer's commit (generation -1) of `offset` for partition 0 of [`TOPIC`].
async fn commit(broker: Arc<Broker>, offset: i64) -> Option<ResponseError> {
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(offset)])]);
    match call(
        broker,
        ApiKey::OffsetCommit,
        8,
        RequestKind::OffsetCommit(request),
    )
    .await
    {
        ResponseKind::OffsetCommit(r) => {
            ResponseError::try_from_code(r.topics[0].partitions[0].error_code)
        }
        other => panic!("unexpected {other:?}"),
    }
}

async fn init_producer_id(broker: Arc<Broker>) -> Result<(i64, i16), ResponseError> {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str(
            TRANSACTIONAL_ID,
        ))))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    match call(
        broker,
        ApiKey::InitProducerId,
        4,
        RequestKind::InitProducerId(request),
    )
    .await
    {
        ResponseKind::InitProducerId(r) => match ResponseError::try_from_code(r.error_code) {
            None => Ok((r.producer_id.0, r.producer_epoch)),
            Some(error) => Err(error),
        },
        other => panic!("unexpected {other:?}"),
    }
}

/// Cuts the followers off and lets fetches already in flight (long polls of at most
/// `replica.fetch.wait.max.ms`) end, so none carries the next record.
async fn cut_off(cluster: &Cluster, followers: &[i32]) {
    for id in followers {
        cluster.network.set_down(*id, true);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
}

fn restore(cluster: &Cluster, followers: &[i32]) {
    for id in followers {
        cluster.network.set_down(*id, false);
    }
}

/// Asserts that `task` has not finished after being polled for a while.
async fn assert_pending<T: std::fmt::Debug>(task: &mut tokio::task::JoinHandle<T>, what: &str) {
    if let Ok(answer) = tokio::time::timeout(Duration::from_millis(300), &mut *task).await {
        panic!("{what} was answered before its record was replicated: {answer:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_writes_are_answered_once_committed() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let configs = dirs
        .iter()
        .enumerate()
        .map(|(i, dir)| config(dir.path(), i as i32 + 1))
        .collect();
    let cluster = Arc::new(Cluster::start(configs, 1_000).unwrap());
    create_topic(&cluster).await;
    eventually("the topic on every broker", || {
        cluster
            .brokers
            .iter()
            .all(|b| b.replica_manager().topic(TOPIC).is_some())
    })
    .await;

    // ---- group coordinator: OffsetCommit ----
    let leader_id = internal_topic(&cluster, GROUP_METADATA_TOPIC_NAME).await;
    let leader = cluster.broker(leader_id).clone();
    let followers: Vec<i32> = (1..=3).filter(|id| *id != leader_id).collect();
    assert_eq!(commit(leader.clone(), 1).await, None);

    cut_off(&cluster, &followers).await;
    let mut task = tokio::spawn(commit(leader.clone(), 42));
    assert_pending(&mut task, "the OffsetCommit").await;
    restore(&cluster, &followers);
    assert_eq!(task.await.unwrap(), None);
    let offsets = partition(&leader, GROUP_METADATA_TOPIC_NAME)
        .offsets()
        .unwrap();
    assert_eq!(offsets.high_watermark, offsets.log_end_offset);
    for id in &followers {
        let follower = partition(cluster.broker(*id), GROUP_METADATA_TOPIC_NAME);
        assert!(follower.offsets().unwrap().log_end_offset >= offsets.log_end_offset);
    }
    eventually("the followers with the leader's __consumer_offsets", || {
        followers.iter().all(|id| {
            log_bytes(cluster.broker(*id), GROUP_METADATA_TOPIC_NAME)
                == log_bytes(&leader, GROUP_METADATA_TOPIC_NAME)
        })
    })
    .await;
    let fetched = leader
        .group_coordinator()
        .fetch_offsets(GROUP, Some(&[(TOPIC.to_string(), vec![0])]), false)
        .unwrap();
    assert_eq!(fetched[0].1[0].committed_offset, 42);

    // One follower stays away: fewer in-sync replicas than min.insync.replicas (3). The
    // commit is not acknowledged (timeout, NOT_ENOUGH_REPLICAS_AFTER_APPEND once the ISR
    // shrank, or NOT_ENOUGH_REPLICAS before the append): COORDINATOR_NOT_AVAILABLE.
    cut_off(&cluster, &followers[..1]).await;
    assert_eq!(
        commit(leader.clone(), 43).await,
        Some(ResponseError::CoordinatorNotAvailable)
    );
    restore(&cluster, &followers[..1]);
    eventually("the full ISR of __consumer_offsets", || {
        partition(&leader, GROUP_METADATA_TOPIC_NAME).isr_and_replicas() == Some((3, 3))
    })
    .await;
    assert_eq!(commit(leader.clone(), 44).await, None);

    // ---- transaction coordinator: InitProducerId ----
    let leader_id = internal_topic(&cluster, TRANSACTION_STATE_TOPIC_NAME).await;
    let leader = cluster.broker(leader_id).clone();
    let followers: Vec<i32> = (1..=3).filter(|id| *id != leader_id).collect();
    let (producer_id, epoch) = init_producer_id(leader.clone()).await.unwrap();

    cut_off(&cluster, &followers).await;
    let mut task = tokio::spawn(init_producer_id(leader.clone()));
    assert_pending(&mut task, "the InitProducerId").await;
    restore(&cluster, &followers);
    assert_eq!(task.await.unwrap(), Ok((producer_id, epoch + 1)));
    let offsets = partition(&leader, TRANSACTION_STATE_TOPIC_NAME)
        .offsets()
        .unwrap();
    for id in &followers {
        let follower = partition(cluster.broker(*id), TRANSACTION_STATE_TOPIC_NAME);
        assert!(follower.offsets().unwrap().log_end_offset >= offsets.log_end_offset);
    }
    eventually(
        "the followers with the leader's __transaction_state",
        || {
            followers.iter().all(|id| {
                log_bytes(cluster.broker(*id), TRANSACTION_STATE_TOPIC_NAME)
                    == log_bytes(&leader, TRANSACTION_STATE_TOPIC_NAME)
            })
        },
    )
    .await;

    // Both followers away: below transaction.state.log.min.isr (2) once the ISR shrinks, and
    // never committed before: COORDINATOR_NOT_AVAILABLE, the producer retries.
    cut_off(&cluster, &followers).await;
    assert_eq!(
        init_producer_id(leader.clone()).await,
        Err(ResponseError::CoordinatorNotAvailable)
    );
    restore(&cluster, &followers);
    eventually("the full ISR of __transaction_state", || {
        partition(&leader, TRANSACTION_STATE_TOPIC_NAME).isr_and_replicas() == Some((3, 3))
    })
    .await;
    let (_, retried_epoch) = init_producer_id(leader.clone()).await.unwrap();
    assert!(retried_epoch > epoch + 1);
}

/// A COMMIT marker for producer 7000 on partition 0 of `topic`, sent to `broker` as the
/// coordinator would: the partition's error code.
async fn write_marker(broker: Arc<Broker>, topic: &'static str) -> Option<ResponseError> {
    let request =
        WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
            .with_producer_id(ProducerId(7000))
            .with_producer_epoch(0)
            .with_transaction_result(true)
            .with_coordinator_epoch(0)
            .with_topics(vec![WritableTxnMarkerTopic::default()
                .with_name(TopicName(StrBytes::from_static_str(topic)))
                .with_partition_indexes(vec![0])])]);
    match call(
        broker,
        ApiKey::WriteTxnMarkers,
        1,
        RequestKind::WriteTxnMarkers(request),
    )
    .await
    {
        ResponseKind::WriteTxnMarkers(r) => {
            ResponseError::try_from_code(r.markers[0].topics[0].partitions[0].error_code)
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_markers_are_answered_once_committed() {
    const MARKED: &str = "marked";
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let configs = dirs
        .iter()
        .enumerate()
        .map(|(i, dir)| config(dir.path(), i as i32 + 1))
        .collect();
    let cluster = Arc::new(Cluster::start(configs, 1_000).unwrap());
    create_topic_with(&cluster, MARKED, 3).await;
    eventually("every replica hosted and in sync", || {
        cluster.brokers.iter().all(|b| {
            b.replica_manager()
                .partition(MARKED, 0)
                .is_some_and(|p| p.is_hosted())
        }) && {
            let leader = partition(&cluster.brokers[0], MARKED).state().leader;
            leader > 0
                && partition(cluster.broker(leader), MARKED).isr_and_replicas() == Some((3, 3))
        }
    })
    .await;
    let leader_id = partition(&cluster.brokers[0], MARKED).state().leader;
    let leader = cluster.broker(leader_id).clone();
    let followers: Vec<i32> = (1..=3).filter(|id| *id != leader_id).collect();

    cut_off(&cluster, &followers).await;
    let mut task = tokio::spawn(write_marker(leader.clone(), MARKED));
    assert_pending(&mut task, "the WriteTxnMarkers").await;
    restore(&cluster, &followers);
    assert_eq!(task.await.unwrap(), None);
    let offsets = partition(&leader, MARKED).offsets().unwrap();
    assert_eq!(offsets.log_end_offset, 1, "one marker written");
    assert_eq!(offsets.high_watermark, 1, "answered only once committed");
    for id in &followers {
        let follower = partition(cluster.broker(*id), MARKED);
        assert!(follower.offsets().unwrap().log_end_offset >= 1);
    }

    // One follower stays away until its lag shrinks the ISR below min.insync.replicas (3):
    // the marker is not acknowledged (the coordinator retries it later).
    cut_off(&cluster, &followers[..1]).await;
    let refused = write_marker(leader.clone(), MARKED).await;
    assert!(
        matches!(
            refused,
            Some(
                ResponseError::NotEnoughReplicasAfterAppend
                    | ResponseError::NotEnoughReplicas
                    | ResponseError::RequestTimedOut
            )
        ),
        "{refused:?}"
    );
    restore(&cluster, &followers[..1]);
    eventually("the full ISR", || {
        partition(&leader, MARKED).isr_and_replicas() == Some((3, 3))
    })
    .await;
    // The retried marker: the transaction is no longer ongoing, nothing changes but the log.
    assert_eq!(write_marker(leader.clone(), MARKED).await, None);
}

/// Creates `name` with one partition on `replicas` (the first leads).
async fn create_assigned(cluster: &Cluster, name: &str, replicas: Vec<i32>) {
    create(
        cluster,
        CreatableTopic {
            name: name.to_string(),
            num_partitions: -1,
            replication_factor: -1,
            assignments: vec![(0, replicas)],
            configs: Vec::new(),
        },
    )
    .await;
}

/// AddPartitionsToTxn v3 (a client's) of partition 0 of `topic`, sent to `broker`.
async fn add_partition(
    broker: Arc<Broker>,
    topic: &'static str,
    producer: (i64, i16),
) -> Option<ResponseError> {
    use fjord_protocol::kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
    use fjord_protocol::kafka_protocol::messages::AddPartitionsToTxnRequest;
    let request = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(StrBytes::from_static_str(
            TRANSACTIONAL_ID,
        )))
        .with_v3_and_below_producer_id(ProducerId(producer.0))
        .with_v3_and_below_producer_epoch(producer.1)
        .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
            .with_name(TopicName(StrBytes::from_static_str(topic)))
            .with_partitions(vec![0])]);
    match call(
        broker,
        ApiKey::AddPartitionsToTxn,
        3,
        RequestKind::AddPartitionsToTxn(request),
    )
    .await
    {
        ResponseKind::AddPartitionsToTxn(r) => ResponseError::try_from_code(
            r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code,
        ),
        other => panic!("unexpected {other:?}"),
    }
}

/// A transactional Produce v9 (acks=1) of one record to partition 0 of `topic` at `broker`.
async fn produce_transactional(
    broker: Arc<Broker>,
    topic: &'static str,
    producer: (i64, i16),
) -> Option<ResponseError> {
    use fjord_protocol::batch_builder::{
        encode_uncompressed_with_producer, ProducerFields, Record, TRANSACTIONAL_ATTRIBUTE,
    };
    use fjord_protocol::kafka_protocol::messages::produce_request::{
        PartitionProduceData, TopicProduceData,
    };
    use fjord_protocol::kafka_protocol::messages::ProduceRequest;
    let records = Bytes::from(encode_uncompressed_with_producer(
        0,
        1_000,
        TRANSACTIONAL_ATTRIBUTE,
        ProducerFields {
            producer_id: producer.0,
            producer_epoch: producer.1,
            base_sequence: 0,
        },
        &[Record {
            timestamp_delta: 0,
            key: None,
            value: Some(b"in-a-transaction"),
            headers: &[],
        }],
    ));
    let request = ProduceRequest::default()
        .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str(
            TRANSACTIONAL_ID,
        ))))
        .with_acks(1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str(topic)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    match call(broker, ApiKey::Produce, 9, RequestKind::Produce(request)).await {
        ResponseKind::Produce(r) => {
            ResponseError::try_from_code(r.responses[0].partition_responses[0].error_code)
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// KIP-890 verification when the partition leader is not the transaction coordinator: the
/// leader asks the coordinator's node (AddPartitionsToTxn v4, verify_only) rather than its
/// own coordinator, which does not own the transactional id (NOT_COORDINATOR, answered as the
/// retriable NOT_ENOUGH_REPLICAS until the client gave up). A partition added to the
/// transaction takes the batch; one that was not is refused with the coordinator's verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_verifies_transactions_with_the_coordinator_on_another_node() {
    const ADDED: &str = "added";
    const NOT_ADDED: &str = "not-added";
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let configs = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| config(d.path(), i as i32 + 1))
        .collect();
    let cluster = Cluster::start(configs, 6_000).unwrap();
    let coordinator_id = internal_topic(&cluster, TRANSACTION_STATE_TOPIC_NAME).await;
    let coordinator = cluster.broker(coordinator_id).clone();
    let leader_id = (1..=3).find(|n| *n != coordinator_id).unwrap();
    let leader = cluster.broker(leader_id).clone();
    for topic in [ADDED, NOT_ADDED] {
        create_assigned(&cluster, topic, vec![leader_id]).await;
    }
    eventually("the topics led by the other broker", || {
        [ADDED, NOT_ADDED].iter().all(|t| {
            leader
                .replica_manager()
                .partition(t, 0)
                .is_some_and(|p| p.is_leader())
        }) && cluster
            .brokers
            .iter()
            .all(|b| b.image().topic_by_name(NOT_ADDED).is_some())
    })
    .await;
    // The leader's own coordinator does not own the transactional id.
    assert_eq!(
        leader
            .transaction_coordinator()
            .verify_partitions_in_transaction(TRANSACTIONAL_ID, 0, 0, &[]),
        Err(ResponseError::NotCoordinator)
    );

    let producer = init_producer_id(coordinator.clone()).await.unwrap();
    assert_eq!(
        add_partition(coordinator.clone(), ADDED, producer).await,
        None
    );
    assert_eq!(
        produce_transactional(leader.clone(), ADDED, producer).await,
        None
    );
    assert_eq!(
        partition(&leader, ADDED).offsets().unwrap().log_end_offset,
        1
    );
    assert_eq!(
        produce_transactional(leader.clone(), NOT_ADDED, producer).await,
        Some(ResponseError::InvalidTxnState)
    );
    assert_eq!(
        partition(&leader, NOT_ADDED)
            .offsets()
            .unwrap()
            .log_end_offset,
        0
    );
}
