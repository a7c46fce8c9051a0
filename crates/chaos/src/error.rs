//! Errors of the history checker: everything here means *bad input* (exit code 2), never an
//! anomaly of the system under test.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum HistoryError {
    #[error("reading the history: {0}")]
    Io(#[from] std::io::Error),
    #[error("line {line}: longer than {line_bytes_max} bytes")]
    LineTooLong { line: u64, line_bytes_max: usize },
    #[error("line {line}: not a history event: {source}")]
    Json {
        line: u64,
        #[source]
        source: serde_json::Error,
    },
    #[error("line {line}: {reason}")]
    Invalid { line: u64, reason: String },
    #[error("the history has no drain (f = \"drain\"): lost writes cannot be checked")]
    NoDrain,
}
