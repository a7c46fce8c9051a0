//! How the broker reaches the active controller (Kafka's `NodeToControllerChannelManager`):
//! admin requests that change metadata (CreateTopics, DeleteTopics, CreatePartitions, config
//! changes, auto-creation), producer-id blocks, and the broker lifecycle (registration,
//! heartbeats, AlterPartition) all become a [`ControllerRequest`] answered by whichever node is
//! the active controller: this process when it is, another over the controller listener
//! otherwise. The broker only sees this trait; the server crate implements it.
//!
//! A reply means the controller's records are committed in the metadata log. They may not be
//! in *this* broker's image yet: callers that must observe their own change (CreateTopics
//! answering once the topic is visible here, as Kafka's forwarding broker does) wait with
//! [`crate::Broker::wait_for_metadata_offset`].

use fjord_controller::{ControllerReply, ControllerRequest};
use fjord_protocol::kafka_protocol::messages::{DescribeQuorumRequest, DescribeQuorumResponse};

use crate::node_channel::BoxFuture;

/// Why a controller request got no reply.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ControllerChannelError {
    /// No active controller is known, or it changed while the request was in flight, and the
    /// retries within the timeout did not find one (Kafka: NOT_CONTROLLER / REQUEST_TIMED_OUT).
    #[error("no active controller answered within {timeout_ms} ms")]
    Timeout { timeout_ms: u64 },
    /// Too many requests are already waiting for the controller.
    #[error("too many requests wait for the controller")]
    Busy,
    #[error("the controller channel is shutting down")]
    ShuttingDown,
}

/// Sends requests to the active controller and waits for their committed replies.
pub trait ControllerChannel: Send + Sync {
    /// Retries NOT_CONTROLLER and lost connections internally until `timeout_ms` passes.
    fn send(
        &self,
        request: ControllerRequest,
        timeout_ms: u64,
    ) -> BoxFuture<'_, Result<ControllerReply, ControllerChannelError>>;

    /// DescribeQuorum asked of the metadata quorum's Raft leader on its controller listener
    /// (Kafka brokers forward DescribeQuorum to the active controller), at `api_version` so
    /// the answer can go back to the client as it is. Voters that are not the leader answer
    /// NOT_LEADER_OR_FOLLOWER and the next one is tried until `timeout_ms`; `None` when no
    /// leader answered. The default (in-process channels, whose node is the only voter and
    /// answers DescribeQuorum itself) asks nobody.
    fn describe_quorum(
        &self,
        request: DescribeQuorumRequest,
        api_version: i16,
        timeout_ms: u64,
    ) -> BoxFuture<'_, Option<DescribeQuorumResponse>> {
        let _ = (request, api_version, timeout_ms);
        Box::pin(async { None })
    }
}
