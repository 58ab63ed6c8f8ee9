//! The Prometheus endpoint: after some traffic, the families the README
//! documents are there, with values that follow the traffic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use elastickv_integration::cluster::Cluster;
use elastickv_integration::{Node, free_port, scrape_metrics};

/// The value of the first sample line starting with `prefix`.
fn value(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn metrics_follow_the_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let metrics_port = free_port();
    let addr = format!("127.0.0.1:{metrics_port}");
    let node = Node::start(
        &dir.path().join("data"),
        &["--shards", "2", "--metrics-addr", &addr],
    );
    let mut c = node.raw();
    for i in 0..50 {
        c.call(&["SET", &format!("k{i}"), "v"]);
    }
    c.call(&["GET", "k1"]);
    c.call(&["INCR", "k1"]);
    let started = Instant::now();
    let text = loop {
        let text = scrape_metrics(metrics_port);
        if text.contains("elastickv_rocksdb_sst_bytes")
            || started.elapsed() > Duration::from_secs(10)
        {
            break text;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let at_least = |prefix: &str, min: f64| {
        let v = value(&text, prefix).unwrap_or_else(|| panic!("no {prefix} in:\n{text}"));
        assert!(v >= min, "{prefix} is {v}, expected at least {min}");
    };
    at_least("elastickv_commands_total{command=\"set\"}", 50.0);
    at_least("elastickv_command_errors_total{command=\"incr\"}", 1.0);
    at_least(
        "elastickv_command_duration_seconds_count{command=\"set\"}",
        50.0,
    );
    at_least("elastickv_connected_clients", 1.0);
    at_least("elastickv_raft_role{shard=\"0\"}", 2.0);
    at_least("elastickv_raft_term{shard=\"1\"}", 1.0);
    at_least("elastickv_raft_applied_index{shard=\"0\"}", 1.0);
    at_least("elastickv_raft_proposals_total{shard=", 1.0);
    at_least("elastickv_raft_proposal_apply_seconds_count{shard=", 1.0);
    at_least("elastickv_raft_log_write_seconds_count{sync=\"true\"}", 1.0);
    at_least("elastickv_raft_ready_rounds_total{shard=\"0\"}", 1.0);
    at_least("elastickv_rocksdb_sst_bytes{cf=\"sub\"}", 0.0);
    at_least("elastickv_rocksdb_memtable_bytes{cf=\"raft_log\"}", 1.0);
}

/// In a cluster, the transport counts what it sends per peer and per
/// shard: every shard's leader sends MsgAppend to both of its followers.
#[test]
fn transport_counters_are_per_shard_and_peer() {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let cluster = Cluster::start_with(
        3,
        2,
        &|id| {
            vec![
                "--metrics-addr".to_string(),
                format!("127.0.0.1:{}", ports[(id - 1) as usize]),
            ]
        },
        &|_| Vec::new(),
    );
    let mut c = cluster.node(1).raw();
    for i in 0..100 {
        c.call(&["SET", &format!("key:{i}"), "v"]);
    }
    // Appends per (shard, peer), summed over the senders.
    let appends = |shard: u32, peer: u64| -> f64 {
        ports
            .iter()
            .map(|&port| {
                scrape_metrics(port)
                    .lines()
                    .filter(|l| l.starts_with("elastickv_transport_append_messages_total{"))
                    .filter(|l| {
                        l.contains(&format!("shard=\"{shard}\""))
                            && l.contains(&format!("peer=\"{peer}\""))
                    })
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .sum::<f64>()
            })
            .sum()
    };
    for shard in 0..2 {
        let leader = cluster
            .leader_of(shard, &[1, 2, 3])
            .expect("every shard has a leader");
        for peer in (1..=3).filter(|&p| p != leader) {
            assert!(
                appends(shard, peer) >= 1.0,
                "no MsgAppend counted for shard {shard} to node {peer}"
            );
        }
    }
}
