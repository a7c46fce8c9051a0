//! SASL/OAUTHBEARER, server side (RFC 7628; Kafka `OAuthBearerSaslServer`,
//! `OAuthBearerClientInitialResponse`).
//!
//! The client's one message is a GS2 header and key/value pairs separated by `\x01`:
//! `n,[a=authzid],\x01auth=Bearer <jwt>\x01[key=value\x01...]\x01`. The token is validated by
//! [`JwtValidator`]. On an invalid token the server does not fail at once: as RFC 7628 and Kafka
//! do, it answers the error JSON `{"status":"invalid_token"}` as a challenge, the client answers
//! a lone `\x01`, and only then does authentication fail (with that JSON as the message).
//! Extensions (other keys) are accepted and ignored, as Kafka's default validator handler does.

use std::sync::Arc;

use super::jwt::{JwtValidator, TOKEN_SIZE_BYTES_MAX};
use super::{SaslFailure, ServerStep};

/// RFC 7628 separator.
pub const KV_SEPARATOR: u8 = 0x01;
/// The error JSON Kafka answers for an invalid token.
pub const INVALID_TOKEN_JSON: &str = r#"{"status":"invalid_token"}"#;
/// Longest client message accepted: a token plus GS2 framing and a few extensions.
pub const OAUTHBEARER_MESSAGE_SIZE_BYTES_MAX: usize = TOKEN_SIZE_BYTES_MAX + 4096;
/// Most key/value pairs (auth plus extensions) in one message.
const KV_PAIRS_MAX: usize = 64;

/// A parsed client initial response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInitialResponse {
    pub authzid: String,
    pub token: String,
    /// Extensions other than `auth`.
    pub extensions: Vec<(String, String)>,
}

impl ClientInitialResponse {
    pub fn parse(message: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(message).ok()?;
        let rest = text.strip_prefix("n,")?;
        let (authz, rest) = rest.split_once(',')?;
        let authzid = if authz.is_empty() {
            String::new()
        } else {
            super::scram::decode_sasl_name(authz.strip_prefix("a=")?)?
        };
        let pairs = rest.strip_prefix('\u{1}')?.strip_suffix("\u{1}\u{1}")?;
        let mut token = None;
        let mut extensions = Vec::new();
        for (count, pair) in pairs.split('\u{1}').enumerate() {
            if count >= KV_PAIRS_MAX {
                return None;
            }
            let (key, value) = pair.split_once('=')?;
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphabetic()) {
                return None;
            }
            if !value
                .bytes()
                .all(|b| (0x21..=0x7e).contains(&b) || matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
            {
                return None;
            }
            if key == "auth" {
                let (scheme, bearer) = value.split_once(' ')?;
                if !scheme.eq_ignore_ascii_case("bearer") {
                    return None;
                }
                let bearer = bearer.trim_start_matches(' ');
                if bearer.is_empty()
                    || !bearer
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
                    || token.replace(bearer.to_string()).is_some()
                {
                    return None;
                }
            } else {
                extensions.push((key.to_string(), value.to_string()));
            }
        }
        Some(Self {
            authzid,
            token: token?,
            extensions,
        })
    }
}

/// The client message carrying `token` (Kafka's `OAuthBearerSaslClient`; used by tests and the
/// fuzz target).
pub fn client_message(token: &str) -> Vec<u8> {
    format!("n,,\u{1}auth=Bearer {token}\u{1}\u{1}").into_bytes()
}

enum State {
    Initial,
    /// The error JSON was sent; the client's `\x01` ends the exchange with this failure
    /// (the token's unverified subject, for the log line).
    Failed {
        user: Option<String>,
    },
    Done,
}

/// One OAUTHBEARER exchange.
pub struct OAuthBearerServer {
    validator: Option<Arc<JwtValidator>>,
    state: State,
}

impl OAuthBearerServer {
    /// `validator` is `None` when the listener has no `sasl.oauthbearer.jwks.endpoint.url`
    /// (every token then fails).
    pub fn new(validator: Option<Arc<JwtValidator>>) -> Self {
        Self {
            validator,
            state: State::Initial,
        }
    }

    pub fn evaluate_response(
        &mut self,
        response: &[u8],
        now_ms: i64,
    ) -> Result<ServerStep, SaslFailure> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Failed { user } => {
                let failure = SaslFailure::new(INVALID_TOKEN_JSON);
                Err(match user {
                    Some(user) => failure.with_user(&user),
                    None => failure,
                })
            }
            State::Done => Err(SaslFailure::new(
                "Authentication failed: OAUTHBEARER exchange is over",
            )),
            State::Initial => {
                if response.len() > OAUTHBEARER_MESSAGE_SIZE_BYTES_MAX {
                    return Err(SaslFailure::new(
                        "Invalid OAUTHBEARER client first message: too long",
                    ));
                }
                let initial = ClientInitialResponse::parse(response)
                    .ok_or_else(|| SaslFailure::new("Invalid OAUTHBEARER client first message"))?;
                let validated = match &self.validator {
                    Some(validator) => validator.validate(&initial.token, now_ms),
                    None => Err(super::jwt::JwtError::Jwks("no JWKS configured".into())),
                };
                let token = match validated {
                    Ok(token) => token,
                    Err(error) => {
                        let claim = self
                            .validator
                            .as_ref()
                            .map_or("sub", |v| v.settings.sub_claim_name.as_str());
                        let user = super::jwt::unverified_subject(&initial.token, claim);
                        tracing::info!(%error, user = user.as_deref().unwrap_or(""), "OAUTHBEARER token refused");
                        self.state = State::Failed { user };
                        return Ok(ServerStep::Challenge(
                            INVALID_TOKEN_JSON.as_bytes().to_vec(),
                        ));
                    }
                };
                if !initial.authzid.is_empty() && initial.authzid != token.principal {
                    return Err(SaslFailure::new(format!(
                        "Authentication failed: Client requested an authorization id ({}) that is different from the token's principal name ({})",
                        initial.authzid, token.principal
                    ))
                    .with_user(&token.principal));
                }
                Ok(ServerStep::Complete {
                    final_message: Vec::new(),
                    user: token.principal,
                    credential_expiry_ms: Some(token.expiry_ms),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::jwt::tests::{good_claims, validator, Keys, NOW_MS};
    use super::*;

    #[test]
    fn parses_rfc7628_messages() {
        let parsed = ClientInitialResponse::parse(
            b"n,a=alice,\x01host=server.example.com\x01auth=Bearer abc.def-_g\x01port=9092\x01\x01",
        )
        .unwrap();
        assert_eq!(parsed.authzid, "alice");
        assert_eq!(parsed.token, "abc.def-_g");
        assert_eq!(parsed.extensions.len(), 2);
        assert_eq!(
            ClientInitialResponse::parse(&client_message("t.o.k"))
                .unwrap()
                .token,
            "t.o.k"
        );
        for bad in [
            &b""[..],
            b"n,,\x01auth=Bearer x\x01",
            b"y,,\x01auth=Bearer x\x01\x01",
            b"n,,\x01auth=Basic x\x01\x01",
            b"n,,\x01auth=Bearer \x01\x01",
            b"n,,\x01k=v\x01\x01",
            b"n,,\x01auth=Bearer x\x01auth=Bearer y\x01\x01",
            b"n,,\x01auth=Bearer x y\x01\x01",
            b"n,,\x0112=3\x01auth=Bearer x\x01\x01",
        ] {
            assert!(ClientInitialResponse::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn good_token_completes_with_its_expiry() {
        let keys = Keys::new();
        let mut server = OAuthBearerServer::new(Some(Arc::new(validator(&keys))));
        let token = keys.token("ec1", "ES256", good_claims());
        let step = server
            .evaluate_response(&client_message(&token), NOW_MS)
            .unwrap();
        assert_eq!(
            step,
            ServerStep::Complete {
                final_message: Vec::new(),
                user: "alice".into(),
                credential_expiry_ms: Some((NOW_MS / 1000 + 3600) * 1000),
            }
        );
    }

    #[test]
    fn invalid_token_answers_the_error_json_then_fails_after_the_clients_separator() {
        let keys = Keys::new();
        let mut server = OAuthBearerServer::new(Some(Arc::new(validator(&keys))));
        let mut claims = good_claims();
        claims["exp"] = (NOW_MS / 1000 - 3600).into();
        let token = keys.token("ec1", "ES256", claims);
        let step = server
            .evaluate_response(&client_message(&token), NOW_MS)
            .unwrap();
        assert_eq!(
            step,
            ServerStep::Challenge(INVALID_TOKEN_JSON.as_bytes().to_vec())
        );
        let failure = server
            .evaluate_response(&[KV_SEPARATOR], NOW_MS)
            .unwrap_err();
        assert_eq!(failure.message, INVALID_TOKEN_JSON);
        assert_eq!(failure.user.as_deref(), Some("alice"));
        assert!(server.evaluate_response(&[KV_SEPARATOR], NOW_MS).is_err());
    }

    #[test]
    fn authzid_must_be_the_principal() {
        let keys = Keys::new();
        let token = keys.token("ec1", "ES256", good_claims());
        let message = format!("n,a=bob,\u{1}auth=Bearer {token}\u{1}\u{1}");
        let mut server = OAuthBearerServer::new(Some(Arc::new(validator(&keys))));
        assert!(server
            .evaluate_response(message.as_bytes(), NOW_MS)
            .is_err());
        let message = format!("n,a=alice,\u{1}auth=Bearer {token}\u{1}\u{1}");
        let mut server = OAuthBearerServer::new(Some(Arc::new(validator(&keys))));
        assert!(server.evaluate_response(message.as_bytes(), NOW_MS).is_ok());
    }
}
