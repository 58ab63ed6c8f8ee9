//! Client bytes through the whole request path: the RESP request parser
//! (fed in chunks of a size the input chooses, as a socket would deliver
//! them), command parsing, and execution against an in-memory keyspace.
//! Nothing may panic, and chunking must not change what is parsed.
#![no_main]

use bytes::BytesMut;
use elastickv_redis::keyspace::MemKeyspace;
use elastickv_redis::{ReadTime, execute_read, execute_write, parse};
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
    for args in &whole {
        let Ok(parsed) = parse(args) else { continue };
        if parsed.spec.is_write() {
            let _ = execute_write(&parsed.command, &mut keyspace, 1_000_000);
        } else {
            let _ = execute_read(&parsed.command, &keyspace, &ReadTime::at(1_000_000));
        }
    }
});
