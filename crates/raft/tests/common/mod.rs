//! Shared by the raft crate's tests: a small key-value state machine, and
//! an in-process cluster whose network can partition, pause, delay and
//! drop messages (modelled on raft-rs's harness and TiKV's transport
//! filters).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use elastickv_raft::{
    EngineConfig, LimitsConfig, MembershipChange, RaftHandle, Role, StateMachine, start,
};
use elastickv_store::{ApplyBatch, Store, StoreError, StoreOptions};
use rand::Rng;

/// Payload `key=value`; output: (entry index, previous value).
pub struct KvMachine {
    pub applies: Arc<AtomicU64>,
}

pub type Output = (u64, Option<Vec<u8>>);

impl StateMachine for KvMachine {
    type Output = Output;

    fn apply(
        &mut self,
        batch: &mut ApplyBatch,
        index: u64,
        data: &[u8],
    ) -> Result<Output, StoreError> {
        self.applies.fetch_add(1, Ordering::SeqCst);
        let split = data.iter().position(|&b| b == b'=').unwrap_or(data.len());
        let (key, value) = (&data[..split], data.get(split + 1..).unwrap_or_default());
        let previous = batch.get_meta(0, key)?;
        batch.put_meta(0, key, value.to_vec())?;
        Ok((index, previous))
    }
}

/// The harness's tick unless a test asks for another: 10 ms, so an
/// election timeout is 100-200 ms and a lease 80 ms.
pub const TICK: Duration = Duration::from_millis(10);

pub fn engine_config(
    node_id: u64,
    voters: &[u64],
    limits: LimitsConfig,
    tick: Duration,
) -> EngineConfig {
    EngineConfig {
        threads: 2,
        node_id,
        election_tick: 10,
        heartbeat_tick: 1,
        tick,
        lease_reads: true,
        limits,
        initial_voters: voters.to_vec(),
        known_nodes: voters.to_vec(),
    }
}

/// What the network does to messages.
#[derive(Default)]
pub struct Filters {
    /// Nodes cut off from everyone.
    pub isolated: HashSet<u64>,
    /// `(from, to)`: messages from one node to another are lost (a one-way
    /// partition; insert both directions to cut a link).
    pub cut: HashSet<(u64, u64)>,
    /// Destinations whose incoming messages are left queued in the
    /// senders' lanes (a stalled peer).
    pub paused: HashSet<u64>,
    /// `(from, to)`: messages on this one link are left queued in the
    /// sender's lane until the link is released.
    pub held: HashSet<(u64, u64)>,
    /// Random extra latency per message, milliseconds.
    pub delay_ms: Option<(u64, u64)>,
    /// `(from, to)`: fixed extra latency on one link, milliseconds.
    pub link_delay_ms: std::collections::HashMap<(u64, u64), u64>,
    /// Probability of losing a message.
    pub drop_rate: f64,
    /// Snapshot transfers to cut after their first chunk (then the
    /// transfer fails, as a broken connection would).
    pub cut_snapshots: u64,
    /// How long a snapshot transfer takes, milliseconds.
    pub snapshot_delay_ms: u64,
}

/// Snapshot transfers seen by the in-process network.
#[derive(Default)]
pub struct SnapshotCounts {
    pub delivered: AtomicU64,
    pub cut: AtomicU64,
}

pub struct Node {
    pub id: u64,
    pub store: Store,
    pub raft: RaftHandle<Output>,
    /// Set when this incarnation stops: its delivery tasks end.
    stopped: Arc<AtomicBool>,
    _dir: tempfile::TempDir,
}

/// Where messages for each node go: its current incarnation's engines.
type Handles = Arc<Mutex<BTreeMap<u64, RaftHandle<Output>>>>;

pub struct Cluster {
    pub nodes: BTreeMap<u64, Node>,
    pub filters: Arc<Mutex<Filters>>,
    pub refused_steps: Arc<AtomicU64>,
    pub snapshots: Arc<SnapshotCounts>,
    pub shards: u32,
    voters: Vec<u64>,
    limits: LimitsConfig,
    tick: Duration,
    handles: Handles,
    /// Every node's store, for snapshot deliveries.
    stores: Arc<Mutex<BTreeMap<u64, Store>>>,
}

impl Cluster {
    /// `n` nodes with `shards` shards each, wired through the filtered
    /// in-process network.
    pub fn start(n: u64, shards: u32, limits: LimitsConfig) -> Cluster {
        Cluster::start_with_tick(n, shards, limits, TICK)
    }

    /// Like [`Cluster::start`] with another tick (elections, leases and
    /// read timeouts scale with it).
    pub fn start_with_tick(n: u64, shards: u32, limits: LimitsConfig, tick: Duration) -> Cluster {
        let voters: Vec<u64> = (1..=n).collect();
        let mut cluster = Cluster {
            nodes: BTreeMap::new(),
            filters: Arc::default(),
            refused_steps: Arc::default(),
            snapshots: Arc::default(),
            shards,
            voters: voters.clone(),
            limits,
            tick,
            handles: Arc::default(),
            stores: Arc::default(),
        };
        for &id in &voters {
            cluster.open_node(id, &voters);
        }
        for &id in &voters {
            cluster.wire(id);
        }
        cluster
    }

    /// A node with a fresh store whose shards start with `initial_voters`
    /// (none: an empty replica, waiting to be added).
    fn open_node(&mut self, id: u64, initial_voters: &[u64]) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        self.stores.lock().unwrap().insert(id, store.clone());
        let raft = self.open_engines(id, &store, initial_voters);
        self.nodes.insert(
            id,
            Node {
                id,
                store,
                raft,
                stopped: Arc::default(),
                _dir: dir,
            },
        );
    }

    /// Adds a node with an empty store as a learner of every shard, as
    /// `elastickv ctl add-node` does: it catches up by snapshot.
    pub async fn add_learner(&mut self, id: u64) {
        self.open_node(id, &[]);
        self.wire(id);
        let others: Vec<u64> = self.nodes.keys().copied().filter(|&n| n != id).collect();
        for &from in &others {
            self.wire_link(from, id);
        }
        for shard in 0..self.shards {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let leader = self.wait_leader(shard, Duration::from_secs(10)).await;
                let change = MembershipChange::AddLearner {
                    node: id,
                    raft_addr: String::new(),
                };
                if self.nodes[&leader]
                    .raft
                    .change_membership(shard, change)
                    .await
                    .is_ok()
                {
                    break;
                }
                assert!(Instant::now() < deadline, "node {id} was not added");
            }
        }
    }

    fn open_engines(&self, id: u64, store: &Store, initial_voters: &[u64]) -> RaftHandle<Output> {
        let machines = (0..self.shards)
            .map(|s| {
                (
                    s,
                    KvMachine {
                        applies: Arc::new(AtomicU64::new(0)),
                    },
                )
            })
            .collect();
        let mut config = engine_config(id, &self.voters, self.limits, self.tick);
        config.initial_voters = initial_voters.to_vec();
        let raft = start(&config, store, machines, &|_| None).unwrap();
        self.handles.lock().unwrap().insert(id, raft.clone());
        raft
    }

    /// Restarts node `id`'s raft engines from its store, as a process
    /// restart would: everything only in memory (the leader it knew, its
    /// election timer, pending requests) is gone; the log, hard state and
    /// applied data remain.
    pub fn restart(&mut self, id: u64) {
        let node = self.nodes.get(&id).unwrap();
        node.stopped.store(true, Ordering::SeqCst);
        node.raft.shutdown();
        let store = node.store.clone();
        let raft = self.open_engines(id, &store, &self.voters);
        let node = self.nodes.get_mut(&id).unwrap();
        node.raft = raft;
        node.stopped = Arc::default();
        self.wire(id);
    }

    /// Node `id` loses its disk: it restarts on an empty store with no
    /// configuration (as `--join` would start it), while the others still
    /// count it as a voter.
    pub fn wipe(&mut self, id: u64) {
        let node = self.nodes.get(&id).unwrap();
        node.stopped.store(true, Ordering::SeqCst);
        node.raft.shutdown();
        self.open_node(id, &[]);
        self.wire(id);
    }

    /// Delivery tasks from node `from` to every other node, and its
    /// snapshot sender.
    fn wire(&self, from: u64) {
        for &to in self.nodes.keys() {
            if from != to {
                self.wire_link(from, to);
            }
        }
        self.wire_snapshots(from);
    }

    /// A delivery task for messages from node `from` to node `to`, once
    /// `from` has a lane to `to` (a node added later gets one when its
    /// addition applies).
    fn wire_link(&self, from: u64, to: u64) {
        let node = &self.nodes[&from];
        let outbox = node.raft.outbox();
        let handles = self.handles.clone();
        let filters = self.filters.clone();
        let refused = self.refused_steps.clone();
        let stopped = node.stopped.clone();
        tokio::spawn(async move {
            let peer = loop {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                match outbox.peer(to) {
                    Some(peer) => break peer,
                    None => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            };
            loop {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let held = {
                    let f = filters.lock().unwrap();
                    f.paused.contains(&to) || f.held.contains(&(from, to))
                };
                if held {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                let batch = peer.drain(1 << 20);
                if batch.is_empty() {
                    tokio::select! {
                        _ = peer.wait() => {}
                        _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                    }
                    continue;
                }
                for (shard, msg) in batch {
                    let (cut, delay) = {
                        let f = filters.lock().unwrap();
                        let mut rng = rand::thread_rng();
                        let cut = f.isolated.contains(&from)
                            || f.isolated.contains(&to)
                            || f.cut.contains(&(from, to))
                            || rng.gen_bool(f.drop_rate.clamp(0.0, 1.0));
                        let delay = f
                            .link_delay_ms
                            .get(&(from, to))
                            .copied()
                            .or_else(|| f.delay_ms.map(|(lo, hi)| rng.gen_range(lo..=hi)));
                        (cut, delay)
                    };
                    if cut {
                        continue;
                    }
                    let Some(dest) = handles.lock().unwrap().get(&to).cloned() else {
                        continue;
                    };
                    match delay {
                        Some(ms) => {
                            let refused = refused.clone();
                            tokio::spawn(async move {
                                tokio::time::sleep(Duration::from_millis(ms)).await;
                                if dest.step(shard, msg).is_err() {
                                    refused.fetch_add(1, Ordering::Relaxed);
                                }
                            });
                        }
                        None => {
                            if dest.step(shard, msg).is_err() {
                                refused.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
            }
        });
    }

    /// Delivers node `from`'s snapshots to their receivers' stores in
    /// small chunks, through the same filters (and `cut_snapshots`).
    fn wire_snapshots(&self, from: u64) {
        let stores = self.stores.clone();
        let handles = self.handles.clone();
        {
            let node = &self.nodes[&from];
            let jobs = node.raft.snapshot_jobs();
            let sender = node.raft.clone();
            let filters = self.filters.clone();
            let counts = self.snapshots.clone();
            tokio::spawn(async move {
                while let Ok(job) = jobs.recv_async().await {
                    let (shard, to) = (job.shard, job.to);
                    let dest = handles.lock().unwrap().get(&to).cloned();
                    let (Some(store), Some(dest)) =
                        (stores.lock().unwrap().get(&to).cloned(), dest)
                    else {
                        sender.report_snapshot(shard, to, false).await;
                        continue;
                    };
                    let filters = filters.clone();
                    let counts = counts.clone();
                    let delivered = tokio::task::spawn_blocking(move || {
                        let reachable = |f: &Filters| {
                            !f.isolated.contains(&from)
                                && !f.isolated.contains(&to)
                                && !f.cut.contains(&(from, to))
                        };
                        let cut_this = {
                            let mut f = filters.lock().unwrap();
                            if !reachable(&f) {
                                return false;
                            }
                            let cut = f.cut_snapshots > 0;
                            if cut {
                                f.cut_snapshots -= 1;
                            }
                            cut
                        };
                        let delay = filters.lock().unwrap().snapshot_delay_ms;
                        std::thread::sleep(Duration::from_millis(delay));
                        let meta = job.message.get_snapshot().get_metadata();
                        let ranges = elastickv_store::ShardRanges {
                            shard,
                            first_slot: 0,
                            end_slot: elastickv_store::SLOT_COUNT,
                        };
                        let Ok(mut stager) = store.stage_snapshot(ranges, meta.index, meta.term)
                        else {
                            return false;
                        };
                        let mut chunks = 0;
                        let mut broken = false;
                        let streamed = job.data.stream(64, |chunk| {
                            chunks += 1;
                            if (cut_this && chunks > 1) || !reachable(&filters.lock().unwrap()) {
                                broken = true;
                                return false;
                            }
                            stager.write(&chunk).is_ok()
                        });
                        if broken {
                            counts.cut.fetch_add(1, Ordering::SeqCst);
                            return false;
                        }
                        let Ok((crc, total)) = streamed else {
                            return false;
                        };
                        if stager.finish(crc, total).is_err() {
                            return false;
                        }
                        if dest.step(shard, job.message).is_err() {
                            return false;
                        }
                        counts.delivered.fetch_add(1, Ordering::SeqCst);
                        true
                    })
                    .await
                    .unwrap_or(false);
                    sender.report_snapshot(shard, to, delivered).await;
                }
            });
        }
    }

    pub fn node(&self, id: u64) -> &Node {
        &self.nodes[&id]
    }

    /// The leader of `shard` as seen by a majority of nodes, if any.
    pub fn leader(&self, shard: u32) -> Option<u64> {
        let mut votes: BTreeMap<u64, usize> = BTreeMap::new();
        for node in self.nodes.values() {
            let status = &node.raft.status()[shard as usize];
            if status.role == Role::Leader {
                *votes.entry(node.id).or_default() += 1;
            } else if status.leader != 0 {
                *votes.entry(status.leader).or_default() += 1;
            }
        }
        let leader = votes
            .into_iter()
            .find(|&(_, n)| n > self.nodes.len() / 2)
            .map(|(id, _)| id)?;
        (self.nodes[&leader].raft.status()[shard as usize].role == Role::Leader).then_some(leader)
    }

    pub async fn wait_leader(&self, shard: u32, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(leader) = self.leader(shard) {
                return leader;
            }
            assert!(
                Instant::now() < deadline,
                "no leader for shard {shard} within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Proposes `key=value` through whichever node leads `shard`,
    /// retrying through leadership changes until `timeout`.
    pub async fn write(&self, shard: u32, key: &str, value: &str, timeout: Duration) -> Output {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(leader) = self.leader(shard) {
                let fut = self.nodes[&leader]
                    .raft
                    .propose(shard, format!("{key}={value}").into_bytes());
                if let Ok(Ok(out)) = tokio::time::timeout(Duration::from_millis(500), fut).await {
                    return out;
                }
            }
            assert!(
                Instant::now() < deadline,
                "write {key} did not commit within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn value(&self, node: u64, key: &str) -> Option<Vec<u8>> {
        self.nodes[&node]
            .store
            .reader()
            .get_meta(0, key.as_bytes())
            .unwrap()
            .map(|v| v.to_vec())
    }

    /// Waits until every node has applied `shard`'s log up to the highest
    /// index any node reports, and at least up to `at_least` (the index a
    /// write returned: statuses are published after replies are sent).
    pub async fn wait_converged(&self, shard: u32, at_least: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let statuses: Vec<_> = self
                .nodes
                .values()
                .map(|n| n.raft.status()[shard as usize].clone())
                .collect();
            let commit = statuses
                .iter()
                .map(|s| s.commit)
                .max()
                .unwrap_or(0)
                .max(at_least);
            if statuses.iter().all(|s| s.applied >= commit) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "shard {shard} did not converge within {timeout:?}: {statuses:#?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn shutdown(&self) {
        for node in self.nodes.values() {
            node.raft.shutdown();
        }
    }
}
