//! Connection commands: PING, ECHO, QUIT, HELLO, SELECT, AUTH, CLIENT,
//! COMMAND and CONFIG. Parsed here; answered by the node's session, which
//! holds the connection's state.

use bytes::Bytes;
use elastickv_resp::Reply;

use crate::command::{Command, KillFilter, ParseResult, ReplyMode, eq, int};
use crate::errors;
use crate::number::parse_i64;
use crate::table::*;

/// The connection commands' table entries.
pub(crate) static COMMANDS: &[CommandSpec] = &[
    local(
        "ping",
        -1,
        &["fast"],
        FAST_CONNECTION,
        &["request_policy:all_shards", "response_policy:all_succeeded"],
        Route::Local,
        parse_ping,
    ),
    local(
        "echo",
        2,
        &["loading", "stale", "fast"],
        FAST_CONNECTION,
        NONE,
        Route::Local,
        parse_echo,
    ),
    local(
        "quit",
        -1,
        NO_AUTH_CONNECTION,
        FAST_CONNECTION,
        NONE,
        Route::Local,
        parse_quit,
    ),
    local(
        "hello",
        -1,
        NO_AUTH_CONNECTION,
        FAST_CONNECTION,
        NONE,
        Route::Local,
        parse_hello,
    ),
    local(
        "select",
        2,
        &["loading", "stale", "fast"],
        FAST_CONNECTION,
        NONE,
        Route::Local,
        parse_select,
    ),
    local(
        "auth",
        -2,
        NO_AUTH_CONNECTION,
        FAST_CONNECTION,
        NONE,
        Route::Local,
        parse_auth,
    ),
    local(
        "reset",
        1,
        &[
            "noscript",
            "loading",
            "stale",
            "fast",
            "no_auth",
            "allow_busy",
        ],
        FAST_CONNECTION,
        NONE,
        Route::Local,
        parse_reset,
    ),
    CommandSpec {
        name: "client",
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
                "client|id",
                2,
                CLIENT_FLAGS,
                SLOW_CONNECTION,
                NONE,
                Route::Local,
                parse_client_id,
            ),
            local(
                "client|getname",
                2,
                CLIENT_FLAGS,
                SLOW_CONNECTION,
                NONE,
                Route::Local,
                parse_client_getname,
            ),
            local(
                "client|setname",
                3,
                CLIENT_FLAGS,
                SLOW_CONNECTION,
                NONE,
                Route::Local,
                parse_client_setname,
            ),
            local(
                "client|info",
                2,
                CLIENT_FLAGS,
                SLOW_CONNECTION,
                &["nondeterministic_output"],
                Route::Local,
                parse_client_info,
            ),
            local(
                "client|list",
                -2,
                ADMIN_CLIENT_FLAGS,
                ADMIN_SLOW_DANGEROUS_CONNECTION,
                &["nondeterministic_output"],
                Route::Local,
                parse_client_list,
            ),
            local(
                "client|kill",
                -3,
                ADMIN_CLIENT_FLAGS,
                ADMIN_SLOW_DANGEROUS_CONNECTION,
                NONE,
                Route::Local,
                parse_client_kill,
            ),
            local(
                "client|unblock",
                -3,
                ADMIN_CLIENT_FLAGS,
                ADMIN_SLOW_DANGEROUS_CONNECTION,
                NONE,
                Route::Local,
                parse_client_unblock,
            ),
            local(
                "client|pause",
                -3,
                ADMIN_CLIENT_FLAGS,
                ADMIN_SLOW_DANGEROUS_CONNECTION,
                NONE,
                Route::Local,
                parse_client_pause,
            ),
            local(
                "client|unpause",
                2,
                ADMIN_CLIENT_FLAGS,
                ADMIN_SLOW_DANGEROUS_CONNECTION,
                NONE,
                Route::Local,
                parse_client_unpause,
            ),
            local(
                "client|no-evict",
                3,
                ADMIN_CLIENT_FLAGS,
                ADMIN_SLOW_DANGEROUS_CONNECTION,
                NONE,
                Route::Local,
                parse_client_no_evict,
            ),
            local(
                "client|reply",
                3,
                CLIENT_FLAGS,
                SLOW_CONNECTION,
                NONE,
                Route::Local,
                parse_client_reply,
            ),
            local(
                "client|tracking",
                -3,
                CLIENT_FLAGS,
                SLOW_CONNECTION,
                NONE,
                Route::Local,
                parse_client_tracking,
            ),
            local(
                "client|help",
                2,
                LOADING_STALE,
                SLOW_CONNECTION,
                NONE,
                Route::Local,
                parse_client_help,
            ),
        ],
        route: Route::Local,
        parse: None,
    },
    CommandSpec {
        name: "command",
        arity: -1,
        flags: LOADING_STALE,
        first_key: 0,
        last_key: 0,
        step: 0,
        acl: SLOW_CONNECTION,
        tips: ORDER_TIP,
        key_specs: &[],
        subcommands: &[
            local(
                "command|count",
                2,
                LOADING_STALE,
                SLOW_CONNECTION,
                NONE,
                Route::Local,
                parse_command_count,
            ),
            local(
                "command|docs",
                -2,
                LOADING_STALE,
                SLOW_CONNECTION,
                ORDER_TIP,
                Route::Local,
                parse_command_docs,
            ),
            local(
                "command|info",
                -2,
                LOADING_STALE,
                SLOW_CONNECTION,
                ORDER_TIP,
                Route::Local,
                parse_command_info,
            ),
            local(
                "command|list",
                -2,
                LOADING_STALE,
                SLOW_CONNECTION,
                ORDER_TIP,
                Route::Local,
                parse_command_list,
            ),
            local(
                "command|help",
                2,
                LOADING_STALE,
                SLOW_CONNECTION,
                NONE,
                Route::Local,
                parse_command_help,
            ),
        ],
        route: Route::Local,
        parse: Some(parse_command),
    },
    CommandSpec {
        name: "config",
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
                "config|get",
                -3,
                ADMIN_CLIENT_FLAGS,
                ADMIN_SLOW_DANGEROUS,
                NONE,
                Route::Server,
                parse_config_get,
            ),
            local(
                "config|set",
                -4,
                ADMIN_CLIENT_FLAGS,
                ADMIN_SLOW_DANGEROUS,
                &["request_policy:all_nodes", "response_policy:all_succeeded"],
                Route::Server,
                parse_config_set,
            ),
            local(
                "config|resetstat",
                2,
                ADMIN_CLIENT_FLAGS,
                ADMIN_SLOW_DANGEROUS,
                NONE,
                Route::Server,
                parse_config_resetstat,
            ),
            local(
                "config|help",
                2,
                LOADING_STALE,
                &["@slow"],
                NONE,
                Route::Server,
                parse_config_help,
            ),
        ],
        route: Route::Server,
        parse: None,
    },
];

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

pub(crate) fn parse_reset(_: &[Bytes]) -> ParseResult {
    Ok(Command::Reset)
}

fn on_off(arg: &[u8]) -> Result<bool, Reply> {
    if eq(arg, "on") {
        Ok(true)
    } else if eq(arg, "off") {
        Ok(false)
    } else {
        Err(Reply::static_error(errors::SYNTAX))
    }
}

pub(crate) fn parse_client_reply(args: &[Bytes]) -> ParseResult {
    let mode = if eq(&args[2], "on") {
        ReplyMode::On
    } else if eq(&args[2], "off") {
        ReplyMode::Off
    } else if eq(&args[2], "skip") {
        ReplyMode::Skip
    } else {
        return Err(Reply::static_error(errors::SYNTAX));
    };
    Ok(Command::ClientReply(mode))
}

pub(crate) fn parse_client_no_evict(args: &[Bytes]) -> ParseResult {
    Ok(Command::ClientNoEvict(on_off(&args[2])?))
}

pub(crate) fn parse_client_tracking(args: &[Bytes]) -> ParseResult {
    Ok(Command::ClientTracking(on_off(&args[2])?))
}

/// CLIENT UNBLOCK id [TIMEOUT|ERROR]: the reason is checked first.
pub(crate) fn parse_client_unblock(args: &[Bytes]) -> ParseResult {
    let error = match args.len() {
        3 => false,
        4 if eq(&args[3], "timeout") => false,
        4 if eq(&args[3], "error") => true,
        4 => {
            return Err(Reply::static_error(
                "ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR",
            ));
        }
        _ => return Err(errors::subcommand_syntax(&args[0], &args[1])),
    };
    Ok(Command::ClientUnblock {
        id: int(&args[2])?,
        error,
    })
}

pub(crate) fn parse_client_unpause(_: &[Bytes]) -> ParseResult {
    Ok(Command::ClientUnpause)
}

/// CLIENT PAUSE timeout [WRITE|ALL]: the mode is checked first, as in
/// Redis.
pub(crate) fn parse_client_pause(args: &[Bytes]) -> ParseResult {
    let writes_only = match args.len() {
        3 => false,
        4 if eq(&args[3], "write") => true,
        4 if eq(&args[3], "all") => false,
        4 => {
            return Err(Reply::static_error(
                "ERR CLIENT PAUSE mode must be WRITE or ALL",
            ));
        }
        _ => return Err(Reply::static_error(errors::SYNTAX)),
    };
    let timeout = parse_i64(&args[2])
        .ok_or_else(|| Reply::static_error("ERR timeout is not an integer or out of range"))?;
    if timeout < 0 {
        return Err(Reply::static_error("ERR timeout is negative"));
    }
    Ok(Command::ClientPause {
        timeout_ms: timeout.unsigned_abs(),
        writes_only,
    })
}

/// CLIENT KILL ip:port, or CLIENT KILL with filters
/// (`ID TYPE ADDR LADDR USER SKIPME`), checked as Redis checks them.
pub(crate) fn parse_client_kill(args: &[Bytes]) -> ParseResult {
    if args.len() == 3 {
        return Ok(Command::ClientKill(KillFilter {
            old_form: true,
            addr: Some(args[2].clone()),
            ..KillFilter::default()
        }));
    }
    let mut filter = KillFilter {
        skip_me: true,
        ..KillFilter::default()
    };
    let mut i = 2;
    while i < args.len() {
        let more = i + 1 < args.len();
        let option = &args[i];
        if eq(option, "id") && more {
            filter.id = Some(match parse_i64(&args[i + 1]) {
                Some(id) if id >= 1 => id.unsigned_abs(),
                _ => {
                    return Err(Reply::static_error(
                        "ERR client-id should be greater than 0",
                    ));
                }
            });
        } else if eq(option, "type") && more {
            let kind = &args[i + 1];
            if !["normal", "master", "replica", "slave", "pubsub"]
                .iter()
                .any(|k| eq(kind, k))
            {
                return Err(Reply::error(format!(
                    "ERR Unknown client type '{}'",
                    String::from_utf8_lossy(kind)
                )));
            }
            filter.kind = Some(kind.clone());
        } else if eq(option, "addr") && more {
            filter.addr = Some(args[i + 1].clone());
        } else if eq(option, "laddr") && more {
            filter.laddr = Some(args[i + 1].clone());
        } else if eq(option, "user") && more {
            // One user exists: the default one.
            if args[i + 1].as_ref() != b"default" {
                return Err(Reply::error(format!(
                    "ERR No such user '{}'",
                    String::from_utf8_lossy(&args[i + 1])
                )));
            }
        } else if eq(option, "skipme") && more {
            filter.skip_me = on_yes_no(&args[i + 1])?;
        } else {
            return Err(Reply::static_error(errors::SYNTAX));
        }
        i += 2;
    }
    Ok(Command::ClientKill(filter))
}

fn on_yes_no(arg: &[u8]) -> Result<bool, Reply> {
    if eq(arg, "yes") {
        Ok(true)
    } else if eq(arg, "no") {
        Ok(false)
    } else {
        Err(Reply::static_error(errors::SYNTAX))
    }
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
