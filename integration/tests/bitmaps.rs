//! Bitmaps against redis-server 7.0: scripted edge cases (offsets at the
//! limits, BIT and BYTE ranges, negative and empty ranges, wrong types,
//! BITOP over strings of different lengths) and seeded random streams on
//! one shard and four, RESP2 and RESP3.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use elastickv_integration::diff::{pair, random_stream, run_script};
use rand::Rng;
use rand::rngs::StdRng;

const BITMAP_SCRIPT: &[&str] = &[
    "SETBIT b 7 1",
    "GET b",
    "SETBIT b 7 0",
    "SETBIT b 100 1",
    "STRLEN b",
    "GETBIT b 100",
    "GETBIT b 101",
    "GETBIT b 100000",
    "GETBIT nosuch 5",
    "GETBIT b -1",
    "GETBIT b x",
    "GETBIT nosuch x",
    "SETBIT b -1 1",
    "SETBIT b 4294967296 1",
    "SETBIT b 4294967295 2",
    "SETBIT b 1 2",
    "SETBIT b 1 x",
    "SETBIT b 1 -1",
    "SET s \"\\xff\\xf0\\x00\"",
    "BITCOUNT s",
    "BITCOUNT s 0 0",
    "BITCOUNT s 1 1",
    "BITCOUNT s -1 -1",
    "BITCOUNT s -2 -3",
    "BITCOUNT s 0 -1 BYTE",
    "BITCOUNT s 5 12 BIT",
    "BITCOUNT s 4 4 BIT",
    "BITCOUNT s -4 -1 BIT",
    "BITCOUNT s 1",
    "BITCOUNT s 0 1 WORD",
    "BITCOUNT s x 1",
    "BITCOUNT nosuch",
    "BITCOUNT nosuch x y",
    "BITCOUNT nosuch 1",
    "BITCOUNT s 100 200",
    "BITPOS s 0",
    "BITPOS s 1",
    "BITPOS s 0 2",
    "BITPOS s 0 0 0",
    "BITPOS s 1 1",
    "BITPOS s 1 2",
    "BITPOS s 0 0 7 BIT",
    "BITPOS s 0 5 12 BIT",
    "BITPOS s 1 5 12 BIT",
    "BITPOS s 0 -1",
    "BITPOS s 1 -1 -1",
    "BITPOS s 0 2 1",
    "BITPOS s 0 0 -1 BIT",
    "BITPOS s 1 9 BIT",
    "BITPOS s 2",
    "BITPOS s x",
    "BITPOS s 0 x",
    "BITPOS s 0 0 x",
    "BITPOS s 0 0 1 WORD",
    "BITPOS nosuch 0",
    "BITPOS nosuch 1",
    "BITPOS nosuch 1 x",
    "SET ones \"\\xff\\xff\"",
    "BITPOS ones 0",
    "BITPOS ones 0 0 -1",
    "BITPOS ones 0 1",
    "SET empty \"\"",
    "BITCOUNT empty",
    "BITPOS empty 0",
    "BITPOS empty 1",
    "SET {t}a abc",
    "SET {t}b \"\\x01\\x02\"",
    "BITOP AND {t}d {t}a {t}b",
    "GET {t}d",
    "BITOP OR {t}d {t}a {t}b",
    "GET {t}d",
    "BITOP XOR {t}d {t}a {t}b {t}nosuch",
    "GET {t}d",
    "BITOP NOT {t}d {t}a",
    "GET {t}d",
    "BITOP NOT {t}d {t}a {t}b",
    "BITOP NAND {t}d {t}a",
    "BITOP AND {t}d {t}nosuch",
    "EXISTS {t}d",
    "HSET {t}h f v",
    "BITOP AND {t}d {t}a {t}h",
    "SETBIT {t}h 1 1",
    "GETBIT {t}h 1",
    "BITCOUNT {t}h",
    "BITPOS {t}h 1",
    "BITOP AND {t}h {t}a",
    "TYPE {t}h",
    "BITFIELD f SET u8 0 255 GET u8 0 GET i8 0",
    "BITFIELD f INCRBY u2 100 1 OVERFLOW SAT INCRBY u2 102 1",
    "BITFIELD f INCRBY i5 100 1 GET u4 0",
    "BITFIELD f SET i8 #1 -100 GET i8 #1 GET u8 #1",
    "BITFIELD f OVERFLOW FAIL INCRBY u8 8 1000 GET u8 8",
    "BITFIELD f OVERFLOW WRAP INCRBY u8 8 1000 GET u8 8",
    "BITFIELD f OVERFLOW SAT INCRBY i8 16 -1000 INCRBY i8 16 2000",
    "BITFIELD f OVERFLOW WRAP SET i4 40 100 SET u3 44 9 GET i4 40 GET u3 44",
    "BITFIELD f OVERFLOW FAIL SET u3 44 9 SET i3 44 -5 SET i3 44 3",
    "BITFIELD f SET i64 64 -1 GET u63 64 GET i64 64 INCRBY i64 64 -9223372036854775807",
    "BITFIELD f OVERFLOW WRAP INCRBY i64 64 -9223372036854775808 INCRBY i64 64 -1",
    "BITFIELD f OVERFLOW SAT INCRBY i64 64 -9223372036854775808 INCRBY u63 128 9223372036854775807 INCRBY u63 128 1",
    "BITFIELD f SET u8 1000 1",
    "STRLEN f",
    "BITFIELD f OVERFLOW FAIL SET u8 2000 256",
    "STRLEN f",
    "GET f",
    "BITFIELD f",
    "BITFIELD f GET u64 0",
    "BITFIELD f GET i65 0",
    "BITFIELD f GET x8 0",
    "BITFIELD f GET u8 -1",
    "BITFIELD f GET u8 #-1",
    "BITFIELD f GET u8 x",
    "BITFIELD f SET u8 0 x",
    "BITFIELD f OVERFLOW MAYBE GET u8 0",
    "BITFIELD f BOGUS",
    "BITFIELD f GET u8",
    "BITFIELD f GET u8 4294967296",
    "BITFIELD nosuch GET u8 0 GET i3 5",
    "EXISTS nosuch",
    "BITFIELD nosuch2 OVERFLOW FAIL SET u2 0 7",
    "GET nosuch2",
    "BITFIELD_RO f GET u8 0 GET i8 8",
    "BITFIELD_RO f SET u8 0 1",
    "BITFIELD_RO f INCRBY u8 0 1",
    "BITFIELD_RO nosuch GET u8 0",
    "BITFIELD {t}h GET u8 0",
    "BITFIELD {t}h SET u8 0 1",
    "HSET {t}hh f v",
    "BITFIELD {t}hh GET u8 0",
    "BITFIELD {t}hh SET u8 0 1",
    "BITFIELD_RO {t}hh GET u8 0",
    "COMMAND INFO bitfield bitfield_ro setbit bitop",
    "SET e 1",
    "EXPIRE e 100",
    "SETBIT e 0 1",
    "TTL e",
    "DBSIZE",
];

#[test]
fn bitmap_commands_match_redis() {
    let (_dir, node, redis) = pair("1");
    run_script(&mut redis.raw(), &mut node.raw(), BITMAP_SCRIPT);
}

#[test]
fn bitmap_commands_match_redis_over_resp3_on_four_shards() {
    let (_dir, node, redis) = pair("4");
    let (mut r, mut e) = (redis.raw(), node.raw());
    r.call(&["HELLO", "3"]);
    e.call(&["HELLO", "3"]);
    run_script(&mut r, &mut e, BITMAP_SCRIPT);
}

fn bitmap_command(rng: &mut StdRng) -> Vec<Vec<u8>> {
    const KEYS: &[&str] = &["{t}b0", "{t}b1", "{t}b2", "{t}x"];
    const OFFSETS: &[&str] = &["0", "1", "7", "8", "15", "31", "100", "-1", "x"];
    const INDEXES: &[&str] = &["0", "1", "2", "-1", "-2", "3", "100", "-100"];
    let pick = |rng: &mut StdRng, from: &[&str]| from[rng.gen_range(0..from.len())].to_string();
    let key = |rng: &mut StdRng| pick(rng, KEYS);
    let cmd: Vec<String> = match rng.gen_range(0..14) {
        12 | 13 => {
            let mut c = vec![
                pick(rng, &["BITFIELD", "BITFIELD", "BITFIELD_RO"]),
                key(rng),
            ];
            for _ in 0..rng.gen_range(1..4) {
                let kind = pick(rng, &["GET", "SET", "INCRBY", "OVERFLOW"]);
                if kind == "OVERFLOW" {
                    c.extend([kind, pick(rng, &["WRAP", "SAT", "FAIL"])]);
                    continue;
                }
                c.extend([
                    kind.clone(),
                    pick(rng, &["u1", "u4", "u8", "i3", "i8", "i16", "u63", "i64"]),
                    pick(rng, &["0", "3", "8", "#1", "13", "40"]),
                ]);
                if kind != "GET" {
                    c.push(pick(
                        rng,
                        &[
                            "0",
                            "1",
                            "-1",
                            "7",
                            "-8",
                            "300",
                            "-1000",
                            "9223372036854775807",
                        ],
                    ));
                }
            }
            c
        }
        0..=2 => vec![
            "SETBIT".into(),
            key(rng),
            pick(rng, OFFSETS),
            pick(rng, &["0", "1", "1", "2"]),
        ],
        3 => vec!["GETBIT".into(), key(rng), pick(rng, OFFSETS)],
        4 => {
            let mut c = vec!["BITCOUNT".into(), key(rng)];
            if rng.gen_bool(0.7) {
                c.extend([pick(rng, INDEXES), pick(rng, INDEXES)]);
                if rng.gen_bool(0.5) {
                    c.push(pick(rng, &["BIT", "BYTE"]));
                }
            }
            c
        }
        5 | 6 => {
            let mut c = vec!["BITPOS".into(), key(rng), pick(rng, &["0", "1"])];
            for _ in 0..rng.gen_range(0..3) {
                c.push(pick(rng, INDEXES));
            }
            if c.len() == 5 && rng.gen_bool(0.5) {
                c.push(pick(rng, &["BIT", "BYTE"]));
            }
            c
        }
        7 => vec![
            "BITOP".into(),
            pick(rng, &["AND", "OR", "XOR"]),
            key(rng),
            key(rng),
            key(rng),
        ],
        8 => vec!["BITOP".into(), "NOT".into(), key(rng), key(rng)],
        9 => vec![
            "SET".into(),
            key(rng),
            pick(rng, &["a", "", "\u{1}", "abc"]),
        ],
        10 => vec!["GET".into(), key(rng)],
        _ => vec!["APPEND".into(), key(rng), pick(rng, &["z", "\u{7f}"])],
    };
    cmd.into_iter().map(String::into_bytes).collect()
}

#[test]
fn random_bitmap_commands_match_redis_on_one_shard() {
    random_stream("1", 11_000..11_004, 800, false, bitmap_command);
}

#[test]
fn random_bitmap_commands_match_redis_on_four_shards_over_resp3() {
    random_stream("4", 12_000..12_004, 800, true, bitmap_command);
}
