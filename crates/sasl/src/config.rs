//! One listener's SASL settings (Kafka `SaslConfigs`, `BrokerSecurityConfigs`,
//! `JaasContext.loadServerContext`), built from the broker's settings map.
//!
//! Every key is looked up listener- and mechanism-specific first, as Kafka does:
//! `listener.name.<listener lower>.<mechanism lower>.<key>`, then
//! `listener.name.<listener lower>.<key>`, then the global `<key>`. So
//! `listener.name.sasl_ssl.plain.sasl.jaas.config` holds the PLAIN users of listener `SASL_SSL`,
//! and `listener.name.sasl_ssl.sasl.enabled.mechanisms` its mechanisms.
//!
//! [`SaslConfig::from_settings`] reads the `file://` JWKS of OAUTHBEARER (the only file; bounded
//! to [`JWKS_SIZE_BYTES_MAX`]); [`SaslConfig::reload_jwks`] reads it again.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use ring::rand::SecureRandom as _;

use super::jaas::{JaasConfig, JaasError};
use super::jwt::{Jwks, JwtValidator, JwtValidatorSettings, JWKS_SIZE_BYTES_MAX};
use super::plain::PlainUsers;
use super::Mechanism;

pub const SASL_ENABLED_MECHANISMS: &str = "sasl.enabled.mechanisms";
pub const SASL_JAAS_CONFIG: &str = "sasl.jaas.config";
pub const SASL_MECHANISM_INTER_BROKER_PROTOCOL: &str = "sasl.mechanism.inter.broker.protocol";
pub const CONNECTIONS_MAX_REAUTH_MS: &str = "connections.max.reauth.ms";
pub const SASL_SERVER_MAX_RECEIVE_SIZE: &str = "sasl.server.max.receive.size";
pub const OAUTHBEARER_JWKS_ENDPOINT_URL: &str = "sasl.oauthbearer.jwks.endpoint.url";
pub const OAUTHBEARER_EXPECTED_ISSUER: &str = "sasl.oauthbearer.expected.issuer";
pub const OAUTHBEARER_EXPECTED_AUDIENCE: &str = "sasl.oauthbearer.expected.audience";
pub const OAUTHBEARER_SUB_CLAIM_NAME: &str = "sasl.oauthbearer.sub.claim.name";
pub const OAUTHBEARER_SCOPE_CLAIM_NAME: &str = "sasl.oauthbearer.scope.claim.name";
pub const OAUTHBEARER_CLOCK_SKEW_SECONDS: &str = "sasl.oauthbearer.clock.skew.seconds";

/// Defaults (also in `broker::config::SETTINGS`).
pub const DEFAULT_ENABLED_MECHANISMS: &str = "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512";
pub const DEFAULT_INTER_BROKER_MECHANISM: &str = "PLAIN";
pub const DEFAULT_MAX_RECEIVE_SIZE_BYTES: usize = 524_288;
pub const DEFAULT_CLOCK_SKEW_S: i64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum SaslConfigError {
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
    #[error(transparent)]
    Jaas(#[from] JaasError),
    #[error("{OAUTHBEARER_JWKS_ENDPOINT_URL}: cannot read {path}: {error}")]
    JwksFile { path: String, error: std::io::Error },
    #[error("{OAUTHBEARER_JWKS_ENDPOINT_URL}: {0}")]
    Jwks(#[from] super::jwt::JwtError),
}

fn invalid(key: &str, message: impl Into<String>) -> SaslConfigError {
    SaslConfigError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

/// One listener's SASL configuration, shared by its connections. `Debug` leaves out the JAAS
/// option values and the SCRAM secret.
pub struct SaslConfig {
    pub listener_name: String,
    /// In the order given; what SaslHandshake answers.
    pub enabled_mechanisms: Vec<Mechanism>,
    pub plain_users: Arc<PlainUsers>,
    /// The JAAS config of each mechanism, where one is set (client credentials).
    pub jaas: BTreeMap<Mechanism, JaasConfig>,
    pub inter_broker_mechanism: Mechanism,
    /// KIP-368 `connections.max.reauth.ms` per enabled mechanism; 0 = sessions do not expire
    /// (unless the credential does).
    pub connections_max_reauth_ms: BTreeMap<Mechanism, i64>,
    /// `sasl.server.max.receive.size`: the largest frame before authentication.
    pub max_receive_size_bytes: usize,
    /// OAUTHBEARER's validator, when that mechanism is enabled.
    pub oauthbearer: Option<Arc<JwtValidator>>,
    /// The JWKS file behind `oauthbearer`.
    pub jwks_path: Option<PathBuf>,
    /// Keys the fake SCRAM credentials of unknown users (random per listener).
    pub(crate) scram_secret: [u8; 32],
}

impl std::fmt::Debug for SaslConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslConfig")
            .field("listener_name", &self.listener_name)
            .field("enabled_mechanisms", &self.enabled_mechanisms)
            .field("plain_users", &self.plain_users)
            .field("jaas", &self.jaas)
            .field("inter_broker_mechanism", &self.inter_broker_mechanism)
            .field("connections_max_reauth_ms", &self.connections_max_reauth_ms)
            .field("max_receive_size_bytes", &self.max_receive_size_bytes)
            .field("oauthbearer", &self.oauthbearer)
            .field("jwks_path", &self.jwks_path)
            .finish_non_exhaustive()
    }
}

struct Lookup<'a> {
    settings: &'a BTreeMap<String, String>,
    listener: String,
}

impl Lookup<'_> {
    fn get(&self, key: &str, mechanism: Option<Mechanism>) -> Option<&str> {
        let mechanism_key = mechanism.map(|m| {
            format!(
                "listener.name.{}.{}.{key}",
                self.listener,
                m.name().to_ascii_lowercase()
            )
        });
        let listener_key = format!("listener.name.{}.{key}", self.listener);
        mechanism_key
            .and_then(|k| self.settings.get(&k))
            .or_else(|| self.settings.get(&listener_key))
            .or_else(|| self.settings.get(key))
            .map(String::as_str)
            .map(str::trim)
            .filter(|v| !v.is_empty())
    }

    fn number<T: std::str::FromStr>(
        &self,
        key: &str,
        mechanism: Option<Mechanism>,
        default: T,
    ) -> Result<T, SaslConfigError> {
        match self.get(key, mechanism) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| invalid(key, format!("'{v}' is not a valid number"))),
        }
    }
}

fn parse_mechanism(key: &str, name: &str) -> Result<Mechanism, SaslConfigError> {
    Mechanism::parse(name).ok_or_else(|| {
        invalid(
            key,
            format!(
                "unsupported SASL mechanism '{name}' (supported: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER)"
            ),
        )
    })
}

/// The path of a `file://` JWKS URL; http(s) is refused (the broker makes no outbound calls).
pub fn jwks_file_path(url: &str) -> Result<PathBuf, SaslConfigError> {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Err(invalid(
            OAUTHBEARER_JWKS_ENDPOINT_URL,
            format!("'{url}': http(s) JWKS endpoints are not supported (Fjord makes no outbound HTTP calls); save the JWKS to a file and use file:///path/to/jwks.json"),
        ));
    }
    let path = url
        .strip_prefix("file://")
        .filter(|p| p.starts_with('/'))
        .ok_or_else(|| {
            invalid(
                OAUTHBEARER_JWKS_ENDPOINT_URL,
                format!("'{url}' is not a file:///absolute/path URL"),
            )
        })?;
    Ok(PathBuf::from(path))
}

fn read_jwks(path: &std::path::Path) -> Result<Jwks, SaslConfigError> {
    use std::io::Read as _;
    let file_error = |error| SaslConfigError::JwksFile {
        path: path.display().to_string(),
        error,
    };
    let file = std::fs::File::open(path).map_err(file_error)?;
    let mut bytes = Vec::new();
    file.take(JWKS_SIZE_BYTES_MAX as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(file_error)?;
    Ok(Jwks::parse(&bytes)?)
}

impl SaslConfig {
    /// The SASL configuration of listener `listener_name` (e.g. `SASL_SSL`) from the broker's
    /// settings (Kafka names). Reads the JWKS file when OAUTHBEARER is enabled.
    pub fn from_settings(
        settings: &BTreeMap<String, String>,
        listener_name: &str,
    ) -> Result<Self, SaslConfigError> {
        let lookup = Lookup {
            settings,
            listener: listener_name.to_ascii_lowercase(),
        };
        let names = lookup
            .get(SASL_ENABLED_MECHANISMS, None)
            .unwrap_or(DEFAULT_ENABLED_MECHANISMS);
        let mut enabled_mechanisms = Vec::new();
        for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let mechanism = parse_mechanism(SASL_ENABLED_MECHANISMS, name)?;
            if !enabled_mechanisms.contains(&mechanism) {
                enabled_mechanisms.push(mechanism);
            }
        }
        if enabled_mechanisms.is_empty() {
            return Err(invalid(
                SASL_ENABLED_MECHANISMS,
                "no SASL mechanism enabled",
            ));
        }
        let mut jaas = BTreeMap::new();
        for mechanism in Mechanism::ALL {
            if let Some(text) = lookup.get(SASL_JAAS_CONFIG, Some(mechanism)) {
                jaas.insert(mechanism, JaasConfig::parse(text)?);
            }
        }
        let plain_users = jaas
            .get(&Mechanism::Plain)
            .map(|config| PlainUsers::new(config.plain_users()))
            .unwrap_or_default();
        let inter_broker_mechanism = parse_mechanism(
            SASL_MECHANISM_INTER_BROKER_PROTOCOL,
            lookup
                .get(SASL_MECHANISM_INTER_BROKER_PROTOCOL, None)
                .unwrap_or(DEFAULT_INTER_BROKER_MECHANISM),
        )?;
        let mut connections_max_reauth_ms = BTreeMap::new();
        for &mechanism in &enabled_mechanisms {
            let ms: i64 = lookup.number(CONNECTIONS_MAX_REAUTH_MS, Some(mechanism), 0)?;
            if ms < 0 {
                return Err(invalid(CONNECTIONS_MAX_REAUTH_MS, "must be >= 0"));
            }
            connections_max_reauth_ms.insert(mechanism, ms);
        }
        let max_receive_size_bytes: usize = lookup.number(
            SASL_SERVER_MAX_RECEIVE_SIZE,
            None,
            DEFAULT_MAX_RECEIVE_SIZE_BYTES,
        )?;
        if max_receive_size_bytes == 0 {
            return Err(invalid(SASL_SERVER_MAX_RECEIVE_SIZE, "must be > 0"));
        }

        let mut oauthbearer = None;
        let mut jwks_path = None;
        if enabled_mechanisms.contains(&Mechanism::OAuthBearer) {
            let oauth = Some(Mechanism::OAuthBearer);
            let url = lookup
                .get(OAUTHBEARER_JWKS_ENDPOINT_URL, oauth)
                .ok_or_else(|| {
                    invalid(
                        OAUTHBEARER_JWKS_ENDPOINT_URL,
                        "required when OAUTHBEARER is enabled (file:///path/to/jwks.json)",
                    )
                })?;
            let path = jwks_file_path(url)?;
            let clock_skew_s: i64 =
                lookup.number(OAUTHBEARER_CLOCK_SKEW_SECONDS, oauth, DEFAULT_CLOCK_SKEW_S)?;
            if clock_skew_s < 0 {
                return Err(invalid(OAUTHBEARER_CLOCK_SKEW_SECONDS, "must be >= 0"));
            }
            let settings = JwtValidatorSettings {
                expected_issuer: lookup
                    .get(OAUTHBEARER_EXPECTED_ISSUER, oauth)
                    .map(str::to_string),
                expected_audiences: lookup
                    .get(OAUTHBEARER_EXPECTED_AUDIENCE, oauth)
                    .map(|list| {
                        list.split(',')
                            .map(str::trim)
                            .filter(|a| !a.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
                sub_claim_name: lookup
                    .get(OAUTHBEARER_SUB_CLAIM_NAME, oauth)
                    .unwrap_or("sub")
                    .to_string(),
                scope_claim_name: lookup
                    .get(OAUTHBEARER_SCOPE_CLAIM_NAME, oauth)
                    .unwrap_or("scope")
                    .to_string(),
                clock_skew_s,
            };
            let jwks = read_jwks(&path)?;
            oauthbearer = Some(Arc::new(JwtValidator::new(settings, jwks)));
            jwks_path = Some(path);
        }

        let mut scram_secret = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut scram_secret)
            .map_err(|_| invalid(SASL_ENABLED_MECHANISMS, "no random source"))?;
        Ok(Self {
            listener_name: listener_name.to_string(),
            enabled_mechanisms,
            plain_users: Arc::new(plain_users),
            jaas,
            inter_broker_mechanism,
            connections_max_reauth_ms,
            max_receive_size_bytes,
            oauthbearer,
            jwks_path,
            scram_secret,
        })
    }

    /// Reads the JWKS file again (on `ssl.reload.check.interval.ms`); a broken file keeps the
    /// old keys and returns the error.
    pub fn reload_jwks(&self) -> Result<(), SaslConfigError> {
        if let (Some(validator), Some(path)) = (&self.oauthbearer, &self.jwks_path) {
            validator.replace_jwks(read_jwks(path)?);
        }
        Ok(())
    }

    pub fn is_enabled(&self, mechanism: Mechanism) -> bool {
        self.enabled_mechanisms.contains(&mechanism)
    }

    /// `connections.max.reauth.ms` of `mechanism` (0 = off).
    pub fn reauth_ms(&self, mechanism: Mechanism) -> i64 {
        self.connections_max_reauth_ms
            .get(&mechanism)
            .copied()
            .unwrap_or(0)
    }

    /// The inter-broker client's mechanism, user name and password (the JAAS `username` and
    /// `password` of `sasl.mechanism.inter.broker.protocol`).
    pub fn client_credentials(&self) -> Option<(Mechanism, &str, &str)> {
        let mechanism = self.inter_broker_mechanism;
        let jaas = self.jaas.get(&mechanism)?;
        Some((mechanism, jaas.username()?, jaas.password()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults() {
        let config = SaslConfig::from_settings(&BTreeMap::new(), "SASL_SSL").unwrap();
        assert_eq!(
            config.enabled_mechanisms,
            vec![
                Mechanism::Plain,
                Mechanism::ScramSha256,
                Mechanism::ScramSha512
            ]
        );
        assert_eq!(config.max_receive_size_bytes, 524_288);
        assert_eq!(config.reauth_ms(Mechanism::Plain), 0);
        assert_eq!(config.inter_broker_mechanism, Mechanism::Plain);
        assert!(config.plain_users.is_empty());
        assert!(config.oauthbearer.is_none());
        assert!(config.client_credentials().is_none());
        assert!(!format!("{config:?}").contains("scram_secret"));
    }

    #[test]
    fn listener_and_mechanism_overrides_win() {
        let config = SaslConfig::from_settings(
            &settings(&[
                ("sasl.enabled.mechanisms", "PLAIN"),
                ("listener.name.internal.sasl.enabled.mechanisms", "SCRAM-SHA-512, PLAIN"),
                ("sasl.jaas.config", "a.B required username=\"g\" password=\"gp\" user_g=\"gp\";"),
                ("listener.name.internal.plain.sasl.jaas.config", "org.apache.kafka.common.security.plain.PlainLoginModule required username=\"broker\" password=\"bp\" user_broker=\"bp\" user_alice=\"ap\";"),
                ("connections.max.reauth.ms", "1000"),
                ("listener.name.internal.scram-sha-512.connections.max.reauth.ms", "5000"),
                ("sasl.server.max.receive.size", "1024"),
            ]),
            "INTERNAL",
        )
        .unwrap();
        assert_eq!(
            config.enabled_mechanisms,
            vec![Mechanism::ScramSha512, Mechanism::Plain]
        );
        assert_eq!(config.plain_users.len(), 2);
        assert!(config.plain_users.authenticate("alice", b"ap"));
        assert!(!config.plain_users.authenticate("g", b"gp"));
        assert_eq!(
            config.client_credentials(),
            Some((Mechanism::Plain, "broker", "bp"))
        );
        assert_eq!(config.reauth_ms(Mechanism::Plain), 1000);
        assert_eq!(config.reauth_ms(Mechanism::ScramSha512), 5000);
        assert_eq!(config.max_receive_size_bytes, 1024);
        let debug = format!("{config:?}");
        assert!(!debug.contains("bp") && !debug.contains("gp"), "{debug}");
        // The SCRAM mechanism falls back to the global JAAS for client credentials.
        assert_eq!(config.jaas[&Mechanism::ScramSha512].username(), Some("g"));
    }

    #[test]
    fn refuses_bad_settings() {
        for pairs in [
            &[("sasl.enabled.mechanisms", "GSSAPI")][..],
            &[("sasl.enabled.mechanisms", " , ")],
            &[("sasl.jaas.config", "broken")],
            &[("connections.max.reauth.ms", "-1")],
            &[("connections.max.reauth.ms", "x")],
            &[("sasl.server.max.receive.size", "0")],
            &[("sasl.mechanism.inter.broker.protocol", "GSSAPI")],
            &[("sasl.enabled.mechanisms", "OAUTHBEARER")],
            &[
                ("sasl.enabled.mechanisms", "OAUTHBEARER"),
                ("sasl.oauthbearer.jwks.endpoint.url", "https://idp/jwks"),
            ],
            &[
                ("sasl.enabled.mechanisms", "OAUTHBEARER"),
                (
                    "sasl.oauthbearer.jwks.endpoint.url",
                    "file:///nonexistent/jwks.json",
                ),
            ],
        ] {
            assert!(
                SaslConfig::from_settings(&settings(pairs), "SASL_PLAINTEXT").is_err(),
                "{pairs:?}"
            );
        }
        let error = jwks_file_path("https://idp/jwks").unwrap_err().to_string();
        assert!(error.contains("not supported"), "{error}");
    }

    #[test]
    fn oauthbearer_reads_and_reloads_its_jwks_file() {
        let keys = super::super::jwt::tests::Keys::new();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        std::fs::write(&path, keys.jwks_json()).unwrap();
        let url = format!("file://{}", path.display());
        let config = SaslConfig::from_settings(
            &settings(&[
                ("sasl.enabled.mechanisms", "OAUTHBEARER"),
                ("sasl.oauthbearer.jwks.endpoint.url", &url),
                ("sasl.oauthbearer.expected.audience", "a, b"),
                ("sasl.oauthbearer.clock.skew.seconds", "5"),
            ]),
            "SASL_SSL",
        )
        .unwrap();
        let validator = config.oauthbearer.clone().unwrap();
        assert_eq!(validator.settings.expected_audiences, vec!["a", "b"]);
        assert_eq!(validator.settings.clock_skew_s, 5);
        assert_eq!(validator.jwks().keys.len(), 3);
        std::fs::write(&path, r#"{"keys":[]}"#).unwrap();
        config.reload_jwks().unwrap();
        assert!(validator.jwks().keys.is_empty());
        std::fs::write(&path, "broken").unwrap();
        assert!(config.reload_jwks().is_err());
        assert!(validator.jwks().keys.is_empty());
    }
}
