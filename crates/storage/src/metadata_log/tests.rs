use super::*;
use proptest::prelude::*;

fn entry(index: u64, term: u64, payload: &[u8]) -> MetadataLogEntry {
    MetadataLogEntry {
        index,
        term,
        payload: Bytes::copy_from_slice(payload),
    }
}

fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<MetadataLogEntry> {
    range
        .map(|i| entry(i, term, format!("entry-{i}-{term}").as_bytes()))
        .collect()
}

fn open(dir: &Path) -> (MetadataLog, RecoveredMetadataLog) {
    MetadataLog::open(dir).unwrap()
}

#[test]
fn empty_log_opens_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(METADATA_LOG_DIR_NAME);
    let (log, recovered) = open(&path);
    assert_eq!(recovered, RecoveredMetadataLog::default());
    assert_eq!((log.first_index(), log.last_index()), (1, 0));
    assert_eq!(log.term(0), None);
    assert!(path.join(METADATA_ENTRIES_FILE_NAME).exists());
}

#[test]
fn append_sync_reopen_and_hard_state() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path());
    log.append(&entries(1..=3, 1)).unwrap();
    log.append(&entries(4..=5, 2)).unwrap();
    log.sync().unwrap();
    let state = MetadataHardState {
        term: 2,
        vote: 3,
        commit: 4,
    };
    log.set_hard_state(&state).unwrap();
    assert_eq!(log.term(4), Some(2));
    assert_eq!(log.last_index(), 5);
    drop(log);
    let (log, recovered) = open(dir.path());
    let mut expected = entries(1..=3, 1);
    expected.extend(entries(4..=5, 2));
    assert_eq!(recovered.entries, expected);
    assert_eq!(recovered.hard_state, state);
    assert_eq!(recovered.snapshot, None);
    assert_eq!((log.first_index(), log.last_index()), (1, 5));
}

#[test]
fn append_overwrites_a_suffix_and_refuses_gaps_and_lower_terms() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path());
    log.append(&entries(1..=5, 1)).unwrap();
    log.append(&entries(3..=4, 2)).unwrap();
    log.sync().unwrap();
    assert_eq!(log.last_index(), 4);
    assert!(log.append(&entries(6..=6, 2)).is_err(), "gap");
    assert!(
        log.append(&entries(5..=5, 1)).is_err(),
        "term below the previous entry's"
    );
    let mut bad = entries(5..=6, 2);
    bad[1].index = 7;
    assert!(log.append(&bad).is_err(), "non-consecutive batch");
    assert!(log
        .append(&[entry(5, 2, &vec![0; METADATA_ENTRY_PAYLOAD_BYTES_MAX + 1])])
        .is_err());
    assert_eq!(log.last_index(), 4);
    drop(log);
    let (_, recovered) = open(dir.path());
    let mut expected = entries(1..=2, 1);
    expected.extend(entries(3..=4, 2));
    assert_eq!(recovered.entries, expected);
}

#[test]
fn torn_and_corrupt_tails_are_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path());
    log.append(&entries(1..=3, 1)).unwrap();
    log.sync().unwrap();
    let synced = log.end_position;
    log.append(&entries(4..=6, 1)).unwrap();
    let full = log.end_position;
    drop(log);
    let path = dir.path().join(METADATA_ENTRIES_FILE_NAME);
    // A torn record: cut in the middle of entry 5.
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(synced + (full - synced) / 2).unwrap();
    let (mut log, recovered) = open(dir.path());
    assert_eq!(recovered.entries, entries(1..=4, 1));
    assert_eq!(log.last_index(), 4);
    // The log continues after the cut.
    log.append(&entries(5..=5, 2)).unwrap();
    log.sync().unwrap();
    let end = log.end_position;
    drop(log);
    // A flipped payload byte in the last record: CRC mismatch, cut.
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&[0xff], end - 1).unwrap();
    let (_, recovered) = open(dir.path());
    assert_eq!(recovered.entries, entries(1..=4, 1));
    // Zeroes (a hole after a power loss): impossible length, cut.
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    let len = file.metadata().unwrap().len();
    file.set_len(len + 100).unwrap();
    let (_, recovered) = open(dir.path());
    assert_eq!(recovered.entries, entries(1..=4, 1));
}

#[test]
fn gaps_and_falling_terms_with_valid_crcs_are_corrupt() {
    for (name, bad) in [
        ("gap", vec![entry(1, 1, b"a"), entry(3, 1, b"c")]),
        ("repeat", vec![entry(1, 1, b"a"), entry(1, 1, b"a")]),
        ("term", vec![entry(1, 2, b"a"), entry(2, 1, b"b")]),
        ("start", vec![entry(2, 1, b"b")]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = Vec::new();
        for e in &bad {
            encode_record(e, &mut bytes);
        }
        std::fs::write(dir.path().join(METADATA_ENTRIES_FILE_NAME), bytes).unwrap();
        assert!(
            matches!(
                MetadataLog::open(dir.path()),
                Err(StorageError::CorruptFile { .. })
            ),
            "{name}"
        );
    }
}

#[test]
fn snapshot_compacts_keeps_matching_suffix_and_deletes_older_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path());
    log.append(&entries(1..=10, 1)).unwrap();
    log.sync().unwrap();
    log.save_snapshot(4, 1, b"voters", b"state at 4").unwrap();
    assert_eq!((log.first_index(), log.last_index()), (5, 10));
    assert_eq!(log.term(4), Some(1));
    assert_eq!(log.term(3), None);
    log.save_snapshot(7, 1, b"voters", b"state at 7").unwrap();
    assert!(log.save_snapshot(6, 1, b"v", b"older").is_err());
    assert!(!dir.path().join(checkpoint_file_name(4, 1)).exists());
    assert!(dir.path().join(checkpoint_file_name(7, 1)).exists());
    log.append(&entries(11..=11, 3)).unwrap();
    log.sync().unwrap();
    let latest = log.latest_snapshot().unwrap().unwrap();
    assert_eq!(&latest.data[..], b"state at 7");
    drop(log);
    let (log, recovered) = open(dir.path());
    let snapshot = recovered.snapshot.unwrap();
    assert_eq!((snapshot.index, snapshot.term), (7, 1));
    assert_eq!(&snapshot.voters[..], b"voters");
    assert_eq!(&snapshot.data[..], b"state at 7");
    let mut expected = entries(8..=10, 1);
    expected.extend(entries(11..=11, 3));
    assert_eq!(recovered.entries, expected);
    assert_eq!((log.first_index(), log.last_index()), (8, 11));
    assert!(matches!(
        MetadataLog::open(dir.path()).map(|(mut l, _)| l.append(&entries(7..=7, 3))),
        Ok(Err(_))
    ));
}

#[test]
fn installed_snapshot_replaces_a_conflicting_log() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path());
    log.append(&entries(1..=5, 1)).unwrap();
    log.sync().unwrap();
    // The leader's snapshot at 4 has term 2: our entries 4..5 conflict.
    log.save_snapshot(4, 2, b"v", b"leader state").unwrap();
    assert_eq!((log.first_index(), log.last_index()), (5, 4));
    // Beyond our log end.
    log.save_snapshot(20, 3, b"v", b"later").unwrap();
    assert_eq!((log.first_index(), log.last_index()), (21, 20));
    log.append(&entries(21..=22, 3)).unwrap();
    log.sync().unwrap();
    drop(log);
    let (_, recovered) = open(dir.path());
    assert_eq!(recovered.snapshot.unwrap().index, 20);
    assert_eq!(recovered.entries, entries(21..=22, 3));
}

#[test]
fn crash_between_checkpoint_and_compaction_is_finished_at_open() {
    // Matching term: the entries after the snapshot stay.
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path());
    log.append(&entries(1..=6, 1)).unwrap();
    log.sync().unwrap();
    drop(log);
    std::fs::write(
        dir.path().join(checkpoint_file_name(3, 1)),
        encode_checkpoint(3, 1, b"v", b"s"),
    )
    .unwrap();
    let (log, recovered) = open(dir.path());
    assert_eq!(recovered.entries, entries(4..=6, 1));
    assert_eq!(log.first_index(), 4);
    drop(log);
    let (_, recovered) = open(dir.path());
    assert_eq!(recovered.entries, entries(4..=6, 1));

    // Conflicting term (an install): everything goes.
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path());
    log.append(&entries(1..=6, 1)).unwrap();
    log.sync().unwrap();
    drop(log);
    std::fs::write(
        dir.path().join(checkpoint_file_name(3, 2)),
        encode_checkpoint(3, 2, b"v", b"s"),
    )
    .unwrap();
    let (log, recovered) = open(dir.path());
    assert!(recovered.entries.is_empty());
    assert_eq!((log.first_index(), log.last_index()), (4, 3));
}

#[test]
fn corrupt_checkpoint_and_quorum_state_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = encode_checkpoint(3, 1, b"v", b"state");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(dir.path().join(checkpoint_file_name(3, 1)), &bytes).unwrap();
    assert!(matches!(
        MetadataLog::open(dir.path()),
        Err(StorageError::CorruptFile { .. })
    ));
    std::fs::write(
        dir.path().join(checkpoint_file_name(3, 1)),
        encode_checkpoint(4, 1, b"v", b"state"),
    )
    .unwrap();
    assert!(
        MetadataLog::open(dir.path()).is_err(),
        "name and contents disagree"
    );
    std::fs::remove_file(dir.path().join(checkpoint_file_name(3, 1))).unwrap();
    std::fs::write(dir.path().join(QUORUM_STATE_FILE_NAME), b"{not json").unwrap();
    assert!(MetadataLog::open(dir.path()).is_err());
    std::fs::write(
        dir.path().join(QUORUM_STATE_FILE_NAME),
        br#"{"version":9,"term":1,"vote":0,"commit":0}"#,
    )
    .unwrap();
    assert!(MetadataLog::open(dir.path()).is_err());
}

#[test]
fn snapshot_limits() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path());
    assert!(log.save_snapshot(0, 1, b"v", b"s").is_err());
    assert!(log
        .save_snapshot(1, 1, &vec![0; METADATA_SNAPSHOT_VOTERS_BYTES_MAX + 1], b"s")
        .is_err());
    assert_eq!(log.latest_snapshot().unwrap(), None);
}

#[derive(Debug, Clone)]
enum Op {
    Append {
        back: u8,
        count: u8,
        term_bump: bool,
        payload_bytes: u8,
    },
    Sync,
    Snapshot {
        back: u8,
        install: bool,
    },
    HardState,
    /// The process dies: everything written is still in the page cache.
    CrashProcess,
    /// Power loss: the file is cut somewhere after its last synced byte.
    CrashPower {
        cut: u16,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..4, 1u8..4, any::<bool>(), 0u8..40).prop_map(|(back, count, term_bump, payload_bytes)| Op::Append {
            back,
            count,
            term_bump,
            payload_bytes
        }),
        3 => Just(Op::Sync),
        1 => (0u8..4, any::<bool>()).prop_map(|(back, install)| Op::Snapshot { back, install }),
        1 => Just(Op::HardState),
        1 => Just(Op::CrashProcess),
        2 => any::<u16>().prop_map(|cut| Op::CrashPower { cut }),
    ]
}

fn record_bytes(entries: &[MetadataLogEntry]) -> u64 {
    entries
        .iter()
        .map(|e| (RECORD_HEADER_BYTES + RECORD_FIXED_BYTES + e.payload.len()) as u64)
        .sum()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Random appends (with suffix overwrites), syncs, snapshots and crashes: after every
    /// reopen every synced entry is back unchanged and nothing unwritten is invented.
    #[test]
    fn crashes_never_lose_synced_entries_or_invent_any(ops in prop::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path());
        // Entries after the snapshot, as written; the durable prefix of them.
        let mut current: Vec<MetadataLogEntry> = Vec::new();
        let mut durable_len = 0usize;
        let mut snapshot: Option<(u64, u64, Vec<u8>)> = None;
        let mut hard_state = MetadataHardState::default();
        let mut term = 1u64;
        let mut counter = 0u64;
        for op in ops {
            let snapshot_index = snapshot.as_ref().map_or(0, |s| s.0);
            let last = snapshot_index + current.len() as u64;
            match op {
                Op::Append { back, count, term_bump, payload_bytes } => {
                    if term_bump {
                        term += 1;
                    }
                    let start = (last + 1).saturating_sub(u64::from(back)).max(snapshot_index + 1);
                    let new: Vec<_> = (start..start + u64::from(count)).map(|index| {
                        counter += 1;
                        let payload: Vec<u8> = (0..payload_bytes).map(|i| (counter as u8).wrapping_add(i)).collect();
                        entry(index, term, &payload)
                    }).collect();
                    log.append(&new).unwrap();
                    let keep = (start - snapshot_index - 1) as usize;
                    current.truncate(keep);
                    durable_len = durable_len.min(keep);
                    current.extend(new);
                }
                Op::Sync => {
                    log.sync().unwrap();
                    durable_len = current.len();
                }
                Op::Snapshot { back, install } => {
                    let (index, snap_term) = if install || current.is_empty() {
                        term += 1;
                        (last + 1 + u64::from(back), term)
                    } else {
                        let at = current.len().saturating_sub(1 + back as usize);
                        (current[at].index, current[at].term)
                    };
                    counter += 1;
                    let data = counter.to_be_bytes().to_vec();
                    log.save_snapshot(index, snap_term, b"voters", &data).unwrap();
                    current.retain(|e| e.index > index && !(install || index > last));
                    durable_len = current.len();
                    snapshot = Some((index, snap_term, data));
                }
                Op::HardState => {
                    hard_state = MetadataHardState { term, vote: counter % 5, commit: last };
                    log.set_hard_state(&hard_state).unwrap();
                }
                Op::CrashProcess | Op::CrashPower { .. } => {
                    drop(log);
                    if let Op::CrashPower { cut } = op {
                        let path = dir.path().join(METADATA_ENTRIES_FILE_NAME);
                        let file = OpenOptions::new().write(true).open(&path).unwrap();
                        let len = file.metadata().unwrap().len();
                        let durable = record_bytes(&current[..durable_len]);
                        prop_assert!(durable <= len);
                        file.set_len(durable + u64::from(cut) % (len - durable + 1)).unwrap();
                    }
                    let (reopened, recovered) = open(dir.path());
                    log = reopened;
                    prop_assert_eq!(recovered.hard_state, hard_state);
                    match &snapshot {
                        Some((index, snap_term, data)) => {
                            let s = recovered.snapshot.clone().unwrap();
                            prop_assert_eq!((s.index, s.term), (*index, *snap_term));
                            prop_assert_eq!(&s.data[..], &data[..]);
                        }
                        None => prop_assert!(recovered.snapshot.is_none()),
                    }
                    // Every synced entry is back; the rest is a prefix of what was written.
                    prop_assert!(recovered.entries.len() >= durable_len);
                    prop_assert!(recovered.entries.len() <= current.len());
                    prop_assert_eq!(&recovered.entries[..], &current[..recovered.entries.len()]);
                    if matches!(op, Op::CrashProcess) {
                        prop_assert_eq!(recovered.entries.len(), current.len());
                    }
                    current = recovered.entries;
                    durable_len = durable_len.min(current.len());
                    prop_assert_eq!(log.last_index(), snapshot.as_ref().map_or(0, |s| s.0) + current.len() as u64);
                }
            }
        }
    }
}
