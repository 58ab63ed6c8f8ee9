//! A shard's state machine: raft log payloads applied as Redis commands.

use elastickv_raft::StateMachine;
use elastickv_redis::replicated::{self, ApplyError};
use elastickv_resp::Reply;
use elastickv_store::{ApplyBatch, ShardId, ShardRanges, StoreError};

use std::sync::Arc;

use crate::keyspace::ApplyKeyspace;
use crate::pubsub::PubSub;
use crate::waiters::KeyWaiters;

pub struct ShardMachine {
    shards: u32,
    waiters: Arc<KeyWaiters>,
    pubsub: Arc<PubSub>,
}

impl ShardMachine {
    pub fn new(shards: u32, waiters: Arc<KeyWaiters>, pubsub: Arc<PubSub>) -> ShardMachine {
        ShardMachine {
            shards,
            waiters,
            pubsub,
        }
    }
}

/// The slots shard `shard` of `shards` owns.
pub fn shard_ranges(shard: ShardId, shards: u32) -> ShardRanges {
    let (first_slot, end_slot) = elastickv_router::slot_range(shard, shards);
    ShardRanges {
        shard,
        first_slot,
        end_slot,
    }
}

impl StateMachine for ShardMachine {
    type Output = Reply;

    fn ranges(&self, shard: ShardId) -> ShardRanges {
        shard_ranges(shard, self.shards)
    }

    fn apply(
        &mut self,
        batch: &mut ApplyBatch,
        index: u64,
        data: &[u8],
    ) -> Result<Reply, StoreError> {
        let shard = batch.shard();
        let mut keyspace = ApplyKeyspace::new(batch, self.shards, index)
            .with_waiters(&self.waiters)
            .with_pubsub(&self.pubsub);
        let reply = replicated::apply(&mut keyspace, index, data);
        keyspace.finish();
        reply.map_err(|e| match e {
            ApplyError::Storage(e) => StoreError::Corrupt {
                what: "shard data",
                shard,
                detail: e.to_string(),
            },
            unreadable @ ApplyError::Unreadable { .. } => StoreError::Corrupt {
                what: "raft log",
                shard,
                detail: unreadable.to_string(),
            },
        })
    }
}
