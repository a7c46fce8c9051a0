//! Broker configuration, under Kafka's own setting names where Kafka has one.
//!
//! [`BrokerConfig::from_settings`] takes the merged key/value map (defaults < config file <
//! `FJORD_*` environment < command-line flags, merged by the binary) and validates every key.
//! Unknown keys are rejected so a typo never silently falls back to a default.
//!
//! Dynamic broker configs (see [`crate::dynamic_config`]) sit on top of those static settings:
//! [`BrokerConfig::with_dynamic`] merges them and validates the result with the same rules.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::BrokerError;

/// One documented setting: its Kafka name, its default, and what it does.
pub struct SettingSpec {
    pub key: &'static str,
    pub default: &'static str,
    pub doc: &'static str,
}

/// Every setting the broker understands. `fjord serve --help` and the README list these.
pub const SETTINGS: &[SettingSpec] = &[
    SettingSpec { key: "node.id", default: "1", doc: "This broker's id (Kafka: node.id)." },
    SettingSpec { key: "process.roles", default: "broker,controller", doc: "What this node runs: broker,controller (a combined node, the default), broker (clients and replicas only; needs controller.quorum.voters) or controller (the metadata quorum only)." },
    SettingSpec { key: "controller.listen", default: "", doc: "HOST:PORT of the controller listener (Raft between controllers, broker registration and heartbeats). Required on a controller of a quorum with more than one voter; empty on a single node, whose controller is in-process (Kafka: the CONTROLLER entry of listeners)." },
    SettingSpec { key: "controller.listener.names", default: "CONTROLLER", doc: "The name of the controller listener (controller.listen), exactly one (Kafka: controller.listener.names). Its security protocol is its entry in listener.security.protocol.map (none: PLAINTEXT): PLAINTEXT or SSL (with ssl.client.auth=required for mTLS between nodes); SASL there is refused. Its TLS settings are the ssl.* keys, overridden by listener.name.<lower-case name>.ssl.*; every node that dials the controllers uses them as a client (truststore, keystore as client certificate)." },
    SettingSpec { key: "controller.quorum.voters", default: "", doc: "The controllers, as ID@HOST:PORT,... (their controller.listen addresses). Empty: this node alone, in-process (Kafka: controller.quorum.voters)." },
    SettingSpec { key: "broker.rack", default: "", doc: "This broker's rack (failure domain): replicas of a partition are spread across racks, and consumers with client.rack may fetch from a replica in their rack." },
    SettingSpec { key: "replica.selector.class", default: "", doc: "KIP-392 fetch from follower: org.apache.kafka.common.replica.RackAwareReplicaSelector sends consumers that name a client.rack to an in-sync follower in their rack (preferred_read_replica); unset: consumers read from the leader. Followers serve consumer fetches (v11+) up to their high watermark either way." },
    SettingSpec { key: "broker.heartbeat.interval.ms", default: "2000", doc: "How often the broker heartbeats to the active controller." },
    SettingSpec { key: "broker.session.timeout.ms", default: "9000", doc: "The controller fences a broker (takes away its leaderships and ISR memberships) after this long without a heartbeat; a restarted broker may register again once its previous session expired." },
    SettingSpec { key: "metadata.log.max.record.bytes.between.snapshots", default: "20971520", doc: "Snapshot the metadata image (and trim the metadata log) after this many bytes of metadata entries; voters and broker-only observers each do so for their own copy." },
    SettingSpec { key: "data.dir", default: "./fjord-data", doc: "Directory holding the logs and metadata (Kafka: log.dirs, one directory)." },
    SettingSpec { key: "listen", default: "127.0.0.1:9092", doc: "The Kafka listeners (Kafka: listeners): NAME://HOST:PORT,... (at most 16; the name is the security protocol unless listener.security.protocol.map maps it), or a bare HOST:PORT for one PLAINTEXT listener." },
    SettingSpec { key: "listener.security.protocol.map", default: "", doc: "NAME:PROTOCOL,... for listener names that are not a security protocol (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL), e.g. INTERNAL:SSL,EXTERNAL:SASL_SSL; standard names map to themselves." },
    SettingSpec { key: "inter.broker.listener.name", default: "", doc: "The listener other brokers dial (follower fetches, WriteTxnMarkers, AddPartitionsToTxn verification); empty = the first of listeners (Kafka's default is PLAINTEXT)." },
    SettingSpec { key: "ssl.keystore.type", default: "PEM", doc: "Format of the keystore: PEM only (JKS and PKCS12 are refused). Like every ssl.* key it may also be given per listener as listener.name.<lower-case name>.ssl.*, which wins for that listener." },
    SettingSpec { key: "ssl.keystore.location", default: "", doc: "PEM file with the listener's private key (unencrypted PKCS#8, PKCS#1 or SEC1) and certificate chain (leaf first)." },
    SettingSpec { key: "ssl.keystore.certificate.chain", default: "", doc: "The certificate chain as inline PEM (instead of ssl.keystore.location)." },
    SettingSpec { key: "ssl.keystore.key", default: "", doc: "The private key as inline PEM (with ssl.keystore.certificate.chain)." },
    SettingSpec { key: "ssl.key.password", default: "", doc: "Refused when set: encrypted private keys are not supported; decrypt the key (openssl pkey -in enc.pem -out key.pem)." },
    SettingSpec { key: "ssl.truststore.type", default: "PEM", doc: "Format of the truststore: PEM only." },
    SettingSpec { key: "ssl.truststore.location", default: "", doc: "PEM file of CA certificates: the CAs client certificates must chain to (ssl.client.auth), and the CAs this broker trusts when it dials another broker over TLS." },
    SettingSpec { key: "ssl.truststore.certificates", default: "", doc: "The trusted CA certificates as inline PEM (instead of ssl.truststore.location)." },
    SettingSpec { key: "ssl.client.auth", default: "none", doc: "TLS client certificates: none, requested (checked against the truststore when sent) or required (mTLS). The principal of a connection with a client certificate is User:<subject DN, RFC 2253> mapped by ssl.principal.mapping.rules." },
    SettingSpec { key: "ssl.enabled.protocols", default: "TLSv1.2,TLSv1.3", doc: "TLS versions accepted: TLSv1.2 and/or TLSv1.3." },
    SettingSpec { key: "ssl.cipher.suites", default: "", doc: "Comma list of cipher suite names to allow (IANA names, e.g. TLS_AES_128_GCM_SHA256); empty = every suite of the TLS provider." },
    SettingSpec { key: "ssl.principal.mapping.rules", default: "DEFAULT", doc: "Kafka's SslPrincipalMapper rules: comma list of RULE:pattern/replacement/[LU] and DEFAULT (the whole subject DN), applied to the client certificate's subject; the first rule that matches wins." },
    SettingSpec { key: "ssl.endpoint.identification.algorithm", default: "https", doc: "https: when this broker dials another broker over TLS it checks the certificate against the advertised host name; empty: no host name check (the chain is still checked)." },
    SettingSpec { key: "ssl.reload.check.interval.ms", default: "10000", doc: "Fjord: how often the keystore and truststore files are checked; new connections use a changed pair once it parses (a broken file keeps the old one and logs an error)." },
    SettingSpec { key: "metrics.listen", default: "127.0.0.1:9644", doc: "Address of the HTTP listener for Prometheus metrics (GET /metrics) and health checks (GET /health/live, /health/ready)." },
    SettingSpec { key: "advertised.listener", default: "", doc: "The addresses given to clients in Metadata (Kafka: advertised.listeners): NAME://HOST:PORT,... per listener name, or a bare HOST:PORT for the first listener; a listener not named here advertises its bind address." },
    SettingSpec { key: "num.partitions", default: "1", doc: "Partitions of an auto-created topic or a CreateTopics request with -1." },
    SettingSpec { key: "default.replication.factor", default: "1", doc: "Replication factor used when a request says -1. Only 1 is possible on one node." },
    SettingSpec { key: "auto.create.topics.enable", default: "true", doc: "Create unknown topics on Metadata and Produce requests." },
    SettingSpec { key: "log.segment.bytes", default: "1073741824", doc: "Roll the active segment once it reaches this size." },
    SettingSpec { key: "log.roll.ms", default: "604800000", doc: "Roll the active segment once it is this old (Kafka: log.roll.ms / log.roll.hours)." },
    SettingSpec { key: "log.retention.ms", default: "604800000", doc: "Default retention.ms: delete closed segments whose newest record is older than this (-1: keep forever; Kafka: log.retention.ms/minutes/hours)." },
    SettingSpec { key: "log.retention.bytes", default: "-1", doc: "Default retention.bytes: delete closed segments from the head while a partition stays at least this large without them (-1: no limit)." },
    SettingSpec { key: "log.retention.check.interval.ms", default: "300000", doc: "How often logs are checked for segments to delete by retention or log start offset." },
    SettingSpec { key: "log.cleanup.policy", default: "delete", doc: "Default cleanup.policy: delete (retention), compact (keep the latest record per key) or compact,delete." },
    SettingSpec { key: "log.cleaner.enable", default: "true", doc: "Run the log cleaner, which compacts topics whose cleanup.policy contains compact (__consumer_offsets among them)." },
    SettingSpec { key: "log.cleaner.dedupe.buffer.size", default: "134217728", doc: "Memory the log cleaner's offset map (24 bytes per distinct key) may use; a dirty section with more keys is cleaned over several passes." },
    SettingSpec { key: "log.cleaner.io.max.bytes.per.second", default: "1.7976931348623157E308", doc: "Bytes per second the log cleaner may read plus write (default: unlimited)." },
    SettingSpec { key: "log.cleaner.io.buffer.size", default: "524288", doc: "Size of the log cleaner's read buffer (grown to hold one batch if a batch is larger)." },
    SettingSpec { key: "log.cleaner.backoff.ms", default: "15000", doc: "How long the log cleaner sleeps when no log needs cleaning." },
    SettingSpec { key: "log.cleaner.min.cleanable.ratio", default: "0.5", doc: "Default min.cleanable.dirty.ratio: clean a log once its uncleaned part is this share of it." },
    SettingSpec { key: "log.cleaner.delete.retention.ms", default: "86400000", doc: "Default delete.retention.ms: how long tombstones stay in a compacted log." },
    SettingSpec { key: "log.cleaner.min.compaction.lag.ms", default: "0", doc: "Default min.compaction.lag.ms: records younger than this are never compacted." },
    SettingSpec { key: "log.cleaner.max.compaction.lag.ms", default: "9223372036854775807", doc: "Default max.compaction.lag.ms: a log holding uncleaned records older than this is cleaned whatever its dirty ratio." },
    SettingSpec { key: "log.index.interval.bytes", default: "4096", doc: "Bytes of log between two offset index entries." },
    SettingSpec { key: "log.flush.interval.messages", default: "9223372036854775807", doc: "fsync after this many messages (default: leave it to the page cache, like Kafka)." },
    SettingSpec { key: "log.flush.interval.ms", default: "9223372036854775807", doc: "fsync when the oldest unflushed message is this old." },
    SettingSpec { key: "message.max.bytes", default: "1048588", doc: "Largest record batch a producer may send (MESSAGE_TOO_LARGE above it)." },
    SettingSpec { key: "socket.request.max.bytes", default: "104857600", doc: "Largest request frame; a bigger one closes the connection." },
    SettingSpec { key: "max.connections", default: "10000", doc: "Connections accepted at once; further ones are closed at accept." },
    SettingSpec { key: "queued.max.requests", default: "64", doc: "Requests read ahead per connection before the broker stops reading from it." },
    SettingSpec { key: "queued.max.request.bytes", default: "536870912", doc: "Bytes of requests held in memory across all connections; reading pauses above it." },
    SettingSpec { key: "fetch.max.bytes", default: "57671680", doc: "Upper bound on the bytes one Fetch response carries." },
    SettingSpec { key: "max.incremental.fetch.session.cache.slots", default: "1000", doc: "Fetch sessions (KIP-227) kept at once." },
    SettingSpec { key: "connections.max.idle.ms", default: "600000", doc: "Close connections idle this long." },
    SettingSpec { key: "shutdown.timeout.ms", default: "30000", doc: "On SIGTERM, how long in-flight requests may take before the broker exits anyway." },
    SettingSpec { key: "group.initial.rebalance.delay.ms", default: "3000", doc: "How long the first rebalance of an empty group waits for more members to join (extended per new member, up to the rebalance timeout)." },
    SettingSpec { key: "group.min.session.timeout.ms", default: "6000", doc: "Smallest session.timeout.ms a group member may ask for (INVALID_SESSION_TIMEOUT below)." },
    SettingSpec { key: "group.max.session.timeout.ms", default: "1800000", doc: "Largest session.timeout.ms a group member may ask for (INVALID_SESSION_TIMEOUT above)." },
    SettingSpec { key: "group.max.size", default: "1000", doc: "Members per consumer group (GROUP_MAX_SIZE_REACHED above). Kafka's default is unbounded; Fjord bounds it so one group's metadata record stays far below message.max.bytes." },
    SettingSpec { key: "group.consumer.heartbeat.interval.ms", default: "5000", doc: "KIP-848 consumer groups: how often members heartbeat (told in every ConsumerGroupHeartbeat response)." },
    SettingSpec { key: "group.consumer.session.timeout.ms", default: "45000", doc: "KIP-848 consumer groups: a member that has not heartbeated for this long is removed and its partitions reassigned." },
    SettingSpec { key: "group.consumer.assignor", default: "uniform", doc: "KIP-848 consumer groups: server-side assignor when members name none (uniform or range; Kafka: first of group.consumer.assignors)." },
    SettingSpec { key: "offsets.topic.num.partitions", default: "50", doc: "Partitions of __consumer_offsets, created on first use; a group's coordinator partition is abs(groupId.hashCode) % this." },
    SettingSpec { key: "offsets.topic.replication.factor", default: "3", doc: "Replication factor of __consumer_offsets, at most the live brokers when it is created (a single node gets 1)." },
    SettingSpec { key: "offsets.retention.minutes", default: "10080", doc: "Committed offsets of a group that has been empty this long (or of a standalone consumer, since its last commit) are deleted." },
    SettingSpec { key: "offsets.retention.check.interval.ms", default: "600000", doc: "How often expired offsets and empty groups without offsets are looked for." },
    SettingSpec { key: "offset.metadata.max.bytes", default: "4096", doc: "Largest metadata string an offset commit may carry (OFFSET_METADATA_TOO_LARGE above)." },
    SettingSpec { key: "transactional.id.expiration.ms", default: "604800000", doc: "A transactional id whose transaction state has not changed for this long (and has no ongoing transaction) is expired: its state is deleted from __transaction_state." },
    SettingSpec { key: "transaction.max.timeout.ms", default: "900000", doc: "Largest transaction timeout a producer may ask for in InitProducerId (INVALID_TRANSACTION_TIMEOUT above)." },
    SettingSpec { key: "transaction.state.log.num.partitions", default: "50", doc: "Partitions of __transaction_state, created on first use; a transactional id's coordinator partition is abs(transactionalId.hashCode) % this." },
    SettingSpec { key: "transaction.state.log.replication.factor", default: "3", doc: "Replication factor of __transaction_state, at most the live brokers when it is created." },
    SettingSpec { key: "transaction.state.log.min.isr", default: "2", doc: "min.insync.replicas of __transaction_state (at most its replication factor)." },
    SettingSpec { key: "transaction.state.log.segment.bytes", default: "104857600", doc: "segment.bytes of __transaction_state (small segments so compaction can clean them early)." },
    SettingSpec { key: "transaction.abort.timed.out.transaction.cleanup.interval.ms", default: "10000", doc: "How often ongoing transactions older than their timeout are looked for and aborted (their producer is fenced)." },
    SettingSpec { key: "transaction.remove.expired.transaction.cleanup.interval.ms", default: "3600000", doc: "How often transactional ids idle longer than transactional.id.expiration.ms are looked for and expired." },
    SettingSpec { key: "producer.id.expiration.ms", default: "86400000", doc: "A partition forgets an idempotent producer's state (sequence numbers) this long after the producer's last write, unless a transaction of it is open." },
    SettingSpec { key: "replica.lag.time.max.ms", default: "30000", doc: "A follower that has not caught up with the leader's log end for this long leaves the ISR (checked every half of it)." },
    SettingSpec { key: "replica.fetch.wait.max.ms", default: "500", doc: "How long a follower's fetch may wait at the leader for data (its max_wait_ms)." },
    SettingSpec { key: "replica.fetch.min.bytes", default: "1", doc: "Bytes a follower's fetch waits for at the leader (its min_bytes)." },
    SettingSpec { key: "replica.fetch.max.bytes", default: "1048576", doc: "Bytes a follower asks per partition in one fetch (at least one batch is returned)." },
    SettingSpec { key: "replica.fetch.response.max.bytes", default: "10485760", doc: "Bytes a follower asks for in one fetch response over all partitions." },
    SettingSpec { key: "replica.fetch.backoff.ms", default: "1000", doc: "How long a follower waits before fetching a partition again after an error." },
    SettingSpec { key: "replica.high.watermark.checkpoint.interval.ms", default: "5000", doc: "How often the high watermarks are written to replication-offset-checkpoint (also at clean shutdown)." },
    SettingSpec { key: "leader.replication.throttled.rate", default: "9223372036854775807", doc: "Bytes per second the leader sends to followers of the replicas listed in leader.replication.throttled.replicas (topic config) while they are out of the ISR (dynamic; default: unlimited)." },
    SettingSpec { key: "follower.replication.throttled.rate", default: "9223372036854775807", doc: "Bytes per second the follower fetches for the replicas listed in follower.replication.throttled.replicas (topic config) while they are not caught up (dynamic; default: unlimited)." },
    SettingSpec { key: "min.insync.replicas", default: "1", doc: "Default min.insync.replicas of topics: acks=all produces fail with NOT_ENOUGH_REPLICAS while fewer replicas are in sync." },
    SettingSpec { key: "quota.window.num", default: "11", doc: "Client quotas (producer_byte_rate, consumer_byte_rate, request_percentage): samples the rate is measured over (Kafka: quota.window.num)." },
    SettingSpec { key: "quota.window.size.seconds", default: "1", doc: "Client quotas: length of one rate sample, seconds (Kafka: quota.window.size.seconds). A request_percentage throttle is at most one sample long." },
    SettingSpec { key: "producer.id.expiration.check.interval.ms", default: "600000", doc: "How often partitions look for producer state older than producer.id.expiration.ms." },
    SettingSpec { key: "authorizer.class.name", default: "", doc: "ACL authorization: empty = off (every request allowed); org.apache.kafka.metadata.authorizer.StandardAuthorizer (or fjord) = Kafka's StandardAuthorizer over the ACLs in the metadata log (DENY beats ALLOW, literal/wildcard/prefixed patterns, no matching ACL = deny). Any other class is refused at start." },
    SettingSpec { key: "super.users", default: "", doc: "Principals allowed everything whatever the ACLs say, separated by semicolons: User:admin;User:broker (the inter-broker principal belongs here)." },
    SettingSpec { key: "allow.everyone.if.no.acl.found", default: "false", doc: "With the authorizer on: allow an action on a resource that has no ACL at all (Kafka's default, false, denies it)." },
    SettingSpec { key: "sasl.enabled.mechanisms", default: "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512", doc: "SASL mechanisms SASL_PLAINTEXT and SASL_SSL listeners accept (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER); per listener: listener.name.<listener>.sasl.enabled.mechanisms." },
    SettingSpec { key: "sasl.jaas.config", default: "", doc: "Kafka JAAS login module config, e.g. org.apache.kafka.common.security.plain.PlainLoginModule required username=\"admin\" password=\"admin-secret\" user_admin=\"admin-secret\" user_alice=\"alice-pw\"; - user_NAME entries are the PLAIN users, username/password what this broker sends as an inter-broker client. Per listener and mechanism: listener.name.<listener>.<mechanism>.sasl.jaas.config. Sensitive: never shown by DescribeConfigs." },
    SettingSpec { key: "sasl.mechanism.inter.broker.protocol", default: "PLAIN", doc: "SASL mechanism brokers use to authenticate to each other (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512), with the username/password of that mechanism's JAAS config." },
    SettingSpec { key: "connections.max.reauth.ms", default: "0", doc: "KIP-368: a SASL session lasts at most this long (and no longer than an OAUTHBEARER token); the client must re-authenticate on the same connection before it ends or the connection is closed at its next request. 0: sessions last as long as the connection." },
    SettingSpec { key: "sasl.server.max.receive.size", default: "524288", doc: "Largest request frame accepted on a SASL listener before the client has authenticated." },
    SettingSpec { key: "sasl.oauthbearer.jwks.endpoint.url", default: "", doc: "OAUTHBEARER (KIP-768): the JSON Web Key Set that signs access tokens, as file:///path/to/jwks.json (http(s) is not supported: the broker makes no outbound HTTP calls). Required when OAUTHBEARER is enabled." },
    SettingSpec { key: "sasl.oauthbearer.expected.issuer", default: "", doc: "OAUTHBEARER: the iss claim tokens must carry (empty: not checked)." },
    SettingSpec { key: "sasl.oauthbearer.expected.audience", default: "", doc: "OAUTHBEARER: comma-separated audiences; a token's aud claim must contain one of them (empty: not checked)." },
    SettingSpec { key: "sasl.oauthbearer.sub.claim.name", default: "sub", doc: "OAUTHBEARER: the claim holding the principal name (User:<value>)." },
    SettingSpec { key: "sasl.oauthbearer.scope.claim.name", default: "scope", doc: "OAUTHBEARER: the claim holding the token's scopes." },
    SettingSpec { key: "sasl.server.callback.handler.class", default: "", doc: "Accepted for Kafka compatibility (listener.name.<l>.oauthbearer.sasl.server.callback.handler.class=org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler): Fjord's OAUTHBEARER validation is built in and configured by the sasl.oauthbearer.* keys; the value is not used." },
    SettingSpec { key: "sasl.oauthbearer.clock.skew.seconds", default: "30", doc: "OAUTHBEARER: slack allowed between the broker's clock and the token's exp, nbf and iat claims." },
];

/// Whether a setting holds a secret (Kafka's PASSWORD type): DescribeConfigs reports it as
/// sensitive with a null value, and nothing prints it.
pub fn is_sensitive(key: &str) -> bool {
    let key = crate::listeners::split_listener_override(key).map_or(key, |(_, inner)| inner);
    key == "sasl.jaas.config"
        || key.ends_with(".sasl.jaas.config")
        || key.ends_with("password")
        || key.ends_with("ssl.keystore.key")
}

/// Where a config's value comes from, numbered as Kafka's `ConfigSource` in DescribeConfigs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// A topic's own override (DYNAMIC_TOPIC_CONFIG).
    DynamicTopic,
    /// This broker's dynamic config (DYNAMIC_BROKER_CONFIG).
    DynamicBroker,
    /// The cluster-wide dynamic default (DYNAMIC_DEFAULT_BROKER_CONFIG).
    DynamicDefaultBroker,
    /// Given in the config file, environment or flags (STATIC_BROKER_CONFIG).
    StaticBroker,
    /// Built-in default (DEFAULT_CONFIG).
    Default,
}

impl ConfigSource {
    /// Kafka's wire number for this source.
    pub fn code(self) -> i8 {
        match self {
            ConfigSource::DynamicTopic => 1,
            ConfigSource::DynamicBroker => 2,
            ConfigSource::DynamicDefaultBroker => 3,
            ConfigSource::StaticBroker => 4,
            ConfigSource::Default => 5,
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// The settings given explicitly (file, environment, flags), by Kafka name: what
    /// DescribeConfigs reports as STATIC_BROKER_CONFIG rather than DEFAULT_CONFIG.
    pub explicit_settings: BTreeMap<String, String>,
    /// Dynamic cluster-wide defaults (DYNAMIC_DEFAULT_BROKER_CONFIG), over the static settings.
    pub dynamic_default_settings: BTreeMap<String, String>,
    /// Dynamic settings of this broker (DYNAMIC_BROKER_CONFIG), over everything else.
    pub dynamic_broker_settings: BTreeMap<String, String>,
    pub node_id: i32,
    pub process_roles: ProcessRoles,
    /// HOST:PORT of the controller listener, if this node binds one.
    pub controller_listen: Option<String>,
    /// `controller.listener.names`: the controller listener's name (upper case).
    pub controller_listener_name: String,
    /// The controller listener's security protocol: PLAINTEXT or SSL.
    pub controller_security_protocol: crate::security::SecurityProtocol,
    /// `(node id, controller HOST:PORT)` of every voter; a single entry without an address is
    /// the in-process quorum of a single node.
    pub controller_quorum_voters: Vec<(i32, Option<String>)>,
    pub broker_rack: Option<String>,
    /// `replica.selector.class` (KIP-392); `None`: consumers read from the leader.
    pub replica_selector: Option<crate::replication::ReplicaSelector>,
    /// `leader.replication.throttled.rate`, bytes/s (`UNLIMITED_RATE_BYTES_PER_S`: none).
    pub leader_replication_throttled_rate: u64,
    /// `follower.replication.throttled.rate`, bytes/s.
    pub follower_replication_throttled_rate: u64,
    pub broker_heartbeat_interval_ms: u64,
    pub broker_session_timeout_ms: u64,
    /// Kafka `metadata.log.max.record.bytes.between.snapshots`.
    pub metadata_snapshot_interval_bytes: u64,
    pub data_dir: PathBuf,
    /// The Kafka listeners (`listeners`), in the order given; at least one.
    pub listeners: Vec<crate::listeners::ListenerConfig>,
    /// `inter.broker.listener.name`: one of `listeners`.
    pub inter_broker_listener_name: String,
    /// Every `ssl.*` and `listener.name.*` value given (see [`Self::listener_setting`]).
    pub security_settings: BTreeMap<String, String>,
    /// `ssl.reload.check.interval.ms` (Fjord).
    pub ssl_reload_check_interval_ms: u64,
    /// HOST:PORT of the metrics and health HTTP listener.
    pub metrics_listen: String,
    pub num_partitions: i32,
    pub default_replication_factor: i16,
    pub auto_create_topics_enable: bool,
    pub log_segment_bytes: u64,
    pub log_retention_ms: i64,
    pub log_retention_bytes: i64,
    pub log_retention_check_interval_ms: i64,
    pub log_roll_ms: i64,
    pub log_index_interval_bytes: u64,
    pub log_cleanup_policy: String,
    pub log_cleaner_enable: bool,
    pub log_cleaner_dedupe_buffer_size: u64,
    pub log_cleaner_io_max_bytes_per_second: f64,
    pub log_cleaner_io_buffer_size: usize,
    pub log_cleaner_backoff_ms: u64,
    pub log_cleaner_min_cleanable_ratio: f64,
    pub log_cleaner_delete_retention_ms: i64,
    pub log_cleaner_min_compaction_lag_ms: i64,
    pub log_cleaner_max_compaction_lag_ms: i64,
    pub log_flush_interval_messages: u64,
    pub log_flush_interval_ms: i64,
    pub message_max_bytes: usize,
    pub socket_request_max_bytes: usize,
    pub max_connections: usize,
    pub queued_max_requests: usize,
    pub queued_max_request_bytes: usize,
    pub fetch_max_bytes: usize,
    pub fetch_session_cache_slots: usize,
    pub connections_max_idle_ms: u64,
    pub shutdown_timeout_ms: u64,
    pub group_initial_rebalance_delay_ms: i32,
    pub group_min_session_timeout_ms: i32,
    pub group_max_session_timeout_ms: i32,
    pub group_max_size: usize,
    pub group_consumer_heartbeat_interval_ms: i32,
    pub group_consumer_session_timeout_ms: i32,
    pub group_consumer_assignor: String,
    pub offsets_topic_num_partitions: i32,
    pub offsets_topic_replication_factor: i16,
    pub transaction_state_log_replication_factor: i16,
    pub transaction_state_log_min_isr: i16,
    pub offsets_retention_ms: i64,
    pub offsets_retention_check_interval_ms: i64,
    pub offset_metadata_max_bytes: usize,
    pub transactional_id_expiration_ms: i64,
    pub transaction_max_timeout_ms: i32,
    pub transaction_state_log_num_partitions: i32,
    pub transaction_state_log_segment_bytes: u64,
    pub transaction_abort_timed_out_transaction_cleanup_interval_ms: i64,
    pub transaction_remove_expired_transaction_cleanup_interval_ms: i64,
    pub producer_id_expiration_ms: i64,
    pub producer_id_expiration_check_interval_ms: i64,
    pub replica_lag_time_max_ms: i64,
    pub replica_fetch_wait_max_ms: i32,
    pub replica_fetch_min_bytes: i32,
    pub replica_fetch_max_bytes: i32,
    pub replica_fetch_response_max_bytes: i32,
    pub replica_fetch_backoff_ms: i64,
    pub replica_high_watermark_checkpoint_interval_ms: i64,
    pub min_insync_replicas: usize,
    /// `quota.window.num`: samples of a client quota's rate.
    pub quota_window_num: u32,
    /// `quota.window.size.seconds`, in milliseconds.
    pub quota_window_size_ms: i64,
    /// `authorizer.class.name`, `super.users`, `allow.everyone.if.no.acl.found`.
    pub authorizer: crate::security::authorizer::AuthorizerConfig,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        match Self::from_settings(&BTreeMap::new()) {
            Ok(config) => config,
            // The defaults are constants checked by a unit test; failing here is a programming error.
            Err(err) => panic!("built-in defaults are invalid: {err}"),
        }
    }
}

struct Settings<'a> {
    values: &'a BTreeMap<String, String>,
}

impl Settings<'_> {
    fn raw(&self, key: &str) -> &str {
        if let Some(value) = self.values.get(key) {
            return value;
        }
        SETTINGS
            .iter()
            .find(|spec| spec.key == key)
            .map(|spec| spec.default)
            .unwrap_or_default()
    }

    fn parse<T: std::str::FromStr>(&self, key: &str) -> Result<T, BrokerError>
    where
        T::Err: std::fmt::Display,
    {
        let value = self.raw(key);
        value
            .trim()
            .parse::<T>()
            .map_err(|err| BrokerError::InvalidConfig {
                key: key.to_string(),
                value: value.to_string(),
                reason: err.to_string(),
            })
    }

    fn positive<T>(&self, key: &str) -> Result<T, BrokerError>
    where
        T: std::str::FromStr + PartialOrd + Default + Copy,
        T::Err: std::fmt::Display,
    {
        let value: T = self.parse(key)?;
        if value <= T::default() {
            return Err(BrokerError::InvalidConfig {
                key: key.to_string(),
                value: self.raw(key).to_string(),
                reason: "must be greater than zero".to_string(),
            });
        }
        Ok(value)
    }

    fn non_negative(&self, key: &str) -> Result<i64, BrokerError> {
        let value: i64 = self.parse(key)?;
        if value < 0 {
            return Err(self.invalid(key, "must be >= 0"));
        }
        Ok(value)
    }

    fn ratio(&self, key: &str) -> Result<f64, BrokerError> {
        let value: f64 = self.parse(key)?;
        if !(0.0..=1.0).contains(&value) {
            return Err(self.invalid(key, "must be between 0 and 1"));
        }
        Ok(value)
    }

    /// `delete`, `compact` or both, comma-separated.
    fn cleanup_policy(&self, key: &str) -> Result<String, BrokerError> {
        let value = self.raw(key).trim();
        let words: Vec<&str> = value.split(',').map(str::trim).collect();
        if words.is_empty() || words.iter().any(|w| *w != "delete" && *w != "compact") {
            return Err(self.invalid(key, "must be delete, compact or compact,delete"));
        }
        Ok(words.join(","))
    }

    fn invalid(&self, key: &str, reason: &str) -> BrokerError {
        BrokerError::InvalidConfig {
            key: key.to_string(),
            value: self.raw(key).to_string(),
            reason: reason.to_string(),
        }
    }

    /// A limit where -1 means "none" (retention).
    fn at_least_minus_one(&self, key: &str) -> Result<i64, BrokerError> {
        let value: i64 = self.parse(key)?;
        if value < -1 {
            return Err(BrokerError::InvalidConfig {
                key: key.to_string(),
                value: self.raw(key).to_string(),
                reason: "must be -1 (no limit) or more".to_string(),
            });
        }
        Ok(value)
    }
}

/// What a node runs (Kafka `process.roles`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessRoles {
    pub broker: bool,
    pub controller: bool,
}

impl ProcessRoles {
    fn parse(value: &str) -> Option<Self> {
        let mut roles = ProcessRoles {
            broker: false,
            controller: false,
        };
        for role in value.split(',').map(str::trim) {
            match role {
                "broker" if !roles.broker => roles.broker = true,
                "controller" if !roles.controller => roles.controller = true,
                _ => return None,
            }
        }
        (roles.broker || roles.controller).then_some(roles)
    }
}

/// Parses `ID@HOST:PORT,...`; empty is no voters.
fn parse_voters(value: &str) -> Result<Vec<(i32, String)>, String> {
    let mut voters: Vec<(i32, String)> = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (id, address) = entry
            .split_once('@')
            .ok_or_else(|| format!("'{entry}' is not ID@HOST:PORT"))?;
        let id: i32 = id
            .trim()
            .parse()
            .map_err(|_| format!("'{id}' in '{entry}' is not a node id"))?;
        if id < 0 {
            return Err(format!("node id {id} in '{entry}' is negative"));
        }
        split_host_port("controller.quorum.voters", address.trim())
            .map_err(|_| format!("'{address}' in '{entry}' is not HOST:PORT"))?;
        if voters.iter().any(|(other, _)| *other == id) {
            return Err(format!("node id {id} is listed twice"));
        }
        voters.push((id, address.trim().to_string()));
    }
    Ok(voters)
}

/// Kafka's `KafkaConfig.validateValues` rules for the quorum settings: a controller is a voter
/// whose address's port is its `controller.listen` port; a broker-only node is not a voter,
/// needs the voters and binds no controller listener; more than one voter needs controller
/// listeners.
type QuorumVoters = Vec<(i32, Option<String>)>;

fn check_quorum(
    node_id: i32,
    roles: ProcessRoles,
    controller_listen: Option<&str>,
    voters: Vec<(i32, String)>,
) -> Result<QuorumVoters, (&'static str, String)> {
    if voters.is_empty() {
        if !roles.controller {
            return Err((
                "controller.quorum.voters",
                "a node without the controller role needs the controllers' addresses".into(),
            ));
        }
        // A single node: its own in-process voter, or its controller listener if bound.
        return Ok(vec![(node_id, controller_listen.map(str::to_string))]);
    }
    let own = voters.iter().find(|(id, _)| *id == node_id);
    match (roles.controller, own) {
        (true, None) => Err((
            "controller.quorum.voters",
            format!("node {node_id} has the controller role but is not one of the voters"),
        )),
        (false, Some(_)) => Err((
            "process.roles",
            format!("node {node_id} is a voter in controller.quorum.voters, so it needs the controller role"),
        )),
        (true, Some((_, address))) => {
            let Some(listen) = controller_listen else {
                return Err((
                    "controller.listen",
                    "a controller of controller.quorum.voters needs its controller.listen address".into(),
                ));
            };
            let port = |a: &str| a.rsplit(':').next().map(str::to_string);
            if port(listen) != port(address) {
                return Err((
                    "controller.listen",
                    format!("{listen} does not match this node's voter address {address}"),
                ));
            }
            Ok(voters.into_iter().map(|(id, a)| (id, Some(a))).collect())
        }
        (false, None) if controller_listen.is_some() => Err((
            "controller.listen",
            "a broker-only node (process.roles=broker) has no controller listener: it observes the voters".into(),
        )),
        (false, None) => Ok(voters.into_iter().map(|(id, a)| (id, Some(a))).collect()),
    }
}

/// Kafka spellings accepted for Fjord's own keys.
const ALIASES: &[(&str, &str)] = &[
    ("log.dirs", "data.dir"),
    ("log.dir", "data.dir"),
    ("listeners", "listen"),
    ("advertised.listeners", "advertised.listener"),
    ("broker.id", "node.id"),
];

/// Maps a Kafka alias to Fjord's key, and strips the scheme of a single `PLAINTEXT://`
/// listener value (the same listener as the bare address; keeps old settings and
/// `--print-config` output as they were).
pub fn canonical_setting(key: &str, value: &str) -> (String, String) {
    let key = ALIASES
        .iter()
        .find(|(alias, _)| *alias == key)
        .map(|(_, canonical)| *canonical)
        .unwrap_or(key);
    let single_plaintext = (key == "listen" || key == "advertised.listener")
        && !value.contains(',')
        && value
            .get(..12)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("PLAINTEXT://"));
    let value = if single_plaintext {
        &value[12..]
    } else {
        value
    };
    (key.to_string(), value.to_string())
}

/// Whether `key` is a setting: one of [`SETTINGS`], or a per-listener override
/// `listener.name.<name>.<key>` of a key that may be overridden per listener (the `ssl.*`
/// keys). Other suffixes are refused like any unknown key.
pub fn is_known_setting(key: &str) -> bool {
    let known = |key: &str| SETTINGS.iter().any(|spec| spec.key == key);
    if known(key) {
        return true;
    }
    match crate::listeners::split_listener_override(key) {
        Some((_, inner)) => {
            let ssl = inner.starts_with("ssl.") && inner != "ssl.reload.check.interval.ms";
            ssl && known(inner) || is_listener_sasl_key(inner)
        }
        None => false,
    }
}

/// The SASL keys Kafka lets a listener (`listener.name.<l>.<key>`) or a listener and mechanism
/// (`listener.name.<l>.<mechanism>.<key>`, e.g. `listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config`)
/// override.
fn is_listener_sasl_key(inner: &str) -> bool {
    let sasl_key = |key: &str| {
        (key.starts_with("sasl.") || key == "connections.max.reauth.ms")
            && SETTINGS.iter().any(|spec| spec.key == key)
    };
    if sasl_key(inner) {
        return true;
    }
    ["plain.", "scram-sha-256.", "scram-sha-512.", "oauthbearer."]
        .iter()
        .any(|mechanism| inner.strip_prefix(mechanism).is_some_and(sasl_key))
}

fn split_host_port(key: &str, value: &str) -> Result<(String, i32), BrokerError> {
    let invalid = |reason: &str| BrokerError::InvalidConfig {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    };
    let (host, port) = value
        .rsplit_once(':')
        .ok_or_else(|| invalid("expected HOST:PORT"))?;
    let port: u16 = port.parse().map_err(|_| invalid("port must be 0-65535"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(invalid("host is empty"));
    }
    Ok((host.to_string(), i32::from(port)))
}

impl BrokerConfig {
    /// Validates a merged settings map. Keys must be canonical (see [`canonical_setting`]).
    pub fn from_settings(values: &BTreeMap<String, String>) -> Result<Self, BrokerError> {
        if let Some(key) = values.keys().find(|key| !is_known_setting(key)) {
            return Err(BrokerError::UnknownConfig { key: key.clone() });
        }
        let explicit_settings = values.clone();
        let s = Settings { values };
        let (listeners, inter_broker_listener_name) = crate::listeners::parse_listeners(
            s.raw("listen"),
            s.raw("listener.security.protocol.map"),
            s.raw("advertised.listener"),
            s.raw("inter.broker.listener.name"),
        )
        .map_err(|(key, reason)| s.invalid(key, &reason))?;
        let security_settings: BTreeMap<String, String> = values
            .iter()
            .filter(|(key, _)| {
                key.starts_with("ssl.")
                    || key.starts_with(crate::listeners::LISTENER_OVERRIDE_PREFIX)
            })
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        let metrics_listen = s.raw("metrics.listen").to_string();
        split_host_port("metrics.listen", &metrics_listen)?;
        let node_id: i32 = s.parse("node.id")?;
        if node_id < 0 {
            return Err(BrokerError::InvalidConfig {
                key: "node.id".into(),
                value: node_id.to_string(),
                reason: "must be >= 0".into(),
            });
        }
        let process_roles = ProcessRoles::parse(s.raw("process.roles")).ok_or_else(|| {
            s.invalid(
                "process.roles",
                "must be broker,controller, broker or controller",
            )
        })?;
        let (controller_listener_name, controller_security_protocol) =
            crate::listeners::parse_controller_listener(
                s.raw("controller.listener.names"),
                s.raw("listener.security.protocol.map"),
                &listeners,
            )
            .map_err(|(key, reason)| s.invalid(key, &reason))?;
        let controller_listen = match s.raw("controller.listen").trim() {
            "" => None,
            value => {
                let (name, address) = match value.split_once("://") {
                    Some((name, address)) => (Some(name.trim()), address.trim()),
                    None => (None, value),
                };
                // NAME://HOST:PORT: the controller listener's name, or its protocol's name.
                let named_elsewhere = |n: &&str| {
                    !n.eq_ignore_ascii_case(&controller_listener_name)
                        && !n.eq_ignore_ascii_case(controller_security_protocol.name())
                };
                if let Some(name) = name.filter(named_elsewhere) {
                    return Err(s.invalid(
                        "controller.listen",
                        &format!("the listener is named {name}, but controller.listener.names is {controller_listener_name}"),
                    ));
                }
                split_host_port("controller.listen", address)?;
                Some(address.to_string())
            }
        };
        let controller_quorum_voters = parse_voters(s.raw("controller.quorum.voters"))
            .map_err(|reason| s.invalid("controller.quorum.voters", &reason))?;
        let controller_quorum_voters = check_quorum(
            node_id,
            process_roles,
            controller_listen.as_deref(),
            controller_quorum_voters,
        )
        .map_err(|(key, reason)| s.invalid(key, &reason))?;
        let broker_heartbeat_interval_ms: u64 = s.positive("broker.heartbeat.interval.ms")?;
        let broker_session_timeout_ms: u64 = s.positive("broker.session.timeout.ms")?;
        if broker_session_timeout_ms <= broker_heartbeat_interval_ms {
            return Err(s.invalid(
                "broker.session.timeout.ms",
                "must be greater than broker.heartbeat.interval.ms",
            ));
        }
        let metadata_snapshot_interval_bytes: u64 =
            s.positive("metadata.log.max.record.bytes.between.snapshots")?;
        let broker_rack = match s.raw("broker.rack").trim() {
            "" => None,
            rack => Some(rack.to_string()),
        };
        let group_min_session_timeout_ms: i32 = s.positive("group.min.session.timeout.ms")?;
        let group_max_session_timeout_ms: i32 = s.positive("group.max.session.timeout.ms")?;
        if group_max_session_timeout_ms < group_min_session_timeout_ms {
            return Err(BrokerError::InvalidConfig {
                key: "group.max.session.timeout.ms".into(),
                value: group_max_session_timeout_ms.to_string(),
                reason: "must not be below group.min.session.timeout.ms".into(),
            });
        }
        let group_initial_rebalance_delay_ms: i32 = s.parse("group.initial.rebalance.delay.ms")?;
        if group_initial_rebalance_delay_ms < 0 {
            return Err(BrokerError::InvalidConfig {
                key: "group.initial.rebalance.delay.ms".into(),
                value: group_initial_rebalance_delay_ms.to_string(),
                reason: "must be >= 0".into(),
            });
        }
        let offsets_retention_minutes: i64 = s.positive("offsets.retention.minutes")?;
        Ok(Self {
            explicit_settings,
            dynamic_default_settings: BTreeMap::new(),
            dynamic_broker_settings: BTreeMap::new(),
            node_id,
            process_roles,
            controller_listen,
            controller_listener_name,
            controller_security_protocol,
            controller_quorum_voters,
            broker_rack,
            replica_selector: crate::replication::ReplicaSelector::parse(
                s.raw("replica.selector.class"),
            )
            .map_err(|reason| s.invalid("replica.selector.class", &reason))?,
            leader_replication_throttled_rate: s.parse("leader.replication.throttled.rate")?,
            follower_replication_throttled_rate: s.parse("follower.replication.throttled.rate")?,
            broker_heartbeat_interval_ms,
            broker_session_timeout_ms,
            metadata_snapshot_interval_bytes,
            data_dir: PathBuf::from(s.raw("data.dir")),
            listeners,
            inter_broker_listener_name,
            security_settings,
            ssl_reload_check_interval_ms: s.positive("ssl.reload.check.interval.ms")?,
            metrics_listen,
            num_partitions: s.positive("num.partitions")?,
            default_replication_factor: s.positive("default.replication.factor")?,
            auto_create_topics_enable: s.parse("auto.create.topics.enable")?,
            log_segment_bytes: s.positive("log.segment.bytes")?,
            log_retention_ms: s.at_least_minus_one("log.retention.ms")?,
            log_retention_bytes: s.at_least_minus_one("log.retention.bytes")?,
            log_retention_check_interval_ms: s.positive("log.retention.check.interval.ms")?,
            log_roll_ms: s.positive("log.roll.ms")?,
            log_index_interval_bytes: s.positive("log.index.interval.bytes")?,
            log_cleanup_policy: s.cleanup_policy("log.cleanup.policy")?,
            log_cleaner_enable: s.parse("log.cleaner.enable")?,
            log_cleaner_dedupe_buffer_size: s.positive("log.cleaner.dedupe.buffer.size")?,
            log_cleaner_io_max_bytes_per_second: s
                .positive("log.cleaner.io.max.bytes.per.second")?,
            log_cleaner_io_buffer_size: s.positive("log.cleaner.io.buffer.size")?,
            log_cleaner_backoff_ms: s.positive("log.cleaner.backoff.ms")?,
            log_cleaner_min_cleanable_ratio: s.ratio("log.cleaner.min.cleanable.ratio")?,
            log_cleaner_delete_retention_ms: s.non_negative("log.cleaner.delete.retention.ms")?,
            log_cleaner_min_compaction_lag_ms: s
                .non_negative("log.cleaner.min.compaction.lag.ms")?,
            log_cleaner_max_compaction_lag_ms: s.positive("log.cleaner.max.compaction.lag.ms")?,
            log_flush_interval_messages: s.positive("log.flush.interval.messages")?,
            log_flush_interval_ms: s.positive("log.flush.interval.ms")?,
            message_max_bytes: s.positive("message.max.bytes")?,
            socket_request_max_bytes: s.positive("socket.request.max.bytes")?,
            max_connections: s.positive("max.connections")?,
            queued_max_requests: s.positive("queued.max.requests")?,
            queued_max_request_bytes: s.positive("queued.max.request.bytes")?,
            fetch_max_bytes: s.positive("fetch.max.bytes")?,
            fetch_session_cache_slots: s.parse("max.incremental.fetch.session.cache.slots")?,
            connections_max_idle_ms: s.positive("connections.max.idle.ms")?,
            shutdown_timeout_ms: s.positive("shutdown.timeout.ms")?,
            group_initial_rebalance_delay_ms,
            group_min_session_timeout_ms,
            group_max_session_timeout_ms,
            group_max_size: s.positive("group.max.size")?,
            group_consumer_heartbeat_interval_ms: s
                .positive("group.consumer.heartbeat.interval.ms")?,
            group_consumer_session_timeout_ms: s.positive("group.consumer.session.timeout.ms")?,
            group_consumer_assignor: {
                let name: String = s.parse("group.consumer.assignor")?;
                if !crate::group_coordinator::assignor::ASSIGNORS.contains(&name.as_str()) {
                    return Err(BrokerError::InvalidConfig {
                        key: "group.consumer.assignor".into(),
                        value: name,
                        reason: "must be uniform or range".into(),
                    });
                }
                name
            },
            offsets_topic_replication_factor: s.positive("offsets.topic.replication.factor")?,
            transaction_state_log_replication_factor: s
                .positive("transaction.state.log.replication.factor")?,
            transaction_state_log_min_isr: s.positive("transaction.state.log.min.isr")?,
            offsets_topic_num_partitions: s.positive("offsets.topic.num.partitions")?,
            // Minutes to milliseconds without overflow for absurd values.
            offsets_retention_ms: offsets_retention_minutes.saturating_mul(60_000),
            offsets_retention_check_interval_ms: s
                .positive("offsets.retention.check.interval.ms")?,
            offset_metadata_max_bytes: s.parse("offset.metadata.max.bytes")?,
            transactional_id_expiration_ms: s.positive("transactional.id.expiration.ms")?,
            transaction_max_timeout_ms: s.positive("transaction.max.timeout.ms")?,
            transaction_state_log_num_partitions: s
                .positive("transaction.state.log.num.partitions")?,
            transaction_state_log_segment_bytes: s
                .positive("transaction.state.log.segment.bytes")?,
            transaction_abort_timed_out_transaction_cleanup_interval_ms: s
                .positive("transaction.abort.timed.out.transaction.cleanup.interval.ms")?,
            transaction_remove_expired_transaction_cleanup_interval_ms: s
                .positive("transaction.remove.expired.transaction.cleanup.interval.ms")?,
            producer_id_expiration_ms: s.positive("producer.id.expiration.ms")?,
            producer_id_expiration_check_interval_ms: s
                .positive("producer.id.expiration.check.interval.ms")?,
            replica_lag_time_max_ms: s.positive("replica.lag.time.max.ms")?,
            replica_fetch_wait_max_ms: s.positive("replica.fetch.wait.max.ms")?,
            replica_fetch_min_bytes: s.positive("replica.fetch.min.bytes")?,
            replica_fetch_max_bytes: s.positive("replica.fetch.max.bytes")?,
            replica_fetch_response_max_bytes: s.positive("replica.fetch.response.max.bytes")?,
            replica_fetch_backoff_ms: s.positive("replica.fetch.backoff.ms")?,
            replica_high_watermark_checkpoint_interval_ms: s
                .positive("replica.high.watermark.checkpoint.interval.ms")?,
            min_insync_replicas: s.positive("min.insync.replicas")?,
            quota_window_num: s.positive("quota.window.num")?,
            quota_window_size_ms: s
                .positive::<i64>("quota.window.size.seconds")?
                .saturating_mul(1000),
            authorizer: crate::security::authorizer::AuthorizerConfig::parse(
                s.raw("authorizer.class.name"),
                s.raw("super.users"),
                s.parse("allow.everyone.if.no.acl.found")?,
            )
            .map_err(|reason| BrokerError::InvalidConfig {
                key: "authorizer.class.name".to_string(),
                value: s.raw("authorizer.class.name").to_string(),
                reason,
            })?,
        })
    }

    /// This configuration's static settings with the given dynamic configs on top (per-broker
    /// over cluster default over static), validated as a whole by [`Self::from_settings`].
    /// Replaces any dynamic configs `self` had.
    pub fn with_dynamic(
        &self,
        dynamic_default: BTreeMap<String, String>,
        dynamic_broker: BTreeMap<String, String>,
    ) -> Result<Self, BrokerError> {
        let mut merged = self.explicit_settings.clone();
        merged.extend(dynamic_default.iter().map(|(k, v)| (k.clone(), v.clone())));
        merged.extend(dynamic_broker.iter().map(|(k, v)| (k.clone(), v.clone())));
        let mut config = Self::from_settings(&merged)?;
        config.explicit_settings = self.explicit_settings.clone();
        config.dynamic_default_settings = dynamic_default;
        config.dynamic_broker_settings = dynamic_broker;
        Ok(config)
    }

    /// Where `key`'s value may come from, highest precedence first, as Kafka lists synonyms:
    /// DYNAMIC_BROKER_CONFIG, DYNAMIC_DEFAULT_BROKER_CONFIG, STATIC_BROKER_CONFIG,
    /// DEFAULT_CONFIG, each only where it is set. The first one is the effective value.
    pub fn setting_sources(&self, key: &str) -> Vec<(ConfigSource, String)> {
        let mut sources = Vec::with_capacity(2);
        let levels = [
            (ConfigSource::DynamicBroker, &self.dynamic_broker_settings),
            (
                ConfigSource::DynamicDefaultBroker,
                &self.dynamic_default_settings,
            ),
            (ConfigSource::StaticBroker, &self.explicit_settings),
        ];
        for (source, values) in levels {
            if let Some(value) = values.get(key) {
                sources.push((source, value.clone()));
            }
        }
        if let Some(spec) = SETTINGS.iter().find(|spec| spec.key == key) {
            sources.push((ConfigSource::Default, spec.default.to_string()));
        }
        sources
    }

    /// `key` (an `ssl.*` setting) for `listener`: its `listener.name.<listener>.<key>` override
    /// if given (any case of the name), else the global value, else the default.
    pub fn listener_setting(&self, listener: &str, key: &str) -> String {
        let prefix = crate::listeners::LISTENER_OVERRIDE_PREFIX;
        let override_value = self
            .security_settings
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .find_map(|(k, value)| {
                let (name, inner) = crate::listeners::split_listener_override(k)?;
                (inner == key && name.eq_ignore_ascii_case(listener)).then_some(value)
            });
        if let Some(value) = override_value.or_else(|| self.security_settings.get(key)) {
            return value.clone();
        }
        SETTINGS
            .iter()
            .find(|spec| spec.key == key)
            .map(|spec| spec.default.to_string())
            .unwrap_or_default()
    }

    /// The listener named `name`, if this broker has it.
    pub fn listener(&self, name: &str) -> Option<&crate::listeners::ListenerConfig> {
        self.listeners.iter().find(|l| l.name == name)
    }

    /// The per-log settings new partitions get.
    pub fn log_config(&self) -> fjord_storage::LogConfig {
        fjord_storage::LogConfig {
            segment_bytes: self.log_segment_bytes,
            segment_ms: self.log_roll_ms,
            index_interval_bytes: self.log_index_interval_bytes,
            flush_interval_messages: self.log_flush_interval_messages,
            flush_interval_ms: self.log_flush_interval_ms,
            retention_ms: self.log_retention_ms,
            retention_bytes: self.log_retention_bytes,
            compact: self.log_cleanup_policy.split(',').any(|p| p == "compact"),
            min_cleanable_dirty_ratio: self.log_cleaner_min_cleanable_ratio,
            delete_retention_ms: self.log_cleaner_delete_retention_ms,
            min_compaction_lag_ms: self.log_cleaner_min_compaction_lag_ms,
            max_compaction_lag_ms: self.log_cleaner_max_compaction_lag_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_kafka_like() {
        let config = BrokerConfig::from_settings(&BTreeMap::new()).unwrap();
        assert_eq!(config.listeners.len(), 1);
        assert_eq!(config.listeners[0].bind, "127.0.0.1:9092");
        assert_eq!(config.listeners[0].name, "PLAINTEXT");
        assert_eq!(config.inter_broker_listener_name, "PLAINTEXT");
        assert_eq!(config.metrics_listen, "127.0.0.1:9644");
        assert_eq!(config.listeners[0].advertised_port, 9092);
        assert_eq!(config.ssl_reload_check_interval_ms, 10_000);
        assert_eq!(config.message_max_bytes, 1_048_588);
        assert!(config.auto_create_topics_enable);
        assert_eq!(config.num_partitions, 1);
        assert_eq!(config.group_initial_rebalance_delay_ms, 3000);
        assert_eq!(config.group_min_session_timeout_ms, 6000);
        assert_eq!(config.group_max_session_timeout_ms, 1_800_000);
        assert_eq!(config.offsets_topic_num_partitions, 50);
        assert_eq!(config.offsets_retention_ms, 10080 * 60_000);
        assert_eq!(config.transactional_id_expiration_ms, 604_800_000);
        assert_eq!(config.transaction_max_timeout_ms, 900_000);
        assert_eq!(config.transaction_state_log_num_partitions, 50);
        assert_eq!(config.transaction_state_log_segment_bytes, 104_857_600);
        assert_eq!(
            config.transaction_abort_timed_out_transaction_cleanup_interval_ms,
            10_000
        );
        assert_eq!(
            config.transaction_remove_expired_transaction_cleanup_interval_ms,
            3_600_000
        );
        assert_eq!(config.producer_id_expiration_ms, 86_400_000);
        assert_eq!(config.producer_id_expiration_check_interval_ms, 600_000);
    }

    #[test]
    fn group_session_timeout_bounds_must_be_ordered() {
        let mut values = BTreeMap::new();
        values.insert(
            "group.min.session.timeout.ms".to_string(),
            "10000".to_string(),
        );
        values.insert(
            "group.max.session.timeout.ms".to_string(),
            "9000".to_string(),
        );
        assert!(matches!(
            BrokerConfig::from_settings(&values),
            Err(BrokerError::InvalidConfig { .. })
        ));
        let mut values = BTreeMap::new();
        values.insert(
            "group.initial.rebalance.delay.ms".to_string(),
            "0".to_string(),
        );
        assert_eq!(
            BrokerConfig::from_settings(&values)
                .unwrap()
                .group_initial_rebalance_delay_ms,
            0
        );
    }

    #[test]
    fn unknown_and_invalid_keys_are_rejected() {
        let mut values = BTreeMap::new();
        values.insert("num.partiton".to_string(), "3".to_string());
        assert!(matches!(
            BrokerConfig::from_settings(&values),
            Err(BrokerError::UnknownConfig { .. })
        ));
        let mut values = BTreeMap::new();
        values.insert("num.partitions".to_string(), "zero".to_string());
        assert!(matches!(
            BrokerConfig::from_settings(&values),
            Err(BrokerError::InvalidConfig { .. })
        ));
    }

    #[test]
    fn aliases_and_schemes_are_canonicalised() {
        assert_eq!(
            canonical_setting("listeners", "PLAINTEXT://0.0.0.0:9093"),
            ("listen".to_string(), "0.0.0.0:9093".to_string())
        );
        assert_eq!(
            canonical_setting("log.dirs", "/d"),
            ("data.dir".to_string(), "/d".to_string())
        );
        // Several listeners, or another name, keep their names.
        assert_eq!(
            canonical_setting("listeners", "SSL://h:1,PLAINTEXT://h:2").1,
            "SSL://h:1,PLAINTEXT://h:2"
        );
        assert_eq!(canonical_setting("listeners", "SSL://h:1").1, "SSL://h:1");
    }

    #[test]
    fn listener_overrides_are_known_settings_and_win_for_their_listener() {
        assert!(is_known_setting("listener.name.internal.ssl.client.auth"));
        assert!(is_known_setting("ssl.client.auth"));
        assert!(!is_known_setting("listener.name.internal.ssl.client.oath"));
        assert!(!is_known_setting("listener.name.internal.num.partitions"));
        assert!(!is_known_setting("listener.name.internal"));
        assert!(is_sensitive("ssl.keystore.key"));
        assert!(is_sensitive("listener.name.internal.ssl.keystore.key"));
        assert!(!is_sensitive("ssl.keystore.location"));
        let values: BTreeMap<String, String> = [
            ("listen", "INTERNAL://h:1,SSL://h:2"),
            ("listener.security.protocol.map", "INTERNAL:SSL"),
            ("ssl.client.auth", "requested"),
            ("listener.name.internal.ssl.client.auth", "required"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let config = BrokerConfig::from_settings(&values).unwrap();
        assert_eq!(
            config.listener_setting("INTERNAL", "ssl.client.auth"),
            "required"
        );
        assert_eq!(
            config.listener_setting("SSL", "ssl.client.auth"),
            "requested"
        );
        assert_eq!(config.listener_setting("SSL", "ssl.keystore.type"), "PEM");
        assert_eq!(config.inter_broker_listener_name, "INTERNAL");
        let mut bad = values.clone();
        bad.insert("listener.name.internal.ssl.nope".into(), "x".into());
        assert!(matches!(
            BrokerConfig::from_settings(&bad),
            Err(BrokerError::UnknownConfig { .. })
        ));
    }
}

#[cfg(test)]
mod quorum_settings_tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<BrokerConfig, BrokerError> {
        BrokerConfig::from_settings(
            &pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn rejected(pairs: &[(&str, &str)], key: &str) {
        match config(pairs) {
            Err(BrokerError::InvalidConfig { key: bad, .. }) => assert_eq!(bad, key, "{pairs:?}"),
            other => panic!("{pairs:?} should be refused for {key}: {other:?}"),
        }
    }

    #[test]
    fn a_single_node_is_its_own_in_process_voter() {
        let config = config(&[]).unwrap();
        assert_eq!(
            config.process_roles,
            ProcessRoles {
                broker: true,
                controller: true
            }
        );
        assert_eq!(config.controller_quorum_voters, vec![(1, None)]);
        assert_eq!(config.controller_listen, None);
        assert_eq!(config.broker_rack, None);
    }

    #[test]
    fn the_controller_listener_is_named_and_plaintext_or_ssl() {
        use crate::security::SecurityProtocol;
        let voters = "1@127.0.0.1:19191";
        let default = config(&[]).unwrap();
        assert_eq!(default.controller_listener_name, "CONTROLLER");
        assert_eq!(
            default.controller_security_protocol,
            SecurityProtocol::Plaintext
        );
        let ssl = config(&[
            ("controller.listen", "CONTROLLER://127.0.0.1:19191"),
            ("controller.quorum.voters", voters),
            ("listener.security.protocol.map", "CONTROLLER:SSL"),
        ])
        .unwrap();
        assert_eq!(ssl.controller_security_protocol, SecurityProtocol::Ssl);
        assert_eq!(ssl.controller_listen.as_deref(), Some("127.0.0.1:19191"));
        let named = config(&[
            ("controller.listener.names", "raft"),
            ("controller.listen", "127.0.0.1:19191"),
            ("controller.quorum.voters", voters),
            ("listener.security.protocol.map", "RAFT:SSL"),
        ])
        .unwrap();
        assert_eq!(named.controller_listener_name, "RAFT");
        assert_eq!(named.controller_security_protocol, SecurityProtocol::Ssl);
        rejected(
            &[("controller.listener.names", "A,B")],
            "controller.listener.names",
        );
        rejected(
            &[("listener.security.protocol.map", "CONTROLLER:SASL_SSL")],
            "controller.listener.names",
        );
        rejected(
            &[(
                "listener.security.protocol.map",
                "CONTROLLER:SASL_PLAINTEXT",
            )],
            "controller.listener.names",
        );
        rejected(
            &[("controller.listener.names", "PLAINTEXT")],
            "controller.listener.names",
        );
        rejected(
            &[
                ("controller.listen", "OTHER://127.0.0.1:19191"),
                ("controller.quorum.voters", voters),
            ],
            "controller.listen",
        );
        // The protocol's name as the prefix stays accepted (PLAINTEXT://, as before).
        assert!(config(&[
            ("controller.listen", "PLAINTEXT://127.0.0.1:19191"),
            ("controller.quorum.voters", voters),
        ])
        .is_ok());
    }

    #[test]
    fn a_three_voter_quorum_and_a_broker_only_node() {
        let voters = "1@127.0.0.1:19191,2@127.0.0.1:19192,3@127.0.0.1:19193";
        let second = config(&[
            ("node.id", "2"),
            ("controller.listen", "127.0.0.1:19192"),
            ("controller.quorum.voters", voters),
            ("broker.rack", "eu-1a"),
        ])
        .unwrap();
        assert_eq!(second.controller_quorum_voters.len(), 3);
        assert_eq!(
            second.controller_quorum_voters[1],
            (2, Some("127.0.0.1:19192".to_string()))
        );
        assert_eq!(second.broker_rack.as_deref(), Some("eu-1a"));
        let broker_only = config(&[
            ("node.id", "4"),
            ("process.roles", "broker"),
            ("controller.quorum.voters", voters),
        ])
        .unwrap();
        assert!(!broker_only.process_roles.controller);
    }

    #[test]
    fn quorum_mistakes_are_refused_as_kafka_refuses_them() {
        let voters = "1@127.0.0.1:19191,2@127.0.0.1:19192";
        // A controller that is not a voter.
        rejected(
            &[
                ("node.id", "3"),
                ("controller.listen", "127.0.0.1:19193"),
                ("controller.quorum.voters", voters),
            ],
            "controller.quorum.voters",
        );
        // A voter without the controller role.
        rejected(
            &[
                ("node.id", "1"),
                ("process.roles", "broker"),
                ("controller.quorum.voters", voters),
            ],
            "process.roles",
        );
        // A voter without its controller listener, or with another port.
        rejected(
            &[("node.id", "1"), ("controller.quorum.voters", voters)],
            "controller.listen",
        );
        rejected(
            &[
                ("node.id", "1"),
                ("controller.listen", "127.0.0.1:29191"),
                ("controller.quorum.voters", voters),
            ],
            "controller.listen",
        );
        // A broker-only node needs the voters, and has no controller listener.
        rejected(&[("process.roles", "broker")], "controller.quorum.voters");
        rejected(
            &[
                ("node.id", "4"),
                ("process.roles", "broker"),
                ("controller.listen", "127.0.0.1:19194"),
                ("controller.quorum.voters", voters),
            ],
            "controller.listen",
        );
        rejected(&[("process.roles", "broker,broker")], "process.roles");
        rejected(
            &[("controller.quorum.voters", "1@nowhere")],
            "controller.quorum.voters",
        );
        rejected(
            &[
                ("controller.quorum.voters", "1@a:1,1@b:2"),
                ("controller.listen", "a:1"),
            ],
            "controller.quorum.voters",
        );
        rejected(
            &[("broker.heartbeat.interval.ms", "9000")],
            "broker.session.timeout.ms",
        );
    }
}
