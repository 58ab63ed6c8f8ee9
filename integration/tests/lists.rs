//! Lists against redis-server 7.0: scripted edge cases (indexes at and
//! past both ends, empty lists disappearing, wrong types, binary and empty
//! elements) and seeded random command streams mixing lists with other
//! types, on one and four shards, RESP2 and RESP3; LRANGE on a long list.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use elastickv_integration::diff::{list_command, pair, random_stream, run_script};

const LIST_SCRIPT: &[&str] = &[
    "LPUSH l a b c",
    "RPUSH l d e",
    "LRANGE l 0 -1",
    "LLEN l",
    "LLEN nosuch",
    "LINDEX l 0",
    "LINDEX l -1",
    "LINDEX l 4",
    "LINDEX l 5",
    "LINDEX l -5",
    "LINDEX l -6",
    "LINDEX l x",
    "LINDEX nosuch x",
    "LINDEX l 9223372036854775807",
    "LINDEX l -9223372036854775808",
    "LRANGE l 1 2",
    "LRANGE l -2 -1",
    "LRANGE l -100 100",
    "LRANGE l 3 1",
    "LRANGE l 5 10",
    "LRANGE l -1 -2",
    "LRANGE l x 1",
    "LRANGE nosuch 0 -1",
    "LRANGE l -9223372036854775808 9223372036854775807",
    "LPUSHX nosuch a",
    "RPUSHX nosuch a",
    "EXISTS nosuch",
    "LPUSHX l x y",
    "RPUSHX l z",
    "LRANGE l 0 -1",
    "LSET l 0 first",
    "LSET l -1 last",
    "LSET l 100 x",
    "LSET l x y",
    "LSET nosuch 0 x",
    "LSET nosuch x x",
    "LRANGE l 0 -1",
    "LPOP l",
    "RPOP l",
    "LPOP l 2",
    "RPOP l 2",
    "LPOP l 0",
    "LPOP l -1",
    "LPOP l x",
    "LPOP l 1 2",
    "LPOP nosuch",
    "LPOP nosuch 2",
    "RPOP nosuch 0",
    "LRANGE l 0 -1",
    "LPOP l 100",
    "EXISTS l",
    "RPUSH r 1 2 3 2 1 2",
    "LREM r 2 2",
    "LRANGE r 0 -1",
    "RPUSH r 2 2 4",
    "LREM r -2 2",
    "LRANGE r 0 -1",
    "LREM r 0 1",
    "LRANGE r 0 -1",
    "LREM r 0 nothing",
    "LREM r x 1",
    "LREM nosuch 0 a",
    "LREM r 0 2",
    "LREM r 0 3",
    "LRANGE r 0 -1",
    "LREM r 0 4",
    "EXISTS r",
    "RPUSH t 0 1 2 3 4 5 6 7 8 9",
    "LTRIM t 1 -2",
    "LRANGE t 0 -1",
    "LTRIM t -3 100",
    "LRANGE t 0 -1",
    "LTRIM t 5 1",
    "EXISTS t",
    "LTRIM nosuch 0 1",
    "LTRIM t x 1",
    "RPUSH i a b c",
    "LINSERT i BEFORE b x",
    "LINSERT i AFTER c y",
    "LINSERT i AFTER a z",
    "LINSERT i BEFORE a w",
    "LRANGE i 0 -1",
    "LINSERT i BEFORE nosuch q",
    "LINSERT i SIDEWAYS a q",
    "LINSERT nosuch BEFORE a q",
    "LINSERT nosuch SIDEWAYS a q",
    "RPUSH p a b c a b c a",
    "LPOS p a",
    "LPOS p a RANK 2",
    "LPOS p a RANK -1",
    "LPOS p a RANK -2",
    "LPOS p a COUNT 0",
    "LPOS p a COUNT 2",
    "LPOS p a RANK 2 COUNT 0",
    "LPOS p a RANK -1 COUNT 2",
    "LPOS p a MAXLEN 1",
    "LPOS p b MAXLEN 1",
    "LPOS p a COUNT 0 MAXLEN 4",
    "LPOS p nosuch",
    "LPOS p nosuch COUNT 0",
    "LPOS nosuch a",
    "LPOS nosuch a COUNT 1",
    "LPOS p a RANK 0",
    "LPOS p a RANK x",
    "LPOS p a COUNT -1",
    "LPOS p a MAXLEN -1",
    "LPOS p a BOGUS 1",
    "LPOS p a RANK",
    "LPOS p a RANK 99",
    "RPUSH {t}m 1 2 3",
    "LMOVE {t}m {t}n LEFT RIGHT",
    "LMOVE {t}m {t}n RIGHT LEFT",
    "LRANGE {t}n 0 -1",
    "LMOVE {t}m {t}m LEFT RIGHT",
    "LRANGE {t}m 0 -1",
    "RPUSH {t}m 9",
    "LMOVE {t}m {t}m RIGHT LEFT",
    "LRANGE {t}m 0 -1",
    "LMOVE {t}m {t}n UP DOWN",
    "LMOVE {t}nosuch {t}n LEFT LEFT",
    "SET {t}s x",
    "LMOVE {t}m {t}s LEFT LEFT",
    "LMOVE {t}s {t}m LEFT LEFT",
    "LRANGE {t}m 0 -1",
    "RPOPLPUSH {t}m {t}n",
    "RPOPLPUSH {t}m {t}n",
    "EXISTS {t}m",
    "LRANGE {t}n 0 -1",
    "RPOPLPUSH {t}nosuch {t}n",
    "RPUSH {t}a 1 2 3",
    "RPUSH {t}b 4 5",
    "LMPOP 2 {t}nosuch {t}a LEFT",
    "LMPOP 2 {t}a {t}b RIGHT COUNT 2",
    "LMPOP 2 {t}a {t}b LEFT COUNT 5",
    "LMPOP 2 {t}a {t}b LEFT COUNT 5",
    "LMPOP 1 {t}nosuch LEFT",
    "LMPOP 0 {t}a LEFT",
    "LMPOP x {t}a LEFT",
    "LMPOP 3 {t}a LEFT",
    "LMPOP 1 {t}a MIDDLE",
    "LMPOP 1 {t}a LEFT COUNT 0",
    "LMPOP 1 {t}a LEFT COUNT x",
    "LMPOP 1 {t}a LEFT COUNT 1 COUNT 1",
    "LMPOP 1 {t}a LEFT BOGUS",
    "LMPOP 1 {t}s LEFT",
    "SET str x",
    "LPUSH str a",
    "RPUSHX str a",
    "LPOP str",
    "LRANGE str 0 -1",
    "LINDEX str 0",
    "LLEN str",
    "LSET str 0 x",
    "LREM str 0 x",
    "LTRIM str 0 1",
    "LINSERT str BEFORE a b",
    "LPOS str a",
    "RPUSH b \"\" \"a b\" \"\\x00\\xff\"",
    "LRANGE b 0 -1",
    "LPOS b \"\"",
    "LREM b 0 \"\\x00\\xff\"",
    "LRANGE b 0 -1",
    "TYPE b",
    "RPUSH {t}e 1 2",
    "EXPIRE {t}e 100",
    "RPUSH {t}e 3",
    "TTL {t}e",
    "RENAME {t}e {t}f",
    "LRANGE {t}f 0 -1",
    "TTL {t}f",
    "COMMAND INFO lmpop lmove lpush",
    "COPY {t}f {t}g",
    "LRANGE {t}g 0 -1",
    "RPUSH {t}g 4",
    "LRANGE {t}f 0 -1",
    "TOUCH {t}f",
    "SCAN 0 TYPE list COUNT 1000",
    "SCAN 0 TYPE set COUNT 1000",
    "DBSIZE",
];

#[test]
fn list_commands_match_redis() {
    let (_dir, node, redis) = pair("1");
    run_script(&mut redis.raw(), &mut node.raw(), LIST_SCRIPT);
}

#[test]
fn list_commands_match_redis_over_resp3_on_four_shards() {
    let (_dir, node, redis) = pair("4");
    let (mut r, mut e) = (redis.raw(), node.raw());
    r.call(&["HELLO", "3"]);
    e.call(&["HELLO", "3"]);
    run_script(&mut r, &mut e, LIST_SCRIPT);
    assert_eq!(
        e.call(&["LMOVE", "a", "b", "LEFT", "LEFT"]),
        b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );
}

/// A long list: pushes at both ends, reads in the middle, a trim; the
/// same answers as Redis.
#[test]
fn long_lists_match_redis() {
    let (_dir, node, redis) = pair("1");
    let (mut r, mut e) = (redis.raw(), node.raw());
    for i in 0..200 {
        let values: Vec<String> = (0..50).map(|j| format!("{i}-{j}")).collect();
        let side = if i % 2 == 0 { "LPUSH" } else { "RPUSH" };
        let mut cmd = vec![side, "long"];
        cmd.extend(values.iter().map(String::as_str));
        assert_eq!(r.call(&cmd), e.call(&cmd));
    }
    let lines = [
        "LLEN long",
        "LRANGE long 0 9",
        "LRANGE long 5000 5009",
        "LRANGE long -10 -1",
        "LINDEX long 4321",
        "LINDEX long -4321",
        "LSET long 7777 changed",
        "LRANGE long 7770 7780",
        "LINSERT long AFTER 100-7 inserted",
        "LPOS long inserted",
        "LREM long 0 150-3",
        "LTRIM long 100 -100",
        "LLEN long",
        "LRANGE long 0 4",
        "LRANGE long -5 -1",
        "LPOP long 3",
        "RPOP long 3",
    ];
    run_script(&mut r, &mut e, &lines);
}

#[test]
fn random_list_commands_match_redis_on_one_shard() {
    random_stream("1", 9_000..9_004, 800, false, list_command);
}

#[test]
fn random_list_commands_match_redis_on_four_shards_over_resp3() {
    random_stream("4", 10_000..10_004, 800, true, list_command);
}
