//! Spreads shard leaders over the nodes. Shard `s` prefers node
//! `ids[s % n]` (ids sorted); a leader that is not its shard's preferred
//! node hands leadership over once that node is caught up and responsive.
//! Elections alone would tend to pile leaders onto whichever node started
//! first; spreading them spreads the write load and the fsyncs.

use std::sync::Arc;
use std::time::Duration;

use elastickv_raft::Role;
use tokio::sync::watch;

use crate::NodeState;

const CHECK_EVERY: Duration = Duration::from_secs(2);

/// The node shard `shard` prefers as leader.
pub fn preferred_leader(shard: u32, nodes: &[u64]) -> Option<u64> {
    nodes.get(shard as usize % nodes.len().max(1)).copied()
}

pub async fn run(state: Arc<NodeState>, nodes: Vec<u64>, mut shutdown: watch::Receiver<bool>) {
    if nodes.len() < 2 {
        return;
    }
    let backend = state.router.backend();
    let mut ticker = tokio::time::interval(CHECK_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        for status in backend.raft.status() {
            // The shard's current voters (membership changes), sorted.
            let voters = if status.voters.is_empty() {
                &nodes
            } else {
                &status.voters
            };
            let Some(preferred) = preferred_leader(status.shard, voters) else {
                continue;
            };
            if status.role != Role::Leader
                || preferred == backend.node_id
                || !status.caught_up.contains(&preferred)
            {
                continue;
            }
            tracing::info!(
                shard_id = status.shard,
                to = preferred,
                "handing leadership to the shard's preferred node"
            );
            if backend
                .raft
                .transfer_leader(status.shard, preferred)
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::preferred_leader;

    #[test]
    fn shards_spread_round_robin() {
        let nodes = [1, 2, 3];
        let picks: Vec<_> = (0..6).filter_map(|s| preferred_leader(s, &nodes)).collect();
        assert_eq!(picks, vec![1, 2, 3, 1, 2, 3]);
        assert_eq!(preferred_leader(0, &[]), None);
    }
}
