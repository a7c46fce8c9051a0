//! Migration of a pre-cluster single-node data dir into the metadata log (design 3.4).
//!
//! Before issue 8 a data dir kept its metadata in three files: `topics.json` (topics, ids,
//! partition counts, configs), `broker-configs.json` (dynamic broker configs) and
//! `producer-id-block` (the end of the last allocated producer id block). At the first start
//! of a cluster-capable Fjord on such a dir, [`read_legacy_metadata`] reads them into a
//! [`LegacyMetadata`]; the controller writes `fjord_metadata::migration_records` of it right
//! after the bootstrap entry; once the image holds them, [`finish_migration`] renames the files
//! to `*.migrated` (no downgrade; a restart before the renames finds the log already migrated
//! and only renames).

use std::path::Path;

use fjord_metadata::{LegacyMetadata, LegacyTopic};

use crate::error::BrokerError;

/// Reads `topics.json`, `broker-configs.json` and `producer-id-block` of `data_dir`; `None` if
/// there is no `topics.json` (a new or already migrated data dir).
pub fn read_legacy_metadata(data_dir: &Path) -> Result<Option<LegacyMetadata>, BrokerError> {
    let Some(topics) = fjord_storage::load_legacy_topics(data_dir)? else {
        return Ok(None);
    };
    let broker_configs = fjord_storage::read_dynamic_broker_configs(data_dir)?;
    let next_producer_id = fjord_storage::producer_ids::load_producer_id_block(data_dir)?;
    Ok(Some(LegacyMetadata {
        topics: topics
            .into_iter()
            .map(|topic| LegacyTopic {
                name: topic.name,
                topic_id: topic.topic_id,
                partitions: topic.partitions,
                configs: topic.configs,
            })
            .collect(),
        cluster_default_broker_configs: broker_configs.cluster_default,
        broker_configs: broker_configs.broker,
        next_producer_id,
    }))
}

/// Renames the legacy files to `*.migrated`; call once the image holds the migrated records.
pub fn finish_migration(data_dir: &Path) -> Result<(), BrokerError> {
    fjord_storage::rename_legacy_metadata_files(data_dir)?;
    tracing::info!(data_dir = %data_dir.display(), "migrated topics.json, broker-configs.json and producer-id-block into the metadata log");
    Ok(())
}
