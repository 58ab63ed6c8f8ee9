//! Hashes: HSET/HMSET, HSETNX, HGET, HMGET, HGETALL, HKEYS, HVALS, HDEL,
//! HEXISTS, HLEN, HSTRLEN, HINCRBY, HINCRBYFLOAT, HRANDFIELD, HSCAN.
//!
//! A hash is a collection record (version, number of fields) with one
//! sub-key per field holding its value, keyed as [`super::members`]
//! describes. Writes are the `HashWrite` messages of the raft log.

use bytes::Bytes;
use elastickv_resp::Reply;

use crate::cmd::members::{
    ScanOptions, Space, all_members, empty_scan, member_sub, random_members, scan,
};
use crate::command::{Command, ParseResult, eq, int};
use crate::db::{ReadView, SubRead, WriteView};
use crate::errors;
use crate::exec::{ExecResult, collection_of};
use crate::keyspace::{KeyspaceRead, KeyspaceWrite, StorageError};
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

/// The live hash at `key`: `Ok(None)` if there is none, `Err(reply)` for
/// WRONGTYPE.
fn hash_of(record: Option<Record>) -> Result<Option<Collection>, Reply> {
    collection_of(record.as_ref(), ValueType::Hash)
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
            Some(c) => db.sub_get(key, c, &member_sub(field)),
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
                Some(c) => all_members(db, key, c, Space::WHOLE)?,
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
            (Some(c), None) => match random_members(db, key, &c, Space::WHOLE, 1, true)?.pop() {
                Some((field, _)) => Reply::Bulk(field),
                None => Reply::Null,
            },
            (Some(c), Some(count)) => {
                let picked = if *count >= 0 {
                    random_members(db, key, &c, Space::WHOLE, count.unsigned_abs(), false)?
                } else {
                    random_members(db, key, &c, Space::WHOLE, count.unsigned_abs(), true)?
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
            let options = match ScanOptions::parse(options, false) {
                Ok(options) => options,
                Err(reply) => return Ok(reply),
            };
            scan(
                db,
                key,
                &c,
                Space::WHOLE,
                *cursor,
                &options,
                Some(Bytes::copy_from_slice),
            )?
        }
    })
}

fn size_reply(size: u64) -> i64 {
    i64::try_from(size).unwrap_or(i64::MAX)
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
            let sub = member_sub(field);
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
                let sub = member_sub(field);
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
            let sub = member_sub(&set.field);
            if db.sub_get(key, &hash, &sub)?.is_some() {
                Reply::Integer(0)
            } else {
                db.sub_put(key, &hash, &sub, set.value.to_vec())?;
                hash.size += 1;
                Reply::Integer(1)
            }
        }
        C::HIncrBy(incr) => {
            let sub = member_sub(&incr.field);
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
            let sub = member_sub(&incr.field);
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
