//! JWT access-token validation for OAUTHBEARER (KIP-768; Kafka
//! `OAuthBearerValidatorCallbackHandler`, `ValidatorAccessTokenValidator`,
//! `JwksFileVerificationKeyResolver`).
//!
//! A token is three base64url parts, `header.payload.signature`. Checks, in Kafka's (jose4j's)
//! order: the header's `alg` is one of RS256/RS384/RS512, PS256/PS384/PS512, ES256/ES384
//! (`none` and HMAC are refused: the broker holds no shared secrets; ES512 is not in `ring`); the key is the JWKS entry named by `kid` (or the
//! only key of the right type when the token names none); the signature verifies with `ring`;
//! `exp` is present and not passed, `iat` is present and not in the future, `nbf` (if present)
//! has passed, each with `sasl.oauthbearer.clock.skew.seconds` of slack; `iss` equals
//! `sasl.oauthbearer.expected.issuer` and `aud` contains one of
//! `sasl.oauthbearer.expected.audience` when those are set; the principal is the string claim
//! `sasl.oauthbearer.sub.claim.name` (default `sub`).
//!
//! Bounds: token size, JSON nesting depth, JWKS size and key count (the JWKS is a local file,
//! but a token is client input).

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use parking_lot::RwLock;
use serde_json::Value;

/// Longest access token accepted.
pub const TOKEN_SIZE_BYTES_MAX: usize = 64 * 1024;
/// Deepest JSON nesting accepted in a token's header or claims, or in a JWKS.
pub const JSON_DEPTH_MAX: usize = 16;
/// Largest JWKS document accepted.
pub const JWKS_SIZE_BYTES_MAX: usize = 1024 * 1024;
/// Most keys a JWKS may hold.
pub const JWKS_KEYS_MAX: usize = 100;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum JwtError {
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("token too large ({0} bytes)")]
    TooLarge(usize),
    #[error("algorithm '{0}' is not allowed")]
    AlgorithmNotAllowed(String),
    #[error("no key in the JWKS matches the token (kid {0:?})")]
    UnknownKey(Option<String>),
    #[error("signature does not verify")]
    BadSignature,
    #[error("claim '{0}' missing or invalid")]
    Claim(String),
    #[error("token expired (exp {exp_s}, now {now_s})")]
    Expired { exp_s: i64, now_s: i64 },
    #[error("token not yet valid (nbf {nbf_s}, now {now_s})")]
    NotYetValid { nbf_s: i64, now_s: i64 },
    #[error("token issued in the future (iat {iat_s}, now {now_s})")]
    IssuedInFuture { iat_s: i64, now_s: i64 },
    #[error("issuer {0:?} is not the expected issuer")]
    WrongIssuer(Option<String>),
    #[error("audience does not contain any expected audience")]
    WrongAudience,
    #[error("JWKS: {0}")]
    Jwks(String),
}

fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn parse_json(bytes: &[u8], what: &'static str) -> Result<Value, JwtError> {
    // serde_json refuses nesting beyond 128 without recursing deeper; then our own bound.
    let value: Value = serde_json::from_slice(bytes).map_err(|_| JwtError::Malformed(what))?;
    if depth(&value) > JSON_DEPTH_MAX {
        return Err(JwtError::Malformed(what));
    }
    Ok(value)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Curve {
    P256,
    P384,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum KeyMaterial {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    Ec { curve: Curve, point: Vec<u8> },
}

/// One verification key of a JWKS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Jwk {
    pub kid: Option<String>,
    pub alg: Option<String>,
    material: KeyMaterial,
}

/// A JSON Web Key Set (RFC 7517), the verification keys of `sasl.oauthbearer.jwks.endpoint.url`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

fn b64_field(key: &serde_json::Map<String, Value>, name: &str) -> Result<Vec<u8>, JwtError> {
    key.get(name)
        .and_then(Value::as_str)
        .and_then(|s| B64URL.decode(s.trim_end_matches('=')).ok())
        .ok_or_else(|| JwtError::Jwks(format!("key field '{name}' missing or not base64url")))
}

fn strip_leading_zeros(bytes: Vec<u8>) -> Vec<u8> {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes[first..].to_vec()
}

impl Jwks {
    /// Parses a JWKS document. Keys that are not signature keys (`use` other than `sig`) or of
    /// types Fjord cannot verify (`oct`, `OKP`, other curves) are skipped, as jose4j does.
    pub fn parse(json: &[u8]) -> Result<Self, JwtError> {
        if json.len() > JWKS_SIZE_BYTES_MAX {
            return Err(JwtError::Jwks(format!(
                "larger than {JWKS_SIZE_BYTES_MAX} bytes"
            )));
        }
        let value = parse_json(json, "JWKS").map_err(|_| JwtError::Jwks("not JSON".into()))?;
        let keys = value
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| JwtError::Jwks("no 'keys' array".into()))?;
        if keys.len() > JWKS_KEYS_MAX {
            return Err(JwtError::Jwks(format!("more than {JWKS_KEYS_MAX} keys")));
        }
        let mut parsed = Vec::new();
        for key in keys {
            let Some(key) = key.as_object() else {
                return Err(JwtError::Jwks("a key is not an object".into()));
            };
            if key
                .get("use")
                .and_then(Value::as_str)
                .is_some_and(|u| u != "sig")
            {
                continue;
            }
            let material = match key.get("kty").and_then(Value::as_str) {
                Some("RSA") => KeyMaterial::Rsa {
                    n: strip_leading_zeros(b64_field(key, "n")?),
                    e: strip_leading_zeros(b64_field(key, "e")?),
                },
                Some("EC") => {
                    let (curve, size) = match key.get("crv").and_then(Value::as_str) {
                        Some("P-256") => (Curve::P256, 32),
                        Some("P-384") => (Curve::P384, 48),
                        _ => continue,
                    };
                    let (x, y) = (b64_field(key, "x")?, b64_field(key, "y")?);
                    if x.len() != size || y.len() != size {
                        return Err(JwtError::Jwks(
                            "EC key coordinates of the wrong size".into(),
                        ));
                    }
                    let mut point = vec![4u8];
                    point.extend_from_slice(&x);
                    point.extend_from_slice(&y);
                    KeyMaterial::Ec { curve, point }
                }
                _ => continue,
            };
            parsed.push(Jwk {
                kid: key.get("kid").and_then(Value::as_str).map(str::to_string),
                alg: key.get("alg").and_then(Value::as_str).map(str::to_string),
                material,
            });
        }
        Ok(Self { keys: parsed })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Algorithm {
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
}

impl Algorithm {
    fn parse(name: &str) -> Result<Self, JwtError> {
        Ok(match name {
            "RS256" => Self::Rs256,
            "RS384" => Self::Rs384,
            "RS512" => Self::Rs512,
            "PS256" => Self::Ps256,
            "PS384" => Self::Ps384,
            "PS512" => Self::Ps512,
            "ES256" => Self::Es256,
            "ES384" => Self::Es384,
            other => return Err(JwtError::AlgorithmNotAllowed(other.to_string())),
        })
    }

    fn fits(self, material: &KeyMaterial) -> bool {
        match (self, material) {
            (
                Self::Rs256 | Self::Rs384 | Self::Rs512 | Self::Ps256 | Self::Ps384 | Self::Ps512,
                KeyMaterial::Rsa { .. },
            ) => true,
            (Self::Es256, KeyMaterial::Ec { curve, .. }) => *curve == Curve::P256,
            (Self::Es384, KeyMaterial::Ec { curve, .. }) => *curve == Curve::P384,
            _ => false,
        }
    }

    fn verify(self, material: &KeyMaterial, message: &[u8], signature: &[u8]) -> bool {
        use ring::signature as sig;
        match material {
            KeyMaterial::Rsa { n, e } => {
                let params = match self {
                    Self::Rs256 => &sig::RSA_PKCS1_2048_8192_SHA256,
                    Self::Rs384 => &sig::RSA_PKCS1_2048_8192_SHA384,
                    Self::Rs512 => &sig::RSA_PKCS1_2048_8192_SHA512,
                    Self::Ps256 => &sig::RSA_PSS_2048_8192_SHA256,
                    Self::Ps384 => &sig::RSA_PSS_2048_8192_SHA384,
                    Self::Ps512 => &sig::RSA_PSS_2048_8192_SHA512,
                    _ => return false,
                };
                sig::RsaPublicKeyComponents { n, e }
                    .verify(params, message, signature)
                    .is_ok()
            }
            KeyMaterial::Ec { point, .. } => {
                let algorithm = match self {
                    Self::Es256 => &sig::ECDSA_P256_SHA256_FIXED,
                    Self::Es384 => &sig::ECDSA_P384_SHA384_FIXED,
                    _ => return false,
                };
                sig::UnparsedPublicKey::new(algorithm, point)
                    .verify(message, signature)
                    .is_ok()
            }
        }
    }
}

/// What a valid token says (Kafka `BasicOAuthBearerToken`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatedToken {
    pub principal: String,
    pub expiry_ms: i64,
    pub issued_at_ms: i64,
    pub scopes: Vec<String>,
}

/// The `sasl.oauthbearer.*` validation settings of a listener.
#[derive(Clone, Debug)]
pub struct JwtValidatorSettings {
    pub expected_issuer: Option<String>,
    /// Any one of them must be in `aud`; empty = not checked.
    pub expected_audiences: Vec<String>,
    pub sub_claim_name: String,
    pub scope_claim_name: String,
    pub clock_skew_s: i64,
}

impl Default for JwtValidatorSettings {
    fn default() -> Self {
        Self {
            expected_issuer: None,
            expected_audiences: Vec::new(),
            sub_claim_name: "sub".to_string(),
            scope_claim_name: "scope".to_string(),
            clock_skew_s: 30,
        }
    }
}

/// Validates access tokens against a JWKS that can be replaced while running (the file is
/// re-read on reload; connections pick up the new keys at their next token).
#[derive(Debug)]
pub struct JwtValidator {
    pub settings: JwtValidatorSettings,
    jwks: RwLock<Arc<Jwks>>,
}

fn numeric_date_s(
    claims: &serde_json::Map<String, Value>,
    name: &str,
) -> Result<Option<i64>, JwtError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_i64()
            .or_else(|| value.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
            .map(Some)
            .ok_or_else(|| JwtError::Claim(name.to_string())),
    }
}

impl JwtValidator {
    pub fn new(settings: JwtValidatorSettings, jwks: Jwks) -> Self {
        Self {
            settings,
            jwks: RwLock::new(Arc::new(jwks)),
        }
    }

    /// Replaces the keys (a re-read JWKS file).
    pub fn replace_jwks(&self, jwks: Jwks) {
        *self.jwks.write() = Arc::new(jwks);
    }

    pub fn jwks(&self) -> Arc<Jwks> {
        self.jwks.read().clone()
    }

    /// Kafka `ValidatorAccessTokenValidator.validate`.
    pub fn validate(&self, token: &str, now_ms: i64) -> Result<ValidatedToken, JwtError> {
        if token.len() > TOKEN_SIZE_BYTES_MAX {
            return Err(JwtError::TooLarge(token.len()));
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed("not three dot-separated parts"));
        };
        let decode = |part: &str, what| B64URL.decode(part).map_err(|_| JwtError::Malformed(what));
        let header = parse_json(&decode(header_b64, "header")?, "header")?;
        let header = header.as_object().ok_or(JwtError::Malformed("header"))?;
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or(JwtError::Malformed("header has no alg"))?;
        let algorithm = Algorithm::parse(alg)?;
        if header.contains_key("crit") {
            return Err(JwtError::Malformed(
                "critical header parameters are not supported",
            ));
        }
        let kid = header
            .get("kid")
            .and_then(Value::as_str)
            .map(str::to_string);
        let signature = decode(signature_b64, "signature")?;
        let signed = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
        let jwks = self.jwks();
        let usable = |key: &&Jwk| {
            algorithm.fits(&key.material) && key.alg.as_deref().is_none_or(|a| a == alg)
        };
        let key = match &kid {
            Some(kid) => jwks
                .keys
                .iter()
                .filter(usable)
                .find(|key| key.kid.as_deref() == Some(kid.as_str())),
            None => {
                let mut candidates = jwks.keys.iter().filter(usable);
                match (candidates.next(), candidates.next()) {
                    (Some(only), None) => Some(only),
                    _ => None,
                }
            }
        }
        .ok_or_else(|| JwtError::UnknownKey(kid.clone()))?;
        if !algorithm.verify(&key.material, signed, &signature) {
            return Err(JwtError::BadSignature);
        }

        let claims = parse_json(&decode(payload_b64, "payload")?, "claims")?;
        let claims = claims.as_object().ok_or(JwtError::Malformed("claims"))?;
        let now_s = now_ms.div_euclid(1000);
        let skew_s = self.settings.clock_skew_s;
        let exp_s = numeric_date_s(claims, "exp")?.ok_or_else(|| JwtError::Claim("exp".into()))?;
        if now_s >= exp_s.saturating_add(skew_s) {
            return Err(JwtError::Expired { exp_s, now_s });
        }
        if let Some(nbf_s) = numeric_date_s(claims, "nbf")? {
            if now_s.saturating_add(skew_s) < nbf_s {
                return Err(JwtError::NotYetValid { nbf_s, now_s });
            }
        }
        let iat_s = numeric_date_s(claims, "iat")?.ok_or_else(|| JwtError::Claim("iat".into()))?;
        if iat_s > now_s.saturating_add(skew_s) {
            return Err(JwtError::IssuedInFuture { iat_s, now_s });
        }
        if exp_s < 0 || iat_s < 0 {
            return Err(JwtError::Claim("exp".into()));
        }
        if let Some(expected) = &self.settings.expected_issuer {
            let issuer = claims.get("iss").and_then(Value::as_str);
            if issuer != Some(expected.as_str()) {
                return Err(JwtError::WrongIssuer(issuer.map(str::to_string)));
            }
        }
        if !self.settings.expected_audiences.is_empty() {
            let audiences: Vec<&str> = match claims.get("aud") {
                Some(Value::String(aud)) => vec![aud.as_str()],
                Some(Value::Array(auds)) => auds.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if !self
                .settings
                .expected_audiences
                .iter()
                .any(|expected| audiences.contains(&expected.as_str()))
            {
                return Err(JwtError::WrongAudience);
            }
        }
        let principal = claims
            .get(&self.settings.sub_claim_name)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| JwtError::Claim(self.settings.sub_claim_name.clone()))?
            .to_string();
        let scopes = match claims.get(&self.settings.scope_claim_name) {
            Some(Value::String(scope)) => vec![scope.clone()],
            Some(Value::Array(scopes)) => scopes
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        };
        Ok(ValidatedToken {
            principal,
            expiry_ms: exp_s.saturating_mul(1000),
            issued_at_ms: iat_s.saturating_mul(1000),
            scopes,
        })
    }
}

/// The subject claim of a token *without* checking anything: only for the log line of a
/// refused token (the user name the client tried).
pub fn unverified_subject(token: &str, claim_name: &str) -> Option<String> {
    if token.len() > TOKEN_SIZE_BYTES_MAX {
        return None;
    }
    let payload = token.split('.').nth(1)?;
    let claims = parse_json(&B64URL.decode(payload).ok()?, "claims").ok()?;
    let subject = claims.get(claim_name)?.as_str()?;
    Some(subject.chars().take(256).collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use ring::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, RSA_PKCS1_SHA256};

    /// A 2048-bit RSA key (PKCS#8 DER) made for these tests; ring cannot generate RSA keys.
    const RSA_PKCS8: &[u8] = include_bytes!("../tests/fixtures/sasl/rsa2048.pk8");

    pub const NOW_MS: i64 = 1_700_000_000_000;

    /// Test signing keys and their JWKS: `ec1` (P-256), `ec2` (P-384), `rsa1`.
    pub struct Keys {
        ec256: EcdsaKeyPair,
        ec384: EcdsaKeyPair,
        rsa: RsaKeyPair,
    }

    impl Keys {
        pub fn new() -> Self {
            let rng = SystemRandom::new();
            let p256 =
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
            let p384 =
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
            Self {
                ec256: EcdsaKeyPair::from_pkcs8(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    p256.as_ref(),
                    &rng,
                )
                .unwrap(),
                ec384: EcdsaKeyPair::from_pkcs8(
                    &ECDSA_P384_SHA384_FIXED_SIGNING,
                    p384.as_ref(),
                    &rng,
                )
                .unwrap(),
                rsa: RsaKeyPair::from_pkcs8(RSA_PKCS8).unwrap(),
            }
        }

        pub fn jwks_json(&self) -> String {
            let ec = |kid: &str, crv: &str, pair: &EcdsaKeyPair| {
                let point = pair.public_key().as_ref();
                let half = (point.len() - 1) / 2;
                serde_json::json!({"kty": "EC", "kid": kid, "crv": crv, "use": "sig",
                    "x": B64URL.encode(&point[1..1 + half]), "y": B64URL.encode(&point[1 + half..])})
            };
            let components: ring::rsa::PublicKeyComponents<Vec<u8>> = self.rsa.public().into();
            serde_json::json!({"keys": [
                ec("ec1", "P-256", &self.ec256),
                ec("ec2", "P-384", &self.ec384),
                {"kty": "RSA", "kid": "rsa1", "alg": "RS256",
                 "n": B64URL.encode(&components.n), "e": B64URL.encode(&components.e)},
                {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            ]})
            .to_string()
        }

        /// A token with `header` and `claims`, signed by the key its `alg` names.
        pub fn sign(&self, header: &Value, claims: &Value) -> String {
            let signing_input = format!(
                "{}.{}",
                B64URL.encode(header.to_string()),
                B64URL.encode(claims.to_string())
            );
            let rng = SystemRandom::new();
            let signature = match header["alg"].as_str().unwrap() {
                "ES256" => self
                    .ec256
                    .sign(&rng, signing_input.as_bytes())
                    .unwrap()
                    .as_ref()
                    .to_vec(),
                "ES384" => self
                    .ec384
                    .sign(&rng, signing_input.as_bytes())
                    .unwrap()
                    .as_ref()
                    .to_vec(),
                "RS256" => {
                    let mut sig = vec![0; self.rsa.public().modulus_len()];
                    self.rsa
                        .sign(&RSA_PKCS1_SHA256, &rng, signing_input.as_bytes(), &mut sig)
                        .unwrap();
                    sig
                }
                _ => Vec::new(),
            };
            format!("{signing_input}.{}", B64URL.encode(signature))
        }

        pub fn token(&self, kid: &str, alg: &str, claims: Value) -> String {
            self.sign(
                &serde_json::json!({"alg": alg, "kid": kid, "typ": "JWT"}),
                &claims,
            )
        }
    }

    pub fn good_claims() -> Value {
        serde_json::json!({"sub": "alice", "iss": "https://issuer", "aud": ["kafka", "other"],
            "iat": NOW_MS / 1000 - 10, "exp": NOW_MS / 1000 + 3600, "scope": "produce"})
    }

    pub fn validator(keys: &Keys) -> JwtValidator {
        JwtValidator::new(
            JwtValidatorSettings {
                expected_issuer: Some("https://issuer".into()),
                expected_audiences: vec!["kafka".into()],
                ..JwtValidatorSettings::default()
            },
            Jwks::parse(keys.jwks_json().as_bytes()).unwrap(),
        )
    }

    fn with(claims: Value, key: &str, value: Value) -> Value {
        let mut claims = claims;
        claims[key] = value;
        claims
    }

    #[test]
    fn good_tokens_of_every_algorithm_validate() {
        let keys = Keys::new();
        let validator = validator(&keys);
        for (kid, alg) in [("ec1", "ES256"), ("ec2", "ES384"), ("rsa1", "RS256")] {
            let token = validator
                .validate(&keys.token(kid, alg, good_claims()), NOW_MS)
                .unwrap_or_else(|e| panic!("{alg}: {e}"));
            assert_eq!(token.principal, "alice");
            assert_eq!(token.expiry_ms, (NOW_MS / 1000 + 3600) * 1000);
            assert_eq!(token.scopes, vec!["produce".to_string()]);
        }
        // No kid: the only P-256 key is used.
        let token = keys.sign(&serde_json::json!({"alg": "ES256"}), &good_claims());
        assert!(validator.validate(&token, NOW_MS).is_ok());
    }

    #[test]
    fn time_claims_are_checked_with_the_skew() {
        let keys = Keys::new();
        let validator = validator(&keys);
        let now_s = NOW_MS / 1000;
        let check = |claims: Value| validator.validate(&keys.token("ec1", "ES256", claims), NOW_MS);
        assert!(matches!(
            check(with(good_claims(), "exp", (now_s - 31).into())),
            Err(JwtError::Expired { .. })
        ));
        assert!(check(with(good_claims(), "exp", (now_s - 29).into())).is_ok());
        let mut no_exp = good_claims();
        no_exp.as_object_mut().unwrap().remove("exp");
        assert!(matches!(check(no_exp), Err(JwtError::Claim(c)) if c == "exp"));
        let mut no_iat = good_claims();
        no_iat.as_object_mut().unwrap().remove("iat");
        assert!(matches!(check(no_iat), Err(JwtError::Claim(c)) if c == "iat"));
        assert!(matches!(
            check(with(good_claims(), "nbf", (now_s + 60).into())),
            Err(JwtError::NotYetValid { .. })
        ));
        assert!(check(with(good_claims(), "nbf", (now_s + 20).into())).is_ok());
        assert!(matches!(
            check(with(good_claims(), "iat", (now_s + 60).into())),
            Err(JwtError::IssuedInFuture { .. })
        ));
        assert!(check(with(good_claims(), "exp", "soon".into())).is_err());
    }

    #[test]
    fn issuer_audience_and_subject_are_checked() {
        let keys = Keys::new();
        let validator = validator(&keys);
        let check = |claims: Value| validator.validate(&keys.token("ec1", "ES256", claims), NOW_MS);
        assert!(matches!(
            check(with(good_claims(), "iss", "https://evil".into())),
            Err(JwtError::WrongIssuer(_))
        ));
        assert!(matches!(
            check(with(good_claims(), "aud", "other".into())),
            Err(JwtError::WrongAudience)
        ));
        assert!(check(with(good_claims(), "aud", "kafka".into())).is_ok());
        assert!(matches!(
            check(with(good_claims(), "sub", " ".into())),
            Err(JwtError::Claim(_))
        ));
        let custom = JwtValidator::new(
            JwtValidatorSettings {
                sub_claim_name: "client_id".into(),
                ..JwtValidatorSettings::default()
            },
            Jwks::parse(keys.jwks_json().as_bytes()).unwrap(),
        );
        let token = keys.token(
            "ec1",
            "ES256",
            with(good_claims(), "client_id", "svc".into()),
        );
        assert_eq!(custom.validate(&token, NOW_MS).unwrap().principal, "svc");
    }

    #[test]
    fn bad_signatures_unknown_keys_and_alg_none_fail() {
        let keys = Keys::new();
        let validator = validator(&keys);
        let token = keys.token("ec1", "ES256", good_claims());
        // Claims swapped under the same signature.
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = B64URL.encode(with(good_claims(), "sub", "admin".into()).to_string());
        parts[1] = &forged;
        assert_eq!(
            validator.validate(&parts.join("."), NOW_MS),
            Err(JwtError::BadSignature)
        );
        // Signed by another P-256 key.
        let other = Keys::new();
        assert_eq!(
            validator.validate(&other.token("ec1", "ES256", good_claims()), NOW_MS),
            Err(JwtError::BadSignature)
        );
        assert!(matches!(
            validator.validate(&keys.token("nope", "ES256", good_claims()), NOW_MS),
            Err(JwtError::UnknownKey(Some(k))) if k == "nope"
        ));
        // A kid of the wrong key type.
        assert!(matches!(
            validator.validate(&keys.token("rsa1", "ES256", good_claims()), NOW_MS),
            Err(JwtError::UnknownKey(_))
        ));
        let unsigned = format!(
            "{}.{}.",
            B64URL.encode(r#"{"alg":"none"}"#),
            B64URL.encode(good_claims().to_string())
        );
        assert_eq!(
            validator.validate(&unsigned, NOW_MS),
            Err(JwtError::AlgorithmNotAllowed("none".into()))
        );
        assert!(matches!(
            validator.validate(&keys.token("hmac", "HS256", good_claims()), NOW_MS),
            Err(JwtError::AlgorithmNotAllowed(_))
        ));
        for bad in [
            "",
            "a.b",
            "a.b.c.d",
            "!!.!!.!!",
            &"a".repeat(TOKEN_SIZE_BYTES_MAX + 1),
        ] {
            assert!(validator.validate(bad, NOW_MS).is_err());
        }
    }

    /// Tokens signed by another implementation (PyJWT, `tests/fixtures/sasl/pyjwt.json`): the
    /// base64url, ECDSA r||s and PSS encodings agree. A key whose JWK names `alg` RS256 is not
    /// used for RS384 (jose4j's key selection does the same).
    #[test]
    fn tokens_signed_by_pyjwt_validate() {
        let fixture: Value =
            serde_json::from_str(include_str!("../tests/fixtures/sasl/pyjwt.json")).unwrap();
        let validator = JwtValidator::new(
            JwtValidatorSettings {
                expected_issuer: Some("https://issuer".into()),
                expected_audiences: vec!["kafka".into()],
                ..JwtValidatorSettings::default()
            },
            Jwks::parse(fixture["jwks"].to_string().as_bytes()).unwrap(),
        );
        let now_ms = fixture["now_s"].as_i64().unwrap() * 1000;
        for alg in ["RS256", "ES256", "ES384"] {
            let token = validator
                .validate(fixture["tokens"][alg].as_str().unwrap(), now_ms)
                .unwrap_or_else(|e| panic!("{alg}: {e}"));
            assert_eq!(token.principal, "pyuser");
            assert_eq!(token.scopes, vec!["a b".to_string()]);
        }
        assert!(matches!(
            validator.validate(fixture["tokens"]["RS384"].as_str().unwrap(), now_ms),
            Err(JwtError::UnknownKey(_))
        ));
        assert!(matches!(
            validator.validate(fixture["tokens"]["PS256"].as_str().unwrap(), now_ms),
            Err(JwtError::UnknownKey(_))
        ));
        assert!(matches!(
            validator.validate(
                fixture["tokens"]["ES256"].as_str().unwrap(),
                now_ms + 3_600_000
            ),
            Err(JwtError::Expired { .. })
        ));
        // Without `alg` on the RSA key, it serves every RSA algorithm.
        let mut jwks = fixture["jwks"].clone();
        jwks["keys"][0].as_object_mut().unwrap().remove("alg");
        validator.replace_jwks(Jwks::parse(jwks.to_string().as_bytes()).unwrap());
        for alg in ["RS256", "RS384", "PS256"] {
            let token = fixture["tokens"][alg].as_str().unwrap();
            assert!(validator.validate(token, now_ms).is_ok(), "{alg}");
        }
    }

    #[test]
    fn the_unverified_subject_is_read_for_logs_only() {
        let keys = Keys::new();
        let token = keys.token("nope", "ES256", good_claims());
        assert_eq!(unverified_subject(&token, "sub").as_deref(), Some("alice"));
        assert_eq!(unverified_subject("garbage", "sub"), None);
    }

    #[test]
    fn keys_can_be_replaced_and_jwks_is_bounded() {
        let keys = Keys::new();
        let validator = validator(&keys);
        let token = keys.token("ec1", "ES256", good_claims());
        assert!(validator.validate(&token, NOW_MS).is_ok());
        validator.replace_jwks(Jwks::default());
        assert!(matches!(
            validator.validate(&token, NOW_MS),
            Err(JwtError::UnknownKey(_))
        ));

        let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
        assert!(Jwks::parse(deep.as_bytes()).is_err());
        let many =
            serde_json::json!({"keys": vec![serde_json::json!({"kty": "oct"}); JWKS_KEYS_MAX + 1]});
        assert!(Jwks::parse(many.to_string().as_bytes()).is_err());
        assert!(Jwks::parse(b"{}").is_err());
        assert!(
            Jwks::parse(br#"{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}]}"#).is_err()
        );
    }
}
