//! Start-up: bad configuration, a changed shard count and a taken port
//! each stop the node with one clear line; the raft knobs from the
//! environment are logged per engine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;

use elastickv_integration::{Node, free_port, run_to_exit};

fn error_line(output: &str) -> &str {
    output
        .lines()
        .find(|l| l.starts_with("elastickv: "))
        .unwrap_or_else(|| panic!("no error line in:\n{output}"))
}

#[test]
fn bad_flags_and_config_exit_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let (status, out) = run_to_exit(&["--shards", "0", "--data-dir", data], &[]);
    assert_eq!(status.code(), Some(2));
    assert_eq!(
        error_line(&out),
        "elastickv: invalid shards: 0 is out of range; accepted: 1..=1024"
    );

    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "shards = 4\nredis_port = 1\n").unwrap();
    let (status, out) = run_to_exit(&["--config", config.to_str().unwrap()], &[]);
    assert_eq!(status.code(), Some(2));
    let line = error_line(&out);
    assert!(
        line.contains("line 2") && line.contains("unknown field `redis_port`"),
        "{line}"
    );

    let (status, out) = run_to_exit(&["--config", "/nonexistent.toml"], &[]);
    assert_eq!(status.code(), Some(2));
    assert!(error_line(&out).starts_with("elastickv: cannot read config file /nonexistent.toml"));
}

#[test]
fn changing_the_shard_count_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut node = Node::start(&data, &["--shards", "4"]);
    assert_eq!(node.raw().call(&["SET", "k", "v"]), b"+OK\r\n");
    assert_eq!(node.terminate().code(), Some(0));

    let port = free_port().to_string();
    let (status, out) = run_to_exit(
        &[
            "--shards",
            "8",
            "--data-dir",
            data.to_str().unwrap(),
            "--redis-addr",
            &format!("127.0.0.1:{port}"),
        ],
        &[],
    );
    assert_eq!(status.code(), Some(1));
    let line = error_line(&out);
    assert!(
        line.contains("was created with 4 shards but 8 were requested"),
        "{line}"
    );
    // The data is untouched: the original layout still starts and reads it.
    node.restart();
    assert_eq!(node.raw().call(&["GET", "k"]), b"$1\r\nv\r\n");
}

#[test]
fn a_taken_port_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (status, out) = run_to_exit(
        &[
            "--redis-addr",
            &addr,
            "--data-dir",
            dir.path().join("data").to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(status.code(), Some(1));
    let line = error_line(&out);
    assert!(
        line.starts_with(&format!(
            "elastickv: cannot listen on {addr} for Redis clients"
        )),
        "{line}"
    );
}

#[test]
fn raft_limits_from_the_environment_are_logged_per_engine() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start_with_env(
        &dir.path().join("data"),
        &["--shards", "3"],
        &[
            ("ELASTICKV_RAFT_MAX_INFLIGHT_MSGS", "-7"),
            ("ELASTICKV_RAFT_MAX_SIZE_PER_MSG", "1048576"),
        ],
    );
    let log = node.log_text();
    let warns: Vec<&str> = log.lines().filter(|l| l.contains(" WARN ")).collect();
    assert_eq!(warns.len(), 3, "one WARN per engine:\n{log}");
    for w in &warns {
        assert!(
            w.contains("ELASTICKV_RAFT_MAX_INFLIGHT_MSGS") && w.contains("\"-7\""),
            "{w}"
        );
        assert!(w.contains("using the default 512"), "{w}");
    }
    let infos: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("flow-control limits resolved"))
        .collect();
    assert_eq!(infos.len(), 3, "{log}");
    for (shard, line) in infos.iter().enumerate() {
        for field in [
            format!("shard_id={shard}"),
            "local_id=1".into(),
            "max_inflight_msgs=512".into(),
            "max_inflight_msgs_source=default".into(),
            "max_size_per_msg_bytes=1048576".into(),
            "max_size_per_msg_source=env".into(),
            "max_committed_size_per_ready_bytes=1048576".into(),
        ] {
            assert!(line.contains(&field), "missing {field}: {line}");
        }
    }
}
