//! SASL authentication, sans-IO (issue 9, `docs/security-design.md` section 3 "SASL").
//!
//! Its own crate, below `fjord-broker` (which re-exports it as `fjord_broker::security::sasl`),
//! so that it depends on nothing but the wire types and the metadata image: the
//! `sasl_handshake` fuzz target builds it without the broker, tokio or Raft.
//!
//! Kafka authenticates a SASL_PLAINTEXT / SASL_SSL connection before it handles any other
//! request: the client may ask ApiVersions, then sends SaslHandshake (the mechanism) and one or
//! more SaslAuthenticate requests carrying the mechanism's messages. Kafka's classes and their
//! Fjord counterparts:
//!
//! | Kafka | here |
//! |---|---|
//! | `SaslServerAuthenticator` | [`SaslServerAuthenticator`]: one per connection, fed decoded requests |
//! | `PlainSaslServer` (RFC 4616) | [`plain::PlainServer`], users from the JAAS `user_NAME="pw"` options |
//! | `ScramSaslServer`, `ScramMessages` (RFC 5802/7677) | [`scram::ScramServer`], credentials from `MetadataImage.scram_credentials` |
//! | `OAuthBearerSaslServer` + `OAuthBearerValidatorCallbackHandler` (RFC 7628, KIP-768) | [`oauthbearer::OAuthBearerServer`], [`jwt::JwtValidator`] over a JWKS file |
//! | `SaslClientAuthenticator` | [`SaslClientAuthenticator`]: the inter-broker client (PLAIN, SCRAM) |
//! | `JaasConfig` | [`jaas::JaasConfig`]: the `sasl.jaas.config` parser |
//! | `SaslConfigs`, `BrokerSecurityConfigs` | [`SaslConfig`]: one listener's SASL settings |
//!
//! Nothing here does I/O or keeps time: the caller passes `now_ms` and the metadata image, and
//! writes the responses it is given. The only exception is [`SaslConfig::load_jwks_file`], which
//! reads the configured `file://` JWKS when the listener is set up (and again on reload).
//!
//! # Wiring it into a connection
//!
//! ```text
//! per SASL listener, at start:  config = Arc::new(SaslConfig::from_settings(&settings, "SASL_SSL")?)
//!                               (config.reload_jwks() on the TLS reload tick, if OAUTHBEARER)
//! on accept:                    auth = SaslServerAuthenticator::new(config.clone(), Some(peer_ip),
//!                                                                   broker.metrics().sasl.clone())
//! before reading a frame:       limit = auth.max_receive_size_bytes()   // Some(524288) until authenticated
//! for every decoded request:    match auth.on_request(&header, request, &broker.image(), now_ms) {
//!     AuthAction::Pass(request)          => broker.handle_session(&session, &header, request) as today
//!     AuthAction::Respond(response)      => write it, go on reading
//!     AuthAction::Authenticated(response, principal)
//!                                        => session.principal = principal; session.sasl_mechanism =
//!                                           auth.mechanism().map(|m| m.name().to_string());
//!                                           write the response
//!     AuthAction::RespondAndClose(response, why) => write it, then close
//!     AuthAction::Close(why)             => close without a response
//! }
//! inter-broker client:          SaslClientAuthenticator::from_config(&config) (see [`client`])
//! ```
//!
//! ApiVersions before authentication is handed back ([`AuthAction::Pass`]) for the broker to
//! answer, exactly once, as Kafka allows. An ApiVersions of a version the broker does not know
//! (KIP-511: answered with UNSUPPORTED_VERSION so the client retries with v0) should be answered
//! by the connection without feeding it here, so that the retry is still the allowed one; any
//! other request with an unsupported version before authentication should close the connection.
//! After authentication every request is handed back unless the session expired (KIP-368:
//! `connections.max.reauth.ms`, or an OAUTHBEARER token's `exp`), in which case anything but a
//! re-authenticating SaslHandshake closes the connection.
//!
//! # Deviation from Kafka
//!
//! SaslHandshake v0 (after which Kafka reads raw, unframed SASL tokens) is not supported:
//! the broker's SaslHandshake handler accepts versions `1..=1`. Every client since Kafka 1.0 and
//! librdkafka uses v1. GSSAPI (Kerberos) and delegation tokens (`tokenauth`) are not supported.

pub mod authenticator;
pub mod client;
pub mod config;
pub mod jaas;
pub mod jwt;
pub mod metrics;
pub mod oauthbearer;
pub mod plain;
pub mod scram;

use std::collections::BTreeMap;
use std::fmt;

use fjord_metadata::security::{ScramCredential, ScramMechanism};

pub use authenticator::{AuthAction, SaslServerAuthenticator};
pub use client::{ClientStep, SaslClientAuthenticator, SaslClientError};
pub use config::{SaslConfig, SaslConfigError};
pub use fjord_metadata::security::KafkaPrincipal;
pub use metrics::SaslMetrics;

/// The SASL mechanisms Fjord implements, by their IANA / Kafka names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mechanism {
    Plain,
    ScramSha256,
    ScramSha512,
    OAuthBearer,
}

impl Mechanism {
    pub const ALL: [Mechanism; 4] = [
        Self::Plain,
        Self::ScramSha256,
        Self::ScramSha512,
        Self::OAuthBearer,
    ];

    /// The name a client sends in SaslHandshake (`PLAIN`, `SCRAM-SHA-256`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
            Self::OAuthBearer => "OAUTHBEARER",
        }
    }

    /// From the exact (case-sensitive, as Kafka) mechanism name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The SCRAM variant, for the two SCRAM mechanisms.
    pub fn scram(self) -> Option<ScramMechanism> {
        match self {
            Self::ScramSha256 => Some(ScramMechanism::ScramSha256),
            Self::ScramSha512 => Some(ScramMechanism::ScramSha512),
            _ => None,
        }
    }

    /// Metric label slot (see `BrokerMetrics::sasl`).
    pub fn index(self) -> usize {
        match self {
            Self::Plain => 0,
            Self::ScramSha256 => 1,
            Self::ScramSha512 => 2,
            Self::OAuthBearer => 3,
        }
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A failed authentication step: what the client is told (never a password, never whether the
/// user exists) and, for the log line, the user name the client tried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaslFailure {
    /// Sent as SaslAuthenticate's `error_message`.
    pub message: String,
    /// The user name attempted, if the client got that far (logged, not sent).
    pub user: Option<String>,
}

impl SaslFailure {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            user: None,
        }
    }

    pub fn with_user(mut self, user: &str) -> Self {
        self.user = Some(user.to_string());
        self
    }
}

/// What a server mechanism answers to one client message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerStep {
    /// Send this challenge and wait for the next client message.
    Challenge(Vec<u8>),
    /// Authenticated: send `final_message` (possibly empty) as the last SaslAuthenticate answer.
    Complete {
        final_message: Vec<u8>,
        /// The authenticated user (the principal is `User:<user>`).
        user: String,
        /// When the credential expires (an OAUTHBEARER token's `exp`), in ms since the epoch.
        credential_expiry_ms: Option<i64>,
    },
}

/// What a server mechanism may read while evaluating a client message.
pub struct ServerContext<'a> {
    pub now_ms: i64,
    /// `MetadataImage.scram_credentials`.
    pub scram_credentials: &'a BTreeMap<(String, ScramMechanism), ScramCredential>,
}

/// A server mechanism of one authentication exchange (Kafka's `SaslServer`).
pub enum SaslServer {
    Plain(plain::PlainServer),
    Scram(Box<scram::ScramServer>),
    OAuthBearer(oauthbearer::OAuthBearerServer),
}

impl SaslServer {
    /// A fresh exchange of `mechanism` with this listener's users, secrets and validator.
    pub fn new(mechanism: Mechanism, config: &SaslConfig) -> Self {
        match mechanism {
            Mechanism::Plain => Self::Plain(plain::PlainServer::new(config.plain_users.clone())),
            Mechanism::ScramSha256 | Mechanism::ScramSha512 => {
                let scram = mechanism.scram().unwrap_or(ScramMechanism::ScramSha256);
                Self::Scram(Box::new(scram::ScramServer::new(
                    scram,
                    config.scram_secret,
                )))
            }
            Mechanism::OAuthBearer => Self::OAuthBearer(oauthbearer::OAuthBearerServer::new(
                config.oauthbearer.clone(),
            )),
        }
    }

    /// Kafka `SaslServer.evaluateResponse`. Once it returned `Complete` or an error the
    /// exchange is over; further calls fail.
    pub fn evaluate_response(
        &mut self,
        response: &[u8],
        ctx: &ServerContext<'_>,
    ) -> Result<ServerStep, SaslFailure> {
        match self {
            Self::Plain(server) => server.evaluate_response(response),
            Self::Scram(server) => server.evaluate_response(response, ctx.scram_credentials),
            Self::OAuthBearer(server) => server.evaluate_response(response, ctx.now_ms),
        }
    }
}

/// Byte-slice equality whose time depends only on the lengths (password and proof checks).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests;
