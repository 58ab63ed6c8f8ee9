//! One sender per peer node: its outbound lanes (all shards) drained into
//! size-capped batches on one long-lived stream.
//!
//! The stream is the only buffer beyond the lanes: at most
//! [`IN_FLIGHT_BATCHES`] batches wait for gRPC to take them. When the peer
//! is slow, stopped or unreachable, sending waits, the lanes fill, and the
//! raft engines drop further messages and report the peer unreachable:
//! memory stays bounded by the lanes.

use std::sync::Arc;
use std::time::Duration;

use elastickv_raft::PeerOutbox;
use protobuf::Message as _;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

use crate::pb::raft_transport_client::RaftTransportClient;
use crate::pb::{RaftBatch, RaftEnvelope};
use crate::{BATCH_TARGET_BYTES, MAX_MESSAGE_BYTES};

/// Batches handed to gRPC but not yet written to the socket.
pub const IN_FLIGHT_BATCHES: usize = 2;

const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Connection failures are logged on the first and then every this many.
const CONNECT_LOG_EVERY: u64 = 50;

/// Longest wait for a connection (TCP and HTTP/2 handshake) or for the
/// peer to accept the stream.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A batch gRPC has not taken for this long means the stream is stuck (the
/// peer stopped reading, or the connection died unnoticed): reconnect.
const STALL_TIMEOUT: Duration = Duration::from_secs(10);

pub fn endpoint(addr: &str) -> Result<Endpoint, tonic::transport::Error> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(1))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5)))
}

/// Starts the sender towards `peer`, at `addr`, until `shutdown` flips.
pub fn spawn(
    local_id: u64,
    peer: Arc<PeerOutbox>,
    addr: String,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(run(local_id, peer, addr, shutdown))
}

async fn run(
    local_id: u64,
    peer: Arc<PeerOutbox>,
    addr: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let node = peer.node();
    let endpoint = match endpoint(&addr) {
        Ok(endpoint) => endpoint,
        Err(e) => {
            tracing::error!(peer = node, addr = %addr, error = %e, "bad peer address; not sending to it");
            return;
        }
    };
    let mut backoff = BACKOFF_MIN;
    let mut failures = 0u64;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let channel = tokio::select! {
            channel = tokio::time::timeout(CONNECT_TIMEOUT, endpoint.connect()) => match channel {
                Ok(channel) => channel.map_err(|e| e.to_string()),
                Err(_) => Err(format!("no connection within {CONNECT_TIMEOUT:?}")),
            },
            _ = shutdown.changed() => return,
        };
        // A TCP connection is not enough: only a stream the peer accepted
        // resets the backoff (a proxy or a half-dead peer may accept
        // connections and close them at once).
        let failure = match channel {
            Ok(channel) => match stream(local_id, &peer, channel, &mut shutdown).await {
                StreamEnd::Closed(reason) => {
                    tracing::info!(peer = node, addr = %addr, reason = %reason, "raft stream to peer closed; reconnecting");
                    failures = 0;
                    backoff = BACKOFF_MIN;
                    None
                }
                StreamEnd::Refused(reason) => Some(reason),
            },
            Err(e) => Some(e),
        };
        if let Some(error) = failure {
            failures += 1;
            metrics::counter!("elastickv_transport_connect_failures_total", "peer" => node.to_string())
                .increment(1);
            if failures == 1 || failures.is_multiple_of(CONNECT_LOG_EVERY) {
                tracing::warn!(peer = node, addr = %addr, error = %error, failures, "cannot reach raft peer (logged on the first failure and every {CONNECT_LOG_EVERY}th)");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// How a stream attempt ended.
enum StreamEnd {
    /// The peer never accepted the stream.
    Refused(String),
    /// The stream ran, then ended for this reason.
    Closed(String),
}

/// Streams batches until the stream fails.
async fn stream(
    local_id: u64,
    peer: &PeerOutbox,
    channel: Channel,
    shutdown: &mut watch::Receiver<bool>,
) -> StreamEnd {
    let node = peer.node();
    let mut client = RaftTransportClient::new(channel)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let (batches, rx) = mpsc::channel::<RaftBatch>(IN_FLIGHT_BATCHES);
    let call = client.stream(ReceiverStream::new(rx));
    // The call resolves once the peer answers with headers; batches may be
    // queued meanwhile.
    let mut acks = tokio::select! {
        response = tokio::time::timeout(CONNECT_TIMEOUT, call) => match response {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => return StreamEnd::Refused(format!("stream refused: {status}")),
            Err(_) => {
                return StreamEnd::Refused(format!(
                    "the peer did not accept the stream within {CONNECT_TIMEOUT:?}"
                ));
            }
        },
        _ = shutdown.changed() => return StreamEnd::Closed("shutting down".into()),
    };

    let peer_label = node.to_string();
    let mut ack_reader = tokio::spawn(async move {
        loop {
            match acks.message().await {
                Ok(Some(ack)) => {
                    if ack.refused > 0 {
                        metrics::counter!("elastickv_transport_refused_by_peer_total", "peer" => peer_label.clone())
                            .increment(u64::from(ack.refused));
                    }
                }
                Ok(None) => return "peer closed the stream".to_string(),
                Err(status) => return format!("stream failed: {status}"),
            }
        }
    });
    let reason = loop {
        if ack_reader.is_finished() {
            break "acknowledgements stopped".to_string();
        }
        let drained = peer.drain(BATCH_TARGET_BYTES);
        if drained.is_empty() {
            tokio::select! {
                _ = peer.wait() => continue,
                // Wake up now and then to notice a dead stream.
                _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                _ = shutdown.changed() => break "shutting down".to_string(),
            }
        }
        let mut batch = RaftBatch {
            from_node: local_id,
            messages: Vec::with_capacity(drained.len()),
        };
        for (shard, msg) in drained {
            match msg.write_to_bytes() {
                Ok(bytes) => batch.messages.push(RaftEnvelope {
                    shard,
                    from: msg.from,
                    to: msg.to,
                    message: bytes,
                }),
                Err(e) => {
                    tracing::error!(peer = node, error = %e, "cannot encode a raft message; dropped")
                }
            }
        }
        let count = batch.messages.len() as u64;
        tokio::select! {
            sent = tokio::time::timeout(STALL_TIMEOUT, batches.send(batch)) => match sent {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break "stream closed".to_string(),
                Err(_) => break format!("no batch taken for {STALL_TIMEOUT:?}"),
            },
            ended = &mut ack_reader => {
                break ended.unwrap_or_else(|e| format!("acknowledgements stopped: {e}"));
            }
            _ = shutdown.changed() => break "shutting down".to_string(),
        }
        metrics::counter!("elastickv_transport_messages_sent_total", "peer" => node.to_string())
            .increment(count);
    };
    ack_reader.abort();
    StreamEnd::Closed(reason)
}
