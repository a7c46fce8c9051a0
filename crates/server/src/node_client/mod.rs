//! [`TcpNodeChannel`]: the broker's [`NodeChannel`] to other nodes, over TCP (TLS when the
//! inter-broker listener is SSL: `with_tls`, the peer's advertised host as server name) with
//! Kafka framing. Kafka's equivalent is `NetworkClient` as used by `BrokerBlockingSender` and the
//! transaction marker channel.
//!
//! Two connections per node, one per [`Lane`]: replica fetches on one, everything else
//! (transaction markers, forwarded requests) on the other, as Kafka's replica fetchers and its
//! transaction marker channel each have their own `NetworkClient`. A node answers a
//! connection's requests in order, so a WriteTxnMarkers waiting for the high watermark must
//! never sit in front of the very follower fetches that move it. Each connection is opened on
//! first use and reopened on the next request after it broke. Requests are pipelined on it: each gets a correlation id, a reader task matches
//! responses to waiting callers. Limits: requests in flight per connection (`in_flight_max`, the
//! caller gets [`ChannelError::TooManyInFlight`] instead of queueing without bound), the size of
//! a response frame, connect and request timeouts. A request that times out closes its
//! connection, as Kafka's `NetworkClient` does: a node that stopped answering one request is
//! unlikely to answer the next, and a fresh connection drops whatever the old one still owed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use fjord_broker::node_channel::{BoxFuture, ChannelError, NodeChannel, NodeRequest};
use fjord_broker::security::sasl::{ClientStep, SaslClientAuthenticator, SaslConfig};
use fjord_protocol::frame::decode_frame;
use fjord_protocol::kafka_protocol::messages::RequestHeader;
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::request::encode_request;
use fjord_protocol::response::decode_response;
use fjord_protocol::{ApiKey, RequestKind, ResponseKind};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{oneshot, Semaphore};
use tracing::{debug, warn};

/// Bounds of a [`TcpNodeChannel`].
#[derive(Debug, Clone)]
pub struct NodeChannelLimits {
    /// Requests awaiting a response on one connection (each node has two, see [`Lane`]).
    pub in_flight_max: usize,
    /// Largest response frame accepted; a bigger one closes the connection. Must exceed the
    /// largest fetch response a follower asks for (`replica.fetch.response.max.bytes`).
    pub response_size_bytes_max: usize,
    pub connect_timeout_ms: u64,
}

impl Default for NodeChannelLimits {
    fn default() -> Self {
        Self {
            in_flight_max: 64,
            response_size_bytes_max: 64 * 1024 * 1024,
            connect_timeout_ms: 5_000,
        }
    }
}

/// Which of a node's connections a request travels on (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Lane {
    /// Follower fetches (Kafka's `ReplicaFetcherThread` connection).
    Replication,
    /// Everything else: transaction markers, forwarded requests.
    Control,
}

impl Lane {
    fn of(api_key: ApiKey) -> Self {
        if api_key == ApiKey::Fetch {
            Lane::Replication
        } else {
            Lane::Control
        }
    }
}

/// A node's connection, behind an async mutex that serialises connecting: a burst of requests
/// to a node that is down makes one connection attempt, not one each.
type ConnectionSlot = Arc<tokio::sync::Mutex<Option<Arc<NodeConnection>>>>;

/// How the channel dials the peers' inter-broker listener.
#[derive(Clone, Default)]
pub enum InterBrokerTls {
    /// PLAINTEXT.
    #[default]
    Plain,
    /// SSL with this client config.
    Tls(Arc<rustls::ClientConfig>),
    /// SSL, but this broker cannot dial it (no truststore): every connect fails with this.
    Unavailable(String),
}

/// Where a peer's inter-broker listener is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerEndpoint {
    pub node_id: i32,
    /// HOST:PORT dialled.
    pub address: String,
    /// The advertised host: the TLS server name checked against the peer's certificate.
    pub server_name: String,
}

/// Sends Kafka requests to other nodes over TCP. Cheap to share behind an `Arc`.
pub struct TcpNodeChannel {
    client_id: String,
    limits: NodeChannelLimits,
    /// TLS towards the peers' inter-broker listener, when it is SSL.
    tls: InterBrokerTls,
    /// SASL towards the peers' inter-broker listener, when it is SASL_*: the mechanism of
    /// `sasl.mechanism.inter.broker.protocol` with that mechanism's JAAS username/password.
    sasl: Option<Arc<SaslConfig>>,
    endpoints: Mutex<HashMap<i32, String>>,
    /// TLS server name per node (its advertised host).
    server_names: Mutex<HashMap<i32, String>>,
    slots: Mutex<HashMap<(i32, Lane), ConnectionSlot>>,
    shutting_down: AtomicBool,
}

impl TcpNodeChannel {
    /// `client_id` names this node in the peers' logs (Kafka sends `broker-{id}-fetcher-0` and
    /// the like).
    pub fn new(client_id: impl Into<String>, limits: NodeChannelLimits) -> Self {
        Self {
            client_id: client_id.into(),
            limits,
            tls: InterBrokerTls::Plain,
            sasl: None,
            endpoints: Mutex::new(HashMap::new()),
            server_names: Mutex::new(HashMap::new()),
            slots: Mutex::new(HashMap::new()),
            shutting_down: AtomicBool::new(false),
        }
    }

    /// How to dial the peers (default: plain TCP).
    pub fn with_tls(mut self, tls: InterBrokerTls) -> Self {
        self.tls = tls;
        self
    }

    /// Authenticate every new connection with SASL (default: none).
    pub fn with_sasl(mut self, sasl: Option<Arc<SaslConfig>>) -> Self {
        self.sasl = sasl;
        self
    }

    /// Sets the peers' addresses and TLS server names (see [`NodeChannel::set_endpoints`]).
    pub fn set_peer_endpoints(&self, endpoints: Vec<PeerEndpoint>) {
        *self.server_names.lock() = endpoints
            .iter()
            .map(|e| (e.node_id, e.server_name.clone()))
            .collect();
        self.set_endpoints(
            endpoints
                .into_iter()
                .map(|e| (e.node_id, e.address))
                .collect(),
        );
    }

    /// Closes every connection and fails whatever is in flight; later sends fail at once.
    pub fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        let slots: Vec<_> = self.slots.lock().drain().map(|(_, slot)| slot).collect();
        for slot in slots {
            if let Ok(mut guard) = slot.try_lock() {
                if let Some(connection) = guard.take() {
                    connection.close("channel shut down");
                }
            }
        }
    }

    fn slot(&self, node_id: i32, lane: Lane) -> ConnectionSlot {
        self.slots
            .lock()
            .entry((node_id, lane))
            .or_default()
            .clone()
    }

    /// The live connection of `lane` to `node_id` at `address`, opening one if there is none.
    async fn connection(
        &self,
        node_id: i32,
        lane: Lane,
        address: &str,
    ) -> Result<Arc<NodeConnection>, ChannelError> {
        let slot = self.slot(node_id, lane);
        let mut guard = slot.lock().await;
        if let Some(existing) = guard.as_ref() {
            if !existing.is_closed() && existing.address == address && !existing.session_expired() {
                return Ok(existing.clone());
            }
            existing.close("replaced");
        }
        let tls = match &self.tls {
            InterBrokerTls::Unavailable(reason) => {
                return Err(ChannelError::Connect {
                    node_id,
                    address: address.to_string(),
                    reason: reason.clone(),
                })
            }
            InterBrokerTls::Tls(config) => {
                // The advertised host; an address without one (set_endpoints) names itself.
                let name = self
                    .server_names
                    .lock()
                    .get(&node_id)
                    .cloned()
                    .unwrap_or_else(|| {
                        let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
                        host.trim_start_matches('[')
                            .trim_end_matches(']')
                            .to_string()
                    });
                Some((config.clone(), name))
            }
            InterBrokerTls::Plain => None,
        };
        let connection = NodeConnection::open(node_id, address, tls, &self.limits).await?;
        // Client authentication (SASL, docs/security-design.md 3) runs here, on the new
        // connection before any other request: PLAINTEXT and SSL need none.
        if let Some(sasl) = &self.sasl {
            if let Err(reason) = self.authenticate(&connection, sasl).await {
                connection.close(&reason);
                return Err(ChannelError::Connect {
                    node_id,
                    address: address.to_string(),
                    reason,
                });
            }
        }
        *guard = Some(connection.clone());
        Ok(connection)
    }

    /// Kafka's `SaslClientAuthenticator` on a fresh connection: SaslHandshake v1, then
    /// SaslAuthenticate round trips until the server accepted (the SCRAM server signature is
    /// checked). The session lifetime the server grants (KIP-368) makes the connection expire:
    /// the next request after it opens a new, freshly authenticated one.
    async fn authenticate(
        &self,
        connection: &NodeConnection,
        sasl: &SaslConfig,
    ) -> Result<(), String> {
        let mut client = SaslClientAuthenticator::from_config(sasl).map_err(|e| e.to_string())?;
        let timeout_ms = self.limits.connect_timeout_ms.max(1);
        let send = |body: RequestKind, api_key: ApiKey, api_version: i16| NodeRequest {
            api_key,
            api_version,
            body,
            timeout_ms,
        };
        let handshake = match connection
            .request(
                &self.client_id,
                send(
                    RequestKind::SaslHandshake(client.handshake_request()),
                    ApiKey::SaslHandshake,
                    1,
                ),
            )
            .await
        {
            Ok(ResponseKind::SaslHandshake(response)) => response,
            Ok(_) => return Err("unexpected answer to SaslHandshake".into()),
            Err(err) => return Err(format!("SaslHandshake failed: {err}")),
        };
        let mut next = client
            .on_handshake_response(&handshake)
            .map_err(|e| format!("SASL handshake refused: {e}"))?;
        // SCRAM takes two round trips, PLAIN one; a bound keeps a confused server from
        // looping us.
        for _ in 0..4 {
            let response = match connection
                .request(
                    &self.client_id,
                    send(
                        RequestKind::SaslAuthenticate(next),
                        ApiKey::SaslAuthenticate,
                        2,
                    ),
                )
                .await
            {
                Ok(ResponseKind::SaslAuthenticate(response)) => response,
                Ok(_) => return Err("unexpected answer to SaslAuthenticate".into()),
                Err(err) => return Err(format!("SaslAuthenticate failed: {err}")),
            };
            match client
                .on_authenticate_response(&response)
                .map_err(|e| format!("SASL authentication failed: {e}"))?
            {
                ClientStep::Send(request) => next = request,
                ClientStep::Done {
                    session_lifetime_ms,
                } => {
                    connection.set_session_lifetime_ms(session_lifetime_ms);
                    return Ok(());
                }
            }
        }
        Err("SASL authentication did not finish in 4 round trips".into())
    }

    async fn send_request(
        &self,
        node_id: i32,
        request: NodeRequest,
    ) -> Result<ResponseKind, ChannelError> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(ChannelError::ShuttingDown);
        }
        if produces_no_response(&request.body) {
            return Err(ChannelError::Encode {
                api_key: request.api_key,
                api_version: request.api_version,
                reason: "a Produce with acks=0 has no response to wait for".to_string(),
            });
        }
        let address = self
            .endpoints
            .lock()
            .get(&node_id)
            .cloned()
            .ok_or(ChannelError::UnknownNode { node_id })?;
        let lane = Lane::of(request.api_key);
        let connection = self.connection(node_id, lane, &address).await?;
        connection.request(&self.client_id, request).await
    }
}

/// Kafka sends no response to a Produce with acks=0.
fn produces_no_response(body: &RequestKind) -> bool {
    matches!(body, RequestKind::Produce(produce) if produce.acks == 0)
}

impl NodeChannel for TcpNodeChannel {
    fn send(
        &self,
        node_id: i32,
        request: NodeRequest,
    ) -> BoxFuture<'_, Result<ResponseKind, ChannelError>> {
        Box::pin(self.send_request(node_id, request))
    }

    fn set_endpoints(&self, endpoints: Vec<(i32, String)>) {
        let new: HashMap<i32, String> = endpoints.into_iter().collect();
        let gone: Vec<i32> = {
            let mut current = self.endpoints.lock();
            let gone = current
                .iter()
                .filter(|(id, address)| new.get(id) != Some(address))
                .map(|(id, _)| *id)
                .collect();
            *current = new;
            gone
        };
        for (node_id, lane) in gone
            .into_iter()
            .flat_map(|id| [(id, Lane::Replication), (id, Lane::Control)])
        {
            let slot = self.slots.lock().remove(&(node_id, lane));
            if let Some(slot) = slot {
                if let Ok(mut guard) = slot.try_lock() {
                    if let Some(connection) = guard.take() {
                        connection.close("endpoint changed");
                    }
                }
                // A slot locked by a connect in progress is simply dropped from the map: that
                // connection is compared with the new address on its next use.
            }
        }
    }
}

struct Pending {
    api_key: ApiKey,
    api_version: i16,
    reply: oneshot::Sender<Result<ResponseKind, ChannelError>>,
}

/// One TCP connection to one node, with its in-flight requests.
struct NodeConnection {
    node_id: i32,
    address: String,
    writer: tokio::sync::Mutex<Box<dyn AsyncWrite + Send + Unpin>>,
    pending: Mutex<HashMap<i32, Pending>>,
    next_correlation_id: AtomicI32,
    in_flight: Semaphore,
    in_flight_max: usize,
    closed: AtomicBool,
    reader: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// When the SASL session ends (KIP-368), as `Instant`; `None`: never.
    session_expires_at: Mutex<Option<std::time::Instant>>,
}

impl NodeConnection {
    async fn open(
        node_id: i32,
        address: &str,
        tls: Option<(Arc<rustls::ClientConfig>, String)>,
        limits: &NodeChannelLimits,
    ) -> Result<Arc<Self>, ChannelError> {
        let connect_error = |reason: String| ChannelError::Connect {
            node_id,
            address: address.to_string(),
            reason,
        };
        let timeout = Duration::from_millis(limits.connect_timeout_ms);
        let stream = crate::tls::connect_tcp(address, timeout)
            .await
            .map_err(connect_error)?;
        let (read_half, write_half): (
            Box<dyn AsyncRead + Send + Unpin>,
            Box<dyn AsyncWrite + Send + Unpin>,
        ) = match tls {
            None => {
                let (read_half, write_half) = stream.into_split();
                (Box::new(read_half), Box::new(write_half))
            }
            Some((config, name)) => {
                let stream = crate::tls::connect_tls(stream, &config, &name, timeout)
                    .await
                    .map_err(connect_error)?;
                let (read_half, write_half) = tokio::io::split(stream);
                (Box::new(read_half), Box::new(write_half))
            }
        };
        let connection = Arc::new(Self {
            node_id,
            address: address.to_string(),
            writer: tokio::sync::Mutex::new(write_half),
            pending: Mutex::new(HashMap::new()),
            next_correlation_id: AtomicI32::new(0),
            in_flight: Semaphore::new(limits.in_flight_max),
            in_flight_max: limits.in_flight_max,
            closed: AtomicBool::new(false),
            reader: Mutex::new(None),
            session_expires_at: Mutex::new(None),
        });
        let reader = tokio::spawn(read_responses(
            Arc::downgrade(&connection),
            read_half,
            limits.response_size_bytes_max,
        ));
        *connection.reader.lock() = Some(reader);
        debug!(node_id, address, "connected to node");
        Ok(connection)
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Ends the connection's use a little before the server's session lifetime (0 = none), so
    /// no request races the expiry; the next request reconnects and authenticates again.
    fn set_session_lifetime_ms(&self, session_lifetime_ms: i64) {
        if session_lifetime_ms <= 0 {
            return;
        }
        let margin_ms = (session_lifetime_ms / 10).min(5_000);
        let usable_ms = u64::try_from(session_lifetime_ms - margin_ms).unwrap_or(0);
        *self.session_expires_at.lock() =
            Some(std::time::Instant::now() + Duration::from_millis(usable_ms));
    }

    fn session_expired(&self) -> bool {
        self.session_expires_at
            .lock()
            .is_some_and(|at| std::time::Instant::now() >= at)
    }

    /// Marks the connection dead and fails every waiting request. Idempotent.
    fn close(&self, reason: &str) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(reader) = self.reader.lock().take() {
            reader.abort();
        }
        let pending: Vec<Pending> = self.pending.lock().drain().map(|(_, p)| p).collect();
        for waiting in pending {
            let _ = waiting.reply.send(Err(ChannelError::Disconnected {
                node_id: self.node_id,
                reason: reason.to_string(),
            }));
        }
        debug!(node_id = self.node_id, address = %self.address, reason, "connection to node closed");
    }

    async fn request(
        &self,
        client_id: &str,
        request: NodeRequest,
    ) -> Result<ResponseKind, ChannelError> {
        let NodeRequest {
            api_key,
            api_version,
            body,
            timeout_ms,
        } = request;
        let _permit = self
            .in_flight
            .try_acquire()
            .map_err(|_| ChannelError::TooManyInFlight {
                node_id: self.node_id,
                in_flight_max: self.in_flight_max,
            })?;
        let correlation_id = self.next_correlation_id.fetch_add(1, Ordering::Relaxed);
        let header = RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(api_version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_string(client_id.to_string())));
        let encode_error = |reason: String| ChannelError::Encode {
            api_key,
            api_version,
            reason,
        };
        let encoded = encode_request(&header, &body).map_err(|err| encode_error(err.0))?;
        let size = i32::try_from(encoded.len())
            .map_err(|_| encode_error(format!("{} bytes is too large", encoded.len())))?;
        let mut frame = Vec::with_capacity(encoded.len() + 4);
        frame.extend_from_slice(&size.to_be_bytes());
        frame.extend_from_slice(&encoded);

        let (reply_tx, reply_rx) = oneshot::channel();
        self.pending.lock().insert(
            correlation_id,
            Pending {
                api_key,
                api_version,
                reply: reply_tx,
            },
        );
        // Registered before writing, so a fast response always finds its waiter; checked
        // after, so a close that raced the registration cannot strand it.
        if self.is_closed() {
            self.pending.lock().remove(&correlation_id);
            return Err(self.disconnected("closed"));
        }
        let written = {
            let mut writer = self.writer.lock().await;
            match writer.write_all(&frame).await {
                // TLS buffers: push the record out.
                Ok(()) => writer.flush().await,
                Err(err) => Err(err),
            }
        };
        if let Err(err) = written {
            self.close(&format!("write failed: {err}"));
            return Err(self.disconnected(&err.to_string()));
        }
        match tokio::time::timeout(Duration::from_millis(timeout_ms), reply_rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(self.disconnected("closed")),
            Err(_) => {
                self.pending.lock().remove(&correlation_id);
                warn!(
                    node_id = self.node_id,
                    ?api_key,
                    timeout_ms,
                    "request to node timed out; closing the connection"
                );
                self.close("request timed out");
                Err(ChannelError::Timeout {
                    node_id: self.node_id,
                    api_key,
                    timeout_ms,
                })
            }
        }
    }

    fn disconnected(&self, reason: &str) -> ChannelError {
        ChannelError::Disconnected {
            node_id: self.node_id,
            reason: reason.to_string(),
        }
    }
}

impl Drop for NodeConnection {
    fn drop(&mut self) {
        if let Some(reader) = self.reader.get_mut().take() {
            reader.abort();
        }
    }
}

/// Reads response frames and hands each to its waiter until the connection ends. Holds only
/// a weak reference, so dropping the last handle to the connection ends the task.
async fn read_responses(
    connection: std::sync::Weak<NodeConnection>,
    mut read_half: Box<dyn AsyncRead + Send + Unpin>,
    response_size_bytes_max: usize,
) {
    let mut buffer = BytesMut::with_capacity(64 * 1024);
    let reason = loop {
        let frame = match decode_frame(&mut buffer, response_size_bytes_max) {
            Ok(Some(frame)) => frame,
            Ok(None) => match read_half.read_buf(&mut buffer).await {
                Ok(0) => break "closed by the node".to_string(),
                Ok(_) => continue,
                Err(err) => break format!("read failed: {err}"),
            },
            Err(err) => break format!("bad response frame: {err}"),
        };
        let Some(connection) = connection.upgrade() else {
            return;
        };
        let Some(correlation_id) = frame
            .get(..4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        else {
            break "response shorter than its header".to_string();
        };
        let Some(waiting) = connection.pending.lock().remove(&correlation_id) else {
            // The request timed out in the meantime: nobody waits for this answer.
            debug!(
                node_id = connection.node_id,
                correlation_id, "response without a waiting request dropped"
            );
            continue;
        };
        let decoded = decode_response(waiting.api_key, waiting.api_version, frame)
            .map(|(_, body)| body)
            .map_err(|err| ChannelError::Decode {
                node_id: connection.node_id,
                api_key: waiting.api_key,
                api_version: waiting.api_version,
                reason: err.reason,
            });
        let _ = waiting.reply.send(decoded);
    };
    if let Some(connection) = connection.upgrade() {
        connection.close(&reason);
    }
}

#[cfg(test)]
mod tests;
