//! Topic-level configs: Kafka's names, validation, defaults taken from the broker settings, and
//! which ones Fjord honours today.
//!
//! Unknown names are rejected with INVALID_CONFIG, as Kafka does. Known configs Fjord does not
//! act on yet are accepted and stored (so tools that always send them keep working) and marked
//! `honoured: false` here; the README lists both kinds.

use std::collections::BTreeMap;

use crate::config::BrokerConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A non-negative integer.
    Count,
    Bool,
    /// One of a fixed set of words.
    Choice(&'static [&'static str]),
    /// A ratio in [0, 1].
    Ratio,
    /// An integer, -1 meaning "no limit" (retention).
    LimitOrUnlimited,
    /// Any string (lists, free text).
    Text,
    /// `cleanup.policy`: a non-empty list of `delete` and `compact`.
    CleanupPolicy,
    /// `{leader,follower}.replication.throttled.replicas`: `*` or `partition:broker,...`.
    ThrottledReplicas,
}

struct TopicConfigSpec {
    name: &'static str,
    kind: Kind,
    honoured: bool,
    default: fn(&BrokerConfig) -> String,
}

const COMPRESSION_TYPES: &[&str] = &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];

const TOPIC_CONFIGS: &[TopicConfigSpec] = &[
    TopicConfigSpec {
        name: "segment.bytes",
        kind: Kind::Count,
        honoured: true,
        default: |c| c.log_segment_bytes.to_string(),
    },
    TopicConfigSpec {
        name: "segment.ms",
        kind: Kind::Count,
        honoured: true,
        default: |c| c.log_roll_ms.to_string(),
    },
    TopicConfigSpec {
        name: "index.interval.bytes",
        kind: Kind::Count,
        honoured: true,
        default: |c| c.log_index_interval_bytes.to_string(),
    },
    TopicConfigSpec {
        name: "flush.messages",
        kind: Kind::Count,
        honoured: true,
        default: |c| c.log_flush_interval_messages.to_string(),
    },
    TopicConfigSpec {
        name: "flush.ms",
        kind: Kind::Count,
        honoured: true,
        default: |c| c.log_flush_interval_ms.to_string(),
    },
    TopicConfigSpec {
        name: "max.message.bytes",
        kind: Kind::Count,
        honoured: true,
        default: |c| c.message_max_bytes.to_string(),
    },
    TopicConfigSpec {
        name: "cleanup.policy",
        kind: Kind::CleanupPolicy,
        honoured: true,
        default: |c| c.log_cleanup_policy.clone(),
    },
    TopicConfigSpec {
        name: "compression.type",
        kind: Kind::Choice(COMPRESSION_TYPES),
        honoured: false,
        default: |_| "producer".into(),
    },
    TopicConfigSpec {
        name: "retention.ms",
        kind: Kind::LimitOrUnlimited,
        honoured: true,
        default: |c| c.log_retention_ms.to_string(),
    },
    TopicConfigSpec {
        name: "retention.bytes",
        kind: Kind::LimitOrUnlimited,
        honoured: true,
        default: |c| c.log_retention_bytes.to_string(),
    },
    TopicConfigSpec {
        name: "delete.retention.ms",
        kind: Kind::Count,
        honoured: true,
        default: |c| c.log_cleaner_delete_retention_ms.to_string(),
    },
    TopicConfigSpec {
        name: "file.delete.delay.ms",
        kind: Kind::Count,
        honoured: false,
        default: |_| "60000".into(),
    },
    TopicConfigSpec {
        name: "min.cleanable.dirty.ratio",
        kind: Kind::Ratio,
        honoured: true,
        default: |c| c.log_cleaner_min_cleanable_ratio.to_string(),
    },
    TopicConfigSpec {
        name: "min.compaction.lag.ms",
        kind: Kind::Count,
        honoured: true,
        default: |c| c.log_cleaner_min_compaction_lag_ms.to_string(),
    },
    TopicConfigSpec {
        name: "max.compaction.lag.ms",
        kind: Kind::Count,
        honoured: true,
        default: |c| c.log_cleaner_max_compaction_lag_ms.to_string(),
    },
    TopicConfigSpec {
        name: "min.insync.replicas",
        kind: Kind::Count,
        honoured: true,
        default: |c| c.min_insync_replicas.to_string(),
    },
    TopicConfigSpec {
        name: "unclean.leader.election.enable",
        kind: Kind::Bool,
        honoured: false,
        default: |_| "false".into(),
    },
    TopicConfigSpec {
        name: "message.timestamp.type",
        kind: Kind::Choice(&["CreateTime", "LogAppendTime"]),
        honoured: true,
        default: |_| "CreateTime".into(),
    },
    TopicConfigSpec {
        name: "message.timestamp.before.max.ms",
        kind: Kind::Count,
        honoured: false,
        default: |_| "9223372036854775807".into(),
    },
    TopicConfigSpec {
        name: "message.timestamp.after.max.ms",
        kind: Kind::Count,
        honoured: false,
        default: |_| "9223372036854775807".into(),
    },
    TopicConfigSpec {
        name: "message.downconversion.enable",
        kind: Kind::Bool,
        honoured: false,
        default: |_| "true".into(),
    },
    TopicConfigSpec {
        name: "preallocate",
        kind: Kind::Bool,
        honoured: false,
        default: |_| "false".into(),
    },
    TopicConfigSpec {
        name: "segment.index.bytes",
        kind: Kind::Count,
        honoured: false,
        default: |_| "10485760".into(),
    },
    TopicConfigSpec {
        name: "segment.jitter.ms",
        kind: Kind::Count,
        honoured: false,
        default: |_| "0".into(),
    },
    TopicConfigSpec {
        name: "local.retention.ms",
        kind: Kind::Text,
        honoured: false,
        default: |_| "-2".into(),
    },
    TopicConfigSpec {
        name: "local.retention.bytes",
        kind: Kind::Text,
        honoured: false,
        default: |_| "-2".into(),
    },
    TopicConfigSpec {
        name: "remote.storage.enable",
        kind: Kind::Bool,
        honoured: false,
        default: |_| "false".into(),
    },
    TopicConfigSpec {
        name: "leader.replication.throttled.replicas",
        kind: Kind::ThrottledReplicas,
        honoured: true,
        default: |_| "".into(),
    },
    TopicConfigSpec {
        name: "follower.replication.throttled.replicas",
        kind: Kind::ThrottledReplicas,
        honoured: true,
        default: |_| "".into(),
    },
];

fn spec(name: &str) -> Option<&'static TopicConfigSpec> {
    TOPIC_CONFIGS.iter().find(|s| s.name == name)
}

fn validate_value(spec: &TopicConfigSpec, value: &str) -> Result<(), String> {
    let ok = match spec.kind {
        Kind::Count => value.parse::<u64>().is_ok(),
        Kind::Bool => value == "true" || value == "false",
        Kind::Choice(words) => words.contains(&value),
        Kind::Ratio => value.parse::<f64>().is_ok_and(|r| (0.0..=1.0).contains(&r)),
        Kind::LimitOrUnlimited => value.parse::<i64>().is_ok_and(|n| n >= -1),
        Kind::Text => true,
        Kind::CleanupPolicy => value
            .split(',')
            .all(|word| matches!(word.trim(), "delete" | "compact")),
        Kind::ThrottledReplicas => crate::replication::validate_throttled_replicas(value).is_ok(),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "Invalid value {value} for configuration {}",
            spec.name
        ))
    }
}

/// Checks the configs of a CreateTopics request; returns the ones to store (nulls dropped).
pub fn validate_topic_configs(
    requested: &BTreeMap<String, Option<String>>,
) -> Result<BTreeMap<String, String>, String> {
    let mut configs = BTreeMap::new();
    for (name, value) in requested {
        let spec = spec(name).ok_or_else(|| format!("Unknown topic config name: {name}"))?;
        let Some(value) = value else { continue };
        validate_value(spec, value)?;
        configs.insert(name.clone(), value.clone());
    }
    Ok(configs)
}

pub use crate::config::ConfigSource;

pub struct ConfigEntry {
    pub name: String,
    pub value: String,
    pub source: ConfigSource,
}

/// Every known topic config with its effective value and where the value comes from: the
/// topic's override, else the level its broker setting (see [`broker_synonym`]) comes from
/// (dynamic per-broker, dynamic cluster default, static, default), as Kafka reports it.
pub fn describe(configs: &BTreeMap<String, String>, broker: &BrokerConfig) -> Vec<ConfigEntry> {
    TOPIC_CONFIGS
        .iter()
        .map(|spec| match configs.get(spec.name) {
            Some(value) => ConfigEntry {
                name: spec.name.into(),
                value: value.clone(),
                source: ConfigSource::DynamicTopic,
            },
            None => ConfigEntry {
                name: spec.name.into(),
                value: (spec.default)(broker),
                source: broker_synonym(spec.name)
                    .and_then(|key| broker.setting_sources(key).first().map(|(s, _)| *s))
                    .unwrap_or(ConfigSource::Default),
            },
        })
        .collect()
}

/// Names of configs Fjord accepts and stores but does not act on yet.
pub fn accepted_but_ignored() -> impl Iterator<Item = &'static str> {
    TOPIC_CONFIGS.iter().filter(|s| !s.honoured).map(|s| s.name)
}

fn number<T: std::str::FromStr>(configs: &BTreeMap<String, String>, name: &str, default: T) -> T {
    configs
        .get(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The log settings of a topic: its own configs over the broker defaults.
pub fn log_config(
    configs: &BTreeMap<String, String>,
    broker: &BrokerConfig,
) -> fjord_storage::LogConfig {
    let defaults = broker.log_config();
    fjord_storage::LogConfig {
        segment_bytes: number(configs, "segment.bytes", defaults.segment_bytes).max(1),
        segment_ms: number(configs, "segment.ms", defaults.segment_ms).max(1),
        index_interval_bytes: number(
            configs,
            "index.interval.bytes",
            defaults.index_interval_bytes,
        )
        .max(1),
        flush_interval_messages: number(
            configs,
            "flush.messages",
            defaults.flush_interval_messages,
        )
        .max(1),
        flush_interval_ms: number(configs, "flush.ms", defaults.flush_interval_ms).max(1),
        // Time and size retention apply only with the `delete` cleanup policy; a compacted
        // topic (`__consumer_offsets`) keeps its segments until the cleaner handles them.
        retention_ms: if deletes(configs, broker) {
            number(configs, "retention.ms", defaults.retention_ms)
        } else {
            -1
        },
        retention_bytes: if deletes(configs, broker) {
            number(configs, "retention.bytes", defaults.retention_bytes)
        } else {
            -1
        },
        compact: is_compacted(configs, broker),
        min_cleanable_dirty_ratio: number(
            configs,
            "min.cleanable.dirty.ratio",
            defaults.min_cleanable_dirty_ratio,
        ),
        delete_retention_ms: number(configs, "delete.retention.ms", defaults.delete_retention_ms),
        min_compaction_lag_ms: number(
            configs,
            "min.compaction.lag.ms",
            defaults.min_compaction_lag_ms,
        ),
        max_compaction_lag_ms: number(
            configs,
            "max.compaction.lag.ms",
            defaults.max_compaction_lag_ms,
        )
        .max(1),
    }
}

/// The topic's `cleanup.policy` words, falling back to `log.cleanup.policy`.
fn cleanup_policy_has(
    configs: &BTreeMap<String, String>,
    broker: &BrokerConfig,
    word: &str,
) -> bool {
    configs
        .get("cleanup.policy")
        .unwrap_or(&broker.log_cleanup_policy)
        .split(',')
        .any(|p| p.trim() == word)
}

/// Whether `cleanup.policy` includes `compact`: every record must then have a key, and the log
/// cleaner keeps the latest record per key.
pub fn is_compacted(configs: &BTreeMap<String, String>, broker: &BrokerConfig) -> bool {
    cleanup_policy_has(configs, broker, "compact")
}

/// Whether `cleanup.policy` includes `delete` (the default): time and size retention apply,
/// and DeleteRecords may move the log start offset.
pub fn deletes(configs: &BTreeMap<String, String>, broker: &BrokerConfig) -> bool {
    cleanup_policy_has(configs, broker, "delete")
}

/// Whether the broker stamps batches with its own time (`message.timestamp.type=LogAppendTime`).
pub fn uses_log_append_time(configs: &BTreeMap<String, String>) -> bool {
    configs
        .get("message.timestamp.type")
        .is_some_and(|v| v == "LogAppendTime")
}

/// The topic's `min.insync.replicas` (else the broker's), at least 1.
pub fn min_insync_replicas(configs: &BTreeMap<String, String>, broker: &BrokerConfig) -> usize {
    number(configs, "min.insync.replicas", broker.min_insync_replicas).max(1)
}

/// The largest batch a producer may append to a topic with these configs.
pub fn max_message_bytes(configs: &BTreeMap<String, String>, broker: &BrokerConfig) -> usize {
    number(configs, "max.message.bytes", broker.message_max_bytes)
}

/// Whether this broker's replica of partition `index` is listed in the topic's
/// `leader.replication.throttled.replicas` and `follower.replication.throttled.replicas`
/// (Kafka `TopicConfigHandler.updateThrottledList`): `(leader, follower)`.
pub fn replication_throttles(
    configs: &BTreeMap<String, String>,
    broker_id: i32,
    index: i32,
) -> (bool, bool) {
    let listed = |name: &str| {
        configs.get(name).is_some_and(|value| {
            crate::replication::ThrottledReplicas::parse(value, broker_id)
                .is_ok_and(|replicas| replicas.contains(index))
        })
    };
    (
        listed("leader.replication.throttled.replicas"),
        listed("follower.replication.throttled.replicas"),
    )
}

/// The broker setting a topic config falls back to (its synonym in DescribeConfigs).
pub fn broker_synonym(name: &str) -> Option<&'static str> {
    Some(match name {
        "segment.bytes" => "log.segment.bytes",
        "segment.ms" => "log.roll.ms",
        "index.interval.bytes" => "log.index.interval.bytes",
        "flush.messages" => "log.flush.interval.messages",
        "flush.ms" => "log.flush.interval.ms",
        "retention.ms" => "log.retention.ms",
        "retention.bytes" => "log.retention.bytes",
        "max.message.bytes" => "message.max.bytes",
        "cleanup.policy" => "log.cleanup.policy",
        "delete.retention.ms" => "log.cleaner.delete.retention.ms",
        "min.cleanable.dirty.ratio" => "log.cleaner.min.cleanable.ratio",
        "min.compaction.lag.ms" => "log.cleaner.min.compaction.lag.ms",
        "max.compaction.lag.ms" => "log.cleaner.max.compaction.lag.ms",
        "min.insync.replicas" => "min.insync.replicas",
        _ => return None,
    })
}

/// Kafka's `ConfigType` code for DescribeConfigs v3+ (BOOLEAN 1, STRING 2, LONG 5, DOUBLE 6,
/// LIST 7).
pub fn config_type(name: &str) -> i8 {
    match spec(name).map(|s| s.kind) {
        Some(Kind::Bool) => 1,
        Some(Kind::Count) | Some(Kind::LimitOrUnlimited) => 5,
        Some(Kind::Ratio) => 6,
        _ if is_list(name) => 7,
        _ => 2,
    }
}

/// Configs whose values are comma-separated lists (IncrementalAlterConfigs APPEND/SUBTRACT).
pub fn is_list(name: &str) -> bool {
    matches!(
        name,
        "cleanup.policy"
            | "leader.replication.throttled.replicas"
            | "follower.replication.throttled.replicas"
    )
}

/// Whether Fjord knows `name` as a topic config.
pub fn is_known(name: &str) -> bool {
    spec(name).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttled_replicas_name_this_brokers_partitions() {
        let mut configs = BTreeMap::new();
        configs.insert(
            "leader.replication.throttled.replicas".to_string(),
            "0:1,1:2".to_string(),
        );
        configs.insert(
            "follower.replication.throttled.replicas".to_string(),
            "*".to_string(),
        );
        assert_eq!(replication_throttles(&configs, 1, 0), (true, true));
        assert_eq!(replication_throttles(&configs, 1, 1), (false, true));
        assert_eq!(replication_throttles(&configs, 2, 1), (true, true));
        assert_eq!(
            replication_throttles(&BTreeMap::new(), 1, 0),
            (false, false)
        );
    }

    #[test]
    fn unknown_and_bad_values_are_rejected() {
        let mut requested = BTreeMap::new();
        requested.insert("retention.mss".to_string(), Some("1".to_string()));
        assert!(validate_topic_configs(&requested).is_err());
        let mut requested = BTreeMap::new();
        requested.insert("segment.bytes".to_string(), Some("-5".to_string()));
        assert!(validate_topic_configs(&requested).is_err());
        let mut requested = BTreeMap::new();
        requested.insert("segment.bytes".to_string(), Some("1048576".to_string()));
        requested.insert("cleanup.policy".to_string(), None);
        let stored = validate_topic_configs(&requested).unwrap();
        assert_eq!(stored.len(), 1);
        let mut requested = BTreeMap::new();
        requested.insert(
            "leader.replication.throttled.replicas".to_string(),
            Some("0:1,x".to_string()),
        );
        assert!(validate_topic_configs(&requested).is_err());
        let broker = BrokerConfig::default();
        assert_eq!(log_config(&stored, &broker).segment_bytes, 1_048_576);
        assert_eq!(
            max_message_bytes(&stored, &broker),
            broker.message_max_bytes
        );
    }
}
