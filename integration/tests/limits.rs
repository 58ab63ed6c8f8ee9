//! The write guard: past `--maxmemory` of stored data, or below
//! `--min-free-disk-bytes` of free disk, writes get Redis's -OOM error
//! while reads, deletions and the node itself keep working.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use elastickv_integration::{Node, flood_keeping_reader_up};

const OOM_MAXMEMORY: &[u8] = b"-OOM command not allowed when used memory > 'maxmemory'.\r\n";

#[test]
fn writes_past_maxmemory_get_oom_while_reads_and_deletes_work() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(
        &dir.path().join("data"),
        &["--maxmemory", "20000000", "--shards", "1"],
    );
    let mut c = node.raw();
    // A transaction queued while writes are still accepted.
    let mut tx = node.raw();
    assert_eq!(tx.call(&["MULTI"]), b"+OK\r\n");
    assert_eq!(tx.call(&["SET", "queued", "v"]), b"+QUEUED\r\n");
    let value = "v".repeat(100_000);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut written = 0;
    let refused = loop {
        let reply = c.call(&["SET", &format!("key:{written}"), &value]);
        if reply != b"+OK\r\n" {
            break reply;
        }
        written += 1;
        assert!(
            Instant::now() < deadline,
            "{written} writes of 100 kB, none refused"
        );
        // The guard samples a few times a second.
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        String::from_utf8_lossy(&refused),
        String::from_utf8_lossy(OOM_MAXMEMORY)
    );
    // Accepted first, then refused. (How many fit depends on how RocksDB
    // sizes its memtables' arenas, which the guard counts: a few MB even
    // for little data.)
    assert!(written >= 1, "the first write was refused");
    // EXEC of a transaction with writes is refused whole (as Redis does).
    assert_eq!(
        String::from_utf8_lossy(&tx.call(&["EXEC"])),
        "-EXECABORT Transaction discarded because of: OOM command not allowed when used memory \
         > 'maxmemory'.\r\n"
    );
    assert_eq!(tx.call(&["GET", "queued"]), b"$-1\r\n");
    // Every denyoom command is refused, and whatever MULTI would queue.
    assert_eq!(c.call(&["RPUSH", "list", "x"]), OOM_MAXMEMORY);
    assert_eq!(c.call(&["MULTI"]), b"+OK\r\n");
    assert_eq!(c.call(&["GET", "key:0"]), OOM_MAXMEMORY);
    assert_eq!(c.call(&["DISCARD"]), b"+OK\r\n");
    // Reads and deletions go on.
    assert_eq!(c.call(&["STRLEN", "key:0"]), b":100000\r\n");
    assert_eq!(c.call(&["DEL", "key:0"]), b":1\r\n");
    assert_eq!(
        c.call(&["CONFIG", "GET", "maxmemory"]),
        b"*2\r\n$9\r\nmaxmemory\r\n$8\r\n20000000\r\n"
    );
}

#[test]
fn writes_are_refused_before_the_disk_fills() {
    let dir = tempfile::tempdir().unwrap();
    // More free space than any disk has: the guard is already closed.
    let node = Node::start(
        &dir.path().join("data"),
        &["--min-free-disk-bytes", "1000000000000000000"],
    );
    let mut c = node.raw();
    let deadline = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let reply = c.call(&["SET", "k", "v"]);
        if reply != b"+OK\r\n" {
            break reply;
        }
        assert!(Instant::now() < deadline, "writes still accepted");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        refused.starts_with(b"-OOM "),
        "{}",
        String::from_utf8_lossy(&refused)
    );
    assert!(String::from_utf8_lossy(&refused).contains("disk"));
    assert_eq!(c.call(&["GET", "k"]).first(), Some(&b'$'));
    assert_eq!(c.call(&["PING"]), b"+PONG\r\n");
    assert!(
        node.log_text().contains("disk is nearly full"),
        "{}",
        node.log_text()
    );
}

/// A subscriber that does not read is disconnected once the configured
/// bytes wait for it; another one keeps receiving every message.
#[test]
fn a_subscriber_past_its_output_buffer_limit_is_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        "client_output_buffer_limit_pubsub_bytes = 2000000\n",
    )
    .unwrap();
    let node = Node::start(
        &dir.path().join("data"),
        &["--config", &config.display().to_string()],
    );
    let mut stalled = node.raw();
    stalled.call(&["SUBSCRIBE", "flood"]);
    let mut reader = node.raw();
    reader.call(&["SUBSCRIBE", "flood"]);
    reader.set_read_timeout(Duration::from_secs(30));
    let mut publisher = node.raw();
    assert_eq!(
        publisher.call(&["CONFIG", "GET", "client-output-buffer-limit"]),
        b"*2\r\n$26\r\nclient-output-buffer-limit\r\n$43\r\nnormal 0 0 0 slave 0 0 0 pubsub 2000000 0 0\r\n"
            .to_vec()
    );
    // The reader lags by up to 200 messages (800 kB), well under the
    // limit; the stalled one falls behind by all 24 MB, well over it and
    // the kernel's socket buffers.
    let payload = "x".repeat(4096);
    flood_keeping_reader_up(&mut publisher, &mut reader, "flood", &payload, 6000);
    assert_eq!(
        publisher.call(&["PUBSUB", "NUMSUB", "flood"]),
        b"*2\r\n$5\r\nflood\r\n:1\r\n".to_vec(),
        "the stalled subscriber is still there"
    );
}
