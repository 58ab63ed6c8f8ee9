//! TLS: redis-cli and redis-py connect to the TLS port with certificates
//! of the node's CA (and are refused without one, or with another CA's);
//! SIGHUP reloads renewed files; the plaintext port can be off; a cluster
//! runs over mutual TLS, `elastickv ctl` presents a certificate too, and a
//! node whose certificate comes from another CA takes no part.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use elastickv_integration::pki::{Issued, Pki};
use elastickv_integration::{
    Cluster, Node, assert_numbered, elastickv_bin, free_port, run_python, write_numbered,
};

/// `redis-cli --tls` against `port` with `ca` to check the server and
/// `cert` to present (if any): whether it worked, and what it printed.
fn redis_cli_tls(port: u16, ca: &str, cert: Option<&Issued>, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new("redis-cli");
    cmd.args(["--tls", "--cacert", ca, "-p", &port.to_string()]);
    if let Some(cert) = cert {
        cmd.args(["--cert", &cert.cert, "--key", &cert.key]);
    }
    let out = cmd
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("redis-cli");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // redis-cli exits 0 after printing an error reply or a failed
    // connection in some versions: judge by what it printed too.
    let ok = out.status.success()
        && !text.contains("Could not")
        && !text.contains("Error")
        && !text.contains("ERR");
    (ok, text.trim().to_string())
}

#[test]
fn clients_connect_over_tls_with_certificates_of_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("pki"), "ca");
    let node_cert = pki.issue("node");
    let client = pki.issue("client");
    let other = Pki::new(&dir.path().join("other"), "otherca");
    let stranger = other.issue("stranger");
    let tls_port = free_port();
    let ca = pki.ca();
    let mut node = Node::start(
        &dir.path().join("data"),
        &[
            "--tls-port",
            &tls_port.to_string(),
            "--tls-cert-file",
            &node_cert.cert,
            "--tls-key-file",
            &node_cert.key,
            "--tls-ca-cert-file",
            &ca,
        ],
    );

    let (ok, out) = redis_cli_tls(tls_port, &ca, Some(&client), &["SET", "k", "over tls"]);
    assert!(ok && out == "OK", "{out}");
    let (ok, out) = redis_cli_tls(tls_port, &ca, Some(&client), &["GET", "k"]);
    assert!(ok && out == "over tls", "{out}");
    // tls-auth-clients yes (the default): no certificate, or one from
    // another CA, is refused; so is a server checked against another CA.
    let (ok, out) = redis_cli_tls(tls_port, &ca, None, &["PING"]);
    assert!(!ok, "no client certificate, yet: {out}");
    let (ok, out) = redis_cli_tls(tls_port, &ca, Some(&stranger), &["PING"]);
    assert!(!ok, "another CA's certificate, yet: {out}");
    let (ok, out) = redis_cli_tls(tls_port, &other.ca(), Some(&client), &["PING"]);
    assert!(!ok, "the node's certificate passed for another CA's: {out}");
    // The plaintext port still serves.
    assert_eq!(node.raw().call(&["GET", "k"]), b"$8\r\nover tls\r\n");

    // redis-py over TLS.
    let script = format!(
        r#"
import redis
r = redis.Redis(host="127.0.0.1", port={tls_port}, ssl=True, ssl_ca_certs="{ca}",
                ssl_certfile="{cert}", ssl_keyfile="{key}", decode_responses=True)
assert r.get("k") == "over tls"
r.hset("h", mapping={{"a": "1", "b": "2"}})
assert r.hgetall("h") == {{"a": "1", "b": "2"}}
p = r.pipeline(transaction=True)
p.incr("n").incr("n")
assert p.execute() == [1, 2]
print("ok")
"#,
        cert = client.cert,
        key = client.key,
    );
    let out = run_python(&script);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok",
        "redis-py over TLS failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The node moves to the other CA: its files are replaced in place and
    // SIGHUP reloads them. New connections follow; old CA's clients fail.
    let old_ca = pki.dir.join("ca-kept.crt").display().to_string();
    std::fs::copy(&ca, &old_ca).unwrap();
    for (from, to) in [
        (other.issue("node2").cert, &node_cert.cert),
        (
            dir.path().join("other/node2.key").display().to_string(),
            &node_cert.key,
        ),
        (other.ca(), &ca),
    ] {
        std::fs::copy(&from, to).unwrap();
    }
    node.signal("HUP");
    node.wait_for_log(
        "TLS certificate, key and CA reloaded",
        Duration::from_secs(20),
    );
    let (ok, out) = redis_cli_tls(tls_port, &other.ca(), Some(&stranger), &["GET", "k"]);
    assert!(ok && out == "over tls", "{out}");
    let (ok, out) = redis_cli_tls(tls_port, &old_ca, Some(&client), &["PING"]);
    assert!(!ok, "the old CA's client still got in: {out}");

    // A broken key: the reload fails, says so, and the files in force stay.
    std::fs::write(&node_cert.key, "not a key").unwrap();
    node.signal("HUP");
    node.wait_for_log("cannot reload the TLS files", Duration::from_secs(20));
    let (ok, out) = redis_cli_tls(tls_port, &other.ca(), Some(&stranger), &["PING"]);
    assert!(ok && out == "PONG", "{out}");
    node.terminate();
}

#[test]
fn the_plaintext_port_can_be_off() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("pki"), "ca");
    let node_cert = pki.issue("node");
    let (tls_port, raft_port) = (free_port(), free_port());
    let log = std::fs::File::create(dir.path().join("node.log")).unwrap();
    let mut child = Command::new(elastickv_bin())
        .args([
            "--redis-addr",
            "127.0.0.1:0",
            "--tls-port",
            &tls_port.to_string(),
        ])
        .args(["--raft-addr", &format!("127.0.0.1:{raft_port}")])
        .args([
            "--tls-cert-file",
            &node_cert.cert,
            "--tls-key-file",
            &node_cert.key,
        ])
        .args(["--tls-ca-cert-file", &pki.ca(), "--tls-auth-clients", "no"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // tls-auth-clients no: the CA checks the server, no certificate
        // is presented.
        let (ok, out) = redis_cli_tls(tls_port, &pki.ca(), None, &["PING"]);
        if ok && out == "PONG" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no TLS PONG: {out}\n{}",
            std::fs::read_to_string(dir.path().join("node.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (ok, out) = redis_cli_tls(tls_port, &pki.ca(), None, &["INFO", "server"]);
    assert!(ok && out.contains("tcp_port:0"), "{out}");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_cluster_runs_over_mutual_tls_and_refuses_a_node_of_another_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("pki"), "ca");
    let certs: Vec<Issued> = (1..=3).map(|n| pki.issue(&format!("node{n}"))).collect();
    let operator = pki.issue("operator");
    let other = Pki::new(&dir.path().join("other"), "otherca");
    let stranger = other.issue("stranger");
    let ca = pki.ca();
    let tls_args = |cert: &Issued, ca: &str| -> Vec<String> {
        [
            "--tls-cluster",
            "yes",
            "--tls-cert-file",
            &cert.cert,
            "--tls-key-file",
            &cert.key,
            "--tls-ca-cert-file",
            ca,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let mut cluster = Cluster::start_with(
        3,
        2,
        &|id| tls_args(&certs[(id - 1) as usize], &ca),
        &|_| Vec::new(),
    );
    for id in 1..=3u64 {
        write_numbered(cluster.node(id), id * 100..id * 100 + 30);
    }
    cluster.wait_caught_up(&cluster.ids(), Duration::from_secs(30));
    for id in 1..=3u64 {
        assert_numbered(cluster.node(3), id * 100..id * 100 + 30);
    }

    // ctl: without a certificate it cannot even connect; with one of the
    // CA it is served.
    let (ok, output) = cluster.node(1).ctl(&["status"]);
    assert!(!ok, "{output}");
    let with_cert = [
        "--tls-cert-file",
        operator.cert.as_str(),
        "--tls-key-file",
        operator.key.as_str(),
        "--tls-ca-cert-file",
        ca.as_str(),
    ];
    let mut args = with_cert.to_vec();
    args.push("status");
    let (ok, output) = cluster.node(1).ctl(&args);
    assert!(ok && output.contains("leader"), "{output}");

    // Node 3 comes back with another CA's certificate (and trusting only
    // that CA): it neither leads nor applies anything new.
    let usual = cluster.node(3).args();
    let mut swapped: Vec<String> = usual
        .iter()
        .take_while(|a| *a != "--tls-cluster")
        .cloned()
        .collect();
    swapped.extend(tls_args(&stranger, &other.ca()));
    let swapped: Vec<&str> = swapped.iter().map(String::as_str).collect();
    cluster.node_mut(3).restart_with(&swapped);
    write_numbered(cluster.node(1), 1000..1100);
    assert_numbered(cluster.node(2), 1000..1100);
    cluster
        .node(3)
        .wait_for_log("TLS handshake failed", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(2));
    let theirs = cluster.info_raft(1).unwrap();
    for (shard, reference) in cluster.info_raft(3).unwrap().iter().zip(&theirs) {
        assert!(
            shard.applied + 20 < reference.applied,
            "node 3 applied the new entries: {shard:?} vs node 1's {reference:?}"
        );
        assert_ne!(shard.role, "leader", "{shard:?}");
    }
    // Back with its own certificate, it catches up.
    let usual: Vec<&str> = usual.iter().map(String::as_str).collect();
    cluster.node_mut(3).restart_with(&usual);
    cluster.wait_caught_up(&cluster.ids(), Duration::from_secs(60));
    assert_numbered(cluster.node(3), 1000..1100);
}
