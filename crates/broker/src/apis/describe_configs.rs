//! DescribeConfigs (key 32), v1-v4: topic configs (effective value, source, synonyms, type,
//! documentation) and this broker's settings. Sources as Kafka numbers them: DYNAMIC_TOPIC (1)
//! for topic overrides, STATIC_BROKER (4) for settings given in the file/environment/flags,
//! DEFAULT (5) otherwise. Broker settings are read-only (no dynamic broker configs yet).

use fjord_protocol::kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use fjord_protocol::kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ResponseError, VersionRange};

use crate::config::SETTINGS;
use crate::topic_config::{self, ConfigSource};
use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 1, max: 4 };

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;
const TYPE_STRING: i8 = 2;

pub fn handle(broker: &Broker, request: &DescribeConfigsRequest) -> DescribeConfigsResponse {
    let results = request
        .resources
        .iter()
        .map(|resource| {
            let keys: Option<Vec<String>> = resource
                .configuration_keys
                .as_ref()
                .map(|k| k.iter().map(|s| s.to_string()).collect());
            let wanted = |name: &str| keys.as_ref().is_none_or(|k| k.iter().any(|x| x == name));
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let entries = match resource.resource_type {
                RESOURCE_TOPIC => describe_topic(
                    broker,
                    resource.resource_name.as_str(),
                    request.include_synonyms,
                    &wanted,
                ),
                RESOURCE_BROKER => describe_broker(
                    broker,
                    resource.resource_name.as_str(),
                    request.include_synonyms,
                    &wanted,
                ),
                other => Err((
                    ResponseError::InvalidRequest,
                    format!("Resource type {other} is not supported by this broker"),
                )),
            };
            match entries {
                Ok(configs) => result.with_configs(
                    configs
                        .into_iter()
                        .map(|c| {
                            if request.include_documentation {
                                c
                            } else {
                                c.with_documentation(None)
                            }
                        })
                        .collect(),
                ),
                Err((error, message)) => result
                    .with_error_code(error.code())
                    .with_error_message(Some(StrBytes::from_string(message))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

type Described = Result<Vec<DescribeConfigsResourceResult>, (ResponseError, String)>;

fn describe_topic(
    broker: &Broker,
    name: &str,
    include_synonyms: bool,
    wanted: &dyn Fn(&str) -> bool,
) -> Described {
    let topic = broker.replica_manager().topic(name).ok_or_else(|| {
        (
            ResponseError::UnknownTopicOrPartition,
            format!("Topic '{name}' does not exist."),
        )
    })?;
    let config = broker.config();
    Ok(topic_config::describe(&topic.configs, config)
        .into_iter()
        .filter(|entry| wanted(&entry.name))
        .map(|entry| {
            let synonym = topic_config::broker_synonym(&entry.name);
            let broker_value = synonym.map(|key| {
                let explicit = config.explicit_settings.get(key);
                let value = explicit.cloned().unwrap_or_else(|| setting_default(key));
                (
                    key,
                    value,
                    if explicit.is_some() {
                        SOURCE_STATIC_BROKER
                    } else {
                        SOURCE_DEFAULT
                    },
                )
            });
            let source = match entry.source {
                ConfigSource::DynamicTopic => SOURCE_DYNAMIC_TOPIC,
                ConfigSource::Default => broker_value.as_ref().map_or(SOURCE_DEFAULT, |b| b.2),
            };
            let mut synonyms = Vec::new();
            if include_synonyms {
                if matches!(entry.source, ConfigSource::DynamicTopic) {
                    synonyms.push(synonym_entry(
                        &entry.name,
                        &entry.value,
                        SOURCE_DYNAMIC_TOPIC,
                    ));
                }
                if let Some((key, value, source)) = &broker_value {
                    synonyms.push(synonym_entry(key, value, *source));
                }
            }
            DescribeConfigsResourceResult::default()
                .with_name(StrBytes::from_string(entry.name.clone()))
                .with_value(Some(StrBytes::from_string(entry.value)))
                .with_config_source(source)
                .with_synonyms(synonyms)
                .with_config_type(topic_config::config_type(&entry.name))
        })
        .collect())
}

fn describe_broker(
    broker: &Broker,
    resource_name: &str,
    include_synonyms: bool,
    wanted: &dyn Fn(&str) -> bool,
) -> Described {
    let config = broker.config();
    if !resource_name.is_empty() && resource_name != config.node_id.to_string() {
        return Err((
            ResponseError::InvalidRequest,
            format!(
                "Unexpected broker id, expected {} or empty string, but received {resource_name}",
                config.node_id
            ),
        ));
    }
    Ok(SETTINGS
        .iter()
        .filter(|spec| wanted(spec.key))
        .map(|spec| {
            let explicit = config.explicit_settings.get(spec.key);
            let value = explicit
                .cloned()
                .unwrap_or_else(|| spec.default.to_string());
            let source = if explicit.is_some() {
                SOURCE_STATIC_BROKER
            } else {
                SOURCE_DEFAULT
            };
            let synonyms = if include_synonyms {
                vec![synonym_entry(spec.key, &value, source)]
            } else {
                Vec::new()
            };
            DescribeConfigsResourceResult::default()
                .with_name(StrBytes::from_static_str(spec.key))
                .with_value(Some(StrBytes::from_string(value)))
                .with_read_only(true)
                .with_config_source(source)
                .with_synonyms(synonyms)
                .with_config_type(TYPE_STRING)
                .with_documentation(Some(StrBytes::from_static_str(spec.doc)))
        })
        .collect())
}

fn synonym_entry(name: &str, value: &str, source: i8) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym::default()
        .with_name(StrBytes::from_string(name.to_string()))
        .with_value(Some(StrBytes::from_string(value.to_string())))
        .with_source(source)
}

fn setting_default(key: &str) -> String {
    SETTINGS
        .iter()
        .find(|s| s.key == key)
        .map_or_else(String::new, |s| s.default.to_string())
}
