//! Engine errors. "Retry later" conditions (not leader, dropped by a
//! leadership change, queue full) are kept apart from fatal ones (storage).

use elastickv_store::{ShardId, StoreError};
use thiserror::Error;

/// Why a proposal or read did not complete. All are retryable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProposeError {
    #[error("this node is not the leader of shard {shard}")]
    NotLeader {
        shard: ShardId,
        /// The leader this node knows of, if any.
        leader: Option<u64>,
    },
    #[error("leadership of shard {shard} changed before the request committed")]
    Dropped { shard: ShardId },
    #[error("shard {0} does not exist")]
    UnknownShard(ShardId),
    #[error("the raft engine has stopped")]
    Stopped,
    #[error("shard {shard} has a membership change in progress")]
    ChangeInProgress { shard: ShardId },
}

/// Why an inbound raft message was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StepError {
    #[error("step queue of shard {shard} is full ({capacity} messages)")]
    QueueFull { shard: ShardId, capacity: usize },
    #[error("shard {0} does not exist")]
    UnknownShard(ShardId),
    #[error("the raft engine has stopped")]
    Stopped,
}

/// A failure that stops the raft thread, and with it every shard of the
/// node: the replica can no longer be trusted to follow the log (raft-rs
/// treats storage errors the same way). The node exits; see
/// [`crate::RaftHandle::stopped`].
#[derive(Debug, Error)]
pub enum EngineError {
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("cannot start the raft thread: {0}")]
    Spawn(#[from] std::io::Error),
    #[error("corrupt log entry {index} of shard {shard}: {detail}")]
    CorruptEntry {
        shard: ShardId,
        index: u64,
        detail: String,
    },
    /// What stopped the raft thread, and which shard hit it.
    #[error("shard {shard}: {source}")]
    Shard {
        shard: ShardId,
        source: Box<EngineError>,
    },
}

impl EngineError {
    /// This error, as hit while running `shard`.
    pub(crate) fn in_shard(self, shard: ShardId) -> EngineError {
        match self {
            already @ EngineError::Shard { .. } => already,
            source => EngineError::Shard {
                shard,
                source: Box::new(source),
            },
        }
    }
}
