//! ACL enforcement through `Broker::handle_session` (Kafka `KafkaApis` authorization): a
//! single node with `authorizer.class.name` set, requests from sessions of different
//! principals and hosts, and the answers Kafka gives them (per partition, per group, whole
//! request). ACLs are put in place with `override_acls_for_test` (the records that carry them
//! are the controller's business).

use std::collections::BTreeMap;
use std::net::IpAddr;

use bytes::Bytes;
use fjord_broker::security::authorizer::CLUSTER_NAME;
use fjord_broker::security::{KafkaPrincipal, SecurityProtocol, Session};
use fjord_broker::testing::SingleNode;
use fjord_broker::{Broker, BrokerConfig, Outcome};
use fjord_metadata::security::{
    AclOperation, AclPatternType, AclPermissionType, AclResourceType, StandardAcl,
};
use fjord_protocol::kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use fjord_protocol::kafka_protocol::messages::create_acls_request::AclCreation;
use fjord_protocol::kafka_protocol::messages::create_topics_request::CreatableTopic;
use fjord_protocol::kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use fjord_protocol::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use fjord_protocol::kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use fjord_protocol::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsTopic,
};
use fjord_protocol::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use fjord_protocol::kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use fjord_protocol::kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use fjord_protocol::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use fjord_protocol::kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use fjord_protocol::kafka_protocol::messages::*;
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ApiKey, RequestKind, ResponseKind};
use uuid::Uuid;

use AclOperation::*;
use AclPatternType::{Literal, Prefixed};
use AclPermissionType::{Allow, Deny};
use AclResourceType::{Cluster, Group, Topic};
const TXN_ID: AclResourceType = AclResourceType::TransactionalId;

const TOPIC_DENIED: i16 = 29;
const GROUP_DENIED: i16 = 30;
const CLUSTER_DENIED: i16 = 31;
const TXN_DENIED: i16 = 53;
const NOT_ATTEMPTED: i16 = 55;
const ALICE_HOST: &str = "10.0.0.1";

fn open(dir: &std::path::Path, authorizer: &str) -> SingleNode {
    let mut values = BTreeMap::new();
    values.insert("data.dir".to_string(), dir.display().to_string());
    values.insert("group.initial.rebalance.delay.ms".into(), "0".into());
    values.insert("offsets.topic.num.partitions".into(), "1".into());
    values.insert("transaction.state.log.num.partitions".into(), "1".into());
    values.insert("authorizer.class.name".into(), authorizer.into());
    values.insert("super.users".into(), "User:admin".into());
    SingleNode::start(BrokerConfig::from_settings(&values).unwrap()).unwrap()
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// A session of `user` on the node's one listener (PLAINTEXT): Metadata and FindCoordinator
/// answer with the endpoints of the request's listener, so it must be one the node has.
fn session(user: &str, host: &str) -> Session {
    Session::new(
        KafkaPrincipal::user(user),
        Some(host.parse::<IpAddr>().unwrap()),
        "PLAINTEXT",
        SecurityProtocol::Plaintext,
    )
}

fn outcome(broker: &Broker, who: &Session, version: i16, request: RequestKind) -> Outcome {
    let api_key = match &request {
        RequestKind::Produce(_) => ApiKey::Produce,
        RequestKind::Fetch(_) => ApiKey::Fetch,
        RequestKind::ListOffsets(_) => ApiKey::ListOffsets,
        RequestKind::Metadata(_) => ApiKey::Metadata,
        RequestKind::OffsetCommit(_) => ApiKey::OffsetCommit,
        RequestKind::OffsetFetch(_) => ApiKey::OffsetFetch,
        RequestKind::JoinGroup(_) => ApiKey::JoinGroup,
        RequestKind::DescribeGroups(_) => ApiKey::DescribeGroups,
        RequestKind::ListGroups(_) => ApiKey::ListGroups,
        RequestKind::CreateTopics(_) => ApiKey::CreateTopics,
        RequestKind::InitProducerId(_) => ApiKey::InitProducerId,
        RequestKind::AddPartitionsToTxn(_) => ApiKey::AddPartitionsToTxn,
        RequestKind::EndTxn(_) => ApiKey::EndTxn,
        RequestKind::WriteTxnMarkers(_) => ApiKey::WriteTxnMarkers,
        RequestKind::DescribeCluster(_) => ApiKey::DescribeCluster,
        RequestKind::DescribeConfigs(_) => ApiKey::DescribeConfigs,
        RequestKind::CreateAcls(_) => ApiKey::CreateAcls,
        RequestKind::FindCoordinator(_) => ApiKey::FindCoordinator,
        RequestKind::DeleteTopics(_) => ApiKey::DeleteTopics,
        other => panic!("add {other:?}"),
    };
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_client_id(Some(s("authz-test")));
    block_on(broker.handle_session(who, &header, request))
}

fn call(broker: &Broker, who: &Session, version: i16, request: RequestKind) -> ResponseKind {
    match outcome(broker, who, version, request)
        .into_inline()
        .unwrap()
    {
        Outcome::Respond(response) => response,
        other => panic!("{other:?}"),
    }
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn topic(v: &str) -> TopicName {
    TopicName(s(v))
}

fn acl(
    resource_type: AclResourceType,
    name: &str,
    pattern_type: AclPatternType,
    principal: &str,
    host: &str,
    operation: AclOperation,
    permission_type: AclPermissionType,
) -> StandardAcl {
    StandardAcl {
        resource_type,
        resource_name: name.to_string(),
        pattern_type,
        principal: principal.to_string(),
        host: host.to_string(),
        operation,
        permission_type,
    }
}

fn set_acls(broker: &Broker, acls: Vec<StandardAcl>) {
    broker.override_acls_for_test(Some(
        acls.into_iter()
            .enumerate()
            .map(|(i, acl)| (Uuid::from_u128(i as u128 + 1), acl))
            .collect(),
    ));
}

fn admin() -> Session {
    session("admin", "127.0.0.1")
}

fn create_topics(broker: &Broker, names: &[&str]) {
    let request = CreateTopicsRequest::default().with_topics(
        names
            .iter()
            .map(|n| {
                CreatableTopic::default()
                    .with_name(topic(n))
                    .with_num_partitions(1)
                    .with_replication_factor(1)
            })
            .collect(),
    );
    let ResponseKind::CreateTopics(response) =
        call(broker, &admin(), 7, RequestKind::CreateTopics(request))
    else {
        panic!("no CreateTopics response");
    };
    assert!(
        response.topics.iter().all(|t| t.error_code == 0),
        "{response:?}"
    );
}

fn batch() -> Bytes {
    Bytes::from(fjord_protocol::batch_builder::encode_values(1_000, 1, b"v"))
}

/// Produce one batch to partition 0 of each topic; the error code per topic.
fn produce(broker: &Broker, who: &Session, topics: &[&str]) -> BTreeMap<String, i16> {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(1000)
        .with_topic_data(
            topics
                .iter()
                .map(|t| {
                    TopicProduceData::default()
                        .with_name(topic(t))
                        .with_partition_data(vec![PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(batch()))])
                })
                .collect(),
        );
    let ResponseKind::Produce(response) = call(broker, who, 9, RequestKind::Produce(request))
    else {
        panic!("no Produce response");
    };
    response
        .responses
        .iter()
        .map(|t| (t.name.to_string(), t.partition_responses[0].error_code))
        .collect()
}

fn fetch(broker: &Broker, who: &Session, topics: &[&str]) -> BTreeMap<String, (i16, usize)> {
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(
            topics
                .iter()
                .map(|t| {
                    FetchTopic::default()
                        .with_topic(topic(t))
                        .with_partitions(vec![FetchPartition::default()
                            .with_partition(0)
                            .with_partition_max_bytes(1 << 20)])
                })
                .collect(),
        );
    let ResponseKind::Fetch(response) = call(broker, who, 12, RequestKind::Fetch(request)) else {
        panic!("no Fetch response");
    };
    response
        .responses
        .iter()
        .map(|t| {
            let p = &t.partitions[0];
            (
                t.topic.to_string(),
                (p.error_code, p.records.as_ref().map_or(0, |r| r.len())),
            )
        })
        .collect()
}

fn codes(pairs: &[(&str, i16)]) -> BTreeMap<String, i16> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[test]
fn topic_acls_by_pattern_deny_and_host() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path(), "fjord");
    create_topics(&node, &["orders", "secret", "logs-a", "t-ok", "t-secret"]);
    set_acls(
        &node,
        vec![
            acl(Topic, "orders", Literal, "User:alice", "*", Write, Allow),
            acl(Topic, "logs-", Prefixed, "User:alice", "*", Read, Allow),
            acl(Topic, "t-", Prefixed, "User:alice", "*", All, Allow),
            acl(Topic, "t-secret", Literal, "User:alice", "*", Write, Deny),
            acl(
                Topic,
                "*",
                Literal,
                "User:carol",
                "10.0.0.2",
                Describe,
                Allow,
            ),
        ],
    );
    let alice = session("alice", ALICE_HOST);
    // Per partition: the authorized topic is written, the others answer 29.
    assert_eq!(
        produce(
            &node,
            &alice,
            &["orders", "secret", "logs-a", "t-ok", "t-secret"]
        ),
        codes(&[
            ("orders", 0),
            ("secret", TOPIC_DENIED),
            ("logs-a", TOPIC_DENIED),
            ("t-ok", 0),
            ("t-secret", TOPIC_DENIED), // DENY beats the prefixed ALL
        ])
    );
    // READ by prefix; WRITE does not give READ.
    produce(&node, &admin(), &["logs-a"]);
    let fetched = fetch(&node, &alice, &["logs-a", "orders", "t-ok"]);
    assert_eq!(fetched["logs-a"].0, 0);
    assert!(fetched["logs-a"].1 > 0, "records of logs-a");
    assert_eq!(fetched["orders"], (TOPIC_DENIED, 0));
    assert_eq!(fetched["t-ok"].0, 0);
    // Nobody else has anything.
    let bob = session("bob", ALICE_HOST);
    assert_eq!(
        produce(&node, &bob, &["orders"]),
        codes(&[("orders", TOPIC_DENIED)])
    );
    // Host: carol may DESCRIBE every topic from 10.0.0.2 only.
    let list_offsets = |who: &Session| {
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic("orders"))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(-1)])]);
        match call(&node, who, 5, RequestKind::ListOffsets(request)) {
            ResponseKind::ListOffsets(r) => r.topics[0].partitions[0].error_code,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(list_offsets(&session("carol", "10.0.0.2")), 0);
    assert_eq!(list_offsets(&session("carol", ALICE_HOST)), TOPIC_DENIED);
    // Super users need no ACL.
    assert_eq!(list_offsets(&admin()), 0);
    // acks=0: a refused part closes the connection, as any failed acks=0 produce does.
    let request = ProduceRequest::default()
        .with_acks(0)
        .with_timeout_ms(1000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic("secret"))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch()))])]);
    assert!(matches!(
        outcome(&node, &alice, 9, RequestKind::Produce(request)),
        Outcome::CloseConnection(_)
    ));
    assert!(node.authorization_metrics().failures(Topic) >= 5);
    assert!(node
        .render_metrics()
        .contains("fjord_authorization_failures_total{resource_type=\"topic\"}"));
}

#[test]
fn metadata_lists_only_describable_topics_and_auto_creates_only_with_create() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(
        dir.path(),
        "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    );
    create_topics(&node, &["a", "b1", "c"]);
    set_acls(
        &node,
        vec![
            acl(Topic, "a", Literal, "User:alice", "*", Describe, Allow),
            acl(Topic, "b", Prefixed, "User:alice", "*", Read, Allow),
            acl(Topic, "new-", Prefixed, "User:alice", "*", Create, Allow),
            acl(Topic, "new-", Prefixed, "User:alice", "*", Describe, Allow),
            acl(
                Topic,
                "other-",
                Prefixed,
                "User:alice",
                "*",
                Describe,
                Allow,
            ),
        ],
    );
    let alice = session("alice", ALICE_HOST);
    let metadata = |topics: Option<&[&str]>, ops: bool| {
        let request = MetadataRequest::default()
            .with_topics(topics.map(|names| {
                names
                    .iter()
                    .map(|n| MetadataRequestTopic::default().with_name(Some(topic(n))))
                    .collect()
            }))
            .with_allow_auto_topic_creation(true)
            .with_include_topic_authorized_operations(ops);
        match call(&node, &alice, 12, RequestKind::Metadata(request)) {
            ResponseKind::Metadata(r) => r,
            other => panic!("{other:?}"),
        }
    };
    let all = metadata(None, true);
    let mut names: Vec<String> = all
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.to_string()))
        .collect();
    names.sort();
    assert_eq!(names, vec!["a".to_string(), "b1".to_string()]);
    let a = all
        .topics
        .iter()
        .find(|t| t.name.as_deref().map(|n| n.as_str()) == Some("a"))
        .unwrap();
    assert_eq!(a.topic_authorized_operations, 1 << Describe.code());
    let b1 = all
        .topics
        .iter()
        .find(|t| t.name.as_deref().map(|n| n.as_str()) == Some("b1"))
        .unwrap();
    assert_eq!(
        b1.topic_authorized_operations,
        (1 << Read.code()) | (1 << Describe.code())
    );
    // Named: undescribable answers 29; unknown without CREATE is not created (29).
    let named = metadata(Some(&["a", "c", "other-x", "new-x"]), false);
    let error_of = |name: &str| {
        named
            .topics
            .iter()
            .find(|t| t.name.as_deref().map(|n| n.as_str()) == Some(name))
            .map(|t| t.error_code)
    };
    assert_eq!(error_of("a"), Some(0));
    assert_eq!(error_of("c"), Some(TOPIC_DENIED));
    assert_eq!(error_of("other-x"), Some(TOPIC_DENIED));
    // CREATE on the prefix lets Metadata auto-create it.
    assert_ne!(error_of("new-x"), Some(TOPIC_DENIED));
    assert!(node.image().topic_by_name("new-x").is_some());
    assert!(node.image().topic_by_name("other-x").is_none());
    // Anonymous: nothing at all.
    let anonymous = Session::plaintext(Some(ALICE_HOST.parse().unwrap()));
    let request = MetadataRequest::default().with_topics(None);
    let ResponseKind::Metadata(r) = call(&node, &anonymous, 12, RequestKind::Metadata(request))
    else {
        panic!()
    };
    assert!(r.topics.is_empty(), "{:?}", r.topics);
}

fn join(broker: &Broker, who: &Session, group: &str) -> JoinGroupResponse {
    let request = JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(s(""))
        .with_group_instance_id(Some(s("inst")))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(Bytes::from_static(b"subscription"))]);
    match call(broker, who, 9, RequestKind::JoinGroup(request)) {
        ResponseKind::JoinGroup(r) => r,
        other => panic!("{other:?}"),
    }
}

#[test]
fn consumer_groups_need_read_on_the_group_and_the_topics() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path(), "fjord");
    create_topics(&node, &["orders", "other"]);
    set_acls(
        &node,
        vec![
            acl(Group, "app-", Prefixed, "User:alice", "*", Read, Allow),
            acl(Topic, "orders", Literal, "User:alice", "*", Read, Allow),
        ],
    );
    let alice = session("alice", ALICE_HOST);
    let bob = session("bob", ALICE_HOST);
    let joined = join(&node, &alice, "app-1");
    assert_eq!(joined.error_code, 0, "{joined:?}");
    assert_eq!(join(&node, &bob, "app-1").error_code, GROUP_DENIED);
    assert_eq!(join(&node, &alice, "other-group").error_code, GROUP_DENIED);
    // OffsetCommit: READ on the group and per topic.
    let commit = |who: &Session| {
        // A group without members takes commits of generation -1 (a standalone consumer).
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(s("app-solo")))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(
                ["orders", "other"]
                    .iter()
                    .map(|t| {
                        OffsetCommitRequestTopic::default()
                            .with_name(topic(t))
                            .with_partitions(vec![OffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(0)])
                    })
                    .collect(),
            );
        match call(&node, who, 8, RequestKind::OffsetCommit(request)) {
            ResponseKind::OffsetCommit(r) => r
                .topics
                .iter()
                .map(|t| (t.name.to_string(), t.partitions[0].error_code))
                .collect::<BTreeMap<_, _>>(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        commit(&session("alice", ALICE_HOST)),
        codes(&[("orders", 0), ("other", TOPIC_DENIED)])
    );
    assert_eq!(
        commit(&bob),
        codes(&[("orders", GROUP_DENIED), ("other", GROUP_DENIED)])
    );
    // OffsetFetch v8: per group, per topic.
    let request = OffsetFetchRequest::default().with_groups(vec![
        OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(s("app-solo")))
            .with_topics(Some(
                ["orders", "other"]
                    .iter()
                    .map(|t| {
                        OffsetFetchRequestTopics::default()
                            .with_name(topic(t))
                            .with_partition_indexes(vec![0])
                    })
                    .collect(),
            )),
        OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(s("private")))
            .with_topics(None),
    ]);
    let ResponseKind::OffsetFetch(fetched) =
        call(&node, &alice, 8, RequestKind::OffsetFetch(request))
    else {
        panic!()
    };
    let app = fetched
        .groups
        .iter()
        .find(|g| g.group_id.as_str() == "app-solo")
        .unwrap();
    assert_eq!(app.error_code, 0);
    let topic_codes: BTreeMap<String, i16> = app
        .topics
        .iter()
        .map(|t| (t.name.to_string(), t.partitions[0].error_code))
        .collect();
    assert_eq!(
        topic_codes,
        codes(&[("orders", 0), ("other", TOPIC_DENIED)])
    );
    assert_eq!(
        app.topics
            .iter()
            .find(|t| t.name.as_str() == "orders")
            .unwrap()
            .partitions[0]
            .committed_offset,
        0
    );
    let private = fetched
        .groups
        .iter()
        .find(|g| g.group_id.as_str() == "private")
        .unwrap();
    assert_eq!(private.error_code, GROUP_DENIED);
    // DescribeGroups: per group, with the authorized operations asked for.
    let request = DescribeGroupsRequest::default()
        .with_groups(vec![GroupId(s("app-1")), GroupId(s("private"))])
        .with_include_authorized_operations(true);
    let ResponseKind::DescribeGroups(described) =
        call(&node, &alice, 5, RequestKind::DescribeGroups(request))
    else {
        panic!()
    };
    let app = described
        .groups
        .iter()
        .find(|g| g.group_id.as_str() == "app-1")
        .unwrap();
    assert_eq!(app.error_code, 0);
    assert_eq!(
        app.authorized_operations,
        (1 << Read.code()) | (1 << Describe.code())
    );
    let private = described
        .groups
        .iter()
        .find(|g| g.group_id.as_str() == "private")
        .unwrap();
    assert_eq!(private.error_code, GROUP_DENIED);
    // ListGroups: only the groups the caller may DESCRIBE.
    let list = |who: &Session| match call(
        &node,
        who,
        4,
        RequestKind::ListGroups(ListGroupsRequest::default()),
    ) {
        ResponseKind::ListGroups(r) => r
            .groups
            .iter()
            .map(|g| g.group_id.to_string())
            .collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    let mut everything = list(&admin());
    everything.sort();
    assert_eq!(
        everything,
        vec!["app-1".to_string(), "app-solo".to_string()]
    );
    let mut visible = list(&alice);
    visible.sort();
    assert_eq!(visible, everything);
    assert!(list(&bob).is_empty());
    // FindCoordinator v4: per key.
    let request = FindCoordinatorRequest::default()
        .with_key_type(0)
        .with_coordinator_keys(vec![s("app-1"), s("private")]);
    let ResponseKind::FindCoordinator(found) =
        call(&node, &alice, 4, RequestKind::FindCoordinator(request))
    else {
        panic!()
    };
    let by_key: BTreeMap<String, i16> = found
        .coordinators
        .iter()
        .map(|c| (c.key.to_string(), c.error_code))
        .collect();
    assert_eq!(by_key, codes(&[("app-1", 0), ("private", GROUP_DENIED)]));
    assert!(node.authorization_metrics().failures(Group) >= 4);
}

#[test]
fn transactions_need_write_on_the_transactional_id() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path(), "fjord");
    create_topics(&node, &["orders", "other"]);
    set_acls(
        &node,
        vec![
            acl(TXN_ID, "tx-", Prefixed, "User:alice", "*", Write, Allow),
            acl(TXN_ID, "tx-blocked", Literal, "User:*", "*", All, Deny),
            acl(Topic, "orders", Literal, "User:alice", "*", Write, Allow),
        ],
    );
    let alice = session("alice", ALICE_HOST);
    let bob = session("bob", ALICE_HOST);
    let init = |who: &Session, id: Option<&str>| {
        let request = InitProducerIdRequest::default()
            .with_transactional_id(id.map(|i| TransactionalId(s(i))))
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        match call(&node, who, 4, RequestKind::InitProducerId(request)) {
            ResponseKind::InitProducerId(r) => r,
            other => panic!("{other:?}"),
        }
    };
    let producer = init(&alice, Some("tx-1"));
    assert_eq!(producer.error_code, 0, "{producer:?}");
    assert_eq!(init(&alice, Some("tx-blocked")).error_code, TXN_DENIED);
    assert_eq!(init(&bob, Some("tx-1")).error_code, TXN_DENIED);
    // Idempotence (KIP-679): WRITE on any topic serves; bob has none.
    assert_eq!(init(&alice, None).error_code, 0);
    assert_eq!(init(&bob, None).error_code, CLUSTER_DENIED);
    // AddPartitionsToTxn v3: a topic without WRITE fails the request, the rest not attempted.
    let add = |topics: &[&str]| {
        let request = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(TransactionalId(s("tx-1")))
            .with_v3_and_below_producer_id(producer.producer_id)
            .with_v3_and_below_producer_epoch(producer.producer_epoch)
            .with_v3_and_below_topics(
                topics
                    .iter()
                    .map(|t| {
                        AddPartitionsToTxnTopic::default()
                            .with_name(topic(t))
                            .with_partitions(vec![0])
                    })
                    .collect(),
            );
        match call(&node, &alice, 3, RequestKind::AddPartitionsToTxn(request)) {
            ResponseKind::AddPartitionsToTxn(r) => r
                .results_by_topic_v3_and_below
                .iter()
                .map(|t| {
                    (
                        t.name.to_string(),
                        t.results_by_partition[0].partition_error_code,
                    )
                })
                .collect::<BTreeMap<_, _>>(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        add(&["orders", "other"]),
        codes(&[("orders", NOT_ATTEMPTED), ("other", TOPIC_DENIED)])
    );
    assert_eq!(add(&["orders"]), codes(&[("orders", 0)]));
    // A transactional Produce needs WRITE on the id.
    let request = ProduceRequest::default()
        .with_transactional_id(Some(TransactionalId(s("zz-other"))))
        .with_acks(-1)
        .with_timeout_ms(1000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic("orders"))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch()))])]);
    let ResponseKind::Produce(produced) = call(&node, &alice, 9, RequestKind::Produce(request))
    else {
        panic!()
    };
    assert_eq!(
        produced.responses[0].partition_responses[0].error_code,
        TXN_DENIED
    );
    // EndTxn: WRITE on the id.
    let end = |who: &Session| {
        let request = EndTxnRequest::default()
            .with_transactional_id(TransactionalId(s("tx-1")))
            .with_producer_id(producer.producer_id)
            .with_producer_epoch(producer.producer_epoch)
            .with_committed(false);
        match call(&node, who, 3, RequestKind::EndTxn(request)) {
            ResponseKind::EndTxn(r) => r.error_code,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(end(&bob), TXN_DENIED);
    assert_eq!(end(&alice), 0);
    assert!(node.authorization_metrics().failures(TXN_ID) >= 4);
}

#[test]
fn cluster_operations_and_replica_requests_need_the_cluster_acls() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path(), "fjord");
    create_topics(&node, &["orders"]);
    set_acls(
        &node,
        vec![
            acl(
                Cluster,
                CLUSTER_NAME,
                Literal,
                "User:ops",
                "*",
                AlterConfigs,
                Allow,
            ),
            acl(
                Topic,
                "orders",
                Literal,
                "User:alice",
                "*",
                DescribeConfigs,
                Allow,
            ),
            acl(
                Cluster,
                CLUSTER_NAME,
                Literal,
                "User:broker2",
                "*",
                ClusterAction,
                Allow,
            ),
        ],
    );
    let alice = session("alice", ALICE_HOST);
    // WriteTxnMarkers: CLUSTER_ACTION.
    let request =
        WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
            .with_producer_id(ProducerId(5))
            .with_topics(vec![WritableTxnMarkerTopic::default()
                .with_name(topic("orders"))
                .with_partition_indexes(vec![0])])]);
    let ResponseKind::WriteTxnMarkers(markers) =
        call(&node, &alice, 1, RequestKind::WriteTxnMarkers(request))
    else {
        panic!()
    };
    assert_eq!(
        markers.markers[0].topics[0].partitions[0].error_code,
        CLUSTER_DENIED
    );
    // A follower fetch without CLUSTER_ACTION: every partition answers 29.
    let follower_fetch = |who: &Session| {
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(2))
            .with_max_wait_ms(0)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic("orders"))
                .with_partitions(vec![FetchPartition::default().with_partition(0)])]);
        match call(&node, who, 12, RequestKind::Fetch(request)) {
            ResponseKind::Fetch(r) => r.responses[0].partitions[0].error_code,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(follower_fetch(&alice), TOPIC_DENIED);
    assert_ne!(
        follower_fetch(&session("broker2", ALICE_HOST)),
        TOPIC_DENIED
    );
    // DescribeConfigs: the broker is the cluster's, the topic its own (ALTER_CONFIGS implies
    // DESCRIBE_CONFIGS).
    let describe = |who: &Session| {
        let request = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(4)
                .with_resource_name(s("1")),
            DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("orders")),
        ]);
        match call(&node, who, 4, RequestKind::DescribeConfigs(request)) {
            ResponseKind::DescribeConfigs(r) => r
                .results
                .iter()
                .map(|res| (res.resource_name.to_string(), res.error_code))
                .collect::<BTreeMap<_, _>>(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        describe(&alice),
        codes(&[("1", CLUSTER_DENIED), ("orders", 0)])
    );
    assert_eq!(
        describe(&session("ops", ALICE_HOST)),
        codes(&[("1", 0), ("orders", TOPIC_DENIED)])
    );
    // DescribeCluster: the authorized operations asked for.
    let request =
        DescribeClusterRequest::default().with_include_cluster_authorized_operations(true);
    let ResponseKind::DescribeCluster(cluster) = call(
        &node,
        &session("ops", ALICE_HOST),
        0,
        RequestKind::DescribeCluster(request),
    ) else {
        panic!()
    };
    assert_eq!(
        cluster.cluster_authorized_operations,
        (1 << AlterConfigs.code()) | (1 << DescribeConfigs.code())
    );
    // CreateTopics: CREATE on the cluster or the topic; configs only with DESCRIBE_CONFIGS.
    let request = CreateTopicsRequest::default().with_topics(
        ["orders-2", "free"]
            .iter()
            .map(|n| {
                CreatableTopic::default()
                    .with_name(topic(n))
                    .with_num_partitions(1)
                    .with_replication_factor(1)
            })
            .collect(),
    );
    let mut acls = vec![
        acl(Topic, "orders-", Prefixed, "User:alice", "*", Create, Allow),
        acl(
            Topic,
            "orders-2",
            Literal,
            "User:alice",
            "*",
            DescribeConfigs,
            Allow,
        ),
    ];
    set_acls(&node, acls.clone());
    let ResponseKind::CreateTopics(created) =
        call(&node, &alice, 7, RequestKind::CreateTopics(request.clone()))
    else {
        panic!()
    };
    let by_name: BTreeMap<String, (i16, i16, bool)> = created
        .topics
        .iter()
        .map(|t| {
            (
                t.name.to_string(),
                (t.error_code, t.topic_config_error_code, t.configs.is_some()),
            )
        })
        .collect();
    assert_eq!(by_name["orders-2"], (0, 0, true));
    assert_eq!(by_name["free"].0, TOPIC_DENIED);
    assert!(node.image().topic_by_name("free").is_none());
    acls.push(acl(
        Cluster,
        CLUSTER_NAME,
        Literal,
        "User:alice",
        "*",
        Create,
        Allow,
    ));
    set_acls(&node, acls);
    let ResponseKind::CreateTopics(created) =
        call(&node, &alice, 7, RequestKind::CreateTopics(request))
    else {
        panic!()
    };
    let free = created
        .topics
        .iter()
        .find(|t| t.name.as_str() == "free")
        .unwrap();
    assert_eq!(
        (free.error_code, free.topic_config_error_code),
        (0, TOPIC_DENIED)
    );
    assert!(free.configs.is_none());
    // CreateAcls (its handler lives elsewhere) is refused at dispatch without ALTER.
    let request = CreateAclsRequest::default().with_creations(vec![AclCreation::default()]);
    let ResponseKind::CreateAcls(created) =
        call(&node, &alice, 3, RequestKind::CreateAcls(request))
    else {
        panic!()
    };
    assert_eq!(created.results[0].error_code, CLUSTER_DENIED);
    assert!(node.authorization_metrics().failures(Cluster) >= 4);
}

#[test]
fn without_authorizer_everything_is_allowed_and_operations_are_all_supported() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path(), "");
    create_topics(&node, &["orders"]);
    // ACLs in the image do not matter when no authorizer is configured.
    set_acls(
        &node,
        vec![acl(Topic, "*", Literal, "User:*", "*", All, Deny)],
    );
    let bob = session("bob", ALICE_HOST);
    assert_eq!(produce(&node, &bob, &["orders"]), codes(&[("orders", 0)]));
    assert_eq!(join(&node, &bob, "g").error_code, 0);
    let request = DescribeGroupsRequest::default()
        .with_groups(vec![GroupId(s("g"))])
        .with_include_authorized_operations(true);
    let ResponseKind::DescribeGroups(described) =
        call(&node, &bob, 5, RequestKind::DescribeGroups(request))
    else {
        panic!()
    };
    let all_group_operations = [Read, Describe, Delete, DescribeConfigs, AlterConfigs]
        .iter()
        .fold(0, |bits, op| bits | (1 << op.code()));
    assert_eq!(
        described.groups[0].authorized_operations,
        all_group_operations
    );
    assert_eq!(node.authorization_metrics().failures(Topic), 0);
}

#[test]
fn an_unknown_authorizer_class_is_refused_at_start() {
    let mut values = BTreeMap::new();
    values.insert(
        "authorizer.class.name".to_string(),
        "kafka.security.authorizer.AclAuthorizer".to_string(),
    );
    let err = BrokerConfig::from_settings(&values)
        .unwrap_err()
        .to_string();
    assert!(err.contains("authorizer.class.name"), "{err}");
    values.insert("authorizer.class.name".to_string(), "fjord".to_string());
    values.insert("super.users".to_string(), "admin".to_string());
    assert!(BrokerConfig::from_settings(&values).is_err());
}

#[test]
fn an_incremental_fetch_session_loses_partitions_whose_read_is_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path(), "fjord");
    create_topics(&node, &["feed"]);
    produce(&node, &admin(), &["feed"]);
    let reader = acl(Topic, "feed", Literal, "User:alice", "*", Read, Allow);
    set_acls(&node, vec![reader]);
    let alice = session("alice", ALICE_HOST);
    let fetch_in_session = |session_id: i32, epoch: i32, topics: Vec<FetchTopic>| {
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_max_bytes(1 << 20)
            .with_session_id(session_id)
            .with_session_epoch(epoch)
            .with_topics(topics);
        match call(&node, &alice, 12, RequestKind::Fetch(request)) {
            ResponseKind::Fetch(r) => r,
            other => panic!("{other:?}"),
        }
    };
    let full = fetch_in_session(
        0,
        0,
        vec![FetchTopic::default()
            .with_topic(topic("feed"))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_partition_max_bytes(1 << 20)])],
    );
    assert_ne!(full.session_id, 0, "{full:?}");
    assert_eq!(full.responses[0].partitions[0].error_code, 0);
    // Revoked: the session still holds the partition, the answer refuses it.
    set_acls(&node, vec![]);
    produce(&node, &admin(), &["feed"]);
    // The ranges read for it are dropped and the placeholders left still splice.
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_session_id(full.session_id)
        .with_session_epoch(1);
    let Outcome::RespondWithFileRecords(body, file_records) =
        outcome(&node, &alice, 12, RequestKind::Fetch(request))
    else {
        panic!("not a fetch outcome")
    };
    assert!(file_records.is_empty());
    let sizes: Vec<u64> = file_records.iter().map(|r| r.size_bytes()).collect();
    fjord_protocol::splice::encode_response_with_external(ApiKey::Fetch, 12, 1, &body, &sizes)
        .unwrap();
    let ResponseKind::Fetch(incremental) = body else {
        panic!()
    };
    let partition = &incremental.responses[0].partitions[0];
    assert_eq!(partition.error_code, TOPIC_DENIED);
    assert_eq!(partition.records.as_ref().map_or(0, |r| r.len()), 0);
}

#[test]
fn metadata_v0_naming_only_hidden_topics_lists_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path(), "fjord");
    create_topics(&node, &["visible", "hidden"]);
    set_acls(
        &node,
        vec![acl(
            Topic,
            "visible",
            Literal,
            "User:alice",
            "*",
            Describe,
            Allow,
        )],
    );
    let request = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(topic("hidden"))),
    ]));
    let ResponseKind::Metadata(response) = call(
        &node,
        &session("alice", ALICE_HOST),
        0,
        RequestKind::Metadata(request),
    ) else {
        panic!()
    };
    let listed: Vec<(String, i16)> = response
        .topics
        .iter()
        .map(|t| (t.name.as_ref().unwrap().to_string(), t.error_code))
        .collect();
    assert_eq!(listed, vec![("hidden".to_string(), TOPIC_DENIED)]);
}

/// Kafka's ControllerApis.deleteTopics: a topic the principal may not DELETE is refused with
/// TOPIC_AUTHORIZATION_FAILED; given by id, the answer names it only to a principal that may
/// DESCRIBE it, and an unknown id is UNKNOWN_TOPIC_ID whoever asks.
#[test]
fn delete_topics_by_id_names_a_refused_topic_only_to_who_may_describe_it() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path(), "fjord");
    create_topics(&node, &["seen", "hidden", "mine"]);
    set_acls(
        &node,
        vec![
            acl(Topic, "seen", Literal, "User:alice", "*", Describe, Allow),
            acl(Topic, "mine", Literal, "User:alice", "*", Delete, Allow),
        ],
    );
    let image = node.image();
    let id = |name: &str| image.topic_by_name(name).unwrap().id;
    let unknown = Uuid::from_u128(0xfeed);
    let by_id =
        |topic_id: Uuid| delete_topics_request::DeleteTopicState::default().with_topic_id(topic_id);
    let request = DeleteTopicsRequest::default()
        .with_topics(vec![
            by_id(id("seen")),
            by_id(id("hidden")),
            by_id(id("mine")),
            by_id(unknown),
        ])
        .with_timeout_ms(5_000);
    let alice = session("alice", ALICE_HOST);
    let ResponseKind::DeleteTopics(response) =
        call(&node, &alice, 6, RequestKind::DeleteTopics(request))
    else {
        panic!("no DeleteTopics response");
    };
    let results: BTreeMap<Uuid, (Option<String>, i16)> = response
        .responses
        .iter()
        .map(|r| {
            (
                r.topic_id,
                (r.name.as_ref().map(|n| n.0.to_string()), r.error_code),
            )
        })
        .collect();
    assert_eq!(
        results.get(&id("seen")),
        Some(&(Some("seen".to_string()), TOPIC_DENIED))
    );
    assert_eq!(results.get(&id("hidden")), Some(&(None, TOPIC_DENIED)));
    assert_eq!(results.get(&id("mine")).map(|r| r.1), Some(0));
    assert_eq!(results.get(&unknown).map(|r| r.1), Some(100)); // UNKNOWN_TOPIC_ID
    assert_eq!(results.len(), 4, "{response:?}");
}
