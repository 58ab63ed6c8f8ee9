//! MULTI/EXEC/DISCARD/WATCH against redis-server 7.0: queueing, errors
//! found while queueing (EXECABORT) and while running (in place), WATCH
//! aborting on every kind of change by another connection and not on
//! reads or no-op writes, pipelined transactions, RESP3; and on a 3-node
//! cluster, WATCH-protected increments from every node lose no update.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use elastickv_integration::diff::{pair, run_script};
use elastickv_integration::{Cluster, RawClient};

const TX_SCRIPT: &[&str] = &[
    "MULTI",
    "SET {t}k 1",
    "INCR {t}k",
    "GET {t}k",
    "PING",
    "ECHO hi",
    "SET {t}k v EX x",
    "LPUSH {t}k z",
    "HSET {t}h f v",
    "EXEC",
    "MULTI",
    "EXEC",
    "MULTI",
    "MULTI",
    "GET {t}k",
    "EXEC",
    "MULTI",
    "NOSUCHCOMMAND a",
    "GET {t}k",
    "EXEC",
    "GET {t}k",
    "MULTI",
    "GET",
    "EXEC",
    "EXEC",
    "DISCARD",
    "MULTI",
    "SET {t}k discarded",
    "DISCARD",
    "GET {t}k",
    "WATCH {t}k",
    "MULTI",
    "WATCH {t}k",
    "UNWATCH",
    "INCR {t}k",
    "EXEC",
    "WATCH {t}k {t}h",
    "GET {t}k",
    "MULTI",
    "DEL {t}h",
    "EXEC",
    "WATCH {t}nosuch",
    "MULTI",
    "SET {t}nosuch 1",
    "EXEC",
    "UNWATCH",
    "MULTI",
    "SET {t}s 1",
    "SADD {t}s a",
    "EXISTS {t}s",
    "EXEC",
    "COMMAND INFO multi exec discard watch unwatch",
];

#[test]
fn transaction_commands_match_redis() {
    let (_dir, node, redis) = pair("1");
    run_script(&mut redis.raw(), &mut node.raw(), TX_SCRIPT);
}

#[test]
fn transaction_commands_match_redis_over_resp3_on_four_shards() {
    let (_dir, node, redis) = pair("4");
    let (mut r, mut e) = (redis.raw(), node.raw());
    r.call(&["HELLO", "3"]);
    e.call(&["HELLO", "3"]);
    run_script(&mut r, &mut e, TX_SCRIPT);
    // Keys on two shards: refused while queueing, so EXEC aborts.
    assert_eq!(e.call(&["MULTI"]), b"+OK\r\n");
    assert_eq!(e.call(&["SET", "a", "1"]), b"+QUEUED\r\n");
    assert_eq!(
        e.call(&["SET", "b", "1"]),
        b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );
    assert_eq!(
        e.call(&["EXEC"]),
        &b"-EXECABORT Transaction discarded because of previous errors.\r\n"[..]
    );
    assert_eq!(
        e.call(&["WATCH", "a", "b"]),
        b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );
}

/// One connection WATCHes, another changes (or does not change) the
/// watched key, then the first runs a transaction: both servers must agree
/// on whether EXEC ran.
#[test]
fn watch_sees_what_other_connections_do_as_redis_does() {
    let (_dir, node, redis) = pair("4");
    let (mut r, mut e) = (redis.raw(), node.raw());
    let (mut r2, mut e2) = (redis.raw(), node.raw());
    // (setup, what the other connection does)
    let cases: &[(&[&str], &[&str])] = &[
        (&["SET {w}k 1"], &["SET {w}k 2"]),
        (&["SET {w}k 1"], &["SET {w}k 1"]),
        (&["SET {w}k 1"], &["GET {w}k"]),
        (&["SET {w}k 1"], &["DEL {w}k"]),
        (&["SET {w}k 1"], &["EXPIRE {w}k 100"]),
        (&["SET {w}k 1"], &["PERSIST {w}k"]),
        (&["SET {w}k 1"], &["SET {w}other 1"]),
        (&["SET {w}k 1"], &["RENAME {w}k {w}moved"]),
        (&["SET {w}k 1"], &["FLUSHALL"]),
        (&["DEL {w}k"], &["SET {w}k 1"]),
        (&["DEL {w}k"], &["DEL {w}k"]),
        (&["HSET {w}k f 1"], &["HSET {w}k f 2"]),
        (&["HSET {w}k f 1"], &["HSET {w}k g 2"]),
        (&["HSET {w}k f 1"], &["HGET {w}k f"]),
        (&["SADD {w}k a"], &["SADD {w}k a"]),
        (&["SADD {w}k a"], &["SREM {w}k b"]),
        (&["ZADD {w}k 1 a"], &["ZADD {w}k 2 a"]),
        (&["ZADD {w}k 1 a"], &["ZADD {w}k 1 a"]),
        (&["RPUSH {w}k a b"], &["LSET {w}k 0 c"]),
        (&["RPUSH {w}k a b"], &["RPUSH {w}k c"]),
        (&["SET {w}k 1"], &["SETRANGE {w}k 0 1"]),
    ];
    let both = |r: &mut RawClient, e: &mut RawClient, line: &str| {
        let args: Vec<&str> = line.split(' ').collect();
        (r.call(&args), e.call(&args))
    };
    for (setup, other) in cases {
        both(&mut r, &mut e, "FLUSHALL");
        for line in *setup {
            both(&mut r, &mut e, line);
        }
        both(&mut r, &mut e, "WATCH {w}k");
        for line in *other {
            both(&mut r2, &mut e2, line);
        }
        both(&mut r, &mut e, "MULTI");
        both(&mut r, &mut e, "SET {w}result ran");
        let (expected, got) = both(&mut r, &mut e, "EXEC");
        assert_eq!(
            String::from_utf8_lossy(&expected),
            String::from_utf8_lossy(&got),
            "after {setup:?}, another connection's {other:?}"
        );
    }
    // A watched key that expires before EXEC voids it, on both.
    both(&mut r, &mut e, "FLUSHALL");
    both(&mut r, &mut e, "SET {w}k 1 PX 150");
    both(&mut r, &mut e, "WATCH {w}k");
    std::thread::sleep(Duration::from_millis(400));
    both(&mut r, &mut e, "MULTI");
    both(&mut r, &mut e, "GET {w}k");
    let (expected, got) = both(&mut r, &mut e, "EXEC");
    assert_eq!(expected, b"*-1\r\n");
    assert_eq!(got, expected);
}

/// Transactions sent as one pipeline (redis-py's `pipeline(transaction=True)`).
#[test]
fn pipelined_transactions_match_redis() {
    let (_dir, node, redis) = pair("4");
    let (mut r, mut e) = (redis.raw(), node.raw());
    let lines = [
        "SET {p}n 5",
        "MULTI",
        "INCR {p}n",
        "INCRBY {p}n x",
        "GET {p}n",
        "EXEC",
        "GET {p}n",
        "WATCH {p}n",
        "MULTI",
        "DECR {p}n",
        "EXEC",
        "MULTI",
        "DISCARD",
        "GET {p}n",
    ];
    for line in lines {
        let args: Vec<&str> = line.split(' ').collect();
        r.send(&args);
        e.send(&args);
    }
    for line in lines {
        let (expected, got) = (r.read_reply(), e.read_reply());
        assert_eq!(
            String::from_utf8_lossy(&expected),
            String::from_utf8_lossy(&got),
            "{line}"
        );
    }
}

/// Clients on every node of a 3-node cluster increment one counter with
/// WATCH/GET/MULTI/SET/EXEC, retrying when EXEC answers nil: no increment
/// is lost and none is applied twice.
#[test]
fn watched_increments_from_every_node_lose_no_update() {
    let cluster = Cluster::start(3, 2, &[], &[]);
    let ids = cluster.ids();
    cluster.wait_for_leaders(&ids, Duration::from_secs(30));
    let per_client = 40;
    let clients_per_node = 2;
    let mut handles = Vec::new();
    for &id in &ids {
        for _ in 0..clients_per_node {
            let mut conn = cluster.node(id).client();
            handles.push(std::thread::spawn(move || {
                let mut retries = 0u64;
                for _ in 0..per_client {
                    loop {
                        let _: () = redis::cmd("WATCH").arg("counter").query(&mut conn).unwrap();
                        let current: Option<i64> =
                            redis::cmd("GET").arg("counter").query(&mut conn).unwrap();
                        let done: Option<Vec<String>> = redis::pipe()
                            .atomic()
                            .cmd("SET")
                            .arg("counter")
                            .arg(current.unwrap_or(0) + 1)
                            .query(&mut conn)
                            .unwrap();
                        if done.is_some() {
                            break;
                        }
                        retries += 1;
                    }
                }
                retries
            }));
        }
    }
    let retries: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let total = (ids.len() * clients_per_node * per_client) as i64;
    for &id in &ids {
        let value: i64 = redis::cmd("GET")
            .arg("counter")
            .query(&mut cluster.node(id).client())
            .unwrap();
        assert_eq!(value, total, "through node {id}");
    }
    eprintln!("{total} increments, {retries} EXECs answered nil and retried");
    assert!(retries > 0, "no contention: the test proves nothing");
}

/// Transactions through every node while the leader of their shard is
/// killed with SIGKILL: a reader never sees half of one (the two counters
/// a transaction increments together are always equal), and after the
/// failover both counters hold at least every acknowledged transaction.
#[test]
fn kill_9_of_the_leader_while_transactions_run_shows_no_half_transaction() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use elastickv_integration::Reconnecting;

    let mut cluster = Cluster::start(3, 2, &[], &[]);
    let ids = cluster.ids();
    cluster.wait_for_leaders(&ids, Duration::from_secs(30));
    let shard = elastickv_router::shard_for_key(b"{tx}a", 2);
    let leader = cluster.leader_of(shard, &ids).expect("a leader");
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let torn = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for &id in &ids {
        let port = cluster.node(id).port;
        let (writing, acked) = (stop.clone(), acked.clone());
        threads.push(std::thread::spawn(move || {
            let mut conn = Reconnecting::new(port);
            while !writing.load(Ordering::Relaxed) {
                let Some(c) = conn.get() else { continue };
                let done: redis::RedisResult<(i64, i64)> = redis::pipe()
                    .atomic()
                    .cmd("INCR")
                    .arg("{tx}a")
                    .cmd("INCR")
                    .arg("{tx}b")
                    .query(c);
                match done {
                    Ok(_) => {
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => conn.failed(&e),
                }
            }
        }));
        let (reading, torn) = (stop.clone(), torn.clone());
        threads.push(std::thread::spawn(move || {
            let mut conn = Reconnecting::new(port);
            while !reading.load(Ordering::Relaxed) {
                let Some(c) = conn.get() else { continue };
                let read: redis::RedisResult<(Option<i64>, Option<i64>)> =
                    redis::cmd("MGET").arg("{tx}a").arg("{tx}b").query(c);
                match read {
                    Ok((a, b)) if a != b => {
                        torn.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(e) => conn.failed(&e),
                }
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(1500));
    cluster.node_mut(leader).kill9();
    let acked_at_kill = acked.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(4000));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let acked = acked.load(Ordering::Relaxed);
    assert!(
        acked > acked_at_kill + 10,
        "transactions did not resume after the kill: {acked_at_kill} then {acked}"
    );
    assert_eq!(
        torn.load(Ordering::Relaxed),
        0,
        "a reader saw half a transaction"
    );
    cluster.node_mut(leader).restart();
    cluster.wait_caught_up(&ids, Duration::from_secs(60));
    for &id in &ids {
        let (a, b): (i64, i64) = redis::cmd("MGET")
            .arg("{tx}a")
            .arg("{tx}b")
            .query(&mut cluster.node(id).client())
            .unwrap();
        assert_eq!(a, b, "half a transaction on node {id}");
        assert!(a as u64 >= acked, "node {id}: {a} < {acked} acknowledged");
    }
    eprintln!(
        "{acked} transactions acknowledged ({acked_at_kill} before the kill of node {leader})"
    );
}
