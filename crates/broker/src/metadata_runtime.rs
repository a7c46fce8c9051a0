//! `MetadataRuntime`: a [`MetadataNode`] shared between threads and tasks. The sans-IO node
//! decides; this wrapper runs each call under one lock, then hands out what the call produced:
//! Raft messages to a [`RaftSink`] (the server's peer links; nothing on a one-voter quorum),
//! replies to the waiting requests (oneshot channels), and new images to the publisher (the
//! broker's `publish_metadata`) and to [`MetadataRuntime::subscribe`]rs.
//!
//! Images are published under the lock, so publishers see them in log order. A publisher must
//! therefore never wait on the runtime itself (a controller request from inside
//! `publish_metadata` would deadlock); it schedules such work instead.
//!
//! A [`NodeError`] (a committed entry that does not replay, a failed disk) poisons the runtime:
//! every later call fails, and the server stops the process, as Kafka's fault handler does.

use std::sync::Arc;
use std::time::Duration;

use fjord_controller::{ControllerReply, ControllerRequest, QuorumController};
use fjord_metadata::{MetadataDelta, MetadataImage};
use fjord_raft::{QuorumDescription, RaftLogStore, RaftMessage};
use parking_lot::{Mutex, RwLock};
use tokio::sync::{oneshot, watch};

use crate::controller_channel::{ControllerChannel, ControllerChannelError};
use crate::metadata_node::{
    MetadataNode, MetadataNodeConfig, NodeError, NodeOutput, NotController,
};
use crate::node_channel::BoxFuture;

/// Where outgoing Raft messages go. `send` must not block; `false` means the message was
/// dropped (queue full, unknown peer) and the peer is reported unreachable.
pub trait RaftSink: Send + Sync {
    fn send(&self, to: u64, message: RaftMessage) -> bool;
}

/// A one-voter quorum has nobody to talk to.
pub struct NoPeers;

impl RaftSink for NoPeers {
    fn send(&self, _to: u64, _message: RaftMessage) -> bool {
        false
    }
}

type ReplySender = oneshot::Sender<Result<ControllerReply, NotController>>;
pub type Publisher = Box<dyn Fn(&MetadataDelta, &Arc<MetadataImage>) + Send + Sync>;

/// The error of a runtime that stopped working.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the metadata runtime failed: {0}")]
pub struct RuntimeFailed(pub String);

pub struct MetadataRuntime<S: RaftLogStore> {
    node: Mutex<MetadataNode<S, QuorumController, ReplySender>>,
    sink: Arc<dyn RaftSink>,
    publisher: RwLock<Option<Publisher>>,
    image: watch::Sender<Arc<MetadataImage>>,
    failed: RwLock<Option<String>>,
}

impl<S: RaftLogStore + Send> MetadataRuntime<S> {
    pub fn open(
        config: MetadataNodeConfig,
        controller: QuorumController,
        store: S,
        sink: Arc<dyn RaftSink>,
    ) -> Result<Arc<Self>, NodeError> {
        let node = MetadataNode::open(config, store, controller)?;
        let (image, _) = watch::channel(node.image().clone());
        Ok(Arc::new(Self {
            node: Mutex::new(node),
            sink,
            publisher: RwLock::new(None),
            image,
            failed: RwLock::new(None),
        }))
    }

    /// Installs the function every new image goes to (the broker's `publish_metadata`).
    pub fn set_publisher(&self, publisher: Publisher) {
        *self.publisher.write() = Some(publisher);
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.borrow().clone()
    }

    /// Follows every published image.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.image.subscribe()
    }

    pub fn is_active(&self) -> bool {
        self.node.lock().is_active()
    }

    pub fn leader_hint(&self) -> Option<i32> {
        self.node.lock().leader_hint()
    }

    pub fn describe(&self) -> QuorumDescription {
        self.node.lock().quorum().describe()
    }

    /// DescribeQuorum's source for the broker of this node
    /// ([`crate::Broker::set_quorum_describer`]): the quorum with wall-clock times when this
    /// node is the Raft leader, `None` otherwise. Observers are the registered brokers that
    /// are not voters, with the metadata offset of their last heartbeat to this controller.
    /// Holds the runtime weakly (the runtime's publisher holds the broker).
    pub fn quorum_describer(self: &Arc<Self>) -> crate::apis::describe_quorum::QuorumDescriber
    where
        S: 'static,
    {
        let runtime = Arc::downgrade(self);
        Arc::new(move || {
            let runtime = runtime.upgrade()?;
            let node = runtime.node.lock();
            let description = node.quorum().describe();
            let own_id = node.quorum().node_id();
            if description.leader_id != Some(own_id) {
                return None;
            }
            let voters: std::collections::BTreeSet<u64> =
                description.voters.iter().map(|v| v.id).collect();
            let heartbeats = node.controller().heartbeats();
            let observers = node
                .image()
                .brokers
                .keys()
                .filter(|id| u64::try_from(**id).map_or(true, |id| !voters.contains(&id)))
                .map(|id| (*id, heartbeats.get(*id).map_or(-1, |h| h.metadata_offset)))
                .collect();
            Some(crate::apis::describe_quorum::QuorumSnapshot {
                description,
                observers,
                clock: Some(crate::controller_wire::TickClock {
                    now_ms: crate::time::now_ms(),
                    tick_ms: TICK_MS as i64,
                }),
            })
        })
    }

    /// Answers an observer's FetchMetadata or FetchMetadataSnapshot from this voter's
    /// committed log (see [`crate::metadata_fetch`]).
    pub fn answer_observer(
        &self,
        request: &crate::metadata_fetch::ObserverRequest,
    ) -> Result<crate::metadata_fetch::ObserverResponse, RuntimeFailed> {
        use crate::metadata_fetch::{
            answer_fetch_metadata, answer_fetch_snapshot, ObserverRequest, ObserverResponse,
        };
        self.check()?;
        let node = self.node.lock();
        let cluster_id = node.image().cluster_id.clone();
        Ok(match request {
            ObserverRequest::Fetch(request) => ObserverResponse::Fetch(answer_fetch_metadata(
                node.quorum(),
                cluster_id.as_deref(),
                request,
            )),
            ObserverRequest::Snapshot(request) => ObserverResponse::Snapshot(
                answer_fetch_snapshot(node.quorum(), cluster_id.as_deref(), request),
            ),
        })
    }

    pub fn failure(&self) -> Option<RuntimeFailed> {
        self.failed.read().clone().map(RuntimeFailed)
    }

    fn check(&self) -> Result<(), RuntimeFailed> {
        match self.failure() {
            Some(failed) => Err(failed),
            None => Ok(()),
        }
    }

    /// One tick (the server calls it every `TICK_MS`).
    pub fn tick(&self, now_ms: i64) -> Result<(), RuntimeFailed> {
        self.check()?;
        let mut node = self.node.lock();
        node.tick(now_ms);
        self.poll_locked(&mut node, now_ms)
    }

    /// A Raft message from another voter.
    pub fn step(&self, message: RaftMessage, now_ms: i64) -> Result<(), RuntimeFailed> {
        self.check()?;
        let mut node = self.node.lock();
        if let Err(error) = node.step(message) {
            return Err(self.fail(error));
        }
        self.poll_locked(&mut node, now_ms)
    }

    /// Submits a request to this node's controller; the receiver yields the reply once its
    /// records committed. Fails at once when this node is not the active controller.
    pub fn submit(
        &self,
        request: ControllerRequest,
        now_ms: i64,
    ) -> Result<oneshot::Receiver<Result<ControllerReply, NotController>>, NotController> {
        if let Some(failed) = self.failure() {
            return Err(NotController::Refused(failed.0));
        }
        let (reply_tx, reply_rx) = oneshot::channel();
        let mut node = self.node.lock();
        if let Err((_, error)) = node.submit(now_ms, request, reply_tx) {
            return Err(error);
        }
        if let Err(failed) = self.poll_locked(&mut node, now_ms) {
            return Err(NotController::Refused(failed.0));
        }
        Ok(reply_rx)
    }

    fn fail(&self, error: NodeError) -> RuntimeFailed {
        let reason = error.to_string();
        tracing::error!(error = %reason, "metadata runtime failed; the node must restart");
        *self.failed.write() = Some(reason.clone());
        RuntimeFailed(reason)
    }

    fn poll_locked(
        &self,
        node: &mut MetadataNode<S, QuorumController, ReplySender>,
        now_ms: i64,
    ) -> Result<(), RuntimeFailed> {
        let output = match node.poll(now_ms) {
            Ok(output) => output,
            Err(error) => return Err(self.fail(error)),
        };
        self.dispatch(node, output);
        Ok(())
    }

    fn dispatch(
        &self,
        node: &mut MetadataNode<S, QuorumController, ReplySender>,
        output: NodeOutput<ReplySender, ControllerReply>,
    ) {
        for (to, message) in output.messages {
            if !self.sink.send(to, message) {
                node.report_unreachable(to);
            }
        }
        // Images first: a reply's records are then visible to whoever the reply wakes.
        if let Some(published) = output.published {
            if let Some(publisher) = self.publisher.read().as_ref() {
                publisher(&published.delta, &published.image);
            }
            self.image.send_replace(published.image);
        }
        for (reply_to, reply) in output.replies {
            // The requester may have given up (timeout); nothing to do then.
            let _ = reply_to.send(reply);
        }
    }
}

/// The broker's channel to a controller in this process: retries while the node is not (yet)
/// the active controller, until the timeout.
pub struct LocalControllerChannel<S: RaftLogStore> {
    runtime: Arc<MetadataRuntime<S>>,
    clock: fn() -> i64,
}

impl<S: RaftLogStore> LocalControllerChannel<S> {
    pub fn new(runtime: Arc<MetadataRuntime<S>>) -> Self {
        Self {
            runtime,
            clock: crate::time::monotonic_ms,
        }
    }
}

/// How long a request waits between attempts while no controller is active.
pub const CONTROLLER_RETRY_BACKOFF_MS: u64 = 50;

impl<S: RaftLogStore + Send + 'static> ControllerChannel for LocalControllerChannel<S> {
    fn send(
        &self,
        request: ControllerRequest,
        timeout_ms: u64,
    ) -> BoxFuture<'_, Result<ControllerReply, ControllerChannelError>> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
            loop {
                if self.runtime.failure().is_some() {
                    return Err(ControllerChannelError::ShuttingDown);
                }
                if let Ok(receiver) = self.runtime.submit(request.clone(), (self.clock)()) {
                    match tokio::time::timeout_at(deadline, receiver).await {
                        Ok(Ok(Ok(reply))) => return Ok(reply),
                        Err(_) => return Err(ControllerChannelError::Timeout { timeout_ms }),
                        // Lost leadership or the reply was dropped: try again.
                        Ok(_) => {}
                    }
                }
                let retry_at = tokio::time::Instant::now()
                    + Duration::from_millis(CONTROLLER_RETRY_BACKOFF_MS);
                if retry_at >= deadline {
                    return Err(ControllerChannelError::Timeout { timeout_ms });
                }
                tokio::time::sleep_until(retry_at).await;
            }
        })
    }
}

/// The quorum's tick: Raft's election timeout is 10 ticks (Kafka's
/// `controller.quorum.election.timeout.ms` = 1000 by default) and heartbeats go every 2.
pub const TICK_MS: u64 = 100;

/// The controller's settings from the broker's (Kafka names in `ControllerConfig`).
pub fn controller_config(
    config: &crate::BrokerConfig,
    seed: u64,
) -> fjord_controller::ControllerConfig {
    fjord_controller::ControllerConfig {
        node_id: config.node_id,
        num_partitions: config.num_partitions,
        default_replication_factor: config.default_replication_factor,
        seed,
        ..fjord_controller::ControllerConfig::default()
    }
}

/// What the controller writes after the bootstrap entry of an empty log: for a data dir from
/// before the metadata log, this broker's registration (so its migrated partitions have an
/// active leader) and the legacy topics, configs and producer ids.
pub fn initial_records(
    registration: &fjord_controller::BrokerRegistrationRequest,
    legacy: Option<&fjord_metadata::migration::LegacyMetadata>,
    node_id: i32,
) -> Vec<fjord_metadata::MetadataRecord> {
    let Some(legacy) = legacy else {
        return Vec::new();
    };
    let mut records = vec![crate::lifecycle::migration_registration_record(
        registration,
    )];
    records.extend(fjord_metadata::migration::migration_records(
        node_id, legacy,
    ));
    records
}
