//! An observer fed by a real voter (one-voter `MetadataNode` with the real `QuorumController`
//! on a simulated disk) through the FetchMetadata codec and server functions: its image equals
//! the voter's after catch-up, from the log or from the voter's snapshot, and again after a
//! restart from its own files.

use fjord_controller::{
    BrokerHeartbeatRequest, BrokerRegistrationRequest, ControllerConfig, ControllerRequest,
    CreatableTopic, CreateTopicsRequest, QuorumController,
};
use fjord_metadata::{BrokerEndpoint, BrokerFeature, METADATA_VERSION_FEATURE};
use fjord_raft::{MemLogStore, QuorumConfig};
use uuid::Uuid;

use super::*;
use crate::metadata_fetch::{
    answer_fetch_metadata, answer_fetch_snapshot, FetchMetadataBody, FetchMetadataRequest,
    FetchSnapshotRequest, ObserverRequest, ObserverResponse,
};
use crate::metadata_node::{MetadataNode, MetadataNodeConfig};

type Voter = MetadataNode<MemLogStore, QuorumController, u32>;

const NOW_MS: i64 = 1_000;

fn voter(snapshot_interval_bytes: u64) -> Voter {
    let mut config = MetadataNodeConfig::new(QuorumConfig::new(1, vec![1]));
    config.snapshot_interval_bytes = snapshot_interval_bytes;
    let controller = QuorumController::new(ControllerConfig {
        node_id: 1,
        seed: 5,
        ..ControllerConfig::default()
    });
    let mut node = Voter::open(config, MemLogStore::new(), controller).unwrap();
    for _ in 0..20 {
        node.poll(NOW_MS).unwrap();
        if node.is_active() {
            break;
        }
    }
    assert!(node.is_active());
    let cluster_id = node.image().cluster_id.clone().unwrap_or_default();
    submit(
        &mut node,
        ControllerRequest::BrokerRegistration(BrokerRegistrationRequest {
            broker_id: 1,
            cluster_id,
            incarnation_id: Uuid::from_u128(1),
            listeners: vec![BrokerEndpoint {
                name: "PLAINTEXT".to_string(),
                host: "127.0.0.1".to_string(),
                port: 9092,
                security_protocol: 0,
            }],
            features: vec![BrokerFeature {
                name: METADATA_VERSION_FEATURE.to_string(),
                min_supported_version: 1,
                max_supported_version: 30,
            }],
            rack: None,
            previous_broker_epoch: -1,
        }),
    );
    let broker_epoch = node.image().brokers[&1].epoch;
    let current_metadata_offset = node.image().offset;
    submit(
        &mut node,
        ControllerRequest::BrokerHeartbeat(BrokerHeartbeatRequest {
            broker_id: 1,
            broker_epoch,
            current_metadata_offset,
            want_fence: false,
            want_shut_down: false,
        }),
    );
    assert!(!node.image().brokers[&1].fenced, "broker 1 unfenced");
    node
}

fn submit(node: &mut Voter, request: ControllerRequest) {
    assert!(node.submit(NOW_MS, request, 0).is_ok());
    for _ in 0..10 {
        let output = node.poll(NOW_MS).unwrap();
        if !output.replies.is_empty() {
            assert!(output.replies.iter().all(|(_, reply)| reply.is_ok()));
            return;
        }
    }
    panic!("no reply");
}

fn create_topics(node: &mut Voter, names: std::ops::Range<usize>) {
    for i in names {
        submit(
            node,
            ControllerRequest::CreateTopics(CreateTopicsRequest {
                topics: vec![CreatableTopic {
                    name: format!("topic-{i}"),
                    num_partitions: 3,
                    replication_factor: 1,
                    assignments: Vec::new(),
                    configs: Vec::new(),
                }],
                validate_only: false,
            }),
        );
        assert!(node.image().topic_by_name(&format!("topic-{i}")).is_some());
    }
}

/// One request through the codec both ways and the voter's answer, as over the wire.
fn exchange(node: &Voter, request: ObserverRequest) -> ObserverResponse {
    let frame = request.encode();
    let request = ObserverRequest::decode(frame.slice(4..)).unwrap();
    let cluster_id = node.image().cluster_id.clone();
    let response = match request {
        ObserverRequest::Fetch(r) => ObserverResponse::Fetch(answer_fetch_metadata(
            node.quorum(),
            cluster_id.as_deref(),
            &r,
        )),
        ObserverRequest::Snapshot(r) => ObserverResponse::Snapshot(answer_fetch_snapshot(
            node.quorum(),
            cluster_id.as_deref(),
            &r,
        )),
    };
    ObserverResponse::decode(response.encode().slice(4..)).unwrap()
}

/// What the observer loop of the server does, without sockets: fetch until nothing is new,
/// downloading a snapshot in `chunk_bytes` pieces when told to. Returns how many snapshots
/// were installed.
fn catch_up(
    observer: &mut MetadataObserver,
    node: &Voter,
    max_bytes: u32,
    chunk_bytes: u32,
) -> usize {
    let mut installed = 0;
    for _ in 0..1_000 {
        let response = exchange(
            node,
            ObserverRequest::Fetch(FetchMetadataRequest {
                correlation_id: 1,
                node_id: 4,
                cluster_id: observer.image().cluster_id.clone().unwrap_or_default(),
                from_index: observer.next_index(),
                max_bytes,
                max_wait_ms: 0,
            }),
        );
        let ObserverResponse::Fetch(response) = response else {
            panic!("wrong answer")
        };
        assert_eq!(response.error_code, 0);
        match response.body {
            FetchMetadataBody::Entries(entries) if entries.is_empty() => return installed,
            FetchMetadataBody::Entries(entries) => {
                observer.append_committed(&entries).unwrap().unwrap();
            }
            FetchMetadataBody::SnapshotRequired {
                index,
                term,
                size_bytes,
            } => {
                let mut download = SnapshotDownload::new(index, term, size_bytes).unwrap();
                while !download.is_complete() {
                    let ObserverResponse::Snapshot(part) = exchange(
                        node,
                        ObserverRequest::Snapshot(FetchSnapshotRequest {
                            correlation_id: 2,
                            node_id: 4,
                            cluster_id: String::new(),
                            snapshot_index: index,
                            snapshot_term: term,
                            position: download.position(),
                            max_bytes: chunk_bytes,
                        }),
                    ) else {
                        panic!("wrong answer")
                    };
                    assert_eq!(part.error_code, 0);
                    assert!(part.chunk.len() <= chunk_bytes as usize);
                    download
                        .accept(
                            part.snapshot_index,
                            part.snapshot_term,
                            part.size_bytes,
                            part.position,
                            &part.chunk,
                        )
                        .unwrap();
                }
                let data = download.into_data().unwrap();
                observer.install_snapshot(index, term, &data).unwrap();
                installed += 1;
            }
        }
    }
    panic!("no catch-up within 1000 fetches");
}

fn assert_same_image(observer: &MetadataObserver, node: &Voter) {
    let (ours, theirs) = (observer.image(), node.image());
    assert_eq!(
        image_to_records(ours),
        image_to_records(theirs),
        "observer and voter images differ"
    );
    assert_eq!(ours.offset, node.quorum().applied_index() as i64);
    assert!(ours.cluster_id.is_some());
    assert_eq!(ours.topics.len(), theirs.topics.len());
}

#[test]
fn an_observer_catches_up_from_the_log_and_restarts_from_its_own_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = voter(u64::MAX);
    create_topics(&mut node, 0..5);
    let mut observer = MetadataObserver::open(dir.path(), u64::MAX).unwrap();
    assert_eq!(observer.next_index(), 1);
    // Small fetches: many round trips, each continuing the last.
    assert_eq!(catch_up(&mut observer, &node, 64, 1024), 0);
    assert_same_image(&observer, &node);
    assert!(observer.image().topic_by_name("topic-4").is_some());
    let next = observer.next_index();
    drop(observer);

    // A restart replays the local log (no quorum-state: everything held is committed).
    assert!(!dir
        .path()
        .join(fjord_storage::QUORUM_STATE_FILE_NAME)
        .exists());
    let mut observer = MetadataObserver::open(dir.path(), u64::MAX).unwrap();
    assert_eq!(observer.next_index(), next);
    assert_same_image(&observer, &node);
    // Metadata written while it was down arrives from where it stopped.
    create_topics(&mut node, 5..8);
    assert_eq!(catch_up(&mut observer, &node, 1 << 20, 1024), 0);
    assert_same_image(&observer, &node);
    // Fetching again what it holds changes nothing.
    let held = observer.append_committed(&[]).unwrap();
    assert!(held.is_none());
}

#[test]
fn an_observer_behind_the_voters_compaction_starts_from_their_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    // The voter snapshots (and trims its log) every few hundred bytes.
    let mut node = voter(512);
    create_topics(&mut node, 0..10);
    assert!(
        node.quorum().latest_snapshot().is_some(),
        "the voter compacted"
    );
    // The observer snapshots its own log too.
    let mut observer = MetadataObserver::open(dir.path(), 256).unwrap();
    assert_eq!(catch_up(&mut observer, &node, 1 << 20, 100), 1);
    assert_same_image(&observer, &node);

    create_topics(&mut node, 10..14);
    catch_up(&mut observer, &node, 1 << 20, 100);
    assert_same_image(&observer, &node);
    drop(observer);
    let checkpoints = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".checkpoint")
        })
        .count();
    assert_eq!(checkpoints, 1, "the observer keeps one snapshot of its own");
    let observer = MetadataObserver::open(dir.path(), 256).unwrap();
    assert_same_image(&observer, &node);
}

#[test]
fn entries_that_do_not_replay_or_do_not_continue_are_never_kept() {
    let dir = tempfile::tempdir().unwrap();
    let node = voter(u64::MAX);
    let mut observer = MetadataObserver::open(dir.path(), u64::MAX).unwrap();
    catch_up(&mut observer, &node, 1 << 20, 1024);
    let (last, term) = observer.last();
    let gap = MetadataLogEntry {
        index: last + 2,
        term,
        payload: Bytes::new(),
    };
    assert!(matches!(
        observer.append_committed(&[gap]),
        Err(ObserverError::NotContiguous { .. })
    ));
    let garbage = MetadataLogEntry {
        index: last + 1,
        term,
        payload: Bytes::from_static(b"\xff\xff not a batch"),
    };
    assert!(matches!(
        observer.append_committed(&[garbage]),
        Err(ObserverError::Decode { .. })
    ));
    assert_eq!(observer.last(), (last, term));
    drop(observer);
    let observer = MetadataObserver::open(dir.path(), u64::MAX).unwrap();
    assert_eq!(observer.last(), (last, term));
    assert_same_image(&observer, &node);
}

#[test]
fn a_voters_log_is_not_taken_for_an_observers() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, _) = MetadataLog::open(dir.path()).unwrap();
        log.set_hard_state(&fjord_storage::MetadataHardState {
            term: 1,
            vote: 1,
            commit: 0,
        })
        .unwrap();
    }
    assert!(matches!(
        MetadataObserver::open(dir.path(), u64::MAX),
        Err(ObserverError::VoterLog(_))
    ));
}

#[test]
fn a_snapshot_download_takes_only_the_chunk_it_waits_for() {
    assert!(SnapshotDownload::new(5, 1, u64::MAX).is_err());
    let mut download = SnapshotDownload::new(5, 1, 6).unwrap();
    assert!(download.accept(5, 2, 6, 0, b"abc").is_err(), "another term");
    assert!(download.accept(5, 1, 7, 0, b"abc").is_err(), "another size");
    assert!(
        download.accept(5, 1, 6, 1, b"abc").is_err(),
        "another position"
    );
    assert!(download.accept(5, 1, 6, 0, b"").is_err(), "no progress");
    download.accept(5, 1, 6, 0, b"abc").unwrap();
    assert!(
        download.accept(5, 1, 6, 3, b"defg").is_err(),
        "past the end"
    );
    assert!(!download.is_complete());
    download.accept(5, 1, 6, 3, b"def").unwrap();
    assert_eq!(download.into_data(), Some(Bytes::from_static(b"abcdef")));
}

/// The runtime publishes each new image to the publisher and subscribers, in order, and a
/// failure poisons it.
#[test]
fn the_runtime_publishes_in_order_and_poisons_on_failure() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = voter(u64::MAX);
    create_topics(&mut node, 0..2);
    let runtime = ObserverRuntime::new(MetadataObserver::open(dir.path(), u64::MAX).unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    {
        let seen = seen.clone();
        runtime.set_publisher(Box::new(move |_, image| seen.lock().push(image.offset)));
    }
    let subscriber = runtime.subscribe();
    let ObserverResponse::Fetch(response) = exchange(
        &node,
        ObserverRequest::Fetch(FetchMetadataRequest {
            correlation_id: 1,
            node_id: 4,
            cluster_id: String::new(),
            from_index: runtime.next_index(),
            max_bytes: 1 << 20,
            max_wait_ms: 0,
        }),
    ) else {
        panic!("wrong answer")
    };
    let FetchMetadataBody::Entries(entries) = response.body else {
        panic!("entries expected")
    };
    let (first, rest) = entries.split_at(2);
    runtime.append_committed(first).unwrap();
    runtime.append_committed(rest).unwrap();
    assert_eq!(
        *seen.lock(),
        vec![first[1].index as i64, rest.last().unwrap().index as i64]
    );
    assert_eq!(
        subscriber.borrow().offset,
        rest.last().unwrap().index as i64
    );
    assert_eq!(runtime.image().topics.len(), node.image().topics.len());
    let bad = MetadataLogEntry {
        index: runtime.next_index(),
        term: 1,
        payload: Bytes::from_static(b"junk"),
    };
    assert!(runtime.append_committed(&[bad]).is_err());
    assert!(runtime.failure().is_some());
    assert!(runtime.append_committed(&[]).is_err(), "poisoned");
}
