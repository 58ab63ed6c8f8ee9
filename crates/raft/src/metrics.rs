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

/// A shard's raft state, as last published (each round).
pub(crate) fn shard_state(shard: ShardId, role: f64, term: u64, commit: u64, applied: u64) {
    let label = shard.to_string();
    metrics::gauge!("elastickv_raft_role", "shard" => label.clone()).set(role);
    metrics::gauge!("elastickv_raft_term", "shard" => label.clone()).set(term as f64);
    metrics::gauge!("elastickv_raft_commit_index", "shard" => label.clone()).set(commit as f64);
    metrics::gauge!("elastickv_raft_applied_index", "shard" => label).set(applied as f64);
}

pub(crate) fn leader_changed(shard: ShardId) {
    metrics::counter!("elastickv_raft_leader_changes_total", "shard" => shard.to_string())
        .increment(1);
}

pub(crate) fn proposed(shard: ShardId) {
    metrics::counter!("elastickv_raft_proposals_total", "shard" => shard.to_string()).increment(1);
}

/// From a proposal to its answer (committed and applied here).
pub(crate) fn proposal_applied(shard: ShardId, seconds: f64) {
    metrics::histogram!("elastickv_raft_proposal_apply_seconds", "shard" => shard.to_string())
        .record(seconds);
}

/// How long a round's log write took (with its fsync when `synced`).
pub(crate) fn log_write_time(synced: bool, seconds: f64) {
    let sync = if synced { "true" } else { "false" };
    metrics::histogram!("elastickv_raft_log_write_seconds", "sync" => sync).record(seconds);
}

/// A ready round of a shard and the entries it appended and applied.
pub(crate) fn ready_round(shard: ShardId, appended: usize, committed: usize) {
    let label = shard.to_string();
    metrics::counter!("elastickv_raft_ready_rounds_total", "shard" => label.clone()).increment(1);
    metrics::histogram!("elastickv_raft_ready_appended_entries", "shard" => label.clone())
        .record(appended as f64);
    metrics::histogram!("elastickv_raft_ready_committed_entries", "shard" => label)
        .record(committed as f64);
}

pub(crate) fn snapshot_installed(shard: ShardId) {
    metrics::counter!("elastickv_raft_snapshots_installed_total", "shard" => shard.to_string())
        .increment(1);
}

/// A snapshot handed to the network layer to send to a follower.
pub(crate) fn snapshot_sent(shard: ShardId) {
    metrics::counter!("elastickv_raft_snapshots_sent_total", "shard" => shard.to_string())
        .increment(1);
}
