//! The transaction coordinator: idempotent producer ids and transactions (KIP-98, KIP-360,
//! KIP-890), persisted in `__transaction_state` (Kafka's `TransactionCoordinator`).
//!
//! - [`TransactionCoordinator`] answers InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn,
//!   EndTxn, DescribeTransactions and ListTransactions, and the KIP-890 verification the
//!   Produce and TxnOffsetCommit handlers call ([`TransactionCoordinator::verify_or_add_partitions`]).
//! - [`state_manager::TransactionStateManager`] owns one shard per `__transaction_state`
//!   partition (a transactional id goes to `partition_for(id)`, Kafka's
//!   `Utils.abs(transactionalId.hashCode) % transaction.state.log.num.partitions`), appends
//!   every transition before it takes effect, and replays the partitions at start-up.
//! - [`metadata`] is the state machine (`TransactionMetadata`, Kafka's legal transitions),
//!   [`transaction_log`] the record codec, [`producer_id_manager`] the producer id blocks.
//! - Markers are written through a [`TxnMarkerWriter`] taken at construction (replaceable
//!   with [`TransactionCoordinator::set_marker_writer`]); `crate::txn_markers::LocalTxnMarkerWriter`
//!   appends them to this broker's partitions and completes transactional offset commits.
//!
//! Concurrency: a shard's mutex is held from the checks through the append to the update of
//! memory, never while markers are written (the writer takes partition locks and the group
//! coordinator's) nor while an answer waits for its commit. Markers of a transaction in
//! PrepareCommit/PrepareAbort are written by one thread at a time (`markers_in_flight`);
//! failures leave it in PrepareX for [`run_timers`] to retry. Time is passed in as
//! milliseconds, so tests drive it.
//!
//! Replication (Kafka's `appendTransactionToLog` with `requiredAcks = -1`): a transition is
//! applied to memory at the leader's local append (refused while the ISR is below
//! `transaction.state.log.min.isr`), and the entry remembers the offset after its record
//! (`TxnEntry::written_offset`). InitProducerId, AddPartitionsToTxn / AddOffsetsToTxn, the
//! KIP-890 verification with add, and EndTxn answer once the high watermark reached what the
//! answer depends on (their own record, or the id's last uncommitted one), waiting in the
//! replication purgatory with no lock held. Markers go out only after their PrepareCommit /
//! PrepareAbort is committed: a failover must not lose the decision after a partition got a
//! marker. A failed wait answers COORDINATOR_NOT_AVAILABLE (too few in-sync replicas, timeout)
//! or NOT_COORDINATOR (leadership lost) and memory keeps the transition, which equals the
//! leader's log: it commits later (the timer then writes the markers) or the shard is dropped
//! with the leadership and rebuilt from the log. Loads replay to the log end; entries above
//! the high watermark count as uncommitted. DescribeTransactions, ListTransactions and
//! verify-only checks read memory at once (design Q4).
//!
//! [`run_timers`]: TransactionCoordinator::run_timers

pub mod metadata;
pub mod producer_id_manager;
pub mod state_manager;
pub mod transaction_log;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fjord_protocol::kafka_protocol::messages::describe_transactions_response::{self, TopicData};
use fjord_protocol::kafka_protocol::messages::list_transactions_response;
use fjord_protocol::kafka_protocol::messages::{
    ListTransactionsResponse, ProducerId, TopicName, TransactionalId,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::ResponseError;
use parking_lot::RwLock;
use tokio::sync::{watch, Notify};
use tracing::{debug, info, warn};

use crate::config::BrokerConfig;
use crate::error::BrokerError;
use crate::replica_manager::{
    committed_now, coordinator_commit_error, wait_for_coordinator_commit, CommitFuture,
    CoordinatorAppendError, ReplicaManager, TRANSACTION_STATE_TOPIC_NAME,
};
use crate::replication_shell::ReplicationShell;
use crate::time::now_ms;
use metadata::{
    is_epoch_exhausted, supports_epoch_bump, TransactionMetadata, TransactionState,
    TxnTransitMetadata, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, TV_2,
};
use producer_id_manager::{ProducerIdBlockStore, ProducerIdManager};
use state_manager::{TransactionStateManager, TxnEntry, TxnShard};
use transaction_log::TransactionLogRecord;

/// Transactional ids hosted across all shards. Kafka has no such limit; each id costs memory
/// and a client can create ids at will.
pub const TRANSACTIONAL_IDS_MAX: usize = 100_000;
/// Partitions one transaction may span. Kafka has no such limit; the transaction's record
/// must also fit `message.max.bytes`.
pub const PARTITIONS_PER_TRANSACTION_MAX: usize = 10_000;
/// How long a failed marker write waits before the timer retries it (Kafka's marker channel
/// retries after `retry.backoff.ms`, 100 ms).
pub const MARKER_RETRY_BACKOFF_MS: i64 = 100;
/// Longest ListTransactions v2 transactional id pattern.
pub const TRANSACTIONAL_ID_PATTERN_BYTES_MAX: usize = 1024;
/// Compiled size limit of that pattern (the `regex` crate matches in linear time).
const TRANSACTIONAL_ID_PATTERN_SIZE_MAX: usize = 1 << 20;
/// The coordinator epoch written in markers: the leader epoch of `__transaction_state`
/// partitions, constant on a single node.
pub const COORDINATOR_EPOCH: i32 = crate::partition::INITIAL_LEADER_EPOCH;
/// The timer task sleeps at most this long between checks.
const TIMER_IDLE_SLEEP_MS: i64 = 1_000;

/// The coordinator's settings, from the broker config.
#[derive(Debug, Clone)]
pub struct TransactionCoordinatorConfig {
    pub transactional_id_expiration_ms: i64,
    pub transaction_max_timeout_ms: i32,
    pub abort_timed_out_transactions_interval_ms: i64,
    pub remove_expired_transactional_ids_interval_ms: i64,
    /// Largest record batch the coordinator writes (`message.max.bytes`).
    pub batch_bytes_max: usize,
    pub transactional_ids_max: usize,
    pub partitions_per_transaction_max: usize,
}

impl TransactionCoordinatorConfig {
    pub fn from_broker(config: &BrokerConfig) -> Self {
        Self {
            transactional_id_expiration_ms: config.transactional_id_expiration_ms,
            transaction_max_timeout_ms: config.transaction_max_timeout_ms,
            abort_timed_out_transactions_interval_ms: config
                .transaction_abort_timed_out_transaction_cleanup_interval_ms,
            remove_expired_transactional_ids_interval_ms: config
                .transaction_remove_expired_transaction_cleanup_interval_ms,
            batch_bytes_max: config.message_max_bytes,
            transactional_ids_max: TRANSACTIONAL_IDS_MAX,
            partitions_per_transaction_max: PARTITIONS_PER_TRANSACTION_MAX,
        }
    }
}

/// Why a write to `__transaction_state` failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TxnAppendError {
    #[error("record batch of {size_bytes} bytes exceeds {limit_bytes} bytes")]
    TooLarge {
        size_bytes: usize,
        limit_bytes: usize,
    },
    #[error("__transaction_state is not available: {0}")]
    Unavailable(String),
    /// This broker no longer leads the partition (NOT_COORDINATOR).
    #[error("not the leader of the __transaction_state partition: {0}")]
    NotLeader(String),
    #[error("storage: {0}")]
    Storage(String),
}

impl TxnAppendError {
    /// Kafka's mapping of append errors in `appendTransactionToLog`.
    pub fn response_error(&self) -> ResponseError {
        match self {
            TxnAppendError::TooLarge { .. } => ResponseError::UnknownServerError,
            TxnAppendError::Unavailable(_) => ResponseError::CoordinatorNotAvailable,
            TxnAppendError::NotLeader(_) | TxnAppendError::Storage(_) => {
                ResponseError::NotCoordinator
            }
        }
    }
}

/// Where a shard's records go: a partition of `__transaction_state` (or memory in tests).
pub trait TransactionStateLog: Send + Sync {
    /// Appends `records` as one batch to `partition` (the leader's local append, refused while
    /// the ISR is below `transaction.state.log.min.isr`). Returns the offset after the batch:
    /// it is committed once the high watermark reaches it
    /// ([`TransactionStateLog::wait_for_commit`]).
    fn append(
        &self,
        partition: i32,
        records: &[TransactionLogRecord],
        now_ms: i64,
    ) -> Result<i64, TxnAppendError>;

    /// Whether the high watermark of `partition` reached `offset` (an in-memory log commits at
    /// once).
    fn is_committed(&self, partition: i32, offset: i64) -> bool {
        let _ = (partition, offset);
        true
    }

    /// Resolves once the high watermark of `partition` reached `offset` with enough in-sync
    /// replicas, or with the produce error that prevented it. Holds no lock.
    fn wait_for_commit(&self, partition: i32, offset: i64) -> CommitFuture {
        let _ = (partition, offset);
        committed_now()
    }
}

/// Writes transaction markers to the partitions of a transaction.
pub trait TxnMarkerWriter: Send + Sync {
    /// Writes the COMMIT (commit=true) or ABORT marker of `producer_id` at `producer_epoch` to
    /// each partition (topic name, partition); one result per partition (Err = Kafka error code
    /// to retry or give up on: UNKNOWN_TOPIC_OR_PARTITION means the partition is gone and the
    /// marker is dropped, as Kafka does).
    fn write_markers(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
        partitions: &[(String, i32)],
    ) -> Vec<((String, i32), Result<(), ResponseError>)>;
}

/// Appends to `__transaction_state` through the normal log append path, creating the topic
/// on first use.
pub struct TransactionStateTopicLog {
    replica_manager: Arc<ReplicaManager>,
    /// The purgatory writes wait in for the high watermark.
    replication: Arc<ReplicationShell>,
    batch_bytes_max: usize,
}

impl TransactionStateTopicLog {
    pub fn new(
        replica_manager: Arc<ReplicaManager>,
        replication: Arc<ReplicationShell>,
        batch_bytes_max: usize,
    ) -> Self {
        Self {
            replica_manager,
            replication,
            batch_bytes_max,
        }
    }
}

impl TransactionStateLog for TransactionStateTopicLog {
    fn append(
        &self,
        partition: i32,
        records: &[TransactionLogRecord],
        now_ms: i64,
    ) -> Result<i64, TxnAppendError> {
        if records.is_empty() {
            return Ok(0);
        }
        let mut batch = transaction_log::encode_batch(records, now_ms);
        // The topic is created through the controller before a coordinator writes (see
        // `Broker::internal_topic_or_create`); until it is in the image nothing can be written.
        let topic = self
            .replica_manager
            .transaction_state_topic()
            .ok_or_else(|| {
                TxnAppendError::Unavailable(format!(
                    "{TRANSACTION_STATE_TOPIC_NAME} does not exist yet"
                ))
            })?;
        let info = self
            .replica_manager
            .append_coordinator_batch(&topic, partition, &mut batch, self.batch_bytes_max, now_ms)
            .map_err(|err| match err {
                CoordinatorAppendError::TooLarge {
                    size_bytes,
                    limit_bytes,
                } => TxnAppendError::TooLarge {
                    size_bytes,
                    limit_bytes,
                },
                CoordinatorAppendError::Unavailable(reason) => TxnAppendError::Unavailable(reason),
                CoordinatorAppendError::NotLeader(reason) => TxnAppendError::NotLeader(reason),
                CoordinatorAppendError::Storage(err) => TxnAppendError::Storage(err.to_string()),
            })?;
        Ok(info.last_offset.saturating_add(1))
    }

    fn is_committed(&self, partition: i32, offset: i64) -> bool {
        self.replica_manager
            .partition(TRANSACTION_STATE_TOPIC_NAME, partition)
            .and_then(|p| p.offsets().ok())
            .is_some_and(|o| o.high_watermark >= offset)
    }

    fn wait_for_commit(&self, partition: i32, offset: i64) -> CommitFuture {
        wait_for_coordinator_commit(
            &self.replica_manager,
            &self.replication,
            TRANSACTION_STATE_TOPIC_NAME,
            partition,
            Some(offset),
        )
    }
}

/// Markers to write for one transaction in PrepareCommit/PrepareAbort.
#[derive(Debug, Clone)]
struct MarkerJob {
    transactional_id: String,
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    partitions: Vec<(String, i32)>,
}

/// What a write-path operation leaves for after its shard lock (Kafka's
/// `appendTransactionToLog` callback): the `__transaction_state` offset the high watermark must
/// reach before the answer may be given (its own record, or the last uncommitted one of the
/// transactional id it answered about), and markers to write once it has.
#[derive(Debug, Default)]
struct Pending {
    commit: Option<(i32, i64)>,
    markers: Option<MarkerJob>,
}

impl Pending {
    /// The answer depends on `entry`'s state: wait for its last record too.
    fn depends_on(&mut self, partition: i32, entry: &TxnEntry) {
        self.wrote(partition, entry.written_offset);
    }

    /// A record was appended to `partition`, ending before `offset`.
    fn wrote(&mut self, partition: i32, offset: i64) {
        if offset <= 0 {
            return;
        }
        let offset = self
            .commit
            .map_or(offset, |(_, earlier)| earlier.max(offset));
        self.commit = Some((partition, offset));
    }
}

/// What the InitProducerId checks decided.
enum InitStep {
    /// Persist this transition (to Empty) and answer with its producer id and epoch.
    Transit(TxnTransitMetadata),
    /// An Ongoing transaction is fenced and aborted first; the client retries.
    Fence(TxnTransitMetadata),
}

pub struct TransactionCoordinator {
    /// Per `__transaction_state` partition: whether this broker leads it and so coordinates
    /// its transactional ids (others answer NOT_COORDINATOR).
    owned: Vec<AtomicBool>,
    /// Where shards are reloaded from on election.
    replica_manager: Option<Arc<ReplicaManager>>,
    config: Arc<TransactionCoordinatorConfig>,
    state: TransactionStateManager,
    producer_ids: ProducerIdManager,
    marker_writer: RwLock<Arc<dyn TxnMarkerWriter>>,
    active: AtomicBool,
    /// Wakes [`Self::run_timers`] when markers need a retry.
    timers_changed: Notify,
    next_abort_check_ms: AtomicI64,
    next_expiration_check_ms: AtomicI64,
}

impl TransactionCoordinator {
    /// Opens the coordinator of this broker: one shard per `__transaction_state` partition
    /// (the topic's actual count if it exists), each replayed from its partition. Transactions
    /// found in PrepareCommit/PrepareAbort get their markers from the first timer run.
    pub fn open(
        config: &BrokerConfig,
        replica_manager: Arc<ReplicaManager>,
        replication: Arc<ReplicationShell>,
        marker_writer: Arc<dyn TxnMarkerWriter>,
        producer_id_blocks: Arc<dyn ProducerIdBlockStore>,
        now_ms: i64,
    ) -> Result<Self, BrokerError> {
        let coordinator_config = TransactionCoordinatorConfig::from_broker(config);
        let (existing, partitions) = replica_manager.internal_topic_and_partitions(
            TRANSACTION_STATE_TOPIC_NAME,
            config.transaction_state_log_num_partitions,
        );
        let log: Arc<dyn TransactionStateLog> = Arc::new(TransactionStateTopicLog::new(
            replica_manager.clone(),
            replication,
            coordinator_config.batch_bytes_max,
        ));
        let producer_ids = ProducerIdManager::open(producer_id_blocks).map_err(|err| {
            BrokerError::InvalidConfig {
                key: "data.dir".to_string(),
                value: config.data_dir.display().to_string(),
                reason: err.to_string(),
            }
        })?;
        let mut coordinator = Self::with_log(
            coordinator_config,
            log,
            producer_ids,
            marker_writer,
            partitions,
            now_ms,
        );
        coordinator.replica_manager = Some(replica_manager.clone());
        if let Some(topic) = existing {
            let started = std::time::Instant::now();
            for (shard, partition) in coordinator.state.shards.iter().zip(&topic.partitions) {
                coordinator
                    .state
                    .load_partition(partition, &mut shard.lock())?;
            }
            info!(
                transactional_ids = coordinator.state.count.get(),
                partitions,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "loaded transactions from __transaction_state"
            );
        }
        Ok(coordinator)
    }

    /// A coordinator writing to `log` (tests use an in-memory log), with no load.
    pub fn with_log(
        config: TransactionCoordinatorConfig,
        log: Arc<dyn TransactionStateLog>,
        producer_ids: ProducerIdManager,
        marker_writer: Arc<dyn TxnMarkerWriter>,
        partitions: i32,
        now_ms: i64,
    ) -> Self {
        let config = Arc::new(config);
        Self {
            next_abort_check_ms: AtomicI64::new(
                now_ms.saturating_add(config.abort_timed_out_transactions_interval_ms),
            ),
            next_expiration_check_ms: AtomicI64::new(
                now_ms.saturating_add(config.remove_expired_transactional_ids_interval_ms),
            ),
            state: TransactionStateManager::new(config.clone(), log, partitions),
            config,
            producer_ids,
            marker_writer: RwLock::new(marker_writer),
            active: AtomicBool::new(true),
            owned: (0..partitions.max(1))
                .map(|_| AtomicBool::new(true))
                .collect(),
            replica_manager: None,
            timers_changed: Notify::new(),
        }
    }

    /// Replays records into the shards, as a load from the log would (tests, tools).
    pub fn replay(&self, records: impl IntoIterator<Item = TransactionLogRecord>) {
        for record in records {
            let mut shard = self.state.shard(&record.transactional_id).lock();
            self.state.replay(&mut shard, record);
        }
    }

    /// Replaces the marker writer (the broker plugs in the real one at integration).
    pub fn set_marker_writer(&self, writer: Arc<dyn TxnMarkerWriter>) {
        *self.marker_writer.write() = writer;
    }

    pub fn config(&self) -> &TransactionCoordinatorConfig {
        &self.config
    }

    pub fn partitions(&self) -> i32 {
        self.state.partitions()
    }

    /// The `__transaction_state` partition of a transactional id.
    pub fn partition_for(&self, transactional_id: &str) -> i32 {
        self.state.partition_for(transactional_id)
    }

    pub fn transactional_ids_count(&self) -> usize {
        self.state.count.get()
    }

    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Broker shutdown: new requests get COORDINATOR_NOT_AVAILABLE.
    pub fn shutdown(&self) {
        self.active.store(false, Ordering::Release);
    }

    /// A copy of a transactional id's metadata (tests, DescribeTransactions).
    pub fn transaction_metadata(&self, transactional_id: &str) -> Option<TransactionMetadata> {
        self.state
            .shard(transactional_id)
            .lock()
            .transactions
            .get(transactional_id)
            .map(|e| e.metadata.clone())
    }

    /// NOT_COORDINATOR for a transactional id whose partition another broker leads.
    fn check_owner(&self, transactional_id: &str) -> Result<(), ResponseError> {
        if self.owns_partition(self.partition_for(transactional_id)) {
            Ok(())
        } else {
            Err(ResponseError::NotCoordinator)
        }
    }

    pub fn owns_partition(&self, partition: i32) -> bool {
        self.owned
            .get(partition as usize)
            .is_some_and(|owned| owned.load(Ordering::Acquire))
    }

    /// Follows the leadership of `__transaction_state` (Kafka `TransactionCoordinator`
    /// `onElection` / `onResignation`): partitions this broker now leads (`elected`: newly or
    /// with a new leader epoch) are reloaded from the log, and their transactions in
    /// PrepareCommit/PrepareAbort get their markers from the next timer run; partitions led
    /// elsewhere are dropped.
    pub fn sync_leadership(&self, leading: &dyn Fn(i32) -> bool, elected: &[i32]) {
        for (index, shard) in self.state.shards.iter().enumerate() {
            let partition = index as i32;
            let owned = self.owns_partition(partition);
            let lead = leading(partition);
            if lead && (!owned || elected.contains(&partition)) {
                let Some(log_partition) = self
                    .replica_manager
                    .as_ref()
                    .and_then(|rm| rm.partition(TRANSACTION_STATE_TOPIC_NAME, partition))
                else {
                    continue;
                };
                let mut shard = shard.lock();
                self.state.clear(&mut shard);
                match self.state.load_partition(&log_partition, &mut shard) {
                    Ok(()) => {
                        self.owned[index].store(true, Ordering::Release);
                        info!(partition, "elected transaction coordinator of __transaction_state partition: loaded");
                    }
                    Err(error) => {
                        self.owned[index].store(false, Ordering::Release);
                        tracing::error!(partition, %error, "loading a transaction coordinator shard failed");
                    }
                }
                self.timers_changed.notify_one();
            } else if !lead && owned {
                self.owned[index].store(false, Ordering::Release);
                self.state.clear(&mut shard.lock());
                info!(
                    partition,
                    "resigned as transaction coordinator of __transaction_state partition"
                );
            }
        }
    }

    fn check_active(&self) -> Result<(), ResponseError> {
        if self.is_active() {
            Ok(())
        } else {
            Err(ResponseError::CoordinatorNotAvailable)
        }
    }

    /// Waits until a producer id block is at hand (InitProducerId calls it first, so ids never
    /// run out under a coordinator lock while the controller is reachable).
    pub async fn ensure_producer_id_block(&self) -> Result<(), ResponseError> {
        self.producer_ids
            .ensure_block()
            .await
            .map_err(|err| err.response_error())
    }

    fn generate_producer_id(&self) -> Result<i64, ResponseError> {
        self.producer_ids
            .generate_producer_id()
            .map_err(|err| err.response_error())
    }

    // ------------------------------------------------------------------------ InitProducerId

    /// InitProducerId (Kafka's `handleInitProducerId`): a new producer id at epoch 0 without a
    /// transactional id (idempotent producer); with one, the transactional id's producer id at
    /// a bumped epoch, which fences any older producer instance. `expected` is the KIP-360
    /// producer id and epoch of the request (v3+). Errors are Kafka's (PRODUCER_FENCED is
    /// mapped to INVALID_PRODUCER_EPOCH for old versions by the handler).
    pub async fn init_producer_id(
        &self,
        transactional_id: Option<&str>,
        transaction_timeout_ms: i32,
        expected: Option<(i64, i16)>,
        now_ms: i64,
    ) -> Result<(i64, i16), ResponseError> {
        let mut pending = Pending::default();
        let answer = self.init_producer_id_locally(
            transactional_id,
            transaction_timeout_ms,
            expected,
            now_ms,
            &mut pending,
        );
        self.finish(answer, pending, now_ms).await
    }

    /// InitProducerId under the shard lock: the transition is in the leader's log and in
    /// memory; `pending` says what to wait for before answering.
    fn init_producer_id_locally(
        &self,
        transactional_id: Option<&str>,
        transaction_timeout_ms: i32,
        expected: Option<(i64, i16)>,
        now_ms: i64,
        pending: &mut Pending,
    ) -> Result<(i64, i16), ResponseError> {
        self.check_active()?;
        if let Some(id) = transactional_id.filter(|id| !id.is_empty()) {
            self.check_owner(id)?;
        }
        let Some(transactional_id) = transactional_id else {
            return Ok((self.generate_producer_id()?, 0));
        };
        if transactional_id.is_empty() || !transaction_log::string_fits(transactional_id) {
            return Err(ResponseError::InvalidRequest);
        }
        if transaction_timeout_ms <= 0
            || transaction_timeout_ms > self.config.transaction_max_timeout_ms
        {
            return Err(ResponseError::InvalidTransactionTimeout);
        }
        let partition = self.partition_for(transactional_id);
        let job = {
            let mut shard = self.state.shard(transactional_id).lock();
            let existing = shard.transactions.get(transactional_id).cloned();
            if let Some(entry) = &existing {
                pending.depends_on(partition, entry);
            }
            let is_new = existing.is_none();
            let mut entry = match existing {
                Some(entry) => entry,
                None => {
                    if self.state.count.is_full() {
                        warn!(
                            transactional_id,
                            limit = self.config.transactional_ids_max,
                            "InitProducerId refused: too many transactional ids"
                        );
                        return Err(ResponseError::CoordinatorNotAvailable);
                    }
                    let producer_id = self.generate_producer_id()?;
                    TxnEntry::new(TransactionMetadata::new(
                        transactional_id.to_string(),
                        producer_id,
                        transaction_timeout_ms,
                        now_ms,
                    ))
                }
            };
            let step = self.prepare_init_producer_id(
                &entry.metadata,
                transaction_timeout_ms,
                expected,
                now_ms,
            )?;
            match step {
                InitStep::Transit(transit) => {
                    let written_offset = self.state.append_transition(
                        partition,
                        &mut entry.metadata,
                        &transit,
                        now_ms,
                    )?;
                    entry.written_offset = written_offset;
                    pending.wrote(partition, written_offset);
                    let result = (entry.metadata.producer_id, entry.metadata.producer_epoch);
                    info!(
                        transactional_id,
                        producer_id = result.0,
                        producer_epoch = result.1,
                        partition,
                        "initialized transactional id"
                    );
                    if is_new {
                        self.state.insert(&mut shard, entry);
                    } else if let Some(slot) = shard.transactions.get_mut(transactional_id) {
                        slot.metadata = entry.metadata;
                        slot.written_offset = entry.written_offset;
                    }
                    return Ok(result);
                }
                InitStep::Fence(transit) => {
                    let slot = shard
                        .transactions
                        .get_mut(transactional_id)
                        .ok_or(ResponseError::UnknownServerError)?;
                    let written_offset = self.state.append_transition(
                        partition,
                        &mut slot.metadata,
                        &transit,
                        now_ms,
                    )?;
                    slot.written_offset = written_offset;
                    pending.wrote(partition, written_offset);
                    info!(
                        transactional_id,
                        producer_epoch = slot.metadata.producer_epoch,
                        "fenced the producer of an ongoing transaction and aborting it"
                    );
                    take_marker_job(slot)
                }
            }
        };
        // Written once the fence is committed (see `finish`).
        pending.markers = job;
        Err(ResponseError::ConcurrentTransactions)
    }

    /// The end of every write-path operation, with no lock held: waits until what the answer
    /// depends on is committed in `__transaction_state` (Kafka appends with acks=-1), then
    /// writes the markers the operation started (never before their PrepareCommit /
    /// PrepareAbort is committed: a coordinator failover could otherwise lose the decision
    /// after markers went out). A failed wait answers COORDINATOR_NOT_AVAILABLE or
    /// NOT_COORDINATOR (`appendTransactionToLog`'s mapping); memory keeps the transition (it
    /// is in the leader's log: it commits later, or the shard is reloaded from the log when
    /// the leadership moves) and the timer writes the markers once it is committed.
    async fn finish<T>(
        &self,
        answer: Result<T, ResponseError>,
        pending: Pending,
        now_ms: i64,
    ) -> Result<T, ResponseError> {
        if let Some((partition, offset)) = pending.commit {
            if let Err(error) = self.state.wait_for_commit(partition, offset).await {
                let mapped = coordinator_commit_error(error);
                warn!(partition, offset, ?error, answer = ?mapped,
                    "__transaction_state write not committed");
                if let Some(job) = pending.markers {
                    self.release_marker_job(&job, now_ms);
                }
                return Err(mapped);
            }
        }
        if let Some(job) = pending.markers {
            self.send_markers(job, now_ms);
        }
        answer
    }

    /// Markers taken by an operation whose PrepareX was not committed in time: the timer
    /// writes them once it is.
    fn release_marker_job(&self, job: &MarkerJob, now_ms: i64) {
        let mut shard = self.state.shard(&job.transactional_id).lock();
        if let Some(entry) = shard.transactions.get_mut(&job.transactional_id) {
            entry.markers_in_flight = false;
            entry.marker_retry_at_ms = now_ms.saturating_add(MARKER_RETRY_BACKOFF_MS);
        }
        drop(shard);
        self.timers_changed.notify_one();
    }

    /// Kafka's `prepareInitProducerIdTransit`.
    fn prepare_init_producer_id(
        &self,
        md: &TransactionMetadata,
        transaction_timeout_ms: i32,
        expected: Option<(i64, i16)>,
        now_ms: i64,
    ) -> Result<InitStep, ResponseError> {
        let valid_producer_id = |(producer_id, epoch): (i64, i16)| {
            md.producer_epoch == NO_PRODUCER_EPOCH
                || producer_id == md.producer_id
                || (producer_id == md.previous_producer_id && is_epoch_exhausted(epoch))
        };
        if !expected.is_none_or(valid_producer_id) {
            return Err(ResponseError::ProducerFenced);
        }
        let illegal = |err: metadata::IllegalTransition| {
            warn!(error = %err, "InitProducerId: illegal transition");
            ResponseError::UnknownServerError
        };
        match md.state {
            TransactionState::PrepareAbort | TransactionState::PrepareCommit => {
                Err(ResponseError::ConcurrentTransactions)
            }
            TransactionState::CompleteAbort
            | TransactionState::CompleteCommit
            | TransactionState::Empty => {
                if md.is_producer_epoch_exhausted()
                    && expected.is_none_or(|(_, epoch)| epoch == md.producer_epoch)
                {
                    let producer_id = self.generate_producer_id()?;
                    md.prepare_producer_id_rotation(
                        producer_id,
                        transaction_timeout_ms,
                        now_ms,
                        expected.is_some(),
                    )
                    .map(InitStep::Transit)
                    .map_err(illegal)
                } else {
                    md.prepare_increment_producer_epoch(
                        transaction_timeout_ms,
                        expected.map(|(_, epoch)| epoch),
                        now_ms,
                    )
                    .map_err(illegal)?
                    .map(InitStep::Transit)
                }
            }
            TransactionState::Ongoing => md
                .prepare_fence_and_abort(|| self.generate_producer_id(), now_ms)
                .map_err(illegal)?
                .map(InitStep::Fence),
            TransactionState::Dead | TransactionState::PrepareEpochFence => {
                warn!(transactional_id = md.transactional_id.as_str(), state = %md.state,
                    "transactional id in a state it should never be in");
                Err(ResponseError::UnknownServerError)
            }
        }
    }

    // ------------------------------------------------------------------------ partitions

    /// AddPartitionsToTxn / AddOffsetsToTxn (Kafka's `handleAddPartitionsToTransaction`).
    /// `client_transaction_version` is 2 for KIP-890 implicit adds.
    pub async fn add_partitions_to_transaction(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &BTreeSet<(String, i32)>,
        client_transaction_version: i16,
        now_ms: i64,
    ) -> Result<(), ResponseError> {
        let mut pending = Pending::default();
        let answer = self.add_partitions_locally(
            transactional_id,
            (producer_id, producer_epoch),
            partitions,
            client_transaction_version,
            now_ms,
            &mut pending,
        );
        self.finish(answer, pending, now_ms).await
    }

    fn add_partitions_locally(
        &self,
        transactional_id: &str,
        (producer_id, producer_epoch): (i64, i16),
        partitions: &BTreeSet<(String, i32)>,
        client_transaction_version: i16,
        now_ms: i64,
        pending: &mut Pending,
    ) -> Result<(), ResponseError> {
        self.check_active()?;
        if transactional_id.is_empty() {
            return Err(ResponseError::InvalidRequest);
        }
        self.check_owner(transactional_id)?;
        let partition = self.partition_for(transactional_id);
        let mut shard = self.state.shard(transactional_id).lock();
        let entry = shard
            .transactions
            .get_mut(transactional_id)
            .ok_or(ResponseError::InvalidProducerIdMapping)?;
        pending.depends_on(partition, entry);
        let md = &entry.metadata;
        if md.producer_id != producer_id {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        if md.producer_epoch != producer_epoch {
            return Err(ResponseError::ProducerFenced);
        }
        if entry.markers_in_flight || md.state.is_prepare() {
            return Err(ResponseError::ConcurrentTransactions);
        }
        if md.state == TransactionState::Ongoing && partitions.is_subset(&md.topic_partitions) {
            return Ok(());
        }
        let total = md.topic_partitions.union(partitions).count();
        if total > self.config.partitions_per_transaction_max {
            warn!(
                transactional_id,
                partitions = total,
                limit = self.config.partitions_per_transaction_max,
                "AddPartitionsToTxn refused: too many partitions in one transaction"
            );
            return Err(ResponseError::InvalidRequest);
        }
        let transit = md
            .prepare_add_partitions(partitions, now_ms, client_transaction_version)
            .map_err(|err| {
                warn!(error = %err, "AddPartitionsToTxn: illegal transition");
                ResponseError::UnknownServerError
            })?;
        let written_offset =
            self.state
                .append_transition(partition, &mut entry.metadata, &transit, now_ms)?;
        entry.written_offset = written_offset;
        pending.wrote(partition, written_offset);
        Ok(())
    }

    /// AddPartitionsToTxn v4+ `verify_only` (Kafka's `handleVerifyPartitionsInTransaction`):
    /// for each partition, whether it is in the ongoing transaction of `transactional_id` at
    /// exactly (`producer_id`, `producer_epoch`).
    pub fn verify_partitions_in_transaction(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<Vec<bool>, ResponseError> {
        self.check_active()?;
        if transactional_id.is_empty() {
            return Err(ResponseError::InvalidRequest);
        }
        self.check_owner(transactional_id)?;
        let shard = self.state.shard(transactional_id).lock();
        let entry = shard
            .transactions
            .get(transactional_id)
            .ok_or(ResponseError::InvalidProducerIdMapping)?;
        let md = &entry.metadata;
        if md.producer_id != producer_id {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        if md.producer_epoch != producer_epoch {
            return Err(ResponseError::ProducerFenced);
        }
        if md.state.is_prepare() {
            return Err(ResponseError::ConcurrentTransactions);
        }
        let ongoing = md.state == TransactionState::Ongoing;
        Ok(partitions
            .iter()
            .map(|tp| ongoing && md.topic_partitions.contains(tp))
            .collect())
    }

    /// Ok(()) if every partition is in the ongoing transaction of `transactional_id` at
    /// exactly (`producer_id`, `producer_epoch`); with `add`, adds the missing ones first (TV2:
    /// Produce v12+, TxnOffsetCommit v5). Errors as Kafka: INVALID_PRODUCER_ID_MAPPING,
    /// PRODUCER_FENCED (callers map it to INVALID_PRODUCER_EPOCH for old versions),
    /// INVALID_TXN_STATE (partition not in the transaction and `!add`),
    /// CONCURRENT_TRANSACTIONS (the transaction is completing).
    pub async fn verify_or_add_partitions(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[(String, i32)],
        add: bool,
        now_ms: i64,
    ) -> Result<(), ResponseError> {
        if add {
            let partitions: BTreeSet<(String, i32)> = partitions.iter().cloned().collect();
            return self
                .add_partitions_to_transaction(
                    transactional_id,
                    producer_id,
                    producer_epoch,
                    &partitions,
                    TV_2,
                    now_ms,
                )
                .await;
        }
        let found = self.verify_partitions_in_transaction(
            transactional_id,
            producer_id,
            producer_epoch,
            partitions,
        )?;
        if found.iter().all(|f| *f) {
            Ok(())
        } else {
            Err(ResponseError::InvalidTxnState)
        }
    }

    // ------------------------------------------------------------------------ EndTxn

    /// EndTxn (Kafka's `handleEndTransaction`): validates, persists PrepareCommit or
    /// PrepareAbort, writes the markers (outside the shard lock) and persists CompleteCommit or
    /// CompleteAbort. The answer depends only on the PrepareX append: marker failures leave the
    /// transaction for the timer. `client_transaction_version` is 2 for EndTxn v5+ (the epoch
    /// is bumped; the returned producer id and epoch are the ones to use next).
    pub async fn end_transaction(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        client_transaction_version: i16,
        now_ms: i64,
    ) -> Result<(i64, i16), ResponseError> {
        let mut pending = Pending::default();
        let answer = self.end_transaction_locally(
            transactional_id,
            (producer_id, producer_epoch),
            commit,
            client_transaction_version,
            now_ms,
            &mut pending,
        );
        self.finish(answer, pending, now_ms).await
    }

    fn end_transaction_locally(
        &self,
        transactional_id: &str,
        (producer_id, producer_epoch): (i64, i16),
        commit: bool,
        client_transaction_version: i16,
        now_ms: i64,
        pending: &mut Pending,
    ) -> Result<(i64, i16), ResponseError> {
        self.check_active()?;
        if transactional_id.is_empty() {
            return Err(ResponseError::InvalidRequest);
        }
        self.check_owner(transactional_id)?;
        let partition = self.partition_for(transactional_id);
        let (result, job) = {
            let mut shard = self.state.shard(transactional_id).lock();
            let entry = shard
                .transactions
                .get_mut(transactional_id)
                .ok_or(ResponseError::InvalidProducerIdMapping)?;
            pending.depends_on(partition, entry);
            let transit = match self.prepare_end_transaction(
                entry,
                producer_id,
                producer_epoch,
                commit,
                client_transaction_version,
                now_ms,
            )? {
                EndStep::Done(result) => return Ok(result),
                EndStep::Transit(transit) => transit,
            };
            let written_offset =
                self.state
                    .append_transition(partition, &mut entry.metadata, &transit, now_ms)?;
            entry.written_offset = written_offset;
            pending.wrote(partition, written_offset);
            let md = &entry.metadata;
            let result = if supports_epoch_bump(md.client_transaction_version)
                && md.next_producer_id != NO_PRODUCER_ID
            {
                (md.next_producer_id, 0)
            } else {
                (md.producer_id, md.producer_epoch)
            };
            debug!(transactional_id, state = %md.state, "transaction completing");
            (result, take_marker_job(entry))
        };
        // Written once PrepareCommit/PrepareAbort is committed (see `finish`).
        pending.markers = job;
        Ok(result)
    }

    fn prepare_end_transaction(
        &self,
        entry: &TxnEntry,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        client_transaction_version: i16,
        now_ms: i64,
    ) -> Result<EndStep, ResponseError> {
        use TransactionState::*;
        let md = &entry.metadata;
        let is_v2 = supports_epoch_bump(md.client_transaction_version);
        let retry_on_overflow = is_v2
            && md.previous_producer_id == producer_id
            && producer_epoch == i16::MAX - 1
            && md.producer_epoch == 0;
        let retry_on_epoch_bump =
            is_v2 && i32::from(md.producer_epoch) == i32::from(producer_epoch) + 1;
        let valid_epoch = if is_v2 {
            match md.state {
                Ongoing | Empty | Dead | PrepareEpochFence => producer_epoch == md.producer_epoch,
                PrepareCommit | PrepareAbort => retry_on_epoch_bump,
                CompleteCommit | CompleteAbort => {
                    retry_on_epoch_bump
                        || retry_on_overflow
                        || (supports_epoch_bump(client_transaction_version)
                            && producer_epoch == md.producer_epoch)
                }
            }
        } else {
            producer_epoch == md.producer_epoch
        };
        if md.producer_id != producer_id && !retry_on_overflow {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        if !valid_epoch {
            return Err(ResponseError::ProducerFenced);
        }
        let target = if commit { PrepareCommit } else { PrepareAbort };
        let illegal = |err: metadata::IllegalTransition| {
            warn!(error = %err, "EndTxn: illegal transition");
            ResponseError::UnknownServerError
        };
        let invalid_state = || {
            debug!(transactional_id = md.transactional_id.as_str(), state = %md.state, commit,
                "EndTxn in a state that does not allow it");
            Err(ResponseError::InvalidTxnState)
        };
        let next_producer_id = || -> Result<i64, ResponseError> {
            if supports_epoch_bump(client_transaction_version) && md.is_producer_epoch_exhausted() {
                self.generate_producer_id()
            } else {
                Ok(NO_PRODUCER_ID)
            }
        };
        match md.state {
            Ongoing => {
                if entry.markers_in_flight {
                    return Err(ResponseError::ConcurrentTransactions);
                }
                md.prepare_abort_or_commit(
                    target,
                    client_transaction_version,
                    next_producer_id()?,
                    now_ms,
                )
                .map(EndStep::Transit)
                .map_err(illegal)
            }
            CompleteCommit | CompleteAbort
                if (retry_on_epoch_bump || retry_on_overflow) && is_v2 =>
            {
                // A retry of the EndTxn that completed (its bump is ours).
                if (md.state == CompleteCommit) == commit {
                    Ok(EndStep::Done((md.producer_id, md.producer_epoch)))
                } else {
                    invalid_state()
                }
            }
            Empty | CompleteCommit | CompleteAbort
                if supports_epoch_bump(client_transaction_version) =>
            {
                // TV2: nothing was added since the last transaction (no produce got through);
                // end it with the bump and no markers.
                md.prepare_empty_end(target, next_producer_id()?, now_ms)
                    .map(EndStep::Transit)
                    .map_err(illegal)
            }
            CompleteCommit if commit => Ok(EndStep::Done((md.producer_id, md.producer_epoch))),
            CompleteAbort if !commit => Ok(EndStep::Done((md.producer_id, md.producer_epoch))),
            PrepareCommit if commit => Err(ResponseError::ConcurrentTransactions),
            PrepareAbort if !commit => Err(ResponseError::ConcurrentTransactions),
            Dead | PrepareEpochFence => Err(ResponseError::UnknownServerError),
            _ => invalid_state(),
        }
    }

    // ------------------------------------------------------------------------ markers

    fn marker_writer(&self) -> Arc<dyn TxnMarkerWriter> {
        self.marker_writer.read().clone()
    }

    /// Writes markers through the current marker writer (the WriteTxnMarkers handler).
    pub fn write_markers(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
        partitions: &[(String, i32)],
    ) -> Vec<((String, i32), Result<(), ResponseError>)> {
        if partitions.is_empty() {
            return Vec::new();
        }
        self.marker_writer().write_markers(
            producer_id,
            producer_epoch,
            coordinator_epoch,
            commit,
            partitions,
        )
    }

    /// Writes a transaction's markers (no lock held), then, if every partition has its
    /// marker, persists CompleteCommit/CompleteAbort. Partitions that failed stay for a retry.
    fn send_markers(&self, job: MarkerJob, now_ms: i64) {
        let results = if job.partitions.is_empty() {
            Vec::new()
        } else {
            self.marker_writer().write_markers(
                job.producer_id,
                job.producer_epoch,
                COORDINATOR_EPOCH,
                job.commit,
                &job.partitions,
            )
        };
        let partition = self.partition_for(&job.transactional_id);
        let mut shard = self.state.shard(&job.transactional_id).lock();
        let Some(entry) = shard.transactions.get_mut(&job.transactional_id) else {
            return;
        };
        entry.markers_in_flight = false;
        let md = &mut entry.metadata;
        if !md.state.is_prepare()
            || md.producer_id != job.producer_id
            || md.producer_epoch != job.producer_epoch
        {
            return;
        }
        let mut failed = false;
        for (tp, result) in results {
            match result {
                Ok(()) => {
                    md.topic_partitions.remove(&tp);
                }
                Err(
                    error @ (ResponseError::UnknownTopicOrPartition
                    | ResponseError::UnsupportedForMessageFormat
                    | ResponseError::UnsupportedVersion
                    | ResponseError::InvalidProducerEpoch
                    | ResponseError::TransactionCoordinatorFenced),
                ) => {
                    warn!(
                        transactional_id = job.transactional_id.as_str(),
                        topic = tp.0.as_str(),
                        partition = tp.1,
                        ?error,
                        "transaction marker dropped"
                    );
                    md.topic_partitions.remove(&tp);
                }
                Err(error) => {
                    debug!(
                        transactional_id = job.transactional_id.as_str(),
                        topic = tp.0.as_str(),
                        partition = tp.1,
                        ?error,
                        "transaction marker failed; will retry"
                    );
                    failed = true;
                }
            }
        }
        if !md.topic_partitions.is_empty() {
            if !failed {
                warn!(
                    transactional_id = job.transactional_id.as_str(),
                    "marker writer left partitions unanswered; will retry"
                );
            }
            entry.marker_retry_at_ms = now_ms.saturating_add(MARKER_RETRY_BACKOFF_MS);
            self.timers_changed.notify_one();
            return;
        }
        let transit = match md.prepare_complete(now_ms) {
            Ok(transit) => transit,
            Err(err) => {
                warn!(error = %err, "cannot complete a transaction");
                return;
            }
        };
        match self
            .state
            .append_transition(partition, &mut entry.metadata, &transit, now_ms)
        {
            Ok(written_offset) => {
                entry.written_offset = written_offset;
                debug!(transactional_id = job.transactional_id.as_str(),
                    state = %entry.metadata.state, "transaction completed")
            }
            Err(_) => {
                entry.marker_retry_at_ms = now_ms.saturating_add(MARKER_RETRY_BACKOFF_MS);
                self.timers_changed.notify_one();
            }
        }
    }

    /// Writes the markers of every transaction in PrepareCommit/PrepareAbort whose retry is
    /// due (failed writes, and transactions found in those states at load). Returns how many
    /// transactions were tried.
    pub fn retry_pending_markers(&self, now_ms: i64) -> usize {
        let mut jobs = Vec::new();
        for shard in &self.state.shards {
            let mut shard = shard.lock();
            let partition = shard.partition;
            for entry in shard.transactions.values_mut() {
                if entry.metadata.state.is_prepare()
                    && !entry.markers_in_flight
                    && entry.marker_retry_at_ms <= now_ms
                {
                    // Never before the PrepareX record is committed.
                    if !self.state.is_committed(partition, entry.written_offset) {
                        entry.marker_retry_at_ms = now_ms.saturating_add(MARKER_RETRY_BACKOFF_MS);
                        continue;
                    }
                    jobs.extend(take_marker_job(entry));
                }
            }
        }
        let tried = jobs.len();
        for job in jobs {
            self.send_markers(job, now_ms);
        }
        tried
    }

    fn next_marker_retry_ms(&self) -> Option<i64> {
        self.state
            .shards
            .iter()
            .filter_map(|shard| {
                shard
                    .lock()
                    .transactions
                    .values()
                    .filter(|e| e.metadata.state.is_prepare() && !e.markers_in_flight)
                    .map(|e| e.marker_retry_at_ms)
                    .min()
            })
            .min()
    }

    // ------------------------------------------------------------------------ timers

    /// Aborts Ongoing transactions older than their timeout (Kafka's
    /// `abortTimedOutTransactions`), fencing their producer with an epoch bump. Returns how many.
    pub fn abort_timed_out_transactions(&self, now_ms: i64) -> usize {
        let mut jobs = Vec::new();
        for shard in &self.state.shards {
            let mut shard = shard.lock();
            let timed_out = self.state.timed_out_transactions(&shard, now_ms);
            for transactional_id in timed_out {
                if let Some(job) = self.fence_timed_out(&mut shard, &transactional_id, now_ms) {
                    jobs.push(job);
                }
            }
        }
        let aborted = jobs.len();
        for job in jobs {
            self.send_markers(job, now_ms);
        }
        aborted
    }

    fn fence_timed_out(
        &self,
        shard: &mut TxnShard,
        transactional_id: &str,
        now_ms: i64,
    ) -> Option<MarkerJob> {
        let partition = shard.partition;
        let entry = shard.transactions.get_mut(transactional_id)?;
        let transit = match entry
            .metadata
            .prepare_fence_and_abort(|| self.generate_producer_id(), now_ms)
        {
            Ok(Ok(transit)) => transit,
            Ok(Err(error)) => {
                warn!(
                    transactional_id,
                    ?error,
                    "cannot abort a timed out transaction"
                );
                return None;
            }
            Err(err) => {
                warn!(error = %err, "cannot abort a timed out transaction");
                return None;
            }
        };
        match self
            .state
            .append_transition(partition, &mut entry.metadata, &transit, now_ms)
        {
            Ok(written_offset) => {
                entry.written_offset = written_offset;
                info!(
                    transactional_id,
                    producer_id = entry.metadata.producer_id,
                    producer_epoch = entry.metadata.producer_epoch,
                    "aborting a timed out transaction"
                );
                if self.state.is_committed(partition, written_offset) {
                    take_marker_job(entry)
                } else {
                    // The markers wait for the PrepareAbort's commit: the timer retries.
                    entry.marker_retry_at_ms = now_ms.saturating_add(MARKER_RETRY_BACKOFF_MS);
                    None
                }
            }
            Err(error) => {
                warn!(
                    transactional_id,
                    ?error,
                    "cannot abort a timed out transaction"
                );
                None
            }
        }
    }

    /// Expires transactional ids idle longer than `transactional.id.expiration.ms`.
    pub fn remove_expired_transactional_ids(&self, now_ms: i64) -> usize {
        self.state.remove_expired_transactional_ids(now_ms)
    }

    /// Runs everything due at `now_ms`: the periodic abort and expiration scans (at their
    /// intervals) and marker retries.
    pub fn poll_timers(&self, now_ms: i64) {
        if now_ms >= self.next_abort_check_ms.load(Ordering::Acquire) {
            self.next_abort_check_ms.store(
                now_ms.saturating_add(self.config.abort_timed_out_transactions_interval_ms),
                Ordering::Release,
            );
            self.abort_timed_out_transactions(now_ms);
        }
        if now_ms >= self.next_expiration_check_ms.load(Ordering::Acquire) {
            self.next_expiration_check_ms.store(
                now_ms.saturating_add(self.config.remove_expired_transactional_ids_interval_ms),
                Ordering::Release,
            );
            self.remove_expired_transactional_ids(now_ms);
        }
        self.retry_pending_markers(now_ms);
    }

    /// The earliest time [`Self::poll_timers`] has something to do.
    pub fn next_deadline_ms(&self) -> i64 {
        let mut next = self
            .next_abort_check_ms
            .load(Ordering::Acquire)
            .min(self.next_expiration_check_ms.load(Ordering::Acquire));
        if let Some(retry) = self.next_marker_retry_ms() {
            next = next.min(retry);
        }
        next
    }

    /// The coordinator's timer loop, until `shutdown` flips (the server spawns it).
    pub async fn run_timers(&self, mut shutdown: watch::Receiver<bool>) {
        loop {
            let notified = self.timers_changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = now_ms();
            if self.is_active() {
                self.poll_timers(now);
            }
            let wake_ms = self
                .next_deadline_ms()
                .min(now.saturating_add(TIMER_IDLE_SLEEP_MS));
            let sleep_ms = wake_ms.saturating_sub(now_ms()).max(0) as u64;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(sleep_ms)) => {}
                _ = &mut notified => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }

    // ------------------------------------------------------------------------ admin

    /// DescribeTransactions for one transactional id (Kafka's `handleDescribeTransactions`).
    pub fn describe_transaction(
        &self,
        transactional_id: &str,
    ) -> describe_transactions_response::TransactionState {
        let state = describe_transactions_response::TransactionState::default()
            .with_transactional_id(TransactionalId(StrBytes::from_string(
                transactional_id.to_string(),
            )));
        if !self.is_active() {
            return state.with_error_code(ResponseError::CoordinatorNotAvailable.code());
        }
        if transactional_id.is_empty() {
            return state.with_error_code(ResponseError::InvalidRequest.code());
        }
        let Some(md) = self.transaction_metadata(transactional_id) else {
            return state.with_error_code(ResponseError::TransactionalIdNotFound.code());
        };
        if md.state == TransactionState::Dead {
            return state.with_error_code(ResponseError::TransactionalIdNotFound.code());
        }
        let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (topic, partition) in &md.topic_partitions {
            topics.entry(topic).or_default().push(*partition);
        }
        state
            .with_producer_id(ProducerId(md.producer_id))
            .with_producer_epoch(md.producer_epoch)
            .with_transaction_state(StrBytes::from_static_str(md.state.name()))
            .with_transaction_timeout_ms(md.txn_timeout_ms)
            .with_transaction_start_time_ms(md.txn_start_timestamp)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(topic, partitions)| {
                        TopicData::default()
                            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                            .with_partitions(partitions)
                    })
                    .collect(),
            )
    }

    /// ListTransactions (Kafka's `listTransactionStates`): filters by state names (unknown
    /// ones reported), producer ids, minimum running time (`duration_ms` >= 0, v1) and a
    /// transactional id pattern (v2, a regular expression the whole id must match). Sorted by
    /// transactional id.
    pub fn list_transactions(
        &self,
        state_filters: &[String],
        producer_id_filters: &[i64],
        duration_ms: i64,
        transactional_id_pattern: Option<&str>,
        now_ms: i64,
    ) -> ListTransactionsResponse {
        let response = ListTransactionsResponse::default();
        if !self.is_active() {
            return response.with_error_code(ResponseError::CoordinatorNotAvailable.code());
        }
        let pattern = match transactional_id_pattern.filter(|p| !p.is_empty()) {
            None => None,
            Some(p) => {
                let compiled = (p.len() <= TRANSACTIONAL_ID_PATTERN_BYTES_MAX)
                    .then(|| {
                        regex::RegexBuilder::new(&format!("^(?:{p})$"))
                            .size_limit(TRANSACTIONAL_ID_PATTERN_SIZE_MAX)
                            .build()
                            .ok()
                    })
                    .flatten();
                match compiled {
                    Some(regex) => Some(regex),
                    None => {
                        return response
                            .with_error_code(ResponseError::InvalidRegularExpression.code())
                    }
                }
            }
        };
        let mut states = HashSet::new();
        let mut unknown = Vec::new();
        for name in state_filters {
            match TransactionState::from_name(name) {
                Some(state) => {
                    states.insert(state);
                }
                None => unknown.push(StrBytes::from_string(name.clone())),
            }
        }
        let producer_ids: HashSet<i64> = producer_id_filters.iter().copied().collect();
        let mut listed = Vec::new();
        for shard in &self.state.shards {
            let shard = shard.lock();
            for entry in shard.transactions.values() {
                let md = &entry.metadata;
                let include = md.state != TransactionState::Dead
                    && (producer_ids.is_empty() || producer_ids.contains(&md.producer_id))
                    && (state_filters.is_empty() || states.contains(&md.state))
                    && (duration_ms < 0
                        || now_ms.saturating_sub(md.txn_start_timestamp) > duration_ms)
                    && pattern
                        .as_ref()
                        .is_none_or(|p| p.is_match(&md.transactional_id));
                if include {
                    listed.push(
                        list_transactions_response::TransactionState::default()
                            .with_transactional_id(TransactionalId(StrBytes::from_string(
                                md.transactional_id.clone(),
                            )))
                            .with_producer_id(ProducerId(md.producer_id))
                            .with_transaction_state(StrBytes::from_static_str(md.state.name())),
                    );
                }
            }
        }
        listed.sort_by(|a, b| a.transactional_id.as_str().cmp(b.transactional_id.as_str()));
        response
            .with_unknown_state_filters(unknown)
            .with_transaction_states(listed)
    }
}

enum EndStep {
    /// Nothing to write: answer with this producer id and epoch (a retry of a completed end).
    Done((i64, i16)),
    Transit(TxnTransitMetadata),
}

/// Marks a PrepareX transaction's markers as being written and returns what to write.
fn take_marker_job(entry: &mut TxnEntry) -> Option<MarkerJob> {
    let md = &entry.metadata;
    if !md.state.is_prepare() || entry.markers_in_flight {
        return None;
    }
    entry.markers_in_flight = true;
    Some(MarkerJob {
        transactional_id: md.transactional_id.clone(),
        producer_id: md.producer_id,
        producer_epoch: md.producer_epoch,
        commit: md.state == TransactionState::PrepareCommit,
        partitions: md.topic_partitions.iter().cloned().collect(),
    })
}

#[cfg(test)]
mod tests;
