//! Sorted sets: ZADD, ZINCRBY, ZREM, ZSCORE, ZMSCORE, ZCARD, ZCOUNT,
//! ZLEXCOUNT, ZRANK, ZREVRANK, ZRANGE (BYSCORE, BYLEX, REV, LIMIT),
//! ZREVRANGE, ZRANGEBYSCORE, ZREVRANGEBYSCORE, ZRANGEBYLEX, ZREVRANGEBYLEX,
//! ZRANGESTORE, ZREMRANGEBYRANK/SCORE/LEX, ZPOPMIN, ZPOPMAX, ZMPOP,
//! ZRANDMEMBER, ZSCAN, ZUNION, ZINTER, ZDIFF, their STORE forms, and
//! ZINTERCARD.
//!
//! This module holds their table entries, parsing and execution; how a
//! sorted set is stored and walked is in [`index`], and how ZUNION and its
//! kin combine their inputs in [`combine`]. Writes are the
//! `SortedSetWrite` messages of the raft log.

mod combine;
mod index;

pub(crate) use index::{MEMBER_RANGE, member_of_sub, members_in_order};

use std::ops::ControlFlow;

use bytes::Bytes;
use elastickv_resp::Reply;

use crate::cmd::members::{ScanOptions, empty_scan, random_members, scan};
use crate::command::{Command, ParseResult, blocking_timeout, eq, int, multi_pop_args, positive};
use crate::db::{ReadView, WriteView};
use crate::errors;
use crate::exec::{ExecResult, collection_of};
use crate::keyspace::{KeyspaceRead, KeyspaceWrite, StorageError};
use crate::log::{self, sorted_set_write};
use crate::number::{parse_i64, parse_range_score, parse_scan_cursor, parse_score};
use crate::record::{Collection, Record, ValueType};
use crate::table::*;
use combine::{combine_sources, sources_of};
use index::{
    MEMBER_SPACE, ORDER, decode_score, insert, order_key, rank_of, score_of, score_reply, select,
    selected, show_score, show_stored_score, unlink, walk,
};

const WRITE_ZSET_FAST: &[&str] = &["@write", "@sortedset", "@fast"];
const WRITE_ZSET_SLOW: &[&str] = &["@write", "@sortedset", "@slow"];
const READ_ZSET_FAST: &[&str] = &["@read", "@sortedset", "@fast"];
const READ_ZSET_SLOW: &[&str] = &["@read", "@sortedset", "@slow"];
const RANDOM_TIP: &[&str] = &["nondeterministic_output"];
const RW_DELETE: &[KeySpec] = &[ks(&["RW", "delete"], 1, 0, 1)];
const RW_ACCESS_DELETE: &[KeySpec] = &[ks(&["RW", "access", "delete"], 1, 0, 1)];
const RO_KEYNUM: &[KeySpec] = &[ks_keynum(&["RO", "access"], 1, 0, 1, 1)];
const STORE_KEYNUM: &[KeySpec] = &[
    ks(&["OW", "update"], 1, 0, 1),
    ks_keynum(&["RO", "access"], 2, 0, 1, 1),
];

const NOT_A_FLOAT: &str = "ERR value is not a valid float";
const RANGE_NOT_FLOAT: &str = "ERR min or max is not a float";
const RANGE_NOT_LEX: &str = "ERR min or max not valid string range item";

/// ZRANGE and its older forms: a read of the key at argument 1.
const fn read_range(name: &'static str, parse: fn(&[Bytes]) -> ParseResult) -> CommandSpec {
    keyed(name, -4, &["readonly"], READ_ZSET_SLOW, RO_ACCESS, parse)
}

/// ZREMRANGEBYRANK/SCORE/LEX.
const fn remove_range(name: &'static str, parse: fn(&[Bytes]) -> ParseResult) -> CommandSpec {
    keyed(name, 4, &["write"], WRITE_ZSET_SLOW, RW_DELETE, parse)
}

/// ZUNION, ZINTER, ZDIFF, ZINTERCARD: keys counted by argument 1.
const fn combining(name: &'static str, parse: fn(&[Bytes]) -> ParseResult) -> CommandSpec {
    CommandSpec {
        name,
        arity: -3,
        flags: &["readonly", "movablekeys"],
        first_key: 0,
        last_key: 0,
        step: 0,
        acl: READ_ZSET_SLOW,
        tips: NONE,
        key_specs: RO_KEYNUM,
        subcommands: &[],
        route: Route::SameShard,
        parse: Some(parse),
    }
}

/// ZUNIONSTORE, ZINTERSTORE, ZDIFFSTORE.
const fn storing(name: &'static str, parse: fn(&[Bytes]) -> ParseResult) -> CommandSpec {
    CommandSpec {
        name,
        arity: -4,
        flags: &["write", "denyoom", "movablekeys"],
        first_key: 1,
        last_key: 1,
        step: 1,
        acl: WRITE_ZSET_SLOW,
        tips: NONE,
        key_specs: STORE_KEYNUM,
        subcommands: &[],
        route: Route::SameShard,
        parse: Some(parse),
    }
}

const BZPOPMIN: CommandSpec = CommandSpec {
    name: "bzpopmin",
    arity: -3,
    flags: &["write", "noscript", "blocking", "fast"],
    first_key: 1,
    last_key: -2,
    step: 1,
    acl: &["@write", "@sortedset", "@fast", "@blocking"],
    tips: NONE,
    key_specs: &[ks(&["RW", "access", "delete"], 1, -2, 1)],
    subcommands: &[],
    route: Route::SameShard,
    parse: Some(parse_bzpopmin),
};

/// The sorted-set commands' table entries.
pub(crate) static COMMANDS: &[CommandSpec] = &[
    keyed(
        "zadd",
        -4,
        &["write", "denyoom", "fast"],
        WRITE_ZSET_FAST,
        RW_UPDATE,
        parse_zadd,
    ),
    keyed(
        "zincrby",
        4,
        &["write", "denyoom", "fast"],
        WRITE_ZSET_FAST,
        RW_ACCESS_UPDATE,
        parse_zincrby,
    ),
    keyed(
        "zrem",
        -3,
        &["write", "fast"],
        WRITE_ZSET_FAST,
        RW_DELETE,
        parse_zrem,
    ),
    remove_range("zremrangebyrank", parse_zremrangebyrank),
    remove_range("zremrangebyscore", parse_zremrangebyscore),
    remove_range("zremrangebylex", parse_zremrangebylex),
    keyed(
        "zpopmin",
        -2,
        &["write", "fast"],
        WRITE_ZSET_FAST,
        RW_ACCESS_DELETE,
        parse_zpopmin,
    ),
    keyed(
        "zpopmax",
        -2,
        &["write", "fast"],
        WRITE_ZSET_FAST,
        RW_ACCESS_DELETE,
        parse_zpopmax,
    ),
    CommandSpec {
        name: "zmpop",
        arity: -4,
        flags: &["write", "movablekeys"],
        first_key: 0,
        last_key: 0,
        step: 0,
        acl: WRITE_ZSET_SLOW,
        tips: NONE,
        key_specs: &[ks_keynum(&["RW", "access", "delete"], 1, 0, 1, 1)],
        subcommands: &[],
        route: Route::SameShard,
        parse: Some(parse_zmpop),
    },
    CommandSpec {
        name: "zrangestore",
        arity: -5,
        flags: &["write", "denyoom"],
        first_key: 1,
        last_key: 2,
        step: 1,
        acl: WRITE_ZSET_SLOW,
        tips: NONE,
        key_specs: &[
            ks(&["OW", "update"], 1, 0, 1),
            ks(&["RO", "access"], 2, 0, 1),
        ],
        subcommands: &[],
        route: Route::SameShard,
        parse: Some(parse_zrangestore),
    },
    storing("zunionstore", parse_zunionstore),
    storing("zinterstore", parse_zinterstore),
    storing("zdiffstore", parse_zdiffstore),
    keyed(
        "zscore",
        3,
        &["readonly", "fast"],
        READ_ZSET_FAST,
        RO_ACCESS,
        parse_zscore,
    ),
    keyed(
        "zmscore",
        -3,
        &["readonly", "fast"],
        READ_ZSET_FAST,
        RO_ACCESS,
        parse_zmscore,
    ),
    keyed(
        "zcard",
        2,
        &["readonly", "fast"],
        READ_ZSET_FAST,
        RO,
        parse_zcard,
    ),
    keyed(
        "zcount",
        4,
        &["readonly", "fast"],
        READ_ZSET_FAST,
        RO_ACCESS,
        parse_zcount,
    ),
    keyed(
        "zlexcount",
        4,
        &["readonly", "fast"],
        READ_ZSET_FAST,
        RO_ACCESS,
        parse_zlexcount,
    ),
    keyed(
        "zrank",
        3,
        &["readonly", "fast"],
        READ_ZSET_FAST,
        RO_ACCESS,
        parse_zrank,
    ),
    keyed(
        "zrevrank",
        3,
        &["readonly", "fast"],
        READ_ZSET_FAST,
        RO_ACCESS,
        parse_zrevrank,
    ),
    read_range("zrange", parse_zrange),
    read_range("zrevrange", parse_zrevrange),
    read_range("zrangebyscore", parse_zrangebyscore),
    read_range("zrevrangebyscore", parse_zrevrangebyscore),
    read_range("zrangebylex", parse_zrangebylex),
    read_range("zrevrangebylex", parse_zrevrangebylex),
    keyed_with_tips(
        "zrandmember",
        -2,
        &["readonly"],
        READ_ZSET_SLOW,
        RANDOM_TIP,
        RO_ACCESS,
        parse_zrandmember,
    ),
    keyed_with_tips(
        "zscan",
        -3,
        &["readonly"],
        READ_ZSET_SLOW,
        RANDOM_TIP,
        RO_ACCESS,
        parse_zscan,
    ),
    BZPOPMIN,
    CommandSpec {
        name: "bzpopmax",
        parse: Some(parse_bzpopmax),
        ..BZPOPMIN
    },
    CommandSpec {
        name: "bzmpop",
        arity: -5,
        flags: &["write", "blocking", "movablekeys"],
        first_key: 0,
        last_key: 0,
        step: 0,
        acl: &["@write", "@sortedset", "@slow", "@blocking"],
        tips: NONE,
        key_specs: &[ks_keynum(&["RW", "access", "delete"], 2, 0, 1, 1)],
        subcommands: &[],
        route: Route::SameShard,
        parse: Some(parse_bzmpop),
    },
    combining("zunion", parse_zunion),
    combining("zinter", parse_zinter),
    combining("zdiff", parse_zdiff),
    combining("zintercard", parse_zintercard),
];

/// A sorted-set read.
#[derive(Debug, Clone, PartialEq)]
pub enum Read {
    ZScore(Bytes, Bytes),
    ZMScore(Bytes, Vec<Bytes>),
    ZCard(Bytes),
    /// ZCOUNT, ZLEXCOUNT: the members a score or lex range selects.
    Count(Bytes, log::ZRange),
    ZRank {
        key: Bytes,
        member: Bytes,
        reverse: bool,
    },
    /// ZRANGE and its older forms.
    Range {
        key: Bytes,
        range: log::ZRange,
        with_scores: bool,
    },
    ZRandMember {
        key: Bytes,
        /// `None`: one member, as a bulk string.
        count: Option<i64>,
        with_scores: bool,
    },
    /// Options are checked after the lookup, as Redis does.
    ZScan {
        key: Bytes,
        cursor: u64,
        options: Vec<Bytes>,
    },
    /// ZUNION, ZINTER, ZDIFF, ZINTERCARD.
    Combine {
        combine: Combine,
        with_scores: bool,
        /// ZINTERCARD: the count only, up to `limit` (0: no limit).
        count_limit: Option<u64>,
    },
}

/// What ZUNION/ZINTER/ZDIFF and their STORE forms combine, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Combine {
    op: log::ZSetOp,
    keys: Vec<Bytes>,
    weights: Vec<f64>,
    aggregate: log::Aggregate,
    /// An option error, answered after the keys' types are checked (Redis
    /// reads the keys before the options).
    options_error: Option<&'static str>,
}

fn zset_write(command: sorted_set_write::Command) -> Command {
    Command::Write(log::Write {
        family: Some(log::write::Family::SortedSets(log::SortedSetWrite {
            command: Some(command),
        })),
    })
}

fn zset_read(read: Read) -> ParseResult {
    Ok(Command::SortedSetRead(read))
}

pub(crate) fn parse_zadd(args: &[Bytes]) -> ParseResult {
    use log::z_add::{Compare, Condition};
    let mut add = log::ZAdd {
        key: args[1].clone(),
        ..Default::default()
    };
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    let mut at = 2;
    while at < args.len() {
        let opt = &args[at];
        if eq(opt, "nx") {
            nx = true;
        } else if eq(opt, "xx") {
            xx = true;
        } else if eq(opt, "ch") {
            add.changed = true;
        } else if eq(opt, "incr") {
            add.incr = true;
        } else if eq(opt, "gt") {
            gt = true;
        } else if eq(opt, "lt") {
            lt = true;
        } else {
            break;
        }
        at += 1;
    }
    let elements = args.len() - at;
    if elements % 2 == 1 || elements == 0 {
        return Err(Reply::static_error(errors::SYNTAX));
    }
    if nx && xx {
        return Err(Reply::static_error(
            "ERR XX and NX options at the same time are not compatible",
        ));
    }
    if (nx && (gt || lt)) || (gt && lt) {
        return Err(Reply::static_error(
            "ERR GT, LT, and/or NX options at the same time are not compatible",
        ));
    }
    if add.incr && elements > 2 {
        return Err(Reply::static_error(
            "ERR INCR option supports a single increment-element pair",
        ));
    }
    for pair in args[at..].chunks_exact(2) {
        let score = parse_score(&pair[0]).ok_or_else(|| Reply::static_error(NOT_A_FLOAT))?;
        add.members.push(log::ScoredMember {
            score: Some(score),
            member: pair[1].clone(),
        });
    }
    add.condition = if nx {
        Condition::IfMissing
    } else if xx {
        Condition::IfExists
    } else {
        Condition::Always
    }
    .into();
    add.compare = if gt {
        Compare::Greater
    } else if lt {
        Compare::Less
    } else {
        Compare::Any
    }
    .into();
    Ok(zset_write(sorted_set_write::Command::ZAdd(add)))
}

pub(crate) fn parse_zincrby(args: &[Bytes]) -> ParseResult {
    let score = parse_score(&args[2]).ok_or_else(|| Reply::static_error(NOT_A_FLOAT))?;
    Ok(zset_write(sorted_set_write::Command::ZAdd(log::ZAdd {
        key: args[1].clone(),
        incr: true,
        members: vec![log::ScoredMember {
            score: Some(score),
            member: args[3].clone(),
        }],
        ..Default::default()
    })))
}

pub(crate) fn parse_zrem(args: &[Bytes]) -> ParseResult {
    Ok(zset_write(sorted_set_write::Command::ZRem(log::ZRem {
        key: args[1].clone(),
        members: args[2..].to_vec(),
    })))
}

/// One end of a score range (`zslParseRange`): `(` makes it exclusive.
fn score_bound(arg: &[u8]) -> Result<log::ScoreBound, Reply> {
    let (text, exclusive) = match arg.split_first() {
        Some((b'(', rest)) => (rest, true),
        _ => (arg, false),
    };
    let value = parse_range_score(text).ok_or_else(|| Reply::static_error(RANGE_NOT_FLOAT))?;
    Ok(log::ScoreBound { value, exclusive })
}

/// One end of a lex range (`zslParseLexRangeItem`): `-`, `+`, `(member`
/// or `[member`.
fn lex_bound(arg: &Bytes) -> Result<log::LexBound, Reply> {
    use log::lex_bound::Kind;
    let invalid = || Reply::static_error(RANGE_NOT_LEX);
    let bound = |kind: Kind, value: Bytes, exclusive| log::LexBound {
        kind: kind.into(),
        value,
        exclusive,
    };
    match arg.first() {
        Some(b'+') if arg.len() == 1 => Ok(bound(Kind::Max, Bytes::new(), true)),
        Some(b'-') if arg.len() == 1 => Ok(bound(Kind::Min, Bytes::new(), true)),
        Some(b'(') => Ok(bound(Kind::Value, arg.slice(1..), true)),
        Some(b'[') => Ok(bound(Kind::Value, arg.slice(1..), false)),
        _ => Err(invalid()),
    }
}

fn score_range(min: &[u8], max: &[u8]) -> Result<log::z_range::By, Reply> {
    Ok(log::z_range::By::Scores(log::z_range::Scores {
        min: Some(score_bound(min)?),
        max: Some(score_bound(max)?),
    }))
}

fn lex_range(min: &Bytes, max: &Bytes) -> Result<log::z_range::By, Reply> {
    Ok(log::z_range::By::Lex(log::z_range::Lex {
        min: Some(lex_bound(min)?),
        max: Some(lex_bound(max)?),
    }))
}

fn whole(by: log::z_range::By) -> log::ZRange {
    log::ZRange {
        by: Some(by),
        reverse: false,
        offset: 0,
        count: -1,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum RangeType {
    Auto,
    Rank,
    Score,
    Lex,
}

/// `zrangeGenericCommand`'s argument parsing: the key at `args[at]`, its
/// range after it, then options. `store` is ZRANGESTORE (no WITHSCORES);
/// `kind` and `reverse` are fixed by the older commands.
fn parse_range(
    args: &[Bytes],
    at: usize,
    store: bool,
    mut kind: RangeType,
    mut reverse: Option<bool>,
) -> Result<(log::ZRange, bool), Reply> {
    let mut with_scores = false;
    let mut offset = 0;
    let mut limit = -1;
    let mut j = at + 3;
    while j < args.len() {
        let left = args.len() - j - 1;
        if !store && eq(&args[j], "withscores") {
            with_scores = true;
        } else if eq(&args[j], "limit") && left >= 2 {
            offset = int(&args[j + 1])?;
            limit = int(&args[j + 2])?;
            j += 2;
        } else if reverse.is_none() && eq(&args[j], "rev") {
            reverse = Some(true);
        } else if kind == RangeType::Auto && eq(&args[j], "bylex") {
            kind = RangeType::Lex;
        } else if kind == RangeType::Auto && eq(&args[j], "byscore") {
            kind = RangeType::Score;
        } else {
            return Err(Reply::static_error(errors::SYNTAX));
        }
        j += 1;
    }
    let reverse = reverse.unwrap_or(false);
    if kind == RangeType::Auto {
        kind = RangeType::Rank;
    }
    if limit != -1 && kind == RangeType::Rank {
        return Err(Reply::static_error(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        ));
    }
    if with_scores && kind == RangeType::Lex {
        return Err(Reply::static_error(
            "ERR syntax error, WITHSCORES not supported in combination with BYLEX",
        ));
    }
    let (mut min, mut max) = (&args[at + 1], &args[at + 2]);
    if reverse && kind != RangeType::Rank {
        std::mem::swap(&mut min, &mut max);
    }
    let by = match kind {
        RangeType::Score => score_range(min, max)?,
        RangeType::Lex => lex_range(min, max)?,
        RangeType::Rank | RangeType::Auto => log::z_range::By::Ranks(log::z_range::Ranks {
            start: int(min)?,
            stop: int(max)?,
        }),
    };
    Ok((
        log::ZRange {
            by: Some(by),
            reverse,
            offset,
            count: limit,
        },
        with_scores,
    ))
}

fn range_read(args: &[Bytes], kind: RangeType, reverse: Option<bool>) -> ParseResult {
    let (range, with_scores) = parse_range(args, 1, false, kind, reverse)?;
    zset_read(Read::Range {
        key: args[1].clone(),
        range,
        with_scores,
    })
}

pub(crate) fn parse_zrange(args: &[Bytes]) -> ParseResult {
    range_read(args, RangeType::Auto, None)
}

pub(crate) fn parse_zrevrange(args: &[Bytes]) -> ParseResult {
    range_read(args, RangeType::Rank, Some(true))
}

pub(crate) fn parse_zrangebyscore(args: &[Bytes]) -> ParseResult {
    range_read(args, RangeType::Score, Some(false))
}

pub(crate) fn parse_zrevrangebyscore(args: &[Bytes]) -> ParseResult {
    range_read(args, RangeType::Score, Some(true))
}

pub(crate) fn parse_zrangebylex(args: &[Bytes]) -> ParseResult {
    range_read(args, RangeType::Lex, Some(false))
}

pub(crate) fn parse_zrevrangebylex(args: &[Bytes]) -> ParseResult {
    range_read(args, RangeType::Lex, Some(true))
}

pub(crate) fn parse_zrangestore(args: &[Bytes]) -> ParseResult {
    let (range, _) = parse_range(args, 2, true, RangeType::Auto, None)?;
    Ok(zset_write(sorted_set_write::Command::ZRangeStore(
        log::ZRangeStore {
            destination: args[1].clone(),
            source: args[2].clone(),
            range: Some(range),
        },
    )))
}

fn remove_range_write(key: &Bytes, by: log::z_range::By) -> ParseResult {
    Ok(zset_write(sorted_set_write::Command::ZRemRange(
        log::ZRemRange {
            key: key.clone(),
            range: Some(whole(by)),
        },
    )))
}

pub(crate) fn parse_zremrangebyrank(args: &[Bytes]) -> ParseResult {
    let by = log::z_range::By::Ranks(log::z_range::Ranks {
        start: int(&args[2])?,
        stop: int(&args[3])?,
    });
    remove_range_write(&args[1], by)
}

pub(crate) fn parse_zremrangebyscore(args: &[Bytes]) -> ParseResult {
    remove_range_write(&args[1], score_range(&args[2], &args[3])?)
}

pub(crate) fn parse_zremrangebylex(args: &[Bytes]) -> ParseResult {
    remove_range_write(&args[1], lex_range(&args[2], &args[3])?)
}

fn pop(args: &[Bytes], max: bool) -> ParseResult {
    use log::z_pop::Form;
    let (count, form) = match args.len() {
        2 => (1, Form::Single),
        3 => (positive(&args[2])?, Form::Counted),
        _ => return Err(Reply::static_error(errors::SYNTAX)),
    };
    Ok(zset_write(sorted_set_write::Command::ZPop(log::ZPop {
        keys: vec![args[1].clone()],
        max,
        count,
        form: form.into(),
    })))
}

pub(crate) fn parse_zpopmin(args: &[Bytes]) -> ParseResult {
    pop(args, false)
}

pub(crate) fn parse_zpopmax(args: &[Bytes]) -> ParseResult {
    pop(args, true)
}

pub(crate) fn parse_zmpop(args: &[Bytes]) -> ParseResult {
    Ok(zset_write(sorted_set_write::Command::ZPop(zmpop_of(
        args, 1,
    )?)))
}

/// ZMPOP's arguments from the key count at `numkeys_at` on (BZMPOP's
/// timeout comes before it).
fn zmpop_of(args: &[Bytes], numkeys_at: usize) -> Result<log::ZPop, Reply> {
    let min_or_max = |arg: &[u8]| {
        if eq(arg, "min") {
            Ok(false)
        } else if eq(arg, "max") {
            Ok(true)
        } else {
            Err(Reply::static_error(errors::SYNTAX))
        }
    };
    let (keys, max, count) = multi_pop_args(args, numkeys_at, min_or_max)?;
    Ok(log::ZPop {
        keys,
        max,
        count,
        form: log::z_pop::Form::WithKey.into(),
    })
}

fn blocking_zpop(pop: log::ZPop, timeout_ms: u64) -> ParseResult {
    let keys = pop.keys.clone();
    Ok(Command::Blocking {
        write: log::Write {
            family: Some(log::write::Family::SortedSets(log::SortedSetWrite {
                command: Some(sorted_set_write::Command::ZPop(pop)),
            })),
        },
        keys,
        timeout_ms,
    })
}

/// BZPOPMIN, BZPOPMAX: the timeout is checked first, as Redis does.
fn bzpop(args: &[Bytes], max: bool) -> ParseResult {
    let last = args.len() - 1;
    let timeout_ms = blocking_timeout(&args[last])?;
    let pop = log::ZPop {
        keys: args[1..last].to_vec(),
        max,
        count: 1,
        form: log::z_pop::Form::KeyedFlat.into(),
    };
    blocking_zpop(pop, timeout_ms)
}

pub(crate) fn parse_bzpopmin(args: &[Bytes]) -> ParseResult {
    bzpop(args, false)
}

pub(crate) fn parse_bzpopmax(args: &[Bytes]) -> ParseResult {
    bzpop(args, true)
}

pub(crate) fn parse_bzmpop(args: &[Bytes]) -> ParseResult {
    let pop = zmpop_of(args, 2)?;
    let timeout_ms = blocking_timeout(&args[1])?;
    blocking_zpop(pop, timeout_ms)
}

/// What `zunionInterDiffGenericCommand` parses: the keys counted at
/// `args[numkeys_at]` and the options after them. Errors in the options
/// are kept in [`Combine::options_error`].
fn parse_combine(
    args: &[Bytes],
    numkeys_at: usize,
    op: log::ZSetOp,
    name: &str,
    store: bool,
    cardinality: bool,
) -> Result<(Combine, bool, u64), Reply> {
    let setnum = int(&args[numkeys_at])?;
    if setnum < 1 {
        return Err(Reply::error(format!(
            "ERR at least 1 input key is needed for '{name}' command"
        )));
    }
    let first = numkeys_at + 1;
    let setnum = usize::try_from(setnum).unwrap_or(usize::MAX);
    if setnum > args.len() - first {
        return Err(Reply::static_error(errors::SYNTAX));
    }
    let keys = args[first..first + setnum].to_vec();
    let mut combine = Combine {
        op,
        weights: vec![1.0; setnum],
        keys,
        aggregate: log::Aggregate::Sum,
        options_error: None,
    };
    let mut with_scores = false;
    let mut limit = 0;
    let mut j = first + setnum;
    let options = (|| {
        while j < args.len() {
            let remaining = args.len() - j;
            let combining = op != log::ZSetOp::Diff && !cardinality;
            if combining && remaining > setnum && eq(&args[j], "weights") {
                j += 1;
                for weight in &mut combine.weights {
                    *weight = parse_score(&args[j]).ok_or("ERR weight value is not a float")?;
                    j += 1;
                }
            } else if combining && remaining >= 2 && eq(&args[j], "aggregate") {
                let how = &args[j + 1];
                combine.aggregate = if eq(how, "sum") {
                    log::Aggregate::Sum
                } else if eq(how, "min") {
                    log::Aggregate::Min
                } else if eq(how, "max") {
                    log::Aggregate::Max
                } else {
                    return Err(errors::SYNTAX);
                };
                j += 2;
            } else if !store && !cardinality && eq(&args[j], "withscores") {
                with_scores = true;
                j += 1;
            } else if cardinality && remaining >= 2 && eq(&args[j], "limit") {
                limit = match parse_i64(&args[j + 1]) {
                    Some(n) if n >= 0 => n.unsigned_abs(),
                    _ => return Err("ERR LIMIT can't be negative"),
                };
                j += 2;
            } else {
                return Err(errors::SYNTAX);
            }
        }
        Ok(())
    })();
    combine.options_error = options.err();
    Ok((combine, with_scores, limit))
}

fn combine_read(args: &[Bytes], op: log::ZSetOp, name: &str, cardinality: bool) -> ParseResult {
    let (combine, with_scores, limit) = parse_combine(args, 1, op, name, false, cardinality)?;
    zset_read(Read::Combine {
        combine,
        with_scores,
        count_limit: cardinality.then_some(limit),
    })
}

pub(crate) fn parse_zunion(args: &[Bytes]) -> ParseResult {
    combine_read(args, log::ZSetOp::Union, "zunion", false)
}

pub(crate) fn parse_zinter(args: &[Bytes]) -> ParseResult {
    combine_read(args, log::ZSetOp::Inter, "zinter", false)
}

pub(crate) fn parse_zdiff(args: &[Bytes]) -> ParseResult {
    combine_read(args, log::ZSetOp::Diff, "zdiff", false)
}

pub(crate) fn parse_zintercard(args: &[Bytes]) -> ParseResult {
    combine_read(args, log::ZSetOp::Inter, "zintercard", true)
}

fn store_write(args: &[Bytes], op: log::ZSetOp, name: &str) -> ParseResult {
    let (combine, _, _) = parse_combine(args, 2, op, name, true, false)?;
    Ok(zset_write(sorted_set_write::Command::ZStore(log::ZStore {
        op: combine.op.into(),
        destination: args[1].clone(),
        keys: combine.keys,
        weights: combine.weights,
        aggregate: combine.aggregate.into(),
        options_error: combine.options_error.unwrap_or_default().to_string(),
    })))
}

pub(crate) fn parse_zunionstore(args: &[Bytes]) -> ParseResult {
    store_write(args, log::ZSetOp::Union, "zunionstore")
}

pub(crate) fn parse_zinterstore(args: &[Bytes]) -> ParseResult {
    store_write(args, log::ZSetOp::Inter, "zinterstore")
}

pub(crate) fn parse_zdiffstore(args: &[Bytes]) -> ParseResult {
    store_write(args, log::ZSetOp::Diff, "zdiffstore")
}

pub(crate) fn parse_zscore(args: &[Bytes]) -> ParseResult {
    zset_read(Read::ZScore(args[1].clone(), args[2].clone()))
}

pub(crate) fn parse_zmscore(args: &[Bytes]) -> ParseResult {
    zset_read(Read::ZMScore(args[1].clone(), args[2..].to_vec()))
}

pub(crate) fn parse_zcard(args: &[Bytes]) -> ParseResult {
    zset_read(Read::ZCard(args[1].clone()))
}

pub(crate) fn parse_zcount(args: &[Bytes]) -> ParseResult {
    zset_read(Read::Count(
        args[1].clone(),
        whole(score_range(&args[2], &args[3])?),
    ))
}

pub(crate) fn parse_zlexcount(args: &[Bytes]) -> ParseResult {
    zset_read(Read::Count(
        args[1].clone(),
        whole(lex_range(&args[2], &args[3])?),
    ))
}

fn rank(args: &[Bytes], reverse: bool) -> ParseResult {
    zset_read(Read::ZRank {
        key: args[1].clone(),
        member: args[2].clone(),
        reverse,
    })
}

pub(crate) fn parse_zrank(args: &[Bytes]) -> ParseResult {
    rank(args, false)
}

pub(crate) fn parse_zrevrank(args: &[Bytes]) -> ParseResult {
    rank(args, true)
}

pub(crate) fn parse_zrandmember(args: &[Bytes]) -> ParseResult {
    let mut with_scores = false;
    let count = if args.len() >= 3 {
        // getRangeLongFromObjectOrReply(-LONG_MAX, LONG_MAX).
        let count = int(&args[2])?;
        if count == i64::MIN {
            return Err(Reply::static_error(
                "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
            ));
        }
        if args.len() > 4 || (args.len() == 4 && !eq(&args[3], "withscores")) {
            return Err(Reply::static_error(errors::SYNTAX));
        }
        if args.len() == 4 {
            with_scores = true;
            if !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&count) {
                return Err(Reply::static_error("ERR value is out of range"));
            }
        }
        Some(count)
    } else {
        None
    };
    zset_read(Read::ZRandMember {
        key: args[1].clone(),
        count,
        with_scores,
    })
}

pub(crate) fn parse_zscan(args: &[Bytes]) -> ParseResult {
    let cursor =
        parse_scan_cursor(&args[2]).ok_or_else(|| Reply::static_error("ERR invalid cursor"))?;
    zset_read(Read::ZScan {
        key: args[1].clone(),
        cursor,
        options: args[3..].to_vec(),
    })
}

/// Members with scores as a reply: pairs with WITHSCORES (flat in RESP2,
/// nested in RESP3), members only otherwise.
fn members_reply(members: Vec<(Bytes, f64)>, with_scores: bool) -> Reply {
    if with_scores {
        Reply::Pairs(
            members
                .into_iter()
                .map(|(m, s)| (Reply::Bulk(m), score_reply(s)))
                .collect(),
        )
    } else {
        Reply::Array(members.into_iter().map(|(m, _)| Reply::Bulk(m)).collect())
    }
}

/// The live sorted set in `record`: `Ok(None)` if there is none,
/// `Err(reply)` for WRONGTYPE.
fn zset_of(record: Option<&Record>) -> Result<Option<Collection>, Reply> {
    collection_of(record, ValueType::ZSet)
}

/// Runs a sorted-set read.
pub(crate) fn execute_read<K: KeyspaceRead + ?Sized>(
    cmd: &Read,
    db: &ReadView<'_, K>,
) -> ExecResult {
    let key = match cmd {
        Read::Combine {
            combine,
            with_scores,
            count_limit,
        } => {
            let sources = match sources_of(&combine.keys, &mut |key| db.lookup(key))? {
                Ok(sources) => sources,
                Err(reply) => return Ok(reply),
            };
            if let Some(error) = combine.options_error {
                return Ok(Reply::static_error(error));
            }
            let members = combine_sources(db, combine, &sources, *count_limit)?;
            return Ok(match count_limit {
                Some(_) => Reply::Integer(members.len() as i64),
                None => members_reply(members, *with_scores),
            });
        }
        Read::ZScore(key, _)
        | Read::ZMScore(key, _)
        | Read::ZCard(key)
        | Read::Count(key, _)
        | Read::ZRank { key, .. }
        | Read::Range { key, .. }
        | Read::ZRandMember { key, .. }
        | Read::ZScan { key, .. } => key,
    };
    let zset = match zset_of(db.lookup(key)?.as_ref()) {
        Ok(zset) => zset,
        Err(reply) => return Ok(reply),
    };
    let Some(c) = zset else {
        return Ok(match cmd {
            Read::ZScore(..) | Read::ZRank { .. } => Reply::Null,
            Read::ZMScore(_, members) => Reply::Array(vec![Reply::Null; members.len()]),
            Read::ZCard(_) | Read::Count(..) => Reply::Integer(0),
            Read::ZRandMember { count: None, .. } => Reply::Null,
            Read::ZScan { .. } => empty_scan(),
            _ => Reply::Array(Vec::new()),
        });
    };
    Ok(match cmd {
        Read::ZScore(_, member) => match score_of(db, key, &c, member)? {
            Some(score) => score_reply(score),
            None => Reply::Null,
        },
        Read::ZMScore(_, members) => {
            let mut out = Vec::with_capacity(members.len());
            for member in members {
                out.push(match score_of(db, key, &c, member)? {
                    Some(score) => score_reply(score),
                    None => Reply::Null,
                });
            }
            Reply::Array(out)
        }
        Read::ZCard(_) => Reply::Integer(i64::try_from(c.size).unwrap_or(i64::MAX)),
        Read::Count(_, range) => {
            let mut count = 0i64;
            select(db, key, &c, range, &mut |_, _| count += 1)?;
            Reply::Integer(count)
        }
        Read::ZRank {
            member, reverse, ..
        } => match score_of(db, key, &c, member)? {
            Some(score) => Reply::Integer(
                i64::try_from(rank_of(db, key, &c, member, score, *reverse)?).unwrap_or(i64::MAX),
            ),
            None => Reply::Null,
        },
        Read::Range {
            range, with_scores, ..
        } => members_reply(selected(db, key, &c, range)?, *with_scores),
        Read::ZRandMember {
            count, with_scores, ..
        } => {
            let Some(count) = count else {
                return Ok(
                    match random_members(db, key, &c, MEMBER_SPACE, 1, true)?.pop() {
                        Some((member, _)) => Reply::Bulk(member),
                        None => Reply::Null,
                    },
                );
            };
            let picked =
                random_members(db, key, &c, MEMBER_SPACE, count.unsigned_abs(), *count < 0)?;
            members_reply(
                picked
                    .into_iter()
                    .map(|(m, v)| (m, decode_score(&v)))
                    .collect(),
                *with_scores,
            )
        }
        Read::ZScan {
            cursor, options, ..
        } => {
            let options = match ScanOptions::parse(options, false) {
                Ok(options) => options,
                Err(reply) => return Ok(reply),
            };
            zscan(db, key, &c, *cursor, &options)?
        }
        Read::Combine { .. } => Reply::Array(Vec::new()),
    })
}

/// ZSCAN. A sorted set Redis keeps compact (up to 128 members of up to 64
/// bytes) answers whole, in score order, scores as it stores them; a
/// larger one pages in hash order, scores as `%.17g`.
fn zscan<K: KeyspaceRead + ?Sized>(
    db: &ReadView<'_, K>,
    key: &[u8],
    c: &Collection,
    cursor: u64,
    options: &ScanOptions,
) -> Result<Reply, StorageError> {
    if c.size > crate::cmd::members::SCAN_IN_ONE_REPLY {
        return scan(db, key, c, MEMBER_SPACE, cursor, options, Some(show_score));
    }
    let mut members = Vec::new();
    walk(db, key, c, &[ORDER], false, &mut |member, score| {
        members.push((Bytes::copy_from_slice(member), score));
        ControlFlow::Continue(())
    })?;
    let compact = members.iter().all(|(m, _)| m.len() <= 64);
    let mut items = Vec::with_capacity(members.len() * 2);
    for (member, score) in members {
        if options
            .pattern
            .as_ref()
            .is_none_or(|p| crate::glob::matches(p, &member))
        {
            let shown = if compact {
                show_stored_score(&score.to_bits().to_be_bytes())
            } else {
                show_score(&score.to_bits().to_be_bytes())
            };
            items.push(Reply::Bulk(member));
            items.push(Reply::Bulk(shown));
        }
    }
    Ok(Reply::Array(vec![Reply::bulk("0"), Reply::Array(items)]))
}

/// After removing members from `zset` at `key`: deletes the key when it
/// is empty, stores the new size when it `changed`.
fn shrink<K: KeyspaceWrite + ?Sized>(
    db: &mut WriteView<'_, K>,
    key: &[u8],
    previous: &Record,
    zset: Collection,
    changed: bool,
) -> Result<(), StorageError> {
    if zset.size == 0 {
        db.remove(key, previous)
    } else if changed {
        db.store(
            key,
            &Record::collection(zset, previous.expire_at),
            Some(previous),
        )
    } else {
        Ok(())
    }
}

/// Stores `members` as a new sorted set at `key` (replacing whatever is
/// there), or deletes `key` when there are none. Answers the count.
fn store_zset<K: KeyspaceWrite + ?Sized>(
    db: &mut WriteView<'_, K>,
    key: &[u8],
    members: &[(Bytes, f64)],
) -> ExecResult {
    let previous = db.lookup(key)?;
    if members.is_empty() {
        if let Some(previous) = &previous {
            db.remove(key, previous)?;
        }
        return Ok(Reply::Integer(0));
    }
    let mut zset = db.new_collection(ValueType::ZSet);
    for (member, score) in members {
        insert(db, key, &zset, member, *score)?;
    }
    zset.size = members.len() as u64;
    db.store(key, &Record::collection(zset, None), previous.as_ref())?;
    Ok(Reply::Integer(members.len() as i64))
}

/// Runs a sorted-set write at apply time.
pub(crate) fn execute_write<K: KeyspaceWrite + ?Sized>(
    db: &mut WriteView<'_, K>,
    cmd: &sorted_set_write::Command,
) -> ExecResult {
    use sorted_set_write::Command as C;
    match cmd {
        C::ZAdd(add) => zadd(db, add),
        C::ZRem(rem) => {
            let previous = db.lookup(&rem.key)?;
            let Some(mut zset) = (match zset_of(previous.as_ref()) {
                Ok(zset) => zset,
                Err(reply) => return Ok(reply),
            }) else {
                return Ok(Reply::Integer(0));
            };
            let mut removed = 0;
            for member in &rem.members {
                if let Some(score) = score_of(db, &rem.key, &zset, member)? {
                    unlink(db, &rem.key, &zset, member, score)?;
                    zset.size = zset.size.saturating_sub(1);
                    removed += 1;
                }
            }
            if let Some(previous) = &previous {
                shrink(db, &rem.key, previous, zset, removed > 0)?;
            }
            Ok(Reply::Integer(removed))
        }
        C::ZRemRange(rem) => {
            let previous = db.lookup(&rem.key)?;
            let (Some(previous), Some(range)) = (previous, &rem.range) else {
                return Ok(Reply::Integer(0));
            };
            let mut zset = match zset_of(Some(&previous)) {
                Ok(Some(zset)) => zset,
                Ok(None) => return Ok(Reply::Integer(0)),
                Err(reply) => return Ok(reply),
            };
            let doomed = selected(db, &rem.key, &zset, range)?;
            for (member, score) in &doomed {
                unlink(db, &rem.key, &zset, member, *score)?;
            }
            zset.size = zset.size.saturating_sub(doomed.len() as u64);
            shrink(db, &rem.key, &previous, zset, !doomed.is_empty())?;
            Ok(Reply::Integer(doomed.len() as i64))
        }
        C::ZPop(pop) => zpop(db, pop),
        C::ZRangeStore(st) => {
            let source = match zset_of(db.lookup(&st.source)?.as_ref()) {
                Ok(source) => source,
                Err(reply) => return Ok(reply),
            };
            let members = match (source, &st.range) {
                (Some(c), Some(range)) => selected(db, &st.source, &c, range)?,
                _ => Vec::new(),
            };
            store_zset(db, &st.destination, &members)
        }
        C::ZStore(st) => {
            let sources = match sources_of(&st.keys, &mut |key| db.lookup(key))? {
                Ok(sources) => sources,
                Err(reply) => return Ok(reply),
            };
            if !st.options_error.is_empty() {
                return Ok(Reply::error(st.options_error.clone()));
            }
            let combine = Combine {
                op: st.op(),
                keys: st.keys.clone(),
                weights: st.weights.clone(),
                aggregate: st.aggregate(),
                options_error: None,
            };
            let members = combine_sources(&*db, &combine, &sources, None)?;
            store_zset(db, &st.destination, &members)
        }
    }
}

/// ZADD and ZINCRBY, member by member as `zsetAdd`.
fn zadd<K: KeyspaceWrite + ?Sized>(db: &mut WriteView<'_, K>, add: &log::ZAdd) -> ExecResult {
    use log::z_add::{Compare, Condition};
    let previous = db.lookup(&add.key)?;
    let existing = match zset_of(previous.as_ref()) {
        Ok(zset) => zset,
        Err(reply) => return Ok(reply),
    };
    let (nx, xx) = (
        add.condition() == Condition::IfMissing,
        add.condition() == Condition::IfExists,
    );
    let (gt, lt) = (
        add.compare() == Compare::Greater,
        add.compare() == Compare::Less,
    );
    let nothing = || {
        if add.incr {
            Reply::Null
        } else {
            Reply::Integer(0)
        }
    };
    if existing.is_none() && xx {
        return Ok(nothing());
    }
    let mut zset = existing.unwrap_or_else(|| db.new_collection(ValueType::ZSet));
    let (mut added, mut updated, mut processed) = (0i64, 0i64, 0);
    let mut last_score = 0.0;
    for pair in &add.members {
        let member = &pair.member[..];
        let given = pair.score.unwrap_or_default();
        match score_of(db, &add.key, &zset, member)? {
            Some(current) => {
                if nx {
                    continue;
                }
                let mut score = given;
                if add.incr {
                    score += current;
                    if score.is_nan() {
                        return Ok(Reply::static_error(
                            "ERR resulting score is not a number (NaN)",
                        ));
                    }
                }
                if (lt && score >= current) || (gt && score <= current) {
                    continue;
                }
                processed += 1;
                last_score = score;
                if score != current {
                    db.sub_delete(&add.key, &zset, &order_key(current, member))?;
                    insert(db, &add.key, &zset, member, score)?;
                    updated += 1;
                }
            }
            None if xx => {}
            None => {
                insert(db, &add.key, &zset, member, given)?;
                zset.size += 1;
                added += 1;
                processed += 1;
                last_score = given;
            }
        }
    }
    if previous.is_none() || added > 0 {
        let expire_at = previous.as_ref().and_then(|r| r.expire_at);
        db.store(
            &add.key,
            &Record::collection(zset, expire_at),
            previous.as_ref(),
        )?;
    }
    Ok(if add.incr {
        if processed > 0 {
            score_reply(last_score)
        } else {
            Reply::Null
        }
    } else if add.changed {
        Reply::Integer(added + updated)
    } else {
        Reply::Integer(added)
    })
}

/// ZPOPMIN, ZPOPMAX, ZMPOP (`genericZpopCommand`).
fn zpop<K: KeyspaceWrite + ?Sized>(db: &mut WriteView<'_, K>, pop: &log::ZPop) -> ExecResult {
    use log::z_pop::Form;
    let mut found = None;
    for key in &pop.keys {
        let record = db.lookup(key)?;
        match zset_of(record.as_ref()) {
            Ok(Some(zset)) => {
                if let Some(record) = record {
                    found = Some((key, record, zset));
                }
                break;
            }
            Ok(None) => {}
            Err(reply) => return Ok(reply),
        }
    }
    let Some((key, previous, mut zset)) = found else {
        return Ok(if matches!(pop.form(), Form::WithKey | Form::KeyedFlat) {
            Reply::NullArray
        } else {
            Reply::Array(Vec::new())
        });
    };
    if pop.count == 0 {
        return Ok(Reply::Array(Vec::new()));
    }
    let range = log::ZRange {
        by: Some(log::z_range::By::Ranks(log::z_range::Ranks {
            start: 0,
            stop: i64::try_from(pop.count - 1).unwrap_or(i64::MAX),
        })),
        reverse: pop.max,
        offset: 0,
        count: -1,
    };
    let popped = selected(db, key, &zset, &range)?;
    for (member, score) in &popped {
        unlink(db, key, &zset, member, *score)?;
    }
    zset.size = zset.size.saturating_sub(popped.len() as u64);
    shrink(db, key, &previous, zset, !popped.is_empty())?;
    Ok(match pop.form() {
        Form::Single => Reply::Array(
            popped
                .into_iter()
                .flat_map(|(m, s)| [Reply::Bulk(m), score_reply(s)])
                .collect(),
        ),
        Form::Counted => members_reply(popped, true),
        Form::KeyedFlat => {
            let mut reply = vec![Reply::Bulk(key.clone())];
            for (member, score) in popped {
                reply.push(Reply::Bulk(member));
                reply.push(score_reply(score));
            }
            Reply::Array(reply)
        }
        Form::WithKey => Reply::Array(vec![
            Reply::Bulk(key.clone()),
            Reply::Array(
                popped
                    .into_iter()
                    .map(|(m, s)| Reply::Array(vec![Reply::Bulk(m), score_reply(s)]))
                    .collect(),
            ),
        ]),
    })
}
