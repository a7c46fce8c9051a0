//! Client quotas through `Broker::handle_session` on an in-process single node: produce and
//! fetch responses carry `throttle_time_ms` once a client is over its quota (and 0 below
//! it), the connection mute is asked for, and Kafka's user/client-id precedence decides
//! which quota applies.

use std::collections::BTreeMap;

use bytes::Bytes;
use fjord_broker::security::{KafkaPrincipal, Session};
use fjord_broker::testing::SingleNode;
use fjord_broker::{BrokerConfig, Outcome};
use fjord_metadata::security::{
    ClientQuotaEntity, ClientQuotaValues, CONSUMER_BYTE_RATE, PRODUCER_BYTE_RATE,
    QUOTA_ENTITY_CLIENT_ID, QUOTA_ENTITY_USER, REQUEST_PERCENTAGE,
};
use fjord_protocol::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use fjord_protocol::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use fjord_protocol::kafka_protocol::messages::*;
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ApiKey, RequestKind, ResponseKind};

fn broker(dir: &std::path::Path) -> SingleNode {
    let values = BTreeMap::from([("data.dir".to_string(), dir.display().to_string())]);
    SingleNode::start(BrokerConfig::from_settings(&values).unwrap()).unwrap()
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn header(api_key: ApiKey, version: i16, client_id: &str) -> RequestHeader {
    RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_client_id(Some(StrBytes::from_string(client_id.to_string())))
}

/// `{user: .., client-id: ..}`; `Some(None)` is the type's default entity.
fn entity(user: Option<Option<&str>>, client: Option<Option<&str>>) -> ClientQuotaEntity {
    let mut entity = ClientQuotaEntity::new();
    if let Some(user) = user {
        entity.insert(QUOTA_ENTITY_USER.to_string(), user.map(str::to_string));
    }
    if let Some(client) = client {
        entity.insert(
            QUOTA_ENTITY_CLIENT_ID.to_string(),
            client.map(str::to_string),
        );
    }
    entity
}

fn quotas(
    entries: &[(ClientQuotaEntity, &str, f64)],
) -> BTreeMap<ClientQuotaEntity, ClientQuotaValues> {
    let mut quotas: BTreeMap<ClientQuotaEntity, ClientQuotaValues> = BTreeMap::new();
    for (entity, key, value) in entries {
        quotas
            .entry(entity.clone())
            .or_default()
            .insert(key.to_string(), *value);
    }
    quotas
}

fn session(user: &str) -> Session {
    Session::new(
        KafkaPrincipal::user(user),
        None,
        "PLAINTEXT",
        fjord_broker::security::SecurityProtocol::Plaintext,
    )
}

/// A batch of `count` records of `size` bytes each.
fn batch(count: usize, size: usize) -> Bytes {
    Bytes::from(fjord_protocol::batch_builder::encode_values(
        0,
        count,
        &vec![b'x'; size],
    ))
}

fn produce_request(topic: &str, acks: i16, records: Bytes) -> RequestKind {
    RequestKind::Produce(
        ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(1000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records))])]),
    )
}

/// Produces `records` as `session`/`client_id`; the response's throttle and the mute asked.
fn produce(node: &SingleNode, session: &Session, client_id: &str, records: Bytes) -> (i32, u64) {
    let outcome = block_on(node.handle_session(
        session,
        &header(ApiKey::Produce, 9, client_id),
        produce_request("quota-topic", -1, records),
    ));
    let Outcome::Respond(ResponseKind::Produce(response)) = outcome else {
        panic!("unexpected {outcome:?}");
    };
    let partition = &response.responses[0].partition_responses[0];
    assert_eq!(partition.error_code, 0, "{response:?}");
    (response.throttle_time_ms, session.take_mute_ms())
}

#[test]
fn produce_throttle_grows_over_the_quota_and_the_connection_is_muted() {
    let dir = tempfile::tempdir().unwrap();
    let node = broker(dir.path());
    let anonymous = Session::plaintext(None);
    // Unthrottled without quotas.
    assert_eq!(produce(&node, &anonymous, "p", batch(20, 1000)), (0, 0));
    node.set_client_quotas(quotas(&[(
        entity(None, Some(Some("p"))),
        PRODUCER_BYTE_RATE,
        1000.0,
    )]))
    .unwrap();
    // Another client id has no quota: never throttled.
    assert_eq!(produce(&node, &anonymous, "free", batch(20, 1000)), (0, 0));
    // A small write is within the quota (over the 10 s minimum window).
    assert_eq!(produce(&node, &anonymous, "p", batch(1, 100)), (0, 0));
    // ~20 KB against 1000 B/s: throttled, more with each write, and the mute matches.
    let mut last_throttle_ms = 0;
    for _ in 0..4 {
        let (throttle_ms, mute_ms) = produce(&node, &anonymous, "p", batch(20, 1000));
        assert!(
            throttle_ms > last_throttle_ms,
            "{throttle_ms} after {last_throttle_ms}"
        );
        assert_eq!(mute_ms, throttle_ms as u64);
        last_throttle_ms = throttle_ms;
    }
    assert_eq!(node.client_quotas().produce.throttled_requests.get(), 4);
    let metrics = node.render_metrics();
    assert!(
        metrics.contains("fjord_quota_throttled_requests_total{quota_type=\"produce\"} 4"),
        "{metrics}"
    );
    // acks=0: no response, but the mute.
    let outcome = block_on(node.handle_session(
        &anonymous,
        &header(ApiKey::Produce, 9, "p"),
        produce_request("quota-topic", 0, batch(20, 1000)),
    ));
    assert!(matches!(outcome, Outcome::NoResponse), "{outcome:?}");
    assert!(anonymous.take_mute_ms() > last_throttle_ms as u64);
    // The quota removed: nothing tracked, nothing throttled.
    node.set_client_quotas(BTreeMap::new()).unwrap();
    assert_eq!(produce(&node, &anonymous, "p", batch(20, 1000)), (0, 0));
    assert_eq!(node.client_quotas().produce.sensor_count(), 0);
}

#[test]
fn user_and_client_id_precedence_is_kafkas() {
    let dir = tempfile::tempdir().unwrap();
    let node = broker(dir.path());
    node.set_client_quotas(quotas(&[
        // alice is slow, except with client id "special".
        (
            entity(Some(Some("alice")), None),
            PRODUCER_BYTE_RATE,
            1000.0,
        ),
        (
            entity(Some(Some("alice")), Some(Some("special"))),
            PRODUCER_BYTE_RATE,
            1e9,
        ),
        // Client id "slow" is slow for users without a user quota.
        (entity(None, Some(Some("slow"))), PRODUCER_BYTE_RATE, 1000.0),
        // Everyone else: a generous per-client default.
        (entity(None, Some(None)), PRODUCER_BYTE_RATE, 1e9),
    ]))
    .unwrap();
    let throttled = |user: &str, client_id: &str| {
        let (throttle_ms, mute_ms) = produce(&node, &session(user), client_id, batch(20, 1000));
        assert_eq!(mute_ms, throttle_ms as u64);
        throttle_ms > 0
    };
    assert!(throttled("alice", "any"), "/users/alice");
    assert!(
        !throttled("alice", "special"),
        "/users/alice/clients/special wins"
    );
    assert!(!throttled("bob", "any"), "/clients/<default>");
    assert!(throttled("bob", "slow"), "/clients/slow");
    assert!(
        !throttled("carol", "other"),
        "a default quota is per client id"
    );
    // A user quota is shared by the user's client ids: alice's second client id is
    // throttled at once too (its bytes go to the same sensor).
    assert!(throttled("alice", "another"));
    // A default user quota: per user.
    node.set_client_quotas(quotas(&[(
        entity(Some(None), None),
        PRODUCER_BYTE_RATE,
        1000.0,
    )]))
    .unwrap();
    assert!(throttled("dave", "c"));
    assert_eq!(
        produce(&node, &session("erin"), "c", batch(1, 100)),
        (0, 0),
        "another user has its own sensor"
    );
}

fn fetch(node: &SingleNode, client_id: &str, offset: i64) -> (FetchResponse, u64) {
    let session = Session::plaintext(None);
    let request = FetchRequest::default()
        .with_max_bytes(1 << 20)
        .with_max_wait_ms(0)
        .with_session_epoch(-1)
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("quota-topic")))
            .with_partitions(vec![FetchPartition::default()
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])]);
    let outcome = block_on(node.handle_session(
        &session,
        &header(ApiKey::Fetch, 12, client_id),
        RequestKind::Fetch(request),
    ));
    let Outcome::Respond(ResponseKind::Fetch(response)) = outcome.into_inline().unwrap() else {
        panic!("no fetch response");
    };
    (response, session.take_mute_ms())
}

fn fetched_records(response: &FetchResponse) -> usize {
    response
        .responses
        .iter()
        .flat_map(|t| &t.partitions)
        .filter_map(|p| p.records.as_ref())
        .map(|r| r.len())
        .sum()
}

#[test]
fn consumer_fetches_over_the_quota_are_throttled_and_empty() {
    let dir = tempfile::tempdir().unwrap();
    let node = broker(dir.path());
    let producer = Session::plaintext(None);
    // 20 batches of ~2 KB.
    for _ in 0..20 {
        assert_eq!(produce(&node, &producer, "p", batch(2, 1000)), (0, 0));
    }
    node.set_client_quotas(quotas(&[(
        entity(None, Some(None)),
        CONSUMER_BYTE_RATE,
        1000.0,
    )]))
    .unwrap();
    // The fetch is capped to the quota window (1000 B/s * 10 s): about 5 batches, within it.
    let (first, mute_ms) = fetch(&node, "c", 0);
    let first_bytes = fetched_records(&first);
    assert!(first_bytes > 0 && first_bytes <= 10_000, "{first_bytes}");
    assert_eq!((first.throttle_time_ms, mute_ms), (0, 0));
    // The next 10 KB is over it: throttled, answered without data, the mute asked.
    let (second, mute_ms) = fetch(&node, "c", 10);
    assert!(second.throttle_time_ms > 0, "{second:?}");
    assert_eq!(mute_ms, second.throttle_time_ms as u64);
    assert!(second.responses.is_empty(), "{second:?}");
    // The throttled bytes were taken back: the same fetch is throttled the same way, not more
    // (Kafka's unrecordQuotaSensor), and another client id is not affected.
    let (third, _) = fetch(&node, "c", 10);
    assert!(third.throttle_time_ms > 0 && third.throttle_time_ms <= second.throttle_time_ms);
    let (other, mute_ms) = fetch(&node, "other", 0);
    assert_eq!((other.throttle_time_ms, mute_ms), (0, 0));
    assert!(fetched_records(&other) > 0);
    assert_eq!(node.client_quotas().fetch.throttled_requests.get(), 2);
}

#[test]
fn request_percentage_throttles_any_request_by_at_most_one_window() {
    let dir = tempfile::tempdir().unwrap();
    let node = broker(dir.path());
    // A quota no request can stay within: every handler takes some time.
    node.set_client_quotas(quotas(&[(
        entity(None, Some(Some("busy"))),
        REQUEST_PERCENTAGE,
        1e-12,
    )]))
    .unwrap();
    let session = Session::plaintext(None);
    let outcome = block_on(node.handle_session(
        &session,
        &header(ApiKey::Metadata, 12, "busy"),
        RequestKind::Metadata(MetadataRequest::default()),
    ));
    let Outcome::Respond(ResponseKind::Metadata(response)) = outcome else {
        panic!("unexpected {outcome:?}");
    };
    // ClientRequestQuotaManager's bound: one quota window (quota.window.size.seconds).
    assert_eq!(response.throttle_time_ms, 1000);
    assert_eq!(session.take_mute_ms(), 1000);
    let outcome = block_on(node.handle_session(
        &session,
        &header(ApiKey::Metadata, 12, "idle"),
        RequestKind::Metadata(MetadataRequest::default()),
    ));
    let Outcome::Respond(ResponseKind::Metadata(response)) = outcome else {
        panic!("unexpected {outcome:?}");
    };
    assert_eq!(response.throttle_time_ms, 0);
    assert_eq!(session.take_mute_ms(), 0);
    assert_eq!(node.client_quotas().request.throttled_requests.get(), 1);
}

/// AlterClientQuotas for one entity: `(key, Some(value))` sets, `(key, None)` removes.
fn alter_client_quotas(
    node: &SingleNode,
    entity: &[(&str, Option<&str>)],
    ops: &[(&str, Option<f64>)],
) -> i16 {
    use fjord_protocol::kafka_protocol::messages::alter_client_quotas_request::{
        EntityData, EntryData, OpData,
    };
    let entry = EntryData::default()
        .with_entity(
            entity
                .iter()
                .map(|(entity_type, name)| {
                    EntityData::default()
                        .with_entity_type(StrBytes::from_string(entity_type.to_string()))
                        .with_entity_name(name.map(|n| StrBytes::from_string(n.to_string())))
                })
                .collect(),
        )
        .with_ops(
            ops.iter()
                .map(|(key, value)| {
                    OpData::default()
                        .with_key(StrBytes::from_string(key.to_string()))
                        .with_value(value.unwrap_or(0.0))
                        .with_remove(value.is_none())
                })
                .collect(),
        );
    let outcome = block_on(node.handle_session(
        &Session::plaintext(None),
        &header(ApiKey::AlterClientQuotas, 1, "admin"),
        RequestKind::AlterClientQuotas(
            AlterClientQuotasRequest::default().with_entries(vec![entry]),
        ),
    ));
    let Outcome::Respond(ResponseKind::AlterClientQuotas(response)) = outcome else {
        panic!("unexpected {outcome:?}");
    };
    response.entries[0].error_code
}

#[test]
fn a_quota_set_with_alter_client_quotas_throttles_and_its_removal_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let node = broker(dir.path());
    let anonymous = Session::plaintext(None);
    assert_eq!(produce(&node, &anonymous, "p", batch(20, 1000)), (0, 0));
    // The answer comes once this broker's image has the quota.
    assert_eq!(
        alter_client_quotas(
            &node,
            &[(QUOTA_ENTITY_CLIENT_ID, Some("p"))],
            &[(PRODUCER_BYTE_RATE, Some(1000.0))],
        ),
        0
    );
    assert!(node.client_quotas().produce.quotas_enabled());
    let (throttle_ms, mute_ms) = produce(&node, &anonymous, "p", batch(20, 1000));
    assert!(throttle_ms > 0);
    assert_eq!(mute_ms, throttle_ms as u64);
    assert_eq!(
        alter_client_quotas(
            &node,
            &[(QUOTA_ENTITY_CLIENT_ID, Some("p"))],
            &[(PRODUCER_BYTE_RATE, None)],
        ),
        0
    );
    assert!(!node.client_quotas().any_enabled());
    assert_eq!(produce(&node, &anonymous, "p", batch(20, 1000)), (0, 0));
}
