//! The router's [`Backend`] on this node: raft for ordering and read
//! barriers, the store for data.

use std::sync::Arc;

use bytes::Bytes;
use elastickv_raft::{ProposeError, RaftHandle};
use elastickv_redis::keyspace::KeyCounts;
use elastickv_redis::replicated::Replicated;
use elastickv_resp::Reply;
use elastickv_router::{Backend, ReplyFuture, ShardView};
use elastickv_store::Store;

use crate::clock::{ProposalClock, wall_ms};
use crate::keyspace::ReadView;

pub struct NodeBackend {
    pub raft: RaftHandle<Reply>,
    pub store: Store,
    pub shards: u32,
    pub clock: Arc<ProposalClock>,
}

/// The client-visible form of a raft refusal.
pub fn propose_error_reply(e: ProposeError) -> Reply {
    match e {
        ProposeError::NotLeader {
            shard,
            leader: None,
        } => Reply::error(format!("CLUSTERDOWN shard {shard} has no leader")),
        ProposeError::NotLeader {
            shard,
            leader: Some(leader),
        } => Reply::error(format!(
            "TRYAGAIN shard {shard} is led by node {leader}, not this node"
        )),
        ProposeError::Dropped { shard } => Reply::error(format!(
            "TRYAGAIN leadership of shard {shard} changed; the command may not have been applied"
        )),
        ProposeError::UnknownShard(shard) => Reply::error(format!("ERR unknown shard {shard}")),
        ProposeError::Stopped => Reply::static_error("ERR server is shutting down"),
    }
}

impl Backend for NodeBackend {
    fn shard_count(&self) -> u32 {
        self.shards
    }

    fn now_ms(&self) -> u64 {
        wall_ms()
    }

    async fn read_barrier(&self, shard: u32) -> Result<(), Reply> {
        self.raft
            .read_barrier(shard)
            .await
            .map_err(propose_error_reply)
    }

    fn with_view<T>(&self, _shard: u32, snapshot: bool, f: impl FnOnce(&dyn ShardView) -> T) -> T {
        let reader = if snapshot {
            self.store.snapshot_reader()
        } else {
            self.store.reader()
        };
        f(&ReadView { reader })
    }

    fn key_counts(&self, shard: u32) -> KeyCounts {
        match self.store.load_apply_state(shard) {
            Ok(state) => KeyCounts {
                keys: state.keys,
                expires: state.expires,
            },
            Err(e) => {
                tracing::error!(shard_id = shard, error = %e, "cannot read apply state");
                KeyCounts::default()
            }
        }
    }

    async fn submit(&self, shard: u32, args: Vec<Bytes>) -> ReplyFuture {
        let payload = Replicated::command(self.clock.now_ms(), args).to_bytes();
        match self.raft.submit(shard, payload).await {
            Ok(done) => Box::pin(async move { done.await.unwrap_or_else(propose_error_reply) }),
            Err(e) => Box::pin(std::future::ready(propose_error_reply(e))),
        }
    }
}
