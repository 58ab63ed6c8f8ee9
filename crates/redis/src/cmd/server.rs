//! Server commands answered node-wide: INFO, DBSIZE, TIME, LASTSAVE,
//! SLOWLOG and LATENCY.

use bytes::Bytes;
use elastickv_resp::Reply;

use crate::command::{Command, ParseResult, int};
use crate::table::*;

const ADMIN_LOADING_STALE: &[&str] = &["admin", "loading", "stale"];
const ADMIN_NOSCRIPT_LOADING_STALE: &[&str] = &["admin", "noscript", "loading", "stale"];
const NONDETERMINISTIC: &[&str] = &["nondeterministic_output"];
const ALL_NODES_SPECIAL: &[&str] = &[
    "nondeterministic_output",
    "request_policy:all_nodes",
    "response_policy:special",
];

/// A container command (SLOWLOG, LATENCY) whose subcommands are listed.
const fn container(name: &'static str, subcommands: &'static [CommandSpec]) -> CommandSpec {
    CommandSpec {
        name,
        arity: -2,
        flags: NONE,
        first_key: 0,
        last_key: 0,
        step: 0,
        acl: &["@slow"],
        tips: NONE,
        key_specs: &[],
        subcommands,
        route: Route::Local,
        parse: None,
    }
}

/// The server commands' table entries.
pub(crate) static COMMANDS: &[CommandSpec] = &[
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
        parse_info,
    ),
    local(
        "dbsize",
        1,
        &["readonly", "fast"],
        KEYSPACE_READ_FAST,
        &["request_policy:all_shards", "response_policy:agg_sum"],
        Route::Server,
        parse_dbsize,
    ),
    local(
        "time",
        1,
        &["loading", "stale", "fast"],
        &["@fast"],
        NONDETERMINISTIC,
        Route::Local,
        parse_time,
    ),
    local(
        "lastsave",
        1,
        &["loading", "stale", "fast"],
        &["@admin", "@fast", "@dangerous"],
        NONDETERMINISTIC,
        Route::Local,
        parse_lastsave,
    ),
    local(
        "wait",
        3,
        &["noscript"],
        &["@slow", "@connection"],
        &["request_policy:all_shards", "response_policy:agg_min"],
        Route::Local,
        parse_wait,
    ),
    container(
        "slowlog",
        &[
            local(
                "slowlog|len",
                2,
                ADMIN_LOADING_STALE,
                ADMIN_SLOW_DANGEROUS,
                &[
                    "request_policy:all_nodes",
                    "response_policy:agg_sum",
                    "nondeterministic_output",
                ],
                Route::Local,
                parse_slowlog_len,
            ),
            local(
                "slowlog|help",
                2,
                LOADING_STALE,
                &["@slow"],
                NONE,
                Route::Local,
                parse_slowlog_help,
            ),
            local(
                "slowlog|get",
                -2,
                ADMIN_LOADING_STALE,
                ADMIN_SLOW_DANGEROUS,
                &["request_policy:all_nodes", "nondeterministic_output"],
                Route::Local,
                parse_slowlog_get,
            ),
            local(
                "slowlog|reset",
                2,
                ADMIN_LOADING_STALE,
                ADMIN_SLOW_DANGEROUS,
                &["request_policy:all_nodes", "response_policy:all_succeeded"],
                Route::Local,
                parse_slowlog_reset,
            ),
        ],
    ),
    container(
        "latency",
        &[
            local(
                "latency|graph",
                3,
                ADMIN_NOSCRIPT_LOADING_STALE,
                ADMIN_SLOW_DANGEROUS,
                ALL_NODES_SPECIAL,
                Route::Local,
                parse_latency_graph,
            ),
            local(
                "latency|doctor",
                2,
                ADMIN_NOSCRIPT_LOADING_STALE,
                ADMIN_SLOW_DANGEROUS,
                ALL_NODES_SPECIAL,
                Route::Local,
                parse_latency_doctor,
            ),
            local(
                "latency|reset",
                -2,
                ADMIN_NOSCRIPT_LOADING_STALE,
                ADMIN_SLOW_DANGEROUS,
                &["request_policy:all_nodes", "response_policy:all_succeeded"],
                Route::Local,
                parse_latency_reset,
            ),
            local(
                "latency|help",
                2,
                LOADING_STALE,
                &["@slow"],
                NONE,
                Route::Local,
                parse_latency_help,
            ),
            local(
                "latency|latest",
                2,
                ADMIN_NOSCRIPT_LOADING_STALE,
                ADMIN_SLOW_DANGEROUS,
                ALL_NODES_SPECIAL,
                Route::Local,
                parse_latency_latest,
            ),
            local(
                "latency|history",
                3,
                ADMIN_NOSCRIPT_LOADING_STALE,
                ADMIN_SLOW_DANGEROUS,
                ALL_NODES_SPECIAL,
                Route::Local,
                parse_latency_history,
            ),
        ],
    ),
];

pub(crate) fn parse_info(args: &[Bytes]) -> ParseResult {
    Ok(Command::Info(args[1..].to_vec()))
}

pub(crate) fn parse_dbsize(_: &[Bytes]) -> ParseResult {
    Ok(Command::DbSize)
}

pub(crate) fn parse_time(_: &[Bytes]) -> ParseResult {
    Ok(Command::Time)
}

pub(crate) fn parse_lastsave(_: &[Bytes]) -> ParseResult {
    Ok(Command::LastSave)
}

/// WAIT numreplicas timeout: a negative count waits for none; the
/// timeout is Redis's (`getTimeoutFromObjectOrReply`).
pub(crate) fn parse_wait(args: &[Bytes]) -> ParseResult {
    let replicas = int(&args[1])?;
    let timeout = crate::number::parse_i64(&args[2])
        .ok_or_else(|| Reply::static_error("ERR timeout is not an integer or out of range"))?;
    if timeout < 0 {
        return Err(Reply::static_error("ERR timeout is negative"));
    }
    Ok(Command::Wait {
        replicas: u64::try_from(replicas).unwrap_or(0),
        timeout_ms: timeout.unsigned_abs(),
    })
}

pub(crate) fn parse_slowlog_len(_: &[Bytes]) -> ParseResult {
    Ok(Command::SlowlogLen)
}

pub(crate) fn parse_slowlog_reset(_: &[Bytes]) -> ParseResult {
    Ok(Command::SlowlogReset)
}

/// SLOWLOG GET [count]: 10 by default, -1 for all.
pub(crate) fn parse_slowlog_get(args: &[Bytes]) -> ParseResult {
    let count = match args.len() {
        2 => 10,
        3 => match int(&args[2]) {
            Ok(n) if n >= -1 => n,
            _ => {
                return Err(Reply::static_error(
                    "ERR count should be greater than or equal to -1",
                ));
            }
        },
        _ => return Err(crate::errors::subcommand_syntax(&args[0], &args[1])),
    };
    Ok(Command::SlowlogGet(count))
}

pub(crate) fn parse_slowlog_help(_: &[Bytes]) -> ParseResult {
    Ok(Command::Help {
        container: "slowlog",
        lines: &[
            "GET [<count>]",
            "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
            "    Entries are made of:",
            "    id, timestamp, time in microseconds, arguments array, client IP and port,",
            "    client name",
            "LEN",
            "    Return the length of the slowlog.",
            "RESET",
            "    Reset the slowlog.",
        ],
    })
}

pub(crate) fn parse_latency_graph(args: &[Bytes]) -> ParseResult {
    Ok(Command::LatencyGraph(args[2].clone()))
}

pub(crate) fn parse_latency_doctor(_: &[Bytes]) -> ParseResult {
    Ok(Command::LatencyDoctor)
}

pub(crate) fn parse_latency_reset(_: &[Bytes]) -> ParseResult {
    Ok(Command::LatencyReset)
}

pub(crate) fn parse_latency_latest(_: &[Bytes]) -> ParseResult {
    Ok(Command::LatencyLatest)
}

pub(crate) fn parse_latency_history(_: &[Bytes]) -> ParseResult {
    Ok(Command::LatencyHistory)
}

pub(crate) fn parse_latency_help(_: &[Bytes]) -> ParseResult {
    Ok(Command::Help {
        container: "latency",
        lines: &[
            "DOCTOR",
            "    Return a human readable latency analysis report.",
            "GRAPH <event>",
            "    Return an ASCII latency graph for the <event> class.",
            "HISTORY <event>",
            "    Return time-latency samples for the <event> class.",
            "LATEST",
            "    Return the latest latency samples for all events.",
            "RESET [<event> ...]",
            "    Reset latency data of one or more <event> classes.",
            "    (default: reset all data for all event classes)",
            "HISTOGRAM [COMMAND ...]",
            "    Return a cumulative distribution of latencies in the format of a histogram for the specified command names.",
            "    If no commands are specified then all histograms are replied.",
        ],
    })
}
