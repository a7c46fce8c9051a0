//! `fjord serve --secure`: a secured broker in one step (issue 9).
//!
//! On first use this creates, in `<data.dir>/security/`, a certificate authority, a broker
//! certificate signed by it (for `localhost`, `127.0.0.1`, `::1` and the advertised host), and
//! a password for the `admin` user; later starts reuse them, so clients configured once keep
//! working. The broker then runs one SASL_SSL listener with SCRAM, the authorizer on and
//! `User:admin` as the only super user; [`SecureSetup::client_settings_text`] is what it prints
//! for librdkafka, kafka-python and the Java client.
//!
//! Files (secrets are created with mode 0600, the directory 0700):
//!
//! | file | what |
//! |---|---|
//! | `ca.crt` | the CA certificate: clients' `ssl.ca.location` / truststore |
//! | `ca.key` | the CA's private key (to issue client certificates later) |
//! | `broker.pem` | the broker's private key and certificate chain (`ssl.keystore.location`) |
//! | `admin.password` | the admin user's SCRAM password |

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use ring::rand::SecureRandom;

/// The super user `--secure` creates.
pub const ADMIN_USER: &str = "admin";
/// The SCRAM mechanism clients are told to use (both SCRAM mechanisms are enabled).
pub const CLIENT_MECHANISM: &str = "SCRAM-SHA-512";
/// Iterations of the admin credential (Kafka's default for new credentials is 4096; more is
/// cheap for one login per connection).
pub const ADMIN_ITERATIONS: i32 = 8192;

const CA_CERT_FILE: &str = "ca.crt";
const CA_KEY_FILE: &str = "ca.key";
const BROKER_KEYSTORE_FILE: &str = "broker.pem";
const ADMIN_PASSWORD_FILE: &str = "admin.password";

/// The security material of a `--secure` broker, on disk.
#[derive(Debug, Clone)]
pub struct SecureSetup {
    pub dir: PathBuf,
    pub ca_cert_path: PathBuf,
    pub keystore_path: PathBuf,
    pub admin_password: String,
    /// Whether this call created the material (first start).
    pub created: bool,
}

impl SecureSetup {
    /// Loads the material under `data_dir/security`, creating it first if it is absent. A
    /// partly present directory (some files missing) is an error rather than silently replaced:
    /// clients may already trust the old CA.
    pub fn load_or_create(data_dir: &Path, hosts: &[String]) -> anyhow::Result<Self> {
        let dir = data_dir.join("security");
        let files = [
            CA_CERT_FILE,
            CA_KEY_FILE,
            BROKER_KEYSTORE_FILE,
            ADMIN_PASSWORD_FILE,
        ];
        let present: Vec<&str> = files
            .iter()
            .copied()
            .filter(|f| dir.join(f).exists())
            .collect();
        let created = if present.is_empty() {
            create_material(&dir, hosts)?;
            true
        } else if present.len() < files.len() {
            let missing: Vec<&str> = files
                .iter()
                .copied()
                .filter(|f| !present.contains(f))
                .collect();
            bail!(
                "{} is incomplete (missing {}); remove the directory to create new credentials (clients must then trust the new CA)",
                dir.display(),
                missing.join(", ")
            );
        } else {
            false
        };
        let password_path = dir.join(ADMIN_PASSWORD_FILE);
        let admin_password = fs::read_to_string(&password_path)
            .with_context(|| format!("reading {}", password_path.display()))?
            .trim()
            .to_string();
        if admin_password.is_empty() {
            bail!("{} is empty", password_path.display());
        }
        Ok(Self {
            ca_cert_path: dir.join(CA_CERT_FILE),
            keystore_path: dir.join(BROKER_KEYSTORE_FILE),
            dir,
            admin_password,
            created,
        })
    }

    /// The broker settings `--secure` implies for a listener on `host:port`.
    pub fn broker_settings(&self, host: &str, port: u16) -> Vec<(String, String)> {
        let path = |p: &Path| p.display().to_string();
        vec![
            (
                "listeners".to_string(),
                format!("SASL_SSL://{}:{port}", bracket_ipv6(host)),
            ),
            ("ssl.keystore.type".to_string(), "PEM".to_string()),
            (
                "ssl.keystore.location".to_string(),
                path(&self.keystore_path),
            ),
            ("ssl.truststore.type".to_string(), "PEM".to_string()),
            (
                "ssl.truststore.location".to_string(),
                path(&self.ca_cert_path),
            ),
            (
                "sasl.enabled.mechanisms".to_string(),
                "SCRAM-SHA-256,SCRAM-SHA-512".to_string(),
            ),
            (
                "sasl.mechanism.inter.broker.protocol".to_string(),
                CLIENT_MECHANISM.to_string(),
            ),
            (
                "authorizer.class.name".to_string(),
                "org.apache.kafka.metadata.authorizer.StandardAuthorizer".to_string(),
            ),
            ("super.users".to_string(), format!("User:{ADMIN_USER}")),
        ]
    }

    /// Ready-to-paste client settings for `bootstrap` (`host:port`).
    pub fn client_settings_text(&self, bootstrap: &str) -> String {
        let ca = self.ca_cert_path.display();
        let password = &self.admin_password;
        format!(
            "Secure broker (SASL_SSL, SCRAM, ACLs on). Super user `{ADMIN_USER}`; its password is in {password_file}.\n\
             \n\
             librdkafka (confluent-kafka, kcat -F, kafkajs-confluent):\n\
             \x20 bootstrap.servers={bootstrap}\n\
             \x20 security.protocol=SASL_SSL\n\
             \x20 sasl.mechanisms={CLIENT_MECHANISM}\n\
             \x20 sasl.username={ADMIN_USER}\n\
             \x20 sasl.password={password}\n\
             \x20 ssl.ca.location={ca}\n\
             \n\
             kafka-python:\n\
             \x20 KafkaProducer(bootstrap_servers=\"{bootstrap}\", security_protocol=\"SASL_SSL\",\n\
             \x20               sasl_mechanism=\"{CLIENT_MECHANISM}\", sasl_plain_username=\"{ADMIN_USER}\",\n\
             \x20               sasl_plain_password=\"{password}\", ssl_cafile=\"{ca}\")\n\
             \n\
             Java client (client.properties):\n\
             \x20 bootstrap.servers={bootstrap}\n\
             \x20 security.protocol=SASL_SSL\n\
             \x20 sasl.mechanism={CLIENT_MECHANISM}\n\
             \x20 sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"{ADMIN_USER}\" password=\"{password}\";\n\
             \x20 ssl.truststore.type=PEM\n\
             \x20 ssl.truststore.location={ca}\n",
            password_file = self.dir.join(ADMIN_PASSWORD_FILE).display(),
        )
    }
}

fn bracket_ipv6(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// Creates the directory and every file; on failure nothing half-written is left behind
/// (files go to a temporary directory that is renamed into place last).
fn create_material(dir: &Path, hosts: &[String]) -> anyhow::Result<()> {
    let parent = dir
        .parent()
        .context("the security directory has no parent")?;
    fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let staging = parent.join("security.tmp");
    if staging.exists() {
        fs::remove_dir_all(&staging)
            .with_context(|| format!("removing a stale {}", staging.display()))?;
    }
    create_private_dir(&staging)?;
    let material = generate(hosts)?;
    write_file(&staging.join(CA_CERT_FILE), &material.ca_cert_pem, false)?;
    write_file(&staging.join(CA_KEY_FILE), &material.ca_key_pem, true)?;
    write_file(
        &staging.join(BROKER_KEYSTORE_FILE),
        &format!(
            "{}{}{}",
            material.broker_key_pem, material.broker_cert_pem, material.ca_cert_pem
        ),
        true,
    )?;
    write_file(
        &staging.join(ADMIN_PASSWORD_FILE),
        &format!("{}\n", material.admin_password),
        true,
    )?;
    fs::rename(&staging, dir)
        .with_context(|| format!("renaming {} to {}", staging.display(), dir.display()))?;
    Ok(())
}

struct Material {
    ca_cert_pem: String,
    ca_key_pem: String,
    broker_cert_pem: String,
    broker_key_pem: String,
    admin_password: String,
}

fn generate(hosts: &[String]) -> anyhow::Result<Material> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Fjord CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity_years(&mut ca_params, 10);
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;

    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    for host in hosts {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if !host.is_empty() && !names.iter().any(|n| n == host) && host != "0.0.0.0" {
            names.push(host.to_string());
        }
    }
    let mut broker_params = CertificateParams::new(names)?;
    broker_params
        .distinguished_name
        .push(DnType::CommonName, "fjord-broker");
    broker_params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    broker_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    set_validity_years(&mut broker_params, 2);
    let broker_key = KeyPair::generate()?;
    let broker_cert = broker_params.signed_by(&broker_key, &ca_cert, &ca_key)?;

    Ok(Material {
        ca_cert_pem: ca_cert.pem(),
        ca_key_pem: ca_key.serialize_pem(),
        broker_cert_pem: broker_cert.pem(),
        broker_key_pem: broker_key.serialize_pem(),
        admin_password: random_password()?,
    })
}

fn set_validity_years(params: &mut rcgen::CertificateParams, years: i64) {
    let now = time::OffsetDateTime::now_utc();
    // A day of slack for clocks that are a little behind.
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(365 * years);
}

/// 24 random bytes as URL-safe base64 (32 characters, no padding): no quoting trouble in
/// JAAS strings, properties files or shells.
fn random_password() -> anyhow::Result<String> {
    use base64::Engine as _;
    let mut bytes = [0u8; 24];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("the system random number generator failed"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

fn create_private_dir(path: &Path) -> anyhow::Result<()> {
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(path)
        .with_context(|| format!("creating {}", path.display()))
}

fn write_file(path: &Path, contents: &str, secret: bool) -> anyhow::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn material_is_created_once_and_reused() {
        let data_dir = tempfile::tempdir().unwrap();
        let first = SecureSetup::load_or_create(data_dir.path(), &["broker1.example".into()])
            .expect("created");
        assert!(first.created);
        assert_eq!(first.admin_password.len(), 32);
        let keystore = fs::read_to_string(&first.keystore_path).unwrap();
        assert!(keystore.contains("PRIVATE KEY"));
        assert_eq!(keystore.matches("BEGIN CERTIFICATE").count(), 2);
        let ca = fs::read_to_string(&first.ca_cert_path).unwrap();
        assert!(keystore.ends_with(&ca), "the chain ends with the CA");

        let second = SecureSetup::load_or_create(data_dir.path(), &[]).expect("loaded");
        assert!(!second.created);
        assert_eq!(second.admin_password, first.admin_password);
        assert_eq!(fs::read_to_string(&second.ca_cert_path).unwrap(), ca);

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(first.dir.join(CA_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "the CA key is private");
        }
    }

    #[test]
    fn an_incomplete_directory_is_refused() {
        let data_dir = tempfile::tempdir().unwrap();
        let setup = SecureSetup::load_or_create(data_dir.path(), &[]).unwrap();
        fs::remove_file(setup.dir.join(ADMIN_PASSWORD_FILE)).unwrap();
        let err = SecureSetup::load_or_create(data_dir.path(), &[]).unwrap_err();
        assert!(err.to_string().contains("admin.password"), "{err}");
    }

    #[test]
    fn settings_and_client_text_name_the_files() {
        let data_dir = tempfile::tempdir().unwrap();
        let setup = SecureSetup::load_or_create(data_dir.path(), &[]).unwrap();
        let settings = setup.broker_settings("::1", 9092);
        assert_eq!(settings[0].1, "SASL_SSL://[::1]:9092");
        let text = setup.client_settings_text("127.0.0.1:9092");
        assert!(text.contains(&setup.admin_password));
        assert!(text.contains("ssl.ca.location="));
        assert!(text.contains("security_protocol=\"SASL_SSL\""));
        assert!(text.contains("ScramLoginModule required username=\"admin\""));
    }
}
