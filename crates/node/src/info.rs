//! INFO: every section Redis 7.0 prints, in its order and text format,
//! with elastickv's own values where it has them (and Redis's answer for
//! a server without the feature otherwise: no modules, cluster mode off),
//! plus `raft`.

use std::fmt::Write as _;

use bytes::Bytes;
use elastickv_router::Backend as _;

use elastickv_redis::cmd::pubsub::Kind;

use crate::NodeState;
use crate::stats::Stats;

/// Sections in output order, and whether `INFO` without arguments (or
/// with `default`) includes them; `all` and `everything` include all.
const SECTIONS: [(&str, bool); 14] = [
    ("server", true),
    ("clients", true),
    ("memory", true),
    ("persistence", true),
    ("stats", true),
    ("replication", true),
    ("cpu", true),
    ("modules", true),
    ("commandstats", false),
    ("errorstats", true),
    ("latencystats", false),
    ("cluster", true),
    ("keyspace", true),
    ("raft", true),
];

/// The INFO text for the requested section names.
pub fn render(state: &NodeState, requested: &[Bytes]) -> String {
    let is = |r: &Bytes, word: &str| r.eq_ignore_ascii_case(word.as_bytes());
    let all = requested
        .iter()
        .any(|r| is(r, "all") || is(r, "everything"));
    let defaults = requested.is_empty() || requested.iter().any(|r| is(r, "default"));
    let wants = |name: &str, by_default: bool| {
        all || (defaults && by_default)
            || requested
                .iter()
                .any(|r| is(r, name) || (name == "modules" && is(r, "module_list")))
    };
    let mut out = String::new();
    for (name, _) in SECTIONS
        .iter()
        .filter(|(name, by_default)| wants(name, *by_default))
    {
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        match *name {
            "server" => server(state, &mut out),
            "clients" => clients(state, &mut out),
            "memory" => memory(state, &mut out),
            "persistence" => out.push_str("# Persistence\r\nloading:0\r\nasync_loading:0\r\n"),
            "stats" => stats(state, &mut out),
            "replication" => {
                out.push_str("# Replication\r\nrole:master\r\nconnected_slaves:0\r\n");
            }
            "cpu" => cpu(&mut out),
            "modules" => out.push_str("# Modules\r\n"),
            "commandstats" => commandstats(state, &mut out),
            "errorstats" => errorstats(state, &mut out),
            "latencystats" => latencystats(state, &mut out),
            // Clients must not use cluster mode: every node serves every
            // key (routing is elastickv's business, not the client's).
            "cluster" => out.push_str("# Cluster\r\ncluster_enabled:0\r\n"),
            "keyspace" => keyspace(state, &mut out),
            _ => raft(state, &mut out),
        }
    }
    out
}

fn line(out: &mut String, key: &str, value: impl std::fmt::Display) {
    let _ = write!(out, "{key}:{value}\r\n");
}

fn server(state: &NodeState, out: &mut String) {
    out.push_str("# Server\r\n");
    line(out, "redis_version", crate::REDIS_VERSION);
    line(out, "elastickv_version", env!("CARGO_PKG_VERSION"));
    line(out, "redis_mode", "standalone");
    line(out, "os", std::env::consts::OS);
    line(out, "arch_bits", usize::BITS);
    line(out, "multiplexing_api", "epoll");
    line(out, "process_id", std::process::id());
    line(out, "run_id", &state.run_id);
    line(out, "tcp_port", state.redis_addr.port());
    let uptime = state.started.elapsed().as_secs();
    line(out, "uptime_in_seconds", uptime);
    line(out, "uptime_in_days", uptime / 86_400);
    line(out, "hz", 10);
    line(
        out,
        "executable",
        std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
    );
}

fn clients(state: &NodeState, out: &mut String) {
    out.push_str("# Clients\r\n");
    line(out, "connected_clients", state.clients.count());
    line(out, "maxclients", state.config.maxclients);
    line(out, "blocked_clients", state.waiters.blocked());
}

fn memory(state: &NodeState, out: &mut String) {
    // Resident set size from /proc; 0 where /proc is unavailable.
    let rss = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096);
    out.push_str("# Memory\r\n");
    line(out, "used_memory", rss);
    line(out, "used_memory_human", human_bytes(rss));
    line(out, "used_memory_rss", rss);
    let (scripts, libraries, functions) = state.scripts.counts();
    line(out, "number_of_cached_scripts", scripts);
    line(out, "number_of_functions", functions);
    line(out, "number_of_libraries", libraries);
    line(out, "maxmemory", state.config.maxmemory);
    line(out, "maxmemory_policy", "noeviction");
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2}{}", UNITS[unit])
}

fn stats(state: &NodeState, out: &mut String) {
    let s = &state.stats;
    out.push_str("# Stats\r\n");
    line(
        out,
        "total_connections_received",
        Stats::get(&s.connections_received),
    );
    line(
        out,
        "total_commands_processed",
        Stats::get(&s.commands_processed),
    );
    line(
        out,
        "rejected_connections",
        Stats::get(&s.connections_rejected),
    );
    line(out, "expired_keys", Stats::get(&s.expired_keys));
    line(
        out,
        "pubsub_channels",
        state.pubsub.active(Kind::Channel, None).len(),
    );
    line(out, "pubsub_patterns", state.pubsub.patterns());
    line(
        out,
        "pubsub_shardchannels",
        state.pubsub.active(Kind::Shard, None).len(),
    );
    line(out, "total_error_replies", Stats::get(&s.error_replies));
}

/// CPU time of the process and of its main thread, from /proc (zeros where
/// /proc is unavailable); elastickv starts no child processes.
fn cpu(out: &mut String) {
    let times = |path: &str| -> (f64, f64) {
        let Ok(stat) = std::fs::read_to_string(path) else {
            return (0.0, 0.0);
        };
        // Fields after the command name (which may contain spaces), which
        // ends at the last ')': state is field 3, utime 14, stime 15.
        let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // /proc reports in clock ticks of 1/100 s (USER_HZ).
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
                / 100.0
        };
        (ticks(11), ticks(12))
    };
    let (user, sys) = times("/proc/self/stat");
    let (main_user, main_sys) = times(&format!("/proc/self/task/{}/stat", std::process::id()));
    out.push_str("# CPU\r\n");
    let _ = write!(
        out,
        "used_cpu_sys:{sys:.6}\r\nused_cpu_user:{user:.6}\r\n\
         used_cpu_sys_children:0.000000\r\nused_cpu_user_children:0.000000\r\n\
         used_cpu_sys_main_thread:{main_sys:.6}\r\nused_cpu_user_main_thread:{main_user:.6}\r\n"
    );
}

fn commandstats(state: &NodeState, out: &mut String) {
    out.push_str("# Commandstats\r\n");
    for (name, c) in state.stats.commands() {
        let per_call = if c.calls == 0 {
            0.0
        } else {
            c.usec as f64 / c.calls as f64
        };
        let _ = write!(
            out,
            "cmdstat_{name}:calls={},usec={},usec_per_call={per_call:.2},rejected_calls={},failed_calls={}\r\n",
            c.calls, c.usec, c.rejected_calls, c.failed_calls
        );
    }
}

/// Per command, latency percentiles in microseconds, formatted as Redis's
/// `fillPercentileDistributionLatencies` formats them.
fn latencystats(state: &NodeState, out: &mut String) {
    out.push_str("# Latencystats\r\n");
    for (name, values) in state.stats.latency_percentiles() {
        let _ = write!(out, "latency_percentiles_usec_{name}:");
        for (i, ((label, _), value)) in crate::stats::LATENCY_PERCENTILES
            .iter()
            .zip(values)
            .enumerate()
        {
            let separator = if i == 0 { "" } else { "," };
            let _ = write!(out, "{separator}p{label}={value:.3}");
        }
        out.push_str("\r\n");
    }
}

fn errorstats(state: &NodeState, out: &mut String) {
    out.push_str("# Errorstats\r\n");
    for (code, count) in state.stats.errors() {
        // Like Redis's getSafeInfoString: no separators inside a field.
        let code: String = code
            .chars()
            .map(|c| {
                if matches!(c, '#' | ':' | '\r' | '\n') {
                    '_'
                } else {
                    c
                }
            })
            .collect();
        let _ = write!(out, "errorstat_{code}:count={count}\r\n");
    }
}

fn keyspace(state: &NodeState, out: &mut String) {
    out.push_str("# Keyspace\r\n");
    let backend = state.router.backend();
    let (keys, expires) = (0..backend.shard_count())
        .map(|shard| backend.key_counts(shard))
        .fold((0, 0), |(k, e), c| (k + c.keys, e + c.expires));
    if keys > 0 {
        let _ = write!(out, "db0:keys={keys},expires={expires},avg_ttl=0\r\n");
    }
}

fn raft(state: &NodeState, out: &mut String) {
    out.push_str("# Raft\r\n");
    line(out, "node_id", state.config.node_id);
    line(out, "shards", state.config.shards);
    for s in state.router.backend().raft.status() {
        let _ = write!(
            out,
            "shard{}:role={},leader={},term={},commit={},applied={},first_index={},last_index={}\r\n",
            s.shard,
            s.role.as_str(),
            s.leader,
            s.term,
            s.commit,
            s.applied,
            s.first_index,
            s.last_index
        );
    }
}
