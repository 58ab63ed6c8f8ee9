//! Multi-node raft through the real engines, stores and outbound lanes,
//! over an in-process network that can partition, pause, delay and drop.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::Cluster;
use elastickv_raft::{LimitsConfig, ProposeError, Role};

const SECONDS: fn(u64) -> Duration = Duration::from_secs;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elects_one_leader_per_shard_and_replicates() {
    let cluster = Cluster::start(3, 3, LimitsConfig::default());
    for shard in 0..3 {
        let leader = cluster.wait_leader(shard, SECONDS(10)).await;
        let term = cluster.node(leader).raft.status()[shard as usize].term;
        let mut last = 0;
        for i in 0..50 {
            last = cluster
                .write(
                    shard,
                    &format!("s{shard}k{i}"),
                    &format!("v{i}"),
                    SECONDS(10),
                )
                .await
                .0;
        }
        cluster.wait_converged(shard, last, SECONDS(10)).await;
        for node in cluster.nodes.values() {
            let status = &node.raft.status()[shard as usize];
            assert_eq!(status.leader, leader, "every node knows the leader");
            assert_eq!(status.term, term);
            assert_eq!(
                cluster.value(node.id, &format!("s{shard}k49")).as_deref(),
                Some(&b"v49"[..])
            );
        }
        let leaders = cluster
            .nodes
            .values()
            .filter(|n| n.raft.status()[shard as usize].role == Role::Leader)
            .count();
        assert_eq!(leaders, 1);
    }
    // Reads are linearizable on followers too (ReadIndex via the leader).
    for node in cluster.nodes.values() {
        node.raft.read_barrier(0).await.unwrap();
    }
    cluster.shutdown();
}

/// An isolated leader cannot commit, loses leadership, serves no read;
/// after the partition heals every log agrees with the majority's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_leader_commits_nothing_and_logs_converge() {
    let cluster = Cluster::start(3, 1, LimitsConfig::default());
    let old = cluster.wait_leader(0, SECONDS(10)).await;
    cluster.write(0, "before", "1", SECONDS(10)).await;
    cluster.filters.lock().unwrap().isolated.insert(old);

    // A write on the isolated leader cannot commit.
    let stranded = {
        let raft = cluster.node(old).raft.clone();
        tokio::spawn(async move { raft.propose(0, b"stranded=1".to_vec()).await })
    };
    // The majority elects a new leader and keeps committing.
    let new = loop {
        if let Some(l) = cluster.leader(0).filter(|&l| l != old) {
            break l;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let mut last = 0;
    for i in 0..30 {
        last = cluster
            .write(0, &format!("after{i}"), "2", SECONDS(10))
            .await
            .0;
    }
    // With check-quorum the old leader stepped down; its lease is gone, so
    // it serves no read (it cannot reach a leader for a ReadIndex either).
    assert!(cluster.node(old).raft.read_barrier(0).await.is_err());
    assert_eq!(cluster.value(old, "after0"), None);

    cluster.filters.lock().unwrap().isolated.clear();
    cluster.wait_converged(0, last, SECONDS(10)).await;
    let outcome = tokio::time::timeout(SECONDS(10), stranded)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(
            outcome,
            Err(ProposeError::Dropped { .. } | ProposeError::NotLeader { .. })
        ),
        "the stranded write must not be acknowledged: {outcome:?}"
    );
    for node in cluster.nodes.values() {
        assert_eq!(cluster.value(node.id, "stranded"), None, "node {}", node.id);
        assert_eq!(
            cluster.value(node.id, "after29").as_deref(),
            Some(&b"2"[..])
        );
        assert_eq!(cluster.value(node.id, "before").as_deref(), Some(&b"1"[..]));
        assert_eq!(node.raft.status()[0].leader, new);
    }
    cluster.shutdown();
}

/// A stalled follower fills its lanes: messages are refused, not queued
/// without bound, raft is told, and the follower catches up afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_lanes_drop_then_the_follower_catches_up() {
    let limits = LimitsConfig {
        max_inflight_msgs: Some(4),
        max_size_per_msg: Some(1024),
        pre_vote: None,
        ..LimitsConfig::default()
    };
    let cluster = Cluster::start(3, 1, limits);
    let leader = cluster.wait_leader(0, SECONDS(10)).await;
    let stalled = *cluster.nodes.keys().find(|&&id| id != leader).unwrap();
    cluster.filters.lock().unwrap().paused.insert(stalled);

    let big = "x".repeat(400);
    let mut last = 0;
    for i in 0..200 {
        last = cluster
            .write(0, &format!("k{i}"), &big, SECONDS(10))
            .await
            .0;
    }
    let lane = cluster.node(leader).raft.outbox().peer(stalled).unwrap();
    assert!(
        lane.refused() > 0,
        "the stalled peer's lane must have refused messages"
    );
    assert!(
        lane.queued() <= 4 + elastickv_raft::outbox::PRIORITY_LANE_CAPACITY,
        "{} messages queued towards the stalled peer",
        lane.queued()
    );
    assert_eq!(cluster.value(stalled, "k199"), None);

    cluster.filters.lock().unwrap().paused.clear();
    cluster.wait_converged(0, last, SECONDS(20)).await;
    assert_eq!(
        cluster.value(stalled, "k199").as_deref(),
        Some(big.as_bytes())
    );
    cluster.shutdown();
}

/// Flooding a node's inbound queue gets refusals, counted, and the
/// cluster carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_queue_overflow_is_refused_and_counted() {
    let cluster = Cluster::start(3, 1, LimitsConfig::default());
    let leader = cluster.wait_leader(0, SECONDS(10)).await;
    let victim = *cluster.nodes.keys().find(|&&id| id != leader).unwrap();
    let raft = cluster.node(victim).raft.clone();
    let mut append = raft::prelude::Message::default();
    append.set_msg_type(raft::prelude::MessageType::MsgAppend);
    append.from = leader;
    append.to = victim;
    // The network holds the peers' own traffic to the victim meanwhile,
    // so every refusal counted is one of this burst's.
    cluster.filters.lock().unwrap().paused.insert(victim);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = raft.step_refusals(0);
    let mut refused = 0;
    for _ in 0..20_000 {
        if raft.step(0, append.clone()).is_err() {
            refused += 1;
        }
    }
    let counted = raft.step_refusals(0) - before;
    cluster.filters.lock().unwrap().paused.remove(&victim);
    assert!(
        refused > 0,
        "a burst far beyond the queue capacity must be refused"
    );
    assert_eq!(counted, refused);
    let last = cluster.write(0, "still", "works", SECONDS(10)).await.0;
    cluster.wait_converged(0, last, SECONDS(10)).await;
    assert_eq!(
        cluster.value(victim, "still").as_deref(),
        Some(&b"works"[..])
    );
    cluster.shutdown();
}

/// Latency, reordering and loss on every link: everything acknowledged is
/// applied everywhere, identically.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lossy_reordering_network_keeps_replicas_identical() {
    let cluster = Cluster::start(3, 2, LimitsConfig::default());
    {
        let mut f = cluster.filters.lock().unwrap();
        f.delay_ms = Some((0, 15));
        f.drop_rate = 0.1;
    }
    let mut acked = BTreeSet::new();
    let mut last = [0u64; 2];
    for i in 0..200 {
        let shard = i % 2;
        last[shard as usize] = cluster
            .write(shard, &format!("lossy{i}"), &i.to_string(), SECONDS(30))
            .await
            .0;
        acked.insert(i);
    }
    {
        let mut f = cluster.filters.lock().unwrap();
        f.delay_ms = None;
        f.drop_rate = 0.0;
    }
    for shard in 0..2 {
        cluster
            .wait_converged(shard, last[shard as usize], SECONDS(20))
            .await;
    }
    for node in cluster.nodes.values() {
        for i in &acked {
            assert_eq!(
                cluster.value(node.id, &format!("lossy{i}")),
                Some(i.to_string().into_bytes()),
                "node {} key lossy{i}",
                node.id
            );
        }
    }
    assert!(cluster.refused_steps.load(Ordering::Relaxed) < 1000);
    cluster.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_can_be_transferred() {
    let cluster = Cluster::start(3, 1, LimitsConfig::default());
    let leader = cluster.wait_leader(0, SECONDS(10)).await;
    let target = *cluster.nodes.keys().find(|&&id| id != leader).unwrap();
    cluster.write(0, "a", "1", SECONDS(10)).await;
    cluster
        .node(leader)
        .raft
        .transfer_leader(0, target)
        .await
        .unwrap();
    for _ in 0..500 {
        if cluster.leader(0) == Some(target) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(cluster.leader(0), Some(target));
    let last = cluster.write(0, "b", "2", SECONDS(10)).await.0;
    cluster.wait_converged(0, last, SECONDS(10)).await;
    assert_eq!(cluster.value(leader, "b").as_deref(), Some(&b"2"[..]));
    cluster.shutdown();
}
