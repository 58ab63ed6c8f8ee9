//! Pub/sub: SUBSCRIBE, UNSUBSCRIBE, PSUBSCRIBE, PUNSUBSCRIBE, PUBLISH,
//! SSUBSCRIBE, SUNSUBSCRIBE, SPUBLISH and PUBSUB's introspection: table
//! entries and parsing.
//!
//! A connection keeps its subscriptions (crates/node: `pubsub`). PUBLISH
//! goes through a shard's raft log as a `Publish` entry that changes no
//! data: every node applies every shard's log, and each hands the message
//! to its own subscribers, so a message published on any node reaches the
//! subscribers of every node, at most once, in log order.

use bytes::Bytes;
use elastickv_resp::Reply;

use crate::command::{Command, ParseResult};
use crate::errors;
use crate::table::*;

const PUBSUB_FLAGS: &[&str] = &["pubsub", "noscript", "loading", "stale"];
const PUBSUB_SLOW: &[&str] = &["@pubsub", "@slow"];
const NOT_KEY_ALL: &[KeySpec] = &[ks(&["not_key"], 1, -1, 1)];

const fn subscribing(
    name: &'static str,
    arity: i32,
    parse: fn(&[Bytes]) -> ParseResult,
) -> CommandSpec {
    local(
        name,
        arity,
        PUBSUB_FLAGS,
        PUBSUB_SLOW,
        NONE,
        Route::Local,
        parse,
    )
}

const fn sharded(
    name: &'static str,
    arity: i32,
    flags: &'static [&'static str],
    acl: &'static [&'static str],
    last_key: i32,
    key_specs: &'static [KeySpec],
    parse: fn(&[Bytes]) -> ParseResult,
) -> CommandSpec {
    CommandSpec {
        name,
        arity,
        flags,
        first_key: 1,
        last_key,
        step: 1,
        acl,
        tips: NONE,
        key_specs,
        subcommands: &[],
        route: Route::Local,
        parse: Some(parse),
    }
}

const fn introspection(
    name: &'static str,
    arity: i32,
    parse: fn(&[Bytes]) -> ParseResult,
) -> CommandSpec {
    local(
        name,
        arity,
        &["pubsub", "loading", "stale"],
        PUBSUB_SLOW,
        NONE,
        Route::Local,
        parse,
    )
}

/// The pub/sub commands' table entries.
pub(crate) static COMMANDS: &[CommandSpec] = &[
    subscribing("subscribe", -2, parse_subscribe),
    subscribing("unsubscribe", -1, parse_unsubscribe),
    subscribing("psubscribe", -2, parse_psubscribe),
    subscribing("punsubscribe", -1, parse_punsubscribe),
    local(
        "publish",
        3,
        &["pubsub", "loading", "stale", "fast"],
        &["@pubsub", "@fast"],
        NONE,
        Route::Local,
        parse_publish,
    ),
    sharded(
        "ssubscribe",
        -2,
        PUBSUB_FLAGS,
        PUBSUB_SLOW,
        -1,
        NOT_KEY_ALL,
        parse_ssubscribe,
    ),
    sharded(
        "sunsubscribe",
        -1,
        PUBSUB_FLAGS,
        PUBSUB_SLOW,
        -1,
        NOT_KEY_ALL,
        parse_sunsubscribe,
    ),
    sharded(
        "spublish",
        3,
        &["pubsub", "loading", "stale", "fast"],
        &["@pubsub", "@fast"],
        1,
        &[ks(&["not_key"], 1, 0, 1)],
        parse_spublish,
    ),
    CommandSpec {
        name: "pubsub",
        arity: -2,
        flags: NONE,
        first_key: 0,
        last_key: 0,
        step: 0,
        acl: &["@slow"],
        tips: NONE,
        key_specs: &[],
        subcommands: &[
            introspection("pubsub|channels", -2, parse_pubsub_channels),
            introspection("pubsub|numsub", -2, parse_pubsub_numsub),
            introspection("pubsub|numpat", 2, parse_pubsub_numpat),
            introspection("pubsub|shardchannels", -2, parse_pubsub_shardchannels),
            introspection("pubsub|shardnumsub", -2, parse_pubsub_shardnumsub),
            local(
                "pubsub|help",
                2,
                LOADING_STALE,
                &["@slow"],
                NONE,
                Route::Local,
                parse_pubsub_help,
            ),
        ],
        route: Route::Local,
        parse: None,
    },
];

/// Which kind of subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// SUBSCRIBE: a channel.
    Channel,
    /// PSUBSCRIBE: a glob pattern.
    Pattern,
    /// SSUBSCRIBE: a shard channel.
    Shard,
}

pub(crate) fn parse_subscribe(args: &[Bytes]) -> ParseResult {
    Ok(Command::Subscribe(Kind::Channel, args[1..].to_vec()))
}

pub(crate) fn parse_psubscribe(args: &[Bytes]) -> ParseResult {
    Ok(Command::Subscribe(Kind::Pattern, args[1..].to_vec()))
}

pub(crate) fn parse_ssubscribe(args: &[Bytes]) -> ParseResult {
    Ok(Command::Subscribe(Kind::Shard, args[1..].to_vec()))
}

pub(crate) fn parse_unsubscribe(args: &[Bytes]) -> ParseResult {
    Ok(Command::Unsubscribe(Kind::Channel, args[1..].to_vec()))
}

pub(crate) fn parse_punsubscribe(args: &[Bytes]) -> ParseResult {
    Ok(Command::Unsubscribe(Kind::Pattern, args[1..].to_vec()))
}

pub(crate) fn parse_sunsubscribe(args: &[Bytes]) -> ParseResult {
    Ok(Command::Unsubscribe(Kind::Shard, args[1..].to_vec()))
}

pub(crate) fn parse_publish(args: &[Bytes]) -> ParseResult {
    Ok(Command::Publish {
        channel: args[1].clone(),
        message: args[2].clone(),
        sharded: false,
    })
}

pub(crate) fn parse_spublish(args: &[Bytes]) -> ParseResult {
    Ok(Command::Publish {
        channel: args[1].clone(),
        message: args[2].clone(),
        sharded: true,
    })
}

/// CHANNELS and SHARDCHANNELS take one pattern at most.
fn optional_pattern(args: &[Bytes]) -> Result<Option<Bytes>, Reply> {
    match args.len() {
        2 => Ok(None),
        3 => Ok(Some(args[2].clone())),
        _ => Err(errors::subcommand_syntax(&args[0], &args[1])),
    }
}

pub(crate) fn parse_pubsub_channels(args: &[Bytes]) -> ParseResult {
    Ok(Command::PubsubChannels(
        Kind::Channel,
        optional_pattern(args)?,
    ))
}

pub(crate) fn parse_pubsub_shardchannels(args: &[Bytes]) -> ParseResult {
    Ok(Command::PubsubChannels(
        Kind::Shard,
        optional_pattern(args)?,
    ))
}

pub(crate) fn parse_pubsub_numsub(args: &[Bytes]) -> ParseResult {
    Ok(Command::PubsubNumSub(Kind::Channel, args[2..].to_vec()))
}

pub(crate) fn parse_pubsub_shardnumsub(args: &[Bytes]) -> ParseResult {
    Ok(Command::PubsubNumSub(Kind::Shard, args[2..].to_vec()))
}

pub(crate) fn parse_pubsub_numpat(_: &[Bytes]) -> ParseResult {
    Ok(Command::PubsubNumPat)
}

pub(crate) fn parse_pubsub_help(_: &[Bytes]) -> ParseResult {
    Ok(Command::Help {
        container: "pubsub",
        lines: &[
            "CHANNELS [<pattern>]",
            "    Return the currently active channels matching a <pattern> (default: '*').",
            "NUMPAT",
            "    Return number of subscriptions to patterns.",
            "NUMSUB [<channel> ...]",
            "    Return the number of subscribers for the specified channels, excluding",
            "    pattern subscriptions(default: no channels).",
            "SHARDCHANNELS [<pattern>]",
            "    Return the currently active shard level channels matching a <pattern> (default: '*').",
            "SHARDNUMSUB [<shardchannel> ...]",
            "    Return the number of subscribers for the specified shard level channel(s)",
        ],
    })
}

/// PUBLISH's (or SPUBLISH's) replicated write.
pub fn publish_write(channel: Bytes, message: Bytes, sharded: bool) -> crate::log::Write {
    use crate::log;
    log::Write {
        family: Some(log::write::Family::Keys(log::KeyWrite {
            command: Some(log::key_write::Command::Publish(log::Publish {
                channel,
                message,
                sharded,
            })),
        })),
    }
}
