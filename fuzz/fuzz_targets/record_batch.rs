//! Arbitrary bytes as v2 record batches: `RecordBatchHeader::parse`, `validate_batch`,
//! `BatchIter`, and the ListOffsets lookups `find_record_offset_at_or_after_timestamp` /
//! `find_record_offset_with_timestamp`, `for_each_key_value` and the log cleaner's
//! `filter_batch` and `control::read_control_record` (which decompress compressed batches, with an output bound; the filter also
//! re-compresses), and `decompress_bounded` on the raw input for every codec.
//! When the input
//! validates, the produce path is exercised too: patching base offset and leader epoch must keep
//! it valid. Must never panic, abort or run out of memory.
#![no_main]

use fjord_protocol::filter::{filter_batch, FilteredBatch};
use fjord_protocol::records::{self, BatchIter, Compression, RecordBatchHeader};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static A: fjord_protocol::alloc::HostileSizeGuard = fjord_protocol::alloc::HostileSizeGuard;

/// Timestamps to look up in `batch`: the edges, the header's own, and one from the input tail.
fn targets(batch: &[u8], header: Option<&RecordBatchHeader>) -> Vec<i64> {
    let mut t = vec![i64::MIN, -1, 0, i64::MAX];
    if let Some(h) = header {
        t.extend([h.base_timestamp, h.max_timestamp, h.base_timestamp.wrapping_add(1)]);
    }
    if let Some(tail) = batch.len().checked_sub(8).map(|at| &batch[at..]) {
        t.push(i64::from_be_bytes(tail.try_into().unwrap()));
    }
    t
}

/// The lookups on one slice, with the invariants their results must satisfy.
fn lookups(batch: &[u8]) {
    let mut visited = 0usize;
    let _ = records::for_each_key_value(batch, |_, _, _| visited += 1);
    // Transaction markers: read by recovery, replay and the cleaner from disk bytes.
    if let Ok(Some(_)) = fjord_protocol::control::read_control_record(batch) {
        let h = RecordBatchHeader::parse(batch).expect("a control record implies a header");
        assert!(h.is_control());
    }
    // The log cleaner's filter: a rebuilt batch must be whole, valid and keep its base offset.
    if let Ok(FilteredBatch::Rebuilt(rebuilt)) = filter_batch(batch, |r| r.offset % 2 == 0) {
        let h = RecordBatchHeader::parse(&rebuilt).expect("rebuilt header parses");
        assert_eq!(h.total_size_bytes(), rebuilt.len());
        records::verify_crc(&rebuilt, &h).expect("rebuilt CRC");
        let original = RecordBatchHeader::parse(batch).expect("filtered input parses");
        assert_eq!((h.base_offset, h.last_offset_delta), (original.base_offset, original.last_offset_delta));
    }
    let header = RecordBatchHeader::parse(batch).ok();
    let uncompressed = header.is_some_and(|h| h.compression() == Ok(Compression::None));
    for target in targets(batch, header.as_ref()) {
        let at_or_after = records::find_record_offset_at_or_after_timestamp(batch, target);
        if let Ok(Some((offset, timestamp))) = at_or_after {
            assert!(timestamp >= target, "found ts {timestamp} < target {target}");
            let h = header.expect("a found record implies a parsed header");
            if uncompressed {
                assert!((h.base_offset..=h.last_offset()).contains(&offset), "offset {offset} outside batch {h:?}");
            }
        }
        let exact = records::find_record_offset_with_timestamp(batch, target);
        if let Ok(Some((offset, timestamp))) = exact {
            assert_eq!(timestamp, target);
            let h = header.expect("a found record implies a parsed header");
            if uncompressed {
                assert!((h.base_offset..=h.last_offset()).contains(&offset), "offset {offset} outside batch {h:?}");
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let parsed = RecordBatchHeader::parse(data);
    for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
        if let Ok(out) = fjord_protocol::decompress::decompress_bounded(codec, data, 1 << 20) {
            assert!(out.len() <= 1 << 20);
        }
    }

    // Every batch the iterator yields is a well-formed slice of the input.
    let mut iter = BatchIter::new(data);
    let mut yielded = 0usize;
    while let Some(item) = iter.next() {
        match item {
            Ok((header, range)) => {
                assert_eq!(range.start, yielded);
                assert_eq!(range.len(), header.total_size_bytes());
                assert!(range.end <= data.len());
                let slice = &data[range.clone()];
                assert_eq!(RecordBatchHeader::parse(slice), Ok(header));
                let _ = records::verify_crc(slice, &header);
                let _ = records::validate_batch(slice);
                if range.start > 0 {
                    lookups(slice);
                }
                yielded = range.end;
            }
            Err(_) => {
                assert_eq!(iter.position(), yielded);
                assert!(iter.next().is_none(), "iterator continued after an error");
                break;
            }
        }
    }
    if yielded == 0 {
        assert!(parsed.as_ref().map_or(true, |h| h.total_size_bytes() > data.len()));
    }
    lookups(data);

    // The produce path: a valid batch stays valid after the broker patches it.
    if let Ok(header) = records::validate_batch(data) {
        assert_eq!(Ok(header), parsed);
        assert_eq!(header.total_size_bytes(), data.len());
        assert!(header.records_count > 0);
        assert_eq!(i64::from(header.last_offset_delta), i64::from(header.records_count) - 1);
        let mut items = BatchIter::new(data);
        assert_eq!(items.next(), Some(Ok((header, 0..data.len()))));
        assert_eq!(items.next(), None);

        for (base_offset, epoch) in [
            (0, 0),
            (i64::MAX, i32::MAX),
            (i64::MIN, i32::MIN),
            (header.base_offset.wrapping_add(1 << 40), header.partition_leader_epoch ^ 0x5a5a),
        ] {
            let mut copy = data.to_vec();
            records::set_base_offset(&mut copy, base_offset);
            records::set_partition_leader_epoch(&mut copy, epoch);
            let patched = records::validate_batch(&copy)
                .unwrap_or_else(|e| panic!("patched batch no longer validates: {e}"));
            assert_eq!(patched.base_offset, base_offset);
            assert_eq!(patched.partition_leader_epoch, epoch);
            assert_eq!(
                RecordBatchHeader { base_offset: header.base_offset, partition_leader_epoch: header.partition_leader_epoch, ..patched },
                header
            );
            assert_eq!(&copy[16..], &data[16..]);
            if base_offset == i64::MAX || base_offset == i64::MIN {
                lookups(&copy); // saturating offset arithmetic at the edges
            }
        }
    }
});
