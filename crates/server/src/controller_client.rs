//! The broker's [`ControllerChannel`] in a cluster (Kafka's `NodeToControllerChannelManager`):
//! a request goes to this node's own controller when it is the active one, and otherwise over
//! TCP to the voter believed to lead, as the Kafka wire message of that controller API. A
//! NOT_CONTROLLER answer, a lost connection or a timeout moves on to the next candidate (the
//! local quorum's leader hint first, then every voter in turn) until the caller's timeout.
//! DescribeQuorum, which the broker listener forwards, goes the same way to the Raft leader's
//! controller listener; a NOT_LEADER_OR_FOLLOWER answer moves on like NOT_CONTROLLER.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fjord_broker::controller_channel::{ControllerChannel, ControllerChannelError};
use fjord_broker::controller_wire::{is_not_controller, reply_from_wire, request_to_wire};
use fjord_broker::metadata_runtime::{MetadataRuntime, CONTROLLER_RETRY_BACKOFF_MS};
use fjord_broker::node_channel::{BoxFuture, NodeChannel, NodeRequest};
use fjord_controller::{ControllerReply, ControllerRequest};
use fjord_protocol::kafka_protocol::messages::{DescribeQuorumRequest, DescribeQuorumResponse};
use fjord_protocol::{ApiKey, RequestKind, ResponseError, ResponseKind};
use fjord_raft::FileLogStore;

use fjord_broker::BrokerConfig;

use crate::controller_security::voter_endpoints;
use crate::node_client::{InterBrokerTls, NodeChannelLimits, TcpNodeChannel};
use crate::test_hooks::PeerAddresses;

/// Per attempt: a controller that does not answer within this long is skipped.
const ATTEMPT_TIMEOUT_MS: u64 = 5_000;

pub struct ClusterControllerChannel {
    node_id: i32,
    /// This node's quorum member, if it is a voter.
    local: Option<Arc<MetadataRuntime<FileLogStore>>>,
    /// Voter ids, in `controller.quorum.voters` order.
    voters: Vec<i32>,
    /// Connections to the voters' controller listeners.
    remote: TcpNodeChannel,
    /// Which voter to try next when nothing better is known.
    next: AtomicUsize,
}

impl ClusterControllerChannel {
    /// `tls`: the controller listener's client side when it is SSL (see
    /// `controller_security::ControllerTls`).
    pub fn new(
        node_id: i32,
        local: Option<Arc<MetadataRuntime<FileLogStore>>>,
        config: &BrokerConfig,
        peer_addresses: &PeerAddresses,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Self {
        let tls = match tls {
            Some(client) => InterBrokerTls::Tls(client),
            None => InterBrokerTls::Plain,
        };
        let remote = TcpNodeChannel::new(
            format!("broker-{node_id}-to-controller"),
            NodeChannelLimits::default(),
        )
        .with_tls(tls);
        remote.set_peer_endpoints(voter_endpoints(config, peer_addresses, None));
        Self {
            node_id,
            local,
            voters: config
                .controller_quorum_voters
                .iter()
                .map(|(id, _)| *id)
                .collect(),
            remote,
            next: AtomicUsize::new(0),
        }
    }

    /// The voter to ask: the local quorum's view of the leader if there is one, else the next
    /// voter in turn.
    fn candidate(&self) -> Option<i32> {
        if let Some(hint) = self.local.as_ref().and_then(|local| local.leader_hint()) {
            return Some(hint);
        }
        if self.voters.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.voters.len();
        self.voters.get(i).copied()
    }

    async fn attempt(
        &self,
        request: &ControllerRequest,
        timeout_ms: u64,
    ) -> Option<ControllerReply> {
        if let Some(local) = &self.local {
            if local.is_active() {
                let receiver = local
                    .submit(request.clone(), fjord_broker::time::monotonic_ms())
                    .ok()?;
                return match tokio::time::timeout(Duration::from_millis(timeout_ms), receiver).await
                {
                    Ok(Ok(Ok(reply))) => Some(reply),
                    _ => None,
                };
            }
        }
        let target = self.candidate()?;
        if target == self.node_id {
            // Our own quorum member leads but is not active yet (catching up): wait.
            self.next.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let (api_key, api_version, body) = request_to_wire(request);
        let response = self
            .remote
            .send(
                target,
                NodeRequest {
                    api_key,
                    api_version,
                    body,
                    timeout_ms,
                },
            )
            .await;
        let reply = match response {
            Ok(response) => reply_from_wire(api_key, api_version, response).ok()?,
            Err(error) => {
                tracing::debug!(target, %error, "controller request failed; trying another voter");
                self.next.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        };
        if is_not_controller(&reply) {
            self.next.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(reply)
    }
}

impl ClusterControllerChannel {
    /// One DescribeQuorum attempt at the voter believed to lead: its answer, unless it is not
    /// the leader (NOT_LEADER_OR_FOLLOWER) or does not answer.
    async fn attempt_describe_quorum(
        &self,
        request: &DescribeQuorumRequest,
        api_version: i16,
        timeout_ms: u64,
    ) -> Option<DescribeQuorumResponse> {
        let target = self.candidate()?;
        if target == self.node_id {
            // Our own voter is (or just was) the leader and its broker found it was not:
            // leadership is moving; ask again after the backoff.
            self.next.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let response = self
            .remote
            .send(
                target,
                NodeRequest {
                    api_key: ApiKey::DescribeQuorum,
                    api_version,
                    body: RequestKind::DescribeQuorum(request.clone()),
                    timeout_ms,
                },
            )
            .await;
        let not_leader = ResponseError::NotLeaderOrFollower.code();
        match response {
            Ok(ResponseKind::DescribeQuorum(response))
                if response.error_code != not_leader
                    && response
                        .topics
                        .iter()
                        .flat_map(|t| &t.partitions)
                        .all(|p| p.error_code != not_leader) =>
            {
                Some(response)
            }
            Ok(_) => {
                self.next.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(error) => {
                tracing::debug!(target, %error, "DescribeQuorum failed; trying another voter");
                self.next.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

impl ControllerChannel for ClusterControllerChannel {
    fn send(
        &self,
        request: ControllerRequest,
        timeout_ms: u64,
    ) -> BoxFuture<'_, Result<ControllerReply, ControllerChannelError>> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
            loop {
                let left_ms = deadline
                    .saturating_duration_since(tokio::time::Instant::now())
                    .as_millis() as u64;
                if left_ms == 0 {
                    return Err(ControllerChannelError::Timeout { timeout_ms });
                }
                if let Some(reply) = self
                    .attempt(&request, left_ms.min(ATTEMPT_TIMEOUT_MS))
                    .await
                {
                    return Ok(reply);
                }
                tokio::time::sleep(Duration::from_millis(CONTROLLER_RETRY_BACKOFF_MS)).await;
            }
        })
    }

    fn describe_quorum(
        &self,
        request: DescribeQuorumRequest,
        api_version: i16,
        timeout_ms: u64,
    ) -> BoxFuture<'_, Option<DescribeQuorumResponse>> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
            loop {
                let left_ms = deadline
                    .saturating_duration_since(tokio::time::Instant::now())
                    .as_millis() as u64;
                if left_ms == 0 {
                    return None;
                }
                if let Some(response) = self
                    .attempt_describe_quorum(&request, api_version, left_ms.min(ATTEMPT_TIMEOUT_MS))
                    .await
                {
                    return Some(response);
                }
                tokio::time::sleep(Duration::from_millis(CONTROLLER_RETRY_BACKOFF_MS)).await;
            }
        })
    }
}
