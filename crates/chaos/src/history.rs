//! History events and a streaming reader of JSON-lines histories (schema: crate docs).
//!
//! [`HistoryReader`] reads one line at a time through a bounded buffer
//! ([`LINE_BYTES_MAX`]) and parses it into an [`Event`], so a history of any size streams
//! through the checker.

use std::io::{BufRead, Read};

use serde::{Deserialize, Serialize};

use crate::error::HistoryError;

/// Longest accepted history line, newline excluded (1 MiB). The driver splits drains and
/// large polls over several lines to stay below it.
pub const LINE_BYTES_MAX: usize = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Invoke,
    Ok,
    Fail,
    Info,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Function {
    Process,
    Send,
    Poll,
    Txn,
    Drain,
    Nemesis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    #[default]
    ReadUncommitted,
    ReadCommitted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Producer,
    Consumer,
    Txn,
}

/// A process declaration (`f = "process"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessDecl {
    pub role: Role,
    /// Producers only: `false` for a non-idempotent (e.g. acks=1) stream, whose sends are
    /// excluded from the loss, duplicate and order checks.
    #[serde(default = "default_true")]
    pub idempotent: bool,
    /// Consumers only.
    #[serde(default)]
    pub isolation: Isolation,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TxnOutcome {
    Commit,
    Abort,
    Unknown,
}

/// `[topic, partition, offset, value]`; `offset` is `null` where unknown (invocations, unknown
/// sends, transactional sends without a delivery report).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    from = "(String, i32, Option<i64>, String)",
    into = "(String, i32, Option<i64>, String)"
)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: Option<i64>,
    pub value: String,
}

impl From<(String, i32, Option<i64>, String)> for Record {
    fn from((topic, partition, offset, value): (String, i32, Option<i64>, String)) -> Self {
        Record {
            topic,
            partition,
            offset,
            value,
        }
    }
}

impl From<Record> for (String, i32, Option<i64>, String) {
    fn from(r: Record) -> Self {
        (r.topic, r.partition, r.offset, r.value)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnValue {
    pub outcome: TxnOutcome,
    pub sends: Vec<Record>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainValue {
    pub isolation: Isolation,
    pub records: Vec<Record>,
}

/// The decoded `value` of an event, by `f`.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Process(ProcessDecl),
    Send(Record),
    /// `ok` polls carry their records; other poll events carry none.
    Poll(Vec<Record>),
    /// `None` for a transaction's invocation.
    Txn(Option<TxnValue>),
    Drain(DrainValue),
    Nemesis(serde_json::Value),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub i: u64,
    pub t_ns: u64,
    pub process: String,
    pub kind: EventType,
    pub payload: Payload,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    i: u64,
    t_ns: u64,
    process: String,
    #[serde(rename = "type")]
    kind: EventType,
    f: Function,
    #[serde(default)]
    value: serde_json::Value,
}

fn invalid(line: u64, reason: impl Into<String>) -> HistoryError {
    HistoryError::Invalid {
        line,
        reason: reason.into(),
    }
}

/// Parses one history line (`line` is its 1-based number, for error messages).
pub fn parse_event(text: &[u8], line: u64) -> Result<Event, HistoryError> {
    let raw: RawEvent =
        serde_json::from_slice(text).map_err(|source| HistoryError::Json { line, source })?;
    let json = |source| HistoryError::Json { line, source };
    let payload = match (raw.f, raw.kind) {
        (Function::Process, EventType::Info) => {
            Payload::Process(serde_json::from_value(raw.value).map_err(json)?)
        }
        (Function::Process, _) => {
            return Err(invalid(line, "a process declaration must be type info"))
        }
        (Function::Send, kind) => {
            let r: Record = serde_json::from_value(raw.value).map_err(json)?;
            match (kind, r.offset) {
                (EventType::Ok, None) => return Err(invalid(line, "an ok send needs its offset")),
                (EventType::Ok, Some(o)) if o < 0 => {
                    return Err(invalid(line, format!("negative offset {o}")))
                }
                (EventType::Invoke | EventType::Fail | EventType::Info, Some(_)) => {
                    return Err(invalid(line, "only an ok send carries an offset"))
                }
                _ => {}
            }
            Payload::Send(r)
        }
        (Function::Poll, EventType::Ok) => {
            let records: Vec<Record> = serde_json::from_value(raw.value).map_err(json)?;
            if records.iter().any(|r| r.offset.is_none_or(|o| o < 0)) {
                return Err(invalid(line, "every polled record needs an offset >= 0"));
            }
            Payload::Poll(records)
        }
        (Function::Poll, _) => Payload::Poll(Vec::new()),
        (Function::Txn, EventType::Invoke) => Payload::Txn(None),
        (Function::Txn, kind) => {
            let t: TxnValue = serde_json::from_value(raw.value).map_err(json)?;
            let consistent = matches!(
                (t.outcome, kind),
                (TxnOutcome::Commit, EventType::Ok)
                    | (TxnOutcome::Abort, EventType::Ok | EventType::Fail)
                    | (TxnOutcome::Unknown, EventType::Info)
            );
            if !consistent {
                return Err(invalid(
                    line,
                    format!("txn outcome {:?} with type {kind:?}", t.outcome),
                ));
            }
            if t.sends.iter().any(|r| r.offset.is_some_and(|o| o < 0)) {
                return Err(invalid(line, "negative offset in a transaction's sends"));
            }
            Payload::Txn(Some(t))
        }
        (Function::Drain, EventType::Ok) => {
            let d: DrainValue = serde_json::from_value(raw.value).map_err(json)?;
            if d.records.iter().any(|r| r.offset.is_none_or(|o| o < 0)) {
                return Err(invalid(line, "every drained record needs an offset >= 0"));
            }
            Payload::Drain(d)
        }
        (Function::Drain, _) => return Err(invalid(line, "a drain event must be type ok")),
        (Function::Nemesis, _) => Payload::Nemesis(raw.value),
    };
    Ok(Event {
        i: raw.i,
        t_ns: raw.t_ns,
        process: raw.process,
        kind: raw.kind,
        payload,
    })
}

/// Streams [`Event`]s out of a JSON-lines history; blank lines are skipped.
pub struct HistoryReader<R> {
    inner: R,
    buf: Vec<u8>,
    line: u64,
    line_bytes_max: usize,
}

impl<R: BufRead> HistoryReader<R> {
    pub fn new(inner: R) -> Self {
        Self::with_line_limit(inner, LINE_BYTES_MAX)
    }

    pub fn with_line_limit(inner: R, line_bytes_max: usize) -> Self {
        assert!(line_bytes_max > 0);
        HistoryReader {
            inner,
            buf: Vec::new(),
            line: 0,
            line_bytes_max,
        }
    }

    /// 1-based number of the last line read.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// The next non-blank line, without its line ending, or `None` at the end.
    fn next_line(&mut self) -> Result<Option<&[u8]>, HistoryError> {
        loop {
            self.buf.clear();
            // +1 for the newline; a line that fills the window without one is too long.
            let window = self.line_bytes_max as u64 + 1;
            let n = (&mut self.inner)
                .take(window)
                .read_until(b'\n', &mut self.buf)?;
            if n == 0 {
                return Ok(None);
            }
            self.line += 1;
            if self.buf.last() == Some(&b'\n') {
                self.buf.pop();
            } else if n as u64 == window {
                return Err(HistoryError::LineTooLong {
                    line: self.line,
                    line_bytes_max: self.line_bytes_max,
                });
            }
            if self.buf.last() == Some(&b'\r') {
                self.buf.pop();
            }
            if self.buf.iter().any(|b| !b.is_ascii_whitespace()) {
                return Ok(Some(&self.buf));
            }
        }
    }
}

impl<R: BufRead> Iterator for HistoryReader<R> {
    type Item = Result<Event, HistoryError>;

    fn next(&mut self) -> Option<Self::Item> {
        let line = self.line;
        match self.next_line() {
            Ok(Some(text)) => Some(parse_event(text, line + 1)),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind() {
        let text = br#"{"i":0,"t_ns":1,"process":"p1","type":"info","f":"process","value":{"role":"producer","idempotent":false}}
{"i":1,"t_ns":2,"process":"p1","type":"invoke","f":"send","value":["t",0,null,"p1-0"]}

{"i":2,"t_ns":3,"process":"p1","type":"ok","f":"send","value":["t",0,5,"p1-0"]}
{"i":3,"t_ns":4,"process":"c1","type":"ok","f":"poll","value":[["t",0,5,"p1-0"]]}
{"i":4,"t_ns":5,"process":"w1","type":"info","f":"txn","value":{"outcome":"unknown","sends":[["t",1,null,"w1-0"]]}}
{"i":5,"t_ns":6,"process":"drain","type":"ok","f":"drain","value":{"isolation":"read_committed","records":[]}}
{"i":6,"t_ns":7,"process":"nemesis","type":"info","f":"nemesis","value":{"kill":1}}
"#;
        let events: Vec<Event> = HistoryReader::new(&text[..])
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(events.len(), 7);
        assert_eq!(
            events[0].payload,
            Payload::Process(ProcessDecl {
                role: Role::Producer,
                idempotent: false,
                isolation: Isolation::ReadUncommitted
            })
        );
        assert_eq!(
            events[2].payload,
            Payload::Send(Record {
                topic: "t".into(),
                partition: 0,
                offset: Some(5),
                value: "p1-0".into()
            })
        );
        assert!(
            matches!(&events[4].payload, Payload::Txn(Some(t)) if t.outcome == TxnOutcome::Unknown)
        );
        assert!(
            matches!(&events[5].payload, Payload::Drain(d) if d.isolation == Isolation::ReadCommitted)
        );
    }

    #[test]
    fn rejects_inconsistent_events() {
        for bad in [
            r#"{"i":0,"t_ns":0,"process":"p","type":"ok","f":"send","value":["t",0,null,"v"]}"#,
            r#"{"i":0,"t_ns":0,"process":"p","type":"invoke","f":"send","value":["t",0,3,"v"]}"#,
            r#"{"i":0,"t_ns":0,"process":"p","type":"ok","f":"txn","value":{"outcome":"unknown","sends":[]}}"#,
            r#"{"i":0,"t_ns":0,"process":"p","type":"ok","f":"poll","value":[["t",0,-1,"v"]]}"#,
            r#"{"i":0,"t_ns":0,"process":"p","type":"ok","f":"frobnicate","value":null}"#,
            r#"{"i":0,"t_ns":0,"process":"p","type":"ok","f":"send","value":["t",0,1,"v"],"x":1}"#,
            r#"not json"#,
        ] {
            let r: Result<Vec<Event>, _> = HistoryReader::new(bad.as_bytes()).collect();
            assert!(r.is_err(), "accepted {bad}");
        }
    }

    #[test]
    fn line_limit_is_enforced_without_reading_the_whole_line() {
        let ok = format!(
            r#"{{"i":0,"t_ns":0,"process":"p","type":"info","f":"nemesis","value":"{}"}}"#,
            "x".repeat(10)
        );
        let limit = ok.len();
        let r: Vec<Event> = HistoryReader::with_line_limit(ok.as_bytes(), limit)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(r.len(), 1);
        let with_newline = format!("{ok}\n{ok}\n");
        let r: Vec<Event> = HistoryReader::with_line_limit(with_newline.as_bytes(), limit)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(r.len(), 2);
        let long = format!("{ok}x\n");
        let err = HistoryReader::with_line_limit(long.as_bytes(), limit)
            .next()
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(err, HistoryError::LineTooLong { line: 1, .. }),
            "{err}"
        );
    }
}
