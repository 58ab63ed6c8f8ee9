//! The engine's outbound side. Sending must never block the raft thread:
//! implementations queue or drop, and count what they drop.

use elastickv_store::ShardId;
use raft::prelude::Message;

/// Delivers raft messages to other nodes.
pub trait Transport: Send + 'static {
    /// Queues `msgs` of `shard` for their destinations without blocking.
    fn send(&mut self, shard: ShardId, msgs: Vec<Message>);
}

/// The transport of a node that has no peers (a single-node cluster). A
/// single-voter group never addresses anyone else, so a message here means
/// a misconfiguration; it is counted and dropped.
#[derive(Debug, Default)]
pub struct NoPeers;

impl Transport for NoPeers {
    fn send(&mut self, shard: ShardId, msgs: Vec<Message>) {
        for msg in msgs {
            crate::metrics::dropped_message(shard, msg.to, "no_route");
            tracing::warn!(
                shard_id = shard,
                to = msg.to,
                "no route to raft peer; message dropped"
            );
        }
    }
}
