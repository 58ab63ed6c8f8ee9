//! What a shard's raft log carries: a write command as the client sent it
//! plus the proposer's clock, or a batch of keys for active expiry.
//!
//! Replicas re-parse and execute the command at apply time with the
//! proposer's timestamp, so every replica computes the same result and the
//! leader's result is the client's reply. Encoded with protobuf (prost) so
//! the format can grow fields without breaking old logs.

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
    /// Nonzero for a command that may be retried (a forwarded write): its
    /// reply is recorded, and a second entry with the same id answers with
    /// that reply instead of executing again.
    #[prost(uint64, tag = "4")]
    pub request_id: u64,
    /// Unix milliseconds when the request id was made, at its origin.
    /// Records older than [`DEDUP_WINDOW_MS`] at apply time are forgotten.
    #[prost(uint64, tag = "5")]
    pub request_created_ms: u64,
}

/// How long a request id protects against a duplicate apply. Retries of a
/// forwarded write happen within seconds; this leaves a wide margin for
/// clock differences between nodes.
pub const DEDUP_WINDOW_MS: u64 = 10 * 60 * 1000;

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

    /// A command with a request id, for a write that may be retried.
    pub fn retryable(args: Vec<Bytes>, request_id: u64, created_ms: u64) -> Replicated {
        Replicated {
            args,
            request_id,
            request_created_ms: created_ms,
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

/// Applies one log payload to a shard's keyspace and returns the reply for
/// the client that proposed it. Deterministic: only the payload and the
/// keyspace decide the outcome. Only storage failures are errors.
pub fn apply<K: KeyspaceWrite + ?Sized>(ks: &mut K, payload: &[u8]) -> Result<Reply, StorageError> {
    let Ok(entry) = Replicated::decode(payload) else {
        return Ok(Reply::static_error("ERR corrupt replicated command"));
    };
    if entry.args.is_empty() {
        let keys: Vec<(Bytes, u64)> = entry
            .expired
            .into_iter()
            .map(|k| (k.key, k.expire_at_ms))
            .collect();
        let deleted = expire_due(ks, &keys, entry.timestamp_ms)?;
        return Ok(Reply::Integer(i64::try_from(deleted).unwrap_or(i64::MAX)));
    }
    let dedup = (entry.request_id != 0
        && entry.request_created_ms.saturating_add(DEDUP_WINDOW_MS) >= entry.timestamp_ms)
        .then_some((entry.request_created_ms, entry.request_id));
    if let Some((created, id)) = dedup
        && let Some(recorded) = ks.dedup_get(created, id)?
    {
        return Ok(decode_reply(&recorded)
            .unwrap_or_else(|| Reply::static_error("ERR corrupt recorded reply")));
    }
    let reply = match parse(&entry.args) {
        Ok(parsed) if parsed.spec.is_write() => {
            execute_write(&parsed.command, ks, entry.timestamp_ms)?
        }
        Ok(_) => Reply::static_error("ERR replicated command is not a write"),
        Err(reply) => reply,
    };
    if let Some((created, id)) = dedup {
        ks.dedup_put(created, id, encode_reply(&reply))?;
    }
    Ok(reply)
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
        let replies_a: Vec<Reply> = payloads.iter().map(|p| apply(&mut a, p).unwrap()).collect();
        let replies_b: Vec<Reply> = payloads.iter().map(|p| apply(&mut b, p).unwrap()).collect();
        assert_eq!(replies_a, replies_b);
        assert_eq!(replies_a[1], Reply::Integer(2));
        assert_eq!(replies_a[2], Reply::Integer(1));
        assert!(a.records.is_empty() && b.records.is_empty());
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
        let mut incr = Replicated::retryable(vec!["INCR".into(), "n".into()], 42, 1_000);
        incr.timestamp_ms = 2_000;
        let first = apply(&mut ks, &incr.to_bytes()).unwrap();
        incr.timestamp_ms = 3_000;
        let again = apply(&mut ks, &incr.to_bytes()).unwrap();
        assert_eq!((first, again), (Reply::Integer(1), Reply::Integer(1)));
        // A different id executes.
        let mut other = Replicated::retryable(vec!["INCR".into(), "n".into()], 43, 1_000);
        other.timestamp_ms = 3_000;
        assert_eq!(
            apply(&mut ks, &other.to_bytes()).unwrap(),
            Reply::Integer(2)
        );
        // Past the window, the record is forgotten (deterministically, by
        // the entry's timestamp).
        incr.timestamp_ms = 1_000 + DEDUP_WINDOW_MS + 1;
        assert_eq!(apply(&mut ks, &incr.to_bytes()).unwrap(), Reply::Integer(3));
    }

    #[test]
    fn garbage_is_answered_not_applied() {
        let mut ks = MemKeyspace::default();
        assert!(apply(&mut ks, &[0xff, 0xff, 0xff]).unwrap().is_error());
        let read = Replicated::command(0, vec!["GET".into(), "k".into()]).to_bytes();
        assert!(apply(&mut ks, &read).unwrap().is_error());
        assert!(ks.records.is_empty());
    }
}
