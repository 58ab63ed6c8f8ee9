//! How a sorted set is stored and walked.
//!
//! A sorted set is a collection record (version, number of members) with
//! two sub-keys per member:
//!
//! - `0 ‖ member hash ‖ member` → the score (8 bytes, the f64's bits):
//!   point lookups (ZSCORE, ZADD), and the hash order SCAN and random
//!   picks walk, shared with hashes and sets ([`crate::cmd::members`]);
//! - `1 ‖ ordered score ‖ member` → nothing: the index every range walks.
//!   The score's 8 bytes compare as the numbers do (sign bit flipped for
//!   positives, all bits for negatives). Equal scores order by member
//!   bytes, as Redis orders them.
//!
//! A score of -0 is stored as 0, as Redis's compact encoding stores it
//! (its skip list would keep the sign; only ZINCRBY's reply shows it).
//!
//! Ranges are found by seeking this index, so ZRANGE 0 9 reads ten members
//! and ZRANGEBYSCORE reads what it returns; a rank (ZRANK, an offset into
//! the middle) is counted by walking from the nearer end, where Redis's
//! skip list answers in O(log n). Scores are parsed and printed by the C
//! library as Redis does (`%.17g`), see [`crate::number`].

use std::cmp::Ordering;
use std::ops::ControlFlow;

use bytes::Bytes;
use elastickv_resp::Reply;

use crate::cmd::members::{Space, member_sub};
use crate::db::{SubRead, WriteView};
use crate::keyspace::{KeyspaceWrite, StorageError, SubRange};
use crate::log;
use crate::number::{format_score, format_stored_score};
use crate::record::Collection;

/// The members' sub-keys (hash order) and the score index (score order).
const MEMBERS: u8 = 0;
pub(super) const ORDER: u8 = 1;
pub(super) const MEMBER_SPACE: Space = Space::prefixed(MEMBERS);

/// The member's sub-key: its score lives there.
fn member_key(member: &[u8]) -> Vec<u8> {
    let mut sub = Vec::with_capacity(9 + member.len());
    sub.push(MEMBERS);
    sub.extend_from_slice(&member_sub(member));
    sub
}

/// A score as 8 bytes that compare as the scores do (-0 as 0).
fn order_bits(score: f64) -> u64 {
    let score = if score == 0.0 { 0.0 } else { score };
    let bits = score.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | 1 << 63
    }
}

fn score_of_order_bits(bits: u64) -> f64 {
    if bits >> 63 == 1 {
        f64::from_bits(bits & !(1 << 63))
    } else {
        f64::from_bits(!bits)
    }
}

/// The index sub-key of `(score, member)`.
pub(super) fn order_key(score: f64, member: &[u8]) -> Vec<u8> {
    let mut sub = order_prefix(order_bits(score));
    sub.extend_from_slice(member);
    sub
}

/// The index sub-keys of scores whose ordered bits are `bits`.
fn order_prefix(bits: u64) -> Vec<u8> {
    let mut sub = Vec::with_capacity(9);
    sub.push(ORDER);
    sub.extend_from_slice(&bits.to_be_bytes());
    sub
}

/// The first index sub-key past every score whose ordered bits are
/// `bits`.
fn order_prefix_after(bits: u64) -> Vec<u8> {
    match bits.checked_add(1) {
        Some(next) => order_prefix(next),
        None => vec![ORDER + 1],
    }
}

/// `(score, member)` of an index entry.
fn decode_order(sub: &[u8]) -> Option<(f64, &[u8])> {
    let bits = u64::from_be_bytes(sub.get(1..9)?.try_into().ok()?);
    Some((score_of_order_bits(bits), sub.get(9..)?))
}

fn encode_score(score: f64) -> Vec<u8> {
    score.to_bits().to_be_bytes().to_vec()
}

pub(super) fn decode_score(value: &[u8]) -> f64 {
    <[u8; 8]>::try_from(value).map_or(0.0, |b| f64::from_bits(u64::from_be_bytes(b)))
}

/// A score as ZSCAN shows one from its member sub-key, for a sorted set
/// Redis keeps as a skip list (`%.17g`).
pub(super) fn show_score(value: &[u8]) -> Bytes {
    format_score(decode_score(value))
}

/// A score as ZSCAN shows one for a sorted set Redis keeps compact.
pub(super) fn show_stored_score(value: &[u8]) -> Bytes {
    format_stored_score(decode_score(value))
}

pub(crate) fn score_reply(score: f64) -> Reply {
    Reply::Double(format_score(score))
}

/// The sub-keys OBJECT ENCODING judges a sorted set by: its members.
pub(crate) const MEMBER_RANGE: SubRange<'static> = SubRange {
    from: &[MEMBERS],
    to: Some(&[MEMBERS + 1]),
    reverse: false,
};

/// The member of a sub-key in [`MEMBER_RANGE`].
pub(crate) fn member_of_sub(sub: &[u8]) -> &[u8] {
    sub.get(9..).unwrap_or_default()
}

/// The score of `member` in sorted set `c` at `key`.
pub(super) fn score_of<S: SubRead + ?Sized>(
    view: &S,
    key: &[u8],
    c: &Collection,
    member: &[u8],
) -> Result<Option<f64>, StorageError> {
    Ok(view
        .sub_get(key, c, &member_key(member))?
        .map(|v| decode_score(&v)))
}

/// Visits `(member, score)` in score order from index sub-key `bound`
/// (inclusive) up, or with `reverse` from below `bound` (exclusive) down.
pub(super) fn walk<S: SubRead + ?Sized>(
    view: &S,
    key: &[u8],
    c: &Collection,
    bound: &[u8],
    reverse: bool,
    visit: &mut dyn FnMut(&[u8], f64) -> ControlFlow<()>,
) -> Result<(), StorageError> {
    let start = [ORDER];
    let end = [ORDER + 1];
    let range = if reverse {
        SubRange {
            from: &start,
            to: Some(bound),
            reverse: true,
        }
    } else {
        SubRange {
            from: bound,
            to: Some(&end),
            reverse: false,
        }
    };
    view.sub_scan(key, c, range, &mut |sub, _| match decode_order(sub) {
        Some((score, member)) => visit(member, score),
        None => ControlFlow::Continue(()),
    })
}

/// Every member of sorted set `c` at `key` in score order (with
/// `reverse`, from the highest).
pub(crate) fn members_in_order<S: SubRead + ?Sized>(
    view: &S,
    key: &[u8],
    c: &Collection,
    reverse: bool,
) -> Result<Vec<Bytes>, StorageError> {
    let mut out = Vec::new();
    let bound: &[u8] = if reverse { &[ORDER + 1] } else { &[ORDER] };
    walk(view, key, c, bound, reverse, &mut |member, _| {
        out.push(Bytes::copy_from_slice(member));
        ControlFlow::Continue(())
    })?;
    Ok(out)
}

/// The first (or with `last`, the last) member and its score.
fn end_member<S: SubRead + ?Sized>(
    view: &S,
    key: &[u8],
    c: &Collection,
    last: bool,
) -> Result<Option<(Bytes, f64)>, StorageError> {
    let mut found = None;
    let bound: &[u8] = if last { &[ORDER + 1] } else { &[ORDER] };
    walk(view, key, c, bound, last, &mut |member, score| {
        found = Some((Bytes::copy_from_slice(member), score));
        ControlFlow::Break(())
    })?;
    Ok(found)
}

fn above_min(score: f64, min: &log::ScoreBound) -> bool {
    if min.exclusive {
        score > min.value
    } else {
        score >= min.value
    }
}

fn below_max(score: f64, max: &log::ScoreBound) -> bool {
    if max.exclusive {
        score < max.value
    } else {
        score <= max.value
    }
}

/// Redis's `sdscmplex`: `-` below and `+` above every member.
fn lex_cmp(member: &[u8], bound: &log::LexBound) -> Ordering {
    use log::lex_bound::Kind;
    match bound.kind() {
        Kind::Min => Ordering::Greater,
        Kind::Max => Ordering::Less,
        Kind::Value => member.cmp(&bound.value),
    }
}

fn lex_gte_min(member: &[u8], min: &log::LexBound) -> bool {
    match lex_cmp(member, min) {
        Ordering::Greater => true,
        Ordering::Equal => !min.exclusive,
        Ordering::Less => false,
    }
}

fn lex_lte_max(member: &[u8], max: &log::LexBound) -> bool {
    match lex_cmp(member, max) {
        Ordering::Less => true,
        Ordering::Equal => !max.exclusive,
        Ordering::Greater => false,
    }
}

/// Whether a lex range can hold nothing whatever the members.
fn lex_range_is_empty(min: &log::LexBound, max: &log::LexBound) -> bool {
    use log::lex_bound::Kind;
    let cmp = match (min.kind(), max.kind()) {
        (Kind::Min, Kind::Min) | (Kind::Max, Kind::Max) => Ordering::Equal,
        (Kind::Min, _) | (_, Kind::Max) => Ordering::Less,
        (Kind::Max, _) | (_, Kind::Min) => Ordering::Greater,
        (Kind::Value, Kind::Value) => min.value.cmp(&max.value),
    };
    cmp == Ordering::Greater || (cmp == Ordering::Equal && (min.exclusive || max.exclusive))
}

/// Applies `LIMIT offset count` to a walk: skips `offset`, then hands on
/// up to `count` (negative: all). A negative offset selects nothing, as
/// Redis's `while (offset--)` runs off the end.
struct Limit {
    skip: i64,
    left: i64,
}

impl Limit {
    fn new(range: &log::ZRange) -> Option<Limit> {
        (range.offset >= 0).then_some(Limit {
            skip: range.offset,
            left: range.count,
        })
    }

    /// Whether to take the next member; `Break` once the count is used up.
    fn take(&mut self) -> ControlFlow<(), bool> {
        if self.skip > 0 {
            self.skip -= 1;
            return ControlFlow::Continue(false);
        }
        if self.left == 0 {
            return ControlFlow::Break(());
        }
        self.left -= 1;
        ControlFlow::Continue(true)
    }
}

/// Visits the members `range` selects from sorted set `c`, in the order
/// the range runs (REV: from the highest).
pub(super) fn select<S: SubRead + ?Sized>(
    view: &S,
    key: &[u8],
    c: &Collection,
    range: &log::ZRange,
    visit: &mut dyn FnMut(&[u8], f64),
) -> Result<(), StorageError> {
    use log::z_range::By;
    match &range.by {
        Some(By::Ranks(ranks)) => select_ranks(view, key, c, ranks, range.reverse, visit),
        Some(By::Scores(scores)) => {
            let (Some(min), Some(max)) = (&scores.min, &scores.max) else {
                return Ok(());
            };
            let Some(mut limit) = Limit::new(range) else {
                return Ok(());
            };
            // Up from min: at it, or past it when exclusive. Down from max
            // (an exclusive upper bound): past it, or at it when exclusive.
            let reverse = range.reverse;
            let start = if reverse { max } else { min };
            let bits = order_bits(start.value);
            let bound = if start.exclusive == reverse {
                order_prefix(bits)
            } else {
                order_prefix_after(bits)
            };
            walk(view, key, c, &bound, reverse, &mut |member, score| {
                let in_range = above_min(score, min) && below_max(score, max);
                if !in_range {
                    return ControlFlow::Break(());
                }
                if limit.take()? {
                    visit(member, score);
                }
                ControlFlow::Continue(())
            })
        }
        Some(By::Lex(lex)) => {
            let (Some(min), Some(max)) = (&lex.min, &lex.max) else {
                return Ok(());
            };
            select_lex(view, key, c, range, min, max, visit)
        }
        None => Ok(()),
    }
}

/// A rank range: `ranks` counted from the lowest (or with `reverse`, the
/// highest) score, as `genericZrangebyrankCommand` normalizes them. The
/// walk starts from whichever end is nearer.
fn select_ranks<S: SubRead + ?Sized>(
    view: &S,
    key: &[u8],
    c: &Collection,
    ranks: &log::z_range::Ranks,
    reverse: bool,
    visit: &mut dyn FnMut(&[u8], f64),
) -> Result<(), StorageError> {
    let len = i64::try_from(c.size).unwrap_or(i64::MAX);
    let (mut start, mut end) = (ranks.start, ranks.stop);
    if start < 0 {
        start = len.saturating_add(start);
    }
    if end < 0 {
        end = len.saturating_add(end);
    }
    start = start.max(0);
    if start > end || start >= len {
        return Ok(());
    }
    end = end.min(len - 1);
    // Ranks from the lowest score, inclusive, and whether the reply runs
    // downwards.
    let (low, high) = if reverse {
        (len - 1 - end, len - 1 - start)
    } else {
        (start, end)
    };
    let from_top = len - 1 - high < low;
    let mut picked = Vec::new();
    let mut at = 0i64;
    let (first, last) = if from_top {
        (len - 1 - high, len - 1 - low)
    } else {
        (low, high)
    };
    let bound: &[u8] = if from_top { &[ORDER + 1] } else { &[ORDER] };
    walk(view, key, c, bound, from_top, &mut |member, score| {
        if at >= first {
            picked.push((Bytes::copy_from_slice(member), score));
        }
        at += 1;
        if at > last {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    // `picked` runs downwards when walked from the top.
    if from_top != reverse {
        picked.reverse();
    }
    for (member, score) in picked {
        visit(&member, score);
    }
    Ok(())
}

/// A lex range, as Redis walks its compact encoding: from the first
/// member at or past `min` (the last at or before `max` with REV), while
/// members stay within the other end. With equal scores, as lex ranges
/// are meant for, this is a seek in the index.
fn select_lex<S: SubRead + ?Sized>(
    view: &S,
    key: &[u8],
    c: &Collection,
    range: &log::ZRange,
    min: &log::LexBound,
    max: &log::LexBound,
    visit: &mut dyn FnMut(&[u8], f64),
) -> Result<(), StorageError> {
    use log::lex_bound::Kind;
    if lex_range_is_empty(min, max) {
        return Ok(());
    }
    let (Some((first, first_score)), Some((last, last_score))) = (
        end_member(view, key, c, false)?,
        end_member(view, key, c, true)?,
    ) else {
        return Ok(());
    };
    if !lex_gte_min(&last, min) || !lex_lte_max(&first, max) {
        return Ok(());
    }
    let Some(mut limit) = Limit::new(range) else {
        return Ok(());
    };
    // Members of the end score before the bound would be skipped anyway.
    let bound = if range.reverse {
        match max.kind() {
            Kind::Value => {
                let mut bound = order_key(last_score, &max.value);
                if !max.exclusive {
                    bound.push(0);
                }
                bound
            }
            _ => vec![ORDER + 1],
        }
    } else {
        match min.kind() {
            Kind::Value => order_key(first_score, &min.value),
            _ => vec![ORDER],
        }
    };
    let mut started = false;
    walk(view, key, c, &bound, range.reverse, &mut |member, score| {
        let (reached, within) = if range.reverse {
            (lex_lte_max(member, max), lex_gte_min(member, min))
        } else {
            (lex_gte_min(member, min), lex_lte_max(member, max))
        };
        if !started {
            if !reached {
                return ControlFlow::Continue(());
            }
            started = true;
        }
        if !within {
            return ControlFlow::Break(());
        }
        if limit.take()? {
            visit(member, score);
        }
        ControlFlow::Continue(())
    })
}

/// The members `range` selects, with their scores.
pub(super) fn selected<S: SubRead + ?Sized>(
    view: &S,
    key: &[u8],
    c: &Collection,
    range: &log::ZRange,
) -> Result<Vec<(Bytes, f64)>, StorageError> {
    let mut out = Vec::new();
    select(view, key, c, range, &mut |member, score| {
        out.push((Bytes::copy_from_slice(member), score));
    })?;
    Ok(out)
}

/// The rank of `member` (with score `score`) counted from the lowest, or
/// with `reverse` from the highest score.
pub(super) fn rank_of<S: SubRead + ?Sized>(
    view: &S,
    key: &[u8],
    c: &Collection,
    member: &[u8],
    score: f64,
    reverse: bool,
) -> Result<u64, StorageError> {
    let mut position = order_key(score, member);
    let mut before = 0u64;
    let range = if reverse {
        position.push(0);
        SubRange {
            from: &position,
            to: Some(&[ORDER + 1]),
            reverse: false,
        }
    } else {
        SubRange {
            from: &[ORDER],
            to: Some(&position),
            reverse: false,
        }
    };
    view.sub_scan(key, c, range, &mut |_, _| {
        before += 1;
        ControlFlow::Continue(())
    })?;
    Ok(before)
}

pub(super) fn insert<K: KeyspaceWrite + ?Sized>(
    db: &mut WriteView<'_, K>,
    key: &[u8],
    c: &Collection,
    member: &[u8],
    score: f64,
) -> Result<(), StorageError> {
    let score = if score == 0.0 { 0.0 } else { score };
    db.sub_put(key, c, &member_key(member), encode_score(score))?;
    db.sub_put(key, c, &order_key(score, member), Vec::new())
}

pub(super) fn unlink<K: KeyspaceWrite + ?Sized>(
    db: &mut WriteView<'_, K>,
    key: &[u8],
    c: &Collection,
    member: &[u8],
    score: f64,
) -> Result<(), StorageError> {
    db.sub_delete(key, c, &member_key(member))?;
    db.sub_delete(key, c, &order_key(score, member))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_scores_sort_as_numbers() {
        let scores = [
            f64::NEG_INFINITY,
            -1e300,
            -2.5,
            -1.0,
            -f64::MIN_POSITIVE,
            0.0,
            f64::MIN_POSITIVE,
            1.0,
            2.5,
            1e300,
            f64::INFINITY,
        ];
        for pair in scores.windows(2) {
            assert!(
                order_bits(pair[0]) < order_bits(pair[1]),
                "{} < {}",
                pair[0],
                pair[1]
            );
        }
        for score in scores {
            assert_eq!(score_of_order_bits(order_bits(score)), score);
        }
        assert_eq!(order_bits(-0.0), order_bits(0.0));
    }

    /// Property: for any two scores (random bit patterns, every sign and
    /// exponent), their index bytes compare as the numbers do, and decode
    /// back to the score.
    #[test]
    fn ordered_bytes_compare_as_random_scores_do() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut score = || loop {
            let candidate = f64::from_bits(rng.r#gen::<u64>());
            if !candidate.is_nan() {
                return candidate;
            }
        };
        for _ in 0..100_000 {
            let (a, b) = (score(), score());
            let by_bytes = order_key(a, b"").cmp(&order_key(b, b""));
            assert_eq!(Some(by_bytes), a.partial_cmp(&b), "{a} vs {b}");
            let back = score_of_order_bits(order_bits(a));
            assert!(back == a, "{a} came back as {back}");
        }
    }

    #[test]
    fn index_entries_round_trip() {
        for (score, member) in [(-7.25, &b""[..]), (0.0, b"m"), (f64::INFINITY, b"\xff")] {
            let sub = order_key(score, member);
            assert_eq!(decode_order(&sub), Some((score, member)));
        }
        assert_eq!(order_key(-0.0, b"m"), order_key(0.0, b"m"));
    }
}
