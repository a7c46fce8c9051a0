//! `fjord user ...`: SCRAM users (the credentials SASL/SCRAM-SHA-256 and SCRAM-SHA-512 check)
//! on any Kafka-compatible broker, as Kafka's `kafka-configs.sh --entity-type users
//! --add-config 'SCRAM-SHA-256=[iterations=8192,password=...]'` manages them: `list` and
//! `describe` (DescribeUserScramCredentials: mechanisms and iteration counts, never secrets),
//! `create` and `delete` (AlterUserScramCredentials).
//!
//! As Kafka's admin client does (KIP-554), the password never leaves this process: `create`
//! draws a random 32-byte salt per mechanism and sends `SaltedPassword = Hi(password, salt,
//! iterations)` (RFC 5802); the controller derives the stored and server keys from it.
//!
//! Each mechanism's change goes in its own AlterUserScramCredentials request: a KRaft
//! controller (`ScramControlManager.alterCredentials`) refuses a request that names the same
//! user twice with DUPLICATE_RESOURCE, even for two different mechanisms.

use std::io::BufRead;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use clap::{Args, Subcommand, ValueEnum};
use fjord_metadata::security::ScramMechanism;
use fjord_protocol::kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use fjord_protocol::kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use fjord_protocol::kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, DescribeUserScramCredentialsRequest,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ApiKey, RequestKind, ResponseKind};
use ring::rand::SecureRandom;
use serde_json::{json, Value};

use crate::acl_cli::error_text;
use crate::admin::{AdminClient, ConnectArgs};
use crate::output::{print_json, print_table, OutputFormat};

/// Bytes of random salt per credential (Kafka's `ScramFormatter` uses a random salt too).
const SALT_SIZE_BYTES: usize = 32;
/// Kafka's default iteration count of `kafka-configs.sh` (`DefaultScramIterations`).
const ITERATIONS_DEFAULT: i32 = 4096;
/// The longest password line read by `--password-stdin`.
const PASSWORD_SIZE_BYTES_MAX: usize = 4096;

#[derive(Args)]
pub struct UserArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(subcommand)]
    command: UserCommand,
}

#[derive(Subcommand, Debug, PartialEq)]
enum UserCommand {
    /// List every user with SCRAM credentials: mechanism and iteration count per credential
    List,
    /// Show users' SCRAM credentials (mechanisms and iteration counts; never secrets)
    Describe {
        /// User to describe (repeatable)
        #[arg(long = "user", value_name = "NAME", required = true)]
        users: Vec<String>,
    },
    /// Create a SCRAM user or replace its password (AlterUserScramCredentials upsertion); the
    /// password is salted here and never sent
    Create(CreateArgs),
    /// Delete a user's SCRAM credentials (all of its mechanisms unless --mechanism is given)
    Delete {
        /// User whose credentials to delete
        #[arg(long, value_name = "NAME")]
        user: String,
        /// Only this mechanism's credential (repeatable) [default: every mechanism the user has]
        #[arg(long = "mechanism", value_enum, value_name = "MECHANISM")]
        mechanisms: Vec<MechanismArg>,
    },
}

#[derive(Args, Debug, PartialEq)]
#[command(group = clap::ArgGroup::new("secret").required(true).args(["password", "password_stdin"]))]
struct CreateArgs {
    /// The user's name (the principal User:NAME after a SCRAM login)
    #[arg(long, value_name = "NAME")]
    user: String,
    /// Mechanism to set a credential for (repeatable) [default: both]
    #[arg(long = "mechanism", value_enum, value_name = "MECHANISM")]
    mechanisms: Vec<MechanismArg>,
    /// The password (visible in the process list and shell history; prefer --password-stdin)
    #[arg(long, value_name = "PASSWORD")]
    password: Option<String>,
    /// Read the password from the first line of stdin
    #[arg(long)]
    password_stdin: bool,
    /// PBKDF2 iterations (Kafka accepts 4096 to 16384)
    #[arg(long, value_name = "N", default_value_t = ITERATIONS_DEFAULT)]
    iterations: i32,
}

/// `--mechanism`: the SASL mechanism names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
enum MechanismArg {
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    #[value(name = "SCRAM-SHA-512")]
    ScramSha512,
}

impl MechanismArg {
    fn mechanism(self) -> ScramMechanism {
        match self {
            Self::ScramSha256 => ScramMechanism::ScramSha256,
            Self::ScramSha512 => ScramMechanism::ScramSha512,
        }
    }
}

/// The mechanisms named, without duplicates, or both when none is.
fn chosen_mechanisms(mechanisms: &[MechanismArg]) -> Vec<ScramMechanism> {
    let mut chosen: Vec<ScramMechanism> = if mechanisms.is_empty() {
        vec![ScramMechanism::ScramSha256, ScramMechanism::ScramSha512]
    } else {
        mechanisms.iter().map(|m| m.mechanism()).collect()
    };
    chosen.sort();
    chosen.dedup();
    chosen
}

fn mechanism_name(code: i8) -> String {
    ScramMechanism::from_code(code).map_or_else(
        || format!("UNKNOWN({code})"),
        |m| m.mechanism_name().to_string(),
    )
}

pub fn run(args: UserArgs) -> Result<()> {
    let output = args.connect.output();
    match args.command {
        UserCommand::List => {
            let mut client = args.connect.connect()?;
            let users = describe_users(&mut client, None)?;
            print_users(&users, output)
        }
        UserCommand::Describe { mut users } => {
            // Kafka answers a user named twice with DUPLICATE_RESOURCE.
            users.sort();
            users.dedup();
            let mut client = args.connect.connect()?;
            let users = describe_users(&mut client, Some(&users))?;
            print_users(&users, output)
        }
        UserCommand::Create(create) => {
            let password = match &create.password {
                Some(password) => password.clone(),
                None => read_password(std::io::stdin().lock())?,
            };
            let requests = upsertion_requests(&create, &password, |salt| {
                salt.copy_from_slice(&random_salt()?);
                Ok(())
            })?;
            let mut client = args.connect.connect()?;
            for request in requests {
                alter(&mut client, &create.user, request)?;
            }
            let mechanisms: Vec<&str> = chosen_mechanisms(&create.mechanisms)
                .iter()
                .map(|m| m.mechanism_name())
                .collect();
            if output == OutputFormat::Json {
                return print_json(&json!({
                    "user": create.user,
                    "mechanisms": mechanisms,
                    "iterations": create.iterations,
                }));
            }
            println!(
                "Set the {} credential(s) of user {} ({} iterations).",
                mechanisms.join(" and "),
                create.user,
                create.iterations
            );
            Ok(())
        }
        UserCommand::Delete { user, mechanisms } => {
            let mut client = args.connect.connect()?;
            let mechanisms = if mechanisms.is_empty() {
                let users = describe_users(&mut client, Some(std::slice::from_ref(&user)))?;
                users
                    .iter()
                    .flat_map(|u| u.credentials.iter())
                    .filter_map(|(code, _)| ScramMechanism::from_code(*code))
                    .collect()
            } else {
                chosen_mechanisms(&mechanisms)
            };
            if mechanisms.is_empty() {
                bail!("user {user} has no SCRAM credentials");
            }
            for request in deletion_requests(&user, &mechanisms) {
                alter(&mut client, &user, request)?;
            }
            let names: Vec<&str> = mechanisms.iter().map(|m| m.mechanism_name()).collect();
            if output == OutputFormat::Json {
                return print_json(&json!({ "user": user, "deleted": names }));
            }
            println!(
                "Deleted the {} credential(s) of user {user}.",
                names.join(" and ")
            );
            Ok(())
        }
    }
}

/// The password on the first line of `input`, without its line ending.
fn read_password(input: impl BufRead) -> Result<String> {
    let mut line = Vec::new();
    input
        .take(PASSWORD_SIZE_BYTES_MAX as u64 + 1)
        .read_until(b'\n', &mut line)
        .context("cannot read the password from stdin")?;
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    } else if line.len() > PASSWORD_SIZE_BYTES_MAX {
        bail!("the password on stdin is longer than {PASSWORD_SIZE_BYTES_MAX} bytes");
    }
    let password = String::from_utf8(line).context("the password on stdin is not UTF-8")?;
    if password.is_empty() {
        bail!("no password on stdin");
    }
    Ok(password)
}

/// The AlterUserScramCredentials requests of `fjord user create`: one upsertion per mechanism
/// and request, each with its own salt from `fill_salt` and the salted password (never the
/// password).
fn upsertion_requests(
    args: &CreateArgs,
    password: &str,
    mut fill_salt: impl FnMut(&mut [u8]) -> Result<()>,
) -> Result<Vec<AlterUserScramCredentialsRequest>> {
    if args.user.is_empty() {
        bail!("the user name is empty");
    }
    if password.is_empty() {
        bail!("the password is empty");
    }
    let iterations = args.iterations;
    if !(ScramMechanism::ITERATIONS_MIN..=ScramMechanism::ITERATIONS_MAX).contains(&iterations) {
        bail!(
            "--iterations must be between {} and {}, got {iterations}",
            ScramMechanism::ITERATIONS_MIN,
            ScramMechanism::ITERATIONS_MAX
        );
    }
    let mut requests = Vec::new();
    for mechanism in chosen_mechanisms(&args.mechanisms) {
        let mut salt = vec![0u8; SALT_SIZE_BYTES];
        fill_salt(&mut salt)?;
        let upsertion = scram_upsertion(&args.user, mechanism, password, iterations, salt)?;
        requests.push(AlterUserScramCredentialsRequest::default().with_upsertions(vec![upsertion]));
    }
    Ok(requests)
}

/// One mechanism's AlterUserScramCredentials upsertion: the password salted with `salt`
/// (Kafka's clients send the salted password, never the password). Also what
/// `serve --secure` sends for its admin user.
pub fn scram_upsertion(
    user: &str,
    mechanism: ScramMechanism,
    password: &str,
    iterations: i32,
    salt: Vec<u8>,
) -> Result<ScramCredentialUpsertion> {
    let rounds = u32::try_from(iterations).context("iterations")?;
    let salted_password = mechanism.salted_password(password.as_bytes(), &salt, rounds);
    Ok(ScramCredentialUpsertion::default()
        .with_name(StrBytes::from_string(user.to_string()))
        .with_mechanism(mechanism.code())
        .with_iterations(iterations)
        .with_salt(Bytes::from(salt))
        .with_salted_password(Bytes::from(salted_password)))
}

/// A random salt of Kafka's size for a new SCRAM credential.
pub fn random_salt() -> Result<Vec<u8>> {
    let mut salt = vec![0u8; SALT_SIZE_BYTES];
    ring::rand::SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| anyhow!("the system random generator failed"))?;
    Ok(salt)
}

/// The AlterUserScramCredentials requests deleting `mechanisms` of `user`, one per request.
fn deletion_requests(
    user: &str,
    mechanisms: &[ScramMechanism],
) -> Vec<AlterUserScramCredentialsRequest> {
    mechanisms
        .iter()
        .map(|m| {
            AlterUserScramCredentialsRequest::default().with_deletions(vec![
                ScramCredentialDeletion::default()
                    .with_name(StrBytes::from_string(user.to_string()))
                    .with_mechanism(m.code()),
            ])
        })
        .collect()
}

/// Sends an AlterUserScramCredentials about `user` and fails with its error, if any.
fn alter(
    client: &mut AdminClient,
    user: &str,
    request: AlterUserScramCredentialsRequest,
) -> Result<()> {
    let ResponseKind::AlterUserScramCredentials(response) = client.send(
        ApiKey::AlterUserScramCredentials,
        0,
        RequestKind::AlterUserScramCredentials(request),
    )?
    else {
        bail!("unexpected answer to AlterUserScramCredentials");
    };
    if let Some(failed) = response.results.iter().find(|r| r.error_code != 0) {
        bail!(
            "could not change the SCRAM credentials of user {user}: {}",
            error_text(failed.error_code, failed.error_message.as_ref())
        );
    }
    if !response.results.iter().any(|r| r.user.as_str() == user) {
        bail!("AlterUserScramCredentials answered nothing about user {user}");
    }
    Ok(())
}

/// One user's credentials as DescribeUserScramCredentials reports them.
#[derive(Debug, PartialEq)]
struct UserCredentials {
    user: String,
    /// (mechanism code, iterations), sorted.
    credentials: Vec<(i8, i32)>,
}

/// The credentials of `users` (every user with `None`), sorted by user. Fails with the first
/// error, e.g. RESOURCE_NOT_FOUND for a user without credentials.
fn describe_users(
    client: &mut AdminClient,
    users: Option<&[String]>,
) -> Result<Vec<UserCredentials>> {
    let request = DescribeUserScramCredentialsRequest::default().with_users(users.map(|names| {
        names
            .iter()
            .map(|n| UserName::default().with_name(StrBytes::from_string(n.clone())))
            .collect()
    }));
    let ResponseKind::DescribeUserScramCredentials(response) = client.send(
        ApiKey::DescribeUserScramCredentials,
        0,
        RequestKind::DescribeUserScramCredentials(request),
    )?
    else {
        bail!("unexpected answer to DescribeUserScramCredentials");
    };
    if response.error_code != 0 {
        bail!(
            "could not describe SCRAM users: {}",
            error_text(response.error_code, response.error_message.as_ref())
        );
    }
    let mut out = Vec::new();
    for result in &response.results {
        if result.error_code != 0 {
            bail!(
                "could not describe user {}: {}",
                result.user.as_str(),
                error_text(result.error_code, result.error_message.as_ref())
            );
        }
        let mut credentials: Vec<(i8, i32)> = result
            .credential_infos
            .iter()
            .map(|c| (c.mechanism, c.iterations))
            .collect();
        credentials.sort_unstable();
        out.push(UserCredentials {
            user: result.user.to_string(),
            credentials,
        });
    }
    out.sort_by(|a, b| a.user.cmp(&b.user));
    Ok(out)
}

fn users_json(users: &[UserCredentials]) -> Value {
    let users: Vec<Value> = users
        .iter()
        .map(|u| {
            let credentials: Vec<Value> = u
                .credentials
                .iter()
                .map(|(mechanism, iterations)| {
                    json!({ "mechanism": mechanism_name(*mechanism), "iterations": iterations })
                })
                .collect();
            json!({ "user": u.user, "credentials": credentials })
        })
        .collect();
    json!({ "users": users })
}

fn users_rows(users: &[UserCredentials]) -> Vec<Vec<String>> {
    users
        .iter()
        .flat_map(|u| {
            u.credentials.iter().map(|(mechanism, iterations)| {
                vec![
                    u.user.clone(),
                    mechanism_name(*mechanism),
                    iterations.to_string(),
                ]
            })
        })
        .collect()
}

fn print_users(users: &[UserCredentials], output: OutputFormat) -> Result<()> {
    if output == OutputFormat::Json {
        return print_json(&users_json(users));
    }
    print_table(&["USER", "MECHANISM", "ITERATIONS"], &users_rows(users));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl_cli::wire_round_trip;
    use clap::Parser;
    use fjord_metadata::security::ScramCredential;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        user: UserArgs,
    }

    fn parse(args: &[&str]) -> Result<UserCommand, clap::Error> {
        let mut argv = vec!["user"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).map(|cli| cli.user.command)
    }

    fn create_args(args: &[&str]) -> CreateArgs {
        let mut argv = vec!["create"];
        argv.extend_from_slice(args);
        match parse(&argv) {
            Ok(UserCommand::Create(create)) => create,
            other => panic!("not a create: {other:?}"),
        }
    }

    /// Salts 1, 2, ... (each salt filled with its number), to tell the upsertions apart.
    fn counting_salts() -> impl FnMut(&mut [u8]) -> Result<()> {
        let mut next = 0u8;
        move |salt: &mut [u8]| {
            next += 1;
            salt.fill(next);
            Ok(())
        }
    }

    #[test]
    fn create_needs_exactly_one_password_source() {
        assert!(parse(&["create", "--user", "alice"]).is_err());
        assert!(parse(&[
            "create",
            "--user",
            "alice",
            "--password",
            "x",
            "--password-stdin"
        ])
        .is_err());
        let args = create_args(&["--user", "alice", "--password-stdin"]);
        assert!(args.password_stdin && args.password.is_none());
        assert_eq!(args.iterations, 4096);
        assert!(args.mechanisms.is_empty());
        assert!(parse(&[
            "create",
            "--user",
            "a",
            "--password",
            "p",
            "--mechanism",
            "SCRAM-SHA-1"
        ])
        .is_err());
    }

    #[test]
    fn create_sends_a_salted_password_per_mechanism_never_the_password() {
        let args = create_args(&[
            "--user",
            "alice",
            "--password",
            "alice-secret",
            "--iterations",
            "8192",
        ]);
        let requests = upsertion_requests(&args, "alice-secret", counting_salts()).expect("valid");
        // One request per mechanism: a KRaft controller refuses a user named twice in one.
        assert_eq!(requests.len(), 2);
        for (request, (mechanism, salt_byte)) in requests.into_iter().zip([
            (ScramMechanism::ScramSha256, 1u8),
            (ScramMechanism::ScramSha512, 2u8),
        ]) {
            let request = RequestKind::AlterUserScramCredentials(request);
            let RequestKind::AlterUserScramCredentials(decoded) =
                wire_round_trip(ApiKey::AlterUserScramCredentials, 0, &request)
            else {
                panic!("not AlterUserScramCredentials");
            };
            assert!(decoded.deletions.is_empty());
            assert_eq!(decoded.upsertions.len(), 1);
            let upsertion = &decoded.upsertions[0];
            assert_eq!(upsertion.name.as_str(), "alice");
            assert_eq!(upsertion.mechanism, mechanism.code());
            assert_eq!(upsertion.iterations, 8192);
            assert_eq!(upsertion.salt.as_ref(), &[salt_byte; SALT_SIZE_BYTES]);
            assert_eq!(
                upsertion.salted_password.as_ref(),
                mechanism.salted_password(b"alice-secret", &[salt_byte; SALT_SIZE_BYTES], 8192)
            );
            assert!(!upsertion
                .salted_password
                .windows(b"alice-secret".len())
                .any(|w| w == b"alice-secret"));
            // The controller's credential from this upsertion verifies the password.
            let stored = ScramCredential::from_salted_password(
                mechanism,
                &upsertion.salt,
                &upsertion.salted_password,
                upsertion.iterations,
            );
            assert_eq!(
                stored,
                ScramCredential::from_password(mechanism, "alice-secret", &upsertion.salt, 8192)
            );
        }
    }

    #[test]
    fn create_checks_iterations_and_names_one_mechanism() {
        let args = create_args(&["--user", "a", "--password", "p", "--iterations", "1000"]);
        let err = upsertion_requests(&args, "p", counting_salts()).unwrap_err();
        assert!(err.to_string().contains("between 4096 and 16384"), "{err}");
        let args = create_args(&["--user", "a", "--password", "p", "--iterations", "20000"]);
        assert!(upsertion_requests(&args, "p", counting_salts()).is_err());
        let args = create_args(&["--user", "", "--password", "p"]);
        assert!(upsertion_requests(&args, "p", counting_salts()).is_err());
        let args = create_args(&[
            "--user",
            "a",
            "--password",
            "p",
            "--mechanism",
            "SCRAM-SHA-512",
            "--mechanism",
            "SCRAM-SHA-512",
        ]);
        let requests = upsertion_requests(&args, "p", counting_salts()).expect("valid");
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].upsertions[0].mechanism, 2);
        assert_eq!(requests[0].upsertions[0].salted_password.len(), 64);
    }

    #[test]
    fn a_failing_random_source_fails_the_create() {
        let args = create_args(&["--user", "a", "--password", "p"]);
        let result = upsertion_requests(&args, "p", |_: &mut [u8]| Err(anyhow!("no entropy")));
        assert!(result.is_err());
    }

    #[test]
    fn password_from_stdin_is_the_first_line() {
        assert_eq!(read_password(&b"s3cret\nignored\n"[..]).unwrap(), "s3cret");
        assert_eq!(read_password(&b"with space\r\n"[..]).unwrap(), "with space");
        assert_eq!(read_password(&b"no-newline"[..]).unwrap(), "no-newline");
        assert!(read_password(&b"\n"[..]).is_err());
        assert!(read_password(&b""[..]).is_err());
        let long = vec![b'x'; PASSWORD_SIZE_BYTES_MAX + 10];
        assert!(read_password(&long[..]).is_err());
        assert!(read_password(&b"\xff\xfe\n"[..]).is_err());
    }

    #[test]
    fn delete_names_mechanisms_on_the_wire() {
        let requests = deletion_requests(
            "bob",
            &[ScramMechanism::ScramSha256, ScramMechanism::ScramSha512],
        );
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[1].deletions[0].mechanism, 2);
        let request = RequestKind::AlterUserScramCredentials(requests[0].clone());
        let RequestKind::AlterUserScramCredentials(decoded) =
            wire_round_trip(ApiKey::AlterUserScramCredentials, 0, &request)
        else {
            panic!("not AlterUserScramCredentials");
        };
        assert!(decoded.upsertions.is_empty());
        assert_eq!(decoded.deletions.len(), 1);
        assert_eq!(decoded.deletions[0].name.as_str(), "bob");
        assert_eq!(decoded.deletions[0].mechanism, 1);
        let Ok(UserCommand::Delete { user, mechanisms }) =
            parse(&["delete", "--user", "bob", "--mechanism", "SCRAM-SHA-256"])
        else {
            panic!("delete");
        };
        assert_eq!(user, "bob");
        assert_eq!(mechanisms, vec![MechanismArg::ScramSha256]);
        assert!(parse(&["describe"]).is_err());
    }

    #[test]
    fn users_print_one_row_per_credential() {
        let users = vec![
            UserCredentials {
                user: "alice".into(),
                credentials: vec![(1, 4096), (2, 8192)],
            },
            UserCredentials {
                user: "bob".into(),
                credentials: vec![(9, 4096)],
            },
        ];
        assert_eq!(
            users_rows(&users),
            vec![
                vec!["alice", "SCRAM-SHA-256", "4096"],
                vec!["alice", "SCRAM-SHA-512", "8192"],
                vec!["bob", "UNKNOWN(9)", "4096"],
            ]
        );
        assert_eq!(
            users_json(&users[..1]),
            json!({ "users": [{ "user": "alice", "credentials": [
                { "mechanism": "SCRAM-SHA-256", "iterations": 4096 },
                { "mechanism": "SCRAM-SHA-512", "iterations": 8192 },
            ]}]})
        );
    }
}
