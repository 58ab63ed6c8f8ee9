//! Active expiry. Expired keys are invisible to reads at once; this task
//! removes them for good, through the log, so every replica deletes the
//! same keys. Only a shard's leader proposes deletions, each batch naming
//! the keys with the expiry the leader saw (a key whose expiry changed in
//! the meantime survives).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use elastickv_raft::Role;
use elastickv_redis::log::LogEntry;
use elastickv_resp::Reply;
use tokio::sync::watch;

use crate::NodeState;
use crate::stats::Stats;

/// How often each shard's expiry index is checked (Redis: 10 Hz).
const CYCLE: Duration = Duration::from_millis(100);
/// Keys removed per proposal.
const BATCH: usize = 256;
/// Proposals per shard per cycle, so a mass expiry does not crowd out
/// client writes.
const MAX_BATCHES_PER_CYCLE: usize = 16;

pub async fn run(state: Arc<NodeState>, mut shutdown: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(CYCLE);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        let backend = state.router.backend();
        for status in backend.raft.status() {
            if status.role != Role::Leader {
                continue;
            }
            for _ in 0..MAX_BATCHES_PER_CYCLE {
                let now = backend.stamp(status.shard);
                let due = match backend
                    .store
                    .shard_reader(status.shard, false)
                    .expired_keys(status.shard, now, BATCH)
                {
                    Ok(due) => due,
                    Err(e) => {
                        tracing::error!(shard_id = status.shard, error = %e, "cannot read the expiry index");
                        break;
                    }
                };
                if due.is_empty() {
                    break;
                }
                let full = due.len() == BATCH;
                let keys = due
                    .into_iter()
                    .map(|(at, _, key)| (Bytes::from(key), at))
                    .collect();
                let payload = LogEntry::expiry(now, keys).to_bytes();
                match backend.raft.propose(status.shard, payload).await {
                    Ok(Reply::Integer(n)) => {
                        Stats::add(&state.stats.expired_keys, u64::try_from(n).unwrap_or(0));
                    }
                    Ok(other) => {
                        tracing::warn!(shard_id = status.shard, reply = ?other, "unexpected expiry reply");
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(shard_id = status.shard, error = %e, "expiry proposal refused");
                        break;
                    }
                }
                if !full {
                    break;
                }
            }
        }
    }
}
