//! Micro-benchmarks of the protocol hot paths: batch validation, offset assignment, batch
//! iteration, request decoding and response encoding.
//!
//! Run with `cargo bench -p fjord-protocol`; `cargo bench -p fjord-protocol -- --test` runs
//! every benchmark once as a smoke test.

use std::hint::black_box;
use std::ops::Range;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fjord_protocol::batch_builder;
use fjord_protocol::kafka_protocol::messages::fetch_response::{
    FetchableTopicResponse, PartitionData,
};
use fjord_protocol::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use fjord_protocol::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use fjord_protocol::kafka_protocol::messages::{
    ApiKey, FetchResponse, MetadataRequest, ProduceRequest, RequestHeader, RequestKind,
    ResponseKind, TopicName,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::records::{self, BatchIter};
use fjord_protocol::{request, response};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
/// Value size of every record: a typical small event.
const VALUE_BYTES: usize = 100;
/// Approximate encoded size of one record with a null key and a `VALUE_BYTES` value.
const RECORD_BYTES_APPROX: usize = VALUE_BYTES + 8;
const BASE_TIMESTAMP: i64 = 1_700_000_000_000;

/// One uncompressed batch of `VALUE_BYTES` records, about `target_bytes` long.
fn batch_of_about(target_bytes: usize) -> Vec<u8> {
    let count = (target_bytes.saturating_sub(records::RECORD_BATCH_HEADER_BYTES)
        / RECORD_BYTES_APPROX)
        .max(1);
    batch_builder::encode_values(BASE_TIMESTAMP, count, &[b'v'; VALUE_BYTES])
}

/// Concatenated batches of `records_per_batch` records each, filling at most `total_bytes`.
fn buffer_of_batches(total_bytes: usize, records_per_batch: usize) -> Vec<u8> {
    let batch = batch_builder::encode_values(BASE_TIMESTAMP, records_per_batch, &[b'v'; 100]);
    let count = total_bytes / batch.len();
    let mut out = Vec::with_capacity(count * batch.len());
    for i in 0..count {
        let start = out.len();
        out.extend_from_slice(&batch);
        records::set_base_offset(&mut out[start..], (i * records_per_batch) as i64);
    }
    out
}

fn size_label(bytes: usize) -> String {
    if bytes >= MIB {
        format!("{}MiB", bytes / MIB)
    } else {
        format!("{}KiB", bytes / KIB)
    }
}

fn bench_validate_batch(c: &mut Criterion) {
    let mut group = c.benchmark_group("validate_batch");
    for target in [KIB, 16 * KIB, MIB] {
        let batch = batch_of_about(target);
        records::validate_batch(&batch).expect("benchmark batch is valid");
        group.throughput(Throughput::Bytes(batch.len() as u64));
        group.bench_function(size_label(target), |b| {
            b.iter(|| records::validate_batch(black_box(&batch)).unwrap())
        });
    }
    group.finish();
}

/// What `Log::append` does to every batch before writing it: patch the base offset and the
/// partition leader epoch in place.
fn bench_assign_offsets(c: &mut Criterion) {
    let mut group = c.benchmark_group("assign_offsets");

    let mut batch = batch_of_about(16 * KIB);
    group.throughput(Throughput::Elements(1));
    group.bench_function("one_16KiB_batch", |b| {
        let mut offset = 0i64;
        b.iter(|| {
            offset += 1;
            records::set_base_offset(black_box(&mut batch), offset);
            records::set_partition_leader_epoch(black_box(&mut batch), 7);
        })
    });

    // 1 MiB of 1-record batches, located with BatchIter then patched one by one.
    let mut buf = buffer_of_batches(MIB, 1);
    let ranges: Vec<Range<usize>> = BatchIter::new(&buf).map(|r| r.unwrap().1).collect();
    group.throughput(Throughput::Elements(ranges.len() as u64));
    group.bench_function(format!("1MiB_of_{}_batches", ranges.len()), |b| {
        b.iter(|| {
            for (i, range) in ranges.iter().enumerate() {
                let batch = &mut buf[range.clone()];
                records::set_base_offset(batch, i as i64);
                records::set_partition_leader_epoch(batch, 7);
            }
            black_box(&mut buf);
        })
    });
    group.finish();
}

fn bench_batch_iter(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch_iter");
    for records_per_batch in [1, 10] {
        let buf = buffer_of_batches(MIB, records_per_batch);
        let batches = BatchIter::new(&buf).count();
        group.throughput(Throughput::Bytes(buf.len() as u64));
        group.bench_function(
            format!("1MiB_of_{batches}_batches_{records_per_batch}_records"),
            |b| {
                b.iter(|| {
                    let mut n = 0usize;
                    for item in BatchIter::new(black_box(&buf)) {
                        n += item.unwrap().0.records_count as usize;
                    }
                    n
                })
            },
        );
    }
    group.finish();
}

fn request_frame(api_key: ApiKey, api_version: i16, body: &RequestKind) -> Bytes {
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(api_version)
        .with_correlation_id(42)
        .with_client_id(Some(StrBytes::from_static_str("bench-client")));
    request::encode_request(&header, body)
        .expect("benchmark request encodes")
        .freeze()
}

fn decode(frame: Bytes) -> RequestKind {
    let frame = request::decode_header(frame).unwrap();
    request::decode_body(&frame).unwrap()
}

fn bench_request_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("request_decode");

    let batch = Bytes::from(batch_of_about(MIB));
    let produce = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("bench-topic")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch))])]);
    let frame = request_frame(ApiKey::Produce, 9, &RequestKind::Produce(produce));
    assert!(matches!(decode(frame.clone()), RequestKind::Produce(_)));
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function("produce_v9_1MiB", |b| {
        b.iter(|| decode(black_box(frame.clone())))
    });

    let topics = (0..10)
        .map(|i| {
            MetadataRequestTopic::default()
                .with_name(Some(TopicName(StrBytes::from_string(format!("topic-{i}")))))
        })
        .collect();
    let metadata = MetadataRequest::default()
        .with_topics(Some(topics))
        .with_allow_auto_topic_creation(true);
    let frame = request_frame(ApiKey::Metadata, 12, &RequestKind::Metadata(metadata));
    assert!(matches!(decode(frame.clone()), RequestKind::Metadata(_)));
    group.throughput(Throughput::Elements(1));
    group.bench_function("metadata_v12_10_topics", |b| {
        b.iter(|| decode(black_box(frame.clone())))
    });
    group.finish();
}

fn bench_response_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("response_encode");
    let records = Bytes::from(buffer_of_batches(MIB, 10));
    let records_len = records.len();
    let fetch = FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
        .with_topic(TopicName(StrBytes::from_static_str("bench-topic")))
        .with_partitions(vec![PartitionData::default()
            .with_partition_index(0)
            .with_high_watermark(1_000_000)
            .with_last_stable_offset(1_000_000)
            .with_log_start_offset(0)
            .with_records(Some(records))])]);
    let body = ResponseKind::Fetch(fetch);
    let encoded = response::encode_response(ApiKey::Fetch, 12, 42, &body).unwrap();
    assert!(encoded.len() > records_len);
    group.throughput(Throughput::Bytes(encoded.len() as u64));
    group.bench_function("fetch_v12_1MiB", |b| {
        b.iter(|| response::encode_response(ApiKey::Fetch, 12, 42, black_box(&body)).unwrap())
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_validate_batch, bench_assign_offsets, bench_batch_iter,
        bench_request_decode, bench_response_encode
}
criterion_main!(benches);
