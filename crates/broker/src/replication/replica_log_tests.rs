//! The `ReplicaLog` contract: the same scripted operations on `fjord_storage::Log` and on
//! `SimLog` give the same results and leave the same observable state (offsets, high
//! watermark, epoch answers, the bytes served to followers).

use super::*;
use fjord_protocol::batch_builder::{encode_uncompressed, Record};
use fjord_storage::LogConfig;
use proptest::prelude::*;

/// A client batch of `count` records whose values carry `tag` (so payloads differ).
pub(crate) fn client_batch(count: usize, tag: u64) -> Vec<u8> {
    let values: Vec<Vec<u8>> = (0..count)
        .map(|i| format!("{tag}-{i}").into_bytes())
        .collect();
    let records: Vec<Record<'_>> = values
        .iter()
        .map(|value| Record {
            value: Some(value),
            ..Record::default()
        })
        .collect();
    encode_uncompressed(0, 1_000, 0, &records)
}

/// A batch as a leader of `epoch` stored it at `base_offset`.
fn leader_batch(base_offset: i64, epoch: i32, count: usize, tag: u64) -> Vec<u8> {
    let mut batch = client_batch(count, tag);
    records::set_base_offset(&mut batch, base_offset);
    records::set_partition_leader_epoch(&mut batch, epoch);
    batch
}

#[derive(Debug, Clone)]
enum Op {
    /// Appends as leader; the epoch moves up by `epoch_step`.
    LeaderAppend {
        count: usize,
        epoch_step: i32,
    },
    /// Appends leader batches as follower, `gap` offsets after the log end (or before it,
    /// which both must refuse, when `gap` is negative).
    FollowerAppend {
        gap: i64,
        batches: Vec<(usize, i32)>,
    },
    TruncateTo {
        back: i64,
    },
    TruncateFully {
        ahead: i64,
    },
    AssignEpoch {
        epoch_step: i32,
    },
    IncrementHighWatermark {
        back: i64,
    },
    UpdateFollowerHighWatermark {
        back: i64,
    },
    IncrementLogStart {
        ahead: i64,
    },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1usize..4, 0i32..2).prop_map(|(count, epoch_step)| Op::LeaderAppend { count, epoch_step }),
        3 => (-1i64..3, prop::collection::vec((1usize..4, 0i32..2), 1..4))
            .prop_map(|(gap, batches)| Op::FollowerAppend { gap, batches }),
        1 => (-2i64..8).prop_map(|back| Op::TruncateTo { back }),
        1 => (-1i64..5).prop_map(|ahead| Op::TruncateFully { ahead }),
        1 => (0i32..2).prop_map(|epoch_step| Op::AssignEpoch { epoch_step }),
        2 => (-2i64..6).prop_map(|back| Op::IncrementHighWatermark { back }),
        1 => (-2i64..6).prop_map(|back| Op::UpdateFollowerHighWatermark { back }),
        1 => (-1i64..4).prop_map(|ahead| Op::IncrementLogStart { ahead }),
    ]
}

/// Everything a replication core can observe of a log.
#[derive(Debug, PartialEq, Eq)]
struct Observed {
    log_start_offset: i64,
    log_end_offset: i64,
    high_watermark: i64,
    latest_epoch: Option<i32>,
    end_offsets: Vec<Option<(i32, i64)>>,
    records: Vec<u8>,
}

fn observe(log: &impl ReplicaLog, max_epoch: i32) -> Observed {
    let mut records = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let read = log.read_to_log_end(offset, 1 << 20).unwrap();
        assert!(read.next_offset > offset, "reads make progress");
        records.extend_from_slice(&read.records);
        offset = read.next_offset;
    }
    Observed {
        log_start_offset: log.log_start_offset(),
        log_end_offset: log.log_end_offset(),
        high_watermark: log.high_watermark(),
        latest_epoch: log.latest_epoch(),
        end_offsets: (-1..=max_epoch + 1)
            .map(|epoch| log.end_offset_for_epoch(epoch))
            .collect(),
        records,
    }
}

/// Applies `op` to one log; `epoch` and `tag` are the script's running state.
fn apply(log: &mut impl ReplicaLog, op: &Op, epoch: &mut i32, tag: &mut u64) -> Result<(), String> {
    let leo = log.log_end_offset();
    let result = match op {
        Op::LeaderAppend { count, epoch_step } => {
            *epoch += epoch_step;
            *tag += 1;
            let mut batch = client_batch(*count, *tag);
            log.append_as_leader(&mut batch, *epoch, 0)
                .map(|info| assert_eq!(info.first_offset, leo))
        }
        Op::FollowerAppend { gap, batches } => {
            let mut bytes = Vec::new();
            let mut next = leo + gap;
            for (count, epoch_step) in batches {
                *epoch += epoch_step;
                *tag += 1;
                bytes.extend(leader_batch(next.max(0), *epoch, *count, *tag));
                next = next.max(0) + *count as i64;
            }
            log.append_as_follower(&bytes, 0).map(|_| ())
        }
        Op::TruncateTo { back } => log.truncate_to(leo - back),
        Op::TruncateFully { ahead } => log.truncate_fully_and_start_at(leo + ahead),
        Op::AssignEpoch { epoch_step } => {
            *epoch += epoch_step;
            log.assign_epoch_start_offset(*epoch, leo)
        }
        Op::IncrementHighWatermark { back } => {
            log.maybe_increment_high_watermark(leo - back);
            Ok(())
        }
        Op::UpdateFollowerHighWatermark { back } => {
            log.update_follower_high_watermark(leo - back);
            Ok(())
        }
        Op::IncrementLogStart { ahead } => log
            .maybe_increment_log_start_offset(log.log_start_offset() + ahead, 0)
            .map(|_| ()),
    };
    // The error kind is part of the contract, not its message.
    result.map_err(|error| match error {
        StorageError::UnexpectedAppendOffset { .. } => "unexpected append offset".to_string(),
        StorageError::OffsetOutOfRange { .. } => "offset out of range".to_string(),
        other => format!("other: {other}"),
    })
}

fn open_log(dir: &std::path::Path) -> Log {
    Log::open(dir, LogConfig::default(), true, 0).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn prop_log_and_sim_log_agree(ops in prop::collection::vec(op_strategy(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open_log(dir.path());
        let mut sim = SimLog::new();
        let (mut log_epoch, mut log_tag, mut sim_epoch, mut sim_tag) = (0, 0, 0, 0);
        for (step, op) in ops.iter().enumerate() {
            let real = apply(&mut log, op, &mut log_epoch, &mut log_tag);
            let simulated = apply(&mut sim, op, &mut sim_epoch, &mut sim_tag);
            prop_assert_eq!(&real, &simulated, "step {} {:?}", step, op);
            prop_assert_eq!(
                observe(&log, log_epoch),
                observe(&sim, sim_epoch),
                "after step {} {:?}", step, op
            );
            prop_assert!(log.high_watermark() <= log.log_end_offset());
            prop_assert!(log.log_start_offset() <= log.high_watermark());
        }
    }
}

#[test]
fn contract_scripted_divergence_and_recovery() {
    // A follower that took epoch 1's tail, learns epoch 2 truncated it, and continues.
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_log(dir.path());
    let mut sim = SimLog::new();
    log.run();
    sim.run();
    assert_eq!(observe(&log, 3), observe(&sim, 3));
    assert_eq!(log.log_end_offset(), 9);
    assert_eq!(log.end_offset_for_epoch(1), Some((1, 5)));
    assert_eq!(log.end_offset_for_epoch(2), Some((2, 9)));
    assert_eq!(log.high_watermark(), 5);
}

/// Object-safe wrapper so one script runs on both implementations.
trait ReplicaLogDyn {
    fn run(&mut self);
}

impl<L: ReplicaLog> ReplicaLogDyn for L {
    fn run(&mut self) {
        let mut bytes = leader_batch(0, 0, 3, 1);
        bytes.extend(leader_batch(3, 1, 4, 2));
        self.append_as_follower(&bytes, 0).unwrap();
        assert!(self.maybe_increment_high_watermark(5));
        // Epoch 2's leader ended epoch 1 at 5: truncate to the batch boundary at or below it.
        let (epoch, end) = self.end_offset_for_epoch(1).unwrap();
        assert_eq!((epoch, end), (1, 7));
        self.truncate_to(3).unwrap();
        assert_eq!(self.log_end_offset(), 3);
        assert_eq!(self.high_watermark(), 3, "clamped to the log end");
        let mut bytes = leader_batch(3, 1, 2, 3);
        bytes.extend(leader_batch(5, 2, 4, 4));
        self.append_as_follower(&bytes, 0).unwrap();
        assert!(self.update_follower_high_watermark(5));
        assert!(matches!(
            self.append_as_follower(&leader_batch(8, 2, 1, 5), 0),
            Err(StorageError::UnexpectedAppendOffset {
                offset: 8,
                expected: 9
            })
        ));
        let read = self.read_to_log_end(3, 1).unwrap();
        assert_eq!(read.next_offset, 5, "at least one whole batch");
        assert!(matches!(
            self.read_to_log_end(10, 1),
            Err(StorageError::OffsetOutOfRange { .. })
        ));
    }
}

/// A log of `batches` leader batches of 2 records each in epoch 0, flushed after `flushed`.
fn sim_log_with(batches: usize, flushed: usize) -> SimLog {
    let mut log = SimLog::new();
    for tag in 0..batches {
        if tag == flushed {
            log.flush();
        }
        let mut batch = client_batch(2, tag as u64);
        log.append_as_leader(&mut batch, 0, 0).unwrap();
    }
    if flushed >= batches {
        log.flush();
    }
    log
}

#[test]
fn power_cut_keeps_the_flushed_prefix_and_whole_unflushed_batches_that_reached_the_disk() {
    let mut log = sim_log_with(5, 2);
    assert_eq!(log.flushed_offset(), 4);
    let batch_bytes = log.batches()[2].bytes.len();
    // Nothing of the tail reached the disk.
    let cut = log.clone().power_cut(0, 0).unwrap();
    assert_eq!((cut.log_end_offset_after, cut.torn), (4, false));
    // One whole unflushed batch and half of the next: the half batch is cut.
    let mut one_and_a_half = log.clone();
    let cut = one_and_a_half
        .power_cut(batch_bytes + batch_bytes / 2, 0)
        .unwrap();
    assert_eq!((cut.log_end_offset_after, cut.torn), (6, true));
    assert_eq!(one_and_a_half.log_end_offset(), 6);
    assert_eq!(
        one_and_a_half.flushed_offset(),
        6,
        "recovered data is on disk"
    );
    // Everything reached the disk, the last 7 bytes torn: the last batch fails its CRC.
    let all = log.unflushed_bytes();
    let cut = log.power_cut(all, 7).unwrap();
    assert_eq!(
        (
            cut.log_end_offset_before,
            cut.log_end_offset_after,
            cut.torn
        ),
        (10, 8, true)
    );
    assert_eq!(log.batches().len(), 4);
}

#[test]
fn power_cut_recovery_drops_epochs_and_clamps_the_high_watermark() {
    let mut log = sim_log_with(2, 2);
    let mut batch = client_batch(3, 9);
    log.append_as_leader(&mut batch, 4, 0).unwrap();
    assert!(log.maybe_increment_high_watermark(7));
    assert_eq!(log.epoch_entries(), &[(0, 0), (4, 4)]);
    let cut = log.power_cut(10, 0).unwrap();
    assert_eq!(cut.log_end_offset_after, 4);
    assert_eq!(log.epoch_entries(), &[(0, 0)]);
    assert_eq!(log.high_watermark(), 4);
    assert_eq!(log.latest_epoch(), Some(0));
}

#[test]
fn truncation_is_durable_and_lowers_the_flushed_offset() {
    let mut log = sim_log_with(4, 4);
    assert_eq!(log.flushed_offset(), 8);
    log.truncate_to(4).unwrap();
    assert_eq!(log.flushed_offset(), 4);
    let mut batch = client_batch(2, 77);
    log.append_as_leader(&mut batch, 1, 0).unwrap();
    let cut = log.power_cut(0, 0).unwrap();
    assert_eq!(
        cut.log_end_offset_after, 4,
        "the new batch was never flushed"
    );
}
