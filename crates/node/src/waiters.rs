//! Clients blocked on keys (BLPOP and kin), woken when a key they wait on
//! is written on this node.
//!
//! Every node applies every shard's log, so a push through any node is
//! applied here too: applying a write that stores a key's record
//! ([`crate::keyspace::ApplyKeyspace`]) wakes the longest-waiting client
//! blocked on that key, which then tries its pop again as a replicated
//! write. One client at a time per key is woken, in the order they
//! blocked on this node; a client that stops waiting hands the turn on.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

#[derive(Default)]
pub struct KeyWaiters {
    /// Registrations alive: applying writes checks only this when no one
    /// waits.
    waiting: AtomicUsize,
    next_id: AtomicU64,
    /// Per key, its waiters in the order they blocked.
    by_key: Mutex<HashMap<Bytes, Vec<Waiter>>>,
}

/// A registration's id and the signal that wakes it.
type Waiter = (u64, Arc<Notify>);

/// One blocked client's wait on its keys; dropping it stops the wait.
pub struct Registration {
    registry: Arc<KeyWaiters>,
    id: u64,
    keys: Vec<Bytes>,
    notify: Arc<Notify>,
}

impl KeyWaiters {
    /// Starts waiting on `keys`. A write to one of them between now and
    /// [`Registration::changed`] is not missed.
    pub fn register(self: &Arc<Self>, keys: &[Bytes]) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let notify = Arc::new(Notify::new());
        let mut by_key = self.by_key.lock();
        let mut unique: Vec<Bytes> = Vec::with_capacity(keys.len());
        for key in keys {
            if unique.contains(key) {
                continue;
            }
            unique.push(key.clone());
            by_key
                .entry(key.clone())
                .or_default()
                .push((id, notify.clone()));
        }
        let now = self.waiting.fetch_add(1, Ordering::Relaxed) + 1;
        crate::metrics::blocked_clients(now);
        Registration {
            registry: self.clone(),
            id,
            keys: unique,
            notify,
        }
    }

    /// How many clients are blocked (INFO's `blocked_clients`).
    pub fn blocked(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// A write stored `key`'s record: wakes its longest waiter.
    pub fn touched(&self, key: &[u8]) {
        if self.waiting.load(Ordering::Relaxed) == 0 {
            return;
        }
        if let Some((_, notify)) = self.by_key.lock().get(key).and_then(|w| w.first()) {
            notify.notify_one();
        }
    }
}

impl Registration {
    /// Resolves once a key waited on may have changed.
    pub async fn changed(&self) {
        self.notify.notified().await;
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut by_key = self.registry.by_key.lock();
        for key in &self.keys {
            let Some(waiters) = by_key.get_mut(key) else {
                continue;
            };
            let was_first = waiters.first().is_some_and(|(id, _)| *id == self.id);
            waiters.retain(|(id, _)| *id != self.id);
            // Hand the turn on: this client may have taken a wake-up it
            // will not use.
            if was_first && let Some((_, next)) = waiters.first() {
                next.notify_one();
            }
            if waiters.is_empty() {
                by_key.remove(key);
            }
        }
        let now = self
            .registry
            .waiting
            .fetch_sub(1, Ordering::Relaxed)
            .saturating_sub(1);
        crate::metrics::blocked_clients(now);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn the_longest_waiter_is_woken_and_hands_its_turn_on() {
        let registry = Arc::new(KeyWaiters::default());
        let first = registry.register(&[Bytes::from_static(b"k")]);
        let second = registry.register(&[Bytes::from_static(b"k"), Bytes::from_static(b"j")]);
        registry.touched(b"k");
        tokio::time::timeout(Duration::from_secs(1), first.changed())
            .await
            .expect("first woken");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), second.changed())
                .await
                .is_err(),
            "second woken out of turn"
        );
        drop(first);
        tokio::time::timeout(Duration::from_secs(1), second.changed())
            .await
            .expect("the turn passed on");
        registry.touched(b"j");
        tokio::time::timeout(Duration::from_secs(1), second.changed())
            .await
            .expect("woken through its other key");
        drop(second);
        assert!(registry.by_key.lock().is_empty());
        registry.touched(b"k");
    }
}
