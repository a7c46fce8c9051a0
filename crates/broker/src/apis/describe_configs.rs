//! DescribeConfigs (key 32), v1-v4: topic configs (effective value, source, synonyms, type,
//! documentation) and broker settings, as Kafka's `ConfigHelper` answers them. Sources as Kafka
//! numbers them: DYNAMIC_TOPIC (1) for topic overrides, DYNAMIC_BROKER (2) and
//! DYNAMIC_DEFAULT_BROKER (3) for dynamic broker configs, STATIC_BROKER (4) for settings given
//! in the file/environment/flags, DEFAULT (5) otherwise. Synonyms come highest precedence first.
//!
//! A BROKER resource named by this broker's id describes every setting (read-only unless it
//! is dynamic); the resource "" describes only the dynamic cluster-wide defaults that are set.

use fjord_protocol::kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use fjord_protocol::kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ResponseError, VersionRange};

use crate::config::{BrokerConfig, ConfigSource, SETTINGS};
use crate::dynamic_config;
use crate::topic_config;
use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 1, max: 4 };

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;
const TYPE_STRING: i8 = 2;

pub fn handle(broker: &Broker, request: &DescribeConfigsRequest) -> DescribeConfigsResponse {
    let results = request
        .resources
        .iter()
        .map(|resource| {
            // As Kafka: null or an empty list means every config.
            let keys: Option<Vec<String>> = resource
                .configuration_keys
                .as_ref()
                .filter(|k| !k.is_empty())
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
    Ok(topic_config::describe(&topic.configs, &config)
        .into_iter()
        .filter(|entry| wanted(&entry.name))
        .map(|entry| {
            let mut synonyms = Vec::new();
            if include_synonyms {
                // Kafka's order: the topic override, then its broker setting at every level
                // where that is set (dynamic per-broker, dynamic default, static, default).
                if entry.source == ConfigSource::DynamicTopic {
                    synonyms.push(synonym_entry(
                        &entry.name,
                        &entry.value,
                        ConfigSource::DynamicTopic,
                    ));
                }
                if let Some(key) = topic_config::broker_synonym(&entry.name) {
                    for (source, value) in config.setting_sources(key) {
                        synonyms.push(synonym_entry(key, &value, source));
                    }
                }
            }
            DescribeConfigsResourceResult::default()
                .with_name(StrBytes::from_string(entry.name.clone()))
                .with_value(Some(StrBytes::from_string(entry.value)))
                .with_config_source(entry.source.code())
                .with_synonyms(synonyms)
                .with_config_type(topic_config::config_type(&entry.name))
        })
        .collect())
}

/// Which broker configs a BROKER resource name selects.
enum BrokerResource {
    /// "": the dynamic cluster-wide defaults.
    ClusterDefault,
    /// This broker's id: all of its settings.
    ThisBroker,
}

/// Kafka's `ConfigHelper` checks: a name that is not an integer, or the id of another broker,
/// is INVALID_REQUEST (the request must go to the broker it names).
fn broker_resource(
    config: &BrokerConfig,
    resource_name: &str,
) -> Result<BrokerResource, (ResponseError, String)> {
    if resource_name.is_empty() {
        return Ok(BrokerResource::ClusterDefault);
    }
    let id: i32 = resource_name.parse().map_err(|_| {
        (
            ResponseError::InvalidRequest,
            format!("Broker id must be an integer, but it is: {resource_name}"),
        )
    })?;
    if id != config.node_id {
        return Err((
            ResponseError::InvalidRequest,
            format!(
                "Unexpected broker id, expected {} or empty string, but received {resource_name}",
                config.node_id
            ),
        ));
    }
    Ok(BrokerResource::ThisBroker)
}

fn describe_broker(
    broker: &Broker,
    resource_name: &str,
    include_synonyms: bool,
    wanted: &dyn Fn(&str) -> bool,
) -> Described {
    let config = broker.config();
    let resource = broker_resource(&config, resource_name)?;
    Ok(SETTINGS
        .iter()
        .filter(|spec| wanted(spec.key))
        .filter_map(|spec| {
            let mut sources = config.setting_sources(spec.key);
            if let BrokerResource::ClusterDefault = resource {
                // Only the cluster-wide dynamic level, and only where it is set.
                sources.retain(|(source, _)| *source == ConfigSource::DynamicDefaultBroker);
            }
            let (source, value) = sources.first().cloned()?;
            // Secrets (the inline private key) are never sent, as Kafka's PASSWORD configs.
            let sensitive = crate::config::is_sensitive(spec.key);
            let shown = |value: String| (!sensitive).then(|| StrBytes::from_string(value));
            let synonyms = if include_synonyms {
                sources
                    .iter()
                    .map(|(source, value)| {
                        synonym_entry(spec.key, value, *source).with_value(shown(value.clone()))
                    })
                    .collect()
            } else {
                Vec::new()
            };
            Some(
                DescribeConfigsResourceResult::default()
                    .with_name(StrBytes::from_static_str(spec.key))
                    .with_value(shown(value))
                    .with_is_sensitive(sensitive)
                    .with_read_only(!dynamic_config::is_dynamic(spec.key))
                    .with_config_source(source.code())
                    .with_synonyms(synonyms)
                    .with_config_type(TYPE_STRING)
                    .with_documentation(Some(StrBytes::from_static_str(spec.doc))),
            )
        })
        .collect())
}

fn synonym_entry(name: &str, value: &str, source: ConfigSource) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym::default()
        .with_name(StrBytes::from_string(name.to_string()))
        .with_value(Some(StrBytes::from_string(value.to_string())))
        .with_source(source.code())
}
