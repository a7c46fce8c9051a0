use fjord_raft::{MemLogStore, QuorumConfig};
use proptest::prelude::*;

use super::*;

fn fetch(from_index: u64, max_bytes: u32, cluster_id: &str) -> FetchMetadataRequest {
    FetchMetadataRequest {
        correlation_id: 7,
        node_id: 4,
        cluster_id: cluster_id.to_string(),
        from_index,
        max_bytes,
        max_wait_ms: 0,
    }
}

fn chunk(index: u64, term: u64, position: u64, max_bytes: u32) -> FetchSnapshotRequest {
    FetchSnapshotRequest {
        correlation_id: 8,
        node_id: 4,
        cluster_id: String::new(),
        snapshot_index: index,
        snapshot_term: term,
        position,
        max_bytes,
    }
}

/// A one-voter quorum that committed `payloads` (after its term's empty entry).
fn voter(payloads: &[&[u8]]) -> MetadataQuorum<MemLogStore> {
    let mut quorum =
        MetadataQuorum::new(QuorumConfig::new(1, vec![1]), MemLogStore::new()).unwrap();
    let settle = |quorum: &mut MetadataQuorum<MemLogStore>| {
        for _ in 0..10 {
            if quorum.ready().unwrap().is_empty() {
                break;
            }
        }
    };
    settle(&mut quorum);
    for payload in payloads {
        quorum.propose(Bytes::copy_from_slice(payload)).unwrap();
    }
    settle(&mut quorum);
    quorum
}

fn entries(response: &FetchMetadataResponse) -> &[MetadataLogEntry] {
    match &response.body {
        FetchMetadataBody::Entries(entries) => entries,
        other => panic!("entries expected, got {other:?}"),
    }
}

#[test]
fn a_voter_serves_committed_entries_within_the_byte_limit() {
    let quorum = voter(&[b"aaaa", b"bbbb", b"cccc"]);
    assert_eq!(quorum.applied_index(), 4);
    let all = answer_fetch_metadata(&quorum, Some("c1"), &fetch(1, 1024, ""));
    assert_eq!(all.error_code, error_code::NONE);
    assert_eq!((all.correlation_id, all.leader_hint), (7, 1));
    assert_eq!(all.cluster_id, "c1");
    assert_eq!(all.committed_index, 4);
    let indexes: Vec<u64> = entries(&all).iter().map(|e| e.index).collect();
    assert_eq!(indexes, vec![1, 2, 3, 4]);
    assert!(
        entries(&all)[0].payload.is_empty(),
        "the term's no-op entry"
    );
    assert_eq!(entries(&all)[3].payload, Bytes::from_static(b"cccc"));
    // 6 bytes hold one 4-byte payload after the empty entry, not two.
    let limited = answer_fetch_metadata(&quorum, Some("c1"), &fetch(1, 6, "c1"));
    assert_eq!(entries(&limited).len(), 2);
    // A limit below one entry still makes progress.
    let one = answer_fetch_metadata(&quorum, Some("c1"), &fetch(3, 1, "c1"));
    assert_eq!(entries(&one).len(), 1);
    // A huge ask is capped by the server, not trusted.
    let capped = answer_fetch_metadata(&quorum, Some("c1"), &fetch(1, u32::MAX, "c1"));
    assert_eq!(entries(&capped).len(), 4);
    // Past the committed index: nothing (yet).
    let ahead = answer_fetch_metadata(&quorum, Some("c1"), &fetch(5, 1024, "c1"));
    assert!(entries(&ahead).is_empty());
    assert_eq!(ahead.committed_index, 4);
}

#[test]
fn a_foreign_cluster_is_refused_and_an_unformed_one_is_not() {
    let quorum = voter(&[b"x"]);
    let foreign = answer_fetch_metadata(&quorum, Some("ours"), &fetch(1, 1024, "theirs"));
    assert_eq!(foreign.error_code, error_code::INCONSISTENT_CLUSTER_ID);
    assert!(entries(&foreign).is_empty());
    let snapshot = answer_fetch_snapshot(
        &quorum,
        Some("ours"),
        &FetchSnapshotRequest {
            cluster_id: "theirs".into(),
            ..chunk(1, 1, 0, 10)
        },
    );
    assert_eq!(snapshot.error_code, error_code::INCONSISTENT_CLUSTER_ID);
    // An observer that knows no cluster yet, or a voter that has none yet, is served.
    for (ours, theirs) in [(Some("ours"), ""), (None, "theirs"), (Some(""), "theirs")] {
        let answer = answer_fetch_metadata(&quorum, ours, &fetch(1, 1024, theirs));
        assert_eq!(answer.error_code, error_code::NONE, "{ours:?} {theirs}");
        assert_eq!(entries(&answer).len(), 2);
    }
}

#[test]
fn a_compacted_index_requires_the_snapshot_served_in_chunks() {
    let mut quorum = voter(&[b"a", b"b", b"c"]);
    let data = Bytes::from(vec![9u8; 2_500]);
    quorum.compact(3, data.clone()).unwrap();
    let answer = answer_fetch_metadata(&quorum, None, &fetch(2, 1024, ""));
    assert_eq!(
        answer.body,
        FetchMetadataBody::SnapshotRequired {
            index: 3,
            term: 1,
            size_bytes: 2_500
        }
    );
    // After the snapshot, entries continue.
    let after = answer_fetch_metadata(&quorum, None, &fetch(4, 1024, ""));
    assert_eq!(entries(&after).len(), 1);
    assert_eq!(entries(&after)[0].index, 4);

    let mut assembled = Vec::new();
    loop {
        let part =
            answer_fetch_snapshot(&quorum, None, &chunk(3, 1, assembled.len() as u64, 1_000));
        assert_eq!(part.error_code, error_code::NONE);
        assert_eq!(part.size_bytes, 2_500);
        assert!(part.chunk.len() <= 1_000);
        if part.chunk.is_empty() {
            break;
        }
        assembled.extend_from_slice(&part.chunk);
    }
    assert_eq!(Bytes::from(assembled), data);
    assert_eq!(
        answer_fetch_snapshot(&quorum, None, &chunk(3, 1, 2_501, 10)).error_code,
        error_code::POSITION_OUT_OF_RANGE
    );
    assert_eq!(
        answer_fetch_snapshot(&quorum, None, &chunk(2, 1, 0, 10)).error_code,
        error_code::SNAPSHOT_NOT_FOUND
    );
    assert_eq!(
        answer_fetch_snapshot(&quorum, None, &chunk(3, 1, 0, u32::MAX))
            .chunk
            .len(),
        2_500
    );
}

fn entry_strategy() -> impl Strategy<Value = MetadataLogEntry> {
    (
        any::<u64>(),
        any::<u64>(),
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(index, term, payload)| MetadataLogEntry {
            index,
            term,
            payload: Bytes::from(payload),
        })
}

fn request_strategy() -> impl Strategy<Value = ObserverRequest> {
    let fetch = (
        any::<i32>(),
        any::<i32>(),
        "[a-zA-Z0-9_-]{0,24}",
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(
            |(correlation_id, node_id, cluster_id, from_index, max_bytes, max_wait_ms)| {
                ObserverRequest::Fetch(FetchMetadataRequest {
                    correlation_id,
                    node_id,
                    cluster_id,
                    from_index,
                    max_bytes,
                    max_wait_ms,
                })
            },
        );
    let snapshot = (
        any::<i32>(),
        any::<i32>(),
        "[a-zA-Z0-9_-]{0,24}",
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u32>(),
    )
        .prop_map(
            |(
                correlation_id,
                node_id,
                cluster_id,
                snapshot_index,
                snapshot_term,
                position,
                max_bytes,
            )| {
                ObserverRequest::Snapshot(FetchSnapshotRequest {
                    correlation_id,
                    node_id,
                    cluster_id,
                    snapshot_index,
                    snapshot_term,
                    position,
                    max_bytes,
                })
            },
        );
    prop_oneof![fetch, snapshot]
}

fn response_strategy() -> impl Strategy<Value = ObserverResponse> {
    let body = prop_oneof![
        proptest::collection::vec(entry_strategy(), 0..6).prop_map(FetchMetadataBody::Entries),
        (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(index, term, size_bytes)| {
            FetchMetadataBody::SnapshotRequired {
                index,
                term,
                size_bytes,
            }
        }),
    ];
    let fetch = (
        any::<i32>(),
        any::<i16>(),
        any::<i32>(),
        "[a-zA-Z0-9_-]{0,24}",
        any::<u64>(),
        body,
    )
        .prop_map(
            |(correlation_id, error_code, leader_hint, cluster_id, committed_index, body)| {
                ObserverResponse::Fetch(FetchMetadataResponse {
                    correlation_id,
                    error_code,
                    leader_hint,
                    cluster_id,
                    committed_index,
                    body,
                })
            },
        );
    let snapshot = (
        (
            any::<i32>(),
            any::<i16>(),
            any::<i32>(),
            "[a-zA-Z0-9_-]{0,24}",
        ),
        (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()),
        proptest::collection::vec(any::<u8>(), 0..128),
    )
        .prop_map(
            |(
                (correlation_id, error_code, leader_hint, cluster_id),
                (snapshot_index, snapshot_term, size_bytes, position),
                chunk,
            )| {
                ObserverResponse::Snapshot(FetchSnapshotResponse {
                    correlation_id,
                    error_code,
                    leader_hint,
                    cluster_id,
                    snapshot_index,
                    snapshot_term,
                    size_bytes,
                    position,
                    chunk: Bytes::from(chunk),
                })
            },
        );
    prop_oneof![fetch, snapshot]
}

/// The frame's body: size prefix checked and cut.
fn body(frame: Bytes) -> Bytes {
    let size = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
    assert_eq!(size, frame.len() - 4);
    frame.slice(4..)
}

proptest! {
    #[test]
    fn requests_round_trip(request in request_strategy()) {
        let frame = body(request.encode());
        prop_assert!(is_observer_api_key(frame_api_key(&frame).unwrap()));
        prop_assert_eq!(ObserverRequest::decode(frame).unwrap(), request);
    }

    #[test]
    fn responses_round_trip(response in response_strategy()) {
        prop_assert_eq!(ObserverResponse::decode(body(response.encode())).unwrap(), response);
    }

    #[test]
    fn truncated_frames_fail_cleanly(response in response_strategy(), request in request_strategy(), cut in 1usize..64) {
        let frame = body(response.encode());
        let short = frame.slice(..frame.len().saturating_sub(cut));
        prop_assert!(ObserverResponse::decode(short).is_err());
        let frame = body(request.encode());
        let short = frame.slice(..frame.len().saturating_sub(cut));
        prop_assert!(ObserverRequest::decode(short).is_err());
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
        let _ = ObserverRequest::decode(Bytes::from(bytes.clone()));
        let _ = ObserverResponse::decode(Bytes::from(bytes));
    }
}

#[test]
fn a_huge_entry_count_is_refused_before_allocating() {
    let mut frame = BytesMut::new();
    frame.put_i32(1);
    frame.put_i16(FETCH_METADATA_API_KEY);
    frame.put_i16(0);
    frame.put_i32(-1);
    frame.put_i16(0);
    frame.put_u64(0);
    frame.put_i8(0);
    frame.put_u32(u32::MAX);
    assert_eq!(
        ObserverResponse::decode(frame.freeze()),
        Err(FetchCodecError::Truncated)
    );
}
