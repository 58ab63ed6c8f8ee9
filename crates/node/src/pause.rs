//! CLIENT PAUSE: this node holds its clients' commands (writes only, or
//! every command) until a deadline or CLIENT UNPAUSE, as Redis does. A
//! held command waits before it starts; nothing already running stops.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Notify;

#[derive(Default)]
pub struct Pause {
    /// Whether a pause may be in effect (the common case reads only this).
    active: AtomicBool,
    /// Until when, and whether only writes are held.
    until: Mutex<Option<(Instant, bool)>>,
    changed: Notify,
}

impl Pause {
    /// Pauses for `ms`. A pause already in effect is extended, never
    /// shortened, and holding every command beats holding writes.
    pub fn pause(&self, ms: u64, writes_only: bool) {
        // A pause too long to represent lasts a century (until UNPAUSE).
        let end = Instant::now()
            .checked_add(Duration::from_millis(ms))
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600));
        let mut until = self.until.lock();
        *until = Some(match *until {
            Some((old_end, old_writes)) if old_end > Instant::now() => {
                (old_end.max(end), old_writes && writes_only)
            }
            _ => (end, writes_only),
        });
        self.active.store(true, Ordering::Release);
        drop(until);
        self.changed.notify_waiters();
    }

    pub fn unpause(&self) {
        *self.until.lock() = None;
        self.active.store(false, Ordering::Release);
        self.changed.notify_waiters();
    }

    /// Resolves once a command (a write or not) may run.
    pub async fn wait(&self, is_write: bool) {
        while self.active.load(Ordering::Acquire) {
            let changed = self.changed.notified();
            let Some((end, writes_only)) = *self.until.lock() else {
                return;
            };
            if Instant::now() >= end || (writes_only && !is_write) {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep_until(end.into()) => {}
                () = changed => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_wait_out_a_write_pause_and_reads_do_not() {
        let pause = Pause::default();
        pause.pause(150, true);
        let began = Instant::now();
        pause.wait(false).await;
        assert!(began.elapsed() < Duration::from_millis(100));
        pause.wait(true).await;
        assert!(began.elapsed() >= Duration::from_millis(150));
    }

    #[tokio::test]
    async fn unpause_releases_waiting_commands() {
        let pause = std::sync::Arc::new(Pause::default());
        pause.pause(60_000, false);
        let waiter = {
            let pause = pause.clone();
            tokio::spawn(async move { pause.wait(false).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished());
        pause.unpause();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("released")
            .expect("joined");
    }
}
