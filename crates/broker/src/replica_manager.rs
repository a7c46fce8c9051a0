//! The topics and partitions this broker knows and the logs it hosts (Kafka: `ReplicaManager`
//! plus the topic part of `KRaftMetadataCache`), derived from the metadata image.
//!
//! The topic table mirrors the image: every topic with its id, partition count and configs,
//! every partition with its published leader, epochs, replicas and ISR. Logs exist only for
//! partitions whose replicas include this node. Nothing here decides metadata: topics are
//! created, deleted, grown and reconfigured by the controller, and
//! [`ReplicaManager::apply_delta`] (Kafka `ReplicaManager.applyDelta`, called by
//! `Broker::publish_metadata` for every committed delta, in order) opens, deletes and updates
//! the local logs to match.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use fjord_metadata::{ConfigResource, MetadataDelta, MetadataImage, TopicImage};
use fjord_protocol::ResponseError;
use fjord_storage::{LogAppendInfo, LogManager, StorageError};
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;
use tracing::{info, warn};
use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::error::BrokerError;
use crate::partition::{BrokerDirectory, Partition, PartitionError, PartitionState, RoleChange};
use crate::replication::ReplicationConfig;
use crate::replication_shell::ReplicationShell;
use crate::time::now_ms;

/// The group coordinator's internal topic (Kafka's `GROUP_METADATA_TOPIC_NAME`).
pub const GROUP_METADATA_TOPIC_NAME: &str = "__consumer_offsets";
/// Kafka's `offsets.topic.segment.bytes` default: small segments, so compaction (a later issue)
/// can clean them early.
pub const OFFSETS_TOPIC_SEGMENT_BYTES: &str = "104857600";

/// The transaction coordinator's internal topic (Kafka's `TRANSACTION_STATE_TOPIC_NAME`).
pub const TRANSACTION_STATE_TOPIC_NAME: &str = "__transaction_state";

/// Topics the broker manages itself (Kafka's `Topic.isInternal`).
pub fn is_internal_topic(name: &str) -> bool {
    name == GROUP_METADATA_TOPIC_NAME || name == TRANSACTION_STATE_TOPIC_NAME
}

/// Kafka's limit on topic name length.
pub const TOPIC_NAME_LENGTH_MAX: usize = 249;
/// Upper bound on partitions across all topics this broker accepts in one CreateTopics or
/// CreatePartitions: a request cannot make the cluster open millions of files.
pub const PARTITIONS_TOTAL_MAX: usize = 100_000;

pub struct Topic {
    pub name: Arc<str>,
    pub id: Uuid,
    /// Every partition of the topic, index = partition id; the ones not hosted here have no
    /// log ([`Partition::is_hosted`]).
    pub partitions: Vec<Arc<Partition>>,
    pub configs: BTreeMap<String, String>,
}

#[derive(Default)]
struct TopicTable {
    by_name: HashMap<Arc<str>, Arc<Topic>>,
    by_id: HashMap<Uuid, Arc<Topic>>,
    partitions_total: usize,
}

/// Why a coordinator's append to its internal topic failed.
#[derive(Debug)]
pub enum CoordinatorAppendError {
    /// Larger than the coordinator's batch limit or the partition's segment size.
    TooLarge {
        size_bytes: usize,
        limit_bytes: usize,
    },
    /// The partition does not exist or is being deleted (Kafka: UNKNOWN_TOPIC_OR_PARTITION),
    /// or its ISR is below `min.insync.replicas` (NOT_ENOUGH_REPLICAS): the coordinator is
    /// not available for now.
    Unavailable(String),
    /// This broker does not lead the partition (any more): NOT_LEADER_OR_FOLLOWER, which the
    /// coordinators answer as NOT_COORDINATOR.
    NotLeader(String),
    Storage(StorageError),
}

/// What a coordinator awaits before it answers: the commit (high watermark, with enough
/// in-sync replicas) of its records. `Err` carries the produce error
/// ([`ReplicationShell::wait_committed`]); map it with [`coordinator_commit_error`].
pub type CommitFuture = Pin<Box<dyn Future<Output = Result<(), ResponseError>> + Send>>;

/// How long a coordinator write may wait for its commit (Kafka's `offsets.commit.timeout.ms`
/// default, which Kafka's group coordinator runtime uses as the write timeout of every
/// operation; the transaction coordinator uses `request.timeout.ms`, also in this range).
pub const COORDINATOR_WRITE_TIMEOUT_MS: i64 = 5_000;

/// A commit that needs no wait (an in-memory log, nothing written).
pub fn committed_now() -> CommitFuture {
    Box::pin(std::future::ready(Ok(())))
}

/// Kafka's mapping of a failed coordinator write to the coordinator's answer (the group
/// coordinator runtime's `normalizeException`, `appendGroupMetadataErrorToResponseError` and
/// `TransactionStateManager.appendTransactionToLog`): the partition missing, too few in-sync
/// replicas or a timeout make the coordinator unavailable for now (the client retries);
/// leadership lost means another broker coordinates (the client looks it up again).
pub fn coordinator_commit_error(error: ResponseError) -> ResponseError {
    match error {
        ResponseError::NotLeaderOrFollower
        | ResponseError::KafkaStorageError
        | ResponseError::NotCoordinator => ResponseError::NotCoordinator,
        ResponseError::UnknownTopicOrPartition
        | ResponseError::NotEnoughReplicas
        | ResponseError::NotEnoughReplicasAfterAppend
        | ResponseError::RequestTimedOut
        | ResponseError::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
        other => other,
    }
}

/// The acks=all wait of a coordinator's writes to partition `partition` of internal topic
/// `topic`: until its high watermark reaches `required_offset` (`None`: the log end offset
/// now, so everything the coordinator has written so far, as Kafka's coordinator runtime
/// waits for its last written offset) with enough in-sync replicas, the leadership moves, or
/// [`COORDINATOR_WRITE_TIMEOUT_MS`] passes. A partition that does not exist has nothing to
/// wait for; one not hosted here answers NOT_LEADER_OR_FOLLOWER; one whose high watermark is
/// there already answers at once.
pub fn wait_for_coordinator_commit(
    replica_manager: &ReplicaManager,
    replication: &Arc<ReplicationShell>,
    topic: &str,
    partition: i32,
    required_offset: Option<i64>,
) -> CommitFuture {
    let Some(target) = replica_manager.partition(topic, partition) else {
        return committed_now();
    };
    let Ok(offsets) = target.offsets() else {
        return Box::pin(std::future::ready(Err(ResponseError::NotLeaderOrFollower)));
    };
    let required_offset = required_offset.unwrap_or(offsets.log_end_offset);
    if offsets.high_watermark >= required_offset {
        // Committed already (nothing new since the last wait): an operation that wrote
        // nothing answers even while the ISR is below min ISR, as Kafka's coordinator runtime
        // answers a read-only write operation. Appends were checked against min ISR.
        return committed_now();
    }
    let replication = replication.clone();
    Box::pin(async move {
        replication
            .wait_committed(&target, required_offset, COORDINATOR_WRITE_TIMEOUT_MS)
            .await
    })
}

/// What [`ReplicaManager::apply_delta`] did that others must react to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AppliedDelta {
    /// Names of the topics that were deleted (committed offsets of them go too).
    pub deleted_topics: Vec<String>,
    /// Partitions this node leads from now on (new or re-elected): (topic, partition, epoch).
    pub new_leaders: Vec<(String, i32, i32)>,
    /// Logs opened and deleted.
    pub logs_opened: usize,
    pub logs_deleted: usize,
    /// Hosted partitions whose replication role changed: (topic id, partition, change).
    pub role_changes: Vec<(Uuid, i32, RoleChange)>,
    /// Partitions no longer hosted here (deleted or moved away): stop fetching them and fail
    /// their parked produces.
    pub removed: Vec<(Uuid, i32)>,
}

pub struct ReplicaManager {
    /// The effective configuration (static settings plus dynamic broker configs), swapped as a
    /// whole when a dynamic config changes (see `set_config`).
    config: RwLock<Arc<BrokerConfig>>,
    log_manager: LogManager,
    topics: RwLock<TopicTable>,
    /// Serialises delta application and config changes (disk work) without blocking readers
    /// of the table.
    admin_lock: Mutex<()>,
    /// Woken on every append, so long-polling fetches re-check their partitions.
    pub data_arrived: Notify,
    had_clean_shutdown: bool,
    /// The brokers of the last applied image (ISR eligibility), shared with every partition.
    brokers: Arc<BrokerDirectory>,
    /// High watermarks from `replication-offset-checkpoint`, for the logs opened at start.
    checkpointed_high_watermarks: Mutex<BTreeMap<(String, i32), i64>>,
    /// Set by `shutdown` (under the admin lock): the table is empty from then on, and no
    /// directory may be taken for a stray.
    shut_down: std::sync::atomic::AtomicBool,
}

/// Kafka's `Topic.validate`: 1 to 249 characters from `[a-zA-Z0-9._-]`, and not "." or "..".
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("Topic name is illegal, it can't be empty".to_string());
    }
    if name == "." || name == ".." {
        return Err("Topic name cannot be \".\" or \"..\"".to_string());
    }
    if name.len() > TOPIC_NAME_LENGTH_MAX {
        return Err(format!(
            "Topic name is illegal, it can't be longer than {TOPIC_NAME_LENGTH_MAX} characters, topic name: {name}"
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err(format!(
            "Topic name {name} is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        ));
    }
    Ok(())
}

impl ReplicaManager {
    /// Builds the topic table from `image` and opens (recovering, where the last shutdown was
    /// not clean) the log of every partition the image assigns to `config.node_id`. Partition
    /// directories the image does not assign here are left alone with a warning until
    /// [`ReplicaManager::rename_stray_partition_dirs`].
    pub fn open(
        config: BrokerConfig,
        log_manager: LogManager,
        had_clean_shutdown: bool,
        image: &MetadataImage,
    ) -> Result<Self, BrokerError> {
        let manager = Self {
            config: RwLock::new(Arc::new(config)),
            log_manager,
            topics: RwLock::new(TopicTable::default()),
            admin_lock: Mutex::new(()),
            data_arrived: Notify::new(),
            had_clean_shutdown,
            brokers: Arc::new(BrokerDirectory::default()),
            checkpointed_high_watermarks: Mutex::new(BTreeMap::new()),
            shut_down: std::sync::atomic::AtomicBool::new(false),
        };
        manager.brokers.update(image);
        *manager.checkpointed_high_watermarks.lock() =
            fjord_storage::read_replication_offset_checkpoint(manager.log_manager.data_dir())?;
        let mut table = TopicTable::default();
        for topic in image.topics.values() {
            let built = manager.build_topic(topic, image, None, &mut AppliedDelta::default())?;
            table.insert(built);
        }
        let hosted = table
            .by_name
            .values()
            .flat_map(|t| t.partitions.iter())
            .filter(|p| p.is_hosted())
            .count();
        for (topic, partition) in manager.log_manager.partition_dirs()? {
            if !table.hosts(&topic, partition) {
                warn!(topic, partition, "partition directory not assigned to this node by the metadata image at start; renamed -stray if still unassigned once this broker caught up");
            }
        }
        info!(
            topics = table.by_name.len(),
            partitions = table.partitions_total,
            hosted,
            "loaded topics from the metadata image"
        );
        *manager.topics.write() = table;
        // Logs opened later are new (or come back from another broker): no checkpoint.
        manager.checkpointed_high_watermarks.lock().clear();
        Ok(manager)
    }

    /// The current effective configuration. Cheap (a read lock and a reference count); take
    /// it once per request rather than per partition.
    pub fn config(&self) -> Arc<BrokerConfig> {
        self.config.read().clone()
    }

    pub fn log_manager(&self) -> &LogManager {
        &self.log_manager
    }

    /// The topic `topic_image` describes, reusing the partitions of `existing` (the same topic
    /// before the delta): a hosted partition that stays hosted keeps its log and takes the new
    /// state; a partition newly assigned here gets its log opened; one no longer assigned here
    /// loses its log (deleted).
    fn build_topic(
        &self,
        topic_image: &TopicImage,
        image: &MetadataImage,
        existing: Option<&Topic>,
        applied: &mut AppliedDelta,
    ) -> Result<Arc<Topic>, BrokerError> {
        let config = self.config();
        let node_id = config.node_id;
        let name: Arc<str> = Arc::from(topic_image.name.as_str());
        let configs = image
            .config(&ConfigResource::topic(topic_image.name.clone()))
            .cloned()
            .unwrap_or_default();
        let count = topic_image
            .partitions
            .keys()
            .next_back()
            .map_or(0, |last| last.saturating_add(1).max(0));
        let mut partitions = Vec::with_capacity(count as usize);
        for index in 0..count {
            let state = match topic_image.partitions.get(&index) {
                Some(registration) => PartitionState::from_registration(registration),
                // The controller creates partitions 0..n; a gap is led by nobody.
                None => PartitionState {
                    leader: -1,
                    leader_epoch: 0,
                    partition_epoch: 0,
                    replicas: Vec::new(),
                    isr: Vec::new(),
                },
            };
            let assigned = state.replicas.contains(&node_id);
            let previous = existing
                .and_then(|t| t.partitions.get(index as usize))
                .cloned();
            let partition = match previous {
                Some(previous) if previous.is_hosted() == assigned => {
                    let old = previous.state();
                    if old != state {
                        if state.leader == node_id
                            && (old.leader != node_id || old.leader_epoch != state.leader_epoch)
                        {
                            applied
                                .new_leaders
                                .push((name.to_string(), index, state.leader_epoch));
                        }
                        if assigned {
                            let replication = replication_config(&configs, &config);
                            match previous.apply_state(
                                state,
                                replication,
                                crate::time::monotonic_ms(),
                            ) {
                                Ok(RoleChange::Unchanged) => {}
                                Ok(change) => {
                                    applied.role_changes.push((topic_image.id, index, change))
                                }
                                Err(err) => {
                                    warn!(topic = %name, partition = index, error = %err, "could not apply the partition's new state")
                                }
                            }
                        } else {
                            previous.set_state(state);
                        }
                    }
                    previous
                }
                previous => {
                    if let Some(previous) = previous {
                        if let Some(log) = previous.take_log() {
                            // No longer a replica here (reassigned away).
                            self.delete_log(&name, index, log);
                            applied.logs_deleted += 1;
                            applied.removed.push((previous.topic_id, index));
                        }
                    }
                    if assigned {
                        let (mut log, replaced) = self.log_manager.open_log_with_topic_id(
                            &name,
                            index,
                            topic_image.id,
                            crate::topic_config::log_config(&configs, &config),
                            self.had_clean_shutdown,
                            now_ms(),
                        )?;
                        if replaced {
                            warn!(topic = %name, partition = index, "removed the log of a deleted topic of the same name");
                        }
                        // Kafka initialises the high watermark from the checkpoint (missing: the
                        // log start); leading alone moves it to the log end at once.
                        let checkpointed = self
                            .checkpointed_high_watermarks
                            .lock()
                            .get(&(name.to_string(), index))
                            .copied()
                            .unwrap_or(0);
                        log.set_initial_high_watermark(checkpointed);
                        applied.logs_opened += 1;
                        let change = if state.leader == node_id {
                            applied
                                .new_leaders
                                .push((name.to_string(), index, state.leader_epoch));
                            RoleChange::Leader {
                                became: true,
                                high_watermark_moved: false,
                            }
                        } else {
                            RoleChange::Follower {
                                leader: state.leader,
                                leader_epoch: state.leader_epoch,
                                resigned: false,
                            }
                        };
                        applied.role_changes.push((topic_image.id, index, change));
                        let replication = replication_config(&configs, &config);
                        Arc::new(Partition::hosted(
                            name.clone(),
                            topic_image.id,
                            index,
                            log,
                            node_id,
                            state,
                            self.brokers.clone(),
                            replication,
                        ))
                    } else {
                        Arc::new(Partition::remote(
                            name.clone(),
                            topic_image.id,
                            index,
                            node_id,
                            state,
                        ))
                    }
                }
            };
            partitions.push(partition);
        }
        if let Some(existing) = existing {
            // Partitions beyond the new count (never written by the controller today).
            for partition in existing.partitions.iter().skip(partitions.len()) {
                if let Some(log) = partition.take_log() {
                    self.delete_log(&name, partition.index, log);
                    applied.logs_deleted += 1;
                    applied.removed.push((partition.topic_id, partition.index));
                }
            }
            if existing.configs != configs {
                let log_config = crate::topic_config::log_config(&configs, &config);
                let replication = replication_config(&configs, &config);
                for partition in &partitions {
                    partition.set_replication_config(replication);
                    match partition.set_log_config(log_config.clone()) {
                        Ok(()) | Err(PartitionError::Deleted) => {}
                        Err(err) => {
                            warn!(topic = %name, error = %err, "could not apply configs to a partition")
                        }
                    }
                }
            }
        }
        for partition in &partitions {
            partition.set_replication_throttles(crate::topic_config::replication_throttles(
                &configs,
                node_id,
                partition.index,
            ));
        }
        Ok(Arc::new(Topic {
            name,
            id: topic_image.id,
            partitions,
            configs,
        }))
    }

    fn delete_log(&self, topic: &str, partition: i32, log: fjord_storage::Log) {
        if let Err(err) = self.log_manager.delete_log(log) {
            warn!(topic, partition, error = %err, "failed to delete log directory");
        }
    }

    /// Kafka `ReplicaManager.applyDelta`: brings the topic table and the local logs to
    /// `image`, the result of `delta`. Deleted topics lose their table entry, then their logs;
    /// created and changed topics are rebuilt (logs of partitions newly assigned here opened,
    /// with `partition.metadata`; logs of partitions no longer assigned here deleted; leader,
    /// epochs, replicas and ISR updated in place); topics whose configs changed get the new
    /// settings on every log.
    pub fn apply_delta(
        &self,
        delta: &MetadataDelta,
        image: &MetadataImage,
    ) -> Result<AppliedDelta, BrokerError> {
        let touched: Vec<Uuid> = delta.changed_topics().keys().copied().collect();
        let deleted: Vec<Uuid> = delta.deleted_topics().iter().copied().collect();
        let changed_configs: Vec<&ConfigResource> = delta.changed_configs().keys().collect();
        self.apply_changes(&deleted, touched, &changed_configs, image)
    }

    /// Brings the table to `image` without a delta (the broker missed images): every topic
    /// of the image is rebuilt, every topic not in it deleted.
    pub fn reconcile(&self, image: &MetadataImage) -> Result<AppliedDelta, BrokerError> {
        let deleted: Vec<Uuid> = self
            .topics
            .read()
            .by_id
            .keys()
            .filter(|id| image.topic(id).is_none())
            .copied()
            .collect();
        let touched: Vec<Uuid> = image.topics.keys().copied().collect();
        self.apply_changes(&deleted, touched, &[], image)
    }

    fn apply_changes(
        &self,
        deleted: &[Uuid],
        mut touched: Vec<Uuid>,
        changed_configs: &[&ConfigResource],
        image: &MetadataImage,
    ) -> Result<AppliedDelta, BrokerError> {
        let _admin = self.admin_lock.lock();
        self.brokers.update(image);
        let mut applied = AppliedDelta::default();
        for id in deleted {
            let removed = {
                let mut table = self.topics.write();
                let topic = table.by_id.get(id).cloned();
                if let Some(topic) = &topic {
                    table.remove(topic);
                }
                topic
            };
            let Some(topic) = removed else { continue };
            for partition in &topic.partitions {
                if let Some(log) = partition.take_log() {
                    self.delete_log(&topic.name, partition.index, log);
                    applied.logs_deleted += 1;
                    applied.removed.push((topic.id, partition.index));
                }
            }
            info!(topic = %topic.name, "deleted topic");
            applied.deleted_topics.push(topic.name.to_string());
        }
        for resource in changed_configs {
            if resource.resource_type == fjord_metadata::ConfigResourceType::Topic {
                if let Some(id) = image.topic_ids_by_name.get(&resource.name) {
                    touched.push(*id);
                }
            }
        }
        touched.sort();
        touched.dedup();
        for id in touched {
            let Some(topic_image) = image.topic(&id) else {
                continue;
            };
            let existing = self.topic_by_id(&id);
            if existing.is_none() {
                // A deleted topic's name reused by a new one in the same delta: the old one
                // went above; a stale entry of the same name (missed images) goes now.
                if let Some(stale) = self.topic(&topic_image.name) {
                    self.topics.write().remove(&stale);
                    for partition in &stale.partitions {
                        if let Some(log) = partition.take_log() {
                            self.delete_log(&stale.name, partition.index, log);
                            applied.logs_deleted += 1;
                            applied.removed.push((stale.id, partition.index));
                        }
                    }
                }
            }
            let built = self.build_topic(topic_image, image, existing.as_deref(), &mut applied)?;
            let mut table = self.topics.write();
            if let Some(existing) = &existing {
                table.remove(existing);
            }
            if existing.is_none() {
                info!(topic = %built.name, partitions = built.partitions.len(), topic_id = %id, "created topic");
            }
            table.insert(built);
        }
        if applied.logs_deleted > 0 || !applied.deleted_topics.is_empty() {
            // Wake long-polling fetches so they notice the deletion.
            self.data_arrived.notify_waiters();
        }
        Ok(applied)
    }

    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().by_name.get(name).cloned()
    }

    /// A coordinator's internal topic (`__consumer_offsets`, `__transaction_state`) if it
    /// exists, and the partition count its shards must use: the existing topic's, so replayed
    /// records stay with their shard, else `configured`.
    pub fn internal_topic_and_partitions(
        &self,
        name: &str,
        configured: i32,
    ) -> (Option<Arc<Topic>>, i32) {
        let existing = self.topic(name);
        let partitions = match &existing {
            Some(topic) => {
                let count = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
                if count != configured {
                    warn!(topic = name, existing = count, configured,
                        "internal topic exists with a different partition count; using the existing one");
                }
                count
            }
            None => configured,
        };
        (existing, partitions)
    }

    pub fn topic_by_id(&self, id: &Uuid) -> Option<Arc<Topic>> {
        self.topics.read().by_id.get(id).cloned()
    }

    /// The roles of every hosted partition as they are now (for the replication shell at
    /// start): leaders, and followers with their leader and epoch.
    pub fn initial_roles(&self) -> AppliedDelta {
        let mut applied = AppliedDelta::default();
        for topic in self.topics() {
            for partition in topic.partitions.iter().filter(|p| p.is_hosted()) {
                let state = partition.state();
                let change = if partition.has_leader_state() {
                    RoleChange::Leader {
                        became: true,
                        high_watermark_moved: false,
                    }
                } else {
                    RoleChange::Follower {
                        leader: state.leader,
                        leader_epoch: state.leader_epoch,
                        resigned: false,
                    }
                };
                applied
                    .role_changes
                    .push((partition.topic_id, partition.index, change));
            }
        }
        applied
    }

    /// A partition by topic id and index.
    pub fn partition_by_id(&self, topic_id: &Uuid, index: i32) -> Option<Arc<Partition>> {
        let topic = self.topic_by_id(topic_id)?;
        usize::try_from(index)
            .ok()
            .and_then(|i| topic.partitions.get(i).cloned())
    }

    /// The brokers of the last applied image.
    pub fn brokers(&self) -> &Arc<BrokerDirectory> {
        &self.brokers
    }

    /// Every partition this node leads (with a leader state).
    pub fn led_partitions(&self) -> Vec<Arc<Partition>> {
        self.topics()
            .iter()
            .flat_map(|t| t.partitions.iter())
            .filter(|p| p.has_leader_state())
            .cloned()
            .collect()
    }

    /// Writes `replication-offset-checkpoint` with the high watermark of every hosted
    /// partition (Kafka `checkpointHighWatermarks`, every
    /// `replica.high.watermark.checkpoint.interval.ms` and at shutdown).
    pub fn checkpoint_high_watermarks(&self) -> Result<usize, StorageError> {
        let mut offsets = BTreeMap::new();
        for topic in self.topics() {
            for partition in &topic.partitions {
                if let Some(high_watermark) = partition.checkpoint_high_watermark() {
                    offsets.insert((topic.name.to_string(), partition.index), high_watermark);
                }
            }
        }
        fjord_storage::write_replication_offset_checkpoint(self.log_manager.data_dir(), &offsets)?;
        Ok(offsets.len())
    }

    pub fn partition(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        let topic = self.topic(topic)?;
        usize::try_from(index)
            .ok()
            .and_then(|i| topic.partitions.get(i).cloned())
    }

    /// All topics, sorted by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        let mut topics: Vec<_> = self.topics.read().by_name.values().cloned().collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        topics
    }

    /// `__consumer_offsets`, if it exists.
    pub fn offsets_topic(&self) -> Option<Arc<Topic>> {
        self.topic(GROUP_METADATA_TOPIC_NAME)
    }

    /// `__transaction_state`, if it exists.
    pub fn transaction_state_topic(&self) -> Option<Arc<Topic>> {
        self.topic(TRANSACTION_STATE_TOPIC_NAME)
    }

    /// Appends a coordinator's batch (at most `batch_bytes_max` bytes) to partition
    /// `partition` of its internal topic with the Coordinator origin (a transactional batch is
    /// checked against the producer's epoch only), then wakes long-polling readers of it
    /// (followers first of all). This is the leader's local append only: the coordinator
    /// answers once [`wait_for_coordinator_commit`] says the batch is committed.
    pub fn append_coordinator_batch(
        &self,
        topic: &Topic,
        partition: i32,
        batch: &mut [u8],
        batch_bytes_max: usize,
        now_ms: i64,
    ) -> Result<LogAppendInfo, CoordinatorAppendError> {
        if batch.len() > batch_bytes_max {
            return Err(CoordinatorAppendError::TooLarge {
                size_bytes: batch.len(),
                limit_bytes: batch_bytes_max,
            });
        }
        let target = usize::try_from(partition)
            .ok()
            .and_then(|i| topic.partitions.get(i))
            .ok_or_else(|| {
                CoordinatorAppendError::Unavailable(format!("partition {partition} does not exist"))
            })?;
        if !target.is_leader() {
            return Err(CoordinatorAppendError::NotLeader(format!(
                "partition {partition} of {} is not led by this broker",
                topic.name
            )));
        }
        // acks=all, as Kafka's coordinators append: refused while the ISR is below the
        // topic's min.insync.replicas (`transaction.state.log.min.isr` for
        // `__transaction_state`); the caller then waits for the high watermark.
        let appended = target.check_append(true).and_then(|()| {
            target.append_as_leader(batch, now_ms, fjord_storage::AppendOrigin::Coordinator)
        });
        let info = appended.map_err(|err| match err {
            PartitionError::NotLeaderOrFollower => {
                CoordinatorAppendError::NotLeader(err.to_string())
            }
            PartitionError::Deleted | PartitionError::NotEnoughReplicas => {
                CoordinatorAppendError::Unavailable(err.to_string())
            }
            PartitionError::Storage(StorageError::RecordBatchTooLarge {
                size_bytes,
                segment_bytes,
            }) => CoordinatorAppendError::TooLarge {
                size_bytes,
                limit_bytes: usize::try_from(segment_bytes).unwrap_or(usize::MAX),
            },
            PartitionError::Storage(err) => CoordinatorAppendError::Storage(err),
        })?;
        // Readers of the internal topics (tools) long-poll like any consumer.
        self.data_arrived.notify_waiters();
        Ok(info)
    }

    /// Applies retention to every log (Kafka's `LogManager.cleanupLogs`, run every
    /// `log.retention.check.interval.ms`). Returns how many segments were deleted.
    pub fn enforce_retention(&self, now_ms: i64) -> usize {
        let mut deleted = 0;
        for topic in self.topics() {
            for partition in &topic.partitions {
                match partition.delete_retained_segments(now_ms) {
                    Ok(n) => deleted += n,
                    Err(crate::partition::PartitionError::Deleted) => {}
                    Err(err) => {
                        warn!(topic = %topic.name, partition = partition.index, error = %err, "retention failed")
                    }
                }
            }
        }
        deleted
    }

    /// Forgets idempotent producers idle longer than `producer.id.expiration.ms` that have no
    /// open transaction (Kafka's `removeExpiredProducers`, run every
    /// `producer.id.expiration.check.interval.ms`). Returns how many were removed.
    pub fn remove_expired_producers(&self, now_ms: i64) -> usize {
        let expiration_ms = self.config().producer_id_expiration_ms;
        let mut removed = 0;
        for topic in self.topics() {
            for partition in &topic.partitions {
                match partition.remove_expired_producers(now_ms, expiration_ms) {
                    Ok(n) => removed += n,
                    Err(crate::partition::PartitionError::Deleted) => {}
                    Err(err) => {
                        warn!(topic = %topic.name, partition = partition.index, error = %err, "producer expiration failed")
                    }
                }
            }
        }
        removed
    }

    /// Fsyncs segments sealed by a roll since the last run (in the background, as Kafka
    /// schedules the flush on roll) and flushes every log whose oldest unflushed message is
    /// older than its `flush.ms` (Kafka's log flusher). Returns how many logs were flushed.
    pub fn flush_due_logs(&self, now_ms: i64) -> usize {
        let mut flushed = 0;
        for topic in self.topics() {
            for partition in &topic.partitions {
                if let Err(err) = partition.sync_sealed_segments() {
                    if !matches!(err, crate::partition::PartitionError::Deleted) {
                        warn!(topic = %topic.name, partition = partition.index, error = %err, "syncing sealed segments failed");
                    }
                }
                match partition.flush_if_due(now_ms) {
                    Ok(true) => flushed += 1,
                    Ok(false) | Err(crate::partition::PartitionError::Deleted) => {}
                    Err(err) => {
                        warn!(topic = %topic.name, partition = partition.index, error = %err, "scheduled flush failed")
                    }
                }
            }
        }
        flushed
    }

    /// Kafka's stray replicas (KAFKA-14616, `LogManager.isStrayKraftReplica`): every partition
    /// directory that the image does not assign to this node is moved aside by storage as
    /// `{topic}-{partition}.{unique id}-stray`, never opened or served, and kept for an
    /// operator. Call it once, after the first full metadata load: the server does when this
    /// broker is first unfenced, i.e. its image has reached its registration, so it holds every
    /// assignment made before this process started (at open, a local metadata log may still
    /// trail what this node had applied before a crash). Runs under the admin lock, so no
    /// delta is opening a log meanwhile; does nothing after [`ReplicaManager::shutdown`].
    /// Returns the partitions renamed; a failed rename is logged and the others go on.
    pub fn rename_stray_partition_dirs(&self) -> Result<Vec<(String, i32)>, BrokerError> {
        let _admin = self.admin_lock.lock();
        if self.shut_down.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(Vec::new());
        }
        let strays: Vec<(String, i32)> = {
            let table = self.topics.read();
            self.log_manager
                .partition_dirs()?
                .into_iter()
                .filter(|(topic, partition)| !table.hosts(topic, *partition))
                .collect()
        };
        let mut renamed = Vec::with_capacity(strays.len());
        for (topic, partition) in strays {
            match self.log_manager.rename_stray_log_dir(&topic, partition) {
                Ok(to) => {
                    warn!(topic, partition, to = %to.display(), "partition directory not assigned to this node by the metadata: marked stray and renamed");
                    renamed.push((topic, partition));
                }
                Err(err) => {
                    warn!(topic, partition, error = %err, "could not rename a stray partition directory");
                }
            }
        }
        Ok(renamed)
    }

    /// Flushes and closes every log, then marks the shutdown clean so the next start skips
    /// recovery.
    pub fn shutdown(&self) -> Result<(), BrokerError> {
        let _admin = self.admin_lock.lock();
        self.shut_down
            .store(true, std::sync::atomic::Ordering::Release);
        if let Err(err) = self.checkpoint_high_watermarks() {
            warn!(error = %err, "writing the replication offset checkpoint at shutdown failed");
        }
        let table = std::mem::take(&mut *self.topics.write());
        let mut first_error = None;
        for topic in table.by_name.values() {
            for partition in &topic.partitions {
                if let Some(log) = partition.take_log() {
                    if let Err(err) = log.close() {
                        warn!(topic = %topic.name, partition = partition.index, error = %err, "failed to close log");
                        first_error.get_or_insert(err);
                    }
                }
            }
        }
        if let Some(err) = first_error {
            // Leave the marker absent: the next start must run recovery.
            return Err(err.into());
        }
        self.log_manager.write_clean_shutdown_marker()?;
        Ok(())
    }
}

/// The replication settings of a topic: its `min.insync.replicas` (else the broker's) and the
/// broker's `replica.lag.time.max.ms`.
pub fn replication_config(
    configs: &BTreeMap<String, String>,
    broker: &BrokerConfig,
) -> ReplicationConfig {
    ReplicationConfig {
        replica_lag_time_max_ms: broker.replica_lag_time_max_ms,
        min_insync_replicas: crate::topic_config::min_insync_replicas(configs, broker),
    }
}

impl TopicTable {
    /// Whether this node hosts a replica (a log) of `topic`-`partition`.
    fn hosts(&self, topic: &str, partition: i32) -> bool {
        self.by_name
            .get(topic)
            .and_then(|t| {
                usize::try_from(partition)
                    .ok()
                    .and_then(|i| t.partitions.get(i))
            })
            .is_some_and(|p| p.is_hosted())
    }

    fn insert(&mut self, topic: Arc<Topic>) {
        self.partitions_total += topic.partitions.len();
        self.by_id.insert(topic.id, topic.clone());
        self.by_name.insert(topic.name.clone(), topic);
    }

    fn remove(&mut self, topic: &Topic) {
        if self.by_name.remove(&topic.name).is_some() {
            self.partitions_total -= topic.partitions.len();
        }
        self.by_id.remove(&topic.id);
    }
}

/// Dynamic broker configs: swapping the effective configuration and re-applying it to the logs.
impl ReplicaManager {
    /// Takes a new effective configuration (dynamic broker configs changed in the image) and
    /// gives every log its new settings.
    pub fn set_config(&self, new: BrokerConfig) {
        let _admin = self.admin_lock.lock();
        *self.config.write() = Arc::new(new);
        let logs = self.reapply_log_configs();
        info!(logs, "applied dynamic broker configs");
    }

    /// Gives every partition's log the settings its topic has under the current broker
    /// configuration (its own overrides over the broker's `log.*` settings). Returns how many
    /// logs were updated. Callers hold the admin lock.
    fn reapply_log_configs(&self) -> usize {
        let config = self.config();
        let mut updated = 0;
        for topic in self.topics() {
            let log_config = crate::topic_config::log_config(&topic.configs, &config);
            let replication = replication_config(&topic.configs, &config);
            for partition in &topic.partitions {
                partition.set_replication_config(replication);
                match partition.set_log_config(log_config.clone()) {
                    Ok(()) => updated += 1,
                    Err(crate::partition::PartitionError::Deleted) => {}
                    Err(err) => {
                        warn!(topic = %topic.name, partition = partition.index, error = %err, "could not apply broker configs to a partition")
                    }
                }
            }
        }
        updated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_EU-2").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name(".").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("a b").is_err());
        assert!(validate_topic_name("ü").is_err());
        assert!(validate_topic_name(&"x".repeat(249)).is_ok());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
    }
}
