//! The receiving side: raft streams from peers and forwarded commands.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use elastickv_raft::StepError;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use protobuf::Message as _;
use raft::prelude::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::interceptor::InterceptedService;
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
                if let Some(wrong) = ack.misaddressed {
                    // The sender's address for a peer reaches this node
                    // instead: end the stream so it says so and dials
                    // again, rather than drop its messages for good.
                    let _ = acks
                        .send(Err(Status::failed_precondition(format!(
                            "this address answers as node {node_id}, not node {wrong}"
                        ))))
                        .await;
                    return;
                }
                if acks.send(Ok(ack.ack)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// What delivering a batch came to.
pub struct Delivered {
    pub ack: BatchAck,
    /// A message was for another node: the node it was addressed to.
    pub misaddressed: Option<u64>,
}

/// Steps every message of a batch a peer sent (decoding each raft
/// message); counts what was refused or invalid. Public for the fuzz
/// target that feeds it bytes.
pub fn deliver(node_id: u64, step: &StepFn, batch: RaftBatch) -> Delivered {
    let mut ack = BatchAck::default();
    let mut misaddressed = None;
    for envelope in batch.messages {
        let msg = match Message::parse_from_bytes(&envelope.message) {
            Ok(msg) if msg.to == node_id && envelope.to == node_id => msg,
            Ok(msg) => {
                tracing::warn!(
                    from = batch.from_node,
                    addressed_to = msg.to,
                    "raft message for another node dropped"
                );
                misaddressed = Some(msg.to);
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
    Delivered { ack, misaddressed }
}

struct ForwardService {
    handler: Arc<dyn ForwardHandler>,
}

type ReplyStream = ReceiverStream<Result<ForwardReply, Status>>;

/// Replies that may wait for the stream's writer before queueing stops.
const REPLY_QUEUE: usize = 1024;

/// Forwarded commands one stream may have waiting for their outcome here.
/// Beyond this the stream is not read until one completes (HTTP/2 flow
/// control then holds the sender back): no task or map grows with the
/// sender's rate.
pub const FORWARD_IN_FLIGHT: usize = 1024;

#[tonic::async_trait]
impl Forward for ForwardService {
    type PipelineStream = ReplyStream;

    async fn pipeline(
        &self,
        request: Request<Streaming<ForwardRequest>>,
    ) -> Result<Response<ReplyStream>, Status> {
        let inbound = request.into_inner();
        let (replies, rx) = mpsc::channel(REPLY_QUEUE);
        tokio::spawn(serve_pipeline(self.handler.clone(), inbound, replies));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Queues each forwarded command in arrival order and answers each as its
/// outcome arrives, with at most [`FORWARD_IN_FLIGHT`] waiting.
async fn serve_pipeline(
    handler: Arc<dyn ForwardHandler>,
    mut inbound: Streaming<ForwardRequest>,
    replies: mpsc::Sender<Result<ForwardReply, Status>>,
) {
    let mut in_flight = FuturesUnordered::new();
    let mut reading = true;
    loop {
        tokio::select! {
            request = inbound.message(), if reading && in_flight.len() < FORWARD_IN_FLIGHT => {
                match request {
                    Ok(Some(request)) => {
                        // Queued in arrival order; answered whenever applied.
                        let outcome = handler
                            .submit(request.shard, Bytes::from(request.payload))
                            .await;
                        let seq = request.seq;
                        in_flight.push(async move { outcome.await.into_reply(seq) });
                    }
                    // The sender is done; answer what is in flight.
                    Ok(None) => reading = false,
                    Err(status) => {
                        tracing::debug!(error = %status, "forwarding stream from a peer ended");
                        return;
                    }
                }
            }
            Some(reply) = in_flight.next(), if !in_flight.is_empty() => {
                if replies.send(Ok(reply)).await.is_err() {
                    return;
                }
            }
            else => return,
        }
    }
}

/// What a node serves to other nodes (and to `elastickv ctl`).
pub struct Services {
    pub node_id: u64,
    pub identity: crate::ClusterIdentity,
    pub step: StepFn,
    pub forward: Arc<dyn ForwardHandler>,
    pub snapshots: Arc<dyn crate::snapshot::SnapshotSink>,
    pub admin: Arc<dyn crate::admin::AdminHandler>,
    pub founding: Arc<dyn crate::founding::FoundingHandler>,
}

/// Serves the raft transport, forwarding, snapshots, administration and
/// founding on the connections of `acceptor` until `shutdown` resolves.
/// Calls from another cluster are refused (see [`crate::identity`]).
pub async fn serve(
    acceptor: &crate::Acceptor,
    services: Services,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), TransportError> {
    let Services {
        node_id,
        identity,
        step,
        forward,
        snapshots,
        admin,
        founding,
    } = services;
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
    // Every service requires the cluster secret (when the node has one).
    // Node-to-node services also require the caller's cluster id; the
    // administration service takes calls from `elastickv ctl`, which has
    // none, and founding calls come before there is one.
    let checked = |required, service| identity.interceptor(required, service);
    tonic::transport::Server::builder()
        .add_service(InterceptedService::new(raft, checked(true, "raft")))
        .add_service(InterceptedService::new(forward, checked(true, "forward")))
        .add_service(InterceptedService::new(
            snapshots,
            checked(true, "snapshot"),
        ))
        .add_service(InterceptedService::new(admin, checked(false, "admin")))
        .add_service(InterceptedService::new(
            crate::founding::service(founding),
            checked(false, "founding"),
        ))
        .serve_with_incoming_shutdown(
            crate::tls::serve_over(acceptor.incoming(), identity.tls().cloned()),
            shutdown,
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use tokio::net::TcpListener;
    use tokio_stream::wrappers::TcpListenerStream;

    use super::*;
    use crate::{ClusterIdentity, ForwardClient, PeerDirectory};

    /// A batch that reaches the wrong node (the sender's address for a
    /// peer answers as another) is reported, so the stream ends and the
    /// sender dials again; the right node's messages are stepped.
    #[test]
    fn messages_for_another_node_are_reported_not_just_dropped() {
        use protobuf::Message as _;
        let stepped = Arc::new(AtomicUsize::new(0));
        let counter = stepped.clone();
        let step: StepFn = Arc::new(move |_, _| {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
        let envelope = |to: u64| {
            let msg = Message {
                to,
                from: 1,
                ..Default::default()
            };
            crate::pb::RaftEnvelope {
                shard: 0,
                from: 1,
                to,
                message: msg.write_to_bytes().unwrap(),
            }
        };
        let batch = |to: u64| crate::pb::RaftBatch {
            from_node: 1,
            messages: vec![envelope(to)],
        };
        let right = deliver(2, &step, batch(2));
        assert_eq!((right.ack.accepted, right.misaddressed), (1, None));
        let wrong = deliver(2, &step, batch(3));
        assert_eq!((wrong.ack.invalid, wrong.misaddressed), (1, Some(3)));
        assert_eq!(stepped.load(Ordering::SeqCst), 1);
    }

    /// Counts the commands it was handed; their outcomes wait for `release`.
    struct Stalled {
        submitted: Arc<AtomicUsize>,
        release: tokio::sync::watch::Receiver<bool>,
    }

    #[tonic::async_trait]
    impl ForwardHandler for Stalled {
        async fn submit(&self, _shard: u32, payload: Bytes) -> OutcomeFuture {
            self.submitted.fetch_add(1, Ordering::SeqCst);
            let mut release = self.release.clone();
            Box::pin(async move {
                let _ = release.wait_for(|go| *go).await;
                ForwardOutcome::Reply(payload.to_vec())
            })
        }
    }

    /// A leader that cannot keep up takes at most FORWARD_IN_FLIGHT of a
    /// stream's commands; the sender waits rather than piling them up.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn forwarded_work_in_flight_is_bounded_on_both_ends() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let submitted = Arc::new(AtomicUsize::new(0));
        let (release, release_rx) = tokio::sync::watch::channel(false);
        let service = ForwardServer::new(ForwardService {
            handler: Arc::new(Stalled {
                submitted: submitted.clone(),
                release: release_rx,
            }),
        });
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        let client = ForwardClient::new(
            PeerDirectory::new(BTreeMap::from([(1, addr.to_string())])),
            ClusterIdentity::default(),
        );
        let queued = Arc::new(AtomicUsize::new(0));
        let sender = {
            let (client, queued) = (client.clone(), queued.clone());
            tokio::spawn(async move {
                let mut answers = Vec::new();
                for i in 0..FORWARD_IN_FLIGHT + 10 {
                    let payload = (i as u64).to_be_bytes().to_vec();
                    answers.push(client.submit(1, 0, payload).await.unwrap());
                    queued.fetch_add(1, Ordering::SeqCst);
                }
                futures::future::join_all(answers).await
            })
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while submitted.load(Ordering::SeqCst) < FORWARD_IN_FLIGHT {
            assert!(
                tokio::time::Instant::now() < deadline,
                "stream never filled"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Nothing more moves while every command waits.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(submitted.load(Ordering::SeqCst), FORWARD_IN_FLIGHT);
        assert_eq!(queued.load(Ordering::SeqCst), FORWARD_IN_FLIGHT);
        // Once outcomes arrive, the rest flows and every command is answered
        // with its own reply.
        release.send(true).unwrap();
        let answers = tokio::time::timeout(Duration::from_secs(20), sender)
            .await
            .expect("every command answered")
            .unwrap();
        assert_eq!(answers.len(), FORWARD_IN_FLIGHT + 10);
        for (i, answer) in answers.into_iter().enumerate() {
            assert_eq!(
                answer.unwrap(),
                ForwardOutcome::Reply((i as u64).to_be_bytes().to_vec())
            );
        }
    }
}
