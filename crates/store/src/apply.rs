//! State-machine writes and reads of shard data.
//!
//! [`ApplyBatch`] collects the writes of a run of committed entries and
//! commits them in one `WriteBatch` together with the shard's
//! [`ApplyState`], so data and applied index can never disagree. Commands
//! in the same run see each other's writes through in-memory overlays
//! (`INCR k` twice in one batch must read 1 the second time): a map of
//! meta records, and an ordered map of sub-keys merged with the database
//! when a collection is iterated.
//!
//! [`DataReader`] serves reads of applied data, optionally from a RocksDB
//! snapshot so that a multi-key read sees one point in time.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use raft::prelude::ConfState;
use rocksdb::{DB, DBPinnableSlice, ReadOptions, SnapshotWithThreadMode, WriteBatch};

use crate::db::Store;
use crate::error::{Result, StoreError};
use crate::keys::{
    DEDUP_KEY_LEN, StateKind, dedup_generation_start, dedup_key, expire_key, meta_key,
    raft_state_key, registry_key, registry_name, shard_end, shard_prefix, slot_start,
    split_expire_key, split_meta_key, sub_key, sub_prefix, sub_version_end,
};
use crate::log::encode_proto;
use crate::{ShardId, Slot};

const APPLY_STATE_VERSION: u8 = 2;
const APPLY_STATE_FIELDS: usize = 5;
const APPLY_STATE_LEN: usize = 1 + APPLY_STATE_FIELDS * 8;

/// What a shard's state machine has applied, persisted atomically with the
/// data it describes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyState {
    pub applied_index: u64,
    pub applied_term: u64,
    /// Keys stored in the shard, expired-but-not-yet-removed ones included
    /// (Redis counts those too).
    pub keys: u64,
    /// Keys with a time to live.
    pub expires: u64,
    /// The shard's clock: the state machine's "now" as of the applied
    /// index (Unix ms). Replicated, so the same on every replica, and it
    /// never goes backward.
    pub time_ms: u64,
}

impl ApplyState {
    pub fn encode(&self) -> [u8; APPLY_STATE_LEN] {
        let mut out = [0u8; APPLY_STATE_LEN];
        out[0] = APPLY_STATE_VERSION;
        for (i, v) in [
            self.applied_index,
            self.applied_term,
            self.keys,
            self.expires,
            self.time_ms,
        ]
        .iter()
        .enumerate()
        {
            out[1 + i * 8..9 + i * 8].copy_from_slice(&v.to_be_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8], shard: ShardId) -> Result<ApplyState> {
        let corrupt = |detail: String| StoreError::Corrupt {
            what: "apply state",
            shard,
            detail,
        };
        if bytes.len() != APPLY_STATE_LEN || bytes[0] != APPLY_STATE_VERSION {
            return Err(corrupt(format!(
                "{} bytes, version {:?}",
                bytes.len(),
                bytes.first()
            )));
        }
        let field = |i: usize| -> u64 {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[1 + i * 8..9 + i * 8]);
            u64::from_be_bytes(b)
        };
        Ok(ApplyState {
            applied_index: field(0),
            applied_term: field(1),
            keys: field(2),
            expires: field(3),
            time_ms: field(4),
        })
    }
}

impl Store {
    /// The shard's apply state; all zero for a shard that never applied.
    pub fn load_apply_state(&self, shard: ShardId) -> Result<ApplyState> {
        match self.db().get_pinned_cf(
            self.cf_state()?,
            raft_state_key(shard, StateKind::ApplyState),
        )? {
            Some(bytes) => ApplyState::decode(&bytes, shard),
            None => Ok(ApplyState::default()),
        }
    }

    /// Reads the latest applied data of any shard, with no regard for
    /// snapshot installs (tests and tools; the node reads through
    /// [`Store::shard_reader`]).
    pub fn reader(&self) -> DataReader<'_> {
        DataReader {
            store: self,
            snapshot: None,
            _gate: None,
        }
    }

    /// Reads `shard`'s applied data, never half of a snapshot install: the
    /// reader sees the shard as it was before an install or after it.
    /// With `point_in_time`, every lookup sees one point in time (and the
    /// install gate is held only while that point is taken, so a long scan
    /// never holds up an install); otherwise the gate is held as long as
    /// the reader lives, which must be short.
    pub fn shard_reader(&self, shard: ShardId, point_in_time: bool) -> DataReader<'_> {
        let gate = self.install_gate(shard);
        if point_in_time {
            let _installs_wait = gate.read();
            DataReader {
                store: self,
                snapshot: Some(self.db().snapshot()),
                _gate: None,
            }
        } else {
            DataReader {
                store: self,
                snapshot: None,
                _gate: Some(gate.read_arc()),
            }
        }
    }

    /// The shard's registry records whose names start with `prefix`, as
    /// last applied, in name order.
    pub fn registry(&self, shard: ShardId, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let start = registry_key(shard, prefix);
        let mut out = Vec::new();
        let iter = self.db().iterator_cf(
            self.cf_dedup()?,
            rocksdb::IteratorMode::From(&start, rocksdb::Direction::Forward),
        );
        for item in iter {
            let (key, value) = item?;
            if !key.starts_with(&start) {
                break;
            }
            if let Some(name) = registry_name(&key) {
                out.push((name.to_vec(), value.to_vec()));
            }
        }
        Ok(out)
    }

    pub fn apply_batch(&self, shard: ShardId, state: ApplyState) -> ApplyBatch {
        ApplyBatch {
            store: self.clone(),
            shard,
            batch: WriteBatch::default(),
            overlay: HashMap::new(),
            sub_overlay: BTreeMap::new(),
            sub_cleared: Vec::new(),
            dedup_overlay: HashMap::new(),
            registry_overlay: BTreeMap::new(),
            cleared: false,
            state,
            conf_state: None,
        }
    }
}

/// Staged writes of one shard's state machine.
pub struct ApplyBatch {
    store: Store,
    shard: ShardId,
    batch: WriteBatch,
    /// Meta records written in this batch (`None`: deleted).
    overlay: HashMap<Vec<u8>, Option<Vec<u8>>>,
    /// Sub-keys written in this batch (`None`: deleted), in key order.
    sub_overlay: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Sub-key ranges deleted in this batch: what the database holds in
    /// them is gone (later writes are in `sub_overlay`). Compacted once
    /// the batch is written, to give their space back.
    sub_cleared: Vec<(Vec<u8>, Vec<u8>)>,
    /// Request records written in this batch.
    dedup_overlay: HashMap<[u8; DEDUP_KEY_LEN], Vec<u8>>,
    /// Registry records written in this batch (`None`: deleted), by name.
    registry_overlay: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// The shard's data was cleared earlier in this batch: whatever is on
    /// disk is gone.
    cleared: bool,
    state: ApplyState,
    conf_state: Option<ConfState>,
}

impl ApplyBatch {
    pub fn shard(&self) -> ShardId {
        self.shard
    }

    pub fn state(&self) -> &ApplyState {
        &self.state
    }

    pub fn state_mut(&mut self) -> &mut ApplyState {
        &mut self.state
    }

    pub fn get_meta(&self, slot: Slot, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let mk = meta_key(slot, key);
        if let Some(staged) = self.overlay.get(&mk) {
            return Ok(staged.clone());
        }
        if self.cleared {
            return Ok(None);
        }
        let db = self.store.db();
        Ok(db
            .get_pinned_cf(self.store.cf_meta()?, &mk)?
            .map(|v| v.to_vec()))
    }

    pub fn put_meta(&mut self, slot: Slot, key: &[u8], value: Vec<u8>) -> Result<()> {
        let mk = meta_key(slot, key);
        self.batch.put_cf(self.store.cf_meta()?, &mk, &value);
        self.overlay.insert(mk, Some(value));
        Ok(())
    }

    pub fn delete_meta(&mut self, slot: Slot, key: &[u8]) -> Result<()> {
        let mk = meta_key(slot, key);
        self.batch.delete_cf(self.store.cf_meta()?, &mk);
        self.overlay.insert(mk, None);
        Ok(())
    }

    pub fn put_expire(&mut self, expire_at_ms: u64, slot: Slot, key: &[u8]) -> Result<()> {
        let ek = expire_key(self.shard, expire_at_ms, slot, key);
        self.batch.put_cf(self.store.cf_expire()?, ek, []);
        Ok(())
    }

    pub fn delete_expire(&mut self, expire_at_ms: u64, slot: Slot, key: &[u8]) -> Result<()> {
        let ek = expire_key(self.shard, expire_at_ms, slot, key);
        self.batch.delete_cf(self.store.cf_expire()?, ek);
        Ok(())
    }

    /// Sub-key `sub` of version `version` of `key`'s collection.
    pub fn get_sub(
        &self,
        slot: Slot,
        key: &[u8],
        version: u64,
        sub: &[u8],
    ) -> Result<Option<Vec<u8>>> {
        let sk = sub_key(slot, key, version, sub);
        if let Some(staged) = self.sub_overlay.get(&sk) {
            return Ok(staged.clone());
        }
        if self.hides_from_disk(&sk) {
            return Ok(None);
        }
        Ok(self
            .store
            .db()
            .get_pinned_cf(self.store.cf_sub()?, &sk)?
            .map(|v| v.to_vec()))
    }

    pub fn put_sub(
        &mut self,
        slot: Slot,
        key: &[u8],
        version: u64,
        sub: &[u8],
        value: Vec<u8>,
    ) -> Result<()> {
        let sk = sub_key(slot, key, version, sub);
        self.batch.put_cf(self.store.cf_sub()?, &sk, &value);
        self.sub_overlay.insert(sk, Some(value));
        Ok(())
    }

    pub fn delete_sub(&mut self, slot: Slot, key: &[u8], version: u64, sub: &[u8]) -> Result<()> {
        let sk = sub_key(slot, key, version, sub);
        self.batch.delete_cf(self.store.cf_sub()?, &sk);
        self.sub_overlay.insert(sk, None);
        Ok(())
    }

    /// Deletes every sub-key of version `version` of `key` with one range
    /// deletion: O(1) whatever the collection's size. The space comes back
    /// when compaction reaches the range.
    pub fn delete_sub_version(&mut self, slot: Slot, key: &[u8], version: u64) -> Result<()> {
        let (start, end) = (
            sub_prefix(slot, key, version),
            sub_version_end(slot, key, version),
        );
        self.delete_sub_keys(start, end)
    }

    /// Deletes the sub-keys `from..to` of version `version` of `key` with
    /// one range deletion.
    pub fn delete_sub_range(
        &mut self,
        slot: Slot,
        key: &[u8],
        version: u64,
        from: &[u8],
        to: &[u8],
    ) -> Result<()> {
        let (start, end) = (
            sub_key(slot, key, version, from),
            sub_key(slot, key, version, to),
        );
        if start >= end {
            return Ok(());
        }
        self.delete_sub_keys(start, end)
    }

    fn delete_sub_keys(&mut self, start: Vec<u8>, end: Vec<u8>) -> Result<()> {
        self.batch
            .delete_range_cf(self.store.cf_sub()?, &start, &end);
        let staged: Vec<Vec<u8>> = self
            .sub_overlay
            .range(start.clone()..end.clone())
            .map(|(k, _)| k.clone())
            .collect();
        for k in staged {
            self.sub_overlay.remove(&k);
        }
        self.sub_cleared.push((start, end));
        Ok(())
    }

    /// Whether what the database holds at `sk` was deleted in this batch.
    fn hides_from_disk(&self, sk: &[u8]) -> bool {
        self.cleared
            || self
                .sub_cleared
                .iter()
                .any(|(start, end)| start.as_slice() <= sk && sk < end.as_slice())
    }

    /// Visits `(sub, value)` of version `version` of `key` for subs in
    /// `from..to` (`to` `None`: to the end), in order or in reverse, until
    /// `visit` returns false. Sees this batch's writes.
    #[allow(clippy::too_many_arguments)]
    pub fn scan_sub(
        &self,
        slot: Slot,
        key: &[u8],
        version: u64,
        from: &[u8],
        to: Option<&[u8]>,
        reverse: bool,
        mut visit: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        let Some((lower, upper, prefix_len)) = sub_bounds(slot, key, version, from, to) else {
            return Ok(());
        };
        let range = (
            Bound::Included(lower.clone()),
            Bound::Excluded(upper.clone()),
        );
        let mut staged = self.sub_overlay.range::<Vec<u8>, _>(range);
        let mut disk = DiskCursor::open(
            &self.store,
            None,
            self.store.cf_sub()?,
            &lower,
            &upper,
            reverse,
        );
        let mut next_staged = if reverse {
            staged.next_back()
        } else {
            staged.next()
        };
        loop {
            // Skip what this batch deleted from under the disk cursor.
            while let Some(k) = disk.key() {
                if self.hides_from_disk(k) {
                    disk.advance();
                } else {
                    break;
                }
            }
            let disk_key = disk.key().map(<[u8]>::to_vec);
            let take_staged = match (&next_staged, &disk_key) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((sk, _)), Some(dk)) => {
                    if reverse {
                        sk.as_slice() >= dk.as_slice()
                    } else {
                        sk.as_slice() <= dk.as_slice()
                    }
                }
            };
            if take_staged {
                let Some((sk, value)) = next_staged else {
                    break;
                };
                if disk_key.as_deref() == Some(sk.as_slice()) {
                    // The staged write replaces what the disk holds.
                    disk.advance();
                }
                if let Some(value) = value
                    && !visit(&sk[prefix_len..], value)
                {
                    return Ok(());
                }
                next_staged = if reverse {
                    staged.next_back()
                } else {
                    staged.next()
                };
            } else {
                let (Some(k), Some(v)) = (disk.key(), disk.value()) else {
                    break;
                };
                if !visit(&k[prefix_len..], v) {
                    return Ok(());
                }
                disk.advance();
            }
        }
        disk.status()
    }

    /// The record of request `(origin, seq)` kept in `generation`.
    pub fn get_dedup(&self, generation: u64, origin: u64, seq: u64) -> Result<Option<Vec<u8>>> {
        let key = dedup_key(self.shard, generation, origin, seq);
        if let Some(record) = self.dedup_overlay.get(&key) {
            return Ok(Some(record.clone()));
        }
        Ok(self
            .store
            .db()
            .get_pinned_cf(self.store.cf_dedup()?, key)?
            .map(|v| v.to_vec()))
    }

    pub fn put_dedup(
        &mut self,
        generation: u64,
        origin: u64,
        seq: u64,
        record: Vec<u8>,
    ) -> Result<()> {
        let key = dedup_key(self.shard, generation, origin, seq);
        self.batch.put_cf(self.store.cf_dedup()?, key, &record);
        self.dedup_overlay.insert(key, record);
        Ok(())
    }

    /// Deletes the shard's request records of generations before
    /// `generation`, as part of this batch (so every replica drops the same
    /// records at the same log position).
    pub fn purge_dedup(&mut self, generation: u64) -> Result<()> {
        let (start, end) = (
            dedup_generation_start(self.shard, 0),
            dedup_generation_start(self.shard, generation),
        );
        self.batch
            .delete_range_cf(self.store.cf_dedup()?, start, end);
        self.dedup_overlay
            .retain(|key, _| key.as_slice() >= end.as_slice());
        Ok(())
    }

    /// A registry record of the shard (see `keys::registry_key`).
    pub fn get_registry(&self, name: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(record) = self.registry_overlay.get(name) {
            return Ok(record.clone());
        }
        Ok(self
            .store
            .db()
            .get_pinned_cf(self.store.cf_dedup()?, registry_key(self.shard, name))?
            .map(|v| v.to_vec()))
    }

    pub fn put_registry(&mut self, name: &[u8], record: Vec<u8>) -> Result<()> {
        self.batch.put_cf(
            self.store.cf_dedup()?,
            registry_key(self.shard, name),
            &record,
        );
        self.registry_overlay.insert(name.to_vec(), Some(record));
        Ok(())
    }

    pub fn delete_registry(&mut self, name: &[u8]) -> Result<()> {
        self.batch
            .delete_cf(self.store.cf_dedup()?, registry_key(self.shard, name));
        self.registry_overlay.insert(name.to_vec(), None);
        Ok(())
    }

    /// The registry records whose names start with `prefix`, in name
    /// order, with this batch's changes.
    pub fn scan_registry(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut records: BTreeMap<Vec<u8>, Vec<u8>> = self
            .store
            .registry(self.shard, prefix)?
            .into_iter()
            .collect();
        for (name, record) in &self.registry_overlay {
            if !name.starts_with(prefix) {
                continue;
            }
            match record {
                Some(value) => records.insert(name.clone(), value.clone()),
                None => records.remove(name),
            };
        }
        Ok(records.into_iter().collect())
    }

    /// Deletes every record of the shard, which owns slots
    /// `first_slot..end_slot`.
    pub fn clear(&mut self, first_slot: u32, end_slot: u32) -> Result<()> {
        let (start, end) = (slot_start(first_slot), slot_start(end_slot));
        self.batch
            .delete_range_cf(self.store.cf_meta()?, &start, &end);
        self.batch
            .delete_range_cf(self.store.cf_sub()?, &start, &end);
        self.sub_overlay.clear();
        self.batch.delete_range_cf(
            self.store.cf_expire()?,
            shard_prefix(self.shard).as_slice(),
            shard_end(self.shard).as_slice(),
        );
        self.overlay.clear();
        self.cleared = true;
        self.state.keys = 0;
        self.state.expires = 0;
        Ok(())
    }

    /// Persists `cs` with this batch (a configuration change was applied).
    pub fn set_conf_state(&mut self, cs: ConfState) {
        self.conf_state = Some(cs);
    }

    /// Records the last entry this batch covers.
    pub fn set_applied(&mut self, index: u64, term: u64) {
        self.state.applied_index = index;
        self.state.applied_term = term;
    }

    /// Writes the staged data with the apply state, without waiting for the
    /// disk: everything here can be re-derived from the synced raft log.
    /// The batch can be reused afterwards.
    pub fn commit(&mut self) -> Result<()> {
        let state_cf = self.store.cf_state()?;
        self.batch.put_cf(
            state_cf,
            raft_state_key(self.shard, StateKind::ApplyState),
            self.state.encode(),
        );
        if let Some(cs) = self.conf_state.take() {
            self.batch.put_cf(
                state_cf,
                raft_state_key(self.shard, StateKind::ConfState),
                encode_proto(&cs, self.shard, "conf state")?,
            );
        }
        let batch = std::mem::take(&mut self.batch);
        self.overlay.clear();
        self.sub_overlay.clear();
        self.dedup_overlay.clear();
        self.cleared = false;
        self.store.write(batch, false)?;
        for (start, end) in self.sub_cleared.drain(..) {
            self.store.reclaim(start, end);
        }
        Ok(())
    }
}

/// Reads of applied shard data.
pub struct DataReader<'a> {
    store: &'a Store,
    snapshot: Option<SnapshotWithThreadMode<'a, DB>>,
    /// Keeps snapshot installs of the shard out while reading.
    _gate: Option<parking_lot::ArcRwLockReadGuard<parking_lot::RawRwLock, ()>>,
}

impl DataReader<'_> {
    fn read_options(&self) -> ReadOptions {
        let mut opts = ReadOptions::default();
        if let Some(snapshot) = &self.snapshot {
            opts.set_snapshot(snapshot);
        }
        opts
    }

    pub fn get_meta(&self, slot: Slot, key: &[u8]) -> Result<Option<DBPinnableSlice<'_>>> {
        let cf = self.store.cf_meta()?;
        let mk = meta_key(slot, key);
        Ok(match &self.snapshot {
            Some(snapshot) => snapshot.get_pinned_cf(cf, mk)?,
            None => self.store.db().get_pinned_cf(cf, mk)?,
        })
    }

    /// Sub-key `sub` of version `version` of `key`'s collection.
    pub fn get_sub(
        &self,
        slot: Slot,
        key: &[u8],
        version: u64,
        sub: &[u8],
    ) -> Result<Option<DBPinnableSlice<'_>>> {
        let cf = self.store.cf_sub()?;
        let sk = sub_key(slot, key, version, sub);
        Ok(match &self.snapshot {
            Some(snapshot) => snapshot.get_pinned_cf(cf, sk)?,
            None => self.store.db().get_pinned_cf(cf, sk)?,
        })
    }

    /// Visits `(sub, value)` of version `version` of `key` for subs in
    /// `from..to` (`to` `None`: to the end), in order or in reverse, until
    /// `visit` returns false.
    #[allow(clippy::too_many_arguments)]
    pub fn scan_sub(
        &self,
        slot: Slot,
        key: &[u8],
        version: u64,
        from: &[u8],
        to: Option<&[u8]>,
        reverse: bool,
        mut visit: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        let Some((lower, upper, prefix_len)) = sub_bounds(slot, key, version, from, to) else {
            return Ok(());
        };
        let mut disk = DiskCursor::open(
            self.store,
            self.snapshot.as_ref(),
            self.store.cf_sub()?,
            &lower,
            &upper,
            reverse,
        );
        while let (Some(k), Some(v)) = (disk.key(), disk.value()) {
            if !visit(&k[prefix_len..], v) {
                return Ok(());
            }
            disk.advance();
        }
        disk.status()
    }

    /// Visits meta records of slots `from_slot..end_slot` in key order until
    /// `visit` returns false.
    pub fn scan_meta(
        &self,
        from_slot: u32,
        end_slot: u32,
        mut visit: impl FnMut(Slot, &[u8], &[u8]) -> bool,
    ) -> Result<()> {
        let cf = self.store.cf_meta()?;
        let mut opts = self.read_options();
        opts.set_iterate_upper_bound(slot_start(end_slot));
        let mut it = self.store.db().raw_iterator_cf_opt(cf, opts);
        it.seek(slot_start(from_slot));
        while let (Some(key), Some(value)) = (it.key(), it.value()) {
            let Some((slot, user_key)) = split_meta_key(key) else {
                return Err(StoreError::Corrupt {
                    what: "meta key",
                    shard: 0,
                    detail: format!("{} byte key", key.len()),
                });
            };
            if !visit(slot, user_key, value) {
                return Ok(());
            }
            it.next();
        }
        Ok(it.status()?)
    }

    /// Up to `limit` keys of `shard` whose expiry index says they expire at
    /// or before `now_ms`: `(expire_at_ms, slot, key)`.
    pub fn expired_keys(
        &self,
        shard: ShardId,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Slot, Vec<u8>)>> {
        let cf = self.store.cf_expire()?;
        let mut opts = self.read_options();
        let mut upper = shard_prefix(shard).to_vec();
        upper.extend_from_slice(&now_ms.saturating_add(1).to_be_bytes());
        opts.set_iterate_upper_bound(upper);
        let mut it = self.store.db().raw_iterator_cf_opt(cf, opts);
        it.seek(shard_prefix(shard));
        let mut out = Vec::new();
        while let Some(key) = it.key() {
            if out.len() >= limit {
                break;
            }
            let Some((at, slot, user_key)) = split_expire_key(key) else {
                return Err(StoreError::Corrupt {
                    what: "expire key",
                    shard,
                    detail: format!("{} byte key", key.len()),
                });
            };
            out.push((at, slot, user_key.to_vec()));
            it.next();
        }
        it.status()?;
        Ok(out)
    }
}

/// The `sub` keys of version `version` of `key` whose sub is in
/// `from..to` (`to` `None`: to the version's end), as key bounds, with the
/// length of the prefix to strip from each key found; `None` when empty.
fn sub_bounds(
    slot: Slot,
    key: &[u8],
    version: u64,
    from: &[u8],
    to: Option<&[u8]>,
) -> Option<(Vec<u8>, Vec<u8>, usize)> {
    let prefix_len = sub_prefix(slot, key, version).len();
    let lower = sub_key(slot, key, version, from);
    let upper = match to {
        Some(to) => sub_key(slot, key, version, to),
        None => sub_version_end(slot, key, version),
    };
    (lower < upper).then_some((lower, upper, prefix_len))
}

/// A RocksDB iterator over `lower..upper` of one column family, forward
/// or in reverse.
struct DiskCursor<'a> {
    it: rocksdb::DBRawIteratorWithThreadMode<'a, DB>,
    reverse: bool,
}

impl<'a> DiskCursor<'a> {
    fn open(
        store: &'a Store,
        snapshot: Option<&SnapshotWithThreadMode<'a, DB>>,
        cf: &rocksdb::ColumnFamily,
        lower: &[u8],
        upper: &[u8],
        reverse: bool,
    ) -> DiskCursor<'a> {
        let mut opts = ReadOptions::default();
        if let Some(snapshot) = snapshot {
            opts.set_snapshot(snapshot);
        }
        opts.set_iterate_lower_bound(lower.to_vec());
        opts.set_iterate_upper_bound(upper.to_vec());
        let mut it = store.db().raw_iterator_cf_opt(cf, opts);
        if reverse {
            it.seek_to_last();
        } else {
            it.seek_to_first();
        }
        DiskCursor { it, reverse }
    }

    fn key(&self) -> Option<&[u8]> {
        self.it.key()
    }

    fn value(&self) -> Option<&[u8]> {
        self.it.value()
    }

    fn advance(&mut self) {
        if self.reverse {
            self.it.prev();
        } else {
            self.it.next();
        }
    }

    fn status(&self) -> Result<()> {
        Ok(self.it.status()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::StoreOptions;

    #[test]
    fn batch_sees_its_own_writes_and_commits_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let mut batch = store.apply_batch(0, ApplyState::default());
        batch.put_meta(7, b"k", b"v1".to_vec()).unwrap();
        assert_eq!(batch.get_meta(7, b"k").unwrap(), Some(b"v1".to_vec()));
        assert!(store.reader().get_meta(7, b"k").unwrap().is_none());
        batch.state_mut().keys = 1;
        batch.set_applied(5, 1);
        batch.commit().unwrap();
        assert_eq!(
            &store.reader().get_meta(7, b"k").unwrap().unwrap()[..],
            b"v1"
        );
        let state = store.load_apply_state(0).unwrap();
        assert_eq!(
            (state.applied_index, state.applied_term, state.keys),
            (5, 1, 1)
        );

        batch.delete_meta(7, b"k").unwrap();
        assert_eq!(batch.get_meta(7, b"k").unwrap(), None);
        batch.commit().unwrap();
        assert!(store.reader().get_meta(7, b"k").unwrap().is_none());
    }

    fn subs(
        scan: impl FnOnce(&mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<()>,
    ) -> Vec<(String, String)> {
        let mut out = Vec::new();
        scan(&mut |k, v| {
            out.push((
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            ));
            true
        })
        .unwrap();
        out
    }

    #[test]
    fn sub_keys_merge_staged_writes_with_the_disk_in_order_and_reverse() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let mut batch = store.apply_batch(0, ApplyState::default());
        for (sub, value) in [("a", "1"), ("c", "3"), ("e", "5")] {
            batch
                .put_sub(4, b"h", 7, sub.as_bytes(), value.into())
                .unwrap();
        }
        // Another key whose name extends this one's, and another version.
        batch.put_sub(4, b"hh", 7, b"b", b"x".to_vec()).unwrap();
        batch.put_sub(4, b"h", 8, b"b", b"y".to_vec()).unwrap();
        batch.commit().unwrap();

        batch.put_sub(4, b"h", 7, b"b", b"2".to_vec()).unwrap();
        batch.put_sub(4, b"h", 7, b"c", b"33".to_vec()).unwrap();
        batch.delete_sub(4, b"h", 7, b"e").unwrap();
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert_eq!(
            subs(|f| batch.scan_sub(4, b"h", 7, b"", None, false, f)),
            pairs(&[("a", "1"), ("b", "2"), ("c", "33")])
        );
        assert_eq!(
            subs(|f| batch.scan_sub(4, b"h", 7, b"b", Some(b"d"), true, f)),
            pairs(&[("c", "33"), ("b", "2")])
        );
        assert_eq!(batch.get_sub(4, b"h", 7, b"e").unwrap(), None);
        assert_eq!(
            batch.get_sub(4, b"h", 7, b"a").unwrap(),
            Some(b"1".to_vec())
        );

        // A whole version goes at once; later writes to it are seen.
        batch.delete_sub_version(4, b"h", 7).unwrap();
        assert!(subs(|f| batch.scan_sub(4, b"h", 7, b"", None, false, f)).is_empty());
        batch.put_sub(4, b"h", 7, b"z", b"26".to_vec()).unwrap();
        assert_eq!(
            subs(|f| batch.scan_sub(4, b"h", 7, b"", None, true, f)),
            pairs(&[("z", "26")])
        );
        let before = store.shard_reader(0, true);
        batch.commit().unwrap();
        let reader = store.reader();
        assert_eq!(
            subs(|f| reader.scan_sub(4, b"h", 7, b"", None, false, f)),
            pairs(&[("z", "26")])
        );
        assert_eq!(
            subs(|f| reader.scan_sub(4, b"hh", 7, b"", None, false, f)),
            pairs(&[("b", "x")])
        );
        assert_eq!(
            subs(|f| reader.scan_sub(4, b"h", 8, b"", None, false, f)),
            pairs(&[("b", "y")])
        );
        // A point-in-time reader taken before still sees the old version.
        assert_eq!(
            subs(|f| before.scan_sub(4, b"h", 7, b"", None, false, f)),
            pairs(&[("a", "1"), ("c", "3"), ("e", "5")])
        );
        assert_eq!(
            before.get_sub(4, b"h", 7, b"e").unwrap().as_deref(),
            Some(&b"5"[..])
        );
    }

    #[test]
    fn clear_hides_disk_data_but_not_later_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let mut batch = store.apply_batch(1, ApplyState::default());
        batch.put_meta(100, b"a", b"1".to_vec()).unwrap();
        batch.put_meta(100, b"b", b"2".to_vec()).unwrap();
        batch.put_expire(50, 100, b"a").unwrap();
        batch.commit().unwrap();

        batch.clear(0, 8192).unwrap();
        assert_eq!(batch.get_meta(100, b"a").unwrap(), None);
        batch.put_meta(100, b"b", b"3".to_vec()).unwrap();
        batch.commit().unwrap();
        let reader = store.reader();
        assert!(reader.get_meta(100, b"a").unwrap().is_none());
        assert_eq!(&reader.get_meta(100, b"b").unwrap().unwrap()[..], b"3");
        assert!(reader.expired_keys(1, u64::MAX - 1, 10).unwrap().is_empty());
    }

    #[test]
    fn scans_by_slot_range_and_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let mut batch = store.apply_batch(2, ApplyState::default());
        for (slot, key) in [(3u16, "c"), (1, "a"), (2, "b"), (9, "z")] {
            batch.put_meta(slot, key.as_bytes(), vec![]).unwrap();
        }
        batch.put_expire(10, 1, b"a").unwrap();
        batch.put_expire(30, 2, b"b").unwrap();
        batch.put_expire(5, 1, b"other-shard").unwrap();
        batch.commit().unwrap();
        let mut other = store.apply_batch(3, ApplyState::default());
        other.put_expire(1, 1, b"x").unwrap();
        other.commit().unwrap();

        let reader = store.shard_reader(2, true);
        let mut seen = Vec::new();
        reader
            .scan_meta(1, 9, |slot, key, _| {
                seen.push((slot, key.to_vec()));
                true
            })
            .unwrap();
        assert_eq!(
            seen,
            vec![(1, b"a".to_vec()), (2, b"b".to_vec()), (3, b"c".to_vec())]
        );
        let expired = reader.expired_keys(2, 10, 100).unwrap();
        assert_eq!(
            expired,
            vec![(5, 1, b"other-shard".to_vec()), (10, 1, b"a".to_vec())]
        );
        assert_eq!(reader.expired_keys(2, 100, 1).unwrap().len(), 1);
    }
}
