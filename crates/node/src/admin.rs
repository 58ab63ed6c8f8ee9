//! The administration service's node side: membership changes and
//! leadership moves, each shard's step run by that shard's leader.
//!
//! A request may reach any node. For every shard, the node finds the
//! shard's leader and asks it (`ChangeShard`, possibly itself) to take one
//! step; a step refused because leadership moved, or that could not reach
//! the leader (it just died or was cut off), is retried with whoever leads
//! next. Every step is idempotent (an applied change is recognised and
//! skipped), so retrying one whose outcome is unknown is safe. Raft allows
//! one configuration change at a time per shard and commits one only
//! through a quorum, so an old leader cut off from the majority cannot
//! complete a change.

use std::time::{Duration, Instant};

use elastickv_raft::{MembershipChange, ProposeError, RaftHandle, Role, ShardStatus};
use elastickv_resp::Reply;
use elastickv_transport::PeerDirectory;
use elastickv_transport::admin::AdminHandler;
use elastickv_transport::pb::change_shard_request::Kind;
use elastickv_transport::pb::{
    AddNodeRequest, ChangeReply, ChangeShardRequest, PeerAddress, RemoveNodeRequest, ShardState,
    StatusReply, TransferLeaderRequest,
};

/// How long a learner may take to catch up before promotion gives up.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(120);

/// How long one shard's step may keep looking for a leader.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a proposed change may take to commit.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Admin {
    pub node_id: u64,
    pub raft: RaftHandle<Reply>,
    pub directory: PeerDirectory,
    /// Carried by the steps this node asks of other nodes.
    pub cluster: elastickv_transport::ClusterIdentity,
    /// An election timeout: how long a leadership transfer may take.
    pub election_timeout: Duration,
}

fn failed(error: impl Into<String>) -> ChangeReply {
    ChangeReply {
        ok: false,
        error: error.into(),
        ..Default::default()
    }
}

/// A step that did not happen for a passing reason; see
/// [`ChangeReply::retry`].
fn try_again(error: impl Into<String>, leader: u64) -> ChangeReply {
    ChangeReply {
        retry: true,
        not_leader: leader,
        error: error.into(),
        ..Default::default()
    }
}

fn done(step: String) -> ChangeReply {
    ChangeReply {
        ok: true,
        steps: vec![step],
        ..Default::default()
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::Candidate => "candidate",
        Role::Learner => "learner",
    }
}

impl Admin {
    fn shard_status(&self, shard: u32) -> Option<ShardStatus> {
        self.raft.shard_status(shard)
    }

    /// Runs `request` on its shard's leader, following leadership moves,
    /// until it is done, fails for good, or `timeout` has passed.
    async fn on_leader(&self, request: ChangeShardRequest, timeout: Duration) -> ChangeReply {
        let deadline = Instant::now() + timeout;
        let mut hint = 0;
        loop {
            let leader = match self.shard_status(request.shard) {
                Some(status) if hint == 0 => status.leader,
                Some(_) => hint,
                None => return failed(format!("unknown shard {}", request.shard)),
            };
            let reply = if leader == self.node_id {
                self.change_shard(request.clone()).await
            } else if leader != 0 {
                self.remote_change(leader, request.clone()).await
            } else {
                try_again("no leader", 0)
            };

            if reply.ok {
                return reply;
            }
            if !reply.retry || Instant::now() >= deadline {
                let prefix = format!("shard {}: ", request.shard);
                let error = if reply.error.starts_with(&prefix) {
                    reply.error.clone()
                } else {
                    format!("{prefix}{}", reply.error)
                };
                return ChangeReply { error, ..reply };
            }
            hint = reply.not_leader;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Asks node `node` (the leader, as far as this node knows) to take
    /// the step. Not reaching it, or no answer in time, is a passing
    /// failure: the leader may just have died, and a new one is elected
    /// within seconds.
    async fn remote_change(&self, node: u64, request: ChangeShardRequest) -> ChangeReply {
        let Some(addr) = self.directory.get(node) else {
            return failed(format!("no address known for node {node}"));
        };
        let limit = self.step_rpc_timeout(&request);
        let attempt = elastickv_transport::admin::change_shard(&addr, &self.cluster, request);
        match tokio::time::timeout(limit, attempt).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => try_again(format!("cannot reach node {node}: {e}"), 0),
            Err(_) => try_again(format!("node {node} did not answer within {limit:?}"), 0),
        }
    }

    /// How long one step on a remote leader may take before it is treated
    /// as lost (and retried with whoever leads then).
    fn step_rpc_timeout(&self, request: &ChangeShardRequest) -> Duration {
        let margin = Duration::from_secs(5);
        match Kind::try_from(request.kind) {
            Ok(Kind::Promote) => CATCH_UP_TIMEOUT + COMMIT_TIMEOUT + margin,
            Ok(Kind::TransferLeader) => self.transfer_timeout() + margin,
            _ => COMMIT_TIMEOUT + margin,
        }
    }

    /// How long a leadership transfer may take: two election timeouts.
    fn transfer_timeout(&self) -> Duration {
        2 * self.election_timeout
    }

    /// Proposes `change` and waits until it is applied here. A leader cut
    /// off from the majority cannot commit it: that fails after
    /// [`COMMIT_TIMEOUT`] (the change may still commit later, if this node
    /// regains contact while still leading).
    async fn commit_change(&self, shard: u32, change: MembershipChange) -> Result<(), ChangeReply> {
        match tokio::time::timeout(COMMIT_TIMEOUT, self.raft.change_membership(shard, change)).await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(change_error(shard, e)),
            Err(_) => Err(failed(format!(
                "shard {shard}: the change was not committed within {COMMIT_TIMEOUT:?} \
                 (no quorum reachable?)"
            ))),
        }
    }

    fn shard_count(&self) -> u32 {
        self.raft.shard_count() as u32
    }

    /// Runs `steps` on every shard in turn, stopping at the first failure.
    async fn every_shard(&self, steps: impl Fn(u32) -> Vec<ChangeShardRequest>) -> ChangeReply {
        let mut log = Vec::new();
        for shard in 0..self.shard_count() {
            for request in steps(shard) {
                let reply = self.on_leader(request, STEP_TIMEOUT).await;
                log.extend(reply.steps);
                if !reply.ok {
                    return ChangeReply {
                        error: reply.error,
                        steps: log,
                        ..Default::default()
                    };
                }
            }
        }
        ChangeReply {
            ok: true,
            steps: log,
            ..Default::default()
        }
    }

    async fn wait_until(&self, timeout: Duration, mut ready: impl FnMut(&Self) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if ready(self) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ready(self)
    }
}

fn change_error(shard: u32, e: ProposeError) -> ChangeReply {
    match e {
        ProposeError::NotLeader { leader, .. } => try_again(
            format!("not the leader of shard {shard}"),
            leader.unwrap_or(0),
        ),
        e @ (ProposeError::Dropped { .. } | ProposeError::ChangeInProgress { .. }) => {
            try_again(format!("shard {shard}: {e}"), 0)
        }
        e => failed(format!("shard {shard}: {e}")),
    }
}

#[elastickv_transport::async_trait]
impl AdminHandler for Admin {
    async fn status(&self) -> StatusReply {
        let shards = self
            .raft
            .status()
            .into_iter()
            .map(|s| ShardState {
                shard: s.shard,
                role: role_name(s.role).to_string(),
                leader: s.leader,
                term: s.term,
                commit: s.commit,
                applied: s.applied,
                first_index: s.first_index,
                last_index: s.last_index,
                voters: s.voters,
                learners: s.learners,
            })
            .collect();
        let peers = self
            .directory
            .all()
            .into_iter()
            .map(|(node, raft_addr)| PeerAddress { node, raft_addr })
            .collect();
        StatusReply {
            node_id: self.node_id,
            cluster_id: self.cluster.get().unwrap_or(0),
            shards,
            peers,
        }
    }

    async fn add_node(&self, request: AddNodeRequest) -> ChangeReply {
        let valid_addr = request
            .raft_addr
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if request.node == 0 || !valid_addr {
            return failed(format!(
                "add-node needs a node id (1 or more) and its raft address as host:port, got {} {:?}",
                request.node, request.raft_addr
            ));
        }
        let (node, addr) = (request.node, request.raft_addr);
        self.every_shard(|shard| {
            [Kind::AddLearner, Kind::Promote]
                .into_iter()
                .map(|kind| ChangeShardRequest {
                    shard,
                    kind: kind as i32,
                    node,
                    raft_addr: addr.clone(),
                })
                .collect()
        })
        .await
    }

    async fn remove_node(&self, request: RemoveNodeRequest) -> ChangeReply {
        let node = request.node;
        // Where the node leads a shard, the Remove step first hands its
        // leadership to a caught-up follower.
        self.every_shard(|shard| {
            vec![ChangeShardRequest {
                shard,
                kind: Kind::Remove as i32,
                node,
                raft_addr: String::new(),
            }]
        })
        .await
    }

    /// Moves one shard's leadership, or says within about two election
    /// timeouts why it did not move.
    async fn transfer_leader(&self, request: TransferLeaderRequest) -> ChangeReply {
        self.on_leader(
            ChangeShardRequest {
                shard: request.shard,
                kind: Kind::TransferLeader as i32,
                node: request.node,
                raft_addr: String::new(),
            },
            self.transfer_timeout(),
        )
        .await
    }

    async fn change_shard(&self, request: ChangeShardRequest) -> ChangeReply {
        let shard = request.shard;
        let Some(status) = self.shard_status(shard) else {
            return failed(format!("unknown shard {shard}"));
        };
        if status.role != Role::Leader {
            return try_again(format!("not the leader of shard {shard}"), status.leader);
        }
        let node = request.node;
        let Ok(kind) = Kind::try_from(request.kind) else {
            return failed(format!("unknown change kind {}", request.kind));
        };
        match kind {
            Kind::TransferLeader => {
                if node == self.node_id {
                    return done(format!("shard {shard}: node {node} leads it already"));
                }
                if !status.voters.contains(&node) {
                    return failed(format!("shard {shard}: node {node} is not a voter"));
                }
                if let Err(e) = self.raft.transfer_leader(shard, node).await {
                    return change_error(shard, e);
                }
                let timeout = self.transfer_timeout();
                self.wait_until(timeout, |admin| {
                    admin
                        .shard_status(shard)
                        .is_some_and(|s| s.role != Role::Leader)
                })
                .await;
                let now = self.shard_status(shard).unwrap_or_default();
                if now.leader == node {
                    done(format!("shard {shard}: leadership moved to node {node}"))
                } else if now.role == Role::Leader {
                    // Raft gave up on the transfer (an election timeout
                    // passed): the transferee is behind, or cannot be
                    // reached, or cannot reach this node.
                    try_again(
                        format!(
                            "node {node} did not take leadership within {timeout:?} (it may be \
                             behind, or unable to reach node {}); node {} still leads",
                            self.node_id, self.node_id
                        ),
                        0,
                    )
                } else {
                    // Someone else won the election the transfer started,
                    // or it is still going on: look again.
                    try_again(
                        format!(
                            "leadership left node {} but went to node {}, not {node}",
                            self.node_id, now.leader
                        ),
                        now.leader,
                    )
                }
            }
            Kind::AddLearner => {
                if status.voters.contains(&node) || status.learners.contains(&node) {
                    return done(format!("shard {shard}: node {node} is already a member"));
                }
                // Every replica (this one included) learns the address when
                // it applies the change, and starts sending to the node.
                let change = MembershipChange::AddLearner {
                    node,
                    raft_addr: request.raft_addr,
                };
                match self.commit_change(shard, change).await {
                    Ok(()) => done(format!("shard {shard}: node {node} added as a learner")),
                    Err(reply) => reply,
                }
            }
            Kind::Promote => {
                if status.voters.contains(&node) {
                    return done(format!("shard {shard}: node {node} is already a voter"));
                }
                let started = Instant::now();
                // Caught up, or this node no longer leads (leadership moved
                // while the learner caught up): then the new leader is
                // asked, rather than waiting here for nothing.
                self.wait_until(CATCH_UP_TIMEOUT, |admin| {
                    admin
                        .shard_status(shard)
                        .is_none_or(|s| s.role != Role::Leader || s.caught_up.contains(&node))
                })
                .await;
                let now = self.shard_status(shard).unwrap_or_default();
                if now.role != Role::Leader {
                    return try_again(
                        format!("not the leader of shard {shard} any more"),
                        now.leader,
                    );
                }
                if !now.caught_up.contains(&node) {
                    return failed(format!(
                        "shard {shard}: learner {node} did not catch up within {CATCH_UP_TIMEOUT:?}"
                    ));
                }
                let took = started.elapsed();
                match self
                    .commit_change(shard, MembershipChange::Promote { node })
                    .await
                {
                    Ok(()) => done(format!(
                        "shard {shard}: node {node} caught up in {} ms and is now a voter",
                        took.as_millis()
                    )),
                    Err(reply) => reply,
                }
            }
            Kind::Remove => {
                if !status.voters.contains(&node) && !status.learners.contains(&node) {
                    return done(format!("shard {shard}: node {node} is not a member"));
                }
                if node == self.node_id {
                    // Removing the leader itself: hand over to a follower
                    // that is caught up (and so reachable) first; the
                    // caller asks again on the new leader.
                    let to = status
                        .caught_up
                        .iter()
                        .copied()
                        .find(|&v| v != node && status.voters.contains(&v));
                    if let Some(to) = to {
                        let _ = self.raft.transfer_leader(shard, to).await;
                    }
                    return try_again(
                        format!("shard {shard}: leadership is moving off node {node}"),
                        0,
                    );
                }
                match self
                    .commit_change(shard, MembershipChange::Remove { node })
                    .await
                {
                    Ok(()) => done(format!("shard {shard}: node {node} removed")),
                    Err(reply) => reply,
                }
            }
        }
    }
}
