//! Sending write commands to the node that leads their shard.
//!
//! Each peer gets one long-lived `Forward.Pipeline` stream, opened on first
//! use and reopened after it fails. Submitting is two-phase: the command is
//! put on the stream at once, in the order of the calls (so a client
//! connection's pipelined writes reach the leader, and are queued there for
//! replication, in order), and the returned future resolves when the
//! leader's reply for it comes back. A failed stream fails every command
//! still waiting on it with an error; their outcome is unknown, and the
//! caller resends them with their request ids.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::directory::PeerDirectory;
use crate::identity::ClusterIdentity;
use crate::pb::forward_client::ForwardClient as Client;
use crate::pb::{ForwardReply, ForwardRequest, forward_reply};
use crate::server::FORWARD_IN_FLIGHT;
use crate::{MAX_MESSAGE_BYTES, TransportError};

/// Requests queued for one peer's stream before submitting waits.
const STREAM_QUEUE: usize = 1024;

/// What the leader made of a forwarded command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardOutcome {
    /// The encoded reply of the applied command.
    Reply(Vec<u8>),
    /// Not the leader; the node it believes leads (0: unknown).
    NotLeader(u64),
    /// A retryable failure.
    Retry(String),
}

impl ForwardOutcome {
    fn from_reply(reply: ForwardReply) -> ForwardOutcome {
        match reply.outcome {
            Some(forward_reply::Outcome::Reply(bytes)) => ForwardOutcome::Reply(bytes),
            Some(forward_reply::Outcome::NotLeader(leader)) => ForwardOutcome::NotLeader(leader),
            Some(forward_reply::Outcome::Retry(why)) => ForwardOutcome::Retry(why),
            None => ForwardOutcome::Retry("empty reply".into()),
        }
    }

    /// The wire form, answering request `seq`.
    pub fn into_reply(self, seq: u64) -> ForwardReply {
        let outcome = match self {
            ForwardOutcome::Reply(bytes) => forward_reply::Outcome::Reply(bytes),
            ForwardOutcome::NotLeader(leader) => forward_reply::Outcome::NotLeader(leader),
            ForwardOutcome::Retry(why) => forward_reply::Outcome::Retry(why),
        };
        ForwardReply {
            outcome: Some(outcome),
            seq,
        }
    }
}

/// Who waits for a request's answer, and the permit it holds until the
/// answer arrives (or the stream fails), whether or not anyone polls.
type Waiter = (
    oneshot::Sender<Result<ForwardOutcome, TransportError>>,
    tokio::sync::OwnedSemaphorePermit,
);

/// Requests sent on a stream and not answered yet; `None` once the stream
/// has ended (nothing may wait on it any more).
type Pending = Arc<parking_lot::Mutex<Option<HashMap<u64, Waiter>>>>;

/// One open `Pipeline` stream.
struct Stream {
    requests: mpsc::Sender<ForwardRequest>,
    pending: Pending,
    next_seq: u64,
}

impl Stream {
    fn is_open(&self) -> bool {
        self.pending.lock().is_some() && !self.requests.is_closed()
    }
}

struct Peer {
    node: u64,
    channel: Channel,
    identity: ClusterIdentity,
    /// Held across queueing a request, so requests go out in call order.
    stream: tokio::sync::Mutex<Option<Stream>>,
    /// One permit per request sent and not yet answered (released when the
    /// answer arrives): submitting waits for one, so what waits for this
    /// peer is bounded.
    in_flight: Arc<tokio::sync::Semaphore>,
}

impl Peer {
    fn open(&self) -> Stream {
        let (requests, rx) = mpsc::channel(STREAM_QUEUE);
        let pending: Pending = Arc::new(parking_lot::Mutex::new(Some(HashMap::new())));
        let mut client = Client::new(self.channel.clone())
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
            .max_decoding_message_size(MAX_MESSAGE_BYTES);
        let (node, waiting, identity) = (self.node, pending.clone(), self.identity.clone());
        tokio::spawn(async move {
            let mut request = tonic::Request::new(ReceiverStream::new(rx));
            identity.tag(&mut request);
            let why = match client.pipeline(request).await {
                Ok(response) => {
                    let mut replies = response.into_inner();
                    loop {
                        match replies.message().await {
                            Ok(Some(reply)) => {
                                let waiter =
                                    waiting.lock().as_mut().and_then(|p| p.remove(&reply.seq));
                                if let Some((waiter, _permit)) = waiter {
                                    let _ = waiter.send(Ok(ForwardOutcome::from_reply(reply)));
                                }
                            }
                            Ok(None) => break "the peer closed the forwarding stream".to_string(),
                            Err(status) => break status.to_string(),
                        }
                    }
                }
                Err(status) => status.to_string(),
            };
            tracing::debug!(peer = node, reason = %why, "forwarding stream ended");
            let stranded = waiting.lock().take().unwrap_or_default();
            for (_, (waiter, _permit)) in stranded {
                let _ = waiter.send(Err(TransportError::StreamEnded {
                    node,
                    reason: why.clone(),
                }));
            }
        });
        Stream {
            requests,
            pending,
            next_seq: 0,
        }
    }
}

/// Forwarding streams to every peer, opened on first use.
#[derive(Clone)]
pub struct ForwardClient {
    directory: PeerDirectory,
    identity: ClusterIdentity,
    peers: Arc<parking_lot::RwLock<BTreeMap<u64, Arc<Peer>>>>,
}

impl ForwardClient {
    pub fn new(directory: PeerDirectory, identity: ClusterIdentity) -> ForwardClient {
        ForwardClient {
            directory,
            identity,
            peers: Arc::default(),
        }
    }

    fn peer(&self, node: u64) -> Result<Arc<Peer>, TransportError> {
        if let Some(peer) = self.peers.read().get(&node) {
            return Ok(peer.clone());
        }
        let addr = self
            .directory
            .get(node)
            .ok_or(TransportError::UnknownPeer(node))?;
        let endpoint = crate::peer::endpoint(&addr).map_err(|e| TransportError::BadAddress {
            node,
            addr: addr.clone(),
            detail: e.to_string(),
        })?;
        let peer = Arc::new(Peer {
            node,
            channel: self.identity.connect_lazy(endpoint),
            identity: self.identity.clone(),
            stream: tokio::sync::Mutex::new(None),
            in_flight: Arc::new(tokio::sync::Semaphore::new(FORWARD_IN_FLIGHT)),
        });
        Ok(self.peers.write().entry(node).or_insert(peer).clone())
    }

    /// Puts `payload` for `shard` on the stream to `node` (in call order)
    /// and returns a future of the leader's answer. The future has no
    /// timeout of its own. With [`FORWARD_IN_FLIGHT`] requests to `node`
    /// unanswered, this waits for one to finish first.
    pub async fn submit(
        &self,
        node: u64,
        shard: u32,
        payload: Vec<u8>,
    ) -> Result<
        impl Future<Output = Result<ForwardOutcome, TransportError>> + Send + 'static,
        TransportError,
    > {
        let peer = self.peer(node)?;
        let Ok(permit) = peer.in_flight.clone().acquire_owned().await else {
            return Err(TransportError::UnknownPeer(node));
        };
        let mut slot = peer.stream.lock().await;
        if !slot.as_ref().is_some_and(Stream::is_open) {
            *slot = Some(peer.open());
        }
        let Some(stream) = slot.as_mut() else {
            return Err(TransportError::UnknownPeer(node));
        };
        let seq = stream.next_seq;
        stream.next_seq += 1;
        let (waiter, answer) = oneshot::channel();
        match stream.pending.lock().as_mut() {
            Some(pending) => {
                pending.insert(seq, (waiter, permit));
            }
            None => {
                return Err(TransportError::StreamEnded {
                    node,
                    reason: "the stream ended".into(),
                });
            }
        }
        let request = ForwardRequest {
            shard,
            payload,
            seq,
        };
        if stream.requests.send(request).await.is_err() {
            if let Some(pending) = stream.pending.lock().as_mut() {
                pending.remove(&seq);
            }
            return Err(TransportError::StreamEnded {
                node,
                reason: "the stream ended".into(),
            });
        }
        drop(slot);
        Ok(async move {
            answer.await.unwrap_or_else(|_| {
                Err(TransportError::StreamEnded {
                    node,
                    reason: "the stream ended".into(),
                })
            })
        })
    }
}
