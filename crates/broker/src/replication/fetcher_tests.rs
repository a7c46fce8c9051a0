//! `FetcherCore` and the leader side of follower fetches, against Kafka's
//! `AbstractFetcherThreadTest` / `PartitionTest` behaviours.

use std::collections::BTreeMap;

use super::*;
use crate::replication::leader_state::{BrokerStatus, PartitionRegistration, ReplicationConfig};
use crate::replication::replica_log::{tests::client_batch, SimLog};

const T0: i64 = 1_000_000;
const BACKOFF_MS: i64 = 1_000;

fn key() -> PartitionKey {
    (Uuid::from_u128(9), 0)
}

fn fetcher() -> FetcherCore {
    FetcherCore::new(
        1,
        FetcherConfig {
            fetch_backoff_ms: BACKOFF_MS,
            max_partitions: 4,
        },
    )
}

/// A log written by leaders: `(epoch, records)` appended in order.
fn log_of(epochs: &[(i32, usize)]) -> SimLog {
    let mut log = SimLog::new();
    for (tag, &(epoch, records)) in epochs.iter().enumerate() {
        log.append_as_leader(&mut client_batch(records, tag as u64), epoch, T0)
            .unwrap();
    }
    log
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

fn leader_state(log: &mut SimLog, leader_epoch: i32, isr: &[i32]) -> LeaderState {
    LeaderState::become_leader(
        key().0,
        key().1,
        (1, 101),
        &PartitionRegistration {
            leader: 1,
            leader_epoch,
            partition_epoch: 0,
            replicas: vec![1, 2, 3],
            isr: isr.to_vec(),
        },
        ReplicationConfig {
            replica_lag_time_max_ms: 30_000,
            min_insync_replicas: 1,
        },
        log,
        T0,
    )
    .unwrap()
}

fn expect_fetch(request: Option<PartitionRequest>) -> FetchPartitionRequest {
    match request {
        Some(PartitionRequest::Fetch(fetch)) => fetch,
        other => panic!("expected a fetch, got {other:?}"),
    }
}

/// Runs fetch rounds between `follower` (broker 2) and the leader until nothing changes.
fn replicate(
    core: &mut FetcherCore,
    follower: &mut SimLog,
    leader: &mut LeaderState,
    leader_log: &mut SimLog,
) -> Vec<FetchOutcome> {
    let mut outcomes = Vec::new();
    for round in 0..20 {
        let request = expect_fetch(core.poll(&key(), follower, T0 + round).unwrap());
        let (response, _) = serve_follower_fetch(
            leader,
            leader_log,
            &brokers(),
            (2, 102),
            &request,
            1 << 20,
            T0 + round,
        );
        let outcome = core
            .on_fetch_response(&request, response, follower, T0 + round)
            .unwrap();
        let done = follower.log_end_offset() == leader_log.log_end_offset()
            && follower.high_watermark() == leader_log.high_watermark()
            && leader_log.high_watermark() == leader_log.log_end_offset()
            && matches!(outcome, FetchOutcome::Appended { .. });
        outcomes.push(outcome);
        if done {
            break;
        }
    }
    outcomes
}

#[test]
fn add_partition_starts_at_the_log_end_with_epochs_else_truncating_at_the_high_watermark() {
    let mut core = fetcher();
    let log = log_of(&[(0, 5)]);
    assert!(core.add_partition(key(), 3, &log).unwrap());
    let state = *core.partition(&key()).unwrap();
    assert_eq!((state.fetch_offset, state.phase), (5, FetchPhase::Fetching));
    // Same epoch: kept. New epoch: re-initialised.
    assert!(!core.add_partition(key(), 3, &log).unwrap());
    assert!(core.add_partition(key(), 4, &log).unwrap());

    let mut core = fetcher();
    let mut legacy = SimLog::new();
    let mut bytes = stored(0, -1, 2);
    bytes.extend(stored(2, -1, 4));
    legacy.append_as_follower(&bytes, T0).unwrap();
    legacy.update_follower_high_watermark(2);
    assert_eq!(legacy.latest_epoch(), None);
    core.add_partition(key(), 3, &legacy).unwrap();
    assert_eq!(
        core.partition(&key()).unwrap().phase,
        FetchPhase::Truncating
    );
    // Without epochs the truncation is to the high watermark, then fetching (KIP-279).
    let request = expect_fetch(core.poll(&key(), &mut legacy, T0).unwrap());
    assert_eq!(legacy.log_end_offset(), 2);
    assert_eq!(request.fetch_offset, 2);
    assert_eq!(request.last_fetched_epoch, None);

    let mut core = fetcher();
    for partition in 0..4 {
        core.add_partition((key().0, partition), 0, &log).unwrap();
    }
    assert_eq!(
        core.add_partition((key().0, 9), 0, &log),
        Err(FetcherError::Full(4))
    );
}

/// A batch as stored by a leader (base offset and epoch set).
fn stored(base_offset: i64, epoch: i32, records: usize) -> Vec<u8> {
    let mut batch = client_batch(records, base_offset as u64);
    fjord_protocol::records::set_base_offset(&mut batch, base_offset);
    fjord_protocol::records::set_partition_leader_epoch(&mut batch, epoch);
    batch
}

#[test]
fn follower_catches_up_and_takes_the_leader_high_watermark() {
    let mut leader_log = log_of(&[(0, 3), (1, 4)]);
    let mut leader = leader_state(&mut leader_log, 2, &[1, 2]);
    leader_log.set_initial_high_watermark(0);
    let mut follower = SimLog::new();
    let mut core = fetcher();
    core.add_partition(key(), 2, &follower).unwrap();
    // Empty follower: Truncating to its high watermark 0, then fetching.
    let outcomes = replicate(&mut core, &mut follower, &mut leader, &mut leader_log);
    assert!(matches!(
        outcomes[0],
        FetchOutcome::Appended {
            records_count: 7,
            ..
        }
    ));
    assert_eq!(follower.batches(), leader_log.batches());
    assert_eq!(follower.epoch_entries(), &[(0, 0), (1, 3)]);
    // The leader learned the follower's end on the second fetch and the follower its high
    // watermark on the third (answers carry the high watermark before the fetch's effects).
    assert_eq!(leader_log.high_watermark(), 7);
    assert_eq!(follower.high_watermark(), 7);
    assert_eq!(core.partition(&key()).unwrap().lag, Some(0));
}

#[test]
fn diverging_epoch_truncates_to_the_leaders_epoch_end_then_refetches() {
    // Follower took epoch 1 up to offset 9; the new leader (epoch 3) only had epoch 1 up to 6,
    // then epoch 2 from 6.
    let mut follower = log_of(&[(0, 3), (1, 3), (1, 3)]);
    follower.update_follower_high_watermark(3);
    let mut leader_log = log_of(&[(0, 3), (1, 3), (2, 4)]);
    let mut leader = leader_state(&mut leader_log, 3, &[1, 2]);
    let mut core = fetcher();
    core.add_partition(key(), 3, &follower).unwrap();
    let request = expect_fetch(core.poll(&key(), &mut follower, T0).unwrap());
    assert_eq!(
        (request.fetch_offset, request.last_fetched_epoch),
        (9, Some(1))
    );
    let (response, effects) = serve_follower_fetch(
        &mut leader,
        &mut leader_log,
        &brokers(),
        (2, 102),
        &request,
        1 << 20,
        T0,
    );
    assert_eq!(
        response.diverging_epoch,
        Some(EpochEndOffset {
            epoch: 1,
            end_offset: 6
        })
    );
    assert!(response.records.is_empty());
    assert_eq!(effects, FollowerFetchEffects::default(), "no state update");
    let outcome = core
        .on_fetch_response(&request, response, &mut follower, T0)
        .unwrap();
    assert_eq!(
        outcome,
        FetchOutcome::Truncated {
            offset: 6,
            completed: true,
            below_high_watermark: false
        }
    );
    assert_eq!(follower.log_end_offset(), 6);
}

#[test]
fn unknown_leader_epoch_truncates_to_an_intermediate_point_and_asks_again() {
    // Follower: epochs 0 and 2 (it never saw epoch 1); leader (epoch 3): epochs 0 and 1.
    let mut follower = log_of(&[(0, 3), (2, 4)]);
    let mut leader_log = log_of(&[(0, 3), (1, 2)]);
    leader_log.assign_epoch_start_offset(3, 5).unwrap();
    // The leader answers epoch 2 with (1, 5): we do not know 1, so we cut to the end of our
    // largest epoch below 1 (epoch 0 ends at 3) and look again.
    let answer = check_follower_divergence(&leader_log, 7, Some(2))
        .unwrap()
        .unwrap();
    assert_eq!(
        answer,
        EpochEndOffset {
            epoch: 1,
            end_offset: 5
        }
    );
    assert_eq!(offset_truncation_state(&follower, answer), (3, false));
    follower.truncate_to(3).unwrap();
    assert_eq!(follower.latest_epoch(), Some(0));
}

#[test]
fn offset_truncation_state_follows_kafka() {
    let mut log = log_of(&[(0, 3), (2, 4), (4, 3)]);
    log.update_follower_high_watermark(4);
    // UNDEFINED end offset: the high watermark.
    assert_eq!(
        offset_truncation_state(&log, EpochEndOffset::UNDEFINED),
        (4, true)
    );
    // Old protocol (no epoch): the leader's offset, capped at our end.
    let no_epoch = |end_offset| EpochEndOffset {
        epoch: -1,
        end_offset,
    };
    assert_eq!(offset_truncation_state(&log, no_epoch(5)), (5, true));
    assert_eq!(offset_truncation_state(&log, no_epoch(50)), (10, true));
    let at = |epoch, end_offset| EpochEndOffset { epoch, end_offset };
    // Same epoch: min(ours, leader's, our end).
    assert_eq!(offset_truncation_state(&log, at(2, 5)), (5, true));
    assert_eq!(offset_truncation_state(&log, at(2, 9)), (7, true));
    assert_eq!(offset_truncation_state(&log, at(4, 99)), (10, true));
    // An epoch we never had (3): our end of epoch 2, not final.
    assert_eq!(offset_truncation_state(&log, at(3, 8)), (7, false));
    // Older than anything we know: our first start offset answers with that epoch.
    let mut trimmed = log_of(&[(5, 3)]);
    trimmed.update_follower_high_watermark(0);
    assert_eq!(offset_truncation_state(&trimmed, at(1, 2)), (0, true));
}

#[test]
fn leader_divergence_check_follows_read_records() {
    let log = log_of(&[(0, 3), (2, 4), (4, 3)]);
    // Same epoch, offset within it: fine.
    assert_eq!(check_follower_divergence(&log, 5, Some(2)), Ok(None));
    assert_eq!(check_follower_divergence(&log, 10, Some(4)), Ok(None));
    assert_eq!(check_follower_divergence(&log, 7, None), Ok(None));
    // Offset beyond the epoch's end.
    assert_eq!(
        check_follower_divergence(&log, 9, Some(2)),
        Ok(Some(EpochEndOffset {
            epoch: 2,
            end_offset: 7
        }))
    );
    // An epoch the leader never had: its largest epoch below, and where it ended.
    assert_eq!(
        check_follower_divergence(&log, 5, Some(3)),
        Ok(Some(EpochEndOffset {
            epoch: 2,
            end_offset: 7
        }))
    );
    // Newer than everything (UNDEFINED) or below the log start: out of range.
    assert_eq!(
        check_follower_divergence(&log, 11, Some(5)),
        Err(ResponseError::OffsetOutOfRange)
    );
    let mut trimmed = log_of(&[(0, 3), (2, 4)]);
    trimmed.update_follower_high_watermark(7);
    trimmed.maybe_increment_log_start_offset(5, T0).unwrap();
    assert_eq!(
        check_follower_divergence(&trimmed, 4, Some(2)),
        Err(ResponseError::OffsetOutOfRange)
    );
}

#[test]
fn out_of_range_below_the_leader_start_restarts_the_log_there() {
    let mut leader_log = log_of(&[(0, 10)]);
    let mut leader = leader_state(&mut leader_log, 1, &[1]);
    leader_log.maybe_increment_high_watermark(10);
    leader_log.maybe_increment_log_start_offset(8, T0).unwrap();
    let mut follower = log_of(&[(0, 2)]);
    let mut core = fetcher();
    core.add_partition(key(), 1, &follower).unwrap();
    let request = expect_fetch(core.poll(&key(), &mut follower, T0).unwrap());
    let (response, _) = serve_follower_fetch(
        &mut leader,
        &mut leader_log,
        &brokers(),
        (2, 102),
        &request,
        1 << 20,
        T0,
    );
    assert_eq!(response.error, Some(ResponseError::OffsetOutOfRange));
    assert_eq!(
        core.on_fetch_response(&request, response, &mut follower, T0)
            .unwrap(),
        FetchOutcome::OutOfRange
    );
    let Some(PartitionRequest::ListOffsets(offsets_request)) =
        core.poll(&key(), &mut follower, T0).unwrap()
    else {
        panic!("expected ListOffsets");
    };
    let offsets = LeaderOffsets {
        earliest: leader_log.log_start_offset(),
        latest: leader_log.log_end_offset(),
    };
    assert_eq!(
        core.on_leader_offsets(&offsets_request, Ok(offsets), &mut follower, T0)
            .unwrap(),
        FetchOutcome::RestartedAt { offset: 8 }
    );
    assert_eq!(
        (follower.log_start_offset(), follower.log_end_offset()),
        (8, 8)
    );
    // The leader's first batch starts at 0 but its log start is 8: the batch straddles our
    // start, so the log restarts at the batch (Kafka's DeleteRecords case), then appends.
    let outcomes = replicate(&mut core, &mut follower, &mut leader, &mut leader_log);
    assert!(matches!(
        outcomes[0],
        FetchOutcome::Appended {
            records_count: 10,
            ..
        }
    ));
    assert_eq!(follower.log_end_offset(), 10);
    assert_eq!(follower.log_start_offset(), 8, "raised to the leader's");
}

#[test]
fn out_of_range_above_the_leader_end_finds_the_divergence_by_epochs() {
    let mut follower = log_of(&[(0, 3), (1, 5)]);
    let mut core = fetcher();
    core.add_partition(key(), 2, &follower).unwrap();
    let request = expect_fetch(core.poll(&key(), &mut follower, T0).unwrap());
    core.on_fetch_response(
        &request,
        FetchPartitionResponse::error(ResponseError::OffsetOutOfRange),
        &mut follower,
        T0,
    )
    .unwrap();
    let Some(PartitionRequest::ListOffsets(offsets_request)) =
        core.poll(&key(), &mut follower, T0).unwrap()
    else {
        panic!("expected ListOffsets");
    };
    let outcome = core
        .on_leader_offsets(
            &offsets_request,
            Ok(LeaderOffsets {
                earliest: 0,
                latest: 5,
            }),
            &mut follower,
            T0,
        )
        .unwrap();
    assert_eq!(outcome, FetchOutcome::Truncating);
    let Some(PartitionRequest::OffsetForLeaderEpoch(epoch_request)) =
        core.poll(&key(), &mut follower, T0).unwrap()
    else {
        panic!("expected OffsetForLeaderEpoch");
    };
    assert_eq!(epoch_request.leader_epoch, 1);
    // A stale answer (other epoch) is ignored; the real one truncates.
    let mut stale = epoch_request;
    stale.current_leader_epoch = 1;
    assert_eq!(
        core.on_epoch_response(
            &stale,
            Ok(EpochEndOffset {
                epoch: 1,
                end_offset: 4
            }),
            &mut follower,
            T0
        )
        .unwrap(),
        FetchOutcome::Ignored
    );
    let outcome = core
        .on_epoch_response(
            &epoch_request,
            Ok(EpochEndOffset {
                epoch: 1,
                end_offset: 4,
            }),
            &mut follower,
            T0,
        )
        .unwrap();
    assert_eq!(
        outcome,
        FetchOutcome::Truncated {
            offset: 4,
            completed: true,
            below_high_watermark: false
        }
    );
    // Batches are whole: the batch holding offset 4 (3..8) goes.
    assert_eq!(follower.log_end_offset(), 3);
    assert_eq!(core.partition(&key()).unwrap().phase, FetchPhase::Fetching);
}

#[test]
fn errors_back_off_and_fencing_waits_for_metadata() {
    let mut follower = log_of(&[(0, 3)]);
    let mut core = fetcher();
    core.add_partition(key(), 2, &follower).unwrap();
    for error in [
        ResponseError::NotLeaderOrFollower,
        ResponseError::UnknownLeaderEpoch,
        ResponseError::UnknownTopicOrPartition,
    ] {
        let request = expect_fetch(core.poll(&key(), &mut follower, T0).unwrap());
        let outcome = core
            .on_fetch_response(
                &request,
                FetchPartitionResponse::error(error),
                &mut follower,
                T0,
            )
            .unwrap();
        assert_eq!(
            outcome,
            FetchOutcome::BackedOff {
                until_ms: T0 + BACKOFF_MS
            }
        );
        assert_eq!(core.poll(&key(), &mut follower, T0 + 1).unwrap(), None);
        let _ = core.poll(&key(), &mut follower, T0 + BACKOFF_MS).unwrap();
    }
    // Invalid records back off too, and leave the log alone.
    let request = expect_fetch(core.poll(&key(), &mut follower, T0).unwrap());
    let mut corrupt = stored(3, 0, 1);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    let response = FetchPartitionResponse {
        error: None,
        high_watermark: 4,
        log_start_offset: 0,
        diverging_epoch: None,
        records: Bytes::from(corrupt),
    };
    assert!(matches!(
        core.on_fetch_response(&request, response, &mut follower, T0)
            .unwrap(),
        FetchOutcome::BackedOff { .. }
    ));
    assert_eq!(follower.log_end_offset(), 3);
    // Fenced at our epoch: out until the image brings a newer one.
    let request = expect_fetch(core.poll(&key(), &mut follower, T0 + BACKOFF_MS).unwrap());
    let outcome = core
        .on_fetch_response(
            &request,
            FetchPartitionResponse::error(ResponseError::FencedLeaderEpoch),
            &mut follower,
            T0,
        )
        .unwrap();
    assert_eq!(outcome, FetchOutcome::AwaitingMetadata);
    assert!(core.is_failed(&key()));
    assert_eq!(core.poll(&key(), &mut follower, T0).unwrap(), None);
    core.add_partition(key(), 3, &follower).unwrap();
    assert!(!core.is_failed(&key()));
    // A duplicate answer to the old request is ignored.
    assert_eq!(
        core.on_fetch_response(
            &request,
            FetchPartitionResponse::error(ResponseError::FencedLeaderEpoch),
            &mut follower,
            T0,
        )
        .unwrap(),
        FetchOutcome::Ignored
    );
}

#[test]
fn leader_answers_fenced_and_unknown_epochs() {
    let mut leader_log = log_of(&[(0, 3)]);
    let mut leader = leader_state(&mut leader_log, 5, &[1, 2]);
    let request = |current_leader_epoch| FetchPartitionRequest {
        key: key(),
        fetch_offset: 0,
        current_leader_epoch,
        last_fetched_epoch: None,
        log_start_offset: 0,
    };
    for (epoch, error) in [
        (4, ResponseError::FencedLeaderEpoch),
        (6, ResponseError::UnknownLeaderEpoch),
    ] {
        let (response, _) = serve_follower_fetch(
            &mut leader,
            &mut leader_log,
            &brokers(),
            (2, 102),
            &request(epoch),
            1 << 20,
            T0,
        );
        assert_eq!(response.error, Some(error));
    }
    let (response, _) = serve_follower_fetch(
        &mut leader,
        &mut leader_log,
        &brokers(),
        (7, 107),
        &request(5),
        1 << 20,
        T0,
    );
    assert_eq!(response.error, Some(ResponseError::UnknownLeaderEpoch));
}

#[test]
fn leader_log_start_inside_a_batch_hides_divergence_and_the_follower_restarts_at_the_batch() {
    // Found by the simulation with DeleteRecords: our last batch (epoch 1) ends at 14, the
    // leader's epoch-2 batch 14..16 holds its log start 15, so its epoch cache starts at 15
    // and it answers epoch 1 as ending at 15: no divergence reported, and the batch it sends
    // starts below our log end.
    let mut follower = log_of(&[(0, 8), (1, 7)]);
    follower.update_follower_high_watermark(8);
    let mut leader_log = log_of(&[(0, 8), (1, 6), (2, 3)]);
    let mut leader = leader_state(&mut leader_log, 3, &[1, 2]);
    leader_log.maybe_increment_high_watermark(17);
    leader_log.maybe_increment_log_start_offset(15, T0).unwrap();
    assert_eq!(leader_log.end_offset_for_epoch(1), Some((1, 15)));
    let mut core = fetcher();
    core.add_partition(key(), 3, &follower).unwrap();
    let request = expect_fetch(core.poll(&key(), &mut follower, T0).unwrap());
    let (response, _) = serve_follower_fetch(
        &mut leader,
        &mut leader_log,
        &brokers(),
        (2, 102),
        &request,
        1 << 20,
        T0,
    );
    assert_eq!(response.diverging_epoch, None);
    let outcome = core
        .on_fetch_response(&request, response, &mut follower, T0)
        .unwrap();
    assert!(matches!(
        outcome,
        FetchOutcome::Appended {
            records_count: 3,
            ..
        }
    ));
    assert_eq!(follower.batches(), leader_log.batches());
    assert_eq!(
        (follower.log_start_offset(), follower.log_end_offset()),
        (15, 17)
    );
    assert_eq!(follower.latest_epoch(), Some(2));
}
