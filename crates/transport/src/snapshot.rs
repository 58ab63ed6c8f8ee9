//! Shard snapshots between nodes, on their own gRPC stream and connection.
//!
//! Sending: the raft engines queue [`SnapshotJob`]s (a `MsgSnapshot` plus a
//! point-in-time view of the data); [`spawn_sender`] streams each to its
//! follower in chunks of [`SNAPSHOT_CHUNK_BYTES`] with a final CRC-32, at
//! most [`CONCURRENT_SNAPSHOTS`] at a time, and reports the outcome to raft
//! (which retries a failed one later).
//!
//! Receiving: chunks are staged to disk through the store's
//! [`SnapshotStager`]; only a complete, verified stream is handed to the
//! shard's raft (stepping the `MsgSnapshot`), which installs it.

use std::collections::BTreeMap;
use std::sync::Arc;

use elastickv_raft::{RaftHandle, SnapshotJob};
use elastickv_store::SnapshotStager;
use protobuf::Message as _;
use raft::prelude::{Message, MessageType};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

use crate::MAX_MESSAGE_BYTES;
use crate::directory::PeerDirectory;
use crate::identity::ClusterIdentity;
use crate::pb::snapshot_transport_client::SnapshotTransportClient;
use crate::pb::snapshot_transport_server::SnapshotTransport;
use crate::pb::{SnapshotChunk, SnapshotReply};

/// Data bytes per chunk: far below the 64 MiB message cap.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;

/// Snapshots sent at once by one node; each pins a RocksDB snapshot and
/// uses disk and network bandwidth that replication also needs.
pub const CONCURRENT_SNAPSHOTS: usize = 2;

/// Chunks buffered between the reader thread and the stream.
const CHUNKS_IN_FLIGHT: usize = 4;

/// Sends the engines' snapshots until `shutdown` flips.
pub fn spawn_sender<O: Send + 'static>(
    raft: RaftHandle<O>,
    directory: PeerDirectory,
    identity: ClusterIdentity,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    // A connection of its own per peer, apart from the raft stream's.
    let mut channels: BTreeMap<u64, (String, Channel)> = BTreeMap::new();
    let jobs = raft.snapshot_jobs();
    let permits = Arc::new(Semaphore::new(CONCURRENT_SNAPSHOTS));
    tokio::spawn(async move {
        loop {
            let job = tokio::select! {
                job = jobs.recv_async() => match job {
                    Ok(job) => job,
                    Err(_) => return,
                },
                _ = shutdown.changed() => return,
            };
            let (shard, to) = (job.shard, job.to);
            let Some(addr) = directory.get(to) else {
                tracing::warn!(
                    shard_id = shard,
                    to,
                    "no address for the snapshot's receiver"
                );
                raft.report_snapshot(shard, to, false).await;
                continue;
            };
            let channel = match channels.get(&to) {
                Some((known, channel)) if *known == addr => channel.clone(),
                _ => match crate::peer::endpoint(&addr) {
                    Ok(endpoint) => {
                        let channel = identity.connect_lazy(endpoint);
                        channels.insert(to, (addr, channel.clone()));
                        channel
                    }
                    Err(e) => {
                        tracing::warn!(to, error = %e, "bad address for the snapshot's receiver");
                        raft.report_snapshot(shard, to, false).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let (raft, identity) = (raft.clone(), identity.clone());
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                let outcome = send(channel, &identity, job).await;
                drop(permit);
                match &outcome {
                    Ok(bytes) => tracing::info!(
                        shard_id = shard,
                        to,
                        bytes,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "snapshot delivered"
                    ),
                    Err(e) => tracing::warn!(
                        shard_id = shard,
                        to,
                        error = %e,
                        "snapshot transfer failed; raft will retry"
                    ),
                }
                raft.report_snapshot(shard, to, outcome.is_ok()).await;
            });
        }
    })
}

/// Streams one snapshot; returns the data bytes sent.
async fn send(
    channel: Channel,
    identity: &ClusterIdentity,
    job: SnapshotJob,
) -> Result<u64, String> {
    let SnapshotJob {
        shard,
        message,
        data,
        ..
    } = job;
    let header = SnapshotChunk {
        shard,
        message: message.write_to_bytes().map_err(|e| e.to_string())?,
        ..Default::default()
    };
    let (chunks, rx) = mpsc::channel::<SnapshotChunk>(CHUNKS_IN_FLIGHT);
    chunks
        .send(header)
        .await
        .map_err(|_| "stream closed".to_string())?;
    // RocksDB iteration blocks: on a blocking thread, handing chunks over
    // a small bounded channel (the network paces the reading).
    let reader = tokio::task::spawn_blocking(move || {
        let streamed = data.stream(SNAPSHOT_CHUNK_BYTES, |bytes| {
            chunks
                .blocking_send(SnapshotChunk {
                    data: bytes,
                    ..Default::default()
                })
                .is_ok()
        });
        match streamed {
            Ok((crc32, total_bytes)) => {
                let _ = chunks.blocking_send(SnapshotChunk {
                    last: true,
                    crc32,
                    total_bytes,
                    ..Default::default()
                });
                Ok(total_bytes)
            }
            Err(e) => Err(e.to_string()),
        }
    });
    let mut client = SnapshotTransportClient::new(channel)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let mut request = Request::new(ReceiverStream::new(rx));
    identity.tag(&mut request);
    let reply = client.install(request).await;
    let total = reader
        .await
        .map_err(|e| format!("snapshot reader failed: {e}"))??;
    let reply = reply.map_err(|status| status.to_string())?.into_inner();
    if reply.accepted {
        Ok(total)
    } else {
        Err(format!("refused by the follower: {}", reply.error))
    }
}

/// The receiving node's side: where snapshots are staged and who gets them.
pub trait SnapshotSink: Send + Sync + 'static {
    /// Starts staging the snapshot `msg` announces for `shard`.
    fn stage(&self, shard: u32, msg: &Message) -> Result<SnapshotStager, String>;
    /// Hands a staged snapshot's `msg` to the shard's raft. `cluster` is
    /// the sender's cluster id (a node waiting to be added adopts it).
    fn deliver(&self, shard: u32, msg: Message, cluster: Option<u64>) -> Result<(), String>;
}

pub(crate) struct SnapshotService {
    pub(crate) node_id: u64,
    pub(crate) sink: Arc<dyn SnapshotSink>,
}

impl SnapshotService {
    async fn receive(
        &self,
        mut inbound: Streaming<SnapshotChunk>,
        cluster: Option<u64>,
    ) -> Result<(), String> {
        let first = inbound
            .message()
            .await
            .map_err(|s| s.to_string())?
            .ok_or("empty snapshot stream")?;
        let msg = Message::parse_from_bytes(&first.message)
            .map_err(|e| format!("undecodable snapshot message: {e}"))?;
        if msg.get_msg_type() != MessageType::MsgSnapshot || msg.to != self.node_id {
            return Err(format!(
                "expected a snapshot for node {}, got {:?} for node {}",
                self.node_id,
                msg.get_msg_type(),
                msg.to
            ));
        }
        let shard = first.shard;
        let mut stager = self.sink.stage(shard, &msg)?;
        let mut chunk = first;
        loop {
            if !chunk.data.is_empty() {
                let data = std::mem::take(&mut chunk.data);
                stager = tokio::task::spawn_blocking(move || {
                    stager
                        .write(&data)
                        .map(|()| stager)
                        .map_err(|e| e.to_string())
                })
                .await
                .map_err(|e| e.to_string())??;
            }
            if chunk.last {
                let (crc32, total) = (chunk.crc32, chunk.total_bytes);
                tokio::task::spawn_blocking(move || stager.finish(crc32, total))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
                return self.sink.deliver(shard, msg, cluster);
            }
            chunk = inbound
                .message()
                .await
                .map_err(|s| s.to_string())?
                .ok_or("the stream ended before the last chunk")?;
        }
    }
}

#[tonic::async_trait]
impl SnapshotTransport for SnapshotService {
    async fn install(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<SnapshotReply>, Status> {
        let cluster = ClusterIdentity::of_caller(&request)?;
        let reply = match self.receive(request.into_inner(), cluster).await {
            Ok(()) => SnapshotReply {
                accepted: true,
                error: String::new(),
            },
            Err(error) => {
                tracing::warn!(error = %error, "snapshot from a peer refused");
                SnapshotReply {
                    accepted: false,
                    error,
                }
            }
        };
        Ok(Response::new(reply))
    }
}
