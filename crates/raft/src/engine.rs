//! One shard's raft replica on this node: the `RawNode`, its pending
//! proposals and reads, and the state machine it applies to.
//!
//! The worker thread drives every engine through the raft-rs `Ready`
//! cycle in two phases, so that one synced write covers all shards:
//!
//! 1. [`ShardEngine::ready_phase_a`]: messages a leader may send before
//!    persisting, committed entries (applied now), new entries and hard
//!    state (staged into the round's [`LogBatch`]), read states.
//! 2. the worker writes the batch, synced;
//! 3. [`ShardEngine::ready_phase_b`]: messages that needed the persisted
//!    log, `advance`, the light ready's commit index, messages and
//!    committed entries, `advance_apply`.
//!
//! This is the order the raft-rs crate documentation prescribes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use elastickv_store::{
    ApplyBatch, ApplyState, LogBatch, SLOT_COUNT, ShardId, ShardLog, ShardRanges, ShardSnapshot,
    SnapshotMeta, Store, StoreError,
};
use parking_lot::Mutex;
use protobuf::Message as _;
use raft::prelude::{
    ConfChange, ConfChangeType, ConfChangeV2, Entry, EntryType, Message, MessageType, Ready,
};
use raft::{RawNode, ReadOnlyOption, ReadState, SnapshotStatus, StateRole};
use tokio::sync::oneshot;

use crate::answers::Answer;
use crate::error::{EngineError, ProposeError};
use crate::limits::{InvalidEnv, LimitsConfig, RaftLimits, log_resolution};
use crate::logger::raft_logger;
use crate::mailbox::StepLane;
use crate::metrics;
use crate::outbox::Outbox;
use crate::reads::{ReadPoint, ReadQueue};

/// What a shard replicates. Implemented by the layer above the engine; the
/// engine knows nothing of what the payloads mean.
pub trait StateMachine: Send + 'static {
    type Output: Send + 'static;

    /// Applies one committed entry's payload (never empty), staging its
    /// writes in `batch`. Must be deterministic: every replica applies the
    /// same payloads in the same order and must reach the same state.
    /// An error stops the raft thread (every shard of the node): see
    /// [`crate::EngineError`].
    fn apply(
        &mut self,
        batch: &mut ApplyBatch,
        index: u64,
        data: &[u8],
    ) -> Result<Self::Output, StoreError>;

    /// Where `shard`'s data lives: what a snapshot of it copies and what
    /// installing one replaces. By default every slot (one shard).
    fn ranges(&self, shard: ShardId) -> ShardRanges {
        ShardRanges {
            shard,
            first_slot: 0,
            end_slot: SLOT_COUNT,
        }
    }
}

/// A snapshot for a follower: the raft message announcing it and a
/// point-in-time view of the data, for the network layer to stream.
pub struct SnapshotJob {
    pub shard: ShardId,
    pub to: u64,
    /// The `MsgSnapshot` (metadata and key counts, no data).
    pub message: Message,
    pub data: ShardSnapshot,
}

/// A membership change of one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipChange {
    /// Add `node` as a learner (receives the log, does not vote), reachable
    /// at `raft_addr`.
    AddLearner { node: u64, raft_addr: String },
    /// Make learner `node` a voter.
    Promote { node: u64 },
    /// Remove `node` from the shard.
    Remove { node: u64 },
}

/// A node some shard's configuration now includes, and where to reach it
/// (as given when it was added; may be empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberAdded {
    pub shard: ShardId,
    pub node: u64,
    pub raft_addr: String,
}

pub(crate) type ConfReply = oneshot::Sender<Result<(), ProposeError>>;

/// Snapshots waiting for the network layer, over all shards. Small: each
/// holds a RocksDB snapshot (pinning old data) until sent.
pub const SNAPSHOT_QUEUE_CAPACITY: usize = 8;

/// Static settings shared by every engine on this node.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub node_id: u64,
    /// Ticks without a leader's heartbeat before a follower campaigns.
    pub election_tick: usize,
    /// Ticks between a leader's heartbeats.
    pub heartbeat_tick: usize,
    /// Wall time of one tick.
    pub tick: Duration,
    /// Serve reads on the leader from a lease while it holds; otherwise
    /// every read batch confirms leadership with a ReadIndex round.
    pub lease_reads: bool,
    /// Flow-control and election values from the config file or flags.
    pub limits: LimitsConfig,
    /// Voters of a shard that has never run (every node of a new cluster;
    /// none for a node joining an existing cluster).
    pub initial_voters: Vec<u64>,
    /// Every node this node knows how to reach, itself included: the
    /// outbound lanes exist for these from the start.
    pub known_nodes: Vec<u64>,
    /// Raft threads the shards are spread over (shard `s` on thread
    /// `s % threads`); at least 1, at most one per shard.
    pub threads: usize,
}

impl EngineConfig {
    /// How long a confirmed leadership may be relied on without asking a
    /// quorum again: two ticks short of the shortest election timeout, so
    /// no follower can have started an election within it.
    pub fn lease(&self) -> Option<Duration> {
        let ticks = self.election_tick.saturating_sub(2) as u32;
        (self.lease_reads && ticks > 0).then(|| self.tick * ticks)
    }

    /// A ReadIndex that has not come back by then was lost (the leader
    /// changed or dropped it); its readers are told to retry.
    pub fn read_timeout(&self) -> Duration {
        self.tick * (2 * self.election_tick as u32).max(2)
    }

    /// A follower's ReadIndex unanswered for this long is sent again (it
    /// was lost, or dropped by a leader that had not committed in its
    /// term yet): two heartbeat intervals.
    pub fn read_retry(&self) -> Duration {
        self.tick * (2 * self.heartbeat_tick as u32).max(2)
    }

    /// The other nodes this node sends raft messages to.
    pub fn peers(&self) -> Vec<u64> {
        self.known_nodes
            .iter()
            .chain(&self.initial_voters)
            .copied()
            .filter(|&id| id != self.node_id)
            .collect::<std::collections::BTreeSet<u64>>()
            .into_iter()
            .collect()
    }
}

/// Dropped outbound messages are logged on the first drop towards a peer
/// and then once every this many, so a dead peer cannot flood the log.
const DROP_LOG_EVERY: u64 = 1000;

/// Entries a leader keeps, beyond the usual retention, for live followers
/// that are catching up (see `ShardEngine::maybe_compact`).
pub const CATCH_UP_ENTRIES: u64 = 100_000;

/// A replica that lost its data is told so at most this often.
const LOST_DATA_LOG_EVERY: Duration = Duration::from_secs(30);

/// A shard's externally visible raft status, for `INFO raft`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardStatus {
    pub shard: ShardId,
    pub role: Role,
    /// Leader's node id, 0 if unknown.
    pub leader: u64,
    pub term: u64,
    pub commit: u64,
    pub applied: u64,
    /// The state machine's clock at the applied index.
    pub applied_time_ms: u64,
    pub first_index: u64,
    pub last_index: u64,
    /// On a leader: followers that recently answered and have every
    /// committed entry (candidates for a leadership transfer).
    pub caught_up: Vec<u64>,
    /// The shard's configuration as this replica knows it.
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Role {
    Leader,
    #[default]
    Follower,
    Candidate,
    Learner,
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::Learner => "learner",
        }
    }
}

/// Builds and validates raft-rs's configuration. The only place a
/// `raft::Config` is made.
pub(crate) fn raft_config(
    cfg: &EngineConfig,
    limits: &RaftLimits,
    applied: u64,
) -> Result<raft::Config, raft::Error> {
    let config = raft::Config {
        id: cfg.node_id,
        election_tick: cfg.election_tick,
        heartbeat_tick: cfg.heartbeat_tick,
        applied,
        max_size_per_msg: limits.max_size_per_msg(),
        max_inflight_msgs: limits.max_inflight_msgs(),
        max_committed_size_per_ready: limits.max_committed_size_per_ready(),
        check_quorum: true,
        pre_vote: limits.pre_vote.value,
        read_only_option: ReadOnlyOption::Safe,
        // raft-rs 0.7's batch_append can merge new entries into a queued
        // empty MsgAppend whose prev index does not precede them (it only
        // checks continuity against the message's entries, and an empty one
        // has none). The follower then acknowledges an index it does not
        // have and a later heartbeat commits past its log, which panics it.
        // Found by the lossy-network cluster test. The outbox batches
        // messages per peer anyway, so nothing is lost by turning it off.
        batch_append: false,
        ..Default::default()
    };
    config.validate()?;
    Ok(config)
}

pub(crate) use crate::reads::ReadWaiter;
pub(crate) type ProposalReply<O> = oneshot::Sender<Result<O, ProposeError>>;

/// A proposal made here, awaiting its entry's apply.
struct Pending<O> {
    term: u64,
    reply: ProposalReply<O>,
    proposed_at: Instant,
}

/// How an engine reaches the rest of the node.
pub(crate) struct EngineLinks {
    /// Where the engine publishes its status.
    pub(crate) status: Arc<Mutex<ShardStatus>>,
    /// Where the engine publishes whether readers may go without it.
    pub(crate) lease: Arc<Mutex<LeaseView>>,
    pub(crate) outbox: Arc<Outbox>,
    pub(crate) snapshots: flume::Sender<SnapshotJob>,
    pub(crate) members: flume::Sender<MemberAdded>,
}

pub(crate) struct ShardEngine<SM: StateMachine> {
    shard: ShardId,
    raw: RawNode<ShardLog>,
    sm: SM,
    apply: ApplyBatch,
    limits: RaftLimits,
    /// Proposals made here, by the log index their entry was appended at.
    /// An index holds at most one: a new proposal at an index fails every
    /// older-term proposal at or after it (those entries were overwritten
    /// when this node followed another leader).
    proposals: BTreeMap<u64, Pending<SM::Output>>,
    /// Linearizable reads: arrived, asked, confirmed.
    reads: ReadQueue,
    /// Whether this follower has seen its leader commit an entry of the
    /// current term (before that, the leader drops read requests).
    saw_term_commit: bool,
    /// Leadership confirmed by a quorum holds until then (leader only).
    lease_until: Option<Instant>,
    lease: Option<Duration>,
    /// When the last lease-renewing ReadIndex went out.
    last_renewal: Option<Instant>,
    /// No lease before this instant: an election timeout after the last
    /// moment a leadership transfer was pending. A transferee told to
    /// campaign (MsgTimeoutNow) wins without waiting out anyone's lease,
    /// so a quorum's acknowledgement from before then proves nothing.
    lease_fence: Option<Instant>,
    /// Until then this replica grants no vote or pre-vote (except to a
    /// transferee): it may have acknowledged a leader's lease-confirming
    /// heartbeat just before it (re)started, and forgot that leader.
    votes_refused_until: Instant,
    renew_every: Duration,
    pub(crate) step_rx: flume::Receiver<Message>,
    pub(crate) priority_rx: flume::Receiver<Message>,
    outbox: Arc<Outbox>,
    snapshots: flume::Sender<SnapshotJob>,
    members: flume::Sender<MemberAdded>,
    /// The configuration change proposed here, awaiting apply.
    pending_conf: Option<(u64, u64, ConfReply)>,
    /// When each peer was last heard from (any message of this shard).
    last_heard: std::collections::HashMap<u64, Instant>,
    election_timeout: Duration,
    store: Store,
    /// Applied entries between log compactions, and entries kept behind.
    snapshot_count: u64,
    log_retain: u64,
    /// Messages dropped per peer, for rate-limited logging.
    drops: std::collections::HashMap<u64, u64>,
    /// When the lost-data refusal was last logged.
    lost_data_logged: Option<Instant>,
    /// On a leader: followers probed because they answered as if they had
    /// lost their log (see `probe_if_amnesiac`), until they answer
    /// otherwise.
    amnesia_probed: std::collections::HashSet<u64>,
    status: Arc<Mutex<ShardStatus>>,
    lease_view: Arc<Mutex<LeaseView>>,
    metrics: metrics::ShardMetrics,
    /// Answers owed to callers this round, sent by the worker through the
    /// courier (see [`crate::answers`]).
    answers: Vec<Answer<SM::Output>>,
}

/// What a reader on this node may rely on without the raft thread: while
/// `serve_until` is in the future this replica leads the shard under a
/// lease, has applied everything committed, and no transfer is under way,
/// so its data is at least as new as any write acknowledged anywhere
/// (the LocalReader of TiKV).
#[derive(Debug, Clone, Copy, Default)]
pub struct LeaseView {
    pub serve_until: Option<Instant>,
    pub point: ReadPoint,
}

impl<SM: StateMachine> ShardEngine<SM> {
    /// Opens the shard's replica from disk (bootstrapping a new one), and
    /// logs its resolved flow-control limits.
    /// `resolved` is this engine's own resolution of the limits.
    pub(crate) fn open(
        cfg: &EngineConfig,
        store: &Store,
        shard: ShardId,
        sm: SM,
        resolved: (RaftLimits, Vec<InvalidEnv>),
        links: EngineLinks,
    ) -> Result<(ShardEngine<SM>, StepLane), EngineError> {
        let EngineLinks {
            status,
            lease,
            outbox,
            snapshots,
            members,
        } = links;
        let (limits, invalid_env) = resolved;
        log_resolution(cfg.node_id, shard, &limits, &invalid_env);

        store.resume_snapshot_install(sm.ranges(shard))?;
        let mut log = ShardLog::open(store, shard, &cfg.initial_voters)?;
        let apply_state = store.load_apply_state(shard)?;
        if apply_state.applied_index > log.last_index() {
            return Err(EngineError::CorruptEntry {
                shard,
                index: apply_state.applied_index,
                detail: format!(
                    "applied index is beyond the last log entry {}",
                    log.last_index()
                ),
            });
        }
        if log.hard_state().commit < apply_state.applied_index {
            // The applied index is written after the log without waiting
            // for the disk, while the commit index is persisted lazily: an
            // applied entry was committed, so raise the commit to match
            // (raft-rs requires applied <= committed).
            let mut batch = LogBatch::new(store);
            log.set_commit(apply_state.applied_index, &mut batch)?;
            batch.write(true)?;
        }
        tracing::info!(
            shard_id = shard,
            local_id = cfg.node_id,
            applied = apply_state.applied_index,
            commit = log.hard_state().commit,
            first_index = log.first_index(),
            last_index = log.last_index(),
            replay = log
                .hard_state()
                .commit
                .saturating_sub(apply_state.applied_index),
            "shard replica opened"
        );
        let single_voter = log.conf_state().voters == [cfg.node_id];
        let config = raft_config(cfg, &limits, apply_state.applied_index)?;
        let mut raw = RawNode::new(&config, log, &raft_logger(cfg.node_id, shard))?;
        if single_voter && raw.raft.state != StateRole::Leader {
            // Alone in the group: no one to wait for, lead right away
            // instead of after an election timeout.
            raw.campaign()?;
        }
        let (lane, step_rx, priority_rx) = StepLane::new(shard, limits.step_queue_capacity());
        let engine = ShardEngine {
            shard,
            raw,
            sm,
            apply: store.apply_batch(shard, apply_state),
            limits,
            proposals: BTreeMap::new(),
            reads: ReadQueue::new(cfg.node_id, cfg.read_timeout(), cfg.read_retry()),
            saw_term_commit: false,
            lease_until: None,
            lease: cfg.lease(),
            last_renewal: None,
            lease_fence: None,
            votes_refused_until: Instant::now() + cfg.tick * cfg.election_tick as u32,
            renew_every: cfg.tick * cfg.heartbeat_tick as u32,
            step_rx,
            priority_rx,
            outbox,
            snapshots,
            members,
            pending_conf: None,
            last_heard: std::collections::HashMap::new(),
            election_timeout: cfg.tick * cfg.election_tick as u32,
            store: store.clone(),
            snapshot_count: limits.snapshot_count.value,
            log_retain: limits.log_retain_entries.value,
            drops: std::collections::HashMap::new(),
            lost_data_logged: None,
            amnesia_probed: std::collections::HashSet::new(),
            status,
            lease_view: lease,
            metrics: metrics::ShardMetrics::new(shard),
            answers: Vec::new(),
        };
        engine.publish_status();
        Ok((engine, lane))
    }

    pub(crate) fn shard(&self) -> ShardId {
        self.shard
    }

    pub(crate) fn limits(&self) -> &RaftLimits {
        &self.limits
    }

    fn not_leader(&self) -> ProposeError {
        let leader = self.raw.raft.leader_id;
        ProposeError::NotLeader {
            shard: self.shard,
            leader: (leader != 0).then_some(leader),
        }
    }

    pub(crate) fn propose(&mut self, data: Vec<u8>, reply: ProposalReply<SM::Output>) {
        if self.raw.raft.state != StateRole::Leader {
            let _ = reply.send(Err(self.not_leader()));
            return;
        }
        if let Err(e) = self.raw.propose(Vec::new(), data) {
            tracing::debug!(shard_id = self.shard, error = %e, "proposal refused");
            let _ = reply.send(Err(self.not_leader()));
            return;
        }
        let (index, term) = (self.raw.raft.raft_log.last_index(), self.raw.raft.term);
        for (_, stale) in self.proposals.split_off(&index) {
            debug_assert!(stale.term < term, "two proposals of one term at one index");
            let _ = stale
                .reply
                .send(Err(ProposeError::Dropped { shard: self.shard }));
        }
        self.metrics.proposed();
        self.proposals.insert(
            index,
            Pending {
                term,
                reply,
                proposed_at: Instant::now(),
            },
        );
    }

    /// Queues a linearizable read. A leader holding a lease serves it at
    /// its commit index at once; otherwise it joins this round's ReadIndex
    /// batch (on a follower, answered by the leader).
    pub(crate) fn read(&mut self, reply: ReadWaiter) {
        let now = Instant::now();
        if self.raw.raft.state == StateRole::Leader && self.lease_holds(now) {
            let index = self.raw.raft.raft_log.committed;
            self.reads.serve_at(index, reply);
            self.release_reads();
            return;
        }
        let raft = &self.raw.raft;
        if raft.state != StateRole::Leader && raft.leader_id == 0 {
            let _ = reply.send(Err(self.not_leader()));
            return;
        }
        self.reads.push(reply, now);
    }

    fn lease_holds(&mut self, now: Instant) -> bool {
        if self.lease_fence(now).is_some_and(|fence| now < fence) {
            return false;
        }
        // A new leader's commit index only covers earlier terms' entries
        // once it has committed one of its own.
        self.lease_until.is_some_and(|until| now < until) && self.raw.raft.commit_to_current_term()
    }

    /// The lease fence, pushed out (and the lease dropped) while a
    /// leadership transfer is pending, however it was started (here, or by
    /// a MsgTransferLeader stepped in from elsewhere).
    fn lease_fence(&mut self, now: Instant) -> Option<Instant> {
        if self.raw.raft.lead_transferee.is_some() {
            self.lease_fence = Some(now + self.election_timeout);
            self.drop_lease();
        }
        self.lease_fence
    }

    /// Proposes a membership change; `reply` is answered once it is
    /// applied here. One change at a time: raft refuses another while one
    /// is pending.
    pub(crate) fn change_membership(&mut self, change: MembershipChange, reply: ConfReply) {
        if self.raw.raft.state != StateRole::Leader {
            let _ = reply.send(Err(self.not_leader()));
            return;
        }
        if self.pending_conf.is_some() {
            let _ = reply.send(Err(ProposeError::ChangeInProgress { shard: self.shard }));
            return;
        }
        let (change_type, node, context) = match change {
            MembershipChange::AddLearner { node, raft_addr } => {
                (ConfChangeType::AddLearnerNode, node, raft_addr.into_bytes())
            }
            MembershipChange::Promote { node } => (ConfChangeType::AddNode, node, Vec::new()),
            MembershipChange::Remove { node } => (ConfChangeType::RemoveNode, node, Vec::new()),
        };
        let mut cc = ConfChange {
            node_id: node,
            ..Default::default()
        };
        cc.set_change_type(change_type);
        if let Err(e) = self.raw.propose_conf_change(context, cc) {
            tracing::info!(shard_id = self.shard, error = %e, "membership change refused");
            let _ = reply.send(Err(ProposeError::ChangeInProgress { shard: self.shard }));
            return;
        }
        let index = self.raw.raft.raft_log.last_index();
        tracing::info!(
            shard_id = self.shard,
            local_id = self.raw.raft.id,
            node,
            change = ?change_type,
            index,
            "membership change proposed"
        );
        self.pending_conf = Some((index, self.raw.raft.term, reply));
    }

    /// Records an applied configuration change and tells whoever proposed
    /// it here.
    fn conf_change_applied(&mut self, entry: &Entry, cc: &ConfChange) {
        if matches!(
            cc.get_change_type(),
            ConfChangeType::AddNode | ConfChangeType::AddLearnerNode
        ) {
            let added = MemberAdded {
                shard: self.shard,
                node: cc.node_id,
                raft_addr: String::from_utf8_lossy(&entry.context).into_owned(),
            };
            // Lanes first, so raft's next messages to it are not dropped.
            self.outbox.add_peer(cc.node_id);
            let _ = self.members.try_send(added);
        }
        tracing::info!(
            shard_id = self.shard,
            local_id = self.raw.raft.id,
            node = cc.node_id,
            change = ?cc.get_change_type(),
            index = entry.index,
            "membership change applied"
        );
        if let Some((index, term, _)) = &self.pending_conf
            && (*index, *term) <= (entry.index, entry.term)
            && let Some((index, term, reply)) = self.pending_conf.take()
        {
            let outcome = if (index, term) == (entry.index, entry.term) {
                Ok(())
            } else {
                Err(ProposeError::Dropped { shard: self.shard })
            };
            let _ = reply.send(outcome);
        }
    }

    pub(crate) fn transfer_leader(&mut self, to: u64) {
        if self.raw.raft.state != StateRole::Leader || to == self.raw.raft.id {
            return;
        }
        // The transferee may win an election at once (MsgTimeoutNow skips
        // the election timeout), so the lease cannot be trusted from now on,
        // nor renewed until an election timeout after the attempt.
        self.drop_lease();
        self.lease_fence = Some(Instant::now() + self.election_timeout);
        tracing::info!(
            shard_id = self.shard,
            local_id = self.raw.raft.id,
            to,
            "transferring leadership"
        );
        self.raw.transfer_leader(to);
    }

    fn drop_lease(&mut self) {
        self.lease_until = None;
        self.last_renewal = None;
        self.lease_view.lock().serve_until = None;
    }

    /// Publishes what readers may rely on without this thread (see
    /// [`LeaseView`]).
    fn publish_lease(&self) {
        let raft = &self.raw.raft;
        let now = Instant::now();
        let state = self.apply.state();
        let serves = raft.state == StateRole::Leader
            && raft.lead_transferee.is_none()
            && self.lease_fence.is_none_or(|fence| now >= fence)
            && raft.commit_to_current_term()
            && state.applied_index >= raft.raft_log.committed;
        *self.lease_view.lock() = LeaseView {
            serve_until: if serves { self.lease_until } else { None },
            point: ReadPoint {
                applied_index: state.applied_index,
                time_ms: state.time_ms,
            },
        };
    }

    /// Steps queued inbound messages, priority ones first. Returns
    /// whether there were any.
    pub(crate) fn drain_steps(&mut self) -> bool {
        let mut any = false;
        while let Ok(msg) = self
            .priority_rx
            .try_recv()
            .or_else(|_| self.step_rx.try_recv())
        {
            any = true;
            let now = Instant::now();
            self.last_heard.insert(msg.from, now);
            if self.refuses_vote(&msg, now) {
                tracing::debug!(
                    shard_id = self.shard,
                    local_id = self.raw.raft.id,
                    from = msg.from,
                    msg_type = ?msg.get_msg_type(),
                    "vote request ignored: this replica opened less than an election timeout ago"
                );
                continue;
            }
            let msg = if self.is_empty_replica() {
                match self.admit_to_empty_replica(msg, now) {
                    Some(msg) => msg,
                    None => continue,
                }
            } else {
                msg
            };
            let offered = (msg.get_msg_type() == MessageType::MsgSnapshot).then(|| {
                let meta = msg.get_snapshot().get_metadata();
                (meta.index, meta.term)
            });
            let heartbeat_answer = (msg.get_msg_type() == MessageType::MsgHeartbeatResponse)
                .then_some((msg.from, msg.commit));
            if let Err(e) = self.raw.step(msg) {
                tracing::debug!(shard_id = self.shard, error = %e, "raft message ignored");
            }
            if let Some((index, term)) = offered {
                self.keep_staged_if_taken(index, term);
            }
            if let Some((from, commit)) = heartbeat_answer {
                self.probe_if_amnesiac(from, commit);
            }
        }
        any
    }

    /// On a leader, after a heartbeat answer from `from` reporting
    /// `commit`. A follower that acknowledged entries and now reports
    /// commit 0 has lost its log (a wiped disk: it came back as an empty
    /// replica). raft-rs sends a follower entries only when it believes the
    /// follower lacks some, so on an idle shard this one would hear nothing
    /// but heartbeats. Probing it once makes raft-rs find the gap and offer
    /// the snapshot that the empty replica refuses, with the ERROR telling
    /// the operator what to do (see `admit_to_empty_replica`). Once per
    /// episode: writes to the shard go on probing it as raft-rs does.
    fn probe_if_amnesiac(&mut self, from: u64, commit: u64) {
        if commit > 0 {
            self.amnesia_probed.remove(&from);
            return;
        }
        let raft = &mut self.raw.raft;
        if raft.state != StateRole::Leader || self.amnesia_probed.contains(&from) {
            return;
        }
        let local_id = raft.id;
        let Some(pr) = raft.mut_prs().get_mut(from) else {
            return;
        };
        let acknowledged = pr.matched;
        if acknowledged == 0 || pr.state == raft::ProgressState::Snapshot {
            return;
        }
        pr.become_probe();
        self.amnesia_probed.insert(from);
        tracing::warn!(
            shard_id = self.shard,
            local_id,
            peer = from,
            acknowledged,
            "a follower answered as if it had lost its log; probing it"
        );
        raft.send_append(from);
    }

    /// A replica that has no configuration yet: it never was bootstrapped
    /// and never installed a snapshot (a node waiting to be added, or one
    /// whose data was lost).
    fn is_empty_replica(&self) -> bool {
        let conf = self.raw.raft.prs().conf();
        conf.voters().ids().is_empty() && conf.learners().is_empty()
    }

    /// What an empty replica may step, and in what form. It knows nothing,
    /// so it grants no vote. It takes appends (which it refuses, asking for
    /// a snapshot), and heartbeats stripped of what it cannot vouch for:
    /// their commit index (which it cannot have: raft-rs would panic) and
    /// their read context (its answer must not confirm a leader's
    /// leadership for a read). Answering heartbeats lets the leader try a
    /// snapshot again after a failed one.
    ///
    /// Its first snapshot must make it a learner: a new member is always
    /// added as one. One that lists it as a voter means this node's data was
    /// lost after it became a voter; taking it would let the node vote
    /// without the promises it made (its votes, the entries it
    /// acknowledged), so it is refused, and the operator is told how to
    /// replace the node.
    fn admit_to_empty_replica(&mut self, mut msg: Message, now: Instant) -> Option<Message> {
        match msg.get_msg_type() {
            MessageType::MsgAppend => Some(msg),
            MessageType::MsgHeartbeat => {
                msg.commit = msg.commit.min(self.raw.raft.raft_log.last_index());
                msg.context = Default::default();
                Some(msg)
            }
            MessageType::MsgSnapshot => {
                let conf = msg.get_snapshot().get_metadata().get_conf_state();
                let id = self.raw.raft.id;
                if !conf.voters.contains(&id) && !conf.voters_outgoing.contains(&id) {
                    return Some(msg);
                }
                let meta = msg.get_snapshot().get_metadata();
                self.store.discard_staged(self.shard, meta.index, meta.term);
                if self
                    .lost_data_logged
                    .is_none_or(|at| now.duration_since(at) >= LOST_DATA_LOG_EVERY)
                {
                    self.lost_data_logged = Some(now);
                    tracing::error!(
                        shard_id = self.shard,
                        local_id = id,
                        leader = msg.from,
                        "this replica is empty but the shard lists node {id} as a voter: its data \
                         was lost, and it must not vote without it; remove node {id} from the \
                         cluster (elastickv ctl remove-node {id}) and add it again \
                         (README: replacing a node whose disk was lost)"
                    );
                }
                None
            }
            _ => None,
        }
    }

    /// A staged snapshot raft did not take (it was stale by the time it
    /// arrived) will never be installed: its file goes now, not at the
    /// next restart. One raft took is installed with the next ready, which
    /// removes it.
    fn keep_staged_if_taken(&self, index: u64, term: u64) {
        let taken = self
            .raw
            .raft
            .raft_log
            .unstable
            .snapshot
            .as_ref()
            .is_some_and(|s| {
                let meta = s.get_metadata();
                (meta.index, meta.term) == (index, term)
            });
        if !taken {
            self.store.discard_staged(self.shard, index, term);
        }
    }

    /// Whether `msg` asks for a vote this replica must not give yet. Like
    /// raft-rs's own lease check (which needs a known leader, and a
    /// restarted replica knows none), it spares transfer campaigns: their
    /// old leader gave up its lease before asking for them.
    fn refuses_vote(&self, msg: &Message, now: Instant) -> bool {
        matches!(
            msg.get_msg_type(),
            MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
        ) && msg.term > self.raw.raft.term
            && msg.context.as_ref() != raft::CAMPAIGN_TRANSFER
            && now < self.votes_refused_until
    }

    /// Queues messages for their peers; a refused message is reported to
    /// raft (so it stops streaming to that peer and probes instead),
    /// counted, and logged at a limited rate.
    fn send(&mut self, msgs: Vec<Message>) {
        for msg in msgs {
            if msg.get_msg_type() == MessageType::MsgSnapshot {
                self.send_snapshot(msg);
                continue;
            }
            let Err((msg, refusal)) = self.outbox.send(self.shard, msg) else {
                continue;
            };
            let to = msg.to;
            if msg.get_msg_type() == MessageType::MsgSnapshot {
                self.raw.report_snapshot(to, SnapshotStatus::Failure);
            } else {
                self.raw.report_unreachable(to);
                metrics::unreachable_reported(self.shard, to);
            }
            metrics::dropped_message(self.shard, to, refusal.as_str());
            let drops = self.drops.entry(to).or_insert(0);
            *drops += 1;
            if *drops == 1 || drops.is_multiple_of(DROP_LOG_EVERY) {
                tracing::warn!(
                    shard_id = self.shard,
                    local_id = self.raw.raft.id,
                    peer = to,
                    reason = refusal.as_str(),
                    dropped_total = *drops,
                    msg_type = ?msg.get_msg_type(),
                    "outbound raft message dropped (logged on the first drop and every {DROP_LOG_EVERY}th)"
                );
            }
        }
    }

    /// Hands a snapshot to the network layer with a view of the data it
    /// describes, or tells raft it failed (raft tries again later).
    fn send_snapshot(&mut self, msg: Message) {
        let to = msg.to;
        let index = msg.get_snapshot().get_metadata().index;
        let applied = self.apply.state().applied_index;
        if index != applied {
            // The data must be exactly the state at the snapshot's index.
            tracing::debug!(
                shard_id = self.shard,
                to,
                index,
                applied,
                "snapshot out of date; retrying"
            );
            self.raw.report_snapshot(to, SnapshotStatus::Failure);
            return;
        }
        metrics::snapshot_sent(self.shard);
        let job = SnapshotJob {
            shard: self.shard,
            to,
            message: msg,
            data: self.store.shard_snapshot(self.sm.ranges(self.shard)),
        };
        match self.snapshots.try_send(job) {
            Ok(()) => tracing::info!(
                shard_id = self.shard,
                local_id = self.raw.raft.id,
                to,
                index,
                "sending a snapshot to a follower behind the log"
            ),
            Err(_) => {
                metrics::dropped_message(self.shard, to, "snapshot_queue_full");
                self.raw.report_snapshot(to, SnapshotStatus::Failure);
            }
        }
    }

    /// The network layer's verdict on a snapshot sent to `to`.
    pub(crate) fn report_snapshot(&mut self, to: u64, delivered: bool) {
        let status = if delivered {
            SnapshotStatus::Finish
        } else {
            SnapshotStatus::Failure
        };
        self.raw.report_snapshot(to, status);
    }

    /// Compacts the log once `snapshot_count` entries were applied since
    /// the last compaction, keeping `log_retain` entries behind the applied
    /// index (the state a snapshot would capture now).
    fn maybe_compact(&mut self, log_batch: &mut LogBatch) -> Result<(), EngineError> {
        let applied = self.apply.state().applied_index;
        let truncated = self.raw.store().first_index() - 1;
        let mut to = applied.saturating_sub(self.log_retain);
        // A live follower still needs the entries after what it has (or
        // after the snapshot it is being sent). Cutting them sends it
        // another snapshot, and a follower whose snapshots take longer than
        // the log lasts would never catch up. They are kept, up to
        // CATCH_UP_ENTRIES beyond the usual bound; a follower further
        // behind than that gets a snapshot.
        if let Some(floor) = self.catch_up_floor() {
            let limit = applied.saturating_sub(self.log_retain + CATCH_UP_ENTRIES);
            to = to.min(floor.max(limit));
        }
        if to >= truncated + self.snapshot_count {
            self.raw.mut_store().compact(to, log_batch)?;
            tracing::debug!(shard_id = self.shard, to, applied, "raft log compacted");
        }
        Ok(())
    }

    /// On a leader, the lowest index a live follower has (or is being sent
    /// as a snapshot): entries after it are still needed.
    fn catch_up_floor(&self) -> Option<u64> {
        let raft = &self.raw.raft;
        if raft.state != StateRole::Leader {
            return None;
        }
        raft.prs()
            .iter()
            .filter(|&(&id, _)| id != raft.id)
            .filter_map(|(&id, pr)| match pr.state {
                raft::ProgressState::Snapshot => Some(pr.pending_snapshot),
                _ if self
                    .last_heard
                    .get(&id)
                    .is_some_and(|at| at.elapsed() < self.election_timeout) =>
                {
                    Some(pr.matched)
                }
                _ => None,
            })
            .min()
    }

    /// Replaces this replica's state with the staged snapshot raft handed
    /// over.
    fn install_snapshot(
        &mut self,
        snapshot: &raft::prelude::Snapshot,
        log_batch: &mut LogBatch,
    ) -> Result<(), EngineError> {
        let meta = snapshot.get_metadata();
        let counts = ApplyState::decode(&snapshot.data, self.shard)?;
        let snapshot_meta = SnapshotMeta {
            shard: self.shard,
            index: meta.index,
            term: meta.term,
            conf_state: meta.get_conf_state().clone(),
            keys: counts.keys,
            expires: counts.expires,
            time_ms: counts.time_ms,
        };
        if !self.store.is_staged(self.shard, meta.index, meta.term) {
            return Err(EngineError::CorruptEntry {
                shard: self.shard,
                index: meta.index,
                detail: "raft accepted a snapshot whose data is not staged".into(),
            });
        }
        self.store
            .install_snapshot(self.sm.ranges(self.shard), &snapshot_meta, log_batch)?;
        self.raw.mut_store().snapshot_installed(
            meta.index,
            meta.term,
            meta.get_conf_state().clone(),
        );
        let state = self.store.load_apply_state(self.shard)?;
        self.apply = self.store.apply_batch(self.shard, state);
        // Entries proposed here before the snapshot can no longer be
        // matched to their outcome.
        self.fail_proposals();
        metrics::snapshot_installed(self.shard);
        Ok(())
    }

    pub(crate) fn tick(&mut self) {
        self.raw.tick();
    }

    /// Sends one ReadIndex request for all reads that arrived this round;
    /// on a leader with leases, also renews the lease once per heartbeat
    /// interval. A follower asks again for reads that went unanswered (at
    /// once when its leader has just committed in its term). Gives up on
    /// readers waiting longer than the read timeout.
    pub(crate) fn issue_reads(&mut self) {
        let now = Instant::now();
        self.reads
            .expire(now, &ProposeError::Dropped { shard: self.shard });
        let leader = self.raw.raft.state == StateRole::Leader;
        if !leader {
            let term_committed = self.raw.raft.commit_to_current_term();
            let just_committed = term_committed && !self.saw_term_commit;
            self.saw_term_commit = term_committed;
            self.reads.requeue_unanswered(now, just_committed);
        }
        // raft-rs silently drops a ReadIndex from a leader that has not yet
        // committed an entry of its own term; such reads wait for that
        // (the leader's no-op entry commits within a round trip).
        if leader && !self.raw.raft.commit_to_current_term() {
            return;
        }
        let renew = leader
            && self.lease.is_some()
            && self.lease_fence(now).is_none_or(|fence| now >= fence)
            && self
                .last_renewal
                .is_none_or(|at| now.duration_since(at) >= self.renew_every);
        if !self.reads.has_new() && !renew {
            return;
        }
        if leader {
            self.last_renewal = Some(now);
        }
        let request = self.reads.issue(now);
        self.raw.read_index(request.ctx);
    }

    /// Whether the next round has work: a ready, or reads that can now be
    /// issued.
    pub(crate) fn has_work(&self) -> bool {
        let raft = &self.raw.raft;
        self.raw.has_ready()
            || (self.reads.has_new()
                && (raft.state != StateRole::Leader || raft.commit_to_current_term()))
    }

    pub(crate) fn ready_phase_a(
        &mut self,
        log_batch: &mut LogBatch,
    ) -> Result<Option<Ready>, EngineError> {
        // A transfer stepped in this round may send MsgTimeoutNow below:
        // readers stop relying on the lease before it leaves.
        if self.raw.raft.lead_transferee.is_some() {
            self.drop_lease();
        }
        if !self.raw.has_ready() {
            return Ok(None);
        }
        let mut rd = self.raw.ready();
        if let Some(ss) = rd.ss() {
            metrics::leader_changed(self.shard);
            tracing::info!(
                shard_id = self.shard,
                local_id = self.raw.raft.id,
                role = ?ss.raft_state,
                leader = ss.leader_id,
                term = self.raw.raft.term,
                "raft role changed"
            );
            // Whatever the change, a lease from before it is void.
            self.drop_lease();
            if self.raw.raft.state != StateRole::Leader {
                self.fail_unconfirmed_reads();
                self.fail_proposals();
            }
        }
        if !rd.messages().is_empty() {
            self.send(rd.take_messages());
        }
        if !rd.snapshot().is_empty() {
            let snapshot = rd.snapshot().clone();
            self.install_snapshot(&snapshot, log_batch)?;
        }
        let committed = rd.take_committed_entries();
        self.metrics
            .ready_round(rd.entries().len(), committed.len());
        self.apply_committed(committed)?;
        if !rd.entries().is_empty() {
            self.raw.mut_store().append(rd.entries(), log_batch)?;
        }
        if let Some(hs) = rd.hs() {
            self.raw.mut_store().set_hard_state(hs.clone(), log_batch)?;
        }
        for rs in rd.take_read_states() {
            self.on_read_state(rs);
        }
        Ok(Some(rd))
    }

    pub(crate) fn ready_phase_b(
        &mut self,
        mut rd: Ready,
        log_batch: &mut LogBatch,
    ) -> Result<(), EngineError> {
        if !rd.persisted_messages().is_empty() {
            self.send(rd.take_persisted_messages());
        }
        let mut light = self.raw.advance(rd);
        if let Some(commit) = light.commit_index() {
            // Persisted lazily with the next round: on restart raft-rs
            // recomputes the commit from the quorum anyway.
            self.raw.mut_store().set_commit(commit, log_batch)?;
        }
        if !light.messages().is_empty() {
            self.send(light.take_messages());
        }
        self.apply_committed(light.take_committed_entries())?;
        self.raw.advance_apply();
        self.release_reads();
        self.maybe_compact(log_batch)?;
        Ok(())
    }

    fn apply_committed(&mut self, entries: Vec<Entry>) -> Result<(), EngineError> {
        let Some(last) = entries.last() else {
            return Ok(());
        };
        let (last_index, last_term) = (last.index, last.term);
        let mut outputs = Vec::new();
        for entry in &entries {
            match entry.get_entry_type() {
                EntryType::EntryNormal => {
                    if !entry.data.is_empty() {
                        let out = self.sm.apply(&mut self.apply, entry.index, &entry.data)?;
                        outputs.push((entry.index, entry.term, out));
                    }
                }
                EntryType::EntryConfChange => {
                    // An empty one is raft's placeholder (leader election
                    // with a pending change); nothing to apply.
                    if entry.data.is_empty() {
                        continue;
                    }
                    let cc = ConfChange::parse_from_bytes(&entry.data)
                        .map_err(|e| self.corrupt(entry.index, e))?;
                    let cs = self.raw.apply_conf_change(&cc)?;
                    self.apply.set_conf_state(cs.clone());
                    self.raw.mut_store().set_conf_state(cs);
                    self.conf_change_applied(entry, &cc);
                }
                EntryType::EntryConfChangeV2 => {
                    let cc = ConfChangeV2::parse_from_bytes(&entry.data)
                        .map_err(|e| self.corrupt(entry.index, e))?;
                    let cs = self.raw.apply_conf_change(&cc)?;
                    self.apply.set_conf_state(cs.clone());
                    self.raw.mut_store().set_conf_state(cs);
                }
            }
        }
        self.apply.set_applied(last_index, last_term);
        self.apply.commit()?;
        // A change proposed here whose index now holds something else was
        // overwritten by another leader's log.
        if self
            .pending_conf
            .as_ref()
            .is_some_and(|(index, _, _)| *index <= last_index)
            && let Some((_, _, reply)) = self.pending_conf.take()
        {
            let _ = reply.send(Err(ProposeError::Dropped { shard: self.shard }));
        }
        self.metrics.applied_entries(entries.len());

        // Only now, with the data written, are the proposers answered:
        // each by the entry at its own index, if that entry is still the
        // one it proposed (same term); otherwise the entry was replaced.
        let mut outputs: BTreeMap<u64, (u64, SM::Output)> = outputs
            .into_iter()
            .map(|(index, term, out)| (index, (term, out)))
            .collect();
        let later = self.proposals.split_off(&(last_index + 1));
        for (index, pending) in std::mem::replace(&mut self.proposals, later) {
            let result = match outputs.remove(&index) {
                Some((term, out)) if term == pending.term => {
                    self.metrics
                        .proposal_applied(pending.proposed_at.elapsed().as_secs_f64());
                    Ok(out)
                }
                _ => Err(ProposeError::Dropped { shard: self.shard }),
            };
            self.answers.push(Answer::Proposal(pending.reply, result));
        }
        Ok(())
    }

    fn corrupt(&self, index: u64, e: protobuf::ProtobufError) -> EngineError {
        EngineError::CorruptEntry {
            shard: self.shard,
            index,
            detail: e.to_string(),
        }
    }

    fn on_read_state(&mut self, rs: ReadState) {
        let Some(confirmed) = self.reads.confirm(&rs.request_ctx, rs.index) else {
            return;
        };
        let now = Instant::now();
        let fenced = self
            .lease_fence(now)
            .is_some_and(|fence| confirmed.sent_at < fence);
        if self.raw.raft.state == StateRole::Leader && !fenced {
            // A quorum acknowledged this leader after the request went out,
            // with no transfer in sight: no one else can lead before the
            // lease ends.
            if let Some(lease) = self.lease {
                let until = confirmed.sent_at + lease;
                self.lease_until = Some(self.lease_until.map_or(until, |u| u.max(until)));
            }
        }
        self.release_reads();
    }

    fn release_reads(&mut self) {
        let state = self.apply.state();
        let point = ReadPoint {
            applied_index: state.applied_index,
            time_ms: state.time_ms,
        };
        let answers = &mut self.answers;
        self.reads
            .release(point, |waiter| answers.push(Answer::Read(waiter, point)));
    }

    /// Moves this round's answers to `batch`, for the courier.
    pub(crate) fn take_answers(&mut self, batch: &mut Vec<Answer<SM::Output>>) {
        batch.append(&mut self.answers);
    }

    /// Reads not yet confirmed by a quorum cannot be served by a node that
    /// is no longer leader (or no longer follows the leader it asked).
    fn fail_unconfirmed_reads(&mut self) {
        let err = self.not_leader();
        self.reads.fail_unconfirmed(&err);
    }

    /// A deposed leader cannot tell whether its pending proposals will
    /// commit (the next leader may have them): it answers them at once as
    /// dropped rather than when the log overtakes them, and proposers
    /// resend them with their request ids, which the state machine applies
    /// at most once.
    fn fail_proposals(&mut self) {
        for (_, pending) in std::mem::take(&mut self.proposals) {
            let _ = pending
                .reply
                .send(Err(ProposeError::Dropped { shard: self.shard }));
        }
    }

    /// Fails everything still waiting, at shutdown.
    pub(crate) fn fail_all(&mut self, err: ProposeError) {
        for (_, p) in std::mem::take(&mut self.proposals) {
            let _ = p.reply.send(Err(err.clone()));
        }
        if let Some((_, _, reply)) = self.pending_conf.take() {
            let _ = reply.send(Err(err.clone()));
        }
        self.reads.fail_all(&err);
    }

    pub(crate) fn publish_status(&self) {
        self.publish_lease();
        let raft = &self.raw.raft;
        self.metrics.state(
            match raft.state {
                StateRole::Leader => 2.0,
                StateRole::Candidate | StateRole::PreCandidate => 1.0,
                StateRole::Follower => 0.0,
            },
            raft.term,
            raft.raft_log.committed,
            self.apply.state().applied_index,
        );
        let store = self.raw.store();
        let status = ShardStatus {
            shard: self.shard,
            role: match raft.state {
                StateRole::Leader => Role::Leader,
                StateRole::Candidate | StateRole::PreCandidate => Role::Candidate,
                StateRole::Follower if !raft.promotable() => Role::Learner,
                StateRole::Follower => Role::Follower,
            },
            leader: raft.leader_id,
            term: raft.term,
            commit: raft.raft_log.committed,
            applied: self.apply.state().applied_index,
            applied_time_ms: self.apply.state().time_ms,
            first_index: store.first_index(),
            last_index: store.last_index(),
            caught_up: if raft.state == StateRole::Leader {
                raft.prs()
                    .iter()
                    // Acknowledged every committed entry, and heard from
                    // within an election timeout. (Not raft's
                    // `recent_active`: check-quorum clears it every election
                    // timeout, so a periodic caller can keep sampling it
                    // just after a reset. Not the Replicate state either: a
                    // follower that caught up from a snapshot stays in
                    // Probe until the next write.)
                    .filter(|&(&id, pr)| {
                        id != raft.id
                            && pr.state != raft::ProgressState::Snapshot
                            && pr.matched >= raft.raft_log.committed
                            && self
                                .last_heard
                                .get(&id)
                                .is_some_and(|at| at.elapsed() < self.election_timeout)
                    })
                    .map(|(&id, _)| id)
                    .collect()
            } else {
                Vec::new()
            },
            voters: {
                let mut voters: Vec<u64> = raft.prs().conf().voters().ids().iter().collect();
                voters.sort_unstable();
                voters
            },
            learners: {
                let mut learners: Vec<u64> = raft.prs().conf().learners().iter().copied().collect();
                learners.sort_unstable();
                learners
            },
        };
        *self.status.lock() = status;
    }
}
