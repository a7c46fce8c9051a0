use super::*;
use crate::{FileLogStore, MemLogStore};
use raft::eraftpb::Message;

fn single(store: FileLogStore) -> MetadataQuorum<FileLogStore> {
    MetadataQuorum::new(QuorumConfig::new(1, vec![1]), store).unwrap()
}

/// Drives a one-voter quorum until `ready` has nothing more to say.
fn settle<S: RaftLogStore>(quorum: &mut MetadataQuorum<S>) -> QuorumReady {
    let mut all = QuorumReady::default();
    for _ in 0..10 {
        let ready = quorum.ready().unwrap();
        assert!(ready.messages.is_empty(), "a single voter sends nothing");
        if ready.is_empty() {
            break;
        }
        all.committed.extend(ready.committed);
        all.role_changed = ready.role_changed.or(all.role_changed);
        all.leader_caught_up = ready.leader_caught_up.or(all.leader_caught_up);
    }
    all
}

#[test]
fn single_voter_commits_restarts_and_compacts_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mut quorum = single(FileLogStore::open(dir.path()).unwrap());
    let ready = settle(&mut quorum);
    assert_eq!(
        ready.role_changed,
        Some(RoleChange {
            leader_id: Some(1),
            term: 1,
            is_leader: true
        })
    );
    assert_eq!(ready.leader_caught_up, Some(1));
    assert!(quorum.is_leader());
    let a = quorum.propose(Bytes::from_static(b"a")).unwrap();
    let b = quorum.propose(Bytes::from_static(b"b")).unwrap();
    assert_eq!(b, a + 1);
    let ready = settle(&mut quorum);
    let payloads: Vec<_> = ready.committed.iter().map(|e| e.payload.clone()).collect();
    assert_eq!(
        payloads,
        vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]
    );
    assert_eq!(ready.committed[0].index, a);
    assert_eq!(ready.committed[0].term, 1);
    let description = quorum.describe();
    assert_eq!(description.commit_index, b);
    assert_eq!(description.applied_index, b);
    assert_eq!(description.voters[0].match_index, Some(b));
    assert_eq!(description.voters[0].last_contact_tick, Some(0));
    drop(quorum);

    // Restart: nothing is replayed through ready; the caller rebuilds from the store.
    let mut quorum = single(FileLogStore::open(dir.path()).unwrap());
    let (snapshot, entries) = quorum.recovered_committed();
    assert!(snapshot.is_none());
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1].payload, Bytes::from_static(b"b"));
    let ready = settle(&mut quorum);
    assert!(ready.committed.is_empty());
    assert_eq!(ready.role_changed.map(|r| r.term), Some(2));
    let c = quorum.propose(Bytes::from_static(b"c")).unwrap();
    let ready = settle(&mut quorum);
    assert_eq!(ready.committed.len(), 1);
    assert_eq!(ready.committed[0].index, c);
    assert_eq!(ready.committed[0].term, 2);

    // Compact at `b` with the application's state; `c` stays in the log.
    assert!(quorum.compact(c + 5, Bytes::from_static(b"x")).is_err());
    quorum.compact(b, Bytes::from_static(b"state:a,b")).unwrap();
    drop(quorum);
    let quorum = single(FileLogStore::open(dir.path()).unwrap());
    let (snapshot, entries) = quorum.recovered_committed();
    let snapshot = snapshot.unwrap();
    assert_eq!((snapshot.index, snapshot.term), (b, 1));
    assert_eq!(snapshot.data, Bytes::from_static(b"state:a,b"));
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].payload, Bytes::from_static(b"c"));
    assert_eq!(quorum.applied_index(), c, "up to the stored commit");
}

#[test]
fn config_is_validated() {
    let bad = [
        QuorumConfig::new(0, vec![0]),
        QuorumConfig::new(4, vec![1, 2, 3]),
        QuorumConfig::new(1, vec![1, 1, 2]),
        QuorumConfig {
            heartbeat_tick: 10,
            ..QuorumConfig::new(1, vec![1])
        },
        QuorumConfig {
            max_inflight_msgs: 0,
            ..QuorumConfig::new(1, vec![1])
        },
    ];
    for config in bad {
        assert!(
            matches!(
                MetadataQuorum::new(config.clone(), MemLogStore::new()),
                Err(QuorumError::Config(_))
            ),
            "{config:?}"
        );
    }
}

#[test]
fn pinned_election_timeouts_differ_per_voter_and_follow_the_seed() {
    for seed in 0..50 {
        let ticks: Vec<usize> = (1..=5)
            .map(|id| {
                QuorumConfig {
                    seed,
                    ..QuorumConfig::new(id, vec![1, 2, 3, 4, 5])
                }
                .pinned_election_tick()
            })
            .collect();
        let mut distinct = ticks.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 5, "seed {seed}: {ticks:?}");
        assert!(ticks.iter().all(|&t| (10..20).contains(&t)));
    }
}

#[test]
fn voters_must_match_the_snapshot() {
    let store = MemLogStore::new();
    let mut quorum = MetadataQuorum::new(QuorumConfig::new(1, vec![1]), store.clone()).unwrap();
    settle(&mut quorum);
    quorum.propose(Bytes::from_static(b"a")).unwrap();
    settle(&mut quorum);
    quorum
        .compact(quorum.applied_index(), Bytes::new())
        .unwrap();
    drop(quorum);
    assert!(matches!(
        MetadataQuorum::new(QuorumConfig::new(1, vec![1, 2]), store.clone()),
        Err(QuorumError::Config(_))
    ));
    assert!(MetadataQuorum::new(QuorumConfig::new(1, vec![1]), store).is_ok());
}

#[test]
fn proposals_are_refused_off_the_leader_and_out_of_bounds() {
    let mut follower =
        MetadataQuorum::new(QuorumConfig::new(1, vec![1, 2, 3]), MemLogStore::new()).unwrap();
    assert_eq!(
        follower.propose(Bytes::from_static(b"a")),
        Err(ProposeError::NotLeader { leader_hint: None })
    );
    assert_eq!(follower.propose(Bytes::new()), Err(ProposeError::Empty));
    let big = Bytes::from(vec![0; METADATA_ENTRY_PAYLOAD_BYTES_MAX + 1]);
    assert!(matches!(
        follower.propose(big),
        Err(ProposeError::TooLarge { .. })
    ));
}

#[test]
fn step_refuses_foreign_and_local_messages() {
    let mut quorum =
        MetadataQuorum::new(QuorumConfig::new(1, vec![1, 2, 3]), MemLogStore::new()).unwrap();
    let message = |msg_type: MessageType, from: u64, to: u64| {
        let mut m = Message::default();
        m.set_msg_type(msg_type);
        m.from = from;
        m.to = to;
        m.term = 1;
        RaftMessage(m)
    };
    for (m, why) in [
        (message(MessageType::MsgHeartbeat, 2, 3), "not for us"),
        (message(MessageType::MsgHeartbeat, 9, 1), "not a voter"),
        (message(MessageType::MsgHeartbeat, 1, 1), "from ourselves"),
        (message(MessageType::MsgHup, 2, 1), "local type"),
        (message(MessageType::MsgPropose, 2, 1), "forwarded proposal"),
        (message(MessageType::MsgReadIndex, 2, 1), "read index"),
    ] {
        assert!(
            matches!(quorum.step(m), Err(QuorumError::InvalidMessage(_))),
            "{why}"
        );
    }
    // A heartbeat from the leader of term 1 is accepted and names the leader.
    quorum
        .step(message(MessageType::MsgHeartbeat, 2, 1))
        .unwrap();
    let ready = quorum.ready().unwrap();
    assert_eq!(quorum.leader_id(), Some(2));
    assert_eq!(ready.messages.len(), 1);
    assert_eq!(ready.messages[0].0, 2);
    assert_eq!(
        ready.messages[0].1.msg_type(),
        MessageType::MsgHeartbeatResponse
    );
    assert_eq!(
        ready.role_changed,
        Some(RoleChange {
            leader_id: Some(2),
            term: 1,
            is_leader: false
        })
    );
}

#[test]
fn a_failed_sync_poisons_until_restart() {
    let store = MemLogStore::new();
    let mut quorum = MetadataQuorum::new(QuorumConfig::new(1, vec![1]), store.clone()).unwrap();
    settle(&mut quorum);
    store.fail_sync_after(0);
    quorum.propose(Bytes::from_static(b"a")).unwrap();
    assert!(matches!(quorum.ready(), Err(QuorumError::Storage(_))));
    assert!(matches!(quorum.ready(), Err(QuorumError::Poisoned(_))));
    assert!(matches!(
        quorum.propose(Bytes::from_static(b"b")),
        Err(ProposeError::NotLeader { leader_hint: None })
    ));
    drop(quorum);
    store.crash();
    let mut quorum = MetadataQuorum::new(QuorumConfig::new(1, vec![1]), store).unwrap();
    assert!(
        quorum.recovered_committed().1.is_empty(),
        "a was never synced"
    );
    settle(&mut quorum);
    assert!(quorum.is_leader());
}

/// Three voters on real files, a perfect network driven by hand: election, replication, a
/// voter restarted from disk after the leader compacted past it catches up by snapshot.
#[test]
fn three_voters_on_files_catch_up_by_snapshot() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let voters = vec![1, 2, 3];
    let open = |id: u64| {
        let store = FileLogStore::open(dirs[(id - 1) as usize].path()).unwrap();
        let config = QuorumConfig {
            seed: 7,
            ..QuorumConfig::new(id, voters.clone())
        };
        MetadataQuorum::new(config, store).unwrap()
    };
    let mut nodes: Vec<Option<MetadataQuorum<FileLogStore>>> =
        (1..=3).map(|id| Some(open(id))).collect();
    // Per node: the payloads applied, as a state machine would hold them.
    let mut states: Vec<Vec<Bytes>> = vec![Vec::new(); 3];

    fn run(
        nodes: &mut [Option<MetadataQuorum<FileLogStore>>],
        states: &mut [Vec<Bytes>],
        ticks: usize,
    ) {
        let mut queue: Vec<(u64, RaftMessage)> = Vec::new();
        for _ in 0..ticks {
            for node in nodes.iter_mut().flatten() {
                node.tick();
            }
            for _ in 0..20 {
                for (i, node) in nodes.iter_mut().enumerate() {
                    let Some(node) = node else { continue };
                    let ready = node.ready().unwrap();
                    if let Some(snapshot) = ready.snapshot_installed {
                        states[i] = snapshot
                            .data
                            .split(|&b| b == b',')
                            .filter(|p| !p.is_empty())
                            .map(Bytes::copy_from_slice)
                            .collect();
                    }
                    states[i].extend(ready.committed.into_iter().map(|e| e.payload));
                    queue.extend(ready.messages);
                }
                if queue.is_empty() {
                    break;
                }
                for (to, message) in std::mem::take(&mut queue) {
                    let from = message.from();
                    let is_snapshot = message.is_snapshot();
                    let delivered = match &mut nodes[(to - 1) as usize] {
                        Some(node) => {
                            let wire = RaftMessage::decode(&message.encode()).unwrap();
                            node.step(wire).unwrap();
                            true
                        }
                        None => false,
                    };
                    if let Some(sender) = &mut nodes[(from - 1) as usize] {
                        if !delivered {
                            sender.report_unreachable(to);
                        }
                        if is_snapshot {
                            sender.report_snapshot(to, delivered);
                        }
                    }
                }
            }
        }
    }

    run(&mut nodes, &mut states, 30);
    let leader = nodes
        .iter()
        .flatten()
        .find(|n| n.is_leader())
        .map(|n| n.node_id())
        .unwrap();
    let follower = if leader == 3 { 2 } else { 3 };
    let propose = |nodes: &mut [Option<MetadataQuorum<FileLogStore>>], text: &str| {
        nodes[(leader - 1) as usize]
            .as_mut()
            .unwrap()
            .propose(Bytes::copy_from_slice(text.as_bytes()))
            .unwrap()
    };
    for i in 0..3 {
        propose(&mut nodes, &format!("a{i}"));
    }
    run(&mut nodes, &mut states, 3);
    for state in &states {
        assert_eq!(state.len(), 3);
    }
    assert_eq!(
        nodes[(leader - 1) as usize]
            .as_ref()
            .unwrap()
            .describe()
            .voters
            .iter()
            .filter(|v| v.match_index.is_some() && v.last_contact_tick.is_some())
            .count(),
        3
    );

    // The follower stops; the others go on and compact past it.
    nodes[(follower - 1) as usize] = None;
    for i in 0..5 {
        propose(&mut nodes, &format!("b{i}"));
    }
    run(&mut nodes, &mut states, 3);
    let leader_node = nodes[(leader - 1) as usize].as_mut().unwrap();
    let applied = leader_node.applied_index();
    let state = states[(leader - 1) as usize].clone();
    assert_eq!(state.len(), 8);
    let data = state.join(&b","[..]);
    leader_node.compact(applied, Bytes::from(data)).unwrap();
    propose(&mut nodes, "c0");

    // Restart from disk: rebuild from the store, then catch up by snapshot.
    let restarted = open(follower);
    let (snapshot, entries) = restarted.recovered_committed();
    assert!(snapshot.is_none());
    states[(follower - 1) as usize] = entries.into_iter().map(|e| e.payload).collect();
    assert_eq!(states[(follower - 1) as usize].len(), 3);
    nodes[(follower - 1) as usize] = Some(restarted);
    run(&mut nodes, &mut states, 30);
    let expected: Vec<Bytes> = ["a0", "a1", "a2", "b0", "b1", "b2", "b3", "b4", "c0"]
        .iter()
        .map(|s| Bytes::copy_from_slice(s.as_bytes()))
        .collect();
    for state in &states {
        assert_eq!(state, &expected);
    }
    // The follower's disk now starts with the leader's snapshot.
    drop(nodes);
    let store = FileLogStore::open(dirs[(follower - 1) as usize].path()).unwrap();
    assert_eq!(store.snapshot().map(|s| s.index), Some(applied));
}

/// What observers fetch (`read_committed`): only entries the quorum committed, never the
/// leader's uncommitted tail; bounded by bytes (at least one entry); `SnapshotRequired` below
/// the compacted start.
#[test]
fn read_committed_serves_committed_entries_only() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let open = |id: u64| {
        let store = FileLogStore::open(dirs[(id - 1) as usize].path()).unwrap();
        let config = QuorumConfig {
            seed: 11,
            ..QuorumConfig::new(id, vec![1, 2, 3])
        };
        MetadataQuorum::new(config, store).unwrap()
    };
    /// Ticks and delivers every message between the running nodes.
    fn run(nodes: &mut [Option<MetadataQuorum<FileLogStore>>], ticks: usize) {
        for _ in 0..ticks {
            for node in nodes.iter_mut().flatten() {
                node.tick();
            }
            for _ in 0..20 {
                let mut queue = Vec::new();
                for node in nodes.iter_mut().flatten() {
                    queue.extend(node.ready().unwrap().messages);
                }
                if queue.is_empty() {
                    break;
                }
                for (to, message) in queue {
                    let from = message.from();
                    let is_snapshot = message.is_snapshot();
                    let delivered = match &mut nodes[(to - 1) as usize] {
                        Some(node) => node.step(message).is_ok(),
                        None => false,
                    };
                    if let Some(sender) = &mut nodes[(from - 1) as usize] {
                        if !delivered {
                            sender.report_unreachable(to);
                        }
                        if is_snapshot {
                            sender.report_snapshot(to, delivered);
                        }
                    }
                }
            }
        }
    }
    let mut nodes: Vec<Option<MetadataQuorum<FileLogStore>>> =
        (1..=3).map(|id| Some(open(id))).collect();
    run(&mut nodes, 30);
    let leader = nodes
        .iter()
        .flatten()
        .find(|n| n.is_leader())
        .unwrap()
        .node_id();
    let leader_at = (leader - 1) as usize;
    let first = nodes[leader_at]
        .as_mut()
        .unwrap()
        .propose(Bytes::from_static(b"committed"))
        .unwrap();
    run(&mut nodes, 2);
    let read = nodes[leader_at]
        .as_ref()
        .unwrap()
        .read_committed(1, u64::MAX);
    let CommittedRead::Entries(entries) = read else {
        panic!("{read:?}")
    };
    assert_eq!(entries.first().map(|e| e.index), Some(1));
    assert_eq!(entries.last().map(|e| e.index), Some(first));
    assert!(entries.windows(2).all(|w| w[1].index == w[0].index + 1));
    assert!(
        entries.iter().any(|e| e.payload.is_empty()),
        "the leaders' no-op entries are served too"
    );

    // Both followers gone: the leader appends (and persists) but cannot commit.
    for (i, node) in nodes.iter_mut().enumerate() {
        if i != leader_at {
            *node = None;
        }
    }
    let pending = nodes[leader_at]
        .as_mut()
        .unwrap()
        .propose(Bytes::from_static(b"uncommitted"))
        .unwrap();
    run(&mut nodes, 2);
    let quorum = nodes[leader_at].as_ref().unwrap();
    assert_eq!(
        quorum.read_committed(pending, u64::MAX),
        CommittedRead::Entries(Vec::new())
    );
    let CommittedRead::Entries(entries) = quorum.read_committed(1, u64::MAX) else {
        panic!("entries expected")
    };
    assert!(entries.iter().all(|e| e.index < pending), "{entries:?}");
    // A byte limit below one payload still returns one entry; then stops at the limit.
    let CommittedRead::Entries(one) = quorum.read_committed(first, 1) else {
        panic!("entries expected")
    };
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].payload, Bytes::from_static(b"committed"));

    // Compacted: below the log's start only the snapshot helps.
    let quorum = nodes[leader_at].as_mut().unwrap();
    quorum.compact(first, Bytes::from_static(b"state")).unwrap();
    let snapshot_term = quorum.latest_snapshot().unwrap().term;
    assert_eq!(
        quorum.read_committed(1, u64::MAX),
        CommittedRead::SnapshotRequired {
            index: first,
            term: snapshot_term
        }
    );
    assert_eq!(
        quorum.read_committed(first + 1, u64::MAX),
        CommittedRead::Entries(Vec::new())
    );
}
