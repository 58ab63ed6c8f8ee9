//! The command table: the one list of commands this server knows, with
//! everything about each one (arity, flags, key positions, ACL categories,
//! tips, key specs as Redis 7.0 reports them, how it is routed, and its
//! parser). COMMAND, routing and dispatch all read from here.

use std::collections::HashMap;
use std::sync::LazyLock;

use bytes::Bytes;

use crate::command::{self as c, ParseResult};

/// How a command reaches data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Answered by the connection itself (PING, HELLO, CLIENT, ...).
    Local,
    /// Node-wide but not keyed (INFO, DBSIZE, CONFIG).
    Server,
    /// One key; runs on that key's shard.
    Key,
    /// Several keys on any shards: split per shard and merged (MGET, DEL,
    /// EXISTS, UNLINK).
    FanOut,
    /// Several keys that must share a shard so the command stays atomic
    /// (MSET, MSETNX, RENAME).
    SameShard,
    /// Every shard (KEYS, FLUSHDB, FLUSHALL).
    AllShards,
    /// SCAN: walks slots in order across shards.
    Scan,
}

/// A key specification, in the `index` / `range` form all of this table's
/// commands use.
#[derive(Debug)]
pub struct KeySpec {
    pub notes: Option<&'static str>,
    pub flags: &'static [&'static str],
    pub begin_index: i64,
    pub last_key: i64,
    pub key_step: i64,
}

pub struct CommandSpec {
    /// Lower case; `container|sub` for subcommands.
    pub name: &'static str,
    pub arity: i32,
    pub flags: &'static [&'static str],
    pub first_key: i32,
    pub last_key: i32,
    pub step: i32,
    pub acl: &'static [&'static str],
    pub tips: &'static [&'static str],
    pub key_specs: &'static [KeySpec],
    pub subcommands: &'static [CommandSpec],
    pub route: Route,
    /// `None` for a container that needs a subcommand.
    pub parse: Option<fn(&[Bytes]) -> ParseResult>,
}

impl std::fmt::Debug for CommandSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl CommandSpec {
    pub fn is_write(&self) -> bool {
        self.flags.contains(&"write")
    }

    /// The part after `|` of a subcommand's name.
    pub fn subcommand_name(&self) -> &'static str {
        self.name.rsplit('|').next().unwrap_or(self.name)
    }

    /// Argument positions of the keys, from first/last/step.
    pub fn key_positions(&self, argc: usize) -> impl Iterator<Item = usize> + use<> {
        let first = self.first_key;
        let step = self.step.max(1) as usize;
        let last = if self.last_key < 0 {
            argc as i64 + i64::from(self.last_key)
        } else {
            i64::from(self.last_key)
        };
        let (first, last) = if first <= 0 {
            (1usize, 0usize)
        } else {
            (
                first as usize,
                usize::try_from(last)
                    .unwrap_or(0)
                    .min(argc.saturating_sub(1)),
            )
        };
        (first..=last)
            .step_by(step)
            .filter(move |&i| i >= 1 && i < argc)
    }
}

const NONE: &[&str] = &[];

const fn ks(
    flags: &'static [&'static str],
    begin_index: i64,
    last_key: i64,
    key_step: i64,
) -> KeySpec {
    KeySpec {
        notes: None,
        flags,
        begin_index,
        last_key,
        key_step,
    }
}

const RO_ACCESS: &[KeySpec] = &[ks(&["RO", "access"], 1, 0, 1)];
const RO: &[KeySpec] = &[ks(&["RO"], 1, 0, 1)];
const RW_ACCESS_UPDATE: &[KeySpec] = &[ks(&["RW", "access", "update"], 1, 0, 1)];
const RW_UPDATE: &[KeySpec] = &[ks(&["RW", "update"], 1, 0, 1)];
const OW_UPDATE: &[KeySpec] = &[ks(&["OW", "update"], 1, 0, 1)];

const READ_STRING_FAST: &[&str] = &["@read", "@string", "@fast"];
const WRITE_STRING_FAST: &[&str] = &["@write", "@string", "@fast"];
const WRITE_STRING_SLOW: &[&str] = &["@write", "@string", "@slow"];
const KEYSPACE_READ_FAST: &[&str] = &["@keyspace", "@read", "@fast"];
const KEYSPACE_WRITE_FAST: &[&str] = &["@keyspace", "@write", "@fast"];
const FAST_CONNECTION: &[&str] = &["@fast", "@connection"];
const SLOW_CONNECTION: &[&str] = &["@slow", "@connection"];
const ADMIN_SLOW_DANGEROUS: &[&str] = &["@admin", "@slow", "@dangerous"];
const ADMIN_SLOW_DANGEROUS_CONNECTION: &[&str] = &["@admin", "@slow", "@dangerous", "@connection"];
const NO_AUTH_CONNECTION: &[&str] = &[
    "noscript",
    "loading",
    "stale",
    "fast",
    "no_auth",
    "allow_busy",
];
const CLIENT_FLAGS: &[&str] = &["noscript", "loading", "stale"];
const ADMIN_CLIENT_FLAGS: &[&str] = &["admin", "noscript", "loading", "stale"];
const LOADING_STALE: &[&str] = &["loading", "stale"];
const ORDER_TIP: &[&str] = &["nondeterministic_output_order"];
const MULTI_SHARD_SUM: &[&str] = &["request_policy:multi_shard", "response_policy:agg_sum"];

/// A keyless command.
const fn local(
    name: &'static str,
    arity: i32,
    flags: &'static [&'static str],
    acl: &'static [&'static str],
    tips: &'static [&'static str],
    route: Route,
    parse: fn(&[Bytes]) -> ParseResult,
) -> CommandSpec {
    CommandSpec {
        name,
        arity,
        flags,
        first_key: 0,
        last_key: 0,
        step: 0,
        acl,
        tips,
        key_specs: &[],
        subcommands: &[],
        route,
        parse: Some(parse),
    }
}

/// A command on one key at argument 1.
const fn keyed(
    name: &'static str,
    arity: i32,
    flags: &'static [&'static str],
    acl: &'static [&'static str],
    key_specs: &'static [KeySpec],
    parse: fn(&[Bytes]) -> ParseResult,
) -> CommandSpec {
    CommandSpec {
        name,
        arity,
        flags,
        first_key: 1,
        last_key: 1,
        step: 1,
        acl,
        tips: NONE,
        key_specs,
        subcommands: &[],
        route: Route::Key,
        parse: Some(parse),
    }
}

/// Every command, in the order COMMAND lists them.
pub static COMMANDS: &[CommandSpec] = &[
    // connection
    local(
        "ping",
        -1,
        &["fast"],
        FAST_CONNECTION,
        &["request_policy:all_shards", "response_policy:all_succeeded"],
        Route::Local,
        c::parse_ping,
    ),
    local(
        "echo",
        2,
        &["loading", "stale", "fast"],
        FAST_CONNECTION,
        NONE,
        Route::Local,
        c::parse_echo,
    ),
    local(
        "quit",
        -1,
        NO_AUTH_CONNECTION,
        FAST_CONNECTION,
        NONE,
        Route::Local,
        c::parse_quit,
    ),
    local(
        "hello",
        -1,
        NO_AUTH_CONNECTION,
        FAST_CONNECTION,
        NONE,
        Route::Local,
        c::parse_hello,
    ),
    local(
        "select",
        2,
        &["loading", "stale", "fast"],
        FAST_CONNECTION,
        NONE,
        Route::Local,
        c::parse_select,
    ),
    local(
        "auth",
        -2,
        NO_AUTH_CONNECTION,
        FAST_CONNECTION,
        NONE,
        Route::Local,
        c::parse_auth,
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
                c::parse_client_id,
            ),
            local(
                "client|getname",
                2,
                CLIENT_FLAGS,
                SLOW_CONNECTION,
                NONE,
                Route::Local,
                c::parse_client_getname,
            ),
            local(
                "client|setname",
                3,
                CLIENT_FLAGS,
                SLOW_CONNECTION,
                NONE,
                Route::Local,
                c::parse_client_setname,
            ),
            local(
                "client|info",
                2,
                CLIENT_FLAGS,
                SLOW_CONNECTION,
                &["nondeterministic_output"],
                Route::Local,
                c::parse_client_info,
            ),
            local(
                "client|list",
                -2,
                ADMIN_CLIENT_FLAGS,
                ADMIN_SLOW_DANGEROUS_CONNECTION,
                &["nondeterministic_output"],
                Route::Local,
                c::parse_client_list,
            ),
            local(
                "client|help",
                2,
                LOADING_STALE,
                SLOW_CONNECTION,
                NONE,
                Route::Local,
                c::parse_client_help,
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
                c::parse_command_count,
            ),
            local(
                "command|docs",
                -2,
                LOADING_STALE,
                SLOW_CONNECTION,
                ORDER_TIP,
                Route::Local,
                c::parse_command_docs,
            ),
            local(
                "command|info",
                -2,
                LOADING_STALE,
                SLOW_CONNECTION,
                ORDER_TIP,
                Route::Local,
                c::parse_command_info,
            ),
            local(
                "command|list",
                -2,
                LOADING_STALE,
                SLOW_CONNECTION,
                ORDER_TIP,
                Route::Local,
                c::parse_command_list,
            ),
            local(
                "command|help",
                2,
                LOADING_STALE,
                SLOW_CONNECTION,
                NONE,
                Route::Local,
                c::parse_command_help,
            ),
        ],
        route: Route::Local,
        parse: Some(c::parse_command),
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
                c::parse_config_get,
            ),
            local(
                "config|set",
                -4,
                ADMIN_CLIENT_FLAGS,
                ADMIN_SLOW_DANGEROUS,
                &["request_policy:all_nodes", "response_policy:all_succeeded"],
                Route::Server,
                c::parse_config_set,
            ),
            local(
                "config|resetstat",
                2,
                ADMIN_CLIENT_FLAGS,
                ADMIN_SLOW_DANGEROUS,
                NONE,
                Route::Server,
                c::parse_config_resetstat,
            ),
            local(
                "config|help",
                2,
                LOADING_STALE,
                &["@slow"],
                NONE,
                Route::Server,
                c::parse_config_help,
            ),
        ],
        route: Route::Server,
        parse: None,
    },
    // server
    local(
        "info",
        -1,
        LOADING_STALE,
        &["@slow", "@dangerous"],
        &[
            "nondeterministic_output",
            "request_policy:all_shards",
            "response_policy:special",
        ],
        Route::Server,
        c::parse_info,
    ),
    local(
        "dbsize",
        1,
        &["readonly", "fast"],
        KEYSPACE_READ_FAST,
        &["request_policy:all_shards", "response_policy:agg_sum"],
        Route::Server,
        c::parse_dbsize,
    ),
    local(
        "flushdb",
        -1,
        &["write"],
        &["@keyspace", "@write", "@slow", "@dangerous"],
        &["request_policy:all_shards", "response_policy:all_succeeded"],
        Route::AllShards,
        c::parse_flushdb,
    ),
    local(
        "flushall",
        -1,
        &["write"],
        &["@keyspace", "@write", "@slow", "@dangerous"],
        &["request_policy:all_shards", "response_policy:all_succeeded"],
        Route::AllShards,
        c::parse_flushall,
    ),
    // strings
    keyed(
        "get",
        2,
        &["readonly", "fast"],
        READ_STRING_FAST,
        RO_ACCESS,
        c::parse_get,
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
            last_key: 0,
            key_step: 1,
        }],
        c::parse_set,
    ),
    keyed(
        "setnx",
        3,
        &["write", "denyoom", "fast"],
        WRITE_STRING_FAST,
        &[ks(&["OW", "insert"], 1, 0, 1)],
        c::parse_setnx,
    ),
    keyed(
        "setex",
        4,
        &["write", "denyoom"],
        WRITE_STRING_SLOW,
        OW_UPDATE,
        c::parse_setex,
    ),
    keyed(
        "psetex",
        4,
        &["write", "denyoom"],
        WRITE_STRING_SLOW,
        OW_UPDATE,
        c::parse_psetex,
    ),
    keyed(
        "getset",
        3,
        &["write", "denyoom", "fast"],
        WRITE_STRING_FAST,
        RW_ACCESS_UPDATE,
        c::parse_getset,
    ),
    keyed(
        "getdel",
        2,
        &["write", "fast"],
        WRITE_STRING_FAST,
        &[ks(&["RW", "access", "delete"], 1, 0, 1)],
        c::parse_getdel,
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
            last_key: 0,
            key_step: 1,
        }],
        c::parse_getex,
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
        parse: Some(c::parse_mget),
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
        parse: Some(c::parse_mset),
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
        parse: Some(c::parse_msetnx),
    },
    keyed(
        "incr",
        2,
        &["write", "denyoom", "fast"],
        WRITE_STRING_FAST,
        RW_ACCESS_UPDATE,
        c::parse_incr,
    ),
    keyed(
        "decr",
        2,
        &["write", "denyoom", "fast"],
        WRITE_STRING_FAST,
        RW_ACCESS_UPDATE,
        c::parse_decr,
    ),
    keyed(
        "incrby",
        3,
        &["write", "denyoom", "fast"],
        WRITE_STRING_FAST,
        RW_ACCESS_UPDATE,
        c::parse_incrby,
    ),
    keyed(
        "decrby",
        3,
        &["write", "denyoom", "fast"],
        WRITE_STRING_FAST,
        RW_ACCESS_UPDATE,
        c::parse_decrby,
    ),
    keyed(
        "incrbyfloat",
        3,
        &["write", "denyoom", "fast"],
        WRITE_STRING_FAST,
        RW_ACCESS_UPDATE,
        c::parse_incrbyfloat,
    ),
    keyed(
        "append",
        3,
        &["write", "denyoom", "fast"],
        WRITE_STRING_FAST,
        &[ks(&["RW", "insert"], 1, 0, 1)],
        c::parse_append,
    ),
    keyed(
        "strlen",
        2,
        &["readonly", "fast"],
        READ_STRING_FAST,
        RO,
        c::parse_strlen,
    ),
    keyed(
        "getrange",
        4,
        &["readonly"],
        &["@read", "@string", "@slow"],
        RO_ACCESS,
        c::parse_getrange,
    ),
    keyed(
        "setrange",
        4,
        &["write", "denyoom"],
        WRITE_STRING_SLOW,
        RW_UPDATE,
        c::parse_setrange,
    ),
    // keys
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
        parse: Some(c::parse_del),
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
        parse: Some(c::parse_del),
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
        parse: Some(c::parse_exists),
    },
    keyed(
        "type",
        2,
        &["readonly", "fast"],
        KEYSPACE_READ_FAST,
        RO,
        c::parse_type,
    ),
    local(
        "keys",
        2,
        &["readonly"],
        &["@keyspace", "@read", "@slow", "@dangerous"],
        &["request_policy:all_shards", "nondeterministic_output_order"],
        Route::AllShards,
        c::parse_keys,
    ),
    local(
        "scan",
        -2,
        &["readonly"],
        &["@keyspace", "@read", "@slow"],
        &["nondeterministic_output", "request_policy:special"],
        Route::Scan,
        c::parse_scan,
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
        parse: Some(c::parse_rename),
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
        parse: Some(c::parse_renamenx),
    },
    keyed(
        "expire",
        -3,
        &["write", "fast"],
        KEYSPACE_WRITE_FAST,
        RW_UPDATE,
        c::parse_expire,
    ),
    keyed(
        "pexpire",
        -3,
        &["write", "fast"],
        KEYSPACE_WRITE_FAST,
        RW_UPDATE,
        c::parse_pexpire,
    ),
    keyed(
        "expireat",
        -3,
        &["write", "fast"],
        KEYSPACE_WRITE_FAST,
        RW_UPDATE,
        c::parse_expireat,
    ),
    keyed(
        "pexpireat",
        -3,
        &["write", "fast"],
        KEYSPACE_WRITE_FAST,
        RW_UPDATE,
        c::parse_pexpireat,
    ),
    CommandSpec {
        tips: &["nondeterministic_output"],
        ..keyed(
            "ttl",
            2,
            &["readonly", "fast"],
            KEYSPACE_READ_FAST,
            RO_ACCESS,
            c::parse_ttl,
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
            c::parse_pttl,
        )
    },
    keyed(
        "expiretime",
        2,
        &["readonly", "fast"],
        KEYSPACE_READ_FAST,
        RO_ACCESS,
        c::parse_expiretime,
    ),
    keyed(
        "pexpiretime",
        2,
        &["readonly", "fast"],
        KEYSPACE_READ_FAST,
        RO_ACCESS,
        c::parse_pexpiretime,
    ),
    keyed(
        "persist",
        2,
        &["write", "fast"],
        KEYSPACE_WRITE_FAST,
        RW_UPDATE,
        c::parse_persist,
    ),
];

static BY_NAME: LazyLock<HashMap<&'static str, &'static CommandSpec>> =
    LazyLock::new(|| COMMANDS.iter().map(|spec| (spec.name, spec)).collect());

/// Finds a top-level command by name, ignoring case.
pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    // Names are short ASCII; lower-case on the stack, not the heap.
    let mut buf = [0u8; 32];
    let lower = buf.get_mut(..name.len())?;
    for (dst, src) in lower.iter_mut().zip(name) {
        *dst = src.to_ascii_lowercase();
    }
    let name = std::str::from_utf8(lower).ok()?;
    BY_NAME.get(name).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_lower_case() {
        let mut seen = std::collections::HashSet::new();
        for spec in COMMANDS {
            assert!(seen.insert(spec.name), "duplicate {}", spec.name);
            assert_eq!(spec.name, spec.name.to_lowercase());
            for sub in spec.subcommands {
                assert!(sub.name.starts_with(&format!("{}|", spec.name)));
            }
        }
    }

    #[test]
    fn lookup_ignores_case() {
        assert_eq!(lookup(b"GeT").map(|s| s.name), Some("get"));
        assert!(lookup(b"nope").is_none());
        assert!(lookup(&[b'a'; 100]).is_none());
    }

    #[test]
    fn key_positions() {
        let pos = |name: &str, argc| {
            lookup(name.as_bytes())
                .unwrap()
                .key_positions(argc)
                .collect::<Vec<_>>()
        };
        assert_eq!(pos("get", 2), vec![1]);
        assert_eq!(pos("mset", 5), vec![1, 3]);
        assert_eq!(pos("del", 4), vec![1, 2, 3]);
        assert_eq!(pos("rename", 3), vec![1, 2]);
        assert_eq!(pos("set", 5), vec![1]);
        assert_eq!(pos("ping", 1), Vec::<usize>::new());
    }
}
