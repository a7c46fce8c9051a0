//! Kafka's `SaslServerAuthenticator`: the per-connection SASL state machine.
//!
//! ```text
//!            ApiVersions (once, answered by the broker)
//!   Handshake ───────────────────────────────┐
//!      │ SaslHandshake(enabled mechanism)     │ anything else: close (ILLEGAL_SASL_STATE)
//!      ▼                                      │ unknown mechanism: UNSUPPORTED_SASL_MECHANISM, close
//!   Authenticate ── SaslAuthenticate ──▶ challenge, stay
//!      │ mechanism complete                   │ failure: SASL_AUTHENTICATION_FAILED, close
//!      ▼                                      
//!   Authenticated ── requests pass to the broker while the session lasts
//!      │ SaslHandshake: re-authentication (KIP-368), same mechanism and principal
//!      └──▶ Authenticate
//! ```
//!
//! The session expires at `min(now + connections.max.reauth.ms, credential expiry)` (Kafka's
//! `ReauthInfo.calcCompletionTimesAndReturnSessionLifetimeMs`); SaslAuthenticate v1+ tells the
//! client the lifetime, and once it passed, any request other than a re-authenticating
//! SaslHandshake closes the connection.

use std::net::IpAddr;
use std::sync::Arc;

use fjord_metadata::MetadataImage;
use fjord_protocol::kafka_protocol::messages::{
    RequestHeader, SaslAuthenticateResponse, SaslHandshakeResponse,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{RequestKind, ResponseKind};

use super::{Mechanism, SaslConfig, SaslFailure, SaslServer, ServerContext, ServerStep};
use crate::KafkaPrincipal;
use crate::SaslMetrics;

/// Kafka's ILLEGAL_SASL_STATE.
pub const ILLEGAL_SASL_STATE: i16 = 34;
/// Kafka's UNSUPPORTED_SASL_MECHANISM.
pub const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
/// Kafka's SASL_AUTHENTICATION_FAILED.
pub const SASL_AUTHENTICATION_FAILED: i16 = 58;

/// What the connection does with a request it gave the authenticator.
#[derive(Debug)]
pub enum AuthAction {
    /// Not the authenticator's: hand it to `Broker::handle_session` as usual.
    Pass(RequestKind),
    /// Write this response and keep reading.
    Respond(ResponseKind),
    /// Authentication (or re-authentication) succeeded: set the session's principal (and
    /// `sasl_mechanism`), then write this response.
    Authenticated(ResponseKind, KafkaPrincipal),
    /// Write this response, then close the connection.
    RespondAndClose(ResponseKind, &'static str),
    /// Close the connection without answering.
    Close(&'static str),
}

enum State {
    Handshake {
        api_versions_seen: bool,
    },
    Authenticate {
        mechanism: Mechanism,
        server: Box<SaslServer>,
        /// Re-authentication with another mechanism: fails at the first SaslAuthenticate, as
        /// Kafka's `ReauthInfo.badMechanismErrorMessage`.
        bad_mechanism: Option<String>,
    },
    Authenticated,
    Failed,
}

/// One connection's SASL authentication. See the module docs of [`super`] for the wiring.
pub struct SaslServerAuthenticator {
    config: Arc<SaslConfig>,
    metrics: Arc<SaslMetrics>,
    client_address: Option<IpAddr>,
    state: State,
    principal: Option<KafkaPrincipal>,
    mechanism: Option<Mechanism>,
    session_expiry_ms: Option<i64>,
    reauthenticating: bool,
}

fn handshake_response(error_code: i16, config: &SaslConfig) -> ResponseKind {
    ResponseKind::SaslHandshake(
        SaslHandshakeResponse::default()
            .with_error_code(error_code)
            .with_mechanisms(
                config
                    .enabled_mechanisms
                    .iter()
                    .map(|m| StrBytes::from_static_str(m.name()))
                    .collect(),
            ),
    )
}

fn authenticate_error(error_code: i16, message: String) -> ResponseKind {
    ResponseKind::SaslAuthenticate(
        SaslAuthenticateResponse::default()
            .with_error_code(error_code)
            .with_error_message(Some(StrBytes::from_string(message))),
    )
}

impl SaslServerAuthenticator {
    pub fn new(
        config: Arc<SaslConfig>,
        client_address: Option<IpAddr>,
        metrics: Arc<SaslMetrics>,
    ) -> Self {
        Self {
            config,
            metrics,
            client_address,
            state: State::Handshake {
                api_versions_seen: false,
            },
            principal: None,
            mechanism: None,
            session_expiry_ms: None,
            reauthenticating: false,
        }
    }

    /// The listener's SASL configuration.
    pub fn config_ref(&self) -> &Arc<SaslConfig> {
        &self.config
    }

    /// The authenticated principal (kept during a re-authentication).
    pub fn principal(&self) -> Option<&KafkaPrincipal> {
        self.principal.as_ref()
    }

    /// The mechanism the principal authenticated with.
    pub fn mechanism(&self) -> Option<Mechanism> {
        self.mechanism
    }

    /// Whether requests other than SASL ones may be handled now.
    pub fn is_authenticated(&self) -> bool {
        matches!(self.state, State::Authenticated)
    }

    /// When the session expires (ms since the epoch); `None` = never.
    pub fn session_expiry_ms(&self) -> Option<i64> {
        self.session_expiry_ms
    }

    /// KIP-368: the session has expired and the client has not re-authenticated.
    pub fn session_expired(&self, now_ms: i64) -> bool {
        self.is_authenticated() && self.session_expiry_ms.is_some_and(|e| now_ms >= e)
    }

    /// `sasl.server.max.receive.size` while (re-)authenticating; `None` once authenticated
    /// (then `socket.request.max.bytes` applies).
    pub fn max_receive_size_bytes(&self) -> Option<usize> {
        (!self.is_authenticated()).then_some(self.config.max_receive_size_bytes)
    }

    /// Feeds one decoded request (in order). See [`AuthAction`].
    pub fn on_request(
        &mut self,
        header: &RequestHeader,
        request: RequestKind,
        image: &MetadataImage,
        now_ms: i64,
    ) -> AuthAction {
        match std::mem::replace(&mut self.state, State::Failed) {
            State::Failed => AuthAction::Close("SASL authentication failed earlier"),
            State::Authenticated => {
                self.state = State::Authenticated;
                match request {
                    RequestKind::SaslHandshake(r) => {
                        self.reauthenticating = true;
                        self.handshake(r.mechanism.as_str())
                    }
                    _ if self.session_expired(now_ms) => {
                        tracing::info!(
                            client = ?self.client_address,
                            principal = ?self.principal.as_ref().map(ToString::to_string),
                            "SASL session expired without re-authentication, closing"
                        );
                        self.state = State::Failed;
                        AuthAction::Close("SASL session expired (connections.max.reauth.ms)")
                    }
                    other => AuthAction::Pass(other),
                }
            }
            State::Handshake { api_versions_seen } => match request {
                RequestKind::ApiVersions(r) if !api_versions_seen => {
                    self.state = State::Handshake {
                        api_versions_seen: true,
                    };
                    AuthAction::Pass(RequestKind::ApiVersions(r))
                }
                RequestKind::SaslHandshake(r) => self.handshake(r.mechanism.as_str()),
                _ => AuthAction::Close(
                    "unexpected request during SASL handshake (ILLEGAL_SASL_STATE)",
                ),
            },
            State::Authenticate {
                mechanism,
                mut server,
                bad_mechanism,
            } => match request {
                RequestKind::SaslAuthenticate(r) => {
                    let version = header.request_api_version;
                    if let Some(message) = bad_mechanism {
                        return self.fail(mechanism, SaslFailure::new(message));
                    }
                    let ctx = ServerContext {
                        now_ms,
                        scram_credentials: &image.scram_credentials,
                    };
                    match server.evaluate_response(&r.auth_bytes, &ctx) {
                        Ok(ServerStep::Challenge(challenge)) => {
                            self.state = State::Authenticate {
                                mechanism,
                                server,
                                bad_mechanism: None,
                            };
                            AuthAction::Respond(ResponseKind::SaslAuthenticate(
                                SaslAuthenticateResponse::default()
                                    .with_auth_bytes(challenge.into()),
                            ))
                        }
                        Ok(ServerStep::Complete {
                            final_message,
                            user,
                            credential_expiry_ms,
                        }) => self.complete(
                            mechanism,
                            version,
                            final_message,
                            &user,
                            credential_expiry_ms,
                            now_ms,
                        ),
                        Err(failure) => self.fail(mechanism, failure),
                    }
                }
                RequestKind::SaslHandshake(_) => AuthAction::RespondAndClose(
                    ResponseKind::SaslHandshake(
                        SaslHandshakeResponse::default().with_error_code(ILLEGAL_SASL_STATE),
                    ),
                    "SaslHandshake during SASL authentication (ILLEGAL_SASL_STATE)",
                ),
                _ => AuthAction::Close(
                    "unexpected request during SASL authentication (ILLEGAL_SASL_STATE)",
                ),
            },
        }
    }

    fn handshake(&mut self, requested: &str) -> AuthAction {
        let Some(mechanism) = Mechanism::parse(requested).filter(|m| self.config.is_enabled(*m))
        else {
            tracing::info!(
                client = ?self.client_address,
                mechanism = requested,
                "SASL mechanism requested by the client is not enabled"
            );
            self.state = State::Failed;
            return AuthAction::RespondAndClose(
                handshake_response(UNSUPPORTED_SASL_MECHANISM, &self.config),
                "unsupported SASL mechanism",
            );
        };
        let bad_mechanism = match self.mechanism {
            Some(previous) if self.reauthenticating && previous != mechanism => Some(format!(
                "SASL mechanism '{mechanism}' requested by client is not supported for re-authentication of mechanism '{previous}'"
            )),
            _ => None,
        };
        self.state = State::Authenticate {
            mechanism,
            server: Box::new(SaslServer::new(mechanism, &self.config)),
            bad_mechanism,
        };
        AuthAction::Respond(handshake_response(0, &self.config))
    }

    fn complete(
        &mut self,
        mechanism: Mechanism,
        version: i16,
        final_message: Vec<u8>,
        user: &str,
        credential_expiry_ms: Option<i64>,
        now_ms: i64,
    ) -> AuthAction {
        let principal = KafkaPrincipal::user(user);
        if self.reauthenticating {
            if let Some(previous) = &self.principal {
                if *previous != principal {
                    return self.fail(
                        mechanism,
                        SaslFailure::new(format!(
                            "Cannot change principals during re-authentication from {previous}: {principal}"
                        ))
                        .with_user(user),
                    );
                }
            }
        }
        let reauth_ms = self.config.reauth_ms(mechanism);
        let session_lifetime_ms = match (credential_expiry_ms, reauth_ms > 0) {
            (None, false) => None,
            (None, true) => Some(reauth_ms),
            (Some(expiry), false) => Some(expiry.saturating_sub(now_ms).max(0)),
            (Some(expiry), true) => Some(expiry.saturating_sub(now_ms).min(reauth_ms).max(0)),
        };
        self.session_expiry_ms = session_lifetime_ms.map(|ms| now_ms.saturating_add(ms));
        self.principal = Some(principal.clone());
        self.mechanism = Some(mechanism);
        self.state = State::Authenticated;
        self.metrics.record(mechanism, true);
        tracing::debug!(client = ?self.client_address, %principal, %mechanism,
            reauthentication = self.reauthenticating, "SASL authentication succeeded");
        let mut response =
            SaslAuthenticateResponse::default().with_auth_bytes(final_message.into());
        if version >= 1 {
            response = response.with_session_lifetime_ms(session_lifetime_ms.unwrap_or(0));
        }
        AuthAction::Authenticated(ResponseKind::SaslAuthenticate(response), principal)
    }

    fn fail(&mut self, mechanism: Mechanism, failure: SaslFailure) -> AuthAction {
        self.state = State::Failed;
        self.metrics.record(mechanism, false);
        tracing::warn!(
            client = ?self.client_address,
            %mechanism,
            user = failure.user.as_deref().unwrap_or(""),
            reason = %failure.message,
            reauthentication = self.reauthenticating,
            "SASL authentication failed"
        );
        AuthAction::RespondAndClose(
            authenticate_error(SASL_AUTHENTICATION_FAILED, failure.message),
            "SASL authentication failed",
        )
    }
}
