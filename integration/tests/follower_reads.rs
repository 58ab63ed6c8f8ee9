//! A measurement, not a check (ignored; run by hand): how long reads
//! through followers stall when their shard's leader dies.
//!
//! ```sh
//! cargo test -p elastickv-integration --test follower_reads -- --ignored --nocapture
//! ```
//!
//! Followers forward each read's ReadIndex to the leader. When the leader
//! dies, reads wait for a new one (an election timeout, 1-2 s); then a read
//! asked of the new leader before it committed an entry of its term is
//! dropped by raft-rs without an answer. Followers ask again when they see
//! that commit; before they did, such a read waited for the read timeout
//! (2 s). This prints, per round, the election time and the longest read
//! among those started after the new leader was elected.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use elastickv_integration::{Cluster, Reconnecting};
use redis::Commands;

#[test]
#[ignore = "a measurement; run by hand"]
fn follower_read_stall_after_the_leader_dies() {
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let mut worst = Vec::new();
    for round in 0..rounds {
        let mut cluster = Cluster::start(3, 1, &[], &[]);
        let _: () = cluster.node(1).client().set("k", "v").unwrap();
        // Leadership settles on its preferred node (node 1) first, so the
        // node killed is the leader.
        let deadline = Instant::now() + Duration::from_secs(20);
        while cluster.wait_for_leaders(&cluster.ids(), Duration::from_secs(10)) != [1] {
            assert!(Instant::now() < deadline, "leadership never settled");
            std::thread::sleep(Duration::from_millis(100));
        }
        let leader = 1;
        let followers: Vec<u64> = cluster
            .ids()
            .into_iter()
            .filter(|&id| id != leader)
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let reads: Arc<Mutex<Vec<(Instant, Duration)>>> = Arc::default();
        let readers: Vec<_> = (0..8)
            .map(|r| {
                let port = cluster.node(followers[r % 2]).port;
                let (stop, reads) = (stop.clone(), reads.clone());
                std::thread::spawn(move || {
                    let mut client = Reconnecting::new(port);
                    while !stop.load(Ordering::Relaxed) {
                        let Some(conn) = client.get() else { continue };
                        let started = Instant::now();
                        match conn.get::<_, Option<String>>("k") {
                            Ok(_) => reads.lock().unwrap().push((started, started.elapsed())),
                            Err(e) => client.failed(&e),
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(1));
        cluster.node_mut(leader).kill9();
        let killed = Instant::now();
        let elected = loop {
            if cluster.leader_of(0, &followers).is_some() {
                break Instant::now();
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        std::thread::sleep(Duration::from_secs(4));
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            r.join().unwrap();
        }
        let reads = reads.lock().unwrap();
        // Reads caught by the election: how long after the new leader was
        // elected each of them was answered.
        let late = reads
            .iter()
            .filter(|(started, took)| *started < elected && *started + *took > elected)
            .map(|(started, took)| *started + *took - elected)
            .max()
            .unwrap_or_default();
        let longest_after = reads
            .iter()
            .filter(|(started, _)| *started >= elected)
            .map(|(_, took)| *took)
            .max()
            .unwrap_or_default();
        eprintln!(
            "round {round}: new leader {:?} after the kill; reads waiting across the election \
             answered up to {late:?} after it; reads started after it took at most {longest_after:?}",
            elected - killed,
        );
        worst.push(late);
    }
    worst.sort();
    eprintln!("stall after the election, per round (sorted): {worst:?}");
}
