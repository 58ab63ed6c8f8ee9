//! Connection and server commands tools send, against redis-server 7.0
//! where the answers are deterministic: RESET, CLIENT REPLY/NO-EVICT/
//! TRACKING/PAUSE/UNPAUSE/KILL (their errors, and what they do), TIME,
//! LASTSAVE, SLOWLOG (real entries) and LATENCY with monitoring off.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use elastickv_integration::diff::{pair, run_script};
use elastickv_integration::{Cluster, RawClient};

const SCRIPT: &[&str] = &[
    "CLIENT REPLY bad",
    "CLIENT REPLY ON",
    "CLIENT NO-EVICT on",
    "CLIENT NO-EVICT off",
    "CLIENT NO-EVICT x",
    "CLIENT TRACKING off",
    "CLIENT TRACKING x",
    "CLIENT PAUSE x",
    "CLIENT PAUSE -1",
    "CLIENT PAUSE 10 x",
    "CLIENT PAUSE 0 WRITE",
    "CLIENT PAUSE 0",
    "CLIENT UNPAUSE",
    "CLIENT KILL 1.2.3.4:5",
    "CLIENT KILL ID x",
    "CLIENT KILL ID 0",
    "CLIENT KILL TYPE foo",
    "CLIENT KILL USER bob",
    "CLIENT KILL SKIPME maybe",
    "CLIENT KILL ID 99999",
    "CLIENT KILL TYPE pubsub",
    "CLIENT KILL BOGUS 1",
    "CLIENT KILL ID 1 BOGUS",
    "MULTI",
    "SET k v",
    "RESET",
    "EXEC",
    "GET k",
    "SLOWLOG GET -2",
    "SLOWLOG GET x",
    "SLOWLOG GET -1 2",
    "SLOWLOG RESET",
    "SLOWLOG LEN",
    "SLOWLOG HELP",
    "LATENCY LATEST",
    "LATENCY HISTORY command",
    "LATENCY RESET",
    "LATENCY GRAPH command",
    "LATENCY DOCTOR",
    "LATENCY HELP",
    "CONFIG SET slowlog-max-len x",
    // One at a time: Redis lists parameters in hash-table order.
    "CONFIG GET slowlog-max-len",
    "CONFIG GET slowlog-log-slower-than",
    "CONFIG GET protected-mode",
    "CONFIG GET tls-port",
    "CONFIG GET tls-cluster",
    "CONFIG GET tls-auth-clients",
    "CONFIG GET maxmemory",
    "CONFIG SET slowlog-max-len 64",
    "CONFIG GET slowlog-max-len",
    "CONFIG SET slowlog-max-len 128",
    "TIME 1",
    "LASTSAVE 1",
    // One node, no replicas: 0, at once or after the timeout.
    "WAIT 0 0",
    "WAIT 1 20",
    "WAIT -1 0",
    "WAIT x 0",
    "WAIT 0 x",
    "WAIT 0 -1",
    "MEMORY USAGE nosuch",
    "MEMORY USAGE nosuch SAMPLES 0",
    "SET mk v",
    "MEMORY USAGE mk SAMPLES -1",
    "MEMORY USAGE mk SAMPLES x",
    "MEMORY USAGE mk BOGUS",
    "MEMORY USAGE",
    "MEMORY HELP",
];

#[test]
fn server_commands_match_redis() {
    let (_dir, node, redis) = pair("1");
    run_script(&mut redis.raw(), &mut node.raw(), SCRIPT);
}

#[test]
fn server_commands_match_redis_over_resp3() {
    let (_dir, node, redis) = pair("4");
    let (mut r, mut e) = (redis.raw(), node.raw());
    r.call(&["HELLO", "3"]);
    e.call(&["HELLO", "3"]);
    run_script(&mut r, &mut e, SCRIPT);
    // RESET goes back to RESP2.
    assert_eq!(r.call(&["RESET"]), e.call(&["RESET"]));
    assert_eq!(
        r.call(&["HGETALL", "nosuch"]),
        e.call(&["HGETALL", "nosuch"])
    );
}

/// Replies sent in one pipeline, then every reply read: CLIENT REPLY OFF
/// and SKIP drop exactly the replies Redis drops.
#[test]
fn client_reply_drops_what_redis_drops() {
    let (_dir, node, redis) = pair("4");
    let lines: &[&[&str]] = &[
        &["CLIENT", "REPLY", "OFF"],
        &["SET", "a", "1"],
        &["GET", "a"],
        &["NOSUCH"],
        &["CLIENT", "REPLY", "SKIP"],
        &["CLIENT", "REPLY", "ON"],
        &["GET", "a"],
        &["CLIENT", "REPLY", "SKIP"],
        &["GET", "a"],
        &["INCR", "a"],
        &["CLIENT", "REPLY", "SKIP"],
        &["CLIENT", "REPLY", "SKIP"],
        &["PING"],
        &["ECHO", "last"],
    ];
    let run = |client: &mut RawClient| {
        for line in lines {
            client.send(line);
        }
        // A marker: everything before it is answered by then.
        client.send(&["ECHO", "marker"]);
        let mut replies = Vec::new();
        loop {
            let reply = client.read_reply();
            let done = reply == b"$6\r\nmarker\r\n";
            replies.push(String::from_utf8_lossy(&reply).into_owned());
            if done {
                return replies;
            }
        }
    };
    assert_eq!(run(&mut redis.raw()), run(&mut node.raw()));
}

/// CLIENT PAUSE WRITE holds writes, not reads, until it ends; ALL holds
/// reads too; UNPAUSE ends a WRITE pause early.
#[test]
fn client_pause_holds_writes_until_it_ends() {
    let (_dir, node, _redis) = pair("1");
    let (mut admin, mut client) = (node.raw(), node.raw());
    assert_eq!(admin.call(&["CLIENT", "PAUSE", "500", "WRITE"]), b"+OK\r\n");
    let began = Instant::now();
    assert_eq!(client.call(&["GET", "k"]), b"$-1\r\n");
    assert!(
        began.elapsed() < Duration::from_millis(400),
        "a read was held"
    );
    assert_eq!(client.call(&["SET", "k", "v"]), b"+OK\r\n");
    assert!(
        began.elapsed() >= Duration::from_millis(450),
        "a write ran during the pause"
    );
    assert_eq!(admin.call(&["CLIENT", "PAUSE", "300", "ALL"]), b"+OK\r\n");
    let began = Instant::now();
    assert_eq!(client.call(&["GET", "k"]), b"$1\r\nv\r\n");
    assert!(
        began.elapsed() >= Duration::from_millis(250),
        "a read ran during PAUSE ALL"
    );
    assert_eq!(
        admin.call(&["CLIENT", "PAUSE", "60000", "WRITE"]),
        b"+OK\r\n"
    );
    client.send(&["SET", "k", "w"]);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(admin.call(&["CLIENT", "UNPAUSE"]), b"+OK\r\n");
    assert_eq!(client.read_reply(), b"+OK\r\n");
    assert_eq!(admin.call(&["GET", "k"]), b"$1\r\nw\r\n");
}

/// CLIENT KILL closes the connections it matches (by ID, by ADDR, the
/// old form) and counts them; SKIPME keeps the one asking unless told not
/// to.
#[test]
fn client_kill_closes_the_connections_it_matches() {
    let (_dir, node, _redis) = pair("1");
    let mut admin = node.raw();
    let mut victim = node.raw();
    let id = String::from_utf8(victim.call(&["CLIENT", "ID"])).unwrap();
    let id = id.trim_start_matches(':').trim().to_string();
    assert_eq!(admin.call(&["CLIENT", "KILL", "ID", &id]), b":1\r\n");
    assert!(
        victim.closed_by_server(Duration::from_secs(5)),
        "not closed"
    );
    // By address, old form: the connection's own address from CLIENT INFO.
    let mut other = node.raw();
    let info = String::from_utf8(other.call(&["CLIENT", "INFO"])).unwrap();
    let addr = info
        .split_whitespace()
        .find_map(|f| f.strip_prefix("addr="))
        .unwrap()
        .to_string();
    assert_eq!(admin.call(&["CLIENT", "KILL", &addr]), b"+OK\r\n");
    assert!(other.closed_by_server(Duration::from_secs(5)), "not closed");
    assert_eq!(
        admin.call(&["CLIENT", "KILL", &addr]),
        b"-ERR No such client\r\n"
    );
    // SKIPME yes (the default) spares the asker; no closes it after the reply.
    let mine = String::from_utf8(admin.call(&["CLIENT", "ID"])).unwrap();
    let mine = mine.trim_start_matches(':').trim().to_string();
    assert_eq!(admin.call(&["CLIENT", "KILL", "ID", &mine]), b":0\r\n");
    assert_eq!(
        admin.call(&["CLIENT", "KILL", "ID", &mine, "SKIPME", "no"]),
        b":1\r\n"
    );
    assert!(admin.closed_by_server(Duration::from_secs(5)), "not closed");
}

/// SLOWLOG keeps real entries: with the threshold at 0 every command is
/// logged, newest first, with its arguments and the client's address and
/// name; CONFIG SET changes both limits.
#[test]
fn slowlog_records_commands_with_their_client() {
    let (_dir, node, _redis) = pair("1");
    let mut c = node.raw();
    assert_eq!(
        c.call(&["CONFIG", "SET", "slowlog-log-slower-than", "0"]),
        b"+OK\r\n"
    );
    assert_eq!(c.call(&["CLIENT", "SETNAME", "logged"]), b"+OK\r\n");
    c.call(&["SET", "slow-key", "value"]);
    c.call(&["GET", "slow-key"]);
    let log = String::from_utf8(c.call(&["SLOWLOG", "GET", "2"])).unwrap();
    let lines: Vec<&str> = log.split("\r\n").collect();
    assert_eq!(lines[0], "*2", "{log}");
    // Newest first: GET, then SET.
    let get_at = log.find("$3\r\nGET\r\n$8\r\nslow-key").expect(&log);
    let set_at = log
        .find("$3\r\nSET\r\n$8\r\nslow-key\r\n$5\r\nvalue")
        .expect(&log);
    assert!(get_at < set_at, "{log}");
    assert!(log.contains("$6\r\nlogged\r\n"), "{log}");
    assert!(log.contains("127.0.0.1:"), "{log}");
    let len = String::from_utf8(c.call(&["SLOWLOG", "LEN"])).unwrap();
    assert!(len.trim_start_matches(':').trim().parse::<u64>().unwrap() >= 3);
    assert_eq!(
        c.call(&["CONFIG", "SET", "slowlog-max-len", "1"]),
        b"+OK\r\n"
    );
    assert_eq!(c.call(&["SLOWLOG", "LEN"]), b":1\r\n");
    assert_eq!(
        c.call(&["CONFIG", "SET", "slowlog-log-slower-than", "-1"]),
        b"+OK\r\n"
    );
    assert_eq!(c.call(&["SLOWLOG", "RESET"]), b"+OK\r\n");
    c.call(&["SET", "k", "v"]);
    assert_eq!(c.call(&["SLOWLOG", "LEN"]), b":0\r\n");
}

/// TIME and LASTSAVE have Redis's shapes and sensible values.
#[test]
fn time_and_lastsave_are_sensible() {
    let (_dir, node, _redis) = pair("1");
    let mut c = node.raw();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let time = String::from_utf8(c.call(&["TIME"])).unwrap();
    let parts: Vec<&str> = time.split("\r\n").collect();
    assert_eq!(parts[0], "*2", "{time}");
    let secs: u64 = parts[2].parse().unwrap();
    let micros: u64 = parts[4].parse().unwrap();
    assert!(secs.abs_diff(now) <= 2 && micros < 1_000_000, "{time}");
    let last = String::from_utf8(c.call(&["LASTSAVE"])).unwrap();
    let last: u64 = last.trim_start_matches(':').trim().parse().unwrap();
    assert!(last <= now + 1 && now - last < 600, "{last} vs {now}");
}

/// WAIT on a 3-node cluster: every acknowledged write is on a majority,
/// so one replica holds it at once.
#[test]
fn wait_counts_replicas_on_a_cluster() {
    let cluster = Cluster::start(3, 2, &[], &[]);
    let ids = cluster.ids();
    cluster.wait_for_leaders(&ids, Duration::from_secs(30));
    let mut c = cluster.node(ids[0]).raw();
    assert_eq!(c.call(&["SET", "k", "v"]), b"+OK\r\n");
    let began = Instant::now();
    // One replica at least at once; both when this node leads every
    // shard and both followers have caught up.
    let reply = String::from_utf8(c.call(&["WAIT", "1", "0"])).unwrap();
    assert!(reply == ":1\r\n" || reply == ":2\r\n", "{reply}");
    assert!(began.elapsed() < Duration::from_secs(2));
    // More replicas than there are: the timeout ends the wait.
    let began = Instant::now();
    let reply = String::from_utf8(c.call(&["WAIT", "5", "300"])).unwrap();
    assert!(reply == ":1\r\n" || reply == ":2\r\n", "{reply}");
    assert!(began.elapsed() >= Duration::from_millis(300));
}

/// MEMORY USAGE estimates what a key takes here: more for more data, and
/// a collection by sampling its members.
#[test]
fn memory_usage_grows_with_the_data() {
    let (_dir, node, _redis) = pair("1");
    let mut c = node.raw();
    let usage = |c: &mut RawClient, key: &str, extra: &[&str]| -> i64 {
        let mut cmd = vec!["MEMORY", "USAGE", key];
        cmd.extend_from_slice(extra);
        let reply = String::from_utf8(c.call(&cmd)).unwrap();
        reply.trim_start_matches(':').trim().parse().expect(&reply)
    };
    c.call(&["SET", "small", "x"]);
    c.call(&["SET", "large", &"x".repeat(10_000)]);
    assert!(usage(&mut c, "large", &[]) > usage(&mut c, "small", &[]) + 9_000);
    for i in 0..200 {
        c.call(&["HSET", "h", &format!("field{i}"), &"v".repeat(50)]);
    }
    let sampled = usage(&mut c, "h", &[]);
    let whole = usage(&mut c, "h", &["SAMPLES", "0"]);
    assert!(sampled > 200 * 50 && whole > 200 * 50, "{sampled} {whole}");
}

/// CLIENT LIST shows a client inside MULTI as Redis does: flag `x` and the
/// number of commands queued.
#[test]
fn client_list_shows_queued_transactions() {
    let (_dir, node, _redis) = pair("1");
    let mut queuing = node.raw();
    assert_eq!(queuing.call(&["CLIENT", "SETNAME", "queuing"]), b"+OK\r\n");
    assert_eq!(queuing.call(&["MULTI"]), b"+OK\r\n");
    assert_eq!(queuing.call(&["SET", "a", "1"]), b"+QUEUED\r\n");
    assert_eq!(queuing.call(&["INCR", "b"]), b"+QUEUED\r\n");
    let list = String::from_utf8(node.raw().call(&["CLIENT", "LIST"])).unwrap();
    let line = list
        .lines()
        .find(|l| l.contains("name=queuing"))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(
        line.contains(" flags=x ") && line.contains(" multi=2 "),
        "{line}"
    );
    queuing.call(&["EXEC"]);
    let list = String::from_utf8(node.raw().call(&["CLIENT", "LIST"])).unwrap();
    let line = list.lines().find(|l| l.contains("name=queuing")).unwrap();
    assert!(
        line.contains(" flags=N ") && line.contains(" multi=-1 "),
        "{line}"
    );
}
