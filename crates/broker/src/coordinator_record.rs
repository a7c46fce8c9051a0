//! The byte-level codec shared by the coordinators' internal topics (`__consumer_offsets`,
//! `__transaction_state`): a record's key and value are each a big-endian `i16` version
//! followed by a struct in Kafka's message encoding (classic: `i16`/`i32` lengths; flexible:
//! unsigned-varint lengths plus one, tagged fields), and a write is one uncompressed batch.
//!
//! Decoding never panics and never allocates more than the input could hold: the input comes
//! from disk, and a torn or foreign record must cost a warning, not the broker.

use bytes::Bytes;

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordCodecError {
    #[error("record has no key")]
    MissingKey,
    #[error("{what} ends early")]
    Truncated { what: &'static str },
    #[error("{what} has {bytes} bytes left over")]
    TrailingBytes { what: &'static str, bytes: usize },
    #[error("{what} version {version} is not known")]
    UnknownVersion { what: &'static str, version: i16 },
    #[error("{what}: {reason}")]
    Malformed {
        what: &'static str,
        reason: &'static str,
    },
    /// A key version Kafka uses for other group types (KIP-848 consumer groups, share groups).
    #[error("record type with key version {0} is not handled yet")]
    UnsupportedRecordType(i16),
}

/// Whether a string can be stored in Kafka's `string` type (at most `i16::MAX` bytes). The
/// coordinators bound every string they persist far below this; the encoder truncates as a last
/// resort rather than writing a corrupt length.
pub fn string_fits(s: &str) -> bool {
    s.len() <= i16::MAX as usize
}

/// One uncompressed v2 record batch of encoded `(key, value)` records (`None` value = tombstone),
/// all stamped `now_ms`: what a coordinator appends for one operation, so its records land
/// atomically. With `producer`, a transactional batch with the producer's id and epoch and base
/// sequence 0, as Kafka's coordinator runtime writes transactional offset commits.
pub fn encode_batch(
    encoded: &[(Vec<u8>, Option<Vec<u8>>)],
    producer: Option<(i64, i16)>,
    now_ms: i64,
) -> Vec<u8> {
    use fjord_protocol::batch_builder::{
        encode_uncompressed_with_producer, ProducerFields, Record, TRANSACTIONAL_ATTRIBUTE,
    };
    let records: Vec<Record<'_>> = encoded
        .iter()
        .map(|(key, value)| Record {
            timestamp_delta: 0,
            key: Some(key),
            value: value.as_deref(),
            headers: &[],
        })
        .collect();
    let (attributes, producer) = match producer {
        None => (0, ProducerFields::NONE),
        Some((producer_id, producer_epoch)) => (
            TRANSACTIONAL_ATTRIBUTE,
            ProducerFields {
                producer_id,
                producer_epoch,
                base_sequence: 0,
            },
        ),
    };
    encode_uncompressed_with_producer(0, now_ms, attributes, producer, &records)
}

// ------------------------------------------------------------------------------ encoding

pub(crate) struct Writer {
    out: Vec<u8>,
    flexible: bool,
}

impl Writer {
    pub(crate) fn new(version: i16, flexible: bool) -> Self {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&version.to_be_bytes());
        Self { out, flexible }
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.out
    }

    pub(crate) fn raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    pub(crate) fn i8(&mut self, v: i8) {
        self.raw(&v.to_be_bytes());
    }

    pub(crate) fn i16(&mut self, v: i16) {
        self.raw(&v.to_be_bytes());
    }

    pub(crate) fn i32(&mut self, v: i32) {
        self.raw(&v.to_be_bytes());
    }

    pub(crate) fn i64(&mut self, v: i64) {
        self.raw(&v.to_be_bytes());
    }

    pub(crate) fn unsigned_varint(&mut self, mut v: u64) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.out.push(byte);
                return;
            }
            self.out.push(byte | 0x80);
        }
    }

    /// A length prefix: `i16`/`i32` in classic versions, length+1 as an unsigned varint in
    /// flexible ones; `None` is null.
    pub(crate) fn length(&mut self, length: Option<usize>, classic_i16: bool) {
        if self.flexible {
            self.unsigned_varint(length.map_or(0, |n| n as u64 + 1));
        } else if classic_i16 {
            // Callers bound strings to i16::MAX before encoding (see `string_fits`).
            let n = length.map_or(-1, |n| n.min(i16::MAX as usize) as i16);
            self.i16(n);
        } else {
            let n = length.map_or(-1, |n| n.min(i32::MAX as usize) as i32);
            self.i32(n);
        }
    }

    pub(crate) fn string(&mut self, s: &str) {
        self.nullable_string(Some(s));
    }

    pub(crate) fn nullable_string(&mut self, s: Option<&str>) {
        let s = s.map(|s| &s.as_bytes()[..s.len().min(i16::MAX as usize)]);
        self.length(s.map(<[u8]>::len), true);
        if let Some(s) = s {
            self.raw(s);
        }
    }

    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.length(Some(b.len()), false);
        self.raw(b);
    }

    /// An array length; `None` is a null array.
    pub(crate) fn array_length(&mut self, n: Option<usize>) {
        self.length(n, false);
    }

    /// An empty tagged-field section, ending every struct of a flexible version.
    pub(crate) fn tagged_fields(&mut self) {
        if self.flexible {
            self.unsigned_varint(0);
        }
    }
}

// ------------------------------------------------------------------------------ decoding

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
    flexible: bool,
}

impl<'a> Reader<'a> {
    /// Reads the leading `i16` version of a key or value; the rest is read in the classic
    /// encoding until [`Reader::set_flexible`].
    pub(crate) fn versioned(
        buf: &'a [u8],
        what: &'static str,
    ) -> Result<(i16, Reader<'a>), RecordCodecError> {
        let mut reader = Reader {
            buf,
            what,
            flexible: false,
        };
        let version = reader.i16()?;
        Ok((version, reader))
    }

    /// Names what is being read from here on, for errors.
    pub(crate) fn set_what(&mut self, what: &'static str) {
        self.what = what;
    }

    pub(crate) fn set_flexible(&mut self, flexible: bool) {
        self.flexible = flexible;
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordCodecError> {
        if n > self.buf.len() {
            return Err(RecordCodecError::Truncated { what: self.what });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordCodecError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn i8(&mut self) -> Result<i8, RecordCodecError> {
        Ok(i8::from_be_bytes(self.array()?))
    }

    pub(crate) fn i16(&mut self) -> Result<i16, RecordCodecError> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    pub(crate) fn i32(&mut self) -> Result<i32, RecordCodecError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    pub(crate) fn i64(&mut self) -> Result<i64, RecordCodecError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    fn unsigned_varint(&mut self) -> Result<u64, RecordCodecError> {
        let mut value = 0u64;
        for i in 0..10 {
            let byte = self.take(1)?[0];
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.malformed("varint longer than 10 bytes"))
    }

    pub(crate) fn malformed(&self, reason: &'static str) -> RecordCodecError {
        RecordCodecError::Malformed {
            what: self.what,
            reason,
        }
    }

    /// A length prefix; `None` is null.
    fn length(&mut self, classic_i16: bool) -> Result<Option<usize>, RecordCodecError> {
        let length: i64 = if self.flexible {
            self.unsigned_varint()? as i64 - 1
        } else if classic_i16 {
            i64::from(self.i16()?)
        } else {
            i64::from(self.i32()?)
        };
        match length {
            -1 => Ok(None),
            n if n < 0 => Err(self.malformed("negative length")),
            n => Ok(Some(n as usize)),
        }
    }

    pub(crate) fn nullable_string(&mut self) -> Result<Option<String>, RecordCodecError> {
        let Some(length) = self.length(true)? else {
            return Ok(None);
        };
        let bytes = self.take(length)?;
        String::from_utf8(bytes.to_vec())
            .map(Some)
            .map_err(|_| self.malformed("string is not UTF-8"))
    }

    pub(crate) fn string(&mut self) -> Result<String, RecordCodecError> {
        self.nullable_string()?
            .ok_or_else(|| self.malformed("null in a non-nullable string"))
    }

    pub(crate) fn bytes(&mut self) -> Result<Bytes, RecordCodecError> {
        let length = self
            .length(false)?
            .ok_or_else(|| self.malformed("null in a non-nullable bytes field"))?;
        Ok(Bytes::copy_from_slice(self.take(length)?))
    }

    /// A nullable array's length, checked against the bytes left (each element takes at least
    /// `min_element_bytes`), so a hostile count cannot make us reserve memory.
    pub(crate) fn nullable_array_length(
        &mut self,
        min_element_bytes: usize,
    ) -> Result<Option<usize>, RecordCodecError> {
        let n = self.length(false)?;
        if n.is_some_and(|n| n.saturating_mul(min_element_bytes) > self.buf.len()) {
            return Err(RecordCodecError::Truncated { what: self.what });
        }
        Ok(n)
    }

    /// A non-nullable array's length (elements of at least one byte).
    pub(crate) fn array_length(&mut self) -> Result<usize, RecordCodecError> {
        self.nullable_array_length(1)?
            .ok_or_else(|| self.malformed("null array"))
    }

    /// Skips a tagged-field section (flexible versions only).
    pub(crate) fn tagged_fields(&mut self) -> Result<(), RecordCodecError> {
        self.tagged_fields_with(|_, _| Ok(()))
    }

    /// Reads a tagged-field section (flexible versions only), handing each tag to `on_tag`.
    pub(crate) fn tagged_fields_with(
        &mut self,
        mut on_tag: impl FnMut(u64, &'a [u8]) -> Result<(), RecordCodecError>,
    ) -> Result<(), RecordCodecError> {
        if !self.flexible {
            return Ok(());
        }
        let count = self.unsigned_varint()?;
        for _ in 0..count {
            let tag = self.unsigned_varint()?;
            let size = usize::try_from(self.unsigned_varint()?)
                .map_err(|_| self.malformed("tagged field too large"))?;
            let data = self.take(size)?;
            on_tag(tag, data)?;
        }
        Ok(())
    }

    pub(crate) fn finish(self) -> Result<(), RecordCodecError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(RecordCodecError::TrailingBytes {
                what: self.what,
                bytes: self.buf.len(),
            })
        }
    }
}
