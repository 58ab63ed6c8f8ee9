//! What hashes and sets share: collections whose sub-keys are members
//! (hash fields, set members), each stored under its 64-bit FNV-1a hash
//! and then itself. Members come back in hash order (as in Redis, an
//! order clients cannot rely on); a SCAN cursor is simply the hash to
//! resume from, which needs no state between calls and returns every
//! member present throughout at least once; random picks take one pass.

use std::ops::ControlFlow;

use bytes::Bytes;
use elastickv_resp::Reply;
use rand::Rng;
use rand::seq::SliceRandom;

use crate::command::{eq, int};
use crate::db::{ReadView, SubRead};
use crate::errors;
use crate::glob;
use crate::keyspace::{KeyspaceRead, StorageError, SubRange, SubVisitor};
use crate::record::Collection;

/// Collections up to this many members answer a SCAN in one reply with
/// cursor 0, as Redis does for its compact encodings (a hash of up to
/// `hash-max-listpack-entries` = 128 fields; sets of up to 128 members
/// behave the same in the cases clients see).
pub(crate) const SCAN_IN_ONE_REPLY: u64 = 128;

/// The sub-key of a member: its hash, then itself. The hash is part of the
/// data directory's format and must never change.
pub(crate) fn member_sub(field: &[u8]) -> Vec<u8> {
    let mut sub = member_hash(field).to_be_bytes().to_vec();
    sub.extend_from_slice(field);
    sub
}

pub(crate) fn member_hash(field: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut hasher = fnv::FnvHasher::default();
    hasher.write(field);
    hasher.finish()
}

/// Where in a collection's sub-keys its members are: hashes and sets keep
/// nothing else (the whole range); a sorted set keeps them after a
/// one-byte prefix, beside its score index.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Space {
    prefix: Option<u8>,
}

impl Space {
    /// Every sub-key is a member.
    pub(crate) const WHOLE: Space = Space { prefix: None };

    /// The members are the sub-keys that start with `prefix`.
    pub(crate) const fn prefixed(prefix: u8) -> Space {
        Space {
            prefix: Some(prefix),
        }
    }

    fn prefix_len(self) -> usize {
        usize::from(self.prefix.is_some())
    }

    /// The member-key part of `sub` (hash, then member).
    fn strip(self, sub: &[u8]) -> &[u8] {
        sub.get(self.prefix_len()..).unwrap_or_default()
    }

    /// Visits the space's `(sub, value)` pairs from member hash
    /// `from_hash`, with `sub` stripped of the prefix.
    fn scan<K: KeyspaceRead + ?Sized>(
        self,
        db: &ReadView<'_, K>,
        key: &[u8],
        c: &Collection,
        from_hash: u64,
        visit: &mut SubVisitor<'_>,
    ) -> Result<(), StorageError> {
        let mut lower: Vec<u8> = self.prefix.into_iter().collect();
        lower.extend_from_slice(&from_hash.to_be_bytes());
        let upper = self.prefix.map(|p| [p.wrapping_add(1)]);
        db.sub_scan(
            key,
            c,
            SubRange {
                from: &lower,
                to: upper.as_ref().map(|u| &u[..]),
                reverse: false,
            },
            &mut |sub, value| visit(self.strip(sub), value),
        )
    }
}

/// The member a sub-key holds (see [`member_sub`]).
pub(crate) fn member_of(sub: &[u8]) -> &[u8] {
    sub.get(8..).unwrap_or_default()
}

/// The hash a sub-key starts with.
pub(crate) fn hash_of_sub(sub: &[u8]) -> u64 {
    sub.get(..8)
        .and_then(|h| h.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

/// Every `(member, value)` of collection `c` at `key`, in hash order.
pub(crate) fn all_members<K: KeyspaceRead + ?Sized>(
    db: &ReadView<'_, K>,
    key: &[u8],
    c: &Collection,
    space: Space,
) -> Result<Vec<(Bytes, Bytes)>, StorageError> {
    let mut out = Vec::with_capacity(usize::try_from(c.size).unwrap_or(0).min(1 << 16));
    space.scan(db, key, c, 0, &mut |sub, value| {
        out.push((
            Bytes::copy_from_slice(member_of(sub)),
            Bytes::copy_from_slice(value),
        ));
        ControlFlow::Continue(())
    })?;
    Ok(out)
}

/// `count` random members (with values) of collection `c`: with
/// `repeat`, drawn independently (they may repeat, in random order);
/// without, distinct (all of them if `count` is at least the size). One
/// pass over the collection, holding only what is returned.
pub(crate) fn random_members<K: KeyspaceRead + ?Sized>(
    db: &ReadView<'_, K>,
    key: &[u8],
    c: &Collection,
    space: Space,
    count: u64,
    repeat: bool,
) -> Result<Vec<(Bytes, Bytes)>, StorageError> {
    if c.size == 0 || count == 0 {
        return Ok(Vec::new());
    }
    if !repeat && count >= c.size {
        return all_members(db, key, c, space);
    }
    let mut rng = rand::thread_rng();
    let mut positions: Vec<u64> = if repeat {
        (0..count).map(|_| rng.gen_range(0..c.size)).collect()
    } else {
        let size = usize::try_from(c.size).unwrap_or(usize::MAX);
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        rand::seq::index::sample(&mut rng, size, count)
            .into_iter()
            .map(|i| i as u64)
            .collect()
    };
    positions.sort_unstable();
    let mut out = members_at(&positions, &mut |visit| space.scan(db, key, c, 0, visit))?;
    out.shuffle(&mut rng);
    Ok(out)
}

/// The members at `positions` (sorted; a position listed twice is
/// returned twice) in one pass of `scan`.
pub(crate) fn members_at(
    positions: &[u64],
    scan: &mut dyn FnMut(&mut SubVisitor<'_>) -> Result<(), StorageError>,
) -> Result<Vec<(Bytes, Bytes)>, StorageError> {
    let mut out = Vec::with_capacity(positions.len());
    let mut next = positions.iter().peekable();
    let mut at = 0u64;
    if next.peek().is_none() {
        return Ok(out);
    }
    scan(&mut |sub, value| {
        while next.next_if(|&&p| p == at).is_some() {
            out.push((
                Bytes::copy_from_slice(member_of(sub)),
                Bytes::copy_from_slice(value),
            ));
        }
        at += 1;
        if next.peek().is_none() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    Ok(out)
}

/// A pseudo-random generator every replica runs identically, for writes
/// that pick at random (SPOP): SplitMix64, seeded by the proposer. Its
/// output for a seed is part of the log format, so it is written out here
/// rather than borrowed from a library whose algorithm may change.
pub(crate) struct ReplicatedRng(u64);

impl ReplicatedRng {
    pub(crate) fn new(seed: u64) -> ReplicatedRng {
        ReplicatedRng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0), by multiply-high.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// `count` distinct positions in `0..size`, sorted (Floyd's
    /// algorithm); all of them if `count >= size`.
    pub(crate) fn distinct_positions(&mut self, size: u64, count: u64) -> Vec<u64> {
        if count >= size {
            return (0..size).collect();
        }
        let mut chosen = std::collections::BTreeSet::new();
        for j in size - count..size {
            let t = self.below(j + 1);
            if !chosen.insert(t) {
                chosen.insert(j);
            }
        }
        chosen.into_iter().collect()
    }
}

pub(crate) fn empty_scan() -> Reply {
    Reply::Array(vec![Reply::bulk("0"), Reply::Array(Vec::new())])
}

/// The options after a SCAN-family cursor (`scanGenericCommand`): MATCH,
/// COUNT, and for SCAN only, TYPE.
pub(crate) struct ScanOptions {
    pub(crate) pattern: Option<Bytes>,
    pub(crate) count: u64,
    pub(crate) type_name: Option<Bytes>,
}

impl ScanOptions {
    /// With `allow_type`, TYPE is accepted (SCAN); otherwise it is a
    /// syntax error (HSCAN, SSCAN).
    pub(crate) fn parse(args: &[Bytes], allow_type: bool) -> Result<ScanOptions, Reply> {
        let mut options = ScanOptions {
            pattern: None,
            count: 10,
            type_name: None,
        };
        let mut i = 0;
        while i < args.len() {
            let remaining = args.len() - i;
            if eq(&args[i], "count") && remaining >= 2 {
                let count = int(&args[i + 1])?;
                if count < 1 {
                    return Err(Reply::static_error(errors::SYNTAX));
                }
                options.count = count.unsigned_abs();
            } else if eq(&args[i], "match") && remaining >= 2 {
                let pattern = &args[i + 1];
                options.pattern = (pattern.as_ref() != b"*").then(|| pattern.clone());
            } else if allow_type && eq(&args[i], "type") && remaining >= 2 {
                options.type_name = Some(args[i + 1].clone());
            } else {
                return Err(Reply::static_error(errors::SYNTAX));
            }
            i += 2;
        }
        Ok(options)
    }
}

/// How a SCAN step shows each member's value after it: HSCAN as stored,
/// ZSCAN as a score; SSCAN shows none.
pub(crate) type ShowValue = fn(&[u8]) -> Bytes;

/// One HSCAN/SSCAN/ZSCAN step over the members of collection `c`.
pub(crate) fn scan<K: KeyspaceRead + ?Sized>(
    db: &ReadView<'_, K>,
    key: &[u8],
    c: &Collection,
    space: Space,
    cursor: u64,
    options: &ScanOptions,
    show_value: Option<ShowValue>,
) -> Result<Reply, StorageError> {
    let whole = c.size <= SCAN_IN_ONE_REPLY;
    // The cursor is the hash to resume from; 0 starts (and ends) a scan.
    let from = if whole { 0 } else { cursor };
    let mut items = Vec::new();
    let mut seen = 0u64;
    let mut last_hash = None;
    let mut next_cursor = 0u64;
    space.scan(db, key, c, from, &mut |sub, value| {
        let hash = hash_of_sub(sub);
        // A page ends between two hashes, never inside one: resuming
        // at a hash returns all of its fields.
        if !whole && seen >= options.count && last_hash != Some(hash) {
            next_cursor = hash.max(1);
            return ControlFlow::Break(());
        }
        seen += 1;
        last_hash = Some(hash);
        let field = member_of(sub);
        if options
            .pattern
            .as_ref()
            .is_none_or(|p| glob::matches(p, field))
        {
            items.push(Reply::Bulk(Bytes::copy_from_slice(field)));
            if let Some(show) = show_value {
                items.push(Reply::Bulk(show(value)));
            }
        }
        ControlFlow::Continue(())
    })?;
    Ok(Reply::Array(vec![
        Reply::Bulk(Bytes::from(next_cursor.to_string())),
        Reply::Array(items),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_sub_keys_round_trip_and_the_hash_is_stable() {
        for field in [&b""[..], b"a", b"\0\xff", b"field:1"] {
            let sub = member_sub(field);
            assert_eq!(member_of(&sub), field);
            assert_eq!(hash_of_sub(&sub), member_hash(field));
        }
        // FNV-1a 64 of "a": part of the on-disk format.
        assert_eq!(member_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn the_replicated_rng_is_fixed_and_picks_distinct_positions() {
        // SplitMix64's published first output for seed 0: part of the
        // log format.
        assert_eq!(ReplicatedRng::new(0).next_u64(), 0xe220_a839_7b1d_cdaf);
        let mut rng = ReplicatedRng::new(42);
        for (size, count) in [(10, 3), (5, 5), (5, 9), (1000, 999), (1, 1)] {
            let picked = rng.distinct_positions(size, count);
            assert_eq!(picked.len() as u64, count.min(size));
            assert!(picked.windows(2).all(|w| w[0] < w[1]));
            assert!(picked.iter().all(|&p| p < size));
        }
        let a = ReplicatedRng::new(7).distinct_positions(100, 10);
        assert_eq!(a, ReplicatedRng::new(7).distinct_positions(100, 10));
    }
}
