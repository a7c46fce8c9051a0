//! DescribeAcls (key 29), v1-v3: the ACLs of this broker's image that the request's filter
//! selects (Kafka `AclBindingFilter`: ANY fields, MATCH pattern type, null name / principal /
//! host match all), grouped by resource pattern as Kafka's `AclApis` does. A filter with an
//! UNKNOWN field answers INVALID_REQUEST.

use std::collections::BTreeMap;

use fjord_metadata::security::StandardAcl;
use fjord_metadata::{AclBindingFilter, MetadataImage};
use fjord_protocol::kafka_protocol::messages::describe_acls_response::{
    AclDescription, DescribeAclsResource,
};
use fjord_protocol::kafka_protocol::messages::{DescribeAclsRequest, DescribeAclsResponse};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ResponseError, VersionRange};

use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 1, max: 3 };

pub fn handle(broker: &Broker, request: &DescribeAclsRequest) -> DescribeAclsResponse {
    describe(&broker.image(), &filter_from_request(request))
}

/// The request's filter.
pub fn filter_from_request(request: &DescribeAclsRequest) -> AclBindingFilter {
    AclBindingFilter {
        resource_type: request.resource_type_filter,
        resource_name: request.resource_name_filter.as_ref().map(|n| n.to_string()),
        pattern_type: request.pattern_type_filter,
        principal: request.principal_filter.as_ref().map(|n| n.to_string()),
        host: request.host_filter.as_ref().map(|n| n.to_string()),
        operation: request.operation,
        permission_type: request.permission_type,
    }
}

/// The response for `filter` on `image`.
pub fn describe(image: &MetadataImage, filter: &AclBindingFilter) -> DescribeAclsResponse {
    if let Some(field) = filter.unknown_field() {
        return DescribeAclsResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code())
            .with_error_message(Some(StrBytes::from_string(format!(
                "The filter has an unknown {field}."
            ))));
    }
    let mut by_resource: BTreeMap<(i8, &str, i8), Vec<&StandardAcl>> = BTreeMap::new();
    for acl in image.acls.values().filter(|acl| filter.matches(acl)) {
        by_resource
            .entry((
                acl.resource_type.code(),
                acl.resource_name.as_str(),
                acl.pattern_type.code(),
            ))
            .or_default()
            .push(acl);
    }
    let resources = by_resource
        .into_iter()
        .map(|((resource_type, name, pattern_type), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(StrBytes::from_string(name.to_string()))
                .with_pattern_type(pattern_type)
                .with_acls(
                    acls.into_iter()
                        .map(|acl| {
                            AclDescription::default()
                                .with_principal(StrBytes::from_string(acl.principal.clone()))
                                .with_host(StrBytes::from_string(acl.host.clone()))
                                .with_operation(acl.operation.code())
                                .with_permission_type(acl.permission_type.code())
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeAclsResponse::default()
        .with_error_code(0)
        .with_resources(resources)
}
