//! A small blocking Kafka client for the CLI's admin commands (`fjord group ...`). It speaks
//! to any Kafka-compatible broker: versions are negotiated with ApiVersions, group requests go
//! to the group's coordinator found with FindCoordinator, and a broker's configs to that
//! broker, found with Metadata.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use fjord_protocol::kafka_protocol::messages::{
    ApiVersionsRequest, FindCoordinatorRequest, MetadataRequest, RequestHeader,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::request::encode_request;
use fjord_protocol::response::decode_response;
use fjord_protocol::{ApiKey, RequestKind, ResponseError, ResponseKind};

use crate::client_security::{ClientSecurity, ReadWrite};
use crate::output::OutputFormat;
use fjord_broker::security::sasl::{ClientStep, Mechanism, SaslClientAuthenticator};

/// Largest response the CLI accepts: a describe of thousands of partitions fits easily.
const RESPONSE_SIZE_BYTES_MAX: usize = 256 << 20;
const CLIENT_ID: &str = "fjord-cli";

/// Where the admin commands connect (`fjord group|topic|config`), as Kafka's tools take it.
#[derive(clap::Args)]
pub struct ConnectArgs {
    /// Broker to bootstrap from (Kafka tools: --bootstrap-server)
    #[arg(
        long = "bootstrap",
        visible_alias = "bootstrap-server",
        global = true,
        value_name = "HOST:PORT",
        env = "FJORD_BOOTSTRAP",
        default_value = "127.0.0.1:9092"
    )]
    bootstrap_server: String,
    /// Request timeout in milliseconds
    #[arg(long, global = true, value_name = "MS", default_value_t = 30_000)]
    timeout_ms: u64,
    /// Client security settings as Kafka's tools take them (a properties file:
    /// security.protocol, sasl.mechanism, sasl.username/sasl.password or sasl.jaas.config,
    /// ssl.ca.location or ssl.truststore.location), e.g. what `fjord serve --secure` prints
    #[arg(long, global = true, value_name = "FILE")]
    command_config: Option<std::path::PathBuf>,
    /// Output format: text (tables) or json (machine-readable, on stdout)
    #[arg(
        long,
        global = true,
        value_enum,
        env = "FJORD_OUTPUT",
        default_value_t = OutputFormat::Text
    )]
    output: OutputFormat,
}

impl ConnectArgs {
    pub fn output(&self) -> OutputFormat {
        self.output
    }

    pub fn bootstrap(&self) -> &str {
        &self.bootstrap_server
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    pub fn connect(&self) -> Result<AdminClient> {
        self.install_security()?;
        AdminClient::connect(self.bootstrap(), self.timeout())
    }

    /// Makes every connection this process opens use `--command-config`'s security settings
    /// (commands that open their own connections, such as produce and consume, call this).
    pub fn install_security(&self) -> Result<()> {
        if let Some(path) = &self.command_config {
            ClientSecurity::from_file(path)?.install();
        }
        Ok(())
    }
}

pub struct AdminClient {
    stream: Box<dyn ReadWrite>,
    address: String,
    timeout: Duration,
    next_correlation_id: i32,
    /// Broker's supported range per API.
    versions: HashMap<i16, (i16, i16)>,
}

impl AdminClient {
    /// Connects to `address`, or to the first reachable of a comma-separated bootstrap list
    /// (`host1:9092,host2:9092`, as Kafka clients take it).
    pub fn connect(address: &str, timeout: Duration) -> Result<Self> {
        if address.contains(',') {
            let mut last_error = None;
            for candidate in address.split(',').map(str::trim).filter(|a| !a.is_empty()) {
                match Self::connect(candidate, timeout) {
                    Ok(client) => return Ok(client),
                    Err(error) => last_error = Some(error),
                }
            }
            return Err(last_error.unwrap_or_else(|| anyhow!("empty bootstrap list {address:?}")));
        }
        let socket_address = address
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve {address}"))?
            .next()
            .ok_or_else(|| anyhow!("{address} resolves to no address"))?;
        let stream = TcpStream::connect_timeout(&socket_address, timeout)
            .with_context(|| format!("cannot connect to {address}"))?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        let security = ClientSecurity::current();
        let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
        let stream = security.wrap(stream, host)?;
        let mut client = AdminClient {
            stream,
            address: address.to_string(),
            timeout,
            next_correlation_id: 1,
            versions: HashMap::new(),
        };
        client.negotiate_versions()?;
        if let Some((mechanism, user, password)) = &security.sasl {
            client
                .authenticate(*mechanism, user, password)
                .with_context(|| format!("SASL {} as {user} at {address}", mechanism.name()))?;
        }
        Ok(client)
    }

    /// Kafka's SASL client exchange (SaslHandshake v1, SaslAuthenticate until done), right
    /// after ApiVersions as every Kafka client does it.
    fn authenticate(&mut self, mechanism: Mechanism, user: &str, password: &str) -> Result<()> {
        let mut sasl =
            SaslClientAuthenticator::new(mechanism, user, password).map_err(|e| anyhow!("{e}"))?;
        let ResponseKind::SaslHandshake(handshake) = self.round_trip(
            ApiKey::SaslHandshake,
            1,
            RequestKind::SaslHandshake(sasl.handshake_request()),
        )?
        else {
            bail!("unexpected answer to SaslHandshake");
        };
        let mut next = sasl
            .on_handshake_response(&handshake)
            .map_err(|e| anyhow!("{e}"))?;
        for _ in 0..4 {
            let ResponseKind::SaslAuthenticate(response) = self.round_trip(
                ApiKey::SaslAuthenticate,
                1,
                RequestKind::SaslAuthenticate(next),
            )?
            else {
                bail!("unexpected answer to SaslAuthenticate");
            };
            match sasl
                .on_authenticate_response(&response)
                .map_err(|e| anyhow!("{e}"))?
            {
                ClientStep::Send(request) => next = request,
                ClientStep::Done { .. } => return Ok(()),
            }
        }
        bail!("SASL authentication did not finish")
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// The request timeout this client was made with.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn negotiate_versions(&mut self) -> Result<()> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("fjord-cli"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let ResponseKind::ApiVersions(response) =
            self.round_trip(ApiKey::ApiVersions, 3, RequestKind::ApiVersions(request))?
        else {
            bail!("unexpected answer to ApiVersions");
        };
        check(response.error_code, "ApiVersions")?;
        self.versions = response
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(())
    }

    /// Sends `request` at the highest version both sides support, up to `max_version`.
    pub fn send(
        &mut self,
        api_key: ApiKey,
        max_version: i16,
        request: RequestKind,
    ) -> Result<ResponseKind> {
        let (broker_min, broker_max) = self
            .versions
            .get(&(api_key as i16))
            .copied()
            .ok_or_else(|| anyhow!("{} does not support {api_key:?}", self.address))?;
        let version = max_version.min(broker_max);
        if version < broker_min {
            bail!(
                "{} supports {api_key:?} v{broker_min}-v{broker_max}, this tool v{max_version} at most",
                self.address
            );
        }
        self.round_trip(api_key, version, request)
    }

    /// Whether the broker implements `api_key` at all.
    pub fn supports(&self, api_key: ApiKey) -> bool {
        self.versions.contains_key(&(api_key as i16))
    }

    /// The version `send` would use for `api_key`.
    pub fn version_for(&self, api_key: ApiKey, max_version: i16) -> i16 {
        self.versions
            .get(&(api_key as i16))
            .map_or(max_version, |(_, broker_max)| max_version.min(*broker_max))
    }

    fn round_trip(
        &mut self,
        api_key: ApiKey,
        version: i16,
        request: RequestKind,
    ) -> Result<ResponseKind> {
        let correlation_id = self.write_request(api_key, version, &request)?;
        let mut size = [0u8; 4];
        self.stream
            .read_exact(&mut size)
            .with_context(|| format!("reading the {api_key:?} response from {}", self.address))?;
        let size = usize::try_from(i32::from_be_bytes(size))
            .ok()
            .filter(|n| *n <= RESPONSE_SIZE_BYTES_MAX)
            .ok_or_else(|| anyhow!("bad response size from {}", self.address))?;
        let mut payload = vec![0u8; size];
        self.stream.read_exact(&mut payload)?;
        let (response_header, response) =
            decode_response(api_key, version, Bytes::from(payload)).map_err(|e| anyhow!("{e}"))?;
        if response_header.correlation_id != correlation_id {
            bail!(
                "response out of order from {} (correlation id {} instead of {correlation_id})",
                self.address,
                response_header.correlation_id
            );
        }
        Ok(response)
    }

    /// A client connected to `group`'s coordinator (this one if it is the coordinator).
    pub fn coordinator_for(&mut self, group: &str) -> Result<CoordinatorClient<'_>> {
        let request = FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(group.to_string()))
            .with_key_type(0);
        let ResponseKind::FindCoordinator(response) = self.send(
            ApiKey::FindCoordinator,
            3,
            RequestKind::FindCoordinator(request),
        )?
        else {
            bail!("unexpected answer to FindCoordinator");
        };
        check(response.error_code, "FindCoordinator")?;
        let address = format!("{}:{}", response.host, response.port);
        if address == self.address {
            return Ok(CoordinatorClient::Same(self));
        }
        Ok(CoordinatorClient::Other(Box::new(AdminClient::connect(
            &address,
            self.timeout,
        )?)))
    }
}

impl AdminClient {
    /// The brokers of the cluster (node id, HOST:PORT), from Metadata.
    fn brokers(&mut self) -> Result<Vec<(i32, String)>> {
        let request = MetadataRequest::default()
            .with_topics(Some(Vec::new()))
            .with_allow_auto_topic_creation(false);
        let ResponseKind::Metadata(response) =
            self.send(ApiKey::Metadata, 12, RequestKind::Metadata(request))?
        else {
            bail!("unexpected answer to Metadata");
        };
        Ok(response
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
            .collect())
    }

    /// The node id of the broker this client is connected to: the one advertising the
    /// address we connected to, or the only one.
    pub fn connected_broker_id(&mut self) -> Result<i32> {
        let brokers = self.brokers()?;
        if let Some((id, _)) = brokers.iter().find(|(_, a)| *a == self.address) {
            return Ok(*id);
        }
        match brokers.as_slice() {
            [(id, _)] => Ok(*id),
            _ => bail!(
                "{} is not among the advertised brokers; name one with --broker",
                self.address
            ),
        }
    }

    /// A client connected to broker `node_id` (this one if it is that broker): requests about
    /// a broker's own configs must go to it, as Kafka's admin client sends them.
    pub fn broker_client(&mut self, node_id: i32) -> Result<CoordinatorClient<'_>> {
        let brokers = self.brokers()?;
        let address = brokers
            .iter()
            .find(|(id, _)| *id == node_id)
            .map(|(_, a)| a.clone())
            .ok_or_else(|| anyhow!("no broker with id {node_id} in the cluster metadata"))?;
        if address == self.address {
            return Ok(CoordinatorClient::Same(self));
        }
        Ok(CoordinatorClient::Other(Box::new(AdminClient::connect(
            &address,
            self.timeout,
        )?)))
    }
}

/// The coordinator connection: the bootstrap one, or another broker's.
pub enum CoordinatorClient<'a> {
    Same(&'a mut AdminClient),
    Other(Box<AdminClient>),
}

impl CoordinatorClient<'_> {
    pub fn client(&mut self) -> &mut AdminClient {
        match self {
            CoordinatorClient::Same(c) => c,
            CoordinatorClient::Other(c) => c,
        }
    }
}

/// `Ok` for error code 0, else the Kafka error's name.
pub fn check(error_code: i16, what: &str) -> Result<()> {
    if error_code == 0 {
        return Ok(());
    }
    Err(anyhow!("{what} failed: {}", error_name(error_code)))
}

/// Kafka's name of an error code as the protocol documentation writes it, with the code:
/// `MESSAGE_TOO_LARGE (10)` (the same names as the broker's `fjord_request_errors_total`).
pub fn error_name(error_code: i16) -> String {
    format!(
        "{} ({error_code})",
        fjord_broker::metrics::error_name(error_code)
    )
}

/// FindCoordinator key type of a transactional id (0 is a consumer group).
pub const COORDINATOR_KEY_TYPE_TRANSACTION: i8 = 1;
/// How long `find_coordinator` retries while the coordinator is loading or not yet available.
const COORDINATOR_RETRY_FOR: Duration = Duration::from_secs(5);

impl AdminClient {
    /// The brokers of the cluster (node id, HOST:PORT), from Metadata.
    pub fn cluster_brokers(&mut self) -> Result<Vec<(i32, String)>> {
        self.brokers()
    }

    /// A client connected to `address` (this one if it is connected there).
    pub fn client_for(&mut self, address: &str) -> Result<CoordinatorClient<'_>> {
        if address == self.address {
            return Ok(CoordinatorClient::Same(self));
        }
        Ok(CoordinatorClient::Other(Box::new(AdminClient::connect(
            address,
            self.timeout,
        )?)))
    }

    /// The coordinator of `key` (key type 0: a group, 1: a transactional id) as its node id
    /// and HOST:PORT. Retries for a few seconds while the answer is COORDINATOR_NOT_AVAILABLE
    /// or COORDINATOR_LOAD_IN_PROGRESS, as Kafka's admin client does.
    pub fn find_coordinator(&mut self, key_type: i8, key: &str) -> Result<(i32, String)> {
        let what = match key_type {
            0 => format!("the coordinator of group {key:?}"),
            COORDINATOR_KEY_TYPE_TRANSACTION => {
                format!("the coordinator of transactional id {key:?}")
            }
            _ => format!("the coordinator of {key:?} (key type {key_type})"),
        };
        if key_type != 0 && self.version_for(ApiKey::FindCoordinator, 3) < 1 {
            bail!(
                "{} cannot look up {what} (FindCoordinator < v1)",
                self.address
            );
        }
        let deadline = std::time::Instant::now() + COORDINATOR_RETRY_FOR.min(self.timeout);
        let mut backoff = Duration::from_millis(100);
        loop {
            let request = FindCoordinatorRequest::default()
                .with_key(StrBytes::from_string(key.to_string()))
                .with_key_type(key_type);
            let ResponseKind::FindCoordinator(response) = self.send(
                ApiKey::FindCoordinator,
                3,
                RequestKind::FindCoordinator(request),
            )?
            else {
                bail!("unexpected answer to FindCoordinator");
            };
            if response.error_code == 0 {
                return Ok((
                    response.node_id.0,
                    format!("{}:{}", response.host, response.port),
                ));
            }
            let retriable = matches!(
                ResponseError::try_from_code(response.error_code),
                Some(ResponseError::CoordinatorNotAvailable)
                    | Some(ResponseError::CoordinatorLoadInProgress)
            );
            if !retriable || std::time::Instant::now() + backoff > deadline {
                bail!(
                    "cannot find {what}: {}{}",
                    error_name(response.error_code),
                    response
                        .error_message
                        .as_ref()
                        .filter(|m| !m.is_empty())
                        .map_or(String::new(), |m| format!(": {}", m.as_str()))
                );
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }
}

impl AdminClient {
    /// Sends `request` without reading an answer: Produce with acks=0 gets none.
    pub fn send_without_response(
        &mut self,
        api_key: ApiKey,
        max_version: i16,
        request: RequestKind,
    ) -> Result<()> {
        let version = self.version_for(api_key, max_version);
        self.write_request(api_key, version, &request).map(|_| ())
    }

    /// Frames and sends one request with the next correlation id, which it returns.
    fn write_request(
        &mut self,
        api_key: ApiKey,
        version: i16,
        request: &RequestKind,
    ) -> Result<i32> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let body = encode_request(&header, request).map_err(|e| anyhow!("{e}"))?;
        let size = i32::try_from(body.len()).context("request too large")?;
        let mut frame = Vec::with_capacity(body.len() + 4);
        frame.extend_from_slice(&size.to_be_bytes());
        frame.extend_from_slice(&body);
        self.stream
            .write_all(&frame)
            .with_context(|| format!("sending {api_key:?} to {}", self.address))?;
        Ok(correlation_id)
    }

    /// The connected broker's supported range per API key, sorted by key.
    pub fn api_versions(&self) -> Vec<(i16, i16, i16)> {
        let mut versions: Vec<(i16, i16, i16)> = self
            .versions
            .iter()
            .map(|(key, (min, max))| (*key, *min, *max))
            .collect();
        versions.sort_unstable();
        versions
    }
}
