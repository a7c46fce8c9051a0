//! Arbitrary SaslAuthenticate bytes through every SASL mechanism of `fjord_sasl`
//! and through the per-connection `SaslServerAuthenticator`.
//!
//! Input: the first byte picks the mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512,
//! OAUTHBEARER); the rest is a sequence of messages, each a 2-byte big-endian length and that
//! many bytes. Each message is fed, in order, to a bare server mechanism and to an authenticator
//! after a SaslHandshake of that mechanism; the whole input is also parsed as a JAAS config, a
//! JWKS, a JWT, SCRAM server-first/client-final and OAUTHBEARER messages.
//!
//! Must hold: no panic, and no success: the users' passwords are random, SCRAM needs a proof
//! over a fresh server nonce and OAUTHBEARER a token signed by a key generated at start, none of
//! which arbitrary bytes can produce.
#![no_main]

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use fjord_sasl::jwt::{Jwks, JwtValidator, JwtValidatorSettings};
use fjord_sasl::{
    SaslMetrics,
    jaas, oauthbearer, scram, AuthAction, Mechanism, SaslConfig, SaslServer,
    SaslServerAuthenticator, ServerContext, ServerStep,
};
use fjord_metadata::security::{ScramCredential, ScramMechanism};
use fjord_metadata::MetadataImage;
use fjord_protocol::kafka_protocol::messages::{
    ApiKey, RequestHeader, SaslAuthenticateRequest, SaslHandshakeRequest,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::RequestKind;
use libfuzzer_sys::fuzz_target;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

#[global_allocator]
static A: fjord_protocol::alloc::HostileSizeGuard = fjord_protocol::alloc::HostileSizeGuard;

const NOW_MS: i64 = 1_700_000_000_000;

struct Fixture {
    config: Arc<SaslConfig>,
    image: MetadataImage,
    metrics: Arc<SaslMetrics>,
}

fn random_password() -> String {
    let mut bytes = [0u8; 24];
    SystemRandom::new().fill(&mut bytes).expect("random");
    B64URL.encode(bytes)
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let password = random_password();
        let jaas = format!(
            "org.apache.kafka.common.security.plain.PlainLoginModule required user_alice=\"{password}\" user_admin=\"{password}\";"
        );
        let settings = BTreeMap::from([("sasl.jaas.config".to_string(), jaas)]);
        let mut config = SaslConfig::from_settings(&settings, "SASL_PLAINTEXT").expect("config");
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("key");
        let point = pair.public_key().as_ref();
        let jwks = format!(
            r#"{{"keys":[{{"kty":"EC","crv":"P-256","kid":"k1","x":"{}","y":"{}"}}]}}"#,
            B64URL.encode(&point[1..33]),
            B64URL.encode(&point[33..65])
        );
        config.enabled_mechanisms.push(Mechanism::OAuthBearer);
        config.oauthbearer = Some(Arc::new(JwtValidator::new(
            JwtValidatorSettings::default(),
            Jwks::parse(jwks.as_bytes()).expect("jwks"),
        )));
        let mut credentials = BTreeMap::new();
        for mechanism in [ScramMechanism::ScramSha256, ScramMechanism::ScramSha512] {
            for user in ["alice", "admin"] {
                credentials.insert(
                    (user.to_string(), mechanism),
                    ScramCredential::from_password(mechanism, &password, b"fuzz-salt", 4096),
                );
            }
        }
        let mut image = MetadataImage::empty();
        image.scram_credentials = Arc::new(credentials);
        Fixture {
            config: Arc::new(config),
            image,
            metrics: Arc::new(SaslMetrics::default()),
        }
    })
}

fn messages(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while rest.len() >= 2 && out.len() < 8 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
        let take = len.min(rest.len());
        out.push(&rest[..take]);
        rest = &rest[take..];
    }
    out
}

fn header(api_key: ApiKey, version: i16) -> RequestHeader {
    RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
}

fuzz_target!(init: fjord_fuzz::install_panic_hook(), |data: &[u8]| {
    let fixture = fixture();
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mechanism = Mechanism::ALL[usize::from(selector) % Mechanism::ALL.len()];
    let messages = messages(rest);

    // The bare mechanism.
    let ctx = ServerContext {
        now_ms: NOW_MS,
        scram_credentials: &fixture.image.scram_credentials,
    };
    let mut server = SaslServer::new(mechanism, &fixture.config);
    for message in &messages {
        match server.evaluate_response(message, &ctx) {
            Ok(ServerStep::Complete { user, .. }) => panic!("{mechanism} authenticated {user}"),
            Ok(ServerStep::Challenge(_)) => {}
            Err(_) => break,
        }
    }

    // The connection's authenticator.
    let mut auth = SaslServerAuthenticator::new(fixture.config.clone(), None, fixture.metrics.clone());
    let handshake = RequestKind::SaslHandshake(
        SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism.name())),
    );
    let _ = auth.on_request(&header(ApiKey::SaslHandshake, 1), handshake, &fixture.image, NOW_MS);
    for (i, message) in messages.iter().enumerate() {
        let request = RequestKind::SaslAuthenticate(
            SaslAuthenticateRequest::default().with_auth_bytes(message.to_vec().into()),
        );
        let version = (i % 3) as i16;
        match auth.on_request(&header(ApiKey::SaslAuthenticate, version), request, &fixture.image, NOW_MS) {
            AuthAction::Authenticated(_, principal) => panic!("{mechanism} authenticated {principal}"),
            AuthAction::Close(_) | AuthAction::RespondAndClose(..) => break,
            AuthAction::Respond(_) | AuthAction::Pass(_) => {}
        }
    }
    assert!(!auth.is_authenticated());

    // The parsers on their own.
    let _ = scram::ClientFirst::parse(rest);
    let _ = scram::ClientFinal::parse(rest);
    let _ = scram::ServerFirst::parse(rest);
    let _ = oauthbearer::ClientInitialResponse::parse(rest);
    let _ = Jwks::parse(rest);
    if let Ok(text) = std::str::from_utf8(rest) {
        let _ = jaas::JaasConfig::parse(text);
        let _ = scram::decode_sasl_name(text);
        if let Some(validator) = &fixture.config.oauthbearer {
            assert!(validator.validate(text, NOW_MS).is_err());
        }
    }
});
