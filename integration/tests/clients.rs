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
    let python = std::env::var("ELASTICKV_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "redis-py failed (scripts/test installs it):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}
