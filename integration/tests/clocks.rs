//! Wall clocks that disagree (libfaketime, one offset per process): keys
//! written with short TTLs through every node while leadership moves
//! between nodes whose clocks are 5 s apart. Once any read, on any node,
//! has seen a key expired, no later read anywhere sees it, and a write to
//! it starts from nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use elastickv_integration::faketime::SkewedClock;
use elastickv_integration::{Cluster, Reconnecting};
use rand::Rng;
use rand::seq::SliceRandom;

/// One read of whether a key exists, as the test process timed it.
struct Observation {
    key: String,
    started: Instant,
    ended: Instant,
    present: bool,
    node: u64,
}

const RUN: Duration = Duration::from_secs(20);

#[test]
fn expiry_is_monotonic_across_skewed_clocks() {
    let dir = tempfile::tempdir().unwrap();
    // Node 1 runs 5 s fast, node 2 5 s slow, node 3 on time.
    let offsets = [(1u64, 5_000i64), (2, -5_000), (3, 0)];
    let clocks: BTreeMap<u64, SkewedClock> = offsets
        .iter()
        .map(|&(id, ms)| {
            let file = dir.path().join(format!("clock{id}"));
            (id, SkewedClock::new(&file, ms))
        })
        .collect();
    let cluster = Cluster::start_each(3, 2, &[], &|id| clocks[&id].env());
    let ports: Vec<(u64, u16)> = cluster
        .ids()
        .iter()
        .map(|&id| (id, cluster.node(id).port))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let written: Arc<Mutex<Vec<String>>> = Arc::default();
    let observations: Arc<Mutex<Vec<Observation>>> = Arc::default();
    let revived: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut threads = Vec::new();

    // Writers: keys with TTLs of 0.3-4 s, each written once.
    for w in 0..2 {
        let (stop, written, ports) = (stop.clone(), written.clone(), ports.clone());
        threads.push(std::thread::spawn(move || {
            let mut clients: Vec<Reconnecting> =
                ports.iter().map(|&(_, p)| Reconnecting::new(p)).collect();
            let mut rng = rand::thread_rng();
            for i in 0u64.. {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let key = format!("ttl:{w}:{i}");
                let client = clients.choose_mut(&mut rng).unwrap();
                let Some(conn) = client.get() else { continue };
                let px = rng.gen_range(300..4_000u64);
                let set: redis::RedisResult<()> = redis::cmd("SET")
                    .arg(&key)
                    .arg(5)
                    .arg("PX")
                    .arg(px)
                    .query(conn);
                match set {
                    Ok(()) => written.lock().unwrap().push(key),
                    Err(e) => client.failed(&e),
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }));
    }
    // Readers: EXISTS of recent keys through random nodes.
    for _ in 0..4 {
        let (stop, written, observations, ports) = (
            stop.clone(),
            written.clone(),
            observations.clone(),
            ports.clone(),
        );
        threads.push(std::thread::spawn(move || {
            let mut clients: Vec<(u64, Reconnecting)> = ports
                .iter()
                .map(|&(id, p)| (id, Reconnecting::new(p)))
                .collect();
            let mut rng = rand::thread_rng();
            while !stop.load(Ordering::Relaxed) {
                let key = {
                    let keys = written.lock().unwrap();
                    let recent = &keys[keys.len().saturating_sub(300)..];
                    recent.choose(&mut rng).cloned()
                };
                let Some(key) = key else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let (node, client) = clients.choose_mut(&mut rng).unwrap();
                let Some(conn) = client.get() else { continue };
                let started = Instant::now();
                let exists: redis::RedisResult<i64> = redis::cmd("EXISTS").arg(&key).query(conn);
                let ended = Instant::now();
                match exists {
                    Ok(n) => observations.lock().unwrap().push(Observation {
                        key,
                        started,
                        ended,
                        present: n == 1,
                        node: *node,
                    }),
                    Err(e) => client.failed(&e),
                }
            }
        }));
    }
    // Once a read saw a key gone, a write through another node must start
    // from nothing: INCR of the key written as 5 returns 1.
    {
        let (stop, revived, ports) = (stop.clone(), revived.clone(), ports.clone());
        threads.push(std::thread::spawn(move || {
            let mut clients: Vec<Reconnecting> =
                ports.iter().map(|&(_, p)| Reconnecting::new(p)).collect();
            let mut rng = rand::thread_rng();
            for i in 0u64.. {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let key = format!("counter:{i}");
                let order: Vec<usize> = {
                    let mut o: Vec<usize> = (0..clients.len()).collect();
                    o.shuffle(&mut rng);
                    o
                };
                let (writer, reader) = (order[0], order[1]);
                let Some(conn) = clients[writer].get() else {
                    continue;
                };
                let px = rng.gen_range(200..2_000u64);
                let set: redis::RedisResult<()> = redis::cmd("SET")
                    .arg(&key)
                    .arg(5)
                    .arg("PX")
                    .arg(px)
                    .query(conn);
                if let Err(e) = set {
                    clients[writer].failed(&e);
                    continue;
                }
                // Wait until a read through another node sees it gone.
                loop {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let Some(conn) = clients[reader].get() else {
                        continue;
                    };
                    match redis::cmd("EXISTS").arg(&key).query::<i64>(conn) {
                        Ok(0) => break,
                        Ok(_) => std::thread::sleep(Duration::from_millis(20)),
                        Err(e) => clients[reader].failed(&e),
                    }
                }
                let incr_via = order[2];
                let Some(conn) = clients[incr_via].get() else {
                    continue;
                };
                match redis::cmd("INCR").arg(&key).query::<i64>(conn) {
                    Ok(1) => {}
                    Ok(n) => revived
                        .lock()
                        .unwrap()
                        .push(format!("{key}: INCR gave {n}")),
                    Err(e) => clients[incr_via].failed(&e),
                }
            }
        }));
    }

    // Leadership moves every second, so entries are stamped by leaders
    // whose clocks disagree.
    let started = Instant::now();
    let mut rng = rand::thread_rng();
    let mut transfers = 0;
    while started.elapsed() < RUN {
        std::thread::sleep(Duration::from_millis(1_000));
        let shard = rng.gen_range(0..2u32).to_string();
        let target = *cluster.ids().choose(&mut rng).unwrap();
        let (ok, _) = cluster
            .node(target)
            .ctl(&["transfer-leader", &shard, &target.to_string()]);
        transfers += usize::from(ok);
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }

    let observations = observations.lock().unwrap();
    let mut first_gone: BTreeMap<&str, Instant> = BTreeMap::new();
    for o in observations.iter().filter(|o| !o.present) {
        let at = first_gone.entry(&o.key).or_insert(o.ended);
        *at = (*at).min(o.ended);
    }
    let revivals: Vec<String> = observations
        .iter()
        .filter(|o| {
            o.present
                && first_gone
                    .get(o.key.as_str())
                    .is_some_and(|&g| o.started > g)
        })
        .map(|o| {
            format!(
                "{} seen on node {} {:?} after a read saw it gone",
                o.key,
                o.node,
                o.started - first_gone[o.key.as_str()]
            )
        })
        .collect();
    let present = observations.iter().filter(|o| o.present).count();
    let revived = revived.lock().unwrap();
    eprintln!(
        "{} reads ({present} present, {} gone) of {} keys, {transfers} leader transfers; \
         {} reads revived a key, {} writes found one alive",
        observations.len(),
        observations.len() - present,
        written.lock().unwrap().len(),
        revivals.len(),
        revived.len()
    );
    assert!(
        present > 100 && observations.len() - present > 100,
        "too few reads on either side of expiry to tell anything"
    );
    assert!(revivals.is_empty(), "{revivals:#?}");
    assert!(revived.is_empty(), "{revived:#?}");
}
