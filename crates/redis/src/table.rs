//! The command table: the one list of commands this server knows, with
//! everything about each one (arity, flags, key positions, ACL categories,
//! tips, key specs as Redis 7.0 reports them, how it is routed, and its
//! parser). COMMAND, routing and dispatch all read from here.

use std::collections::HashMap;
use std::sync::LazyLock;

use bytes::Bytes;

use crate::cmd;
use crate::command::ParseResult;

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

/// A key specification: keys start at argument `begin_index`, and
/// `find` says which follow.
#[derive(Debug)]
pub struct KeySpec {
    pub notes: Option<&'static str>,
    pub flags: &'static [&'static str],
    pub begin_index: i64,
    pub find: FindKeys,
}

/// How the keys after a key spec's beginning are found, as Redis 7.0
/// describes them.
#[derive(Debug, Clone, Copy)]
pub enum FindKeys {
    /// Up to `last_key` (relative to the beginning; negative counts from
    /// the end), every `key_step`.
    Range { last_key: i64, key_step: i64 },
    /// The argument at `keynum_index` (relative to the beginning) says how
    /// many keys follow, starting at `first_key`, every `key_step`
    /// (SINTERCARD, ZUNION, LMPOP...).
    Keynum {
        keynum_index: i64,
        first_key: i64,
        key_step: i64,
    },
    /// Keys Redis cannot locate from the arguments' positions alone
    /// (SORT's BY, GET and STORE): COMMAND INFO says "unknown", and
    /// `locate` finds what routing needs.
    Unknown { locate: fn(&[Bytes]) -> Vec<usize> },
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

    /// Redis's hidden `may_replicate` flag (COMMAND does not list it): a
    /// command that is not a write but may propagate one, refused in
    /// read-only scripts like a write.
    pub fn may_replicate(&self) -> bool {
        matches!(
            self.name,
            "eval" | "evalsha" | "fcall" | "pfcount" | "publish" | "spublish"
        )
    }

    /// The part after `|` of a subcommand's name.
    pub fn subcommand_name(&self) -> &'static str {
        self.name.rsplit('|').next().unwrap_or(self.name)
    }

    /// Argument positions of the keys in `args`: from first/last/step, or
    /// for a command with movable keys from its key specs (a number of
    /// keys that is not a valid count finds none: parsing refuses it).
    pub fn key_positions(&self, args: &[Bytes]) -> Vec<usize> {
        let argc = args.len();
        // Keys counted by an argument (SINTERCARD's, ZUNIONSTORE's
        // sources) come from their key specs.
        let mut positions: Vec<usize> = self
            .key_specs
            .iter()
            .flat_map(|spec| spec.keynum_positions(args))
            .collect();
        if self.first_key > 0 {
            let first = self.first_key as usize;
            let step = self.step.max(1) as usize;
            let last = if self.last_key < 0 {
                argc as i64 + i64::from(self.last_key)
            } else {
                i64::from(self.last_key)
            };
            let last = usize::try_from(last)
                .unwrap_or(0)
                .min(argc.saturating_sub(1));
            positions.extend((first..=last).step_by(step).filter(|&i| i >= 1 && i < argc));
            positions.sort_unstable();
            positions.dedup();
        }
        positions
    }
}

impl KeySpec {
    /// The key positions a keynum spec finds in `args` (none for a range
    /// spec: those are covered by first/last/step).
    pub(crate) fn keynum_positions(&self, args: &[Bytes]) -> Vec<usize> {
        let (keynum_index, first_key, key_step) = match self.find {
            FindKeys::Keynum {
                keynum_index,
                first_key,
                key_step,
            } => (keynum_index, first_key, key_step),
            FindKeys::Unknown { locate } => return locate(args),
            FindKeys::Range { .. } => return Vec::new(),
        };
        let at = |offset: i64| usize::try_from(self.begin_index + offset).ok();
        let Some(count) = at(keynum_index)
            .and_then(|i| args.get(i))
            .and_then(|raw| crate::number::parse_i64(raw))
            .and_then(|n| usize::try_from(n).ok())
        else {
            return Vec::new();
        };
        let (Some(first), Ok(step)) = (at(first_key), usize::try_from(key_step.max(1))) else {
            return Vec::new();
        };
        (0..count)
            .map(|k| first + k * step)
            .take_while(|&i| i < args.len())
            .collect()
    }
}

pub(crate) const NONE: &[&str] = &[];

pub(crate) const fn ks(
    flags: &'static [&'static str],
    begin_index: i64,
    last_key: i64,
    key_step: i64,
) -> KeySpec {
    KeySpec {
        notes: None,
        flags,
        begin_index,
        find: FindKeys::Range { last_key, key_step },
    }
}

/// A key spec whose number of keys is an argument (see
/// [`FindKeys::Keynum`]).
pub(crate) const fn ks_keynum(
    flags: &'static [&'static str],
    begin_index: i64,
    keynum_index: i64,
    first_key: i64,
    key_step: i64,
) -> KeySpec {
    KeySpec {
        notes: None,
        flags,
        begin_index,
        find: FindKeys::Keynum {
            keynum_index,
            first_key,
            key_step,
        },
    }
}

pub(crate) const RO_ACCESS: &[KeySpec] = &[ks(&["RO", "access"], 1, 0, 1)];
pub(crate) const RO: &[KeySpec] = &[ks(&["RO"], 1, 0, 1)];
pub(crate) const RW_ACCESS_UPDATE: &[KeySpec] = &[ks(&["RW", "access", "update"], 1, 0, 1)];
pub(crate) const RW_UPDATE: &[KeySpec] = &[ks(&["RW", "update"], 1, 0, 1)];
pub(crate) const OW_UPDATE: &[KeySpec] = &[ks(&["OW", "update"], 1, 0, 1)];

pub(crate) const READ_STRING_FAST: &[&str] = &["@read", "@string", "@fast"];
pub(crate) const WRITE_STRING_FAST: &[&str] = &["@write", "@string", "@fast"];
pub(crate) const WRITE_STRING_SLOW: &[&str] = &["@write", "@string", "@slow"];
pub(crate) const KEYSPACE_READ_FAST: &[&str] = &["@keyspace", "@read", "@fast"];
pub(crate) const KEYSPACE_WRITE_FAST: &[&str] = &["@keyspace", "@write", "@fast"];
pub(crate) const FAST_CONNECTION: &[&str] = &["@fast", "@connection"];
pub(crate) const SLOW_CONNECTION: &[&str] = &["@slow", "@connection"];
pub(crate) const ADMIN_SLOW_DANGEROUS: &[&str] = &["@admin", "@slow", "@dangerous"];
pub(crate) const ADMIN_SLOW_DANGEROUS_CONNECTION: &[&str] =
    &["@admin", "@slow", "@dangerous", "@connection"];
pub(crate) const NO_AUTH_CONNECTION: &[&str] = &[
    "noscript",
    "loading",
    "stale",
    "fast",
    "no_auth",
    "allow_busy",
];
pub(crate) const CLIENT_FLAGS: &[&str] = &["noscript", "loading", "stale"];
pub(crate) const ADMIN_CLIENT_FLAGS: &[&str] = &["admin", "noscript", "loading", "stale"];
pub(crate) const LOADING_STALE: &[&str] = &["loading", "stale"];
pub(crate) const ORDER_TIP: &[&str] = &["nondeterministic_output_order"];
pub(crate) const MULTI_SHARD_SUM: &[&str] =
    &["request_policy:multi_shard", "response_policy:agg_sum"];

/// A keyless command.
pub(crate) const fn local(
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
pub(crate) const fn keyed(
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

/// A command on one key at argument 1, with tips.
pub(crate) const fn keyed_with_tips(
    name: &'static str,
    arity: i32,
    flags: &'static [&'static str],
    acl: &'static [&'static str],
    tips: &'static [&'static str],
    key_specs: &'static [KeySpec],
    parse: fn(&[Bytes]) -> ParseResult,
) -> CommandSpec {
    CommandSpec {
        tips,
        ..keyed(name, arity, flags, acl, key_specs, parse)
    }
}

/// Every command, family by family, in the order COMMAND lists them.
pub static COMMANDS: LazyLock<Vec<&'static CommandSpec>> = LazyLock::new(|| {
    [
        cmd::connection::COMMANDS,
        cmd::server::COMMANDS,
        cmd::strings::COMMANDS,
        cmd::keys::COMMANDS,
        cmd::hashes::COMMANDS,
        cmd::lists::COMMANDS,
        cmd::sets::COMMANDS,
        cmd::sorted_sets::COMMANDS,
        cmd::bitmaps::COMMANDS,
        cmd::hyperloglog::COMMANDS,
        cmd::sort::COMMANDS,
        cmd::transactions::COMMANDS,
        cmd::pubsub::COMMANDS,
        cmd::scripting::COMMANDS,
        cmd::acl::COMMANDS,
    ]
    .into_iter()
    .flatten()
    .collect()
});

static BY_NAME: LazyLock<HashMap<&'static str, &'static CommandSpec>> =
    LazyLock::new(|| COMMANDS.iter().map(|&spec| (spec.name, spec)).collect());

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
        for spec in COMMANDS.iter() {
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
        let pos = |line: &str| {
            let args: Vec<Bytes> = line
                .split(' ')
                .map(|w| Bytes::copy_from_slice(w.as_bytes()))
                .collect();
            lookup(&args[0]).unwrap().key_positions(&args)
        };
        assert_eq!(pos("get k"), vec![1]);
        assert_eq!(pos("mset a 1 b 2"), vec![1, 3]);
        assert_eq!(pos("del a b c"), vec![1, 2, 3]);
        assert_eq!(pos("rename a b"), vec![1, 2]);
        assert_eq!(pos("set k v EX 1"), vec![1]);
        assert_eq!(pos("ping"), Vec::<usize>::new());
        // Movable keys: the count comes first.
        assert_eq!(pos("sintercard 2 a b LIMIT 1"), vec![2, 3]);
        assert_eq!(pos("sintercard 5 a b"), vec![2, 3]);
        assert_eq!(pos("sintercard x a b"), Vec::<usize>::new());
        // A destination, then sources counted by an argument.
        assert_eq!(pos("zunionstore d 2 a b WEIGHTS 1 2"), vec![1, 3, 4]);
        assert_eq!(pos("zrangestore d s 0 1"), vec![1, 2]);
    }
}
