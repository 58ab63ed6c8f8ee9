//! ZUNION, ZINTER, ZDIFF, their STORE forms and ZINTERCARD: inputs that
//! are sorted sets or sets (whose members all score 1), combined as
//! `zunionInterDiffGenericCommand` combines them, result in score order.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::ops::ControlFlow;

use bytes::Bytes;
use elastickv_resp::Reply;

use super::Combine;
use super::index::{ORDER, score_of, walk};
use crate::cmd::members::member_sub;
use crate::db::SubRead;
use crate::exec::wrongtype;
use crate::keyspace::{StorageError, SubRange};
use crate::log;
use crate::record::{Collection, Record, ValueType};

/// One input of ZUNION and the like: a sorted set, or a set whose members
/// all score 1.
#[derive(Clone, Copy)]
pub(super) enum Source {
    Missing,
    Sorted(Collection),
    Plain(Collection),
}

impl Source {
    fn of(record: Option<&Record>) -> Result<Source, Reply> {
        match record {
            None => Ok(Source::Missing),
            Some(r) => match r.as_collection() {
                Some(c) if c.kind == ValueType::ZSet => Ok(Source::Sorted(*c)),
                Some(c) if c.kind == ValueType::Set => Ok(Source::Plain(*c)),
                _ => Err(wrongtype()),
            },
        }
    }

    fn len(self) -> u64 {
        match self {
            Source::Missing => 0,
            Source::Sorted(c) | Source::Plain(c) => c.size,
        }
    }

    fn score_of<S: SubRead + ?Sized>(
        self,
        view: &S,
        key: &[u8],
        member: &[u8],
    ) -> Result<Option<f64>, StorageError> {
        match self {
            Source::Missing => Ok(None),
            Source::Sorted(c) => score_of(view, key, &c, member),
            Source::Plain(c) => Ok(view.sub_get(key, &c, &member_sub(member))?.map(|_| 1.0)),
        }
    }

    /// Every `(member, score)`.
    fn all<S: SubRead + ?Sized>(
        self,
        view: &S,
        key: &[u8],
    ) -> Result<Vec<(Bytes, f64)>, StorageError> {
        let mut out = Vec::new();
        match self {
            Source::Missing => {}
            Source::Sorted(c) => walk(view, key, &c, &[ORDER], false, &mut |member, score| {
                out.push((Bytes::copy_from_slice(member), score));
                ControlFlow::Continue(())
            })?,
            Source::Plain(c) => view.sub_scan(key, &c, SubRange::ALL, &mut |sub, _| {
                out.push((
                    Bytes::copy_from_slice(crate::cmd::members::member_of(sub)),
                    1.0,
                ));
                ControlFlow::Continue(())
            })?,
        }
        Ok(out)
    }
}

/// A key's live record.
pub(super) type Lookup<'a> = dyn FnMut(&[u8]) -> Result<Option<Record>, StorageError> + 'a;

/// The inputs of a combining command, or WRONGTYPE.
pub(super) fn sources_of(
    keys: &[Bytes],
    lookup: &mut Lookup<'_>,
) -> Result<Result<Vec<Source>, Reply>, StorageError> {
    let mut sources = Vec::with_capacity(keys.len());
    for key in keys {
        match Source::of(lookup(key)?.as_ref()) {
            Ok(source) => sources.push(source),
            Err(reply) => return Ok(Err(reply)),
        }
    }
    Ok(Ok(sources))
}

/// `zunionInterAggregate`.
pub(super) fn aggregate(target: &mut f64, value: f64, how: log::Aggregate) {
    match how {
        log::Aggregate::Sum => {
            *target += value;
            if target.is_nan() {
                *target = 0.0;
            }
        }
        log::Aggregate::Min => {
            if value < *target {
                *target = value;
            }
        }
        log::Aggregate::Max => {
            if value > *target {
                *target = value;
            }
        }
    }
}

fn weighted(score: f64, weight: f64) -> f64 {
    let value = score * weight;
    if value.is_nan() { 0.0 } else { value }
}

/// Skip-list order: by score, then member bytes.
fn by_score(a: &(Bytes, f64), b: &(Bytes, f64)) -> Ordering {
    a.1.partial_cmp(&b.1)
        .unwrap_or(Ordering::Equal)
        .then_with(|| a.0.cmp(&b.0))
}

/// ZUNION/ZINTER/ZDIFF of `sources` (at `keys`), in score order, as
/// `zunionInterDiffGenericCommand` computes it; for ZINTERCARD
/// (`count_limit`), only as many as it counts.
pub(super) fn combine_sources<S: SubRead + ?Sized>(
    view: &S,
    combine: &Combine,
    sources: &[Source],
    count_limit: Option<u64>,
) -> Result<Vec<(Bytes, f64)>, StorageError> {
    let keys = &combine.keys;
    // Inputs by size, smallest first (Redis sorts them so).
    let mut order: Vec<usize> = (0..sources.len()).collect();
    if combine.op != log::ZSetOp::Diff {
        order.sort_by_key(|&i| sources[i].len());
    }
    let weight = |i: usize| combine.weights.get(i).copied().unwrap_or(1.0);
    let mut out = Vec::new();
    match combine.op {
        log::ZSetOp::Inter => {
            let first = order[0];
            if sources[first].len() == 0 {
                return Ok(out);
            }
            'members: for (member, score) in sources[first].all(view, &keys[first])? {
                let mut total = weighted(score, weight(first));
                for &i in &order[1..] {
                    let value = if keys[i] == keys[first] {
                        score
                    } else {
                        match sources[i].score_of(view, &keys[i], &member)? {
                            Some(value) => value,
                            None => continue 'members,
                        }
                    };
                    aggregate(&mut total, value * weight(i), combine.aggregate);
                }
                out.push((member, total));
                if count_limit.is_some_and(|limit| limit > 0 && out.len() as u64 >= limit) {
                    break;
                }
            }
        }
        log::ZSetOp::Union => {
            let mut scores: HashMap<Bytes, f64> = HashMap::new();
            for &i in &order {
                for (member, score) in sources[i].all(view, &keys[i])? {
                    let score = weighted(score, weight(i));
                    match scores.get_mut(&member) {
                        Some(total) => aggregate(total, score, combine.aggregate),
                        None => {
                            scores.insert(member, score);
                        }
                    }
                }
            }
            out.extend(scores);
        }
        log::ZSetOp::Diff => {
            'members: for (member, score) in sources[0].all(view, &keys[0])? {
                for (i, other) in sources.iter().enumerate().skip(1) {
                    if keys[i] == keys[0] || other.score_of(view, &keys[i], &member)?.is_some() {
                        continue 'members;
                    }
                }
                out.push((member, score));
            }
        }
    }
    out.sort_by(by_score);
    Ok(out)
}
