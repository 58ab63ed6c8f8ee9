//! Lists: LPUSH, RPUSH, LPUSHX, RPUSHX, LPOP, RPOP (with count), LLEN,
//! LRANGE, LINDEX, LSET, LREM, LTRIM, LINSERT, LPOS, LMOVE, RPOPLPUSH,
//! LMPOP.
//!
//! A list is a collection record (version, length, and the position of its
//! first element) with one sub-key per element: its position, a
//! big-endian u64. A new list starts in the middle of the position space,
//! so pushes at either end, pops, LINDEX, LSET and LRANGE touch only the
//! elements they are about; LINSERT and LREM move the elements on one side
//! of the change, as in Redis (O(N)). Writes are the `ListWrite` messages
//! of the raft log.

use std::ops::ControlFlow;

use bytes::Bytes;
use elastickv_resp::Reply;

use crate::command::{Command, ParseResult, blocking_timeout, eq, int, multi_pop_args, positive};
use crate::db::{ReadView, SubRead, WriteView};
use crate::errors;
use crate::exec::{ExecResult, collection_of};
use crate::keyspace::{KeyspaceRead, KeyspaceWrite, StorageError, SubRange};
use crate::log::{self, list_write};
use crate::number::parse_i64;
use crate::record::{Collection, Record, ValueType};
use crate::table::*;

const WRITE_LIST_FAST: &[&str] = &["@write", "@list", "@fast"];
const WRITE_LIST_SLOW: &[&str] = &["@write", "@list", "@slow"];
const READ_LIST_FAST: &[&str] = &["@read", "@list", "@fast"];
const READ_LIST_SLOW: &[&str] = &["@read", "@list", "@slow"];
const RW_INSERT: &[KeySpec] = &[ks(&["RW", "insert"], 1, 0, 1)];
const RW_DELETE: &[KeySpec] = &[ks(&["RW", "delete"], 1, 0, 1)];
const RW_ACCESS_DELETE: &[KeySpec] = &[ks(&["RW", "access", "delete"], 1, 0, 1)];
const MOVE_SPECS: &[KeySpec] = &[
    ks(&["RW", "access", "delete"], 1, 0, 1),
    ks(&["RW", "insert"], 2, 0, 1),
];

/// A command moving an element from key 1 to key 2 (same shard).
const fn moving(name: &'static str, arity: i32, parse: fn(&[Bytes]) -> ParseResult) -> CommandSpec {
    CommandSpec {
        name,
        arity,
        flags: &["write", "denyoom"],
        first_key: 1,
        last_key: 2,
        step: 1,
        acl: WRITE_LIST_SLOW,
        tips: NONE,
        key_specs: MOVE_SPECS,
        subcommands: &[],
        route: Route::SameShard,
        parse: Some(parse),
    }
}

const BLOCKING_LIST: &[&str] = &["@write", "@list", "@slow", "@blocking"];
const KEYS_BUT_LAST: &[KeySpec] = &[ks(&["RW", "access", "delete"], 1, -2, 1)];

/// A blocking list command on keys `first..=last` (negative: from the
/// end), on one shard.
const fn blocking_entry(
    name: &'static str,
    arity: i32,
    flags: &'static [&'static str],
    first_key: i32,
    last_key: i32,
    key_specs: &'static [KeySpec],
    parse: fn(&[Bytes]) -> ParseResult,
) -> CommandSpec {
    CommandSpec {
        name,
        arity,
        flags,
        first_key,
        last_key,
        step: 1,
        acl: BLOCKING_LIST,
        tips: NONE,
        key_specs,
        subcommands: &[],
        route: Route::SameShard,
        parse: Some(parse),
    }
}

/// The list commands' table entries.
pub(crate) static COMMANDS: &[CommandSpec] = &[
    keyed(
        "lpush",
        -3,
        &["write", "denyoom", "fast"],
        WRITE_LIST_FAST,
        RW_INSERT,
        parse_lpush,
    ),
    keyed(
        "rpush",
        -3,
        &["write", "denyoom", "fast"],
        WRITE_LIST_FAST,
        RW_INSERT,
        parse_rpush,
    ),
    keyed(
        "lpushx",
        -3,
        &["write", "denyoom", "fast"],
        WRITE_LIST_FAST,
        RW_INSERT,
        parse_lpushx,
    ),
    keyed(
        "rpushx",
        -3,
        &["write", "denyoom", "fast"],
        WRITE_LIST_FAST,
        RW_INSERT,
        parse_rpushx,
    ),
    keyed(
        "lpop",
        -2,
        &["write", "fast"],
        WRITE_LIST_FAST,
        RW_ACCESS_DELETE,
        parse_lpop,
    ),
    keyed(
        "rpop",
        -2,
        &["write", "fast"],
        WRITE_LIST_FAST,
        RW_ACCESS_DELETE,
        parse_rpop,
    ),
    keyed(
        "llen",
        2,
        &["readonly", "fast"],
        READ_LIST_FAST,
        RO,
        parse_llen,
    ),
    keyed(
        "lrange",
        4,
        &["readonly"],
        READ_LIST_SLOW,
        RO_ACCESS,
        parse_lrange,
    ),
    keyed(
        "lindex",
        3,
        &["readonly"],
        READ_LIST_SLOW,
        RO_ACCESS,
        parse_lindex,
    ),
    keyed(
        "lset",
        4,
        &["write", "denyoom"],
        WRITE_LIST_SLOW,
        RW_UPDATE,
        parse_lset,
    ),
    keyed(
        "lrem",
        4,
        &["write"],
        WRITE_LIST_SLOW,
        RW_DELETE,
        parse_lrem,
    ),
    keyed(
        "ltrim",
        4,
        &["write"],
        WRITE_LIST_SLOW,
        RW_DELETE,
        parse_ltrim,
    ),
    keyed(
        "linsert",
        5,
        &["write", "denyoom"],
        WRITE_LIST_SLOW,
        RW_INSERT,
        parse_linsert,
    ),
    keyed(
        "lpos",
        -3,
        &["readonly"],
        READ_LIST_SLOW,
        RO_ACCESS,
        parse_lpos,
    ),
    moving("lmove", 5, parse_lmove),
    moving("rpoplpush", 3, parse_rpoplpush),
    blocking_entry(
        "blpop",
        -3,
        &["write", "noscript", "blocking"],
        1,
        -2,
        KEYS_BUT_LAST,
        parse_blpop,
    ),
    blocking_entry(
        "brpop",
        -3,
        &["write", "noscript", "blocking"],
        1,
        -2,
        KEYS_BUT_LAST,
        parse_brpop,
    ),
    blocking_entry(
        "blmove",
        6,
        &["write", "denyoom", "noscript", "blocking"],
        1,
        2,
        MOVE_SPECS,
        parse_blmove,
    ),
    blocking_entry(
        "brpoplpush",
        4,
        &["write", "denyoom", "noscript", "blocking"],
        1,
        2,
        MOVE_SPECS,
        parse_brpoplpush,
    ),
    CommandSpec {
        flags: &["write", "blocking", "movablekeys"],
        arity: -5,
        acl: BLOCKING_LIST,
        key_specs: &[ks_keynum(&["RW", "access", "delete"], 2, 0, 1, 1)],
        parse: Some(parse_blmpop),
        name: "blmpop",
        step: 0,
        ..blocking_entry("blmpop", -5, NONE, 0, 0, &[], parse_blmpop)
    },
    CommandSpec {
        name: "lmpop",
        arity: -4,
        flags: &["write", "movablekeys"],
        first_key: 0,
        last_key: 0,
        step: 0,
        acl: WRITE_LIST_SLOW,
        tips: NONE,
        key_specs: &[ks_keynum(&["RW", "access", "delete"], 1, 0, 1, 1)],
        subcommands: &[],
        route: Route::SameShard,
        parse: Some(parse_lmpop),
    },
];

/// A list read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    LLen(Bytes),
    LRange(Bytes, i64, i64),
    /// The index as sent: Redis parses it after the lookup.
    LIndex(Bytes, Bytes),
    LPos {
        key: Bytes,
        element: Bytes,
        /// Which match to start from: 1 the first, -1 the last.
        rank: i64,
        /// `Some(0)`: all matches; `None`: one, not as an array.
        count: Option<u64>,
        /// Elements to look at at most; 0 is no limit.
        maxlen: u64,
    },
}

fn list_write(command: list_write::Command) -> Command {
    Command::Write(log::Write {
        family: Some(log::write::Family::Lists(log::ListWrite {
            command: Some(command),
        })),
    })
}

fn list_read(read: Read) -> ParseResult {
    Ok(Command::ListRead(read))
}

fn end_of(word: &[u8]) -> Result<log::End, Reply> {
    if eq(word, "left") {
        Ok(log::End::Left)
    } else if eq(word, "right") {
        Ok(log::End::Right)
    } else {
        Err(Reply::static_error(errors::SYNTAX))
    }
}

fn push(args: &[Bytes], end: log::End, only_existing: bool) -> ParseResult {
    Ok(list_write(list_write::Command::Push(log::Push {
        key: args[1].clone(),
        elements: args[2..].to_vec(),
        end: end.into(),
        only_existing,
    })))
}

pub(crate) fn parse_lpush(args: &[Bytes]) -> ParseResult {
    push(args, log::End::Left, false)
}

pub(crate) fn parse_rpush(args: &[Bytes]) -> ParseResult {
    push(args, log::End::Right, false)
}

pub(crate) fn parse_lpushx(args: &[Bytes]) -> ParseResult {
    push(args, log::End::Left, true)
}

pub(crate) fn parse_rpushx(args: &[Bytes]) -> ParseResult {
    push(args, log::End::Right, true)
}

fn pop(args: &[Bytes], end: log::End, name: &str) -> ParseResult {
    let count = match args.len() {
        2 => None,
        3 => Some(positive(&args[2])?),
        _ => return Err(errors::wrong_args(name)),
    };
    Ok(list_write(list_write::Command::Pop(log::Pop {
        key: args[1].clone(),
        end: end.into(),
        with_count: count.is_some(),
        count: count.unwrap_or(1),
    })))
}

pub(crate) fn parse_lpop(args: &[Bytes]) -> ParseResult {
    pop(args, log::End::Left, "lpop")
}

pub(crate) fn parse_rpop(args: &[Bytes]) -> ParseResult {
    pop(args, log::End::Right, "rpop")
}

pub(crate) fn parse_llen(args: &[Bytes]) -> ParseResult {
    list_read(Read::LLen(args[1].clone()))
}

pub(crate) fn parse_lrange(args: &[Bytes]) -> ParseResult {
    let start = int(&args[2])?;
    let end = int(&args[3])?;
    list_read(Read::LRange(args[1].clone(), start, end))
}

pub(crate) fn parse_lindex(args: &[Bytes]) -> ParseResult {
    list_read(Read::LIndex(args[1].clone(), args[2].clone()))
}

pub(crate) fn parse_lset(args: &[Bytes]) -> ParseResult {
    Ok(list_write(list_write::Command::LSet(log::LSet {
        key: args[1].clone(),
        index: args[2].clone(),
        element: args[3].clone(),
    })))
}

pub(crate) fn parse_lrem(args: &[Bytes]) -> ParseResult {
    Ok(list_write(list_write::Command::LRem(log::LRem {
        key: args[1].clone(),
        count: int(&args[2])?,
        element: args[3].clone(),
    })))
}

pub(crate) fn parse_ltrim(args: &[Bytes]) -> ParseResult {
    Ok(list_write(list_write::Command::LTrim(log::LTrim {
        key: args[1].clone(),
        start: int(&args[2])?,
        end: int(&args[3])?,
    })))
}

pub(crate) fn parse_linsert(args: &[Bytes]) -> ParseResult {
    let after = if eq(&args[2], "after") {
        true
    } else if eq(&args[2], "before") {
        false
    } else {
        return Err(Reply::static_error(errors::SYNTAX));
    };
    Ok(list_write(list_write::Command::LInsert(log::LInsert {
        key: args[1].clone(),
        after,
        pivot: args[3].clone(),
        element: args[4].clone(),
    })))
}

pub(crate) fn parse_lpos(args: &[Bytes]) -> ParseResult {
    let (mut rank, mut count, mut maxlen) = (1, None, 0);
    let mut j = 3;
    while j < args.len() {
        let more = j + 1 < args.len();
        if eq(&args[j], "rank") && more {
            j += 1;
            rank = int(&args[j])?;
            if rank == 0 {
                return Err(Reply::static_error(
                    "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list",
                ));
            }
        } else if eq(&args[j], "count") && more {
            j += 1;
            count = Some(match parse_i64(&args[j]) {
                Some(n) if n >= 0 => n.unsigned_abs(),
                _ => return Err(Reply::static_error("ERR COUNT can't be negative")),
            });
        } else if eq(&args[j], "maxlen") && more {
            j += 1;
            maxlen = match parse_i64(&args[j]) {
                Some(n) if n >= 0 => n.unsigned_abs(),
                _ => return Err(Reply::static_error("ERR MAXLEN can't be negative")),
            };
        } else {
            return Err(Reply::static_error(errors::SYNTAX));
        }
        j += 1;
    }
    list_read(Read::LPos {
        key: args[1].clone(),
        element: args[2].clone(),
        rank,
        count,
        maxlen,
    })
}

fn lmove(args: &[Bytes], from: log::End, to: log::End) -> ParseResult {
    Ok(list_write(list_write::Command::LMove(log::LMove {
        source: args[1].clone(),
        destination: args[2].clone(),
        from: from.into(),
        to: to.into(),
    })))
}

pub(crate) fn parse_lmove(args: &[Bytes]) -> ParseResult {
    let from = end_of(&args[3])?;
    let to = end_of(&args[4])?;
    lmove(args, from, to)
}

pub(crate) fn parse_rpoplpush(args: &[Bytes]) -> ParseResult {
    lmove(args, log::End::Right, log::End::Left)
}

pub(crate) fn parse_lmpop(args: &[Bytes]) -> ParseResult {
    Ok(list_write(list_write::Command::LMultiPop(lmpop_of(
        args, 1,
    )?)))
}

/// LMPOP's arguments from the key count at `numkeys_at` on (BLMPOP's
/// timeout comes before it).
fn lmpop_of(args: &[Bytes], numkeys_at: usize) -> Result<log::LMultiPop, Reply> {
    let (keys, end, count) = multi_pop_args(args, numkeys_at, end_of)?;
    Ok(log::LMultiPop {
        keys,
        end: end.into(),
        count,
        keyed_element: false,
    })
}

fn blocking(write: list_write::Command, keys: Vec<Bytes>, timeout_ms: u64) -> ParseResult {
    Ok(Command::Blocking {
        write: log::Write {
            family: Some(log::write::Family::Lists(log::ListWrite {
                command: Some(write),
            })),
        },
        keys,
        timeout_ms,
    })
}

/// BLPOP, BRPOP: the keys, then the timeout (checked first, as Redis does).
fn blocking_pop(args: &[Bytes], end: log::End) -> ParseResult {
    let last = args.len() - 1;
    let timeout_ms = blocking_timeout(&args[last])?;
    let keys = args[1..last].to_vec();
    let pop = log::LMultiPop {
        keys: keys.clone(),
        end: end.into(),
        count: 1,
        keyed_element: true,
    };
    blocking(list_write::Command::LMultiPop(pop), keys, timeout_ms)
}

pub(crate) fn parse_blpop(args: &[Bytes]) -> ParseResult {
    blocking_pop(args, log::End::Left)
}

pub(crate) fn parse_brpop(args: &[Bytes]) -> ParseResult {
    blocking_pop(args, log::End::Right)
}

pub(crate) fn parse_blmpop(args: &[Bytes]) -> ParseResult {
    let pop = lmpop_of(args, 2)?;
    let timeout_ms = blocking_timeout(&args[1])?;
    let keys = pop.keys.clone();
    blocking(list_write::Command::LMultiPop(pop), keys, timeout_ms)
}

/// BLMOVE: the ends are checked before the timeout.
pub(crate) fn parse_blmove(args: &[Bytes]) -> ParseResult {
    let from = end_of(&args[3])?;
    let to = end_of(&args[4])?;
    let timeout_ms = blocking_timeout(&args[5])?;
    blocking_move(args, from, to, timeout_ms)
}

pub(crate) fn parse_brpoplpush(args: &[Bytes]) -> ParseResult {
    let timeout_ms = blocking_timeout(&args[3])?;
    blocking_move(args, log::End::Right, log::End::Left, timeout_ms)
}

fn blocking_move(args: &[Bytes], from: log::End, to: log::End, timeout_ms: u64) -> ParseResult {
    let mv = log::LMove {
        source: args[1].clone(),
        destination: args[2].clone(),
        from: from.into(),
        to: to.into(),
    };
    blocking(
        list_write::Command::LMove(mv),
        vec![args[1].clone()],
        timeout_ms,
    )
}

/// The sub-key of the element at `position`.
fn at(position: u64) -> [u8; 8] {
    position.to_be_bytes()
}

/// The live list in `record`: `Ok(None)` if there is none, `Err(reply)`
/// for WRONGTYPE.
fn list_of(record: Option<&Record>) -> Result<Option<Collection>, Reply> {
    collection_of(record, ValueType::List)
}

/// Redis's index normalization for a list of `len` (negative counts from
/// the end); `None` when out of range.
fn index_in(index: i64, len: u64) -> Option<u64> {
    let len = i64::try_from(len).ok()?;
    let index = if index < 0 { len + index } else { index };
    (0..len).contains(&index).then_some(index as u64)
}

/// LRANGE/LTRIM's range of `len` elements: `(start, end)` inclusive, or
/// `None` when empty.
fn range_in(start: i64, end: i64, len: u64) -> Option<(u64, u64)> {
    let len = i64::try_from(len).ok()?;
    let mut start = if start < 0 { len + start } else { start };
    let mut end = if end < 0 { len + end } else { end };
    if start < 0 {
        start = 0;
    }
    if start > end || start >= len {
        return None;
    }
    if end >= len {
        end = len - 1;
    }
    Some((start as u64, end as u64))
}

/// The elements of list `c` at indexes `first..=last`, in order or in
/// reverse, by a scan function (reads and writes both have one).
fn elements(
    c: &Collection,
    first: u64,
    last: u64,
    reverse: bool,
    scan: &mut dyn FnMut(
        SubRange<'_>,
        &mut crate::keyspace::SubVisitor<'_>,
    ) -> Result<(), StorageError>,
) -> Result<Vec<Bytes>, StorageError> {
    let (from, to) = (at(c.head + first), at(c.head + last + 1));
    let mut out = Vec::with_capacity(usize::try_from(last - first + 1).unwrap_or(0).min(1 << 16));
    scan(
        SubRange {
            from: &from,
            to: Some(&to),
            reverse,
        },
        &mut |_, value| {
            out.push(Bytes::copy_from_slice(value));
            ControlFlow::Continue(())
        },
    )?;
    Ok(out)
}

/// Runs a list read.
pub(crate) fn execute_read<K: KeyspaceRead + ?Sized>(
    cmd: &Read,
    db: &ReadView<'_, K>,
) -> ExecResult {
    let key = match cmd {
        Read::LLen(key) | Read::LRange(key, ..) | Read::LIndex(key, _) | Read::LPos { key, .. } => {
            key
        }
    };
    let list = match list_of(db.lookup(key)?.as_ref()) {
        Ok(list) => list,
        Err(reply) => return Ok(reply),
    };
    let scan =
        |c: &Collection, range: SubRange<'_>, visit: &mut crate::keyspace::SubVisitor<'_>| {
            db.sub_scan(key, c, range, visit)
        };
    Ok(match cmd {
        Read::LLen(_) => {
            Reply::Integer(list.map_or(0, |c| i64::try_from(c.size).unwrap_or(i64::MAX)))
        }
        Read::LRange(_, start, end) => {
            let Some(c) = list else {
                return Ok(Reply::Array(Vec::new()));
            };
            match range_in(*start, *end, c.size) {
                Some((first, last)) => Reply::Array(
                    elements(&c, first, last, false, &mut |r, v| scan(&c, r, v))?
                        .into_iter()
                        .map(Reply::Bulk)
                        .collect(),
                ),
                None => Reply::Array(Vec::new()),
            }
        }
        Read::LIndex(_, raw) => {
            let Some(c) = list else {
                return Ok(Reply::Null);
            };
            let Some(index) = parse_i64(raw) else {
                return Ok(Reply::static_error(errors::NOT_INTEGER));
            };
            match index_in(index, c.size) {
                Some(i) => match db.sub_get(key, &c, &at(c.head + i))? {
                    Some(value) => Reply::Bulk(Bytes::from(value)),
                    None => Reply::Null,
                },
                None => Reply::Null,
            }
        }
        Read::LPos {
            element,
            rank,
            count,
            maxlen,
            ..
        } => {
            let Some(c) = list else {
                return Ok(match count {
                    Some(_) => Reply::Array(Vec::new()),
                    None => Reply::Null,
                });
            };
            let reverse = *rank < 0;
            let skip = rank.unsigned_abs() - 1;
            let mut matches = 0u64;
            let mut found = Vec::new();
            let mut looked = 0u64;
            let from = at(c.head);
            let to = at(c.head + c.size);
            db.sub_scan(
                key,
                &c,
                SubRange {
                    from: &from,
                    to: Some(&to),
                    reverse,
                },
                &mut |sub, value| {
                    if *maxlen != 0 && looked >= *maxlen {
                        return ControlFlow::Break(());
                    }
                    looked += 1;
                    if value == element.as_ref() {
                        matches += 1;
                        if matches > skip {
                            let position = sub
                                .try_into()
                                .map_or(0, u64::from_be_bytes)
                                .wrapping_sub(c.head);
                            found.push(position);
                            let enough = match count {
                                None => true,
                                Some(0) => false,
                                Some(n) => found.len() as u64 >= *n,
                            };
                            if enough {
                                return ControlFlow::Break(());
                            }
                        }
                    }
                    ControlFlow::Continue(())
                },
            )?;
            let index = |p: u64| Reply::Integer(i64::try_from(p).unwrap_or(i64::MAX));
            match count {
                Some(_) => Reply::Array(found.into_iter().map(index).collect()),
                None => found.first().map_or(Reply::Null, |&p| index(p)),
            }
        }
    })
}

/// Stores list `c` at `key` after a change, or deletes the key when the
/// list is empty.
fn save<K: KeyspaceWrite + ?Sized>(
    db: &mut WriteView<'_, K>,
    key: &[u8],
    previous: Option<&Record>,
    c: Collection,
) -> Result<(), StorageError> {
    if c.size == 0 {
        return match previous {
            Some(previous) => db.remove(key, previous),
            None => Ok(()),
        };
    }
    let expire_at = previous.and_then(|r| r.expire_at);
    db.store(key, &Record::collection(c, expire_at), previous)
}

/// Replaces whatever is at `key` with a list of `elements` (no expiry),
/// or deletes `key` when there are none (SORT ... STORE).
pub(crate) fn store_list<K: KeyspaceWrite + ?Sized>(
    db: &mut WriteView<'_, K>,
    key: &[u8],
    elements: &[Bytes],
) -> Result<(), StorageError> {
    let previous = db.lookup(key)?;
    if elements.is_empty() {
        return match &previous {
            Some(previous) => db.remove(key, previous),
            None => Ok(()),
        };
    }
    let mut c = db.new_collection(ValueType::List);
    for element in elements {
        push_one(db, key, &mut c, log::End::Right, element)?;
    }
    db.store(key, &Record::collection(c, None), previous.as_ref())
}

/// Every element of list `c` at `key`, head first.
pub(crate) fn all_elements<S: SubRead + ?Sized>(
    view: &S,
    key: &[u8],
    c: &Collection,
) -> Result<Vec<Bytes>, StorageError> {
    let mut out = Vec::with_capacity(usize::try_from(c.size).unwrap_or(0).min(1 << 16));
    view.sub_scan(key, c, SubRange::ALL, &mut |_, value| {
        out.push(Bytes::copy_from_slice(value));
        ControlFlow::Continue(())
    })?;
    Ok(out)
}

/// Pushes `element` at `end` of list `c` at `key`.
fn push_one<K: KeyspaceWrite + ?Sized>(
    db: &mut WriteView<'_, K>,
    key: &[u8],
    c: &mut Collection,
    end: log::End,
    element: &[u8],
) -> Result<(), StorageError> {
    let position = match end {
        log::End::Left => {
            c.head -= 1;
            c.head
        }
        log::End::Right => c.head + c.size,
    };
    c.size += 1;
    db.sub_put(key, c, &at(position), element.to_vec())
}

/// Pops up to `count` elements from `end` of list `c` at `key`, in pop
/// order.
fn pop_some<K: KeyspaceWrite + ?Sized>(
    db: &mut WriteView<'_, K>,
    key: &[u8],
    c: &mut Collection,
    end: log::End,
    count: u64,
) -> Result<Vec<Bytes>, StorageError> {
    let n = count.min(c.size);
    if n == 0 {
        return Ok(Vec::new());
    }
    let (first, last, reverse) = match end {
        log::End::Left => (0, n - 1, false),
        log::End::Right => (c.size - n, c.size - 1, true),
    };
    let popped = {
        let view = &*db;
        elements(c, first, last, reverse, &mut |range, visit| {
            view.sub_scan(key, c, range, visit)
        })?
    };
    delete_positions(db, key, c, c.head + first, c.head + last + 1)?;
    if end == log::End::Left {
        c.head += n;
    }
    c.size -= n;
    Ok(popped)
}

/// Deletes the elements at positions `from..to` of list `c` (point
/// deletions for a few, one range deletion for many).
fn delete_positions<K: KeyspaceWrite + ?Sized>(
    db: &mut WriteView<'_, K>,
    key: &[u8],
    c: &Collection,
    from: u64,
    to: u64,
) -> Result<(), StorageError> {
    if to <= from {
        return Ok(());
    }
    if to - from > crate::db::POINT_DELETE_MAX as u64 {
        return db.sub_delete_range(key, c, &at(from), &at(to));
    }
    for position in from..to {
        db.sub_delete(key, c, &at(position))?;
    }
    Ok(())
}

/// Runs a list write at apply time.
pub(crate) fn execute_write<K: KeyspaceWrite + ?Sized>(
    db: &mut WriteView<'_, K>,
    cmd: &list_write::Command,
) -> ExecResult {
    use list_write::Command as C;
    match cmd {
        C::Push(p) => {
            let previous = db.lookup(&p.key)?;
            let existing = match list_of(previous.as_ref()) {
                Ok(list) => list,
                Err(reply) => return Ok(reply),
            };
            if existing.is_none() && p.only_existing {
                return Ok(Reply::Integer(0));
            }
            let mut c = existing.unwrap_or_else(|| db.new_collection(ValueType::List));
            for element in &p.elements {
                push_one(db, &p.key, &mut c, p.end(), element)?;
            }
            save(db, &p.key, previous.as_ref(), c)?;
            Ok(Reply::Integer(i64::try_from(c.size).unwrap_or(i64::MAX)))
        }
        C::Pop(p) => {
            let previous = db.lookup(&p.key)?;
            let Some(mut c) = (match list_of(previous.as_ref()) {
                Ok(list) => list,
                Err(reply) => return Ok(reply),
            }) else {
                return Ok(if p.with_count {
                    Reply::NullArray
                } else {
                    Reply::Null
                });
            };
            if p.with_count && p.count == 0 {
                return Ok(Reply::Array(Vec::new()));
            }
            let popped = pop_some(db, &p.key, &mut c, p.end(), p.count)?;
            save(db, &p.key, previous.as_ref(), c)?;
            Ok(if p.with_count {
                Reply::Array(popped.into_iter().map(Reply::Bulk).collect())
            } else {
                popped.into_iter().next().map_or(Reply::Null, Reply::Bulk)
            })
        }
        C::LSet(set) => {
            let previous = db.lookup(&set.key)?;
            let Some(c) = (match list_of(previous.as_ref()) {
                Ok(list) => list,
                Err(reply) => return Ok(reply),
            }) else {
                return Ok(Reply::static_error(errors::NO_SUCH_KEY));
            };
            let Some(index) = parse_i64(&set.index) else {
                return Ok(Reply::static_error(errors::NOT_INTEGER));
            };
            let Some(i) = index_in(index, c.size) else {
                return Ok(Reply::static_error("ERR index out of range"));
            };
            db.sub_put(&set.key, &c, &at(c.head + i), set.element.to_vec())?;
            Ok(Reply::ok())
        }
        C::LTrim(trim) => {
            let previous = db.lookup(&trim.key)?;
            let Some(mut c) = (match list_of(previous.as_ref()) {
                Ok(list) => list,
                Err(reply) => return Ok(reply),
            }) else {
                return Ok(Reply::ok());
            };
            let (keep_from, keep_to) = match range_in(trim.start, trim.end, c.size) {
                Some((first, last)) => (first, last + 1),
                None => (c.size, c.size),
            };
            delete_positions(db, &trim.key, &c, c.head, c.head + keep_from)?;
            delete_positions(db, &trim.key, &c, c.head + keep_to, c.head + c.size)?;
            c.head += keep_from;
            c.size = keep_to - keep_from;
            save(db, &trim.key, previous.as_ref(), c)?;
            Ok(Reply::ok())
        }
        C::LRem(rem) => lrem(db, rem),
        C::LInsert(ins) => linsert(db, ins),
        C::LMove(mv) => lmove_write(db, mv),
        C::LMultiPop(mp) => {
            for key in &mp.keys {
                let previous = db.lookup(key)?;
                let Some(mut c) = (match list_of(previous.as_ref()) {
                    Ok(list) => list,
                    Err(reply) => return Ok(reply),
                }) else {
                    continue;
                };
                let popped = pop_some(db, key, &mut c, mp.end(), mp.count)?;
                save(db, key, previous.as_ref(), c)?;
                if mp.keyed_element {
                    let mut reply = vec![Reply::Bulk(key.clone())];
                    reply.extend(popped.into_iter().map(Reply::Bulk));
                    return Ok(Reply::Array(reply));
                }
                return Ok(Reply::Array(vec![
                    Reply::Bulk(key.clone()),
                    Reply::Array(popped.into_iter().map(Reply::Bulk).collect()),
                ]));
            }
            Ok(Reply::NullArray)
        }
    }
}

/// Every element of list `c` at `key` from index `first` on, in order.
fn tail_from<K: KeyspaceWrite + ?Sized>(
    db: &WriteView<'_, K>,
    key: &[u8],
    c: &Collection,
    first: u64,
) -> Result<Vec<Bytes>, StorageError> {
    if first >= c.size {
        return Ok(Vec::new());
    }
    elements(c, first, c.size - 1, false, &mut |range, visit| {
        db.sub_scan(key, c, range, visit)
    })
}

/// Writes `values` at indexes `first..` of list `c`.
fn write_from<K: KeyspaceWrite + ?Sized>(
    db: &mut WriteView<'_, K>,
    key: &[u8],
    c: &Collection,
    first: u64,
    values: &[Bytes],
) -> Result<(), StorageError> {
    for (i, value) in (first..).zip(values) {
        db.sub_put(key, c, &at(c.head + i), value.to_vec())?;
    }
    Ok(())
}

fn lrem<K: KeyspaceWrite + ?Sized>(db: &mut WriteView<'_, K>, rem: &log::LRem) -> ExecResult {
    let previous = db.lookup(&rem.key)?;
    let Some(mut c) = (match list_of(previous.as_ref()) {
        Ok(list) => list,
        Err(reply) => return Ok(reply),
    }) else {
        return Ok(Reply::Integer(0));
    };
    // Which indexes go: matches from the head (count >= 0) or the tail
    // (count < 0), at most |count| of them (0: all).
    let limit = rem.count.unsigned_abs();
    let mut doomed = Vec::new();
    {
        let view = &*db;
        let (from, to) = (at(c.head), at(c.head + c.size));
        view.sub_scan(
            &rem.key,
            &c,
            SubRange {
                from: &from,
                to: Some(&to),
                reverse: rem.count < 0,
            },
            &mut |sub, value| {
                if value == rem.element.as_ref() {
                    let position = sub.try_into().map_or(0, u64::from_be_bytes);
                    doomed.push(position - c.head);
                    if limit != 0 && doomed.len() as u64 >= limit {
                        return ControlFlow::Break(());
                    }
                }
                ControlFlow::Continue(())
            },
        )?;
    }
    if doomed.is_empty() {
        return Ok(Reply::Integer(0));
    }
    doomed.sort_unstable();
    // Close the gaps: everything after the first removed element moves
    // towards the head.
    let first = doomed[0];
    let kept: Vec<Bytes> = tail_from(db, &rem.key, &c, first)?
        .into_iter()
        .zip(first..)
        .filter(|(_, i)| doomed.binary_search(i).is_err())
        .map(|(v, _)| v)
        .collect();
    write_from(db, &rem.key, &c, first, &kept)?;
    let new_size = first + kept.len() as u64;
    delete_positions(db, &rem.key, &c, c.head + new_size, c.head + c.size)?;
    c.size = new_size;
    save(db, &rem.key, previous.as_ref(), c)?;
    Ok(Reply::Integer(doomed.len() as i64))
}

fn linsert<K: KeyspaceWrite + ?Sized>(db: &mut WriteView<'_, K>, ins: &log::LInsert) -> ExecResult {
    let previous = db.lookup(&ins.key)?;
    let Some(mut c) = (match list_of(previous.as_ref()) {
        Ok(list) => list,
        Err(reply) => return Ok(reply),
    }) else {
        return Ok(Reply::Integer(0));
    };
    let mut pivot = None;
    {
        let view = &*db;
        let (from, to) = (at(c.head), at(c.head + c.size));
        view.sub_scan(
            &ins.key,
            &c,
            SubRange {
                from: &from,
                to: Some(&to),
                reverse: false,
            },
            &mut |sub, value| {
                if value == ins.pivot.as_ref() {
                    pivot = Some(sub.try_into().map_or(0, u64::from_be_bytes) - c.head);
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            },
        )?;
    }
    let Some(pivot) = pivot else {
        return Ok(Reply::Integer(-1));
    };
    // The new element's index; the elements from there on move one down.
    let index = if ins.after { pivot + 1 } else { pivot };
    let moved = tail_from(db, &ins.key, &c, index)?;
    write_from(db, &ins.key, &c, index + 1, &moved)?;
    db.sub_put(&ins.key, &c, &at(c.head + index), ins.element.to_vec())?;
    c.size += 1;
    save(db, &ins.key, previous.as_ref(), c)?;
    Ok(Reply::Integer(i64::try_from(c.size).unwrap_or(i64::MAX)))
}

fn lmove_write<K: KeyspaceWrite + ?Sized>(
    db: &mut WriteView<'_, K>,
    mv: &log::LMove,
) -> ExecResult {
    let source_record = db.lookup(&mv.source)?;
    let Some(mut source) = (match list_of(source_record.as_ref()) {
        Ok(list) => list,
        Err(reply) => return Ok(reply),
    }) else {
        return Ok(Reply::Null);
    };
    let same = mv.source == mv.destination;
    let destination_record = if same {
        None
    } else {
        db.lookup(&mv.destination)?
    };
    let destination = match list_of(destination_record.as_ref()) {
        Ok(list) => list,
        Err(reply) => return Ok(reply),
    };
    let Some(value) = pop_some(db, &mv.source, &mut source, mv.from(), 1)?
        .into_iter()
        .next()
    else {
        return Ok(Reply::Null);
    };
    if same {
        // A rotation: the same list takes the element back.
        push_one(db, &mv.source, &mut source, mv.to(), &value)?;
        save(db, &mv.source, source_record.as_ref(), source)?;
        return Ok(Reply::Bulk(value));
    }
    save(db, &mv.source, source_record.as_ref(), source)?;
    let mut destination = destination.unwrap_or_else(|| db.new_collection(ValueType::List));
    push_one(db, &mv.destination, &mut destination, mv.to(), &value)?;
    save(
        db,
        &mv.destination,
        destination_record.as_ref(),
        destination,
    )?;
    Ok(Reply::Bulk(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_arithmetic_at_the_ends_of_the_range() {
        assert_eq!(index_in(0, 3), Some(0));
        assert_eq!(index_in(2, 3), Some(2));
        assert_eq!(index_in(3, 3), None);
        assert_eq!(index_in(-1, 3), Some(2));
        assert_eq!(index_in(-3, 3), Some(0));
        assert_eq!(index_in(-4, 3), None);
        assert_eq!(index_in(i64::MIN, 3), None);
        assert_eq!(index_in(0, 0), None);
        assert_eq!(range_in(0, -1, 3), Some((0, 2)));
        assert_eq!(range_in(-100, 100, 3), Some((0, 2)));
        assert_eq!(range_in(2, 1, 3), None);
        assert_eq!(range_in(3, 5, 3), None);
        assert_eq!(range_in(-1, -2, 3), None);
        assert_eq!(range_in(i64::MIN, i64::MAX, 3), Some((0, 2)));
        assert_eq!(range_in(0, 0, 0), None);
    }

    /// Property: Redis's normalization, computed without overflow, for
    /// random indexes (extremes included) and lengths.
    #[test]
    fn index_arithmetic_matches_a_model_for_random_inputs() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let index = |rng: &mut rand::rngs::StdRng| match rng.gen_range(0..4) {
            0 => rng.gen_range(-12..12),
            1 => i64::MIN + rng.gen_range(0..3),
            2 => i64::MAX - rng.gen_range(0..3),
            _ => rng.r#gen(),
        };
        for _ in 0..100_000 {
            let len: u64 = rng.gen_range(0..10);
            let (i, j) = (index(&mut rng), index(&mut rng));
            let n = i128::from(len);
            let norm = |x: i64| {
                if x < 0 {
                    n + i128::from(x)
                } else {
                    i128::from(x)
                }
            };
            let one = (0..n).contains(&norm(i)).then(|| norm(i) as u64);
            assert_eq!(index_in(i, len), one, "index {i} of {len}");
            let (start, end) = (norm(i).max(0), norm(j).min(n - 1));
            let range = (start <= end && start < n).then_some((start as u64, end as u64));
            assert_eq!(range_in(i, j, len), range, "range {i} {j} of {len}");
        }
    }

    /// Property: pushes and pops at both ends, LINDEX, LSET and LRANGE on
    /// the stored positions agree with a deque, over long random runs.
    #[test]
    fn pushes_and_pops_at_both_ends_match_a_deque() {
        use std::collections::VecDeque;

        use rand::{Rng, SeedableRng};

        use crate::command::parse;
        use crate::db::ReadTime;
        use crate::exec::{execute_read, execute_write};
        use crate::keyspace::MemKeyspace;

        let mut ks = MemKeyspace::default();
        let mut run = |line: String| -> Reply {
            let args: Vec<Bytes> = line
                .split(' ')
                .map(|w| Bytes::from(w.to_string()))
                .collect();
            let parsed = match parse(&args) {
                Ok(parsed) => parsed,
                Err(reply) => return reply,
            };
            match &parsed.command {
                Command::Write(write) => execute_write(write, &mut ks, 1).unwrap(),
                other => execute_read(other, &ks, &ReadTime::at(1)).unwrap(),
            }
        };
        let mut model: VecDeque<String> = VecDeque::new();
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        for step in 0..20_000 {
            let value = format!("v{step}");
            match rng.gen_range(0..7) {
                0 => {
                    run(format!("LPUSH l {value}"));
                    model.push_front(value);
                }
                1 => {
                    run(format!("RPUSH l {value}"));
                    model.push_back(value);
                }
                2 => {
                    let got = run("LPOP l".into());
                    assert_eq!(got, model.pop_front().map_or(Reply::Null, Reply::bulk));
                }
                3 => {
                    let got = run("RPOP l".into());
                    assert_eq!(got, model.pop_back().map_or(Reply::Null, Reply::bulk));
                }
                4 => {
                    let i: i64 = rng.gen_range(-12..12);
                    let at = index_in(i, model.len() as u64);
                    let expected =
                        at.map_or(Reply::Null, |a| Reply::bulk(model[a as usize].clone()));
                    assert_eq!(run(format!("LINDEX l {i}")), expected, "LINDEX {i}");
                }
                5 => {
                    let i: i64 = rng.gen_range(-12..12);
                    let reply = run(format!("LSET l {i} {value}"));
                    if let Some(a) = index_in(i, model.len() as u64) {
                        assert_eq!(reply, Reply::ok());
                        model[a as usize] = value;
                    } else {
                        assert!(reply.is_error());
                    }
                }
                _ => {
                    let (i, j): (i64, i64) = (rng.gen_range(-12..12), rng.gen_range(-12..12));
                    let expected: Vec<Reply> = range_in(i, j, model.len() as u64)
                        .map(|(a, b)| {
                            (a..=b)
                                .map(|k| Reply::bulk(model[k as usize].clone()))
                                .collect()
                        })
                        .unwrap_or_default();
                    assert_eq!(run(format!("LRANGE l {i} {j}")), Reply::Array(expected));
                }
            }
        }
        let len = i64::try_from(model.len()).unwrap();
        assert_eq!(run("LLEN l".into()), Reply::Integer(len));
    }
}
