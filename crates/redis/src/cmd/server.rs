//! Server commands answered node-wide: INFO and DBSIZE.

use bytes::Bytes;

use crate::command::{Command, ParseResult};
use crate::table::*;

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
];

pub(crate) fn parse_info(args: &[Bytes]) -> ParseResult {
    Ok(Command::Info(args[1..].to_vec()))
}

pub(crate) fn parse_dbsize(_: &[Bytes]) -> ParseResult {
    Ok(Command::DbSize)
}
