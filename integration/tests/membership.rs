//! Membership changes with `elastickv ctl` on real processes: a new, empty
//! node joins every shard (by snapshot) and an old one leaves, losing no
//! key; a leader cut off from the majority cannot change the membership.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use elastickv_integration::{
    Cluster, Node, assert_numbered, free_port, run_to_exit, write_numbered,
};

const SMALL_LOG: [(&str, &str); 2] = [
    ("ELASTICKV_RAFT_SNAPSHOT_COUNT", "100"),
    ("ELASTICKV_RAFT_LOG_RETAIN_ENTRIES", "20"),
];

fn ctl(node: &Node, args: &[&str]) -> (bool, String) {
    node.ctl(args)
}

/// Waits until `node`'s own view (ctl status) shows `members` as the
/// voters of all `shards` shards: it applies membership changes a moment
/// after the leader that committed them.
fn wait_members(node: &Node, members: &str, shards: usize) {
    let pattern = format!("{members} /");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (ok, status) = ctl(node, &["status"]);
        if ok && status.matches(&pattern).count() == shards {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node on port {} never saw voters {members}: {status}",
            node.port
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_new_node_joins_an_old_one_leaves_and_every_key_stays() {
    let mut cluster = Cluster::start(3, 2, &[], &SMALL_LOG);
    write_numbered(cluster.node(1), 0..1000);

    // Node 4 starts empty, knowing how to reach the others.
    let dir = tempfile::tempdir().unwrap();
    let raft_port = free_port();
    let peers = (1..=3)
        .map(|id| format!("{id}=127.0.0.1:{}", cluster.node(id).raft_port))
        .chain([format!("4=127.0.0.1:{raft_port}")])
        .collect::<Vec<_>>()
        .join(",");
    // Its first snapshot transfer breaks (a fail point): the leader must
    // send another.
    let mut envs = SMALL_LOG.to_vec();
    envs.push(("FAILPOINTS", "snapshot-stage-chunk=1*return"));
    let new_node = Node::start_with_raft_port(
        &dir.path().join("node4"),
        &mut |attempt| if attempt == 0 { raft_port } else { free_port() },
        &[
            "--node-id",
            "4",
            "--peers",
            &peers,
            "--shards",
            "2",
            "--join",
        ],
        &envs,
    );
    // Bad requests are refused with a reason, and change nothing.
    let (ok, output) = ctl(cluster.node(2), &["add-node", "5", "no-port"]);
    assert!(!ok && output.contains("host:port"), "{output}");
    let (ok, output) = run_to_exit(&["ctl", "--addr", "127.0.0.1:1", "status"], &[]);
    assert!(!ok.success() && output.contains("cannot reach"), "{output}");

    let started = Instant::now();
    let (ok, output) = ctl(
        cluster.node(2),
        &[
            "add-node",
            "4",
            &format!("127.0.0.1:{}", new_node.raft_port),
        ],
    );
    eprintln!("add-node took {:?}:\n{output}", started.elapsed());
    assert!(ok, "add-node failed: {output}");
    assert!(output.contains("shard 1: node 4 caught up"), "{output}");
    wait_members(&new_node, "1,2,3,4", 2);
    assert_numbered(&new_node, 0..1000);
    assert!(new_node.log_text().contains("installed snapshot"));
    assert!(
        new_node.log_text().contains("snapshot from a peer refused"),
        "the fail point did not break the first transfer"
    );

    // Node 1 leaves; the others keep serving everything.
    let (ok, output) = ctl(cluster.node(3), &["remove-node", "1"]);
    assert!(ok, "remove-node failed: {output}");
    cluster.node_mut(1).kill9();
    wait_members(&new_node, "2,3,4", 2);
    write_numbered(cluster.node(2), 1000..1100);
    write_numbered(&new_node, 1100..1200);
    for node in [cluster.node(2), cluster.node(3), &new_node] {
        assert_numbered(node, 0..1200);
    }
}

#[test]
fn an_isolated_leader_cannot_change_the_membership() {
    let cluster = Cluster::start(3, 1, &[], &[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while cluster.leader_of(0, &cluster.ids()) != Some(1) {
        assert!(Instant::now() < deadline, "node 1 never led shard 0");
        std::thread::sleep(Duration::from_millis(100));
    }
    cluster.isolate(1);
    // Asked while it still believes it leads, node 1 proposes removing
    // node 3, and cannot commit it.
    let (ok, output) = ctl(cluster.node(1), &["remove-node", "3"]);
    assert!(!ok, "an isolated leader removed a node: {output}");
    eprintln!("isolated leader refused: {output}");

    cluster.heal();
    cluster.wait_for_leaders(&cluster.ids(), Duration::from_secs(30));
    cluster.wait_caught_up(&cluster.ids(), Duration::from_secs(30));
    for id in cluster.ids() {
        let (ok, status) = ctl(cluster.node(id), &["status"]);
        assert!(ok, "{status}");
        assert!(status.contains("1,2,3 /"), "node {id}: {status}");
        assert!(
            !cluster
                .node(id)
                .log_text()
                .contains("membership change applied"),
            "node {id} applied the isolated leader's change"
        );
    }
}

/// Starts node `id` empty with `--join`, knowing how to reach the nodes of
/// `cluster`.
fn start_joining(cluster: &Cluster, dir: &std::path::Path, id: u64, envs: &[(&str, &str)]) -> Node {
    let raft_port = free_port();
    let peers = cluster
        .ids()
        .into_iter()
        .map(|n| format!("{n}=127.0.0.1:{}", cluster.node(n).raft_port))
        .chain([format!("{id}=127.0.0.1:{raft_port}")])
        .collect::<Vec<_>>()
        .join(",");
    let node_id = id.to_string();
    let shards = cluster.shards.to_string();
    Node::start_with_raft_port(
        &dir.join(format!("node{id}")),
        &mut |attempt| if attempt == 0 { raft_port } else { free_port() },
        &[
            "--node-id",
            &node_id,
            "--peers",
            &peers,
            "--shards",
            &shards,
            "--join",
        ],
        envs,
    )
}

/// `ctl transfer-leader` to a node that cannot reach the leader back: the
/// leader never hears that it caught up, raft gives the transfer up, and
/// ctl says so within about two election timeouts, not after retrying for
/// half a minute.
#[test]
fn transfer_leader_reports_promptly_when_the_transferee_cannot_take_over() {
    let cluster = Cluster::start(3, 1, &[], &[]);
    let leader = cluster.leader_of(0, &cluster.ids()).expect("a leader");
    let target = cluster.ids().into_iter().find(|&id| id != leader).unwrap();
    cluster.cut(target, leader);
    // The leader's view of the target's log falls behind.
    write_numbered(cluster.node(leader), 0..50);
    let started = Instant::now();
    let (ok, output) = ctl(
        cluster.node(leader),
        &["transfer-leader", "0", &target.to_string()],
    );
    let took = started.elapsed();
    eprintln!("transfer-leader returned after {took:?}: {output}");
    assert!(!ok, "the transfer cannot have happened: {output}");
    assert!(output.contains("did not take leadership"), "{output}");
    assert!(
        took < Duration::from_secs(15),
        "ctl took {took:?}; its limit is two election timeouts (2-4 s)"
    );
    assert_eq!(cluster.leader_of(0, &[leader]), Some(leader));
    cluster.heal();
}

/// The node leading a shard dies; `ctl add-node` and `remove-node` issued
/// right away follow the leader elected next instead of failing on the
/// dead one. Replacing a dead node is what they are for.
#[test]
fn membership_changes_follow_a_new_leader_after_the_old_one_dies() {
    let mut cluster = Cluster::start(3, 2, &[], &SMALL_LOG);
    write_numbered(cluster.node(1), 0..200);
    let dir = tempfile::tempdir().unwrap();
    let new_node = start_joining(&cluster, dir.path(), 4, &SMALL_LOG);
    let dead = cluster.leader_of(0, &cluster.ids()).expect("a leader");
    let asked = cluster.ids().into_iter().find(|&id| id != dead).unwrap();
    cluster.node_mut(dead).kill9();

    let (ok, output) = ctl(
        cluster.node(asked),
        &[
            "add-node",
            "4",
            &format!("127.0.0.1:{}", new_node.raft_port),
        ],
    );
    assert!(ok, "add-node right after the leader died failed: {output}");
    let (ok, output) = ctl(cluster.node(asked), &["remove-node", &dead.to_string()]);
    assert!(ok, "remove-node of the dead leader failed: {output}");
    let members: Vec<String> = [1u64, 2, 3, 4]
        .into_iter()
        .filter(|&id| id != dead)
        .map(|id| id.to_string())
        .collect();
    wait_members(&new_node, &members.join(","), 2);
    write_numbered(&new_node, 200..300);
    assert_numbered(cluster.node(asked), 0..300);
    assert_numbered(&new_node, 0..300);
}
