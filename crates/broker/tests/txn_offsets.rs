//! Transactional offset commits through the real `Broker` (`__consumer_offsets` on disk):
//! TxnOffsetCommit writes one transactional batch, OffsetFetch with `require_stable` answers
//! UNSTABLE_OFFSET_COMMIT until the transaction's marker, and pending offsets and markers come
//! back from the log after a restart.

use fjord_broker::testing::CompleteNow;
use std::collections::BTreeMap;

use fjord_broker::testing::SingleNode;
use fjord_broker::{Broker, BrokerConfig, Outcome};
use fjord_protocol::kafka_protocol::messages::create_topics_request::CreatableTopic;
use fjord_protocol::kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use fjord_protocol::kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use fjord_protocol::kafka_protocol::messages::*;
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::records::BatchIter;
use fjord_protocol::{ApiKey, RequestKind, ResponseError, ResponseKind};

const GROUP: &str = "txn-group";

/// Starts a transaction of `transactional_id` that includes the group's offsets partition
/// (InitProducerId + AddOffsetsToTxn through the transaction coordinator).
fn begin(broker: &Broker, transactional_id: &str) -> (i64, i16) {
    let coordinator = broker.transaction_coordinator();
    let (producer_id, epoch) = coordinator
        .init_producer_id(Some(transactional_id), 60_000, None, 1_000)
        .now()
        .unwrap();
    let offsets_partition = broker.group_coordinator().offsets_partition(GROUP);
    let partitions =
        std::collections::BTreeSet::from([("__consumer_offsets".to_string(), offsets_partition)]);
    coordinator
        .add_partitions_to_transaction(transactional_id, producer_id, epoch, &partitions, 0, 1_000)
        .now()
        .unwrap();
    (producer_id, epoch)
}

fn end(broker: &Broker, transactional_id: &str, (producer_id, epoch): (i64, i16), commit: bool) {
    broker
        .transaction_coordinator()
        .end_transaction(transactional_id, producer_id, epoch, commit, 0, 2_000)
        .now()
        .unwrap();
}

fn open(dir: &std::path::Path) -> SingleNode {
    let mut values = BTreeMap::new();
    values.insert("data.dir".to_string(), dir.display().to_string());
    values.insert("offsets.topic.num.partitions".into(), "3".into());
    let node = SingleNode::start(BrokerConfig::from_settings(&values).unwrap()).unwrap();
    // These tests drive the transaction coordinator's API directly, without the requests
    // (FindCoordinator, InitProducerId) that create its topic through the controller.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert!(runtime
        .block_on(node.internal_topic_or_create("__transaction_state"))
        .is_some());
    node
}

fn call(broker: &Broker, api_key: ApiKey, version: i16, request: RequestKind) -> ResponseKind {
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    match runtime.block_on(broker.handle(&header, request)) {
        Outcome::Respond(response) => response,
        other => panic!("{api_key:?}: {other:?}"),
    }
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn create_topic(broker: &Broker) {
    let request = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(TopicName(s("t")))
        .with_num_partitions(2)
        .with_replication_factor(1)]);
    let ResponseKind::CreateTopics(response) = call(
        broker,
        ApiKey::CreateTopics,
        7,
        RequestKind::CreateTopics(request),
    ) else {
        panic!("no CreateTopics response")
    };
    assert_eq!(response.topics[0].error_code, 0);
}

/// TxnOffsetCommit of partitions 0 and 9 (which does not exist) of `t`: their error codes.
fn txn_commit(
    broker: &Broker,
    version: i16,
    transactional_id: &str,
    (producer_id, epoch): (i64, i16),
    offset: i64,
) -> Vec<i16> {
    let request = TxnOffsetCommitRequest::default()
        .with_transactional_id(TransactionalId(s(transactional_id)))
        .with_group_id(GroupId(s(GROUP)))
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(epoch)
        .with_generation_id(-1)
        .with_topics(vec![TxnOffsetCommitRequestTopic::default()
            .with_name(TopicName(s("t")))
            .with_partitions(vec![
                TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(offset),
                TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(9)
                    .with_committed_offset(offset),
            ])]);
    let ResponseKind::TxnOffsetCommit(response) = call(
        broker,
        ApiKey::TxnOffsetCommit,
        version,
        RequestKind::TxnOffsetCommit(request),
    ) else {
        panic!("no TxnOffsetCommit response")
    };
    response.topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect()
}

/// OffsetFetch of `t`-0: (offset, partition error) at v7 (one group) or v8 (groups).
fn fetch(broker: &Broker, version: i16, require_stable: bool) -> (i64, i16) {
    let request = if version >= 8 {
        OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                .with_name(TopicName(s("t")))
                .with_partition_indexes(vec![0])]))])
    } else {
        OffsetFetchRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(TopicName(s("t")))
                .with_partition_indexes(vec![0])]))
    }
    .with_require_stable(require_stable);
    let ResponseKind::OffsetFetch(response) = call(
        broker,
        ApiKey::OffsetFetch,
        version,
        RequestKind::OffsetFetch(request),
    ) else {
        panic!("no OffsetFetch response")
    };
    if version >= 8 {
        let p = &response.groups[0].topics[0].partitions[0];
        (p.committed_offset, p.error_code)
    } else {
        let p = &response.topics[0].partitions[0];
        (p.committed_offset, p.error_code)
    }
}

fn offsets_partition(broker: &Broker) -> std::sync::Arc<fjord_broker::partition::Partition> {
    let coordinator = broker.group_coordinator();
    let topic = broker
        .replica_manager()
        .topic("__consumer_offsets")
        .expect("created by the first commit");
    topic.partitions[coordinator.offsets_partition(GROUP) as usize].clone()
}

#[test]
fn transactional_offsets_are_pending_until_the_marker_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let unstable = ResponseError::UnstableOffsetCommit.code();
    let second = {
        let broker = open(dir.path());
        create_topic(&broker);
        // Before the transaction includes the offsets partition, v0-4 are refused (KIP-890
        // verification); v5 (transactions V2) adds it implicitly.
        let producer = broker
            .transaction_coordinator()
            .init_producer_id(Some("tx"), 60_000, None, 1_000)
            .now()
            .unwrap();
        assert_eq!(
            txn_commit(&broker, 3, "tx", producer, 10),
            vec![
                ResponseError::InvalidTxnState.code(),
                ResponseError::UnknownTopicOrPartition.code()
            ]
        );
        let producer = begin(&broker, "tx");
        for version in [0, 3, 5] {
            assert_eq!(
                txn_commit(&broker, version, "tx", producer, 10),
                vec![0, ResponseError::UnknownTopicOrPartition.code()],
                "v{version}"
            );
        }
        // The records are one transactional batch per commit, with the producer's id and epoch.
        let partition = offsets_partition(&broker);
        let (data, _) = partition
            .read(0, 1 << 20, true, fjord_storage::Isolation::ReadUncommitted)
            .unwrap();
        let bytes = data.records.read_to_bytes().unwrap();
        let headers: Vec<_> = BatchIter::new(&bytes).map(|b| b.unwrap().0).collect();
        assert_eq!(headers.len(), 3);
        for header in &headers {
            assert!(header.is_transactional() && !header.is_control());
            assert_eq!(
                (
                    header.producer_id,
                    header.producer_epoch,
                    header.base_sequence
                ),
                (producer.0, producer.1, 0)
            );
        }

        assert_eq!(fetch(&broker, 6, false), (-1, 0), "invisible");
        assert_eq!(fetch(&broker, 7, true), (-1, unstable));
        assert_eq!(fetch(&broker, 8, true), (-1, unstable));
        assert_eq!(fetch(&broker, 8, false), (-1, 0));

        // EndTxn: the COMMIT marker is appended, then the group coordinator told.
        end(&broker, "tx", producer, true);
        assert_eq!(fetch(&broker, 7, true), (10, 0));
        assert_eq!(fetch(&broker, 9, true), (10, 0));

        // A second transaction stays open across the restart.
        let second = begin(&broker, "tx2");
        assert_eq!(txn_commit(&broker, 4, "tx2", second, 20)[0], 0);
        assert_eq!(fetch(&broker, 7, true), (-1, unstable));
        assert_eq!(fetch(&broker, 7, false), (10, 0));
        broker.close().unwrap();
        second
    };
    let broker = open(dir.path());
    assert_eq!(fetch(&broker, 7, false), (10, 0), "the marker was replayed");
    assert_eq!(fetch(&broker, 7, true), (-1, unstable), "still pending");
    end(&broker, "tx2", second, false);
    assert_eq!(fetch(&broker, 7, true), (10, 0), "aborted");
}
