//! Sorted sets against redis-server 7.0: scripted edge cases (options of
//! ZADD, every range form, inf/-inf/-0 and float formatting, lexical
//! ranges, binary members, wrong types, collections emptied by a command
//! disappearing, expiry) and seeded random command streams on one and four
//! shards, RESP2 and RESP3; ZRANDMEMBER checked for what it promises;
//! ZSCAN paging a large sorted set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use elastickv_integration::diff::{mixed_command, pair, random_stream, run_script, zset_command};

const ZSET_SCRIPT: &[&str] = &[
    "ZADD z 1 a 2 b 3 c",
    "ZADD z 1 a",
    "ZADD z",
    "ZADD z 1",
    "ZADD z x a",
    "ZADD z nan a",
    "ZADD z 1 a 2",
    "ZADD z NX XX 1 a",
    "ZADD z NX GT 1 a",
    "ZADD z GT LT 1 a",
    "ZADD z INCR 1 a 2 b",
    "ZADD z CH 5 a 2 b 7 d",
    "ZADD z NX 10 a 11 e",
    "ZADD z XX 10 a 11 f",
    "ZADD z GT 1 a 20 b",
    "ZADD z LT CH 1 a 30 b",
    "ZADD z XX GT CH 100 a",
    "ZRANGE z 0 -1 WITHSCORES",
    "ZADD z INCR 5 a",
    "ZADD z NX INCR 5 a",
    "ZADD z XX INCR 5 nosuch",
    "ZADD z GT INCR -1 a",
    "ZADD z LT INCR -1 a",
    "ZADD nosuch XX 1 a",
    "ZADD nosuch XX INCR 1 a",
    "EXISTS nosuch",
    "ZINCRBY z 1.5 a",
    "ZINCRBY z x a",
    "ZINCRBY z 1 newmember",
    "ZINCRBY z2 inf a",
    "ZINCRBY z2 -inf a",
    "ZSCORE z2 a",
    "ZINCRBY z2 1 a",
    "ZADD z 0.1 p 1e20 q -0 r 1e17 s 3.0 t -1.5e-10 u",
    "ZSCORE z p",
    "ZSCORE z q",
    "ZSCORE z r",
    "ZSCORE z s",
    "ZSCORE z t",
    "ZSCORE z u",
    "ZSCORE z nosuch",
    "ZSCORE nosuch a",
    "ZMSCORE z a p nosuch",
    "ZMSCORE nosuch a b",
    "ZRANGE z 0 -1 WITHSCORES",
    "ZSCAN z 0",
    "ZCARD z",
    "ZCARD nosuch",
    "ZADD w -inf lo +inf hi 0 mid 0x10 hex",
    "ZRANGE w 0 -1 WITHSCORES",
    "ZADD w \" 1\" sp",
    "ZADD w 1e400 big",
    "ZADD w \"\" e",
    "ZRANGEBYSCORE w -inf +inf WITHSCORES",
    "ZRANGEBYSCORE w (0 inf",
    "ZRANGEBYSCORE w \"\" \"\"",
    "ZRANGEBYSCORE w \" 0\" \"(17\"",
    "ZRANGEBYSCORE w 0 x",
    "ZRANGEBYSCORE w nan 1",
    "ZRANGEBYSCORE w ( (",
    "ZCOUNT w -inf +inf",
    "ZCOUNT w (0 (16",
    "ZCOUNT w 5 1",
    "ZCOUNT w x 1",
    "ZCOUNT nosuch 0 1",
    "DEL z w z2",
    "ZADD r 1 a 2 b 3 c 4 d 5 e 6 f",
    "ZRANGE r 0 2",
    "ZRANGE r -2 -1 WITHSCORES",
    "ZRANGE r 2 1",
    "ZRANGE r 5 100",
    "ZRANGE r -100 1",
    "ZRANGE r 6 7",
    "ZRANGE r 0 -1 REV",
    "ZRANGE r 1 3 REV WITHSCORES",
    "ZRANGE r x 1",
    "ZRANGE r 0 1 LIMIT 0 1",
    "ZRANGE r 0 -1 LIMIT 0 -1",
    "ZRANGE r 0 1 BOGUS",
    "ZRANGE r 0 1 LIMIT 0",
    "ZREVRANGE r 0 1",
    "ZREVRANGE r 0 1 WITHSCORES",
    "ZREVRANGE r 0 1 REV",
    "ZREVRANGE r 0 1 BYSCORE",
    "ZRANGE r 2 5 BYSCORE",
    "ZRANGE r (2 5 BYSCORE LIMIT 1 2 WITHSCORES",
    "ZRANGE r 5 2 BYSCORE REV",
    "ZRANGE r 5 (2 BYSCORE REV LIMIT 0 2",
    "ZRANGE r -inf +inf BYSCORE LIMIT 2 -1",
    "ZRANGE r -inf +inf BYSCORE LIMIT -1 2",
    "ZRANGE r -inf +inf BYSCORE LIMIT 6 1",
    "ZRANGE r -inf +inf BYSCORE LIMIT 0 0",
    "ZRANGE r -inf +inf BYSCORE LIMIT x 0",
    "ZRANGE r 0 1 BYSCORE BYLEX",
    "ZRANGE r [a [c BYLEX",
    "ZRANGE r [a [c BYLEX WITHSCORES",
    "ZRANGEBYSCORE r 2 5 LIMIT 1 1",
    "ZRANGEBYSCORE r 2 5 REV",
    "ZREVRANGEBYSCORE r 5 2 WITHSCORES",
    "ZREVRANGEBYSCORE r (5 (2 LIMIT 1 5",
    "ZREVRANGEBYSCORE r 2 5",
    "ZRANGEBYSCORE nosuch 0 1",
    "ZRANK r c",
    "ZRANK r nosuch",
    "ZRANK nosuch a",
    "ZREVRANK r c",
    "ZREVRANK r a",
    "DEL r",
    "ZADD l 0 a 0 b 0 c 0 d 0 e 0 \"\" 0 \"a b\" 0 \"\\x00\\xff\"",
    "ZRANGEBYLEX l - +",
    "ZRANGEBYLEX l [b [d",
    "ZRANGEBYLEX l (b (d",
    "ZRANGEBYLEX l [b +",
    "ZRANGEBYLEX l - (c",
    "ZRANGEBYLEX l + -",
    "ZRANGEBYLEX l - -",
    "ZRANGEBYLEX l [d [b",
    "ZRANGEBYLEX l [b [b",
    "ZRANGEBYLEX l (b [b",
    "ZRANGEBYLEX l [ [",
    "ZRANGEBYLEX l [a +inf",
    "ZRANGEBYLEX l b d",
    "ZRANGEBYLEX l \"\" +",
    "ZRANGEBYLEX l - + LIMIT 2 3",
    "ZRANGEBYLEX l - + LIMIT -1 3",
    "ZRANGEBYLEX l - + WITHSCORES",
    "ZREVRANGEBYLEX l + -",
    "ZREVRANGEBYLEX l [d [b",
    "ZREVRANGEBYLEX l (d - LIMIT 1 2",
    "ZREVRANGEBYLEX l [b [d",
    "ZRANGE l + - BYLEX REV LIMIT 0 3",
    "ZLEXCOUNT l - +",
    "ZLEXCOUNT l [b (d",
    "ZLEXCOUNT l x y",
    "ZLEXCOUNT nosuch - +",
    "ZADD mixed 3 a 1 b 2 c 1 d",
    "ZRANGEBYLEX mixed - +",
    "ZRANGEBYLEX mixed [b [c",
    "ZREVRANGEBYLEX mixed [c -",
    "ZLEXCOUNT mixed [b +",
    "ZREMRANGEBYLEX l [b [c",
    "ZRANGE l 0 -1",
    "ZREMRANGEBYLEX l x y",
    "ZREMRANGEBYLEX l - +",
    "EXISTS l",
    "ZADD rr 1 a 2 b 3 c 4 d 5 e",
    "ZREMRANGEBYRANK rr 0 0",
    "ZREMRANGEBYRANK rr -1 -1",
    "ZREMRANGEBYRANK rr 5 10",
    "ZREMRANGEBYRANK rr x 1",
    "ZRANGE rr 0 -1",
    "ZREMRANGEBYSCORE rr (2 3",
    "ZREMRANGEBYSCORE rr x 3",
    "ZRANGE rr 0 -1 WITHSCORES",
    "ZREMRANGEBYSCORE rr -inf +inf",
    "EXISTS rr",
    "ZREMRANGEBYRANK nosuch 0 1",
    "ZADD p 1 a 2 b 3 c 4 d",
    "ZPOPMIN p",
    "ZPOPMAX p",
    "ZPOPMIN p 0",
    "ZPOPMIN p -1",
    "ZPOPMIN p x",
    "ZPOPMIN p 1 2",
    "ZPOPMAX p 10",
    "EXISTS p",
    "ZPOPMIN nosuch",
    "ZPOPMIN nosuch 2",
    "ZADD {m}a 1 x 2 y",
    "ZADD {m}b 5 z",
    "ZMPOP 2 {m}nosuch {m}a MIN",
    "ZMPOP 2 {m}a {m}b MAX COUNT 5",
    "ZMPOP 2 {m}a {m}b MAX COUNT 5",
    "ZMPOP 2 {m}a {m}b MIN",
    "ZMPOP 0 {m}a MIN",
    "ZMPOP x {m}a MIN",
    "ZMPOP 1 {m}a",
    "ZMPOP 1 {m}a LEFT",
    "ZMPOP 1 {m}a MIN COUNT 0",
    "ZMPOP 1 {m}a MIN COUNT 1 COUNT 1",
    "ZMPOP 3 {m}a MIN",
    "ZREM nosuch a",
    "ZADD del 1 a 2 b",
    "ZREM del a nosuch a",
    "ZREM del b",
    "EXISTS del",
    "SET str x",
    "ZADD str 1 a",
    "ZINCRBY str 1 a",
    "ZREM str a",
    "ZSCORE str a",
    "ZMSCORE str a",
    "ZCARD str",
    "ZCOUNT str 0 1",
    "ZLEXCOUNT str - +",
    "ZRANK str a",
    "ZRANGE str 0 1",
    "ZRANGEBYSCORE str 0 1",
    "ZRANGEBYLEX str - +",
    "ZREMRANGEBYRANK str 0 1",
    "ZREMRANGEBYSCORE str 0 1",
    "ZREMRANGEBYLEX str - +",
    "ZPOPMIN str",
    "ZRANDMEMBER str",
    "ZSCAN str 0",
    "ZADD {s}a 1 x 2 y 3 z",
    "ZADD {s}b 10 y 20 z 30 w",
    "SADD {s}set y w q",
    "SET {s}str v",
    "ZUNION 2 {s}a {s}b",
    "ZUNION 2 {s}a {s}b WITHSCORES",
    "ZUNION 2 {s}a {s}b WEIGHTS 2 0.5 WITHSCORES",
    "ZUNION 2 {s}a {s}b AGGREGATE MIN WITHSCORES",
    "ZUNION 2 {s}a {s}b AGGREGATE MAX WITHSCORES",
    "ZUNION 3 {s}a {s}b {s}set WITHSCORES",
    "ZUNION 2 {s}a {s}nosuch WITHSCORES",
    "ZUNION 2 {s}a {s}str",
    "ZUNION 2 {s}a {s}str BOGUS",
    "ZUNION 2 {s}a {s}b BOGUS",
    "ZUNION 2 {s}a {s}b WEIGHTS 1",
    "ZUNION 2 {s}a {s}b WEIGHTS 1 x",
    "ZUNION 2 {s}a {s}b AGGREGATE AVG",
    "ZUNION 0 {s}a",
    "ZUNION x {s}a",
    "ZUNION 3 {s}a {s}b",
    "ZUNION -1 {s}a",
    "ZINTER 2 {s}a {s}b WITHSCORES",
    "ZINTER 2 {s}a {s}b WEIGHTS 1 -1 AGGREGATE MAX WITHSCORES",
    "ZINTER 3 {s}a {s}b {s}set WITHSCORES",
    "ZINTER 2 {s}a {s}a WITHSCORES",
    "ZINTER 2 {s}a {s}nosuch",
    "ZDIFF 2 {s}a {s}b WITHSCORES",
    "ZDIFF 2 {s}b {s}set WITHSCORES",
    "ZDIFF 1 {s}b",
    "ZDIFF 2 {s}a {s}b WEIGHTS 1 1",
    "ZDIFF 2 {s}a {s}a",
    "ZINTERCARD 2 {s}a {s}b",
    "ZINTERCARD 2 {s}a {s}b LIMIT 1",
    "ZINTERCARD 2 {s}a {s}b LIMIT -1",
    "ZINTERCARD 2 {s}a {s}b WITHSCORES",
    "ZINTERCARD 0 {s}a",
    "ZUNIONSTORE {s}d 2 {s}a {s}b WEIGHTS 1 2",
    "ZRANGE {s}d 0 -1 WITHSCORES",
    "ZINTERSTORE {s}d 2 {s}a {s}b AGGREGATE MIN",
    "ZRANGE {s}d 0 -1 WITHSCORES",
    "ZDIFFSTORE {s}d 2 {s}a {s}b",
    "ZRANGE {s}d 0 -1 WITHSCORES",
    "ZINTERSTORE {s}d 2 {s}a {s}nosuch",
    "EXISTS {s}d",
    "ZUNIONSTORE {s}str 1 {s}a",
    "TYPE {s}str",
    "SET {s}str v",
    "ZUNIONSTORE {s}d 2 {s}a {s}str",
    "ZUNIONSTORE {s}d 2 {s}a {s}b WITHSCORES",
    "ZUNIONSTORE {s}d 2 {s}a {s}str WITHSCORES",
    "ZUNIONSTORE {s}d 0 {s}a",
    "ZUNIONSTORE {s}a 2 {s}a {s}b",
    "ZRANGE {s}a 0 -1 WITHSCORES",
    "ZADD {s}inf inf x -inf y",
    "ZUNION 2 {s}inf {s}inf WEIGHTS 1 -1 WITHSCORES",
    "ZUNION 1 {s}inf WEIGHTS 0 WITHSCORES",
    "ZRANGESTORE {s}dst {s}b 0 1",
    "ZRANGE {s}dst 0 -1 WITHSCORES",
    "ZRANGESTORE {s}dst {s}b (10 +inf BYSCORE LIMIT 0 1",
    "ZRANGE {s}dst 0 -1 WITHSCORES",
    "ZRANGESTORE {s}dst {s}b + - BYLEX REV",
    "ZRANGESTORE {s}dst {s}nosuch 0 -1",
    "EXISTS {s}dst",
    "ZRANGESTORE {s}dst {s}b 0 -1 WITHSCORES",
    "ZRANGESTORE {s}dst {s}str 0 -1",
    "ZRANGESTORE {s}str {s}b 0 0",
    "TYPE {s}str",
    "ZRANGESTORE {s}dst {s}b 5 6",
    "EXISTS {s}dst",
    "ZRANDMEMBER nosuch",
    "ZRANDMEMBER nosuch 3",
    "ZRANDMEMBER nosuch 3 WITHSCORES",
    "ZRANDMEMBER {s}b 0",
    "ZRANDMEMBER {s}b x",
    "ZRANDMEMBER {s}b 1 2",
    "ZRANDMEMBER {s}b 1 WITHSCORES x",
    "ZRANDMEMBER {s}b -9223372036854775808",
    "ZRANDMEMBER {s}b 9223372036854775807 WITHSCORES",
    "ZRANDMEMBER {s}b 100",
    "ZRANDMEMBER {s}b 100 WITHSCORES",
    "ZADD sc 1 a 2 b 3 ab 4 \"a b\" 5 1",
    "ZSCAN nosuch 0",
    "ZSCAN sc x",
    "ZSCAN sc 0 COUNT 0",
    "ZSCAN sc 0 MATCH a*",
    "ZSCAN sc 0 NOVALUES",
    "ZSCAN sc 0",
    "ZADD {t}ttl 1 a",
    "EXPIRE {t}ttl 100",
    "ZADD {t}ttl 2 b",
    "TTL {t}ttl",
    "ZINCRBY {t}ttl 1 a",
    "TTL {t}ttl",
    "RENAME {t}ttl {t}ttl2",
    "ZRANGE {t}ttl2 0 -1 WITHSCORES",
    "TTL {t}ttl2",
    "COPY {t}ttl2 {t}copy",
    "ZRANGE {t}copy 0 -1 WITHSCORES",
    "ZADD gone 1 a",
    "PEXPIREAT gone 1",
    "ZRANGE gone 0 -1",
    "TYPE sc",
    "OBJECT ENCODING sc",
    "ZADD long 1 aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "OBJECT ENCODING long",
    "SCAN 0 TYPE zset COUNT 1000",
    "DBSIZE",
    "COMMAND INFO zadd zunionstore zrangestore zmpop zintercard zrange",
];

#[test]
fn sorted_set_commands_match_redis() {
    let (_dir, node, redis) = pair("1");
    run_script(&mut redis.raw(), &mut node.raw(), ZSET_SCRIPT);
}

#[test]
fn sorted_set_commands_match_redis_over_resp3_on_four_shards() {
    let (_dir, node, redis) = pair("4");
    let (mut r, mut e) = (redis.raw(), node.raw());
    r.call(&["HELLO", "3"]);
    e.call(&["HELLO", "3"]);
    run_script(&mut r, &mut e, ZSET_SCRIPT);
    assert_eq!(
        e.call(&["ZUNIONSTORE", "a", "2", "b", "c"]),
        b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );
    assert_eq!(
        e.call(&["ZRANGESTORE", "a", "b", "0", "1"]),
        b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );
}

#[test]
fn random_sorted_set_commands_match_redis_on_one_shard() {
    random_stream("1", 9_000..9_004, 800, false, zset_command);
}

#[test]
fn random_sorted_set_commands_match_redis_on_four_shards_over_resp3() {
    random_stream("4", 9_100..9_104, 800, true, zset_command);
}

/// Every type over one shared pool of keys.
#[test]
fn random_commands_of_every_type_match_redis_on_one_shard() {
    random_stream("1", 9_200..9_204, 1000, false, mixed_command);
}

#[test]
fn random_commands_of_every_type_match_redis_on_four_shards_over_resp3() {
    random_stream("4", 9_300..9_304, 1000, true, mixed_command);
}

/// A sorted set far past Redis's compact encoding, built identically on
/// both servers, then read by rank, score and lex from both ends and the
/// middle (where the walks start from the nearer end) and trimmed.
#[test]
fn large_sorted_sets_match_redis() {
    use rand::{Rng, SeedableRng};
    let (_dir, node, redis) = pair("1");
    let (mut r, mut e) = (redis.raw(), node.raw());
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let n = 3000;
    for chunk in (0..n).collect::<Vec<_>>().chunks(250) {
        let mut cmd = vec!["ZADD".to_string(), "big".into()];
        let mut lex = vec!["ZADD".to_string(), "lex".into()];
        for i in chunk {
            // Few distinct scores, so ties order by member.
            cmd.push(rng.gen_range(-50..50).to_string());
            cmd.push(format!("m{i}"));
            lex.extend([
                "0".to_string(),
                format!("w{:05}", rng.gen_range(0..100_000)),
            ]);
        }
        let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
        assert_eq!(r.call(&args), e.call(&args));
        let args: Vec<&str> = lex.iter().map(String::as_str).collect();
        assert_eq!(r.call(&args), e.call(&args));
    }
    let mut lines: Vec<String> = vec![
        "ZCARD big".into(),
        "OBJECT ENCODING big".into(),
        "ZRANGE big 0 9 WITHSCORES".into(),
        "ZRANGE big -10 -1 WITHSCORES".into(),
        "ZRANGE big 1490 1510".into(),
        "ZRANGE big 2000 2020 REV WITHSCORES".into(),
        "ZREVRANGE big 100 120".into(),
        "ZRANGE big 10 20 BYSCORE LIMIT 5 10 WITHSCORES".into(),
        "ZRANGE big (10 -inf BYSCORE REV LIMIT 100 10".into(),
        "ZCOUNT big -10 (10".into(),
        "ZRANGEBYLEX lex [w5 (w6 LIMIT 3 5".into(),
        "ZREVRANGEBYLEX lex (w5 - LIMIT 10 5".into(),
        "ZLEXCOUNT lex [w2 [w8".into(),
        "ZRANGE lex 1000 1010".into(),
    ];
    for i in (0..n).step_by(97) {
        lines.push(format!("ZRANK big m{i}"));
        lines.push(format!("ZREVRANK big m{i}"));
        lines.push(format!("ZSCORE big m{i}"));
    }
    lines.extend([
        "ZPOPMIN big 5".into(),
        "ZPOPMAX big 5".into(),
        "ZREMRANGEBYRANK big 1000 1100".into(),
        "ZREMRANGEBYSCORE big (0 5".into(),
        "ZRANGE big 995 1005 WITHSCORES".into(),
        "ZCARD big".into(),
        "ZINTERSTORE small 2 big big WEIGHTS 1 0.5 AGGREGATE MAX".into(),
        "ZRANGE small 1000 1010 WITHSCORES".into(),
    ]);
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    run_script(&mut r, &mut e, &lines);
}

/// ZRANDMEMBER answers at random: checked for what Redis promises.
#[test]
fn random_members_have_the_promised_shape() {
    let (_dir, node, _redis) = pair("1");
    let mut e = node.raw();
    let members: Vec<String> = (0..200).map(|i| format!("m{i}")).collect();
    let mut zadd = vec!["ZADD".to_string(), "z".into()];
    for (i, m) in members.iter().enumerate() {
        zadd.extend([i.to_string(), m.clone()]);
    }
    let args: Vec<&str> = zadd.iter().map(String::as_str).collect();
    e.call(&args);
    for _ in 0..10 {
        let text = String::from_utf8(e.call(&["ZRANDMEMBER", "z", "20", "WITHSCORES"])).unwrap();
        let items: Vec<&str> = text
            .split("\r\n")
            .skip(1)
            .filter(|l| !l.is_empty() && !l.starts_with('$'))
            .collect();
        assert_eq!(items.len(), 40, "{text}");
        let mut seen: Vec<&str> = items.iter().step_by(2).copied().collect();
        for pair in items.chunks(2) {
            let index: usize = pair[0][1..].parse().unwrap();
            assert_eq!(pair[1], index.to_string(), "{text}");
        }
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 20, "distinct: {text}");
        let repeated = String::from_utf8(e.call(&["ZRANDMEMBER", "z", "-300"])).unwrap();
        assert!(repeated.starts_with("*300\r\n"), "{repeated}");
    }
}

/// ZSCAN over a sorted set too large for one reply returns every member
/// with its score.
#[test]
fn zscan_pages_through_a_large_sorted_set() {
    let (_dir, node, _redis) = pair("1");
    let mut e = node.raw();
    let n = 2000;
    for chunk in (0..n).collect::<Vec<_>>().chunks(200) {
        let mut cmd = vec!["ZADD".to_string(), "big".into()];
        for i in chunk {
            cmd.extend([format!("{i}.5"), format!("member:{i}")]);
        }
        let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
        e.call(&args);
    }
    let mut seen = std::collections::BTreeMap::new();
    let mut cursor = "0".to_string();
    let mut calls = 0;
    loop {
        let reply = String::from_utf8(e.call(&["ZSCAN", "big", &cursor])).unwrap();
        let lines: Vec<&str> = reply.split("\r\n").collect();
        cursor = lines[2].to_string();
        let items: Vec<&str> = lines[4..]
            .iter()
            .filter(|l| !l.is_empty() && !l.starts_with('$'))
            .copied()
            .collect();
        for pair in items.chunks(2) {
            seen.insert(pair[0].to_string(), pair[1].to_string());
        }
        calls += 1;
        assert!(calls < 2000, "ZSCAN never finished");
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(seen.len(), n);
    assert_eq!(seen["member:7"], "7.5");
    assert!(calls > 100, "{calls} calls with COUNT 10");
}
