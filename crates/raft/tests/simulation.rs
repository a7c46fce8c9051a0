//! Deterministic simulation of the metadata quorum (docs/cluster-design.md sections 8, 9).
//!
//! 3 voters (5 for every fifth seed) on `MemLogStore`, one splitmix64 RNG per seed, virtual
//! time in ticks, a virtual network that drops, delays (so reorders) and duplicates messages
//! and applies (possibly asymmetric) partitions, crashes (power loss, kill -9 keeping part of
//! the page cache, in the middle of handling a Ready after persisting but before or while
//! sending, and failed fsyncs), restarts through `MetadataQuorum::new` + `recovered_committed`,
//! random proposals, compactions and leadership transfers. After every event:
//! - at most one leader per term;
//! - every node's applied sequence is a prefix of one history: an index is applied with the
//!   same term and payload (or as an empty no-op) everywhere, nothing is skipped, a snapshot
//!   holds exactly the history up to its index, a restart recovers a prefix of it;
//! - applied index <= commit index.
//!
//! After a final heal the cluster must commit a new proposal on every node within a bounded
//! number of ticks (liveness), which also proves that no committed entry was lost.
//!
//! `cargo test -p fjord-raft --test simulation` runs 200 seeds; `FJORD_SIM_SEEDS=N` runs N,
//! `FJORD_SIM_SEED=S` replays one (with its event trace on failure).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::Bytes;
use fjord_raft::{
    CommittedEntry, MemLogStore, MetadataQuorum, ProposeError, QuorumConfig, QuorumReady,
    RaftMessage,
};

const DEFAULT_SEEDS: u64 = 200;
/// Ticks of chaos per seed.
const CHAOS_TICKS: u64 = 500;
/// Ticks the healed cluster gets to commit a new proposal everywhere.
const LIVENESS_TICKS_MAX: u64 = 400;
const TRACE_LINES: usize = 60;

/// splitmix64: tiny, seedable, good enough for schedules.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// True with probability `per_mille`/1000.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// What an index holds in the one history: a payload (with its term) or a no-op.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Slot {
    Payload(u64, Bytes),
    Empty,
}

struct Node {
    id: u64,
    disk: MemLogStore,
    quorum: Option<MetadataQuorum<MemLogStore>>,
    /// The state machine: applied entries with a payload, in order.
    state: Vec<CommittedEntry>,
    /// Index up to which the state machine is applied.
    applied_index: u64,
    /// When a crashed node comes back.
    restart_at: u64,
}

struct Envelope {
    from: u64,
    to: u64,
    bytes: Vec<u8>,
    is_snapshot: bool,
}

struct Sim {
    seed: u64,
    rng: Rng,
    tick: u64,
    nodes: Vec<Node>,
    voters: Vec<u64>,
    /// `(deliver_at, sequence)` → message.
    network: BTreeMap<(u64, u64), Envelope>,
    sequence: u64,
    /// Directed links that drop everything.
    blocked: BTreeSet<(u64, u64)>,
    drop_per_mille: u64,
    duplicate_per_mille: u64,
    delay_ticks_max: u64,
    history: BTreeMap<u64, Slot>,
    leaders: BTreeMap<u64, u64>,
    proposals: u64,
    trace: VecDeque<String>,
    /// Faults on (off after the final heal).
    chaos: bool,
    stats: Stats,
}

/// What a run exercised, summed over seeds (so a vacuous run shows).
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    committed_payloads: u64,
    crashes: u64,
    crashes_mid_ready: u64,
    sync_failures: u64,
    snapshots_installed: u64,
    compactions: u64,
    messages: u64,
    terms: u64,
}

impl Stats {
    fn add(&mut self, other: &Stats) {
        self.committed_payloads += other.committed_payloads;
        self.crashes += other.crashes;
        self.crashes_mid_ready += other.crashes_mid_ready;
        self.sync_failures += other.sync_failures;
        self.snapshots_installed += other.snapshots_installed;
        self.compactions += other.compactions;
        self.messages += other.messages;
        self.terms += other.terms;
    }
}

fn encode_state(state: &[CommittedEntry]) -> Bytes {
    let mut out = Vec::new();
    for entry in state {
        out.extend_from_slice(&entry.index.to_be_bytes());
        out.extend_from_slice(&entry.term.to_be_bytes());
        out.extend_from_slice(&(entry.payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&entry.payload);
    }
    Bytes::from(out)
}

fn decode_state(data: &Bytes) -> Result<Vec<CommittedEntry>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        if data.len() - at < 20 {
            return Err("truncated snapshot state".into());
        }
        let index = u64::from_be_bytes(data[at..at + 8].try_into().unwrap());
        let term = u64::from_be_bytes(data[at + 8..at + 16].try_into().unwrap());
        let len = u32::from_be_bytes(data[at + 16..at + 20].try_into().unwrap()) as usize;
        at += 20;
        if data.len() - at < len {
            return Err("truncated snapshot entry".into());
        }
        out.push(CommittedEntry {
            index,
            term,
            payload: data.slice(at..at + len),
        });
        at += len;
    }
    Ok(out)
}

type SimResult = Result<(), String>;

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = Rng(seed);
        let voter_count = if seed % 5 == 4 { 5 } else { 3 };
        let voters: Vec<u64> = (1..=voter_count).collect();
        let nodes = voters
            .iter()
            .map(|&id| Node {
                id,
                disk: MemLogStore::new(),
                quorum: None,
                state: Vec::new(),
                applied_index: 0,
                restart_at: 0,
            })
            .collect();
        let drop_per_mille = rng.below(150);
        let duplicate_per_mille = rng.below(50);
        let delay_ticks_max = 1 + rng.below(4);
        Sim {
            seed,
            rng,
            tick: 0,
            nodes,
            voters,
            network: BTreeMap::new(),
            sequence: 0,
            blocked: BTreeSet::new(),
            drop_per_mille,
            duplicate_per_mille,
            delay_ticks_max,
            history: BTreeMap::new(),
            leaders: BTreeMap::new(),
            proposals: 0,
            trace: VecDeque::new(),
            chaos: true,
            stats: Stats::default(),
        }
    }

    fn log(&mut self, line: String) {
        if self.trace.len() == TRACE_LINES {
            self.trace.pop_front();
        }
        self.trace.push_back(format!("t={} {line}", self.tick));
    }

    fn config(&self, id: u64) -> QuorumConfig {
        QuorumConfig {
            seed: self.seed,
            max_size_per_msg: 256,
            max_inflight_msgs: 8,
            ..QuorumConfig::new(id, self.voters.clone())
        }
    }

    fn index_of(&self, id: u64) -> usize {
        (id - 1) as usize
    }

    /// Starts (or restarts) a node from its disk and rebuilds its state machine.
    fn start(&mut self, id: u64) -> SimResult {
        let config = self.config(id);
        let i = self.index_of(id);
        let disk = self.nodes[i].disk.clone();
        if self.chaos && self.rng.chance(100) {
            let syncs = self.rng.below(20);
            disk.fail_sync_after(syncs);
        }
        let quorum = MetadataQuorum::new(config, disk)
            .map_err(|e| format!("node {id}: restart failed: {e}"))?;
        let (snapshot, entries) = quorum.recovered_committed();
        let mut state = Vec::new();
        let mut applied = 0;
        if let Some(snapshot) = snapshot {
            state = decode_state(&snapshot.data)?;
            self.check_snapshot_state(id, snapshot.index, &state)?;
            applied = snapshot.index;
        }
        self.check_applied(id, applied, quorum.applied_index(), &entries)?;
        state.extend(entries);
        self.log(format!(
            "node {id} started: applied {} (state {} entries)",
            quorum.applied_index(),
            state.len()
        ));
        let node = &mut self.nodes[i];
        node.applied_index = quorum.applied_index();
        node.state = state;
        node.quorum = Some(quorum);
        Ok(())
    }

    fn crash(&mut self, id: u64, why: &str) {
        let i = self.index_of(id);
        let power = self.rng.chance(500);
        let keep = self.rng.below(4) as usize;
        let down_ticks = 1 + self.rng.below(40);
        let node = &mut self.nodes[i];
        node.quorum = None;
        if power {
            node.disk.crash();
        } else {
            node.disk.crash_keeping_unsynced(keep);
        }
        node.restart_at = self.tick + down_ticks;
        self.stats.crashes += 1;
        self.log(format!(
            "node {id} crashed ({why}, {})",
            if power { "power" } else { "process" }
        ));
    }

    /// The history check for `committed` handed out while the node moved from `from` to `to`.
    fn check_applied(
        &mut self,
        id: u64,
        from: u64,
        to: u64,
        committed: &[CommittedEntry],
    ) -> SimResult {
        if to < from {
            return Err(format!("node {id}: applied index went back {from} -> {to}"));
        }
        let mut given = committed.iter().peekable();
        for index in from + 1..=to {
            let slot = match given.peek() {
                Some(entry) if entry.index == index => {
                    let entry = given.next().unwrap();
                    Slot::Payload(entry.term, entry.payload.clone())
                }
                _ => Slot::Empty,
            };
            match self.history.get(&index) {
                Some(known) if *known != slot => {
                    return Err(format!(
                        "node {id}: index {index} applied as {slot:?}, history has {known:?}"
                    ))
                }
                Some(_) => {}
                None => {
                    self.history.insert(index, slot);
                }
            }
        }
        if let Some(extra) = given.next() {
            return Err(format!(
                "node {id}: committed entry {} outside ({from}, {to}]",
                extra.index
            ));
        }
        Ok(())
    }

    /// A snapshot's state must be exactly the history's payloads up to its index.
    fn check_snapshot_state(&mut self, id: u64, index: u64, state: &[CommittedEntry]) -> SimResult {
        let known: Vec<(u64, Slot)> = self
            .history
            .range(..=index)
            .map(|(i, s)| (*i, s.clone()))
            .collect();
        let in_state: BTreeMap<u64, Slot> = state
            .iter()
            .map(|e| (e.index, Slot::Payload(e.term, e.payload.clone())))
            .collect();
        for (i, slot) in known {
            let found = in_state.get(&i).cloned().unwrap_or(Slot::Empty);
            if found != slot {
                return Err(format!(
                    "node {id}: snapshot at {index} has {found:?} at {i}, history {slot:?}"
                ));
            }
        }
        for (i, slot) in in_state {
            if i > index {
                return Err(format!("node {id}: snapshot at {index} holds entry {i}"));
            }
            self.history.entry(i).or_insert(slot);
        }
        Ok(())
    }

    fn check_leaders(&mut self) -> SimResult {
        for node in &self.nodes {
            let Some(quorum) = &node.quorum else { continue };
            let description = quorum.describe();
            if description.applied_index > description.commit_index {
                return Err(format!(
                    "node {}: applied {} > commit {}",
                    node.id, description.applied_index, description.commit_index
                ));
            }
            if quorum.is_leader() {
                let term = quorum.term();
                match self.leaders.get(&term) {
                    Some(&other) if other != node.id => {
                        return Err(format!(
                            "two leaders in term {term}: {other} and {}",
                            node.id
                        ))
                    }
                    _ => {
                        self.leaders.insert(term, node.id);
                    }
                }
            }
        }
        Ok(())
    }

    /// Runs `ready` on a node and handles the result; a failing disk crashes the node.
    fn ready(&mut self, id: u64) -> SimResult {
        let i = self.index_of(id);
        let Some(quorum) = self.nodes[i].quorum.as_mut() else {
            return Ok(());
        };
        let result = quorum.ready();
        let ready = match result {
            Ok(ready) => ready,
            Err(error) => {
                let text = error.to_string();
                if text.contains("injected sync failure") {
                    self.stats.sync_failures += 1;
                    self.crash(id, "fsync failed");
                    return Ok(());
                }
                return Err(format!("node {id}: ready failed: {text}"));
            }
        };
        self.handle_ready(id, ready)
    }

    fn handle_ready(&mut self, id: u64, ready: QuorumReady) -> SimResult {
        let i = self.index_of(id);
        let applied_after = self.nodes[i]
            .quorum
            .as_ref()
            .map_or(0, |q| q.applied_index());
        let mut from = self.nodes[i].applied_index;
        if let Some(snapshot) = &ready.snapshot_installed {
            let state = decode_state(&snapshot.data)?;
            self.check_snapshot_state(id, snapshot.index, &state)?;
            self.log(format!("node {id} installed snapshot {}", snapshot.index));
            self.stats.snapshots_installed += 1;
            self.nodes[i].state = state;
            from = snapshot.index;
        }
        self.check_applied(id, from, applied_after, &ready.committed)?;
        if let Some(role) = &ready.role_changed {
            self.log(format!("node {id} role {role:?}"));
        }
        let node = &mut self.nodes[i];
        node.state.extend(ready.committed.iter().cloned());
        node.applied_index = applied_after;

        // Crash in the middle: everything is persisted, only some messages got out.
        let mut messages = ready.messages;
        if self.chaos && !messages.is_empty() && self.rng.chance(5) {
            let sent = self.rng.below(messages.len() as u64 + 1) as usize;
            messages.truncate(sent);
            for (to, message) in messages {
                self.send(id, to, message);
            }
            self.stats.crashes_mid_ready += 1;
            self.crash(id, "between persisting and sending");
            return Ok(());
        }
        for (to, message) in messages {
            self.send(id, to, message);
        }
        Ok(())
    }

    fn send(&mut self, from: u64, to: u64, message: RaftMessage) {
        let copies = if self.rng.chance(self.duplicate_per_mille) {
            2
        } else {
            1
        };
        let is_snapshot = message.is_snapshot();
        let bytes = message.encode();
        self.stats.messages += 1;
        for _ in 0..copies {
            let delay = self.rng.below(self.delay_ticks_max + 1);
            self.sequence += 1;
            self.network.insert(
                (self.tick + delay, self.sequence),
                Envelope {
                    from,
                    to,
                    bytes: bytes.clone(),
                    is_snapshot,
                },
            );
        }
    }

    /// Tells a live sender that its message did not arrive.
    fn report_failure(&mut self, envelope: &Envelope) {
        let i = self.index_of(envelope.from);
        if let Some(quorum) = self.nodes[i].quorum.as_mut() {
            quorum.report_unreachable(envelope.to);
            if envelope.is_snapshot {
                quorum.report_snapshot(envelope.to, false);
            }
        }
    }

    fn deliver_due(&mut self) -> SimResult {
        while let Some(entry) = self.network.first_entry() {
            if entry.key().0 > self.tick {
                break;
            }
            let envelope = entry.remove();
            let (from, to) = (envelope.from, envelope.to);
            let lost = self.blocked.contains(&(from, to))
                || self.rng.chance(self.drop_per_mille)
                || self.nodes[self.index_of(to)].quorum.is_none();
            if lost {
                self.report_failure(&envelope);
                continue;
            }
            let message = RaftMessage::decode(&envelope.bytes)
                .map_err(|e| format!("message {from}->{to} does not decode: {e}"))?;
            let i = self.index_of(to);
            let quorum = self.nodes[i].quorum.as_mut().unwrap();
            quorum
                .step(message)
                .map_err(|e| format!("node {to}: step failed: {e}"))?;
            if envelope.is_snapshot {
                let sender_index = self.index_of(from);
                if let Some(sender) = self.nodes[sender_index].quorum.as_mut() {
                    sender.report_snapshot(to, true);
                }
            }
            self.ready(to)?;
            self.check_leaders()?;
        }
        Ok(())
    }

    fn alive(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|n| n.quorum.is_some())
            .map(|n| n.id)
            .collect()
    }

    fn propose(&mut self, id: u64) -> Option<u64> {
        let i = self.index_of(id);
        self.proposals += 1;
        let payload = Bytes::from(format!("seed{}-p{}", self.seed, self.proposals));
        let quorum = self.nodes[i].quorum.as_mut()?;
        match quorum.propose(payload) {
            Ok(index) => Some(index),
            Err(ProposeError::NotLeader { .. }) => None,
            Err(other) => panic!("unexpected propose error {other}"),
        }
    }

    fn chaos_events(&mut self) -> SimResult {
        let alive = self.alive();
        // Restarts.
        for id in self.voters.clone() {
            let i = self.index_of(id);
            if self.nodes[i].quorum.is_none() && self.nodes[i].restart_at <= self.tick {
                self.start(id)?;
            }
        }
        if !alive.is_empty() {
            // Proposals: mostly to a leader, sometimes to anyone.
            if self.rng.chance(400) {
                let leader = alive.iter().copied().find(|&id| {
                    self.nodes[self.index_of(id)]
                        .quorum
                        .as_ref()
                        .unwrap()
                        .is_leader()
                });
                let target = match leader {
                    Some(id) if self.rng.chance(850) => id,
                    _ => self.rng.pick(&alive),
                };
                let count = 1 + self.rng.below(3);
                for _ in 0..count {
                    self.propose(target);
                }
                self.ready(target)?;
            }
            if self.rng.chance(15) {
                let id = self.rng.pick(&alive);
                self.crash(id, "random");
            }
            if self.rng.chance(20) {
                let id = self.rng.pick(&alive);
                let back = self.rng.below(4);
                let i = self.index_of(id);
                let at = self.nodes[i].applied_index.saturating_sub(back);
                // The state machine as it was at `at`: the applied prefix up to it.
                let state: Vec<CommittedEntry> = self.nodes[i]
                    .state
                    .iter()
                    .filter(|e| e.index <= at)
                    .cloned()
                    .collect();
                if let Some(quorum) = self.nodes[i].quorum.as_mut() {
                    if at > 0 {
                        quorum
                            .compact(at, encode_state(&state))
                            .map_err(|e| format!("node {id}: compact failed: {e}"))?;
                        self.log(format!("node {id} compacted at {at}"));
                        self.stats.compactions += 1;
                    }
                }
            }
            if self.rng.chance(5) {
                let id = self.rng.pick(&alive);
                let to = self.rng.pick(&self.voters.clone());
                let i = self.index_of(id);
                if let Some(quorum) = self.nodes[i].quorum.as_mut() {
                    quorum.transfer_leader(to);
                    self.log(format!("node {id} transfer leader to {to}"));
                }
                self.ready(id)?;
            }
        }
        // Partitions.
        if self.rng.chance(15) {
            let a = self.rng.pick(&self.voters.clone());
            let others: Vec<u64> = self.voters.iter().copied().filter(|&v| v != a).collect();
            let symmetric = self.rng.chance(700);
            for b in others {
                self.blocked.insert((a, b));
                if symmetric {
                    self.blocked.insert((b, a));
                }
            }
            self.log(format!("partition: isolate {a} (symmetric {symmetric})"));
        }
        if self.rng.chance(30) && !self.blocked.is_empty() {
            self.blocked.clear();
            self.log("partition healed".into());
        }
        Ok(())
    }

    fn step_tick(&mut self) -> SimResult {
        self.tick += 1;
        for id in self.alive() {
            let i = self.index_of(id);
            if let Some(quorum) = self.nodes[i].quorum.as_mut() {
                quorum.tick();
            }
            self.ready(id)?;
            self.check_leaders()?;
        }
        self.deliver_due()
    }

    fn run(&mut self) -> SimResult {
        for id in self.voters.clone() {
            self.start(id)?;
        }
        while self.tick < CHAOS_TICKS {
            self.chaos_events()?;
            self.step_tick()?;
        }
        // Heal: everyone back, no partitions, a reliable network.
        self.chaos = false;
        self.blocked.clear();
        self.drop_per_mille = 0;
        self.duplicate_per_mille = 0;
        self.delay_ticks_max = 1;
        self.log("final heal".into());
        for id in self.voters.clone() {
            if self.nodes[self.index_of(id)].quorum.is_none() {
                self.start(id)?;
            }
        }
        let deadline = self.tick + LIVENESS_TICKS_MAX;
        let mut proposed: Option<(u64, u64)> = None;
        while self.tick < deadline {
            self.step_tick()?;
            if let Some((index, term)) = proposed {
                let everywhere = self.nodes.iter().all(|n| n.applied_index >= index);
                match self.history.get(&index) {
                    Some(Slot::Payload(t, _)) if *t == term && everywhere => {
                        return self.check_final_states()
                    }
                    Some(_) if everywhere => proposed = None, // replaced: propose again
                    _ => {}
                }
                let leader_changed = self
                    .nodes
                    .iter()
                    .filter_map(|n| n.quorum.as_ref())
                    .all(|q| !q.is_leader() || q.term() != term);
                if leader_changed {
                    proposed = None;
                }
            }
            for id in self.voters.clone() {
                if self.nodes[self.index_of(id)].quorum.is_none() {
                    self.start(id)?;
                }
            }
            if proposed.is_none() {
                let leader = self
                    .nodes
                    .iter()
                    .filter_map(|n| n.quorum.as_ref())
                    .find(|q| q.is_leader())
                    .map(|q| (q.node_id(), q.term()));
                if let Some((id, term)) = leader {
                    if let Some(index) = self.propose(id) {
                        proposed = Some((index, term));
                        self.ready(id)?;
                    }
                }
            }
        }
        Err(format!(
            "liveness: no proposal committed on every node within {LIVENESS_TICKS_MAX} ticks after the heal"
        ))
    }

    /// Every node's state machine is the history's payloads up to its applied index.
    fn check_final_states(&self) -> SimResult {
        for node in &self.nodes {
            let expected: Vec<CommittedEntry> = self
                .history
                .range(..=node.applied_index)
                .filter_map(|(index, slot)| match slot {
                    Slot::Payload(term, payload) => Some(CommittedEntry {
                        index: *index,
                        term: *term,
                        payload: payload.clone(),
                    }),
                    Slot::Empty => None,
                })
                .collect();
            if node.state != expected {
                return Err(format!(
                    "node {}: final state differs from the history ({} vs {} entries)",
                    node.id,
                    node.state.len(),
                    expected.len()
                ));
            }
        }
        Ok(())
    }
}

fn run_seed(seed: u64, stats: &mut Stats) -> Result<(), String> {
    let mut sim = Sim::new(seed);
    let result = catch_unwind(AssertUnwindSafe(|| sim.run())).unwrap_or_else(|panic| {
        let text = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Err(format!("panic: {text}"))
    });
    sim.stats.committed_payloads = sim
        .history
        .values()
        .filter(|slot| matches!(slot, Slot::Payload(..)))
        .count() as u64;
    sim.stats.terms = sim.leaders.len() as u64;
    stats.add(&sim.stats);
    result.map_err(|error| {
        let trace: Vec<String> = sim.trace.iter().cloned().collect();
        format!(
            "seed {seed}: {error}\n  replay: FJORD_SIM_SEED={seed} cargo test -p fjord-raft --test simulation\n  trace tail:\n    {}",
            trace.join("\n    ")
        )
    })
}

#[test]
fn simulation() {
    let seeds: Vec<u64> = match std::env::var("FJORD_SIM_SEED") {
        Ok(seed) => vec![seed.parse().expect("FJORD_SIM_SEED is a number")],
        Err(_) => {
            let count = std::env::var("FJORD_SIM_SEEDS")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(DEFAULT_SEEDS);
            (0..count).collect()
        }
    };
    let mut stats = Stats::default();
    let failures: Vec<String> = seeds
        .iter()
        .filter_map(|&seed| run_seed(seed, &mut stats).err())
        .collect();
    eprintln!("simulation stats over {} seeds: {stats:?}", seeds.len());
    if !failures.is_empty() {
        for failure in failures.iter().take(5) {
            eprintln!("{failure}\n");
        }
        panic!(
            "{} of {} seeds failed; first: {}",
            failures.len(),
            seeds.len(),
            failures[0].lines().next().unwrap_or_default()
        );
    }
    eprintln!("simulation: {} seeds passed", seeds.len());
    // The schedule must actually exercise the quorum.
    if seeds.len() >= 20 {
        assert!(stats.committed_payloads > 0 && stats.crashes > 0 && stats.snapshots_installed > 0);
    }
}
