//! The topics and partitions this broker hosts (Kafka: ReplicaManager plus the MetadataCache of a
//! single node), and their lifecycle: load at start-up, create, delete, close at shutdown.
//!
//! Topic metadata (name, id, partition count, configs) is persisted by the storage layer's
//! `LogManager` on every change, before the change is visible to clients.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use fjord_storage::{LogAppendInfo, LogManager, StorageError, TopicRecord};
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;
use tracing::{info, warn};
use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::error::BrokerError;
use crate::partition::{Partition, PartitionError};
use crate::time::now_ms;

/// The group coordinator's internal topic (Kafka's `GROUP_METADATA_TOPIC_NAME`).
pub const GROUP_METADATA_TOPIC_NAME: &str = "__consumer_offsets";
/// Kafka's `offsets.topic.segment.bytes` default: small segments, so compaction (a later issue)
/// can clean them early.
const OFFSETS_TOPIC_SEGMENT_BYTES: &str = "104857600";

/// The transaction coordinator's internal topic (Kafka's `TRANSACTION_STATE_TOPIC_NAME`).
pub const TRANSACTION_STATE_TOPIC_NAME: &str = "__transaction_state";

/// Topics the broker manages itself (Kafka's `Topic.isInternal`).
pub fn is_internal_topic(name: &str) -> bool {
    name == GROUP_METADATA_TOPIC_NAME || name == TRANSACTION_STATE_TOPIC_NAME
}

/// Kafka's limit on topic name length.
pub const TOPIC_NAME_LENGTH_MAX: usize = 249;
/// Upper bound on partitions across all topics: a CreateTopics request cannot make the broker
/// open millions of files.
pub const PARTITIONS_TOTAL_MAX: usize = 100_000;

pub struct Topic {
    pub name: Arc<str>,
    pub id: Uuid,
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
    /// The partition does not exist or is being deleted.
    Unavailable(String),
    Storage(StorageError),
}

/// Why a topic could not be created, in Kafka's terms.
#[derive(Debug, thiserror::Error)]
pub enum CreateTopicError {
    #[error("Topic '{0}' already exists.")]
    AlreadyExists(String),
    #[error("{0}")]
    InvalidName(String),
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    InvalidReplicationFactor(String),
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// Why partitions could not be added, in Kafka's terms.
#[derive(Debug, thiserror::Error)]
pub enum CreatePartitionsError {
    #[error("This server does not host topic '{0}'.")]
    UnknownTopic(String),
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

pub struct ReplicaManager {
    /// The effective configuration (static settings plus dynamic broker configs), swapped as a
    /// whole when a dynamic config changes (see `alter_broker_config`).
    config: RwLock<Arc<BrokerConfig>>,
    log_manager: LogManager,
    topics: RwLock<TopicTable>,
    /// Serialises topic creation and deletion (disk work) without blocking readers of the table.
    admin_lock: Mutex<()>,
    /// Woken on every append, so long-polling fetches re-check their partitions.
    pub data_arrived: Notify,
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
    /// Opens every persisted topic's partitions (running log recovery where the last shutdown
    /// was not clean).
    pub fn open(
        config: BrokerConfig,
        log_manager: LogManager,
        had_clean_shutdown: bool,
    ) -> Result<Self, BrokerError> {
        let manager = Self {
            config: RwLock::new(Arc::new(config)),
            log_manager,
            topics: RwLock::new(TopicTable::default()),
            admin_lock: Mutex::new(()),
            data_arrived: Notify::new(),
        };
        let records = manager.log_manager.load_topics()?;
        let mut table = TopicTable::default();
        for record in records {
            let topic = manager.open_topic(&record, had_clean_shutdown)?;
            table.insert(topic);
        }
        info!(
            topics = table.by_name.len(),
            partitions = table.partitions_total,
            "loaded topics"
        );
        *manager.topics.write() = table;
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

    fn open_topic(
        &self,
        record: &TopicRecord,
        had_clean_shutdown: bool,
    ) -> Result<Arc<Topic>, BrokerError> {
        let name: Arc<str> = Arc::from(record.name.as_str());
        let mut partitions = Vec::with_capacity(record.partitions.max(0) as usize);
        for index in 0..record.partitions {
            let log = self.log_manager.open_log(
                &record.name,
                index,
                crate::topic_config::log_config(&record.configs, &self.config()),
                had_clean_shutdown,
                now_ms(),
            )?;
            partitions.push(Arc::new(Partition::new(
                name.clone(),
                record.topic_id,
                index,
                log,
            )));
        }
        Ok(Arc::new(Topic {
            name,
            id: record.topic_id,
            partitions,
            configs: record.configs.clone(),
        }))
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

    /// Looks a topic up, creating it with the broker defaults if auto creation is on and the
    /// caller allows it (Kafka auto-creates on Metadata; Fjord also on Produce).
    pub fn topic_or_auto_create(
        &self,
        name: &str,
        allow_auto_create: bool,
    ) -> Result<Option<Arc<Topic>>, CreateTopicError> {
        if let Some(topic) = self.topic(name) {
            return Ok(Some(topic));
        }
        if is_internal_topic(name) {
            // As Kafka: internal topics are created on demand with their own settings,
            // whatever auto.create.topics.enable says.
            if name == TRANSACTION_STATE_TOPIC_NAME {
                return self.transaction_state_topic_or_create().map(Some);
            }
            return self.offsets_topic_or_create().map(Some);
        }
        let config = self.config();
        if !(allow_auto_create && config.auto_create_topics_enable) {
            return Ok(None);
        }
        match self.create_topic(name, config.num_partitions, BTreeMap::new(), false) {
            Ok(topic) => Ok(Some(topic)),
            // Lost a race with another creator: fine, use theirs.
            Err(CreateTopicError::AlreadyExists(_)) => Ok(self.topic(name)),
            Err(err) => Err(err),
        }
    }

    /// `__consumer_offsets`, created on first use with `offsets.topic.num.partitions`
    /// partitions, compaction and 100 MiB segments (Kafka's defaults for it).
    pub fn offsets_topic_or_create(&self) -> Result<Arc<Topic>, CreateTopicError> {
        let partitions = self.config().offsets_topic_num_partitions;
        self.internal_topic_or_create(
            GROUP_METADATA_TOPIC_NAME,
            partitions,
            OFFSETS_TOPIC_SEGMENT_BYTES.to_string(),
        )
    }

    /// `__transaction_state`, created on first use with `transaction.state.log.num.partitions`
    /// partitions, compaction and `transaction.state.log.segment.bytes` segments (Kafka's
    /// `TransactionStateManager.transactionTopicConfigs`).
    pub fn transaction_state_topic_or_create(&self) -> Result<Arc<Topic>, CreateTopicError> {
        let config = self.config();
        self.internal_topic_or_create(
            TRANSACTION_STATE_TOPIC_NAME,
            config.transaction_state_log_num_partitions,
            config.transaction_state_log_segment_bytes.to_string(),
        )
    }

    /// A coordinator's internal topic, created compacted on first use (a creation race is
    /// settled by using the winner's topic).
    fn internal_topic_or_create(
        &self,
        name: &str,
        partitions: i32,
        segment_bytes: String,
    ) -> Result<Arc<Topic>, CreateTopicError> {
        if let Some(topic) = self.topic(name) {
            return Ok(topic);
        }
        let configs = BTreeMap::from([
            ("cleanup.policy".to_string(), "compact".to_string()),
            ("segment.bytes".to_string(), segment_bytes),
            ("compression.type".to_string(), "producer".to_string()),
        ]);
        match self.create_topic(name, partitions, configs, false) {
            Ok(topic) => Ok(topic),
            Err(CreateTopicError::AlreadyExists(_)) => self
                .topic(name)
                .ok_or_else(|| CreateTopicError::AlreadyExists(name.into())),
            Err(err) => Err(err),
        }
    }

    /// Appends a coordinator's batch (at most `batch_bytes_max` bytes) to partition
    /// `partition` of its internal topic with the Coordinator origin (a transactional batch is
    /// checked against the producer's epoch only), then wakes long-polling readers of it.
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
        let info = target
            .append_as_leader(batch, now_ms, fjord_storage::AppendOrigin::Coordinator)
            .map_err(|err| match err {
                PartitionError::Deleted => CoordinatorAppendError::Unavailable(err.to_string()),
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

    /// Creates a topic. With `validate_only` nothing is written and the result is what would
    /// have been created.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Arc<Topic>, CreateTopicError> {
        validate_topic_name(name).map_err(CreateTopicError::InvalidName)?;
        if partitions <= 0 {
            return Err(CreateTopicError::InvalidPartitions(
                "Number of partitions must be larger than 0.".to_string(),
            ));
        }
        let _admin = self.admin_lock.lock();
        let partitions_total = self.topics.read().partitions_total;
        if self.topic(name).is_some() {
            return Err(CreateTopicError::AlreadyExists(name.to_string()));
        }
        if partitions_total + partitions as usize > PARTITIONS_TOTAL_MAX {
            return Err(CreateTopicError::InvalidPartitions(format!(
                "Creating {partitions} partitions would exceed this broker's limit of {PARTITIONS_TOTAL_MAX} partitions."
            )));
        }
        let record = TopicRecord {
            name: name.to_string(),
            topic_id: Uuid::new_v4(),
            partitions,
            configs,
        };
        if validate_only {
            return Ok(Arc::new(Topic {
                name: Arc::from(name),
                id: record.topic_id,
                partitions: Vec::new(),
                configs: record.configs,
            }));
        }
        // Persist first: a topic clients can see must survive a crash.
        let mut records: Vec<TopicRecord> = self.topics().iter().map(|t| topic_record(t)).collect();
        records.push(record.clone());
        self.log_manager
            .save_topics(&records)
            .map_err(BrokerError::from)?;
        let topic = self.open_topic(&record, true)?;
        self.topics.write().insert(topic.clone());
        info!(topic = name, partitions, topic_id = %record.topic_id, "created topic");
        Ok(topic)
    }

    /// CreatePartitions: grows `name` to `count` partitions (never shrinks, as Kafka). The new
    /// count is persisted before the new partitions are served.
    pub fn create_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), CreatePartitionsError> {
        let _admin = self.admin_lock.lock();
        let topic = self
            .topic(name)
            .ok_or_else(|| CreatePartitionsError::UnknownTopic(name.to_string()))?;
        if name == GROUP_METADATA_TOPIC_NAME || name == TRANSACTION_STATE_TOPIC_NAME {
            // Groups and transactional ids are routed by hash modulo this topic's partition count.
            return Err(CreatePartitionsError::InvalidRequest(format!(
                "The number of partitions of {name} cannot change."
            )));
        }
        let current = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
        if count == current {
            return Err(CreatePartitionsError::InvalidPartitions(format!(
                "Topic already has {current} partitions."
            )));
        }
        if count < current {
            return Err(CreatePartitionsError::InvalidPartitions(format!(
                "Topic currently has {current} partitions, which is higher than the requested {count}."
            )));
        }
        let added = (count - current) as usize;
        if self.topics.read().partitions_total + added > PARTITIONS_TOTAL_MAX {
            return Err(CreatePartitionsError::InvalidPartitions(format!(
                "Adding {added} partitions would exceed this broker's limit of {PARTITIONS_TOTAL_MAX} partitions."
            )));
        }
        if validate_only {
            return Ok(());
        }
        let mut record = topic_record(&topic);
        record.partitions = count;
        self.save_topic_record(&record)?;
        let mut partitions = topic.partitions.clone();
        for index in current..count {
            let log = self
                .log_manager
                .open_log(
                    &record.name,
                    index,
                    crate::topic_config::log_config(&record.configs, &self.config()),
                    true,
                    now_ms(),
                )
                .map_err(BrokerError::from)?;
            partitions.push(Arc::new(Partition::new(
                topic.name.clone(),
                topic.id,
                index,
                log,
            )));
        }
        self.replace_topic(&topic, partitions, topic.configs.clone());
        info!(topic = name, from = current, to = count, "added partitions");
        Ok(())
    }

    /// AlterConfigs / IncrementalAlterConfigs on a topic: `configs` (already validated) replace
    /// the topic's overrides, are persisted, then take effect on every partition's log.
    pub fn alter_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<(), CreatePartitionsError> {
        let _admin = self.admin_lock.lock();
        let topic = self
            .topic(name)
            .ok_or_else(|| CreatePartitionsError::UnknownTopic(name.to_string()))?;
        let mut record = topic_record(&topic);
        record.configs = configs.clone();
        self.save_topic_record(&record)?;
        let log_config = crate::topic_config::log_config(&configs, &self.config());
        for partition in &topic.partitions {
            match partition.set_log_config(log_config.clone()) {
                Ok(()) | Err(crate::partition::PartitionError::Deleted) => {}
                Err(err) => {
                    warn!(topic = name, error = %err, "could not apply configs to a partition")
                }
            }
        }
        self.replace_topic(&topic, topic.partitions.clone(), configs);
        info!(topic = name, "altered topic configs");
        Ok(())
    }

    /// Persists `topics.json` with `record` in place of the topic of the same id (callers hold
    /// the admin lock).
    fn save_topic_record(&self, record: &TopicRecord) -> Result<(), BrokerError> {
        let records: Vec<TopicRecord> = self
            .topics()
            .iter()
            .map(|t| {
                if t.id == record.topic_id {
                    record.clone()
                } else {
                    topic_record(t)
                }
            })
            .collect();
        Ok(self.log_manager.save_topics(&records)?)
    }

    /// Serves `topic` with new partitions or configs from now on (callers hold the admin lock
    /// and persisted the change first).
    fn replace_topic(
        &self,
        topic: &Arc<Topic>,
        partitions: Vec<Arc<Partition>>,
        configs: BTreeMap<String, String>,
    ) {
        let replacement = Arc::new(Topic {
            name: topic.name.clone(),
            id: topic.id,
            partitions,
            configs,
        });
        let mut table = self.topics.write();
        table.remove(topic);
        table.insert(replacement);
    }

    /// Deletes a topic: it disappears from the table and the persisted list, then its logs are
    /// removed from disk.
    pub fn delete_topic(&self, topic: &Arc<Topic>) -> Result<(), BrokerError> {
        let _admin = self.admin_lock.lock();
        let records: Vec<TopicRecord> = self
            .topics()
            .iter()
            .filter(|t| t.id != topic.id)
            .map(|t| topic_record(t))
            .collect();
        self.log_manager.save_topics(&records)?;
        self.topics.write().remove(topic);
        for partition in &topic.partitions {
            if let Some(log) = partition.take_log() {
                if let Err(err) = self.log_manager.delete_log(log) {
                    warn!(topic = %topic.name, partition = partition.index, error = %err, "failed to delete log directory");
                }
            }
        }
        // Wake long-polling fetches so they notice the deletion.
        self.data_arrived.notify_waiters();
        info!(topic = %topic.name, "deleted topic");
        Ok(())
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

    /// Flushes and closes every log, then marks the shutdown clean so the next start skips
    /// recovery.
    pub fn shutdown(&self) -> Result<(), BrokerError> {
        let _admin = self.admin_lock.lock();
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

fn topic_record(topic: &Topic) -> TopicRecord {
    TopicRecord {
        name: topic.name.to_string(),
        topic_id: topic.id,
        partitions: topic.partitions.len() as i32,
        configs: topic.configs.clone(),
    }
}

impl TopicTable {
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
    /// Changes the effective broker configuration: `change` gets the current one and returns
    /// the new one (`None`: nothing to do, e.g. validate-only). The new dynamic configs are
    /// persisted first, then the configuration is swapped and every log gets its new settings.
    /// Runs under the admin lock, so concurrent changes, topic creation and topic config
    /// changes never apply a stale broker configuration.
    pub fn alter_broker_config<E: From<BrokerError>>(
        &self,
        change: impl FnOnce(&BrokerConfig) -> Result<Option<BrokerConfig>, E>,
    ) -> Result<(), E> {
        let _admin = self.admin_lock.lock();
        let current = self.config();
        let Some(new) = change(&current)? else {
            return Ok(());
        };
        self.log_manager
            .save_dynamic_broker_configs(&fjord_storage::DynamicBrokerConfigs {
                cluster_default: new.dynamic_default_settings.clone(),
                broker: new.dynamic_broker_settings.clone(),
            })
            .map_err(BrokerError::from)?;
        *self.config.write() = Arc::new(new);
        let logs = self.reapply_log_configs();
        info!(logs, "applied dynamic broker configs");
        Ok(())
    }

    /// Gives every partition's log the settings its topic has under the current broker
    /// configuration (its own overrides over the broker's `log.*` settings). Returns how many
    /// logs were updated. Callers hold the admin lock.
    fn reapply_log_configs(&self) -> usize {
        let config = self.config();
        let mut updated = 0;
        for topic in self.topics() {
            let log_config = crate::topic_config::log_config(&topic.configs, &config);
            for partition in &topic.partitions {
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
