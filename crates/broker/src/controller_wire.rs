//! Controller requests on the wire: the pure conversions between Fjord's controller types
//! ([`ControllerRequest`] / [`ControllerReply`], crate `fjord-controller`) and Kafka's own
//! wire messages, as KRaft brokers speak them to the active controller over its controller
//! listener (Kafka's `NodeToControllerChannelManager` on the sending side, `ControllerApis` on
//! the receiving side). No I/O: the server crate frames, sends and decodes the messages; this
//! module only maps between the `kafka-protocol` crate's generated types and ours.
//!
//! ## Versions
//!
//! Fjord nodes speak one version per API to each other ([`wire_version`]): the highest one
//! both the `kafka-protocol` crate and Fjord's types express without loss.
//!
//! | API (key) | version | why not higher / what the version brings |
//! |---|---|---|
//! | BrokerRegistration (62) | 4 | crate max; v4 lists features with min level 0 too; `PreviousBrokerEpoch` (v3) carried |
//! | BrokerHeartbeat (63) | 1 | crate max; `OfflineLogDirs` (v1, tagged) always empty: one data dir |
//! | UnregisterBroker (64) | 0 | only version |
//! | CreateTopics (19) | 7 | crate max; topic ids in the response (v7) |
//! | DeleteTopics (20) | 6 | crate max; topics by name or by id (v6) |
//! | CreatePartitions (37) | 3 | crate max (flexible) |
//! | IncrementalAlterConfigs (44) | 1 | crate max (flexible) |
//! | AlterConfigs (33) | 2 | crate max (flexible) |
//! | AlterPartition (56) | 3 | crate max; topic ids (v2) and `NewIsrWithEpochs` (v3, KIP-903) |
//! | ElectLeaders (43) | 2 | crate max; election type (v1), top-level error (v1) |
//! | AlterPartitionReassignments (45) | 0 | v1 adds `AllowReplicationFactorChange`, which Fjord's request type has no field for |
//! | ListPartitionReassignments (46) | 0 | only version |
//! | AllocateProducerIds (67) | 0 | only version |
//! | CreateAcls (30) | 3 | crate max (flexible) |
//! | DeleteAcls (31) | 3 | crate max (flexible) |
//! | AlterUserScramCredentials (51) | 0 | only version |
//! | AlterClientQuotas (49) | 1 | crate max (flexible) |
//! | DescribeQuorum (55) | 2 | crate max; answered by [`describe_quorum_response`] |
//!
//! [`request_from_wire`] accepts every version the crate decodes, not just these: older
//! versions map as their schema says (DeleteTopics v1-5 `TopicNames`, AlterPartition v2
//! `NewIsr` with unknown broker epochs, BrokerRegistration v0-2 without a previous epoch).
//!
//! ## Fields Fjord does not model
//!
//! `TimeoutMs` is written as [`WIRE_TIMEOUT_MS`] and ignored when read (the sender's channel
//! owns the timeout). `LogDirs` of a registration is ignored (informational; one data dir).
//! Fields that would change the outcome are refused with [`WireError::Unsupported`] instead of
//! dropped: `IsMigratingZkBroker` = true (Kafka refuses it too without a ZK migration),
//! non-empty `OfflineLogDirs`, `AllowReplicationFactorChange` = false, a DeleteTopics entry
//! with both a name and an id (Kafka answers that entry INVALID_REQUEST; Fjord's [`TopicRef`]
//! cannot hold it, so the sending broker must check it first). An entry with neither is
//! `TopicRef::Id(nil)` (what `request_to_wire` writes for it), answered UNKNOWN_TOPIC_ID for
//! that entry (Kafka: INVALID_REQUEST). CreateTopics
//! results are written with `Configs` = null (the forwarding broker describes configs itself).
//!
//! ## Errors
//!
//! Error codes map one to one ([`error_code_from_wire`]); a code Fjord's [`ErrorCode`] does not
//! know becomes UNKNOWN_SERVER_ERROR, its message kept (or naming the code if it had none).
//! Messages travel where the schema has an `ErrorMessage` field and are dropped where it has
//! none (BrokerRegistration, BrokerHeartbeat, AllocateProducerIds, AlterPartition responses).
//! `BrokerHeartbeatReply::in_controlled_shutdown` is not on the wire either: the sender derives
//! it with [`heartbeat_in_controlled_shutdown`], as Kafka's `BrokerLifecycleManager` does.
//!
//! A whole-request error ([`ControllerReply::Error`]: NOT_CONTROLLER while inactive,
//! UNKNOWN_SERVER_ERROR on a controller bug, REQUEST_TIMED_OUT from the driver) is written by
//! [`error_to_wire`], which needs the request: like Kafka's `getErrorResponse`, every item of
//! the request gets the code (and the top-level error field, where the schema has one, too).
//! [`reply_to_wire`] refuses `ControllerReply::Error` for that reason. Reading it back,
//! [`reply_from_wire`] returns the API's own reply with every item carrying the error, **except**
//! for the two APIs whose reply type has no top-level error field although their response has
//! one (ElectLeaders, AlterPartitionReassignments): a non-zero top-level error there comes back
//! as `ControllerReply::Error`. The rule keeps every per-API reply round-tripping exactly (a
//! BrokerRegistration refused with NOT_CONTROLLER and a whole-request NOT_CONTROLLER are the
//! same bytes; no rule could tell them apart). Senders retry on [`is_not_controller`], which,
//! like `NodeToControllerRequestThread` checking `errorCounts().containsKey(NOT_CONTROLLER)`,
//! looks at every error code in the reply.

use fjord_controller::{
    AllocateProducerIdsReply, AllocateProducerIdsRequest, AlterConfigOp, AlterConfigsReply,
    AlterConfigsRequest, AlterConfigsResource, AlterPartitionData, AlterPartitionPartitionReply,
    AlterPartitionReassignmentsReply, AlterPartitionReassignmentsRequest, AlterPartitionReply,
    AlterPartitionRequest, AlterPartitionTopic, AlterPartitionTopicReply, AlterableConfig,
    ApiError, BrokerHeartbeatReply, BrokerHeartbeatRequest, BrokerRegistrationReply,
    BrokerRegistrationRequest, BrokerState, CreatableTopic, CreatableTopicResult,
    CreatePartitionsReply, CreatePartitionsRequest, CreatePartitionsTopic, CreateTopicsReply,
    CreateTopicsRequest, DeletableTopicResult, DeleteTopicsReply, DeleteTopicsRequest,
    ElectLeadersReply, ElectLeadersRequest, ElectionType, ErrorCode,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResource,
    ListPartitionReassignmentsReply, ListPartitionReassignmentsRequest, OngoingReassignment,
    PartitionResult, TopicRef, UnregisterBrokerRequest,
};
use fjord_metadata::{BrokerEndpoint, BrokerFeature, ConfigResource, ConfigResourceType};
use fjord_protocol::kafka_protocol::messages as m;
use fjord_protocol::kafka_protocol::messages::{BrokerId, ProducerId, TopicName};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ApiKey, RequestKind, ResponseKind};
use uuid::Uuid;

pub use fjord_controller::ControllerReply;
pub use fjord_controller::ControllerRequest;

/// `TimeoutMs` written into requests that have one (Kafka's `request.timeout.ms` default). The
/// controller ignores it: the sender's channel enforces its own timeout.
pub const WIRE_TIMEOUT_MS: i32 = 30_000;

/// First ElectLeaders version whose response has a top-level error code.
const ELECT_LEADERS_TOP_LEVEL_ERROR_VERSION: i16 = 1;

/// The controller APIs, in the order of the design (section 4), DescribeQuorum excluded.
pub const CONTROLLER_APIS: [ApiKey; 17] = [
    ApiKey::BrokerRegistration,
    ApiKey::BrokerHeartbeat,
    ApiKey::UnregisterBroker,
    ApiKey::CreateTopics,
    ApiKey::DeleteTopics,
    ApiKey::CreatePartitions,
    ApiKey::IncrementalAlterConfigs,
    ApiKey::AlterConfigs,
    ApiKey::AlterPartition,
    ApiKey::ElectLeaders,
    ApiKey::AlterPartitionReassignments,
    ApiKey::ListPartitionReassignments,
    ApiKey::AllocateProducerIds,
    ApiKey::CreateAcls,
    ApiKey::DeleteAcls,
    ApiKey::AlterUserScramCredentials,
    ApiKey::AlterClientQuotas,
];

/// Why a message could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("{api_key:?} is not an API of the controller listener")]
    NotAControllerApi { api_key: ApiKey },
    #[error("{api_key:?} v{api_version} is outside the versions {min}-{max}")]
    UnsupportedVersion {
        api_key: ApiKey,
        api_version: i16,
        min: i16,
        max: i16,
    },
    /// The message (or reply) is of another API than `api_key`.
    #[error("expected a {api_key:?} message, got {found}")]
    KindMismatch { api_key: ApiKey, found: String },
    #[error("field {field} has the value {value}, out of range")]
    OutOfRange { field: &'static str, value: i64 },
    /// A field set to a value Fjord's controller types cannot express.
    #[error("unsupported: {what}")]
    Unsupported { what: &'static str },
    /// [`ControllerReply::Error`] is written per item, which needs the request.
    #[error("a whole-request error is written with error_to_wire, which needs the request")]
    WholeRequestError,
    /// [`ControllerReply::Internal`] answers nobody.
    #[error("an internal controller reply has no wire form")]
    InternalReply,
}

impl WireError {
    /// The Kafka error code a receiving listener answers with (through [`error_to_wire`]).
    pub fn code(&self) -> ErrorCode {
        match self {
            WireError::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            WireError::NotAControllerApi { .. }
            | WireError::KindMismatch { .. }
            | WireError::OutOfRange { .. }
            | WireError::Unsupported { .. } => ErrorCode::InvalidRequest,
            WireError::WholeRequestError | WireError::InternalReply => {
                ErrorCode::UnknownServerError
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Versions and error codes

/// The version Fjord nodes speak to each other for each controller API (see the module table);
/// -1 for an API that is not the controller's.
pub fn wire_version(api_key: ApiKey) -> i16 {
    match api_key {
        ApiKey::BrokerRegistration => 4,
        ApiKey::BrokerHeartbeat => 1,
        ApiKey::UnregisterBroker => 0,
        ApiKey::CreateTopics => 7,
        ApiKey::DeleteTopics => 6,
        ApiKey::CreatePartitions => 3,
        ApiKey::IncrementalAlterConfigs => 1,
        ApiKey::AlterConfigs => 2,
        ApiKey::AlterPartition => 3,
        ApiKey::ElectLeaders => 2,
        ApiKey::AlterPartitionReassignments => 0,
        ApiKey::ListPartitionReassignments => 0,
        ApiKey::AllocateProducerIds => 0,
        ApiKey::CreateAcls => 3,
        ApiKey::DeleteAcls => 3,
        ApiKey::AlterUserScramCredentials => 0,
        ApiKey::AlterClientQuotas => 1,
        ApiKey::DescribeQuorum => 2,
        _ => -1,
    }
}

/// The Fjord code of a Kafka error code, `None` for a code [`ErrorCode`] has no variant for.
pub fn error_code_from_wire(code: i16) -> Option<ErrorCode> {
    use ErrorCode::*;
    Some(match code {
        -1 => UnknownServerError,
        0 => None,
        3 => UnknownTopicOrPartition,
        7 => RequestTimedOut,
        17 => InvalidTopicException,
        35 => UnsupportedVersion,
        36 => TopicAlreadyExists,
        33 => UnsupportedSaslMechanism,
        37 => InvalidPartitions,
        38 => InvalidReplicationFactor,
        39 => InvalidReplicaAssignment,
        40 => InvalidConfig,
        41 => NotController,
        42 => InvalidRequest,
        74 => FencedLeaderEpoch,
        77 => StaleBrokerEpoch,
        80 => PreferredLeaderNotAvailable,
        83 => EligibleLeadersNotAvailable,
        84 => ElectionNotNeeded,
        85 => NoReassignmentInProgress,
        89 => ThrottlingQuotaExceeded,
        91 => ResourceNotFound,
        92 => DuplicateResource,
        93 => UnacceptableCredential,
        95 => InvalidUpdateVersion,
        100 => UnknownTopicId,
        101 => DuplicateBrokerRegistration,
        102 => BrokerIdNotRegistered,
        104 => InconsistentClusterId,
        107 => IneligibleReplica,
        108 => NewLeaderElected,
        _ => return Option::None,
    })
}

/// A bare error code from the wire; unknown codes become UNKNOWN_SERVER_ERROR.
fn code_from_wire(code: i16) -> ErrorCode {
    error_code_from_wire(code).unwrap_or(ErrorCode::UnknownServerError)
}

/// An error code and message from the wire; an unknown code becomes UNKNOWN_SERVER_ERROR and
/// the message says which code it was if there was none.
fn api_error_from_wire(code: i16, message: Option<&StrBytes>) -> ApiError {
    let message = message.map(|m| m.to_string());
    match error_code_from_wire(code) {
        Some(code) => ApiError { code, message },
        None => ApiError {
            code: ErrorCode::UnknownServerError,
            message: Some(message.unwrap_or_else(|| format!("Unknown error code {code}."))),
        },
    }
}

fn message_to_wire(error: &ApiError) -> Option<StrBytes> {
    error.message.as_deref().map(s)
}

/// The message of a whole-request error as written per item.
fn opt_message(message: Option<&str>) -> Option<StrBytes> {
    message.map(s)
}

// ---------------------------------------------------------------------------------------------
// Small helpers

fn s(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

fn topic_name(value: &str) -> TopicName {
    TopicName(s(value))
}

fn ids_to_wire(ids: &[i32]) -> Vec<BrokerId> {
    ids.iter().map(|&id| BrokerId(id)).collect()
}

fn ids_from_wire(ids: &[BrokerId]) -> Vec<i32> {
    ids.iter().map(|id| id.0).collect()
}

/// Groups consecutive items with equal keys, keeping the order (so flattening gives the input
/// back exactly).
fn group_consecutive<K: PartialEq, T>(items: impl IntoIterator<Item = (K, T)>) -> Vec<(K, Vec<T>)> {
    let mut groups: Vec<(K, Vec<T>)> = Vec::new();
    for (key, item) in items {
        match groups.last_mut() {
            Some((last, members)) if *last == key => members.push(item),
            _ => groups.push((key, vec![item])),
        }
    }
    groups
}

/// The API is one of the controller listener's (DescribeQuorum included) and the version one
/// the `kafka-protocol` crate knows.
fn check_version(api_key: ApiKey, api_version: i16) -> Result<(), WireError> {
    if wire_version(api_key) < 0 {
        return Err(WireError::NotAControllerApi { api_key });
    }
    let range = api_key.valid_versions();
    if api_version < range.min || api_version > range.max {
        return Err(WireError::UnsupportedVersion {
            api_key,
            api_version,
            min: range.min,
            max: range.max,
        });
    }
    Ok(())
}

fn resource_to_wire(resource: &ConfigResource) -> (i8, StrBytes) {
    (resource.resource_type.as_i8(), s(&resource.name))
}

fn resource_from_wire(resource_type: i8, name: &StrBytes) -> Result<ConfigResource, WireError> {
    let resource_type =
        ConfigResourceType::from_i8(resource_type).ok_or(WireError::OutOfRange {
            field: "ResourceType",
            value: i64::from(resource_type),
        })?;
    Ok(ConfigResource {
        resource_type,
        name: name.to_string(),
    })
}

fn config_op_to_wire(op: AlterConfigOp) -> i8 {
    match op {
        AlterConfigOp::Set => 0,
        AlterConfigOp::Delete => 1,
        AlterConfigOp::Append => 2,
        AlterConfigOp::Subtract => 3,
    }
}

fn config_op_from_wire(op: i8) -> Result<AlterConfigOp, WireError> {
    Ok(match op {
        0 => AlterConfigOp::Set,
        1 => AlterConfigOp::Delete,
        2 => AlterConfigOp::Append,
        3 => AlterConfigOp::Subtract,
        _ => {
            return Err(WireError::OutOfRange {
                field: "ConfigOperation",
                value: i64::from(op),
            })
        }
    })
}

fn kind_name_request(request: &RequestKind) -> String {
    let debug = format!("{request:?}");
    debug.split('(').next().unwrap_or_default().to_string()
}

fn kind_name_response(response: &ResponseKind) -> String {
    let debug = format!("{response:?}");
    debug.split('(').next().unwrap_or_default().to_string()
}

fn mismatch_request(api_key: ApiKey, request: &RequestKind) -> WireError {
    WireError::KindMismatch {
        api_key,
        found: kind_name_request(request),
    }
}

fn mismatch_response(api_key: ApiKey, response: &ResponseKind) -> WireError {
    WireError::KindMismatch {
        api_key,
        found: kind_name_response(response),
    }
}

// ---------------------------------------------------------------------------------------------
// Requests

/// The wire form of a controller request, at [`wire_version`].
pub fn request_to_wire(request: &ControllerRequest) -> (ApiKey, i16, RequestKind) {
    let (api_key, kind) = match request {
        ControllerRequest::BrokerRegistration(r) => (
            ApiKey::BrokerRegistration,
            RequestKind::BrokerRegistration(broker_registration_to_wire(r)),
        ),
        ControllerRequest::BrokerHeartbeat(r) => (
            ApiKey::BrokerHeartbeat,
            RequestKind::BrokerHeartbeat(
                m::BrokerHeartbeatRequest::default()
                    .with_broker_id(BrokerId(r.broker_id))
                    .with_broker_epoch(r.broker_epoch)
                    .with_current_metadata_offset(r.current_metadata_offset)
                    .with_want_fence(r.want_fence)
                    .with_want_shut_down(r.want_shut_down),
            ),
        ),
        ControllerRequest::UnregisterBroker(r) => (
            ApiKey::UnregisterBroker,
            RequestKind::UnregisterBroker(
                m::UnregisterBrokerRequest::default().with_broker_id(BrokerId(r.broker_id)),
            ),
        ),
        ControllerRequest::CreateTopics(r) => (
            ApiKey::CreateTopics,
            RequestKind::CreateTopics(create_topics_to_wire(r)),
        ),
        ControllerRequest::DeleteTopics(r) => (
            ApiKey::DeleteTopics,
            RequestKind::DeleteTopics(
                m::DeleteTopicsRequest::default()
                    .with_topics(r.topics.iter().map(delete_topic_state).collect())
                    .with_timeout_ms(WIRE_TIMEOUT_MS),
            ),
        ),
        ControllerRequest::CreatePartitions(r) => (
            ApiKey::CreatePartitions,
            RequestKind::CreatePartitions(create_partitions_to_wire(r)),
        ),
        ControllerRequest::IncrementalAlterConfigs(r) => (
            ApiKey::IncrementalAlterConfigs,
            RequestKind::IncrementalAlterConfigs(incremental_alter_configs_to_wire(r)),
        ),
        ControllerRequest::AlterConfigs(r) => (
            ApiKey::AlterConfigs,
            RequestKind::AlterConfigs(alter_configs_to_wire(r)),
        ),
        ControllerRequest::AlterPartition(r) => (
            ApiKey::AlterPartition,
            RequestKind::AlterPartition(alter_partition_to_wire(r)),
        ),
        ControllerRequest::ElectLeaders(r) => (
            ApiKey::ElectLeaders,
            RequestKind::ElectLeaders(elect_leaders_to_wire(r)),
        ),
        ControllerRequest::AlterPartitionReassignments(r) => (
            ApiKey::AlterPartitionReassignments,
            RequestKind::AlterPartitionReassignments(alter_reassignments_to_wire(r)),
        ),
        ControllerRequest::ListPartitionReassignments(r) => (
            ApiKey::ListPartitionReassignments,
            RequestKind::ListPartitionReassignments(list_reassignments_to_wire(r)),
        ),
        ControllerRequest::AllocateProducerIds(r) => (
            ApiKey::AllocateProducerIds,
            RequestKind::AllocateProducerIds(
                m::AllocateProducerIdsRequest::default()
                    .with_broker_id(BrokerId(r.broker_id))
                    .with_broker_epoch(r.broker_epoch),
            ),
        ),
        ControllerRequest::CreateAcls(r) => (
            ApiKey::CreateAcls,
            RequestKind::CreateAcls(security::create_acls_to_wire(r)),
        ),
        ControllerRequest::DeleteAcls(r) => (
            ApiKey::DeleteAcls,
            RequestKind::DeleteAcls(security::delete_acls_to_wire(r)),
        ),
        ControllerRequest::AlterUserScramCredentials(r) => (
            ApiKey::AlterUserScramCredentials,
            RequestKind::AlterUserScramCredentials(security::alter_scram_to_wire(r)),
        ),
        ControllerRequest::AlterClientQuotas(r) => (
            ApiKey::AlterClientQuotas,
            RequestKind::AlterClientQuotas(security::alter_quotas_to_wire(r)),
        ),
    };
    (api_key, wire_version(api_key), kind)
}

fn broker_registration_to_wire(r: &BrokerRegistrationRequest) -> m::BrokerRegistrationRequest {
    use m::broker_registration_request::{Feature, Listener};
    m::BrokerRegistrationRequest::default()
        .with_broker_id(BrokerId(r.broker_id))
        .with_cluster_id(s(&r.cluster_id))
        .with_incarnation_id(r.incarnation_id)
        .with_listeners(
            r.listeners
                .iter()
                .map(|l| {
                    Listener::default()
                        .with_name(s(&l.name))
                        .with_host(s(&l.host))
                        .with_port(l.port)
                        .with_security_protocol(l.security_protocol)
                })
                .collect(),
        )
        .with_features(
            r.features
                .iter()
                .map(|f| {
                    Feature::default()
                        .with_name(s(&f.name))
                        .with_min_supported_version(f.min_supported_version)
                        .with_max_supported_version(f.max_supported_version)
                })
                .collect(),
        )
        .with_rack(r.rack.as_deref().map(s))
        .with_previous_broker_epoch(r.previous_broker_epoch)
}

fn create_topics_to_wire(r: &CreateTopicsRequest) -> m::CreateTopicsRequest {
    use m::create_topics_request::{
        CreatableReplicaAssignment, CreatableTopic as WireTopic, CreatableTopicConfig,
    };
    let topics = r
        .topics
        .iter()
        .map(|t| {
            WireTopic::default()
                .with_name(topic_name(&t.name))
                .with_num_partitions(t.num_partitions)
                .with_replication_factor(t.replication_factor)
                .with_assignments(
                    t.assignments
                        .iter()
                        .map(|(partition, brokers)| {
                            CreatableReplicaAssignment::default()
                                .with_partition_index(*partition)
                                .with_broker_ids(ids_to_wire(brokers))
                        })
                        .collect(),
                )
                .with_configs(
                    t.configs
                        .iter()
                        .map(|(name, value)| {
                            CreatableTopicConfig::default()
                                .with_name(s(name))
                                .with_value(value.as_deref().map(s))
                        })
                        .collect(),
                )
        })
        .collect();
    m::CreateTopicsRequest::default()
        .with_topics(topics)
        .with_timeout_ms(WIRE_TIMEOUT_MS)
        .with_validate_only(r.validate_only)
}

fn delete_topic_state(topic: &TopicRef) -> m::delete_topics_request::DeleteTopicState {
    let state = m::delete_topics_request::DeleteTopicState::default();
    match topic {
        TopicRef::Name(name) => state
            .with_name(Some(topic_name(name)))
            .with_topic_id(Uuid::nil()),
        TopicRef::Id(id) => state.with_name(None).with_topic_id(*id),
    }
}

fn create_partitions_to_wire(r: &CreatePartitionsRequest) -> m::CreatePartitionsRequest {
    use m::create_partitions_request::{CreatePartitionsAssignment, CreatePartitionsTopic as T};
    let topics = r
        .topics
        .iter()
        .map(|t| {
            T::default()
                .with_name(topic_name(&t.name))
                .with_count(t.count)
                .with_assignments(t.assignments.as_ref().map(|assignments| {
                    assignments
                        .iter()
                        .map(|brokers| {
                            CreatePartitionsAssignment::default()
                                .with_broker_ids(ids_to_wire(brokers))
                        })
                        .collect()
                }))
        })
        .collect();
    m::CreatePartitionsRequest::default()
        .with_topics(topics)
        .with_timeout_ms(WIRE_TIMEOUT_MS)
        .with_validate_only(r.validate_only)
}

fn incremental_alter_configs_to_wire(
    r: &IncrementalAlterConfigsRequest,
) -> m::IncrementalAlterConfigsRequest {
    use m::incremental_alter_configs_request::{AlterConfigsResource as R, AlterableConfig as C};
    let resources = r
        .resources
        .iter()
        .map(|res| {
            let (resource_type, resource_name) = resource_to_wire(&res.resource);
            R::default()
                .with_resource_type(resource_type)
                .with_resource_name(resource_name)
                .with_configs(
                    res.configs
                        .iter()
                        .map(|c| {
                            C::default()
                                .with_name(s(&c.name))
                                .with_config_operation(config_op_to_wire(c.op))
                                .with_value(c.value.as_deref().map(s))
                        })
                        .collect(),
                )
        })
        .collect();
    m::IncrementalAlterConfigsRequest::default()
        .with_resources(resources)
        .with_validate_only(r.validate_only)
}

fn alter_configs_to_wire(r: &AlterConfigsRequest) -> m::AlterConfigsRequest {
    use m::alter_configs_request::{AlterConfigsResource as R, AlterableConfig as C};
    let resources = r
        .resources
        .iter()
        .map(|res| {
            let (resource_type, resource_name) = resource_to_wire(&res.resource);
            R::default()
                .with_resource_type(resource_type)
                .with_resource_name(resource_name)
                .with_configs(
                    res.configs
                        .iter()
                        .map(|(name, value)| {
                            C::default()
                                .with_name(s(name))
                                .with_value(value.as_deref().map(s))
                        })
                        .collect(),
                )
        })
        .collect();
    m::AlterConfigsRequest::default()
        .with_resources(resources)
        .with_validate_only(r.validate_only)
}

fn alter_partition_to_wire(r: &AlterPartitionRequest) -> m::AlterPartitionRequest {
    use m::alter_partition_request::{BrokerState as B, PartitionData, TopicData};
    let topics = r
        .topics
        .iter()
        .map(|t| {
            TopicData::default()
                .with_topic_id(t.topic_id)
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            PartitionData::default()
                                .with_partition_index(p.partition_index)
                                .with_leader_epoch(p.leader_epoch)
                                .with_new_isr_with_epochs(
                                    p.new_isr_with_epochs
                                        .iter()
                                        .map(|b| {
                                            B::default()
                                                .with_broker_id(BrokerId(b.broker_id))
                                                .with_broker_epoch(b.broker_epoch)
                                        })
                                        .collect(),
                                )
                                .with_leader_recovery_state(p.leader_recovery_state)
                                .with_partition_epoch(p.partition_epoch)
                        })
                        .collect(),
                )
        })
        .collect();
    m::AlterPartitionRequest::default()
        .with_broker_id(BrokerId(r.broker_id))
        .with_broker_epoch(r.broker_epoch)
        .with_topics(topics)
}

fn elect_leaders_to_wire(r: &ElectLeadersRequest) -> m::ElectLeadersRequest {
    use m::elect_leaders_request::TopicPartitions;
    m::ElectLeadersRequest::default()
        .with_election_type(match r.election_type {
            ElectionType::Preferred => 0,
            ElectionType::Unclean => 1,
        })
        .with_topic_partitions(r.topic_partitions.as_ref().map(|topics| {
            topics
                .iter()
                .map(|(name, partitions)| {
                    TopicPartitions::default()
                        .with_topic(topic_name(name))
                        .with_partitions(partitions.clone())
                })
                .collect()
        }))
        .with_timeout_ms(WIRE_TIMEOUT_MS)
}

fn alter_reassignments_to_wire(
    r: &AlterPartitionReassignmentsRequest,
) -> m::AlterPartitionReassignmentsRequest {
    use m::alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic};
    m::AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(WIRE_TIMEOUT_MS)
        .with_topics(
            r.topics
                .iter()
                .map(|(name, partitions)| {
                    ReassignableTopic::default()
                        .with_name(topic_name(name))
                        .with_partitions(
                            partitions
                                .iter()
                                .map(|(index, replicas)| {
                                    ReassignablePartition::default()
                                        .with_partition_index(*index)
                                        .with_replicas(replicas.as_deref().map(ids_to_wire))
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
}

fn list_reassignments_to_wire(
    r: &ListPartitionReassignmentsRequest,
) -> m::ListPartitionReassignmentsRequest {
    use m::list_partition_reassignments_request::ListPartitionReassignmentsTopics as T;
    m::ListPartitionReassignmentsRequest::default()
        .with_timeout_ms(WIRE_TIMEOUT_MS)
        .with_topics(r.topics.as_ref().map(|topics| {
            topics
                .iter()
                .map(|(name, partitions)| {
                    T::default()
                        .with_name(topic_name(name))
                        .with_partition_indexes(partitions.clone())
                })
                .collect()
        }))
}

/// The controller request a wire message (as decoded by the controller listener) asks for.
pub fn request_from_wire(
    api_key: ApiKey,
    api_version: i16,
    request: RequestKind,
) -> Result<ControllerRequest, WireError> {
    check_version(api_key, api_version)?;
    let request = match (api_key, request) {
        (ApiKey::BrokerRegistration, RequestKind::BrokerRegistration(r)) => {
            ControllerRequest::BrokerRegistration(broker_registration_from_wire(r)?)
        }
        (ApiKey::BrokerHeartbeat, RequestKind::BrokerHeartbeat(r)) => {
            if !r.offline_log_dirs.is_empty() {
                return Err(WireError::Unsupported {
                    what: "BrokerHeartbeat.OfflineLogDirs (Fjord has one data dir)",
                });
            }
            ControllerRequest::BrokerHeartbeat(BrokerHeartbeatRequest {
                broker_id: r.broker_id.0,
                broker_epoch: r.broker_epoch,
                current_metadata_offset: r.current_metadata_offset,
                want_fence: r.want_fence,
                want_shut_down: r.want_shut_down,
            })
        }
        (ApiKey::UnregisterBroker, RequestKind::UnregisterBroker(r)) => {
            ControllerRequest::UnregisterBroker(UnregisterBrokerRequest {
                broker_id: r.broker_id.0,
            })
        }
        (ApiKey::CreateTopics, RequestKind::CreateTopics(r)) => {
            ControllerRequest::CreateTopics(CreateTopicsRequest {
                topics: r
                    .topics
                    .iter()
                    .map(|t| CreatableTopic {
                        name: t.name.to_string(),
                        num_partitions: t.num_partitions,
                        replication_factor: t.replication_factor,
                        assignments: t
                            .assignments
                            .iter()
                            .map(|a| (a.partition_index, ids_from_wire(&a.broker_ids)))
                            .collect(),
                        configs: t
                            .configs
                            .iter()
                            .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                            .collect(),
                    })
                    .collect(),
                validate_only: r.validate_only,
            })
        }
        (ApiKey::DeleteTopics, RequestKind::DeleteTopics(r)) => {
            let mut topics: Vec<TopicRef> = r
                .topic_names
                .iter()
                .map(|name| TopicRef::Name(name.to_string()))
                .collect();
            for state in &r.topics {
                topics.push(match (&state.name, state.topic_id.is_nil()) {
                    (Some(name), true) => TopicRef::Name(name.to_string()),
                    // Neither a name nor an id: the nil id, which the controller answers
                    // UNKNOWN_TOPIC_ID for that entry alone (Kafka: INVALID_REQUEST).
                    (None, _) => TopicRef::Id(state.topic_id),
                    (Some(_), false) => {
                        return Err(WireError::Unsupported {
                            what: "DeleteTopics.Topics with both a Name and a TopicId",
                        })
                    }
                });
            }
            ControllerRequest::DeleteTopics(DeleteTopicsRequest { topics })
        }
        (ApiKey::CreatePartitions, RequestKind::CreatePartitions(r)) => {
            ControllerRequest::CreatePartitions(CreatePartitionsRequest {
                topics: r
                    .topics
                    .iter()
                    .map(|t| CreatePartitionsTopic {
                        name: t.name.to_string(),
                        count: t.count,
                        assignments: t.assignments.as_ref().map(|assignments| {
                            assignments
                                .iter()
                                .map(|a| ids_from_wire(&a.broker_ids))
                                .collect()
                        }),
                    })
                    .collect(),
                validate_only: r.validate_only,
            })
        }
        (ApiKey::IncrementalAlterConfigs, RequestKind::IncrementalAlterConfigs(r)) => {
            let mut resources = Vec::with_capacity(r.resources.len());
            for res in &r.resources {
                let mut configs = Vec::with_capacity(res.configs.len());
                for c in &res.configs {
                    configs.push(AlterableConfig {
                        name: c.name.to_string(),
                        op: config_op_from_wire(c.config_operation)?,
                        value: c.value.as_ref().map(|v| v.to_string()),
                    });
                }
                resources.push(IncrementalAlterConfigsResource {
                    resource: resource_from_wire(res.resource_type, &res.resource_name)?,
                    configs,
                });
            }
            ControllerRequest::IncrementalAlterConfigs(IncrementalAlterConfigsRequest {
                resources,
                validate_only: r.validate_only,
            })
        }
        (ApiKey::AlterConfigs, RequestKind::AlterConfigs(r)) => {
            let mut resources = Vec::with_capacity(r.resources.len());
            for res in &r.resources {
                resources.push(AlterConfigsResource {
                    resource: resource_from_wire(res.resource_type, &res.resource_name)?,
                    configs: res
                        .configs
                        .iter()
                        .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                        .collect(),
                });
            }
            ControllerRequest::AlterConfigs(AlterConfigsRequest {
                resources,
                validate_only: r.validate_only,
            })
        }
        (ApiKey::AlterPartition, RequestKind::AlterPartition(r)) => {
            alter_partition_from_wire(api_version, &r)
        }
        (ApiKey::ElectLeaders, RequestKind::ElectLeaders(r)) => {
            let election_type = match r.election_type {
                0 => ElectionType::Preferred,
                1 => ElectionType::Unclean,
                other => {
                    return Err(WireError::OutOfRange {
                        field: "ElectLeaders.ElectionType",
                        value: i64::from(other),
                    })
                }
            };
            ControllerRequest::ElectLeaders(ElectLeadersRequest {
                election_type,
                topic_partitions: r.topic_partitions.as_ref().map(|topics| {
                    topics
                        .iter()
                        .map(|t| (t.topic.to_string(), t.partitions.clone()))
                        .collect()
                }),
            })
        }
        (ApiKey::AlterPartitionReassignments, RequestKind::AlterPartitionReassignments(r)) => {
            if !r.allow_replication_factor_change {
                return Err(WireError::Unsupported {
                    what: "AlterPartitionReassignments.AllowReplicationFactorChange = false",
                });
            }
            ControllerRequest::AlterPartitionReassignments(AlterPartitionReassignmentsRequest {
                topics: r
                    .topics
                    .iter()
                    .map(|t| {
                        (
                            t.name.to_string(),
                            t.partitions
                                .iter()
                                .map(|p| {
                                    (p.partition_index, p.replicas.as_deref().map(ids_from_wire))
                                })
                                .collect(),
                        )
                    })
                    .collect(),
            })
        }
        (ApiKey::ListPartitionReassignments, RequestKind::ListPartitionReassignments(r)) => {
            ControllerRequest::ListPartitionReassignments(ListPartitionReassignmentsRequest {
                topics: r.topics.as_ref().map(|topics| {
                    topics
                        .iter()
                        .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
                        .collect()
                }),
            })
        }
        (ApiKey::AllocateProducerIds, RequestKind::AllocateProducerIds(r)) => {
            ControllerRequest::AllocateProducerIds(AllocateProducerIdsRequest {
                broker_id: r.broker_id.0,
                broker_epoch: r.broker_epoch,
            })
        }
        (ApiKey::CreateAcls, RequestKind::CreateAcls(r)) => {
            ControllerRequest::CreateAcls(security::create_acls_from_wire(&r))
        }
        (ApiKey::DeleteAcls, RequestKind::DeleteAcls(r)) => {
            ControllerRequest::DeleteAcls(security::delete_acls_from_wire(&r))
        }
        (ApiKey::AlterUserScramCredentials, RequestKind::AlterUserScramCredentials(r)) => {
            ControllerRequest::AlterUserScramCredentials(security::alter_scram_from_wire(&r))
        }
        (ApiKey::AlterClientQuotas, RequestKind::AlterClientQuotas(r)) => {
            ControllerRequest::AlterClientQuotas(security::alter_quotas_from_wire(&r))
        }
        (api_key, other) => return Err(mismatch_request(api_key, &other)),
    };
    Ok(request)
}

fn broker_registration_from_wire(
    r: m::BrokerRegistrationRequest,
) -> Result<BrokerRegistrationRequest, WireError> {
    if r.is_migrating_zk_broker {
        return Err(WireError::Unsupported {
            what: "BrokerRegistration.IsMigratingZkBroker (no ZooKeeper migration)",
        });
    }
    Ok(BrokerRegistrationRequest {
        broker_id: r.broker_id.0,
        cluster_id: r.cluster_id.to_string(),
        incarnation_id: r.incarnation_id,
        listeners: r
            .listeners
            .iter()
            .map(|l| BrokerEndpoint {
                name: l.name.to_string(),
                host: l.host.to_string(),
                port: l.port,
                security_protocol: l.security_protocol,
            })
            .collect(),
        features: r
            .features
            .iter()
            .map(|f| BrokerFeature {
                name: f.name.to_string(),
                min_supported_version: f.min_supported_version,
                max_supported_version: f.max_supported_version,
            })
            .collect(),
        rack: r.rack.as_ref().map(|rack| rack.to_string()),
        previous_broker_epoch: r.previous_broker_epoch,
    })
}

fn alter_partition_from_wire(api_version: i16, r: &m::AlterPartitionRequest) -> ControllerRequest {
    ControllerRequest::AlterPartition(AlterPartitionRequest {
        broker_id: r.broker_id.0,
        broker_epoch: r.broker_epoch,
        topics: r
            .topics
            .iter()
            .map(|t| AlterPartitionTopic {
                topic_id: t.topic_id,
                partitions: t
                    .partitions
                    .iter()
                    .map(|p| AlterPartitionData {
                        partition_index: p.partition_index,
                        leader_epoch: p.leader_epoch,
                        new_isr_with_epochs: if api_version >= 3 {
                            p.new_isr_with_epochs
                                .iter()
                                .map(|b| BrokerState {
                                    broker_id: b.broker_id.0,
                                    broker_epoch: b.broker_epoch,
                                })
                                .collect()
                        } else {
                            // v2 names ISR members only: their epochs are unknown, not checked.
                            p.new_isr
                                .iter()
                                .map(|id| BrokerState {
                                    broker_id: id.0,
                                    broker_epoch: -1,
                                })
                                .collect()
                        },
                        leader_recovery_state: p.leader_recovery_state,
                        partition_epoch: p.partition_epoch,
                    })
                    .collect(),
            })
            .collect(),
    })
}

// ---------------------------------------------------------------------------------------------
// Replies

/// The wire response for a controller reply to a request of `api_key`. Refuses
/// [`ControllerReply::Error`] (use [`error_to_wire`]) and [`ControllerReply::Internal`].
pub fn reply_to_wire(
    reply: &ControllerReply,
    api_key: ApiKey,
    api_version: i16,
) -> Result<ResponseKind, WireError> {
    check_version(api_key, api_version)?;
    let response = match (api_key, reply) {
        (_, ControllerReply::Error(_)) => return Err(WireError::WholeRequestError),
        (_, ControllerReply::Internal) => return Err(WireError::InternalReply),
        (ApiKey::BrokerRegistration, ControllerReply::BrokerRegistration(r)) => {
            ResponseKind::BrokerRegistration(
                m::BrokerRegistrationResponse::default()
                    .with_error_code(r.error.code.code())
                    .with_broker_epoch(r.broker_epoch),
            )
        }
        (ApiKey::BrokerHeartbeat, ControllerReply::BrokerHeartbeat(r)) => {
            ResponseKind::BrokerHeartbeat(
                m::BrokerHeartbeatResponse::default()
                    .with_error_code(r.error.code.code())
                    .with_is_caught_up(r.is_caught_up)
                    .with_is_fenced(r.is_fenced)
                    .with_should_shut_down(r.should_shut_down),
            )
        }
        (ApiKey::UnregisterBroker, ControllerReply::UnregisterBroker(e)) => {
            ResponseKind::UnregisterBroker(
                m::UnregisterBrokerResponse::default()
                    .with_error_code(e.code.code())
                    .with_error_message(message_to_wire(e)),
            )
        }
        (ApiKey::CreateTopics, ControllerReply::CreateTopics(r)) => {
            use m::create_topics_response::CreatableTopicResult as W;
            ResponseKind::CreateTopics(
                m::CreateTopicsResponse::default().with_topics(
                    r.topics
                        .iter()
                        .map(|t| {
                            W::default()
                                .with_name(topic_name(&t.name))
                                .with_topic_id(t.topic_id)
                                .with_error_code(t.error.code.code())
                                .with_error_message(message_to_wire(&t.error))
                                .with_num_partitions(t.num_partitions)
                                .with_replication_factor(t.replication_factor)
                                .with_configs(None)
                        })
                        .collect(),
                ),
            )
        }
        (ApiKey::DeleteTopics, ControllerReply::DeleteTopics(r)) => {
            use m::delete_topics_response::DeletableTopicResult as W;
            ResponseKind::DeleteTopics(
                m::DeleteTopicsResponse::default().with_responses(
                    r.topics
                        .iter()
                        .map(|t| {
                            W::default()
                                .with_name(t.name.as_deref().map(topic_name))
                                .with_topic_id(t.topic_id)
                                .with_error_code(t.error.code.code())
                                .with_error_message(message_to_wire(&t.error))
                        })
                        .collect(),
                ),
            )
        }
        (ApiKey::CreatePartitions, ControllerReply::CreatePartitions(r)) => {
            use m::create_partitions_response::CreatePartitionsTopicResult as W;
            ResponseKind::CreatePartitions(
                m::CreatePartitionsResponse::default().with_results(
                    r.topics
                        .iter()
                        .map(|(name, error)| {
                            W::default()
                                .with_name(topic_name(name))
                                .with_error_code(error.code.code())
                                .with_error_message(message_to_wire(error))
                        })
                        .collect(),
                ),
            )
        }
        (ApiKey::IncrementalAlterConfigs, ControllerReply::IncrementalAlterConfigs(r)) => {
            use m::incremental_alter_configs_response::AlterConfigsResourceResponse as W;
            ResponseKind::IncrementalAlterConfigs(
                m::IncrementalAlterConfigsResponse::default().with_responses(
                    r.resources
                        .iter()
                        .map(|(resource, error)| {
                            let (resource_type, resource_name) = resource_to_wire(resource);
                            W::default()
                                .with_error_code(error.code.code())
                                .with_error_message(message_to_wire(error))
                                .with_resource_type(resource_type)
                                .with_resource_name(resource_name)
                        })
                        .collect(),
                ),
            )
        }
        (ApiKey::AlterConfigs, ControllerReply::AlterConfigs(r)) => {
            use m::alter_configs_response::AlterConfigsResourceResponse as W;
            ResponseKind::AlterConfigs(
                m::AlterConfigsResponse::default().with_responses(
                    r.resources
                        .iter()
                        .map(|(resource, error)| {
                            let (resource_type, resource_name) = resource_to_wire(resource);
                            W::default()
                                .with_error_code(error.code.code())
                                .with_error_message(message_to_wire(error))
                                .with_resource_type(resource_type)
                                .with_resource_name(resource_name)
                        })
                        .collect(),
                ),
            )
        }
        (ApiKey::AlterPartition, ControllerReply::AlterPartition(r)) => {
            ResponseKind::AlterPartition(alter_partition_reply_to_wire(r))
        }
        (ApiKey::ElectLeaders, ControllerReply::ElectLeaders(r)) => {
            use m::elect_leaders_response::{PartitionResult as P, ReplicaElectionResult};
            let groups = group_consecutive(r.results.iter().map(|p| (p.topic.as_str(), p)));
            ResponseKind::ElectLeaders(
                m::ElectLeadersResponse::default()
                    .with_error_code(0)
                    .with_replica_election_results(
                        groups
                            .into_iter()
                            .map(|(topic, partitions)| {
                                ReplicaElectionResult::default()
                                    .with_topic(topic_name(topic))
                                    .with_partition_result(
                                        partitions
                                            .into_iter()
                                            .map(|p| {
                                                P::default()
                                                    .with_partition_id(p.partition)
                                                    .with_error_code(p.error.code.code())
                                                    .with_error_message(message_to_wire(&p.error))
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    ),
            )
        }
        (ApiKey::AlterPartitionReassignments, ControllerReply::AlterPartitionReassignments(r)) => {
            use m::alter_partition_reassignments_response::{
                ReassignablePartitionResponse as P, ReassignableTopicResponse,
            };
            let groups = group_consecutive(r.results.iter().map(|p| (p.topic.as_str(), p)));
            ResponseKind::AlterPartitionReassignments(
                m::AlterPartitionReassignmentsResponse::default()
                    .with_error_code(0)
                    .with_error_message(None)
                    .with_responses(
                        groups
                            .into_iter()
                            .map(|(topic, partitions)| {
                                ReassignableTopicResponse::default()
                                    .with_name(topic_name(topic))
                                    .with_partitions(
                                        partitions
                                            .into_iter()
                                            .map(|p| {
                                                P::default()
                                                    .with_partition_index(p.partition)
                                                    .with_error_code(p.error.code.code())
                                                    .with_error_message(message_to_wire(&p.error))
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    ),
            )
        }
        (ApiKey::ListPartitionReassignments, ControllerReply::ListPartitionReassignments(r)) => {
            use m::list_partition_reassignments_response::{
                OngoingPartitionReassignment as P, OngoingTopicReassignment,
            };
            let groups = group_consecutive(r.reassignments.iter().map(|p| (p.topic.as_str(), p)));
            ResponseKind::ListPartitionReassignments(
                m::ListPartitionReassignmentsResponse::default()
                    .with_error_code(r.error.code.code())
                    .with_error_message(message_to_wire(&r.error))
                    .with_topics(
                        groups
                            .into_iter()
                            .map(|(topic, partitions)| {
                                OngoingTopicReassignment::default()
                                    .with_name(topic_name(topic))
                                    .with_partitions(
                                        partitions
                                            .into_iter()
                                            .map(|p| {
                                                P::default()
                                                    .with_partition_index(p.partition)
                                                    .with_replicas(ids_to_wire(&p.replicas))
                                                    .with_adding_replicas(ids_to_wire(
                                                        &p.adding_replicas,
                                                    ))
                                                    .with_removing_replicas(ids_to_wire(
                                                        &p.removing_replicas,
                                                    ))
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    ),
            )
        }
        (ApiKey::AllocateProducerIds, ControllerReply::AllocateProducerIds(r)) => {
            ResponseKind::AllocateProducerIds(
                m::AllocateProducerIdsResponse::default()
                    .with_error_code(r.error.code.code())
                    .with_producer_id_start(ProducerId(r.producer_id_start))
                    .with_producer_id_len(r.producer_id_len),
            )
        }
        (ApiKey::CreateAcls, ControllerReply::CreateAcls(r)) => {
            ResponseKind::CreateAcls(security::create_acls_reply_to_wire(r))
        }
        (ApiKey::DeleteAcls, ControllerReply::DeleteAcls(r)) => {
            ResponseKind::DeleteAcls(security::delete_acls_reply_to_wire(r))
        }
        (ApiKey::AlterUserScramCredentials, ControllerReply::AlterUserScramCredentials(r)) => {
            ResponseKind::AlterUserScramCredentials(security::alter_scram_reply_to_wire(r))
        }
        (ApiKey::AlterClientQuotas, ControllerReply::AlterClientQuotas(r)) => {
            ResponseKind::AlterClientQuotas(security::alter_quotas_reply_to_wire(r))
        }
        (api_key, other) => {
            return Err(WireError::KindMismatch {
                api_key,
                found: reply_name(other).to_string(),
            })
        }
    };
    Ok(response)
}

fn reply_name(reply: &ControllerReply) -> &'static str {
    match reply {
        ControllerReply::Internal => "Internal",
        ControllerReply::Error(_) => "Error",
        ControllerReply::BrokerRegistration(_) => "BrokerRegistration",
        ControllerReply::BrokerHeartbeat(_) => "BrokerHeartbeat",
        ControllerReply::UnregisterBroker(_) => "UnregisterBroker",
        ControllerReply::CreateTopics(_) => "CreateTopics",
        ControllerReply::DeleteTopics(_) => "DeleteTopics",
        ControllerReply::CreatePartitions(_) => "CreatePartitions",
        ControllerReply::IncrementalAlterConfigs(_) => "IncrementalAlterConfigs",
        ControllerReply::AlterConfigs(_) => "AlterConfigs",
        ControllerReply::AlterPartition(_) => "AlterPartition",
        ControllerReply::ElectLeaders(_) => "ElectLeaders",
        ControllerReply::AlterPartitionReassignments(_) => "AlterPartitionReassignments",
        ControllerReply::ListPartitionReassignments(_) => "ListPartitionReassignments",
        ControllerReply::AllocateProducerIds(_) => "AllocateProducerIds",
        ControllerReply::CreateAcls(_) => "CreateAcls",
        ControllerReply::DeleteAcls(_) => "DeleteAcls",
        ControllerReply::AlterUserScramCredentials(_) => "AlterUserScramCredentials",
        ControllerReply::AlterClientQuotas(_) => "AlterClientQuotas",
    }
}

fn alter_partition_reply_to_wire(r: &AlterPartitionReply) -> m::AlterPartitionResponse {
    use m::alter_partition_response::{PartitionData, TopicData};
    m::AlterPartitionResponse::default()
        .with_error_code(r.error.code())
        .with_topics(
            r.topics
                .iter()
                .map(|t| {
                    TopicData::default()
                        .with_topic_id(t.topic_id)
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    PartitionData::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(p.error.code())
                                        .with_leader_id(BrokerId(p.leader_id))
                                        .with_leader_epoch(p.leader_epoch)
                                        .with_isr(ids_to_wire(&p.isr))
                                        .with_leader_recovery_state(p.leader_recovery_state)
                                        .with_partition_epoch(p.partition_epoch)
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
}

/// The controller reply a wire response (as decoded by the sender) carries. See the module
/// documentation for when it is [`ControllerReply::Error`].
pub fn reply_from_wire(
    api_key: ApiKey,
    api_version: i16,
    response: ResponseKind,
) -> Result<ControllerReply, WireError> {
    check_version(api_key, api_version)?;
    let reply = match (api_key, response) {
        (ApiKey::BrokerRegistration, ResponseKind::BrokerRegistration(r)) => {
            ControllerReply::BrokerRegistration(BrokerRegistrationReply {
                error: api_error_from_wire(r.error_code, None),
                broker_epoch: r.broker_epoch,
            })
        }
        (ApiKey::BrokerHeartbeat, ResponseKind::BrokerHeartbeat(r)) => {
            ControllerReply::BrokerHeartbeat(BrokerHeartbeatReply {
                error: api_error_from_wire(r.error_code, None),
                is_caught_up: r.is_caught_up,
                is_fenced: r.is_fenced,
                // Not on the wire: see `heartbeat_in_controlled_shutdown`.
                in_controlled_shutdown: false,
                should_shut_down: r.should_shut_down,
            })
        }
        (ApiKey::UnregisterBroker, ResponseKind::UnregisterBroker(r)) => {
            ControllerReply::UnregisterBroker(api_error_from_wire(
                r.error_code,
                r.error_message.as_ref(),
            ))
        }
        (ApiKey::CreateTopics, ResponseKind::CreateTopics(r)) => {
            ControllerReply::CreateTopics(CreateTopicsReply {
                topics: r
                    .topics
                    .iter()
                    .map(|t| CreatableTopicResult {
                        name: t.name.to_string(),
                        topic_id: t.topic_id,
                        error: api_error_from_wire(t.error_code, t.error_message.as_ref()),
                        num_partitions: t.num_partitions,
                        replication_factor: t.replication_factor,
                    })
                    .collect(),
            })
        }
        (ApiKey::DeleteTopics, ResponseKind::DeleteTopics(r)) => {
            ControllerReply::DeleteTopics(DeleteTopicsReply {
                topics: r
                    .responses
                    .iter()
                    .map(|t| DeletableTopicResult {
                        name: t.name.as_ref().map(|n| n.to_string()),
                        topic_id: t.topic_id,
                        error: api_error_from_wire(t.error_code, t.error_message.as_ref()),
                    })
                    .collect(),
            })
        }
        (ApiKey::CreatePartitions, ResponseKind::CreatePartitions(r)) => {
            ControllerReply::CreatePartitions(CreatePartitionsReply {
                topics: r
                    .results
                    .iter()
                    .map(|t| {
                        (
                            t.name.to_string(),
                            api_error_from_wire(t.error_code, t.error_message.as_ref()),
                        )
                    })
                    .collect(),
            })
        }
        (ApiKey::IncrementalAlterConfigs, ResponseKind::IncrementalAlterConfigs(r)) => {
            let mut resources = Vec::with_capacity(r.responses.len());
            for res in &r.responses {
                resources.push((
                    resource_from_wire(res.resource_type, &res.resource_name)?,
                    api_error_from_wire(res.error_code, res.error_message.as_ref()),
                ));
            }
            ControllerReply::IncrementalAlterConfigs(AlterConfigsReply { resources })
        }
        (ApiKey::AlterConfigs, ResponseKind::AlterConfigs(r)) => {
            let mut resources = Vec::with_capacity(r.responses.len());
            for res in &r.responses {
                resources.push((
                    resource_from_wire(res.resource_type, &res.resource_name)?,
                    api_error_from_wire(res.error_code, res.error_message.as_ref()),
                ));
            }
            ControllerReply::AlterConfigs(AlterConfigsReply { resources })
        }
        (ApiKey::AlterPartition, ResponseKind::AlterPartition(r)) => {
            ControllerReply::AlterPartition(AlterPartitionReply {
                error: code_from_wire(r.error_code),
                topics: r
                    .topics
                    .iter()
                    .map(|t| AlterPartitionTopicReply {
                        topic_id: t.topic_id,
                        partitions: t
                            .partitions
                            .iter()
                            .map(|p| AlterPartitionPartitionReply {
                                partition_index: p.partition_index,
                                error: code_from_wire(p.error_code),
                                leader_id: p.leader_id.0,
                                leader_epoch: p.leader_epoch,
                                isr: ids_from_wire(&p.isr),
                                leader_recovery_state: p.leader_recovery_state,
                                partition_epoch: p.partition_epoch,
                            })
                            .collect(),
                    })
                    .collect(),
            })
        }
        (ApiKey::ElectLeaders, ResponseKind::ElectLeaders(r)) => {
            let results: Vec<PartitionResult> = r
                .replica_election_results
                .iter()
                .flat_map(|t| {
                    t.partition_result.iter().map(|p| PartitionResult {
                        topic: t.topic.to_string(),
                        partition: p.partition_id,
                        error: api_error_from_wire(p.error_code, p.error_message.as_ref()),
                    })
                })
                .collect();
            if r.error_code != 0 {
                // The top-level field has no message: take the first partition's if it
                // carries the same code (as `error_to_wire` writes it).
                let message = results
                    .iter()
                    .find(|p| p.error.code.code() == r.error_code)
                    .and_then(|p| p.error.message.as_ref())
                    .map(|m| s(m));
                ControllerReply::Error(api_error_from_wire(r.error_code, message.as_ref()))
            } else {
                ControllerReply::ElectLeaders(ElectLeadersReply { results })
            }
        }
        (ApiKey::AlterPartitionReassignments, ResponseKind::AlterPartitionReassignments(r)) => {
            if r.error_code != 0 {
                ControllerReply::Error(api_error_from_wire(r.error_code, r.error_message.as_ref()))
            } else {
                ControllerReply::AlterPartitionReassignments(AlterPartitionReassignmentsReply {
                    results: r
                        .responses
                        .iter()
                        .flat_map(|t| {
                            t.partitions.iter().map(|p| PartitionResult {
                                topic: t.name.to_string(),
                                partition: p.partition_index,
                                error: api_error_from_wire(p.error_code, p.error_message.as_ref()),
                            })
                        })
                        .collect(),
                })
            }
        }
        (ApiKey::ListPartitionReassignments, ResponseKind::ListPartitionReassignments(r)) => {
            ControllerReply::ListPartitionReassignments(ListPartitionReassignmentsReply {
                error: api_error_from_wire(r.error_code, r.error_message.as_ref()),
                reassignments: r
                    .topics
                    .iter()
                    .flat_map(|t| {
                        t.partitions.iter().map(|p| OngoingReassignment {
                            topic: t.name.to_string(),
                            partition: p.partition_index,
                            replicas: ids_from_wire(&p.replicas),
                            adding_replicas: ids_from_wire(&p.adding_replicas),
                            removing_replicas: ids_from_wire(&p.removing_replicas),
                        })
                    })
                    .collect(),
            })
        }
        (ApiKey::AllocateProducerIds, ResponseKind::AllocateProducerIds(r)) => {
            ControllerReply::AllocateProducerIds(AllocateProducerIdsReply {
                error: api_error_from_wire(r.error_code, None),
                producer_id_start: r.producer_id_start.0,
                producer_id_len: r.producer_id_len,
            })
        }
        (ApiKey::CreateAcls, ResponseKind::CreateAcls(r)) => {
            ControllerReply::CreateAcls(security::create_acls_reply_from_wire(&r))
        }
        (ApiKey::DeleteAcls, ResponseKind::DeleteAcls(r)) => {
            ControllerReply::DeleteAcls(security::delete_acls_reply_from_wire(&r)?)
        }
        (ApiKey::AlterUserScramCredentials, ResponseKind::AlterUserScramCredentials(r)) => {
            ControllerReply::AlterUserScramCredentials(security::alter_scram_reply_from_wire(&r))
        }
        (ApiKey::AlterClientQuotas, ResponseKind::AlterClientQuotas(r)) => {
            ControllerReply::AlterClientQuotas(security::alter_quotas_reply_from_wire(&r))
        }
        (api_key, other) => return Err(mismatch_response(api_key, &other)),
    };
    Ok(reply)
}

/// Whether the broker is in controlled shutdown after this heartbeat: the wire reply has no
/// such field, but the state follows from what the broker asked (Kafka's
/// `BrokerLifecycleManager` sits in PENDING_CONTROLLED_SHUTDOWN while it asks `WantShutDown`
/// and gets neither fenced nor `ShouldShutDown`).
pub fn heartbeat_in_controlled_shutdown(
    request: &BrokerHeartbeatRequest,
    reply: &BrokerHeartbeatReply,
) -> bool {
    request.want_shut_down && reply.error.is_ok() && !reply.is_fenced && !reply.should_shut_down
}

// ---------------------------------------------------------------------------------------------
// Whole-request errors

/// A whole-request error (NOT_CONTROLLER, REQUEST_TIMED_OUT, a [`WireError::code`]...) as
/// that API's response, every item carrying the code and message, as Kafka's
/// `getErrorResponse` does (top-level error fields set too where the schema has them).
///
/// A `Result` because a request of an API the controller listener does not serve, or whose
/// kind disagrees with `api_key`, has no such response.
pub fn error_to_wire(
    api_key: ApiKey,
    api_version: i16,
    request: &RequestKind,
    code: i16,
    message: Option<&str>,
) -> Result<ResponseKind, WireError> {
    check_version(api_key, api_version)?;
    let msg = || opt_message(message);
    let response = match (api_key, request) {
        (ApiKey::BrokerRegistration, RequestKind::BrokerRegistration(_)) => {
            ResponseKind::BrokerRegistration(
                m::BrokerRegistrationResponse::default().with_error_code(code),
            )
        }
        (ApiKey::BrokerHeartbeat, RequestKind::BrokerHeartbeat(_)) => {
            ResponseKind::BrokerHeartbeat(
                m::BrokerHeartbeatResponse::default().with_error_code(code),
            )
        }
        (ApiKey::UnregisterBroker, RequestKind::UnregisterBroker(_)) => {
            ResponseKind::UnregisterBroker(
                m::UnregisterBrokerResponse::default()
                    .with_error_code(code)
                    .with_error_message(msg()),
            )
        }
        (ApiKey::CreateTopics, RequestKind::CreateTopics(r)) => {
            use m::create_topics_response::CreatableTopicResult as W;
            ResponseKind::CreateTopics(
                m::CreateTopicsResponse::default().with_topics(
                    r.topics
                        .iter()
                        .map(|t| {
                            W::default()
                                .with_name(t.name.clone())
                                .with_error_code(code)
                                .with_error_message(msg())
                                .with_configs(None)
                        })
                        .collect(),
                ),
            )
        }
        (ApiKey::DeleteTopics, RequestKind::DeleteTopics(r)) => {
            use m::delete_topics_response::DeletableTopicResult as W;
            let by_name = r.topic_names.iter().map(|name| {
                W::default()
                    .with_name(Some(name.clone()))
                    .with_error_code(code)
                    .with_error_message(msg())
            });
            let by_state = r.topics.iter().map(|t| {
                W::default()
                    .with_name(t.name.clone())
                    .with_topic_id(t.topic_id)
                    .with_error_code(code)
                    .with_error_message(msg())
            });
            ResponseKind::DeleteTopics(
                m::DeleteTopicsResponse::default()
                    .with_responses(by_name.chain(by_state).collect()),
            )
        }
        (ApiKey::CreatePartitions, RequestKind::CreatePartitions(r)) => {
            use m::create_partitions_response::CreatePartitionsTopicResult as W;
            ResponseKind::CreatePartitions(
                m::CreatePartitionsResponse::default().with_results(
                    r.topics
                        .iter()
                        .map(|t| {
                            W::default()
                                .with_name(t.name.clone())
                                .with_error_code(code)
                                .with_error_message(msg())
                        })
                        .collect(),
                ),
            )
        }
        (ApiKey::IncrementalAlterConfigs, RequestKind::IncrementalAlterConfigs(r)) => {
            use m::incremental_alter_configs_response::AlterConfigsResourceResponse as W;
            ResponseKind::IncrementalAlterConfigs(
                m::IncrementalAlterConfigsResponse::default().with_responses(
                    r.resources
                        .iter()
                        .map(|res| {
                            W::default()
                                .with_error_code(code)
                                .with_error_message(msg())
                                .with_resource_type(res.resource_type)
                                .with_resource_name(res.resource_name.clone())
                        })
                        .collect(),
                ),
            )
        }
        (ApiKey::AlterConfigs, RequestKind::AlterConfigs(r)) => {
            use m::alter_configs_response::AlterConfigsResourceResponse as W;
            ResponseKind::AlterConfigs(
                m::AlterConfigsResponse::default().with_responses(
                    r.resources
                        .iter()
                        .map(|res| {
                            W::default()
                                .with_error_code(code)
                                .with_error_message(msg())
                                .with_resource_type(res.resource_type)
                                .with_resource_name(res.resource_name.clone())
                        })
                        .collect(),
                ),
            )
        }
        (ApiKey::AlterPartition, RequestKind::AlterPartition(_)) => {
            // Kafka's AlterPartitionRequest.getErrorResponse: the top-level code, no topics.
            ResponseKind::AlterPartition(m::AlterPartitionResponse::default().with_error_code(code))
        }
        (ApiKey::ElectLeaders, RequestKind::ElectLeaders(r)) => {
            use m::elect_leaders_response::{PartitionResult as P, ReplicaElectionResult};
            let results = r
                .topic_partitions
                .iter()
                .flatten()
                .map(|t| {
                    ReplicaElectionResult::default()
                        .with_topic(t.topic.clone())
                        .with_partition_result(
                            t.partitions
                                .iter()
                                .map(|&p| {
                                    P::default()
                                        .with_partition_id(p)
                                        .with_error_code(code)
                                        .with_error_message(msg())
                                })
                                .collect(),
                        )
                })
                .collect();
            // The top-level ErrorCode exists from v1 (Kafka's ElectLeadersResponse sets it
            // only then); v0 carries the error per partition alone.
            let top_level_code = if api_version >= ELECT_LEADERS_TOP_LEVEL_ERROR_VERSION {
                code
            } else {
                0
            };
            ResponseKind::ElectLeaders(
                m::ElectLeadersResponse::default()
                    .with_error_code(top_level_code)
                    .with_replica_election_results(results),
            )
        }
        (ApiKey::AlterPartitionReassignments, RequestKind::AlterPartitionReassignments(r)) => {
            use m::alter_partition_reassignments_response::{
                ReassignablePartitionResponse as P, ReassignableTopicResponse,
            };
            ResponseKind::AlterPartitionReassignments(
                m::AlterPartitionReassignmentsResponse::default()
                    .with_error_code(code)
                    .with_error_message(msg())
                    .with_responses(
                        r.topics
                            .iter()
                            .map(|t| {
                                ReassignableTopicResponse::default()
                                    .with_name(t.name.clone())
                                    .with_partitions(
                                        t.partitions
                                            .iter()
                                            .map(|p| {
                                                P::default()
                                                    .with_partition_index(p.partition_index)
                                                    .with_error_code(code)
                                                    .with_error_message(msg())
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    ),
            )
        }
        (ApiKey::ListPartitionReassignments, RequestKind::ListPartitionReassignments(r)) => {
            use m::list_partition_reassignments_response::{
                OngoingPartitionReassignment as P, OngoingTopicReassignment,
            };
            // Kafka echoes the asked partitions with empty replica lists.
            ResponseKind::ListPartitionReassignments(
                m::ListPartitionReassignmentsResponse::default()
                    .with_error_code(code)
                    .with_error_message(msg())
                    .with_topics(
                        r.topics
                            .iter()
                            .flatten()
                            .map(|t| {
                                OngoingTopicReassignment::default()
                                    .with_name(t.name.clone())
                                    .with_partitions(
                                        t.partition_indexes
                                            .iter()
                                            .map(|&p| P::default().with_partition_index(p))
                                            .collect(),
                                    )
                            })
                            .collect(),
                    ),
            )
        }
        (ApiKey::AllocateProducerIds, RequestKind::AllocateProducerIds(_)) => {
            ResponseKind::AllocateProducerIds(
                m::AllocateProducerIdsResponse::default().with_error_code(code),
            )
        }
        (ApiKey::CreateAcls, RequestKind::CreateAcls(r)) => {
            ResponseKind::CreateAcls(security::create_acls_error(r, code, msg()))
        }
        (ApiKey::DeleteAcls, RequestKind::DeleteAcls(r)) => {
            ResponseKind::DeleteAcls(security::delete_acls_error(r, code, msg()))
        }
        (ApiKey::AlterUserScramCredentials, RequestKind::AlterUserScramCredentials(r)) => {
            ResponseKind::AlterUserScramCredentials(security::alter_scram_error(r, code, msg()))
        }
        (ApiKey::AlterClientQuotas, RequestKind::AlterClientQuotas(r)) => {
            ResponseKind::AlterClientQuotas(security::alter_quotas_error(r, code, msg()))
        }
        (ApiKey::DescribeQuorum, RequestKind::DescribeQuorum(_)) => {
            // Kafka's DescribeQuorumRequest.getErrorResponse: the top-level error only.
            ResponseKind::DescribeQuorum(
                m::DescribeQuorumResponse::default()
                    .with_error_code(code)
                    .with_error_message(if api_version >= 2 { msg() } else { None }),
            )
        }
        (api_key, other) => return Err(mismatch_request(api_key, other)),
    };
    Ok(response)
}

/// Whether the reply tells the sender to retry at another controller: NOT_CONTROLLER (41)
/// anywhere in it, as Kafka's `NodeToControllerRequestThread` checks
/// `errorCounts().containsKey(NOT_CONTROLLER)` (including AlterPartition's per-partition
/// NOT_CONTROLLER, which the controller answers when it lags behind the sender).
pub fn is_not_controller(response: &ControllerReply) -> bool {
    let nc = |code: ErrorCode| code == ErrorCode::NotController;
    match response {
        ControllerReply::Internal => false,
        ControllerReply::Error(e) | ControllerReply::UnregisterBroker(e) => nc(e.code),
        ControllerReply::BrokerRegistration(r) => nc(r.error.code),
        ControllerReply::BrokerHeartbeat(r) => nc(r.error.code),
        ControllerReply::CreateTopics(r) => r.topics.iter().any(|t| nc(t.error.code)),
        ControllerReply::DeleteTopics(r) => r.topics.iter().any(|t| nc(t.error.code)),
        ControllerReply::CreatePartitions(r) => r.topics.iter().any(|(_, e)| nc(e.code)),
        ControllerReply::IncrementalAlterConfigs(r) | ControllerReply::AlterConfigs(r) => {
            r.resources.iter().any(|(_, e)| nc(e.code))
        }
        ControllerReply::AlterPartition(r) => {
            nc(r.error)
                || r.topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .any(|p| nc(p.error))
        }
        ControllerReply::ElectLeaders(r) => r.results.iter().any(|p| nc(p.error.code)),
        ControllerReply::AlterPartitionReassignments(r) => {
            r.results.iter().any(|p| nc(p.error.code))
        }
        ControllerReply::ListPartitionReassignments(r) => nc(r.error.code),
        ControllerReply::AllocateProducerIds(r) => nc(r.error.code),
        ControllerReply::CreateAcls(r) => r.results.iter().any(|e| nc(e.code)),
        ControllerReply::DeleteAcls(r) => r.results.iter().any(|f| nc(f.error.code)),
        ControllerReply::AlterUserScramCredentials(r) => r.results.iter().any(|u| nc(u.error.code)),
        ControllerReply::AlterClientQuotas(r) => r.results.iter().any(|e| nc(e.error.code)),
    }
}

// ---------------------------------------------------------------------------------------------
// DescribeQuorum

/// The DescribeQuorum (55) response for the metadata partition `topic_name`-0, v0-v2 (fields
/// a version lacks are dropped by its encoder).
///
/// Offsets: Fjord's metadata offset of an entry is its Raft index, which starts at 1, so a
/// voter's match index (the last index it holds) equals the number of entries it holds:
/// Kafka's exclusive log end offset. The high watermark is the commit index likewise.
/// Observers are brokers: `(broker id, metadata offset of its last heartbeat)`. A Raft tick is
/// not a wall-clock time, so last fetch / caught-up timestamps are -1 here; use
/// [`describe_quorum_response_at`] to convert ticks.
pub fn describe_quorum_response(
    description: &fjord_raft::QuorumDescription,
    observers: &[(i32, i64)],
    topic_name: &str,
) -> m::DescribeQuorumResponse {
    describe_quorum_response_at(description, observers, topic_name, None)
}

/// Wall-clock time of a Raft tick count on the leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TickClock {
    /// Now, in Unix milliseconds.
    pub now_ms: i64,
    /// Milliseconds per Raft tick.
    pub tick_ms: i64,
}

/// [`describe_quorum_response`] with timestamps: on the leader (whose own voter entry holds
/// the current tick) a voter's last fetch is `now - (current tick - its last contact tick) *
/// tick_ms`; it was caught up then if its match index reached the leader's. -1 when unknown.
pub fn describe_quorum_response_at(
    description: &fjord_raft::QuorumDescription,
    observers: &[(i32, i64)],
    topic_name: &str,
    clock: Option<TickClock>,
) -> m::DescribeQuorumResponse {
    use m::describe_quorum_response::{PartitionData, ReplicaState, TopicData};
    let to_i32 = |id: u64| i32::try_from(id).unwrap_or(-1);
    let to_i64 = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
    let leader = description
        .leader_id
        .and_then(|id| description.voters.iter().find(|v| v.id == id));
    let current_tick = leader.and_then(|l| l.last_contact_tick);
    let leader_match = leader.and_then(|l| l.match_index);
    let voters = description
        .voters
        .iter()
        .map(|v| {
            let last_fetch_ms = match (clock, current_tick, v.last_contact_tick) {
                (Some(clock), Some(now_tick), Some(tick)) => {
                    let ago_ticks = to_i64(now_tick.saturating_sub(tick));
                    clock
                        .now_ms
                        .saturating_sub(ago_ticks.saturating_mul(clock.tick_ms))
                }
                _ => -1,
            };
            let caught_up = last_fetch_ms >= 0
                && matches!((v.match_index, leader_match), (Some(a), Some(b)) if a >= b);
            ReplicaState::default()
                .with_replica_id(BrokerId(to_i32(v.id)))
                .with_log_end_offset(v.match_index.map_or(-1, to_i64))
                .with_last_fetch_timestamp(last_fetch_ms)
                .with_last_caught_up_timestamp(if caught_up { last_fetch_ms } else { -1 })
        })
        .collect();
    let observers = observers
        .iter()
        .map(|&(id, offset)| {
            ReplicaState::default()
                .with_replica_id(BrokerId(id))
                .with_log_end_offset(offset)
                .with_last_fetch_timestamp(-1)
                .with_last_caught_up_timestamp(-1)
        })
        .collect();
    let partition = PartitionData::default()
        .with_partition_index(0)
        .with_error_code(0)
        .with_error_message(None)
        .with_leader_id(BrokerId(description.leader_id.map_or(-1, to_i32)))
        .with_leader_epoch(i32::try_from(description.term).unwrap_or(i32::MAX))
        .with_high_watermark(to_i64(description.commit_index))
        .with_current_voters(voters)
        .with_observers(observers);
    m::DescribeQuorumResponse::default()
        .with_error_code(0)
        .with_error_message(None)
        .with_topics(vec![TopicData::default()
            .with_topic_name(self::topic_name(topic_name))
            .with_partitions(vec![partition])])
}

pub mod security;

#[cfg(test)]
mod tests;
