//! How a node comes to belong to a cluster, and why a node whose disk was
//! lost cannot quietly become a founder again.
//!
//! A data directory records the id of the cluster it belongs to. At start:
//!
//! - **Member** (the directory has a cluster id): the node starts as it
//!   was; `--bootstrap` and `--join` are moot.
//! - **Joining** (`--join`, or a directory that started so): the node
//!   starts empty and waits to be added with `elastickv ctl add-node`; it
//!   learns the cluster id from its first snapshot.
//! - **Alone** (no `--peers` besides itself): a single-node cluster is
//!   created at once; no other member can exist.
//! - **Founding** (`--bootstrap`): every node of `--peers` must be up,
//!   started with `--bootstrap` too, and belong to no cluster. The one with
//!   the lowest id then creates the cluster (a random id, every shard's
//!   first configuration, in one synced write) and tells the others, which
//!   record the same. It keeps telling those it has not reached, across
//!   restarts, until each has heard.
//! - Otherwise (an empty directory, other `--peers`, neither flag) the node
//!   refuses to start: it cannot tell a new cluster from one that already
//!   counts it as a member whose data was lost.
//!
//! A founder whose peers answer that they already belong to a cluster that
//! is not waiting for it stops with an error instead: its data was lost,
//! and a member without its data must not vote (see "Replacing a node" in
//! the README).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use elastickv_store::{Membership, NodeIdentity, Store};
use elastickv_transport::pb::{FoundReply, FoundRequest, ProbeReply, ProbeRequest};
use elastickv_transport::{Acceptor, ClusterIdentity, FoundingHandler, format_cluster_id};
use rand::Rng;
use tokio::sync::watch;

use crate::StartError;
use crate::config::NodeConfig;

/// How often founders ask each other while waiting.
const PROBE_EVERY: Duration = Duration::from_millis(500);

/// Waiting founders say what they wait for at most this often.
const WAITING_LOG_EVERY: Duration = Duration::from_secs(10);

/// What this node answers about founding, before and after.
pub struct Founding {
    node_id: u64,
    identity: NodeIdentity,
    /// Node ids of `--peers`, sorted: the founders of a new cluster.
    founders: Vec<u64>,
    /// Waiting to found a cluster (started with `--bootstrap`).
    waiting: bool,
    store: Store,
    cluster: ClusterIdentity,
    /// The cluster id once this node belongs to one.
    founded: watch::Sender<Option<u64>>,
    /// Serialises founding.
    lock: tokio::sync::Mutex<()>,
}

/// Where this node stands after [`establish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// A member of its cluster (its shards have a configuration).
    Member,
    /// Waiting to be added; shards start empty.
    Joining,
}

impl Founding {
    fn probe_reply(&self) -> ProbeReply {
        let cluster_id = self.cluster.get().unwrap_or(0);
        ProbeReply {
            node_id: self.node_id,
            cluster_id,
            founding: self.waiting && cluster_id == 0,
            founders: self.founders.clone(),
            pending: self.store.pending_founders().unwrap_or_default(),
        }
    }

    /// Creates this node's state of cluster `cluster_id` (one synced
    /// write), `pending` being the founders still to be told.
    fn record(&self, cluster_id: u64, pending: &[u64]) -> Result<(), String> {
        self.store
            .record_founding(self.identity, cluster_id, &self.founders, pending)
            .map_err(|e| e.to_string())?;
        self.cluster.adopt(cluster_id);
        self.founded.send_replace(Some(cluster_id));
        tracing::info!(
            node_id = self.node_id,
            cluster_id = %format_cluster_id(cluster_id),
            founders = ?self.founders,
            "cluster created"
        );
        Ok(())
    }
}

#[elastickv_transport::async_trait]
impl FoundingHandler for Founding {
    async fn probe(&self, _request: ProbeRequest) -> ProbeReply {
        self.probe_reply()
    }

    async fn found(&self, request: FoundRequest) -> FoundReply {
        let _one_at_a_time = self.lock.lock().await;
        let refuse = |error: String| FoundReply { ok: false, error };
        if let Some(mine) = self.cluster.get() {
            return if mine == request.cluster_id {
                FoundReply {
                    ok: true,
                    error: String::new(),
                }
            } else {
                refuse(format!(
                    "node {} already belongs to cluster {}",
                    self.node_id,
                    format_cluster_id(mine)
                ))
            };
        }
        if !self.waiting {
            return refuse(format!(
                "node {} was not started with --bootstrap",
                self.node_id
            ));
        }
        let mut founders = request.founders.clone();
        founders.sort_unstable();
        if founders != self.founders {
            return refuse(format!(
                "node {} expects founders {:?} (its --peers), not {founders:?}",
                self.node_id, self.founders
            ));
        }
        if request.cluster_id == 0 {
            return refuse("cluster id 0".into());
        }
        match self.record(request.cluster_id, &[]) {
            Ok(()) => FoundReply {
                ok: true,
                error: String::new(),
            },
            Err(e) => refuse(e),
        }
    }
}

/// Settles which cluster this node belongs to, founding one if that is
/// what the configuration asks (serving the founding service on
/// `acceptor` meanwhile). Returns the handler that answers founding calls
/// from now on.
pub async fn establish(
    config: &NodeConfig,
    store: &Store,
    peers: &BTreeMap<u64, String>,
    acceptor: &Acceptor,
    cluster: &ClusterIdentity,
) -> Result<(Arc<Founding>, Standing), StartError> {
    let identity = NodeIdentity {
        node_id: config.node_id,
        shards: config.shards,
    };
    let store_error = |source| StartError::Store {
        path: config.data_dir.clone(),
        source,
    };
    let membership = store.membership(identity).map_err(store_error)?;
    let (founded, _) = watch::channel(None);
    let founding = Arc::new(Founding {
        node_id: config.node_id,
        identity,
        founders: peers.keys().copied().collect(),
        waiting: config.bootstrap && membership == Membership::Empty,
        store: store.clone(),
        cluster: cluster.clone(),
        founded,
        lock: tokio::sync::Mutex::new(()),
    });
    let standing = match membership {
        Membership::Member { cluster_id } => {
            cluster.adopt(cluster_id);
            Standing::Member
        }
        Membership::Joining => {
            if config.bootstrap {
                tracing::warn!(
                    "this data directory waits to be added to a cluster (it started with \
                     --join); --bootstrap is ignored"
                );
            }
            Standing::Joining
        }
        Membership::Empty if config.join => {
            store.record_joining(identity).map_err(store_error)?;
            Standing::Joining
        }
        Membership::Empty if peers.len() == 1 => {
            // Alone in --peers: no other member can exist.
            founding
                .record(new_cluster_id(), &[])
                .map_err(StartError::Founding)?;
            Standing::Member
        }
        Membership::Empty if config.bootstrap => {
            found_with_peers(&founding, peers, acceptor).await?;
            Standing::Member
        }
        Membership::Empty => {
            return Err(StartError::NoClusterChoice {
                data_dir: config.data_dir.clone(),
            });
        }
    };
    if !store.pending_founders().map_err(store_error)?.is_empty() {
        tokio::spawn(tell_founders(founding.clone(), peers.clone()));
    }
    Ok((founding, standing))
}

fn new_cluster_id() -> u64 {
    rand::thread_rng().gen_range(1..u64::MAX)
}

/// Waits, answering probes, until the founders create the cluster: this
/// node creates it if it has the lowest id, otherwise another founder
/// tells it.
async fn found_with_peers(
    founding: &Arc<Founding>,
    peers: &BTreeMap<u64, String>,
    acceptor: &Acceptor,
) -> Result<(), StartError> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = {
        let (acceptor, identity, handler) = (
            acceptor.clone(),
            founding.cluster.clone(),
            founding.clone() as Arc<dyn FoundingHandler>,
        );
        tokio::spawn(async move {
            elastickv_transport::founding::serve_alone(&acceptor, &identity, handler, async move {
                let _ = stopped.await;
            })
            .await
        })
    };
    let outcome = wait_until_founded(founding, peers).await;
    let _ = stop.send(());
    let _ = server.await;
    outcome
}

async fn wait_until_founded(
    founding: &Arc<Founding>,
    peers: &BTreeMap<u64, String>,
) -> Result<(), StartError> {
    let me = founding.node_id;
    let creator = founding.founders.first().copied().unwrap_or(me);
    let mut founded = founding.founded.subscribe();
    let mut last_log: Option<Instant> = None;
    tracing::info!(
        founders = ?founding.founders,
        creator,
        "waiting for every founder (--bootstrap) to create the cluster"
    );
    loop {
        if founded.borrow().is_some() {
            return Ok(());
        }
        let replies = probe_all(me, &founding.cluster, peers).await;
        let mut waiting_for = Vec::new();
        for (node, reply) in &replies {
            match reply {
                Ok(reply) if reply.cluster_id != 0 => {
                    // A cluster exists. It may be ours being created (the
                    // creator still has to tell this node), or one that
                    // counts this node as a member that lost its data.
                    let from_creator = (creator != me).then(|| replies.get(&creator)).flatten();
                    let told_soon = from_creator.is_some_and(|r| {
                        r.as_ref().is_ok_and(|r| {
                            r.cluster_id == reply.cluster_id && r.pending.contains(&me)
                        })
                    });
                    if told_soon || founded.borrow().is_some() {
                        continue;
                    }
                    if creator != me && !from_creator.is_some_and(|r| r.is_ok()) {
                        // Only the creator can say whether this node is
                        // still to be told: wait for it.
                        waiting_for.push(creator);
                        continue;
                    }
                    return Err(StartError::AlreadyFounded {
                        node: *node,
                        cluster_id: format_cluster_id(reply.cluster_id),
                    });
                }
                Ok(reply) if !reply.founding => waiting_for.push(*node),
                Ok(reply) if reply.founders != founding.founders => {
                    return Err(StartError::Founding(format!(
                        "node {node} expects founders {:?}, this node {:?}: give every founder \
                         the same --peers ids",
                        reply.founders, founding.founders
                    )));
                }
                Ok(_) => {}
                Err(_) => waiting_for.push(*node),
            }
        }
        if creator == me && waiting_for.is_empty() {
            let _one_at_a_time = founding.lock.lock().await;
            if founding.cluster.get().is_none() {
                let others: Vec<u64> = founding
                    .founders
                    .iter()
                    .copied()
                    .filter(|&n| n != me)
                    .collect();
                founding
                    .record(new_cluster_id(), &others)
                    .map_err(StartError::Founding)?;
            }
            return Ok(());
        }
        if last_log.is_none_or(|at| at.elapsed() >= WAITING_LOG_EVERY) {
            last_log = Some(Instant::now());
            waiting_for.sort_unstable();
            waiting_for.dedup();
            tracing::info!(
                waiting_for = ?waiting_for,
                creator,
                "waiting for founders: each must be up, started with --bootstrap and an empty \
                 data directory"
            );
        }
        tokio::select! {
            _ = founded.changed() => {}
            _ = tokio::time::sleep(PROBE_EVERY) => {}
        }
    }
}

/// Every other founder's answer to a probe (or why there was none).
async fn probe_all(
    me: u64,
    identity: &ClusterIdentity,
    peers: &BTreeMap<u64, String>,
) -> BTreeMap<u64, Result<ProbeReply, String>> {
    let calls = peers
        .iter()
        .filter(|&(&node, _)| node != me)
        .map(|(&node, addr)| async move {
            (
                node,
                elastickv_transport::founding::probe(addr, identity, me).await,
            )
        });
    futures::future::join_all(calls).await.into_iter().collect()
}

/// Tells the founders not yet told that the cluster exists, until each
/// has heard (across restarts: the list is kept in the store).
async fn tell_founders(founding: Arc<Founding>, peers: BTreeMap<u64, String>) {
    let Some(cluster_id) = founding.cluster.get() else {
        return;
    };
    let mut warned: BTreeMap<u64, Instant> = BTreeMap::new();
    loop {
        let pending = match founding.store.pending_founders() {
            Ok(pending) => pending,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the founders still to be told");
                return;
            }
        };
        if pending.is_empty() {
            return;
        }
        for node in pending {
            let Some(addr) = peers.get(&node) else {
                continue;
            };
            let request = FoundRequest {
                cluster_id,
                founders: founding.founders.clone(),
                from_node: founding.node_id,
            };
            match elastickv_transport::founding::found(addr, &founding.cluster, request).await {
                Ok(reply) if reply.ok => {
                    if let Err(e) = founding.store.founder_told(node) {
                        tracing::error!(node, error = %e, "cannot record that a founder was told");
                    }
                }
                Ok(reply) => {
                    let due = warned
                        .get(&node)
                        .is_none_or(|at| at.elapsed() >= WAITING_LOG_EVERY);
                    if due {
                        warned.insert(node, Instant::now());
                        tracing::warn!(
                            node,
                            error = %reply.error,
                            "a founder refused the new cluster (logged at most every {WAITING_LOG_EVERY:?})"
                        );
                    }
                }
                Err(e) => tracing::debug!(node, error = %e, "founder not reached yet"),
            }
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
}
