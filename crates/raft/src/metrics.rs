//! Engine metrics. Every drop and refusal is counted.

use elastickv_store::ShardId;

pub(crate) fn applied_entries(shard: ShardId, count: usize) {
    metrics::counter!("elastickv_raft_applied_entries_total", "shard" => shard.to_string())
        .increment(count as u64);
}

pub(crate) fn step_queue_full(shard: ShardId) {
    metrics::counter!("elastickv_raft_step_queue_full_total", "shard" => shard.to_string())
        .increment(1);
}

pub(crate) fn dropped_message(shard: ShardId, peer: u64, reason: &'static str) {
    metrics::counter!(
        "elastickv_raft_dropped_messages_total",
        "shard" => shard.to_string(),
        "peer" => peer.to_string(),
        "reason" => reason
    )
    .increment(1);
}

/// One write of a round's log batch; `synced` when it waited for the disk
/// (new entries or a new term/vote), not for a lone commit-index update.
pub(crate) fn log_write(batch_bytes: usize, synced: bool) {
    let sync = if synced { "true" } else { "false" };
    metrics::counter!("elastickv_raft_log_writes_total", "sync" => sync).increment(1);
    metrics::histogram!("elastickv_raft_log_write_bytes").record(batch_bytes as f64);
}
