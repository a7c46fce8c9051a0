//! Writes the seed corpus under `fuzz/corpus/<target>/seed-*` (checked in; rerun after changing
//! it with `cargo run --manifest-path fuzz/Cargo.toml --bin gen_seeds`, from the repo root or
//! anywhere). Every seed is checked against the code under test before it is written.
//!
//! request_decode: real requests a client sends first (ApiVersions v3 and v4, Metadata v12) and a
//! Produce v9 with a valid uncompressed batch, each both framed (length prefix) and bare, plus
//! two frames back to back. record_batch: valid batches (uncompressed with keys, headers and
//! null values; LogAppendTime; gzip/snappy/lz4/zstd from kafka-protocol's encoder) and two
//! concatenated batches.

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use fjord_fuzz::batch::{self, Record};
use fjord_protocol::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use fjord_protocol::kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use fjord_protocol::kafka_protocol::messages::{
    ApiVersionsRequest, MetadataRequest, ProduceRequest, RequestHeader, TopicName,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::kafka_protocol::records as kr;
use fjord_protocol::{records, request, ApiKey, RequestKind};

fn header(api_key: ApiKey, version: i16, correlation_id: i32) -> RequestHeader {
    RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("fjord-seed")))
}

fn encode(header: &RequestHeader, body: RequestKind) -> Vec<u8> {
    let bytes = request::encode_request(header, &body).expect("encodes").to_vec();
    // Check it decodes back to the same request.
    let frame = request::decode_header(Bytes::from(bytes.clone())).expect("header decodes");
    assert_eq!(&frame.header, header);
    assert_eq!(request::decode_body(&frame).expect("body decodes"), body);
    bytes
}

fn framed(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

fn uncompressed_batch(base_offset: i64, attributes: i16) -> Vec<u8> {
    let b = batch::encode(
        base_offset,
        1_700_000_000_000,
        attributes,
        &[
            Record { timestamp_delta: 0, key: Some(b"key-0"), value: Some(b"hello"), headers: &[] },
            Record {
                timestamp_delta: 7,
                key: None,
                value: Some(b"world"),
                headers: &[(b"trace", Some(b"abc")), (b"empty", None)],
            },
            Record { timestamp_delta: 3, key: Some(b"k"), value: None, headers: &[] },
        ],
    );
    let header = records::validate_batch(&b).expect("seed batch validates");
    assert_eq!(header.records_count, 3);
    b
}

fn compressed_batch(compression: kr::Compression) -> Vec<u8> {
    let recs: Vec<kr::Record> = (0..3)
        .map(|i| kr::Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: kr::TimestampType::Creation,
            offset: i,
            sequence: i as i32,
            timestamp: 1_700_000_000_000 + 10 * i,
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(vec![b'x'; 40])),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    kr::RecordBatchEncoder::encode(&mut buf, &recs, &kr::RecordEncodeOptions { version: 2, compression })
        .expect("kafka-protocol encodes");
    let header = records::validate_batch(&buf).expect("compressed seed validates");
    assert_ne!(header.compression(), Ok(records::Compression::None));
    assert_eq!(
        records::find_record_offset_with_timestamp(&buf, 1_700_000_000_010),
        Ok(Some((1, 1_700_000_000_010)))
    );
    buf.to_vec()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    let path = dir.join(format!("seed-{name}"));
    std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    println!("{:>6} bytes  {}", bytes.len(), path.display());
}

fn main() {
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let requests = corpus.join("request_decode");
    let batches = corpus.join("record_batch");
    std::fs::create_dir_all(&requests).unwrap();
    std::fs::create_dir_all(&batches).unwrap();

    let api_versions = |version| {
        encode(
            &header(ApiKey::ApiVersions, version, 1),
            RequestKind::ApiVersions(
                ApiVersionsRequest::default()
                    .with_client_software_name(StrBytes::from_static_str("librdkafka"))
                    .with_client_software_version(StrBytes::from_static_str("2.16.0")),
            ),
        )
    };
    let metadata = encode(
        &header(ApiKey::Metadata, 12, 2),
        RequestKind::Metadata(
            MetadataRequest::default()
                .with_topics(Some(vec![MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_static_str("orders"))))]))
                .with_allow_auto_topic_creation(true),
        ),
    );
    let produce = encode(
        &header(ApiKey::Produce, 9, 3),
        RequestKind::Produce(
            ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(30_000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_static_str("orders")))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(Bytes::from(uncompressed_batch(0, 0))))])]),
        ),
    );
    for (name, payload) in [
        ("api_versions_v3", api_versions(3)),
        ("api_versions_v4", api_versions(4)),
        ("metadata_v12", metadata.clone()),
        ("produce_v9", produce.clone()),
    ] {
        write(&requests, &format!("{name}.framed"), &framed(&payload));
        write(&requests, &format!("{name}.bare"), &payload);
    }
    let mut pipelined = framed(&api_versions(3));
    pipelined.extend(framed(&metadata));
    write(&requests, "pipelined.framed", &pipelined);

    write(&batches, "uncompressed", &uncompressed_batch(0, 0));
    write(&batches, "log_append_time", &uncompressed_batch(1_000, 1 << 3));
    for (name, codec) in [
        ("gzip", kr::Compression::Gzip),
        ("snappy", kr::Compression::Snappy),
        ("lz4", kr::Compression::Lz4),
        ("zstd", kr::Compression::Zstd),
    ] {
        write(&batches, name, &compressed_batch(codec));
    }
    let mut two = uncompressed_batch(0, 0);
    two.extend(uncompressed_batch(3, 0));
    write(&batches, "two_batches", &two);
}
