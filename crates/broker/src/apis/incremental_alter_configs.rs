//! IncrementalAlterConfigs (key 44), v0-v1: SET, DELETE, APPEND and SUBTRACT (list configs
//! only) on topic configs, validated as a whole (INVALID_CONFIG with the reason) and then
//! persisted and applied to the live logs; `validate_only` stops after validation. Broker
//! resources get INVALID_REQUEST: dynamic broker configs are not supported yet.

use std::collections::BTreeMap;

use fjord_protocol::kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use fjord_protocol::kafka_protocol::messages::{
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ResponseError, VersionRange};

use super::alter_configs::{apply_topic_configs, broker_not_dynamic, AlterError};
use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use crate::topic_config;
use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 1 };

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

pub fn handle(
    broker: &Broker,
    request: &IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let responses = request
        .resources
        .iter()
        .map(|resource| {
            let outcome = match resource.resource_type {
                RESOURCE_TOPIC => {
                    let name = resource.resource_name.as_str();
                    match broker.replica_manager().topic(name) {
                        None => Err(AlterError::unknown_topic(name)),
                        Some(topic) => {
                            updated(&topic.configs, &resource.configs).and_then(|configs| {
                                apply_topic_configs(broker, name, configs, request.validate_only)
                            })
                        }
                    }
                }
                RESOURCE_BROKER => Err(broker_not_dynamic()),
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
                let mut items: Vec<String> = effective
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                let given: Vec<String> = value
                    .unwrap_or_default()
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                if op.config_operation == OP_APPEND {
                    for item in given {
                        if !items.contains(&item) {
                            items.push(item);
                        }
                    }
                } else {
                    items.retain(|item| !given.contains(item));
                }
                configs.insert(name, items.join(","));
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
