//! AlterConfigs (key 33), v0-v2: replaces a topic's whole set of overrides, or one level of
//! dynamic broker configs (resource "" = cluster-wide default, this broker's id = its own; see
//! [`crate::dynamic_config`]): configs not named go back to what is below them, as Kafka's
//! legacy API does. Validated, persisted and applied live; `validate_only` stops after
//! validation.

use std::collections::BTreeMap;

use fjord_protocol::kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use fjord_protocol::kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ResponseError, VersionRange};

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use crate::dynamic_config::{self, NameError};
use crate::replica_manager::{is_internal_topic, CreatePartitionsError};
use crate::topic_config;
use crate::{Broker, BrokerError};

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 2 };

/// An error code with Kafka's message.
pub struct AlterError(pub ResponseError, pub String);

impl AlterError {
    pub fn unknown_topic(name: &str) -> Self {
        AlterError(
            ResponseError::UnknownTopicOrPartition,
            format!("Topic '{name}' does not exist."),
        )
    }
}

impl From<BrokerError> for AlterError {
    fn from(err: BrokerError) -> Self {
        match err {
            // Kafka's ConfigException wording.
            BrokerError::InvalidConfig { key, value, reason } => AlterError(
                ResponseError::InvalidConfig,
                format!("Invalid value {value} for configuration {key}: {reason}"),
            ),
            BrokerError::UnknownConfig { key } => AlterError(
                ResponseError::InvalidConfig,
                NameError::Unknown(key).to_string(),
            ),
            BrokerError::Storage(err) => {
                AlterError(ResponseError::KafkaStorageError, err.to_string())
            }
        }
    }
}

impl From<NameError> for AlterError {
    fn from(err: NameError) -> Self {
        let code = match err {
            // Kafka refuses non-dynamic configs with INVALID_REQUEST.
            NameError::NotDynamic(_) => ResponseError::InvalidRequest,
            NameError::Unknown(_) => ResponseError::InvalidConfig,
        };
        AlterError(code, err.to_string())
    }
}

/// Kafka's answer to a request naming the same config twice.
pub fn check_no_duplicates<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<(), AlterError> {
    let mut seen = std::collections::BTreeSet::new();
    if names.into_iter().all(|name| seen.insert(name)) {
        Ok(())
    } else {
        Err(AlterError(
            ResponseError::InvalidRequest,
            "Error due to duplicate config keys".to_string(),
        ))
    }
}

pub fn handle(broker: &Broker, request: &AlterConfigsRequest) -> AlterConfigsResponse {
    let responses = request
        .resources
        .iter()
        .map(|resource| {
            let outcome = match resource.resource_type {
                RESOURCE_TOPIC => {
                    let requested: BTreeMap<String, Option<String>> = resource
                        .configs
                        .iter()
                        .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                        .collect();
                    let name = resource.resource_name.as_str();
                    if broker.replica_manager().topic(name).is_none() {
                        Err(AlterError::unknown_topic(name))
                    } else {
                        requested_configs(&requested).and_then(|configs| {
                            apply_topic_configs(broker, name, configs, request.validate_only)
                        })
                    }
                }
                RESOURCE_BROKER => {
                    check_no_duplicates(resource.configs.iter().map(|c| c.name.as_str()))
                        .and_then(|()| {
                            let requested: BTreeMap<String, Option<String>> = resource
                                .configs
                                .iter()
                                .map(|c| {
                                    (c.name.to_string(), c.value.as_ref().map(|v| v.to_string()))
                                })
                                .collect();
                            requested_configs(&requested)
                        })
                        .and_then(|configs| {
                            apply_broker_configs(
                                broker,
                                resource.resource_name.as_str(),
                                request.validate_only,
                                |_current| Ok(configs),
                            )
                        })
                }
                other => Err(AlterError(
                    ResponseError::InvalidRequest,
                    format!("Resource type {other} is not supported by this broker"),
                )),
            };
            let response = AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            match outcome {
                Ok(()) => response,
                Err(AlterError(error, message)) => response
                    .with_error_code(error.code())
                    .with_error_message(Some(StrBytes::from_string(message))),
            }
        })
        .collect();
    AlterConfigsResponse::default().with_responses(responses)
}

fn requested_configs(
    requested: &BTreeMap<String, Option<String>>,
) -> Result<BTreeMap<String, String>, AlterError> {
    if let Some((name, _)) = requested.iter().find(|(_, v)| v.is_none()) {
        return Err(AlterError(
            ResponseError::InvalidRequest,
            format!("Null value not supported for: {name}"),
        ));
    }
    Ok(requested
        .iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
        .collect())
}

/// Validates the complete set of overrides for `name` and, unless `validate_only`, stores and
/// applies it.
pub fn apply_topic_configs(
    broker: &Broker,
    name: &str,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(), AlterError> {
    if is_internal_topic(name) {
        return Err(AlterError(
            ResponseError::InvalidRequest,
            format!("The configs of {name} are managed by the broker."),
        ));
    }
    let as_requested: BTreeMap<String, Option<String>> = configs
        .iter()
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    let validated = topic_config::validate_topic_configs(&as_requested)
        .map_err(|message| AlterError(ResponseError::InvalidConfig, message))?;
    if validate_only {
        return Ok(());
    }
    broker
        .replica_manager()
        .alter_topic_configs(name, validated)
        .map_err(|err| match err {
            CreatePartitionsError::UnknownTopic(name) => AlterError::unknown_topic(&name),
            other => AlterError(ResponseError::KafkaStorageError, other.to_string()),
        })
}

/// Kafka's `ConfigAdminManager.validateResourceNameIsCurrentNodeId`: a BROKER resource names
/// the cluster-wide default ("") or this broker. Another broker's id is INVALID_REQUEST, as
/// Kafka answers it (in KRaft mode a broker only takes changes addressed to itself; the admin
/// client sends a broker's configs to that broker).
fn is_cluster_default(node_id: i32, name: &str) -> Result<bool, AlterError> {
    if name.is_empty() {
        return Ok(true);
    }
    let id: i32 = name.parse().map_err(|_| {
        AlterError(
            ResponseError::InvalidRequest,
            format!("Node id must be an integer, but it is: {name}"),
        )
    })?;
    if id != node_id {
        return Err(AlterError(
            ResponseError::InvalidRequest,
            format!("Unexpected broker id, expected {node_id}, but received {name}"),
        ));
    }
    Ok(false)
}

/// Replaces the dynamic broker configs of the level `resource_name` addresses with what
/// `build` makes of the current ones: names checked (non-dynamic: INVALID_REQUEST, unknown:
/// INVALID_CONFIG), values validated together with every other setting (INVALID_CONFIG with
/// the reason), then, unless `validate_only`, persisted and applied to the running broker.
pub fn apply_broker_configs(
    broker: &Broker,
    resource_name: &str,
    validate_only: bool,
    build: impl FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, AlterError>,
) -> Result<(), AlterError> {
    broker.replica_manager().alter_broker_config(|current| {
        let mut cluster_default = current.dynamic_default_settings.clone();
        let mut own = current.dynamic_broker_settings.clone();
        let level = if is_cluster_default(current.node_id, resource_name)? {
            &mut cluster_default
        } else {
            &mut own
        };
        let updated = build(level)?;
        dynamic_config::check_names(updated.keys())?;
        *level = updated;
        let new = current.with_dynamic(cluster_default, own)?;
        Ok((!validate_only).then_some(new))
    })
}
