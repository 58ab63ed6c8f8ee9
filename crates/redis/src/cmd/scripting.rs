//! EVAL, EVALSHA, EVAL_RO, EVALSHA_RO, SCRIPT, FCALL, FCALL_RO and
//! FUNCTION: table entries and parsing, with Redis's argument checks in
//! Redis's order.
//!
//! Scripts run on the node that receives them (crates/node: `scripting`,
//! over crates/script's interpreter) against a snapshot of one shard; what
//! they wrote is replicated as guarded effects ([`crate::effects`]).

use bytes::Bytes;
use elastickv_resp::Reply;

use crate::command::{Command, ParseResult};
use crate::errors;
use crate::number::parse_i64;
use crate::table::*;

/// A parsed FCALL or FCALL_RO. The number of keys is checked once the
/// function is found, as Redis does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fcall {
    pub function: Bytes,
    /// `numkeys key... arg...`.
    pub rest: Vec<Bytes>,
    pub read_only: bool,
}

impl Fcall {
    /// The keys and arguments (Redis's errors for a bad number of keys).
    pub fn keys_and_args(&self) -> Result<(Vec<Bytes>, Vec<Bytes>), Reply> {
        let numkeys = parse_i64(&self.rest[0])
            .ok_or_else(|| Reply::static_error("ERR Bad number of keys provided"))?;
        let available = (self.rest.len() - 1) as i64;
        if numkeys > available {
            return Err(Reply::static_error(
                "ERR Number of keys can't be greater than number of args",
            ));
        }
        if numkeys < 0 {
            return Err(Reply::static_error("ERR Number of keys can't be negative"));
        }
        let split = 1 + numkeys as usize;
        Ok((self.rest[1..split].to_vec(), self.rest[split..].to_vec()))
    }
}

/// FUNCTION RESTORE's policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestorePolicy {
    Append,
    Replace,
    Flush,
}

/// Redis's reply to EVALSHA of a script it does not have.
pub const NOSCRIPT: &str = "NOSCRIPT No matching script. Please use EVAL.";

/// Which script an EVAL-family command runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptRef {
    /// EVAL: the body itself.
    Body(Bytes),
    /// EVALSHA: a SHA1 of a cached script, lower-cased.
    Sha(String),
}

/// A parsed EVAL, EVALSHA, EVAL_RO or EVALSHA_RO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eval {
    pub script: ScriptRef,
    pub keys: Vec<Bytes>,
    pub args: Vec<Bytes>,
    /// The `_RO` forms.
    pub read_only: bool,
}

const SCRIPTING: &[&str] = &["@slow", "@scripting"];
const EVAL_FLAGS: &[&str] = &[
    "noscript",
    "stale",
    "skip_monitor",
    "no_mandatory_keys",
    "movablekeys",
];
const EVAL_RO_FLAGS: &[&str] = &[
    "readonly",
    "noscript",
    "stale",
    "skip_monitor",
    "no_mandatory_keys",
    "movablekeys",
];
const RW_NOTES: &str =
    "We cannot tell how the keys will be used so we assume the worst, RW and UPDATE";
const RO_NOTES: &str =
    "We cannot tell how the keys will be used so we assume the worst, RO and ACCESS";

const fn script_keys(notes: Option<&'static str>, flags: &'static [&'static str]) -> KeySpec {
    KeySpec {
        notes,
        flags,
        begin_index: 2,
        find: FindKeys::Keynum {
            keynum_index: 0,
            first_key: 1,
            key_step: 1,
        },
    }
}

/// An EVAL-family entry (FCALL's too: the same shape).
pub(crate) const fn eval_like(
    name: &'static str,
    flags: &'static [&'static str],
    key_specs: &'static [KeySpec],
    parse: fn(&[Bytes]) -> ParseResult,
) -> CommandSpec {
    CommandSpec {
        name,
        arity: -3,
        flags,
        first_key: 0,
        last_key: 0,
        step: 0,
        acl: SCRIPTING,
        tips: NONE,
        key_specs,
        subcommands: &[],
        route: Route::Local,
        parse: Some(parse),
    }
}

pub(crate) const RW_SCRIPT_KEYS: &[KeySpec] =
    &[script_keys(Some(RW_NOTES), &["RW", "access", "update"])];
pub(crate) const RW_SCRIPT_KEYS_NO_NOTES: &[KeySpec] =
    &[script_keys(None, &["RW", "access", "update"])];
pub(crate) const RO_SCRIPT_KEYS: &[KeySpec] = &[script_keys(Some(RO_NOTES), &["RO", "access"])];
pub(crate) const RO_SCRIPT_KEYS_NO_NOTES: &[KeySpec] = &[script_keys(None, &["RO", "access"])];

const fn script_sub(
    name: &'static str,
    arity: i32,
    flags: &'static [&'static str],
    tips: &'static [&'static str],
    parse: fn(&[Bytes]) -> ParseResult,
) -> CommandSpec {
    local(name, arity, flags, SCRIPTING, tips, Route::Local, parse)
}

/// A FUNCTION subcommand that changes the libraries.
const fn function_write(
    name: &'static str,
    arity: i32,
    flags: &'static [&'static str],
    parse: fn(&[Bytes]) -> ParseResult,
) -> CommandSpec {
    local(
        name,
        arity,
        flags,
        &["@write", "@slow", "@scripting"],
        &["request_policy:all_shards", "response_policy:all_succeeded"],
        Route::Local,
        parse,
    )
}

/// The scripting commands' table entries.
pub(crate) static COMMANDS: &[CommandSpec] = &[
    eval_like("eval", EVAL_FLAGS, RW_SCRIPT_KEYS, parse_eval),
    eval_like(
        "evalsha",
        EVAL_FLAGS,
        RW_SCRIPT_KEYS_NO_NOTES,
        parse_evalsha,
    ),
    eval_like("eval_ro", EVAL_RO_FLAGS, RO_SCRIPT_KEYS, parse_eval_ro),
    eval_like(
        "evalsha_ro",
        EVAL_RO_FLAGS,
        RO_SCRIPT_KEYS_NO_NOTES,
        parse_evalsha_ro,
    ),
    eval_like("fcall", EVAL_FLAGS, RW_SCRIPT_KEYS, parse_fcall),
    eval_like("fcall_ro", EVAL_RO_FLAGS, RO_SCRIPT_KEYS, parse_fcall_ro),
    CommandSpec {
        name: "function",
        arity: -2,
        flags: NONE,
        first_key: 0,
        last_key: 0,
        step: 0,
        acl: &["@slow"],
        tips: NONE,
        key_specs: &[],
        subcommands: &[
            script_sub(
                "function|kill",
                2,
                &["noscript", "allow_busy"],
                &["request_policy:all_shards", "response_policy:one_succeeded"],
                parse_function_kill,
            ),
            script_sub(
                "function|list",
                -2,
                &["noscript"],
                &["nondeterministic_output_order"],
                parse_function_list,
            ),
            function_write(
                "function|delete",
                3,
                &["write", "noscript"],
                parse_function_delete,
            ),
            script_sub("function|dump", 2, &["noscript"], NONE, parse_function_dump),
            function_write(
                "function|restore",
                -3,
                &["write", "denyoom", "noscript"],
                parse_function_restore,
            ),
            local(
                "function|help",
                2,
                &["loading", "stale"],
                SCRIPTING,
                NONE,
                Route::Local,
                parse_function_help,
            ),
            function_write(
                "function|load",
                -3,
                &["write", "denyoom", "noscript"],
                parse_function_load,
            ),
            function_write(
                "function|flush",
                -2,
                &["write", "noscript"],
                parse_function_flush,
            ),
            script_sub(
                "function|stats",
                2,
                &["noscript", "allow_busy"],
                &[
                    "nondeterministic_output",
                    "request_policy:all_shards",
                    "response_policy:special",
                ],
                parse_function_stats,
            ),
        ],
        route: Route::Local,
        parse: None,
    },
    CommandSpec {
        name: "script",
        arity: -2,
        flags: NONE,
        first_key: 0,
        last_key: 0,
        step: 0,
        acl: &["@slow"],
        tips: NONE,
        key_specs: &[],
        subcommands: &[
            script_sub(
                "script|exists",
                -3,
                &["noscript"],
                &[
                    "request_policy:all_shards",
                    "response_policy:agg_logical_and",
                ],
                parse_script_exists,
            ),
            script_sub(
                "script|help",
                2,
                &["loading", "stale"],
                NONE,
                parse_script_help,
            ),
            script_sub(
                "script|flush",
                -2,
                &["noscript"],
                &["request_policy:all_nodes", "response_policy:all_succeeded"],
                parse_script_flush,
            ),
            script_sub(
                "script|kill",
                2,
                &["noscript", "allow_busy"],
                &["request_policy:all_shards", "response_policy:one_succeeded"],
                parse_script_kill,
            ),
            script_sub("script|debug", 3, &["noscript"], NONE, parse_script_debug),
            script_sub(
                "script|load",
                3,
                &["noscript", "stale"],
                &["request_policy:all_nodes", "response_policy:all_succeeded"],
                parse_script_load,
            ),
        ],
        route: Route::Local,
        parse: None,
    },
];

/// `numkeys key... arg...` after the script (EVAL's and FCALL's).
pub(crate) fn keys_and_args(args: &[Bytes]) -> Result<(Vec<Bytes>, Vec<Bytes>), Reply> {
    let numkeys = parse_i64(&args[2]).ok_or_else(|| Reply::static_error(errors::NOT_INTEGER))?;
    let available = (args.len() - 3) as i64;
    if numkeys > available {
        return Err(Reply::static_error(
            "ERR Number of keys can't be greater than number of args",
        ));
    }
    if numkeys < 0 {
        return Err(Reply::static_error("ERR Number of keys can't be negative"));
    }
    let split = 3 + numkeys as usize;
    Ok((args[3..split].to_vec(), args[split..].to_vec()))
}

fn eval(args: &[Bytes], sha: bool, read_only: bool) -> ParseResult {
    let script = if sha {
        // A SHA1 of another length cannot match: NOSCRIPT at once, before
        // the number of keys is looked at.
        if args[1].len() != 40 {
            return Err(Reply::static_error(NOSCRIPT));
        }
        ScriptRef::Sha(String::from_utf8_lossy(&args[1]).to_ascii_lowercase())
    } else {
        ScriptRef::Body(args[1].clone())
    };
    let (keys, args) = keys_and_args(args)?;
    Ok(Command::Eval(Eval {
        script,
        keys,
        args,
        read_only,
    }))
}

pub(crate) fn parse_eval(args: &[Bytes]) -> ParseResult {
    eval(args, false, false)
}

pub(crate) fn parse_evalsha(args: &[Bytes]) -> ParseResult {
    eval(args, true, false)
}

pub(crate) fn parse_eval_ro(args: &[Bytes]) -> ParseResult {
    eval(args, false, true)
}

pub(crate) fn parse_evalsha_ro(args: &[Bytes]) -> ParseResult {
    eval(args, true, true)
}

fn fcall(args: &[Bytes], read_only: bool) -> ParseResult {
    Ok(Command::Fcall(Fcall {
        function: args[1].clone(),
        rest: args[2..].to_vec(),
        read_only,
    }))
}

pub(crate) fn parse_fcall(args: &[Bytes]) -> ParseResult {
    fcall(args, false)
}

pub(crate) fn parse_fcall_ro(args: &[Bytes]) -> ParseResult {
    fcall(args, true)
}

pub(crate) fn parse_function_kill(_: &[Bytes]) -> ParseResult {
    Ok(Command::FunctionKill)
}

pub(crate) fn parse_function_stats(_: &[Bytes]) -> ParseResult {
    Ok(Command::FunctionStats)
}

pub(crate) fn parse_function_dump(_: &[Bytes]) -> ParseResult {
    Ok(Command::FunctionDump)
}

pub(crate) fn parse_function_delete(args: &[Bytes]) -> ParseResult {
    Ok(Command::FunctionDelete(args[2].clone()))
}

pub(crate) fn parse_function_list(args: &[Bytes]) -> ParseResult {
    let (mut with_code, mut pattern) = (false, None);
    let mut i = 2;
    while i < args.len() {
        let arg = &args[i];
        if !with_code && arg.eq_ignore_ascii_case(b"withcode") {
            with_code = true;
        } else if pattern.is_none() && arg.eq_ignore_ascii_case(b"libraryname") {
            if i >= args.len() - 1 {
                return Err(Reply::static_error(
                    "ERR library name argument was not given",
                ));
            }
            i += 1;
            pattern = Some(args[i].clone());
        } else {
            let mut text = b"ERR Unknown argument ".to_vec();
            text.extend_from_slice(arg);
            return Err(Reply::Error(Bytes::from(text)));
        }
        i += 1;
    }
    Ok(Command::FunctionList { pattern, with_code })
}

pub(crate) fn parse_function_load(args: &[Bytes]) -> ParseResult {
    let mut replace = false;
    let mut at = 2;
    while at < args.len() - 1 {
        let arg = &args[at];
        at += 1;
        if arg.eq_ignore_ascii_case(b"replace") {
            replace = true;
            continue;
        }
        let mut text = b"ERR Unknown option given: ".to_vec();
        text.extend_from_slice(arg);
        return Err(Reply::Error(Bytes::from(text)));
    }
    Ok(Command::FunctionLoad {
        replace,
        code: args[at].clone(),
    })
}

pub(crate) fn parse_function_flush(args: &[Bytes]) -> ParseResult {
    if args.len() > 3 {
        return Err(errors::subcommand_syntax(&args[0], &args[1]));
    }
    match args.get(2) {
        None => Ok(Command::FunctionFlush),
        Some(mode) if mode.eq_ignore_ascii_case(b"sync") || mode.eq_ignore_ascii_case(b"async") => {
            Ok(Command::FunctionFlush)
        }
        Some(_) => Err(Reply::static_error(
            "ERR FUNCTION FLUSH only supports SYNC|ASYNC option",
        )),
    }
}

pub(crate) fn parse_function_restore(args: &[Bytes]) -> ParseResult {
    if args.len() > 4 {
        return Err(errors::subcommand_syntax(&args[0], &args[1]));
    }
    let policy = match args.get(3) {
        None => RestorePolicy::Append,
        Some(p) if p.eq_ignore_ascii_case(b"append") => RestorePolicy::Append,
        Some(p) if p.eq_ignore_ascii_case(b"replace") => RestorePolicy::Replace,
        Some(p) if p.eq_ignore_ascii_case(b"flush") => RestorePolicy::Flush,
        Some(_) => {
            return Err(Reply::static_error(
                "ERR Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE.",
            ));
        }
    };
    Ok(Command::FunctionRestore {
        payload: args[2].clone(),
        policy,
    })
}

pub(crate) fn parse_function_help(_: &[Bytes]) -> ParseResult {
    Ok(Command::Help {
        container: "function",
        lines: &[
            "LOAD [REPLACE] <FUNCTION CODE>",
            "    Create a new library with the given library name and code.",
            "DELETE <LIBRARY NAME>",
            "    Delete the given library.",
            "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
            "    Return general information on all the libraries:",
            "    * Library name",
            "    * The engine used to run the Library",
            "    * Library description",
            "    * Functions list",
            "    * Library code (if WITHCODE is given)",
            "    It also possible to get only function that matches a pattern using LIBRARYNAME argument.",
            "STATS",
            "    Return information about the current function running:",
            "    * Function name",
            "    * Command used to run the function",
            "    * Duration in MS that the function is running",
            "    If no function is running, return nil",
            "    In addition, returns a list of available engines.",
            "KILL",
            "    Kill the current running function.",
            "FLUSH [ASYNC|SYNC]",
            "    Delete all the libraries.",
            "    When called without the optional mode argument, the behavior is determined by the",
            "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
            "    * ASYNC: Asynchronously flush the libraries.",
            "    * SYNC: Synchronously flush the libraries.",
            "DUMP",
            "    Return a serialized payload representing the current libraries, can be restored using FUNCTION RESTORE command",
            "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
            "    Restore the libraries represented by the given payload, it is possible to give a restore policy to",
            "    control how to handle existing libraries (default APPEND):",
            "    * FLUSH: delete all existing libraries.",
            "    * APPEND: appends the restored libraries to the existing libraries. On collision, abort.",
            "    * REPLACE: appends the restored libraries to the existing libraries, On collision, replace the old",
            "      libraries with the new libraries (notice that even on this option there is a chance of failure",
            "      in case of functions name collision with another library).",
        ],
    })
}

pub(crate) fn parse_script_exists(args: &[Bytes]) -> ParseResult {
    Ok(Command::ScriptExists(args[2..].to_vec()))
}

pub(crate) fn parse_script_help(_: &[Bytes]) -> ParseResult {
    Ok(Command::Help {
        container: "script",
        lines: &[
            "DEBUG (YES|SYNC|NO)",
            "    Set the debug mode for subsequent scripts executed.",
            "EXISTS <sha1> [<sha1> ...]",
            "    Return information about the existence of the scripts in the script cache.",
            "FLUSH [ASYNC|SYNC]",
            "    Flush the Lua scripts cache. Very dangerous on replicas.",
            "    When called without the optional mode argument, the behavior is determined by the",
            "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
            "    * ASYNC: Asynchronously flush the scripts cache.",
            "    * SYNC: Synchronously flush the scripts cache.",
            "KILL",
            "    Kill the currently executing Lua script.",
            "LOAD <script>",
            "    Load a script into the scripts cache without executing it.",
        ],
    })
}

pub(crate) fn parse_script_flush(args: &[Bytes]) -> ParseResult {
    match args.get(2) {
        None => Ok(Command::ScriptFlush),
        Some(mode)
            if args.len() == 3
                && (mode.eq_ignore_ascii_case(b"sync") || mode.eq_ignore_ascii_case(b"async")) =>
        {
            Ok(Command::ScriptFlush)
        }
        Some(_) => Err(Reply::static_error(
            "ERR SCRIPT FLUSH only support SYNC|ASYNC option",
        )),
    }
}

pub(crate) fn parse_script_kill(_: &[Bytes]) -> ParseResult {
    Ok(Command::ScriptKill)
}

pub(crate) fn parse_script_debug(args: &[Bytes]) -> ParseResult {
    let mode = &args[2];
    if ["no", "yes", "sync"]
        .iter()
        .any(|m| mode.eq_ignore_ascii_case(m.as_bytes()))
    {
        // The Lua debugger forks a server per session; not offered here.
        return Err(Reply::static_error(
            "ERR SCRIPT DEBUG is not supported by this server",
        ));
    }
    Err(Reply::static_error("ERR Use SCRIPT DEBUG YES/SYNC/NO"))
}

pub(crate) fn parse_script_load(args: &[Bytes]) -> ParseResult {
    Ok(Command::ScriptLoad(args[2].clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::parse;

    fn p(parts: &[&str]) -> Result<Command, Reply> {
        let args: Vec<Bytes> = parts
            .iter()
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .collect();
        parse(&args).map(|p| p.command)
    }

    #[test]
    fn keys_and_args_are_split_by_numkeys_with_redis_errors() {
        assert_eq!(
            p(&["EVAL", "return 1", "2", "a", "b", "c"]),
            Ok(Command::Eval(Eval {
                script: ScriptRef::Body(Bytes::from_static(b"return 1")),
                keys: vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")],
                args: vec![Bytes::from_static(b"c")],
                read_only: false,
            }))
        );
        assert_eq!(
            p(&["EVAL", "return 1", "3", "a"]),
            Err(Reply::static_error(
                "ERR Number of keys can't be greater than number of args"
            ))
        );
        assert_eq!(
            p(&["EVAL", "return 1", "-1"]),
            Err(Reply::static_error("ERR Number of keys can't be negative"))
        );
        assert_eq!(
            p(&["EVAL", "return 1", "x"]),
            Err(Reply::static_error(errors::NOT_INTEGER))
        );
        // A SHA1 of the wrong length is NOSCRIPT before anything else.
        assert_eq!(
            p(&["EVALSHA", "abc", "x"]),
            Err(Reply::static_error(NOSCRIPT))
        );
        assert!(matches!(
            p(&["EVALSHA_RO", &"A".repeat(40), "0"]),
            Ok(Command::Eval(Eval { script: ScriptRef::Sha(sha), read_only: true, .. })) if sha == "a".repeat(40)
        ));
    }
}
