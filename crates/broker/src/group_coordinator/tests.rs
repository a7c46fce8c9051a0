//! State machine tests: one shard, an in-memory log, and time moved by hand.

use std::sync::atomic::AtomicBool;

use fjord_protocol::kafka_protocol::messages::leave_group_request::MemberIdentity;
use fjord_protocol::kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use fjord_protocol::kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use fjord_protocol::kafka_protocol::messages::{GroupId, TopicName};
use tokio::sync::oneshot;
use tokio::sync::oneshot::error::TryRecvError;

use super::classic_group::ClassicGroupState;
use super::*;
use crate::testing::CompleteNow;

const SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 30_000;
const DELAY_MS: i32 = 3_000;
const START_MS: i64 = 1_000_000;

/// One batch of the in-memory log: records (transactional with a producer) or a marker.
#[derive(Debug, Clone)]
enum MemoryBatch {
    Records {
        base_offset: i64,
        producer: Option<TransactionalProducer>,
        records: Vec<CoordinatorRecord>,
    },
    Marker {
        offset: i64,
        producer: TransactionalProducer,
        commit: bool,
    },
}

#[derive(Default)]
struct MemoryLog {
    batches: Mutex<Vec<MemoryBatch>>,
    fail: AtomicBool,
    /// Refuses transactional batches with this error (a fenced producer epoch).
    reject_transactional: Mutex<Option<ResponseError>>,
    /// What commit waits end with (`None`: committed).
    commit_error: Mutex<Option<ResponseError>>,
}

impl CoordinatorLog for MemoryLog {
    fn append_batch(
        &self,
        _: i32,
        records: &[CoordinatorRecord],
        producer: Option<TransactionalProducer>,
        _: i64,
    ) -> Result<i64, AppendError> {
        if self.fail.load(Ordering::Relaxed) {
            return Err(AppendError::Storage("disk on fire".into()));
        }
        if let (Some(_), Some(error)) = (producer, *self.reject_transactional.lock()) {
            return Err(AppendError::Rejected(error));
        }
        let mut batches = self.batches.lock();
        let base_offset = Self::log_end_offset(&batches);
        batches.push(MemoryBatch::Records {
            base_offset,
            producer,
            records: records.to_vec(),
        });
        Ok(base_offset)
    }

    fn wait_for_commit(&self, _: i32) -> CommitFuture {
        let answer = match *self.commit_error.lock() {
            Some(error) => Err(error),
            None => Ok(()),
        };
        Box::pin(std::future::ready(answer))
    }
}

impl MemoryLog {
    fn log_end_offset(batches: &[MemoryBatch]) -> i64 {
        match batches.last() {
            None => 0,
            Some(MemoryBatch::Records {
                base_offset,
                records,
                ..
            }) => base_offset + records.len() as i64,
            Some(MemoryBatch::Marker { offset, .. }) => offset + 1,
        }
    }

    fn records(&self) -> Vec<CoordinatorRecord> {
        self.batches
            .lock()
            .iter()
            .flat_map(|batch| match batch {
                MemoryBatch::Records { records, .. } => records.clone(),
                MemoryBatch::Marker { .. } => Vec::new(),
            })
            .collect()
    }

    /// What the transaction marker writer appends when the producer's transaction ends.
    fn write_marker(&self, producer_id: i64, producer_epoch: i16, commit: bool) {
        let mut batches = self.batches.lock();
        let offset = Self::log_end_offset(&batches);
        batches.push(MemoryBatch::Marker {
            offset,
            producer: TransactionalProducer {
                producer_id,
                producer_epoch,
            },
            commit,
        });
    }

    /// The log as the partition would hold it: real batches (plain, transactional, control)
    /// with their offsets.
    fn to_bytes(&self) -> Bytes {
        let mut out = Vec::new();
        for batch in self.batches.lock().iter() {
            let (base_offset, mut bytes) = match batch {
                MemoryBatch::Records {
                    base_offset,
                    producer,
                    records,
                } => (
                    *base_offset,
                    persistence::encode_batch_with_producer(
                        records,
                        producer.map(|p| (p.producer_id, p.producer_epoch)),
                        START_MS,
                    ),
                ),
                MemoryBatch::Marker {
                    offset,
                    producer,
                    commit,
                } => (
                    *offset,
                    fjord_protocol::control::encode_end_txn_marker(
                        producer.producer_id,
                        producer.producer_epoch,
                        fjord_protocol::control::EndTxnMarker {
                            commit: *commit,
                            coordinator_epoch: 0,
                        },
                        START_MS,
                    ),
                ),
            };
            fjord_protocol::records::set_base_offset(&mut bytes, base_offset);
            out.extend_from_slice(&bytes);
        }
        Bytes::from(out)
    }
}

fn config() -> GroupCoordinatorConfig {
    GroupCoordinatorConfig {
        initial_rebalance_delay_ms: DELAY_MS,
        min_session_timeout_ms: 6_000,
        max_session_timeout_ms: 1_800_000,
        group_max_size: 10,
        offsets_retention_ms: 60_000,
        offsets_retention_check_interval_ms: 600_000,
        offset_metadata_max_bytes: 16,
        new_member_join_timeout_ms: NEW_MEMBER_JOIN_TIMEOUT_MS,
        batch_bytes_max: 1 << 20,
        groups_count_max: 100,
        pending_transactional_offsets_max: 4,
        consumer_heartbeat_interval_ms: 500,
        consumer_session_timeout_ms: 6_000,
        consumer_assignor: "uniform".to_string(),
    }
}

struct Harness {
    shard: GroupCoordinatorShard,
    log: Arc<MemoryLog>,
    now: i64,
}

fn ctx(api_version: i16) -> RequestContext {
    RequestContext {
        api_version,
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
    }
}

fn protocols(names: &[&str], metadata: &'static [u8]) -> Vec<Protocol> {
    names
        .iter()
        .map(|n| Protocol {
            name: n.to_string(),
            metadata: Bytes::from_static(metadata),
        })
        .collect()
}

fn join_request(member_id: &str, instance: Option<&str>) -> JoinRequest {
    JoinRequest {
        group_id: "g".into(),
        member_id: member_id.into(),
        group_instance_id: instance.map(str::to_string),
        protocol_type: "consumer".into(),
        protocols: protocols(&["range"], b"sub"),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        reason: None,
    }
}

fn answered<T>(rx: &mut oneshot::Receiver<T>) -> Option<T> {
    match rx.try_recv() {
        Ok(value) => Some(value),
        Err(TryRecvError::Empty) => None,
        Err(TryRecvError::Closed) => panic!("request dropped without an answer"),
    }
}

impl Harness {
    fn new() -> Self {
        Self::with_config(config())
    }

    fn with_config(config: GroupCoordinatorConfig) -> Self {
        let log = Arc::new(MemoryLog::default());
        let groups_count = Arc::new(GroupsCount::new(config.groups_count_max));
        let shard =
            GroupCoordinatorShard::new(Arc::new(config), log.clone(), 0, groups_count, START_MS);
        Self {
            shard,
            log,
            now: START_MS,
        }
    }

    /// Moves time forward, firing each timer at its own deadline, as the timer task does.
    fn advance(&mut self, ms: i64) {
        let target = self.now + ms;
        while let Some(deadline) = self.shard.next_deadline_ms().filter(|d| *d <= target) {
            self.now = self.now.max(deadline);
            self.shard.poll_timers(self.now);
        }
        self.now = target;
        self.shard.poll_timers(self.now);
    }

    fn join(&mut self, request: JoinRequest, version: i16) -> oneshot::Receiver<JoinGroupResponse> {
        let rx = self.shard.join_group(&ctx(version), request, self.now);
        self.shard.poll_timers(self.now);
        rx
    }

    /// A dynamic member's two JoinGroups (KIP-394); returns its member id and parked join.
    fn join_dynamic(&mut self) -> (String, oneshot::Receiver<JoinGroupResponse>) {
        let mut first = self.join(join_request("", None), 5);
        let response = answered(&mut first).expect("first join answers at once");
        assert_eq!(response.error_code, ResponseError::MemberIdRequired.code());
        let member_id = response.member_id.to_string();
        assert!(member_id.starts_with("client-"), "{member_id}");
        let rx = self.join(join_request(&member_id, None), 5);
        (member_id, rx)
    }

    fn sync(
        &mut self,
        member_id: &str,
        generation: i32,
        assignments: &[(&str, &'static [u8])],
    ) -> oneshot::Receiver<SyncGroupResponse> {
        let request = SyncGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_member_id(StrBytes::from_string(member_id.to_string()))
            .with_generation_id(generation)
            .with_assignments(
                assignments
                    .iter()
                    .map(|(m, a)| {
                        SyncGroupRequestAssignment::default()
                            .with_member_id(StrBytes::from_string(m.to_string()))
                            .with_assignment(Bytes::from_static(a))
                    })
                    .collect(),
            );
        let rx = self.shard.sync_group(&request, self.now);
        self.shard.poll_timers(self.now);
        rx
    }

    /// Moves time forward while `members` keep heartbeating (errors ignored: a member in a
    /// rebalance gets REBALANCE_IN_PROGRESS but keeps its session).
    fn advance_heartbeating(&mut self, ms: i64, members: &[(&str, i32)]) {
        let step = i64::from(SESSION_MS) / 3;
        let mut left = ms;
        while left > 0 {
            let now = left.min(step);
            self.advance(now);
            left -= now;
            for (member, generation) in members {
                let _ = self.heartbeat(member, *generation);
            }
        }
    }

    fn heartbeat(&mut self, member_id: &str, generation: i32) -> Result<(), ResponseError> {
        self.shard
            .heartbeat("g", member_id, None, generation, self.now)
    }

    fn state(&self) -> ClassicGroupState {
        self.shard
            .groups()
            .classic_group("g")
            .map(|g| g.state())
            .unwrap_or(ClassicGroupState::Dead)
    }

    fn commit(&mut self, member_id: &str, generation: i32, offset: i64, api_version: i16) -> i16 {
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_member_id(StrBytes::from_string(member_id.to_string()))
            .with_generation_id_or_member_epoch(generation)
            .with_retention_time_ms(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(offset)
                    .with_committed_leader_epoch(2)
                    .with_committed_metadata(Some(StrBytes::from_static_str("m")))])]);
        let response = self.shard.commit_offsets(&request, api_version, self.now);
        response[0].partitions[0].error_code
    }

    fn committed(&self) -> Option<i64> {
        self.shard
            .offsets()
            .get("g", "t", 0)
            .map(|o| o.committed_offset)
    }

    /// Two dynamic members through the initial delay to a Stable generation 1.
    fn stable_pair(&mut self) -> (String, String) {
        let (a, mut ja) = self.join_dynamic();
        let (b, mut jb) = self.join_dynamic();
        // b joined during the delay, which extends it once.
        self.advance(2 * i64::from(DELAY_MS));
        let ra = answered(&mut ja).expect("join phase complete");
        let rb = answered(&mut jb).expect("join phase complete");
        assert_eq!((ra.generation_id, rb.generation_id), (1, 1));
        let leader = ra.leader.to_string();
        let (leader, follower) = if leader == a { (a, b) } else { (b, a) };
        let mut sf = self.sync(&follower, 1, &[]);
        let mut sl = self.sync(&leader, 1, &[(&leader, b"L"), (&follower, b"F")]);
        assert_eq!(
            answered(&mut sl).unwrap().assignment,
            Bytes::from_static(b"L")
        );
        assert_eq!(
            answered(&mut sf).unwrap().assignment,
            Bytes::from_static(b"F")
        );
        assert_eq!(self.state(), ClassicGroupState::Stable);
        (leader, follower)
    }
}

#[test]
fn java_hash_code_and_partition_for_match_kafka() {
    assert_eq!(java_string_hash_code(""), 0);
    assert_eq!(java_string_hash_code("abc"), 96354);
    // Famous for hashing to Integer.MIN_VALUE, which Kafka's Utils.abs maps to 0.
    assert_eq!(java_string_hash_code("polygenelubricants"), i32::MIN);
    assert_eq!(partition_for("polygenelubricants", 50), 0);
    // Negative hash: abs first. "group-1".hashCode() is positive, "zzzzzzzz" overflows.
    let h = java_string_hash_code("zzzzzzzz");
    assert!(h < 0);
    assert_eq!(partition_for("zzzzzzzz", 50), h.abs() % 50);
    // Non-ASCII: UTF-16 code units, not bytes ("é" is one unit, 0xE9).
    assert_eq!(java_string_hash_code("é"), 0xE9);
}

#[test]
fn first_join_gets_member_id_required_then_the_initial_delay_applies() {
    let mut h = Harness::new();
    let (member_id, mut join) = h.join_dynamic();
    assert_eq!(h.state(), ClassicGroupState::PreparingRebalance);
    h.advance(i64::from(DELAY_MS) - 1);
    assert!(
        answered(&mut join).is_none(),
        "still within the initial delay"
    );
    h.advance(1);
    let response = answered(&mut join).unwrap();
    assert_eq!(response.error_code, 0);
    assert_eq!(response.generation_id, 1);
    assert_eq!(response.leader.as_str(), member_id);
    assert_eq!(
        response
            .protocol_name
            .as_ref()
            .map(|s| s.to_string())
            .as_deref(),
        Some("range")
    );
    assert_eq!(response.members.len(), 1, "the leader gets the member list");
    assert_eq!(h.state(), ClassicGroupState::CompletingRebalance);
}

#[test]
fn a_member_joining_during_the_delay_extends_it() {
    let mut h = Harness::new();
    let (_, mut a) = h.join_dynamic();
    h.advance(i64::from(DELAY_MS) - 10);
    let (_, mut b) = h.join_dynamic();
    h.advance(10);
    assert!(
        answered(&mut a).is_none(),
        "delay extended by the new member"
    );
    h.advance(i64::from(DELAY_MS));
    assert_eq!(answered(&mut a).unwrap().generation_id, 1);
    assert_eq!(answered(&mut b).unwrap().generation_id, 1);
}

#[test]
fn sync_distributes_the_leaders_assignment_and_persists_the_group() {
    let mut h = Harness::new();
    let (leader, follower) = h.stable_pair();
    let records = h.log.records();
    let Some(CoordinatorRecord::GroupMetadata {
        value: Some(value), ..
    }) = records.last()
    else {
        panic!("no group metadata record: {records:?}");
    };
    assert_eq!(value.generation, 1);
    assert_eq!(value.leader.as_deref(), Some(leader.as_str()));
    let assignment_of = |id: &str| {
        value
            .members
            .iter()
            .find(|m| m.member_id == id)
            .map(|m| m.assignment.clone())
    };
    assert_eq!(assignment_of(&leader), Some(Bytes::from_static(b"L")));
    assert_eq!(assignment_of(&follower), Some(Bytes::from_static(b"F")));
    // Stable: a late SyncGroup gets the stored assignment at once.
    let mut again = h.sync(&follower, 1, &[]);
    assert_eq!(
        answered(&mut again).unwrap().assignment,
        Bytes::from_static(b"F")
    );
}

#[test]
fn heartbeat_and_sync_fence_unknown_members_and_old_generations() {
    let mut h = Harness::new();
    assert_eq!(
        h.heartbeat("nobody", 0),
        Err(ResponseError::UnknownMemberId)
    );
    let (leader, _) = h.stable_pair();
    assert_eq!(h.heartbeat(&leader, 1), Ok(()));
    assert_eq!(
        h.heartbeat(&leader, 0),
        Err(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        h.heartbeat("stranger", 1),
        Err(ResponseError::UnknownMemberId)
    );
    let mut sync = h.sync(&leader, 7, &[]);
    assert_eq!(
        answered(&mut sync).unwrap().error_code,
        ResponseError::IllegalGeneration.code()
    );
    let mut sync = h.sync("stranger", 1, &[]);
    assert_eq!(
        answered(&mut sync).unwrap().error_code,
        ResponseError::UnknownMemberId.code()
    );
    // A join with a member id of a group that does not exist: start over.
    let mut other = h.join(
        JoinRequest {
            group_id: "other".into(),
            ..join_request("ghost", None)
        },
        5,
    );
    assert_eq!(
        answered(&mut other).unwrap().error_code,
        ResponseError::UnknownMemberId.code()
    );
}

#[test]
fn session_expiry_removes_the_member_and_the_rest_rebalance() {
    let mut h = Harness::new();
    let (leader, follower) = h.stable_pair();
    // Only the leader keeps heartbeating.
    h.advance(i64::from(SESSION_MS) * 4 / 10);
    assert_eq!(h.heartbeat(&leader, 1), Ok(()));
    h.advance(i64::from(SESSION_MS) * 4 / 10);
    assert_eq!(h.heartbeat(&leader, 1), Ok(()));
    assert_eq!(h.state(), ClassicGroupState::Stable);
    h.advance(i64::from(SESSION_MS) * 2 / 10);
    assert_eq!(h.state(), ClassicGroupState::PreparingRebalance);
    assert!(h
        .shard
        .groups()
        .classic_group("g")
        .unwrap()
        .member(&follower)
        .is_none());
    assert_eq!(
        h.heartbeat(&leader, 1),
        Err(ResponseError::RebalanceInProgress)
    );
    // The only member left rejoins: the join phase completes at once (not an initial rebalance).
    let mut rejoin = h.join(join_request(&leader, None), 5);
    let response = answered(&mut rejoin).unwrap();
    assert_eq!(response.generation_id, 2);
    assert_eq!(response.members.len(), 1);
}

#[test]
fn rebalance_timeout_completes_the_join_with_the_members_that_rejoined() {
    let mut h = Harness::new();
    let (leader, follower) = h.stable_pair();
    // The leader rejoining a Stable group starts a rebalance.
    let mut rejoin = h.join(join_request(&leader, None), 5);
    let early = answered(&mut rejoin);
    assert!(early.is_none(), "{early:?}");
    // The follower learns about it from its heartbeat, keeps its session, but never rejoins.
    assert_eq!(
        h.heartbeat(&follower, 1),
        Err(ResponseError::RebalanceInProgress)
    );
    h.advance_heartbeating(i64::from(REBALANCE_MS) - 1, &[(&follower, 1)]);
    assert!(answered(&mut rejoin).is_none());
    h.advance(1);
    let response = answered(&mut rejoin).unwrap();
    assert_eq!(response.generation_id, 2);
    assert_eq!(response.members.len(), 1, "the follower was dropped");
    assert_eq!(
        h.heartbeat(&follower, 2),
        Err(ResponseError::UnknownMemberId)
    );
}

#[test]
fn leave_moves_the_group_to_a_rebalance_and_an_empty_group_is_persisted() {
    let mut h = Harness::new();
    let (leader, follower) = h.stable_pair();
    let leave = |member: &str| {
        LeaveGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_members(vec![
                MemberIdentity::default().with_member_id(StrBytes::from_string(member.to_string()))
            ])
    };
    let response = h.shard.leave_group(&leave(&follower), h.now);
    assert_eq!(response.members[0].error_code, 0);
    assert_eq!(h.state(), ClassicGroupState::PreparingRebalance);
    let response = h.shard.leave_group(&leave("stranger"), h.now);
    assert_eq!(
        response.members[0].error_code,
        ResponseError::UnknownMemberId.code()
    );
    h.shard.leave_group(&leave(&leader), h.now);
    h.advance(0);
    assert_eq!(h.state(), ClassicGroupState::Empty);
    let Some(CoordinatorRecord::GroupMetadata {
        value: Some(value), ..
    }) = h.log.records().last().cloned()
    else {
        panic!("empty group not persisted");
    };
    assert!(value.members.is_empty());
    assert_eq!(value.generation, 2);
}

#[test]
fn protocol_type_and_protocols_must_be_compatible() {
    let mut h = Harness::new();
    let (_, _join) = h.join_dynamic();
    let mut other_type = h.join(
        JoinRequest {
            protocol_type: "connect".into(),
            ..join_request("", None)
        },
        5,
    );
    assert_eq!(
        answered(&mut other_type).unwrap().error_code,
        ResponseError::InconsistentGroupProtocol.code()
    );
    let mut no_common = h.join(
        JoinRequest {
            protocols: protocols(&["roundrobin"], b"sub"),
            ..join_request("", None)
        },
        5,
    );
    assert_eq!(
        answered(&mut no_common).unwrap().error_code,
        ResponseError::InconsistentGroupProtocol.code()
    );
}

#[test]
fn a_refused_first_join_does_not_leave_a_group_behind() {
    let mut h = Harness::new();
    let mut refused = h.join(
        JoinRequest {
            protocols: Vec::new(),
            ..join_request("", None)
        },
        5,
    );
    assert_eq!(
        answered(&mut refused).unwrap().error_code,
        ResponseError::InconsistentGroupProtocol.code()
    );
    assert!(h.shard.groups().group("g").is_none());
    // MEMBER_ID_REQUIRED keeps it: the member is about to come back.
    let mut first = h.join(join_request("", None), 5);
    assert_eq!(
        answered(&mut first).unwrap().error_code,
        ResponseError::MemberIdRequired.code()
    );
    assert!(h.shard.groups().group("g").is_some());
}

#[test]
fn group_max_size_is_enforced() {
    let mut h = Harness::with_config(GroupCoordinatorConfig {
        group_max_size: 2,
        ..config()
    });
    let (_, _a) = h.join_dynamic();
    let (_, _b) = h.join_dynamic();
    let mut first = h.join(join_request("", None), 5);
    let id = answered(&mut first).unwrap().member_id.to_string();
    let mut third = h.join(join_request(&id, None), 5);
    assert_eq!(
        answered(&mut third).unwrap().error_code,
        ResponseError::GroupMaxSizeReached.code()
    );
}

#[test]
fn static_member_restart_keeps_its_assignment_without_a_rebalance() {
    let mut h = Harness::new();
    let mut j1 = h.join(join_request("", Some("i1")), 9);
    let mut j2 = h.join(join_request("", Some("i2")), 9);
    h.advance(2 * i64::from(DELAY_MS));
    let r1 = answered(&mut j1).unwrap();
    let r2 = answered(&mut j2).unwrap();
    let (m1, m2) = (r1.member_id.to_string(), r2.member_id.to_string());
    assert!(
        m1.starts_with("i1-"),
        "static member ids start with the instance id"
    );
    let leader = r1.leader.to_string();
    let follower = if leader == m1 { &m2 } else { &m1 };
    let mut sf = h.sync(follower, 1, &[]);
    let mut sl = h.sync(&leader, 1, &[(&m1, b"one"), (&m2, b"two")]);
    assert_eq!(answered(&mut sf).unwrap().error_code, 0);
    assert_eq!(answered(&mut sl).unwrap().error_code, 0);
    assert_eq!(h.state(), ClassicGroupState::Stable);

    // i2 restarts: a new JoinGroup without member id.
    let mut rejoin = h.join(join_request("", Some("i2")), 9);
    let response = answered(&mut rejoin).expect("answered at once: no rebalance");
    assert_eq!(response.error_code, 0);
    assert_eq!(response.generation_id, 1, "generation unchanged");
    let new_id = response.member_id.to_string();
    assert_ne!(new_id, m2);
    assert_eq!(h.state(), ClassicGroupState::Stable);
    let mut sync = h.sync(&new_id, 1, &[]);
    assert_eq!(
        answered(&mut sync).unwrap().assignment,
        Bytes::from_static(b"two")
    );
    // The old incarnation is fenced.
    assert_eq!(
        h.shard.heartbeat("g", &m2, Some("i2"), 1, h.now),
        Err(ResponseError::FencedInstanceId)
    );
    assert_eq!(
        h.shard.heartbeat("g", &new_id, Some("i2"), 1, h.now),
        Ok(())
    );

    // A static member leaves by instance id alone (admin removal).
    let leave = LeaveGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g")))
        .with_members(vec![
            MemberIdentity::default().with_group_instance_id(Some(StrBytes::from_static_str("i2")))
        ]);
    assert_eq!(h.shard.leave_group(&leave, h.now).members[0].error_code, 0);
    assert_eq!(h.state(), ClassicGroupState::PreparingRebalance);
}

#[test]
fn static_members_survive_the_join_deadline_dynamic_ones_do_not() {
    let mut h = Harness::new();
    let mut js = h.join(join_request("", Some("s")), 5);
    let (dynamic, mut jd) = h.join_dynamic();
    h.advance(2 * i64::from(DELAY_MS));
    let static_id = answered(&mut js).unwrap().member_id.to_string();
    let leader = answered(&mut jd).unwrap().leader.to_string();
    let follower = if leader == static_id {
        &dynamic
    } else {
        &static_id
    };
    let mut sf = h.sync(follower, 1, &[]);
    let mut sl = h.sync(&leader, 1, &[]);
    let _ = (answered(&mut sf), answered(&mut sl));
    assert_eq!(h.state(), ClassicGroupState::Stable);
    // A third member joins; the existing members keep heartbeating but never rejoin.
    let (_, mut third) = h.join_dynamic();
    h.advance_heartbeating(i64::from(REBALANCE_MS), &[(&static_id, 1), (&dynamic, 1)]);
    let response = answered(&mut third).unwrap();
    assert_eq!(response.generation_id, 2);
    let group = h.shard.groups().classic_group("g").unwrap();
    assert!(group.has_member(&static_id), "static members stay");
    assert!(
        !group.has_member(&dynamic),
        "dynamic members that did not rejoin go"
    );
}

#[test]
fn offset_commits_are_validated_like_kafka() {
    let mut h = Harness::new();
    // A standalone consumer (generation -1, no member id) creates a simple group.
    assert_eq!(h.commit("", -1, 5, 8), 0);
    assert_eq!(h.committed(), Some(5));
    assert!(h
        .shard
        .groups()
        .classic_group("g")
        .unwrap()
        .is_simple_group());
    // Unknown member, with a generation: the member must be known.
    assert_eq!(
        h.commit("stranger", 1, 6, 8),
        ResponseError::UnknownMemberId.code()
    );
    let (leader, _) = h.stable_pair();
    assert_eq!(h.commit(&leader, 1, 7, 8), 0);
    assert_eq!(h.committed(), Some(7));
    assert_eq!(
        h.commit(&leader, 2, 8, 8),
        ResponseError::IllegalGeneration.code()
    );
    // A standalone commit while the group has members is refused.
    assert_eq!(
        h.commit("", -1, 9, 8),
        ResponseError::UnknownMemberId.code()
    );
    assert_eq!(h.committed(), Some(7));
    // Metadata above offset.metadata.max.bytes.
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g")))
        .with_member_id(StrBytes::from_string(leader.clone()))
        .with_generation_id_or_member_epoch(1)
        .with_retention_time_ms(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_committed_offset(10)
                .with_committed_metadata(Some(StrBytes::from_string(
                    "x".repeat(17),
                )))])]);
    let response = h.shard.commit_offsets(&request, 8, h.now);
    assert_eq!(
        response[0].partitions[0].error_code,
        ResponseError::OffsetMetadataTooLarge.code()
    );
    // Commits during CompletingRebalance: the member must wait for its assignment.
    let mut rejoin = h.join(join_request(&leader, None), 5);
    // The follower neither heartbeats nor rejoins: its session ends the join phase.
    h.advance(i64::from(SESSION_MS));
    let generation = answered(&mut rejoin).unwrap().generation_id;
    assert_eq!(h.state(), ClassicGroupState::CompletingRebalance);
    assert_eq!(
        h.commit(&leader, generation, 11, 8),
        ResponseError::RebalanceInProgress.code()
    );
}

#[test]
fn commit_to_an_unknown_group_with_a_generation_is_refused_by_version() {
    let mut h = Harness::new();
    assert_eq!(
        h.commit("m", 3, 1, 8),
        ResponseError::IllegalGeneration.code()
    );
    assert_eq!(
        h.commit("m", 3, 1, 9),
        ResponseError::GroupIdNotFound.code()
    );
    assert!(h.committed().is_none());
}

#[test]
fn a_commit_is_acknowledged_only_once_written() {
    let mut h = Harness::new();
    h.log.fail.store(true, Ordering::Relaxed);
    assert_eq!(h.commit("", -1, 5, 8), ResponseError::NotCoordinator.code());
    assert!(
        h.committed().is_none(),
        "nothing visible that is not in the log"
    );
    h.log.fail.store(false, Ordering::Relaxed);
    assert_eq!(h.commit("", -1, 5, 8), 0);
    assert_eq!(h.committed(), Some(5));
}

#[test]
fn replaying_the_log_restores_groups_and_offsets() {
    let mut h = Harness::new();
    let (leader, follower) = h.stable_pair();
    assert_eq!(h.commit(&leader, 1, 42, 8), 0);
    let mut restored = Harness::new();
    let bytes = h.log.to_bytes();
    let mut stats = ReplayStats::default();
    let next = replay_batches(&mut restored.shard, &bytes, 0, restored.now, &mut stats);
    assert_eq!(next, Some(h.log.records().len() as i64));
    assert_eq!(stats.records, h.log.records().len());
    restored.shard.on_loaded(restored.now);
    assert_eq!(restored.committed(), Some(42));
    let offset = restored.shard.offsets().get("g", "t", 0).unwrap();
    assert_eq!(offset.leader_epoch, Some(2));
    assert_eq!(offset.metadata, "m");
    let group = restored.shard.groups().classic_group("g").unwrap();
    assert_eq!(group.state(), ClassicGroupState::Stable);
    assert_eq!(group.generation_id(), 1);
    assert_eq!(group.leader_id(), Some(leader.as_str()));
    assert_eq!(
        group.member(&follower).unwrap().assignment,
        Bytes::from_static(b"F")
    );
    // Members of the restored group keep their session by heartbeating...
    assert_eq!(restored.heartbeat(&leader, 1), Ok(()));
    // ...and those that do not are expired.
    restored.advance(i64::from(SESSION_MS) / 2);
    assert_eq!(restored.heartbeat(&leader, 1), Ok(()));
    restored.advance(i64::from(SESSION_MS) / 2 + 1);
    assert_eq!(restored.state(), ClassicGroupState::PreparingRebalance);
}

#[test]
fn offsets_of_an_empty_group_expire_and_the_group_goes_with_them() {
    let mut h = Harness::new();
    assert_eq!(h.commit("", -1, 5, 8), 0);
    let retention = config().offsets_retention_ms;
    let interval = config().offsets_retention_check_interval_ms;
    // The first check comes before the retention has passed.
    h.advance(interval);
    assert!(h.committed().is_some() || retention <= interval);
    h.advance(retention.max(interval));
    assert!(h.committed().is_none(), "expired");
    assert!(
        h.shard.groups().group("g").is_none(),
        "empty group without offsets deleted"
    );
    assert!(h
        .log
        .records()
        .iter()
        .any(|r| matches!(r, CoordinatorRecord::GroupMetadata { value: None, .. })));
}

#[test]
fn offsets_of_an_active_group_do_not_expire() {
    let mut h = Harness::new();
    let (leader, follower) = h.stable_pair();
    assert_eq!(h.commit(&leader, 1, 5, 8), 0);
    let interval = config().offsets_retention_check_interval_ms;
    for _ in 0..3 {
        // Keep both members alive across the checks.
        let mut elapsed = 0;
        while elapsed < interval {
            h.advance(i64::from(SESSION_MS) / 2);
            elapsed += i64::from(SESSION_MS) / 2;
            assert_eq!(h.heartbeat(&leader, 1), Ok(()));
            assert_eq!(h.heartbeat(&follower, 1), Ok(()));
        }
    }
    // The subscription metadata (b"sub") is not a readable consumer subscription, so the
    // coordinator cannot tell which topics are consumed and keeps all offsets.
    assert_eq!(h.committed(), Some(5));
}

#[test]
fn delete_groups_only_deletes_empty_groups() {
    let mut h = Harness::new();
    let (leader, follower) = h.stable_pair();
    assert_eq!(h.commit(&leader, 1, 5, 8), 0);
    let result = h
        .shard
        .delete_groups(&["g".to_string(), "nope".to_string()], h.now);
    assert_eq!(result[0].1, Some(ResponseError::NonEmptyGroup));
    assert_eq!(result[1].1, Some(ResponseError::GroupIdNotFound));
    for member in [&leader, &follower] {
        let leave = LeaveGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_members(vec![
                MemberIdentity::default().with_member_id(StrBytes::from_string(member.to_string()))
            ]);
        h.shard.leave_group(&leave, h.now);
    }
    h.advance(0);
    let result = h.shard.delete_groups(&["g".to_string()], h.now);
    assert_eq!(result[0].1, None);
    assert!(h.committed().is_none());
    assert!(h.shard.groups().group("g").is_none());
    let records = h.log.records();
    let tail = &records[records.len() - 2..];
    assert!(matches!(
        tail[0],
        CoordinatorRecord::OffsetCommit { value: None, .. }
    ));
    assert!(matches!(
        tail[1],
        CoordinatorRecord::GroupMetadata { value: None, .. }
    ));
}

#[test]
fn pending_member_that_never_rejoins_expires() {
    let mut h = Harness::new();
    let mut first = h.join(join_request("", None), 5);
    let id = answered(&mut first).unwrap().member_id.to_string();
    assert!(h
        .shard
        .groups()
        .classic_group("g")
        .unwrap()
        .is_pending_member(&id));
    h.advance(i64::from(SESSION_MS));
    assert!(!h
        .shard
        .groups()
        .classic_group("g")
        .unwrap()
        .is_pending_member(&id));
    let mut late = h.join(join_request(&id, None), 5);
    assert_eq!(
        answered(&mut late).unwrap().error_code,
        ResponseError::UnknownMemberId.code()
    );
}

#[test]
fn shutdown_answers_parked_requests_with_not_coordinator() {
    let mut h = Harness::new();
    let (_, mut join) = h.join_dynamic();
    h.shard.complete_all_futures(ResponseError::NotCoordinator);
    assert_eq!(
        answered(&mut join).unwrap().error_code,
        ResponseError::NotCoordinator.code()
    );
}

// ---------------------------------------------------------------- KIP-848 consumer groups

mod consumer_protocol {
    use super::*;
    use crate::group_coordinator::assignor::TopicMetadata;
    use fjord_protocol::kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
    use fjord_protocol::kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use fjord_protocol::kafka_protocol::messages::{
        ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, GroupId,
        OffsetCommitRequest, TopicName,
    };
    use fjord_protocol::kafka_protocol::protocol::StrBytes;

    const TOPIC_ID: uuid::Uuid = uuid::Uuid::from_u128(42);

    fn topics(name: &str) -> Option<TopicMetadata> {
        (name == "t").then(|| TopicMetadata {
            id: TOPIC_ID,
            name: "t".into(),
            partitions: 4,
        })
    }

    pub(super) fn heartbeat(
        h: &mut Harness,
        member: &str,
        epoch: i32,
        owned: Option<Vec<i32>>,
    ) -> ConsumerGroupHeartbeatResponse {
        let request = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("cg")))
            .with_member_id(StrBytes::from_string(member.to_string()))
            .with_member_epoch(epoch)
            .with_rebalance_timeout_ms(30_000)
            .with_subscribed_topic_names(
                (epoch == 0).then(|| vec![TopicName(StrBytes::from_static_str("t"))]),
            )
            .with_topic_partitions(owned.map(|ps| {
                vec![TopicPartitions::default()
                    .with_topic_id(TOPIC_ID)
                    .with_partitions(ps)]
            }));
        let now = h.now;
        h.shard
            .consumer_group_heartbeat(&ctx(1), &request, &topics, now)
    }

    fn commit(h: &mut Harness, member: &str, epoch: i32) -> i16 {
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("cg")))
            .with_member_id(StrBytes::from_string(member.to_string()))
            .with_generation_id_or_member_epoch(epoch)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(5)])]);
        let now = h.now;
        h.shard.commit_offsets(&request, 9, now)[0].partitions[0].error_code
    }

    #[test]
    fn members_get_epochs_commits_are_fenced_and_silent_members_expire() {
        let mut h = Harness::new();
        let a = heartbeat(&mut h, "a", 0, Some(vec![]));
        assert_eq!(a.error_code, 0);
        assert_eq!(a.member_epoch, 1);
        let owned: Vec<i32> = a.assignment.unwrap().topic_partitions[0].partitions.clone();
        assert_eq!(owned, vec![0, 1, 2, 3]);
        assert_eq!(commit(&mut h, "a", 1), 0);
        assert_eq!(
            commit(&mut h, "a", 0),
            ResponseError::StaleMemberEpoch.code()
        );
        assert_eq!(
            commit(&mut h, "nobody", 1),
            ResponseError::UnknownMemberId.code()
        );
        assert_eq!(
            heartbeat(&mut h, "a", 7, None).error_code,
            ResponseError::FencedMemberEpoch.code()
        );

        let b = heartbeat(&mut h, "b", 0, Some(vec![]));
        assert_eq!(b.error_code, 0);
        // `a` keeps heartbeating, `b` goes silent: after the session timeout `a` gets all.
        for _ in 0..14 {
            h.advance(500);
            let epoch = h.shard.consumer_groups["cg"].members["a"].member_epoch;
            let beat = heartbeat(&mut h, "a", epoch, None);
            assert_eq!(beat.error_code, 0);
        }
        assert!(!h.shard.consumer_groups["cg"].members.contains_key("b"));
        assert_eq!(
            heartbeat(&mut h, "b", b.member_epoch, None).error_code,
            ResponseError::UnknownMemberId.code()
        );
    }

    #[test]
    fn an_empty_consumer_group_s_offsets_expire_and_the_group_goes() {
        let mut h = Harness::new();
        let a = heartbeat(&mut h, "a", 0, Some(vec![]));
        assert_eq!(commit(&mut h, "a", a.member_epoch), 0);
        assert_eq!(heartbeat(&mut h, "a", -1, None).error_code, 0);
        assert!(h.shard.offsets().has_offsets("cg"));
        // The retention check runs every offsets.retention.check.interval.ms.
        h.advance(600_001);
        assert!(!h.shard.offsets().has_offsets("cg"));
        assert!(!h.shard.consumer_groups.contains_key("cg"));
    }
}

/// The broker's timer task, not a test's hand, ends the initial rebalance delay.
#[test]
fn the_timer_task_runs_due_timers() {
    use fjord_protocol::kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let coordinator = Arc::new(GroupCoordinator::with_log(
            GroupCoordinatorConfig {
                initial_rebalance_delay_ms: 20,
                ..config()
            },
            Arc::new(MemoryLog::default()),
            3,
            now_ms(),
        ));
        let (stop, stopped) = watch::channel(false);
        let driver = tokio::spawn({
            let coordinator = coordinator.clone();
            async move { coordinator.run_timers(stopped).await }
        });
        // A static member joins at once (no MEMBER_ID_REQUIRED); only the delay holds it.
        let request = JoinGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_group_instance_id(Some(StrBytes::from_static_str("i")))
            .with_session_timeout_ms(SESSION_MS)
            .with_rebalance_timeout_ms(REBALANCE_MS)
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![
                JoinGroupRequestProtocol::default().with_name(StrBytes::from_static_str("range"))
            ]);
        // A generous bound that only turns a hang into a failure; nothing is timed.
        let response = tokio::time::timeout(
            Duration::from_secs(60),
            coordinator.join_group(&ctx(9), &request, now_ms()),
        )
        .await
        .expect("the timer task completed the join phase");
        assert_eq!(response.error_code, 0);
        assert_eq!(response.generation_id, 1);
        stop.send_replace(true);
        driver.await.unwrap();
    });
}

// ---------------------------------------------------------------- transactional offsets

mod transactional {
    use super::*;
    use fjord_protocol::kafka_protocol::messages::txn_offset_commit_request::{
        TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    };
    use fjord_protocol::kafka_protocol::messages::{
        ProducerId, TransactionalId, TxnOffsetCommitRequest,
    };

    const PID: i64 = 7;
    const EPOCH: i16 = 3;
    const UNSTABLE: Option<ResponseError> = Some(ResponseError::UnstableOffsetCommit);

    fn request(
        group: &str,
        member: &str,
        generation: i32,
        producer_id: i64,
        offsets: &[(i32, i64)],
    ) -> TxnOffsetCommitRequest {
        TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(StrBytes::from_static_str("tx")))
            .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(EPOCH)
            .with_member_id(StrBytes::from_string(member.to_string()))
            .with_generation_id(generation)
            .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(
                    offsets
                        .iter()
                        .map(|(partition, offset)| {
                            TxnOffsetCommitRequestPartition::default()
                                .with_partition_index(*partition)
                                .with_committed_offset(*offset)
                                .with_committed_leader_epoch(1)
                                .with_committed_metadata(Some(StrBytes::from_static_str("tm")))
                        })
                        .collect(),
                )])
    }

    /// Error codes, one per partition, in request order.
    fn txn_commit(h: &mut Harness, request: &TxnOffsetCommitRequest) -> Vec<i16> {
        let now = h.now;
        h.shard
            .commit_transactional_offsets(request, 3, now)
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect()
    }

    fn simple_txn(h: &mut Harness, producer_id: i64, offsets: &[(i32, i64)]) {
        let codes = txn_commit(h, &request("g", "", -1, producer_id, offsets));
        assert!(codes.iter().all(|c| *c == 0), "{codes:?}");
    }

    /// The transaction marker writer: marker appended, then the coordinator told.
    fn end_txn(h: &mut Harness, producer_id: i64, commit: bool) {
        h.log.write_marker(producer_id, EPOCH, commit);
        h.shard.complete_transaction(producer_id, commit, h.now);
    }

    fn fetch(h: &Harness, partitions: &[i32], stable: bool) -> Vec<(i64, Option<ResponseError>)> {
        let topics = [("t".to_string(), partitions.to_vec())];
        let fetched = h.shard.fetch_offsets("g", Some(&topics), stable);
        fetched[0]
            .1
            .iter()
            .map(|o| (o.committed_offset, o.error))
            .collect()
    }

    fn fetch_all(h: &Harness, stable: bool) -> Vec<(i32, i64, Option<ResponseError>)> {
        h.shard
            .fetch_offsets("g", None, stable)
            .into_iter()
            .flat_map(|(_, offsets)| offsets)
            .map(|o| (o.partition, o.committed_offset, o.error))
            .collect()
    }

    #[test]
    fn pending_offsets_are_invisible_until_the_commit_marker() {
        let mut h = Harness::new();
        simple_txn(&mut h, PID, &[(0, 10), (1, 11)]);
        // One transactional batch carrying the producer.
        let batches = h.log.batches.lock().clone();
        let [MemoryBatch::Records {
            producer: Some(producer),
            records,
            ..
        }] = batches.as_slice()
        else {
            panic!("one transactional batch expected: {batches:?}");
        };
        assert_eq!(
            *producer,
            TransactionalProducer {
                producer_id: PID,
                producer_epoch: EPOCH
            }
        );
        assert_eq!(records.len(), 2);
        assert_eq!(h.shard.offsets().pending_count(), 2);

        assert_eq!(fetch(&h, &[0, 1], false), vec![(-1, None), (-1, None)]);
        assert_eq!(
            fetch(&h, &[0, 1, 2], true),
            vec![(-1, UNSTABLE), (-1, UNSTABLE), (-1, None)]
        );
        assert!(fetch_all(&h, true).is_empty(), "only committed partitions");

        end_txn(&mut h, PID, true);
        assert_eq!(fetch(&h, &[0, 1], true), vec![(10, None), (11, None)]);
        let offset = h.shard.offsets().get("g", "t", 1).unwrap();
        assert_eq!(
            (offset.leader_epoch, offset.metadata.as_str()),
            (Some(1), "tm")
        );
        assert_eq!(h.shard.offsets().pending_count(), 0);
    }

    #[test]
    fn an_abort_drops_the_pending_offsets() {
        let mut h = Harness::new();
        assert_eq!(h.commit("", -1, 5, 8), 0);
        simple_txn(&mut h, PID, &[(0, 10)]);
        assert_eq!(fetch_all(&h, false), vec![(0, 5, None)]);
        assert_eq!(fetch_all(&h, true), vec![(0, -1, UNSTABLE)]);
        end_txn(&mut h, PID, false);
        assert_eq!(fetch_all(&h, true), vec![(0, 5, None)]);
        assert_eq!(h.shard.offsets().pending_count(), 0);
    }

    #[test]
    fn a_plain_commit_after_the_transactional_one_wins() {
        let mut h = Harness::new();
        simple_txn(&mut h, PID, &[(0, 10), (1, 11)]);
        assert_eq!(h.commit("", -1, 20, 8), 0);
        end_txn(&mut h, PID, true);
        assert_eq!(fetch(&h, &[0, 1], true), vec![(20, None), (11, None)]);
    }

    #[test]
    fn classic_members_and_generations_are_checked() {
        let mut h = Harness::new();
        let (leader, _follower) = h.stable_pair();
        let codes = |h: &mut Harness, member: &str, generation: i32| {
            txn_commit(h, &request("g", member, generation, PID, &[(0, 1)]))[0]
        };
        assert_eq!(codes(&mut h, &leader, 1), 0);
        assert_eq!(
            codes(&mut h, &leader, 2),
            ResponseError::IllegalGeneration.code()
        );
        assert_eq!(
            codes(&mut h, "nobody", 1),
            ResponseError::UnknownMemberId.code()
        );
        // v0-v2 carry neither member nor generation: accepted whatever the group's state.
        assert_eq!(codes(&mut h, "", -1), 0);
        let ghost = request("g", &leader, 1, PID, &[(0, 1)])
            .with_group_instance_id(Some(StrBytes::from_static_str("ghost")));
        assert_eq!(
            txn_commit(&mut h, &ghost)[0],
            ResponseError::UnknownMemberId.code()
        );
        // Unknown group: only without a generation, creating a simple group.
        assert_eq!(
            txn_commit(&mut h, &request("other", "m", 1, PID, &[(0, 1)]))[0],
            ResponseError::IllegalGeneration.code()
        );
        assert!(h.shard.groups().group("other").is_none());
        assert_eq!(
            txn_commit(&mut h, &request("other", "", -1, PID, &[(0, 1)]))[0],
            0
        );
        assert!(h.shard.groups().classic_group("other").is_some());
    }

    #[test]
    fn consumer_group_members_and_epochs_are_checked() {
        let mut h = Harness::new();
        let a = super::consumer_protocol::heartbeat(&mut h, "a", 0, Some(vec![]));
        assert_eq!(a.member_epoch, 1);
        let code = |h: &mut Harness, member: &str, epoch: i32| {
            txn_commit(h, &request("cg", member, epoch, PID, &[(0, 1)]))[0]
        };
        assert_eq!(code(&mut h, "a", 1), 0);
        assert_eq!(
            code(&mut h, "a", 0),
            ResponseError::IllegalGeneration.code(),
            "a stale epoch answers ILLEGAL_GENERATION, as Kafka"
        );
        assert_eq!(
            code(&mut h, "nobody", 1),
            ResponseError::UnknownMemberId.code()
        );
        assert_eq!(code(&mut h, "", -1), ResponseError::UnknownMemberId.code());
    }

    #[test]
    fn metadata_limits_and_failed_writes() {
        let mut h = Harness::new();
        let mut big = request("g", "", -1, PID, &[(0, 1), (1, 2)]);
        big.topics[0].partitions[1].committed_metadata =
            Some(StrBytes::from_string("x".repeat(17)));
        assert_eq!(
            txn_commit(&mut h, &big),
            vec![0, ResponseError::OffsetMetadataTooLarge.code()]
        );
        assert_eq!(h.shard.offsets().pending_count(), 1);
        // The test config allows 4 pending offsets per shard.
        simple_txn(&mut h, 8, &[(1, 1), (2, 1), (3, 1)]);
        let unavailable = ResponseError::CoordinatorNotAvailable.code();
        assert_eq!(
            txn_commit(&mut h, &request("g", "", -1, 9, &[(0, 1)])),
            vec![unavailable]
        );
        end_txn(&mut h, 8, false);
        simple_txn(&mut h, 9, &[(0, 1)]);

        h.log.fail.store(true, Ordering::Relaxed);
        assert_eq!(
            txn_commit(&mut h, &request("g", "", -1, 10, &[(5, 1)])),
            vec![ResponseError::NotCoordinator.code()]
        );
        h.log.fail.store(false, Ordering::Relaxed);
        *h.log.reject_transactional.lock() = Some(ResponseError::ProducerFenced);
        assert_eq!(
            txn_commit(&mut h, &request("g", "", -1, 10, &[(5, 1)])),
            vec![ResponseError::ProducerFenced.code()]
        );
        assert!(h.shard.offsets().pending(10, "g", "t", 5).is_none());
        assert_eq!(h.shard.offsets().pending_count(), 2);
    }

    #[test]
    fn replay_completes_ended_transactions_and_keeps_open_ones_pending() {
        let mut h = Harness::new();
        assert_eq!(h.commit("", -1, 1, 8), 0);
        simple_txn(&mut h, 7, &[(0, 10), (1, 11)]);
        end_txn(&mut h, 7, true);
        simple_txn(&mut h, 8, &[(2, 12)]);
        end_txn(&mut h, 8, false);
        // Open at the end of the log, with a plain commit of partition 0 after it.
        simple_txn(&mut h, 9, &[(0, 30), (3, 13)]);
        assert_eq!(h.commit("", -1, 2, 8), 0);

        let mut restored = Harness::new();
        let bytes = h.log.to_bytes();
        let mut stats = ReplayStats::default();
        replay_batches(&mut restored.shard, &bytes, 0, restored.now, &mut stats);
        restored.shard.on_loaded(restored.now);
        assert_eq!(stats.markers, 2);
        assert_eq!(stats.skipped, 0);
        assert_eq!(fetch_all(&restored, false), fetch_all(&h, false));
        assert_eq!(
            fetch_all(&restored, false),
            vec![(0, 2, None), (1, 11, None)]
        );
        assert_eq!(
            fetch(&restored, &[0, 2, 3], true),
            vec![(-1, UNSTABLE), (-1, None), (-1, UNSTABLE)]
        );
        assert_eq!(
            restored
                .shard
                .offsets()
                .pending(9, "g", "t", 3)
                .map(|o| o.committed_offset),
            Some(13)
        );
        // The transaction coordinator later commits it: partition 0 keeps the later commit.
        restored.shard.complete_transaction(9, true, restored.now);
        assert_eq!(fetch(&restored, &[0, 3], true), vec![(2, None), (13, None)]);
    }

    #[test]
    fn deletion_and_expiry_with_pending_offsets() {
        let mut h = Harness::new();
        // OffsetDelete writes a tombstone for a partition with only a pending offset.
        simple_txn(&mut h, PID, &[(0, 10)]);
        let deleted = h
            .shard
            .delete_offsets("g", &[("t".to_string(), vec![0])], h.now)
            .unwrap();
        assert_eq!(deleted, vec![("t".to_string(), vec![(0, None)])]);
        assert!(!h.shard.offsets().has_pending("g", "t", 0));
        end_txn(&mut h, PID, true);
        assert_eq!(fetch(&h, &[0], true), vec![(-1, None)]);

        // An Empty group with an open transaction is not removed by expiration...
        simple_txn(&mut h, 8, &[(1, 11)]);
        let interval = config().offsets_retention_check_interval_ms;
        h.advance(interval + config().offsets_retention_ms);
        assert!(h.shard.groups().group("g").is_some());
        // ...until the transaction ends.
        end_txn(&mut h, 8, false);
        h.advance(interval);
        assert!(h.shard.groups().group("g").is_none());

        // DeleteGroups deletes an Empty group's pending offsets too.
        simple_txn(&mut h, 9, &[(2, 12)]);
        let now = h.now;
        assert_eq!(
            h.shard.delete_groups(&["g".to_string()], now),
            vec![("g".to_string(), None)]
        );
        assert!(h.log.records().iter().any(|r| matches!(
            r,
            CoordinatorRecord::OffsetCommit {
                partition: 2,
                value: None,
                ..
            }
        )));
        assert_eq!(h.shard.offsets().pending_count(), 0);
        end_txn(&mut h, 9, true);
        assert!(!h.shard.offsets().has_offsets("g"));
    }

    #[test]
    fn the_coordinator_routes_commits_and_markers_to_the_group_s_shard() {
        let log = Arc::new(MemoryLog::default());
        let coordinator = GroupCoordinator::with_log(config(), log, 3, START_MS);
        let partition = coordinator.offsets_partition("g");
        let request = request("g", "", -1, PID, &[(0, 10)]);
        let topics = coordinator
            .commit_transactional_offsets(&request, 5, START_MS)
            .now()
            .unwrap();
        assert_eq!(topics[0].partitions[0].error_code, 0);
        let requested = [("t".to_string(), vec![0])];
        let offset = |stable: bool| {
            let fetched = coordinator
                .fetch_offsets("g", Some(&requested), stable)
                .unwrap();
            (fetched[0].1[0].committed_offset, fetched[0].1[0].error)
        };
        assert_eq!(offset(true), (-1, UNSTABLE));
        // A marker in another partition, or one this coordinator lacks, changes nothing.
        coordinator.complete_transaction((partition + 1) % 3, PID, true, START_MS);
        coordinator.complete_transaction(99, PID, true, START_MS);
        coordinator.complete_transaction(-1, PID, true, START_MS);
        assert_eq!(offset(true), (-1, UNSTABLE));
        coordinator.complete_transaction(partition, PID, true, START_MS);
        assert_eq!(offset(true), (10, None));
        assert_eq!(
            coordinator
                .commit_transactional_offsets(
                    &request.clone().with_group_id(GroupId::default()),
                    5,
                    START_MS
                )
                .now()
                .unwrap_err(),
            ResponseError::InvalidGroupId
        );
    }
}

/// Kafka's error mapping for coordinator writes whose commit fails: too few in-sync replicas
/// or a timeout make the coordinator unavailable, a lost leadership sends the client to the
/// new coordinator. Memory keeps the commit: it is in the leader's log (the shard is rebuilt
/// from the log if the leadership moves).
#[test]
fn a_commit_that_is_not_replicated_answers_the_coordinator_errors() {
    let log = Arc::new(MemoryLog::default());
    let coordinator = GroupCoordinator::with_log(config(), log.clone(), 1, START_MS);
    let request = |offset: i64| {
        OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_generation_id_or_member_epoch(-1)
            .with_retention_time_ms(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(offset)])])
    };
    let committed = || {
        coordinator
            .fetch_offsets("g", Some(&[("t".to_string(), vec![0])]), false)
            .unwrap()[0]
            .1[0]
            .committed_offset
    };
    for (commit_error, answer) in [
        (
            ResponseError::NotEnoughReplicasAfterAppend,
            ResponseError::CoordinatorNotAvailable,
        ),
        (
            ResponseError::RequestTimedOut,
            ResponseError::CoordinatorNotAvailable,
        ),
        (
            ResponseError::NotLeaderOrFollower,
            ResponseError::NotCoordinator,
        ),
    ] {
        *log.commit_error.lock() = Some(commit_error);
        assert_eq!(
            coordinator.commit_offsets(&request(7), 8, START_MS).now(),
            Err(answer)
        );
        assert_eq!(committed(), 7);
    }
    *log.commit_error.lock() = None;
    let topics = coordinator
        .commit_offsets(&request(8), 8, START_MS)
        .now()
        .unwrap();
    assert_eq!(topics[0].partitions[0].error_code, 0);
    assert_eq!(committed(), 8);
}
