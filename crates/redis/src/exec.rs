//! Command semantics over one shard's keyspace.
//!
//! [`execute_read`] runs read commands at a point in time; [`execute_write`]
//! runs write commands during apply, with the proposer's timestamp as "now"
//! so every replica computes the same result. Each function follows the
//! corresponding Redis 7.0 implementation step by step, including the order
//! in which it checks things (which decides which error a client sees).

use std::ops::ControlFlow;

use bytes::{Bytes, BytesMut};
use elastickv_resp::Reply;

use crate::command::Command;
use crate::db::{ReadTime, ReadView, WriteView};
use crate::errors;
use crate::glob;
use crate::keyspace::{KeyspaceRead, KeyspaceScan, KeyspaceWrite, StorageError};
use crate::log::{self, TimeUnit, key_write, string_write, write};
use crate::number::{self, FloatError, parse_i64};
use crate::record::{Record, Value};

/// Longest string value (`proto-max-bulk-len`).
pub const MAX_STRING_LEN: u64 = 512 * 1024 * 1024;

type ExecResult = Result<Reply, StorageError>;

fn string_value(record: &Record) -> Option<&Bytes> {
    match &record.value {
        Value::String(s) => Some(s),
    }
}

fn wrongtype() -> Reply {
    Reply::static_error(errors::WRONGTYPE)
}

/// Runs a read-only command. Commands that are not keyed reads answer with
/// an error (the caller routes those elsewhere).
///
/// Expiry is judged by `time`; when `time` comes out undecided, the reply
/// must be discarded (see [`ReadTime`]).
pub fn execute_read<K: KeyspaceRead + ?Sized>(
    cmd: &Command,
    ks: &K,
    time: &ReadTime,
) -> ExecResult {
    let db = ReadView::new(ks, time);
    Ok(match cmd {
        Command::Get(key) => match db.lookup(key)? {
            None => Reply::Null,
            Some(r) => match string_value(&r) {
                Some(v) => Reply::Bulk(v.clone()),
                None => wrongtype(),
            },
        },
        Command::MGet(keys) => {
            let mut out = Vec::with_capacity(keys.len());
            for key in keys {
                out.push(match db.lookup(key)?.as_ref().and_then(string_value) {
                    Some(v) => Reply::Bulk(v.clone()),
                    None => Reply::Null,
                });
            }
            Reply::Array(out)
        }
        Command::StrLen(key) => match db.lookup(key)? {
            None => Reply::Integer(0),
            Some(r) => match string_value(&r) {
                Some(v) => Reply::Integer(v.len() as i64),
                None => wrongtype(),
            },
        },
        Command::GetRange(key, start, end) => match db.lookup(key)? {
            None => Reply::Bulk(Bytes::new()),
            Some(r) => match string_value(&r) {
                Some(v) => Reply::Bulk(get_range(v, *start, *end)),
                None => wrongtype(),
            },
        },
        Command::Exists(keys) => {
            let mut count = 0;
            for key in keys {
                if db.lookup(key)?.is_some() {
                    count += 1;
                }
            }
            Reply::Integer(count)
        }
        Command::Type(key) => match db.lookup(key)? {
            None => Reply::simple("none"),
            Some(r) => Reply::simple(r.value.value_type().name()),
        },
        Command::Ttl {
            key,
            unit,
            absolute,
        } => match db.lookup(key)? {
            None => Reply::Integer(-2),
            Some(r) => match r.expire_at {
                None => Reply::Integer(-1),
                Some(at) => {
                    let now = i64::try_from(time.ttl_now(at)).unwrap_or(i64::MAX);
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
        _ => Reply::static_error("ERR command is not a keyed read"),
    })
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

/// Runs a write command at apply time; `now_ms` is the proposer's clock.
/// A write with no command in it (written by a newer version) answers
/// with an error here; [`crate::replicated::apply`] refuses such entries
/// before they get this far.
pub fn execute_write<K: KeyspaceWrite + ?Sized>(
    cmd: &log::Write,
    ks: &mut K,
    now_ms: u64,
) -> ExecResult {
    let mut db = WriteView::new(ks, now_ms);
    match &cmd.family {
        Some(write::Family::Strings(w)) => match &w.command {
            Some(c) => string_write(&mut db, c),
            None => Ok(unknown_write()),
        },
        Some(write::Family::Keys(w)) => match &w.command {
            Some(c) => key_write(&mut db, c),
            None => Ok(unknown_write()),
        },
        None => Ok(unknown_write()),
    }
}

fn unknown_write() -> Reply {
    Reply::static_error("ERR unknown replicated write")
}

fn string_write<K: KeyspaceWrite + ?Sized>(
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

fn key_write<K: KeyspaceWrite + ?Sized>(
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
                value: previous.value.clone(),
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
    db.store(to, &source, None)?;
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
            value: previous.value.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::parse;
    use crate::keyspace::MemKeyspace;

    fn run(ks: &mut MemKeyspace, now: u64, line: &str) -> Reply {
        let args: Vec<Bytes> = line
            .split(' ')
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .collect();
        let parsed = match parse(&args) {
            Ok(p) => p,
            Err(reply) => return reply,
        };
        if let Command::Write(write) = &parsed.command {
            execute_write(write, ks, now).unwrap()
        } else {
            execute_read(&parsed.command, ks, &ReadTime::at(now)).unwrap()
        }
    }

    fn bulk(s: &str) -> Reply {
        Reply::bulk(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn set_get_and_conditions() {
        let mut ks = MemKeyspace::default();
        assert_eq!(run(&mut ks, 1000, "SET k v"), Reply::ok());
        assert_eq!(run(&mut ks, 1000, "GET k"), bulk("v"));
        assert_eq!(run(&mut ks, 1000, "SET k w NX"), Reply::Null);
        assert_eq!(run(&mut ks, 1000, "SET k w NX GET"), bulk("v"));
        assert_eq!(run(&mut ks, 1000, "SET k w XX GET"), bulk("v"));
        assert_eq!(run(&mut ks, 1000, "SET other w XX"), Reply::Null);
        assert_eq!(run(&mut ks, 1000, "SETNX k x"), Reply::Integer(0));
        assert_eq!(run(&mut ks, 1000, "SETNX n x"), Reply::Integer(1));
        assert_eq!(ks.counts.keys, 2);
    }

    #[test]
    fn ttl_lifecycle_with_index_and_counts() {
        let mut ks = MemKeyspace::default();
        run(&mut ks, 1000, "SET k v EX 10");
        assert_eq!(run(&mut ks, 1000, "TTL k"), Reply::Integer(10));
        assert_eq!(run(&mut ks, 1000, "PTTL k"), Reply::Integer(10_000));
        assert_eq!(run(&mut ks, 1000, "PEXPIRETIME k"), Reply::Integer(11_000));
        assert_eq!(ks.counts.expires, 1);
        assert_eq!(ks.expire_index.len(), 1);
        // KEEPTTL keeps it, a plain SET drops it.
        run(&mut ks, 2000, "SET k v2 KEEPTTL");
        assert_eq!(run(&mut ks, 2000, "PTTL k"), Reply::Integer(9_000));
        run(&mut ks, 2000, "SET k v3");
        assert_eq!(run(&mut ks, 2000, "TTL k"), Reply::Integer(-1));
        assert_eq!((ks.counts.expires, ks.expire_index.len()), (0, 0));
        // Invisible at once when expired; removed on the next write lookup.
        run(&mut ks, 2000, "PEXPIRE k 100");
        assert_eq!(run(&mut ks, 2100, "GET k"), Reply::Null);
        assert_eq!(run(&mut ks, 2100, "TTL k"), Reply::Integer(-2));
        assert_eq!(ks.counts.keys, 1);
        assert_eq!(run(&mut ks, 2100, "DEL k"), Reply::Integer(0));
        assert_eq!((ks.counts.keys, ks.counts.expires), (0, 0));
        assert!(ks.expire_index.is_empty());
    }

    #[test]
    fn expire_flags() {
        let mut ks = MemKeyspace::default();
        run(&mut ks, 0, "SET k v");
        assert_eq!(run(&mut ks, 0, "EXPIRE k 100 XX"), Reply::Integer(0));
        assert_eq!(run(&mut ks, 0, "EXPIRE k 100 GT"), Reply::Integer(0));
        assert_eq!(run(&mut ks, 0, "EXPIRE k 100 NX"), Reply::Integer(1));
        assert_eq!(run(&mut ks, 0, "EXPIRE k 50 GT"), Reply::Integer(0));
        assert_eq!(run(&mut ks, 0, "EXPIRE k 50 LT"), Reply::Integer(1));
        assert_eq!(run(&mut ks, 0, "TTL k"), Reply::Integer(50));
        assert_eq!(run(&mut ks, 0, "EXPIRE k -1"), Reply::Integer(1));
        assert_eq!(run(&mut ks, 0, "EXISTS k"), Reply::Integer(0));
        assert_eq!(ks.counts.keys, 0);
        assert_eq!(
            run(&mut ks, 0, "EXPIRE k 9223372036854775807"),
            Reply::static_error("ERR invalid expire time in 'expire' command")
        );
    }

    #[test]
    fn counters_and_strings() {
        let mut ks = MemKeyspace::default();
        assert_eq!(run(&mut ks, 0, "INCR c"), Reply::Integer(1));
        assert_eq!(run(&mut ks, 0, "INCRBY c 41"), Reply::Integer(42));
        assert_eq!(run(&mut ks, 0, "DECRBY c 2"), Reply::Integer(40));
        run(&mut ks, 0, "SET c 9223372036854775807");
        assert_eq!(
            run(&mut ks, 0, "INCR c"),
            Reply::static_error(errors::INCR_OVERFLOW)
        );
        run(&mut ks, 0, "SET s abc");
        assert_eq!(
            run(&mut ks, 0, "INCR s"),
            Reply::static_error(errors::NOT_INTEGER)
        );
        assert_eq!(run(&mut ks, 0, "INCRBYFLOAT f 0.1"), bulk("0.1"));
        assert_eq!(run(&mut ks, 0, "INCRBYFLOAT f 0.2"), bulk("0.3"));
        assert_eq!(run(&mut ks, 0, "APPEND s def"), Reply::Integer(6));
        assert_eq!(run(&mut ks, 0, "GETRANGE s 1 -2"), bulk("bcde"));
        assert_eq!(run(&mut ks, 0, "GETRANGE s -1 -5"), bulk(""));
        assert_eq!(run(&mut ks, 0, "GETRANGE nope 0 -1"), bulk(""));
        assert_eq!(run(&mut ks, 0, "SETRANGE s 8 xy"), Reply::Integer(10));
        assert_eq!(run(&mut ks, 0, "GET s"), bulk("abcdef\0\0xy"));
        assert_eq!(run(&mut ks, 0, "SETRANGE new 0 "), Reply::Integer(0));
        assert_eq!(run(&mut ks, 0, "STRLEN s"), Reply::Integer(10));
        assert_eq!(
            run(&mut ks, 0, "SETRANGE s 536870911 xy"),
            Reply::static_error(errors::STRING_TOO_LONG)
        );
    }

    #[test]
    fn rename_and_multi_key() {
        let mut ks = MemKeyspace::default();
        assert_eq!(
            run(&mut ks, 0, "RENAME a b"),
            Reply::static_error(errors::NO_SUCH_KEY)
        );
        run(&mut ks, 0, "MSET a 1 b 2 c 3");
        assert_eq!(run(&mut ks, 0, "MSETNX c 9 d 9"), Reply::Integer(0));
        assert_eq!(run(&mut ks, 0, "RENAMENX a b"), Reply::Integer(0));
        run(&mut ks, 0, "PEXPIRE a 5000");
        assert_eq!(run(&mut ks, 0, "RENAME a b"), Reply::ok());
        assert_eq!(run(&mut ks, 0, "PTTL b"), Reply::Integer(5000));
        assert_eq!(run(&mut ks, 0, "EXISTS a b b c"), Reply::Integer(3));
        assert_eq!(
            run(&mut ks, 0, "MGET a b c"),
            Reply::Array(vec![Reply::Null, bulk("1"), bulk("3")])
        );
        assert_eq!(run(&mut ks, 0, "DEL a b c c"), Reply::Integer(2));
        assert_eq!((ks.counts.keys, ks.counts.expires), (0, 0));
    }

    #[test]
    fn active_expiry_respects_changed_ttls() {
        let mut ks = MemKeyspace::default();
        run(&mut ks, 0, "SET a 1 PX 100");
        run(&mut ks, 0, "SET b 1 PX 100");
        run(&mut ks, 50, "PEXPIRE b 1000");
        let due = vec![
            (Bytes::from_static(b"a"), 100),
            (Bytes::from_static(b"b"), 100),
        ];
        assert_eq!(expire_due(&mut ks, &due, 150).unwrap(), 1);
        assert_eq!(ks.counts.keys, 1);
        assert_eq!(run(&mut ks, 150, "EXISTS b"), Reply::Integer(1));
        assert_eq!(ks.expire_index.len(), 1);
    }

    #[test]
    fn scan_returns_whole_slots() {
        let mut ks = MemKeyspace::default();
        for i in 0..25 {
            run(&mut ks, 0, &format!("SET key{i} v"));
        }
        // MemKeyspace puts everything in slot 0: one step returns it all.
        let step = scan_slots(&ks, 0, 1, 10, Some(b"key1*"), None, &ReadTime::at(0)).unwrap();
        assert_eq!(step.keys.len(), 11);
        assert_eq!(step.examined, 25);
        assert_eq!(step.next_slot, None);
        let keys = keys_in(&ks, 0, 1, b"key2?", &ReadTime::at(0)).unwrap();
        assert_eq!(keys.len(), 5);
    }
}
