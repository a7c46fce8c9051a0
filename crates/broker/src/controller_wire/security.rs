//! The wire forms of the security controller APIs (issue 9): CreateAcls (30), DeleteAcls (31),
//! AlterUserScramCredentials (51), AlterClientQuotas (49). Same rules as the parent module:
//! codes are carried as they are (the controller validates them), messages where the schema
//! has a field, and a whole-request error goes to every item. The broker handlers of these
//! APIs reuse the reply and error conversions: the controller's reply is the client's answer.

use bytes::Bytes;
use fjord_controller::{
    AclCreation, AlterClientQuotasReply, AlterClientQuotasRequest, AlterUserScramCredentialsReply,
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResult, ClientQuotaAlterResult,
    ClientQuotaAlteration, ClientQuotaEntityList, ClientQuotaOp, CreateAclsReply,
    CreateAclsRequest, DeleteAclsFilterResult, DeleteAclsReply, DeleteAclsRequest,
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use fjord_metadata::security::{
    AclOperation, AclPatternType, AclPermissionType, AclResourceType, StandardAcl,
};
use fjord_metadata::AclBindingFilter;
use fjord_protocol::kafka_protocol::messages as m;
use fjord_protocol::kafka_protocol::protocol::StrBytes;

use super::{api_error_from_wire, message_to_wire, s, WireError};

/// A message as the wire carries it.
pub fn str_bytes(value: &str) -> StrBytes {
    s(value)
}

fn opt_s(value: Option<&str>) -> Option<StrBytes> {
    value.map(s)
}

// ---- requests ----

pub fn create_acls_to_wire(r: &CreateAclsRequest) -> m::CreateAclsRequest {
    use m::create_acls_request::AclCreation as W;
    m::CreateAclsRequest::default().with_creations(
        r.creations
            .iter()
            .map(|c| {
                W::default()
                    .with_resource_type(c.resource_type)
                    .with_resource_name(s(&c.resource_name))
                    .with_resource_pattern_type(c.pattern_type)
                    .with_principal(s(&c.principal))
                    .with_host(s(&c.host))
                    .with_operation(c.operation)
                    .with_permission_type(c.permission_type)
            })
            .collect(),
    )
}

pub fn create_acls_from_wire(r: &m::CreateAclsRequest) -> CreateAclsRequest {
    CreateAclsRequest {
        creations: r
            .creations
            .iter()
            .map(|c| AclCreation {
                resource_type: c.resource_type,
                resource_name: c.resource_name.to_string(),
                pattern_type: c.resource_pattern_type,
                principal: c.principal.to_string(),
                host: c.host.to_string(),
                operation: c.operation,
                permission_type: c.permission_type,
            })
            .collect(),
    }
}

pub fn delete_acls_to_wire(r: &DeleteAclsRequest) -> m::DeleteAclsRequest {
    use m::delete_acls_request::DeleteAclsFilter as W;
    m::DeleteAclsRequest::default().with_filters(
        r.filters
            .iter()
            .map(|f| {
                W::default()
                    .with_resource_type_filter(f.resource_type)
                    .with_resource_name_filter(opt_s(f.resource_name.as_deref()))
                    .with_pattern_type_filter(f.pattern_type)
                    .with_principal_filter(opt_s(f.principal.as_deref()))
                    .with_host_filter(opt_s(f.host.as_deref()))
                    .with_operation(f.operation)
                    .with_permission_type(f.permission_type)
            })
            .collect(),
    )
}

/// A DeleteAcls / DescribeAcls filter from the wire (same fields in both).
pub fn acl_filter_from_wire(f: &m::delete_acls_request::DeleteAclsFilter) -> AclBindingFilter {
    AclBindingFilter {
        resource_type: f.resource_type_filter,
        resource_name: f.resource_name_filter.as_ref().map(|n| n.to_string()),
        pattern_type: f.pattern_type_filter,
        principal: f.principal_filter.as_ref().map(|n| n.to_string()),
        host: f.host_filter.as_ref().map(|n| n.to_string()),
        operation: f.operation,
        permission_type: f.permission_type,
    }
}

pub fn delete_acls_from_wire(r: &m::DeleteAclsRequest) -> DeleteAclsRequest {
    DeleteAclsRequest {
        filters: r.filters.iter().map(acl_filter_from_wire).collect(),
    }
}

pub fn alter_scram_to_wire(
    r: &AlterUserScramCredentialsRequest,
) -> m::AlterUserScramCredentialsRequest {
    use m::alter_user_scram_credentials_request::{
        ScramCredentialDeletion as D, ScramCredentialUpsertion as U,
    };
    m::AlterUserScramCredentialsRequest::default()
        .with_deletions(
            r.deletions
                .iter()
                .map(|d| {
                    D::default()
                        .with_name(s(&d.name))
                        .with_mechanism(d.mechanism)
                })
                .collect(),
        )
        .with_upsertions(
            r.upsertions
                .iter()
                .map(|u| {
                    U::default()
                        .with_name(s(&u.name))
                        .with_mechanism(u.mechanism)
                        .with_iterations(u.iterations)
                        .with_salt(Bytes::copy_from_slice(&u.salt))
                        .with_salted_password(Bytes::copy_from_slice(&u.salted_password))
                })
                .collect(),
        )
}

pub fn alter_scram_from_wire(
    r: &m::AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsRequest {
    AlterUserScramCredentialsRequest {
        deletions: r
            .deletions
            .iter()
            .map(|d| ScramCredentialDeletion {
                name: d.name.to_string(),
                mechanism: d.mechanism,
            })
            .collect(),
        upsertions: r
            .upsertions
            .iter()
            .map(|u| ScramCredentialUpsertion {
                name: u.name.to_string(),
                mechanism: u.mechanism,
                iterations: u.iterations,
                salt: u.salt.to_vec(),
                salted_password: u.salted_password.to_vec(),
            })
            .collect(),
    }
}

pub fn alter_quotas_to_wire(r: &AlterClientQuotasRequest) -> m::AlterClientQuotasRequest {
    use m::alter_client_quotas_request::{EntityData, EntryData, OpData};
    m::AlterClientQuotasRequest::default()
        .with_validate_only(r.validate_only)
        .with_entries(
            r.entries
                .iter()
                .map(|e| {
                    EntryData::default()
                        .with_entity(
                            e.entity
                                .iter()
                                .map(|(t, n)| {
                                    EntityData::default()
                                        .with_entity_type(s(t))
                                        .with_entity_name(opt_s(n.as_deref()))
                                })
                                .collect(),
                        )
                        .with_ops(
                            e.ops
                                .iter()
                                .map(|o| {
                                    OpData::default()
                                        .with_key(s(&o.key))
                                        .with_value(o.value)
                                        .with_remove(o.remove)
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
}

/// The entity of an AlterClientQuotas entry as the request lists it.
pub fn quota_entity_from_wire(
    entity: &[m::alter_client_quotas_request::EntityData],
) -> ClientQuotaEntityList {
    entity
        .iter()
        .map(|e| {
            (
                e.entity_type.to_string(),
                e.entity_name.as_ref().map(|n| n.to_string()),
            )
        })
        .collect()
}

pub fn alter_quotas_from_wire(r: &m::AlterClientQuotasRequest) -> AlterClientQuotasRequest {
    AlterClientQuotasRequest {
        validate_only: r.validate_only,
        entries: r
            .entries
            .iter()
            .map(|e| ClientQuotaAlteration {
                entity: quota_entity_from_wire(&e.entity),
                ops: e
                    .ops
                    .iter()
                    .map(|o| ClientQuotaOp {
                        key: o.key.to_string(),
                        value: o.value,
                        remove: o.remove,
                    })
                    .collect(),
            })
            .collect(),
    }
}

// ---- replies ----

pub fn create_acls_reply_to_wire(r: &CreateAclsReply) -> m::CreateAclsResponse {
    use m::create_acls_response::AclCreationResult as W;
    m::CreateAclsResponse::default().with_results(
        r.results
            .iter()
            .map(|e| {
                W::default()
                    .with_error_code(e.code.code())
                    .with_error_message(message_to_wire(e))
            })
            .collect(),
    )
}

pub fn create_acls_reply_from_wire(r: &m::CreateAclsResponse) -> CreateAclsReply {
    CreateAclsReply {
        results: r
            .results
            .iter()
            .map(|e| api_error_from_wire(e.error_code, e.error_message.as_ref()))
            .collect(),
    }
}

/// One matching ACL as DeleteAcls (and DescribeAcls) write it.
pub fn matching_acl_to_wire(acl: &StandardAcl) -> m::delete_acls_response::DeleteAclsMatchingAcl {
    m::delete_acls_response::DeleteAclsMatchingAcl::default()
        .with_error_code(0)
        .with_resource_type(acl.resource_type.code())
        .with_resource_name(s(&acl.resource_name))
        .with_pattern_type(acl.pattern_type.code())
        .with_principal(s(&acl.principal))
        .with_host(s(&acl.host))
        .with_operation(acl.operation.code())
        .with_permission_type(acl.permission_type.code())
}

fn matching_acl_from_wire(
    a: &m::delete_acls_response::DeleteAclsMatchingAcl,
) -> Result<StandardAcl, WireError> {
    let out_of_range = |field: &'static str, value: i8| WireError::OutOfRange {
        field,
        value: i64::from(value),
    };
    Ok(StandardAcl {
        resource_type: AclResourceType::from_code(a.resource_type)
            .ok_or_else(|| out_of_range("MatchingAcls.ResourceType", a.resource_type))?,
        resource_name: a.resource_name.to_string(),
        pattern_type: AclPatternType::from_code(a.pattern_type)
            .ok_or_else(|| out_of_range("MatchingAcls.PatternType", a.pattern_type))?,
        principal: a.principal.to_string(),
        host: a.host.to_string(),
        operation: AclOperation::from_code(a.operation)
            .ok_or_else(|| out_of_range("MatchingAcls.Operation", a.operation))?,
        permission_type: AclPermissionType::from_code(a.permission_type)
            .ok_or_else(|| out_of_range("MatchingAcls.PermissionType", a.permission_type))?,
    })
}

pub fn delete_acls_reply_to_wire(r: &DeleteAclsReply) -> m::DeleteAclsResponse {
    use m::delete_acls_response::DeleteAclsFilterResult as W;
    m::DeleteAclsResponse::default().with_filter_results(
        r.results
            .iter()
            .map(|f| {
                W::default()
                    .with_error_code(f.error.code.code())
                    .with_error_message(message_to_wire(&f.error))
                    .with_matching_acls(f.matching_acls.iter().map(matching_acl_to_wire).collect())
            })
            .collect(),
    )
}

pub fn delete_acls_reply_from_wire(
    r: &m::DeleteAclsResponse,
) -> Result<DeleteAclsReply, WireError> {
    let results = r
        .filter_results
        .iter()
        .map(|f| {
            Ok(DeleteAclsFilterResult {
                error: api_error_from_wire(f.error_code, f.error_message.as_ref()),
                matching_acls: f
                    .matching_acls
                    .iter()
                    .map(matching_acl_from_wire)
                    .collect::<Result<_, _>>()?,
            })
        })
        .collect::<Result<_, WireError>>()?;
    Ok(DeleteAclsReply { results })
}

pub fn alter_scram_reply_to_wire(
    r: &AlterUserScramCredentialsReply,
) -> m::AlterUserScramCredentialsResponse {
    use m::alter_user_scram_credentials_response::AlterUserScramCredentialsResult as W;
    m::AlterUserScramCredentialsResponse::default().with_results(
        r.results
            .iter()
            .map(|u| {
                W::default()
                    .with_user(s(&u.user))
                    .with_error_code(u.error.code.code())
                    .with_error_message(message_to_wire(&u.error))
            })
            .collect(),
    )
}

pub fn alter_scram_reply_from_wire(
    r: &m::AlterUserScramCredentialsResponse,
) -> AlterUserScramCredentialsReply {
    AlterUserScramCredentialsReply {
        results: r
            .results
            .iter()
            .map(|u| AlterUserScramCredentialsResult {
                user: u.user.to_string(),
                error: api_error_from_wire(u.error_code, u.error_message.as_ref()),
            })
            .collect(),
    }
}

/// An entity as AlterClientQuotas responses list it.
pub fn quota_entity_to_wire(
    entity: &ClientQuotaEntityList,
) -> Vec<m::alter_client_quotas_response::EntityData> {
    entity
        .iter()
        .map(|(t, n)| {
            m::alter_client_quotas_response::EntityData::default()
                .with_entity_type(s(t))
                .with_entity_name(opt_s(n.as_deref()))
        })
        .collect()
}

pub fn alter_quotas_reply_to_wire(r: &AlterClientQuotasReply) -> m::AlterClientQuotasResponse {
    use m::alter_client_quotas_response::EntryData;
    m::AlterClientQuotasResponse::default().with_entries(
        r.results
            .iter()
            .map(|e| {
                EntryData::default()
                    .with_error_code(e.error.code.code())
                    .with_error_message(message_to_wire(&e.error))
                    .with_entity(quota_entity_to_wire(&e.entity))
            })
            .collect(),
    )
}

pub fn alter_quotas_reply_from_wire(r: &m::AlterClientQuotasResponse) -> AlterClientQuotasReply {
    AlterClientQuotasReply {
        results: r
            .entries
            .iter()
            .map(|e| ClientQuotaAlterResult {
                entity: e
                    .entity
                    .iter()
                    .map(|d| {
                        (
                            d.entity_type.to_string(),
                            d.entity_name.as_ref().map(|n| n.to_string()),
                        )
                    })
                    .collect(),
                error: api_error_from_wire(e.error_code, e.error_message.as_ref()),
            })
            .collect(),
    }
}

// ---- whole-request errors ----

pub fn create_acls_error(
    r: &m::CreateAclsRequest,
    code: i16,
    message: Option<StrBytes>,
) -> m::CreateAclsResponse {
    use m::create_acls_response::AclCreationResult as W;
    m::CreateAclsResponse::default().with_results(
        r.creations
            .iter()
            .map(|_| {
                W::default()
                    .with_error_code(code)
                    .with_error_message(message.clone())
            })
            .collect(),
    )
}

pub fn delete_acls_error(
    r: &m::DeleteAclsRequest,
    code: i16,
    message: Option<StrBytes>,
) -> m::DeleteAclsResponse {
    use m::delete_acls_response::DeleteAclsFilterResult as W;
    m::DeleteAclsResponse::default().with_filter_results(
        r.filters
            .iter()
            .map(|_| {
                W::default()
                    .with_error_code(code)
                    .with_error_message(message.clone())
            })
            .collect(),
    )
}

pub fn alter_scram_error(
    r: &m::AlterUserScramCredentialsRequest,
    code: i16,
    message: Option<StrBytes>,
) -> m::AlterUserScramCredentialsResponse {
    use m::alter_user_scram_credentials_response::AlterUserScramCredentialsResult as W;
    // Kafka's getErrorResponse: one result per distinct user.
    let mut seen = std::collections::BTreeSet::new();
    let users: Vec<&StrBytes> = r
        .deletions
        .iter()
        .map(|d| &d.name)
        .chain(r.upsertions.iter().map(|u| &u.name))
        .filter(|name| seen.insert(name.as_str()))
        .collect();
    m::AlterUserScramCredentialsResponse::default().with_results(
        users
            .into_iter()
            .map(|user| {
                W::default()
                    .with_user(user.clone())
                    .with_error_code(code)
                    .with_error_message(message.clone())
            })
            .collect(),
    )
}

pub fn alter_quotas_error(
    r: &m::AlterClientQuotasRequest,
    code: i16,
    message: Option<StrBytes>,
) -> m::AlterClientQuotasResponse {
    use m::alter_client_quotas_response::EntryData;
    m::AlterClientQuotasResponse::default().with_entries(
        r.entries
            .iter()
            .map(|e| {
                EntryData::default()
                    .with_error_code(code)
                    .with_error_message(message.clone())
                    .with_entity(quota_entity_to_wire(&quota_entity_from_wire(&e.entity)))
            })
            .collect(),
    )
}
