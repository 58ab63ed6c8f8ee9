//! Blocking pops: BLPOP BRPOP BLMOVE BRPOPLPUSH BLMPOP BZPOPMIN BZPOPMAX
//! BZMPOP against redis-server 7.0 where the outcome is immediate or a
//! timeout; woken by a push through another node; served in the order
//! clients blocked; CLIENT UNBLOCK; and, while the leader of the queue's
//! shard is killed, every pushed element popped exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use elastickv_integration::diff::{pair, run_script};
use elastickv_integration::{Cluster, RawClient};

const SCRIPT: &[&str] = &[
    "BLPOP nosuch 0.01",
    "RPUSH {b}l a b c d",
    "BLPOP {b}l 0",
    "BRPOP {b}l {b}nosuch 0",
    "BLPOP {b}nosuch {b}l 1",
    "BLPOP {b}l 0",
    "EXISTS {b}l",
    "BLPOP {b}l 0.02",
    "BLPOP {b}l x",
    "BLPOP {b}l -1",
    "BLPOP {b}l 1e400",
    "BLPOP {b}l 9223372036854775807",
    "BLPOP {b}l",
    "SET {b}s v",
    "BLPOP {b}nosuch {b}s 0",
    "BRPOP {b}s 0",
    "RPUSH {b}src 1 2 3",
    "BLMOVE {b}src {b}dst LEFT RIGHT 0",
    "BLMOVE {b}src {b}dst RIGHT LEFT 0.5",
    "BLMOVE {b}src {b}dst UP LEFT 0",
    "BLMOVE {b}src {b}dst LEFT RIGHT x",
    "BLMOVE {b}empty {b}dst LEFT RIGHT 0.01",
    "BLMOVE {b}s {b}dst LEFT RIGHT 0",
    "BRPOPLPUSH {b}src {b}dst 0",
    "BRPOPLPUSH {b}src {b}dst 0.01",
    "LRANGE {b}dst 0 -1",
    "BLMPOP 0 2 {b}nosuch {b}dst LEFT COUNT 2",
    "BLMPOP 0.01 1 {b}nosuch RIGHT",
    "BLMPOP 0 0 {b}dst LEFT",
    "BLMPOP 0 1 {b}dst MIDDLE",
    "BLMPOP 0 1 {b}dst LEFT COUNT 0",
    "BLMPOP x 1 {b}dst LEFT",
    "BLMPOP 0 1 {b}dst RIGHT COUNT 5",
    "ZADD {b}z 1 a 2 b 3 c",
    "BZPOPMIN {b}z 0",
    "BZPOPMAX {b}nosuch {b}z 0",
    "BZPOPMIN {b}nosuch 0.01",
    "BZPOPMIN {b}s 0",
    "BZPOPMIN {b}z x",
    "BZMPOP 0 2 {b}nosuch {b}z MIN COUNT 3",
    "BZMPOP 0.01 1 {b}z MAX",
    "BZMPOP 0 1 {b}z SIDEWAYS",
    "MULTI",
    "BLPOP {b}nosuch 0",
    "BLMOVE {b}nosuch {b}dst LEFT LEFT 0",
    "BZPOPMIN {b}nosuch 0",
    "RPUSH {b}m x",
    "BLPOP {b}m 0",
    "EXEC",
    "CLIENT UNBLOCK 123456",
    "CLIENT UNBLOCK x",
    "CLIENT UNBLOCK 1 MAYBE",
    "COMMAND INFO blpop brpop blmove brpoplpush blmpop bzpopmin bzpopmax bzmpop",
];

#[test]
fn blocking_commands_match_redis() {
    let (_dir, node, redis) = pair("1");
    run_script(&mut redis.raw(), &mut node.raw(), SCRIPT);
}

#[test]
fn blocking_commands_match_redis_over_resp3_on_four_shards() {
    let (_dir, node, redis) = pair("4");
    let (mut r, mut e) = (redis.raw(), node.raw());
    r.call(&["HELLO", "3"]);
    e.call(&["HELLO", "3"]);
    run_script(&mut r, &mut e, SCRIPT);
    assert_eq!(
        e.call(&["BLPOP", "a", "b", "0"]),
        b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );
}

/// A fractional timeout ends the wait with a nil array, not sooner.
#[test]
fn a_timeout_ends_the_wait() {
    let (_dir, node, _redis) = pair("1");
    let mut c = node.raw();
    let began = Instant::now();
    assert_eq!(c.call(&["BLPOP", "q", "0.3"]), b"*-1\r\n");
    let waited = began.elapsed();
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert_eq!(c.call(&["PING"]), b"+PONG\r\n");
}

/// Two clients blocked on one list get its elements in the order they
/// blocked; a push to a list nobody waits on wakes nobody.
#[test]
fn blocked_clients_are_served_in_the_order_they_blocked() {
    let (_dir, node, _redis) = pair("1");
    let (mut first, mut second, mut producer) = (node.raw(), node.raw(), node.raw());
    first.send(&["BLPOP", "q", "0"]);
    std::thread::sleep(Duration::from_millis(100));
    second.send(&["BLPOP", "q", "0"]);
    std::thread::sleep(Duration::from_millis(100));
    producer.call(&["RPUSH", "other", "x"]);
    producer.call(&["RPUSH", "q", "one"]);
    assert_eq!(first.read_reply(), b"*2\r\n$1\r\nq\r\n$3\r\none\r\n");
    producer.call(&["RPUSH", "q", "two"]);
    assert_eq!(second.read_reply(), b"*2\r\n$1\r\nq\r\n$3\r\ntwo\r\n");
    assert_eq!(producer.call(&["LLEN", "q"]), b":0\r\n");
}

/// CLIENT UNBLOCK ends a blocked command as a timeout, or with an error.
#[test]
fn client_unblock_ends_a_blocked_command() {
    let (_dir, node, _redis) = pair("1");
    let (mut blocked, mut admin) = (node.raw(), node.raw());
    let id = String::from_utf8(blocked.call(&["CLIENT", "ID"])).unwrap();
    let id = id.trim_start_matches(':').trim().to_string();
    assert_eq!(admin.call(&["CLIENT", "UNBLOCK", &id]), b":0\r\n");
    blocked.send(&["BLPOP", "q", "0"]);
    std::thread::sleep(Duration::from_millis(150));
    let info = String::from_utf8(admin.call(&["INFO", "clients"])).unwrap();
    assert!(info.contains("blocked_clients:1\r\n"), "{info}");
    assert_eq!(admin.call(&["CLIENT", "UNBLOCK", &id]), b":1\r\n");
    assert_eq!(blocked.read_reply(), b"*-1\r\n");
    blocked.send(&["BZPOPMIN", "z", "0"]);
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(admin.call(&["CLIENT", "UNBLOCK", &id, "ERROR"]), b":1\r\n");
    assert_eq!(
        blocked.read_reply(),
        &b"-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n"[..]
    );
}

/// A client blocked on one node is woken by a push through another.
#[test]
fn a_push_through_another_node_wakes_a_blocked_client() {
    let cluster = Cluster::start(3, 2, &[], &[]);
    let ids = cluster.ids();
    cluster.wait_for_leaders(&ids, Duration::from_secs(30));
    let mut blocked = cluster.node(ids[0]).raw();
    blocked.send(&["BLPOP", "jobs", "0"]);
    std::thread::sleep(Duration::from_millis(300));
    let pushed = Instant::now();
    assert_eq!(
        cluster.node(ids[1]).raw().call(&["LPUSH", "jobs", "job-1"]),
        b":1\r\n"
    );
    assert_eq!(blocked.read_reply(), b"*2\r\n$4\r\njobs\r\n$5\r\njob-1\r\n");
    eprintln!("woken {:?} after the push", pushed.elapsed());
    let mut z = cluster.node(ids[2]).raw();
    z.send(&["BZPOPMAX", "scores", "0"]);
    std::thread::sleep(Duration::from_millis(300));
    cluster
        .node(ids[0])
        .raw()
        .call(&["ZADD", "scores", "5", "m"]);
    assert_eq!(
        z.read_reply(),
        b"*3\r\n$6\r\nscores\r\n$1\r\nm\r\n$1\r\n5\r\n"
    );
}

/// Consumers blocked on a queue through two nodes while a producer pushes
/// through them and the third node, the leader of the queue's shard, is
/// killed: every element pushed is popped exactly once.
#[test]
fn killing_the_leader_neither_loses_nor_duplicates_a_popped_element() {
    let mut cluster = Cluster::start(3, 1, &[], &[]);
    let ids = cluster.ids();
    cluster.wait_for_leaders(&ids, Duration::from_secs(30));
    let leader = cluster.leader_of(0, &ids).expect("a leader");
    let others: Vec<u64> = ids.iter().copied().filter(|&id| id != leader).collect();
    let total = 400u64;
    let mut consumers = Vec::new();
    for (n, &id) in others.iter().cycle().take(4).enumerate() {
        let port = cluster.node(id).port;
        consumers.push(std::thread::spawn(move || {
            let mut client = RawClient::connect(port).unwrap();
            client.set_read_timeout(Duration::from_secs(30));
            let mut got = Vec::new();
            let mut idle = 0;
            while idle < 3 {
                let reply = String::from_utf8(client.call(&["BLPOP", "queue", "1"])).unwrap();
                if reply == "*-1\r\n" {
                    idle += 1;
                    continue;
                }
                idle = 0;
                if reply.starts_with('-') {
                    // A refusal during the election: nothing was popped.
                    assert!(
                        reply.starts_with("-TRYAGAIN") || reply.starts_with("-CLUSTERDOWN"),
                        "consumer {n}: {reply}"
                    );
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                let element = reply.rsplit("\r\n").nth(1).unwrap().to_string();
                got.push(element);
            }
            got
        }));
    }
    let mut producer = RawClient::connect(cluster.node(others[0]).port).unwrap();
    for i in 0..total {
        if i == total / 3 {
            cluster.node_mut(leader).kill9();
        }
        loop {
            let reply = producer.call(&["RPUSH", "queue", &format!("e{i}")]);
            if reply.starts_with(b":") {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if i % 50 == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let mut popped = Vec::new();
    for consumer in consumers {
        popped.extend(consumer.join().unwrap());
    }
    let unique: BTreeSet<&String> = popped.iter().collect();
    assert_eq!(unique.len(), popped.len(), "an element was popped twice");
    let expected: BTreeSet<String> = (0..total).map(|i| format!("e{i}")).collect();
    let got: BTreeSet<String> = popped.iter().cloned().collect();
    let missing: Vec<&String> = expected.difference(&got).take(5).collect();
    assert!(
        missing.is_empty(),
        "never popped: {missing:?} ({} of {total})",
        got.len()
    );
}
