//! Key encodings. Big-endian integers first, so RocksDB's byte order is the
//! numeric order and a shard's or a slot's records form a contiguous range.

use crate::{ShardId, Slot};

pub const CF_DEFAULT: &str = "default";
pub const CF_RAFT_LOG: &str = "raft_log";
pub const CF_RAFT_STATE: &str = "raft_state";
pub const CF_META: &str = "meta";
pub const CF_EXPIRE: &str = "expire";
pub const CF_SUB: &str = "sub";
pub const CF_DEDUP: &str = "dedup";

pub const ALL_CFS: [&str; 7] = [
    CF_DEFAULT,
    CF_RAFT_LOG,
    CF_RAFT_STATE,
    CF_META,
    CF_EXPIRE,
    CF_SUB,
    CF_DEDUP,
];

/// Node identity keys in the default column family.
pub const NODE_FORMAT_KEY: &[u8] = b"format";
pub const NODE_ID_KEY: &[u8] = b"node_id";
pub const NODE_SHARDS_KEY: &[u8] = b"shards";
pub const CLUSTER_ID_KEY: &[u8] = b"cluster_id";

/// Record kinds under a shard in `raft_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum StateKind {
    HardState = 1,
    ConfState = 2,
    ApplyState = 3,
    TruncatedState = 4,
    /// A snapshot whose install has begun but not finished.
    PendingSnapshot = 5,
}

pub fn raft_log_key(shard: ShardId, index: u64) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[..4].copy_from_slice(&shard.to_be_bytes());
    key[4..].copy_from_slice(&index.to_be_bytes());
    key
}

/// Decodes the index of a `raft_log` key.
pub fn raft_log_index(key: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = key.get(4..12)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

pub fn raft_state_key(shard: ShardId, kind: StateKind) -> [u8; 5] {
    let mut key = [0u8; 5];
    key[..4].copy_from_slice(&shard.to_be_bytes());
    key[4] = kind as u8;
    key
}

pub fn meta_key(slot: Slot, user_key: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(2 + user_key.len());
    key.extend_from_slice(&slot.to_be_bytes());
    key.extend_from_slice(user_key);
    key
}

/// Splits a `meta` key into its slot and user key.
pub fn split_meta_key(key: &[u8]) -> Option<(Slot, &[u8])> {
    let slot: [u8; 2] = key.get(..2)?.try_into().ok()?;
    Some((Slot::from_be_bytes(slot), &key[2..]))
}

/// The first `meta` key of `slot`; `slot_start(s + 1)` bounds slot `s`
/// (16384 is a valid bound: it sorts after every real slot).
pub fn slot_start(slot: u32) -> Vec<u8> {
    // Slots are < 16384 and bounds <= 16384, so two bytes always suffice.
    (slot as u16).to_be_bytes().to_vec()
}

pub fn expire_key(shard: ShardId, expire_at_ms: u64, slot: Slot, user_key: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(14 + user_key.len());
    key.extend_from_slice(&shard.to_be_bytes());
    key.extend_from_slice(&expire_at_ms.to_be_bytes());
    key.extend_from_slice(&slot.to_be_bytes());
    key.extend_from_slice(user_key);
    key
}

/// Splits an `expire` key into (expire-at, slot, user key).
pub fn split_expire_key(key: &[u8]) -> Option<(u64, Slot, &[u8])> {
    let at: [u8; 8] = key.get(4..12)?.try_into().ok()?;
    let slot: [u8; 2] = key.get(12..14)?.try_into().ok()?;
    Some((
        u64::from_be_bytes(at),
        Slot::from_be_bytes(slot),
        &key[14..],
    ))
}

/// The prefix of every `sub` key of version `version` of `user_key`'s
/// collection: slot, the user key's length (u32, big-endian), the user key,
/// the version. The length keeps a key that is a prefix of another (`a`
/// and `ab`) from sharing sub-key ranges with it.
pub fn sub_prefix(slot: Slot, user_key: &[u8], version: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(14 + user_key.len());
    key.extend_from_slice(&slot.to_be_bytes());
    // User keys are at most 512 MB (the bulk string limit), so the length
    // fits; a longer one would be refused long before it got here.
    key.extend_from_slice(
        &u32::try_from(user_key.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    key.extend_from_slice(user_key);
    key.extend_from_slice(&version.to_be_bytes());
    key
}

/// The `sub` key of `sub` (a field, member, element position or index
/// entry, as the command layer encodes it) in version `version` of
/// `user_key`'s collection.
pub fn sub_key(slot: Slot, user_key: &[u8], version: u64, sub: &[u8]) -> Vec<u8> {
    let mut key = sub_prefix(slot, user_key, version);
    key.extend_from_slice(sub);
    key
}

/// The exclusive end of version `version`'s sub-keys: where the next
/// version's begin. Versions stay far below `u64::MAX` (the command layer
/// derives them from log indexes).
pub fn sub_version_end(slot: Slot, user_key: &[u8], version: u64) -> Vec<u8> {
    sub_prefix(slot, user_key, version.saturating_add(1))
}

/// Length of a `dedup` key.
pub const DEDUP_KEY_LEN: usize = 28;

/// The record of request `(origin, seq)`, kept in `generation` (a window
/// of the shard's replicated clock): grouped by generation within the
/// shard, so old generations are removed with one range deletion.
pub fn dedup_key(shard: ShardId, generation: u64, origin: u64, seq: u64) -> [u8; DEDUP_KEY_LEN] {
    let mut key = [0u8; DEDUP_KEY_LEN];
    key[..4].copy_from_slice(&shard.to_be_bytes());
    key[4..12].copy_from_slice(&generation.to_be_bytes());
    key[12..20].copy_from_slice(&origin.to_be_bytes());
    key[20..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// The first `dedup` key of `generation` in `shard`.
pub fn dedup_generation_start(shard: ShardId, generation: u64) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[..4].copy_from_slice(&shard.to_be_bytes());
    key[4..].copy_from_slice(&generation.to_be_bytes());
    key
}

/// The "generation" of registry records in the `dedup` column family: above
/// every real one, so purging old request records never reaches them, and
/// inside the shard's range, so snapshots carry them.
const REGISTRY_GENERATION: u64 = u64::MAX;

/// A named record replicated with `shard` that is not a key (the scripts
/// and function libraries every node keeps, on shard 0).
pub fn registry_key(shard: ShardId, name: &[u8]) -> Vec<u8> {
    let mut key = dedup_generation_start(shard, REGISTRY_GENERATION).to_vec();
    key.extend_from_slice(name);
    key
}

/// The registry name of a `registry_key`.
pub fn registry_name(key: &[u8]) -> Option<&[u8]> {
    key.get(12..)
}

pub fn shard_prefix(shard: ShardId) -> [u8; 4] {
    shard.to_be_bytes()
}

/// The first key of the next shard: the exclusive end of `shard`'s ranges.
pub fn shard_end(shard: ShardId) -> Vec<u8> {
    match shard.checked_add(1) {
        Some(next) => next.to_be_bytes().to_vec(),
        None => vec![0xff; 5],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raft_log_keys_sort_by_shard_then_index() {
        assert!(raft_log_key(1, 300) < raft_log_key(1, 301));
        assert!(raft_log_key(1, u64::MAX) < raft_log_key(2, 0));
        assert_eq!(raft_log_index(&raft_log_key(7, 42)), Some(42));
    }

    #[test]
    fn meta_keys_round_trip_and_group_by_slot() {
        let key = meta_key(5, b"user");
        assert_eq!(split_meta_key(&key), Some((5, &b"user"[..])));
        assert!(slot_start(5) <= key && key < slot_start(6));
        assert!(meta_key(16383, &[0xff; 8]) < slot_start(16384));
    }

    #[test]
    fn expire_keys_sort_by_time_within_shard() {
        let a = expire_key(1, 100, 9, b"z");
        let b = expire_key(1, 101, 0, b"a");
        assert!(a < b);
        assert!(b < shard_end(1));
        assert_eq!(split_expire_key(&a), Some((100, 9, &b"z"[..])));
    }
}
