//! Deterministic simulation of one partition replicated on three brokers (design section 9),
//! built from the pure replication cores: `LeaderState`, `FetcherCore`, `Purgatory` over
//! `SimLog`s, a simulated controller (clean elections from the ISR, AlterPartition with
//! Kafka's validation, fencing), a lossy network (drops, duplicates, delays that reorder),
//! crashes (kill -9: the log survives, the high watermark restarts from an older checkpoint),
//! restarts with new broker epochs, live brokers fenced for a while (zombie leaders), and
//! acks=all producers with `min.insync.replicas = 2`.
//!
//! After every event the design's section 8 invariants are checked: HW <= LEO, a leader's HW
//! never goes down within its epoch, the committed prefix (below the highest HW any leader
//! published) is identical on every ISR member and the current leader, no acknowledged batch
//! is lost, the ISR is never empty and holds the leader, a follower's HW is at most its
//! leader's (for answers of the leader's epoch), every batch on every replica is the one its
//! epoch's leader wrote, epoch caches increase, no truncation below the local HW. At the end
//! the faults stop and every replica must converge on the leader's log.
//!
//! One seeded splitmix64 drives everything; a seed replays bit for bit:
//! `FJORD_SIM_SEED=<n> cargo test -p fjord-broker --test replication_sim -- --nocapture`.
//! `FJORD_SIM_SEEDS=<count>` runs seeds `0..count` (default 300).

use std::collections::{BTreeMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};

use fjord_broker::replication::{
    serve_follower_fetch, AckDecision, AlterPartitionItem, AlterPartitionOutcome, BrokerStatus,
    EpochEndOffset, EpochRequest, FetchOutcome, FetchPartitionRequest, FetchPartitionResponse,
    FetcherConfig, FetcherCore, IsrState, LeaderAndIsr, LeaderOffsets, LeaderState, OffsetsRequest,
    ParkOutcome, PartitionKey, PartitionRegistration, PartitionRequest, Purgatory, ReplicaLog,
    ReplicationConfig, SimLog,
};
use fjord_protocol::batch_builder::{encode_uncompressed, Record};
use fjord_protocol::ResponseError;
use uuid::Uuid;

const NODES: [i32; 3] = [1, 2, 3];
const CONTROLLER: i32 = 0;
const MIN_INSYNC_REPLICAS: usize = 2;
const LAG_MAX_MS: i64 = 1_500;
const TICK_MS: i64 = 50;
const REQUEST_TIMEOUT_MS: i64 = 300;
const PRODUCE_TIMEOUT_MS: i64 = 2_000;
const FETCH_BACKOFF_MS: i64 = 100;
const FETCH_MAX_BYTES: usize = 400;
const START_MS: i64 = 1_700_000_000_000;
const FAULT_PHASE_MS: i64 = 8_000;
const HEAL_PHASE_MS: i64 = 8_000;

fn key() -> PartitionKey {
    (Uuid::from_u128(0xF10D), 0)
}

/// The shared seeded schedule source.
type Rng = fjord_broker::testing::SimRng;

#[derive(Debug, Clone)]
enum Msg {
    Fetch {
        from: i32,
        from_incarnation: u64,
        broker_epoch: i64,
        req: FetchPartitionRequest,
    },
    FetchResp {
        req: FetchPartitionRequest,
        resp: FetchPartitionResponse,
    },
    Epoch {
        from: i32,
        from_incarnation: u64,
        req: EpochRequest,
    },
    EpochResp {
        req: EpochRequest,
        resp: Result<EpochEndOffset, ResponseError>,
    },
    Offsets {
        from: i32,
        from_incarnation: u64,
        req: OffsetsRequest,
    },
    OffsetsResp {
        req: OffsetsRequest,
        resp: Result<LeaderOffsets, ResponseError>,
    },
    AlterPartition {
        from: i32,
        from_incarnation: u64,
        item: AlterPartitionItem,
    },
    AlterPartitionResp {
        item: AlterPartitionItem,
        resp: Result<LeaderAndIsr, ResponseError>,
    },
    Metadata {
        version: u64,
        registration: PartitionRegistration,
        brokers: BTreeMap<i32, BrokerStatus>,
    },
}

#[derive(Debug, Clone)]
enum Event {
    Deliver {
        to: i32,
        incarnation: u64,
        msg: Msg,
    },
    Tick(i32),
    Produce,
    Crash(i32),
    Restart(i32),
    /// The controller's session timeout for a crashed incarnation.
    SessionExpired {
        node: i32,
        incarnation: u64,
    },
    /// Heartbeats of a live broker lost for a while: fenced, then unfenced.
    FenceLive(i32),
    UnfenceLive(i32),
    /// DeleteRecords on the current leader: its log start moves up to its HW.
    DeleteRecords,
}

enum Role {
    Idle,
    Leader(LeaderState),
    Follower(FetcherCore),
}

/// A parked or answered acks=all produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Produce {
    base_offset: i64,
    last_offset: i64,
    epoch: i32,
    payload_id: u32,
}

struct Node {
    id: i32,
    alive: bool,
    incarnation: u64,
    broker_epoch: i64,
    log: SimLog,
    image_version: u64,
    registration: Option<PartitionRegistration>,
    brokers: BTreeMap<i32, BrokerStatus>,
    role: Role,
    purgatory: Purgatory<Produce>,
    in_flight: Option<(PartitionRequest, i64)>,
    alter_in_flight: Option<(AlterPartitionItem, i64)>,
    /// The leader epoch of the last fetch answer that set the high watermark.
    hw_epoch: Option<i32>,
    /// `replication-offset-checkpoint`: written now and then, read at restart.
    hw_checkpoint: i64,
}

struct Controller {
    registration: PartitionRegistration,
    brokers: BTreeMap<i32, BrokerStatus>,
    next_broker_epoch: i64,
    version: u64,
}

impl Controller {
    fn acceptable(&self, id: i32) -> bool {
        self.brokers.get(&id).is_some_and(|b| !b.fenced)
    }

    /// Kafka `PartitionChangeBuilder` for fencing `node` (no ELR): it leaves the ISR unless it
    /// is the last member; a leader is replaced by the first acceptable ISR member, or none.
    fn fence(&mut self, node: i32) -> bool {
        if let Some(status) = self.brokers.get_mut(&node) {
            status.fenced = true;
        }
        let mut registration = self.registration.clone();
        if registration.isr.contains(&node) && registration.isr.len() > 1 {
            registration.isr.retain(|&id| id != node);
        }
        if registration.leader == node {
            registration.leader = registration
                .replicas
                .iter()
                .copied()
                .find(|id| registration.isr.contains(id) && *id != node && self.acceptable(*id))
                .unwrap_or(-1);
        }
        self.change(registration)
    }

    /// Unfencing elects the broker for a leaderless partition whose ISR has it.
    fn unfence(&mut self, node: i32) -> bool {
        if let Some(status) = self.brokers.get_mut(&node) {
            status.fenced = false;
        }
        let mut registration = self.registration.clone();
        if registration.leader == -1 && registration.isr.contains(&node) {
            registration.leader = node;
        }
        self.change(registration)
    }

    fn change(&mut self, next: PartitionRegistration) -> bool {
        let leader_changed = next.leader != self.registration.leader;
        let isr_changed = next.isr != self.registration.isr;
        if !leader_changed && !isr_changed {
            self.version += 1;
            return false;
        }
        let mut next = next;
        next.partition_epoch = self.registration.partition_epoch + 1;
        next.leader_epoch = self.registration.leader_epoch + i32::from(leader_changed);
        self.registration = next;
        self.version += 1;
        true
    }

    /// `validateAlterPartitionData` in the design's order.
    fn alter_partition(
        &mut self,
        from: i32,
        item: &AlterPartitionItem,
    ) -> Result<LeaderAndIsr, ResponseError> {
        let current = &self.registration;
        if item.leader_epoch < current.leader_epoch {
            return Err(ResponseError::FencedLeaderEpoch);
        }
        if from != current.leader {
            return Err(ResponseError::InvalidRequest);
        }
        if item.partition_epoch < current.partition_epoch {
            return Err(ResponseError::InvalidUpdateVersion);
        }
        assert!(
            item.leader_epoch == current.leader_epoch
                && item.partition_epoch == current.partition_epoch,
            "a leader cannot be ahead of the controller"
        );
        let isr = item.new_isr();
        if !isr.contains(&from) || !isr.iter().all(|id| current.replicas.contains(id)) {
            return Err(ResponseError::InvalidRequest);
        }
        for &(id, epoch) in &item.new_isr_with_epochs {
            let eligible = self
                .brokers
                .get(&id)
                .is_some_and(|b| !b.fenced && (epoch == -1 || epoch == b.broker_epoch));
            if !eligible {
                return Err(ResponseError::IneligibleReplica);
            }
        }
        let mut next = current.clone();
        next.isr = isr.into_iter().collect();
        self.change(next);
        Ok(LeaderAndIsr {
            leader_epoch: self.registration.leader_epoch,
            partition_epoch: self.registration.partition_epoch,
            isr: self.registration.isr.clone(),
        })
    }
}

struct Faults {
    enabled: bool,
    /// `FJORD_SIM_POWER_LOSS=1`: a crash also loses the log's unflushed tail (a random cut at
    /// or above the replica's high watermark) instead of keeping it as kill -9 does. Without
    /// KIP-966 this can lose acknowledged writes (design Q1), so it is not part of the suite.
    power_loss: bool,
}

struct Sim {
    rng: Rng,
    now_ms: i64,
    seq: u64,
    queue: BTreeMap<(i64, u64), Event>,
    nodes: Vec<Node>,
    controller: Controller,
    faults: Faults,
    next_tag: u64,
    /// `(epoch, base offset)` → payload of every batch a leader wrote.
    written: BTreeMap<(i32, i64), u32>,
    acked: Vec<Produce>,
    /// The batches below the highest high watermark any leader published.
    committed: Vec<(i64, i64, i32, u32)>,
    committed_offset: i64,
    leader_hw: BTreeMap<(i32, u64, i32), i64>,
    /// Per node, what its log looked like at the last full check (the per-batch checks are
    /// skipped while nothing they read changed).
    checked: Vec<Option<LogFingerprint>>,
    /// The last events, formatted only when a seed fails.
    trace: VecDeque<(i64, Event)>,
    stats: Stats,
}

#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    acked: u64,
    refused: u64,
    timed_out: u64,
    crashes: u64,
    elections: u64,
    truncations: u64,
    out_of_range: u64,
    restarted_at: u64,
}

/// What the per-batch checks of one node depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LogFingerprint {
    log_start_offset: i64,
    log_end_offset: i64,
    batches: usize,
    last_payload: Option<u32>,
    committed_offset: i64,
    in_isr_or_leader: bool,
}

fn batch_key(log: &SimLog) -> Vec<(i64, i64, i32, u32)> {
    log.batches()
        .iter()
        .map(|b| (b.base_offset, b.last_offset, b.epoch, b.payload_id))
        .collect()
}

impl Sim {
    fn new(seed: u64) -> Self {
        let brokers: BTreeMap<i32, BrokerStatus> = NODES
            .iter()
            .map(|&id| {
                (
                    id,
                    BrokerStatus {
                        broker_epoch: i64::from(id),
                        fenced: false,
                        in_controlled_shutdown: false,
                    },
                )
            })
            .collect();
        let nodes = NODES
            .iter()
            .map(|&id| Node {
                id,
                alive: true,
                incarnation: 0,
                broker_epoch: i64::from(id),
                log: SimLog::new(),
                image_version: 0,
                registration: None,
                brokers: BTreeMap::new(),
                role: Role::Idle,
                purgatory: Purgatory::new(64),
                in_flight: None,
                alter_in_flight: None,
                hw_epoch: None,
                hw_checkpoint: 0,
            })
            .collect();
        let mut sim = Sim {
            rng: Rng::new(seed),
            now_ms: START_MS,
            seq: 0,
            queue: BTreeMap::new(),
            nodes,
            controller: Controller {
                registration: PartitionRegistration {
                    leader: 1,
                    leader_epoch: 0,
                    partition_epoch: 0,
                    replicas: NODES.to_vec(),
                    isr: NODES.to_vec(),
                },
                brokers,
                next_broker_epoch: 100,
                version: 1,
            },
            faults: Faults {
                enabled: true,
                power_loss: std::env::var("FJORD_SIM_POWER_LOSS").is_ok_and(|v| v == "1"),
            },
            next_tag: 0,
            written: BTreeMap::new(),
            acked: Vec::new(),
            committed: Vec::new(),
            committed_offset: 0,
            leader_hw: BTreeMap::new(),
            checked: vec![None; NODES.len()],
            trace: VecDeque::new(),
            stats: Stats::default(),
        };
        sim.publish();
        for id in NODES {
            let at = sim.rng.range(0, TICK_MS);
            sim.schedule(at, Event::Tick(id));
        }
        let at = sim.rng.range(10, 100);
        sim.schedule(at, Event::Produce);
        sim
    }

    fn schedule(&mut self, delay_ms: i64, event: Event) {
        self.seq += 1;
        self.queue.insert((self.now_ms + delay_ms, self.seq), event);
    }

    fn node(&mut self, id: i32) -> &mut Node {
        &mut self.nodes[(id - 1) as usize]
    }

    /// Sends over the lossy network (the controller's metadata pushes are never lost: brokers
    /// would fetch them from the metadata log).
    fn send(&mut self, to: i32, incarnation: u64, msg: Msg) {
        let reliable = matches!(msg, Msg::Metadata { .. });
        if self.faults.enabled && !reliable && self.rng.percent(4) {
            return;
        }
        let copies = if self.faults.enabled && self.rng.percent(2) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut delay = self.rng.range(1, 25);
            if self.faults.enabled && self.rng.percent(5) {
                delay += self.rng.range(50, 600);
            }
            self.schedule(
                delay,
                Event::Deliver {
                    to,
                    incarnation,
                    msg: msg.clone(),
                },
            );
        }
    }

    fn publish(&mut self) {
        let version = self.controller.version;
        let registration = self.controller.registration.clone();
        let brokers = self.controller.brokers.clone();
        for id in NODES {
            let (alive, incarnation) = {
                let node = self.node(id);
                (node.alive, node.incarnation)
            };
            if alive {
                self.send(
                    id,
                    incarnation,
                    Msg::Metadata {
                        version,
                        registration: registration.clone(),
                        brokers: brokers.clone(),
                    },
                );
            }
        }
    }

    fn log_event(&mut self, event: &Event) {
        if self.trace.len() == 40 {
            self.trace.pop_front();
        }
        self.trace
            .push_back((self.now_ms - START_MS, event.clone()));
    }

    fn run(&mut self) -> Result<(), String> {
        let fault_end = START_MS + FAULT_PHASE_MS;
        let end = fault_end + HEAL_PHASE_MS;
        let mut healed = false;
        while let Some(((at, _), event)) = self.queue.pop_first() {
            if at > end {
                break;
            }
            self.now_ms = at;
            if !healed && at >= fault_end {
                healed = true;
                self.heal();
            }
            self.log_event(&event);
            self.handle(event)?;
            self.check()?;
        }
        self.check_converged()
    }

    fn heal(&mut self) {
        self.faults.enabled = false;
        for id in NODES {
            if !self.node(id).alive {
                self.restart(id);
            } else if self.controller.brokers.get(&id).is_some_and(|b| b.fenced) {
                self.controller.unfence(id);
                self.publish();
            }
        }
    }

    fn handle(&mut self, event: Event) -> Result<(), String> {
        match event {
            Event::Deliver {
                to,
                incarnation,
                msg,
            } => {
                if to == CONTROLLER {
                    self.controller_receive(msg);
                    return Ok(());
                }
                let node = self.node(to);
                if !node.alive || node.incarnation != incarnation {
                    return Ok(());
                }
                self.node_receive(to, msg)
            }
            Event::Tick(id) => {
                self.tick(id)?;
                let jitter = self.rng.range(0, 20);
                self.schedule(TICK_MS + jitter, Event::Tick(id));
                Ok(())
            }
            Event::Produce => {
                self.produce()?;
                if self.faults.enabled {
                    // Quiet spells too: leaders elected and replaced without writing.
                    let next = if self.rng.percent(12) {
                        self.rng.range(300, 1_500)
                    } else {
                        self.rng.range(20, 150)
                    };
                    self.schedule(next, Event::Produce);
                    if self.rng.percent(4) {
                        let id = NODES[self.rng.below(3) as usize];
                        let delay = self.rng.range(0, 500);
                        self.schedule(delay, Event::Crash(id));
                    } else if self.rng.percent(3) {
                        let delay = self.rng.range(0, 300);
                        self.schedule(delay, Event::DeleteRecords);
                    } else if self.rng.percent(4) {
                        // Mostly the leader: its replacement is what fencing tests.
                        let leader = self.controller.registration.leader;
                        let id = if leader > 0 && self.rng.percent(70) {
                            leader
                        } else {
                            NODES[self.rng.below(3) as usize]
                        };
                        let delay = self.rng.range(0, 300);
                        self.schedule(delay, Event::FenceLive(id));
                    }
                }
                Ok(())
            }
            Event::Crash(id) => {
                if self.faults.enabled && self.node(id).alive {
                    self.crash(id);
                }
                Ok(())
            }
            Event::Restart(id) => {
                if !self.node(id).alive {
                    self.restart(id);
                }
                Ok(())
            }
            Event::SessionExpired { node, incarnation } => {
                let n = self.node(node);
                if !n.alive && n.incarnation == incarnation && self.controller.fence(node) {
                    self.stats.elections += 1;
                }
                self.publish();
                Ok(())
            }
            Event::FenceLive(id) => {
                if self.faults.enabled
                    && self.node(id).alive
                    && !self.controller.brokers[&id].fenced
                {
                    self.controller.fence(id);
                    self.publish();
                    let back = self.rng.range(200, 2_000);
                    self.schedule(back, Event::UnfenceLive(id));
                }
                Ok(())
            }
            Event::DeleteRecords => {
                let leader = self.controller.registration.leader;
                if leader < 0 {
                    return Ok(());
                }
                let now = self.now_ms;
                let (start, hw) = {
                    let log = &self.node(leader).log;
                    (log.log_start_offset(), log.high_watermark())
                };
                let offset = self.rng.range(start, hw);
                let node = self.node(leader);
                if node.alive && matches!(node.role, Role::Leader(_)) {
                    node.log
                        .maybe_increment_log_start_offset(offset, now)
                        .map_err(|e| e.to_string())?;
                }
                Ok(())
            }
            Event::UnfenceLive(id) => {
                if self.node(id).alive && self.controller.brokers[&id].fenced {
                    self.controller.unfence(id);
                    self.publish();
                }
                Ok(())
            }
        }
    }

    fn crash(&mut self, id: i32) {
        self.stats.crashes += 1;
        if self.faults.power_loss {
            let log = &self.nodes[(id - 1) as usize].log;
            let high_watermark = log.high_watermark();
            let mut cuts: Vec<i64> = log
                .batches()
                .iter()
                .map(|b| b.base_offset)
                .filter(|&base| base >= high_watermark)
                .collect();
            cuts.push(log.log_end_offset());
            let cut = cuts[self.rng.below(cuts.len() as u64) as usize];
            let _ = self.nodes[(id - 1) as usize].log.truncate_to(cut);
        }
        let node = self.node(id);
        node.alive = false;
        node.role = Role::Idle;
        let lost = node.purgatory.fail_partition(&key());
        node.in_flight = None;
        node.alter_in_flight = None;
        let incarnation = node.incarnation;
        self.stats.timed_out += lost.len() as u64;
        let session = self.rng.range(300, 2_500);
        self.schedule(
            session,
            Event::SessionExpired {
                node: id,
                incarnation,
            },
        );
        let back = self.rng.range(100, 4_000);
        self.schedule(back, Event::Restart(id));
    }

    /// A new incarnation: the log as kill -9 left it, the high watermark from the checkpoint,
    /// no state; the controller registers it with a new broker epoch (fencing the old one).
    fn restart(&mut self, id: i32) {
        let epoch = self.controller.next_broker_epoch;
        self.controller.next_broker_epoch += 1;
        let node = self.node(id);
        node.alive = true;
        node.incarnation += 1;
        node.broker_epoch = epoch;
        let checkpoint = node.hw_checkpoint;
        node.log.set_initial_high_watermark(checkpoint);
        node.image_version = 0;
        node.registration = None;
        node.brokers.clear();
        node.role = Role::Idle;
        node.hw_epoch = None;
        self.controller.fence(id);
        if let Some(status) = self.controller.brokers.get_mut(&id) {
            status.broker_epoch = epoch;
        }
        self.controller.unfence(id);
        self.publish();
        self.schedule(1, Event::Tick(id));
    }

    fn controller_receive(&mut self, msg: Msg) {
        let Msg::AlterPartition {
            from,
            from_incarnation,
            item,
        } = msg
        else {
            return;
        };
        let before = self.controller.version;
        let resp = self.controller.alter_partition(from, &item);
        if self.controller.version != before {
            self.publish();
        }
        self.send(
            from,
            from_incarnation,
            Msg::AlterPartitionResp { item, resp },
        );
    }

    fn node_receive(&mut self, id: i32, msg: Msg) -> Result<(), String> {
        let now = self.now_ms;
        match msg {
            Msg::Metadata {
                version,
                registration,
                brokers,
            } => self.apply_metadata(id, version, registration, brokers),
            Msg::Fetch {
                from,
                from_incarnation,
                broker_epoch,
                req,
            } => {
                let node = &mut self.nodes[(id - 1) as usize];
                let (resp, effects) = match &mut node.role {
                    Role::Leader(leader) => serve_follower_fetch(
                        leader,
                        &mut node.log,
                        &node.brokers,
                        (from, broker_epoch),
                        &req,
                        FETCH_MAX_BYTES,
                        now,
                    ),
                    _ => (
                        FetchPartitionResponse::error(ResponseError::NotLeaderOrFollower),
                        Default::default(),
                    ),
                };
                if let Some(item) = effects.alter_partition {
                    self.send_alter(id, item);
                }
                if effects.high_watermark_moved {
                    self.complete_produces(id)?;
                }
                self.send(from, from_incarnation, Msg::FetchResp { req, resp });
                Ok(())
            }
            Msg::FetchResp { req, resp } => {
                let node = &mut self.nodes[(id - 1) as usize];
                if node
                    .in_flight
                    .is_some_and(|(r, _)| r == PartitionRequest::Fetch(req))
                {
                    node.in_flight = None;
                }
                let Role::Follower(core) = &mut node.role else {
                    return Ok(());
                };
                let outcome = core
                    .on_fetch_response(&req, resp, &mut node.log, now)
                    .map_err(|e| format!("follower {id} storage error {e}"))?;
                match outcome {
                    FetchOutcome::Appended { .. } => node.hw_epoch = Some(req.current_leader_epoch),
                    FetchOutcome::OutOfRange => self.stats.out_of_range += 1,
                    FetchOutcome::Truncated {
                        below_high_watermark,
                        offset,
                        ..
                    } => {
                        self.stats.truncations += 1;
                        if below_high_watermark {
                            return Err(format!(
                                "node {id} truncated to {offset} below its high watermark"
                            ));
                        }
                    }
                    _ => {}
                }
                Ok(())
            }
            Msg::Epoch {
                from,
                from_incarnation,
                req,
            } => {
                let node = &self.nodes[(id - 1) as usize];
                let resp = match &node.role {
                    Role::Leader(leader) => {
                        if req.current_leader_epoch < leader.leader_epoch() {
                            Err(ResponseError::FencedLeaderEpoch)
                        } else if req.current_leader_epoch > leader.leader_epoch() {
                            Err(ResponseError::UnknownLeaderEpoch)
                        } else {
                            Ok(node
                                .log
                                .end_offset_for_epoch(req.leader_epoch)
                                .map_or(EpochEndOffset::UNDEFINED, |(epoch, end_offset)| {
                                    EpochEndOffset { epoch, end_offset }
                                }))
                        }
                    }
                    _ => Err(ResponseError::NotLeaderOrFollower),
                };
                self.send(from, from_incarnation, Msg::EpochResp { req, resp });
                Ok(())
            }
            Msg::EpochResp { req, resp } => {
                let node = &mut self.nodes[(id - 1) as usize];
                if node
                    .in_flight
                    .is_some_and(|(r, _)| r == PartitionRequest::OffsetForLeaderEpoch(req))
                {
                    node.in_flight = None;
                }
                let Role::Follower(core) = &mut node.role else {
                    return Ok(());
                };
                let outcome = core
                    .on_epoch_response(&req, resp, &mut node.log, now)
                    .map_err(|e| format!("follower {id} storage error {e}"))?;
                if let FetchOutcome::Truncated {
                    below_high_watermark: true,
                    offset,
                    ..
                } = outcome
                {
                    return Err(format!("node {id} truncated to {offset} below its HW"));
                }
                Ok(())
            }
            Msg::Offsets {
                from,
                from_incarnation,
                req,
            } => {
                let node = &self.nodes[(id - 1) as usize];
                let resp = match &node.role {
                    Role::Leader(leader) if req.current_leader_epoch == leader.leader_epoch() => {
                        Ok(LeaderOffsets {
                            earliest: node.log.log_start_offset(),
                            latest: node.log.log_end_offset(),
                        })
                    }
                    Role::Leader(leader) if req.current_leader_epoch < leader.leader_epoch() => {
                        Err(ResponseError::FencedLeaderEpoch)
                    }
                    Role::Leader(_) => Err(ResponseError::UnknownLeaderEpoch),
                    _ => Err(ResponseError::NotLeaderOrFollower),
                };
                self.send(from, from_incarnation, Msg::OffsetsResp { req, resp });
                Ok(())
            }
            Msg::OffsetsResp { req, resp } => {
                let node = &mut self.nodes[(id - 1) as usize];
                if node
                    .in_flight
                    .is_some_and(|(r, _)| r == PartitionRequest::ListOffsets(req))
                {
                    node.in_flight = None;
                }
                let Role::Follower(core) = &mut node.role else {
                    return Ok(());
                };
                let outcome = core
                    .on_leader_offsets(&req, resp, &mut node.log, now)
                    .map_err(|e| format!("follower {id} storage error {e}"))?;
                if let FetchOutcome::RestartedAt { .. } = outcome {
                    self.stats.restarted_at += 1;
                }
                Ok(())
            }
            Msg::AlterPartitionResp { item, resp } => {
                let node = &mut self.nodes[(id - 1) as usize];
                if node
                    .alter_in_flight
                    .as_ref()
                    .is_some_and(|(i, _)| *i == item)
                {
                    node.alter_in_flight = None;
                }
                let Role::Leader(leader) = &mut node.role else {
                    return Ok(());
                };
                let outcome = leader.on_alter_partition_result(
                    &item,
                    resp,
                    &mut node.log,
                    now,
                    &node.brokers,
                );
                match outcome {
                    AlterPartitionOutcome::Committed { .. } => self.complete_produces(id)?,
                    AlterPartitionOutcome::Retry(item) => self.send_alter(id, item),
                    _ => {}
                }
                Ok(())
            }
            Msg::AlterPartition { .. } => Ok(()),
        }
    }

    fn send_alter(&mut self, id: i32, item: AlterPartitionItem) {
        let now = self.now_ms;
        let node = self.node(id);
        node.alter_in_flight = Some((item.clone(), now));
        let incarnation = node.incarnation;
        self.send(
            CONTROLLER,
            0,
            Msg::AlterPartition {
                from: id,
                from_incarnation: incarnation,
                item,
            },
        );
    }

    /// Kafka `ReplicaManager.applyDelta` for this partition: become leader, follow, or resign.
    fn apply_metadata(
        &mut self,
        id: i32,
        version: u64,
        registration: PartitionRegistration,
        brokers: BTreeMap<i32, BrokerStatus>,
    ) -> Result<(), String> {
        let now = self.now_ms;
        let node = &mut self.nodes[(id - 1) as usize];
        if version <= node.image_version {
            return Ok(());
        }
        node.image_version = version;
        node.brokers = brokers;
        if node
            .registration
            .as_ref()
            .is_some_and(|r| r.partition_epoch >= registration.partition_epoch)
        {
            return Ok(());
        }
        node.registration = Some(registration.clone());
        let config = ReplicationConfig {
            replica_lag_time_max_ms: LAG_MAX_MS,
            min_insync_replicas: MIN_INSYNC_REPLICAS,
        };
        let mut resigned = Vec::new();
        if registration.leader == id {
            match &mut node.role {
                Role::Leader(leader) => {
                    leader
                        .apply_registration(&registration, &mut node.log, now)
                        .map_err(|e| e.to_string())?;
                }
                _ => {
                    let leader = LeaderState::become_leader(
                        key().0,
                        key().1,
                        (id, node.broker_epoch),
                        &registration,
                        config,
                        &mut node.log,
                        now,
                    )
                    .map_err(|e| e.to_string())?;
                    node.role = Role::Leader(leader);
                    node.in_flight = None;
                    node.alter_in_flight = None;
                }
            }
            if let Role::Leader(leader) = &node.role {
                leader.maybe_increment_high_watermark(&mut node.log, now, &node.brokers);
            }
        } else {
            if matches!(node.role, Role::Leader(_)) {
                resigned = node.purgatory.fail_partition(&key());
                node.role = Role::Idle;
                node.alter_in_flight = None;
            }
            if registration.leader < 0 {
                node.role = Role::Idle;
            } else {
                let same_leader = matches!(&node.role, Role::Follower(core) if core.leader_id == registration.leader);
                if !same_leader {
                    node.role = Role::Follower(FetcherCore::new(
                        registration.leader,
                        FetcherConfig {
                            fetch_backoff_ms: FETCH_BACKOFF_MS,
                            max_partitions: 1,
                        },
                    ));
                    node.in_flight = None;
                }
                if let Role::Follower(core) = &mut node.role {
                    core.add_partition(key(), registration.leader_epoch, &node.log)
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        self.stats.timed_out += resigned.len() as u64;
        self.complete_produces(id)
    }

    fn tick(&mut self, id: i32) -> Result<(), String> {
        let now = self.now_ms;
        let checkpoint = self.rng.percent(30);
        let node = &mut self.nodes[(id - 1) as usize];
        if !node.alive {
            return Ok(());
        }
        if checkpoint {
            node.hw_checkpoint = node.log.high_watermark();
        }
        let mut outgoing = None;
        let mut alter = None;
        match &mut node.role {
            Role::Idle => {}
            Role::Follower(core) => {
                let idle = node
                    .in_flight
                    .is_none_or(|(_, sent)| now - sent > REQUEST_TIMEOUT_MS);
                if idle {
                    let request = core
                        .poll(&key(), &mut node.log, now)
                        .map_err(|e| format!("follower {id} storage error {e}"))?;
                    if let Some(request) = request {
                        node.in_flight = Some((request, now));
                        outgoing = Some((core.leader_id, request));
                    }
                }
            }
            Role::Leader(leader) => {
                // Stale or superseded in-flight AlterPartition.
                let pending = match leader.isr_state() {
                    IsrState::Committed { .. } => None,
                    IsrState::PendingExpand { sent, .. } | IsrState::PendingShrink { sent, .. } => {
                        Some(sent.clone())
                    }
                };
                if node.alter_in_flight.as_ref().map(|(i, _)| i) != pending.as_ref() {
                    node.alter_in_flight = None;
                }
                if let Some(item) = leader.maybe_shrink_isr(now, node.log.log_end_offset()) {
                    alter = Some(item);
                } else if let (Some(item), Some((_, sent))) = (&pending, &node.alter_in_flight) {
                    if now - sent > REQUEST_TIMEOUT_MS {
                        alter = Some(item.clone());
                    }
                } else if let (Some(item), None) = (&pending, &node.alter_in_flight) {
                    // Answered with "wait for metadata", or lost: ask again now and then.
                    if now % 1_000 < TICK_MS {
                        alter = Some(item.clone());
                    }
                }
                let expired = node.purgatory.expire(now);
                self.stats.timed_out += expired.len() as u64;
            }
        }
        if let Some(item) = alter {
            self.send_alter(id, item);
        }
        if let Some((leader_id, request)) = outgoing {
            let node = self.node(id);
            let (incarnation, broker_epoch) = (node.incarnation, node.broker_epoch);
            let leader_incarnation = self.node(leader_id).incarnation;
            let msg = match request {
                PartitionRequest::Fetch(req) => Msg::Fetch {
                    from: id,
                    from_incarnation: incarnation,
                    broker_epoch,
                    req,
                },
                PartitionRequest::OffsetForLeaderEpoch(req) => Msg::Epoch {
                    from: id,
                    from_incarnation: incarnation,
                    req,
                },
                PartitionRequest::ListOffsets(req) => Msg::Offsets {
                    from: id,
                    from_incarnation: incarnation,
                    req,
                },
            };
            self.send(leader_id, leader_incarnation, msg);
        }
        Ok(())
    }

    /// An acks=all produce to a broker that believes it leads (possibly a zombie).
    fn produce(&mut self) -> Result<(), String> {
        let leaders: Vec<i32> = self
            .nodes
            .iter()
            .filter(|n| n.alive && matches!(n.role, Role::Leader(_)))
            .map(|n| n.id)
            .collect();
        if leaders.is_empty() {
            return Ok(());
        }
        let id = leaders[self.rng.below(leaders.len() as u64) as usize];
        let count = self.rng.range(1, 3) as usize;
        self.next_tag += 1;
        let tag = self.next_tag;
        let now = self.now_ms;
        let values: Vec<Vec<u8>> = (0..count)
            .map(|i| format!("v{tag}-{i}").into_bytes())
            .collect();
        let records: Vec<Record<'_>> = values
            .iter()
            .map(|v| Record {
                value: Some(v),
                ..Record::default()
            })
            .collect();
        let mut batch = encode_uncompressed(0, now, 0, &records);
        let node = &mut self.nodes[(id - 1) as usize];
        let Role::Leader(leader) = &mut node.role else {
            return Ok(());
        };
        if leader.check_append(true).is_err() {
            self.stats.refused += 1;
            return Ok(());
        }
        let epoch = leader.leader_epoch();
        node.log
            .append_as_leader(&mut batch, epoch, now)
            .map_err(|e| e.to_string())?;
        let stored = node.log.batches().last().cloned().ok_or("no batch")?;
        let produce = Produce {
            base_offset: stored.base_offset,
            last_offset: stored.last_offset,
            epoch,
            payload_id: stored.payload_id,
        };
        if let Some(previous) = self
            .written
            .insert((epoch, stored.base_offset), stored.payload_id)
        {
            return Err(format!(
                "two batches written at epoch {epoch} offset {} ({previous})",
                stored.base_offset
            ));
        }
        leader.maybe_increment_high_watermark(&mut node.log, now, &node.brokers);
        let hw = node.log.high_watermark();
        let required = produce.last_offset + 1;
        match leader.check_enough_replicas(required, hw) {
            AckDecision::Satisfied => self.ack(id, produce)?,
            AckDecision::NotEnoughReplicasAfterAppend => self.stats.refused += 1,
            AckDecision::Wait => {
                let node = &mut self.nodes[(id - 1) as usize];
                match node.purgatory.try_complete_or_park(
                    key(),
                    required,
                    hw,
                    now + PRODUCE_TIMEOUT_MS,
                    produce,
                ) {
                    Ok(ParkOutcome::Parked) => {}
                    Ok(ParkOutcome::Completed(_)) => return Err("fast path after Wait".into()),
                    Err(_) => self.stats.refused += 1,
                }
            }
        }
        self.complete_produces(id)
    }

    /// DelayedProduce completion after the high watermark moved.
    fn complete_produces(&mut self, id: i32) -> Result<(), String> {
        let node = &mut self.nodes[(id - 1) as usize];
        let Role::Leader(leader) = &node.role else {
            return Ok(());
        };
        let hw = node.log.high_watermark();
        let done = node.purgatory.on_high_watermark(&key(), hw);
        let decisions: Vec<(Produce, AckDecision)> = done
            .into_iter()
            .map(|p| (p, leader.check_enough_replicas(p.last_offset + 1, hw)))
            .collect();
        for (produce, decision) in decisions {
            match decision {
                AckDecision::Satisfied => self.ack(id, produce)?,
                AckDecision::NotEnoughReplicasAfterAppend => self.stats.refused += 1,
                AckDecision::Wait => return Err("purgatory completed below the HW".into()),
            }
        }
        Ok(())
    }

    fn ack(&mut self, id: i32, produce: Produce) -> Result<(), String> {
        let node = &self.nodes[(id - 1) as usize];
        let Role::Leader(leader) = &node.role else {
            return Err("ack from a non-leader".into());
        };
        // Invariant 7: acks=all success only with HW past it and maximal ISR >= min ISR.
        if node.log.high_watermark() <= produce.last_offset
            || leader.isr_state().maximal_isr().len() < leader.effective_min_isr()
        {
            return Err(format!("ack of {produce:?} without enough replicas"));
        }
        self.stats.acked += 1;
        self.acked.push(produce);
        // The ack is committed data: the committed prefix must be extended before checking.
        self.update_committed()
    }

    /// Extends the committed prefix from leaders whose HW passed it, checking agreement.
    fn update_committed(&mut self) -> Result<(), String> {
        for index in 0..self.nodes.len() {
            let node = &self.nodes[index];
            if !node.alive || !matches!(node.role, Role::Leader(_)) {
                continue;
            }
            let hw = node.log.high_watermark();
            let below: Vec<_> = batch_key(&node.log)
                .into_iter()
                .filter(|b| b.1 < hw)
                .collect();
            // Agreement with what is already committed (and the leader's log start).
            for (mine, reference) in below.iter().zip(
                self.committed
                    .iter()
                    .filter(|b| b.1 >= node.log.log_start_offset()),
            ) {
                if mine != reference {
                    return Err(format!(
                        "leader {} disagrees with committed batch {reference:?}: {mine:?}",
                        node.id
                    ));
                }
            }
            if hw > self.committed_offset {
                self.committed_offset = hw;
                // Below the leader's log start (DeleteRecords) the old reference stays.
                let first = below.first().map_or(hw, |b| b.0);
                let mut committed: Vec<_> = self
                    .committed
                    .iter()
                    .copied()
                    .filter(|b| b.1 < first)
                    .collect();
                committed.extend(below);
                self.committed = committed;
            }
        }
        Ok(())
    }

    fn check(&mut self) -> Result<(), String> {
        self.update_committed()?;
        let registration = self.controller.registration.clone();
        if registration.isr.is_empty() {
            return Err("empty ISR".into());
        }
        if registration.leader >= 0 && !registration.isr.contains(&registration.leader) {
            return Err(format!("leader outside the ISR: {registration:?}"));
        }
        for produce in &self.acked {
            let entry = (
                produce.base_offset,
                produce.last_offset,
                produce.epoch,
                produce.payload_id,
            );
            let found = self
                .committed
                .binary_search_by_key(&produce.base_offset, |b| b.0)
                .is_ok_and(|index| self.committed[index] == entry);
            if !found {
                return Err(format!("acknowledged batch {produce:?} not committed"));
            }
        }
        let current_leader = registration.leader;
        let leader_hw = self
            .nodes
            .iter()
            .find(|n| {
                n.alive
                    && matches!(&n.role, Role::Leader(l) if l.leader_epoch() == registration.leader_epoch)
            })
            .map(|n| n.log.high_watermark());
        for (slot, node) in self.nodes.iter().enumerate() {
            let log = &node.log;
            let in_isr_or_leader = registration.isr.contains(&node.id) || node.id == current_leader;
            let fingerprint = LogFingerprint {
                log_start_offset: log.log_start_offset(),
                log_end_offset: log.log_end_offset(),
                batches: log.batches().len(),
                last_payload: log.batches().last().map(|b| b.payload_id),
                committed_offset: self.committed_offset,
                in_isr_or_leader,
            };
            let unchanged = self.checked[slot] == Some(fingerprint);
            self.checked[slot] = Some(fingerprint);
            if log.high_watermark() > log.log_end_offset()
                || log.log_start_offset() > log.high_watermark()
            {
                return Err(format!("node {}: offsets out of order", node.id));
            }
            if log.high_watermark() > self.committed_offset {
                return Err(format!(
                    "node {} HW {} above the committed offset {}",
                    node.id,
                    log.high_watermark(),
                    self.committed_offset
                ));
            }
            // Epoch cache increasing, within the log.
            let entries = log.epoch_entries();
            for pair in entries.windows(2) {
                if pair[0].0 >= pair[1].0 || pair[0].1 >= pair[1].1 {
                    return Err(format!("node {} epoch cache {entries:?}", node.id));
                }
            }
            if entries.last().is_some_and(|e| e.1 > log.log_end_offset()) {
                return Err(format!("node {} epoch beyond the log end", node.id));
            }
            // Every batch is the one its epoch's leader wrote.
            for batch in log.batches().iter().filter(|_| !unchanged) {
                if self.written.get(&(batch.epoch, batch.base_offset)) != Some(&batch.payload_id) {
                    return Err(format!(
                        "node {} holds a batch no leader of epoch {} wrote at {}",
                        node.id, batch.epoch, batch.base_offset
                    ));
                }
            }
            // The committed prefix on every ISR member and on the current leader.
            if in_isr_or_leader && !unchanged {
                let batches = log.batches();
                let first = batches.first().map_or(i64::MAX, |b| b.base_offset);
                let skip = self
                    .committed
                    .partition_point(|b| b.1 < log.log_start_offset());
                for (index, batch) in self.committed.iter().enumerate().skip(skip) {
                    let position = index - skip;
                    let same = batches.get(position).is_some_and(|mine| {
                        (
                            mine.base_offset,
                            mine.last_offset,
                            mine.epoch,
                            mine.payload_id,
                        ) == *batch
                    });
                    if !same || (position == 0 && first != batch.0) {
                        return Err(format!(
                            "ISR member {} lacks committed batch {batch:?}",
                            node.id
                        ));
                    }
                }
            }
            // A follower's HW is at most its leader's, for answers of the leader's epoch (or
            // its own log start: a new leader's HW may trail an old leader's DeleteRecords).
            if let (Role::Follower(_), Some(leader_hw)) = (&node.role, leader_hw) {
                if node.hw_epoch == Some(registration.leader_epoch)
                    && log.high_watermark() > leader_hw.max(log.log_start_offset())
                {
                    return Err(format!(
                        "follower {} HW {} above leader HW {leader_hw}",
                        node.id,
                        log.high_watermark()
                    ));
                }
            }
            // A leader's HW never goes down within its epoch.
            if let Role::Leader(leader) = &node.role {
                let key = (node.id, node.incarnation, leader.leader_epoch());
                let hw = log.high_watermark();
                if let Some(&previous) = self.leader_hw.get(&key) {
                    if hw < previous {
                        return Err(format!(
                            "leader {} HW went from {previous} to {hw}",
                            node.id
                        ));
                    }
                }
                self.leader_hw.insert(key, hw);
            }
        }
        Ok(())
    }

    /// Every node's state, for failure reports.
    fn describe(&self) -> String {
        let mut out = format!("controller: {:?}\n", self.controller.registration);
        for node in &self.nodes {
            let role = match &node.role {
                Role::Idle => "idle".to_string(),
                Role::Leader(leader) => format!(
                    "leader epoch {} isr {:?} start {}",
                    leader.leader_epoch(),
                    leader.isr_state(),
                    leader.leader_epoch_start_offset()
                ),
                Role::Follower(core) => format!(
                    "follower of {} {:?} failed {}",
                    core.leader_id,
                    core.partition(&key()),
                    core.is_failed(&key())
                ),
            };
            out.push_str(&format!(
                "  node {} alive {} inc {} epoch {} log [{}, {}) hw {} epochs {:?} in_flight {:?} {}\n",
                node.id,
                node.alive,
                node.incarnation,
                node.broker_epoch,
                node.log.log_start_offset(),
                node.log.log_end_offset(),
                node.log.high_watermark(),
                node.log.epoch_entries(),
                node.in_flight.map(|(_, at)| at - START_MS),
                role
            ));
        }
        out
    }

    /// After the faults stopped: one leader, every replica in the ISR with the leader's log.
    fn check_converged(&self) -> Result<(), String> {
        let registration = &self.controller.registration;
        if registration.leader < 0 {
            return Err("no leader after healing".into());
        }
        let leader = &self.nodes[(registration.leader - 1) as usize];
        // Compared from the highest log start (followers raise theirs only up to their HW).
        let start = self
            .nodes
            .iter()
            .map(|n| n.log.log_start_offset())
            .max()
            .unwrap_or(0);
        let from = |log: &SimLog| -> Vec<_> {
            batch_key(log)
                .into_iter()
                .filter(|b| b.1 >= start)
                .collect()
        };
        let expected = from(&leader.log);
        for node in &self.nodes {
            if from(&node.log) != expected {
                return Err(format!(
                    "node {} did not converge on the leader's log",
                    node.id
                ));
            }
        }
        if registration.isr.len() != NODES.len() {
            return Err(format!("ISR did not recover: {:?}", registration.isr));
        }
        if leader.log.high_watermark() != leader.log.log_end_offset() {
            return Err("leader HW below its log end after healing".into());
        }
        Ok(())
    }
}

fn run_seed(seed: u64) -> Result<Stats, String> {
    let mut sim = Sim::new(seed);
    let result = catch_unwind(AssertUnwindSafe(|| sim.run()));
    let outcome = match result {
        Ok(Ok(())) => return Ok(sim.stats),
        Ok(Err(message)) => message,
        Err(panic) => panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into()),
    };
    let trace: Vec<String> = sim
        .trace
        .iter()
        .map(|(at, event)| format!("{at} {event:?}").chars().take(400).collect())
        .collect();
    Err(format!(
        "seed {seed} failed at t={} ms: {outcome}\n{}last events:\n{}\nreplay: FJORD_SIM_SEED={seed} cargo test -p fjord-broker --test replication_sim -- --nocapture",
        sim.now_ms - START_MS,
        sim.describe(),
        trace
            .iter()
            .map(|s| format!("  {s}"))
            .collect::<Vec<_>>()
            .join("\n")
    ))
}

#[test]
fn replication_simulation() {
    let seeds: Vec<u64> = match std::env::var("FJORD_SIM_SEED") {
        Ok(seed) => vec![seed.parse().expect("FJORD_SIM_SEED is a number")],
        Err(_) => {
            let count = std::env::var("FJORD_SIM_SEEDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(300u64);
            (0..count).collect()
        }
    };
    let mut total = Stats::default();
    let mut failures = Vec::new();
    for &seed in &seeds {
        match run_seed(seed) {
            Ok(stats) => {
                total.acked += stats.acked;
                total.refused += stats.refused;
                total.timed_out += stats.timed_out;
                total.crashes += stats.crashes;
                total.elections += stats.elections;
                total.truncations += stats.truncations;
                total.out_of_range += stats.out_of_range;
                total.restarted_at += stats.restarted_at;
            }
            Err(report) => {
                eprintln!("{report}");
                failures.push(seed);
            }
        }
    }
    eprintln!(
        "{} seeds, {} failed; totals {total:?}",
        seeds.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "failing seeds: {failures:?}");
    // The schedules must exercise the interesting paths, or the checks prove nothing.
    if seeds.len() >= 50 {
        assert!(total.acked > 0 && total.crashes > 0 && total.elections > 0);
        assert!(
            total.truncations > 0,
            "no divergence was ever resolved: {total:?}"
        );
    }
}
