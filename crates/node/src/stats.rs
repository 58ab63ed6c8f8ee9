//! Server counters for INFO: stats, commandstats, errorstats and
//! latencystats.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use elastickv_resp::Reply;
use hdrhistogram::Histogram;
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
    /// Latencies in nanoseconds, made at the command's first call (as
    /// Redis allocates its histograms); a command has its own lock, so
    /// only concurrent calls of one command ever wait for each other.
    latency: Mutex<Option<Histogram<u64>>>,
    /// Its Prometheus families, from its first call on.
    prometheus: OnceLock<crate::metrics::CommandMetrics>,
}

/// Latencies Redis tracks (nanoseconds, clamped to this range) and the
/// precision it keeps: `LATENCY_HISTOGRAM_*` in Redis's server.h.
const LATENCY_MIN_NS: u64 = 1;
const LATENCY_MAX_NS: u64 = 1_000_000_000;
const LATENCY_SIGNIFICANT_DIGITS: u8 = 2;

/// The percentiles INFO latencystats prints (Redis's default
/// `latency-tracking-info-percentiles`), with their names.
pub const LATENCY_PERCENTILES: [(&str, f64); 3] = [("50", 50.0), ("99", 99.0), ("99.9", 99.9)];

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
        if let Some(c) = self.commands.get(command) {
            c.prometheus
                .get_or_init(|| crate::metrics::CommandMetrics::new(command))
                .record(took, reply.is_error());
            Stats::add(&c.calls, 1);
            Stats::add(&c.usec, u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
            if reply.is_error() {
                Stats::add(&c.failed_calls, 1);
            }
            let ns = u64::try_from(took.as_nanos())
                .unwrap_or(u64::MAX)
                .clamp(LATENCY_MIN_NS, LATENCY_MAX_NS);
            let mut latency = c.latency.lock();
            if latency.is_none() {
                *latency = Histogram::new_with_bounds(
                    LATENCY_MIN_NS,
                    LATENCY_MAX_NS,
                    LATENCY_SIGNIFICANT_DIGITS,
                )
                .ok();
            }
            if let Some(histogram) = latency.as_mut() {
                // In range by the clamp above.
                let _ = histogram.record(ns);
            }
        }
    }

    /// Per command that ran since start-up (or the last reset), by name:
    /// its latency at each of [`LATENCY_PERCENTILES`], in microseconds.
    pub fn latency_percentiles(&self) -> BTreeMap<&'static str, [f64; 3]> {
        self.commands
            .iter()
            .filter_map(|(&name, c)| {
                let latency = c.latency.lock();
                let histogram = latency.as_ref()?;
                let at =
                    |percentile: f64| histogram.value_at_percentile(percentile) as f64 / 1000.0;
                Some((name, LATENCY_PERCENTILES.map(|(_, p)| at(p))))
            })
            .collect()
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
            *c.latency.lock() = None;
        }
        self.errors.lock().clear();
    }
}
