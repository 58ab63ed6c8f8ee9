//! SORT and SORT_RO against redis-server 7.0: numbers and ALPHA, DESC,
//! LIMIT at and past the ends, BY and GET with string keys and hash fields
//! (patterns tagged to the sorted key's shard), BY nosort, STORE, lists,
//! sets and sorted sets, and the errors; on one and four shards. A
//! pattern that could name keys on other shards is refused with a reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use elastickv_integration::diff::{pair, run_script};

const SORT_SCRIPT: &[&str] = &[
    "RPUSH {s}l 3 1 2 10 -1 1.5",
    "SORT {s}l",
    "SORT {s}l DESC",
    "SORT {s}l ASC",
    "SORT {s}l LIMIT 1 2",
    "SORT {s}l LIMIT -1 2",
    "SORT {s}l LIMIT 10 2",
    "SORT {s}l LIMIT 0 -5",
    "SORT {s}l LIMIT 2 0",
    "SORT {s}l LIMIT x 1",
    "SORT {s}l LIMIT 1",
    "SORT {s}l ALPHA",
    "SORT {s}l ALPHA DESC LIMIT 0 3",
    "SORT {s}l BY nosort",
    "SORT {s}l BY nosort DESC LIMIT 1 2",
    "SORT {s}l BY nosort LIMIT 4 10",
    "SORT {s}l BOGUS",
    "RPUSH {s}bad a 1",
    "SORT {s}bad",
    "SORT {s}bad ALPHA",
    "MSET {s}w_3 30 {s}w_1 10 {s}w_2 -5 {s}w_10 x",
    "SORT {s}l BY {s}w_*",
    "DEL {s}w_10",
    "SORT {s}l BY {s}w_*",
    "SORT {s}l BY {s}w_* DESC GET # GET {s}w_*",
    "HSET {s}h_1 f 5 g one",
    "HSET {s}h_3 f 1 g three",
    "HSET {s}h_2 g two",
    "SORT {s}l BY {s}h_*->f GET # GET {s}h_*->g GET {s}h_*->",
    "SORT {s}l GET nostar",
    "SORT {s}l GET # GET #",
    "SET {s}str_1 x",
    "SORT {s}l BY {s}h_*->f LIMIT 1 3 GET {s}str_*->f",
    "SADD {s}set c a b",
    "SORT {s}set ALPHA",
    "SORT {s}set ALPHA DESC",
    "SORT {s}set",
    "ZADD {s}z 1 c 2 a 3 b",
    "SORT {s}z ALPHA",
    "SORT {s}z BY nosort",
    "SORT {s}z BY nosort DESC LIMIT 0 2",
    "SORT {s}z BY nosort LIMIT 1 5",
    "SORT {s}l STORE {s}dst",
    "LRANGE {s}dst 0 -1",
    "TYPE {s}dst",
    "SORT {s}l GET {s}w_* STORE {s}dst",
    "LRANGE {s}dst 0 -1",
    "SORT {s}set BY nosort STORE {s}dst",
    "LRANGE {s}dst 0 -1",
    "SET {s}strdst v",
    "SORT {s}l LIMIT 0 2 STORE {s}strdst",
    "TYPE {s}strdst",
    "SORT {s}nosuch STORE {s}dst",
    "EXISTS {s}dst",
    "SORT_RO {s}l",
    "SORT_RO {s}l BY {s}w_* GET #",
    "SORT_RO {s}l STORE {s}dst",
    "SET str x",
    "SORT str",
    "SORT_RO str",
    "SORT nosuch",
    "SORT nosuch ALPHA LIMIT 0 1",
    "HSET hash a 1",
    "SORT hash",
    "COMMAND INFO sort sort_ro",
];

#[test]
fn sort_matches_redis() {
    let (_dir, node, redis) = pair("1");
    run_script(&mut redis.raw(), &mut node.raw(), SORT_SCRIPT);
}

#[test]
fn sort_matches_redis_over_resp3_on_four_shards() {
    let (_dir, node, redis) = pair("4");
    let (mut r, mut e) = (redis.raw(), node.raw());
    r.call(&["HELLO", "3"]);
    e.call(&["HELLO", "3"]);
    run_script(&mut r, &mut e, SORT_SCRIPT);
}

/// Patterns whose keys could be on any shard are refused whatever the
/// shard count, so a command that works on one shard keeps working on
/// more; STORE into another shard is CROSSSLOT.
#[test]
fn sort_refuses_keys_beyond_the_sorted_keys_shard() {
    let (_dir, node, _redis) = pair("4");
    let mut e = node.raw();
    e.call(&["RPUSH", "{s}l", "1", "2"]);
    let refused = |reply: Vec<u8>| {
        let text = String::from_utf8(reply).unwrap();
        assert!(
            text.starts_with("-ERR BY option of SORT needs a pattern")
                || text.starts_with("-ERR GET option of SORT needs a pattern"),
            "{text}"
        );
    };
    refused(e.call(&["SORT", "{s}l", "BY", "w_*"]));
    refused(e.call(&["SORT", "{s}l", "GET", "o_*->f"]));
    refused(e.call(&["SORT_RO", "{s}l", "GET", "o_*{s}"]));
    assert_eq!(
        e.call(&["SORT", "{s}l", "BY", "{other}w_*"]),
        b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );
    assert_eq!(
        e.call(&["SORT", "{s}l", "STORE", "elsewhere"]),
        b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );
    assert_eq!(
        e.call(&["SORT", "{s}l", "BY", "nosort", "GET", "#"]),
        b"*2\r\n$1\r\n1\r\n$1\r\n2\r\n"
    );
}
