//! Dynamic broker configs (Kafka's KIP-226 `DynamicBrokerConfig`): settings changed at run time
//! with AlterConfigs / IncrementalAlterConfigs on a BROKER resource, without a restart.
//!
//! Two levels, as in Kafka: the cluster-wide default (resource name "", reported as
//! DYNAMIC_DEFAULT_BROKER_CONFIG) and this broker's own (resource name = its node id,
//! DYNAMIC_BROKER_CONFIG). Precedence: per-broker dynamic > cluster default dynamic > static
//! (file, environment, flags) > built-in default. Both levels live in the metadata log as
//! ConfigRecords of BROKER resources "" and the node id (written by the controller); they
//! apply before any log opens at start, and whenever a published image changes them the
//! effective [`BrokerConfig`] is swapped as a whole and every log gets its new settings
//! (`Broker::publish_metadata`, `ReplicaManager::set_config`).
//!
//! Only [`DYNAMIC_SETTINGS`] may be set: Kafka's reconfigurable log defaults (every broker
//! synonym of a topic config Fjord knows) and `max.connections`, the ones Fjord applies live.
//! Other settings Fjord knows (including Kafka's spellings such as `broker.id` and
//! `listeners`) are refused as Kafka refuses non-dynamic configs; names Fjord does not know at
//! all are refused as invalid.

use std::collections::BTreeMap;

use tracing::warn;

use crate::config::{canonical_setting, BrokerConfig, SETTINGS};

/// Settings that may be changed dynamically. All are read through `Broker::config()` whenever
/// they are used (logs get them through their `LogConfig`, re-applied on every change), so a
/// change takes effect at once.
/// The log cleaner reads its own settings at the start of every pass. `log.cleaner.enable` and
/// `log.retention.check.interval.ms` stay static, as in Kafka.
pub const DYNAMIC_SETTINGS: &[&str] = &[
    // DynamicLogConfig: the broker synonyms of topic configs.
    "log.segment.bytes",
    "log.roll.ms",
    "log.retention.ms",
    "log.retention.bytes",
    "log.index.interval.bytes",
    "log.flush.interval.messages",
    "log.flush.interval.ms",
    "log.cleanup.policy",
    "log.cleaner.delete.retention.ms",
    "log.cleaner.min.cleanable.ratio",
    "log.cleaner.min.compaction.lag.ms",
    "log.cleaner.max.compaction.lag.ms",
    "message.max.bytes",
    // LogCleaner: read at the start of every pass.
    "log.cleaner.io.max.bytes.per.second",
    "log.cleaner.backoff.ms",
    "log.cleaner.dedupe.buffer.size",
    "log.cleaner.io.buffer.size",
    // SocketServer: checked at every accept.
    "max.connections",
    // Replication quotas (Kafka `DynamicConfig.Broker`): read at every follower fetch.
    "leader.replication.throttled.rate",
    "follower.replication.throttled.rate",
];

/// Whether `key` (a Kafka name) may be changed dynamically.
pub fn is_dynamic(key: &str) -> bool {
    DYNAMIC_SETTINGS.contains(&key)
}

/// Whether Fjord knows `key` at all (its own names and Kafka's aliases for them).
pub fn is_known(key: &str) -> bool {
    let (canonical, _) = canonical_setting(key, "");
    SETTINGS.iter().any(|spec| spec.key == canonical)
}

/// Whether the setting's value is a comma-separated list (IncrementalAlterConfigs APPEND and
/// SUBTRACT).
pub fn is_list(key: &str) -> bool {
    key == "log.cleanup.policy"
}

/// The built-in default of a setting, "" for an unknown one.
pub fn setting_default(key: &str) -> &'static str {
    SETTINGS
        .iter()
        .find(|spec| spec.key == key)
        .map_or("", |spec| spec.default)
}

/// Why a set of dynamic configs is refused before its values are looked at.
#[derive(Debug, PartialEq, Eq)]
pub enum NameError {
    /// Settings Fjord knows but cannot change at run time (Kafka: INVALID_REQUEST).
    NotDynamic(Vec<String>),
    /// A name Fjord does not know (INVALID_CONFIG).
    Unknown(String),
}

impl std::fmt::Display for NameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // Kafka's DynamicBrokerConfig.validateConfigs wording (a Scala Set's toString).
            NameError::NotDynamic(names) => write!(
                f,
                "Cannot update these configs dynamically: Set({})",
                names.join(", ")
            ),
            NameError::Unknown(name) => write!(f, "Unknown broker config name: {name}"),
        }
    }
}

/// Checks the names of a complete set of dynamic configs of one level. Non-dynamic names are
/// reported first (all of them), as Kafka checks them before anything else.
pub fn check_names<'a>(names: impl IntoIterator<Item = &'a String>) -> Result<(), NameError> {
    let mut not_dynamic = Vec::new();
    let mut unknown = None;
    for name in names {
        if is_dynamic(name) {
            continue;
        }
        if is_known(name) {
            not_dynamic.push(name.clone());
        } else if unknown.is_none() {
            unknown = Some(name.clone());
        }
    }
    if !not_dynamic.is_empty() {
        return Err(NameError::NotDynamic(not_dynamic));
    }
    match unknown {
        Some(name) => Err(NameError::Unknown(name)),
        None => Ok(()),
    }
}

/// The effective configuration: `static_config` with the image's dynamic configs on top (at
/// start and after every change). As Kafka does for configs it cannot apply at start, entries that are not dynamic,
/// unknown, or invalid together with the static settings are ignored with a warning (the file
/// keeps them until the next change of that level) rather than keeping the broker down.
pub fn effective_at_start(
    static_config: BrokerConfig,
    stored: fjord_storage::DynamicBrokerConfigs,
) -> BrokerConfig {
    let mut accepted_default = BTreeMap::new();
    let mut accepted_broker = BTreeMap::new();
    let levels = [
        ("cluster default", stored.cluster_default, false),
        ("broker", stored.broker, true),
    ];
    for (level, values, per_broker) in levels {
        for (key, value) in values {
            if let Err(err) = check_names([&key]) {
                warn!(level, key, error = %err, "ignoring a stored dynamic broker config");
                continue;
            }
            let (mut default, mut broker) = (accepted_default.clone(), accepted_broker.clone());
            if per_broker {
                broker.insert(key.clone(), value.clone());
            } else {
                default.insert(key.clone(), value.clone());
            }
            match static_config.with_dynamic(default, broker) {
                Ok(_) => {
                    if per_broker {
                        accepted_broker.insert(key, value);
                    } else {
                        accepted_default.insert(key, value);
                    }
                }
                Err(err) => {
                    warn!(level, key, error = %err, "ignoring an invalid stored dynamic broker config")
                }
            }
        }
    }
    if accepted_default.is_empty() && accepted_broker.is_empty() {
        return static_config;
    }
    match static_config.with_dynamic(accepted_default, accepted_broker) {
        Ok(config) => {
            tracing::info!(
                cluster_default = ?config.dynamic_default_settings,
                broker = ?config.dynamic_broker_settings,
                "applied dynamic broker configs"
            );
            config
        }
        Err(err) => {
            // Each entry was valid on its own above; this is only reachable if settings
            // constrain each other, which none of the dynamic ones do.
            warn!(error = %err, "ignoring the stored dynamic broker configs");
            static_config
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_dynamic_setting_is_a_known_setting() {
        for key in DYNAMIC_SETTINGS {
            assert!(SETTINGS.iter().any(|s| s.key == *key), "{key}");
        }
    }

    #[test]
    fn names_are_checked_like_kafka() {
        assert_eq!(
            check_names(
                &map(&[("log.retention.ms", "1")])
                    .into_keys()
                    .collect::<Vec<_>>()
            ),
            Ok(())
        );
        let err = check_names(
            &map(&[("node.id", "2"), ("listeners", "x"), ("nope", "1")])
                .into_keys()
                .collect::<Vec<_>>(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Cannot update these configs dynamically: Set(listeners, node.id)"
        );
        assert_eq!(
            check_names(&["no.such.setting".to_string()]),
            Err(NameError::Unknown("no.such.setting".into()))
        );
        assert!(matches!(
            check_names(&["broker.id".to_string()]),
            Err(NameError::NotDynamic(_))
        ));
    }

    #[test]
    fn precedence_is_broker_over_default_over_static() {
        let static_config =
            BrokerConfig::from_settings(&map(&[("log.retention.ms", "100")])).unwrap();
        assert_eq!(static_config.log_retention_ms, 100);
        let config = static_config
            .with_dynamic(map(&[("log.retention.ms", "200")]), BTreeMap::new())
            .unwrap();
        assert_eq!(config.log_retention_ms, 200);
        let config = config
            .with_dynamic(
                map(&[("log.retention.ms", "200")]),
                map(&[("log.retention.ms", "300")]),
            )
            .unwrap();
        assert_eq!(config.log_retention_ms, 300);
        use crate::config::ConfigSource::*;
        assert_eq!(
            config.setting_sources("log.retention.ms"),
            vec![
                (DynamicBroker, "300".to_string()),
                (DynamicDefaultBroker, "200".to_string()),
                (StaticBroker, "100".to_string()),
                (Default, "604800000".to_string()),
            ]
        );
        // The static settings stay what they were.
        assert_eq!(
            config.explicit_settings,
            map(&[("log.retention.ms", "100")])
        );
        // Deleting the per-broker value falls back to the cluster default.
        let config = config
            .with_dynamic(config.dynamic_default_settings.clone(), BTreeMap::new())
            .unwrap();
        assert_eq!(config.log_retention_ms, 200);
    }

    #[test]
    fn invalid_values_are_refused_by_the_static_rules() {
        let config = BrokerConfig::default();
        assert!(config
            .with_dynamic(map(&[("log.segment.bytes", "0")]), BTreeMap::new())
            .is_err());
        assert!(config
            .with_dynamic(BTreeMap::new(), map(&[("log.cleanup.policy", "shred")]))
            .is_err());
    }

    #[test]
    fn bad_stored_entries_are_ignored_at_start() {
        let stored = fjord_storage::DynamicBrokerConfigs {
            cluster_default: map(&[
                ("log.retention.ms", "5000"),
                ("node.id", "7"),
                ("no.such.setting", "1"),
            ]),
            broker: map(&[("log.segment.bytes", "zero"), ("message.max.bytes", "4096")]),
        };
        let config = effective_at_start(BrokerConfig::default(), stored);
        assert_eq!(config.log_retention_ms, 5000);
        assert_eq!(config.node_id, 1);
        assert_eq!(config.message_max_bytes, 4096);
        assert_eq!(config.log_segment_bytes, 1 << 30);
        assert_eq!(
            config.dynamic_default_settings,
            map(&[("log.retention.ms", "5000")])
        );
        assert_eq!(
            config.dynamic_broker_settings,
            map(&[("message.max.bytes", "4096")])
        );
    }
}
