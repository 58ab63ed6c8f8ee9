//! A cluster of real elastickv processes on loopback, with every node's
//! route to every other node running through a [`Proxy`] the test controls,
//! so a test can cut a node off (both directions, raft and forwarding) and
//! heal it again.
//!
//! Node ids are 1..=n; `peers` of node `i` names, for each other node `j`,
//! the proxy `i -> j` (each node's peer list is its own view of the
//! cluster, as in production behind NAT).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{Launch, Node, RawClient, free_port};

/// A TCP forwarder from a local port to a target address that can refuse
/// traffic: while blocked, it closes every connection it carries and every
/// new one at once.
pub struct Proxy {
    pub addr: SocketAddr,
    target: Arc<Mutex<SocketAddr>>,
    blocked: Arc<AtomicBool>,
    /// Extra latency for every chunk carried, milliseconds.
    delay_ms: Arc<AtomicU64>,
    stopped: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let blocked = Arc::new(AtomicBool::new(false));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let stopped = Arc::new(AtomicBool::new(false));
        let connections: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let target = Arc::new(Mutex::new(target));
        {
            let (blocked, stopped, connections, target, delay_ms) = (
                blocked.clone(),
                stopped.clone(),
                connections.clone(),
                target.clone(),
                delay_ms.clone(),
            );
            std::thread::spawn(move || {
                for inbound in listener.incoming() {
                    if stopped.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(inbound) = inbound else { continue };
                    if blocked.load(Ordering::SeqCst) {
                        continue;
                    }
                    let to = *target.lock().unwrap();
                    let Ok(outbound) = TcpStream::connect_timeout(&to, Duration::from_secs(1))
                    else {
                        continue;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let clones = (
                        inbound.try_clone(),
                        outbound.try_clone(),
                        inbound.try_clone(),
                        outbound.try_clone(),
                    );
                    let (Ok(in2), Ok(out2), Ok(in3), Ok(out3)) = clones else {
                        continue;
                    };
                    {
                        // Checked again under the lock `block` takes, so a
                        // connection is either refused or cut by `block`.
                        let mut conns = connections.lock().unwrap();
                        if blocked.load(Ordering::SeqCst) {
                            continue;
                        }
                        conns.push(in3);
                        conns.push(out3);
                    }
                    let (there, back) = (delay_ms.clone(), delay_ms.clone());
                    std::thread::spawn(move || pump(inbound, out2, &there));
                    std::thread::spawn(move || pump(outbound, in2, &back));
                }
            });
        }
        Proxy {
            addr,
            target,
            blocked,
            delay_ms,
            stopped,
            connections,
        }
    }

    /// Sends connections to `target` from now on: the ones it carries are
    /// cut (they lead to the old target), so their senders dial again.
    pub fn retarget(&self, target: SocketAddr) {
        self.handle().retarget(target);
    }

    /// What moving the proxy's target takes, to keep after the proxy.
    pub fn handle(&self) -> ProxyTarget {
        ProxyTarget {
            target: self.target.clone(),
            connections: self.connections.clone(),
        }
    }

    /// Cuts every connection through the proxy and refuses new ones.
    pub fn block(&self) {
        let mut conns = self.connections.lock().unwrap();
        self.blocked.store(true, Ordering::SeqCst);
        for conn in conns.drain(..) {
            let _ = conn.shutdown(Shutdown::Both);
        }
    }

    /// Lets traffic through again.
    pub fn unblock(&self) {
        self.blocked.store(false, Ordering::SeqCst);
    }

    /// Delays everything carried from now on by `ms` milliseconds (0: no
    /// delay).
    pub fn set_delay(&self, ms: u64) {
        self.delay_ms.store(ms, Ordering::SeqCst);
    }
}

/// A proxy's target, movable from elsewhere (see [`Proxy::retarget`]).
#[derive(Clone)]
pub struct ProxyTarget {
    target: Arc<Mutex<SocketAddr>>,
    connections: Arc<Mutex<Vec<TcpStream>>>,
}

impl ProxyTarget {
    pub fn retarget(&self, target: SocketAddr) {
        *self.target.lock().unwrap() = target;
        for conn in self.connections.lock().unwrap().drain(..) {
            let _ = conn.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.block();
        // Wake the accept loop so it sees `stopped`.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Copies bytes one way until either side closes.
fn pump(mut from: TcpStream, mut to: TcpStream, delay_ms: &AtomicU64) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let delay = delay_ms.load(Ordering::Relaxed);
                if delay > 0 {
                    std::thread::sleep(Duration::from_millis(delay));
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

/// One shard's line of `INFO raft`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    pub shard: u32,
    pub role: String,
    pub leader: u64,
    pub term: u64,
    pub commit: u64,
    pub applied: u64,
    pub first_index: u64,
    pub last_index: u64,
}

/// Parses the shard lines of an `INFO raft` reply.
pub fn parse_info_raft(text: &str) -> Vec<ShardInfo> {
    let mut shards = Vec::new();
    for line in text.lines() {
        let Some((name, fields)) = line.trim_end().split_once(':') else {
            continue;
        };
        let Some(Ok(shard)) = name.strip_prefix("shard").map(str::parse::<u32>) else {
            continue;
        };
        let field = |key: &str| {
            fields
                .split(',')
                .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
                .unwrap_or_default()
                .to_string()
        };
        let number = |key: &str| field(key).parse::<u64>().unwrap_or(0);
        shards.push(ShardInfo {
            shard,
            role: field("role"),
            leader: number("leader"),
            term: number("term"),
            commit: number("commit"),
            applied: number("applied"),
            first_index: number("first_index"),
            last_index: number("last_index"),
        });
    }
    shards
}

/// `n` elastickv nodes wired through proxies.
pub struct Cluster {
    /// `nodes[i]` is node id `i + 1`.
    pub nodes: Vec<Node>,
    /// `(from, to)`: the proxy `from` uses to reach `to`.
    links: BTreeMap<(u64, u64), Proxy>,
    pub shards: u32,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` nodes with `shards` shards, extra flags and environment
    /// for every node, and waits until every shard has a leader every node
    /// knows.
    pub fn start(n: u64, shards: u32, args: &[&str], envs: &[(&str, &str)]) -> Cluster {
        Cluster::start_each(n, shards, args, &|_| {
            envs.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
    }

    /// Like [`Cluster::start`], with each node's environment from
    /// `envs(node id)`.
    pub fn start_each(
        n: u64,
        shards: u32,
        args: &[&str],
        envs: &dyn Fn(u64) -> Vec<(String, String)>,
    ) -> Cluster {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        Cluster::start_with(n, shards, &|_| args.clone(), envs)
    }

    /// Like [`Cluster::start_each`], with each node's extra flags from
    /// `args(node id)` too.
    pub fn start_with(
        n: u64,
        shards: u32,
        args: &dyn Fn(u64) -> Vec<String>,
        envs: &dyn Fn(u64) -> Vec<(String, String)>,
    ) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let raft_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let mut links = BTreeMap::new();
        for from in 1..=n {
            for to in (1..=n).filter(|&to| to != from) {
                let target: SocketAddr = ([127, 0, 0, 1], raft_ports[(to - 1) as usize]).into();
                links.insert((from, to), Proxy::start(target));
            }
        }
        let shard_count = shards.to_string();
        // Every node may have to start again on another raft port (taken
        // meanwhile by a parallel test); the other nodes' proxies follow.
        let mut raft_port_of: Vec<Box<dyn FnMut(usize) -> u16 + '_>> = (1..=n)
            .map(|id| {
                let links = &links;
                let first = raft_ports[(id - 1) as usize];
                Box::new(move |attempt: usize| {
                    let port = if attempt == 0 { first } else { free_port() };
                    for ((_, to), proxy) in links {
                        if *to == id {
                            proxy.retarget(([127, 0, 0, 1], port).into());
                        }
                    }
                    port
                }) as Box<dyn FnMut(usize) -> u16>
            })
            .collect();
        let launches = (1..=n)
            .zip(raft_port_of.iter_mut())
            .map(|(id, raft_port)| {
                let peers: Vec<String> = (1..=n)
                    .map(|to| {
                        let addr = match links.get(&(id, to)) {
                            Some(proxy) => proxy.addr.to_string(),
                            None => format!("127.0.0.1:{}", raft_ports[(id - 1) as usize]),
                        };
                        format!("{to}={addr}")
                    })
                    .collect();
                let mut all_args = vec![
                    "--node-id".to_string(),
                    id.to_string(),
                    "--peers".to_string(),
                    peers.join(","),
                    "--shards".to_string(),
                    shard_count.clone(),
                ];
                // The nodes found the cluster together; restarts with data
                // ignore the flag. (Measurements that compare with a build
                // from before the flag existed set ELASTICKV_NO_BOOTSTRAP.)
                if std::env::var_os("ELASTICKV_NO_BOOTSTRAP").is_none() {
                    all_args.push("--bootstrap".to_string());
                }
                all_args.extend(args(id));
                Launch {
                    data_dir: dir.path().join(format!("node{id}")),
                    args: all_args,
                    envs: envs(id),
                    raft_port: raft_port.as_mut(),
                }
            })
            .collect();
        let mut nodes = Node::launch_all(launches);
        drop(raft_port_of);
        for (node, id) in nodes.iter_mut().zip(1..) {
            let targets: Vec<ProxyTarget> = links
                .iter()
                .filter(|((_, to), _)| *to == id)
                .map(|(_, proxy)| proxy.handle())
                .collect();
            node.on_raft_port_moved = Some(Box::new(move |port| {
                for target in &targets {
                    target.retarget(([127, 0, 0, 1], port).into());
                }
            }));
        }
        let cluster = Cluster {
            nodes,
            links,
            shards,
            _dir: dir,
        };
        cluster.wait_for_leaders(&cluster.ids(), Duration::from_secs(30));
        cluster
    }

    pub fn ids(&self) -> Vec<u64> {
        (1..=self.nodes.len() as u64).collect()
    }

    pub fn node(&self, id: u64) -> &Node {
        &self.nodes[(id - 1) as usize]
    }

    pub fn node_mut(&mut self, id: u64) -> &mut Node {
        &mut self.nodes[(id - 1) as usize]
    }

    /// Cuts node `id` off from every other node, both ways.
    pub fn isolate(&self, id: u64) {
        for ((from, to), proxy) in &self.links {
            if *from == id || *to == id {
                proxy.block();
            }
        }
    }

    /// Delays everything on the link from node `from` to node `to` by
    /// `ms` milliseconds (0 restores it).
    pub fn delay(&self, from: u64, to: u64, ms: u64) {
        if let Some(proxy) = self.links.get(&(from, to)) {
            proxy.set_delay(ms);
        }
    }

    /// Restores every link's speed.
    pub fn undelay(&self) {
        for proxy in self.links.values() {
            proxy.set_delay(0);
        }
    }

    /// Cuts the link from node `from` to node `to` (one way: `to` still
    /// reaches `from`).
    pub fn cut(&self, from: u64, to: u64) {
        if let Some(proxy) = self.links.get(&(from, to)) {
            proxy.block();
        }
    }

    /// Points the link from node `from` to node `to` at `port` on
    /// 127.0.0.1 instead (another process, even another cluster's).
    pub fn retarget(&self, from: u64, to: u64, port: u16) {
        if let Some(proxy) = self.links.get(&(from, to)) {
            proxy.retarget(([127, 0, 0, 1], port).into());
        }
    }

    /// Restores every link.
    pub fn heal(&self) {
        for proxy in self.links.values() {
            proxy.unblock();
        }
    }

    /// `INFO raft` of node `id`, or `None` if it does not answer.
    pub fn info_raft(&self, id: u64) -> Option<Vec<ShardInfo>> {
        let mut client = RawClient::connect(self.node(id).port).ok()?;
        client.set_read_timeout(Duration::from_secs(5));
        client.send(&["INFO", "raft"]);
        let reply = client.read_reply();
        Some(parse_info_raft(&String::from_utf8_lossy(&reply)))
    }

    /// The node that reports itself leader of `shard`, asking `among`.
    pub fn leader_of(&self, shard: u32, among: &[u64]) -> Option<u64> {
        among.iter().copied().find(|&id| {
            self.info_raft(id)
                .and_then(|info| info.into_iter().find(|s| s.shard == shard))
                .is_some_and(|s| s.role == "leader")
        })
    }

    /// Waits until each node in `among` names the same leader (one of
    /// `among`) for every shard; returns the leaders by shard.
    pub fn wait_for_leaders(&self, among: &[u64], timeout: Duration) -> Vec<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            let views: Vec<Option<Vec<ShardInfo>>> =
                among.iter().map(|&id| self.info_raft(id)).collect();
            let leaders: Option<Vec<u64>> = (0..self.shards)
                .map(|shard| {
                    let named: Vec<u64> = views
                        .iter()
                        .map(|v| {
                            v.as_ref()
                                .and_then(|v| v.iter().find(|s| s.shard == shard))
                                .map_or(0, |s| s.leader)
                        })
                        .collect();
                    let first = named[0];
                    (among.contains(&first) && named.iter().all(|&l| l == first)).then_some(first)
                })
                .collect();
            if let Some(leaders) = leaders {
                return leaders;
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader for every shard within {timeout:?} among {among:?}: {views:#?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until every node in `among` has applied everything the
    /// leaders of `among` have committed, for every shard.
    pub fn wait_caught_up(&self, among: &[u64], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let views: Vec<Vec<ShardInfo>> = among
                .iter()
                .map(|&id| self.info_raft(id).unwrap_or_default())
                .collect();
            let caught_up = (0..self.shards).all(|shard| {
                let of = |v: &Vec<ShardInfo>| v.iter().find(|s| s.shard == shard).cloned();
                let Some(leader) = views.iter().filter_map(of).find(|s| s.role == "leader") else {
                    return false;
                };
                views
                    .iter()
                    .all(|v| of(v).is_some_and(|s| s.applied >= leader.commit))
            });
            if caught_up {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nodes {among:?} did not catch up within {timeout:?}: {views:#?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A key that hashes to `shard`, distinct per `n`.
    pub fn key_in_shard(&self, shard: u32, prefix: &str, n: u64) -> String {
        (0u64..)
            .map(|salt| format!("{prefix}:{n}:{salt}"))
            .find(|key| elastickv_router::shard_for_key(key.as_bytes(), self.shards) == shard)
            .expect("some key hashes to every shard")
    }
}
