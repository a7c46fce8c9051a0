//! The cluster admin APIs on a single node (`SingleNode`: one-voter quorum, real controller,
//! real files): ElectLeaders, AlterPartitionReassignments, ListPartitionReassignments,
//! UnregisterBroker and DescribeQuorum, answered as Kafka answers them.

use std::collections::BTreeMap;
use std::sync::Arc;

use fjord_broker::testing::SingleNode;
use fjord_broker::{BrokerConfig, Outcome};
use fjord_protocol::kafka_protocol::messages::create_topics_request::CreatableTopic;
use fjord_protocol::kafka_protocol::messages::*;
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::response::encode_response;
use fjord_protocol::{ApiKey, RequestKind, ResponseError, ResponseKind};

fn single_node(dir: &std::path::Path) -> SingleNode {
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

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// Sends `request` at `version`, checks the response encodes at that version, returns it.
fn call(node: &SingleNode, api_key: ApiKey, version: i16, request: RequestKind) -> ResponseKind {
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(3);
    let Outcome::Respond(response) = block_on(node.handle(&header, request)) else {
        panic!("{api_key:?}: no response");
    };
    encode_response(api_key, version, 3, &response)
        .unwrap_or_else(|e| panic!("{api_key:?} v{version}: {e}"));
    response
}

fn create_topic(node: &SingleNode, topic: &str, partitions: i32) {
    let request = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(-1)])
        .with_timeout_ms(10_000);
    let ResponseKind::CreateTopics(response) = call(
        node,
        ApiKey::CreateTopics,
        7,
        RequestKind::CreateTopics(request),
    ) else {
        panic!("wrong response")
    };
    assert_eq!(response.topics[0].error_code, 0, "{response:?}");
}

/// (topic, partition, error code, message) of one ElectLeaders result.
type ElectionResult = (String, i32, i16, Option<String>);

/// The top-level error code and every ElectLeaders result.
fn elect(
    node: &SingleNode,
    version: i16,
    election_type: i8,
    partitions: Option<Vec<(&str, Vec<i32>)>>,
) -> (i16, Vec<ElectionResult>) {
    let request = ElectLeadersRequest::default()
        .with_election_type(election_type)
        .with_timeout_ms(10_000)
        .with_topic_partitions(partitions.map(|topics| {
            topics
                .into_iter()
                .map(|(topic, partitions)| {
                    elect_leaders_request::TopicPartitions::default()
                        .with_topic(name(topic))
                        .with_partitions(partitions)
                })
                .collect()
        }));
    let ResponseKind::ElectLeaders(response) = call(
        node,
        ApiKey::ElectLeaders,
        version,
        RequestKind::ElectLeaders(request),
    ) else {
        panic!("wrong response")
    };
    let results = response
        .replica_election_results
        .iter()
        .flat_map(|t| {
            t.partition_result.iter().map(|p| {
                (
                    t.topic.to_string(),
                    p.partition_id,
                    p.error_code,
                    p.error_message.as_ref().map(|m| m.to_string()),
                )
            })
        })
        .collect();
    (response.error_code, results)
}

#[test]
fn preferred_election_on_a_single_node_is_not_needed() {
    let dir = tempfile::tempdir().unwrap();
    let node = single_node(dir.path());
    create_topic(&node, "elect", 2);
    let not_needed = ResponseError::ElectionNotNeeded.code();
    let unknown = ResponseError::UnknownTopicOrPartition.code();
    for version in 0..=2 {
        let (top, results) = elect(
            &node,
            version,
            0,
            Some(vec![("elect", vec![0, 1, 5]), ("missing", vec![0])]),
        );
        assert_eq!(top, 0);
        let codes: Vec<(String, i32, i16)> =
            results.into_iter().map(|(t, p, c, _)| (t, p, c)).collect();
        assert_eq!(
            codes,
            vec![
                ("elect".to_string(), 0, not_needed),
                ("elect".to_string(), 1, not_needed),
                ("elect".to_string(), 5, unknown),
                ("missing".to_string(), 0, unknown),
            ],
            "v{version}"
        );
    }
    // Unclean (v1+) on a partition with a leader: nothing to do either.
    let (_, results) = elect(&node, 1, 1, Some(vec![("elect", vec![0])]));
    assert_eq!(results[0].2, not_needed);
    // Every partition: ELECTION_NOT_NEEDED results are left out, as Kafka does.
    let (top, results) = elect(&node, 2, 0, None);
    assert_eq!((top, results.len()), (0, 0), "{results:?}");
    // An unknown election type is refused for the whole request.
    let (top, results) = elect(&node, 2, 7, Some(vec![("elect", vec![0])]));
    let invalid = ResponseError::InvalidRequest.code();
    assert_eq!(top, invalid);
    assert_eq!(results[0].2, invalid);
    // The leader did not move.
    let image = node.image();
    let partition = &image.topic_by_name("elect").unwrap().partitions[&0];
    assert_eq!((partition.leader, partition.leader_epoch), (1, 0));
}

fn reassign(
    node: &SingleNode,
    topic: &str,
    partitions: Vec<(i32, Option<Vec<i32>>)>,
) -> AlterPartitionReassignmentsResponse {
    use alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic};
    let request = AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![ReassignableTopic::default()
            .with_name(name(topic))
            .with_partitions(
                partitions
                    .into_iter()
                    .map(|(index, replicas)| {
                        ReassignablePartition::default()
                            .with_partition_index(index)
                            .with_replicas(replicas.map(|r| r.into_iter().map(BrokerId).collect()))
                    })
                    .collect(),
            )]);
    let ResponseKind::AlterPartitionReassignments(response) = call(
        node,
        ApiKey::AlterPartitionReassignments,
        0,
        RequestKind::AlterPartitionReassignments(request),
    ) else {
        panic!("wrong response")
    };
    response
}

#[test]
fn reassignments_are_validated_like_kafka_and_none_is_listed() {
    let dir = tempfile::tempdir().unwrap();
    let node = single_node(dir.path());
    create_topic(&node, "moves", 3);
    let response = reassign(
        &node,
        "moves",
        vec![
            (0, Some(vec![1, 9])),
            (1, None),
            (2, Some(vec![1])),
            (7, Some(vec![1])),
        ],
    );
    assert_eq!(response.error_code, 0);
    let results: Vec<(i32, i16, Option<String>)> = response
        .responses
        .iter()
        .flat_map(|t| &t.partitions)
        .map(|p| {
            (
                p.partition_index,
                p.error_code,
                p.error_message.as_ref().map(|m| m.to_string()),
            )
        })
        .collect();
    assert_eq!(response.responses[0].name.as_str(), "moves");
    assert_eq!(
        results[0],
        (
            0,
            ResponseError::InvalidReplicaAssignment.code(),
            Some(
                "The manual partition assignment includes broker 9, but no such broker is registered."
                    .to_string()
            )
        )
    );
    assert_eq!(
        (results[1].0, results[1].1),
        (1, ResponseError::NoReassignmentInProgress.code())
    );
    // Reassigning to the current replicas is accepted and changes nothing.
    assert_eq!((results[2].0, results[2].1), (2, 0));
    assert_eq!(
        (results[3].0, results[3].1),
        (7, ResponseError::UnknownTopicOrPartition.code())
    );
    let image = node.image();
    let topic = image.topic_by_name("moves").unwrap();
    assert!(topic
        .partitions
        .values()
        .all(|p| p.replicas == [1] && p.adding_replicas.is_empty()));

    for topics in [
        None,
        Some(vec![
            list_partition_reassignments_request::ListPartitionReassignmentsTopics::default()
                .with_name(name("moves"))
                .with_partition_indexes(vec![0, 1, 2]),
        ]),
    ] {
        let ResponseKind::ListPartitionReassignments(listed) = call(
            &node,
            ApiKey::ListPartitionReassignments,
            0,
            RequestKind::ListPartitionReassignments(
                ListPartitionReassignmentsRequest::default().with_topics(topics),
            ),
        ) else {
            panic!("wrong response")
        };
        assert_eq!(listed.error_code, 0);
        assert!(listed.topics.is_empty(), "{listed:?}");
    }
}

#[test]
fn unregistering_an_unknown_broker_fails_like_kafka() {
    let dir = tempfile::tempdir().unwrap();
    let node = single_node(dir.path());
    let ResponseKind::UnregisterBroker(response) = call(
        &node,
        ApiKey::UnregisterBroker,
        0,
        RequestKind::UnregisterBroker(
            UnregisterBrokerRequest::default().with_broker_id(BrokerId(42)),
        ),
    ) else {
        panic!("wrong response")
    };
    assert_eq!(
        response.error_code,
        ResponseError::BrokerIdNotRegistered.code()
    );
    assert_eq!(
        response.error_message.as_deref(),
        Some("Broker ID 42 is not currently registered")
    );
    assert!(node.image().broker(1).is_some_and(|b| !b.fenced));
}

fn describe_quorum(node: &SingleNode, version: i16, topic: &str) -> DescribeQuorumResponse {
    let request = DescribeQuorumRequest::default().with_topics(vec![
        describe_quorum_request::TopicData::default()
            .with_topic_name(name(topic))
            .with_partitions(vec![
                describe_quorum_request::PartitionData::default().with_partition_index(0)
            ]),
    ]);
    let ResponseKind::DescribeQuorum(response) = call(
        node,
        ApiKey::DescribeQuorum,
        version,
        RequestKind::DescribeQuorum(request),
    ) else {
        panic!("wrong response")
    };
    response
}

#[test]
fn describe_quorum_describes_the_single_voter() {
    let dir = tempfile::tempdir().unwrap();
    let node = single_node(dir.path());
    for version in 0..=2 {
        let response = describe_quorum(&node, version, "__cluster_metadata");
        assert_eq!(response.error_code, 0);
        let topic = &response.topics[0];
        assert_eq!(topic.topic_name.as_str(), "__cluster_metadata");
        let partition = &topic.partitions[0];
        assert_eq!(partition.error_code, 0, "{partition:?}");
        assert_eq!(partition.leader_id, BrokerId(1));
        assert!(partition.leader_epoch >= 1, "{partition:?}");
        assert!(partition.high_watermark >= 1, "{partition:?}");
        assert_eq!(partition.current_voters.len(), 1);
        let voter = &partition.current_voters[0];
        assert_eq!(voter.replica_id, BrokerId(1));
        // The leader holds everything committed.
        assert!(voter.log_end_offset >= partition.high_watermark);
        assert!(voter.last_fetch_timestamp > 0, "{voter:?}");
        assert_eq!(voter.last_caught_up_timestamp, voter.last_fetch_timestamp);
        // The only broker is a voter: no observers.
        assert!(partition.observers.is_empty(), "{partition:?}");
    }
    // Another partition than the metadata log's.
    let response = describe_quorum(&node, 2, "orders");
    assert_eq!(
        response.topics[0].partitions[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    // A node whose voter is not the leader answers as Kafka's: NOT_LEADER_OR_FOLLOWER.
    node.set_quorum_describer(Arc::new(|| None));
    for version in 0..=2 {
        let response = describe_quorum(&node, version, "__cluster_metadata");
        let partition = &response.topics[0].partitions[0];
        assert_eq!(
            partition.error_code,
            ResponseError::NotLeaderOrFollower.code()
        );
        // The message travels from v2 on.
        assert_eq!(
            partition
                .error_message
                .as_deref()
                .is_some_and(|m| m.contains("not the current leader")),
            version >= 2
        );
    }
}
