//! SaslAuthenticate (key 36): one SASL mechanism message each way (v1 adds
//! `session_lifetime_ms`, KIP-368; v2 is the flexible version).
//!
//! Answered by the connection's `SaslServerAuthenticator` (`security::sasl`) while
//! (re-)authenticating. One that reaches `Broker::handle_session` is out of place:
//! ILLEGAL_SASL_STATE, as Kafka's `KafkaApis.handleSaslAuthenticateRequest`.

use fjord_protocol::kafka_protocol::messages::SaslAuthenticateResponse;
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::VersionRange;

use crate::security::sasl::authenticator::ILLEGAL_SASL_STATE;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 2 };

/// The broker's answer outside the authenticator.
pub fn handle() -> SaslAuthenticateResponse {
    SaslAuthenticateResponse::default()
        .with_error_code(ILLEGAL_SASL_STATE)
        .with_error_message(Some(StrBytes::from_static_str(
            "SaslAuthenticate request received after successful authentication",
        )))
}
