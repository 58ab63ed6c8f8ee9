//! Sending a write command to the node that leads its shard.

use std::collections::BTreeMap;
use std::time::Duration;

use tonic::transport::Channel;

use crate::pb::forward_client::ForwardClient as Client;
use crate::pb::{ForwardRequest, forward_reply};
use crate::{MAX_MESSAGE_BYTES, TransportError};

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

/// Lazily connected channels to every peer.
#[derive(Clone)]
pub struct ForwardClient {
    channels: BTreeMap<u64, Channel>,
}

impl ForwardClient {
    pub fn new(peers: &BTreeMap<u64, String>) -> Result<ForwardClient, TransportError> {
        let mut channels = BTreeMap::new();
        for (&node, addr) in peers {
            let endpoint = crate::peer::endpoint(addr).map_err(|e| TransportError::BadAddress {
                node,
                addr: addr.clone(),
                detail: e.to_string(),
            })?;
            channels.insert(node, endpoint.connect_lazy());
        }
        Ok(ForwardClient { channels })
    }

    /// Sends `payload` for `shard` to `node`.
    pub async fn execute(
        &self,
        node: u64,
        shard: u32,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<ForwardOutcome, TransportError> {
        let channel = self
            .channels
            .get(&node)
            .ok_or(TransportError::UnknownPeer(node))?
            .clone();
        let mut client = Client::new(channel)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
            .max_decoding_message_size(MAX_MESSAGE_BYTES);
        let call = client.execute(ForwardRequest { shard, payload });
        let reply = tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| TransportError::Timeout {
                node,
                timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            })?
            .map_err(|status| TransportError::Rpc { node, status })?
            .into_inner();
        Ok(match reply.outcome {
            Some(forward_reply::Outcome::Reply(bytes)) => ForwardOutcome::Reply(bytes),
            Some(forward_reply::Outcome::NotLeader(leader)) => ForwardOutcome::NotLeader(leader),
            Some(forward_reply::Outcome::Retry(why)) => ForwardOutcome::Retry(why),
            None => ForwardOutcome::Retry("empty reply".into()),
        })
    }
}
