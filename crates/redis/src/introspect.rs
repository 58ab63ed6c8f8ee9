//! COMMAND's replies, generated from the command table in Redis 7.0's
//! layout (flags, categories, tips, key specs and subcommands are sets of
//! status or bulk strings; key specs are maps).

use bytes::Bytes;
use elastickv_resp::Reply;

use crate::table::{COMMANDS, CommandSpec, FindKeys, KeySpec, lookup};

fn status(s: &'static str) -> Reply {
    Reply::simple(s)
}

fn bulk(s: &'static str) -> Reply {
    Reply::Bulk(Bytes::from_static(s.as_bytes()))
}

fn key_spec(spec: &KeySpec) -> Reply {
    let mut map = Vec::with_capacity(4);
    if let Some(notes) = spec.notes {
        map.push((bulk("notes"), bulk(notes)));
    }
    map.push((
        bulk("flags"),
        Reply::Set(spec.flags.iter().copied().map(status).collect()),
    ));
    if let FindKeys::Unknown { .. } = spec.find {
        let unknown = || {
            Reply::Map(vec![
                (bulk("type"), bulk("unknown")),
                (bulk("spec"), Reply::Map(Vec::new())),
            ])
        };
        map.push((bulk("begin_search"), unknown()));
        map.push((bulk("find_keys"), unknown()));
        return Reply::Map(map);
    }
    map.push((
        bulk("begin_search"),
        Reply::Map(vec![
            (bulk("type"), bulk("index")),
            (
                bulk("spec"),
                Reply::Map(vec![(bulk("index"), Reply::Integer(spec.begin_index))]),
            ),
        ]),
    ));
    let (kind, find) = match spec.find {
        FindKeys::Unknown { .. } => ("unknown", Vec::new()),
        FindKeys::Range { last_key, key_step } => (
            "range",
            vec![
                (bulk("lastkey"), Reply::Integer(last_key)),
                (bulk("keystep"), Reply::Integer(key_step)),
                (bulk("limit"), Reply::Integer(0)),
            ],
        ),
        FindKeys::Keynum {
            keynum_index,
            first_key,
            key_step,
        } => (
            "keynum",
            vec![
                (bulk("keynumidx"), Reply::Integer(keynum_index)),
                (bulk("firstkey"), Reply::Integer(first_key)),
                (bulk("keystep"), Reply::Integer(key_step)),
            ],
        ),
    };
    map.push((
        bulk("find_keys"),
        Reply::Map(vec![
            (bulk("type"), bulk(kind)),
            (bulk("spec"), Reply::Map(find)),
        ]),
    ));
    Reply::Map(map)
}

/// One COMMAND INFO entry.
pub fn command_info(spec: &CommandSpec) -> Reply {
    Reply::Array(vec![
        bulk(spec.name),
        Reply::Integer(i64::from(spec.arity)),
        Reply::Set(spec.flags.iter().copied().map(status).collect()),
        Reply::Integer(i64::from(spec.first_key)),
        Reply::Integer(i64::from(spec.last_key)),
        Reply::Integer(i64::from(spec.step)),
        Reply::Set(spec.acl.iter().copied().map(status).collect()),
        Reply::Set(spec.tips.iter().copied().map(bulk).collect()),
        Reply::Set(spec.key_specs.iter().map(key_spec).collect()),
        Reply::Set(spec.subcommands.iter().map(command_info).collect()),
    ])
}

/// `COMMAND`: every command.
pub fn all_commands() -> Reply {
    Reply::Array(COMMANDS.iter().map(|spec| command_info(spec)).collect())
}

/// `COMMAND COUNT`.
pub fn command_count() -> Reply {
    Reply::Integer(COMMANDS.len() as i64)
}

/// `COMMAND INFO name...`: an entry per name, null for unknown ones.
/// Without names, every command.
pub fn command_info_for(names: &[Bytes]) -> Reply {
    if names.is_empty() {
        return all_commands();
    }
    Reply::Array(
        names
            .iter()
            .map(|name| find(name).map_or(Reply::Null, command_info))
            .collect(),
    )
}

/// Finds a command or a `container|sub` subcommand.
fn find(name: &[u8]) -> Option<&'static CommandSpec> {
    match name.iter().position(|&b| b == b'|') {
        None => lookup(name),
        Some(bar) => lookup(&name[..bar])?
            .subcommands
            .iter()
            .find(|s| s.name.as_bytes().eq_ignore_ascii_case(name)),
    }
}

/// `COMMAND LIST`: every name, subcommands included.
pub fn command_list() -> Reply {
    let mut names = Vec::new();
    for spec in COMMANDS.iter() {
        names.push(bulk(spec.name));
        names.extend(spec.subcommands.iter().map(|s| bulk(s.name)));
    }
    Reply::Array(names)
}

/// `COMMAND DOCS`: this server ships no command documentation, so the
/// map is empty; clients (redis-cli) fall back to their own help.
pub fn command_docs() -> Reply {
    Reply::Map(Vec::new())
}

/// The `HELP` text of a container command, in Redis's layout.
pub fn help(container: &str, lines: &[&str]) -> Reply {
    let mut out = vec![Reply::Simple(Bytes::from(format!(
        "{} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        container.to_uppercase()
    )))];
    out.extend(
        lines
            .iter()
            .map(|l| Reply::Simple(Bytes::from(l.to_string()))),
    );
    out.push(Reply::simple("HELP"));
    out.push(Reply::simple("    Prints this help."));
    Reply::Array(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use elastickv_resp::ProtocolVersion;

    fn resp3(reply: &Reply) -> Vec<u8> {
        let mut out = BytesMut::new();
        reply.encode(ProtocolVersion::Resp3, &mut out);
        out.to_vec()
    }

    /// Byte for byte what Redis 7.0.15 answers to `COMMAND INFO mget` in
    /// RESP3.
    #[test]
    fn mget_info_matches_redis() {
        let expected = b"*1\r\n*10\r\n$4\r\nmget\r\n:-2\r\n~2\r\n+readonly\r\n+fast\r\n:1\r\n:-1\r\n:1\r\n~3\r\n+@read\r\n+@string\r\n+@fast\r\n~1\r\n$26\r\nrequest_policy:multi_shard\r\n~1\r\n%3\r\n$5\r\nflags\r\n~2\r\n+RO\r\n+access\r\n$12\r\nbegin_search\r\n%2\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec\r\n%1\r\n$5\r\nindex\r\n:1\r\n$9\r\nfind_keys\r\n%2\r\n$4\r\ntype\r\n$5\r\nrange\r\n$4\r\nspec\r\n%3\r\n$7\r\nlastkey\r\n:-1\r\n$7\r\nkeystep\r\n:1\r\n$5\r\nlimit\r\n:0\r\n~0\r\n";
        assert_eq!(
            resp3(&command_info_for(&[Bytes::from_static(b"mget")])),
            expected.to_vec()
        );
    }

    #[test]
    fn unknown_names_are_null_and_subcommands_are_found() {
        let reply = command_info_for(&[
            Bytes::from_static(b"nosuch"),
            Bytes::from_static(b"CLIENT|ID"),
        ]);
        let Reply::Array(items) = reply else { panic!() };
        assert_eq!(items[0], Reply::Null);
        assert!(matches!(&items[1], Reply::Array(fields) if fields[0] == bulk("client|id")));
    }
}
