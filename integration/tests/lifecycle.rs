//! The raft log's lifecycle on real processes: compaction keeps it bounded,
//! a node that was away past the retained log catches up through a
//! snapshot, a crash in the middle of receiving or installing one leaves a
//! node that restarts with every key, and replicas end with identical data
//! however collections came and went.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use elastickv_integration::{Cluster, Node};
use elastickv_store::{Store, StoreOptions};
use redis::Commands;

const SMALL_LOG: [(&str, &str); 2] = [
    ("ELASTICKV_RAFT_SNAPSHOT_COUNT", "100"),
    ("ELASTICKV_RAFT_LOG_RETAIN_ENTRIES", "20"),
];

/// Writes `key:{i}` = `value_of(i)` for `i` in `range`, pipelined.
fn write_keys(node: &Node, prefix: &str, range: std::ops::Range<u64>, value_size: usize) {
    let mut conn = node.client();
    let ids: Vec<u64> = range.collect();
    for chunk in ids.chunks(500) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.cmd("SET")
                .arg(format!("{prefix}:{i}"))
                .arg(value_of(*i, value_size))
                .ignore();
        }
        let _: () = pipe.query(&mut conn).unwrap();
    }
}

fn value_of(i: u64, size: usize) -> String {
    let mut value = format!("v{i}-");
    while value.len() < size {
        value.push('x');
    }
    value
}

/// Every key of `range` reads back with its value through `node`.
fn assert_keys(node: &Node, prefix: &str, range: std::ops::Range<u64>, value_size: usize) {
    let mut conn = node.client();
    let ids: Vec<u64> = range.collect();
    for chunk in ids.chunks(500) {
        let keys: Vec<String> = chunk.iter().map(|i| format!("{prefix}:{i}")).collect();
        let values: Vec<Option<String>> = conn.mget(&keys).unwrap();
        for (i, value) in chunk.iter().zip(values) {
            assert_eq!(
                value.as_deref(),
                Some(value_of(*i, value_size).as_str()),
                "{prefix}:{i} on port {}",
                node.port
            );
        }
    }
}

#[test]
fn the_log_stays_bounded_under_sustained_writes() {
    let cluster = Cluster::start(3, 2, &[], &SMALL_LOG);
    write_keys(cluster.node(1), "k", 0..4000, 16);
    cluster.wait_caught_up(&cluster.ids(), Duration::from_secs(30));
    // At most retain + snapshot_count entries behind the applied index,
    // whatever was written. A leader keeps what a follower that was behind
    // still needed at its last compaction; it compacts again with the next
    // heartbeat round after hearing the follower caught up, so the bound is
    // checked once that round had time to happen.
    let settled = Instant::now();
    for id in cluster.ids() {
        loop {
            let shards = cluster.info_raft(id).unwrap();
            let over = shards.iter().find(|shard| {
                shard.applied <= 1000 || shard.last_index + 1 - shard.first_index > 120
            });
            match over {
                None => break,
                Some(shard) if settled.elapsed() > Duration::from_secs(5) => panic!(
                    "node {id} keeps {} entries: {shard:?}",
                    shard.last_index + 1 - shard.first_index
                ),
                Some(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

#[test]
fn a_node_away_past_the_retained_log_catches_up_through_a_snapshot() {
    let mut cluster = Cluster::start(3, 2, &[], &SMALL_LOG);
    write_keys(cluster.node(1), "before", 0..200, 100);
    cluster.node_mut(3).kill9();
    write_keys(cluster.node(1), "during", 0..3000, 100);
    // Collections travel in the snapshot too: a hash written while node 3
    // was away, one deleted and one overwritten by a string.
    let mut conn = cluster.node(1).client();
    for i in 0..50 {
        let _: () = redis::cmd("HSET")
            .arg(format!("hash:{}", i % 5))
            .arg(format!("f{i}"))
            .arg(i)
            .query(&mut conn)
            .unwrap();
    }
    // And a sorted set, whose score index must arrive with its members.
    for i in 0..40 {
        let _: () = redis::cmd("ZADD")
            .arg("zset")
            .arg(40 - i)
            .arg(format!("m{i}"))
            .query(&mut conn)
            .unwrap();
    }
    let _: () = redis::cmd("DEL").arg("hash:3").query(&mut conn).unwrap();
    let _: () = redis::cmd("SET")
        .arg("hash:4")
        .arg("s")
        .query(&mut conn)
        .unwrap();
    // The leaders compact far past what node 3 has. Not at once: a leader
    // keeps the entries of a follower it heard from within an election
    // timeout (it may be catching up), and the writes can finish sooner.
    let first_index = || {
        [1, 2]
            .iter()
            .filter_map(|&id| cluster.info_raft(id))
            .flat_map(|info| info.into_iter().map(|s| s.first_index))
            .min()
            .unwrap()
    };
    let waited = Instant::now();
    while first_index() <= 1000 && waited.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let first = first_index();
    assert!(first > 1000, "log not compacted: first index {first}");

    let restarted = Instant::now();
    cluster.node_mut(3).restart();
    cluster.wait_caught_up(&cluster.ids(), Duration::from_secs(60));
    eprintln!(
        "node 3 caught up {:?} after restarting",
        restarted.elapsed()
    );
    assert!(
        cluster.node(3).log_text().contains("installed snapshot"),
        "node 3 caught up without a snapshot"
    );
    assert_keys(cluster.node(3), "before", 0..200, 100);
    assert_keys(cluster.node(3), "during", 0..3000, 100);
    let size: i64 = redis::cmd("DBSIZE")
        .query(&mut cluster.node(3).client())
        .unwrap();
    assert_eq!(size, 3205);
    let mut caught_up = cluster.node(3).client();
    for h in 0..3 {
        let fields: std::collections::BTreeMap<String, i64> = redis::cmd("HGETALL")
            .arg(format!("hash:{h}"))
            .query(&mut caught_up)
            .unwrap();
        let expected: std::collections::BTreeMap<String, i64> = (0..50)
            .filter(|i| i % 5 == h)
            .map(|i| (format!("f{i}"), i))
            .collect();
        assert_eq!(fields, expected, "hash:{h} on node 3");
    }
    let ranked: Vec<String> = redis::cmd("ZRANGE")
        .arg("zset")
        .arg(0)
        .arg(2)
        .query(&mut caught_up)
        .unwrap();
    assert_eq!(ranked, ["m39", "m38", "m37"]);
    let rank: i64 = redis::cmd("ZRANK")
        .arg("zset")
        .arg("m0")
        .query(&mut caught_up)
        .unwrap();
    assert_eq!(rank, 39);
    let gone: i64 = redis::cmd("EXISTS")
        .arg("hash:3")
        .query(&mut caught_up)
        .unwrap();
    assert_eq!(gone, 0);
    let kind: String = redis::cmd("TYPE")
        .arg("hash:4")
        .query(&mut caught_up)
        .unwrap();
    assert_eq!(kind, "string");
    // And it keeps following: new writes reach it.
    write_keys(cluster.node(2), "after", 0..100, 10);
    cluster.wait_caught_up(&cluster.ids(), Duration::from_secs(30));
    assert_keys(cluster.node(3), "after", 0..100, 10);
}

/// Collections of every type created, grown past the point where dropping
/// them takes a range deletion, deleted, overwritten, expired, renamed and
/// trimmed through two nodes, while the third is away and then catches up
/// through a snapshot: afterwards every replica's data (metadata, expiry
/// index and sub-keys as reads see them) has the same digest, so reclaiming
/// dead versions left nothing behind anywhere.
#[test]
fn replicas_hold_identical_data_after_collections_come_and_go() {
    let mut cluster = Cluster::start(3, 2, &[], &SMALL_LOG);
    let churn = |node: &Node, round: u64| {
        let mut conn = node.client();
        for i in 0..12u64 {
            let k = |kind: &str| format!("{{c{i}}}{kind}:{round}");
            let mut pipe = redis::pipe();
            for m in 0..(20 + 15 * i) {
                pipe.cmd("HSET")
                    .arg(k("h"))
                    .arg(format!("f{m}"))
                    .arg(m)
                    .ignore();
                pipe.cmd("RPUSH").arg(k("l")).arg(m).ignore();
                pipe.cmd("SADD").arg(k("s")).arg(m).ignore();
                pipe.cmd("ZADD").arg(k("z")).arg(m % 7).arg(m).ignore();
            }
            match i % 6 {
                0 => {
                    pipe.cmd("DEL").arg(k("h")).arg(k("l")).ignore();
                }
                1 => {
                    pipe.cmd("SET").arg(k("s")).arg("overwritten").ignore();
                }
                2 => {
                    pipe.cmd("PEXPIRE").arg(k("z")).arg(50).ignore();
                }
                3 => {
                    pipe.cmd("RENAME").arg(k("h")).arg(k("renamed")).ignore();
                    pipe.cmd("ZUNIONSTORE")
                        .arg(k("u"))
                        .arg(2)
                        .arg(k("z"))
                        .arg(k("s"))
                        .ignore();
                }
                4 => {
                    pipe.cmd("LTRIM").arg(k("l")).arg(5).arg(-5).ignore();
                    pipe.cmd("ZREMRANGEBYRANK")
                        .arg(k("z"))
                        .arg(3)
                        .arg(-3)
                        .ignore();
                    pipe.cmd("SPOP").arg(k("s")).arg(10).ignore();
                }
                _ => {
                    pipe.cmd("UNLINK").arg(k("z")).arg(k("s")).ignore();
                }
            }
            let _: () = pipe.query(&mut conn).unwrap();
        }
    };
    churn(cluster.node(1), 0);
    cluster.node_mut(3).kill9();
    churn(cluster.node(2), 1);
    churn(cluster.node(1), 2);
    cluster.node_mut(3).restart();
    churn(cluster.node(2), 3);
    cluster.wait_caught_up(&cluster.ids(), Duration::from_secs(60));
    assert!(
        cluster.node(3).log_text().contains("installed snapshot"),
        "node 3 caught up without a snapshot"
    );
    // Expired sorted sets are removed by the leaders' active expiry.
    std::thread::sleep(Duration::from_millis(1500));
    cluster.wait_caught_up(&cluster.ids(), Duration::from_secs(60));
    let mut digests = Vec::new();
    for id in cluster.ids() {
        let node = cluster.node_mut(id);
        assert!(node.terminate().success(), "node {id} did not stop cleanly");
        let store = Store::open(&node.data_dir.join("rocksdb"), &StoreOptions::default()).unwrap();
        digests.push((id, store.data_digest().unwrap()));
    }
    eprintln!("data digests: {digests:x?}");
    assert!(
        digests.iter().all(|(_, d)| *d == digests[0].1),
        "replicas differ: {digests:x?}"
    );
}

/// Node 3 is killed while a snapshot is being staged, and again while one
/// is being installed (fail points slow both down so the kill lands where
/// intended, and the test checks it did); each time it restarts with every
/// key.
#[test]
fn kill_9_while_receiving_or_installing_a_snapshot_loses_nothing() {
    // Node 3 stages each 1 MiB chunk slowly, and installs each batch
    // slowly; the others run at full speed.
    let slow = |id: u64| {
        let mut envs: Vec<(String, String)> = SMALL_LOG
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if id == 3 {
            envs.push((
                "FAILPOINTS".into(),
                "snapshot-stage-chunk=sleep(40);snapshot-install-batch=sleep(150)".into(),
            ));
        }
        envs
    };
    let mut cluster = Cluster::start_each(3, 1, &[], &slow);
    cluster.node_mut(3).kill9();
    // About 24 MiB, so the transfer and install take a moment.
    write_keys(cluster.node(1), "big", 0..6000, 4096);
    let snapshots = cluster.node(3).data_dir.join("snapshots");

    // 1. Killed while the snapshot is being received and staged.
    cluster.node_mut(3).restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    let staging = |dir: &std::path::Path| {
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .any(|e| e.path().extension().is_some_and(|x| x == "tmp"))
            })
            .unwrap_or(false)
    };
    while !staging(&snapshots) {
        assert!(Instant::now() < deadline, "no snapshot transfer started");
        std::thread::sleep(Duration::from_millis(2));
    }
    cluster.node_mut(3).kill9();
    let log = cluster.node(3).log_text();
    assert!(
        !log.contains("installing snapshot"),
        "the kill was meant to land before the install began"
    );

    // 2. Killed while the snapshot is being installed.
    cluster.node_mut(3).restart();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cluster.node(3).log_text().contains("installing snapshot") {
        assert!(Instant::now() < deadline, "no snapshot install started");
        std::thread::sleep(Duration::from_millis(2));
    }
    cluster.node_mut(3).kill9();
    assert!(
        !cluster.node(3).log_text().contains("installed snapshot"),
        "the kill was meant to land before the install finished"
    );

    // Restarted, it finishes the interrupted install and has every key.
    cluster.node_mut(3).restart();
    assert!(
        cluster
            .node(3)
            .log_text()
            .contains("finishing a snapshot install interrupted by a crash"),
        "the restart did not find the install it was killed in"
    );
    cluster.wait_caught_up(&cluster.ids(), Duration::from_secs(60));
    assert_keys(cluster.node(3), "big", 0..6000, 4096);
}

#[test]
fn sigterm_hands_leadership_over_and_a_restart_replays_nothing() {
    let mut cluster = Cluster::start(3, 4, &[], &[]);
    // Shard s settles on node ids[s mod 3]: node 1 leads shards 0 and 3.
    let deadline = Instant::now() + Duration::from_secs(20);
    while cluster.wait_for_leaders(&cluster.ids(), Duration::from_secs(10)) != [1, 2, 3, 1] {
        assert!(Instant::now() < deadline, "leaders never settled");
        std::thread::sleep(Duration::from_millis(100));
    }
    write_keys(cluster.node(1), "k", 0..500, 32);

    // Writes through node 2 keep going while node 1 leaves.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let mut conn = cluster.node(2).client();
        std::thread::spawn(move || {
            let (mut ok, mut failed) = (0u64, Vec::new());
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match conn.set::<_, _, ()>(format!("during:{i}"), i) {
                    Ok(()) => ok += 1,
                    Err(e) => failed.push(e.to_string()),
                }
                i += 1;
            }
            (ok, failed)
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let terms_before: Vec<u64> = cluster
        .info_raft(1)
        .unwrap()
        .iter()
        .map(|s| s.term)
        .collect();
    let logged_before: Vec<usize> = [2, 3]
        .iter()
        .map(|&id| cluster.node(id).log_text().len())
        .collect();
    let signalled = Instant::now();
    let status = cluster.node_mut(1).terminate();
    let took = signalled.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = writer.join().unwrap();
    eprintln!("node 1 exited {status} after {took:?}; {ok} writes through node 2 meanwhile");
    assert!(status.success(), "SIGTERM exit status {status}");
    let log = cluster.node(1).log_text();
    assert!(
        log.contains("handing leadership over before shutting down"),
        "node 1 did not hand its shards over"
    );
    // Leadership moved by transfer, not by an election after a timeout:
    // the writes through node 2 never failed.
    assert!(
        failed.is_empty(),
        "writes failed during the handover: {failed:?}"
    );
    let leaders = cluster.wait_for_leaders(&[2, 3], Duration::from_secs(5));
    assert!(leaders.iter().all(|&l| l == 2 || l == 3), "{leaders:?}");
    // A transfer, not an election: the new leaders went straight to
    // candidate (a transfer skips pre-vote; an election after a timeout
    // starts with it), one term up.
    let terms_after: Vec<u64> = cluster
        .info_raft(2)
        .unwrap()
        .iter()
        .map(|s| s.term)
        .collect();
    for shard in [0usize, 3] {
        assert_eq!(
            terms_after[shard],
            terms_before[shard] + 1,
            "shard {shard}: one term up, one campaign"
        );
        for (&id, &from) in [2u64, 3].iter().zip(&logged_before) {
            let log = cluster.node(id).log_text();
            let since = log.get(from..).unwrap_or_default();
            assert!(
                !since.lines().any(|l| l.contains("raft role changed")
                    && l.contains(&format!("shard_id={shard} "))
                    && l.contains("role=PreCandidate")),
                "node {id} held a pre-vote election for shard {shard}: not a transfer"
            );
        }
    }

    cluster.node_mut(1).restart();
    let log = cluster.node(1).log_text();
    let opened: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("shard replica opened"))
        .collect();
    // Twice per shard: the first start and the restart.
    assert_eq!(opened.len(), 8, "{opened:#?}");
    for line in opened {
        assert!(line.contains("replay=0"), "replayed entries: {line}");
    }
    cluster.wait_caught_up(&cluster.ids(), Duration::from_secs(30));
    assert_keys(cluster.node(1), "k", 0..500, 32);
}
