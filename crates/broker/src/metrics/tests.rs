use std::time::Duration;

use fjord_protocol::kafka_protocol::messages::*;
use fjord_protocol::{ApiKey, ResponseError, ResponseKind};

use super::*;

fn code(e: ResponseError) -> i16 {
    e.code()
}

// ---------------------------------------------------------------------------- renderer

#[test]
fn label_values_escape_backslash_quote_and_newline() {
    let mut encoder = TextEncoder::new(10);
    encoder.family("x_total", "Help with \\ and\nnewline.", MetricType::Counter);
    encoder.sample("x_total", &[("topic", "a\\b\"c\nd")], 3.0);
    let text = encoder.finish();
    assert_eq!(
        text,
        "# HELP x_total Help with \\\\ and\\nnewline.\n# TYPE x_total counter\nx_total{topic=\"a\\\\b\\\"c\\nd\"} 3\n"
    );
}

#[test]
fn help_and_type_are_written_once_per_family() {
    let mut encoder = TextEncoder::new(10);
    encoder.family("g", "A gauge.", MetricType::Gauge);
    encoder.sample("g", &[("a", "1")], 1.0);
    encoder.family("g", "A gauge.", MetricType::Gauge);
    encoder.sample("g", &[("a", "2")], 2.5);
    let text = encoder.finish();
    assert_eq!(text.matches("# HELP g ").count(), 1);
    assert_eq!(text.matches("# TYPE g gauge").count(), 1);
    assert!(text.contains("g{a=\"2\"} 2.5\n"));
}

#[test]
fn special_values_use_prometheus_spellings() {
    let mut out = String::new();
    write_value(&mut out, f64::INFINITY);
    out.push(' ');
    write_value(&mut out, f64::NAN);
    out.push(' ');
    write_value(&mut out, 0.00025);
    out.push(' ');
    write_value(&mut out, 42.0);
    assert_eq!(out, "+Inf NaN 0.00025 42");
}

#[test]
fn histogram_buckets_are_cumulative_with_inf_sum_and_count() {
    let histogram = Histogram::new();
    histogram.observe(Duration::from_micros(50)); // <= 0.0001
    histogram.observe(Duration::from_micros(100)); // exactly on the bound: le is inclusive
    histogram.observe(Duration::from_millis(3)); // <= 0.005
    histogram.observe(Duration::from_secs(60)); // only +Inf
    let snapshot = histogram.snapshot();
    assert_eq!(snapshot.cumulative[0], 2);
    assert_eq!(snapshot.cumulative[4], 2); // le=0.0025
    assert_eq!(snapshot.cumulative[5], 3); // le=0.005
    assert_eq!(snapshot.cumulative[15], 3); // le=10
    assert_eq!(snapshot.cumulative[16], 4); // +Inf
    assert_eq!(snapshot.count, 4);
    assert!((snapshot.sum_seconds - 60.00315).abs() < 1e-9);

    let mut encoder = TextEncoder::new(10);
    encoder.family("d_seconds", "Durations.", MetricType::Histogram);
    encoder.histogram("d_seconds", &[("api", "Produce")], &snapshot);
    let text = encoder.finish();
    assert!(text.contains("d_seconds_bucket{api=\"Produce\",le=\"0.0001\"} 2\n"));
    assert!(text.contains("d_seconds_bucket{api=\"Produce\",le=\"0.005\"} 3\n"));
    assert!(text.contains("d_seconds_bucket{api=\"Produce\",le=\"10\"} 3\n"));
    assert!(text.contains("d_seconds_bucket{api=\"Produce\",le=\"+Inf\"} 4\n"));
    assert!(text.contains("d_seconds_count{api=\"Produce\"} 4\n"));
    assert!(text.contains("d_seconds_sum{api=\"Produce\"} 60.00315"));
    assert_eq!(
        text.matches("_bucket{").count(),
        DURATION_BUCKETS_SECONDS.len() + 1
    );
}

#[test]
fn bounded_series_stop_at_the_budget_and_count_the_rest() {
    let mut encoder = TextEncoder::new(2);
    encoder.family("t_total", "Per topic.", MetricType::Counter);
    for topic in ["a", "b", "c", "d"] {
        encoder.bounded_sample("t_total", &[("topic", topic)], 1.0);
    }
    encoder.sample("unbounded", &[], 1.0);
    assert_eq!(encoder.labelled_series_dropped(), 2);
    let text = encoder.finish();
    assert!(text.contains("t_total{topic=\"b\"} 1"));
    assert!(!text.contains("t_total{topic=\"c\"}"));
    assert!(text.contains("unbounded 1"));
}

#[test]
fn error_names_are_kafkas_upper_snake_names() {
    assert_eq!(
        error_name(code(ResponseError::UnknownTopicOrPartition)),
        "UNKNOWN_TOPIC_OR_PARTITION"
    );
    assert_eq!(
        error_name(code(ResponseError::UnsupportedVersion)),
        "UNSUPPORTED_VERSION"
    );
    assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
    assert_eq!(error_name(9999), "UNKNOWN_ERROR_CODE_9999");
}

#[test]
fn request_stats_count_requests_durations_and_error_codes() {
    let metrics = BrokerMetrics::new();
    let response = ResponseKind::Produce(ProduceResponse::default().with_responses(vec![
        produce_response::TopicProduceResponse::default().with_partition_responses(vec![
            produce_response::PartitionProduceResponse::default()
                .with_error_code(code(ResponseError::UnknownTopicOrPartition)),
            produce_response::PartitionProduceResponse::default(),
        ]),
    ]));
    metrics.record_request(ApiKey::Produce, Duration::from_millis(1));
    metrics.count_errors(ApiKey::Produce, &response);
    metrics.record_rejected_request(ApiKey::Fetch, ResponseError::UnsupportedVersion);
    assert_eq!(metrics.requests(ApiKey::Produce), 1);
    assert_eq!(
        metrics.errors(ApiKey::Produce, ResponseError::UnknownTopicOrPartition),
        1
    );
    assert_eq!(
        metrics.errors(ApiKey::Fetch, ResponseError::UnsupportedVersion),
        1
    );
    let mut encoder = TextEncoder::new(10);
    render_requests(&mut encoder, &metrics);
    let text = encoder.finish();
    assert!(text.contains("fjord_requests_total{api=\"Produce\"} 1\n"));
    assert!(text.contains("fjord_requests_total{api=\"Fetch\"} 1\n"));
    assert!(text.contains(
        "fjord_request_errors_total{api=\"Produce\",error=\"UNKNOWN_TOPIC_OR_PARTITION\"} 1\n"
    ));
    assert!(text
        .contains("fjord_request_errors_total{api=\"Fetch\",error=\"UNSUPPORTED_VERSION\"} 1\n"));
    assert!(text.contains("fjord_request_duration_seconds_count{api=\"Produce\"} 1\n"));
    assert!(text.contains("fjord_purgatory_size{purgatory=\"fetch\"} 0\n"));
}

#[test]
fn process_metrics_render_without_a_broker() {
    let text = render_process_metrics();
    assert!(text.contains("fjord_build_info{version=\""));
    assert!(text.contains("# TYPE process_resident_memory_bytes gauge\n"));
    assert!(text.contains("process_open_fds "));
}

// ------------------------------------------------------------------------ error_counts

fn counts(response: ResponseKind) -> Vec<(i16, u32)> {
    error_counts(&response).into_iter().collect()
}

const E1: ResponseError = ResponseError::UnknownTopicOrPartition;
const E2: ResponseError = ResponseError::NotCoordinator;

#[test]
fn error_counts_leave_out_none() {
    assert!(counts(ResponseKind::ApiVersions(ApiVersionsResponse::default())).is_empty());
    assert_eq!(
        counts(ResponseKind::ApiVersions(
            ApiVersionsResponse::default().with_error_code(code(ResponseError::UnsupportedVersion))
        )),
        vec![(code(ResponseError::UnsupportedVersion), 1)]
    );
}

#[test]
fn error_counts_produce_fetch_list_offsets_and_epochs_count_partitions() {
    use fetch_response::{FetchableTopicResponse, PartitionData};
    let fetch = FetchResponse::default()
        .with_error_code(code(E2))
        .with_responses(vec![FetchableTopicResponse::default().with_partitions(
            vec![
                PartitionData::default().with_error_code(code(E1)),
                PartitionData::default().with_error_code(code(E1)),
                PartitionData::default(),
            ],
        )]);
    assert_eq!(
        counts(ResponseKind::Fetch(fetch)),
        vec![(code(E1), 2), (code(E2), 1)]
    );
    let list = ListOffsetsResponse::default().with_topics(vec![
        list_offsets_response::ListOffsetsTopicResponse::default().with_partitions(vec![
            list_offsets_response::ListOffsetsPartitionResponse::default()
                .with_error_code(code(E1)),
        ]),
    ]);
    assert_eq!(counts(ResponseKind::ListOffsets(list)), vec![(code(E1), 1)]);
    let epochs = OffsetForLeaderEpochResponse::default().with_topics(vec![
        offset_for_leader_epoch_response::OffsetForLeaderTopicResult::default().with_partitions(
            vec![offset_for_leader_epoch_response::EpochEndOffset::default()
                .with_error_code(code(E1))],
        ),
    ]);
    assert_eq!(
        counts(ResponseKind::OffsetForLeaderEpoch(epochs)),
        vec![(code(E1), 1)]
    );
    let delete = DeleteRecordsResponse::default().with_topics(vec![
        delete_records_response::DeleteRecordsTopicResult::default().with_partitions(vec![
            delete_records_response::DeleteRecordsPartitionResult::default()
                .with_error_code(code(E1)),
        ]),
    ]);
    assert_eq!(
        counts(ResponseKind::DeleteRecords(delete)),
        vec![(code(E1), 1)]
    );
}

#[test]
fn error_counts_metadata_counts_topics_and_partitions() {
    let metadata = MetadataResponse::default().with_topics(vec![
        metadata_response::MetadataResponseTopic::default()
            .with_error_code(code(E1))
            .with_partitions(vec![metadata_response::MetadataResponsePartition::default(
            )
            .with_error_code(code(ResponseError::LeaderNotAvailable))]),
    ]);
    assert_eq!(
        counts(ResponseKind::Metadata(metadata)),
        vec![(code(E1), 1), (code(ResponseError::LeaderNotAvailable), 1)]
    );
}

#[test]
fn error_counts_admin_apis_count_each_resource() {
    let e = code(ResponseError::TopicAlreadyExists);
    let create = CreateTopicsResponse::default().with_topics(vec![
        create_topics_response::CreatableTopicResult::default().with_error_code(e),
        create_topics_response::CreatableTopicResult::default(),
    ]);
    assert_eq!(counts(ResponseKind::CreateTopics(create)), vec![(e, 1)]);
    let delete = DeleteTopicsResponse::default().with_responses(vec![
        delete_topics_response::DeletableTopicResult::default().with_error_code(code(E1)),
    ]);
    assert_eq!(
        counts(ResponseKind::DeleteTopics(delete)),
        vec![(code(E1), 1)]
    );
    let partitions = CreatePartitionsResponse::default().with_results(vec![
        create_partitions_response::CreatePartitionsTopicResult::default()
            .with_error_code(code(E1)),
    ]);
    assert_eq!(
        counts(ResponseKind::CreatePartitions(partitions)),
        vec![(code(E1), 1)]
    );
    let describe = DescribeConfigsResponse::default().with_results(vec![
        describe_configs_response::DescribeConfigsResult::default().with_error_code(code(E1)),
    ]);
    assert_eq!(
        counts(ResponseKind::DescribeConfigs(describe)),
        vec![(code(E1), 1)]
    );
    let alter = AlterConfigsResponse::default().with_responses(vec![
        alter_configs_response::AlterConfigsResourceResponse::default().with_error_code(code(E1)),
    ]);
    assert_eq!(
        counts(ResponseKind::AlterConfigs(alter)),
        vec![(code(E1), 1)]
    );
    let incremental = IncrementalAlterConfigsResponse::default().with_responses(vec![
        incremental_alter_configs_response::AlterConfigsResourceResponse::default()
            .with_error_code(code(E1)),
    ]);
    assert_eq!(
        counts(ResponseKind::IncrementalAlterConfigs(incremental)),
        vec![(code(E1), 1)]
    );
    let dirs = DescribeLogDirsResponse::default()
        .with_error_code(code(E2))
        .with_results(vec![
            describe_log_dirs_response::DescribeLogDirsResult::default().with_error_code(code(E1)),
        ]);
    assert_eq!(
        counts(ResponseKind::DescribeLogDirs(dirs)),
        vec![(code(E1), 1), (code(E2), 1)]
    );
    let cluster = DescribeClusterResponse::default().with_error_code(code(E2));
    assert_eq!(
        counts(ResponseKind::DescribeCluster(cluster)),
        vec![(code(E2), 1)]
    );
    let producers = DescribeProducersResponse::default().with_topics(vec![
        describe_producers_response::TopicResponse::default().with_partitions(vec![
            describe_producers_response::PartitionResponse::default().with_error_code(code(E1)),
        ]),
    ]);
    assert_eq!(
        counts(ResponseKind::DescribeProducers(producers)),
        vec![(code(E1), 1)]
    );
}

#[test]
fn error_counts_group_apis_count_top_level_groups_members_and_partitions() {
    let top = [
        ResponseKind::JoinGroup(JoinGroupResponse::default().with_error_code(code(E2))),
        ResponseKind::SyncGroup(SyncGroupResponse::default().with_error_code(code(E2))),
        ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(code(E2))),
        ResponseKind::ListGroups(ListGroupsResponse::default().with_error_code(code(E2))),
        ResponseKind::ConsumerGroupHeartbeat(
            ConsumerGroupHeartbeatResponse::default().with_error_code(code(E2)),
        ),
        ResponseKind::FindCoordinator(FindCoordinatorResponse::default().with_error_code(code(E2))),
    ];
    for response in top {
        assert_eq!(counts(response), vec![(code(E2), 1)]);
    }
    let find = FindCoordinatorResponse::default().with_coordinators(vec![
        find_coordinator_response::Coordinator::default().with_error_code(code(E2)),
        find_coordinator_response::Coordinator::default().with_error_code(code(E2)),
    ]);
    assert_eq!(
        counts(ResponseKind::FindCoordinator(find)),
        vec![(code(E2), 2)]
    );
    let leave = LeaveGroupResponse::default()
        .with_error_code(code(E2))
        .with_members(vec![leave_group_response::MemberResponse::default()
            .with_error_code(code(ResponseError::UnknownMemberId))]);
    assert_eq!(
        counts(ResponseKind::LeaveGroup(leave)),
        vec![(code(E2), 1), (code(ResponseError::UnknownMemberId), 1)]
    );
    let commit = OffsetCommitResponse::default().with_topics(vec![
        offset_commit_response::OffsetCommitResponseTopic::default().with_partitions(vec![
            offset_commit_response::OffsetCommitResponsePartition::default()
                .with_error_code(code(E1)),
        ]),
    ]);
    assert_eq!(
        counts(ResponseKind::OffsetCommit(commit)),
        vec![(code(E1), 1)]
    );
    let fetch_v8 = OffsetFetchResponse::default().with_groups(vec![
        offset_fetch_response::OffsetFetchResponseGroup::default()
            .with_error_code(code(E2))
            .with_topics(vec![
                offset_fetch_response::OffsetFetchResponseTopics::default().with_partitions(vec![
                    offset_fetch_response::OffsetFetchResponsePartitions::default()
                        .with_error_code(code(E1)),
                ]),
            ]),
    ]);
    assert_eq!(
        counts(ResponseKind::OffsetFetch(fetch_v8)),
        vec![(code(E1), 1), (code(E2), 1)]
    );
    let fetch_v0 = OffsetFetchResponse::default().with_topics(vec![
        offset_fetch_response::OffsetFetchResponseTopic::default().with_partitions(vec![
            offset_fetch_response::OffsetFetchResponsePartition::default()
                .with_error_code(code(E1)),
        ]),
    ]);
    assert_eq!(
        counts(ResponseKind::OffsetFetch(fetch_v0)),
        vec![(code(E1), 1)]
    );
    let delete_offsets = OffsetDeleteResponse::default()
        .with_error_code(code(E2))
        .with_topics(vec![
            offset_delete_response::OffsetDeleteResponseTopic::default().with_partitions(vec![
                offset_delete_response::OffsetDeleteResponsePartition::default()
                    .with_error_code(code(E1)),
            ]),
        ]);
    assert_eq!(
        counts(ResponseKind::OffsetDelete(delete_offsets)),
        vec![(code(E1), 1), (code(E2), 1)]
    );
    let describe = DescribeGroupsResponse::default().with_groups(vec![
        describe_groups_response::DescribedGroup::default().with_error_code(code(E2)),
    ]);
    assert_eq!(
        counts(ResponseKind::DescribeGroups(describe)),
        vec![(code(E2), 1)]
    );
    let describe848 = ConsumerGroupDescribeResponse::default().with_groups(vec![
        consumer_group_describe_response::DescribedGroup::default().with_error_code(code(E2)),
    ]);
    assert_eq!(
        counts(ResponseKind::ConsumerGroupDescribe(describe848)),
        vec![(code(E2), 1)]
    );
    let delete = DeleteGroupsResponse::default().with_results(vec![
        delete_groups_response::DeletableGroupResult::default().with_error_code(code(E2)),
    ]);
    assert_eq!(
        counts(ResponseKind::DeleteGroups(delete)),
        vec![(code(E2), 1)]
    );
}

#[test]
fn error_counts_transaction_apis() {
    let e = code(ResponseError::InvalidProducerEpoch);
    let top = [
        ResponseKind::InitProducerId(InitProducerIdResponse::default().with_error_code(e)),
        ResponseKind::AddOffsetsToTxn(AddOffsetsToTxnResponse::default().with_error_code(e)),
        ResponseKind::EndTxn(EndTxnResponse::default().with_error_code(e)),
        ResponseKind::ListTransactions(ListTransactionsResponse::default().with_error_code(e)),
    ];
    for response in top {
        assert_eq!(counts(response), vec![(e, 1)]);
    }
    use add_partitions_to_txn_response::*;
    let partition = || AddPartitionsToTxnPartitionResult::default().with_partition_error_code(e);
    let v3 = AddPartitionsToTxnResponse::default()
        .with_results_by_topic_v3_and_below(vec![AddPartitionsToTxnTopicResult::default()
            .with_results_by_partition(vec![partition(), partition()])]);
    assert_eq!(counts(ResponseKind::AddPartitionsToTxn(v3)), vec![(e, 2)]);
    let v4 = AddPartitionsToTxnResponse::default().with_results_by_transaction(vec![
        AddPartitionsToTxnResult::default()
            .with_topic_results(vec![AddPartitionsToTxnTopicResult::default()
                .with_results_by_partition(vec![partition()])]),
    ]);
    assert_eq!(counts(ResponseKind::AddPartitionsToTxn(v4)), vec![(e, 1)]);
    let txn_commit = TxnOffsetCommitResponse::default().with_topics(vec![
        txn_offset_commit_response::TxnOffsetCommitResponseTopic::default().with_partitions(vec![
            txn_offset_commit_response::TxnOffsetCommitResponsePartition::default()
                .with_error_code(e),
        ]),
    ]);
    assert_eq!(
        counts(ResponseKind::TxnOffsetCommit(txn_commit)),
        vec![(e, 1)]
    );
    let markers = WriteTxnMarkersResponse::default().with_markers(vec![
        write_txn_markers_response::WritableTxnMarkerResult::default().with_topics(vec![
            write_txn_markers_response::WritableTxnMarkerTopicResult::default().with_partitions(
                vec![
                    write_txn_markers_response::WritableTxnMarkerPartitionResult::default()
                        .with_error_code(e),
                ],
            ),
        ]),
    ]);
    assert_eq!(counts(ResponseKind::WriteTxnMarkers(markers)), vec![(e, 1)]);
    let describe = DescribeTransactionsResponse::default().with_transaction_states(vec![
        describe_transactions_response::TransactionState::default().with_error_code(e),
    ]);
    assert_eq!(
        counts(ResponseKind::DescribeTransactions(describe)),
        vec![(e, 1)]
    );
}

#[test]
fn error_counts_of_the_security_admin_apis() {
    let e = code(ResponseError::InvalidRequest);
    let create = CreateAclsResponse::default().with_results(vec![
        create_acls_response::AclCreationResult::default().with_error_code(e),
        create_acls_response::AclCreationResult::default(),
    ]);
    assert_eq!(counts(ResponseKind::CreateAcls(create)), vec![(e, 1)]);
    let delete = DeleteAclsResponse::default().with_filter_results(vec![
        delete_acls_response::DeleteAclsFilterResult::default().with_error_code(e),
    ]);
    assert_eq!(counts(ResponseKind::DeleteAcls(delete)), vec![(e, 1)]);
    let scram = AlterUserScramCredentialsResponse::default().with_results(vec![
        alter_user_scram_credentials_response::AlterUserScramCredentialsResult::default()
            .with_error_code(e),
    ]);
    assert_eq!(
        counts(ResponseKind::AlterUserScramCredentials(scram)),
        vec![(e, 1)]
    );
    let quotas = AlterClientQuotasResponse::default().with_entries(vec![
        alter_client_quotas_response::EntryData::default().with_error_code(e),
    ]);
    assert_eq!(
        counts(ResponseKind::AlterClientQuotas(quotas)),
        vec![(e, 1)]
    );
    let describe = DescribeClientQuotasResponse::default().with_error_code(e);
    assert_eq!(
        counts(ResponseKind::DescribeClientQuotas(describe)),
        vec![(e, 1)]
    );
}

#[test]
fn every_supported_api_has_an_error_counts_arm() {
    // A response of each supported API with a top-level or nested error must be seen; this
    // fails when a new API is added to the broker without an arm above.
    for (api_key, _) in crate::apis::SUPPORTED_APIS {
        assert!(
            COVERED_APIS.contains(api_key),
            "{api_key:?} has no error_counts arm"
        );
    }
}

/// The APIs `for_each_error_code` handles (kept beside the tests above).
const COVERED_APIS: &[ApiKey] = &[
    ApiKey::DescribeAcls,
    ApiKey::CreateAcls,
    ApiKey::DeleteAcls,
    ApiKey::DescribeUserScramCredentials,
    ApiKey::AlterUserScramCredentials,
    ApiKey::DescribeClientQuotas,
    ApiKey::AlterClientQuotas,
    ApiKey::ApiVersions,
    ApiKey::Metadata,
    ApiKey::Produce,
    ApiKey::Fetch,
    ApiKey::ListOffsets,
    ApiKey::OffsetForLeaderEpoch,
    ApiKey::CreateTopics,
    ApiKey::DeleteTopics,
    ApiKey::DescribeCluster,
    ApiKey::FindCoordinator,
    ApiKey::JoinGroup,
    ApiKey::SyncGroup,
    ApiKey::Heartbeat,
    ApiKey::DescribeConfigs,
    ApiKey::AlterConfigs,
    ApiKey::IncrementalAlterConfigs,
    ApiKey::DescribeLogDirs,
    ApiKey::DescribeProducers,
    ApiKey::CreatePartitions,
    ApiKey::DeleteRecords,
    ApiKey::ConsumerGroupHeartbeat,
    ApiKey::ConsumerGroupDescribe,
    ApiKey::LeaveGroup,
    ApiKey::OffsetCommit,
    ApiKey::OffsetFetch,
    ApiKey::TxnOffsetCommit,
    ApiKey::OffsetDelete,
    ApiKey::DescribeGroups,
    ApiKey::ListGroups,
    ApiKey::DeleteGroups,
    ApiKey::InitProducerId,
    ApiKey::AddPartitionsToTxn,
    ApiKey::AddOffsetsToTxn,
    ApiKey::EndTxn,
    ApiKey::WriteTxnMarkers,
    ApiKey::DescribeTransactions,
    ApiKey::ListTransactions,
    ApiKey::ElectLeaders,
    ApiKey::AlterPartitionReassignments,
    ApiKey::ListPartitionReassignments,
    ApiKey::UnregisterBroker,
    ApiKey::DescribeQuorum,
];
