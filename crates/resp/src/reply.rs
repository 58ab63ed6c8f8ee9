//! Replies and their wire encoding.
//!
//! A [`Reply`] is what a command produces, independent of the protocol the
//! client negotiated with `HELLO`; [`Reply::encode`] renders it as RESP2 or
//! RESP3 the way Redis 7.0 does (a map is a flat array in RESP2, a null is
//! `$-1` or `*-1` in RESP2 and `_` in RESP3, a boolean is `:1`/`:0` in
//! RESP2, verbatim text is a bulk string in RESP2).
//!
//! The encoder writes bytes directly rather than through the
//! `redis-protocol` crate's frame types, because those cannot express two
//! things Redis sends (the RESP2 null array `*-1`, and doubles formatted by
//! the server rather than by the encoder) and cost an allocation per frame
//! on the hot path. The crate's tests decode every encoding with
//! `redis-protocol` to check it against an independent implementation.

use bytes::{BufMut, Bytes, BytesMut};

/// The protocol a connection speaks, chosen with `HELLO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProtocolVersion {
    #[default]
    Resp2,
    Resp3,
}

/// A command's reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `+OK`: a status line. Must not contain CR or LF.
    Simple(Bytes),
    /// `-ERR ...`: the full error text including its code prefix.
    Error(Bytes),
    Integer(i64),
    Bulk(Bytes),
    /// A missing value: `$-1` in RESP2, `_` in RESP3.
    Null,
    /// A missing aggregate: `*-1` in RESP2, `_` in RESP3.
    NullArray,
    Array(Vec<Reply>),
    /// Key/value pairs: a flat array in RESP2, `%` in RESP3.
    Map(Vec<(Reply, Reply)>),
    /// Pairs that may repeat (HRANDFIELD ... WITHVALUES, WITHSCORES): a
    /// flat array in RESP2, an array of two-element arrays in RESP3.
    Pairs(Vec<(Reply, Reply)>),
    /// An unordered collection: an array in RESP2, `~` in RESP3.
    Set(Vec<Reply>),
    /// Out-of-band data (pub/sub messages): an array in RESP2, `>` in
    /// RESP3.
    Push(Vec<Reply>),
    /// A double already formatted the way Redis formats it (`%.17g`,
    /// `inf`, `-inf`): a bulk string in RESP2, `,` in RESP3.
    Double(Bytes),
    /// `:1`/`:0` in RESP2, `#t`/`#f` in RESP3.
    Bool(bool),
    /// Text with a three-letter format (`txt`): a bulk string in RESP2, `=`
    /// in RESP3.
    Verbatim {
        format: [u8; 3],
        text: Bytes,
    },
}

impl Reply {
    pub const OK: Reply = Reply::Simple(Bytes::from_static(b"OK"));

    pub fn ok() -> Reply {
        Reply::OK
    }

    pub fn simple(text: &'static str) -> Reply {
        Reply::Simple(Bytes::from_static(text.as_bytes()))
    }

    /// An error reply from its full text (`ERR ...`, `WRONGTYPE ...`).
    pub fn error(text: impl Into<String>) -> Reply {
        Reply::Error(Bytes::from(text.into()))
    }

    pub fn static_error(text: &'static str) -> Reply {
        Reply::Error(Bytes::from_static(text.as_bytes()))
    }

    pub fn bulk(data: impl Into<Bytes>) -> Reply {
        Reply::Bulk(data.into())
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    /// Appends this reply's encoding to `out`.
    pub fn encode(&self, version: ProtocolVersion, out: &mut BytesMut) {
        let resp3 = version == ProtocolVersion::Resp3;
        match self {
            Reply::Simple(text) => line(out, b'+', text),
            Reply::Error(text) => {
                out.put_u8(b'-');
                // Like Redis's addReplyError: a newline inside the text
                // would end the error line early, so it becomes a space.
                out.extend(
                    text.iter()
                        .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
                );
                out.put_slice(b"\r\n");
            }
            Reply::Integer(n) => integer(out, b':', *n),
            Reply::Bulk(data) => bulk(out, b'$', data),
            Reply::Null if resp3 => out.put_slice(b"_\r\n"),
            Reply::Null => out.put_slice(b"$-1\r\n"),
            Reply::NullArray if resp3 => out.put_slice(b"_\r\n"),
            Reply::NullArray => out.put_slice(b"*-1\r\n"),
            Reply::Array(items) => {
                integer(out, b'*', items.len() as i64);
                for item in items {
                    item.encode(version, out);
                }
            }
            Reply::Map(pairs) => {
                if resp3 {
                    integer(out, b'%', pairs.len() as i64);
                } else {
                    integer(out, b'*', 2 * pairs.len() as i64);
                }
                for (key, value) in pairs {
                    key.encode(version, out);
                    value.encode(version, out);
                }
            }
            Reply::Pairs(pairs) => {
                if resp3 {
                    integer(out, b'*', pairs.len() as i64);
                } else {
                    integer(out, b'*', 2 * pairs.len() as i64);
                }
                for (first, second) in pairs {
                    if resp3 {
                        integer(out, b'*', 2);
                    }
                    first.encode(version, out);
                    second.encode(version, out);
                }
            }
            Reply::Push(items) => {
                integer(out, if resp3 { b'>' } else { b'*' }, items.len() as i64);
                for item in items {
                    item.encode(version, out);
                }
            }
            Reply::Set(items) => {
                integer(out, if resp3 { b'~' } else { b'*' }, items.len() as i64);
                for item in items {
                    item.encode(version, out);
                }
            }
            Reply::Double(text) if resp3 => line(out, b',', text),
            Reply::Double(text) => bulk(out, b'$', text),
            Reply::Bool(value) if resp3 => {
                out.put_slice(if *value { b"#t\r\n" } else { b"#f\r\n" })
            }
            Reply::Bool(value) => integer(out, b':', i64::from(*value)),
            Reply::Verbatim { format, text } if resp3 => {
                integer(out, b'=', (text.len() + 4) as i64);
                out.put_slice(format);
                out.put_u8(b':');
                out.put_slice(text);
                out.put_slice(b"\r\n");
            }
            Reply::Verbatim { text, .. } => bulk(out, b'$', text),
        }
    }
}

impl From<i64> for Reply {
    fn from(n: i64) -> Reply {
        Reply::Integer(n)
    }
}

fn line(out: &mut BytesMut, kind: u8, text: &[u8]) {
    out.reserve(text.len() + 3);
    out.put_u8(kind);
    out.put_slice(text);
    out.put_slice(b"\r\n");
}

fn integer(out: &mut BytesMut, kind: u8, n: i64) {
    let mut digits = itoa::Buffer::new();
    out.put_u8(kind);
    out.put_slice(digits.format(n).as_bytes());
    out.put_slice(b"\r\n");
}

fn bulk(out: &mut BytesMut, kind: u8, data: &[u8]) {
    out.reserve(data.len() + 16);
    integer(out, kind, data.len() as i64);
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis_protocol::resp2::decode::decode as decode2;
    use redis_protocol::resp2::types::OwnedFrame as Frame2;
    use redis_protocol::resp3::decode::complete::decode as decode3;
    use redis_protocol::resp3::types::OwnedFrame as Frame3;

    fn enc(reply: &Reply, version: ProtocolVersion) -> Vec<u8> {
        let mut out = BytesMut::new();
        reply.encode(version, &mut out);
        out.to_vec()
    }

    fn sample() -> Reply {
        Reply::Array(vec![
            Reply::ok(),
            Reply::error("ERR bad\r\nthing"),
            Reply::Integer(-42),
            Reply::bulk(&b"a\r\nb"[..]),
            Reply::Null,
            Reply::Map(vec![(Reply::bulk("k"), Reply::Integer(1))]),
            Reply::Set(vec![Reply::bulk("m")]),
            Reply::Bool(true),
            Reply::Double(Bytes::from_static(b"1.5")),
            Reply::Verbatim {
                format: *b"txt",
                text: Bytes::from_static(b"hello"),
            },
        ])
    }

    #[test]
    fn resp2_bytes() {
        assert_eq!(enc(&Reply::NullArray, ProtocolVersion::Resp2), b"*-1\r\n");
        assert_eq!(
            enc(&sample(), ProtocolVersion::Resp2),
            b"*10\r\n+OK\r\n-ERR bad  thing\r\n:-42\r\n$4\r\na\r\nb\r\n$-1\r\n*2\r\n$1\r\nk\r\n:1\r\n\
              *1\r\n$1\r\nm\r\n:1\r\n$3\r\n1.5\r\n$5\r\nhello\r\n"
                .to_vec()
        );
    }

    #[test]
    fn resp3_bytes() {
        assert_eq!(enc(&Reply::NullArray, ProtocolVersion::Resp3), b"_\r\n");
        assert_eq!(
            enc(&sample(), ProtocolVersion::Resp3),
            b"*10\r\n+OK\r\n-ERR bad  thing\r\n:-42\r\n$4\r\na\r\nb\r\n_\r\n%1\r\n$1\r\nk\r\n:1\r\n\
              ~1\r\n$1\r\nm\r\n#t\r\n,1.5\r\n=9\r\ntxt:hello\r\n"
                .to_vec()
        );
    }

    #[test]
    fn encodings_decode_with_redis_protocol() {
        let bytes = enc(&sample(), ProtocolVersion::Resp2);
        let (frame, used) = decode2(&bytes).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        let Frame2::Array(items) = frame else {
            panic!("not an array")
        };
        assert_eq!(items[2], Frame2::Integer(-42));
        assert_eq!(items[3], Frame2::BulkString(b"a\r\nb".to_vec()));

        let bytes = enc(&sample(), ProtocolVersion::Resp3);
        let (frame, used) = decode3(&bytes).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        let Frame3::Array { data, .. } = frame else {
            panic!("not an array")
        };
        assert_eq!(data.len(), 10);
        assert!(matches!(data[4], Frame3::Null));
        assert!(matches!(data[7], Frame3::Boolean { data: true, .. }));
    }
}
