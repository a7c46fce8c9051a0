//! `fjord produce TOPIC`: records from stdin or a file, one per line (text, or JSON objects),
//! batched per partition and sent to each partition's leader, like `kcat -P` or
//! `kafka-console-producer.sh`. Keyed records go where the Java client's default partitioner
//! puts them (murmur2), keyless ones stick to one partition per batch, then move on.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, ValueEnum};
use fjord_protocol::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use fjord_protocol::kafka_protocol::messages::{ProduceRequest, TopicName};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::records::Compression;
use fjord_protocol::{ApiKey, RequestKind, ResponseKind};
use serde_json::{json, Value};

use crate::admin::{error_name, ConnectArgs};
use crate::client::{
    base64_decode, encode_batch, is_connection_error, is_retriable, needs_metadata_refresh,
    partition_for_key, Cluster, OutgoingRecord, ATTEMPTS_MAX,
};
use crate::output::{print_json, OutputFormat};

/// Produce v11 is the last version that names topics (v13 uses topic ids).
const PRODUCE_VERSION_MAX: i16 = 11;
/// Longest input line accepted; a longer record would exceed any broker's limit anyway.
const LINE_SIZE_BYTES_MAX: usize = 64 << 20;
/// Progress line refresh period (at most 10 times a second).
const PROGRESS_PERIOD: Duration = Duration::from_millis(100);

#[derive(Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Topic to produce to (auto-created if the broker allows it)
    topic: String,
    /// Read records from this file instead of stdin
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
    /// Input format: text (one value per line, see --key-separator) or json (one object per
    /// line: {"key","value","key_base64","value_base64","headers","partition","timestamp"})
    #[arg(long, value_enum, default_value_t = InputFormat::Text)]
    format: InputFormat,
    /// Text input: split each line into key and value at the first SEP (like kcat -K); a line
    /// without SEP is an error
    #[arg(long, short = 'K', value_name = "SEP")]
    key_separator: Option<String>,
    /// Header added to every record (repeatable)
    #[arg(long = "header", short = 'H', value_name = "K=V")]
    headers: Vec<String>,
    /// Partition for every record [default: murmur2(key) for keyed records like the Java
    /// client, one partition per batch in turn for keyless ones]
    #[arg(long, short = 'p', value_name = "N")]
    partition: Option<i32>,
    /// Acknowledgements: 0 (none), 1 (leader), all (every in-sync replica)
    #[arg(long, value_enum, default_value_t = Acks::All)]
    acks: Acks,
    /// Compression codec of the batches
    #[arg(long, value_enum, default_value_t = Codec::None)]
    compression: Codec,
    /// Largest batch per partition (keep it under the topic's max.message.bytes)
    #[arg(long, value_name = "BYTES", default_value_t = 1_000_000)]
    batch_size_bytes: usize,
    /// Show progress on stderr even when it is not a terminal (default: with --file on a TTY)
    #[arg(long, conflicts_with = "quiet")]
    progress: bool,
    /// No progress and no summary on stderr
    #[arg(long, short = 'q')]
    quiet: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum InputFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Acks {
    #[value(name = "0")]
    None,
    #[value(name = "1")]
    Leader,
    All,
}

impl Acks {
    fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    fn compression(self) -> Compression {
        match self {
            Codec::None => Compression::None,
            Codec::Gzip => Compression::Gzip,
            Codec::Snappy => Compression::Snappy,
            Codec::Lz4 => Compression::Lz4,
            Codec::Zstd => Compression::Zstd,
        }
    }
}

/// What every input line shares: the `--header`s and the `--key-separator`.
struct LineParser {
    format: InputFormat,
    key_separator: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

impl LineParser {
    fn new(args: &ProduceArgs) -> Result<Self> {
        let headers = args
            .headers
            .iter()
            .map(|h| parse_header(h))
            .collect::<Result<Vec<_>>>()?;
        if args.key_separator.as_deref() == Some("") {
            bail!("--key-separator must not be empty");
        }
        Ok(LineParser {
            format: args.format,
            key_separator: args.key_separator.as_ref().map(|s| s.as_bytes().to_vec()),
            headers,
        })
    }

    /// The record on input line `number` (1-based), without its line end.
    fn parse(&self, line: &[u8], number: u64) -> Result<OutgoingRecord> {
        let mut record = match self.format {
            InputFormat::Text => self.parse_text(line, number)?,
            InputFormat::Json => parse_json_line(line).with_context(|| format!("line {number}"))?,
        };
        record.headers.splice(0..0, self.headers.iter().cloned());
        Ok(record)
    }

    fn parse_text(&self, line: &[u8], number: u64) -> Result<OutgoingRecord> {
        let Some(separator) = &self.key_separator else {
            return Ok(OutgoingRecord {
                value: Some(line.to_vec()),
                ..Default::default()
            });
        };
        let at = line
            .windows(separator.len())
            .position(|w| w == separator.as_slice())
            .ok_or_else(|| {
                anyhow!(
                    "line {number} has no key separator {:?}",
                    String::from_utf8_lossy(separator)
                )
            })?;
        Ok(OutgoingRecord {
            key: Some(line[..at].to_vec()),
            value: Some(line[at + separator.len()..].to_vec()),
            ..Default::default()
        })
    }
}

/// `K=V` (value may be empty; `K` alone is a null value).
fn parse_header(text: &str) -> Result<(String, Option<Vec<u8>>)> {
    match text.split_once('=') {
        Some(("", _)) => bail!("--header {text:?} has an empty name"),
        Some((name, value)) => Ok((name.to_string(), Some(value.as_bytes().to_vec()))),
        None if !text.is_empty() => Ok((text.to_string(), None)),
        None => bail!("--header must be K=V"),
    }
}

/// A string field or its `_base64` twin; `null` or absent is `None`.
fn bytes_field(object: &serde_json::Map<String, Value>, name: &str) -> Result<Option<Vec<u8>>> {
    let base64_name = format!("{name}_base64");
    match (object.get(name), object.get(&base64_name)) {
        (Some(Value::String(_)), Some(Value::String(_))) => {
            bail!("give {name:?} or {base64_name:?}, not both")
        }
        (Some(Value::String(s)), _) => Ok(Some(s.as_bytes().to_vec())),
        (_, Some(Value::String(s))) => base64_decode(s)
            .map(Some)
            .with_context(|| format!("{base64_name:?}")),
        (Some(Value::Null) | None, Some(Value::Null) | None) => Ok(None),
        _ => bail!("{name:?} must be a string or null"),
    }
}

fn header_value(value: &Value) -> Result<Option<Vec<u8>>> {
    match value {
        Value::String(s) => Ok(Some(s.as_bytes().to_vec())),
        Value::Null => Ok(None),
        _ => bail!("header values must be strings or null"),
    }
}

/// One JSON input object (see `--format`).
fn parse_json_line(line: &[u8]) -> Result<OutgoingRecord> {
    let value: Value = serde_json::from_slice(line).context("not a JSON object")?;
    let Value::Object(object) = value else {
        bail!("not a JSON object");
    };
    for name in object.keys() {
        if !matches!(
            name.as_str(),
            "key" | "value" | "key_base64" | "value_base64" | "headers" | "partition" | "timestamp"
        ) {
            bail!("unknown field {name:?}");
        }
    }
    if !object.contains_key("value") && !object.contains_key("value_base64") {
        bail!("\"value\" is missing (use null for a tombstone)");
    }
    let headers = match object.get("headers") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| Ok((k.clone(), header_value(v)?)))
            .collect::<Result<_>>()?,
        Some(Value::Array(pairs)) => pairs
            .iter()
            .map(|pair| match pair.as_array().map(Vec::as_slice) {
                Some([Value::String(k), v]) => Ok((k.clone(), header_value(v)?)),
                _ => bail!("\"headers\" entries must be [name, value] pairs"),
            })
            .collect::<Result<_>>()?,
        Some(_) => bail!("\"headers\" must be an object or an array of [name, value] pairs"),
    };
    let integer = |name: &str| -> Result<Option<i64>> {
        match object.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| anyhow!("{name:?} must be an integer")),
        }
    };
    let partition = integer("partition")?
        .map(|p| i32::try_from(p).map_err(|_| anyhow!("\"partition\" out of range")))
        .transpose()?;
    Ok(OutgoingRecord {
        key: bytes_field(&object, "key")?,
        value: bytes_field(&object, "value")?,
        headers,
        partition,
        timestamp_ms: integer("timestamp")?,
    })
}

/// Reads one line into `line` (without `\n` or `\r\n`); `false` at end of input.
fn read_line(reader: &mut impl BufRead, line: &mut Vec<u8>, number: u64) -> Result<bool> {
    line.clear();
    let read = reader
        .by_ref()
        .take(LINE_SIZE_BYTES_MAX as u64 + 1)
        .read_until(b'\n', line)
        .context("cannot read input")?;
    if read == 0 {
        return Ok(false);
    }
    if line.len() > LINE_SIZE_BYTES_MAX {
        bail!("line {number} is longer than {LINE_SIZE_BYTES_MAX} bytes");
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    Ok(true)
}

/// Per-partition batches being filled, and where keyless records go next.
struct Accumulator {
    batch_size_bytes: usize,
    pending: BTreeMap<i32, (Vec<OutgoingRecord>, usize)>,
    sticky_partition: usize,
}

impl Accumulator {
    /// Adds `record` to its partition's batch; returns the partition if that batch is full.
    fn add(&mut self, record: OutgoingRecord, partition: i32) -> Option<i32> {
        let size = record.size_bytes();
        let (records, bytes) = self.pending.entry(partition).or_default();
        records.push(record);
        *bytes += size;
        (*bytes >= self.batch_size_bytes).then_some(partition)
    }

    /// Whether adding `size` bytes to `partition`'s batch would exceed the batch size: the
    /// batch must go first.
    fn would_overflow(&self, partition: i32, size: usize) -> bool {
        self.pending
            .get(&partition)
            .is_some_and(|(records, bytes)| {
                !records.is_empty() && bytes + size > self.batch_size_bytes
            })
    }

    fn take(&mut self, partition: i32) -> Vec<OutgoingRecord> {
        self.pending
            .remove(&partition)
            .map(|(records, _)| records)
            .unwrap_or_default()
    }

    fn take_all(&mut self) -> Vec<(i32, Vec<OutgoingRecord>)> {
        std::mem::take(&mut self.pending)
            .into_iter()
            .map(|(p, (records, _))| (p, records))
            .filter(|(_, records)| !records.is_empty())
            .collect()
    }
}

/// Offsets the broker gave, per partition.
#[derive(Default)]
struct Produced {
    records: u64,
    bytes: u64,
    offsets: BTreeMap<i32, (i64, i64)>,
}

struct Producer {
    cluster: Cluster,
    topic: String,
    acks: Acks,
    codec: Compression,
    partition_count: usize,
    produced: Produced,
}

impl Producer {
    /// Sends `batches` (partition, records), one request per leader, retrying retriable
    /// errors up to [`ATTEMPTS_MAX`] times. A retried request may have been written already:
    /// without idempotence retries can duplicate, as in any Kafka producer.
    fn send(&mut self, batches: Vec<(i32, Vec<OutgoingRecord>)>) -> Result<()> {
        let mut encoded = Vec::with_capacity(batches.len());
        for (partition, records) in batches {
            let batch = encode_batch(&records, self.codec)?;
            let bytes: usize = records
                .iter()
                .map(|r| r.key.as_ref().map_or(0, Vec::len) + r.value.as_ref().map_or(0, Vec::len))
                .sum();
            encoded.push((
                partition,
                records.len() as i64,
                bytes as u64,
                bytes::Bytes::from(batch),
            ));
        }
        let mut attempt = 0;
        while !encoded.is_empty() {
            let mut by_leader: BTreeMap<i32, Vec<(i32, i64, u64, bytes::Bytes)>> = BTreeMap::new();
            for item in encoded.drain(..) {
                let leader = self.cluster.leader_id(&self.topic, item.0)?;
                by_leader.entry(leader).or_default().push(item);
            }
            let mut failed: Vec<(i32, i64, u64, bytes::Bytes)> = Vec::new();
            let mut last_error = None;
            for (leader, items) in by_leader {
                match self.send_to(leader, &items) {
                    Ok(retry) => {
                        for (item, error) in retry {
                            failed.push(item);
                            last_error = Some(error);
                        }
                    }
                    Err(err) if is_connection_error(&err) => {
                        self.cluster.invalidate(leader);
                        failed.extend(items);
                        last_error = Some(err);
                    }
                    Err(err) => return Err(err),
                }
            }
            if failed.is_empty() {
                break;
            }
            attempt += 1;
            if attempt >= ATTEMPTS_MAX || crate::client::stop_requested() {
                return Err(last_error.unwrap_or_else(|| anyhow!("produce failed")));
            }
            tracing::debug!(attempt, "retrying {} batch(es)", failed.len());
            std::thread::sleep(crate::client::backoff(attempt));
            self.cluster.refresh(&self.topic, true)?;
            encoded = failed;
        }
        Ok(())
    }

    /// One Produce request to `leader`; returns the batches to retry with their errors.
    #[allow(clippy::type_complexity)]
    fn send_to(
        &mut self,
        leader: i32,
        items: &[(i32, i64, u64, bytes::Bytes)],
    ) -> Result<Vec<((i32, i64, u64, bytes::Bytes), anyhow::Error)>> {
        let timeout_ms = i32::try_from(self.cluster.timeout().as_millis()).unwrap_or(i32::MAX);
        let request = ProduceRequest::default()
            .with_acks(self.acks.wire())
            .with_timeout_ms(timeout_ms)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(self.topic.clone())))
                .with_partition_data(
                    items
                        .iter()
                        .map(|(p, _, _, batch)| {
                            PartitionProduceData::default()
                                .with_index(*p)
                                .with_records(Some(batch.clone()))
                        })
                        .collect(),
                )]);
        let client = self.cluster.broker_client(leader)?;
        if self.acks == Acks::None {
            client.send_without_response(
                ApiKey::Produce,
                PRODUCE_VERSION_MAX,
                RequestKind::Produce(request),
            )?;
            for (_, count, bytes, _) in items {
                self.produced.records += *count as u64;
                self.produced.bytes += bytes;
            }
            return Ok(Vec::new());
        }
        let ResponseKind::Produce(response) = client.send(
            ApiKey::Produce,
            PRODUCE_VERSION_MAX,
            RequestKind::Produce(request),
        )?
        else {
            bail!("unexpected answer to Produce");
        };
        let mut answers = BTreeMap::new();
        for topic in &response.responses {
            for partition in &topic.partition_responses {
                answers.insert(partition.index, partition);
            }
        }
        let mut retry = Vec::new();
        for item in items {
            let (partition, count, bytes, _) = item;
            let answer = answers
                .get(partition)
                .ok_or_else(|| anyhow!("Produce answer lacks partition {partition}"))?;
            if answer.error_code == 0 {
                let last = answer.base_offset + count - 1;
                let entry = self
                    .produced
                    .offsets
                    .entry(*partition)
                    .or_insert((answer.base_offset, last));
                entry.1 = last;
                self.produced.records += *count as u64;
                self.produced.bytes += bytes;
                continue;
            }
            let message = answer
                .error_message
                .as_ref()
                .filter(|m| !m.is_empty())
                .map_or(String::new(), |m| format!(": {}", m.as_str()));
            let error = anyhow!(
                "Produce to {}/{partition} failed: {}{message}",
                self.topic,
                error_name(answer.error_code)
            );
            if !is_retriable(answer.error_code) {
                return Err(error);
            }
            if needs_metadata_refresh(answer.error_code) {
                self.cluster.invalidate(leader);
            }
            retry.push((item.clone(), error));
        }
        Ok(retry)
    }
}

/// The stderr progress line: bytes read of the file, records and their rate.
struct Progress {
    enabled: bool,
    total_bytes: Option<u64>,
    started: Instant,
    last_shown: Option<Instant>,
}

impl Progress {
    fn show(&mut self, read_bytes: u64, records: u64, force: bool) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if !force && self.last_shown.is_some_and(|t| now - t < PROGRESS_PERIOD) {
            return;
        }
        self.last_shown = Some(now);
        let seconds = self.started.elapsed().as_secs_f64().max(1e-3);
        let of_total = match self.total_bytes {
            Some(total) if total > 0 => format!(
                "/{total} bytes ({:.0}%)",
                read_bytes as f64 * 100.0 / total as f64
            ),
            _ => " bytes".to_string(),
        };
        eprint!(
            "\rread {read_bytes}{of_total}, {records} records, {:.0} records/s ",
            records as f64 / seconds
        );
        let _ = std::io::stderr().flush();
    }

    fn finish(&mut self) {
        if self.enabled && self.last_shown.is_some() {
            eprintln!();
        }
    }
}

/// Counts bytes read through it, for the progress line.
struct CountingReader<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

pub fn run(args: ProduceArgs) -> Result<()> {
    crate::client::check_address(args.connect.bootstrap())?;
    if args.batch_size_bytes == 0 {
        bail!("--batch-size-bytes must be positive");
    }
    let parser = LineParser::new(&args)?;
    let (input, total_bytes, input_fd): (Box<dyn Read>, Option<u64>, RawFd) = match &args.file {
        Some(path) => {
            let file =
                File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            let size = file.metadata().ok().map(|m| m.len());
            let fd = file.as_raw_fd();
            (Box::new(file), size, fd)
        }
        None => (Box::new(std::io::stdin()), None, libc::STDIN_FILENO),
    };
    args.connect.install_security()?;
    let mut cluster = Cluster::connect(args.connect.bootstrap(), args.connect.timeout())?;
    let partition_count = cluster.partitions(&args.topic, true)?.len();
    if let Some(p) = args.partition {
        if p < 0 || p as usize >= partition_count {
            bail!(
                "{} has {partition_count} partitions, no partition {p}",
                args.topic
            );
        }
    }
    let started = Instant::now();
    let mut producer = Producer {
        cluster,
        topic: args.topic.clone(),
        acks: args.acks,
        codec: args.compression.compression(),
        partition_count,
        produced: Produced::default(),
    };
    let mut progress = Progress {
        enabled: !args.quiet
            && (args.progress || (args.file.is_some() && std::io::stderr().is_terminal())),
        total_bytes,
        started,
        last_shown: None,
    };
    crate::client::install_stop_handlers();
    let mut reader = BufReader::with_capacity(
        1 << 16,
        CountingReader {
            inner: input,
            count: 0,
        },
    );
    let read_result = produce_lines(
        &args,
        &parser,
        (&mut reader, input_fd),
        &mut producer,
        &mut progress,
    );
    progress.show(reader.get_ref().count, producer.produced.records, true);
    progress.finish();
    read_result?;
    report(&args, &producer.produced, started.elapsed())
}

/// Reads every input line into batches and sends them; at a pause in the input (nothing
/// buffered and nothing ready: the next read would block, e.g. a person typing) pending
/// batches go out at once, so interactive input is sent line by line.
fn produce_lines(
    args: &ProduceArgs,
    parser: &LineParser,
    (reader, input_fd): (&mut BufReader<CountingReader<Box<dyn Read>>>, RawFd),
    producer: &mut Producer,
    progress: &mut Progress,
) -> Result<()> {
    let mut accumulator = Accumulator {
        batch_size_bytes: args.batch_size_bytes,
        pending: BTreeMap::new(),
        sticky_partition: 0,
    };
    let mut line = Vec::new();
    let mut number = 0u64;
    while !crate::client::stop_requested() && read_line(reader, &mut line, number + 1)? {
        number += 1;
        if line.is_empty() {
            continue; // blank lines carry no record, as with kcat -P
        }
        let record = parser.parse(&line, number)?;
        let partition = match args.partition.or(record.partition) {
            Some(p) => p,
            None => match &record.key {
                Some(key) => partition_for_key(key, producer.partition_count),
                None => (accumulator.sticky_partition % producer.partition_count) as i32,
            },
        };
        if accumulator.would_overflow(partition, record.size_bytes()) {
            send_one(producer, &mut accumulator, partition)?;
        }
        if let Some(full) = accumulator.add(record, partition) {
            send_one(producer, &mut accumulator, full)?;
        }
        if reader.buffer().is_empty() && !input_ready(input_fd) {
            producer.send(accumulator.take_all())?;
        }
        progress.show(reader.get_ref().count, producer.produced.records, false);
    }
    producer.send(accumulator.take_all())
}

/// Whether reading `fd` would return at once (data or end of input): if not, the writer is
/// pausing and what was read so far should not wait for more.
fn input_ready(fd: RawFd) -> bool {
    let mut poll_fd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call; timeout 0 never blocks.
    let ready = unsafe { libc::poll(&mut poll_fd, 1, 0) };
    ready != 0
}

/// Sends `partition`'s batch; keyless records move on to the next partition (sticky).
fn send_one(producer: &mut Producer, accumulator: &mut Accumulator, partition: i32) -> Result<()> {
    if accumulator.sticky_partition % producer.partition_count == partition as usize {
        accumulator.sticky_partition = accumulator.sticky_partition.wrapping_add(1);
    }
    let records = accumulator.take(partition);
    producer.send(vec![(partition, records)])
}

fn report(args: &ProduceArgs, produced: &Produced, elapsed: Duration) -> Result<()> {
    if !args.quiet {
        eprintln!(
            "produced {} records ({} bytes) to {} in {:.3} s",
            produced.records,
            produced.bytes,
            args.topic,
            elapsed.as_secs_f64()
        );
    }
    if args.connect.output() == OutputFormat::Json {
        let partitions: serde_json::Map<String, Value> = produced
            .offsets
            .iter()
            .map(|(p, (first, last))| {
                (
                    p.to_string(),
                    json!({"first_offset": first, "last_offset": last}),
                )
            })
            .collect();
        print_json(&json!({
            "topic": args.topic,
            "records": produced.records,
            "bytes": produced.bytes,
            "partitions": partitions,
        }))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parser(separator: Option<&str>, headers: &[&str]) -> LineParser {
        LineParser {
            format: InputFormat::Text,
            key_separator: separator.map(|s| s.as_bytes().to_vec()),
            headers: headers.iter().map(|h| parse_header(h).unwrap()).collect(),
        }
    }

    #[test]
    fn text_lines_split_at_the_first_separator_and_carry_the_headers() {
        let p = parser(Some(":"), &["h=v", "empty=", "null"]);
        let r = p.parse(b"k:v:w", 1).unwrap();
        assert_eq!(r.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(r.value.as_deref(), Some(&b"v:w"[..]));
        assert_eq!(
            r.headers,
            vec![
                ("h".to_string(), Some(b"v".to_vec())),
                ("empty".to_string(), Some(Vec::new())),
                ("null".to_string(), None)
            ]
        );
        let err = p.parse(b"no separator", 7).unwrap_err().to_string();
        assert!(err.contains("line 7"), "{err}");
        let plain = parser(None, &[]).parse(b"a:b", 1).unwrap();
        assert_eq!((plain.key, plain.value), (None, Some(b"a:b".to_vec())));
        assert!(parse_header("=v").is_err());
    }

    #[test]
    fn json_lines_take_strings_base64_and_both_header_shapes() {
        let r = parse_json_line(
            br#"{"key":"k","value":"v","headers":{"a":"1","b":null},"partition":2,"timestamp":1700000000000}"#,
        )
        .unwrap();
        assert_eq!(r.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(r.value.as_deref(), Some(&b"v"[..]));
        assert_eq!(
            r.headers,
            vec![
                ("a".to_string(), Some(b"1".to_vec())),
                ("b".to_string(), None)
            ]
        );
        assert_eq!(
            (r.partition, r.timestamp_ms),
            (Some(2), Some(1_700_000_000_000))
        );
        let r = parse_json_line(
            br#"{"key_base64":"/wA=","value":null,"headers":[["h","x"],["h","y"]]}"#,
        )
        .unwrap();
        assert_eq!(r.key, Some(vec![0xff, 0]));
        assert_eq!(r.value, None);
        assert_eq!(r.headers.len(), 2);
        for bad in [
            &br#"{"key":"k"}"#[..],
            br#"{"value":1}"#,
            br#"{"value":"v","extra":1}"#,
            br#"{"value":"v","value_base64":"dg=="}"#,
            br#"{"value":"v","headers":[["h"]]}"#,
            br#"{"value":"v","partition":"0"}"#,
            br#"[1]"#,
            b"not json",
        ] {
            assert!(
                parse_json_line(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn lines_lose_their_line_ends() {
        let mut input: &[u8] = b"a\r\nb\nc";
        let mut line = Vec::new();
        let mut got = Vec::new();
        while read_line(&mut input, &mut line, 1).unwrap() {
            got.push(String::from_utf8(line.clone()).unwrap());
        }
        assert_eq!(got, ["a", "b", "c"]);
    }

    #[test]
    fn full_batches_are_reported_and_overflow_is_detected() {
        let mut acc = Accumulator {
            batch_size_bytes: 100,
            pending: BTreeMap::new(),
            sticky_partition: 0,
        };
        let record = OutgoingRecord {
            value: Some(vec![0; 40]),
            ..Default::default()
        };
        assert_eq!(acc.add(record.clone(), 0), None);
        assert!(acc.would_overflow(0, 60));
        assert!(!acc.would_overflow(1, 60));
        assert_eq!(acc.add(record.clone(), 0), Some(0));
        assert_eq!(acc.take(0).len(), 2);
        assert!(acc.take_all().is_empty());
    }
}
