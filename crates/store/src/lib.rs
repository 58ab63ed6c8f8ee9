//! Storage for one elastickv node: a single RocksDB holding every shard
//! replica's raft log, raft state and data. No RocksDB type leaves this
//! crate.
//!
//! # Layout
//!
//! - [`keys`]: the on-disk key layout. Everything is big-endian and starts
//!   with the shard (raft records) or the slot (data), so one shard's
//!   records are a few contiguous ranges.
//! - [`db`]: [`Store`]: opening RocksDB with one column family per concern,
//!   and the node identity (node id, shard count) recorded on first start.
//! - [`log`]: [`ShardLog`], one shard's raft log and hard state behind
//!   `raft::Storage`, and [`LogBatch`], which gathers the log writes of
//!   every shard into one synced write per round (group commit).
//! - [`apply`]: [`ApplyBatch`], the state machine's writes for a run of
//!   committed entries, applied atomically together with the shard's
//!   applied index; and [`DataReader`] for reads.
//! - [`snapshot`]: point-in-time copies of a shard's data, staged and
//!   installed crash-safely on a follower that fell too far behind.
//!
//! # Column families
//!
//! | cf | key | value |
//! |---|---|---|
//! | `default` | node identity keys, `peer/` node, `pending_founder/` node | node id, shard count, format, cluster id; peer addresses; founders not yet told |
//! | `raft_log` | shard u32, index u64 | `eraftpb::Entry` |
//! | `raft_state` | shard u32, kind u8 | hard state, conf state, apply state, truncated state, pending snapshot install |
//! | `meta` | slot u16, user key | data record (type, expiry, value) |
//! | `expire` | shard u32, expire-at ms u64, slot u16, user key | empty |
//! | `sub` | slot u16, user key len u32, user key, version u64, sub-key | collection elements |
//! | `dedup` | shard u32, generation u64, request origin u64, request seq u64 | when the request applied (shard clock) and its reply |
//!
//! # Invariants
//!
//! - Raft log appends and hard state are written synced before the raft
//!   messages that depend on them are sent.
//! - A shard's data writes and its applied index are in the same
//!   `WriteBatch`: after a crash, exactly the entries above the applied
//!   index are replayed.
//! - Storage errors are returned, never retried here; the raft engine
//!   treats them as fatal for the node (as `raft::Storage` errors are by
//!   design).

pub mod apply;
pub mod db;
pub mod error;
pub mod keys;
pub mod log;
pub mod snapshot;

pub use apply::{ApplyBatch, ApplyState, DataReader};
pub use db::{Membership, NodeIdentity, Store, StoreOptions};
pub use error::StoreError;
pub use log::{BOOTSTRAP_INDEX, LogBatch, ShardLog};
pub use snapshot::{ShardRanges, ShardSnapshot, SnapshotMeta, SnapshotStager};

/// A shard (raft group) id.
pub type ShardId = u32;

/// A Redis Cluster hash slot, 0..16384.
pub type Slot = u16;

/// Number of hash slots.
pub const SLOT_COUNT: u32 = 16384;
