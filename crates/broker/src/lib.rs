//! # fjord-broker: Kafka request handling
//!
//! The layer between the wire (`fjord-protocol`) and the disk (`fjord-storage`). The broker is
//! a state machine over the metadata image (Kafka's KRaft broker): every metadata change
//! (topics, partitions, configs, producer-id blocks) goes to the controller through the
//! [`controller_channel::ControllerChannel`] ([`forwarding`]), and the broker only *applies*
//! the images the metadata loader publishes ([`Broker::publish_metadata`], Kafka's
//! `BrokerMetadataPublisher`). It owns the topics and partitions this node hosts
//! ([`replica_manager`]), the fetch sessions
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
pub mod forwarding;
pub mod group_coordinator;
pub mod lifecycle;
pub mod listeners;
pub mod log_cleaner;
pub mod metadata_cache;
pub mod metadata_fetch;
pub mod metadata_node;
pub mod metadata_observer;
pub mod metadata_runtime;
pub mod metadata_view;
pub mod metrics;
pub mod migration;
pub mod node_channel;
pub mod partition;
pub mod producer_id_blocks;
pub mod quota;
pub mod replica_manager;
pub mod replication;
pub mod replication_shell;
pub mod security;
#[doc(hidden)]
pub mod testing;
pub mod time;
pub mod topic_config;
pub mod transaction_coordinator;
pub mod txn_markers;
pub mod txn_verification;

use fjord_protocol::kafka_protocol::messages::RequestHeader;
use fjord_protocol::{ApiKey, RequestKind, ResponseKind};
use std::net::IpAddr;
use std::sync::Arc;

use fjord_metadata::{ConfigResource, MetadataDelta, MetadataImage};
use fjord_storage::{FileRecords, LogManager, StorageError};
use parking_lot::Mutex;
use tokio::sync::watch;

use controller_channel::ControllerChannel;
use metadata_cache::MetadataCache;

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
    /// The settings given at start (file, environment, flags); dynamic broker configs from
    /// the image go on top of them.
    static_config: BrokerConfig,
    replica_manager: Arc<ReplicaManager>,
    group_coordinator: Arc<GroupCoordinator>,
    /// Writes markers to partitions led here only: what a WriteTxnMarkers request from
    /// another node's coordinator gets (never forwarded on).
    local_marker_writer: Arc<dyn TxnMarkerWriter>,
    transaction_coordinator: TransactionCoordinator,
    fetch_sessions: Mutex<FetchSessionCache>,
    /// `meta.properties`' cluster id, for the time before the image has one.
    meta_cluster_id: String,
    metadata: Arc<MetadataCache>,
    controller: Arc<dyn ControllerChannel>,
    /// Serialises `publish_metadata` (the loader calls it in order; this keeps a mistake from
    /// interleaving two deltas).
    publish_lock: Mutex<()>,
    shutdown: watch::Sender<bool>,
    metrics: metrics::BrokerMetrics,
    /// Follower fetchers, delayed produces, ISR changes (design section 5).
    replication: Arc<replication_shell::ReplicationShell>,
    /// DescribeQuorum's view of this node's metadata quorum (set by the server).
    quorum_describer: parking_lot::RwLock<Option<apis::describe_quorum::QuorumDescriber>>,
    /// Client quotas (produce, fetch, request), bounds from the image's `client_quotas`.
    quotas: quota::ClientQuotaManagers,
    /// The ACL authorizer (`authorizer.class.name`); `None`: every request is allowed.
    authorizer: Option<Arc<security::authorizer::Authorizer>>,
    authorization_metrics: Arc<security::enforcement::AuthorizationMetrics>,
    /// Test-only ACLs used instead of the image's ([`Broker::override_acls_for_test`]).
    acl_override: parking_lot::RwLock<Option<Arc<security::authorizer::AclMap>>>,
}

impl Broker {
    /// Opens the data directory and recovers the logs of the partitions `image` (the metadata
    /// as replayed at start) assigns to `config.node_id`. Partition directories the image
    /// does not assign here are left alone (with a warning) until the server renames the
    /// strays once caught up ([`ReplicaManager::rename_stray_partition_dirs`]). Metadata changes go to the
    /// controller through `controller`; images come back through [`Broker::publish_metadata`].
    pub fn open(
        config: BrokerConfig,
        image: Arc<MetadataImage>,
        controller: Arc<dyn ControllerChannel>,
    ) -> Result<Self, BrokerError> {
        let (log_manager, had_clean_shutdown) = LogManager::open(&config.data_dir)?;
        let (meta_cluster_id, formatted) =
            ensure_meta_properties(&log_manager, config.node_id, image.cluster_id.as_deref())?;
        // Only an existing directory without the marker was shut down uncleanly.
        if !had_clean_shutdown && !formatted && !log_manager.is_new_directory() {
            tracing::info!(data_dir = %config.data_dir.display(), "previous shutdown was not clean: recovering logs");
        }
        let static_config = config.clone();
        // Dynamic broker configs apply before any log opens.
        let config = dynamic_config::effective_at_start(
            config,
            dynamic_configs_of(&image, config_node(&static_config)),
        );
        let fetch_sessions = Mutex::new(FetchSessionCache::new(config.fetch_session_cache_slots));
        let metadata = Arc::new(MetadataCache::new(image.clone()));
        let replica_manager = Arc::new(ReplicaManager::open(
            config.clone(),
            log_manager,
            had_clean_shutdown,
            &image,
        )?);
        let (shutdown, _) = watch::channel(false);
        let replication = Arc::new(replication_shell::ReplicationShell::new(
            config.node_id,
            replica_manager.clone(),
            controller.clone(),
            shutdown.subscribe(),
        ));
        // Coordinator writes wait in the replication purgatory for the high watermark.
        let group_coordinator = Arc::new(GroupCoordinator::open(
            &config,
            replica_manager.clone(),
            replication.clone(),
            time::now_ms(),
        )?);
        // Markers go straight to this broker's partitions (and transactional offsets to its
        // group coordinator); `set_txn_marker_writer` replaces it.
        let marker_writer: Arc<dyn TxnMarkerWriter> =
            Arc::new(txn_markers::LocalTxnMarkerWriter::new(
                replica_manager.clone(),
                group_coordinator.clone(),
                replication.clone(),
            ));
        let producer_id_blocks = Arc::new(producer_id_blocks::ControllerProducerIdBlockStore::new(
            controller.clone(),
            metadata.clone(),
            config.node_id,
        ));
        let local_marker_writer = marker_writer.clone();
        let transaction_coordinator = TransactionCoordinator::open(
            &config,
            replica_manager.clone(),
            replication.clone(),
            marker_writer,
            producer_id_blocks,
            time::now_ms(),
        )?;
        // Partitions the image has this node follow at start go to their fetchers.
        replication.on_applied(&replica_manager.initial_roles());
        let authorizer = static_config.authorizer.enabled.then(|| {
            Arc::new(security::authorizer::Authorizer::new(
                static_config.authorizer.clone(),
            ))
        });
        let broker = Self {
            static_config,
            replica_manager,
            group_coordinator,
            transaction_coordinator,
            fetch_sessions,
            meta_cluster_id,
            metadata,
            controller,
            publish_lock: Mutex::new(()),
            shutdown,
            metrics: metrics::BrokerMetrics::new(),
            local_marker_writer,
            replication,
            quorum_describer: parking_lot::RwLock::new(None),
            quotas: quota::ClientQuotaManagers::new(
                quota::RateConfig::new(config.quota_window_num, config.quota_window_size_ms),
                quota::manager::SENSORS_MAX_DEFAULT,
            ),
            authorizer,
            authorization_metrics: Arc::default(),
            acl_override: parking_lot::RwLock::new(None),
        };
        broker.quotas.update(&image.client_quotas);
        // Shards were loaded from every local `__consumer_offsets` log, followers' too: keep
        // only those this node leads.
        broker.sync_group_coordinator(&broker.image(), &[], time::now_ms());
        broker.sync_transaction_coordinator(&broker.image(), &[]);
        Ok(broker)
    }

    /// Applies a committed delta (Kafka `BrokerMetadataPublisher.onMetadataUpdate`), in
    /// Kafka's order: dynamic broker configs (resource "" and this node) into the effective
    /// configuration; `ReplicaManager::apply_delta` (logs of new local partitions opened,
    /// leader epochs and roles set, logs of deleted or moved partitions deleted, topic
    /// configs applied); coordinators (committed offsets of deleted topics dropped, internal
    /// topics appearing); then the image is swapped and waiters wake.
    pub fn publish_metadata(
        &self,
        delta: &MetadataDelta,
        image: &Arc<MetadataImage>,
    ) -> Result<(), BrokerError> {
        let _publishing = self.publish_lock.lock();
        if *self.shutdown.borrow() {
            // Logs are being closed: no disk work any more, only the image moves on.
            self.metadata.publish(image.clone());
            return Ok(());
        }
        // A delta from another base than our image (images were published before this
        // broker subscribed): reconcile with the whole image instead.
        let reconcile = delta.base().offset != self.metadata.image().offset;
        let node = config_node(&self.static_config);
        let broker_configs_changed = delta.changed_configs().keys().any(|resource| {
            *resource == ConfigResource::broker("")
                || *resource == ConfigResource::broker(node.clone())
        });
        if broker_configs_changed || reconcile {
            let config = dynamic_config::effective_at_start(
                self.static_config.clone(),
                dynamic_configs_of(image, node),
            );
            self.replica_manager.set_config(config);
        }
        let applied = if reconcile {
            self.replica_manager.reconcile(image)?
        } else {
            self.replica_manager.apply_delta(delta, image)?
        };
        self.replication.on_applied(&applied);
        let now_ms = time::now_ms();
        for topic in &applied.deleted_topics {
            // Kafka's onPartitionsDeleted: committed offsets of the topic go too.
            self.group_coordinator.on_topic_deleted(topic, now_ms);
        }
        // Coordinators follow the leadership of their internal topic's partitions.
        let elected = |name: &str| -> Vec<i32> {
            applied
                .new_leaders
                .iter()
                .filter(|(topic, ..)| topic == name)
                .map(|(_, partition, _)| *partition)
                .collect()
        };
        self.sync_group_coordinator(
            image,
            &elected(replica_manager::GROUP_METADATA_TOPIC_NAME),
            now_ms,
        );
        self.sync_transaction_coordinator(
            image,
            &elected(replica_manager::TRANSACTION_STATE_TOPIC_NAME),
        );
        if applied.logs_opened + applied.logs_deleted > 0 {
            tracing::debug!(
                opened = applied.logs_opened,
                deleted = applied.logs_deleted,
                offset = image.offset,
                "applied metadata delta"
            );
        }
        self.quotas.update(&image.client_quotas);
        self.metadata.publish(image.clone());
        Ok(())
    }

    /// The partitions of internal topic `topic` this node leads in `image`; `None` before the
    /// topic exists (the coordinator's shards then stay as they are: nothing to coordinate).
    fn led_partitions(
        &self,
        image: &MetadataImage,
        topic: &str,
    ) -> Option<std::collections::BTreeSet<i32>> {
        let node_id = self.config().node_id;
        image.topic_by_name(topic).map(|topic| {
            topic
                .partitions
                .iter()
                .filter(|(_, p)| p.leader == node_id)
                .map(|(index, _)| *index)
                .collect()
        })
    }

    /// Makes the group coordinator own exactly the `__consumer_offsets` partitions this node
    /// leads in `image`, reloading those in `elected`.
    fn sync_group_coordinator(&self, image: &MetadataImage, elected: &[i32], now_ms: i64) {
        if let Some(led) = self.led_partitions(image, replica_manager::GROUP_METADATA_TOPIC_NAME) {
            self.group_coordinator.sync_leadership(
                &|partition| led.contains(&partition),
                elected,
                now_ms,
            );
        }
    }

    /// As [`Self::sync_group_coordinator`], for `__transaction_state`.
    fn sync_transaction_coordinator(&self, image: &MetadataImage, elected: &[i32]) {
        if let Some(led) = self.led_partitions(image, replica_manager::TRANSACTION_STATE_TOPIC_NAME)
        {
            self.transaction_coordinator
                .sync_leadership(&|partition| led.contains(&partition), elected);
        }
    }

    /// The metadata image this broker serves from.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.metadata.image()
    }

    /// Waits (at most `timeout_ms`) until the published image satisfies `predicate`; false on
    /// timeout.
    pub async fn wait_for_metadata(
        &self,
        predicate: impl Fn(&MetadataImage) -> bool,
        timeout_ms: u64,
    ) -> bool {
        self.metadata.wait_for(predicate, timeout_ms).await
    }

    /// The channel to the active controller.
    pub fn controller(&self) -> &Arc<dyn ControllerChannel> {
        &self.controller
    }

    /// Installs how DescribeQuorum learns the metadata quorum's state: the server passes its
    /// node's [`metadata_runtime::MetadataRuntime::quorum_describer`]. Without one, or while
    /// this node is not the Raft leader, DescribeQuorum is forwarded to the leader through the
    /// controller channel.
    pub fn set_quorum_describer(&self, describer: apis::describe_quorum::QuorumDescriber) {
        *self.quorum_describer.write() = Some(describer);
    }

    /// The quorum as this node's Raft leader describes it; `None` when this node is not the
    /// leader or no describer is installed.
    pub fn quorum_snapshot(&self) -> Option<apis::describe_quorum::QuorumSnapshot> {
        let describer = self.quorum_describer.read().clone()?;
        describer()
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

    /// The cluster id: the image's, else `meta.properties`' (before the bootstrap entry is
    /// applied).
    pub fn cluster_id(&self) -> String {
        self.metadata
            .image()
            .cluster_id
            .clone()
            .unwrap_or_else(|| self.meta_cluster_id.clone())
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

    /// The replication shell: follower fetchers, delayed produces, ISR changes.
    pub fn replication(&self) -> &Arc<replication_shell::ReplicationShell> {
        &self.replication
    }

    /// Gives the broker its channel to the other nodes (follower fetches go through it) and
    /// starts the replication tasks on the current tokio runtime: a fetcher per leader
    /// broker, AlterPartition, ISR shrink and high watermark checkpoint timers. The caller
    /// keeps the channel's endpoints current from the image (each broker's PLAINTEXT
    /// listener). Call it inside a tokio runtime that outlives the broker's work.
    pub fn set_node_channel(&self, channel: Arc<dyn node_channel::NodeChannel>) {
        self.replication.set_node_channel(channel);
        self.replication.start();
    }

    /// Replaces the transaction coordinator's marker writer.
    /// The marker writer for this node's own partitions (see the field).
    pub fn local_marker_writer(&self) -> Arc<dyn TxnMarkerWriter> {
        self.local_marker_writer.clone()
    }

    /// The group coordinator behind an `Arc`, for writers that outlive a request.
    pub fn group_coordinator_arc(&self) -> Arc<GroupCoordinator> {
        self.group_coordinator.clone()
    }

    /// The replica manager behind an `Arc`.
    pub fn replica_manager_arc(&self) -> Arc<ReplicaManager> {
        self.replica_manager.clone()
    }

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

    /// Handles one decoded request from `peer` (shown as the client host of group members) as
    /// an unauthenticated PLAINTEXT client.
    pub async fn handle_from(
        &self,
        peer: Option<IpAddr>,
        header: &RequestHeader,
        request: RequestKind,
    ) -> Outcome {
        self.handle_session(&security::Session::plaintext(peer), header, request)
            .await
    }

    /// Handles one decoded request sent on a connection with `session` (its principal,
    /// client address and listener). Client quotas are recorded around the handler (see
    /// [`quota`]): a throttled response carries `throttle_time_ms` and the session is asked
    /// to mute the connection for as long.
    pub async fn handle_session(
        &self,
        session: &security::Session,
        header: &RequestHeader,
        request: RequestKind,
    ) -> Outcome {
        if self.quotas.any_enabled() {
            self.handle_with_quotas(session, header, request).await
        } else {
            self.authorize_and_dispatch(session, header, request).await
        }
    }

    /// Authorization, then the API handler: one request, its answer (quotas aside).
    async fn authorize_and_dispatch(
        &self,
        session: &security::Session,
        header: &RequestHeader,
        request: RequestKind,
    ) -> Outcome {
        let version = header.request_api_version;
        // Authorization first: a refused request changes nothing (not even the internal
        // topics below).
        let auth = self.request_authorizer(session, header);
        let acks = match &request {
            RequestKind::Produce(r) => r.acks,
            _ => -1,
        };
        // The image and config are only needed to check ACLs.
        let gate = if auth.is_enforced() {
            security::enforcement::gate(&auth, &self.image(), &self.config(), version, request)
        } else {
            security::enforcement::operations_only(&auth, request)
        };
        let (request, patches, denied) = match gate {
            security::enforcement::Gate::Respond(response) => {
                if acks == 0 {
                    return Outcome::CloseConnection("a produce request with acks=0 was refused");
                }
                return Outcome::Respond(response);
            }
            security::enforcement::Gate::Proceed {
                request,
                patches,
                denied,
            } => (request, patches, denied),
        };
        let outcome = self.dispatch(session, header, request).await;
        if patches.is_empty() {
            return outcome;
        }
        match outcome {
            Outcome::Respond(mut response) => {
                security::enforcement::apply(patches, &mut response);
                Outcome::Respond(response)
            }
            Outcome::RespondWithFileRecords(mut response, file_records) => {
                security::enforcement::apply(patches, &mut response);
                let file_records = renumber_file_records(&mut response, file_records);
                Outcome::RespondWithFileRecords(response, file_records)
            }
            Outcome::NoResponse if denied => {
                Outcome::CloseConnection("a produce request with acks=0 was refused in part")
            }
            other => other,
        }
    }

    /// The caller's authorizer view for one request: the image's ACLs (or the test override).
    fn request_authorizer(
        &self,
        session: &security::Session,
        header: &RequestHeader,
    ) -> security::enforcement::RequestAuthorizer {
        // Without an authorizer no ACL is read (the common, unsecured case costs nothing).
        let acls = self.authorizer.as_ref().map(|_| {
            self.acl_override
                .read()
                .clone()
                .unwrap_or_else(|| self.image().acls.clone())
        });
        security::enforcement::RequestAuthorizer::new(
            self.authorizer.as_ref().zip(acls.as_ref()),
            session,
            ApiKey::try_from(header.request_api_key).unwrap_or(ApiKey::ApiVersions),
            self.authorization_metrics.clone(),
        )
    }

    /// Failed authorizations, by resource type.
    pub fn authorization_metrics(&self) -> &security::enforcement::AuthorizationMetrics {
        &self.authorization_metrics
    }

    /// Test only: check requests against `acls` instead of the image's (the metadata records
    /// that carry ACLs are written by the controller; tests of enforcement need none).
    #[doc(hidden)]
    pub fn override_acls_for_test(&self, acls: Option<security::authorizer::AclMap>) {
        *self.acl_override.write() = acls.map(Arc::new);
    }

    /// Runs the handler of an authorized request.
    async fn dispatch(
        &self,
        session: &security::Session,
        header: &RequestHeader,
        request: RequestKind,
    ) -> Outcome {
        let version = header.request_api_version;
        // Requests that write to a coordinator's internal topic need it: created through the
        // controller on first use (clients normally ask FindCoordinator first, which does the
        // same; a lookup when the topic exists).
        if let Some(internal) = internal_topic_needed(&request) {
            if self.replica_manager.topic(internal).is_none() {
                self.internal_topic_or_create(internal).await;
            }
        }
        let ctx = || RequestContext {
            api_version: version,
            client_id: header
                .client_id
                .as_ref()
                .map(|c| c.to_string())
                .unwrap_or_default(),
            client_host: session.client_host(),
        };
        let response = match request {
            RequestKind::ApiVersions(r) => {
                ResponseKind::ApiVersions(apis::api_versions::handle(version, &r))
            }
            RequestKind::Metadata(r) => ResponseKind::Metadata(
                apis::metadata::handle(self, &session.listener_name, version, &r).await,
            ),
            RequestKind::Produce(r) => {
                let acks = r.acks;
                let response =
                    apis::produce::handle(self, &session.listener_name, version, r).await;
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
                let (response, file_records) =
                    apis::fetch::handle(self, &session.listener_name, version, r).await;
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
                ResponseKind::CreateTopics(apis::create_topics::handle(self, version, &r).await)
            }
            RequestKind::DeleteTopics(r) => {
                ResponseKind::DeleteTopics(apis::delete_topics::handle(self, version, &r).await)
            }
            RequestKind::DescribeCluster(r) => ResponseKind::DescribeCluster(
                apis::describe_cluster::handle(self, &session.listener_name, &r),
            ),
            RequestKind::FindCoordinator(r) => ResponseKind::FindCoordinator(
                apis::find_coordinator::handle(self, &session.listener_name, version, &r).await,
            ),
            RequestKind::JoinGroup(r) => {
                ResponseKind::JoinGroup(apis::join_group::handle(self, &ctx(), &r).await)
            }
            RequestKind::SyncGroup(r) => {
                ResponseKind::SyncGroup(apis::sync_group::handle(self, version, &r).await)
            }
            RequestKind::Heartbeat(r) => {
                ResponseKind::Heartbeat(apis::heartbeat::handle(self, &r).await)
            }
            RequestKind::DescribeConfigs(r) => {
                ResponseKind::DescribeConfigs(apis::describe_configs::handle(self, &r))
            }
            RequestKind::AlterConfigs(r) => {
                ResponseKind::AlterConfigs(apis::alter_configs::handle(self, &r).await)
            }
            RequestKind::IncrementalAlterConfigs(r) => ResponseKind::IncrementalAlterConfigs(
                apis::incremental_alter_configs::handle(self, &r).await,
            ),
            RequestKind::DescribeLogDirs(r) => {
                ResponseKind::DescribeLogDirs(apis::describe_log_dirs::handle(self, &r))
            }
            RequestKind::DescribeProducers(r) => {
                ResponseKind::DescribeProducers(apis::describe_producers::handle(self, &r))
            }
            RequestKind::CreatePartitions(r) => {
                ResponseKind::CreatePartitions(apis::create_partitions::handle(self, &r).await)
            }
            RequestKind::DeleteRecords(r) => {
                ResponseKind::DeleteRecords(apis::delete_records::handle(self, &r))
            }
            RequestKind::ConsumerGroupHeartbeat(r) => ResponseKind::ConsumerGroupHeartbeat(
                apis::consumer_group_heartbeat::handle(self, &ctx(), &r).await,
            ),
            RequestKind::ConsumerGroupDescribe(r) => {
                ResponseKind::ConsumerGroupDescribe(apis::consumer_group_describe::handle(self, &r))
            }
            RequestKind::LeaveGroup(r) => {
                ResponseKind::LeaveGroup(apis::leave_group::handle(self, version, r).await)
            }
            RequestKind::OffsetCommit(r) => {
                ResponseKind::OffsetCommit(apis::offset_commit::handle(self, version, &r).await)
            }
            RequestKind::OffsetFetch(r) => {
                ResponseKind::OffsetFetch(apis::offset_fetch::handle(self, version, &r))
            }
            RequestKind::TxnOffsetCommit(r) => ResponseKind::TxnOffsetCommit(
                apis::txn_offset_commit::handle(self, version, &r).await,
            ),
            RequestKind::OffsetDelete(r) => {
                ResponseKind::OffsetDelete(apis::offset_delete::handle(self, &r).await)
            }
            RequestKind::DescribeGroups(r) => {
                ResponseKind::DescribeGroups(apis::describe_groups::handle(self, version, &r))
            }
            RequestKind::ListGroups(r) => {
                ResponseKind::ListGroups(apis::list_groups::handle(self, version, &r))
            }
            RequestKind::DeleteGroups(r) => {
                ResponseKind::DeleteGroups(apis::delete_groups::handle(self, &r).await)
            }
            RequestKind::InitProducerId(r) => ResponseKind::InitProducerId(
                apis::init_producer_id::handle(self, version, &r).await,
            ),
            RequestKind::AddPartitionsToTxn(r) => ResponseKind::AddPartitionsToTxn(
                apis::add_partitions_to_txn::handle(self, version, &r).await,
            ),
            RequestKind::AddOffsetsToTxn(r) => ResponseKind::AddOffsetsToTxn(
                apis::add_offsets_to_txn::handle(self, version, &r).await,
            ),
            RequestKind::EndTxn(r) => {
                ResponseKind::EndTxn(apis::end_txn::handle(self, version, &r).await)
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
            RequestKind::ElectLeaders(r) => {
                ResponseKind::ElectLeaders(apis::elect_leaders::handle(self, version, &r).await)
            }
            RequestKind::AlterPartitionReassignments(r) => {
                ResponseKind::AlterPartitionReassignments(
                    apis::alter_partition_reassignments::handle(self, &r).await,
                )
            }
            RequestKind::ListPartitionReassignments(r) => ResponseKind::ListPartitionReassignments(
                apis::list_partition_reassignments::handle(self, &r).await,
            ),
            RequestKind::UnregisterBroker(r) => {
                ResponseKind::UnregisterBroker(apis::unregister_broker::handle(self, &r).await)
            }
            RequestKind::DescribeQuorum(r) => {
                ResponseKind::DescribeQuorum(apis::describe_quorum::handle(self, version, &r).await)
            }
            RequestKind::DescribeAcls(r) => {
                ResponseKind::DescribeAcls(apis::describe_acls::handle(self, &r))
            }
            RequestKind::CreateAcls(r) => {
                ResponseKind::CreateAcls(apis::create_acls::handle(self, &r).await)
            }
            RequestKind::DeleteAcls(r) => {
                ResponseKind::DeleteAcls(apis::delete_acls::handle(self, &r).await)
            }
            RequestKind::DescribeUserScramCredentials(r) => {
                ResponseKind::DescribeUserScramCredentials(
                    apis::describe_user_scram_credentials::handle(self, &r),
                )
            }
            RequestKind::AlterUserScramCredentials(r) => ResponseKind::AlterUserScramCredentials(
                apis::alter_user_scram_credentials::handle(self, &r).await,
            ),
            RequestKind::DescribeClientQuotas(r) => {
                ResponseKind::DescribeClientQuotas(apis::describe_client_quotas::handle(self, &r))
            }
            RequestKind::AlterClientQuotas(r) => {
                ResponseKind::AlterClientQuotas(apis::alter_client_quotas::handle(self, &r).await)
            }
            // Reached only on listeners without SASL or after authentication: the connection's
            // SaslServerAuthenticator answers these while authenticating.
            RequestKind::SaslHandshake(_) => {
                ResponseKind::SaslHandshake(apis::sasl_handshake::handle())
            }
            RequestKind::SaslAuthenticate(_) => {
                ResponseKind::SaslAuthenticate(apis::sasl_authenticate::handle())
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

/// Keeps the file ranges whose placeholders are still in the Fetch `response` (a patch may
/// have replaced a partition's records with an error) and numbers the placeholders again in
/// response order, as the splice expects them.
fn renumber_file_records(
    response: &mut ResponseKind,
    file_records: Vec<FileRecords>,
) -> Vec<FileRecords> {
    let ResponseKind::Fetch(fetch) = response else {
        return file_records;
    };
    let mut slots: Vec<Option<FileRecords>> = file_records.into_iter().map(Some).collect();
    let mut kept = Vec::with_capacity(slots.len());
    for partition in fetch.responses.iter_mut().flat_map(|t| &mut t.partitions) {
        let index = partition
            .records
            .as_deref()
            .and_then(fjord_protocol::splice::placeholder_index);
        if let Some(records) = index.and_then(|i| slots.get_mut(i)).and_then(Option::take) {
            partition.records = Some(fjord_protocol::splice::placeholder(kept.len()));
            kept.push(records);
        }
    }
    kept
}

/// The internal topic a request writes to (so it must exist), if any.
fn internal_topic_needed(request: &RequestKind) -> Option<&'static str> {
    match request {
        RequestKind::JoinGroup(_)
        | RequestKind::SyncGroup(_)
        | RequestKind::OffsetCommit(_)
        | RequestKind::TxnOffsetCommit(_)
        | RequestKind::ConsumerGroupHeartbeat(_)
        | RequestKind::AddOffsetsToTxn(_) => Some(replica_manager::GROUP_METADATA_TOPIC_NAME),
        RequestKind::InitProducerId(r) if r.transactional_id.is_some() => {
            Some(replica_manager::TRANSACTION_STATE_TOPIC_NAME)
        }
        RequestKind::AddPartitionsToTxn(_) | RequestKind::EndTxn(_) => {
            Some(replica_manager::TRANSACTION_STATE_TOPIC_NAME)
        }
        _ => None,
    }
}

/// This node's id as a BROKER config resource name.
fn config_node(config: &BrokerConfig) -> String {
    config.node_id.to_string()
}

/// The dynamic broker configs `image` holds for the cluster default ("") and `node`.
fn dynamic_configs_of(image: &MetadataImage, node: String) -> fjord_storage::DynamicBrokerConfigs {
    fjord_storage::DynamicBrokerConfigs {
        cluster_default: image
            .config(&ConfigResource::broker(""))
            .cloned()
            .unwrap_or_default(),
        broker: image
            .config(&ConfigResource::broker(node))
            .cloned()
            .unwrap_or_default(),
    }
}

/// Reads `meta.properties`, or writes it on first start with the image's cluster id (a new
/// random one if the image has none yet). A data directory that belongs to another node id,
/// or to another cluster than the image's, is refused, as Kafka does.
/// Returns the cluster id and whether the directory was formatted just now.
fn ensure_meta_properties(
    log_manager: &LogManager,
    node_id: i32,
    image_cluster_id: Option<&str>,
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
        if let Some(image_cluster_id) = image_cluster_id.filter(|id| *id != meta.cluster_id) {
            return Err(BrokerError::InvalidConfig {
                key: "cluster.id".to_string(),
                value: image_cluster_id.to_string(),
                reason: format!(
                    "the data directory belongs to cluster {} (see meta.properties)",
                    meta.cluster_id
                ),
            });
        }
        return Ok((meta.cluster_id, false));
    }
    let cluster_id = image_cluster_id
        .map(str::to_string)
        .unwrap_or_else(new_cluster_id);
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
