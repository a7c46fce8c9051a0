//! Brokers: registration, heartbeats, fencing, controlled shutdown, unregistration and
//! producer-id blocks (Kafka `ClusterControlManager`, `ReplicationControlManager`'s
//! `processBrokerHeartbeat`/`handleBroker*`, `ProducerIdControlManager`).

use std::collections::BTreeMap;

use fjord_metadata::{
    BrokerRegistrationChangeRecord, FeatureRange, MetadataDelta, MetadataRecord, ProducerIdsRecord,
    RegisterBrokerRecord, UnregisterBrokerRecord,
    CONTROLLED_SHUTDOWN_CHANGE_IN_CONTROLLED_SHUTDOWN, CONTROLLED_SHUTDOWN_CHANGE_NONE,
    FENCING_CHANGE_FENCE, FENCING_CHANGE_NONE, FENCING_CHANGE_UNFENCE, METADATA_VERSION_FEATURE,
    NO_LEADER,
};

use super::{HandlerResult, QuorumController, Txn, PRODUCER_ID_BLOCK_SIZE};
use crate::api::{
    AllocateProducerIdsReply, AllocateProducerIdsRequest, ApiError, BrokerHeartbeatReply,
    BrokerHeartbeatRequest, BrokerRegistrationReply, BrokerRegistrationRequest, ControllerReply,
    ErrorCode, UnregisterBrokerRequest,
};
use crate::heartbeat::{calculate_next_broker_state, BrokerControlState, HeartbeatIntent};
use crate::partition_change::{Election, PartitionChangeBuilder};
use crate::ControllerError;

impl QuorumController {
    /// Kafka `ClusterControlManager.registerBroker`.
    pub(super) fn register_broker(
        &mut self,
        now_ms: i64,
        txn: &mut Txn,
        req: BrokerRegistrationRequest,
    ) -> HandlerResult {
        let refuse = |code, message: String| {
            Ok(ControllerReply::BrokerRegistration(
                BrokerRegistrationReply {
                    error: ApiError::new(code, message),
                    broker_epoch: -1,
                },
            ))
        };
        let id = req.broker_id;
        match txn.delta.cluster_id() {
            None => {
                return refuse(
                    ErrorCode::NotController,
                    "The cluster id is not formed yet.".into(),
                )
            }
            Some(cluster_id) if cluster_id != req.cluster_id => {
                return refuse(
                    ErrorCode::InconsistentClusterId,
                    format!(
                        "Expected cluster ID {cluster_id}, but got cluster ID {}",
                        req.cluster_id
                    ),
                )
            }
            Some(_) => {}
        }
        if id < 0 {
            return refuse(
                ErrorCode::InvalidRequest,
                format!("Invalid broker id {id}."),
            );
        }
        let existing = txn.delta.broker(id).cloned();
        if let Some(ex) = &existing {
            let live = !ex.fenced
                && !self.fencing.contains(&id)
                && self.heartbeats.has_valid_session(
                    id,
                    now_ms,
                    self.config.broker_session_timeout_ms,
                );
            // The broker of this very process (a combined node) is the live incarnation by
            // definition: the one registered before is a previous process of this node, dead
            // since this controller started with its successor. Kafka would make it wait for
            // the old session to expire.
            let own_new_incarnation = id == self.config.node_id
                && self.config.local_broker_incarnation == Some(req.incarnation_id);
            if live && ex.incarnation_id != req.incarnation_id && !own_new_incarnation {
                return refuse(
                    ErrorCode::DuplicateBrokerRegistration,
                    "Another broker is registered with that broker id.".into(),
                );
            }
        }
        if let Err(message) = check_features(&txn.delta, &req) {
            return refuse(ErrorCode::UnsupportedVersion, message);
        }
        let features: BTreeMap<String, FeatureRange> = req
            .features
            .iter()
            .map(|f| {
                (
                    f.name.clone(),
                    FeatureRange {
                        min: f.min_supported_version,
                        max: f.max_supported_version,
                    },
                )
            })
            .collect();
        if let Some(ex) = &existing {
            if ex.incarnation_id == req.incarnation_id
                && ex.endpoints == req.listeners
                && ex.rack == req.rack
                && ex.supported_features == features
            {
                // The same process registering again (a retry): idempotent.
                if self.heartbeats.get(id).is_none() {
                    self.heartbeats.register(id, now_ms);
                }
                return Ok(ControllerReply::BrokerRegistration(
                    BrokerRegistrationReply {
                        error: ApiError::NONE,
                        broker_epoch: ex.epoch,
                    },
                ));
            }
        }
        // A new incarnation (or a changed one): the old registration leaves every ISR and
        // leadership first (Kafka's unclean-shutdown handling without ELR).
        if existing.is_some() {
            let room = txn.room() - 1;
            if !self.remove_broker_from_partitions(txn, id, room)? {
                self.fencing.insert(id);
                self.sweep_needed = true;
                return refuse(
                    ErrorCode::DuplicateBrokerRegistration,
                    format!("The previous incarnation of broker {id} is still being fenced."),
                );
            }
        }
        self.fencing.remove(&id);
        let broker_epoch = self.next_write_offset;
        txn.push(MetadataRecord::RegisterBroker(RegisterBrokerRecord {
            broker_id: id,
            incarnation_id: req.incarnation_id,
            broker_epoch,
            end_points: req.listeners,
            features: req.features,
            rack: req.rack,
            fenced: true,
            in_controlled_shutdown: false,
        }))?;
        self.heartbeats.register(id, now_ms);
        tracing::info!(broker = id, broker_epoch, "registering broker");
        Ok(ControllerReply::BrokerRegistration(
            BrokerRegistrationReply {
                error: ApiError::NONE,
                broker_epoch,
            },
        ))
    }

    /// Kafka `ReplicationControlManager.processBrokerHeartbeat`.
    pub(super) fn broker_heartbeat(
        &mut self,
        now_ms: i64,
        txn: &mut Txn,
        req: BrokerHeartbeatRequest,
    ) -> HandlerResult {
        let id = req.broker_id;
        let registration = match self.check_broker_epoch(&txn.delta, id, req.broker_epoch) {
            Ok(r) => r,
            Err(e) => {
                return Ok(ControllerReply::BrokerHeartbeat(
                    BrokerHeartbeatReply::error(e),
                ))
            }
        };
        let current = if registration.fenced || self.fencing.contains(&id) {
            BrokerControlState::Fenced
        } else if registration.in_controlled_shutdown {
            BrokerControlState::ControlledShutdown
        } else {
            BrokerControlState::Unfenced
        };
        let register_offset = self.register_offset(id, registration.epoch);
        let controlled_shutdown_offset = self
            .heartbeats
            .get(id)
            .map_or(-1, |s| s.controlled_shutdown_offset);
        let intent = HeartbeatIntent {
            current_metadata_offset: req.current_metadata_offset,
            want_fence: req.want_fence,
            want_shut_down: req.want_shut_down,
        };
        let next = calculate_next_broker_state(
            current,
            intent,
            register_offset,
            controlled_shutdown_offset,
            || self.has_leaderships(&txn.delta, id),
            || self.lowest_active_offset(txn),
        );
        if current != next {
            match next {
                BrokerControlState::Fenced | BrokerControlState::ShutdownNow => {
                    tracing::info!(broker = id, ?next, "fencing broker on its heartbeat");
                    self.fence_broker(txn, id)?;
                }
                BrokerControlState::Unfenced => {
                    tracing::info!(broker = id, "unfencing broker: caught up");
                    self.unfence_broker(txn, id, registration.epoch)?;
                }
                BrokerControlState::ControlledShutdown => {
                    tracing::info!(broker = id, "broker enters controlled shutdown");
                    self.enter_controlled_shutdown(txn, id, registration.epoch)?;
                }
            }
        }
        self.heartbeats
            .touch(id, now_ms, next.fenced(), req.current_metadata_offset);
        if next == BrokerControlState::ControlledShutdown {
            self.heartbeats
                .maybe_update_controlled_shutdown_offset(id, self.next_write_offset);
        }
        Ok(ControllerReply::BrokerHeartbeat(BrokerHeartbeatReply {
            error: ApiError::NONE,
            is_caught_up: req.current_metadata_offset >= register_offset,
            is_fenced: next.fenced(),
            in_controlled_shutdown: next.in_controlled_shutdown(),
            should_shut_down: next.should_shut_down(),
        }))
    }

    /// Kafka `ReplicationControlManager.unregisterBroker`.
    pub(super) fn unregister_broker(
        &mut self,
        txn: &mut Txn,
        req: UnregisterBrokerRequest,
    ) -> HandlerResult {
        let id = req.broker_id;
        let Some(registration) = txn.delta.broker(id).cloned() else {
            return Ok(ControllerReply::UnregisterBroker(ApiError::new(
                ErrorCode::BrokerIdNotRegistered,
                format!("Broker ID {id} is not currently registered"),
            )));
        };
        let room = txn.room() - 1;
        if !self.remove_broker_from_partitions(txn, id, room)? {
            self.fencing.insert(id);
            self.sweep_needed = true;
            return Ok(ControllerReply::UnregisterBroker(ApiError::new(
                ErrorCode::RequestTimedOut,
                format!("Broker {id} is being removed from its partitions; retry."),
            )));
        }
        txn.push(MetadataRecord::UnregisterBroker(UnregisterBrokerRecord {
            broker_id: id,
            broker_epoch: registration.epoch,
        }))?;
        self.fencing.remove(&id);
        self.heartbeats.remove(id);
        Ok(ControllerReply::UnregisterBroker(ApiError::NONE))
    }

    /// Kafka `ProducerIdControlManager.generateNextProducerId`: the next block of 1000.
    pub(super) fn allocate_producer_ids(
        &mut self,
        txn: &mut Txn,
        req: AllocateProducerIdsRequest,
    ) -> HandlerResult {
        let reply = |error, start, len| {
            Ok(ControllerReply::AllocateProducerIds(
                AllocateProducerIdsReply {
                    error,
                    producer_id_start: start,
                    producer_id_len: len,
                },
            ))
        };
        if let Err(e) = self.check_broker_epoch(&txn.delta, req.broker_id, req.broker_epoch) {
            return reply(e, -1, 0);
        }
        let start = txn.delta.next_producer_id().max(0);
        let Some(next) = start.checked_add(PRODUCER_ID_BLOCK_SIZE) else {
            return reply(
                ApiError::new(ErrorCode::UnknownServerError, "Exhausted all producerIds."),
                -1,
                0,
            );
        };
        txn.push(MetadataRecord::ProducerIds(ProducerIdsRecord {
            broker_id: req.broker_id,
            broker_epoch: req.broker_epoch,
            next_producer_id: next,
        }))?;
        reply(ApiError::NONE, start, PRODUCER_ID_BLOCK_SIZE as i32)
    }

    // ---- broker state changes ----

    /// Kafka `checkBrokerEpoch`: STALE_BROKER_EPOCH unless registered with exactly `epoch`.
    fn check_broker_epoch(
        &self,
        delta: &MetadataDelta,
        broker_id: i32,
        epoch: i64,
    ) -> Result<fjord_metadata::BrokerRegistration, ApiError> {
        match delta.broker(broker_id) {
            None => Err(ApiError::new(
                ErrorCode::StaleBrokerEpoch,
                format!("No broker registration found for broker {broker_id}"),
            )),
            Some(b) if b.epoch != epoch => Err(ApiError::new(
                ErrorCode::StaleBrokerEpoch,
                format!(
                    "Expected broker epoch {}, but got broker epoch {epoch}",
                    b.epoch
                ),
            )),
            Some(b) => Ok(b.clone()),
        }
    }

    /// Kafka `handleBrokerFenced`, bounded: removes the broker from ISRs and leaderships and
    /// writes its fence record last. Returns whether it finished in this entry; otherwise the
    /// broker stays in `fencing` and `tick` continues.
    pub(super) fn fence_broker(&mut self, txn: &mut Txn, id: i32) -> Result<bool, ControllerError> {
        let Some(registration) = txn.delta.broker(id).cloned() else {
            self.fencing.remove(&id);
            return Ok(true);
        };
        if registration.fenced && !self.fencing.contains(&id) {
            return Ok(true);
        }
        self.fencing.insert(id);
        if txn.room() < 2 {
            self.sweep_needed = true;
            return Ok(false);
        }
        let room = txn.room() - 1;
        if !self.remove_broker_from_partitions(txn, id, room)? {
            self.sweep_needed = true;
            return Ok(false);
        }
        if !registration.fenced {
            txn.push(MetadataRecord::BrokerRegistrationChange(
                BrokerRegistrationChangeRecord {
                    broker_id: id,
                    broker_epoch: registration.epoch,
                    fenced: FENCING_CHANGE_FENCE,
                    in_controlled_shutdown: CONTROLLED_SHUTDOWN_CHANGE_NONE,
                },
            ))?;
        }
        self.fencing.remove(&id);
        Ok(true)
    }

    /// Kafka `handleBrokerUnfenced`: the unfence record, then elections for leaderless
    /// partitions (the rest, if any, in `tick`).
    fn unfence_broker(
        &mut self,
        txn: &mut Txn,
        id: i32,
        epoch: i64,
    ) -> Result<(), ControllerError> {
        self.fencing.remove(&id);
        let fenced = txn.delta.broker(id).is_some_and(|b| b.fenced);
        if fenced {
            txn.push(MetadataRecord::BrokerRegistrationChange(
                BrokerRegistrationChangeRecord {
                    broker_id: id,
                    broker_epoch: epoch,
                    fenced: FENCING_CHANGE_UNFENCE,
                    in_controlled_shutdown: CONTROLLED_SHUTDOWN_CHANGE_NONE,
                },
            ))?;
        }
        let room = txn.room();
        if !self.elect_leaderless_partitions(txn, room)? {
            self.sweep_needed = true;
        }
        Ok(())
    }

    /// Kafka `handleBrokerInControlledShutdown` (KIP-841).
    fn enter_controlled_shutdown(
        &mut self,
        txn: &mut Txn,
        id: i32,
        epoch: i64,
    ) -> Result<(), ControllerError> {
        if txn
            .delta
            .broker(id)
            .is_some_and(|b| !b.in_controlled_shutdown)
        {
            txn.push(MetadataRecord::BrokerRegistrationChange(
                BrokerRegistrationChangeRecord {
                    broker_id: id,
                    broker_epoch: epoch,
                    fenced: FENCING_CHANGE_NONE,
                    in_controlled_shutdown: CONTROLLED_SHUTDOWN_CHANGE_IN_CONTROLLED_SHUTDOWN,
                },
            ))?;
        }
        let room = txn.room();
        if !self.remove_broker_from_partitions(txn, id, room)? {
            self.sweep_needed = true;
        }
        Ok(())
    }

    /// Kafka `generateLeaderAndIsrUpdates(brokerToRemove = id)`: for each partition with the
    /// broker in its ISR, a change without it (an empty ISR is never written: the last member
    /// stays, leaderless) and a new leader if it led. Writes at most `limit` records; returns
    /// whether no further change is needed.
    pub(crate) fn remove_broker_from_partitions(
        &self,
        txn: &mut Txn,
        id: i32,
        limit: usize,
    ) -> Result<bool, ControllerError> {
        let mut written = 0;
        for (topic_id, partition_id) in self.partition_keys() {
            let Some(partition) = txn.delta.partition(&topic_id, partition_id) else {
                continue;
            };
            if !partition.isr.contains(&id) {
                continue;
            }
            let partition = partition.clone();
            let topic = txn
                .delta
                .topic_name(&topic_id)
                .unwrap_or_default()
                .to_string();
            let election = if self.unclean_enabled(&txn.delta, &topic) {
                Election::Unclean
            } else {
                Election::Clean
            };
            let target_isr: Vec<i32> = partition.isr.iter().copied().filter(|r| *r != id).collect();
            let record = {
                let delta = &txn.delta;
                PartitionChangeBuilder::new(&partition, topic_id, partition_id, |r| {
                    r != id && self.is_active_broker(delta, r)
                })
                .set_election(election)
                .set_target_isr(target_isr)
                .build()
            };
            if let Some(record) = record {
                if written == limit {
                    return Ok(false);
                }
                txn.push(MetadataRecord::PartitionChange(record))?;
                written += 1;
            }
        }
        Ok(true)
    }

    /// Elections for leaderless partitions that have an acceptable ISR member (or, with
    /// unclean elections enabled for the topic, an acceptable replica). At most `limit`
    /// records; returns whether none is left.
    pub(crate) fn elect_leaderless_partitions(
        &self,
        txn: &mut Txn,
        limit: usize,
    ) -> Result<bool, ControllerError> {
        let mut written = 0;
        for (topic_id, partition_id) in self.partition_keys() {
            let Some(partition) = txn.delta.partition(&topic_id, partition_id) else {
                continue;
            };
            if partition.leader != NO_LEADER {
                continue;
            }
            let partition = partition.clone();
            let topic = txn
                .delta
                .topic_name(&topic_id)
                .unwrap_or_default()
                .to_string();
            let election = if self.unclean_enabled(&txn.delta, &topic) {
                Election::Unclean
            } else {
                Election::Clean
            };
            let record = {
                let delta = &txn.delta;
                PartitionChangeBuilder::new(&partition, topic_id, partition_id, |r| {
                    self.is_active_broker(delta, r)
                })
                .set_election(election)
                .build()
            };
            if let Some(record) = record {
                if written == limit {
                    return Ok(false);
                }
                txn.push(MetadataRecord::PartitionChange(record))?;
                written += 1;
            }
        }
        Ok(true)
    }

    /// Kafka `BrokersToIsrs.hasLeaderships`.
    pub(crate) fn has_leaderships(&self, delta: &MetadataDelta, id: i32) -> bool {
        self.partition_keys()
            .into_iter()
            .any(|(t, p)| delta.partition(&t, p).is_some_and(|p| p.leader == id))
    }

    /// Kafka `lowestActiveOffset` over brokers unfenced and not shutting down.
    fn lowest_active_offset(&self, txn: &Txn) -> i64 {
        let active: Vec<i32> = self
            .broker_ids(txn)
            .into_iter()
            .filter(|id| self.is_active_broker(&txn.delta, *id))
            .collect();
        self.heartbeats.lowest_active_offset(active.into_iter())
    }
}

/// Kafka `processRegistrationFeature`: every finalized feature level must be within the
/// broker's supported range (a broker that omits `metadata.version` supports only level 1;
/// any other omitted feature only level 0).
fn check_features(delta: &MetadataDelta, req: &BrokerRegistrationRequest) -> Result<(), String> {
    let mut finalized = delta.base().features.clone();
    for (name, level) in delta.changed_features() {
        match level {
            Some(l) => finalized.insert(name.clone(), *l),
            None => finalized.remove(name),
        };
    }
    for (name, level) in finalized {
        let (min, max) = match req.features.iter().find(|f| f.name == name) {
            Some(f) => (f.min_supported_version, f.max_supported_version),
            None if name == METADATA_VERSION_FEATURE => (1, 1),
            None => (0, 0),
        };
        if level < min || level > max {
            return Err(format!(
                "Unable to register because the broker does not support finalized version \
                 {level} of {name}. The broker wants a version between {min} and {max}, inclusive."
            ));
        }
    }
    Ok(())
}
