//! Client bytes through the whole request path: the RESP request parser
//! (fed in chunks of a size the input chooses, as a socket would deliver
//! them), command parsing, and execution against an in-memory keyspace
//! (writes as log entries, encoded and applied as a replica would).
//! Nothing may panic, chunking must not change what is parsed, and every
//! write the parser accepts must make an entry that applies.
#![no_main]

use bytes::BytesMut;
use elastickv_redis::keyspace::MemKeyspace;
use elastickv_redis::log::LogEntry;
use elastickv_redis::replicated::apply;
use elastickv_redis::{Command, ReadTime, execute_read, parse};
use elastickv_resp::{ParseLimits, RequestParser};
use libfuzzer_sys::fuzz_target;

fn limits() -> ParseLimits {
    // Small limits keep the fuzzer fast; the logic is the same.
    ParseLimits {
        max_bulk_len: 1 << 16,
        query_buffer_limit: 1 << 20,
    }
}

fn parse_all(data: &[u8], chunk: usize) -> (Vec<Vec<bytes::Bytes>>, bool) {
    let mut parser = RequestParser::new(limits());
    let mut buf = BytesMut::new();
    let mut requests = Vec::new();
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match parser.parse(&mut buf) {
                Ok(Some(args)) => requests.push(args),
                Ok(None) => break,
                Err(_) => return (requests, true),
            }
        }
    }
    (requests, false)
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(first % 32) + 1;
    let (whole, whole_err) = parse_all(rest, rest.len().max(1));
    let (pieces, pieces_err) = parse_all(rest, chunk);
    assert_eq!(whole, pieces, "chunking changed the parse");
    assert_eq!(whole_err, pieces_err, "chunking changed the error");

    let mut keyspace = MemKeyspace::default();
    for (index, args) in (1..).zip(&whole) {
        let Ok(parsed) = parse(args) else { continue };
        if let Command::Write(write) = parsed.command {
            let mut entry = LogEntry::write(write, 1, index);
            entry.timestamp_ms = 1_000_000;
            let applied = apply(&mut keyspace, index, &entry.to_bytes());
            assert!(applied.is_ok(), "a parsed write did not apply: {applied:?}");
        } else {
            let _ = execute_read(&parsed.command, &keyspace, &ReadTime::at(1_000_000));
        }
    }
});
