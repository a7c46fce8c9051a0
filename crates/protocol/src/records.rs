//! Kafka v2 record batches, kept as bytes.
//!
//! The broker never re-encodes what a producer sent: a batch is validated here, its base offset
//! and partition leader epoch are patched in place (neither is covered by the CRC), and the very
//! same bytes go to disk and later out to consumers. Nothing here does I/O.
//!
//! Layout of the 61-byte v2 header (big-endian):
//!
//! | offset | field                | type |
//! |-------:|----------------------|------|
//! | 0      | baseOffset           | i64  |
//! | 8      | batchLength          | i32 (bytes after this field) |
//! | 12     | partitionLeaderEpoch | i32  |
//! | 16     | magic                | i8 (= 2) |
//! | 17     | crc                  | u32 (CRC-32C of bytes 21..end) |
//! | 21     | attributes           | i16  |
//! | 23     | lastOffsetDelta      | i32  |
//! | 27     | baseTimestamp        | i64  |
//! | 35     | maxTimestamp         | i64  |
//! | 43     | producerId           | i64  |
//! | 51     | producerEpoch        | i16  |
//! | 53     | baseSequence         | i32  |
//! | 57     | recordsCount         | i32  |
//! | 61     | records...           |      |

use std::ops::Range;

/// Size of the fixed v2 record batch header, up to and including `recordsCount`.
pub const RECORD_BATCH_HEADER_BYTES: usize = 61;
/// Bytes before `batchLength` counts: baseOffset (8) + batchLength (4).
pub const LOG_OVERHEAD_BYTES: usize = 12;
/// The only record format this broker accepts and stores.
pub const CURRENT_MAGIC: i8 = 2;
/// Smallest legal `batchLength`: the header minus the log overhead, with no records.
pub const MIN_BATCH_LENGTH: i32 = (RECORD_BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32;

const BASE_OFFSET_AT: usize = 0;
const BATCH_LENGTH_AT: usize = 8;
const PARTITION_LEADER_EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const PRODUCER_ID_AT: usize = 43;
const PRODUCER_EPOCH_AT: usize = 51;
const BASE_SEQUENCE_AT: usize = 53;
const RECORDS_COUNT_AT: usize = 57;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;
const TRANSACTIONAL_BIT: i16 = 1 << 4;
const CONTROL_BIT: i16 = 1 << 5;

/// Why a record batch (or a run of them) was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The buffer ends before the batch does. At the tail of a fetch response or of a log file
    /// after a crash this is expected; see [`RecordError::is_truncated`].
    #[error("record batch truncated: need {needed_bytes} bytes, have {available_bytes}")]
    Truncated {
        needed_bytes: usize,
        available_bytes: usize,
    },
    #[error("invalid record batch length {batch_length}")]
    InvalidBatchLength { batch_length: i32 },
    #[error("record batch length field says {batch_bytes} bytes but buffer holds {buffer_bytes}")]
    LengthMismatch {
        batch_bytes: usize,
        buffer_bytes: usize,
    },
    /// Magic 0 and 1 (legacy message sets) or an unknown future format.
    #[error("unsupported record batch magic {magic}")]
    UnsupportedMagic { magic: i8 },
    #[error("record batch CRC mismatch: stored {stored_crc:#010x}, computed {computed_crc:#010x}")]
    CrcMismatch { stored_crc: u32, computed_crc: u32 },
    #[error("invalid compression codec {codec}")]
    InvalidCompression { codec: u8 },
    #[error("record batch contains no records")]
    EmptyBatch,
    #[error("record batch lastOffsetDelta {last_offset_delta} inconsistent with recordsCount {records_count}")]
    InconsistentOffsetRange {
        last_offset_delta: i32,
        records_count: i32,
    },
    #[error("malformed record in batch: {reason}")]
    MalformedRecord { reason: &'static str },
    #[error("cannot decompress record batch: {reason}")]
    Decompression { reason: String },
}

impl RecordError {
    /// True when the bytes seen so far are consistent with a valid batch that was cut short,
    /// as opposed to bytes that can never become a valid batch.
    pub fn is_truncated(&self) -> bool {
        matches!(self, RecordError::Truncated { .. })
    }
}

/// Compression codec from attribute bits 0-2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

/// The parsed fixed header of a v2 record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordBatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn read_i16(buf: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([buf[at], buf[at + 1]])
}

fn read_i32(buf: &[u8], at: usize) -> i32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    i32::from_be_bytes(b)
}

fn read_i64(buf: &[u8], at: usize) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    i64::from_be_bytes(b)
}

impl RecordBatchHeader {
    /// Parses the header at the start of `buf` (which may hold more bytes after the batch).
    ///
    /// Checks only what is needed to trust the header's own fields: enough bytes for the header,
    /// magic 2, and a `batchLength` no smaller than the header. It does not check the CRC or
    /// that the whole batch is present; see [`validate_batch`] and [`BatchIter`].
    pub fn parse(buf: &[u8]) -> Result<Self, RecordError> {
        // Report legacy formats as such even when they are shorter than a v2 header, so the
        // broker can answer with the right error code.
        if let Some(&magic) = buf.get(MAGIC_AT) {
            let magic = magic as i8;
            if magic != CURRENT_MAGIC {
                return Err(RecordError::UnsupportedMagic { magic });
            }
        }
        if buf.len() < RECORD_BATCH_HEADER_BYTES {
            return Err(RecordError::Truncated {
                needed_bytes: RECORD_BATCH_HEADER_BYTES,
                available_bytes: buf.len(),
            });
        }
        let header = RecordBatchHeader {
            base_offset: read_i64(buf, BASE_OFFSET_AT),
            batch_length: read_i32(buf, BATCH_LENGTH_AT),
            partition_leader_epoch: read_i32(buf, PARTITION_LEADER_EPOCH_AT),
            magic: buf[MAGIC_AT] as i8,
            crc: u32::from_be_bytes([
                buf[CRC_AT],
                buf[CRC_AT + 1],
                buf[CRC_AT + 2],
                buf[CRC_AT + 3],
            ]),
            attributes: read_i16(buf, ATTRIBUTES_AT),
            last_offset_delta: read_i32(buf, LAST_OFFSET_DELTA_AT),
            base_timestamp: read_i64(buf, BASE_TIMESTAMP_AT),
            max_timestamp: read_i64(buf, MAX_TIMESTAMP_AT),
            producer_id: read_i64(buf, PRODUCER_ID_AT),
            producer_epoch: read_i16(buf, PRODUCER_EPOCH_AT),
            base_sequence: read_i32(buf, BASE_SEQUENCE_AT),
            records_count: read_i32(buf, RECORDS_COUNT_AT),
        };
        if header.batch_length < MIN_BATCH_LENGTH {
            return Err(RecordError::InvalidBatchLength {
                batch_length: header.batch_length,
            });
        }
        Ok(header)
    }

    /// Size of the whole batch on the wire / on disk, log overhead included.
    pub fn total_size_bytes(&self) -> usize {
        debug_assert!(self.batch_length >= MIN_BATCH_LENGTH);
        // batch_length >= MIN_BATCH_LENGTH > 0 is checked by `parse`.
        self.batch_length as usize + LOG_OVERHEAD_BYTES
    }

    /// Offset of the last record in the batch.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// Offset of the first record after this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }

    pub fn compression(&self) -> Result<Compression, RecordError> {
        match (self.attributes & COMPRESSION_MASK) as u8 {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            codec => Err(RecordError::InvalidCompression { codec }),
        }
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// LogAppendTime batches carry the broker's time in `maxTimestamp`, and every record's
    /// timestamp is taken to be that value.
    pub fn timestamp_type_is_log_append(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }
}

/// CRC-32C over everything after the CRC field, compared against the stored CRC.
/// `batch` must be exactly one batch (or at least its first `total_size_bytes`).
pub fn verify_crc(batch: &[u8], header: &RecordBatchHeader) -> Result<(), RecordError> {
    let end = header.total_size_bytes();
    let covered = batch
        .get(ATTRIBUTES_AT..end)
        .ok_or(RecordError::Truncated {
            needed_bytes: end,
            available_bytes: batch.len(),
        })?;
    let computed_crc = crc32c::crc32c(covered);
    if computed_crc != header.crc {
        return Err(RecordError::CrcMismatch {
            stored_crc: header.crc,
            computed_crc,
        });
    }
    Ok(())
}

/// Full validation of a single produce batch: `batch` must be exactly one v2 batch.
///
/// Mirrors the v2 checks in Kafka's `LogValidator` for client-origin batches: length, magic,
/// CRC, a known codec, at least one record, and `lastOffsetDelta == recordsCount - 1`. For
/// uncompressed batches the records are walked (without allocating) to check they exactly
/// fill the batch. Compressed payloads are not decompressed.
pub fn validate_batch(batch: &[u8]) -> Result<RecordBatchHeader, RecordError> {
    let header = RecordBatchHeader::parse(batch)?;
    let batch_bytes = header.total_size_bytes();
    if batch_bytes != batch.len() {
        return Err(RecordError::LengthMismatch {
            batch_bytes,
            buffer_bytes: batch.len(),
        });
    }
    verify_crc(batch, &header)?;
    let compression = header.compression()?;
    if header.records_count <= 0 {
        return Err(RecordError::EmptyBatch);
    }
    if i64::from(header.last_offset_delta) != i64::from(header.records_count) - 1 {
        return Err(RecordError::InconsistentOffsetRange {
            last_offset_delta: header.last_offset_delta,
            records_count: header.records_count,
        });
    }
    if compression == Compression::None {
        walk_uncompressed_records(&batch[RECORD_BATCH_HEADER_BYTES..], &header, |_| {
            std::ops::ControlFlow::<()>::Continue(())
        })?;
    }
    Ok(header)
}

/// Iterates the concatenated batches in a byte slice (a log segment's contents, a fetch
/// response), yielding each header and its byte range.
///
/// Checks header-level structure only (length, magic); the CRC is left to the caller
/// ([`verify_crc`]) so hot read paths don't pay for it. A batch that runs past the end of the
/// slice is reported as [`RecordError::Truncated`]; after any error the iterator is finished.
#[derive(Debug, Clone)]
pub struct BatchIter<'a> {
    buf: &'a [u8],
    position: usize,
    done: bool,
}

impl<'a> BatchIter<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        BatchIter {
            buf,
            position: 0,
            done: false,
        }
    }

    /// Byte position of the next batch to be yielded: after a `Truncated` error, the length of
    /// the valid prefix.
    pub fn position(&self) -> usize {
        self.position
    }
}

impl Iterator for BatchIter<'_> {
    type Item = Result<(RecordBatchHeader, Range<usize>), RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.position >= self.buf.len() {
            return None;
        }
        let rest = &self.buf[self.position..];
        let result = RecordBatchHeader::parse(rest).and_then(|header| {
            let size = header.total_size_bytes();
            if size > rest.len() {
                return Err(RecordError::Truncated {
                    needed_bytes: size,
                    available_bytes: rest.len(),
                });
            }
            Ok((header, self.position..self.position + size))
        });
        match &result {
            Ok((_, range)) => self.position = range.end,
            Err(_) => self.done = true,
        }
        Some(result)
    }
}

/// Patches the base offset. Not covered by the CRC, so the batch stays valid.
///
/// # Panics
/// If `batch` is shorter than a batch header; callers pass batches they already validated.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    assert!(batch.len() >= RECORD_BATCH_HEADER_BYTES);
    batch[BASE_OFFSET_AT..BASE_OFFSET_AT + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Patches the partition leader epoch. Not covered by the CRC, so the batch stays valid.
///
/// # Panics
/// If `batch` is shorter than a batch header; callers pass batches they already validated.
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    assert!(batch.len() >= RECORD_BATCH_HEADER_BYTES);
    batch[PARTITION_LEADER_EPOCH_AT..PARTITION_LEADER_EPOCH_AT + 4]
        .copy_from_slice(&epoch.to_be_bytes());
}

/// Attribute bit: the batch's timestamps are the broker's log append time.
const TIMESTAMP_TYPE_LOG_APPEND_BIT: i16 = 0x08;

/// Stamps a validated batch with the broker's log append time (topic config
/// `message.timestamp.type=LogAppendTime`), as Kafka's `DefaultRecordBatch.setMaxTimestamp`:
/// sets the timestamp-type attribute and the max timestamp, and recomputes the CRC, since both
/// fields are covered by it. Records are untouched: readers take every record's timestamp from
/// the batch's max timestamp when the attribute is set.
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    assert!(batch.len() >= RECORD_BATCH_HEADER_BYTES);
    let attributes = read_i16(batch, ATTRIBUTES_AT) | TIMESTAMP_TYPE_LOG_APPEND_BIT;
    batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// A copy of `original`'s header over a new record section (compressed as the attributes
/// say), with the batch length, record count and max timestamp set and the CRC recomputed.
/// Base offset, last offset delta, base timestamp, producer fields and attributes stay, as in
/// Kafka's `MemoryRecords.filterTo` for v2 batches: the last offset delta keeps the producer's
/// last sequence meaningful, the base timestamp keeps the records' deltas valid.
///
/// # Panics
/// If `original` is shorter than a batch header; callers pass batches they already parsed.
pub fn rebuild_batch(
    original: &[u8],
    section: &[u8],
    records_count: i32,
    max_timestamp: i64,
) -> Vec<u8> {
    assert!(original.len() >= RECORD_BATCH_HEADER_BYTES);
    let mut batch = Vec::with_capacity(RECORD_BATCH_HEADER_BYTES + section.len());
    batch.extend_from_slice(&original[..RECORD_BATCH_HEADER_BYTES]);
    batch.extend_from_slice(section);
    let batch_length = (batch.len() - LOG_OVERHEAD_BYTES) as i32;
    batch[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&batch_length.to_be_bytes());
    batch[RECORDS_COUNT_AT..RECORDS_COUNT_AT + 4].copy_from_slice(&records_count.to_be_bytes());
    batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&max_timestamp.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    batch
}

/// One parsed record of a batch: what offset and timestamp lookups and the log cleaner need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordInfo<'a> {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    /// `None` is a tombstone on a compacted topic.
    pub value: Option<&'a [u8]>,
    /// The whole record as stored, length prefix included (its deltas are relative to the
    /// batch's base offset and base timestamp, so it can be copied into a batch with the same
    /// bases unchanged).
    pub bytes: &'a [u8],
}

/// A bounds-checked cursor over record bytes; every read fails cleanly instead of panicking.
struct Cursor<'a> {
    buf: &'a [u8],
    position: usize,
}

impl<'a> Cursor<'a> {
    fn malformed(reason: &'static str) -> RecordError {
        RecordError::MalformedRecord { reason }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.position
    }

    fn read_u8(&mut self) -> Result<u8, RecordError> {
        let byte = *self
            .buf
            .get(self.position)
            .ok_or(Self::malformed("record runs past end of batch"))?;
        self.position += 1;
        Ok(byte)
    }

    /// Zig-zag varlong as used by Kafka's record format, at most 10 bytes.
    fn read_varlong(&mut self) -> Result<i64, RecordError> {
        let mut raw: u64 = 0;
        for i in 0..10 {
            let byte = self.read_u8()?;
            raw |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
            }
        }
        Err(Self::malformed("varlong longer than 10 bytes"))
    }

    /// Zig-zag varint, at most 5 bytes.
    fn read_varint(&mut self) -> Result<i32, RecordError> {
        let mut raw: u32 = 0;
        for i in 0..5 {
            let byte = self.read_u8()?;
            raw |= u32::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32));
            }
        }
        Err(Self::malformed("varint longer than 5 bytes"))
    }

    fn skip(&mut self, bytes: usize) -> Result<(), RecordError> {
        if bytes > self.remaining() {
            return Err(Self::malformed("field runs past end of record"));
        }
        self.position += bytes;
        Ok(())
    }

    /// Reads a varint-length-prefixed field; -1 is null.
    fn read_sized(&mut self) -> Result<Option<&'a [u8]>, RecordError> {
        let length = self.read_varint()?;
        match length {
            -1 => Ok(None),
            n if n < 0 => Err(Self::malformed("negative field length")),
            n if n as usize > self.remaining() => {
                Err(Self::malformed("field runs past end of record"))
            }
            n => {
                let start = self.position;
                self.position += n as usize;
                Ok(Some(&self.buf[start..self.position]))
            }
        }
    }

    /// Skips a varint-length-prefixed field; -1 means null when `nullable`.
    fn skip_sized(&mut self, nullable: bool) -> Result<(), RecordError> {
        let length = self.read_varint()?;
        match length {
            -1 if nullable => Ok(()),
            n if n < 0 => Err(Self::malformed("negative field length")),
            n => self.skip(n as usize),
        }
    }
}

/// Parses one record (length prefix included) and checks its fields fill it exactly.
fn read_record<'a>(
    cursor: &mut Cursor<'a>,
    header: &RecordBatchHeader,
) -> Result<RecordInfo<'a>, RecordError> {
    let start = cursor.position;
    let length = cursor.read_varint()?;
    if length < 0 || length as usize > cursor.remaining() {
        return Err(Cursor::malformed("record length out of range"));
    }
    let end = cursor.position + length as usize;
    let mut record = Cursor {
        buf: &cursor.buf[..end],
        position: cursor.position,
    };
    let _attributes = record.read_u8()?;
    let timestamp_delta = record.read_varlong()?;
    let offset_delta = record.read_varint()?;
    let key = record.read_sized()?;
    let value = record.read_sized()?;
    let header_count = record.read_varint()?;
    if header_count < 0 {
        return Err(Cursor::malformed("negative header count"));
    }
    for _ in 0..header_count {
        record.skip_sized(false)?; // header key: never null
        record.skip_sized(true)?; // header value
    }
    if record.position != end {
        return Err(Cursor::malformed("record length does not match its fields"));
    }
    if offset_delta < 0 || offset_delta > header.last_offset_delta {
        return Err(Cursor::malformed("record offset delta outside batch range"));
    }
    cursor.position = end;
    let timestamp = if header.timestamp_type_is_log_append() {
        header.max_timestamp
    } else {
        header.base_timestamp.wrapping_add(timestamp_delta)
    };
    Ok(RecordInfo {
        offset: header.base_offset.saturating_add(i64::from(offset_delta)),
        timestamp,
        key,
        value,
        bytes: &cursor.buf[start..end],
    })
}

/// Calls `visit` on every record of an uncompressed record section (the bytes after a batch
/// header, decompressed if the batch was compressed), checking that they fill it exactly.
pub fn for_each_record(
    section: &[u8],
    header: &RecordBatchHeader,
    mut visit: impl FnMut(RecordInfo<'_>),
) -> Result<(), RecordError> {
    walk_uncompressed_records::<()>(section, header, |info| {
        visit(info);
        std::ops::ControlFlow::Continue(())
    })?;
    Ok(())
}

/// Walks the `recordsCount` records of an uncompressed batch, calling `visit` on each, and
/// checks (when not stopped early) that they exactly fill `records`.
fn walk_uncompressed_records<B>(
    records: &[u8],
    header: &RecordBatchHeader,
    mut visit: impl FnMut(RecordInfo<'_>) -> std::ops::ControlFlow<B>,
) -> Result<Option<B>, RecordError> {
    let mut cursor = Cursor {
        buf: records,
        position: 0,
    };
    for _ in 0..header.records_count.max(0) {
        let info = read_record(&mut cursor, header)?;
        if let std::ops::ControlFlow::Break(found) = visit(info) {
            return Ok(Some(found));
        }
    }
    if cursor.remaining() != 0 {
        return Err(Cursor::malformed("bytes left after the last record"));
    }
    Ok(None)
}

/// The header and the uncompressed record section of one whole batch: the bytes after the
/// header, decompressed (with the output bound, see `decompress`) if the batch is compressed.
/// Not a produce or fetch path.
pub fn record_section(
    batch: &[u8],
) -> Result<(RecordBatchHeader, std::borrow::Cow<'_, [u8]>), RecordError> {
    let header = RecordBatchHeader::parse(batch)?;
    let size = header.total_size_bytes();
    let batch = batch.get(..size).ok_or(RecordError::Truncated {
        needed_bytes: size,
        available_bytes: batch.len(),
    })?;
    let records = &batch[RECORD_BATCH_HEADER_BYTES..];
    let section = match header.compression()? {
        Compression::None => std::borrow::Cow::Borrowed(records),
        codec => std::borrow::Cow::Owned(crate::decompress::decompress_bounded(
            codec,
            records,
            crate::decompress::DECOMPRESSED_BYTES_MAX,
        )?),
    };
    Ok((header, section))
}

/// Visits every record of one whole batch, decompressing if needed, until `visit` breaks.
pub fn find_record<B>(
    batch: &[u8],
    visit: impl FnMut(RecordInfo<'_>) -> std::ops::ControlFlow<B>,
) -> Result<Option<B>, RecordError> {
    let (header, section) = record_section(batch)?;
    walk_uncompressed_records(&section, &header, visit)
}

/// Calls `visit(offset, key, value)` for every record of one whole batch, decompressing if
/// needed (with an output bound, see `decompress`). For readers of internal topics (the group
/// coordinator replaying `__consumer_offsets`) and the key check on compacted topics.
pub fn for_each_key_value(
    batch: &[u8],
    mut visit: impl FnMut(i64, Option<&[u8]>, Option<&[u8]>),
) -> Result<(), RecordError> {
    let (header, section) = record_section(batch)?;
    let mut cursor = Cursor {
        buf: &section,
        position: 0,
    };
    for _ in 0..header.records_count.max(0) {
        let length = cursor.read_varint()?;
        if length < 0 || length as usize > cursor.remaining() {
            return Err(Cursor::malformed("record length out of range"));
        }
        let end = cursor.position + length as usize;
        let mut record = Cursor {
            buf: &cursor.buf[..end],
            position: cursor.position,
        };
        let _attributes = record.read_u8()?;
        let _timestamp_delta = record.read_varlong()?;
        let offset_delta = record.read_varint()?;
        let key = record.read_sized()?;
        let value = record.read_sized()?;
        cursor.position = end;
        visit(
            header.base_offset.saturating_add(i64::from(offset_delta)),
            key,
            value,
        );
    }
    Ok(())
}

/// First record in `batch` whose timestamp is `>= target_ms`, as `(offset, timestamp)`.
///
/// Like Kafka's `FileRecords.searchForTimestamp` within one batch. May decompress.
pub fn find_record_offset_at_or_after_timestamp(
    batch: &[u8],
    target_ms: i64,
) -> Result<Option<(i64, i64)>, RecordError> {
    let header = RecordBatchHeader::parse(batch)?;
    // maxTimestamp bounds every record, so most batches are skipped without reading records.
    if header.max_timestamp < target_ms {
        return Ok(None);
    }
    find_record(batch, |info| {
        if info.timestamp >= target_ms {
            std::ops::ControlFlow::Break((info.offset, info.timestamp))
        } else {
            std::ops::ControlFlow::Continue(())
        }
    })
}

/// First record in `batch` whose timestamp equals `timestamp_ms`, as `(offset, timestamp)`.
///
/// Used for ListOffsets MAX_TIMESTAMP, like Kafka's `RecordBatch.offsetOfMaxTimestamp`.
pub fn find_record_offset_with_timestamp(
    batch: &[u8],
    timestamp_ms: i64,
) -> Result<Option<(i64, i64)>, RecordError> {
    find_record(batch, |info| {
        if info.timestamp == timestamp_ms {
            std::ops::ControlFlow::Break((info.offset, info.timestamp))
        } else {
            std::ops::ControlFlow::Continue(())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A test record: timestamp delta, key, value, headers.
    #[derive(Debug, Clone)]
    struct TestRecord {
        timestamp_delta: i64,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    }

    /// Encodes with the independent test encoder in `batch_builder`.
    fn encode_batch(
        base_offset: i64,
        base_timestamp: i64,
        attributes: i16,
        records: &[TestRecord],
    ) -> Vec<u8> {
        use crate::batch_builder::{encode_uncompressed, Header, Record};
        let headers: Vec<Vec<Header<'_>>> = records
            .iter()
            .map(|r| {
                r.headers
                    .iter()
                    .map(|(k, v)| (k.as_slice(), v.as_deref()))
                    .collect()
            })
            .collect();
        let built: Vec<Record<'_>> = records
            .iter()
            .zip(&headers)
            .map(|(r, h)| Record {
                timestamp_delta: r.timestamp_delta,
                key: r.key.as_deref(),
                value: r.value.as_deref(),
                headers: h,
            })
            .collect();
        let mut out = encode_uncompressed(base_offset, base_timestamp, attributes, &built);
        set_partition_leader_epoch(&mut out, 7);
        out
    }

    fn simple_records(deltas: &[i64]) -> Vec<TestRecord> {
        deltas
            .iter()
            .map(|&d| TestRecord {
                timestamp_delta: d,
                key: Some(b"k".to_vec()),
                value: Some(b"value".to_vec()),
                headers: vec![(b"h".to_vec(), None)],
            })
            .collect()
    }

    fn kafka_compressed_batch(
        compression: kafka_protocol::records::Compression,
        timestamps: &[i64],
    ) -> Vec<u8> {
        use kafka_protocol::records::*;
        let records: Vec<Record> = timestamps
            .iter()
            .enumerate()
            .map(|(i, &ts)| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // kafka-protocol starts a new batch when offset - sequence changes.
                sequence: i as i32,
                timestamp: ts,
                key: None,
                value: Some(bytes::Bytes::from(vec![b'x'; 100])),
                headers: Default::default(),
            })
            .collect();
        let mut buf = bytes::BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        buf.to_vec()
    }

    #[test]
    fn key_values_are_read_back_with_their_offsets() {
        use crate::batch_builder::{encode_uncompressed, Record};
        let batch = encode_uncompressed(
            40,
            0,
            0,
            &[
                Record {
                    key: Some(b"k1"),
                    value: Some(b"v1"),
                    ..Record::default()
                },
                Record {
                    key: Some(b"k2"),
                    value: None,
                    ..Record::default()
                },
            ],
        );
        let mut seen = Vec::new();
        for_each_key_value(&batch, |offset, key, value| {
            seen.push((offset, key.map(<[u8]>::to_vec), value.map(<[u8]>::to_vec)));
        })
        .unwrap();
        assert_eq!(
            seen,
            vec![
                (40, Some(b"k1".to_vec()), Some(b"v1".to_vec())),
                (41, Some(b"k2".to_vec()), None),
            ]
        );
        // A truncated batch is an error, not a panic.
        assert!(for_each_key_value(&batch[..batch.len() - 3], |_, _, _| {}).is_err());
    }

    #[test]
    fn parse_and_validate_round_trip() {
        let batch = encode_batch(100, 1_000, 0, &simple_records(&[0, 5, 3]));
        let header = validate_batch(&batch).unwrap();
        assert_eq!(header.base_offset, 100);
        assert_eq!(header.records_count, 3);
        assert_eq!(header.last_offset(), 102);
        assert_eq!(header.max_timestamp, 1_005);
        assert_eq!(header.partition_leader_epoch, 7);
        assert_eq!(header.total_size_bytes(), batch.len());
        assert_eq!(header.compression().unwrap(), Compression::None);
        assert!(!header.is_transactional());
        assert!(!header.is_control());
        assert!(!header.timestamp_type_is_log_append());
    }

    #[test]
    fn rejects_legacy_magic_even_when_short() {
        let mut batch = encode_batch(0, 0, 0, &simple_records(&[0]));
        batch[16] = 1;
        assert_eq!(
            validate_batch(&batch),
            Err(RecordError::UnsupportedMagic { magic: 1 })
        );
        assert_eq!(
            validate_batch(&batch[..30]),
            Err(RecordError::UnsupportedMagic { magic: 1 })
        );
    }

    #[test]
    fn rejects_bad_lengths_and_counts() {
        let batch = encode_batch(0, 0, 0, &simple_records(&[0, 1]));
        assert!(matches!(
            validate_batch(&batch[..batch.len() - 1]),
            Err(RecordError::LengthMismatch { .. })
        ));
        let mut longer = batch.clone();
        longer.push(0);
        assert!(matches!(
            validate_batch(&longer),
            Err(RecordError::LengthMismatch { .. })
        ));

        // Zero records: rewrite the count and fix the CRC so only the count is wrong.
        let empty = encode_batch(0, 0, 0, &[]);
        assert_eq!(validate_batch(&empty), Err(RecordError::EmptyBatch));

        let mut bad_delta = batch.clone();
        bad_delta[23..27].copy_from_slice(&5i32.to_be_bytes());
        let crc = crc32c::crc32c(&bad_delta[21..]);
        bad_delta[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            validate_batch(&bad_delta),
            Err(RecordError::InconsistentOffsetRange { .. })
        ));

        let mut bad_codec = batch.clone();
        bad_codec[22] |= 0x07;
        let crc = crc32c::crc32c(&bad_codec[21..]);
        bad_codec[17..21].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(
            validate_batch(&bad_codec),
            Err(RecordError::InvalidCompression { codec: 7 })
        );

        // A record count that does not match the record bytes.
        let mut bad_count = encode_batch(0, 0, 0, &simple_records(&[0, 1]));
        bad_count[57..61].copy_from_slice(&1i32.to_be_bytes());
        bad_count[23..27].copy_from_slice(&0i32.to_be_bytes());
        let crc = crc32c::crc32c(&bad_count[21..]);
        bad_count[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            validate_batch(&bad_count),
            Err(RecordError::MalformedRecord { .. })
        ));
    }

    #[test]
    fn batch_iter_reports_truncated_tail_separately() {
        let a = encode_batch(0, 0, 0, &simple_records(&[0, 1]));
        let b = encode_batch(2, 0, 0, &simple_records(&[0]));
        let mut buf = a.clone();
        buf.extend_from_slice(&b);
        let all: Vec<_> = BatchIter::new(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].1, 0..a.len());
        assert_eq!(all[1].1, a.len()..buf.len());
        assert_eq!(all[1].0.base_offset, 2);

        for cut in [a.len() + 1, a.len() + 20, buf.len() - 1] {
            let mut iter = BatchIter::new(&buf[..cut]);
            assert!(iter.next().unwrap().is_ok());
            let err = iter.next().unwrap().unwrap_err();
            assert!(err.is_truncated(), "{err:?}");
            assert_eq!(iter.position(), a.len());
            assert!(iter.next().is_none());
        }

        let mut corrupt = buf.clone();
        corrupt[a.len() + 8..a.len() + 12].copy_from_slice(&3i32.to_be_bytes());
        let mut iter = BatchIter::new(&corrupt);
        assert!(iter.next().unwrap().is_ok());
        let err = iter.next().unwrap().unwrap_err();
        assert!(!err.is_truncated());
    }

    #[test]
    fn patching_keeps_crc_valid() {
        let mut batch = encode_batch(0, 0, 0, &simple_records(&[0, 1, 2]));
        set_base_offset(&mut batch, 1 << 40);
        set_partition_leader_epoch(&mut batch, 42);
        let header = validate_batch(&batch).unwrap();
        assert_eq!(header.base_offset, 1 << 40);
        assert_eq!(header.partition_leader_epoch, 42);
    }

    #[test]
    fn log_append_time_stamps_the_batch_and_keeps_it_valid() {
        let mut batch = encode_batch(0, 1_000, 0, &simple_records(&[0, 5]));
        set_log_append_time(&mut batch, 9_999);
        let header = validate_batch(&batch).unwrap();
        assert!(header.timestamp_type_is_log_append());
        assert_eq!(header.max_timestamp, 9_999);
        assert_eq!(header.base_timestamp, 1_000, "records are untouched");
        // Every record now reads as the append time.
        assert_eq!(
            find_record_offset_at_or_after_timestamp(&batch, 9_999).unwrap(),
            Some((0, 9_999))
        );
    }

    #[test]
    fn timestamp_lookup_uncompressed() {
        let batch = encode_batch(10, 1_000, 0, &simple_records(&[0, 50, 20, 80]));
        let find = |t| find_record_offset_at_or_after_timestamp(&batch, t).unwrap();
        assert_eq!(find(0), Some((10, 1_000)));
        assert_eq!(find(1_001), Some((11, 1_050)));
        assert_eq!(find(1_051), Some((13, 1_080)));
        assert_eq!(find(1_081), None);
        assert_eq!(
            find_record_offset_with_timestamp(&batch, 1_080).unwrap(),
            Some((13, 1_080))
        );
        assert_eq!(
            find_record_offset_with_timestamp(&batch, 1_081).unwrap(),
            None
        );
    }

    #[test]
    fn timestamp_lookup_log_append_time_uses_max_timestamp() {
        let batch = encode_batch(10, 1_000, TIMESTAMP_TYPE_BIT, &simple_records(&[0, 50]));
        assert_eq!(
            find_record_offset_at_or_after_timestamp(&batch, 1_020).unwrap(),
            Some((10, 1_050))
        );
        assert_eq!(
            find_record_offset_with_timestamp(&batch, 1_050).unwrap(),
            Some((10, 1_050))
        );
    }

    #[test]
    fn timestamp_lookup_compressed() {
        use kafka_protocol::records::Compression as K;
        for codec in [K::Gzip, K::Snappy, K::Lz4, K::Zstd] {
            let mut batch = kafka_compressed_batch(codec, &[500, 700, 600]);
            let header = validate_batch(&batch).unwrap();
            assert_ne!(header.compression().unwrap(), Compression::None);
            set_base_offset(&mut batch, 1_000);
            assert_eq!(
                find_record_offset_at_or_after_timestamp(&batch, 550).unwrap(),
                Some((1_001, 700)),
                "{codec:?}"
            );
            assert_eq!(
                find_record_offset_with_timestamp(&batch, 600).unwrap(),
                Some((1_002, 600))
            );
        }
    }

    fn arb_record() -> impl Strategy<Value = TestRecord> {
        let bytes = proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40));
        (
            -1_000i64..1_000,
            bytes.clone(),
            bytes.clone(),
            proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..8), bytes), 0..3),
        )
            .prop_map(|(timestamp_delta, key, value, headers)| TestRecord {
                timestamp_delta,
                key,
                value,
                headers,
            })
    }

    fn arb_batch() -> impl Strategy<Value = Vec<u8>> {
        (
            0i64..1 << 50,
            0i64..1 << 40,
            proptest::collection::vec(arb_record(), 1..8),
        )
            .prop_map(|(base, ts, records)| encode_batch(base, ts, 0, &records))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn prop_valid_batches_validate(batch in arb_batch(), new_base in any::<i64>(), epoch in any::<i32>()) {
            let header = validate_batch(&batch).unwrap();
            prop_assert_eq!(header, RecordBatchHeader::parse(&batch).unwrap());
            prop_assert_eq!(header.total_size_bytes(), batch.len());
            let mut patched = batch.clone();
            set_base_offset(&mut patched, new_base);
            set_partition_leader_epoch(&mut patched, epoch);
            let patched_header = validate_batch(&patched).unwrap();
            prop_assert_eq!(patched_header.base_offset, new_base);
            prop_assert_eq!(patched_header.partition_leader_epoch, epoch);
            prop_assert_eq!(patched_header.crc, header.crc);
        }

        #[test]
        fn prop_bit_flip_in_crc_region_rejected(batch in arb_batch(), at in any::<prop::sample::Index>(), bit in 0u8..8) {
            let mut flipped = batch.clone();
            // The CRC region starts at the CRC field itself: flipping the stored CRC must fail too.
            let position = CRC_AT + at.index(batch.len() - CRC_AT);
            flipped[position] ^= 1 << bit;
            prop_assert!(validate_batch(&flipped).is_err());
        }

        #[test]
        fn prop_garbage_never_panics(garbage in proptest::collection::vec(any::<u8>(), 0..200), target in any::<i64>()) {
            let _ = validate_batch(&garbage);
            let _ = RecordBatchHeader::parse(&garbage);
            for item in BatchIter::new(&garbage) {
                let _ = item;
            }
            let _ = find_record_offset_at_or_after_timestamp(&garbage, target);
            let _ = find_record_offset_with_timestamp(&garbage, target);
        }

        #[test]
        fn prop_mutated_valid_batch_never_panics(batch in arb_batch(), at in any::<prop::sample::Index>(), byte in any::<u8>(), target in any::<i64>()) {
            let mut mutated = batch.clone();
            let i = at.index(mutated.len());
            mutated[i] = byte;
            // Mutations outside the CRC region may pass validation; the lookups must still not panic.
            let _ = validate_batch(&mutated);
            let _ = find_record_offset_at_or_after_timestamp(&mutated, target);
            let _ = find_record_offset_with_timestamp(&mutated, target);
            let _ = BatchIter::new(&mutated).count();
        }

        #[test]
        fn prop_iter_splits_concatenation(batches in proptest::collection::vec(arb_batch(), 1..5)) {
            let buf: Vec<u8> = batches.concat();
            let items: Vec<_> = BatchIter::new(&buf).collect::<Result<_, _>>().unwrap();
            prop_assert_eq!(items.len(), batches.len());
            for ((_, range), batch) in items.iter().zip(&batches) {
                prop_assert_eq!(&buf[range.clone()], &batch[..]);
            }
        }
    }
}
