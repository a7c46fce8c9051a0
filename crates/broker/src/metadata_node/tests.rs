//! Deterministic simulation of three combined broker+controller nodes: the real Raft library
//! on simulated disks (`MemLogStore`), the real `QuorumController`, a simulated network that
//! drops, delays, reorders, duplicates and partitions messages, and crashes that lose unsynced
//! writes. Fake brokers register and heartbeat; an admin creates topics. Checked after every
//! step: at most one active controller per term; a reply is released only once its records are
//! in the releasing node's image. At the end, after healing: every node has the same image,
//! the cluster id formed once, every acknowledged topic exists, every broker is registered and
//! unfenced, and a new request succeeds.
//!
//! `FJORD_SIM_SEEDS=N` runs N seeds, `FJORD_SIM_SEED=S` replays one.

use std::collections::{BTreeMap, BTreeSet};

use fjord_controller::{
    BrokerHeartbeatRequest, BrokerRegistrationRequest, ControllerConfig, ControllerReply,
    ControllerRequest, CreatableTopic, CreateTopicsRequest, ErrorCode, QuorumController,
};
use fjord_metadata::{BrokerEndpoint, BrokerFeature, METADATA_VERSION_FEATURE};
use fjord_raft::{MemLogStore, QuorumConfig};
use uuid::Uuid;

use super::*;

const VOTERS: [u64; 3] = [1, 2, 3];
const TICK_MS: i64 = 100;

/// The shared seeded schedule source.
struct Rng(crate::testing::SimRng);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0.below(n)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.0.percent(percent)
    }
}

#[derive(Debug, Clone)]
enum Token {
    Register(i32),
    Heartbeat(i32),
    Create(String),
}

type Node = MetadataNode<MemLogStore, QuorumController, Token>;

#[derive(Default)]
struct FakeBroker {
    incarnation: u128,
    epoch: Option<i64>,
    in_flight: bool,
}

struct Sim {
    rng: Rng,
    now_ms: i64,
    stores: BTreeMap<u64, MemLogStore>,
    nodes: BTreeMap<u64, Option<Node>>,
    /// (deliver at ms, sequence, to, message)
    network: Vec<(i64, u64, u64, RaftMessage)>,
    sequence: u64,
    cut: BTreeSet<(u64, u64)>,
    brokers: BTreeMap<i32, FakeBroker>,
    acked_topics: BTreeSet<String>,
    next_topic: u64,
    active_by_term: BTreeMap<u64, u64>,
    trace: Vec<String>,
    seed: u64,
    crashes: usize,
}

#[derive(Debug, Default)]
struct Coverage {
    acked_topics: usize,
    crashes: usize,
    terms: usize,
}

fn open_node(id: u64, store: MemLogStore, seed: u64) -> Node {
    let mut quorum = QuorumConfig::new(id, VOTERS.to_vec());
    quorum.seed = seed ^ id;
    let mut config = MetadataNodeConfig::new(quorum);
    // Small, so snapshots and compaction happen during the run.
    config.snapshot_interval_bytes = 4 * 1024;
    let controller = QuorumController::new(ControllerConfig {
        node_id: id as i32,
        seed: seed.wrapping_add(id),
        broker_session_timeout_ms: 3_000,
        ..ControllerConfig::default()
    });
    MetadataNode::open(config, store, controller).expect("a node opens from its store")
}

impl Sim {
    fn new(seed: u64) -> Self {
        let mut stores = BTreeMap::new();
        let mut nodes = BTreeMap::new();
        for id in VOTERS {
            let store = MemLogStore::new();
            nodes.insert(id, Some(open_node(id, store.clone(), seed)));
            stores.insert(id, store);
        }
        let brokers = VOTERS
            .iter()
            .map(|id| {
                (
                    *id as i32,
                    FakeBroker {
                        incarnation: u128::from(*id) << 64 | 1,
                        ..FakeBroker::default()
                    },
                )
            })
            .collect();
        Self {
            rng: Rng(crate::testing::SimRng::new(seed)),
            now_ms: 0,
            stores,
            nodes,
            network: Vec::new(),
            sequence: 0,
            cut: BTreeSet::new(),
            brokers,
            acked_topics: BTreeSet::new(),
            next_topic: 0,
            active_by_term: BTreeMap::new(),
            trace: Vec::new(),
            seed,
            crashes: 0,
        }
    }

    fn fail(&self, what: String) -> ! {
        let tail: Vec<&String> = self.trace.iter().rev().take(30).collect();
        panic!(
            "seed {}: {what}\nlast events (newest first): {tail:#?}\nreplay: FJORD_SIM_SEED={} cargo test -p fjord-broker metadata_node",
            self.seed, self.seed
        );
    }

    fn active_node(&self) -> Option<u64> {
        self.nodes
            .iter()
            .find(|(_, node)| node.as_ref().is_some_and(|n| n.is_active()))
            .map(|(id, _)| *id)
    }

    fn submit(&mut self, request: ControllerRequest, token: Token) -> bool {
        let Some(id) = self.active_node() else {
            return false;
        };
        let now_ms = self.now_ms;
        let node = self.nodes.get_mut(&id).and_then(Option::as_mut).unwrap();
        node.submit(now_ms, request, token).is_ok()
    }

    fn broker_actions(&mut self) {
        let ids: Vec<i32> = self.brokers.keys().copied().collect();
        for broker_id in ids {
            let alive = self
                .nodes
                .get(&(broker_id as u64))
                .is_some_and(Option::is_some);
            let broker = &self.brokers[&broker_id];
            if !alive || broker.in_flight || !self.rng.chance(30) {
                continue;
            }
            let request = match broker.epoch {
                None => ControllerRequest::BrokerRegistration(BrokerRegistrationRequest {
                    broker_id,
                    cluster_id: self
                        .nodes
                        .get(&(broker_id as u64))
                        .and_then(Option::as_ref)
                        .and_then(|n| n.image().cluster_id.clone())
                        .unwrap_or_default(),
                    incarnation_id: Uuid::from_u128(broker.incarnation),
                    listeners: vec![BrokerEndpoint {
                        name: "PLAINTEXT".to_string(),
                        host: "127.0.0.1".to_string(),
                        port: 9090 + broker_id as u16,
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
                Some(epoch) => ControllerRequest::BrokerHeartbeat(BrokerHeartbeatRequest {
                    broker_id,
                    broker_epoch: epoch,
                    current_metadata_offset: self
                        .nodes
                        .get(&(broker_id as u64))
                        .and_then(Option::as_ref)
                        .map_or(-1, |n| n.image().offset),
                    want_fence: false,
                    want_shut_down: false,
                }),
            };
            let token = match broker.epoch {
                None => Token::Register(broker_id),
                Some(_) => Token::Heartbeat(broker_id),
            };
            if self.submit(request, token) {
                if let Some(b) = self.brokers.get_mut(&broker_id) {
                    b.in_flight = true;
                }
            }
        }
    }

    fn admin_action(&mut self) {
        if !self.rng.chance(20) {
            return;
        }
        let name = format!("topic-{}", self.next_topic);
        self.next_topic += 1;
        let request = ControllerRequest::CreateTopics(CreateTopicsRequest {
            topics: vec![CreatableTopic {
                name: name.clone(),
                num_partitions: 1 + self.rng.below(3) as i32,
                replication_factor: 1,
                assignments: Vec::new(),
                configs: Vec::new(),
            }],
            validate_only: false,
        });
        self.submit(request, Token::Create(name));
    }

    fn handle_reply(
        &mut self,
        node_id: u64,
        token: Token,
        reply: Result<ControllerReply, NotController>,
    ) {
        let image = self.nodes[&node_id].as_ref().unwrap().image().clone();
        match token {
            Token::Create(name) => {
                if let Ok(ControllerReply::CreateTopics(created)) = reply {
                    let ok = created.topics.iter().all(|t| t.error.code.is_none());
                    if ok {
                        if image.topic_by_name(&name).is_none() {
                            self.fail(format!("topic {name} acknowledged by node {node_id} before its image has it"));
                        }
                        self.trace
                            .push(format!("{}: node {node_id} acked {name}", self.now_ms));
                        self.acked_topics.insert(name);
                    }
                }
            }
            Token::Register(broker_id) | Token::Heartbeat(broker_id) => {
                let broker = self.brokers.get_mut(&broker_id).unwrap();
                broker.in_flight = false;
                match reply {
                    Ok(ControllerReply::BrokerRegistration(r)) if r.error.code.is_none() => {
                        if image.broker(broker_id).map(|b| b.epoch) != Some(r.broker_epoch) {
                            self.fail(format!("broker {broker_id} registration acknowledged before its image has it"));
                        }
                        broker.epoch = Some(r.broker_epoch);
                    }
                    Ok(ControllerReply::BrokerHeartbeat(r))
                        if r.error.code == ErrorCode::StaleBrokerEpoch =>
                    {
                        broker.epoch = None;
                    }
                    _ => {}
                }
            }
        }
    }

    fn crash(&mut self, id: u64) {
        self.trace.push(format!("{}: crash {id}", self.now_ms));
        self.crashes += 1;
        self.nodes.insert(id, None);
        self.stores[&id].crash();
        // Requests in flight at the crashed node are lost with it.
        if let Some(b) = self.brokers.get_mut(&(id as i32)) {
            b.in_flight = false;
        }
        for b in self.brokers.values_mut() {
            b.in_flight = false;
        }
    }

    fn restart(&mut self, id: u64) {
        self.trace.push(format!("{}: restart {id}", self.now_ms));
        let node = open_node(id, self.stores[&id].clone(), self.seed);
        self.nodes.insert(id, Some(node));
    }

    fn faults(&mut self) {
        if self.rng.chance(2) {
            let id = VOTERS[self.rng.below(3) as usize];
            if self.nodes[&id].is_some() {
                let down = self.nodes.values().filter(|n| n.is_none()).count();
                if down == 0 {
                    self.crash(id);
                }
            } else {
                self.restart(id);
            }
        }
        if self.rng.chance(2) {
            let a = VOTERS[self.rng.below(3) as usize];
            let b = VOTERS[self.rng.below(3) as usize];
            if a != b {
                self.trace.push(format!("{}: cut {a}->{b}", self.now_ms));
                self.cut.insert((a, b));
            }
        }
        if self.rng.chance(4) && !self.cut.is_empty() {
            self.trace.push(format!("{}: heal", self.now_ms));
            self.cut.clear();
        }
    }

    fn deliver(&mut self) -> Vec<(u64, RaftMessage)> {
        let now = self.now_ms;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.network)
            .into_iter()
            .partition(|(at, ..)| *at <= now);
        self.network = later;
        let mut due = due;
        due.sort_by_key(|(at, seq, ..)| (*at, *seq));
        due.into_iter().map(|(_, _, to, m)| (to, m)).collect()
    }

    fn send(&mut self, from: u64, to: u64, message: RaftMessage) {
        if self.cut.contains(&(from, to)) || self.rng.chance(5) {
            return;
        }
        let copies = if self.rng.chance(3) { 2 } else { 1 };
        for _ in 0..copies {
            let at = self.now_ms + TICK_MS * self.rng.below(3) as i64;
            self.sequence += 1;
            self.network.push((at, self.sequence, to, message.clone()));
        }
    }

    fn step_all(&mut self, faults: bool) {
        self.now_ms += TICK_MS;
        if faults {
            self.faults();
        }
        for (to, message) in self.deliver() {
            if let Some(Some(node)) = self.nodes.get_mut(&to) {
                if let Err(error) = node.step(message) {
                    self.fail(format!("node {to} failed a step: {error}"));
                }
            }
        }
        let now_ms = self.now_ms;
        for id in VOTERS {
            if let Some(Some(node)) = self.nodes.get_mut(&id) {
                node.tick(now_ms);
            }
        }
        self.broker_actions();
        if faults {
            self.admin_action();
        }
        for id in VOTERS {
            let output = match self.nodes.get_mut(&id) {
                Some(Some(node)) => node.poll(now_ms),
                _ => continue,
            };
            let output =
                output.unwrap_or_else(|error| self.fail(format!("node {id} failed: {error}")));
            for (to, message) in output.messages {
                self.send(id, to, message);
            }
            for (token, reply) in output.replies {
                self.handle_reply(id, token, reply);
            }
        }
        for (id, node) in &self.nodes {
            let Some(node) = node else { continue };
            if node.is_active() {
                let term = node.quorum().term();
                if let Some(other) = self.active_by_term.insert(term, *id) {
                    if other != *id {
                        self.fail(format!("nodes {other} and {id} both active in term {term}"));
                    }
                }
            }
        }
    }

    fn run(mut self) -> Coverage {
        for _ in 0..400 {
            self.step_all(true);
        }
        // Heal: everyone up, no cuts, then let the cluster settle.
        self.cut.clear();
        for id in VOTERS {
            if self.nodes[&id].is_none() {
                self.restart(id);
            }
        }
        let mut settled = false;
        for _ in 0..600 {
            self.step_all(false);
            if self.converged() {
                settled = true;
                break;
            }
        }
        if !settled {
            let state: Vec<String> = self
                .nodes
                .iter()
                .map(|(id, n)| {
                    let n = n.as_ref().unwrap();
                    let image = n.image();
                    format!(
                        "node {id}: offset {} active {} leader {:?} term {} brokers {:?}",
                        image.offset,
                        n.is_active(),
                        n.leader_hint(),
                        n.quorum().term(),
                        image
                            .brokers
                            .values()
                            .map(|b| (b.id, b.epoch, b.fenced))
                            .collect::<Vec<_>>()
                    )
                })
                .collect();
            self.fail(format!(
                "the healed cluster did not converge within 600 ticks: {state:#?}"
            ));
        }
        // Liveness: a new topic is acknowledged.
        let name = "after-heal".to_string();
        let mut acked = false;
        for _ in 0..300 {
            if !self.acked_topics.contains(&name) && self.active_node().is_some() {
                let request = ControllerRequest::CreateTopics(CreateTopicsRequest {
                    topics: vec![CreatableTopic {
                        name: name.clone(),
                        num_partitions: 1,
                        replication_factor: 3,
                        assignments: Vec::new(),
                        configs: Vec::new(),
                    }],
                    validate_only: false,
                });
                self.submit(request, Token::Create(name.clone()));
            }
            self.step_all(false);
            if self.acked_topics.contains(&name) {
                acked = true;
                break;
            }
        }
        if !acked {
            self.fail("no topic could be created after healing".to_string());
        }
        for _ in 0..50 {
            self.step_all(false);
        }
        self.check_final();
        Coverage {
            acked_topics: self.acked_topics.len(),
            crashes: self.crashes,
            terms: self.active_by_term.len(),
        }
    }

    fn converged(&self) -> bool {
        let images: Vec<&Arc<MetadataImage>> = self
            .nodes
            .values()
            .filter_map(|n| n.as_ref().map(|n| n.image()))
            .collect();
        let all_unfenced = images.first().is_some_and(|image| {
            VOTERS
                .iter()
                .all(|id| image.broker(*id as i32).is_some_and(|b| !b.fenced))
        });
        images.len() == VOTERS.len()
            && images.windows(2).all(|w| w[0].offset == w[1].offset)
            && all_unfenced
            && self.active_node().is_some()
    }

    fn check_final(&self) {
        let images: Vec<(u64, Arc<MetadataImage>)> = self
            .nodes
            .iter()
            .map(|(id, n)| (*id, n.as_ref().unwrap().image().clone()))
            .collect();
        let (first_id, first) = &images[0];
        let Some(cluster_id) = &first.cluster_id else {
            self.fail("no cluster id formed".to_string())
        };
        for (id, image) in &images[1..] {
            if image.offset == first.offset && **image != **first {
                self.fail(format!(
                    "nodes {first_id} and {id} have different images at offset {}",
                    image.offset
                ));
            }
            if image.cluster_id.as_ref() != Some(cluster_id) {
                self.fail(format!(
                    "node {id} has cluster id {:?}, node {first_id} {cluster_id}",
                    image.cluster_id
                ));
            }
        }
        for (id, image) in &images {
            for topic in &self.acked_topics {
                if image.topic_by_name(topic).is_none() {
                    self.fail(format!("acknowledged topic {topic} missing on node {id}"));
                }
            }
        }
    }
}

fn seeds() -> Vec<u64> {
    if let Some(seed) = std::env::var("FJORD_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![seed];
    }
    let count = std::env::var("FJORD_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    (0..count).collect()
}

#[test]
fn three_controller_nodes_agree_under_faults() {
    let mut totals = Coverage::default();
    for seed in seeds() {
        let coverage = Sim::new(seed).run();
        totals.acked_topics += coverage.acked_topics;
        totals.crashes += coverage.crashes;
        totals.terms += coverage.terms;
    }
    println!("{totals:?}");
    // A run that injected nothing or acknowledged nothing checked nothing.
    if seeds().len() > 1 {
        assert!(
            totals.crashes > 0 && totals.terms > seeds().len(),
            "{totals:?}"
        );
        assert!(totals.acked_topics > seeds().len(), "{totals:?}");
    }
}

#[test]
fn a_single_voter_bootstraps_and_answers_after_commit() {
    let store = MemLogStore::new();
    let mut quorum = QuorumConfig::new(1, vec![1]);
    quorum.seed = 7;
    let controller = QuorumController::new(ControllerConfig::default());
    let mut node: MetadataNode<MemLogStore, QuorumController, u32> =
        MetadataNode::open(MetadataNodeConfig::new(quorum), store.clone(), controller).unwrap();
    let mut now_ms = 0;
    while !node.is_active() {
        now_ms += TICK_MS;
        node.tick(now_ms);
        node.poll(now_ms).unwrap();
        assert!(now_ms < 10_000, "a single voter never became active");
    }
    // The bootstrap entry commits on the next poll.
    node.poll(now_ms).unwrap();
    assert!(node.image().cluster_id.is_some());
    let request = ControllerRequest::CreateTopics(CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: "orders".to_string(),
            num_partitions: 3,
            replication_factor: -1,
            assignments: Vec::new(),
            configs: Vec::new(),
        }],
        validate_only: false,
    });
    // Not registered brokers: RF 1 has nobody to place on, so the reply is an error without
    // records, released at once.
    node.submit(now_ms, request, 1).unwrap();
    let output = node.poll(now_ms).unwrap();
    assert_eq!(output.replies.len(), 1);
    let cluster_id = node.image().cluster_id.clone();
    let offset = node.image().offset;
    // Restart from the store: same image.
    drop(node);
    let mut quorum = QuorumConfig::new(1, vec![1]);
    quorum.seed = 7;
    let node: MetadataNode<MemLogStore, QuorumController, u32> = MetadataNode::open(
        MetadataNodeConfig::new(quorum),
        store,
        QuorumController::new(ControllerConfig::default()),
    )
    .unwrap();
    assert_eq!(node.image().cluster_id, cluster_id);
    assert_eq!(node.image().offset, offset);
}
