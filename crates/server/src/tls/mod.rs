//! TLS for the Kafka listeners and for the inter-broker client (issue 9,
//! `docs/security-design.md` section 3), on `rustls` with the ring provider.
//!
//! * [`ListenerTls`]: a listener's server side: keystore (PEM: key and chain), truststore (the
//!   CAs client certificates must chain to), `ssl.client.auth`, `ssl.enabled.protocols`,
//!   `ssl.cipher.suites`, `ssl.principal.mapping.rules`. Every key may be overridden per
//!   listener (`listener.name.<name>.ssl.*`, see `BrokerConfig::listener_setting`). The
//!   keystore and truststore files are checked every `ssl.reload.check.interval.ms`
//!   ([`ListenerTls::check_reload`]): new connections get the new pair once it loads; a broken
//!   file keeps the old one and logs an error (Kafka reloads through a dynamic config update;
//!   Fjord watches the files).
//! * [`client_config`]: the client config of the inter-broker listener and of the controller
//!   listener (truststore, keystore as client certificate,
//!   `ssl.endpoint.identification.algorithm`).
//!
//! PEM only: JKS and PKCS12 (`ssl.keystore.type`), encrypted keys (`ssl.key.password`) are
//! refused with a message saying so. A missing or bad file, or a key that does not belong to
//! the certificate, stops the broker at start naming the setting and the file.

pub mod principal;

use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fjord_broker::security::KafkaPrincipal;
use fjord_broker::BrokerConfig;
use parking_lot::{Mutex, RwLock};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};
use tracing::{debug, error, info};

pub use principal::SslPrincipalMapper;

/// How long a TLS handshake may take before the connection is closed (Kafka bounds it by
/// the connection's idle and request timeouts; Fjord closes a slow or garbage handshake
/// early so it holds a connection slot no longer than this).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest keystore or truststore file read.
const PEM_FILE_BYTES_MAX: u64 = 4 << 20;

/// What is wrong with a listener's TLS settings or files.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("`{key}`: cannot read {path}: {reason}")]
    Read {
        key: String,
        path: String,
        reason: String,
    },
    #[error("`{key}` ({source_name}): {reason}")]
    BadPem {
        key: String,
        source_name: String,
        reason: String,
    },
    #[error("`{key}` = {value:?}: {reason}")]
    Unsupported {
        key: String,
        value: String,
        reason: String,
    },
    #[error("listener {listener}: {reason}")]
    Missing { listener: String, reason: String },
    #[error("listener {listener}: the private key of {source_name} does not belong to its certificate ({reason})")]
    KeyMismatch {
        listener: String,
        source_name: String,
        reason: String,
    },
    #[error("listener {listener}: {reason}")]
    Rustls { listener: String, reason: String },
    #[error("`ssl.principal.mapping.rules`: {reason}")]
    PrincipalRules { reason: String },
    #[error("bad client certificate: {reason}")]
    BadPeerCertificate { reason: String },
}

/// The ring provider, with `ssl.cipher.suites` applied.
fn provider(config: &BrokerConfig, listener: &str) -> Result<CryptoProvider, TlsError> {
    let mut provider = rustls::crypto::ring::default_provider();
    let key = "ssl.cipher.suites";
    let wanted = config.listener_setting(listener, key);
    let names: Vec<String> = wanted
        .split(',')
        .map(|s| s.trim().to_ascii_uppercase())
        .filter(|s| !s.is_empty())
        .collect();
    if names.is_empty() {
        return Ok(provider);
    }
    // rustls names TLS 1.3 suites TLS13_*; Kafka (IANA) names them TLS_*.
    let iana = |suite: &rustls::SupportedCipherSuite| {
        let name = suite.suite().as_str().unwrap_or_default();
        name.strip_prefix("TLS13_")
            .map(|rest| format!("TLS_{rest}"))
            .unwrap_or_else(|| name.to_string())
    };
    for name in &names {
        if !provider.cipher_suites.iter().any(|s| &iana(s) == name) {
            return Err(TlsError::Unsupported {
                key: setting_name(config, listener, key),
                value: wanted.clone(),
                reason: format!(
                    "unknown cipher suite {name}; known: {}",
                    provider
                        .cipher_suites
                        .iter()
                        .map(iana)
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            });
        }
    }
    provider
        .cipher_suites
        .retain(|suite| names.contains(&iana(suite)));
    Ok(provider)
}

/// The setting's name as the user wrote it: the listener override if given, else the global.
fn setting_name(config: &BrokerConfig, listener: &str, key: &str) -> String {
    let scoped = format!("listener.name.{}.{key}", listener.to_ascii_lowercase());
    if config.security_settings.contains_key(&scoped) {
        scoped
    } else {
        key.to_string()
    }
}

/// `ssl.enabled.protocols`.
fn protocol_versions(
    config: &BrokerConfig,
    listener: &str,
) -> Result<Vec<&'static SupportedProtocolVersion>, TlsError> {
    let key = "ssl.enabled.protocols";
    let value = config.listener_setting(listener, key);
    let mut versions = Vec::new();
    for name in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let version = match name {
            "TLSv1.2" => &rustls::version::TLS12,
            "TLSv1.3" => &rustls::version::TLS13,
            other => {
                return Err(TlsError::Unsupported {
                    key: setting_name(config, listener, key),
                    value: value.clone(),
                    reason: format!("{other} is not supported: TLSv1.2 and TLSv1.3 only"),
                })
            }
        };
        if !versions.contains(&version) {
            versions.push(version);
        }
    }
    if versions.is_empty() {
        return Err(TlsError::Unsupported {
            key: setting_name(config, listener, key),
            value,
            reason: "no protocol enabled".into(),
        });
    }
    Ok(versions)
}

/// PEM text from a file setting or an inline setting, with the name of its source for errors.
struct PemText {
    key: String,
    source_name: String,
    path: Option<PathBuf>,
    text: Vec<u8>,
}

fn read_pem_file(key: String, path: &str) -> Result<PemText, TlsError> {
    let read_error = |reason: String| TlsError::Read {
        key: key.clone(),
        path: path.to_string(),
        reason,
    };
    let size = std::fs::metadata(path)
        .map_err(|err| read_error(err.to_string()))?
        .len();
    if size > PEM_FILE_BYTES_MAX {
        return Err(read_error(format!(
            "{size} bytes is more than the {PEM_FILE_BYTES_MAX} a PEM file may have"
        )));
    }
    let text = std::fs::read(path).map_err(|err| read_error(err.to_string()))?;
    Ok(PemText {
        source_name: format!("file {path}"),
        key,
        path: Some(PathBuf::from(path)),
        text,
    })
}

/// Refuses a keystore/truststore type other than PEM.
fn check_type(config: &BrokerConfig, listener: &str, key: &str) -> Result<(), TlsError> {
    let value = config.listener_setting(listener, key);
    if value.trim().eq_ignore_ascii_case("PEM") {
        return Ok(());
    }
    Err(TlsError::Unsupported {
        key: setting_name(config, listener, key),
        value,
        reason: "only PEM is supported (convert JKS/PKCS12 with keytool -importkeystore and openssl pkcs12 -nodes)".into(),
    })
}

fn pem_items(pem: &PemText) -> Result<Vec<rustls_pemfile::Item>, TlsError> {
    let bad = |reason: String| TlsError::BadPem {
        key: pem.key.clone(),
        source_name: pem.source_name.clone(),
        reason,
    };
    let as_text = String::from_utf8_lossy(&pem.text);
    if as_text.contains("ENCRYPTED PRIVATE KEY") || as_text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(bad(
            "the private key is encrypted: encrypted keys are not supported, decrypt it (openssl pkey -in enc.pem -out key.pem)".into(),
        ));
    }
    let mut reader = &pem.text[..];
    let mut items = Vec::new();
    for item in rustls_pemfile::read_all(&mut reader) {
        items.push(item.map_err(|err| bad(format!("not valid PEM: {err:?}")))?);
    }
    if items.is_empty() {
        return Err(bad(
            "no PEM sections found (only PEM is supported: JKS and PKCS12 are not)".into(),
        ));
    }
    Ok(items)
}

/// A listener's certificate chain and key.
struct Keystore {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    source_name: String,
    files: Vec<PathBuf>,
}

/// The keystore of `listener`, `None` when none is configured.
fn load_keystore(config: &BrokerConfig, listener: &str) -> Result<Option<Keystore>, TlsError> {
    check_type(config, listener, "ssl.keystore.type")?;
    let password_key = "ssl.key.password";
    if !config.listener_setting(listener, password_key).is_empty() {
        return Err(TlsError::Unsupported {
            key: setting_name(config, listener, password_key),
            value: "(hidden)".into(),
            reason: "encrypted private keys are not supported: give an unencrypted PEM key and no password".into(),
        });
    }
    let location = config.listener_setting(listener, "ssl.keystore.location");
    let chain_inline = config.listener_setting(listener, "ssl.keystore.certificate.chain");
    let key_inline = config.listener_setting(listener, "ssl.keystore.key");
    let texts: Vec<PemText> = match (
        location.is_empty(),
        chain_inline.is_empty(),
        key_inline.is_empty(),
    ) {
        (true, true, true) => return Ok(None),
        (false, true, true) => vec![read_pem_file(
            setting_name(config, listener, "ssl.keystore.location"),
            &location,
        )?],
        (true, false, false) => vec![
            PemText {
                key: setting_name(config, listener, "ssl.keystore.certificate.chain"),
                source_name: "inline PEM".into(),
                path: None,
                text: chain_inline.into_bytes(),
            },
            PemText {
                key: setting_name(config, listener, "ssl.keystore.key"),
                source_name: "inline PEM".into(),
                path: None,
                text: key_inline.into_bytes(),
            },
        ],
        _ => {
            return Err(TlsError::Missing {
                listener: listener.to_string(),
                reason: "give either ssl.keystore.location or both ssl.keystore.certificate.chain and ssl.keystore.key".into(),
            })
        }
    };
    let mut chain = Vec::new();
    let mut key = None;
    for pem in &texts {
        for item in pem_items(pem)? {
            match item {
                rustls_pemfile::Item::X509Certificate(cert) => chain.push(cert),
                rustls_pemfile::Item::Pkcs1Key(k) if key.is_none() => key = Some(k.into()),
                rustls_pemfile::Item::Pkcs8Key(k) if key.is_none() => key = Some(k.into()),
                rustls_pemfile::Item::Sec1Key(k) if key.is_none() => key = Some(k.into()),
                _ => {}
            }
        }
    }
    let first = &texts[0];
    let bad = |pem: &PemText, reason: &str| TlsError::BadPem {
        key: pem.key.clone(),
        source_name: pem.source_name.clone(),
        reason: reason.to_string(),
    };
    if chain.is_empty() {
        return Err(bad(first, "no certificate (BEGIN CERTIFICATE) found"));
    }
    let key = key.ok_or_else(|| bad(texts.last().unwrap_or(first), "no private key found"))?;
    Ok(Some(Keystore {
        chain,
        key,
        source_name: first.source_name.clone(),
        files: texts.iter().filter_map(|t| t.path.clone()).collect(),
    }))
}

/// Trusted CAs and the file they came from (none for inline PEM).
type Truststore = (Arc<RootCertStore>, Vec<PathBuf>);

/// The truststore of `listener`, `None` when none is configured.
fn load_truststore(config: &BrokerConfig, listener: &str) -> Result<Option<Truststore>, TlsError> {
    check_type(config, listener, "ssl.truststore.type")?;
    let location = config.listener_setting(listener, "ssl.truststore.location");
    let inline = config.listener_setting(listener, "ssl.truststore.certificates");
    let pem = match (location.is_empty(), inline.is_empty()) {
        (true, true) => return Ok(None),
        (false, _) => read_pem_file(
            setting_name(config, listener, "ssl.truststore.location"),
            &location,
        )?,
        (true, false) => PemText {
            key: setting_name(config, listener, "ssl.truststore.certificates"),
            source_name: "inline PEM".into(),
            path: None,
            text: inline.into_bytes(),
        },
    };
    let mut roots = RootCertStore::empty();
    for item in pem_items(&pem)? {
        if let rustls_pemfile::Item::X509Certificate(cert) = item {
            roots.add(cert).map_err(|err| TlsError::BadPem {
                key: pem.key.clone(),
                source_name: pem.source_name.clone(),
                reason: format!("not a usable CA certificate: {err}"),
            })?;
        }
    }
    if roots.is_empty() {
        return Err(TlsError::BadPem {
            key: pem.key.clone(),
            source_name: pem.source_name.clone(),
            reason: "no certificate (BEGIN CERTIFICATE) found".into(),
        });
    }
    Ok(Some((Arc::new(roots), pem.path.into_iter().collect())))
}

/// `ssl.client.auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    Requested,
    Required,
}

fn client_auth(config: &BrokerConfig, listener: &str) -> Result<ClientAuth, TlsError> {
    let key = "ssl.client.auth";
    let value = config.listener_setting(listener, key);
    match value.trim().to_ascii_lowercase().as_str() {
        "none" | "" => Ok(ClientAuth::None),
        "requested" => Ok(ClientAuth::Requested),
        "required" => Ok(ClientAuth::Required),
        _ => Err(TlsError::Unsupported {
            key: setting_name(config, listener, key),
            value,
            reason: "must be none, requested or required".into(),
        }),
    }
}

/// One load of a listener's TLS files into a server config.
fn build_server_config(
    config: &BrokerConfig,
    listener: &str,
) -> Result<(Arc<ServerConfig>, Vec<PathBuf>), TlsError> {
    let rustls_error = |err: rustls::Error| TlsError::Rustls {
        listener: listener.to_string(),
        reason: err.to_string(),
    };
    let provider = Arc::new(provider(config, listener)?);
    let versions = protocol_versions(config, listener)?;
    let keystore = load_keystore(config, listener)?.ok_or_else(|| TlsError::Missing {
        listener: listener.to_string(),
        reason: "a TLS listener needs ssl.keystore.location (or ssl.keystore.certificate.chain and ssl.keystore.key)".into(),
    })?;
    let mut files = keystore.files.clone();
    // The key must sign for the certificate: refuse a mismatched pair at start.
    let signing_key = provider
        .key_provider
        .load_private_key(keystore.key.clone_key())
        .map_err(|err| TlsError::BadPem {
            key: setting_name(config, listener, "ssl.keystore.location"),
            source_name: keystore.source_name.clone(),
            reason: format!("unusable private key: {err}"),
        })?;
    let certified = rustls::sign::CertifiedKey::new(keystore.chain.clone(), signing_key);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(err) => {
            return Err(TlsError::KeyMismatch {
                listener: listener.to_string(),
                source_name: keystore.source_name.clone(),
                reason: err.to_string(),
            })
        }
    }
    let auth = client_auth(config, listener)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(rustls_error)?;
    let builder = match auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Requested | ClientAuth::Required => {
            let (roots, trust_files) =
                load_truststore(config, listener)?.ok_or_else(|| TlsError::Missing {
                    listener: listener.to_string(),
                    reason: "ssl.client.auth needs the client CAs in ssl.truststore.location (or ssl.truststore.certificates)".into(),
                })?;
            files.extend(trust_files);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
            let verifier = if auth == ClientAuth::Requested {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier.build().map_err(|err| TlsError::Rustls {
                listener: listener.to_string(),
                reason: err.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let server = builder
        .with_single_cert(keystore.chain, keystore.key)
        .map_err(rustls_error)?;
    Ok((Arc::new(server), files))
}

/// A digest of the watched files' contents (`None` for one that cannot be read).
fn fingerprint(files: &[PathBuf]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for file in files {
        file.hash(&mut hasher);
        std::fs::read(file).ok().hash(&mut hasher);
    }
    hasher.finish()
}

/// What [`ListenerTls::check_reload`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum ReloadOutcome {
    Unchanged,
    Reloaded,
    /// The files changed but did not load; the old config stays.
    Failed(String),
}

/// A TLS listener's server side.
pub struct ListenerTls {
    listener: String,
    config: BrokerConfig,
    mapper: SslPrincipalMapper,
    client_auth: ClientAuth,
    current: RwLock<Arc<ServerConfig>>,
    /// The files of the current config, and their digest when last looked at.
    watched: Mutex<(Vec<PathBuf>, u64)>,
}

impl ListenerTls {
    /// Loads `listener`'s TLS settings; any error stops the broker at start.
    pub fn load(config: &BrokerConfig, listener: &str) -> Result<Self, TlsError> {
        let mapper = SslPrincipalMapper::from_rules(
            &config.listener_setting(listener, "ssl.principal.mapping.rules"),
        )?;
        let (server, files) = build_server_config(config, listener)?;
        let digest = fingerprint(&files);
        Ok(Self {
            listener: listener.to_string(),
            config: config.clone(),
            mapper,
            client_auth: client_auth(config, listener)?,
            current: RwLock::new(server),
            watched: Mutex::new((files, digest)),
        })
    }

    /// The config new connections use.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.current.read().clone()
    }

    pub fn client_auth(&self) -> ClientAuth {
        self.client_auth
    }

    /// Reloads when a watched file changed; a config that does not load keeps the old one
    /// (logged once per change).
    pub fn check_reload(&self) -> ReloadOutcome {
        let mut watched = self.watched.lock();
        let digest = fingerprint(&watched.0);
        if digest == watched.1 {
            return ReloadOutcome::Unchanged;
        }
        watched.1 = digest;
        match build_server_config(&self.config, &self.listener) {
            Ok((server, files)) => {
                *self.current.write() = server;
                watched.1 = fingerprint(&files);
                watched.0 = files;
                info!(listener = %self.listener, "TLS keystore/truststore changed: new connections use the new certificates");
                ReloadOutcome::Reloaded
            }
            Err(err) => {
                error!(listener = %self.listener, error = %err, "TLS keystore/truststore changed but does not load; keeping the previous certificates");
                ReloadOutcome::Failed(err.to_string())
            }
        }
    }

    /// Checks the files every `interval` until `shutdown` changes.
    pub async fn run_reloader(
        self: Arc<Self>,
        interval: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => return,
            }
            let this = self.clone();
            // File reads and key parsing block.
            let _ = tokio::task::spawn_blocking(move || this.check_reload()).await;
        }
    }

    /// The server side of an accepted connection on this listener: the handshake within
    /// [`HANDSHAKE_TIMEOUT`], then the client's principal ([`Self::principal`]). `None` when
    /// the connection is to be closed; why is logged (`place` names the listener kind in the
    /// message, e.g. " on the controller listener").
    pub async fn accept(
        &self,
        stream: tokio::net::TcpStream,
        peer: impl std::fmt::Debug,
        listener: &str,
        place: &str,
    ) -> Option<(
        tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
        KafkaPrincipal,
    )> {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.server_config());
        let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                info!(?peer, %listener, %error, "TLS handshake failed{place}; closing connection");
                return None;
            }
            Err(_) => {
                info!(?peer, %listener, timeout_ms = HANDSHAKE_TIMEOUT.as_millis() as u64,
                    "TLS handshake timed out{place}; closing connection");
                return None;
            }
        };
        match self.principal(stream.get_ref().1.peer_certificates()) {
            Ok(principal) => {
                debug!(?peer, %listener, %principal, "TLS connection established{place}");
                Some((stream, principal))
            }
            Err(error) => {
                info!(?peer, %listener, %error, "TLS client refused{place}; closing connection");
                None
            }
        }
    }

    /// The principal of a connection whose handshake presented `peer_certificates`:
    /// `User:<mapped subject>`, `User:ANONYMOUS` without a certificate. `Err` when no mapping
    /// rule applies (the connection is closed, as Kafka fails the authentication).
    pub fn principal(
        &self,
        peer_certificates: Option<&[CertificateDer<'_>]>,
    ) -> Result<KafkaPrincipal, TlsError> {
        let Some(leaf) = peer_certificates.and_then(|certs| certs.first()) else {
            return Ok(KafkaPrincipal::anonymous());
        };
        let subject = principal::subject_rfc2253(leaf)?;
        match self.mapper.name(&subject) {
            Some(name) => Ok(KafkaPrincipal::user(name)),
            None => Err(TlsError::PrincipalRules {
                reason: format!("no rule applies to {subject}"),
            }),
        }
    }
}

/// A TCP connection to a peer node, within `timeout`, with `TCP_NODELAY` (requests are small
/// and latency-bound). `Err` says what failed, for the caller's log line.
pub async fn connect_tcp(
    address: &str,
    timeout: Duration,
) -> Result<tokio::net::TcpStream, String> {
    let stream = match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address)).await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return Err(format!("connect to {address}: {error}")),
        Err(_) => {
            return Err(format!(
                "connect to {address} timed out after {} ms",
                timeout.as_millis()
            ))
        }
    };
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// The client side of the TLS handshake with a peer node over `stream`, within `timeout`: the
/// server is checked against `config`'s truststore (and `server_name` when it checks hosts).
pub async fn connect_tls(
    stream: tokio::net::TcpStream,
    config: &Arc<ClientConfig>,
    server_name: &str,
    timeout: Duration,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|error| format!("bad TLS server name {server_name}: {error}"))?;
    let connector = tokio_rustls::TlsConnector::from(config.clone());
    match tokio::time::timeout(timeout, connector.connect(name, stream)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(error)) => Err(format!("TLS handshake failed: {error}")),
        Err(_) => Err("TLS handshake timed out".to_string()),
    }
}

/// The client TLS config a node dials `listener` of its peers with (the inter-broker listener,
/// or the controller listener): its truststore (required), keystore as client certificate
/// (when configured) and host name check (`ssl.endpoint.identification.algorithm`: `https` or
/// empty). `listener` need not be one of `listeners`: the settings resolve by name.
pub fn client_config(config: &BrokerConfig, listener: &str) -> Result<Arc<ClientConfig>, TlsError> {
    let rustls_error = |err: rustls::Error| TlsError::Rustls {
        listener: listener.to_string(),
        reason: err.to_string(),
    };
    let provider = Arc::new(provider(config, listener)?);
    let versions = protocol_versions(config, listener)?;
    let (roots, _) = load_truststore(config, listener)?.ok_or_else(|| TlsError::Missing {
        listener: listener.to_string(),
        reason: "nodes dial this listener over TLS: they need its CA in ssl.truststore.location (or ssl.truststore.certificates)".into(),
    })?;
    let key = "ssl.endpoint.identification.algorithm";
    let check_host = match config.listener_setting(listener, key).trim() {
        "" => false,
        algorithm if algorithm.eq_ignore_ascii_case("https") => true,
        other => {
            return Err(TlsError::Unsupported {
                key: setting_name(config, listener, key),
                value: other.to_string(),
                reason: "must be https or empty".into(),
            })
        }
    };
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|err| TlsError::Rustls {
                listener: listener.to_string(),
                reason: err.to_string(),
            })?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(rustls_error)?;
    let builder = if check_host {
        builder.with_webpki_verifier(verifier)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoHostnameCheck(verifier)))
    };
    let client = match load_keystore(config, listener)? {
        Some(keystore) => builder
            .with_client_auth_cert(keystore.chain, keystore.key)
            .map_err(rustls_error)?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(client))
}

/// `ssl.endpoint.identification.algorithm=` (empty): the chain is checked, the host name is
/// not (Kafka's behaviour with the algorithm disabled).
#[derive(Debug)]
struct NoHostnameCheck(Arc<rustls::client::WebPkiServerVerifier>);

impl rustls::client::danger::ServerCertVerifier for NoHostnameCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
pub(crate) mod tests;
