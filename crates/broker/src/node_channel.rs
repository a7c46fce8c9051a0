//! How the broker talks to other nodes of the cluster without opening a socket itself.
//!
//! Replication (follower fetches), transaction markers for partitions led elsewhere
//! (WriteTxnMarkers) and request forwarding all send a Kafka request to a node id and wait for
//! its response. The broker only sees this trait; the server crate implements it over TCP
//! (`node_client.rs`), and the deterministic simulation can implement it over a simulated
//! network. This keeps the layering rule "only the network layer opens sockets".
//!
//! Kafka's equivalent is `NetworkClient` behind `BrokerBlockingSender` / `NodeToControllerChannelManager`.

use std::future::Future;
use std::pin::Pin;

use fjord_protocol::{ApiKey, RequestKind, ResponseKind};

/// A boxed future that can cross threads: what the object-safe [`NodeChannel`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a request to another node got no response. None of these is a Kafka error code of the
/// remote node: those arrive inside the response.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ChannelError {
    #[error("node {node_id} is not known (no endpoint in the metadata)")]
    UnknownNode { node_id: i32 },
    #[error("cannot connect to node {node_id} at {address}: {reason}")]
    Connect {
        node_id: i32,
        address: String,
        reason: String,
    },
    #[error("connection to node {node_id} was lost: {reason}")]
    Disconnected { node_id: i32, reason: String },
    #[error("node {node_id} did not answer {api_key:?} within {timeout_ms} ms")]
    Timeout {
        node_id: i32,
        api_key: ApiKey,
        timeout_ms: u64,
    },
    #[error("{in_flight_max} requests to node {node_id} are already in flight")]
    TooManyInFlight { node_id: i32, in_flight_max: usize },
    #[error("cannot encode {api_key:?} v{api_version}: {reason}")]
    Encode {
        api_key: ApiKey,
        api_version: i16,
        reason: String,
    },
    #[error("cannot decode the {api_key:?} v{api_version} response of node {node_id}: {reason}")]
    Decode {
        node_id: i32,
        api_key: ApiKey,
        api_version: i16,
        reason: String,
    },
    #[error("the channel is shutting down")]
    ShuttingDown,
}

impl ChannelError {
    /// Whether trying again later (after a backoff, or once metadata changed) may succeed.
    /// Encoding errors and shutdown are final; everything about the connection is not.
    pub fn is_retriable(&self) -> bool {
        !matches!(self, Self::Encode { .. } | Self::ShuttingDown)
    }
}

/// One request to another node.
#[derive(Debug, Clone)]
pub struct NodeRequest {
    /// Must match `body` (kafka-protocol's `RequestKind` does not name its key).
    pub api_key: ApiKey,
    pub api_version: i16,
    pub body: RequestKind,
    /// How long to wait for the response, from the moment the request is written.
    pub timeout_ms: u64,
}

/// Sends Kafka requests to other nodes of the cluster by node id.
pub trait NodeChannel: Send + Sync {
    /// Sends `request` to `node_id` and waits for its response. Requests to one node are
    /// written in call order on one connection; responses may be awaited concurrently.
    fn send(
        &self,
        node_id: i32,
        request: NodeRequest,
    ) -> BoxFuture<'_, Result<ResponseKind, ChannelError>>;

    /// Replaces the address book: `(node id, "host:port")` of every node this broker may talk
    /// to. Connections to nodes whose address changed or that disappeared are closed.
    fn set_endpoints(&self, endpoints: Vec<(i32, String)>);
}
