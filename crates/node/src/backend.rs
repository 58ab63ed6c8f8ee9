//! The router's [`Backend`] on this node: raft for ordering and read
//! barriers, the store for data, and forwarding of writes to the node that
//! leads their shard.
//!
//! Writes: on the shard's leader they are proposed here; elsewhere they are
//! forwarded over gRPC and the leader's reply is relayed unchanged. A
//! forwarded write carries a request id, so when its outcome is unknown (a
//! timeout, a lost connection) it is retried safely: the state machine
//! answers a repeat with the recorded reply instead of applying it twice.
//! While a shard has no leader, requests wait up to the request timeout and
//! then fail with `-CLUSTERDOWN` (no leader) or `-TRYAGAIN` (leader
//! unreachable).
//!
//! Every write carries a request id (this process's origin and a sequence
//! number), the same on every attempt, so the state machine applies it at
//! most once however many times it is sent.
//!
//! Reads judge expiry by the shard's replicated clock; when this node's
//! clock says a key is due that the shard clock does not, the backend moves
//! the shard clock up to the leader's with a tick through the log
//! ([`Backend::advance_clock`]), coalescing concurrent requests per shard.
//!
//! A connection's writes keep their order: before the connection's next
//! command starts, a local write is queued for proposal and a forwarded
//! write is put on the leader's forwarding stream, where the leader queues
//! it in arrival order; the replies are awaited afterwards, so pipelined
//! writes are replicated together. One exception: writes that were queued
//! but never appended because leadership moved (a refused proposal, a
//! forward answered "not leader") or whose stream failed are resent, each
//! from its own reply future; several of them from one pipeline are resent
//! concurrently and may apply in a different order than pipelined.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use elastickv_raft::{ProposeError, RaftHandle, Role};
use elastickv_redis::keyspace::KeyCounts;
use elastickv_redis::log::{self, LogEntry};
use elastickv_redis::replicated::{decode_reply, encode_reply};
use elastickv_resp::Reply;
use elastickv_router::{Backend, ReplyFuture, ShardView};
use elastickv_store::Store;
use elastickv_transport::{
    ForwardClient, ForwardHandler, ForwardOutcome, MAX_ENTRY_BYTES, OutcomeFuture,
};
use rand::Rng;

use crate::clock::{ProposalClock, wall_ms};
use crate::keyspace::ReadView;

/// Pause between attempts while a shard has no reachable leader.
const RETRY_PAUSE: Duration = Duration::from_millis(25);

pub struct NodeBackend {
    pub node_id: u64,
    pub raft: RaftHandle<Reply>,
    pub store: Store,
    pub shards: u32,
    writes: Arc<WritePath>,
    /// Per shard: when the last clock advance that completed was proposed.
    /// Held while an advance is in flight, so concurrent readers share it.
    clock_advances: BTreeMap<u32, tokio::sync::Mutex<Option<Instant>>>,
}

impl NodeBackend {
    /// The clock that stamps this node's proposals.
    pub fn clock(&self) -> &ProposalClock {
        &self.writes.clock
    }

    /// A timestamp for a proposal to `shard` from this node.
    pub fn stamp(&self, shard: u32) -> u64 {
        stamp(&self.raft, &self.writes.clock, shard)
    }

    pub fn new(
        node_id: u64,
        raft: RaftHandle<Reply>,
        store: Store,
        shards: u32,
        clock: Arc<ProposalClock>,
        forward: ForwardClient,
        request_timeout: Duration,
    ) -> NodeBackend {
        NodeBackend {
            node_id,
            raft: raft.clone(),
            store,
            shards,
            writes: Arc::new(WritePath {
                node_id,
                raft,
                clock,
                forward,
                request_timeout,
                // Nonzero, and new for every process: request ids from
                // before a restart cannot collide with later ones.
                origin: rand::thread_rng().gen_range(1..u64::MAX),
                next_seq: AtomicU64::new(1),
            }),
            clock_advances: (0..shards)
                .map(|shard| (shard, tokio::sync::Mutex::new(None)))
                .collect(),
        }
    }
}

/// Gets a write applied by its shard's leader, wherever that is.
struct WritePath {
    node_id: u64,
    raft: RaftHandle<Reply>,
    clock: Arc<ProposalClock>,
    forward: ForwardClient,
    /// How long a request may wait for its shard to have a reachable
    /// leader.
    request_timeout: Duration,
    /// This process's request id origin, and the next sequence number.
    origin: u64,
    next_seq: AtomicU64,
}

/// A timestamp for a proposal to `shard`: this node's clock, but never
/// below the shard clock it has applied.
fn stamp(raft: &RaftHandle<Reply>, clock: &ProposalClock, shard: u32) -> u64 {
    clock.stamp(raft.shard_status(shard).map_or(0, |s| s.applied_time_ms))
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
        ProposeError::ChangeInProgress { shard } => Reply::error(format!(
            "TRYAGAIN shard {shard} has a membership change in progress"
        )),
    }
}

fn too_large(len: usize) -> Reply {
    Reply::error(format!(
        "ERR command too large to replicate ({len} bytes; the limit is {MAX_ENTRY_BYTES})"
    ))
}

/// A write proposed here whose fate was not known within the request
/// timeout (this node lost touch with the rest of the cluster).
fn unknown_outcome(shard: u32) -> Reply {
    Reply::error(format!(
        "TRYAGAIN shard {shard}: the write was not confirmed within the request timeout; \
         it may or may not have been applied"
    ))
}

fn ready(reply: Reply) -> ReplyFuture {
    Box::pin(std::future::ready(reply))
}

impl WritePath {
    fn leader_of(&self, shard: u32) -> (Role, u64) {
        self.raft
            .shard_status(shard)
            .map_or((Role::Follower, 0), |s| (s.role, s.leader))
    }

    /// The error for a request that ran out of time.
    fn gave_up(&self, shard: u32, last_error: Option<String>) -> Reply {
        let (_, leader) = self.leader_of(shard);
        match (leader, last_error) {
            (0, _) => Reply::error(format!("CLUSTERDOWN shard {shard} has no leader")),
            (leader, Some(why)) => Reply::error(format!(
                "TRYAGAIN shard {shard} leader (node {leader}) did not answer: {why}"
            )),
            (leader, None) => Reply::error(format!(
                "TRYAGAIN shard {shard} leader (node {leader}) did not answer in time"
            )),
        }
    }
}

impl Backend for NodeBackend {
    fn shard_count(&self) -> u32 {
        self.shards
    }

    fn now_ms(&self) -> u64 {
        wall_ms()
    }

    async fn read_barrier(&self, shard: u32) -> Result<u64, Reply> {
        let deadline = Instant::now() + self.writes.request_timeout;
        loop {
            match self.raft.read_barrier(shard).await {
                Ok(point) => return Ok(point.time_ms),
                Err(ProposeError::NotLeader { .. } | ProposeError::Dropped { .. }) => {
                    if Instant::now() >= deadline {
                        return Err(self.writes.gave_up(shard, None));
                    }
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(e) => return Err(propose_error_reply(e)),
            }
        }
    }

    async fn advance_clock(&self, shard: u32, asked_at: Instant) -> Result<u64, Reply> {
        let Some(gate) = self.clock_advances.get(&shard) else {
            return Err(propose_error_reply(ProposeError::UnknownShard(shard)));
        };
        let mut last = gate.lock().await;
        // An advance proposed after this reader asked already did the job.
        if last.is_none_or(|proposed| proposed < asked_at) {
            let proposed = Instant::now();
            let deadline = proposed + self.writes.request_timeout;
            let reply = self
                .writes
                .execute(shard, LogEntry::tick(0), deadline)
                .await;
            if reply.is_error() {
                return Err(reply);
            }
            *last = Some(proposed);
        }
        drop(last);
        self.read_barrier(shard).await
    }

    fn with_view<T>(&self, shard: u32, snapshot: bool, f: impl FnOnce(&dyn ShardView) -> T) -> T {
        let reader = self.store.shard_reader(shard, snapshot);
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

    async fn submit(&self, shard: u32, write: log::Write) -> ReplyFuture {
        // One request id for every attempt: whatever happened to an
        // earlier one, the write applies at most once.
        let entry = self.writes.retryable(write);
        self.submit_entry(shard, entry).await
    }

    async fn submit_transaction(&self, shard: u32, transaction: log::Transaction) -> ReplyFuture {
        let seq = self.writes.next_seq.fetch_add(1, Ordering::Relaxed);
        let entry = LogEntry::transaction(transaction, self.writes.origin, seq);
        self.submit_entry(shard, entry).await
    }

    async fn submit_scripts(&self, change: log::ScriptsChange) -> ReplyFuture {
        let seq = self.writes.next_seq.fetch_add(1, Ordering::Relaxed);
        let entry = LogEntry::scripts(change, self.writes.origin, seq);
        self.submit_entry(0, entry).await
    }
}

impl NodeBackend {
    /// Proposes `entry` (a write or a transaction with its request id) on
    /// `shard`: here if this node leads it, else through the leader.
    async fn submit_entry(&self, shard: u32, entry: LogEntry) -> ReplyFuture {
        let writes = &self.writes;
        let deadline = Instant::now() + writes.request_timeout;
        if writes.leader_of(shard).0 == Role::Leader {
            // Queued now, before the connection's next command starts, so
            // a pipeline's writes are proposed in order; awaited later.
            match writes.propose_here(shard, &entry).await {
                Ok(done) => {
                    let writes = writes.clone();
                    return Box::pin(async move {
                        // An isolated leader learns its entries' fate only
                        // when it hears from the cluster again.
                        let Ok(done) = tokio::time::timeout_at(deadline.into(), done).await else {
                            return unknown_outcome(shard);
                        };
                        match done {
                            // Refused before it was appended, or appended
                            // and then overtaken by a leadership change:
                            // sent again with its request id, it applies
                            // once and answers with the one outcome.
                            Err(ProposeError::NotLeader { .. } | ProposeError::Dropped { .. }) => {
                                writes.execute(shard, entry, deadline).await
                            }
                            done => done.unwrap_or_else(propose_error_reply),
                        }
                    });
                }
                Err(Refused::NotLeader) => {}
                Err(Refused::Reply(reply)) => return ready(reply),
            }
        }
        let (_, leader) = writes.leader_of(shard);
        if leader != 0 && leader != writes.node_id {
            let payload = entry.to_bytes();
            if payload.len() > MAX_ENTRY_BYTES {
                return ready(too_large(payload.len()));
            }
            // On the leader's stream now, in the connection's order;
            // answered later.
            let sent = Instant::now();
            if let Ok(answer) = writes.forward.submit(leader, shard, payload).await {
                let writes = writes.clone();
                return Box::pin(async move {
                    match tokio::time::timeout_at(deadline.into(), answer).await {
                        Ok(Ok(ForwardOutcome::Reply(bytes))) => {
                            crate::metrics::forwarded(shard, sent.elapsed());
                            decode_forwarded(&bytes)
                        }
                        Err(_elapsed) => unknown_outcome(shard),
                        // Not applied, or not known to be: send it again
                        // with the same request id.
                        Ok(_) => writes.execute(shard, entry, deadline).await,
                    }
                });
            }
        }
        ready(writes.execute(shard, entry, deadline).await)
    }
}

impl WritePath {
    /// `write` as an entry with a fresh request id, so that sending it
    /// again applies it at most once.
    fn retryable(&self, write: log::Write) -> LogEntry {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        LogEntry::write(write, self.origin, seq)
    }
}

fn decode_forwarded(bytes: &[u8]) -> Reply {
    decode_reply(bytes)
        .unwrap_or_else(|| Reply::static_error("ERR undecodable reply from the shard leader"))
}

/// Why a write was not queued on this node.
enum Refused {
    /// This node does not lead the shard (any more).
    NotLeader,
    /// A final answer for the client.
    Reply(Reply),
}

impl WritePath {
    /// Queues `entry` as a proposal of this node (the shard's leader).
    async fn propose_here(
        &self,
        shard: u32,
        entry: &LogEntry,
    ) -> Result<impl Future<Output = Result<Reply, ProposeError>> + Send + 'static, Refused> {
        let mut entry = entry.clone();
        entry.timestamp_ms = stamp(&self.raft, &self.clock, shard);
        let payload = entry.to_bytes();
        if payload.len() > MAX_ENTRY_BYTES {
            return Err(Refused::Reply(too_large(payload.len())));
        }
        match self.raft.submit(shard, payload).await {
            Ok(done) => Ok(done),
            Err(ProposeError::NotLeader { .. }) => Err(Refused::NotLeader),
            Err(e) => Err(Refused::Reply(propose_error_reply(e))),
        }
    }

    /// Gets `entry` applied: proposed here while this node leads the
    /// shard, forwarded to the leader otherwise, sent again (with its one
    /// request id, so it applies once) until it is done or `deadline`
    /// passes.
    async fn execute(&self, shard: u32, entry: LogEntry, deadline: Instant) -> Reply {
        let mut last_error = None;
        loop {
            let (role, leader) = self.leader_of(shard);
            if role == Role::Leader {
                let mut entry = entry.clone();
                entry.timestamp_ms = stamp(&self.raft, &self.clock, shard);
                let payload = entry.to_bytes();
                if payload.len() > MAX_ENTRY_BYTES {
                    return too_large(payload.len());
                }
                let proposed =
                    tokio::time::timeout_at(deadline.into(), self.raft.propose(shard, payload));
                match proposed.await {
                    Ok(Ok(reply)) => return reply,
                    Ok(Err(ProposeError::NotLeader { .. })) => {}
                    Ok(Err(e @ ProposeError::Dropped { .. })) => last_error = Some(e.to_string()),
                    Ok(Err(e)) => return propose_error_reply(e),
                    Err(_elapsed) => return unknown_outcome(shard),
                }
            } else if leader != 0 && leader != self.node_id {
                let payload = entry.to_bytes();
                if payload.len() > MAX_ENTRY_BYTES {
                    return too_large(payload.len());
                }
                let answer = match self.forward.submit(leader, shard, payload).await {
                    Ok(answer) => tokio::time::timeout_at(deadline.into(), answer).await,
                    Err(e) => Ok(Err(e)),
                };
                match answer {
                    Ok(Ok(ForwardOutcome::Reply(bytes))) => return decode_forwarded(&bytes),
                    Ok(Ok(ForwardOutcome::NotLeader(_))) => {
                        last_error = Some("leadership moved".into())
                    }
                    Ok(Ok(ForwardOutcome::Retry(why))) => last_error = Some(why),
                    Ok(Err(e)) => last_error = Some(e.to_string()),
                    Err(_elapsed) => return unknown_outcome(shard),
                }
            }
            if Instant::now() >= deadline {
                return self.gave_up(shard, last_error);
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
}

/// Executes writes other nodes forward to this one.
pub struct ForwardExecutor {
    pub raft: RaftHandle<Reply>,
    pub clock: Arc<ProposalClock>,
}

#[elastickv_transport::async_trait]
impl ForwardHandler for ForwardExecutor {
    async fn submit(&self, shard: u32, payload: Bytes) -> OutcomeFuture {
        let finished =
            |outcome: ForwardOutcome| -> OutcomeFuture { Box::pin(std::future::ready(outcome)) };
        // Checked before it reaches the log: an entry this node could not
        // apply (say, from a newer version) is refused here, not in apply.
        let mut entry = match LogEntry::from_bytes(&payload) {
            Ok(entry) => entry,
            Err(why) => {
                return finished(ForwardOutcome::Reply(encode_reply(&Reply::error(format!(
                    "ERR malformed forwarded command: {why}"
                )))));
            }
        };
        match self.raft.shard_status(shard) {
            Some(status) if status.role == Role::Leader => {}
            Some(status) => return finished(ForwardOutcome::NotLeader(status.leader)),
            None => {
                return finished(ForwardOutcome::Reply(encode_reply(&Reply::error(format!(
                    "ERR unknown shard {shard}"
                )))));
            }
        }
        // The leader's clock stamps every entry it proposes.
        entry.timestamp_ms = stamp(&self.raft, &self.clock, shard);
        let not_leader = |leader: Option<u64>| ForwardOutcome::NotLeader(leader.unwrap_or(0));
        match self.raft.submit(shard, entry.to_bytes()).await {
            Ok(done) => Box::pin(async move {
                match done.await {
                    Ok(reply) => ForwardOutcome::Reply(encode_reply(&reply)),
                    Err(ProposeError::NotLeader { leader, .. }) => not_leader(leader),
                    Err(e @ (ProposeError::Dropped { .. } | ProposeError::Stopped)) => {
                        ForwardOutcome::Retry(e.to_string())
                    }
                    Err(e) => ForwardOutcome::Reply(encode_reply(&propose_error_reply(e))),
                }
            }),
            Err(ProposeError::NotLeader { leader, .. }) => finished(not_leader(leader)),
            Err(e @ ProposeError::Stopped) => finished(ForwardOutcome::Retry(e.to_string())),
            Err(e) => finished(ForwardOutcome::Reply(encode_reply(&propose_error_reply(e)))),
        }
    }
}

/// Stages snapshots other nodes send and hands them to raft.
pub struct SnapshotReceiver {
    pub raft: RaftHandle<Reply>,
    pub store: Store,
    pub shards: u32,
    /// A node waiting to be added adopts its cluster's id from the first
    /// snapshot it takes.
    pub cluster: elastickv_transport::ClusterIdentity,
}

impl elastickv_transport::SnapshotSink for SnapshotReceiver {
    fn stage(
        &self,
        shard: u32,
        msg: &raft::prelude::Message,
    ) -> Result<elastickv_store::SnapshotStager, String> {
        if shard >= self.shards {
            return Err(format!("unknown shard {shard}"));
        }
        let meta = msg.get_snapshot().get_metadata();
        self.store
            .stage_snapshot(
                crate::state_machine::shard_ranges(shard, self.shards),
                meta.index,
                meta.term,
            )
            .map_err(|e| e.to_string())
    }

    fn deliver(
        &self,
        shard: u32,
        msg: raft::prelude::Message,
        cluster: Option<u64>,
    ) -> Result<(), String> {
        if self.cluster.get().is_none() {
            let Some(id) = cluster else {
                return Err("the sender did not say which cluster it belongs to".into());
            };
            self.store
                .record_cluster_id(id)
                .map_err(|e| format!("cannot record the cluster id: {e}"))?;
            self.cluster.adopt(id);
            tracing::info!(
                cluster_id = %elastickv_transport::format_cluster_id(id),
                "joined the cluster (first snapshot received)"
            );
        }
        let meta = msg.get_snapshot().get_metadata();
        let (index, term) = (meta.index, meta.term);
        self.raft.step(shard, msg).map_err(|e| {
            // Never handed to raft: the sender retries with a new transfer.
            self.store.discard_staged(shard, index, term);
            e.to_string()
        })
    }
}
