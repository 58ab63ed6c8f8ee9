//! MULTI, EXEC, DISCARD, WATCH and UNWATCH: table entries and parsing.
//!
//! A connection keeps its transaction (crates/node: `transaction`): MULTI
//! starts queueing, WATCH records each key's revision as a linearizable
//! read sees it, and EXEC proposes the queued commands of the shard as one
//! `Transaction` entry of its raft log. Applying that entry checks the
//! watched revisions and runs the commands together, or not at all
//! ([`crate::exec::execute_transaction`]), so the outcome is decided in log
//! order, the same on every replica.

use bytes::Bytes;

use crate::command::{Command, ParseResult};
use crate::table::*;

const FAST_TRANSACTION: &[&str] = &["@fast", "@transaction"];
const FLAGS: &[&str] = &["noscript", "loading", "stale", "fast", "allow_busy"];

/// The transaction commands' table entries.
pub(crate) static COMMANDS: &[CommandSpec] = &[
    local(
        "multi",
        1,
        FLAGS,
        FAST_TRANSACTION,
        NONE,
        Route::Local,
        parse_multi,
    ),
    local(
        "exec",
        1,
        &["noscript", "loading", "stale", "skip_slowlog"],
        &["@slow", "@transaction"],
        NONE,
        Route::Local,
        parse_exec,
    ),
    local(
        "discard",
        1,
        FLAGS,
        FAST_TRANSACTION,
        NONE,
        Route::Local,
        parse_discard,
    ),
    CommandSpec {
        name: "watch",
        arity: -2,
        flags: FLAGS,
        first_key: 1,
        last_key: -1,
        step: 1,
        acl: FAST_TRANSACTION,
        tips: NONE,
        key_specs: &[ks(&["RO"], 1, -1, 1)],
        subcommands: &[],
        route: Route::Local,
        parse: Some(parse_watch),
    },
    local(
        "unwatch",
        1,
        FLAGS,
        FAST_TRANSACTION,
        NONE,
        Route::Local,
        parse_unwatch,
    ),
];

pub(crate) fn parse_multi(_: &[Bytes]) -> ParseResult {
    Ok(Command::Multi)
}

pub(crate) fn parse_exec(_: &[Bytes]) -> ParseResult {
    Ok(Command::Exec)
}

pub(crate) fn parse_discard(_: &[Bytes]) -> ParseResult {
    Ok(Command::Discard)
}

pub(crate) fn parse_watch(args: &[Bytes]) -> ParseResult {
    Ok(Command::Watch(args[1..].to_vec()))
}

pub(crate) fn parse_unwatch(_: &[Bytes]) -> ParseResult {
    Ok(Command::Unwatch)
}
