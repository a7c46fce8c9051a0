//! `AclBindingFilter`: which stored ACLs a DescribeAcls or DeleteAcls filter selects, with
//! Kafka's semantics (`org.apache.kafka.common.acl.AclBindingFilter`, `ResourcePatternFilter`,
//! `AccessControlEntryFilter`). The controller deletes by it, brokers describe by it.
//!
//! Codes are Kafka's wire codes: besides the concrete values of [`crate::security`], a filter
//! may use ANY (1) for every field, MATCH (2) for the pattern type, and `None` for the resource
//! name, principal and host ("any"). Codes Kafka does not know map to UNKNOWN (0), and a filter
//! with an UNKNOWN field is refused ([`AclBindingFilter::unknown_field`]).
//!
//! MATCH selects the ACLs that would apply to the named resource: literal ACLs of that exact
//! name, the literal wildcard `*`, and prefixed ACLs whose name is a prefix of it.

use crate::security::{
    AclOperation, AclPatternType, AclPermissionType, AclResourceType, StandardAcl,
};

/// Kafka's UNKNOWN code of every ACL enum.
pub const ACL_UNKNOWN_CODE: i8 = 0;
/// Kafka's ANY code of every ACL enum.
pub const ACL_ANY_CODE: i8 = 1;
/// Kafka's MATCH pattern type (filters only).
pub const ACL_MATCH_CODE: i8 = AclPatternType::MATCH_CODE;
/// The literal resource name that matches every resource of its type.
pub const WILDCARD_RESOURCE: &str = "*";
/// The only name a CLUSTER resource may have (Kafka `Resource.CLUSTER_NAME`).
pub const CLUSTER_NAME: &str = "kafka-cluster";

/// A filter over ACLs (Kafka `AclBindingFilter`), codes as on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclBindingFilter {
    pub resource_type: i8,
    /// `None` matches every name.
    pub resource_name: Option<String>,
    pub pattern_type: i8,
    /// `None` matches every principal.
    pub principal: Option<String>,
    /// `None` matches every host.
    pub host: Option<String>,
    pub operation: i8,
    pub permission_type: i8,
}

impl AclBindingFilter {
    /// The filter that selects every ACL.
    pub fn any() -> Self {
        Self {
            resource_type: ACL_ANY_CODE,
            resource_name: None,
            pattern_type: ACL_ANY_CODE,
            principal: None,
            host: None,
            operation: ACL_ANY_CODE,
            permission_type: ACL_ANY_CODE,
        }
    }

    /// The name of the first field whose code is UNKNOWN to Kafka (`isUnknown()`), if any.
    pub fn unknown_field(&self) -> Option<&'static str> {
        if self.resource_type != ACL_ANY_CODE
            && AclResourceType::from_code(self.resource_type).is_none()
        {
            return Some("resource type");
        }
        if !matches!(self.pattern_type, ACL_ANY_CODE | ACL_MATCH_CODE)
            && AclPatternType::from_code(self.pattern_type).is_none()
        {
            return Some("pattern type");
        }
        if self.operation != ACL_ANY_CODE && AclOperation::from_code(self.operation).is_none() {
            return Some("operation");
        }
        if self.permission_type != ACL_ANY_CODE
            && AclPermissionType::from_code(self.permission_type).is_none()
        {
            return Some("permission type");
        }
        None
    }

    /// Whether `acl` is selected (Kafka `AclBindingFilter.matches`). A filter with an unknown
    /// field selects nothing.
    pub fn matches(&self, acl: &StandardAcl) -> bool {
        if self.unknown_field().is_some() {
            return false;
        }
        self.matches_pattern(acl) && self.matches_entry(acl)
    }

    /// Kafka `ResourcePatternFilter.matches`.
    fn matches_pattern(&self, acl: &StandardAcl) -> bool {
        if self.resource_type != ACL_ANY_CODE && self.resource_type != acl.resource_type.code() {
            return false;
        }
        if !matches!(self.pattern_type, ACL_ANY_CODE | ACL_MATCH_CODE)
            && self.pattern_type != acl.pattern_type.code()
        {
            return false;
        }
        let Some(name) = &self.resource_name else {
            return true;
        };
        if self.pattern_type == ACL_ANY_CODE || self.pattern_type == acl.pattern_type.code() {
            return *name == acl.resource_name;
        }
        // MATCH: the ACLs that apply to a resource of this name.
        match acl.pattern_type {
            AclPatternType::Literal => {
                *name == acl.resource_name || acl.resource_name == WILDCARD_RESOURCE
            }
            AclPatternType::Prefixed => name.starts_with(&acl.resource_name),
        }
    }

    /// Kafka `AccessControlEntryFilter.matches`.
    fn matches_entry(&self, acl: &StandardAcl) -> bool {
        self.principal.as_ref().is_none_or(|p| *p == acl.principal)
            && self.host.as_ref().is_none_or(|h| *h == acl.host)
            && (self.operation == ACL_ANY_CODE || self.operation == acl.operation.code())
            && (self.permission_type == ACL_ANY_CODE
                || self.permission_type == acl.permission_type.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(resource_name: &str, pattern_type: AclPatternType) -> StandardAcl {
        StandardAcl {
            resource_type: AclResourceType::Topic,
            resource_name: resource_name.into(),
            pattern_type,
            principal: "User:alice".into(),
            host: "*".into(),
            operation: AclOperation::Read,
            permission_type: AclPermissionType::Allow,
        }
    }

    #[test]
    fn any_filter_matches_everything() {
        let f = AclBindingFilter::any();
        assert!(f.matches(&acl("foo", AclPatternType::Literal)));
        assert!(f.matches(&acl("fo", AclPatternType::Prefixed)));
    }

    #[test]
    fn literal_filter_matches_exact_pattern_only() {
        let f = AclBindingFilter {
            resource_type: 2,
            resource_name: Some("foo".into()),
            pattern_type: 3,
            ..AclBindingFilter::any()
        };
        assert!(f.matches(&acl("foo", AclPatternType::Literal)));
        assert!(!f.matches(&acl("*", AclPatternType::Literal)));
        assert!(!f.matches(&acl("foo", AclPatternType::Prefixed)));
        // ANY pattern type: exact name, any pattern type.
        let any = AclBindingFilter {
            pattern_type: ACL_ANY_CODE,
            ..f.clone()
        };
        assert!(any.matches(&acl("foo", AclPatternType::Prefixed)));
        assert!(!any.matches(&acl("fo", AclPatternType::Prefixed)));
        // Group filter never matches a topic ACL.
        let group = AclBindingFilter {
            resource_type: 3,
            ..f
        };
        assert!(!group.matches(&acl("foo", AclPatternType::Literal)));
    }

    #[test]
    fn match_filter_selects_what_applies_to_the_resource() {
        let f = AclBindingFilter {
            resource_name: Some("foobar".into()),
            pattern_type: ACL_MATCH_CODE,
            ..AclBindingFilter::any()
        };
        assert!(f.matches(&acl("foobar", AclPatternType::Literal)));
        assert!(f.matches(&acl("*", AclPatternType::Literal)));
        assert!(f.matches(&acl("foo", AclPatternType::Prefixed)));
        assert!(f.matches(&acl("foobar", AclPatternType::Prefixed)));
        assert!(!f.matches(&acl("foo", AclPatternType::Literal)));
        assert!(!f.matches(&acl("foobarbaz", AclPatternType::Prefixed)));
    }

    #[test]
    fn entry_fields_and_unknown_codes() {
        let mut f = AclBindingFilter::any();
        f.principal = Some("User:bob".into());
        assert!(!f.matches(&acl("x", AclPatternType::Literal)));
        f.principal = Some("User:alice".into());
        f.host = Some("*".into());
        f.operation = AclOperation::Read.code();
        f.permission_type = AclPermissionType::Allow.code();
        assert!(f.matches(&acl("x", AclPatternType::Literal)));
        f.operation = AclOperation::Write.code();
        assert!(!f.matches(&acl("x", AclPatternType::Literal)));
        f.operation = 0;
        assert_eq!(f.unknown_field(), Some("operation"));
        assert!(!f.matches(&acl("x", AclPatternType::Literal)));
        let f = AclBindingFilter {
            pattern_type: 9,
            ..AclBindingFilter::any()
        };
        assert_eq!(f.unknown_field(), Some("pattern type"));
    }
}
