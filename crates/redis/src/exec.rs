//! Command execution over one shard's keyspace, dispatched to the command
//! families in [`crate::cmd`].
//!
//! [`execute_read`] runs read commands at a point in time; [`execute_write`]
//! runs write commands during apply, with the proposer's timestamp as "now"
//! so every replica computes the same result. Each family follows the
//! corresponding Redis 7.0 implementation step by step, including the order
//! in which it checks things (which decides which error a client sees).

use bytes::Bytes;
use elastickv_resp::Reply;

use crate::cmd::{bitmaps, hashes, hyperloglog, keys, lists, sets, sort, sorted_sets, strings};
use crate::command::Command;
use crate::db::{ReadTime, ReadView, WriteView};
use crate::errors;
use crate::keyspace::{KeyspaceRead, KeyspaceWrite, StorageError};
use crate::log::{self, write};
use crate::record::{Collection, Record, ValueType};

pub use crate::cmd::keys::{ScanStep, expire_due, keys_in, scan_slots};
pub use crate::cmd::strings::MAX_STRING_LEN;

pub(crate) type ExecResult = Result<Reply, StorageError>;

/// The collection of `kind` in `record`: `Ok(None)` for no record,
/// WRONGTYPE for a value of another type.
pub(crate) fn collection_of(
    record: Option<&Record>,
    kind: ValueType,
) -> Result<Option<Collection>, Reply> {
    match record {
        None => Ok(None),
        Some(r) => match r.as_collection() {
            Some(c) if c.kind == kind => Ok(Some(*c)),
            _ => Err(wrongtype()),
        },
    }
}

pub(crate) fn wrongtype() -> Reply {
    Reply::static_error(errors::WRONGTYPE)
}

/// Runs a read-only command. Commands that are not keyed reads answer with
/// an error (the caller routes those elsewhere).
///
/// Expiry is judged by `time`; when `time` comes out undecided, the reply
/// must be discarded (see [`ReadTime`]).
pub fn execute_read<K: KeyspaceRead + ?Sized>(
    cmd: &Command,
    ks: &K,
    time: &ReadTime,
) -> ExecResult {
    let db = ReadView::new(ks, time);
    match cmd {
        Command::StringRead(read) => strings::execute_read(read, &db),
        Command::KeyRead(read) => keys::execute_read(read, &db),
        Command::HashRead(read) => hashes::execute_read(read, &db),
        Command::SetRead(read) => sets::execute_read(read, &db),
        Command::ListRead(read) => lists::execute_read(read, &db),
        Command::BitmapRead(read) => bitmaps::execute_read(read, &db),
        Command::SortedSetRead(read) => sorted_sets::execute_read(read, &db),
        Command::HyperLogLogRead(read) => hyperloglog::execute_read(read, &db),
        Command::SortRead(read) => sort::execute_read(read, &db),
        _ => Ok(Reply::static_error("ERR command is not a keyed read")),
    }
}

/// Runs a write command at apply time; `now_ms` is the proposer's clock.
/// A write with no command in it (written by a newer version) answers
/// with an error here; [`crate::replicated::apply`] refuses such entries
/// before they get this far.
pub fn execute_write<K: KeyspaceWrite + ?Sized>(
    cmd: &log::Write,
    ks: &mut K,
    now_ms: u64,
) -> ExecResult {
    let mut db = WriteView::new(ks, now_ms);
    let reply = match &cmd.family {
        Some(write::Family::Strings(w)) => match &w.command {
            Some(c) => strings::execute_write(&mut db, c),
            None => Ok(unknown_write()),
        },
        Some(write::Family::Keys(w)) => match &w.command {
            Some(c) => keys::execute_write(&mut db, c),
            None => Ok(unknown_write()),
        },
        Some(write::Family::Hashes(w)) => match &w.command {
            Some(c) => hashes::execute_write(&mut db, c),
            None => Ok(unknown_write()),
        },
        Some(write::Family::Lists(w)) => match &w.command {
            Some(c) => lists::execute_write(&mut db, c),
            None => Ok(unknown_write()),
        },
        Some(write::Family::Bitmaps(w)) => match &w.command {
            Some(c) => bitmaps::execute_write(&mut db, c),
            None => Ok(unknown_write()),
        },
        Some(write::Family::Sets(w)) => match &w.command {
            Some(c) => sets::execute_write(&mut db, c),
            None => Ok(unknown_write()),
        },
        Some(write::Family::SortedSets(w)) => match &w.command {
            Some(c) => sorted_sets::execute_write(&mut db, c),
            None => Ok(unknown_write()),
        },
        Some(write::Family::HyperLogLog(w)) => match &w.command {
            Some(c) => hyperloglog::execute_write(&mut db, c),
            None => Ok(unknown_write()),
        },
        None => Ok(unknown_write()),
    }?;
    db.finish()?;
    Ok(reply)
}

/// Runs a transaction at apply time: nothing when a watched key is not
/// as WATCH saw it (EXEC answers nil), otherwise every queued command in
/// order, each seeing the ones before, with nothing in between. A command
/// that fails answers its error in place; the others still run, as in
/// Redis. A script's effects (see [`crate::effects`]) are applied the same
/// way and answer +OK.
pub fn execute_transaction<K: KeyspaceWrite + ?Sized>(
    tx: &log::Transaction,
    ks: &mut K,
    now_ms: u64,
) -> ExecResult {
    {
        let mut db = WriteView::new(ks, now_ms);
        for watched in &tx.watched {
            let unchanged = match db.lookup(&watched.key)? {
                Some(record) => watched.exists && record.revision == watched.revision,
                None => !watched.exists,
            };
            if !unchanged {
                return Ok(Reply::NullArray);
            }
        }
    }
    let mut replies = Vec::with_capacity(tx.commands.len());
    for queued in &tx.commands {
        use log::queued_command::Command as Queued;
        replies.push(match &queued.command {
            Some(Queued::Write(write)) => execute_write(write, ks, now_ms)?,
            Some(Queued::Read(read)) => match crate::command::parse(&read.args) {
                Ok(parsed) => execute_read(&parsed.command, &*ks, &ReadTime::at(now_ms))?,
                Err(reply) => reply,
            },
            None => unknown_write(),
        });
    }
    if tx.script_effects {
        // The script's reply was computed where it ran, over the same
        // state; these replies only repeat what it saw.
        return Ok(Reply::ok());
    }
    Ok(Reply::Array(replies))
}

/// What WATCH records of `keys`: whether each exists at `time`, and its
/// revision.
pub fn watch_revisions<K: KeyspaceRead + ?Sized>(
    ks: &K,
    time: &ReadTime,
    keys: &[Bytes],
) -> Result<Vec<log::WatchedKey>, StorageError> {
    let db = ReadView::new(ks, time);
    keys.iter()
        .map(|key| {
            let record = db.lookup(key)?;
            Ok(log::WatchedKey {
                key: key.clone(),
                exists: record.is_some(),
                revision: record.map_or(0, |r| r.revision),
            })
        })
        .collect()
}

fn unknown_write() -> Reply {
    Reply::static_error("ERR unknown replicated write")
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::command::parse;
    use crate::keyspace::MemKeyspace;

    fn run(ks: &mut MemKeyspace, now: u64, line: &str) -> Reply {
        let args: Vec<Bytes> = line
            .split(' ')
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .collect();
        let parsed = match parse(&args) {
            Ok(p) => p,
            Err(reply) => return reply,
        };
        if let Command::Write(write) = &parsed.command {
            execute_write(write, ks, now).unwrap()
        } else {
            execute_read(&parsed.command, ks, &ReadTime::at(now)).unwrap()
        }
    }

    fn bulk(s: &str) -> Reply {
        Reply::bulk(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn revision(ks: &MemKeyspace, key: &str) -> Option<u64> {
        ks.records
            .get(key.as_bytes())
            .map(|raw| Record::peek_revision(raw).unwrap())
    }

    /// Every write that Redis reports as modifying a key (WATCH aborts on
    /// it) gives the key a new revision, including member changes that
    /// leave a collection's size alone; reads and no-op writes do not.
    #[test]
    fn writes_give_keys_new_revisions() {
        let mut ks = MemKeyspace::default();
        let changes = |ks: &mut MemKeyspace, line: &str, key: &str| -> bool {
            let before = revision(ks, key);
            run(ks, 1000, line);
            revision(ks, key) != before
        };
        assert!(changes(&mut ks, "SET k v", "k"));
        assert!(changes(&mut ks, "SET k v", "k"));
        assert!(!changes(&mut ks, "GET k", "k"));
        assert!(changes(&mut ks, "EXPIRE k 100", "k"));
        assert!(changes(&mut ks, "PERSIST k", "k"));
        assert!(!changes(&mut ks, "PERSIST k", "k"));
        assert!(changes(&mut ks, "HSET h f 1", "h"));
        assert!(changes(&mut ks, "HSET h f 2", "h"));
        assert!(changes(&mut ks, "HINCRBY h f 1", "h"));
        assert!(!changes(&mut ks, "HGET h f", "h"));
        assert!(changes(&mut ks, "SADD s a", "s"));
        assert!(!changes(&mut ks, "SADD s a", "s"));
        assert!(changes(&mut ks, "ZADD z 1 m", "z"));
        assert!(changes(&mut ks, "ZADD z 2 m", "z"));
        assert!(!changes(&mut ks, "ZADD z 2 m", "z"));
        assert!(changes(&mut ks, "RPUSH l a b", "l"));
        assert!(changes(&mut ks, "LSET l 0 x", "l"));
        assert!(changes(&mut ks, "SETBIT b 3 1", "b"));
        // Redis signals SETBIT as a change even when the bit was set.
        assert!(changes(&mut ks, "SETBIT b 3 1", "b"));
        assert!(changes(&mut ks, "DEL k", "k"));
        assert_eq!(revision(&ks, "k"), None);
    }

    #[test]
    fn set_get_and_conditions() {
        let mut ks = MemKeyspace::default();
        assert_eq!(run(&mut ks, 1000, "SET k v"), Reply::ok());
        assert_eq!(run(&mut ks, 1000, "GET k"), bulk("v"));
        assert_eq!(run(&mut ks, 1000, "SET k w NX"), Reply::Null);
        assert_eq!(run(&mut ks, 1000, "SET k w NX GET"), bulk("v"));
        assert_eq!(run(&mut ks, 1000, "SET k w XX GET"), bulk("v"));
        assert_eq!(run(&mut ks, 1000, "SET other w XX"), Reply::Null);
        assert_eq!(run(&mut ks, 1000, "SETNX k x"), Reply::Integer(0));
        assert_eq!(run(&mut ks, 1000, "SETNX n x"), Reply::Integer(1));
        assert_eq!(ks.counts.keys, 2);
    }

    #[test]
    fn ttl_lifecycle_with_index_and_counts() {
        let mut ks = MemKeyspace::default();
        run(&mut ks, 1000, "SET k v EX 10");
        assert_eq!(run(&mut ks, 1000, "TTL k"), Reply::Integer(10));
        assert_eq!(run(&mut ks, 1000, "PTTL k"), Reply::Integer(10_000));
        assert_eq!(run(&mut ks, 1000, "PEXPIRETIME k"), Reply::Integer(11_000));
        assert_eq!(ks.counts.expires, 1);
        assert_eq!(ks.expire_index.len(), 1);
        // KEEPTTL keeps it, a plain SET drops it.
        run(&mut ks, 2000, "SET k v2 KEEPTTL");
        assert_eq!(run(&mut ks, 2000, "PTTL k"), Reply::Integer(9_000));
        run(&mut ks, 2000, "SET k v3");
        assert_eq!(run(&mut ks, 2000, "TTL k"), Reply::Integer(-1));
        assert_eq!((ks.counts.expires, ks.expire_index.len()), (0, 0));
        // Invisible at once when expired; removed on the next write lookup.
        run(&mut ks, 2000, "PEXPIRE k 100");
        assert_eq!(run(&mut ks, 2100, "GET k"), Reply::Null);
        assert_eq!(run(&mut ks, 2100, "TTL k"), Reply::Integer(-2));
        assert_eq!(ks.counts.keys, 1);
        assert_eq!(run(&mut ks, 2100, "DEL k"), Reply::Integer(0));
        assert_eq!((ks.counts.keys, ks.counts.expires), (0, 0));
        assert!(ks.expire_index.is_empty());
    }

    #[test]
    fn expire_flags() {
        let mut ks = MemKeyspace::default();
        run(&mut ks, 0, "SET k v");
        assert_eq!(run(&mut ks, 0, "EXPIRE k 100 XX"), Reply::Integer(0));
        assert_eq!(run(&mut ks, 0, "EXPIRE k 100 GT"), Reply::Integer(0));
        assert_eq!(run(&mut ks, 0, "EXPIRE k 100 NX"), Reply::Integer(1));
        assert_eq!(run(&mut ks, 0, "EXPIRE k 50 GT"), Reply::Integer(0));
        assert_eq!(run(&mut ks, 0, "EXPIRE k 50 LT"), Reply::Integer(1));
        assert_eq!(run(&mut ks, 0, "TTL k"), Reply::Integer(50));
        assert_eq!(run(&mut ks, 0, "EXPIRE k -1"), Reply::Integer(1));
        assert_eq!(run(&mut ks, 0, "EXISTS k"), Reply::Integer(0));
        assert_eq!(ks.counts.keys, 0);
        assert_eq!(
            run(&mut ks, 0, "EXPIRE k 9223372036854775807"),
            Reply::static_error("ERR invalid expire time in 'expire' command")
        );
    }

    #[test]
    fn counters_and_strings() {
        let mut ks = MemKeyspace::default();
        assert_eq!(run(&mut ks, 0, "INCR c"), Reply::Integer(1));
        assert_eq!(run(&mut ks, 0, "INCRBY c 41"), Reply::Integer(42));
        assert_eq!(run(&mut ks, 0, "DECRBY c 2"), Reply::Integer(40));
        run(&mut ks, 0, "SET c 9223372036854775807");
        assert_eq!(
            run(&mut ks, 0, "INCR c"),
            Reply::static_error(errors::INCR_OVERFLOW)
        );
        run(&mut ks, 0, "SET s abc");
        assert_eq!(
            run(&mut ks, 0, "INCR s"),
            Reply::static_error(errors::NOT_INTEGER)
        );
        assert_eq!(run(&mut ks, 0, "INCRBYFLOAT f 0.1"), bulk("0.1"));
        assert_eq!(run(&mut ks, 0, "INCRBYFLOAT f 0.2"), bulk("0.3"));
        assert_eq!(run(&mut ks, 0, "APPEND s def"), Reply::Integer(6));
        assert_eq!(run(&mut ks, 0, "GETRANGE s 1 -2"), bulk("bcde"));
        assert_eq!(run(&mut ks, 0, "GETRANGE s -1 -5"), bulk(""));
        assert_eq!(run(&mut ks, 0, "GETRANGE nope 0 -1"), bulk(""));
        assert_eq!(run(&mut ks, 0, "SETRANGE s 8 xy"), Reply::Integer(10));
        assert_eq!(run(&mut ks, 0, "GET s"), bulk("abcdef\0\0xy"));
        assert_eq!(run(&mut ks, 0, "SETRANGE new 0 "), Reply::Integer(0));
        assert_eq!(run(&mut ks, 0, "STRLEN s"), Reply::Integer(10));
        assert_eq!(
            run(&mut ks, 0, "SETRANGE s 536870911 xy"),
            Reply::static_error(errors::STRING_TOO_LONG)
        );
    }

    #[test]
    fn rename_and_multi_key() {
        let mut ks = MemKeyspace::default();
        assert_eq!(
            run(&mut ks, 0, "RENAME a b"),
            Reply::static_error(errors::NO_SUCH_KEY)
        );
        run(&mut ks, 0, "MSET a 1 b 2 c 3");
        assert_eq!(run(&mut ks, 0, "MSETNX c 9 d 9"), Reply::Integer(0));
        assert_eq!(run(&mut ks, 0, "RENAMENX a b"), Reply::Integer(0));
        run(&mut ks, 0, "PEXPIRE a 5000");
        assert_eq!(run(&mut ks, 0, "RENAME a b"), Reply::ok());
        assert_eq!(run(&mut ks, 0, "PTTL b"), Reply::Integer(5000));
        assert_eq!(run(&mut ks, 0, "EXISTS a b b c"), Reply::Integer(3));
        assert_eq!(
            run(&mut ks, 0, "MGET a b c"),
            Reply::Array(vec![Reply::Null, bulk("1"), bulk("3")])
        );
        assert_eq!(run(&mut ks, 0, "DEL a b c c"), Reply::Integer(2));
        assert_eq!((ks.counts.keys, ks.counts.expires), (0, 0));
    }

    #[test]
    fn active_expiry_respects_changed_ttls() {
        let mut ks = MemKeyspace::default();
        run(&mut ks, 0, "SET a 1 PX 100");
        run(&mut ks, 0, "SET b 1 PX 100");
        run(&mut ks, 50, "PEXPIRE b 1000");
        let due = vec![
            (Bytes::from_static(b"a"), 100),
            (Bytes::from_static(b"b"), 100),
        ];
        assert_eq!(expire_due(&mut ks, &due, 150).unwrap(), 1);
        assert_eq!(ks.counts.keys, 1);
        assert_eq!(run(&mut ks, 150, "EXISTS b"), Reply::Integer(1));
        assert_eq!(ks.expire_index.len(), 1);
    }

    #[test]
    fn scan_returns_whole_slots() {
        let mut ks = MemKeyspace::default();
        for i in 0..25 {
            run(&mut ks, 0, &format!("SET key{i} v"));
        }
        // MemKeyspace puts everything in slot 0: one step returns it all.
        let step = scan_slots(&ks, 0, 1, 10, Some(b"key1*"), None, &ReadTime::at(0)).unwrap();
        assert_eq!(step.keys.len(), 11);
        assert_eq!(step.examined, 25);
        assert_eq!(step.next_slot, None);
        let keys = keys_in(&ks, 0, 1, b"key2?", &ReadTime::at(0)).unwrap();
        assert_eq!(keys.len(), 5);
    }
}
