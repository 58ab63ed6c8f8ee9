//! The command layer's storage traits over the store: the apply-time
//! keyspace of one shard (writes staged in its apply batch) and read views.

use std::ops::ControlFlow;

use elastickv_redis::keyspace::{
    KeyCounts, KeyspaceRead, KeyspaceScan, KeyspaceWrite, ScanVisitor, StorageError,
};
use elastickv_router::{slot_for_key, slot_range};
use elastickv_store::{ApplyBatch, DataReader, StoreError};

fn storage(e: StoreError) -> StorageError {
    StorageError(e.to_string())
}

/// One shard's keys during apply.
pub struct ApplyKeyspace<'a> {
    batch: &'a mut ApplyBatch,
    shards: u32,
    counts: KeyCounts,
}

impl<'a> ApplyKeyspace<'a> {
    pub fn new(batch: &'a mut ApplyBatch, shards: u32) -> Self {
        let state = batch.state();
        let counts = KeyCounts {
            keys: state.keys,
            expires: state.expires,
        };
        ApplyKeyspace {
            batch,
            shards,
            counts,
        }
    }

    /// Stages the key counts with the batch.
    pub fn finish(self) {
        let state = self.batch.state_mut();
        state.keys = self.counts.keys;
        state.expires = self.counts.expires;
    }
}

impl KeyspaceRead for ApplyKeyspace<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.batch.get_meta(slot_for_key(key), key).map_err(storage)
    }
}

impl KeyspaceWrite for ApplyKeyspace<'_> {
    fn put(&mut self, key: &[u8], record: Vec<u8>) -> Result<(), StorageError> {
        self.batch
            .put_meta(slot_for_key(key), key, record)
            .map_err(storage)
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StorageError> {
        self.batch
            .delete_meta(slot_for_key(key), key)
            .map_err(storage)
    }

    fn index_expire(&mut self, key: &[u8], at_ms: u64) -> Result<(), StorageError> {
        self.batch
            .put_expire(at_ms, slot_for_key(key), key)
            .map_err(storage)
    }

    fn unindex_expire(&mut self, key: &[u8], at_ms: u64) -> Result<(), StorageError> {
        self.batch
            .delete_expire(at_ms, slot_for_key(key), key)
            .map_err(storage)
    }

    fn clear(&mut self) -> Result<(), StorageError> {
        let (first, end) = slot_range(self.batch.shard(), self.shards);
        self.batch.clear(first, end).map_err(storage)?;
        self.counts = KeyCounts::default();
        Ok(())
    }

    fn counts(&mut self) -> &mut KeyCounts {
        &mut self.counts
    }

    fn clock_ms(&self) -> u64 {
        self.batch.state().time_ms
    }

    fn set_clock_ms(&mut self, now_ms: u64) {
        self.batch.state_mut().time_ms = now_ms;
    }

    fn dedup_get(
        &self,
        generation: u64,
        origin: u64,
        seq: u64,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        self.batch
            .get_dedup(generation, origin, seq)
            .map_err(storage)
    }

    fn dedup_put(
        &mut self,
        generation: u64,
        origin: u64,
        seq: u64,
        record: Vec<u8>,
    ) -> Result<(), StorageError> {
        self.batch
            .put_dedup(generation, origin, seq, record)
            .map_err(storage)
    }

    fn dedup_purge(&mut self, generation: u64) -> Result<(), StorageError> {
        self.batch.purge_dedup(generation).map_err(storage)
    }
}

/// A read view of applied data.
pub struct ReadView<'a> {
    pub reader: DataReader<'a>,
}

impl KeyspaceRead for ReadView<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.reader
            .get_meta(slot_for_key(key), key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(storage)
    }
}

impl KeyspaceScan for ReadView<'_> {
    fn scan(
        &self,
        from_slot: u32,
        end_slot: u32,
        visit: &mut ScanVisitor<'_>,
    ) -> Result<(), StorageError> {
        self.reader
            .scan_meta(from_slot, end_slot, |slot, key, value| {
                visit(slot, key, value) == ControlFlow::Continue(())
            })
            .map_err(storage)
    }
}
