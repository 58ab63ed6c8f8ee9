//! Every acknowledged write survives kill -9.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use elastickv_integration::Node;
use redis::Commands;

#[test]
fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(&dir.path().join("data"), &["--shards", "4"]);
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let counters: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let mut conn = node.client();
            let (stop, acked, counters) = (stop.clone(), acked.clone(), counters.clone());
            std::thread::spawn(move || {
                let counter = format!("counter:{w}");
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let (key, value) = (format!("w{w}:k{i}"), format!("v{i}"));
                    let set: redis::RedisResult<()> = conn.set(&key, &value);
                    if set.is_err() {
                        break; // the node was killed
                    }
                    acked.lock().unwrap().push((key, value));
                    match conn.incr::<_, _, i64>(&counter, 1) {
                        Ok(n) => counters.lock().unwrap().push((counter.clone(), n)),
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    node.kill9();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 100,
        "too few writes to mean anything: {}",
        acked.len()
    );

    node.restart();
    let mut conn = node.client();
    let mut missing = Vec::new();
    for (key, value) in &acked {
        let got: Option<String> = conn.get(key).unwrap();
        if got.as_deref() != Some(value.as_str()) {
            missing.push((key.clone(), got));
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes lost, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
    // Each counter is its last acknowledged value, or one more if the
    // INCR in flight when the node died had reached the log.
    let mut last: std::collections::BTreeMap<String, i64> = Default::default();
    for (counter, n) in counters.lock().unwrap().iter() {
        let top = last.entry(counter.clone()).or_default();
        *top = (*top).max(*n);
    }
    for (counter, n) in &last {
        let got: i64 = conn.get(counter).unwrap();
        assert!(
            *n <= got && got <= n + 1,
            "{counter}: acknowledged {n}, found {got}"
        );
    }
    let dbsize: i64 = redis::cmd("DBSIZE").query(&mut conn).unwrap();
    assert!(dbsize as usize >= acked.len());
}

/// A clean restart keeps data, TTLs and key counts.
#[test]
fn restart_keeps_data_and_ttls() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(&dir.path().join("data"), &[]);
    let mut conn = node.client();
    for i in 0..200 {
        let _: () = conn.set(format!("key{i}"), i).unwrap();
    }
    let _: () = conn.set_ex("ttl-key", "v", 1000).unwrap();
    assert_eq!(node.terminate().code(), Some(0), "SIGTERM exits cleanly");
    node.restart();
    let mut conn = node.client();
    let value: i64 = conn.get("key150").unwrap();
    assert_eq!(value, 150);
    let ttl: i64 = conn.ttl("ttl-key").unwrap();
    assert!((990..=1000).contains(&ttl), "ttl {ttl}");
    let dbsize: i64 = redis::cmd("DBSIZE").query(&mut conn).unwrap();
    assert_eq!(dbsize, 201);
}

/// Expired keys disappear from reads at once and from the keyspace soon
/// after (active expiry through the log).
#[test]
fn expired_keys_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir.path().join("data"), &[]);
    let mut conn = node.client();
    for i in 0..300 {
        let _: () = redis::cmd("SET")
            .arg(format!("short{i}"))
            .arg("v")
            .arg("PX")
            .arg(200)
            .query(&mut conn)
            .unwrap();
    }
    let _: () = conn.set("keep", "v").unwrap();
    std::thread::sleep(Duration::from_millis(250));
    let got: Option<String> = conn.get("short7").unwrap();
    assert_eq!(got, None, "an expired key is invisible at once");
    let mut dbsize = 0;
    for _ in 0..100 {
        dbsize = redis::cmd("DBSIZE").query(&mut conn).unwrap();
        if dbsize == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(dbsize, 1, "active expiry removes expired keys");
    let info: String = redis::cmd("INFO").arg("stats").query(&mut conn).unwrap();
    assert!(info.contains("expired_keys:300"), "{info}");
}

/// Collections under kill -9: every acknowledged push, add, field and
/// scored member is there after the restart (plus at most the one in
/// flight), and each collection's recorded size matches its contents
/// (metadata and elements are written together; a sorted set's score
/// index agrees with its members).
#[test]
fn acknowledged_collection_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(&dir.path().join("data"), &["--shards", "4"]);
    let stop = Arc::new(AtomicBool::new(false));
    // Per writer: how many of its operations were acknowledged.
    let acked: Arc<Mutex<Vec<u64>>> = Arc::new(Mutex::new(vec![0; 8]));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let mut conn = node.client();
            let (stop, acked) = (stop.clone(), acked.clone());
            std::thread::spawn(move || {
                for i in 0u64.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    // Four families in turn: list, set, hash, sorted set.
                    let done: redis::RedisResult<i64> = match w % 4 {
                        0 => conn.rpush(format!("list:{w}"), i),
                        1 => conn.sadd(format!("set:{w}"), i),
                        2 => conn.hset(format!("hash:{w}"), format!("f{i}"), i),
                        _ => conn.zadd(format!("zset:{w}"), i, i),
                    };
                    if done.is_err() {
                        break; // the node was killed
                    }
                    acked.lock().unwrap()[w] = i + 1;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    node.kill9();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.iter().all(|&n| n > 20), "too few writes: {acked:?}");

    node.restart();
    let mut conn = node.client();
    for (w, &n) in acked.iter().enumerate() {
        // In order for a list; as a set of numbers for the others.
        let (found, size): (Vec<u64>, u64) = match w % 4 {
            0 => {
                let key = format!("list:{w}");
                (conn.lrange(&key, 0, -1).unwrap(), conn.llen(&key).unwrap())
            }
            1 => {
                let key = format!("set:{w}");
                let mut members: Vec<u64> = conn.smembers(&key).unwrap();
                members.sort_unstable();
                (members, conn.scard(&key).unwrap())
            }
            3 => {
                // In score order, which is the members' order here; the
                // index and the members agree on the count.
                let key = format!("zset:{w}");
                let members: Vec<u64> = conn.zrange(&key, 0, -1).unwrap();
                let by_score: u64 = conn.zcount(&key, "-inf", "+inf").unwrap();
                let size: u64 = conn.zcard(&key).unwrap();
                assert_eq!(by_score, size, "{key}");
                (members, size)
            }
            _ => {
                let key = format!("hash:{w}");
                let fields: std::collections::BTreeMap<String, u64> = conn.hgetall(&key).unwrap();
                for (field, value) in &fields {
                    assert_eq!(field, &format!("f{value}"), "{key}");
                }
                let mut values: Vec<u64> = fields.into_values().collect();
                values.sort_unstable();
                (values, conn.hlen(&key).unwrap())
            }
        };
        assert_eq!(
            found.len() as u64,
            size,
            "writer {w}: size and contents disagree"
        );
        let expected: Vec<u64> = (0..n).collect();
        let with_one_more: Vec<u64> = (0..=n).collect();
        assert!(
            found == expected || found == with_one_more,
            "writer {w}: {n} acknowledged, found {} ({:?}...)",
            found.len(),
            &found[..found.len().min(5)]
        );
    }
}
