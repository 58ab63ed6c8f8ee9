//! The keyspace: DEL/UNLINK, EXISTS, TYPE, KEYS, SCAN, RENAME, the
//! EXPIRE and TTL families, PERSIST, FLUSHDB/FLUSHALL, and active expiry.
//! Reads run at a point in time; writes are the `KeyWrite` messages of the
//! raft log, executed at apply.

use std::ops::ControlFlow;

use bytes::Bytes;
use elastickv_resp::Reply;

use crate::cmd::members::ScanOptions;
use crate::cmd::{hyperloglog, sorted_sets};
use crate::command::{Command, ParseResult, eq, int};
use crate::db::{ReadTime, ReadView, SubRead, WriteView};
use crate::errors;
use crate::exec::ExecResult;
use crate::glob;
use crate::keyspace::{KeyspaceRead, KeyspaceScan, KeyspaceWrite, StorageError, SubRange};
use crate::log::{self, TimeUnit, key_write};
use crate::number::{parse_i64, parse_scan_cursor};
use crate::record::{Record, Value, ValueType};
use crate::table::*;

/// The keyspace commands' table entries.
pub(crate) static COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "del",
        arity: -2,
        flags: &["write"],
        first_key: 1,
        last_key: -1,
        step: 1,
        acl: &["@keyspace", "@write", "@slow"],
        tips: MULTI_SHARD_SUM,
        key_specs: &[ks(&["RM", "delete"], 1, -1, 1)],
        subcommands: &[],
        route: Route::FanOut,
        parse: Some(parse_del),
    },
    CommandSpec {
        name: "unlink",
        arity: -2,
        flags: &["write", "fast"],
        first_key: 1,
        last_key: -1,
        step: 1,
        acl: KEYSPACE_WRITE_FAST,
        tips: MULTI_SHARD_SUM,
        key_specs: &[ks(&["RM", "delete"], 1, -1, 1)],
        subcommands: &[],
        route: Route::FanOut,
        parse: Some(parse_del),
    },
    CommandSpec {
        name: "exists",
        arity: -2,
        flags: &["readonly", "fast"],
        first_key: 1,
        last_key: -1,
        step: 1,
        acl: KEYSPACE_READ_FAST,
        tips: MULTI_SHARD_SUM,
        key_specs: &[ks(&["RO"], 1, -1, 1)],
        subcommands: &[],
        route: Route::FanOut,
        parse: Some(parse_exists),
    },
    CommandSpec {
        name: "touch",
        arity: -2,
        flags: &["readonly", "fast"],
        first_key: 1,
        last_key: -1,
        step: 1,
        acl: KEYSPACE_READ_FAST,
        tips: MULTI_SHARD_SUM,
        key_specs: &[ks(&["RO"], 1, -1, 1)],
        subcommands: &[],
        route: Route::FanOut,
        // Counts the keys that exist, as EXISTS does: nothing here tracks
        // access times for TOUCH to update.
        parse: Some(parse_exists),
    },
    local(
        "randomkey",
        1,
        &["readonly"],
        &["@keyspace", "@read", "@slow"],
        &["request_policy:all_shards", "nondeterministic_output"],
        Route::Server,
        parse_randomkey,
    ),
    CommandSpec {
        name: "object",
        arity: -2,
        flags: NONE,
        first_key: 0,
        last_key: 0,
        step: 0,
        acl: &["@slow"],
        tips: NONE,
        key_specs: &[],
        subcommands: &[
            local(
                "object|help",
                2,
                LOADING_STALE,
                &["@keyspace", "@slow"],
                NONE,
                Route::Local,
                parse_object_help,
            ),
            // In the order Redis 7.0's COMMAND INFO lists them.
            object_subcommand("object|refcount", parse_object_refcount),
            object_subcommand("object|idletime", parse_object_idletime),
            object_subcommand("object|encoding", parse_object_encoding),
            object_subcommand("object|freq", parse_object_freq),
        ],
        route: Route::Key,
        parse: None,
    },
    CommandSpec {
        name: "memory",
        arity: -2,
        flags: NONE,
        first_key: 0,
        last_key: 0,
        step: 0,
        acl: &["@slow"],
        tips: NONE,
        key_specs: &[],
        subcommands: &[
            local(
                "memory|help",
                2,
                LOADING_STALE,
                &["@slow"],
                NONE,
                Route::Local,
                parse_memory_help,
            ),
            CommandSpec {
                name: "memory|usage",
                arity: -3,
                flags: &["readonly"],
                first_key: 2,
                last_key: 2,
                step: 1,
                acl: &["@read", "@slow"],
                tips: NONE,
                key_specs: RO_AT_2,
                subcommands: &[],
                route: Route::Key,
                parse: Some(parse_memory_usage),
            },
        ],
        route: Route::Key,
        parse: None,
    },
    CommandSpec {
        name: "copy",
        arity: -3,
        flags: &["write", "denyoom"],
        first_key: 1,
        last_key: 2,
        step: 1,
        acl: &["@keyspace", "@write", "@slow"],
        tips: NONE,
        key_specs: &[
            ks(&["RO", "access"], 1, 0, 1),
            ks(&["OW", "update"], 2, 0, 1),
        ],
        subcommands: &[],
        route: Route::SameShard,
        parse: Some(parse_copy),
    },
    keyed(
        "type",
        2,
        &["readonly", "fast"],
        KEYSPACE_READ_FAST,
        RO,
        parse_type,
    ),
    local(
        "keys",
        2,
        &["readonly"],
        &["@keyspace", "@read", "@slow", "@dangerous"],
        &["request_policy:all_shards", "nondeterministic_output_order"],
        Route::AllShards,
        parse_keys,
    ),
    local(
        "scan",
        -2,
        &["readonly"],
        &["@keyspace", "@read", "@slow"],
        &["nondeterministic_output", "request_policy:special"],
        Route::Scan,
        parse_scan,
    ),
    CommandSpec {
        name: "rename",
        arity: 3,
        flags: &["write"],
        first_key: 1,
        last_key: 2,
        step: 1,
        acl: &["@keyspace", "@write", "@slow"],
        tips: NONE,
        key_specs: &[
            ks(&["RW", "access", "delete"], 1, 0, 1),
            ks(&["OW", "update"], 2, 0, 1),
        ],
        subcommands: &[],
        route: Route::SameShard,
        parse: Some(parse_rename),
    },
    CommandSpec {
        name: "renamenx",
        arity: 3,
        flags: &["write", "fast"],
        first_key: 1,
        last_key: 2,
        step: 1,
        acl: KEYSPACE_WRITE_FAST,
        tips: NONE,
        key_specs: &[
            ks(&["RW", "access", "delete"], 1, 0, 1),
            ks(&["OW", "insert"], 2, 0, 1),
        ],
        subcommands: &[],
        route: Route::SameShard,
        parse: Some(parse_renamenx),
    },
    keyed(
        "expire",
        -3,
        &["write", "fast"],
        KEYSPACE_WRITE_FAST,
        RW_UPDATE,
        parse_expire,
    ),
    keyed(
        "pexpire",
        -3,
        &["write", "fast"],
        KEYSPACE_WRITE_FAST,
        RW_UPDATE,
        parse_pexpire,
    ),
    keyed(
        "expireat",
        -3,
        &["write", "fast"],
        KEYSPACE_WRITE_FAST,
        RW_UPDATE,
        parse_expireat,
    ),
    keyed(
        "pexpireat",
        -3,
        &["write", "fast"],
        KEYSPACE_WRITE_FAST,
        RW_UPDATE,
        parse_pexpireat,
    ),
    CommandSpec {
        tips: &["nondeterministic_output"],
        ..keyed(
            "ttl",
            2,
            &["readonly", "fast"],
            KEYSPACE_READ_FAST,
            RO_ACCESS,
            parse_ttl,
        )
    },
    CommandSpec {
        tips: &["nondeterministic_output"],
        ..keyed(
            "pttl",
            2,
            &["readonly", "fast"],
            KEYSPACE_READ_FAST,
            RO_ACCESS,
            parse_pttl,
        )
    },
    keyed(
        "expiretime",
        2,
        &["readonly", "fast"],
        KEYSPACE_READ_FAST,
        RO_ACCESS,
        parse_expiretime,
    ),
    keyed(
        "pexpiretime",
        2,
        &["readonly", "fast"],
        KEYSPACE_READ_FAST,
        RO_ACCESS,
        parse_pexpiretime,
    ),
    keyed(
        "persist",
        2,
        &["write", "fast"],
        KEYSPACE_WRITE_FAST,
        RW_UPDATE,
        parse_persist,
    ),
    local(
        "flushdb",
        -1,
        &["write"],
        &["@keyspace", "@write", "@slow", "@dangerous"],
        &["request_policy:all_shards", "response_policy:all_succeeded"],
        Route::AllShards,
        parse_flushdb,
    ),
    local(
        "flushall",
        -1,
        &["write"],
        &["@keyspace", "@write", "@slow", "@dangerous"],
        &["request_policy:all_shards", "response_policy:all_succeeded"],
        Route::AllShards,
        parse_flushall,
    ),
];

/// OBJECT's subcommands on a key (at argument 2).
const fn object_subcommand(name: &'static str, parse: fn(&[Bytes]) -> ParseResult) -> CommandSpec {
    CommandSpec {
        name,
        arity: 3,
        flags: &["readonly"],
        first_key: 2,
        last_key: 2,
        step: 1,
        acl: &["@keyspace", "@read", "@slow"],
        tips: &["nondeterministic_output"],
        key_specs: RO_AT_2,
        subcommands: &[],
        route: Route::Key,
        parse: Some(parse),
    }
}

const RO_AT_2: &[KeySpec] = &[ks(&["RO"], 2, 0, 1)];

/// What OBJECT tells about a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectInfo {
    Encoding,
    Freq,
    IdleTime,
    RefCount,
}

/// A keyspace read on one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    Exists(Vec<Bytes>),
    Type(Bytes),
    /// OBJECT ENCODING, FREQ, IDLETIME, REFCOUNT.
    Object(ObjectInfo, Bytes),
    /// MEMORY USAGE: members sampled (0: all).
    MemoryUsage {
        key: Bytes,
        samples: u64,
    },
    /// TTL, PTTL, EXPIRETIME, PEXPIRETIME.
    Ttl {
        key: Bytes,
        unit: TimeUnit,
        absolute: bool,
    },
}

/// The encoding Redis 7.0 would report for the same contents (it also
/// depends on history there: a string grown by APPEND stays "raw", a hash
/// once converted stays a "hashtable"; here only the contents count).
fn encoding<K: KeyspaceRead + ?Sized>(
    db: &ReadView<'_, K>,
    key: &[u8],
    record: &Record,
) -> Result<&'static str, StorageError> {
    let c = match &record.value {
        Value::String(s) => {
            return Ok(if s.len() <= 20 && parse_i64(s).is_some() {
                "int"
            } else if hyperloglog::is_hll(s) {
                // Written in place by PFADD and PFMERGE.
                "raw"
            } else if s.len() <= 44 {
                "embstr"
            } else {
                "raw"
            });
        }
        Value::Collection(c) => *c,
    };
    // The limits of Redis 7.0's compact encodings (its defaults).
    type Fits = fn(&[u8], &[u8]) -> bool;
    let (max_entries, compact, large, fits): (u64, &str, &str, Fits) = match c.kind {
        ValueType::Hash => (128, "listpack", "hashtable", |member, value| {
            member.len() <= 64 && value.len() <= 64
        }),
        ValueType::Set => (512, "intset", "hashtable", |member, _| {
            parse_i64(member).is_some()
        }),
        ValueType::ZSet => (128, "listpack", "skiplist", |member, _| member.len() <= 64),
        ValueType::List => return Ok("quicklist"),
        ValueType::String => return Ok("raw"),
    };
    if c.size > max_entries {
        return Ok(large);
    }
    // A sorted set's members are one part of its sub-keys.
    type MemberOf = fn(&[u8]) -> &[u8];
    let (range, member_of): (SubRange<'_>, MemberOf) = if c.kind == ValueType::ZSet {
        (sorted_sets::MEMBER_RANGE, sorted_sets::member_of_sub)
    } else {
        (SubRange::ALL, crate::cmd::members::member_of)
    };
    let mut all_fit = true;
    db.sub_scan(key, &c, range, &mut |sub, value| {
        if fits(member_of(sub), value) {
            ControlFlow::Continue(())
        } else {
            all_fit = false;
            ControlFlow::Break(())
        }
    })?;
    Ok(if all_fit { compact } else { large })
}

/// MEMORY USAGE: the bytes `key` takes here, estimated as Redis estimates
/// its own (a collection's size times the average of `samples` of its
/// members, 0 meaning all): the key, the value or each member's sub-keys
/// and value, and a fixed cost per record and sub-key. These are
/// elastickv's storage costs, not what Redis would report.
fn memory_usage<K: KeyspaceRead + ?Sized>(
    db: &ReadView<'_, K>,
    key: &[u8],
    record: &Record,
    samples: u64,
) -> Result<i64, StorageError> {
    const RECORD_COST: u64 = 48;
    const SUB_KEY_COST: u64 = 32;
    let key_len = key.len() as u64;
    let bytes = match &record.value {
        Value::String(s) => RECORD_COST + key_len + s.len() as u64,
        Value::Collection(c) => {
            let limit = if samples == 0 { u64::MAX } else { samples };
            let (mut seen, mut total) = (0u64, 0u64);
            db.sub_scan(key, c, SubRange::ALL, &mut |sub, value| {
                seen += 1;
                total += key_len + sub.len() as u64 + value.len() as u64 + SUB_KEY_COST;
                if seen >= limit {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })?;
            // A sorted set keeps two sub-keys per member.
            let per_member = if c.kind == ValueType::ZSet { 2 } else { 1 };
            let average = total.checked_div(seen).unwrap_or(0);
            (RECORD_COST + key_len)
                .saturating_add(average.saturating_mul(c.size.saturating_mul(per_member)))
        }
    };
    Ok(i64::try_from(bytes).unwrap_or(i64::MAX))
}

/// Redis shares the integers 0..10000 stored as strings: their refcount
/// is INT_MAX there.
fn refcount(record: &Record) -> i64 {
    match &record.value {
        Value::String(s) if s.len() <= 20 => match parse_i64(s) {
            Some(n) if (0..10_000).contains(&n) => i64::from(i32::MAX),
            _ => 1,
        },
        _ => 1,
    }
}

/// Runs a keyspace read.
pub(crate) fn execute_read<K: KeyspaceRead + ?Sized>(
    cmd: &Read,
    db: &ReadView<'_, K>,
) -> ExecResult {
    Ok(match cmd {
        Read::Exists(keys) => {
            let mut count = 0;
            for key in keys {
                if db.lookup(key)?.is_some() {
                    count += 1;
                }
            }
            Reply::Integer(count)
        }
        Read::Object(info, key) => match db.lookup(key)? {
            None => Reply::Null,
            Some(record) => match info {
                ObjectInfo::Encoding => Reply::bulk(encoding(db, key, &record)?),
                ObjectInfo::RefCount => Reply::Integer(refcount(&record)),
                // Access times are not tracked: as for a key just touched.
                ObjectInfo::IdleTime => Reply::Integer(0),
                ObjectInfo::Freq => Reply::static_error(
                    "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
                ),
            },
        },
        Read::MemoryUsage { key, samples } => match db.lookup(key)? {
            None => Reply::Null,
            Some(record) => Reply::Integer(memory_usage(db, key, &record, *samples)?),
        },
        Read::Type(key) => match db.lookup(key)? {
            None => Reply::simple("none"),
            Some(r) => Reply::simple(r.value.value_type().name()),
        },
        Read::Ttl {
            key,
            unit,
            absolute,
        } => match db.lookup(key)? {
            None => Reply::Integer(-2),
            Some(r) => match r.expire_at {
                None => Reply::Integer(-1),
                Some(at) => {
                    let now = i64::try_from(db.time().ttl_now(at)).unwrap_or(i64::MAX);
                    let at = i64::try_from(at).unwrap_or(i64::MAX);
                    let ttl = if *absolute { at } else { (at - now).max(0) };
                    Reply::Integer(match unit {
                        TimeUnit::Milliseconds => ttl,
                        // Rounded to the nearest second without overflowing
                        // near i64::MAX (Redis's result there is the exact
                        // quotient).
                        TimeUnit::Seconds => ((i128::from(ttl) + 500) / 1000) as i64,
                    })
                }
            },
        },
    })
}

fn key_write(command: log::key_write::Command) -> Command {
    Command::Write(log::Write {
        family: Some(log::write::Family::Keys(log::KeyWrite {
            command: Some(command),
        })),
    })
}

fn flush_mode(args: &[Bytes]) -> Result<(), Reply> {
    match args.len() {
        1 => Ok(()),
        2 if eq(&args[1], "async") || eq(&args[1], "sync") => Ok(()),
        _ => Err(Reply::static_error(errors::SYNTAX)),
    }
}

pub(crate) fn parse_flushdb(args: &[Bytes]) -> ParseResult {
    flush_mode(args).map(|()| key_write(log::key_write::Command::Flush(log::Flush {})))
}

pub(crate) fn parse_flushall(args: &[Bytes]) -> ParseResult {
    parse_flushdb(args)
}

/// DEL (and UNLINK) of `keys`, all on one shard.
pub fn del(keys: Vec<Bytes>) -> log::Write {
    log::Write {
        family: Some(log::write::Family::Keys(log::KeyWrite {
            command: Some(log::key_write::Command::Del(log::Del { keys })),
        })),
    }
}

pub(crate) fn parse_del(args: &[Bytes]) -> ParseResult {
    Ok(Command::Write(del(args[1..].to_vec())))
}

pub(crate) fn parse_randomkey(_: &[Bytes]) -> ParseResult {
    Ok(Command::RandomKey)
}

/// MEMORY USAGE key [SAMPLES count], checked as `memoryCommand` does.
pub(crate) fn parse_memory_usage(args: &[Bytes]) -> ParseResult {
    let mut samples = 5u64;
    let mut j = 3;
    while j < args.len() {
        if eq(&args[j], "samples") && j + 1 < args.len() {
            let n = int(&args[j + 1])?;
            if n < 0 {
                return Err(Reply::static_error(errors::SYNTAX));
            }
            samples = n.unsigned_abs();
            j += 2;
        } else {
            return Err(Reply::static_error(errors::SYNTAX));
        }
    }
    Ok(Command::KeyRead(Read::MemoryUsage {
        key: args[2].clone(),
        samples,
    }))
}

pub(crate) fn parse_memory_help(_: &[Bytes]) -> ParseResult {
    Ok(Command::Help {
        container: "memory",
        lines: &[
            "DOCTOR",
            "    Return memory problems reports.",
            "MALLOC-STATS",
            "    Return internal statistics report from the memory allocator.",
            "PURGE",
            "    Attempt to purge dirty pages for reclamation by the allocator.",
            "STATS",
            "    Return information about the memory usage of the server.",
            "USAGE <key> [SAMPLES <count>]",
            "    Return memory in bytes used by <key> and its value. Nested values are",
            "    sampled up to <count> times (default: 5, 0 means sample all).",
        ],
    })
}

pub(crate) fn parse_object_help(_: &[Bytes]) -> ParseResult {
    Ok(Command::Help {
        container: "object",
        lines: &[
            "ENCODING <key>",
            "    Return the kind of internal representation used in order to store the value",
            "    associated with a <key>.",
            "FREQ <key>",
            "    Return the access frequency index of the <key>. The returned integer is",
            "    proportional to the logarithm of the recent access frequency of the key.",
            "IDLETIME <key>",
            "    Return the idle time of the <key>, that is the approximated number of",
            "    seconds elapsed since the last access to the key.",
            "REFCOUNT <key>",
            "    Return the number of references of the value associated with the specified",
            "    <key>.",
        ],
    })
}

fn object(args: &[Bytes], info: ObjectInfo) -> ParseResult {
    Ok(Command::KeyRead(Read::Object(info, args[2].clone())))
}

pub(crate) fn parse_object_freq(args: &[Bytes]) -> ParseResult {
    object(args, ObjectInfo::Freq)
}

pub(crate) fn parse_object_encoding(args: &[Bytes]) -> ParseResult {
    object(args, ObjectInfo::Encoding)
}

pub(crate) fn parse_object_idletime(args: &[Bytes]) -> ParseResult {
    object(args, ObjectInfo::IdleTime)
}

pub(crate) fn parse_object_refcount(args: &[Bytes]) -> ParseResult {
    object(args, ObjectInfo::RefCount)
}

pub(crate) fn parse_copy(args: &[Bytes]) -> ParseResult {
    let mut replace = false;
    let mut j = 3;
    while j < args.len() {
        if eq(&args[j], "replace") {
            replace = true;
        } else if eq(&args[j], "db") && j + 1 < args.len() {
            // getIntFromObjectOrReply, then selectDb: only database 0.
            let db = int(&args[j + 1])?;
            if i32::try_from(db).is_err() {
                return Err(Reply::static_error(errors::NOT_INTEGER));
            }
            if db != 0 {
                return Err(Reply::static_error(errors::DB_INDEX_RANGE));
            }
            j += 1;
        } else {
            return Err(Reply::static_error(errors::SYNTAX));
        }
        j += 1;
    }
    if args[1] == args[2] {
        return Err(Reply::static_error(
            "ERR source and destination objects are the same",
        ));
    }
    Ok(key_write(log::key_write::Command::Copy(log::Copy {
        source: args[1].clone(),
        destination: args[2].clone(),
        replace,
    })))
}

pub(crate) fn parse_exists(args: &[Bytes]) -> ParseResult {
    Ok(Command::KeyRead(Read::Exists(args[1..].to_vec())))
}

pub(crate) fn parse_type(args: &[Bytes]) -> ParseResult {
    Ok(Command::KeyRead(Read::Type(args[1].clone())))
}

pub(crate) fn parse_keys(args: &[Bytes]) -> ParseResult {
    Ok(Command::Keys(args[1].clone()))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanArgs {
    pub cursor: u64,
    pub pattern: Option<Bytes>,
    pub count: u64,
    pub type_name: Option<Bytes>,
}

pub(crate) fn parse_scan(args: &[Bytes]) -> ParseResult {
    let cursor =
        parse_scan_cursor(&args[1]).ok_or_else(|| Reply::static_error("ERR invalid cursor"))?;
    let options = ScanOptions::parse(&args[2..], true)?;
    let scan = ScanArgs {
        cursor,
        pattern: options.pattern,
        count: options.count,
        type_name: options.type_name,
    };
    Ok(Command::Scan(scan))
}

fn rename_command(args: &[Bytes], nx: bool) -> Command {
    key_write(log::key_write::Command::Rename(log::Rename {
        from: args[1].clone(),
        to: args[2].clone(),
        nx,
    }))
}

pub(crate) fn parse_rename(args: &[Bytes]) -> ParseResult {
    Ok(rename_command(args, false))
}

pub(crate) fn parse_renamenx(args: &[Bytes]) -> ParseResult {
    Ok(rename_command(args, true))
}

fn parse_expire_generic(args: &[Bytes], unit: TimeUnit, absolute: bool) -> ParseResult {
    let mut expire = log::Expire {
        key: args[1].clone(),
        unit: unit.into(),
        absolute,
        ..Default::default()
    };
    for opt in &args[3..] {
        if eq(opt, "nx") {
            expire.nx = true;
        } else if eq(opt, "xx") {
            expire.xx = true;
        } else if eq(opt, "gt") {
            expire.gt = true;
        } else if eq(opt, "lt") {
            expire.lt = true;
        } else {
            return Err(Reply::error(format!(
                "ERR Unsupported option {}",
                String::from_utf8_lossy(opt)
            )));
        }
    }
    if expire.nx && (expire.xx || expire.gt || expire.lt) {
        return Err(Reply::static_error(
            "ERR NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if expire.gt && expire.lt {
        return Err(Reply::static_error(
            "ERR GT and LT options at the same time are not compatible",
        ));
    }
    expire.when = int(&args[2])?;
    Ok(key_write(log::key_write::Command::Expire(expire)))
}

pub(crate) fn parse_expire(args: &[Bytes]) -> ParseResult {
    parse_expire_generic(args, TimeUnit::Seconds, false)
}

pub(crate) fn parse_pexpire(args: &[Bytes]) -> ParseResult {
    parse_expire_generic(args, TimeUnit::Milliseconds, false)
}

pub(crate) fn parse_expireat(args: &[Bytes]) -> ParseResult {
    parse_expire_generic(args, TimeUnit::Seconds, true)
}

pub(crate) fn parse_pexpireat(args: &[Bytes]) -> ParseResult {
    parse_expire_generic(args, TimeUnit::Milliseconds, true)
}

fn ttl(args: &[Bytes], unit: TimeUnit, absolute: bool) -> ParseResult {
    Ok(Command::KeyRead(Read::Ttl {
        key: args[1].clone(),
        unit,
        absolute,
    }))
}

pub(crate) fn parse_ttl(args: &[Bytes]) -> ParseResult {
    ttl(args, TimeUnit::Seconds, false)
}

pub(crate) fn parse_pttl(args: &[Bytes]) -> ParseResult {
    ttl(args, TimeUnit::Milliseconds, false)
}

pub(crate) fn parse_expiretime(args: &[Bytes]) -> ParseResult {
    ttl(args, TimeUnit::Seconds, true)
}

pub(crate) fn parse_pexpiretime(args: &[Bytes]) -> ParseResult {
    ttl(args, TimeUnit::Milliseconds, true)
}

pub(crate) fn parse_persist(args: &[Bytes]) -> ParseResult {
    Ok(key_write(log::key_write::Command::Persist(log::Persist {
        key: args[1].clone(),
    })))
}

/// Runs a keyspace write at apply time.
pub(crate) fn execute_write<K: KeyspaceWrite + ?Sized>(
    db: &mut WriteView<'_, K>,
    cmd: &key_write::Command,
) -> ExecResult {
    use key_write::Command as C;
    match cmd {
        C::Del(log::Del { keys }) => {
            let mut deleted = 0;
            for key in keys {
                if let Some(previous) = db.lookup(key)? {
                    db.remove(key, &previous)?;
                    deleted += 1;
                }
            }
            Ok(Reply::Integer(deleted))
        }
        C::Rename(log::Rename { from, to, nx }) => rename(db, from, to, *nx),
        C::Sort(sort) => crate::cmd::sort::execute_write(db, sort),
        C::Publish(p) => Ok(Reply::Integer(
            db.publish(&p.channel, &p.message, p.sharded) as i64,
        )),
        C::Copy(copy) => {
            let Some(source) = db.lookup(&copy.source)? else {
                return Ok(Reply::Integer(0));
            };
            let target = db.lookup(&copy.destination)?;
            if target.is_some() && !copy.replace {
                return Ok(Reply::Integer(0));
            }
            if let Some(target) = &target {
                db.remove(&copy.destination, target)?;
            }
            let copied = match source.as_collection() {
                Some(c) => Record::collection(
                    db.copy_collection(&copy.source, c, &copy.destination)?,
                    source.expire_at,
                ),
                None => source.clone(),
            };
            db.store(&copy.destination, &copied, None)?;
            Ok(Reply::Integer(1))
        }
        C::Expire(args) => expire(db, args),
        C::Persist(log::Persist { key }) => {
            let Some(previous) = db.lookup(key)? else {
                return Ok(Reply::Integer(0));
            };
            if previous.expire_at.is_none() {
                return Ok(Reply::Integer(0));
            }
            let record = Record {
                expire_at: None,
                ..previous.clone()
            };
            db.store(key, &record, Some(&previous))?;
            Ok(Reply::Integer(1))
        }
        C::Flush(log::Flush {}) => {
            db.clear()?;
            Ok(Reply::ok())
        }
    }
}

fn rename<K: KeyspaceWrite + ?Sized>(
    db: &mut WriteView<'_, K>,
    from: &Bytes,
    to: &Bytes,
    nx: bool,
) -> ExecResult {
    let Some(source) = db.lookup(from)? else {
        return Ok(Reply::static_error(errors::NO_SUCH_KEY));
    };
    let done = if nx { Reply::Integer(1) } else { Reply::ok() };
    if from == to {
        return Ok(if nx { Reply::Integer(0) } else { Reply::ok() });
    }
    if let Some(target) = db.lookup(to)? {
        if nx {
            return Ok(Reply::Integer(0));
        }
        db.remove(to, &target)?;
    }
    // A collection's sub-keys are stored under its key: they move too.
    let moved = match source.as_collection() {
        Some(c) => Record::collection(db.copy_collection(from, c, to)?, source.expire_at),
        None => source.clone(),
    };
    db.store(to, &moved, None)?;
    db.remove(from, &source)?;
    Ok(done)
}

fn expire<K: KeyspaceWrite + ?Sized>(db: &mut WriteView<'_, K>, args: &log::Expire) -> ExecResult {
    let unit = args.unit();
    let name = match (unit, args.absolute) {
        (TimeUnit::Seconds, false) => "expire",
        (TimeUnit::Milliseconds, false) => "pexpire",
        (TimeUnit::Seconds, true) => "expireat",
        (TimeUnit::Milliseconds, true) => "pexpireat",
    };
    let mut when = args.when;
    if unit == TimeUnit::Seconds {
        if !(i64::MIN / 1000..=i64::MAX / 1000).contains(&when) {
            return Ok(errors::invalid_expire(name));
        }
        when *= 1000;
    }
    let now = i64::try_from(db.now()).unwrap_or(i64::MAX);
    let base = if args.absolute { 0 } else { now };
    if when > i64::MAX - base {
        return Ok(errors::invalid_expire(name));
    }
    when += base;
    let Some(previous) = db.lookup(&args.key)? else {
        return Ok(Reply::Integer(0));
    };
    let current = previous
        .expire_at
        .map_or(-1, |at| i64::try_from(at).unwrap_or(i64::MAX));
    let refused = (args.nx && current != -1)
        || (args.xx && current == -1)
        || (args.gt && (when <= current || current == -1))
        || (args.lt && current != -1 && when >= current);
    if refused {
        return Ok(Reply::Integer(0));
    }
    if when <= now {
        db.remove(&args.key, &previous)?;
    } else {
        let record = Record {
            expire_at: Some(when as u64),
            ..previous.clone()
        };
        db.store(&args.key, &record, Some(&previous))?;
    }
    Ok(Reply::Integer(1))
}

/// Active expiry: deletes the keys whose expiry is due at `now_ms`.
/// `keys` pairs each key with the expiry the proposer saw; a key whose
/// expiry changed since is left alone. Returns how many were deleted.
pub fn expire_due<K: KeyspaceWrite + ?Sized>(
    ks: &mut K,
    keys: &[(Bytes, u64)],
    now_ms: u64,
) -> Result<u64, StorageError> {
    let mut db = WriteView::new(ks, now_ms);
    let mut deleted = 0;
    for (key, at) in keys {
        if db.remove_if_expired(key, *at)? {
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// KEYS on one shard's slots `from_slot..end_slot`: live keys matching
/// `pattern`.
pub fn keys_in<K: KeyspaceScan + ?Sized>(
    ks: &K,
    from_slot: u32,
    end_slot: u32,
    pattern: &[u8],
    time: &ReadTime,
) -> Result<Vec<Bytes>, StorageError> {
    let all = pattern == b"*";
    let mut out = Vec::new();
    let mut failure = None;
    ks.scan(
        from_slot,
        end_slot,
        &mut |_, key, raw| match Record::peek(raw) {
            Ok((_, expire_at)) => {
                let expired = expire_at.is_some_and(|at| time.is_expired(at));
                if !expired && (all || glob::matches(pattern, key)) {
                    out.push(Bytes::copy_from_slice(key));
                }
                ControlFlow::Continue(())
            }
            Err(e) => {
                failure = Some(StorageError(format!(
                    "key {:?}: {e}",
                    String::from_utf8_lossy(key)
                )));
                ControlFlow::Break(())
            }
        },
    )?;
    match failure {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// One step of SCAN within one shard's slot range.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ScanStep {
    pub keys: Vec<Bytes>,
    /// Keys looked at (matching or not): SCAN's COUNT bounds this.
    pub examined: u64,
    /// The slot to continue from, or `None` when the range is exhausted.
    pub next_slot: Option<u32>,
}

/// Scans whole slots from `from_slot` until at least `budget` keys were
/// examined, never stopping inside a slot: a key present for the whole
/// iteration is then returned exactly once per full scan.
pub fn scan_slots<K: KeyspaceScan + ?Sized>(
    ks: &K,
    from_slot: u32,
    end_slot: u32,
    budget: u64,
    pattern: Option<&[u8]>,
    type_name: Option<&[u8]>,
    time: &ReadTime,
) -> Result<ScanStep, StorageError> {
    let mut step = ScanStep::default();
    let mut current_slot: Option<u32> = None;
    let mut failure = None;
    ks.scan(from_slot, end_slot, &mut |slot, key, raw| {
        let slot = u32::from(slot);
        if current_slot != Some(slot) {
            if step.examined >= budget {
                step.next_slot = Some(slot);
                return ControlFlow::Break(());
            }
            current_slot = Some(slot);
        }
        step.examined += 1;
        let (value_type, expire_at) = match Record::peek(raw) {
            Ok(header) => header,
            Err(e) => {
                failure = Some(StorageError(format!(
                    "key {:?}: {e}",
                    String::from_utf8_lossy(key)
                )));
                return ControlFlow::Break(());
            }
        };
        if expire_at.is_some_and(|at| time.is_expired(at)) {
            return ControlFlow::Continue(());
        }
        let type_ok =
            type_name.is_none_or(|t| t.eq_ignore_ascii_case(value_type.name().as_bytes()));
        let pattern_ok = pattern.is_none_or(|p| glob::matches(p, key));
        if !type_ok || !pattern_ok {
            return ControlFlow::Continue(());
        }
        step.keys.push(Bytes::copy_from_slice(key));
        ControlFlow::Continue(())
    })?;
    match failure {
        Some(e) => Err(e),
        None => Ok(step),
    }
}
