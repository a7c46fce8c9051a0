//! Synthetic histories: a clean one is valid, and each anomaly injected into it is detected
//! (and only that one); a proptest generates histories from a correct model broker.

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;

/// Builds a JSON-lines history.
#[derive(Default)]
struct H {
    lines: Vec<String>,
}

const T: &str = "t";

impl H {
    fn ev(&mut self, process: &str, kind: &str, f: &str, value: Value) -> &mut Self {
        let i = self.lines.len();
        self.lines.push(
            json!({"i": i, "t_ns": i * 1000, "process": process, "type": kind, "f": f, "value": value})
                .to_string(),
        );
        self
    }
    fn producer(&mut self, p: &str, idempotent: bool) -> &mut Self {
        self.ev(
            p,
            "info",
            "process",
            json!({"role": "producer", "idempotent": idempotent}),
        )
    }
    fn consumer(&mut self, c: &str, isolation: &str) -> &mut Self {
        self.ev(
            c,
            "info",
            "process",
            json!({"role": "consumer", "isolation": isolation}),
        )
    }
    fn txn_worker(&mut self, w: &str) -> &mut Self {
        self.ev(w, "info", "process", json!({"role": "txn"}))
    }
    fn invoke(&mut self, p: &str, part: i32, v: &str) -> &mut Self {
        self.ev(p, "invoke", "send", json!([T, part, null, v]))
    }
    fn ok(&mut self, p: &str, part: i32, off: i64, v: &str) -> &mut Self {
        self.ev(p, "ok", "send", json!([T, part, off, v]))
    }
    fn send(&mut self, p: &str, part: i32, off: i64, v: &str) -> &mut Self {
        self.invoke(p, part, v).ok(p, part, off, v)
    }
    fn poll(&mut self, c: &str, recs: &[(i32, i64, &str)]) -> &mut Self {
        let list: Vec<Value> = recs.iter().map(|(p, o, v)| json!([T, p, o, v])).collect();
        self.ev(c, "invoke", "poll", Value::Null)
            .ev(c, "ok", "poll", Value::Array(list))
    }
    fn txn(&mut self, w: &str, outcome: &str, sends: &[(i32, Option<i64>, &str)]) -> &mut Self {
        let kind = match outcome {
            "commit" => "ok",
            "abort" => "fail",
            _ => "info",
        };
        let list: Vec<Value> = sends.iter().map(|(p, o, v)| json!([T, p, o, v])).collect();
        self.ev(w, "invoke", "txn", Value::Null).ev(
            w,
            kind,
            "txn",
            json!({"outcome": outcome, "sends": list}),
        )
    }
    fn drain(&mut self, isolation: &str, recs: &[(i32, i64, &str)]) -> &mut Self {
        let list: Vec<Value> = recs.iter().map(|(p, o, v)| json!([T, p, o, v])).collect();
        self.ev(
            "drain",
            "ok",
            "drain",
            json!({"isolation": isolation, "records": list}),
        )
    }
    fn check(&self) -> Result<Report, HistoryError> {
        let text = self.lines.join("\n");
        check_reader(text.as_bytes(), &CheckOptions::default())
    }
}

/// A clean history: two idempotent producers, a non-idempotent one, a read_committed and a
/// read_uncommitted consumer, a committed, an aborted and an unknown (invisible) transaction.
/// Log, partition 0: a0 a1 b0 x0 t0 t1(aborted) ; partition 1: a2 tc1 b1.
fn clean() -> H {
    let mut h = H::default();
    h.producer("a", true)
        .producer("b", true)
        .producer("n", false)
        .consumer("c1", "read_uncommitted")
        .consumer("c2", "read_committed")
        .txn_worker("w")
        .send("a", 0, 0, "a0")
        .send("a", 0, 1, "a1")
        .send("b", 0, 2, "b0")
        .send("n", 0, 3, "n0")
        .send("a", 1, 0, "a2")
        .poll("c1", &[(0, 0, "a0"), (0, 1, "a1")])
        .txn("w", "commit", &[(0, Some(4), "tc0"), (1, Some(1), "tc1")])
        .txn("w", "abort", &[(0, Some(6), "ta0")])
        .txn("w", "unknown", &[(1, None, "tu0")])
        .send("b", 1, 3, "b1")
        .poll(
            "c1",
            &[(0, 2, "b0"), (0, 3, "n0"), (0, 4, "tc0"), (0, 6, "ta0")],
        )
        .poll(
            "c2",
            &[
                (0, 0, "a0"),
                (0, 1, "a1"),
                (0, 2, "b0"),
                (0, 3, "n0"),
                (0, 4, "tc0"),
            ],
        )
        .poll("c2", &[(1, 0, "a2"), (1, 1, "tc1"), (1, 3, "b1")]);
    h
}

fn drained(h: &mut H) -> &mut H {
    h.drain(
        "read_uncommitted",
        &[
            (0, 0, "a0"),
            (0, 1, "a1"),
            (0, 2, "b0"),
            (0, 3, "n0"),
            (0, 4, "tc0"),
            (0, 6, "ta0"),
        ],
    )
    .drain(
        "read_uncommitted",
        &[(1, 0, "a2"), (1, 1, "tc1"), (1, 3, "b1")],
    )
    .drain(
        "read_committed",
        &[
            (0, 0, "a0"),
            (0, 1, "a1"),
            (0, 2, "b0"),
            (0, 3, "n0"),
            (0, 4, "tc0"),
        ],
    )
    .drain(
        "read_committed",
        &[(1, 0, "a2"), (1, 1, "tc1"), (1, 3, "b1")],
    )
}

fn only(report: &Report, kind: &str) {
    let counts = report.anomalies.counts();
    for (name, count) in counts {
        if name == kind {
            assert!(count > 0, "{kind} not detected:\n{}", report.summary());
        } else {
            assert_eq!(
                count,
                0,
                "unexpected {name} while injecting {kind}:\n{}",
                report.summary()
            );
        }
    }
    assert!(!report.valid);
}

#[test]
fn clean_history_is_valid() {
    let mut h = clean();
    let r = drained(&mut h).check().unwrap();
    assert!(r.valid, "{}", r.summary());
    assert_eq!(r.stats.sends_ok, 6);
    assert_eq!(r.stats.txns_committed, 1);
    assert_eq!(r.stats.txns_aborted, 1);
    assert_eq!(r.stats.txns_unknown, 1);
    assert_eq!(r.info.unknown_sends, 0);
    assert_eq!(r.stats.acked_by_process.get("a"), Some(&3));
    assert_eq!(r.stats.acked_by_process.get("w"), Some(&2));
    assert_eq!(r.info.never_read, 0);
}

#[test]
fn lost_acknowledged_write() {
    let mut h = clean();
    h.send("a", 1, 4, "a3");
    let r = drained(&mut h).check().unwrap();
    only(&r, "lost");
    assert_eq!(r.anomalies.lost.examples[0].value, "a3");
    assert_eq!(r.info.never_read, 1);
}

#[test]
fn lost_write_of_non_idempotent_producer_is_excluded() {
    let mut h = clean();
    h.send("n", 1, 4, "n1");
    let r = drained(&mut h).check().unwrap();
    assert!(r.valid, "{}", r.summary());
}

#[test]
fn lost_committed_transaction_write() {
    let mut h = clean();
    h.txn("w", "commit", &[(1, None, "tc2")]);
    let r = drained(&mut h).check().unwrap();
    only(&r, "lost");
}

#[test]
fn duplicate_of_idempotent_producer() {
    let mut h = clean();
    drained(&mut h).drain("read_uncommitted", &[(1, 5, "a2")]);
    let r = h.check().unwrap();
    only(&r, "duplicates");
    assert_eq!(r.anomalies.duplicates.examples[0].positions.len(), 2);
}

#[test]
fn duplicate_of_non_idempotent_producer_is_allowed() {
    let mut h = clean();
    drained(&mut h).drain("read_uncommitted", &[(1, 5, "n0")]);
    let r = h.check().unwrap();
    assert!(r.valid, "{}", r.summary());
    assert_eq!(r.info.allowed_duplicates, 1);
}

#[test]
fn inconsistent_offset() {
    let mut h = clean();
    // a second unknown send that the log holds at an offset a poll saw with another value
    h.invoke("b", 1, "b2")
        .ev("b", "info", "send", json!([T, 1, null, "b2"]));
    drained(&mut h).drain("read_uncommitted", &[(1, 1, "b2")]);
    let r = h.check().unwrap();
    only(&r, "inconsistent_offsets");
    assert_eq!(
        r.anomalies.inconsistent_offsets.examples[0].values,
        vec!["tc1", "b2"]
    );
}

#[test]
fn overwritten_acks_one_acknowledgement_is_information() {
    let mut h = clean();
    // n's acks=1 write acknowledged at (1, 2) by a leader that then failed: the next leader
    // wrote a2' there. Kafka allows that loss for acks=1.
    h.send("n", 1, 2, "n1").send("a", 1, 2, "a3");
    drained(&mut h).drain("read_uncommitted", &[(1, 2, "a3")]);
    let r = h.check().unwrap();
    assert!(r.valid, "{}", r.summary());
    assert_eq!(r.info.acks1_overwritten, 1);
    // The same with an idempotent producer's acknowledgement is an inconsistent offset.
    let mut h = clean();
    h.send("b", 1, 2, "b2").send("a", 1, 2, "a3");
    drained(&mut h).drain("read_uncommitted", &[(1, 2, "a3")]);
    let r = h.check().unwrap();
    assert!(!r.valid);
    assert_eq!(r.anomalies.inconsistent_offsets.count, 1, "{}", r.summary());
    assert_eq!(r.anomalies.lost.count, 1, "{}", r.summary());
    assert_eq!(r.info.acks1_overwritten, 0);
}

#[test]
fn reorder_within_producer_and_partition() {
    let mut h = clean();
    // a3 is sent before a4 but written after it; acks and drain agree on the inverted order
    h.invoke("a", 1, "a3")
        .invoke("a", 1, "a4")
        .ok("a", 1, 4, "a4")
        .ok("a", 1, 5, "a3");
    drained(&mut h).drain("read_uncommitted", &[(1, 4, "a4"), (1, 5, "a3")]);
    let r = h.check().unwrap();
    only(&r, "reorders");
    let e = &r.anomalies.reorders.examples[0];
    assert_eq!(
        (e.earlier_value.as_str(), e.later_value.as_str()),
        ("a3", "a4")
    );
    assert_eq!((e.earlier_offset, e.later_offset), (5, 4));
}

#[test]
fn completion_order_is_not_send_order() {
    let mut h = clean();
    // acknowledged out of order, written in order: fine
    h.invoke("a", 1, "a3")
        .invoke("a", 1, "a4")
        .ok("a", 1, 5, "a4")
        .ok("a", 1, 4, "a3");
    drained(&mut h).drain("read_uncommitted", &[(1, 4, "a3"), (1, 5, "a4")]);
    let r = h.check().unwrap();
    assert!(r.valid, "{}", r.summary());
}

#[test]
fn poll_going_backwards() {
    let mut h = clean();
    h.poll("c1", &[(0, 1, "a1")]);
    let r = drained(&mut h).check().unwrap();
    only(&r, "poll_regressions");
    assert_eq!(r.anomalies.poll_regressions.examples[0].previous_offset, 6);
}

#[test]
fn a_new_consumer_session_may_start_over() {
    let mut h = clean();
    h.consumer("c1.2", "read_uncommitted")
        .poll("c1.2", &[(0, 0, "a0")]);
    let r = drained(&mut h).check().unwrap();
    assert!(r.valid, "{}", r.summary());
}

#[test]
fn aborted_read_by_read_committed_consumer() {
    let mut h = clean();
    h.consumer("c3", "read_committed")
        .poll("c3", &[(0, 6, "ta0")]);
    let r = drained(&mut h).check().unwrap();
    only(&r, "aborted_reads");
    assert_eq!(r.anomalies.aborted_reads.examples[0].reader, "c3");
}

#[test]
fn aborted_read_in_read_committed_drain() {
    let mut h = clean();
    drained(&mut h).drain("read_committed", &[(0, 6, "ta0")]);
    let r = h.check().unwrap();
    only(&r, "aborted_reads");
    assert_eq!(r.anomalies.aborted_reads.examples[0].reader, "drain");
}

#[test]
fn non_atomic_committed_transaction() {
    let mut h = clean();
    h.txn("w", "commit", &[(0, Some(7), "tc2"), (1, Some(4), "tc3")]);
    drained(&mut h).drain("read_committed", &[(0, 7, "tc2")]);
    h.drain("read_uncommitted", &[(0, 7, "tc2")]);
    let r = h.check().unwrap();
    // tc3 is lost, and the transaction is only partly visible
    assert_eq!(r.anomalies.non_atomic_txns.count, 1, "{}", r.summary());
    assert_eq!(r.anomalies.non_atomic_txns.examples[0].missing, vec!["tc3"]);
    assert_eq!(r.anomalies.lost.count, 1);
}

#[test]
fn non_atomic_unknown_transaction() {
    let mut h = clean();
    h.txn("w", "unknown", &[(0, None, "tx0"), (1, None, "tx1")]);
    drained(&mut h).drain("read_committed", &[(0, 7, "tx0")]);
    let r = h.check().unwrap();
    only(&r, "non_atomic_txns");
}

#[test]
fn visible_unknown_transaction_is_information() {
    let mut h = clean();
    h.txn("w", "unknown", &[(0, None, "tx0"), (1, None, "tx1")]);
    drained(&mut h).drain("read_committed", &[(0, 7, "tx0"), (1, 4, "tx1")]);
    h.drain("read_uncommitted", &[(0, 7, "tx0"), (1, 4, "tx1")]);
    let r = h.check().unwrap();
    assert!(r.valid, "{}", r.summary());
    assert_eq!(r.info.unknown_txns_visible, 1); // tx0+tx1; tu0 is not in the log
}

#[test]
fn unexpected_value() {
    let mut h = clean();
    drained(&mut h).drain("read_uncommitted", &[(1, 2, "ghost")]);
    let r = h.check().unwrap();
    only(&r, "unexpected_values");
}

#[test]
fn failed_write_visible() {
    let mut h = clean();
    h.invoke("b", 1, "bf")
        .ev("b", "fail", "send", json!([T, 1, null, "bf"]));
    drained(&mut h).drain("read_uncommitted", &[(1, 2, "bf")]);
    let r = h.check().unwrap();
    only(&r, "failed_visible");
}

#[test]
fn unknown_sends_are_counted_not_anomalies() {
    let mut h = clean();
    h.invoke("a", 1, "a3") // never completed
        .invoke("b", 1, "b2")
        .ev("b", "info", "send", json!([T, 1, null, "b2"]));
    drained(&mut h).drain("read_uncommitted", &[(1, 2, "b2")]);
    let r = h.check().unwrap();
    assert!(r.valid, "{}", r.summary());
    assert_eq!((r.info.unknown_sends, r.info.unknown_sends_in_log), (2, 1));
}

#[test]
fn bad_input_is_an_error_not_a_verdict() {
    // no drain
    assert!(matches!(clean().check(), Err(HistoryError::NoDrain)));
    let mut ok = clean();
    drained(&mut ok);
    // completion without invocation
    let mut h = clean();
    h.ok("a", 1, 9, "zz");
    assert!(drained(&mut h).check().is_err());
    // undeclared process
    let mut h = clean();
    h.send("q", 1, 9, "q0");
    assert!(drained(&mut h).check().is_err());
    // a consumer that sends
    let mut h = clean();
    h.send("c1", 1, 9, "c0");
    assert!(drained(&mut h).check().is_err());
    // the same value sent twice
    let mut h = clean();
    h.send("a", 1, 9, "a0");
    assert!(drained(&mut h).check().is_err());
    // i going backwards
    let mut h = clean();
    drained(&mut h);
    h.lines.swap(3, 4);
    assert!(h.check().is_err());
    // allowed without drain
    let opts = CheckOptions {
        allow_missing_drain: true,
        examples_max: 5,
    };
    let r = check_reader(clean().lines.join("\n").as_bytes(), &opts).unwrap();
    assert!(r.valid && r.info.drain_missing);
}

// ---------------------------------------------------------------- model-based proptest

/// A correct single-node broker: partitions are vectors of (value, txn or None); aborted
/// transactions' records stay in the log (as in Kafka) but read_committed readers skip them.
#[derive(Debug, Clone)]
enum Op {
    Send {
        producer: usize,
        partition: usize,
        outcome: u8,
    },
    Txn {
        partitions: Vec<usize>,
        outcome: u8,
    },
    Poll {
        consumer: usize,
        records_max: usize,
    },
    Restart {
        consumer: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, 0..3usize, 0..10u8)
            .prop_map(|(producer, partition, outcome)| Op::Send { producer, partition, outcome }),
        1 => (prop::collection::vec(0..3usize, 1..4), 0..10u8)
            .prop_map(|(partitions, outcome)| Op::Txn { partitions, outcome }),
        3 => (0..2usize, 1..6usize).prop_map(|(consumer, records_max)| Op::Poll { consumer, records_max }),
        1 => (0..2usize).prop_map(|consumer| Op::Restart { consumer }),
    ]
}

#[derive(Clone, Copy, PartialEq)]
enum Vis {
    Plain,
    Committed,
    Aborted,
}

/// Runs the ops against the model and writes the history they produce.
fn model_history(ops: &[Op]) -> H {
    const PARTS: usize = 3;
    let mut h = H::default();
    let producers = ["p0", "p1", "n"]; // "n" is the acks=1 non-idempotent stream
    h.producer("p0", true)
        .producer("p1", true)
        .producer("n", false)
        .txn_worker("w");
    let mut log: Vec<Vec<(String, Vis)>> = vec![Vec::new(); PARTS];
    let mut seq = 0usize;
    let mut sessions = [0usize; 2];
    let mut positions = [[0usize; PARTS]; 2];
    let isolation = ["read_uncommitted", "read_committed"];
    let session_name = |c: usize, s: usize| format!("c{c}.{s}");
    for (c, iso) in isolation.iter().enumerate() {
        h.consumer(&session_name(c, 0), iso);
    }
    for op in ops {
        match op {
            Op::Send {
                producer,
                partition,
                outcome,
            } => {
                let p = producers[*producer];
                seq += 1;
                let v = format!("{p}-{seq}");
                let part = *partition as i32;
                h.invoke(p, part, &v);
                let offset = log[*partition].len() as i64;
                match outcome {
                    0 => {
                        // unknown, not written
                        h.ev(p, "info", "send", json!([T, part, null, v]));
                    }
                    1 => {
                        // unknown, written
                        log[*partition].push((v.clone(), Vis::Plain));
                        h.ev(p, "info", "send", json!([T, part, null, v]));
                    }
                    2 => {
                        h.ev(p, "fail", "send", json!([T, part, null, v]));
                    }
                    3 if p == "n" => {
                        // a non-idempotent retry: written twice, acked at the second offset
                        log[*partition].push((v.clone(), Vis::Plain));
                        log[*partition].push((v.clone(), Vis::Plain));
                        h.ok(p, part, offset + 1, &v);
                    }
                    _ => {
                        log[*partition].push((v.clone(), Vis::Plain));
                        h.ok(p, part, offset, &v);
                    }
                }
            }
            Op::Txn {
                partitions,
                outcome,
            } => {
                let (name, vis) = match outcome {
                    0..=4 => ("commit", Vis::Committed),
                    5..=7 => ("abort", Vis::Aborted),
                    8 => ("unknown", Vis::Committed),
                    _ => ("unknown", Vis::Aborted),
                };
                let mut sends = Vec::new();
                for &part in partitions {
                    seq += 1;
                    let v = format!("w-{seq}");
                    let offset = log[part].len() as i64;
                    log[part].push((v.clone(), vis));
                    sends.push((
                        part as i32,
                        if name == "unknown" {
                            None
                        } else {
                            Some(offset)
                        },
                        v,
                    ));
                }
                let refs: Vec<(i32, Option<i64>, &str)> =
                    sends.iter().map(|(p, o, v)| (*p, *o, v.as_str())).collect();
                h.txn("w", name, &refs);
            }
            Op::Poll {
                consumer,
                records_max,
            } => {
                let c = *consumer;
                let name = session_name(c, sessions[c]);
                let mut recs = Vec::new();
                for part in 0..PARTS {
                    while recs.len() < *records_max && positions[c][part] < log[part].len() {
                        let off = positions[c][part];
                        positions[c][part] += 1;
                        let (v, vis) = &log[part][off];
                        if c == 1 && *vis == Vis::Aborted {
                            continue;
                        }
                        recs.push((part as i32, off as i64, v.clone()));
                    }
                }
                let refs: Vec<(i32, i64, &str)> =
                    recs.iter().map(|(p, o, v)| (*p, *o, v.as_str())).collect();
                h.poll(&name, &refs);
            }
            Op::Restart { consumer } => {
                let c = *consumer;
                sessions[c] += 1;
                positions[c] = [0; PARTS];
                h.consumer(&session_name(c, sessions[c]), isolation[c]);
            }
        }
    }
    for (isolation, skip_aborted) in [("read_uncommitted", false), ("read_committed", true)] {
        for (part, records) in log.iter().enumerate() {
            let recs: Vec<(i32, i64, &str)> = records
                .iter()
                .enumerate()
                .filter(|(_, (_, vis))| !(skip_aborted && *vis == Vis::Aborted))
                .map(|(off, (v, _))| (part as i32, off as i64, v.as_str()))
                .collect();
            h.drain(isolation, &recs);
        }
    }
    h
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn histories_of_a_correct_model_are_valid(ops in prop::collection::vec(op(), 0..80)) {
        let h = model_history(&ops);
        let r = h.check().unwrap();
        prop_assert!(r.valid, "{}", r.summary());
    }

    /// Dropping one acknowledged idempotent record from every drain is always caught.
    #[test]
    fn a_dropped_acknowledged_record_is_detected(ops in prop::collection::vec(op(), 1..60)) {
        let h = model_history(&ops);
        let victim = h.lines.iter().find_map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["f"] == "send" && v["type"] == "ok" && v["process"] != "n")
                .then(|| v["value"][3].as_str().unwrap().to_owned())
        });
        prop_assume!(victim.is_some());
        let victim = victim.unwrap();
        let mut broken = H::default();
        for l in &h.lines {
            let mut v: Value = serde_json::from_str(l).unwrap();
            if v["f"] == "drain" {
                let recs = v["value"]["records"].as_array().unwrap().iter()
                    .filter(|r| r[3] != victim.as_str()).cloned().collect();
                v["value"]["records"] = Value::Array(recs);
            }
            broken.lines.push(v.to_string());
        }
        let r = broken.check().unwrap();
        prop_assert!(r.anomalies.lost.count == 1, "{}", r.summary());
    }
}
