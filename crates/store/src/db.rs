//! Opening the node's RocksDB and checking that the data directory belongs
//! to this node and shard layout.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use parking_lot::RwLock;

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DB, Options, WriteBatch,
    WriteOptions,
};

use crate::ShardId;
use crate::error::{Result, StoreError};
use crate::keys::{
    ALL_CFS, CF_DEDUP, CF_DEFAULT, CF_EXPIRE, CF_META, CF_RAFT_LOG, CF_RAFT_STATE, CF_SUB,
    CLUSTER_ID_KEY, NODE_FORMAT_KEY, NODE_ID_KEY, NODE_SHARDS_KEY,
};

/// Peer addresses in the default column family: this prefix, then the
/// node id (big-endian u64).
const PEER_KEY_PREFIX: &[u8] = b"peer/";

fn pending_founder_key(node: u64) -> Vec<u8> {
    let mut key = PENDING_FOUNDER_PREFIX.to_vec();
    key.extend_from_slice(&node.to_be_bytes());
    key
}

fn peer_key(node: u64) -> Vec<u8> {
    let mut key = PEER_KEY_PREFIX.to_vec();
    key.extend_from_slice(&node.to_be_bytes());
    key
}

/// On-disk format this build writes and reads. 2: the shard clock in the
/// apply state, request records by generation. 3: raft log entries are
/// typed `LogEntry` messages (`proto/elastickv/v1/log.proto`).
pub const FORMAT_VERSION: u64 = 3;

/// RocksDB tuning the node exposes.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Shared block cache for data column families, in bytes.
    pub block_cache_bytes: usize,
    /// Memtable size per column family, in bytes.
    pub write_buffer_bytes: usize,
    /// All memtables together, in bytes: past it, RocksDB flushes the
    /// largest (a `WriteBufferManager`).
    pub memtable_budget_bytes: usize,
    /// Write-ahead log size that forces flushes (see [`Store::open`]).
    pub max_wal_bytes: u64,
    /// Background flush and compaction threads.
    pub background_jobs: i32,
    /// Bytes written per batch while a snapshot is installed.
    pub snapshot_install_batch_bytes: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            block_cache_bytes: 256 << 20,
            write_buffer_bytes: 64 << 20,
            memtable_budget_bytes: 256 << 20,
            max_wal_bytes: 128 << 20,
            background_jobs: 4,
            snapshot_install_batch_bytes: 4 << 20,
        }
    }
}

/// Who a data directory belongs to. Recorded on first start and checked on
/// every later one: a different shard count would silently move keys to
/// other shards, and a different node id would make this replica vote under
/// someone else's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeIdentity {
    pub node_id: u64,
    pub shards: u32,
}

/// What a data directory holds, as far as cluster membership goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    /// Nothing yet: a new data directory.
    Empty,
    /// Waiting to be added to a cluster (started with `--join`), whose id
    /// it learns from its first snapshot.
    Joining,
    /// A member of the cluster with this id.
    Member { cluster_id: u64 },
}

/// Founders of a cluster this node created and has not yet told so, in
/// the default column family: this prefix, then the node id.
const PENDING_FOUNDER_PREFIX: &[u8] = b"pending_founder/";

pub(crate) struct Inner {
    /// Shared with the reclaim thread, which must finish with it before
    /// the database closes (see [`Reclaimer`]).
    db: Arc<DB>,
    /// Staged snapshots being received or installed.
    pub(crate) snapshot_dir: std::path::PathBuf,
    pub(crate) snapshot_install_batch_bytes: usize,
    /// Per shard: readers hold it shared, a snapshot install exclusively,
    /// so no read sees a half-installed shard.
    install_gates: parking_lot::Mutex<HashMap<ShardId, Arc<RwLock<()>>>>,
    sync_write: WriteOptions,
    async_write: WriteOptions,
    /// The thread compacting the sub-key ranges of deleted collections
    /// (see [`Store::reclaim`]).
    reclaimer: parking_lot::Mutex<Option<Reclaimer>>,
}

/// A thread that compacts the sub-key ranges of deleted large
/// collections, so their disk space comes back soon rather than whenever
/// RocksDB's own compactions reach them. It holds the database, not the
/// store: the store's last handle stops it and waits for it before the
/// database closes, so no compaction outlives the store (or the process).
struct Reclaimer {
    queue: std::sync::mpsc::SyncSender<(Vec<u8>, Vec<u8>)>,
    thread: std::thread::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(Reclaimer { queue, thread }) = self.reclaimer.get_mut().take() {
            drop(queue);
            let _ = thread.join();
        }
    }
}

/// Deleted ranges queued for compaction at most; more are left to
/// RocksDB's own compactions.
const RECLAIM_QUEUE: usize = 1024;

/// The node's RocksDB. Cheap to clone; all clones share one database.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

fn spawn_reclaimer(db: Arc<DB>) -> Result<Reclaimer> {
    let (queue, queued) = std::sync::mpsc::sync_channel::<(Vec<u8>, Vec<u8>)>(RECLAIM_QUEUE);
    let thread = std::thread::Builder::new()
        .name("store-reclaim".into())
        .spawn(move || {
            while let Ok((start, end)) = queued.recv() {
                if let Some(cf) = db.cf_handle(CF_SUB) {
                    db.compact_range_cf(cf, Some(start.as_slice()), Some(end.as_slice()));
                }
            }
        })
        .map_err(|source| StoreError::Io {
            path: "(the store-reclaim thread)".into(),
            source,
        })?;
    Ok(Reclaimer { queue, thread })
}

impl Store {
    /// Opens (creating if needed) the database in `dir`.
    pub fn open(dir: &Path, options: &StoreOptions) -> Result<Store> {
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_max_background_jobs(options.background_jobs);
        // Replies wait for fsync; batching commits from many writers into
        // one WAL write is what makes group commit pay off.
        db_opts.set_enable_pipelined_write(true);
        db_opts.set_keep_log_file_num(4);
        // A write-ahead log file is kept until every column family with
        // data in it has flushed; `raft_state` (small, constantly
        // overwritten records) may take very long to fill a memtable and
        // would pin every log file meanwhile. Past this total, RocksDB
        // flushes whatever pins the oldest file, which bounds the WAL.
        db_opts.set_max_total_wal_size(options.max_wal_bytes);
        // Memtables together (seven column families, each allowed two)
        // stay under a budget, whatever the data size.
        db_opts.set_db_write_buffer_size(options.memtable_budget_bytes);

        let cache = Cache::new_lru_cache(options.block_cache_bytes)?;
        let descriptors = ALL_CFS.iter().map(|&name| {
            let mut cf_opts = Options::default();
            cf_opts.set_write_buffer_size(options.write_buffer_bytes);
            let mut table = BlockBasedOptions::default();
            table.set_block_cache(&cache);
            // Index and filter blocks stay beside the cache, in the table
            // readers: they grow with the data (36 MB at 10 million keys),
            // which `elastickv_rocksdb_table_readers_bytes` shows. Kept in
            // the cache (partitioned, so a large file's filter fits a
            // cache shard) they counted against its size, but random reads
            // over 10 million keys ran 3.4 times slower.
            if name == CF_META || name == CF_SUB || name == CF_DEDUP {
                // Point lookups dominate Redis traffic, and every write
                // looks up its request record, which is almost never
                // there: whole-key bloom filters in the files and in the
                // memtable answer those misses without a search.
                table.set_bloom_filter(10.0, false);
                cf_opts.set_memtable_prefix_bloom_ratio(0.1);
                cf_opts.set_memtable_whole_key_filtering(true);
            }
            cf_opts.set_block_based_table_factory(&table);
            ColumnFamilyDescriptor::new(name, cf_opts)
        });
        let db = DB::open_cf_descriptors(&db_opts, dir, descriptors)?;
        for name in ALL_CFS {
            if db.cf_handle(name).is_none() {
                return Err(StoreError::MissingColumnFamily(name));
            }
        }
        let mut sync_write = WriteOptions::default();
        sync_write.set_sync(true);
        let db = Arc::new(db);
        let reclaimer = spawn_reclaimer(db.clone())?;
        Ok(Store {
            inner: Arc::new(Inner {
                db,
                // Beside the database directory, inside the node's data
                // directory.
                snapshot_dir: dir
                    .parent()
                    .map_or_else(|| dir.join("snapshots"), |p| p.join("snapshots")),
                snapshot_install_batch_bytes: options.snapshot_install_batch_bytes.max(1),
                install_gates: parking_lot::Mutex::default(),
                sync_write,
                async_write: WriteOptions::default(),
                reclaimer: parking_lot::Mutex::new(Some(reclaimer)),
            }),
        })
    }

    /// Queues a deleted sub-key range for compaction; dropped when the
    /// queue is full (RocksDB compacts it eventually anyway).
    pub(crate) fn reclaim(&self, start: Vec<u8>, end: Vec<u8>) {
        if let Some(reclaimer) = self.inner.reclaimer.lock().as_ref() {
            let _ = reclaimer.queue.try_send((start, end));
        }
    }

    /// Checks `identity` against the one recorded in this data directory
    /// (if any), and says where the directory stands.
    pub fn membership(&self, identity: NodeIdentity) -> Result<Membership> {
        match self.read_u64(NODE_FORMAT_KEY)? {
            None => Ok(Membership::Empty),
            Some(found) if found != FORMAT_VERSION => Err(StoreError::UnsupportedFormat {
                found,
                supported: FORMAT_VERSION,
            }),
            Some(_) => {
                let shards = self.read_u64(NODE_SHARDS_KEY)?.unwrap_or(0);
                if shards != u64::from(identity.shards) {
                    return Err(StoreError::ShardCountMismatch {
                        recorded: u32::try_from(shards).unwrap_or(u32::MAX),
                        requested: identity.shards,
                    });
                }
                let node_id = self.read_u64(NODE_ID_KEY)?.unwrap_or(0);
                if node_id != identity.node_id {
                    return Err(StoreError::NodeIdMismatch {
                        recorded: node_id,
                        requested: identity.node_id,
                    });
                }
                Ok(match self.read_u64(CLUSTER_ID_KEY)? {
                    Some(cluster_id) if cluster_id != 0 => Membership::Member { cluster_id },
                    _ => Membership::Joining,
                })
            }
        }
    }

    fn stage_identity(&self, batch: &mut WriteBatch, identity: NodeIdentity) -> Result<()> {
        let cf = self.cf(CF_DEFAULT)?;
        batch.put_cf(cf, NODE_FORMAT_KEY, FORMAT_VERSION.to_be_bytes());
        batch.put_cf(cf, NODE_ID_KEY, identity.node_id.to_be_bytes());
        batch.put_cf(
            cf,
            NODE_SHARDS_KEY,
            u64::from(identity.shards).to_be_bytes(),
        );
        Ok(())
    }

    /// Records a new data directory as waiting to be added to a cluster.
    pub fn record_joining(&self, identity: NodeIdentity) -> Result<()> {
        let mut batch = WriteBatch::default();
        self.stage_identity(&mut batch, identity)?;
        self.write(batch, true)
    }

    /// Creates a new cluster's state on this node, in one synced write: the
    /// identity with `cluster_id`, every shard's raft state bootstrapped
    /// with `voters`, and the other founders still to be told (`pending`).
    /// A crash leaves either all of it or none.
    pub fn record_founding(
        &self,
        identity: NodeIdentity,
        cluster_id: u64,
        voters: &[u64],
        pending: &[u64],
    ) -> Result<()> {
        let mut batch = WriteBatch::default();
        self.stage_identity(&mut batch, identity)?;
        let cf = self.cf(CF_DEFAULT)?;
        batch.put_cf(cf, CLUSTER_ID_KEY, cluster_id.to_be_bytes());
        for &node in pending {
            batch.put_cf(cf, pending_founder_key(node), []);
        }
        for shard in 0..identity.shards {
            crate::log::stage_bootstrap(self, &mut batch, shard, voters)?;
        }
        self.write(batch, true)
    }

    /// Records the id of the cluster a joining node was added to.
    pub fn record_cluster_id(&self, cluster_id: u64) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.cf(CF_DEFAULT)?,
            CLUSTER_ID_KEY,
            cluster_id.to_be_bytes(),
        );
        self.write(batch, true)
    }

    /// Founders this node created the cluster with and has not yet told.
    pub fn pending_founders(&self) -> Result<Vec<u64>> {
        let mut nodes = Vec::new();
        let mut it = self.inner.db.raw_iterator_cf(self.cf(CF_DEFAULT)?);
        it.seek(PENDING_FOUNDER_PREFIX);
        while let Some(key) = it.key() {
            let Some(id) = key.strip_prefix(PENDING_FOUNDER_PREFIX) else {
                break;
            };
            let id: [u8; 8] = id.try_into().map_err(|_| StoreError::Corrupt {
                what: "pending founder",
                shard: 0,
                detail: format!("key of {} bytes", key.len()),
            })?;
            nodes.push(u64::from_be_bytes(id));
            it.next();
        }
        it.status()?;
        Ok(nodes)
    }

    /// Founder `node` acknowledged the cluster's creation.
    pub fn founder_told(&self, node: u64) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.delete_cf(self.cf(CF_DEFAULT)?, pending_founder_key(node));
        self.write(batch, true)
    }

    fn read_u64(&self, key: &[u8]) -> Result<Option<u64>> {
        let Some(value) = self.inner.db.get_pinned_cf(self.cf(CF_DEFAULT)?, key)? else {
            return Ok(None);
        };
        let bytes: [u8; 8] = value.as_ref().try_into().map_err(|_| StoreError::Corrupt {
            what: "node identity",
            shard: 0,
            detail: format!(
                "{} has {} bytes, expected 8",
                String::from_utf8_lossy(key),
                value.len()
            ),
        })?;
        Ok(Some(u64::from_be_bytes(bytes)))
    }

    pub(crate) fn db(&self) -> &DB {
        &self.inner.db
    }

    /// The gate between `shard`'s readers and its snapshot installs.
    pub(crate) fn install_gate(&self, shard: ShardId) -> Arc<RwLock<()>> {
        self.inner
            .install_gates
            .lock()
            .entry(shard)
            .or_default()
            .clone()
    }

    pub(crate) fn cf(&self, name: &'static str) -> Result<&ColumnFamily> {
        self.inner
            .db
            .cf_handle(name)
            .ok_or(StoreError::MissingColumnFamily(name))
    }

    pub(crate) fn cf_log(&self) -> Result<&ColumnFamily> {
        self.cf(CF_RAFT_LOG)
    }

    pub(crate) fn cf_state(&self) -> Result<&ColumnFamily> {
        self.cf(CF_RAFT_STATE)
    }

    pub(crate) fn cf_meta(&self) -> Result<&ColumnFamily> {
        self.cf(CF_META)
    }

    pub(crate) fn cf_expire(&self) -> Result<&ColumnFamily> {
        self.cf(CF_EXPIRE)
    }

    pub(crate) fn cf_sub(&self) -> Result<&ColumnFamily> {
        self.cf(CF_SUB)
    }

    pub(crate) fn cf_dedup(&self) -> Result<&ColumnFamily> {
        self.cf(CF_DEDUP)
    }

    /// Remembers where node `node` is reachable (learned from a membership
    /// change), so a restart can reach it without it being in `--peers`.
    pub fn record_peer(&self, node: u64, addr: &str) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_DEFAULT)?, peer_key(node), addr.as_bytes());
        self.write(batch, true)
    }

    /// Every address [`Store::record_peer`] recorded.
    pub fn recorded_peers(&self) -> Result<std::collections::BTreeMap<u64, String>> {
        let mut peers = std::collections::BTreeMap::new();
        let mut it = self.inner.db.raw_iterator_cf(self.cf(CF_DEFAULT)?);
        it.seek(PEER_KEY_PREFIX);
        while let (Some(key), Some(value)) = (it.key(), it.value()) {
            let Some(id) = key.strip_prefix(PEER_KEY_PREFIX) else {
                break;
            };
            let id: [u8; 8] = id.try_into().map_err(|_| StoreError::Corrupt {
                what: "peer address",
                shard: 0,
                detail: format!("key of {} bytes", key.len()),
            })?;
            peers.insert(
                u64::from_be_bytes(id),
                String::from_utf8_lossy(value).into_owned(),
            );
            it.next();
        }
        it.status()?;
        Ok(peers)
    }

    /// Writes every column family's memtable to SST files, so that
    /// opening the database again has no write-ahead log to replay.
    pub fn flush(&self) -> Result<()> {
        for name in ALL_CFS {
            self.inner.db.flush_cf(self.cf(name)?)?;
        }
        Ok(())
    }

    /// Writes a batch; `sync` waits for the WAL to reach the disk.
    pub(crate) fn write(&self, batch: WriteBatch, sync: bool) -> Result<()> {
        let opts = if sync {
            &self.inner.sync_write
        } else {
            &self.inner.async_write
        };
        Ok(self.inner.db.write_opt(batch, opts)?)
    }

    /// A digest of every key's data as reads see it (metadata records,
    /// expiry index and collection sub-keys, in order): replicas that
    /// applied the same log have the same digest, whatever their
    /// compactions left on disk. Reads the whole data set.
    pub fn data_digest(&self) -> Result<u64> {
        let mut digest = crc32fast::Hasher::new();
        let mut entries = 0u64;
        for name in [CF_META, CF_EXPIRE, CF_SUB] {
            let iter = self
                .inner
                .db
                .iterator_cf(self.cf(name)?, rocksdb::IteratorMode::Start);
            for item in iter {
                let (key, value) = item?;
                for part in [&key[..], &value[..]] {
                    digest.update(&(part.len() as u64).to_le_bytes());
                    digest.update(part);
                }
                entries += 1;
            }
        }
        Ok(u64::from(digest.finalize()) << 32 | (entries & 0xffff_ffff))
    }

    /// A RocksDB property, for INFO and metrics (e.g. `rocksdb.estimate-num-keys`).
    pub fn property(&self, name: &str) -> Option<String> {
        self.inner.db.property_value(name).ok().flatten()
    }

    /// An integer RocksDB property of every column family that reports it
    /// (e.g. `rocksdb.total-sst-files-size`), by family name.
    pub fn property_by_column_family(&self, name: &str) -> Vec<(&'static str, u64)> {
        ALL_CFS
            .iter()
            .filter_map(|&cf| {
                let handle = self.cf(cf).ok()?;
                let value = self.inner.db.property_int_value_cf(handle, name).ok()??;
                Some((cf, value))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory written by an older build (format 2: raft log entries
    /// before they were typed) is refused with one line saying what to do,
    /// before anything reads its log.
    #[test]
    fn a_directory_of_another_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let id = NodeIdentity {
            node_id: 1,
            shards: 4,
        };
        {
            let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
            store.record_joining(id).unwrap();
            let cf = store.cf(CF_DEFAULT).unwrap();
            store
                .db()
                .put_cf(cf, NODE_FORMAT_KEY, 2u64.to_be_bytes())
                .unwrap();
        }
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let err = store.membership(id).unwrap_err();
        assert!(matches!(
            err,
            StoreError::UnsupportedFormat {
                found: 2,
                supported: FORMAT_VERSION
            }
        ));
        let line = err.to_string();
        assert!(!line.contains('\n'));
        assert!(line.starts_with("data directory format 2 is not supported"));
    }

    #[test]
    fn identity_is_recorded_then_enforced() {
        let dir = tempfile::tempdir().unwrap();
        let id = NodeIdentity {
            node_id: 1,
            shards: 4,
        };
        {
            let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
            assert_eq!(store.membership(id).unwrap(), Membership::Empty);
            store.record_joining(id).unwrap();
            assert_eq!(store.membership(id).unwrap(), Membership::Joining);
        }
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        assert_eq!(store.membership(id).unwrap(), Membership::Joining);
        store.record_cluster_id(0xfeed).unwrap();
        assert_eq!(
            store.membership(id).unwrap(),
            Membership::Member { cluster_id: 0xfeed }
        );
        let err = store
            .membership(NodeIdentity {
                node_id: 1,
                shards: 8,
            })
            .unwrap_err();
        assert!(matches!(
            err,
            StoreError::ShardCountMismatch {
                recorded: 4,
                requested: 8
            }
        ));
        assert!(
            err.to_string()
                .contains("created with 4 shards but 8 were requested")
        );
        let err = store
            .membership(NodeIdentity {
                node_id: 2,
                shards: 4,
            })
            .unwrap_err();
        assert!(matches!(
            err,
            StoreError::NodeIdMismatch {
                recorded: 1,
                requested: 2
            }
        ));
    }

    #[test]
    fn founding_records_identity_shards_and_pending_founders_together() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let id = NodeIdentity {
            node_id: 1,
            shards: 2,
        };
        store
            .record_founding(id, 0xabc, &[1, 2, 3], &[2, 3])
            .unwrap();
        assert_eq!(
            store.membership(id).unwrap(),
            Membership::Member { cluster_id: 0xabc }
        );
        assert_eq!(store.pending_founders().unwrap(), vec![2, 3]);
        store.founder_told(2).unwrap();
        assert_eq!(store.pending_founders().unwrap(), vec![3]);
        for shard in 0..2 {
            // Bootstrapped: opening the log with no voters keeps them.
            let log = crate::log::ShardLog::open(&store, shard, &[]).unwrap();
            assert_eq!(log.conf_state().voters, vec![1, 2, 3]);
        }
    }
}
