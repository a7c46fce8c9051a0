//! The tokio side of a broker-only node's metadata (`process.roles=broker`, design 3.3): the
//! observer loop. It pulls committed metadata from the voters with FetchMetadata
//! (`fjord_broker::metadata_fetch`) over their controller listeners, hands what it gets to the
//! [`ObserverRuntime`] (persisted in `{data_dir}/__cluster_metadata-0/`, replayed into the
//! image, published to the broker), and gives the broker its channel to the active controller
//! (`ClusterControllerChannel` without a local quorum member).
//!
//! Kafka's broker-only nodes are KRaft observers fetching from the leader. Here any voter
//! answers (committed entries only); the loop prefers the voter the last answer named as
//! leader, otherwise rotates through `controller.quorum.voters`, and on a failed connection or
//! request moves to the next voter after a short backoff. Empty answers are long polls held by
//! the voter (`max_wait_ms`), so an idle observer costs one request per
//! `FETCH_MAX_WAIT_MS`. A voter of another cluster answers INCONSISTENT_CLUSTER_ID: the loop
//! stops for good and the node exits with that message.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::BytesMut;
use fjord_broker::controller_channel::ControllerChannel;
use fjord_broker::metadata_fetch::{
    error_code, FetchMetadataBody, FetchMetadataRequest, FetchSnapshotRequest, ObserverRequest,
    ObserverResponse, FETCH_METADATA_RESPONSE_BYTES_MAX, SNAPSHOT_CHUNK_BYTES_MAX,
};
use fjord_broker::metadata_observer::{MetadataObserver, ObserverRuntime, SnapshotDownload};
use fjord_broker::BrokerConfig;
use fjord_protocol::frame::decode_frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::controller_security::{dial, voter_endpoints, ControllerStream, ControllerTls};
use crate::node_client::PeerEndpoint;
use crate::test_hooks::PeerAddresses;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::controller_client::ClusterControllerChannel;

/// Payload bytes asked per FetchMetadata.
const FETCH_MAX_BYTES: u32 = 1024 * 1024;
/// How long a voter may hold an empty answer.
const FETCH_MAX_WAIT_MS: u32 = 500;
/// Beyond the long poll, how long an answer may take before the voter is given up.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_millis(1_000);

/// A running observer.
pub struct ObserverService {
    pub runtime: Arc<ObserverRuntime>,
    /// The broker's way to the active controller.
    pub channel: Arc<dyn ControllerChannel>,
    /// Why the loop stopped for good (another cluster, a local failure); `None` while it runs.
    fatal: watch::Receiver<Option<String>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl ObserverService {
    /// Opens the local metadata log (replaying it) and starts the fetch loop.
    /// `peer_addresses` resolves the voters' controller listeners (test hook overrides).
    pub async fn start(
        config: &BrokerConfig,
        peer_addresses: &PeerAddresses,
    ) -> anyhow::Result<Self> {
        let dir = config.data_dir.join(fjord_storage::METADATA_LOG_DIR_NAME);
        let opened = {
            let dir = dir.clone();
            // Its own snapshots, at the voters' interval.
            let snapshot_interval_bytes = config.metadata_snapshot_interval_bytes;
            tokio::task::spawn_blocking(move || {
                MetadataObserver::open(&dir, snapshot_interval_bytes)
            })
            .await
            .context("opening the metadata log")?
        };
        let observer =
            opened.with_context(|| format!("cannot open the metadata log {}", dir.display()))?;
        let runtime = ObserverRuntime::new(observer);
        let stored_cluster_id = fjord_storage::read_meta_properties(&config.data_dir)
            .context("reading meta.properties")?
            .map(|meta| meta.cluster_id);
        // TLS settings and files are checked before anything runs: a bad one stops the start.
        let tls = ControllerTls::load(config)?;
        let voters = voter_endpoints(config, peer_addresses, None);
        anyhow::ensure!(
            !voters.is_empty(),
            "a broker-only node needs controller.quorum.voters with addresses"
        );
        info!(
            next_index = runtime.next_index(),
            voters = ?voters.iter().map(|v| (v.node_id, v.address.as_str())).collect::<Vec<_>>(),
            "metadata observer started (process.roles=broker)"
        );
        let (fatal_tx, fatal) = watch::channel(None);
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(
            FetchLoop {
                node_id: config.node_id,
                runtime: runtime.clone(),
                voters,
                tls: tls.client.clone(),
                stored_cluster_id,
                correlation_id: 0,
            }
            .run(stop_rx, fatal_tx),
        );
        let channel: Arc<dyn ControllerChannel> = Arc::new(ClusterControllerChannel::new(
            config.node_id,
            None,
            config,
            peer_addresses,
            tls.client,
        ));
        Ok(Self {
            runtime,
            channel,
            fatal,
            stop,
            task,
        })
    }

    /// Waits until the fetched log formed the cluster id; fails if the loop stopped for good.
    pub async fn wait_for_cluster_id(&self, timeout: Duration) -> anyhow::Result<Option<String>> {
        let mut images = self.runtime.subscribe();
        let mut fatal = self.fatal.clone();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(reason) = fatal.borrow_and_update().clone() {
                anyhow::bail!(reason);
            }
            if let Some(id) = images.borrow_and_update().cluster_id.clone() {
                return Ok(Some(id));
            }
            tokio::select! {
                _ = images.changed() => {}
                _ = fatal.changed() => {}
                _ = tokio::time::sleep_until(deadline) => return Ok(None),
            }
        }
    }

    /// Resolves with the reason once the loop stopped for good.
    pub fn fatal(&self) -> watch::Receiver<Option<String>> {
        self.fatal.clone()
    }

    pub fn stop(&self) {
        let _ = self.stop.send(true);
        self.task.abort();
    }
}

impl Drop for ObserverService {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One connection to a voter's controller listener, one request at a time.
struct VoterConnection {
    node_id: i32,
    /// TCP, or TLS when the controller listener is SSL.
    stream: Box<dyn ControllerStream>,
    buffer: BytesMut,
}

impl VoterConnection {
    async fn open(
        voter: &PeerEndpoint,
        tls: Option<&Arc<rustls::ClientConfig>>,
    ) -> Result<Self, String> {
        let stream = dial(&voter.address, &voter.server_name, tls, CONNECT_TIMEOUT).await?;
        let node_id = voter.node_id;
        Ok(Self {
            node_id,
            stream,
            buffer: BytesMut::with_capacity(64 * 1024),
        })
    }

    /// Writes `request` and reads its answer (bounded in size and time).
    async fn exchange(
        &mut self,
        request: &ObserverRequest,
        correlation_id: i32,
        timeout: Duration,
    ) -> Result<ObserverResponse, String> {
        let exchange = async {
            self.stream
                .write_all(&request.encode())
                .await
                .map_err(|e| format!("write: {e}"))?;
            // TLS holds the last record until flushed; a no-op for plain TCP.
            self.stream
                .flush()
                .await
                .map_err(|e| format!("write: {e}"))?;
            loop {
                match decode_frame(&mut self.buffer, FETCH_METADATA_RESPONSE_BYTES_MAX) {
                    Ok(Some(body)) => {
                        let response =
                            ObserverResponse::decode(body).map_err(|e| format!("decode: {e}"))?;
                        if response.correlation_id() != correlation_id {
                            return Err(format!(
                                "answer {} to request {correlation_id}",
                                response.correlation_id()
                            ));
                        }
                        return Ok(response);
                    }
                    Ok(None) => match self.stream.read_buf(&mut self.buffer).await {
                        Ok(0) => return Err("connection closed".to_string()),
                        Ok(_) => {}
                        Err(e) => return Err(format!("read: {e}")),
                    },
                    Err(e) => return Err(format!("frame: {e}")),
                }
            }
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {} ms", timeout.as_millis())))
    }
}

/// Why one round failed.
enum RoundError {
    /// Try another voter (connection, timeout, transient error answer).
    Retry(String),
    /// Stop for good.
    Fatal(String),
}

struct FetchLoop {
    node_id: i32,
    runtime: Arc<ObserverRuntime>,
    voters: Vec<PeerEndpoint>,
    /// The controller listener's client TLS, when it is SSL.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// `meta.properties`' cluster id, sent until the log has formed one.
    stored_cluster_id: Option<String>,
    correlation_id: i32,
}

impl FetchLoop {
    fn cluster_id(&self) -> String {
        self.runtime
            .image()
            .cluster_id
            .clone()
            .or_else(|| self.stored_cluster_id.clone())
            .unwrap_or_default()
    }

    fn next_correlation_id(&mut self) -> i32 {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        self.correlation_id
    }

    async fn run(mut self, mut stop: watch::Receiver<bool>, fatal: watch::Sender<Option<String>>) {
        // Spread observers over the voters until a leader hint arrives.
        let mut rotation = self.node_id.unsigned_abs() as usize;
        let mut preferred: Option<i32> = None;
        let mut connection: Option<VoterConnection> = None;
        let mut backoff = BACKOFF_MIN;
        let mut logged_down = false;
        loop {
            if *stop.borrow() {
                return;
            }
            let target = match preferred.filter(|id| self.voters.iter().any(|v| v.node_id == *id)) {
                Some(id) => id,
                None => {
                    rotation = rotation.wrapping_add(1);
                    self.voters[rotation % self.voters.len()].node_id
                }
            };
            let round = self.round(target, &mut connection).await;
            match round {
                Ok(hint) => {
                    if logged_down {
                        info!(voter = target, "metadata observer fetching again");
                        logged_down = false;
                    }
                    backoff = BACKOFF_MIN;
                    preferred = hint.or(Some(target));
                    continue;
                }
                Err(RoundError::Fatal(reason)) => {
                    warn!(%reason, "metadata observer stopped");
                    let _ = fatal.send(Some(reason));
                    return;
                }
                Err(RoundError::Retry(reason)) => {
                    if !logged_down {
                        info!(voter = target, %reason, "metadata observer: voter unavailable; trying the others");
                        logged_down = true;
                    } else {
                        debug!(voter = target, %reason, "metadata observer: voter unavailable");
                    }
                    connection = None;
                    preferred = None;
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => return,
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// One FetchMetadata to `target` (and the snapshot download it may ask for); returns the
    /// leader hint of the answer.
    async fn round(
        &mut self,
        target: i32,
        connection: &mut Option<VoterConnection>,
    ) -> Result<Option<i32>, RoundError> {
        if self.runtime.failure().is_some() {
            return Err(RoundError::Fatal(
                "the local metadata log failed; restart the node".to_string(),
            ));
        }
        if connection.as_ref().map(|c| c.node_id) != Some(target) {
            let Some(voter) = self.voters.iter().find(|v| v.node_id == target) else {
                return Err(RoundError::Retry(format!("voter {target} is unknown")));
            };
            *connection = Some(
                VoterConnection::open(voter, self.tls.as_ref())
                    .await
                    .map_err(RoundError::Retry)?,
            );
        }
        let Some(conn) = connection.as_mut() else {
            return Err(RoundError::Retry("no connection".to_string()));
        };
        let correlation_id = self.next_correlation_id();
        let request = ObserverRequest::Fetch(FetchMetadataRequest {
            correlation_id,
            node_id: self.node_id,
            cluster_id: self.cluster_id(),
            from_index: self.runtime.next_index(),
            max_bytes: FETCH_MAX_BYTES,
            max_wait_ms: FETCH_MAX_WAIT_MS,
        });
        let timeout = REQUEST_TIMEOUT + Duration::from_millis(u64::from(FETCH_MAX_WAIT_MS));
        let response = match conn.exchange(&request, correlation_id, timeout).await {
            Ok(ObserverResponse::Fetch(response)) => response,
            Ok(ObserverResponse::Snapshot(_)) => {
                return Err(RoundError::Retry("snapshot answer to a fetch".into()))
            }
            Err(reason) => return Err(RoundError::Retry(reason)),
        };
        check_error(
            response.error_code,
            &response.cluster_id,
            &self.cluster_id(),
        )?;
        let hint = (response.leader_hint >= 0).then_some(response.leader_hint);
        match response.body {
            FetchMetadataBody::Entries(entries) if entries.is_empty() => Ok(hint),
            FetchMetadataBody::Entries(entries) => {
                let runtime = self.runtime.clone();
                blocking(move || runtime.append_committed(&entries)).await?;
                Ok(hint)
            }
            FetchMetadataBody::SnapshotRequired {
                index,
                term,
                size_bytes,
            } => {
                if size_bytes == 0 {
                    // The voter replaced its snapshot between reading its id and its size.
                    return Err(RoundError::Retry("snapshot without data".into()));
                }
                info!(
                    voter = target,
                    index, term, size_bytes, "metadata observer: fetching the voters' snapshot"
                );
                let mut download = SnapshotDownload::new(index, term, size_bytes)
                    .map_err(|e| RoundError::Fatal(e.to_string()))?;
                while !download.is_complete() {
                    let correlation_id = self.next_correlation_id();
                    let request = ObserverRequest::Snapshot(FetchSnapshotRequest {
                        correlation_id,
                        node_id: self.node_id,
                        cluster_id: self.cluster_id(),
                        snapshot_index: index,
                        snapshot_term: term,
                        position: download.position(),
                        max_bytes: SNAPSHOT_CHUNK_BYTES_MAX,
                    });
                    let part = match conn
                        .exchange(&request, correlation_id, REQUEST_TIMEOUT)
                        .await
                    {
                        Ok(ObserverResponse::Snapshot(part)) => part,
                        Ok(ObserverResponse::Fetch(_)) => {
                            return Err(RoundError::Retry("fetch answer to a snapshot".into()))
                        }
                        Err(reason) => return Err(RoundError::Retry(reason)),
                    };
                    check_error(part.error_code, &part.cluster_id, &self.cluster_id())?;
                    download
                        .accept(
                            part.snapshot_index,
                            part.snapshot_term,
                            part.size_bytes,
                            part.position,
                            &part.chunk,
                        )
                        .map_err(|e| RoundError::Retry(e.to_string()))?;
                }
                let Some(data) = download.into_data() else {
                    return Err(RoundError::Retry("snapshot incomplete".into()));
                };
                let runtime = self.runtime.clone();
                blocking(move || runtime.install_snapshot(index, term, &data)).await?;
                info!(
                    index,
                    term, "metadata observer: installed the voters' snapshot"
                );
                Ok(hint)
            }
        }
    }
}

/// Maps an answer's error code: INCONSISTENT_CLUSTER_ID is final, anything else moves on.
fn check_error(code: i16, theirs: &str, ours: &str) -> Result<(), RoundError> {
    match code {
        error_code::NONE => Ok(()),
        error_code::INCONSISTENT_CLUSTER_ID => Err(RoundError::Fatal(format!(
            "INCONSISTENT_CLUSTER_ID: the controller quorum is cluster {theirs}, but this node's metadata belongs to cluster {ours}"
        ))),
        other => Err(RoundError::Retry(format!("error code {other}"))),
    }
}

/// Runs a runtime step (file writes, fsync, the broker's publishers) off the async workers.
async fn blocking(
    step: impl FnOnce() -> Result<(), fjord_broker::metadata_runtime::RuntimeFailed> + Send + 'static,
) -> Result<(), RoundError> {
    match tokio::task::spawn_blocking(step).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(failed)) => Err(RoundError::Fatal(failed.to_string())),
        Err(error) => Err(RoundError::Fatal(format!("metadata task failed: {error}"))),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use fjord_broker::lifecycle::{
        registration_request, BrokerLifecycle, BrokerState, LifecycleConfig,
    };
    use fjord_controller::{
        ControllerReply, ControllerRequest, CreatableTopic, CreateTopicsRequest,
    };

    use super::*;
    use crate::metadata_service::MetadataService;

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    fn config(pairs: &[(&str, String)]) -> BrokerConfig {
        BrokerConfig::from_settings(
            &pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect::<BTreeMap<_, _>>(),
        )
        .unwrap()
    }

    fn observer_config(dir: &std::path::Path, voters: &str) -> BrokerConfig {
        config(&[
            ("node.id", "4".into()),
            ("process.roles", "broker".into()),
            ("data.dir", dir.display().to_string()),
            ("controller.quorum.voters", voters.into()),
        ])
    }

    async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        for _ in 0..400 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for {what}");
    }

    fn checkpoints(data_dir: &std::path::Path) -> usize {
        std::fs::read_dir(data_dir.join(fjord_storage::METADATA_LOG_DIR_NAME))
            .map(|items| {
                items
                    .filter(|i| {
                        i.as_ref()
                            .is_ok_and(|i| i.file_name().to_string_lossy().ends_with(".checkpoint"))
                    })
                    .count()
            })
            .unwrap_or(0)
    }

    /// A broker-only node's metadata over real TCP: the observer follows a voter (log, then
    /// the voter's snapshot for a late one), its broker registers and is unfenced through the
    /// controller channel (which needs the observer caught up), creates a topic that lands on
    /// it, restarts from its own files, and an observer of another cluster is refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_observer_follows_a_voter_over_tcp() {
        let voter_dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let voters = format!("1@127.0.0.1:{port}");
        let voter = MetadataService::start(
            &config(&[
                ("node.id", "1".into()),
                ("data.dir", voter_dir.path().display().to_string()),
                ("controller.listen", format!("127.0.0.1:{port}")),
                ("controller.quorum.voters", voters.clone()),
                (
                    "metadata.log.max.record.bytes.between.snapshots",
                    "1024".into(),
                ),
            ]),
            Vec::new(),
            1,
            None,
            &PeerAddresses::default(),
        )
        .await
        .unwrap();
        let cluster_id = voter
            .wait_for_cluster_id(Duration::from_secs(20))
            .await
            .unwrap();

        let observer_dir = tempfile::tempdir().unwrap();
        let observer_config = observer_config(observer_dir.path(), &voters);
        let observer = ObserverService::start(&observer_config, &PeerAddresses::default())
            .await
            .unwrap();
        assert_eq!(
            observer
                .wait_for_cluster_id(Duration::from_secs(20))
                .await
                .unwrap(),
            Some(cluster_id.clone())
        );
        // The broker of the node registers through the channel to the voter and is unfenced
        // once its observed metadata reached its registration.
        let lifecycle = {
            let runtime = observer.runtime.clone();
            BrokerLifecycle::new(
                observer.channel.clone(),
                LifecycleConfig {
                    heartbeat_interval_ms: 100,
                    ..LifecycleConfig::default()
                },
                registration_request(&observer_config, &cluster_id, uuid::Uuid::new_v4(), None),
                Box::new(move || runtime.image().offset),
            )
        };
        let (_stop_lifecycle, stop_rx) = watch::channel(false);
        tokio::spawn(lifecycle.clone().run(stop_rx));
        wait_until("broker 4 unfenced", || {
            matches!(lifecycle.state(), BrokerState::Running { .. })
        })
        .await;
        let reply = observer
            .channel
            .send(
                ControllerRequest::CreateTopics(CreateTopicsRequest {
                    topics: vec![CreatableTopic {
                        name: "on-four".into(),
                        num_partitions: 2,
                        replication_factor: 1,
                        assignments: Vec::new(),
                        configs: Vec::new(),
                    }],
                    validate_only: false,
                }),
                10_000,
            )
            .await
            .unwrap();
        let ControllerReply::CreateTopics(created) = reply else {
            panic!("{reply:?}")
        };
        assert!(created.topics[0].error.code.is_none(), "{created:?}");
        wait_until("the topic in the observer's image", || {
            observer.runtime.image().topic_by_name("on-four").is_some()
        })
        .await;
        let image = observer.runtime.image();
        let topic = image.topic_by_name("on-four").unwrap();
        assert!(topic.partitions.values().all(|p| p.replicas == vec![4]));
        assert_eq!(
            image.topics,
            voter.runtime.image().topics,
            "observer and voter agree on the topics"
        );

        // A restart replays its own log first, then resumes after it.
        let next = observer.runtime.next_index();
        observer.stop();
        drop(observer);
        let observer = ObserverService::start(&observer_config, &PeerAddresses::default())
            .await
            .unwrap();
        assert!(observer.runtime.next_index() >= next);
        assert!(observer.runtime.image().topic_by_name("on-four").is_some());
        observer.stop();

        // A late observer, behind the voter's compaction, starts from its snapshot.
        let mut filled = 0;
        while checkpoints(voter_dir.path()) == 0 {
            assert!(filled < 200, "no voter snapshot after {filled} topics");
            let reply = voter
                .channel
                .send(
                    ControllerRequest::CreateTopics(CreateTopicsRequest {
                        topics: vec![CreatableTopic {
                            name: format!("fill-{filled}"),
                            num_partitions: 4,
                            replication_factor: 1,
                            assignments: Vec::new(),
                            configs: Vec::new(),
                        }],
                        validate_only: false,
                    }),
                    10_000,
                )
                .await
                .unwrap();
            assert!(
                matches!(reply, ControllerReply::CreateTopics(_)),
                "{reply:?}"
            );
            filled += 1;
        }
        let late_dir = tempfile::tempdir().unwrap();
        let late = ObserverService::start(
            &observer_config_with_id(late_dir.path(), &voters, 5),
            &PeerAddresses::default(),
        )
        .await
        .unwrap();
        wait_until("the late observer has the topic", || {
            late.runtime.image().topic_by_name("on-four").is_some()
        })
        .await;
        assert_eq!(checkpoints(late_dir.path()), 1, "it installed the snapshot");
        late.stop();

        // Another cluster's observer is refused for good.
        let foreign_dir = tempfile::tempdir().unwrap();
        fjord_storage::write_meta_properties(
            foreign_dir.path(),
            &fjord_storage::MetaProperties {
                version: 1,
                node_id: 6,
                cluster_id: "AAAAAAAAAAAAAAAAAAAAAA".into(),
            },
        )
        .unwrap();
        let foreign = ObserverService::start(
            &observer_config_with_id(foreign_dir.path(), &voters, 6),
            &PeerAddresses::default(),
        )
        .await
        .unwrap();
        let refused = foreign
            .wait_for_cluster_id(Duration::from_secs(20))
            .await
            .unwrap_err();
        assert!(
            refused.to_string().contains("INCONSISTENT_CLUSTER_ID"),
            "{refused}"
        );
        assert!(foreign.runtime.image().cluster_id.is_none());
        foreign.stop();
        voter.stop();
    }

    fn observer_config_with_id(dir: &std::path::Path, voters: &str, id: i32) -> BrokerConfig {
        config(&[
            ("node.id", id.to_string()),
            ("process.roles", "broker".into()),
            ("data.dir", dir.display().to_string()),
            ("controller.quorum.voters", voters.into()),
        ])
    }
}
