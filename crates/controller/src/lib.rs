//! `fjord-controller`: Fjord's KRaft controller as a pure state machine (issue 8, design
//! section 4). No tokio, sockets, files or clocks: time comes in as `now_ms`, randomness from
//! a seeded RNG, and the metadata log is the driver's business.
//!
//! The [`QuorumController`] answers [`ControllerRequest`]s with a [`ControllerResult`]: the
//! records to propose as one Raft entry and the reply to release once it commits. It validates
//! against a *speculative* image (committed + proposed), replays committed entries, and does
//! periodic work in [`QuorumController::tick`]. See [`controller`] for the driver contract.
//!
//! | module | Kafka |
//! |---|---|
//! | [`controller`] | `QuorumController`, `ClusterControlManager`, `ReplicationControlManager`, `ConfigurationControlManager`, `ProducerIdControlManager`, `FeatureControlManager` (bootstrap), `AclControlManager`, `ScramControlManager`, `ClientQuotaControlManager` |
//! | [`heartbeat`] | `BrokerHeartbeatManager`, `BrokerControlState` |
//! | [`partition_change`] | `PartitionChangeBuilder`, `PartitionReassignmentReplicas`, `PartitionReassignmentRevert` |
//! | [`placement`] | `StripedReplicaPlacer` |
//! | [`api`] | the request/response data of BrokerRegistration, BrokerHeartbeat, CreateTopics, ... |
//! | [`invariants`] | design section 8, item 2 |
//! | [`rng`] | `java.util.Random` (seeded SplitMix64 instead) |

pub mod api;
pub mod controller;
pub mod heartbeat;
pub mod invariants;
pub mod partition_change;
pub mod placement;
pub mod rng;

pub use api::*;
pub use controller::{
    AcceptAllConfigs, ConfigValidator, ControllerConfig, QuorumController,
    DEFAULT_METADATA_VERSION, MAX_RECORDS_PER_USER_OP, PRODUCER_ID_BLOCK_SIZE,
};
pub use fjord_metadata::ReplayError;

/// Why the controller cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControllerError {
    /// A committed entry does not replay: the log and this replayer disagree; stop the node.
    #[error("committed metadata entry at offset {offset} does not replay: {source}")]
    Replay {
        offset: i64,
        #[source]
        source: ReplayError,
    },
    /// Committed entries must come in increasing offset order.
    #[error(
        "committed metadata entry at offset {offset} is not after the committed offset {committed}"
    )]
    OutOfOrder { offset: i64, committed: i64 },
    /// A record the controller generated does not replay on its own speculative image: a bug.
    #[error("controller bug: its {record} does not replay on the speculative image: {source}")]
    Internal {
        record: &'static str,
        #[source]
        source: ReplayError,
    },
}
