//! Shard snapshots: a point-in-time copy of one shard's data, streamed to a
//! follower that is too far behind the leader's log, staged on its disk and
//! installed so that a crash at any moment leaves a consistent shard.
//!
//! # Format
//!
//! A snapshot's data is a stream of records, each
//! `[cf u8][key length u32][key][value length u32][value]` (big-endian),
//! covering the shard's ranges in `meta`, `sub`, `expire` and `dedup`. The
//! stream is cut into chunks at any byte; the sender adds a CRC-32 of the
//! whole stream, which the receiver checks before anything is installed.
//!
//! # Installing
//!
//! 1. The staged file is complete and verified (see [`SnapshotStager`]):
//!    until then the shard's old state is untouched, and a cut transfer is
//!    simply retried.
//! 2. Whatever the raft round staged before the install (a compaction, a
//!    commit index) is written first, then a marker naming the snapshot
//!    (both synced): nothing staged earlier can land on top of step 4.
//! 3. The shard's old data ranges are deleted and the records written, in
//!    batches of a few MiB.
//! 4. One synced batch sets the apply state (applied index = the
//!    snapshot's), the conf state and the log's truncation point, removes
//!    the shard's old log entries and clears the marker.
//!
//! A restart that finds the marker repeats 3 and 4 from the staged file,
//! which is removed only after 4.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::prelude::ConfState;
use rocksdb::{DB, ReadOptions, SnapshotWithThreadMode, WriteBatch};

use crate::ShardId;
use crate::apply::ApplyState;
use crate::db::Store;
use crate::error::{Result, StoreError};
use crate::keys::{StateKind, raft_log_key, raft_state_key, shard_end, shard_prefix, slot_start};
use crate::log::{LogBatch, encode_proto, encode_u64_pair};

/// Largest key or value a record may carry (Redis's 512 MB string limit).
const MAX_FIELD_BYTES: u32 = 512 << 20;

const MARKER_VERSION: u8 = 2;
/// Version, then index, term, keys, expires, time (u64 each).
const MARKER_HEADER: usize = 1 + 5 * 8;

/// The column families a snapshot carries, as record tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum SnapshotCf {
    Meta = 1,
    Sub = 2,
    Expire = 3,
    Dedup = 4,
}

impl SnapshotCf {
    const ALL: [SnapshotCf; 4] = [
        SnapshotCf::Meta,
        SnapshotCf::Sub,
        SnapshotCf::Expire,
        SnapshotCf::Dedup,
    ];

    fn from_tag(tag: u8) -> Option<SnapshotCf> {
        SnapshotCf::ALL.into_iter().find(|cf| *cf as u8 == tag)
    }
}

/// Where one shard's data lives: its slot range (for `meta` and `sub`) and
/// its id (for `expire` and `dedup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardRanges {
    pub shard: ShardId,
    pub first_slot: u32,
    pub end_slot: u32,
}

impl ShardRanges {
    fn bounds(&self, cf: SnapshotCf) -> (Vec<u8>, Vec<u8>) {
        match cf {
            SnapshotCf::Meta | SnapshotCf::Sub => {
                (slot_start(self.first_slot), slot_start(self.end_slot))
            }
            SnapshotCf::Expire | SnapshotCf::Dedup => {
                (shard_prefix(self.shard).to_vec(), shard_end(self.shard))
            }
        }
    }

    fn contains(&self, cf: SnapshotCf, key: &[u8]) -> bool {
        let (start, end) = self.bounds(cf);
        key >= start.as_slice() && key < end.as_slice()
    }
}

/// What a snapshot stands for: the shard's state after applying `index`.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotMeta {
    pub shard: ShardId,
    pub index: u64,
    pub term: u64,
    pub conf_state: ConfState,
    /// Key counts of the data and the shard clock (the rest of the
    /// apply state).
    pub keys: u64,
    pub expires: u64,
    pub time_ms: u64,
}

impl SnapshotMeta {
    fn encode(&self) -> Result<Vec<u8>> {
        let mut out = vec![MARKER_VERSION];
        for v in [self.index, self.term, self.keys, self.expires, self.time_ms] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(&encode_proto(&self.conf_state, self.shard, "conf state")?);
        Ok(out)
    }

    fn decode(shard: ShardId, bytes: &[u8]) -> Result<SnapshotMeta> {
        let corrupt = |detail: &str| StoreError::Corrupt {
            what: "pending snapshot marker",
            shard,
            detail: detail.to_string(),
        };
        if bytes.first() != Some(&MARKER_VERSION) || bytes.len() < MARKER_HEADER {
            return Err(corrupt("unknown version or truncated"));
        }
        let field = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[1 + i * 8..9 + i * 8]);
            u64::from_be_bytes(b)
        };
        let conf_state = ConfState::parse_from_bytes(&bytes[MARKER_HEADER..])
            .map_err(|e| corrupt(&e.to_string()))?;
        Ok(SnapshotMeta {
            shard,
            index: field(0),
            term: field(1),
            keys: field(2),
            expires: field(3),
            time_ms: field(4),
            conf_state,
        })
    }
}

/// A point-in-time view of one shard's data, owning its RocksDB snapshot
/// so it can be streamed from another thread while the shard moves on.
pub struct ShardSnapshot {
    // Declared first: dropped before `store`, which keeps the database
    // (and so the snapshot's referent) alive.
    snapshot: SnapshotWithThreadMode<'static, DB>,
    store: Store,
    ranges: ShardRanges,
}

impl Store {
    /// Freezes `ranges`' data as it is now. Taken on the raft thread right
    /// after an apply, it is exactly the state at the applied index.
    // The one unsafe block of the workspace: rust-rocksdb ties a snapshot
    // to a borrow of the database, and streaming it from another thread
    // needs an owned one (as TiKV's engine does).
    #[allow(unsafe_code)]
    pub fn shard_snapshot(&self, ranges: ShardRanges) -> ShardSnapshot {
        let snapshot = self.db().snapshot();
        // SAFETY: the snapshot borrows the `DB` inside `self.inner` (an
        // `Arc`, so the `DB` never moves). `ShardSnapshot` holds a clone of
        // that `Arc` in `store` and drops `snapshot` first (field order),
        // so the borrow outlives neither the database nor this struct.
        let snapshot: SnapshotWithThreadMode<'static, DB> =
            unsafe { std::mem::transmute(snapshot) };
        ShardSnapshot {
            snapshot,
            store: self.clone(),
            ranges,
        }
    }
}

impl ShardSnapshot {
    /// Encodes every record into chunks of about `chunk_bytes`, handing
    /// each to `emit` (which returns false to stop early). Returns the
    /// CRC-32 and length of the whole stream.
    pub fn stream(
        &self,
        chunk_bytes: usize,
        mut emit: impl FnMut(Vec<u8>) -> bool,
    ) -> Result<(u32, u64)> {
        let mut hasher = crc32fast::Hasher::new();
        let mut total = 0u64;
        let mut chunk = Vec::with_capacity(chunk_bytes.min(8 << 20));
        for cf in SnapshotCf::ALL {
            let (start, end) = self.ranges.bounds(cf);
            let mut opts = ReadOptions::default();
            opts.set_snapshot(&self.snapshot);
            opts.set_iterate_upper_bound(end);
            let handle = self.store.snapshot_cf(cf)?;
            let mut it = self.store.db().raw_iterator_cf_opt(handle, opts);
            it.seek(&start);
            while let (Some(key), Some(value)) = (it.key(), it.value()) {
                encode_record(&mut chunk, cf, key, value);
                if chunk.len() >= chunk_bytes {
                    hasher.update(&chunk);
                    total += chunk.len() as u64;
                    if !emit(std::mem::take(&mut chunk)) {
                        return Ok((hasher.finalize(), total));
                    }
                }
                it.next();
            }
            it.status()?;
        }
        if !chunk.is_empty() {
            hasher.update(&chunk);
            total += chunk.len() as u64;
            emit(chunk);
        }
        Ok((hasher.finalize(), total))
    }
}

fn encode_record(out: &mut Vec<u8>, cf: SnapshotCf, key: &[u8], value: &[u8]) {
    out.push(cf as u8);
    out.extend_from_slice(&(key.len() as u32).to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&(value.len() as u32).to_be_bytes());
    out.extend_from_slice(value);
}

/// One record: column family, key, value.
type Record = (SnapshotCf, Vec<u8>, Vec<u8>);

/// Reads records back, refusing anything malformed or outside `ranges`.
struct RecordReader<R> {
    input: R,
    ranges: ShardRanges,
}

impl<R: Read> RecordReader<R> {
    fn corrupt(&self, detail: String) -> StoreError {
        StoreError::Corrupt {
            what: "snapshot data",
            shard: self.ranges.shard,
            detail,
        }
    }

    fn field(&mut self) -> Result<Vec<u8>> {
        let mut len = [0u8; 4];
        self.input
            .read_exact(&mut len)
            .map_err(|e| self.corrupt(format!("truncated record: {e}")))?;
        let len = u32::from_be_bytes(len);
        if len > MAX_FIELD_BYTES {
            return Err(self.corrupt(format!("field of {len} bytes")));
        }
        let mut bytes = vec![0u8; len as usize];
        self.input
            .read_exact(&mut bytes)
            .map_err(|e| self.corrupt(format!("truncated record: {e}")))?;
        Ok(bytes)
    }

    /// The next record, or `None` at a clean end of the stream.
    fn next_record(&mut self) -> Result<Option<Record>> {
        let mut tag = [0u8; 1];
        match self.input.read(&mut tag) {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e) => return Err(self.corrupt(format!("cannot read: {e}"))),
        }
        let cf = SnapshotCf::from_tag(tag[0])
            .ok_or_else(|| self.corrupt(format!("unknown column family tag {}", tag[0])))?;
        let key = self.field()?;
        let value = self.field()?;
        if !self.ranges.contains(cf, &key) {
            return Err(self.corrupt(format!("{cf:?} key outside the shard's ranges")));
        }
        Ok(Some((cf, key, value)))
    }
}

/// A snapshot being received: chunks go to a temporary file, which becomes
/// the staged snapshot only once its length and checksum match and every
/// record is well formed and belongs to the shard. A transfer that ends
/// any other way (cut, refused, dropped) leaves no file behind.
pub struct SnapshotStager {
    tmp: PathBuf,
    path: PathBuf,
    /// `None` once finishing took it.
    file: Option<BufWriter<File>>,
    hasher: crc32fast::Hasher,
    bytes: u64,
    ranges: ShardRanges,
    /// Set once the file became the staged snapshot.
    staged: bool,
}

impl Drop for SnapshotStager {
    fn drop(&mut self) {
        if !self.staged {
            drop(self.file.take());
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

impl SnapshotStager {
    pub fn write(&mut self, chunk: &[u8]) -> Result<()> {
        // Tests slow staging down here to stop a node mid-transfer, or fail
        // it to cut a transfer short.
        fail::fail_point!("snapshot-stage-chunk", |_| Err(
            self.io(std::io::Error::other("fail point snapshot-stage-chunk"))
        ));
        self.hasher.update(chunk);
        self.bytes += chunk.len() as u64;
        let written = match self.file.as_mut() {
            Some(file) => file.write_all(chunk),
            None => Err(std::io::Error::other("the transfer was already finished")),
        };
        written.map_err(|e| self.io(e))
    }

    fn io(&self, e: std::io::Error) -> StoreError {
        StoreError::Io {
            path: self.tmp.clone(),
            source: e,
        }
    }

    /// Checks the stream against what the sender announced and makes it
    /// the staged snapshot (synced to disk).
    pub fn finish(mut self, crc32: u32, total_bytes: u64) -> Result<PathBuf> {
        let corrupt = |detail: String| StoreError::Corrupt {
            what: "snapshot data",
            shard: self.ranges.shard,
            detail,
        };
        if self.bytes != total_bytes {
            return Err(corrupt(format!(
                "received {} bytes, the sender sent {total_bytes}",
                self.bytes
            )));
        }
        let actual = self.hasher.clone().finalize();
        if actual != crc32 {
            return Err(corrupt(format!(
                "checksum {actual:08x} does not match the sender's {crc32:08x}"
            )));
        }
        let Some(file) = self.file.take() else {
            return Err(corrupt("the transfer was already finished".into()));
        };
        let file = file.into_inner().map_err(|e| StoreError::Io {
            path: self.tmp.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(|e| StoreError::Io {
            path: self.tmp.clone(),
            source: e,
        })?;
        drop(file);
        // Every record must parse and belong to the shard before the file
        // may replace anything.
        validate_file(&self.tmp, self.ranges)?;
        std::fs::rename(&self.tmp, &self.path).map_err(|e| StoreError::Io {
            path: self.path.clone(),
            source: e,
        })?;
        self.staged = true;
        // The rename is durable only once the directory is.
        if let Some(dir) = self.path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| StoreError::Io {
                    path: dir.to_path_buf(),
                    source: e,
                })?;
        }
        Ok(self.path.clone())
    }
}

/// Shard, index and term of a staged snapshot's file name.
fn parse_staged_name(name: &str) -> Option<(ShardId, u64, u64)> {
    let mut parts = name
        .strip_prefix("shard-")?
        .strip_suffix(".snap")?
        .split('-');
    let shard = parts.next()?.parse().ok()?;
    let index = parts.next()?.parse().ok()?;
    let term = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((shard, index, term))
}

fn open_records(path: &Path, ranges: ShardRanges) -> Result<RecordReader<BufReader<File>>> {
    let file = File::open(path).map_err(|e| StoreError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    Ok(RecordReader {
        input: BufReader::with_capacity(1 << 20, file),
        ranges,
    })
}

fn validate_file(path: &Path, ranges: ShardRanges) -> Result<()> {
    let mut records = open_records(path, ranges)?;
    while records.next_record()?.is_some() {}
    Ok(())
}

/// A snapshot record as [`read_records`] returns it: column family tag,
/// key, value.
pub type RawRecord = (u8, Vec<u8>, Vec<u8>);

/// The records of a snapshot stream held in memory, each checked as a
/// received snapshot's are (well formed, inside `ranges`). For the fuzz
/// target that feeds it bytes.
pub fn read_records(data: &[u8], ranges: ShardRanges) -> Result<Vec<RawRecord>> {
    let mut reader = RecordReader {
        input: data,
        ranges,
    };
    let mut records = Vec::new();
    while let Some((cf, key, value)) = reader.next_record()? {
        records.push((cf as u8, key, value));
    }
    Ok(records)
}

impl Store {
    /// Where staged snapshots are kept.
    pub fn snapshot_dir(&self) -> &Path {
        &self.inner.snapshot_dir
    }

    fn staged_path(&self, shard: ShardId, index: u64, term: u64) -> PathBuf {
        self.snapshot_dir()
            .join(format!("shard-{shard}-{index}-{term}.snap"))
    }

    /// Starts receiving the snapshot of `ranges` at `index`/`term`.
    pub fn stage_snapshot(
        &self,
        ranges: ShardRanges,
        index: u64,
        term: u64,
    ) -> Result<SnapshotStager> {
        let dir = self.snapshot_dir();
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Io {
            path: dir.to_path_buf(),
            source: e,
        })?;
        let path = self.staged_path(ranges.shard, index, term);
        // A name of its own: two transfers of the same snapshot (a retry,
        // or two leaders in turn) must not write into one file.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = path.with_extension(format!("{}-{n}.tmp", std::process::id()));
        let file = File::create(&tmp).map_err(|e| StoreError::Io {
            path: tmp.clone(),
            source: e,
        })?;
        Ok(SnapshotStager {
            tmp,
            path,
            file: Some(BufWriter::with_capacity(1 << 20, file)),
            hasher: crc32fast::Hasher::new(),
            bytes: 0,
            ranges,
            staged: false,
        })
    }

    /// Whether the snapshot at `index`/`term` of `shard` is staged.
    pub fn is_staged(&self, shard: ShardId, index: u64, term: u64) -> bool {
        self.staged_path(shard, index, term).is_file()
    }

    /// Replaces the shard's data, apply state and log with the staged
    /// snapshot `meta` (see the module documentation for the steps).
    ///
    /// `pending` is the raft round's log batch: whatever it holds was
    /// staged before the install (a compaction, a commit index) and must
    /// reach the disk before it, or writing it later would put an older
    /// truncation point on top of the snapshot's.
    pub fn install_snapshot(
        &self,
        ranges: ShardRanges,
        meta: &SnapshotMeta,
        pending: &mut LogBatch,
    ) -> Result<()> {
        // Synced: the round may already hold appended entries of other
        // shards, whose persisted messages go out after this round.
        pending.write(true)?;
        let mut marker = WriteBatch::default();
        marker.put_cf(
            self.cf_state()?,
            raft_state_key(ranges.shard, StateKind::PendingSnapshot),
            meta.encode()?,
        );
        self.write(marker, true)?;
        self.write_snapshot_data(ranges, meta)
    }

    /// Steps 3 and 4: idempotent, so an interrupted install can run again.
    /// Readers of the shard wait meanwhile (see [`Store::shard_reader`]).
    fn write_snapshot_data(&self, ranges: ShardRanges, meta: &SnapshotMeta) -> Result<()> {
        let shard = ranges.shard;
        let gate = self.install_gate(shard);
        let _no_readers = gate.write();
        tracing::info!(
            shard_id = shard,
            index = meta.index,
            term = meta.term,
            "installing snapshot"
        );
        let path = self.staged_path(shard, meta.index, meta.term);
        let mut batch = WriteBatch::default();
        for cf in SnapshotCf::ALL {
            let (start, end) = ranges.bounds(cf);
            batch.delete_range_cf(self.snapshot_cf(cf)?, start, end);
        }
        let mut records = open_records(&path, ranges)?;
        while let Some((cf, key, value)) = records.next_record()? {
            batch.put_cf(self.snapshot_cf(cf)?, key, value);
            if batch.size_in_bytes() >= self.inner.snapshot_install_batch_bytes {
                // Tests slow installs down here to stop a node mid-install.
                fail::fail_point!("snapshot-install-batch");
                self.write(std::mem::take(&mut batch), false)?;
            }
        }
        let state_cf = self.cf_state()?;
        let apply = ApplyState {
            applied_index: meta.index,
            applied_term: meta.term,
            keys: meta.keys,
            expires: meta.expires,
            time_ms: meta.time_ms,
        };
        batch.put_cf(
            state_cf,
            raft_state_key(shard, StateKind::ApplyState),
            apply.encode(),
        );
        batch.put_cf(
            state_cf,
            raft_state_key(shard, StateKind::ConfState),
            encode_proto(&meta.conf_state, shard, "conf state")?,
        );
        batch.put_cf(
            state_cf,
            raft_state_key(shard, StateKind::TruncatedState),
            encode_u64_pair(meta.index, meta.term),
        );
        batch.delete_range_cf(
            self.cf_log()?,
            raft_log_key(shard, 0),
            raft_log_key(shard, u64::MAX),
        );
        batch.delete_cf(state_cf, raft_state_key(shard, StateKind::PendingSnapshot));
        self.write(batch, true)?;
        self.remove_staged_up_to(shard, meta.index);
        tracing::info!(
            shard_id = shard,
            index = meta.index,
            term = meta.term,
            keys = meta.keys,
            "installed snapshot"
        );
        Ok(())
    }

    /// Finishes an install a crash interrupted, if there was one. Called
    /// before the shard's log is opened.
    pub fn resume_snapshot_install(&self, ranges: ShardRanges) -> Result<Option<SnapshotMeta>> {
        let Some(bytes) = self.db().get_pinned_cf(
            self.cf_state()?,
            raft_state_key(ranges.shard, StateKind::PendingSnapshot),
        )?
        else {
            return Ok(None);
        };
        let meta = SnapshotMeta::decode(ranges.shard, &bytes)?;
        tracing::warn!(
            shard_id = ranges.shard,
            index = meta.index,
            "finishing a snapshot install interrupted by a crash"
        );
        self.write_snapshot_data(ranges, &meta)?;
        Ok(Some(meta))
    }

    /// Deletes the staged snapshot of `shard` at `index`/`term`: raft did
    /// not take it (it was stale by the time it arrived), or it could not
    /// be handed to raft.
    pub fn discard_staged(&self, shard: ShardId, index: u64, term: u64) {
        let _ = std::fs::remove_file(self.staged_path(shard, index, term));
    }

    /// Deletes `shard`'s staged snapshots at or below `index` (superseded
    /// by what was just installed). Newer ones, possibly about to be
    /// installed, stay.
    fn remove_staged_up_to(&self, shard: ShardId, index: u64) {
        let Ok(entries) = std::fs::read_dir(self.snapshot_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some((of, at, _)) = name.to_str().and_then(parse_staged_name) else {
                continue;
            };
            if of == shard && at <= index {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Deletes staged snapshots nothing refers to (leftovers of cut
    /// transfers). Call after every shard resumed its install.
    pub fn remove_stale_snapshots(&self) {
        let Ok(entries) = std::fs::read_dir(self.snapshot_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

impl Store {
    fn snapshot_cf(&self, cf: SnapshotCf) -> Result<&rocksdb::ColumnFamily> {
        match cf {
            SnapshotCf::Meta => self.cf_meta(),
            SnapshotCf::Sub => self.cf_sub(),
            SnapshotCf::Expire => self.cf_expire(),
            SnapshotCf::Dedup => self.cf_dedup(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::StoreOptions;
    use crate::keys::{dedup_key, expire_key, meta_key};

    const RANGES: ShardRanges = ShardRanges {
        shard: 1,
        first_slot: 100,
        end_slot: 200,
    };

    fn fill(store: &Store, slot: u16, key: &[u8], value: &[u8]) {
        let mut batch = WriteBatch::default();
        batch.put_cf(store.cf_meta().unwrap(), meta_key(slot, key), value);
        store.write(batch, false).unwrap();
    }

    fn meta(index: u64) -> SnapshotMeta {
        SnapshotMeta {
            shard: 1,
            index,
            term: 3,
            conf_state: ConfState {
                voters: vec![1, 2, 3],
                ..Default::default()
            },
            keys: 2,
            expires: 1,
            time_ms: 1_000,
        }
    }

    fn transfer(from: &Store, to: &Store, index: u64, chunk: usize) -> Result<PathBuf> {
        let snapshot = from.shard_snapshot(RANGES);
        let mut stager = to.stage_snapshot(RANGES, index, 3)?;
        let mut chunks = Vec::new();
        let (crc, total) = snapshot.stream(chunk, |c| {
            chunks.push(c);
            true
        })?;
        for c in &chunks {
            stager.write(c)?;
        }
        stager.finish(crc, total)
    }

    #[test]
    fn snapshot_is_a_point_in_time_copy_of_the_shard_only() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let leader = Store::open(&a.path().join("db"), &StoreOptions::default()).unwrap();
        let follower = Store::open(&b.path().join("db"), &StoreOptions::default()).unwrap();
        fill(&leader, 150, b"k1", b"v1");
        fill(&leader, 199, b"k2", b"v2");
        fill(&leader, 200, b"other-shard", b"x");
        let mut batch = WriteBatch::default();
        batch.put_cf(
            leader.cf_expire().unwrap(),
            expire_key(1, 5, 150, b"k1"),
            b"",
        );
        batch.put_cf(leader.cf_dedup().unwrap(), dedup_key(1, 7, 9, 3), b"reply");
        batch.put_cf(leader.cf_dedup().unwrap(), dedup_key(2, 7, 9, 3), b"other");
        leader.write(batch, false).unwrap();
        let snapshot = leader.shard_snapshot(RANGES);
        // Written after the snapshot was taken: not part of it.
        fill(&leader, 150, b"late", b"v");
        // The follower has stale data of its own in the shard.
        fill(&follower, 120, b"stale", b"old");
        fill(&follower, 300, b"elsewhere", b"kept");

        let mut stager = follower.stage_snapshot(RANGES, 10, 3).unwrap();
        let (crc, total) = snapshot
            .stream(7, |chunk| stager.write(&chunk).is_ok())
            .unwrap();
        stager.finish(crc, total).unwrap();
        assert!(follower.is_staged(1, 10, 3));
        follower
            .install_snapshot(RANGES, &meta(10), &mut crate::log::LogBatch::new(&follower))
            .unwrap();
        assert!(!follower.is_staged(1, 10, 3));

        let reader = follower.reader();
        assert_eq!(
            reader.get_meta(150, b"k1").unwrap().as_deref(),
            Some(&b"v1"[..])
        );
        assert_eq!(
            reader.get_meta(199, b"k2").unwrap().as_deref(),
            Some(&b"v2"[..])
        );
        assert!(reader.get_meta(150, b"late").unwrap().is_none());
        assert!(reader.get_meta(120, b"stale").unwrap().is_none());
        assert!(reader.get_meta(200, b"other-shard").unwrap().is_none());
        assert_eq!(
            reader.get_meta(300, b"elsewhere").unwrap().as_deref(),
            Some(&b"kept"[..])
        );
        let state = follower.load_apply_state(1).unwrap();
        assert_eq!(
            (
                state.applied_index,
                state.keys,
                state.expires,
                state.time_ms
            ),
            (10, 2, 1, 1_000)
        );
        let log = crate::log::ShardLog::open(&follower, 1, &[1]).unwrap();
        assert_eq!(log.first_index(), 11);
        assert_eq!(log.last_index(), 10);
        assert_eq!(log.conf_state().voters, vec![1, 2, 3]);
    }

    #[test]
    fn corrupt_or_foreign_data_is_refused_before_anything_changes() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let leader = Store::open(&a.path().join("db"), &StoreOptions::default()).unwrap();
        let follower = Store::open(&b.path().join("db"), &StoreOptions::default()).unwrap();
        fill(&leader, 150, b"k1", b"v1");
        fill(&follower, 150, b"mine", b"old");
        // Wrong checksum.
        let snapshot = leader.shard_snapshot(RANGES);
        let mut stager = follower.stage_snapshot(RANGES, 10, 3).unwrap();
        let (crc, total) = snapshot.stream(1024, |c| stager.write(&c).is_ok()).unwrap();
        assert!(stager.finish(crc ^ 1, total).is_err());
        assert!(!follower.is_staged(1, 10, 3));
        // A record for a slot the shard does not own.
        let mut stager = follower.stage_snapshot(RANGES, 11, 3).unwrap();
        let mut bad = Vec::new();
        encode_record(&mut bad, SnapshotCf::Meta, &meta_key(5, b"x"), b"y");
        stager.write(&bad).unwrap();
        let crc = crc32fast::hash(&bad);
        let err = stager.finish(crc, bad.len() as u64).unwrap_err();
        assert!(err.to_string().contains("outside"), "{err}");
        // Truncated stream.
        let mut stager = follower.stage_snapshot(RANGES, 12, 3).unwrap();
        let mut cut = Vec::new();
        encode_record(&mut cut, SnapshotCf::Meta, &meta_key(150, b"x"), b"value");
        cut.truncate(cut.len() - 2);
        stager.write(&cut).unwrap();
        assert!(
            stager
                .finish(crc32fast::hash(&cut), cut.len() as u64)
                .is_err()
        );
        assert_eq!(
            follower.reader().get_meta(150, b"mine").unwrap().as_deref(),
            Some(&b"old"[..])
        );
    }

    /// Round N's phase b stages a compaction (and a commit index) into the
    /// round's log batch; round N+1 installs a snapshot before that batch
    /// is written. The older truncation point must not land on top of the
    /// snapshot's, or the next open finds a commit index beyond the log.
    #[test]
    fn a_compaction_staged_before_an_install_never_overwrites_it() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let leader = Store::open(&a.path().join("db"), &StoreOptions::default()).unwrap();
        fill(&leader, 150, b"k1", b"v1");
        let db_path = b.path().join("db");
        {
            let follower = Store::open(&db_path, &StoreOptions::default()).unwrap();
            let mut log = crate::log::ShardLog::open(&follower, 1, &[]).unwrap();
            let mut round = crate::log::LogBatch::new(&follower);
            let entries: Vec<raft::prelude::Entry> = (1..=40)
                .map(|index| raft::prelude::Entry {
                    index,
                    term: 2,
                    ..Default::default()
                })
                .collect();
            log.append(&entries, &mut round).unwrap();
            round.write(true).unwrap();
            // Round N, phase b: compaction and commit staged, not written.
            log.compact(30, &mut round).unwrap();
            log.set_commit(40, &mut round).unwrap();
            // Round N+1, phase a: a snapshot arrives and is installed.
            transfer(&leader, &follower, 100, 64).unwrap();
            follower
                .install_snapshot(RANGES, &meta(100), &mut round)
                .unwrap();
            log.snapshot_installed(100, 3, meta(100).conf_state);
            let mut hs = log.hard_state().clone();
            hs.commit = 100;
            log.set_hard_state(hs, &mut round).unwrap();
            round.write(true).unwrap();
        }
        let follower = Store::open(&db_path, &StoreOptions::default()).unwrap();
        let log = crate::log::ShardLog::open(&follower, 1, &[])
            .expect("the shard opens after compaction then install");
        assert_eq!((log.first_index(), log.last_index()), (101, 100));
        assert_eq!(raft::Storage::term(&log, 100).unwrap(), 3);
        assert_eq!(log.hard_state().commit, 100);
    }

    /// Staged files live only as long as raft may install them: a cut
    /// transfer leaves nothing, an install removes what it superseded, and
    /// one raft refused is discarded; other shards' stay.
    #[test]
    fn staged_files_do_not_outlive_their_use() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let leader = Store::open(&a.path().join("db"), &StoreOptions::default()).unwrap();
        fill(&leader, 150, b"k1", b"v1");
        let follower = Store::open(&b.path().join("db"), &StoreOptions::default()).unwrap();
        let staged = || -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(follower.snapshot_dir())
                .map(|d| {
                    d.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            names.sort();
            names
        };
        // A cut transfer: the stager is dropped before it finishes.
        let mut cut = follower.stage_snapshot(RANGES, 7, 3).unwrap();
        cut.write(b"partial").unwrap();
        drop(cut);
        assert!(staged().is_empty(), "{:?}", staged());

        transfer(&leader, &follower, 10, 64).unwrap();
        transfer(&leader, &follower, 20, 64).unwrap();
        let other = ShardRanges {
            shard: 2,
            first_slot: 200,
            end_slot: 300,
        };
        drop(
            follower
                .stage_snapshot(other, 5, 3)
                .unwrap()
                .finish(crc32fast::hash(b""), 0)
                .unwrap(),
        );
        let mut round = LogBatch::new(&follower);
        follower
            .install_snapshot(RANGES, &meta(10), &mut round)
            .unwrap();
        assert_eq!(staged(), ["shard-1-20-3.snap", "shard-2-5-3.snap"]);
        follower.discard_staged(1, 20, 3);
        assert_eq!(staged(), ["shard-2-5-3.snap"]);
    }

    /// Readers of a shard see it as it was before an install or after it,
    /// never in between, even when the install takes many batches.
    #[test]
    fn reads_never_see_a_half_installed_shard() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let leader = Store::open(&a.path().join("db"), &StoreOptions::default()).unwrap();
        let options = StoreOptions {
            snapshot_install_batch_bytes: 512,
            ..StoreOptions::default()
        };
        let follower = Store::open(&b.path().join("db"), &options).unwrap();
        let keys: Vec<Vec<u8>> = (0..300)
            .map(|i| format!("key{i:03}").into_bytes())
            .collect();
        for key in &keys {
            fill(&leader, 150, key, b"new");
            fill(&follower, 150, key, b"old");
        }
        transfer(&leader, &follower, 10, 1024).unwrap();

        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (follower, stop) = (follower.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut torn = Vec::new();
                let mut reads = 0u64;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    for point_in_time in [false, true] {
                        let reader = follower.shard_reader(1, point_in_time);
                        let mut values = std::collections::BTreeMap::new();
                        reader
                            .scan_meta(100, 200, |_, _, value| {
                                *values.entry(value.to_vec()).or_insert(0) += 1;
                                true
                            })
                            .unwrap();
                        reads += 1;
                        let whole = values.len() == 1 && values.values().all(|&n| n == 300);
                        if !whole {
                            torn.push(values);
                        }
                    }
                }
                (reads, torn)
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut round = LogBatch::new(&follower);
        follower
            .install_snapshot(RANGES, &meta(10), &mut round)
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let (reads, torn) = reader.join().unwrap();
        assert!(reads > 2, "the reader ran ({reads} reads)");
        assert!(
            torn.is_empty(),
            "{} torn reads, e.g. {:?}",
            torn.len(),
            torn[0]
        );
        assert_eq!(
            follower
                .reader()
                .get_meta(150, b"key000")
                .unwrap()
                .as_deref(),
            Some(&b"new"[..])
        );
    }

    #[test]
    fn an_interrupted_install_is_finished_on_restart() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let leader = Store::open(&a.path().join("db"), &StoreOptions::default()).unwrap();
        fill(&leader, 150, b"k1", b"v1");
        let db_path = b.path().join("db");
        {
            let follower = Store::open(&db_path, &StoreOptions::default()).unwrap();
            fill(&follower, 150, b"stale", b"old");
            transfer(&leader, &follower, 10, 64).unwrap();
            // Crash right after the marker: write only the marker.
            let mut marker = WriteBatch::default();
            marker.put_cf(
                follower.cf_state().unwrap(),
                raft_state_key(1, StateKind::PendingSnapshot),
                meta(10).encode().unwrap(),
            );
            follower.write(marker, true).unwrap();
        }
        let follower = Store::open(&db_path, &StoreOptions::default()).unwrap();
        let resumed = follower.resume_snapshot_install(RANGES).unwrap();
        assert_eq!(resumed.map(|m| m.index), Some(10));
        assert!(follower.resume_snapshot_install(RANGES).unwrap().is_none());
        let reader = follower.reader();
        assert_eq!(
            reader.get_meta(150, b"k1").unwrap().as_deref(),
            Some(&b"v1"[..])
        );
        assert!(reader.get_meta(150, b"stale").unwrap().is_none());
        assert_eq!(follower.load_apply_state(1).unwrap().applied_index, 10);
    }

    /// Two transfers of the same snapshot at once (a retry overlapping the
    /// first, or two leaders in turn) each stage on their own, and either
    /// finishing leaves the staged snapshot in place.
    #[test]
    fn two_transfers_of_one_snapshot_do_not_share_a_file() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let leader = Store::open(&a.path().join("db"), &StoreOptions::default()).unwrap();
        let ranges = RANGES;
        let mut batch = WriteBatch::default();
        batch.put_cf(
            leader.cf_meta().unwrap(),
            crate::keys::meta_key(150, b"k"),
            b"v",
        );
        leader.write(batch, false).unwrap();
        let follower = Store::open(&b.path().join("db"), &StoreOptions::default()).unwrap();
        let snapshot = leader.shard_snapshot(ranges);
        let mut first = follower.stage_snapshot(ranges, 10, 3).unwrap();
        let mut second = follower.stage_snapshot(ranges, 10, 3).unwrap();
        let mut chunks = Vec::new();
        let (crc, total) = snapshot
            .stream(4, |c| {
                chunks.push(c);
                true
            })
            .unwrap();
        for c in &chunks {
            first.write(c).unwrap();
            second.write(c).unwrap();
        }
        first.finish(crc, total).unwrap();
        second.finish(crc, total).unwrap();
        assert!(follower.is_staged(1, 10, 3));
    }
}
