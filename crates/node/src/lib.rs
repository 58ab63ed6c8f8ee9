//! An elastickv node: configuration, the Redis listener, one raft engine
//! per shard on a raft thread, and the store, wired together.
//!
//! # Layout
//!
//! - [`config`]: the TOML file and flags, validated into [`NodeConfig`].
//! - [`server`]: the listener and the per-connection pipeline loop.
//! - [`session`]: connection state and the commands a connection answers
//!   itself (HELLO, AUTH, CLIENT, COMMAND, CONFIG, INFO, ...).
//! - [`backend`]: the router's backend over raft and the store.
//! - [`state_machine`], [`keyspace`]: applying log entries as Redis
//!   commands to the store.
//! - [`expiry`]: active expiry through the log; [`balance`]: spreading
//!   shard leaders over the nodes.
//! - [`founding`]: which cluster the node belongs to: creating one
//!   (`--bootstrap`), waiting to be added (`--join`), refusing to found a
//!   second cluster next to the one that lost this node's data.
//! - [`info`], [`clients`], [`stats`], [`metrics`], [`clock`].
//!
//! # Threads
//!
//! A tokio runtime serves clients and timers; the raft thread owns every
//! shard's `RawNode` and talks to tokio only through bounded channels.

pub mod acl;
mod acl_command;
pub mod admin;
pub mod backend;
pub mod balance;
pub mod clients;
pub mod clock;
pub mod config;
pub mod ctl;
pub mod expiry;
pub mod founding;
pub mod guard;
pub mod info;
pub mod keyspace;
pub mod metrics;
pub mod pause;
pub mod pubsub;
pub mod scripting;
pub mod server;
pub mod session;
pub mod slowlog;
pub mod state_machine;
pub mod stats;
pub mod transaction;
pub mod waiters;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use elastickv_raft::{EngineConfig, EngineError, RaftHandle};
use elastickv_resp::Reply;
use elastickv_router::Router;
use elastickv_store::{Store, StoreError};
use rand::Rng;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{ConfigError, NodeConfig, Overrides};

use crate::backend::NodeBackend;
use crate::clients::Clients;
use crate::clock::ProposalClock;
use crate::state_machine::ShardMachine;
use crate::stats::Stats;

/// The Redis version this server behaves as (HELLO, INFO).
pub const REDIS_VERSION: &str = "7.0.15";

/// Everything connections share.
pub struct NodeState {
    pub config: NodeConfig,
    /// ACL users and ACL LOG.
    pub acl: acl::Acl,
    /// Whether writes are refused for lack of room.
    pub guard: guard::WriteGuard,
    /// Protected mode, as configured and as CONFIG SET changes it.
    pub protected_mode: std::sync::atomic::AtomicBool,
    pub router: Router<NodeBackend>,
    pub clients: Clients,
    pub stats: std::sync::Arc<Stats>,
    pub slowlog: std::sync::Arc<slowlog::Slowlog>,
    pub pause: pause::Pause,
    /// Clients blocked on keys (BLPOP and kin).
    pub waiters: Arc<waiters::KeyWaiters>,
    /// This node's pub/sub subscribers.
    pub pubsub: Arc<pubsub::PubSub>,
    /// Lua scripts: the cache, the interpreters, the runs in progress.
    pub scripts: scripting::Scripts,
    pub started: Instant,
    pub run_id: String,
    pub redis_addr: SocketAddr,
}

/// How many raft threads the shards are spread over:
/// `ELASTICKV_RAFT_THREADS` (1 to the shard count), else one per two cores
/// (the other half serves clients), at least one and at most one per
/// shard. An invalid value is reported and the default used.
pub fn raft_threads(shards: u32, env: &dyn Fn(&str) -> Option<String>) -> usize {
    const VAR: &str = "ELASTICKV_RAFT_THREADS";
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let default = (cores / 2).clamp(1, shards.max(1) as usize);
    let Some(raw) = env(VAR) else {
        return default;
    };
    match raw.trim().parse::<usize>() {
        Ok(n) if (1..=shards.max(1) as usize).contains(&n) => n,
        _ => {
            tracing::warn!(
                variable = VAR,
                value = %raw,
                default,
                "invalid raft thread count (1 to the shard count); using the default"
            );
            default
        }
    }
}

/// Why a node could not start. Each renders as one line for the operator.
#[derive(Debug, Error)]
pub enum StartError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open data directory {path}: {source}")]
    Store { path: PathBuf, source: StoreError },
    #[error("cannot start raft: {0}")]
    Raft(#[from] EngineError),
    #[error("cannot listen on {addr} for Redis clients: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr} for raft peers: {source}")]
    ListenRaft {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Transport(#[from] elastickv_transport::TransportError),
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Metrics(String),
    #[error("{0}")]
    Tls(#[from] elastickv_tls::TlsError),
    #[error("{0}")]
    Acl(String),
    #[error(
        "data directory {data_dir} is empty and --peers names other nodes: start with \
         --bootstrap to create a new cluster of them, or with --join to be added to an existing \
         one (if this node's disk was lost, see \"Replacing a node\" in the README)"
    )]
    NoClusterChoice { data_dir: PathBuf },
    #[error(
        "node {node} already belongs to cluster {cluster_id}, which does not expect this node to \
         found it: this node's data directory is empty, so its data was lost; replace it as \
         \"Replacing a node\" in the README says (remove it, then add it back with --join)"
    )]
    AlreadyFounded { node: u64, cluster_id: String },
    #[error("cannot create the cluster: {0}")]
    Founding(String),
}

/// Makes nodes that membership changes add reachable: records their
/// address and starts streaming raft messages to them.
async fn follow_membership(
    node_id: u64,
    raft: RaftHandle<Reply>,
    store: Store,
    directory: elastickv_transport::PeerDirectory,
    cluster: elastickv_transport::ClusterIdentity,
    mut shutdown: watch::Receiver<bool>,
) {
    let added = raft.members_added();
    loop {
        let member = tokio::select! {
            member = added.recv_async() => match member {
                Ok(member) => member,
                Err(_) => return,
            },
            _ = shutdown.changed() => return,
        };
        if member.node == node_id || !directory.learn(member.node, &member.raft_addr) {
            continue;
        }
        if let Err(e) = store.record_peer(member.node, &member.raft_addr) {
            tracing::error!(node = member.node, error = %e, "cannot record a new member's address");
        }
        tracing::info!(node = member.node, raft_addr = %member.raft_addr, "new cluster member");
        if let Some(lanes) = raft.outbox().peer(member.node) {
            // Ends with the transport, like the senders started with the node.
            drop(elastickv_transport::peer::spawn(
                node_id,
                lanes,
                member.raft_addr,
                cluster.clone(),
                shutdown.clone(),
            ));
        }
    }
}

/// The node's TLS contexts, built from one set of files.
#[derive(Clone, Default)]
struct NodeTls {
    /// The Redis TLS port's.
    clients: Option<Arc<elastickv_tls::TlsContext>>,
    /// Between nodes (`tls_cluster`).
    cluster: Option<Arc<elastickv_tls::TlsContext>>,
}

impl NodeTls {
    fn load(config: &NodeConfig) -> Result<NodeTls, StartError> {
        let Some(files) = config.tls_files() else {
            return Ok(NodeTls::default());
        };
        let auth = match config.tls_auth_clients {
            config::TlsAuthClients::Yes => elastickv_tls::ClientAuth::Required,
            config::TlsAuthClients::Optional => elastickv_tls::ClientAuth::Optional,
            config::TlsAuthClients::No => elastickv_tls::ClientAuth::Off,
        };
        let load = |usage| elastickv_tls::TlsContext::load(files.clone(), usage);
        Ok(NodeTls {
            clients: (config.tls_port != 0)
                .then(|| load(elastickv_tls::Usage::Clients(auth)))
                .transpose()?,
            cluster: config
                .tls_cluster
                .then(|| load(elastickv_tls::Usage::Cluster))
                .transpose()?,
        })
    }
}

/// Binds a listener for Redis clients.
async fn bind_clients(addr: &str) -> Result<(TcpListener, SocketAddr), StartError> {
    let listen_error = |source| StartError::Listen {
        addr: addr.to_string(),
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(listen_error)?;
    let bound = listener.local_addr().map_err(listen_error)?;
    Ok((listener, bound))
}

/// Reads the TLS files again on every SIGHUP (certificates renewed in
/// place): later handshakes use them; if they cannot be used, the ones in
/// force stay and the error is logged.
async fn reload_tls_on_sighup(tls: NodeTls, mut shutdown: watch::Receiver<bool>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; TLS files will not be reloaded");
            return;
        }
    };
    loop {
        tokio::select! {
            Some(()) = hangups.recv() => {}
            _ = shutdown.changed() => return,
        }
        for (what, context) in [("clients", &tls.clients), ("cluster", &tls.cluster)] {
            let Some(context) = context else { continue };
            match context.reload() {
                Ok(()) => {
                    tracing::info!(tls = what, "SIGHUP: TLS certificate, key and CA reloaded")
                }
                Err(e) => tracing::error!(
                    tls = what,
                    error = %e,
                    "SIGHUP: cannot reload the TLS files; the ones loaded before stay in use"
                ),
            }
        }
    }
}

/// A running node.
pub struct Node {
    state: Arc<NodeState>,
    /// Stops the client listener, connections, expiry and balancing.
    stop_clients: watch::Sender<bool>,
    client_tasks: Vec<JoinHandle<()>>,
    /// Stops the raft transport (last, after leadership was handed over).
    stop_transport: watch::Sender<bool>,
    transport_tasks: Vec<JoinHandle<()>>,
}

impl Node {
    /// Opens the data directory, starts the shards' raft engines and begins
    /// serving Redis clients.
    pub async fn start(config: NodeConfig) -> Result<Node, StartError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let db_path = config.data_dir.join("rocksdb");
        let store =
            Store::open(&db_path, &config.store.options()).map_err(|source| StartError::Store {
                path: config.data_dir.clone(),
                source,
            })?;

        let tls = NodeTls::load(&config)?;
        let acl =
            acl::Acl::load(config.acl_file(), config.requirepass()).map_err(StartError::Acl)?;
        let listener = if config.plain_port_disabled() {
            None
        } else {
            Some(bind_clients(&config.redis_addr).await?)
        };
        let tls_listener = match config.tls_addr() {
            Some(addr) => Some(bind_clients(&addr).await?),
            None => None,
        };
        // INFO's tcp_port: the plaintext port, 0 when it is off (as Redis).
        let redis_addr = match (&listener, &tls_listener) {
            (Some((_, addr)), _) => *addr,
            (None, Some((_, addr))) => SocketAddr::new(addr.ip(), 0),
            (None, None) => {
                return Err(StartError::Config(config::ConfigError::Invalid {
                    key: "redis_addr",
                    reason: "no port to serve clients on".into(),
                }));
            }
        };

        let raft_listener = TcpListener::bind(&config.raft_addr)
            .await
            .map_err(|source| StartError::ListenRaft {
                addr: config.raft_addr.clone(),
                source,
            })?;
        let peers = config.peer_map()?;
        let (stop_transport, shutdown_rx) = watch::channel(false);
        let acceptor = elastickv_transport::Acceptor::start(raft_listener, shutdown_rx.clone());
        // A node waiting to be added adopts (and records) the cluster id of
        // the first node-to-node call it gets.
        let cluster = {
            let store = store.clone();
            elastickv_transport::ClusterIdentity::adopting(Arc::new(move |id| {
                store.record_cluster_id(id).map_err(|e| e.to_string())
            }))
            .with_secret(config.cluster_secret()?)
            .with_tls(tls.cluster.clone())
        };
        // Which cluster this node belongs to; founding one first if that
        // is what --bootstrap asks (shards get their first configuration
        // there, never implicitly below).
        let (founding, standing) =
            founding::establish(&config, &store, &peers, &acceptor, &cluster).await?;
        // Nodes added to the cluster since are reachable at the addresses
        // their membership change carried; `--peers` wins where both exist.
        let mut known = store.recorded_peers().map_err(|source| StartError::Store {
            path: config.data_dir.clone(),
            source,
        })?;
        known.extend(peers.clone());
        let directory = elastickv_transport::PeerDirectory::new(known.clone());
        let others: std::collections::BTreeMap<u64, String> = known
            .iter()
            .filter(|&(&id, _)| id != config.node_id)
            .map(|(&id, addr)| (id, addr.clone()))
            .collect();
        let forward = elastickv_transport::ForwardClient::new(directory.clone(), cluster.clone());
        let engine_config = EngineConfig {
            node_id: config.node_id,
            election_tick: config.raft.election_tick,
            heartbeat_tick: config.raft.heartbeat_tick,
            tick: Duration::from_millis(config.raft.tick_ms),
            lease_reads: config.raft.read_mode == config::ReadMode::Lease,
            limits: config.raft.limits(),
            // Founding (above) bootstrapped the shards of a new cluster; a
            // replica without a configuration stays empty until a snapshot
            // makes it a member.
            initial_voters: Vec::new(),
            known_nodes: known.keys().copied().collect(),
            threads: raft_threads(config.shards, &|var| std::env::var(var).ok()),
        };
        let waiters = Arc::new(waiters::KeyWaiters::default());
        let pubsub = Arc::new(pubsub::PubSub::default());
        let machines = (0..config.shards)
            .map(|shard| {
                let machine = ShardMachine::new(config.shards, waiters.clone(), pubsub.clone());
                (shard, machine)
            })
            .collect();
        // Before the engines open: they register their metrics once.
        if !config.metrics_addr.is_empty() {
            let addr = tokio::net::lookup_host(&config.metrics_addr)
                .await
                .ok()
                .and_then(|mut addrs| addrs.next())
                .ok_or_else(|| {
                    StartError::Metrics(format!(
                        "cannot resolve metrics_addr {}",
                        config.metrics_addr
                    ))
                })?;
            metrics::install(addr).map_err(StartError::Metrics)?;
        }

        let raft: RaftHandle<Reply> =
            elastickv_raft::start(&engine_config, &store, machines, &|var| {
                std::env::var(var).ok()
            })?;

        let clock = Arc::new(ProposalClock::default());
        let mut tasks = Vec::new();
        {
            let stepper = raft.clone();
            let step: elastickv_transport::StepFn =
                Arc::new(move |shard, msg| stepper.step(shard, msg));
            let executor = Arc::new(backend::ForwardExecutor {
                raft: raft.clone(),
                clock: clock.clone(),
            });
            let snapshots = Arc::new(backend::SnapshotReceiver {
                raft: raft.clone(),
                store: store.clone(),
                shards: config.shards,
                cluster: cluster.clone(),
            });
            let admin = Arc::new(admin::Admin {
                node_id: config.node_id,
                raft: raft.clone(),
                directory: directory.clone(),
                cluster: cluster.clone(),
                election_timeout: Duration::from_millis(
                    config.raft.tick_ms * config.raft.election_tick as u64,
                ),
            });
            let mut stop = shutdown_rx.clone();
            let services = elastickv_transport::server::Services {
                node_id: config.node_id,
                identity: cluster.clone(),
                step,
                forward: executor,
                snapshots,
                admin,
                founding,
            };
            tasks.push(tokio::spawn(async move {
                let stopped = async move {
                    let _ = stop.changed().await;
                };
                if let Err(e) = elastickv_transport::serve(&acceptor, services, stopped).await {
                    tracing::error!(error = %e, "raft transport server stopped");
                }
            }));
            tasks.push(elastickv_transport::spawn_snapshot_sender(
                raft.clone(),
                directory.clone(),
                cluster.clone(),
                shutdown_rx.clone(),
            ));
            tasks.push(tokio::spawn(follow_membership(
                config.node_id,
                raft.clone(),
                store.clone(),
                directory.clone(),
                cluster.clone(),
                shutdown_rx.clone(),
            )));
            let outbox = raft.outbox();
            for (&peer, addr) in &others {
                if let Some(lanes) = outbox.peer(peer) {
                    tasks.push(elastickv_transport::peer::spawn(
                        config.node_id,
                        lanes,
                        addr.clone(),
                        cluster.clone(),
                        shutdown_rx.clone(),
                    ));
                }
            }
        }
        let backend = NodeBackend::new(
            config.node_id,
            raft,
            store,
            config.shards,
            clock,
            forward,
            Duration::from_millis(config.request_timeout_ms),
        );
        let run_id: String = {
            let mut rng = rand::thread_rng();
            (0..40)
                .map(|_| char::from_digit(rng.gen_range(0..16), 16).unwrap_or('0'))
                .collect()
        };
        let state = Arc::new(NodeState {
            router: Router::new(Arc::new(backend)),
            clients: Clients::default(),
            stats: std::sync::Arc::default(),
            slowlog: std::sync::Arc::default(),
            pause: pause::Pause::default(),
            waiters,
            pubsub,
            scripts: scripting::Scripts::default(),
            started: Instant::now(),
            run_id,
            redis_addr,
            protected_mode: std::sync::atomic::AtomicBool::new(config.protected_mode),
            acl,
            guard: guard::WriteGuard::new(config.maxmemory, config.min_free_disk_bytes),
            config,
        });
        let transport_tasks = tasks;
        let (stop_clients, clients_rx) = watch::channel(false);
        let slots = Arc::new(tokio::sync::Semaphore::new(state.config.maxclients));
        let mut client_tasks = Vec::new();
        for (listener, tls) in [
            (listener.map(|(l, _)| l), None),
            (tls_listener.map(|(l, _)| l), tls.clients.clone()),
        ] {
            if let Some(listener) = listener {
                client_tasks.push(tokio::spawn(server::serve(
                    listener,
                    tls,
                    slots.clone(),
                    state.clone(),
                    clients_rx.clone(),
                )));
            }
        }
        if tls.clients.is_some() || tls.cluster.is_some() {
            client_tasks.push(tokio::spawn(reload_tls_on_sighup(
                tls.clone(),
                clients_rx.clone(),
            )));
        }
        client_tasks.extend([
            tokio::spawn(expiry::run(state.clone(), clients_rx.clone())),
            tokio::spawn(guard::watch(state.clone(), clients_rx.clone())),
            tokio::spawn(metrics::sample(state.clone(), clients_rx.clone())),
            tokio::spawn(balance::run(
                state.clone(),
                peers.keys().copied().collect(),
                clients_rx,
            )),
        ]);
        tracing::info!(
            node_id = state.config.node_id,
            cluster_id = %cluster.get().map_or_else(
                || "none yet (waiting to be added)".to_string(),
                elastickv_transport::format_cluster_id,
            ),
            joining = standing == founding::Standing::Joining,
            shards = state.config.shards,
            raft_threads = engine_config.threads,
            redis_addr = %redis_addr,
            tls_addr = %state.config.tls_addr().unwrap_or_default(),
            tls_cluster = state.config.tls_cluster,
            raft_addr = %state.config.raft_addr,
            peers = peers.len(),
            data_dir = %state.config.data_dir.display(),
            "elastickv is ready to accept connections"
        );
        Ok(Node {
            state,
            stop_clients,
            client_tasks,
            stop_transport,
            transport_tasks,
        })
    }

    pub fn redis_addr(&self) -> SocketAddr {
        self.state.redis_addr
    }

    pub fn state(&self) -> &Arc<NodeState> {
        &self.state
    }

    /// Resolves if the raft engine stops on its own (a fatal error), with
    /// the reason.
    pub async fn failed(&self) -> String {
        self.state.router.backend().raft.stopped().await
    }

    /// Leaves gracefully: stops accepting clients and lets every
    /// connection finish the commands it has read (up to the request
    /// timeout), hands the leadership of every shard it leads to a
    /// caught-up follower, stops the raft engine and flushes the store, so
    /// a restart has nothing to replay.
    pub async fn shutdown(mut self) {
        let _ = self.stop_clients.send(true);
        for task in std::mem::take(&mut self.client_tasks) {
            let _ = task.await;
        }
        let deadline = Instant::now() + Duration::from_millis(self.state.config.request_timeout_ms);
        while self.state.clients.count() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.hand_off_leadership().await;

        let backend = self.state.router.backend();
        let raft = backend.raft.clone();
        let store = backend.store.clone();
        // Joining the raft thread and flushing block; keep them off the
        // async workers.
        let flushed = tokio::task::spawn_blocking(move || {
            raft.shutdown();
            store.flush()
        })
        .await;
        match flushed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "cannot flush the store"),
            Err(e) => tracing::error!(error = %e, "shutdown task failed"),
        }
        let _ = self.stop_transport.send(true);
        for mut task in self.transport_tasks {
            // The gRPC server's graceful stop waits for every open stream,
            // and peers keep theirs open: give it a moment, then cut.
            if tokio::time::timeout(Duration::from_secs(1), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
        tracing::info!("elastickv stopped");
    }

    /// Transfers every shard this node leads to a caught-up follower and
    /// waits (two election timeouts at most) until it leads none.
    async fn hand_off_leadership(&self) {
        let config = &self.state.config;
        let raft = &self.state.router.backend().raft;
        let election =
            Duration::from_millis(config.raft.tick_ms * config.raft.election_tick as u64);
        let deadline = Instant::now() + 2 * election;
        let mut asked: std::collections::HashMap<u32, Instant> = Default::default();
        loop {
            let led: Vec<_> = raft
                .status()
                .into_iter()
                .filter(|s| s.role == elastickv_raft::Role::Leader && !s.caught_up.is_empty())
                .collect();
            if led.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    shards = ?led.iter().map(|s| s.shard).collect::<Vec<_>>(),
                    "could not hand over leadership before shutting down"
                );
                return;
            }
            for status in led {
                // Ask again only if an earlier transfer did not take.
                if asked
                    .get(&status.shard)
                    .is_some_and(|at| at.elapsed() < election)
                {
                    continue;
                }
                let to = status.caught_up[0];
                tracing::info!(
                    shard_id = status.shard,
                    to,
                    "handing leadership over before shutting down"
                );
                asked.insert(status.shard, Instant::now());
                let _ = raft.transfer_leader(status.shard, to).await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
