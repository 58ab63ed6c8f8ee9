//! The `elastickv` binary: parse flags, load the config, run the node until
//! SIGINT/SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use elastickv_node::{Node, NodeConfig, Overrides};
use tracing_subscriber::EnvFilter;

/// A strongly consistent, Redis-compatible, sharded key-value store.
///
/// Every flag can also be set in the TOML file given with --config; a flag
/// beats the file. Raft flow control is tuned per node with
/// ELASTICKV_RAFT_MAX_INFLIGHT_MSGS and ELASTICKV_RAFT_MAX_SIZE_PER_MSG.
#[derive(Debug, Parser)]
#[command(name = "elastickv", version)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// This node's id (1 or more).
    #[arg(long, value_name = "ID")]
    node_id: Option<u64>,
    /// Address Redis clients connect to [default: 127.0.0.1:6379].
    #[arg(long, value_name = "HOST:PORT")]
    redis_addr: Option<String>,
    /// Address of this node's raft transport [default: 127.0.0.1:7379].
    #[arg(long, value_name = "HOST:PORT")]
    raft_addr: Option<String>,
    /// Data directory [default: ./elastickv-data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Number of shards; fixed once the data directory exists [default: 4].
    #[arg(long, value_name = "N")]
    shards: Option<u32>,
    /// Raft addresses of all nodes, this one included: 1=host:port,2=...
    #[arg(long, value_name = "LIST")]
    peers: Option<String>,
    /// Join an existing cluster: start empty and wait to be added with
    /// `elastickv ctl add-node` (instead of founding a cluster of --peers).
    #[arg(long)]
    join: bool,
    /// Create a new cluster of the nodes in --peers (each started with
    /// --bootstrap and an empty data directory). Without it, a node with an
    /// empty data directory and other --peers refuses to start: it might
    /// be a member whose disk was lost. Ignored once the data directory
    /// belongs to a cluster.
    #[arg(long)]
    bootstrap: bool,
    /// Serve Prometheus metrics at this address.
    #[arg(long, value_name = "HOST:PORT")]
    metrics_addr: Option<String>,
    /// Password clients must AUTH with.
    #[arg(long, value_name = "PASSWORD")]
    requirepass: Option<String>,
    /// File holding the cluster secret, which every node-to-node and
    /// `elastickv ctl` call must present (or set ELASTICKV_CLUSTER_SECRET).
    #[arg(long, value_name = "FILE")]
    cluster_secret_file: Option<PathBuf>,
    /// Port for TLS clients, on --redis-addr's host (0: none). With
    /// --redis-addr port 0 the plaintext port is off.
    #[arg(long, value_name = "PORT")]
    tls_port: Option<u16>,
    #[command(flatten)]
    tls: TlsFlags,
    /// Whether the TLS port requires a client certificate signed by the CA.
    #[arg(long, value_name = "yes|no|optional")]
    tls_auth_clients: Option<elastickv_node::config::TlsAuthClients>,
    /// Mutual TLS between nodes and with `elastickv ctl`, with the same
    /// certificate, key and CA.
    #[arg(long, value_name = "yes|no", value_parser = yes_or_no)]
    tls_cluster: Option<bool>,
    /// While no password is set, refuse clients that do not connect from
    /// this host (loopback) [default: yes].
    #[arg(long, value_name = "yes|no", value_parser = yes_or_no)]
    protected_mode: Option<bool>,
    /// ACL users file (`user <name> <rules...>` lines, as Redis's aclfile).
    #[arg(long, value_name = "FILE")]
    aclfile: Option<PathBuf>,
    /// Refuse writes with -OOM once the stored data passes this many bytes
    /// (0: no limit) [default: 0].
    #[arg(long, value_name = "BYTES")]
    maxmemory: Option<u64>,
    /// Refuse writes with -OOM while the data directory's disk has fewer
    /// free bytes than this [default: 268435456].
    #[arg(long, value_name = "BYTES")]
    min_free_disk_bytes: Option<u64>,
    #[command(subcommand)]
    command: Option<Command>,
}

/// The node's certificate, key and CA (PEM files), for the TLS port and
/// between nodes; `elastickv ctl` presents them to a `--tls-cluster yes`
/// node.
#[derive(Debug, clap::Args)]
struct TlsFlags {
    /// Certificate chain (PEM).
    #[arg(long, value_name = "FILE", global = true)]
    tls_cert_file: Option<PathBuf>,
    /// Private key of the certificate (PEM).
    #[arg(long, value_name = "FILE", global = true)]
    tls_key_file: Option<PathBuf>,
    /// CA certificates (PEM) that clients' and peers' certificates must
    /// chain to.
    #[arg(long, value_name = "FILE", global = true)]
    tls_ca_cert_file: Option<PathBuf>,
}

fn yes_or_no(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err(format!("{text:?} is not yes or no")),
    }
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Administer a running cluster through any of its nodes.
    Ctl {
        /// Raft address of the node to talk to.
        #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:7379")]
        addr: String,
        /// File holding the cluster secret (or set ELASTICKV_CLUSTER_SECRET).
        #[arg(long, value_name = "FILE")]
        cluster_secret_file: Option<PathBuf>,
        #[command(subcommand)]
        action: CtlAction,
    },
}

#[derive(Debug, clap::Subcommand)]
enum CtlAction {
    /// Members and, per shard, leader, term, commit and applied index.
    Status,
    /// Add a node (started with --join) to every shard.
    AddNode {
        id: u64,
        /// Its raft address, as the other nodes reach it.
        raft_addr: String,
    },
    /// Remove a node from every shard.
    RemoveNode { id: u64 },
    /// Move a shard's leadership to a node.
    TransferLeader { shard: u32, node: u64 },
}

impl Cli {
    fn overrides(self) -> (Option<PathBuf>, Overrides) {
        let Cli {
            config,
            node_id,
            redis_addr,
            raft_addr,
            data_dir,
            shards,
            peers,
            join,
            bootstrap,
            metrics_addr,
            requirepass,
            cluster_secret_file,
            tls_port,
            tls:
                TlsFlags {
                    tls_cert_file,
                    tls_key_file,
                    tls_ca_cert_file,
                },
            tls_auth_clients,
            tls_cluster,
            protected_mode,
            aclfile,
            maxmemory,
            min_free_disk_bytes,
            command: _,
        } = self;
        (
            config,
            Overrides {
                node_id,
                redis_addr,
                raft_addr,
                data_dir,
                shards,
                peers,
                join,
                bootstrap,
                metrics_addr,
                requirepass,
                cluster_secret_file,
                tls_port,
                tls_cert_file,
                tls_key_file,
                tls_ca_cert_file,
                tls_auth_clients,
                tls_cluster,
                protected_mode,
                aclfile,
                maxmemory,
                min_free_disk_bytes,
            },
        )
    }
}

/// Stack of each runtime thread (see where the runtime is built).
const SCRIPT_STACK_BYTES: usize = 16 << 20;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // Fault injection for tests: FAILPOINTS arms the fail points in builds
    // with the `failpoints` feature; otherwise this does nothing.
    let _failpoints = fail::FailScenario::setup();
    let mut cli = Cli::parse();
    if let Some(Command::Ctl {
        addr,
        cluster_secret_file,
        action,
    }) = cli.command.take()
    {
        return ctl(&addr, cluster_secret_file.as_deref(), &cli.tls, action);
    }
    let (config_path, overrides) = cli.overrides();
    let config = match NodeConfig::load(config_path.as_deref(), overrides) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("elastickv: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("elastickv")
        // Lua scripts run on these threads (as blocking sections), and a
        // script may nest tables up to 1000 deep through cjson and the
        // reply conversions: room for that. Only the pages used are
        // committed.
        .thread_stack_size(SCRIPT_STACK_BYTES)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("elastickv: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        // Already logged, as one ERROR line.
        Err(Stop::Fatal) => ExitCode::FAILURE,
        Err(Stop::Start(e)) => {
            // Start errors already name their cause in one line.
            eprintln!("elastickv: {e}");
            ExitCode::FAILURE
        }
    }
}

fn ctl(
    addr: &str,
    secret_file: Option<&std::path::Path>,
    tls: &TlsFlags,
    action: CtlAction,
) -> ExitCode {
    let secret = match elastickv_node::config::cluster_secret(secret_file) {
        Ok(secret) => secret,
        Err(e) => {
            eprintln!("elastickv ctl: {e}");
            return ExitCode::from(2);
        }
    };
    let tls = match (&tls.tls_cert_file, &tls.tls_key_file, &tls.tls_ca_cert_file) {
        (None, None, None) => None,
        (Some(cert), Some(key), Some(ca)) => {
            let files = elastickv_tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                ca: Some(ca.clone()),
            };
            match elastickv_tls::TlsContext::load(files, elastickv_tls::Usage::Cluster) {
                Ok(context) => Some(context),
                Err(e) => {
                    eprintln!("elastickv ctl: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        _ => {
            eprintln!(
                "elastickv ctl: TLS needs all of --tls-cert-file, --tls-key-file and \
                 --tls-ca-cert-file"
            );
            return ExitCode::from(2);
        }
    };
    let action = match action {
        CtlAction::Status => elastickv_node::ctl::Action::Status,
        CtlAction::AddNode { id, raft_addr } => {
            elastickv_node::ctl::Action::AddNode { id, raft_addr }
        }
        CtlAction::RemoveNode { id } => elastickv_node::ctl::Action::RemoveNode { id },
        CtlAction::TransferLeader { shard, node } => {
            elastickv_node::ctl::Action::TransferLeader { shard, node }
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("elastickv ctl: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(elastickv_node::ctl::run(addr, action, secret, tls)) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("elastickv ctl: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Why the node stopped other than by a signal.
enum Stop {
    /// It could not start.
    Start(anyhow::Error),
    /// The raft thread stopped on a storage error or a panic.
    Fatal,
}

async fn run(config: NodeConfig) -> Result<(), Stop> {
    let node = Node::start(config)
        .await
        .map_err(|e| Stop::Start(e.into()))?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Stop::Start(e.into()))?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received; shutting down"),
        _ = terminate.recv() => tracing::info!("SIGTERM received; shutting down"),
        reason = node.failed() => {
            // Every shard of this node is stopped: a replica whose storage
            // failed cannot be trusted to follow its log. Exiting makes the
            // failure visible to clients (their connections close) and to
            // the supervisor; the other nodes carry on.
            tracing::error!(
                "{reason}; the raft engine stopped and elastickv exits (see \"Storage errors\" in the README)"
            );
            return Err(Stop::Fatal);
        }
    }
    node.shutdown().await;
    Ok(())
}
