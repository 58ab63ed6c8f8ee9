//! ACL: the command's table entries and parsing. The node's session
//! answers it (users live in the node, see [`crate::acl`]).

use bytes::Bytes;

use crate::command::{Command, ParseResult};
use crate::table::*;

/// What an ACL subcommand asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AclRequest {
    Cat(Option<Bytes>),
    DelUser(Vec<Bytes>),
    /// User, then the command and its arguments.
    DryRun(Bytes, Vec<Bytes>),
    GenPass(Option<Bytes>),
    GetUser(Bytes),
    Help,
    List,
    Load,
    /// A count, or RESET.
    Log(Option<Bytes>),
    Save,
    SetUser(Bytes, Vec<Bytes>),
    Users,
    WhoAmI,
}

const ACL_FLAGS: &[&str] = &["admin", "noscript", "loading", "stale"];
const ACL_OPEN_FLAGS: &[&str] = &["noscript", "loading", "stale"];

const fn sub(
    name: &'static str,
    arity: i32,
    flags: &'static [&'static str],
    parse: fn(&[Bytes]) -> ParseResult,
) -> CommandSpec {
    let acl: &'static [&'static str] = if flags.len() == 4 {
        ADMIN_SLOW_DANGEROUS
    } else {
        &["@slow"]
    };
    local(name, arity, flags, acl, NONE, Route::Local, parse)
}

/// The ACL command's table entry (subcommands in Redis's COMMAND order).
pub(crate) static COMMANDS: &[CommandSpec] = &[CommandSpec {
    name: "acl",
    arity: -2,
    flags: NONE,
    first_key: 0,
    last_key: 0,
    step: 0,
    acl: &["@slow"],
    tips: NONE,
    key_specs: &[],
    subcommands: &[
        sub("acl|list", 2, ACL_FLAGS, |_| acl(AclRequest::List)),
        sub("acl|dryrun", -4, ACL_FLAGS, |a| {
            acl(AclRequest::DryRun(a[2].clone(), a[3..].to_vec()))
        }),
        sub("acl|deluser", -3, ACL_FLAGS, |a| {
            acl(AclRequest::DelUser(a[2..].to_vec()))
        }),
        sub("acl|log", -2, ACL_FLAGS, parse_log),
        sub("acl|save", 2, ACL_FLAGS, |_| acl(AclRequest::Save)),
        sub("acl|load", 2, ACL_FLAGS, |_| acl(AclRequest::Load)),
        sub("acl|whoami", 2, ACL_OPEN_FLAGS, |_| acl(AclRequest::WhoAmI)),
        sub("acl|cat", -2, ACL_OPEN_FLAGS, parse_cat),
        sub("acl|setuser", -3, ACL_FLAGS, |a| {
            acl(AclRequest::SetUser(a[2].clone(), a[3..].to_vec()))
        }),
        local(
            "acl|help",
            2,
            &["loading", "stale"],
            &["@slow"],
            NONE,
            Route::Local,
            |_| acl(AclRequest::Help),
        ),
        sub("acl|genpass", -2, ACL_OPEN_FLAGS, parse_genpass),
        sub("acl|getuser", 3, ACL_FLAGS, |a| {
            acl(AclRequest::GetUser(a[2].clone()))
        }),
        sub("acl|users", 2, ACL_FLAGS, |_| acl(AclRequest::Users)),
    ],
    route: Route::Local,
    parse: None,
}];

fn acl(request: AclRequest) -> ParseResult {
    Ok(Command::Acl(request))
}

fn too_many(args: &[Bytes]) -> ParseResult {
    Err(crate::errors::subcommand_syntax(&args[0], &args[1]))
}

fn parse_log(args: &[Bytes]) -> ParseResult {
    match args.len() {
        2 => acl(AclRequest::Log(None)),
        3 => acl(AclRequest::Log(Some(args[2].clone()))),
        _ => too_many(args),
    }
}

fn parse_cat(args: &[Bytes]) -> ParseResult {
    match args.len() {
        2 => acl(AclRequest::Cat(None)),
        3 => acl(AclRequest::Cat(Some(args[2].clone()))),
        _ => too_many(args),
    }
}

fn parse_genpass(args: &[Bytes]) -> ParseResult {
    match args.len() {
        2 => acl(AclRequest::GenPass(None)),
        3 => acl(AclRequest::GenPass(Some(args[2].clone()))),
        _ => too_many(args),
    }
}
