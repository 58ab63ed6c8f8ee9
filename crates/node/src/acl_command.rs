//! The ACL command's subcommands, answered as Redis 7.0 answers them.

use bytes::Bytes;
use elastickv_redis::acl::{self, CATEGORIES, Denied};
use elastickv_redis::cmd::acl::AclRequest;
use elastickv_redis::command::resolve;
use elastickv_resp::Reply;
use rand::RngCore;

use crate::NodeState;
use crate::session::Session;

fn bulk(s: impl Into<Bytes>) -> Reply {
    Reply::Bulk(s.into())
}

/// ACL HELP's lines.
const HELP: &[&str] = &[
    "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CAT [<category>]",
    "    List all commands that belong to <category>, or all command categories",
    "    when no category is specified.",
    "DELUSER <username> [<username> ...]",
    "    Delete a list of users.",
    "DRYRUN <username> <command> [<arg> ...]",
    "    Returns whether the user can execute the given command without executing the command.",
    "GETUSER <username>",
    "    Get the user's details.",
    "GENPASS [<bits>]",
    "    Generate a secure 256-bit user password. The optional `bits` argument can",
    "    be used to specify a different size.",
    "LIST",
    "    Show users details in config file format.",
    "LOAD",
    "    Reload users from the ACL file.",
    "LOG [<count> | RESET]",
    "    Show the ACL log entries.",
    "SAVE",
    "    Save the current config to the ACL file.",
    "SETUSER <username> <attribute> [<attribute> ...]",
    "    Create or modify a user with the specified attributes.",
    "USERS",
    "    List all the registered usernames.",
    "WHOAMI",
    "    Return the current connection username.",
    "HELP",
    "    Prints this help.",
];

/// Answers one ACL subcommand for `session`.
pub fn run(session: &mut Session, state: &NodeState, request: AclRequest) -> Reply {
    match request {
        AclRequest::SetUser(name, rules) => {
            match state.acl.modify(|users| users.set_user(&name, &rules)) {
                Ok(()) => Reply::ok(),
                Err(e) => Reply::error(format!("ERR {e}")),
            }
        }
        AclRequest::DelUser(names) => match state.acl.modify(|users| users.delete(&names)) {
            Ok(deleted) => {
                state.clients.kill_users(&names);
                Reply::Integer(i64::try_from(deleted).unwrap_or(i64::MAX))
            }
            Err(e) => Reply::error(format!("ERR {e}")),
        },
        AclRequest::GetUser(name) => get_user(state, &name),
        AclRequest::List => Reply::Array(
            state
                .acl
                .users()
                .iter()
                .map(|u| {
                    bulk(format!(
                        "user {} {}",
                        String::from_utf8_lossy(&u.name),
                        u.describe()
                    ))
                })
                .collect(),
        ),
        AclRequest::Users => Reply::Array(
            state
                .acl
                .users()
                .names()
                .map(|n| bulk(Bytes::copy_from_slice(n)))
                .collect(),
        ),
        AclRequest::WhoAmI => bulk(session.user.clone()),
        AclRequest::Load => match state.acl.reload() {
            Ok(()) => Reply::ok(),
            Err(e) => Reply::error(format!("ERR {e}")),
        },
        AclRequest::Save => match state.acl.save() {
            Ok(()) => Reply::ok(),
            Err(e) => Reply::error(format!("ERR {e}")),
        },
        AclRequest::Cat(None) => Reply::Array(CATEGORIES.iter().map(|c| bulk(*c)).collect()),
        AclRequest::Cat(Some(category)) => {
            let name = String::from_utf8_lossy(&category);
            match acl::category_commands(&name) {
                Some(commands) => Reply::Array(commands.into_iter().map(bulk).collect()),
                None => Reply::error(format!(
                    "ERR Unknown category '{}'",
                    name.chars().take(128).collect::<String>()
                )),
            }
        }
        AclRequest::GenPass(bits) => gen_pass(bits.as_deref()),
        AclRequest::Log(None) => log(state, 10),
        AclRequest::Log(Some(arg)) if arg.eq_ignore_ascii_case(b"reset") => {
            state.acl.reset_log();
            Reply::ok()
        }
        AclRequest::Log(Some(arg)) => match elastickv_redis::number::parse_i64(&arg) {
            Some(count) => log(state, usize::try_from(count.max(0)).unwrap_or(usize::MAX)),
            None => Reply::static_error(elastickv_redis::errors::NOT_INTEGER),
        },
        AclRequest::DryRun(user, command) => dry_run(state, &user, &command),
        AclRequest::Help => Reply::Array(HELP.iter().map(|l| Reply::simple(l)).collect()),
    }
}

fn get_user(state: &NodeState, name: &[u8]) -> Reply {
    let users = state.acl.users();
    let Some(user) = users.get(name) else {
        return Reply::Null;
    };
    let selector = |[commands, keys, channels]: [String; 3]| {
        vec![
            (bulk("commands"), bulk(commands)),
            (bulk("keys"), bulk(keys)),
            (bulk("channels"), bulk(channels)),
        ]
    };
    let mut selectors = user.selector_descriptions().into_iter();
    let mut fields = vec![
        (
            bulk("flags"),
            Reply::Set(user.flags().into_iter().map(bulk).collect()),
        ),
        (
            bulk("passwords"),
            Reply::Array(user.passwords().iter().map(|p| bulk(p.clone())).collect()),
        ),
    ];
    if let Some(root) = selectors.next() {
        fields.extend(selector(root));
    }
    fields.push((
        bulk("selectors"),
        Reply::Array(selectors.map(|s| Reply::Map(selector(s))).collect()),
    ));
    Reply::Map(fields)
}

fn gen_pass(bits: Option<&[u8]>) -> Reply {
    const MAX_BITS: i64 = 4096;
    let bits = match bits {
        None => 256,
        Some(raw) => match elastickv_redis::number::parse_i64(raw) {
            Some(bits) => bits,
            None => return Reply::static_error(elastickv_redis::errors::NOT_INTEGER),
        },
    };
    if bits <= 0 || bits > MAX_BITS {
        return Reply::error(format!(
            "ERR ACL GENPASS argument must be the number of bits for the output password, a \
             positive number up to {MAX_BITS}"
        ));
    }
    let chars = usize::try_from((bits + 3) / 4).unwrap_or(64);
    let mut random = vec![0u8; chars.div_ceil(2)];
    rand::rngs::OsRng.fill_bytes(&mut random);
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    bulk(hex[..chars].to_string())
}

fn log(state: &NodeState, count: usize) -> Reply {
    let now = std::time::Instant::now();
    Reply::Array(
        state
            .acl
            .log_entries(count)
            .into_iter()
            .map(|e| {
                Reply::Map(vec![
                    (bulk("count"), Reply::Integer(e.count as i64)),
                    (bulk("reason"), bulk(e.reason)),
                    (bulk("context"), bulk(e.context)),
                    (bulk("object"), Reply::Bulk(e.object)),
                    (bulk("username"), Reply::Bulk(e.username)),
                    (
                        bulk("age-seconds"),
                        Reply::Double(elastickv_redis::number::format_score(
                            now.duration_since(e.at).as_millis() as f64 / 1000.0,
                        )),
                    ),
                    (bulk("client-info"), bulk(e.client_info)),
                ])
            })
            .collect(),
    )
}

fn dry_run(state: &NodeState, user: &[u8], command: &[Bytes]) -> Reply {
    let users = state.acl.users();
    let Some(user_record) = users.get(user) else {
        return Reply::error(format!(
            "ERR User '{}' not found",
            String::from_utf8_lossy(user)
        ));
    };
    let spec = match resolve(command) {
        Ok(spec) => spec,
        Err(reply) => {
            let text = reply_text(&reply);
            return if text.contains("wrong number of arguments") {
                reply
            } else {
                Reply::error(format!(
                    "ERR Command '{}' not found",
                    String::from_utf8_lossy(&command[0])
                ))
            };
        }
    };
    match user_record.check(spec, command) {
        Ok(()) => Reply::ok(),
        Err(Denied::Command) => bulk(format!(
            "This user has no permissions to run the '{}' command",
            spec.name
        )),
        Err(Denied::Key(pos)) => bulk(format!(
            "This user has no permissions to access the '{}' key",
            String::from_utf8_lossy(&command[pos])
        )),
        Err(Denied::Channel(pos)) => bulk(format!(
            "This user has no permissions to access the '{}' channel",
            String::from_utf8_lossy(&command[pos])
        )),
    }
}

fn reply_text(reply: &Reply) -> String {
    match reply {
        Reply::Error(text) => String::from_utf8_lossy(text).into_owned(),
        _ => String::new(),
    }
}
