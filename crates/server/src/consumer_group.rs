//! The classic consumer group protocol for `fjord consume --group`: FindCoordinator,
//! JoinGroup (protocol type "consumer", assignor "range"), SyncGroup (the leader computes the
//! range assignment), Heartbeat, OffsetFetch, OffsetCommit and LeaveGroup, as Kafka's Java
//! consumer speaks them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use fjord_protocol::kafka_protocol::messages::consumer_protocol_assignment::{
    ConsumerProtocolAssignment, TopicPartition as AssignedTopic,
};
use fjord_protocol::kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use fjord_protocol::kafka_protocol::messages::leave_group_request::MemberIdentity;
use fjord_protocol::kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use fjord_protocol::kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use fjord_protocol::kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use fjord_protocol::kafka_protocol::messages::{
    ConsumerProtocolSubscription, GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest,
    OffsetCommitRequest, OffsetFetchRequest, SyncGroupRequest, TopicName,
};
use fjord_protocol::kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use fjord_protocol::{ApiKey, RequestKind, ResponseError, ResponseKind};

use crate::admin::{error_name, AdminClient};
use crate::client::{backoff, is_connection_error, Cluster, ATTEMPTS_MAX};

/// As the Java consumer's defaults would be for a console tool: a member that stops
/// heartbeating for 10 s is removed; heartbeats every third of that.
const SESSION_TIMEOUT_MS: i32 = 10_000;
/// How long the coordinator waits for every member to rejoin (below the default request
/// timeout, so a JoinGroup answer arrives before the socket gives up).
const REBALANCE_TIMEOUT_MS: i32 = 20_000;
const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(SESSION_TIMEOUT_MS as u64 / 3);
const PROTOCOL_TYPE: &str = "consumer";
const ASSIGNOR: &str = "range";
/// ConsumerProtocolSubscription/Assignment version written (v0: topics and user data, which
/// every consumer and broker reads).
const CONSUMER_PROTOCOL_VERSION: i16 = 0;
/// Joins attempted before giving up (each may wait for a rebalance to complete).
const JOIN_ATTEMPTS_MAX: u32 = 10;

/// What a heartbeat or commit says about membership.
#[derive(Debug, PartialEq, Eq)]
pub enum Membership {
    Stable,
    /// A rebalance started or this member was dropped: join again.
    Rejoin,
}

pub struct GroupMember {
    group: String,
    topic: String,
    coordinator: AdminClient,
    member_id: String,
    generation_id: i32,
    last_heartbeat: Instant,
}

impl GroupMember {
    /// Finds the group's coordinator and joins; call [`GroupMember::join`] next.
    pub fn new(cluster: &mut Cluster, group: &str, topic: &str) -> Result<Self> {
        let coordinator = connect_coordinator(cluster, group)?;
        Ok(GroupMember {
            group: group.to_string(),
            topic: topic.to_string(),
            coordinator,
            member_id: String::new(),
            generation_id: -1,
            last_heartbeat: Instant::now(),
        })
    }

    fn group_id(&self) -> GroupId {
        GroupId(StrBytes::from_string(self.group.clone()))
    }

    /// Joins (or rejoins) the group and returns this member's partitions of the topic.
    pub fn join(&mut self, cluster: &mut Cluster) -> Result<Vec<i32>> {
        let mut attempt = 0;
        loop {
            let error = match self.join_once(cluster) {
                Ok(Some(partitions)) => return Ok(partitions),
                Ok(None) => None, // the group asked for another round
                Err(err) => Some(err),
            };
            attempt += 1;
            if let Some(err) = &error {
                if attempt >= JOIN_ATTEMPTS_MAX || crate::client::stop_requested() {
                    return Err(error.unwrap_or_else(|| anyhow!("cannot join")));
                }
                tracing::debug!(attempt, "rejoining group: {err:#}");
                std::thread::sleep(backoff(attempt));
                if is_connection_error(err) || err.to_string().contains("NotCoordinator") {
                    self.coordinator = connect_coordinator(cluster, &self.group)?;
                }
            } else if attempt >= JOIN_ATTEMPTS_MAX {
                bail!("group {} did not settle after {attempt} joins", self.group);
            }
        }
    }

    /// One JoinGroup + SyncGroup round; `None` when the group wants another round.
    fn join_once(&mut self, cluster: &mut Cluster) -> Result<Option<Vec<i32>>> {
        let subscription = ConsumerProtocolSubscription::default()
            .with_topics(vec![StrBytes::from_string(self.topic.clone())]);
        let request = JoinGroupRequest::default()
            .with_group_id(self.group_id())
            .with_session_timeout_ms(SESSION_TIMEOUT_MS)
            .with_rebalance_timeout_ms(REBALANCE_TIMEOUT_MS)
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_protocol_type(StrBytes::from_static_str(PROTOCOL_TYPE))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str(ASSIGNOR))
                .with_metadata(encode_versioned(&subscription)?)]);
        let ResponseKind::JoinGroup(joined) =
            self.coordinator
                .send(ApiKey::JoinGroup, 9, RequestKind::JoinGroup(request))?
        else {
            bail!("unexpected answer to JoinGroup");
        };
        match ResponseError::try_from_code(joined.error_code) {
            None if joined.error_code == 0 => {}
            Some(ResponseError::MemberIdRequired) => {
                self.member_id = joined.member_id.to_string();
                return Ok(None);
            }
            Some(ResponseError::UnknownMemberId) | Some(ResponseError::IllegalGeneration) => {
                self.member_id.clear();
                return Ok(None);
            }
            Some(ResponseError::RebalanceInProgress) => return Ok(None),
            _ => bail!(
                "JoinGroup {} failed: {}",
                self.group,
                error_name(joined.error_code)
            ),
        }
        self.member_id = joined.member_id.to_string();
        self.generation_id = joined.generation_id;
        let assignments = if joined.leader == joined.member_id {
            let members = joined
                .members
                .iter()
                .map(|m| Ok((m.member_id.to_string(), subscribed_topics(&m.metadata)?)))
                .collect::<Result<Vec<_>>>()?;
            let mut partition_counts = BTreeMap::new();
            for (_, topics) in &members {
                for topic in topics {
                    if !partition_counts.contains_key(topic) {
                        // A topic another member wants but that does not exist gets nothing.
                        let count = cluster.partitions(topic, false).map_or(0, |p| p.len());
                        partition_counts.insert(topic.clone(), count);
                    }
                }
            }
            range_assign(&members, &partition_counts)
                .into_iter()
                .map(|(member, topics)| {
                    let assignment = ConsumerProtocolAssignment::default()
                        .with_assigned_partitions(
                            topics
                                .into_iter()
                                .map(|(topic, partitions)| {
                                    AssignedTopic::default()
                                        .with_topic(TopicName(StrBytes::from_string(topic)))
                                        .with_partitions(partitions)
                                })
                                .collect(),
                        );
                    Ok(SyncGroupRequestAssignment::default()
                        .with_member_id(StrBytes::from_string(member))
                        .with_assignment(encode_versioned(&assignment)?))
                })
                .collect::<Result<Vec<_>>>()?
        } else {
            Vec::new()
        };
        let request = SyncGroupRequest::default()
            .with_group_id(self.group_id())
            .with_generation_id(self.generation_id)
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_protocol_type(Some(StrBytes::from_static_str(PROTOCOL_TYPE)))
            .with_protocol_name(Some(StrBytes::from_static_str(ASSIGNOR)))
            .with_assignments(assignments);
        let ResponseKind::SyncGroup(synced) =
            self.coordinator
                .send(ApiKey::SyncGroup, 5, RequestKind::SyncGroup(request))?
        else {
            bail!("unexpected answer to SyncGroup");
        };
        match ResponseError::try_from_code(synced.error_code) {
            None if synced.error_code == 0 => {}
            Some(ResponseError::RebalanceInProgress) => return Ok(None),
            Some(ResponseError::UnknownMemberId) | Some(ResponseError::IllegalGeneration) => {
                self.member_id.clear();
                return Ok(None);
            }
            _ => bail!(
                "SyncGroup {} failed: {}",
                self.group,
                error_name(synced.error_code)
            ),
        }
        self.last_heartbeat = Instant::now();
        let mine = assigned_partitions(&synced.assignment, &self.topic)?;
        tracing::debug!(group = %self.group, generation = self.generation_id, partitions = ?mine, "joined");
        Ok(Some(mine))
    }

    pub fn heartbeat_due(&self) -> bool {
        self.last_heartbeat.elapsed() >= HEARTBEAT_INTERVAL
    }

    pub fn heartbeat(&mut self) -> Result<Membership> {
        let request = HeartbeatRequest::default()
            .with_group_id(self.group_id())
            .with_generation_id(self.generation_id)
            .with_member_id(StrBytes::from_string(self.member_id.clone()));
        let ResponseKind::Heartbeat(response) =
            self.coordinator
                .send(ApiKey::Heartbeat, 4, RequestKind::Heartbeat(request))?
        else {
            bail!("unexpected answer to Heartbeat");
        };
        self.last_heartbeat = Instant::now();
        self.membership(response.error_code, "Heartbeat")
    }

    fn membership(&mut self, error_code: i16, what: &str) -> Result<Membership> {
        match ResponseError::try_from_code(error_code) {
            None if error_code == 0 => Ok(Membership::Stable),
            Some(ResponseError::RebalanceInProgress) => Ok(Membership::Rejoin),
            Some(ResponseError::UnknownMemberId) | Some(ResponseError::IllegalGeneration) => {
                self.member_id.clear();
                Ok(Membership::Rejoin)
            }
            _ => bail!("{what} {} failed: {}", self.group, error_name(error_code)),
        }
    }

    /// The committed offsets of `partitions` (-1 = none).
    pub fn committed(&mut self, partitions: &[i32]) -> Result<BTreeMap<i32, i64>> {
        let request = OffsetFetchRequest::default()
            .with_group_id(self.group_id())
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(TopicName(StrBytes::from_string(self.topic.clone())))
                .with_partition_indexes(partitions.to_vec())]))
            .with_require_stable(true);
        let ResponseKind::OffsetFetch(response) =
            self.coordinator
                .send(ApiKey::OffsetFetch, 7, RequestKind::OffsetFetch(request))?
        else {
            bail!("unexpected answer to OffsetFetch");
        };
        if response.error_code != 0 {
            bail!(
                "OffsetFetch {} failed: {}",
                self.group,
                error_name(response.error_code)
            );
        }
        let mut offsets = BTreeMap::new();
        for topic in &response.topics {
            for partition in &topic.partitions {
                if partition.error_code != 0 {
                    bail!(
                        "OffsetFetch {}/{} failed: {}",
                        self.topic,
                        partition.partition_index,
                        error_name(partition.error_code)
                    );
                }
                offsets.insert(partition.partition_index, partition.committed_offset);
            }
        }
        Ok(offsets)
    }

    /// Commits `positions` (the next offset to read per partition) for this generation.
    pub fn commit(&mut self, positions: &BTreeMap<i32, i64>) -> Result<Membership> {
        if positions.is_empty() {
            return Ok(Membership::Stable);
        }
        let request = OffsetCommitRequest::default()
            .with_group_id(self.group_id())
            .with_generation_id_or_member_epoch(self.generation_id)
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_retention_time_ms(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_string(self.topic.clone())))
                .with_partitions(
                    positions
                        .iter()
                        .map(|(p, offset)| {
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(*p)
                                .with_committed_offset(*offset)
                                .with_committed_leader_epoch(-1)
                        })
                        .collect(),
                )]);
        let ResponseKind::OffsetCommit(response) =
            self.coordinator
                .send(ApiKey::OffsetCommit, 8, RequestKind::OffsetCommit(request))?
        else {
            bail!("unexpected answer to OffsetCommit");
        };
        let mut outcome = Membership::Stable;
        for topic in &response.topics {
            for partition in &topic.partitions {
                if self.membership(partition.error_code, "OffsetCommit")? == Membership::Rejoin {
                    outcome = Membership::Rejoin;
                }
            }
        }
        Ok(outcome)
    }

    /// Leaves the group so its partitions move to the other members at once.
    pub fn leave(&mut self) -> Result<()> {
        if self.member_id.is_empty() {
            return Ok(());
        }
        // v0-v2 name one member, v3+ a list (and refuse the old field).
        let member_id = StrBytes::from_string(self.member_id.clone());
        let request = if self.coordinator.version_for(ApiKey::LeaveGroup, 5) < 3 {
            LeaveGroupRequest::default()
                .with_group_id(self.group_id())
                .with_member_id(member_id)
        } else {
            LeaveGroupRequest::default()
                .with_group_id(self.group_id())
                .with_members(vec![MemberIdentity::default().with_member_id(member_id)])
        };
        let ResponseKind::LeaveGroup(response) =
            self.coordinator
                .send(ApiKey::LeaveGroup, 5, RequestKind::LeaveGroup(request))?
        else {
            bail!("unexpected answer to LeaveGroup");
        };
        crate::admin::check(response.error_code, "LeaveGroup")?;
        self.member_id.clear();
        Ok(())
    }
}

fn connect_coordinator(cluster: &mut Cluster, group: &str) -> Result<AdminClient> {
    let timeout = cluster.timeout();
    let mut attempt = 0;
    loop {
        let found = cluster
            .any_client()
            .and_then(|c| c.find_coordinator(0, group));
        match found {
            Ok((_, address)) => return AdminClient::connect(&address, timeout),
            Err(err) if is_connection_error(&err) && attempt + 1 < ATTEMPTS_MAX => {
                cluster.drop_any_client();
                std::thread::sleep(backoff(attempt));
                attempt += 1;
            }
            Err(err) => return Err(err),
        }
    }
}

/// An i16 version then the struct, as the consumer protocol embeds its messages.
fn encode_versioned(message: &impl Encodable) -> Result<Bytes> {
    let mut buf = BytesMut::new();
    buf.put_i16(CONSUMER_PROTOCOL_VERSION);
    message
        .encode(&mut buf, CONSUMER_PROTOCOL_VERSION)
        .map_err(|e| anyhow!("cannot encode the consumer protocol: {e}"))?;
    Ok(buf.freeze())
}

/// The topics of a member's ConsumerProtocolSubscription (any version: each starts with v0).
fn subscribed_topics(metadata: &Bytes) -> Result<Vec<String>> {
    let mut buf = metadata.clone();
    if buf.remaining() < 2 {
        bail!("a member's subscription is too short");
    }
    let version = buf.get_i16().clamp(0, 3);
    // kafka-protocol may panic on hostile bytes; another member's metadata is not trusted.
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ConsumerProtocolSubscription::decode(&mut buf, version)
    }));
    match decoded {
        Ok(Ok(subscription)) => Ok(subscription.topics.iter().map(|t| t.to_string()).collect()),
        _ => bail!("cannot decode a member's subscription"),
    }
}

/// This member's partitions of `topic` in its ConsumerProtocolAssignment.
fn assigned_partitions(assignment: &Bytes, topic: &str) -> Result<Vec<i32>> {
    let mut buf = assignment.clone();
    if buf.remaining() < 2 {
        return Ok(Vec::new()); // an empty assignment: more members than partitions
    }
    let version = buf.get_i16().clamp(0, 3);
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ConsumerProtocolAssignment::decode(&mut buf, version)
    }));
    let assignment = match decoded {
        Ok(Ok(assignment)) => assignment,
        _ => return Err(anyhow!("cannot decode the group's assignment")).context("SyncGroup"),
    };
    let mut partitions: Vec<i32> = assignment
        .assigned_partitions
        .iter()
        .filter(|t| t.topic.as_str() == topic)
        .flat_map(|t| t.partitions.iter().copied())
        .collect();
    partitions.sort_unstable();
    Ok(partitions)
}

/// Kafka's RangeAssignor: per topic, the members subscribed to it sorted by member id get
/// consecutive ranges of its partitions, the first `count % members` one partition more.
pub fn range_assign(
    members: &[(String, Vec<String>)],
    partition_counts: &BTreeMap<String, usize>,
) -> BTreeMap<String, BTreeMap<String, Vec<i32>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<i32>>> = members
        .iter()
        .map(|(m, _)| (m.clone(), BTreeMap::new()))
        .collect();
    for (topic, count) in partition_counts {
        let mut subscribers: Vec<&String> = members
            .iter()
            .filter(|(_, topics)| topics.contains(topic))
            .map(|(m, _)| m)
            .collect();
        subscribers.sort();
        subscribers.dedup();
        if subscribers.is_empty() {
            continue;
        }
        let per_member = count / subscribers.len();
        let extra = count % subscribers.len();
        for (i, member) in subscribers.into_iter().enumerate() {
            let start = i * per_member + i.min(extra);
            let length = per_member + usize::from(i < extra);
            if length == 0 {
                continue;
            }
            let partitions = (start..start + length).map(|p| p as i32).collect();
            if let Some(assignment) = out.get_mut(member) {
                assignment.insert(topic.clone(), partitions);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(list: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        list.iter()
            .map(|(m, t)| (m.to_string(), t.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn range_gives_the_first_members_the_extra_partitions() {
        // Kafka's RangeAssignorTest: 2 consumers, 3 partitions -> [0,1] and [2].
        let counts = BTreeMap::from([("t".to_string(), 3), ("u".to_string(), 2)]);
        let got = range_assign(&members(&[("c2", &["t"]), ("c1", &["t", "u"])]), &counts);
        assert_eq!(got["c1"]["t"], vec![0, 1]);
        assert_eq!(got["c2"]["t"], vec![2]);
        assert_eq!(got["c1"]["u"], vec![0, 1]);
        assert!(!got["c2"].contains_key("u"));
        // More members than partitions: the last ones get nothing.
        let counts = BTreeMap::from([("t".to_string(), 1)]);
        let got = range_assign(&members(&[("a", &["t"]), ("b", &["t"])]), &counts);
        assert_eq!(got["a"]["t"], vec![0]);
        assert!(got["b"].is_empty());
    }

    #[test]
    fn subscriptions_and_assignments_round_trip_through_the_consumer_protocol() {
        let subscription = ConsumerProtocolSubscription::default()
            .with_topics(vec![StrBytes::from_static_str("t")]);
        let bytes = encode_versioned(&subscription).unwrap();
        assert_eq!(subscribed_topics(&bytes).unwrap(), vec!["t".to_string()]);
        assert!(subscribed_topics(&Bytes::from_static(&[0, 0, 0xff])).is_err());
        let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            AssignedTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![2, 0]),
            AssignedTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("other")))
                .with_partitions(vec![1]),
        ]);
        let bytes = encode_versioned(&assignment).unwrap();
        assert_eq!(assigned_partitions(&bytes, "t").unwrap(), vec![0, 2]);
        assert!(assigned_partitions(&Bytes::new(), "t").unwrap().is_empty());
    }
}
