//! The Raft library logs through `slog`; Fjord logs through `tracing`. This drain forwards
//! every record to `tracing` at debug level under the target `raft` (pitfall 7: the library
//! insists on a `slog::Logger`). Records are only formatted when that target is enabled.

use slog::{Drain, Never, OwnedKVList, Record, KV};

struct TracingDrain;

/// Collects a record's key-value pairs as `key=value` text.
struct KvText(String);

impl slog::Serializer for KvText {
    fn emit_arguments(&mut self, key: slog::Key, value: &std::fmt::Arguments<'_>) -> slog::Result {
        use std::fmt::Write;
        let _ = write!(self.0, " {key}={value}");
        Ok(())
    }
}

impl Drain for TracingDrain {
    type Ok = ();
    type Err = Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), Never> {
        if tracing::enabled!(target: "raft", tracing::Level::DEBUG) {
            let mut kv = KvText(String::new());
            let _ = record.kv().serialize(record, &mut kv);
            let _ = values.serialize(record, &mut kv);
            tracing::debug!(target: "raft", level = record.level().as_short_str(), "{}{}", record.msg(), kv.0);
        }
        Ok(())
    }
}

/// The `slog::Logger` handed to the Raft library, tagged with this node's id.
pub(crate) fn raft_logger(node_id: u64) -> slog::Logger {
    slog::Logger::root(TracingDrain.fuse(), slog::o!("node" => node_id))
}
