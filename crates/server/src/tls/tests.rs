use std::collections::BTreeMap;
use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// A test CA that issues certificates (also used by the controller listener's tests).
pub(crate) struct Ca {
    pub(crate) cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    pub(crate) fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self { cert, key }
    }

    /// `(certificate PEM, key PEM)` for `cn` with SAN localhost and 127.0.0.1.
    pub(crate) fn issue(&self, cn: &str) -> (String, String) {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "acme");
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn config(pairs: &[(&str, &str)]) -> BrokerConfig {
    let values: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    BrokerConfig::from_settings(&values).unwrap()
}

/// An SSL listener's settings with a keystore file (key then chain) and the CA as truststore.
fn ssl_settings(dir: &Path, ca: &Ca, client_auth: &str) -> BrokerConfig {
    let (cert, key) = ca.issue("broker");
    let keystore = write(dir, "keystore.pem", &format!("{key}{cert}"));
    let truststore = write(dir, "ca.pem", &ca.cert.pem());
    config(&[
        ("listen", "SSL://127.0.0.1:0"),
        ("ssl.keystore.location", &keystore),
        ("ssl.truststore.location", &truststore),
        ("ssl.client.auth", client_auth),
    ])
}

#[test]
fn a_listener_loads_and_bad_files_name_the_setting_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("ca");
    let good = ssl_settings(dir.path(), &ca, "required");
    let tls = ListenerTls::load(&good, "SSL").unwrap();
    assert_eq!(tls.client_auth(), ClientAuth::Required);

    let missing = config(&[
        ("listen", "SSL://127.0.0.1:0"),
        ("ssl.keystore.location", "/nonexistent/keystore.pem"),
    ]);
    let err = ListenerTls::load(&missing, "SSL")
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("ssl.keystore.location") && err.contains("/nonexistent/keystore.pem"),
        "{err}"
    );

    let garbage = write(dir.path(), "garbage.pem", "not pem at all");
    let err = ListenerTls::load(
        &config(&[
            ("listen", "SSL://127.0.0.1:0"),
            ("listener.name.ssl.ssl.keystore.location", &garbage),
        ]),
        "SSL",
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("listener.name.ssl.ssl.keystore.location") && err.contains(&garbage),
        "{err}"
    );

    // A key of another certificate.
    let (cert, _) = ca.issue("a");
    let (_, other_key) = ca.issue("b");
    let mismatched = write(dir.path(), "mismatch.pem", &format!("{other_key}{cert}"));
    let err = ListenerTls::load(
        &config(&[
            ("listen", "SSL://127.0.0.1:0"),
            ("ssl.keystore.location", &mismatched),
        ]),
        "SSL",
    )
    .err()
    .unwrap();
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");

    let encrypted = write(
        dir.path(),
        "enc.pem",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
    );
    let err = ListenerTls::load(
        &config(&[
            ("listen", "SSL://127.0.0.1:0"),
            ("ssl.keystore.location", &encrypted),
        ]),
        "SSL",
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("encrypted"), "{err}");

    for (key, value) in [
        ("ssl.keystore.type", "JKS"),
        ("ssl.key.password", "secret"),
        ("ssl.enabled.protocols", "TLSv1.1"),
        ("ssl.client.auth", "sometimes"),
        ("ssl.cipher.suites", "TLS_NOPE"),
    ] {
        let mut values: BTreeMap<String, String> = good.explicit_settings.clone();
        values.insert(key.to_string(), value.to_string());
        let config = BrokerConfig::from_settings(&values).unwrap();
        let err = ListenerTls::load(&config, "SSL").err().unwrap().to_string();
        assert!(err.contains(key), "{key}: {err}");
    }
    // mTLS without a truststore.
    let mut values = good.explicit_settings.clone();
    values.remove("ssl.truststore.location");
    let err = ListenerTls::load(&BrokerConfig::from_settings(&values).unwrap(), "SSL")
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("truststore"), "{err}");
}

#[test]
fn inline_pem_and_cipher_suite_filters_load() {
    let ca = Ca::new("ca");
    let (cert, key) = ca.issue("broker");
    let config = config(&[
        ("listen", "SSL://127.0.0.1:0"),
        ("ssl.keystore.certificate.chain", &cert),
        ("ssl.keystore.key", &key),
        ("ssl.enabled.protocols", "TLSv1.3"),
        ("ssl.cipher.suites", "TLS_AES_128_GCM_SHA256"),
    ]);
    let tls = ListenerTls::load(&config, "SSL").unwrap();
    assert_eq!(tls.server_config().crypto_provider().cipher_suites.len(), 1);
}

#[test]
fn changed_files_reload_and_broken_ones_keep_the_old_config() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("ca");
    let config = ssl_settings(dir.path(), &ca, "none");
    let tls = ListenerTls::load(&config, "SSL").unwrap();
    let first = tls.server_config();
    assert_eq!(tls.check_reload(), ReloadOutcome::Unchanged);
    assert!(Arc::ptr_eq(&first, &tls.server_config()));

    let (cert, key) = Ca::new("new ca").issue("broker");
    write(dir.path(), "keystore.pem", &format!("{key}{cert}"));
    assert_eq!(tls.check_reload(), ReloadOutcome::Reloaded);
    let second = tls.server_config();
    assert!(!Arc::ptr_eq(&first, &second));

    write(
        dir.path(),
        "keystore.pem",
        "-----BEGIN CERTIFICATE-----\ngarbage",
    );
    assert!(matches!(tls.check_reload(), ReloadOutcome::Failed(_)));
    assert!(Arc::ptr_eq(&second, &tls.server_config()));
    // Logged once: the same broken file is not reloaded again.
    assert_eq!(tls.check_reload(), ReloadOutcome::Unchanged);
}

/// Runs one handshake over an in-memory pipe; returns the server's view of the principal.
async fn handshake(
    tls: &ListenerTls,
    client: Arc<rustls::ClientConfig>,
) -> Result<KafkaPrincipal, String> {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config());
    let connector = tokio_rustls::TlsConnector::from(client);
    let name = ServerName::try_from("localhost").unwrap();
    let server = async {
        let mut stream = acceptor
            .accept(server_io)
            .await
            .map_err(|e| e.to_string())?;
        let principal = tls
            .principal(stream.get_ref().1.peer_certificates())
            .map_err(|e| e.to_string())?;
        let mut byte = [0u8; 1];
        stream
            .read_exact(&mut byte)
            .await
            .map_err(|e| e.to_string())?;
        stream.write_all(&byte).await.map_err(|e| e.to_string())?;
        stream.flush().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(principal)
    };
    let client = async {
        let mut stream = connector
            .connect(name, client_io)
            .await
            .map_err(|e| e.to_string())?;
        stream.write_all(b"x").await.map_err(|e| e.to_string())?;
        stream.flush().await.map_err(|e| e.to_string())?;
        let mut byte = [0u8; 1];
        stream
            .read_exact(&mut byte)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(())
    };
    let (server, client) = tokio::join!(server, client);
    client?;
    server
}

#[tokio::test]
async fn mtls_maps_the_client_subject_and_refuses_strangers() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("ca");
    let server_config = ssl_settings(dir.path(), &ca, "required");
    let mut values = server_config.explicit_settings.clone();
    values.insert(
        "ssl.principal.mapping.rules".into(),
        "RULE:^CN=(.*?),O=acme$/$1/U,DEFAULT".into(),
    );
    let tls = ListenerTls::load(&BrokerConfig::from_settings(&values).unwrap(), "SSL").unwrap();

    // A client with a certificate of the same CA (the broker's own keystore: CN=broker).
    let client = client_config(&server_config, "SSL").unwrap();
    assert_eq!(
        handshake(&tls, client).await.unwrap(),
        KafkaPrincipal::user("BROKER")
    );
    // No client certificate: refused with ssl.client.auth=required.
    let truststore = write(dir.path(), "only-ca.pem", &ca.cert.pem());
    let anonymous = client_config(
        &config(&[
            ("listen", "SSL://127.0.0.1:0"),
            ("ssl.truststore.location", &truststore),
        ]),
        "SSL",
    )
    .unwrap();
    assert!(handshake(&tls, anonymous.clone()).await.is_err());
    // A certificate of another CA: refused.
    let stranger = Ca::new("stranger");
    let (cert, key) = stranger.issue("mallory");
    let keystore = write(dir.path(), "stranger.pem", &format!("{key}{cert}"));
    let foreign = client_config(
        &config(&[
            ("listen", "SSL://127.0.0.1:0"),
            ("ssl.truststore.location", &truststore),
            ("ssl.keystore.location", &keystore),
        ]),
        "SSL",
    )
    .unwrap();
    assert!(handshake(&tls, foreign).await.is_err());
    // requested: no certificate is fine and anonymous.
    let requested = ListenerTls::load(&ssl_settings(dir.path(), &ca, "requested"), "SSL").unwrap();
    assert_eq!(
        handshake(&requested, anonymous).await.unwrap(),
        KafkaPrincipal::anonymous()
    );
}

#[tokio::test]
async fn the_client_checks_the_server_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("ca");
    let tls = ListenerTls::load(&ssl_settings(dir.path(), &ca, "none"), "SSL").unwrap();
    let other = Ca::new("other");
    let untrusted = write(dir.path(), "other.pem", &other.cert.pem());
    let client = client_config(
        &config(&[
            ("listen", "SSL://127.0.0.1:0"),
            ("ssl.truststore.location", &untrusted),
        ]),
        "SSL",
    )
    .unwrap();
    assert!(handshake(&tls, client).await.is_err());
    // Without a truststore the inter-broker client cannot be built.
    assert!(client_config(&config(&[("listen", "SSL://127.0.0.1:0")]), "SSL").is_err());
}
