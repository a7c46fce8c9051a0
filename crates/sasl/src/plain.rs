//! SASL/PLAIN (RFC 4616; Kafka `PlainSaslServer`, `PlainServerCallbackHandler`).
//!
//! One client message, `authzid NUL authcid NUL passwd`; the authorization id must be empty or
//! equal to the user name (Kafka has no impersonation). Users come from the JAAS
//! `user_NAME="password"` options. Only SHA-256 digests of the passwords are kept, and the
//! digest of the offered password is compared in constant time, so the time taken says nothing
//! about how much of the password matched.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{constant_time_eq, SaslFailure, ServerStep};

/// Longest PLAIN message accepted (a user name and password; Kafka has no own bound below the
/// receive size).
pub const PLAIN_MESSAGE_SIZE_BYTES_MAX: usize = 64 * 1024;

/// The PLAIN users of a listener: user name -> SHA-256 of the password.
#[derive(Clone, Default)]
pub struct PlainUsers {
    digests: BTreeMap<String, [u8; 32]>,
}

impl std::fmt::Debug for PlainUsers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.digests.keys()).finish()
    }
}

fn digest(password: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, password).as_ref());
    out
}

impl PlainUsers {
    pub fn new<'a>(users: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            digests: users
                .into_iter()
                .map(|(user, password)| (user.to_string(), digest(password.as_bytes())))
                .collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.digests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Kafka `PlainServerCallbackHandler.authenticate`: the same work for unknown users.
    pub fn authenticate(&self, user: &str, password: &[u8]) -> bool {
        let offered = digest(password);
        match self.digests.get(user) {
            Some(expected) => constant_time_eq(expected, &offered),
            None => {
                let _ = constant_time_eq(&[0u8; 32], &offered);
                false
            }
        }
    }
}

/// One PLAIN exchange.
pub struct PlainServer {
    users: Arc<PlainUsers>,
    done: bool,
}

impl PlainServer {
    pub fn new(users: Arc<PlainUsers>) -> Self {
        Self { users, done: false }
    }

    pub fn evaluate_response(&mut self, response: &[u8]) -> Result<ServerStep, SaslFailure> {
        if std::mem::replace(&mut self.done, true) {
            return Err(SaslFailure::new(
                "Authentication failed: PLAIN takes one message",
            ));
        }
        if response.len() > PLAIN_MESSAGE_SIZE_BYTES_MAX {
            return Err(SaslFailure::new("Invalid SASL/PLAIN response: too long"));
        }
        let tokens: Vec<&[u8]> = response.split(|b| *b == 0).collect();
        if tokens.len() != 3 {
            return Err(SaslFailure::new(format!(
                "Invalid SASL/PLAIN response: expected 3 tokens, got {}",
                tokens.len()
            )));
        }
        let (Ok(authzid), Ok(user)) = (
            std::str::from_utf8(tokens[0]),
            std::str::from_utf8(tokens[1]),
        ) else {
            return Err(SaslFailure::new("Invalid SASL/PLAIN response: not UTF-8"));
        };
        let password = tokens[2];
        if user.is_empty() {
            return Err(SaslFailure::new(
                "Authentication failed: username not specified",
            ));
        }
        if password.is_empty() {
            return Err(
                SaslFailure::new("Authentication failed: password not specified").with_user(user),
            );
        }
        if !self.users.authenticate(user, password) {
            return Err(
                SaslFailure::new("Authentication failed: Invalid username or password")
                    .with_user(user),
            );
        }
        if !authzid.is_empty() && authzid != user {
            return Err(SaslFailure::new(
                "Authentication failed: Client requested an authorization id that is different from username",
            )
            .with_user(user));
        }
        Ok(ServerStep::Complete {
            final_message: Vec::new(),
            user: user.to_string(),
            credential_expiry_ms: None,
        })
    }
}

/// The client's one message: `authzid NUL user NUL password` with an empty authzid (Kafka's
/// `PlainSaslClient`).
pub fn client_message(user: &str, password: &str) -> Vec<u8> {
    let mut message = Vec::with_capacity(user.len() + password.len() + 2);
    message.push(0);
    message.extend_from_slice(user.as_bytes());
    message.push(0);
    message.extend_from_slice(password.as_bytes());
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> PlainServer {
        PlainServer::new(Arc::new(PlainUsers::new([
            ("alice", "alice-pw"),
            ("bob", "bob-pw"),
        ])))
    }

    fn complete_user(step: ServerStep) -> String {
        match step {
            ServerStep::Complete { user, .. } => user,
            other => panic!("not complete: {other:?}"),
        }
    }

    #[test]
    fn right_password_authenticates_with_or_without_authzid() {
        let user = complete_user(
            server()
                .evaluate_response(&client_message("alice", "alice-pw"))
                .unwrap(),
        );
        assert_eq!(user, "alice");
        let user = complete_user(server().evaluate_response(b"bob\0bob\0bob-pw").unwrap());
        assert_eq!(user, "bob");
    }

    #[test]
    fn wrong_password_unknown_user_and_bad_messages_fail() {
        let wrong = server()
            .evaluate_response(&client_message("alice", "bob-pw"))
            .unwrap_err();
        let unknown = server()
            .evaluate_response(&client_message("carol", "alice-pw"))
            .unwrap_err();
        assert_eq!(
            wrong.message, unknown.message,
            "user existence must not leak"
        );
        assert_eq!(wrong.user.as_deref(), Some("alice"));
        assert!(!wrong.message.contains("bob-pw"));
        for bad in [
            &b""[..],
            b"alice\0alice-pw",
            b"\0\0alice-pw",
            b"\0alice\0",
            b"\0alice\0alice-pw\0",
            b"bob\0alice\0alice-pw",
        ] {
            assert!(server().evaluate_response(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn one_message_only() {
        let mut server = server();
        server
            .evaluate_response(&client_message("alice", "alice-pw"))
            .unwrap();
        assert!(server
            .evaluate_response(&client_message("alice", "alice-pw"))
            .is_err());
    }
}
