//! Faults that bend leadership: re-election with a stale log tail, leader
//! transfers, restarts, colliding read requests, elections that leave
//! followers waiting. Each test here reproduces a way linearizability could
//! break and checks that it does not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::Cluster;
use elastickv_raft::{LimitsConfig, ProposeError};

const SECONDS: fn(u64) -> Duration = Duration::from_secs;

/// A leader proposes entries it cannot commit (cut off), loses leadership,
/// has that stale tail overwritten by the next leader's shorter log, and is
/// then made leader again. Its new proposal lands at an index where a stale
/// one used to be: it must be answered with its own result, and the stale
/// ones as dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_elected_leader_answers_each_proposal_with_its_own_entry() {
    let cluster = Cluster::start(3, 1, LimitsConfig::default());
    let first = cluster.wait_leader(0, SECONDS(10)).await;
    cluster.write(0, "settled", "1", SECONDS(10)).await;

    // Cut off, the leader appends a tail nobody else sees.
    cluster.filters.lock().unwrap().isolated.insert(first);
    let stale: Vec<_> = (0..10)
        .map(|i| {
            let raft = cluster.node(first).raft.clone();
            tokio::spawn(async move { raft.propose(0, format!("stale{i}=x").into_bytes()).await })
        })
        .collect();
    // The others elect a leader, which commits only its empty entry.
    let second = loop {
        if let Some(l) = cluster.leader(0).filter(|&l| l != first) {
            break l;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    // Back in touch, the old leader's tail is replaced by the new
    // leader's (shorter) log; then leadership goes back to it.
    cluster.filters.lock().unwrap().isolated.clear();
    let commit = cluster.node(second).raft.status()[0].commit;
    cluster.wait_converged(0, commit, SECONDS(10)).await;
    cluster
        .node(second)
        .raft
        .transfer_leader(0, first)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + SECONDS(10);
    while cluster.leader(0) != Some(first) {
        assert!(std::time::Instant::now() < deadline, "transfer back failed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let fresh = tokio::time::timeout(
        SECONDS(10),
        cluster.node(first).raft.propose(0, b"fresh=1".to_vec()),
    )
    .await
    .expect("the fresh proposal is answered");
    let (index, _) = fresh.expect("the fresh proposal was applied and says so");
    cluster.wait_converged(0, index, SECONDS(10)).await;
    for node in cluster.nodes.values() {
        assert_eq!(cluster.value(node.id, "fresh").as_deref(), Some(&b"1"[..]));
    }
    for (i, handle) in stale.into_iter().enumerate() {
        let outcome = tokio::time::timeout(SECONDS(10), handle)
            .await
            .expect("stale proposals are answered")
            .unwrap();
        assert_eq!(
            outcome,
            Err(ProposeError::Dropped { shard: 0 }),
            "stale proposal {i}"
        );
        for node in cluster.nodes.values() {
            assert_eq!(cluster.value(node.id, &format!("stale{i}")), None);
        }
    }
    cluster.shutdown();
}
