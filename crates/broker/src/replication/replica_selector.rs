//! KIP-392 fetch from follower: which replica a consumer should read from (Kafka
//! `ReplicaManager.findPreferredReadReplica` with `RackAwareReplicaSelector`).
//!
//! Pure: the leader hands in what it knows of each replica (rack from the metadata image,
//! log end and log start offsets and last caught-up time from its follower states) and gets
//! back the broker id to send as `preferred_read_replica`, or `None` to serve the fetch itself.
//!
//! Kafka's rules, kept here:
//! - candidates are the followers in the committed ISR (a lagging follower would keep the
//!   consumer behind indefinitely) whose log covers the fetch offset (log start <= fetch
//!   offset <= log end), on a live (unfenced) broker with an endpoint on the client listener;
//! - `RackAwareReplicaSelector`: no client rack, or no replica in the client's rack, or the
//!   leader in the client's rack: the leader; otherwise the most caught-up replica of that rack
//!   (`ReplicaView.comparator`: largest log end offset, then shortest time since last caught
//!   up, then largest broker id);
//! - the leader is never sent as the preferred read replica (it would be `None` anyway).

/// The `replica.selector.class` Fjord implements (Kafka's class name, as clients' and
/// operators' configs spell it).
pub const RACK_AWARE_REPLICA_SELECTOR: &str =
    "org.apache.kafka.common.replica.RackAwareReplicaSelector";

/// The replica selectors Fjord knows (`replica.selector.class`; unset = leader only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaSelector {
    /// Kafka `RackAwareReplicaSelector`.
    RackAware,
}

impl ReplicaSelector {
    /// Parses `replica.selector.class`: `None` for unset (empty), an error for a class Fjord
    /// does not implement. The short class name is accepted too.
    pub fn parse(value: &str) -> Result<Option<Self>, String> {
        match value.trim() {
            "" => Ok(None),
            RACK_AWARE_REPLICA_SELECTOR | "RackAwareReplicaSelector" => {
                Ok(Some(ReplicaSelector::RackAware))
            }
            other => Err(format!(
                "unknown replica selector {other}: Fjord implements {RACK_AWARE_REPLICA_SELECTOR}"
            )),
        }
    }
}

/// What the leader knows of one replica when it picks a preferred read replica (Kafka
/// `ReplicaView` plus the ISR and offsets `findPreferredReadReplica` filters on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaCandidate<'a> {
    pub broker_id: i32,
    /// The broker's rack, `None` when it has none.
    pub rack: Option<&'a str>,
    /// Whether the broker is registered, unfenced and has an endpoint on the client listener
    /// (Kafka `getPartitionReplicaEndpoints`): others are never chosen.
    pub alive: bool,
    pub in_isr: bool,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    /// `now - last caught up time` (0 for the leader).
    pub time_since_last_caught_up_ms: i64,
}

/// Kafka `findPreferredReadReplica` + `RackAwareReplicaSelector.select`: the follower a
/// consumer in `client_rack` fetching at `fetch_offset` should read from, or `None` to read
/// from the leader (`leader_rack` is the leader's own rack).
pub fn preferred_read_replica(
    selector: ReplicaSelector,
    client_rack: &str,
    leader_rack: Option<&str>,
    followers: &[ReplicaCandidate<'_>],
    fetch_offset: i64,
) -> Option<i32> {
    match selector {
        ReplicaSelector::RackAware => {}
    }
    if client_rack.is_empty() || leader_rack == Some(client_rack) {
        return None;
    }
    followers
        .iter()
        .filter(|f| {
            f.alive
                && f.in_isr
                && f.log_end_offset >= fetch_offset
                && f.log_start_offset <= fetch_offset
                && f.rack == Some(client_rack)
        })
        .max_by(|a, b| {
            a.log_end_offset
                .cmp(&b.log_end_offset)
                .then(
                    b.time_since_last_caught_up_ms
                        .cmp(&a.time_since_last_caught_up_ms),
                )
                .then(a.broker_id.cmp(&b.broker_id))
        })
        .map(|f| f.broker_id)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn follower(id: i32, rack: &str, leo: i64, lag_ms: i64) -> ReplicaCandidate<'_> {
        ReplicaCandidate {
            broker_id: id,
            rack: Some(rack),
            alive: true,
            in_isr: true,
            log_start_offset: 0,
            log_end_offset: leo,
            time_since_last_caught_up_ms: lag_ms,
        }
    }

    const RACK: ReplicaSelector = ReplicaSelector::RackAware;

    #[test]
    fn parses_kafkas_class_name_and_refuses_others() {
        assert_eq!(ReplicaSelector::parse(""), Ok(None));
        assert_eq!(
            ReplicaSelector::parse(RACK_AWARE_REPLICA_SELECTOR),
            Ok(Some(RACK))
        );
        assert_eq!(
            ReplicaSelector::parse("RackAwareReplicaSelector"),
            Ok(Some(RACK))
        );
        assert!(ReplicaSelector::parse("com.example.MySelector").is_err());
    }

    #[test]
    fn same_rack_follower_is_preferred_and_the_leader_never_is() {
        let followers = [follower(2, "b", 10, 0), follower(3, "c", 10, 0)];
        assert_eq!(
            preferred_read_replica(RACK, "b", Some("a"), &followers, 5),
            Some(2)
        );
        assert_eq!(
            preferred_read_replica(RACK, "c", Some("a"), &followers, 5),
            Some(3)
        );
        // The leader is in the client's rack: read from it.
        assert_eq!(
            preferred_read_replica(RACK, "a", Some("a"), &followers, 5),
            None
        );
        // No replica in the client's rack, or no client rack.
        assert_eq!(
            preferred_read_replica(RACK, "z", Some("a"), &followers, 5),
            None
        );
        assert_eq!(
            preferred_read_replica(RACK, "", Some("a"), &followers, 5),
            None
        );
    }

    #[test]
    fn only_live_isr_members_covering_the_offset_qualify() {
        let mut out_of_isr = follower(2, "b", 10, 0);
        out_of_isr.in_isr = false;
        assert_eq!(
            preferred_read_replica(RACK, "b", Some("a"), &[out_of_isr], 5),
            None
        );
        let mut fenced = follower(2, "b", 10, 0);
        fenced.alive = false;
        assert_eq!(
            preferred_read_replica(RACK, "b", Some("a"), &[fenced], 5),
            None
        );
        // Log end below the fetch offset: it could not answer.
        assert_eq!(
            preferred_read_replica(RACK, "b", Some("a"), &[follower(2, "b", 4, 0)], 5),
            None
        );
        assert_eq!(
            preferred_read_replica(RACK, "b", Some("a"), &[follower(2, "b", 5, 0)], 5),
            Some(2)
        );
        // Log start above the fetch offset.
        let mut truncated = follower(2, "b", 10, 0);
        truncated.log_start_offset = 6;
        assert_eq!(
            preferred_read_replica(RACK, "b", Some("a"), &[truncated], 5),
            None
        );
        let mut rackless = follower(2, "b", 10, 0);
        rackless.rack = None;
        assert_eq!(
            preferred_read_replica(RACK, "b", None, &[rackless], 5),
            None
        );
    }

    #[test]
    fn most_caught_up_wins_then_recently_caught_up_then_larger_id() {
        let followers = [
            follower(2, "b", 9, 0),
            follower(3, "b", 10, 500),
            follower(4, "b", 10, 100),
        ];
        assert_eq!(
            preferred_read_replica(RACK, "b", Some("a"), &followers, 5),
            Some(4)
        );
        let tied = [follower(2, "b", 10, 100), follower(5, "b", 10, 100)];
        assert_eq!(
            preferred_read_replica(RACK, "b", Some("a"), &tied, 5),
            Some(5)
        );
    }

    proptest! {
        /// Whatever the replicas, a choice is a live ISR follower in the client's rack whose
        /// log covers the fetch offset, and no qualifying follower has a larger log end.
        #[test]
        fn a_choice_always_qualifies_and_is_most_caught_up(
            replicas in proptest::collection::vec(
                (0u8..3, any::<bool>(), any::<bool>(), 0i64..20, 0i64..40, 0i64..1000),
                0..6,
            ),
            client_rack in 0u8..3,
            leader_rack in 0u8..3,
            fetch_offset in 0i64..40,
        ) {
            let racks = ["r0", "r1", "r2"];
            let followers: Vec<ReplicaCandidate> = replicas
                .iter()
                .enumerate()
                .map(|(i, &(rack, alive, in_isr, start, leo, lag))| ReplicaCandidate {
                    broker_id: i as i32 + 2,
                    rack: Some(racks[rack as usize]),
                    alive,
                    in_isr,
                    log_start_offset: start,
                    log_end_offset: leo,
                    time_since_last_caught_up_ms: lag,
                })
                .collect();
            let client = racks[client_rack as usize];
            let leader = racks[leader_rack as usize];
            let qualifies = |f: &ReplicaCandidate| {
                f.alive && f.in_isr && f.rack == Some(client)
                    && f.log_start_offset <= fetch_offset && f.log_end_offset >= fetch_offset
            };
            let chosen = preferred_read_replica(RACK, client, Some(leader), &followers, fetch_offset);
            match chosen {
                Some(id) => {
                    prop_assert!(client != leader);
                    let f = followers.iter().find(|f| f.broker_id == id).unwrap();
                    prop_assert!(qualifies(f));
                    prop_assert!(followers.iter().filter(|g| qualifies(g))
                        .all(|g| g.log_end_offset <= f.log_end_offset));
                }
                None => prop_assert!(client == leader || !followers.iter().any(qualifies)),
            }
        }
    }
}
