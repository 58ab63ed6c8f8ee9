//! gRPC between elastickv nodes (tonic/prost; definitions in
//! `proto/elastickv/v1/transport.proto`).
//!
//! # Layout
//!
//! - [`peer`]: one sender task per peer node: drains that peer's outbound
//!   lanes (every shard's) into size-capped batches on one long-lived
//!   stream, reconnecting with exponential backoff.
//! - [`server`]: the receiving side: decodes envelopes and hands each
//!   message to its shard's step queue, acknowledging every batch with how
//!   many messages were refused; and the forwarding service.
//! - [`directory`]: where each peer is reachable (dynamic: nodes join).
//! - [`admin`]: the cluster administration service behind `elastickv ctl`.
//! - [`founding`]: creating a cluster (probes between founding nodes).
//! - [`identity`]: the cluster id every node-to-node call carries, and the
//!   check that refuses calls from another cluster.
//! - [`secret`]: the cluster secret every call to a node presents.
//! - [`tls`]: mutual TLS between nodes, for served and opened connections.
//! - [`acceptor`]: the raft address's listener, handed from the founding
//!   server to the full one.
//! - [`forward`]: the client that sends write commands to the node that
//!   leads their shard, in order, over one stream per peer.
//! - [`snapshot`]: shard snapshots for followers behind the log, streamed
//!   in checksummed chunks over their own connection.
//!
//! # Limits
//!
//! A gRPC message is capped at [`MAX_MESSAGE_BYTES`] (64 MiB) in both
//! directions on both ends; batches are cut at [`BATCH_TARGET_BYTES`], and
//! a single raft message never exceeds MaxSizePerMsg (<= 32 MiB) plus one
//! entry, which the node keeps under [`MAX_ENTRY_BYTES`].

pub mod acceptor;
pub mod admin;
pub mod directory;
pub mod forward;
pub mod founding;
pub mod identity;
pub mod peer;
pub mod secret;
pub mod server;
pub mod snapshot;
pub mod tls;

/// Generated protobuf and gRPC code.
#[allow(clippy::all, clippy::unwrap_used, clippy::expect_used, missing_docs)]
pub mod pb {
    tonic::include_proto!("elastickv.v1");
}

use thiserror::Error;

/// Largest gRPC message accepted or sent.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Batches are cut near this size; a lone larger message goes alone.
pub const BATCH_TARGET_BYTES: usize = 4 << 20;

/// Largest replicated entry (a client command): it must fit one gRPC
/// message with room for the envelope.
pub const MAX_ENTRY_BYTES: usize = MAX_MESSAGE_BYTES - (1 << 20);

#[derive(Debug, Error)]
pub enum TransportError {
    #[error("no address for node {0}")]
    UnknownPeer(u64),
    #[error("invalid address {addr:?} for node {node}: {detail}")]
    BadAddress {
        node: u64,
        addr: String,
        detail: String,
    },
    #[error("node {node}: {status}")]
    Rpc { node: u64, status: tonic::Status },
    #[error("forwarding stream to node {node} ended: {reason}")]
    StreamEnded { node: u64, reason: String },
    #[error("cannot serve the raft transport: {0}")]
    Serve(#[from] tonic::transport::Error),
}

pub use acceptor::Acceptor;
pub use directory::PeerDirectory;
pub use forward::{ForwardClient, ForwardOutcome};
pub use founding::FoundingHandler;
pub use identity::{ClusterIdentity, format_cluster_id};
pub use secret::{ClusterSecret, SecretError};
pub use server::{ForwardHandler, OutcomeFuture, StepFn, serve};
pub use snapshot::{SnapshotSink, spawn_sender as spawn_snapshot_sender};
/// For implementing [`ForwardHandler`].
pub use tonic::async_trait;
