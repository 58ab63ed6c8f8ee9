//! Server counters for INFO: stats, commandstats and errorstats.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use elastickv_resp::Reply;
use parking_lot::Mutex;

#[derive(Debug)]
pub struct Stats {
    pub connections_received: AtomicU64,
    pub connections_rejected: AtomicU64,
    pub commands_processed: AtomicU64,
    pub expired_keys: AtomicU64,
    pub error_replies: AtomicU64,
    /// Per command (`name` or `container|sub`), as INFO commandstats
    /// reports them: one set of counters per command of the table, made
    /// at start-up, so counting takes no lock.
    commands: HashMap<&'static str, CommandCounters>,
    /// Error replies by their code (the first word: `ERR`, `WRONGTYPE`).
    errors: Mutex<BTreeMap<String, u64>>,
}

#[derive(Debug, Default)]
struct CommandCounters {
    calls: AtomicU64,
    usec: AtomicU64,
    rejected_calls: AtomicU64,
    failed_calls: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        let names = elastickv_redis::table::COMMANDS
            .iter()
            .flat_map(|spec| std::iter::once(*spec).chain(spec.subcommands.iter()))
            .map(|spec| (spec.name, CommandCounters::default()))
            .collect();
        Stats {
            connections_received: AtomicU64::default(),
            connections_rejected: AtomicU64::default(),
            commands_processed: AtomicU64::default(),
            expired_keys: AtomicU64::default(),
            error_replies: AtomicU64::default(),
            commands: names,
            errors: Mutex::default(),
        }
    }
}

/// One command's counters, as read for INFO.
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
        crate::metrics::command(command, took, reply.is_error());
        if let Some(c) = self.commands.get(command) {
            Stats::add(&c.calls, 1);
            Stats::add(&c.usec, u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
            if reply.is_error() {
                Stats::add(&c.failed_calls, 1);
            }
        }
    }

    /// `command` was refused with `reply` before it ran.
    pub fn command_rejected(&self, command: &'static str, reply: &Reply) {
        self.count_reply(reply);
        if let Some(c) = self.commands.get(command) {
            Stats::add(&c.rejected_calls, 1);
        }
    }

    /// The commands that were called or refused at least once, by name.
    pub fn commands(&self) -> BTreeMap<&'static str, CommandStats> {
        self.commands
            .iter()
            .map(|(&name, c)| {
                let stats = CommandStats {
                    calls: Stats::get(&c.calls),
                    usec: Stats::get(&c.usec),
                    rejected_calls: Stats::get(&c.rejected_calls),
                    failed_calls: Stats::get(&c.failed_calls),
                };
                (name, stats)
            })
            .filter(|(_, s)| s.calls + s.rejected_calls + s.failed_calls > 0)
            .collect()
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
        for c in self.commands.values() {
            for counter in [&c.calls, &c.usec, &c.rejected_calls, &c.failed_calls] {
                counter.store(0, Ordering::Relaxed);
            }
        }
        self.errors.lock().clear();
    }
}
