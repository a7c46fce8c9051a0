//! `FetcherCore`: a follower's replication from one leader (Kafka `AbstractFetcherThread` with
//! `ReplicaFetcherThread.processPartitionData`/`truncate`), and the leader's answer to a
//! follower's fetch ([`serve_follower_fetch`], Kafka `Partition.fetchRecords`/`readRecords`).
//!
//! The core keeps per partition the fetch offset (= the log end offset), the leader epoch it
//! fetches under, a phase and a back-off deadline. It never does network I/O: [`FetcherCore::poll`]
//! says which request a partition needs next ([`PartitionRequest`]: Fetch, OffsetForLeaderEpoch
//! or ListOffsets), the shell sends it (one at a time per partition, as Kafka's fetcher thread;
//! again after a timeout), and hands the answer back together with the request it answers, so
//! answers to superseded requests (delayed, duplicated, reordered) are ignored. Log
//! changes (append, truncation, high watermark, log start) go through the [`ReplicaLog`] it is
//! handed; what happened comes back as data ([`FetchOutcome`]).
//!
//! Handling, as Kafka with truncation on fetch (KIP-320/KIP-595 era, IBP >= 2.7):
//! - records: `append_as_follower`, then high watermark = min(leader's, log end) (may go down:
//!   Kafka `maybeUpdateHighWatermark`), log start raised to the leader's.
//! - `DivergingEpoch{epoch, end_offset}`: truncate per `getOffsetTruncationState` (below),
//!   then fetch again; an intermediate answer (an epoch we do not know) leads to another
//!   divergence answer at the next fetch.
//! - no local epoch (empty cache): phase `Truncating`, truncate to the local high watermark
//!   (Kafka `truncateToHighWatermark`, KIP-279); with an epoch, `Truncating` asks
//!   OffsetForLeaderEpoch and an UNDEFINED answer truncates to the high watermark.
//! - OFFSET_OUT_OF_RANGE: ask the leader's earliest and latest offsets (ListOffsets, Kafka
//!   `fetchOffsetAndTruncate`); latest below our log end → `Truncating` (epochs decide where);
//!   earliest above our log end → `truncate_fully_and_start_at(earliest)`; else retry.
//! - FENCED_LEADER_EPOCH with our current epoch: stop fetching the partition until the metadata
//!   image brings a new epoch (`add_partition` again); with an older request epoch, back off.
//! - UNKNOWN_LEADER_EPOCH, NOT_LEADER_OR_FOLLOWER, other errors, invalid records: back off
//!   `replica.fetch.backoff.ms`, keep the state.
//!
//! Truncation below the local high watermark cannot happen after clean elections (the leader
//! holds every committed batch); Kafka truncates anyway (the leader is the truth) and warns.
//! So does this core, and it reports it ([`FetchOutcome::Truncated::below_high_watermark`]) for
//! the shell to log and the simulation to count as a failure.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use fjord_protocol::records::BatchIter;
use fjord_protocol::ResponseError;
use fjord_storage::StorageError;
use uuid::Uuid;

use super::leader_state::{BrokerView, FollowerFetch, FollowerFetchEffects, LeaderState};
use super::replica_log::ReplicaLog;

/// A partition by topic id and index.
pub type PartitionKey = (Uuid, i32);

/// Kafka's UNDEFINED_EPOCH / UNDEFINED_EPOCH_OFFSET.
pub const UNDEFINED: i64 = -1;

/// `(epoch, end offset)` as Fetch's `DivergingEpoch` and OffsetForLeaderEpoch answer it;
/// `-1` for undefined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEndOffset {
    pub epoch: i32,
    pub end_offset: i64,
}

impl EpochEndOffset {
    pub const UNDEFINED: EpochEndOffset = EpochEndOffset {
        epoch: -1,
        end_offset: UNDEFINED,
    };
}

/// Where a partition is in its replication (Kafka `ReplicaState` of the fetcher).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchPhase {
    Fetching,
    /// Finding the divergence point before fetching (no epochs, or after an out-of-range
    /// fetch above the leader's log end).
    Truncating,
    /// Waiting for the leader's earliest/latest offsets after OFFSET_OUT_OF_RANGE.
    ResolvingOutOfRange,
}

/// The fetcher's state of one partition (Kafka `PartitionFetchState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionFetchState {
    /// Where the next fetch starts: the log end offset once truncation is done.
    pub fetch_offset: i64,
    /// The leader epoch of the leader we fetch from (sent as `current_leader_epoch`).
    pub current_leader_epoch: i32,
    pub phase: FetchPhase,
    /// No request for this partition before this time (`replica.fetch.backoff.ms`).
    pub delayed_until_ms: Option<i64>,
    /// How far behind the leader's high watermark the last fetch left us.
    pub lag: Option<i64>,
}

/// One partition's part of a Fetch request (Kafka `FetchRequest.PartitionData`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchPartitionRequest {
    pub key: PartitionKey,
    pub fetch_offset: i64,
    pub current_leader_epoch: i32,
    /// KIP-320: the epoch of the last batch we hold, for the leader's divergence check.
    pub last_fetched_epoch: Option<i32>,
    pub log_start_offset: i64,
}

/// One partition's answer in a Fetch response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPartitionResponse {
    pub error: Option<ResponseError>,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub diverging_epoch: Option<EpochEndOffset>,
    pub records: Bytes,
}

impl FetchPartitionResponse {
    pub fn error(error: ResponseError) -> Self {
        Self {
            error: Some(error),
            high_watermark: UNDEFINED,
            log_start_offset: UNDEFINED,
            diverging_epoch: None,
            records: Bytes::new(),
        }
    }
}

/// An OffsetForLeaderEpoch partition entry (`replica_id` = this broker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochRequest {
    pub key: PartitionKey,
    pub current_leader_epoch: i32,
    pub leader_epoch: i32,
}

/// ListOffsets EARLIEST and LATEST for one partition (`replica_id` = this broker, so the
/// leader answers from its log start and log end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetsRequest {
    pub key: PartitionKey,
    pub current_leader_epoch: i32,
}

/// The leader's earliest (log start) and latest (log end) offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderOffsets {
    pub earliest: i64,
    pub latest: i64,
}

/// What a partition needs sent next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionRequest {
    Fetch(FetchPartitionRequest),
    OffsetForLeaderEpoch(EpochRequest),
    ListOffsets(OffsetsRequest),
}

/// What handling an answer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchOutcome {
    /// The answer was for a request that no longer matches the partition's state.
    Ignored,
    /// Records appended (possibly none); the high watermark or log start may have moved.
    Appended {
        records_count: u64,
        high_watermark_changed: bool,
    },
    /// Truncated to `offset`. `completed == false`: an intermediate point, another divergence
    /// check follows.
    Truncated {
        offset: i64,
        completed: bool,
        below_high_watermark: bool,
    },
    /// Emptied and restarted at the leader's log start.
    RestartedAt { offset: i64 },
    /// Nothing to truncate; fetching resumes at the log end.
    Resumed,
    /// OFFSET_OUT_OF_RANGE: the next request asks the leader's offsets (ListOffsets).
    OutOfRange,
    /// The leader's log ends below ours: the next request looks for the divergence by epochs
    /// (or truncates to the high watermark without epochs).
    Truncating,
    /// Backing off until `until_ms`.
    BackedOff { until_ms: i64 },
    /// Fenced at our current epoch: removed from the fetcher until new metadata.
    AwaitingMetadata,
    /// A storage failure: removed from the fetcher (Kafka `markPartitionFailed`).
    Failed,
}

/// `replica.fetch.backoff.ms` and the partition limit of one fetcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetcherConfig {
    pub fetch_backoff_ms: i64,
    pub max_partitions: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetcherError {
    #[error("fetcher already holds {0} partitions")]
    Full(usize),
}

/// A follower's replication from one leader broker (see the module docs).
#[derive(Debug, Clone)]
pub struct FetcherCore {
    pub leader_id: i32,
    config: FetcherConfig,
    partitions: BTreeMap<PartitionKey, PartitionFetchState>,
    /// Fenced or failed partitions, until `add_partition` brings them back.
    failed: BTreeSet<PartitionKey>,
}

impl FetcherCore {
    pub fn new(leader_id: i32, config: FetcherConfig) -> Self {
        Self {
            leader_id,
            config,
            partitions: BTreeMap::new(),
            failed: BTreeSet::new(),
        }
    }

    pub fn partition(&self, key: &PartitionKey) -> Option<&PartitionFetchState> {
        self.partitions.get(key)
    }

    pub fn partitions(&self) -> impl Iterator<Item = (&PartitionKey, &PartitionFetchState)> {
        self.partitions.iter()
    }

    pub fn is_failed(&self, key: &PartitionKey) -> bool {
        self.failed.contains(key)
    }

    /// Starts (or keeps) fetching `key` under `current_leader_epoch` (Kafka
    /// `addPartitions`/`partitionFetchState`): an existing state at the same epoch is kept;
    /// otherwise fetching starts at the log end if the log has epochs, else in `Truncating`
    /// at the high watermark. Returns whether the state was (re)initialised.
    pub fn add_partition(
        &mut self,
        key: PartitionKey,
        current_leader_epoch: i32,
        log: &impl ReplicaLog,
    ) -> Result<bool, FetcherError> {
        if let Some(state) = self.partitions.get(&key) {
            if state.current_leader_epoch == current_leader_epoch {
                return Ok(false);
            }
        } else if self.partitions.len() >= self.config.max_partitions {
            return Err(FetcherError::Full(self.partitions.len()));
        }
        self.failed.remove(&key);
        let (fetch_offset, phase) = match log.latest_epoch() {
            Some(_) => (log.log_end_offset(), FetchPhase::Fetching),
            None => (log.high_watermark(), FetchPhase::Truncating),
        };
        self.partitions.insert(
            key,
            PartitionFetchState {
                fetch_offset,
                current_leader_epoch,
                phase,
                delayed_until_ms: None,
                lag: None,
            },
        );
        Ok(true)
    }

    /// Stops fetching `key` (became leader, deleted, moved to another leader).
    pub fn remove_partition(&mut self, key: &PartitionKey) -> Option<PartitionFetchState> {
        self.failed.remove(key);
        self.partitions.remove(key)
    }

    /// The request `key` needs next, or `None` while backing off (or unknown). A `Truncating`
    /// partition without epochs is truncated to its high watermark here, then fetches.
    pub fn poll(
        &mut self,
        key: &PartitionKey,
        log: &mut impl ReplicaLog,
        now_ms: i64,
    ) -> Result<Option<PartitionRequest>, StorageError> {
        let Some(state) = self.partitions.get_mut(key) else {
            return Ok(None);
        };
        if state.delayed_until_ms.is_some_and(|until| now_ms < until) {
            return Ok(None);
        }
        state.delayed_until_ms = None;
        match state.phase {
            FetchPhase::Truncating => match log.latest_epoch() {
                Some(leader_epoch) => {
                    return Ok(Some(PartitionRequest::OffsetForLeaderEpoch(EpochRequest {
                        key: *key,
                        current_leader_epoch: state.current_leader_epoch,
                        leader_epoch,
                    })));
                }
                None => {
                    // Kafka `truncateToHighWatermark`.
                    let high_watermark = log.high_watermark();
                    if let Err(error) = log.truncate_to(high_watermark) {
                        self.fail(key);
                        return Err(error);
                    }
                    state.phase = FetchPhase::Fetching;
                }
            },
            FetchPhase::ResolvingOutOfRange => {
                return Ok(Some(PartitionRequest::ListOffsets(OffsetsRequest {
                    key: *key,
                    current_leader_epoch: state.current_leader_epoch,
                })));
            }
            FetchPhase::Fetching => {}
        }
        // The log is changed only through this core, so the fetch offset is the log end; a
        // difference means someone else truncated or appended: follow the log.
        state.fetch_offset = log.log_end_offset();
        Ok(Some(PartitionRequest::Fetch(FetchPartitionRequest {
            key: *key,
            fetch_offset: state.fetch_offset,
            current_leader_epoch: state.current_leader_epoch,
            last_fetched_epoch: log.latest_epoch(),
            log_start_offset: log.log_start_offset(),
        })))
    }

    fn fail(&mut self, key: &PartitionKey) {
        self.partitions.remove(key);
        self.failed.insert(*key);
    }

    fn back_off(&mut self, key: &PartitionKey, now_ms: i64) -> FetchOutcome {
        let backoff = self.config.fetch_backoff_ms;
        match self.partitions.get_mut(key) {
            Some(state) => {
                let until = *state
                    .delayed_until_ms
                    .get_or_insert(now_ms.saturating_add(backoff));
                FetchOutcome::BackedOff { until_ms: until }
            }
            None => FetchOutcome::Ignored,
        }
    }

    /// Kafka `onPartitionFenced`: fenced at the epoch we fetch under → stop until new
    /// metadata; the request carried an older epoch → back off and retry.
    fn fenced(&mut self, key: &PartitionKey, request_epoch: i32, now_ms: i64) -> FetchOutcome {
        match self.partitions.get(key) {
            Some(state) if state.current_leader_epoch == request_epoch => {
                self.fail(key);
                FetchOutcome::AwaitingMetadata
            }
            Some(_) => self.back_off(key, now_ms),
            None => FetchOutcome::Ignored,
        }
    }

    /// The state, if `request` still describes it (same epoch, phase, offsets).
    fn current(
        &self,
        key: &PartitionKey,
        current_leader_epoch: i32,
        phase: FetchPhase,
    ) -> Option<PartitionFetchState> {
        self.partitions
            .get(key)
            .filter(|s| s.current_leader_epoch == current_leader_epoch && s.phase == phase)
            .copied()
    }

    /// Handles one partition of a Fetch response to `request`.
    pub fn on_fetch_response(
        &mut self,
        request: &FetchPartitionRequest,
        response: FetchPartitionResponse,
        log: &mut impl ReplicaLog,
        now_ms: i64,
    ) -> Result<FetchOutcome, StorageError> {
        let key = request.key;
        let Some(state) = self.current(&key, request.current_leader_epoch, FetchPhase::Fetching)
        else {
            return Ok(FetchOutcome::Ignored);
        };
        let unchanged = state.fetch_offset == request.fetch_offset
            && log.log_end_offset() == request.fetch_offset
            && log.latest_epoch() == request.last_fetched_epoch;
        if !unchanged {
            return Ok(FetchOutcome::Ignored);
        }
        match response.error {
            None => {}
            Some(ResponseError::OffsetOutOfRange) => {
                if let Some(state) = self.partitions.get_mut(&key) {
                    state.phase = FetchPhase::ResolvingOutOfRange;
                }
                return Ok(FetchOutcome::OutOfRange);
            }
            Some(ResponseError::FencedLeaderEpoch) => {
                return Ok(self.fenced(&key, request.current_leader_epoch, now_ms));
            }
            Some(_) => return Ok(self.back_off(&key, now_ms)),
        }
        if let Some(diverging) = response.diverging_epoch {
            // The records (none are sent with a divergence) and the high watermark wait for
            // the next fetch, after the truncation.
            return self.truncate(&key, diverging, log);
        }
        let info = match log.append_as_follower(&response.records, now_ms) {
            Ok(info) => info,
            Err(StorageError::UnexpectedAppendOffset { offset, expected })
                if restart_needed(
                    log,
                    &response.records,
                    (offset, expected),
                    response.log_start_offset,
                ) =>
            {
                log.truncate_fully_and_start_at(offset)?;
                log.append_as_follower(&response.records, now_ms)?
            }
            Err(StorageError::InvalidRecords(_)) => return Ok(self.back_off(&key, now_ms)),
            Err(error) => {
                self.fail(&key);
                return Err(error);
            }
        };
        let high_watermark_changed = log.update_follower_high_watermark(response.high_watermark);
        if response.log_start_offset >= 0 {
            if let Err(error) =
                log.maybe_increment_log_start_offset(response.log_start_offset, now_ms)
            {
                self.fail(&key);
                return Err(error);
            }
        }
        let log_end_offset = log.log_end_offset();
        if let Some(state) = self.partitions.get_mut(&key) {
            state.fetch_offset = log_end_offset;
            state.lag = Some((response.high_watermark - log_end_offset).max(0));
        }
        Ok(FetchOutcome::Appended {
            records_count: info.records_count,
            high_watermark_changed,
        })
    }

    /// Handles the OffsetForLeaderEpoch answer to `request` (`Err` = the partition's error).
    pub fn on_epoch_response(
        &mut self,
        request: &EpochRequest,
        response: Result<EpochEndOffset, ResponseError>,
        log: &mut impl ReplicaLog,
        now_ms: i64,
    ) -> Result<FetchOutcome, StorageError> {
        let key = request.key;
        if self
            .current(&key, request.current_leader_epoch, FetchPhase::Truncating)
            .is_none()
            || log.latest_epoch() != Some(request.leader_epoch)
        {
            return Ok(FetchOutcome::Ignored);
        }
        match response {
            Ok(answer) => self.truncate(&key, answer, log),
            Err(ResponseError::FencedLeaderEpoch) => {
                Ok(self.fenced(&key, request.current_leader_epoch, now_ms))
            }
            Err(_) => Ok(self.back_off(&key, now_ms)),
        }
    }

    /// Handles the ListOffsets answer to `request` (Kafka `fetchOffsetAndTruncate`, see the
    /// module docs for where this differs).
    pub fn on_leader_offsets(
        &mut self,
        request: &OffsetsRequest,
        response: Result<LeaderOffsets, ResponseError>,
        log: &mut impl ReplicaLog,
        now_ms: i64,
    ) -> Result<FetchOutcome, StorageError> {
        let key = request.key;
        if self
            .current(
                &key,
                request.current_leader_epoch,
                FetchPhase::ResolvingOutOfRange,
            )
            .is_none()
        {
            return Ok(FetchOutcome::Ignored);
        }
        let offsets = match response {
            Ok(offsets) => offsets,
            Err(ResponseError::FencedLeaderEpoch) => {
                return Ok(self.fenced(&key, request.current_leader_epoch, now_ms))
            }
            Err(_) => return Ok(self.back_off(&key, now_ms)),
        };
        let log_end_offset = log.log_end_offset();
        let Some(state) = self.partitions.get_mut(&key) else {
            return Ok(FetchOutcome::Ignored);
        };
        if offsets.latest < log_end_offset {
            // Our log goes past the leader's: find the divergence by epochs.
            state.phase = FetchPhase::Truncating;
            return Ok(FetchOutcome::Truncating);
        }
        state.phase = FetchPhase::Fetching;
        if offsets.earliest > log_end_offset {
            if let Err(error) = log.truncate_fully_and_start_at(offsets.earliest) {
                self.fail(&key);
                return Err(error);
            }
            if let Some(state) = self.partitions.get_mut(&key) {
                state.fetch_offset = offsets.earliest;
            }
            return Ok(FetchOutcome::RestartedAt {
                offset: offsets.earliest,
            });
        }
        Ok(FetchOutcome::Resumed)
    }

    /// Truncates per Kafka `getOffsetTruncationState` and resumes fetching.
    fn truncate(
        &mut self,
        key: &PartitionKey,
        leader: EpochEndOffset,
        log: &mut impl ReplicaLog,
    ) -> Result<FetchOutcome, StorageError> {
        let (offset, completed) = offset_truncation_state(log, leader);
        let below_high_watermark = offset < log.high_watermark();
        if let Err(error) = log.truncate_to(offset) {
            self.fail(key);
            return Err(error);
        }
        let log_end_offset = log.log_end_offset();
        if let Some(state) = self.partitions.get_mut(key) {
            state.fetch_offset = log_end_offset;
            state.phase = FetchPhase::Fetching;
        }
        Ok(FetchOutcome::Truncated {
            offset,
            completed,
            below_high_watermark,
        })
    }
}

/// Whether an UnexpectedAppendOffset at `first` (we expected `expected`, our log end) is the
/// leader's log start inside the first batch it sent, so that the batch starts below our log
/// end; then our log restarts at the batch's base offset.
///
/// Kafka (`appendRecordsToFollowerOrFutureReplica`) does this only when our log is empty at
/// its start and marks the partition failed otherwise. But the leader's log start inside the
/// batch also means its epoch cache starts there and cannot show that our last batch
/// diverges from the leader's (the simulation found it: our last epoch-1 batch ends at 14,
/// the leader's epoch-2 batch 14..16 holds its log start 15, and it answers epoch 1 as ending
/// at 15). Everything we hold below the leader's log start is gone on the leader and below
/// the log start we take from it, so restarting at the batch loses nothing readable.
fn restart_needed(
    log: &impl ReplicaLog,
    records: &[u8],
    (first, expected): (i64, i64),
    leader_log_start_offset: i64,
) -> bool {
    let log_end_offset = log.log_end_offset();
    let Some(Ok((header, _))) = BatchIter::new(records).next() else {
        return false;
    };
    let straddles = expected == log_end_offset
        && first == header.base_offset
        && first < log_end_offset
        && header.last_offset() >= log_end_offset;
    straddles
        && (log_end_offset == log.log_start_offset()
            || first < log.log_start_offset()
            || leader_log_start_offset > first)
}

/// Kafka `AbstractFetcherThread.getOffsetTruncationState`: where to truncate given the
/// leader's `(epoch, end offset)` for our last epoch, and whether that is final.
pub fn offset_truncation_state(log: &impl ReplicaLog, leader: EpochEndOffset) -> (i64, bool) {
    let log_end_offset = log.log_end_offset();
    if leader.end_offset == UNDEFINED {
        // KIP-279: nothing known, keep what is committed.
        return (log.high_watermark(), true);
    }
    if leader.epoch < 0 {
        return (leader.end_offset.min(log_end_offset), true);
    }
    match log.end_offset_for_epoch(leader.epoch) {
        Some((epoch, end_offset)) if epoch != leader.epoch => {
            // We do not have the leader's epoch: cut to the end of our largest smaller epoch
            // and ask again.
            (end_offset.min(log_end_offset), false)
        }
        Some((_, end_offset)) => (end_offset.min(leader.end_offset).min(log_end_offset), true),
        None => (leader.end_offset.min(log_end_offset), true),
    }
}

/// The leader's divergence check for a follower fetch (Kafka `Partition.readRecords` with
/// `lastFetchedEpoch`): `Ok(Some(..))` answers DivergingEpoch without records; an epoch the
/// leader cannot place, or a fetch offset below its log start, is OFFSET_OUT_OF_RANGE.
pub fn check_follower_divergence(
    log: &impl ReplicaLog,
    fetch_offset: i64,
    last_fetched_epoch: Option<i32>,
) -> Result<Option<EpochEndOffset>, ResponseError> {
    let Some(fetch_epoch) = last_fetched_epoch else {
        return Ok(None);
    };
    let Some((epoch, end_offset)) = log.end_offset_for_epoch(fetch_epoch) else {
        return Err(ResponseError::OffsetOutOfRange);
    };
    if fetch_offset < log.log_start_offset() {
        return Err(ResponseError::OffsetOutOfRange);
    }
    if epoch < fetch_epoch || end_offset < fetch_offset {
        return Ok(Some(EpochEndOffset { epoch, end_offset }));
    }
    Ok(None)
}

/// What a leader does with one partition of a follower's Fetch (Kafka `fetchRecords` for a
/// follower, then `updateFollowerFetchState`): epoch check (older → FENCED_LEADER_EPOCH, newer
/// → UNKNOWN_LEADER_EPOCH), divergence check, a read up to the log end, and the follower's
/// new state. The high watermark in the answer is the one before this fetch's effects, as in
/// Kafka.
pub fn serve_follower_fetch(
    leader: &mut LeaderState,
    log: &mut impl ReplicaLog,
    brokers: &impl BrokerView,
    (replica_id, broker_epoch): (i32, i64),
    request: &FetchPartitionRequest,
    max_bytes: usize,
    now_ms: i64,
) -> (FetchPartitionResponse, FollowerFetchEffects) {
    let no_effects = FollowerFetchEffects::default();
    if request.current_leader_epoch < leader.leader_epoch() {
        return (
            FetchPartitionResponse::error(ResponseError::FencedLeaderEpoch),
            no_effects,
        );
    }
    if request.current_leader_epoch > leader.leader_epoch() {
        return (
            FetchPartitionResponse::error(ResponseError::UnknownLeaderEpoch),
            no_effects,
        );
    }
    if leader.follower(replica_id).is_none() {
        // Kafka `followerReplicaOrThrow`, before reading: not (yet) a replica here.
        return (
            FetchPartitionResponse::error(ResponseError::UnknownLeaderEpoch),
            no_effects,
        );
    }
    let (high_watermark, log_start_offset, log_end_offset) = (
        log.high_watermark(),
        log.log_start_offset(),
        log.log_end_offset(),
    );
    let answer = |records: Bytes, diverging_epoch| FetchPartitionResponse {
        error: None,
        high_watermark,
        log_start_offset,
        diverging_epoch,
        records,
    };
    match check_follower_divergence(log, request.fetch_offset, request.last_fetched_epoch) {
        Err(error) => return (FetchPartitionResponse::error(error), no_effects),
        Ok(Some(diverging)) => return (answer(Bytes::new(), Some(diverging)), no_effects),
        Ok(None) => {}
    }
    let read = match log.read_to_log_end(request.fetch_offset, max_bytes) {
        Ok(read) => read,
        Err(StorageError::OffsetOutOfRange { .. }) => {
            return (
                FetchPartitionResponse::error(ResponseError::OffsetOutOfRange),
                no_effects,
            )
        }
        Err(_) => {
            return (
                FetchPartitionResponse::error(ResponseError::KafkaStorageError),
                no_effects,
            )
        }
    };
    let fetch = FollowerFetch {
        replica_id,
        broker_epoch,
        fetch_offset: request.fetch_offset,
        log_start_offset: request.log_start_offset,
        now_ms,
        leader_log_end_offset: log_end_offset,
    };
    match leader.handle_follower_fetch(&fetch, log, brokers) {
        Ok(effects) => (answer(read.records, None), effects),
        Err(error) => (
            FetchPartitionResponse::error(error.response_error()),
            no_effects,
        ),
    }
}

#[cfg(test)]
#[path = "fetcher_tests.rs"]
mod tests;
