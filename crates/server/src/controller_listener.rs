//! The controller listener (`controller.listen`): what Kafka's `CONTROLLER` listener carries.
//! Two kinds of frames share it, told apart by their first field:
//! - Raft messages between voters (Fjord-private API key 10000, see `raft_transport`), one-way;
//! - FetchMetadata and FetchMetadataSnapshot from broker-only nodes (Fjord-private keys 10001
//!   and 10002, `fjord_broker::metadata_fetch`), answered by any voter from its committed
//!   log; an empty FetchMetadata answer is held until something commits or `max_wait_ms`
//!   (at most `FETCH_METADATA_WAIT_MS_MAX`) passes;
//! - Kafka requests to the active controller, answered in order: BrokerRegistration,
//!   BrokerHeartbeat, CreateTopics and the other controller APIs of
//!   `fjord_broker::controller_wire`, plus ApiVersions. A node that is not
//!   the active controller answers NOT_CONTROLLER, and the sender tries another voter;
//! - DescribeQuorum, answered by the Raft leader and NOT_LEADER_OR_FOLLOWER elsewhere (Kafka's
//!   `KafkaRaftClient`): what brokers forward and `kafka-metadata-quorum.sh
//!   --bootstrap-controller` asks.
//!
//! Security (`controller.listener.names`, see `controller_security`): on an SSL controller
//! listener the TLS handshake comes first, bounded by `tls::HANDSHAKE_TIMEOUT` like the Kafka
//! listeners', and gives the connection its principal (the mTLS subject mapped by
//! `ssl.principal.mapping.rules`, ANONYMOUS without a client certificate; PLAINTEXT: ANONYMOUS).
//! With `authorizer.class.name` set and an SSL listener, every frame but ApiVersions is authorized
//! (`ControllerAccess`: CLUSTER_ACTION on the Cluster, DESCRIBE for DescribeQuorum, super users
//! pass). A denied Kafka request is answered CLUSTER_AUTHORIZATION_FAILED; a denied Raft or
//! FetchMetadata frame, which has no such answer, closes the connection. Each denial is a warn
//! line with the principal and the peer address.
//!
//! Limits: frame size (`RAFT_FRAME_SIZE_BYTES_MAX`), one request at a time per connection (the
//! next frame is read only after the answer is written), the TLS handshake time, connections
//! bounded by the caller (`CONTROLLER_CONNECTIONS_MAX` in `metadata_service`).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fjord_broker::apis::describe_quorum::{answer_locally, VERSIONS as DESCRIBE_QUORUM_VERSIONS};
use fjord_broker::controller_wire::{
    error_to_wire, reply_to_wire, request_from_wire, wire_version, CONTROLLER_APIS,
};
use fjord_broker::metadata_fetch::{
    is_observer_api_key, FetchMetadataBody, ObserverRequest, ObserverResponse,
    FETCH_METADATA_WAIT_MS_MAX,
};
use fjord_broker::metadata_node::NotController;
use fjord_broker::metadata_runtime::MetadataRuntime;
use fjord_broker::security::authorizer::Authorizer;
use fjord_broker::security::KafkaPrincipal;
use fjord_controller::{ControllerReply, ControllerRequest};
use fjord_protocol::frame::decode_frame;
use fjord_protocol::kafka_protocol::messages::api_versions_response::ApiVersion;
use fjord_protocol::kafka_protocol::messages::ApiVersionsResponse;
use fjord_protocol::request::{decode_body, decode_header};
use fjord_protocol::response::encode_response;
use fjord_protocol::{ApiKey, RequestKind, ResponseKind};
use fjord_raft::FileLogStore;
use parking_lot::RwLock;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::controller_security::{required_operation, ControllerAccess};
use crate::tls::ListenerTls;

use crate::raft_transport::{
    accept_raft_frame, RaftFrame, FJORD_RAFT_API_KEY, RAFT_FRAME_SIZE_BYTES_MAX,
};

/// Kafka's NOT_CONTROLLER.
const NOT_CONTROLLER: i16 = 41;
/// Kafka's CLUSTER_AUTHORIZATION_FAILED.
const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
/// Kafka's REQUEST_TIMED_OUT.
const REQUEST_TIMED_OUT: i16 = 7;
/// How long a controller request may wait for its commit before the answer is a timeout.
const COMMIT_TIMEOUT_MS: u64 = 30_000;

/// What a connection needs from its node.
pub struct ControllerEndpoint {
    pub runtime: Arc<MetadataRuntime<FileLogStore>>,
    pub cluster_id: Arc<RwLock<String>>,
    pub raft_inbound: mpsc::Sender<RaftFrame>,
    /// The listener's name (`controller.listener.names`), for logs.
    pub listener_name: String,
    /// The TLS server side when the listener is SSL.
    pub tls: Option<Arc<ListenerTls>>,
    /// Set when `authorizer.class.name` is: frames are authorized against this node's image.
    pub authorizer: Option<Arc<Authorizer>>,
}

/// Serves one accepted connection until it closes or misbehaves: the TLS handshake and the
/// principal first on an SSL listener, then the frames.
pub async fn serve_controller_connection(stream: TcpStream, endpoint: Arc<ControllerEndpoint>) {
    let peer = stream.peer_addr().ok();
    let peer_ip = peer.map(|peer| peer.ip());
    let Some(tls) = endpoint.tls.clone() else {
        let access = ControllerAccess::new(
            KafkaPrincipal::anonymous(),
            peer_ip,
            endpoint.authorizer.clone(),
        );
        serve_frames(stream, peer, access, &endpoint).await;
        return;
    };
    let Some((stream, principal)) = tls
        .accept(
            stream,
            peer,
            &endpoint.listener_name,
            " on the controller listener",
        )
        .await
    else {
        return;
    };
    let access = ControllerAccess::new(principal, peer_ip, endpoint.authorizer.clone());
    serve_frames(stream, peer, access, &endpoint).await;
}

/// Logs a refused frame (always a warn line: who, from where, what).
fn log_denied(
    access: &ControllerAccess,
    peer: Option<std::net::SocketAddr>,
    api_key: i16,
    operation: fjord_metadata::security::AclOperation,
    outcome: &str,
) {
    warn!(principal = %access.principal(), ?peer, api_key, ?operation,
        "controller listener: principal not authorized ({operation:?} on the Cluster resource); {outcome}");
}

/// Reads frames off an established connection and answers them, one at a time.
async fn serve_frames<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: Option<std::net::SocketAddr>,
    access: ControllerAccess,
    endpoint: &ControllerEndpoint,
) {
    let mut buffer = BytesMut::with_capacity(64 * 1024);
    loop {
        let body = match decode_frame(&mut buffer, RAFT_FRAME_SIZE_BYTES_MAX) {
            Ok(Some(body)) => body,
            Ok(None) => match stream.read_buf(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            },
            Err(error) => {
                warn!(?peer, %error, "bad frame on the controller listener; closing");
                return;
            }
        };
        let api_key = match body.get(..2) {
            Some(b) => i16::from_be_bytes([b[0], b[1]]),
            None => return,
        };
        let one_way = api_key == FJORD_RAFT_API_KEY || is_observer_api_key(api_key);
        if one_way {
            // Raft and FetchMetadata frames have no Kafka error answer: a denial closes.
            if let Some(operation) = required_operation(api_key) {
                if !access.allows(operation, || endpoint.runtime.image().acls.clone()) {
                    log_denied(&access, peer, api_key, operation, "closing the connection");
                    return;
                }
            }
        }
        let keep_open = if api_key == FJORD_RAFT_API_KEY {
            accept_raft_frame(body, &endpoint.cluster_id, &endpoint.raft_inbound, peer)
        } else if is_observer_api_key(api_key) {
            match answer_observer(endpoint, body, peer).await {
                Some(response) => write_flushed(&mut stream, &response).await,
                None => false,
            }
        } else {
            match answer_request(endpoint, body, &access, peer).await {
                Some(response) => write_flushed(&mut stream, &response).await,
                None => false,
            }
        };
        if !keep_open {
            return;
        }
    }
}

/// Writes one answer and flushes it (TLS holds the last record until flushed; a no-op for plain
/// TCP); `false` when the connection broke.
async fn write_flushed<S: AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) -> bool {
    stream.write_all(bytes).await.is_ok() && stream.flush().await.is_ok()
}

/// Answers an observer's FetchMetadata or FetchMetadataSnapshot; `None` closes the
/// connection (garbage, or this voter's runtime failed: the observer tries another voter).
async fn answer_observer(
    endpoint: &ControllerEndpoint,
    body: Bytes,
    peer: Option<std::net::SocketAddr>,
) -> Option<Bytes> {
    let request = match ObserverRequest::decode(body) {
        Ok(request) => request,
        Err(error) => {
            warn!(?peer, %error, "undecodable FetchMetadata request; closing");
            return None;
        }
    };
    let wait_ms = match &request {
        ObserverRequest::Fetch(fetch) => fetch.max_wait_ms.min(FETCH_METADATA_WAIT_MS_MAX),
        ObserverRequest::Snapshot(_) => 0,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_millis(u64::from(wait_ms));
    let mut images = endpoint.runtime.subscribe();
    loop {
        // Seen before answering: a commit after this read wakes the wait below.
        images.borrow_and_update();
        let response = match endpoint.runtime.answer_observer(&request) {
            Ok(response) => response,
            Err(error) => {
                debug!(?peer, %error, "cannot answer FetchMetadata; closing");
                return None;
            }
        };
        let nothing_yet = matches!(&response, ObserverResponse::Fetch(fetch)
            if fetch.error_code == 0
                && matches!(&fetch.body, FetchMetadataBody::Entries(entries) if entries.is_empty()));
        if let ObserverResponse::Fetch(fetch) = &response {
            if fetch.error_code == fjord_broker::metadata_fetch::error_code::INCONSISTENT_CLUSTER_ID
            {
                if let ObserverRequest::Fetch(asked) = &request {
                    warn!(?peer, node = asked.node_id, theirs = %asked.cluster_id, ours = %fetch.cluster_id,
                        "INCONSISTENT_CLUSTER_ID: an observer of another cluster fetched metadata");
                }
            }
        }
        if !nothing_yet
            || tokio::time::timeout_at(deadline, images.changed())
                .await
                .map_or(true, |changed| changed.is_err())
        {
            return Some(response.encode());
        }
    }
}

/// Decodes and answers one Kafka request; `None` closes the connection (garbage, or an API
/// this listener does not serve).
async fn answer_request(
    endpoint: &ControllerEndpoint,
    body: Bytes,
    access: &ControllerAccess,
    peer: Option<std::net::SocketAddr>,
) -> Option<Bytes> {
    let frame = match decode_header(body) {
        Ok(frame) => frame,
        Err(error) => {
            warn!(%error, "undecodable request on the controller listener; closing");
            return None;
        }
    };
    let api_key = frame.api_key;
    let version = frame.header.request_api_version;
    let correlation_id = frame.header.correlation_id;
    if api_key == ApiKey::ApiVersions {
        let response = ResponseKind::ApiVersions(api_versions());
        // ApiVersions answers in v0 framing if the client's version is unknown (as Kafka).
        let answer_version = version.clamp(0, 3);
        return encode_response(api_key, answer_version, correlation_id, &response).ok();
    }
    let describe_quorum = api_key == ApiKey::DescribeQuorum
        && (DESCRIBE_QUORUM_VERSIONS.min..=DESCRIBE_QUORUM_VERSIONS.max).contains(&version);
    if !describe_quorum && (!CONTROLLER_APIS.contains(&api_key) || version > wire_version(api_key))
    {
        warn!(
            ?peer,
            ?api_key,
            version,
            "request the controller listener does not serve; closing"
        );
        return None;
    }
    if let Some(operation) = required_operation(api_key as i16) {
        if !access.allows(operation, || endpoint.runtime.image().acls.clone()) {
            log_denied(
                access,
                peer,
                api_key as i16,
                operation,
                "answering CLUSTER_AUTHORIZATION_FAILED",
            );
            return refuse_unauthorized(&frame, api_key, version, correlation_id);
        }
    }
    if describe_quorum {
        let RequestKind::DescribeQuorum(request) = decode_body(&frame).ok()? else {
            return None;
        };
        let snapshot = (endpoint.runtime.quorum_describer())();
        let response = ResponseKind::DescribeQuorum(answer_locally(snapshot, version, &request));
        return encode_response(api_key, version, correlation_id, &response).ok();
    }
    let request = match decode_body(&frame) {
        Ok(request) => request,
        Err(error) => {
            warn!(%error, "undecodable controller request; closing");
            return None;
        }
    };
    let response = match request_from_wire(api_key, version, request.clone()) {
        Ok(controller_request) => match submit(endpoint, controller_request).await {
            Ok(reply) => match reply_to_wire(&reply, api_key, version) {
                Ok(response) => Ok(response),
                Err(error) => {
                    warn!(?api_key, %error, "controller reply does not encode");
                    error_to_wire(
                        api_key,
                        version,
                        &request,
                        error.code() as i16,
                        Some(&error.to_string()),
                    )
                }
            },
            Err(Refusal::NotController(message)) => {
                error_to_wire(api_key, version, &request, NOT_CONTROLLER, Some(&message))
            }
            Err(Refusal::TimedOut) => {
                error_to_wire(api_key, version, &request, REQUEST_TIMED_OUT, None)
            }
        },
        Err(error) => error_to_wire(
            api_key,
            version,
            &request,
            error.code() as i16,
            Some(&error.to_string()),
        ),
    };
    let response = match response {
        Ok(response) => response,
        Err(error) => {
            warn!(?api_key, %error, "no error response for this request; closing");
            return None;
        }
    };
    match encode_response(api_key, version, correlation_id, &response) {
        Ok(bytes) => Some(bytes),
        Err(error) => {
            warn!(?api_key, %error, "controller response does not encode; closing");
            None
        }
    }
}

/// CLUSTER_AUTHORIZATION_FAILED for a decoded header's request (`None`: undecodable, close).
fn refuse_unauthorized(
    frame: &fjord_protocol::request::RequestFrame,
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
) -> Option<Bytes> {
    let request = decode_body(frame).ok()?;
    let response = if api_key == ApiKey::DescribeQuorum {
        fjord_broker::apis::error_response::error_response(
            version,
            &request,
            fjord_protocol::ResponseError::ClusterAuthorizationFailed,
        )?
    } else {
        error_to_wire(
            api_key,
            version,
            &request,
            CLUSTER_AUTHORIZATION_FAILED,
            Some("Cluster authorization failed."),
        )
        .ok()?
    };
    encode_response(api_key, version, correlation_id, &response).ok()
}

enum Refusal {
    NotController(String),
    TimedOut,
}

async fn submit(
    endpoint: &ControllerEndpoint,
    request: ControllerRequest,
) -> Result<ControllerReply, Refusal> {
    let receiver = endpoint
        .runtime
        .submit(request, fjord_broker::time::monotonic_ms())
        .map_err(|error| Refusal::NotController(error.to_string()))?;
    match tokio::time::timeout(
        std::time::Duration::from_millis(COMMIT_TIMEOUT_MS),
        receiver,
    )
    .await
    {
        Ok(Ok(Ok(reply))) => Ok(reply),
        Ok(Ok(Err(NotController::NotActive { .. }))) | Ok(Err(_)) => Err(Refusal::NotController(
            "the controller resigned".to_string(),
        )),
        Ok(Ok(Err(NotController::Refused(reason)))) => Err(Refusal::NotController(reason)),
        Err(_) => {
            debug!("controller request timed out waiting for its commit");
            Err(Refusal::TimedOut)
        }
    }
}

fn api_versions() -> ApiVersionsResponse {
    let mut keys: Vec<ApiVersion> = CONTROLLER_APIS
        .iter()
        .chain([&ApiKey::ApiVersions, &ApiKey::DescribeQuorum])
        .map(|key| {
            let max = if *key == ApiKey::ApiVersions {
                3
            } else {
                wire_version(*key)
            };
            ApiVersion::default()
                .with_api_key(*key as i16)
                .with_min_version(0)
                .with_max_version(max)
        })
        .collect();
    keys.sort_by_key(|k| k.api_key);
    ApiVersionsResponse::default().with_api_keys(keys)
}
