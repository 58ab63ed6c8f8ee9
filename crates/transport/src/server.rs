//! The receiving side: raft streams from peers and forwarded commands.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use elastickv_raft::StepError;
use protobuf::Message as _;
use raft::prelude::Message;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

use crate::forward::ForwardOutcome;
use crate::pb::admin_server::AdminServer;
use crate::pb::forward_server::{Forward, ForwardServer};
use crate::pb::raft_transport_server::{RaftTransport, RaftTransportServer};
use crate::pb::snapshot_transport_server::SnapshotTransportServer;
use crate::pb::{BatchAck, ForwardReply, ForwardRequest, RaftBatch};
use crate::{MAX_MESSAGE_BYTES, TransportError};

/// Hands an inbound message to its shard's engine (never blocking).
pub type StepFn = Arc<dyn Fn(u32, Message) -> Result<(), StepError> + Send + Sync>;

/// The eventual answer to a forwarded command.
pub type OutcomeFuture = Pin<Box<dyn Future<Output = ForwardOutcome> + Send + 'static>>;

/// Executes writes forwarded by other nodes.
#[tonic::async_trait]
pub trait ForwardHandler: Send + Sync + 'static {
    /// Queues the command for replication (commands from one stream are
    /// queued in arrival order) and returns the future of its outcome.
    async fn submit(&self, shard: u32, payload: Bytes) -> OutcomeFuture;
}

struct RaftService {
    node_id: u64,
    step: StepFn,
}

type AckStream = ReceiverStream<Result<BatchAck, Status>>;

#[tonic::async_trait]
impl RaftTransport for RaftService {
    type StreamStream = AckStream;

    async fn stream(
        &self,
        request: Request<Streaming<RaftBatch>>,
    ) -> Result<Response<AckStream>, Status> {
        let mut inbound = request.into_inner();
        let (acks, rx) = mpsc::channel(16);
        let (node_id, step) = (self.node_id, self.step.clone());
        tokio::spawn(async move {
            loop {
                let batch = match inbound.message().await {
                    Ok(Some(batch)) => batch,
                    Ok(None) => return,
                    Err(status) => {
                        tracing::debug!(error = %status, "raft stream from a peer ended");
                        return;
                    }
                };
                let ack = deliver(node_id, &step, batch);
                if acks.send(Ok(ack)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Steps every message of a batch; counts what was refused or invalid.
fn deliver(node_id: u64, step: &StepFn, batch: RaftBatch) -> BatchAck {
    let mut ack = BatchAck::default();
    for envelope in batch.messages {
        let msg = match Message::parse_from_bytes(&envelope.message) {
            Ok(msg) if msg.to == node_id && envelope.to == node_id => msg,
            Ok(msg) => {
                tracing::warn!(
                    from = batch.from_node,
                    addressed_to = msg.to,
                    "raft message for another node dropped"
                );
                ack.invalid += 1;
                continue;
            }
            Err(e) => {
                tracing::warn!(from = batch.from_node, error = %e, "undecodable raft message dropped");
                ack.invalid += 1;
                continue;
            }
        };
        match step(envelope.shard, msg) {
            Ok(()) => ack.accepted += 1,
            Err(StepError::QueueFull { .. }) => ack.refused += 1,
            Err(_) => ack.invalid += 1,
        }
    }
    if ack.invalid > 0 {
        metrics::counter!("elastickv_transport_invalid_messages_total")
            .increment(u64::from(ack.invalid));
    }
    ack
}

struct ForwardService {
    handler: Arc<dyn ForwardHandler>,
}

type ReplyStream = ReceiverStream<Result<ForwardReply, Status>>;

/// Replies that may wait for the stream's writer before queueing stops.
const REPLY_QUEUE: usize = 1024;

#[tonic::async_trait]
impl Forward for ForwardService {
    type PipelineStream = ReplyStream;

    async fn pipeline(
        &self,
        request: Request<Streaming<ForwardRequest>>,
    ) -> Result<Response<ReplyStream>, Status> {
        let mut inbound = request.into_inner();
        let (replies, rx) = mpsc::channel(REPLY_QUEUE);
        let handler = self.handler.clone();
        tokio::spawn(async move {
            loop {
                let request = match inbound.message().await {
                    Ok(Some(request)) => request,
                    Ok(None) => return,
                    Err(status) => {
                        tracing::debug!(error = %status, "forwarding stream from a peer ended");
                        return;
                    }
                };
                // Queued in arrival order; answered whenever applied.
                let outcome = handler
                    .submit(request.shard, Bytes::from(request.payload))
                    .await;
                let replies = replies.clone();
                tokio::spawn(async move {
                    let reply = outcome.await.into_reply(request.seq);
                    let _ = replies.send(Ok(reply)).await;
                });
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Serves the raft transport and forwarding on `listener` until
/// `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    node_id: u64,
    step: StepFn,
    forward: Arc<dyn ForwardHandler>,
    snapshots: Arc<dyn crate::snapshot::SnapshotSink>,
    admin: Arc<dyn crate::admin::AdminHandler>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), TransportError> {
    let admin = AdminServer::new(crate::admin::AdminService { handler: admin })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let raft = RaftTransportServer::new(RaftService { node_id, step })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let forward = ForwardServer::new(ForwardService { handler: forward })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let snapshots = SnapshotTransportServer::new(crate::snapshot::SnapshotService {
        node_id,
        sink: snapshots,
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(raft)
        .add_service(forward)
        .add_service(snapshots)
        .add_service(admin)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}
