//! Kafka's `ProducerStateManagerTest` essentials, against the manager directly.

use super::*;
use fjord_protocol::batch_builder::{CONTROL_ATTRIBUTE, TRANSACTIONAL_ATTRIBUTE};

const PID: i64 = 1_000;

/// A batch header at `offset` with `count` records from `producer_id`.
fn header(
    producer_id: i64,
    epoch: i16,
    base_sequence: i32,
    count: i32,
    offset: i64,
    transactional: bool,
) -> RecordBatchHeader {
    RecordBatchHeader {
        base_offset: offset,
        batch_length: 100,
        partition_leader_epoch: 0,
        magic: 2,
        crc: 0,
        attributes: if transactional {
            TRANSACTIONAL_ATTRIBUTE
        } else {
            0
        },
        last_offset_delta: count - 1,
        base_timestamp: offset,
        max_timestamp: offset,
        producer_id,
        producer_epoch: epoch,
        base_sequence,
        records_count: count,
    }
}

fn data(h: RecordBatchHeader) -> ProducerBatch {
    ProducerBatch {
        header: h,
        marker: None,
    }
}

fn marker_batch(
    producer_id: i64,
    epoch: i16,
    offset: i64,
    commit: bool,
    coordinator_epoch: i32,
) -> ProducerBatch {
    let mut h = header(producer_id, epoch, -1, 1, offset, true);
    h.attributes |= CONTROL_ATTRIBUTE;
    ProducerBatch {
        header: h,
        marker: Some(EndTxnMarker {
            commit,
            coordinator_epoch,
        }),
    }
}

/// Checks and applies, as the log does around its write.
fn append(
    state: &mut ProducerStateManager,
    batch: ProducerBatch,
    origin: AppendOrigin,
) -> Result<Option<BatchMetadata>, ProducerStateError> {
    match state.analyze(&[batch], origin)? {
        Analysis::Duplicate(original) => Ok(Some(original)),
        Analysis::Update(update) => {
            state.apply(update);
            Ok(None)
        }
    }
}

fn client(
    state: &mut ProducerStateManager,
    h: RecordBatchHeader,
) -> Result<Option<BatchMetadata>, ProducerStateError> {
    append(state, data(h), AppendOrigin::Client)
}

#[test]
fn duplicates_answer_the_original_offsets() {
    let mut state = ProducerStateManager::default();
    assert_eq!(
        client(&mut state, header(PID, 0, 0, 5, 100, false)),
        Ok(None)
    );
    assert_eq!(
        client(&mut state, header(PID, 0, 5, 5, 105, false)),
        Ok(None)
    );
    // The retry of the first batch lands at another offset but is recognised.
    let original = client(&mut state, header(PID, 0, 0, 5, 110, false))
        .unwrap()
        .expect("duplicate");
    assert_eq!((original.first_offset(), original.last_offset), (100, 104));
    // Same sequences in another epoch are not duplicates (and not in sequence for it).
    assert!(matches!(
        client(&mut state, header(PID, 1, 5, 5, 110, false)),
        Err(ProducerStateError::OutOfOrderSequence { .. })
    ));
    assert_eq!(state.entry(PID).map(|e| e.last_seq()), Some(9));
}

#[test]
fn only_the_last_five_batches_are_remembered() {
    let mut state = ProducerStateManager::default();
    for i in 0..6 {
        client(&mut state, header(PID, 0, i, 1, i64::from(i), false)).unwrap();
    }
    assert_eq!(state.entry(PID).map(|e| e.batches.len()), Some(5));
    // Batch 0 fell out: its retry is out of order, not a duplicate.
    assert!(matches!(
        client(&mut state, header(PID, 0, 0, 1, 6, false)),
        Err(ProducerStateError::OutOfOrderSequence {
            sequence: 0,
            last_sequence: 5,
            ..
        })
    ));
    assert!(client(&mut state, header(PID, 0, 1, 1, 6, false))
        .unwrap()
        .is_some());
}

#[test]
fn sequence_gaps_are_out_of_order() {
    let mut state = ProducerStateManager::default();
    client(&mut state, header(PID, 0, 0, 3, 0, false)).unwrap();
    assert_eq!(
        client(&mut state, header(PID, 0, 4, 1, 3, false)),
        Err(ProducerStateError::OutOfOrderSequence {
            producer_id: PID,
            producer_epoch: 0,
            sequence: 4,
            last_sequence: 2
        })
    );
    client(&mut state, header(PID, 0, 3, 1, 3, false)).unwrap();
}

#[test]
fn older_epochs_are_fenced_and_new_epochs_start_at_zero() {
    let mut state = ProducerStateManager::default();
    client(&mut state, header(PID, 3, 0, 1, 0, false)).unwrap();
    assert_eq!(
        client(&mut state, header(PID, 2, 1, 1, 1, false)),
        Err(ProducerStateError::InvalidProducerEpoch {
            producer_id: PID,
            producer_epoch: 2,
            current_epoch: 3
        })
    );
    assert!(matches!(
        client(&mut state, header(PID, 4, 7, 1, 1, false)),
        Err(ProducerStateError::OutOfOrderSequence { sequence: 7, .. })
    ));
    client(&mut state, header(PID, 4, 0, 1, 1, false)).unwrap();
    assert_eq!(state.entry(PID).map(|e| e.producer_epoch), Some(4));
}

/// Kafka since KIP-360 (2.5): with no state for a producer (never seen here, or its batches
/// removed by retention, DeleteRecords or expiry) any sequence is accepted and starts the
/// producer's state; later batches must follow it.
#[test]
fn producers_without_state_may_start_anywhere() {
    let mut state = ProducerStateManager::default();
    client(&mut state, header(PID, 0, 42, 1, 0, false)).unwrap();
    assert_eq!(state.entry(PID).map(|e| e.last_seq()), Some(42));
    assert!(matches!(
        client(&mut state, header(PID, 0, 44, 1, 1, false)),
        Err(ProducerStateError::OutOfOrderSequence { sequence: 44, .. })
    ));
    client(&mut state, header(PID, 0, 43, 1, 1, false)).unwrap();
}

#[test]
fn sequences_wrap_at_i32_max() {
    assert_eq!(increment_sequence(i32::MAX, 1), 0);
    assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
    assert_eq!(decrement_sequence(1, 3), i32::MAX - 1);
    let mut state = ProducerStateManager::default();
    // A replicated batch sets the state near the end of the sequence space.
    append(
        &mut state,
        data(header(PID, 0, i32::MAX - 1, 2, 0, false)),
        AppendOrigin::Replication,
    )
    .unwrap();
    assert_eq!(state.entry(PID).map(|e| e.last_seq()), Some(i32::MAX));
    client(&mut state, header(PID, 0, 0, 2, 2, false)).unwrap();
    // The batch that wrapped is recognised as a duplicate.
    let original = client(&mut state, header(PID, 0, i32::MAX - 1, 2, 4, false))
        .unwrap()
        .expect("duplicate");
    assert_eq!(original.first_seq(), i32::MAX - 1);
}

#[test]
fn batches_of_one_append_are_checked_in_order() {
    let state = ProducerStateManager::default();
    let good = [
        data(header(PID, 0, 0, 2, 0, false)),
        data(header(PID, 0, 2, 2, 2, false)),
    ];
    assert!(matches!(
        state.analyze(&good, AppendOrigin::Client),
        Ok(Analysis::Update(_))
    ));
    let gap = [
        data(header(PID, 0, 0, 2, 0, false)),
        data(header(PID, 0, 5, 2, 2, false)),
    ];
    assert!(matches!(
        state.analyze(&gap, AppendOrigin::Client),
        Err(ProducerStateError::OutOfOrderSequence { .. })
    ));
}

#[test]
fn transactions_start_complete_and_bound_the_lso() {
    let mut state = ProducerStateManager::default();
    client(&mut state, header(PID, 0, 0, 2, 10, true)).unwrap();
    client(&mut state, header(PID + 1, 0, 0, 2, 12, true)).unwrap();
    client(&mut state, header(PID, 0, 2, 2, 14, true)).unwrap();
    assert_eq!(state.first_unstable_offset(), Some(10));
    assert_eq!(
        state.entry(PID).and_then(|e| e.current_txn_first_offset),
        Some(10)
    );
    // A non-transactional write during the transaction is refused.
    assert_eq!(
        client(&mut state, header(PID, 0, 4, 1, 16, false)),
        Err(ProducerStateError::InvalidTxnState {
            producer_id: PID,
            offset: 16
        })
    );
    let Analysis::Update(update) = state
        .analyze(
            &[marker_batch(PID, 0, 16, false, 0)],
            AppendOrigin::Coordinator,
        )
        .unwrap()
    else {
        panic!("markers are never duplicates");
    };
    let completed = state.apply(update);
    // The LSO after it is the other producer's transaction start.
    assert_eq!(
        completed,
        vec![(
            CompletedTxn {
                producer_id: PID,
                first_offset: 10,
                last_offset: 16,
                is_aborted: true
            },
            12
        )]
    );
    // Until its marker is below the high watermark it stays unstable.
    assert_eq!(state.first_unstable_offset(), Some(10));
    state.on_high_watermark_updated(17);
    assert_eq!(state.first_unstable_offset(), Some(12));
    let Analysis::Update(update) = state
        .analyze(
            &[marker_batch(PID + 1, 0, 17, true, 0)],
            AppendOrigin::Coordinator,
        )
        .unwrap()
    else {
        panic!()
    };
    let completed = state.apply(update);
    assert_eq!(
        completed[0].1, 18,
        "no other transaction: just after the marker"
    );
    assert!(!completed[0].0.is_aborted);
    state.on_high_watermark_updated(18);
    assert_eq!(state.first_unstable_offset(), None);
    // After the marker a non-transactional write is fine again.
    client(&mut state, header(PID, 0, 4, 1, 18, false)).unwrap();
}

#[test]
fn markers_check_producer_and_coordinator_epochs() {
    let mut state = ProducerStateManager::default();
    client(&mut state, header(PID, 2, 0, 1, 0, true)).unwrap();
    append(
        &mut state,
        marker_batch(PID, 2, 1, true, 5),
        AppendOrigin::Coordinator,
    )
    .unwrap();
    assert_eq!(state.entry(PID).map(|e| e.coordinator_epoch), Some(5));
    assert_eq!(
        append(
            &mut state,
            marker_batch(PID, 2, 2, false, 4),
            AppendOrigin::Coordinator
        ),
        Err(ProducerStateError::TransactionCoordinatorFenced {
            producer_id: PID,
            coordinator_epoch: 4,
            current_coordinator_epoch: 5
        })
    );
    assert!(matches!(
        append(
            &mut state,
            marker_batch(PID, 1, 2, false, 5),
            AppendOrigin::Coordinator
        ),
        Err(ProducerStateError::InvalidProducerEpoch { .. })
    ));
    // A marker with a bumped epoch (and no transaction here) is accepted and moves the epoch.
    append(
        &mut state,
        marker_batch(PID, 3, 2, false, 5),
        AppendOrigin::Coordinator,
    )
    .unwrap();
    assert_eq!(state.entry(PID).map(|e| e.producer_epoch), Some(3));
    assert_eq!(state.entry(PID).map(|e| e.batches.len()), Some(0));
    // Replication does not check: the log is the truth.
    append(
        &mut state,
        marker_batch(PID, 0, 3, false, 0),
        AppendOrigin::Replication,
    )
    .unwrap();
}

#[test]
fn coordinator_writes_skip_sequences_and_duplicates() {
    let mut state = ProducerStateManager::default();
    // Transactional offset commits: no sequence numbers.
    append(
        &mut state,
        data(header(PID, 0, -1, 1, 0, true)),
        AppendOrigin::Coordinator,
    )
    .unwrap();
    assert_eq!(
        append(
            &mut state,
            data(header(PID, 0, -1, 1, 1, true)),
            AppendOrigin::Coordinator
        ),
        Ok(None),
        "same 'sequence range' again is no duplicate for the coordinator"
    );
    assert!(matches!(
        append(
            &mut state,
            data(header(PID, 0, -1, 1, 2, false)),
            AppendOrigin::Coordinator
        ),
        Err(ProducerStateError::InvalidTxnState { .. })
    ));
    assert_eq!(state.first_unstable_offset(), Some(0));
}

#[test]
fn clients_may_not_write_markers_or_omit_sequences() {
    let state = ProducerStateManager::default();
    assert_eq!(
        state
            .analyze(&[marker_batch(PID, 0, 0, true, 0)], AppendOrigin::Client)
            .err(),
        Some(ProducerStateError::ControlBatchFromClient)
    );
    assert!(matches!(
        state.analyze(
            &[data(header(PID, 0, -1, 1, 0, false))],
            AppendOrigin::Client
        ),
        Err(ProducerStateError::InvalidSequence { .. })
    ));
    // Producer id -1: no state at all.
    let Ok(Analysis::Update(update)) = state.analyze(
        &[data(header(-1, -1, -1, 1, 0, false))],
        AppendOrigin::Client,
    ) else {
        panic!()
    };
    assert!(update.is_empty());
}

#[test]
fn expiry_spares_producers_in_transactions() {
    let mut state = ProducerStateManager::default();
    client(&mut state, header(1, 0, 0, 1, 0, false)).unwrap(); // timestamp 0
    client(&mut state, header(2, 0, 0, 1, 1, true)).unwrap(); // timestamp 1, ongoing
    client(&mut state, header(3, 0, 0, 1, 500, false)).unwrap();
    assert_eq!(state.remove_expired(1_000, 600), 1);
    let ids: Vec<i64> = state
        .active_producers()
        .iter()
        .map(|p| p.producer_id)
        .collect();
    assert_eq!(ids, vec![2, 3]);
    assert_eq!(state.active_producers()[0].current_txn_start_offset, 1);
}

#[test]
fn the_producer_limit_forgets_the_idlest_or_refuses() {
    let mut state = ProducerStateManager::with_max_producers(2);
    client(&mut state, header(1, 0, 0, 1, 0, false)).unwrap();
    client(&mut state, header(2, 0, 0, 1, 1, true)).unwrap();
    client(&mut state, header(3, 0, 0, 1, 2, false)).unwrap();
    assert!(state.entry(1).is_none(), "idlest without a transaction");
    assert_eq!(state.len(), 2);
    client(&mut state, header(4, 0, 0, 1, 3, true)).unwrap();
    assert!(state.entry(3).is_none());
    assert_eq!(
        client(&mut state, header(5, 0, 0, 1, 4, false)),
        Err(ProducerStateError::TooManyProducers { limit: 2 })
    );
}

#[test]
fn snapshots_round_trip_and_reject_damage() {
    let mut state = ProducerStateManager::default();
    for i in 0..7 {
        client(&mut state, header(PID, 1, i, 1, i64::from(i), false)).unwrap();
    }
    client(&mut state, header(PID + 1, 0, 0, 3, 7, true)).unwrap();
    append(
        &mut state,
        marker_batch(PID + 2, 0, 10, true, 3),
        AppendOrigin::Coordinator,
    )
    .unwrap();
    let bytes = state.encode_snapshot(11);
    let entries = decode_snapshot(&bytes, 11).unwrap();
    let mut loaded = ProducerStateManager::default();
    loaded.load(entries);
    assert_eq!(loaded.active_producers(), state.active_producers());
    assert_eq!(loaded.first_unstable_offset(), Some(7));
    assert_eq!(loaded.entry(PID), state.entry(PID), "all five batches kept");
    assert_eq!(loaded.entry(PID).map(|e| e.batches.len()), Some(5));

    assert!(
        decode_snapshot(&bytes, 12).is_err(),
        "named for another offset"
    );
    for cut in [0, 5, bytes.len() - 1] {
        assert!(decode_snapshot(&bytes[..cut], 11).is_err(), "cut at {cut}");
    }
    let mut flipped = bytes.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert_eq!(
        decode_snapshot(&flipped, 11).err().as_deref(),
        Some("CRC mismatch")
    );
    let mut huge_count = bytes.clone();
    huge_count[14..18].copy_from_slice(&u32::MAX.to_be_bytes());
    let crc = crc32c::crc32c(&huge_count[6..]);
    huge_count[2..6].copy_from_slice(&crc.to_be_bytes());
    assert!(decode_snapshot(&huge_count, 11)
        .unwrap_err()
        .contains("implausible"));
}
