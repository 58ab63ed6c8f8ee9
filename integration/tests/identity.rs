//! Cluster identity: a node whose data directory was wiped never founds a
//! cluster next to the members that count on it, never votes or takes
//! entries as if nothing was lost, and comes back only through removal and
//! re-adding; nodes of different clusters refuse each other's calls.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use elastickv_integration::{Cluster, Node, assert_numbered, write_numbered};
use redis::Commands;

/// `args` with `--bootstrap` replaced by `with` (or dropped).
fn flags_with(node: &Node, with: Option<&str>) -> Vec<String> {
    node.args()
        .into_iter()
        .filter_map(|a| match a.as_str() {
            "--bootstrap" => with.map(str::to_string),
            _ => Some(a),
        })
        .collect()
}

#[test]
fn a_node_whose_disk_was_lost_never_rejoins_as_if_nothing_happened() {
    let mut cluster = Cluster::start(3, 2, &[], &[]);
    write_numbered(cluster.node(1), 0..200);
    cluster.wait_caught_up(&cluster.ids(), Duration::from_secs(30));

    // Node 2's disk is lost.
    cluster.node_mut(2).kill9();
    std::fs::remove_dir_all(&cluster.node(2).data_dir).unwrap();

    // With its usual flags (--bootstrap): its peers already form a cluster
    // that does not wait for it, so it refuses to found another.
    let usual: Vec<String> = cluster.node(2).args();
    let usual: Vec<&str> = usual.iter().map(String::as_str).collect();
    let (status, log) = cluster.node_mut(2).run_to_exit_with(&usual);
    assert!(!status.success(), "{log}");
    assert!(log.contains("already belongs to cluster"), "{log}");
    // With neither --bootstrap nor --join: it will not guess.
    let neither = flags_with(cluster.node(2), None);
    let neither: Vec<&str> = neither.iter().map(String::as_str).collect();
    std::fs::remove_dir_all(&cluster.node(2).data_dir).ok();
    let (status, log) = cluster.node_mut(2).run_to_exit_with(&neither);
    assert!(!status.success(), "{log}");
    assert!(log.contains("start with --bootstrap"), "{log}");

    // With --join it starts, but its empty replicas refuse the snapshots
    // that still count it as a voter, and say what to do.
    std::fs::remove_dir_all(&cluster.node(2).data_dir).ok();
    let join = flags_with(cluster.node(2), Some("--join"));
    let join: Vec<&str> = join.iter().map(String::as_str).collect();
    cluster.node_mut(2).restart_with(&join);
    cluster.node(2).wait_for_log(
        "its data was lost, and it must not vote without it",
        Duration::from_secs(30),
    );
    // The others keep serving; node 2 serves no stale or empty data.
    write_numbered(cluster.node(1), 200..220);
    let reply = cluster.node(2).raw().call(&["GET", "key:0"]);
    assert!(
        reply.starts_with(b"-"),
        "a node that lost its data answered {}",
        String::from_utf8_lossy(&reply)
    );

    // Replacing it: remove node 2, add it back as a new member.
    let (ok, output) = cluster.node(1).ctl(&["remove-node", "2"]);
    assert!(ok, "{output}");
    let addr = format!("127.0.0.1:{}", cluster.node(2).raft_port);
    let (ok, output) = cluster.node(1).ctl(&["add-node", "2", &addr]);
    assert!(ok, "{output}");
    cluster.wait_caught_up(&cluster.ids(), Duration::from_secs(60));
    assert_numbered(cluster.node(2), 0..220);
}

/// Two clusters wired to each other by mistake (node 1 of cluster A
/// reaches node 3 of cluster B where it expects its own node 3): B's node
/// refuses A's calls, and neither cluster is disturbed.
#[test]
fn nodes_refuse_peers_of_another_cluster() {
    let a = Cluster::start(3, 1, &[], &[]);
    let b = Cluster::start(3, 1, &[], &[]);
    // A's term runs well ahead of B's, and A's node 1 leads: were its
    // messages taken by B's node 3, that node would jump to A's term.
    write_numbered(b.node(1), 0..50);
    let b_term = b.info_raft(3).unwrap()[0].term;
    let deadline = Instant::now() + Duration::from_secs(60);
    let a_term = loop {
        let leaders = a.wait_for_leaders(&a.ids(), Duration::from_secs(20));
        let term = a.info_raft(leaders[0]).unwrap()[0].term;
        if term > b_term + 3 && leaders == [1] {
            break term;
        }
        assert!(Instant::now() < deadline, "A's term stayed at {term}");
        // Leadership back and forth (the balancer brings it home to node 1).
        let to = if leaders[0] == 1 { "2" } else { "1" };
        let _ = a.node(leaders[0]).ctl(&["transfer-leader", "0", to]);
    };

    // A's node 1 now reaches B's node 3 where it expects its own node 3.
    a.retarget(1, 3, b.node(3).raft_port);
    std::thread::sleep(Duration::from_secs(3));
    write_numbered(a.node(1), 100..150);
    write_numbered(b.node(2), 50..100);
    b.wait_caught_up(&b.ids(), Duration::from_secs(30));
    let b3 = b.info_raft(3).unwrap()[0].clone();
    assert!(
        b3.term < a_term,
        "B's node 3 took A's term {a_term}: {b3:?}"
    );
    assert_numbered(b.node(3), 0..100);
    // Nothing of A's reached B's node 3.
    let leaked: Vec<Option<String>> = b
        .node(3)
        .client()
        .mget((100..150).map(|i| format!("key:{i}")).collect::<Vec<_>>())
        .unwrap();
    assert!(leaked.iter().all(Option::is_none), "{leaked:?}");
    a.node(1)
        .wait_for_log("belongs to cluster", Duration::from_secs(10));
    b.node(3).wait_for_log(
        "refused a call from another cluster",
        Duration::from_secs(10),
    );
    assert_numbered(a.node(2), 100..150);
}
