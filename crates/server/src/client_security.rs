//! How the CLI's client (admin commands, produce, consume) reaches a secured listener: `--command-config FILE`, a properties
//! file as Kafka's tools (`kafka-acls.sh --command-config`) and librdkafka take it, e.g. what
//! `fjord serve --secure` prints:
//!
//! ```text
//! security.protocol=SASL_SSL
//! sasl.mechanism=SCRAM-SHA-512            (librdkafka: sasl.mechanisms)
//! sasl.username=admin                     (or Java's sasl.jaas.config=...ScramLoginModule required username="admin" password="...";)
//! sasl.password=...
//! ssl.ca.location=/path/ca.crt            (or ssl.truststore.location, PEM)
//! ```
//!
//! TLS uses the same rustls client code as the inter-broker client (`tls::client_config`), with
//! the server's host name checked unless `ssl.endpoint.identification.algorithm` is empty.
//! SASL runs the broker's `SaslClientAuthenticator` (PLAIN, SCRAM-SHA-256/512) right after the
//! connection is made.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use anyhow::{anyhow, bail, Context, Result};
use fjord_broker::security::sasl::jaas::JaasConfig;
use fjord_broker::security::sasl::Mechanism;
use fjord_broker::security::SecurityProtocol;
use fjord_broker::BrokerConfig;

/// What the CLI's connections use; set once from `--command-config`, PLAINTEXT otherwise.
static CLIENT_SECURITY: OnceLock<ClientSecurity> = OnceLock::new();

/// A client's transport and authentication.
#[derive(Clone)]
pub struct ClientSecurity {
    pub protocol: SecurityProtocol,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Mechanism, user name, password.
    pub sasl: Option<(Mechanism, String, String)>,
}

impl std::fmt::Debug for ClientSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSecurity")
            .field("protocol", &self.protocol)
            .field("tls", &self.tls.is_some())
            .field("sasl", &self.sasl.as_ref().map(|(m, user, _)| (m, user)))
            .finish()
    }
}

impl ClientSecurity {
    pub fn plaintext() -> Self {
        Self {
            protocol: SecurityProtocol::Plaintext,
            tls: None,
            sasl: None,
        }
    }

    /// Reads a properties file (`key=value` lines, `#` and `!` comments).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading --command-config {}", path.display()))?;
        Self::from_properties(&parse_properties(&text))
            .with_context(|| format!("in --command-config {}", path.display()))
    }

    pub fn from_properties(properties: &BTreeMap<String, String>) -> Result<Self> {
        let get = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| properties.get(*k))
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let protocol_name = get(&["security.protocol"]).unwrap_or_else(|| "PLAINTEXT".into());
        let protocol = SecurityProtocol::parse(&protocol_name).ok_or_else(|| {
            anyhow!("security.protocol={protocol_name}: not a Kafka security protocol")
        })?;
        let tls = if protocol.uses_tls() {
            Some(tls_config(properties, &get)?)
        } else {
            None
        };
        let sasl = if protocol.uses_sasl() {
            let mechanism_name =
                get(&["sasl.mechanism", "sasl.mechanisms"]).unwrap_or_else(|| "PLAIN".into());
            let mechanism = Mechanism::parse(&mechanism_name)
                .filter(|m| *m != Mechanism::OAuthBearer)
                .ok_or_else(|| {
                    anyhow!("sasl.mechanism={mechanism_name}: the CLI supports PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512")
                })?;
            let (user, password) = match (get(&["sasl.username"]), get(&["sasl.password"])) {
                (Some(user), Some(password)) => (user, password),
                _ => {
                    let jaas = get(&["sasl.jaas.config"]).ok_or_else(|| {
                        anyhow!("SASL needs sasl.username and sasl.password (or sasl.jaas.config)")
                    })?;
                    let jaas =
                        JaasConfig::parse(&jaas).map_err(|e| anyhow!("sasl.jaas.config: {e}"))?;
                    match (jaas.username(), jaas.password()) {
                        (Some(user), Some(password)) => (user.to_string(), password.to_string()),
                        _ => bail!("sasl.jaas.config has no username and password"),
                    }
                }
            };
            Some((mechanism, user, password))
        } else {
            None
        };
        Ok(Self {
            protocol,
            tls,
            sasl,
        })
    }

    /// Installs this as what every CLI connection uses. Once per process.
    pub fn install(self) {
        let _ = CLIENT_SECURITY.set(self);
    }

    /// What CLI connections use (PLAINTEXT unless `--command-config` said otherwise).
    pub fn current() -> ClientSecurity {
        CLIENT_SECURITY
            .get()
            .cloned()
            .unwrap_or_else(ClientSecurity::plaintext)
    }

    /// Wraps a connected socket in TLS when the protocol says so (the handshake completes on
    /// first use; errors surface there).
    pub fn wrap(&self, stream: TcpStream, host: &str) -> Result<Box<dyn ReadWrite>> {
        let Some(config) = &self.tls else {
            return Ok(Box::new(stream));
        };
        let name = rustls::pki_types::ServerName::try_from(
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
        )
        .map_err(|e| anyhow!("bad TLS server name {host}: {e}"))?;
        let connection =
            rustls::ClientConnection::new(config.clone(), name).map_err(|e| anyhow!("TLS: {e}"))?;
        Ok(Box::new(rustls::StreamOwned::new(connection, stream)))
    }
}

/// A blocking byte stream: a TCP socket, or TLS over one.
pub trait ReadWrite: Read + Write + Send {}
impl<T: Read + Write + Send> ReadWrite for T {}

/// The rustls client config for the given properties, built by the broker's own TLS code over
/// a one-listener config that holds the translated keys.
fn tls_config(
    properties: &BTreeMap<String, String>,
    get: &dyn Fn(&[&str]) -> Option<String>,
) -> Result<Arc<rustls::ClientConfig>> {
    let mut settings = BTreeMap::new();
    settings.insert("listen".to_string(), "CLIENT://127.0.0.1:0".to_string());
    settings.insert(
        "listener.security.protocol.map".to_string(),
        "CLIENT:SSL".to_string(),
    );
    let truststore = get(&["ssl.ca.location", "ssl.truststore.location"]).ok_or_else(|| {
        anyhow!("TLS needs the CA: ssl.ca.location (librdkafka) or ssl.truststore.location (PEM)")
    })?;
    settings.insert("ssl.truststore.location".to_string(), truststore);
    if let Some(keystore) = get(&["ssl.keystore.location"]) {
        settings.insert("ssl.keystore.location".to_string(), keystore);
    }
    if let Some(algorithm) = properties.get("ssl.endpoint.identification.algorithm") {
        settings.insert(
            "ssl.endpoint.identification.algorithm".to_string(),
            algorithm.trim().to_string(),
        );
    }
    let config = BrokerConfig::from_settings(&settings).map_err(|e| anyhow!("{e}"))?;
    crate::tls::client_config(&config, "CLIENT").map_err(|e| anyhow!("{e}"))
}

/// Java properties, simply: `key=value` or `key: value` lines; `#`/`!` comments.
fn parse_properties(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#') && !line.starts_with('!'))
        .filter_map(|line| {
            let split = line.find(['=', ':'])?;
            Some((
                line[..split].trim().to_string(),
                line[split + 1..].trim().to_string(),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_in_librdkafka_and_java_spelling() {
        let librdkafka = parse_properties(
            "# printed by fjord serve --secure\nsecurity.protocol=SASL_PLAINTEXT\nsasl.mechanisms=SCRAM-SHA-512\nsasl.username=admin\nsasl.password=p=w\n",
        );
        let security = ClientSecurity::from_properties(&librdkafka).unwrap();
        assert_eq!(security.protocol, SecurityProtocol::SaslPlaintext);
        assert_eq!(
            security.sasl,
            Some((Mechanism::ScramSha512, "admin".into(), "p=w".into()))
        );
        let java = parse_properties(
            "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\nsasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"bob\" password=\"secret\";\n",
        );
        let security = ClientSecurity::from_properties(&java).unwrap();
        assert_eq!(
            security.sasl,
            Some((Mechanism::Plain, "bob".into(), "secret".into()))
        );
        assert!(format!("{security:?}").contains("bob"));
        assert!(!format!("{security:?}").contains("secret"));
    }

    #[test]
    fn tls_needs_a_ca_and_bad_values_are_refused() {
        let ssl = parse_properties("security.protocol=SSL\n");
        let err = ClientSecurity::from_properties(&ssl).unwrap_err();
        assert!(err.to_string().contains("ssl.ca.location"), "{err}");
        let bad = parse_properties("security.protocol=TLS\n");
        assert!(ClientSecurity::from_properties(&bad).is_err());
        let oauth = parse_properties(
            "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=OAUTHBEARER\nsasl.username=a\nsasl.password=b\n",
        );
        assert!(ClientSecurity::from_properties(&oauth).is_err());
    }
}
