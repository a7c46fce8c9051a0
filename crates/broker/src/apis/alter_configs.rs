//! AlterConfigs (key 33), v0-v2: replaces a topic's whole set of overrides, or one level of
//! dynamic broker configs (resource "" = cluster-wide default, this broker's id = its own; see
//! [`crate::dynamic_config`]): configs not named go back to what is below them, as Kafka's
//! legacy API does. Validated here, stored by the controller (as ConfigRecords), applied by
//! every broker from its image; answered once this broker's image has the change.
//! `validate_only` stops after validation.

use std::collections::BTreeMap;

use fjord_protocol::kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use fjord_protocol::kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ResponseError, VersionRange};

use fjord_controller::{
    AlterConfigOp, AlterableConfig, ApiError, ControllerReply, ControllerRequest,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResource,
};
use fjord_metadata::ConfigResource;

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use crate::dynamic_config::{self, NameError};
use crate::replica_manager::is_internal_topic;
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

impl From<ApiError> for AlterError {
    /// The controller's error, code and message unchanged.
    fn from(error: ApiError) -> Self {
        AlterError(
            ResponseError::try_from_code(error.code.code())
                .unwrap_or(ResponseError::UnknownServerError),
            error.message.unwrap_or_default(),
        )
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

pub async fn handle(broker: &Broker, request: &AlterConfigsRequest) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in &request.resources {
        let outcome = match resource.resource_type {
            RESOURCE_TOPIC => {
                let requested: BTreeMap<String, Option<String>> = resource
                    .configs
                    .iter()
                    .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                    .collect();
                let name = resource.resource_name.as_str();
                match requested_configs(&requested) {
                    Ok(configs) => {
                        apply_topic_configs(
                            broker,
                            name,
                            |_current| Ok(configs),
                            request.validate_only,
                        )
                        .await
                    }
                    Err(err) => Err(err),
                }
            }
            RESOURCE_BROKER => {
                let configs = check_no_duplicates(resource.configs.iter().map(|c| c.name.as_str()))
                    .and_then(|()| {
                        let requested: BTreeMap<String, Option<String>> = resource
                            .configs
                            .iter()
                            .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                            .collect();
                        requested_configs(&requested)
                    });
                match configs {
                    Ok(configs) => {
                        apply_broker_configs(
                            broker,
                            resource.resource_name.as_str(),
                            request.validate_only,
                            |_current| Ok(configs),
                        )
                        .await
                    }
                    Err(err) => Err(err),
                }
            }
            other => Err(AlterError(
                ResponseError::InvalidRequest,
                format!("Resource type {other} is not supported by this broker"),
            )),
        };
        let response = AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        responses.push(match outcome {
            Ok(()) => response,
            Err(AlterError(error, message)) => response
                .with_error_code(error.code())
                .with_error_message(Some(StrBytes::from_string(message))),
        });
    }
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

/// Validates the complete set of overrides `build` makes of topic `name`'s current ones and,
/// unless `validate_only`, has the controller store it (answered once this broker's image has
/// it, so the logs already use it).
pub async fn apply_topic_configs(
    broker: &Broker,
    name: &str,
    build: impl FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, AlterError>,
    validate_only: bool,
) -> Result<(), AlterError> {
    let image = broker.image();
    if image.topic_by_name(name).is_none() {
        return Err(AlterError::unknown_topic(name));
    }
    if is_internal_topic(name) {
        return Err(AlterError(
            ResponseError::InvalidRequest,
            format!("The configs of {name} are managed by the broker."),
        ));
    }
    let resource = ConfigResource::topic(name);
    let current = image.config(&resource).cloned().unwrap_or_default();
    let configs = build(&current)?;
    let as_requested: BTreeMap<String, Option<String>> = configs
        .iter()
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    let validated = topic_config::validate_topic_configs(&as_requested)
        .map_err(|message| AlterError(ResponseError::InvalidConfig, message))?;
    if validate_only {
        return Ok(());
    }
    submit_configs(broker, resource, &current, validated).await
}

/// Sends the change from `current` to `target` of `resource` to the controller as
/// IncrementalAlterConfigs SET/DELETE operations (only the keys that differ, so concurrent
/// changes of other keys survive), then waits until this broker's image holds `target`.
async fn submit_configs(
    broker: &Broker,
    resource: ConfigResource,
    current: &BTreeMap<String, String>,
    target: BTreeMap<String, String>,
) -> Result<(), AlterError> {
    let mut configs: Vec<AlterableConfig> = target
        .iter()
        .filter(|(k, v)| current.get(*k) != Some(*v))
        .map(|(k, v)| AlterableConfig {
            name: k.clone(),
            op: AlterConfigOp::Set,
            value: Some(v.clone()),
        })
        .collect();
    configs.extend(
        current
            .keys()
            .filter(|k| !target.contains_key(*k))
            .map(|k| AlterableConfig {
                name: k.clone(),
                op: AlterConfigOp::Delete,
                value: None,
            }),
    );
    if configs.is_empty() {
        return Ok(());
    }
    let request = ControllerRequest::IncrementalAlterConfigs(IncrementalAlterConfigsRequest {
        resources: vec![IncrementalAlterConfigsResource {
            resource: resource.clone(),
            configs,
        }],
        validate_only: false,
    });
    let timeout_ms = crate::forwarding::CONTROLLER_REQUEST_TIMEOUT_MS;
    let reply = broker.send_to_controller(request, timeout_ms).await?;
    let error = match reply {
        ControllerReply::IncrementalAlterConfigs(reply) => reply
            .resources
            .into_iter()
            .next()
            .map(|(_, error)| error)
            .unwrap_or(ApiError::NONE),
        other => crate::forwarding::unexpected(&other),
    };
    if !error.is_ok() {
        return Err(error.into());
    }
    let reached = broker
        .wait_for_metadata(
            |image| {
                image
                    .config(&resource)
                    .map_or(target.is_empty(), |c| *c == target)
            },
            timeout_ms,
        )
        .await;
    if !reached {
        tracing::warn!(resource = ?resource, "a config change did not reach this broker's image in time");
    }
    Ok(())
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
/// the reason), then, unless `validate_only`, stored by the controller and applied by this
/// broker when its image has them (answered after that).
pub async fn apply_broker_configs(
    broker: &Broker,
    resource_name: &str,
    validate_only: bool,
    build: impl FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, AlterError>,
) -> Result<(), AlterError> {
    let current = broker.config();
    let mut cluster_default = current.dynamic_default_settings.clone();
    let mut own = current.dynamic_broker_settings.clone();
    let is_default = is_cluster_default(current.node_id, resource_name)?;
    let level = if is_default {
        &mut cluster_default
    } else {
        &mut own
    };
    let updated = build(level)?;
    dynamic_config::check_names(updated.keys())?;
    *level = updated.clone();
    current.with_dynamic(cluster_default, own)?;
    if validate_only {
        return Ok(());
    }
    let resource = ConfigResource::broker(if is_default {
        String::new()
    } else {
        current.node_id.to_string()
    });
    // Diff against what the image stores (it may hold entries the effective configuration
    // ignored as invalid; they go with this change).
    let stored = broker
        .image()
        .config(&resource)
        .cloned()
        .unwrap_or_default();
    submit_configs(broker, resource, &stored, updated).await
}
