//! Outbound raft messages, queued per destination node in bounded lanes.
//!
//! Every shard's engine has, for each peer, a normal lane holding at most
//! MaxInflightMsgs messages (appends and their responses, snapshots) and a
//! small priority lane (heartbeats, votes, ReadIndex, leader transfer), so
//! elections and lease confirmation never wait behind a backlog of appends.
//! The raft thread only ever `try_send`s into a lane: a full lane refuses
//! the message at once, and the engine reports the peer unreachable (or the
//! snapshot failed), which makes raft-rs fall back to probing that peer
//! instead of streaming to it. So a slow or stopped peer costs at most
//! MaxInflightMsgs x MaxSizePerMsg bytes per shard, never unbounded memory.
//!
//! A network layer drains each peer's lanes with [`PeerOutbox::drain`]
//! into size-capped batches, priority lanes first.

use std::collections::BTreeMap;
use std::sync::Arc;

use elastickv_store::ShardId;
use protobuf::Message as _;
use raft::prelude::{Message, MessageType};
use tokio::sync::Notify;

/// Capacity of each priority lane: heartbeats and votes are a handful per
/// election timeout, so this only fills when the peer is gone.
pub const PRIORITY_LANE_CAPACITY: usize = 128;

/// Messages that keep leadership and reads alive and must not queue behind
/// appends.
pub fn is_priority(msg: &Message) -> bool {
    matches!(
        msg.get_msg_type(),
        MessageType::MsgHeartbeat
            | MessageType::MsgHeartbeatResponse
            | MessageType::MsgRequestVote
            | MessageType::MsgRequestVoteResponse
            | MessageType::MsgRequestPreVote
            | MessageType::MsgRequestPreVoteResponse
            | MessageType::MsgReadIndex
            | MessageType::MsgReadIndexResp
            | MessageType::MsgTimeoutNow
            | MessageType::MsgTransferLeader
    )
}

/// Why a message was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The normal lane towards that peer (appends, their responses) is
    /// full.
    LaneFull,
    /// The priority lane towards that peer (heartbeats, votes, ReadIndex,
    /// transfers) is full.
    PriorityLaneFull,
    /// No such peer is configured.
    NoRoute,
}

impl Refusal {
    pub fn as_str(&self) -> &'static str {
        match self {
            Refusal::LaneFull => "lane_full",
            Refusal::PriorityLaneFull => "priority_lane_full",
            Refusal::NoRoute => "no_route",
        }
    }
}

struct ShardLanes {
    normal_tx: flume::Sender<Message>,
    normal_rx: flume::Receiver<Message>,
    priority_tx: flume::Sender<Message>,
    priority_rx: flume::Receiver<Message>,
}

/// Everything queued for one peer node, over all shards.
pub struct PeerOutbox {
    node: u64,
    shards: Vec<ShardLanes>,
    ready: Notify,
    /// A message taken from a lane that did not fit the last batch; it
    /// opens the next one, so its lane's order is kept.
    carry: parking_lot::Mutex<Option<Outbound>>,
    /// Messages refused because a lane towards this peer was full.
    refused: std::sync::atomic::AtomicU64,
}

/// A message for the wire: which shard it belongs to, and the message.
pub type Outbound = (ShardId, Message);

impl PeerOutbox {
    pub fn node(&self) -> u64 {
        self.node
    }

    /// Resolves when something may have been queued since the last drain.
    pub async fn wait(&self) {
        self.ready.notified().await;
    }

    /// Takes queued messages, priority lanes of every shard first, until
    /// about `max_bytes` are taken (at least one message if any is
    /// queued). Returns an empty batch when nothing is queued. Meant for
    /// one drainer per peer.
    pub fn drain(&self, max_bytes: usize) -> Vec<Outbound> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut carry = self.carry.lock();
        if let Some((shard, msg)) = carry.take() {
            bytes += msg.compute_size() as usize;
            out.push((shard, msg));
        }
        for normal in [false, true] {
            // Round-robin over shards so one busy shard cannot hold the
            // others back within a batch.
            let mut progress = true;
            while progress {
                progress = false;
                for (shard, lanes) in self.shards.iter().enumerate() {
                    let rx = if normal {
                        &lanes.normal_rx
                    } else {
                        &lanes.priority_rx
                    };
                    let Ok(msg) = rx.try_recv() else {
                        continue;
                    };
                    let size = msg.compute_size() as usize;
                    if !out.is_empty() && bytes + size > max_bytes {
                        *carry = Some((shard as ShardId, msg));
                        return out;
                    }
                    bytes += size;
                    out.push((shard as ShardId, msg));
                    progress = true;
                }
            }
        }
        out
    }

    /// Messages refused so far because a lane towards this peer was full.
    pub fn refused(&self) -> u64 {
        self.refused.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Messages queued right now (for tests and metrics).
    pub fn queued(&self) -> usize {
        let carried = usize::from(self.carry.lock().is_some());
        carried
            + self
                .shards
                .iter()
                .map(|l| l.normal_rx.len() + l.priority_rx.len())
                .sum::<usize>()
    }
}

/// Outbound lanes of this node: one [`PeerOutbox`] per peer. Peers can be
/// added while running (a node joined a shard).
pub struct Outbox {
    peers: parking_lot::RwLock<BTreeMap<u64, Arc<PeerOutbox>>>,
    normal_capacities: Vec<usize>,
}

impl Outbox {
    /// Lanes towards each of `peers` for shards `0..normal_capacities.len()`,
    /// shard `s`'s normal lanes holding `normal_capacities[s]` messages.
    pub fn new(peers: &[u64], normal_capacities: &[usize]) -> Outbox {
        let outbox = Outbox {
            peers: parking_lot::RwLock::new(BTreeMap::new()),
            normal_capacities: normal_capacities.to_vec(),
        };
        for &node in peers {
            outbox.add_peer(node);
        }
        outbox
    }

    /// Creates `node`'s lanes; returns them if they are new.
    pub fn add_peer(&self, node: u64) -> Option<Arc<PeerOutbox>> {
        if self.peers.read().contains_key(&node) {
            return None;
        }
        let shards = self
            .normal_capacities
            .iter()
            .map(|&capacity| {
                let (normal_tx, normal_rx) = flume::bounded(capacity.max(1));
                let (priority_tx, priority_rx) = flume::bounded(PRIORITY_LANE_CAPACITY);
                ShardLanes {
                    normal_tx,
                    normal_rx,
                    priority_tx,
                    priority_rx,
                }
            })
            .collect();
        let lanes = Arc::new(PeerOutbox {
            node,
            shards,
            ready: Notify::new(),
            carry: parking_lot::Mutex::new(None),
            refused: std::sync::atomic::AtomicU64::new(0),
        });
        let mut peers = self.peers.write();
        if peers.contains_key(&node) {
            return None;
        }
        peers.insert(node, lanes.clone());
        Some(lanes)
    }

    /// Queues `msg` (addressed to `msg.to`) without blocking. A refused
    /// message is handed back so the engine can tell raft what was lost.
    #[allow(clippy::result_large_err)] // not boxed: the refusal path is the overload path
    pub fn send(&self, shard: ShardId, msg: Message) -> Result<(), (Message, Refusal)> {
        let peers = self.peers.read();
        let Some(peer) = peers.get(&msg.to) else {
            return Err((msg, Refusal::NoRoute));
        };
        let Some(lanes) = peer.shards.get(shard as usize) else {
            return Err((msg, Refusal::NoRoute));
        };
        let (tx, full) = if is_priority(&msg) {
            (&lanes.priority_tx, Refusal::PriorityLaneFull)
        } else {
            (&lanes.normal_tx, Refusal::LaneFull)
        };
        match tx.try_send(msg) {
            Ok(()) => {
                peer.ready.notify_one();
                Ok(())
            }
            Err(flume::TrySendError::Full(msg) | flume::TrySendError::Disconnected(msg)) => {
                peer.refused
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Err((msg, full))
            }
        }
    }

    pub fn peer(&self, node: u64) -> Option<Arc<PeerOutbox>> {
        self.peers.read().get(&node).cloned()
    }

    pub fn peers(&self) -> Vec<Arc<PeerOutbox>> {
        self.peers.read().values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(to: u64, kind: MessageType, payload: usize) -> Message {
        let mut m = Message {
            to,
            context: vec![0u8; payload].into(),
            ..Default::default()
        };
        m.set_msg_type(kind);
        m
    }

    #[test]
    fn full_normal_lane_refuses_but_priority_still_flows() {
        let outbox = Outbox::new(&[2, 3], &[4, 4]);
        for _ in 0..4 {
            outbox.send(0, msg(2, MessageType::MsgAppend, 10)).unwrap();
        }
        let (refused, why) = outbox
            .send(0, msg(2, MessageType::MsgAppend, 10))
            .unwrap_err();
        assert_eq!(why, Refusal::LaneFull);
        assert_eq!(refused.to, 2);
        // Other shards and other peers are unaffected.
        outbox.send(1, msg(2, MessageType::MsgAppend, 10)).unwrap();
        outbox.send(0, msg(3, MessageType::MsgAppend, 10)).unwrap();
        // Heartbeats have their own lane.
        outbox
            .send(0, msg(2, MessageType::MsgHeartbeat, 0))
            .unwrap();
        assert_eq!(
            outbox
                .send(0, msg(9, MessageType::MsgHeartbeat, 0))
                .unwrap_err()
                .1,
            Refusal::NoRoute
        );
        let peer = outbox.peer(2).unwrap();
        assert_eq!(peer.queued(), 6);
        let batch = peer.drain(usize::MAX);
        assert_eq!(batch.len(), 6);
        assert_eq!(
            batch[0].1.get_msg_type(),
            MessageType::MsgHeartbeat,
            "priority first"
        );
        assert_eq!(peer.queued(), 0);
    }

    #[test]
    fn drain_respects_the_byte_cap_and_keeps_order() {
        let outbox = Outbox::new(&[2], &[100]);
        for i in 0..10u64 {
            let mut m = msg(2, MessageType::MsgAppend, 1000);
            m.index = i;
            outbox.send(0, m).unwrap();
        }
        let peer = outbox.peer(2).unwrap();
        let mut seen = Vec::new();
        loop {
            let batch = peer.drain(3000);
            if batch.is_empty() {
                break;
            }
            let bytes: usize = batch.iter().map(|(_, m)| m.compute_size() as usize).sum();
            assert!(batch.len() == 1 || bytes <= 3000, "{bytes}");
            seen.extend(batch.into_iter().map(|(_, m)| m.index));
        }
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        // A single message larger than the cap still goes, alone.
        outbox
            .send(0, msg(2, MessageType::MsgAppend, 10_000))
            .unwrap();
        assert_eq!(peer.drain(3000).len(), 1);
    }
}
