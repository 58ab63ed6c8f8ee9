//! The inbound step queue of one engine: bounded at
//! [`RaftLimits::step_queue_capacity`](crate::RaftLimits::step_queue_capacity),
//! never blocking the sender, counting every refusal.

use std::sync::atomic::{AtomicU64, Ordering};

use elastickv_store::ShardId;
use raft::prelude::Message;

use crate::error::StepError;
use crate::metrics;

pub(crate) struct StepLane {
    shard: ShardId,
    tx: flume::Sender<Message>,
    capacity: usize,
    refused: AtomicU64,
}

impl StepLane {
    pub(crate) fn new(shard: ShardId, capacity: usize) -> (StepLane, flume::Receiver<Message>) {
        let (tx, rx) = flume::bounded(capacity);
        (
            StepLane {
                shard,
                tx,
                capacity,
                refused: AtomicU64::new(0),
            },
            rx,
        )
    }

    /// Queues `msg`, or refuses it at once when the queue is full.
    pub(crate) fn try_push(&self, msg: Message) -> Result<(), StepError> {
        match self.tx.try_send(msg) {
            Ok(()) => Ok(()),
            Err(flume::TrySendError::Full(_)) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                metrics::step_queue_full(self.shard);
                Err(StepError::QueueFull {
                    shard: self.shard,
                    capacity: self.capacity,
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

    fn lane_for(inflight: &str) -> (StepLane, flume::Receiver<Message>) {
        let (limits, _) = RaftLimits::resolve(&LimitsConfig::default(), |var| {
            (var == ENV_MAX_INFLIGHT_MSGS).then(|| inflight.to_string())
        });
        StepLane::new(7, limits.step_queue_capacity())
    }

    #[test]
    fn full_queue_refuses_without_blocking_and_counts() {
        let (lane, rx) = lane_for("300");
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
        let (lane, _rx) = lane_for("4");
        assert_eq!(lane.capacity(), STEP_QUEUE_FLOOR);
        for _ in 0..STEP_QUEUE_FLOOR {
            lane.try_push(Message::default()).unwrap();
        }
        assert!(lane.try_push(Message::default()).is_err());
    }

    #[test]
    fn stopped_engine_is_reported() {
        let (lane, rx) = lane_for("1");
        drop(rx);
        assert_eq!(lane.try_push(Message::default()), Err(StepError::Stopped));
        assert_eq!(lane.refused(), 0);
    }
}
