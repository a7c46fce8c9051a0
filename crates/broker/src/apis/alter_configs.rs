//! AlterConfigs (key 33), v0-v2: replaces a topic's whole set of overrides (configs not named
//! go back to their defaults, as Kafka's legacy API does), validated, persisted and applied to
//! the live logs; `validate_only` stops after validation. Broker resources get INVALID_REQUEST:
//! dynamic broker configs are not supported yet.

use std::collections::BTreeMap;

use fjord_protocol::kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use fjord_protocol::kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ResponseError, VersionRange};

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use crate::replica_manager::{CreatePartitionsError, GROUP_METADATA_TOPIC_NAME};
use crate::topic_config;
use crate::Broker;

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

pub fn broker_not_dynamic() -> AlterError {
    AlterError(
        ResponseError::InvalidRequest,
        "Dynamic broker configs are not supported by this broker yet; set them in the config file, environment or flags and restart".to_string(),
    )
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
    if name == GROUP_METADATA_TOPIC_NAME {
        return Err(AlterError(
            ResponseError::InvalidRequest,
            format!("The configs of {GROUP_METADATA_TOPIC_NAME} are managed by the broker."),
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
