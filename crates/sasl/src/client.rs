//! Kafka's `SaslClientAuthenticator` for inter-broker connections (PLAIN, SCRAM-SHA-256/512):
//! a pure state machine that produces the SaslHandshake and SaslAuthenticate request bodies and
//! checks the server's answers (for SCRAM, the server signature: the server proves it knows
//! the credential too).
//!
//! ```text
//! let mut auth = SaslClientAuthenticator::from_config(&config)?;   // or ::new(mechanism, user, pw)
//! send auth.handshake_request()                                      // SaslHandshake v1
//! let mut step = auth.on_handshake_response(&handshake_response)?;  // first SaslAuthenticate
//! loop { match step {
//!     ClientStep::Send(request) => step = auth.on_authenticate_response(&send(request))?,
//!     ClientStep::Done { session_lifetime_ms } => break,            // re-authenticate before it ends
//! } }
//! ```

use fjord_protocol::kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;

use super::scram::ScramClient;
use super::{Mechanism, SaslConfig};

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SaslClientError {
    #[error("SASL mechanism {0} is not supported by the inter-broker client")]
    UnsupportedMechanism(String),
    #[error("no JAAS username/password for inter-broker mechanism {0}")]
    MissingCredentials(Mechanism),
    #[error("server does not enable SASL mechanism {mechanism} (it enables {enabled:?})")]
    MechanismRefused {
        mechanism: Mechanism,
        enabled: Vec<String>,
    },
    #[error("SaslHandshake failed with error code {0}")]
    Handshake(i16),
    #[error("SASL authentication failed (error {code}): {message}")]
    Authentication { code: i16, message: String },
    #[error("SASL exchange: {0}")]
    Protocol(String),
}

/// What to do after a server answer.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientStep {
    /// Send this SaslAuthenticate request.
    Send(SaslAuthenticateRequest),
    /// Authenticated; re-authenticate before `session_lifetime_ms` passes (0 = never).
    Done { session_lifetime_ms: i64 },
}

enum State {
    Handshake,
    Plain,
    /// Waiting for the server-first message.
    ScramFirst(Box<ScramClient>),
    /// Waiting for the server-final message.
    ScramFinal(Box<ScramClient>),
    Done,
}

/// One client-side authentication.
pub struct SaslClientAuthenticator {
    mechanism: Mechanism,
    user: String,
    password: String,
    state: State,
}

fn authenticate_request(bytes: Vec<u8>) -> SaslAuthenticateRequest {
    SaslAuthenticateRequest::default().with_auth_bytes(bytes.into())
}

impl SaslClientAuthenticator {
    pub fn new(mechanism: Mechanism, user: &str, password: &str) -> Result<Self, SaslClientError> {
        if mechanism == Mechanism::OAuthBearer {
            return Err(SaslClientError::UnsupportedMechanism(
                mechanism.name().into(),
            ));
        }
        Ok(Self {
            mechanism,
            user: user.to_string(),
            password: password.to_string(),
            state: State::Handshake,
        })
    }

    /// The inter-broker client of `config`'s listener: `sasl.mechanism.inter.broker.protocol`
    /// with that mechanism's JAAS `username`/`password`.
    pub fn from_config(config: &SaslConfig) -> Result<Self, SaslClientError> {
        let (mechanism, user, password) =
            config
                .client_credentials()
                .ok_or(SaslClientError::MissingCredentials(
                    config.inter_broker_mechanism,
                ))?;
        Self::new(mechanism, user, password)
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// The SaslHandshake (v1) request body.
    pub fn handshake_request(&self) -> SaslHandshakeRequest {
        SaslHandshakeRequest::default()
            .with_mechanism(StrBytes::from_static_str(self.mechanism.name()))
    }

    /// Checks the handshake answer; returns the first SaslAuthenticate request.
    pub fn on_handshake_response(
        &mut self,
        response: &SaslHandshakeResponse,
    ) -> Result<SaslAuthenticateRequest, SaslClientError> {
        if !matches!(self.state, State::Handshake) {
            return Err(SaslClientError::Protocol(
                "unexpected SaslHandshake response".into(),
            ));
        }
        self.state = State::Done;
        if response.error_code == super::authenticator::UNSUPPORTED_SASL_MECHANISM {
            return Err(SaslClientError::MechanismRefused {
                mechanism: self.mechanism,
                enabled: response.mechanisms.iter().map(|m| m.to_string()).collect(),
            });
        }
        if response.error_code != 0 {
            return Err(SaslClientError::Handshake(response.error_code));
        }
        match self.mechanism.scram() {
            None => {
                self.state = State::Plain;
                Ok(authenticate_request(super::plain::client_message(
                    &self.user,
                    &self.password,
                )))
            }
            Some(scram) => {
                let mut client = ScramClient::new(scram, &self.user, &self.password);
                let first = client
                    .first_message()
                    .map_err(|f| SaslClientError::Protocol(f.message))?;
                self.state = State::ScramFirst(Box::new(client));
                Ok(authenticate_request(first))
            }
        }
    }

    /// Checks a SaslAuthenticate answer: either the next request or done.
    pub fn on_authenticate_response(
        &mut self,
        response: &SaslAuthenticateResponse,
    ) -> Result<ClientStep, SaslClientError> {
        let state = std::mem::replace(&mut self.state, State::Done);
        if response.error_code != 0 {
            return Err(SaslClientError::Authentication {
                code: response.error_code,
                message: response
                    .error_message
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
            });
        }
        let done = ClientStep::Done {
            session_lifetime_ms: response.session_lifetime_ms,
        };
        match state {
            State::Plain => Ok(done),
            State::ScramFirst(mut client) => {
                let request = client
                    .final_message(&response.auth_bytes)
                    .map_err(|f| SaslClientError::Protocol(f.message))?;
                self.state = State::ScramFinal(client);
                Ok(ClientStep::Send(authenticate_request(request)))
            }
            State::ScramFinal(mut client) => {
                client
                    .verify_server_final(&response.auth_bytes)
                    .map_err(|f| SaslClientError::Protocol(f.message))?;
                Ok(done)
            }
            State::Handshake | State::Done => Err(SaslClientError::Protocol(
                "unexpected SaslAuthenticate response".into(),
            )),
        }
    }
}
