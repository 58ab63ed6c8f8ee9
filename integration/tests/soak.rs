//! A long randomized fault soak (ignored by default; `scripts/soak`):
//! writers on every node while nodes are killed and restarted, cut off and
//! healed, or stopped and resumed, with logs small enough that snapshots
//! happen. Afterwards every acknowledged write must be on every node, and
//! every counter at least its highest acknowledged value.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use elastickv_integration::{Cluster, Reconnecting};
use rand::Rng;
use redis::Commands;

#[derive(Default)]
struct Acked {
    sets: Vec<(String, String)>,
    /// Highest value INCR returned, per counter.
    counters: BTreeMap<String, i64>,
}

#[test]
#[ignore = "long; run with scripts/soak"]
fn random_faults_lose_no_acknowledged_write() {
    let seconds: u64 = std::env::var("ELASTICKV_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let mut cluster = Cluster::start(
        3,
        4,
        &[],
        &[
            ("ELASTICKV_RAFT_SNAPSHOT_COUNT", "200"),
            ("ELASTICKV_RAFT_LOG_RETAIN_ENTRIES", "50"),
        ],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Acked::default()));
    let ports: Vec<u16> = cluster
        .ids()
        .iter()
        .map(|&id| cluster.node(id).port)
        .collect();
    let writers: Vec<_> = (0..6)
        .map(|w| {
            let (stop, acked) = (stop.clone(), acked.clone());
            let mut client = Reconnecting::new(ports[w % ports.len()]);
            std::thread::spawn(move || {
                let counter = format!("counter:{w}");
                for i in 0u64.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Some(c) = client.get() else { continue };
                    let (key, value) = (format!("w{w}:k{i}"), format!("v{i}"));
                    let outcome = c.set::<_, _, ()>(&key, &value).and_then(|()| {
                        acked.lock().unwrap().sets.push((key, value));
                        c.incr::<_, _, i64>(&counter, 1)
                    });
                    match outcome {
                        Ok(n) => {
                            let mut a = acked.lock().unwrap();
                            let top = a.counters.entry(counter.clone()).or_insert(0);
                            *top = (*top).max(n);
                        }
                        Err(e) => client.failed(&e),
                    }
                }
            })
        })
        .collect();

    let mut rng = rand::thread_rng();
    let started = Instant::now();
    let mut faults = BTreeMap::<&str, u32>::new();
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_millis(rng.gen_range(500..2500)));
        let victim = rng.gen_range(1..=3u64);
        match rng.gen_range(0..3) {
            0 => {
                *faults.entry("kill -9 + restart").or_default() += 1;
                cluster.node_mut(victim).kill9();
                std::thread::sleep(Duration::from_millis(rng.gen_range(100..3000)));
                cluster.node_mut(victim).restart();
            }
            1 => {
                *faults.entry("partition + heal").or_default() += 1;
                cluster.isolate(victim);
                std::thread::sleep(Duration::from_millis(rng.gen_range(500..4000)));
                cluster.heal();
            }
            _ => {
                *faults.entry("SIGSTOP + SIGCONT").or_default() += 1;
                cluster.node(victim).signal("STOP");
                std::thread::sleep(Duration::from_millis(rng.gen_range(500..4000)));
                cluster.node(victim).signal("CONT");
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    cluster.heal();
    cluster.wait_for_leaders(&cluster.ids(), Duration::from_secs(60));
    cluster.wait_caught_up(&cluster.ids(), Duration::from_secs(60));

    let acked = acked.lock().unwrap();
    eprintln!(
        "{} s of faults {faults:?}: {} SETs and {} counters acknowledged",
        seconds,
        acked.sets.len(),
        acked.counters.len()
    );
    assert!(
        acked.sets.len() > 100,
        "too few writes: {}",
        acked.sets.len()
    );
    for id in cluster.ids() {
        let mut conn = cluster.node(id).client();
        for chunk in acked.sets.chunks(500) {
            let keys: Vec<&str> = chunk.iter().map(|(k, _)| k.as_str()).collect();
            let values: Vec<Option<String>> = conn.mget(&keys).unwrap();
            for ((key, value), got) in chunk.iter().zip(values) {
                assert_eq!(got.as_deref(), Some(value.as_str()), "{key} on node {id}");
            }
        }
        for (counter, top) in &acked.counters {
            let value: i64 = conn.get(counter).unwrap();
            assert!(
                value >= *top,
                "{counter} on node {id}: {value} < acked {top}"
            );
        }
    }
}
