//! # fjord-raft: the metadata quorum (KRaft's Raft, on tikv `raft`)
//!
//! Kafka's controllers agree on the `__cluster_metadata` log with KRaft (`KafkaRaftClient`).
//! Fjord's controllers do the same with this crate: [`MetadataQuorum`] is one voter; the
//! entries it commits are opaque payloads (crate `fjord-metadata` puts record batches in
//! them); the entry's Raft index is the records' offset and its term the metadata leader epoch.
//! Sans-IO: no threads, sockets, clocks or unseeded randomness. The driver calls
//! [`MetadataQuorum::tick`] every tick interval, [`MetadataQuorum::step`] with each message
//! received, [`MetadataQuorum::propose`] on the leader, and [`MetadataQuorum::ready`] after
//! each of those; it sends the messages `ready` returns and applies the committed entries.
//! Durable state goes through a [`RaftLogStore`]: [`FileLogStore`] (over
//! `fjord_storage::MetadataLog`, `{data_dir}/__cluster_metadata-0/`) or [`MemLogStore`] for
//! the deterministic simulation (`tests/simulation.rs`).
//!
//! ## Why tikv `raft` (docs/cluster-design.md section 12)
//!
//! `raft` 0.7's `RawNode` is sans-IO (`tick`, `step`, `propose`, `ready`, `advance`), so
//! clock, network and disk are ours and one thread drives N voters from a seed. It has
//! pre-vote and check-quorum (an isolated leader steps down, a rejoining voter does not
//! disrupt a healthy leader: both are on here), leadership transfer, and application-built
//! snapshots sent to lagging voters. `openraft` runs an async core on internal tasks that the
//! caller cannot step deterministically and has no pre-vote. Only the `protobuf-codec`
//! feature is used (it builds without a system `protoc`); it forces rust-protobuf 2 and `slog`.
//!
//! ## The Ready order ([`MetadataQuorum::ready`])
//!
//! 1. take the leader's append messages (they may go before the local write);
//! 2. install a snapshot from the leader (durable, replaces the log);
//! 3. hand out committed entries (already durable on a quorum, in order);
//! 4. append the new entries, **fsync**, then write the hard state (term, vote, commit);
//! 5. only then take the "persisted" messages: votes and append acknowledgements promise
//!    that state, so they must never leave before it is on disk;
//! 6. `advance`: store the new commit index, take the light ready's messages and committed
//!    entries, `advance_apply`.
//!
//! Everything returned by one `ready` call may be sent at once: it was all persisted before
//! `ready` returned.
//!
//! ## Pitfalls respected (from the spike)
//!
//! 1. Persisted messages only after the sync (above). The simulation's deliberate "ack before
//!    sync" bug breaks safety within a few hundred seeds.
//! 2. The library draws election timeouts from `rand::thread_rng()`: `min_election_tick` is
//!    pinned per voter from [`QuorumConfig::seed`] and `max = min + 1`, so runs replay.
//! 3. Snapshot sends and failed sends must be reported ([`MetadataQuorum::report_snapshot`],
//!    [`MetadataQuorum::report_unreachable`]) or the leader waits forever on a dead voter.
//! 4. The stored commit index is raised to the snapshot index when read (`initial_state`),
//!    or `RawNode::new` panics on restart.
//! 5. Committed entries are applied strictly in order; leaders' empty no-op entries are
//!    skipped; after a restart nothing is replayed: the caller rebuilds its state machine from
//!    [`MetadataQuorum::recovered_committed`] (snapshot + entries up to the stored commit).
//! 6. Proposals are never forwarded and may be lost on a leader change: callers retry, and
//!    records must be idempotent or checked against the committed state.
//! 7. The library's `slog` output goes to `tracing` at debug level (target `raft`).
//!
//! Voters are static (no KIP-853) and there are no learners: broker-only nodes fetch
//! committed entries from voters ([`MetadataQuorum::read_committed`], design 3.3). Messages between voters are trusted to come
//! from Fjord voters of the same cluster (the transport checks the cluster id); the library
//! can panic on some malformed-but-decodable messages, so every call into it runs under
//! `catch_unwind` and a panic poisons the quorum (restart it from its store).

mod logger;
mod message;
mod quorum;
mod store;

pub use message::{RaftMessage, RAFT_MESSAGE_BYTES_MAX};
pub use quorum::{
    CommittedEntry, CommittedRead, MetadataQuorum, ProposeError, QuorumConfig, QuorumDescription,
    QuorumReady, RoleChange, SnapshotData, VoterState,
};
pub use raft::eraftpb::MessageType;
pub use store::{FileLogStore, MemLogStore, RaftLogStore};

/// Everything that can go wrong in the metadata quorum.
#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    /// Bad [`QuorumConfig`] or one that contradicts the stored state.
    #[error("invalid quorum configuration: {0}")]
    Config(String),
    /// The store failed; the quorum is poisoned.
    #[error("metadata log storage: {0}")]
    Storage(#[from] fjord_storage::StorageError),
    /// The stored state or the library's output breaks an invariant.
    #[error("inconsistent quorum state: {0}")]
    CorruptState(String),
    /// A message that does not decode, is too large or is not for this voter.
    #[error("invalid raft message: {0}")]
    InvalidMessage(String),
    /// A caller's argument is out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The library refused a step.
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// An earlier failure left the quorum unusable; rebuild it from its store.
    #[error("quorum poisoned by an earlier failure: {0}")]
    Poisoned(String),
}
