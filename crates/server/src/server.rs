//! The Kafka listeners: accept connections up to `max.connections` (over all listeners), run
//! each one as a task with a `Session` naming its listener and security protocol (TLS
//! listeners finish the handshake first, within `tls::HANDSHAKE_TIMEOUT`, and take the
//! principal from the client certificate), and on shutdown stop accepting, let every
//! connection finish the requests it has read, then close the broker's logs.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use fjord_broker::listeners::ListenerConfig;
use fjord_broker::security::sasl::{Mechanism, SaslConfig, SaslServerAuthenticator};
use fjord_broker::security::{KafkaPrincipal, Session};
use fjord_broker::{Broker, BrokerConfig};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tracing::{info, warn};

use fjord_broker::lifecycle::{
    registration_request, BrokerLifecycle, BrokerState, LifecycleConfig,
};
use fjord_broker::metadata_runtime::initial_records;
use fjord_metadata::migration::LegacyMetadata;
use fjord_metadata::{MetadataDelta, MetadataImage};
use tokio::sync::watch as lifecycle_watch;

use crate::connection::{self, ConnectionAuth, ConnectionLimits};
use crate::http::{self, HealthState};
use crate::metadata_service::MetadataService;
use crate::node_client::{InterBrokerTls, NodeChannelLimits, TcpNodeChannel};
use crate::observer_service::ObserverService;
use crate::test_hooks::{PeerAddresses, PeerListener};
use crate::tls::ListenerTls;
use fjord_broker::txn_markers::{ClusterTxnMarkerWriter, LocalTxnMarkerWriter};

/// Starts the broker in an order that makes readiness observable: the metrics and health
/// listener first (live, not ready), then recovery (`Broker::open`), then the Kafka listener,
/// then ready. Runs until `shutdown_requested` resolves and shutdown completes.
///
/// `peer_addresses` resolves every address this node dials on another node (test hook
/// overrides, see `test_hooks`; empty in production).
/// What `fjord serve --secure` needs done once the broker is ready: its admin SCRAM user
/// created (when the image has none) and the client settings printed.
pub struct SecureAdmin {
    pub user: String,
    pub password: String,
    pub iterations: i32,
    /// Printed to stdout once the broker is ready.
    pub banner: String,
}

pub async fn serve(
    config: BrokerConfig,
    peer_addresses: PeerAddresses,
    secure_admin: Option<SecureAdmin>,
    shutdown_requested: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    // A controller-only node runs the quorum and no broker (see `open_and_run`).
    let metrics_listener = TcpListener::bind(&config.metrics_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (metrics.listen)",
                config.metrics_listen
            )
        })?;
    let health = Arc::new(HealthState::default());
    let http = tokio::spawn(http::run(metrics_listener, health.clone()));
    info!(metrics_listen = %config.metrics_listen, "metrics and health listener started");
    let result = open_and_run(
        config,
        Arc::new(peer_addresses),
        health,
        secure_admin,
        shutdown_requested,
    )
    .await;
    http.abort();
    result
}

async fn open_and_run(
    config: BrokerConfig,
    peer_addresses: Arc<PeerAddresses>,
    health: Arc<HealthState>,
    secure_admin: Option<SecureAdmin>,
    shutdown_requested: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let node_id = config.node_id;
    // TLS settings and files are checked before anything is opened: a bad one stops the start.
    let listener_tls = if config.process_roles.broker {
        load_listener_tls(&config)?
    } else {
        Vec::new()
    };
    let listener_sasl = if config.process_roles.broker {
        load_listener_sasl(&config)?
    } else {
        Vec::new()
    };
    let inter_broker_sasl = config
        .listeners
        .iter()
        .zip(&listener_sasl)
        .find(|(listener, _)| listener.name == config.inter_broker_listener_name)
        .and_then(|(_, sasl)| sasl.clone());
    let inter_broker_tls = if config.process_roles.broker {
        inter_broker_client_tls(&config)?
    } else {
        InterBrokerTls::Plain
    };
    let legacy = {
        let data_dir = config.data_dir.clone();
        tokio::task::spawn_blocking(move || {
            fjord_broker::migration::read_legacy_metadata(&data_dir)
        })
        .await
        .context("reading legacy metadata")??
    };
    if legacy.is_some() && config.controller_quorum_voters.len() > 1 {
        anyhow::bail!(
            "{} holds a single-node data dir (topics.json); start it once as a single node to migrate it before it joins a quorum",
            config.data_dir.display()
        );
    }
    if legacy.is_some() && !config.process_roles.controller {
        anyhow::bail!(
            "{} holds a single-node data dir (topics.json); start it once as a single node (broker,controller) to migrate it",
            config.data_dir.display()
        );
    }
    let incarnation = uuid::Uuid::new_v4();
    let (seed, _) = incarnation.as_u64_pair();
    let registration = registration_request(&config, "", incarnation, config.broker_rack.clone());
    let service = if config.process_roles.controller {
        let initial = initial_records(&registration, legacy.as_ref(), node_id);
        MetadataSource::Quorum(
            MetadataService::start(&config, initial, seed, Some(incarnation), &peer_addresses)
                .await?,
        )
    } else {
        MetadataSource::Observer(ObserverService::start(&config, &peer_addresses).await?)
    };
    let cluster_id = loop {
        if let Some(id) = service.wait_for_cluster_id(Duration::from_secs(5)).await? {
            break id;
        }
        info!(voters = ?config.controller_quorum_voters, "waiting for a majority of the controller quorum");
    };
    check_cluster_id(&config, &cluster_id)?;
    if !config.process_roles.broker {
        info!(node_id, %cluster_id, "controller ready");
        health.set_ready(true);
        shutdown_requested.await;
        service.stop();
        return Ok(());
    }
    if let Some(legacy) = &legacy {
        wait_for_migration(&service, legacy).await;
        fjord_broker::migration::finish_migration(&config.data_dir)?;
        info!(
            topics = legacy.topics.len(),
            "migrated topics.json and broker-configs.json into the metadata log"
        );
    }

    // Images committed while the broker opens are queued, then applied in order.
    let publisher = Arc::new(QueueingPublisher::default());
    {
        let publisher = publisher.clone();
        service.set_publisher(Box::new(move |delta, image| {
            publisher.publish(delta, image)
        }));
    }
    let image = service.image();
    let opened = {
        let config = config.clone();
        let channel = service.channel();
        let image = image.clone();
        tokio::task::spawn_blocking(move || Broker::open(config, image, channel)).await
    };
    let broker =
        Arc::new(opened.context("recovery task failed")?.with_context(|| {
            format!("cannot open data directory {}", config.data_dir.display())
        })?);
    if let MetadataSource::Quorum(quorum) = &service {
        broker.set_quorum_describer(quorum.runtime.quorum_describer());
    }
    publisher.attach(&broker, image.offset)?;
    health.set_broker(broker.clone());
    // Requests to other brokers (transaction markers today, follower fetches next), addressed
    // by node id; the addresses follow the image.
    let node_channel = Arc::new(
        TcpNodeChannel::new(format!("broker-{node_id}"), NodeChannelLimits::default())
            .with_tls(inter_broker_tls)
            .with_sasl(inter_broker_sasl),
    );
    let endpoints_task = tokio::spawn(follow_endpoints(
        service.subscribe(),
        node_channel.clone(),
        peer_addresses.clone(),
        config.inter_broker_listener_name.clone(),
    ));
    // Starts replication: follower fetchers, AlterPartition, ISR and HW checkpoint timers.
    broker.set_node_channel(node_channel.clone());
    {
        let weak = Arc::downgrade(&broker);
        broker.set_txn_marker_writer(Arc::new(ClusterTxnMarkerWriter::new(
            LocalTxnMarkerWriter::new(
                broker.replica_manager_arc(),
                broker.group_coordinator_arc(),
                broker.replication().clone(),
            ),
            node_id,
            Box::new(move || {
                weak.upgrade()
                    .map(|broker| broker.image())
                    .unwrap_or_else(|| Arc::new(MetadataImage::empty()))
            }),
            node_channel.clone(),
        )));
    }

    let mut registration = registration;
    registration.cluster_id = cluster_id.clone();
    let lifecycle = BrokerLifecycle::new(
        service.channel(),
        LifecycleConfig {
            heartbeat_interval_ms: config.broker_heartbeat_interval_ms,
            controlled_shutdown_timeout_ms: config.shutdown_timeout_ms,
            ..LifecycleConfig::default()
        },
        registration,
        {
            let broker = broker.clone();
            Box::new(move || broker.image().offset)
        },
    );
    let (stop_lifecycle, stop_lifecycle_rx) = lifecycle_watch::channel(false);
    let lifecycle_task = tokio::spawn(lifecycle.clone().run(stop_lifecycle_rx));
    if let Err(error) = wait_until_unfenced(&lifecycle).await {
        lifecycle_task.abort();
        endpoints_task.abort();
        node_channel.shutdown();
        service.stop();
        return Err(error);
    }
    // Unfenced: the image has caught up with this broker's registration (the first full
    // metadata load), so directories it does not assign here are strays (KAFKA-14616).
    {
        let broker = broker.clone();
        tokio::task::spawn_blocking(move || broker.replica_manager().rename_stray_partition_dirs())
            .await
            .context("stray partition check failed")??;
    }

    let mut listeners = Vec::with_capacity(config.listeners.len());
    for ((listener, tls), sasl) in config.listeners.iter().zip(listener_tls).zip(listener_sasl) {
        let tcp = TcpListener::bind(&listener.bind).await.with_context(|| {
            format!(
                "cannot listen on {} (listener {})",
                listener.bind, listener.name
            )
        })?;
        listeners.push(BoundListener {
            config: listener.clone(),
            tcp,
            tls,
            sasl,
        });
    }
    let describe = |l: &ListenerConfig| {
        format!(
            "{}://{} ({}, advertised {}:{})",
            l.name, l.bind, l.security_protocol, l.advertised_host, l.advertised_port
        )
    };
    info!(
        listeners = %config.listeners.iter().map(describe).collect::<Vec<_>>().join(", "),
        inter_broker_listener = %config.inter_broker_listener_name,
        data_dir = %config.data_dir.display(),
        node_id,
        cluster_id = %cluster_id,
        controller_listen = service.controller_address(),
        process_roles = if config.process_roles.controller { "broker,controller" } else { "broker" },
        "fjord broker ready"
    );
    if let Some(admin) = &secure_admin {
        ensure_scram_user(&broker, admin).await?;
        println!("{}", admin.banner);
    }
    health.set_ready(true);
    // Controlled shutdown (leaderships move away) runs before the listener stops. A broker-only
    // node whose observer stopped for good (another cluster, a failed metadata log) shuts down
    // too, and exits with that error.
    let mut observer_fatal = service.fatal();
    let fatal_reason: Arc<parking_lot::Mutex<Option<String>>> = Arc::default();
    let shutdown = {
        let lifecycle = lifecycle.clone();
        let fatal_reason = fatal_reason.clone();
        async move {
            let observer_stopped = async {
                match observer_fatal.as_mut() {
                    Some(fatal) => loop {
                        if let Some(reason) = fatal.borrow_and_update().clone() {
                            return reason;
                        }
                        if fatal.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    },
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown_requested => {}
                reason = observer_stopped => {
                    tracing::error!(%reason, "metadata observer stopped; shutting down");
                    *fatal_reason.lock() = Some(reason);
                }
            }
            info!("controlled shutdown: moving leaderships away");
            let _ = stop_lifecycle.send(true);
            let mut state = lifecycle.subscribe();
            while !matches!(*state.borrow(), BrokerState::ShutDown) {
                if state.changed().await.is_err() {
                    break;
                }
            }
        }
    };
    let outcome = run(listeners, broker, shutdown, &health).await;
    lifecycle_task.abort();
    endpoints_task.abort();
    node_channel.shutdown();
    service.stop();
    outcome?;
    if let Some(reason) = fatal_reason.lock().take() {
        anyhow::bail!(reason);
    }
    Ok(())
}

/// Where this node's metadata comes from: its own quorum member (controller roles) or the
/// observer loop (`process.roles=broker`). The broker above it is the same either way.
enum MetadataSource {
    Quorum(MetadataService),
    Observer(ObserverService),
}

impl MetadataSource {
    fn set_publisher(&self, publisher: fjord_broker::metadata_runtime::Publisher) {
        match self {
            Self::Quorum(quorum) => quorum.runtime.set_publisher(publisher),
            Self::Observer(observer) => observer.runtime.set_publisher(publisher),
        }
    }

    fn image(&self) -> Arc<MetadataImage> {
        match self {
            Self::Quorum(quorum) => quorum.runtime.image(),
            Self::Observer(observer) => observer.runtime.image(),
        }
    }

    fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        match self {
            Self::Quorum(quorum) => quorum.runtime.subscribe(),
            Self::Observer(observer) => observer.runtime.subscribe(),
        }
    }

    fn channel(&self) -> Arc<dyn fjord_broker::controller_channel::ControllerChannel> {
        match self {
            Self::Quorum(quorum) => quorum.channel.clone(),
            Self::Observer(observer) => observer.channel.clone(),
        }
    }

    fn controller_address(&self) -> &str {
        match self {
            Self::Quorum(quorum) => quorum.controller_address.as_deref().unwrap_or("in-process"),
            Self::Observer(_) => "none (observer)",
        }
    }

    /// The cluster id once formed (`None` after `timeout`); an observer refused by the quorum
    /// (another cluster) fails.
    async fn wait_for_cluster_id(&self, timeout: Duration) -> anyhow::Result<Option<String>> {
        match self {
            Self::Quorum(quorum) => Ok(quorum.wait_for_cluster_id(timeout).await),
            Self::Observer(observer) => observer.wait_for_cluster_id(timeout).await,
        }
    }

    /// An observer's "stopped for good" signal; `None` for a quorum member.
    fn fatal(&self) -> Option<watch::Receiver<Option<String>>> {
        match self {
            Self::Quorum(_) => None,
            Self::Observer(observer) => Some(observer.fatal()),
        }
    }

    fn stop(&self) {
        match self {
            Self::Quorum(quorum) => quorum.stop(),
            Self::Observer(observer) => observer.stop(),
        }
    }
}

/// Keeps the node channel's addresses equal to the brokers' inter-broker listeners in the
/// image (through the peer address resolver); the advertised host is the TLS server name.
async fn follow_endpoints(
    mut images: watch::Receiver<Arc<MetadataImage>>,
    channel: Arc<TcpNodeChannel>,
    peer_addresses: Arc<PeerAddresses>,
    inter_broker_listener_name: String,
) {
    loop {
        let endpoints: Vec<crate::node_client::PeerEndpoint> = images
            .borrow_and_update()
            .brokers
            .values()
            .filter_map(|broker| {
                let endpoint = broker.endpoint(&inter_broker_listener_name)?;
                let advertised = format!("{}:{}", endpoint.host, endpoint.port);
                Some(crate::node_client::PeerEndpoint {
                    node_id: broker.id,
                    address: peer_addresses.resolve(PeerListener::Kafka, broker.id, &advertised),
                    server_name: endpoint.host.clone(),
                })
            })
            .collect();
        channel.set_peer_endpoints(endpoints);
        if images.changed().await.is_err() {
            return;
        }
    }
}

/// Applies images to the broker in log order, holding those published while it opens.
#[derive(Default)]
struct QueueingPublisher {
    state: parking_lot::Mutex<PublisherState>,
}

#[derive(Default)]
struct PublisherState {
    queued: Vec<(MetadataDelta, Arc<MetadataImage>)>,
    broker: Option<std::sync::Weak<Broker>>,
}

impl QueueingPublisher {
    fn publish(&self, delta: &MetadataDelta, image: &Arc<MetadataImage>) {
        let mut state = self.state.lock();
        match state.broker.as_ref().and_then(|broker| broker.upgrade()) {
            Some(broker) => {
                if let Err(error) = broker.publish_metadata(delta, image) {
                    tracing::error!(%error, offset = image.offset, "applying metadata failed");
                }
            }
            None if state.broker.is_none() => state.queued.push((delta.clone(), image.clone())),
            None => {}
        }
    }

    /// From now on images go to `broker`; the queued ones after `opened_at` (the offset of the
    /// image the broker opened with) are applied first, in order.
    fn attach(&self, broker: &Arc<Broker>, opened_at: i64) -> anyhow::Result<()> {
        let mut state = self.state.lock();
        for (delta, image) in std::mem::take(&mut state.queued) {
            if image.offset > opened_at {
                broker
                    .publish_metadata(&delta, &image)
                    .context("applying metadata committed while the broker opened")?;
            }
        }
        state.broker = Some(Arc::downgrade(broker));
        Ok(())
    }
}

/// Writes the cluster id to `meta.properties` on first start; refuses a data dir of another
/// cluster (Kafka: INCONSISTENT_CLUSTER_ID at start).
fn check_cluster_id(config: &BrokerConfig, cluster_id: &str) -> anyhow::Result<()> {
    match fjord_storage::read_meta_properties(&config.data_dir)? {
        Some(meta) if meta.cluster_id != cluster_id => anyhow::bail!(
            "INCONSISTENT_CLUSTER_ID: {} belongs to cluster {}, but the controller quorum is cluster {cluster_id}",
            config.data_dir.display(),
            meta.cluster_id
        ),
        Some(meta) if meta.node_id != config.node_id => anyhow::bail!(
            "{} belongs to node {}, not node.id {}",
            config.data_dir.display(),
            meta.node_id,
            config.node_id
        ),
        Some(_) => Ok(()),
        None => {
            fjord_storage::write_meta_properties(
                &config.data_dir,
                &fjord_storage::MetaProperties {
                    version: 1,
                    node_id: config.node_id,
                    cluster_id: cluster_id.to_string(),
                },
            )?;
            Ok(())
        }
    }
}

/// Waits until the migration records (written by the controller right after bootstrap) are in
/// the image.
async fn wait_for_migration(service: &MetadataSource, legacy: &LegacyMetadata) {
    let mut images = service.subscribe();
    loop {
        let done = {
            let image = images.borrow();
            legacy
                .topics
                .iter()
                .all(|topic| image.topic_by_name(&topic.name).is_some())
        };
        if done || images.changed().await.is_err() {
            return;
        }
    }
}

/// Waits until the controller unfenced this broker (its metadata caught up with its
/// registration), logging while it waits. Fails when the controller refused this broker for
/// good (another cluster).
async fn wait_until_unfenced(lifecycle: &BrokerLifecycle) -> anyhow::Result<()> {
    let mut state = lifecycle.subscribe();
    loop {
        match *state.borrow() {
            BrokerState::Running { .. } => return Ok(()),
            BrokerState::Refused => anyhow::bail!(
                "INCONSISTENT_CLUSTER_ID: the controller quorum belongs to another cluster than this data directory"
            ),
            _ => {}
        }
        match tokio::time::timeout(Duration::from_secs(5), state.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Ok(()),
            Err(_) => {
                info!(state = ?lifecycle.state(), "waiting for the controller to unfence this broker")
            }
        }
    }
}

/// A bound Kafka listener.
pub struct BoundListener {
    pub config: ListenerConfig,
    pub tcp: TcpListener,
    /// The TLS server side of an SSL / SASL_SSL listener.
    pub tls: Option<Arc<ListenerTls>>,
    /// The SASL settings of a SASL_PLAINTEXT / SASL_SSL listener.
    pub sasl: Option<Arc<SaslConfig>>,
}

impl BoundListener {
    /// A PLAINTEXT listener named PLAINTEXT (tests).
    #[cfg(test)]
    pub fn plaintext(tcp: TcpListener) -> Self {
        let address = tcp.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let (host, port) = address.rsplit_once(':').unwrap_or(("127.0.0.1", "0"));
        Self {
            config: ListenerConfig {
                name: "PLAINTEXT".into(),
                bind: address.clone(),
                security_protocol: fjord_broker::security::SecurityProtocol::Plaintext,
                advertised_host: host.to_string(),
                advertised_port: port.parse().unwrap_or(0),
            },
            tcp,
            tls: None,
            sasl: None,
        }
    }
}

/// The TLS server side of every listener (`None` for PLAINTEXT and SASL_PLAINTEXT ones), in
/// `listeners` order.
fn load_listener_tls(config: &BrokerConfig) -> anyhow::Result<Vec<Option<Arc<ListenerTls>>>> {
    config
        .listeners
        .iter()
        .map(|listener| {
            if !listener.security_protocol.uses_tls() {
                return Ok(None);
            }
            let tls = ListenerTls::load(config, &listener.name)?;
            info!(listener = %listener.name, client_auth = ?tls.client_auth(), "TLS keystore loaded");
            Ok(Some(Arc::new(tls)))
        })
        .collect()
}

/// The SASL settings of every listener (`None` for PLAINTEXT and SSL ones), in `listeners`
/// order. A bad setting (an unknown mechanism, a JAAS syntax error, an unreadable JWKS file)
/// stops the start.
fn load_listener_sasl(config: &BrokerConfig) -> anyhow::Result<Vec<Option<Arc<SaslConfig>>>> {
    config
        .listeners
        .iter()
        .map(|listener| {
            if !listener.security_protocol.uses_sasl() {
                return Ok(None);
            }
            let sasl = SaslConfig::from_settings(&config.explicit_settings, &listener.name)
                .with_context(|| format!("SASL settings of listener {}", listener.name))?;
            info!(listener = %listener.name, ?sasl, "SASL enabled");
            Ok(Some(Arc::new(sasl)))
        })
        .collect()
}

/// Re-reads an OAUTHBEARER listener's JWKS file on the TLS reload tick, so rotated signing
/// keys are picked up without a restart (a broken file keeps the old keys).
async fn run_jwks_reloader(
    listener: String,
    sasl: Arc<SaslConfig>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        if let Err(err) = sasl.reload_jwks() {
            warn!(%listener, error = %err, "JWKS reload failed; keeping the previous keys");
        }
    }
}

/// The inter-broker client's TLS config, when the inter-broker listener uses TLS. Without a
/// truststore this broker cannot dial its peers (a single node has none to dial): that is a
/// warning now and the reason every dial fails with; any other TLS error stops the start.
fn inter_broker_client_tls(config: &BrokerConfig) -> anyhow::Result<InterBrokerTls> {
    let name = &config.inter_broker_listener_name;
    match config.listener(name) {
        Some(listener) if listener.security_protocol.uses_tls() => {
            match crate::tls::client_config(config, name) {
                Ok(client) => Ok(InterBrokerTls::Tls(client)),
                Err(err @ crate::tls::TlsError::Missing { .. }) => {
                    warn!(error = %err, "other brokers cannot be dialled over the inter-broker listener");
                    Ok(InterBrokerTls::Unavailable(err.to_string()))
                }
                Err(err) => Err(err.into()),
            }
        }
        _ => Ok(InterBrokerTls::Plain),
    }
}

/// Accepted connections waiting for the accept loop (over all listeners).
const ACCEPT_QUEUE_MAX: usize = 64;

/// A connection accepted on listener `listener` (index into the bound listeners).
struct Accepted {
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    listener: usize,
}

/// Accepts on one listener and hands connections to the accept loop.
async fn accept_loop(tcp: TcpListener, listener: usize, accepted: mpsc::Sender<Accepted>) {
    loop {
        match tcp.accept().await {
            Ok((stream, peer)) => {
                if accepted
                    .send(Accepted {
                        stream,
                        peer,
                        listener,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(err) => {
                // EMFILE and friends: back off instead of spinning.
                warn!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Runs one accepted connection: the TLS handshake first on a TLS listener (bounded by
/// `tls::HANDSHAKE_TIMEOUT`; a failure is logged and closes the connection), then the
/// request loop with the connection's session.
async fn serve_connection(
    accepted: Accepted,
    listener: ListenerConfig,
    security: (Option<Arc<ListenerTls>>, Option<Arc<SaslConfig>>),
    broker: Arc<Broker>,
    limits: ConnectionLimits,
    shutdown: watch::Receiver<bool>,
) {
    let Accepted { stream, peer, .. } = accepted;
    let (tls, sasl) = security;
    let auth = match sasl {
        Some(sasl) => ConnectionAuth::Sasl(Box::new(SaslServerAuthenticator::new(
            sasl,
            Some(peer.ip()),
            broker.metrics().sasl.clone(),
        ))),
        None => ConnectionAuth::AuthenticatedAtAccept,
    };
    let Some(tls) = tls else {
        let session = Session::new(
            KafkaPrincipal::anonymous(),
            Some(peer.ip()),
            listener.name,
            listener.security_protocol,
        );
        connection::serve(stream, peer, session, auth, broker, limits, shutdown).await;
        return;
    };
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!(%peer, error = %err, "set_nodelay failed");
    }
    let Some((stream, principal)) = tls.accept(stream, peer, &listener.name, "").await else {
        return;
    };
    let session = Session::new(
        principal,
        Some(peer.ip()),
        listener.name,
        listener.security_protocol,
    );
    connection::serve_tls(stream, peer, session, auth, broker, limits, shutdown).await;
}

pub async fn run(
    listeners: Vec<BoundListener>,
    broker: Arc<Broker>,
    shutdown_requested: impl std::future::Future<Output = ()>,
    health: &HealthState,
) -> anyhow::Result<()> {
    let config = broker.config().clone();
    // Semaphore permits are u32-sized per acquire; frames are capped far below that.
    let request_memory_bytes_max = config
        .queued_max_request_bytes
        .max(config.socket_request_max_bytes)
        .min(u32::MAX as usize);
    let limits = ConnectionLimits {
        frame_size_bytes_max: config.socket_request_max_bytes,
        queued_requests_max: config.queued_max_requests,
        idle_timeout: Duration::from_millis(config.connections_max_idle_ms),
        request_memory: Arc::new(Semaphore::new(request_memory_bytes_max)),
        request_memory_bytes_max,
    };
    let open_connections = Arc::new(AtomicUsize::new(0));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let flusher = tokio::spawn(run_log_flusher(broker.clone(), shutdown_rx.clone()));
    let cleaner_stop = Arc::new(AtomicBool::new(false));
    let cleaner = start_log_cleaner(broker.clone(), cleaner_stop.clone())?;
    // Group sessions, rebalance deadlines and offset expiration.
    let group_timers = {
        let broker = broker.clone();
        let shutdown = broker.shutdown_signal();
        tokio::spawn(async move { broker.group_coordinator().run_timers(shutdown).await })
    };
    let transaction_timers = {
        let broker = broker.clone();
        let shutdown = broker.shutdown_signal();
        tokio::spawn(async move { broker.transaction_coordinator().run_timers(shutdown).await })
    };
    let (accepted_tx, mut accepted_rx) = mpsc::channel::<Accepted>(ACCEPT_QUEUE_MAX);
    let mut acceptors = JoinSet::new();
    let mut listener_info = Vec::with_capacity(listeners.len());
    for (index, bound) in listeners.into_iter().enumerate() {
        if let Some(tls) = &bound.tls {
            acceptors.spawn(tls.clone().run_reloader(
                Duration::from_millis(config.ssl_reload_check_interval_ms),
                shutdown_rx.clone(),
            ));
        }
        if let Some(sasl) = bound
            .sasl
            .as_ref()
            .filter(|s| s.is_enabled(Mechanism::OAuthBearer))
        {
            acceptors.spawn(run_jwks_reloader(
                bound.config.name.clone(),
                sasl.clone(),
                Duration::from_millis(config.ssl_reload_check_interval_ms),
                shutdown_rx.clone(),
            ));
        }
        acceptors.spawn(accept_loop(bound.tcp, index, accepted_tx.clone()));
        listener_info.push((bound.config, (bound.tls, bound.sasl)));
    }
    drop(accepted_tx);
    tokio::pin!(shutdown_requested);
    loop {
        tokio::select! {
            accepted = accepted_rx.recv() => {
                let Some(accepted) = accepted else {
                    anyhow::bail!("every listener stopped accepting");
                };
                let peer = accepted.peer;
                let Some((listener, security)) = listener_info.get(accepted.listener).cloned() else {
                    continue;
                };
                // max.connections is a dynamic broker config: read at every accept. Lowering
                // it closes no open connection (as in Kafka); new ones wait until below it.
                let max_connections = broker.config().max_connections;
                let Some(slot) = ConnectionSlot::take(&open_connections, max_connections) else {
                    warn!(%peer, max_connections, "connection limit reached, closing new connection");
                    broker.metrics().connections_rejected.inc();
                    drop(accepted);
                    continue;
                };
                broker.metrics().connections_accepted.inc();
                broker.metrics().connections.inc();
                let broker = broker.clone();
                let limits = limits.clone();
                let shutdown = shutdown_rx.clone();
                connections.spawn(async move {
                    serve_connection(accepted, listener, security, broker.clone(), limits, shutdown).await;
                    broker.metrics().connections.dec();
                    drop(slot);
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = &mut shutdown_requested => break,
        }
    }
    // Load balancers and orchestrators stop sending traffic before connections are drained.
    health.set_ready(false);
    info!(
        connections = connections.len(),
        "shutting down: no longer accepting connections"
    );
    acceptors.shutdown().await;
    drop(accepted_rx);
    shutdown_tx.send_replace(true);
    broker.begin_shutdown();
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_millis(config.shutdown_timeout_ms), drain)
        .await
        .is_err()
    {
        warn!("connections did not finish within shutdown.timeout.ms; closing them");
        connections.shutdown().await;
    }
    flusher.abort();
    group_timers.abort();
    transaction_timers.abort();
    cleaner_stop.store(true, Ordering::Relaxed);
    if let Some(cleaner) = cleaner {
        // A pass in progress stops at its next read; its output is left as strays.
        let _ = tokio::task::spawn_blocking(move || cleaner.join()).await;
    }
    broker.close()?;
    info!("logs flushed and closed; clean shutdown");
    Ok(())
}

/// How often a sleeping log cleaner checks for shutdown.
const LOG_CLEANER_STOP_CHECK: Duration = Duration::from_millis(50);

/// Starts the log cleaner thread (Kafka's `LogCleaner`, one thread) unless
/// `log.cleaner.enable=false`. It compacts the dirtiest due log, and sleeps
/// `log.cleaner.backoff.ms` when none is due. A thread, not a task: a pass is long blocking I/O.
fn start_log_cleaner(
    broker: Arc<Broker>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Option<std::thread::JoinHandle<()>>> {
    if !broker.config().log_cleaner_enable {
        info!("log cleaner disabled (log.cleaner.enable=false)");
        return Ok(None);
    }
    let handle = std::thread::Builder::new()
        .name("log-cleaner".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                // Read per pass: the cleaner settings are dynamic broker configs.
                let config = broker.config();
                let cleaner = fjord_broker::log_cleaner::cleaner_config(&config);
                let backoff = Duration::from_millis(config.log_cleaner_backoff_ms);
                let now_ms = fjord_broker::time::now_ms();
                if broker
                    .replica_manager()
                    .clean_dirtiest_log(&cleaner, now_ms, &stop)
                    .is_some()
                {
                    continue;
                }
                let idle_until = std::time::Instant::now() + backoff;
                while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < idle_until {
                    std::thread::sleep(LOG_CLEANER_STOP_CHECK.min(backoff));
                }
            }
        })?;
    Ok(Some(handle))
}

/// How often the log flusher looks for logs whose `flush.ms` has passed.
const LOG_FLUSH_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Kafka's log flusher: flushes idle partitions whose unflushed data is older than `flush.ms`
/// (appends check the policy themselves; this covers partitions that stopped receiving data)
/// and fsyncs sealed segments. Every `log.retention.check.interval.ms` it also applies
/// retention (Kafka's `LogManager.cleanupLogs`), and every
/// `producer.id.expiration.check.interval.ms` it forgets expired idempotent producers.
async fn run_log_flusher(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(LOG_FLUSH_CHECK_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let retention_interval_ms = broker.config().log_retention_check_interval_ms;
    // Scheduled on the monotonic clock (a wall-clock jump neither skips nor bunches checks);
    // what the checks compare with record timestamps is the wall clock.
    let mut next_retention_ms =
        fjord_broker::time::monotonic_ms().saturating_add(retention_interval_ms);
    let producer_check_interval_ms = broker.config().producer_id_expiration_check_interval_ms;
    let mut next_producer_check_ms =
        fjord_broker::time::monotonic_ms().saturating_add(producer_check_interval_ms);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        let monotonic_ms = fjord_broker::time::monotonic_ms();
        let retention_due = monotonic_ms >= next_retention_ms;
        if retention_due {
            next_retention_ms = monotonic_ms.saturating_add(retention_interval_ms);
        }
        let producer_check_due = monotonic_ms >= next_producer_check_ms;
        if producer_check_due {
            next_producer_check_ms = monotonic_ms.saturating_add(producer_check_interval_ms);
        }
        let now_ms = fjord_broker::time::now_ms();
        let broker = broker.clone();
        // fsync and file deletion block: keep them off the runtime's worker threads.
        let done = tokio::task::spawn_blocking(move || {
            let manager = broker.replica_manager();
            let flushed = manager.flush_due_logs(now_ms);
            let deleted = if retention_due {
                manager.enforce_retention(now_ms)
            } else {
                0
            };
            if producer_check_due {
                let expired = manager.remove_expired_producers(now_ms);
                if expired > 0 {
                    tracing::info!(producers = expired, "expired idle producer ids");
                }
            }
            (flushed, deleted)
        })
        .await;
        if let Ok((flushed, deleted)) = done {
            if flushed > 0 {
                tracing::debug!(logs = flushed, "scheduled flush");
            }
            if deleted > 0 {
                tracing::info!(segments = deleted, "retention deleted log segments");
            }
        }
    }
}

/// One of the `max.connections` connections, given back when dropped.
struct ConnectionSlot(Arc<AtomicUsize>);

impl ConnectionSlot {
    /// A slot if fewer than `max` connections are open. Only the accept loop takes slots, so
    /// the check and the increment cannot race with another taker.
    fn take(open: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        if open.load(Ordering::Acquire) >= max {
            return None;
        }
        open.fetch_add(1, Ordering::AcqRel);
        Some(Self(open.clone()))
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Creates `admin`'s SCRAM-SHA-256 and SCRAM-SHA-512 credentials unless the image has them,
/// through the broker's own AlterUserScramCredentials path (forwarded to the controller, so
/// they are in the metadata log like any other credential). One request per mechanism: a
/// KRaft controller refuses a user named twice in one request.
async fn ensure_scram_user(broker: &Broker, admin: &SecureAdmin) -> anyhow::Result<()> {
    use fjord_metadata::security::ScramMechanism;
    use fjord_protocol::kafka_protocol::messages::alter_user_scram_credentials_request::AlterUserScramCredentialsRequest;
    use fjord_protocol::kafka_protocol::messages::RequestHeader;
    use fjord_protocol::kafka_protocol::protocol::StrBytes;
    use fjord_protocol::{ApiKey, RequestKind, ResponseKind};

    // The broker's own super user, from inside the process.
    let session = Session::new(
        KafkaPrincipal::user(admin.user.clone()),
        None,
        "INTERNAL",
        fjord_broker::security::SecurityProtocol::Plaintext,
    );
    for mechanism in [ScramMechanism::ScramSha256, ScramMechanism::ScramSha512] {
        if broker
            .image()
            .scram_credentials
            .contains_key(&(admin.user.clone(), mechanism))
        {
            continue;
        }
        let upsertion = crate::user_cli::scram_upsertion(
            &admin.user,
            mechanism,
            &admin.password,
            admin.iterations,
            crate::user_cli::random_salt()?,
        )?;
        let request = AlterUserScramCredentialsRequest::default().with_upsertions(vec![upsertion]);
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::AlterUserScramCredentials as i16)
            .with_request_api_version(0)
            .with_client_id(Some(StrBytes::from_static_str("fjord-secure")));
        let outcome = broker
            .handle_session(
                &session,
                &header,
                RequestKind::AlterUserScramCredentials(request),
            )
            .await;
        let fjord_broker::Outcome::Respond(ResponseKind::AlterUserScramCredentials(response)) =
            outcome
        else {
            anyhow::bail!("--secure: unexpected answer creating the admin user");
        };
        if let Some(failed) = response.results.iter().find(|r| r.error_code != 0) {
            anyhow::bail!(
                "--secure: creating the {} credential of {} failed with error {}: {}",
                mechanism.mechanism_name(),
                admin.user,
                failed.error_code,
                failed.error_message.as_deref().unwrap_or("")
            );
        }
        info!(user = %admin.user, mechanism = mechanism.mechanism_name(), "--secure: created the admin user's SCRAM credential");
    }
    Ok(())
}
