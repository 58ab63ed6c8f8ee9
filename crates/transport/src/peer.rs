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

use crate::identity::ClusterIdentity;
use crate::pb::raft_transport_client::RaftTransportClient;
use crate::pb::{RaftBatch, RaftEnvelope};
use crate::{BATCH_TARGET_BYTES, MAX_MESSAGE_BYTES};

/// Batches handed to gRPC but not yet written to the socket.
pub const IN_FLIGHT_BATCHES: usize = 2;

const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// While a peer cannot be reached, that is logged on the first failure and
/// then at most this often.
const UNREACHABLE_LOG_EVERY: Duration = Duration::from_secs(30);

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
    identity: ClusterIdentity,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(run(local_id, peer, addr, identity, shutdown))
}

async fn run(
    local_id: u64,
    peer: Arc<PeerOutbox>,
    addr: String,
    identity: ClusterIdentity,
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
    let mut failing_since: Option<std::time::Instant> = None;
    let mut last_warned: Option<std::time::Instant> = None;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let channel = tokio::select! {
            channel = tokio::time::timeout(CONNECT_TIMEOUT, identity.connect(endpoint.clone())) => match channel {
                Ok(channel) => channel.map_err(|e| e.to_string()),
                Err(_) => Err(format!("no connection within {CONNECT_TIMEOUT:?}")),
            },
            _ = shutdown.changed() => return,
        };
        // A TCP connection is not enough: only a stream the peer accepted
        // resets the backoff (a proxy or a half-dead peer may accept
        // connections and close them at once).
        let accepted = |failures: u64, since: Option<std::time::Instant>| {
            if failures > 0 {
                tracing::info!(
                    peer = node,
                    addr = %addr,
                    failures,
                    unreachable_ms = since.map_or(0, |s| s.elapsed().as_millis() as u64),
                    "raft stream to peer established"
                );
            }
        };
        let failure = match channel {
            Ok(channel) => {
                let on_accept = || accepted(failures, failing_since);
                match stream(
                    local_id,
                    &peer,
                    channel,
                    &identity,
                    &mut shutdown,
                    on_accept,
                )
                .await
                {
                    StreamEnd::Closed(reason) => {
                        tracing::info!(peer = node, addr = %addr, reason = %reason, "raft stream to peer closed; reconnecting");
                        failures = 0;
                        failing_since = None;
                        last_warned = None;
                        backoff = BACKOFF_MIN;
                        None
                    }
                    StreamEnd::Refused(reason) => Some(reason),
                }
            }
            Err(e) => Some(e),
        };
        if let Some(error) = failure {
            failures += 1;
            let since = *failing_since.get_or_insert_with(std::time::Instant::now);
            metrics::counter!("elastickv_transport_connect_failures_total", "peer" => node.to_string())
                .increment(1);
            if last_warned.is_none_or(|at| at.elapsed() >= UNREACHABLE_LOG_EVERY) {
                last_warned = Some(std::time::Instant::now());
                tracing::warn!(
                    peer = node,
                    addr = %addr,
                    error = %error,
                    failures,
                    unreachable_ms = since.elapsed().as_millis() as u64,
                    "cannot reach raft peer (logged on the first failure and every {UNREACHABLE_LOG_EVERY:?})"
                );
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
/// What this stream sent for one shard: messages, MsgAppend among them,
/// and bytes.
struct SentCounters {
    messages: metrics::Counter,
    appends: metrics::Counter,
    bytes: metrics::Counter,
}

impl SentCounters {
    fn new(peer: u64, shard: u32) -> SentCounters {
        let labels = [("peer", peer.to_string()), ("shard", shard.to_string())];
        SentCounters {
            messages: metrics::counter!("elastickv_transport_messages_sent_total", &labels),
            appends: metrics::counter!("elastickv_transport_append_messages_total", &labels),
            bytes: metrics::counter!("elastickv_transport_sent_bytes_total", &labels),
        }
    }
}

async fn stream(
    local_id: u64,
    peer: &PeerOutbox,
    channel: Channel,
    identity: &ClusterIdentity,
    shutdown: &mut watch::Receiver<bool>,
    on_accept: impl FnOnce(),
) -> StreamEnd {
    let node = peer.node();
    let mut client = RaftTransportClient::new(channel)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let (batches, rx) = mpsc::channel::<RaftBatch>(IN_FLIGHT_BATCHES);
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    identity.tag(&mut request);
    let call = client.stream(request);
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
    on_accept();
    // Registered once per shard seen, not per batch.
    let mut sent_counters: std::collections::HashMap<u32, SentCounters> = Default::default();

    // Batches sent and acknowledged: a stream whose acknowledgements stop
    // while batches wait for them is dead, whatever TCP says.
    let acked = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut sent = 0u64;
    let mut seen_acked = 0u64;
    let mut waiting_since: Option<std::time::Instant> = None;
    let peer_label = node.to_string();
    let acks_seen = acked.clone();
    let mut ack_reader = tokio::spawn(async move {
        loop {
            match acks.message().await {
                Ok(Some(ack)) => {
                    acks_seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
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
        let now_acked = acked.load(std::sync::atomic::Ordering::SeqCst);
        if now_acked >= sent {
            waiting_since = None;
        } else if now_acked > seen_acked {
            // Progress: the oldest batch waiting was sent after this.
            waiting_since = Some(std::time::Instant::now());
        } else if waiting_since.is_some_and(|at| at.elapsed() >= STALL_TIMEOUT) {
            break format!("no acknowledgement for {STALL_TIMEOUT:?}");
        }
        seen_acked = now_acked;
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
        // Per shard: messages, MsgAppend among them, bytes.
        let mut counts: std::collections::BTreeMap<u32, (u64, u64, u64)> = Default::default();
        for (shard, msg) in drained {
            let append = msg.get_msg_type() == raft::prelude::MessageType::MsgAppend;
            match msg.write_to_bytes() {
                Ok(bytes) => {
                    let count = counts.entry(shard).or_default();
                    count.0 += 1;
                    count.1 += u64::from(append);
                    count.2 += bytes.len() as u64;
                    batch.messages.push(RaftEnvelope {
                        shard,
                        from: msg.from,
                        to: msg.to,
                        message: bytes,
                    });
                }
                Err(e) => {
                    tracing::error!(peer = node, error = %e, "cannot encode a raft message; dropped")
                }
            }
        }
        tokio::select! {
            handed = tokio::time::timeout(STALL_TIMEOUT, batches.send(batch)) => match handed {
                Ok(Ok(())) => {
                    sent += 1;
                    waiting_since.get_or_insert_with(std::time::Instant::now);
                }
                Ok(Err(_)) => break "stream closed".to_string(),
                Err(_) => break format!("no batch taken for {STALL_TIMEOUT:?}"),
            },
            ended = &mut ack_reader => {
                break ended.unwrap_or_else(|e| format!("acknowledgements stopped: {e}"));
            }
            _ = shutdown.changed() => break "shutting down".to_string(),
        }
        for (shard, (messages, appends, bytes)) in counts {
            let sent = sent_counters
                .entry(shard)
                .or_insert_with(|| SentCounters::new(node, shard));
            sent.messages.increment(messages);
            sent.appends.increment(appends);
            sent.bytes.increment(bytes);
        }
    };
    ack_reader.abort();
    StreamEnd::Closed(reason)
}
