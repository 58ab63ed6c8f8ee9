//! Test harness for tests that run real processes: elastickv nodes on free
//! loopback ports, redis-server as the reference implementation, and a raw
//! RESP client that returns replies byte for byte.
//!
//! The elastickv binary is `$ELASTICKV_BIN` (set by `scripts/test`), or the
//! `elastickv` next to the test executable's `deps/` directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod cluster;
pub mod diff;
pub mod faketime;
pub mod pki;
pub mod power;
pub use cluster::{Cluster, Proxy, ShardInfo};

/// A port nobody listens on right now, and not handed out before by this
/// process (the system may offer a port it just gave: two nodes of one
/// cluster must not both get it).
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("no free port");
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}

pub fn elastickv_bin() -> PathBuf {
    if let Ok(path) = std::env::var("ELASTICKV_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> -> target/<profile>/elastickv
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("elastickv"))
        .expect("target dir");
    assert!(
        bin.exists(),
        "{} does not exist: build it first (cargo build -p elastickv) or set ELASTICKV_BIN",
        bin.display()
    );
    bin
}

/// Whether something answers PING on `port` right now.
fn answers_ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(b"*1\r\n$4\r\nPING\r\n").is_err() {
        return false;
    }
    // A node with requirepass answers NOAUTH: it is serving all the same.
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && (&reply == b"+PONG\r\n" || &reply == b"-NOAUTH")
}

/// How to start one node of [`Node::launch_all`].
pub struct Launch<'a> {
    pub data_dir: PathBuf,
    pub args: Vec<String>,
    pub envs: Vec<(String, String)>,
    /// The raft port for attempt `n` (a later attempt must pick another).
    pub raft_port: &'a mut dyn FnMut(usize) -> u16,
}

/// An elastickv process.
pub struct Node {
    child: Child,
    pub port: u16,
    /// Where this node's raft transport listens.
    pub raft_port: u16,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    /// Told the new raft port when a restart had to move it.
    pub on_raft_port_moved: Option<Box<dyn Fn(u16) + Send + Sync>>,
}

/// The log lines of the last start attempt in `log` (a node's log file
/// keeps every run).
fn last_start_attempt(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let start = lines
        .iter()
        .rposition(|l| l.contains("flow-control limits resolved") || l.contains("elastickv:"))
        .map_or(0, |i| i.saturating_sub(5));
    lines[start..].join("\n")
}

impl Node {
    /// Starts a node on free ports with `data_dir` and extra flags.
    pub fn start(data_dir: &Path, args: &[&str]) -> Node {
        Node::start_with_env(data_dir, args, &[])
    }

    pub fn start_with_env(data_dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Node {
        Node::launch(data_dir, args, envs, &mut |_| free_port())
    }

    /// Starts a node whose raft transport listens on the port
    /// `raft_port(attempt)` returns (attempt 0 first; later attempts, after
    /// a port turned out to be taken, must pick another) (other
    /// nodes' peer lists name it).
    pub fn start_with_raft_port(
        data_dir: &Path,
        raft_port: &mut dyn FnMut(usize) -> u16,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Node {
        Node::launch(data_dir, args, envs, raft_port)
    }

    fn launch(
        data_dir: &Path,
        args: &[&str],
        envs: &[(&str, &str)],
        raft_port: &mut dyn FnMut(usize) -> u16,
    ) -> Node {
        let mut nodes = Node::launch_all(vec![Launch {
            data_dir: data_dir.to_path_buf(),
            args: args.iter().map(|s| s.to_string()).collect(),
            envs: envs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            raft_port,
        }]);
        nodes.remove(0)
    }

    /// Starts several nodes at once and waits until each answers (nodes
    /// founding a cluster together wait for each other before serving). A
    /// node that could not bind its ports (taken meanwhile) is started
    /// again on others.
    pub fn launch_all(launches: Vec<Launch<'_>>) -> Vec<Node> {
        let mut launches = launches;
        let spawn_one = |launch: &mut Launch<'_>, attempt: usize| {
            let (port, raft_port) = (free_port(), (launch.raft_port)(attempt));
            let log = launch.data_dir.with_extension(format!("{port}.log"));
            let child = spawn(
                &launch.data_dir,
                port,
                raft_port,
                &launch.args,
                &launch.envs,
                &log,
            );
            Node {
                child,
                port,
                raft_port,
                data_dir: launch.data_dir.clone(),
                log,
                args: launch.args.clone(),
                envs: launch.envs.clone(),
                on_raft_port_moved: None,
            }
        };
        let mut nodes: Vec<Node> = launches.iter_mut().map(|l| spawn_one(l, 0)).collect();
        // All nodes are watched together: nodes founding a cluster answer
        // only once every founder is up, so a node that must start again
        // (its port taken meanwhile by a parallel test) has to be
        // restarted while the others wait, not after them.
        let mut attempts = vec![0usize; nodes.len()];
        let mut ready = vec![false; nodes.len()];
        // A node that exited waits a little longer each time before it is
        // started again: a founder may have met, through a peer's port
        // that a parallel test took, a node of another cluster, and must
        // not use up its attempts before that peer has moved.
        let mut not_before = vec![Instant::now(); nodes.len()];
        let mut exited = vec![false; nodes.len()];
        let deadline = Instant::now() + Duration::from_secs(120);
        while ready.iter().any(|r| !r) {
            for (i, launch) in launches.iter_mut().enumerate() {
                if ready[i] {
                    continue;
                }
                let node = &mut nodes[i];
                if !exited[i]
                    && let Ok(Some(_)) = node.child.try_wait()
                {
                    let text = std::fs::read_to_string(&node.log).unwrap_or_default();
                    attempts[i] += 1;
                    assert!(attempts[i] < 12, "elastickv did not start:\n{text}");
                    exited[i] = true;
                    not_before[i] =
                        Instant::now() + Duration::from_millis(100 * attempts[i] as u64);
                }
                if exited[i] {
                    if Instant::now() >= not_before[i] {
                        nodes[i] = spawn_one(launch, attempts[i]);
                        exited[i] = false;
                    }
                    continue;
                }
                ready[i] = answers_ping(node.port)
                    && pid_on(node.port).is_none_or(|pid| pid == node.child.id());
            }
            if Instant::now() >= deadline {
                let logs: Vec<String> = nodes
                    .iter()
                    .map(|n| std::fs::read_to_string(&n.log).unwrap_or_default())
                    .collect();
                for node in &mut nodes {
                    node.kill9();
                }
                panic!(
                    "elastickv nodes did not become ready in 120 s:\n{}",
                    logs.join("\n---\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        nodes
    }

    /// Kills the process without warning (SIGKILL).
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().expect("wait")
    }

    /// The process id (for signals and /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`STOP`, `CONT`, ...).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Resident set size in bytes, from /proc.
    pub fn rss_bytes(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("/proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .expect("VmRSS")
    }

    /// Waits up to `timeout` for the process to exit on its own; its exit
    /// status, or `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Starts again on the same data directory and ports. A port taken
    /// meanwhile (by a parallel test) is replaced by another: the Redis
    /// port silently, the raft port through `on_raft_port_moved` (the
    /// cluster's proxies follow it). Readiness is checked against this
    /// process's pid, so a neighbour's process on a reused port is never
    /// mistaken for it.
    pub fn restart(&mut self) {
        self.kill9();
        let mut last_log = String::new();
        for _ in 0..5 {
            let mut child = spawn(
                &self.data_dir,
                self.port,
                self.raft_port,
                &self.args,
                &self.envs,
                &self.log,
            );
            match try_wait_ready(self.port, &mut child, &self.log) {
                Ok(()) => {
                    self.child = child;
                    return;
                }
                Err(log) => {
                    let tail = last_start_attempt(&log);
                    if tail.contains("for Redis clients") {
                        self.port = free_port();
                    } else if tail.contains("for raft peers") {
                        self.raft_port = free_port();
                        if let Some(moved) = &self.on_raft_port_moved {
                            moved(self.raft_port);
                        }
                    } else {
                        panic!("elastickv did not restart:\n{tail}");
                    }
                    last_log = tail;
                }
            }
        }
        panic!("elastickv did not restart:\n{last_log}");
    }

    /// Starts the node again on its data directory with `args` instead of
    /// its own, expecting it to stop by itself: its exit status and what it
    /// logged.
    pub fn run_to_exit_with(&mut self, args: &[&str]) -> (std::process::ExitStatus, String) {
        self.kill9();
        let before = self.log_text().len();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        self.child = spawn(
            &self.data_dir,
            self.port,
            self.raft_port,
            &args,
            &self.envs,
            &self.log,
        );
        let status = self
            .wait_exit(Duration::from_secs(60))
            .expect("the node stops by itself");
        let log = self.log_text();
        (status, log.get(before..).unwrap_or_default().to_string())
    }

    /// Starts the node again on its data directory with `args` instead of
    /// its own (which become its own for later restarts).
    pub fn restart_with(&mut self, args: &[&str]) {
        self.args = args.iter().map(|a| a.to_string()).collect();
        self.restart();
    }

    /// The flags this node runs with (besides addresses and data dir).
    pub fn args(&self) -> Vec<String> {
        self.args.clone()
    }

    pub fn client(&self) -> redis::Connection {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))
            .and_then(|c| c.get_connection())
            .expect("redis connection")
    }

    pub fn raw(&self) -> RawClient {
        RawClient::connect(self.port).expect("raw connection")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the node's log holds `text`; fails after `timeout`.
    pub fn wait_for_log(&self, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log_text().contains(text) {
            assert!(
                Instant::now() < deadline,
                "{text:?} never logged:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `elastickv ctl --addr <this node's raft address> ARGS...`:
    /// whether it succeeded, and what it printed.
    pub fn ctl(&self, args: &[&str]) -> (bool, String) {
        self.ctl_with_env(args, &[])
    }

    /// [`Node::ctl`] with extra environment variables.
    pub fn ctl_with_env(&self, args: &[&str], envs: &[(&str, &str)]) -> (bool, String) {
        let addr = format!("127.0.0.1:{}", self.raft_port);
        let mut all = vec!["ctl", "--addr", &addr];
        all.extend_from_slice(args);
        let (status, output) = run_to_exit(&all, envs);
        (status.success(), output)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            let log = self.log_text();
            let lines: Vec<&str> = log.lines().collect();
            // A panic is the interesting part; otherwise the end.
            let start = lines
                .iter()
                .position(|l| l.contains("panicked at"))
                .unwrap_or(lines.len().saturating_sub(30));
            eprintln!("--- elastickv log ({}):", self.log.display());
            for line in lines.iter().skip(start).take(200) {
                eprintln!("{line}");
            }
        }
    }
}

fn spawn(
    data_dir: &Path,
    port: u16,
    raft_port: u16,
    args: &[String],
    envs: &[(String, String)],
    log: &Path,
) -> Child {
    // Appending keeps the log of earlier runs of the same node.
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    let mut cmd = Command::new(elastickv_bin());
    cmd.arg("--redis-addr")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--raft-addr")
        .arg(format!("127.0.0.1:{raft_port}"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log"))
        .stderr(log_file);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn elastickv")
}

fn try_wait_ready(port: u16, child: &mut Child, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return Err(std::fs::read_to_string(log).unwrap_or_default());
        }
        if answers_ping(port) && pid_on(port).is_none_or(|pid| pid == child.id()) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    Err(std::fs::read_to_string(log).unwrap_or_default())
}

/// The `process_id` of the elastickv or Redis process serving `port`, if
/// it says (one that wants a password does not).
fn pid_on(port: u16) -> Option<u32> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(&encode_command(&["INFO", "server"]))
        .ok()?;
    let mut reply = Vec::new();
    while frame_len(&reply, 0).is_none() {
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => reply.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&reply)
        .lines()
        .find_map(|l| l.trim_end().strip_prefix("process_id:")?.parse().ok())
}

/// Runs the elastickv binary to completion (for start-up failures).
pub fn run_to_exit(args: &[&str], envs: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let mut cmd = Command::new(elastickv_bin());
    cmd.args(args).env("RUST_LOG", "info").stdin(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run elastickv");
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stdout));
    (out.status, text)
}

/// A client of one node that survives the node going away: it reconnects
/// (pausing briefly while the node is unreachable) after an error that
/// broke the connection.
pub struct Reconnecting {
    client: redis::Client,
    conn: Option<redis::Connection>,
}

impl Reconnecting {
    pub fn new(port: u16) -> Reconnecting {
        Reconnecting {
            client: redis::Client::open(format!("redis://127.0.0.1:{port}/")).expect("client"),
            conn: None,
        }
    }

    /// The connection, opened again if needed; `None` (after a pause) while
    /// the node cannot be reached.
    pub fn get(&mut self) -> Option<&mut redis::Connection> {
        if self.conn.is_none() {
            match self
                .client
                .get_connection_with_timeout(Duration::from_secs(1))
            {
                Ok(conn) => {
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                    self.conn = Some(conn);
                }
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(50));
                    return None;
                }
            }
        }
        self.conn.as_mut()
    }

    /// Drops the connection if `e` broke it, and pauses a moment.
    pub fn failed(&mut self, e: &redis::RedisError) {
        if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
            self.conn = None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A redis-server 7.0 process: the reference for differential tests.
pub struct RedisOracle {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl RedisOracle {
    pub fn start() -> RedisOracle {
        RedisOracle::start_with(&[])
    }

    /// With extra configuration flags (later ones override earlier ones,
    /// as in a Redis config file).
    pub fn start_with(args: &[&str]) -> RedisOracle {
        let dir = tempfile::tempdir().expect("tempdir");
        for _ in 0..5 {
            let port = free_port();
            let log = dir.path().join("redis.log");
            let mut child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                // elastickv has one database, like Redis Cluster.
                .args(["--databases", "1"])
                .args(args)
                .arg("--dir")
                .arg(dir.path())
                .arg("--logfile")
                .arg(&log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server is not installed (scripts/test installs it)");
            if try_wait_ready(port, &mut child, &log).is_ok() {
                let oracle = RedisOracle {
                    child,
                    port,
                    _dir: dir,
                };
                oracle.check_version();
                return oracle;
            }
        }
        panic!("redis-server did not start");
    }

    /// Replies are compared with Redis 7.0's: another version answers
    /// some commands differently, which would read as elastickv's bugs.
    fn check_version(&self) {
        let info = self.raw().call(&["INFO", "server"]);
        let info = String::from_utf8_lossy(&info);
        let version = info
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .unwrap_or("unknown");
        assert!(
            version.starts_with("7.0."),
            "the differential tests need redis-server 7.0.x as their oracle; this one is {version}"
        );
    }

    pub fn raw(&self) -> RawClient {
        RawClient::connect(self.port).expect("raw connection")
    }
}

impl Drop for RedisOracle {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Prometheus text a node serves on `port` (its `--metrics-addr`).
pub fn scrape_metrics(port: u16) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("metrics endpoint");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("metrics request");
    let mut body = String::new();
    stream.read_to_string(&mut body).expect("metrics reply");
    body
}

/// The Python interpreter with redis-py (`$ELASTICKV_PYTHON`, which
/// `scripts/test` sets, or `python3`), running `script`.
pub fn run_python(script: &str) -> std::process::Output {
    let python = std::env::var("ELASTICKV_PYTHON").unwrap_or_else(|_| "python3".into());
    Command::new(python)
        .arg("-c")
        .arg(script)
        .output()
        .expect("python3")
}

/// Publishes `total` messages of `payload` to `channel` from
/// `publisher`, 100 at a time, while `reader` (subscribed to it) keeps up
/// to within 200 messages; returns once the reader has read them all.
pub fn flood_keeping_reader_up(
    publisher: &mut RawClient,
    reader: &mut RawClient,
    channel: &str,
    payload: &str,
    total: usize,
) {
    let mut read = 0;
    for i in 0..total {
        publisher.send(&["PUBLISH", channel, payload]);
        if i % 100 == 99 {
            for _ in 0..100 {
                publisher.read_reply();
            }
            while read + 200 < i + 1 {
                reader.read_reply();
                read += 1;
            }
        }
    }
    for _ in 0..total % 100 {
        publisher.read_reply();
    }
    while read < total {
        reader.read_reply();
        read += 1;
    }
}

/// A client that sends commands and returns each reply's exact bytes.
pub struct RawClient {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawClient {
    pub fn connect(port: u16) -> std::io::Result<RawClient> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_nodelay(true)?;
        Ok(RawClient {
            stream,
            buf: Vec::new(),
        })
    }

    pub fn set_read_timeout(&mut self, timeout: Duration) {
        let _ = self.stream.set_read_timeout(Some(timeout));
    }

    /// Sends one command as a RESP array of bulk strings.
    pub fn send<A: AsRef<[u8]>>(&mut self, args: &[A]) {
        self.stream.write_all(&encode_command(args)).expect("write");
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads one whole reply and returns its bytes.
    pub fn read_reply(&mut self) -> Vec<u8> {
        loop {
            if let Some(n) = frame_len(&self.buf, 0) {
                return self.buf.drain(..n).collect();
            }
            let mut chunk = [0u8; 65536];
            let n = self.stream.read(&mut chunk).expect("read reply");
            assert!(n > 0, "connection closed while waiting for a reply");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    pub fn call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Vec<u8> {
        self.send(args);
        self.read_reply()
    }

    /// Whether the server closes the connection within `timeout` without
    /// sending anything more.
    pub fn closed_by_server(&mut self, timeout: Duration) -> bool {
        self.set_read_timeout(timeout);
        if !self.buf.is_empty() {
            return false;
        }
        let mut chunk = [0u8; 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
            ),
        }
    }

    /// Reads until the server closes the connection; returns what came.
    pub fn read_to_close(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.buf);
        let _ = self.stream.read_to_end(&mut out);
        out
    }
}

/// The length of the RESP2/RESP3 frame starting at `at`, or `None` if it
/// has not fully arrived. (The `redis-protocol` decoder cannot represent
/// some frames Redis sends, such as sets of maps in COMMAND INFO, so the
/// test client only finds frame boundaries itself and compares bytes.)
pub fn frame_len(buf: &[u8], at: usize) -> Option<usize> {
    let line_end = at + buf.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
    let header = std::str::from_utf8(&buf[at + 1..line_end]).ok()?;
    let after = line_end + 2;
    let count = |h: &str| h.parse::<i64>().ok();
    match buf[at] {
        b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => Some(after - at),
        b'$' | b'=' | b'!' => {
            let n = count(header)?;
            if n < 0 {
                return Some(after - at);
            }
            let end = after + n as usize + 2;
            (buf.len() >= end).then_some(end - at)
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let n = count(header)?;
            let items = if matches!(buf[at], b'%' | b'|') {
                2 * n
            } else {
                n
            };
            let mut pos = after;
            for _ in 0..items.max(0) {
                pos += frame_len(buf, pos)?;
            }
            Some(pos - at)
        }
        _ => None,
    }
}

pub fn encode_command<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        let arg = arg.as_ref();
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Writes `key:<i>` = `v<i>` for every `i` of `range` through `node`, in one
/// pipeline.
pub fn write_numbered(node: &Node, range: std::ops::Range<u64>) {
    let mut conn = node.client();
    let mut pipe = redis::pipe();
    for i in range {
        pipe.cmd("SET")
            .arg(format!("key:{i}"))
            .arg(format!("v{i}"))
            .ignore();
    }
    let _: () = pipe.query(&mut conn).expect("pipelined writes");
}

/// Checks that `node` serves `key:<i>` = `v<i>` for every `i` of `range`.
pub fn assert_numbered(node: &Node, range: std::ops::Range<u64>) {
    let keys: Vec<String> = range.clone().map(|i| format!("key:{i}")).collect();
    let values: Vec<Option<String>> =
        redis::Commands::mget(&mut node.client(), &keys).expect("MGET");
    for (i, value) in range.zip(values) {
        assert_eq!(
            value,
            Some(format!("v{i}")),
            "key:{i} on port {}",
            node.port
        );
    }
}
