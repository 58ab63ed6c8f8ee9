//! ACL users against redis-server 7.0.15: ACL SETUSER's rules and errors,
//! the descriptions ACL LIST and ACL GETUSER give back, ACL DRYRUN, AUTH
//! and HELLO AUTH as users, -NOPERM for commands, keys and channels (also
//! queued in MULTI), ACL LOG's entries; users from an ACL file, ACL SAVE
//! and ACL LOAD; deleted users' connections closed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use elastickv_integration::diff::{pair, run_script, words};
use elastickv_integration::{Node, RawClient, RedisOracle, run_to_exit};

/// Run on one connection of each server, compared reply by reply.
const SCRIPT: &[&str] = &[
    "ACL WHOAMI",
    "ACL USERS",
    "ACL LIST",
    "ACL GETUSER default",
    "ACL GETUSER nobody",
    // Rules, one kind at a time, read back.
    "ACL SETUSER alice on >alicepw ~cache:* %R~ro:* %W~wo:* &news.* +@read +set",
    "ACL GETUSER alice",
    "ACL SETUSER bob on nopass +@all -@dangerous allkeys allchannels",
    "ACL SETUSER carol on #5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8 +@hash ~h:*",
    "ACL SETUSER dave on >a >b <a +client|id +select|0 resetkeys ~d*",
    "ACL SETUSER erin reset",
    "ACL SETUSER frank on >f +get ~a* (+set ~b*) (+del ~c* &x)",
    "ACL SETUSER grace on >g nocommands +@hash -@write ~*",
    "ACL SETUSER scripter on >s +@scripting +get ~s:*",
    "ACL LIST",
    "ACL USERS",
    "ACL GETUSER frank",
    "ACL GETUSER erin",
    // Rule errors: nothing changes.
    "ACL SETUSER alice +nosuchcommand",
    "ACL SETUSER alice +@nosuchcategory",
    "ACL SETUSER alice ~* ~more",
    "ACL SETUSER bob &more",
    "ACL SETUSER alice <notapassword",
    "ACL SETUSER alice #tooshort",
    "ACL SETUSER alice +config|get|x",
    "ACL SETUSER alice +get|",
    "ACL SETUSER alice bogus",
    "ACL SETUSER alice (+get ~x",
    "ACL SETUSER 'with space'",
    "ACL SETUSER alice %X~k",
    "ACL GETUSER alice",
    // Dry runs.
    "ACL DRYRUN alice get cache:1",
    "ACL DRYRUN alice get ro:1",
    "ACL DRYRUN alice set ro:1 v",
    "ACL DRYRUN alice set wo:1 v",
    "ACL DRYRUN alice get wo:1",
    "ACL DRYRUN alice mget cache:1 other",
    "ACL DRYRUN alice del cache:1",
    "ACL DRYRUN alice publish news.1 m",
    "ACL DRYRUN alice subscribe news.1",
    "ACL DRYRUN bob flushall",
    "ACL DRYRUN bob publish anything m",
    "ACL DRYRUN dave client id",
    "ACL DRYRUN dave client kill 1.2.3.4:5",
    "ACL DRYRUN dave select 0",
    "ACL DRYRUN frank set b1 v",
    "ACL DRYRUN frank set a1 v",
    "ACL DRYRUN frank del c1",
    "ACL DRYRUN nobody get x",
    "ACL DRYRUN alice nosuchcommand",
    "ACL DRYRUN alice get",
    // Other subcommands and their errors.
    "ACL CAT",
    "ACL CAT nosuchcategory",
    "ACL GENPASS 0",
    "ACL GENPASS 5000",
    "ACL GENPASS x",
    "ACL LOG x",
    "ACL LOG 1 2",
    "ACL LOAD",
    "ACL SAVE",
    "ACL HELP",
    "ACL NOSUCH",
    "ACL DELUSER default",
    "ACL DELUSER erin nobody",
    "ACL USERS",
    // Authenticating as users.
    "AUTH alice wrong",
    "AUTH nobody x",
    "AUTH erin x",
    "AUTH alice alicepw",
    "ACL WHOAMI",
    "GET cache:1",
    "SET cache:1 v",
    "GET cache:1",
    "SET ro:1 v",
    "GET ro:1",
    "SET wo:1 v",
    "GET wo:1",
    "MGET cache:1 other",
    "DEL cache:1",
    "PUBLISH news.1 m",
    "PUBLISH sport m",
    "MULTI",
    "GET cache:1",
    "DEL cache:1",
    "EXEC",
    "ACL WHOAMI",
    "AUTH carol password",
    "HSET h:1 f v",
    "HGET h:1 f",
    "GET h:1",
    "HELLO 2 AUTH grace wrong",
    "HELLO 2 AUTH grace g",
    "ACL WHOAMI",
    "HGET h:1 f",
    "HSET h:1 f x",
    "GET cache:1",
    // Commands run by scripts need the caller's rights too.
    "AUTH scripter s",
    "EVAL \"return redis.call('get', KEYS[1])\" 1 s:1",
    "EVAL \"return redis.call('set', KEYS[1], 'v')\" 1 s:1",
    "EVAL \"return redis.call('get', 'other')\" 0",
    "EVAL \"return redis.pcall('get', 'other')\" 0",
    "RESET",
    "ACL WHOAMI",
    "AUTH default anything",
    "AUTH onlypassword",
    "ACL DELUSER alice bob carol dave frank grace scripter",
    "ACL LIST",
];

/// A reply with the words of every string sorted: Redis lists the single
/// commands of a description in its hash table's order, which changes
/// from run to run (and elastickv lists them in table order).
fn words_sorted(reply: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(reply)
        .split("\r\n")
        .map(|line| {
            let mut words: Vec<&str> = line.split(' ').collect();
            words.sort_unstable();
            words.join(" ")
        })
        .collect()
}

/// HELLO's reply with the connection id left out.
fn without_client_id(reply: &[u8]) -> String {
    let text = String::from_utf8_lossy(reply);
    let mut lines: Vec<&str> = text.split("\r\n").collect();
    if let Some(at) = lines.iter().position(|l| *l == "id")
        && let Some(id) = lines.get_mut(at + 1)
    {
        *id = ":?";
    }
    lines.join("\r\n")
}

/// Runs [`SCRIPT`], comparing replies exactly except the descriptions'
/// single-command order.
fn run_acl_script(redis: &mut RawClient, ekv: &mut RawClient) {
    let mut history: Vec<&str> = Vec::new();
    for line in SCRIPT {
        let cmd = words(line);
        let (theirs, ours) = (redis.call(&cmd), ekv.call(&cmd));
        let described = line.starts_with("ACL LIST") || line.starts_with("ACL GETUSER");
        let same = if described {
            words_sorted(&theirs) == words_sorted(&ours)
        } else if line.starts_with("HELLO") {
            // Connection ids differ between the servers.
            without_client_id(&theirs) == without_client_id(&ours)
        } else {
            theirs == ours
        };
        assert!(
            same,
            "reply mismatch for {line}\n  redis:     {:?}\n  elastickv: {:?}\n  after: {:?}",
            String::from_utf8_lossy(&theirs),
            String::from_utf8_lossy(&ours),
            &history[history.len().saturating_sub(10)..]
        );
        history.push(line);
    }
}

#[test]
fn acl_commands_and_errors_match_redis() {
    let (_dir, node, redis) = pair("4");
    run_acl_script(&mut redis.raw(), &mut node.raw());
}

#[test]
fn acl_commands_match_redis_over_resp3() {
    let (_dir, node, redis) = pair("1");
    let (mut r, mut e) = (redis.raw(), node.raw());
    r.call(&["HELLO", "3"]);
    e.call(&["HELLO", "3"]);
    run_acl_script(&mut r, &mut e);
}

/// Every command a category lists here is in that category in Redis too
/// (elastickv has fewer commands; the ones it has are classified alike).
#[test]
fn categories_list_the_commands_redis_puts_in_them() {
    let (_dir, node, redis) = pair("1");
    let names = |client: &mut RawClient, category: &str| -> Vec<String> {
        let reply = client.call(&["ACL", "CAT", category]);
        String::from_utf8_lossy(&reply)
            .split("\r\n")
            .filter(|l| !l.is_empty() && !l.starts_with('*') && !l.starts_with('$'))
            .map(str::to_string)
            .collect()
    };
    let (mut r, mut e) = (redis.raw(), node.raw());
    for category in [
        "keyspace",
        "read",
        "write",
        "set",
        "sortedset",
        "list",
        "hash",
        "string",
        "bitmap",
        "hyperloglog",
        "pubsub",
        "admin",
        "fast",
        "slow",
        "blocking",
        "dangerous",
        "connection",
        "transaction",
        "scripting",
    ] {
        let theirs = names(&mut r, category);
        let ours = names(&mut e, category);
        assert!(!ours.is_empty(), "@{category} is empty");
        for command in &ours {
            assert!(
                theirs.contains(command),
                "elastickv puts {command} in @{category}; Redis does not"
            );
        }
    }
}

/// ACL LOG's entries (all but their age and client details, which
/// differ by nature) as Redis writes them.
#[test]
fn acl_log_records_refusals_as_redis_does() {
    let (_dir, node, redis) = pair("1");
    let entries = |port: u16| -> Vec<Vec<(String, String)>> {
        let mut c = RawClient::connect(port).unwrap();
        for line in [
            "ACL SETUSER limited on >pw +get +multi ~k* &c",
            "AUTH limited nope",
            "AUTH limited nope",
            "AUTH limited pw",
            "SET k v",
            "GET other",
            "GET other",
            "PUBLISH x m",
            "MULTI",
            "GET zzz",
            "DISCARD",
        ] {
            let words: Vec<&str> = line.split(' ').collect();
            c.call(&words);
        }
        let mut admin = RawClient::connect(port).unwrap();
        let mut client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .unwrap()
            .get_connection()
            .unwrap();
        let _ = admin.call(&["PING"]);
        let log: Vec<redis::Value> = redis::cmd("ACL").arg("LOG").query(&mut client).unwrap();
        log.into_iter()
            .map(|entry| {
                let redis::Value::Array(fields) = entry else {
                    panic!("not an array: {entry:?}")
                };
                fields
                    .chunks(2)
                    .filter_map(|pair| {
                        let key = redis::from_redis_value::<String>(&pair[0]).unwrap();
                        let value = match &pair[1] {
                            redis::Value::Int(n) => n.to_string(),
                            other => redis::from_redis_value::<String>(other).unwrap(),
                        };
                        match key.as_str() {
                            "age-seconds" => None,
                            "client-info" => {
                                assert!(value.contains("user="), "{value}");
                                None
                            }
                            _ => Some((key, value)),
                        }
                    })
                    .collect()
            })
            .collect()
    };
    let theirs = entries(redis.port);
    let ours = entries(node.port);
    assert_eq!(ours, theirs);
    assert!(theirs.len() >= 4, "{theirs:?}");
}

#[test]
fn changes_reach_open_connections_and_deleted_users_are_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir.path().join("data"), &[]);
    let mut admin = node.raw();
    assert_eq!(
        admin.call(&["ACL", "SETUSER", "app", "on", ">pw", "~*", "+@all"]),
        b"+OK\r\n"
    );
    let mut app = node.raw();
    assert_eq!(app.call(&["AUTH", "app", "pw"]), b"+OK\r\n");
    assert_eq!(app.call(&["SET", "k", "v"]), b"+OK\r\n");
    let list = String::from_utf8_lossy(&admin.call(&["CLIENT", "LIST"])).into_owned();
    assert!(list.contains("user=app"), "{list}");
    // Taking a right away applies to the next command.
    assert_eq!(admin.call(&["ACL", "SETUSER", "app", "-set"]), b"+OK\r\n");
    assert_eq!(
        app.call(&["SET", "k", "v"]),
        b"-NOPERM this user has no permissions to run the 'set' command\r\n"
    );
    assert_eq!(app.call(&["GET", "k"]), b"$1\r\nv\r\n");
    assert_eq!(admin.call(&["ACL", "DELUSER", "app"]), b":1\r\n");
    assert!(
        app.closed_by_server(Duration::from_secs(10)),
        "still connected"
    );
}

#[test]
fn users_come_from_the_acl_file_and_acl_save_and_load_use_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.acl");
    std::fs::write(
        &file,
        "# application users\nuser default on >adminpw ~* &* +@all\nuser reader on >r %R~* +@read\n",
    )
    .unwrap();
    let path = file.display().to_string();
    let node = Node::start(&dir.path().join("data"), &["--aclfile", &path]);
    let mut c = node.raw();
    assert_eq!(
        c.call(&["GET", "k"]),
        b"-NOAUTH Authentication required.\r\n"
    );
    assert_eq!(c.call(&["AUTH", "adminpw"]), b"+OK\r\n");
    assert_eq!(c.call(&["SET", "k", "v"]), b"+OK\r\n");
    let mut reader = node.raw();
    assert_eq!(reader.call(&["AUTH", "reader", "r"]), b"+OK\r\n");
    assert_eq!(reader.call(&["GET", "k"]), b"$1\r\nv\r\n");
    assert!(reader.call(&["SET", "k", "w"]).starts_with(b"-NOPERM"));

    // ACL SAVE writes what ACL LIST shows; ACL LOAD reads the file back.
    assert_eq!(
        c.call(&["ACL", "SETUSER", "writer", "on", ">w", "~*", "+@write"]),
        b"+OK\r\n"
    );
    assert_eq!(c.call(&["ACL", "SAVE"]), b"+OK\r\n");
    let saved = std::fs::read_to_string(&file).unwrap();
    assert!(saved.contains("user writer on #"), "{saved}");
    assert!(!saved.contains(">w"), "a password in clear: {saved}");
    std::fs::write(&file, saved.replace("user writer on", "user writer off")).unwrap();
    assert_eq!(c.call(&["ACL", "LOAD"]), b"+OK\r\n");
    let mut writer = node.raw();
    assert!(
        writer
            .call(&["AUTH", "writer", "w"])
            .starts_with(b"-WRONGPASS")
    );
    // A broken file is refused as a whole.
    std::fs::write(&file, "user default on nopass ~* +@all\nuser bad +nosuch\n").unwrap();
    let e = c.call(&["ACL", "LOAD"]);
    assert!(
        String::from_utf8_lossy(&e).contains("Unknown command"),
        "{}",
        String::from_utf8_lossy(&e)
    );
    assert_eq!(reader.call(&["GET", "k"]), b"$1\r\nv\r\n");

    // At start, a broken file stops the node with one line saying why.
    let (status, output) = run_to_exit(
        &[
            "--aclfile",
            &path,
            "--data-dir",
            &dir.path().join("other").display().to_string(),
        ],
        &[],
    );
    assert!(!status.success());
    assert!(
        output.contains("users.acl") && output.contains("Unknown command"),
        "{output}"
    );
}

/// requirepass is the default user's password, as in Redis.
#[test]
fn requirepass_is_the_default_users_password() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir.path().join("data"), &["--requirepass", "s3cret"]);
    // What requirepass does in Redis (set at start, Redis would not
    // answer the harness's readiness PING).
    let redis = RedisOracle::start();
    redis
        .raw()
        .call(&["ACL", "SETUSER", "default", "resetpass", ">s3cret"]);
    run_script(
        &mut redis.raw(),
        &mut node.raw(),
        &[
            "ACL WHOAMI",
            "AUTH default wrong",
            "AUTH s3cret",
            "ACL GETUSER default",
            "ACL LIST",
            "AUTH default s3cret",
        ],
    );
}

/// A subscriber whose user loses a channel it is subscribed to is
/// disconnected before it gets another message (Redis disconnects it at
/// ACL SETUSER).
#[test]
fn a_subscriber_that_loses_its_channel_is_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir.path().join("data"), &[]);
    let mut admin = node.raw();
    assert_eq!(
        admin.call(&[
            "ACL", "SETUSER", "sub", "on", ">pw", "+@all", "&news.*", "&sport"
        ]),
        b"+OK\r\n"
    );
    let mut sub = node.raw();
    assert_eq!(sub.call(&["AUTH", "sub", "pw"]), b"+OK\r\n");
    sub.call(&["SUBSCRIBE", "news.1"]);
    assert_eq!(admin.call(&["PUBLISH", "news.1", "first"]), b":1\r\n");
    assert_eq!(
        sub.read_reply(),
        b"*3\r\n$7\r\nmessage\r\n$6\r\nnews.1\r\n$5\r\nfirst\r\n"
    );
    // A change that keeps the channel changes nothing.
    assert_eq!(admin.call(&["ACL", "SETUSER", "sub", "-get"]), b"+OK\r\n");
    admin.call(&["PUBLISH", "news.1", "second"]);
    assert_eq!(
        sub.read_reply(),
        b"*3\r\n$7\r\nmessage\r\n$6\r\nnews.1\r\n$6\r\nsecond\r\n"
    );
    // Taking it away closes the connection, with nothing more sent.
    assert_eq!(
        admin.call(&["ACL", "SETUSER", "sub", "resetchannels", "&sport"]),
        b"+OK\r\n"
    );
    admin.call(&["PUBLISH", "news.1", "third"]);
    assert!(
        sub.closed_by_server(Duration::from_secs(10)),
        "still subscribed"
    );
}

/// ACL rules changed between MULTI and EXEC: EXEC checks each queued
/// command again, as Redis does (same replies, byte for byte).
#[test]
fn exec_checks_queued_commands_against_the_rules_of_the_moment() {
    let (_dir, node, redis) = pair("1");
    let run = |port: u16| -> Vec<Vec<u8>> {
        let mut admin = RawClient::connect(port).unwrap();
        let mut user = RawClient::connect(port).unwrap();
        let mut out = Vec::new();
        out.push(admin.call(&["ACL", "SETUSER", "tx", "on", ">pw", "+@all", "~*"]));
        out.push(user.call(&["AUTH", "tx", "pw"]));
        for line in [
            &["MULTI"][..],
            &["SET", "a:1", "v"],
            &["GET", "a:1"],
            &["SET", "b:1", "v"],
            &["INCR", "n"],
        ] {
            out.push(user.call(line));
        }
        out.push(admin.call(&["ACL", "SETUSER", "tx", "resetkeys", "~a:*", "-incr"]));
        out.push(user.call(&["EXEC"]));
        out.push(admin.call(&["GET", "b:1"]));
        out.push(admin.call(&["GET", "n"]));
        out
    };
    let theirs = run(redis.port);
    let ours = run(node.port);
    for (i, (t, o)) in theirs.iter().zip(&ours).enumerate() {
        assert_eq!(
            String::from_utf8_lossy(o),
            String::from_utf8_lossy(t),
            "reply {i} differs"
        );
    }
}
