//! [`MetadataQuorum`]: one voter of the metadata quorum, a sans-IO wrapper around tikv
//! `raft`'s `RawNode` that does the whole Ready handling (see the crate docs for the order).

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::Bytes;
use fjord_storage::{
    MetadataHardState, MetadataLogEntry, MetadataSnapshot, METADATA_ENTRY_PAYLOAD_BYTES_MAX,
    METADATA_SNAPSHOT_BYTES_MAX,
};
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, EntryType, HardState, MessageType, Snapshot};
use raft::{Config, GetEntriesContext, RaftState, RawNode, SnapshotStatus, StateRole, Storage};

use crate::logger::raft_logger;
use crate::{QuorumError, RaftLogStore, RaftMessage};

/// How many Ready rounds one [`MetadataQuorum::ready`] call handles at most (each round can
/// make the next one possible, e.g. committed entries after a persisted append).
const READY_ROUNDS_MAX: usize = 8;

/// A voter's settings. Time is ticks only: the driver calls [`MetadataQuorum::tick`] every
/// tick interval (e.g. 100 ms, so `election_tick = 10` is KRaft's 1 s
/// `controller.quorum.election.timeout.ms`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumConfig {
    /// This voter's id (KRaft `node.id`; not 0).
    pub node_id: u64,
    /// Every voter's id, this one included (`controller.quorum.voters`). Static: no dynamic
    /// voters (KIP-853).
    pub voters: Vec<u64>,
    /// Ticks without hearing from a leader before a follower starts a (pre-)election.
    pub election_tick: usize,
    /// Ticks between a leader's heartbeats.
    pub heartbeat_tick: usize,
    /// Pins this voter's randomized election timeout (the library would draw it from an
    /// unseeded RNG): a value in `[election_tick, 2 * election_tick)`, distinct per voter.
    pub seed: u64,
    /// Largest size of the entries in one append message.
    pub max_size_per_msg: u64,
    /// Append messages in flight per follower.
    pub max_inflight_msgs: usize,
}

impl QuorumConfig {
    /// Defaults: election after 10 ticks, heartbeats every 2, 1 MiB appends, 256 in flight.
    pub fn new(node_id: u64, voters: Vec<u64>) -> QuorumConfig {
        QuorumConfig {
            node_id,
            voters,
            election_tick: 10,
            heartbeat_tick: 2,
            seed: 0,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
        }
    }

    fn validate(&self) -> Result<(), QuorumError> {
        let fail = |reason: String| Err(QuorumError::Config(reason));
        if self.node_id == 0 {
            return fail("node id 0 is reserved".into());
        }
        let mut sorted = self.voters.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != self.voters.len() || sorted.contains(&0) {
            return fail(format!("voters {:?} must be unique and not 0", self.voters));
        }
        if !sorted.contains(&self.node_id) {
            return fail(format!(
                "node {} is not one of the voters {:?}",
                self.node_id, self.voters
            ));
        }
        if self.heartbeat_tick == 0 || self.election_tick <= self.heartbeat_tick {
            return fail("need 0 < heartbeat_tick < election_tick".into());
        }
        if self.max_inflight_msgs == 0 || self.max_size_per_msg == 0 {
            return fail("max_inflight_msgs and max_size_per_msg must be positive".into());
        }
        Ok(())
    }

    /// This voter's election timeout in ticks: `election_tick` plus an offset chosen by the
    /// seed, spaced so that voters differ (fewer split votes).
    pub fn pinned_election_tick(&self) -> usize {
        let mut sorted = self.voters.clone();
        sorted.sort_unstable();
        let position = sorted
            .iter()
            .position(|&id| id == self.node_id)
            .unwrap_or(0);
        let spacing = (self.election_tick / sorted.len().max(1)).max(1);
        let offset =
            (splitmix64(self.seed) as usize).wrapping_add(position * spacing) % self.election_tick;
        self.election_tick + offset
    }
}

fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Why a proposal was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// Only the leader takes proposals (they are never forwarded); retry at the hint.
    #[error("not the leader (leader hint {leader_hint:?})")]
    NotLeader { leader_hint: Option<u64> },
    #[error("payload of {size_bytes} bytes exceeds {size_bytes_max}")]
    TooLarge {
        size_bytes: usize,
        size_bytes_max: usize,
    },
    /// Empty payloads are reserved for the leaders' own no-op entries.
    #[error("empty payload")]
    Empty,
}

/// A committed entry for the state machine, in log order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedEntry {
    pub index: u64,
    pub term: u64,
    pub payload: Bytes,
}

/// An application snapshot: the state after applying everything up to `index`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotData {
    pub index: u64,
    pub term: u64,
    pub data: Bytes,
}

/// Who leads, as this voter knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleChange {
    pub leader_id: Option<u64>,
    pub term: u64,
    pub is_leader: bool,
}

/// What one [`MetadataQuorum::ready`] call produced. Apply in this order: if
/// `snapshot_installed` is set, reset the state machine to it; then apply `committed` (all
/// above the snapshot) in order. Send `messages` (everything they depend on is already
/// durable); for a snapshot message report the outcome with `report_snapshot`.
#[derive(Debug, Default)]
pub struct QuorumReady {
    /// `(to, message)`.
    pub messages: Vec<(u64, RaftMessage)>,
    /// Newly committed entries with a payload (leaders' empty no-op entries skipped).
    pub committed: Vec<CommittedEntry>,
    /// The leader's snapshot replaced this voter's log and state.
    pub snapshot_installed: Option<SnapshotData>,
    /// Leader, term or own role changed.
    pub role_changed: Option<RoleChange>,
    /// Set once per term on the leader when the first entry of its term is committed and
    /// everything before it has been handed out in `committed`: the state machine now holds
    /// every entry any earlier leader committed (KRaft: the active controller may start).
    pub leader_caught_up: Option<u64>,
}

impl QuorumReady {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
            && self.committed.is_empty()
            && self.snapshot_installed.is_none()
            && self.role_changed.is_none()
            && self.leader_caught_up.is_none()
    }
}

/// What [`MetadataQuorum::read_committed`] found at the asked index: what an observer
/// (a broker-only node, design 3.3) fetches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommittedRead {
    /// Committed entries from the asked index on, in order, empty no-op entries included (an
    /// observer's log stays contiguous); empty when nothing committed there yet.
    Entries(Vec<MetadataLogEntry>),
    /// The asked index is compacted away: start from this snapshot (`index`, `term`).
    SnapshotRequired { index: u64, term: u64 },
}

/// One voter in [`QuorumDescription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoterState {
    pub id: u64,
    /// Highest index known to be on that voter (leader: for all; others: only itself).
    pub match_index: Option<u64>,
    /// The tick of the last message from that voter in the current term (leader only;
    /// its own entry is the current tick).
    pub last_contact_tick: Option<u64>,
}

/// DescribeQuorum's view of this voter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumDescription {
    pub leader_id: Option<u64>,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub voters: Vec<VoterState>,
}

/// The adapter from a [`RaftLogStore`] to the library's `Storage` trait.
struct StoreAdapter<S> {
    store: S,
    conf_state: ConfState,
}

fn to_raft_entry(entry: MetadataLogEntry) -> Entry {
    let mut out = Entry::default();
    out.set_entry_type(EntryType::EntryNormal);
    out.index = entry.index;
    out.term = entry.term;
    out.data = entry.payload;
    out
}

impl<S: RaftLogStore> StoreAdapter<S> {
    fn snapshot_id(&self) -> (u64, u64) {
        self.store
            .snapshot()
            .map_or((0, 0), |snapshot| (snapshot.index, snapshot.term))
    }

    fn raft_snapshot(&self, snapshot: MetadataSnapshot) -> Snapshot {
        let mut out = Snapshot {
            data: snapshot.data,
            ..Snapshot::default()
        };
        let metadata = out.mut_metadata();
        metadata.index = snapshot.index;
        metadata.term = snapshot.term;
        metadata.set_conf_state(self.conf_state.clone());
        out
    }
}

impl<S: RaftLogStore> Storage for StoreAdapter<S> {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let stored = self.store.hard_state();
        let (snapshot_index, snapshot_term) = self.snapshot_id();
        let hard_state = HardState {
            term: stored.term.max(snapshot_term),
            vote: stored.vote,
            // Pitfall 4: the commit index must cover the snapshot.
            commit: stored.commit.max(snapshot_index),
            ..HardState::default()
        };
        Ok(RaftState::new(hard_state, self.conf_state.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.store.first_index() {
            return Err(raft::Error::Store(raft::StorageError::Compacted));
        }
        if high > self.store.last_index() + 1 || low > high {
            return Err(raft::Error::Store(raft::StorageError::Unavailable));
        }
        let size_bytes_max = max_size.into().unwrap_or(u64::MAX);
        Ok(self
            .store
            .entries(low, high, size_bytes_max)
            .into_iter()
            .map(to_raft_entry)
            .collect())
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        if let Some(term) = self.store.term(index) {
            return Ok(term);
        }
        if index < self.store.first_index() {
            Err(raft::Error::Store(raft::StorageError::Compacted))
        } else {
            Err(raft::Error::Store(raft::StorageError::Unavailable))
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.store.first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.store.last_index())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        match self.store.snapshot() {
            Some(snapshot) if snapshot.index >= request_index => Ok(self.raft_snapshot(snapshot)),
            _ => Err(raft::Error::Store(
                raft::StorageError::SnapshotTemporarilyUnavailable,
            )),
        }
    }
}

/// One voter of the metadata quorum. Sans-IO: the driver feeds ticks and messages in, calls
/// [`MetadataQuorum::ready`] after each, sends what it returns and applies what it commits.
///
/// After any error from `ready` (storage failed, or the library panicked) the quorum is
/// poisoned: every later call fails or does nothing, and the caller must drop it and build a
/// new one from the store (`new` + [`MetadataQuorum::recovered_committed`]), as after a crash.
pub struct MetadataQuorum<S: RaftLogStore> {
    node: RawNode<StoreAdapter<S>>,
    config: QuorumConfig,
    /// Ticks since `new`.
    ticks: u64,
    /// Index of the last entry handed out (or covered by a snapshot handed out or recovered).
    applied_index: u64,
    /// Per voter the tick of its last message in the then-current term.
    last_contact_tick: BTreeMap<u64, (u64, u64)>,
    /// The role last reported in `role_changed`.
    reported_role: RoleChange,
    /// The term whose `leader_caught_up` was reported.
    caught_up_term: u64,
    poisoned: Option<String>,
}

impl<S: RaftLogStore> std::fmt::Debug for MetadataQuorum<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataQuorum")
            .field("node_id", &self.config.node_id)
            .field("role", &self.reported_role)
            .field("applied_index", &self.applied_index)
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// Message types a voter accepts from another voter. Local types (hup, beat, unreachable,
/// snapshot status, check quorum) are refused, and so are proposals and read-index requests:
/// Fjord never forwards either.
fn accepted_from_peer(msg_type: MessageType) -> bool {
    matches!(
        msg_type,
        MessageType::MsgAppend
            | MessageType::MsgAppendResponse
            | MessageType::MsgRequestVote
            | MessageType::MsgRequestVoteResponse
            | MessageType::MsgRequestPreVote
            | MessageType::MsgRequestPreVoteResponse
            | MessageType::MsgSnapshot
            | MessageType::MsgHeartbeat
            | MessageType::MsgHeartbeatResponse
            | MessageType::MsgTransferLeader
            | MessageType::MsgTimeoutNow
    )
}

impl<S: RaftLogStore> MetadataQuorum<S> {
    /// Starts a voter over `store` (empty, or what a previous run left). Replays nothing:
    /// call [`MetadataQuorum::recovered_committed`] to rebuild the state machine. Pre-vote and
    /// check-quorum are on. A single-voter quorum campaigns at once.
    pub fn new(config: QuorumConfig, store: S) -> Result<Self, QuorumError> {
        config.validate()?;
        let conf_state = ConfState::from((config.voters.clone(), Vec::<u64>::new()));
        if let Some(snapshot) = store.snapshot() {
            let stored = ConfState::parse_from_bytes(&snapshot.voters)
                .map_err(|error| QuorumError::CorruptState(format!("snapshot voters: {error}")))?;
            let mut stored_voters = stored.voters.clone();
            stored_voters.sort_unstable();
            let mut voters = config.voters.clone();
            voters.sort_unstable();
            if stored_voters != voters {
                return Err(QuorumError::Config(format!(
                    "voters {voters:?} differ from the snapshot's {stored_voters:?} (voters are static)"
                )));
            }
        }
        let adapter = StoreAdapter { store, conf_state };
        let (snapshot_index, _) = adapter.snapshot_id();
        let commit = adapter.store.hard_state().commit.max(snapshot_index);
        let last_index = adapter.store.last_index();
        if commit > last_index {
            return Err(QuorumError::CorruptState(format!(
                "commit index {commit} is beyond the last entry {last_index}"
            )));
        }
        let pinned = config.pinned_election_tick();
        let raft_config = Config {
            id: config.node_id,
            election_tick: config.election_tick,
            heartbeat_tick: config.heartbeat_tick,
            applied: commit,
            max_size_per_msg: config.max_size_per_msg,
            max_inflight_msgs: config.max_inflight_msgs,
            check_quorum: true,
            pre_vote: true,
            min_election_tick: pinned,
            max_election_tick: pinned + 1,
            ..Config::default()
        };
        raft_config
            .validate()
            .map_err(|error| QuorumError::Config(error.to_string()))?;
        let logger = raft_logger(config.node_id);
        let mut node = match catch_unwind(AssertUnwindSafe(|| {
            RawNode::new(&raft_config, adapter, &logger)
        })) {
            Ok(Ok(node)) => node,
            Ok(Err(error)) => return Err(QuorumError::Raft(error)),
            Err(panic) => return Err(QuorumError::CorruptState(panic_message(panic))),
        };
        if config.voters.len() == 1 {
            node.campaign().map_err(QuorumError::Raft)?;
        }
        let reported_role = RoleChange {
            leader_id: None,
            term: node.raft.term,
            is_leader: false,
        };
        Ok(MetadataQuorum {
            node,
            config,
            ticks: 0,
            applied_index: commit,
            last_contact_tick: BTreeMap::new(),
            reported_role,
            caught_up_term: 0,
            poisoned: None,
        })
    }

    fn store(&self) -> &S {
        &self.node.store().store
    }

    fn store_mut(&mut self) -> &mut S {
        &mut self.node.mut_store().store
    }

    fn check_poisoned(&self) -> Result<(), QuorumError> {
        match &self.poisoned {
            Some(reason) => Err(QuorumError::Poisoned(reason.clone())),
            None => Ok(()),
        }
    }

    fn poison(&mut self, reason: String) -> QuorumError {
        tracing::error!(node = self.config.node_id, %reason, "metadata quorum: poisoned, needs a restart from its store");
        self.poisoned = Some(reason.clone());
        QuorumError::Poisoned(reason)
    }

    /// The snapshot and committed entries a restarted voter rebuilds its state machine from:
    /// the stored snapshot, then the stored entries above it up to the stored commit index
    /// (empty no-op entries skipped). Call once, right after `new`; later commits come
    /// through `ready`.
    pub fn recovered_committed(&self) -> (Option<SnapshotData>, Vec<CommittedEntry>) {
        let store = self.store();
        let snapshot = store.snapshot().map(|s| SnapshotData {
            index: s.index,
            term: s.term,
            data: s.data,
        });
        let low = store.first_index();
        let commit = store
            .hard_state()
            .commit
            .max(low - 1)
            .min(store.last_index());
        let mut entries = Vec::new();
        let mut next = low;
        while next <= commit {
            let batch = store.entries(next, commit + 1, u64::MAX);
            let Some(last) = batch.last() else { break };
            next = last.index + 1;
            entries.extend(
                batch
                    .into_iter()
                    .filter(|e| !e.payload.is_empty())
                    .map(|e| CommittedEntry {
                        index: e.index,
                        term: e.term,
                        payload: e.payload,
                    }),
            );
        }
        (snapshot, entries)
    }

    /// One tick of logical time.
    pub fn tick(&mut self) {
        if self.poisoned.is_some() {
            return;
        }
        self.ticks += 1;
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| self.node.tick())) {
            self.poison(format!("tick panicked: {}", panic_message(panic)));
        }
    }

    /// Hands a message from another voter to Raft. Messages not addressed to this voter, from
    /// a non-voter, or of a type peers never send are refused.
    pub fn step(&mut self, msg: RaftMessage) -> Result<(), QuorumError> {
        self.check_poisoned()?;
        if msg.to() != self.config.node_id {
            return Err(QuorumError::InvalidMessage(format!(
                "message for node {} reached node {}",
                msg.to(),
                self.config.node_id
            )));
        }
        // A forwarded MsgTransferLeader names the transferee as its sender, maybe us.
        let from_self_ok = msg.msg_type() == MessageType::MsgTransferLeader;
        if (msg.from() == self.config.node_id && !from_self_ok)
            || !self.config.voters.contains(&msg.from())
        {
            return Err(QuorumError::InvalidMessage(format!(
                "message from node {}, not another voter",
                msg.from()
            )));
        }
        if !accepted_from_peer(msg.msg_type()) {
            return Err(QuorumError::InvalidMessage(format!(
                "message type {:?} is not accepted from a peer",
                msg.msg_type()
            )));
        }
        let from = msg.from();
        let term = msg.term();
        match catch_unwind(AssertUnwindSafe(|| self.node.step(msg.0))) {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(QuorumError::Raft(error)),
            Err(panic) => {
                return Err(self.poison(format!("step panicked: {}", panic_message(panic))))
            }
        }
        if term == self.node.raft.term {
            self.last_contact_tick.insert(from, (term, self.ticks));
        }
        Ok(())
    }

    /// Proposes an entry; on the leader returns the index it will have if it commits (the
    /// committed entry at that index carries the proposer's term exactly when it is this
    /// proposal: a leader change may replace it). Proposals are not forwarded.
    pub fn propose(&mut self, payload: Bytes) -> Result<u64, ProposeError> {
        if payload.is_empty() {
            return Err(ProposeError::Empty);
        }
        if payload.len() > METADATA_ENTRY_PAYLOAD_BYTES_MAX {
            return Err(ProposeError::TooLarge {
                size_bytes: payload.len(),
                size_bytes_max: METADATA_ENTRY_PAYLOAD_BYTES_MAX,
            });
        }
        if self.poisoned.is_some() {
            return Err(ProposeError::NotLeader { leader_hint: None });
        }
        if !self.is_leader() {
            return Err(ProposeError::NotLeader {
                leader_hint: self.leader_id(),
            });
        }
        match catch_unwind(AssertUnwindSafe(|| {
            self.node.propose(Vec::new(), payload.to_vec())
        })) {
            Ok(Ok(())) => Ok(self.node.raft.raft_log.last_index()),
            // Dropped: a leadership transfer is under way.
            Ok(Err(_)) => Err(ProposeError::NotLeader {
                leader_hint: self.node.raft.lead_transferee,
            }),
            Err(panic) => {
                self.poison(format!("propose panicked: {}", panic_message(panic)));
                Err(ProposeError::NotLeader { leader_hint: None })
            }
        }
    }

    /// Persists what Raft produced (entries, then fsync, then hard state; a leader's snapshot
    /// is installed first), and returns the messages that may now be sent, the newly committed
    /// entries and role changes. See [`QuorumReady`] for how to apply them.
    pub fn ready(&mut self) -> Result<QuorumReady, QuorumError> {
        self.check_poisoned()?;
        let mut out = QuorumReady::default();
        let result = catch_unwind(AssertUnwindSafe(|| -> Result<(), QuorumError> {
            for _ in 0..READY_ROUNDS_MAX {
                if !self.node.has_ready() {
                    break;
                }
                self.ready_round(&mut out)?;
            }
            Ok(())
        }));
        match result {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                self.poison(error.to_string());
                return Err(error);
            }
            Err(panic) => {
                return Err(self.poison(format!("ready panicked: {}", panic_message(panic))))
            }
        }
        let role = RoleChange {
            leader_id: self.leader_id(),
            term: self.term(),
            is_leader: self.is_leader(),
        };
        if role != self.reported_role {
            self.reported_role = role.clone();
            out.role_changed = Some(role);
        }
        let term = self.term();
        if self.is_leader()
            && self.caught_up_term != term
            && self.store().term(self.applied_index) == Some(term)
        {
            self.caught_up_term = term;
            out.leader_caught_up = Some(term);
        }
        Ok(out)
    }

    /// One Ready in the library's documented order.
    fn ready_round(&mut self, out: &mut QuorumReady) -> Result<(), QuorumError> {
        let mut rd = self.node.ready();
        // A leader's appends may go out before its own write (Raft thesis 10.2.1).
        push_messages(out, rd.take_messages());
        if !rd.snapshot().is_empty() {
            let snapshot = rd.snapshot().clone();
            self.install_snapshot(snapshot, out)?;
        }
        self.collect_committed(rd.take_committed_entries(), out)?;
        if !rd.entries().is_empty() {
            let entries = rd
                .entries()
                .iter()
                .map(|e| {
                    if e.get_entry_type() != EntryType::EntryNormal {
                        return Err(QuorumError::CorruptState(format!(
                            "entry {} has type {:?}; configuration changes are not supported",
                            e.index,
                            e.get_entry_type()
                        )));
                    }
                    Ok(MetadataLogEntry {
                        index: e.index,
                        term: e.term,
                        payload: e.data.clone(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.store_mut().append(&entries)?;
        }
        self.store_mut().sync()?;
        if let Some(hs) = rd.hs() {
            let state = MetadataHardState {
                term: hs.term,
                vote: hs.vote,
                commit: hs.commit,
            };
            self.store_mut().set_hard_state(state)?;
        }
        // Votes and append acknowledgements only now: everything they promise is durable.
        push_messages(out, rd.take_persisted_messages());
        let mut light = self.node.advance(rd);
        if let Some(commit) = light.commit_index() {
            let mut state = self.store().hard_state();
            state.commit = commit;
            self.store_mut().set_hard_state(state)?;
        }
        push_messages(out, light.take_messages());
        self.collect_committed(light.take_committed_entries(), out)?;
        self.node.advance_apply();
        Ok(())
    }

    fn install_snapshot(
        &mut self,
        snapshot: Snapshot,
        out: &mut QuorumReady,
    ) -> Result<(), QuorumError> {
        let metadata = snapshot.get_metadata();
        let (index, term) = (metadata.index, metadata.term);
        let voters = metadata
            .get_conf_state()
            .write_to_bytes()
            .map_err(|error| QuorumError::CorruptState(error.to_string()))?;
        if snapshot.data.len() > METADATA_SNAPSHOT_BYTES_MAX {
            return Err(QuorumError::CorruptState(format!(
                "snapshot of {} bytes exceeds {METADATA_SNAPSHOT_BYTES_MAX}",
                snapshot.data.len()
            )));
        }
        self.store_mut().save_snapshot(MetadataSnapshot {
            index,
            term,
            voters: Bytes::from(voters),
            data: snapshot.data.clone(),
        })?;
        // Anything handed out earlier in this call is covered by the snapshot.
        out.committed.retain(|e| e.index > index);
        out.snapshot_installed = Some(SnapshotData {
            index,
            term,
            data: snapshot.data.clone(),
        });
        self.applied_index = index;
        Ok(())
    }

    fn collect_committed(
        &mut self,
        entries: Vec<Entry>,
        out: &mut QuorumReady,
    ) -> Result<(), QuorumError> {
        for entry in entries {
            if entry.index != self.applied_index + 1 {
                return Err(QuorumError::CorruptState(format!(
                    "committed entry {} does not follow applied index {}",
                    entry.index, self.applied_index
                )));
            }
            self.applied_index = entry.index;
            if entry.get_entry_type() != EntryType::EntryNormal || entry.data.is_empty() {
                continue;
            }
            out.committed.push(CommittedEntry {
                index: entry.index,
                term: entry.term,
                payload: entry.data,
            });
        }
        Ok(())
    }

    /// Tells Raft a message to `to` could not be sent (the leader stops pipelining to it).
    pub fn report_unreachable(&mut self, to: u64) {
        if self.poisoned.is_none() {
            self.node.report_unreachable(to);
        }
    }

    /// Tells Raft whether a snapshot message to `to` was delivered (pitfall 3: without a
    /// report of a failure the leader never sends that voter anything again).
    pub fn report_snapshot(&mut self, to: u64, delivered: bool) {
        if self.poisoned.is_none() {
            let status = if delivered {
                SnapshotStatus::Finish
            } else {
                SnapshotStatus::Failure
            };
            self.node.report_snapshot(to, status);
        }
    }

    /// Takes an application-built snapshot of the state after applying everything up to
    /// `applied_index` (which must have been handed out already) and compacts the log up to
    /// it. Voters that lag behind the compaction get the snapshot.
    pub fn compact(&mut self, applied_index: u64, data: Bytes) -> Result<(), QuorumError> {
        self.check_poisoned()?;
        if applied_index > self.applied_index {
            return Err(QuorumError::InvalidArgument(format!(
                "cannot snapshot at {applied_index}: applied only up to {}",
                self.applied_index
            )));
        }
        if data.len() > METADATA_SNAPSHOT_BYTES_MAX {
            return Err(QuorumError::InvalidArgument(format!(
                "snapshot of {} bytes exceeds {METADATA_SNAPSHOT_BYTES_MAX}",
                data.len()
            )));
        }
        if applied_index < self.store().first_index() {
            return Ok(());
        }
        let term = self.store().term(applied_index).ok_or_else(|| {
            QuorumError::CorruptState(format!("no term for applied entry {applied_index}"))
        })?;
        let voters = self
            .node
            .store()
            .conf_state
            .write_to_bytes()
            .map_err(|error| QuorumError::CorruptState(error.to_string()))?;
        let snapshot = MetadataSnapshot {
            index: applied_index,
            term,
            voters: Bytes::from(voters),
            data,
        };
        if let Err(error) = self.store_mut().save_snapshot(snapshot) {
            let error = QuorumError::from(error);
            self.poison(error.to_string());
            return Err(error);
        }
        Ok(())
    }

    /// Asks the leader to hand leadership to `to` (used before a controlled shutdown).
    pub fn transfer_leader(&mut self, to: u64) {
        if self.poisoned.is_none() && self.config.voters.contains(&to) {
            self.node.transfer_leader(to);
        }
    }

    /// The quorum as this voter sees it (DescribeQuorum).
    pub fn describe(&self) -> QuorumDescription {
        let raft = &self.node.raft;
        let is_leader = self.is_leader();
        let voters = self
            .config
            .voters
            .iter()
            .map(|&id| {
                let match_index = if is_leader {
                    raft.prs().get(id).map(|progress| progress.matched)
                } else if id == self.config.node_id {
                    Some(raft.raft_log.persisted)
                } else {
                    None
                };
                let last_contact_tick = if !is_leader {
                    None
                } else if id == self.config.node_id {
                    Some(self.ticks)
                } else {
                    self.last_contact_tick
                        .get(&id)
                        .filter(|(term, _)| *term == raft.term)
                        .map(|(_, tick)| *tick)
                };
                VoterState {
                    id,
                    match_index,
                    last_contact_tick,
                }
            })
            .collect();
        QuorumDescription {
            leader_id: self.leader_id(),
            term: raft.term,
            commit_index: raft.raft_log.committed,
            applied_index: self.applied_index,
            voters,
        }
    }

    /// Committed entries from `from_index` on (never beyond what this voter has handed out as
    /// committed, so never an entry that a new leader could still replace), stopping once
    /// their payloads exceed `size_bytes_max` but with at least one if any. An index below the
    /// log's start (compacted into the snapshot) answers [`CommittedRead::SnapshotRequired`].
    /// Index 0 reads like 1.
    pub fn read_committed(&self, from_index: u64, size_bytes_max: u64) -> CommittedRead {
        let store = self.store();
        let from_index = from_index.max(1);
        if from_index < store.first_index() {
            if let Some(snapshot) = store.snapshot() {
                return CommittedRead::SnapshotRequired {
                    index: snapshot.index,
                    term: snapshot.term,
                };
            }
        }
        let committed = self.applied_index.min(store.last_index());
        if from_index > committed || from_index < store.first_index() {
            return CommittedRead::Entries(Vec::new());
        }
        let entries = store.entries(from_index, committed + 1, size_bytes_max);
        debug_assert!(entries.iter().all(|e| e.index <= committed));
        CommittedRead::Entries(entries)
    }

    /// The newest snapshot this voter holds (what [`CommittedRead::SnapshotRequired`] names).
    pub fn latest_snapshot(&self) -> Option<MetadataSnapshot> {
        self.store().snapshot()
    }

    /// Whether this voter is the leader.
    pub fn is_leader(&self) -> bool {
        self.node.raft.state == StateRole::Leader
    }

    /// The leader this voter knows of.
    pub fn leader_id(&self) -> Option<u64> {
        Some(self.node.raft.leader_id).filter(|&id| id != raft::INVALID_ID)
    }

    /// The current term (KRaft's leader epoch).
    pub fn term(&self) -> u64 {
        self.node.raft.term
    }

    /// This voter's id.
    pub fn node_id(&self) -> u64 {
        self.config.node_id
    }

    /// Index of the last committed entry handed out.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }
}

fn push_messages(out: &mut QuorumReady, messages: Vec<raft::eraftpb::Message>) {
    out.messages
        .extend(messages.into_iter().map(|m| (m.to, RaftMessage(m))));
}

#[cfg(test)]
mod tests;
