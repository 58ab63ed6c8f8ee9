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
    /// Serve Prometheus metrics at this address.
    #[arg(long, value_name = "HOST:PORT")]
    metrics_addr: Option<String>,
    /// Password clients must AUTH with.
    #[arg(long, value_name = "PASSWORD")]
    requirepass: Option<String>,
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
            metrics_addr,
            requirepass,
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
                metrics_addr,
                requirepass,
            },
        )
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let (config_path, overrides) = Cli::parse().overrides();
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
        Err(e) => {
            // Start errors already name their cause in one line.
            eprintln!("elastickv: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: NodeConfig) -> anyhow::Result<()> {
    let node = Node::start(config).await?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received; shutting down"),
        _ = terminate.recv() => tracing::info!("SIGTERM received; shutting down"),
        reason = node.failed() => {
            anyhow::bail!("raft engine stopped: {reason}");
        }
    }
    node.shutdown().await;
    Ok(())
}
