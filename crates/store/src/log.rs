//! One shard's raft log and raft state, behind `raft::Storage`.
//!
//! Writes are staged into a [`LogBatch`] shared by every shard on the raft
//! thread, then written with one synced RocksDB write per round: that single
//! fsync covers all proposals of all shards queued during the previous one
//! (group commit). The in-memory view (last index, recent entries) is
//! updated when a write is staged; raft-rs keeps those entries in its own
//! unstable log until the round's `advance`, so it never relies on them
//! being on disk before they are.

use std::collections::VecDeque;

use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState};
use raft::{GetEntriesContext, RaftState, StorageError as RaftStorageError};
use rocksdb::{ReadOptions, WriteBatch};

use crate::ShardId;
use crate::db::Store;
use crate::error::{Result, StoreError};
use crate::keys::{StateKind, raft_log_index, raft_log_key, raft_state_key, shard_prefix};

/// Recent entries kept in memory: the entries just appended are the ones
/// applied next and sent to followers next, so most reads never reach
/// RocksDB.
const CACHE_MAX_ENTRIES: usize = 4096;
const CACHE_MAX_BYTES: usize = 32 << 20;

/// A new cluster's shards start as if from a snapshot at this index and
/// term, holding the initial configuration. Entries up to it never exist
/// in any log, so a node added later always starts from a snapshot, which
/// carries the configuration, instead of replaying a log that does not.
pub const BOOTSTRAP_INDEX: u64 = 5;

/// Log writes of one raft round, for any number of shards.
pub struct LogBatch {
    store: Store,
    batch: WriteBatch,
}

impl LogBatch {
    pub fn new(store: &Store) -> LogBatch {
        LogBatch {
            store: store.clone(),
            batch: WriteBatch::default(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }

    pub fn size_in_bytes(&self) -> usize {
        self.batch.size_in_bytes()
    }

    /// Writes everything staged; `sync` waits for the disk.
    pub fn write(&mut self, sync: bool) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        self.store.write(batch, sync)
    }
}

/// One shard's raft log, hard state and conf state.
pub struct ShardLog {
    store: Store,
    shard: ShardId,
    hard_state: HardState,
    conf_state: ConfState,
    /// Index and term of the last entry removed by compaction (0 for a log
    /// that was never compacted).
    truncated_index: u64,
    truncated_term: u64,
    last_index: u64,
    /// Contiguous entries ending at `last_index`.
    cache: VecDeque<Entry>,
    cache_bytes: usize,
}

impl ShardLog {
    /// Opens a shard's log. A shard that has never run is bootstrapped with
    /// `initial_voters` as its configuration, at [`BOOTSTRAP_INDEX`]
    /// (written synced), like every other replica of a new cluster. With
    /// no initial voters (a node joining an existing cluster) it starts
    /// empty and waits for a leader's snapshot.
    pub fn open(store: &Store, shard: ShardId, initial_voters: &[u64]) -> Result<ShardLog> {
        let existing = read_proto::<ConfState>(store, shard, StateKind::ConfState, "conf state")?;
        if existing.is_none() && !initial_voters.is_empty() {
            bootstrap(store, shard, initial_voters)?;
        }
        let hard_state: HardState =
            read_proto(store, shard, StateKind::HardState, "hard state")?.unwrap_or_default();
        let conf_state = read_proto::<ConfState>(store, shard, StateKind::ConfState, "conf state")?
            .unwrap_or_default();
        let (truncated_index, truncated_term) = match store.db().get_pinned_cf(
            store.cf_state()?,
            raft_state_key(shard, StateKind::TruncatedState),
        )? {
            Some(v) => decode_u64_pair(&v).ok_or_else(|| StoreError::Corrupt {
                what: "truncated state",
                shard,
                detail: format!("{} bytes", v.len()),
            })?,
            None => (0, 0),
        };
        let mut log = ShardLog {
            store: store.clone(),
            shard,
            hard_state,
            conf_state,
            truncated_index,
            truncated_term,
            last_index: truncated_index,
            cache: VecDeque::new(),
            cache_bytes: 0,
        };
        log.last_index = log.find_last_index()?.unwrap_or(truncated_index);
        if log.hard_state.commit > log.last_index {
            return Err(StoreError::Corrupt {
                what: "hard state",
                shard,
                detail: format!(
                    "commit index {} is beyond the last log entry {}",
                    log.hard_state.commit, log.last_index
                ),
            });
        }
        Ok(log)
    }

    fn find_last_index(&self) -> Result<Option<u64>> {
        let mut it = self.store.db().raw_iterator_cf(self.store.cf_log()?);
        it.seek_for_prev(raft_log_key(self.shard, u64::MAX));
        it.status()?;
        match it.key() {
            Some(key) if key.starts_with(&shard_prefix(self.shard)) => Ok(raft_log_index(key)),
            _ => Ok(None),
        }
    }

    pub fn shard(&self) -> ShardId {
        self.shard
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// Records the conf state after a configuration change was applied; the
    /// caller persists it in the same apply batch as the applied index.
    pub fn set_conf_state(&mut self, cs: ConfState) {
        self.conf_state = cs;
    }

    pub fn first_index(&self) -> u64 {
        self.truncated_index + 1
    }

    pub fn last_index(&self) -> u64 {
        self.last_index
    }

    /// Stages new entries, replacing any conflicting suffix.
    pub fn append(&mut self, entries: &[Entry], batch: &mut LogBatch) -> Result<()> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(());
        };
        let cf = self.store.cf_log()?;
        for entry in entries {
            batch.batch.put_cf(
                cf,
                raft_log_key(self.shard, entry.index),
                encode_proto(entry, self.shard, "entry")?,
            );
        }
        if last.index < self.last_index {
            // A new leader overwrote our tail: the old suffix must not
            // survive a restart.
            batch.batch.delete_range_cf(
                cf,
                raft_log_key(self.shard, last.index + 1),
                raft_log_key(self.shard, self.last_index + 1),
            );
        }
        while self.cache.back().is_some_and(|e| e.index >= first.index) {
            if let Some(e) = self.cache.pop_back() {
                self.cache_bytes -= e.compute_size() as usize;
            }
        }
        if self
            .cache
            .back()
            .is_some_and(|e| e.index + 1 != first.index)
        {
            self.clear_cache();
        }
        for entry in entries {
            self.cache_bytes += entry.compute_size() as usize;
            self.cache.push_back(entry.clone());
        }
        while self.cache.len() > CACHE_MAX_ENTRIES || self.cache_bytes > CACHE_MAX_BYTES {
            match self.cache.pop_front() {
                Some(e) => self.cache_bytes -= e.compute_size() as usize,
                None => break,
            }
        }
        self.last_index = last.index;
        Ok(())
    }

    /// Stages the removal of every entry up to and including `to` (which
    /// must be applied), recording its index and term as the truncation
    /// point in the same write.
    pub fn compact(&mut self, to: u64, batch: &mut LogBatch) -> Result<()> {
        if to <= self.truncated_index {
            return Ok(());
        }
        if to > self.last_index {
            return Err(self.corrupt(format!(
                "cannot compact to {to}: the log ends at {}",
                self.last_index
            )));
        }
        let term = self.read_term(to)?;
        batch.batch.delete_range_cf(
            self.store.cf_log()?,
            raft_log_key(self.shard, self.truncated_index),
            raft_log_key(self.shard, to + 1),
        );
        batch.batch.put_cf(
            self.store.cf_state()?,
            raft_state_key(self.shard, StateKind::TruncatedState),
            encode_u64_pair(to, term),
        );
        while self.cache.front().is_some_and(|e| e.index <= to) {
            if let Some(e) = self.cache.pop_front() {
                self.cache_bytes -= e.compute_size() as usize;
            }
        }
        self.truncated_index = to;
        self.truncated_term = term;
        Ok(())
    }

    /// Adopts an installed snapshot at `index`/`term`: the log restarts
    /// after it (the store already removed the entries and recorded the
    /// truncation point, see [`Store::install_snapshot`]).
    pub fn snapshot_installed(&mut self, index: u64, term: u64, conf_state: ConfState) {
        self.truncated_index = index;
        self.truncated_term = term;
        self.last_index = index;
        self.conf_state = conf_state;
        if self.hard_state.commit < index {
            self.hard_state.commit = index;
        }
        self.clear_cache();
    }

    fn clear_cache(&mut self) {
        self.cache.clear();
        self.cache_bytes = 0;
    }

    /// Stages a new hard state.
    pub fn set_hard_state(&mut self, hs: HardState, batch: &mut LogBatch) -> Result<()> {
        batch.batch.put_cf(
            self.store.cf_state()?,
            raft_state_key(self.shard, StateKind::HardState),
            encode_proto(&hs, self.shard, "hard state")?,
        );
        self.hard_state = hs;
        Ok(())
    }

    /// Stages a commit index advance (from a light ready).
    pub fn set_commit(&mut self, commit: u64, batch: &mut LogBatch) -> Result<()> {
        let mut hs = self.hard_state.clone();
        hs.commit = commit;
        self.set_hard_state(hs, batch)
    }

    fn cached(&self, index: u64) -> Option<&Entry> {
        let front = self.cache.front()?.index;
        if index < front {
            return None;
        }
        self.cache.get(usize::try_from(index - front).ok()?)
    }

    fn read_entries(&self, low: u64, high: u64, max_size: Option<u64>) -> Result<Vec<Entry>> {
        let mut entries = Vec::with_capacity(usize::try_from(high - low).unwrap_or(0).min(1024));
        let mut size = 0u64;
        let cache_front = self.cache.front().map_or(u64::MAX, |e| e.index);
        let disk_high = high.min(cache_front.max(low));
        if low < disk_high {
            let mut opts = ReadOptions::default();
            opts.set_iterate_upper_bound(raft_log_key(self.shard, disk_high).to_vec());
            let mut it = self
                .store
                .db()
                .raw_iterator_cf_opt(self.store.cf_log()?, opts);
            it.seek(raft_log_key(self.shard, low));
            let mut expected = low;
            while let (Some(key), Some(value)) = (it.key(), it.value()) {
                if raft_log_index(key) != Some(expected) {
                    return Err(self.corrupt(format!("log entry {expected} is missing")));
                }
                let entry = Entry::parse_from_bytes(value)
                    .map_err(|e| self.corrupt(format!("entry {expected}: {e}")))?;
                size += u64::from(entry.compute_size());
                if !entries.is_empty() && max_size.is_some_and(|max| size > max) {
                    return Ok(entries);
                }
                entries.push(entry);
                expected += 1;
                it.next();
            }
            it.status()?;
            if expected != disk_high {
                return Err(self.corrupt(format!("log entry {expected} is missing")));
            }
        }
        for index in disk_high..high {
            let Some(entry) = self.cached(index) else {
                return Err(self.corrupt(format!("log entry {index} is missing from the cache")));
            };
            size += u64::from(entry.compute_size());
            if !entries.is_empty() && max_size.is_some_and(|max| size > max) {
                break;
            }
            entries.push(entry.clone());
        }
        Ok(entries)
    }

    fn read_term(&self, index: u64) -> Result<u64> {
        if let Some(entry) = self.cached(index) {
            return Ok(entry.term);
        }
        let Some(value) = self
            .store
            .db()
            .get_pinned_cf(self.store.cf_log()?, raft_log_key(self.shard, index))?
        else {
            return Err(self.corrupt(format!("log entry {index} is missing")));
        };
        let entry = Entry::parse_from_bytes(&value)
            .map_err(|e| self.corrupt(format!("entry {index}: {e}")))?;
        Ok(entry.term)
    }

    fn corrupt(&self, detail: String) -> StoreError {
        StoreError::Corrupt {
            what: "raft log",
            shard: self.shard,
            detail,
        }
    }
}

impl raft::Storage for ShardLog {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first_index() {
            return Err(raft::Error::Store(RaftStorageError::Compacted));
        }
        if high > self.last_index + 1 || low > high {
            return Err(raft::Error::Store(RaftStorageError::Unavailable));
        }
        self.read_entries(low, high, max_size.into())
            .map_err(to_raft_error)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.truncated_index {
            return Ok(self.truncated_term);
        }
        if idx < self.first_index() {
            return Err(raft::Error::Store(RaftStorageError::Compacted));
        }
        if idx > self.last_index {
            return Err(raft::Error::Store(RaftStorageError::Unavailable));
        }
        self.read_term(idx).map_err(to_raft_error)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(ShardLog::first_index(self))
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last_index)
    }

    /// Describes the shard's applied state as a snapshot. The data itself
    /// is not here: the engine streams it from a point-in-time view of the
    /// store taken when it sends the snapshot, and `data` carries only the
    /// key counts that go with it.
    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<raft::prelude::Snapshot> {
        let state = self
            .store
            .load_apply_state(self.shard)
            .map_err(to_raft_error)?;
        if state.applied_index < request_index || state.applied_index == 0 {
            return Err(raft::Error::Store(
                RaftStorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        let mut snapshot = raft::prelude::Snapshot {
            data: state.encode().to_vec().into(),
            ..Default::default()
        };
        let meta = snapshot.mut_metadata();
        meta.index = state.applied_index;
        meta.term = state.applied_term;
        meta.set_conf_state(self.conf_state.clone());
        Ok(snapshot)
    }
}

/// Writes a new shard's initial state: its configuration, and a log and
/// apply state that start after [`BOOTSTRAP_INDEX`].
fn bootstrap(store: &Store, shard: ShardId, voters: &[u64]) -> Result<()> {
    let mut batch = WriteBatch::default();
    stage_bootstrap(store, &mut batch, shard, voters)?;
    store.write(batch, true)
}

/// Stages a new shard's initial state into `batch`.
pub(crate) fn stage_bootstrap(
    store: &Store,
    batch: &mut WriteBatch,
    shard: ShardId,
    voters: &[u64],
) -> Result<()> {
    let cs = ConfState {
        voters: voters.to_vec(),
        ..Default::default()
    };
    let hs = HardState {
        term: BOOTSTRAP_INDEX,
        commit: BOOTSTRAP_INDEX,
        ..Default::default()
    };
    let apply = crate::apply::ApplyState {
        applied_index: BOOTSTRAP_INDEX,
        applied_term: BOOTSTRAP_INDEX,
        ..Default::default()
    };
    let cf = store.cf_state()?;
    batch.put_cf(
        cf,
        raft_state_key(shard, StateKind::ConfState),
        encode_proto(&cs, shard, "conf state")?,
    );
    batch.put_cf(
        cf,
        raft_state_key(shard, StateKind::HardState),
        encode_proto(&hs, shard, "hard state")?,
    );
    batch.put_cf(
        cf,
        raft_state_key(shard, StateKind::TruncatedState),
        encode_u64_pair(BOOTSTRAP_INDEX, BOOTSTRAP_INDEX),
    );
    batch.put_cf(
        cf,
        raft_state_key(shard, StateKind::ApplyState),
        apply.encode(),
    );
    Ok(())
}

fn to_raft_error(e: StoreError) -> raft::Error {
    raft::Error::Store(RaftStorageError::Other(Box::new(e)))
}

pub(crate) fn encode_proto<M: protobuf::Message>(
    msg: &M,
    shard: ShardId,
    what: &'static str,
) -> Result<Vec<u8>> {
    msg.write_to_bytes().map_err(|e| StoreError::Corrupt {
        what,
        shard,
        detail: format!("cannot encode: {e}"),
    })
}

fn read_proto<M: protobuf::Message>(
    store: &Store,
    shard: ShardId,
    kind: StateKind,
    what: &'static str,
) -> Result<Option<M>> {
    let Some(value) = store
        .db()
        .get_pinned_cf(store.cf_state()?, raft_state_key(shard, kind))?
    else {
        return Ok(None);
    };
    M::parse_from_bytes(&value)
        .map(Some)
        .map_err(|e| StoreError::Corrupt {
            what,
            shard,
            detail: e.to_string(),
        })
}

pub(crate) fn encode_u64_pair(a: u64, b: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&a.to_be_bytes());
    out[8..].copy_from_slice(&b.to_be_bytes());
    out
}

fn decode_u64_pair(bytes: &[u8]) -> Option<(u64, u64)> {
    let a: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    let b: [u8; 8] = bytes.get(8..16)?.try_into().ok()?;
    Some((u64::from_be_bytes(a), u64::from_be_bytes(b)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::StoreOptions;
    use raft::Storage as _;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: vec![index as u8; 10].into(),
            ..Default::default()
        }
    }

    /// A log that starts at index 1 (a joining node's, before its first
    /// snapshot), so tests can append from there.
    fn open(dir: &std::path::Path) -> (Store, ShardLog) {
        let store = Store::open(dir, &StoreOptions::default()).unwrap();
        let log = ShardLog::open(&store, 3, &[]).unwrap();
        (store, log)
    }

    #[test]
    fn fresh_shard_is_bootstrapped_with_voters() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let log = ShardLog::open(&store, 3, &[1, 2]).unwrap();
        let state = log.initial_state().unwrap();
        assert_eq!(state.conf_state.voters, vec![1, 2]);
        assert_eq!((state.hard_state.term, state.hard_state.commit), (5, 5));
        assert_eq!((log.first_index(), log.last_index()), (6, 5));
        assert_eq!(log.term(5).unwrap(), 5);
        assert_eq!(store.load_apply_state(3).unwrap().applied_index, 5);
        // Opening again does not bootstrap again.
        drop(log);
        let log = ShardLog::open(&store, 3, &[7]).unwrap();
        assert_eq!(log.conf_state().voters, vec![1, 2]);
        // A joining node's shard starts empty.
        let joining = ShardLog::open(&store, 4, &[]).unwrap();
        assert!(joining.conf_state().voters.is_empty());
        assert_eq!((joining.first_index(), joining.last_index()), (1, 0));
    }

    #[test]
    fn append_persists_across_reopen_and_truncates_conflicts() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, mut log) = open(dir.path());
            let mut batch = LogBatch::new(&store);
            log.append(
                &(1..=10).map(|i| entry(i, 1)).collect::<Vec<_>>(),
                &mut batch,
            )
            .unwrap();
            let hs = HardState {
                term: 2,
                commit: 5,
                ..Default::default()
            };
            log.set_hard_state(hs, &mut batch).unwrap();
            batch.write(true).unwrap();
            // A new leader replaces entries 6..=10 with 6..=7 of term 2.
            log.append(&[entry(6, 2), entry(7, 2)], &mut batch).unwrap();
            batch.write(true).unwrap();
            assert_eq!(log.last_index(), 7);
            assert_eq!(log.term(7).unwrap(), 2);
        }
        let (_store, log) = open(dir.path());
        assert_eq!(log.last_index(), 7);
        assert_eq!(log.hard_state().commit, 5);
        // Nothing cached after reopen: these come from RocksDB.
        let got = log
            .entries(1, 8, None, GetEntriesContext::empty(false))
            .unwrap();
        let terms: Vec<u64> = got.iter().map(|e| e.term).collect();
        assert_eq!(terms, vec![1, 1, 1, 1, 1, 2, 2]);
        assert_eq!(log.term(6).unwrap(), 2);
        assert!(matches!(
            log.term(8),
            Err(raft::Error::Store(RaftStorageError::Unavailable))
        ));
    }

    #[test]
    fn entries_respect_max_size_but_return_at_least_one() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mut log) = open(dir.path());
        let mut batch = LogBatch::new(&store);
        log.append(
            &(1..=5).map(|i| entry(i, 1)).collect::<Vec<_>>(),
            &mut batch,
        )
        .unwrap();
        batch.write(true).unwrap();
        let one = log
            .entries(1, 6, 1, GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(one.len(), 1);
        let size = u64::from(entry(1, 1).compute_size());
        let two = log
            .entries(1, 6, 2 * size, GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(two.len(), 2);
    }
}
