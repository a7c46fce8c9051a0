//! Filtering the records of a batch: the log cleaner's view of Kafka's `MemoryRecords.filterTo`.
//!
//! A batch whose records all stay is kept byte for byte; one that loses every record goes;
//! otherwise the kept records are copied verbatim (their offset and timestamp deltas stay valid
//! because the base offset and base timestamp do not change) into a new batch, compressed with
//! the batch's own codec.

use crate::records::{for_each_record, rebuild_batch, record_section, RecordError, RecordInfo};

/// What filtering a batch produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilteredBatch {
    /// Every record stays: write the original bytes.
    Unchanged,
    /// No record stays.
    Removed,
    /// Some records stay, in this new batch.
    Rebuilt(Vec<u8>),
}

/// Calls `keep` on every record of one whole batch (decompressing if needed, with the usual
/// output bound) and returns the batch holding only the records it kept.
pub fn filter_batch(
    batch: &[u8],
    mut keep: impl FnMut(&RecordInfo<'_>) -> bool,
) -> Result<FilteredBatch, RecordError> {
    let (header, section) = record_section(batch)?;
    let mut kept = Vec::new();
    let mut kept_count = 0i32;
    let mut removed_any = false;
    let mut max_timestamp = i64::MIN;
    for_each_record(&section, &header, |record| {
        if keep(&record) {
            kept.extend_from_slice(record.bytes);
            kept_count += 1;
            max_timestamp = max_timestamp.max(record.timestamp);
        } else {
            removed_any = true;
        }
    })?;
    if !removed_any {
        return Ok(FilteredBatch::Unchanged);
    }
    if kept_count == 0 {
        return Ok(FilteredBatch::Removed);
    }
    // LogAppendTime batches carry their time in the header; CreateTime ones get the newest
    // timestamp among the records that stay, as Kafka recomputes it.
    if header.timestamp_type_is_log_append() {
        max_timestamp = header.max_timestamp;
    }
    let section = crate::compress::compress(header.compression()?, &kept)?;
    Ok(FilteredBatch::Rebuilt(rebuild_batch(
        batch,
        &section,
        kept_count,
        max_timestamp,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{for_each_key_value, verify_crc, RecordBatchHeader};
    use bytes::Bytes;
    use kafka_protocol::records::{
        Compression as KafkaCompression, Record, RecordBatchDecoder, RecordBatchEncoder,
        RecordEncodeOptions, TimestampType,
    };
    use proptest::prelude::*;

    /// Key, value, timestamp.
    type TestRecord = (Option<Vec<u8>>, Option<Vec<u8>>, i64);

    fn encode(codec: KafkaCompression, records: &[TestRecord]) -> Vec<u8> {
        let records: Vec<Record> = records
            .iter()
            .enumerate()
            .map(|(i, (key, value, timestamp))| Record {
                transactional: false,
                control: false,
                partition_leader_epoch: 3,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: 100 + i as i64,
                // kafka-protocol starts a new batch unless sequences follow the offsets.
                sequence: i as i32,
                timestamp: *timestamp,
                key: key.clone().map(Bytes::from),
                value: value.clone().map(Bytes::from),
                headers: Default::default(),
                delete_horizon: false,
            })
            .collect();
        let mut buf = bytes::BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: codec,
            },
        )
        .unwrap();
        buf.to_vec()
    }

    const CODECS: [KafkaCompression; 5] = [
        KafkaCompression::None,
        KafkaCompression::Gzip,
        KafkaCompression::Snappy,
        KafkaCompression::Lz4,
        KafkaCompression::Zstd,
    ];

    #[test]
    fn keeping_all_or_nothing_is_reported_without_rebuilding() {
        let batch = encode(
            KafkaCompression::None,
            &[(Some(b"k".to_vec()), Some(b"v".to_vec()), 5)],
        );
        assert_eq!(
            filter_batch(&batch, |_| true).unwrap(),
            FilteredBatch::Unchanged
        );
        assert_eq!(
            filter_batch(&batch, |_| false).unwrap(),
            FilteredBatch::Removed
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// A rebuilt batch is valid (CRC, lengths), keeps the codec, base offset and last offset,
        /// and holds exactly the kept records; kafka-protocol's own decoder agrees.
        #[test]
        fn rebuilt_batches_hold_exactly_the_kept_records(
            codec in 0usize..5,
            records in proptest::collection::vec(
                (proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
                 proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
                 0i64..1_000_000),
                1..40),
            keep_mask in any::<u64>(),
        ) {
            let batch = encode(CODECS[codec], &records);
            let original = RecordBatchHeader::parse(&batch).unwrap();
            let keep = |offset: i64| keep_mask & (1 << ((offset - 100) % 64)) != 0;
            let result = filter_batch(&batch, |r| keep(r.offset)).unwrap();
            let expected: Vec<_> = records.iter().enumerate()
                .filter(|(i, _)| keep(100 + *i as i64))
                .map(|(i, (k, v, _))| (100 + i as i64, k.clone(), v.clone()))
                .collect();
            match result {
                FilteredBatch::Unchanged => prop_assert_eq!(expected.len(), records.len()),
                FilteredBatch::Removed => prop_assert!(expected.is_empty()),
                FilteredBatch::Rebuilt(rebuilt) => {
                    // Not `validate_batch`: that is the produce check, and a compacted batch
                    // legitimately has gaps (recordsCount < lastOffsetDelta + 1).
                    let header = RecordBatchHeader::parse(&rebuilt).unwrap();
                    prop_assert_eq!(header.total_size_bytes(), rebuilt.len());
                    verify_crc(&rebuilt, &header).unwrap();
                    prop_assert_eq!(header.base_offset, original.base_offset);
                    prop_assert_eq!(header.last_offset(), original.last_offset());
                    prop_assert_eq!(header.attributes, original.attributes);
                    prop_assert_eq!(header.records_count as usize, expected.len());
                    let newest = records.iter().enumerate()
                        .filter(|(i, _)| keep(100 + *i as i64)).map(|(_, r)| r.2).max().unwrap();
                    prop_assert_eq!(header.max_timestamp, newest);
                    let mut seen = Vec::new();
                    for_each_key_value(&rebuilt, |offset, key, value| {
                        seen.push((offset, key.map(<[u8]>::to_vec), value.map(<[u8]>::to_vec)));
                    }).unwrap();
                    prop_assert_eq!(&seen, &expected);
                    let mut bytes = Bytes::from(rebuilt);
                    let decoded = RecordBatchDecoder::decode(&mut bytes).unwrap();
                    let offsets: Vec<i64> = decoded.records.iter().map(|r| r.offset).collect();
                    let expected_offsets: Vec<i64> = expected.iter().map(|e| e.0).collect();
                    prop_assert_eq!(offsets, expected_offsets);
                }
            }
        }
    }
}
