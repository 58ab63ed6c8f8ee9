//! The storage a command runs against, as the command layer sees it: user
//! keys mapped to encoded [`Record`](crate::record::Record)s, and a
//! collection's sub-keys (its fields, members or elements) under (key,
//! version), ordered by their bytes. Implemented by the node over the
//! store (one shard at a time) and by [`MemKeyspace`] in tests and fuzzing.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use thiserror::Error;

/// A storage failure. Fatal for the node when it happens while applying
/// the log (see "Storage errors" in the README).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("storage failure: {0}")]
pub struct StorageError(pub String);

/// Per-shard counters kept with the data (DBSIZE, INFO keyspace).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyCounts {
    /// Keys stored, including expired ones not yet removed (as Redis).
    pub keys: u64,
    /// Keys with an expiry.
    pub expires: u64,
}

/// Registry records: `(name, record)` pairs in name order.
pub type RegistryRecords = Vec<(Vec<u8>, Vec<u8>)>;

/// Visitor of a collection's `(sub, value)` pairs.
pub type SubVisitor<'a> = dyn FnMut(&[u8], &[u8]) -> ControlFlow<()> + 'a;

/// Read access to one shard's keys.
pub trait KeyspaceRead {
    /// The encoded record of `key`, expired or not.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;

    /// Sub-key `sub` of version `version` of `key`'s collection.
    fn sub_get(
        &self,
        key: &[u8],
        version: u64,
        sub: &[u8],
    ) -> Result<Option<Vec<u8>>, StorageError>;

    /// Visits the `(sub, value)` pairs of version `version` of `key` whose
    /// sub is in `from..to` (`to` `None`: to the end), in byte order or in
    /// reverse, until `visit` breaks.
    fn sub_scan(
        &self,
        key: &[u8],
        version: u64,
        range: SubRange<'_>,
        visit: &mut SubVisitor<'_>,
    ) -> Result<(), StorageError>;
}

/// Which sub-keys of a collection a scan visits, and in which direction.
#[derive(Debug, Clone, Copy, Default)]
pub struct SubRange<'a> {
    pub from: &'a [u8],
    /// Exclusive; `None`: to the end.
    pub to: Option<&'a [u8]>,
    pub reverse: bool,
}

impl SubRange<'_> {
    /// Every sub-key, in order.
    pub const ALL: SubRange<'static> = SubRange {
        from: &[],
        to: None,
        reverse: false,
    };
}

/// Visitor of `(slot, key, encoded record)` during a scan.
pub type ScanVisitor<'a> = dyn FnMut(u16, &[u8], &[u8]) -> ControlFlow<()> + 'a;

/// Ordered iteration over one shard's keys, for KEYS and SCAN.
pub trait KeyspaceScan {
    /// Visits `(slot, key, record)` for every key of slots
    /// `from_slot..end_slot`, in slot order, until `visit` breaks.
    fn scan(
        &self,
        from_slot: u32,
        end_slot: u32,
        visit: &mut ScanVisitor<'_>,
    ) -> Result<(), StorageError>;
}

/// Write access to one shard's keys, during apply.
pub trait KeyspaceWrite: KeyspaceRead {
    fn put(&mut self, key: &[u8], record: Vec<u8>) -> Result<(), StorageError>;
    fn delete(&mut self, key: &[u8]) -> Result<(), StorageError>;
    fn sub_put(
        &mut self,
        key: &[u8],
        version: u64,
        sub: &[u8],
        value: Vec<u8>,
    ) -> Result<(), StorageError>;
    fn sub_delete(&mut self, key: &[u8], version: u64, sub: &[u8]) -> Result<(), StorageError>;
    /// Deletes every sub-key of version `version` of `key` at once.
    fn sub_delete_version(&mut self, key: &[u8], version: u64) -> Result<(), StorageError>;
    /// Deletes the sub-keys `from..to` of version `version` of `key` at
    /// once.
    fn sub_delete_range(
        &mut self,
        key: &[u8],
        version: u64,
        from: &[u8],
        to: &[u8],
    ) -> Result<(), StorageError>;
    /// A collection version never handed out before on this shard, the same
    /// on every replica (derived from the log position being applied).
    fn new_version(&mut self) -> u64;
    /// Records that `key` expires at `at_ms` (for active expiry).
    fn index_expire(&mut self, key: &[u8], at_ms: u64) -> Result<(), StorageError>;
    fn unindex_expire(&mut self, key: &[u8], at_ms: u64) -> Result<(), StorageError>;
    /// Removes every key of the shard.
    fn clear(&mut self) -> Result<(), StorageError>;
    fn counts(&mut self) -> &mut KeyCounts;
    /// The shard's replicated clock (Unix ms), kept with its data.
    fn clock_ms(&self) -> u64;
    fn set_clock_ms(&mut self, now_ms: u64);
    /// The record of request `(origin, seq)` kept in `generation`.
    fn dedup_get(
        &self,
        generation: u64,
        origin: u64,
        seq: u64,
    ) -> Result<Option<Vec<u8>>, StorageError>;
    fn dedup_put(
        &mut self,
        generation: u64,
        origin: u64,
        seq: u64,
        record: Vec<u8>,
    ) -> Result<(), StorageError>;
    /// Deletes the request records of generations before `generation`.
    fn dedup_purge(&mut self, generation: u64) -> Result<(), StorageError>;
    /// A registry record: replicated with the shard, outside its keys (the
    /// scripts and function libraries kept on shard 0; see
    /// [`crate::registry`]).
    fn registry_get(&self, name: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;
    fn registry_put(&mut self, name: &[u8], record: Vec<u8>) -> Result<(), StorageError>;
    fn registry_delete(&mut self, name: &[u8]) -> Result<(), StorageError>;
    /// The registry records whose names start with `prefix`, in name order.
    fn registry_scan(&self, prefix: &[u8]) -> Result<RegistryRecords, StorageError>;
    /// Hands a message published at `published_ms` (the proposer's clock)
    /// to this node's subscribers; how many received it. Nothing to do
    /// where there are none (tests).
    fn publish(
        &mut self,
        _channel: &[u8],
        _message: &[u8],
        _sharded: bool,
        _published_ms: u64,
    ) -> usize {
        0
    }
}

/// A sub-key of [`MemKeyspace`]: (key, version, sub).
pub type SubId = (Vec<u8>, u64, Vec<u8>);

/// An in-memory keyspace: the reference implementation for tests and
/// fuzzing. Its "slot" is always 0.
#[derive(Debug, Default, Clone)]
pub struct MemKeyspace {
    pub records: BTreeMap<Vec<u8>, Vec<u8>>,
    pub expire_index: BTreeMap<(u64, Vec<u8>), ()>,
    pub counts: KeyCounts,
    pub clock_ms: u64,
    /// Request records by (generation, origin, seq).
    pub dedup: BTreeMap<(u64, u64, u64), Vec<u8>>,
    /// Collections' sub-keys.
    pub subs: BTreeMap<SubId, Vec<u8>>,
    pub last_version: u64,
    /// Registry records by name.
    pub registry: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl KeyspaceRead for MemKeyspace {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.records.get(key).cloned())
    }

    fn sub_get(
        &self,
        key: &[u8],
        version: u64,
        sub: &[u8],
    ) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self
            .subs
            .get(&(key.to_vec(), version, sub.to_vec()))
            .cloned())
    }

    fn sub_scan(
        &self,
        key: &[u8],
        version: u64,
        range: SubRange<'_>,
        visit: &mut SubVisitor<'_>,
    ) -> Result<(), StorageError> {
        use std::ops::Bound;
        let lower = Bound::Included((key.to_vec(), version, range.from.to_vec()));
        let upper = match range.to {
            Some(to) => Bound::Excluded((key.to_vec(), version, to.to_vec())),
            None => match version.checked_add(1) {
                Some(next) => Bound::Excluded((key.to_vec(), next, Vec::new())),
                None => Bound::Unbounded,
            },
        };
        if range.to.is_some_and(|to| to <= range.from) {
            return Ok(());
        }
        let items = self.subs.range((lower, upper));
        let mut step = |(id, value): (&SubId, &Vec<u8>)| {
            let (k, v, sub) = id;
            if k.as_slice() != key || *v != version {
                return ControlFlow::Break(());
            }
            visit(sub, value)
        };
        if range.reverse {
            for item in items.rev() {
                if step(item).is_break() {
                    break;
                }
            }
        } else {
            for item in items {
                if step(item).is_break() {
                    break;
                }
            }
        }
        Ok(())
    }
}

impl KeyspaceScan for MemKeyspace {
    fn scan(
        &self,
        from_slot: u32,
        end_slot: u32,
        visit: &mut ScanVisitor<'_>,
    ) -> Result<(), StorageError> {
        if from_slot > 0 || end_slot == 0 {
            return Ok(());
        }
        for (k, v) in &self.records {
            if visit(0, k, v).is_break() {
                break;
            }
        }
        Ok(())
    }
}

impl KeyspaceWrite for MemKeyspace {
    fn put(&mut self, key: &[u8], record: Vec<u8>) -> Result<(), StorageError> {
        self.records.insert(key.to_vec(), record);
        Ok(())
    }
    fn delete(&mut self, key: &[u8]) -> Result<(), StorageError> {
        self.records.remove(key);
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
            .insert((key.to_vec(), version, sub.to_vec()), value);
        Ok(())
    }
    fn sub_delete(&mut self, key: &[u8], version: u64, sub: &[u8]) -> Result<(), StorageError> {
        self.subs.remove(&(key.to_vec(), version, sub.to_vec()));
        Ok(())
    }
    fn sub_delete_version(&mut self, key: &[u8], version: u64) -> Result<(), StorageError> {
        self.subs
            .retain(|(k, v, _), _| !(k.as_slice() == key && *v == version));
        Ok(())
    }
    fn sub_delete_range(
        &mut self,
        key: &[u8],
        version: u64,
        from: &[u8],
        to: &[u8],
    ) -> Result<(), StorageError> {
        self.subs.retain(|(k, v, sub), _| {
            !(k.as_slice() == key && *v == version && sub.as_slice() >= from && sub.as_slice() < to)
        });
        Ok(())
    }
    fn new_version(&mut self) -> u64 {
        self.last_version += 1;
        self.last_version
    }
    fn index_expire(&mut self, key: &[u8], at_ms: u64) -> Result<(), StorageError> {
        self.expire_index.insert((at_ms, key.to_vec()), ());
        Ok(())
    }
    fn unindex_expire(&mut self, key: &[u8], at_ms: u64) -> Result<(), StorageError> {
        self.expire_index.remove(&(at_ms, key.to_vec()));
        Ok(())
    }
    fn clear(&mut self) -> Result<(), StorageError> {
        self.records.clear();
        self.subs.clear();
        self.expire_index.clear();
        self.counts = KeyCounts::default();
        Ok(())
    }
    fn counts(&mut self) -> &mut KeyCounts {
        &mut self.counts
    }
    fn clock_ms(&self) -> u64 {
        self.clock_ms
    }
    fn set_clock_ms(&mut self, now_ms: u64) {
        self.clock_ms = now_ms;
    }
    fn dedup_get(
        &self,
        generation: u64,
        origin: u64,
        seq: u64,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.dedup.get(&(generation, origin, seq)).cloned())
    }
    fn dedup_put(
        &mut self,
        generation: u64,
        origin: u64,
        seq: u64,
        record: Vec<u8>,
    ) -> Result<(), StorageError> {
        self.dedup.insert((generation, origin, seq), record);
        Ok(())
    }
    fn dedup_purge(&mut self, generation: u64) -> Result<(), StorageError> {
        self.dedup = self.dedup.split_off(&(generation, 0, 0));
        Ok(())
    }
    fn registry_get(&self, name: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.registry.get(name).cloned())
    }
    fn registry_put(&mut self, name: &[u8], record: Vec<u8>) -> Result<(), StorageError> {
        self.registry.insert(name.to_vec(), record);
        Ok(())
    }
    fn registry_delete(&mut self, name: &[u8]) -> Result<(), StorageError> {
        self.registry.remove(name);
        Ok(())
    }
    fn registry_scan(&self, prefix: &[u8]) -> Result<RegistryRecords, StorageError> {
        Ok(self
            .registry
            .range(prefix.to_vec()..)
            .take_while(|(name, _)| name.starts_with(prefix))
            .map(|(name, record)| (name.clone(), record.clone()))
            .collect())
    }
}
