//! The storage a command runs against, as the command layer sees it: user
//! keys mapped to encoded [`Record`](crate::record::Record)s. Implemented by
//! the node over the store (one shard at a time) and by [`MemKeyspace`] in
//! tests and fuzzing.

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

/// Read access to one shard's keys.
pub trait KeyspaceRead {
    /// The encoded record of `key`, expired or not.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;
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
}

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
}

impl KeyspaceRead for MemKeyspace {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.records.get(key).cloned())
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
}
