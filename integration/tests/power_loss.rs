//! Durability that reaches fsync: the whole cluster loses power (every
//! node killed at once, and every file cut back to what was synced; see
//! `elastickv_integration::power`), and every acknowledged write is there
//! when it comes back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use elastickv_integration::power::{Lost, lose_unsynced, tracked_env};
use elastickv_integration::{Cluster, Reconnecting};
use redis::Commands;

#[test]
fn a_power_loss_of_the_whole_cluster_loses_no_acknowledged_write() {
    let logs = tempfile::tempdir().unwrap();
    let log_of = |id: u64| logs.path().join(format!("syncs{id}.log"));
    let mut cluster = Cluster::start_each(3, 2, &[], &|id| tracked_env(&log_of(id)));
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let counters: Arc<Mutex<BTreeMap<String, i64>>> = Arc::default();
    let writers: Vec<_> = (0..6u64)
        .map(|w| {
            let port = cluster.node(1 + w % 3).port;
            let (stop, acked, counters) = (stop.clone(), acked.clone(), counters.clone());
            std::thread::spawn(move || {
                let mut client = Reconnecting::new(port);
                let counter = format!("counter:{w}");
                for i in 0u64.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let Some(conn) = client.get() else { return };
                    let (key, value) = (format!("w{w}:k{i}"), format!("v{i}"));
                    if conn.set::<_, _, ()>(&key, &value).is_err() {
                        return;
                    }
                    acked.lock().unwrap().push((key, value));
                    match conn.incr::<_, _, i64>(&counter, 1) {
                        Ok(n) => {
                            counters.lock().unwrap().insert(counter.clone(), n);
                        }
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(2_500));

    // The power goes: every node at once, and what was not synced is gone.
    for id in cluster.ids() {
        cluster.node_mut(id).kill9();
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let mut lost = Lost::default();
    for id in cluster.ids() {
        let node = lose_unsynced(&log_of(id), &cluster.node(id).data_dir);
        eprintln!("node {id}: power loss {node:?}");
        lost.files_cut += node.files_cut;
        lost.files_deleted += node.files_deleted;
        lost.bytes_cut += node.bytes_cut;
    }
    let acked = acked.lock().unwrap().clone();
    eprintln!(
        "{} writes acknowledged; the power loss took {lost:?}",
        acked.len()
    );
    assert!(acked.len() > 100, "too few writes: {}", acked.len());
    assert!(
        lost.bytes_cut > 0,
        "nothing unsynced was lost: the test would prove nothing"
    );

    for id in cluster.ids() {
        cluster.node_mut(id).restart();
    }
    cluster.wait_for_leaders(&cluster.ids(), Duration::from_secs(60));
    cluster.wait_caught_up(&cluster.ids(), Duration::from_secs(60));
    for id in cluster.ids() {
        let mut conn = cluster.node(id).client();
        for chunk in acked.chunks(500) {
            let keys: Vec<&str> = chunk.iter().map(|(k, _)| k.as_str()).collect();
            let values: Vec<Option<String>> = conn.mget(&keys).unwrap();
            for ((key, value), got) in chunk.iter().zip(values) {
                assert_eq!(
                    got.as_deref(),
                    Some(value.as_str()),
                    "{key} on node {id} after the power loss"
                );
            }
        }
        for (counter, n) in counters.lock().unwrap().iter() {
            let got: i64 = conn.get(counter).unwrap();
            assert!(
                *n <= got && got <= n + 1,
                "{counter} on node {id}: acknowledged {n}, found {got}"
            );
        }
    }
}
