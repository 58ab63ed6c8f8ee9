//! Security: with a cluster secret, every service on a node's raft address
//! refuses callers that do not present it (counted and logged), `elastickv
//! ctl` needs it too, and a node given another cluster's secret neither
//! votes nor receives data while the rest of the cluster keeps working.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use elastickv_integration::cluster::Cluster;
use elastickv_integration::{Node, assert_numbered, free_port, scrape_metrics, write_numbered};
use elastickv_transport::pb;
use elastickv_transport::{ClusterIdentity, ClusterSecret};

const SECRET: &str = "correct horse battery staple 42";

fn secret_file(dir: &Path, name: &str, secret: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    path.display().to_string()
}

/// The code of every service's answer to a call tagged by `caller`
/// (`Ok` when the service took the call).
async fn call_every_service(
    addr: &str,
    caller: &ClusterIdentity,
) -> Vec<(&'static str, tonic::Code)> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let code = |r: Result<(), tonic::Status>| r.map_or_else(|s| s.code(), |()| tonic::Code::Ok);
    let mut codes = Vec::new();
    let mut admin = pb::admin_client::AdminClient::new(channel.clone());
    codes.push((
        "admin status",
        code(
            admin
                .status(caller.request(pb::StatusRequest {}))
                .await
                .map(drop),
        ),
    ));
    // Removing a node that is not a member would fail after admission;
    // refused before it, nothing is even looked at.
    codes.push((
        "admin remove-node",
        code(
            admin
                .remove_node(caller.request(pb::RemoveNodeRequest { node: 9 }))
                .await
                .map(drop),
        ),
    ));
    let mut founding = pb::founding_client::FoundingClient::new(channel.clone());
    codes.push((
        "founding probe",
        code(
            founding
                .probe(caller.request(pb::ProbeRequest { from_node: 9 }))
                .await
                .map(drop),
        ),
    ));
    let mut raft = pb::raft_transport_client::RaftTransportClient::new(channel.clone());
    let batches = futures::stream::iter(vec![pb::RaftBatch {
        from_node: 9,
        messages: Vec::new(),
    }]);
    codes.push((
        "raft stream",
        code(raft.stream(caller.request(batches)).await.map(drop)),
    ));
    let mut forward = pb::forward_client::ForwardClient::new(channel.clone());
    let requests = futures::stream::iter(Vec::<pb::ForwardRequest>::new());
    codes.push((
        "forward pipeline",
        code(forward.pipeline(caller.request(requests)).await.map(drop)),
    ));
    let mut snapshots = pb::snapshot_transport_client::SnapshotTransportClient::new(channel);
    let chunks = futures::stream::iter(Vec::<pb::SnapshotChunk>::new());
    codes.push((
        "snapshot install",
        code(snapshots.install(caller.request(chunks)).await.map(drop)),
    ));
    codes
}

#[test]
fn every_service_and_ctl_refuse_callers_without_the_cluster_secret() {
    let dir = tempfile::tempdir().unwrap();
    let file = secret_file(dir.path(), "secret", SECRET);
    let metrics_port = free_port();
    let metrics = format!("127.0.0.1:{metrics_port}");
    let node = Node::start(
        &dir.path().join("data"),
        &["--cluster-secret-file", &file, "--metrics-addr", &metrics],
    );
    let addr = format!("127.0.0.1:{}", node.raft_port);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let secret = |s: &str| Some(ClusterSecret::new(s.as_bytes()).unwrap());
    for (caller, what) in [
        (ClusterIdentity::default(), "no secret"),
        (
            ClusterIdentity::default().with_secret(secret("another cluster's secret")),
            "a wrong secret",
        ),
    ] {
        for (service, code) in runtime.block_on(call_every_service(&addr, &caller)) {
            assert_eq!(code, tonic::Code::Unauthenticated, "{service} with {what}");
        }
    }
    // With the secret, each service takes the call (and answers as it
    // would any other: the checks after admission still apply).
    let member = ClusterIdentity::default().with_secret(secret(SECRET));
    for (service, code) in runtime.block_on(call_every_service(&addr, &member)) {
        assert_ne!(
            code,
            tonic::Code::Unauthenticated,
            "{service} with the secret"
        );
    }

    // ctl: refused without the secret or with a wrong one, served with it
    // from a file or the environment; both at once is ambiguous.
    let (ok, output) = node.ctl(&["status"]);
    assert!(
        !ok && output.contains("requires the cluster secret"),
        "{output}"
    );
    let wrong = secret_file(dir.path(), "wrong", "another cluster's secret");
    let (ok, output) = node.ctl(&["--cluster-secret-file", &wrong, "status"]);
    assert!(!ok && output.contains("wrong cluster secret"), "{output}");
    let (ok, output) = node.ctl(&["--cluster-secret-file", &file, "status"]);
    assert!(ok, "{output}");
    let (ok, output) = node.ctl_with_env(&["status"], &[("ELASTICKV_CLUSTER_SECRET", SECRET)]);
    assert!(ok, "{output}");
    let (ok, output) = node.ctl_with_env(
        &["--cluster-secret-file", &file, "status"],
        &[("ELASTICKV_CLUSTER_SECRET", SECRET)],
    );
    assert!(
        !ok && output.contains("give the secret one way"),
        "{output}"
    );
    let short = secret_file(dir.path(), "short", "hunter2");
    let (ok, output) = node.ctl(&["--cluster-secret-file", &short, "status"]);
    assert!(!ok && output.contains("at least 16"), "{output}");

    // Refusals are counted per service and logged; the node still serves.
    let text = scrape_metrics(metrics_port);
    for service in ["admin", "founding", "raft", "forward", "snapshot"] {
        let line =
            format!("elastickv_transport_unauthenticated_calls_total{{service=\"{service}\"}}");
        let count: f64 = text
            .lines()
            .find(|l| l.starts_with(&line))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {line} in:\n{text}"));
        assert!(count >= 2.0, "{line} = {count}");
    }
    assert!(
        node.log_text()
            .contains("refused a call with no cluster secret"),
        "{}",
        node.log_text()
    );
    write_numbered(&node, 0..10);
    assert_numbered(&node, 0..10);
}

#[test]
fn a_node_without_the_cluster_secret_takes_no_part_until_given_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = secret_file(dir.path(), "secret", SECRET);
    let wrong = secret_file(dir.path(), "wrong", "another cluster's secret");
    let mut cluster = Cluster::start(3, 2, &["--cluster-secret-file", &file], &[]);
    write_numbered(cluster.node(1), 0..50);
    cluster.wait_caught_up(&cluster.ids(), Duration::from_secs(30));

    // Node 3 comes back with another cluster's secret.
    let args = cluster.node(3).args();
    let swapped: Vec<String> = args
        .iter()
        .map(|a| if *a == file { wrong.clone() } else { a.clone() })
        .collect();
    let swapped: Vec<&str> = swapped.iter().map(String::as_str).collect();
    cluster.node_mut(3).restart_with(&swapped);

    // The other two keep serving; node 3 gets none of it.
    write_numbered(cluster.node(1), 50..150);
    assert_numbered(cluster.node(2), 0..150);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(cluster.node(1).log_text().contains("wrong cluster secret")
        || cluster.node(2).log_text().contains("wrong cluster secret"))
    {
        assert!(Instant::now() < deadline, "no refusal logged");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    // Each shard took about 50 of the new writes; node 3 has none of them.
    let theirs = cluster.info_raft(1).unwrap();
    let shards = cluster.info_raft(3).unwrap();
    for (shard, reference) in shards.iter().zip(&theirs) {
        assert!(
            shard.applied + 20 < reference.applied,
            "node 3 applied the new entries: {shard:?} vs node 1's {reference:?}"
        );
        assert_ne!(shard.role, "leader", "node 3 leads: {shard:?}");
    }
    let leaders = cluster.wait_for_leaders(&[1, 2], Duration::from_secs(20));
    assert!(leaders.iter().all(|&l| l != 3), "{leaders:?}");

    // Given the right secret again, it catches up.
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cluster.node_mut(3).restart_with(&args);
    cluster.wait_caught_up(&cluster.ids(), Duration::from_secs(60));
    assert_numbered(cluster.node(3), 0..150);
}
