//! Consumer groups through the real `Broker` (real files, `__consumer_offsets` on disk):
//! Kafka's error codes for bad members and generations, static membership fencing, and
//! groups and offsets coming back after a restart.

use std::collections::BTreeMap;

use bytes::Bytes;
use fjord_broker::testing::SingleNode;
use fjord_broker::{Broker, BrokerConfig, Outcome};
use fjord_protocol::kafka_protocol::messages::create_topics_request::CreatableTopic;
use fjord_protocol::kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use fjord_protocol::kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use fjord_protocol::kafka_protocol::messages::leave_group_request::MemberIdentity;
use fjord_protocol::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use fjord_protocol::kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use fjord_protocol::kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use fjord_protocol::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use fjord_protocol::kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use fjord_protocol::kafka_protocol::messages::*;
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ApiKey, RequestKind, ResponseError, ResponseKind};

const OFFSETS_PARTITIONS: &str = "5";

fn open(dir: &std::path::Path) -> SingleNode {
    let mut values = BTreeMap::new();
    values.insert("data.dir".to_string(), dir.display().to_string());
    // One member's join completes at once; the delay itself is covered by the unit tests.
    values.insert("group.initial.rebalance.delay.ms".into(), "0".into());
    values.insert(
        "offsets.topic.num.partitions".into(),
        OFFSETS_PARTITIONS.into(),
    );
    values.insert("num.partitions".into(), "2".into());
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
        .with_client_id(Some(StrBytes::from_static_str("test-client")));
    match block_on(broker.handle(&header, request)) {
        Outcome::Respond(response) => response,
        other => panic!("{api_key:?}: {other:?}"),
    }
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn gid(v: &str) -> GroupId {
    GroupId(s(v))
}

fn join(
    broker: &Broker,
    version: i16,
    group: &str,
    member_id: &str,
    instance: Option<&str>,
) -> JoinGroupResponse {
    let request = JoinGroupRequest::default()
        .with_group_id(gid(group))
        .with_member_id(s(member_id))
        .with_group_instance_id(instance.map(s))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(Bytes::from_static(b"subscription"))]);
    match call(
        broker,
        ApiKey::JoinGroup,
        version,
        RequestKind::JoinGroup(request),
    ) {
        ResponseKind::JoinGroup(r) => r,
        other => panic!("{other:?}"),
    }
}

fn sync(
    broker: &Broker,
    group: &str,
    member_id: &str,
    instance: Option<&str>,
    generation: i32,
) -> SyncGroupResponse {
    let request = SyncGroupRequest::default()
        .with_group_id(gid(group))
        .with_member_id(s(member_id))
        .with_group_instance_id(instance.map(s))
        .with_generation_id(generation)
        .with_protocol_type(Some(s("consumer")))
        .with_protocol_name(Some(s("range")))
        .with_assignments(vec![SyncGroupRequestAssignment::default()
            .with_member_id(s(member_id))
            .with_assignment(Bytes::from_static(b"mine"))]);
    match call(
        broker,
        ApiKey::SyncGroup,
        5,
        RequestKind::SyncGroup(request),
    ) {
        ResponseKind::SyncGroup(r) => r,
        other => panic!("{other:?}"),
    }
}

fn heartbeat(
    broker: &Broker,
    group: &str,
    member_id: &str,
    instance: Option<&str>,
    generation: i32,
) -> i16 {
    let request = HeartbeatRequest::default()
        .with_group_id(gid(group))
        .with_member_id(s(member_id))
        .with_group_instance_id(instance.map(s))
        .with_generation_id(generation);
    match call(
        broker,
        ApiKey::Heartbeat,
        4,
        RequestKind::Heartbeat(request),
    ) {
        ResponseKind::Heartbeat(r) => r.error_code,
        other => panic!("{other:?}"),
    }
}

fn commit(
    broker: &Broker,
    group: &str,
    member_id: &str,
    instance: Option<&str>,
    generation: i32,
    topic: &str,
    offset: i64,
) -> i16 {
    let request = OffsetCommitRequest::default()
        .with_group_id(gid(group))
        .with_member_id(s(member_id))
        .with_group_instance_id(instance.map(s))
        .with_generation_id_or_member_epoch(generation)
        .with_retention_time_ms(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(1)
                .with_committed_offset(offset)
                .with_committed_leader_epoch(0)
                .with_committed_metadata(Some(s("meta")))])]);
    match call(
        broker,
        ApiKey::OffsetCommit,
        8,
        RequestKind::OffsetCommit(request),
    ) {
        ResponseKind::OffsetCommit(r) => r.topics[0].partitions[0].error_code,
        other => panic!("{other:?}"),
    }
}

/// The committed offset and metadata of partition 1 of `topic`, with OffsetFetch v7.
fn fetch(broker: &Broker, group: &str, topic: &str) -> (i64, String) {
    let request = OffsetFetchRequest::default()
        .with_group_id(gid(group))
        .with_require_stable(true)
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partition_indexes(vec![1])]));
    match call(
        broker,
        ApiKey::OffsetFetch,
        7,
        RequestKind::OffsetFetch(request),
    ) {
        ResponseKind::OffsetFetch(r) => {
            assert_eq!(r.error_code, 0);
            let p = &r.topics[0].partitions[0];
            (
                p.committed_offset,
                p.metadata
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
            )
        }
        other => panic!("{other:?}"),
    }
}

fn create_topic(broker: &Broker, name: &str) -> i16 {
    let request = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(TopicName(s(name)))
        .with_num_partitions(2)
        .with_replication_factor(1)]);
    match call(
        broker,
        ApiKey::CreateTopics,
        7,
        RequestKind::CreateTopics(request),
    ) {
        ResponseKind::CreateTopics(r) => r.topics[0].error_code,
        other => panic!("{other:?}"),
    }
}

/// A dynamic member alone in a new group: MEMBER_ID_REQUIRED, join, sync. Returns its member
/// id and generation.
fn stable_member(broker: &Broker, group: &str) -> (String, i32) {
    let first = join(broker, 9, group, "", None);
    assert_eq!(first.error_code, ResponseError::MemberIdRequired.code());
    let joined = join(broker, 9, group, first.member_id.as_str(), None);
    assert_eq!(joined.error_code, 0);
    let member_id = joined.member_id.to_string();
    assert_eq!(
        sync(broker, group, &member_id, None, joined.generation_id).error_code,
        0
    );
    (member_id, joined.generation_id)
}

#[test]
fn join_validates_and_hands_out_member_ids_first() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path());
    for version in [4, 9] {
        let response = join(&broker, version, "g", "", None);
        assert_eq!(response.error_code, ResponseError::MemberIdRequired.code());
        assert!(
            response.member_id.starts_with("test-client-"),
            "member id from the client id: {}",
            response.member_id.as_str()
        );
    }
    // A member id for a group that does not exist.
    assert_eq!(
        join(&broker, 9, "nope", "made-up", None).error_code,
        ResponseError::UnknownMemberId.code()
    );
    assert_eq!(
        join(&broker, 9, "", "", None).error_code,
        ResponseError::InvalidGroupId.code()
    );
    let too_short = JoinGroupRequest::default()
        .with_group_id(gid("g"))
        .with_session_timeout_ms(1_000)
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default().with_name(s("range"))
        ]);
    let ResponseKind::JoinGroup(response) = call(
        &broker,
        ApiKey::JoinGroup,
        9,
        RequestKind::JoinGroup(too_short),
    ) else {
        panic!()
    };
    assert_eq!(
        response.error_code,
        ResponseError::InvalidSessionTimeout.code()
    );
}

#[test]
fn unknown_members_and_old_generations_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path());
    assert_eq!(create_topic(&broker, "t"), 0);
    let (member, generation) = stable_member(&broker, "g");
    assert_eq!(heartbeat(&broker, "g", &member, None, generation), 0);
    assert_eq!(
        heartbeat(&broker, "g", "stranger", None, generation),
        ResponseError::UnknownMemberId.code()
    );
    assert_eq!(
        heartbeat(&broker, "g", &member, None, generation + 1),
        ResponseError::IllegalGeneration.code()
    );
    assert_eq!(
        heartbeat(&broker, "unknown-group", &member, None, generation),
        ResponseError::UnknownMemberId.code()
    );
    // Commits: only the current generation's members, or standalone commits to empty groups.
    assert_eq!(
        commit(&broker, "g", "stranger", None, generation, "t", 5),
        ResponseError::UnknownMemberId.code()
    );
    assert_eq!(
        commit(&broker, "g", &member, None, generation - 1, "t", 5),
        ResponseError::IllegalGeneration.code()
    );
    assert_eq!(
        commit(&broker, "g", "", None, -1, "t", 5),
        ResponseError::UnknownMemberId.code()
    );
    assert_eq!(
        commit(&broker, "g", &member, None, generation, "missing-topic", 5),
        ResponseError::UnknownTopicOrPartition.code()
    );
    assert_eq!(
        fetch(&broker, "g", "t").0,
        -1,
        "nothing committed by the refused commits"
    );
    assert_eq!(commit(&broker, "g", &member, None, generation, "t", 5), 0);
    assert_eq!(fetch(&broker, "g", "t"), (5, "meta".to_string()));
    // A standalone consumer (manual assignment) commits to a group nobody joined.
    assert_eq!(commit(&broker, "standalone", "", None, -1, "t", 9), 0);
    assert_eq!(fetch(&broker, "standalone", "t").0, 9);
}

#[test]
fn a_restarted_static_member_fences_its_old_incarnation() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path());
    assert_eq!(create_topic(&broker, "t"), 0);
    let first = join(&broker, 9, "g", "", Some("instance-1"));
    assert_eq!(
        first.error_code, 0,
        "static members get no MEMBER_ID_REQUIRED"
    );
    let old = first.member_id.to_string();
    assert_eq!(
        sync(&broker, "g", &old, Some("instance-1"), first.generation_id).error_code,
        0
    );
    // The same instance restarts: new member id, same generation, no rebalance.
    let again = join(&broker, 9, "g", "", Some("instance-1"));
    assert_eq!(again.error_code, 0);
    assert_ne!(again.member_id.as_str(), old);
    assert_eq!(again.generation_id, first.generation_id);
    assert!(
        again.skip_assignment,
        "the restarted leader must not reassign (KIP-814)"
    );
    let new = again.member_id.to_string();
    let assignment = sync(&broker, "g", &new, Some("instance-1"), again.generation_id);
    assert_eq!(assignment.assignment, Bytes::from_static(b"mine"));
    let generation = again.generation_id;
    assert_eq!(
        heartbeat(&broker, "g", &old, Some("instance-1"), generation),
        ResponseError::FencedInstanceId.code()
    );
    assert_eq!(
        commit(&broker, "g", &old, Some("instance-1"), generation, "t", 1),
        ResponseError::FencedInstanceId.code()
    );
    assert_eq!(
        heartbeat(&broker, "g", &new, Some("instance-1"), generation),
        0
    );
    // An operator removes the instance by its id alone (LeaveGroup v3+).
    let leave = LeaveGroupRequest::default()
        .with_group_id(gid("g"))
        .with_members(vec![
            MemberIdentity::default().with_group_instance_id(Some(s("instance-1")))
        ]);
    let ResponseKind::LeaveGroup(left) = call(
        &broker,
        ApiKey::LeaveGroup,
        5,
        RequestKind::LeaveGroup(leave),
    ) else {
        panic!()
    };
    assert_eq!(left.members[0].error_code, 0);
    assert_eq!(
        heartbeat(&broker, "g", &new, Some("instance-1"), generation),
        ResponseError::UnknownMemberId.code()
    );
}

#[test]
fn groups_and_offsets_come_back_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let (member, generation) = {
        let broker = open(dir.path());
        assert_eq!(create_topic(&broker, "t"), 0);
        let (member, generation) = stable_member(&broker, "g");
        assert_eq!(commit(&broker, "g", &member, None, generation, "t", 41), 0);
        assert_eq!(commit(&broker, "g", &member, None, generation, "t", 42), 0);
        assert_eq!(commit(&broker, "simple", "", None, -1, "t", 7), 0);
        // No close(): the process dies with the records written but not flushed.
        (member, generation)
    };
    let broker = open(dir.path());
    assert_eq!(fetch(&broker, "g", "t"), (42, "meta".to_string()));
    assert_eq!(fetch(&broker, "simple", "t").0, 7);
    // The group is Stable again with its member, which resumes by heartbeating.
    let request = DescribeGroupsRequest::default().with_groups(vec![gid("g")]);
    let ResponseKind::DescribeGroups(described) = call(
        &broker,
        ApiKey::DescribeGroups,
        5,
        RequestKind::DescribeGroups(request),
    ) else {
        panic!()
    };
    let group = &described.groups[0];
    assert_eq!(group.group_state.as_str(), "Stable");
    assert_eq!(group.protocol_data.as_str(), "range");
    assert_eq!(group.members.len(), 1);
    assert_eq!(group.members[0].member_id.as_str(), member);
    assert_eq!(
        group.members[0].member_assignment,
        Bytes::from_static(b"mine")
    );
    assert_eq!(heartbeat(&broker, "g", &member, None, generation), 0);
    assert_eq!(commit(&broker, "g", &member, None, generation, "t", 43), 0);
}

#[test]
fn consumer_offsets_is_internal_and_only_the_coordinator_writes_it() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path());
    let request = FindCoordinatorRequest::default().with_key(s("g"));
    let ResponseKind::FindCoordinator(found) = call(
        &broker,
        ApiKey::FindCoordinator,
        3,
        RequestKind::FindCoordinator(request),
    ) else {
        panic!()
    };
    assert_eq!((found.error_code, found.node_id.0), (0, 1));
    let request = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(TopicName(s("__consumer_offsets")))),
    ]));
    let ResponseKind::Metadata(metadata) = call(
        &broker,
        ApiKey::Metadata,
        12,
        RequestKind::Metadata(request),
    ) else {
        panic!()
    };
    let topic = &metadata.topics[0];
    assert_eq!(topic.error_code, 0);
    assert!(topic.is_internal);
    assert_eq!(topic.partitions.len().to_string(), OFFSETS_PARTITIONS);
    let produce = ProduceRequest::default()
        .with_acks(-1)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(s("__consumer_offsets")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_records(Some(Bytes::from(
                    fjord_protocol::batch_builder::encode_values(0, 1, b"x"),
                )))])]);
    let ResponseKind::Produce(produced) =
        call(&broker, ApiKey::Produce, 9, RequestKind::Produce(produce))
    else {
        panic!()
    };
    assert_eq!(
        produced.responses[0].partition_responses[0].error_code,
        ResponseError::InvalidTopicException.code()
    );
    assert_eq!(
        create_topic(&broker, "__consumer_offsets"),
        ResponseError::InvalidRequest.code()
    );
    let delete = DeleteTopicsRequest::default().with_topics(vec![
        DeleteTopicState::default().with_name(Some(TopicName(s("__consumer_offsets"))))
    ]);
    let ResponseKind::DeleteTopics(deleted) = call(
        &broker,
        ApiKey::DeleteTopics,
        6,
        RequestKind::DeleteTopics(delete),
    ) else {
        panic!()
    };
    assert_eq!(
        deleted.responses[0].error_code,
        ResponseError::InvalidRequest.code()
    );
}

#[test]
fn find_coordinator_answers_batches_for_groups_and_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path());
    let lookup = |key_type: i8| {
        let request = FindCoordinatorRequest::default()
            .with_key_type(key_type)
            .with_coordinator_keys(vec![s("a"), s("b")]);
        match call(
            &broker,
            ApiKey::FindCoordinator,
            6,
            RequestKind::FindCoordinator(request),
        ) {
            ResponseKind::FindCoordinator(r) => r.coordinators,
            other => panic!("{other:?}"),
        }
    };
    let groups = lookup(0);
    assert_eq!(groups.len(), 2);
    assert!(groups.iter().all(|c| c.error_code == 0 && c.node_id.0 == 1));
    assert_eq!(groups[1].key.as_str(), "b");
    let transactions = lookup(1);
    assert_eq!(transactions.len(), 2);
    assert!(transactions
        .iter()
        .all(|c| c.error_code == 0 && c.node_id.0 == 1));
    assert!(lookup(7)
        .iter()
        .all(|c| c.error_code == ResponseError::InvalidRequest.code()));
}

#[test]
fn list_describe_and_delete_groups() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path());
    assert_eq!(create_topic(&broker, "t"), 0);
    let (member, generation) = stable_member(&broker, "active");
    assert_eq!(commit(&broker, "idle", "", None, -1, "t", 3), 0);
    let list = |states: &[&str]| {
        let request = ListGroupsRequest::default()
            .with_states_filter(states.iter().map(|x| s(x)).collect())
            .with_types_filter(vec![s("classic")]);
        match call(
            &broker,
            ApiKey::ListGroups,
            5,
            RequestKind::ListGroups(request),
        ) {
            ResponseKind::ListGroups(r) => r
                .groups
                .iter()
                .map(|g| (g.group_id.to_string(), g.group_state.to_string()))
                .collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        list(&[]),
        vec![
            ("active".into(), "Stable".into()),
            ("idle".into(), "Empty".into())
        ]
    );
    assert_eq!(
        list(&["empty"]),
        vec![("idle".to_string(), "Empty".to_string())]
    );
    let describe = |version: i16| {
        let request = DescribeGroupsRequest::default().with_groups(vec![gid("missing")]);
        match call(
            &broker,
            ApiKey::DescribeGroups,
            version,
            RequestKind::DescribeGroups(request),
        ) {
            ResponseKind::DescribeGroups(r) => r.groups[0].clone(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(describe(5).group_state.as_str(), "Dead");
    assert_eq!(
        describe(6).error_code,
        ResponseError::GroupIdNotFound.code()
    );
    let delete = |group: &str| {
        let request = DeleteGroupsRequest::default().with_groups_names(vec![gid(group)]);
        match call(
            &broker,
            ApiKey::DeleteGroups,
            2,
            RequestKind::DeleteGroups(request),
        ) {
            ResponseKind::DeleteGroups(r) => r.results[0].error_code,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(delete("active"), ResponseError::NonEmptyGroup.code());
    assert_eq!(delete("idle"), 0);
    assert_eq!(delete("idle"), ResponseError::GroupIdNotFound.code());
    assert_eq!(fetch(&broker, "idle", "t").0, -1);
    // The last member leaves (LeaveGroup v1: one member); now the group can be deleted.
    let leave = LeaveGroupRequest::default()
        .with_group_id(gid("active"))
        .with_member_id(s(&member));
    let ResponseKind::LeaveGroup(left) = call(
        &broker,
        ApiKey::LeaveGroup,
        1,
        RequestKind::LeaveGroup(leave),
    ) else {
        panic!()
    };
    assert_eq!(left.error_code, 0);
    assert_eq!(
        heartbeat(&broker, "active", &member, None, generation),
        ResponseError::UnknownMemberId.code()
    );
    assert_eq!(delete("active"), 0);
}

#[test]
fn deleting_a_topic_deletes_its_committed_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path());
    assert_eq!(create_topic(&broker, "doomed"), 0);
    assert_eq!(commit(&broker, "g", "", None, -1, "doomed", 3), 0);
    let delete = DeleteTopicsRequest::default().with_topic_names(vec![TopicName(s("doomed"))]);
    call(
        &broker,
        ApiKey::DeleteTopics,
        5,
        RequestKind::DeleteTopics(delete),
    );
    assert_eq!(create_topic(&broker, "doomed"), 0);
    assert_eq!(
        fetch(&broker, "g", "doomed").0,
        -1,
        "a new topic of the same name starts clean"
    );
}

/// Coordinator failover (Kafka `onResignation` / `onElection`): a `__consumer_offsets`
/// partition led elsewhere answers NOT_COORDINATOR and forgets its groups; leading it again
/// reloads everything committed from the log.
#[test]
fn a_shard_unloads_on_resignation_and_reloads_from_the_log_on_election() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path());
    assert_eq!(create_topic(&node, "failover"), 0);
    // A standalone consumer (no generation) commits.
    assert_eq!(commit(&node, "g-failover", "", None, -1, "failover", 42), 0);
    assert_eq!(fetch(&node, "g-failover", "failover").0, 42);
    let coordinator = node.group_coordinator();
    let partition = coordinator.partition_for("g-failover");

    // Another broker leads the partition now.
    coordinator.sync_leadership(&|p| p != partition, &[], 0);
    assert!(!coordinator.owns_partition(partition));
    let request = OffsetFetchRequest::default()
        .with_group_id(gid("g-failover"))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(s("failover")))
            .with_partition_indexes(vec![1])]));
    match call(
        &node,
        ApiKey::OffsetFetch,
        7,
        RequestKind::OffsetFetch(request),
    ) {
        ResponseKind::OffsetFetch(r) => {
            assert_eq!(r.error_code, ResponseError::NotCoordinator.code())
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        commit(&node, "g-failover", "", None, -1, "failover", 50),
        ResponseError::NotCoordinator.code()
    );
    // Other groups' shards keep working.
    let other_group = (0..1000)
        .map(|i| format!("other-{i}"))
        .find(|g| coordinator.partition_for(g) != partition)
        .unwrap();
    assert_eq!(commit(&node, &other_group, "", None, -1, "failover", 7), 0);

    // Elected again: the shard is rebuilt from the log, the commit is back.
    coordinator.sync_leadership(&|_| true, &[partition], 0);
    assert!(coordinator.owns_partition(partition));
    assert_eq!(fetch(&node, "g-failover", "failover").0, 42);
    assert_eq!(fetch(&node, &other_group, "failover").0, 7);
}
