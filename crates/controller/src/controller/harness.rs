//! Test driver: proposes every result as the next entry and commits it at once (unless told
//! to hold), the way a one-voter quorum would.

use std::collections::VecDeque;

use fjord_metadata::{
    BrokerEndpoint, BrokerFeature, MetadataBatch, MetadataRecord, METADATA_VERSION_FEATURE,
};
use uuid::Uuid;

use super::{ControllerConfig, QuorumController};
use crate::api::*;

pub(crate) const CLUSTER: &str = "test-cluster-id-00000A";

pub(crate) struct Harness {
    pub c: QuorumController,
    pub now: i64,
    /// Proposed, not yet committed entries (offset, records).
    pub inflight: VecDeque<(i64, Vec<MetadataRecord>)>,
    /// Every committed batch, in order.
    pub log: Vec<MetadataBatch>,
    pub hold: bool,
    pub incarnations: std::collections::BTreeMap<i32, Uuid>,
}

pub(crate) fn config() -> ControllerConfig {
    ControllerConfig {
        cluster_id: Some(CLUSTER.into()),
        metadata_max_idle_interval_ms: 0,
        auto_leader_rebalance_enable: false,
        seed: 7,
        ..ControllerConfig::default()
    }
}

pub(crate) fn registration(
    id: i32,
    incarnation: Uuid,
    rack: Option<&str>,
) -> BrokerRegistrationRequest {
    BrokerRegistrationRequest {
        broker_id: id,
        cluster_id: CLUSTER.into(),
        incarnation_id: incarnation,
        listeners: vec![BrokerEndpoint {
            name: "PLAINTEXT".into(),
            host: "localhost".into(),
            port: 9092 + id as u16,
            security_protocol: 0,
        }],
        features: vec![BrokerFeature {
            name: METADATA_VERSION_FEATURE.into(),
            min_supported_version: 1,
            max_supported_version: 30,
        }],
        rack: rack.map(str::to_string),
        previous_broker_epoch: -1,
    }
}

impl Harness {
    pub fn new(config: ControllerConfig) -> Self {
        let mut h = Self {
            c: QuorumController::new(config),
            now: 0,
            inflight: VecDeque::new(),
            log: Vec::new(),
            hold: false,
            incarnations: Default::default(),
        };
        let results = h.c.on_became_active(0);
        for r in results {
            h.propose(&r);
        }
        h
    }

    /// Proposes `r` (if it has records) and commits everything unless holding.
    pub fn propose(&mut self, r: &ControllerResult) {
        if !r.records.is_empty() {
            let expected = self
                .inflight
                .back()
                .map_or(self.c.committed_image().offset + 1, |(o, _)| o + 1);
            assert_eq!(
                r.offset, expected,
                "entries are proposed at consecutive offsets"
            );
            self.inflight.push_back((r.offset, r.records.clone()));
        }
        if !self.hold {
            self.commit_all();
        }
    }

    pub fn commit_all(&mut self) {
        while let Some((offset, records)) = self.inflight.pop_front() {
            let batch = MetadataBatch {
                offset,
                epoch: 1,
                records,
            };
            self.c.replay(&batch).expect("committed entries replay");
            self.log.push(batch);
        }
    }

    pub fn handle(&mut self, req: ControllerRequest) -> ControllerResult {
        let r = self.c.handle(self.now, req);
        self.propose(&r);
        r
    }

    pub fn reply(&mut self, req: ControllerRequest) -> ControllerReply {
        self.handle(req).reply
    }

    pub fn tick(&mut self) -> Vec<ControllerResult> {
        let results = self.c.tick(self.now);
        for r in &results {
            self.propose(r);
        }
        results
    }

    pub fn offset(&self) -> i64 {
        self.c.committed_image().offset
    }

    pub fn register(&mut self, id: i32, rack: Option<&str>) -> i64 {
        let inc = *self
            .incarnations
            .entry(id)
            .or_insert_with(|| Uuid::from_u128(0x1000 + id as u128));
        match self.reply(ControllerRequest::BrokerRegistration(registration(
            id, inc, rack,
        ))) {
            ControllerReply::BrokerRegistration(r) => {
                assert!(r.error.is_ok(), "{r:?}");
                r.broker_epoch
            }
            other => panic!("{other:?}"),
        }
    }

    pub fn heartbeat_full(
        &mut self,
        id: i32,
        epoch: i64,
        offset: i64,
        want_fence: bool,
        want_shut_down: bool,
    ) -> BrokerHeartbeatReply {
        match self.reply(ControllerRequest::BrokerHeartbeat(BrokerHeartbeatRequest {
            broker_id: id,
            broker_epoch: epoch,
            current_metadata_offset: offset,
            want_fence,
            want_shut_down,
        })) {
            ControllerReply::BrokerHeartbeat(r) => r,
            other => panic!("{other:?}"),
        }
    }

    /// A caught-up heartbeat.
    pub fn heartbeat(&mut self, id: i32, epoch: i64) -> BrokerHeartbeatReply {
        let offset = self.offset();
        self.heartbeat_full(id, epoch, offset, false, false)
    }

    /// Registers and unfences brokers; returns their epochs.
    pub fn brokers(&mut self, ids: &[(i32, Option<&str>)]) -> Vec<i64> {
        let epochs: Vec<i64> = ids
            .iter()
            .map(|(id, rack)| self.register(*id, *rack))
            .collect();
        for ((id, _), epoch) in ids.iter().zip(&epochs) {
            let r = self.heartbeat(*id, *epoch);
            assert!(!r.is_fenced, "{r:?}");
        }
        epochs
    }

    pub fn create_topic(&mut self, name: &str, partitions: i32, rf: i16) -> Uuid {
        match self.reply(ControllerRequest::CreateTopics(CreateTopicsRequest {
            topics: vec![CreatableTopic {
                name: name.into(),
                num_partitions: partitions,
                replication_factor: rf,
                assignments: vec![],
                configs: vec![],
            }],
            validate_only: false,
        })) {
            ControllerReply::CreateTopics(r) => {
                assert!(r.topics[0].error.is_ok(), "{r:?}");
                r.topics[0].topic_id
            }
            other => panic!("{other:?}"),
        }
    }

    pub fn create_assigned(&mut self, name: &str, assignments: Vec<Vec<i32>>) -> Uuid {
        match self.reply(ControllerRequest::CreateTopics(CreateTopicsRequest {
            topics: vec![CreatableTopic {
                name: name.into(),
                num_partitions: -1,
                replication_factor: -1,
                assignments: assignments
                    .into_iter()
                    .enumerate()
                    .map(|(i, r)| (i as i32, r))
                    .collect(),
                configs: vec![],
            }],
            validate_only: false,
        })) {
            ControllerReply::CreateTopics(r) => {
                assert!(r.topics[0].error.is_ok(), "{r:?}");
                r.topics[0].topic_id
            }
            other => panic!("{other:?}"),
        }
    }

    pub fn partition(&self, topic: Uuid, p: i32) -> fjord_metadata::PartitionRegistration {
        self.c
            .committed_image()
            .partition(&topic, p)
            .cloned()
            .expect("partition exists")
    }

    pub fn broker(&self, id: i32) -> fjord_metadata::BrokerRegistration {
        self.c
            .committed_image()
            .broker(id)
            .cloned()
            .expect("registered")
    }

    /// A fresh inactive controller replaying the whole log has the same committed image.
    pub fn assert_log_rebuilds_image(&self) {
        let mut fresh = QuorumController::new(self.c.config().clone());
        for b in &self.log {
            fresh.replay(b).expect("replays");
        }
        assert_eq!(**fresh.committed_image(), **self.c.committed_image());
    }
}
