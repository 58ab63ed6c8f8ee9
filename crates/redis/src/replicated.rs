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
            expired: Vec::new(),
        }
    }

    pub fn expiry(timestamp_ms: u64, keys: Vec<(Bytes, u64)>) -> Replicated {
        Replicated {
            timestamp_ms,
            args: Vec::new(),
            expired: keys
                .into_iter()
                .map(|(key, expire_at_ms)| ExpiredKey { key, expire_at_ms })
                .collect(),
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
    match parse(&entry.args) {
        Ok(parsed) if parsed.spec.is_write() => {
            execute_write(&parsed.command, ks, entry.timestamp_ms)
        }
        Ok(_) => Ok(Reply::static_error("ERR replicated command is not a write")),
        Err(reply) => Ok(reply),
    }
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
    fn garbage_is_answered_not_applied() {
        let mut ks = MemKeyspace::default();
        assert!(apply(&mut ks, &[0xff, 0xff, 0xff]).unwrap().is_error());
        let read = Replicated::command(0, vec!["GET".into(), "k".into()]).to_bytes();
        assert!(apply(&mut ks, &read).unwrap().is_error());
        assert!(ks.records.is_empty());
    }
}
