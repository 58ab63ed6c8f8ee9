//! Protected mode, compared with redis-server 7.0: with no password, a
//! client connecting from another address than loopback gets Redis's
//! DENIED error and is disconnected; loopback clients are served, and
//! `CONFIG SET protected-mode no` (from loopback), a password or
//! `--protected-mode no` let the others in.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use elastickv_integration::{RawClient, RedisOracle, elastickv_bin, free_port};

/// An address of this machine that is not loopback (connections to it
/// come from it, so a server sees a non-loopback client).
fn outside_address() -> IpAddr {
    let out = Command::new("hostname")
        .arg("-I")
        .output()
        .expect("hostname");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|a| a.parse::<IpAddr>().ok())
        .find(|a| !a.is_loopback())
        .expect("protected mode needs an address other than loopback on this machine")
}

/// What a server at `ip:port` says to a client that sends PING: everything
/// until it closes the connection or 2 s pass.
fn ping_from(ip: IpAddr, port: u16) -> Vec<u8> {
    let mut stream = TcpStream::connect((ip, port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    stream.write_all(b"*1\r\n$4\r\nPING\r\n").unwrap();
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return reply,
            Ok(n) => {
                reply.extend_from_slice(&chunk[..n]);
                if reply == b"+PONG\r\n"
                    || reply.starts_with(b"-NOAUTH") && reply.ends_with(b"\r\n")
                {
                    return reply;
                }
            }
        }
    }
}

/// An elastickv node listening on every address.
struct WideNode {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl WideNode {
    fn start(args: &[&str]) -> WideNode {
        let dir = tempfile::tempdir().unwrap();
        let (port, raft_port) = (free_port(), free_port());
        let child = Command::new(elastickv_bin())
            .args(["--redis-addr", &format!("0.0.0.0:{port}")])
            .args(["--raft-addr", &format!("127.0.0.1:{raft_port}")])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while RawClient::connect(port).is_err() {
            assert!(Instant::now() < deadline, "elastickv did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        WideNode {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for WideNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn clients_from_elsewhere_are_refused_while_no_password_is_set() {
    let outside = outside_address();
    let redis = RedisOracle::start_with(&["--bind", "0.0.0.0"]);
    let node = WideNode::start(&[]);
    let expected = ping_from(outside, redis.port);
    assert!(expected.starts_with(b"-DENIED Redis is running in protected mode"));
    assert_eq!(
        String::from_utf8_lossy(&ping_from(outside, node.port)),
        String::from_utf8_lossy(&expected)
    );
    // Loopback clients are served, and one may turn protected mode off.
    for port in [redis.port, node.port] {
        let mut local = RawClient::connect(port).unwrap();
        assert_eq!(local.call(&["PING"]), b"+PONG\r\n");
        assert_eq!(
            local.call(&["CONFIG", "GET", "protected-mode"]),
            b"*2\r\n$14\r\nprotected-mode\r\n$3\r\nyes\r\n"
        );
        let bad = local.call(&["CONFIG", "SET", "protected-mode", "maybe"]);
        assert!(bad.starts_with(b"-ERR CONFIG SET failed"), "{bad:?}");
        assert_eq!(
            local.call(&["CONFIG", "SET", "protected-mode", "no"]),
            b"+OK\r\n"
        );
        assert_eq!(ping_from(outside, port), b"+PONG\r\n");
    }
    let mut local = RawClient::connect(node.port).unwrap();
    let redis_bad =
        RawClient::connect(redis.port)
            .unwrap()
            .call(&["CONFIG", "SET", "protected-mode", "maybe"]);
    assert_eq!(
        local.call(&["CONFIG", "SET", "protected-mode", "maybe"]),
        redis_bad
    );
}

#[test]
fn a_password_or_protected_mode_no_lets_clients_from_elsewhere_in() {
    let outside = outside_address();
    let with_password = WideNode::start(&["--requirepass", "s3cret"]);
    assert_eq!(
        ping_from(outside, with_password.port),
        b"-NOAUTH Authentication required.\r\n"
    );
    let off = WideNode::start(&["--protected-mode", "no"]);
    assert_eq!(ping_from(outside, off.port), b"+PONG\r\n");
}
