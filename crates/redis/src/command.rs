//! Typed commands, and parsing from argument vectors.
//!
//! Parsing does exactly the checks Redis does before it looks at any key
//! (syntax, integers it parses up front), in Redis's order, so that errors
//! come out the same. Checks Redis makes after a lookup, or that depend on
//! the clock, happen at execution (see [`crate::exec`]).

use bytes::Bytes;
use elastickv_resp::Reply;

pub use crate::cmd::keys::{ScanArgs, del};
use crate::cmd::{
    bitmaps, hashes, hyperloglog, keys, lists, pubsub, scripting, sets, sorted_sets, strings,
};
use crate::errors;
use crate::log;
use crate::number::parse_i64;
use crate::table::CommandSpec;

/// A parsed command.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    // connection
    Ping(Option<Bytes>),
    Echo(Bytes),
    Quit,
    // pub/sub (answered by the connection)
    Subscribe(pubsub::Kind, Vec<Bytes>),
    /// No channels: every one of that kind.
    Unsubscribe(pubsub::Kind, Vec<Bytes>),
    Publish {
        channel: Bytes,
        message: Bytes,
        sharded: bool,
    },
    PubsubChannels(pubsub::Kind, Option<Bytes>),
    PubsubNumSub(pubsub::Kind, Vec<Bytes>),
    PubsubNumPat,
    // transactions (answered by the connection)
    Multi,
    Exec,
    Discard,
    Watch(Vec<Bytes>),
    Unwatch,
    // scripting (run by the node, over one shard's snapshot)
    Eval(scripting::Eval),
    ScriptLoad(Bytes),
    ScriptExists(Vec<Bytes>),
    ScriptFlush,
    ScriptKill,
    Fcall(scripting::Fcall),
    FunctionLoad {
        replace: bool,
        code: Bytes,
    },
    FunctionDelete(Bytes),
    FunctionFlush,
    FunctionList {
        pattern: Option<Bytes>,
        with_code: bool,
    },
    FunctionDump,
    FunctionRestore {
        payload: Bytes,
        policy: scripting::RestorePolicy,
    },
    FunctionStats,
    FunctionKill,
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
    /// ACL and its subcommands.
    Acl(crate::cmd::acl::AclRequest),
    /// CLIENT REPLY ON|OFF|SKIP.
    ClientReply(ReplyMode),
    ClientNoEvict(bool),
    /// CLIENT TRACKING ON|OFF.
    ClientTracking(bool),
    /// CLIENT PAUSE: for `timeout_ms`, writes only or every command.
    ClientPause {
        timeout_ms: u64,
        writes_only: bool,
    },
    ClientUnpause,
    ClientKill(KillFilter),
    /// CLIENT UNBLOCK id [TIMEOUT|ERROR]: `true` for ERROR.
    ClientUnblock {
        id: i64,
        error: bool,
    },
    Reset,
    ClientGetName,
    ClientSetName(Bytes),
    ClientInfo,
    ClientList,
    ClientHelp,
    /// A container command's HELP (OBJECT HELP...): its subcommands and
    /// what they do, answered by the connection.
    Help {
        container: &'static str,
        lines: &'static [&'static str],
    },
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
    Time,
    LastSave,
    /// WAIT numreplicas timeout (0: no limit).
    Wait {
        replicas: u64,
        timeout_ms: u64,
    },
    /// SLOWLOG GET: how many entries (-1: all).
    SlowlogGet(i64),
    SlowlogLen,
    SlowlogReset,
    LatencyGraph(Bytes),
    LatencyDoctor,
    LatencyReset,
    LatencyLatest,
    LatencyHistory,
    RandomKey,
    // keyed reads, by family
    StringRead(strings::Read),
    KeyRead(keys::Read),
    HashRead(hashes::Read),
    ListRead(lists::Read),
    SetRead(sets::Read),
    BitmapRead(bitmaps::Read),
    SortedSetRead(sorted_sets::Read),
    HyperLogLogRead(hyperloglog::Read),
    /// SORT without STORE, SORT_RO.
    SortRead(log::Sort),
    // reads routed across shards
    Keys(Bytes),
    Scan(ScanArgs),
    /// Every write, in the typed form the raft log carries.
    Write(log::Write),
    /// BLPOP and kin: `write` (a pop that answers nil when there is
    /// nothing) tried now, and again whenever one of `keys` changes, until
    /// it answers or `timeout_ms` passes (0: never).
    Blocking {
        write: log::Write,
        keys: Vec<Bytes>,
        timeout_ms: u64,
    },
}

/// CLIENT REPLY's modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyMode {
    On,
    Off,
    Skip,
}

/// Which connections CLIENT KILL closes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KillFilter {
    /// `CLIENT KILL ip:port` (answers OK or an error, and may close the
    /// connection that sent it).
    pub old_form: bool,
    pub id: Option<u64>,
    pub addr: Option<Bytes>,
    pub laddr: Option<Bytes>,
    /// TYPE normal or pubsub (every connection here is normal); other
    /// types match none.
    pub kind: Option<Bytes>,
    pub skip_me: bool,
}

pub(crate) type ParseResult = Result<Command, Reply>;

pub(crate) fn eq(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

pub(crate) fn int(arg: &[u8]) -> Result<i64, Reply> {
    parse_i64(arg).ok_or_else(|| Reply::static_error(errors::NOT_INTEGER))
}

/// The key count of SINTERCARD, LMPOP and the like
/// (`getRangeLongFromObjectOrReply(1, LONG_MAX)` with its own message,
/// which also stands for a non-number).
pub(crate) fn numkeys(arg: &[u8]) -> Result<u64, Reply> {
    match parse_i64(arg) {
        Some(n) if n >= 1 => Ok(n.unsigned_abs()),
        _ => Err(Reply::static_error("ERR numkeys should be greater than 0")),
    }
}

/// What LMPOP, ZMPOP and their blocking forms take from the key count at
/// `numkeys_at` on: the keys, the side (`side` reads the word after them,
/// LEFT|RIGHT or MIN|MAX) and COUNT (1 if not given), checked in Redis's
/// order.
pub(crate) fn multi_pop_args<T>(
    args: &[Bytes],
    numkeys_at: usize,
    side: impl Fn(&[u8]) -> Result<T, Reply>,
) -> Result<(Vec<Bytes>, T, u64), Reply> {
    let numkeys = numkeys(&args[numkeys_at])?;
    let side_at = usize::try_from(numkeys)
        .ok()
        .and_then(|n| n.checked_add(numkeys_at + 1))
        .filter(|&i| i < args.len())
        .ok_or_else(|| Reply::static_error(errors::SYNTAX))?;
    let side = side(&args[side_at])?;
    let mut count = None;
    let mut j = side_at + 1;
    while j < args.len() {
        if count.is_none() && eq(&args[j], "count") && j + 1 < args.len() {
            j += 1;
            count = Some(match parse_i64(&args[j]) {
                Some(n) if n >= 1 => n.unsigned_abs(),
                _ => return Err(Reply::static_error("ERR count should be greater than 0")),
            });
        } else {
            return Err(Reply::static_error(errors::SYNTAX));
        }
        j += 1;
    }
    Ok((
        args[numkeys_at + 1..side_at].to_vec(),
        side,
        count.unwrap_or(1),
    ))
}

/// A blocking command's timeout in seconds (`getTimeoutFromObjectOrReply`),
/// as milliseconds.
pub(crate) fn blocking_timeout(arg: &[u8]) -> Result<u64, Reply> {
    use crate::number::{TimeoutError, parse_timeout_seconds};
    parse_timeout_seconds(arg).map_err(|e| {
        Reply::static_error(match e {
            TimeoutError::NotAFloat => "ERR timeout is not a float or out of range",
            TimeoutError::Negative => "ERR timeout is negative",
        })
    })
}

/// Redis's `getPositiveLongFromObjectOrReply` without a message of its
/// own: a negative number and a non-number get the same error.
pub(crate) fn positive(arg: &[u8]) -> Result<u64, Reply> {
    match parse_i64(arg) {
        Some(n) if n >= 0 => Ok(n.unsigned_abs()),
        _ => Err(Reply::static_error(
            "ERR value is out of range, must be positive",
        )),
    }
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
