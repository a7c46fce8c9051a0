//! Kafka-style ISR replication as pure cores (issue 8, design sections 5 and 10 slice D):
//! no tokio, no sockets, no clock (time is passed in as `now_ms`; the shell passes the
//! monotonic clock, `crate::time::monotonic_ms`). A later step wires them
//! into the broker: the async shell only moves requests and answers between these cores,
//! the network and the partition logs.
//!
//! - [`replica_log`]: `ReplicaLog`, the log operations replication needs, for the real
//!   `fjord_storage::Log` and the in-memory `SimLog`.
//! - [`leader_state`]: `LeaderState`, the leader's followers, ISR (`IsrState`), high
//!   watermark, ISR shrink/expand proposals and acks=all decisions.
//! - [`fetcher`]: `FetcherCore`, a follower fetching from one leader (truncation, errors,
//!   back-off), and the leader's side of a follower fetch.
//! - [`purgatory`]: `Purgatory<T>`, acks=all produces waiting for the high watermark.
//! - [`alter_partition`]: `AlterPartitionBatcher`, ISR changes batched to the controller.
//! - [`replica_selector`]: KIP-392, the preferred read replica of a consumer with a rack.
//! - [`quota`]: replication throttles (`ReplicationQuota`, throttled replica lists).
//!
//! `README.md` beside this file maps each type to its Kafka class.

pub mod alter_partition;
pub mod fetcher;
pub mod leader_state;
pub mod purgatory;
pub mod quota;
pub mod replica_log;
pub mod replica_selector;

pub use alter_partition::{AlterPartitionBatch, AlterPartitionBatcher, BatchFailure, SubmitError};
pub use fetcher::{
    check_follower_divergence, offset_truncation_state, serve_follower_fetch, EpochEndOffset,
    EpochRequest, FetchOutcome, FetchPartitionRequest, FetchPartitionResponse, FetchPhase,
    FetcherConfig, FetcherCore, FetcherError, LeaderOffsets, OffsetsRequest, PartitionFetchState,
    PartitionKey, PartitionRequest,
};
pub use leader_state::{
    effective_min_isr, AckDecision, AlterPartitionItem, AlterPartitionOutcome, BrokerStatus,
    BrokerView, FollowerFetch, FollowerFetchEffects, FollowerFetchError, FollowerState, IsrState,
    LeaderAndIsr, LeaderState, LeaderStateError, NotEnoughReplicas, PartitionRegistration,
    ReplicationConfig,
};
pub use purgatory::{ParkOutcome, Purgatory, PurgatoryFull};
pub use quota::{
    validate_throttled_replicas, ReplicationQuota, ThrottledReplicas, UNLIMITED_RATE_BYTES_PER_S,
};
pub use replica_log::{FollowerRead, PowerCut, ReplicaLog, SimBatch, SimLog};
pub use replica_selector::{
    preferred_read_replica, ReplicaCandidate, ReplicaSelector, RACK_AWARE_REPLICA_SELECTOR,
};
