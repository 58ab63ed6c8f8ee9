//! Engine metrics. Every drop and refusal is counted.

use elastickv_store::ShardId;
use metrics::{Counter, Gauge, Histogram};

/// A shard's metrics that change every round, registered once when its
/// engine opens (the raft thread does not look them up per round).
pub(crate) struct ShardMetrics {
    role: Gauge,
    term: Gauge,
    commit: Gauge,
    applied: Gauge,
    applied_entries: Counter,
    proposals: Counter,
    proposal_apply: Histogram,
    ready_rounds: Counter,
    ready_appended: Histogram,
    ready_committed: Histogram,
}

impl ShardMetrics {
    pub(crate) fn new(shard: ShardId) -> ShardMetrics {
        let label = shard.to_string();
        let gauge = |name: &'static str| metrics::gauge!(name, "shard" => label.clone());
        let counter = |name: &'static str| metrics::counter!(name, "shard" => label.clone());
        let histogram = |name: &'static str| metrics::histogram!(name, "shard" => label.clone());
        ShardMetrics {
            role: gauge("elastickv_raft_role"),
            term: gauge("elastickv_raft_term"),
            commit: gauge("elastickv_raft_commit_index"),
            applied: gauge("elastickv_raft_applied_index"),
            applied_entries: counter("elastickv_raft_applied_entries_total"),
            proposals: counter("elastickv_raft_proposals_total"),
            proposal_apply: histogram("elastickv_raft_proposal_apply_seconds"),
            ready_rounds: counter("elastickv_raft_ready_rounds_total"),
            ready_appended: histogram("elastickv_raft_ready_appended_entries"),
            ready_committed: histogram("elastickv_raft_ready_committed_entries"),
        }
    }

    /// The shard's raft state, as last published (each round): role 0
    /// follower, 1 candidate, 2 leader.
    pub(crate) fn state(&self, role: f64, term: u64, commit: u64, applied: u64) {
        self.role.set(role);
        self.term.set(term as f64);
        self.commit.set(commit as f64);
        self.applied.set(applied as f64);
    }

    pub(crate) fn applied_entries(&self, count: usize) {
        self.applied_entries.increment(count as u64);
    }

    pub(crate) fn proposed(&self) {
        self.proposals.increment(1);
    }

    /// From a proposal to its answer (committed and applied here).
    pub(crate) fn proposal_applied(&self, seconds: f64) {
        self.proposal_apply.record(seconds);
    }

    /// A ready round and the entries it appended and applied.
    pub(crate) fn ready_round(&self, appended: usize, committed: usize) {
        self.ready_rounds.increment(1);
        self.ready_appended.record(appended as f64);
        self.ready_committed.record(committed as f64);
    }
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

/// The engine told raft that `peer` is unreachable (a message to it was
/// dropped): raft then probes it instead of streaming appends.
pub(crate) fn unreachable_reported(shard: ShardId, peer: u64) {
    metrics::counter!(
        "elastickv_raft_unreachable_reports_total",
        "shard" => shard.to_string(),
        "peer" => peer.to_string()
    )
    .increment(1);
}

/// A raft thread's log writes, registered once when the thread starts
/// (they are recorded every round).
pub(crate) struct LogWriteMetrics {
    /// Indexed by whether the write was synced.
    writes: [Counter; 2],
    seconds: [Histogram; 2],
    bytes: Histogram,
}

impl LogWriteMetrics {
    pub(crate) fn new() -> LogWriteMetrics {
        let sync = |synced: bool| if synced { "true" } else { "false" };
        LogWriteMetrics {
            writes: [false, true]
                .map(|s| metrics::counter!("elastickv_raft_log_writes_total", "sync" => sync(s))),
            seconds: [false, true].map(
                |s| metrics::histogram!("elastickv_raft_log_write_seconds", "sync" => sync(s)),
            ),
            bytes: metrics::histogram!("elastickv_raft_log_write_bytes"),
        }
    }

    /// One write of a round's log batch and how long it took; `synced`
    /// when it waited for the disk (new entries or a new term/vote), not
    /// for a lone commit-index update.
    pub(crate) fn record(&self, batch_bytes: usize, synced: bool, seconds: f64) {
        let i = usize::from(synced);
        self.writes[i].increment(1);
        self.seconds[i].record(seconds);
        self.bytes.record(batch_bytes as f64);
    }
}

pub(crate) fn leader_changed(shard: ShardId) {
    metrics::counter!("elastickv_raft_leader_changes_total", "shard" => shard.to_string())
        .increment(1);
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
