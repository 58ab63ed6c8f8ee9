//! Linearizable reads of one shard: the readers waiting for a ReadIndex,
//! the requests out, and the confirmed reads waiting for apply.
//!
//! Reads that arrive in one round share one ReadIndex request. A request's
//! context names this node, this incarnation of the engine (a random
//! nonce) and a counter, so no two requests anywhere in the cluster carry
//! the same context: raft-rs keeps only the first of two pending requests
//! with equal contexts and silently drops the other.
//!
//! A follower's request can vanish without an answer: the leader it went
//! to is gone, a message was lost, or a newly elected leader dropped it
//! because it had not yet committed an entry of its term (raft-rs 0.7 does
//! that silently). The follower asks again, with a new context, as soon as
//! it sees the leader commit in its term, and otherwise after a retry
//! interval (two heartbeats); readers give up only after the read timeout,
//! counted from when they first asked.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::error::ProposeError;

/// Where a linearizable read may be served from: the replica's applied
/// state when the read was let through (at or past its read index).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadPoint {
    pub applied_index: u64,
    /// The state machine's clock at that index (see
    /// `elastickv_store::ApplyState::time_ms`).
    pub time_ms: u64,
}

pub(crate) type ReadWaiter = oneshot::Sender<Result<ReadPoint, ProposeError>>;

/// Bytes of a request context: node id, incarnation nonce, counter.
const CTX_LEN: usize = 24;

/// One ReadIndex request out.
struct Issued {
    /// When this request went out (a lease counts from here).
    sent_at: Instant,
    /// When its oldest reader first asked (the read timeout counts from
    /// here, across retries).
    started_at: Instant,
    /// Empty for a lease renewal with no reader waiting.
    waiters: Vec<ReadWaiter>,
}

/// A request to send: its context, for `RawNode::read_index`.
pub(crate) struct Request {
    pub(crate) ctx: Vec<u8>,
}

/// A request the leader confirmed.
pub(crate) struct Confirmed {
    /// When the confirmed request went out.
    pub(crate) sent_at: Instant,
}

pub(crate) struct ReadQueue {
    /// Node id and incarnation nonce: the first 16 bytes of every context.
    prefix: [u8; 16],
    next: u64,
    /// Readers that arrived since the last request, with the time the
    /// oldest of them first asked.
    new: Vec<ReadWaiter>,
    new_since: Option<Instant>,
    /// Requests out, by counter.
    issued: BTreeMap<u64, Issued>,
    /// Reads with a confirmed read index, waiting for apply to reach it.
    confirmed: VecDeque<(u64, Vec<ReadWaiter>)>,
    read_timeout: Duration,
    retry_after: Duration,
}

impl ReadQueue {
    pub(crate) fn new(node_id: u64, read_timeout: Duration, retry_after: Duration) -> ReadQueue {
        let mut prefix = [0u8; 16];
        prefix[..8].copy_from_slice(&node_id.to_be_bytes());
        prefix[8..].copy_from_slice(&rand::random::<u64>().to_be_bytes());
        ReadQueue {
            prefix,
            next: 0,
            new: Vec::new(),
            new_since: None,
            issued: BTreeMap::new(),
            confirmed: VecDeque::new(),
            read_timeout,
            retry_after,
        }
    }

    /// A reader for this round's request.
    pub(crate) fn push(&mut self, waiter: ReadWaiter, now: Instant) {
        self.new.push(waiter);
        self.new_since.get_or_insert(now);
    }

    pub(crate) fn has_new(&self) -> bool {
        !self.new.is_empty()
    }

    /// A read the leader may serve at `index` without asking anyone (its
    /// lease holds).
    pub(crate) fn serve_at(&mut self, index: u64, waiter: ReadWaiter) {
        self.confirmed.push_back((index, vec![waiter]));
    }

    /// Registers a request for the readers that arrived (none for a lease
    /// renewal) and returns its context.
    pub(crate) fn issue(&mut self, now: Instant) -> Request {
        let counter = self.next;
        self.next += 1;
        self.issued.insert(
            counter,
            Issued {
                sent_at: now,
                started_at: self.new_since.take().unwrap_or(now),
                waiters: std::mem::take(&mut self.new),
            },
        );
        let mut ctx = Vec::with_capacity(CTX_LEN);
        ctx.extend_from_slice(&self.prefix);
        ctx.extend_from_slice(&counter.to_be_bytes());
        Request { ctx }
    }

    /// Moves the readers of requests that went unanswered back to the
    /// queue, to be asked again with a new context: all of them if
    /// `everything`, otherwise those out for `retry_after`.
    pub(crate) fn requeue_unanswered(&mut self, now: Instant, everything: bool) {
        let stale: Vec<u64> = self
            .issued
            .iter()
            .filter(|(_, r)| {
                !r.waiters.is_empty()
                    && (everything || now.duration_since(r.sent_at) >= self.retry_after)
            })
            .map(|(&counter, _)| counter)
            .collect();
        for counter in stale {
            if let Some(read) = self.issued.remove(&counter) {
                self.new.extend(read.waiters);
                let since = self.new_since.get_or_insert(read.started_at);
                *since = (*since).min(read.started_at);
            }
        }
    }

    /// Fails readers that have waited longer than the read timeout since
    /// they first asked, as dropped (the caller may retry).
    pub(crate) fn expire(&mut self, now: Instant, err: &ProposeError) {
        let timeout = self.read_timeout;
        let expired = |started_at: Instant| now.duration_since(started_at) > timeout;
        let lost: Vec<u64> = self
            .issued
            .iter()
            .filter(|(_, r)| expired(r.started_at))
            .map(|(&counter, _)| counter)
            .collect();
        for counter in lost {
            if let Some(read) = self.issued.remove(&counter) {
                fail(read.waiters, err);
            }
        }
        if self.new_since.is_some_and(expired) {
            self.new_since = None;
            fail(std::mem::take(&mut self.new), err);
        }
    }

    /// The leader confirmed the request with context `ctx` at read index
    /// `index`. `None` if the context is not one of ours (another node's,
    /// or an earlier incarnation's) or was already given up on.
    pub(crate) fn confirm(&mut self, ctx: &[u8], index: u64) -> Option<Confirmed> {
        let counter = ctx
            .strip_prefix(self.prefix.as_slice())
            .and_then(|rest| <[u8; 8]>::try_from(rest).ok())
            .map(u64::from_be_bytes)?;
        let read = self.issued.remove(&counter)?;
        if !read.waiters.is_empty() {
            self.confirmed.push_back((index, read.waiters));
        }
        Some(Confirmed {
            sent_at: read.sent_at,
        })
    }

    /// Lets through every confirmed read whose index is applied: hands
    /// each of their waiters to `answer`.
    pub(crate) fn release(&mut self, applied: ReadPoint, mut answer: impl FnMut(ReadWaiter)) {
        while self
            .confirmed
            .front()
            .is_some_and(|(index, _)| *index <= applied.applied_index)
        {
            if let Some((_, waiters)) = self.confirmed.pop_front() {
                waiters.into_iter().for_each(&mut answer);
            }
        }
    }

    /// Fails every read not yet confirmed (this node stopped being the
    /// leader it was, or lost the leader it asked).
    pub(crate) fn fail_unconfirmed(&mut self, err: &ProposeError) {
        self.new_since = None;
        fail(std::mem::take(&mut self.new), err);
        for (_, read) in std::mem::take(&mut self.issued) {
            fail(read.waiters, err);
        }
    }

    /// Fails every read, confirmed or not (shutdown).
    pub(crate) fn fail_all(&mut self, err: &ProposeError) {
        self.fail_unconfirmed(err);
        for (_, waiters) in std::mem::take(&mut self.confirmed) {
            fail(waiters, err);
        }
    }
}

fn fail(waiters: Vec<ReadWaiter>, err: &ProposeError) {
    for w in waiters {
        let _ = w.send(Err(err.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiter() -> (
        ReadWaiter,
        oneshot::Receiver<Result<ReadPoint, ProposeError>>,
    ) {
        oneshot::channel()
    }

    const DROPPED: ProposeError = ProposeError::Dropped { shard: 0 };

    #[test]
    fn contexts_differ_across_nodes_and_incarnations() {
        let now = Instant::now();
        let mut a = ReadQueue::new(1, Duration::from_secs(2), Duration::from_millis(200));
        let mut b = ReadQueue::new(2, Duration::from_secs(2), Duration::from_millis(200));
        let mut a_again = ReadQueue::new(1, Duration::from_secs(2), Duration::from_millis(200));
        let ctxs = [a.issue(now).ctx, b.issue(now).ctx, a_again.issue(now).ctx];
        assert_ne!(ctxs[0], ctxs[1]);
        assert_ne!(ctxs[0], ctxs[2]);
        // Each queue recognises only its own.
        assert!(b.confirm(&ctxs[0], 1).is_none());
        assert!(a_again.confirm(&ctxs[0], 1).is_none());
        assert!(a.confirm(&ctxs[0], 1).is_some());
        assert!(a.confirm(&ctxs[0], 1).is_none(), "answered once");
        assert!(a.confirm(b"garbage", 1).is_none());
    }

    #[test]
    fn unanswered_reads_are_asked_again_and_time_out_from_their_first_ask() {
        let start = Instant::now();
        let mut q = ReadQueue::new(1, Duration::from_secs(2), Duration::from_millis(200));
        let (w, mut rx) = waiter();
        q.push(w, start);
        let first = q.issue(start).ctx;
        // Not yet due for a retry.
        q.requeue_unanswered(start + Duration::from_millis(100), false);
        assert!(!q.has_new());
        q.requeue_unanswered(start + Duration::from_millis(250), false);
        assert!(q.has_new());
        let second = q.issue(start + Duration::from_millis(250)).ctx;
        assert_ne!(first, second);
        // The first request's late answer is ignored; the second's counts.
        assert!(q.confirm(&first, 7).is_none());
        // Expiry counts from the first ask, not from the retry.
        q.expire(start + Duration::from_millis(2100), &DROPPED);
        assert_eq!(rx.try_recv(), Ok(Err(DROPPED)));
        assert!(q.confirm(&second, 7).is_none());
    }

    #[test]
    fn confirmed_reads_wait_for_apply() {
        let now = Instant::now();
        let mut q = ReadQueue::new(1, Duration::from_secs(2), Duration::from_millis(200));
        let (w, mut rx) = waiter();
        q.push(w, now);
        let ctx = q.issue(now).ctx;
        assert!(q.confirm(&ctx, 10).is_some());
        let at = |applied_index| ReadPoint {
            applied_index,
            time_ms: 5,
        };
        let answer = |w: ReadWaiter| {
            let _ = w.send(Ok(at(11)));
        };
        q.release(at(9), answer);
        assert!(rx.try_recv().is_err());
        q.release(at(11), answer);
        assert_eq!(rx.try_recv(), Ok(Ok(at(11))));
    }
}
