//! The stored form of a key: a small header (type, expiry) and the value.
//!
//! ```text
//! byte 0      type tag (1 = string)
//! bytes 1..9  expire-at, unix milliseconds, big-endian; 0 = no expiry
//! bytes 9..   the value (strings: the bytes themselves)
//! ```
//!
//! Collections will add a version and a size after the header and keep
//! their elements under separate sub-keys, so DEL and EXPIRE stay O(1).

use bytes::Bytes;
use thiserror::Error;

const TAG_STRING: u8 = 1;
const HEADER_LEN: usize = 9;

/// The Redis type of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    String,
}

impl ValueType {
    /// The name TYPE and SCAN TYPE use.
    pub fn name(&self) -> &'static str {
        match self {
            ValueType::String => "string",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    String(Bytes),
}

impl Value {
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::String(_) => ValueType::String,
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

    /// Whether the key is gone at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expire_at.is_some_and(|at| at <= now_ms)
    }

    pub fn encode(&self) -> Vec<u8> {
        let Value::String(bytes) = &self.value;
        let mut out = Vec::with_capacity(HEADER_LEN + bytes.len());
        out.push(TAG_STRING);
        out.extend_from_slice(&self.expire_at.unwrap_or(0).to_be_bytes());
        out.extend_from_slice(bytes);
        out
    }

    pub fn decode(raw: &[u8]) -> Result<Record, CorruptRecord> {
        let (tag, expire_at) = decode_header(raw)?;
        match tag {
            TAG_STRING => Ok(Record::string(
                Bytes::copy_from_slice(&raw[HEADER_LEN..]),
                expire_at,
            )),
            _ => Err(CorruptRecord("unknown type tag")),
        }
    }

    /// Type and expiry without copying the value.
    pub fn peek(raw: &[u8]) -> Result<(ValueType, Option<u64>), CorruptRecord> {
        let (tag, expire_at) = decode_header(raw)?;
        match tag {
            TAG_STRING => Ok((ValueType::String, expire_at)),
            _ => Err(CorruptRecord("unknown type tag")),
        }
    }
}

fn decode_header(raw: &[u8]) -> Result<(u8, Option<u64>), CorruptRecord> {
    let header: [u8; HEADER_LEN] = raw
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(CorruptRecord("shorter than its header"))?;
    let mut at = [0u8; 8];
    at.copy_from_slice(&header[1..]);
    let at = u64::from_be_bytes(at);
    Ok((header[0], (at != 0).then_some(at)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for rec in [
            Record::string(Bytes::from_static(b"hello"), None),
            Record::string(Bytes::new(), Some(1_700_000_000_000)),
        ] {
            let raw = rec.encode();
            assert_eq!(Record::decode(&raw).unwrap(), rec);
            assert_eq!(
                Record::peek(&raw).unwrap(),
                (ValueType::String, rec.expire_at)
            );
        }
    }

    #[test]
    fn corrupt_input_is_an_error() {
        assert!(Record::decode(b"").is_err());
        assert!(Record::decode(&[1, 0, 0]).is_err());
        assert!(Record::decode(&[9, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn expiry_boundary() {
        let rec = Record::string(Bytes::new(), Some(100));
        assert!(!rec.is_expired(99));
        assert!(rec.is_expired(100));
    }
}
