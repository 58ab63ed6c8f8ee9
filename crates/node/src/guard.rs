//! The write guard: before the data directory's disk fills up, or the
//! stored data outgrows `maxmemory`, writes are refused with Redis's `-OOM`
//! error, so a shard never meets a full disk in the middle of applying its
//! log (which would stop the node). Reads, deletions and every command
//! Redis does not flag `denyoom` keep working, so clients can make room.
//!
//! A task samples the store's size (SST files and memtables) and the
//! disk's free space a few times a second; commands read the verdict from
//! one atomic.

use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

/// How often the sizes are sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);

const OPEN: u8 = 0;
const OVER_MAXMEMORY: u8 = 1;
const LOW_DISK: u8 = 2;

/// Redis's words when writes are refused for memory.
pub const OOM_MAXMEMORY: &str = "OOM command not allowed when used memory > 'maxmemory'.";

/// The same refusal for the disk.
pub const OOM_DISK: &str =
    "OOM command not allowed when free disk space on the data directory < 'min_free_disk_bytes'.";

/// Whether writes are refused now, and why.
pub struct WriteGuard {
    /// Most bytes of stored data (SST files and memtables); 0: no limit.
    maxmemory: u64,
    /// Least free bytes left on the data directory's file system.
    min_free_disk: u64,
    state: AtomicU8,
}

impl WriteGuard {
    pub fn new(maxmemory: u64, min_free_disk: u64) -> WriteGuard {
        WriteGuard {
            maxmemory,
            min_free_disk,
            state: AtomicU8::new(OPEN),
        }
    }

    /// The error a denied write gets now, if writes are refused.
    pub fn refusal(&self) -> Option<&'static str> {
        match self.state.load(Ordering::Relaxed) {
            OVER_MAXMEMORY => Some(OOM_MAXMEMORY),
            LOW_DISK => Some(OOM_DISK),
            _ => None,
        }
    }

    /// Decides from a sample: `stored` bytes of data, `free_disk` bytes
    /// available (unknown: not judged).
    pub fn judge(&self, stored: u64, free_disk: Option<u64>) {
        let state = if free_disk.is_some_and(|free| free < self.min_free_disk) {
            LOW_DISK
        } else if self.maxmemory > 0 && stored > self.maxmemory {
            OVER_MAXMEMORY
        } else {
            OPEN
        };
        let before = self.state.swap(state, Ordering::Relaxed);
        if before != state {
            match state {
                OPEN => {
                    tracing::info!("writes accepted again: back under the write guard's limits")
                }
                OVER_MAXMEMORY => tracing::warn!(
                    stored_bytes = stored,
                    maxmemory = self.maxmemory,
                    "stored data is over maxmemory: writes are refused with -OOM until data is deleted"
                ),
                _ => tracing::warn!(
                    free_disk_bytes = free_disk.unwrap_or(0),
                    min_free_disk_bytes = self.min_free_disk,
                    "the data directory's disk is nearly full: writes are refused with -OOM until \
                     space is freed"
                ),
            }
        }
        metrics::gauge!("elastickv_write_guard_refusing").set(f64::from(state != OPEN));
    }
}

/// The store's data in bytes: SST files and memtables, all column
/// families.
pub fn stored_bytes(store: &elastickv_store::Store) -> u64 {
    [
        "rocksdb.total-sst-files-size",
        "rocksdb.cur-size-all-mem-tables",
    ]
    .iter()
    .flat_map(|property| store.property_by_column_family(property))
    .map(|(_, bytes)| bytes)
    .sum()
}

/// Free bytes for this process on the file system holding `dir`.
pub fn free_disk(dir: &Path) -> Option<u64> {
    fs4::available_space(dir).ok()
}

/// Samples and judges until shutdown.
pub async fn watch(
    state: std::sync::Arc<crate::NodeState>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        let stored = stored_bytes(&state.router.backend().store);
        let free = free_disk(&state.config.data_dir);
        state.guard.judge(stored, free);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_refused_past_either_limit_and_accepted_again_below() {
        let guard = WriteGuard::new(1000, 500);
        guard.judge(10, Some(10_000));
        assert_eq!(guard.refusal(), None);
        guard.judge(1001, Some(10_000));
        assert_eq!(guard.refusal(), Some(OOM_MAXMEMORY));
        guard.judge(10, Some(499));
        assert_eq!(guard.refusal(), Some(OOM_DISK));
        guard.judge(10, None);
        assert_eq!(guard.refusal(), None);
        let unlimited = WriteGuard::new(0, 0);
        unlimited.judge(u64::MAX, Some(0));
        assert_eq!(unlimited.refusal(), None);
    }
}
