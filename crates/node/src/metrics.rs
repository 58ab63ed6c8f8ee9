//! The Prometheus endpoint, and the node's own metrics. Metric names are
//! prefixed `elastickv_`; the README lists every family.

use std::net::SocketAddr;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;

/// Serves metrics over HTTP at `addr` (`/metrics`, or any path).
pub fn install(addr: SocketAddr) -> Result<(), String> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))
}

/// One command's families, registered at its first call (so commands
/// never called add no series) and kept with its INFO counters.
#[derive(Debug)]
pub struct CommandMetrics {
    calls: metrics::Counter,
    errors: metrics::Counter,
    duration: metrics::Histogram,
}

impl CommandMetrics {
    pub fn new(name: &'static str) -> CommandMetrics {
        CommandMetrics {
            calls: metrics::counter!("elastickv_commands_total", "command" => name),
            errors: metrics::counter!("elastickv_command_errors_total", "command" => name),
            duration: metrics::histogram!("elastickv_command_duration_seconds", "command" => name),
        }
    }

    /// A call that ran for `took` and whether it answered an error.
    pub fn record(&self, took: Duration, failed: bool) {
        self.calls.increment(1);
        if failed {
            self.errors.increment(1);
        }
        self.duration.record(took.as_secs_f64());
    }
}

/// A write forwarded to its shard's leader on another node, and how long
/// its answer took.
pub fn forwarded(shard: u32, took: Duration) {
    let label = shard.to_string();
    metrics::counter!("elastickv_forwarded_requests_total", "shard" => label.clone()).increment(1);
    metrics::histogram!("elastickv_forwarded_request_seconds", "shard" => label)
        .record(took.as_secs_f64());
}

/// A script or function that ran again because a key it saw changed
/// before its writes applied.
pub fn script_conflict() {
    metrics::counter!("elastickv_script_conflicts_total").increment(1);
}

/// Clients blocked on keys now.
pub fn blocked_clients(count: usize) {
    metrics::gauge!("elastickv_blocked_clients").set(count as f64);
}

/// RocksDB's size on disk and its compaction debt, sampled, per column
/// family (`sub` holds collections' members, `raft_log` the log, ...).
pub fn storage(store: &elastickv_store::Store) {
    for (property, name) in [
        (
            "rocksdb.total-sst-files-size",
            "elastickv_rocksdb_sst_bytes",
        ),
        (
            "rocksdb.estimate-pending-compaction-bytes",
            "elastickv_rocksdb_pending_compaction_bytes",
        ),
        (
            "rocksdb.cur-size-all-mem-tables",
            "elastickv_rocksdb_memtable_bytes",
        ),
        (
            "rocksdb.estimate-table-readers-mem",
            "elastickv_rocksdb_table_readers_bytes",
        ),
        (
            "rocksdb.estimate-num-keys",
            "elastickv_rocksdb_estimated_keys",
        ),
    ] {
        for (cf, value) in store.property_by_column_family(property) {
            metrics::gauge!(name, "cf" => cf).set(value as f64);
        }
    }
}

/// Samples what is not counted as it happens (storage sizes) every few
/// seconds, until shutdown.
pub async fn sample(
    state: std::sync::Arc<crate::NodeState>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        storage(&state.router.backend().store);
    }
}
