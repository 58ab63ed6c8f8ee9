//! Hashes against redis-server 7.0: scripted edge cases and seeded random
//! command streams mixing hashes with strings and keyspace commands, on one
//! and four shards, RESP2 and RESP3, and the random replies' properties.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use elastickv_integration::diff::{hash_command, pair, random_stream, run_script, words};

const HASH_SCRIPT: &[&str] = &[
    "HSET h f v",
    "HGET h f",
    "HSET h f v2 g w",
    "HSET h f",
    "HSET h f v g",
    "HMSET h a 1 b 2",
    "HMSET h a",
    "HGETALL h",
    "HKEYS h",
    "HVALS h",
    "HLEN h",
    "HMGET h f nosuch a",
    "HMGET nosuch f g",
    "HEXISTS h f",
    "HEXISTS h nosuch",
    "HEXISTS nosuch f",
    "HSTRLEN h f",
    "HSTRLEN h nosuch",
    "HSTRLEN nosuch f",
    "HSETNX h f x",
    "HSETNX h new x",
    "HSETNX fresh f x",
    "HGETALL fresh",
    "HDEL h f nosuch",
    "HDEL h f",
    "HDEL nosuch f",
    "HINCRBY h n 5",
    "HINCRBY h n -10",
    "HINCRBY h n x",
    "HINCRBY h g 1",
    "HINCRBY h big 9223372036854775807",
    "HINCRBY h big 1",
    "HINCRBY h neg -9223372036854775808",
    "HINCRBY h neg -1",
    "HINCRBY h n 99999999999999999999",
    "HINCRBYFLOAT h fl 1.5",
    "HINCRBYFLOAT h fl 0.1",
    "HINCRBYFLOAT h fl x",
    "HINCRBYFLOAT h fl inf",
    "HINCRBYFLOAT h fl -inf",
    "HINCRBYFLOAT h fl nan",
    "HINCRBYFLOAT h g 1",
    "HINCRBYFLOAT h n 2.5",
    "HINCRBYFLOAT h huge 1.7976931348623157e308",
    "HINCRBYFLOAT h huge 1.7976931348623157e308",
    "HINCRBYFLOAT nosuch f 1e3",
    "HSET h \"\" empty",
    "HGET h \"\"",
    "HSET h \"a b\" \"c d\"",
    "HGET h \"a b\"",
    "HSET h \"\\x00\\xff\" bin",
    "HGET h \"\\x00\\xff\"",
    "HSET h 'quote\"d' '\"'",
    "HGETALL h",
    "HLEN h",
    "TYPE h",
    "SET s str",
    "HSET s f v",
    "HSETNX s f v",
    "HGET s f",
    "HMGET s a",
    "HGETALL s",
    "HKEYS s",
    "HLEN s",
    "HEXISTS s f",
    "HSTRLEN s f",
    "HDEL s f",
    "HINCRBY s f 1",
    "HINCRBYFLOAT s f 1",
    "HSCAN s 0",
    "HRANDFIELD s",
    "HRANDFIELD s 3",
    "GET h",
    "APPEND h x",
    "INCR h",
    "HRANDFIELD nosuch",
    "HRANDFIELD nosuch 5",
    "HRANDFIELD nosuch 5 WITHVALUES",
    "HRANDFIELD h 0",
    "HRANDFIELD h x",
    "HRANDFIELD h 1 WITHVALUES BOGUS",
    "HRANDFIELD h 1 BOGUS",
    "HRANDFIELD h -9223372036854775808",
    "HRANDFIELD h 9223372036854775807 WITHVALUES",
    "HRANDFIELD h 100",
    "HRANDFIELD h 100 WITHVALUES",
    // HSCAN on a small hash: Redis answers in one reply with cursor 0
    // (its compact encoding); so does elastickv up to 128 fields. (Redis
    // pages a hash with a long value; cursors then cannot match.)
    "HSET sc a 1 b 2 ab 3 \"a b\" 4",
    "HSCAN nosuch 0",
    "HSCAN nosuch 0 BOGUS",
    "HSCAN sc x",
    "HSCAN sc 0 COUNT 0",
    "HSCAN sc 0 COUNT x",
    "HSCAN sc 0 TYPE string",
    "HSCAN sc 0 MATCH a*",
    "HSCAN sc 0 MATCH * COUNT 1",
    "HSCAN sc 0 BOGUS",
    "HSCAN sc 0",
    "EXPIRE h 100",
    "TTL h",
    "RENAME h h2",
    "EXISTS h",
    "HGETALL h2",
    "TTL h2",
    "HSET h fresh 1",
    "RENAME h2 h",
    "HGETALL h",
    "SET h overwritten",
    "HGETALL h",
    "GET h",
    "HSET z a 1",
    "PERSIST z",
    "EXPIRE z 0",
    "HGETALL z",
    "EXISTS z",
    "HSET e a 1 b 2",
    "HDEL e a b",
    "EXISTS e",
    "TYPE e",
    "HSET d a 1",
    "DEL d",
    "HGET d a",
    "HSET d b 2",
    "HGETALL d",
    "HSET {t}cp a 1 b 2",
    "COPY {t}cp {t}cp2",
    "HGETALL {t}cp2",
    "HSET {t}cp2 c 3",
    "HGETALL {t}cp",
    "HLEN {t}cp2",
    "SET {t}cs x",
    "COPY {t}cp {t}cs",
    "COPY {t}cp {t}cs REPLACE",
    "TYPE {t}cs",
    "HGETALL {t}cs",
    "SCAN 0 TYPE hash COUNT 1000",
    "SCAN 0 TYPE string COUNT 1000",
    "SCAN 0 TYPE HASH MATCH {t}* COUNT 1000",
    "DBSIZE",
    "FLUSHALL",
    "HGETALL d",
    "DBSIZE",
];

#[test]
fn hash_commands_match_redis() {
    let (_dir, node, redis) = pair("1");
    run_script(&mut redis.raw(), &mut node.raw(), HASH_SCRIPT);
}

#[test]
fn hash_commands_match_redis_over_resp3_on_four_shards() {
    let (_dir, node, redis) = pair("4");
    let (mut r, mut e) = (redis.raw(), node.raw());
    r.call(&["HELLO", "3"]);
    e.call(&["HELLO", "3"]);
    // RESP3: HGETALL is a map, HRANDFIELD ... WITHVALUES nested pairs
    // (compared here with one pair, whose order cannot differ).
    run_script(
        &mut r,
        &mut e,
        &[
            "HSET h a 1 b 2 c 3",
            "HGETALL h",
            "HGETALL nosuch",
            "HMGET h a x",
            "HGET h x",
            "HRANDFIELD nosuch",
            "HRANDFIELD h 0 WITHVALUES",
            "HSET one f v",
            "HRANDFIELD one 1 WITHVALUES",
            "HRANDFIELD one -3 WITHVALUES",
            "HINCRBYFLOAT h a 0.5",
            "HSCAN h 0 MATCH a",
        ],
    );
}

/// HRANDFIELD's random answers, checked for what Redis promises.
#[test]
fn hrandfield_answers_have_the_promised_shape() {
    let (_dir, node, _redis) = pair("1");
    let mut e = node.raw();
    let fields: Vec<String> = (0..50).map(|i| format!("f{i}")).collect();
    let mut hset = vec!["HSET".to_string(), "h".into()];
    for f in &fields {
        hset.extend([f.clone(), format!("v{f}")]);
    }
    let hset: Vec<&str> = hset.iter().map(String::as_str).collect();
    e.call(&hset);
    let elements = |reply: Vec<u8>| -> Vec<String> {
        let text = String::from_utf8(reply).unwrap();
        let mut lines = text.split("\r\n");
        let head = lines.next().unwrap();
        assert!(head.starts_with('*'), "{text}");
        lines
            .filter(|l| !l.is_empty() && !l.starts_with('$'))
            .map(str::to_string)
            .collect()
    };
    for _ in 0..20 {
        let one = String::from_utf8(e.call(&["HRANDFIELD", "h"])).unwrap();
        assert!(
            fields
                .iter()
                .any(|f| one == format!("${}\r\n{f}\r\n", f.len())),
            "{one}"
        );
        // A positive count: distinct fields, as many as asked.
        let distinct = elements(e.call(&["HRANDFIELD", "h", "10"]));
        let mut unique = distinct.clone();
        unique.sort();
        unique.dedup();
        assert_eq!((distinct.len(), unique.len()), (10, 10), "{distinct:?}");
        assert!(distinct.iter().all(|f| fields.contains(f)));
        // A negative count: exactly that many, repeats allowed.
        let repeated = elements(e.call(&["HRANDFIELD", "h", "-80"]));
        assert_eq!(repeated.len(), 80);
        assert!(repeated.iter().all(|f| fields.contains(f)));
        // With values: each field followed by its own value.
        let pairs = elements(e.call(&["HRANDFIELD", "h", "-7", "WITHVALUES"]));
        assert_eq!(pairs.len(), 14);
        for p in pairs.chunks(2) {
            assert_eq!(p[1], format!("v{}", p[0]));
        }
    }
}

/// HSCAN over a hash too large for one reply: every field present
/// throughout comes back at least once, and the cursor ends at 0.
#[test]
fn hscan_pages_through_a_large_hash() {
    let (_dir, node, _redis) = pair("1");
    let mut e = node.raw();
    let n = 1000;
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let mut cmd = vec!["HSET".to_string(), "big".into()];
        for i in chunk {
            cmd.extend([format!("field:{i}"), i.to_string()]);
        }
        let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
        e.call(&cmd);
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut cursor = "0".to_string();
    let mut calls = 0;
    loop {
        let reply = String::from_utf8(e.call(&["HSCAN", "big", &cursor, "COUNT", "50"])).unwrap();
        let lines: Vec<&str> = reply.split("\r\n").collect();
        // *2, $len, cursor, *items, then $len/field/$len/value...
        cursor = lines[2].to_string();
        let items: Vec<&str> = lines[4..]
            .iter()
            .filter(|l| !l.is_empty() && !l.starts_with('$'))
            .copied()
            .collect();
        for pair in items.chunks(2) {
            assert_eq!(pair[0], format!("field:{}", pair[1]));
            seen.insert(pair[0].to_string());
        }
        calls += 1;
        assert!(calls < 1000, "HSCAN never finished");
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(seen.len(), n);
    assert!(calls > 10, "a 1000-field hash came back in {calls} calls");
}

#[test]
fn random_hash_commands_match_redis_on_one_shard() {
    random_stream("1", 5_000..5_004, 800, false, hash_command);
}

#[test]
fn random_hash_commands_match_redis_on_four_shards_over_resp3() {
    random_stream("4", 6_000..6_004, 800, true, hash_command);
}

#[test]
fn scripted_words_reach_both_servers_as_written() {
    // The quoting the scripts rely on.
    assert_eq!(words("HSET h \"a b\" ''")[2], b"a b".to_vec());
    assert_eq!(words("HSET h \"a b\" ''")[3], Vec::<u8>::new());
}
