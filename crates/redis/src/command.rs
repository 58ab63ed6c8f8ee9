//! Typed commands, and parsing from argument vectors.
//!
//! Parsing does exactly the checks Redis does before it looks at any key
//! (syntax, integers it parses up front), in Redis's order, so that errors
//! come out the same. Checks Redis makes after a lookup, or that depend on
//! the clock, happen at execution (see [`crate::exec`]).

use bytes::Bytes;
use elastickv_resp::Reply;

use crate::errors;
use crate::log::{self, TimeUnit};
use crate::number::{parse_i64, parse_scan_cursor};
use crate::table::CommandSpec;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanArgs {
    pub cursor: u64,
    pub pattern: Option<Bytes>,
    pub count: u64,
    pub type_name: Option<Bytes>,
}

/// A parsed command.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    // connection
    Ping(Option<Bytes>),
    Echo(Bytes),
    Quit,
    Hello {
        protover: Option<i64>,
        auth: Option<(Bytes, Bytes)>,
        setname: Option<Bytes>,
    },
    Select(i64),
    Auth {
        username: Option<Bytes>,
        password: Bytes,
    },
    ClientId,
    ClientGetName,
    ClientSetName(Bytes),
    ClientInfo,
    ClientList,
    ClientHelp,
    CommandAll,
    CommandCount,
    CommandInfo(Vec<Bytes>),
    CommandDocs(Vec<Bytes>),
    CommandList,
    CommandHelp,
    ConfigGet(Vec<Bytes>),
    ConfigSet(Vec<Bytes>),
    ConfigResetStat,
    ConfigHelp,
    // server
    Info(Vec<Bytes>),
    DbSize,
    // strings
    Get(Bytes),
    MGet(Vec<Bytes>),
    StrLen(Bytes),
    GetRange(Bytes, i64, i64),
    // keys
    Exists(Vec<Bytes>),
    Type(Bytes),
    Keys(Bytes),
    Scan(ScanArgs),
    /// TTL, PTTL, EXPIRETIME, PEXPIRETIME.
    Ttl {
        key: Bytes,
        unit: TimeUnit,
        absolute: bool,
    },
    /// Every write, in the typed form the raft log carries.
    Write(log::Write),
}

pub(crate) type ParseResult = Result<Command, Reply>;

fn eq(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

fn int(arg: &[u8]) -> Result<i64, Reply> {
    parse_i64(arg).ok_or_else(|| Reply::static_error(errors::NOT_INTEGER))
}

pub(crate) fn parse_ping(args: &[Bytes]) -> ParseResult {
    if args.len() > 2 {
        return Err(errors::wrong_args("ping"));
    }
    Ok(Command::Ping(args.get(1).cloned()))
}

pub(crate) fn parse_echo(args: &[Bytes]) -> ParseResult {
    Ok(Command::Echo(args[1].clone()))
}

pub(crate) fn parse_quit(_: &[Bytes]) -> ParseResult {
    Ok(Command::Quit)
}

pub(crate) fn parse_hello(args: &[Bytes]) -> ParseResult {
    let mut protover = None;
    let mut next = 1;
    if let Some(v) = args.get(1) {
        let v = parse_i64(v).ok_or_else(|| {
            Reply::static_error("ERR Protocol version is not an integer or out of range")
        })?;
        if !(2..=3).contains(&v) {
            return Err(Reply::static_error("NOPROTO unsupported protocol version"));
        }
        protover = Some(v);
        next = 2;
    }
    let mut auth = None;
    let mut setname = None;
    let mut j = next;
    while j < args.len() {
        let more = args.len() - 1 - j;
        if eq(&args[j], "auth") && more >= 2 {
            auth = Some((args[j + 1].clone(), args[j + 2].clone()));
            j += 3;
        } else if eq(&args[j], "setname") && more >= 1 {
            setname = Some(args[j + 1].clone());
            j += 2;
        } else {
            return Err(Reply::error(format!(
                "ERR Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(&args[j])
            )));
        }
    }
    Ok(Command::Hello {
        protover,
        auth,
        setname,
    })
}

pub(crate) fn parse_select(args: &[Bytes]) -> ParseResult {
    // getIntFromObjectOrReply: must also fit an int.
    let id = int(&args[1])?;
    if i32::try_from(id).is_err() {
        return Err(Reply::static_error(
            "ERR value is out of range, value must between -2147483648 and 2147483647",
        ));
    }
    Ok(Command::Select(id))
}

pub(crate) fn parse_auth(args: &[Bytes]) -> ParseResult {
    match args.len() {
        2 => Ok(Command::Auth {
            username: None,
            password: args[1].clone(),
        }),
        3 => Ok(Command::Auth {
            username: Some(args[1].clone()),
            password: args[2].clone(),
        }),
        _ => Err(Reply::static_error(errors::SYNTAX)),
    }
}

pub(crate) fn parse_client_id(_: &[Bytes]) -> ParseResult {
    Ok(Command::ClientId)
}
pub(crate) fn parse_client_getname(_: &[Bytes]) -> ParseResult {
    Ok(Command::ClientGetName)
}
pub(crate) fn parse_client_setname(args: &[Bytes]) -> ParseResult {
    Ok(Command::ClientSetName(args[2].clone()))
}
pub(crate) fn parse_client_info(_: &[Bytes]) -> ParseResult {
    Ok(Command::ClientInfo)
}
pub(crate) fn parse_client_list(args: &[Bytes]) -> ParseResult {
    if args.len() > 2 {
        return Err(Reply::static_error(errors::SYNTAX));
    }
    Ok(Command::ClientList)
}
pub(crate) fn parse_client_help(_: &[Bytes]) -> ParseResult {
    Ok(Command::ClientHelp)
}
pub(crate) fn parse_command(_: &[Bytes]) -> ParseResult {
    Ok(Command::CommandAll)
}
pub(crate) fn parse_command_count(_: &[Bytes]) -> ParseResult {
    Ok(Command::CommandCount)
}
pub(crate) fn parse_command_info(args: &[Bytes]) -> ParseResult {
    Ok(Command::CommandInfo(args[2..].to_vec()))
}
pub(crate) fn parse_command_docs(args: &[Bytes]) -> ParseResult {
    Ok(Command::CommandDocs(args[2..].to_vec()))
}
pub(crate) fn parse_command_list(args: &[Bytes]) -> ParseResult {
    if args.len() > 2 {
        // FILTERBY is not supported: answer as Redis does for a bad filter.
        return Err(Reply::static_error(errors::SYNTAX));
    }
    Ok(Command::CommandList)
}
pub(crate) fn parse_command_help(_: &[Bytes]) -> ParseResult {
    Ok(Command::CommandHelp)
}
pub(crate) fn parse_config_get(args: &[Bytes]) -> ParseResult {
    Ok(Command::ConfigGet(args[2..].to_vec()))
}
pub(crate) fn parse_config_set(args: &[Bytes]) -> ParseResult {
    Ok(Command::ConfigSet(args[2..].to_vec()))
}
pub(crate) fn parse_config_resetstat(_: &[Bytes]) -> ParseResult {
    Ok(Command::ConfigResetStat)
}
pub(crate) fn parse_config_help(_: &[Bytes]) -> ParseResult {
    Ok(Command::ConfigHelp)
}

pub(crate) fn parse_info(args: &[Bytes]) -> ParseResult {
    Ok(Command::Info(args[1..].to_vec()))
}

pub(crate) fn parse_dbsize(_: &[Bytes]) -> ParseResult {
    Ok(Command::DbSize)
}

fn flush_mode(args: &[Bytes]) -> Result<(), Reply> {
    match args.len() {
        1 => Ok(()),
        2 if eq(&args[1], "async") || eq(&args[1], "sync") => Ok(()),
        _ => Err(Reply::static_error(errors::SYNTAX)),
    }
}

fn string_write(command: log::string_write::Command) -> Command {
    Command::Write(log::Write {
        family: Some(log::write::Family::Strings(log::StringWrite {
            command: Some(command),
        })),
    })
}

fn key_write(command: log::key_write::Command) -> Command {
    Command::Write(log::Write {
        family: Some(log::write::Family::Keys(log::KeyWrite {
            command: Some(command),
        })),
    })
}

pub(crate) fn parse_flushdb(args: &[Bytes]) -> ParseResult {
    flush_mode(args).map(|()| key_write(log::key_write::Command::Flush(log::Flush {})))
}

pub(crate) fn parse_flushall(args: &[Bytes]) -> ParseResult {
    parse_flushdb(args)
}

pub(crate) fn parse_get(args: &[Bytes]) -> ParseResult {
    Ok(Command::Get(args[1].clone()))
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
    Ok(Command::MGet(args[1..].to_vec()))
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

fn incr_by(key: &Bytes, by: i64) -> Command {
    string_write(log::string_write::Command::IncrBy(log::IncrBy {
        key: key.clone(),
        by,
    }))
}

pub(crate) fn parse_incr(args: &[Bytes]) -> ParseResult {
    Ok(incr_by(&args[1], 1))
}

pub(crate) fn parse_decr(args: &[Bytes]) -> ParseResult {
    Ok(incr_by(&args[1], -1))
}

pub(crate) fn parse_incrby(args: &[Bytes]) -> ParseResult {
    Ok(incr_by(&args[1], int(&args[2])?))
}

pub(crate) fn parse_decrby(args: &[Bytes]) -> ParseResult {
    let by = int(&args[2])?;
    if by == i64::MIN {
        return Err(Reply::static_error("ERR decrement would overflow"));
    }
    Ok(incr_by(&args[1], -by))
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
    Ok(Command::StrLen(args[1].clone()))
}

pub(crate) fn parse_getrange(args: &[Bytes]) -> ParseResult {
    let start = int(&args[2])?;
    let end = int(&args[3])?;
    Ok(Command::GetRange(args[1].clone(), start, end))
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

pub(crate) fn parse_exists(args: &[Bytes]) -> ParseResult {
    Ok(Command::Exists(args[1..].to_vec()))
}

pub(crate) fn parse_type(args: &[Bytes]) -> ParseResult {
    Ok(Command::Type(args[1].clone()))
}

pub(crate) fn parse_keys(args: &[Bytes]) -> ParseResult {
    Ok(Command::Keys(args[1].clone()))
}

pub(crate) fn parse_scan(args: &[Bytes]) -> ParseResult {
    let cursor =
        parse_scan_cursor(&args[1]).ok_or_else(|| Reply::static_error("ERR invalid cursor"))?;
    let mut scan = ScanArgs {
        cursor,
        pattern: None,
        count: 10,
        type_name: None,
    };
    let mut i = 2;
    while i < args.len() {
        let remaining = args.len() - i;
        if eq(&args[i], "count") && remaining >= 2 {
            let count = int(&args[i + 1])?;
            if count < 1 {
                return Err(Reply::static_error(errors::SYNTAX));
            }
            scan.count = count as u64;
        } else if eq(&args[i], "match") && remaining >= 2 {
            let pattern = &args[i + 1];
            scan.pattern = (pattern.as_ref() != b"*").then(|| pattern.clone());
        } else if eq(&args[i], "type") && remaining >= 2 {
            scan.type_name = Some(args[i + 1].clone());
        } else {
            return Err(Reply::static_error(errors::SYNTAX));
        }
        i += 2;
    }
    Ok(Command::Scan(scan))
}

fn rename(args: &[Bytes], nx: bool) -> Command {
    key_write(log::key_write::Command::Rename(log::Rename {
        from: args[1].clone(),
        to: args[2].clone(),
        nx,
    }))
}

pub(crate) fn parse_rename(args: &[Bytes]) -> ParseResult {
    Ok(rename(args, false))
}

pub(crate) fn parse_renamenx(args: &[Bytes]) -> ParseResult {
    Ok(rename(args, true))
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
    Ok(Command::Ttl {
        key: args[1].clone(),
        unit,
        absolute,
    })
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

/// A command name found in the table, with its arguments parsed.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub spec: &'static CommandSpec,
    pub command: Command,
}

fn arity_ok(arity: i32, argc: usize) -> bool {
    let argc = i64::try_from(argc).unwrap_or(i64::MAX);
    let arity = i64::from(arity);
    if arity > 0 {
        argc == arity
    } else {
        argc >= -arity
    }
}

/// Finds the command (or subcommand) `args` names and checks its arity,
/// answering unknown commands and wrong arity with Redis's errors. This is
/// the part of Redis's `processCommand` that runs before authentication is
/// checked.
pub fn resolve(args: &[Bytes]) -> Result<&'static CommandSpec, Reply> {
    let Some(name) = args.first() else {
        return Err(Reply::static_error(errors::SYNTAX));
    };
    let Some(spec) = crate::table::lookup(name) else {
        return Err(errors::unknown_command(args));
    };
    if !arity_ok(spec.arity, args.len()) {
        return Err(errors::wrong_args(spec.name));
    }
    if spec.subcommands.is_empty() || (args.len() == 1 && spec.parse.is_some()) {
        return Ok(spec);
    }
    let sub = &args[1];
    let Some(sub_spec) = spec
        .subcommands
        .iter()
        .find(|s| s.subcommand_name().as_bytes().eq_ignore_ascii_case(sub))
    else {
        return Err(errors::unknown_subcommand(&args[0], sub));
    };
    if !arity_ok(sub_spec.arity, args.len()) {
        return Err(errors::wrong_args(sub_spec.name));
    }
    Ok(sub_spec)
}

/// Parses the arguments of a resolved command.
pub fn parse_args(spec: &'static CommandSpec, args: &[Bytes]) -> Result<Parsed, Reply> {
    let Some(parse) = spec.parse else {
        return Err(errors::unknown_subcommand(&args[0], &args[0]));
    };
    Ok(Parsed {
        spec,
        command: parse(args)?,
    })
}

/// [`resolve`] then [`parse_args`].
pub fn parse(args: &[Bytes]) -> Result<Parsed, Reply> {
    parse_args(resolve(args)?, args)
}

/// Parses a write command into the typed form the log carries; anything
/// else is refused.
pub fn parse_write(args: &[Bytes]) -> Result<log::Write, Reply> {
    match parse(args)?.command {
        Command::Write(write) => Ok(write),
        _ => Err(Reply::static_error("ERR not a write command")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> Result<Command, String> {
        let args: Vec<Bytes> = line
            .split(' ')
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .collect();
        parse(&args).map(|p| p.command).map_err(|r| match r {
            Reply::Error(e) => String::from_utf8_lossy(&e).into_owned(),
            other => format!("{other:?}"),
        })
    }

    /// The SET in `line`.
    fn set(line: &str) -> log::Set {
        match p(line) {
            Ok(Command::Write(log::Write {
                family:
                    Some(log::write::Family::Strings(log::StringWrite {
                        command: Some(log::string_write::Command::Set(set)),
                    })),
            })) => set,
            other => panic!("{line}: {other:?}"),
        }
    }

    fn expiry_in(ms: i64) -> Option<log::Expiry> {
        Some(log::Expiry {
            when: Some(log::expiry::When::InMs(ms)),
        })
    }

    #[test]
    fn set_options() {
        let s = set("SET k v NX EX 10");
        assert_eq!(s.condition(), log::set::Condition::IfMissing);
        assert_eq!(s.expiry, expiry_in(10_000));
        let s = set("set k v px 5 get");
        assert!(s.get);
        assert_eq!(s.expiry, expiry_in(5));
        // Repeating the same expiry word is allowed; the last one wins.
        assert_eq!(set("SET k v EX 1 EX 2").expiry, expiry_in(2000));
        assert_eq!(set("SETNX k v").variant(), log::set::Variant::Setnx);
        assert_eq!(p("SET k v NX XX").unwrap_err(), "ERR syntax error");
        assert_eq!(p("SET k v EX 1 PX 2").unwrap_err(), "ERR syntax error");
        assert_eq!(p("SET k v KEEPTTL EX 1").unwrap_err(), "ERR syntax error");
        assert_eq!(p("SET k v EX").unwrap_err(), "ERR syntax error");
        assert_eq!(p("SET k v PERSIST").unwrap_err(), "ERR syntax error");
        // Syntax is checked before the number.
        assert_eq!(p("SET k v EX x NX XX").unwrap_err(), "ERR syntax error");
        assert_eq!(
            p("SET k v EX x").unwrap_err(),
            "ERR value is not an integer or out of range"
        );
        assert_eq!(
            p("SET k v EX 0").unwrap_err(),
            "ERR invalid expire time in 'set' command"
        );
        assert_eq!(
            p("SET k v EX 9223372036854776").unwrap_err(),
            "ERR invalid expire time in 'set' command"
        );
        assert_eq!(
            p("SETEX k -1 v").unwrap_err(),
            "ERR invalid expire time in 'setex' command"
        );
    }

    #[test]
    fn getex_options() {
        let getex = |line: &str| match p(line) {
            Ok(Command::Write(log::Write {
                family:
                    Some(log::write::Family::Strings(log::StringWrite {
                        command: Some(log::string_write::Command::GetEx(getex)),
                    })),
            })) => getex.option,
            other => panic!("{line}: {other:?}"),
        };
        assert_eq!(getex("GETEX k"), None);
        assert_eq!(
            getex("GETEX k PERSIST"),
            Some(log::get_ex::Option::Persist(true))
        );
        assert!(matches!(
            getex("GETEX k EX abc"),
            Some(log::get_ex::Option::Expire(_))
        ));
        assert_eq!(p("GETEX k NX").unwrap_err(), "ERR syntax error");
        assert_eq!(p("GETEX k PERSIST EX 1").unwrap_err(), "ERR syntax error");
    }

    #[test]
    fn arity_and_unknown() {
        assert_eq!(
            p("GET").unwrap_err(),
            "ERR wrong number of arguments for 'get' command"
        );
        assert_eq!(
            p("MSET a b c").unwrap_err(),
            "ERR wrong number of arguments for 'mset' command"
        );
        assert_eq!(
            p("NOPE a b").unwrap_err(),
            "ERR unknown command 'NOPE', with args beginning with: 'a' 'b' "
        );
        assert_eq!(
            p("CLIENT setinfo x y").unwrap_err(),
            "ERR unknown subcommand 'setinfo'. Try CLIENT HELP."
        );
        assert_eq!(
            p("CLIENT SETNAME").unwrap_err(),
            "ERR wrong number of arguments for 'client|setname' command"
        );
        assert_eq!(
            p("CLIENT").unwrap_err(),
            "ERR wrong number of arguments for 'client' command"
        );
        assert_eq!(p("COMMAND").unwrap(), Command::CommandAll);
    }

    #[test]
    fn expire_options() {
        assert!(p("EXPIRE k 10 NX").is_ok());
        assert_eq!(
            p("EXPIRE k 10 NX XX").unwrap_err(),
            "ERR NX and XX, GT or LT options at the same time are not compatible"
        );
        assert_eq!(
            p("EXPIRE k 10 GT LT").unwrap_err(),
            "ERR GT and LT options at the same time are not compatible"
        );
        assert_eq!(
            p("EXPIRE k 10 FOO").unwrap_err(),
            "ERR Unsupported option FOO"
        );
        assert_eq!(
            p("EXPIRE k x").unwrap_err(),
            "ERR value is not an integer or out of range"
        );
    }

    #[test]
    fn scan_options() {
        let Command::Scan(s) = p("SCAN 5 MATCH a* COUNT 100 TYPE string").unwrap() else {
            panic!()
        };
        assert_eq!((s.cursor, s.count), (5, 100));
        assert_eq!(s.pattern.as_deref(), Some(&b"a*"[..]));
        assert_eq!(p("SCAN x").unwrap_err(), "ERR invalid cursor");
        assert_eq!(p("SCAN 0 COUNT 0").unwrap_err(), "ERR syntax error");
        assert_eq!(p("SCAN 0 COUNT").unwrap_err(), "ERR syntax error");
    }
}
