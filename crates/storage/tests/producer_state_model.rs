//! Randomized test of producer state against a model: several producers (one idempotent, two
//! transactional) send batches, retry old ones, skip sequences, use fenced epochs, bump their
//! epoch, and their transactions commit or abort, while the log rolls small segments and is
//! reopened cleanly or after a crash (optionally with a torn tail cut off the active segment).
//! After every step the log's producers, last stable offset and aborted transactions must equal
//! the model's, and every append must be answered as Kafka would (the original offsets for a
//! duplicate, the right error otherwise).

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;

use fjord_protocol::batch_builder::{
    encode_uncompressed_with_producer, ProducerFields, Record, TRANSACTIONAL_ATTRIBUTE,
};
use fjord_protocol::control::EndTxnMarker;
use fjord_storage::{
    AbortedTxn, ActiveProducer, AppendOrigin, Log, LogConfig, ProducerStateError, StorageError,
};
use proptest::prelude::*;

/// Producer 0 is idempotent only; 1 and 2 are transactional.
const PRODUCERS: usize = 3;
const PRODUCER_ID_BASE: i64 = 5_000;

#[derive(Debug, Clone)]
enum Op {
    Send {
        producer: usize,
        count: i32,
    },
    /// Resend one of the producer's last sent batches (`back` = 0 is the latest).
    Retry {
        producer: usize,
        back: usize,
    },
    /// A batch whose sequence skips ahead.
    Gap {
        producer: usize,
        skip: i32,
    },
    /// A batch with an epoch older than the producer's.
    StaleEpoch {
        producer: usize,
    },
    /// The coordinator ends the producer's transaction.
    EndTxn {
        producer: usize,
        commit: bool,
    },
    /// InitProducerId: the coordinator aborts with a bumped epoch; sequences restart.
    BumpEpoch {
        producer: usize,
    },
    Reopen {
        crash: bool,
        torn_bytes: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let producer = 0..PRODUCERS;
    let txn_producer = 1..PRODUCERS;
    prop_oneof![
        8 => (producer.clone(), 1i32..4).prop_map(|(producer, count)| Op::Send { producer, count }),
        3 => (producer.clone(), 0usize..8).prop_map(|(producer, back)| Op::Retry { producer, back }),
        1 => (producer.clone(), 1i32..3).prop_map(|(producer, skip)| Op::Gap { producer, skip }),
        1 => producer.prop_map(|producer| Op::StaleEpoch { producer }),
        3 => (txn_producer.clone(), any::<bool>()).prop_map(|(producer, commit)| Op::EndTxn { producer, commit }),
        1 => txn_producer.prop_map(|producer| Op::BumpEpoch { producer }),
        1 => (any::<bool>(), prop_oneof![Just(0u64), 1u64..80]).prop_map(|(crash, torn_bytes)| Op::Reopen { crash, torn_bytes }),
    ]
}

/// A batch as a producer sent it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sent {
    epoch: i16,
    first_seq: i32,
    count: i32,
    first_offset: i64,
    timestamp: i64,
}

/// One producer, as the client knows it and as the broker should.
#[derive(Debug, Clone, Default)]
struct ProducerModel {
    epoch: i16,
    next_seq: i32,
    /// Every batch sent in order, any epoch.
    sent: Vec<Sent>,
    /// What the broker remembers: the last five batches of the current epoch.
    remembered: VecDeque<Sent>,
    ongoing_txn: Option<i64>,
    /// Broker-side fields; `None` until the broker has an entry.
    known: bool,
    coordinator_epoch: i32,
    last_timestamp: i64,
}

#[derive(Debug, Clone, Default)]
struct Model {
    producers: Vec<ProducerModel>,
    aborted: Vec<AbortedTxn>,
    log_end_offset: i64,
}

impl Model {
    fn new() -> Self {
        Model {
            producers: vec![
                ProducerModel {
                    coordinator_epoch: -1,
                    ..ProducerModel::default()
                };
                PRODUCERS
            ],
            ..Model::default()
        }
    }

    fn active_producers(&self) -> Vec<ActiveProducer> {
        self.producers
            .iter()
            .enumerate()
            .filter(|(_, p)| p.known)
            .map(|(i, p)| ActiveProducer {
                producer_id: PRODUCER_ID_BASE + i as i64,
                producer_epoch: p.epoch,
                last_sequence: p
                    .remembered
                    .back()
                    .map_or(-1, |b| b.first_seq + b.count - 1),
                last_timestamp_ms: p.last_timestamp,
                coordinator_epoch: p.coordinator_epoch,
                current_txn_start_offset: p.ongoing_txn.unwrap_or(-1),
            })
            .collect()
    }

    fn last_stable_offset(&self) -> i64 {
        self.producers
            .iter()
            .filter_map(|p| p.ongoing_txn)
            .min()
            .unwrap_or(self.log_end_offset)
    }

    /// A batch was written.
    fn sent(&mut self, producer: usize, sent: Sent) {
        let p = &mut self.producers[producer];
        if p.remembered.len() == 5 {
            p.remembered.pop_front();
        }
        p.remembered.push_back(sent);
        p.sent.push(sent);
        p.next_seq += sent.count;
        p.last_timestamp = sent.timestamp + i64::from(sent.count) - 1;
        p.known = true;
        if producer > 0 && p.ongoing_txn.is_none() {
            p.ongoing_txn = Some(sent.first_offset);
        }
        self.log_end_offset += i64::from(sent.count);
    }

    /// A marker was written at the log end with `epoch`.
    fn marker(&mut self, producer: usize, epoch: i16, commit: bool, now: i64) {
        let offset = self.log_end_offset;
        let producer_id = PRODUCER_ID_BASE + producer as i64;
        if let Some(first_offset) = self.producers[producer].ongoing_txn.take() {
            if !commit {
                let last_stable_offset = self
                    .producers
                    .iter()
                    .filter_map(|p| p.ongoing_txn)
                    .min()
                    .unwrap_or(offset + 1);
                self.aborted.push(AbortedTxn {
                    producer_id,
                    first_offset,
                    last_offset: offset,
                    last_stable_offset,
                });
            }
        }
        let p = &mut self.producers[producer];
        if epoch != p.epoch || !p.known {
            p.remembered.clear();
        }
        p.epoch = epoch;
        p.known = true;
        p.coordinator_epoch = 0;
        p.last_timestamp = now;
        self.log_end_offset += 1;
    }
}

fn batch(producer: usize, epoch: i16, first_seq: i32, count: i32, timestamp: i64) -> Vec<u8> {
    let records: Vec<Record<'_>> = (0..count)
        .map(|i| Record {
            timestamp_delta: i64::from(i),
            key: Some(b"key"),
            value: Some(b"value-value-value"),
            ..Record::default()
        })
        .collect();
    encode_uncompressed_with_producer(
        0,
        timestamp,
        if producer > 0 {
            TRANSACTIONAL_ATTRIBUTE
        } else {
            0
        },
        ProducerFields {
            producer_id: PRODUCER_ID_BASE + producer as i64,
            producer_epoch: epoch,
            base_sequence: first_seq,
        },
        &records,
    )
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 400,
        index_interval_bytes: 100,
        ..LogConfig::default()
    }
}

fn produce(
    log: &mut Log,
    bytes: &[u8],
    now: i64,
) -> Result<fjord_storage::LogAppendInfo, StorageError> {
    let info = log.append_batch(bytes, 0, now, AppendOrigin::Client)?;
    let end = log.log_end_offset();
    log.update_high_watermark(end);
    Ok(info)
}

fn producer_error(
    result: Result<fjord_storage::LogAppendInfo, StorageError>,
) -> ProducerStateError {
    match result {
        Err(StorageError::Producer(error)) => error,
        other => panic!("expected a producer state error, got {other:?}"),
    }
}

/// Cuts `bytes` off the end of the newest segment file, as a crash mid-write would leave it.
fn tear_active_segment(dir: &Path, bytes: u64) {
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    let Some(active) = logs.last() else { return };
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(active)
        .unwrap();
    let len = file.metadata().unwrap().len();
    file.set_len(len.saturating_sub(bytes)).unwrap();
}

fn check(log: &Log, model: &Model, step: usize) {
    assert_eq!(
        log.log_end_offset(),
        model.log_end_offset,
        "step {step}: log end"
    );
    assert_eq!(
        log.active_producers(),
        model.active_producers(),
        "step {step}: producers"
    );
    assert_eq!(
        log.last_stable_offset(),
        model.last_stable_offset(),
        "step {step}: LSO"
    );
    assert_eq!(
        log.collect_aborted_transactions(0, i64::MAX),
        model.aborted,
        "step {step}: aborted transactions"
    );
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), true, 0).unwrap();
    let mut model = Model::new();
    // The model as of each log end offset, to rewind to after a torn tail.
    let mut history: BTreeMap<i64, Model> = BTreeMap::from([(0, model.clone())]);
    for (step, op) in ops.into_iter().enumerate() {
        let now = 1_000 + step as i64;
        let end_before = model.log_end_offset;
        match op {
            Op::Send { producer, count } => {
                let p = &model.producers[producer];
                let info = produce(
                    &mut log,
                    &batch(producer, p.epoch, p.next_seq, count, now),
                    now,
                )
                .unwrap();
                assert!(!info.duplicate);
                let sent = Sent {
                    epoch: p.epoch,
                    first_seq: p.next_seq,
                    count,
                    first_offset: info.first_offset,
                    timestamp: now,
                };
                assert_eq!(info.first_offset, model.log_end_offset);
                model.sent(producer, sent);
            }
            Op::Retry { producer, back } => {
                let p = &model.producers[producer];
                let Some(old) = p.sent.iter().rev().nth(back).copied() else {
                    continue;
                };
                let result = produce(
                    &mut log,
                    &batch(producer, old.epoch, old.first_seq, old.count, now),
                    now,
                );
                if p.remembered.contains(&old) && old.epoch == p.epoch {
                    let info = result.unwrap();
                    assert!(info.duplicate, "step {step}");
                    assert_eq!(
                        (info.first_offset, info.last_offset),
                        (
                            old.first_offset,
                            old.first_offset + i64::from(old.count) - 1
                        )
                    );
                } else if old.epoch < p.epoch {
                    assert!(matches!(
                        producer_error(result),
                        ProducerStateError::InvalidProducerEpoch { .. }
                    ));
                } else {
                    assert!(matches!(
                        producer_error(result),
                        ProducerStateError::OutOfOrderSequence { .. }
                    ));
                }
            }
            Op::Gap { producer, skip } => {
                let p = &model.producers[producer];
                if !p.known {
                    // Kafka accepts any sequence from a producer it has no state for (see
                    // the unit test `producers_without_state_may_start_anywhere`).
                    continue;
                }
                let result = produce(
                    &mut log,
                    &batch(producer, p.epoch, p.next_seq + skip, 1, now),
                    now,
                );
                assert!(matches!(
                    producer_error(result),
                    ProducerStateError::OutOfOrderSequence { .. }
                ));
            }
            Op::StaleEpoch { producer } => {
                let p = &model.producers[producer];
                if !p.known || p.epoch == 0 {
                    continue;
                }
                let result = produce(&mut log, &batch(producer, p.epoch - 1, 0, 1, now), now);
                assert!(matches!(
                    producer_error(result),
                    ProducerStateError::InvalidProducerEpoch { .. }
                ));
            }
            Op::EndTxn { producer, commit } => {
                let epoch = model.producers[producer].epoch;
                let marker = EndTxnMarker {
                    commit,
                    coordinator_epoch: 0,
                };
                let producer_id = PRODUCER_ID_BASE + producer as i64;
                log.append_end_txn_marker(producer_id, epoch, marker, 0, now)
                    .unwrap();
                let end = log.log_end_offset();
                log.update_high_watermark(end);
                model.marker(producer, epoch, commit, now);
            }
            Op::BumpEpoch { producer } => {
                let epoch = model.producers[producer].epoch + 1;
                let marker = EndTxnMarker {
                    commit: false,
                    coordinator_epoch: 0,
                };
                let producer_id = PRODUCER_ID_BASE + producer as i64;
                log.append_end_txn_marker(producer_id, epoch, marker, 0, now)
                    .unwrap();
                let end = log.log_end_offset();
                log.update_high_watermark(end);
                model.marker(producer, epoch, false, now);
                model.producers[producer].next_seq = 0;
            }
            Op::Reopen { crash, torn_bytes } => {
                if crash {
                    drop(log);
                    if torn_bytes > 0 {
                        tear_active_segment(dir.path(), torn_bytes);
                    }
                    log = Log::open(dir.path(), config(), false, 0).unwrap();
                    let end = log.log_end_offset();
                    model = history
                        .get(&end)
                        .unwrap_or_else(|| panic!("step {step}: no model at {end}"))
                        .clone();
                    history.retain(|offset, _| *offset <= end);
                } else {
                    log.close().unwrap();
                    log = Log::open(dir.path(), config(), true, 0).unwrap();
                }
            }
        }
        if model.log_end_offset != end_before {
            history.insert(model.log_end_offset, model.clone());
        }
        check(&log, &model, step);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn producer_state_matches_the_model(ops in proptest::collection::vec(op(), 1..80)) {
        run(ops);
    }
}

#[test]
fn a_torn_marker_reopens_its_transaction() {
    run(vec![
        Op::Send {
            producer: 1,
            count: 2,
        },
        Op::Send {
            producer: 0,
            count: 1,
        },
        Op::EndTxn {
            producer: 1,
            commit: false,
        },
        Op::Reopen {
            crash: true,
            torn_bytes: 10,
        },
        Op::Send {
            producer: 1,
            count: 1,
        },
        Op::EndTxn {
            producer: 1,
            commit: true,
        },
        Op::Reopen {
            crash: false,
            torn_bytes: 0,
        },
    ]);
}
