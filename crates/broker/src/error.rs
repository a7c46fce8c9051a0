//! The broker crate's error type.

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("storage: {0}")]
    Storage(#[from] fjord_storage::StorageError),
    #[error("invalid config {key}={value}: {reason}")]
    InvalidConfig {
        key: String,
        value: String,
        reason: String,
    },
    #[error("unknown config key {key:?}")]
    UnknownConfig { key: String },
}
