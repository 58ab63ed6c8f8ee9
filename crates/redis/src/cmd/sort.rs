//! SORT and SORT_RO: the elements of a list, set or sorted set, sorted as
//! numbers or (ALPHA) as strings, optionally by other keys (BY) and
//! answered as other keys' values (GET), LIMITed, or stored as a list
//! (STORE), as `sortCommandGeneric` does.
//!
//! Every key SORT touches must be on the sorted key's shard. STORE's
//! destination is routed like any key (`-CROSSSLOT` otherwise); the keys
//! a BY or GET pattern names come from the elements, so a pattern must
//! carry a hash tag before its `*` (`weight_{tag}*`), which fixes the
//! shard of every key it can name. Redis Cluster refuses such patterns
//! outright; a pattern without a tag is refused here with the reason.
//!
//! SORT without STORE is a read; with STORE it is the `Sort` message of
//! the raft log, so every replica sorts and stores the same list.

use std::cmp::Ordering;

use bytes::Bytes;
use elastickv_resp::Reply;

use crate::cmd::members::{member_of, member_sub};
use crate::cmd::{lists, sorted_sets};
use crate::command::{Command, ParseResult, eq, int};
use crate::db::{ReadView, SubRead, WriteView};
use crate::errors;
use crate::exec::{ExecResult, wrongtype};
use crate::keyspace::{KeyspaceRead, KeyspaceWrite, StorageError, SubRange};
use crate::log;
use crate::number::parse_sort_weight;
use crate::record::{Value, ValueType};
use crate::table::*;

const SORT_ACL_WRITE: &[&str] = &[
    "@write",
    "@set",
    "@sortedset",
    "@list",
    "@slow",
    "@dangerous",
];
const SORT_ACL_READ: &[&str] = &[
    "@read",
    "@set",
    "@sortedset",
    "@list",
    "@slow",
    "@dangerous",
];
const BY_GET_NOTES: &str = "For the optional BY/GET keyword. It is marked 'unknown' because the key names derive from the content of the key we sort";
const STORE_NOTES: &str = "For the optional STORE keyword. It is marked 'unknown' because the keyword can appear anywhere in the argument array";

const fn unknown(
    notes: &'static str,
    flags: &'static [&'static str],
    locate: fn(&[Bytes]) -> Vec<usize>,
) -> KeySpec {
    KeySpec {
        notes: Some(notes),
        flags,
        begin_index: 0,
        find: FindKeys::Unknown { locate },
    }
}

/// The SORT commands' table entries.
pub(crate) static COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "sort",
        arity: -2,
        flags: &["write", "denyoom", "movablekeys"],
        first_key: 1,
        last_key: 1,
        step: 1,
        acl: SORT_ACL_WRITE,
        tips: NONE,
        key_specs: &[
            ks(&["RO", "access"], 1, 0, 1),
            unknown(BY_GET_NOTES, &["RO", "access"], pattern_positions),
            unknown(STORE_NOTES, &["OW", "update"], store_position),
        ],
        subcommands: &[],
        route: Route::SameShard,
        parse: Some(parse_sort),
    },
    CommandSpec {
        name: "sort_ro",
        arity: -2,
        flags: &["readonly", "movablekeys"],
        first_key: 1,
        last_key: 1,
        step: 1,
        acl: SORT_ACL_READ,
        tips: NONE,
        key_specs: &[
            ks(&["RO", "access"], 1, 0, 1),
            unknown(BY_GET_NOTES, &["RO", "access"], pattern_positions),
        ],
        subcommands: &[],
        route: Route::SameShard,
        parse: Some(parse_sort_ro),
    },
];

/// Where SORT's options are: `(position, option)` for BY, GET and STORE
/// with the position of their argument, skipping LIMIT's two.
fn options(args: &[Bytes]) -> Vec<(usize, &'static str)> {
    let mut out = Vec::new();
    let mut j = 2;
    while j < args.len() {
        let left = args.len() - j - 1;
        if eq(&args[j], "limit") && left >= 2 {
            j += 2;
        } else if left >= 1 {
            for option in ["by", "get", "store"] {
                if eq(&args[j], option) {
                    out.push((j + 1, option));
                    j += 1;
                    break;
                }
            }
        }
        j += 1;
    }
    out
}

/// The BY and GET patterns that name keys: routed by their hash tag,
/// which every key they name shares.
fn pattern_positions(args: &[Bytes]) -> Vec<usize> {
    options(args)
        .into_iter()
        .filter(|&(at, option)| option != "store" && names_keys(&args[at]))
        .map(|(at, _)| at)
        .collect()
}

fn store_position(args: &[Bytes]) -> Vec<usize> {
    options(args)
        .into_iter()
        .filter(|&(_, option)| option == "store")
        .map(|(at, _)| at)
        .collect()
}

/// Whether a BY/GET pattern names keys at all (`#` and patterns without
/// `*` do not).
fn names_keys(pattern: &[u8]) -> bool {
    pattern != b"#" && pattern.contains(&b'*')
}

/// Whether every key `pattern` can name shares one hash tag: a `{tag}`
/// (non-empty) that starts and ends before the `*`.
fn tagged_before_star(pattern: &[u8]) -> bool {
    let Some(star) = pattern.iter().position(|&b| b == b'*') else {
        return true;
    };
    let prefix = &pattern[..star];
    let Some(open) = prefix.iter().position(|&b| b == b'{') else {
        return false;
    };
    prefix[open + 1..]
        .iter()
        .position(|&b| b == b'}')
        .is_some_and(|close| close > 0)
}

fn pattern_error(option: &str) -> Reply {
    Reply::error(format!(
        "ERR {option} option of SORT needs a pattern whose keys share the sorted key's shard: \
         put a hash tag before the '*', as in weight_{{tag}}*"
    ))
}

fn parse(args: &[Bytes], readonly: bool) -> Result<log::Sort, Reply> {
    let mut sort = log::Sort {
        key: args[1].clone(),
        count: -1,
        ..Default::default()
    };
    let mut j = 2;
    while j < args.len() {
        let left = args.len() - j - 1;
        let arg = &args[j];
        if eq(arg, "asc") {
            sort.desc = false;
        } else if eq(arg, "desc") {
            sort.desc = true;
        } else if eq(arg, "alpha") {
            sort.alpha = true;
        } else if eq(arg, "limit") && left >= 2 {
            sort.offset = int(&args[j + 1])?;
            sort.count = int(&args[j + 2])?;
            j += 2;
        } else if !readonly && eq(arg, "store") && left >= 1 {
            sort.store = Some(args[j + 1].clone());
            j += 1;
        } else if eq(arg, "by") && left >= 1 {
            let pattern = &args[j + 1];
            if names_keys(pattern) && !tagged_before_star(pattern) {
                return Err(pattern_error("BY"));
            }
            sort.by = Some(pattern.clone());
            j += 1;
        } else if eq(arg, "get") && left >= 1 {
            let pattern = &args[j + 1];
            if names_keys(pattern) && !tagged_before_star(pattern) {
                return Err(pattern_error("GET"));
            }
            sort.get.push(pattern.clone());
            j += 1;
        } else {
            return Err(Reply::static_error(errors::SYNTAX));
        }
        j += 1;
    }
    Ok(sort)
}

pub(crate) fn parse_sort(args: &[Bytes]) -> ParseResult {
    let sort = parse(args, false)?;
    if sort.store.is_some() {
        return Ok(Command::Write(log::Write {
            family: Some(log::write::Family::Keys(log::KeyWrite {
                command: Some(log::key_write::Command::Sort(sort)),
            })),
        }));
    }
    Ok(Command::SortRead(sort))
}

pub(crate) fn parse_sort_ro(args: &[Bytes]) -> ParseResult {
    Ok(Command::SortRead(parse(args, true)?))
}

/// The value a BY or GET pattern names for `element`
/// (`lookupKeyByPattern`): `#` is the element itself; `key*` a string
/// key, `key*->field` a hash field; `None` when there is none.
fn by_pattern<S: SubRead + ?Sized>(
    view: &S,
    pattern: &[u8],
    element: &Bytes,
) -> Result<Option<Bytes>, StorageError> {
    if pattern == b"#" {
        return Ok(Some(element.clone()));
    }
    let Some(star) = pattern.iter().position(|&b| b == b'*') else {
        return Ok(None);
    };
    let after = &pattern[star + 1..];
    let (postfix, field) = match after.windows(2).position(|w| w == b"->") {
        Some(arrow) if arrow + 2 < after.len() => (&after[..arrow], Some(&after[arrow + 2..])),
        _ => (after, None),
    };
    let mut key = Vec::with_capacity(pattern.len() + element.len());
    key.extend_from_slice(&pattern[..star]);
    key.extend_from_slice(element);
    key.extend_from_slice(postfix);
    let Some(record) = view.record(&key)? else {
        return Ok(None);
    };
    match (&record.value, field) {
        (Value::String(s), None) => Ok(Some(s.clone())),
        (Value::Collection(c), Some(field)) if c.kind == ValueType::Hash => {
            Ok(view.sub_get(&key, c, &member_sub(field))?.map(Bytes::from))
        }
        _ => Ok(None),
    }
}

/// What SORT answers, or stores: the output elements (GET values, `None`
/// for missing ones).
type Sorted = Result<Vec<Option<Bytes>>, Reply>;

/// One element being sorted and what it sorts by.
struct Item {
    element: Bytes,
    score: f64,
    by: Option<Bytes>,
}

/// `strcoll` in the C locale: bytes up to the first NUL.
fn c_string(bytes: &[u8]) -> &[u8] {
    bytes.split(|&b| b == 0).next().unwrap_or_default()
}

fn sorted<S: SubRead + ?Sized>(view: &S, sort: &log::Sort) -> Result<Sorted, StorageError> {
    let record = view.record(&sort.key)?;
    let collection = match &record {
        None => None,
        Some(r) => match r.as_collection() {
            Some(c) if matches!(c.kind, ValueType::List | ValueType::Set | ValueType::ZSet) => {
                Some(*c)
            }
            _ => return Ok(Err(wrongtype())),
        },
    };
    let store = sort.store.is_some();
    let mut by = sort.by.as_deref();
    let mut dont_sort = by.is_some_and(|p| !p.contains(&b'*'));
    let mut alpha = sort.alpha;
    if dont_sort && store && collection.is_some_and(|c| c.kind == ValueType::Set) {
        // A set's order is its hash order: sorted, so replicas agree.
        dont_sort = false;
        alpha = true;
        by = None;
    }
    let elements = match collection {
        None => Vec::new(),
        Some(c) => match c.kind {
            ValueType::List => {
                let mut all = lists::all_elements(view, &sort.key, &c)?;
                if dont_sort && sort.desc {
                    all.reverse();
                }
                all
            }
            ValueType::ZSet => {
                sorted_sets::members_in_order(view, &sort.key, &c, dont_sort && sort.desc)?
            }
            _ => {
                let mut all = Vec::new();
                view.sub_scan(&sort.key, &c, SubRange::ALL, &mut |sub, _| {
                    all.push(Bytes::copy_from_slice(member_of(sub)));
                    std::ops::ControlFlow::Continue(())
                })?;
                all
            }
        },
    };
    // LIMIT, clamped as Redis clamps it.
    let len = i64::try_from(elements.len()).unwrap_or(i64::MAX);
    let mut start = sort.offset.max(0).min(len);
    let count = sort.count.max(-1).min(len);
    let mut end = if count < 0 {
        len - 1
    } else {
        start + count - 1
    };
    if start >= len {
        start = len - 1;
        end = len - 2;
    }
    end = end.min(len - 1);
    let mut items: Vec<Item> = elements
        .into_iter()
        .map(|element| Item {
            element,
            score: 0.0,
            by: None,
        })
        .collect();
    if !dont_sort {
        let mut unconvertible = false;
        for item in &mut items {
            let value = match by {
                Some(pattern) => match by_pattern(view, pattern, &item.element)? {
                    Some(value) => value,
                    None => continue,
                },
                None => item.element.clone(),
            };
            if alpha {
                if by.is_some() {
                    item.by = Some(value);
                }
            } else {
                match parse_sort_weight(&value) {
                    Some(score) => item.score = score,
                    None => unconvertible = true,
                }
            }
        }
        if unconvertible {
            return Ok(Err(Reply::static_error(
                "ERR One or more scores can't be converted into double",
            )));
        }
        let compare = |a: &Item, b: &Item| -> Ordering {
            let cmp = if !alpha {
                a.score
                    .partial_cmp(&b.score)
                    .unwrap_or(Ordering::Equal)
                    .then_with(|| a.element.cmp(&b.element))
            } else if by.is_some() {
                match (&a.by, &b.by) {
                    (None, None) => Ordering::Equal,
                    (None, Some(_)) => Ordering::Less,
                    (Some(_), None) => Ordering::Greater,
                    (Some(x), Some(y)) if store => x.cmp(y),
                    (Some(x), Some(y)) => c_string(x).cmp(c_string(y)),
                }
            } else if store {
                a.element.cmp(&b.element)
            } else {
                c_string(&a.element).cmp(c_string(&b.element))
            };
            if sort.desc { cmp.reverse() } else { cmp }
        };
        items.sort_by(compare);
    }
    let mut out = Vec::new();
    if end >= start && start >= 0 {
        for item in &items[start as usize..=end as usize] {
            if sort.get.is_empty() {
                out.push(Some(item.element.clone()));
            }
            for pattern in &sort.get {
                out.push(by_pattern(view, pattern, &item.element)?);
            }
        }
    }
    Ok(Ok(out))
}

/// SORT and SORT_RO without STORE.
pub(crate) fn execute_read<K: KeyspaceRead + ?Sized>(
    sort: &log::Sort,
    db: &ReadView<'_, K>,
) -> ExecResult {
    Ok(match sorted(db, sort)? {
        Ok(out) => Reply::Array(
            out.into_iter()
                .map(|v| v.map_or(Reply::Null, Reply::Bulk))
                .collect(),
        ),
        Err(reply) => reply,
    })
}

/// SORT ... STORE at apply time.
pub(crate) fn execute_write<K: KeyspaceWrite + ?Sized>(
    db: &mut WriteView<'_, K>,
    sort: &log::Sort,
) -> ExecResult {
    let Some(destination) = &sort.store else {
        return Ok(Reply::static_error(errors::SYNTAX));
    };
    let out = match sorted(&*db, sort)? {
        Ok(out) => out,
        Err(reply) => return Ok(reply),
    };
    let elements: Vec<Bytes> = out.into_iter().map(Option::unwrap_or_default).collect();
    lists::store_list(db, destination, &elements)?;
    Ok(Reply::Integer(elements.len() as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<Bytes> {
        line.split(' ')
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    #[test]
    fn patterns_must_fix_their_shard_with_a_tag_before_the_star() {
        assert!(tagged_before_star(b"w_{t}*"));
        assert!(tagged_before_star(b"{t}w*->f"));
        assert!(tagged_before_star(b"nostar"));
        assert!(!tagged_before_star(b"w_*"));
        assert!(!tagged_before_star(b"w_{}*"));
        assert!(!tagged_before_star(b"w_{*}"));
        assert!(!tagged_before_star(b"w*{t}"));
        assert!(parse(&args("SORT l BY w_*"), false).is_err());
        assert!(parse(&args("SORT l BY nosort GET # GET {l}x_*"), false).is_ok());
    }

    #[test]
    fn routing_sees_store_and_key_naming_patterns() {
        let a = args("SORT {l}k LIMIT 0 1 BY {l}w* GET # GET {l}o* STORE {l}d");
        assert_eq!(pattern_positions(&a), vec![6, 10]);
        assert_eq!(store_position(&a), vec![12]);
    }
}
