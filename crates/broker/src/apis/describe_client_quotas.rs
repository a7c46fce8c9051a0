//! DescribeClientQuotas (key 48), v0-v1: the quota entities of this broker's image that match
//! every filter component (Kafka `ClientQuotasImage.describe`): EXACT (0) a named entity of
//! that type, DEFAULT (1) the type's default entity, SPECIFIED (2) any entity that has the
//! type; `strict` also requires the entity to have no other types. Invalid filters (empty or
//! repeated type, a match string where none belongs, `ip` combined with `user` or
//! `client-id`) answer INVALID_REQUEST, unknown types or match types UNSUPPORTED_VERSION, as
//! Kafka does.

use std::collections::{BTreeMap, BTreeSet};

use fjord_metadata::security::{
    ClientQuotaEntity, QUOTA_ENTITY_CLIENT_ID, QUOTA_ENTITY_IP, QUOTA_ENTITY_USER,
};
use fjord_metadata::MetadataImage;
use fjord_protocol::kafka_protocol::messages::describe_client_quotas_response::{
    EntityData, EntryData, ValueData,
};
use fjord_protocol::kafka_protocol::messages::{
    DescribeClientQuotasRequest, DescribeClientQuotasResponse,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ResponseError, VersionRange};

use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 1 };

/// `ComponentData.MatchType` values.
pub const MATCH_TYPE_EXACT: i8 = 0;
pub const MATCH_TYPE_DEFAULT: i8 = 1;
pub const MATCH_TYPE_SPECIFIED: i8 = 2;

/// One filter component: entity type, match type, match string.
pub type Component = (String, i8, Option<String>);

pub fn handle(
    broker: &Broker,
    request: &DescribeClientQuotasRequest,
) -> DescribeClientQuotasResponse {
    let components: Vec<Component> = request
        .components
        .iter()
        .map(|c| {
            (
                c.entity_type.to_string(),
                c.match_type,
                c._match.as_ref().map(|m| m.to_string()),
            )
        })
        .collect();
    describe(&broker.image(), &components, request.strict)
}

fn refuse(error: ResponseError, message: String) -> DescribeClientQuotasResponse {
    DescribeClientQuotasResponse::default()
        .with_error_code(error.code())
        .with_error_message(Some(StrBytes::from_string(message)))
        .with_entries(None)
}

/// The response for the filter `components` (and `strict`) on `image`.
pub fn describe(
    image: &MetadataImage,
    components: &[Component],
    strict: bool,
) -> DescribeClientQuotasResponse {
    let mut exact: BTreeMap<&str, Option<&str>> = BTreeMap::new();
    let mut specified: BTreeSet<&str> = BTreeSet::new();
    for (entity_type, match_type, matched) in components {
        let t = entity_type.as_str();
        if t.is_empty() {
            return refuse(
                ResponseError::InvalidRequest,
                "Invalid empty entity type.".into(),
            );
        }
        if exact.contains_key(t) || specified.contains(t) {
            return refuse(
                ResponseError::InvalidRequest,
                format!("Entity type {t} cannot appear more than once in the filter."),
            );
        }
        if ![QUOTA_ENTITY_IP, QUOTA_ENTITY_USER, QUOTA_ENTITY_CLIENT_ID].contains(&t) {
            return refuse(
                ResponseError::UnsupportedVersion,
                format!("Unsupported entity type {t}"),
            );
        }
        match (*match_type, matched) {
            (MATCH_TYPE_EXACT, Some(name)) => {
                exact.insert(t, Some(name.as_str()));
            }
            (MATCH_TYPE_EXACT, None) => {
                return refuse(
                    ResponseError::InvalidRequest,
                    "Request specified MATCH_TYPE_EXACT, but set match string to null.".into(),
                )
            }
            (MATCH_TYPE_DEFAULT, None) => {
                exact.insert(t, None);
            }
            (MATCH_TYPE_SPECIFIED, None) => {
                specified.insert(t);
            }
            (MATCH_TYPE_DEFAULT | MATCH_TYPE_SPECIFIED, Some(_)) => {
                return refuse(
                    ResponseError::InvalidRequest,
                    format!(
                    "Request specified match type {match_type}, but also specified a match string."
                ),
                )
            }
            (other, _) => {
                return refuse(
                    ResponseError::UnsupportedVersion,
                    format!("Unknown match type {other}"),
                )
            }
        }
    }
    let has = |t: &str| exact.contains_key(t) || specified.contains(t);
    if has(QUOTA_ENTITY_IP) && (has(QUOTA_ENTITY_USER) || has(QUOTA_ENTITY_CLIENT_ID)) {
        return refuse(
            ResponseError::InvalidRequest,
            "Invalid entity filter component combination. IP filter component should not be used with user or clientId filter component.".into(),
        );
    }
    let matches = |entity: &ClientQuotaEntity| {
        if strict && entity.len() != exact.len() + specified.len() {
            return false;
        }
        exact
            .iter()
            .all(|(t, name)| entity.get(*t).is_some_and(|n| n.as_deref() == *name))
            && specified.iter().all(|t| entity.contains_key(*t))
    };
    let entries = image
        .client_quotas
        .iter()
        .filter(|(entity, _)| matches(entity))
        .map(|(entity, values)| {
            EntryData::default()
                .with_entity(
                    entity
                        .iter()
                        .map(|(t, n)| {
                            EntityData::default()
                                .with_entity_type(StrBytes::from_string(t.clone()))
                                .with_entity_name(n.clone().map(StrBytes::from_string))
                        })
                        .collect(),
                )
                .with_values(
                    values
                        .iter()
                        .map(|(k, v)| {
                            ValueData::default()
                                .with_key(StrBytes::from_string(k.clone()))
                                .with_value(*v)
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeClientQuotasResponse::default()
        .with_error_code(0)
        .with_entries(Some(entries))
}
