//! Redis semantics for elastickv: the command table, parsing argument
//! vectors into typed commands, and executing them over one shard's
//! keyspace. This crate knows nothing of raft, RocksDB or sockets; it runs
//! against the [`keyspace`] traits, which the node implements over the
//! store and tests implement in memory.
//!
//! # Layout
//!
//! - [`cmd`]: the commands, one module per family (connection, server,
//!   strings, keys): table entries, parsers, execution.
//! - [`table`]: the command table (name, arity, flags, key specs, routing,
//!   parser), gathered from the families.
//! - [`command`]: typed [`Command`]s and [`parse`], with Redis's error
//!   order.
//! - [`exec`]: reads ([`execute_read`]) and writes ([`execute_write`])
//!   dispatched to the families.
//! - [`log`]: the raft log's entries (typed writes among them), generated
//!   from `proto/elastickv/v1/log.proto`.
//! - [`replicated`]: building and applying log entries
//!   ([`replicated::apply`]).
//! - [`effects`]: commands run ahead of the log over a snapshot (scripts),
//!   and the guarded effects that replicate them.
//! - [`registry`]: the scripts and function libraries kept on shard 0.
//! - [`db`], [`record`], [`keyspace`]: expiry-aware lookups, the stored
//!   record format, and the storage traits.
//! - [`introspect`]: COMMAND's replies, generated from the table.
//! - [`acl`]: ACL users, their rules and descriptions, and the check a
//!   command passes before it runs.
//! - [`glob`], [`number`], [`errors`]: Redis's glob matcher, number rules
//!   and error texts, reproduced exactly.
//!
//! # Invariants
//!
//! - Writes are deterministic given (payload, keyspace): time comes from
//!   the proposer's timestamp in the payload, never from the applier.
//! - Replies and errors are byte-identical to Redis 7.0's for the same
//!   state and input.

pub mod acl;
pub mod cmd;
pub mod command;
pub mod db;
pub mod effects;
pub mod errors;
pub mod exec;
pub mod glob;
pub mod introspect;
pub mod keyspace;
/// The raft log's entries, generated from `proto/elastickv/v1/log.proto`.
pub mod log {
    #![allow(clippy::all)]
    include!(concat!(env!("OUT_DIR"), "/elastickv.log.v1.rs"));
}
pub mod number;
pub mod record;
pub mod registry;
pub mod replicated;
pub mod table;

pub use command::{Command, Parsed, parse, parse_args, resolve};
pub use db::ReadTime;
pub use exec::{execute_read, execute_write};
pub use keyspace::{
    KeyCounts, KeyspaceRead, KeyspaceScan, KeyspaceWrite, MemKeyspace, StorageError,
};
pub use table::{CommandSpec, Route};
