//! Routes raft-rs's `slog` records into `tracing`, so the node has one log
//! stream and one filter (`RUST_LOG`).

use std::fmt::{self, Write as _};

use slog::{Drain, KV, Level, Never, OwnedKVList, Record, Serializer};

struct TracingDrain;

impl Drain for TracingDrain {
    type Ok = ();
    type Err = Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), Never> {
        let mut fields = FieldWriter(String::new());
        // Serialization into a String cannot fail; a failing KV impl only
        // loses its own fields.
        let _ = values.serialize(record, &mut fields);
        let _ = record.kv().serialize(record, &mut fields);
        let message = record.msg();
        let fields = fields.0;
        match record.level() {
            Level::Critical | Level::Error => tracing::error!(target: "raft", "{message}{fields}"),
            Level::Warning => tracing::warn!(target: "raft", "{message}{fields}"),
            // raft-rs narrates every step at info; the engine logs the
            // transitions operators care about (role changes) itself.
            Level::Info => tracing::debug!(target: "raft", "{message}{fields}"),
            Level::Debug => tracing::debug!(target: "raft", "{message}{fields}"),
            Level::Trace => tracing::trace!(target: "raft", "{message}{fields}"),
        }
        Ok(())
    }
}

struct FieldWriter(String);

impl Serializer for FieldWriter {
    fn emit_arguments(&mut self, key: slog::Key, val: &fmt::Arguments<'_>) -> slog::Result {
        let _ = write!(self.0, " {key}={val}");
        Ok(())
    }
}

/// A raft-rs logger tagged with the shard and the local node.
pub fn raft_logger(local_id: u64, shard_id: u32) -> slog::Logger {
    slog::Logger::root(
        TracingDrain.fuse(),
        slog::o!("shard_id" => shard_id, "local_id" => local_id),
    )
}
