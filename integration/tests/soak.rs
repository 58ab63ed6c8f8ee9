//! A long randomized fault soak (ignored by default; `scripts/soak
//! [seconds]`). A 3-node, 4-shard cluster with small logs (so snapshots
//! happen) and skewed wall clocks takes mixed load on every node while
//! faults hit it one after another:
//!
//! - kill -9 and restart; SIGTERM and restart; two nodes killed at once;
//! - a node cut off, or stopped (SIGSTOP), then healed;
//! - slow links (added latency) and flapping links (cut and restored every
//!   few hundred milliseconds);
//! - a one-way partition during which leadership is transferred;
//! - a wall clock stepped by up to ±5 s (libfaketime);
//! - a node removed with `ctl remove-node`, its disk wiped, and added back
//!   with `--join` and `ctl add-node`, sometimes while another node is cut
//!   off.
//!
//! After each fault heals, every shard must take a write within a bound.
//! Throughout, and once more at the end, the history is checked:
//!
//! - registers (keys overwritten with unique values, pipelined): every read
//!   returns a value some write could have produced, never one overwritten
//!   by a write that finished before the read began, and never older than
//!   what an earlier read returned (per-key linearizability, for reads and
//!   writes whose outcome is known or unknown);
//! - keys with short TTLs: once any read saw one gone, no later read sees
//!   it;
//! - counters: acknowledged increments <= final value <= attempts;
//! - write-once keys: every acknowledged one is on every node at the end.
//!
//! The seed (`ELASTICKV_SOAK_SEED`, random by default) decides the faults
//! and is printed first, so a run can be repeated.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use elastickv_integration::faketime::SkewedClock;
use elastickv_integration::{Cluster, Reconnecting};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use redis::Commands;

const REGISTERS: u32 = 120;
const SHARDS: u32 = 4;
/// After a fault heals, every shard must take a write within this.
const PROGRESS_BOUND: Duration = Duration::from_secs(30);

/// A write of a unique value to a register.
#[derive(Clone, Copy)]
struct RegWrite {
    value: u64,
    invoked: Instant,
    /// `None` when the outcome is unknown (an error or a lost reply): it
    /// may have taken effect at any time after `invoked`.
    completed: Option<Instant>,
}

#[derive(Clone, Copy)]
struct RegRead {
    value: Option<u64>,
    invoked: Instant,
    completed: Instant,
    node: u64,
}

#[derive(Default)]
struct History {
    writes: BTreeMap<u32, Vec<RegWrite>>,
    reads: BTreeMap<u32, Vec<RegRead>>,
    /// (key, invoked, completed, present, node) for keys with a TTL.
    ttl_reads: Vec<(String, Instant, Instant, bool, u64)>,
    ttl_written: Vec<String>,
    /// Write-once keys acknowledged.
    facts: Vec<(String, String)>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Increments {
    attempts: i64,
    acknowledged: i64,
    highest: i64,
}

/// Every node's current Redis port (a restart may move one).
type Ports = Arc<RwLock<BTreeMap<u64, u16>>>;

/// A client per node, following port moves.
struct Clients {
    ports: Ports,
    clients: BTreeMap<u64, (u16, Reconnecting)>,
}

impl Clients {
    fn new(ports: Ports) -> Clients {
        Clients {
            ports,
            clients: BTreeMap::new(),
        }
    }

    fn any(&mut self, rng: &mut impl Rng) -> (u64, &mut Reconnecting) {
        let ports = self.ports.read().unwrap().clone();
        let (&node, &port) = ports.iter().collect::<Vec<_>>()[rng.gen_range(0..ports.len())];
        let entry = self
            .clients
            .entry(node)
            .or_insert_with(|| (port, Reconnecting::new(port)));
        if entry.0 != port {
            *entry = (port, Reconnecting::new(port));
        }
        (node, &mut entry.1)
    }
}

fn key(register: u32) -> String {
    format!("reg:{{{}}}", register)
}

#[test]
#[ignore = "long; run with scripts/soak"]
fn random_faults_keep_every_promise() {
    let seconds: u64 = std::env::var("ELASTICKV_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let seed: u64 = std::env::var("ELASTICKV_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("soak: {seconds} s, seed {seed} (ELASTICKV_SOAK_SEED={seed} repeats the faults)");
    let mut rng = StdRng::seed_from_u64(seed);

    let dir = tempfile::tempdir().unwrap();
    let clocks: BTreeMap<u64, SkewedClock> = (1..=3)
        .map(|id| {
            let offset = rng.gen_range(-3_000..=3_000);
            (
                id,
                SkewedClock::new(&dir.path().join(format!("clock{id}")), offset),
            )
        })
        .collect();
    let mut cluster = Cluster::start_each(3, SHARDS, &[], &|id| {
        let mut envs = clocks[&id].env();
        envs.push(("ELASTICKV_RAFT_SNAPSHOT_COUNT".into(), "200".into()));
        envs.push(("ELASTICKV_RAFT_LOG_RETAIN_ENTRIES".into(), "50".into()));
        envs
    });
    let ports: Ports = Arc::new(RwLock::new(
        cluster
            .ids()
            .iter()
            .map(|&id| (id, cluster.node(id).port))
            .collect(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let history: Arc<Mutex<History>> = Arc::default();
    let ops = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();

    // Register writers: pipelines of SETs with unique values.
    for w in 0..3u64 {
        let (stop, history, ports, ops) =
            (stop.clone(), history.clone(), ports.clone(), ops.clone());
        workers.push(std::thread::spawn(move || {
            let mut clients = Clients::new(ports);
            let mut rng = rand::thread_rng();
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let batch: Vec<(u32, u64)> = (0..8)
                    .map(|_| {
                        seq += 1;
                        (rng.gen_range(0..REGISTERS), (w << 40) | seq)
                    })
                    .collect();
                let (_, client) = clients.any(&mut rng);
                let Some(conn) = client.get() else { continue };
                let mut pipe = redis::pipe();
                for (register, value) in &batch {
                    pipe.cmd("SET").arg(key(*register)).arg(*value);
                }
                let invoked = Instant::now();
                let replies: redis::RedisResult<Vec<redis::Value>> = pipe.query(conn);
                let completed = Instant::now();
                let oks: Vec<bool> = match &replies {
                    Ok(values) => values
                        .iter()
                        .map(|v| matches!(v, redis::Value::Okay))
                        .collect(),
                    Err(e) => {
                        client.failed(e);
                        vec![false; batch.len()]
                    }
                };
                let mut h = history.lock().unwrap();
                for ((register, value), ok) in batch.iter().zip(oks) {
                    h.writes.entry(*register).or_default().push(RegWrite {
                        value: *value,
                        invoked,
                        completed: ok.then_some(completed),
                    });
                }
                ops.fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
        }));
    }
    // Register readers.
    for _ in 0..3 {
        let (stop, history, ports, ops) =
            (stop.clone(), history.clone(), ports.clone(), ops.clone());
        workers.push(std::thread::spawn(move || {
            let mut clients = Clients::new(ports);
            let mut rng = rand::thread_rng();
            while !stop.load(Ordering::Relaxed) {
                let register = rng.gen_range(0..REGISTERS);
                let (node, client) = clients.any(&mut rng);
                let Some(conn) = client.get() else { continue };
                let invoked = Instant::now();
                let read: redis::RedisResult<Option<u64>> = conn.get(key(register));
                let completed = Instant::now();
                match read {
                    Ok(value) => {
                        history
                            .lock()
                            .unwrap()
                            .reads
                            .entry(register)
                            .or_default()
                            .push(RegRead {
                                value,
                                invoked,
                                completed,
                                node,
                            });
                        ops.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => client.failed(&e),
                }
            }
        }));
    }
    // Keys with short TTLs, written once and read until they expire.
    {
        let (stop, history, ports, ops) =
            (stop.clone(), history.clone(), ports.clone(), ops.clone());
        workers.push(std::thread::spawn(move || {
            let mut clients = Clients::new(ports);
            let mut rng = rand::thread_rng();
            for i in 0u64.. {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let name = format!("ttl:{i}");
                if rng.gen_bool(0.3) {
                    let (_, client) = clients.any(&mut rng);
                    let Some(conn) = client.get() else { continue };
                    let set: redis::RedisResult<()> = redis::cmd("SET")
                        .arg(&name)
                        .arg(1)
                        .arg("PX")
                        .arg(rng.gen_range(200..3_000))
                        .query(conn);
                    match set {
                        Ok(()) => history.lock().unwrap().ttl_written.push(name),
                        Err(e) => client.failed(&e),
                    }
                }
                let target = {
                    let h = history.lock().unwrap();
                    let recent = &h.ttl_written[h.ttl_written.len().saturating_sub(100)..];
                    recent.choose(&mut rng).cloned()
                };
                let Some(target) = target else { continue };
                let (node, client) = clients.any(&mut rng);
                let Some(conn) = client.get() else { continue };
                let invoked = Instant::now();
                let exists: redis::RedisResult<i64> = redis::cmd("EXISTS").arg(&target).query(conn);
                let completed = Instant::now();
                match exists {
                    Ok(n) => {
                        history.lock().unwrap().ttl_reads.push((
                            target,
                            invoked,
                            completed,
                            n == 1,
                            node,
                        ));
                        ops.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => client.failed(&e),
                }
            }
        }));
    }
    // Write-once keys.
    {
        let (stop, history, ports, ops) =
            (stop.clone(), history.clone(), ports.clone(), ops.clone());
        workers.push(std::thread::spawn(move || {
            let mut clients = Clients::new(ports);
            let mut rng = rand::thread_rng();
            for i in 0u64.. {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let (name, value) = (format!("fact:{i}"), format!("v{i}"));
                let (_, client) = clients.any(&mut rng);
                let Some(conn) = client.get() else { continue };
                match conn.set::<_, _, ()>(&name, &value) {
                    Ok(()) => {
                        history.lock().unwrap().facts.push((name, value));
                        ops.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => client.failed(&e),
                }
            }
        }));
    }
    // Counters, one per thread, each INCR sent once.
    let counters: Vec<_> = (0..2)
        .map(|c| {
            let (stop, ports, ops) = (stop.clone(), ports.clone(), ops.clone());
            std::thread::spawn(move || {
                let mut clients = Clients::new(ports);
                let mut rng = rand::thread_rng();
                let mut seen = Increments::default();
                let name = format!("counter:{c}");
                while !stop.load(Ordering::Relaxed) {
                    let (_, client) = clients.any(&mut rng);
                    let Some(conn) = client.get() else { continue };
                    seen.attempts += 1;
                    match conn.incr::<_, _, i64>(&name, 1) {
                        Ok(n) => {
                            seen.acknowledged += 1;
                            seen.highest = seen.highest.max(n);
                        }
                        Err(e) => client.failed(&e),
                    }
                    ops.fetch_add(1, Ordering::Relaxed);
                }
                (name, seen)
            })
        })
        .collect();

    // The faults.
    let mut faults: BTreeMap<&'static str, u32> = BTreeMap::new();
    let mut stalls: Vec<String> = Vec::new();
    let mut slowest_recovery = Duration::ZERO;
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_millis(rng.gen_range(300..1_500)));
        let kind = inflict(&mut cluster, &clocks, &ports, &mut rng);
        *faults.entry(kind).or_default() += 1;
        match progress(&cluster, &ports) {
            Ok(took) => slowest_recovery = slowest_recovery.max(took),
            Err(why) => stalls.push(format!("after {kind}: {why}")),
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let counters: Vec<(String, Increments)> =
        counters.into_iter().map(|c| c.join().unwrap()).collect();

    // Everything healed: the nodes agree, then a last read of every
    // register through every node joins the history.
    cluster.heal();
    cluster.undelay();
    cluster.wait_for_leaders(&cluster.ids(), Duration::from_secs(60));
    cluster.wait_caught_up(&cluster.ids(), Duration::from_secs(60));
    let mut history = std::mem::take(&mut *history.lock().unwrap());
    for id in cluster.ids() {
        let mut conn = cluster.node(id).client();
        for register in 0..REGISTERS {
            let invoked = Instant::now();
            let value: Option<u64> = conn.get(key(register)).unwrap();
            history.reads.entry(register).or_default().push(RegRead {
                value,
                invoked,
                completed: Instant::now(),
                node: id,
            });
        }
    }

    let mut anomalies: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for stall in stalls {
        anomalies
            .entry("no progress after a fault")
            .or_default()
            .push(stall);
    }
    check_registers(&history, &mut anomalies);
    check_ttls(&history, &mut anomalies);
    for id in cluster.ids() {
        let mut conn = cluster.node(id).client();
        for chunk in history.facts.chunks(500) {
            let names: Vec<&str> = chunk.iter().map(|(k, _)| k.as_str()).collect();
            let values: Vec<Option<String>> = conn.mget(&names).unwrap();
            for ((name, value), got) in chunk.iter().zip(values) {
                if got.as_deref() != Some(value.as_str()) {
                    anomalies
                        .entry("acknowledged write lost")
                        .or_default()
                        .push(format!("{name} on node {id}: {got:?}"));
                }
            }
        }
        for (name, seen) in &counters {
            let value: i64 = conn.get(name).unwrap_or(0);
            if !(seen.highest <= value && seen.acknowledged <= value && value <= seen.attempts) {
                anomalies
                    .entry("counter off")
                    .or_default()
                    .push(format!("{name} on node {id} is {value}: {seen:?}"));
            }
        }
    }

    let register_ops: usize = history.writes.values().map(Vec::len).sum::<usize>()
        + history.reads.values().map(Vec::len).sum::<usize>();
    eprintln!(
        "soak done: {seconds} s, seed {seed}\n\
         faults: {faults:?}\n\
         operations: {} in all; {register_ops} on registers, {} TTL reads, {} write-once keys, \
         counters {counters:?}\n\
         slowest recovery after a fault: {slowest_recovery:?}\n\
         anomalies: {}",
        ops.load(Ordering::Relaxed),
        history.ttl_reads.len(),
        history.facts.len(),
        anomalies.values().map(Vec::len).sum::<usize>()
    );
    for (kind, found) in &anomalies {
        eprintln!(
            "  {kind}: {} e.g. {:?}",
            found.len(),
            &found[..found.len().min(5)]
        );
    }
    assert!(
        history.facts.len() > 100,
        "too little load to mean anything"
    );
    assert!(anomalies.is_empty(), "anomalies found (seed {seed})");
}

/// Applies one random fault, heals it, and names it.
fn inflict(
    cluster: &mut Cluster,
    clocks: &BTreeMap<u64, SkewedClock>,
    ports: &Ports,
    rng: &mut StdRng,
) -> &'static str {
    let ids = cluster.ids();
    let victim = *ids.choose(rng).unwrap();
    let others: Vec<u64> = ids.iter().copied().filter(|&id| id != victim).collect();
    let other = *others.choose(rng).unwrap();
    let pause = |rng: &mut StdRng, lo: u64, hi: u64| {
        std::thread::sleep(Duration::from_millis(rng.gen_range(lo..hi)))
    };
    let restarted = |cluster: &Cluster, id: u64| {
        ports.write().unwrap().insert(id, cluster.node(id).port);
    };
    match rng.gen_range(0..10) {
        0 => {
            cluster.node_mut(victim).kill9();
            pause(rng, 100, 3_000);
            cluster.node_mut(victim).restart();
            restarted(cluster, victim);
            "kill -9 + restart"
        }
        1 => {
            cluster.isolate(victim);
            pause(rng, 500, 4_000);
            cluster.heal();
            "partition + heal"
        }
        2 => {
            cluster.node(victim).signal("STOP");
            pause(rng, 500, 4_000);
            cluster.node(victim).signal("CONT");
            "SIGSTOP + SIGCONT"
        }
        3 => {
            cluster.node_mut(victim).terminate();
            pause(rng, 100, 2_000);
            cluster.node_mut(victim).restart();
            restarted(cluster, victim);
            "SIGTERM + restart"
        }
        4 => {
            cluster.node_mut(victim).kill9();
            cluster.node_mut(other).kill9();
            pause(rng, 100, 2_000);
            cluster.node_mut(victim).restart();
            cluster.node_mut(other).restart();
            restarted(cluster, victim);
            restarted(cluster, other);
            "two nodes kill -9 + restart"
        }
        5 => {
            let ms = rng.gen_range(50..400);
            for &id in &ids {
                if id != victim {
                    cluster.delay(victim, id, ms);
                    cluster.delay(id, victim, ms);
                }
            }
            pause(rng, 1_000, 4_000);
            cluster.undelay();
            "slow links"
        }
        6 => {
            let until = Instant::now() + Duration::from_millis(rng.gen_range(1_000..4_000));
            while Instant::now() < until {
                cluster.isolate(victim);
                pause(rng, 50, 300);
                cluster.heal();
                pause(rng, 50, 300);
            }
            "flapping links"
        }
        7 => {
            // One way: the victim hears `other`, `other` does not hear the
            // victim; leadership of a shard is handed to one of them.
            cluster.cut(victim, other);
            let shard = rng.gen_range(0..SHARDS).to_string();
            let to = if rng.gen_bool(0.5) { victim } else { other };
            let via = *ids.choose(rng).unwrap();
            let _ = cluster
                .node(via)
                .ctl(&["transfer-leader", &shard, &to.to_string()]);
            pause(rng, 500, 3_000);
            cluster.heal();
            "one-way partition + leader transfer"
        }
        8 => {
            clocks[&victim].set(rng.gen_range(-5_000..=5_000));
            "wall clock step"
        }
        _ => {
            replace_node(cluster, victim, other, rng);
            restarted(cluster, victim);
            "remove + wipe + re-add a node"
        }
    }
}

/// Removes `victim` from every shard (sometimes while `other` is cut off),
/// wipes its disk, and adds it back as a new member with `--join`.
fn replace_node(cluster: &mut Cluster, victim: u64, other: u64, rng: &mut StdRng) {
    let third = cluster
        .ids()
        .into_iter()
        .find(|&id| id != victim && id != other)
        .unwrap();
    let cut_off = rng.gen_bool(0.5);
    if cut_off {
        cluster.isolate(other);
    }
    let victim_id = victim.to_string();
    let removed = (0..5).any(|_| {
        let (ok, output) = cluster.node(third).ctl(&["remove-node", &victim_id]);
        if !ok {
            eprintln!("remove-node {victim}: {output}");
        }
        ok
    });
    cluster.heal();
    assert!(removed, "remove-node {victim} kept failing");
    cluster.node_mut(victim).kill9();
    std::fs::remove_dir_all(&cluster.node(victim).data_dir).unwrap();
    let args: Vec<String> = cluster
        .node(victim)
        .args()
        .into_iter()
        .map(|a| {
            if a == "--bootstrap" {
                "--join".to_string()
            } else {
                a
            }
        })
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cluster.node_mut(victim).restart_with(&args);
    let addr = format!("127.0.0.1:{}", cluster.node(victim).raft_port);
    let added = (0..5).any(|_| {
        let (ok, output) = cluster.node(third).ctl(&["add-node", &victim_id, &addr]);
        if !ok {
            eprintln!("add-node {victim}: {output}");
        }
        ok
    });
    assert!(added, "add-node {victim} kept failing");
}

/// Waits until every shard takes a write through some node; how long that
/// took, or why it did not within the bound.
fn progress(cluster: &Cluster, ports: &Ports) -> Result<Duration, String> {
    let started = Instant::now();
    let ports = ports.read().unwrap().clone();
    for shard in 0..SHARDS {
        let probe = cluster.key_in_shard(shard, "progress", 0);
        loop {
            let wrote = ports.values().any(|&port| {
                redis::Client::open(format!("redis://127.0.0.1:{port}/"))
                    .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
                    .and_then(|mut c| {
                        c.set_read_timeout(Some(Duration::from_secs(5)))?;
                        c.set::<_, _, ()>(&probe, started.elapsed().as_millis() as u64)
                    })
                    .is_ok()
            });
            if wrote {
                break;
            }
            if started.elapsed() > PROGRESS_BOUND {
                return Err(format!(
                    "shard {shard} took no write for {PROGRESS_BOUND:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(started.elapsed())
}

/// Per-key linearizability of the registers (see the module header).
fn check_registers(history: &History, anomalies: &mut BTreeMap<&'static str, Vec<String>>) {
    for (register, reads) in &history.reads {
        let writes = history.writes.get(register).cloned().unwrap_or_default();
        let by_value: BTreeMap<u64, RegWrite> = writes.iter().map(|w| (w.value, *w)).collect();
        // For "stale" reads: writes known complete, by completion time.
        let mut completed: Vec<RegWrite> = writes
            .iter()
            .filter(|w| w.completed.is_some())
            .copied()
            .collect();
        completed.sort_by_key(|w| w.completed);
        let mut sorted = reads.clone();
        sorted.sort_by_key(|r| r.invoked);
        // Reads that finished before each read began: the newest write
        // (by invocation) any of them returned.
        let mut by_completion = reads.clone();
        by_completion.sort_by_key(|r| r.completed);
        let mut done = by_completion.iter().peekable();
        let mut newest_seen: Option<Instant> = None;
        let mut saw_a_value = false;
        let mut latest_write_start_completed_before = None;
        let mut writes_done = completed.iter().peekable();
        for read in &sorted {
            while let Some(earlier) = done.next_if(|r| r.completed < read.invoked) {
                if let Some(w) = earlier.value.and_then(|v| by_value.get(&v)) {
                    newest_seen = Some(newest_seen.map_or(w.invoked, |n| n.max(w.invoked)));
                }
                saw_a_value |= earlier.value.is_some();
            }
            while let Some(w) =
                writes_done.next_if(|w| w.completed.is_some_and(|c| c < read.invoked))
            {
                latest_write_start_completed_before = Some(
                    latest_write_start_completed_before
                        .map_or(w.invoked, |l: Instant| l.max(w.invoked)),
                );
            }
            let describe = |what: &str| {
                format!(
                    "reg:{register} read {:?} on node {} {what}",
                    read.value, read.node
                )
            };
            let Some(value) = read.value else {
                if latest_write_start_completed_before.is_some() || saw_a_value {
                    anomalies
                        .entry("register read stale (nil after a write)")
                        .or_default()
                        .push(describe("after a write had completed"));
                }
                continue;
            };
            let Some(write) = by_value.get(&value) else {
                anomalies
                    .entry("register read a value never written")
                    .or_default()
                    .push(describe(""));
                continue;
            };
            if write.invoked > read.completed {
                anomalies
                    .entry("register read from the future")
                    .or_default()
                    .push(describe(""));
            }
            if let (Some(done_at), Some(later)) =
                (write.completed, latest_write_start_completed_before)
                && done_at < later
            {
                anomalies
                    .entry("register read stale (overwritten before the read began)")
                    .or_default()
                    .push(describe(""));
            }
            if let (Some(done_at), Some(newest)) = (write.completed, newest_seen)
                && done_at < newest
            {
                anomalies
                    .entry("register read older than an earlier read")
                    .or_default()
                    .push(describe(""));
            }
        }
    }
}

/// Once any read saw a key with a TTL gone, no later read sees it.
fn check_ttls(history: &History, anomalies: &mut BTreeMap<&'static str, Vec<String>>) {
    let mut first_gone: BTreeMap<&str, Instant> = BTreeMap::new();
    for (name, _, completed, present, _) in &history.ttl_reads {
        if !present {
            let at = first_gone.entry(name).or_insert(*completed);
            *at = (*at).min(*completed);
        }
    }
    for (name, invoked, _, present, node) in &history.ttl_reads {
        if *present && first_gone.get(name.as_str()).is_some_and(|g| invoked > g) {
            anomalies
                .entry("expired key seen again")
                .or_default()
                .push(format!("{name} on node {node}"));
        }
    }
}
