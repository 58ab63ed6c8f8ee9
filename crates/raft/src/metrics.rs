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

pub(crate) fn log_sync(entries_bytes: usize) {
    metrics::counter!("elastickv_raft_log_syncs_total").increment(1);
    metrics::histogram!("elastickv_raft_log_sync_batch_bytes").record(entries_bytes as f64);
}
