//! Commands by family, the way Redis groups them: each module holds its
//! family's table entries (`COMMANDS`, gathered into [`crate::table`]), the
//! parsers that turn argument vectors into typed commands, and their
//! execution over one shard's keyspace. Adding a command touches its
//! family's module, and for a write also its message in
//! `proto/elastickv/v1/log.proto`.

pub mod acl;
pub mod bitmaps;
pub mod connection;
pub mod hashes;
pub mod hyperloglog;
pub mod keys;
pub mod lists;
pub(crate) mod members;
pub mod pubsub;
pub mod scripting;
pub mod server;
pub mod sets;
pub mod sort;
pub mod sorted_sets;
pub mod strings;
pub mod transactions;
