//! The stored form of a key: its metadata record (type, expiry, and for a
//! collection its version and size), and for a string its value.
//!
//! ```text
//! byte 0        type tag: 1 string, 2 hash, 3 list, 4 set, 5 sorted set
//! bytes 1..9    expire-at, unix milliseconds, big-endian; 0 = no expiry
//! string:
//!   bytes 9..   the value
//! collection:
//!   bytes 9..17   version, big-endian
//!   bytes 17..25  size: fields, elements or members
//!   list only: bytes 25..33  index of the first element
//! ```
//!
//! A collection's fields, members or elements are sub-keys of (key,
//! version), one each (see [`crate::keyspace`]). A new collection gets a
//! new version, so deleting or overwriting one only has to drop its
//! version's sub-keys, never to find them among a successor's.

use bytes::Bytes;
use thiserror::Error;

const TAG_STRING: u8 = 1;
const TAG_HASH: u8 = 2;
const TAG_LIST: u8 = 3;
const TAG_SET: u8 = 4;
const TAG_ZSET: u8 = 5;
const HEADER_LEN: usize = 9;
const COLLECTION_LEN: usize = HEADER_LEN + 16;
const LIST_LEN: usize = COLLECTION_LEN + 8;

/// The Redis type of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    String,
    Hash,
    List,
    Set,
    ZSet,
}

impl ValueType {
    /// The name TYPE and SCAN TYPE use.
    pub fn name(&self) -> &'static str {
        match self {
            ValueType::String => "string",
            ValueType::Hash => "hash",
            ValueType::List => "list",
            ValueType::Set => "set",
            ValueType::ZSet => "zset",
        }
    }

    fn tag(self) -> u8 {
        match self {
            ValueType::String => TAG_STRING,
            ValueType::Hash => TAG_HASH,
            ValueType::List => TAG_LIST,
            ValueType::Set => TAG_SET,
            ValueType::ZSet => TAG_ZSET,
        }
    }

    fn of_tag(tag: u8) -> Option<ValueType> {
        Some(match tag {
            TAG_STRING => ValueType::String,
            TAG_HASH => ValueType::Hash,
            TAG_LIST => ValueType::List,
            TAG_SET => ValueType::Set,
            TAG_ZSET => ValueType::ZSet,
            _ => return None,
        })
    }
}

/// Where a collection's sub-keys live and how many there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Collection {
    /// Hash, list, set or sorted set.
    pub kind: ValueType,
    pub version: u64,
    /// Fields, elements or members.
    pub size: u64,
    /// Lists: the index of the first element (elements are at
    /// `head..head + size`). 0 for the other types.
    pub head: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    String(Bytes),
    Collection(Collection),
}

impl Value {
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::String(_) => ValueType::String,
            Value::Collection(c) => c.kind,
        }
    }
}

/// A key's stored record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Unix milliseconds after which the key no longer exists.
    pub expire_at: Option<u64>,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("corrupt record: {0}")]
pub struct CorruptRecord(pub &'static str);

impl Record {
    pub fn string(value: Bytes, expire_at: Option<u64>) -> Record {
        Record {
            expire_at,
            value: Value::String(value),
        }
    }

    pub fn collection(collection: Collection, expire_at: Option<u64>) -> Record {
        Record {
            expire_at,
            value: Value::Collection(collection),
        }
    }

    /// The collection this record describes, if it is one.
    pub fn as_collection(&self) -> Option<&Collection> {
        match &self.value {
            Value::Collection(c) => Some(c),
            Value::String(_) => None,
        }
    }

    /// Whether the key is gone at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expire_at.is_some_and(|at| at <= now_ms)
    }

    pub fn encode(&self) -> Vec<u8> {
        let expire = self.expire_at.unwrap_or(0).to_be_bytes();
        match &self.value {
            Value::String(bytes) => {
                let mut out = Vec::with_capacity(HEADER_LEN + bytes.len());
                out.push(TAG_STRING);
                out.extend_from_slice(&expire);
                out.extend_from_slice(bytes);
                out
            }
            Value::Collection(c) => {
                let mut out = Vec::with_capacity(LIST_LEN);
                out.push(c.kind.tag());
                out.extend_from_slice(&expire);
                out.extend_from_slice(&c.version.to_be_bytes());
                out.extend_from_slice(&c.size.to_be_bytes());
                if c.kind == ValueType::List {
                    out.extend_from_slice(&c.head.to_be_bytes());
                }
                out
            }
        }
    }

    pub fn decode(raw: &[u8]) -> Result<Record, CorruptRecord> {
        let (kind, expire_at) = decode_header(raw)?;
        let value = match kind {
            ValueType::String => Value::String(Bytes::copy_from_slice(&raw[HEADER_LEN..])),
            kind => {
                let len = if kind == ValueType::List {
                    LIST_LEN
                } else {
                    COLLECTION_LEN
                };
                if raw.len() != len {
                    return Err(CorruptRecord("collection metadata of the wrong length"));
                }
                let field = |at: usize| {
                    let mut bytes = [0u8; 8];
                    bytes.copy_from_slice(&raw[at..at + 8]);
                    u64::from_be_bytes(bytes)
                };
                Value::Collection(Collection {
                    kind,
                    version: field(HEADER_LEN),
                    size: field(HEADER_LEN + 8),
                    head: if kind == ValueType::List {
                        field(COLLECTION_LEN)
                    } else {
                        0
                    },
                })
            }
        };
        Ok(Record { expire_at, value })
    }

    /// Type and expiry without copying the value.
    pub fn peek(raw: &[u8]) -> Result<(ValueType, Option<u64>), CorruptRecord> {
        decode_header(raw)
    }
}

fn decode_header(raw: &[u8]) -> Result<(ValueType, Option<u64>), CorruptRecord> {
    let header: [u8; HEADER_LEN] = raw
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(CorruptRecord("shorter than its header"))?;
    let kind = ValueType::of_tag(header[0]).ok_or(CorruptRecord("unknown type tag"))?;
    let mut at = [0u8; 8];
    at.copy_from_slice(&header[1..]);
    let at = u64::from_be_bytes(at);
    Ok((kind, (at != 0).then_some(at)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let collection = |kind, head| Collection {
            kind,
            version: 0x0102_0304_0506_0708,
            size: 3,
            head,
        };
        for rec in [
            Record::string(Bytes::from_static(b"hello"), None),
            Record::string(Bytes::new(), Some(1_700_000_000_000)),
            Record::collection(collection(ValueType::Hash, 0), Some(5)),
            Record::collection(collection(ValueType::Set, 0), None),
            Record::collection(collection(ValueType::ZSet, 0), None),
            Record::collection(collection(ValueType::List, 1 << 63), Some(9)),
        ] {
            let raw = rec.encode();
            assert_eq!(Record::decode(&raw).unwrap(), rec);
            assert_eq!(
                Record::peek(&raw).unwrap(),
                (rec.value.value_type(), rec.expire_at)
            );
        }
    }

    #[test]
    fn corrupt_input_is_an_error() {
        assert!(Record::decode(b"").is_err());
        assert!(Record::decode(&[1, 0, 0]).is_err());
        assert!(Record::decode(&[9, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        // A hash header without its version and size.
        assert!(Record::decode(&[2, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn expiry_boundary() {
        let rec = Record::string(Bytes::new(), Some(100));
        assert!(!rec.is_expired(99));
        assert!(rec.is_expired(100));
    }
}
