//! This node's subscribers: who is subscribed to which channels, patterns
//! and shard channels, and the bounded outboxes messages are queued on.
//!
//! Messages arrive by applying `Publish` entries of the raft log (every
//! node applies every shard's log), so each node serves its own
//! subscribers. A subscriber whose outbox is full (it does not read as
//! fast as messages come: more than the configured bytes, or
//! [`OUTBOX_MESSAGES`] messages, waiting) is disconnected, as Redis
//! disconnects a client past `client-output-buffer-limit pubsub`: memory
//! never grows without bound.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use elastickv_redis::cmd::pubsub::Kind;
use elastickv_redis::glob;
use elastickv_resp::Reply;
use parking_lot::RwLock;
use tokio::sync::{Notify, mpsc};

/// Messages queued for one subscriber before it is disconnected.
pub const OUTBOX_MESSAGES: usize = 8192;

/// Where a subscriber's messages go, and how to close it when it lags.
#[derive(Clone)]
pub struct Outbox {
    pub messages: mpsc::Sender<Reply>,
    pub kill: Arc<Notify>,
    /// Bytes of messages queued and not yet written to the connection.
    pub queued_bytes: Arc<AtomicUsize>,
    /// Most bytes queued before the subscriber is disconnected.
    pub limit_bytes: usize,
}

/// About how many bytes a message takes on the wire.
pub fn message_bytes(message: &Reply) -> usize {
    match message {
        Reply::Push(items) | Reply::Array(items) => {
            16 + items.iter().map(message_bytes).sum::<usize>()
        }
        Reply::Bulk(b) | Reply::Simple(b) | Reply::Error(b) => 16 + b.len(),
        _ => 16,
    }
}

impl Outbox {
    fn send(&self, message: Reply) -> bool {
        let size = message_bytes(&message);
        let queued = self.queued_bytes.fetch_add(size, Ordering::Relaxed) + size;
        if queued > self.limit_bytes {
            self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            metrics::counter!("elastickv_pubsub_clients_disconnected_total").increment(1);
            self.kill.notify_one();
            return false;
        }
        match self.messages.try_send(message) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
                metrics::counter!("elastickv_pubsub_clients_disconnected_total").increment(1);
                self.kill.notify_one();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
                false
            }
        }
    }

    /// A message left the queue for the connection.
    pub fn taken(&self, message: &Reply) {
        self.queued_bytes
            .fetch_sub(message_bytes(message), Ordering::Relaxed);
    }
}

type Subscribers = HashMap<Bytes, HashMap<u64, Outbox>>;

#[derive(Default)]
pub struct PubSub {
    channels: RwLock<Subscribers>,
    patterns: RwLock<Subscribers>,
    shard_channels: RwLock<Subscribers>,
}

fn bulk(b: &Bytes) -> Reply {
    Reply::Bulk(b.clone())
}

impl PubSub {
    fn table(&self, kind: Kind) -> &RwLock<Subscribers> {
        match kind {
            Kind::Channel => &self.channels,
            Kind::Pattern => &self.patterns,
            Kind::Shard => &self.shard_channels,
        }
    }

    pub fn subscribe(&self, kind: Kind, name: &Bytes, client: u64, outbox: &Outbox) {
        self.table(kind)
            .write()
            .entry(name.clone())
            .or_default()
            .insert(client, outbox.clone());
    }

    pub fn unsubscribe(&self, kind: Kind, name: &[u8], client: u64) {
        let mut table = self.table(kind).write();
        if let Some(subscribers) = table.get_mut(name) {
            subscribers.remove(&client);
            if subscribers.is_empty() {
                table.remove(name);
            }
        }
    }

    /// Hands a message to the subscribers of `channel` (and the patterns
    /// matching it, or with `sharded` the shard channel's); how many got it.
    pub fn publish(&self, channel: &[u8], message: &[u8], sharded: bool) -> usize {
        let channel = Bytes::copy_from_slice(channel);
        let message = Bytes::copy_from_slice(message);
        let mut received = 0;
        if sharded {
            if let Some(subscribers) = self.shard_channels.read().get(&channel) {
                for outbox in subscribers.values() {
                    let push = Reply::Push(vec![
                        Reply::bulk("smessage"),
                        bulk(&channel),
                        bulk(&message),
                    ]);
                    received += usize::from(outbox.send(push));
                }
            }
            return received;
        }
        if let Some(subscribers) = self.channels.read().get(&channel) {
            for outbox in subscribers.values() {
                let push =
                    Reply::Push(vec![Reply::bulk("message"), bulk(&channel), bulk(&message)]);
                received += usize::from(outbox.send(push));
            }
        }
        for (pattern, subscribers) in self.patterns.read().iter() {
            if !glob::matches(pattern, &channel) {
                continue;
            }
            for outbox in subscribers.values() {
                let push = Reply::Push(vec![
                    Reply::bulk("pmessage"),
                    bulk(pattern),
                    bulk(&channel),
                    bulk(&message),
                ]);
                received += usize::from(outbox.send(push));
            }
        }
        received
    }

    /// How many of this node's clients a message to `channel` reaches.
    pub fn receivers(&self, channel: &[u8], sharded: bool) -> usize {
        if sharded {
            return self
                .shard_channels
                .read()
                .get(channel)
                .map_or(0, HashMap::len);
        }
        let direct = self.channels.read().get(channel).map_or(0, HashMap::len);
        let by_pattern: usize = self
            .patterns
            .read()
            .iter()
            .filter(|(pattern, _)| glob::matches(pattern, channel))
            .map(|(_, subscribers)| subscribers.len())
            .sum();
        direct + by_pattern
    }

    /// PUBSUB CHANNELS / SHARDCHANNELS.
    pub fn active(&self, kind: Kind, pattern: Option<&[u8]>) -> Vec<Bytes> {
        self.table(kind)
            .read()
            .keys()
            .filter(|name| pattern.is_none_or(|p| glob::matches(p, name)))
            .cloned()
            .collect()
    }

    /// PUBSUB NUMSUB / SHARDNUMSUB.
    pub fn count(&self, kind: Kind, name: &[u8]) -> usize {
        self.table(kind).read().get(name).map_or(0, HashMap::len)
    }

    /// PUBSUB NUMPAT: pattern subscriptions, over all clients.
    pub fn patterns(&self) -> usize {
        self.patterns.read().values().map(HashMap::len).sum()
    }

    /// A connection ended: it subscribes to nothing any more.
    pub fn remove_client(&self, client: u64) {
        for kind in [Kind::Channel, Kind::Pattern, Kind::Shard] {
            let mut table = self.table(kind).write();
            table.retain(|_, subscribers| {
                subscribers.remove(&client);
                !subscribers.is_empty()
            });
        }
    }
}
