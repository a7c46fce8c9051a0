//! The tokio side of the metadata quorum on a controller node: opens the metadata log
//! (`{data_dir}/__cluster_metadata-0`), runs the [`MetadataRuntime`] with a tick task, links it to
//! the other voters (outgoing [`RaftPeers`], incoming frames from the controller listener), and
//! gives the broker its channel to the active controller.
//!
//! One voter (the default single node) binds no controller listener: its controller is
//! in-process and its Raft messages go nowhere.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use fjord_broker::controller_channel::ControllerChannel;
use fjord_broker::metadata_node::MetadataNodeConfig;
use fjord_broker::metadata_runtime::{controller_config, MetadataRuntime, RaftSink, TICK_MS};
use fjord_broker::BrokerConfig;
use fjord_metadata::MetadataRecord;
use fjord_raft::{FileLogStore, QuorumConfig, RaftMessage};
use parking_lot::RwLock;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::controller_client::ClusterControllerChannel;
use crate::controller_listener::{serve_controller_connection, ControllerEndpoint};
use crate::controller_security::{controller_authorizer, voter_endpoints, ControllerTls};
use crate::raft_transport::{encode_raft_frame, RaftFrame, RaftPeers, SendOutcome};
use crate::test_hooks::PeerAddresses;

/// Raft frames waiting to be stepped; beyond this they are dropped (Raft resends).
const INBOUND_RAFT_FRAMES_MAX: usize = 4_096;
/// Open connections on the controller listener (voters' Raft links, brokers' controller
/// channels and observers: a few per node); beyond this a new connection is closed at once.
pub const CONTROLLER_CONNECTIONS_MAX: usize = 1_024;

/// Outgoing Raft messages of this node, framed with its id and cluster id.
struct PeerSink {
    node_id: i32,
    cluster_id: Arc<RwLock<String>>,
    peers: RaftPeers,
}

impl RaftSink for PeerSink {
    fn send(&self, to: u64, message: RaftMessage) -> bool {
        let Ok(to) = i32::try_from(to) else {
            return false;
        };
        let frame = encode_raft_frame(self.node_id, &self.cluster_id.read(), &message.encode());
        self.peers.send(to, frame) == SendOutcome::Queued
    }
}

/// A running metadata quorum member.
pub struct MetadataService {
    pub runtime: Arc<MetadataRuntime<FileLogStore>>,
    /// The broker's way to the active controller.
    pub channel: Arc<dyn ControllerChannel>,
    /// This node's cluster id once formed ("" before), stamped on Raft frames by the tasks;
    /// kept here for tests to inspect.
    #[cfg_attr(not(test), allow(dead_code))]
    cluster_id: Arc<RwLock<String>>,
    /// Where the controller listener is bound, if it is.
    pub controller_address: Option<String>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl MetadataService {
    /// Opens the metadata log and starts the quorum tasks. `initial_records` are written after
    /// the bootstrap entry of an empty log (migration of a single-node data dir).
    pub async fn start(
        config: &BrokerConfig,
        initial_records: Vec<MetadataRecord>,
        seed: u64,
        local_broker_incarnation: Option<uuid::Uuid>,
        peer_addresses: &PeerAddresses,
    ) -> anyhow::Result<Self> {
        let node_id = config.node_id;
        let voter_ids: Vec<u64> = config
            .controller_quorum_voters
            .iter()
            .map(|(id, _)| *id as u64)
            .collect();
        let store_dir = config.data_dir.join(fjord_storage::METADATA_LOG_DIR_NAME);
        let store = {
            let dir = store_dir.clone();
            tokio::task::spawn_blocking(move || FileLogStore::open(&dir))
                .await
                .context("opening the metadata log")?
                .with_context(|| format!("cannot open the metadata log {}", store_dir.display()))?
        };
        let existing_cluster_id = fjord_storage::read_meta_properties(&config.data_dir)
            .context("reading meta.properties")?
            .map(|meta| meta.cluster_id);
        let mut controller = controller_config(config, seed);
        controller.cluster_id = existing_cluster_id;
        controller.initial_records = initial_records;
        controller.local_broker_incarnation = local_broker_incarnation;
        controller.broker_session_timeout_ms = config.broker_session_timeout_ms as i64;
        let mut quorum = QuorumConfig::new(node_id as u64, voter_ids);
        quorum.seed = seed;

        // TLS settings and files are checked before anything runs: a bad one stops the start.
        let tls = ControllerTls::load(config)?;
        let cluster_id = Arc::new(RwLock::new(String::new()));
        let peers = voter_endpoints(config, peer_addresses, Some(node_id));
        let sink = Arc::new(PeerSink {
            node_id,
            cluster_id: cluster_id.clone(),
            peers: RaftPeers::start(peers, tls.client.clone()),
        });
        let mut node_config = MetadataNodeConfig::new(quorum);
        node_config.snapshot_interval_bytes = config.metadata_snapshot_interval_bytes;
        let runtime = MetadataRuntime::open(
            node_config,
            fjord_controller::QuorumController::new(controller),
            store,
            sink,
        )
        .context("opening the metadata quorum")?;
        if let Some(id) = runtime.image().cluster_id.clone() {
            *cluster_id.write() = id;
        }

        let (stop, stop_rx) = watch::channel(false);
        let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_RAFT_FRAMES_MAX);
        let mut tasks = Vec::new();
        let mut controller_address = None;
        if let Some(listen) = &config.controller_listen {
            let listener = TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen} (controller.listen)"))?;
            controller_address = Some(listener.local_addr()?.to_string());
            info!(controller_listen = %listen, listener = %config.controller_listener_name,
                protocol = %config.controller_security_protocol, "controller listener started");
            if let Some(server) = &tls.server {
                tasks.push(tokio::spawn(server.clone().run_reloader(
                    Duration::from_millis(config.ssl_reload_check_interval_ms),
                    stop_rx.clone(),
                )));
            }
            let endpoint = Arc::new(ControllerEndpoint {
                runtime: runtime.clone(),
                cluster_id: cluster_id.clone(),
                raft_inbound: inbound_tx,
                listener_name: config.controller_listener_name.clone(),
                tls: tls.server.clone(),
                authorizer: controller_authorizer(config),
            });
            tasks.push(tokio::spawn(accept_controller_connections(
                listener,
                endpoint,
                stop_rx.clone(),
            )));
        }
        tasks.push(tokio::spawn(step_inbound(runtime.clone(), inbound_rx)));
        tasks.push(tokio::spawn(tick(
            runtime.clone(),
            cluster_id.clone(),
            stop_rx,
        )));
        let channel: Arc<dyn ControllerChannel> = Arc::new(ClusterControllerChannel::new(
            node_id,
            Some(runtime.clone()),
            config,
            peer_addresses,
            tls.client.clone(),
        ));
        Ok(Self {
            runtime,
            channel,
            cluster_id,
            controller_address,
            stop,
            tasks,
        })
    }

    /// Waits until the cluster id is formed (the bootstrap entry committed); the quorum needs a
    /// majority of voters for that.
    pub async fn wait_for_cluster_id(&self, timeout: Duration) -> Option<String> {
        let mut images = self.runtime.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(id) = images.borrow().cluster_id.clone() {
                return Some(id);
            }
            if tokio::time::timeout_at(deadline, images.changed())
                .await
                .is_err()
            {
                return None;
            }
        }
    }

    pub fn stop(&self) {
        let _ = self.stop.send(true);
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Drop for MetadataService {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Ticks the quorum every `TICK_MS`; keeps the frames' cluster id current.
async fn tick(
    runtime: Arc<MetadataRuntime<FileLogStore>>,
    cluster_id: Arc<RwLock<String>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(Duration::from_millis(TICK_MS));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.changed() => return,
        }
        if let Err(failed) = runtime.tick(fjord_broker::time::monotonic_ms()) {
            warn!(error = %failed, "metadata quorum stopped");
            return;
        }
        if cluster_id.read().is_empty() {
            if let Some(id) = runtime.image().cluster_id.clone() {
                info!(cluster_id = %id, "cluster id formed");
                *cluster_id.write() = id;
            }
        }
    }
}

/// Steps Raft frames from the controller listener into the runtime, in arrival order.
async fn step_inbound(
    runtime: Arc<MetadataRuntime<FileLogStore>>,
    mut inbound: mpsc::Receiver<RaftFrame>,
) {
    while let Some(frame) = inbound.recv().await {
        let message = match RaftMessage::decode(&frame.message) {
            Ok(message) => message,
            Err(error) => {
                warn!(from = frame.from, %error, "undecodable Raft message dropped");
                continue;
            }
        };
        if let Err(failed) = runtime.step(message, fjord_broker::time::monotonic_ms()) {
            warn!(error = %failed, "metadata quorum stopped");
            return;
        }
    }
}

/// Accepts connections on the controller listener: Raft frames from the other voters and
/// controller requests from brokers.
async fn accept_controller_connections(
    listener: TcpListener,
    endpoint: Arc<ControllerEndpoint>,
    mut stop: watch::Receiver<bool>,
) {
    let connections = Arc::new(tokio::sync::Semaphore::new(CONTROLLER_CONNECTIONS_MAX));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.changed() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let Ok(permit) = connections.clone().try_acquire_owned() else {
                    warn!(%peer, limit = CONTROLLER_CONNECTIONS_MAX,
                        "controller listener at its connection limit; closing the new connection");
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let endpoint = endpoint.clone();
                tokio::spawn(async move {
                    serve_controller_connection(stream, endpoint).await;
                    drop(permit);
                });
            }
            Err(error) => {
                warn!(%error, "controller listener accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use fjord_controller::{
        ControllerReply, ControllerRequest, CreatableTopic, CreateTopicsRequest,
    };

    use super::*;
    use fjord_protocol::request::encode_request;
    use fjord_protocol::response::decode_response;

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    fn node_config(id: i32, dir: &std::path::Path, voters: &str, port: u16) -> BrokerConfig {
        BrokerConfig::from_settings(&BTreeMap::from([
            ("node.id".to_string(), id.to_string()),
            ("data.dir".to_string(), dir.display().to_string()),
            ("controller.listen".to_string(), format!("127.0.0.1:{port}")),
            ("controller.quorum.voters".to_string(), voters.to_string()),
        ]))
        .unwrap()
    }

    async fn create_topic(service: &MetadataService, name: &str) -> ControllerReply {
        create_topic_rf(service, name, -1).await
    }

    async fn create_topic_rf(service: &MetadataService, name: &str, rf: i16) -> ControllerReply {
        service
            .channel
            .send(
                ControllerRequest::CreateTopics(CreateTopicsRequest {
                    topics: vec![CreatableTopic {
                        name: name.to_string(),
                        num_partitions: 3,
                        replication_factor: rf,
                        assignments: Vec::new(),
                        configs: Vec::new(),
                    }],
                    validate_only: false,
                }),
                10_000,
            )
            .await
            .unwrap()
    }

    async fn active(services: &[Option<MetadataService>]) -> usize {
        for _ in 0..200 {
            if let Some(i) = services
                .iter()
                .position(|s| s.as_ref().is_some_and(|s| s.runtime.is_active()))
            {
                return i;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no active controller");
    }

    /// Peers are dialed only where `PeerAddresses` says: node 1 reaches node 2 through a relay
    /// (which sees its connections), and every link to and from node 3 points at a dead
    /// address. Nodes 1 and 2 form the cluster; node 3, cut off, never learns its id.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn raft_links_follow_the_peer_address_overrides() {
        let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let dead = free_port();
        let voters = (0..3)
            .map(|i| format!("{}@127.0.0.1:{}", i + 1, ports[i]))
            .collect::<Vec<_>>()
            .join(",");
        // A relay in front of node 2's controller listener, counting the connections it takes.
        let relay = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay_port = relay.local_addr().unwrap().port();
        let relayed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let relay_task = {
            let relayed = relayed.clone();
            let upstream = format!("127.0.0.1:{}", ports[1]);
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = relay.accept().await {
                    relayed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let upstream = upstream.clone();
                    tokio::spawn(async move {
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                }
            })
        };
        let overrides = [
            format!("controller:2@127.0.0.1:{relay_port},controller:3@127.0.0.1:{dead}"),
            format!("controller:3@127.0.0.1:{dead}"),
            format!("controller:1@127.0.0.1:{dead},controller:2@127.0.0.1:{dead}"),
        ];
        let mut services = Vec::new();
        for i in 0..3 {
            let config = node_config(i as i32 + 1, dirs[i].path(), &voters, ports[i]);
            let peers = PeerAddresses::parse(&overrides[i]).unwrap();
            services.push(
                MetadataService::start(&config, Vec::new(), 2_000 + i as u64, None, &peers)
                    .await
                    .unwrap(),
            );
        }
        let first = services[0]
            .wait_for_cluster_id(Duration::from_secs(20))
            .await
            .expect("nodes 1 and 2 form the cluster");
        let second = services[1]
            .wait_for_cluster_id(Duration::from_secs(20))
            .await
            .expect("nodes 1 and 2 form the cluster");
        assert_eq!(first, second);
        assert!(relayed.load(std::sync::atomic::Ordering::SeqCst) > 0);
        // Node 3 learns the id only from Raft messages, and none can reach it.
        assert_eq!(services[2].runtime.image().cluster_id, None);
        assert_ne!(services[2].runtime.leader_hint(), Some(1));
        assert_ne!(services[2].runtime.leader_hint(), Some(2));
        for service in &services {
            service.stop();
        }
        relay_task.abort();
    }

    /// Two voters whose controller listener is SSL with mTLS and the authorizer on (the nodes'
    /// certificate principal a super user): they form the quorum over TLS and a follower's
    /// CreateTopics reaches the active controller over the TLS controller channel. Another
    /// principal of the same CA is authenticated but not authorized: DescribeQuorum answers
    /// CLUSTER_AUTHORIZATION_FAILED, a Raft frame closes the connection; the nodes'
    /// certificate gets DescribeQuorum answered.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn voters_over_mtls_refuse_other_principals() {
        use fjord_protocol::kafka_protocol::messages::{DescribeQuorumRequest, RequestHeader};
        use fjord_protocol::{ApiKey, RequestKind, ResponseKind};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let files = tempfile::tempdir().unwrap();
        let ca = crate::tls::tests::Ca::new("ca");
        let write = |name: &str, text: String| {
            let path = files.path().join(name);
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        };
        let keystore = |cn: &str| {
            let (cert, key) = ca.issue(cn);
            write(&format!("{cn}.pem"), format!("{key}{cert}"))
        };
        let (node_pem, intruder_pem) = (keystore("node"), keystore("intruder"));
        let truststore = write("ca.pem", ca.cert.pem());
        let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
        let ports: Vec<u16> = (0..2).map(|_| free_port()).collect();
        let voters = format!("1@127.0.0.1:{},2@127.0.0.1:{}", ports[0], ports[1]);
        let secure = |i: usize, keystore: &str| {
            BrokerConfig::from_settings(&BTreeMap::from(
                [
                    ("node.id", (i + 1).to_string()),
                    ("data.dir", dirs[i].path().display().to_string()),
                    ("controller.listen", format!("127.0.0.1:{}", ports[i])),
                    ("controller.quorum.voters", voters.clone()),
                    ("listener.security.protocol.map", "CONTROLLER:SSL".into()),
                    ("ssl.keystore.location", keystore.to_string()),
                    ("ssl.truststore.location", truststore.clone()),
                    ("ssl.client.auth", "required".into()),
                    ("authorizer.class.name", "fjord".into()),
                    ("super.users", "User:CN=node,O=acme".into()),
                ]
                .map(|(k, v)| (k.to_string(), v)),
            ))
            .unwrap()
        };
        let mut services = Vec::new();
        for i in 0..2 {
            services.push(Some(
                MetadataService::start(
                    &secure(i, &node_pem),
                    Vec::new(),
                    3_000 + i as u64,
                    None,
                    &PeerAddresses::default(),
                )
                .await
                .unwrap(),
            ));
        }
        for service in services.iter().flatten() {
            service
                .wait_for_cluster_id(Duration::from_secs(20))
                .await
                .expect("the voters form the cluster over mTLS");
        }
        let leader = active(&services).await;
        let follower = services[1 - leader].as_ref().unwrap();
        let ControllerReply::CreateTopics(created) = create_topic_rf(follower, "t", 2).await else {
            panic!("wrong reply")
        };
        // The active controller's own validation (no broker registered here), reached from
        // the follower over the TLS controller channel.
        assert_eq!(
            created.topics[0].error.code,
            fjord_controller::ErrorCode::InvalidReplicationFactor,
            "{created:?}"
        );

        let address = format!("127.0.0.1:{}", ports[leader]);
        let connect = |keystore: String| {
            let client = crate::tls::client_config(&secure(0, &keystore), "CONTROLLER").unwrap();
            let address = address.clone();
            async move {
                crate::controller_security::dial(
                    &address,
                    "127.0.0.1",
                    Some(&client),
                    Duration::from_secs(5),
                )
                .await
                .unwrap()
            }
        };
        let describe_quorum = |mut stream: Box<
            dyn crate::controller_security::ControllerStream,
        >| async move {
            let header = RequestHeader::default()
                .with_request_api_key(ApiKey::DescribeQuorum as i16)
                .with_request_api_version(0)
                .with_correlation_id(5);
            let body = encode_request(
                &header,
                &RequestKind::DescribeQuorum(DescribeQuorumRequest::default()),
            )
            .unwrap();
            stream
                .write_all(&(body.len() as u32).to_be_bytes())
                .await
                .unwrap();
            stream.write_all(&body).await.unwrap();
            stream.flush().await.unwrap();
            let size = stream.read_u32().await.unwrap() as usize;
            let mut frame = vec![0; size];
            stream.read_exact(&mut frame).await.unwrap();
            let (_, response) = decode_response(ApiKey::DescribeQuorum, 0, frame.into()).unwrap();
            let ResponseKind::DescribeQuorum(response) = response else {
                panic!("not a DescribeQuorum answer")
            };
            response.error_code
        };
        assert_eq!(
            describe_quorum(connect(intruder_pem.clone()).await).await,
            31
        );
        assert_eq!(describe_quorum(connect(node_pem.clone()).await).await, 0);
        // A Raft frame from the other principal: no answer exists, the connection closes.
        let mut raft = connect(intruder_pem).await;
        raft.write_all(&encode_raft_frame(9, "", b"vote for me"))
            .await
            .unwrap();
        raft.flush().await.unwrap();
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(10), raft.read_to_end(&mut rest))
            .await
            .expect("the connection closes");
        assert!(closed.is_err() || rest.is_empty(), "{rest:?}");
        for service in services.iter().flatten() {
            service.stop();
        }
    }

    /// Three voters over real TCP: they form one cluster id, a request to the active
    /// controller commits on all three, and after the active one stops the other two elect a
    /// new controller that keeps the committed metadata and takes new requests.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_voters_over_tcp_survive_the_loss_of_the_active_one() {
        let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let voters = (0..3)
            .map(|i| format!("{}@127.0.0.1:{}", i + 1, ports[i]))
            .collect::<Vec<_>>()
            .join(",");
        let mut services = Vec::new();
        for i in 0..3 {
            let config = node_config(i as i32 + 1, dirs[i].path(), &voters, ports[i]);
            services.push(Some(
                MetadataService::start(
                    &config,
                    Vec::new(),
                    1_000 + i as u64,
                    None,
                    &PeerAddresses::default(),
                )
                .await
                .unwrap(),
            ));
        }
        let mut ids = Vec::new();
        for service in services.iter().flatten() {
            ids.push(
                service
                    .wait_for_cluster_id(Duration::from_secs(20))
                    .await
                    .expect("cluster id formed"),
            );
        }
        assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
        for (i, service) in services.iter().flatten().enumerate() {
            assert_eq!(
                service.controller_address.as_deref(),
                Some(format!("127.0.0.1:{}", ports[i]).as_str())
            );
        }
        // The tick task stamps frames with the formed id within a tick or two.
        tokio::time::sleep(Duration::from_millis(300)).await;
        for service in services.iter().flatten() {
            assert_eq!(*service.cluster_id.read(), ids[0]);
        }

        // Each node's broker registers and heartbeats through its own channel: the active
        // controller's in-process, the others' over the controller listener.
        let mut lifecycles = Vec::new();
        let (_stop_heartbeats, stop_rx) = watch::channel(false);
        for (i, service) in services.iter().flatten().enumerate() {
            let config = node_config(i as i32 + 1, dirs[i].path(), &voters, ports[i]);
            let runtime = service.runtime.clone();
            let lifecycle = fjord_broker::lifecycle::BrokerLifecycle::new(
                service.channel.clone(),
                fjord_broker::lifecycle::LifecycleConfig {
                    heartbeat_interval_ms: 200,
                    ..Default::default()
                },
                fjord_broker::lifecycle::registration_request(
                    &config,
                    &ids[0],
                    uuid::Uuid::new_v4(),
                    Some(format!("rack-{i}")),
                ),
                Box::new(move || runtime.image().offset),
            );
            tokio::spawn(lifecycle.clone().run(stop_rx.clone()));
            lifecycles.push(lifecycle);
        }
        for _ in 0..200 {
            if lifecycles.iter().all(|l| {
                matches!(
                    l.state(),
                    fjord_broker::lifecycle::BrokerState::Running { .. }
                )
            }) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for lifecycle in &lifecycles {
            assert!(
                matches!(
                    lifecycle.state(),
                    fjord_broker::lifecycle::BrokerState::Running { .. }
                ),
                "{:?}",
                lifecycle.state()
            );
        }
        // A follower voter forwards CreateTopics to the active controller; the topic, placed
        // on all three racks, is then in every node's image.
        let first = active(&services).await;
        let follower = services
            .iter()
            .flatten()
            .find(|s| !s.runtime.is_active())
            .expect("a follower voter");
        let ControllerReply::CreateTopics(created) =
            create_topic_rf(follower, "replicated", 3).await
        else {
            panic!("wrong reply")
        };
        assert!(created.topics[0].error.code.is_none(), "{created:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
        for service in services.iter().flatten() {
            let image = service.runtime.image();
            let topic = image
                .topic_by_name("replicated")
                .expect("topic on every node");
            let leaders: std::collections::BTreeSet<i32> =
                topic.partitions.values().map(|p| p.leader).collect();
            assert!(topic
                .partitions
                .values()
                .all(|p| p.replicas.len() == 3 && p.isr.len() == 3));
            assert_eq!(
                leaders.len(),
                3,
                "preferred leaders spread over the brokers"
            );
        }
        let reply = create_topic(services[first].as_ref().unwrap(), "t").await;
        assert!(
            matches!(reply, ControllerReply::CreateTopics(_)),
            "{reply:?}"
        );
        let committed_offset = services[first].as_ref().unwrap().runtime.image().offset;

        // Stop the active controller; the others take over with everything committed.
        services[first].take().unwrap().stop();
        let _ = first;
        let second = active(&services).await;
        assert_ne!(first, second);
        let survivor = services[second].as_ref().unwrap();
        assert!(survivor.runtime.image().offset >= committed_offset);
        assert_eq!(survivor.runtime.image().cluster_id.as_ref(), Some(&ids[0]));
        let reply = create_topic(survivor, "u").await;
        assert!(
            matches!(reply, ControllerReply::CreateTopics(_)),
            "{reply:?}"
        );
        for service in services.iter().flatten() {
            service.stop();
        }
    }
}
