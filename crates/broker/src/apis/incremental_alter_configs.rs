//! IncrementalAlterConfigs (key 44), v0-v1: SET, DELETE, APPEND and SUBTRACT (list configs
//! only) on topic configs and on dynamic broker configs (resource "" = cluster-wide default,
//! this broker's id = its own; see [`crate::dynamic_config`]), validated as a whole
//! (INVALID_CONFIG with the reason), then stored by the controller and applied by every broker
//! from its image (answered once this broker's image has it); `validate_only` stops after
//! validation. DELETE of a broker config falls back to the level below it.

use std::collections::BTreeMap;

use fjord_protocol::kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use fjord_protocol::kafka_protocol::messages::{
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ResponseError, VersionRange};

use super::alter_configs::{
    apply_broker_configs, apply_topic_configs, check_no_duplicates, AlterError,
};
use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use crate::dynamic_config;
use crate::topic_config;
use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 1 };

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

pub async fn handle(
    broker: &Broker,
    request: &IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in &request.resources {
        let outcome = match resource.resource_type {
            RESOURCE_TOPIC => {
                let name = resource.resource_name.as_str();
                apply_topic_configs(
                    broker,
                    name,
                    |current| updated(current, &resource.configs),
                    request.validate_only,
                )
                .await
            }
            RESOURCE_BROKER => {
                match check_no_duplicates(resource.configs.iter().map(|c| c.name.as_str())) {
                    Ok(()) => {
                        apply_broker_configs(
                            broker,
                            resource.resource_name.as_str(),
                            request.validate_only,
                            |current| updated_broker(current, &resource.configs),
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
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// The topic's overrides after the operations, in order.
fn updated(
    current: &BTreeMap<String, String>,
    operations: &[fjord_protocol::kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig],
) -> Result<BTreeMap<String, String>, AlterError> {
    let mut configs = current.clone();
    for op in operations {
        let name = op.name.to_string();
        if !topic_config::is_known(&name) {
            return Err(AlterError(
                ResponseError::InvalidConfig,
                format!("Unknown topic config name: {name}"),
            ));
        }
        let value = op.value.as_ref().map(|v| v.to_string());
        match op.config_operation {
            OP_SET => {
                let value = value.ok_or_else(|| {
                    AlterError(
                        ResponseError::InvalidRequest,
                        format!("Null value not supported for: {name}"),
                    )
                })?;
                configs.insert(name, value);
            }
            OP_DELETE => {
                configs.remove(&name);
            }
            OP_APPEND | OP_SUBTRACT => {
                if !topic_config::is_list(&name) {
                    return Err(AlterError(
                        ResponseError::InvalidConfig,
                        format!(
                            "Config value append/subtract is not allowed for config key: {name}"
                        ),
                    ));
                }
                let effective = configs.get(&name).cloned().unwrap_or_else(|| {
                    if name == "cleanup.policy" {
                        "delete".into()
                    } else {
                        String::new()
                    }
                });
                let list = list_op(&effective, value.as_deref(), op.config_operation);
                configs.insert(name, list);
            }
            other => {
                return Err(AlterError(
                    ResponseError::InvalidRequest,
                    format!("Unknown config operation {other} for {name}"),
                ))
            }
        }
    }
    Ok(configs)
}

/// APPEND (items not there yet, at the end) or SUBTRACT `given` on a comma-separated list.
fn list_op(current: &str, given: Option<&str>, operation: i8) -> String {
    let split = |text: &str| -> Vec<String> {
        text.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let mut items = split(current);
    let given = split(given.unwrap_or_default());
    if operation == OP_APPEND {
        for item in given {
            if !items.contains(&item) {
                items.push(item);
            }
        }
    } else {
        items.retain(|item| !given.contains(item));
    }
    items.join(",")
}

/// One level of dynamic broker configs after the operations, in order (Kafka's
/// `ConfigAdminManager.prepareIncrementalConfigs`). Names are checked by the caller on the
/// result, as Kafka does, so deleting a name that is not there is fine.
fn updated_broker(
    current: &BTreeMap<String, String>,
    operations: &[fjord_protocol::kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig],
) -> Result<BTreeMap<String, String>, AlterError> {
    let mut configs = current.clone();
    for op in operations {
        let name = op.name.to_string();
        let value = op.value.as_ref().map(|v| v.to_string());
        match op.config_operation {
            OP_SET => {
                let value = value.ok_or_else(|| {
                    AlterError(
                        ResponseError::InvalidRequest,
                        format!("Null value not supported for: {name}"),
                    )
                })?;
                configs.insert(name, value);
            }
            OP_DELETE => {
                configs.remove(&name);
            }
            OP_APPEND | OP_SUBTRACT => {
                if !dynamic_config::is_known(&name) {
                    return Err(AlterError(
                        ResponseError::InvalidConfig,
                        dynamic_config::NameError::Unknown(name).to_string(),
                    ));
                }
                if !dynamic_config::is_list(&name) {
                    return Err(AlterError(
                        ResponseError::InvalidConfig,
                        format!(
                            "Config value append/subtract is not allowed for config key: {name}"
                        ),
                    ));
                }
                if value.is_none() {
                    return Err(AlterError(
                        ResponseError::InvalidRequest,
                        format!("Null value not supported for: {name}"),
                    ));
                }
                // As Kafka: the list this level has, else the setting's built-in default (not
                // the value inherited from a lower level).
                let base = configs
                    .get(&name)
                    .cloned()
                    .unwrap_or_else(|| dynamic_config::setting_default(&name).to_string());
                let list = list_op(&base, value.as_deref(), op.config_operation);
                configs.insert(name, list);
            }
            other => {
                return Err(AlterError(
                    ResponseError::InvalidRequest,
                    format!("Unknown config operation {other} for {name}"),
                ))
            }
        }
    }
    Ok(configs)
}
