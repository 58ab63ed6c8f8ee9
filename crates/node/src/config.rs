//! Node configuration: a TOML file (`--config`) overlaid by command-line
//! flags, validated once at start-up. Every problem is reported as one line
//! naming the key and what is wrong.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use elastickv_raft::LimitsConfig;
use serde::Deserialize;
use thiserror::Error;

/// Most shards a node accepts: each is a raft group with its own log.
pub const MAX_SHARDS: u32 = 1024;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}, line {line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("invalid {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
    #[error("{0}")]
    Secret(#[from] elastickv_transport::SecretError),
}

/// The environment variable that may hold the cluster secret itself
/// (instead of `cluster_secret_file`).
pub const CLUSTER_SECRET_ENV: &str = "ELASTICKV_CLUSTER_SECRET";

/// The cluster secret from `file` if given, else from
/// [`CLUSTER_SECRET_ENV`] if set; both at once is refused as ambiguous.
/// Shared by the node and `elastickv ctl`.
pub fn cluster_secret(
    file: Option<&Path>,
) -> Result<Option<elastickv_transport::ClusterSecret>, ConfigError> {
    let from_env = std::env::var_os(CLUSTER_SECRET_ENV).filter(|v| !v.is_empty());
    match (file, from_env) {
        (Some(_), Some(_)) => Err(invalid(
            "cluster_secret_file",
            format!("both it and {CLUSTER_SECRET_ENV} are set; give the secret one way"),
        )),
        (Some(path), None) => Ok(Some(elastickv_transport::ClusterSecret::from_file(path)?)),
        (None, Some(value)) => Ok(Some(elastickv_transport::ClusterSecret::new(
            value.as_encoded_bytes(),
        )?)),
        (None, None) => Ok(None),
    }
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// How linearizable reads confirm leadership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ReadMode {
    /// A leader serves reads from a lease renewed every heartbeat, and
    /// falls back to ReadIndex when the lease has lapsed.
    #[default]
    Lease,
    /// Every read batch confirms leadership with a quorum round.
    ReadIndex,
}

/// Whether the Redis TLS port asks clients for a certificate
/// (`tls_auth_clients`, Redis's `tls-auth-clients`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TlsAuthClients {
    /// A client certificate signed by the CA is required.
    #[default]
    Yes,
    /// None is required; one given must be valid.
    Optional,
    /// None is asked for.
    No,
}

impl std::str::FromStr for TlsAuthClients {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "yes" => Ok(TlsAuthClients::Yes),
            "optional" => Ok(TlsAuthClients::Optional),
            "no" => Ok(TlsAuthClients::No),
            _ => Err(format!("{text:?} is not yes, no or optional")),
        }
    }
}

/// Raft tuning (`[raft]` in the file).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftSection {
    /// Milliseconds per raft tick.
    pub tick_ms: u64,
    /// Ticks before a follower without a leader campaigns.
    pub election_tick: usize,
    /// Ticks between leader heartbeats.
    pub heartbeat_tick: usize,
    /// Pre-vote; `ELASTICKV_RAFT_PRE_VOTE` overrides it.
    pub pre_vote: Option<bool>,
    pub read_mode: ReadMode,
    /// MaxInflightMsgs; `ELASTICKV_RAFT_MAX_INFLIGHT_MSGS` overrides it.
    pub max_inflight_msgs: Option<u64>,
    /// MaxSizePerMsg in bytes; `ELASTICKV_RAFT_MAX_SIZE_PER_MSG` overrides
    /// it.
    pub max_size_per_msg: Option<u64>,
    /// Applied entries between log compactions;
    /// `ELASTICKV_RAFT_SNAPSHOT_COUNT` overrides it.
    pub snapshot_count: Option<u64>,
    /// Entries kept behind the compaction point;
    /// `ELASTICKV_RAFT_LOG_RETAIN_ENTRIES` overrides it.
    pub log_retain_entries: Option<u64>,
}

impl Default for RaftSection {
    fn default() -> Self {
        RaftSection {
            tick_ms: 100,
            election_tick: 10,
            heartbeat_tick: 1,
            pre_vote: None,
            read_mode: ReadMode::Lease,
            max_inflight_msgs: None,
            max_size_per_msg: None,
            snapshot_count: None,
            log_retain_entries: None,
        }
    }
}

impl RaftSection {
    pub fn limits(&self) -> LimitsConfig {
        LimitsConfig {
            max_inflight_msgs: self.max_inflight_msgs,
            max_size_per_msg: self.max_size_per_msg,
            pre_vote: self.pre_vote,
            snapshot_count: self.snapshot_count,
            log_retain_entries: self.log_retain_entries,
        }
    }
}

/// The node's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    pub node_id: u64,
    /// Where Redis clients connect.
    pub redis_addr: String,
    /// Where other nodes reach this node's raft transport.
    pub raft_addr: String,
    pub data_dir: PathBuf,
    /// Shards (raft groups); fixed for the life of the data directory.
    pub shards: u32,
    /// `id=host:port,...`: every node's raft address, this one included.
    pub peers: String,
    /// Join an existing cluster (added with `elastickv ctl add-node`)
    /// instead of founding one with `peers` as its members.
    pub join: bool,
    /// Create a new cluster whose founding members are `peers`, once all
    /// of them are up (each started with `bootstrap`) and none belongs to
    /// a cluster yet. Ignored once the data directory has a cluster.
    pub bootstrap: bool,
    /// Prometheus metrics endpoint; off when empty.
    pub metrics_addr: String,
    /// Password clients must AUTH with; none when empty.
    pub requirepass: String,
    /// File holding the secret every node-to-node and `elastickv ctl`
    /// call presents; none when empty (see [`cluster_secret`]).
    pub cluster_secret_file: PathBuf,
    /// Port for TLS clients, on `redis_addr`'s host; 0: none.
    pub tls_port: u16,
    /// The node's certificate chain (PEM), for clients and peers.
    pub tls_cert_file: PathBuf,
    /// Its private key (PEM).
    pub tls_key_file: PathBuf,
    /// CA certificates (PEM) that client and peer certificates must chain
    /// to.
    pub tls_ca_cert_file: PathBuf,
    pub tls_auth_clients: TlsAuthClients,
    /// Mutual TLS between nodes (and with `elastickv ctl`), with the same
    /// files.
    pub tls_cluster: bool,
    /// Refuse clients from other hosts while the default user has no
    /// password (Redis's `protected-mode`).
    pub protected_mode: bool,
    /// ACL users (`user <name> <rules>` lines), loaded at start and by
    /// ACL LOAD, written by ACL SAVE; none when empty.
    pub aclfile: PathBuf,
    /// Writes get -OOM once the stored data (SST files and memtables)
    /// passes this many bytes; 0: no limit.
    pub maxmemory: u64,
    /// Writes get -OOM while the data directory's file system has fewer
    /// free bytes than this.
    pub min_free_disk_bytes: u64,
    pub maxclients: usize,
    /// Bytes of pub/sub messages that may wait for a subscriber before it
    /// is disconnected (Redis's `client-output-buffer-limit pubsub` hard
    /// limit).
    pub client_output_buffer_limit_pubsub_bytes: usize,
    /// How long a command may wait for its shard to have a reachable
    /// leader before failing with -CLUSTERDOWN / -TRYAGAIN.
    pub request_timeout_ms: u64,
    pub raft: RaftSection,
    pub store: StoreSection,
}

/// RocksDB tuning (`[store]` in the file).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSection {
    /// Memtable size per column family, in bytes: what each column family
    /// holds in memory before it is written out.
    pub write_buffer_bytes: u64,
    /// Block cache shared by the column families, in bytes.
    pub block_cache_bytes: u64,
    /// All memtables together, in bytes.
    pub memtable_budget_bytes: u64,
}

impl Default for StoreSection {
    fn default() -> Self {
        let defaults = elastickv_store::StoreOptions::default();
        StoreSection {
            write_buffer_bytes: defaults.write_buffer_bytes as u64,
            block_cache_bytes: defaults.block_cache_bytes as u64,
            memtable_budget_bytes: defaults.memtable_budget_bytes as u64,
        }
    }
}

impl StoreSection {
    pub fn options(&self) -> elastickv_store::StoreOptions {
        elastickv_store::StoreOptions {
            write_buffer_bytes: usize::try_from(self.write_buffer_bytes).unwrap_or(usize::MAX),
            block_cache_bytes: usize::try_from(self.block_cache_bytes).unwrap_or(usize::MAX),
            memtable_budget_bytes: usize::try_from(self.memtable_budget_bytes)
                .unwrap_or(usize::MAX),
            ..elastickv_store::StoreOptions::default()
        }
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            node_id: 1,
            redis_addr: "127.0.0.1:6379".into(),
            raft_addr: "127.0.0.1:7379".into(),
            data_dir: PathBuf::from("./elastickv-data"),
            shards: 4,
            peers: String::new(),
            join: false,
            bootstrap: false,
            metrics_addr: String::new(),
            requirepass: String::new(),
            cluster_secret_file: PathBuf::new(),
            tls_port: 0,
            tls_cert_file: PathBuf::new(),
            tls_key_file: PathBuf::new(),
            tls_ca_cert_file: PathBuf::new(),
            tls_auth_clients: TlsAuthClients::default(),
            tls_cluster: false,
            protected_mode: true,
            aclfile: PathBuf::new(),
            maxmemory: 0,
            min_free_disk_bytes: 256 << 20,
            maxclients: 10_000,
            client_output_buffer_limit_pubsub_bytes: 32 << 20,
            request_timeout_ms: 5_000,
            raft: RaftSection::default(),
            store: StoreSection::default(),
        }
    }
}

/// Values given as flags; each beats the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub node_id: Option<u64>,
    pub redis_addr: Option<String>,
    pub raft_addr: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub shards: Option<u32>,
    pub peers: Option<String>,
    pub join: bool,
    pub bootstrap: bool,
    pub metrics_addr: Option<String>,
    pub requirepass: Option<String>,
    pub cluster_secret_file: Option<PathBuf>,
    pub tls_port: Option<u16>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub tls_ca_cert_file: Option<PathBuf>,
    pub tls_auth_clients: Option<TlsAuthClients>,
    pub tls_cluster: Option<bool>,
    pub protected_mode: Option<bool>,
    pub aclfile: Option<PathBuf>,
    pub maxmemory: Option<u64>,
    pub min_free_disk_bytes: Option<u64>,
}

impl NodeConfig {
    /// Reads `file` (if any), applies `overrides`, validates.
    pub fn load(file: Option<&Path>, overrides: Overrides) -> Result<NodeConfig, ConfigError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                NodeConfig::from_toml(&text, path)?
            }
            None => NodeConfig::default(),
        };
        config.apply(overrides);
        config.validate()?;
        Ok(config)
    }

    fn from_toml(text: &str, path: &Path) -> Result<NodeConfig, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(0, |span| {
                let before = &text.as_bytes()[..span.start.min(text.len())];
                before.iter().filter(|&&b| b == b'\n').count() + 1
            });
            ConfigError::Parse {
                path: path.to_path_buf(),
                line,
                message: e.message().replace('\n', " "),
            }
        })
    }

    fn apply(&mut self, o: Overrides) {
        // Destructured so a new flag cannot be forgotten here.
        let Overrides {
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
        } = o;
        if join {
            self.join = true;
        }
        if bootstrap {
            self.bootstrap = true;
        }
        if let Some(v) = node_id {
            self.node_id = v;
        }
        if let Some(v) = redis_addr {
            self.redis_addr = v;
        }
        if let Some(v) = raft_addr {
            self.raft_addr = v;
        }
        if let Some(v) = data_dir {
            self.data_dir = v;
        }
        if let Some(v) = shards {
            self.shards = v;
        }
        if let Some(v) = peers {
            self.peers = v;
        }
        if let Some(v) = metrics_addr {
            self.metrics_addr = v;
        }
        if let Some(v) = requirepass {
            self.requirepass = v;
        }
        if let Some(v) = cluster_secret_file {
            self.cluster_secret_file = v;
        }
        if let Some(v) = tls_port {
            self.tls_port = v;
        }
        if let Some(v) = tls_cert_file {
            self.tls_cert_file = v;
        }
        if let Some(v) = tls_key_file {
            self.tls_key_file = v;
        }
        if let Some(v) = tls_ca_cert_file {
            self.tls_ca_cert_file = v;
        }
        if let Some(v) = tls_auth_clients {
            self.tls_auth_clients = v;
        }
        if let Some(v) = tls_cluster {
            self.tls_cluster = v;
        }
        if let Some(v) = protected_mode {
            self.protected_mode = v;
        }
        if let Some(v) = aclfile {
            self.aclfile = v;
        }
        if let Some(v) = maxmemory {
            self.maxmemory = v;
        }
        if let Some(v) = min_free_disk_bytes {
            self.min_free_disk_bytes = v;
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node_id == 0 {
            return Err(invalid("node_id", "must be at least 1"));
        }
        if self.shards == 0 || self.shards > MAX_SHARDS {
            return Err(invalid(
                "shards",
                format!(
                    "{} is out of range; accepted: 1..={MAX_SHARDS}",
                    self.shards
                ),
            ));
        }
        check_addr("redis_addr", &self.redis_addr)?;
        check_addr("raft_addr", &self.raft_addr)?;
        if !self.metrics_addr.is_empty() {
            check_addr("metrics_addr", &self.metrics_addr)?;
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must not be empty"));
        }
        if self.client_output_buffer_limit_pubsub_bytes < 1024 {
            return Err(invalid(
                "client_output_buffer_limit_pubsub_bytes",
                "must be at least 1024",
            ));
        }
        if self.maxclients == 0 {
            return Err(invalid("maxclients", "must be at least 1"));
        }
        self.peer_map()?;
        if self.join && self.bootstrap {
            return Err(invalid(
                "bootstrap",
                "--bootstrap (create a cluster) and --join (be added to one) exclude each other",
            ));
        }
        if !(1 << 20..=1 << 30).contains(&self.store.write_buffer_bytes) {
            return Err(invalid(
                "store.write_buffer_bytes",
                "accepted: 1048576..=1073741824",
            ));
        }
        if !(self.store.write_buffer_bytes..=1 << 40).contains(&self.store.memtable_budget_bytes) {
            return Err(invalid(
                "store.memtable_budget_bytes",
                "accepted: store.write_buffer_bytes..=1099511627776",
            ));
        }
        if !(1 << 20..=1 << 40).contains(&self.store.block_cache_bytes) {
            return Err(invalid(
                "store.block_cache_bytes",
                "accepted: 1048576..=1099511627776",
            ));
        }
        if self.request_timeout_ms == 0 || self.request_timeout_ms > 600_000 {
            return Err(invalid("request_timeout_ms", "accepted: 1..=600000"));
        }
        let r = &self.raft;
        if r.tick_ms == 0 || r.tick_ms > 10_000 {
            return Err(invalid("raft.tick_ms", "accepted: 1..=10000"));
        }
        if r.heartbeat_tick == 0 {
            return Err(invalid("raft.heartbeat_tick", "must be at least 1"));
        }
        if r.election_tick <= r.heartbeat_tick {
            return Err(invalid(
                "raft.election_tick",
                "must be greater than raft.heartbeat_tick",
            ));
        }
        if r.election_tick > 1000 {
            return Err(invalid("raft.election_tick", "accepted: up to 1000"));
        }
        r.limits()
            .validate()
            .map_err(|e| invalid("raft", e.to_string()))?;
        self.cluster_secret()?;
        self.check_tls()?;
        Ok(())
    }

    fn check_tls(&self) -> Result<(), ConfigError> {
        let wants_tls = self.tls_port != 0 || self.tls_cluster;
        if wants_tls {
            for (key, path) in [
                ("tls_cert_file", &self.tls_cert_file),
                ("tls_key_file", &self.tls_key_file),
            ] {
                if path.as_os_str().is_empty() {
                    return Err(invalid(key, "is required with tls_port or tls_cluster"));
                }
            }
        }
        let needs_ca =
            self.tls_cluster || (self.tls_port != 0 && self.tls_auth_clients != TlsAuthClients::No);
        if needs_ca && self.tls_ca_cert_file.as_os_str().is_empty() {
            return Err(invalid(
                "tls_ca_cert_file",
                "is required with tls_cluster, and with tls_port unless tls_auth_clients is no",
            ));
        }
        if self.plain_port_disabled() && self.tls_port == 0 {
            return Err(invalid(
                "redis_addr",
                "port 0 turns the plaintext port off; then tls_port must be set",
            ));
        }
        Ok(())
    }

    /// The ACL file, if any.
    pub fn acl_file(&self) -> Option<&Path> {
        Some(self.aclfile.as_path()).filter(|p| !p.as_os_str().is_empty())
    }

    /// Whether the plaintext Redis port is off (`redis_addr` port 0, as
    /// Redis's `port 0`).
    pub fn plain_port_disabled(&self) -> bool {
        self.redis_addr
            .rsplit_once(':')
            .is_some_and(|(_, port)| port == "0")
    }

    /// Where TLS clients connect: `redis_addr`'s host, `tls_port`.
    pub fn tls_addr(&self) -> Option<String> {
        if self.tls_port == 0 {
            return None;
        }
        let host = self
            .redis_addr
            .rsplit_once(':')
            .map_or(self.redis_addr.as_str(), |(host, _)| host);
        Some(format!("{host}:{}", self.tls_port))
    }

    /// The TLS files, when TLS is used at all.
    pub fn tls_files(&self) -> Option<elastickv_tls::TlsFiles> {
        (self.tls_port != 0 || self.tls_cluster).then(|| elastickv_tls::TlsFiles {
            cert: self.tls_cert_file.clone(),
            key: self.tls_key_file.clone(),
            ca: Some(self.tls_ca_cert_file.clone()).filter(|p| !p.as_os_str().is_empty()),
        })
    }

    /// The cluster secret, if the node has one (see [`cluster_secret`]).
    pub fn cluster_secret(
        &self,
    ) -> Result<Option<elastickv_transport::ClusterSecret>, ConfigError> {
        let file = Some(self.cluster_secret_file.as_path()).filter(|p| !p.as_os_str().is_empty());
        cluster_secret(file)
    }

    /// The peers map, this node included (added with `raft_addr` when the
    /// list is empty).
    pub fn peer_map(&self) -> Result<BTreeMap<u64, String>, ConfigError> {
        let mut peers = BTreeMap::new();
        for entry in self
            .peers
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let Some((id, addr)) = entry.split_once('=') else {
                return Err(invalid("peers", format!("{entry:?} is not id=host:port")));
            };
            let id: u64 =
                id.trim().parse().ok().filter(|&id| id > 0).ok_or_else(|| {
                    invalid("peers", format!("{id:?} is not a node id (1 or more)"))
                })?;
            check_addr("peers", addr.trim())?;
            if peers.insert(id, addr.trim().to_string()).is_some() {
                return Err(invalid("peers", format!("node {id} is listed twice")));
            }
        }
        if peers.is_empty() {
            peers.insert(self.node_id, self.raft_addr.clone());
        }
        if !peers.contains_key(&self.node_id) {
            return Err(invalid(
                "peers",
                format!("does not list this node (node_id {})", self.node_id),
            ));
        }
        Ok(peers)
    }

    pub fn requirepass(&self) -> Option<&str> {
        (!self.requirepass.is_empty()).then_some(self.requirepass.as_str())
    }
}

/// `host:port` with a numeric port; the host is resolved when binding.
fn check_addr(key: &'static str, addr: &str) -> Result<(), ConfigError> {
    if addr.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(invalid(key, format!("{addr:?} is not host:port"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str, overrides: Overrides) -> Result<NodeConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, text).unwrap();
        NodeConfig::load(Some(&path), overrides)
    }

    #[test]
    fn a_cluster_secret_file_is_read_and_checked_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good");
        std::fs::write(&good, "0123456789abcdef0123\n").unwrap();
        let short = dir.path().join("short");
        std::fs::write(&short, "hunter2").unwrap();
        let with = |path: &Path| {
            load_text(
                &format!("cluster_secret_file = {:?}\n", path.display().to_string()),
                Overrides::default(),
            )
        };
        let config = with(&good).unwrap();
        assert!(config.cluster_secret().unwrap().is_some());
        let e = with(&short).unwrap_err().to_string();
        assert!(e.contains("7 bytes") && e.contains("short"), "{e}");
        let e = with(&dir.path().join("missing")).unwrap_err().to_string();
        assert!(e.contains("cannot read the cluster secret file"), "{e}");
        assert!(
            NodeConfig::load(None, Overrides::default())
                .unwrap()
                .cluster_secret_file
                .as_os_str()
                .is_empty()
        );
    }

    #[test]
    fn defaults_match_the_documented_contract() {
        let c = NodeConfig::load(None, Overrides::default()).unwrap();
        assert_eq!(c.redis_addr, "127.0.0.1:6379");
        assert_eq!(c.raft_addr, "127.0.0.1:7379");
        assert_eq!(c.data_dir, PathBuf::from("./elastickv-data"));
        assert_eq!(c.shards, 4);
        assert_eq!(c.peer_map().unwrap().len(), 1);
    }

    #[test]
    fn flags_beat_the_file() {
        let c = load_text(
            "shards = 8\nredis_addr = \"0.0.0.0:7000\"\n[raft]\nmax_inflight_msgs = 64\n",
            Overrides {
                shards: Some(2),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(c.shards, 2);
        assert_eq!(c.redis_addr, "0.0.0.0:7000");
        assert_eq!(c.raft.max_inflight_msgs, Some(64));
    }

    #[test]
    fn bad_config_is_one_clear_line() {
        let cases = [
            (
                "shards = 0",
                "invalid shards: 0 is out of range; accepted: 1..=1024",
            ),
            ("node_id = 0", "invalid node_id: must be at least 1"),
            (
                "redis_addr = \"nope\"",
                "invalid redis_addr: \"nope\" is not host:port",
            ),
            (
                "[raft]\nmax_inflight_msgs = 0",
                "invalid raft: max_inflight_msgs = 0 is out of range; accepted: 1..=8192",
            ),
            (
                "request_timeout_ms = 0",
                "invalid request_timeout_ms: accepted: 1..=600000",
            ),
            (
                "peers = \"2=127.0.0.1:1\"",
                "invalid peers: does not list this node (node_id 1)",
            ),
            (
                "[store]\nwrite_buffer_bytes = 67108864\nmemtable_budget_bytes = 1048576",
                "invalid store.memtable_budget_bytes: accepted: store.write_buffer_bytes..=",
            ),
        ];
        for (text, expected) in cases {
            let err = load_text(text, Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(expected), "{text:?} gave {err:?}");
            assert!(!err.contains('\n'), "{err:?}");
        }
        let err = load_text("shards = \"four\"\nbogus = 1", Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1"), "{err}");
        assert!(!err.contains('\n'), "{err:?}");
        let err = load_text("bogus = 1", Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `bogus`"), "{err}");
        let err = NodeConfig::load(Some(Path::new("/nonexistent/x.toml")), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("cannot read config file /nonexistent/x.toml"),
            "{err}"
        );
    }

    #[test]
    fn peers_parse() {
        let c = NodeConfig {
            peers: "1=127.0.0.1:7379".into(),
            ..Default::default()
        };
        assert_eq!(c.peer_map().unwrap()[&1], "127.0.0.1:7379");
        for bad in ["1", "x=1.2.3.4:5", "1=nohost", "0=1.2.3.4:5", "1=a:1,1=b:2"] {
            let c = NodeConfig {
                peers: bad.into(),
                ..Default::default()
            };
            assert!(c.peer_map().is_err(), "{bad}");
        }
    }
}
