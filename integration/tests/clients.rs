//! Real client software works unchanged: redis-cli, redis-benchmark, the
//! Rust `redis` crate and redis-py.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use elastickv_integration::Node;
use redis::Commands;

fn node() -> (tempfile::TempDir, Node) {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir.path().join("data"), &[]);
    (dir, node)
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli is not installed (scripts/test installs it)");
    assert!(out.status.success(), "redis-cli {args:?} failed");
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

#[test]
fn redis_cli_works() {
    let (_dir, node) = node();
    assert_eq!(redis_cli(node.port, &["PING"]), "PONG");
    assert_eq!(redis_cli(node.port, &["SET", "greeting", "hi"]), "OK");
    assert_eq!(redis_cli(node.port, &["GET", "greeting"]), "hi");
    assert_eq!(redis_cli(node.port, &["INCRBY", "n", "5"]), "5");
    assert_eq!(redis_cli(node.port, &["DBSIZE"]), "2");
    let info = redis_cli(node.port, &["INFO", "raft"]);
    assert!(info.contains("shard0:role=leader,leader=1,term="), "{info}");
    assert!(info.contains("shards:4"), "{info}");
    // RESP3 through redis-cli's -3 switch.
    assert_eq!(
        redis_cli(node.port, &["--no-raw", "-3", "GET", "nosuch"]),
        "(nil)"
    );
    // redis-cli reads commands from stdin too.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf 'SET a 1\\nGET a\\n' | redis-cli -p {}",
            node.port
        ))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "OK\n1\n");
}

#[test]
fn redis_benchmark_works() {
    let (_dir, node) = node();
    let out = Command::new("redis-benchmark")
        .args(["-p", &node.port.to_string()])
        .args([
            "-n",
            "2000",
            "-c",
            "10",
            "-P",
            "4",
            "-t",
            "set,get,incr,ping",
            "-q",
        ])
        .output()
        .expect("redis-benchmark is not installed (scripts/test installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for test in ["SET", "GET", "INCR", "PING_MBULK"] {
        let line = text
            .lines()
            .find(|l| l.contains(&format!("{test}: ")))
            .unwrap_or_else(|| panic!("no {test} result in:\n{text}"));
        assert!(line.contains("requests per second"), "{line}");
    }
    let mut conn = node.client();
    let counter: i64 = conn.get("counter:__rand_int__").unwrap();
    assert_eq!(counter, 2000, "every INCR was applied once");
}

#[test]
fn redis_crate_works() {
    let (_dir, node) = node();
    let mut conn = node.client();
    let _: () = conn.set("a", "1").unwrap();
    let _: () = conn.set_ex("b", "2", 60).unwrap();
    let values: Vec<Option<String>> = conn.mget(&["a", "b", "c"]).unwrap();
    assert_eq!(values, vec![Some("1".into()), Some("2".into()), None]);
    let n: i64 = conn.incr("a", 41).unwrap();
    assert_eq!(n, 42);
    let deleted: i64 = conn.del(&["a", "b", "c"]).unwrap();
    assert_eq!(deleted, 2);
    let mut keys: Vec<String> = Vec::new();
    for i in 0..50 {
        let _: () = conn.set(format!("scan:{i}"), i).unwrap();
    }
    let iter: redis::Iter<String> = conn.scan_match("scan:*").unwrap();
    keys.extend(iter);
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 50);
}

#[test]
fn redis_py_works() {
    let (_dir, node) = node();
    let script = format!(
        r#"
import redis
r = redis.Redis(port={port}, decode_responses=True)
assert r.ping()
r.set("k", "v", ex=100)
assert r.get("k") == "v"
assert 90 < r.ttl("k") <= 100
assert r.incrbyfloat("f", 0.1) == 0.1
p = r.pipeline(transaction=False)
for i in range(100):
    p.set(f"p{{i}}", i)
    p.get(f"p{{i}}")
out = p.execute()
assert out[1::2] == [str(i) for i in range(100)], out
r3 = redis.Redis(port={port}, protocol=3, decode_responses=True)
assert r3.get("k") == "v"
assert r3.get("missing") is None
# A transaction, and optimistic locking with WATCH (redis-py retries on
# WatchError inside transaction()).
t = r.pipeline(transaction=True)
t.set("{{tx}}a", 1).incr("{{tx}}a").get("{{tx}}a")
assert t.execute() == [True, 2, "2"]
def bump(pipe):
    current = int(pipe.get("{{tx}}a"))
    pipe.multi()
    pipe.set("{{tx}}a", current + 10)
r.transaction(bump, "{{tx}}a")
assert r.get("{{tx}}a") == "12"
w = r.pipeline()
w.watch("{{tx}}a")
r.set("{{tx}}a", 0)
w.multi()
w.incr("{{tx}}a")
try:
    w.execute()
    raise AssertionError("EXEC ran although the watched key changed")
except redis.WatchError:
    pass
# Pub/sub: a subscriber's messages, and a blocking pop woken by a push.
p = r.pubsub()
p.subscribe("{{ps}}news")
assert p.get_message(timeout=5)["type"] == "subscribe"
assert r.publish("{{ps}}news", "hello") == 1
m = p.get_message(timeout=5)
assert m["type"] == "message" and m["data"] == "hello", m
p.psubscribe("{{ps}}n*")
assert p.get_message(timeout=5)["type"] == "psubscribe"
r.publish("{{ps}}news", "again")
kinds = sorted(p.get_message(timeout=5)["type"] for _ in range(2))
assert kinds == ["message", "pmessage"], kinds
p.close()
r.rpush("{{q}}jobs", "j1")
assert tuple(r.blpop(["{{q}}jobs"], timeout=1)) == ("{{q}}jobs", "j1")
assert r.blpop(["{{q}}jobs"], timeout=0.1) is None
print("ok")
"#,
        port = node.port
    );
    let out = elastickv_integration::run_python(&script);
    assert!(
        out.status.success(),
        "redis-py failed (scripts/test installs it):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}

/// redis-py and the `redis` crate against a 3-node cluster, through a node
/// that follows the shard of the keys they use: a transaction pipeline, a
/// `Lock` (SET NX PX, then Lua to extend and release), a registered script
/// (EVALSHA, falling back to EVAL on NOSCRIPT), pub/sub, and a blocking
/// pop.
#[test]
fn clients_work_through_a_follower_of_a_cluster() {
    use std::time::Duration;

    let cluster = elastickv_integration::Cluster::start(3, 2, &[], &[]);
    let ids = cluster.ids();
    cluster.wait_for_leaders(&ids, Duration::from_secs(30));
    let shard = elastickv_router::shard_for_key(b"{t}", 2);
    let leader = cluster.leader_of(shard, &ids).expect("a leader");
    let follower = *ids.iter().find(|&&id| id != leader).unwrap();
    let port = cluster.node(follower).port;

    let script = format!(
        r#"
import threading, time
import redis
r = redis.Redis(port={port}, decode_responses=True)
t = r.pipeline(transaction=True)
t.set("{{t}}a", 1).incr("{{t}}a").get("{{t}}a")
assert t.execute() == [True, 2, "2"]
lock = r.lock("{{t}}lock", timeout=5, blocking_timeout=3)
assert lock.acquire()
assert lock.locked() and lock.owned()
other = r.lock("{{t}}lock", timeout=5, blocking_timeout=0.2)
assert not other.acquire(), "a held lock was acquired twice"
assert lock.extend(10)
assert 10000 < r.pttl("{{t}}lock") <= 15000
lock.release()
assert not lock.locked()
try:
    lock.release()
    raise AssertionError("released a lock it no longer held")
except redis.exceptions.LockError:
    pass
# Locks taken in turns by threads: the counter they guard loses nothing.
def worker():
    for _ in range(10):
        with r.lock("{{t}}guard", timeout=5, blocking_timeout=30, sleep=0.01):
            n = int(r.get("{{t}}guarded") or 0)
            r.set("{{t}}guarded", n + 1)
threads = [threading.Thread(target=worker) for _ in range(4)]
for th in threads: th.start()
for th in threads: th.join()
assert r.get("{{t}}guarded") == "40", r.get("{{t}}guarded")
add = r.register_script("return redis.call('incrby', KEYS[1], ARGV[1])")
r.script_flush()
assert add(keys=["{{t}}n"], args=[5]) == 5
assert add(keys=["{{t}}n"], args=[5]) == 10
p = r.pubsub()
p.subscribe("{{t}}news")
assert p.get_message(timeout=5)["type"] == "subscribe"
r.publish("{{t}}news", "hello")
m = p.get_message(timeout=5)
assert m["type"] == "message" and m["data"] == "hello", m
p.close()
def push_later():
    time.sleep(0.3)
    redis.Redis(port={port}).rpush("{{t}}jobs", "j1")
threading.Thread(target=push_later).start()
assert tuple(r.blpop(["{{t}}jobs"], timeout=10)) == ("{{t}}jobs", "j1")
print("ok")
"#
    );
    let out = elastickv_integration::run_python(&script);
    assert!(
        out.status.success(),
        "redis-py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");

    // The `redis` crate's equivalents.
    let mut conn = cluster.node(follower).client();
    let (a, b): (i64, i64) = redis::pipe()
        .atomic()
        .incr("{t}x", 1)
        .incr("{t}x", 2)
        .query(&mut conn)
        .unwrap();
    assert_eq!((a, b), (1, 3));
    let script = redis::Script::new("return redis.call('incrby', KEYS[1], ARGV[1])");
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut conn).unwrap();
    let n: i64 = script.key("{t}y").arg(7).invoke(&mut conn).unwrap();
    assert_eq!(n, 7);
    let n: i64 = script.key("{t}y").arg(7).invoke(&mut conn).unwrap();
    assert_eq!(n, 14);
    let mut sub = cluster.node(follower).client();
    let mut pubsub = sub.as_pubsub();
    pubsub.subscribe("{t}chan").unwrap();
    let _: i64 = conn.publish("{t}chan", "hi").unwrap();
    let message = pubsub.get_message().unwrap();
    assert_eq!(message.get_payload::<String>().unwrap(), "hi");
    let _: () = conn.rpush("{t}q", "item").unwrap();
    let popped: (String, String) = conn.blpop("{t}q", 5.0).unwrap();
    assert_eq!(popped, ("{t}q".to_string(), "item".to_string()));
}
