//! Idempotent and transactional produce through `Broker::handle` with typed requests: what a
//! producer sees for duplicates, gaps, stale epochs and transactions, and what read_committed
//! and read_uncommitted readers see afterwards.

use std::collections::BTreeMap;

use bytes::Bytes;
use fjord_broker::testing::SingleNode;
use fjord_broker::{Broker, BrokerConfig, Outcome};
use fjord_protocol::batch_builder::{
    encode_uncompressed_with_producer, ProducerFields, Record, CONTROL_ATTRIBUTE,
    TRANSACTIONAL_ATTRIBUTE,
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
use fjord_protocol::records::BatchIter;
use fjord_protocol::{ApiKey, RequestKind, ResponseError, ResponseKind};

fn broker(dir: &std::path::Path) -> SingleNode {
    let mut values = BTreeMap::new();
    values.insert("data.dir".to_string(), dir.display().to_string());
    values.insert(
        "group.initial.rebalance.delay.ms".to_string(),
        "0".to_string(),
    );
    SingleNode::start(BrokerConfig::from_settings(&values).unwrap()).unwrap()
}

fn header(api_key: ApiKey, version: i16) -> RequestHeader {
    RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn handle(broker: &Broker, version: i16, request: RequestKind) -> ResponseKind {
    let api_key = match &request {
        RequestKind::Produce(_) => ApiKey::Produce,
        RequestKind::Fetch(_) => ApiKey::Fetch,
        RequestKind::ListOffsets(_) => ApiKey::ListOffsets,
        RequestKind::InitProducerId(_) => ApiKey::InitProducerId,
        RequestKind::AddPartitionsToTxn(_) => ApiKey::AddPartitionsToTxn,
        RequestKind::EndTxn(_) => ApiKey::EndTxn,
        RequestKind::DescribeProducers(_) => ApiKey::DescribeProducers,
        _ => panic!("add the api key"),
    };
    match block_on(broker.handle(&header(api_key, version), request))
        .into_inline()
        .unwrap()
    {
        Outcome::Respond(response) => response,
        other => panic!("unexpected {other:?}"),
    }
}

/// A batch of `count` records from a producer; `transactional` sets the attribute bit.
fn producer_batch(
    producer_id: i64,
    epoch: i16,
    base_sequence: i32,
    count: usize,
    transactional: bool,
) -> Bytes {
    let values: Vec<Vec<u8>> = (0..count)
        .map(|i| format!("s{}", i64::from(base_sequence) + i as i64).into_bytes())
        .collect();
    let records: Vec<Record<'_>> = values
        .iter()
        .map(|v| Record {
            value: Some(v),
            ..Record::default()
        })
        .collect();
    Bytes::from(encode_uncompressed_with_producer(
        0,
        1_000,
        if transactional {
            TRANSACTIONAL_ATTRIBUTE
        } else {
            0
        },
        ProducerFields {
            producer_id,
            producer_epoch: epoch,
            base_sequence,
        },
        &records,
    ))
}

/// Produce v9 of one batch to `topic`-0; returns (error code, base offset).
fn produce(
    broker: &Broker,
    transactional_id: Option<&str>,
    topic: &str,
    records: Bytes,
) -> (i16, i64) {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(1000)
        .with_transactional_id(
            transactional_id.map(|id| TransactionalId(StrBytes::from_string(id.into()))),
        )
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    match handle(broker, 9, RequestKind::Produce(request)) {
        ResponseKind::Produce(r) => {
            let p = &r.responses[0].partition_responses[0];
            (p.error_code, p.base_offset)
        }
        other => panic!("unexpected {other:?}"),
    }
}

fn init_producer_id(broker: &Broker, transactional_id: Option<&str>) -> (i64, i16) {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(
            transactional_id.map(|id| TransactionalId(StrBytes::from_string(id.into()))),
        )
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    match handle(broker, 4, RequestKind::InitProducerId(request)) {
        ResponseKind::InitProducerId(r) => {
            assert_eq!(r.error_code, 0, "InitProducerId failed");
            (r.producer_id.0, r.producer_epoch)
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// Fetch v11 of `topic`-0 from `offset` at an isolation level; returns (high watermark, last
/// stable offset, aborted transactions as (producer id, first offset), batches as (base
/// offset, producer id, is control)).
#[allow(clippy::type_complexity)]
fn fetch(
    broker: &Broker,
    topic: &str,
    offset: i64,
    read_committed: bool,
) -> (i64, i64, Option<Vec<(i64, i64)>>, Vec<(i64, i64, bool)>) {
    let request = FetchRequest::default()
        .with_max_bytes(1 << 20)
        .with_isolation_level(i8::from(read_committed))
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])]);
    let ResponseKind::Fetch(response) = handle(broker, 11, RequestKind::Fetch(request)) else {
        panic!("not a fetch response");
    };
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    let aborted = partition.aborted_transactions.as_ref().map(|list| {
        list.iter()
            .map(|t| (t.producer_id.0, t.first_offset))
            .collect()
    });
    let records = partition.records.clone().unwrap_or_default();
    let batches = BatchIter::new(&records)
        .map(|b| {
            let (h, _) = b.unwrap();
            (h.base_offset, h.producer_id, h.is_control())
        })
        .collect();
    (
        partition.high_watermark,
        partition.last_stable_offset,
        aborted,
        batches,
    )
}

fn list_latest(broker: &Broker, topic: &str, read_committed: bool) -> i64 {
    let request = ListOffsetsRequest::default()
        .with_isolation_level(i8::from(read_committed))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![
                ListOffsetsPartition::default().with_timestamp(-1)
            ])]);
    match handle(broker, 7, RequestKind::ListOffsets(request)) {
        ResponseKind::ListOffsets(r) => r.topics[0].partitions[0].offset,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn idempotent_producer_duplicates_gaps_and_stale_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let (pid, epoch) = init_producer_id(&broker, None);
    assert!(pid >= 0);
    assert_eq!(epoch, 0);
    assert_eq!(
        produce(&broker, None, "idem", producer_batch(pid, 0, 0, 3, false)),
        (0, 0)
    );
    assert_eq!(
        produce(&broker, None, "idem", producer_batch(pid, 0, 3, 2, false)),
        (0, 3)
    );
    // A retry of either batch answers its original offsets and writes nothing.
    assert_eq!(
        produce(&broker, None, "idem", producer_batch(pid, 0, 0, 3, false)),
        (0, 0)
    );
    assert_eq!(
        produce(&broker, None, "idem", producer_batch(pid, 0, 3, 2, false)),
        (0, 3)
    );
    assert_eq!(list_latest(&broker, "idem", false), 5);
    // A gap in the sequence.
    assert_eq!(
        produce(&broker, None, "idem", producer_batch(pid, 0, 9, 1, false)).0,
        ResponseError::OutOfOrderSequenceNumber.code()
    );
    // A producer the partition has no state for may start anywhere (Kafka since KIP-360:
    // its earlier batches may have been removed by retention).
    assert_eq!(
        produce(
            &broker,
            None,
            "idem",
            producer_batch(pid + 1, 0, 5, 1, false)
        ),
        (0, 5)
    );
    // A new epoch must start at sequence 0; after it, the old epoch is fenced.
    assert_eq!(
        produce(&broker, None, "idem", producer_batch(pid, 1, 7, 1, false)).0,
        ResponseError::OutOfOrderSequenceNumber.code()
    );
    assert_eq!(
        produce(&broker, None, "idem", producer_batch(pid, 1, 0, 1, false)),
        (0, 6)
    );
    assert_eq!(
        produce(&broker, None, "idem", producer_batch(pid, 0, 5, 1, false)).0,
        ResponseError::InvalidProducerEpoch.code()
    );
    assert_eq!(list_latest(&broker, "idem", false), 7);
    // DescribeProducers shows the producer's state.
    let request = DescribeProducersRequest::default().with_topics(vec![
        fjord_protocol::kafka_protocol::messages::describe_producers_request::TopicRequest::default()
            .with_name(name("idem"))
            .with_partition_indexes(vec![0]),
    ]);
    let ResponseKind::DescribeProducers(described) =
        handle(&broker, 0, RequestKind::DescribeProducers(request))
    else {
        panic!("not a DescribeProducers response");
    };
    let producers = &described.topics[0].partitions[0].active_producers;
    let mine = producers
        .iter()
        .find(|p| p.producer_id.0 == pid)
        .expect("producer listed");
    assert_eq!((mine.producer_epoch, mine.last_sequence), (1, 0));
    assert_eq!(mine.current_txn_start_offset, -1);
}

#[test]
fn deduplication_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let pid = {
        let broker = broker(dir.path());
        let (pid, _) = init_producer_id(&broker, None);
        assert_eq!(
            produce(
                &broker,
                None,
                "restart",
                producer_batch(pid, 0, 0, 4, false)
            ),
            (0, 0)
        );
        broker.close().unwrap();
        pid
    };
    let broker = broker(dir.path());
    assert_eq!(
        produce(
            &broker,
            None,
            "restart",
            producer_batch(pid, 0, 0, 4, false)
        ),
        (0, 0)
    );
    assert_eq!(
        produce(
            &broker,
            None,
            "restart",
            producer_batch(pid, 0, 4, 1, false)
        ),
        (0, 4)
    );
    assert_eq!(list_latest(&broker, "restart", false), 5);
    // Producer ids are never handed out twice, across restarts.
    let (next, _) = init_producer_id(&broker, None);
    assert_ne!(next, pid);
}

#[test]
fn clients_cannot_write_markers_or_transactions_without_an_id() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let marker = Bytes::from(fjord_protocol::control::encode_end_txn_marker(
        5,
        0,
        fjord_protocol::control::EndTxnMarker {
            commit: true,
            coordinator_epoch: 0,
        },
        1_000,
    ));
    assert_eq!(
        produce(&broker, Some("t1"), "markers", marker).0,
        ResponseError::InvalidRecord.code()
    );
    let _ = CONTROL_ATTRIBUTE;
    assert_eq!(
        produce(&broker, None, "markers", producer_batch(5, 0, 0, 1, true)).0,
        ResponseError::TransactionalIdAuthorizationFailed.code()
    );
    // A transactional batch for a partition never added to the transaction.
    let (pid, epoch) = init_producer_id(&broker, Some("t1"));
    assert_eq!(
        produce(
            &broker,
            Some("t1"),
            "markers",
            producer_batch(pid, epoch, 0, 1, true)
        )
        .0,
        ResponseError::InvalidTxnState.code()
    );
}

fn add_partitions(broker: &Broker, transactional_id: &str, pid: i64, epoch: i16, topic: &str) {
    use fjord_protocol::kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
    let request = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(StrBytes::from_string(
            transactional_id.into(),
        )))
        .with_v3_and_below_producer_id(ProducerId(pid))
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![0])]);
    let ResponseKind::AddPartitionsToTxn(response) =
        handle(broker, 3, RequestKind::AddPartitionsToTxn(request))
    else {
        panic!("not an AddPartitionsToTxn response");
    };
    for topic in &response.results_by_topic_v3_and_below {
        for p in &topic.results_by_partition {
            assert_eq!(p.partition_error_code, 0, "AddPartitionsToTxn");
        }
    }
}

fn end_txn(broker: &Broker, transactional_id: &str, pid: i64, epoch: i16, commit: bool) {
    let request = EndTxnRequest::default()
        .with_transactional_id(TransactionalId(StrBytes::from_string(
            transactional_id.into(),
        )))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_committed(commit);
    let ResponseKind::EndTxn(response) = handle(broker, 3, RequestKind::EndTxn(request)) else {
        panic!("not an EndTxn response");
    };
    assert_eq!(response.error_code, 0, "EndTxn");
}

#[test]
fn read_committed_stops_at_open_transactions_and_skips_aborted_ones() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let topic = "txn";
    let (pid, epoch) = init_producer_id(&broker, Some("app"));
    // Non-transactional data first, from another producer.
    assert_eq!(
        produce(&broker, None, topic, producer_batch(-1, -1, -1, 2, false)),
        (0, 0)
    );
    // Transaction 1: aborted.
    add_partitions(&broker, "app", pid, epoch, topic);
    assert_eq!(
        produce(
            &broker,
            Some("app"),
            topic,
            producer_batch(pid, epoch, 0, 3, true)
        ),
        (0, 2)
    );
    // Open: read_committed sees up to the transaction's first offset.
    assert_eq!(list_latest(&broker, topic, true), 2);
    assert_eq!(list_latest(&broker, topic, false), 5);
    let (hw, lso, aborted, batches) = fetch(&broker, topic, 0, true);
    assert_eq!((hw, lso), (5, 2));
    assert_eq!(aborted, Some(vec![]));
    assert_eq!(batches, vec![(0, -1, false)]);
    end_txn(&broker, "app", pid, epoch, false);
    // Marker at 5; everything is stable now.
    let (hw, lso, aborted, batches) = fetch(&broker, topic, 0, true);
    assert_eq!((hw, lso), (6, 6));
    assert_eq!(aborted, Some(vec![(pid, 2)]));
    assert_eq!(
        batches,
        vec![(0, -1, false), (2, pid, false), (5, pid, true)]
    );
    // Transaction 2: committed.
    add_partitions(&broker, "app", pid, epoch, topic);
    assert_eq!(
        produce(
            &broker,
            Some("app"),
            topic,
            producer_batch(pid, epoch, 3, 2, true)
        ),
        (0, 6)
    );
    end_txn(&broker, "app", pid, epoch, true);
    let (_, lso, aborted, _) = fetch(&broker, topic, 6, true);
    assert_eq!(lso, 9);
    assert_eq!(
        aborted,
        Some(vec![]),
        "the aborted transaction ends before offset 6"
    );
    // read_uncommitted gets no aborted list at all.
    let (_, _, aborted, batches) = fetch(&broker, topic, 0, false);
    assert_eq!(aborted, None);
    assert_eq!(batches.len(), 5);
    // The open-transaction bound and aborted index survive a restart.
    add_partitions(&broker, "app", pid, epoch, topic);
    assert_eq!(
        produce(
            &broker,
            Some("app"),
            topic,
            producer_batch(pid, epoch, 5, 1, true)
        ),
        (0, 9)
    );
    broker.close().unwrap();
    drop(broker);
    let broker = self::broker(dir.path());
    let (_, lso, aborted, _) = fetch(&broker, topic, 0, true);
    assert_eq!(lso, 9);
    assert_eq!(aborted, Some(vec![(pid, 2)]));
}
