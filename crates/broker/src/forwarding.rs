//! Metadata changes sent to the controller (Kafka's `ForwardingManager` for admin requests and
//! `AutoTopicCreationManager`): CreateTopics, DeleteTopics, CreatePartitions and config
//! changes become [`ControllerRequest`]s; auto-created topics (Metadata, Produce) and the
//! coordinators' internal topics (`__consumer_offsets`, `__transaction_state`) are created the
//! same way. A controller reply means the change is committed in the metadata log; callers
//! that answer clients wait until *this* broker's image shows it
//! ([`Broker::wait_for_metadata`]), so a client that reads its own change back from this
//! broker sees it.
//!
//! Errors of the channel itself (no active controller within the timeout, too many waiting
//! requests, shutdown) all answer REQUEST_TIMED_OUT: Kafka's forwarding broker answers
//! REQUEST_TIMED_OUT when the controller does not answer in time, and the retriable
//! NOT_CONTROLLER is handled inside the channel (it retries until its timeout).

use std::collections::BTreeMap;
use std::sync::Arc;

use fjord_controller::{
    ApiError, ControllerReply, ControllerRequest, CreatableTopic, CreatableTopicResult,
    CreateTopicsReply, CreateTopicsRequest, ErrorCode,
};
use uuid::Uuid;

use crate::replica_manager::{
    Topic, GROUP_METADATA_TOPIC_NAME, OFFSETS_TOPIC_SEGMENT_BYTES, TRANSACTION_STATE_TOPIC_NAME,
};
use crate::Broker;

mod security;

/// How long a forwarded admin request waits for the controller and then for this broker's
/// image when the request carries no timeout of its own (Kafka's `request.timeout.ms`).
pub const CONTROLLER_REQUEST_TIMEOUT_MS: u64 = 30_000;
/// How long Metadata, Produce and FindCoordinator wait for a topic they asked the controller
/// to create before answering a retriable error (LEADER_NOT_AVAILABLE,
/// COORDINATOR_NOT_AVAILABLE) instead.
pub const AUTO_CREATE_WAIT_MS: u64 = 5_000;

/// A request's own timeout, bounded to something sane (0 or negative: the default).
pub fn timeout_from_request(timeout_ms: i32) -> u64 {
    match u64::try_from(timeout_ms) {
        Ok(0) | Err(_) => CONTROLLER_REQUEST_TIMEOUT_MS,
        Ok(ms) => ms.min(5 * 60_000),
    }
}

/// What a topic lookup with auto-creation found.
pub enum AutoCreated {
    /// The topic exists (perhaps created just now).
    Exists(Arc<Topic>),
    /// Creation was requested but the topic is not in this broker's image yet: answer
    /// LEADER_NOT_AVAILABLE so the client retries, as Kafka does.
    Creating,
    /// The topic does not exist and may not be created.
    Unknown,
    /// The controller refused (e.g. INVALID_REPLICATION_FACTOR) or did not answer.
    Failed(ApiError),
}

impl Broker {
    /// Sends `request` to the active controller. The reply's whole-request error
    /// ([`ControllerReply::Error`]) and channel failures (REQUEST_TIMED_OUT) come back as
    /// `Err`, with Kafka's codes and messages unchanged.
    pub async fn send_to_controller(
        &self,
        request: ControllerRequest,
        timeout_ms: u64,
    ) -> Result<ControllerReply, ApiError> {
        match self.controller().send(request, timeout_ms).await {
            Ok(ControllerReply::Error(error)) => Err(error),
            Ok(reply) => Ok(reply),
            Err(err) => Err(ApiError::new(ErrorCode::RequestTimedOut, err.to_string())),
        }
    }

    /// CreateTopics through the controller; unless `validate_only`, waits until every created
    /// topic is in this broker's image (at most `timeout_ms` in all).
    pub async fn create_topics_via_controller(
        &self,
        request: CreateTopicsRequest,
        timeout_ms: u64,
    ) -> Result<CreateTopicsReply, ApiError> {
        let validate_only = request.validate_only;
        let names: Vec<String> = request.topics.iter().map(|t| t.name.clone()).collect();
        let reply = match self
            .send_to_controller(ControllerRequest::CreateTopics(request), timeout_ms)
            .await?
        {
            ControllerReply::CreateTopics(reply) => reply,
            other => return Err(unexpected(&other)),
        };
        debug_assert_eq!(reply.topics.len(), names.len());
        if !validate_only {
            let created: Vec<Uuid> = reply
                .topics
                .iter()
                .filter(|t| t.error.is_ok())
                .map(|t| t.topic_id)
                .collect();
            if !created.is_empty()
                && !self
                    .wait_for_metadata(
                        |image| created.iter().all(|id| image.topic(id).is_some()),
                        timeout_ms,
                    )
                    .await
            {
                tracing::warn!(topics = ?names, "created topics did not reach this broker's image in time");
            }
        }
        Ok(reply)
    }

    /// Looks `name` up, asking the controller to create it with the broker defaults
    /// (`num.partitions`, `default.replication.factor`) if auto-creation is on and the caller
    /// allows it (Kafka auto-creates on Metadata; Fjord also on Produce). Internal topics are
    /// created with their own settings whatever `auto.create.topics.enable` says.
    pub async fn topic_or_auto_create(&self, name: &str, allow_auto_create: bool) -> AutoCreated {
        if let Some(topic) = self.replica_manager().topic(name) {
            return AutoCreated::Exists(topic);
        }
        let config = self.config();
        let live_brokers = self.image().live_brokers().count();
        let topic = match internal_topic_spec(name, &config, live_brokers) {
            Some(spec) => spec,
            None if allow_auto_create && config.auto_create_topics_enable => CreatableTopic {
                name: name.to_string(),
                num_partitions: config.num_partitions,
                replication_factor: config.default_replication_factor,
                assignments: Vec::new(),
                configs: Vec::new(),
            },
            None => return AutoCreated::Unknown,
        };
        self.create_and_wait(topic).await
    }

    /// A coordinator's internal topic, created through the controller on first use with its
    /// partition count and configs (Kafka's `AutoTopicCreationManager` for
    /// FindCoordinator). `None` while it is not in this broker's image yet (the caller answers
    /// COORDINATOR_NOT_AVAILABLE so clients retry) or when creation failed.
    pub async fn internal_topic_or_create(&self, name: &str) -> Option<Arc<Topic>> {
        match self.topic_or_auto_create(name, true).await {
            AutoCreated::Exists(topic) => Some(topic),
            AutoCreated::Failed(error) => {
                tracing::warn!(topic = name, code = ?error.code, message = ?error.message, "could not create an internal topic");
                None
            }
            AutoCreated::Creating | AutoCreated::Unknown => None,
        }
    }

    async fn create_and_wait(&self, topic: CreatableTopic) -> AutoCreated {
        let name = topic.name.clone();
        let request = CreateTopicsRequest {
            topics: vec![topic],
            validate_only: false,
        };
        let result = match self
            .send_to_controller(
                ControllerRequest::CreateTopics(request),
                AUTO_CREATE_WAIT_MS,
            )
            .await
        {
            Ok(ControllerReply::CreateTopics(reply)) => reply.topics.into_iter().next(),
            Ok(other) => return AutoCreated::Failed(unexpected(&other)),
            Err(error) => return AutoCreated::Failed(error),
        };
        match result {
            Some(CreatableTopicResult { error, .. })
                if error.is_ok() || error.code == ErrorCode::TopicAlreadyExists =>
            {
                tracing::info!(topic = %name, "auto-created topic");
            }
            Some(CreatableTopicResult { error, .. }) => return AutoCreated::Failed(error),
            None => {
                return AutoCreated::Failed(ApiError::new(
                    ErrorCode::UnknownServerError,
                    "the controller answered no topic",
                ))
            }
        }
        let visible = self
            .wait_for_metadata(
                |image| image.topic_by_name(&name).is_some(),
                AUTO_CREATE_WAIT_MS,
            )
            .await;
        match self.replica_manager().topic(&name) {
            Some(topic) if visible => AutoCreated::Exists(topic),
            _ => AutoCreated::Creating,
        }
    }
}

/// The CreateTopics entry of an internal topic: `__consumer_offsets` with
/// `offsets.topic.num.partitions` partitions and 100 MiB segments, `__transaction_state` with
/// `transaction.state.log.num.partitions` and `transaction.state.log.segment.bytes`; both
/// compacted, compression as produced (Kafka's `GroupCoordinator.groupMetadataTopicConfigs`
/// and `TransactionStateManager.transactionTopicConfigs`). Replication factor:
/// `offsets.topic.replication.factor` / `transaction.state.log.replication.factor`, at most
/// the number of live brokers (Kafka 4 refuses with COORDINATOR_NOT_AVAILABLE until enough
/// brokers exist; Fjord creates the topic on what there is, so a single node works with the
/// defaults, and logs it); `__transaction_state` gets `min.insync.replicas` =
/// `transaction.state.log.min.isr`, at most its replication factor.
pub fn internal_topic_spec(
    name: &str,
    config: &crate::BrokerConfig,
    live_brokers: usize,
) -> Option<CreatableTopic> {
    let (partitions, segment_bytes, configured_rf) = match name {
        GROUP_METADATA_TOPIC_NAME => (
            config.offsets_topic_num_partitions,
            OFFSETS_TOPIC_SEGMENT_BYTES.to_string(),
            config.offsets_topic_replication_factor,
        ),
        TRANSACTION_STATE_TOPIC_NAME => (
            config.transaction_state_log_num_partitions,
            config.transaction_state_log_segment_bytes.to_string(),
            config.transaction_state_log_replication_factor,
        ),
        _ => return None,
    };
    let replication_factor =
        configured_rf.min(i16::try_from(live_brokers.max(1)).unwrap_or(i16::MAX));
    if replication_factor < configured_rf {
        tracing::warn!(
            topic = name,
            configured = configured_rf,
            live_brokers,
            "creating an internal topic with fewer replicas than configured: not enough live brokers"
        );
    }
    let mut configs = BTreeMap::from([
        ("cleanup.policy".to_string(), "compact".to_string()),
        ("segment.bytes".to_string(), segment_bytes),
        ("compression.type".to_string(), "producer".to_string()),
    ]);
    if name == TRANSACTION_STATE_TOPIC_NAME {
        configs.insert(
            "min.insync.replicas".to_string(),
            config
                .transaction_state_log_min_isr
                .min(replication_factor)
                .to_string(),
        );
    }
    Some(CreatableTopic {
        name: name.to_string(),
        num_partitions: partitions,
        replication_factor,
        assignments: Vec::new(),
        configs: configs.into_iter().map(|(k, v)| (k, Some(v))).collect(),
    })
}

/// A reply of the wrong kind: a controller bug.
pub fn unexpected(reply: &ControllerReply) -> ApiError {
    tracing::error!(
        ?reply,
        "the controller answered with a reply of another request"
    );
    ApiError::new(ErrorCode::UnknownServerError, "unexpected controller reply")
}
