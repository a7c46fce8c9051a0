//! Whole-request error responses (Kafka `AbstractRequest.getErrorResponse`): the response a
//! request gets when it is refused as a whole (an authorization failure of the group, the
//! transactional id or the cluster), with the error on every item the request named, so a
//! client sees it where it looks for it (per partition in Produce, per group in
//! DescribeGroups, at the top level in JoinGroup).
//!
//! Covers every API Fjord answers or is about to (the ACL, SCRAM and quota APIs included);
//! SaslHandshake and SaslAuthenticate are answered by the connection's authenticator, never
//! refused this way, and get `None`, as does every other API Fjord does not handle.

use fjord_protocol::kafka_protocol::messages::*;
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{RequestKind, ResponseError, ResponseKind};

use super::AUTHORIZED_OPERATIONS_OMITTED;

/// The response to `request` (sent at `api_version`) refusing all of it with `error`.
pub fn error_response(
    api_version: i16,
    request: &RequestKind,
    error: ResponseError,
) -> Option<ResponseKind> {
    let code = error.code();
    let message = || Some(StrBytes::from_static_str(error_message(error)));
    Some(match request {
        RequestKind::Produce(r) => ResponseKind::Produce(
            ProduceResponse::default().with_responses(
                r.topic_data
                    .iter()
                    .map(|t| {
                        produce_response::TopicProduceResponse::default()
                            .with_name(t.name.clone())
                            .with_topic_id(t.topic_id)
                            .with_partition_responses(
                                t.partition_data
                                    .iter()
                                    .map(|p| produce_partition_error(p.index, code))
                                    .collect(),
                            )
                    })
                    .collect(),
            ),
        ),
        // Kafka's FetchRequest.getErrorResponse: the error at the top, no partitions.
        RequestKind::Fetch(r) => ResponseKind::Fetch(
            FetchResponse::default()
                .with_error_code(code)
                .with_session_id(r.session_id),
        ),
        RequestKind::ListOffsets(r) => ResponseKind::ListOffsets(
            ListOffsetsResponse::default().with_topics(
                r.topics
                    .iter()
                    .map(|t| {
                        list_offsets_response::ListOffsetsTopicResponse::default()
                            .with_name(t.name.clone())
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| list_offsets_partition_error(p.partition_index, code))
                                    .collect(),
                            )
                    })
                    .collect(),
            ),
        ),
        RequestKind::Metadata(r) => ResponseKind::Metadata(
            MetadataResponse::default()
                .with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
                .with_topics(
                    r.topics
                        .iter()
                        .flatten()
                        .map(|t| {
                            metadata_response::MetadataResponseTopic::default()
                                .with_name(t.name.clone())
                                .with_topic_id(t.topic_id)
                                .with_error_code(code)
                                .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
                        })
                        .collect(),
                ),
        ),
        RequestKind::OffsetCommit(r) => ResponseKind::OffsetCommit(
            OffsetCommitResponse::default().with_topics(
                r.topics
                    .iter()
                    .map(|t| {
                        offset_commit_response::OffsetCommitResponseTopic::default()
                            .with_name(t.name.clone())
                            .with_topic_id(t.topic_id)
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        offset_commit_response::OffsetCommitResponsePartition::default()
                                            .with_partition_index(p.partition_index)
                                            .with_error_code(code)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            ),
        ),
        RequestKind::OffsetFetch(r) => ResponseKind::OffsetFetch(if api_version >= 8 {
            OffsetFetchResponse::default().with_groups(
                r.groups
                    .iter()
                    .map(|g| offset_fetch_group_error(g.group_id.clone(), code))
                    .collect(),
            )
        } else {
            // v0-1 carry errors per partition only; v2+ also at the top.
            OffsetFetchResponse::default()
                .with_error_code(code)
                .with_topics(
                    r.topics
                        .iter()
                        .flatten()
                        .map(|t| {
                            offset_fetch_response::OffsetFetchResponseTopic::default()
                                .with_name(t.name.clone())
                                .with_partitions(
                                    t.partition_indexes
                                        .iter()
                                        .map(|p| offset_fetch_partition_error(*p, code))
                                        .collect(),
                                )
                        })
                        .collect(),
                )
        }),
        RequestKind::FindCoordinator(r) => ResponseKind::FindCoordinator(if api_version >= 4 {
            FindCoordinatorResponse::default().with_coordinators(
                r.coordinator_keys
                    .iter()
                    .map(|key| coordinator_error(key.clone(), error))
                    .collect(),
            )
        } else {
            FindCoordinatorResponse::default()
                .with_error_code(code)
                .with_error_message(message())
                .with_node_id(BrokerId(-1))
                .with_port(-1)
        }),
        RequestKind::JoinGroup(_) => ResponseKind::JoinGroup(
            JoinGroupResponse::default()
                .with_error_code(code)
                .with_generation_id(-1)
                .with_protocol_name(if api_version >= 7 {
                    None
                } else {
                    Some(StrBytes::default())
                }),
        ),
        RequestKind::Heartbeat(_) => {
            ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(code))
        }
        RequestKind::LeaveGroup(_) => {
            ResponseKind::LeaveGroup(LeaveGroupResponse::default().with_error_code(code))
        }
        RequestKind::SyncGroup(_) => {
            ResponseKind::SyncGroup(SyncGroupResponse::default().with_error_code(code))
        }
        RequestKind::DescribeGroups(r) => ResponseKind::DescribeGroups(
            DescribeGroupsResponse::default().with_groups(
                r.groups
                    .iter()
                    .map(|g| described_group_error(g.clone(), code))
                    .collect(),
            ),
        ),
        RequestKind::ListGroups(_) => {
            ResponseKind::ListGroups(ListGroupsResponse::default().with_error_code(code))
        }
        RequestKind::ApiVersions(_) => {
            ResponseKind::ApiVersions(ApiVersionsResponse::default().with_error_code(code))
        }
        RequestKind::CreateTopics(r) => ResponseKind::CreateTopics(
            CreateTopicsResponse::default().with_topics(
                r.topics
                    .iter()
                    .map(|t| create_topic_error(t.name.clone(), error))
                    .collect(),
            ),
        ),
        RequestKind::DeleteTopics(r) => {
            let mut results: Vec<delete_topics_response::DeletableTopicResult> = r
                .topic_names
                .iter()
                .map(|name| {
                    delete_topics_response::DeletableTopicResult::default()
                        .with_name(Some(name.clone()))
                        .with_error_code(code)
                })
                .collect();
            results.extend(r.topics.iter().map(|t| {
                delete_topics_response::DeletableTopicResult::default()
                    .with_name(t.name.clone())
                    .with_topic_id(t.topic_id)
                    .with_error_code(code)
            }));
            ResponseKind::DeleteTopics(DeleteTopicsResponse::default().with_responses(results))
        }
        RequestKind::DeleteRecords(r) => ResponseKind::DeleteRecords(
            DeleteRecordsResponse::default().with_topics(
                r.topics
                    .iter()
                    .map(|t| {
                        delete_records_response::DeleteRecordsTopicResult::default()
                            .with_name(t.name.clone())
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| delete_records_partition_error(p.partition_index, code))
                                    .collect(),
                            )
                    })
                    .collect(),
            ),
        ),
        RequestKind::InitProducerId(_) => ResponseKind::InitProducerId(
            InitProducerIdResponse::default()
                .with_error_code(code)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        ),
        RequestKind::OffsetForLeaderEpoch(r) => ResponseKind::OffsetForLeaderEpoch(
            OffsetForLeaderEpochResponse::default().with_topics(
                r.topics
                    .iter()
                    .map(|t| {
                        offset_for_leader_epoch_response::OffsetForLeaderTopicResult::default()
                            .with_topic(t.topic.clone())
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| epoch_end_offset_error(p.partition, code))
                                    .collect(),
                            )
                    })
                    .collect(),
            ),
        ),
        RequestKind::AddPartitionsToTxn(r) => {
            ResponseKind::AddPartitionsToTxn(if api_version >= 4 {
                AddPartitionsToTxnResponse::default().with_error_code(code)
            } else {
                AddPartitionsToTxnResponse::default()
                    .with_results_by_topic_v3_and_below(txn_topic_errors(&r.v3_and_below_topics, code))
            })
        }
        RequestKind::AddOffsetsToTxn(_) => {
            ResponseKind::AddOffsetsToTxn(AddOffsetsToTxnResponse::default().with_error_code(code))
        }
        RequestKind::EndTxn(_) => ResponseKind::EndTxn(
            EndTxnResponse::default()
                .with_error_code(code)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        ),
        RequestKind::WriteTxnMarkers(r) => ResponseKind::WriteTxnMarkers(
            WriteTxnMarkersResponse::default().with_markers(
                r.markers
                    .iter()
                    .map(|m| {
                        write_txn_markers_response::WritableTxnMarkerResult::default()
                            .with_producer_id(m.producer_id)
                            .with_topics(
                                m.topics
                                    .iter()
                                    .map(|t| {
                                        write_txn_markers_response::WritableTxnMarkerTopicResult::default()
                                            .with_name(t.name.clone())
                                            .with_partitions(
                                                t.partition_indexes
                                                    .iter()
                                                    .map(|p| {
                                                        write_txn_markers_response::WritableTxnMarkerPartitionResult::default()
                                                            .with_partition_index(*p)
                                                            .with_error_code(code)
                                                    })
                                                    .collect(),
                                            )
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            ),
        ),
        RequestKind::TxnOffsetCommit(r) => ResponseKind::TxnOffsetCommit(
            TxnOffsetCommitResponse::default().with_topics(
                r.topics
                    .iter()
                    .map(|t| {
                        txn_offset_commit_response::TxnOffsetCommitResponseTopic::default()
                            .with_name(t.name.clone())
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        txn_offset_commit_response::TxnOffsetCommitResponsePartition::default()
                                            .with_partition_index(p.partition_index)
                                            .with_error_code(code)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            ),
        ),
        RequestKind::DescribeAcls(_) => ResponseKind::DescribeAcls(
            DescribeAclsResponse::default()
                .with_error_code(code)
                .with_error_message(message()),
        ),
        RequestKind::CreateAcls(r) => ResponseKind::CreateAcls(
            CreateAclsResponse::default().with_results(
                r.creations
                    .iter()
                    .map(|_| {
                        create_acls_response::AclCreationResult::default()
                            .with_error_code(code)
                            .with_error_message(message())
                    })
                    .collect(),
            ),
        ),
        RequestKind::DeleteAcls(r) => ResponseKind::DeleteAcls(
            DeleteAclsResponse::default().with_filter_results(
                r.filters
                    .iter()
                    .map(|_| {
                        delete_acls_response::DeleteAclsFilterResult::default()
                            .with_error_code(code)
                            .with_error_message(message())
                    })
                    .collect(),
            ),
        ),
        RequestKind::DescribeConfigs(r) => ResponseKind::DescribeConfigs(
            DescribeConfigsResponse::default().with_results(
                r.resources
                    .iter()
                    .map(|res| {
                        describe_configs_result_error(res.resource_type, res.resource_name.clone(), error)
                    })
                    .collect(),
            ),
        ),
        RequestKind::AlterConfigs(r) => ResponseKind::AlterConfigs(
            AlterConfigsResponse::default().with_responses(
                r.resources
                    .iter()
                    .map(|res| {
                        alter_configs_response::AlterConfigsResourceResponse::default()
                            .with_error_code(code)
                            .with_error_message(message())
                            .with_resource_type(res.resource_type)
                            .with_resource_name(res.resource_name.clone())
                    })
                    .collect(),
            ),
        ),
        RequestKind::IncrementalAlterConfigs(r) => ResponseKind::IncrementalAlterConfigs(
            IncrementalAlterConfigsResponse::default().with_responses(
                r.resources
                    .iter()
                    .map(|res| incremental_alter_configs_error(res.resource_type, res.resource_name.clone(), error))
                    .collect(),
            ),
        ),
        RequestKind::DescribeLogDirs(_) => {
            ResponseKind::DescribeLogDirs(DescribeLogDirsResponse::default().with_error_code(code))
        }
        RequestKind::CreatePartitions(r) => ResponseKind::CreatePartitions(
            CreatePartitionsResponse::default().with_results(
                r.topics
                    .iter()
                    .map(|t| create_partitions_error(t.name.clone(), error))
                    .collect(),
            ),
        ),
        RequestKind::DeleteGroups(r) => ResponseKind::DeleteGroups(
            DeleteGroupsResponse::default().with_results(
                r.groups_names
                    .iter()
                    .map(|g| {
                        delete_groups_response::DeletableGroupResult::default()
                            .with_group_id(g.clone())
                            .with_error_code(code)
                    })
                    .collect(),
            ),
        ),
        RequestKind::ElectLeaders(r) => ResponseKind::ElectLeaders(
            ElectLeadersResponse::default()
                .with_error_code(code)
                .with_replica_election_results(
                    r.topic_partitions
                        .iter()
                        .flatten()
                        .map(|t| {
                            elect_leaders_response::ReplicaElectionResult::default()
                                .with_topic(t.topic.clone())
                                .with_partition_result(
                                    t.partitions
                                        .iter()
                                        .map(|p| {
                                            elect_leaders_response::PartitionResult::default()
                                                .with_partition_id(*p)
                                                .with_error_code(code)
                                                .with_error_message(message())
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                ),
        ),
        RequestKind::AlterPartitionReassignments(_) => ResponseKind::AlterPartitionReassignments(
            AlterPartitionReassignmentsResponse::default()
                .with_error_code(code)
                .with_error_message(message()),
        ),
        RequestKind::ListPartitionReassignments(_) => ResponseKind::ListPartitionReassignments(
            ListPartitionReassignmentsResponse::default()
                .with_error_code(code)
                .with_error_message(message()),
        ),
        RequestKind::OffsetDelete(_) => {
            ResponseKind::OffsetDelete(OffsetDeleteResponse::default().with_error_code(code))
        }
        RequestKind::DescribeClientQuotas(_) => ResponseKind::DescribeClientQuotas(
            DescribeClientQuotasResponse::default()
                .with_error_code(code)
                .with_error_message(message()),
        ),
        RequestKind::AlterClientQuotas(r) => ResponseKind::AlterClientQuotas(
            AlterClientQuotasResponse::default().with_entries(
                r.entries
                    .iter()
                    .map(|e| {
                        alter_client_quotas_response::EntryData::default()
                            .with_error_code(code)
                            .with_error_message(message())
                            .with_entity(
                                e.entity
                                    .iter()
                                    .map(|d| {
                                        alter_client_quotas_response::EntityData::default()
                                            .with_entity_type(d.entity_type.clone())
                                            .with_entity_name(d.entity_name.clone())
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            ),
        ),
        RequestKind::DescribeUserScramCredentials(_) => ResponseKind::DescribeUserScramCredentials(
            DescribeUserScramCredentialsResponse::default()
                .with_error_code(code)
                .with_error_message(message()),
        ),
        RequestKind::AlterUserScramCredentials(r) => {
            let users = r
                .deletions
                .iter()
                .map(|d| d.name.clone())
                .chain(r.upsertions.iter().map(|u| u.name.clone()));
            let mut seen = std::collections::BTreeSet::new();
            ResponseKind::AlterUserScramCredentials(
                AlterUserScramCredentialsResponse::default().with_results(
                    users
                        .filter(|user| seen.insert(user.clone()))
                        .map(|user| {
                            alter_user_scram_credentials_response::AlterUserScramCredentialsResult::default()
                                .with_user(user)
                                .with_error_code(code)
                                .with_error_message(message())
                        })
                        .collect(),
                ),
            )
        }
        RequestKind::DescribeCluster(_) => ResponseKind::DescribeCluster(
            DescribeClusterResponse::default()
                .with_error_code(code)
                .with_error_message(message())
                .with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED),
        ),
        RequestKind::DescribeProducers(r) => ResponseKind::DescribeProducers(
            DescribeProducersResponse::default().with_topics(
                r.topics
                    .iter()
                    .map(|t| {
                        describe_producers_response::TopicResponse::default()
                            .with_name(t.name.clone())
                            .with_partitions(
                                t.partition_indexes
                                    .iter()
                                    .map(|p| describe_producers_partition_error(*p, error))
                                    .collect(),
                            )
                    })
                    .collect(),
            ),
        ),
        RequestKind::UnregisterBroker(_) => ResponseKind::UnregisterBroker(
            UnregisterBrokerResponse::default()
                .with_error_code(code)
                .with_error_message(message()),
        ),
        RequestKind::DescribeTransactions(r) => ResponseKind::DescribeTransactions(
            DescribeTransactionsResponse::default().with_transaction_states(
                r.transactional_ids
                    .iter()
                    .map(|id| transaction_state_error(id.clone(), code))
                    .collect(),
            ),
        ),
        RequestKind::ListTransactions(_) => ResponseKind::ListTransactions(
            ListTransactionsResponse::default().with_error_code(code),
        ),
        RequestKind::ConsumerGroupHeartbeat(_) => ResponseKind::ConsumerGroupHeartbeat(
            ConsumerGroupHeartbeatResponse::default()
                .with_error_code(code)
                .with_error_message(message()),
        ),
        RequestKind::ConsumerGroupDescribe(r) => ResponseKind::ConsumerGroupDescribe(
            ConsumerGroupDescribeResponse::default().with_groups(
                r.group_ids
                    .iter()
                    .map(|g| consumer_group_described_error(g.clone(), error))
                    .collect(),
            ),
        ),
        RequestKind::DescribeQuorum(_) => ResponseKind::DescribeQuorum(
            DescribeQuorumResponse::default()
                .with_error_code(code)
                .with_error_message(message()),
        ),
        _ => return None,
    })
}

/// The text Kafka sends with an error (the exception message of its `Errors` entry).
pub fn error_message(error: ResponseError) -> &'static str {
    match error {
        ResponseError::TopicAuthorizationFailed => "Topic authorization failed.",
        ResponseError::GroupAuthorizationFailed => "Group authorization failed.",
        ResponseError::ClusterAuthorizationFailed => "Cluster authorization failed.",
        ResponseError::TransactionalIdAuthorizationFailed => {
            "Transactional Id authorization failed."
        }
        _ => "The request was refused.",
    }
}

pub(crate) fn produce_partition_error(
    index: i32,
    code: i16,
) -> produce_response::PartitionProduceResponse {
    produce_response::PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(code)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
}

pub(crate) fn list_offsets_partition_error(
    index: i32,
    code: i16,
) -> list_offsets_response::ListOffsetsPartitionResponse {
    list_offsets_response::ListOffsetsPartitionResponse::default()
        .with_partition_index(index)
        .with_error_code(code)
        .with_timestamp(-1)
        .with_offset(-1)
        .with_leader_epoch(-1)
}

pub(crate) fn offset_fetch_partition_error(
    index: i32,
    code: i16,
) -> offset_fetch_response::OffsetFetchResponsePartition {
    offset_fetch_response::OffsetFetchResponsePartition::default()
        .with_partition_index(index)
        .with_committed_offset(-1)
        .with_committed_leader_epoch(-1)
        .with_metadata(Some(StrBytes::default()))
        .with_error_code(code)
}

pub(crate) fn offset_fetch_group_error(
    group_id: GroupId,
    code: i16,
) -> offset_fetch_response::OffsetFetchResponseGroup {
    offset_fetch_response::OffsetFetchResponseGroup::default()
        .with_group_id(group_id)
        .with_error_code(code)
}

pub(crate) fn coordinator_error(
    key: StrBytes,
    error: ResponseError,
) -> find_coordinator_response::Coordinator {
    find_coordinator_response::Coordinator::default()
        .with_key(key)
        .with_node_id(BrokerId(-1))
        .with_port(-1)
        .with_error_code(error.code())
        .with_error_message(Some(StrBytes::from_static_str(error_message(error))))
}

pub(crate) fn described_group_error(
    group_id: GroupId,
    code: i16,
) -> describe_groups_response::DescribedGroup {
    describe_groups_response::DescribedGroup::default()
        .with_group_id(group_id)
        .with_error_code(code)
        .with_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

pub(crate) fn consumer_group_described_error(
    group_id: GroupId,
    error: ResponseError,
) -> consumer_group_describe_response::DescribedGroup {
    consumer_group_describe_response::DescribedGroup::default()
        .with_group_id(group_id)
        .with_error_code(error.code())
        .with_error_message(Some(StrBytes::from_static_str(error_message(error))))
        .with_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

pub(crate) fn create_topic_error(
    name: TopicName,
    error: ResponseError,
) -> create_topics_response::CreatableTopicResult {
    create_topics_response::CreatableTopicResult::default()
        .with_name(name)
        .with_error_code(error.code())
        .with_error_message(Some(StrBytes::from_static_str(error_message(error))))
        .with_topic_config_error_code(error.code())
        .with_num_partitions(-1)
        .with_replication_factor(-1)
}

pub(crate) fn delete_records_partition_error(
    index: i32,
    code: i16,
) -> delete_records_response::DeleteRecordsPartitionResult {
    delete_records_response::DeleteRecordsPartitionResult::default()
        .with_partition_index(index)
        .with_low_watermark(-1)
        .with_error_code(code)
}

pub(crate) fn epoch_end_offset_error(
    partition: i32,
    code: i16,
) -> offset_for_leader_epoch_response::EpochEndOffset {
    offset_for_leader_epoch_response::EpochEndOffset::default()
        .with_partition(partition)
        .with_error_code(code)
        .with_leader_epoch(-1)
        .with_end_offset(-1)
}

pub(crate) fn txn_topic_errors(
    topics: &[add_partitions_to_txn_request::AddPartitionsToTxnTopic],
    code: i16,
) -> Vec<add_partitions_to_txn_response::AddPartitionsToTxnTopicResult> {
    topics.iter().map(|t| txn_topic_error(t, code)).collect()
}

pub(crate) fn txn_topic_error(
    topic: &add_partitions_to_txn_request::AddPartitionsToTxnTopic,
    code: i16,
) -> add_partitions_to_txn_response::AddPartitionsToTxnTopicResult {
    add_partitions_to_txn_response::AddPartitionsToTxnTopicResult::default()
        .with_name(topic.name.clone())
        .with_results_by_partition(
            topic
                .partitions
                .iter()
                .map(|p| {
                    add_partitions_to_txn_response::AddPartitionsToTxnPartitionResult::default()
                        .with_partition_index(*p)
                        .with_partition_error_code(code)
                })
                .collect(),
        )
}

pub(crate) fn describe_configs_result_error(
    resource_type: i8,
    resource_name: StrBytes,
    error: ResponseError,
) -> describe_configs_response::DescribeConfigsResult {
    describe_configs_response::DescribeConfigsResult::default()
        .with_error_code(error.code())
        .with_error_message(Some(StrBytes::from_static_str(error_message(error))))
        .with_resource_type(resource_type)
        .with_resource_name(resource_name)
}

pub(crate) fn incremental_alter_configs_error(
    resource_type: i8,
    resource_name: StrBytes,
    error: ResponseError,
) -> incremental_alter_configs_response::AlterConfigsResourceResponse {
    incremental_alter_configs_response::AlterConfigsResourceResponse::default()
        .with_error_code(error.code())
        .with_error_message(Some(StrBytes::from_static_str(error_message(error))))
        .with_resource_type(resource_type)
        .with_resource_name(resource_name)
}

pub(crate) fn alter_configs_error(
    resource_type: i8,
    resource_name: StrBytes,
    error: ResponseError,
) -> alter_configs_response::AlterConfigsResourceResponse {
    alter_configs_response::AlterConfigsResourceResponse::default()
        .with_error_code(error.code())
        .with_error_message(Some(StrBytes::from_static_str(error_message(error))))
        .with_resource_type(resource_type)
        .with_resource_name(resource_name)
}

pub(crate) fn create_partitions_error(
    name: TopicName,
    error: ResponseError,
) -> create_partitions_response::CreatePartitionsTopicResult {
    create_partitions_response::CreatePartitionsTopicResult::default()
        .with_name(name)
        .with_error_code(error.code())
        .with_error_message(Some(StrBytes::from_static_str(error_message(error))))
}

pub(crate) fn describe_producers_partition_error(
    index: i32,
    error: ResponseError,
) -> describe_producers_response::PartitionResponse {
    describe_producers_response::PartitionResponse::default()
        .with_partition_index(index)
        .with_error_code(error.code())
        .with_error_message(Some(StrBytes::from_static_str(error_message(error))))
}

pub(crate) fn transaction_state_error(
    transactional_id: TransactionalId,
    code: i16,
) -> describe_transactions_response::TransactionState {
    describe_transactions_response::TransactionState::default()
        .with_transactional_id(transactional_id)
        .with_error_code(code)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
        .with_transaction_start_time_ms(-1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fjord_protocol::ApiKey;

    /// Every API Fjord answers (and the seven ACL/SCRAM/quota APIs) has an error response;
    /// only the SASL APIs, which the authenticator answers, have none.
    #[test]
    fn every_supported_api_has_an_error_response() {
        let mut keys: Vec<ApiKey> = super::super::SUPPORTED_APIS
            .iter()
            .map(|(k, _)| *k)
            .collect();
        keys.extend(
            crate::security::enforcement::CLUSTER_OPERATION_APIS
                .iter()
                .map(|(k, _)| *k),
        );
        keys.extend([ApiKey::SaslHandshake, ApiKey::SaslAuthenticate]);
        for key in keys {
            let request = default_request(key);
            let response = error_response(0, &request, ResponseError::ClusterAuthorizationFailed);
            let is_sasl = matches!(key, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate);
            assert_eq!(response.is_some(), !is_sasl, "{key:?}");
        }
    }

    /// An empty request of `key`'s API.
    fn default_request(key: ApiKey) -> RequestKind {
        macro_rules! kinds {
            ($($name:ident),* $(,)?) => {
                match key {
                    $(ApiKey::$name => RequestKind::$name(Default::default()),)*
                    other => panic!("add {other:?} to the test's list"),
                }
            };
        }
        kinds!(
            Produce,
            Fetch,
            ListOffsets,
            Metadata,
            OffsetCommit,
            OffsetFetch,
            FindCoordinator,
            JoinGroup,
            Heartbeat,
            LeaveGroup,
            SyncGroup,
            DescribeGroups,
            ListGroups,
            SaslHandshake,
            ApiVersions,
            CreateTopics,
            DeleteTopics,
            DeleteRecords,
            InitProducerId,
            OffsetForLeaderEpoch,
            AddPartitionsToTxn,
            AddOffsetsToTxn,
            EndTxn,
            WriteTxnMarkers,
            TxnOffsetCommit,
            DescribeAcls,
            CreateAcls,
            DeleteAcls,
            DescribeConfigs,
            AlterConfigs,
            DescribeLogDirs,
            SaslAuthenticate,
            CreatePartitions,
            DeleteGroups,
            ElectLeaders,
            IncrementalAlterConfigs,
            AlterPartitionReassignments,
            ListPartitionReassignments,
            OffsetDelete,
            DescribeClientQuotas,
            AlterClientQuotas,
            DescribeUserScramCredentials,
            AlterUserScramCredentials,
            DescribeCluster,
            DescribeProducers,
            UnregisterBroker,
            DescribeTransactions,
            ListTransactions,
            ConsumerGroupHeartbeat,
            ConsumerGroupDescribe,
            DescribeQuorum,
        )
    }

    #[test]
    fn errors_land_on_every_named_item() {
        let request =
            RequestKind::DescribeGroups(DescribeGroupsRequest::default().with_groups(vec![
                GroupId(StrBytes::from_static_str("a")),
                GroupId(StrBytes::from_static_str("b")),
            ]));
        let Some(ResponseKind::DescribeGroups(response)) =
            error_response(5, &request, ResponseError::GroupAuthorizationFailed)
        else {
            panic!("no DescribeGroups response");
        };
        assert_eq!(response.groups.len(), 2);
        assert!(response.groups.iter().all(|g| g.error_code == 30));
        let produce = RequestKind::Produce(ProduceRequest::default().with_topic_data(vec![
            produce_request::TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default().with_index(0),
                    produce_request::PartitionProduceData::default().with_index(3),
                ]),
        ]));
        let Some(ResponseKind::Produce(response)) = error_response(
            9,
            &produce,
            ResponseError::TransactionalIdAuthorizationFailed,
        ) else {
            panic!("no Produce response");
        };
        let partitions = &response.responses[0].partition_responses;
        assert_eq!(
            partitions.iter().map(|p| p.index).collect::<Vec<_>>(),
            vec![0, 3]
        );
        assert!(partitions.iter().all(|p| p.error_code == 53));
    }
}
