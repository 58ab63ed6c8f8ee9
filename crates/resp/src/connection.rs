//! A client connection: buffered reads parsed into requests, replies queued
//! into one write buffer and flushed together, so a pipeline of N requests
//! costs one write, not N.

use std::io;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::reply::{ProtocolVersion, Reply};
use crate::request::{ProtocolError, RequestParser};

/// Bytes asked of the socket per read (Redis's `PROTO_IOBUF_LEN`).
const READ_CHUNK: usize = 16 * 1024;

/// Replies queued beyond this many bytes are written out before more are
/// produced, so a long pipeline cannot grow the write buffer without bound.
pub const WRITE_HIGH_WATER: usize = 64 * 1024;

/// What reading from the client produced.
#[derive(Debug, PartialEq)]
pub enum ReadOutcome {
    Request(Vec<Bytes>),
    /// The client closed its end cleanly, between requests.
    Closed,
    /// The client sent something Redis would refuse; answer (if
    /// [`ProtocolError::reply_text`] says so) and close.
    Invalid(ProtocolError),
}

pub struct Connection<S> {
    stream: S,
    read_buf: BytesMut,
    write_buf: BytesMut,
    parser: RequestParser,
    version: ProtocolVersion,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    pub fn new(stream: S, parser: RequestParser) -> Self {
        Connection {
            stream,
            read_buf: BytesMut::with_capacity(READ_CHUNK),
            write_buf: BytesMut::with_capacity(READ_CHUNK),
            parser,
            version: ProtocolVersion::Resp2,
        }
    }

    pub fn protocol(&self) -> ProtocolVersion {
        self.version
    }

    pub fn set_protocol(&mut self, version: ProtocolVersion) {
        self.version = version;
    }

    pub fn parser_mut(&mut self) -> &mut RequestParser {
        &mut self.parser
    }

    /// The next request if it is already fully buffered; no I/O.
    pub fn buffered_request(&mut self) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        self.parser.parse(&mut self.read_buf)
    }

    /// Reads until a whole request has arrived.
    pub async fn read_request(&mut self) -> io::Result<ReadOutcome> {
        loop {
            match self.parser.parse(&mut self.read_buf) {
                Ok(Some(args)) => return Ok(ReadOutcome::Request(args)),
                Ok(None) => {}
                Err(e) => return Ok(ReadOutcome::Invalid(e)),
            }
            self.read_buf.reserve(READ_CHUNK);
            if self.stream.read_buf(&mut self.read_buf).await? == 0 {
                return Ok(ReadOutcome::Closed);
            }
        }
    }

    /// Reads whatever arrives into the buffer, for requests to parse later
    /// (a client sending while its blocking command waits); `false` once
    /// the client has closed. Safe to cancel.
    pub async fn read_more(&mut self) -> io::Result<bool> {
        self.read_buf.reserve(READ_CHUNK);
        Ok(self.stream.read_buf(&mut self.read_buf).await? > 0)
    }

    /// Queues a reply in the protocol the client chose.
    pub fn queue(&mut self, reply: &Reply) {
        reply.encode(self.version, &mut self.write_buf);
    }

    /// Queues raw, already encoded reply bytes.
    pub fn queue_raw(&mut self, bytes: &[u8]) {
        self.write_buf.extend_from_slice(bytes);
    }

    pub fn pending_write_bytes(&self) -> usize {
        self.write_buf.len()
    }

    /// Writes every queued reply.
    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.write_buf.is_empty() {
            self.stream.write_all(&self.write_buf).await?;
            self.write_buf.clear();
        }
        self.stream.flush().await
    }

    /// Flushes and shuts the write side down, for `QUIT` and protocol
    /// errors.
    pub async fn close(mut self) -> io::Result<()> {
        self.flush().await?;
        self.stream.shutdown().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    #[tokio::test]
    async fn pipelined_requests_one_flush() {
        let (client, server) = duplex(1024);
        let mut conn = Connection::new(server, RequestParser::default());
        let (mut client_read, mut client_write) = tokio::io::split(client);
        client_write
            .write_all(b"*1\r\n$4\r\nPING\r\nPING\r\n")
            .await
            .unwrap();
        assert_eq!(
            conn.read_request().await.unwrap(),
            ReadOutcome::Request(vec![Bytes::from_static(b"PING")])
        );
        assert_eq!(
            conn.buffered_request().unwrap(),
            Some(vec![Bytes::from_static(b"PING")])
        );
        assert_eq!(conn.buffered_request().unwrap(), None);
        conn.queue(&Reply::simple("PONG"));
        conn.queue(&Reply::simple("PONG"));
        conn.flush().await.unwrap();
        let mut got = [0u8; 14];
        client_read.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"+PONG\r\n+PONG\r\n");
        drop(client_write);
        drop(client_read);
        assert_eq!(conn.read_request().await.unwrap(), ReadOutcome::Closed);
    }

    #[tokio::test]
    async fn protocol_error_is_reported() {
        let (mut client, server) = duplex(1024);
        let mut conn = Connection::new(server, RequestParser::default());
        client.write_all(b"*1\r\n:5\r\n").await.unwrap();
        assert_eq!(
            conn.read_request().await.unwrap(),
            ReadOutcome::Invalid(ProtocolError::ExpectedBulk(b':'))
        );
    }
}
