//! Building and applying a shard's raft log entries ([`LogEntry`], defined
//! in `proto/elastickv/v1/log.proto`): a typed write command with its
//! request id and the proposer's clock, a batch of keys for active expiry,
//! or just a clock reading (a tick).
//!
//! Every replica decodes an entry once and executes its typed command with
//! the same "now", so every replica computes the same result, and the
//! leader's result is the client's reply. An entry this build cannot read
//! (a newer [`LOG_VERSION`], a kind or command it does not know, or bytes
//! that do not decode) is an [`ApplyError::Unreadable`]: applying it
//! differently from the replicas that can would make their data diverge,
//! so the node stops instead.
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
//! Every client write carries a request id: the sender's origin (a random
//! number per process) and a sequence number. Applying it records its
//! reply, under the generation of the shard clock it applied at; a second
//! entry with the same id within [`DEDUP_WINDOW_MS`] of the first is
//! answered from the record instead of executing again. Records live in
//! the current and the previous generation, each [`DEDUP_WINDOW_MS`] long,
//! and older ones are deleted every [`DEDUP_PURGE_EVERY`] entries: by log
//! position and replicated time only, never by a node's wall clock.

use bytes::Bytes;
use elastickv_resp::Reply;
use prost::Message;
use thiserror::Error;

use crate::exec::{execute_transaction, execute_write, expire_due};
use crate::keyspace::{KeyspaceWrite, StorageError};
use crate::log::{self, ExpiredKey, ExpiryBatch, LogEntry, RequestId, Tick, log_entry::Body};

/// The newest entry format this build writes and reads.
pub const LOG_VERSION: u32 = 1;

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

/// Why an entry was not applied.
#[derive(Debug, Error)]
pub enum ApplyError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Not an entry this build can apply (see the module docs).
    #[error("log entry {index} cannot be applied by this version of elastickv: {why}")]
    Unreadable { index: u64, why: String },
}

impl LogEntry {
    /// A client write with its request id, stamped later by the leader
    /// that proposes it. `origin` must not be 0.
    pub fn write(write: log::Write, origin: u64, seq: u64) -> LogEntry {
        LogEntry {
            version: LOG_VERSION,
            timestamp_ms: 0,
            request: Some(RequestId { origin, seq }),
            body: Some(Body::Write(write)),
        }
    }

    /// A transaction (MULTI ... EXEC) with its request id, like a write.
    pub fn transaction(transaction: log::Transaction, origin: u64, seq: u64) -> LogEntry {
        LogEntry {
            version: LOG_VERSION,
            timestamp_ms: 0,
            request: Some(RequestId { origin, seq }),
            body: Some(Body::Transaction(transaction)),
        }
    }

    /// A change to the scripts and function libraries (on shard 0), with
    /// its request id, like a write.
    pub fn scripts(change: log::ScriptsChange, origin: u64, seq: u64) -> LogEntry {
        LogEntry {
            version: LOG_VERSION,
            timestamp_ms: 0,
            request: Some(RequestId { origin, seq }),
            body: Some(Body::Scripts(change)),
        }
    }

    /// An entry that only carries its proposer's clock: applying it moves
    /// the shard clock forward, and nothing else.
    pub fn tick(timestamp_ms: u64) -> LogEntry {
        LogEntry {
            version: LOG_VERSION,
            timestamp_ms,
            request: None,
            body: Some(Body::Tick(Tick {})),
        }
    }

    /// Active expiry of `keys`, each with the expiry the leader saw.
    pub fn expiry(timestamp_ms: u64, keys: Vec<(Bytes, u64)>) -> LogEntry {
        LogEntry {
            version: LOG_VERSION,
            timestamp_ms,
            request: None,
            body: Some(Body::Expiry(ExpiryBatch {
                keys: keys
                    .into_iter()
                    .map(|(key, expire_at_ms)| ExpiredKey { key, expire_at_ms })
                    .collect(),
            })),
        }
    }

    /// Decodes an entry this build can apply, or says why it cannot.
    pub fn from_bytes(bytes: &[u8]) -> Result<LogEntry, String> {
        let entry = LogEntry::decode(bytes).map_err(|e| format!("undecodable: {e}"))?;
        if entry.version > LOG_VERSION {
            return Err(format!(
                "format version {} (this build knows up to {LOG_VERSION})",
                entry.version
            ));
        }
        let known = match &entry.body {
            Some(Body::Write(write)) => write_is_known(write),
            Some(Body::Transaction(tx)) => tx.commands.iter().all(|queued| match &queued.command {
                Some(log::queued_command::Command::Write(write)) => write_is_known(write),
                Some(log::queued_command::Command::Read(_)) => true,
                None => false,
            }),
            Some(Body::Expiry(_) | Body::Tick(_)) => true,
            Some(Body::Scripts(change)) => change.change.is_some(),
            None => false,
        };
        if !known {
            return Err("an entry kind or command this build does not know".into());
        }
        Ok(entry)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode_to_vec()
    }
}

/// Whether `write` names a command this build knows (an unknown oneof
/// variant decodes as `None`).
fn write_is_known(write: &log::Write) -> bool {
    use log::write::Family;
    match &write.family {
        Some(Family::Strings(w)) => w.command.is_some(),
        Some(Family::Keys(w)) => w.command.is_some(),
        Some(Family::Hashes(w)) => w.command.is_some(),
        Some(Family::Sets(w)) => w.command.is_some(),
        Some(Family::Lists(w)) => w.command.is_some(),
        Some(Family::Bitmaps(w)) => w.command.is_some(),
        Some(Family::SortedSets(w)) => w.command.is_some(),
        Some(Family::HyperLogLog(w)) => w.command.is_some(),
        None => false,
    }
}

/// Applies the log payload at `index` to a shard's keyspace and returns the
/// reply for the client that proposed it. Deterministic: only the payload,
/// its index and the keyspace decide the outcome.
pub fn apply<K: KeyspaceWrite + ?Sized>(
    ks: &mut K,
    index: u64,
    payload: &[u8],
) -> Result<Reply, ApplyError> {
    let entry =
        LogEntry::from_bytes(payload).map_err(|why| ApplyError::Unreadable { index, why })?;
    let now = entry.timestamp_ms.max(ks.clock_ms());
    ks.set_clock_ms(now);
    let generation = dedup_generation(now);
    if index.is_multiple_of(DEDUP_PURGE_EVERY) {
        ks.dedup_purge(generation.saturating_sub(1))?;
    }
    let write = match entry.body {
        Some(Body::Write(write)) => Proposed::Write(write),
        Some(Body::Transaction(tx)) => Proposed::Transaction(tx),
        Some(Body::Scripts(change)) => Proposed::Scripts(change),
        Some(Body::Expiry(batch)) => {
            let keys: Vec<(Bytes, u64)> = batch
                .keys
                .into_iter()
                .map(|k| (k.key, k.expire_at_ms))
                .collect();
            let deleted = expire_due(ks, &keys, now)?;
            return Ok(Reply::Integer(i64::try_from(deleted).unwrap_or(i64::MAX)));
        }
        Some(Body::Tick(_)) | None => return Ok(Reply::ok()),
    };
    let request = entry
        .request
        .filter(|r| r.origin != 0)
        .map(|r| (r.origin, r.seq));
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
    let reply = match &write {
        Proposed::Write(write) => execute_write(write, ks, now)?,
        Proposed::Transaction(tx) => execute_transaction(tx, ks, now)?,
        Proposed::Scripts(change) => crate::registry::apply(change, ks)?,
    };
    if let Some((origin, seq)) = request {
        ks.dedup_put(generation, origin, seq, encode_record(now, &reply))?;
    }
    Ok(reply)
}

/// What a client proposed: one write, a transaction, or a change to the
/// scripts and libraries.
enum Proposed {
    Write(log::Write),
    Transaction(log::Transaction),
    Scripts(log::ScriptsChange),
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
        tags = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13"
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
        #[prost(message, tag = "13")]
        Pairs(super::ReplyList),
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
        // Pushes are delivered where they arise and never relayed; kept
        // as arrays if one ever is.
        Reply::Array(items) | Reply::Push(items) => Kind::Array(list(items)),
        Reply::Map(pairs) => Kind::Map(ReplyList {
            items: pairs
                .iter()
                .flat_map(|(k, v)| [to_value(k), to_value(v)])
                .collect(),
        }),
        Reply::Pairs(pairs) => Kind::Pairs(ReplyList {
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
        Kind::Map(l) => Reply::Map(pairs(list(l)?)?),
        Kind::Pairs(l) => Reply::Pairs(pairs(list(l)?)?),
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

/// Alternating items as pairs; `None` for an odd count.
fn pairs(items: Vec<Reply>) -> Option<Vec<(Reply, Reply)>> {
    if !items.len().is_multiple_of(2) {
        return None;
    }
    let mut pairs = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        pairs.push((k, v));
    }
    Some(pairs)
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
    use crate::command::parse_write;
    use crate::keyspace::MemKeyspace;

    /// The write `line` (words split on spaces) as a log entry stamped
    /// `timestamp_ms`, without a request id.
    fn command(timestamp_ms: u64, line: &str) -> LogEntry {
        let args: Vec<Bytes> = line.split(' ').map(|w| Bytes::from(w.to_owned())).collect();
        let mut entry = LogEntry::write(parse_write(&args).unwrap(), 0, 0);
        entry.request = None;
        entry.timestamp_ms = timestamp_ms;
        entry
    }

    /// The write `line` with request id `(origin, seq)`.
    fn retryable(line: &str, origin: u64, seq: u64) -> LogEntry {
        let mut entry = command(0, line);
        entry.request = Some(RequestId { origin, seq });
        entry
    }

    /// Applies `payloads` in order from index 1.
    fn apply_all(ks: &mut MemKeyspace, payloads: &[Vec<u8>]) -> Vec<Reply> {
        payloads
            .iter()
            .zip(1..)
            .map(|(p, index)| apply(ks, index, p).unwrap())
            .collect()
    }

    /// A transaction of `lines` (writes as typed commands, reads as
    /// arguments) watching `watched`, with request id `(9, seq)`.
    fn transaction(lines: &[&str], watched: Vec<log::WatchedKey>, seq: u64) -> Vec<u8> {
        use log::queued_command::Command as Queued;
        let commands = lines
            .iter()
            .map(|line| {
                let args: Vec<Bytes> = line.split(' ').map(|w| Bytes::from(w.to_owned())).collect();
                let command = match parse_write(&args) {
                    Ok(write) => Queued::Write(write),
                    Err(_) => Queued::Read(log::ReadArguments { args }),
                };
                log::QueuedCommand {
                    command: Some(command),
                }
            })
            .collect();
        let mut entry = LogEntry::transaction(
            log::Transaction {
                watched,
                commands,
                script_effects: false,
            },
            9,
            seq,
        );
        entry.timestamp_ms = 1_000;
        entry.to_bytes()
    }

    /// A transaction applies its commands in order, each seeing the last;
    /// a watched key that changed since WATCH voids it entirely.
    #[test]
    fn transactions_apply_whole_or_not_at_all() {
        let mut ks = MemKeyspace::default();
        apply(&mut ks, 1, &command(1_000, "SET k 1").to_bytes()).unwrap();
        let seen = crate::exec::watch_revisions(
            &ks,
            &crate::db::ReadTime::at(1_000),
            &[Bytes::from_static(b"k"), Bytes::from_static(b"nosuch")],
        )
        .unwrap();
        assert_eq!((seen[0].exists, seen[1].exists), (true, false));
        let tx = transaction(&["INCR k", "GET k", "INCR k", "LPUSH k x"], seen.clone(), 1);
        assert_eq!(
            apply(&mut ks, 2, &tx).unwrap(),
            Reply::Array(vec![
                Reply::Integer(2),
                Reply::bulk(Bytes::from_static(b"2")),
                Reply::Integer(3),
                Reply::static_error(crate::errors::WRONGTYPE),
            ])
        );
        // k changed since `seen`: the same transaction now does nothing.
        let again = transaction(&["INCR k"], seen, 2);
        assert_eq!(apply(&mut ks, 3, &again).unwrap(), Reply::NullArray);
        let get = transaction(&["GET k"], Vec::new(), 3);
        assert_eq!(
            apply(&mut ks, 4, &get).unwrap(),
            Reply::Array(vec![Reply::bulk(Bytes::from_static(b"3"))])
        );
    }

    #[test]
    fn replicas_agree_given_the_same_payloads() {
        let payloads: Vec<Vec<u8>> = vec![
            command(1_000, "SET k v PX 500").to_bytes(),
            command(1_200, "APPEND k w").to_bytes(),
            LogEntry::expiry(1_600, vec![(Bytes::from_static(b"k"), 1_500)]).to_bytes(),
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

    /// Applies `lines` (stamped 1000, 1001, ...) to two fresh replicas,
    /// checks that their replies, records, sub-keys and key counts agree,
    /// and returns the replies and one replica.
    fn two_replicas(lines: &[&str]) -> (Vec<Reply>, MemKeyspace) {
        let payloads: Vec<Vec<u8>> = lines
            .iter()
            .zip(1_000..)
            .map(|(line, ts)| command(ts, line).to_bytes())
            .collect();
        let mut a = MemKeyspace::default();
        let mut b = MemKeyspace::default();
        let replies_a = apply_all(&mut a, &payloads);
        let replies_b = apply_all(&mut b, &payloads);
        assert_eq!(replies_a, replies_b);
        assert_eq!(
            (&a.records, &a.subs, a.counts),
            (&b.records, &b.subs, b.counts)
        );
        (replies_a, a)
    }

    /// Hashes too: the same entries give the same replies, records and
    /// sub-keys on every replica, including the versions new collections
    /// get and what deleting and overwriting them leaves behind.
    #[test]
    fn replicas_agree_on_hashes() {
        let lines = [
            "HSET h a 1 b 2 c 3",
            "HINCRBY h a 41",
            "HINCRBYFLOAT h f 0.1",
            "HDEL h b",
            "HSETNX h b x",
            "RENAME h g",
            "HSET h z 26",
            "SET h overwritten",
            "HMSET big f0 0 f1 1 f2 2",
            "DEL big",
            "HSET e only 1",
            "HDEL e only",
        ];
        let (replies_a, a) = two_replicas(&lines);
        assert_eq!(replies_a[1], Reply::Integer(42));
        assert_eq!(replies_a[4], Reply::Integer(1));
        // g holds a, b, c and f; h is a string; big and e are gone, with
        // every sub-key of theirs.
        assert_eq!(a.subs.len(), 4);
        assert_eq!(a.records.len(), 2);
        assert_eq!(a.counts.keys, 2);
    }

    /// Sets, SPOP included: its random picks come from the seed in the
    /// entry, so replicas applying the same entry remove the same members.
    #[test]
    fn replicas_agree_on_sets() {
        let lines = [
            "SADD {t}a 1 2 3 4 5 6 7 8 9",
            "SADD {t}b 5 6 7 8 9 10",
            "SPOP {t}a 3",
            "SPOP {t}b",
            "SINTERSTORE {t}c {t}a {t}b",
            "SMOVE {t}a {t}d 1",
            "SDIFFSTORE {t}e {t}a {t}b",
            "SREM {t}b 10",
        ];
        let (replies_a, _) = two_replicas(&lines);
        let Reply::Set(popped) = &replies_a[2] else {
            panic!("{:?}", replies_a[2]);
        };
        assert_eq!(popped.len(), 3);
    }

    /// Lists: pushes at both ends, moves, removals and trims leave the
    /// same positions and elements on every replica.
    #[test]
    fn replicas_agree_on_lists() {
        let lines = [
            "RPUSH {t}l a b c d e f",
            "LPUSH {t}l z",
            "LINSERT {t}l BEFORE c x",
            "LREM {t}l 1 b",
            "LMOVE {t}l {t}m RIGHT LEFT",
            "LTRIM {t}l 1 -2",
            "LSET {t}l 0 first",
            "LMPOP 2 {t}n {t}l LEFT COUNT 2",
            "RPOPLPUSH {t}m {t}m",
        ];
        let (replies_a, _) = two_replicas(&lines);
        assert_eq!(replies_a[2], Reply::Integer(8));
    }

    /// Sorted sets: member and score-index sub-keys move together through
    /// updates, pops, range removals and the STORE forms on every replica.
    #[test]
    fn replicas_agree_on_sorted_sets() {
        let lines = [
            "ZADD {t}z 1 a 2 b 3 c 4 d 5 e -0 f",
            "ZINCRBY {t}z 10 a",
            "ZADD {t}z GT CH 1 b 20 c",
            "ZPOPMIN {t}z 2",
            "ZREMRANGEBYSCORE {t}z (4 5",
            "ZADD {t}y 7 x 8 c",
            "ZUNIONSTORE {t}u 2 {t}z {t}y WEIGHTS 2 1",
            "ZRANGESTORE {t}r {t}u 0 1",
            "ZMPOP 2 {t}none {t}y MAX",
            "ZREM {t}r nosuch",
        ];
        let (replies_a, a) = two_replicas(&lines);
        assert_eq!(replies_a[2], Reply::Integer(1));
        assert_eq!(replies_a[6], Reply::Integer(4));
        // {t}z holds d, a and c, {t}y holds x, {t}u four members, {t}r two:
        // two sub-keys each.
        assert_eq!(a.subs.len(), 2 * (3 + 1 + 4 + 2));
        assert_eq!(a.counts.keys, 4);
    }

    /// HyperLogLogs: PFADD, the cardinality PFCOUNT caches and PFMERGE
    /// leave the same bytes on every replica.
    #[test]
    fn replicas_agree_on_hyperloglogs() {
        let lines = [
            "PFADD {t}a 1 2 3 4 5 6 7 8 9",
            "PFCOUNT {t}a",
            "PFADD {t}b 9 10 11",
            "PFMERGE {t}c {t}a {t}b",
            "PFCOUNT {t}c",
        ];
        let (replies_a, _) = two_replicas(&lines);
        assert_eq!(replies_a[1], Reply::Integer(9));
        assert_eq!(replies_a[4], Reply::Integer(11));
    }

    /// Bitmaps: bit writes, BITFIELD's overflow handling and BITOP leave
    /// the same strings on every replica.
    #[test]
    fn replicas_agree_on_bitmaps() {
        let lines = [
            "SETBIT {t}a 100 1",
            "BITFIELD {t}a OVERFLOW SAT INCRBY i8 0 200 SET u4 12 3",
            "BITFIELD {t}b OVERFLOW FAIL INCRBY u2 0 9",
            "BITOP XOR {t}c {t}a {t}b",
            "BITOP NOT {t}d {t}nosuch",
        ];
        let (replies_a, a) = two_replicas(&lines);
        assert_eq!(
            replies_a[1],
            Reply::Array(vec![Reply::Integer(127), Reply::Integer(0)])
        );
        assert_eq!(replies_a[2], Reply::Array(vec![Reply::Null]));
        assert_eq!(a.records.len(), 3, "{:?}", a.records.keys());
    }

    /// A proposer whose clock is behind the shard's (a new leader with a
    /// slow clock, an NTP step back) cannot move time backward: a key the
    /// shard has seen expire stays expired, and a write starts from
    /// nothing.
    #[test]
    fn the_shard_clock_never_goes_backward() {
        let mut ks = MemKeyspace::default();
        let payloads: Vec<Vec<u8>> = vec![
            command(10_000, "SET k 1 PX 100").to_bytes(),
            // Another proposer, 5 s ahead: the key is due.
            LogEntry::tick(15_000).to_bytes(),
            // A proposer 5 s behind the first one.
            command(5_000, "INCR k").to_bytes(),
            command(5_001, "SET t v PX 100").to_bytes(),
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
            Reply::Pairs(vec![(
                Reply::bulk("m"),
                Reply::Double(Bytes::from_static(b"2")),
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
        let mut incr = retryable("INCR n", 42, 1);
        incr.timestamp_ms = 2_000;
        let first = apply(&mut ks, 1, &incr.to_bytes()).unwrap();
        // A resend, proposed by a node whose clock is far behind.
        incr.timestamp_ms = 3;
        let again = apply(&mut ks, 2, &incr.to_bytes()).unwrap();
        assert_eq!((first, again), (Reply::Integer(1), Reply::Integer(1)));
        // A different id executes; so does the same seq from another origin.
        let mut other = retryable("INCR n", 42, 2);
        other.timestamp_ms = 3_000;
        assert_eq!(
            apply(&mut ks, 3, &other.to_bytes()).unwrap(),
            Reply::Integer(2)
        );
        let mut elsewhere = retryable("INCR n", 43, 1);
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
        let mut set = retryable("SET k v", 7, 1);
        set.timestamp_ms = 1_000;
        apply(&mut ks, 1, &set.to_bytes()).unwrap();
        assert_eq!(ks.dedup.len(), 1);
        // Two generations later, but not at a purge position: kept.
        let later = LogEntry::tick(3 * DEDUP_WINDOW_MS).to_bytes();
        apply(&mut ks, 2, &later).unwrap();
        assert_eq!(ks.dedup.len(), 1);
        apply(&mut ks, DEDUP_PURGE_EVERY, &later).unwrap();
        assert!(ks.dedup.is_empty());
    }

    /// Bytes that are not an entry, or an entry from a newer version, are
    /// refused as a whole: never half applied, never answered differently
    /// on different replicas.
    #[test]
    fn unreadable_entries_are_refused_not_applied() {
        let mut ks = MemKeyspace::default();
        let garbage = apply(&mut ks, 1, &[0xff, 0xff, 0xff]);
        assert!(matches!(
            garbage,
            Err(ApplyError::Unreadable { index: 1, .. })
        ));
        let mut newer = command(0, "SET k v");
        newer.version = LOG_VERSION + 1;
        let newer = apply(&mut ks, 2, &newer.to_bytes());
        assert!(matches!(
            newer,
            Err(ApplyError::Unreadable { index: 2, .. })
        ));
        // A write whose command this build does not know decodes with an
        // empty oneof.
        let mut unknown = command(0, "SET k v");
        unknown.body = Some(Body::Write(log::Write {
            family: Some(log::write::Family::Strings(log::StringWrite {
                command: None,
            })),
        }));
        let unknown = apply(&mut ks, 3, &unknown.to_bytes());
        assert!(matches!(
            unknown,
            Err(ApplyError::Unreadable { index: 3, .. })
        ));
        assert!(ks.records.is_empty());
        assert_eq!(ks.clock_ms, 0);
    }

    #[test]
    fn a_read_is_not_a_loggable_write() {
        let args: Vec<Bytes> = vec!["GET".into(), "k".into()];
        assert!(parse_write(&args).is_err());
    }
}
