//! SaslHandshake (key 17): the client names its SASL mechanism.
//!
//! Answered by the connection's `SaslServerAuthenticator` (`security::sasl`) before
//! authentication and for KIP-368 re-authentication. Only v1 is advertised: v0 is followed by
//! raw, unframed SASL tokens instead of SaslAuthenticate requests, which Fjord does not
//! support (every client since Kafka 1.0 uses v1). A SaslHandshake that reaches
//! `Broker::handle_session` came on a listener without SASL (or after authentication where the
//! connection did not route it to the authenticator): ILLEGAL_SASL_STATE, as Kafka's
//! `KafkaApis.handleSaslHandshakeRequest`.

use fjord_protocol::kafka_protocol::messages::SaslHandshakeResponse;
use fjord_protocol::VersionRange;

use crate::security::sasl::authenticator::ILLEGAL_SASL_STATE;

pub const VERSIONS: VersionRange = VersionRange { min: 1, max: 1 };

/// The broker's answer outside the authenticator.
pub fn handle() -> SaslHandshakeResponse {
    SaslHandshakeResponse::default().with_error_code(ILLEGAL_SASL_STATE)
}
