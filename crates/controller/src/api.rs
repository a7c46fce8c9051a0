//! The controller's request and reply types: plain Rust values, one per Kafka controller API.
//!
//! The broker (slice E) maps Kafka wire messages (`BrokerRegistration` 62, `BrokerHeartbeat` 63,
//! `CreateTopics` 19, `AlterPartition` 56, ...) to [`ControllerRequest`] and the
//! [`ControllerReply`] back; this crate never sees bytes. Field names follow the Kafka JSON
//! schemas in snake case; errors are Kafka error codes ([`ErrorCode`]) with Kafka's messages
//! where Kafka has one ([`ApiError`]).
//!
//! Every call of the controller returns a [`ControllerResult`]: the records to propose as one
//! metadata log entry and the reply to release once that entry has committed (see
//! [`ControllerResult::offset`] for the exact rule).

use fjord_metadata::security::StandardAcl;
use fjord_metadata::{
    AclBindingFilter, BrokerEndpoint, BrokerFeature, ConfigResource, MetadataRecord,
};
use uuid::Uuid;

/// Kafka error codes the controller answers with (`org.apache.kafka.common.protocol.Errors`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i16)]
pub enum ErrorCode {
    UnknownServerError = -1,
    None = 0,
    UnknownTopicOrPartition = 3,
    RequestTimedOut = 7,
    InvalidTopicException = 17,
    UnsupportedVersion = 35,
    TopicAlreadyExists = 36,
    InvalidPartitions = 37,
    InvalidReplicationFactor = 38,
    InvalidReplicaAssignment = 39,
    InvalidConfig = 40,
    NotController = 41,
    UnsupportedSaslMechanism = 33,
    InvalidRequest = 42,
    FencedLeaderEpoch = 74,
    StaleBrokerEpoch = 77,
    PreferredLeaderNotAvailable = 80,
    EligibleLeadersNotAvailable = 83,
    ElectionNotNeeded = 84,
    NoReassignmentInProgress = 85,
    ThrottlingQuotaExceeded = 89,
    ResourceNotFound = 91,
    DuplicateResource = 92,
    UnacceptableCredential = 93,
    InvalidUpdateVersion = 95,
    UnknownTopicId = 100,
    DuplicateBrokerRegistration = 101,
    BrokerIdNotRegistered = 102,
    InconsistentClusterId = 104,
    IneligibleReplica = 107,
    NewLeaderElected = 108,
}

impl ErrorCode {
    /// The wire value.
    pub fn code(self) -> i16 {
        self as i16
    }

    pub fn is_none(self) -> bool {
        self == ErrorCode::None
    }
}

/// An error code with an optional human-readable message (Kafka `ApiError`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: Option<String>,
}

impl ApiError {
    /// No error.
    pub const NONE: ApiError = ApiError {
        code: ErrorCode::None,
        message: None,
    };

    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: Some(message.into()),
        }
    }

    pub fn code_only(code: ErrorCode) -> Self {
        Self {
            code,
            message: None,
        }
    }

    pub fn is_ok(&self) -> bool {
        self.code.is_none()
    }
}

impl From<ErrorCode> for ApiError {
    fn from(code: ErrorCode) -> Self {
        ApiError::code_only(code)
    }
}

/// What the driver proposes and what it answers once the proposal has committed.
///
/// Contract with the driver (design section 4):
/// * `records` non-empty: propose them as **one** Raft entry, immediately and in the order the
///   results were returned; the entry is expected at index `offset` (the controller predicts
///   it, as Kafka's `OffsetControlManager.nextWriteOffset`, and uses it as the broker epoch of
///   a registration). Release `reply` when the committed offset reaches `offset`; answer
///   NOT_CONTROLLER instead if leadership is lost first.
/// * `records` empty: nothing to propose. Release `reply` when the committed offset reaches
///   `offset`, which is the last entry this controller proposed before (so a reply never
///   reveals speculative state that might still be lost); at once if `offset` is already
///   committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerResult {
    pub records: Vec<MetadataRecord>,
    pub reply: ControllerReply,
    /// See the type documentation.
    pub offset: i64,
}

/// A request to the active controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControllerRequest {
    BrokerRegistration(BrokerRegistrationRequest),
    BrokerHeartbeat(BrokerHeartbeatRequest),
    UnregisterBroker(UnregisterBrokerRequest),
    CreateTopics(CreateTopicsRequest),
    DeleteTopics(DeleteTopicsRequest),
    CreatePartitions(CreatePartitionsRequest),
    IncrementalAlterConfigs(IncrementalAlterConfigsRequest),
    AlterConfigs(AlterConfigsRequest),
    AlterPartition(AlterPartitionRequest),
    ElectLeaders(ElectLeadersRequest),
    AlterPartitionReassignments(AlterPartitionReassignmentsRequest),
    ListPartitionReassignments(ListPartitionReassignmentsRequest),
    AllocateProducerIds(AllocateProducerIdsRequest),
    CreateAcls(CreateAclsRequest),
    DeleteAcls(DeleteAclsRequest),
    AlterUserScramCredentials(AlterUserScramCredentialsRequest),
    AlterClientQuotas(AlterClientQuotasRequest),
}

/// The reply to a [`ControllerRequest`] of the same name, or [`ControllerReply::Internal`] for
/// work the controller started itself (`tick`, bootstrap).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControllerReply {
    /// A result of `tick` or `on_became_active`: nobody waits for it.
    Internal,
    /// The whole request was refused (NOT_CONTROLLER while inactive, UNKNOWN_SERVER_ERROR on a
    /// controller bug) before any per-item processing.
    Error(ApiError),
    BrokerRegistration(BrokerRegistrationReply),
    BrokerHeartbeat(BrokerHeartbeatReply),
    UnregisterBroker(ApiError),
    CreateTopics(CreateTopicsReply),
    DeleteTopics(DeleteTopicsReply),
    CreatePartitions(CreatePartitionsReply),
    IncrementalAlterConfigs(AlterConfigsReply),
    AlterConfigs(AlterConfigsReply),
    AlterPartition(AlterPartitionReply),
    ElectLeaders(ElectLeadersReply),
    AlterPartitionReassignments(AlterPartitionReassignmentsReply),
    ListPartitionReassignments(ListPartitionReassignmentsReply),
    AllocateProducerIds(AllocateProducerIdsReply),
    CreateAcls(CreateAclsReply),
    DeleteAcls(DeleteAclsReply),
    AlterUserScramCredentials(AlterUserScramCredentialsReply),
    AlterClientQuotas(AlterClientQuotasReply),
}

// ---- registration and heartbeats ----

/// `BrokerRegistrationRequest` (62, v4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerRegistrationRequest {
    pub broker_id: i32,
    pub cluster_id: String,
    /// Random per broker process.
    pub incarnation_id: Uuid,
    pub listeners: Vec<BrokerEndpoint>,
    /// Supported feature ranges; `metadata.version` must include the finalized level.
    pub features: Vec<BrokerFeature>,
    pub rack: Option<String>,
    /// KIP-966 unclean-shutdown detection; accepted and ignored (no ELR yet, design 1).
    pub previous_broker_epoch: i64,
}

/// `BrokerRegistrationResponse`: the broker epoch is the offset of the entry holding the
/// `RegisterBrokerRecord` (its `ControllerResult::offset`), so it is final once released.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerRegistrationReply {
    pub error: ApiError,
    /// -1 on error.
    pub broker_epoch: i64,
}

/// `BrokerHeartbeatRequest` (63).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerHeartbeatRequest {
    pub broker_id: i32,
    pub broker_epoch: i64,
    /// The highest metadata offset the broker has applied.
    pub current_metadata_offset: i64,
    pub want_fence: bool,
    pub want_shut_down: bool,
}

/// `BrokerHeartbeatResponse`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerHeartbeatReply {
    pub error: ApiError,
    /// The broker's metadata offset has reached its registration record.
    pub is_caught_up: bool,
    pub is_fenced: bool,
    pub in_controlled_shutdown: bool,
    pub should_shut_down: bool,
}

impl BrokerHeartbeatReply {
    pub(crate) fn error(error: ApiError) -> Self {
        Self {
            error,
            is_caught_up: false,
            is_fenced: true,
            in_controlled_shutdown: false,
            should_shut_down: false,
        }
    }
}

/// `UnregisterBrokerRequest` (64).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnregisterBrokerRequest {
    pub broker_id: i32,
}

// ---- topics ----

/// One topic of a `CreateTopicsRequest` (19).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatableTopic {
    pub name: String,
    /// -1 = `num.partitions` default; must be -1 with explicit assignments.
    pub num_partitions: i32,
    /// -1 = `default.replication.factor`; must be -1 with explicit assignments.
    pub replication_factor: i16,
    /// (partition index, broker ids) explicit assignments; empty = placement.
    pub assignments: Vec<(i32, Vec<i32>)>,
    /// Topic configs; a `None` value is refused (INVALID_CONFIG) as Kafka does.
    pub configs: Vec<(String, Option<String>)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateTopicsRequest {
    pub topics: Vec<CreatableTopic>,
    pub validate_only: bool,
}

/// One topic of the reply, in request order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatableTopicResult {
    pub name: String,
    /// Nil on error.
    pub topic_id: Uuid,
    pub error: ApiError,
    /// -1 on error.
    pub num_partitions: i32,
    /// -1 on error.
    pub replication_factor: i16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateTopicsReply {
    pub topics: Vec<CreatableTopicResult>,
}

/// A topic to delete, by name or by id (DeleteTopics v6+).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TopicRef {
    Name(String),
    Id(Uuid),
}

/// `DeleteTopicsRequest` (20).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteTopicsRequest {
    pub topics: Vec<TopicRef>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeletableTopicResult {
    /// The name, if known.
    pub name: Option<String>,
    pub topic_id: Uuid,
    pub error: ApiError,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteTopicsReply {
    pub topics: Vec<DeletableTopicResult>,
}

/// One topic of `CreatePartitionsRequest` (37).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatePartitionsTopic {
    pub name: String,
    /// The new total partition count.
    pub count: i32,
    /// Broker ids of each new partition; `None` = placement.
    pub assignments: Option<Vec<Vec<i32>>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatePartitionsRequest {
    pub topics: Vec<CreatePartitionsTopic>,
    pub validate_only: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatePartitionsReply {
    /// (topic name, error) in request order.
    pub topics: Vec<(String, ApiError)>,
}

// ---- configs ----

/// `IncrementalAlterConfigs` operation (Kafka `AlterConfigOp.OpType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlterConfigOp {
    Set,
    Delete,
    /// Add to a comma-separated list value (the caller checked the key is a list).
    Append,
    /// Remove from a comma-separated list value.
    Subtract,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlterableConfig {
    pub name: String,
    pub op: AlterConfigOp,
    pub value: Option<String>,
}

/// One resource of `IncrementalAlterConfigsRequest` (44).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncrementalAlterConfigsResource {
    pub resource: ConfigResource,
    pub configs: Vec<AlterableConfig>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncrementalAlterConfigsRequest {
    pub resources: Vec<IncrementalAlterConfigsResource>,
    pub validate_only: bool,
}

/// One resource of the legacy `AlterConfigsRequest` (33): the complete new config set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlterConfigsResource {
    pub resource: ConfigResource,
    pub configs: Vec<(String, Option<String>)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlterConfigsRequest {
    pub resources: Vec<AlterConfigsResource>,
    pub validate_only: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlterConfigsReply {
    /// (resource, error) in request order.
    pub resources: Vec<(ConfigResource, ApiError)>,
}

// ---- AlterPartition ----

/// `AlterPartitionRequest` (56, v3: topic ids and `NewIsrWithEpochs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlterPartitionRequest {
    pub broker_id: i32,
    pub broker_epoch: i64,
    pub topics: Vec<AlterPartitionTopic>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlterPartitionTopic {
    pub topic_id: Uuid,
    pub partitions: Vec<AlterPartitionData>,
}

/// One ISR member with the broker epoch the leader saw (KIP-903; -1 = unknown, not checked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BrokerState {
    pub broker_id: i32,
    pub broker_epoch: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlterPartitionData {
    pub partition_index: i32,
    pub leader_epoch: i32,
    pub new_isr_with_epochs: Vec<BrokerState>,
    /// 0 recovered, 1 recovering.
    pub leader_recovery_state: i8,
    pub partition_epoch: i32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlterPartitionReply {
    /// Top-level error (STALE_BROKER_EPOCH, NOT_CONTROLLER); partitions are empty then.
    pub error: ErrorCode,
    pub topics: Vec<AlterPartitionTopicReply>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlterPartitionTopicReply {
    pub topic_id: Uuid,
    pub partitions: Vec<AlterPartitionPartitionReply>,
}

/// The partition's state after the change (on NONE), else just the error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlterPartitionPartitionReply {
    pub partition_index: i32,
    pub error: ErrorCode,
    pub leader_id: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
    pub leader_recovery_state: i8,
    pub partition_epoch: i32,
}

// ---- elections and reassignments ----

/// Kafka `ElectionType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElectionType {
    Preferred,
    Unclean,
}

/// `ElectLeadersRequest` (43).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElectLeadersRequest {
    pub election_type: ElectionType,
    /// (topic name, partitions); `None` = every partition (then ELECTION_NOT_NEEDED results are
    /// left out, as Kafka does).
    pub topic_partitions: Option<Vec<(String, Vec<i32>)>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionResult {
    pub topic: String,
    pub partition: i32,
    pub error: ApiError,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElectLeadersReply {
    pub results: Vec<PartitionResult>,
}

/// `AlterPartitionReassignmentsRequest` (45): per partition the target replicas, `None` to
/// cancel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlterPartitionReassignmentsRequest {
    pub topics: Vec<(String, Vec<ReassignablePartition>)>,
}

/// (partition index, target replicas or `None` to cancel).
pub type ReassignablePartition = (i32, Option<Vec<i32>>);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlterPartitionReassignmentsReply {
    pub results: Vec<PartitionResult>,
}

/// `ListPartitionReassignmentsRequest` (46); `None` = all partitions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListPartitionReassignmentsRequest {
    pub topics: Option<Vec<(String, Vec<i32>)>>,
}

/// One ongoing reassignment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OngoingReassignment {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<i32>,
    pub adding_replicas: Vec<i32>,
    pub removing_replicas: Vec<i32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListPartitionReassignmentsReply {
    pub error: ApiError,
    pub reassignments: Vec<OngoingReassignment>,
}

// ---- producer ids ----

/// `AllocateProducerIdsRequest` (67).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllocateProducerIdsRequest {
    pub broker_id: i32,
    pub broker_epoch: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllocateProducerIdsReply {
    pub error: ApiError,
    pub producer_id_start: i64,
    pub producer_id_len: i32,
}

// ---- ACLs, SCRAM credentials, client quotas (issue 9) ----

/// Most ACL creations or filters in one CreateAcls / DeleteAcls request; the rest are refused
/// with INVALID_REQUEST.
pub const ACL_REQUEST_ITEMS_MAX: usize = 1000;

/// One `CreateAclsRequest.Creations[]` element, codes as on the wire (validated by the
/// controller, Kafka `AclControlManager.validateNewAcl`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclCreation {
    pub resource_type: i8,
    pub resource_name: String,
    pub pattern_type: i8,
    pub principal: String,
    pub host: String,
    pub operation: i8,
    pub permission_type: i8,
}

/// `CreateAclsRequest` (30).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateAclsRequest {
    pub creations: Vec<AclCreation>,
}

/// `CreateAclsResponse`: one result per creation, in request order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateAclsReply {
    pub results: Vec<ApiError>,
}

/// `DeleteAclsRequest` (31).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteAclsRequest {
    pub filters: Vec<AclBindingFilter>,
}

/// The result of one filter: the ACLs it deleted (an ACL matched by several filters is listed
/// by each).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteAclsFilterResult {
    pub error: ApiError,
    pub matching_acls: Vec<StandardAcl>,
}

/// `DeleteAclsResponse`: one result per filter, in request order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteAclsReply {
    pub results: Vec<DeleteAclsFilterResult>,
}

/// `AlterUserScramCredentialsRequest.Deletions[]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScramCredentialDeletion {
    pub name: String,
    /// Kafka `ScramMechanism` code (0 = UNKNOWN).
    pub mechanism: i8,
}

/// `AlterUserScramCredentialsRequest.Upsertions[]`: the client salts and hashes the password;
/// the controller derives the stored and server keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScramCredentialUpsertion {
    pub name: String,
    pub mechanism: i8,
    pub iterations: i32,
    pub salt: Vec<u8>,
    pub salted_password: Vec<u8>,
}

/// `AlterUserScramCredentialsRequest` (51).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlterUserScramCredentialsRequest {
    pub deletions: Vec<ScramCredentialDeletion>,
    pub upsertions: Vec<ScramCredentialUpsertion>,
}

/// One user's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlterUserScramCredentialsResult {
    pub user: String,
    pub error: ApiError,
}

/// `AlterUserScramCredentialsResponse`: one result per user named in the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlterUserScramCredentialsReply {
    pub results: Vec<AlterUserScramCredentialsResult>,
}

/// A client quota entity as the request lists it: (entity type, name; `None` = default), in
/// request order (duplicates are the controller's to refuse).
pub type ClientQuotaEntityList = Vec<(String, Option<String>)>;

/// One `AlterClientQuotasRequest.Entries[].Ops[]` element.
#[derive(Clone, Debug)]
pub struct ClientQuotaOp {
    pub key: String,
    /// Ignored when `remove` is set.
    pub value: f64,
    pub remove: bool,
}

/// Equality compares `value` by its bits (so requests stay `Eq`).
impl PartialEq for ClientQuotaOp {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
            && self.value.to_bits() == other.value.to_bits()
            && self.remove == other.remove
    }
}

impl Eq for ClientQuotaOp {}

/// One `AlterClientQuotasRequest.Entries[]` element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientQuotaAlteration {
    pub entity: ClientQuotaEntityList,
    pub ops: Vec<ClientQuotaOp>,
}

/// `AlterClientQuotasRequest` (49).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlterClientQuotasRequest {
    pub entries: Vec<ClientQuotaAlteration>,
    /// Validate only: nothing is written.
    pub validate_only: bool,
}

/// One entity's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientQuotaAlterResult {
    pub entity: ClientQuotaEntityList,
    pub error: ApiError,
}

/// `AlterClientQuotasResponse`: one result per entry, in request order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlterClientQuotasReply {
    pub results: Vec<ClientQuotaAlterResult>,
}
