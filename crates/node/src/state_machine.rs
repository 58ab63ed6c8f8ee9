//! A shard's state machine: raft log payloads applied as Redis commands.

use elastickv_raft::StateMachine;
use elastickv_redis::replicated;
use elastickv_resp::Reply;
use elastickv_store::{ApplyBatch, StoreError};

use crate::keyspace::ApplyKeyspace;

pub struct ShardMachine {
    shards: u32,
}

impl ShardMachine {
    pub fn new(shards: u32) -> ShardMachine {
        ShardMachine { shards }
    }
}

impl StateMachine for ShardMachine {
    type Output = Reply;

    fn apply(
        &mut self,
        batch: &mut ApplyBatch,
        _index: u64,
        data: &[u8],
    ) -> Result<Reply, StoreError> {
        let shard = batch.shard();
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
