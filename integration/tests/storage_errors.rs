//! A storage error is fatal for the node, on purpose: a replica that
//! cannot apply its log faithfully cannot be trusted to follow it (raft-rs
//! treats storage errors the same way). The node logs one ERROR line naming
//! the shard and the error, and exits non-zero; reads of a damaged record
//! are refused without stopping anything.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use elastickv_integration::Node;
use elastickv_store::{Store, StoreOptions};

#[test]
fn a_storage_error_while_applying_stops_the_node_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut node = Node::start(&data, &["--shards", "1"]);
    let mut raw = node.raw();
    assert_eq!(raw.call(&["SET", "k", "v"]), b"+OK\r\n");
    assert_eq!(raw.call(&["SET", "other", "x"]), b"+OK\r\n");
    assert!(node.terminate().success());

    // The disk returns garbage for one key's record.
    {
        let store = Store::open(&data.join("rocksdb"), &StoreOptions::default()).unwrap();
        let state = store.load_apply_state(0).unwrap();
        let mut batch = store.apply_batch(0, state);
        let slot = elastickv_router::slot_for_key(b"k");
        batch
            .put_meta(slot, b"k", b"\xff\xfe not a record".to_vec())
            .unwrap();
        batch.commit().unwrap();
    }
    node.restart();
    let mut raw = node.raw();
    // A read of it is refused; the node keeps serving.
    let reply = raw.call(&["GET", "k"]);
    assert!(
        reply.starts_with(b"-ERR"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    assert_eq!(raw.call(&["GET", "other"]), b"$1\r\nx\r\n");
    // A write that must read it cannot be applied: the node stops.
    raw.set_read_timeout(Duration::from_secs(10));
    raw.send(&["APPEND", "k", "more"]);
    let status = node
        .wait_exit(Duration::from_secs(20))
        .expect("the node exits after a storage error");
    assert!(!status.success(), "exit status {status}");
    let log = node.log_text();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains(" ERROR ")).collect();
    assert_eq!(errors.len(), 1, "exactly one ERROR line:\n{log}");
    eprintln!("{}", errors[0]);
    assert!(
        errors[0].contains("shard 0") && errors[0].contains("corrupt"),
        "{}",
        errors[0]
    );
}
