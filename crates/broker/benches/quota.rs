//! What client quotas cost a request: `Broker::handle_session` of a small acks=1 Produce on an
//! in-process single node without any quota (the fast path: one atomic load), with a quota
//! for another client id (resolution only, no sensor), and with a quota that applies (a
//! sensor recording under the manager's lock); plus the quota manager's record call alone.
//!
//! Run with `cargo bench -p fjord-broker --bench quota`; `-- --test` runs each once.

use std::collections::BTreeMap;
use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use fjord_broker::quota::{ClientQuotaManager, QuotaType, RateConfig};
use fjord_broker::security::Session;
use fjord_broker::testing::SingleNode;
use fjord_broker::{BrokerConfig, Outcome};
use fjord_metadata::security::{
    ClientQuotaEntity, ClientQuotaValues, PRODUCER_BYTE_RATE, QUOTA_ENTITY_CLIENT_ID,
};
use fjord_protocol::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use fjord_protocol::kafka_protocol::messages::{ProduceRequest, RequestHeader, TopicName};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ApiKey, RequestKind};

fn client_quota(
    client_id: &str,
    bytes_per_s: f64,
) -> BTreeMap<ClientQuotaEntity, ClientQuotaValues> {
    BTreeMap::from([(
        ClientQuotaEntity::from([(
            QUOTA_ENTITY_CLIENT_ID.to_string(),
            Some(client_id.to_string()),
        )]),
        ClientQuotaValues::from([(PRODUCER_BYTE_RATE.to_string(), bytes_per_s)]),
    )])
}

fn handle_session_produce(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = BTreeMap::from([("data.dir".to_string(), dir.path().display().to_string())]);
    let node = SingleNode::start(BrokerConfig::from_settings(&settings).expect("config"))
        .expect("single node");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(9)
        .with_client_id(Some(StrBytes::from_static_str("bench")));
    let records = Bytes::from(fjord_protocol::batch_builder::encode_values(
        0,
        10,
        &[b'v'; 100],
    ));
    let request = || {
        RequestKind::Produce(
            ProduceRequest::default()
                .with_acks(1)
                .with_timeout_ms(1000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_static_str("bench-quota")))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(records.clone()))])]),
        )
    };
    let session = Session::plaintext(None);
    let run = |c: &mut Criterion, name: &str| {
        c.bench_function(name, |b| {
            b.iter(|| {
                let outcome = runtime.block_on(node.handle_session(&session, &header, request()));
                assert!(matches!(outcome, Outcome::Respond(_)));
                black_box(outcome)
            })
        });
    };
    run(c, "produce 1 KiB, no quota");
    node.set_client_quotas(client_quota("someone-else", 1e6))
        .expect("quotas");
    run(c, "produce 1 KiB, a quota for another client id");
    // High enough never to throttle: the cost of the recording itself.
    node.set_client_quotas(client_quota("bench", 1e15))
        .expect("quotas");
    run(c, "produce 1 KiB, a quota that applies");
}

fn manager_record(c: &mut Criterion) {
    let manager = ClientQuotaManager::new(QuotaType::Produce, RateConfig::KAFKA_DEFAULT, 100_000);
    manager.update_quotas(&client_quota("bench", 1e15));
    let mut now_ms = 0i64;
    c.bench_function("ClientQuotaManager record, one sensor", |b| {
        b.iter(|| {
            now_ms += 1;
            black_box(manager.maybe_record_and_get_throttle_time_ms("u", "bench", 1024.0, now_ms))
        })
    });
    let idle = ClientQuotaManager::new(QuotaType::Produce, RateConfig::KAFKA_DEFAULT, 100_000);
    c.bench_function("ClientQuotaManager record, no quota", |b| {
        b.iter(|| black_box(idle.maybe_record_and_get_throttle_time_ms("u", "bench", 1024.0, 0)))
    });
}

criterion_group!(benches, handle_session_produce, manager_record);
criterion_main!(benches);
