//! `broker-configs.json`: the dynamic broker configs (Kafka's KIP-226 configs, set with
//! AlterConfigs / IncrementalAlterConfigs on BROKER resources), kept next to `topics.json`.
//!
//! Two maps of Kafka setting names to values: the cluster-wide defaults (resource name "",
//! Kafka's `DYNAMIC_DEFAULT_BROKER_CONFIG`) and this broker's own (resource name = node id,
//! `DYNAMIC_BROKER_CONFIG`). Storage only reads and writes them; which names are allowed and
//! how they combine with the static settings is the broker crate's business. The file is
//! replaced atomically (temp file, fsync, rename, fsync dir) before a change is applied.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{io_error, write_atomically, LogManager, StorageError};

pub(crate) const BROKER_CONFIGS_FILE_NAME: &str = "broker-configs.json";

/// The dynamic broker configs as persisted in `broker-configs.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DynamicBrokerConfigs {
    /// Cluster-wide defaults (resource name "").
    #[serde(default)]
    pub cluster_default: BTreeMap<String, String>,
    /// This broker's own settings (resource name = its node id).
    #[serde(default)]
    pub broker: BTreeMap<String, String>,
}

/// The dynamic broker configs in `data_dir`, read without opening (or locking, or creating)
/// the directory: `fjord serve --print-config` shows them while a broker may be running.
/// Empty if none were ever set or the directory does not exist.
pub fn read_dynamic_broker_configs(
    data_dir: &std::path::Path,
) -> Result<DynamicBrokerConfigs, StorageError> {
    let path = data_dir.join(BROKER_CONFIGS_FILE_NAME);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(DynamicBrokerConfigs::default())
        }
        Err(error) => return Err(io_error("read", &path)(error)),
    };
    serde_json::from_slice(&bytes).map_err(|source| StorageError::Json { path, source })
}

impl LogManager {
    /// The dynamic broker configs; empty if none were ever set.
    pub fn load_dynamic_broker_configs(&self) -> Result<DynamicBrokerConfigs, StorageError> {
        read_dynamic_broker_configs(self.data_dir())
    }

    /// Replaces `broker-configs.json` atomically and durably.
    pub fn save_dynamic_broker_configs(
        &self,
        configs: &DynamicBrokerConfigs,
    ) -> Result<(), StorageError> {
        let path = self.data_dir().join(BROKER_CONFIGS_FILE_NAME);
        let json = serde_json::to_vec_pretty(configs).map_err(|source| StorageError::Json {
            path: path.clone(),
            source,
        })?;
        write_atomically(&path, &json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let (manager, _) = LogManager::open(dir.path()).unwrap();
        assert_eq!(
            manager.load_dynamic_broker_configs().unwrap(),
            DynamicBrokerConfigs::default()
        );
        let configs = DynamicBrokerConfigs {
            cluster_default: BTreeMap::from([("log.retention.ms".into(), "1000".into())]),
            broker: BTreeMap::from([("message.max.bytes".into(), "2000".into())]),
        };
        manager.save_dynamic_broker_configs(&configs).unwrap();
        assert!(dir.path().join(BROKER_CONFIGS_FILE_NAME).is_file());
        drop(manager);
        let (manager, _) = LogManager::open(dir.path()).unwrap();
        assert_eq!(manager.load_dynamic_broker_configs().unwrap(), configs);

        std::fs::write(dir.path().join(BROKER_CONFIGS_FILE_NAME), b"{not json").unwrap();
        assert!(matches!(
            manager.load_dynamic_broker_configs(),
            Err(StorageError::Json { .. })
        ));
    }
}
