//! `MetadataNode`: one controller-capable node's metadata machinery, sans-IO. It joins the Raft
//! quorum ([`fjord_raft::MetadataQuorum`]), the state machine that turns committed entries into
//! [`MetadataImage`]s (Kafka's `MetadataLoader`), and the controller that writes them (Kafka's
//! `QuorumController`, behind [`ControllerCore`]).
//!
//! The caller (an async shell in the server, or the deterministic simulation) owns the clock,
//! the network and the threads: it calls [`MetadataNode::tick`] every tick, hands peer messages
//! to [`MetadataNode::step`], submits controller requests with [`MetadataNode::submit`], and after
//! each of those calls [`MetadataNode::poll`] to collect messages to send, replies to release
//! and the newest image with the delta that produced it.
//!
//! Rules this type enforces (design invariants 1 and 10):
//! - **No reply before commit.** A request's records are proposed as one Raft entry; its reply
//!   is held until that entry commits *in the term it was proposed in*. If another entry takes
//!   its index, or this node stops leading, the request fails with `NotController` (the caller
//!   retries at the new controller; controller operations are written to be retried).
//! - **The controller is active only when caught up.** A new Raft leader serves no requests
//!   until the first entry of its term commits, so its controller has replayed everything any
//!   earlier leader committed (KRaft's `claim` after `handleLeaderChange`).
//! - **Images are replays of the log prefix.** Every committed entry is decoded and replayed in
//!   order; a committed entry that does not replay is fatal ([`NodeError::Replay`]): the node
//!   must stop rather than serve metadata that differs from its peers'.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use fjord_metadata::{
    decode_batch, encode_batch, image_to_records, MetadataBatch, MetadataDelta, MetadataImage,
    MetadataRecord,
};
use fjord_raft::{
    CommittedEntry, MetadataQuorum, ProposeError, QuorumConfig, QuorumError, RaftLogStore,
    RaftMessage,
};

/// One step of controller work: the records to commit as one entry, and the reply to release
/// once they have (a result without records waits for the proposals before it).
pub struct ControllerOutput<R> {
    pub records: Vec<MetadataRecord>,
    pub reply: R,
}

/// A controller state machine as the node drives it. The production implementation is
/// `fjord-controller`'s `QuorumController` (see [`quorum_controller`]).
pub trait ControllerCore {
    type Request;
    type Reply;

    /// Handles one request against the speculative state.
    fn handle(&mut self, now_ms: i64, request: Self::Request) -> ControllerOutput<Self::Reply>;

    /// Periodic work (fencing, leader balancing): each element is one entry to propose.
    fn tick(&mut self, now_ms: i64) -> Vec<Vec<MetadataRecord>>;

    /// A committed entry, in log order, on every node, active or not. Raft's own empty
    /// entries come as batches without records, so offsets are contiguous.
    fn replay(&mut self, batch: &MetadataBatch) -> Result<(), String>;

    /// Everything committed so far is replayed and this node leads: it is the active controller
    /// now. May return entries to propose (the bootstrap entry on an empty log).
    fn on_became_active(&mut self, now_ms: i64) -> Vec<Vec<MetadataRecord>>;

    /// No longer active: drop speculative state, back to the committed image.
    fn on_resigned(&mut self);

    /// A snapshot replaced the log: start over from this image.
    fn load_snapshot(&mut self, image: &Arc<MetadataImage>) -> Result<(), String>;
}

/// Why a submitted request got no reply from this node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotController {
    #[error("not the active controller (leader hint {leader_hint:?})")]
    NotActive { leader_hint: Option<i32> },
    #[error("the controller cannot take this request now: {0}")]
    Refused(String),
}

/// Fatal node failures: the node must stop (and restart from its store).
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Quorum(#[from] QuorumError),
    #[error("committed metadata entry {index} does not decode: {reason}")]
    Decode { index: u64, reason: String },
    #[error("committed metadata entry {index} does not replay: {reason}")]
    Replay { index: u64, reason: String },
}

/// Settings of a [`MetadataNode`].
#[derive(Debug, Clone)]
pub struct MetadataNodeConfig {
    pub quorum: QuorumConfig,
    /// Take a snapshot (and trim the log) after this many bytes of committed entries (Kafka
    /// `metadata.log.max.record.bytes.between.snapshots`).
    pub snapshot_interval_bytes: u64,
    /// Submitted requests waiting for their entry to commit (a bound on memory held for
    /// callers; beyond it `submit` refuses).
    pub pending_max: usize,
}

impl MetadataNodeConfig {
    pub fn new(quorum: QuorumConfig) -> Self {
        Self {
            quorum,
            snapshot_interval_bytes: 20 * 1024 * 1024,
            pending_max: 10_000,
        }
    }
}

/// A new image and the delta that produced it from the previous one. After a snapshot install
/// the delta starts from the empty image (it lists everything as created).
#[derive(Debug, Clone)]
pub struct PublishedImage {
    pub delta: MetadataDelta,
    pub image: Arc<MetadataImage>,
}

/// What one [`MetadataNode::poll`] produced.
#[derive(Debug)]
pub struct NodeOutput<T, R> {
    /// `(to, message)`: send each to that voter's controller listener; report failures with
    /// [`MetadataNode::report_unreachable`].
    pub messages: Vec<(u64, RaftMessage)>,
    /// Replies to release, by the caller's token.
    pub replies: Vec<(T, Result<R, NotController>)>,
    /// The image after everything committed in this poll, when it changed.
    pub published: Option<PublishedImage>,
}

struct Waiting<T, R> {
    /// The term the awaited entry was proposed in; `None` for a reply that only waits for
    /// earlier proposals to commit.
    term: Option<u64>,
    token: T,
    reply: R,
}

pub struct MetadataNode<S: RaftLogStore, C: ControllerCore, T> {
    config: MetadataNodeConfig,
    quorum: MetadataQuorum<S>,
    controller: C,
    image: Arc<MetadataImage>,
    /// Index and term of the last entry applied (empty entries included).
    applied: (u64, u64),
    /// The term in which the controller is active (leader and caught up), if it is.
    active_term: Option<u64>,
    /// Index of the last entry this node proposed in `active_term`.
    last_proposed: u64,
    /// Replies by the index whose commit releases them.
    waiting: BTreeMap<u64, Vec<Waiting<T, C::Reply>>>,
    waiting_count: usize,
    /// Replies to hand out at the next poll.
    released: Vec<(T, Result<C::Reply, NotController>)>,
    bytes_since_snapshot: u64,
}

impl<S: RaftLogStore, C: ControllerCore, T> MetadataNode<S, C, T> {
    /// Opens the node from its store: the image is rebuilt from the stored snapshot and the
    /// committed entries after it, and the controller replays the same.
    pub fn open(config: MetadataNodeConfig, store: S, controller: C) -> Result<Self, NodeError> {
        let quorum = MetadataQuorum::new(config.quorum.clone(), store)?;
        let (snapshot, committed) = quorum.recovered_committed();
        let mut node = Self {
            config,
            quorum,
            controller,
            image: Arc::new(MetadataImage::empty()),
            applied: (0, 0),
            active_term: None,
            last_proposed: 0,
            waiting: BTreeMap::new(),
            waiting_count: 0,
            released: Vec::new(),
            bytes_since_snapshot: 0,
        };
        let mut delta = match snapshot {
            Some(snapshot) => {
                node.install_snapshot(snapshot.index, snapshot.term, &snapshot.data)?
            }
            None => MetadataDelta::new(node.image.clone()),
        };
        for entry in &committed {
            node.apply_entry(&mut delta, entry)?;
        }
        node.image = delta.apply(node.applied.0 as i64, node.applied.1 as i32);
        Ok(node)
    }

    pub fn image(&self) -> &Arc<MetadataImage> {
        &self.image
    }

    pub fn quorum(&self) -> &MetadataQuorum<S> {
        &self.quorum
    }

    pub fn controller(&self) -> &C {
        &self.controller
    }

    /// Whether this node is the active controller.
    pub fn is_active(&self) -> bool {
        self.active_term.is_some()
    }

    /// The voter this node believes leads, as a node id.
    pub fn leader_hint(&self) -> Option<i32> {
        self.quorum
            .leader_id()
            .and_then(|id| i32::try_from(id).ok())
    }

    /// One tick of time: Raft's logical clock, and the active controller's periodic work.
    pub fn tick(&mut self, now_ms: i64) {
        self.quorum.tick();
        if self.is_active() {
            for records in self.controller.tick(now_ms) {
                // Nobody waits on periodic work; a refused proposal resigns (the controller's
                // speculative state would otherwise include records that never commit).
                if let Err(error) = self.propose(records) {
                    self.resign(&format!("proposal refused: {error}"));
                    break;
                }
            }
        }
    }

    /// A message from another voter.
    pub fn step(&mut self, message: RaftMessage) -> Result<(), NodeError> {
        match self.quorum.step(message) {
            Ok(()) => Ok(()),
            // A stray, misaddressed or stale message is the sender's problem, not ours.
            Err(QuorumError::InvalidMessage(reason))
            | Err(QuorumError::InvalidArgument(reason)) => {
                tracing::debug!(%reason, "metadata quorum refused a message");
                Ok(())
            }
            Err(QuorumError::Raft(error)) => {
                tracing::debug!(%error, "metadata quorum refused a message");
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }

    pub fn report_unreachable(&mut self, to: u64) {
        self.quorum.report_unreachable(to);
    }

    pub fn report_snapshot(&mut self, to: u64, delivered: bool) {
        self.quorum.report_snapshot(to, delivered);
    }

    /// Hands a request to the active controller. Its reply comes out of a later `poll` under
    /// `token`, once its records (and every proposal before them) committed. Refused at once
    /// when this node is not the active controller.
    pub fn submit(
        &mut self,
        now_ms: i64,
        request: C::Request,
        token: T,
    ) -> Result<(), (T, NotController)> {
        let Some(term) = self.active_term else {
            return Err((
                token,
                NotController::NotActive {
                    leader_hint: self.leader_hint(),
                },
            ));
        };
        if self.waiting_count >= self.config.pending_max {
            return Err((
                token,
                NotController::Refused(format!(
                    "{} requests already wait for a commit",
                    self.waiting_count
                )),
            ));
        }
        let output = self.controller.handle(now_ms, request);
        if output.records.is_empty() {
            self.wait_for(self.last_proposed, None, token, output.reply);
            return Ok(());
        }
        match self.propose(output.records) {
            Ok(index) => {
                self.wait_for(index, Some(term), token, output.reply);
                Ok(())
            }
            Err(error) => {
                self.resign(&format!("proposal refused: {error}"));
                Err((token, error))
            }
        }
    }

    fn wait_for(&mut self, index: u64, term: Option<u64>, token: T, reply: C::Reply) {
        if term.is_none() && index <= self.applied.0 {
            self.released.push((token, Ok(reply)));
            return;
        }
        self.waiting
            .entry(index)
            .or_default()
            .push(Waiting { term, token, reply });
        self.waiting_count += 1;
    }

    fn propose(&mut self, records: Vec<MetadataRecord>) -> Result<u64, NotController> {
        let payload = Bytes::from(encode_batch(&records));
        let index = self.quorum.propose(payload).map_err(|error| match error {
            ProposeError::NotLeader { leader_hint } => NotController::NotActive {
                leader_hint: leader_hint.and_then(|id| i32::try_from(id).ok()),
            },
            other => NotController::Refused(other.to_string()),
        })?;
        self.last_proposed = index;
        Ok(index)
    }

    /// Stops acting as the controller: the controller forgets its speculative state and every
    /// waiting request fails with NOT_CONTROLLER (its records may still commit: controller
    /// operations are written to be retried).
    fn resign(&mut self, reason: &str) {
        if self.active_term.take().is_some() {
            tracing::info!(node = self.quorum.node_id(), reason, "controller resigned");
            self.controller.on_resigned();
        }
        let leader_hint = self.leader_hint();
        for (_, waiting) in std::mem::take(&mut self.waiting) {
            for w in waiting {
                self.released
                    .push((w.token, Err(NotController::NotActive { leader_hint })));
            }
        }
        self.waiting_count = 0;
    }

    /// Runs the quorum's ready cycle and everything that follows from it.
    pub fn poll(&mut self, now_ms: i64) -> Result<NodeOutput<T, C::Reply>, NodeError> {
        let mut messages = Vec::new();
        let mut delta: Option<MetadataDelta> = None;
        // Becoming active proposes the bootstrap entry, whose ready cycle runs in a later round.
        for _ in 0..4 {
            let ready = self.quorum.ready()?;
            if ready.is_empty() {
                break;
            }
            messages.extend(ready.messages);
            if let Some(snapshot) = ready.snapshot_installed {
                // The snapshot supersedes whatever was staged before it.
                delta =
                    Some(self.install_snapshot(snapshot.index, snapshot.term, &snapshot.data)?);
            }
            for entry in &ready.committed {
                let staged = delta.get_or_insert_with(|| MetadataDelta::new(self.image.clone()));
                self.apply_entry(staged, entry)?;
            }
            if let Some(change) = ready.role_changed {
                let still_active = change.is_leader && self.active_term == Some(change.term);
                if self.active_term.is_some() && !still_active {
                    self.resign("leadership changed");
                }
            }
            if let Some(term) = ready.leader_caught_up {
                if self.quorum.is_leader()
                    && self.quorum.term() == term
                    && self.active_term.is_none()
                {
                    // The term's first entry (Raft's empty one) is committed: replay it too, so
                    // the controller's next offset is right.
                    let staged =
                        delta.get_or_insert_with(|| MetadataDelta::new(self.image.clone()));
                    self.apply_empty_until(staged, self.quorum.applied_index(), term)?;
                    self.active_term = Some(term);
                    self.last_proposed = self.applied.0;
                    tracing::info!(
                        node = self.quorum.node_id(),
                        term,
                        "became the active controller"
                    );
                    for records in self.controller.on_became_active(now_ms) {
                        if let Err(error) = self.propose(records) {
                            self.resign(&format!("proposal refused: {error}"));
                            break;
                        }
                    }
                }
            }
        }
        let published = delta.map(|delta| {
            let image = delta
                .clone()
                .apply(self.applied.0 as i64, self.applied.1 as i32);
            self.image = image.clone();
            PublishedImage { delta, image }
        });
        self.maybe_snapshot()?;
        // A leader sending a snapshot waits for its outcome before it sends the voter anything
        // else. Report it handed over: if the message is lost the voter's answer to the next
        // append shows it still lags, and the leader sends the snapshot again (pitfall 3 of the
        // design's Raft notes: never leave a snapshot unreported).
        for (to, message) in &messages {
            if message.msg_type() == fjord_raft::MessageType::MsgSnapshot {
                self.quorum.report_snapshot(*to, true);
            }
        }
        Ok(NodeOutput {
            messages,
            replies: std::mem::take(&mut self.released),
            published,
        })
    }

    /// Resets image and controller to a snapshot; returns the delta to stage later entries on.
    fn install_snapshot(
        &mut self,
        index: u64,
        term: u64,
        data: &[u8],
    ) -> Result<MetadataDelta, NodeError> {
        let records = decode_batch(data).map_err(|error| NodeError::Decode {
            index,
            reason: format!("snapshot: {error}"),
        })?;
        let mut delta = MetadataDelta::new(Arc::new(MetadataImage::empty()));
        for record in &records {
            delta.replay(record).map_err(|error| NodeError::Replay {
                index,
                reason: format!("snapshot: {error}"),
            })?;
        }
        let image = delta.clone().apply(index as i64, term as i32);
        self.controller
            .load_snapshot(&image)
            .map_err(|reason| NodeError::Replay { index, reason })?;
        self.image = image;
        self.applied = (index, term);
        self.bytes_since_snapshot = 0;
        // Requests waiting on entries the snapshot covers lost track of them.
        self.resign("snapshot installed");
        Ok(delta)
    }

    /// Replays Raft's empty entries between the last applied one and `index` (inclusive).
    fn apply_empty_until(
        &mut self,
        _delta: &mut MetadataDelta,
        index: u64,
        term: u64,
    ) -> Result<(), NodeError> {
        while self.applied.0 < index {
            let next = self.applied.0 + 1;
            self.controller
                .replay(&MetadataBatch {
                    offset: next as i64,
                    epoch: term as i32,
                    records: Vec::new(),
                })
                .map_err(|reason| NodeError::Replay {
                    index: next,
                    reason,
                })?;
            self.applied = (next, term);
            self.release(next, term);
        }
        Ok(())
    }

    fn apply_entry(
        &mut self,
        delta: &mut MetadataDelta,
        entry: &CommittedEntry,
    ) -> Result<(), NodeError> {
        if entry.index <= self.applied.0 {
            return Ok(()); // covered by a snapshot
        }
        self.apply_empty_until(delta, entry.index - 1, entry.term)?;
        let records = decode_batch(&entry.payload).map_err(|error| NodeError::Decode {
            index: entry.index,
            reason: error.to_string(),
        })?;
        for record in &records {
            delta.replay(record).map_err(|error| NodeError::Replay {
                index: entry.index,
                reason: error.to_string(),
            })?;
        }
        self.controller
            .replay(&MetadataBatch {
                offset: entry.index as i64,
                epoch: entry.term as i32,
                records,
            })
            .map_err(|reason| NodeError::Replay {
                index: entry.index,
                reason,
            })?;
        self.applied = (entry.index, entry.term);
        self.bytes_since_snapshot += entry.payload.len() as u64;
        self.release(entry.index, entry.term);
        Ok(())
    }

    /// The entry at `index` (of `term`) is applied: release what waited for it. A reply whose
    /// own entry was replaced by another leader's (another term at its index) fails.
    fn release(&mut self, index: u64, term: u64) {
        let leader_hint = self.leader_hint();
        while let Some(entry) = self.waiting.first_entry() {
            if *entry.key() > index {
                break;
            }
            let waiting_index = *entry.key();
            for w in entry.remove() {
                self.waiting_count -= 1;
                let lost = match w.term {
                    Some(proposed_term) => waiting_index != index || proposed_term != term,
                    None => false,
                };
                let outcome = if lost {
                    Err(NotController::NotActive { leader_hint })
                } else {
                    Ok(w.reply)
                };
                self.released.push((w.token, outcome));
            }
        }
    }

    fn maybe_snapshot(&mut self) -> Result<(), NodeError> {
        if self.bytes_since_snapshot < self.config.snapshot_interval_bytes || self.image.offset < 1
        {
            return Ok(());
        }
        let data = Bytes::from(encode_batch(&image_to_records(&self.image)));
        self.quorum.compact(self.image.offset as u64, data)?;
        self.bytes_since_snapshot = 0;
        Ok(())
    }
}

/// [`ControllerCore`] for Fjord's `QuorumController`.
pub mod quorum_controller {
    use super::*;
    use fjord_controller::{ControllerReply, ControllerRequest, QuorumController};

    impl ControllerCore for QuorumController {
        type Request = ControllerRequest;
        type Reply = ControllerReply;

        fn handle(
            &mut self,
            now_ms: i64,
            request: ControllerRequest,
        ) -> ControllerOutput<ControllerReply> {
            let result = QuorumController::handle(self, now_ms, request);
            ControllerOutput {
                records: result.records,
                reply: result.reply,
            }
        }

        fn tick(&mut self, now_ms: i64) -> Vec<Vec<MetadataRecord>> {
            QuorumController::tick(self, now_ms)
                .into_iter()
                .map(|result| result.records)
                .filter(|records| !records.is_empty())
                .collect()
        }

        fn replay(&mut self, batch: &MetadataBatch) -> Result<(), String> {
            QuorumController::replay(self, batch).map_err(|error| error.to_string())
        }

        fn on_became_active(&mut self, now_ms: i64) -> Vec<Vec<MetadataRecord>> {
            QuorumController::on_became_active(self, now_ms)
                .into_iter()
                .map(|result| result.records)
                .filter(|records| !records.is_empty())
                .collect()
        }

        fn on_resigned(&mut self) {
            QuorumController::on_resigned(self);
        }

        fn load_snapshot(&mut self, image: &Arc<MetadataImage>) -> Result<(), String> {
            QuorumController::load_snapshot(self, image.clone());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests;
