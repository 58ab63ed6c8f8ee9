//! Per-shard raft engines on raft-rs. This crate knows nothing of Redis:
//! it replicates opaque payloads and hands committed ones to a
//! [`StateMachine`].
//!
//! # Layout
//!
//! - [`limits`]: the flow-control contract (MaxInflightMsgs,
//!   MaxSizePerMsg): resolution env > config > default, the WARN for a bad
//!   environment value, the INFO line every engine logs at open, and the
//!   sizes derived from the limits (step queue, outbound lanes).
//! - [`engine`]: one shard's replica: `RawNode`, proposals awaiting apply,
//!   batched ReadIndex reads, apply into the store's atomic batches.
//! - [`worker`]: the raft thread hosting the engines, and [`RaftHandle`],
//!   the async side's way in (propose, read barrier, step, status).
//! - [`outbox`]: bounded outbound lanes per shard and peer (normal, sized
//!   by MaxInflightMsgs, and priority); the raft thread never blocks on
//!   them, and the network layer drains them.
//! - `reads`: linearizable reads: batched ReadIndex requests with contexts
//!   unique across nodes and restarts, retried by followers, released once
//!   applied.
//! - `answers`: the answers a raft thread owes its callers, handed in one
//!   batch per round to a courier task on the async runtime.
//! - `mailbox`: the inbound step queue (bounded, refusals counted).
//! - `logger`: raft-rs's slog output, routed into `tracing`.
//!
//! # Invariants
//!
//! - The raft thread never blocks on the network; channels to and from it
//!   are bounded; inbound messages beyond the step queue are refused and
//!   counted, never buffered without bound.
//! - A proposal is answered only after its entry is durable and applied,
//!   with the apply batch committed.
//! - A read is released only once the node's applied index has reached an
//!   index the leader confirmed after the read arrived.

mod answers;
pub mod engine;
pub mod error;
pub mod limits;
mod logger;
mod mailbox;
mod metrics;
pub mod outbox;
pub mod reads;
pub mod worker;

pub use engine::{
    EngineConfig, MemberAdded, MembershipChange, Role, ShardStatus, SnapshotJob, StateMachine,
};
pub use error::{EngineError, ProposeError, StepError};
pub use limits::{LimitsConfig, RaftLimits};
pub use outbox::{Outbox, PeerOutbox};
pub use reads::ReadPoint;
pub use worker::{RaftHandle, start};
