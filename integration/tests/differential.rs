//! Differential tests: the same commands sent to redis-server 7.0 and to
//! elastickv must get byte-identical replies.
//!
//! Fixed scripts cover each command's edge cases; seeded random streams mix
//! valid and invalid commands over a small key space. With one shard every
//! command runs as in Redis; with four, multi-key atomic commands (MSET,
//! RENAME...) only use keys sharing a hash tag, since elastickv refuses
//! cross-shard ones with CROSSSLOT by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use elastickv_integration::diff::{comparable, compare, pair, run_script, show};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const STRING_SCRIPT: &[&str] = &[
    "GET nosuch",
    "SET k v",
    "GET k",
    "SET k v2 NX",
    "SET k v3 XX GET",
    "SET k v4 NX GET",
    "SET fresh v XX",
    "SET fresh v XX GET",
    "SET k v EX 0",
    "SET k v EX -1",
    "SET k v EX abc",
    "SET k v PX 9223372036854775807",
    "SET k v EX 9223372036854776",
    "SET k v EX 10 PX 10",
    "SET k v KEEPTTL EX 10",
    "SET k v NX XX",
    "SET k v GET GET",
    "SET k v EX",
    "SET k v BOGUS",
    "SET k v PERSIST",
    "SET k",
    "SET k v EX 100",
    "TTL k",
    "SET k v2 KEEPTTL",
    "TTL k",
    "SET k v3",
    "TTL k",
    "SETNX k x",
    "SETNX k2 x",
    "SETEX k3 100 v",
    "TTL k3",
    "SETEX k3 0 v",
    "SETEX k3 x v",
    "PSETEX k4 100000 v",
    "PSETEX k4 -5 v",
    "GETSET k new",
    "GETSET nosuch2 new",
    "GETDEL nosuch3",
    "GETDEL k",
    "GET k",
    "GETEX k2",
    "GETEX k2 EX 100",
    "TTL k2",
    "GETEX k2 PERSIST",
    "TTL k2",
    "GETEX k2 EX abc",
    "GETEX nosuch4 EX abc",
    "GETEX k2 EX 0",
    "GETEX k2 NX",
    "GETEX k2 PERSIST EX 10",
    "GETEX k2 EXAT 1",
    "EXISTS k2",
    "INCR c",
    "INCR c",
    "INCRBY c 10",
    "INCRBY c x",
    "DECR c",
    "DECRBY c 5",
    "DECRBY c -9223372036854775808",
    "INCRBY c 9223372036854775807",
    "SET big 9223372036854775807",
    "INCR big",
    "SET small -9223372036854775808",
    "DECR small",
    "SET notnum abc",
    "INCR notnum",
    "SET spaced \" 1\"",
    "INCR spaced",
    "SET lead 01",
    "INCR lead",
    "INCRBYFLOAT f 0.1",
    "INCRBYFLOAT f 0.2",
    "INCRBYFLOAT f -0.3",
    "INCRBYFLOAT f 1e3",
    "INCRBYFLOAT f 5.0e3",
    "INCRBYFLOAT f abc",
    "INCRBYFLOAT f inf",
    "INCRBYFLOAT f nan",
    "INCRBYFLOAT notnum 1",
    "INCRBYFLOAT c 1.5",
    "INCRBYFLOAT g 3.0000000000000001",
    "INCRBYFLOAT g -1.23e-5",
    "INCRBYFLOAT h 10.5",
    "INCRBYFLOAT h 0.00000000000000001",
    "APPEND a hello",
    "APPEND a \" world\"",
    "APPEND c 1",
    "GET c",
    "STRLEN a",
    "STRLEN nosuch",
    "GETRANGE a 0 4",
    "GETRANGE a -5 -1",
    "GETRANGE a -1 -5",
    "GETRANGE a 5 3",
    "GETRANGE a 0 100",
    "GETRANGE a -100 2",
    "GETRANGE a x 1",
    "GETRANGE nosuch 0 -1",
    "SETRANGE a 6 WORLD",
    "GET a",
    "SETRANGE a 20 x",
    "GET a",
    "SETRANGE a -1 x",
    "SETRANGE a x x",
    "SETRANGE newkey 3 abc",
    "GET newkey",
    "SETRANGE emptykey 5 ",
    "EXISTS emptykey",
    "SETRANGE a 0 ",
    "SETRANGE a 536870911 xx",
    "MSET m1 a m2 b",
    "MSET m1 a m2",
    "MGET m1 m2 nosuch c",
    "MSETNX m1 x m3 y",
    "MSETNX m3 x m4 y",
    "MGET m3 m4",
    "MSETNX m5",
];

const KEYS_SCRIPT: &[&str] = &[
    "RANDOMKEY",
    "SET only x",
    "RANDOMKEY",
    "DEL only",
    "SET oi 123",
    "OBJECT ENCODING oi",
    "SET oe hello",
    "OBJECT ENCODING oe",
    "SET or aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "OBJECT ENCODING or",
    "OBJECT ENCODING nosuch",
    "OBJECT REFCOUNT oi",
    "OBJECT REFCOUNT oe",
    "OBJECT REFCOUNT nosuch",
    "OBJECT FREQ oi",
    "OBJECT FREQ nosuch",
    "OBJECT IDLETIME nosuch",
    "OBJECT HELP",
    "OBJECT BOGUS",
    "OBJECT",
    "OBJECT ENCODING",
    "OBJECT ENCODING a b",
    "HSET oh a 1",
    "OBJECT ENCODING oh",
    "HSET oh b aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "OBJECT ENCODING oh",
    "SADD os 1 2 3",
    "OBJECT ENCODING os",
    "SADD os x",
    "OBJECT ENCODING os",
    "RPUSH ol a",
    "OBJECT ENCODING ol",
    "DEL oi oe or oh os ol",
    "SET c1 v",
    // Absolute: a relative expiry lands on each server's own millisecond.
    "PEXPIREAT c1 33177117420000",
    "COPY c1 c2",
    "GET c2",
    "PEXPIRETIME c2",
    "COPY c1 c2",
    "SET c1 w",
    "COPY c1 c2 REPLACE",
    "GET c2",
    "TTL c2",
    "COPY c1 c1",
    "COPY c1 c3 DB 1",
    "COPY c1 c3 DB x",
    "COPY c1 c3 DB 0 REPLACE",
    "COPY c1 c3 DB",
    "COPY c1 c3 BOGUS",
    "COPY nosuch c4",
    "TOUCH c1 c2 nosuch c1",
    "TOUCH nosuch",
    "DEL c1 c2 c3",
    "DEL nosuch",
    "SET a 1",
    "SET b 2",
    "SET c 3",
    "DEL a b nosuch",
    "UNLINK c c",
    "EXISTS a b c",
    "SET a 1",
    "EXISTS a a a",
    "TYPE a",
    "TYPE nosuch",
    "RENAME nosuch x",
    "RENAME a a",
    "RENAMENX a a",
    "RENAMENX nosuch a",
    "SET b 2",
    "RENAMENX a b",
    "EXPIRE a 100",
    "RENAME a b",
    "TTL b",
    "GET a",
    "RENAME b c",
    "TTL c",
    "EXPIRE c 100 NX",
    "EXPIRE c 200 XX",
    "TTL c",
    "EXPIRE c 50 GT",
    "EXPIRE c 500 GT",
    "TTL c",
    "EXPIRE c 600 LT",
    "EXPIRE c 60 LT",
    "TTL c",
    "EXPIRE c 10 NX XX",
    "EXPIRE c 10 GT LT",
    "EXPIRE c 10 NX GT",
    "EXPIRE c 10 FOO",
    "EXPIRE c abc",
    "EXPIRE c 9223372036854775807",
    "EXPIRE c -9223372036854775808",
    "PEXPIRE c 9223372036854775807",
    "EXPIRE nosuch 10",
    "SET d 1",
    "EXPIRE d 10 XX",
    "EXPIRE d 10 GT",
    "EXPIRE d 10 LT",
    "TTL d",
    "PERSIST d",
    "PERSIST d",
    "PERSIST nosuch",
    "TTL d",
    "PTTL nosuch",
    "EXPIRETIME d",
    "EXPIREAT d 33177117420",
    "EXPIRETIME d",
    "PEXPIRETIME d",
    "PEXPIREAT d 33177117420123",
    "PEXPIRETIME d",
    "EXPIRETIME d",
    "EXPIREAT d 1",
    "EXISTS d",
    "SET e 1",
    "EXPIRE e -1",
    "GET e",
    "SET e 1",
    "PEXPIRE e 0",
    "GET e",
    "KEYS *",
    "KEYS c*",
    "KEYS [a-c]",
    "KEYS ?",
    "KEYS \\c",
    "SCAN abc",
    "SCAN 0 COUNT 0",
    "SCAN 0 COUNT x",
    "SCAN 0 MATCH",
    "SCAN 0 BOGUS 1",
    "SELECT 0",
    "SELECT 1",
    "SELECT x",
    "SELECT 4294967296",
    "PING",
    "PING hello",
    "PING a b",
    "ECHO hi",
    "ECHO",
    "ECHO a b",
    "FLUSHDB BOGUS",
    "FLUSHDB ASYNC",
    "DBSIZE",
    "SET x 1",
    "FLUSHALL SYNC",
    "DBSIZE",
    "NOSUCHCOMMAND a b",
    "GET",
    "CLIENT NOSUCH",
    "CLIENT",
    "CLIENT SETNAME",
    "CLIENT SETNAME \"a b\"",
    "CLIENT SETNAME ok",
    "CLIENT GETNAME",
    "CONFIG",
    "COMMAND INFO get mset nosuch rename",
    "COMMAND NOSUCH",
    "HELLO 4",
    "HELLO x",
    "HELLO 2 BOGUS",
    "AUTH pass",
    "AUTH default anything",
    "AUTH a b c",
];

#[test]
fn string_commands_match_redis() {
    let (_dir, node, redis) = pair("1");
    run_script(&mut redis.raw(), &mut node.raw(), STRING_SCRIPT);
}

#[test]
fn key_and_connection_commands_match_redis() {
    let (_dir, node, redis) = pair("1");
    run_script(&mut redis.raw(), &mut node.raw(), KEYS_SCRIPT);
}

#[test]
fn resp3_replies_match_redis() {
    let (_dir, node, redis) = pair("4");
    let (mut r, mut e) = (redis.raw(), node.raw());
    // HELLO's id differs between servers; compare everything else.
    let hello_r = r.call(&["HELLO", "3"]);
    let hello_e = e.call(&["HELLO", "3"]);
    let strip_id = |b: &[u8]| {
        let text = String::from_utf8_lossy(b).into_owned();
        let start = text.find("$2\r\nid\r\n:").expect("HELLO reply has an id");
        let end = start + text[start + 9..].find("\r\n").unwrap() + 11;
        format!("{}{}", &text[..start], &text[end..])
    };
    assert_eq!(strip_id(&hello_r), strip_id(&hello_e));
    run_script(
        &mut r,
        &mut e,
        &[
            "SET k v",
            "GET k",
            "GET nosuch",
            "MGET k nosuch",
            "INCRBYFLOAT f 1.5",
            "TTL k",
            "EXISTS k",
            "TYPE k",
            "COMMAND INFO get mget set rename getex",
            "CONFIG GET maxmemory",
            "GETDEL nosuch",
        ],
    );
    assert_eq!(
        strip_id(&r.call(&["HELLO", "2"])),
        strip_id(&e.call(&["HELLO", "2"]))
    );
    run_script(&mut r, &mut e, &["GET nosuch", "MGET nosuch"]);
}

/// A random command over a small key space with a mix of valid and
/// invalid arguments. With `tagged_multi_key`, the atomic multi-key
/// commands only get keys sharing the `{t}` hash tag.
fn random_command(rng: &mut StdRng, tagged_multi_key: bool) -> Vec<Vec<u8>> {
    const KEYS: &[&str] = &["k0", "k1", "k2", "k3", "k4", "{t}a", "{t}b", "{t}c"];
    const TAGGED: &[&str] = &["{t}a", "{t}b", "{t}c", "{t}d"];
    const VALUES: &[&str] = &[
        "v",
        "",
        "0",
        "1",
        "-1",
        "42",
        "9223372036854775807",
        "-9223372036854775808",
        "3.5",
        "-0.25",
        "1e3",
        "abc",
        " 1",
        "01",
        "0.1",
        "1.7976931348623157e308",
        "inf",
    ];
    const INTS: &[&str] = &[
        "0",
        "1",
        "-1",
        "5",
        "100",
        "-100",
        "x",
        "9223372036854775807",
        "99999999999",
    ];
    // Expiry arguments that are either refused or absolute: a relative
    // expiry would make the two servers' expiry times differ by however
    // long apart they ran the command.
    const BAD_TTLS: &[&str] = &["0", "-1", "x", "9223372036854775807"];
    let key = |rng: &mut StdRng| KEYS[rng.gen_range(0..KEYS.len())].to_string();
    let multi = |rng: &mut StdRng| {
        if tagged_multi_key {
            TAGGED[rng.gen_range(0..TAGGED.len())].to_string()
        } else {
            KEYS[rng.gen_range(0..KEYS.len())].to_string()
        }
    };
    let value = |rng: &mut StdRng| VALUES[rng.gen_range(0..VALUES.len())].to_string();
    let int = |rng: &mut StdRng| INTS[rng.gen_range(0..INTS.len())].to_string();
    let far = "33177117420".to_string();
    let cmd: Vec<String> = match rng.gen_range(0..30) {
        0 => vec!["GET".into(), key(rng)],
        1 => {
            let mut c = vec!["SET".into(), key(rng), value(rng)];
            for _ in 0..rng.gen_range(0..3) {
                match rng.gen_range(0..8) {
                    0 => c.push("NX".into()),
                    1 => c.push("XX".into()),
                    2 => c.push("GET".into()),
                    3 => c.push("KEEPTTL".into()),
                    4 => c.extend([
                        "EX".into(),
                        BAD_TTLS[rng.gen_range(0..BAD_TTLS.len())].into(),
                    ]),
                    5 => c.extend(["PXAT".into(), "33177117420123".into()]),
                    6 => c.extend(["EXAT".into(), far.clone()]),
                    _ => c.push("BOGUS".into()),
                }
            }
            c
        }
        2 => vec!["SETNX".into(), key(rng), value(rng)],
        3 => vec!["GETSET".into(), key(rng), value(rng)],
        4 => vec!["GETDEL".into(), key(rng)],
        5 => match rng.gen_range(0..4) {
            0 => vec!["GETEX".into(), key(rng)],
            1 => vec!["GETEX".into(), key(rng), "PERSIST".into()],
            2 => vec!["GETEX".into(), key(rng), "EXAT".into(), far.clone()],
            _ => vec![
                "GETEX".into(),
                key(rng),
                "EX".into(),
                BAD_TTLS[rng.gen_range(0..BAD_TTLS.len())].into(),
            ],
        },
        6 => vec!["MGET".into(), key(rng), key(rng), key(rng)],
        7 => vec![
            "MSET".into(),
            multi(rng),
            value(rng),
            multi(rng),
            value(rng),
        ],
        8 => vec![
            "MSETNX".into(),
            multi(rng),
            value(rng),
            multi(rng),
            value(rng),
        ],
        9 => vec!["INCR".into(), key(rng)],
        10 => vec!["DECR".into(), key(rng)],
        11 => vec!["INCRBY".into(), key(rng), int(rng)],
        12 => vec!["DECRBY".into(), key(rng), int(rng)],
        13 => vec!["INCRBYFLOAT".into(), key(rng), value(rng)],
        14 => vec!["APPEND".into(), key(rng), value(rng)],
        15 => vec!["STRLEN".into(), key(rng)],
        16 => vec!["GETRANGE".into(), key(rng), int(rng), int(rng)],
        17 => vec![
            "SETRANGE".into(),
            key(rng),
            rng.gen_range(0..12).to_string(),
            value(rng),
        ],
        18 => vec!["DEL".into(), key(rng), key(rng)],
        19 => vec!["EXISTS".into(), key(rng), key(rng), key(rng)],
        20 => vec!["TYPE".into(), key(rng)],
        21 => vec![
            if rng.gen_bool(0.5) {
                "RENAME"
            } else {
                "RENAMENX"
            }
            .into(),
            multi(rng),
            multi(rng),
        ],
        22 => {
            let mut c = vec![
                ["EXPIREAT", "PEXPIREAT"][rng.gen_range(0..2)].to_string(),
                key(rng),
                if rng.gen_bool(0.8) {
                    far.clone()
                } else {
                    int(rng)
                },
            ];
            if rng.gen_bool(0.3) {
                c.push(["NX", "XX", "GT", "LT", "BAD"][rng.gen_range(0..5)].into());
            }
            c
        }
        23 => vec![
            "EXPIRE".into(),
            key(rng),
            ["-1", "0", "x"][rng.gen_range(0..3)].into(),
        ],
        24 => vec!["PERSIST".into(), key(rng)],
        25 => vec![
            ["EXPIRETIME", "PEXPIRETIME"][rng.gen_range(0..2)].to_string(),
            key(rng),
        ],
        26 => vec!["GETRANGE".into(), key(rng), "0".into(), "-1".into()],
        27 => vec![
            "KEYS".into(),
            ["*", "k*", "{t}*", "k[0-2]", "?"][rng.gen_range(0..5)].into(),
        ],
        28 => vec!["DBSIZE".into()],
        _ => vec!["UNLINK".into(), key(rng)],
    };
    cmd.into_iter().map(String::into_bytes).collect()
}

/// Seeds per random test: 6 in the suite; set `ELASTICKV_DIFF_SEEDS` for a
/// longer soak.
fn seed_count() -> u64 {
    std::env::var("ELASTICKV_DIFF_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6)
}

fn random_stream(shards: &str, first_seed: u64, ops: usize, tagged: bool) {
    let seeds = first_seed..first_seed + seed_count();
    let (_dir, node, redis) = pair(shards);
    let (mut r, mut e) = (redis.raw(), node.raw());
    for seed in seeds {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut history = Vec::new();
        for _ in 0..ops {
            let cmd = random_command(&mut rng, tagged);
            compare(&mut r, &mut e, &cmd, &history);
            history.push(format!("seed {seed}: {}", show(&cmd)));
        }
        r.call(&["FLUSHALL"]);
        e.call(&["FLUSHALL"]);
    }
}

#[test]
fn random_commands_match_redis_on_one_shard() {
    random_stream("1", 0, 1500, false);
}

#[test]
fn random_commands_match_redis_on_four_shards() {
    random_stream("4", 1_000_000, 1500, true);
}

/// Pipelined commands (sent without waiting) must answer like Redis, in
/// order, including reads that follow writes to the same key.
#[test]
fn pipelines_match_redis() {
    let (_dir, node, redis) = pair("4");
    let mut rng = StdRng::seed_from_u64(7);
    let (mut r, mut e) = (redis.raw(), node.raw());
    for _ in 0..20 {
        let cmds: Vec<Vec<Vec<u8>>> = (0..50).map(|_| random_command(&mut rng, true)).collect();
        for cmd in &cmds {
            r.send(cmd);
            e.send(cmd);
        }
        for cmd in &cmds {
            let (expected, got) = (r.read_reply(), e.read_reply());
            assert_eq!(
                String::from_utf8_lossy(&comparable(cmd, &expected)),
                String::from_utf8_lossy(&comparable(cmd, &got)),
                "pipelined {}",
                show(cmd)
            );
        }
    }
}

/// What clients read on connect: INFO's sections in Redis's order (plus
/// elastickv's own `raft`), cluster mode off, and command and error
/// statistics counted as Redis counts them.
#[test]
fn info_sections_and_statistics_match_redis() {
    let (_dir, node, redis) = pair("4");
    let (mut r, mut e) = (redis.raw(), node.raw());
    let headers = |reply: &[u8]| -> Vec<String> {
        String::from_utf8_lossy(reply)
            .lines()
            .filter(|l| l.starts_with("# ") && *l != "# Raft")
            .map(str::to_string)
            .collect()
    };
    for args in [
        &["INFO"][..],
        &["INFO", "default"],
        &["INFO", "all"],
        &["INFO", "everything"],
        &["INFO", "cpu", "cluster", "errorstats"],
        &["INFO", "commandstats"],
        &["INFO", "modules"],
        &["INFO", "nosuch"],
    ] {
        assert_eq!(headers(&r.call(args)), headers(&e.call(args)), "{args:?}");
    }
    let info = String::from_utf8(e.call(&["INFO", "cluster"])).unwrap();
    assert!(info.contains("cluster_enabled:0\r\n"), "{info}");
    let cpu = String::from_utf8(e.call(&["INFO", "cpu"])).unwrap();
    assert!(cpu.contains("used_cpu_user:"), "{cpu}");

    // The same commands, the same statistics (times aside).
    r.call(&["CONFIG", "RESETSTAT"]);
    e.call(&["CONFIG", "RESETSTAT"]);
    for cmd in [
        &["SET", "k", "v"][..],
        &["GET", "k"],
        &["GET"],
        &["NOSUCH"],
        &["HSET", "k", "f", "v"],
        &["SET", "k", "v", "EX", "0"],
        &["HSET", "h", "f", "v"],
        &["CLIENT", "ID"],
    ] {
        r.call(cmd);
        e.call(cmd);
    }
    let stats = |reply: Vec<u8>| -> std::collections::BTreeSet<String> {
        String::from_utf8_lossy(&reply)
            .lines()
            .filter(|l| l.starts_with("cmdstat_") || l.starts_with("errorstat_"))
            // Drop the timings: calls, rejected and failed calls remain.
            .map(|l| {
                l.split(',')
                    .filter(|f| !f.starts_with("usec"))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect()
    };
    let expected = stats(r.call(&["INFO", "commandstats", "errorstats"]));
    let got = stats(e.call(&["INFO", "commandstats", "errorstats"]));
    assert_eq!(got, expected);

    // Latency percentiles for the same commands, in Redis's shape
    // (`p50=<usec>,p99=<usec>,p99.9=<usec>`, three decimals).
    let latencies = |reply: Vec<u8>| -> std::collections::BTreeMap<String, Vec<String>> {
        String::from_utf8_lossy(&reply)
            .lines()
            .filter_map(|l| l.strip_prefix("latency_percentiles_usec_"))
            .map(|l| {
                let (name, values) = l.split_once(':').unwrap();
                (
                    name.to_string(),
                    values.split(',').map(String::from).collect(),
                )
            })
            .collect()
    };
    let expected = latencies(r.call(&["INFO", "latencystats"]));
    let got = latencies(e.call(&["INFO", "latencystats"]));
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    assert!(
        got.contains_key("set") && got.contains_key("client|id"),
        "{got:?}"
    );
    for values in got.values() {
        let labels: Vec<&str> = values
            .iter()
            .map(|v| v.split('=').next().unwrap())
            .collect();
        assert_eq!(labels, ["p50", "p99", "p99.9"], "{values:?}");
        for v in values {
            let usec = v.split('=').nth(1).unwrap();
            assert_eq!(usec.split('.').nth(1).map(str::len), Some(3), "{v}");
            assert!(usec.parse::<f64>().unwrap() > 0.0, "{v}");
        }
    }
    // A reset forgets them; the reset itself is then the one command timed.
    r.call(&["CONFIG", "RESETSTAT"]);
    e.call(&["CONFIG", "RESETSTAT"]);
    let expected = latencies(r.call(&["INFO", "latencystats"]));
    let got = latencies(e.call(&["INFO", "latencystats"]));
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    assert_eq!(got.len(), 1);
}
