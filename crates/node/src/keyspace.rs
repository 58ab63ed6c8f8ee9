//! The command layer's storage traits over the store: the apply-time
//! keyspace of one shard (writes staged in its apply batch) and read views.

use std::ops::ControlFlow;

use elastickv_redis::keyspace::{
    KeyCounts, KeyspaceRead, KeyspaceScan, KeyspaceWrite, RegistryRecords, ScanVisitor,
    StorageError, SubRange, SubVisitor,
};
use elastickv_router::{slot_for_key, slot_range};
use elastickv_store::{ApplyBatch, DataReader, StoreError};

use crate::pubsub::PubSub;
use crate::waiters::KeyWaiters;

/// Messages applied this long after they were published are not
/// delivered (see `ApplyKeyspace::publish`).
const PUBLISH_STALE_MS: u64 = 5_000;

fn storage(e: StoreError) -> StorageError {
    StorageError(e.to_string())
}

/// One shard's keys during apply of the entry at one log index.
pub struct ApplyKeyspace<'a> {
    batch: &'a mut ApplyBatch,
    shards: u32,
    counts: KeyCounts,
    /// Versions handed out so far by this entry.
    versions: u64,
    index: u64,
    /// Clients blocked on keys this entry writes.
    waiters: Option<&'a KeyWaiters>,
    /// This node's subscribers, for `Publish` entries.
    pubsub: Option<&'a PubSub>,
}

impl<'a> ApplyKeyspace<'a> {
    pub fn new(batch: &'a mut ApplyBatch, shards: u32, index: u64) -> Self {
        let state = batch.state();
        let counts = KeyCounts {
            keys: state.keys,
            expires: state.expires,
        };
        ApplyKeyspace {
            batch,
            shards,
            counts,
            versions: 0,
            index,
            waiters: None,
            pubsub: None,
        }
    }

    /// Hands `Publish` entries to this node's subscribers.
    pub fn with_pubsub(mut self, pubsub: &'a PubSub) -> Self {
        self.pubsub = Some(pubsub);
        self
    }

    /// Wakes clients blocked on the keys this entry stores.
    pub fn with_waiters(mut self, waiters: &'a KeyWaiters) -> Self {
        self.waiters = Some(waiters);
        self
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

    fn sub_get(
        &self,
        key: &[u8],
        version: u64,
        sub: &[u8],
    ) -> Result<Option<Vec<u8>>, StorageError> {
        self.batch
            .get_sub(slot_for_key(key), key, version, sub)
            .map_err(storage)
    }

    fn sub_scan(
        &self,
        key: &[u8],
        version: u64,
        range: SubRange<'_>,
        visit: &mut SubVisitor<'_>,
    ) -> Result<(), StorageError> {
        self.batch
            .scan_sub(
                slot_for_key(key),
                key,
                version,
                range.from,
                range.to,
                range.reverse,
                |sub, value| visit(sub, value).is_continue(),
            )
            .map_err(storage)
    }
}

impl KeyspaceWrite for ApplyKeyspace<'_> {
    fn publish(
        &mut self,
        channel: &[u8],
        message: &[u8],
        sharded: bool,
        published_ms: u64,
    ) -> usize {
        // A node applying old entries (catching up after a restart or a
        // partition) does not hand its current subscribers messages
        // published before they could have subscribed.
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        if now_ms.saturating_sub(published_ms) > PUBLISH_STALE_MS {
            return 0;
        }
        self.pubsub
            .map_or(0, |pubsub| pubsub.publish(channel, message, sharded))
    }

    fn put(&mut self, key: &[u8], record: Vec<u8>) -> Result<(), StorageError> {
        self.batch
            .put_meta(slot_for_key(key), key, record)
            .map_err(storage)?;
        if let Some(waiters) = self.waiters {
            waiters.touched(key);
        }
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StorageError> {
        self.batch
            .delete_meta(slot_for_key(key), key)
            .map_err(storage)
    }

    fn sub_put(
        &mut self,
        key: &[u8],
        version: u64,
        sub: &[u8],
        value: Vec<u8>,
    ) -> Result<(), StorageError> {
        self.batch
            .put_sub(slot_for_key(key), key, version, sub, value)
            .map_err(storage)
    }

    fn sub_delete(&mut self, key: &[u8], version: u64, sub: &[u8]) -> Result<(), StorageError> {
        self.batch
            .delete_sub(slot_for_key(key), key, version, sub)
            .map_err(storage)
    }

    fn sub_delete_version(&mut self, key: &[u8], version: u64) -> Result<(), StorageError> {
        self.batch
            .delete_sub_version(slot_for_key(key), key, version)
            .map_err(storage)
    }

    fn sub_delete_range(
        &mut self,
        key: &[u8],
        version: u64,
        from: &[u8],
        to: &[u8],
    ) -> Result<(), StorageError> {
        self.batch
            .delete_sub_range(slot_for_key(key), key, version, from, to)
            .map_err(storage)
    }

    /// The entry's log index, then a counter: unique on the shard and the
    /// same on every replica. (An entry would have to create 65 536
    /// collections before two could share a version, and even then only
    /// keys created by the same entry could.)
    fn new_version(&mut self) -> u64 {
        self.versions += 1;
        (self.index << 16) | (self.versions & 0xffff)
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

    fn registry_get(&self, name: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.batch.get_registry(name).map_err(storage)
    }

    fn registry_put(&mut self, name: &[u8], record: Vec<u8>) -> Result<(), StorageError> {
        self.batch.put_registry(name, record).map_err(storage)
    }

    fn registry_delete(&mut self, name: &[u8]) -> Result<(), StorageError> {
        self.batch.delete_registry(name).map_err(storage)
    }

    fn registry_scan(&self, prefix: &[u8]) -> Result<RegistryRecords, StorageError> {
        self.batch.scan_registry(prefix).map_err(storage)
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

    fn sub_get(
        &self,
        key: &[u8],
        version: u64,
        sub: &[u8],
    ) -> Result<Option<Vec<u8>>, StorageError> {
        self.reader
            .get_sub(slot_for_key(key), key, version, sub)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(storage)
    }

    fn sub_scan(
        &self,
        key: &[u8],
        version: u64,
        range: SubRange<'_>,
        visit: &mut SubVisitor<'_>,
    ) -> Result<(), StorageError> {
        self.reader
            .scan_sub(
                slot_for_key(key),
                key,
                version,
                range.from,
                range.to,
                range.reverse,
                |sub, value| visit(sub, value).is_continue(),
            )
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
