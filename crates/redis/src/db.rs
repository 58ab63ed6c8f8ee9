//! Key lookup and storage with Redis's expiry rules, over a keyspace.
//!
//! Reads treat an expired key as missing, judged by [`ReadTime`]. Writes do what Redis's
//! `lookupKeyWrite` does: an expired key found on the way is deleted first,
//! so a write command always starts from "missing" or "live". Storing and
//! deleting keep the shard's key counts and the expiry index in step.

use std::ops::ControlFlow;

use crate::keyspace::{KeyspaceRead, KeyspaceWrite, StorageError, SubRange, SubVisitor};
use crate::record::{Collection, Record};

/// Collections with at most this many sub-keys are deleted sub-key by
/// sub-key; larger ones with one range deletion. Both are bounded work;
/// point deletions keep the number of range tombstones (which every
/// lookup near them pays for until compaction) down to the deletions of
/// large collections.
pub const POINT_DELETE_MAX: usize = 64;

fn decode(key: &[u8], raw: &[u8]) -> Result<Record, StorageError> {
    Record::decode(raw)
        .map_err(|e| StorageError(format!("key {:?}: {e}", String::from_utf8_lossy(key))))
}

/// What a read knows of time, and what it decided with it.
///
/// Expiry is judged by the shard's replicated clock as of the read (the
/// same on every replica, and never going backward): a key expiring at or
/// before it is gone for every later read and write, on every node. A key
/// that the replicated clock still shows alive but this node's wall clock
/// shows expired is *undecided*: the caller should move the shard clock up
/// to its leader's wall clock (a tick through the log) and read again.
/// After that ([`ReadTime::settled`]), such a key counts as alive: the
/// leader's clock says so, whatever this node's says.
#[derive(Debug)]
pub struct ReadTime {
    replicated_ms: u64,
    local_ms: u64,
    settled: bool,
    undecided: std::cell::Cell<bool>,
}

impl ReadTime {
    /// `replicated_ms`: the shard clock of the state being read;
    /// `local_ms`: this node's wall clock.
    pub fn new(replicated_ms: u64, local_ms: u64) -> ReadTime {
        ReadTime {
            replicated_ms,
            local_ms,
            settled: false,
            undecided: std::cell::Cell::new(false),
        }
    }

    /// After the shard clock was moved up to the leader's: nothing is left
    /// undecided.
    pub fn settled(replicated_ms: u64, local_ms: u64) -> ReadTime {
        ReadTime {
            settled: true,
            ..ReadTime::new(replicated_ms, local_ms)
        }
    }

    /// One clock for both (tests, tools).
    pub fn at(now_ms: u64) -> ReadTime {
        ReadTime::new(now_ms, now_ms)
    }

    /// Whether a key expiring at `at_ms` is gone.
    pub fn is_expired(&self, at_ms: u64) -> bool {
        if at_ms <= self.replicated_ms {
            return true;
        }
        if at_ms <= self.local_ms && !self.settled {
            self.undecided.set(true);
        }
        false
    }

    /// "Now" for the remaining time to live of a live key expiring at
    /// `at_ms`: this node's clock where it agrees the key is alive,
    /// otherwise the shard clock (the key's last moments by the leader's).
    pub fn ttl_now(&self, at_ms: u64) -> u64 {
        let now = self.replicated_ms.max(self.local_ms);
        if at_ms > now { now } else { self.replicated_ms }
    }

    /// The shard clock of the state being read: "now" for writes that run
    /// over it ahead of the log (see [`crate::effects`]).
    pub fn now_ms(&self) -> u64 {
        self.replicated_ms
    }

    /// Whether some key was undecided: the answer must not be used.
    pub fn undecided(&self) -> bool {
        self.undecided.get()
    }
}

/// A read view at a point in time.
pub struct ReadView<'a, K: KeyspaceRead + ?Sized> {
    ks: &'a K,
    time: &'a ReadTime,
}

impl<'a, K: KeyspaceRead + ?Sized> ReadView<'a, K> {
    pub fn new(ks: &'a K, time: &'a ReadTime) -> Self {
        ReadView { ks, time }
    }

    pub fn time(&self) -> &ReadTime {
        self.time
    }

    /// The live record of `key`.
    pub fn lookup(&self, key: &[u8]) -> Result<Option<Record>, StorageError> {
        match self.ks.get(key)? {
            Some(raw) => {
                let record = decode(key, &raw)?;
                let expired = record.expire_at.is_some_and(|at| self.time.is_expired(at));
                Ok((!expired).then_some(record))
            }
            None => Ok(None),
        }
    }
}

/// Reading a collection's sub-keys: the same for a read at a point in time
/// and for a write at apply time, so code that only reads sub-keys serves
/// both.
pub trait SubRead {
    /// The live record of `key` (a write view leaves an expired one in
    /// place for now).
    fn record(&self, key: &[u8]) -> Result<Option<Record>, StorageError>;

    /// Sub-key `sub` of collection `c` stored at `key`.
    fn sub_get(
        &self,
        key: &[u8],
        c: &Collection,
        sub: &[u8],
    ) -> Result<Option<Vec<u8>>, StorageError>;

    /// Visits collection `c`'s `(sub, value)` pairs in `range`.
    fn sub_scan(
        &self,
        key: &[u8],
        c: &Collection,
        range: SubRange<'_>,
        visit: &mut SubVisitor<'_>,
    ) -> Result<(), StorageError>;
}

impl<K: KeyspaceRead + ?Sized> SubRead for ReadView<'_, K> {
    fn record(&self, key: &[u8]) -> Result<Option<Record>, StorageError> {
        self.lookup(key)
    }

    fn sub_get(
        &self,
        key: &[u8],
        c: &Collection,
        sub: &[u8],
    ) -> Result<Option<Vec<u8>>, StorageError> {
        self.ks.sub_get(key, c.version, sub)
    }

    fn sub_scan(
        &self,
        key: &[u8],
        c: &Collection,
        range: SubRange<'_>,
        visit: &mut SubVisitor<'_>,
    ) -> Result<(), StorageError> {
        self.ks.sub_scan(key, c.version, range, visit)
    }
}

impl<K: KeyspaceWrite + ?Sized> SubRead for WriteView<'_, K> {
    fn record(&self, key: &[u8]) -> Result<Option<Record>, StorageError> {
        match self.ks.get(key)? {
            Some(raw) => {
                let record = decode(key, &raw)?;
                Ok((!record.is_expired(self.now)).then_some(record))
            }
            None => Ok(None),
        }
    }

    fn sub_get(
        &self,
        key: &[u8],
        c: &Collection,
        sub: &[u8],
    ) -> Result<Option<Vec<u8>>, StorageError> {
        self.ks.sub_get(key, c.version, sub)
    }

    fn sub_scan(
        &self,
        key: &[u8],
        c: &Collection,
        range: SubRange<'_>,
        visit: &mut SubVisitor<'_>,
    ) -> Result<(), StorageError> {
        self.ks.sub_scan(key, c.version, range, visit)
    }
}

/// A write view at the timestamp of the entry being applied.
pub struct WriteView<'a, K: KeyspaceWrite + ?Sized> {
    ks: &'a mut K,
    now: u64,
    /// Collections whose members changed without their record being
    /// stored since: [`WriteView::finish`] gives them a new revision.
    touched: Vec<Vec<u8>>,
}

impl<'a, K: KeyspaceWrite + ?Sized> WriteView<'a, K> {
    pub fn new(ks: &'a mut K, now_ms: u64) -> Self {
        WriteView {
            ks,
            now: now_ms,
            touched: Vec::new(),
        }
    }

    /// Hands a published message to this node's subscribers.
    pub fn publish(&mut self, channel: &[u8], message: &[u8], sharded: bool) -> usize {
        self.ks.publish(channel, message, sharded, self.now)
    }

    /// Ends a command: every collection whose members it changed without
    /// storing its record gets a new revision, so WATCH sees the change.
    pub fn finish(&mut self) -> Result<(), StorageError> {
        for key in std::mem::take(&mut self.touched) {
            let Some(raw) = self.ks.get(&key)? else {
                continue;
            };
            let record = decode(&key, &raw)?;
            if record.as_collection().is_some() {
                let revision = self.ks.new_version();
                self.ks.put(&key, record.encode_as(revision))?;
            }
        }
        Ok(())
    }

    fn touch(&mut self, key: &[u8]) {
        if !self.touched.iter().any(|k| k == key) {
            self.touched.push(key.to_vec());
        }
    }

    fn untouch(&mut self, key: &[u8]) {
        self.touched.retain(|k| k != key);
    }

    pub fn now(&self) -> u64 {
        self.now
    }

    /// The live record of `key`; an expired one is deleted.
    pub fn lookup(&mut self, key: &[u8]) -> Result<Option<Record>, StorageError> {
        let Some(raw) = self.ks.get(key)? else {
            return Ok(None);
        };
        let record = decode(key, &raw)?;
        if record.is_expired(self.now) {
            self.remove(key, &record)?;
            return Ok(None);
        }
        Ok(Some(record))
    }

    pub fn sub_put(
        &mut self,
        key: &[u8],
        c: &Collection,
        sub: &[u8],
        value: Vec<u8>,
    ) -> Result<(), StorageError> {
        self.touch(key);
        self.ks.sub_put(key, c.version, sub, value)
    }

    pub fn sub_delete(
        &mut self,
        key: &[u8],
        c: &Collection,
        sub: &[u8],
    ) -> Result<(), StorageError> {
        self.touch(key);
        self.ks.sub_delete(key, c.version, sub)
    }

    /// Deletes collection `c`'s sub-keys `from..to` at once.
    pub fn sub_delete_range(
        &mut self,
        key: &[u8],
        c: &Collection,
        from: &[u8],
        to: &[u8],
    ) -> Result<(), StorageError> {
        self.touch(key);
        self.ks.sub_delete_range(key, c.version, from, to)
    }

    /// An empty collection of `kind` with a version of its own (lists
    /// start in the middle of the index space, so they can grow both
    /// ways).
    pub fn new_collection(&mut self, kind: crate::record::ValueType) -> Collection {
        Collection {
            kind,
            version: self.ks.new_version(),
            size: 0,
            head: if kind == crate::record::ValueType::List {
                1 << 63
            } else {
                0
            },
        }
    }

    /// Drops every sub-key of collection `c` at `key` (bounded work; see
    /// [`POINT_DELETE_MAX`]).
    fn drop_collection(&mut self, key: &[u8], c: &Collection) -> Result<(), StorageError> {
        let mut subs = Vec::new();
        let mut large = false;
        self.ks
            .sub_scan(key, c.version, SubRange::ALL, &mut |sub, _| {
                if subs.len() == POINT_DELETE_MAX {
                    large = true;
                    return ControlFlow::Break(());
                }
                subs.push(sub.to_vec());
                ControlFlow::Continue(())
            })?;
        if large {
            return self.ks.sub_delete_version(key, c.version);
        }
        for sub in subs {
            self.ks.sub_delete(key, c.version, &sub)?;
        }
        Ok(())
    }

    /// Copies collection `c` at `from` to a new version at `to` (RENAME and
    /// COPY of a collection: sub-keys are stored under their key, so this
    /// is linear in its size) and returns the copy's metadata.
    pub fn copy_collection(
        &mut self,
        from: &[u8],
        c: &Collection,
        to: &[u8],
    ) -> Result<Collection, StorageError> {
        let copy = Collection {
            version: self.ks.new_version(),
            ..*c
        };
        let mut subs = Vec::new();
        self.ks
            .sub_scan(from, c.version, SubRange::ALL, &mut |sub, value| {
                subs.push((sub.to_vec(), value.to_vec()));
                ControlFlow::Continue(())
            })?;
        for (sub, value) in subs {
            self.ks.sub_put(to, copy.version, &sub, value)?;
        }
        Ok(copy)
    }

    /// Stores `record` under `key`. `previous` must be what
    /// [`WriteView::lookup`] returned for `key` (nothing changed since). A
    /// collection `record` replaces (another value, or another version of
    /// a collection) loses its sub-keys.
    pub fn store(
        &mut self,
        key: &[u8],
        record: &Record,
        previous: Option<&Record>,
    ) -> Result<(), StorageError> {
        if let Some(old) = previous.and_then(Record::as_collection)
            && record
                .as_collection()
                .is_none_or(|new| new.version != old.version)
        {
            self.drop_collection(key, old)?;
        }
        let old_expiry = previous.and_then(|p| p.expire_at);
        if old_expiry != record.expire_at {
            if let Some(at) = old_expiry {
                self.ks.unindex_expire(key, at)?;
            }
            if let Some(at) = record.expire_at {
                self.ks.index_expire(key, at)?;
            }
        }
        // Every store is a change WATCH must see: a new revision.
        let revision = self.ks.new_version();
        self.ks.put(key, record.encode_as(revision))?;
        self.untouch(key);
        let counts = self.ks.counts();
        if previous.is_none() {
            counts.keys += 1;
        }
        match (old_expiry.is_some(), record.expire_at.is_some()) {
            (false, true) => counts.expires += 1,
            (true, false) => counts.expires = counts.expires.saturating_sub(1),
            _ => {}
        }
        Ok(())
    }

    /// Deletes `key`, whose stored record is `previous`, with its
    /// collection's sub-keys if it is one.
    pub fn remove(&mut self, key: &[u8], previous: &Record) -> Result<(), StorageError> {
        if let Some(c) = previous.as_collection() {
            self.drop_collection(key, c)?;
        }
        if let Some(at) = previous.expire_at {
            self.ks.unindex_expire(key, at)?;
        }
        self.ks.delete(key)?;
        let counts = self.ks.counts();
        counts.keys = counts.keys.saturating_sub(1);
        if previous.expire_at.is_some() {
            counts.expires = counts.expires.saturating_sub(1);
        }
        Ok(())
    }

    /// Deletes `key` if it is still due to expire at `expire_at` and that
    /// time has come; otherwise drops a stale index entry. Returns whether
    /// a key was deleted. This is how active expiry removes keys: through
    /// the log, with the proposer's clock.
    pub fn remove_if_expired(&mut self, key: &[u8], expire_at: u64) -> Result<bool, StorageError> {
        let record = match self.ks.get(key)? {
            Some(raw) => Some(decode(key, &raw)?),
            None => None,
        };
        match record {
            Some(record) if record.expire_at == Some(expire_at) => {
                if expire_at <= self.now {
                    self.remove(key, &record)?;
                    Ok(true)
                } else {
                    Ok(false)
                }
            }
            _ => {
                self.ks.unindex_expire(key, expire_at)?;
                Ok(false)
            }
        }
    }

    pub fn clear(&mut self) -> Result<(), StorageError> {
        self.ks.clear()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_by_the_shard_clock_with_the_local_clock_as_a_hint() {
        // Shard clock 1000, this node's clock 1500.
        let time = ReadTime::new(1_000, 1_500);
        assert!(time.is_expired(1_000));
        assert!(!time.undecided());
        assert!(!time.is_expired(2_000));
        assert!(!time.undecided());
        assert_eq!(time.ttl_now(2_000), 1_500);
        // Due by this node's clock only: alive for now, but undecided.
        assert!(!time.is_expired(1_200));
        assert!(time.undecided());
        // Once the shard clock was advanced (to the leader's 1100), it is
        // alive, with its remaining time by the shard clock.
        let settled = ReadTime::settled(1_100, 1_500);
        assert!(!settled.is_expired(1_200));
        assert!(!settled.undecided());
        assert_eq!(settled.ttl_now(1_200), 1_100);
        // A node whose clock is behind the shard's changes nothing.
        let behind = ReadTime::new(1_000, 400);
        assert!(behind.is_expired(900));
        assert_eq!(behind.ttl_now(1_300), 1_000);
    }
}
