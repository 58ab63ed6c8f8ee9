//! Running commands ahead of the log, over a snapshot, and recording what
//! they did: how a script executes.
//!
//! A script runs on the node that received it, not in the raft loop: its
//! commands execute against an [`Overlay`] of one shard's snapshot, which
//! keeps the script's own writes in memory (later commands see them) and
//! remembers every key it looked at, as it saw it. What gets replicated is
//! the script's effects: its write commands, guarded by those keys (a
//! [`log::Transaction`] with `script_effects`). Applied, the writes run
//! again in order, at one point of the log, over exactly the state the
//! script saw, so they do the same; if any key changed in between, nothing
//! is applied and the script runs again on a newer snapshot.
//!
//! So a script is atomic and serializable with everything else on its
//! shard, replicas never run Lua, and no script holds up the raft loop.
//! Time-relative results are the one thing that can differ: the writes
//! apply at the entry's time, a few milliseconds after the script's (a TTL
//! the script set counts from when its effects applied).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::ops::{Bound, ControlFlow};

use bytes::Bytes;
use elastickv_resp::Reply;

use crate::command::Command;
use crate::db::ReadTime;
use crate::exec::{execute_read, execute_write};
use crate::keyspace::{
    KeyCounts, KeyspaceRead, KeyspaceWrite, RegistryRecords, StorageError, SubRange, SubVisitor,
};
use crate::log;
use crate::record::Record;

/// A sub-key of the overlay: (key, version, sub).
type SubId = (Vec<u8>, u64, Vec<u8>);

/// Sub-keys `from..to` (`to` `None`: to the end) of one collection version,
/// deleted at once.
#[derive(Debug)]
struct DroppedRange {
    key: Vec<u8>,
    version: u64,
    from: Vec<u8>,
    to: Option<Vec<u8>>,
}

impl DroppedRange {
    fn covers(&self, key: &[u8], version: u64, sub: &[u8]) -> bool {
        self.key == key
            && self.version == version
            && sub >= self.from.as_slice()
            && self.to.as_deref().is_none_or(|to| sub < to)
    }
}

/// Collection versions the overlay hands out count down from the top of
/// the space; the log's count up from the bottom (index << 16), so the two
/// never meet.
const FIRST_OVERLAY_VERSION: u64 = u64::MAX;

/// A shard's snapshot with writes kept in memory on top.
pub struct Overlay<'a, B: KeyspaceRead + ?Sized> {
    base: &'a B,
    time: &'a ReadTime,
    /// Records written (`Some`) or deleted (`None`).
    records: HashMap<Vec<u8>, Option<Vec<u8>>>,
    subs: BTreeMap<SubId, Option<Vec<u8>>>,
    dropped: Vec<DroppedRange>,
    next_version: u64,
    counts: KeyCounts,
    /// Every key read from the snapshot, as it was first seen.
    seen: RefCell<BTreeMap<Vec<u8>, log::WatchedKey>>,
}

impl<'a, B: KeyspaceRead + ?Sized> Overlay<'a, B> {
    /// `time` judges expiry of the snapshot's records, as a read would.
    pub fn new(base: &'a B, time: &'a ReadTime) -> Self {
        Overlay {
            base,
            time,
            records: HashMap::new(),
            subs: BTreeMap::new(),
            dropped: Vec::new(),
            next_version: FIRST_OVERLAY_VERSION,
            counts: KeyCounts::default(),
            seen: RefCell::new(BTreeMap::new()),
        }
    }

    /// The keys read from the snapshot, each as it was then: whether it
    /// was alive, and its revision.
    pub fn seen(&self) -> Vec<log::WatchedKey> {
        self.seen.borrow().values().cloned().collect()
    }

    /// Reads `key` from the snapshot and remembers how it was.
    fn base_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let raw = self.base.get(key)?;
        if !self.seen.borrow().contains_key(key) {
            let watched = match &raw {
                Some(raw) => {
                    let record = Record::decode(raw).map_err(|e| {
                        StorageError(format!("key {:?}: {e}", String::from_utf8_lossy(key)))
                    })?;
                    let alive = !record.expire_at.is_some_and(|at| self.time.is_expired(at));
                    log::WatchedKey {
                        key: Bytes::copy_from_slice(key),
                        exists: alive,
                        revision: if alive { record.revision } else { 0 },
                    }
                }
                None => log::WatchedKey {
                    key: Bytes::copy_from_slice(key),
                    exists: false,
                    revision: 0,
                },
            };
            self.seen.borrow_mut().insert(key.to_vec(), watched);
        }
        Ok(raw)
    }

    fn is_overlay_version(&self, version: u64) -> bool {
        version > self.next_version
    }

    fn dropped(&self, key: &[u8], version: u64, sub: &[u8]) -> bool {
        self.dropped.iter().any(|d| d.covers(key, version, sub))
    }

    /// Forgets overlay sub-keys `from..to` of (key, version).
    fn forget_subs(&mut self, key: &[u8], version: u64, from: &[u8], to: Option<&[u8]>) {
        let upper = match to {
            Some(to) => Bound::Excluded((key.to_vec(), version, to.to_vec())),
            None => match version.checked_add(1) {
                Some(next) => Bound::Excluded((key.to_vec(), next, Vec::new())),
                None => Bound::Unbounded,
            },
        };
        let doomed: Vec<SubId> = self
            .subs
            .range((
                Bound::Included((key.to_vec(), version, from.to_vec())),
                upper,
            ))
            .filter(|((k, v, _), _)| k.as_slice() == key && *v == version)
            .map(|(id, _)| id.clone())
            .collect();
        for id in doomed {
            self.subs.remove(&id);
        }
    }
}

impl<B: KeyspaceRead + ?Sized> KeyspaceRead for Overlay<'_, B> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        match self.records.get(key) {
            Some(written) => Ok(written.clone()),
            None => self.base_get(key),
        }
    }

    fn sub_get(
        &self,
        key: &[u8],
        version: u64,
        sub: &[u8],
    ) -> Result<Option<Vec<u8>>, StorageError> {
        if let Some(written) = self.subs.get(&(key.to_vec(), version, sub.to_vec())) {
            return Ok(written.clone());
        }
        if self.is_overlay_version(version) || self.dropped(key, version, sub) {
            return Ok(None);
        }
        self.base.sub_get(key, version, sub)
    }

    fn sub_scan(
        &self,
        key: &[u8],
        version: u64,
        range: SubRange<'_>,
        visit: &mut SubVisitor<'_>,
    ) -> Result<(), StorageError> {
        if range.to.is_some_and(|to| to <= range.from) {
            return Ok(());
        }
        let upper = match range.to {
            Some(to) => Bound::Excluded((key.to_vec(), version, to.to_vec())),
            None => match version.checked_add(1) {
                Some(next) => Bound::Excluded((key.to_vec(), next, Vec::new())),
                None => Bound::Unbounded,
            },
        };
        let mut written: Vec<(&[u8], &Option<Vec<u8>>)> = self
            .subs
            .range((
                Bound::Included((key.to_vec(), version, range.from.to_vec())),
                upper,
            ))
            .filter(|((k, v, _), _)| k.as_slice() == key && *v == version)
            .map(|((_, _, sub), value)| (sub.as_slice(), value))
            .collect();
        if range.reverse {
            written.reverse();
        }
        // Merges the overlay's sub-keys into the snapshot's, in scan order.
        let comes_first = |a: &[u8], b: &[u8]| if range.reverse { a > b } else { a < b };
        let mut next = 0;
        let mut stopped = false;
        if !self.is_overlay_version(version) {
            self.base.sub_scan(key, version, range, &mut |sub, value| {
                while let Some((overlay_sub, overlay_value)) = written.get(next) {
                    if !comes_first(overlay_sub, sub) {
                        break;
                    }
                    next += 1;
                    if let Some(v) = overlay_value
                        && visit(overlay_sub, v).is_break()
                    {
                        stopped = true;
                        return ControlFlow::Break(());
                    }
                }
                let shadowed = written.get(next).is_some_and(|(s, _)| *s == sub);
                if shadowed || self.dropped(key, version, sub) {
                    return ControlFlow::Continue(());
                }
                if visit(sub, value).is_break() {
                    stopped = true;
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            })?;
        }
        if stopped {
            return Ok(());
        }
        for (sub, value) in &written[next..] {
            if let Some(v) = value
                && visit(sub, v).is_break()
            {
                break;
            }
        }
        Ok(())
    }
}

impl<B: KeyspaceRead + ?Sized> KeyspaceWrite for Overlay<'_, B> {
    fn put(&mut self, key: &[u8], record: Vec<u8>) -> Result<(), StorageError> {
        if !self.records.contains_key(key) {
            self.base_get(key)?;
        }
        self.records.insert(key.to_vec(), Some(record));
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StorageError> {
        if !self.records.contains_key(key) {
            self.base_get(key)?;
        }
        self.records.insert(key.to_vec(), None);
        Ok(())
    }

    fn sub_put(
        &mut self,
        key: &[u8],
        version: u64,
        sub: &[u8],
        value: Vec<u8>,
    ) -> Result<(), StorageError> {
        self.subs
            .insert((key.to_vec(), version, sub.to_vec()), Some(value));
        Ok(())
    }

    fn sub_delete(&mut self, key: &[u8], version: u64, sub: &[u8]) -> Result<(), StorageError> {
        self.subs
            .insert((key.to_vec(), version, sub.to_vec()), None);
        Ok(())
    }

    fn sub_delete_version(&mut self, key: &[u8], version: u64) -> Result<(), StorageError> {
        self.forget_subs(key, version, &[], None);
        self.dropped.push(DroppedRange {
            key: key.to_vec(),
            version,
            from: Vec::new(),
            to: None,
        });
        Ok(())
    }

    fn sub_delete_range(
        &mut self,
        key: &[u8],
        version: u64,
        from: &[u8],
        to: &[u8],
    ) -> Result<(), StorageError> {
        self.forget_subs(key, version, from, Some(to));
        self.dropped.push(DroppedRange {
            key: key.to_vec(),
            version,
            from: from.to_vec(),
            to: Some(to.to_vec()),
        });
        Ok(())
    }

    fn new_version(&mut self) -> u64 {
        let version = self.next_version;
        self.next_version -= 1;
        version
    }

    fn index_expire(&mut self, _key: &[u8], _at_ms: u64) -> Result<(), StorageError> {
        Ok(())
    }

    fn unindex_expire(&mut self, _key: &[u8], _at_ms: u64) -> Result<(), StorageError> {
        Ok(())
    }

    fn clear(&mut self) -> Result<(), StorageError> {
        Err(StorageError(
            "a whole shard cannot be cleared from a script".into(),
        ))
    }

    /// Changes to the counts only: a script cannot read them.
    fn counts(&mut self) -> &mut KeyCounts {
        &mut self.counts
    }

    fn clock_ms(&self) -> u64 {
        0
    }

    fn set_clock_ms(&mut self, _now_ms: u64) {}

    fn dedup_get(
        &self,
        _generation: u64,
        _origin: u64,
        _seq: u64,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(None)
    }

    fn dedup_put(
        &mut self,
        _generation: u64,
        _origin: u64,
        _seq: u64,
        _record: Vec<u8>,
    ) -> Result<(), StorageError> {
        Ok(())
    }

    fn dedup_purge(&mut self, _generation: u64) -> Result<(), StorageError> {
        Ok(())
    }

    fn registry_get(&self, _name: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Err(no_registry())
    }

    fn registry_put(&mut self, _name: &[u8], _record: Vec<u8>) -> Result<(), StorageError> {
        Err(no_registry())
    }

    fn registry_delete(&mut self, _name: &[u8]) -> Result<(), StorageError> {
        Err(no_registry())
    }

    fn registry_scan(&self, _prefix: &[u8]) -> Result<RegistryRecords, StorageError> {
        Err(no_registry())
    }
}

fn no_registry() -> StorageError {
    StorageError("scripts cannot change the script registry".into())
}

/// Commands run ahead of the log over one shard's snapshot, and their
/// effects.
pub struct Speculation<'a, B: KeyspaceRead + ?Sized> {
    overlay: Overlay<'a, B>,
    time: &'a ReadTime,
    writes: Vec<log::Write>,
}

impl<'a, B: KeyspaceRead + ?Sized> Speculation<'a, B> {
    /// Over `base` (one point in time of a shard), with `time` judging
    /// expiry. Writes run with the shard clock of the snapshot as "now",
    /// so reads and writes agree on which keys are alive.
    pub fn new(base: &'a B, time: &'a ReadTime) -> Self {
        Speculation {
            overlay: Overlay::new(base, time),
            time,
            writes: Vec::new(),
        }
    }

    /// Runs a keyed read or a write. Other commands answer an error (the
    /// caller decides which it can run itself).
    pub fn run(&mut self, cmd: &Command) -> Result<Reply, StorageError> {
        match cmd {
            Command::Write(write) => {
                let reply = execute_write(write, &mut self.overlay, self.time.now_ms())?;
                self.writes.push(write.clone());
                Ok(reply)
            }
            read => execute_read(read, &self.overlay, self.time),
        }
    }

    /// Whether a write ran.
    pub fn wrote(&self) -> bool {
        !self.writes.is_empty()
    }

    /// The effects to replicate: `None` when nothing was written.
    pub fn into_effects(self) -> Option<log::Transaction> {
        if self.writes.is_empty() {
            return None;
        }
        Some(log::Transaction {
            watched: self.overlay.seen(),
            commands: self
                .writes
                .into_iter()
                .map(|write| log::QueuedCommand {
                    command: Some(log::queued_command::Command::Write(write)),
                })
                .collect(),
            script_effects: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::parse;
    use crate::exec::execute_transaction;
    use crate::keyspace::MemKeyspace;

    fn args(line: &str) -> Vec<Bytes> {
        line.split(' ')
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .collect()
    }

    fn command(line: &str) -> Command {
        parse(&args(line)).unwrap().command
    }

    /// Applies `line` to `ks` directly, as the log would.
    fn apply(ks: &mut MemKeyspace, now: u64, line: &str) -> Reply {
        match command(line) {
            Command::Write(write) => execute_write(&write, ks, now).unwrap(),
            read => execute_read(&read, ks, &ReadTime::at(now)).unwrap(),
        }
    }

    fn bulk(s: &str) -> Reply {
        Reply::bulk(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn speculate(
        ks: &MemKeyspace,
        now: u64,
        lines: &[&str],
    ) -> (Vec<Reply>, Option<log::Transaction>) {
        let time = ReadTime::at(now);
        let mut run = Speculation::new(ks, &time);
        let replies = lines
            .iter()
            .map(|l| run.run(&command(l)).unwrap())
            .collect();
        (replies, run.into_effects())
    }

    /// Replies from the overlay equal those of the same commands applied
    /// one by one, for every family, and its effects, applied, leave the
    /// same data.
    #[test]
    fn speculation_matches_direct_execution_and_its_effects_reproduce_it() {
        let mut base = MemKeyspace::default();
        for line in [
            "RPUSH l a b c d e",
            "HSET h f1 1 f2 2 f3 3",
            "SADD s x y z",
            "ZADD z 1 a 2 b 3 c",
            "SET str hello",
        ] {
            apply(&mut base, 100, line);
        }
        let script = [
            "LPUSH l z",
            "LRANGE l 0 -1",
            "LREM l 1 c",
            "LRANGE l 0 -1",
            "HDEL h f2",
            "HSET h f4 4",
            "HGETALL h",
            "SREM s y",
            "SADD s w",
            "SMEMBERS s",
            "ZADD z 0 zero 2.5 bc",
            "ZRANGE z 0 -1 WITHSCORES",
            "ZREVRANGE z 0 2",
            "DEL str",
            "GET str",
            "APPEND str again",
            "GET str",
            "DEL l",
            "RPUSH l fresh",
            "LRANGE l 0 -1",
            "SET other x",
            "EXISTS missing",
        ];
        let (speculated, effects) = speculate(&base, 100, &script);
        let mut direct = base.clone();
        let expected: Vec<Reply> = script.iter().map(|l| apply(&mut direct, 100, l)).collect();
        assert_eq!(speculated, expected);
        let effects = effects.unwrap();
        assert!(effects.script_effects);
        let keys: Vec<&[u8]> = effects.watched.iter().map(|w| w.key.as_ref()).collect();
        assert_eq!(
            keys,
            [&b"h"[..], b"l", b"missing", b"other", b"s", b"str", b"z"]
        );
        let mut applied = base.clone();
        assert_eq!(
            execute_transaction(&effects, &mut applied, 100).unwrap(),
            Reply::ok()
        );
        for read in [
            "LRANGE l 0 -1",
            "HGETALL h",
            "SMEMBERS s",
            "ZRANGE z 0 -1 WITHSCORES",
            "GET str",
            "GET other",
        ] {
            assert_eq!(
                apply(&mut applied, 100, read),
                apply(&mut direct, 100, read),
                "{read}"
            );
        }
    }

    /// A key the script looked at that changed before its effects applied
    /// voids them, whether it was written, deleted, created or expired;
    /// keys it never looked at do not.
    #[test]
    fn effects_apply_only_over_what_the_script_saw() {
        let mut base = MemKeyspace::default();
        apply(&mut base, 100, "SET a 1");
        apply(&mut base, 100, "SET t 1 PX 1000");
        let (_, effects) = speculate(
            &base,
            100,
            &["GET a", "GET t", "GET nothing", "INCR counter"],
        );
        let effects = effects.unwrap();
        let outcome = |change: &str, at: u64| {
            let mut ks = base.clone();
            if !change.is_empty() {
                apply(&mut ks, 100, change);
            }
            execute_transaction(&effects, &mut ks, at).unwrap()
        };
        assert_eq!(outcome("", 100), Reply::ok());
        assert_eq!(outcome("SET unrelated 1", 100), Reply::ok());
        assert_eq!(outcome("SET a 1", 100), Reply::NullArray);
        assert_eq!(outcome("DEL a", 100), Reply::NullArray);
        assert_eq!(outcome("SET nothing 1", 100), Reply::NullArray);
        assert_eq!(outcome("INCR counter", 100), Reply::NullArray);
        // Expired by the time the effects apply.
        assert_eq!(outcome("", 1_100), Reply::NullArray);
    }

    #[test]
    fn reads_only_leave_no_effects() {
        let mut base = MemKeyspace::default();
        apply(&mut base, 100, "SET a 1");
        let (replies, effects) = speculate(&base, 100, &["GET a", "STRLEN a"]);
        assert_eq!(replies, [bulk("1"), Reply::Integer(1)]);
        assert!(effects.is_none());
    }

    /// Large collections are dropped with a range deletion; the overlay
    /// hides the snapshot's sub-keys under it and shows the ones written
    /// after.
    #[test]
    fn a_dropped_large_collection_is_gone_and_can_be_rebuilt() {
        let mut base = MemKeyspace::default();
        let members: Vec<String> = (0..200).map(|i| format!("m{i}")).collect();
        apply(&mut base, 100, &format!("SADD big {}", members.join(" ")));
        let (replies, _) = speculate(
            &base,
            100,
            &[
                "SCARD big",
                "DEL big",
                "SCARD big",
                "SADD big only",
                "SMEMBERS big",
            ],
        );
        assert_eq!(
            replies,
            [
                Reply::Integer(200),
                Reply::Integer(1),
                Reply::Integer(0),
                Reply::Integer(1),
                Reply::Set(vec![bulk("only")]),
            ]
        );
    }
}
