//! The checker: folds history events into per-value and per-position state, then derives the
//! anomalies of the crate docs in [`Checker::finish`].
//!
//! Values, processes and partitions are interned to `u32` indices; every value keeps its origin
//! (which send or transaction wrote it), the first log position it was seen at (extra distinct
//! positions in a side table: duplicates are rare) and whether a poll, a read_committed poll or
//! a drain returned it. `offsets` maps each (partition, offset) to the first value seen there;
//! a different value at the same position is an inconsistent offset.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::sync::Arc;

use crate::error::HistoryError;
use crate::history::{
    DrainValue, Event, EventType, HistoryReader, Isolation, Payload, ProcessDecl, Record, Role,
    TxnOutcome, TxnValue,
};
use crate::report::{
    AbortedRead, Duplicate, FailedVisible, InconsistentOffset, Lost, NonAtomicTxn, PollRegression,
    Position, Reorder, Report, Unexpected,
};

#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Accept a history without drain events (loss and atomicity are then not checked).
    pub allow_missing_drain: bool,
    /// Examples kept per anomaly kind (counts are always exact).
    pub examples_max: usize,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            allow_missing_drain: false,
            examples_max: 20,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendState {
    Invoked,
    Ok,
    Fail,
    Info,
}

#[derive(Debug, Clone, Copy)]
enum Origin {
    /// Read, never sent (so far).
    None,
    /// `invoke_i`: the invocation's event index, which orders the producer's sends.
    Send {
        process: u32,
        tp: u32,
        invoke_i: u64,
        state: SendState,
        acked_offset: Option<i64>,
    },
    Txn {
        process: u32,
        tp: u32,
        txn: u32,
        offset: Option<i64>,
    },
}

#[derive(Debug)]
struct ValueInfo {
    name: Arc<str>,
    origin: Origin,
    /// First log position (partition index, offset) seen in an ack, poll or drain.
    first_pos: Option<(u32, i64)>,
    polled: bool,
    /// First read by a read_committed consumer: (process, partition, offset).
    committed_read: Option<(u32, u32, i64)>,
    drained_uncommitted: bool,
    drained_committed: bool,
}

#[derive(Debug)]
struct TxnInfo {
    process: u32,
    i: u64,
    outcome: TxnOutcome,
    values: Vec<u32>,
}

/// Order key of a send within its producer: (event index, position within a transaction).
type SendKey = (u64, u32);

/// An acknowledged send: (order key, offset, value).
type Ack = (SendKey, i64, u32);

/// Streaming history checker: [`Checker::observe`] every event, then [`Checker::finish`].
#[derive(Debug)]
pub struct Checker {
    opts: CheckOptions,
    last_i: Option<u64>,
    events: u64,
    procs: Vec<(String, ProcessDecl)>,
    proc_idx: HashMap<String, u32>,
    tps: Vec<(String, i32)>,
    /// topic -> partition -> index into `tps` (looked up without allocating).
    tp_idx: HashMap<String, HashMap<i32, u32>>,
    values: Vec<ValueInfo>,
    value_idx: HashMap<Arc<str>, u32>,
    /// (partition, offset) -> first value seen there.
    offsets: HashMap<(u32, i64), u32>,
    /// Further values seen at a position (inconsistent offsets), in first-seen order.
    offset_conflicts: BTreeMap<(u32, i64), Vec<u32>>,
    /// Value -> further distinct positions (duplicates).
    extra_positions: BTreeMap<u32, Vec<(u32, i64)>>,
    /// Last offset returned per (consumer process, partition).
    poll_last: HashMap<(u32, u32), i64>,
    /// Acknowledged offsets of idempotent producers per (process, partition).
    acks: HashMap<(u32, u32), Vec<Ack>>,
    /// Acknowledgements of non-idempotent (acks=1) producers: (value, (tp, offset)). Kafka
    /// may lose such a write when its leader fails, and the offset is then reused, so they
    /// claim a position only where nothing else is seen (see `finish`).
    weak_acks: Vec<(u32, (u32, i64))>,
    txns: Vec<TxnInfo>,
    report: Report,
}

fn invalid(line: u64, reason: impl Into<String>) -> HistoryError {
    HistoryError::Invalid {
        line,
        reason: reason.into(),
    }
}

impl Checker {
    pub fn new(opts: CheckOptions) -> Self {
        Checker {
            opts,
            last_i: None,
            events: 0,
            procs: Vec::new(),
            proc_idx: HashMap::new(),
            tps: Vec::new(),
            tp_idx: HashMap::new(),
            values: Vec::new(),
            value_idx: HashMap::new(),
            offsets: HashMap::new(),
            offset_conflicts: BTreeMap::new(),
            extra_positions: BTreeMap::new(),
            poll_last: HashMap::new(),
            acks: HashMap::new(),
            weak_acks: Vec::new(),
            txns: Vec::new(),
            report: Report::default(),
        }
    }

    fn tp(&mut self, r: &Record) -> u32 {
        if let Some(&idx) = self.tp_idx.get(&r.topic).and_then(|p| p.get(&r.partition)) {
            return idx;
        }
        let idx = index_u32(self.tps.len());
        self.tps.push((r.topic.clone(), r.partition));
        self.tp_idx
            .entry(r.topic.clone())
            .or_default()
            .insert(r.partition, idx);
        idx
    }

    fn value(&mut self, name: &str) -> u32 {
        if let Some(&idx) = self.value_idx.get(name) {
            return idx;
        }
        let idx = index_u32(self.values.len());
        let name: Arc<str> = Arc::from(name);
        self.values.push(ValueInfo {
            name: name.clone(),
            origin: Origin::None,
            first_pos: None,
            polled: false,
            committed_read: None,
            drained_uncommitted: false,
            drained_committed: false,
        });
        self.value_idx.insert(name, idx);
        idx
    }

    /// Records that the log holds `value` at (tp, offset).
    fn at(&mut self, value: u32, tp: u32, offset: i64) {
        let pos = (tp, offset);
        let holder = *self.offsets.entry(pos).or_insert(value);
        if holder != value {
            let others = self.offset_conflicts.entry(pos).or_default();
            if !others.contains(&value) {
                others.push(value);
            }
        }
        let info = &mut self.values[value as usize];
        match info.first_pos {
            None => info.first_pos = Some(pos),
            Some(first) if first != pos => {
                let extra = self.extra_positions.entry(value).or_default();
                if !extra.contains(&pos) {
                    extra.push(pos);
                }
            }
            Some(_) => {}
        }
    }

    fn declared(&self, line: u64, process: &str, role: Role) -> Result<u32, HistoryError> {
        let idx = *self.proc_idx.get(process).ok_or_else(|| {
            invalid(
                line,
                format!("process {process:?} acts before its declaration"),
            )
        })?;
        let decl_role = self.procs[idx as usize].1.role;
        if decl_role != role {
            return Err(invalid(
                line,
                format!("process {process:?} is declared {decl_role:?}, acts as {role:?}"),
            ));
        }
        Ok(idx)
    }

    /// Folds one event in; `line` is used in error messages only.
    pub fn observe(&mut self, ev: Event, line: u64) -> Result<(), HistoryError> {
        if let Some(last) = self.last_i {
            if ev.i <= last {
                return Err(invalid(line, format!("i = {} after i = {last}", ev.i)));
            }
        }
        self.last_i = Some(ev.i);
        self.events += 1;
        match ev.payload {
            Payload::Process(decl) => match self.proc_idx.get(&ev.process) {
                Some(&idx) if self.procs[idx as usize].1 != decl => {
                    return Err(invalid(
                        line,
                        format!("process {:?} redeclared", ev.process),
                    ))
                }
                Some(_) => {}
                None => {
                    self.proc_idx
                        .insert(ev.process.clone(), index_u32(self.procs.len()));
                    self.procs.push((ev.process, decl));
                }
            },
            Payload::Send(r) => self.send(line, &ev.process, ev.i, ev.kind, &r)?,
            Payload::Poll(records) => {
                let process = self.declared(line, &ev.process, Role::Consumer)?;
                if ev.kind == EventType::Ok {
                    self.poll(process, &records);
                }
            }
            Payload::Txn(None) => {
                self.declared(line, &ev.process, Role::Txn)?;
            }
            Payload::Txn(Some(t)) => self.txn(line, &ev.process, ev.i, t)?,
            Payload::Drain(d) => self.drain(d),
            Payload::Nemesis(_) => self.report.stats.nemesis_events += 1,
        }
        Ok(())
    }

    fn send(
        &mut self,
        line: u64,
        process_name: &str,
        i: u64,
        kind: EventType,
        r: &Record,
    ) -> Result<(), HistoryError> {
        let process = self.declared(line, process_name, Role::Producer)?;
        let tp = self.tp(r);
        let value = self.value(&r.value);
        let origin = self.values[value as usize].origin;
        match (kind, origin) {
            (EventType::Invoke, Origin::None) => {
                self.report.stats.sends_invoked += 1;
                self.values[value as usize].origin = Origin::Send {
                    process,
                    tp,
                    invoke_i: i,
                    state: SendState::Invoked,
                    acked_offset: None,
                };
            }
            (EventType::Invoke, _) => {
                return Err(invalid(line, format!("value {:?} sent twice", r.value)));
            }
            (
                _,
                Origin::Send {
                    process: p,
                    tp: t,
                    invoke_i,
                    state: SendState::Invoked,
                    ..
                },
            ) if p == process && t == tp => {
                let (state, acked_offset) = match kind {
                    EventType::Ok => (SendState::Ok, r.offset),
                    EventType::Fail => (SendState::Fail, None),
                    _ => (SendState::Info, None),
                };
                self.values[value as usize].origin = Origin::Send {
                    process,
                    tp,
                    invoke_i,
                    state,
                    acked_offset,
                };
                match state {
                    SendState::Ok => self.report.stats.sends_ok += 1,
                    SendState::Fail => self.report.stats.sends_failed += 1,
                    _ => {}
                }
                if let Some(offset) = acked_offset {
                    if self.procs[process as usize].1.idempotent {
                        self.at(value, tp, offset);
                    } else {
                        self.weak_acks.push((value, (tp, offset)));
                    }
                }
            }
            _ => {
                return Err(invalid(
                    line,
                    format!(
                        "{kind:?} send of {:?} by {process_name:?} without a matching pending \
                         invocation",
                        r.value
                    ),
                ));
            }
        }
        Ok(())
    }

    fn poll(&mut self, process: u32, records: &[Record]) {
        let read_committed = self.procs[process as usize].1.isolation == Isolation::ReadCommitted;
        self.report.stats.polls_ok += 1;
        for r in records {
            let Some(offset) = r.offset else { continue }; // parse_event guarantees offsets
            self.report.stats.records_polled += 1;
            let tp = self.tp(r);
            let value = self.value(&r.value);
            self.at(value, tp, offset);
            let info = &mut self.values[value as usize];
            info.polled = true;
            if read_committed && info.committed_read.is_none() {
                info.committed_read = Some((process, tp, offset));
            }
            if let Some(previous) = self.poll_last.insert((process, tp), offset) {
                if offset <= previous {
                    let (topic, partition) = self.tps[tp as usize].clone();
                    let name = self.procs[process as usize].0.clone();
                    self.report
                        .anomalies
                        .poll_regressions
                        .push(self.opts.examples_max, || PollRegression {
                            process: name,
                            topic,
                            partition,
                            previous_offset: previous,
                            offset,
                        });
                }
            }
        }
    }

    fn txn(
        &mut self,
        line: u64,
        process_name: &str,
        i: u64,
        t: TxnValue,
    ) -> Result<(), HistoryError> {
        let process = self.declared(line, process_name, Role::Txn)?;
        let txn = index_u32(self.txns.len());
        let mut values = Vec::with_capacity(t.sends.len());
        for (pos, r) in t.sends.iter().enumerate() {
            let tp = self.tp(r);
            let value = self.value(&r.value);
            if !matches!(self.values[value as usize].origin, Origin::None) {
                return Err(invalid(line, format!("value {:?} sent twice", r.value)));
            }
            self.values[value as usize].origin = Origin::Txn {
                process,
                tp,
                txn,
                offset: r.offset,
            };
            if let Some(offset) = r.offset {
                self.at(value, tp, offset);
                self.acks.entry((process, tp)).or_default().push((
                    (i, index_u32(pos)),
                    offset,
                    value,
                ));
            }
            values.push(value);
        }
        match t.outcome {
            TxnOutcome::Commit => self.report.stats.txns_committed += 1,
            TxnOutcome::Abort => self.report.stats.txns_aborted += 1,
            TxnOutcome::Unknown => self.report.stats.txns_unknown += 1,
        }
        self.txns.push(TxnInfo {
            process,
            i,
            outcome: t.outcome,
            values,
        });
        Ok(())
    }

    fn drain(&mut self, d: DrainValue) {
        self.report.stats.drain_events += 1;
        for r in &d.records {
            let Some(offset) = r.offset else { continue };
            let tp = self.tp(r);
            let value = self.value(&r.value);
            self.at(value, tp, offset);
            let info = &mut self.values[value as usize];
            match d.isolation {
                Isolation::ReadUncommitted => {
                    info.drained_uncommitted = true;
                    self.report.stats.drained_read_uncommitted += 1;
                }
                Isolation::ReadCommitted => {
                    info.drained_committed = true;
                    self.report.stats.drained_read_committed += 1;
                }
            }
        }
    }

    fn position(&self, (tp, offset): (u32, i64)) -> Position {
        let (topic, partition) = self.tps[tp as usize].clone();
        Position {
            topic,
            partition,
            offset,
        }
    }

    /// Derives every anomaly and returns the report.
    pub fn finish(mut self) -> Result<Report, HistoryError> {
        let max = self.opts.examples_max;
        let stats = &self.report.stats;
        let has_drain = stats.drain_events > 0;
        // Atomicity is judged on the read_committed drain when there is one.
        let drained_committed = stats.drained_read_committed > 0;
        if !has_drain && !self.opts.allow_missing_drain {
            return Err(HistoryError::NoDrain);
        }
        // acks=1 acknowledgements: a position another value holds in the log (a truncated
        // write whose offset the next leader reused) is information, not an inconsistency.
        for (value, (tp, offset)) in std::mem::take(&mut self.weak_acks) {
            match self.offsets.get(&(tp, offset)) {
                Some(&holder) if holder != value => self.report.info.acks1_overwritten += 1,
                _ => self.at(value, tp, offset),
            }
        }
        let mut r = std::mem::take(&mut self.report);
        r.info.drain_missing = !has_drain;
        r.stats.events = self.events;
        r.stats.processes = self.procs.len() as u64;
        r.stats.partitions = self.tps.len() as u64;
        r.stats.distinct_values = self.values.len() as u64;
        let name_of = |p: u32| self.procs[p as usize].0.clone();
        let mut acked_by_process = vec![0u64; self.procs.len()];
        let idempotent = |p: u32| self.procs[p as usize].1.idempotent;

        for (idx, v) in self.values.iter().enumerate() {
            let drained = v.drained_uncommitted || v.drained_committed;
            let mut acked_by = None;
            let mut dup_allowed = false;
            match v.origin {
                Origin::None => r.anomalies.unexpected_values.push(max, || Unexpected {
                    value: v.name.to_string(),
                    position: v.first_pos.map(|p| self.position(p)),
                }),
                Origin::Send {
                    process,
                    tp,
                    state,
                    acked_offset,
                    ..
                } => {
                    dup_allowed = !idempotent(process);
                    match state {
                        SendState::Ok => {
                            acked_by = Some(process);
                            if has_drain && !drained && idempotent(process) {
                                let (topic, partition) = self.tps[tp as usize].clone();
                                r.anomalies.lost.push(max, || Lost {
                                    value: v.name.to_string(),
                                    process: name_of(process),
                                    topic,
                                    partition,
                                    acked_offset,
                                });
                            }
                        }
                        SendState::Fail => {
                            if drained || v.polled {
                                r.anomalies.failed_visible.push(max, || FailedVisible {
                                    value: v.name.to_string(),
                                    process: name_of(process),
                                });
                            }
                        }
                        SendState::Invoked | SendState::Info => {
                            r.stats.sends_unknown += 1;
                            r.info.unknown_sends += 1;
                            if drained {
                                r.info.unknown_sends_in_log += 1;
                            }
                        }
                    }
                }
                Origin::Txn {
                    process,
                    tp,
                    txn,
                    offset,
                } => {
                    let outcome = self.txns[txn as usize].outcome;
                    if outcome == TxnOutcome::Commit {
                        acked_by = Some(process);
                        if has_drain && !drained {
                            let (topic, partition) = self.tps[tp as usize].clone();
                            r.anomalies.lost.push(max, || Lost {
                                value: v.name.to_string(),
                                process: name_of(process),
                                topic,
                                partition,
                                acked_offset: offset,
                            });
                        }
                    }
                    if outcome == TxnOutcome::Abort {
                        if let Some((reader, tp, offset)) = v.committed_read {
                            let (topic, partition) = self.tps[tp as usize].clone();
                            r.anomalies.aborted_reads.push(max, || AbortedRead {
                                value: v.name.to_string(),
                                reader: name_of(reader),
                                topic,
                                partition,
                                offset,
                            });
                        }
                        if v.drained_committed {
                            let pos = v.first_pos.map(|p| self.position(p));
                            r.anomalies.aborted_reads.push(max, || AbortedRead {
                                value: v.name.to_string(),
                                reader: "drain".to_owned(),
                                topic: pos.as_ref().map_or_else(String::new, |p| p.topic.clone()),
                                partition: pos.as_ref().map_or(-1, |p| p.partition),
                                offset: pos.as_ref().map_or(-1, |p| p.offset),
                            });
                        }
                    }
                }
            }
            if let Some(p) = acked_by {
                acked_by_process[p as usize] += 1;
                if !v.polled {
                    r.info.never_read += 1;
                }
            }
            if let Some(extra) = self.extra_positions.get(&index_u32(idx)) {
                if dup_allowed {
                    r.info.allowed_duplicates += 1;
                } else {
                    let process = match v.origin {
                        Origin::Send { process, .. } | Origin::Txn { process, .. } => {
                            Some(name_of(process))
                        }
                        Origin::None => None,
                    };
                    r.anomalies.duplicates.push(max, || Duplicate {
                        value: v.name.to_string(),
                        process,
                        positions: v
                            .first_pos
                            .iter()
                            .chain(extra.iter())
                            .map(|&p| self.position(p))
                            .collect(),
                    });
                }
            }
        }

        for (p, &n) in acked_by_process.iter().enumerate() {
            if n > 0 {
                r.stats.acked_by_process.insert(self.procs[p].0.clone(), n);
            }
        }

        for (&pos, others) in &self.offset_conflicts {
            let holder = self.offsets.get(&pos).copied();
            let position = self.position(pos);
            r.anomalies
                .inconsistent_offsets
                .push(max, || InconsistentOffset {
                    topic: position.topic,
                    partition: position.partition,
                    offset: position.offset,
                    values: holder
                        .iter()
                        .chain(others.iter())
                        .map(|&v| self.values[v as usize].name.to_string())
                        .collect(),
                });
        }

        // Reorders: per idempotent producer and partition, acknowledged offsets in send order
        // (transactional sends were collected in `txn`; plain sends are ordered by invocation).
        let mut acks = std::mem::take(&mut self.acks);
        for (idx, v) in self.values.iter().enumerate() {
            if let Origin::Send {
                process,
                tp,
                invoke_i,
                state: SendState::Ok,
                acked_offset: Some(offset),
            } = v.origin
            {
                if idempotent(process) {
                    acks.entry((process, tp)).or_default().push((
                        (invoke_i, 0),
                        offset,
                        index_u32(idx),
                    ));
                }
            }
        }
        let mut keys: Vec<&(u32, u32)> = acks.keys().collect();
        keys.sort();
        for key in keys {
            let (process, tp) = *key;
            let mut list = acks[key].clone();
            list.sort_unstable_by_key(|&(k, _, _)| k);
            for pair in list.windows(2) {
                let (_, earlier_offset, earlier) = pair[0];
                let (_, later_offset, later) = pair[1];
                if later_offset <= earlier_offset {
                    let (topic, partition) = self.tps[tp as usize].clone();
                    r.anomalies.reorders.push(max, || Reorder {
                        process: name_of(process),
                        topic,
                        partition,
                        earlier_value: self.values[earlier as usize].name.to_string(),
                        earlier_offset,
                        later_value: self.values[later as usize].name.to_string(),
                        later_offset,
                    });
                }
            }
        }

        for t in &self.txns {
            let visible: Vec<bool> = t
                .values
                .iter()
                .map(|&v| {
                    let v = &self.values[v as usize];
                    if drained_committed {
                        v.drained_committed
                    } else {
                        v.drained_uncommitted
                    }
                })
                .collect();
            let n_visible = visible.iter().filter(|&&b| b).count();
            if t.outcome == TxnOutcome::Unknown && n_visible > 0 && n_visible == visible.len() {
                r.info.unknown_txns_visible += 1;
            }
            let partial = n_visible > 0 && n_visible < visible.len();
            if has_drain && partial && t.outcome != TxnOutcome::Abort {
                r.anomalies.non_atomic_txns.push(max, || NonAtomicTxn {
                    process: name_of(t.process),
                    i: t.i,
                    outcome: t.outcome,
                    visible: n_visible,
                    sends: visible.len(),
                    missing: t
                        .values
                        .iter()
                        .zip(&visible)
                        .filter(|(_, &b)| !b)
                        .map(|(&v, _)| self.values[v as usize].name.to_string())
                        .collect(),
                });
            }
        }
        r.valid = r.anomalies.total() == 0;
        Ok(r)
    }
}

fn index_u32(len: usize) -> u32 {
    // More than 4 billion distinct values, processes or partitions is beyond any history
    // this checker is meant for; it would need a wider index, not silent wrap-around.
    assert!(len < u32::MAX as usize, "history too large for u32 indices");
    len as u32
}

/// Reads a whole history from `input` and checks it.
pub fn check_reader<R: BufRead>(input: R, opts: &CheckOptions) -> Result<Report, HistoryError> {
    let mut checker = Checker::new(opts.clone());
    let mut reader = HistoryReader::new(input);
    while let Some(ev) = reader.next() {
        let ev = ev?;
        checker.observe(ev, reader.line())?;
    }
    checker.finish()
}

#[cfg(test)]
mod tests;
