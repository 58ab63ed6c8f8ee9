//! A 3-node cluster of real processes: every node serves every command,
//! losing a node loses no acknowledged write, an isolated old leader
//! neither serves stale reads nor acknowledges writes, and a stalled
//! follower costs the leader bounded memory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use elastickv_integration::{Cluster, Node, Reconnecting};
use redis::Commands;

/// A config file that shortens how long a request waits for a leader, so
/// the partition test's refusals come quickly.
fn short_timeout_config(dir: &std::path::Path, ms: u64) -> String {
    let path = dir.join("cluster.toml");
    std::fs::write(&path, format!("request_timeout_ms = {ms}\n")).unwrap();
    path.to_str().unwrap().to_string()
}

fn reply_text(reply: &[u8]) -> String {
    String::from_utf8_lossy(reply).into_owned()
}

#[test]
fn every_node_serves_reads_and_writes_for_every_shard() {
    let cluster = Cluster::start(3, 4, &[], &[]);
    // Writes through each node, to keys of every shard.
    for id in cluster.ids() {
        let mut conn = cluster.node(id).client();
        for i in 0..100 {
            let _: () = conn.set(format!("node{id}:k{i}"), format!("v{i}")).unwrap();
        }
        for _ in 0..20 {
            let _: i64 = conn.incr("shared-counter", 1).unwrap();
        }
        // Multi-key commands on one shard, and fanned out over all.
        let _: () = conn
            .mset(&[("{t}a", format!("a{id}")), ("{t}b", format!("b{id}"))])
            .unwrap();
    }
    // Reads through each node see every write, linearizably: no waiting.
    for id in cluster.ids() {
        let mut conn = cluster.node(id).client();
        for writer in cluster.ids() {
            let keys: Vec<String> = (0..100).map(|i| format!("node{writer}:k{i}")).collect();
            let values: Vec<Option<String>> = conn.mget(&keys).unwrap();
            let expected: Vec<Option<String>> = (0..100).map(|i| Some(format!("v{i}"))).collect();
            assert_eq!(values, expected, "node {id} reading node {writer}'s writes");
        }
        let counter: i64 = conn.get("shared-counter").unwrap();
        assert_eq!(counter, 60, "node {id}");
        let tagged: Vec<String> = conn.mget(&["{t}a", "{t}b"]).unwrap();
        assert_eq!(
            tagged,
            vec!["a3".to_string(), "b3".to_string()],
            "node {id}"
        );
        let exists: i64 = redis::cmd("EXISTS")
            .arg(&["node1:k1", "node2:k2", "node3:k3", "missing"])
            .query(&mut conn)
            .unwrap();
        assert_eq!(exists, 3);
    }
    cluster.wait_caught_up(&cluster.ids(), Duration::from_secs(10));
    for id in cluster.ids() {
        let size: i64 = redis::cmd("DBSIZE")
            .query(&mut cluster.node(id).client())
            .unwrap();
        assert_eq!(size, 303, "node {id}");
    }

    // Followers know the leader, and leadership spreads over the nodes:
    // shard s settles on node ids[s mod 3].
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let leaders = cluster.wait_for_leaders(&cluster.ids(), Duration::from_secs(10));
        if leaders == [1, 2, 3, 1] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "shard leaders never settled on their preferred nodes: {leaders:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for id in cluster.ids() {
        let info = cluster.info_raft(id).unwrap();
        assert_eq!(info.len(), 4);
        for shard in info {
            assert!(shard.leader != 0, "node {id} knows no leader: {shard:?}");
            assert!(
                (shard.role == "leader") == (shard.leader == id),
                "node {id}: {shard:?}"
            );
        }
    }
    // A pipeline of writes keeps its order when forwarded: APPENDs sent
    // through a node that does not lead the key's shard.
    // (Leadership has settled: no transfer interleaves.)
    let leaders = cluster.wait_for_leaders(&cluster.ids(), Duration::from_secs(10));
    let key = cluster.key_in_shard(0, "ordered", 0);
    let via = cluster
        .ids()
        .into_iter()
        .find(|&id| id != leaders[0])
        .unwrap();
    let mut pipe = redis::pipe();
    for i in 0..500 {
        pipe.cmd("APPEND").arg(&key).arg(format!("{i},")).ignore();
    }
    let _: () = pipe.query(&mut cluster.node(via).client()).unwrap();
    let appended: String = cluster.node(leaders[0]).client().get(&key).unwrap();
    let expected: String = (0..500).map(|i| format!("{i},")).collect();
    assert_eq!(appended, expected, "pipelined APPENDs through node {via}");
    let _: () = cluster.node(via).client().del(&key).unwrap();
}

/// Writes `SET w<w>:k<i> v<i>` in a loop until told to stop, recording
/// what was acknowledged. Errors (elections, the node going away) are
/// counted and retried on a fresh connection.
fn writer(
    node: &Node,
    w: usize,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(String, String)>>>,
    errors: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    let mut client = Reconnecting::new(node.port);
    std::thread::spawn(move || {
        for i in 0.. {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let Some(conn) = client.get() else { continue };
            let (key, value) = (format!("w{w}:k{i}"), format!("v{i}"));
            match conn.set::<_, _, ()>(&key, &value) {
                Ok(()) => acked.lock().unwrap().push((key, value)),
                Err(e) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    client.failed(&e);
                }
            }
        }
    })
}

/// What an INCR loop saw of its counter.
#[derive(Debug, Default, Clone, Copy)]
struct Increments {
    /// INCRs sent.
    attempts: i64,
    /// INCRs answered with a number.
    acknowledged: i64,
    /// The highest number an INCR returned.
    highest: i64,
}

/// INCRs `key` through `node` until told to stop. Each INCR is sent once:
/// one whose outcome is unknown to the client is not repeated, so the
/// counter must end between what was acknowledged and what was sent.
fn incrementer(
    node: &Node,
    key: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Increments> {
    let mut client = Reconnecting::new(node.port);
    std::thread::spawn(move || {
        let mut seen = Increments::default();
        while !stop.load(Ordering::Relaxed) {
            let Some(conn) = client.get() else { continue };
            seen.attempts += 1;
            match conn.incr::<_, _, i64>(&key, 1) {
                Ok(n) => {
                    seen.acknowledged += 1;
                    seen.highest = seen.highest.max(n);
                }
                Err(e) => client.failed(&e),
            }
        }
        seen
    })
}

#[test]
fn killing_a_shard_leader_loses_no_acknowledged_write() {
    let mut cluster = Cluster::start(3, 4, &[], &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let errors = Arc::new(AtomicU64::new(0));
    // Leaders settle on their preferred nodes first (shard s on node
    // 1 + s mod 3), so the victim chosen now still leads shard 0 when it
    // is killed.
    let deadline = Instant::now() + Duration::from_secs(20);
    while cluster.wait_for_leaders(&cluster.ids(), Duration::from_secs(10)) != [1, 2, 3, 1] {
        assert!(Instant::now() < deadline, "leaders never settled");
        std::thread::sleep(Duration::from_millis(100));
    }
    let victim = 1;
    let survivors: Vec<u64> = cluster
        .ids()
        .into_iter()
        .filter(|&id| id != victim)
        .collect();
    // Two writers per node.
    let writers: Vec<_> = (0..6)
        .map(|w| {
            let node = cluster.node(1 + (w % 3) as u64);
            writer(node, w, stop.clone(), acked.clone(), errors.clone())
        })
        .collect();
    // Counters on the shard whose leader dies, incremented through the
    // nodes that forward to it: a forwarded INCR whose leader dies before
    // answering is resent to the next leader with its request id, and must
    // apply once.
    let counters: Vec<(String, std::thread::JoinHandle<Increments>)> = survivors
        .iter()
        .enumerate()
        .map(|(i, &id)| {
            let key = cluster.key_in_shard(0, "counter", i as u64);
            let handle = incrementer(cluster.node(id), key.clone(), stop.clone());
            (key, handle)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));

    let before_kill = acked.lock().unwrap().len();
    cluster.node_mut(victim).kill9();
    let killed_at = Instant::now();

    // A write to shard 0 through a survivor succeeds again once a new
    // leader is elected.
    let probe_key = cluster.key_in_shard(0, "probe", 0);
    let mut probe = cluster.node(survivors[0]).client();
    let resumed = loop {
        if probe.set::<_, _, ()>(&probe_key, "after-kill").is_ok() {
            break killed_at.elapsed();
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(20),
            "shard 0 accepted no write for 20 s after its leader was killed"
        );
    };
    eprintln!("writes to the killed leader's shard resumed after {resumed:?}");
    // Election timeouts are 1-2 s (10 ticks of 100 ms, randomized); a
    // few of them, not an unbounded stall.
    assert!(
        resumed < Duration::from_secs(8),
        "writes resumed only after {resumed:?}"
    );
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let counters: Vec<(String, Increments)> = counters
        .into_iter()
        .map(|(key, handle)| (key, handle.join().unwrap()))
        .collect();
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > before_kill + 50,
        "the survivors acknowledged too few writes after the kill: {} -> {}",
        before_kill,
        acked.len()
    );
    eprintln!(
        "{} writes acknowledged ({before_kill} before the kill), {} refused or failed",
        acked.len(),
        errors.load(Ordering::Relaxed)
    );

    // The killed node restarts from its data directory and catches up.
    cluster.node_mut(victim).restart();
    cluster.wait_for_leaders(&cluster.ids(), Duration::from_secs(30));
    cluster.wait_caught_up(&cluster.ids(), Duration::from_secs(30));
    for id in cluster.ids() {
        let mut conn = cluster.node(id).client();
        let mut missing = Vec::new();
        for chunk in acked.chunks(200) {
            let keys: Vec<&str> = chunk.iter().map(|(k, _)| k.as_str()).collect();
            let values: Vec<Option<String>> = conn.mget(&keys).unwrap();
            for ((key, value), got) in chunk.iter().zip(values) {
                if got.as_deref() != Some(value.as_str()) {
                    missing.push((key.clone(), got));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "node {id} lost {} acknowledged writes, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        let probe_value: String = conn.get(&probe_key).unwrap();
        assert_eq!(probe_value, "after-kill");
        for (key, seen) in &counters {
            let value: i64 = conn.get(key).unwrap();
            assert!(
                seen.highest <= value && seen.acknowledged <= value && value <= seen.attempts,
                "{key} on node {id} is {value}: {seen:?} (applied twice, or lost)"
            );
        }
    }
    eprintln!("counters through the surviving nodes: {counters:?}");
}

#[test]
fn isolated_old_leader_serves_no_stale_read_and_acknowledges_no_write() {
    let dir = tempfile::tempdir().unwrap();
    let config = short_timeout_config(dir.path(), 2000);
    let cluster = Cluster::start(3, 1, &["--config", &config], &[]);
    let old_leader = cluster.leader_of(0, &cluster.ids()).expect("a leader");
    let majority: Vec<u64> = cluster
        .ids()
        .into_iter()
        .filter(|&id| id != old_leader)
        .collect();
    let mut on_old = cluster.node(old_leader).raw();
    assert_eq!(on_old.call(&["SET", "k", "old"]), b"+OK\r\n");

    cluster.isolate(old_leader);
    let isolated_at = Instant::now();
    // A write sent to the isolated leader cannot reach a majority. (A key
    // of its own, so "never applied" can be checked after healing.)
    let refused = on_old.call(&["SET", "refused", "from-isolated-leader"]);
    assert!(
        refused.starts_with(b"-TRYAGAIN") || refused.starts_with(b"-CLUSTERDOWN"),
        "isolated leader answered a write with {}",
        reply_text(&refused)
    );

    // The majority elects a leader and takes a new write.
    let mut on_majority = cluster.node(majority[0]).raw();
    let new_written = loop {
        if on_majority.call(&["SET", "k", "new"]) == b"+OK\r\n" {
            break isolated_at.elapsed();
        }
        assert!(
            isolated_at.elapsed() < Duration::from_secs(20),
            "the majority elected no leader"
        );
    };
    eprintln!("the majority took a write {new_written:?} after the partition");

    // The old leader must not answer with the value it last knew.
    let read = on_old.call(&["GET", "k"]);
    assert!(
        read.starts_with(b"-TRYAGAIN") || read.starts_with(b"-CLUSTERDOWN"),
        "isolated old leader answered a read with {}",
        reply_text(&read)
    );
    let info = cluster.info_raft(old_leader).unwrap();
    assert_ne!(info[0].role, "leader", "{info:?}");
    let mut on_other = cluster.node(majority[1]).raw();
    assert_eq!(on_other.call(&["GET", "k"]), b"$3\r\nnew\r\n");

    // Healed, the old leader follows and serves the new value; the write
    // it refused was never applied.
    cluster.heal();
    let leaders = cluster.wait_for_leaders(&cluster.ids(), Duration::from_secs(30));
    eprintln!("after healing, shard 0 is led by node {}", leaders[0]);
    cluster.wait_caught_up(&cluster.ids(), Duration::from_secs(30));
    for id in cluster.ids() {
        let mut conn = cluster.node(id).raw();
        assert_eq!(conn.call(&["GET", "k"]), b"$3\r\nnew\r\n", "node {id}");
        assert_eq!(
            conn.call(&["GET", "refused"]),
            b"$-1\r\n",
            "node {id} has the write the isolated leader refused"
        );
    }
}

/// Writes `total` bytes as `value_size`-byte values over `threads`
/// connections to `node`, cycling over a fixed key set.
fn write_volume(node: &Node, total: usize, value_size: usize, threads: usize) {
    let per_thread = total / value_size / threads;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let mut conn = node.client();
            std::thread::spawn(move || {
                let value = vec![b'x'; value_size];
                for i in 0..per_thread {
                    let _: () = conn.set(format!("big:{t}:{}", i % 64), &value).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn stalled_follower_costs_the_leader_bounded_memory() {
    const INFLIGHT: usize = 4;
    const SIZE_PER_MSG: usize = 64 * 1024;
    const MIB: usize = 1 << 20;
    let inflight = INFLIGHT.to_string();
    let size = SIZE_PER_MSG.to_string();
    // Small memtables and block cache, so RocksDB's own memory settles
    // during the warm-up instead of growing in steps as large as what is
    // measured.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        "[store]\nwrite_buffer_bytes = 4194304\nblock_cache_bytes = 8388608\n",
    )
    .unwrap();
    let config = config.display().to_string();
    let cluster = Cluster::start(
        3,
        1,
        &["--config", &config],
        &[
            ("ELASTICKV_RAFT_MAX_INFLIGHT_MSGS", &inflight),
            ("ELASTICKV_RAFT_MAX_SIZE_PER_MSG", &size),
        ],
    );
    // Leadership of shard 0 settles on its preferred node (node 1).
    let deadline = Instant::now() + Duration::from_secs(20);
    while cluster.leader_of(0, &cluster.ids()) != Some(1) {
        assert!(Instant::now() < deadline, "node 1 never led shard 0");
        std::thread::sleep(Duration::from_millis(100));
    }
    let leader = cluster.node(1);
    let follower = cluster.node(3);
    const VALUE: usize = 16 * 1024;
    const PHASE: usize = 64 * MIB;

    // Warm up (memtables, caches, allocator), then measure the growth a
    // phase of writes causes with every follower up.
    write_volume(leader, 2 * PHASE, VALUE, 4);
    let before_control = leader.rss_bytes();
    write_volume(leader, PHASE, VALUE, 4);
    let after_control = leader.rss_bytes();

    // The same phase with a follower stopped.
    follower.signal("STOP");
    let sampler_stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, peak, pid) = (sampler_stop.clone(), peak.clone(), leader.pid());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(rss) = std::fs::read_to_string(format!("/proc/{pid}/status"))
                    .ok()
                    .and_then(|s| {
                        s.lines()
                            .find_map(|l| l.strip_prefix("VmRSS:"))
                            .and_then(|v| {
                                v.trim().trim_end_matches("kB").trim().parse::<u64>().ok()
                            })
                    })
                {
                    peak.fetch_max(rss * 1024, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    write_volume(leader, PHASE, VALUE, 4);
    let after_stall = leader.rss_bytes();
    sampler_stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let peak = peak.load(Ordering::Relaxed).max(after_stall);
    follower.signal("CONT");

    let control_growth = after_control.saturating_sub(before_control);
    let stall_growth = peak.saturating_sub(after_control);
    // The documented bound: MaxInflightMsgs x MaxSizePerMsg per stalled
    // peer per shard, plus the transport's two in-flight batches of at
    // most 4 MiB each.
    let bound = (INFLIGHT * SIZE_PER_MSG + 8 * MIB) as u64;
    // Allocator and RocksDB noise, well under the 64 MiB written while
    // the follower was stopped (an unbounded queue would hold all of it).
    let slack = (16 * MIB) as u64;
    eprintln!(
        "leader RSS: {} MiB before, +{} KiB over {} MiB of writes with every follower up, \
         +{} KiB (peak) over {} MiB with a follower stopped; bound {} KiB + slack {} KiB",
        before_control / MIB as u64,
        control_growth / 1024,
        PHASE / MIB,
        stall_growth / 1024,
        PHASE / MIB,
        bound / 1024,
        slack / 1024
    );
    // The control itself grows by far less than it writes, or the
    // comparison below would prove nothing.
    assert!(
        control_growth <= (PHASE / 4) as u64,
        "leader memory grew by {control_growth} bytes over {PHASE} bytes of writes \
         with every follower up"
    );
    assert!(
        stall_growth <= control_growth + bound + slack,
        "leader memory grew by {stall_growth} bytes with a follower stopped \
         (control {control_growth}, bound {bound})"
    );
    // The lane towards the stopped follower did fill: messages to it were
    // dropped (and raft told) rather than queued.
    let log = leader.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("outbound raft message dropped") && l.contains(" peer=3 ")),
        "the leader never dropped a message for the stopped follower"
    );

    // Resumed, the follower catches up.
    cluster.wait_caught_up(&cluster.ids(), Duration::from_secs(60));
    let mut conn = follower.client();
    let value: Vec<u8> = conn.get("big:0:0").unwrap();
    assert_eq!(value.len(), VALUE);
}
