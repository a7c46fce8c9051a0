//! A one-voter metadata quorum for tests and tools that run a broker in-process without the
//! server: the metadata log on real files in `{data_dir}/__cluster_metadata-0`, the real
//! controller, and a background thread that ticks the quorum and runs the broker's
//! registration and heartbeats. The server crate drives the same pieces from tokio tasks.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fjord_metadata::migration::LegacyMetadata;
use fjord_metadata::MetadataImage;
use fjord_raft::{FileLogStore, QuorumConfig};
use tokio::sync::watch;
use uuid::Uuid;

use crate::controller_channel::ControllerChannel;
use crate::lifecycle::{registration_request, BrokerLifecycle, BrokerState, LifecycleConfig};
use crate::metadata_node::MetadataNodeConfig;
use crate::metadata_runtime::{
    controller_config, initial_records, LocalControllerChannel, MetadataRuntime, NoPeers,
    Publisher, TICK_MS,
};
use crate::BrokerConfig;

/// How long [`MetadataHarness::start`] waits for the controller and the broker's registration.
const START_TIMEOUT: Duration = Duration::from_secs(20);

pub struct MetadataHarness {
    pub runtime: Arc<MetadataRuntime<FileLogStore>>,
    pub channel: Arc<dyn ControllerChannel>,
    pub lifecycle: Arc<BrokerLifecycle>,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl MetadataHarness {
    /// Opens the metadata log of `config.data_dir` as the only voter, starts ticking it, and
    /// registers the broker; returns once the cluster id is formed and the broker is unfenced.
    /// `legacy` (a data dir from before the metadata log) is written right after bootstrap.
    pub fn start(config: &BrokerConfig, legacy: Option<&LegacyMetadata>) -> Result<Self, String> {
        let store = FileLogStore::open(&config.data_dir.join(fjord_storage::METADATA_LOG_DIR_NAME))
            .map_err(|e| e.to_string())?;
        let existing_cluster_id = fjord_storage::read_meta_properties(&config.data_dir)
            .map_err(|e| e.to_string())?
            .map(|meta| meta.cluster_id);
        let incarnation = Uuid::new_v4();
        let request = registration_request(config, "", incarnation, config.broker_rack.clone());
        let mut controller = controller_config(config, incarnation.as_u64_pair().0);
        controller.cluster_id = existing_cluster_id;
        controller.local_broker_incarnation = Some(incarnation);
        controller.initial_records = initial_records(&request, legacy, config.node_id);
        let node_id = u64::try_from(config.node_id).map_err(|_| "node.id must be positive")?;
        let mut quorum = QuorumConfig::new(node_id, vec![node_id]);
        quorum.seed = incarnation.as_u64_pair().1;
        // `metadata.log.max.record.bytes.between.snapshots`, as the server sets it.
        let mut node_config = MetadataNodeConfig::new(quorum);
        node_config.snapshot_interval_bytes = config.metadata_snapshot_interval_bytes;
        let runtime = MetadataRuntime::open(
            node_config,
            fjord_controller::QuorumController::new(controller),
            store,
            Arc::new(NoPeers),
        )
        .map_err(|e| e.to_string())?;
        let channel: Arc<dyn ControllerChannel> =
            Arc::new(LocalControllerChannel::new(runtime.clone()));
        let image_source = runtime.clone();
        let (stop, stop_rx) = watch::channel(false);

        // The cluster id is known only once the bootstrap entry committed: tick until then.
        let deadline = Instant::now() + START_TIMEOUT;
        while runtime.image().cluster_id.is_none() {
            if Instant::now() > deadline {
                return Err("the metadata quorum did not bootstrap".to_string());
            }
            runtime
                .tick(crate::time::monotonic_ms())
                .map_err(|e| e.to_string())?;
            std::thread::sleep(Duration::from_millis(5));
        }
        let cluster_id = runtime.image().cluster_id.clone().unwrap_or_default();
        let mut request = request;
        request.cluster_id = cluster_id;
        let lifecycle = BrokerLifecycle::new(
            channel.clone(),
            LifecycleConfig {
                heartbeat_interval_ms: 500,
                ..LifecycleConfig::default()
            },
            request,
            Box::new(move || image_source.image().offset),
        );
        let thread = {
            let runtime = runtime.clone();
            let lifecycle = lifecycle.clone();
            std::thread::Builder::new()
                .name("metadata-harness".to_string())
                .spawn(move || drive(runtime, lifecycle, stop_rx))
                .map_err(|e| e.to_string())?
        };
        let harness = Self {
            runtime,
            channel,
            lifecycle,
            stop,
            thread: Some(thread),
        };
        if !harness.wait_until_running(START_TIMEOUT) {
            return Err(format!(
                "the broker was not unfenced within {START_TIMEOUT:?} (state {:?})",
                harness.lifecycle.state()
            ));
        }
        Ok(harness)
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.runtime.image()
    }

    /// Sends every new image to `publisher` (the broker's `publish_metadata`).
    pub fn set_publisher(&self, publisher: Publisher) {
        self.runtime.set_publisher(publisher);
    }

    pub fn wait_until_running(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if matches!(self.lifecycle.state(), BrokerState::Running { .. }) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

impl Drop for MetadataHarness {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The harness thread: ticks the quorum every `TICK_MS` and runs the broker lifecycle until
/// `stop`. Controlled shutdown is skipped: a test broker just goes away.
fn drive(
    runtime: Arc<MetadataRuntime<FileLogStore>>,
    lifecycle: Arc<BrokerLifecycle>,
    mut stop: watch::Receiver<bool>,
) {
    let Ok(tokio) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    tokio.block_on(async move {
        let (lifecycle_stop, lifecycle_stop_rx) = watch::channel(false);
        let heartbeats = tokio::spawn(lifecycle.run(lifecycle_stop_rx));
        let mut ticks = tokio::time::interval(Duration::from_millis(TICK_MS));
        loop {
            tokio::select! {
                _ = ticks.tick() => {
                    if runtime.tick(crate::time::monotonic_ms()).is_err() {
                        break;
                    }
                }
                _ = stop.changed() => break,
            }
        }
        drop(lifecycle_stop);
        heartbeats.abort();
    });
}

/// One broker on a one-voter metadata quorum, in-process (what `fjord serve` runs, without
/// sockets): the harness ticks the quorum and keeps the broker registered; every committed
/// image goes to [`Broker::publish_metadata`]. A pre-cluster data dir (`topics.json`) is
/// migrated at start. Derefs to the [`crate::Broker`].
pub struct SingleNode {
    pub broker: Arc<crate::Broker>,
    /// Dropped after the broker (field order): it stops ticking and heartbeats.
    pub harness: MetadataHarness,
}

impl SingleNode {
    pub fn start(config: BrokerConfig) -> Result<SingleNode, String> {
        let legacy =
            crate::migration::read_legacy_metadata(&config.data_dir).map_err(|e| e.to_string())?;
        let harness = MetadataHarness::start(&config, legacy.as_ref())?;
        let broker = Arc::new(
            crate::Broker::open(config.clone(), harness.image(), harness.channel.clone())
                .map_err(|e| e.to_string())?,
        );
        broker.set_quorum_describer(harness.runtime.quorum_describer());
        let weak = Arc::downgrade(&broker);
        harness.set_publisher(Box::new(move |delta, image| {
            if let Some(broker) = weak.upgrade() {
                if let Err(err) = broker.publish_metadata(delta, image) {
                    tracing::error!(error = %err, "publishing metadata failed");
                }
            }
        }));
        // Images committed between `harness.image()` and the publisher: catch up. A delta
        // based on another image than the broker's makes `publish_metadata` reconcile with the
        // whole image (an empty delta on the broker's own image would apply nothing).
        let latest = harness.image();
        if latest.offset != broker.image().offset {
            let delta = fjord_metadata::MetadataDelta::new(latest.clone());
            broker
                .publish_metadata(&delta, &latest)
                .map_err(|e| e.to_string())?;
        }
        if legacy.is_some() {
            crate::migration::finish_migration(&config.data_dir).map_err(|e| e.to_string())?;
        }
        // A producer id block at hand, so callers of the coordinator's synchronous API get ids.
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        tokio
            .block_on(broker.transaction_coordinator().ensure_producer_id_block())
            .map_err(|e| format!("no producer id block: {e:?}"))?;
        Ok(SingleNode { broker, harness })
    }
}

impl std::ops::Deref for SingleNode {
    type Target = crate::Broker;

    fn deref(&self) -> &crate::Broker {
        &self.broker
    }
}

/// Routes node requests between brokers of one process (no sockets): `send` calls the target
/// broker's `handle` and reads file ranges into the response. A node marked down neither
/// sends nor receives (a network partition around it).
#[derive(Default)]
pub struct InProcessNetwork {
    brokers: parking_lot::RwLock<std::collections::BTreeMap<i32, std::sync::Weak<crate::Broker>>>,
    down: parking_lot::RwLock<std::collections::BTreeSet<i32>>,
}

impl InProcessNetwork {
    pub fn add(&self, node_id: i32, broker: &Arc<crate::Broker>) {
        self.brokers.write().insert(node_id, Arc::downgrade(broker));
    }

    /// Cuts (`true`) or restores (`false`) every link of `node_id`.
    pub fn set_down(&self, node_id: i32, down: bool) {
        if down {
            self.down.write().insert(node_id);
        } else {
            self.down.write().remove(&node_id);
        }
    }

    /// The channel `from` sends through.
    pub fn channel(self: &Arc<Self>, from: i32) -> Arc<dyn crate::node_channel::NodeChannel> {
        Arc::new(InProcessNodeChannel {
            from,
            network: self.clone(),
        })
    }
}

struct InProcessNodeChannel {
    from: i32,
    network: Arc<InProcessNetwork>,
}

impl crate::node_channel::NodeChannel for InProcessNodeChannel {
    fn send(
        &self,
        node_id: i32,
        request: crate::node_channel::NodeRequest,
    ) -> crate::node_channel::BoxFuture<
        '_,
        Result<fjord_protocol::ResponseKind, crate::node_channel::ChannelError>,
    > {
        use crate::node_channel::ChannelError;
        Box::pin(async move {
            let down = {
                let down = self.network.down.read();
                down.contains(&self.from) || down.contains(&node_id)
            };
            if down {
                // As a dead connection: the caller learns it after a while, not at once.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return Err(ChannelError::Disconnected {
                    node_id,
                    reason: "link down".to_string(),
                });
            }
            let broker = self
                .network
                .brokers
                .read()
                .get(&node_id)
                .and_then(|b| b.upgrade())
                .ok_or(ChannelError::UnknownNode { node_id })?;
            let header = fjord_protocol::kafka_protocol::messages::RequestHeader::default()
                .with_request_api_key(request.api_key as i16)
                .with_request_api_version(request.api_version);
            let outcome = broker.handle(&header, request.body).await;
            match outcome.into_inline() {
                Ok(crate::Outcome::Respond(response)) => Ok(response),
                Ok(_) => Err(ChannelError::Disconnected {
                    node_id,
                    reason: "no response".to_string(),
                }),
                Err(err) => Err(ChannelError::Disconnected {
                    node_id,
                    reason: err.to_string(),
                }),
            }
        })
    }

    fn set_endpoints(&self, _endpoints: Vec<(i32, String)>) {}
}

/// Several brokers in one process on one metadata quorum (the voter runs beside broker 1):
/// the other brokers register and heartbeat through an in-process `ControllerChannel`, and
/// replicate through an [`InProcessNetwork`]. Every committed image goes to every broker.
/// Create it inside a multi-threaded tokio runtime (the replication tasks run there).
pub struct Cluster {
    pub brokers: Vec<Arc<crate::Broker>>,
    pub network: Arc<InProcessNetwork>,
    pub runtime: Arc<MetadataRuntime<FileLogStore>>,
    pub channel: Arc<dyn ControllerChannel>,
    lifecycles: Vec<Arc<BrokerLifecycle>>,
    heartbeats: parking_lot::Mutex<Vec<Option<tokio::task::JoinHandle<()>>>>,
    harness_runtime: tokio::runtime::Handle,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl Cluster {
    /// Starts `configs.len()` brokers (node ids from the configs; the first hosts the voter)
    /// with `broker.session.timeout.ms` = `session_timeout_ms` at the controller, and waits
    /// until all are unfenced.
    pub fn start(configs: Vec<BrokerConfig>, session_timeout_ms: i64) -> Result<Cluster, String> {
        let first = configs.first().ok_or("no broker")?.clone();
        let store = FileLogStore::open(&first.data_dir.join(fjord_storage::METADATA_LOG_DIR_NAME))
            .map_err(|e| e.to_string())?;
        let incarnations: Vec<Uuid> = configs.iter().map(|_| Uuid::new_v4()).collect();
        let mut controller = controller_config(&first, incarnations[0].as_u64_pair().0);
        controller.local_broker_incarnation = Some(incarnations[0]);
        controller.broker_session_timeout_ms = session_timeout_ms;
        let node_id = u64::try_from(first.node_id).map_err(|_| "node.id must be positive")?;
        let runtime = MetadataRuntime::open(
            MetadataNodeConfig::new(QuorumConfig::new(node_id, vec![node_id])),
            fjord_controller::QuorumController::new(controller),
            store,
            Arc::new(NoPeers),
        )
        .map_err(|e| e.to_string())?;
        let channel: Arc<dyn ControllerChannel> =
            Arc::new(LocalControllerChannel::new(runtime.clone()));
        let deadline = Instant::now() + START_TIMEOUT;
        while runtime.image().cluster_id.is_none() {
            if Instant::now() > deadline {
                return Err("the metadata quorum did not bootstrap".to_string());
            }
            runtime
                .tick(crate::time::monotonic_ms())
                .map_err(|e| e.to_string())?;
            std::thread::sleep(Duration::from_millis(5));
        }
        let cluster_id = runtime.image().cluster_id.clone().unwrap_or_default();
        let lifecycles: Vec<Arc<BrokerLifecycle>> = configs
            .iter()
            .zip(&incarnations)
            .map(|(config, incarnation)| {
                let source = runtime.clone();
                BrokerLifecycle::new(
                    channel.clone(),
                    LifecycleConfig {
                        heartbeat_interval_ms: 200,
                        ..LifecycleConfig::default()
                    },
                    registration_request(
                        config,
                        &cluster_id,
                        *incarnation,
                        config.broker_rack.clone(),
                    ),
                    Box::new(move || source.image().offset),
                )
            })
            .collect();
        let (stop, stop_rx) = watch::channel(false);
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let thread = {
            let runtime = runtime.clone();
            std::thread::Builder::new()
                .name("cluster-harness".to_string())
                .spawn(move || tick_cluster(runtime, stop_rx, handle_tx))
                .map_err(|e| e.to_string())?
        };
        let harness_runtime = handle_rx
            .recv_timeout(START_TIMEOUT)
            .map_err(|e| e.to_string())?;
        let network = Arc::new(InProcessNetwork::default());
        let mut brokers = Vec::new();
        for config in &configs {
            let broker = Arc::new(
                crate::Broker::open(config.clone(), runtime.image(), channel.clone())
                    .map_err(|e| e.to_string())?,
            );
            network.add(config.node_id, &broker);
            brokers.push(broker);
        }
        let weak: Vec<_> = brokers.iter().map(Arc::downgrade).collect();
        runtime.set_publisher(Box::new(move |delta, image| {
            for broker in weak.iter().filter_map(|b| b.upgrade()) {
                if let Err(err) = broker.publish_metadata(delta, image) {
                    tracing::error!(error = %err, "publishing metadata failed");
                }
            }
        }));
        let latest = runtime.image();
        for broker in &brokers {
            if latest.offset != broker.image().offset {
                let delta = fjord_metadata::MetadataDelta::new(broker.image());
                broker
                    .publish_metadata(&delta, &latest)
                    .map_err(|e| e.to_string())?;
            }
            broker.set_node_channel(network.channel(broker.config().node_id));
        }
        let heartbeats = lifecycles
            .iter()
            .map(|lifecycle| {
                let (_stop, rx) = watch::channel(false);
                let lifecycle = lifecycle.clone();
                Some(harness_runtime.spawn(async move {
                    let _keep = _stop;
                    lifecycle.run(rx).await
                }))
            })
            .collect();
        let cluster = Cluster {
            brokers,
            network,
            runtime,
            channel,
            lifecycles,
            heartbeats: parking_lot::Mutex::new(heartbeats),
            harness_runtime,
            stop,
            thread: Some(thread),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while !cluster
            .lifecycles
            .iter()
            .all(|l| matches!(l.state(), BrokerState::Running { .. }))
        {
            if Instant::now() > deadline {
                return Err("brokers were not unfenced in time".to_string());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(cluster)
    }

    /// The broker with `node_id`.
    pub fn broker(&self, node_id: i32) -> &Arc<crate::Broker> {
        let index = self
            .brokers
            .iter()
            .position(|b| b.config().node_id == node_id);
        &self.brokers[index.unwrap_or(0)]
    }

    /// Stops (`false`) or restarts (`true`) the heartbeats of the broker at `index`: without
    /// them the controller fences it after the session timeout and moves its leaderships.
    pub fn set_heartbeating(&self, index: usize, on: bool) {
        let mut heartbeats = self.heartbeats.lock();
        if let Some(task) = heartbeats[index].take() {
            task.abort();
        }
        if on {
            let lifecycle = self.lifecycles[index].clone();
            heartbeats[index] = Some(self.harness_runtime.spawn(async move {
                let (_stop, rx) = watch::channel(false);
                lifecycle.run(rx).await
            }));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for broker in &self.brokers {
            broker.begin_shutdown();
        }
        for task in self.heartbeats.lock().iter().flatten() {
            task.abort();
        }
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The cluster harness thread: ticks the quorum; its runtime also runs the lifecycles.
fn tick_cluster(
    runtime: Arc<MetadataRuntime<FileLogStore>>,
    mut stop: watch::Receiver<bool>,
    handle: std::sync::mpsc::Sender<tokio::runtime::Handle>,
) {
    let Ok(tokio) = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    else {
        return;
    };
    let _ = handle.send(tokio.handle().clone());
    tokio.block_on(async move {
        let mut ticks = tokio::time::interval(Duration::from_millis(TICK_MS));
        loop {
            tokio::select! {
                _ = ticks.tick() => {
                    if runtime.tick(crate::time::monotonic_ms()).is_err() {
                        break;
                    }
                }
                _ = stop.changed() => break,
            }
        }
    });
}

/// Runs a future that completes without waiting, such as a coordinator operation over an
/// in-memory log or on a single node (its high watermark follows its log end at once, so
/// commit waits finish inline). Panics if the future would wait: the caller expected
/// everything to be committed already.
pub trait CompleteNow: std::future::Future + Sized {
    fn now(self) -> Self::Output {
        let mut future = std::pin::pin!(self);
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        match future.as_mut().poll(&mut context) {
            std::task::Poll::Ready(output) => output,
            std::task::Poll::Pending => panic!("the future waits (an uncommitted write?)"),
        }
    }
}

impl<F: std::future::Future> CompleteNow for F {}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use fjord_controller::{
        ControllerReply, ControllerRequest, CreatableTopic, CreateTopicsRequest,
    };
    use fjord_metadata::migration::LegacyTopic;

    use super::*;

    fn config(dir: &std::path::Path) -> BrokerConfig {
        BrokerConfig {
            data_dir: dir.to_path_buf(),
            ..BrokerConfig::default()
        }
    }

    fn create(harness: &MetadataHarness, name: &str) -> ControllerReply {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime
            .block_on(harness.channel.send(
                ControllerRequest::CreateTopics(CreateTopicsRequest {
                    topics: vec![CreatableTopic {
                        name: name.to_string(),
                        num_partitions: 2,
                        replication_factor: -1,
                        assignments: Vec::new(),
                        configs: Vec::new(),
                    }],
                    validate_only: false,
                }),
                5_000,
            ))
            .unwrap()
    }

    #[test]
    fn a_single_node_creates_topics_and_keeps_them_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let cluster_id = {
            let harness = MetadataHarness::start(&config(dir.path()), None).unwrap();
            let ControllerReply::CreateTopics(reply) = create(&harness, "orders") else {
                panic!("wrong reply")
            };
            assert!(reply.topics[0].error.code.is_none(), "{reply:?}");
            let image = harness.image();
            let topic = image
                .topic_by_name("orders")
                .expect("created topic is in the image");
            assert_eq!(topic.partitions.len(), 2);
            assert_eq!(topic.partitions[&0].leader, 1);
            image.cluster_id.clone().unwrap()
        };
        let harness = MetadataHarness::start(&config(dir.path()), None).unwrap();
        let image = harness.image();
        assert_eq!(image.cluster_id.as_deref(), Some(cluster_id.as_str()));
        assert!(image.topic_by_name("orders").is_some());
        // The restarted broker registered again (a new incarnation) and is unfenced.
        assert!(image.broker(1).is_some_and(|b| !b.fenced));
    }

    #[test]
    fn a_legacy_data_dir_is_migrated_after_bootstrap() {
        let dir = tempfile::tempdir().unwrap();
        let topic_id = Uuid::new_v4();
        let legacy = LegacyMetadata {
            topics: vec![LegacyTopic {
                name: "legacy".to_string(),
                topic_id,
                partitions: 3,
                configs: BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]),
            }],
            cluster_default_broker_configs: BTreeMap::new(),
            broker_configs: BTreeMap::new(),
            next_producer_id: Some(5_000),
        };
        let harness = MetadataHarness::start(&config(dir.path()), Some(&legacy)).unwrap();
        let image = harness.image();
        let topic = image.topic_by_name("legacy").expect("migrated topic");
        assert_eq!(topic.id, topic_id);
        assert_eq!(topic.partitions.len(), 3);
        assert!(topic
            .partitions
            .values()
            .all(|p| p.leader == 1 && p.leader_epoch == 0));
        assert_eq!(image.next_producer_id, 5_000);
        assert!(image.broker(1).is_some_and(|b| !b.fenced));
        // New topics still work next to the migrated ones.
        let ControllerReply::CreateTopics(reply) = create(&harness, "fresh") else {
            panic!("wrong reply")
        };
        assert!(reply.topics[0].error.code.is_none(), "{reply:?}");
    }
}

/// The seeded random source of the deterministic simulations (splitmix64): tiny, fast, and
/// the same sequence on every platform, so a seed replays a schedule bit for bit. Not for
/// anything but test schedules.
#[derive(Debug, Clone)]
pub struct SimRng(u64);

impl SimRng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in `low..=high`.
    pub fn range(&mut self, low: i64, high: i64) -> i64 {
        debug_assert!(low <= high);
        low + self.below((high - low + 1) as u64) as i64
    }

    /// True with probability `percent` / 100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The seeds a simulation test runs: `FJORD_SIM_SEED=<n>` replays one, `FJORD_SIM_SEEDS=<count>`
/// runs `0..count` (`FJORD_SIM_SEED_START` moves the start), else `0..default_count`.
pub fn sim_seeds(default_count: u64) -> Vec<u64> {
    if let Some(seed) = std::env::var("FJORD_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![seed];
    }
    let count = std::env::var("FJORD_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_count);
    let start = std::env::var("FJORD_SIM_SEED_START")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0u64);
    (start..start + count).collect()
}
