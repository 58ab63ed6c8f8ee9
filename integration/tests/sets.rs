//! Sets against redis-server 7.0: scripted edge cases and seeded random
//! command streams mixing sets with hashes, strings and keyspace commands,
//! on one and four shards, RESP2 and RESP3; SPOP and SRANDMEMBER checked
//! for what they promise; SSCAN paging a large set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use elastickv_integration::diff::{pair, random_stream, run_script, set_command};

const SET_SCRIPT: &[&str] = &[
    "SADD s a b c",
    "SADD s a d",
    "SADD s",
    "SMEMBERS s",
    "SMEMBERS nosuch",
    "SCARD s",
    "SCARD nosuch",
    "SISMEMBER s a",
    "SISMEMBER s z",
    "SISMEMBER nosuch a",
    "SMISMEMBER s a z d",
    "SMISMEMBER nosuch a b",
    "SREM s a z",
    "SREM nosuch a",
    "SREM s",
    "SADD s \"\" \"a b\" \"\\x00\\xff\"",
    "SISMEMBER s \"\"",
    "SMEMBERS s",
    "SADD {t}a 1 2 3 4",
    "SADD {t}b 3 4 5",
    "SADD {t}c 4 5 6",
    "SINTER {t}a {t}b",
    "SINTER {t}a {t}b {t}c",
    "SINTER {t}a {t}nosuch",
    "SUNION {t}a {t}b {t}c",
    "SUNION {t}nosuch",
    "SDIFF {t}a {t}b",
    "SDIFF {t}a {t}b {t}c",
    "SDIFF {t}nosuch {t}a",
    "SDIFF {t}a {t}a",
    "SINTERSTORE {t}d {t}a {t}b",
    "SMEMBERS {t}d",
    "SUNIONSTORE {t}d {t}a {t}c",
    "SCARD {t}d",
    "SDIFFSTORE {t}d {t}a {t}b",
    "SMEMBERS {t}d",
    "SINTERSTORE {t}d {t}a {t}nosuch",
    "EXISTS {t}d",
    "SET {t}str x",
    "SINTER {t}a {t}str",
    "SINTER {t}nosuch {t}str",
    "SUNION {t}a {t}str",
    "SDIFF {t}str {t}a",
    "SUNIONSTORE {t}str {t}a {t}b",
    "TYPE {t}str",
    "SMEMBERS {t}str",
    "SET {t}str x",
    "SINTERSTORE {t}d {t}a {t}str",
    "SUNIONSTORE {t}a {t}a {t}b",
    "SMEMBERS {t}a",
    "SINTERCARD 2 {t}a {t}b",
    "SINTERCARD 2 {t}a {t}b LIMIT 1",
    "SINTERCARD 2 {t}a {t}b LIMIT 0",
    "SINTERCARD 1 {t}a",
    "SINTERCARD 2 {t}a {t}nosuch",
    "SINTERCARD 2 {t}a {t}str",
    "SINTERCARD 0 {t}a",
    "SINTERCARD x {t}a",
    "SINTERCARD 3 {t}a {t}b",
    "SINTERCARD 1 {t}a LIMIT -1",
    "SINTERCARD 1 {t}a LIMIT x",
    "SINTERCARD 1 {t}a LIMIT",
    "SINTERCARD 1 {t}a BOGUS 1",
    "COMMAND INFO sintercard sinter smove sunionstore",
    "SMOVE {t}a {t}b 1",
    "SINTERCARD 2 {t}a {t}b",
    "SINTERCARD 2 {t}a {t}b LIMIT 1",
    "SINTERCARD 2 {t}a {t}b LIMIT 0",
    "SINTERCARD 1 {t}a",
    "SINTERCARD 2 {t}a {t}nosuch",
    "SINTERCARD 2 {t}a {t}str",
    "SINTERCARD 0 {t}a",
    "SINTERCARD x {t}a",
    "SINTERCARD 3 {t}a {t}b",
    "SINTERCARD 1 {t}a LIMIT -1",
    "SINTERCARD 1 {t}a LIMIT x",
    "SINTERCARD 1 {t}a LIMIT",
    "SINTERCARD 1 {t}a BOGUS 1",
    "COMMAND INFO sintercard sinter smove sunionstore",
    "SMOVE {t}a {t}b 1",
    "SMOVE {t}a {t}e 2",
    "SMEMBERS {t}e",
    "SMOVE {t}nosuch {t}e 2",
    "SMOVE {t}e {t}e 2",
    "SMOVE {t}e {t}e 9",
    "SMOVE {t}e {t}str 2",
    "SMOVE {t}str {t}e 2",
    "SMOVE {t}e {t}f 2",
    "EXISTS {t}e",
    "SMEMBERS {t}f",
    "SET str x",
    "SADD str a",
    "SREM str a",
    "SMEMBERS str",
    "SISMEMBER str a",
    "SMISMEMBER str a",
    "SCARD str",
    "SPOP str",
    "SPOP str 2",
    "SRANDMEMBER str",
    "SRANDMEMBER str 2",
    "SSCAN str 0",
    "SPOP nosuch",
    "SPOP nosuch 3",
    "SPOP s -1",
    "SPOP s x",
    "SPOP s 1 2",
    "SPOP s 0",
    "SRANDMEMBER nosuch",
    "SRANDMEMBER nosuch 3",
    "SRANDMEMBER s 0",
    "SRANDMEMBER s x",
    "SRANDMEMBER s 1 2",
    "SRANDMEMBER s -9223372036854775808",
    "SRANDMEMBER s 100",
    "SADD one x",
    "SPOP one",
    "EXISTS one",
    "SADD many a b c",
    "SPOP many 10",
    "EXISTS many",
    "SADD sc a b ab \"a b\" 1 2 3",
    "SSCAN nosuch 0",
    "SSCAN nosuch 0 BOGUS",
    "SSCAN sc x",
    "SSCAN sc 0 COUNT 0",
    "SSCAN sc 0 TYPE set",
    "SSCAN sc 0 MATCH a*",
    "SSCAN sc 0",
    "SADD {t}ttl a",
    "EXPIRE {t}ttl 100",
    "SADD {t}ttl b",
    "TTL {t}ttl",
    "RENAME {t}ttl {t}ttl2",
    "SMEMBERS {t}ttl2",
    "TTL {t}ttl2",
    "SADD gone a",
    "EXPIRE gone 0",
    "SMEMBERS gone",
    "DEL s",
    "SMEMBERS s",
    "TYPE sc",
    "SCAN 0 TYPE set COUNT 1000",
    "SCAN 0 TYPE string COUNT 1000",
    "SCAN 0 TYPE zset COUNT 1000",
    "DBSIZE",
];

#[test]
fn set_commands_match_redis() {
    let (_dir, node, redis) = pair("1");
    run_script(&mut redis.raw(), &mut node.raw(), SET_SCRIPT);
}

#[test]
fn set_commands_match_redis_over_resp3_on_four_shards() {
    let (_dir, node, redis) = pair("4");
    let (mut r, mut e) = (redis.raw(), node.raw());
    r.call(&["HELLO", "3"]);
    e.call(&["HELLO", "3"]);
    run_script(&mut r, &mut e, SET_SCRIPT);
    // Keys of different shards: Redis Cluster's answer.
    assert_eq!(
        e.call(&["SINTER", "a", "b", "c", "d"]),
        b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );
    assert_eq!(
        e.call(&["SMOVE", "a", "b", "x"]),
        b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );
}

/// Members of a RESP2 array reply.
fn elements(reply: Vec<u8>) -> Vec<String> {
    let text = String::from_utf8(reply).unwrap();
    let mut lines = text.split("\r\n");
    let head = lines.next().unwrap();
    assert!(head.starts_with('*'), "{text}");
    lines
        .filter(|l| !l.is_empty() && !l.starts_with('$'))
        .map(str::to_string)
        .collect()
}

/// SPOP and SRANDMEMBER answer at random: checked for what Redis
/// promises, and SPOP for removing exactly what it answered.
#[test]
fn random_set_answers_have_the_promised_shape() {
    let (_dir, node, _redis) = pair("1");
    let mut e = node.raw();
    let members: Vec<String> = (0..60).map(|i| format!("m{i}")).collect();
    let mut sadd = vec!["SADD", "s"];
    sadd.extend(members.iter().map(String::as_str));
    e.call(&sadd);
    for _ in 0..10 {
        let distinct = elements(e.call(&["SRANDMEMBER", "s", "10"]));
        let mut unique = distinct.clone();
        unique.sort();
        unique.dedup();
        assert_eq!((distinct.len(), unique.len()), (10, 10));
        assert!(distinct.iter().all(|m| members.contains(m)));
        let repeated = elements(e.call(&["SRANDMEMBER", "s", "-100"]));
        assert_eq!(repeated.len(), 100);
        assert!(repeated.iter().all(|m| members.contains(m)));
    }
    let mut left: std::collections::BTreeSet<String> = members.iter().cloned().collect();
    let popped = elements(e.call(&["SPOP", "s", "7"]));
    assert_eq!(popped.len(), 7);
    for m in &popped {
        assert!(left.remove(m), "{m} popped twice or never there");
    }
    let one = String::from_utf8(e.call(&["SPOP", "s"])).unwrap();
    let one = one.split("\r\n").nth(1).unwrap().to_string();
    assert!(left.remove(&one), "{one}");
    let now: std::collections::BTreeSet<String> =
        elements(e.call(&["SMEMBERS", "s"])).into_iter().collect();
    assert_eq!(now, left);
    assert_eq!(
        e.call(&["SCARD", "s"]),
        format!(":{}\r\n", left.len()).into_bytes()
    );
}

/// SSCAN over a set too large for one reply returns every member.
#[test]
fn sscan_pages_through_a_large_set() {
    let (_dir, node, _redis) = pair("1");
    let mut e = node.raw();
    let n = 2000;
    for chunk in (0..n).collect::<Vec<_>>().chunks(200) {
        let names: Vec<String> = chunk.iter().map(|i| format!("member:{i}")).collect();
        let mut cmd = vec!["SADD", "big"];
        cmd.extend(names.iter().map(String::as_str));
        e.call(&cmd);
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut cursor = "0".to_string();
    let mut calls = 0;
    loop {
        let reply = String::from_utf8(e.call(&["SSCAN", "big", &cursor])).unwrap();
        let lines: Vec<&str> = reply.split("\r\n").collect();
        cursor = lines[2].to_string();
        seen.extend(
            lines[4..]
                .iter()
                .filter(|l| !l.is_empty() && !l.starts_with('$'))
                .map(|l| l.to_string()),
        );
        calls += 1;
        assert!(calls < 2000, "SSCAN never finished");
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(seen.len(), n);
    assert!(calls > 100, "{calls} calls with COUNT 10");
}

#[test]
fn random_set_commands_match_redis_on_one_shard() {
    random_stream("1", 7_000..7_004, 800, false, set_command);
}

#[test]
fn random_set_commands_match_redis_on_four_shards_over_resp3() {
    random_stream("4", 8_000..8_004, 800, true, set_command);
}
