//! Time. A shard's "now" is its replicated clock (see
//! `elastickv_redis::replicated`); wall clocks only propose values for it.
//! This node's proposals are stamped with its wall clock, but never below
//! a timestamp it stamped before nor below the shard clock it has applied,
//! so a clock step back cannot make a later write look older than an
//! earlier one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Unix milliseconds now.
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[derive(Debug, Default)]
pub struct ProposalClock {
    last: AtomicU64,
}

impl ProposalClock {
    /// The wall clock, or the last timestamp handed out if that is later.
    pub fn now_ms(&self) -> u64 {
        let now = wall_ms();
        let previous = self.last.fetch_max(now, Ordering::Relaxed);
        previous.max(now)
    }

    /// A timestamp for a proposal to a shard whose applied clock (here) is
    /// `shard_ms`.
    pub fn stamp(&self, shard_ms: u64) -> u64 {
        self.now_ms().max(shard_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_never_go_below_the_shard_clock_or_earlier_stamps() {
        let clock = ProposalClock::default();
        let ahead = wall_ms() + 60_000;
        assert_eq!(clock.stamp(ahead), ahead);
        let first = clock.now_ms();
        assert!(clock.now_ms() >= first);
        assert!(clock.stamp(0) >= first);
    }
}
