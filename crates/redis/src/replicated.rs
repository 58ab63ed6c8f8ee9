//! What a shard's raft log carries: a write command as the client sent it
//! plus the proposer's clock, a batch of keys for active expiry, or just a
//! clock reading (a tick).
//!
//! Replicas re-parse and execute the command at apply time with the same
//! "now", so every replica computes the same result and the leader's
//! result is the client's reply. Encoded with protobuf (prost) so the
//! format can grow fields without breaking old logs.
//!
//! # Time
//!
//! Each shard has a replicated clock, kept with its data: an entry's "now"
//! is its proposer's timestamp or the clock, whichever is later, and the
//! clock moves up to it. So per shard time never goes backward, whatever
//! the proposers' wall clocks do, and everything that depends on time
//! (expiry, request records) is the same on every replica.
//!
//! # Request records
//!
//! A write that may be sent more than once (its first attempt's outcome
//! unknown) carries a request id: the sender's origin (a random number per
//! process) and a sequence number. Applying it records its reply, under
//! the generation of the shard clock it applied at; a second entry with the
//! same id within [`DEDUP_WINDOW_MS`] of the first is answered from the
//! record instead of executing again. Records live in the current and the
//! previous generation, each [`DEDUP_WINDOW_MS`] long, and older ones are
//! deleted every [`DEDUP_PURGE_EVERY`] entries: by log position and
//! replicated time only, never by a node's wall clock.

use bytes::Bytes;
use elastickv_resp::Reply;
use prost::Message;

use crate::command::parse;
use crate::exec::{execute_write, expire_due};
use crate::keyspace::{KeyspaceWrite, StorageError};

#[derive(Clone, PartialEq, Message)]
pub struct Replicated {
    /// Unix milliseconds at the proposer: "now" for everything the entry
    /// does.
    #[prost(uint64, tag = "1")]
    pub timestamp_ms: u64,
    /// A write command's arguments, name first.
    #[prost(bytes = "bytes", repeated, tag = "2")]
    pub args: Vec<Bytes>,
    /// Keys the leader found due for expiry.
    #[prost(message, repeated, tag = "3")]
    pub expired: Vec<ExpiredKey>,
    /// With `request_seq`, the request id of a write that may be sent more
    /// than once: nonzero origin of the sending process. Tags 4 and 5
    /// (an earlier request id made of a random number and the sender's
    /// wall clock) are retired.
    #[prost(uint64, tag = "6")]
    pub request_origin: u64,
    #[prost(uint64, tag = "7")]
    pub request_seq: u64,
}

/// How long, in shard-clock time, a request id protects against a
/// duplicate apply. Resends happen within the request timeout (seconds);
/// this leaves a wide margin.
pub const DEDUP_WINDOW_MS: u64 = 10 * 60 * 1000;

/// Request records older than the previous generation are deleted every
/// this many applied entries. Tied to the log index, so all replicas purge
/// alike.
pub const DEDUP_PURGE_EVERY: u64 = 4096;

/// The generation of the shard clock a request record made at `now_ms`
/// belongs to.
fn dedup_generation(now_ms: u64) -> u64 {
    now_ms / DEDUP_WINDOW_MS
}

#[derive(Clone, PartialEq, Message)]
pub struct ExpiredKey {
    #[prost(bytes = "bytes", tag = "1")]
    pub key: Bytes,
    /// The expiry the leader saw; a key whose expiry changed since is kept.
    #[prost(uint64, tag = "2")]
    pub expire_at_ms: u64,
}

impl Replicated {
    pub fn command(timestamp_ms: u64, args: Vec<Bytes>) -> Replicated {
        Replicated {
            timestamp_ms,
            args,
            ..Default::default()
        }
    }

    /// A command with a request id, for a write that may be sent more
    /// than once. `origin` must not be 0.
    pub fn retryable(args: Vec<Bytes>, origin: u64, seq: u64) -> Replicated {
        Replicated {
            args,
            request_origin: origin,
            request_seq: seq,
            ..Default::default()
        }
    }

    /// An entry that only carries its proposer's clock: applying it moves
    /// the shard clock forward, and nothing else.
    pub fn tick(timestamp_ms: u64) -> Replicated {
        Replicated {
            timestamp_ms,
            ..Default::default()
        }
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Replicated> {
        Replicated::decode(bytes).ok()
    }

    pub fn expiry(timestamp_ms: u64, keys: Vec<(Bytes, u64)>) -> Replicated {
        Replicated {
            timestamp_ms,
            expired: keys
                .into_iter()
                .map(|(key, expire_at_ms)| ExpiredKey { key, expire_at_ms })
                .collect(),
            ..Default::default()
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode_to_vec()
    }
}

/// Applies the log payload at `index` to a shard's keyspace and returns the
/// reply for the client that proposed it. Deterministic: only the payload,
/// its index and the keyspace decide the outcome. Only storage failures are
/// errors.
pub fn apply<K: KeyspaceWrite + ?Sized>(
    ks: &mut K,
    index: u64,
    payload: &[u8],
) -> Result<Reply, StorageError> {
    let Ok(entry) = Replicated::decode(payload) else {
        return Ok(Reply::static_error("ERR corrupt replicated command"));
    };
    let now = entry.timestamp_ms.max(ks.clock_ms());
    ks.set_clock_ms(now);
    let generation = dedup_generation(now);
    if index.is_multiple_of(DEDUP_PURGE_EVERY) {
        ks.dedup_purge(generation.saturating_sub(1))?;
    }
    if entry.args.is_empty() {
        let keys: Vec<(Bytes, u64)> = entry
            .expired
            .into_iter()
            .map(|k| (k.key, k.expire_at_ms))
            .collect();
        let deleted = expire_due(ks, &keys, now)?;
        return Ok(Reply::Integer(i64::try_from(deleted).unwrap_or(i64::MAX)));
    }
    let request = (entry.request_origin != 0).then_some((entry.request_origin, entry.request_seq));
    if let Some((origin, seq)) = request {
        for generation in [generation, generation.saturating_sub(1)] {
            let Some(record) = ks.dedup_get(generation, origin, seq)? else {
                continue;
            };
            match decode_record(&record) {
                Some((at, reply)) if now.saturating_sub(at) <= DEDUP_WINDOW_MS => return Ok(reply),
                Some(_) => {}
                None => return Ok(Reply::static_error("ERR corrupt recorded reply")),
            }
        }
    }
    let reply = match parse(&entry.args) {
        Ok(parsed) if parsed.spec.is_write() => execute_write(&parsed.command, ks, now)?,
        Ok(_) => Reply::static_error("ERR replicated command is not a write"),
        Err(reply) => reply,
    };
    if let Some((origin, seq)) = request {
        ks.dedup_put(generation, origin, seq, encode_record(now, &reply))?;
    }
    Ok(reply)
}

/// A request record: the shard clock when it applied, then its reply.
fn encode_record(at_ms: u64, reply: &Reply) -> Vec<u8> {
    let mut out = at_ms.to_be_bytes().to_vec();
    out.extend_from_slice(&encode_reply(reply));
    out
}

fn decode_record(bytes: &[u8]) -> Option<(u64, Reply)> {
    let at: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    Some((u64::from_be_bytes(at), decode_reply(&bytes[8..])?))
}

/// A [`Reply`] as protobuf, for forwarding and for dedup records. Every
/// variant survives the round trip, so a relayed reply is encoded for the
/// client exactly as a local one would be.
#[derive(Clone, PartialEq, Message)]
pub struct ReplyValue {
    #[prost(
        oneof = "reply_value::Kind",
        tags = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12"
    )]
    pub kind: Option<reply_value::Kind>,
}

pub mod reply_value {
    use bytes::Bytes;

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Kind {
        #[prost(bytes = "bytes", tag = "1")]
        Simple(Bytes),
        #[prost(bytes = "bytes", tag = "2")]
        Error(Bytes),
        #[prost(int64, tag = "3")]
        Integer(i64),
        #[prost(bytes = "bytes", tag = "4")]
        Bulk(Bytes),
        #[prost(bool, tag = "5")]
        Null(bool),
        #[prost(bool, tag = "6")]
        NullArray(bool),
        #[prost(message, tag = "7")]
        Array(super::ReplyList),
        #[prost(message, tag = "8")]
        Map(super::ReplyList),
        #[prost(message, tag = "9")]
        Set(super::ReplyList),
        #[prost(bytes = "bytes", tag = "10")]
        Double(Bytes),
        #[prost(bool, tag = "11")]
        Bool(bool),
        #[prost(bytes = "bytes", tag = "12")]
        Verbatim(Bytes),
    }
}

/// Items of an aggregate; a map's keys and values alternate.
#[derive(Clone, PartialEq, Message)]
pub struct ReplyList {
    #[prost(message, repeated, tag = "1")]
    pub items: Vec<ReplyValue>,
}

fn to_value(reply: &Reply) -> ReplyValue {
    use reply_value::Kind;
    let list = |items: &[Reply]| ReplyList {
        items: items.iter().map(to_value).collect(),
    };
    let kind = match reply {
        Reply::Simple(b) => Kind::Simple(b.clone()),
        Reply::Error(b) => Kind::Error(b.clone()),
        Reply::Integer(n) => Kind::Integer(*n),
        Reply::Bulk(b) => Kind::Bulk(b.clone()),
        Reply::Null => Kind::Null(true),
        Reply::NullArray => Kind::NullArray(true),
        Reply::Array(items) => Kind::Array(list(items)),
        Reply::Map(pairs) => Kind::Map(ReplyList {
            items: pairs
                .iter()
                .flat_map(|(k, v)| [to_value(k), to_value(v)])
                .collect(),
        }),
        Reply::Set(items) => Kind::Set(list(items)),
        Reply::Double(b) => Kind::Double(b.clone()),
        Reply::Bool(b) => Kind::Bool(*b),
        Reply::Verbatim { format, text } => {
            let mut bytes = format.to_vec();
            bytes.extend_from_slice(text);
            Kind::Verbatim(Bytes::from(bytes))
        }
    };
    ReplyValue { kind: Some(kind) }
}

fn from_value(value: ReplyValue) -> Option<Reply> {
    use reply_value::Kind;
    let list = |l: ReplyList| {
        l.items
            .into_iter()
            .map(from_value)
            .collect::<Option<Vec<_>>>()
    };
    Some(match value.kind? {
        Kind::Simple(b) => Reply::Simple(b),
        Kind::Error(b) => Reply::Error(b),
        Kind::Integer(n) => Reply::Integer(n),
        Kind::Bulk(b) => Reply::Bulk(b),
        Kind::Null(_) => Reply::Null,
        Kind::NullArray(_) => Reply::NullArray,
        Kind::Array(l) => Reply::Array(list(l)?),
        Kind::Map(l) => {
            let items = list(l)?;
            if items.len() % 2 != 0 {
                return None;
            }
            let mut pairs = Vec::with_capacity(items.len() / 2);
            let mut it = items.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                pairs.push((k, v));
            }
            Reply::Map(pairs)
        }
        Kind::Set(l) => Reply::Set(list(l)?),
        Kind::Double(b) => Reply::Double(b),
        Kind::Bool(b) => Reply::Bool(b),
        Kind::Verbatim(b) => {
            let format: [u8; 3] = b.get(..3)?.try_into().ok()?;
            Reply::Verbatim {
                format,
                text: b.slice(3..),
            }
        }
    })
}

pub fn encode_reply(reply: &Reply) -> Vec<u8> {
    to_value(reply).encode_to_vec()
}

/// `None` for bytes that are not an encoded reply.
pub fn decode_reply(bytes: &[u8]) -> Option<Reply> {
    from_value(ReplyValue::decode(bytes).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyspace::MemKeyspace;

    /// Applies `payloads` in order from index 1.
    fn apply_all(ks: &mut MemKeyspace, payloads: &[Vec<u8>]) -> Vec<Reply> {
        payloads
            .iter()
            .zip(1..)
            .map(|(p, index)| apply(ks, index, p).unwrap())
            .collect()
    }

    #[test]
    fn replicas_agree_given_the_same_payloads() {
        let payloads: Vec<Vec<u8>> = vec![
            Replicated::command(
                1_000,
                vec![
                    "SET".into(),
                    "k".into(),
                    "v".into(),
                    "PX".into(),
                    "500".into(),
                ],
            )
            .to_bytes(),
            Replicated::command(1_200, vec!["APPEND".into(), "k".into(), "w".into()]).to_bytes(),
            Replicated::expiry(1_600, vec![(Bytes::from_static(b"k"), 1_500)]).to_bytes(),
        ];
        let mut a = MemKeyspace::default();
        let mut b = MemKeyspace::default();
        let replies_a = apply_all(&mut a, &payloads);
        let replies_b = apply_all(&mut b, &payloads);
        assert_eq!(replies_a, replies_b);
        assert_eq!(replies_a[1], Reply::Integer(2));
        assert_eq!(replies_a[2], Reply::Integer(1));
        assert!(a.records.is_empty() && b.records.is_empty());
        assert_eq!((a.clock_ms, b.clock_ms), (1_600, 1_600));
    }

    /// A proposer whose clock is behind the shard's (a new leader with a
    /// slow clock, an NTP step back) cannot move time backward: a key the
    /// shard has seen expire stays expired, and a write starts from
    /// nothing.
    #[test]
    fn the_shard_clock_never_goes_backward() {
        let mut ks = MemKeyspace::default();
        let payloads: Vec<Vec<u8>> = vec![
            Replicated::command(
                10_000,
                vec![
                    "SET".into(),
                    "k".into(),
                    "1".into(),
                    "PX".into(),
                    "100".into(),
                ],
            )
            .to_bytes(),
            // Another proposer, 5 s ahead: the key is due.
            Replicated::tick(15_000).to_bytes(),
            // A proposer 5 s behind the first one.
            Replicated::command(5_000, vec!["INCR".into(), "k".into()]).to_bytes(),
            Replicated::command(
                5_001,
                vec![
                    "SET".into(),
                    "t".into(),
                    "v".into(),
                    "PX".into(),
                    "100".into(),
                ],
            )
            .to_bytes(),
        ];
        let replies = apply_all(&mut ks, &payloads);
        assert_eq!(replies[2], Reply::Integer(1), "INCR starts from nothing");
        assert_eq!(ks.clock_ms, 15_000);
        // PX counts from the shard clock, not from the stale proposer's.
        let t = crate::record::Record::decode(&ks.records[&b"t"[..]]).unwrap();
        assert_eq!(t.expire_at, Some(15_100));
    }

    #[test]
    fn replies_survive_encoding() {
        let reply = Reply::Array(vec![
            Reply::ok(),
            Reply::error("ERR x"),
            Reply::Integer(-3),
            Reply::bulk("v"),
            Reply::Null,
            Reply::NullArray,
            Reply::Map(vec![(
                Reply::bulk("k"),
                Reply::Set(vec![Reply::Bool(false)]),
            )]),
            Reply::Double(Bytes::from_static(b"1.5")),
            Reply::Verbatim {
                format: *b"txt",
                text: Bytes::from_static(b"hi"),
            },
            Reply::Array(vec![]),
        ]);
        assert_eq!(decode_reply(&encode_reply(&reply)), Some(reply));
        assert_eq!(decode_reply(&[0xff, 0x01]), None);
    }

    #[test]
    fn a_retried_request_is_applied_once() {
        let mut ks = MemKeyspace::default();
        let mut incr = Replicated::retryable(vec!["INCR".into(), "n".into()], 42, 1);
        incr.timestamp_ms = 2_000;
        let first = apply(&mut ks, 1, &incr.to_bytes()).unwrap();
        // A resend, proposed by a node whose clock is far behind.
        incr.timestamp_ms = 3;
        let again = apply(&mut ks, 2, &incr.to_bytes()).unwrap();
        assert_eq!((first, again), (Reply::Integer(1), Reply::Integer(1)));
        // A different id executes; so does the same seq from another origin.
        let mut other = Replicated::retryable(vec!["INCR".into(), "n".into()], 42, 2);
        other.timestamp_ms = 3_000;
        assert_eq!(
            apply(&mut ks, 3, &other.to_bytes()).unwrap(),
            Reply::Integer(2)
        );
        let mut elsewhere = Replicated::retryable(vec!["INCR".into(), "n".into()], 43, 1);
        elsewhere.timestamp_ms = 3_000;
        assert_eq!(
            apply(&mut ks, 4, &elsewhere.to_bytes()).unwrap(),
            Reply::Integer(3)
        );
        // Across a generation boundary, still within the window: answered
        // from the record.
        incr.timestamp_ms = DEDUP_WINDOW_MS + 1_000;
        assert_eq!(
            apply(&mut ks, 5, &incr.to_bytes()).unwrap(),
            Reply::Integer(1)
        );
        // Past the window (by the shard clock), the record is forgotten.
        incr.timestamp_ms = 2_000 + DEDUP_WINDOW_MS + 1;
        assert_eq!(
            apply(&mut ks, 6, &incr.to_bytes()).unwrap(),
            Reply::Integer(4)
        );
    }

    #[test]
    fn old_request_records_are_purged_by_log_position_and_shard_clock() {
        let mut ks = MemKeyspace::default();
        let mut set = Replicated::retryable(vec!["SET".into(), "k".into(), "v".into()], 7, 1);
        set.timestamp_ms = 1_000;
        apply(&mut ks, 1, &set.to_bytes()).unwrap();
        assert_eq!(ks.dedup.len(), 1);
        // Two generations later, but not at a purge position: kept.
        let later = Replicated::tick(3 * DEDUP_WINDOW_MS).to_bytes();
        apply(&mut ks, 2, &later).unwrap();
        assert_eq!(ks.dedup.len(), 1);
        apply(&mut ks, DEDUP_PURGE_EVERY, &later).unwrap();
        assert!(ks.dedup.is_empty());
    }

    #[test]
    fn garbage_is_answered_not_applied() {
        let mut ks = MemKeyspace::default();
        assert!(apply(&mut ks, 1, &[0xff, 0xff, 0xff]).unwrap().is_error());
        let read = Replicated::command(0, vec!["GET".into(), "k".into()]).to_bytes();
        assert!(apply(&mut ks, 2, &read).unwrap().is_error());
        assert!(ks.records.is_empty());
    }
}
