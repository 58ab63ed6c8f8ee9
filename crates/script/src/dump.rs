//! FUNCTION DUMP's payload, as Redis 7.0 writes and reads it: each
//! library's code as an RDB `FUNCTION2` record (an RDB string, LZF
//! compressed when that saves at least 4 bytes, as with
//! `rdbcompression yes`), then the RDB version (10) and a CRC64 of all
//! that, little-endian.

use bytes::Bytes;

/// RDB version Redis 7.0 writes.
const RDB_VERSION: u16 = 10;
const OPCODE_FUNCTION2: u8 = 245;
/// Redis 7.0 release candidates' record: name, engine, description, code.
const OPCODE_FUNCTION: u8 = 246;
const ENC_INT8: u8 = 0;
const ENC_INT16: u8 = 1;
const ENC_INT32: u8 = 2;
const ENC_LZF: u8 = 3;

fn crc64(data: &[u8]) -> u64 {
    crc::Crc::<u64>::new(&crc::CRC_64_REDIS).checksum(data)
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    if len < 1 << 6 {
        out.push(len as u8);
    } else if len < 1 << 14 {
        out.extend_from_slice(&[0x40 | (len >> 8) as u8, len as u8]);
    } else if let Ok(len) = u32::try_from(len) {
        out.push(0x80);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(0x81);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// `rdbSaveRawString` for text that is never an integer.
fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    if s.len() > 20
        && let Ok(compressed) = lzf::compress(s)
        && compressed.len() <= s.len() - 4
    {
        out.push(0xc0 | ENC_LZF);
        put_len(out, compressed.len());
        put_len(out, s.len());
        out.extend_from_slice(&compressed);
        return;
    }
    put_len(out, s.len());
    out.extend_from_slice(s);
}

/// The payload of `libraries` (each one's code).
pub fn dump(libraries: &[Bytes]) -> Bytes {
    let mut out = Vec::new();
    for code in libraries {
        out.push(OPCODE_FUNCTION2);
        put_string(&mut out, code);
    }
    out.extend_from_slice(&RDB_VERSION.to_le_bytes());
    let crc = crc64(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Bytes::from(out)
}

/// Why a payload could not be read (Redis's texts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreError {
    /// The footer is wrong: "DUMP payload version or checksum are wrong".
    Footer,
    /// A record is wrong.
    Record(&'static str),
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.data.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    /// `rdbLoadLenByRef`: a length, or an encoding of a special string.
    fn len(&mut self) -> Option<(bool, u64)> {
        let first = self.byte()?;
        Some(match first >> 6 {
            0 => (false, u64::from(first & 0x3f)),
            1 => (
                false,
                (u64::from(first & 0x3f) << 8) | u64::from(self.byte()?),
            ),
            3 => (true, u64::from(first & 0x3f)),
            _ => match first {
                0x80 => (
                    false,
                    u64::from(u32::from_be_bytes(self.take(4)?.try_into().ok()?)),
                ),
                0x81 => (false, u64::from_be_bytes(self.take(8)?.try_into().ok()?)),
                _ => return None,
            },
        })
    }

    /// `rdbGenericLoadStringObject`.
    fn string(&mut self) -> Option<Vec<u8>> {
        let (encoded, len) = self.len()?;
        if !encoded {
            return Some(self.take(usize::try_from(len).ok()?)?.to_vec());
        }
        match len as u8 {
            ENC_INT8 => Some((self.byte()? as i8).to_string().into_bytes()),
            ENC_INT16 => Some(
                i16::from_le_bytes(self.take(2)?.try_into().ok()?)
                    .to_string()
                    .into_bytes(),
            ),
            ENC_INT32 => Some(
                i32::from_le_bytes(self.take(4)?.try_into().ok()?)
                    .to_string()
                    .into_bytes(),
            ),
            ENC_LZF => {
                let (_, compressed) = self.len()?;
                let (_, original) = self.len()?;
                let compressed = self.take(usize::try_from(compressed).ok()?)?;
                let original = usize::try_from(original).ok()?;
                let out = lzf::decompress(compressed, original).ok()?;
                (out.len() == original).then_some(out)
            }
            _ => None,
        }
    }
}

/// The libraries' code in a payload, in order (`FUNCTION RESTORE`).
pub fn restore(payload: &[u8]) -> Result<Vec<Bytes>, RestoreError> {
    if payload.len() < 10 {
        return Err(RestoreError::Footer);
    }
    let body_end = payload.len() - 10;
    let version = u16::from_le_bytes([payload[body_end], payload[body_end + 1]]);
    let crc_given = u64::from_le_bytes(
        payload[payload.len() - 8..]
            .try_into()
            .map_err(|_| RestoreError::Footer)?,
    );
    if version > RDB_VERSION || crc64(&payload[..payload.len() - 8]) != crc_given {
        return Err(RestoreError::Footer);
    }
    let mut reader = Reader {
        data: &payload[..body_end],
        pos: 0,
    };
    let mut libraries = Vec::new();
    while reader.pos < body_end {
        let opcode = reader
            .byte()
            .ok_or(RestoreError::Record("can not read data type"))?;
        let code = match opcode {
            OPCODE_FUNCTION2 => reader
                .string()
                .ok_or(RestoreError::Record("Failed loading library payload"))?,
            OPCODE_FUNCTION => {
                let name = reader
                    .string()
                    .ok_or(RestoreError::Record("Failed loading library name"))?;
                let engine = reader
                    .string()
                    .ok_or(RestoreError::Record("Failed loading engine name"))?;
                let (_, has_description) = reader.len().ok_or(RestoreError::Record(
                    "Failed loading library description indicator",
                ))?;
                if has_description != 0 {
                    reader
                        .string()
                        .ok_or(RestoreError::Record("Failed loading library description"))?;
                }
                let blob = reader
                    .string()
                    .ok_or(RestoreError::Record("Failed loading library blob"))?;
                let mut code = b"#!".to_vec();
                code.extend_from_slice(&engine);
                code.extend_from_slice(b" name=");
                code.extend_from_slice(&name);
                code.push(b'\n');
                code.extend_from_slice(&blob);
                code
            }
            _ => return Err(RestoreError::Record("given type is not a function")),
        };
        libraries.push(Bytes::from(code));
    }
    Ok(libraries)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Redis 7.0.15's FUNCTION DUMP of one short library (from
    /// redis-server; stored raw, as it does not compress).
    #[test]
    fn payloads_round_trip_and_are_checked() {
        let short = Bytes::from_static(
            b"#!lua name=a\nredis.register_function('f', function() return 1 end)",
        );
        let long = Bytes::from(format!(
            "#!lua name=b\n{}redis.register_function('g', function() return 2 end)",
            "-- padding padding padding padding\n".repeat(20)
        ));
        let payload = dump(&[short.clone(), long.clone()]);
        // The long one compresses.
        assert!(payload.len() < short.len() + long.len());
        assert_eq!(restore(&payload).unwrap(), vec![short, long]);
        let mut corrupt = payload.to_vec();
        corrupt[3] ^= 1;
        assert_eq!(restore(&corrupt), Err(RestoreError::Footer));
        assert_eq!(restore(b"bogus"), Err(RestoreError::Footer));
        let mut wrong_type = vec![1u8, 0];
        wrong_type.extend_from_slice(&RDB_VERSION.to_le_bytes());
        let crc = crc64(&wrong_type);
        wrong_type.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(
            restore(&wrong_type),
            Err(RestoreError::Record("given type is not a function"))
        );
    }
}
