//! A shard's state machine: raft log payloads applied as Redis commands.

use elastickv_raft::StateMachine;
use elastickv_redis::replicated::{self, DEDUP_WINDOW_MS, Replicated};
use elastickv_resp::Reply;
use elastickv_store::{ApplyBatch, ShardId, ShardRanges, StoreError};

use crate::keyspace::ApplyKeyspace;

/// Every this many applied entries, request records older than the dedup
/// window (by that entry's timestamp) are deleted. Tied to the log index,
/// so all replicas purge alike.
const DEDUP_PURGE_EVERY: u64 = 4096;

pub struct ShardMachine {
    shards: u32,
}

impl ShardMachine {
    pub fn new(shards: u32) -> ShardMachine {
        ShardMachine { shards }
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
        if index.is_multiple_of(DEDUP_PURGE_EVERY)
            && let Some(entry) = Replicated::from_bytes(data)
        {
            batch.purge_dedup(entry.timestamp_ms.saturating_sub(DEDUP_WINDOW_MS))?;
        }
        let mut keyspace = ApplyKeyspace::new(batch, self.shards);
        let reply = replicated::apply(&mut keyspace, data);
        keyspace.finish();
        reply.map_err(|e| StoreError::Corrupt {
            what: "shard data",
            shard,
            detail: e.to_string(),
        })
    }
}
