//! HyperLogLog against redis-server 7.0: replies, counts and the stored
//! bytes themselves (GET) through the sparse form, its promotion to dense
//! and merges; wrong types, strings that are not HyperLogLogs and a
//! corrupted one; one and four shards, RESP2 and RESP3.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use elastickv_integration::RawClient;
use elastickv_integration::diff::{pair, run_script};
use rand::{Rng, SeedableRng};

const HLL_SCRIPT: &[&str] = &[
    "PFADD h a b c",
    "PFADD h a",
    "GET h",
    "PFCOUNT h",
    "GET h",
    "PFADD h d",
    "GET h",
    "PFADD empty",
    "PFADD empty",
    "GET empty",
    "PFCOUNT empty",
    "PFCOUNT nosuch",
    "PFADD h \"\" \"a b\" \"\\x00\\xff\"",
    "PFCOUNT h",
    "SET str notanhll",
    "PFADD str a",
    "PFCOUNT str",
    "SET short HYLL",
    "PFCOUNT short",
    "SET baddense \"HYLL\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\"",
    "PFADD baddense a",
    "SET badenc \"HYLL\\x02\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x7f\\xff\"",
    "PFCOUNT badenc",
    "SET cut \"HYLL\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x80\\x40\\x00\"",
    "PFCOUNT cut",
    "PFADD cut zz",
    "LPUSH list a",
    "PFADD list a",
    "PFCOUNT list",
    "PFADD {m}a 1 2 3 4 5",
    "PFADD {m}b 4 5 6 7",
    "PFCOUNT {m}a {m}b",
    "PFCOUNT {m}a {m}nosuch",
    "PFCOUNT {m}a {m}str",
    "SET {m}str x",
    "PFCOUNT {m}a {m}str",
    "PFMERGE {m}c {m}a {m}b",
    "GET {m}c",
    "PFCOUNT {m}c",
    "PFMERGE {m}c",
    "PFMERGE {m}new",
    "GET {m}new",
    "PFMERGE {m}a {m}str",
    "PFMERGE {m}str {m}a",
    "PFMERGE {m}d {m}nosuch",
    "EXISTS {m}d",
    "PFADD {t}ttl x",
    "EXPIRE {t}ttl 100",
    "PFADD {t}ttl y",
    "PFCOUNT {t}ttl",
    "TTL {t}ttl",
    "TYPE h",
    "OBJECT ENCODING h",
    "COMMAND INFO pfadd pfcount pfmerge",
];

#[test]
fn hyperloglog_commands_match_redis() {
    let (_dir, node, redis) = pair("1");
    run_script(&mut redis.raw(), &mut node.raw(), HLL_SCRIPT);
}

#[test]
fn hyperloglog_commands_match_redis_over_resp3_on_four_shards() {
    let (_dir, node, redis) = pair("4");
    let (mut r, mut e) = (redis.raw(), node.raw());
    r.call(&["HELLO", "3"]);
    e.call(&["HELLO", "3"]);
    run_script(&mut r, &mut e, HLL_SCRIPT);
    assert_eq!(
        e.call(&["PFMERGE", "a", "b"]),
        b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );
}

fn both(r: &mut RawClient, e: &mut RawClient, cmd: &[&str]) -> Vec<u8> {
    let (expected, got) = (r.call(cmd), e.call(cmd));
    assert_eq!(
        String::from_utf8_lossy(&expected),
        String::from_utf8_lossy(&got),
        "{cmd:?}"
    );
    got
}

/// Thousands of elements in random batches: every PFADD reply, PFCOUNT
/// and the bytes stored match Redis's as the sparse form grows, is
/// promoted to dense, and is merged with others.
#[test]
fn hyperloglogs_keep_redis_bytes_through_promotion_and_merges() {
    let (_dir, node, redis) = pair("1");
    let (mut r, mut e) = (redis.raw(), node.raw());
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    for key in ["{k}a", "{k}b", "{k}c"] {
        let target = rng.gen_range(500..20_000);
        let mut added = 0;
        while added < target {
            let batch = rng.gen_range(1..60);
            let elements: Vec<String> = (0..batch)
                .map(|_| format!("el:{}", rng.gen_range(0..target * 2)))
                .collect();
            let mut cmd = vec!["PFADD", key];
            cmd.extend(elements.iter().map(String::as_str));
            both(&mut r, &mut e, &cmd);
            added += batch;
            if rng.gen_bool(0.05) {
                both(&mut r, &mut e, &["PFCOUNT", key]);
                both(&mut r, &mut e, &["GET", key]);
            }
        }
        both(&mut r, &mut e, &["PFCOUNT", key]);
        both(&mut r, &mut e, &["GET", key]);
    }
    both(&mut r, &mut e, &["PFCOUNT", "{k}a", "{k}b", "{k}c"]);
    both(&mut r, &mut e, &["PFMERGE", "{k}small"]);
    both(&mut r, &mut e, &["PFADD", "{k}small", "x", "y"]);
    both(&mut r, &mut e, &["PFMERGE", "{k}small", "{k}a", "{k}c"]);
    both(&mut r, &mut e, &["GET", "{k}small"]);
    both(&mut r, &mut e, &["PFCOUNT", "{k}small"]);
    both(
        &mut r,
        &mut e,
        &["PFMERGE", "{k}all", "{k}a", "{k}b", "{k}c"],
    );
    both(&mut r, &mut e, &["GET", "{k}all"]);
    both(&mut r, &mut e, &["PFCOUNT", "{k}all"]);
}
