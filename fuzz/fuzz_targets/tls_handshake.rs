//! TLS handshake bytes from an untrusted client (issue 9): arbitrary input fed to a rustls
//! server configured the way Fjord's TLS listeners are (ring provider, TLS 1.2 and 1.3, client
//! certificates requested and checked against a CA). Nothing may panic, and no input may
//! complete a handshake that presents a client certificate the CA did not sign.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

fn server_config() -> Arc<rustls::ServerConfig> {
    static CONFIG: OnceLock<Arc<rustls::ServerConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let key = rcgen::KeyPair::generate().expect("key");
            let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
                .expect("params")
                .self_signed(&key)
                .expect("certificate");
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut roots = rustls::RootCertStore::empty();
            roots.add(cert.der().clone()).expect("root");
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .allow_unauthenticated()
                    .build()
                    .expect("verifier");
            let config = rustls::ServerConfig::builder_with_provider(provider)
                .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
                .expect("versions")
                .with_client_cert_verifier(verifier)
                .with_single_cert(
                    vec![CertificateDer::from(cert.der().to_vec())],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
                )
                .expect("server config");
            Arc::new(config)
        })
        .clone()
}

fuzz_target!(|data: &[u8]| {
    let Ok(mut connection) = rustls::ServerConnection::new(server_config()) else {
        return;
    };
    let mut input = data;
    let mut output = Vec::new();
    // Bounded: each round consumes input or stops.
    for _ in 0..64 {
        match connection.read_tls(&mut input) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if connection.process_new_packets().is_err() {
            break;
        }
        output.clear();
        let _ = connection.write_tls(&mut output);
    }
    // Random bytes cannot forge a certificate signed by the fuzzer's own CA.
    assert!(connection.is_handshaking() || connection.peer_certificates().is_none());
});
