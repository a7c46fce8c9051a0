//! `LeaderState` against Kafka's `PartitionTest`/`ReplicaTest` behaviours.

use super::*;
use crate::replication::replica_log::{tests::client_batch, SimLog};

const LEADER: i32 = 1;
const LAG_MAX_MS: i64 = 10_000;
const T0: i64 = 1_000_000;

fn topic() -> Uuid {
    Uuid::from_u128(42)
}

fn registration(leader_epoch: i32, partition_epoch: i32, isr: &[i32]) -> PartitionRegistration {
    PartitionRegistration {
        leader: LEADER,
        leader_epoch,
        partition_epoch,
        replicas: vec![1, 2, 3],
        isr: isr.to_vec(),
    }
}

fn brokers() -> BTreeMap<i32, BrokerStatus> {
    (1..=3)
        .map(|id| {
            (
                id,
                BrokerStatus {
                    broker_epoch: 100 + i64::from(id),
                    fenced: false,
                    in_controlled_shutdown: false,
                },
            )
        })
        .collect()
}

fn config(min_insync_replicas: usize) -> ReplicationConfig {
    ReplicationConfig {
        replica_lag_time_max_ms: LAG_MAX_MS,
        min_insync_replicas,
    }
}

/// A leader log holding `records` records of older epochs, and a leader at epoch 5.
fn leader(records: usize, isr: &[i32], min_isr: usize) -> (LeaderState, SimLog) {
    let mut log = SimLog::new();
    if records > 0 {
        log.append_as_leader(&mut client_batch(records, 0), 4, T0)
            .unwrap();
    }
    let state = LeaderState::become_leader(
        topic(),
        0,
        (LEADER, 101),
        &registration(5, 10, isr),
        config(min_isr),
        &mut log,
        T0,
    )
    .unwrap();
    (state, log)
}

fn fetch(replica_id: i32, fetch_offset: i64, now_ms: i64, log: &SimLog) -> FollowerFetch {
    FollowerFetch {
        replica_id,
        broker_epoch: 100 + i64::from(replica_id),
        fetch_offset,
        log_start_offset: 0,
        now_ms,
        leader_log_end_offset: log.log_end_offset(),
    }
}

#[test]
fn become_leader_assigns_the_epoch_start_and_resets_followers() {
    let (state, log) = leader(10, &[1, 2, 3], 1);
    assert_eq!(state.leader_epoch_start_offset(), 10);
    assert_eq!(log.end_offset_for_epoch(5), Some((5, 10)));
    assert_eq!(log.end_offset_for_epoch(4), Some((4, 10)));
    let follower = state.follower(2).unwrap();
    assert_eq!(follower.log_end_offset, UNKNOWN_OFFSET);
    assert_eq!(
        follower.last_caught_up_time_ms, T0,
        "in the ISR: caught up now"
    );
    let (state, _) = leader(10, &[1, 2], 1);
    assert_eq!(state.follower(3).unwrap().last_caught_up_time_ms, 0);
    let mut log = SimLog::new();
    let mut other = registration(5, 10, &[1]);
    other.leader = 2;
    assert!(matches!(
        LeaderState::become_leader(topic(), 0, (LEADER, 101), &other, config(1), &mut log, T0),
        Err(LeaderStateError::NotLeader { leader: 2, .. })
    ));
}

#[test]
fn last_caught_up_time_follows_replica_update_fetch_state() {
    let (mut state, mut log) = leader(10, &[1, 2, 3], 1);
    // Fetch at the leader's log end: caught up at the fetch time.
    state
        .on_follower_fetch(&fetch(2, 10, T0 + 1, &log), Some(102))
        .unwrap();
    assert_eq!(state.follower(2).unwrap().last_caught_up_time_ms, T0 + 1);
    // The leader appends; a fetch below the new end but at the end the previous fetch saw
    // counts as caught up at the previous fetch's time.
    log.append_as_leader(&mut client_batch(5, 1), 5, T0)
        .unwrap();
    state
        .on_follower_fetch(&fetch(2, 10, T0 + 50, &log), Some(102))
        .unwrap();
    assert_eq!(state.follower(2).unwrap().last_caught_up_time_ms, T0 + 1);
    // Below both the current end and the end at the previous fetch: unchanged.
    state
        .on_follower_fetch(&fetch(2, 12, T0 + 60, &log), Some(102))
        .unwrap();
    assert_eq!(state.follower(2).unwrap().last_caught_up_time_ms, T0 + 1);
    state
        .on_follower_fetch(&fetch(2, 15, T0 + 70, &log), Some(102))
        .unwrap();
    assert_eq!(state.follower(2).unwrap().last_caught_up_time_ms, T0 + 70);
    assert_eq!(state.follower(2).unwrap().log_end_offset, 15);
    // Errors.
    assert_eq!(
        state.on_follower_fetch(&fetch(7, 0, T0, &log), None),
        Err(FollowerFetchError::NotReplica(7))
    );
    let stale = state.on_follower_fetch(&fetch(3, 0, T0, &log), Some(999));
    assert!(matches!(
        stale,
        Err(FollowerFetchError::StaleBrokerEpoch { .. })
    ));
    assert_eq!(
        stale.unwrap_err().response_error(),
        ResponseError::NotLeaderOrFollower
    );
}

#[test]
fn high_watermark_is_the_minimum_of_the_maximal_isr_and_monotonic() {
    let (mut state, mut log) = leader(10, &[1, 2, 3], 1);
    log.set_initial_high_watermark(0);
    let brokers = brokers();
    // Followers unknown (-1) hold the high watermark.
    assert!(!state.maybe_increment_high_watermark(&mut log, T0, &brokers));
    state
        .handle_follower_fetch(&fetch(2, 8, T0, &log), &mut log, &brokers)
        .unwrap();
    assert_eq!(log.high_watermark(), 0, "3 has not fetched");
    let effects = state
        .handle_follower_fetch(&fetch(3, 6, T0, &log), &mut log, &brokers)
        .unwrap();
    assert!(effects.high_watermark_moved);
    assert_eq!(log.high_watermark(), 6);
    assert_eq!(state.high_watermark_candidate(10, T0, &brokers), 6);
    // A follower going back (after a restart) never lowers it.
    state
        .handle_follower_fetch(&fetch(3, 2, T0, &log), &mut log, &brokers)
        .unwrap();
    assert_eq!(log.high_watermark(), 6);
}

#[test]
fn caught_up_follower_outside_the_isr_holds_the_high_watermark() {
    let (mut state, mut log) = leader(10, &[1], 1);
    log.set_initial_high_watermark(0);
    let brokers = brokers();
    // 2 catches up: its addition goes out and counts at once.
    let effects = state
        .handle_follower_fetch(&fetch(2, 10, T0, &log), &mut log, &brokers)
        .unwrap();
    assert!(effects.alter_partition.is_some());
    assert_eq!(log.high_watermark(), 10);
    // 3 catches up too, but one change is in flight: it is caught up, eligible, outside the
    // maximal ISR.
    let effects = state
        .handle_follower_fetch(&fetch(3, 10, T0 + 1, &log), &mut log, &brokers)
        .unwrap();
    assert_eq!(effects.alter_partition, None);
    log.append_as_leader(&mut client_batch(10, 1), 5, T0)
        .unwrap();
    state
        .handle_follower_fetch(&fetch(2, 20, T0 + 2, &log), &mut log, &brokers)
        .unwrap();
    assert_eq!(
        log.high_watermark(),
        10,
        "3 holds it: it may join any moment"
    );
    // Once 3 is no longer caught up it stops holding the high watermark.
    assert!(state.maybe_increment_high_watermark(&mut log, T0 + 2 * LAG_MAX_MS, &brokers));
    assert_eq!(log.high_watermark(), 20);
}

#[test]
fn expansion_counts_at_once_shrink_only_once_committed() {
    let (mut state, mut log) = leader(10, &[1, 2], 1);
    log.set_initial_high_watermark(0);
    let brokers = brokers();
    state
        .handle_follower_fetch(&fetch(2, 10, T0, &log), &mut log, &brokers)
        .unwrap();
    assert_eq!(log.high_watermark(), 10);
    // 3 below the epoch start (10): not in sync yet.
    let effects = state
        .handle_follower_fetch(&fetch(3, 9, T0, &log), &mut log, &brokers)
        .unwrap();
    assert_eq!(effects.alter_partition, None);
    let effects = state
        .handle_follower_fetch(&fetch(3, 10, T0, &log), &mut log, &brokers)
        .unwrap();
    let item = effects.alter_partition.expect("expansion proposed");
    assert_eq!(
        item.new_isr_with_epochs,
        vec![(1, 101), (2, 102), (3, 103)],
        "each member with the broker epoch of its fetches"
    );
    assert_eq!((item.leader_epoch, item.partition_epoch), (5, 10));
    assert!(matches!(
        state.isr_state(),
        IsrState::PendingExpand { adding: 3, .. }
    ));
    assert_eq!(state.isr_state().maximal_isr().len(), 3);
    assert_eq!(state.isr_state().isr().len(), 2);
    // While it is in flight, nothing else is proposed.
    assert!(state.shrink_candidates(T0 + 10 * LAG_MAX_MS, 10).is_empty());
    // The pending member holds the high watermark.
    log.append_as_leader(&mut client_batch(5, 1), 5, T0)
        .unwrap();
    state
        .handle_follower_fetch(&fetch(2, 15, T0, &log), &mut log, &brokers)
        .unwrap();
    assert_eq!(log.high_watermark(), 10);
    let outcome = state.on_alter_partition_result(
        &item,
        Ok(LeaderAndIsr {
            leader_epoch: 5,
            partition_epoch: 11,
            isr: vec![1, 2, 3],
        }),
        &mut log,
        T0,
        &brokers,
    );
    assert_eq!(
        outcome,
        AlterPartitionOutcome::Committed {
            high_watermark_moved: false
        }
    );
    assert_eq!(state.partition_epoch(), 11);
    // 3 stops fetching: shrink proposed after the lag, but it counts until committed.
    let later = T0 + LAG_MAX_MS + 1;
    assert_eq!(state.shrink_candidates(later, 15), BTreeSet::from([3]));
    let shrink = state.maybe_shrink_isr(later, 15).unwrap();
    assert_eq!(shrink.new_isr(), BTreeSet::from([1, 2]));
    assert!(!state.maybe_increment_high_watermark(&mut log, later, &brokers));
    assert_eq!(log.high_watermark(), 10);
    let outcome = state.on_alter_partition_result(
        &shrink,
        Ok(LeaderAndIsr {
            leader_epoch: 5,
            partition_epoch: 12,
            isr: vec![1, 2],
        }),
        &mut log,
        later,
        &brokers,
    );
    assert_eq!(
        outcome,
        AlterPartitionOutcome::Committed {
            high_watermark_moved: true
        }
    );
    assert_eq!(log.high_watermark(), 15);
}

#[test]
fn a_follower_at_the_leader_end_is_never_out_of_sync() {
    let (mut state, log) = leader(10, &[1, 2, 3], 1);
    state
        .on_follower_fetch(&fetch(2, 10, T0, &log), Some(102))
        .unwrap();
    // 2 has not fetched for ages but has everything; 3 never fetched.
    let much_later = T0 + 100 * LAG_MAX_MS;
    assert_eq!(state.shrink_candidates(much_later, 10), BTreeSet::from([3]));
    assert_eq!(state.shrink_candidates(T0, 10), BTreeSet::new());
}

#[test]
fn ineligible_followers_do_not_join() {
    let (mut state, mut log) = leader(0, &[1], 1);
    let mut brokers = brokers();
    brokers.get_mut(&2).unwrap().fenced = true;
    brokers.get_mut(&3).unwrap().in_controlled_shutdown = true;
    for id in [2, 3] {
        let effects = state
            .handle_follower_fetch(&fetch(id, 0, T0, &log), &mut log, &brokers)
            .unwrap();
        assert_eq!(effects.alter_partition, None, "broker {id}");
    }
    // A new incarnation in the image (epoch 200) and a fetch still carrying the old one: the
    // fetch is fenced.
    let mut brokers = self::brokers();
    brokers.get_mut(&2).unwrap().broker_epoch = 200;
    assert!(state
        .handle_follower_fetch(&fetch(2, 0, T0, &log), &mut log, &brokers)
        .is_err());
    // A stored epoch older than the image's (fetched before it re-registered) is not eligible.
    let brokers = self::brokers();
    state
        .on_follower_fetch(&fetch(2, 0, T0, &log), Some(102))
        .unwrap();
    let mut newer = brokers.clone();
    newer.get_mut(&2).unwrap().broker_epoch = 300;
    assert!(!state.expand_candidate(2, 0, &newer));
    assert!(state.expand_candidate(2, 0, &brokers));
}

#[test]
fn high_watermark_frozen_while_the_committed_isr_is_below_min_isr() {
    // RF 3, min.insync.replicas 2, ISR {1}: Kafka's isUnderMinIsr check.
    let (mut state, mut log) = leader(10, &[1], 2);
    log.set_initial_high_watermark(0);
    let brokers = brokers();
    assert!(state.is_under_min_isr());
    assert!(!state.maybe_increment_high_watermark(&mut log, T0, &brokers));
    assert_eq!(log.high_watermark(), 0);
    assert_eq!(
        state.check_append(true),
        Err(NotEnoughReplicas {
            isr_size: 1,
            min_isr: 2
        })
    );
    assert_eq!(state.check_append(false), Ok(()));
    // 2 catches up; its pending addition does not unfreeze (committed ISR counts) ...
    let effects = state
        .handle_follower_fetch(&fetch(2, 10, T0, &log), &mut log, &brokers)
        .unwrap();
    let item = effects.alter_partition.unwrap();
    assert!(!effects.high_watermark_moved);
    assert_eq!(log.high_watermark(), 0);
    // ... the committed one does.
    let outcome = state.on_alter_partition_result(
        &item,
        Ok(LeaderAndIsr {
            leader_epoch: 5,
            partition_epoch: 11,
            isr: vec![1, 2],
        }),
        &mut log,
        T0,
        &brokers,
    );
    assert_eq!(
        outcome,
        AlterPartitionOutcome::Committed {
            high_watermark_moved: true
        }
    );
    assert_eq!(log.high_watermark(), 10);
    assert_eq!(state.check_append(true), Ok(()));
    // min.insync.replicas above the replication factor: the effective min ISR is RF.
    state.set_config(config(5));
    assert_eq!(state.effective_min_isr(), 3);
    assert_eq!(effective_min_isr(2, 1), 1);
}

#[test]
fn check_enough_replicas_follows_delayed_produce() {
    let (mut state, mut log) = leader(10, &[1, 2], 2);
    assert_eq!(state.check_enough_replicas(11, 10), AckDecision::Wait);
    assert_eq!(state.check_enough_replicas(10, 10), AckDecision::Satisfied);
    // The ISR shrank to the leader after the append: reached, but not enough replicas.
    state
        .apply_registration(&registration(5, 11, &[1]), &mut log, T0)
        .unwrap();
    assert_eq!(
        state.check_enough_replicas(10, 10),
        AckDecision::NotEnoughReplicasAfterAppend
    );
}

#[test]
fn alter_partition_errors_follow_kafka() {
    let brokers = brokers();
    let setup = || {
        let (mut state, mut log) = leader(0, &[1], 1);
        let item = state
            .handle_follower_fetch(&fetch(2, 0, T0, &log), &mut log, &brokers)
            .unwrap()
            .alter_partition
            .unwrap();
        (state, log, item)
    };
    let (mut state, mut log, item) = setup();
    let outcome = state.on_alter_partition_result(
        &item,
        Err(ResponseError::IneligibleReplica),
        &mut log,
        T0,
        &brokers,
    );
    assert_eq!(outcome, AlterPartitionOutcome::Reverted);
    assert_eq!(
        state.isr_state(),
        &IsrState::Committed {
            isr: BTreeSet::from([1])
        }
    );
    for error in [
        ResponseError::FencedLeaderEpoch,
        ResponseError::InvalidUpdateVersion,
        ResponseError::NewLeaderElected,
    ] {
        let (mut state, mut log, item) = setup();
        let outcome = state.on_alter_partition_result(&item, Err(error), &mut log, T0, &brokers);
        assert_eq!(outcome, AlterPartitionOutcome::AwaitMetadata, "{error:?}");
        assert!(state.isr_state().is_inflight());
    }
    let (mut state, mut log, item) = setup();
    let outcome = state.on_alter_partition_result(
        &item,
        Err(ResponseError::RequestTimedOut),
        &mut log,
        T0,
        &brokers,
    );
    assert_eq!(outcome, AlterPartitionOutcome::Retry(item.clone()));
    // An answer with another leader epoch is ignored and the change stays pending.
    let outcome = state.on_alter_partition_result(
        &item,
        Ok(LeaderAndIsr {
            leader_epoch: 6,
            partition_epoch: 11,
            isr: vec![1, 2],
        }),
        &mut log,
        T0,
        &brokers,
    );
    assert_eq!(outcome, AlterPartitionOutcome::Ignored);
    assert!(state.isr_state().is_inflight());
    // The image's newer registration ends it; then the old answer is ignored.
    assert!(state
        .apply_registration(&registration(5, 11, &[1, 2]), &mut log, T0)
        .unwrap());
    let outcome = state.on_alter_partition_result(
        &item,
        Ok(LeaderAndIsr {
            leader_epoch: 5,
            partition_epoch: 11,
            isr: vec![1, 2],
        }),
        &mut log,
        T0,
        &brokers,
    );
    assert_eq!(outcome, AlterPartitionOutcome::Ignored);
}

#[test]
fn registrations_with_an_older_partition_epoch_are_ignored() {
    let (mut state, mut log) = leader(10, &[1, 2, 3], 1);
    assert!(!state
        .apply_registration(&registration(5, 9, &[1]), &mut log, T0)
        .unwrap());
    assert_eq!(state.isr_state().isr().len(), 3);
    // A new leader epoch (re-elected): the epoch starts at the current log end.
    log.append_as_leader(&mut client_batch(3, 9), 5, T0)
        .unwrap();
    assert!(state
        .apply_registration(&registration(6, 11, &[1, 2]), &mut log, T0)
        .unwrap());
    assert_eq!(state.leader_epoch(), 6);
    assert_eq!(state.leader_epoch_start_offset(), 13);
    assert_eq!(log.end_offset_for_epoch(5), Some((5, 13)));
    let mut moved = registration(7, 12, &[2]);
    moved.leader = 2;
    assert!(matches!(
        state.apply_registration(&moved, &mut log, T0),
        Err(LeaderStateError::NotLeader { leader: 2, .. })
    ));
}

#[test]
fn a_registration_at_our_partition_epoch_keeps_a_pending_expansion() {
    // Found by the simulation (seed 3391 of 5,000): Kafka's makeLeader would reset the
    // pending addition of 3 here and let the high watermark pass 3's log end while the
    // controller admits 3 into the ISR.
    let (mut state, mut log) = leader(10, &[1, 2, 3], 1);
    log.set_initial_high_watermark(0);
    let brokers = brokers();
    for id in [2, 3] {
        state
            .handle_follower_fetch(&fetch(id, 10, T0, &log), &mut log, &brokers)
            .unwrap();
    }
    assert_eq!(log.high_watermark(), 10);
    log.append_as_leader(&mut client_batch(10, 1), 5, T0)
        .unwrap();
    let t1 = T0 + LAG_MAX_MS + 1;
    state
        .handle_follower_fetch(&fetch(2, 20, t1, &log), &mut log, &brokers)
        .unwrap();
    let shrink = state.maybe_shrink_isr(t1, 20).unwrap();
    let answer = LeaderAndIsr {
        leader_epoch: 5,
        partition_epoch: 11,
        isr: vec![1, 2],
    };
    state.on_alter_partition_result(&shrink, Ok(answer), &mut log, t1, &brokers);
    assert_eq!(log.high_watermark(), 20);
    log.append_as_leader(&mut client_batch(5, 2), 5, T0)
        .unwrap();
    // 3 is back at the high watermark (but not caught up in time): its addition goes out.
    let effects = state
        .handle_follower_fetch(&fetch(3, 20, t1 + 1, &log), &mut log, &brokers)
        .unwrap();
    assert!(effects.alter_partition.is_some());
    // The metadata for epoch 11 arrives after the answer: nothing new, the addition stays.
    assert!(!state
        .apply_registration(&registration(5, 11, &[1, 2]), &mut log, t1 + 1)
        .unwrap());
    assert!(matches!(
        state.isr_state(),
        IsrState::PendingExpand { adding: 3, .. }
    ));
    state
        .handle_follower_fetch(&fetch(2, 25, t1 + 1, &log), &mut log, &brokers)
        .unwrap();
    assert_eq!(log.high_watermark(), 20, "3 still holds the high watermark");
}
