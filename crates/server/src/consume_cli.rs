//! `fjord consume TOPIC`: fetches from each partition's leader and prints records, one per
//! line, as a kcat-style template or JSON lines; follows until Ctrl-C unless `--no-follow`
//! or `--count`. Alone it reads the partitions it is given and commits nothing; with
//! `--group` it is a member of a classic consumer group (see `consumer_group`).

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use clap::{Args, ValueEnum};
use fjord_protocol::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use fjord_protocol::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsTopic,
};
use fjord_protocol::kafka_protocol::messages::{
    BrokerId, FetchRequest, ListOffsetsRequest, TopicName,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ApiKey, RequestKind, ResponseError, ResponseKind};
use serde_json::{json, Value};

use crate::admin::ConnectArgs;
use crate::client::{
    base64_encode, decode_batches, is_connection_error, needs_metadata_refresh, partition_error,
    stop_requested, Cluster, FetchedBatch, FetchedRecord, ATTEMPTS_MAX,
};
use crate::consumer_group::{GroupMember, Membership};
use crate::output::OutputFormat;

/// Fetch v12 is the last version that names topics (v13 uses topic ids).
const FETCH_VERSION_MAX: i16 = 12;
const LIST_OFFSETS_VERSION_MAX: i16 = 7;
/// Long-poll wait: also bounds how long Ctrl-C takes to be noticed.
const FETCH_MAX_WAIT_MS: i32 = 500;
const FETCH_SIZE_BYTES_MAX: i32 = 16 << 20;
const FETCH_PARTITION_SIZE_BYTES_MAX: i32 = 1 << 20;
const COMMIT_INTERVAL: Duration = Duration::from_secs(5);
/// ListOffsets special timestamps.
const EARLIEST: i64 = -2;
const LATEST: i64 = -1;
/// Pause when there is nothing to fetch (no partitions assigned in a group).
const IDLE_PAUSE: Duration = Duration::from_millis(FETCH_MAX_WAIT_MS as u64);

#[derive(Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Topic to consume
    topic: String,
    /// Start at the earliest offset [default: the end, only new records]
    #[arg(long, short = 'b', conflicts_with_all = ["offset", "timestamp"])]
    from_beginning: bool,
    /// Start at this offset; negative: that many records before the end
    #[arg(
        long,
        short = 'o',
        value_name = "N",
        allow_negative_numbers = true,
        conflicts_with = "timestamp"
    )]
    offset: Option<i64>,
    /// Start at the first record at or after this time (epoch ms or
    /// YYYY-MM-DDTHH:MM:SS[.mmm][Z], UTC)
    #[arg(long, value_name = "MS|TIME")]
    timestamp: Option<String>,
    /// Partition to read (repeatable) [default: all; not with --group]
    #[arg(
        long = "partition",
        short = 'p',
        value_name = "N",
        conflicts_with = "group"
    )]
    partitions: Vec<i32>,
    /// Exit after this many records
    #[arg(long, short = 'c', value_name = "N")]
    count: Option<u64>,
    /// Exit at the end of each partition as of the start (like kcat -e)
    #[arg(long, short = 'e')]
    no_follow: bool,
    /// Consume as a member of this consumer group (classic protocol, range assignor):
    /// committed offsets first, the start option when there are none; commits every 5 s and
    /// at exit
    #[arg(long, short = 'g', value_name = "GROUP")]
    group: Option<String>,
    /// read_committed skips aborted transactional records and stops at the last stable offset
    #[arg(long, value_enum, default_value_t = Isolation::ReadUncommitted)]
    isolation: Isolation,
    /// Text output template: %s or %v value, %k key, %t topic, %p partition, %o offset,
    /// %T timestamp (ms), %h headers (k=v,...), %S value size, %K key size, %%; escapes \n \t \\
    #[arg(long, short = 'f', value_name = "TEMPLATE", default_value = "%s\\n")]
    format: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Isolation {
    ReadUncommitted,
    ReadCommitted,
}

impl Isolation {
    fn wire(self) -> i8 {
        match self {
            Isolation::ReadUncommitted => 0,
            Isolation::ReadCommitted => 1,
        }
    }
}

/// Where to start in a partition without a committed offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StartAt {
    Earliest,
    Latest,
    Offset(i64),
    Timestamp(i64),
}

/// One piece of a `--format` template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(Vec<u8>),
    Value,
    Key,
    Topic,
    Partition,
    Offset,
    Timestamp,
    Headers,
    ValueSize,
    KeySize,
}

fn parse_template(template: &str) -> Result<Vec<Piece>> {
    let mut pieces = Vec::new();
    let mut literal = Vec::new();
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        let piece = match c {
            '%' => match chars.next() {
                Some('s' | 'v') => Piece::Value,
                Some('k') => Piece::Key,
                Some('t') => Piece::Topic,
                Some('p') => Piece::Partition,
                Some('o') => Piece::Offset,
                Some('T') => Piece::Timestamp,
                Some('h') => Piece::Headers,
                Some('S') => Piece::ValueSize,
                Some('K') => Piece::KeySize,
                Some('%') => {
                    literal.push(b'%');
                    continue;
                }
                other => bail!(
                    "--format: unknown directive %{}",
                    other.map_or(String::new(), String::from)
                ),
            },
            '\\' => {
                match chars.next() {
                    Some('n') => literal.push(b'\n'),
                    Some('t') => literal.push(b'\t'),
                    Some('r') => literal.push(b'\r'),
                    Some('0') => literal.push(0),
                    Some('\\') => literal.push(b'\\'),
                    other => bail!(
                        "--format: unknown escape \\{}",
                        other.map_or(String::new(), String::from)
                    ),
                }
                continue;
            }
            c => {
                let mut utf8 = [0; 4];
                literal.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                continue;
            }
        };
        if !literal.is_empty() {
            pieces.push(Piece::Literal(std::mem::take(&mut literal)));
        }
        pieces.push(piece);
    }
    if !literal.is_empty() {
        pieces.push(Piece::Literal(literal));
    }
    Ok(pieces)
}

fn render_template(
    pieces: &[Piece],
    topic: &str,
    partition: i32,
    record: &FetchedRecord,
    out: &mut Vec<u8>,
) {
    for piece in pieces {
        match piece {
            Piece::Literal(bytes) => out.extend_from_slice(bytes),
            Piece::Value => out.extend_from_slice(record.value.as_deref().unwrap_or_default()),
            Piece::Key => out.extend_from_slice(record.key.as_deref().unwrap_or_default()),
            Piece::Topic => out.extend_from_slice(topic.as_bytes()),
            Piece::Partition => out.extend_from_slice(partition.to_string().as_bytes()),
            Piece::Offset => out.extend_from_slice(record.offset.to_string().as_bytes()),
            Piece::Timestamp => out.extend_from_slice(record.timestamp_ms.to_string().as_bytes()),
            Piece::Headers => {
                for (i, (name, value)) in record.headers.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(name);
                    out.push(b'=');
                    out.extend_from_slice(value.as_deref().unwrap_or_default());
                }
            }
            // kcat prints -1 for a null key or value's size.
            Piece::ValueSize => out.extend_from_slice(
                record
                    .value
                    .as_ref()
                    .map_or(-1, |v| v.len() as i64)
                    .to_string()
                    .as_bytes(),
            ),
            Piece::KeySize => out.extend_from_slice(
                record
                    .key
                    .as_ref()
                    .map_or(-1, |k| k.len() as i64)
                    .to_string()
                    .as_bytes(),
            ),
        }
    }
}

/// The JSON line of one record: UTF-8 fields as strings, others as `<field>_base64` (header
/// values as `{"base64": ...}`).
fn record_json(topic: &str, partition: i32, record: &FetchedRecord) -> Value {
    let mut object = serde_json::Map::new();
    object.insert("topic".into(), json!(topic));
    object.insert("partition".into(), json!(partition));
    object.insert("offset".into(), json!(record.offset));
    object.insert("timestamp".into(), json!(record.timestamp_ms));
    object.insert(
        "timestamp_type".into(),
        json!(if record.log_append_time {
            "LogAppendTime"
        } else {
            "CreateTime"
        }),
    );
    for (name, bytes) in [("key", &record.key), ("value", &record.value)] {
        match bytes.as_deref().map(std::str::from_utf8) {
            None => {
                object.insert(name.into(), Value::Null);
            }
            Some(Ok(text)) => {
                object.insert(name.into(), json!(text));
            }
            Some(Err(_)) => {
                object.insert(name.into(), Value::Null);
                let raw = bytes.as_deref().unwrap_or_default();
                object.insert(format!("{name}_base64"), json!(base64_encode(raw)));
            }
        }
    }
    let headers: Vec<Value> = record
        .headers
        .iter()
        .map(|(name, value)| {
            let value = match value.as_deref().map(std::str::from_utf8) {
                None => Value::Null,
                Some(Ok(text)) => json!(text),
                Some(Err(_)) => {
                    json!({"base64": base64_encode(value.as_deref().unwrap_or_default())})
                }
            };
            json!([String::from_utf8_lossy(name), value])
        })
        .collect();
    object.insert("headers".into(), Value::Array(headers));
    Value::Object(object)
}

/// Why the consume loop ended without an error.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    Stopped,
    CountReached,
    CaughtUp,
    /// stdout was closed (`| head`).
    OutputClosed,
}

struct Consumer {
    cluster: Cluster,
    topic: String,
    isolation: Isolation,
    output: OutputFormat,
    template: Vec<Piece>,
    /// Next offset to read per partition being consumed.
    positions: BTreeMap<i32, i64>,
    /// `--no-follow`: per partition, the end offset as of the start.
    ends: Option<BTreeMap<i32, i64>>,
    remaining: Option<u64>,
    /// Fetches in a row that lost their connection (reset by any answer).
    connection_failures: u32,
    line: Vec<u8>,
}

pub fn run(args: ConsumeArgs) -> Result<()> {
    crate::client::check_address(args.connect.bootstrap())?;
    let template = parse_template(&args.format)?;
    let start = match (&args.timestamp, args.offset, args.from_beginning) {
        (Some(text), _, _) => StartAt::Timestamp(crate::group_cli::parse_time_ms(text)?),
        (None, Some(offset), _) => StartAt::Offset(offset),
        (None, None, true) => StartAt::Earliest,
        (None, None, false) => StartAt::Latest,
    };
    args.connect.install_security()?;
    let mut cluster = Cluster::connect(args.connect.bootstrap(), args.connect.timeout())?;
    let all = cluster.partitions(&args.topic, false)?;
    for p in &args.partitions {
        if !all.contains(p) {
            bail!(
                "{} has {} partitions, no partition {p}",
                args.topic,
                all.len()
            );
        }
    }
    crate::client::install_stop_handlers();
    let mut consumer = Consumer {
        cluster,
        topic: args.topic.clone(),
        isolation: args.isolation,
        output: args.connect.output(),
        template,
        positions: BTreeMap::new(),
        ends: None,
        remaining: args.count,
        connection_failures: 0,
        line: Vec::new(),
    };
    if args.count == Some(0) {
        return Ok(());
    }
    let ended = match &args.group {
        None => {
            let partitions = if args.partitions.is_empty() {
                all
            } else {
                args.partitions.clone()
            };
            consumer.assign(&partitions, start, &BTreeMap::new(), args.no_follow)?;
            consumer.poll_until_done(None)
        }
        Some(group) => consume_in_group(&mut consumer, group, start, args.no_follow),
    };
    let ended = ended?;
    tracing::debug!(?ended, "consume finished");
    Ok(())
}

/// The group loop: join, read from committed offsets, commit every 5 s, rejoin on a
/// rebalance; at the end commit and leave.
fn consume_in_group(
    consumer: &mut Consumer,
    group: &str,
    start: StartAt,
    no_follow: bool,
) -> Result<Ended> {
    let mut member = GroupMember::new(&mut consumer.cluster, group, &consumer.topic)?;
    let outcome = loop {
        let partitions = member.join(&mut consumer.cluster)?;
        let committed = member.committed(&partitions)?;
        consumer.assign(&partitions, start, &committed, no_follow)?;
        match consumer.poll_until_done(Some(&mut member)) {
            Ok(Ended::Stopped) if !stop_requested() => {
                // The group is rebalancing: hand over what was read, then join again.
                if let Err(err) = member.commit(&consumer.positions) {
                    tracing::debug!("commit before rejoining failed: {err:#}");
                }
                continue;
            }
            other => break other,
        }
    };
    // Commit and leave even after an error or a closed stdout, so the group moves on.
    let committed = member.commit(&consumer.positions);
    let left = member.leave();
    let ended = outcome?;
    committed?;
    left?;
    Ok(ended)
}

impl Consumer {
    /// Sets the positions of `partitions`: committed offsets where there are some (>= 0),
    /// else `start`; and the end offsets for `--no-follow`.
    fn assign(
        &mut self,
        partitions: &[i32],
        start: StartAt,
        committed: &BTreeMap<i32, i64>,
        no_follow: bool,
    ) -> Result<()> {
        self.positions.clear();
        let uncommitted: Vec<i32> = partitions
            .iter()
            .copied()
            .filter(|p| committed.get(p).is_none_or(|o| *o < 0))
            .collect();
        let mut positions: BTreeMap<i32, i64> = partitions
            .iter()
            .filter_map(|p| committed.get(p).filter(|o| **o >= 0).map(|o| (*p, *o)))
            .collect();
        positions.extend(self.start_offsets(&uncommitted, start)?);
        self.positions = positions;
        self.ends = if no_follow {
            Some(self.list_offsets(partitions, LATEST)?)
        } else {
            None
        };
        Ok(())
    }

    fn start_offsets(&mut self, partitions: &[i32], start: StartAt) -> Result<BTreeMap<i32, i64>> {
        if partitions.is_empty() {
            return Ok(BTreeMap::new());
        }
        Ok(match start {
            StartAt::Earliest => self.list_offsets(partitions, EARLIEST)?,
            StartAt::Latest => self.list_offsets(partitions, LATEST)?,
            StartAt::Offset(offset) if offset >= 0 => {
                partitions.iter().map(|p| (*p, offset)).collect()
            }
            StartAt::Offset(back) => {
                let earliest = self.list_offsets(partitions, EARLIEST)?;
                let latest = self.list_offsets(partitions, LATEST)?;
                latest
                    .into_iter()
                    .map(|(p, end)| {
                        let first = earliest.get(&p).copied().unwrap_or(0);
                        (p, end.saturating_add(back).max(first))
                    })
                    .collect()
            }
            StartAt::Timestamp(ms) => {
                let found = self.list_offsets(partitions, ms)?;
                let missing: Vec<i32> = found
                    .iter()
                    .filter(|(_, o)| **o < 0)
                    .map(|(p, _)| *p)
                    .collect();
                // No record at or after the time: start at the end, as Kafka's tools do.
                let latest = self.list_offsets(&missing, LATEST)?;
                found
                    .into_iter()
                    .map(|(p, o)| {
                        (
                            p,
                            if o < 0 {
                                latest.get(&p).copied().unwrap_or(0)
                            } else {
                                o
                            },
                        )
                    })
                    .collect()
            }
        })
    }

    /// ListOffsets for `timestamp` (or EARLIEST/LATEST) at each partition's leader.
    fn list_offsets(&mut self, partitions: &[i32], timestamp: i64) -> Result<BTreeMap<i32, i64>> {
        let mut out = BTreeMap::new();
        let mut todo: Vec<i32> = partitions.to_vec();
        let mut attempt = 0;
        while !todo.is_empty() {
            let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
            for p in todo.drain(..) {
                by_leader
                    .entry(self.cluster.leader_id(&self.topic, p)?)
                    .or_default()
                    .push(p);
            }
            let mut last_error = None;
            for (leader, ps) in by_leader {
                match self.list_offsets_at(leader, &ps, timestamp) {
                    Ok((found, retry)) => {
                        out.extend(found);
                        if !retry.is_empty() {
                            self.cluster.invalidate(leader);
                            last_error = Some(anyhow!("ListOffsets: stale metadata"));
                            todo.extend(retry);
                        }
                    }
                    Err(err) if is_connection_error(&err) => {
                        self.cluster.invalidate(leader);
                        last_error = Some(err);
                        todo.extend(ps);
                    }
                    Err(err) => return Err(err),
                }
            }
            if todo.is_empty() {
                break;
            }
            attempt += 1;
            if attempt >= ATTEMPTS_MAX {
                return Err(last_error.unwrap_or_else(|| anyhow!("ListOffsets failed")));
            }
            std::thread::sleep(crate::client::backoff(attempt));
        }
        Ok(out)
    }

    /// One ListOffsets request: the offsets found and the partitions to retry elsewhere.
    fn list_offsets_at(
        &mut self,
        leader: i32,
        partitions: &[i32],
        timestamp: i64,
    ) -> Result<(BTreeMap<i32, i64>, Vec<i32>)> {
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_isolation_level(self.isolation.wire())
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_string(self.topic.clone())))
                .with_partitions(
                    partitions
                        .iter()
                        .map(|p| {
                            ListOffsetsPartition::default()
                                .with_partition_index(*p)
                                .with_current_leader_epoch(-1)
                                .with_timestamp(timestamp)
                        })
                        .collect(),
                )]);
        let client = self.cluster.broker_client(leader)?;
        let ResponseKind::ListOffsets(response) = client.send(
            ApiKey::ListOffsets,
            LIST_OFFSETS_VERSION_MAX,
            RequestKind::ListOffsets(request),
        )?
        else {
            bail!("unexpected answer to ListOffsets");
        };
        let mut found = BTreeMap::new();
        let mut retry = Vec::new();
        for topic in &response.topics {
            for p in &topic.partitions {
                match p.error_code {
                    0 => {
                        found.insert(p.partition_index, p.offset);
                    }
                    code if needs_metadata_refresh(code) => retry.push(p.partition_index),
                    code => {
                        return Err(partition_error(
                            "ListOffsets",
                            &self.topic,
                            p.partition_index,
                            code,
                        ))
                    }
                }
            }
        }
        Ok((found, retry))
    }

    /// The partitions still to read: all when following, those short of their end otherwise.
    fn active(&self) -> Vec<(i32, i64)> {
        self.positions
            .iter()
            .filter(|(p, position)| {
                self.ends
                    .as_ref()
                    .is_none_or(|ends| ends.get(p).is_some_and(|end| *position < end))
            })
            .map(|(p, o)| (*p, *o))
            .collect()
    }

    /// Fetches and prints until stopped, `--count` is reached, every partition is caught up
    /// (`--no-follow`), or the group rebalances (`Ended::Stopped` while no stop was asked).
    fn poll_until_done(&mut self, mut member: Option<&mut GroupMember>) -> Result<Ended> {
        let mut last_commit = Instant::now();
        loop {
            if stop_requested() {
                return Ok(Ended::Stopped);
            }
            if let Some(member) = member.as_deref_mut() {
                if member.heartbeat_due() && member.heartbeat()? == Membership::Rejoin {
                    return Ok(Ended::Stopped);
                }
                if last_commit.elapsed() >= COMMIT_INTERVAL {
                    last_commit = Instant::now();
                    if member.commit(&self.positions)? == Membership::Rejoin {
                        return Ok(Ended::Stopped);
                    }
                }
            }
            let active = self.active();
            if active.is_empty() {
                if self.ends.is_some() {
                    return Ok(Ended::CaughtUp);
                }
                std::thread::sleep(IDLE_PAUSE);
                continue;
            }
            let mut by_leader: BTreeMap<i32, Vec<(i32, i64)>> = BTreeMap::new();
            for (p, position) in active {
                by_leader
                    .entry(self.cluster.leader_id(&self.topic, p)?)
                    .or_default()
                    .push((p, position));
            }
            for (leader, partitions) in by_leader {
                if let Some(ended) = self.fetch_from(leader, &partitions)? {
                    return Ok(ended);
                }
            }
        }
    }

    /// One Fetch from `leader`; prints what came back. `Some` when the loop must end.
    fn fetch_from(&mut self, leader: i32, partitions: &[(i32, i64)]) -> Result<Option<Ended>> {
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(FETCH_MAX_WAIT_MS)
            .with_min_bytes(1)
            .with_max_bytes(FETCH_SIZE_BYTES_MAX)
            .with_isolation_level(self.isolation.wire())
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(self.topic.clone())))
                .with_partitions(
                    partitions
                        .iter()
                        .map(|(p, position)| {
                            FetchPartition::default()
                                .with_partition(*p)
                                .with_current_leader_epoch(-1)
                                .with_fetch_offset(*position)
                                .with_log_start_offset(-1)
                                .with_partition_max_bytes(FETCH_PARTITION_SIZE_BYTES_MAX)
                        })
                        .collect(),
                )]);
        let response = match self.cluster.broker_client(leader).and_then(|c| {
            c.send(
                ApiKey::Fetch,
                FETCH_VERSION_MAX,
                RequestKind::Fetch(request),
            )
        }) {
            Ok(ResponseKind::Fetch(response)) => response,
            Ok(_) => bail!("unexpected answer to Fetch"),
            Err(err) if is_connection_error(&err) => return self.connection_lost(leader, err),
            Err(err) => return Err(err),
        };
        self.connection_failures = 0;
        if response.error_code != 0 {
            bail!(
                "Fetch failed: {}",
                crate::admin::error_name(response.error_code)
            );
        }
        for topic in response.responses {
            for data in topic.partitions {
                let partition = data.partition_index;
                match data.error_code {
                    0 => {}
                    code if code == ResponseError::OffsetOutOfRange.code() => {
                        self.reset_out_of_range(partition)?;
                        continue;
                    }
                    code if needs_metadata_refresh(code) => {
                        self.cluster.invalidate(leader);
                        continue;
                    }
                    code => return Err(partition_error("Fetch", &self.topic, partition, code)),
                }
                let batches = decode_batches(data.records.as_deref().unwrap_or_default())?;
                let aborted: Vec<(i64, i64)> = data
                    .aborted_transactions
                    .iter()
                    .flatten()
                    .map(|a| (a.producer_id.0, a.first_offset))
                    .collect();
                if let Some(ended) = self.print_batches(partition, batches, aborted)? {
                    return Ok(Some(ended));
                }
            }
        }
        Ok(None)
    }

    /// After a lost connection: retry (with fresh metadata) a few times, then give up.
    fn connection_lost(&mut self, leader: i32, err: anyhow::Error) -> Result<Option<Ended>> {
        self.cluster.invalidate(leader);
        self.connection_failures += 1;
        if self.connection_failures >= ATTEMPTS_MAX {
            return Err(err);
        }
        std::thread::sleep(crate::client::backoff(self.connection_failures));
        Ok(None)
    }

    /// OFFSET_OUT_OF_RANGE: before the log start go to the earliest offset, else the latest.
    fn reset_out_of_range(&mut self, partition: i32) -> Result<()> {
        let earliest = self.list_offsets(&[partition], EARLIEST)?;
        let latest = self.list_offsets(&[partition], LATEST)?;
        let position = self.positions.get(&partition).copied().unwrap_or(0);
        let first = earliest.get(&partition).copied().unwrap_or(0);
        let reset = if position < first {
            first
        } else {
            latest.get(&partition).copied().unwrap_or(first)
        };
        tracing::warn!(partition, position, reset, "offset out of range, resetting");
        self.positions.insert(partition, reset);
        Ok(())
    }

    /// Prints the records of `batches` at or after the partition's position, skipping control
    /// batches and (read_committed) aborted transactions, and flushes stdout.
    fn print_batches(
        &mut self,
        partition: i32,
        batches: Vec<FetchedBatch>,
        mut aborted: Vec<(i64, i64)>,
    ) -> Result<Option<Ended>> {
        // Kafka's consumer: a transaction listed as aborted starting at or before a batch
        // makes that producer's transactional batches aborted until its abort marker.
        aborted.sort_by_key(|(_, first_offset)| std::cmp::Reverse(*first_offset));
        let mut aborted_producers = std::collections::HashSet::new();
        let filter_aborted = self.isolation == Isolation::ReadCommitted;
        let mut stdout = std::io::stdout().lock();
        let mut ended = None;
        'batches: for batch in batches {
            let position = self.positions.get(&partition).copied().unwrap_or(0);
            if batch.next_offset <= position {
                continue;
            }
            if filter_aborted {
                while let Some((producer_id, first_offset)) = aborted.last().copied() {
                    if first_offset > batch.next_offset - 1 {
                        break;
                    }
                    aborted.pop();
                    aborted_producers.insert(producer_id);
                }
            }
            let skip = batch.control
                || (filter_aborted
                    && batch.transactional
                    && aborted_producers.contains(&batch.producer_id));
            if batch.control {
                aborted_producers.remove(&batch.producer_id);
            }
            if !skip {
                for record in &batch.records {
                    if record.offset < position {
                        continue;
                    }
                    if self.write_record(&mut stdout, partition, record).is_err() {
                        ended = Some(Ended::OutputClosed);
                        break 'batches;
                    }
                    self.positions.insert(partition, record.offset + 1);
                    if let Some(remaining) = &mut self.remaining {
                        *remaining -= 1;
                        if *remaining == 0 {
                            ended = Some(Ended::CountReached);
                            break 'batches;
                        }
                    }
                }
            }
            self.positions.insert(partition, batch.next_offset);
        }
        if stdout.flush().is_err() {
            ended = Some(Ended::OutputClosed);
        }
        Ok(ended)
    }

    fn write_record(
        &mut self,
        out: &mut impl Write,
        partition: i32,
        record: &FetchedRecord,
    ) -> std::io::Result<()> {
        self.line.clear();
        match self.output {
            OutputFormat::Json => {
                let value = record_json(&self.topic, partition, record);
                serde_json::to_writer(&mut self.line, &value)?;
                self.line.push(b'\n');
            }
            OutputFormat::Text => render_template(
                &self.template,
                &self.topic,
                partition,
                record,
                &mut self.line,
            ),
        }
        out.write_all(&self.line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> FetchedRecord {
        FetchedRecord {
            offset: 5,
            timestamp_ms: 1_700_000_000_000,
            log_append_time: false,
            key: Some(b"k".to_vec()),
            value: Some(b"v".to_vec()),
            headers: vec![(b"a".to_vec(), Some(b"1".to_vec())), (b"b".to_vec(), None)],
        }
    }

    fn render(template: &str, record: &FetchedRecord) -> String {
        let mut out = Vec::new();
        render_template(&parse_template(template).unwrap(), "t", 2, record, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn templates_render_every_directive() {
        let r = record();
        assert_eq!(render("%s\\n", &r), "v\n");
        assert_eq!(
            render("%t %p %o %T %k=%v %h %S %K 100%%\\t", &r),
            "t 2 5 1700000000000 k=v a=1,b= 1 1 100%\t"
        );
        let null = FetchedRecord {
            key: None,
            value: None,
            headers: Vec::new(),
            ..r
        };
        assert_eq!(render("[%k|%s|%h|%K|%S]", &null), "[|||-1|-1]");
        assert!(parse_template("%x").is_err());
        assert!(parse_template("\\q").is_err());
    }

    #[test]
    fn json_lines_fall_back_to_base64_for_binary() {
        let mut r = record();
        let j = record_json("t", 2, &r);
        assert_eq!(j["key"], "k");
        assert_eq!(j["value"], "v");
        assert_eq!(j["headers"], json!([["a", "1"], ["b", null]]));
        assert_eq!(j["timestamp_type"], "CreateTime");
        assert!(j.get("value_base64").is_none());
        r.value = Some(vec![0xff, 0x00]);
        r.headers = vec![(b"bin".to_vec(), Some(vec![0xfe]))];
        let j = record_json("t", 2, &r);
        assert_eq!(j["value"], Value::Null);
        assert_eq!(j["value_base64"], "/wA=");
        assert_eq!(j["headers"], json!([["bin", {"base64": "/g=="}]]));
    }
}
