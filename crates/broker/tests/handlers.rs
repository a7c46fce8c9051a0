//! Drives the real `Broker` (real files in a temp dir) with typed requests, and checks both the
//! answers and that every response encodes at every version the broker advertises.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use fjord_broker::apis::SUPPORTED_APIS;
use fjord_broker::testing::SingleNode;
use fjord_broker::{Broker, BrokerConfig, Outcome};
use fjord_protocol::kafka_protocol::messages::create_topics_request::CreatableTopic;
use fjord_protocol::kafka_protocol::messages::describe_producers_request::TopicRequest as DescribeProducersTopicRequest;
use fjord_protocol::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use fjord_protocol::kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use fjord_protocol::kafka_protocol::messages::leave_group_request::MemberIdentity;
use fjord_protocol::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsTopic,
};
use fjord_protocol::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use fjord_protocol::kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use fjord_protocol::kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use fjord_protocol::kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic,
};
use fjord_protocol::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use fjord_protocol::kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use fjord_protocol::kafka_protocol::messages::*;
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::response::encode_response;
use fjord_protocol::{ApiKey, RequestKind, ResponseError, ResponseKind};

fn broker(dir: &std::path::Path, settings: &[(&str, &str)]) -> SingleNode {
    let mut values = BTreeMap::new();
    values.insert("data.dir".to_string(), dir.display().to_string());
    for (k, v) in settings {
        values.insert(k.to_string(), v.to_string());
    }
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

/// An uncompressed v2 batch with `count` records of `value`.
fn batch(count: i32, value: &[u8], timestamp_ms: i64) -> Bytes {
    Bytes::from(fjord_protocol::batch_builder::encode_values(
        timestamp_ms,
        count as usize,
        value,
    ))
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn produce(broker: &Broker, topic: &str, partition: i32, records: Bytes) -> (i16, i64) {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(1000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])]);
    match block_on(broker.handle(&header(ApiKey::Produce, 9), RequestKind::Produce(request))) {
        Outcome::Respond(ResponseKind::Produce(r)) => {
            let p = &r.responses[0].partition_responses[0];
            (p.error_code, p.base_offset)
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// A static member of a new group `group` (JoinGroup v9; with no initial delay the join
/// completes at once); returns its member id and generation.
fn join_static(broker: &Broker, group: &str) -> (String, i32) {
    let request = JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_group_instance_id(Some(StrBytes::from_static_str("inst")))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(StrBytes::from_static_str("range"))
            .with_metadata(Bytes::from_static(b"subscription"))]);
    let Outcome::Respond(ResponseKind::JoinGroup(response)) = block_on(broker.handle(
        &header(ApiKey::JoinGroup, 9),
        RequestKind::JoinGroup(request),
    )) else {
        panic!("no join response");
    };
    assert_eq!(response.error_code, 0, "{response:?}");
    (response.member_id.to_string(), response.generation_id)
}

fn sync_request(group: &str, member_id: &str, generation: i32) -> SyncGroupRequest {
    SyncGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_member_id(StrBytes::from_string(member_id.to_string()))
        .with_group_instance_id(Some(StrBytes::from_static_str("inst")))
        .with_generation_id(generation)
        .with_protocol_type(Some(StrBytes::from_static_str("consumer")))
        .with_protocol_name(Some(StrBytes::from_static_str("range")))
        .with_assignments(vec![SyncGroupRequestAssignment::default()
            .with_member_id(StrBytes::from_string(member_id.to_string()))
            .with_assignment(Bytes::from_static(b"assignment"))])
}

fn group_id(s: &str) -> GroupId {
    GroupId(StrBytes::from_string(s.to_string()))
}

/// InitProducerId v5 for a transactional id: its producer id and epoch.
fn init_txn(broker: &Broker, transactional_id: &str) -> (i64, i16) {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(StrBytes::from_string(
            transactional_id.to_string(),
        ))))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let Outcome::Respond(ResponseKind::InitProducerId(response)) = block_on(broker.handle(
        &header(ApiKey::InitProducerId, 5),
        RequestKind::InitProducerId(request),
    )) else {
        panic!("no InitProducerId response");
    };
    assert_eq!(response.error_code, 0, "{response:?}");
    (response.producer_id.0, response.producer_epoch)
}

/// AddPartitionsToTxn v3 of partition t-0.
fn add_txn_partition(broker: &Broker, transactional_id: &str, pid: i64, epoch: i16) {
    let request = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(StrBytes::from_string(
            transactional_id.to_string(),
        )))
        .with_v3_and_below_producer_id(ProducerId(pid))
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(vec![
            add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                .with_name(name("t"))
                .with_partitions(vec![0]),
        ]);
    let Outcome::Respond(ResponseKind::AddPartitionsToTxn(response)) = block_on(broker.handle(
        &header(ApiKey::AddPartitionsToTxn, 3),
        RequestKind::AddPartitionsToTxn(request),
    )) else {
        panic!("no AddPartitionsToTxn response");
    };
    let code =
        response.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code;
    assert_eq!(code, 0, "{response:?}");
}

#[test]
fn every_response_encodes_at_every_advertised_version() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path(), &[("group.initial.rebalance.delay.ms", "0")]);
    assert_eq!(produce(&broker, "t", 0, batch(3, b"v", 1_000)).0, 0);
    for (api_key, versions) in SUPPORTED_APIS {
        for version in versions.min..=versions.max {
            let request = match api_key {
                ApiKey::ApiVersions => RequestKind::ApiVersions(
                    ApiVersionsRequest::default()
                        .with_client_software_name(StrBytes::from_static_str("test"))
                        .with_client_software_version(StrBytes::from_static_str("1")),
                ),
                ApiKey::Metadata => {
                    RequestKind::Metadata(MetadataRequest::default().with_topics(None))
                }
                ApiKey::Produce => continue, // covered by produce tests; v13 needs topic ids
                ApiKey::Fetch => {
                    RequestKind::Fetch(FetchRequest::default().with_max_bytes(1 << 20).with_topics(
                        vec![FetchTopic::default()
                            .with_topic(name("t"))
                            .with_topic_id(broker.replica_manager().topic("t").unwrap().id)
                            .with_partitions(vec![
                                FetchPartition::default().with_partition_max_bytes(1 << 20)
                            ])],
                    ))
                }
                ApiKey::ListOffsets => {
                    RequestKind::ListOffsets(ListOffsetsRequest::default().with_topics(vec![
                    ListOffsetsTopic::default().with_name(name("t")).with_partitions(vec![
                        ListOffsetsPartition::default().with_timestamp(-1),
                        ListOffsetsPartition::default().with_partition_index(9).with_timestamp(-2),
                    ]),
                ]))
                }
                ApiKey::CreateTopics => RequestKind::CreateTopics(
                    CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
                        .with_name(name(&format!("c{version}")))
                        .with_num_partitions(1)
                        .with_replication_factor(1)]),
                ),
                ApiKey::DeleteTopics => RequestKind::DeleteTopics(
                    DeleteTopicsRequest::default()
                        .with_topic_names(vec![name("missing")])
                        .with_topics(Vec::new()),
                ),
                ApiKey::OffsetForLeaderEpoch => {
                    RequestKind::OffsetForLeaderEpoch(OffsetForLeaderEpochRequest::default())
                }
                ApiKey::DescribeCluster => RequestKind::DescribeCluster(
                    DescribeClusterRequest::default().with_endpoint_type(1),
                ),
                ApiKey::FindCoordinator => RequestKind::FindCoordinator(
                    FindCoordinatorRequest::default()
                        .with_key(StrBytes::from_static_str("g"))
                        .with_coordinator_keys(if version >= 4 {
                            vec![
                                StrBytes::from_static_str("g"),
                                StrBytes::from_static_str("h"),
                            ]
                        } else {
                            Vec::new()
                        })
                        .with_key_type(if version % 2 == 0 { 0 } else { 1 }),
                ),
                ApiKey::JoinGroup => {
                    // A dynamic member's two answers (MEMBER_ID_REQUIRED, then the leader's
                    // full response) or, from v5, a static member's leader response (members
                    // carry instance ids). No initial delay: the join phase completes at once.
                    let group = format!("enc-join-{version}");
                    let join = |member_id: &str| {
                        JoinGroupRequest::default()
                            .with_group_id(group_id(&group))
                            .with_member_id(StrBytes::from_string(member_id.to_string()))
                            .with_group_instance_id(
                                (version >= 5).then(|| StrBytes::from_static_str("inst")),
                            )
                            .with_session_timeout_ms(10_000)
                            .with_rebalance_timeout_ms(10_000)
                            .with_protocol_type(StrBytes::from_static_str("consumer"))
                            .with_protocols(vec![JoinGroupRequestProtocol::default()
                                .with_name(StrBytes::from_static_str("range"))])
                    };
                    if version >= 5 {
                        RequestKind::JoinGroup(join(""))
                    } else {
                        let Outcome::Respond(first) = block_on(broker.handle(
                            &header(ApiKey::JoinGroup, version),
                            RequestKind::JoinGroup(join("")),
                        )) else {
                            panic!("no join response");
                        };
                        encode_response(*api_key, version, 7, &first)
                            .unwrap_or_else(|e| panic!("JoinGroup v{version}: {e}"));
                        let ResponseKind::JoinGroup(first) = first else {
                            panic!("not a join response")
                        };
                        assert_eq!(first.error_code, ResponseError::MemberIdRequired.code());
                        RequestKind::JoinGroup(join(first.member_id.as_str()))
                    }
                }
                ApiKey::SyncGroup => {
                    let group = format!("enc-sync-{version}");
                    let (member_id, generation) = join_static(&broker, &group);
                    RequestKind::SyncGroup(sync_request(&group, &member_id, generation))
                }
                ApiKey::Heartbeat => {
                    let group = format!("enc-sync-{version}");
                    RequestKind::Heartbeat(
                        HeartbeatRequest::default()
                            .with_group_id(group_id(&group))
                            .with_member_id(StrBytes::from_static_str("stranger"))
                            .with_generation_id(1),
                    )
                }
                ApiKey::LeaveGroup => RequestKind::LeaveGroup(
                    LeaveGroupRequest::default()
                        .with_group_id(group_id("enc-join-9"))
                        .with_member_id(StrBytes::from_static_str("stranger"))
                        .with_members(if version >= 3 {
                            vec![
                                MemberIdentity::default()
                                    .with_member_id(StrBytes::from_static_str("stranger")),
                                MemberIdentity::default().with_group_instance_id(Some(
                                    StrBytes::from_static_str("nobody"),
                                )),
                            ]
                        } else {
                            Vec::new()
                        }),
                ),
                ApiKey::OffsetCommit => RequestKind::OffsetCommit(
                    OffsetCommitRequest::default()
                        .with_group_id(group_id("enc-commit"))
                        .with_generation_id_or_member_epoch(-1)
                        .with_retention_time_ms(-1)
                        .with_topics(vec![OffsetCommitRequestTopic::default()
                            .with_name(name("t"))
                            .with_partitions(vec![
                                OffsetCommitRequestPartition::default()
                                    .with_committed_offset(2)
                                    .with_committed_leader_epoch(if version >= 6 { 0 } else { -1 }),
                                OffsetCommitRequestPartition::default().with_partition_index(9),
                            ])]),
                ),
                ApiKey::OffsetFetch => RequestKind::OffsetFetch(if version >= 8 {
                    OffsetFetchRequest::default().with_groups(vec![
                        OffsetFetchRequestGroup::default()
                            .with_group_id(group_id("enc-commit"))
                            .with_topics(None),
                        OffsetFetchRequestGroup::default()
                            .with_group_id(group_id(""))
                            .with_topics(Some(Vec::new())),
                    ])
                } else {
                    OffsetFetchRequest::default()
                        .with_group_id(group_id("enc-commit"))
                        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                            .with_name(name("t"))
                            .with_partition_indexes(vec![0, 1])]))
                }),
                ApiKey::TxnOffsetCommit => RequestKind::TxnOffsetCommit(
                    TxnOffsetCommitRequest::default()
                        .with_transactional_id(TransactionalId(StrBytes::from_static_str("tx")))
                        .with_group_id(group_id("enc-txn"))
                        .with_producer_id(ProducerId(1))
                        .with_generation_id(-1)
                        .with_topics(vec![txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                            .with_name(name("t"))
                            .with_partitions(vec![
                                txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                                    .with_committed_offset(2)
                                    .with_committed_metadata(Some(StrBytes::from_static_str("m"))),
                                txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                                    .with_partition_index(9),
                            ])]),
                ),
                ApiKey::OffsetDelete => RequestKind::OffsetDelete(
                    OffsetDeleteRequest::default()
                        .with_group_id(group_id("enc-commit"))
                        .with_topics(vec![OffsetDeleteRequestTopic::default()
                            .with_name(name("t"))
                            .with_partitions(vec![
                                OffsetDeleteRequestPartition::default(),
                                OffsetDeleteRequestPartition::default().with_partition_index(9),
                            ])]),
                ),
                ApiKey::DescribeGroups => RequestKind::DescribeGroups(
                    DescribeGroupsRequest::default()
                        .with_groups(vec![
                            group_id("enc-sync-5"),
                            group_id("enc-join-9"),
                            group_id("missing"),
                        ])
                        .with_include_authorized_operations(version >= 3),
                ),
                ApiKey::ListGroups => RequestKind::ListGroups(
                    ListGroupsRequest::default()
                        .with_states_filter(if version >= 4 {
                            vec![
                                StrBytes::from_static_str("stable"),
                                StrBytes::from_static_str("Empty"),
                            ]
                        } else {
                            Vec::new()
                        })
                        .with_types_filter(if version >= 5 {
                            vec![StrBytes::from_static_str("Classic")]
                        } else {
                            Vec::new()
                        }),
                ),
                ApiKey::DeleteGroups => RequestKind::DeleteGroups(
                    DeleteGroupsRequest::default()
                        .with_groups_names(vec![group_id("enc-commit"), group_id("missing")]),
                ),
                ApiKey::DescribeConfigs => RequestKind::DescribeConfigs(
                    DescribeConfigsRequest::default()
                        .with_include_synonyms(true)
                        .with_include_documentation(true)
                        .with_resources(vec![
                            describe_configs_request::DescribeConfigsResource::default()
                                .with_resource_type(2)
                                .with_resource_name(StrBytes::from_static_str("orders")),
                            describe_configs_request::DescribeConfigsResource::default()
                                .with_resource_type(4)
                                .with_resource_name(StrBytes::from_static_str("1")),
                            describe_configs_request::DescribeConfigsResource::default()
                                .with_resource_type(4)
                                .with_resource_name(StrBytes::from_static_str("")),
                            describe_configs_request::DescribeConfigsResource::default()
                                .with_resource_type(2)
                                .with_resource_name(StrBytes::from_static_str("missing")),
                        ]),
                ),
                ApiKey::AlterConfigs => RequestKind::AlterConfigs(
                    AlterConfigsRequest::default()
                        .with_validate_only(true)
                        .with_resources(vec![
                            alter_configs_request::AlterConfigsResource::default()
                                .with_resource_type(2)
                                .with_resource_name(StrBytes::from_static_str("orders"))
                                .with_configs(vec![
                                    alter_configs_request::AlterableConfig::default()
                                        .with_name(StrBytes::from_static_str("retention.ms"))
                                        .with_value(Some(StrBytes::from_static_str("1000"))),
                                ]),
                            alter_configs_request::AlterConfigsResource::default()
                                .with_resource_type(4)
                                .with_resource_name(StrBytes::from_static_str("1"))
                                .with_configs(vec![
                                    alter_configs_request::AlterableConfig::default()
                                        .with_name(StrBytes::from_static_str("node.id"))
                                        .with_value(Some(StrBytes::from_static_str("2"))),
                                ]),
                        ]),
                ),
                ApiKey::IncrementalAlterConfigs => RequestKind::IncrementalAlterConfigs(
                    IncrementalAlterConfigsRequest::default()
                        .with_validate_only(true)
                        .with_resources(vec![
                            incremental_alter_configs_request::AlterConfigsResource::default()
                                .with_resource_type(2)
                                .with_resource_name(StrBytes::from_static_str("orders"))
                                .with_configs(vec![
                                    incremental_alter_configs_request::AlterableConfig::default()
                                        .with_name(StrBytes::from_static_str("nope"))
                                        .with_value(Some(StrBytes::from_static_str("1"))),
                                ]),
                            incremental_alter_configs_request::AlterConfigsResource::default()
                                .with_resource_type(4)
                                .with_resource_name(StrBytes::from_static_str(""))
                                .with_configs(vec![
                                    incremental_alter_configs_request::AlterableConfig::default()
                                        .with_name(StrBytes::from_static_str("log.retention.ms"))
                                        .with_value(Some(StrBytes::from_static_str("1000"))),
                                ]),
                        ]),
                ),
                ApiKey::DescribeLogDirs => {
                    RequestKind::DescribeLogDirs(DescribeLogDirsRequest::default())
                }
                ApiKey::CreatePartitions => RequestKind::CreatePartitions(
                    CreatePartitionsRequest::default()
                        .with_validate_only(true)
                        .with_topics(vec![
                            create_partitions_request::CreatePartitionsTopic::default()
                                .with_name(name("orders"))
                                .with_count(1),
                        ]),
                ),
                ApiKey::DeleteRecords => {
                    RequestKind::DeleteRecords(DeleteRecordsRequest::default().with_topics(vec![
                        delete_records_request::DeleteRecordsTopic::default()
                            .with_name(name("orders"))
                            .with_partitions(vec![
                                delete_records_request::DeleteRecordsPartition::default()
                                    .with_partition_index(0)
                                    .with_offset(0),
                            ]),
                    ]))
                }
                ApiKey::ConsumerGroupHeartbeat => RequestKind::ConsumerGroupHeartbeat(
                    ConsumerGroupHeartbeatRequest::default()
                        .with_group_id(group_id(&format!("enc-848-{version}")))
                        .with_member_id(StrBytes::from_string(format!("m-{version}")))
                        .with_member_epoch(0)
                        .with_rebalance_timeout_ms(30_000)
                        .with_subscribed_topic_names(Some(vec![name("orders")]))
                        .with_topic_partitions(Some(Vec::new())),
                ),
                ApiKey::ConsumerGroupDescribe => RequestKind::ConsumerGroupDescribe(
                    ConsumerGroupDescribeRequest::default().with_group_ids(vec![
                        group_id(&format!("enc-848-{version}")),
                        group_id("missing"),
                    ]),
                ),
                ApiKey::DescribeProducers => RequestKind::DescribeProducers(
                    DescribeProducersRequest::default().with_topics(vec![
                        DescribeProducersTopicRequest::default()
                            .with_name(name("t"))
                            .with_partition_indexes(vec![0, 9]),
                    ]),
                ),
                ApiKey::InitProducerId => RequestKind::InitProducerId(
                    InitProducerIdRequest::default()
                        .with_transactional_id(Some(TransactionalId(StrBytes::from_string(
                            format!("enc-txn-{version}"),
                        ))))
                        .with_transaction_timeout_ms(60_000)
                        .with_producer_id(ProducerId(-1))
                        .with_producer_epoch(-1),
                ),
                ApiKey::AddPartitionsToTxn => {
                    // Also an error response first: an unknown producer id mapping.
                    let txn = format!("enc-txn-{}", version.min(5));
                    let (pid, epoch) = init_txn(&broker, &txn);
                    let topics = vec![
                        add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                            .with_name(name("t"))
                            .with_partitions(vec![0]),
                    ];
                    if version < 4 {
                        RequestKind::AddPartitionsToTxn(
                            AddPartitionsToTxnRequest::default()
                                .with_v3_and_below_transactional_id(TransactionalId(
                                    StrBytes::from_string(txn),
                                ))
                                .with_v3_and_below_producer_id(ProducerId(pid))
                                .with_v3_and_below_producer_epoch(epoch)
                                .with_v3_and_below_topics(topics),
                        )
                    } else {
                        RequestKind::AddPartitionsToTxn(AddPartitionsToTxnRequest::default().with_transactions(vec![
                            add_partitions_to_txn_request::AddPartitionsToTxnTransaction::default()
                                .with_transactional_id(TransactionalId(StrBytes::from_string(txn)))
                                .with_producer_id(ProducerId(pid))
                                .with_producer_epoch(epoch)
                                .with_topics(topics.clone()),
                            add_partitions_to_txn_request::AddPartitionsToTxnTransaction::default()
                                .with_transactional_id(TransactionalId(StrBytes::from_static_str("nobody")))
                                .with_verify_only(true)
                                .with_topics(topics),
                        ]))
                    }
                }
                ApiKey::AddOffsetsToTxn => {
                    let txn = format!("enc-offsets-{version}");
                    let (pid, epoch) = init_txn(&broker, &txn);
                    RequestKind::AddOffsetsToTxn(
                        AddOffsetsToTxnRequest::default()
                            .with_transactional_id(TransactionalId(StrBytes::from_string(txn)))
                            .with_producer_id(ProducerId(pid))
                            .with_producer_epoch(epoch)
                            .with_group_id(group_id("enc-group")),
                    )
                }
                ApiKey::EndTxn => {
                    let txn = format!("enc-end-{version}");
                    let (pid, epoch) = init_txn(&broker, &txn);
                    // An error (nothing to commit) then a real commit.
                    let bad = RequestKind::EndTxn(
                        EndTxnRequest::default()
                            .with_transactional_id(TransactionalId(StrBytes::from_string(
                                txn.clone(),
                            )))
                            .with_producer_id(ProducerId(pid + 1000))
                            .with_producer_epoch(epoch)
                            .with_committed(true),
                    );
                    let Outcome::Respond(first) =
                        block_on(broker.handle(&header(ApiKey::EndTxn, version), bad))
                    else {
                        panic!("no EndTxn response");
                    };
                    encode_response(*api_key, version, 7, &first)
                        .unwrap_or_else(|e| panic!("EndTxn v{version}: {e}"));
                    add_txn_partition(&broker, &txn, pid, epoch);
                    RequestKind::EndTxn(
                        EndTxnRequest::default()
                            .with_transactional_id(TransactionalId(StrBytes::from_string(txn)))
                            .with_producer_id(ProducerId(pid))
                            .with_producer_epoch(epoch)
                            .with_committed(true),
                    )
                }
                ApiKey::WriteTxnMarkers => RequestKind::WriteTxnMarkers(
                    WriteTxnMarkersRequest::default().with_markers(vec![
                        write_txn_markers_request::WritableTxnMarker::default()
                            .with_producer_id(ProducerId(999_999))
                            .with_producer_epoch(0)
                            .with_transaction_result(false)
                            .with_topics(vec![
                                write_txn_markers_request::WritableTxnMarkerTopic::default()
                                    .with_name(name("t"))
                                    .with_partition_indexes(vec![0, 9]),
                            ]),
                    ]),
                ),
                ApiKey::DescribeTransactions => RequestKind::DescribeTransactions(
                    DescribeTransactionsRequest::default().with_transactional_ids(vec![
                        TransactionalId(StrBytes::from_static_str("enc-txn-1")),
                        TransactionalId(StrBytes::from_static_str("missing")),
                    ]),
                ),
                ApiKey::ListTransactions => RequestKind::ListTransactions(
                    ListTransactionsRequest::default()
                        .with_state_filters(vec![
                            StrBytes::from_static_str("Ongoing"),
                            StrBytes::from_static_str("Bogus"),
                        ])
                        .with_duration_filter(if version >= 1 { 0 } else { -1 })
                        .with_transactional_id_pattern(
                            (version >= 2).then(|| StrBytes::from_static_str("enc-.*")),
                        ),
                ),
                ApiKey::ElectLeaders => RequestKind::ElectLeaders(
                    ElectLeadersRequest::default()
                        .with_election_type(if version >= 1 { 1 } else { 0 })
                        .with_topic_partitions(Some(vec![
                            elect_leaders_request::TopicPartitions::default()
                                .with_topic(name("enc-elect"))
                                .with_partitions(vec![0, 7]),
                        ])),
                ),
                ApiKey::AlterPartitionReassignments => RequestKind::AlterPartitionReassignments(
                    AlterPartitionReassignmentsRequest::default().with_topics(vec![
                        alter_partition_reassignments_request::ReassignableTopic::default()
                            .with_name(name("enc-reassign"))
                            .with_partitions(vec![
                                alter_partition_reassignments_request::ReassignablePartition::default()
                                    .with_partition_index(0)
                                    .with_replicas(Some(vec![BrokerId(9)])),
                                alter_partition_reassignments_request::ReassignablePartition::default()
                                    .with_partition_index(1)
                                    .with_replicas(None),
                            ]),
                    ]),
                ),
                ApiKey::ListPartitionReassignments => RequestKind::ListPartitionReassignments(
                    ListPartitionReassignmentsRequest::default().with_topics(None),
                ),
                ApiKey::UnregisterBroker => RequestKind::UnregisterBroker(
                    UnregisterBrokerRequest::default().with_broker_id(BrokerId(42)),
                ),
                ApiKey::DescribeQuorum => RequestKind::DescribeQuorum(
                    DescribeQuorumRequest::default().with_topics(vec![
                        describe_quorum_request::TopicData::default()
                            .with_topic_name(name("__cluster_metadata"))
                            .with_partitions(vec![
                                describe_quorum_request::PartitionData::default()
                                    .with_partition_index(0),
                            ]),
                    ]),
                ),
                ApiKey::DescribeAcls => RequestKind::DescribeAcls(
                    DescribeAclsRequest::default()
                        .with_resource_type_filter(1)
                        .with_resource_name_filter(None)
                        .with_pattern_type_filter(1)
                        .with_principal_filter(None)
                        .with_host_filter(None)
                        .with_operation(1)
                        .with_permission_type(1),
                ),
                ApiKey::CreateAcls => RequestKind::CreateAcls(
                    CreateAclsRequest::default().with_creations(vec![
                        create_acls_request::AclCreation::default()
                            .with_resource_type(2)
                            .with_resource_name(StrBytes::from_string(format!("enc-acl-{version}")))
                            .with_resource_pattern_type(3)
                            .with_principal(StrBytes::from_static_str("User:enc"))
                            .with_host(StrBytes::from_static_str("*"))
                            .with_operation(3)
                            .with_permission_type(3),
                        create_acls_request::AclCreation::default(),
                    ]),
                ),
                ApiKey::DeleteAcls => RequestKind::DeleteAcls(
                    DeleteAclsRequest::default().with_filters(vec![
                        delete_acls_request::DeleteAclsFilter::default()
                            .with_resource_type_filter(1)
                            .with_resource_name_filter(None)
                            .with_pattern_type_filter(1)
                            .with_principal_filter(Some(StrBytes::from_static_str("User:enc")))
                            .with_host_filter(None)
                            .with_operation(1)
                            .with_permission_type(1),
                    ]),
                ),
                ApiKey::DescribeUserScramCredentials => RequestKind::DescribeUserScramCredentials(
                    DescribeUserScramCredentialsRequest::default().with_users(None),
                ),
                ApiKey::AlterUserScramCredentials => RequestKind::AlterUserScramCredentials(
                    AlterUserScramCredentialsRequest::default().with_upsertions(vec![
                        alter_user_scram_credentials_request::ScramCredentialUpsertion::default()
                            .with_name(StrBytes::from_static_str("enc"))
                            .with_mechanism(1)
                            .with_iterations(4096)
                            .with_salt(bytes::Bytes::from_static(b"s"))
                            .with_salted_password(bytes::Bytes::from_static(&[1; 32])),
                    ]),
                ),
                ApiKey::DescribeClientQuotas => RequestKind::DescribeClientQuotas(
                    DescribeClientQuotasRequest::default(),
                ),
                ApiKey::AlterClientQuotas => RequestKind::AlterClientQuotas(
                    AlterClientQuotasRequest::default().with_entries(vec![
                        alter_client_quotas_request::EntryData::default()
                            .with_entity(vec![alter_client_quotas_request::EntityData::default()
                                .with_entity_type(StrBytes::from_static_str("user"))
                                .with_entity_name(None)])
                            .with_ops(vec![alter_client_quotas_request::OpData::default()
                                .with_key(StrBytes::from_static_str("producer_byte_rate"))
                                .with_value(1024.0)]),
                    ]),
                ),
                other => panic!("add {other:?} to this test"),
            };
            let Outcome::Respond(response) =
                block_on(broker.handle(&header(*api_key, version), request))
                    .into_inline()
                    .unwrap()
            else {
                panic!("{api_key:?} v{version}: no response");
            };
            encode_response(*api_key, version, 7, &response)
                .unwrap_or_else(|e| panic!("{api_key:?} v{version}: {e}"));
        }
    }
}

#[test]
fn produce_assigns_offsets_and_fetch_reads_them_back() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path(), &[]);
    assert_eq!(produce(&broker, "orders", 0, batch(2, b"a", 10)), (0, 0));
    assert_eq!(produce(&broker, "orders", 0, batch(3, b"b", 20)), (0, 2));
    let fetch = FetchRequest::default()
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name("orders"))
            .with_partitions(vec![FetchPartition::default()
                .with_fetch_offset(2)
                .with_partition_max_bytes(1 << 20)])]);
    let outcome = block_on(broker.handle(&header(ApiKey::Fetch, 12), RequestKind::Fetch(fetch)));
    assert!(
        matches!(&outcome, Outcome::RespondWithFileRecords(_, files) if files.len() == 1),
        "a fetch with data answers with a file range: {outcome:?}"
    );
    let Outcome::Respond(ResponseKind::Fetch(response)) = outcome.into_inline().unwrap() else {
        panic!("no fetch response");
    };
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    assert_eq!(partition.high_watermark, 5);
    let records = partition.records.clone().unwrap();
    let header = fjord_protocol::records::RecordBatchHeader::parse(&records).unwrap();
    assert_eq!(header.base_offset, 2);
    assert_eq!(header.records_count, 3);
}

#[test]
fn bad_batches_get_kafka_error_codes() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path(), &[("message.max.bytes", "200")]);
    let mut corrupt = BytesMut::from(&batch(1, b"x", 0)[..]);
    let last = corrupt.len() - 2;
    corrupt[last] ^= 0xff;
    assert_eq!(
        produce(&broker, "t", 0, corrupt.freeze()).0,
        ResponseError::CorruptMessage.code()
    );
    assert_eq!(
        produce(&broker, "t", 0, batch(1, &[0u8; 300], 0)).0,
        ResponseError::MessageTooLarge.code()
    );
    assert_eq!(
        produce(&broker, "t", 5, batch(1, b"x", 0)).0,
        ResponseError::UnknownTopicOrPartition.code()
    );
    assert_eq!(
        produce(&broker, "bad name", 0, batch(1, b"x", 0)).0,
        ResponseError::InvalidTopicException.code()
    );
    assert_eq!(
        produce(&broker, "t", 0, Bytes::new()).0,
        ResponseError::InvalidRecord.code()
    );
    // Nothing bad was stored: the next good batch still lands at offset 0.
    assert_eq!(produce(&broker, "t", 0, batch(1, b"x", 0)), (0, 0));
}

#[test]
fn auto_creation_can_be_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path(), &[("auto.create.topics.enable", "false")]);
    assert_eq!(
        produce(&broker, "nope", 0, batch(1, b"x", 0)).0,
        ResponseError::UnknownTopicOrPartition.code()
    );
    let request = MetadataRequest::default()
        .with_allow_auto_topic_creation(true)
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(name("nope")))
        ]));
    let Outcome::Respond(ResponseKind::Metadata(response)) = block_on(broker.handle(
        &header(ApiKey::Metadata, 12),
        RequestKind::Metadata(request),
    )) else {
        panic!("no metadata response");
    };
    assert_eq!(
        response.topics[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
}

#[test]
fn topics_and_data_survive_a_clean_restart() {
    let dir = tempfile::tempdir().unwrap();
    let topic_id = {
        let broker = broker(dir.path(), &[("num.partitions", "3")]);
        assert_eq!(produce(&broker, "keep", 2, batch(4, b"z", 5)), (0, 0));
        let id = broker.replica_manager().topic("keep").unwrap().id;
        broker.close().unwrap();
        id
    };
    let broker = broker(dir.path(), &[]);
    let topic = broker.replica_manager().topic("keep").unwrap();
    assert_eq!(topic.id, topic_id);
    assert_eq!(topic.partitions.len(), 3);
    assert_eq!(produce(&broker, "keep", 2, batch(1, b"z", 5)), (0, 4));
}

#[test]
fn acks_zero_sends_nothing_on_success_and_closes_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path(), &[]);
    let request = |partition: i32| {
        RequestKind::Produce(ProduceRequest::default().with_acks(0).with_topic_data(vec![
            TopicProduceData::default()
                .with_name(name("quiet"))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(batch(1, b"x", 0)))]),
        ]))
    };
    let ok = block_on(broker.handle(&header(ApiKey::Produce, 9), request(0)));
    assert!(matches!(ok, Outcome::NoResponse), "{ok:?}");
    let failed = block_on(broker.handle(&header(ApiKey::Produce, 9), request(7)));
    assert!(matches!(failed, Outcome::CloseConnection(_)), "{failed:?}");
    // The successful one was stored.
    let offsets = broker
        .replica_manager()
        .partition("quiet", 0)
        .unwrap()
        .offsets()
        .unwrap();
    assert_eq!(offsets.log_end_offset, 1);
}

const RESOURCE_BROKER: i8 = 4;
const RESOURCE_TOPIC: i8 = 2;

/// IncrementalAlterConfigs on one resource; the error code and message.
fn incremental_alter(
    broker: &Broker,
    resource_type: i8,
    resource_name: &str,
    ops: &[(&str, Option<&str>, i8)],
    validate_only: bool,
) -> (i16, Option<String>) {
    let request = IncrementalAlterConfigsRequest::default()
        .with_validate_only(validate_only)
        .with_resources(vec![
            incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(StrBytes::from_string(resource_name.to_string()))
                .with_configs(
                    ops.iter()
                        .map(|(name, value, op)| {
                            incremental_alter_configs_request::AlterableConfig::default()
                                .with_name(StrBytes::from_string(name.to_string()))
                                .with_value(value.map(|v| StrBytes::from_string(v.to_string())))
                                .with_config_operation(*op)
                        })
                        .collect(),
                ),
        ]);
    let Outcome::Respond(ResponseKind::IncrementalAlterConfigs(response)) =
        block_on(broker.handle(
            &header(ApiKey::IncrementalAlterConfigs, 1),
            RequestKind::IncrementalAlterConfigs(request),
        ))
    else {
        panic!("no IncrementalAlterConfigs response");
    };
    let result = &response.responses[0];
    (
        result.error_code,
        result
            .error_message
            .as_ref()
            .map(|m| m.to_string())
            .filter(|m| !m.is_empty()),
    )
}

fn describe_configs(
    broker: &Broker,
    resource_type: i8,
    resource_name: &str,
) -> describe_configs_response::DescribeConfigsResult {
    let request = DescribeConfigsRequest::default()
        .with_include_synonyms(true)
        .with_resources(vec![
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(StrBytes::from_string(resource_name.to_string())),
        ]);
    let Outcome::Respond(ResponseKind::DescribeConfigs(response)) = block_on(broker.handle(
        &header(ApiKey::DescribeConfigs, 4),
        RequestKind::DescribeConfigs(request),
    )) else {
        panic!("no DescribeConfigs response");
    };
    response.results.into_iter().next().unwrap()
}

/// A synonym as (name, value, source).
type Synonym = (String, String, i8);

/// (value, source, synonyms) of one config.
fn config_entry(
    result: &describe_configs_response::DescribeConfigsResult,
    name: &str,
) -> Option<(String, i8, Vec<Synonym>)> {
    let entry = result.configs.iter().find(|c| c.name.as_str() == name)?;
    Some((
        entry
            .value
            .as_ref()
            .map(|v| v.to_string())
            .unwrap_or_default(),
        entry.config_source,
        entry
            .synonyms
            .iter()
            .map(|s| {
                (
                    s.name.to_string(),
                    s.value.as_ref().map(|v| v.to_string()).unwrap_or_default(),
                    s.source,
                )
            })
            .collect(),
    ))
}

fn syn(name: &str, value: &str, source: i8) -> Synonym {
    (name.to_string(), value.to_string(), source)
}

const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;

#[test]
fn dynamic_broker_configs_have_kafka_sources_and_precedence() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path(), &[("log.retention.ms", "100000")]);
    assert_eq!(produce(&broker, "inherits", 0, batch(1, b"x", 0)).0, 0);

    // Cluster-wide default.
    let set_default = [("log.retention.ms", Some("200000"), SET)];
    assert_eq!(
        incremental_alter(&broker, RESOURCE_BROKER, "", &set_default, false),
        (0, None)
    );
    assert_eq!(broker.config().log_retention_ms, 200_000);
    let topic = describe_configs(&broker, RESOURCE_TOPIC, "inherits");
    assert_eq!(
        config_entry(&topic, "retention.ms").unwrap(),
        (
            "200000".to_string(),
            3,
            vec![
                syn("log.retention.ms", "200000", 3),
                syn("log.retention.ms", "100000", 4),
                syn("log.retention.ms", "604800000", 5),
            ]
        )
    );
    // The "" resource lists only the dynamic defaults.
    let defaults = describe_configs(&broker, RESOURCE_BROKER, "");
    assert_eq!(defaults.error_code, 0);
    assert_eq!(defaults.configs.len(), 1);
    assert_eq!(
        config_entry(&defaults, "log.retention.ms").unwrap(),
        (
            "200000".to_string(),
            3,
            vec![syn("log.retention.ms", "200000", 3)]
        )
    );

    // Per broker, over the default.
    let set_broker = [("log.retention.ms", Some("300000"), SET)];
    assert_eq!(
        incremental_alter(&broker, RESOURCE_BROKER, "1", &set_broker, false),
        (0, None)
    );
    let described = describe_configs(&broker, RESOURCE_BROKER, "1");
    let (value, source, synonyms) = config_entry(&described, "log.retention.ms").unwrap();
    assert_eq!((value.as_str(), source), ("300000", 2));
    assert_eq!(
        synonyms.iter().map(|s| s.2).collect::<Vec<_>>(),
        vec![2, 3, 4, 5]
    );
    let entry = described
        .configs
        .iter()
        .find(|c| c.name.as_str() == "log.retention.ms")
        .unwrap();
    assert!(!entry.read_only);
    let node_id = described
        .configs
        .iter()
        .find(|c| c.name.as_str() == "node.id")
        .unwrap();
    assert!(node_id.read_only);
    let topic = describe_configs(&broker, RESOURCE_TOPIC, "inherits");
    assert_eq!(config_entry(&topic, "retention.ms").unwrap().1, 2);

    // A topic override still wins, with the broker levels as its synonyms.
    let override_ = [("retention.ms", Some("5000"), SET)];
    assert_eq!(
        incremental_alter(&broker, RESOURCE_TOPIC, "inherits", &override_, false).0,
        0
    );
    let topic = describe_configs(&broker, RESOURCE_TOPIC, "inherits");
    let (value, source, synonyms) = config_entry(&topic, "retention.ms").unwrap();
    assert_eq!((value.as_str(), source), ("5000", 1));
    assert_eq!(
        synonyms.iter().map(|s| s.2).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );

    // DELETE falls back one level at a time.
    let delete = [("log.retention.ms", None, DELETE)];
    assert_eq!(
        incremental_alter(&broker, RESOURCE_BROKER, "1", &delete, false),
        (0, None)
    );
    assert_eq!(broker.config().log_retention_ms, 200_000);
    assert_eq!(
        incremental_alter(&broker, RESOURCE_BROKER, "", &delete, false),
        (0, None)
    );
    assert_eq!(broker.config().log_retention_ms, 100_000);
    let described = describe_configs(&broker, RESOURCE_BROKER, "1");
    assert_eq!(config_entry(&described, "log.retention.ms").unwrap().1, 4);
}

#[test]
fn dynamic_broker_configs_are_validated_like_kafka() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path(), &[]);
    let alter = |name: &str, ops: &[(&str, Option<&str>, i8)]| {
        incremental_alter(&broker, RESOURCE_BROKER, name, ops, false)
    };
    let (code, message) = alter("1", &[("node.id", Some("2"), SET)]);
    assert_eq!(code, ResponseError::InvalidRequest.code());
    assert_eq!(
        message.unwrap(),
        "Cannot update these configs dynamically: Set(node.id)"
    );
    let (code, message) = alter("", &[("listeners", Some("PLAINTEXT://:1"), SET)]);
    assert_eq!(code, ResponseError::InvalidRequest.code());
    assert!(message.unwrap().contains("Set(listeners)"));
    let (code, message) = alter("1", &[("no.such.setting", Some("1"), SET)]);
    assert_eq!(code, ResponseError::InvalidConfig.code());
    assert!(message.unwrap().contains("no.such.setting"));
    let (code, message) = alter("1", &[("log.retention.ms", Some("soon"), SET)]);
    assert_eq!(code, ResponseError::InvalidConfig.code());
    let message = message.unwrap();
    assert!(
        message.contains("log.retention.ms") && message.contains("soon"),
        "{message}"
    );
    let (code, _) = alter("1", &[("log.cleanup.policy", Some("shred"), SET)]);
    assert_eq!(code, ResponseError::InvalidConfig.code());
    // Another broker's id, or not an id at all.
    let (code, message) = alter("2", &[("log.retention.ms", Some("1"), SET)]);
    assert_eq!(code, ResponseError::InvalidRequest.code());
    assert_eq!(
        message.unwrap(),
        "Unexpected broker id, expected 1, but received 2"
    );
    assert_eq!(
        alter("one", &[("log.retention.ms", Some("1"), SET)]).0,
        ResponseError::InvalidRequest.code()
    );
    assert_eq!(
        describe_configs(&broker, RESOURCE_BROKER, "2").error_code,
        ResponseError::InvalidRequest.code()
    );
    // Duplicates and append on a non-list setting.
    assert_eq!(
        alter(
            "1",
            &[
                ("log.retention.ms", Some("1"), SET),
                ("log.retention.ms", Some("2"), SET)
            ]
        )
        .0,
        ResponseError::InvalidRequest.code()
    );
    assert_eq!(
        alter("1", &[("log.retention.ms", Some("1"), APPEND)]).0,
        ResponseError::InvalidConfig.code()
    );
    // validate_only changes nothing.
    assert_eq!(
        incremental_alter(
            &broker,
            RESOURCE_BROKER,
            "1",
            &[("log.retention.ms", Some("1234"), SET)],
            true
        ),
        (0, None)
    );
    assert_eq!(broker.config().log_retention_ms, 604_800_000);
    assert!(broker.config().dynamic_broker_settings.is_empty());
    // Nothing was written either.
    assert!(!dir.path().join("broker-configs.json").exists());
}

#[test]
fn dynamic_broker_configs_apply_live_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let broker = broker(dir.path(), &[]);
        assert_eq!(produce(&broker, "live", 0, batch(1, &[1u8; 300], 0)).0, 0);
        // message.max.bytes applies to the next produce.
        let small = [("message.max.bytes", Some("200"), SET)];
        assert_eq!(
            incremental_alter(&broker, RESOURCE_BROKER, "", &small, false),
            (0, None)
        );
        assert_eq!(
            produce(&broker, "live", 0, batch(1, &[1u8; 300], 0)).0,
            ResponseError::MessageTooLarge.code()
        );
        // Segment size and retention reach the open logs: small segments roll, then
        // retention by size deletes the oldest ones without a restart.
        let ops = [
            ("log.segment.bytes", Some("1000"), SET),
            ("log.retention.bytes", Some("2000"), SET),
        ];
        assert_eq!(
            incremental_alter(&broker, RESOURCE_BROKER, "1", &ops, false),
            (0, None)
        );
        // Deleting at the per-broker level leaves the cluster default in force.
        let delete = [("message.max.bytes", None, DELETE)];
        assert_eq!(
            incremental_alter(&broker, RESOURCE_BROKER, "1", &delete, false),
            (0, None)
        );
        assert_eq!(broker.config().message_max_bytes, 200);
        assert_eq!(
            incremental_alter(&broker, RESOURCE_BROKER, "", &delete, false),
            (0, None)
        );
        assert_eq!(broker.config().message_max_bytes, 1_048_588);
        for _ in 0..20 {
            assert_eq!(produce(&broker, "live", 0, batch(1, &[2u8; 300], 0)).0, 0);
        }
        let deleted = broker
            .replica_manager()
            .enforce_retention(fjord_broker::time::now_ms());
        assert!(deleted > 0);
        let partition = broker.replica_manager().partition("live", 0).unwrap();
        assert!(partition.offsets().unwrap().log_start_offset > 0);
        // APPEND to a list setting starts from Kafka's default ("delete").
        let append = [("log.cleanup.policy", Some("compact"), APPEND)];
        assert_eq!(
            incremental_alter(&broker, RESOURCE_BROKER, "", &append, false),
            (0, None)
        );
        assert_eq!(broker.config().log_cleanup_policy, "delete,compact");
        broker.close().unwrap();
    }
    let broker = broker(dir.path(), &[]);
    let config = broker.config();
    assert_eq!(config.log_segment_bytes, 1000);
    assert_eq!(config.log_retention_bytes, 2000);
    assert_eq!(config.log_cleanup_policy, "delete,compact");
    let described = describe_configs(&broker, RESOURCE_BROKER, "1");
    assert_eq!(config_entry(&described, "log.segment.bytes").unwrap().1, 2);
    assert_eq!(config_entry(&described, "log.cleanup.policy").unwrap().1, 3);

    // Legacy AlterConfigs replaces a level's whole set.
    let request = AlterConfigsRequest::default().with_resources(vec![
        alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(RESOURCE_BROKER)
            .with_resource_name(StrBytes::from_static_str("1"))
            .with_configs(vec![alter_configs_request::AlterableConfig::default()
                .with_name(StrBytes::from_static_str("log.roll.ms"))
                .with_value(Some(StrBytes::from_static_str("60000")))]),
    ]);
    let Outcome::Respond(ResponseKind::AlterConfigs(response)) = block_on(broker.handle(
        &header(ApiKey::AlterConfigs, 2),
        RequestKind::AlterConfigs(request),
    )) else {
        panic!("no AlterConfigs response");
    };
    assert_eq!(response.responses[0].error_code, 0);
    let config = broker.config();
    assert_eq!(config.log_roll_ms, 60_000);
    assert_eq!(config.log_segment_bytes, 1 << 30);
    assert_eq!(
        config.dynamic_broker_settings.keys().collect::<Vec<_>>(),
        vec!["log.roll.ms"]
    );
    // The cluster default level was not touched.
    assert_eq!(config.log_cleanup_policy, "delete,compact");
}
