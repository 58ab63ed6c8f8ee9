//! Sets: SADD, SREM, SMEMBERS, SISMEMBER, SMISMEMBER, SCARD, SPOP,
//! SRANDMEMBER, SMOVE, SINTER, SINTERCARD, SUNION, SDIFF and their STORE
//! forms, SSCAN.
//!
//! A set is a collection record (version, number of members) with one
//! empty sub-key per member, keyed as [`super::members`] describes.
//! Commands on several keys need them on one shard (`-CROSSSLOT`
//! otherwise). Writes are the `SetWrite` messages of the raft log; SPOP
//! carries the seed its random picks come from, so every replica removes
//! the same members.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use bytes::Bytes;
use elastickv_resp::Reply;

use crate::cmd::members::{
    ReplicatedRng, ScanOptions, Space, empty_scan, member_of, member_sub, members_at,
    random_members, scan,
};
use crate::command::{Command, ParseResult, eq, int, numkeys, positive};
use crate::db::{ReadView, SubRead, WriteView};
use crate::errors;
use crate::exec::{ExecResult, collection_of};
use crate::keyspace::{KeyspaceRead, KeyspaceWrite, StorageError, SubRange};
use crate::log::{self, set_write};
use crate::number::{parse_i64, parse_scan_cursor};
use crate::record::{Collection, Record, ValueType};
use crate::table::*;

const WRITE_SET_FAST: &[&str] = &["@write", "@set", "@fast"];
const WRITE_SET_SLOW: &[&str] = &["@write", "@set", "@slow"];
const READ_SET_FAST: &[&str] = &["@read", "@set", "@fast"];
const READ_SET_SLOW: &[&str] = &["@read", "@set", "@slow"];
const RANDOM_TIP: &[&str] = &["nondeterministic_output"];
const RW_INSERT: &[KeySpec] = &[ks(&["RW", "insert"], 1, 0, 1)];
const RW_DELETE: &[KeySpec] = &[ks(&["RW", "delete"], 1, 0, 1)];
const RW_ACCESS_DELETE: &[KeySpec] = &[ks(&["RW", "access", "delete"], 1, 0, 1)];
const RO_ACCESS_ALL: &[KeySpec] = &[ks(&["RO", "access"], 1, -1, 1)];

/// A command on keys 1, 2, ... (all of them, or up to `last_key`) that
/// must share a shard.
const fn same_shard(
    name: &'static str,
    arity: i32,
    flags: &'static [&'static str],
    acl: &'static [&'static str],
    last_key: i32,
    key_specs: &'static [KeySpec],
    parse: fn(&[Bytes]) -> ParseResult,
) -> CommandSpec {
    CommandSpec {
        name,
        arity,
        flags,
        first_key: 1,
        last_key,
        step: 1,
        acl,
        tips: NONE,
        key_specs,
        subcommands: &[],
        route: Route::SameShard,
        parse: Some(parse),
    }
}

const STORE_RW: &[KeySpec] = &[
    ks(&["RW", "update"], 1, 0, 1),
    ks(&["RO", "access"], 2, -1, 1),
];
const STORE_OW: &[KeySpec] = &[
    ks(&["OW", "update"], 1, 0, 1),
    ks(&["RO", "access"], 2, -1, 1),
];

/// The set commands' table entries.
pub(crate) static COMMANDS: &[CommandSpec] = &[
    keyed(
        "sadd",
        -3,
        &["write", "denyoom", "fast"],
        WRITE_SET_FAST,
        RW_INSERT,
        parse_sadd,
    ),
    keyed(
        "srem",
        -3,
        &["write", "fast"],
        WRITE_SET_FAST,
        RW_DELETE,
        parse_srem,
    ),
    keyed_with_tips(
        "smembers",
        2,
        &["readonly"],
        READ_SET_SLOW,
        ORDER_TIP,
        RO_ACCESS,
        parse_smembers,
    ),
    keyed(
        "sismember",
        3,
        &["readonly", "fast"],
        READ_SET_FAST,
        RO,
        parse_sismember,
    ),
    keyed(
        "smismember",
        -3,
        &["readonly", "fast"],
        READ_SET_FAST,
        RO_ACCESS,
        parse_smismember,
    ),
    keyed(
        "scard",
        2,
        &["readonly", "fast"],
        READ_SET_FAST,
        RO,
        parse_scard,
    ),
    keyed_with_tips(
        "spop",
        -2,
        &["write", "fast"],
        WRITE_SET_FAST,
        RANDOM_TIP,
        RW_ACCESS_DELETE,
        parse_spop,
    ),
    keyed_with_tips(
        "srandmember",
        -2,
        &["readonly"],
        READ_SET_SLOW,
        RANDOM_TIP,
        RO_ACCESS,
        parse_srandmember,
    ),
    same_shard(
        "smove",
        4,
        &["write", "fast"],
        WRITE_SET_FAST,
        2,
        &[
            ks(&["RW", "access", "delete"], 1, 0, 1),
            ks(&["RW", "insert"], 2, 0, 1),
        ],
        parse_smove,
    ),
    CommandSpec {
        tips: ORDER_TIP,
        ..same_shard(
            "sinter",
            -2,
            &["readonly"],
            READ_SET_SLOW,
            -1,
            RO_ACCESS_ALL,
            parse_sinter,
        )
    },
    CommandSpec {
        tips: ORDER_TIP,
        ..same_shard(
            "sunion",
            -2,
            &["readonly"],
            READ_SET_SLOW,
            -1,
            RO_ACCESS_ALL,
            parse_sunion,
        )
    },
    CommandSpec {
        tips: ORDER_TIP,
        ..same_shard(
            "sdiff",
            -2,
            &["readonly"],
            READ_SET_SLOW,
            -1,
            RO_ACCESS_ALL,
            parse_sdiff,
        )
    },
    same_shard(
        "sinterstore",
        -3,
        &["write", "denyoom"],
        WRITE_SET_SLOW,
        -1,
        STORE_RW,
        parse_sinterstore,
    ),
    same_shard(
        "sunionstore",
        -3,
        &["write", "denyoom"],
        WRITE_SET_SLOW,
        -1,
        STORE_OW,
        parse_sunionstore,
    ),
    same_shard(
        "sdiffstore",
        -3,
        &["write", "denyoom"],
        WRITE_SET_SLOW,
        -1,
        STORE_OW,
        parse_sdiffstore,
    ),
    CommandSpec {
        name: "sintercard",
        arity: -3,
        flags: &["readonly", "movablekeys"],
        first_key: 0,
        last_key: 0,
        step: 0,
        acl: READ_SET_SLOW,
        tips: NONE,
        key_specs: &[ks_keynum(&["RO", "access"], 1, 0, 1, 1)],
        subcommands: &[],
        route: Route::SameShard,
        parse: Some(parse_sintercard),
    },
    keyed_with_tips(
        "sscan",
        -3,
        &["readonly"],
        READ_SET_SLOW,
        RANDOM_TIP,
        RO_ACCESS,
        parse_sscan,
    ),
];

/// How SINTER, SUNION and SDIFF combine their sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOp {
    Inter,
    Union,
    Diff,
}

/// A set read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    SMembers(Bytes),
    SIsMember(Bytes, Bytes),
    SMIsMember(Bytes, Vec<Bytes>),
    SCard(Bytes),
    SRandMember {
        key: Bytes,
        /// `None`: one member, as a bulk string.
        count: Option<i64>,
    },
    /// Options are checked after the lookup, as Redis does.
    SScan {
        key: Bytes,
        cursor: u64,
        options: Vec<Bytes>,
    },
    /// SINTER, SUNION, SDIFF.
    Combine {
        op: SetOp,
        keys: Vec<Bytes>,
    },
    /// SINTERCARD; a `limit` of 0 is none.
    InterCard {
        keys: Vec<Bytes>,
        limit: u64,
    },
}

fn set_write(command: set_write::Command) -> Command {
    Command::Write(log::Write {
        family: Some(log::write::Family::Sets(log::SetWrite {
            command: Some(command),
        })),
    })
}

fn set_read(read: Read) -> ParseResult {
    Ok(Command::SetRead(read))
}

pub(crate) fn parse_sadd(args: &[Bytes]) -> ParseResult {
    Ok(set_write(set_write::Command::SAdd(log::SAdd {
        key: args[1].clone(),
        members: args[2..].to_vec(),
    })))
}

pub(crate) fn parse_srem(args: &[Bytes]) -> ParseResult {
    Ok(set_write(set_write::Command::SRem(log::SRem {
        key: args[1].clone(),
        members: args[2..].to_vec(),
    })))
}

pub(crate) fn parse_spop(args: &[Bytes]) -> ParseResult {
    let count = match args.len() {
        2 => None,
        3 => {
            // Before the lookup.
            Some(positive(&args[2])?)
        }
        _ => return Err(Reply::static_error(errors::SYNTAX)),
    };
    Ok(set_write(set_write::Command::SPop(log::SPop {
        key: args[1].clone(),
        with_count: count.is_some(),
        count: count.unwrap_or(1),
        seed: rand::random(),
    })))
}

pub(crate) fn parse_smove(args: &[Bytes]) -> ParseResult {
    Ok(set_write(set_write::Command::SMove(log::SMove {
        source: args[1].clone(),
        destination: args[2].clone(),
        member: args[3].clone(),
    })))
}

fn store(args: &[Bytes], op: log::s_store::Op) -> ParseResult {
    Ok(set_write(set_write::Command::SStore(log::SStore {
        op: op.into(),
        destination: args[1].clone(),
        keys: args[2..].to_vec(),
    })))
}

pub(crate) fn parse_sinterstore(args: &[Bytes]) -> ParseResult {
    store(args, log::s_store::Op::Inter)
}

pub(crate) fn parse_sunionstore(args: &[Bytes]) -> ParseResult {
    store(args, log::s_store::Op::Union)
}

pub(crate) fn parse_sdiffstore(args: &[Bytes]) -> ParseResult {
    store(args, log::s_store::Op::Diff)
}

pub(crate) fn parse_smembers(args: &[Bytes]) -> ParseResult {
    set_read(Read::SMembers(args[1].clone()))
}

pub(crate) fn parse_sismember(args: &[Bytes]) -> ParseResult {
    set_read(Read::SIsMember(args[1].clone(), args[2].clone()))
}

pub(crate) fn parse_smismember(args: &[Bytes]) -> ParseResult {
    set_read(Read::SMIsMember(args[1].clone(), args[2..].to_vec()))
}

pub(crate) fn parse_scard(args: &[Bytes]) -> ParseResult {
    set_read(Read::SCard(args[1].clone()))
}

pub(crate) fn parse_srandmember(args: &[Bytes]) -> ParseResult {
    let count = match args.len() {
        2 => None,
        3 => {
            // getRangeLongFromObjectOrReply(-LONG_MAX, LONG_MAX).
            let count = int(&args[2])?;
            if count == i64::MIN {
                return Err(Reply::static_error(
                    "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
                ));
            }
            Some(count)
        }
        _ => return Err(Reply::static_error(errors::SYNTAX)),
    };
    set_read(Read::SRandMember {
        key: args[1].clone(),
        count,
    })
}

pub(crate) fn parse_sscan(args: &[Bytes]) -> ParseResult {
    let cursor =
        parse_scan_cursor(&args[2]).ok_or_else(|| Reply::static_error("ERR invalid cursor"))?;
    set_read(Read::SScan {
        key: args[1].clone(),
        cursor,
        options: args[3..].to_vec(),
    })
}

fn combine(args: &[Bytes], op: SetOp) -> ParseResult {
    set_read(Read::Combine {
        op,
        keys: args[1..].to_vec(),
    })
}

pub(crate) fn parse_sintercard(args: &[Bytes]) -> ParseResult {
    let numkeys = numkeys(&args[1])?;
    let given = (args.len() - 2) as u64;
    if numkeys > given {
        return Err(Reply::static_error(
            "ERR Number of keys can't be greater than number of args",
        ));
    }
    let keys_end = 2 + numkeys as usize;
    let mut limit = 0;
    let mut j = keys_end;
    while j < args.len() {
        if eq(&args[j], "limit") && j + 1 < args.len() {
            j += 1;
            limit = match parse_i64(&args[j]) {
                Some(n) if n >= 0 => n.unsigned_abs(),
                _ => return Err(Reply::static_error("ERR LIMIT can't be negative")),
            };
        } else {
            return Err(Reply::static_error(errors::SYNTAX));
        }
        j += 1;
    }
    set_read(Read::InterCard {
        keys: args[2..keys_end].to_vec(),
        limit,
    })
}

pub(crate) fn parse_sinter(args: &[Bytes]) -> ParseResult {
    combine(args, SetOp::Inter)
}

pub(crate) fn parse_sunion(args: &[Bytes]) -> ParseResult {
    combine(args, SetOp::Union)
}

pub(crate) fn parse_sdiff(args: &[Bytes]) -> ParseResult {
    combine(args, SetOp::Diff)
}

/// The live set in `record`: `Ok(None)` if there is none, `Err(reply)`
/// for WRONGTYPE.
fn set_of(record: Option<&Record>) -> Result<Option<Collection>, Reply> {
    collection_of(record, ValueType::Set)
}

/// The members of set `c` at `key`, by a scan function (reads and writes
/// both have one).
fn members_of(
    scan: &mut dyn FnMut(&mut crate::keyspace::SubVisitor<'_>) -> Result<(), StorageError>,
) -> Result<Vec<Bytes>, StorageError> {
    let mut out = Vec::new();
    scan(&mut |sub, _| {
        out.push(Bytes::copy_from_slice(member_of(sub)));
        ControlFlow::Continue(())
    })?;
    Ok(out)
}

/// Whether a member is in the i-th set.
type MemberProbe<'a> = dyn FnMut(usize, &Collection, &[u8]) -> Result<bool, StorageError> + 'a;
/// Every member of the i-th set.
type MemberList<'a> = dyn FnMut(usize, &Collection) -> Result<Vec<Bytes>, StorageError> + 'a;

/// SINTER/SUNION/SDIFF of `sets` (each a key's members probe and scan),
/// as Redis computes them. `None` stands for a missing key.
fn combine_sets(
    op: SetOp,
    sets: &[Option<Collection>],
    is_member: &mut MemberProbe<'_>,
    all: &mut MemberList<'_>,
) -> Result<Vec<Bytes>, StorageError> {
    match op {
        SetOp::Inter => {
            if sets.iter().any(Option::is_none) {
                return Ok(Vec::new());
            }
            // Probe the others with the smallest set's members.
            let Some((smallest, first)) = sets
                .iter()
                .enumerate()
                .filter_map(|(i, c)| c.map(|c| (i, c)))
                .min_by_key(|(_, c)| c.size)
            else {
                return Ok(Vec::new());
            };
            let mut out = Vec::new();
            'members: for member in all(smallest, &first)? {
                for (i, other) in sets.iter().enumerate() {
                    if let Some(other) = other
                        && i != smallest
                        && !is_member(i, other, &member)?
                    {
                        continue 'members;
                    }
                }
                out.push(member);
            }
            Ok(out)
        }
        SetOp::Union => {
            let mut out = BTreeSet::new();
            for (i, c) in sets.iter().enumerate() {
                if let Some(c) = c {
                    out.extend(all(i, c)?);
                }
            }
            Ok(out.into_iter().collect())
        }
        SetOp::Diff => {
            let Some(Some(first)) = sets.first() else {
                return Ok(Vec::new());
            };
            let mut out = BTreeSet::new();
            out.extend(all(0, first)?);
            for (i, c) in sets.iter().enumerate().skip(1) {
                if let Some(c) = c {
                    for member in all(i, c)? {
                        out.remove(&member);
                    }
                }
                if out.is_empty() {
                    break;
                }
            }
            Ok(out.into_iter().collect())
        }
    }
}

fn bulks(members: Vec<Bytes>) -> Vec<Reply> {
    members.into_iter().map(Reply::Bulk).collect()
}

/// The members SINTER, SUNION or SDIFF of `keys` answer with, or the
/// WRONGTYPE reply if any key holds another type (even after a missing
/// one, as in Redis).
fn combined<K: KeyspaceRead + ?Sized>(
    db: &ReadView<'_, K>,
    op: SetOp,
    keys: &[Bytes],
) -> Result<Result<Vec<Bytes>, Reply>, StorageError> {
    let mut sets = Vec::with_capacity(keys.len());
    for key in keys {
        match set_of(db.lookup(key)?.as_ref()) {
            Ok(set) => sets.push(set),
            Err(reply) => return Ok(Err(reply)),
        }
    }
    combine_sets(
        op,
        &sets,
        &mut |i, c, member| Ok(db.sub_get(&keys[i], c, &member_sub(member))?.is_some()),
        &mut |i, c| members_of(&mut |visit| db.sub_scan(&keys[i], c, SubRange::ALL, visit)),
    )
    .map(Ok)
}

/// Runs a set read.
pub(crate) fn execute_read<K: KeyspaceRead + ?Sized>(
    cmd: &Read,
    db: &ReadView<'_, K>,
) -> ExecResult {
    let key = match cmd {
        Read::Combine { op, keys } => {
            let members = match combined(db, *op, keys)? {
                Ok(members) => members,
                Err(reply) => return Ok(reply),
            };
            return Ok(Reply::Set(bulks(members)));
        }
        Read::InterCard { keys, limit } => {
            let count = match combined(db, SetOp::Inter, keys)? {
                Ok(members) => members.len() as u64,
                Err(reply) => return Ok(reply),
            };
            let count = if *limit > 0 { count.min(*limit) } else { count };
            return Ok(Reply::Integer(i64::try_from(count).unwrap_or(i64::MAX)));
        }
        Read::SMembers(key)
        | Read::SIsMember(key, _)
        | Read::SMIsMember(key, _)
        | Read::SCard(key)
        | Read::SRandMember { key, .. }
        | Read::SScan { key, .. } => key,
    };
    let set = match set_of(db.lookup(key)?.as_ref()) {
        Ok(set) => set,
        Err(reply) => return Ok(reply),
    };
    let contains = |member: &[u8]| -> Result<bool, StorageError> {
        match &set {
            Some(c) => Ok(db.sub_get(key, c, &member_sub(member))?.is_some()),
            None => Ok(false),
        }
    };
    Ok(match cmd {
        Read::SMembers(_) => Reply::Set(match &set {
            Some(c) => bulks(members_of(&mut |visit| {
                db.sub_scan(key, c, SubRange::ALL, visit)
            })?),
            None => Vec::new(),
        }),
        Read::SIsMember(_, member) => Reply::Integer(i64::from(contains(member)?)),
        Read::SMIsMember(_, members) => {
            let mut out = Vec::with_capacity(members.len());
            for member in members {
                out.push(Reply::Integer(i64::from(contains(member)?)));
            }
            Reply::Array(out)
        }
        Read::SCard(_) => {
            Reply::Integer(set.map_or(0, |c| i64::try_from(c.size).unwrap_or(i64::MAX)))
        }
        Read::SRandMember { count, .. } => match (set, count) {
            (None, None) => Reply::Null,
            (None, Some(_)) => Reply::Array(Vec::new()),
            (Some(c), None) => match random_members(db, key, &c, Space::WHOLE, 1, true)?.pop() {
                Some((member, _)) => Reply::Bulk(member),
                None => Reply::Null,
            },
            (Some(c), Some(count)) => Reply::Array(
                random_members(db, key, &c, Space::WHOLE, count.unsigned_abs(), *count < 0)?
                    .into_iter()
                    .map(|(m, _)| Reply::Bulk(m))
                    .collect(),
            ),
        },
        Read::SScan {
            cursor, options, ..
        } => {
            let Some(c) = set else {
                return Ok(empty_scan());
            };
            let options = match ScanOptions::parse(options, false) {
                Ok(options) => options,
                Err(reply) => return Ok(reply),
            };
            scan(db, key, &c, Space::WHOLE, *cursor, &options, None)?
        }
        Read::Combine { .. } | Read::InterCard { .. } => Reply::Set(Vec::new()),
    })
}

/// Stores `members` as the set at `key` (whose live record is
/// `previous`), or deletes `key` when there are none.
fn store_set<K: KeyspaceWrite + ?Sized>(
    db: &mut WriteView<'_, K>,
    key: &[u8],
    previous: Option<&Record>,
    members: &[Bytes],
) -> Result<(), StorageError> {
    if members.is_empty() {
        if let Some(previous) = previous {
            db.remove(key, previous)?;
        }
        return Ok(());
    }
    let mut set = db.new_collection(ValueType::Set);
    for member in members {
        db.sub_put(key, &set, &member_sub(member), Vec::new())?;
    }
    set.size = members.len() as u64;
    db.store(key, &Record::collection(set, None), previous)
}

/// Runs a set write at apply time.
pub(crate) fn execute_write<K: KeyspaceWrite + ?Sized>(
    db: &mut WriteView<'_, K>,
    cmd: &set_write::Command,
) -> ExecResult {
    use set_write::Command as C;
    match cmd {
        C::SAdd(add) => {
            let previous = db.lookup(&add.key)?;
            let existing = match set_of(previous.as_ref()) {
                Ok(set) => set,
                Err(reply) => return Ok(reply),
            };
            let mut set = existing.unwrap_or_else(|| db.new_collection(ValueType::Set));
            let mut added = 0;
            for member in &add.members {
                let sub = member_sub(member);
                if db.sub_get(&add.key, &set, &sub)?.is_none() {
                    db.sub_put(&add.key, &set, &sub, Vec::new())?;
                    set.size += 1;
                    added += 1;
                }
            }
            if previous.is_none() || added > 0 {
                let expire_at = previous.as_ref().and_then(|r| r.expire_at);
                db.store(
                    &add.key,
                    &Record::collection(set, expire_at),
                    previous.as_ref(),
                )?;
            }
            Ok(Reply::Integer(added))
        }
        C::SRem(rem) => {
            let previous = db.lookup(&rem.key)?;
            let Some(mut set) = (match set_of(previous.as_ref()) {
                Ok(set) => set,
                Err(reply) => return Ok(reply),
            }) else {
                return Ok(Reply::Integer(0));
            };
            let mut removed = 0;
            for member in &rem.members {
                let sub = member_sub(member);
                if db.sub_get(&rem.key, &set, &sub)?.is_some() {
                    db.sub_delete(&rem.key, &set, &sub)?;
                    set.size = set.size.saturating_sub(1);
                    removed += 1;
                }
            }
            shrink(db, &rem.key, previous.as_ref(), set, removed > 0)?;
            Ok(Reply::Integer(removed))
        }
        C::SPop(pop) => spop(db, pop),
        C::SMove(mv) => smove(db, mv),
        C::SStore(st) => {
            let mut sets = Vec::with_capacity(st.keys.len());
            for key in &st.keys {
                match set_of(db.lookup(key)?.as_ref()) {
                    Ok(set) => sets.push(set),
                    Err(reply) => return Ok(reply),
                }
            }
            let op = match st.op() {
                log::s_store::Op::Inter => SetOp::Inter,
                log::s_store::Op::Union => SetOp::Union,
                log::s_store::Op::Diff => SetOp::Diff,
            };
            let keys = &st.keys;
            let members = {
                let view = &*db;
                combine_sets(
                    op,
                    &sets,
                    &mut |i, c, member| {
                        Ok(view.sub_get(&keys[i], c, &member_sub(member))?.is_some())
                    },
                    &mut |i, c| {
                        members_of(&mut |visit| view.sub_scan(&keys[i], c, SubRange::ALL, visit))
                    },
                )?
            };
            let previous = db.lookup(&st.destination)?;
            store_set(db, &st.destination, previous.as_ref(), &members)?;
            Ok(Reply::Integer(members.len() as i64))
        }
    }
}

/// After removing members from `set` at `key`: deletes the key when the
/// set is empty, stores the new size when it `changed`.
fn shrink<K: KeyspaceWrite + ?Sized>(
    db: &mut WriteView<'_, K>,
    key: &[u8],
    previous: Option<&Record>,
    set: Collection,
    changed: bool,
) -> Result<(), StorageError> {
    let Some(previous) = previous else {
        return Ok(());
    };
    if set.size == 0 {
        db.remove(key, previous)
    } else if changed {
        db.store(
            key,
            &Record::collection(set, previous.expire_at),
            Some(previous),
        )
    } else {
        Ok(())
    }
}

fn spop<K: KeyspaceWrite + ?Sized>(db: &mut WriteView<'_, K>, pop: &log::SPop) -> ExecResult {
    let empty = || {
        if pop.with_count {
            Reply::Set(Vec::new())
        } else {
            Reply::Null
        }
    };
    let previous = db.lookup(&pop.key)?;
    let Some(mut set) = (match set_of(previous.as_ref()) {
        Ok(set) => set,
        Err(reply) => return Ok(reply),
    }) else {
        return Ok(empty());
    };
    if pop.count == 0 {
        return Ok(empty());
    }
    let positions = ReplicatedRng::new(pop.seed).distinct_positions(set.size, pop.count);
    let picked = {
        let view = &*db;
        members_at(&positions, &mut |visit| {
            view.sub_scan(&pop.key, &set, SubRange::ALL, visit)
        })?
    };
    for (member, _) in &picked {
        db.sub_delete(&pop.key, &set, &member_sub(member))?;
        set.size = set.size.saturating_sub(1);
    }
    shrink(db, &pop.key, previous.as_ref(), set, !picked.is_empty())?;
    let mut members: Vec<Reply> = picked.into_iter().map(|(m, _)| Reply::Bulk(m)).collect();
    Ok(if pop.with_count {
        Reply::Set(members)
    } else {
        members.pop().unwrap_or(Reply::Null)
    })
}

fn smove<K: KeyspaceWrite + ?Sized>(db: &mut WriteView<'_, K>, mv: &log::SMove) -> ExecResult {
    let source_record = db.lookup(&mv.source)?;
    let destination_record = db.lookup(&mv.destination)?;
    if source_record.is_none() {
        return Ok(Reply::Integer(0));
    }
    let source = match set_of(source_record.as_ref()) {
        Ok(set) => set,
        Err(reply) => return Ok(reply),
    };
    let destination = match set_of(destination_record.as_ref()) {
        Ok(set) => set,
        Err(reply) => return Ok(reply),
    };
    let Some(mut source) = source else {
        return Ok(Reply::Integer(0));
    };
    let sub = member_sub(&mv.member);
    let present = db.sub_get(&mv.source, &source, &sub)?.is_some();
    if mv.source == mv.destination {
        return Ok(Reply::Integer(i64::from(present)));
    }
    if !present {
        return Ok(Reply::Integer(0));
    }
    db.sub_delete(&mv.source, &source, &sub)?;
    source.size = source.size.saturating_sub(1);
    shrink(db, &mv.source, source_record.as_ref(), source, true)?;
    let mut destination = destination.unwrap_or_else(|| db.new_collection(ValueType::Set));
    if db.sub_get(&mv.destination, &destination, &sub)?.is_none() {
        db.sub_put(&mv.destination, &destination, &sub, Vec::new())?;
        destination.size += 1;
        let expire_at = destination_record.as_ref().and_then(|r| r.expire_at);
        db.store(
            &mv.destination,
            &Record::collection(destination, expire_at),
            destination_record.as_ref(),
        )?;
    }
    Ok(Reply::Integer(1))
}
