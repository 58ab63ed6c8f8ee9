//! Bad input: protocol errors are answered like Redis and close the
//! connection; nothing a client sends brings the node down.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;

use elastickv_integration::{Node, RawClient};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn node() -> (tempfile::TempDir, Node) {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir.path().join("data"), &[]);
    (dir, node)
}

fn send_and_drain(node: &Node, bytes: &[u8]) -> Vec<u8> {
    let mut raw = node.raw();
    raw.send_raw(bytes).unwrap();
    raw.read_to_close()
}

#[test]
fn protocol_errors_reply_then_close() {
    let (_dir, node) = node();
    let cases: &[(&[u8], &[u8])] = &[
        (
            b"*1\r\n:5\r\n",
            b"-ERR Protocol error: expected '$', got ':'\r\n",
        ),
        (
            b"*x\r\n",
            b"-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*1\r\n$-1\r\n",
            b"-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"SET \"a b\r\n",
            b"-ERR Protocol error: unbalanced quotes in request\r\n",
        ),
        // Commands before the bad one are still answered.
        (
            b"PING\r\n*1\r\n$4\r\nPING\r\n*1\r\n:1\r\n",
            b"+PONG\r\n+PONG\r\n-ERR Protocol error: expected '$', got ':'\r\n",
        ),
        // A bulk string over 512 MB is refused from its header alone.
        (
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$536870913\r\n",
            b"-ERR Protocol error: invalid bulk length\r\n",
        ),
    ];
    for (input, expected) in cases {
        let got = send_and_drain(&node, input);
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(expected),
            "input {:?}",
            String::from_utf8_lossy(input)
        );
    }
    // An overlong header line without CRLF.
    let mut long = b"*1".to_vec();
    long.extend(std::iter::repeat_n(b'1', 70 * 1024));
    assert_eq!(
        send_and_drain(&node, &long),
        b"-ERR Protocol error: too big mbulk count string\r\n"
    );
    let long = vec![b'a'; 70 * 1024];
    assert_eq!(
        send_and_drain(&node, &long),
        b"-ERR Protocol error: too big inline request\r\n"
    );
    assert_eq!(node.raw().call(&["PING"]), b"+PONG\r\n");
}

#[test]
fn inline_commands_and_large_values() {
    let (_dir, node) = node();
    let mut raw = node.raw();
    raw.send_raw(b"SET greeting \"hello world\"\r\nGET greeting\r\n")
        .unwrap();
    assert_eq!(raw.read_reply(), b"+OK\r\n");
    assert_eq!(raw.read_reply(), b"$11\r\nhello world\r\n");
    let big = vec![b'x'; 4 << 20];
    assert_eq!(raw.call(&[&b"SET"[..], b"big", &big]), b"+OK\r\n");
    let reply = raw.call(&["GET", "big"]);
    assert_eq!(reply.len(), big.len() + 12);
    assert_eq!(raw.call(&["STRLEN", "big"]), b":4194304\r\n");
}

/// Random bytes, random valid-looking fragments and abrupt disconnects on
/// many connections; the node keeps serving.
#[test]
fn garbage_never_brings_the_node_down() {
    let (_dir, node) = node();
    let mut rng = StdRng::seed_from_u64(42);
    let fragments: &[&[u8]] = &[
        b"*",
        b"$",
        b"\r\n",
        b"*2\r\n",
        b"$3\r\nGET\r\n",
        b"$-5\r\n",
        b"*-1\r\n",
        b"\"",
        b"'",
        b"*1\r\n$4\r\nPING\r\n",
        b"\0",
        b"*999999999\r\n",
        b"$99999999999\r\n",
        b"SET a b\r\n",
        b"HELLO 3\r\n",
        b"\xff\xfe",
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n",
    ];
    for _ in 0..300 {
        let mut input = Vec::new();
        for _ in 0..rng.gen_range(1..20) {
            if rng.gen_bool(0.3) {
                let n = rng.gen_range(1..64);
                input.extend((0..n).map(|_| rng.r#gen::<u8>()));
            } else {
                input.extend_from_slice(fragments[rng.gen_range(0..fragments.len())]);
            }
        }
        let Ok(mut raw) = RawClient::connect(node.port) else {
            panic!("node stopped accepting connections")
        };
        // Garbage may leave the connection waiting for more bytes forever;
        // don't wait long for a close that isn't coming.
        raw.set_read_timeout(std::time::Duration::from_millis(100));
        let _ = raw.send_raw(&input);
        // Sometimes hang up at once, sometimes read what comes back.
        if rng.gen_bool(0.5) {
            let _ = raw.send_raw(b"\r\nQUIT\r\n");
            let _ = raw.read_to_close();
        }
    }
    let mut raw = node.raw();
    assert_eq!(raw.call(&["PING"]), b"+PONG\r\n");
    assert_eq!(raw.call(&["SET", "still", "here"]), b"+OK\r\n");
    assert!(!node.log_text().contains("panicked"), "{}", node.log_text());
}

#[test]
fn quit_closes_after_ok() {
    let (_dir, node) = node();
    let mut raw = node.raw();
    raw.send_raw(b"*1\r\n$4\r\nQUIT\r\n*1\r\n$4\r\nPING\r\n")
        .unwrap();
    assert_eq!(raw.read_to_close(), b"+OK\r\n");
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", node.port)).unwrap();
    stream.write_all(b"PING\r\n").unwrap();
}

#[test]
fn requirepass_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir.path().join("data"), &["--requirepass", "s3cret"]);
    let mut raw = node.raw();
    assert_eq!(
        raw.call(&["GET", "k"]),
        b"-NOAUTH Authentication required.\r\n"
    );
    assert_eq!(
        raw.call(&["NOSUCH"]),
        b"-ERR unknown command 'NOSUCH', with args beginning with: \r\n"
    );
    assert_eq!(
        raw.call(&["AUTH", "wrong"]),
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(raw.call(&["AUTH", "s3cret"]), b"+OK\r\n");
    assert_eq!(raw.call(&["GET", "k"]), b"$-1\r\n");
    // Unauthenticated clients cannot send huge requests.
    let mut other = node.raw();
    other.send_raw(b"*20\r\n").unwrap();
    assert_eq!(
        other.read_to_close(),
        b"-ERR Protocol error: unauthenticated multibulk length\r\n"
    );
}
