//! The stored form of a key: its metadata record (type, expiry, revision,
//! and for a collection its version and size), and for a string its value.
//!
//! ```text
//! byte 0        type tag: 1 string, 2 hash, 3 list, 4 set, 5 sorted set,
//!               plus 0x80 when a revision follows the expiry
//! bytes 1..9    expire-at, unix milliseconds, big-endian; 0 = no expiry
//! bytes 9..17   revision, big-endian (only with the 0x80 flag)
//! then, string:
//!   the value
//! collection:
//!   version, big-endian (8 bytes)
//!   size: fields, elements or members (8 bytes)
//!   list only: index of the first element (8 bytes)
//! ```
//!
//! A collection's fields, members or elements are sub-keys of (key,
//! version), one each (see [`crate::keyspace`]). A new collection gets a
//! new version, so deleting or overwriting one only has to drop its
//! version's sub-keys, never to find them among a successor's.
//!
//! The revision changes with every write to the key, its value or its
//! members (WATCH compares it); records written before revisions existed
//! have none and read as revision 0.

use bytes::Bytes;
use thiserror::Error;

const TAG_STRING: u8 = 1;
const TAG_HASH: u8 = 2;
const TAG_LIST: u8 = 3;
const TAG_SET: u8 = 4;
const TAG_ZSET: u8 = 5;
/// On the tag: a revision follows the expiry.
const HAS_REVISION: u8 = 0x80;
/// Tag and expiry.
const HEADER_LEN: usize = 9;
/// Version and size.
const COLLECTION_BODY: usize = 16;
/// Version, size and head.
const LIST_BODY: usize = COLLECTION_BODY + 8;

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
    /// Which write last changed the key: a number from the shard's version
    /// sequence, set when the record is stored (0: none recorded).
    pub revision: u64,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("corrupt record: {0}")]
pub struct CorruptRecord(pub &'static str);

impl Record {
    pub fn string(value: Bytes, expire_at: Option<u64>) -> Record {
        Record {
            expire_at,
            revision: 0,
            value: Value::String(value),
        }
    }

    pub fn collection(collection: Collection, expire_at: Option<u64>) -> Record {
        Record {
            expire_at,
            revision: 0,
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
        self.encode_as(self.revision)
    }

    /// The stored bytes of this record at `revision`.
    pub fn encode_as(&self, revision: u64) -> Vec<u8> {
        let expire = self.expire_at.unwrap_or(0).to_be_bytes();
        let (tag, body_len) = match &self.value {
            Value::String(bytes) => (TAG_STRING, bytes.len()),
            Value::Collection(c) if c.kind == ValueType::List => (c.kind.tag(), LIST_BODY),
            Value::Collection(c) => (c.kind.tag(), COLLECTION_BODY),
        };
        let mut out = Vec::with_capacity(HEADER_LEN + 8 + body_len);
        out.push(tag | HAS_REVISION);
        out.extend_from_slice(&expire);
        out.extend_from_slice(&revision.to_be_bytes());
        match &self.value {
            Value::String(bytes) => out.extend_from_slice(bytes),
            Value::Collection(c) => {
                out.extend_from_slice(&c.version.to_be_bytes());
                out.extend_from_slice(&c.size.to_be_bytes());
                if c.kind == ValueType::List {
                    out.extend_from_slice(&c.head.to_be_bytes());
                }
            }
        }
        out
    }

    pub fn decode(raw: &[u8]) -> Result<Record, CorruptRecord> {
        let header = decode_header(raw)?;
        let body = &raw[header.body_at..];
        let value = match header.kind {
            ValueType::String => Value::String(Bytes::copy_from_slice(body)),
            kind => {
                let len = if kind == ValueType::List {
                    LIST_BODY
                } else {
                    COLLECTION_BODY
                };
                if body.len() != len {
                    return Err(CorruptRecord("collection metadata of the wrong length"));
                }
                let field = |at: usize| {
                    let mut bytes = [0u8; 8];
                    bytes.copy_from_slice(&body[at..at + 8]);
                    u64::from_be_bytes(bytes)
                };
                Value::Collection(Collection {
                    kind,
                    version: field(0),
                    size: field(8),
                    head: if kind == ValueType::List {
                        field(16)
                    } else {
                        0
                    },
                })
            }
        };
        Ok(Record {
            expire_at: header.expire_at,
            revision: header.revision,
            value,
        })
    }

    /// Type and expiry without copying the value.
    pub fn peek(raw: &[u8]) -> Result<(ValueType, Option<u64>), CorruptRecord> {
        decode_header(raw).map(|h| (h.kind, h.expire_at))
    }

    /// The revision without copying the value.
    pub fn peek_revision(raw: &[u8]) -> Result<u64, CorruptRecord> {
        decode_header(raw).map(|h| h.revision)
    }
}

struct Header {
    kind: ValueType,
    expire_at: Option<u64>,
    revision: u64,
    /// Where the value or collection fields start.
    body_at: usize,
}

fn decode_header(raw: &[u8]) -> Result<Header, CorruptRecord> {
    let short = CorruptRecord("shorter than its header");
    let word = |at: usize| -> Result<u64, CorruptRecord> {
        raw.get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
            .ok_or(short.clone())
    };
    let tag = *raw.first().ok_or(short.clone())?;
    let kind = ValueType::of_tag(tag & !HAS_REVISION).ok_or(CorruptRecord("unknown type tag"))?;
    let expire_at = word(1)?;
    let (revision, body_at) = if tag & HAS_REVISION != 0 {
        (word(HEADER_LEN)?, HEADER_LEN + 8)
    } else {
        (0, HEADER_LEN)
    };
    Ok(Header {
        kind,
        expire_at: (expire_at != 0).then_some(expire_at),
        revision,
        body_at,
    })
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
            let rec = Record {
                revision: 77,
                ..rec
            };
            let raw = rec.encode();
            assert_eq!(Record::decode(&raw).unwrap(), rec);
            assert_eq!(
                Record::peek(&raw).unwrap(),
                (rec.value.value_type(), rec.expire_at)
            );
            assert_eq!(Record::peek_revision(&raw), Ok(77));
        }
    }

    /// Records written before revisions existed still read, as revision 0.
    #[test]
    fn records_without_a_revision_read_as_revision_0() {
        let old_string = [&[1u8][..], &5u64.to_be_bytes(), b"value"].concat();
        let rec = Record::decode(&old_string).unwrap();
        assert_eq!(rec, Record::string(Bytes::from_static(b"value"), Some(5)));
        let old_set = [
            &[4u8][..],
            &[0; 8],
            &7u64.to_be_bytes(),
            &3u64.to_be_bytes(),
        ]
        .concat();
        let rec = Record::decode(&old_set).unwrap();
        assert_eq!(rec.revision, 0);
        assert_eq!(
            rec.as_collection().map(|c| (c.version, c.size)),
            Some((7, 3))
        );
    }

    #[test]
    fn corrupt_input_is_an_error() {
        assert!(Record::decode(b"").is_err());
        assert!(Record::decode(&[1, 0, 0]).is_err());
        assert!(Record::decode(&[9, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        // A hash header without its version and size.
        assert!(Record::decode(&[2, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        // A revision flag without the revision.
        assert!(Record::decode(&[0x81, 0, 0, 0, 0, 0, 0, 0, 0, 1]).is_err());
    }

    #[test]
    fn expiry_boundary() {
        let rec = Record::string(Bytes::new(), Some(100));
        assert!(!rec.is_expired(99));
        assert!(rec.is_expired(100));
    }
}
