//! The broker's life as the controller sees it (Kafka's `BrokerLifecycleManager`): register
//! (BrokerRegistration, retried until accepted), then heartbeat every
//! `broker.heartbeat.interval.ms` with the metadata offset this broker has published. The
//! controller keeps the broker fenced (no leadership, no ISR membership) until that offset
//! reaches its registration, and fences it again when heartbeats stop for
//! `broker.session.timeout.ms`. At shutdown the broker asks to shut down (KIP-841 controlled
//! shutdown) and keeps heartbeating until the controller moved its leaderships away, bounded by
//! a timeout.

use std::sync::Arc;
use std::time::Duration;

use fjord_controller::{
    BrokerHeartbeatRequest, BrokerRegistrationRequest, ControllerReply, ControllerRequest,
    ErrorCode,
};
use fjord_metadata::{
    BrokerEndpoint, BrokerFeature, MetadataRecord, RegisterBrokerRecord, METADATA_VERSION_FEATURE,
};
use tokio::sync::watch;
use uuid::Uuid;

use crate::controller_channel::ControllerChannel;
use crate::BrokerConfig;

/// The `metadata.version` levels this broker understands.
pub const METADATA_VERSION_MIN: i16 = 1;
pub const METADATA_VERSION_MAX: i16 = 30;

/// Where the broker stands with the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerState {
    /// Not registered yet.
    Starting,
    /// Registered with this broker epoch, fenced (catching up, or the controller fenced it).
    Fenced { epoch: i64 },
    /// Registered and unfenced: may lead and be in ISRs.
    Running { epoch: i64 },
    /// Controlled shutdown finished (or timed out): leaderships moved away.
    ShutDown,
    /// The controller refused the registration for good: the quorum is another cluster's
    /// (INCONSISTENT_CLUSTER_ID). The node must stop.
    Refused,
}

/// The registration this broker sends: every listener (advertised address and security
/// protocol), rack and supported features.
pub fn registration_request(
    config: &BrokerConfig,
    cluster_id: &str,
    incarnation_id: Uuid,
    rack: Option<String>,
) -> BrokerRegistrationRequest {
    BrokerRegistrationRequest {
        broker_id: config.node_id,
        cluster_id: cluster_id.to_string(),
        incarnation_id,
        listeners: config
            .listeners
            .iter()
            .map(|listener| BrokerEndpoint {
                name: listener.name.clone(),
                host: listener.advertised_host.clone(),
                port: listener.advertised_port,
                security_protocol: listener.security_protocol.id(),
            })
            .collect(),
        features: vec![BrokerFeature {
            name: METADATA_VERSION_FEATURE.to_string(),
            min_supported_version: METADATA_VERSION_MIN,
            max_supported_version: METADATA_VERSION_MAX,
        }],
        rack,
        previous_broker_epoch: -1,
    }
}

/// The `RegisterBrokerRecord` a migration writes for this broker, unfenced (its logs are
/// already here), so that its migrated partitions have an active leader. The controller puts
/// the entry's offset in as broker epoch; the broker's own registration with the same
/// incarnation then changes nothing.
pub fn migration_registration_record(request: &BrokerRegistrationRequest) -> MetadataRecord {
    MetadataRecord::RegisterBroker(RegisterBrokerRecord {
        broker_id: request.broker_id,
        incarnation_id: request.incarnation_id,
        broker_epoch: 0,
        end_points: request.listeners.clone(),
        features: request.features.clone(),
        rack: request.rack.clone(),
        fenced: false,
        in_controlled_shutdown: false,
    })
}

/// Timing of the lifecycle (Kafka names).
#[derive(Debug, Clone)]
pub struct LifecycleConfig {
    /// `broker.heartbeat.interval.ms`.
    pub heartbeat_interval_ms: u64,
    /// How long one request to the controller may take before it is retried.
    pub request_timeout_ms: u64,
    /// Upper bound on controlled shutdown before the broker stops anyway.
    pub controlled_shutdown_timeout_ms: u64,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: 2_000,
            request_timeout_ms: 5_000,
            controlled_shutdown_timeout_ms: 30_000,
        }
    }
}

/// Drives registration and heartbeats over a [`ControllerChannel`].
pub struct BrokerLifecycle {
    channel: Arc<dyn ControllerChannel>,
    config: LifecycleConfig,
    registration: BrokerRegistrationRequest,
    state: watch::Sender<BrokerState>,
    /// The highest metadata offset this broker has published.
    metadata_offset: Box<dyn Fn() -> i64 + Send + Sync>,
}

impl BrokerLifecycle {
    pub fn new(
        channel: Arc<dyn ControllerChannel>,
        config: LifecycleConfig,
        registration: BrokerRegistrationRequest,
        metadata_offset: Box<dyn Fn() -> i64 + Send + Sync>,
    ) -> Arc<Self> {
        let (state, _) = watch::channel(BrokerState::Starting);
        Arc::new(Self {
            channel,
            config,
            registration,
            state,
            metadata_offset,
        })
    }

    pub fn state(&self) -> BrokerState {
        *self.state.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<BrokerState> {
        self.state.subscribe()
    }

    /// Registers, retrying refusals (e.g. DUPLICATE_BROKER_REGISTRATION while the previous
    /// incarnation's session lasts) until accepted. Returns the broker epoch, or `None` when
    /// the controller belongs to another cluster (state [`BrokerState::Refused`]).
    pub async fn register(&self) -> Option<i64> {
        let mut logged = false;
        loop {
            let request = ControllerRequest::BrokerRegistration(self.registration.clone());
            match self
                .channel
                .send(request, self.config.request_timeout_ms)
                .await
            {
                Ok(ControllerReply::BrokerRegistration(reply)) if reply.error.code.is_none() => {
                    tracing::info!(
                        broker = self.registration.broker_id,
                        epoch = reply.broker_epoch,
                        "registered with the controller"
                    );
                    self.state.send_replace(BrokerState::Fenced {
                        epoch: reply.broker_epoch,
                    });
                    return Some(reply.broker_epoch);
                }
                Ok(ControllerReply::BrokerRegistration(reply))
                    if reply.error.code == ErrorCode::InconsistentClusterId =>
                {
                    tracing::error!(
                        broker = self.registration.broker_id,
                        cluster_id = %self.registration.cluster_id,
                        "INCONSISTENT_CLUSTER_ID: the controller quorum belongs to another cluster than this data directory"
                    );
                    self.state.send_replace(BrokerState::Refused);
                    return None;
                }
                outcome => {
                    if !logged {
                        tracing::info!(
                            broker = self.registration.broker_id,
                            ?outcome,
                            "broker registration not accepted yet; retrying"
                        );
                        logged = true;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(
                self.config.heartbeat_interval_ms.min(500),
            ))
            .await;
        }
    }

    /// One heartbeat; updates the state. Returns false when the broker must register again.
    async fn heartbeat(&self, epoch: i64, want_shut_down: bool) -> Option<ControllerReply> {
        let request = ControllerRequest::BrokerHeartbeat(BrokerHeartbeatRequest {
            broker_id: self.registration.broker_id,
            broker_epoch: epoch,
            current_metadata_offset: (self.metadata_offset)(),
            want_fence: false,
            want_shut_down,
        });
        self.channel
            .send(request, self.config.request_timeout_ms)
            .await
            .ok()
    }

    /// Registers, then heartbeats until `shutdown` turns true; then runs controlled shutdown.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let Some(mut epoch) = self.register().await else {
            return;
        };
        let interval = Duration::from_millis(self.config.heartbeat_interval_ms);
        // The first heartbeat goes at once: unfencing should not wait a whole interval.
        let mut next = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                    continue;
                }
            }
            if *shutdown.borrow() {
                break;
            }
            next = tokio::time::Instant::now() + interval;
            // While fenced, heartbeat faster so unfencing follows the metadata quickly.
            if matches!(self.state(), BrokerState::Fenced { .. }) {
                next = tokio::time::Instant::now() + interval.min(Duration::from_millis(100));
            }
            match self.heartbeat(epoch, false).await {
                Some(ControllerReply::BrokerHeartbeat(reply)) => {
                    if reply.error.code == ErrorCode::StaleBrokerEpoch {
                        tracing::warn!(
                            epoch,
                            "the controller forgot this broker epoch; registering again"
                        );
                        self.state.send_replace(BrokerState::Starting);
                        match self.register().await {
                            Some(new_epoch) => epoch = new_epoch,
                            None => return,
                        }
                        continue;
                    }
                    if reply.error.code.is_none() {
                        let state = if reply.is_fenced {
                            BrokerState::Fenced { epoch }
                        } else {
                            BrokerState::Running { epoch }
                        };
                        if state != self.state() {
                            tracing::info!(?state, "broker state changed");
                        }
                        self.state.send_replace(state);
                    }
                }
                other => tracing::debug!(?other, "heartbeat not answered"),
            }
        }
        self.controlled_shutdown(epoch).await;
    }

    /// KIP-841: asks to shut down and heartbeats until the controller says its leaderships
    /// moved (`should_shut_down`), or the timeout passes.
    async fn controlled_shutdown(&self, epoch: i64) {
        let deadline = tokio::time::Instant::now()
            + Duration::from_millis(self.config.controlled_shutdown_timeout_ms);
        while tokio::time::Instant::now() < deadline {
            if let Some(ControllerReply::BrokerHeartbeat(reply)) = self.heartbeat(epoch, true).await
            {
                if reply.should_shut_down || reply.error.code == ErrorCode::StaleBrokerEpoch {
                    tracing::info!("controlled shutdown complete");
                    self.state.send_replace(BrokerState::ShutDown);
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tracing::warn!(
            timeout_ms = self.config.controlled_shutdown_timeout_ms,
            "controlled shutdown timed out; stopping anyway"
        );
        self.state.send_replace(BrokerState::ShutDown);
    }
}
