//! Incremental request parser following Redis 7.0's request grammar.
//!
//! Redis does not accept arbitrary RESP from clients: a request is either a
//! multibulk (`*<n>\r\n` followed by `n` bulk strings) or an inline line
//! split on whitespace. This module reproduces Redis's parser state machine
//! (`networking.c`), including its error texts, its 64 KiB limit on header
//! lines and its habit of skipping the two bytes after a bulk payload without
//! looking at them, so that any byte stream gets the same treatment it would
//! get from Redis.
//!
//! Parsing consumes the buffer as it goes: completed arguments are split off
//! the read buffer without copying, and a partially received request keeps
//! its progress in the parser, so a huge request arriving in small pieces is
//! never re-scanned.

use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;

use crate::inline::split_args;

/// Longest header line (`*<n>` or `$<len>`) or inline request Redis accepts
/// before giving up on finding its end (`PROTO_INLINE_MAX_SIZE`).
pub const INLINE_MAX_SIZE: usize = 64 * 1024;

/// Largest multibulk count Redis accepts (`INT_MAX`).
const MAX_MULTIBULK_LEN: i64 = i32::MAX as i64;

/// Arguments Redis allows before authentication in one request.
const UNAUTHENTICATED_MAX_ARGS: i64 = 10;

/// Longest bulk string Redis allows before authentication.
const UNAUTHENTICATED_MAX_BULK: i64 = 16384;

/// Bulk strings at least this long get buffer space reserved up front, as
/// Redis does for `PROTO_MBULK_BIG_ARG`, so the payload is not copied by
/// repeated doubling.
const BIG_ARG: usize = 32 * 1024;

/// Most reserved on the strength of a header alone. Redis reserves the
/// whole declared length; here a 20-byte header cannot make the server
/// allocate 512 MB before a single payload byte arrives.
const MAX_PREALLOCATION: usize = 4 << 20;

/// Limits applied while parsing. The defaults are Redis 7.0's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseLimits {
    /// `proto-max-bulk-len`: longest accepted bulk string (512 MB).
    pub max_bulk_len: usize,
    /// `client-query-buffer-limit`: most unparsed bytes a client may have
    /// buffered (1 GB). Exceeding it closes the connection without a reply,
    /// like Redis.
    pub query_buffer_limit: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits {
            max_bulk_len: 512 * 1024 * 1024,
            query_buffer_limit: 1024 * 1024 * 1024,
        }
    }
}

/// A request the client sent that Redis would refuse. Every variant but
/// [`ProtocolError::QueryBufferLimit`] is answered with
/// `-ERR Protocol error: ...` before the connection is closed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProtocolError {
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    #[error("Protocol error: expected '$', got '{}'", char::from(*.0))]
    ExpectedBulk(u8),
    #[error("Protocol error: too big mbulk count string")]
    TooBigMultibulkCount,
    #[error("Protocol error: too big bulk count string")]
    TooBigBulkCount,
    #[error("Protocol error: too big inline request")]
    TooBigInline,
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    #[error("Protocol error: unauthenticated multibulk length")]
    UnauthenticatedMultibulkLength,
    #[error("Protocol error: unauthenticated bulk length")]
    UnauthenticatedBulkLength,
    #[error("client query buffer exceeds the {limit} byte limit")]
    QueryBufferLimit { limit: usize },
}

impl ProtocolError {
    /// The error reply Redis sends before closing, or `None` when Redis
    /// closes the connection silently.
    pub fn reply_text(&self) -> Option<String> {
        match self {
            ProtocolError::QueryBufferLimit { .. } => None,
            other => Some(format!("ERR {other}")),
        }
    }
}

/// Progress through a multibulk request that has not fully arrived.
#[derive(Debug, Default)]
struct PartialMultibulk {
    /// Arguments still to read.
    remaining: usize,
    /// Length of the bulk whose header was read but whose payload was not.
    pending_bulk: Option<usize>,
    args: Vec<Bytes>,
}

/// Parses requests out of a client's read buffer. One per connection.
#[derive(Debug, Default)]
pub struct RequestParser {
    limits: ParseLimits,
    auth_required: bool,
    partial: Option<PartialMultibulk>,
}

impl RequestParser {
    pub fn new(limits: ParseLimits) -> Self {
        RequestParser {
            limits,
            auth_required: false,
            partial: None,
        }
    }

    /// While set, requests are held to Redis's tighter pre-authentication
    /// size limits.
    pub fn set_auth_required(&mut self, required: bool) {
        self.auth_required = required;
    }

    /// Parses the next request from `buf`, consuming the bytes it used.
    ///
    /// Returns `Ok(None)` when more bytes are needed. Empty requests
    /// (`*0`, `*-1`, blank inline lines) are consumed and skipped, as Redis
    /// does. After an error the connection must be closed: the buffer is
    /// left wherever the error was found.
    pub fn parse(&mut self, buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        loop {
            if buf.len() > self.limits.query_buffer_limit {
                return Err(ProtocolError::QueryBufferLimit {
                    limit: self.limits.query_buffer_limit,
                });
            }
            if self.partial.is_none() {
                match buf.first() {
                    None => return Ok(None),
                    Some(b'*') => {}
                    Some(_) => match self.parse_inline(buf)? {
                        Step::Incomplete => return Ok(None),
                        Step::Skipped => continue,
                        Step::Request(args) => return Ok(Some(args)),
                    },
                }
            }
            match self.parse_multibulk(buf)? {
                Step::Incomplete => return Ok(None),
                Step::Skipped => continue,
                Step::Request(args) => return Ok(Some(args)),
            }
        }
    }

    fn parse_inline(&mut self, buf: &mut BytesMut) -> Result<Step, ProtocolError> {
        let Some(newline) = find_byte(buf, b'\n') else {
            if buf.len() > INLINE_MAX_SIZE {
                return Err(ProtocolError::TooBigInline);
            }
            return Ok(Step::Incomplete);
        };
        let line_len = if newline > 0 && buf[newline - 1] == b'\r' {
            newline - 1
        } else {
            newline
        };
        let args = split_args(&buf[..line_len]).ok_or(ProtocolError::UnbalancedQuotes)?;
        buf.advance(newline + 1);
        if args.is_empty() {
            Ok(Step::Skipped)
        } else {
            Ok(Step::Request(args.into_iter().map(Bytes::from).collect()))
        }
    }

    fn parse_multibulk(&mut self, buf: &mut BytesMut) -> Result<Step, ProtocolError> {
        let mut partial = match self.partial.take() {
            Some(partial) => partial,
            None => {
                let Some(line) = header_line(buf, ProtocolError::TooBigMultibulkCount)? else {
                    return Ok(Step::Incomplete);
                };
                let count = parse_redis_int(&buf[1..line]);
                let count = match count {
                    Some(n) if n <= MAX_MULTIBULK_LEN => n,
                    _ => return Err(ProtocolError::InvalidMultibulkLength),
                };
                if count > UNAUTHENTICATED_MAX_ARGS && self.auth_required {
                    return Err(ProtocolError::UnauthenticatedMultibulkLength);
                }
                buf.advance(line + 2);
                if count <= 0 {
                    return Ok(Step::Skipped);
                }
                let count =
                    usize::try_from(count).map_err(|_| ProtocolError::InvalidMultibulkLength)?;
                PartialMultibulk {
                    remaining: count,
                    pending_bulk: None,
                    // The count is client-controlled: never trust it for an
                    // allocation size.
                    args: Vec::with_capacity(count.min(1024)),
                }
            }
        };

        while partial.remaining > 0 {
            let bulk_len = match partial.pending_bulk {
                Some(len) => len,
                None => match self.bulk_header(buf)? {
                    Some(len) => {
                        partial.pending_bulk = Some(len);
                        if len >= BIG_ARG {
                            buf.reserve((len + 2).min(MAX_PREALLOCATION));
                        }
                        len
                    }
                    None => {
                        self.partial = Some(partial);
                        return Ok(Step::Incomplete);
                    }
                },
            };
            if buf.len() < bulk_len + 2 {
                self.partial = Some(partial);
                return Ok(Step::Incomplete);
            }
            partial.args.push(buf.split_to(bulk_len).freeze());
            // Redis skips the two bytes after the payload unchecked.
            buf.advance(2);
            partial.pending_bulk = None;
            partial.remaining -= 1;
        }
        Ok(Step::Request(partial.args))
    }

    /// Reads a `$<len>\r\n` header, returning the payload length.
    fn bulk_header(&self, buf: &mut BytesMut) -> Result<Option<usize>, ProtocolError> {
        let Some(line) = header_line(buf, ProtocolError::TooBigBulkCount)? else {
            return Ok(None);
        };
        if buf[0] != b'$' {
            return Err(ProtocolError::ExpectedBulk(buf[0]));
        }
        let len = match parse_redis_int(&buf[1..line]) {
            Some(n) if n >= 0 && (n as u64) <= self.limits.max_bulk_len as u64 => n,
            _ => return Err(ProtocolError::InvalidBulkLength),
        };
        if len > UNAUTHENTICATED_MAX_BULK && self.auth_required {
            return Err(ProtocolError::UnauthenticatedBulkLength);
        }
        buf.advance(line + 2);
        usize::try_from(len)
            .map(Some)
            .map_err(|_| ProtocolError::InvalidBulkLength)
    }
}

enum Step {
    Incomplete,
    Skipped,
    Request(Vec<Bytes>),
}

/// Finds the `\r` ending a header line, as Redis does with `strchr`: the
/// search stops at a NUL byte, and the line only counts once the byte after
/// the `\r` has arrived too. Returns the offset of the `\r`.
fn header_line(buf: &[u8], too_big: ProtocolError) -> Result<Option<usize>, ProtocolError> {
    match find_byte(buf, b'\r') {
        Some(cr) if cr + 1 < buf.len() => Ok(Some(cr)),
        Some(_) => Ok(None),
        None if buf.len() > INLINE_MAX_SIZE => Err(too_big),
        None => Ok(None),
    }
}

/// `strchr` semantics: the first `needle` before any NUL byte.
fn find_byte(buf: &[u8], needle: u8) -> Option<usize> {
    buf.iter()
        .position(|&b| b == needle || b == 0)
        .filter(|&i| buf[i] == needle)
}

/// Redis's `string2ll`: an optional `-`, then digits with no leading zero
/// (except `0` itself), no sign `+`, no spaces, no overflow.
pub fn parse_redis_int(s: &[u8]) -> Option<i64> {
    match s {
        [] => None,
        [b'0'] => Some(0),
        [b'-', digits @ ..] => {
            let magnitude = parse_digits(digits)?;
            if magnitude <= i64::MAX as u64 {
                Some(-(magnitude as i64))
            } else if magnitude == i64::MAX as u64 + 1 {
                Some(i64::MIN)
            } else {
                None
            }
        }
        digits => i64::try_from(parse_digits(digits)?).ok(),
    }
}

fn parse_digits(digits: &[u8]) -> Option<u64> {
    let (&first, rest) = digits.split_first()?;
    if !(b'1'..=b'9').contains(&first) {
        return None;
    }
    let mut value = u64::from(first - b'0');
    for &d in rest {
        if !d.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8]) -> (Vec<Vec<Bytes>>, Option<ProtocolError>, BytesMut) {
        let mut parser = RequestParser::default();
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        loop {
            match parser.parse(&mut buf) {
                Ok(Some(args)) => out.push(args),
                Ok(None) => return (out, None, buf),
                Err(e) => return (out, Some(e), buf),
            }
        }
    }

    fn strs(args: &[Bytes]) -> Vec<&[u8]> {
        args.iter().map(|a| a.as_ref()).collect()
    }

    #[test]
    fn multibulk_request() {
        let (reqs, err, rest) = parse_all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
        assert_eq!(err, None);
        assert!(rest.is_empty());
        assert_eq!(reqs.len(), 1);
        assert_eq!(strs(&reqs[0]), vec![&b"GET"[..], b"k"]);
    }

    #[test]
    fn pipelined_requests_and_empty_ones() {
        let (reqs, err, _) =
            parse_all(b"*1\r\n$4\r\nPING\r\n*0\r\n*-1\r\n\r\n*1\r\n$4\r\nPING\r\nPING\r\n");
        assert_eq!(err, None);
        assert_eq!(reqs.len(), 3);
    }

    #[test]
    fn byte_by_byte_equals_whole() {
        let input = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nva\r\nl\r\nPING x\r\n";
        let (whole, _, _) = parse_all(input);
        let mut parser = RequestParser::default();
        let mut buf = BytesMut::new();
        let mut pieces = Vec::new();
        for &b in input.iter() {
            buf.extend_from_slice(&[b]);
            while let Some(args) = parser.parse(&mut buf).unwrap() {
                pieces.push(args);
            }
        }
        assert_eq!(whole, pieces);
        assert_eq!(strs(&pieces[0])[2], b"va\r\nl");
    }

    #[test]
    fn bytes_after_payload_are_skipped_unchecked() {
        let (reqs, err, _) = parse_all(b"*1\r\n$4\r\nPINGxx");
        assert_eq!(err, None);
        assert_eq!(strs(&reqs[0]), vec![&b"PING"[..]]);
    }

    #[test]
    fn redis_error_texts() {
        let cases: &[(&[u8], &str)] = &[
            (b"*x\r\n", "ERR Protocol error: invalid multibulk length"),
            (
                b"*2147483648\r\n",
                "ERR Protocol error: invalid multibulk length",
            ),
            (b"*1\r\n:1\r\n", "ERR Protocol error: expected '$', got ':'"),
            (b"*1\r\n$-1\r\n", "ERR Protocol error: invalid bulk length"),
            (
                b"*1\r\n$536870913\r\n",
                "ERR Protocol error: invalid bulk length",
            ),
            (b"*1\r\n$+1\r\n", "ERR Protocol error: invalid bulk length"),
            (b"*1\r\n$01\r\n", "ERR Protocol error: invalid bulk length"),
            (
                b"SET \"a b\r\n",
                "ERR Protocol error: unbalanced quotes in request",
            ),
        ];
        for (input, text) in cases {
            let (_, err, _) = parse_all(input);
            let err = err.unwrap_or_else(|| panic!("no error for {:?}", input));
            assert_eq!(
                err.reply_text().as_deref(),
                Some(*text),
                "input {:?}",
                input
            );
        }
    }

    #[test]
    fn max_bulk_len_is_accepted_without_buffering_it() {
        let (reqs, err, rest) = parse_all(b"*1\r\n$536870912\r\nab");
        assert_eq!(err, None);
        assert!(reqs.is_empty());
        assert_eq!(&rest[..], b"ab");
    }

    #[test]
    fn overlong_header_lines() {
        let mut long = b"*1".to_vec();
        long.extend(std::iter::repeat_n(b'1', INLINE_MAX_SIZE));
        assert_eq!(
            parse_all(&long).1,
            Some(ProtocolError::TooBigMultibulkCount)
        );

        let mut long = b"*1\r\n$1".to_vec();
        long.extend(std::iter::repeat_n(b'1', INLINE_MAX_SIZE));
        assert_eq!(parse_all(&long).1, Some(ProtocolError::TooBigBulkCount));

        let long = vec![b'a'; INLINE_MAX_SIZE + 1];
        assert_eq!(parse_all(&long).1, Some(ProtocolError::TooBigInline));
    }

    #[test]
    fn nul_byte_hides_line_end_like_strchr() {
        let (reqs, err, _) = parse_all(b"*1\0\r\n");
        assert_eq!((reqs.len(), err), (0, None));
    }

    #[test]
    fn auth_limits() {
        let mut parser = RequestParser::default();
        parser.set_auth_required(true);
        let mut buf = BytesMut::from(&b"*11\r\n"[..]);
        assert_eq!(
            parser.parse(&mut buf),
            Err(ProtocolError::UnauthenticatedMultibulkLength)
        );
        let mut parser = RequestParser::default();
        parser.set_auth_required(true);
        let mut buf = BytesMut::from(&b"*1\r\n$16385\r\n"[..]);
        assert_eq!(
            parser.parse(&mut buf),
            Err(ProtocolError::UnauthenticatedBulkLength)
        );
    }

    #[test]
    fn query_buffer_limit_closes_silently() {
        let mut parser = RequestParser::new(ParseLimits {
            max_bulk_len: 100,
            query_buffer_limit: 8,
        });
        let mut buf = BytesMut::from(&b"*1\r\n$50\r\n0123456789"[..]);
        let err = parser.parse(&mut buf).unwrap_err();
        assert_eq!(err.reply_text(), None);
    }

    #[test]
    fn redis_int_parsing() {
        assert_eq!(parse_redis_int(b"0"), Some(0));
        assert_eq!(parse_redis_int(b"-12"), Some(-12));
        assert_eq!(parse_redis_int(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_redis_int(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"-0",
            b"00",
            b"+1",
            b" 1",
            b"1 ",
            b"9223372036854775808",
        ] {
            assert_eq!(parse_redis_int(bad), None, "{:?}", bad);
        }
    }
}
