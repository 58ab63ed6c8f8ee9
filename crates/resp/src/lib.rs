//! RESP framing for elastickv: bytes in, argument vectors out; replies in,
//! RESP2 or RESP3 bytes out. No command logic lives here.
//!
//! # Layout
//!
//! - [`request`]: incremental request parser. It follows Redis 7.0's own
//!   request grammar (`processMultibulkBuffer` / `processInlineBuffer`):
//!   a request is either a multibulk array of bulk strings or an inline
//!   line, and every malformed request is answered with the exact
//!   `Protocol error: ...` text Redis uses. Limits (bulk length, query
//!   buffer) are checked on headers, before any payload is buffered.
//! - [`inline`]: the inline-command tokenizer (Redis's `sdssplitargs`).
//! - [`reply`]: the [`Reply`] value commands produce, and its encoding to
//!   RESP2 or RESP3 through the `redis-protocol` crate's frame encoders.
//! - [`connection`]: a buffered client connection over any async stream:
//!   read requests, queue replies, flush once per batch (pipelining).
//!
//! # Invariants
//!
//! - Nothing a client sends can panic the parser; every input either yields
//!   a request, asks for more bytes, or yields a [`ProtocolError`].
//! - A request's arguments are zero-copy slices of the read buffer.

pub mod connection;
pub mod inline;
pub mod reply;
pub mod request;

pub use connection::{Connection, ReadOutcome};
pub use reply::{ProtocolVersion, Reply};
pub use request::{ParseLimits, ProtocolError, RequestParser};
