//! # fjord-chaos: a Jepsen-style history checker for Kafka workloads
//!
//! `scripts/chaos` (driver: `tests/chaos/chaos.py`) runs producers, consumers and
//! transactional workers against Fjord while a seeded nemesis kills (`kill -9`), pauses
//! (SIGSTOP) and cuts off (fault proxy) nodes. Every client operation is written to a
//! *history*; after healing, the driver *drains* every partition. This crate reads that history
//! and reports, in the vocabulary of Jepsen's Kafka workload, whether what clients were told
//! (acknowledgements, committed transactions) agrees with what the log holds.
//!
//! The checker is pure: no sockets, no clock, no broker code. It streams the history line by
//! line ([`history::HistoryReader`]), so a multi-gigabyte history is never held as one string;
//! its memory is proportional to the number of distinct values and log positions.
//!
//! ## History format (JSON lines)
//!
//! Every line is one event:
//!
//! ```json
//! {"i": 17, "t_ns": 81234567, "process": "p1", "type": "ok", "f": "send",
//!  "value": ["chaos", 2, 41, "p1-12"]}
//! ```
//!
//! * `i`: event index, strictly increasing through the file (the recorder's sequence number).
//! * `t_ns`: nanoseconds since the run started (monotonic clock); informational only.
//! * `process`: the client that performed the operation. A consumer or transactional producer
//!   that had to be recreated after an error continues under a *new* process name (Jepsen's
//!   convention), which ends its read session.
//! * `type`: `invoke` (the operation started), `ok` (it definitely happened), `fail` (it
//!   definitely did not happen), `info` (outcome unknown: timeouts, lost answers, crashes).
//! * `f` and `value`:
//!
//! | `f` | `type` | `value` |
//! |---|---|---|
//! | `process` | `info` | declaration, before the process's first operation: `{"role": "producer", "idempotent": true}`, `{"role": "consumer", "isolation": "read_committed"}` (or `"read_uncommitted"`, the default), `{"role": "txn"}` (a transactional producer, idempotent by definition) |
//! | `send` | `invoke` | `[topic, partition, null, value]` |
//! | `send` | `ok` | `[topic, partition, offset, value]`: the acknowledged offset |
//! | `send` | `fail` / `info` | `[topic, partition, null, value]` |
//! | `poll` | `invoke` | `null` |
//! | `poll` | `ok` | a list of `[topic, partition, offset, value]` in the order the consumer returned them |
//! | `poll` | `fail` / `info` | anything (ignored) |
//! | `txn` | `invoke` | anything (ignored) |
//! | `txn` | `ok` / `fail` / `info` | `{"outcome": "commit" \| "abort" \| "unknown", "sends": [[topic, partition, offset or null, value], ...]}`; `commit` needs `ok`, `abort` `ok` or `fail`, `unknown` `info` |
//! | `drain` | `ok` | `{"isolation": "read_committed" \| "read_uncommitted", "records": [[topic, partition, offset, value], ...]}`: part of the final read of every partition after healing (the driver splits it over many lines) |
//! | `nemesis` | any | anything: a fault injected or healed (`process` is usually `"nemesis"`); counted, not checked |
//!
//! Sends are matched to their invocation by value, not by order, because a Kafka producer keeps
//! many sends in flight. Values must be unique per send (the driver writes `p<k>-<seq>`).
//! A line is at most [`history::LINE_BYTES_MAX`] bytes. Anything else (unknown `f`, a completion
//! without its invocation, an operation of an undeclared process, `i` going backwards, no drain
//! at all unless allowed) is *bad input*: exit code 2 of `fjord-chaos-check`.
//!
//! ## What is checked
//!
//! Anomalies (any one makes the history invalid):
//!
//! * **lost**: an acknowledged write (an `ok` send of an idempotent producer, or a send of a
//!   committed transaction) that no drain returned. Sends of producers declared
//!   `"idempotent": false` (an acks=1 stream) are excluded.
//! * **duplicate**: one value at two offsets (reads, drains and acknowledgements together).
//!   Allowed, and only counted, for non-idempotent producers, whose retries legitimately
//!   duplicate.
//! * **inconsistent offset**: two different values at one (topic, partition, offset) across
//!   acknowledgements, polls and drains. An acknowledgement of a non-idempotent (acks=1)
//!   producer whose offset holds another value in the log is not one: acks=1 writes may be
//!   lost with their leader and their offsets reused (counted as `acks1_overwritten`).
//! * **reorder**: for one idempotent producer and partition, two sends whose log offsets invert
//!   their send order (`max.in.flight` ≤ 5 with idempotence must preserve order).
//! * **poll regression**: a consumer session's polls returned offsets of a partition that do
//!   not strictly increase.
//! * **aborted read**: a `read_committed` poll or drain returned a value of an aborted
//!   transaction.
//! * **non-atomic transaction**: a committed or unknown-outcome transaction of which some but
//!   not all sends are in the drain (the `read_committed` drain when there is one).
//! * **unexpected value**: a value read that no process ever sent.
//! * **failed write visible**: a send reported `fail` (definitely not written) was read.
//!
//! Information (never an anomaly): unknown sends (`info`, or invoked and never completed) and
//! how many of them are in the log; acknowledged values never returned by any poll
//! (never-read); duplicates of non-idempotent producers; overwritten acks=1 acknowledgements.

#![forbid(unsafe_code)]

pub mod check;
pub mod error;
pub mod history;
pub mod report;

pub use check::{check_reader, CheckOptions, Checker};
pub use error::HistoryError;
pub use history::{
    Event, EventType, HistoryReader, Isolation, Payload, ProcessDecl, Record, Role, TxnOutcome,
};
pub use report::Report;
