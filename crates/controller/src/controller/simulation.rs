//! Seeded simulation: random requests and ticks from several fake brokers against one
//! controller, with commits lagging behind proposals, failovers that lose or keep uncommitted
//! entries, and a follower controller replaying the same log.
//!
//! Checked: every committed entry replays (the controller's debug-build invariant checks run
//! on each replay and each result, see [`crate::invariants`]); results respect the entry cap;
//! replies are only believed once their entry committed; at the end a fresh controller
//! replaying the whole log, the follower, and a snapshot replay all equal the active
//! controller's committed image (no soft state leaks into the log).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use fjord_metadata::{
    image_to_records, MetadataBatch, MetadataDelta, MetadataImage, MetadataRecord,
};
use uuid::Uuid;

use super::harness::{config, registration};
use super::{ControllerConfig, QuorumController};
use crate::api::*;
use crate::invariants::check_transition;
use crate::rng::ControllerRng;

const BROKERS: i32 = 5;
const TOPICS: [&str; 4] = ["a", "b", "c.d", "c_d"];

#[derive(Clone, Debug, Default)]
struct FakeBroker {
    incarnation: u128,
    /// The epoch of its last registration reply that was released (committed).
    epoch: Option<i64>,
    alive: bool,
    /// Lag of its metadata offset behind the committed offset.
    lag: i64,
}

struct Sim {
    rng: ControllerRng,
    c: QuorumController,
    follower: QuorumController,
    now: i64,
    term: i32,
    inflight: VecDeque<(i64, Vec<MetadataRecord>)>,
    /// Registration replies waiting for their entry: (offset, broker, epoch).
    waiting: Vec<(i64, i32, i64)>,
    log: Vec<MetadataBatch>,
    brokers: BTreeMap<i32, FakeBroker>,
    max_records: usize,
    /// The broker whose registration request was sent last.
    last_registering: i32,
}

impl Sim {
    fn new(seed: u64, max_records: usize) -> Self {
        let cfg = ControllerConfig {
            seed,
            max_records_per_entry: max_records,
            metadata_max_idle_interval_ms: 500,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_ms: 5_000,
            unclean_leader_election_interval_ms: 7_000,
            ..config()
        };
        let mut s = Self {
            rng: ControllerRng::new(seed ^ 0x5eed),
            c: QuorumController::new(cfg.clone()),
            follower: QuorumController::new(cfg),
            now: 0,
            term: 1,
            inflight: VecDeque::new(),
            waiting: Vec::new(),
            log: Vec::new(),
            brokers: (1..=BROKERS)
                .map(|id| {
                    (
                        id,
                        FakeBroker {
                            incarnation: id as u128,
                            alive: true,
                            ..Default::default()
                        },
                    )
                })
                .collect(),
            max_records,
            last_registering: 0,
        };
        let results = s.c.on_became_active(0);
        for r in results {
            s.propose(r);
        }
        s
    }

    fn committed(&self) -> &Arc<MetadataImage> {
        self.c.committed_image()
    }

    fn propose(&mut self, r: ControllerResult) {
        assert!(r.records.len() <= self.max_records, "entry cap");
        if let ControllerReply::Error(e) = &r.reply {
            assert_ne!(
                e.code,
                ErrorCode::UnknownServerError,
                "controller bug: {e:?}"
            );
        }
        if !r.records.is_empty() {
            let expected = self
                .inflight
                .back()
                .map_or(self.committed().offset + 1, |(o, _)| o + 1);
            assert_eq!(r.offset, expected);
            self.inflight.push_back((r.offset, r.records));
        }
        if let ControllerReply::BrokerRegistration(reply) = &r.reply {
            if reply.error.is_ok() {
                let id = self.last_registering;
                self.waiting.push((r.offset, id, reply.broker_epoch));
            }
        }
    }

    fn commit(&mut self, n: usize) {
        for _ in 0..n {
            let Some((offset, records)) = self.inflight.pop_front() else {
                return;
            };
            let batch = MetadataBatch {
                offset,
                epoch: self.term,
                records,
            };
            let before = self.committed().clone();
            self.c
                .replay(&batch)
                .expect("committed entries replay on the leader");
            self.follower.replay(&batch).expect("and on a follower");
            check_transition(&before, self.committed()).expect("invariants");
            self.log.push(batch);
        }
        let committed = self.committed().offset;
        let (ready, rest): (Vec<_>, Vec<_>) = self
            .waiting
            .drain(..)
            .partition(|(o, _, _)| *o <= committed);
        self.waiting = rest;
        for (_, id, epoch) in ready {
            if let Some(b) = self.brokers.get_mut(&id) {
                b.epoch = Some(epoch);
            }
        }
    }

    fn failover(&mut self) {
        // A random prefix of the uncommitted entries survives in the new leader's log.
        let keep = self.rng.below(self.inflight.len() + 1);
        self.commit(keep);
        self.inflight.clear();
        self.waiting.clear(); // answered NOT_CONTROLLER
        self.c.on_resigned();
        self.term += 1;
        // The new leader's empty entry.
        let offset = self.committed().offset + 1;
        let batch = MetadataBatch {
            offset,
            epoch: self.term,
            records: Vec::new(),
        };
        self.c.replay(&batch).expect("empty entry");
        self.follower.replay(&batch).expect("empty entry");
        self.log.push(batch);
        let results = self.c.on_became_active(self.now);
        for r in results {
            self.propose(r);
        }
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.rng.below(items.len())].clone()
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.rng.below(100) < percent
    }

    /// CreateAcls, DeleteAcls, AlterUserScramCredentials or AlterClientQuotas over a small
    /// space of names, so that creations repeat, deletions find something and credentials
    /// get replaced and deleted.
    fn security_request(&mut self) {
        let user = format!("u{}", self.rng.below(3));
        let req = match self.rng.below(4) {
            0 => ControllerRequest::CreateAcls(CreateAclsRequest {
                creations: vec![AclCreation {
                    resource_type: 2,
                    resource_name: self.pick(&TOPICS).to_string(),
                    pattern_type: 3 + self.rng.below(2) as i8,
                    principal: format!("User:{user}"),
                    host: "*".into(),
                    operation: 3 + self.rng.below(2) as i8,
                    permission_type: 2 + self.rng.below(2) as i8,
                }],
            }),
            1 => ControllerRequest::DeleteAcls(DeleteAclsRequest {
                filters: vec![fjord_metadata::AclBindingFilter {
                    principal: self.chance(70).then(|| format!("User:{user}")),
                    ..fjord_metadata::AclBindingFilter::any()
                }],
            }),
            2 => {
                let mechanism = 1 + self.rng.below(2) as i8;
                if self.chance(30) {
                    ControllerRequest::AlterUserScramCredentials(AlterUserScramCredentialsRequest {
                        deletions: vec![ScramCredentialDeletion {
                            name: user,
                            mechanism,
                        }],
                        upsertions: vec![],
                    })
                } else {
                    ControllerRequest::AlterUserScramCredentials(AlterUserScramCredentialsRequest {
                        deletions: vec![],
                        upsertions: vec![ScramCredentialUpsertion {
                            name: user,
                            mechanism,
                            iterations: 4096,
                            salt: vec![self.rng.below(256) as u8; 8],
                            salted_password: vec![7; 32],
                        }],
                    })
                }
            }
            _ => ControllerRequest::AlterClientQuotas(AlterClientQuotasRequest {
                entries: vec![ClientQuotaAlteration {
                    entity: vec![("user".into(), self.chance(80).then_some(user))],
                    ops: vec![ClientQuotaOp {
                        key: "producer_byte_rate".into(),
                        value: 1024.0 * (1 + self.rng.below(4)) as f64,
                        remove: self.chance(30),
                    }],
                }],
                validate_only: false,
            }),
        };
        self.request(req);
    }

    fn request(&mut self, req: ControllerRequest) {
        let r = self.c.handle(self.now, req);
        self.propose(r);
    }

    fn random_partition(
        &mut self,
    ) -> Option<(Uuid, String, i32, fjord_metadata::PartitionRegistration)> {
        let image = self.c.speculative_image().clone();
        let parts: Vec<_> = image
            .topics
            .values()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(move |(p, reg)| (t.id, t.name.clone(), *p, reg.clone()))
            })
            .collect();
        if parts.is_empty() {
            return None;
        }
        Some(self.pick(&parts))
    }

    fn random_replicas(&mut self) -> Vec<i32> {
        let n = 1 + self.rng.below(3);
        let mut ids: Vec<i32> = (1..=BROKERS).collect();
        self.rng.shuffle(&mut ids);
        ids.truncate(n);
        ids
    }

    fn step(&mut self) {
        match self.rng.below(20) {
            0..=3 => {
                // Heartbeats from live brokers (or registration if they have no epoch).
                let id = 1 + self.rng.below(BROKERS as usize) as i32;
                let b = self.brokers[&id].clone();
                if !b.alive {
                    return;
                }
                match b.epoch {
                    None => {
                        self.last_registering = id;
                        let rack = ["r1", "r2"][id as usize % 2];
                        let req = registration(id, Uuid::from_u128(b.incarnation), Some(rack));
                        self.request(ControllerRequest::BrokerRegistration(req));
                    }
                    Some(epoch) => {
                        let offset = (self.committed().offset - b.lag).max(-1);
                        let want_shut_down = self.chance(3);
                        let want_fence = self.chance(2);
                        self.request(ControllerRequest::BrokerHeartbeat(BrokerHeartbeatRequest {
                            broker_id: id,
                            broker_epoch: epoch,
                            current_metadata_offset: offset,
                            want_fence,
                            want_shut_down,
                        }));
                    }
                }
            }
            4 | 5 => {
                self.now += self.rng.below(3000) as i64;
                let results = self.c.tick(self.now);
                for r in results {
                    self.propose(r);
                }
            }
            6 => {
                // Crash or restart a broker (a restart is a new incarnation).
                let id = 1 + self.rng.below(BROKERS as usize) as i32;
                let b = self.brokers.get_mut(&id).expect("broker");
                if b.alive {
                    b.alive = false;
                } else {
                    b.alive = true;
                    b.incarnation += 1000;
                    b.epoch = None;
                    b.lag = 0;
                }
            }
            7 => {
                let name = self.pick(&TOPICS).to_string();
                let manual = self.chance(30);
                let topic = if manual {
                    let n = 1 + self.rng.below(3);
                    let rf = 1 + self.rng.below(2);
                    let assignments = (0..n)
                        .map(|i| {
                            let mut r = self.random_replicas();
                            r.truncate(rf);
                            while r.len() < rf {
                                r.push(if r[0] == 1 { 2 } else { 1 });
                            }
                            (i as i32, r)
                        })
                        .collect();
                    CreatableTopic {
                        name,
                        num_partitions: -1,
                        replication_factor: -1,
                        assignments,
                        configs: vec![],
                    }
                } else {
                    let configs = if self.chance(30) {
                        vec![(
                            crate::controller::UNCLEAN_LEADER_ELECTION_ENABLE.to_string(),
                            Some("true".to_string()),
                        )]
                    } else {
                        vec![]
                    };
                    CreatableTopic {
                        name,
                        num_partitions: 1 + self.rng.below(6) as i32,
                        replication_factor: 1 + self.rng.below(3) as i16,
                        assignments: vec![],
                        configs,
                    }
                };
                let validate_only = self.chance(10);
                self.request(ControllerRequest::CreateTopics(CreateTopicsRequest {
                    topics: vec![topic],
                    validate_only,
                }));
            }
            8 => {
                let name = self.pick(&TOPICS).to_string();
                self.request(ControllerRequest::DeleteTopics(DeleteTopicsRequest {
                    topics: vec![TopicRef::Name(name)],
                }));
            }
            9 => {
                let name = self.pick(&TOPICS).to_string();
                let count = 1 + self.rng.below(8) as i32;
                self.request(ControllerRequest::CreatePartitions(
                    CreatePartitionsRequest {
                        topics: vec![CreatePartitionsTopic {
                            name,
                            count,
                            assignments: None,
                        }],
                        validate_only: false,
                    },
                ));
            }
            10..=12 => {
                // The leader of a partition changes its ISR, from a possibly stale view.
                let view = if self.chance(70) {
                    self.committed().clone()
                } else {
                    self.c.speculative_image().clone()
                };
                let Some((topic_id, _, p, reg)) = self.random_partition() else {
                    return;
                };
                let Some(reg) = view.partition(&topic_id, p).cloned().or(Some(reg)) else {
                    return;
                };
                if reg.leader < 0 {
                    return;
                }
                let Some(epoch) = self.brokers[&reg.leader].epoch else {
                    return;
                };
                let mut isr: Vec<i32> = reg
                    .replicas
                    .iter()
                    .copied()
                    .filter(|r| *r == reg.leader || self.chance(60))
                    .collect();
                if self.chance(5) {
                    isr.push(BROKERS + 1);
                }
                let new_isr_with_epochs = isr
                    .into_iter()
                    .map(|b| BrokerState {
                        broker_id: b,
                        broker_epoch: view.broker(b).map_or(-1, |r| r.epoch),
                    })
                    .collect();
                self.request(ControllerRequest::AlterPartition(AlterPartitionRequest {
                    broker_id: reg.leader,
                    broker_epoch: epoch,
                    topics: vec![AlterPartitionTopic {
                        topic_id,
                        partitions: vec![AlterPartitionData {
                            partition_index: p,
                            leader_epoch: reg.leader_epoch,
                            new_isr_with_epochs,
                            leader_recovery_state: 0,
                            partition_epoch: reg.partition_epoch,
                        }],
                    }],
                }));
            }
            13 => {
                let election_type = if self.chance(50) {
                    ElectionType::Preferred
                } else {
                    ElectionType::Unclean
                };
                let topic_partitions = match self.random_partition() {
                    Some((_, name, p, _)) if self.chance(70) => Some(vec![(name, vec![p])]),
                    _ => None,
                };
                self.request(ControllerRequest::ElectLeaders(ElectLeadersRequest {
                    election_type,
                    topic_partitions,
                }));
            }
            14 => {
                let Some((_, name, p, _)) = self.random_partition() else {
                    return;
                };
                let target = if self.chance(30) {
                    None
                } else {
                    Some(self.random_replicas())
                };
                self.request(ControllerRequest::AlterPartitionReassignments(
                    AlterPartitionReassignmentsRequest {
                        topics: vec![(name, vec![(p, target)])],
                    },
                ));
            }
            15 => {
                let id = 1 + self.rng.below(BROKERS as usize) as i32;
                if let Some(epoch) = self.brokers[&id].epoch {
                    self.request(ControllerRequest::AllocateProducerIds(
                        AllocateProducerIdsRequest {
                            broker_id: id,
                            broker_epoch: epoch,
                        },
                    ));
                }
            }
            16 if self.chance(50) => self.security_request(),
            16 => {
                let name = self.pick(&TOPICS).to_string();
                let value = if self.chance(50) { "true" } else { "false" };
                self.request(ControllerRequest::IncrementalAlterConfigs(
                    IncrementalAlterConfigsRequest {
                        resources: vec![IncrementalAlterConfigsResource {
                            resource: fjord_metadata::ConfigResource::topic(name),
                            configs: vec![AlterableConfig {
                                name: crate::controller::UNCLEAN_LEADER_ELECTION_ENABLE.into(),
                                op: AlterConfigOp::Set,
                                value: Some(value.into()),
                            }],
                        }],
                        validate_only: false,
                    },
                ));
            }
            17 => {
                if self.chance(20) {
                    let id = 1 + self.rng.below(BROKERS as usize) as i32;
                    if !self.brokers[&id].alive {
                        self.request(ControllerRequest::UnregisterBroker(
                            UnregisterBrokerRequest { broker_id: id },
                        ));
                    }
                } else {
                    let id = 1 + self.rng.below(BROKERS as usize) as i32;
                    let lag = self.rng.below(3) as i64;
                    if let Some(b) = self.brokers.get_mut(&id) {
                        b.lag = lag;
                    }
                }
            }
            18 => {
                if self.chance(15) {
                    self.failover();
                }
            }
            _ => {
                let n = self.rng.below(4);
                self.commit(n);
            }
        }
        // Commits usually keep up; sometimes several proposals stay in flight.
        if self.chance(60) {
            let n = self.inflight.len();
            self.commit(n);
        }
    }

    fn finish(&mut self) {
        let n = self.inflight.len();
        self.commit(n);
        assert_eq!(self.c.pending_entries(), 0);
        assert_eq!(**self.c.speculative_image(), **self.c.committed_image());
        assert_eq!(
            **self.follower.committed_image(),
            **self.c.committed_image()
        );
        let mut fresh = QuorumController::new(self.c.config().clone());
        for b in &self.log {
            fresh.replay(b).expect("replay on a fresh controller");
        }
        assert_eq!(**fresh.committed_image(), **self.c.committed_image());
        // The image as snapshot records rebuilds the same content.
        let image = self.c.committed_image();
        let mut delta = MetadataDelta::new(Arc::new(MetadataImage::empty()));
        delta
            .replay_all(&image_to_records(image))
            .expect("snapshot replays");
        let rebuilt = delta.apply(image.offset, image.epoch);
        assert_eq!(*rebuilt, **image);
    }
}

/// What the committed log of a run contains, to show the runs exercise the controller.
#[derive(Debug, Default)]
struct Coverage {
    entries: usize,
    by_record: BTreeMap<&'static str, usize>,
    fences: usize,
    unfences: usize,
    controlled_shutdowns: usize,
    leader_changes: usize,
    unclean: usize,
    reassignments_started: usize,
    reassignments_completed: usize,
}

fn coverage(log: &[MetadataBatch], cov: &mut Coverage) {
    for b in log {
        cov.entries += 1;
        for r in &b.records {
            *cov.by_record.entry(r.name()).or_default() += 1;
            match r {
                MetadataRecord::BrokerRegistrationChange(c) => {
                    cov.fences += usize::from(c.fenced == 1);
                    cov.unfences += usize::from(c.fenced == -1);
                    cov.controlled_shutdowns += usize::from(c.in_controlled_shutdown == 1);
                }
                MetadataRecord::PartitionChange(c) => {
                    cov.leader_changes += usize::from(c.leader != -2);
                    cov.unclean += usize::from(c.leader_recovery_state == 1);
                    cov.reassignments_started +=
                        usize::from(c.adding_replicas.as_ref().is_some_and(|a| !a.is_empty()));
                    cov.reassignments_completed += usize::from(
                        c.adding_replicas.as_ref().is_some_and(|a| a.is_empty())
                            && c.removing_replicas.as_ref().is_some_and(|a| a.is_empty()),
                    );
                }
                _ => {}
            }
        }
    }
}

fn run(seed: u64, steps: usize, max_records: usize, cov: &mut Coverage) {
    let mut sim = Sim::new(seed, max_records);
    for _ in 0..steps {
        sim.step();
    }
    sim.finish();
    coverage(&sim.log, cov);
}

#[test]
fn simulation_many_seeds() {
    let mut cov = Coverage::default();
    for seed in 0..80u64 {
        let max_records = if seed % 3 == 0 {
            3
        } else {
            super::MAX_RECORDS_PER_USER_OP
        };
        run(seed, 500, max_records, &mut cov);
    }
    // The runs did real work (not a vacuous pass).
    eprintln!("{cov:#?}");
    assert!(cov.entries > 80 * 50, "{cov:?}");
    for (what, n) in [
        ("fences", cov.fences),
        ("unfences", cov.unfences),
        ("controlled shutdowns", cov.controlled_shutdowns),
        ("leader changes", cov.leader_changes),
        ("unclean elections", cov.unclean),
        ("reassignments started", cov.reassignments_started),
        ("reassignments completed", cov.reassignments_completed),
    ] {
        assert!(n >= 5, "too few {what}: {cov:#?}");
    }
    for record in [
        "TopicRecord",
        "RemoveTopicRecord",
        "PartitionRecord",
        "ConfigRecord",
        "ProducerIdsRecord",
        "UnregisterBrokerRecord",
        "NoOpRecord",
        "AccessControlEntryRecord",
        "RemoveAccessControlEntryRecord",
        "UserScramCredentialRecord",
        "RemoveUserScramCredentialRecord",
        "ClientQuotaRecord",
    ] {
        assert!(
            cov.by_record.get(record).copied().unwrap_or(0) > 0,
            "no {record}: {cov:#?}"
        );
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 24, ..Default::default() })]
    #[test]
    fn simulation_random_seeds(seed in proptest::prelude::any::<u64>()) {
        run(seed, 250, if seed % 2 == 0 { 4 } else { 10_000 }, &mut Coverage::default());
    }
}
