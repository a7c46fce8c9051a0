//! Where every request is authorized (Kafka `KafkaApis` and `AuthHelper`): which resource,
//! which operation, which error, decided in one place per API before the handler runs.
//!
//! [`gate`] looks at a decoded request and either refuses it whole (the response Kafka's
//! `getErrorResponse` gives, [`crate::apis::error_response`]), or lets it through with the
//! unauthorized parts taken out (topics a producer may not WRITE, groups a client may not
//! DESCRIBE, ...) and [`Patch`]es that put their error entries into the handler's response
//! afterwards, the way `KafkaApis` merges `unauthorizedTopicResponses` into its answers. Some
//! patches filter instead (topics of an all-topics Metadata, groups of ListGroups,
//! transactions of ListTransactions, partitions an incremental fetch session brings along)
//! or fill `authorized_operations` when the client asked for them. Handlers stay unaware.
//!
//! Denials are counted (`fjord_authorization_failures_total{resource_type}`) and logged at
//! debug, at most [`DENIAL_LOGS_PER_SECOND_MAX`] lines a second (Kafka's
//! `kafka.authorizer.logger` logs every one at INFO).

use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use fjord_metadata::security::{AclOperation, AclResourceType};
use fjord_metadata::MetadataImage;
use fjord_protocol::kafka_protocol::messages::*;
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ApiKey, RequestKind, ResponseError, ResponseKind};
use uuid::Uuid;

use super::authorizer::{
    operations_bit_field, supported_operations, AclIndex, Authorizer, Caller, CLUSTER_NAME,
};
use super::Session;
use crate::apis::error_response::{self as errors, error_response};
use crate::BrokerConfig;

use AclOperation::*;
use AclResourceType::{Cluster, Group, Topic, TransactionalId};

/// The cluster operation each ACL, SCRAM and quota API needs (Kafka `KafkaApis` and the
/// controller's checks), applied at dispatch so their handlers need no check of their own.
pub const CLUSTER_OPERATION_APIS: &[(ApiKey, AclOperation)] = &[
    (ApiKey::CreateAcls, Alter),
    (ApiKey::DeleteAcls, Alter),
    (ApiKey::DescribeAcls, Describe),
    (ApiKey::AlterUserScramCredentials, Alter),
    (ApiKey::DescribeUserScramCredentials, Describe),
    (ApiKey::AlterClientQuotas, AlterConfigs),
    (ApiKey::DescribeClientQuotas, DescribeConfigs),
    (ApiKey::ElectLeaders, Alter),
    (ApiKey::AlterPartitionReassignments, Alter),
    (ApiKey::ListPartitionReassignments, Describe),
    (ApiKey::UnregisterBroker, Alter),
    (ApiKey::DescribeQuorum, Describe),
    (ApiKey::DescribeLogDirs, Describe),
    (ApiKey::WriteTxnMarkers, ClusterAction),
];

/// Denial log lines per second at most; the rest are only counted.
pub const DENIAL_LOGS_PER_SECOND_MAX: i64 = 20;

/// Denials by resource type: topic, group, cluster, transactional id, other.
#[derive(Debug, Default)]
pub struct AuthorizationMetrics {
    failures: [AtomicU64; 5],
    log_window_s: AtomicI64,
    logs_in_window: AtomicI64,
}

impl AuthorizationMetrics {
    pub const RESOURCE_TYPES: [&'static str; 5] =
        ["topic", "group", "cluster", "transactional_id", "other"];

    fn slot(resource_type: AclResourceType) -> usize {
        match resource_type {
            Topic => 0,
            Group => 1,
            Cluster => 2,
            TransactionalId => 3,
            _ => 4,
        }
    }

    /// Failed authorizations of `resource_type` so far.
    pub fn failures(&self, resource_type: AclResourceType) -> u64 {
        self.failures[Self::slot(resource_type)].load(Ordering::Relaxed)
    }

    /// `(label, count)` per resource type, for `/metrics`.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        Self::RESOURCE_TYPES
            .iter()
            .zip(&self.failures)
            .map(|(label, count)| (*label, count.load(Ordering::Relaxed)))
            .collect()
    }

    fn record(&self, resource_type: AclResourceType) -> bool {
        self.failures[Self::slot(resource_type)].fetch_add(1, Ordering::Relaxed);
        let now_s = crate::time::now_ms() / 1000;
        if self.log_window_s.swap(now_s, Ordering::Relaxed) != now_s {
            self.logs_in_window.store(0, Ordering::Relaxed);
        }
        self.logs_in_window.fetch_add(1, Ordering::Relaxed) < DENIAL_LOGS_PER_SECOND_MAX
    }
}

/// One request's view of the authorizer: the caller and the ACL index of the image the
/// request is served from. Cheap to clone (patches keep one).
#[derive(Clone)]
pub struct RequestAuthorizer {
    /// `None`: no authorizer configured, everything is allowed.
    enforced: Option<(Arc<Authorizer>, Arc<AclIndex>)>,
    caller: Caller,
    api_key: ApiKey,
    metrics: Arc<AuthorizationMetrics>,
}

impl RequestAuthorizer {
    /// `enforced`: the authorizer and the ACLs it checks, `None` when no authorizer is
    /// configured. Then nothing is looked up or formatted: the caller is only needed to match
    /// ACLs, and every request pays for this.
    pub fn new(
        enforced: Option<(&Arc<Authorizer>, &Arc<super::authorizer::AclMap>)>,
        session: &Session,
        api_key: ApiKey,
        metrics: Arc<AuthorizationMetrics>,
    ) -> Self {
        let caller = match enforced {
            Some(_) => Caller::new(&session.principal, session.client_address),
            None => Caller::default(),
        };
        Self {
            enforced: enforced
                .map(|(authorizer, acls)| (authorizer.clone(), authorizer.index(acls))),
            caller,
            api_key,
            metrics,
        }
    }

    pub fn is_enforced(&self) -> bool {
        self.enforced.is_some()
    }

    /// Kafka `AuthHelper.authorize` with `logIfDenied = true`: a denial is counted and logged.
    pub fn allowed(
        &self,
        resource_type: AclResourceType,
        name: &str,
        operation: AclOperation,
    ) -> bool {
        let allowed = self.allowed_quietly(resource_type, name, operation);
        if !allowed && self.metrics.record(resource_type) {
            tracing::debug!(
                principal = %self.caller.principal,
                host = %self.caller.host,
                api = ?self.api_key,
                ?resource_type,
                resource = name,
                ?operation,
                "authorization failed"
            );
        }
        allowed
    }

    /// `logIfDenied = false`: for checks whose denial is not an error (filters).
    pub fn allowed_quietly(
        &self,
        resource_type: AclResourceType,
        name: &str,
        operation: AclOperation,
    ) -> bool {
        match &self.enforced {
            None => true,
            Some((authorizer, index)) => {
                authorizer.authorize(index, &self.caller, resource_type, name, operation)
            }
        }
    }

    /// Kafka `authorizeByResourceType`.
    pub fn allowed_on_any(&self, resource_type: AclResourceType, operation: AclOperation) -> bool {
        match &self.enforced {
            None => true,
            Some((authorizer, index)) => {
                authorizer.authorize_any(index, &self.caller, resource_type, operation)
            }
        }
    }

    fn cluster(&self, operation: AclOperation) -> bool {
        self.allowed(Cluster, CLUSTER_NAME, operation)
    }

    /// The `authorized_operations` bit field (every supported operation without authorizer).
    pub fn operations(&self, resource_type: AclResourceType, name: &str) -> i32 {
        match &self.enforced {
            None => operations_bit_field(supported_operations(resource_type).iter().copied()),
            Some((authorizer, index)) => {
                authorizer.authorized_operations(index, &self.caller, resource_type, name)
            }
        }
    }
}

/// A change to the handler's response: error entries merged in, or entries filtered out.
pub type Patch = Box<dyn FnOnce(&mut ResponseKind) + Send>;

/// What to do with a request.
pub enum Gate {
    /// Handle it; apply the patches to the response in order. `denied` says whether some
    /// part of the request was refused (a Produce with acks=0 then closes the connection).
    Proceed {
        request: RequestKind,
        patches: Vec<Patch>,
        denied: bool,
    },
    /// Refused as a whole: send this.
    Respond(ResponseKind),
}

impl Gate {
    fn proceed(request: RequestKind) -> Self {
        Gate::Proceed {
            request,
            patches: Vec::new(),
            denied: false,
        }
    }
}

/// Applies `patches` to `response`, in order.
pub fn apply(patches: Vec<Patch>, response: &mut ResponseKind) {
    for patch in patches {
        patch(response);
    }
}

/// A topic's name from the request: the name, or (for requests by topic id) the image's name
/// for the id. `None` for an unknown id (the handler answers UNKNOWN_TOPIC_ID).
fn topic_name(image: &MetadataImage, name: &TopicName, topic_id: Uuid) -> Option<String> {
    if !name.0.is_empty() || topic_id.is_nil() {
        return Some(name.0.to_string());
    }
    image.topic(&topic_id).map(|topic| topic.name.clone())
}

/// Splits `items` into (allowed, denied) by `allowed`.
fn split<T>(items: Vec<T>, mut allowed: impl FnMut(&T) -> bool) -> (Vec<T>, Vec<T>) {
    items.into_iter().partition(|item| allowed(item))
}

/// Resource type and error of a config resource (Kafka `ConfigResource.Type` codes): topics
/// and groups are their own resources, everything else (brokers, broker loggers, client
/// metrics) is the cluster's.
fn config_resource(resource_type: i8, name: &StrBytes) -> (AclResourceType, String, ResponseError) {
    match resource_type {
        2 => (
            Topic,
            name.to_string(),
            ResponseError::TopicAuthorizationFailed,
        ),
        32 => (
            Group,
            name.to_string(),
            ResponseError::GroupAuthorizationFailed,
        ),
        _ => (
            Cluster,
            CLUSTER_NAME.to_string(),
            ResponseError::ClusterAuthorizationFailed,
        ),
    }
}

const TOPIC_DENIED: i16 = ResponseError::TopicAuthorizationFailed.code();

/// Decides `request`'s fate for the caller of `auth` (Kafka `KafkaApis.handle*`).
pub fn gate(
    auth: &RequestAuthorizer,
    image: &Arc<MetadataImage>,
    config: &BrokerConfig,
    api_version: i16,
    request: RequestKind,
) -> Gate {
    if !auth.is_enforced() {
        // Without authorizer only the authorized operations the client asked for.
        return operations_only(auth, request);
    }
    let refuse = |request: &RequestKind, error: ResponseError| match error_response(
        api_version,
        request,
        error,
    ) {
        Some(response) => Gate::Respond(response),
        None => Gate::proceed(request.clone()),
    };
    // The cluster-level APIs.
    let api_key = api_key_of(&request);
    if let Some((_, operation)) =
        api_key.and_then(|key| CLUSTER_OPERATION_APIS.iter().find(|(api, _)| *api == key))
    {
        if !auth.cluster(*operation) {
            return refuse(&request, ResponseError::ClusterAuthorizationFailed);
        }
        return Gate::proceed(request);
    }
    let mut patches: Vec<Patch> = Vec::new();
    let mut denied = false;
    let request = match request {
        RequestKind::Produce(mut r) => {
            if let Some(id) = &r.transactional_id {
                if !auth.allowed(TransactionalId, id, Write) {
                    let request = RequestKind::Produce(r);
                    return refuse(&request, ResponseError::TransactionalIdAuthorizationFailed);
                }
            }
            let (allowed, refused) = split(std::mem::take(&mut r.topic_data), |t| {
                topic_name(image, &t.name, t.topic_id)
                    .is_none_or(|name| auth.allowed(Topic, &name, Write))
            });
            r.topic_data = allowed;
            if !refused.is_empty() {
                denied = true;
                patches.push(Box::new(move |response| {
                    if let ResponseKind::Produce(response) = response {
                        response.responses.extend(refused.iter().map(|t| {
                            produce_response::TopicProduceResponse::default()
                                .with_name(t.name.clone())
                                .with_topic_id(t.topic_id)
                                .with_partition_responses(
                                    t.partition_data
                                        .iter()
                                        .map(|p| {
                                            errors::produce_partition_error(p.index, TOPIC_DENIED)
                                        })
                                        .collect(),
                                )
                        }));
                    }
                }));
            }
            RequestKind::Produce(r)
        }
        RequestKind::Fetch(mut r) => {
            if crate::apis::fetch::follower_of(api_version, &r).is_some() {
                if !auth.cluster(ClusterAction) {
                    // Kafka: every partition of a follower without CLUSTER_ACTION answers
                    // TOPIC_AUTHORIZATION_FAILED.
                    return Gate::Respond(ResponseKind::Fetch(fetch_refused(&r)));
                }
                RequestKind::Fetch(r)
            } else {
                let (allowed, refused) = split(std::mem::take(&mut r.topics), |t| {
                    topic_name(image, &t.topic, t.topic_id)
                        .is_none_or(|name| auth.allowed(Topic, &name, Read))
                });
                r.topics = allowed;
                // Partitions an incremental session brings along are checked on the way out
                // (a sessionless fetch answers only what it named, checked above).
                let sessionless = r.session_id == 0 && r.session_epoch == -1;
                let filter = auth.clone();
                let filter_image = image.clone();
                patches.extend((!sessionless).then(|| -> Patch {
                    Box::new(move |response| {
                        if let ResponseKind::Fetch(response) = response {
                            for topic in &mut response.responses {
                                let readable =
                                    topic_name(&filter_image, &topic.topic, topic.topic_id)
                                        .is_none_or(|name| {
                                            filter.allowed_quietly(Topic, &name, Read)
                                        });
                                if !readable {
                                    for p in &mut topic.partitions {
                                        *p = fetch_partition_error(p.partition_index);
                                    }
                                }
                            }
                        }
                    })
                }));
                if !refused.is_empty() {
                    patches.push(Box::new(move |response| {
                        if let ResponseKind::Fetch(response) = response {
                            response.responses.extend(refused.iter().map(|t| {
                                fetch_response::FetchableTopicResponse::default()
                                    .with_topic(t.topic.clone())
                                    .with_topic_id(t.topic_id)
                                    .with_partitions(
                                        t.partitions
                                            .iter()
                                            .map(|p| fetch_partition_error(p.partition))
                                            .collect(),
                                    )
                            }));
                        }
                    }));
                }
                RequestKind::Fetch(r)
            }
        }
        RequestKind::ListOffsets(mut r) => {
            let (allowed, refused) = split(std::mem::take(&mut r.topics), |t| {
                auth.allowed(Topic, &t.name, Describe)
            });
            r.topics = allowed;
            if !refused.is_empty() {
                patches.push(Box::new(move |response| {
                    if let ResponseKind::ListOffsets(response) = response {
                        response.topics.extend(refused.iter().map(|t| {
                            list_offsets_response::ListOffsetsTopicResponse::default()
                                .with_name(t.name.clone())
                                .with_partitions(
                                    t.partitions
                                        .iter()
                                        .map(|p| {
                                            errors::list_offsets_partition_error(
                                                p.partition_index,
                                                TOPIC_DENIED,
                                            )
                                        })
                                        .collect(),
                                )
                        }));
                    }
                }));
            }
            RequestKind::ListOffsets(r)
        }
        RequestKind::Metadata(r) => {
            return metadata(auth, image, config, api_version, r);
        }
        RequestKind::OffsetCommit(mut r) => {
            if !auth.allowed(Group, &r.group_id, Read) {
                return refuse(
                    &RequestKind::OffsetCommit(r),
                    ResponseError::GroupAuthorizationFailed,
                );
            }
            let (allowed, refused) = split(std::mem::take(&mut r.topics), |t| {
                topic_name(image, &t.name, t.topic_id)
                    .is_none_or(|name| auth.allowed(Topic, &name, Read))
            });
            r.topics = allowed;
            if !refused.is_empty() {
                patches.push(Box::new(move |response| {
                    if let ResponseKind::OffsetCommit(response) = response {
                        response.topics.extend(refused.iter().map(|t| {
                            offset_commit_response::OffsetCommitResponseTopic::default()
                                .with_name(t.name.clone())
                                .with_topic_id(t.topic_id)
                                .with_partitions(
                                    t.partitions
                                        .iter()
                                        .map(|p| {
                                            offset_commit_response::OffsetCommitResponsePartition::default()
                                                .with_partition_index(p.partition_index)
                                                .with_error_code(TOPIC_DENIED)
                                        })
                                        .collect(),
                                )
                        }));
                    }
                }));
            }
            RequestKind::OffsetCommit(r)
        }
        RequestKind::OffsetFetch(r) => return offset_fetch(auth, image, api_version, r),
        RequestKind::FindCoordinator(mut r) => {
            let resource = |key_type: i8| match key_type {
                1 => (
                    TransactionalId,
                    ResponseError::TransactionalIdAuthorizationFailed,
                ),
                _ => (Group, ResponseError::GroupAuthorizationFailed),
            };
            let (resource_type, error) = resource(r.key_type);
            if api_version < 4 {
                if !auth.allowed(resource_type, &r.key, Describe) {
                    return refuse(&RequestKind::FindCoordinator(r), error);
                }
            } else {
                let (allowed, refused) = split(std::mem::take(&mut r.coordinator_keys), |key| {
                    auth.allowed(resource_type, key, Describe)
                });
                r.coordinator_keys = allowed;
                if !refused.is_empty() {
                    patches.push(Box::new(move |response| {
                        if let ResponseKind::FindCoordinator(response) = response {
                            response.coordinators.extend(
                                refused
                                    .into_iter()
                                    .map(|key| errors::coordinator_error(key, error)),
                            );
                        }
                    }));
                }
            }
            RequestKind::FindCoordinator(r)
        }
        RequestKind::JoinGroup(r) => {
            if !auth.allowed(Group, &r.group_id, Read) {
                return refuse(
                    &RequestKind::JoinGroup(r),
                    ResponseError::GroupAuthorizationFailed,
                );
            }
            RequestKind::JoinGroup(r)
        }
        RequestKind::SyncGroup(r) => {
            if !auth.allowed(Group, &r.group_id, Read) {
                return refuse(
                    &RequestKind::SyncGroup(r),
                    ResponseError::GroupAuthorizationFailed,
                );
            }
            RequestKind::SyncGroup(r)
        }
        RequestKind::Heartbeat(r) => {
            if !auth.allowed(Group, &r.group_id, Read) {
                return refuse(
                    &RequestKind::Heartbeat(r),
                    ResponseError::GroupAuthorizationFailed,
                );
            }
            RequestKind::Heartbeat(r)
        }
        RequestKind::LeaveGroup(r) => {
            if !auth.allowed(Group, &r.group_id, Read) {
                return refuse(
                    &RequestKind::LeaveGroup(r),
                    ResponseError::GroupAuthorizationFailed,
                );
            }
            RequestKind::LeaveGroup(r)
        }
        RequestKind::DescribeGroups(mut r) => {
            let (allowed, refused) = split(std::mem::take(&mut r.groups), |g| {
                auth.allowed(Group, g, Describe)
            });
            r.groups = allowed;
            patches.push(Box::new(move |response| {
                if let ResponseKind::DescribeGroups(response) = response {
                    response.groups.extend(refused.into_iter().map(|g| {
                        errors::described_group_error(
                            g,
                            ResponseError::GroupAuthorizationFailed.code(),
                        )
                    }));
                }
            }));
            RequestKind::DescribeGroups(r)
        }
        RequestKind::ListGroups(r) => {
            if !auth.allowed_quietly(Cluster, CLUSTER_NAME, Describe) {
                let filter = auth.clone();
                patches.push(Box::new(move |response| {
                    if let ResponseKind::ListGroups(response) = response {
                        response
                            .groups
                            .retain(|g| filter.allowed_quietly(Group, &g.group_id, Describe));
                    }
                }));
            }
            RequestKind::ListGroups(r)
        }
        RequestKind::DeleteGroups(mut r) => {
            let (allowed, refused) = split(std::mem::take(&mut r.groups_names), |g| {
                auth.allowed(Group, g, Delete)
            });
            r.groups_names = allowed;
            if !refused.is_empty() {
                patches.push(Box::new(move |response| {
                    if let ResponseKind::DeleteGroups(response) = response {
                        response.results.extend(refused.into_iter().map(|g| {
                            delete_groups_response::DeletableGroupResult::default()
                                .with_group_id(g)
                                .with_error_code(ResponseError::GroupAuthorizationFailed.code())
                        }));
                    }
                }));
            }
            RequestKind::DeleteGroups(r)
        }
        RequestKind::OffsetDelete(mut r) => {
            if !auth.allowed(Group, &r.group_id, Delete) {
                return refuse(
                    &RequestKind::OffsetDelete(r),
                    ResponseError::GroupAuthorizationFailed,
                );
            }
            let (allowed, refused) = split(std::mem::take(&mut r.topics), |t| {
                auth.allowed(Topic, &t.name, Read)
            });
            r.topics = allowed;
            if !refused.is_empty() {
                patches.push(Box::new(move |response| {
                    if let ResponseKind::OffsetDelete(response) = response {
                        response.topics.extend(refused.iter().map(|t| {
                            offset_delete_response::OffsetDeleteResponseTopic::default()
                                .with_name(t.name.clone())
                                .with_partitions(
                                    t.partitions
                                        .iter()
                                        .map(|p| {
                                            offset_delete_response::OffsetDeleteResponsePartition::default()
                                                .with_partition_index(p.partition_index)
                                                .with_error_code(TOPIC_DENIED)
                                        })
                                        .collect(),
                                )
                        }));
                    }
                }));
            }
            RequestKind::OffsetDelete(r)
        }
        RequestKind::ConsumerGroupHeartbeat(r) => {
            if !auth.allowed(Group, &r.group_id, Read) {
                return refuse(
                    &RequestKind::ConsumerGroupHeartbeat(r),
                    ResponseError::GroupAuthorizationFailed,
                );
            }
            // Kafka: subscribed topics the member may not DESCRIBE refuse the heartbeat.
            let hidden = r
                .subscribed_topic_names
                .iter()
                .flatten()
                .any(|t| !auth.allowed(Topic, t, Describe));
            if hidden {
                return refuse(
                    &RequestKind::ConsumerGroupHeartbeat(r),
                    ResponseError::TopicAuthorizationFailed,
                );
            }
            RequestKind::ConsumerGroupHeartbeat(r)
        }
        RequestKind::ConsumerGroupDescribe(mut r) => {
            let (allowed, refused) = split(std::mem::take(&mut r.group_ids), |g| {
                auth.allowed(Group, g, Describe)
            });
            r.group_ids = allowed;
            patches.push(Box::new(move |response| {
                if let ResponseKind::ConsumerGroupDescribe(response) = response {
                    response.groups.extend(refused.into_iter().map(|g| {
                        errors::consumer_group_described_error(
                            g,
                            ResponseError::GroupAuthorizationFailed,
                        )
                    }));
                }
            }));
            RequestKind::ConsumerGroupDescribe(r)
        }
        RequestKind::CreateTopics(mut r) => {
            if !auth.allowed_quietly(Cluster, CLUSTER_NAME, Create) {
                let (allowed, refused) = split(std::mem::take(&mut r.topics), |t| {
                    auth.allowed(Topic, &t.name, Create)
                });
                r.topics = allowed;
                if !refused.is_empty() {
                    patches.push(Box::new(move |response| {
                        if let ResponseKind::CreateTopics(response) = response {
                            response.topics.extend(refused.into_iter().map(|t| {
                                errors::create_topic_error(
                                    t.name,
                                    ResponseError::TopicAuthorizationFailed,
                                )
                            }));
                        }
                    }));
                }
            }
            // Kafka returns a created topic's configs only to callers that may
            // DESCRIBE_CONFIGS it.
            let filter = auth.clone();
            patches.push(Box::new(move |response| {
                if let ResponseKind::CreateTopics(response) = response {
                    for topic in response.topics.iter_mut().filter(|t| t.error_code == 0) {
                        if !filter.allowed_quietly(Topic, &topic.name, DescribeConfigs) {
                            topic.configs = None;
                            topic.topic_config_error_code = TOPIC_DENIED;
                        }
                    }
                }
            }));
            RequestKind::CreateTopics(r)
        }
        RequestKind::DeleteTopics(mut r) => {
            let (names, refused_names) = split(std::mem::take(&mut r.topic_names), |t| {
                auth.allowed(Topic, t, Delete)
            });
            r.topic_names = names;
            // A topic given by id: an unknown id is the handler's UNKNOWN_TOPIC_ID (Kafka
            // resolves ids before authorizing); a refused one names its topic only to a
            // principal that may DESCRIBE it (Kafka's ControllerApis.deleteTopics).
            let mut topics = Vec::with_capacity(r.topics.len());
            let mut refused_topics = Vec::new();
            for mut t in std::mem::take(&mut r.topics) {
                let name = match &t.name {
                    Some(name) => Some(name.0.to_string()),
                    None => image.topic(&t.topic_id).map(|topic| topic.name.clone()),
                };
                match name {
                    Some(name) if !auth.allowed(Topic, &name, Delete) => {
                        if t.name.is_none() && auth.allowed(Topic, &name, Describe) {
                            t.name = Some(TopicName(StrBytes::from_string(name)));
                        }
                        refused_topics.push(t);
                    }
                    _ => topics.push(t),
                }
            }
            r.topics = topics;
            if !refused_names.is_empty() || !refused_topics.is_empty() {
                patches.push(Box::new(move |response| {
                    if let ResponseKind::DeleteTopics(response) = response {
                        let result = |name: Option<TopicName>, topic_id: Uuid| {
                            delete_topics_response::DeletableTopicResult::default()
                                .with_name(name)
                                .with_topic_id(topic_id)
                                .with_error_code(TOPIC_DENIED)
                        };
                        response.responses.extend(
                            refused_names
                                .into_iter()
                                .map(|n| result(Some(n), Uuid::nil())),
                        );
                        response.responses.extend(
                            refused_topics
                                .into_iter()
                                .map(|t| result(t.name, t.topic_id)),
                        );
                    }
                }));
            }
            RequestKind::DeleteTopics(r)
        }
        RequestKind::CreatePartitions(mut r) => {
            let (allowed, refused) = split(std::mem::take(&mut r.topics), |t| {
                auth.allowed(Topic, &t.name, Alter)
            });
            r.topics = allowed;
            if !refused.is_empty() {
                patches.push(Box::new(move |response| {
                    if let ResponseKind::CreatePartitions(response) = response {
                        response.results.extend(refused.into_iter().map(|t| {
                            errors::create_partitions_error(
                                t.name,
                                ResponseError::TopicAuthorizationFailed,
                            )
                        }));
                    }
                }));
            }
            RequestKind::CreatePartitions(r)
        }
        RequestKind::DeleteRecords(mut r) => {
            let (allowed, refused) = split(std::mem::take(&mut r.topics), |t| {
                auth.allowed(Topic, &t.name, Delete)
            });
            r.topics = allowed;
            if !refused.is_empty() {
                patches.push(Box::new(move |response| {
                    if let ResponseKind::DeleteRecords(response) = response {
                        response.topics.extend(refused.iter().map(|t| {
                            delete_records_response::DeleteRecordsTopicResult::default()
                                .with_name(t.name.clone())
                                .with_partitions(
                                    t.partitions
                                        .iter()
                                        .map(|p| {
                                            errors::delete_records_partition_error(
                                                p.partition_index,
                                                TOPIC_DENIED,
                                            )
                                        })
                                        .collect(),
                                )
                        }));
                    }
                }));
            }
            RequestKind::DeleteRecords(r)
        }
        RequestKind::DescribeConfigs(mut r) => {
            let (allowed, refused) = split(std::mem::take(&mut r.resources), |res| {
                let (resource_type, name, _) =
                    config_resource(res.resource_type, &res.resource_name);
                auth.allowed(resource_type, &name, DescribeConfigs)
            });
            r.resources = allowed;
            if !refused.is_empty() {
                patches.push(Box::new(move |response| {
                    if let ResponseKind::DescribeConfigs(response) = response {
                        response.results.extend(refused.into_iter().map(|res| {
                            let (_, _, error) =
                                config_resource(res.resource_type, &res.resource_name);
                            errors::describe_configs_result_error(
                                res.resource_type,
                                res.resource_name,
                                error,
                            )
                        }));
                    }
                }));
            }
            RequestKind::DescribeConfigs(r)
        }
        RequestKind::AlterConfigs(mut r) => {
            let (allowed, refused) = split(std::mem::take(&mut r.resources), |res| {
                let (resource_type, name, _) =
                    config_resource(res.resource_type, &res.resource_name);
                auth.allowed(resource_type, &name, AlterConfigs)
            });
            r.resources = allowed;
            if !refused.is_empty() {
                patches.push(Box::new(move |response| {
                    if let ResponseKind::AlterConfigs(response) = response {
                        response.responses.extend(refused.into_iter().map(|res| {
                            let (_, _, error) =
                                config_resource(res.resource_type, &res.resource_name);
                            errors::alter_configs_error(res.resource_type, res.resource_name, error)
                        }));
                    }
                }));
            }
            RequestKind::AlterConfigs(r)
        }
        RequestKind::IncrementalAlterConfigs(mut r) => {
            let (allowed, refused) = split(std::mem::take(&mut r.resources), |res| {
                let (resource_type, name, _) =
                    config_resource(res.resource_type, &res.resource_name);
                auth.allowed(resource_type, &name, AlterConfigs)
            });
            r.resources = allowed;
            if !refused.is_empty() {
                patches.push(Box::new(move |response| {
                    if let ResponseKind::IncrementalAlterConfigs(response) = response {
                        response.responses.extend(refused.into_iter().map(|res| {
                            let (_, _, error) =
                                config_resource(res.resource_type, &res.resource_name);
                            errors::incremental_alter_configs_error(
                                res.resource_type,
                                res.resource_name,
                                error,
                            )
                        }));
                    }
                }));
            }
            RequestKind::IncrementalAlterConfigs(r)
        }
        RequestKind::DescribeProducers(mut r) => {
            let (allowed, refused) = split(std::mem::take(&mut r.topics), |t| {
                auth.allowed(Topic, &t.name, Read)
            });
            r.topics = allowed;
            if !refused.is_empty() {
                patches.push(Box::new(move |response| {
                    if let ResponseKind::DescribeProducers(response) = response {
                        response.topics.extend(refused.iter().map(|t| {
                            describe_producers_response::TopicResponse::default()
                                .with_name(t.name.clone())
                                .with_partitions(
                                    t.partition_indexes
                                        .iter()
                                        .map(|p| {
                                            errors::describe_producers_partition_error(
                                                *p,
                                                ResponseError::TopicAuthorizationFailed,
                                            )
                                        })
                                        .collect(),
                                )
                        }));
                    }
                }));
            }
            RequestKind::DescribeProducers(r)
        }
        RequestKind::InitProducerId(r) => {
            match &r.transactional_id {
                Some(id) => {
                    if !auth.allowed(TransactionalId, id, Write) {
                        return refuse(
                            &RequestKind::InitProducerId(r),
                            ResponseError::TransactionalIdAuthorizationFailed,
                        );
                    }
                }
                None => {
                    // KIP-679: IDEMPOTENT_WRITE on the cluster, or WRITE on any topic.
                    let idempotent = auth.allowed_quietly(Cluster, CLUSTER_NAME, IdempotentWrite)
                        || auth.allowed_on_any(Topic, Write);
                    if !idempotent {
                        auth.cluster(IdempotentWrite);
                        return refuse(
                            &RequestKind::InitProducerId(r),
                            ResponseError::ClusterAuthorizationFailed,
                        );
                    }
                }
            }
            RequestKind::InitProducerId(r)
        }
        RequestKind::AddPartitionsToTxn(r) => {
            return add_partitions_to_txn(auth, api_version, r);
        }
        RequestKind::AddOffsetsToTxn(r) => {
            if !auth.allowed(TransactionalId, &r.transactional_id, Write) {
                return refuse(
                    &RequestKind::AddOffsetsToTxn(r),
                    ResponseError::TransactionalIdAuthorizationFailed,
                );
            }
            if !auth.allowed(Group, &r.group_id, Read) {
                return refuse(
                    &RequestKind::AddOffsetsToTxn(r),
                    ResponseError::GroupAuthorizationFailed,
                );
            }
            RequestKind::AddOffsetsToTxn(r)
        }
        RequestKind::TxnOffsetCommit(mut r) => {
            if !auth.allowed(TransactionalId, &r.transactional_id, Write) {
                return refuse(
                    &RequestKind::TxnOffsetCommit(r),
                    ResponseError::TransactionalIdAuthorizationFailed,
                );
            }
            if !auth.allowed(Group, &r.group_id, Read) {
                return refuse(
                    &RequestKind::TxnOffsetCommit(r),
                    ResponseError::GroupAuthorizationFailed,
                );
            }
            let (allowed, refused) = split(std::mem::take(&mut r.topics), |t| {
                auth.allowed(Topic, &t.name, Read)
            });
            r.topics = allowed;
            if !refused.is_empty() {
                patches.push(Box::new(move |response| {
                    if let ResponseKind::TxnOffsetCommit(response) = response {
                        response.topics.extend(refused.iter().map(|t| {
                            txn_offset_commit_response::TxnOffsetCommitResponseTopic::default()
                                .with_name(t.name.clone())
                                .with_partitions(
                                    t.partitions
                                        .iter()
                                        .map(|p| {
                                            txn_offset_commit_response::TxnOffsetCommitResponsePartition::default()
                                                .with_partition_index(p.partition_index)
                                                .with_error_code(TOPIC_DENIED)
                                        })
                                        .collect(),
                                )
                        }));
                    }
                }));
            }
            RequestKind::TxnOffsetCommit(r)
        }
        RequestKind::EndTxn(r) => {
            if !auth.allowed(TransactionalId, &r.transactional_id, Write) {
                return refuse(
                    &RequestKind::EndTxn(r),
                    ResponseError::TransactionalIdAuthorizationFailed,
                );
            }
            RequestKind::EndTxn(r)
        }
        RequestKind::DescribeTransactions(mut r) => {
            let (allowed, refused) = split(std::mem::take(&mut r.transactional_ids), |id| {
                auth.allowed(TransactionalId, id, Describe)
            });
            r.transactional_ids = allowed;
            let filter = auth.clone();
            patches.push(Box::new(move |response| {
                if let ResponseKind::DescribeTransactions(response) = response {
                    // Kafka leaves out the partitions of topics the caller may not DESCRIBE.
                    for state in &mut response.transaction_states {
                        state
                            .topics
                            .retain(|t| filter.allowed_quietly(Topic, &t.topic, Describe));
                    }
                    response
                        .transaction_states
                        .extend(refused.into_iter().map(|id| {
                            errors::transaction_state_error(
                                id,
                                ResponseError::TransactionalIdAuthorizationFailed.code(),
                            )
                        }));
                }
            }));
            RequestKind::DescribeTransactions(r)
        }
        RequestKind::ListTransactions(r) => {
            let filter = auth.clone();
            patches.push(Box::new(move |response| {
                if let ResponseKind::ListTransactions(response) = response {
                    response.transaction_states.retain(|t| {
                        filter.allowed_quietly(TransactionalId, &t.transactional_id, Describe)
                    });
                }
            }));
            RequestKind::ListTransactions(r)
        }
        RequestKind::OffsetForLeaderEpoch(mut r) => {
            // KIP-320: consumers ask too, so DESCRIBE on the topic serves when CLUSTER_ACTION
            // does not.
            if !auth.allowed_quietly(Cluster, CLUSTER_NAME, ClusterAction) {
                let (allowed, refused) = split(std::mem::take(&mut r.topics), |t| {
                    auth.allowed(Topic, &t.topic, Describe)
                });
                r.topics = allowed;
                if !refused.is_empty() {
                    patches.push(Box::new(move |response| {
                        if let ResponseKind::OffsetForLeaderEpoch(response) = response {
                            response.topics.extend(refused.iter().map(|t| {
                                offset_for_leader_epoch_response::OffsetForLeaderTopicResult::default()
                                    .with_topic(t.topic.clone())
                                    .with_partitions(
                                        t.partitions
                                            .iter()
                                            .map(|p| errors::epoch_end_offset_error(p.partition, TOPIC_DENIED))
                                            .collect(),
                                    )
                            }));
                        }
                    }));
                }
            }
            RequestKind::OffsetForLeaderEpoch(r)
        }
        other => other,
    };
    let gate = operations_only(auth, request);
    match gate {
        Gate::Proceed {
            request,
            patches: operation_patches,
            ..
        } => {
            patches.extend(operation_patches);
            Gate::Proceed {
                request,
                patches,
                denied,
            }
        }
        respond => respond,
    }
}

/// Without an authorizer: the request proceeds whole; only the `authorized_operations` the
/// client asked for are filled in its response (every supported operation, as Kafka answers).
pub fn operations_only(auth: &RequestAuthorizer, request: RequestKind) -> Gate {
    let filler = auth.clone();
    let patch: Option<Patch> = match &request {
        RequestKind::DescribeGroups(r) if r.include_authorized_operations => {
            Some(Box::new(move |response| {
                if let ResponseKind::DescribeGroups(response) = response {
                    for group in response.groups.iter_mut().filter(|g| g.error_code == 0) {
                        group.authorized_operations = filler.operations(Group, &group.group_id);
                    }
                }
            }))
        }
        RequestKind::ConsumerGroupDescribe(r) if r.include_authorized_operations => {
            Some(Box::new(move |response| {
                if let ResponseKind::ConsumerGroupDescribe(response) = response {
                    for group in response.groups.iter_mut().filter(|g| g.error_code == 0) {
                        group.authorized_operations = filler.operations(Group, &group.group_id);
                    }
                }
            }))
        }
        RequestKind::DescribeCluster(r) if r.include_cluster_authorized_operations => {
            Some(Box::new(move |response| {
                if let ResponseKind::DescribeCluster(response) = response {
                    response.cluster_authorized_operations =
                        filler.operations(Cluster, CLUSTER_NAME);
                }
            }))
        }
        RequestKind::Metadata(r)
            if r.include_topic_authorized_operations || r.include_cluster_authorized_operations =>
        {
            let (topics, cluster) = (
                r.include_topic_authorized_operations,
                r.include_cluster_authorized_operations,
            );
            Some(Box::new(move |response| {
                if let ResponseKind::Metadata(response) = response {
                    if topics {
                        for topic in response.topics.iter_mut().filter(|t| t.error_code == 0) {
                            if let Some(name) = &topic.name {
                                topic.topic_authorized_operations = filler.operations(Topic, name);
                            }
                        }
                    }
                    if cluster {
                        response.cluster_authorized_operations =
                            filler.operations(Cluster, CLUSTER_NAME);
                    }
                }
            }))
        }
        _ => None,
    };
    Gate::Proceed {
        request,
        patches: patch.into_iter().collect(),
        denied: false,
    }
}

fn fetch_partition_error(partition: i32) -> fetch_response::PartitionData {
    fetch_response::PartitionData::default()
        .with_partition_index(partition)
        .with_error_code(TOPIC_DENIED)
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_records(Some(bytes::Bytes::new()))
}

/// A follower fetch without CLUSTER_ACTION: every partition it names (or its session holds,
/// which it cannot learn here, so only those it names) answers TOPIC_AUTHORIZATION_FAILED.
fn fetch_refused(request: &FetchRequest) -> FetchResponse {
    FetchResponse::default().with_responses(
        request
            .topics
            .iter()
            .map(|t| {
                fetch_response::FetchableTopicResponse::default()
                    .with_topic(t.topic.clone())
                    .with_topic_id(t.topic_id)
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| fetch_partition_error(p.partition))
                            .collect(),
                    )
            })
            .collect(),
    )
}

/// Metadata (Kafka `handleTopicMetadataRequest`): named topics the caller may not DESCRIBE,
/// and unknown ones it may not CREATE when they would be auto-created, answer
/// TOPIC_AUTHORIZATION_FAILED; an all-topics request lists only describable topics.
fn metadata(
    auth: &RequestAuthorizer,
    image: &Arc<MetadataImage>,
    config: &BrokerConfig,
    api_version: i16,
    mut r: MetadataRequest,
) -> Gate {
    let all_topics = match &r.topics {
        None => true,
        Some(topics) => topics.is_empty() && api_version == 0,
    };
    let mut patches: Vec<Patch> = Vec::new();
    if all_topics {
        let filter = auth.clone();
        patches.push(Box::new(move |response| {
            if let ResponseKind::Metadata(response) = response {
                response.topics.retain(|t| {
                    t.name
                        .as_ref()
                        .is_none_or(|name| filter.allowed_quietly(Topic, name, Describe))
                });
            }
        }));
    } else if let Some(requested) = r.topics.take() {
        let auto_create =
            (api_version < 4 || r.allow_auto_topic_creation) && config.auto_create_topics_enable;
        let may_create_any = auto_create && auth.allowed_quietly(Cluster, CLUSTER_NAME, Create);
        let mut refused: Vec<metadata_response::MetadataResponseTopic> = Vec::new();
        let mut allowed = Vec::with_capacity(requested.len());
        for topic in requested {
            let name = match &topic.name {
                Some(name) => Some(name.0.to_string()),
                None => image.topic(&topic.topic_id).map(|t| t.name.clone()),
            };
            let Some(name) = name else {
                allowed.push(topic);
                continue;
            };
            let describable = auth.allowed(Topic, &name, Describe);
            let creatable = || {
                image.topic_by_name(&name).is_some()
                    || !auto_create
                    || may_create_any
                    || auth.allowed(Topic, &name, Create)
            };
            if describable && creatable() {
                allowed.push(topic);
            } else {
                refused.push(
                    metadata_response::MetadataResponseTopic::default()
                        .with_name(topic.name.clone())
                        .with_topic_id(topic.topic_id)
                        .with_error_code(TOPIC_DENIED)
                        .with_topic_authorized_operations(
                            crate::apis::AUTHORIZED_OPERATIONS_OMITTED,
                        ),
                );
            }
        }
        // v0 reads an empty list as "all topics": none of the named ones may be listed then.
        let none_left = allowed.is_empty() && api_version == 0;
        r.topics = Some(allowed);
        if !refused.is_empty() {
            patches.push(Box::new(move |response| {
                if let ResponseKind::Metadata(response) = response {
                    if none_left {
                        response.topics.clear();
                    }
                    response.topics.extend(refused);
                }
            }));
        }
    }
    match operations_only(auth, RequestKind::Metadata(r)) {
        Gate::Proceed {
            request,
            patches: operation_patches,
            ..
        } => {
            patches.extend(operation_patches);
            Gate::Proceed {
                request,
                patches,
                denied: false,
            }
        }
        respond => respond,
    }
}

/// OffsetFetch: DESCRIBE on each group (GROUP_AUTHORIZATION_FAILED) and on each topic
/// (TOPIC_AUTHORIZATION_FAILED per partition; left out when all topics were asked for).
fn offset_fetch(
    auth: &RequestAuthorizer,
    image: &Arc<MetadataImage>,
    api_version: i16,
    mut r: OffsetFetchRequest,
) -> Gate {
    let group_denied = ResponseError::GroupAuthorizationFailed.code();
    let mut patches: Vec<Patch> = Vec::new();
    let describable =
        |filter: &RequestAuthorizer, name: &str| filter.allowed_quietly(Topic, name, Describe);
    if api_version < 8 {
        if !auth.allowed(Group, &r.group_id, Describe) {
            return match error_response(
                api_version,
                &RequestKind::OffsetFetch(r.clone()),
                ResponseError::GroupAuthorizationFailed,
            ) {
                Some(response) => Gate::Respond(response),
                None => Gate::proceed(RequestKind::OffsetFetch(r)),
            };
        }
        match r.topics.take() {
            None => {
                let filter = auth.clone();
                patches.push(Box::new(move |response| {
                    if let ResponseKind::OffsetFetch(response) = response {
                        response.topics.retain(|t| describable(&filter, &t.name));
                    }
                }));
            }
            Some(topics) => {
                let (allowed, refused) = split(topics, |t| auth.allowed(Topic, &t.name, Describe));
                r.topics = Some(allowed);
                if !refused.is_empty() {
                    patches.push(Box::new(move |response| {
                        if let ResponseKind::OffsetFetch(response) = response {
                            response.topics.extend(refused.iter().map(|t| {
                                offset_fetch_response::OffsetFetchResponseTopic::default()
                                    .with_name(t.name.clone())
                                    .with_partitions(
                                        t.partition_indexes
                                            .iter()
                                            .map(|p| {
                                                errors::offset_fetch_partition_error(
                                                    *p,
                                                    TOPIC_DENIED,
                                                )
                                            })
                                            .collect(),
                                    )
                            }));
                        }
                    }));
                }
            }
        }
    } else {
        let (groups, refused_groups) = split(std::mem::take(&mut r.groups), |g| {
            auth.allowed(Group, &g.group_id, Describe)
        });
        let mut all_topic_groups: HashSet<String> = HashSet::new();
        let mut refused_topics = Vec::new();
        let mut kept = Vec::with_capacity(groups.len());
        for mut group in groups {
            match group.topics.take() {
                None => {
                    all_topic_groups.insert(group.group_id.to_string());
                }
                Some(topics) => {
                    let (allowed, refused) = split(topics, |t| {
                        topic_name(image, &t.name, t.topic_id)
                            .is_none_or(|name| auth.allowed(Topic, &name, Describe))
                    });
                    group.topics = Some(allowed);
                    if !refused.is_empty() {
                        refused_topics.push((group.group_id.to_string(), refused));
                    }
                }
            }
            kept.push(group);
        }
        r.groups = kept;
        let filter = auth.clone();
        let filter_image = image.clone();
        patches.push(Box::new(move |response| {
            if let ResponseKind::OffsetFetch(response) = response {
                for group in &mut response.groups {
                    if all_topic_groups.contains(group.group_id.as_str()) {
                        group.topics.retain(|t| {
                            topic_name(&filter_image, &t.name, t.topic_id)
                                .is_none_or(|name| describable(&filter, &name))
                        });
                    }
                    if let Some((_, refused)) =
                        refused_topics.iter().find(|(id, _)| id.as_str() == group.group_id.as_str())
                    {
                        group.topics.extend(refused.iter().map(|t| {
                            offset_fetch_response::OffsetFetchResponseTopics::default()
                                .with_name(t.name.clone())
                                .with_topic_id(t.topic_id)
                                .with_partitions(
                                    t.partition_indexes
                                        .iter()
                                        .map(|p| {
                                            offset_fetch_response::OffsetFetchResponsePartitions::default()
                                                .with_partition_index(*p)
                                                .with_committed_offset(-1)
                                                .with_committed_leader_epoch(-1)
                                                .with_metadata(Some(StrBytes::default()))
                                                .with_error_code(TOPIC_DENIED)
                                        })
                                        .collect(),
                                )
                        }));
                    }
                }
                response.groups.extend(
                    refused_groups
                        .into_iter()
                        .map(|g| errors::offset_fetch_group_error(g.group_id, group_denied)),
                );
            }
        }));
    }
    Gate::Proceed {
        request: RequestKind::OffsetFetch(r),
        patches,
        denied: false,
    }
}

/// AddPartitionsToTxn: v4+ (brokers verifying for a client, KIP-890) needs CLUSTER_ACTION;
/// every transaction needs WRITE on its transactional id (its partitions answer
/// TRANSACTIONAL_ID_AUTHORIZATION_FAILED) and WRITE on each topic (if one is missing, its
/// partitions answer TOPIC_AUTHORIZATION_FAILED and the others OPERATION_NOT_ATTEMPTED).
fn add_partitions_to_txn(
    auth: &RequestAuthorizer,
    api_version: i16,
    mut r: AddPartitionsToTxnRequest,
) -> Gate {
    let txn_denied = ResponseError::TransactionalIdAuthorizationFailed.code();
    let not_attempted = ResponseError::OperationNotAttempted.code();
    // The per-topic results of one transaction, or `None` when it may proceed.
    let refusal = |id: &str, topics: &[add_partitions_to_txn_request::AddPartitionsToTxnTopic]| {
        if !auth.allowed(TransactionalId, id, Write) {
            return Some(errors::txn_topic_errors(topics, txn_denied));
        }
        let denied: HashSet<&str> = topics
            .iter()
            .filter(|t| !auth.allowed(Topic, &t.name, Write))
            .map(|t| t.name.as_str())
            .collect();
        (!denied.is_empty()).then(|| {
            topics
                .iter()
                .map(|t| {
                    let code = if denied.contains(t.name.as_str()) {
                        TOPIC_DENIED
                    } else {
                        not_attempted
                    };
                    errors::txn_topic_error(t, code)
                })
                .collect()
        })
    };
    if api_version < 4 {
        if let Some(results) = refusal(&r.v3_and_below_transactional_id, &r.v3_and_below_topics) {
            return Gate::Respond(ResponseKind::AddPartitionsToTxn(
                AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results),
            ));
        }
        return Gate::proceed(RequestKind::AddPartitionsToTxn(r));
    }
    if !auth.cluster(ClusterAction) {
        return Gate::Respond(ResponseKind::AddPartitionsToTxn(
            AddPartitionsToTxnResponse::default()
                .with_error_code(ResponseError::ClusterAuthorizationFailed.code()),
        ));
    }
    let mut refused = Vec::new();
    let mut kept = Vec::with_capacity(r.transactions.len());
    for transaction in std::mem::take(&mut r.transactions) {
        match refusal(&transaction.transactional_id, &transaction.topics) {
            Some(results) => refused.push(
                add_partitions_to_txn_response::AddPartitionsToTxnResult::default()
                    .with_transactional_id(transaction.transactional_id.clone())
                    .with_topic_results(results),
            ),
            None => kept.push(transaction),
        }
    }
    r.transactions = kept;
    let denied = !refused.is_empty();
    let patches: Vec<Patch> = if denied {
        vec![Box::new(move |response| {
            if let ResponseKind::AddPartitionsToTxn(response) = response {
                response.results_by_transaction.extend(refused);
            }
        })]
    } else {
        Vec::new()
    };
    Gate::Proceed {
        request: RequestKind::AddPartitionsToTxn(r),
        patches,
        denied,
    }
}

/// The API key of a request (for the cluster-operation table).
fn api_key_of(request: &RequestKind) -> Option<ApiKey> {
    Some(match request {
        RequestKind::CreateAcls(_) => ApiKey::CreateAcls,
        RequestKind::DeleteAcls(_) => ApiKey::DeleteAcls,
        RequestKind::DescribeAcls(_) => ApiKey::DescribeAcls,
        RequestKind::AlterUserScramCredentials(_) => ApiKey::AlterUserScramCredentials,
        RequestKind::DescribeUserScramCredentials(_) => ApiKey::DescribeUserScramCredentials,
        RequestKind::AlterClientQuotas(_) => ApiKey::AlterClientQuotas,
        RequestKind::DescribeClientQuotas(_) => ApiKey::DescribeClientQuotas,
        RequestKind::ElectLeaders(_) => ApiKey::ElectLeaders,
        RequestKind::AlterPartitionReassignments(_) => ApiKey::AlterPartitionReassignments,
        RequestKind::ListPartitionReassignments(_) => ApiKey::ListPartitionReassignments,
        RequestKind::UnregisterBroker(_) => ApiKey::UnregisterBroker,
        RequestKind::DescribeQuorum(_) => ApiKey::DescribeQuorum,
        RequestKind::DescribeLogDirs(_) => ApiKey::DescribeLogDirs,
        RequestKind::WriteTxnMarkers(_) => ApiKey::WriteTxnMarkers,
        _ => return None,
    })
}
