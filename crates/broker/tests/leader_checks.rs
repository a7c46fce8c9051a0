//! Which broker answers DeleteRecords, OffsetForLeaderEpoch and DescribeProducers, on three
//! in-process brokers (`testing::Cluster`) with a topic on brokers 1 and 2 only: as Kafka's
//! `ReplicaManager`, the first two only on the partition's leader, DescribeProducers on any
//! replica, and NOT_LEADER_OR_FOLLOWER on a follower or on a broker without a replica;
//! DeleteRecords of a topic whose `cleanup.policy` lacks `delete` is a POLICY_VIOLATION.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fjord_broker::testing::Cluster;
use fjord_broker::{Broker, BrokerConfig, Outcome};
use fjord_controller::{
    ControllerReply, ControllerRequest, CreatableTopic, CreateTopicsRequest, ErrorCode,
};
use fjord_protocol::batch_builder::{encode_uncompressed_with_producer, ProducerFields, Record};
use fjord_protocol::kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use fjord_protocol::kafka_protocol::messages::describe_producers_request::TopicRequest;
use fjord_protocol::kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use fjord_protocol::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use fjord_protocol::kafka_protocol::messages::{
    BrokerId, DeleteRecordsRequest, DescribeProducersRequest, OffsetForLeaderEpochRequest,
    ProduceRequest, RequestHeader, TopicName,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ApiKey, RequestKind, ResponseError, ResponseKind};

const TOPIC: &str = "two-replicas";
/// `cleanup.policy=compact`: DeleteRecords is a POLICY_VIOLATION.
const COMPACTED: &str = "compacted";
const PRODUCER_ID: i64 = 4_711;

fn config(dir: &std::path::Path, node_id: i32) -> BrokerConfig {
    let values = BTreeMap::from([
        ("data.dir".to_string(), dir.display().to_string()),
        ("node.id".to_string(), node_id.to_string()),
        (
            "listen".to_string(),
            format!("127.0.0.1:{}", 19_390 + node_id),
        ),
        ("replica.fetch.wait.max.ms".to_string(), "100".to_string()),
        ("replica.fetch.backoff.ms".to_string(), "50".to_string()),
        ("log.cleaner.enable".to_string(), "false".to_string()),
    ]);
    BrokerConfig::from_settings(&values).unwrap()
}

fn topic_name() -> TopicName {
    TopicName(StrBytes::from_static_str(TOPIC))
}

async fn handle(broker: &Broker, api_key: ApiKey, version: i16, body: RequestKind) -> ResponseKind {
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version);
    match broker.handle(&header, body).await {
        Outcome::Respond(response) => response,
        other => panic!("{api_key:?}: unexpected {other:?}"),
    }
}

/// An idempotent batch of producer [`PRODUCER_ID`] (`sequence` first), acks=all.
async fn produce(broker: &Broker, sequence: i32) -> Option<ResponseError> {
    let records = [Record {
        value: Some(b"v"),
        ..Record::default()
    }];
    let batch = encode_uncompressed_with_producer(
        0,
        1_000,
        0,
        ProducerFields {
            producer_id: PRODUCER_ID,
            producer_epoch: 0,
            base_sequence: sequence,
        },
        &records,
    );
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(15_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name())
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(Bytes::from(batch)))])]);
    match handle(broker, ApiKey::Produce, 9, RequestKind::Produce(request)).await {
        ResponseKind::Produce(r) => {
            ResponseError::try_from_code(r.responses[0].partition_responses[0].error_code)
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// DeleteRecords of partition 0 before `offset`: (error, low watermark).
async fn delete_records(broker: &Broker, offset: i64) -> (Option<ResponseError>, i64) {
    delete_records_of(broker, TOPIC, offset).await
}

async fn delete_records_of(
    broker: &Broker,
    topic: &'static str,
    offset: i64,
) -> (Option<ResponseError>, i64) {
    let request = DeleteRecordsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![DeleteRecordsTopic::default()
            .with_name(TopicName(StrBytes::from_static_str(topic)))
            .with_partitions(vec![DeleteRecordsPartition::default()
                .with_partition_index(0)
                .with_offset(offset)])]);
    match handle(
        broker,
        ApiKey::DeleteRecords,
        2,
        RequestKind::DeleteRecords(request),
    )
    .await
    {
        ResponseKind::DeleteRecords(r) => {
            let p = &r.topics[0].partitions[0];
            (ResponseError::try_from_code(p.error_code), p.low_watermark)
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// OffsetForLeaderEpoch of partition 0 for `leader_epoch`: (error, epoch, end offset).
async fn epoch_end(
    broker: &Broker,
    replica_id: i32,
    current_leader_epoch: i32,
    leader_epoch: i32,
) -> (Option<ResponseError>, i32, i64) {
    let request = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(replica_id))
        .with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(topic_name())
            .with_partitions(vec![OffsetForLeaderPartition::default()
                .with_partition(0)
                .with_current_leader_epoch(current_leader_epoch)
                .with_leader_epoch(leader_epoch)])]);
    match handle(
        broker,
        ApiKey::OffsetForLeaderEpoch,
        4,
        RequestKind::OffsetForLeaderEpoch(request),
    )
    .await
    {
        ResponseKind::OffsetForLeaderEpoch(r) => {
            let p = &r.topics[0].partitions[0];
            (
                ResponseError::try_from_code(p.error_code),
                p.leader_epoch,
                p.end_offset,
            )
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// DescribeProducers of partition 0: (error, producer ids).
async fn producers(broker: &Broker) -> (Option<ResponseError>, Vec<i64>) {
    let request = DescribeProducersRequest::default().with_topics(vec![TopicRequest::default()
        .with_name(topic_name())
        .with_partition_indexes(vec![0])]);
    match handle(
        broker,
        ApiKey::DescribeProducers,
        0,
        RequestKind::DescribeProducers(request),
    )
    .await
    {
        ResponseKind::DescribeProducers(r) => {
            let p = &r.topics[0].partitions[0];
            (
                ResponseError::try_from_code(p.error_code),
                p.active_producers.iter().map(|s| s.producer_id.0).collect(),
            )
        }
        other => panic!("unexpected {other:?}"),
    }
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_deletes_records_and_answers_epoch_end_offsets() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let configs = dirs
        .iter()
        .enumerate()
        .map(|(i, dir)| config(dir.path(), i as i32 + 1))
        .collect();
    let cluster = Arc::new(Cluster::start(configs, 1_000).unwrap());
    let topic = |name: &str, configs: Vec<(String, Option<String>)>| CreatableTopic {
        name: name.to_string(),
        num_partitions: -1,
        replication_factor: -1,
        assignments: vec![(0, vec![1, 2])],
        configs,
    };
    let compact = vec![("cleanup.policy".to_string(), Some("compact".to_string()))];
    let reply = cluster
        .channel
        .send(
            ControllerRequest::CreateTopics(CreateTopicsRequest {
                topics: vec![topic(TOPIC, Vec::new()), topic(COMPACTED, compact)],
                validate_only: false,
            }),
            10_000,
        )
        .await
        .unwrap();
    let ControllerReply::CreateTopics(reply) = reply else {
        panic!("{reply:?}")
    };
    assert!(
        reply.topics.iter().all(|t| t.error.code == ErrorCode::None),
        "{reply:?}"
    );
    let (leader, follower, outsider) = (cluster.broker(1), cluster.broker(2), cluster.broker(3));
    eventually("the topic on every broker, led by broker 1", || {
        cluster.brokers.iter().all(|b| {
            b.replica_manager()
                .partition(TOPIC, 0)
                .is_some_and(|p| p.state().leader == 1 && p.state().isr.len() == 2)
        })
    })
    .await;
    assert!(!outsider
        .replica_manager()
        .partition(TOPIC, 0)
        .unwrap()
        .is_hosted());
    let epoch = leader
        .replica_manager()
        .partition(TOPIC, 0)
        .unwrap()
        .leader_epoch();

    for sequence in 0..4 {
        assert_eq!(produce(leader, sequence).await, None);
    }
    eventually("the follower's high watermark", || {
        follower
            .replica_manager()
            .partition(TOPIC, 0)
            .unwrap()
            .offsets()
            .unwrap()
            .high_watermark
            == 4
    })
    .await;

    // OffsetForLeaderEpoch: the leader answers consumers (-1) and replicas (>= 0) alike.
    assert_eq!(epoch_end(leader, -1, epoch, epoch).await, (None, epoch, 4));
    assert_eq!(epoch_end(leader, 2, epoch, epoch).await, (None, epoch, 4));
    assert_eq!(epoch_end(leader, -1, -1, epoch).await, (None, epoch, 4));
    // The current leader epoch is checked first, on any replica.
    let not_leader = Some(ResponseError::NotLeaderOrFollower);
    for broker in [leader, follower] {
        assert_eq!(
            epoch_end(broker, -1, epoch + 1, epoch).await.0,
            Some(ResponseError::UnknownLeaderEpoch)
        );
    }
    if epoch > 0 {
        assert_eq!(
            epoch_end(leader, -1, epoch - 1, epoch).await.0,
            Some(ResponseError::FencedLeaderEpoch)
        );
    }
    // A follower holds the same log but is not asked (consumers and replicas).
    assert_eq!(epoch_end(follower, -1, epoch, epoch).await.0, not_leader);
    assert_eq!(epoch_end(follower, 3, epoch, epoch).await.0, not_leader);
    assert_eq!(epoch_end(outsider, -1, epoch, epoch).await.0, not_leader);

    // DeleteRecords: refused by the follower and the outsider without touching the log ...
    assert_eq!(delete_records(follower, 2).await, (not_leader, -1));
    assert_eq!(delete_records(outsider, 2).await, (not_leader, -1));
    assert_eq!(
        delete_records(leader, -2).await.0,
        Some(ResponseError::OffsetOutOfRange)
    );
    let log_start = |broker: &Broker| {
        broker
            .replica_manager()
            .partition(TOPIC, 0)
            .unwrap()
            .offsets()
            .unwrap()
            .log_start_offset
    };
    assert_eq!((log_start(leader), log_start(follower)), (0, 0));
    // ... done by the leader, and the follower follows through its fetches.
    assert_eq!(delete_records(leader, 2).await, (None, 2));
    assert_eq!(log_start(leader), 2);
    assert_eq!(produce(leader, 4).await, None);
    eventually("the follower's log start offset", || {
        log_start(follower) == 2
    })
    .await;
    // Without `delete` in cleanup.policy, nothing is deleted (Kafka's policy check).
    eventually("the compacted topic led by broker 1", || {
        leader
            .replica_manager()
            .partition(COMPACTED, 0)
            .is_some_and(|p| p.is_leader())
    })
    .await;
    assert_eq!(
        delete_records_of(leader, COMPACTED, -1).await,
        (Some(ResponseError::PolicyViolation), -1)
    );

    // DescribeProducers: any replica answers from its own producer state; a broker without a
    // replica of the partition answers NOT_LEADER_OR_FOLLOWER.
    assert_eq!(producers(leader).await, (None, vec![PRODUCER_ID]));
    assert_eq!(producers(follower).await, (None, vec![PRODUCER_ID]));
    assert_eq!(producers(outsider).await, (not_leader, Vec::new()));
}
