//! Faults that bend leadership: re-election with a stale log tail, leader
//! transfers, restarts, colliding read requests, elections that leave
//! followers waiting. Each test here reproduces a way linearizability could
//! break and checks that it does not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
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

/// Whether a linearizable read on `node` right now would miss `key=value`
/// (the barrier succeeded, but the data it lets through lacks the write).
async fn read_is_stale(cluster: &Cluster, node: u64, key: &str, value: &str) -> bool {
    let barrier = tokio::time::timeout(SECONDS(5), cluster.node(node).raft.read_barrier(0)).await;
    match barrier {
        Ok(Ok(_)) => cluster.value(node, key).as_deref() != Some(value.as_bytes()),
        // Refused or timed out: nothing was served.
        Ok(Err(_)) | Err(_) => false,
    }
}

/// A leader hands leadership to a node that cannot reach it back. The
/// transferee wins at once (MsgTimeoutNow skips the election timeout) and
/// commits a write with the third node; the third node's messages reach the
/// old leader late, so for a while the old leader has not heard of the new
/// term. It must not serve reads from a lease meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_lease_read_on_the_old_leader_after_a_transfer() {
    // 50 ms ticks: a heartbeat every 50 ms, a lease of 400 ms.
    let cluster = Arc::new(Cluster::start_with_tick(
        3,
        1,
        LimitsConfig::default(),
        Duration::from_millis(50),
    ));
    let old = cluster.wait_leader(0, SECONDS(10)).await;
    let others: Vec<u64> = cluster
        .nodes
        .keys()
        .copied()
        .filter(|&id| id != old)
        .collect();
    let (transferee, third) = (others[0], others[1]);
    let last = cluster.write(0, "k", "before", SECONDS(10)).await.0;
    cluster.wait_converged(0, last, SECONDS(10)).await;
    assert!(!read_is_stale(&cluster, old, "k", "before").await);

    {
        let mut f = cluster.filters.lock().unwrap();
        f.cut.insert((transferee, old));
        // Half a lease late: the old leader hears the third node's
        // acknowledgement of its last heartbeat, and of the new term, 200 ms
        // after the fact.
        f.link_delay_ms.insert((third, old), 200);
    }
    // A transfer raft gives up on (the transferee did not campaign within
    // an election timeout, as happens on a loaded machine) is asked again,
    // as an operator would.
    let deadline = std::time::Instant::now() + SECONDS(10);
    while cluster.leader(0) != Some(transferee) {
        assert!(
            std::time::Instant::now() < deadline,
            "node {transferee} did not become leader within 10 s"
        );
        if cluster.leader(0) == Some(old) {
            cluster
                .node(old)
                .raft
                .transfer_leader(0, transferee)
                .await
                .unwrap();
        }
        let asked = std::time::Instant::now();
        while cluster.leader(0) != Some(transferee) && asked.elapsed() < SECONDS(1) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    cluster.write(0, "k", "after", SECONDS(5)).await;
    // Reads start every few milliseconds until well after the old leader
    // learned of the new term; none may miss the acknowledged write.
    let mut reads = Vec::new();
    let until = std::time::Instant::now() + Duration::from_millis(600);
    while std::time::Instant::now() < until {
        let cluster = cluster.clone();
        reads.push(tokio::spawn(async move {
            read_is_stale(&cluster, old, "k", "after").await
        }));
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let mut stale = 0;
    for read in &mut reads {
        stale += usize::from(read.await.unwrap());
    }
    assert_eq!(
        stale,
        0,
        "{stale} of {} reads on the old leader missed a write acknowledged by the new one",
        reads.len()
    );
    {
        let mut f = cluster.filters.lock().unwrap();
        f.cut.clear();
        f.link_delay_ms.clear();
    }
    cluster.shutdown();
}

/// A follower that acknowledged the leader's lease-confirming heartbeat
/// restarts at once and, knowing no leader, would vote for a candidate
/// the leader cannot reach, which then commits a write while the old
/// leader's lease still runs. Refusing votes for an election timeout after
/// opening keeps any lease it confirmed from being cut short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_voter_cannot_help_cut_a_live_lease_short() {
    // Slower ticks so the whole sequence fits well inside one lease.
    let mut cluster =
        Cluster::start_with_tick(3, 1, LimitsConfig::default(), Duration::from_millis(50));
    let leader = cluster.wait_leader(0, SECONDS(10)).await;
    let others: Vec<u64> = cluster
        .nodes
        .keys()
        .copied()
        .filter(|&id| id != leader)
        .collect();
    let (voter, candidate) = (others[0], others[1]);
    let last = cluster.write(0, "k", "before", SECONDS(10)).await.0;
    cluster.wait_converged(0, last, SECONDS(10)).await;

    // The candidate cannot reach the leader; its (pre-)vote requests to the
    // voter wait in its lane. The voter, still hearing the leader, would
    // refuse them anyway.
    {
        let mut f = cluster.filters.lock().unwrap();
        f.cut.insert((leader, candidate));
        f.cut.insert((candidate, leader));
        f.held.insert((candidate, voter));
    }
    let deadline = std::time::Instant::now() + SECONDS(10);
    while cluster.node(candidate).raft.status()[0].role != elastickv_raft::Role::Candidate {
        assert!(std::time::Instant::now() < deadline, "no campaign");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Keep the leader's lease fresh right up to the restart.
    assert!(!read_is_stale(&cluster, leader, "k", "before").await);
    cluster.filters.lock().unwrap().cut.insert((leader, voter));
    cluster.restart(voter);
    cluster.filters.lock().unwrap().held.clear();

    // Whoever wins from here, a read the old leader serves must include
    // every write the cluster acknowledged.
    let deadline = std::time::Instant::now() + SECONDS(10);
    loop {
        if cluster.leader(0).is_some_and(|l| l != leader) {
            cluster.write(0, "k", "after", SECONDS(5)).await;
            assert!(
                !read_is_stale(&cluster, leader, "k", "after").await,
                "the old leader served a read that misses a write the new leader acknowledged"
            );
            break;
        }
        assert!(
            !read_is_stale(&cluster, leader, "k", "before").await,
            "reads before the election see the last write"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "no new leader: {:#?}",
            cluster
                .nodes
                .values()
                .map(|n| n.raft.status()[0].clone())
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cluster.filters.lock().unwrap().cut.clear();
    cluster.shutdown();
}

/// Two followers' first reads carry the same request context unless
/// contexts are unique per node and incarnation; the leader then keeps only
/// one of them (raft-rs ignores a second pending request with the same
/// context) and the other read stalls until it times out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_requests_from_different_followers_never_collide() {
    let cluster = Cluster::start(3, 1, LimitsConfig::default());
    let leader = cluster.wait_leader(0, SECONDS(10)).await;
    let followers: Vec<u64> = cluster
        .nodes
        .keys()
        .copied()
        .filter(|&id| id != leader)
        .collect();
    let last = cluster.write(0, "k", "v", SECONDS(10)).await.0;
    cluster.wait_converged(0, last, SECONDS(10)).await;
    // Both requests reach the leader while neither is confirmed yet.
    {
        let mut f = cluster.filters.lock().unwrap();
        for &id in &followers {
            f.paused.insert(id);
        }
    }
    let reads: Vec<_> = followers
        .iter()
        .map(|&id| {
            let raft = cluster.node(id).raft.clone();
            tokio::spawn(async move { raft.read_barrier(0).await.map(|_| ()) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(30)).await;
    cluster.filters.lock().unwrap().paused.clear();
    for (read, id) in reads.into_iter().zip(&followers) {
        assert_eq!(read.await.unwrap(), Ok(()), "read on follower {id}");
    }
    cluster.shutdown();
}

/// A follower's read must not wait out the read timeout when the leader it
/// asked is gone or, newly elected, silently drops read requests until it
/// commits an entry of its term: the follower asks again as soon as it
/// learns of a leader or of that commit. Production timing (100 ms ticks:
/// elections 1-2 s, read timeout 2 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_read_right_after_an_election_is_answered_without_timing_out() {
    let cluster =
        Cluster::start_with_tick(3, 1, LimitsConfig::default(), Duration::from_millis(100));
    let old = cluster.wait_leader(0, SECONDS(20)).await;
    let follower = *cluster.nodes.keys().find(|&&id| id != old).unwrap();
    let last = cluster.write(0, "k", "v", SECONDS(10)).await.0;
    cluster.wait_converged(0, last, SECONDS(10)).await;

    cluster.filters.lock().unwrap().isolated.insert(old);
    // A reader that retries like the node's backend: at once while there is
    // no leader, and again after a read that timed out.
    let reader = {
        let raft = cluster.node(follower).raft.clone();
        tokio::spawn(async move {
            let mut timed_out = 0;
            loop {
                match raft.read_barrier(0).await {
                    Ok(_) => return (std::time::Instant::now(), timed_out),
                    Err(ProposeError::Dropped { .. }) => timed_out += 1,
                    Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
                }
            }
        })
    };
    let elected_at = loop {
        if cluster.leader(0).is_some_and(|l| l != old) {
            break std::time::Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let (served_at, timed_out) = tokio::time::timeout(SECONDS(20), reader)
        .await
        .expect("the read is served")
        .unwrap();
    eprintln!(
        "follower read served {:?} after the new leader was elected; {timed_out} attempt(s) timed out",
        served_at.saturating_duration_since(elected_at)
    );
    assert_eq!(
        timed_out, 0,
        "a read attempt waited out the read timeout instead of being asked again"
    );
    cluster.shutdown();
}

/// A follower's read request lost on the way (here: its link to the leader
/// is down for a moment) is asked again within a couple of heartbeats, not
/// after the read timeout. Production timing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_follower_read_request_is_asked_again() {
    let cluster =
        Cluster::start_with_tick(3, 1, LimitsConfig::default(), Duration::from_millis(100));
    let leader = cluster.wait_leader(0, SECONDS(20)).await;
    let follower = *cluster.nodes.keys().find(|&&id| id != leader).unwrap();
    let last = cluster.write(0, "k", "v", SECONDS(10)).await.0;
    cluster.wait_converged(0, last, SECONDS(10)).await;

    cluster
        .filters
        .lock()
        .unwrap()
        .cut
        .insert((follower, leader));
    let read = {
        let raft = cluster.node(follower).raft.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            (raft.read_barrier(0).await.map(|_| ()), started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    cluster.filters.lock().unwrap().cut.clear();
    let (outcome, took) = read.await.unwrap();
    eprintln!("follower read with a lost request: {outcome:?} after {took:?}");
    assert_eq!(outcome, Ok(()), "the lost request is asked again");
    cluster.shutdown();
}

/// A leader cut off from the others steps down after an election timeout
/// (check-quorum). Its pending proposals are answered then, as dropped,
/// while it is still cut off: not when it next hears from a leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leader_answers_its_pending_proposals_at_once() {
    let cluster = Cluster::start(3, 1, LimitsConfig::default());
    let leader = cluster.wait_leader(0, SECONDS(10)).await;
    cluster.write(0, "k", "v", SECONDS(10)).await;
    cluster.filters.lock().unwrap().isolated.insert(leader);
    let raft = cluster.node(leader).raft.clone();
    let pending = tokio::spawn(async move { raft.propose(0, b"stranded=1".to_vec()).await });
    let deadline = std::time::Instant::now() + SECONDS(10);
    while cluster.node(leader).raft.status()[0].role == elastickv_raft::Role::Leader {
        assert!(std::time::Instant::now() < deadline, "never stepped down");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let outcome = tokio::time::timeout(SECONDS(2), pending)
        .await
        .expect("answered while still cut off")
        .unwrap();
    assert_eq!(outcome, Err(ProposeError::Dropped { shard: 0 }));
    cluster.filters.lock().unwrap().isolated.clear();
    cluster.shutdown();
}
