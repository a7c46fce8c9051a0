//! Transactions through the real `Broker` (real files in a temp dir), driven with typed
//! requests: a TV1 transaction (AddPartitionsToTxn, AddOffsetsToTxn, EndTxn v3), a TV2 one
//! (implicit add, EndTxn v5), fencing, admin APIs and a restart.

use fjord_broker::testing::CompleteNow;
use std::collections::BTreeMap;

use bytes::Bytes;
use fjord_broker::testing::SingleNode;
use fjord_broker::transaction_coordinator::metadata::TransactionState;
use fjord_broker::{Broker, BrokerConfig, Outcome};
use fjord_protocol::kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use fjord_protocol::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use fjord_protocol::kafka_protocol::messages::*;
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ApiKey, RequestKind, ResponseError, ResponseKind};

fn broker(dir: &std::path::Path) -> SingleNode {
    let values = BTreeMap::from([
        ("data.dir".to_string(), dir.display().to_string()),
        (
            "transaction.state.log.num.partitions".to_string(),
            "3".to_string(),
        ),
        ("offsets.topic.num.partitions".to_string(), "3".to_string()),
    ]);
    SingleNode::start(BrokerConfig::from_settings(&values).unwrap()).unwrap()
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
        .with_request_api_version(version)
        .with_correlation_id(1);
    match block_on(broker.handle(&header, request)) {
        Outcome::Respond(response) => {
            fjord_protocol::response::encode_response(api_key, version, 1, &response).unwrap();
            response
        }
        other => panic!("unexpected {other:?}"),
    }
}

fn txn_id(s: &str) -> TransactionalId {
    TransactionalId(StrBytes::from_string(s.to_string()))
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn produce(broker: &Broker, topic: &str, partition: i32) {
    let records = Bytes::from(fjord_protocol::batch_builder::encode_values(1_000, 1, b"v"));
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(1000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])]);
    let ResponseKind::Produce(r) = call(broker, ApiKey::Produce, 9, RequestKind::Produce(request))
    else {
        panic!()
    };
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
}

fn init(broker: &Broker, version: i16, id: &str, expected: (i64, i16)) -> InitProducerIdResponse {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(Some(txn_id(id)))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(expected.0))
        .with_producer_epoch(expected.1);
    let ResponseKind::InitProducerId(r) = call(
        broker,
        ApiKey::InitProducerId,
        version,
        RequestKind::InitProducerId(request),
    ) else {
        panic!()
    };
    r
}

fn add_partitions(
    broker: &Broker,
    version: i16,
    id: &str,
    pid: i64,
    epoch: i16,
    topic: &str,
    partitions: Vec<i32>,
) -> Vec<(i32, i16)> {
    let request = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(txn_id(id))
        .with_v3_and_below_producer_id(ProducerId(pid))
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
            .with_name(name(topic))
            .with_partitions(partitions)]);
    let ResponseKind::AddPartitionsToTxn(r) = call(
        broker,
        ApiKey::AddPartitionsToTxn,
        version,
        RequestKind::AddPartitionsToTxn(request),
    ) else {
        panic!()
    };
    r.results_by_topic_v3_and_below
        .iter()
        .flat_map(|t| {
            t.results_by_partition
                .iter()
                .map(|p| (p.partition_index, p.partition_error_code))
        })
        .collect()
}

fn end_txn(
    broker: &Broker,
    version: i16,
    id: &str,
    pid: i64,
    epoch: i16,
    commit: bool,
) -> EndTxnResponse {
    let request = EndTxnRequest::default()
        .with_transactional_id(txn_id(id))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_committed(commit);
    let ResponseKind::EndTxn(r) = call(
        broker,
        ApiKey::EndTxn,
        version,
        RequestKind::EndTxn(request),
    ) else {
        panic!()
    };
    r
}

fn log_end(broker: &Broker, topic: &str, partition: i32) -> i64 {
    broker
        .replica_manager()
        .partition(topic, partition)
        .unwrap()
        .offsets()
        .unwrap()
        .log_end_offset
}

#[test]
fn a_tv1_transaction_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    produce(&broker, "orders", 0);

    let find = FindCoordinatorRequest::default()
        .with_key_type(1)
        .with_key(StrBytes::from_static_str("tx-1"));
    let ResponseKind::FindCoordinator(found) = call(
        &broker,
        ApiKey::FindCoordinator,
        3,
        RequestKind::FindCoordinator(find),
    ) else {
        panic!()
    };
    assert_eq!(found.error_code, 0);
    assert!(broker
        .replica_manager()
        .topic("__transaction_state")
        .is_some());

    let r = init(&broker, 4, "tx-1", (-1, -1));
    assert_eq!(r.error_code, 0);
    let (pid, epoch) = (r.producer_id.0, r.producer_epoch);
    assert_eq!(epoch, 0);

    // Unknown partition: the whole request fails, the known one is not attempted.
    let results = add_partitions(&broker, 3, "tx-1", pid, epoch, "orders", vec![0, 7]);
    assert_eq!(
        results,
        vec![
            (0, ResponseError::OperationNotAttempted.code()),
            (7, ResponseError::UnknownTopicOrPartition.code())
        ]
    );
    // Internal topics cannot be added by producers.
    let results = add_partitions(
        &broker,
        3,
        "tx-1",
        pid,
        epoch,
        "__consumer_offsets",
        vec![0],
    );
    assert_eq!(
        results,
        vec![(0, ResponseError::TopicAuthorizationFailed.code())]
    );
    assert_eq!(
        add_partitions(&broker, 3, "tx-1", pid, epoch, "orders", vec![0]),
        vec![(0, 0)]
    );

    let request = AddOffsetsToTxnRequest::default()
        .with_transactional_id(txn_id("tx-1"))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_group_id(GroupId(StrBytes::from_static_str("g")));
    let ResponseKind::AddOffsetsToTxn(r) = call(
        &broker,
        ApiKey::AddOffsetsToTxn,
        3,
        RequestKind::AddOffsetsToTxn(request),
    ) else {
        panic!()
    };
    assert_eq!(r.error_code, 0);
    let coordinator = broker.transaction_coordinator();
    let md = coordinator.transaction_metadata("tx-1").unwrap();
    assert_eq!(md.state, TransactionState::Ongoing);
    let group_partition = broker.group_coordinator().partition_for("g");
    assert!(md
        .topic_partitions
        .contains(&("__consumer_offsets".to_string(), group_partition)));

    // Describe and list while ongoing.
    let request =
        DescribeTransactionsRequest::default().with_transactional_ids(vec![txn_id("tx-1")]);
    let ResponseKind::DescribeTransactions(r) = call(
        &broker,
        ApiKey::DescribeTransactions,
        0,
        RequestKind::DescribeTransactions(request),
    ) else {
        panic!()
    };
    assert_eq!(
        r.transaction_states[0].transaction_state.as_str(),
        "Ongoing"
    );
    assert_eq!(r.transaction_states[0].topics.len(), 2);
    let request = ListTransactionsRequest::default()
        .with_state_filters(vec![StrBytes::from_static_str("Ongoing")]);
    let ResponseKind::ListTransactions(r) = call(
        &broker,
        ApiKey::ListTransactions,
        1,
        RequestKind::ListTransactions(request),
    ) else {
        panic!()
    };
    assert_eq!(r.transaction_states.len(), 1);

    let before = log_end(&broker, "orders", 0);
    let r = end_txn(&broker, 3, "tx-1", pid, epoch, true);
    assert_eq!(r.error_code, 0);
    // v3 has no producer id/epoch fields: defaults.
    assert_eq!((r.producer_id.0, r.producer_epoch), (-1, -1));
    assert_eq!(
        coordinator.transaction_metadata("tx-1").unwrap().state,
        TransactionState::CompleteCommit
    );
    // The in-process writer appended a COMMIT marker to the data partition.
    assert_eq!(log_end(&broker, "orders", 0), before + 1);

    // Old EndTxn versions get INVALID_PRODUCER_EPOCH instead of PRODUCER_FENCED.
    let r2 = init(&broker, 3, "tx-1", (-1, -1));
    assert_eq!(r2.producer_epoch, 1);
    assert_eq!(
        end_txn(&broker, 1, "tx-1", pid, epoch, true).error_code,
        ResponseError::InvalidProducerEpoch.code()
    );
    assert_eq!(
        end_txn(&broker, 2, "tx-1", pid, epoch, true).error_code,
        ResponseError::ProducerFenced.code()
    );
    // Same for InitProducerId below v4 with a stale KIP-360 epoch.
    assert_eq!(
        init(&broker, 3, "tx-1", (pid, 0)).error_code,
        ResponseError::InvalidProducerEpoch.code()
    );
    assert_eq!(
        init(&broker, 4, "tx-1", (pid, 0)).error_code,
        ResponseError::ProducerFenced.code()
    );
    assert_eq!(
        init(&broker, 4, "tx-1", (pid, -1)).error_code,
        ResponseError::InvalidRequest.code()
    );
}

#[test]
fn a_tv2_transaction_bumps_the_epoch_in_end_txn() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    produce(&broker, "orders", 0);
    let r = init(&broker, 5, "tx-2", (-1, -1));
    let (pid, epoch) = (r.producer_id.0, r.producer_epoch);
    // What Produce v12 does before appending (KIP-890 part 2).
    broker
        .transaction_coordinator()
        .verify_or_add_partitions(
            "tx-2",
            pid,
            epoch,
            &[("orders".to_string(), 0)],
            true,
            fjord_broker::time::now_ms(),
        )
        .now()
        .unwrap();
    let before = log_end(&broker, "orders", 0);
    let r = end_txn(&broker, 5, "tx-2", pid, epoch, false);
    assert_eq!(r.error_code, 0);
    assert_eq!((r.producer_id.0, r.producer_epoch), (pid, epoch + 1));
    assert_eq!(log_end(&broker, "orders", 0), before + 1);
    let md = broker
        .transaction_coordinator()
        .transaction_metadata("tx-2")
        .unwrap();
    assert_eq!(
        (md.state, md.producer_epoch),
        (TransactionState::CompleteAbort, epoch + 1)
    );
    // AddPartitionsToTxn v5 verify_only from a broker-side caller.
    let request = AddPartitionsToTxnRequest::default().with_transactions(vec![
        add_partitions_to_txn_request::AddPartitionsToTxnTransaction::default()
            .with_transactional_id(txn_id("tx-2"))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch + 1)
            .with_verify_only(true)
            .with_topics(vec![AddPartitionsToTxnTopic::default()
                .with_name(name("orders"))
                .with_partitions(vec![0])]),
    ]);
    let ResponseKind::AddPartitionsToTxn(r) = call(
        &broker,
        ApiKey::AddPartitionsToTxn,
        5,
        RequestKind::AddPartitionsToTxn(request),
    ) else {
        panic!()
    };
    assert_eq!(
        r.results_by_transaction[0].topic_results[0].results_by_partition[0].partition_error_code,
        ResponseError::TransactionAbortable.code()
    );
}

#[test]
fn transactions_and_producer_ids_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (pid, epoch, idempotent) = {
        let broker = broker(dir.path());
        produce(&broker, "orders", 0);
        let r = init(&broker, 4, "tx-3", (-1, -1));
        let (pid, epoch) = (r.producer_id.0, r.producer_epoch);
        assert_eq!(
            add_partitions(&broker, 3, "tx-3", pid, epoch, "orders", vec![0]),
            vec![(0, 0)]
        );
        let request = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let ResponseKind::InitProducerId(r) = call(
            &broker,
            ApiKey::InitProducerId,
            4,
            RequestKind::InitProducerId(request),
        ) else {
            panic!()
        };
        broker.close().unwrap();
        (pid, epoch, r.producer_id.0)
    };
    let broker = broker(dir.path());
    let md = broker
        .transaction_coordinator()
        .transaction_metadata("tx-3")
        .unwrap();
    assert_eq!(
        (md.producer_id, md.producer_epoch, md.state),
        (pid, epoch, TransactionState::Ongoing)
    );
    // The ongoing transaction can be committed after the restart.
    assert_eq!(end_txn(&broker, 4, "tx-3", pid, epoch, true).error_code, 0);
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let ResponseKind::InitProducerId(r) = call(
        &broker,
        ApiKey::InitProducerId,
        4,
        RequestKind::InitProducerId(request),
    ) else {
        panic!()
    };
    assert!(
        r.producer_id.0 > idempotent && r.producer_id.0 != pid,
        "{} after {idempotent} and {pid}",
        r.producer_id.0
    );
}

/// Coordinator failover for transactions: a `__transaction_state` partition led elsewhere
/// answers NOT_COORDINATOR; leading it again reloads the transactional id from the log, so
/// the next InitProducerId bumps the epoch instead of starting over.
#[test]
fn a_transaction_shard_unloads_on_resignation_and_reloads_on_election() {
    let dir = tempfile::tempdir().unwrap();
    let node = broker(dir.path());
    let first = init(&node, 4, "tx-failover", (-1, -1));
    assert_eq!(first.error_code, 0);
    let coordinator = node.transaction_coordinator();
    let partition = coordinator.partition_for("tx-failover");

    coordinator.sync_leadership(&|p| p != partition, &[]);
    assert!(coordinator.transaction_metadata("tx-failover").is_none());
    assert_eq!(
        init(&node, 4, "tx-failover", (-1, -1)).error_code,
        ResponseError::NotCoordinator.code()
    );

    coordinator.sync_leadership(&|_| true, &[partition]);
    let reloaded = coordinator
        .transaction_metadata("tx-failover")
        .expect("reloaded from __transaction_state");
    assert_eq!(reloaded.producer_id, first.producer_id.0);
    let again = init(
        &node,
        4,
        "tx-failover",
        (first.producer_id.0, first.producer_epoch),
    );
    assert_eq!(again.error_code, 0);
    assert_eq!(again.producer_id, first.producer_id);
    assert_eq!(again.producer_epoch, first.producer_epoch + 1);
}
