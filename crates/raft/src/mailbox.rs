//! The inbound step queues of one engine: appends and their responses in
//! a queue bounded at
//! [`RaftLimits::step_queue_capacity`](crate::RaftLimits::step_queue_capacity),
//! heartbeats, votes and ReadIndex traffic in a separate priority queue so
//! a backlog of appends cannot starve them. Pushing never blocks; every
//! refusal is counted and returned to the sender.

use std::sync::atomic::{AtomicU64, Ordering};

use elastickv_store::ShardId;
use raft::prelude::Message;

use crate::error::StepError;
use crate::metrics;
use crate::outbox::is_priority;

/// Capacity of the inbound priority queue.
pub const PRIORITY_STEP_CAPACITY: usize = 256;

pub(crate) struct StepLane {
    shard: ShardId,
    tx: flume::Sender<Message>,
    priority_tx: flume::Sender<Message>,
    capacity: usize,
    refused: AtomicU64,
}

impl StepLane {
    /// The lane, and the receivers of its normal and priority queues.
    pub(crate) fn new(
        shard: ShardId,
        capacity: usize,
    ) -> (StepLane, flume::Receiver<Message>, flume::Receiver<Message>) {
        let (tx, rx) = flume::bounded(capacity);
        let (priority_tx, priority_rx) = flume::bounded(PRIORITY_STEP_CAPACITY);
        (
            StepLane {
                shard,
                tx,
                priority_tx,
                capacity,
                refused: AtomicU64::new(0),
            },
            rx,
            priority_rx,
        )
    }

    /// Queues `msg`, or refuses it at once when its queue is full.
    pub(crate) fn try_push(&self, msg: Message) -> Result<(), StepError> {
        let (tx, capacity) = if is_priority(&msg) {
            (&self.priority_tx, PRIORITY_STEP_CAPACITY)
        } else {
            (&self.tx, self.capacity)
        };
        match tx.try_send(msg) {
            Ok(()) => Ok(()),
            Err(flume::TrySendError::Full(_)) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                metrics::step_queue_full(self.shard);
                Err(StepError::QueueFull {
                    shard: self.shard,
                    capacity,
                })
            }
            Err(flume::TrySendError::Disconnected(_)) => Err(StepError::Stopped),
        }
    }

    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{ENV_MAX_INFLIGHT_MSGS, LimitsConfig, RaftLimits, STEP_QUEUE_FLOOR};

    fn lane_for(inflight: &str) -> (StepLane, flume::Receiver<Message>, flume::Receiver<Message>) {
        let (limits, _) = RaftLimits::resolve(&LimitsConfig::default(), |var| {
            (var == ENV_MAX_INFLIGHT_MSGS).then(|| inflight.to_string())
        });
        StepLane::new(7, limits.step_queue_capacity())
    }

    #[test]
    fn full_queue_refuses_without_blocking_and_counts() {
        let (lane, rx, _priority) = lane_for("300");
        assert_eq!(lane.capacity(), 300);
        for _ in 0..300 {
            lane.try_push(Message::default()).unwrap();
        }
        for n in 1..=3 {
            assert_eq!(
                lane.try_push(Message::default()),
                Err(StepError::QueueFull {
                    shard: 7,
                    capacity: 300
                })
            );
            assert_eq!(lane.refused(), n);
        }
        // Draining makes room again.
        rx.try_recv().unwrap();
        lane.try_push(Message::default()).unwrap();
        assert_eq!(lane.refused(), 3);
    }

    #[test]
    fn small_window_still_gets_the_floor() {
        let (lane, _rx, _priority) = lane_for("4");
        assert_eq!(lane.capacity(), STEP_QUEUE_FLOOR);
        for _ in 0..STEP_QUEUE_FLOOR {
            lane.try_push(Message::default()).unwrap();
        }
        assert!(lane.try_push(Message::default()).is_err());
    }

    #[test]
    fn priority_traffic_is_not_starved_by_appends() {
        let (lane, _rx, priority_rx) = lane_for("256");
        let append = || {
            let mut m = Message::default();
            m.set_msg_type(raft::prelude::MessageType::MsgAppend);
            m
        };
        for _ in 0..256 {
            lane.try_push(append()).unwrap();
        }
        assert!(matches!(
            lane.try_push(append()),
            Err(StepError::QueueFull { .. })
        ));
        let mut heartbeat = Message::default();
        heartbeat.set_msg_type(raft::prelude::MessageType::MsgHeartbeat);
        lane.try_push(heartbeat).unwrap();
        assert_eq!(priority_rx.len(), 1);
    }

    #[test]
    fn stopped_engine_is_reported() {
        let (lane, rx, priority) = lane_for("1");
        drop(rx);
        drop(priority);
        assert_eq!(lane.try_push(Message::default()), Err(StepError::Stopped));
        assert_eq!(lane.refused(), 0);
    }
}
