//! Who is asking: the authenticated side of a connection (issue 9, `docs/security-design.md`).
//!
//! The server authenticates a connection (TLS client certificate, SASL) and hands every request
//! to [`crate::Broker::handle_session`] with the connection's [`Session`]: the principal the
//! authorizer checks, the client address ACL hosts match, and the listener the request came in
//! on (Metadata answers with that listener's endpoints, as Kafka does). Names follow Kafka's
//! `KafkaPrincipal`, `RequestContext` and `SecurityProtocol`.

pub mod authorizer;
pub mod enforcement;

use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

/// SASL lives in its own sans-IO crate (the fuzz targets build it without the broker).
pub use fjord_sasl as sasl;

/// Kafka `SecurityProtocol`: what a listener speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    /// Kafka's id, as in `RegisterBrokerRecord.EndPoints[].SecurityProtocol`.
    pub fn id(self) -> i16 {
        match self {
            Self::Plaintext => 0,
            Self::Ssl => 1,
            Self::SaslPlaintext => 2,
            Self::SaslSsl => 3,
        }
    }

    pub fn from_id(id: i16) -> Option<Self> {
        Some(match id {
            0 => Self::Plaintext,
            1 => Self::Ssl,
            2 => Self::SaslPlaintext,
            3 => Self::SaslSsl,
            _ => return None,
        })
    }

    /// Kafka's name (`PLAINTEXT`, `SSL`, `SASL_PLAINTEXT`, `SASL_SSL`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }

    /// From Kafka's name, case-insensitively.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Self::Plaintext,
            "SSL" => Self::Ssl,
            "SASL_PLAINTEXT" => Self::SaslPlaintext,
            "SASL_SSL" => Self::SaslSsl,
            _ => return None,
        })
    }

    pub fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

pub use fjord_metadata::security::KafkaPrincipal;

/// One connection's security context (Kafka `RequestContext`'s principal, client address,
/// listener name and security protocol). Built by the server when the connection is accepted
/// and updated when it authenticates; handlers only read it.
#[derive(Debug)]
pub struct Session {
    pub principal: KafkaPrincipal,
    /// The client's IP (ACL hosts match it); `None` for in-process callers.
    pub client_address: Option<IpAddr>,
    /// The listener the connection came in on (`PLAINTEXT`, `SASL_SSL`, `INTERNAL`, ...).
    pub listener_name: String,
    pub security_protocol: SecurityProtocol,
    /// The SASL mechanism the principal authenticated with, if any.
    pub sasl_mechanism: Option<String>,
    /// Channel mute the quota managers ask for after this request (Kafka mutes the channel for
    /// the throttle time): set by the broker, taken by the connection after it wrote the
    /// response. 0 = none.
    mute_ms: AtomicU64,
}

impl Session {
    pub fn new(
        principal: KafkaPrincipal,
        client_address: Option<IpAddr>,
        listener_name: impl Into<String>,
        security_protocol: SecurityProtocol,
    ) -> Self {
        Self {
            principal,
            client_address,
            listener_name: listener_name.into(),
            security_protocol,
            sasl_mechanism: None,
            mute_ms: AtomicU64::new(0),
        }
    }

    /// An unauthenticated PLAINTEXT connection from `client_address` on the default listener:
    /// what `Broker::handle` and `Broker::handle_from` use.
    pub fn plaintext(client_address: Option<IpAddr>) -> Self {
        Self::new(
            KafkaPrincipal::anonymous(),
            client_address,
            crate::metadata_view::CLIENT_LISTENER_NAME,
            SecurityProtocol::Plaintext,
        )
    }

    /// Asks the connection to stop reading for `mute_ms` after this response (the longest ask
    /// wins when several quotas throttle one request).
    pub fn request_mute_ms(&self, mute_ms: u64) {
        self.mute_ms.fetch_max(mute_ms, Ordering::Relaxed);
    }

    /// The mute asked for since the last call, and resets it.
    pub fn take_mute_ms(&self) -> u64 {
        self.mute_ms.swap(0, Ordering::Relaxed)
    }

    /// Kafka's `InetAddress.toString()` form of the client address (`/127.0.0.1`), as shown
    /// for group members; empty for in-process callers.
    pub fn client_host(&self) -> String {
        self.client_address
            .map(|ip| format!("/{ip}"))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_and_principals_parse_like_kafka() {
        for id in 0..4 {
            let protocol = SecurityProtocol::from_id(id).expect("protocol");
            assert_eq!(protocol.id(), id);
            assert_eq!(SecurityProtocol::parse(protocol.name()), Some(protocol));
        }
        assert_eq!(
            SecurityProtocol::parse("sasl_ssl"),
            Some(SecurityProtocol::SaslSsl)
        );
        assert_eq!(SecurityProtocol::parse("TLS"), None);
        let principal = KafkaPrincipal::parse("User:CN=a:b").expect("principal");
        assert_eq!(principal.name, "CN=a:b");
        assert_eq!(principal.to_string(), "User:CN=a:b");
        assert_eq!(KafkaPrincipal::anonymous().to_string(), "User:ANONYMOUS");
        assert_eq!(KafkaPrincipal::parse("alice"), None);
    }

    #[test]
    fn the_longest_mute_wins_and_is_taken_once() {
        let session = Session::plaintext(None);
        session.request_mute_ms(10);
        session.request_mute_ms(30);
        session.request_mute_ms(20);
        assert_eq!(session.take_mute_ms(), 30);
        assert_eq!(session.take_mute_ms(), 0);
    }
}
