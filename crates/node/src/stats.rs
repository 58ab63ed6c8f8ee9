//! Server counters for INFO: stats, commandstats and errorstats.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use elastickv_resp::Reply;
use parking_lot::Mutex;

#[derive(Debug, Default)]
pub struct Stats {
    pub connections_received: AtomicU64,
    pub connections_rejected: AtomicU64,
    pub commands_processed: AtomicU64,
    pub expired_keys: AtomicU64,
    pub error_replies: AtomicU64,
    /// Per command (`name` or `container|sub`), as INFO commandstats
    /// reports them.
    commands: Mutex<BTreeMap<&'static str, CommandStats>>,
    /// Error replies by their code (the first word: `ERR`, `WRONGTYPE`).
    errors: Mutex<BTreeMap<String, u64>>,
}

/// One command's counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CommandStats {
    /// Executions (whatever they answered).
    pub calls: u64,
    pub usec: u64,
    /// Refused before executing (bad arguments, not authenticated).
    pub rejected_calls: u64,
    /// Executed and answered with an error.
    pub failed_calls: u64,
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Counts an error reply by its code; anything else is ignored.
    pub fn count_reply(&self, reply: &Reply) {
        let Reply::Error(text) = reply else {
            return;
        };
        Stats::add(&self.error_replies, 1);
        let code = text.split(|&b| b == b' ').next().unwrap_or_default();
        let code = String::from_utf8_lossy(code).into_owned();
        *self.errors.lock().entry(code).or_default() += 1;
    }

    /// `command` ran for `took` and answered `reply`.
    pub fn command_done(&self, command: &'static str, took: Duration, reply: &Reply) {
        self.count_reply(reply);
        let mut commands = self.commands.lock();
        let stats = commands.entry(command).or_default();
        stats.calls += 1;
        stats.usec += u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        if reply.is_error() {
            stats.failed_calls += 1;
        }
    }

    /// `command` was refused with `reply` before it ran.
    pub fn command_rejected(&self, command: &'static str, reply: &Reply) {
        self.count_reply(reply);
        self.commands
            .lock()
            .entry(command)
            .or_default()
            .rejected_calls += 1;
    }

    pub fn commands(&self) -> BTreeMap<&'static str, CommandStats> {
        self.commands.lock().clone()
    }

    pub fn errors(&self) -> BTreeMap<String, u64> {
        self.errors.lock().clone()
    }

    pub fn reset(&self) {
        for c in [
            &self.connections_received,
            &self.connections_rejected,
            &self.commands_processed,
            &self.expired_keys,
            &self.error_replies,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        self.commands.lock().clear();
        self.errors.lock().clear();
    }
}
