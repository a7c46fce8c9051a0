//! The checker's verdict: statistics, anomalies (exact counts plus a bounded list of
//! examples each) and information counts; serialisable for `--json` and printable as a
//! human summary.

use std::fmt::Write as _;

use serde::Serialize;

use crate::history::TxnOutcome;

/// An exact count and at most `examples_max` examples.
#[derive(Debug, Clone, Serialize)]
pub struct Found<T> {
    pub count: u64,
    pub examples: Vec<T>,
}

impl<T> Default for Found<T> {
    fn default() -> Self {
        Found {
            count: 0,
            examples: Vec::new(),
        }
    }
}

impl<T> Found<T> {
    /// Counts one occurrence; builds the example only while fewer than `examples_max` are kept.
    pub fn push(&mut self, examples_max: usize, example: impl FnOnce() -> T) {
        self.count += 1;
        if self.examples.len() < examples_max {
            self.examples.push(example());
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Lost {
    pub value: String,
    pub process: String,
    pub topic: String,
    pub partition: i32,
    /// The acknowledged offset (`None` for a transactional send without a delivery report).
    pub acked_offset: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Duplicate {
    pub value: String,
    pub process: Option<String>,
    pub positions: Vec<Position>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InconsistentOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Reorder {
    pub process: String,
    pub topic: String,
    pub partition: i32,
    /// Sent first...
    pub earlier_value: String,
    pub earlier_offset: i64,
    /// ...but written at a lower (or equal) offset.
    pub later_value: String,
    pub later_offset: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PollRegression {
    pub process: String,
    pub topic: String,
    pub partition: i32,
    pub previous_offset: i64,
    pub offset: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AbortedRead {
    pub value: String,
    /// The read_committed consumer process, or `"drain"`.
    pub reader: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct NonAtomicTxn {
    pub process: String,
    /// The `i` of the transaction's completion event.
    pub i: u64,
    pub outcome: TxnOutcome,
    pub visible: usize,
    pub sends: usize,
    pub missing: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Unexpected {
    pub value: String,
    pub position: Option<Position>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailedVisible {
    pub value: String,
    pub process: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Anomalies {
    pub lost: Found<Lost>,
    pub duplicates: Found<Duplicate>,
    pub inconsistent_offsets: Found<InconsistentOffset>,
    pub reorders: Found<Reorder>,
    pub poll_regressions: Found<PollRegression>,
    pub aborted_reads: Found<AbortedRead>,
    pub non_atomic_txns: Found<NonAtomicTxn>,
    pub unexpected_values: Found<Unexpected>,
    pub failed_visible: Found<FailedVisible>,
}

impl Anomalies {
    /// (name, count) of every kind, in report order.
    pub fn counts(&self) -> [(&'static str, u64); 9] {
        [
            ("lost", self.lost.count),
            ("duplicates", self.duplicates.count),
            ("inconsistent_offsets", self.inconsistent_offsets.count),
            ("reorders", self.reorders.count),
            ("poll_regressions", self.poll_regressions.count),
            ("aborted_reads", self.aborted_reads.count),
            ("non_atomic_txns", self.non_atomic_txns.count),
            ("unexpected_values", self.unexpected_values.count),
            ("failed_visible", self.failed_visible.count),
        ]
    }

    pub fn total(&self) -> u64 {
        self.counts().iter().map(|(_, n)| n).sum()
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub events: u64,
    pub processes: u64,
    pub partitions: u64,
    pub distinct_values: u64,
    pub sends_invoked: u64,
    pub sends_ok: u64,
    pub sends_failed: u64,
    pub sends_unknown: u64,
    /// Acknowledged sends per process (plain sends and sends of committed transactions).
    pub acked_by_process: std::collections::BTreeMap<String, u64>,
    pub polls_ok: u64,
    pub records_polled: u64,
    pub txns_committed: u64,
    pub txns_aborted: u64,
    pub txns_unknown: u64,
    pub drain_events: u64,
    pub drained_read_uncommitted: u64,
    pub drained_read_committed: u64,
    pub nemesis_events: u64,
}

/// Counted, never anomalies.
#[derive(Debug, Clone, Default, Serialize)]
pub struct InfoCounts {
    /// Sends completed `info` or never completed.
    pub unknown_sends: u64,
    /// ...of which the drain holds this many.
    pub unknown_sends_in_log: u64,
    /// Unknown-outcome transactions whose sends are (all) in the log.
    pub unknown_txns_visible: u64,
    /// Acknowledged values no poll returned (the drain may have).
    pub never_read: u64,
    /// Values of non-idempotent producers at more than one offset.
    pub allowed_duplicates: u64,
    /// Acknowledgements of non-idempotent (acks=1) producers whose offset holds another value
    /// in the log: the write was lost with its leader, as Kafka allows for acks=1.
    pub acks1_overwritten: u64,
    /// `true` when the history had no drain (`--allow-missing-drain`): loss and atomicity
    /// were not checked.
    pub drain_missing: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub valid: bool,
    pub stats: Stats,
    pub anomalies: Anomalies,
    pub info: InfoCounts,
}

impl Report {
    /// A multi-line human summary: verdict, statistics, anomaly counts and examples.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let s = &self.stats;
        let verdict = if self.valid { "VALID" } else { "INVALID" };
        let _ = writeln!(
            out,
            "history: {verdict} ({} anomalies)",
            self.anomalies.total()
        );
        let _ = writeln!(
            out,
            "  events {}  processes {}  partitions {}  distinct values {}  nemesis events {}",
            s.events, s.processes, s.partitions, s.distinct_values, s.nemesis_events
        );
        let _ = writeln!(
            out,
            "  sends: invoked {}  ok {}  failed {}  unknown {}",
            s.sends_invoked, s.sends_ok, s.sends_failed, s.sends_unknown
        );
        let _ = writeln!(
            out,
            "  txns: committed {}  aborted {}  unknown {}",
            s.txns_committed, s.txns_aborted, s.txns_unknown
        );
        let _ = writeln!(
            out,
            "  polls ok {} ({} records)  drained: read_uncommitted {}  read_committed {}",
            s.polls_ok, s.records_polled, s.drained_read_uncommitted, s.drained_read_committed
        );
        let acked: Vec<String> = s
            .acked_by_process
            .iter()
            .map(|(p, n)| format!("{p}={n}"))
            .collect();
        let _ = writeln!(out, "  acknowledged per process: {}", acked.join(" "));
        let i = &self.info;
        let _ =
            writeln!(
            out,
            "  info: unknown sends {} ({} in the log)  unknown txns visible {}  never read {}  \
             allowed duplicates {}  acks=1 overwritten {}{}",
            i.unknown_sends,
            i.unknown_sends_in_log,
            i.unknown_txns_visible,
            i.never_read,
            i.allowed_duplicates,
            i.acks1_overwritten,
            if i.drain_missing { "  NO DRAIN: loss and atomicity not checked" } else { "" }
        );
        for (name, count) in self.anomalies.counts() {
            let _ = writeln!(out, "  {name:<22} {count}");
        }
        let a = &self.anomalies;
        examples(&mut out, "lost", &a.lost.examples);
        examples(&mut out, "duplicate", &a.duplicates.examples);
        examples(
            &mut out,
            "inconsistent offset",
            &a.inconsistent_offsets.examples,
        );
        examples(&mut out, "reorder", &a.reorders.examples);
        examples(&mut out, "poll regression", &a.poll_regressions.examples);
        examples(&mut out, "aborted read", &a.aborted_reads.examples);
        examples(&mut out, "non-atomic txn", &a.non_atomic_txns.examples);
        examples(&mut out, "unexpected value", &a.unexpected_values.examples);
        examples(&mut out, "failed write visible", &a.failed_visible.examples);
        out
    }
}

fn examples<T: Serialize>(out: &mut String, what: &str, list: &[T]) {
    for e in list {
        let json = serde_json::to_string(e).unwrap_or_else(|_| "<unprintable>".to_owned());
        let _ = writeln!(out, "  {what}: {json}");
    }
}
