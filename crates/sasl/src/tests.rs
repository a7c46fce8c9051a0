//! The authenticator against the client state machine: full exchanges for every mechanism,
//! failures, re-authentication, and proptests (arbitrary bytes never panic and never
//! authenticate).

use std::collections::BTreeMap;
use std::sync::Arc;

use fjord_metadata::security::{ScramCredential, ScramMechanism};
use fjord_metadata::MetadataImage;
use fjord_protocol::kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, MetadataRequest, RequestHeader, SaslAuthenticateRequest,
    SaslAuthenticateResponse, SaslHandshakeRequest,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{RequestKind, ResponseKind};
use proptest::prelude::*;

use super::authenticator::{
    ILLEGAL_SASL_STATE, SASL_AUTHENTICATION_FAILED, UNSUPPORTED_SASL_MECHANISM,
};
use super::jwt::tests::{good_claims, Keys, NOW_MS};
use super::jwt::{Jwks, JwtValidator, JwtValidatorSettings};
use super::*;
use crate::KafkaPrincipal;
use crate::SaslMetrics;

fn settings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const PLAIN_JAAS: &str = r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="broker" password="broker-pw" user_broker="broker-pw" user_alice="alice-pw";"#;

fn config(extra: &[(&str, &str)], keys: Option<&Keys>) -> Arc<SaslConfig> {
    let mut pairs = vec![
        (
            "sasl.enabled.mechanisms",
            "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
        ),
        ("sasl.jaas.config", PLAIN_JAAS),
    ];
    pairs.extend_from_slice(extra);
    let mut config = SaslConfig::from_settings(&settings(&pairs), "SASL_PLAINTEXT").unwrap();
    if let Some(keys) = keys {
        config.enabled_mechanisms.push(Mechanism::OAuthBearer);
        let reauth_ms = config.reauth_ms(Mechanism::Plain);
        config
            .connections_max_reauth_ms
            .insert(Mechanism::OAuthBearer, reauth_ms);
        config.oauthbearer = Some(Arc::new(JwtValidator::new(
            JwtValidatorSettings::default(),
            Jwks::parse(keys.jwks_json().as_bytes()).unwrap(),
        )));
    }
    Arc::new(config)
}

/// Built once: PBKDF2 at 4096 iterations is slow in debug builds.
fn image() -> MetadataImage {
    static IMAGE: std::sync::OnceLock<MetadataImage> = std::sync::OnceLock::new();
    IMAGE.get_or_init(build_image).clone()
}

fn build_image() -> MetadataImage {
    let mut image = MetadataImage::empty();
    let mut credentials = BTreeMap::new();
    for mechanism in [ScramMechanism::ScramSha256, ScramMechanism::ScramSha512] {
        for (user, password) in [("alice", "alice-pw"), ("bob", "bob-pw")] {
            credentials.insert(
                (user.to_string(), mechanism),
                ScramCredential::from_password(mechanism, password, b"salty-salt", 4096),
            );
        }
    }
    image.scram_credentials = Arc::new(credentials);
    image
}

fn header(api_key: ApiKey, version: i16) -> RequestHeader {
    RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
}

fn handshake(mechanism: &str) -> RequestKind {
    RequestKind::SaslHandshake(
        SaslHandshakeRequest::default().with_mechanism(StrBytes::from_string(mechanism.into())),
    )
}

fn authenticate(bytes: &[u8]) -> RequestKind {
    RequestKind::SaslAuthenticate(
        SaslAuthenticateRequest::default().with_auth_bytes(bytes.to_vec().into()),
    )
}

struct Harness {
    auth: SaslServerAuthenticator,
    metrics: Arc<SaslMetrics>,
    image: MetadataImage,
    now_ms: i64,
}

impl Harness {
    fn new(config: Arc<SaslConfig>) -> Self {
        let metrics = Arc::new(SaslMetrics::default());
        Self {
            auth: SaslServerAuthenticator::new(config, None, metrics.clone()),
            metrics,
            image: image(),
            now_ms: NOW_MS,
        }
    }

    fn send(&mut self, api_key: ApiKey, version: i16, request: RequestKind) -> AuthAction {
        self.auth
            .on_request(&header(api_key, version), request, &self.image, self.now_ms)
    }

    /// A whole client exchange through `SaslClientAuthenticator`; the principal or the error.
    fn login(
        &mut self,
        mechanism: Mechanism,
        user: &str,
        password: &str,
    ) -> Result<(KafkaPrincipal, i64), SaslClientError> {
        let mut client = SaslClientAuthenticator::new(mechanism, user, password)?;
        let ResponseKind::SaslHandshake(response) = (match self.send(
            ApiKey::SaslHandshake,
            1,
            RequestKind::SaslHandshake(client.handshake_request()),
        ) {
            AuthAction::Respond(r) | AuthAction::RespondAndClose(r, _) => r,
            other => panic!("{other:?}"),
        }) else {
            panic!("not a handshake response")
        };
        let mut request = client.on_handshake_response(&response)?;
        loop {
            let (response, principal) = match self.send(
                ApiKey::SaslAuthenticate,
                2,
                RequestKind::SaslAuthenticate(request),
            ) {
                AuthAction::Respond(r) | AuthAction::RespondAndClose(r, _) => (r, None),
                AuthAction::Authenticated(r, p) => (r, Some(p)),
                other => panic!("{other:?}"),
            };
            let ResponseKind::SaslAuthenticate(response) = response else {
                panic!("not an authenticate response")
            };
            match client.on_authenticate_response(&response)? {
                ClientStep::Send(next) => request = next,
                ClientStep::Done {
                    session_lifetime_ms,
                } => {
                    let principal = principal.expect("client done without server success");
                    return Ok((principal, session_lifetime_ms));
                }
            }
        }
    }
}

#[test]
fn every_mechanism_authenticates_through_the_client_state_machine() {
    for mechanism in [
        Mechanism::Plain,
        Mechanism::ScramSha256,
        Mechanism::ScramSha512,
    ] {
        let mut harness = Harness::new(config(&[], None));
        assert_eq!(harness.auth.max_receive_size_bytes(), Some(524_288));
        let (principal, lifetime) = harness.login(mechanism, "alice", "alice-pw").unwrap();
        assert_eq!(principal, KafkaPrincipal::user("alice"));
        assert_eq!(lifetime, 0);
        assert!(harness.auth.is_authenticated());
        assert_eq!(harness.auth.mechanism(), Some(mechanism));
        assert_eq!(harness.auth.max_receive_size_bytes(), None);
        assert_eq!(harness.metrics.get(mechanism, true), 1);
        // Requests now go to the broker.
        let action = harness.send(
            ApiKey::Metadata,
            12,
            RequestKind::Metadata(MetadataRequest::default()),
        );
        assert!(matches!(action, AuthAction::Pass(RequestKind::Metadata(_))));
    }
}

#[test]
fn wrong_password_and_unknown_user_fail_and_close() {
    for mechanism in [
        Mechanism::Plain,
        Mechanism::ScramSha256,
        Mechanism::ScramSha512,
    ] {
        for (user, password) in [("alice", "wrong"), ("nobody", "alice-pw")] {
            let mut harness = Harness::new(config(&[], None));
            let error = harness.login(mechanism, user, password).unwrap_err();
            let SaslClientError::Authentication { code, message } = error else {
                panic!("{error:?}")
            };
            assert_eq!(code, SASL_AUTHENTICATION_FAILED);
            assert!(!message.contains(password), "{message}");
            assert!(!harness.auth.is_authenticated());
            assert_eq!(harness.metrics.get(mechanism, false), 1);
            assert!(matches!(
                harness.send(
                    ApiKey::ApiVersions,
                    3,
                    RequestKind::ApiVersions(ApiVersionsRequest::default())
                ),
                AuthAction::Close(_)
            ));
        }
    }
}

#[test]
fn inter_broker_client_from_config() {
    let config = config(&[], None);
    let client = SaslClientAuthenticator::from_config(&config).unwrap();
    assert_eq!(client.mechanism(), Mechanism::Plain);
    let mut harness = Harness::new(config);
    assert_eq!(
        harness
            .login(Mechanism::Plain, "broker", "broker-pw")
            .unwrap()
            .0,
        KafkaPrincipal::user("broker")
    );
    assert!(SaslClientAuthenticator::new(Mechanism::OAuthBearer, "a", "b").is_err());
}

#[test]
fn only_api_versions_once_and_the_handshake_before_authentication() {
    let mut harness = Harness::new(config(&[], None));
    let versions = || RequestKind::ApiVersions(ApiVersionsRequest::default());
    assert!(matches!(
        harness.send(ApiKey::ApiVersions, 3, versions()),
        AuthAction::Pass(RequestKind::ApiVersions(_))
    ));
    assert!(matches!(
        harness.send(ApiKey::ApiVersions, 3, versions()),
        AuthAction::Close(_)
    ));
    let mut harness = Harness::new(config(&[], None));
    assert!(matches!(
        harness.send(
            ApiKey::Metadata,
            12,
            RequestKind::Metadata(MetadataRequest::default())
        ),
        AuthAction::Close(_)
    ));
    let mut harness = Harness::new(config(&[], None));
    assert!(matches!(
        harness.send(
            ApiKey::SaslAuthenticate,
            2,
            authenticate(b"\0alice\0alice-pw")
        ),
        AuthAction::Close(_)
    ));
    // After the handshake, a second handshake is ILLEGAL_SASL_STATE.
    let mut harness = Harness::new(config(&[], None));
    assert!(matches!(
        harness.send(ApiKey::SaslHandshake, 1, handshake("PLAIN")),
        AuthAction::Respond(_)
    ));
    let AuthAction::RespondAndClose(ResponseKind::SaslHandshake(r), _) =
        harness.send(ApiKey::SaslHandshake, 1, handshake("PLAIN"))
    else {
        panic!()
    };
    assert_eq!(r.error_code, ILLEGAL_SASL_STATE);
}

#[test]
fn a_mechanism_not_enabled_answers_the_enabled_list_and_closes() {
    let mut harness = Harness::new(config(
        &[("sasl.enabled.mechanisms", "SCRAM-SHA-512")],
        None,
    ));
    for requested in ["PLAIN", "GSSAPI", "scram-sha-512"] {
        let mut fresh = Harness::new(harness.auth.config_for_tests());
        let AuthAction::RespondAndClose(ResponseKind::SaslHandshake(r), _) =
            fresh.send(ApiKey::SaslHandshake, 1, handshake(requested))
        else {
            panic!()
        };
        assert_eq!(r.error_code, UNSUPPORTED_SASL_MECHANISM);
        assert_eq!(
            r.mechanisms,
            vec![StrBytes::from_static_str("SCRAM-SHA-512")]
        );
    }
    assert!(harness
        .login(Mechanism::ScramSha512, "bob", "bob-pw")
        .is_ok());
}

#[test]
fn reauthentication_keeps_the_principal_and_extends_the_session() {
    let mut harness = Harness::new(config(&[("connections.max.reauth.ms", "60000")], None));
    let (_, lifetime) = harness
        .login(Mechanism::ScramSha256, "alice", "alice-pw")
        .unwrap();
    assert_eq!(lifetime, 60_000);
    assert_eq!(harness.auth.session_expiry_ms(), Some(NOW_MS + 60_000));
    assert!(!harness.auth.session_expired(NOW_MS + 59_999));
    assert!(harness.auth.session_expired(NOW_MS + 60_000));

    harness.now_ms = NOW_MS + 50_000;
    let (principal, _) = harness
        .login(Mechanism::ScramSha256, "alice", "alice-pw")
        .unwrap();
    assert_eq!(principal, KafkaPrincipal::user("alice"));
    assert_eq!(harness.auth.session_expiry_ms(), Some(NOW_MS + 110_000));
    assert_eq!(harness.metrics.get(Mechanism::ScramSha256, true), 2);

    // Another user on re-authentication: refused, connection closes.
    let error = harness
        .login(Mechanism::ScramSha256, "bob", "bob-pw")
        .unwrap_err();
    assert!(
        matches!(&error, SaslClientError::Authentication { message, .. } if message.contains("Cannot change principals")),
        "{error:?}"
    );
    assert!(matches!(
        harness.send(
            ApiKey::Metadata,
            12,
            RequestKind::Metadata(MetadataRequest::default())
        ),
        AuthAction::Close(_)
    ));
}

#[test]
fn reauthentication_with_another_mechanism_fails() {
    let mut harness = Harness::new(config(&[], None));
    harness
        .login(Mechanism::Plain, "alice", "alice-pw")
        .unwrap();
    let error = harness
        .login(Mechanism::ScramSha256, "alice", "alice-pw")
        .unwrap_err();
    assert!(
        matches!(error, SaslClientError::Authentication { .. }),
        "{error:?}"
    );
}

#[test]
fn an_expired_session_closes_on_the_next_request_but_may_reauthenticate() {
    let mut harness = Harness::new(config(&[("connections.max.reauth.ms", "1000")], None));
    harness
        .login(Mechanism::Plain, "alice", "alice-pw")
        .unwrap();
    harness.now_ms = NOW_MS + 5_000;
    // A re-authenticating handshake is still allowed after expiry.
    harness
        .login(Mechanism::Plain, "alice", "alice-pw")
        .unwrap();
    assert!(matches!(
        harness.send(
            ApiKey::Metadata,
            12,
            RequestKind::Metadata(MetadataRequest::default())
        ),
        AuthAction::Pass(_)
    ));
    harness.now_ms = NOW_MS + 10_000;
    assert!(matches!(
        harness.send(
            ApiKey::Metadata,
            12,
            RequestKind::Metadata(MetadataRequest::default())
        ),
        AuthAction::Close(_)
    ));
}

fn oauth_exchange(harness: &mut Harness, token: &str, version: i16) -> Vec<AuthAction> {
    let mut actions = vec![harness.send(ApiKey::SaslHandshake, 1, handshake("OAUTHBEARER"))];
    actions.push(harness.send(
        ApiKey::SaslAuthenticate,
        version,
        authenticate(&oauthbearer::client_message(token)),
    ));
    if matches!(actions.last(), Some(AuthAction::Respond(_))) {
        actions.push(harness.send(ApiKey::SaslAuthenticate, version, authenticate(&[0x01])));
    }
    actions
}

#[test]
fn oauthbearer_session_ends_with_the_token_or_the_reauth_limit() {
    let keys = Keys::new();
    let token = keys.token("ec1", "ES256", good_claims()); // exp = now + 3600 s
    let mut harness = Harness::new(config(&[], Some(&keys)));
    let actions = oauth_exchange(&mut harness, &token, 1);
    let AuthAction::Authenticated(ResponseKind::SaslAuthenticate(r), principal) = &actions[1]
    else {
        panic!("{actions:?}")
    };
    assert_eq!(principal, &KafkaPrincipal::user("alice"));
    assert_eq!(r.session_lifetime_ms, 3_600_000);
    assert_eq!(harness.metrics.get(Mechanism::OAuthBearer, true), 1);

    let mut harness = Harness::new(config(
        &[("connections.max.reauth.ms", "1000")],
        Some(&keys),
    ));
    let actions = oauth_exchange(&mut harness, &token, 2);
    let AuthAction::Authenticated(ResponseKind::SaslAuthenticate(r), _) = &actions[1] else {
        panic!("{actions:?}")
    };
    assert_eq!(r.session_lifetime_ms, 1000);

    // v0 has no session_lifetime_ms field: the response leaves it at its default.
    let mut harness = Harness::new(config(&[], Some(&keys)));
    let actions = oauth_exchange(&mut harness, &token, 0);
    let AuthAction::Authenticated(ResponseKind::SaslAuthenticate(r), _) = &actions[1] else {
        panic!("{actions:?}")
    };
    assert_eq!(r.session_lifetime_ms, 0);
    assert_eq!(
        harness.auth.session_expiry_ms(),
        Some(NOW_MS / 1000 * 1000 + 3_600_000)
    );
}

#[test]
fn oauthbearer_bad_token_gets_the_error_json_then_fails() {
    let keys = Keys::new();
    let mut claims = good_claims();
    claims["exp"] = (NOW_MS / 1000 - 100).into();
    let token = keys.token("ec1", "ES256", claims);
    let mut harness = Harness::new(config(&[], Some(&keys)));
    let actions = oauth_exchange(&mut harness, &token, 2);
    let AuthAction::Respond(ResponseKind::SaslAuthenticate(challenge)) = &actions[1] else {
        panic!("{actions:?}")
    };
    assert_eq!(challenge.error_code, 0);
    assert_eq!(
        &challenge.auth_bytes[..],
        oauthbearer::INVALID_TOKEN_JSON.as_bytes()
    );
    let AuthAction::RespondAndClose(ResponseKind::SaslAuthenticate(last), _) = &actions[2] else {
        panic!("{actions:?}")
    };
    assert_eq!(last.error_code, SASL_AUTHENTICATION_FAILED);
    assert_eq!(harness.metrics.get(Mechanism::OAuthBearer, false), 1);
    assert!(!harness.auth.is_authenticated());
}

impl SaslServerAuthenticator {
    fn config_for_tests(&self) -> Arc<SaslConfig> {
        self.config_ref().clone()
    }
}

/// Drives `messages` into a fresh authenticator after a handshake of `mechanism`; true if it
/// ever reported success.
fn fuzz_authenticator(
    mechanism: Mechanism,
    messages: &[Vec<u8>],
    config: &Arc<SaslConfig>,
) -> bool {
    let mut harness = Harness::new(config.clone());
    let mut authenticated = false;
    harness.send(ApiKey::SaslHandshake, 1, handshake(mechanism.name()));
    for message in messages {
        match harness.send(ApiKey::SaslAuthenticate, 2, authenticate(message)) {
            AuthAction::Authenticated(..) => authenticated = true,
            AuthAction::Close(_) | AuthAction::RespondAndClose(..) => break,
            _ => {}
        }
    }
    authenticated || harness.auth.is_authenticated()
}

fn shared_config() -> Arc<SaslConfig> {
    static KEYS: std::sync::OnceLock<Keys> = std::sync::OnceLock::new();
    static CONFIG: std::sync::OnceLock<Arc<SaslConfig>> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| config(&[], Some(KEYS.get_or_init(Keys::new))))
        .clone()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary SaslAuthenticate bytes never panic any mechanism and never authenticate.
    #[test]
    fn arbitrary_bytes_never_authenticate(
        mechanism in prop::sample::select(Mechanism::ALL.to_vec()),
        messages in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 1..4),
    ) {
        prop_assert!(!fuzz_authenticator(mechanism, &messages, &shared_config()));
    }

    /// Structured but forged SCRAM exchanges (a well-formed client-first, then a client-final
    /// with the right nonce and an arbitrary proof) never authenticate.
    #[test]
    fn forged_scram_proofs_never_authenticate(
        user in "[a-z]{1,8}",
        proof in prop::collection::vec(any::<u8>(), 0..80),
        sha512 in any::<bool>(),
    ) {
        let mechanism = if sha512 { Mechanism::ScramSha512 } else { Mechanism::ScramSha256 };
        let mut harness = Harness::new(shared_config());
        harness.send(ApiKey::SaslHandshake, 1, handshake(mechanism.name()));
        let first = format!("n,,n={user},r=clientnonce");
        let AuthAction::Respond(ResponseKind::SaslAuthenticate(SaslAuthenticateResponse { auth_bytes, .. })) =
            harness.send(ApiKey::SaslAuthenticate, 2, authenticate(first.as_bytes()))
        else {
            panic!("no server-first")
        };
        let server_first = scram::ServerFirst::parse(&auth_bytes).unwrap();
        use base64::Engine as _;
        let last = format!(
            "c=biws,r={},p={}",
            server_first.nonce,
            base64::engine::general_purpose::STANDARD.encode(&proof)
        );
        let action = harness.send(ApiKey::SaslAuthenticate, 2, authenticate(last.as_bytes()));
        prop_assert!(!matches!(action, AuthAction::Authenticated(..)));
        prop_assert!(!harness.auth.is_authenticated());
    }

    /// Arbitrary request sequences before authentication never reach the broker except one
    /// ApiVersions.
    #[test]
    fn nothing_but_api_versions_passes_before_authentication(kinds in prop::collection::vec(0u8..4, 1..8)) {
        let mut harness = Harness::new(shared_config());
        let mut passed = 0;
        for kind in kinds {
            let (key, request) = match kind {
                0 => (ApiKey::ApiVersions, RequestKind::ApiVersions(ApiVersionsRequest::default())),
                1 => (ApiKey::Metadata, RequestKind::Metadata(MetadataRequest::default())),
                2 => (ApiKey::SaslHandshake, handshake("PLAIN")),
                _ => (ApiKey::SaslAuthenticate, authenticate(b"\0alice\0bad")),
            };
            match harness.send(key, 1, request) {
                AuthAction::Pass(RequestKind::ApiVersions(_)) => passed += 1,
                AuthAction::Pass(other) => prop_assert!(false, "passed {other:?}"),
                AuthAction::Authenticated(..) => prop_assert!(false, "authenticated"),
                AuthAction::Close(_) | AuthAction::RespondAndClose(..) => break,
                AuthAction::Respond(_) => {}
            }
        }
        prop_assert!(passed <= 1);
    }
}
