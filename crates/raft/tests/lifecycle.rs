//! Log lifecycle on the in-process cluster: compaction while a follower
//! lags, catching up by snapshot when a transfer is cut midway (for a
//! lagging follower and for a new, empty node), and a membership change
//! proposed by a leader cut off from the majority.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::Cluster;
use elastickv_raft::{LimitsConfig, MembershipChange, ProposeError};

const SECONDS: fn(u64) -> Duration = Duration::from_secs;

fn small_log() -> LimitsConfig {
    LimitsConfig {
        snapshot_count: Some(20),
        log_retain_entries: Some(5),
        ..LimitsConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_behind_the_compacted_log_catches_up_by_snapshot_despite_a_cut_transfer() {
    let cluster = Cluster::start(3, 1, small_log());
    let leader = cluster.wait_leader(0, SECONDS(10)).await;
    let lagging = *cluster.nodes.keys().find(|&&id| id != leader).unwrap();
    cluster.filters.lock().unwrap().isolated.insert(lagging);
    let mut last = 0;
    for i in 0..200 {
        last = cluster
            .write(0, &format!("k{i}"), &format!("v{i}"), SECONDS(10))
            .await
            .0;
    }
    // The majority compacted while the follower lagged.
    let first = cluster.node(leader).raft.status()[0].first_index;
    assert!(first > 100, "leader log not compacted: first index {first}");

    // The first transfer breaks after one chunk; raft tries again.
    {
        let mut filters = cluster.filters.lock().unwrap();
        filters.cut_snapshots = 1;
        filters.isolated.clear();
    }
    cluster.wait_converged(0, last, SECONDS(20)).await;
    assert!(cluster.snapshots.cut.load(Ordering::SeqCst) >= 1);
    assert!(cluster.snapshots.delivered.load(Ordering::SeqCst) >= 1);
    for i in 0..200 {
        assert_eq!(
            cluster.value(lagging, &format!("k{i}")),
            Some(format!("v{i}").into_bytes()),
            "k{i} on the follower"
        );
    }
    let status = &cluster.node(lagging).raft.status()[0];
    assert!(status.first_index > 100, "{status:?}");
    // Neither the cut transfer nor the installed one left a file behind.
    let left: Vec<_> = std::fs::read_dir(cluster.node(lagging).store.snapshot_dir())
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "staged files left: {left:?}");
    cluster.shutdown();
}

/// A new, empty node whose first snapshot transfer breaks. raft-rs pauses
/// a follower after a failed snapshot until that follower answers a
/// heartbeat, so the empty replica must answer heartbeats (without
/// claiming a commit index it does not have) or it waits forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_whose_first_snapshot_breaks_still_catches_up() {
    let mut cluster = Cluster::start(3, 1, small_log());
    let mut last = 0;
    for i in 0..100 {
        last = cluster.write(0, &format!("k{i}"), "v", SECONDS(10)).await.0;
    }
    cluster.filters.lock().unwrap().cut_snapshots = 1;
    cluster.add_learner(4).await;
    cluster.wait_converged(0, last, SECONDS(20)).await;
    assert_eq!(cluster.snapshots.cut.load(Ordering::SeqCst), 1);
    assert!(cluster.snapshots.delivered.load(Ordering::SeqCst) >= 1);
    for i in 0..100 {
        assert_eq!(
            cluster.value(4, &format!("k{i}")).as_deref(),
            Some(&b"v"[..]),
            "k{i} on the new node"
        );
    }
    assert_eq!(cluster.node(4).raft.status()[0].learners, vec![4]);
    cluster.shutdown();
}

/// A voter whose data was lost comes back empty while the shard is idle:
/// its heartbeat answers (commit 0) are all the leader hears. The leader
/// must probe it then, not at the next write: the snapshot that reaches it
/// is what makes it refuse to serve as the voter it was and tell the
/// operator (an idle shard once left it silent indefinitely).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_whose_data_was_lost_is_probed_without_waiting_for_a_write() {
    let mut cluster = Cluster::start(3, 1, small_log());
    let mut last = 0;
    for i in 0..100 {
        last = cluster.write(0, &format!("k{i}"), "v", SECONDS(10)).await.0;
    }
    cluster.wait_converged(0, last, SECONDS(20)).await;
    let leader = cluster.wait_leader(0, SECONDS(10)).await;
    let lost = *cluster.nodes.keys().find(|&&id| id != leader).unwrap();
    let before = cluster.snapshots.delivered.load(Ordering::SeqCst);
    cluster.wipe(lost);
    let deadline = std::time::Instant::now() + SECONDS(10);
    while cluster.snapshots.delivered.load(Ordering::SeqCst) == before {
        assert!(
            std::time::Instant::now() < deadline,
            "no snapshot offered to the wiped node {lost} in 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // It refused it: still empty, still no configuration.
    let status = &cluster.node(lost).raft.status()[0];
    assert_eq!((status.applied, status.voters.len()), (0, 0), "{status:?}");
    cluster.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_cannot_commit_a_membership_change() {
    let cluster = Cluster::start(3, 1, LimitsConfig::default());
    let old = cluster.wait_leader(0, SECONDS(10)).await;
    let victim = *cluster.nodes.keys().find(|&&id| id != old).unwrap();
    cluster.filters.lock().unwrap().isolated.insert(old);
    let raft = cluster.node(old).raft.clone();
    let pending = tokio::spawn(async move {
        raft.change_membership(0, MembershipChange::Remove { node: victim })
            .await
    });

    // The majority elects a leader and keeps committing.
    let deadline = std::time::Instant::now() + SECONDS(10);
    let new = loop {
        let leader = cluster.leader(0);
        if let Some(leader) = leader.filter(|&l| l != old) {
            break leader;
        }
        assert!(std::time::Instant::now() < deadline, "no new leader");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let (index, _) = cluster.write(0, "after", "partition", SECONDS(10)).await;
    assert!(
        !pending.is_finished(),
        "the isolated leader's change completed"
    );

    cluster.filters.lock().unwrap().isolated.clear();
    cluster.wait_converged(0, index, SECONDS(10)).await;
    let outcome = tokio::time::timeout(SECONDS(10), pending)
        .await
        .expect("the change was never resolved")
        .unwrap();
    assert_eq!(outcome, Err(ProposeError::Dropped { shard: 0 }));
    for node in cluster.nodes.values() {
        let status = &node.raft.status()[0];
        assert_eq!(status.voters, vec![1, 2, 3], "node {}: {status:?}", node.id);
    }
    assert_ne!(new, old);
    cluster.shutdown();
}

/// A follower catching up by snapshot while writes outpace the transfers
/// (each takes 300 ms, during which the leader applies far more entries
/// than its log keeps). The leader keeps the entries after the snapshot
/// for the live follower, so one snapshot and the log suffice; otherwise
/// every snapshot would be out of date on arrival and the follower would
/// chase them forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_catches_up_by_snapshot_while_writes_outpace_transfers() {
    let cluster = std::sync::Arc::new(Cluster::start(3, 1, small_log()));
    let leader = cluster.wait_leader(0, SECONDS(10)).await;
    let lagging = *cluster.nodes.keys().find(|&&id| id != leader).unwrap();
    cluster.filters.lock().unwrap().isolated.insert(lagging);
    for i in 0..200 {
        cluster.write(0, &format!("k{i}"), "v", SECONDS(10)).await;
    }
    {
        let mut f = cluster.filters.lock().unwrap();
        f.snapshot_delay_ms = 300;
        f.isolated.clear();
    }
    // Writes keep coming for 3 s.
    let started = std::time::Instant::now();
    let mut i = 200u64;
    let mut last = 0;
    while started.elapsed() < SECONDS(3) {
        last = cluster.write(0, &format!("k{i}"), "v", SECONDS(10)).await.0;
        i += 1;
    }
    cluster.wait_converged(0, last, SECONDS(20)).await;
    let delivered = cluster.snapshots.delivered.load(Ordering::SeqCst);
    eprintln!("{i} writes; {delivered} snapshots delivered to the lagging follower");
    assert!(
        delivered <= 2,
        "{delivered} snapshots: the follower chased the log instead of catching up"
    );
    assert_eq!(
        cluster.value(lagging, &format!("k{}", i - 1)).as_deref(),
        Some(&b"v"[..])
    );
    cluster.shutdown();
}
