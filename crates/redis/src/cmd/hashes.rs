//! Hashes: HSET/HMSET, HSETNX, HGET, HMGET, HGETALL, HKEYS, HVALS, HDEL,
//! HEXISTS, HLEN, HSTRLEN, HINCRBY, HINCRBYFLOAT, HRANDFIELD, HSCAN.
//!
//! A hash is a collection record (version, number of fields) with one
//! sub-key per field holding its value. A field's sub-key is its 64-bit
//! FNV-1a hash, then the field: fields come back in hash order (as in
//! Redis, an order clients cannot rely on), and an HSCAN cursor is simply
//! the hash to resume from, which needs no state between calls and
//! returns every field present throughout at least once. Writes are the
//! `HashWrite` messages of the raft log.

use std::ops::ControlFlow;

use bytes::Bytes;
use elastickv_resp::Reply;
use rand::Rng;
use rand::seq::SliceRandom;

use crate::command::{Command, ParseResult, eq, int};
use crate::db::{ReadView, WriteView};
use crate::errors;
use crate::exec::{ExecResult, wrongtype};
use crate::glob;
use crate::keyspace::{KeyspaceRead, KeyspaceWrite, StorageError, SubRange};
use crate::log::{self, hash_write};
use crate::number::{self, FloatError, parse_i64, parse_scan_cursor};
use crate::record::{Collection, Record, ValueType};
use crate::table::*;

const WRITE_HASH_FAST: &[&str] = &["@write", "@hash", "@fast"];
const READ_HASH_FAST: &[&str] = &["@read", "@hash", "@fast"];
const READ_HASH_SLOW: &[&str] = &["@read", "@hash", "@slow"];
const RW_INSERT: &[KeySpec] = &[ks(&["RW", "insert"], 1, 0, 1)];
const RW_DELETE: &[KeySpec] = &[ks(&["RW", "delete"], 1, 0, 1)];
const RANDOM_TIP: &[&str] = &["nondeterministic_output"];

/// Hashes up to this many fields answer HSCAN in one reply with cursor 0,
/// as Redis does for the compact (listpack) encoding it uses up to
/// `hash-max-listpack-entries` (128).
const SCAN_IN_ONE_REPLY: u64 = 128;

/// The hash commands' table entries.
pub(crate) static COMMANDS: &[CommandSpec] = &[
    keyed(
        "hset",
        -4,
        &["write", "denyoom", "fast"],
        WRITE_HASH_FAST,
        RW_UPDATE,
        parse_hset,
    ),
    keyed(
        "hsetnx",
        4,
        &["write", "denyoom", "fast"],
        WRITE_HASH_FAST,
        RW_INSERT,
        parse_hsetnx,
    ),
    keyed(
        "hget",
        3,
        &["readonly", "fast"],
        READ_HASH_FAST,
        RO_ACCESS,
        parse_hget,
    ),
    keyed(
        "hmset",
        -4,
        &["write", "denyoom", "fast"],
        WRITE_HASH_FAST,
        RW_UPDATE,
        parse_hmset,
    ),
    keyed(
        "hmget",
        -3,
        &["readonly", "fast"],
        READ_HASH_FAST,
        RO_ACCESS,
        parse_hmget,
    ),
    keyed_with_tips(
        "hgetall",
        2,
        &["readonly"],
        READ_HASH_SLOW,
        ORDER_TIP,
        RO_ACCESS,
        parse_hgetall,
    ),
    keyed(
        "hdel",
        -3,
        &["write", "fast"],
        WRITE_HASH_FAST,
        RW_DELETE,
        parse_hdel,
    ),
    keyed(
        "hexists",
        3,
        &["readonly", "fast"],
        READ_HASH_FAST,
        RO,
        parse_hexists,
    ),
    keyed(
        "hlen",
        2,
        &["readonly", "fast"],
        READ_HASH_FAST,
        RO,
        parse_hlen,
    ),
    keyed_with_tips(
        "hkeys",
        2,
        &["readonly"],
        READ_HASH_SLOW,
        ORDER_TIP,
        RO_ACCESS,
        parse_hkeys,
    ),
    keyed_with_tips(
        "hvals",
        2,
        &["readonly"],
        READ_HASH_SLOW,
        ORDER_TIP,
        RO_ACCESS,
        parse_hvals,
    ),
    keyed(
        "hincrby",
        4,
        &["write", "denyoom", "fast"],
        WRITE_HASH_FAST,
        RW_ACCESS_UPDATE,
        parse_hincrby,
    ),
    keyed(
        "hincrbyfloat",
        4,
        &["write", "denyoom", "fast"],
        WRITE_HASH_FAST,
        RW_ACCESS_UPDATE,
        parse_hincrbyfloat,
    ),
    keyed(
        "hstrlen",
        3,
        &["readonly", "fast"],
        READ_HASH_FAST,
        RO,
        parse_hstrlen,
    ),
    keyed_with_tips(
        "hrandfield",
        -2,
        &["readonly"],
        READ_HASH_SLOW,
        RANDOM_TIP,
        RO_ACCESS,
        parse_hrandfield,
    ),
    keyed_with_tips(
        "hscan",
        -3,
        &["readonly"],
        READ_HASH_SLOW,
        RANDOM_TIP,
        RO_ACCESS,
        parse_hscan,
    ),
];

/// A hash read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    HGet(Bytes, Bytes),
    HMGet(Bytes, Vec<Bytes>),
    HGetAll(Bytes),
    HKeys(Bytes),
    HVals(Bytes),
    HExists(Bytes, Bytes),
    HLen(Bytes),
    HStrLen(Bytes, Bytes),
    HRandField {
        key: Bytes,
        /// `None`: one field, as a bulk string.
        count: Option<i64>,
        with_values: bool,
    },
    /// Options are checked after the lookup, as Redis does (a missing key
    /// answers an empty scan whatever follows the cursor).
    HScan {
        key: Bytes,
        cursor: u64,
        options: Vec<Bytes>,
    },
}

fn hash_write(command: hash_write::Command) -> Command {
    Command::Write(log::Write {
        family: Some(log::write::Family::Hashes(log::HashWrite {
            command: Some(command),
        })),
    })
}

fn hash_read(read: Read) -> ParseResult {
    Ok(Command::HashRead(read))
}

fn field_pairs(args: &[Bytes], name: &str) -> Result<Vec<log::KeyValue>, Reply> {
    // The name, the key, then pairs: an even count.
    if !args.len().is_multiple_of(2) {
        return Err(errors::wrong_args(name));
    }
    Ok(args[2..]
        .chunks_exact(2)
        .map(|fv| log::KeyValue {
            key: fv[0].clone(),
            value: fv[1].clone(),
        })
        .collect())
}

pub(crate) fn parse_hset(args: &[Bytes]) -> ParseResult {
    Ok(hash_write(hash_write::Command::HSet(log::HSet {
        key: args[1].clone(),
        fields: field_pairs(args, "hset")?,
        status_reply: false,
    })))
}

pub(crate) fn parse_hmset(args: &[Bytes]) -> ParseResult {
    Ok(hash_write(hash_write::Command::HSet(log::HSet {
        key: args[1].clone(),
        fields: field_pairs(args, "hmset")?,
        status_reply: true,
    })))
}

pub(crate) fn parse_hsetnx(args: &[Bytes]) -> ParseResult {
    Ok(hash_write(hash_write::Command::HSetNx(log::HSetNx {
        key: args[1].clone(),
        field: args[2].clone(),
        value: args[3].clone(),
    })))
}

pub(crate) fn parse_hdel(args: &[Bytes]) -> ParseResult {
    Ok(hash_write(hash_write::Command::HDel(log::HDel {
        key: args[1].clone(),
        fields: args[2..].to_vec(),
    })))
}

pub(crate) fn parse_hincrby(args: &[Bytes]) -> ParseResult {
    Ok(hash_write(hash_write::Command::HIncrBy(log::HIncrBy {
        key: args[1].clone(),
        field: args[2].clone(),
        by: int(&args[3])?,
    })))
}

pub(crate) fn parse_hincrbyfloat(args: &[Bytes]) -> ParseResult {
    // getLongDoubleFromObjectOrReply, then the NaN/infinity check, both
    // before the key is looked at. Adding it to nothing tells which.
    match number::incr_by_float(None, &args[3]) {
        Ok(_) => {}
        Err(FloatError::NotAFloat) => return Err(Reply::static_error(errors::NOT_FLOAT)),
        Err(FloatError::NanOrInfinity) => {
            return Err(Reply::static_error("ERR value is NaN or Infinity"));
        }
    }
    Ok(hash_write(hash_write::Command::HIncrByFloat(
        log::HIncrByFloat {
            key: args[1].clone(),
            field: args[2].clone(),
            by: args[3].clone(),
        },
    )))
}

pub(crate) fn parse_hget(args: &[Bytes]) -> ParseResult {
    hash_read(Read::HGet(args[1].clone(), args[2].clone()))
}

pub(crate) fn parse_hmget(args: &[Bytes]) -> ParseResult {
    hash_read(Read::HMGet(args[1].clone(), args[2..].to_vec()))
}

pub(crate) fn parse_hgetall(args: &[Bytes]) -> ParseResult {
    hash_read(Read::HGetAll(args[1].clone()))
}

pub(crate) fn parse_hkeys(args: &[Bytes]) -> ParseResult {
    hash_read(Read::HKeys(args[1].clone()))
}

pub(crate) fn parse_hvals(args: &[Bytes]) -> ParseResult {
    hash_read(Read::HVals(args[1].clone()))
}

pub(crate) fn parse_hexists(args: &[Bytes]) -> ParseResult {
    hash_read(Read::HExists(args[1].clone(), args[2].clone()))
}

pub(crate) fn parse_hlen(args: &[Bytes]) -> ParseResult {
    hash_read(Read::HLen(args[1].clone()))
}

pub(crate) fn parse_hstrlen(args: &[Bytes]) -> ParseResult {
    hash_read(Read::HStrLen(args[1].clone(), args[2].clone()))
}

pub(crate) fn parse_hrandfield(args: &[Bytes]) -> ParseResult {
    let key = args[1].clone();
    let Some(raw) = args.get(2) else {
        return hash_read(Read::HRandField {
            key,
            count: None,
            with_values: false,
        });
    };
    // getRangeLongFromObjectOrReply(-LONG_MAX, LONG_MAX).
    let count = int(raw)?;
    if count == i64::MIN {
        return Err(Reply::static_error(
            "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
        ));
    }
    let with_values = match args.get(3) {
        None => false,
        Some(word) if args.len() == 4 && eq(word, "withvalues") => true,
        Some(_) => return Err(Reply::static_error(errors::SYNTAX)),
    };
    if with_values && !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&count) {
        return Err(Reply::static_error("ERR value is out of range"));
    }
    hash_read(Read::HRandField {
        key,
        count: Some(count),
        with_values,
    })
}

pub(crate) fn parse_hscan(args: &[Bytes]) -> ParseResult {
    let cursor =
        parse_scan_cursor(&args[2]).ok_or_else(|| Reply::static_error("ERR invalid cursor"))?;
    hash_read(Read::HScan {
        key: args[1].clone(),
        cursor,
        options: args[3..].to_vec(),
    })
}

/// The sub-key of `field`: its hash, then itself. The hash is part of the
/// data directory's format and must never change.
fn field_sub(field: &[u8]) -> Vec<u8> {
    let mut sub = field_hash(field).to_be_bytes().to_vec();
    sub.extend_from_slice(field);
    sub
}

fn field_hash(field: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut hasher = fnv::FnvHasher::default();
    hasher.write(field);
    hasher.finish()
}

/// The field a sub-key holds (see [`field_sub`]).
fn field_of(sub: &[u8]) -> &[u8] {
    sub.get(8..).unwrap_or_default()
}

/// The hash a sub-key starts with.
fn hash_of_sub(sub: &[u8]) -> u64 {
    sub.get(..8)
        .and_then(|h| h.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

/// The live hash at `key`: `Ok(None)` if there is none, `Err(reply)` for
/// WRONGTYPE.
fn hash_of(record: Option<Record>) -> Result<Option<Collection>, Reply> {
    match record {
        None => Ok(None),
        Some(r) => match r.as_collection() {
            Some(c) if c.kind == ValueType::Hash => Ok(Some(*c)),
            _ => Err(wrongtype()),
        },
    }
}

/// Every `(field, value)` of hash `c` at `key`, in field order.
fn all_fields<K: KeyspaceRead + ?Sized>(
    db: &ReadView<'_, K>,
    key: &[u8],
    c: &Collection,
) -> Result<Vec<(Bytes, Bytes)>, StorageError> {
    let mut out = Vec::with_capacity(usize::try_from(c.size).unwrap_or(0).min(1 << 16));
    db.sub_scan(key, c, SubRange::ALL, &mut |sub, value| {
        out.push((
            Bytes::copy_from_slice(field_of(sub)),
            Bytes::copy_from_slice(value),
        ));
        ControlFlow::Continue(())
    })?;
    Ok(out)
}

/// Runs a hash read.
pub(crate) fn execute_read<K: KeyspaceRead + ?Sized>(
    cmd: &Read,
    db: &ReadView<'_, K>,
) -> ExecResult {
    let key = match cmd {
        Read::HGet(key, _)
        | Read::HMGet(key, _)
        | Read::HGetAll(key)
        | Read::HKeys(key)
        | Read::HVals(key)
        | Read::HExists(key, _)
        | Read::HLen(key)
        | Read::HStrLen(key, _)
        | Read::HRandField { key, .. }
        | Read::HScan { key, .. } => key,
    };
    let hash = match hash_of(db.lookup(key)?) {
        Ok(hash) => hash,
        Err(reply) => return Ok(reply),
    };
    let get = |field: &[u8]| -> Result<Option<Vec<u8>>, StorageError> {
        match &hash {
            Some(c) => db.sub_get(key, c, &field_sub(field)),
            None => Ok(None),
        }
    };
    Ok(match cmd {
        Read::HGet(_, field) => match get(field)? {
            Some(value) => Reply::Bulk(Bytes::from(value)),
            None => Reply::Null,
        },
        Read::HMGet(_, fields) => {
            let mut out = Vec::with_capacity(fields.len());
            for field in fields {
                out.push(match get(field)? {
                    Some(value) => Reply::Bulk(Bytes::from(value)),
                    None => Reply::Null,
                });
            }
            Reply::Array(out)
        }
        Read::HExists(_, field) => Reply::Integer(i64::from(get(field)?.is_some())),
        Read::HStrLen(_, field) => {
            Reply::Integer(get(field)?.map_or(0, |v| i64::try_from(v.len()).unwrap_or(i64::MAX)))
        }
        Read::HLen(_) => Reply::Integer(hash.map_or(0, |c| size_reply(c.size))),
        Read::HGetAll(_) | Read::HKeys(_) | Read::HVals(_) => {
            let fields = match &hash {
                Some(c) => all_fields(db, key, c)?,
                None => Vec::new(),
            };
            match cmd {
                Read::HGetAll(_) => Reply::Map(
                    fields
                        .into_iter()
                        .map(|(f, v)| (Reply::Bulk(f), Reply::Bulk(v)))
                        .collect(),
                ),
                Read::HKeys(_) => {
                    Reply::Array(fields.into_iter().map(|(f, _)| Reply::Bulk(f)).collect())
                }
                _ => Reply::Array(fields.into_iter().map(|(_, v)| Reply::Bulk(v)).collect()),
            }
        }
        Read::HRandField {
            count, with_values, ..
        } => match (hash, count) {
            (None, None) => Reply::Null,
            (None, Some(_)) => Reply::Array(Vec::new()),
            (Some(c), None) => match random_fields(db, key, &c, 1, true)?.pop() {
                Some((field, _)) => Reply::Bulk(field),
                None => Reply::Null,
            },
            (Some(c), Some(count)) => {
                let picked = if *count >= 0 {
                    random_fields(db, key, &c, count.unsigned_abs(), false)?
                } else {
                    random_fields(db, key, &c, count.unsigned_abs(), true)?
                };
                if *with_values {
                    Reply::Pairs(
                        picked
                            .into_iter()
                            .map(|(f, v)| (Reply::Bulk(f), Reply::Bulk(v)))
                            .collect(),
                    )
                } else {
                    Reply::Array(picked.into_iter().map(|(f, _)| Reply::Bulk(f)).collect())
                }
            }
        },
        Read::HScan {
            cursor, options, ..
        } => {
            let Some(c) = hash else {
                return Ok(empty_scan());
            };
            let options = match ScanOptions::parse(options) {
                Ok(options) => options,
                Err(reply) => return Ok(reply),
            };
            scan(db, key, &c, *cursor, &options)?
        }
    })
}

fn size_reply(size: u64) -> i64 {
    i64::try_from(size).unwrap_or(i64::MAX)
}

/// `count` random fields of hash `c`: with `repeat`, drawn independently
/// (they may repeat, in random order); without, distinct (all of them if
/// `count` is at least the size). One pass over the hash, holding only
/// what is returned.
fn random_fields<K: KeyspaceRead + ?Sized>(
    db: &ReadView<'_, K>,
    key: &[u8],
    c: &Collection,
    count: u64,
    repeat: bool,
) -> Result<Vec<(Bytes, Bytes)>, StorageError> {
    let size = c.size;
    if size == 0 || count == 0 {
        return Ok(Vec::new());
    }
    if !repeat && count >= size {
        return all_fields(db, key, c);
    }
    let mut rng = rand::thread_rng();
    // Positions to pick, sorted, with their multiplicity.
    let mut positions: Vec<u64> = if repeat {
        (0..count).map(|_| rng.gen_range(0..size)).collect()
    } else {
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        rand::seq::index::sample(&mut rng, size, count)
            .into_iter()
            .map(|i| i as u64)
            .collect()
    };
    positions.sort_unstable();
    let mut out = Vec::with_capacity(positions.len());
    let mut next = positions.iter().peekable();
    let mut at = 0u64;
    db.sub_scan(key, c, SubRange::ALL, &mut |sub, value| {
        while next.next_if(|&&p| p == at).is_some() {
            out.push((
                Bytes::copy_from_slice(field_of(sub)),
                Bytes::copy_from_slice(value),
            ));
        }
        at += 1;
        if next.peek().is_none() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    out.shuffle(&mut rng);
    Ok(out)
}

fn empty_scan() -> Reply {
    Reply::Array(vec![Reply::bulk("0"), Reply::Array(Vec::new())])
}

/// HSCAN's MATCH and COUNT (`scanGenericCommand`; TYPE is refused).
struct ScanOptions {
    pattern: Option<Bytes>,
    count: u64,
}

impl ScanOptions {
    fn parse(args: &[Bytes]) -> Result<ScanOptions, Reply> {
        let mut options = ScanOptions {
            pattern: None,
            count: 10,
        };
        let mut i = 0;
        while i < args.len() {
            let remaining = args.len() - i;
            if eq(&args[i], "count") && remaining >= 2 {
                let count = int(&args[i + 1])?;
                if count < 1 {
                    return Err(Reply::static_error(errors::SYNTAX));
                }
                options.count = count.unsigned_abs();
            } else if eq(&args[i], "match") && remaining >= 2 {
                let pattern = &args[i + 1];
                options.pattern = (pattern.as_ref() != b"*").then(|| pattern.clone());
            } else {
                return Err(Reply::static_error(errors::SYNTAX));
            }
            i += 2;
        }
        Ok(options)
    }
}

fn scan<K: KeyspaceRead + ?Sized>(
    db: &ReadView<'_, K>,
    key: &[u8],
    c: &Collection,
    cursor: u64,
    options: &ScanOptions,
) -> Result<Reply, StorageError> {
    let whole = c.size <= SCAN_IN_ONE_REPLY;
    // The cursor is the hash to resume from; 0 starts (and ends) a scan.
    let from = if whole { 0 } else { cursor }.to_be_bytes();
    let mut items = Vec::new();
    let mut seen = 0u64;
    let mut last_hash = None;
    let mut next_cursor = 0u64;
    db.sub_scan(
        key,
        c,
        SubRange {
            from: &from,
            ..SubRange::ALL
        },
        &mut |sub, value| {
            let hash = hash_of_sub(sub);
            // A page ends between two hashes, never inside one: resuming
            // at a hash returns all of its fields.
            if !whole && seen >= options.count && last_hash != Some(hash) {
                next_cursor = hash.max(1);
                return ControlFlow::Break(());
            }
            seen += 1;
            last_hash = Some(hash);
            let field = field_of(sub);
            if options
                .pattern
                .as_ref()
                .is_none_or(|p| glob::matches(p, field))
            {
                items.push(Reply::Bulk(Bytes::copy_from_slice(field)));
                items.push(Reply::Bulk(Bytes::copy_from_slice(value)));
            }
            ControlFlow::Continue(())
        },
    )?;
    Ok(Reply::Array(vec![
        Reply::Bulk(Bytes::from(next_cursor.to_string())),
        Reply::Array(items),
    ]))
}

/// Runs a hash write at apply time.
pub(crate) fn execute_write<K: KeyspaceWrite + ?Sized>(
    db: &mut WriteView<'_, K>,
    cmd: &hash_write::Command,
) -> ExecResult {
    use hash_write::Command as C;
    let key = match cmd {
        C::HSet(c) => &c.key,
        C::HSetNx(c) => &c.key,
        C::HDel(c) => &c.key,
        C::HIncrBy(c) => &c.key,
        C::HIncrByFloat(c) => &c.key,
    };
    let previous = db.lookup(key)?;
    let existing = match hash_of(previous.clone()) {
        Ok(hash) => hash,
        Err(reply) => return Ok(reply),
    };
    let expire_at = previous.as_ref().and_then(|r| r.expire_at);
    if let C::HDel(del) = cmd {
        let Some(mut hash) = existing else {
            return Ok(Reply::Integer(0));
        };
        let mut deleted = 0;
        for field in &del.fields {
            let sub = field_sub(field);
            if db.sub_get(key, &hash, &sub)?.is_some() {
                db.sub_delete(key, &hash, &sub)?;
                hash.size = hash.size.saturating_sub(1);
                deleted += 1;
            }
        }
        if let Some(previous) = &previous {
            if hash.size == 0 {
                db.remove(key, previous)?;
            } else if deleted > 0 {
                db.store(key, &Record::collection(hash, expire_at), Some(previous))?;
            }
        }
        return Ok(Reply::Integer(deleted));
    }
    let mut hash = existing.unwrap_or_else(|| db.new_collection(ValueType::Hash));
    let before = hash;
    let reply = match cmd {
        C::HSet(set) => {
            let mut created = 0;
            for log::KeyValue { key: field, value } in &set.fields {
                let sub = field_sub(field);
                if db.sub_get(key, &hash, &sub)?.is_none() {
                    hash.size += 1;
                    created += 1;
                }
                db.sub_put(key, &hash, &sub, value.to_vec())?;
            }
            if set.status_reply {
                Reply::ok()
            } else {
                Reply::Integer(created)
            }
        }
        C::HSetNx(set) => {
            let sub = field_sub(&set.field);
            if db.sub_get(key, &hash, &sub)?.is_some() {
                Reply::Integer(0)
            } else {
                db.sub_put(key, &hash, &sub, set.value.to_vec())?;
                hash.size += 1;
                Reply::Integer(1)
            }
        }
        C::HIncrBy(incr) => {
            let sub = field_sub(&incr.field);
            let current = db.sub_get(key, &hash, &sub)?;
            let value = match &current {
                Some(raw) => match parse_i64(raw) {
                    Some(n) => n,
                    None => return Ok(Reply::static_error("ERR hash value is not an integer")),
                },
                None => 0,
            };
            let Some(sum) = value.checked_add(incr.by) else {
                return Ok(Reply::static_error(errors::INCR_OVERFLOW));
            };
            db.sub_put(key, &hash, &sub, number::format_i64(sum).to_vec())?;
            if current.is_none() {
                hash.size += 1;
            }
            Reply::Integer(sum)
        }
        C::HIncrByFloat(incr) => {
            let sub = field_sub(&incr.field);
            let current = db.sub_get(key, &hash, &sub)?;
            let sum = match number::incr_by_float(current.as_deref(), &incr.by) {
                Ok(sum) => sum,
                Err(FloatError::NotAFloat) => {
                    return Ok(Reply::static_error("ERR hash value is not a float"));
                }
                Err(FloatError::NanOrInfinity) => {
                    return Ok(Reply::static_error(errors::NAN_OR_INFINITY));
                }
            };
            db.sub_put(key, &hash, &sub, sum.to_vec())?;
            if current.is_none() {
                hash.size += 1;
            }
            Reply::Bulk(sum)
        }
        C::HDel(_) => return Ok(Reply::Integer(0)),
    };
    if previous.is_none() || hash != before {
        db.store(key, &Record::collection(hash, expire_at), previous.as_ref())?;
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_sub_keys_round_trip_and_the_hash_is_stable() {
        for field in [&b""[..], b"a", b"\0\xff", b"field:1"] {
            let sub = field_sub(field);
            assert_eq!(field_of(&sub), field);
            assert_eq!(hash_of_sub(&sub), field_hash(field));
        }
        // FNV-1a 64 of "a": part of the on-disk format.
        assert_eq!(field_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
