//! # fjord-broker: Kafka request handling
//!
//! The layer between the wire (`fjord-protocol`) and the disk (`fjord-storage`). It owns the
//! topics and partitions this node hosts ([`replica_manager`]), the fetch sessions
//! ([`fetch_session`]), the consumer groups and committed offsets ([`group_coordinator`]),
//! producer ids and transactions ([`transaction_coordinator`]), and
//! one handler per Kafka API ([`apis`]). It opens no sockets: the
//! server crate reads frames, calls [`Broker::handle`] with a decoded request, and writes what
//! comes back.
//!
//! Handlers never panic on client input: every failure becomes the Kafka error code the Java
//! broker would return for it.

pub mod apis;
pub mod config;
pub mod controller_channel;
pub mod controller_wire;
pub mod coordinator_record;
pub mod dynamic_config;
pub mod error;
pub mod fetch_session;
pub mod group_coordinator;
pub mod lifecycle;
pub mod log_cleaner;
pub mod metadata_node;
pub mod metadata_runtime;
pub mod metadata_view;
pub mod metrics;
pub mod node_channel;
pub mod partition;
pub mod replica_manager;
pub mod replication;
#[doc(hidden)]
pub mod testing;
pub mod time;
pub mod topic_config;
pub mod transaction_coordinator;
pub mod txn_markers;

use fjord_protocol::kafka_protocol::messages::RequestHeader;
use fjord_protocol::{ApiKey, RequestKind, ResponseKind};
use std::net::IpAddr;
use std::sync::Arc;

use fjord_storage::{FileRecords, LogManager, StorageError};
use parking_lot::Mutex;
use tokio::sync::watch;

pub use config::BrokerConfig;
pub use error::BrokerError;

use fetch_session::FetchSessionCache;
use group_coordinator::{GroupCoordinator, RequestContext};
use replica_manager::ReplicaManager;
use transaction_coordinator::{TransactionCoordinator, TxnMarkerWriter};

/// What the connection does after a request was handled.
// Returned once per request and consumed at once: boxing the response would only add an
// allocation to every request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Outcome {
    Respond(ResponseKind),
    /// A response whose record fields hold `fjord_protocol::splice` placeholders for these
    /// file ranges (placeholder `i` is element `i`): the connection splices them in, with
    /// `sendfile` where it can. Only Fetch answers this way.
    RespondWithFileRecords(ResponseKind, Vec<FileRecords>),
    /// Produce with acks=0 that succeeded: the client expects nothing.
    NoResponse,
    /// Close the connection, as Kafka does (e.g. a failed acks=0 produce).
    CloseConnection(&'static str),
}

impl Outcome {
    /// The same outcome with file ranges read into the response: for transports that must
    /// see the bytes, for the fallback when splicing is impossible, and for tests.
    pub fn into_inline(self) -> Result<Outcome, StorageError> {
        let Outcome::RespondWithFileRecords(mut body, file_records) = self else {
            return Ok(self);
        };
        if let ResponseKind::Fetch(fetch) = &mut body {
            for partition in fetch.responses.iter_mut().flat_map(|t| &mut t.partitions) {
                let index = partition
                    .records
                    .as_deref()
                    .and_then(fjord_protocol::splice::placeholder_index);
                if let Some(records) = index.and_then(|i| file_records.get(i)) {
                    partition.records = Some(records.read_to_bytes()?);
                }
            }
        }
        Ok(Outcome::Respond(body))
    }
}

pub struct Broker {
    replica_manager: Arc<ReplicaManager>,
    group_coordinator: Arc<GroupCoordinator>,
    transaction_coordinator: TransactionCoordinator,
    fetch_sessions: Mutex<FetchSessionCache>,
    cluster_id: String,
    shutdown: watch::Sender<bool>,
    metrics: metrics::BrokerMetrics,
}

impl Broker {
    /// Opens the data directory, recovers every log and loads the topics.
    pub fn open(config: BrokerConfig) -> Result<Self, BrokerError> {
        let (log_manager, had_clean_shutdown) = LogManager::open(&config.data_dir)?;
        let (cluster_id, formatted) = ensure_meta_properties(&log_manager, config.node_id)?;
        if !had_clean_shutdown && !formatted {
            tracing::info!(data_dir = %config.data_dir.display(), "previous shutdown was not clean: recovering logs");
        }
        // Dynamic broker configs apply before any log opens.
        let config =
            dynamic_config::effective_at_start(config, log_manager.load_dynamic_broker_configs()?);
        let fetch_sessions = Mutex::new(FetchSessionCache::new(config.fetch_session_cache_slots));
        let replica_manager = Arc::new(ReplicaManager::open(
            config.clone(),
            log_manager,
            had_clean_shutdown,
        )?);
        let group_coordinator = Arc::new(GroupCoordinator::open(
            &config,
            replica_manager.clone(),
            time::now_ms(),
        )?);
        // Every partition leader is this broker: markers go straight to its partitions (and
        // transactional offsets to its group coordinator); `set_txn_marker_writer` replaces it.
        let marker_writer: Arc<dyn TxnMarkerWriter> =
            Arc::new(txn_markers::LocalTxnMarkerWriter::new(
                replica_manager.clone(),
                group_coordinator.clone(),
            ));
        let transaction_coordinator = TransactionCoordinator::open(
            &config,
            replica_manager.clone(),
            marker_writer,
            time::now_ms(),
        )?;
        let (shutdown, _) = watch::channel(false);
        Ok(Self {
            replica_manager,
            group_coordinator,
            transaction_coordinator,
            fetch_sessions,
            cluster_id,
            shutdown,
            metrics: metrics::BrokerMetrics::new(),
        })
    }

    /// The effective configuration: static settings with the dynamic broker configs on top.
    /// It can change between two calls (dynamic broker configs); take it once per request.
    pub fn config(&self) -> Arc<BrokerConfig> {
        self.replica_manager.config()
    }

    /// Counters, gauges and histograms the connection layer and handlers update; see
    /// [`Broker::render_metrics`] for the scrape.
    pub fn metrics(&self) -> &metrics::BrokerMetrics {
        &self.metrics
    }

    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    pub fn replica_manager(&self) -> &ReplicaManager {
        &self.replica_manager
    }

    pub fn group_coordinator(&self) -> &GroupCoordinator {
        &self.group_coordinator
    }

    pub fn transaction_coordinator(&self) -> &TransactionCoordinator {
        &self.transaction_coordinator
    }

    /// Replaces the transaction coordinator's marker writer.
    pub fn set_txn_marker_writer(&self, writer: Arc<dyn TxnMarkerWriter>) {
        self.transaction_coordinator.set_marker_writer(writer);
    }

    pub fn fetch_sessions(&self) -> &Mutex<FetchSessionCache> {
        &self.fetch_sessions
    }

    /// Flips to true when shutdown begins, so parked fetches answer at once.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Whether the connection layer may decode and dispatch this API version.
    pub fn supports(&self, api_key: ApiKey, api_version: i16) -> bool {
        apis::is_supported(api_key, api_version)
    }

    /// Handles one decoded request.
    pub async fn handle(&self, header: &RequestHeader, request: RequestKind) -> Outcome {
        self.handle_from(None, header, request).await
    }

    /// Handles one decoded request from `peer` (shown as the client host of group members).
    pub async fn handle_from(
        &self,
        peer: Option<IpAddr>,
        header: &RequestHeader,
        request: RequestKind,
    ) -> Outcome {
        let version = header.request_api_version;
        let ctx = || RequestContext {
            api_version: version,
            client_id: header
                .client_id
                .as_ref()
                .map(|c| c.to_string())
                .unwrap_or_default(),
            // Kafka's InetAddress.toString() form.
            client_host: peer.map(|ip| format!("/{ip}")).unwrap_or_default(),
        };
        let response = match request {
            RequestKind::ApiVersions(r) => {
                ResponseKind::ApiVersions(apis::api_versions::handle(version, &r))
            }
            RequestKind::Metadata(r) => {
                ResponseKind::Metadata(apis::metadata::handle(self, version, &r))
            }
            RequestKind::Produce(r) => {
                let acks = r.acks;
                let response = apis::produce::handle(self, version, r);
                if acks == 0 {
                    return if apis::produce::any_error(&response) {
                        Outcome::CloseConnection("a produce request with acks=0 failed")
                    } else {
                        Outcome::NoResponse
                    };
                }
                ResponseKind::Produce(response)
            }
            RequestKind::Fetch(r) => {
                let (response, file_records) = apis::fetch::handle(self, version, r).await;
                return Outcome::RespondWithFileRecords(
                    ResponseKind::Fetch(response),
                    file_records,
                );
            }
            RequestKind::ListOffsets(r) => {
                ResponseKind::ListOffsets(apis::list_offsets::handle(self, version, &r))
            }
            RequestKind::OffsetForLeaderEpoch(r) => {
                ResponseKind::OffsetForLeaderEpoch(apis::offset_for_leader_epoch::handle(self, &r))
            }
            RequestKind::CreateTopics(r) => {
                ResponseKind::CreateTopics(apis::create_topics::handle(self, version, &r))
            }
            RequestKind::DeleteTopics(r) => {
                ResponseKind::DeleteTopics(apis::delete_topics::handle(self, version, &r))
            }
            RequestKind::DescribeCluster(r) => {
                ResponseKind::DescribeCluster(apis::describe_cluster::handle(self, &r))
            }
            RequestKind::FindCoordinator(r) => {
                ResponseKind::FindCoordinator(apis::find_coordinator::handle(self, version, &r))
            }
            RequestKind::JoinGroup(r) => {
                ResponseKind::JoinGroup(apis::join_group::handle(self, &ctx(), &r).await)
            }
            RequestKind::SyncGroup(r) => {
                ResponseKind::SyncGroup(apis::sync_group::handle(self, version, &r).await)
            }
            RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(apis::heartbeat::handle(self, &r)),
            RequestKind::DescribeConfigs(r) => {
                ResponseKind::DescribeConfigs(apis::describe_configs::handle(self, &r))
            }
            RequestKind::AlterConfigs(r) => {
                ResponseKind::AlterConfigs(apis::alter_configs::handle(self, &r))
            }
            RequestKind::IncrementalAlterConfigs(r) => ResponseKind::IncrementalAlterConfigs(
                apis::incremental_alter_configs::handle(self, &r),
            ),
            RequestKind::DescribeLogDirs(r) => {
                ResponseKind::DescribeLogDirs(apis::describe_log_dirs::handle(self, &r))
            }
            RequestKind::DescribeProducers(r) => {
                ResponseKind::DescribeProducers(apis::describe_producers::handle(self, &r))
            }
            RequestKind::CreatePartitions(r) => {
                ResponseKind::CreatePartitions(apis::create_partitions::handle(self, &r))
            }
            RequestKind::DeleteRecords(r) => {
                ResponseKind::DeleteRecords(apis::delete_records::handle(self, &r))
            }
            RequestKind::ConsumerGroupHeartbeat(r) => ResponseKind::ConsumerGroupHeartbeat(
                apis::consumer_group_heartbeat::handle(self, &ctx(), &r),
            ),
            RequestKind::ConsumerGroupDescribe(r) => {
                ResponseKind::ConsumerGroupDescribe(apis::consumer_group_describe::handle(self, &r))
            }
            RequestKind::LeaveGroup(r) => {
                ResponseKind::LeaveGroup(apis::leave_group::handle(self, version, r))
            }
            RequestKind::OffsetCommit(r) => {
                ResponseKind::OffsetCommit(apis::offset_commit::handle(self, version, &r))
            }
            RequestKind::OffsetFetch(r) => {
                ResponseKind::OffsetFetch(apis::offset_fetch::handle(self, version, &r))
            }
            RequestKind::TxnOffsetCommit(r) => {
                ResponseKind::TxnOffsetCommit(apis::txn_offset_commit::handle(self, version, &r))
            }
            RequestKind::OffsetDelete(r) => {
                ResponseKind::OffsetDelete(apis::offset_delete::handle(self, &r))
            }
            RequestKind::DescribeGroups(r) => {
                ResponseKind::DescribeGroups(apis::describe_groups::handle(self, version, &r))
            }
            RequestKind::ListGroups(r) => {
                ResponseKind::ListGroups(apis::list_groups::handle(self, version, &r))
            }
            RequestKind::DeleteGroups(r) => {
                ResponseKind::DeleteGroups(apis::delete_groups::handle(self, &r))
            }
            RequestKind::InitProducerId(r) => {
                ResponseKind::InitProducerId(apis::init_producer_id::handle(self, version, &r))
            }
            RequestKind::AddPartitionsToTxn(r) => ResponseKind::AddPartitionsToTxn(
                apis::add_partitions_to_txn::handle(self, version, &r),
            ),
            RequestKind::AddOffsetsToTxn(r) => {
                ResponseKind::AddOffsetsToTxn(apis::add_offsets_to_txn::handle(self, version, &r))
            }
            RequestKind::EndTxn(r) => {
                ResponseKind::EndTxn(apis::end_txn::handle(self, version, &r))
            }
            RequestKind::WriteTxnMarkers(r) => {
                ResponseKind::WriteTxnMarkers(apis::write_txn_markers::handle(self, &r))
            }
            RequestKind::DescribeTransactions(r) => {
                ResponseKind::DescribeTransactions(apis::describe_transactions::handle(self, &r))
            }
            RequestKind::ListTransactions(r) => {
                ResponseKind::ListTransactions(apis::list_transactions::handle(self, version, &r))
            }
            other => {
                // The connection layer checks `supports` first, so this is a broker bug.
                tracing::error!(request = ?std::mem::discriminant(&other), "no handler for a request that passed the version check");
                return Outcome::CloseConnection("no handler for this request");
            }
        };
        Outcome::Respond(response)
    }

    /// Begins shutdown: parked fetches return, then logs are flushed and closed and the clean
    /// shutdown marker is written. Call once no request is in flight.
    pub fn begin_shutdown(&self) {
        self.group_coordinator.shutdown();
        self.transaction_coordinator.shutdown();
        self.shutdown.send_replace(true);
    }

    pub fn close(&self) -> Result<(), BrokerError> {
        self.begin_shutdown();
        self.replica_manager.shutdown()
    }
}

/// Reads `meta.properties`, or writes it with a new cluster id on first start. A data directory
/// that belongs to another node id is refused, as Kafka does.
/// Returns the cluster id and whether the directory was formatted just now.
fn ensure_meta_properties(
    log_manager: &LogManager,
    node_id: i32,
) -> Result<(String, bool), BrokerError> {
    if let Some(meta) = log_manager.read_meta_properties()? {
        if meta.node_id != node_id {
            return Err(BrokerError::InvalidConfig {
                key: "node.id".to_string(),
                value: node_id.to_string(),
                reason: format!(
                    "the data directory belongs to node {} (see meta.properties)",
                    meta.node_id
                ),
            });
        }
        return Ok((meta.cluster_id, false));
    }
    let cluster_id = new_cluster_id();
    log_manager.write_meta_properties(&fjord_storage::MetaProperties {
        version: 1,
        node_id,
        cluster_id: cluster_id.clone(),
    })?;
    tracing::info!(%cluster_id, "formatted a new data directory");
    Ok((cluster_id, true))
}

/// Kafka's cluster id format: a random UUID as 22 characters of URL-safe base64.
fn new_cluster_id() -> String {
    fjord_storage::kafka_uuid_string(uuid::Uuid::new_v4())
}
