//! Time. Reads judge expiry by the wall clock; proposals carry a timestamp
//! that never goes backwards on this node, so a clock step back cannot make
//! a later write look older than an earlier one.

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
}
