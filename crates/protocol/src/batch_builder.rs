//! A minimal encoder for uncompressed v2 record batches.
//!
//! The broker itself never builds batches (producers do); this exists for tests, fuzz seeds and
//! tools that need a valid batch without a full client. It is written independently of the
//! validation code in [`crate::records`], so tests that pair the two check one against the other.

/// A record header as the encoder takes it: key and optional value.
pub type Header<'a> = (&'a [u8], Option<&'a [u8]>);

/// One record to encode.
#[derive(Debug, Clone, Copy, Default)]
pub struct Record<'a> {
    /// Offset from the batch's base timestamp, in milliseconds.
    pub timestamp_delta: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [Header<'a>],
}

fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut raw = ((value << 1) ^ (value >> 63)) as u64;
    loop {
        let byte = (raw & 0x7f) as u8;
        raw >>= 7;
        if raw == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varint(out, -1),
        Some(b) => {
            put_varint(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

/// The producer fields of a batch header (Kafka's idempotent and transactional producers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerFields {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// Sequence number of the first record (-1 = none, as coordinators and markers write).
    pub base_sequence: i32,
}

impl ProducerFields {
    /// What a producer without idempotence sends: all -1.
    pub const NONE: ProducerFields = ProducerFields {
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
    };
}

/// Attribute bit 4: the batch belongs to a transaction.
pub const TRANSACTIONAL_ATTRIBUTE: i16 = 1 << 4;
/// Attribute bit 5: a control batch (transaction marker).
pub const CONTROL_ATTRIBUTE: i16 = 1 << 5;

/// Encodes one uncompressed batch with a correct CRC. `attributes` bits 0-2 (the codec) should
/// be 0; bit 3 marks LogAppendTime. Partition leader epoch and producer fields are -1, as a
/// producer without idempotence sends them.
pub fn encode_uncompressed(
    base_offset: i64,
    base_timestamp: i64,
    attributes: i16,
    records: &[Record<'_>],
) -> Vec<u8> {
    encode_uncompressed_with_producer(
        base_offset,
        base_timestamp,
        attributes,
        ProducerFields::NONE,
        records,
    )
}

/// [`encode_uncompressed`] with producer id, epoch and base sequence set; `attributes` may
/// carry [`TRANSACTIONAL_ATTRIBUTE`] and [`CONTROL_ATTRIBUTE`].
pub fn encode_uncompressed_with_producer(
    base_offset: i64,
    base_timestamp: i64,
    attributes: i16,
    producer: ProducerFields,
    records: &[Record<'_>],
) -> Vec<u8> {
    let mut body = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let mut rec = vec![0u8]; // record attributes
        put_varint(&mut rec, r.timestamp_delta);
        put_varint(&mut rec, i as i64);
        put_bytes(&mut rec, r.key);
        put_bytes(&mut rec, r.value);
        put_varint(&mut rec, r.headers.len() as i64);
        for (k, v) in r.headers {
            put_bytes(&mut rec, Some(k));
            put_bytes(&mut rec, *v);
        }
        put_varint(&mut body, rec.len() as i64);
        body.extend_from_slice(&rec);
    }
    let max_timestamp = records
        .iter()
        .map(|r| base_timestamp + r.timestamp_delta)
        .max()
        .unwrap_or(base_timestamp);
    let mut out = Vec::with_capacity(61 + body.len());
    out.extend_from_slice(&base_offset.to_be_bytes());
    out.extend_from_slice(&((49 + body.len()) as i32).to_be_bytes());
    out.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
    out.push(2); // magic
    out.extend_from_slice(&[0; 4]); // crc, patched below
    out.extend_from_slice(&attributes.to_be_bytes());
    out.extend_from_slice(&((records.len() as i32) - 1).to_be_bytes());
    out.extend_from_slice(&base_timestamp.to_be_bytes());
    out.extend_from_slice(&max_timestamp.to_be_bytes());
    out.extend_from_slice(&producer.producer_id.to_be_bytes());
    out.extend_from_slice(&producer.producer_epoch.to_be_bytes());
    out.extend_from_slice(&producer.base_sequence.to_be_bytes());
    out.extend_from_slice(&(records.len() as i32).to_be_bytes());
    out.extend_from_slice(&body);
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
}

/// `count` records with null keys and `value` as every value, timestamps `base_timestamp + i`.
pub fn encode_values(base_timestamp: i64, count: usize, value: &[u8]) -> Vec<u8> {
    let records: Vec<Record<'_>> = (0..count)
        .map(|i| Record {
            timestamp_delta: i as i64,
            value: Some(value),
            ..Record::default()
        })
        .collect();
    encode_uncompressed(0, base_timestamp, 0, &records)
}
