//! One client connection.
//!
//! Two halves run concurrently: the reader decodes frames into requests and queues them (up to
//! `queued.max.requests` ahead, holding `queued.max.request.bytes` permits for their memory);
//! the processor takes them strictly in order, runs the handler, and writes the response. So
//! pipelined requests are answered in the order they were sent, as Kafka guarantees, and a
//! client that stops reading its responses stops having its requests read.
//!
//! Garbage (bad framing, unknown API keys, undecodable requests, unsupported versions other than
//! ApiVersions) closes this connection with one log line; nothing else is affected.
//!
//! The connection is generic over its transport: the plain TCP halves (fetch responses send
//! their file ranges with `sendfile`), or the halves of a TLS stream (file ranges are read into
//! memory and encrypted: `Outcome::into_inline`). Static dispatch, so PLAINTEXT pays nothing
//! for TLS. Every request runs with the connection's [`Session`] (principal, listener,
//! security protocol); [`ConnectionAuth`] is where an authentication step sits between decode
//! and `Broker::handle_session`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use fjord_broker::apis::api_versions;
use fjord_broker::security::sasl::{AuthAction, SaslServerAuthenticator};
use fjord_broker::security::Session;
use fjord_broker::{Broker, Outcome};
use fjord_protocol::frame::{decode_frame, peek_frame_size};
use fjord_protocol::kafka_protocol::messages::RequestHeader;
use fjord_protocol::request::{decode_body, decode_header, peek_prefix};
use fjord_protocol::response::encode_response;
use fjord_protocol::splice::{encode_response_with_external, SpliceError};
use fjord_protocol::{ApiKey, RequestKind, ResponseError, ResponseKind};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, warn};

use crate::splice;

/// Limits shared by every connection.
#[derive(Clone)]
pub struct ConnectionLimits {
    pub frame_size_bytes_max: usize,
    pub queued_requests_max: usize,
    pub idle_timeout: Duration,
    /// Bytes of undecoded and queued requests across all connections.
    pub request_memory: Arc<Semaphore>,
    pub request_memory_bytes_max: usize,
}

/// What the reader hands the processor.
enum Inbound {
    Request {
        header: RequestHeader,
        api_key: ApiKey,
        request: Box<RequestKind>,
        _memory: Option<OwnedSemaphorePermit>,
        decoded_at: Instant,
    },
    /// ApiVersions with a version this broker does not know: answered with v0 (KIP-511).
    UnsupportedApiVersions {
        correlation_id: i32,
        decoded_at: Instant,
    },
}

/// Where a connection's responses are written.
pub trait ResponseWriter: AsyncWrite + Unpin + Send + 'static {
    /// The plain TCP half when file ranges may go out with `sendfile`; `None` for transports
    /// that must see every byte (TLS).
    fn sendfile_half(&mut self) -> Option<&mut OwnedWriteHalf>;
}

impl ResponseWriter for OwnedWriteHalf {
    fn sendfile_half(&mut self) -> Option<&mut OwnedWriteHalf> {
        Some(self)
    }
}

impl ResponseWriter for tokio::io::WriteHalf<tokio_rustls::server::TlsStream<TcpStream>> {
    fn sendfile_half(&mut self) -> Option<&mut OwnedWriteHalf> {
        None
    }
}

/// How a connection authenticates: the one place an authentication step sits between a
/// decoded request and `Broker::handle_session`.
pub enum ConnectionAuth {
    /// PLAINTEXT and SSL: the principal was settled when the connection was accepted
    /// (anonymous, or the TLS client certificate's).
    AuthenticatedAtAccept,
    /// SASL_PLAINTEXT and SASL_SSL: Kafka's `SaslServerAuthenticator` answers ApiVersions
    /// (through the broker), SaslHandshake and SaslAuthenticate until the client authenticated,
    /// and again when it re-authenticates (KIP-368).
    Sasl(Box<SaslServerAuthenticator>),
}

/// What [`ConnectionAuth::before_request`] decided for one request.
// Consumed at once, once per request: boxing the request would add an allocation to each.
#[allow(clippy::large_enum_variant)]
pub enum AuthStep {
    /// Hand the request to the broker with the session.
    Handle(RequestKind),
    /// The authenticator answered the request itself (SaslHandshake, SaslAuthenticate).
    Respond(Box<Outcome>),
    /// Write this answer (a failed authentication), then close the connection.
    RespondAndClose(Box<Outcome>, String),
    /// Close the connection (a request before authentication, an expired session).
    Close(String),
}

impl ConnectionAuth {
    /// Runs before every request; may update the session (the SASL principal).
    fn before_request(
        &mut self,
        session: &mut Session,
        header: &RequestHeader,
        request: RequestKind,
        broker: &Broker,
    ) -> AuthStep {
        let ConnectionAuth::Sasl(auth) = self else {
            return AuthStep::Handle(request);
        };
        let image = broker.image();
        let respond = |response| Box::new(Outcome::Respond(response));
        match auth.on_request(header, request, &image, fjord_broker::time::now_ms()) {
            AuthAction::Pass(request) => AuthStep::Handle(request),
            AuthAction::Respond(response) => AuthStep::Respond(respond(response)),
            AuthAction::Authenticated(response, principal) => {
                debug!(%principal, mechanism = ?auth.mechanism(), "SASL authentication succeeded");
                session.principal = principal;
                session.sasl_mechanism = auth.mechanism().map(|m| m.name().to_string());
                AuthStep::Respond(respond(response))
            }
            AuthAction::RespondAndClose(response, why) => {
                AuthStep::RespondAndClose(respond(response), why.to_string())
            }
            AuthAction::Close(why) => AuthStep::Close(why.to_string()),
        }
    }

    /// The largest frame the reader may accept now: SASL's bound before authentication.
    fn frame_size_bytes_max(&self, configured: usize) -> usize {
        match self {
            ConnectionAuth::Sasl(auth) => auth
                .max_receive_size_bytes()
                .map_or(configured, |bound| bound.min(configured)),
            ConnectionAuth::AuthenticatedAtAccept => configured,
        }
    }
}

/// The longest a quota mute holds a connection (Kafka's throttle times are bounded by the
/// quota window for request quotas; byte-rate throttles can be longer). A bound keeps a
/// misconfigured tiny quota from parking a connection for hours.
const MUTE_MS_MAX: u64 = 60_000;

/// Kafka's `connection.failed.authentication.delay.ms` default (not configurable here).
const FAILED_AUTHENTICATION_DELAY_MS: u64 = 100;

/// Sends what the handler decided; `Err` closes the connection.
async fn write_outcome<W: ResponseWriter>(
    socket: &mut W,
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    outcome: Outcome,
) -> Result<(), String> {
    let encode_failed = |err: &dyn std::fmt::Display| {
        tracing::error!(error = %err, ?api_key, api_version, "failed to encode a response");
        err.to_string()
    };
    match outcome {
        Outcome::Respond(body) => {
            let bytes = encode_response(api_key, api_version, correlation_id, &body)
                .map_err(|err| encode_failed(&err))?;
            socket
                .write_all(&bytes)
                .await
                .map_err(|err| err.to_string())
        }
        Outcome::RespondWithFileRecords(body, file_records) if socket.sendfile_half().is_none() => {
            let outcome = Outcome::RespondWithFileRecords(body, file_records)
                .into_inline()
                .map_err(|err| err.to_string())?;
            Box::pin(write_outcome(
                socket,
                api_key,
                api_version,
                correlation_id,
                outcome,
            ))
            .await
        }
        Outcome::RespondWithFileRecords(body, file_records) => {
            let sizes: Vec<u64> = file_records.iter().map(|r| r.size_bytes()).collect();
            match encode_response_with_external(api_key, api_version, correlation_id, &body, &sizes)
            {
                Ok(parts) => match socket.sendfile_half() {
                    Some(plain) => splice::write_frame_parts(plain, &parts, &file_records)
                        .await
                        .map_err(|err| err.to_string()),
                    None => Err("no sendfile on this transport".to_string()),
                },
                Err(SpliceError::Placeholders) => {
                    // A placeholder tag showed up where it should not (see `splice`): send
                    // the records inline instead.
                    warn!(?api_key, "response not spliceable; sending records inline");
                    let outcome = Outcome::RespondWithFileRecords(body, file_records)
                        .into_inline()
                        .map_err(|err| err.to_string())?;
                    Box::pin(write_outcome(
                        socket,
                        api_key,
                        api_version,
                        correlation_id,
                        outcome,
                    ))
                    .await
                }
                Err(err) => Err(encode_failed(&err)),
            }
        }
        Outcome::NoResponse => Ok(()),
        Outcome::CloseConnection(reason) => Err(reason.to_string()),
    }
}

/// Why the reader stopped.
#[derive(Debug)]
enum ReadEnd {
    Closed,
    Shutdown,
    Idle,
    Error(String),
}

/// Serves a PLAINTEXT connection (`session` says which listener).
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    session: Session,
    auth: ConnectionAuth,
    broker: Arc<Broker>,
    limits: ConnectionLimits,
    shutdown: watch::Receiver<bool>,
) {
    if let Err(err) = stream.set_nodelay(true) {
        debug!(%peer, error = %err, "set_nodelay failed");
    }
    let (read_half, write_half) = stream.into_split();
    serve_halves(
        read_half, write_half, peer, session, auth, broker, limits, shutdown,
    )
    .await;
}

/// Serves a connection whose TLS handshake is done (`session` carries its principal).
pub async fn serve_tls(
    stream: tokio_rustls::server::TlsStream<TcpStream>,
    peer: SocketAddr,
    session: Session,
    auth: ConnectionAuth,
    broker: Arc<Broker>,
    limits: ConnectionLimits,
    shutdown: watch::Receiver<bool>,
) {
    let (read_half, write_half) = tokio::io::split(stream);
    serve_halves(
        read_half, write_half, peer, session, auth, broker, limits, shutdown,
    )
    .await;
}

#[allow(clippy::too_many_arguments)]
async fn serve_halves<R, W>(
    read_half: R,
    write_half: W,
    peer: SocketAddr,
    session: Session,
    auth: ConnectionAuth,
    broker: Arc<Broker>,
    limits: ConnectionLimits,
    shutdown: watch::Receiver<bool>,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: ResponseWriter,
{
    let (queue_tx, queue_rx) = mpsc::channel(limits.queued_requests_max);
    let configured_frame_max = limits.frame_size_bytes_max;
    let frame_size_bytes_max = Arc::new(AtomicUsize::new(
        auth.frame_size_bytes_max(configured_frame_max),
    ));
    let reader = tokio::spawn(read_requests(
        read_half,
        broker.clone(),
        limits,
        frame_size_bytes_max.clone(),
        queue_tx,
        shutdown,
    ));
    let frame_limit = FrameLimit {
        shared: frame_size_bytes_max,
        configured: configured_frame_max,
    };
    let written = process_requests(write_half, broker, queue_rx, session, auth, frame_limit).await;
    // The processor ends when the reader closed the queue or a write failed; in the latter case
    // stop the reader too.
    reader.abort();
    let read_end = match reader.await {
        Ok(end) => end,
        Err(_) => ReadEnd::Closed,
    };
    match (&read_end, written) {
        (ReadEnd::Error(reason), _) => warn!(%peer, %reason, "closing connection"),
        (_, Err(reason)) => info!(%peer, %reason, "connection closed while writing"),
        (ReadEnd::Idle, _) => debug!(%peer, "closed idle connection"),
        _ => debug!(%peer, ?read_end, "connection closed"),
    }
}

/// The reader's frame bound, lowered before SASL authentication (`sasl.server.max.receive.size`)
/// and raised by the processor once the client authenticated.
struct FrameLimit {
    shared: Arc<AtomicUsize>,
    configured: usize,
}

async fn read_requests<R: AsyncRead + Unpin>(
    mut socket: R,
    broker: Arc<Broker>,
    limits: ConnectionLimits,
    frame_size_bytes_max: Arc<AtomicUsize>,
    queue: mpsc::Sender<Inbound>,
    mut shutdown: watch::Receiver<bool>,
) -> ReadEnd {
    let mut buffer = BytesMut::with_capacity(64 * 1024);
    let mut permit: Option<OwnedSemaphorePermit> = None;
    loop {
        // Hand out every complete frame already buffered.
        loop {
            let frame_max = frame_size_bytes_max.load(Ordering::Acquire);
            let size_bytes = match peek_frame_size(&buffer, frame_max) {
                Ok(Some(size)) => size,
                Ok(None) => break,
                Err(err) => return ReadEnd::Error(err.to_string()),
            };
            if permit.is_none() {
                // Reserve memory for this frame before reading its body.
                let wanted = size_bytes.clamp(1, limits.request_memory_bytes_max) as u32;
                permit = match limits
                    .request_memory
                    .clone()
                    .acquire_many_owned(wanted)
                    .await
                {
                    Ok(p) => Some(p),
                    Err(_) => return ReadEnd::Shutdown,
                };
            }
            let frame = match decode_frame(&mut buffer, frame_max) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(err) => return ReadEnd::Error(err.to_string()),
            };
            let inbound = match decode(&broker, frame) {
                Ok((header, api_key, request)) => Inbound::Request {
                    header,
                    api_key,
                    request: Box::new(request),
                    _memory: permit.take(),
                    decoded_at: Instant::now(),
                },
                Err(Rejection::UnsupportedApiVersions { correlation_id }) => {
                    permit = None;
                    Inbound::UnsupportedApiVersions {
                        correlation_id,
                        decoded_at: Instant::now(),
                    }
                }
                Err(Rejection::Close(reason)) => return ReadEnd::Error(reason),
            };
            if queue.send(inbound).await.is_err() {
                return ReadEnd::Closed;
            }
        }
        if *shutdown.borrow() {
            return ReadEnd::Shutdown;
        }
        tokio::select! {
            read = tokio::time::timeout(limits.idle_timeout, socket.read_buf(&mut buffer)) => match read {
                Err(_) => return ReadEnd::Idle,
                Ok(Ok(0)) if buffer.is_empty() => return ReadEnd::Closed,
                Ok(Ok(0)) => return ReadEnd::Error(format!("peer closed the connection mid-frame ({} bytes buffered)", buffer.len())),
                Ok(Ok(_)) => {}
                Ok(Err(err)) => return ReadEnd::Error(err.to_string()),
            },
            _ = shutdown.changed() => return ReadEnd::Shutdown,
        }
    }
}

enum Rejection {
    UnsupportedApiVersions { correlation_id: i32 },
    Close(String),
}

/// Decodes one frame into a request the broker supports.
fn decode(
    broker: &Broker,
    frame: Bytes,
) -> Result<(RequestHeader, ApiKey, RequestKind), Rejection> {
    let prefix = peek_prefix(&frame).map_err(|err| Rejection::Close(err.to_string()))?;
    let api_key = ApiKey::try_from(prefix.api_key)
        .map_err(|()| Rejection::Close(format!("unknown api key {}", prefix.api_key)))?;
    if !broker.supports(api_key, prefix.api_version) {
        if api_key == ApiKey::ApiVersions {
            return Err(Rejection::UnsupportedApiVersions {
                correlation_id: prefix.correlation_id,
            });
        }
        // Counted although no response is sent: Kafka closes such connections too.
        broker
            .metrics()
            .record_rejected_request(api_key, ResponseError::UnsupportedVersion);
        return Err(Rejection::Close(format!(
            "unsupported version {} of {api_key:?} (correlation id {})",
            prefix.api_version, prefix.correlation_id
        )));
    }
    let request_frame = decode_header(frame).map_err(|err| Rejection::Close(err.to_string()))?;
    let request = decode_body(&request_frame).map_err(|err| Rejection::Close(err.to_string()))?;
    Ok((request_frame.header, api_key, request))
}

async fn process_requests<W: ResponseWriter>(
    mut socket: W,
    broker: Arc<Broker>,
    mut queue: mpsc::Receiver<Inbound>,
    mut session: Session,
    mut auth: ConnectionAuth,
    frame_limit: FrameLimit,
) -> Result<(), String> {
    while let Some(inbound) = queue.recv().await {
        let mut close_after: Option<String> = None;
        let (api_key, api_version, correlation_id, outcome, decoded_at) = match inbound {
            Inbound::Request {
                header,
                api_key,
                request,
                _memory,
                decoded_at,
            } => {
                // Authentication (SASL) runs here, between decode and the broker.
                let outcome = match auth.before_request(&mut session, &header, *request, &broker) {
                    AuthStep::Handle(request) => {
                        broker.handle_session(&session, &header, request).await
                    }
                    AuthStep::Respond(outcome) => *outcome,
                    AuthStep::RespondAndClose(outcome, reason) => {
                        close_after = Some(reason);
                        *outcome
                    }
                    AuthStep::Close(reason) => return Err(reason),
                };
                frame_limit.shared.store(
                    auth.frame_size_bytes_max(frame_limit.configured),
                    Ordering::Release,
                );
                (
                    api_key,
                    header.request_api_version,
                    header.correlation_id,
                    outcome,
                    decoded_at,
                )
            }
            Inbound::UnsupportedApiVersions {
                correlation_id,
                decoded_at,
            } => (
                ApiKey::ApiVersions,
                0,
                correlation_id,
                Outcome::Respond(ResponseKind::ApiVersions(
                    api_versions::unsupported_version_response(),
                )),
                decoded_at,
            ),
        };
        let metrics = broker.metrics();
        if let Outcome::Respond(body) | Outcome::RespondWithFileRecords(body, _) = &outcome {
            metrics.count_errors(api_key, body);
        }
        let mut written =
            write_outcome(&mut socket, api_key, api_version, correlation_id, outcome).await;
        if written.is_ok() {
            // TLS holds the last record until flushed; a no-op for plain TCP.
            written = socket.flush().await.map_err(|err| err.to_string());
        }
        metrics.record_request(api_key, decoded_at.elapsed());
        written?;
        if let Some(reason) = close_after {
            // Kafka's connection.failed.authentication.delay.ms (default 100): a failed
            // authentication closes a little later, so a client retrying wrong passwords in a
            // loop cannot try more than a few per second per connection.
            tokio::time::sleep(Duration::from_millis(FAILED_AUTHENTICATION_DELAY_MS)).await;
            return Err(reason);
        }
        // A quota throttled this request: Kafka mutes the channel for the throttle time after
        // sending the response (KIP-219). Sleeping here holds back the requests already queued,
        // and the reader stops once the queue is full.
        let mute_ms = session.take_mute_ms().min(MUTE_MS_MAX);
        if mute_ms > 0 {
            tokio::time::sleep(Duration::from_millis(mute_ms)).await;
        }
    }
    let _ = socket.shutdown().await;
    Ok(())
}
