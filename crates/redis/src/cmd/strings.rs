//! Strings: GET, SET and its variants, MGET/MSET, counters, APPEND,
//! GETRANGE/SETRANGE. Reads run at a point in time; writes are the
//! `StringWrite` messages of the raft log, executed at apply.

use bytes::{Bytes, BytesMut};
use elastickv_resp::Reply;

use crate::command::{Command, ParseResult, eq, int};
use crate::db::{ReadView, WriteView};
use crate::errors;
use crate::exec::{ExecResult, wrongtype};
use crate::keyspace::{KeyspaceRead, KeyspaceWrite};
use crate::log::{self, TimeUnit, string_write};
use crate::number::{self, FloatError, parse_i64};
use crate::record::{Record, Value};
use crate::table::*;

/// The string commands' table entries.
pub(crate) static COMMANDS: &[CommandSpec] = &[
    keyed(
        "get",
        2,
        &["readonly", "fast"],
        READ_STRING_FAST,
        RO_ACCESS,
        parse_get,
    ),
    keyed(
        "set",
        -3,
        &["write", "denyoom"],
        WRITE_STRING_SLOW,
        &[KeySpec {
            notes: Some("RW and ACCESS due to the optional `GET` argument"),
            flags: &["RW", "access", "update", "variable_flags"],
            begin_index: 1,
            find: FindKeys::Range {
                last_key: 0,
                key_step: 1,
            },
        }],
        parse_set,
    ),
    keyed(
        "setnx",
        3,
        &["write", "denyoom", "fast"],
        WRITE_STRING_FAST,
        &[ks(&["OW", "insert"], 1, 0, 1)],
        parse_setnx,
    ),
    keyed(
        "setex",
        4,
        &["write", "denyoom"],
        WRITE_STRING_SLOW,
        OW_UPDATE,
        parse_setex,
    ),
    keyed(
        "psetex",
        4,
        &["write", "denyoom"],
        WRITE_STRING_SLOW,
        OW_UPDATE,
        parse_psetex,
    ),
    keyed(
        "getset",
        3,
        &["write", "denyoom", "fast"],
        WRITE_STRING_FAST,
        RW_ACCESS_UPDATE,
        parse_getset,
    ),
    keyed(
        "getdel",
        2,
        &["write", "fast"],
        WRITE_STRING_FAST,
        &[ks(&["RW", "access", "delete"], 1, 0, 1)],
        parse_getdel,
    ),
    keyed(
        "getex",
        -2,
        &["write", "fast"],
        WRITE_STRING_FAST,
        &[KeySpec {
            notes: Some("RW and UPDATE because it changes the TTL"),
            flags: &["RW", "access", "update"],
            begin_index: 1,
            find: FindKeys::Range {
                last_key: 0,
                key_step: 1,
            },
        }],
        parse_getex,
    ),
    CommandSpec {
        name: "mget",
        arity: -2,
        flags: &["readonly", "fast"],
        first_key: 1,
        last_key: -1,
        step: 1,
        acl: READ_STRING_FAST,
        tips: &["request_policy:multi_shard"],
        key_specs: &[ks(&["RO", "access"], 1, -1, 1)],
        subcommands: &[],
        route: Route::FanOut,
        parse: Some(parse_mget),
    },
    CommandSpec {
        name: "mset",
        arity: -3,
        flags: &["write", "denyoom"],
        first_key: 1,
        last_key: -1,
        step: 2,
        acl: WRITE_STRING_SLOW,
        tips: &[
            "request_policy:multi_shard",
            "response_policy:all_succeeded",
        ],
        key_specs: &[ks(&["OW", "update"], 1, -1, 2)],
        subcommands: &[],
        route: Route::SameShard,
        parse: Some(parse_mset),
    },
    CommandSpec {
        name: "msetnx",
        arity: -3,
        flags: &["write", "denyoom"],
        first_key: 1,
        last_key: -1,
        step: 2,
        acl: WRITE_STRING_SLOW,
        tips: &["request_policy:multi_shard", "response_policy:agg_min"],
        key_specs: &[ks(&["OW", "insert"], 1, -1, 2)],
        subcommands: &[],
        route: Route::SameShard,
        parse: Some(parse_msetnx),
    },
    keyed(
        "incr",
        2,
        &["write", "denyoom", "fast"],
        WRITE_STRING_FAST,
        RW_ACCESS_UPDATE,
        parse_incr,
    ),
    keyed(
        "decr",
        2,
        &["write", "denyoom", "fast"],
        WRITE_STRING_FAST,
        RW_ACCESS_UPDATE,
        parse_decr,
    ),
    keyed(
        "incrby",
        3,
        &["write", "denyoom", "fast"],
        WRITE_STRING_FAST,
        RW_ACCESS_UPDATE,
        parse_incrby,
    ),
    keyed(
        "decrby",
        3,
        &["write", "denyoom", "fast"],
        WRITE_STRING_FAST,
        RW_ACCESS_UPDATE,
        parse_decrby,
    ),
    keyed(
        "incrbyfloat",
        3,
        &["write", "denyoom", "fast"],
        WRITE_STRING_FAST,
        RW_ACCESS_UPDATE,
        parse_incrbyfloat,
    ),
    keyed(
        "append",
        3,
        &["write", "denyoom", "fast"],
        WRITE_STRING_FAST,
        &[ks(&["RW", "insert"], 1, 0, 1)],
        parse_append,
    ),
    keyed(
        "strlen",
        2,
        &["readonly", "fast"],
        READ_STRING_FAST,
        RO,
        parse_strlen,
    ),
    keyed(
        "getrange",
        4,
        &["readonly"],
        &["@read", "@string", "@slow"],
        RO_ACCESS,
        parse_getrange,
    ),
    keyed(
        "setrange",
        4,
        &["write", "denyoom"],
        WRITE_STRING_SLOW,
        RW_UPDATE,
        parse_setrange,
    ),
];

/// A string read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    Get(Bytes),
    MGet(Vec<Bytes>),
    StrLen(Bytes),
    GetRange(Bytes, i64, i64),
}

/// Runs a string read.
pub(crate) fn execute_read<K: KeyspaceRead + ?Sized>(
    cmd: &Read,
    db: &ReadView<'_, K>,
) -> ExecResult {
    Ok(match cmd {
        Read::Get(key) => match db.lookup(key)? {
            None => Reply::Null,
            Some(r) => match string_value(&r) {
                Some(v) => Reply::Bulk(v.clone()),
                None => wrongtype(),
            },
        },
        Read::MGet(keys) => {
            let mut out = Vec::with_capacity(keys.len());
            for key in keys {
                out.push(match db.lookup(key)?.as_ref().and_then(string_value) {
                    Some(v) => Reply::Bulk(v.clone()),
                    None => Reply::Null,
                });
            }
            Reply::Array(out)
        }
        Read::StrLen(key) => match db.lookup(key)? {
            None => Reply::Integer(0),
            Some(r) => match string_value(&r) {
                Some(v) => Reply::Integer(v.len() as i64),
                None => wrongtype(),
            },
        },
        Read::GetRange(key, start, end) => match db.lookup(key)? {
            None => Reply::Bulk(Bytes::new()),
            Some(r) => match string_value(&r) {
                Some(v) => Reply::Bulk(get_range(v, *start, *end)),
                None => wrongtype(),
            },
        },
    })
}

fn string_write(command: log::string_write::Command) -> Command {
    Command::Write(log::Write {
        family: Some(log::write::Family::Strings(log::StringWrite {
            command: Some(command),
        })),
    })
}

pub(crate) fn parse_get(args: &[Bytes]) -> ParseResult {
    Ok(Command::StringRead(Read::Get(args[1].clone())))
}

/// Which of SET's option words a command accepts
/// (`parseExtendedStringArgumentsOrReply`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum OptionsOf {
    Set,
    GetEx,
}

#[derive(Default)]
struct ExtendedOptions {
    nx: bool,
    xx: bool,
    get: bool,
    keep_ttl: bool,
    persist: bool,
    /// (word, value) of EX/PX/EXAT/PXAT.
    expire: Option<(ExpireWord, Bytes)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ExpireWord {
    Ex,
    Px,
    ExAt,
    PxAt,
}

fn parse_extended(args: &[Bytes], from: usize, of: OptionsOf) -> Result<ExtendedOptions, Reply> {
    let mut o = ExtendedOptions::default();
    let mut j = from;
    while j < args.len() {
        let opt = &args[j][..];
        let next = args.get(j + 1);
        let word = o.expire.as_ref().map(|(w, _)| *w);
        let has = |w: ExpireWord| word == Some(w);
        if eq(opt, "nx") && !o.xx && of == OptionsOf::Set {
            o.nx = true;
        } else if eq(opt, "xx") && !o.nx && of == OptionsOf::Set {
            o.xx = true;
        } else if eq(opt, "get") && of == OptionsOf::Set {
            o.get = true;
        } else if eq(opt, "keepttl") && !o.persist && word.is_none() && of == OptionsOf::Set {
            o.keep_ttl = true;
        } else if eq(opt, "persist") && of == OptionsOf::GetEx && word.is_none() && !o.keep_ttl {
            o.persist = true;
        } else if let Some(value) = next.filter(|_| !o.keep_ttl && !o.persist) {
            let (w, excluded) = if eq(opt, "ex") {
                (
                    ExpireWord::Ex,
                    [ExpireWord::ExAt, ExpireWord::Px, ExpireWord::PxAt],
                )
            } else if eq(opt, "px") {
                (
                    ExpireWord::Px,
                    [ExpireWord::Ex, ExpireWord::ExAt, ExpireWord::PxAt],
                )
            } else if eq(opt, "exat") {
                (
                    ExpireWord::ExAt,
                    [ExpireWord::Ex, ExpireWord::Px, ExpireWord::PxAt],
                )
            } else if eq(opt, "pxat") {
                (
                    ExpireWord::PxAt,
                    [ExpireWord::Ex, ExpireWord::ExAt, ExpireWord::Px],
                )
            } else {
                return Err(Reply::static_error(errors::SYNTAX));
            };
            if excluded.iter().any(|&x| has(x)) {
                return Err(Reply::static_error(errors::SYNTAX));
            }
            o.expire = Some((w, value.clone()));
            j += 1;
        } else {
            return Err(Reply::static_error(errors::SYNTAX));
        }
        j += 1;
    }
    Ok(o)
}

/// `getExpireMillisecondsOrReply` up to (not including) adding the clock.
fn expiry_from(word: ExpireWord, raw: &[u8], command: &str) -> Result<log::Expiry, Reply> {
    let value = int(raw)?;
    let seconds = matches!(word, ExpireWord::Ex | ExpireWord::ExAt);
    if value <= 0 || (seconds && value > i64::MAX / 1000) {
        return Err(errors::invalid_expire(command));
    }
    let ms = if seconds { value * 1000 } else { value };
    Ok(log::Expiry {
        when: Some(match word {
            ExpireWord::Ex | ExpireWord::Px => log::expiry::When::InMs(ms),
            ExpireWord::ExAt | ExpireWord::PxAt => log::expiry::When::AtMs(ms),
        }),
    })
}

pub(crate) fn parse_set(args: &[Bytes]) -> ParseResult {
    let o = parse_extended(args, 3, OptionsOf::Set)?;
    let expiry = match &o.expire {
        Some((word, raw)) => Some(expiry_from(*word, raw, "set")?),
        None => None,
    };
    let condition = if o.nx {
        log::set::Condition::IfMissing
    } else if o.xx {
        log::set::Condition::IfExists
    } else {
        log::set::Condition::Always
    };
    Ok(string_write(log::string_write::Command::Set(log::Set {
        key: args[1].clone(),
        value: args[2].clone(),
        condition: condition.into(),
        get: o.get,
        keep_ttl: o.keep_ttl,
        expiry,
        variant: log::set::Variant::Set.into(),
    })))
}

pub(crate) fn parse_setnx(args: &[Bytes]) -> ParseResult {
    Ok(string_write(log::string_write::Command::Set(log::Set {
        key: args[1].clone(),
        value: args[2].clone(),
        condition: log::set::Condition::IfMissing.into(),
        variant: log::set::Variant::Setnx.into(),
        ..Default::default()
    })))
}

fn parse_setex_generic(
    args: &[Bytes],
    word: ExpireWord,
    variant: log::set::Variant,
) -> ParseResult {
    let name = if variant == log::set::Variant::Setex {
        "setex"
    } else {
        "psetex"
    };
    let expiry = expiry_from(word, &args[2], name)?;
    Ok(string_write(log::string_write::Command::Set(log::Set {
        key: args[1].clone(),
        value: args[3].clone(),
        expiry: Some(expiry),
        variant: variant.into(),
        ..Default::default()
    })))
}

pub(crate) fn parse_setex(args: &[Bytes]) -> ParseResult {
    parse_setex_generic(args, ExpireWord::Ex, log::set::Variant::Setex)
}

pub(crate) fn parse_psetex(args: &[Bytes]) -> ParseResult {
    parse_setex_generic(args, ExpireWord::Px, log::set::Variant::Psetex)
}

pub(crate) fn parse_getset(args: &[Bytes]) -> ParseResult {
    Ok(string_write(log::string_write::Command::GetSet(
        log::GetSet {
            key: args[1].clone(),
            value: args[2].clone(),
        },
    )))
}

pub(crate) fn parse_getdel(args: &[Bytes]) -> ParseResult {
    Ok(string_write(log::string_write::Command::GetDel(
        log::GetDel {
            key: args[1].clone(),
        },
    )))
}

pub(crate) fn parse_getex(args: &[Bytes]) -> ParseResult {
    let o = parse_extended(args, 2, OptionsOf::GetEx)?;
    let option = if o.persist {
        Some(log::get_ex::Option::Persist(true))
    } else {
        o.expire.map(|(word, raw)| {
            let unit = if matches!(word, ExpireWord::Ex | ExpireWord::ExAt) {
                TimeUnit::Seconds
            } else {
                TimeUnit::Milliseconds
            };
            log::get_ex::Option::Expire(log::get_ex::SetExpiry {
                unit: unit.into(),
                absolute: matches!(word, ExpireWord::ExAt | ExpireWord::PxAt),
                raw,
            })
        })
    };
    Ok(string_write(log::string_write::Command::GetEx(
        log::GetEx {
            key: args[1].clone(),
            option,
        },
    )))
}

pub(crate) fn parse_mget(args: &[Bytes]) -> ParseResult {
    Ok(Command::StringRead(Read::MGet(args[1..].to_vec())))
}

fn pairs(args: &[Bytes], name: &str) -> Result<Vec<log::KeyValue>, Reply> {
    if args.len().is_multiple_of(2) {
        return Err(errors::wrong_args(name));
    }
    Ok(args[1..]
        .chunks_exact(2)
        .map(|kv| log::KeyValue {
            key: kv[0].clone(),
            value: kv[1].clone(),
        })
        .collect())
}

pub(crate) fn parse_mset(args: &[Bytes]) -> ParseResult {
    let pairs = pairs(args, "mset")?;
    Ok(string_write(log::string_write::Command::MSet(log::MSet {
        pairs,
    })))
}

pub(crate) fn parse_msetnx(args: &[Bytes]) -> ParseResult {
    let pairs = pairs(args, "msetnx")?;
    Ok(string_write(log::string_write::Command::MSetNx(
        log::MSetNx { pairs },
    )))
}

fn incr_by_command(key: &Bytes, by: i64) -> Command {
    string_write(log::string_write::Command::IncrBy(log::IncrBy {
        key: key.clone(),
        by,
    }))
}

pub(crate) fn parse_incr(args: &[Bytes]) -> ParseResult {
    Ok(incr_by_command(&args[1], 1))
}

pub(crate) fn parse_decr(args: &[Bytes]) -> ParseResult {
    Ok(incr_by_command(&args[1], -1))
}

pub(crate) fn parse_incrby(args: &[Bytes]) -> ParseResult {
    Ok(incr_by_command(&args[1], int(&args[2])?))
}

pub(crate) fn parse_decrby(args: &[Bytes]) -> ParseResult {
    let by = int(&args[2])?;
    if by == i64::MIN {
        return Err(Reply::static_error("ERR decrement would overflow"));
    }
    Ok(incr_by_command(&args[1], -by))
}

pub(crate) fn parse_incrbyfloat(args: &[Bytes]) -> ParseResult {
    Ok(string_write(log::string_write::Command::IncrByFloat(
        log::IncrByFloat {
            key: args[1].clone(),
            by: args[2].clone(),
        },
    )))
}

pub(crate) fn parse_append(args: &[Bytes]) -> ParseResult {
    Ok(string_write(log::string_write::Command::Append(
        log::Append {
            key: args[1].clone(),
            suffix: args[2].clone(),
        },
    )))
}

pub(crate) fn parse_strlen(args: &[Bytes]) -> ParseResult {
    Ok(Command::StringRead(Read::StrLen(args[1].clone())))
}

pub(crate) fn parse_getrange(args: &[Bytes]) -> ParseResult {
    let start = int(&args[2])?;
    let end = int(&args[3])?;
    Ok(Command::StringRead(Read::GetRange(
        args[1].clone(),
        start,
        end,
    )))
}

pub(crate) fn parse_setrange(args: &[Bytes]) -> ParseResult {
    let offset = int(&args[2])?;
    if offset < 0 {
        return Err(Reply::static_error(errors::OFFSET_RANGE));
    }
    Ok(string_write(log::string_write::Command::SetRange(
        log::SetRange {
            key: args[1].clone(),
            offset,
            patch: args[3].clone(),
        },
    )))
}

/// Longest string value (`proto-max-bulk-len`).
pub const MAX_STRING_LEN: u64 = 512 * 1024 * 1024;

fn string_value(record: &Record) -> Option<&Bytes> {
    match &record.value {
        Value::String(s) => Some(s),
        Value::Collection(_) => None,
    }
}

/// GETRANGE's index arithmetic (`getrangeCommand`).
fn get_range(value: &Bytes, start: i64, end: i64) -> Bytes {
    let len = value.len() as i64;
    if start < 0 && end < 0 && start > end {
        return Bytes::new();
    }
    let mut start = if start < 0 { len + start } else { start };
    let mut end = if end < 0 { len + end } else { end };
    start = start.max(0);
    end = end.max(0);
    if end >= len {
        end = len - 1;
    }
    if start > end || len == 0 {
        return Bytes::new();
    }
    value.slice(start as usize..=end as usize)
}

/// Runs a string write at apply time.
pub(crate) fn execute_write<K: KeyspaceWrite + ?Sized>(
    db: &mut WriteView<'_, K>,
    cmd: &string_write::Command,
) -> ExecResult {
    use string_write::Command as C;
    match cmd {
        C::Set(args) => set(db, args),
        C::GetSet(log::GetSet { key, value }) => {
            let previous = db.lookup(key)?;
            let old = match &previous {
                Some(r) => match string_value(r) {
                    Some(v) => Reply::Bulk(v.clone()),
                    None => return Ok(wrongtype()),
                },
                None => Reply::Null,
            };
            db.store(key, &Record::string(value.clone(), None), previous.as_ref())?;
            Ok(old)
        }
        C::GetDel(log::GetDel { key }) => {
            let Some(previous) = db.lookup(key)? else {
                return Ok(Reply::Null);
            };
            let Some(value) = string_value(&previous).cloned() else {
                return Ok(wrongtype());
            };
            db.remove(key, &previous)?;
            Ok(Reply::Bulk(value))
        }
        C::GetEx(args) => getex(db, &args.key, args.option.as_ref()),
        C::MSet(log::MSet { pairs }) => {
            for log::KeyValue { key, value } in pairs {
                let previous = db.lookup(key)?;
                db.store(key, &Record::string(value.clone(), None), previous.as_ref())?;
            }
            Ok(Reply::ok())
        }
        C::MSetNx(log::MSetNx { pairs }) => {
            for pair in pairs {
                if db.lookup(&pair.key)?.is_some() {
                    return Ok(Reply::Integer(0));
                }
            }
            for log::KeyValue { key, value } in pairs {
                let previous = db.lookup(key)?;
                db.store(key, &Record::string(value.clone(), None), previous.as_ref())?;
            }
            Ok(Reply::Integer(1))
        }
        C::IncrBy(log::IncrBy { key, by }) => incr_by(db, key, *by),
        C::IncrByFloat(log::IncrByFloat { key, by }) => {
            let previous = db.lookup(key)?;
            let current = match &previous {
                Some(r) => match string_value(r) {
                    Some(v) => Some(v.clone()),
                    None => return Ok(wrongtype()),
                },
                None => None,
            };
            let value = match number::incr_by_float(current.as_deref(), by) {
                Ok(v) => v,
                Err(FloatError::NotAFloat) => return Ok(Reply::static_error(errors::NOT_FLOAT)),
                Err(FloatError::NanOrInfinity) => {
                    return Ok(Reply::static_error(errors::NAN_OR_INFINITY));
                }
            };
            let expire_at = previous.as_ref().and_then(|r| r.expire_at);
            db.store(
                key,
                &Record::string(value.clone(), expire_at),
                previous.as_ref(),
            )?;
            Ok(Reply::Bulk(value))
        }
        C::Append(log::Append { key, suffix }) => {
            let previous = db.lookup(key)?;
            let (value, expire_at) = match &previous {
                None => (suffix.clone(), None),
                Some(r) => {
                    let Some(old) = string_value(r) else {
                        return Ok(wrongtype());
                    };
                    if old.len() as u64 + suffix.len() as u64 > MAX_STRING_LEN {
                        return Ok(Reply::static_error(errors::STRING_TOO_LONG));
                    }
                    let mut joined = BytesMut::with_capacity(old.len() + suffix.len());
                    joined.extend_from_slice(old);
                    joined.extend_from_slice(suffix);
                    (joined.freeze(), r.expire_at)
                }
            };
            let len = value.len() as i64;
            db.store(key, &Record::string(value, expire_at), previous.as_ref())?;
            Ok(Reply::Integer(len))
        }
        C::SetRange(log::SetRange { key, offset, patch }) => set_range(db, key, *offset, patch),
    }
}

/// Adds the clock to an expiry; `None` if the result is invalid (the
/// `*milliseconds <= 0` check after the addition in Redis, or no expiry
/// in it at all).
fn absolute_expiry(expiry: &log::Expiry, now_ms: u64) -> Option<u64> {
    let at = match expiry.when? {
        log::expiry::When::AtMs(ms) => ms,
        log::expiry::When::InMs(ms) => ms.checked_add(i64::try_from(now_ms).ok()?)?,
    };
    u64::try_from(at).ok().filter(|&at| at > 0)
}

fn set<K: KeyspaceWrite + ?Sized>(db: &mut WriteView<'_, K>, args: &log::Set) -> ExecResult {
    use log::set::{Condition, Variant};
    let variant = args.variant();
    let name = match variant {
        Variant::Set => "set",
        Variant::Setnx => "setnx",
        Variant::Setex => "setex",
        Variant::Psetex => "psetex",
    };
    let integer_reply = variant == Variant::Setnx;
    let expire_at = match &args.expiry {
        Some(expiry) => match absolute_expiry(expiry, db.now()) {
            Some(at) => Some(at),
            None => return Ok(errors::invalid_expire(name)),
        },
        None => None,
    };
    let previous = db.lookup(&args.key)?;
    let old_value = match (&previous, args.get) {
        (Some(r), true) => match string_value(r) {
            Some(v) => Reply::Bulk(v.clone()),
            None => return Ok(wrongtype()),
        },
        _ => Reply::Null,
    };
    let found = previous.is_some();
    let blocked = match args.condition() {
        Condition::Always => false,
        Condition::IfMissing => found,
        Condition::IfExists => !found,
    };
    if blocked {
        return Ok(match (args.get, integer_reply) {
            (true, _) => old_value,
            (false, false) => Reply::Null,
            (false, true) => Reply::Integer(0),
        });
    }
    let expire_at = if args.keep_ttl {
        previous.as_ref().and_then(|r| r.expire_at)
    } else {
        expire_at
    };
    db.store(
        &args.key,
        &Record::string(args.value.clone(), expire_at),
        previous.as_ref(),
    )?;
    Ok(match (args.get, integer_reply) {
        (true, _) => old_value,
        (false, false) => Reply::ok(),
        (false, true) => Reply::Integer(1),
    })
}

fn getex<K: KeyspaceWrite + ?Sized>(
    db: &mut WriteView<'_, K>,
    key: &Bytes,
    option: Option<&log::get_ex::Option>,
) -> ExecResult {
    let Some(previous) = db.lookup(key)? else {
        return Ok(Reply::Null);
    };
    let Some(value) = string_value(&previous).cloned() else {
        return Ok(wrongtype());
    };
    match option {
        Some(log::get_ex::Option::Persist(_)) if previous.expire_at.is_some() => {
            let record = Record::string(value.clone(), None);
            db.store(key, &record, Some(&previous))?;
        }
        None | Some(log::get_ex::Option::Persist(_)) => {}
        Some(log::get_ex::Option::Expire(expire)) => {
            let Some(n) = parse_i64(&expire.raw) else {
                return Ok(Reply::static_error(errors::NOT_INTEGER));
            };
            let seconds = expire.unit() == TimeUnit::Seconds;
            if n <= 0 || (seconds && n > i64::MAX / 1000) {
                return Ok(errors::invalid_expire("getex"));
            }
            let ms = if seconds { n * 1000 } else { n };
            let when = if expire.absolute {
                log::expiry::When::AtMs(ms)
            } else {
                log::expiry::When::InMs(ms)
            };
            let expiry = log::Expiry { when: Some(when) };
            let Some(at) = absolute_expiry(&expiry, db.now()) else {
                return Ok(errors::invalid_expire("getex"));
            };
            if expire.absolute && at <= db.now() {
                db.remove(key, &previous)?;
            } else {
                db.store(
                    key,
                    &Record::string(value.clone(), Some(at)),
                    Some(&previous),
                )?;
            }
        }
    }
    Ok(Reply::Bulk(value))
}

fn incr_by<K: KeyspaceWrite + ?Sized>(
    db: &mut WriteView<'_, K>,
    key: &Bytes,
    by: i64,
) -> ExecResult {
    let previous = db.lookup(key)?;
    let current = match &previous {
        None => 0,
        Some(r) => {
            let Some(v) = string_value(r) else {
                return Ok(wrongtype());
            };
            match parse_i64(v) {
                Some(n) => n,
                None => return Ok(Reply::static_error(errors::NOT_INTEGER)),
            }
        }
    };
    let Some(value) = current.checked_add(by) else {
        return Ok(Reply::static_error(errors::INCR_OVERFLOW));
    };
    let expire_at = previous.as_ref().and_then(|r| r.expire_at);
    db.store(
        key,
        &Record::string(number::format_i64(value), expire_at),
        previous.as_ref(),
    )?;
    Ok(Reply::Integer(value))
}

fn set_range<K: KeyspaceWrite + ?Sized>(
    db: &mut WriteView<'_, K>,
    key: &Bytes,
    offset: i64,
    patch: &Bytes,
) -> ExecResult {
    let offset = offset as u64;
    let too_long = offset + patch.len() as u64 > MAX_STRING_LEN;
    let previous = db.lookup(key)?;
    let (old, expire_at) = match &previous {
        None => {
            if patch.is_empty() {
                return Ok(Reply::Integer(0));
            }
            (Bytes::new(), None)
        }
        Some(r) => {
            let Some(old) = string_value(r) else {
                return Ok(wrongtype());
            };
            if patch.is_empty() {
                return Ok(Reply::Integer(old.len() as i64));
            }
            (old.clone(), r.expire_at)
        }
    };
    if too_long {
        return Ok(Reply::static_error(errors::STRING_TOO_LONG));
    }
    let offset = offset as usize;
    let new_len = old.len().max(offset + patch.len());
    let mut value = BytesMut::with_capacity(new_len);
    value.extend_from_slice(&old);
    value.resize(new_len, 0);
    value[offset..offset + patch.len()].copy_from_slice(patch);
    db.store(
        key,
        &Record::string(value.freeze(), expire_at),
        previous.as_ref(),
    )?;
    Ok(Reply::Integer(new_len as i64))
}
