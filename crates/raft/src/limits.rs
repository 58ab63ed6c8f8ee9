//! The raft flow-control knobs and how each engine resolves them.
//!
//! Precedence, per value: environment variable, then the config file or
//! flags, then the compiled default. An environment value that is not a
//! number or is out of range is reported (one [`InvalidEnv`] per variable,
//! logged as one WARN) and the compiled default is used, never the config
//! value: the operator asked for something specific and did not get it, and
//! silently falling back to a third value would hide that.
//!
//! Resolution takes the environment as a lookup function, so tests never
//! touch the process-wide environment (which races between test threads).

use std::fmt;
use std::ops::RangeInclusive;

use thiserror::Error;

pub const ENV_MAX_INFLIGHT_MSGS: &str = "ELASTICKV_RAFT_MAX_INFLIGHT_MSGS";
pub const ENV_MAX_SIZE_PER_MSG: &str = "ELASTICKV_RAFT_MAX_SIZE_PER_MSG";
pub const ENV_PRE_VOTE: &str = "ELASTICKV_RAFT_PRE_VOTE";
pub const ENV_SNAPSHOT_COUNT: &str = "ELASTICKV_RAFT_SNAPSHOT_COUNT";
pub const ENV_LOG_RETAIN_ENTRIES: &str = "ELASTICKV_RAFT_LOG_RETAIN_ENTRIES";

/// Applied entries between log compactions (each compaction makes the
/// applied state the shard's snapshot point).
pub const DEFAULT_SNAPSHOT_COUNT: u64 = 10_000;
pub const SNAPSHOT_COUNT_RANGE: RangeInclusive<u64> = 1..=(1 << 40);

/// Entries kept behind the snapshot point, so a follower that is only a
/// little behind catches up from the log rather than by a snapshot.
pub const DEFAULT_LOG_RETAIN_ENTRIES: u64 = 5_000;
pub const LOG_RETAIN_ENTRIES_RANGE: RangeInclusive<u64> = 0..=(1 << 40);

/// Pre-vote keeps a node that was cut off from disrupting the cluster with
/// a higher term when it returns.
pub const DEFAULT_PRE_VOTE: bool = true;

pub const DEFAULT_MAX_INFLIGHT_MSGS: u64 = 512;
pub const MAX_INFLIGHT_MSGS_RANGE: RangeInclusive<u64> = 1..=8192;

pub const DEFAULT_MAX_SIZE_PER_MSG: u64 = 2 << 20;
/// 32 MiB: half the 64 MiB transport message cap.
pub const MAX_SIZE_PER_MSG_RANGE: RangeInclusive<u64> = 1024..=(32 << 20);

/// The inbound step queue never holds fewer messages than this, so a small
/// inflight window does not also starve votes and heartbeats.
pub const STEP_QUEUE_FLOOR: usize = 256;

/// Where a resolved value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Env,
    Config,
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Env => "env",
            Source::Config => "config",
            Source::Default => "default",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved<T = u64> {
    pub value: T,
    pub source: Source,
}

/// Values from the config file or flags; `None` where not set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitsConfig {
    pub max_inflight_msgs: Option<u64>,
    pub max_size_per_msg: Option<u64>,
    pub pre_vote: Option<bool>,
    pub snapshot_count: Option<u64>,
    pub log_retain_entries: Option<u64>,
}

/// A config-file value outside its accepted range. Config errors stop the
/// node at start-up (unlike environment errors, which fall back).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{key} = {value} is out of range; accepted: {min}..={max}")]
pub struct LimitsConfigError {
    pub key: &'static str,
    pub value: u64,
    pub min: u64,
    pub max: u64,
}

impl LimitsConfig {
    pub fn validate(&self) -> Result<(), LimitsConfigError> {
        check_config(
            "max_inflight_msgs",
            self.max_inflight_msgs,
            &MAX_INFLIGHT_MSGS_RANGE,
        )?;
        check_config(
            "max_size_per_msg",
            self.max_size_per_msg,
            &MAX_SIZE_PER_MSG_RANGE,
        )?;
        check_config("snapshot_count", self.snapshot_count, &SNAPSHOT_COUNT_RANGE)?;
        check_config(
            "log_retain_entries",
            self.log_retain_entries,
            &LOG_RETAIN_ENTRIES_RANGE,
        )
    }
}

fn check_config(
    key: &'static str,
    value: Option<u64>,
    range: &RangeInclusive<u64>,
) -> Result<(), LimitsConfigError> {
    match value {
        Some(v) if !range.contains(&v) => Err(LimitsConfigError {
            key,
            value: v,
            min: *range.start(),
            max: *range.end(),
        }),
        _ => Ok(()),
    }
}

/// An environment variable that was set but unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidEnv {
    pub var: &'static str,
    pub value: String,
    /// The default used instead, as text.
    pub default: String,
    pub reason: String,
}

/// The flow-control limits one engine runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftLimits {
    pub max_inflight_msgs: Resolved,
    pub max_size_per_msg: Resolved,
    pub pre_vote: Resolved<bool>,
    pub snapshot_count: Resolved,
    pub log_retain_entries: Resolved,
}

impl RaftLimits {
    /// Resolves the limits from `env` (a variable lookup) and `config`.
    /// `config` must have passed [`LimitsConfig::validate`].
    pub fn resolve(
        config: &LimitsConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> (RaftLimits, Vec<InvalidEnv>) {
        let mut invalid = Vec::new();
        let max_inflight_msgs = resolve_one(
            ENV_MAX_INFLIGHT_MSGS,
            &env,
            config.max_inflight_msgs,
            DEFAULT_MAX_INFLIGHT_MSGS,
            |raw| parse_in_range(raw, &MAX_INFLIGHT_MSGS_RANGE),
            &mut invalid,
        );
        let max_size_per_msg = resolve_one(
            ENV_MAX_SIZE_PER_MSG,
            &env,
            config.max_size_per_msg,
            DEFAULT_MAX_SIZE_PER_MSG,
            |raw| parse_in_range(raw, &MAX_SIZE_PER_MSG_RANGE),
            &mut invalid,
        );
        let pre_vote = resolve_one(
            ENV_PRE_VOTE,
            &env,
            config.pre_vote,
            DEFAULT_PRE_VOTE,
            parse_bool,
            &mut invalid,
        );
        let snapshot_count = resolve_one(
            ENV_SNAPSHOT_COUNT,
            &env,
            config.snapshot_count,
            DEFAULT_SNAPSHOT_COUNT,
            |raw| parse_in_range(raw, &SNAPSHOT_COUNT_RANGE),
            &mut invalid,
        );
        let log_retain_entries = resolve_one(
            ENV_LOG_RETAIN_ENTRIES,
            &env,
            config.log_retain_entries,
            DEFAULT_LOG_RETAIN_ENTRIES,
            |raw| parse_in_range(raw, &LOG_RETAIN_ENTRIES_RANGE),
            &mut invalid,
        );
        (
            RaftLimits {
                max_inflight_msgs,
                max_size_per_msg,
                pre_vote,
                snapshot_count,
                log_retain_entries,
            },
            invalid,
        )
    }

    /// Resolves from the real process environment.
    pub fn from_process_env(config: &LimitsConfig) -> (RaftLimits, Vec<InvalidEnv>) {
        RaftLimits::resolve(config, |var| std::env::var(var).ok())
    }

    pub fn max_inflight_msgs(&self) -> usize {
        usize::try_from(self.max_inflight_msgs.value).unwrap_or(usize::MAX)
    }

    pub fn max_size_per_msg(&self) -> u64 {
        self.max_size_per_msg.value
    }

    /// A ready's committed entries are capped like one append message, so
    /// one apply round costs about what one replication round does.
    pub fn max_committed_size_per_ready(&self) -> u64 {
        self.max_size_per_msg.value
    }

    /// Capacity of each outbound per-peer lane.
    pub fn outbound_lane_capacity(&self) -> usize {
        self.max_inflight_msgs()
    }

    /// Capacity of the engine's inbound step queue.
    pub fn step_queue_capacity(&self) -> usize {
        self.max_inflight_msgs().max(STEP_QUEUE_FLOOR)
    }

    /// Worst-case bytes buffered towards one peer for one shard.
    pub fn worst_case_bytes_per_peer(&self) -> u64 {
        self.max_inflight_msgs
            .value
            .saturating_mul(self.max_size_per_msg.value)
    }
}

fn resolve_one<T: Copy + fmt::Display>(
    var: &'static str,
    env: &impl Fn(&str) -> Option<String>,
    config: Option<T>,
    default: T,
    parse: impl Fn(&str) -> Result<T, String>,
    invalid: &mut Vec<InvalidEnv>,
) -> Resolved<T> {
    // An empty variable (`VAR=`) is treated as unset, as shells and
    // env files commonly produce it to mean "no override".
    match env(var).filter(|raw| !raw.trim().is_empty()) {
        Some(raw) => match parse(raw.trim()) {
            Ok(value) => Resolved {
                value,
                source: Source::Env,
            },
            Err(reason) => {
                invalid.push(InvalidEnv {
                    var,
                    value: raw,
                    default: default.to_string(),
                    reason,
                });
                Resolved {
                    value: default,
                    source: Source::Default,
                }
            }
        },
        None => match config {
            Some(value) => Resolved {
                value,
                source: Source::Config,
            },
            None => Resolved {
                value: default,
                source: Source::Default,
            },
        },
    }
}

fn parse_in_range(raw: &str, range: &RangeInclusive<u64>) -> Result<u64, String> {
    let value: i128 = raw.parse().map_err(|_| "not an integer".to_string())?;
    if value < i128::from(*range.start()) || value > i128::from(*range.end()) {
        return Err(format!("out of range {}..={}", range.start(), range.end()));
    }
    u64::try_from(value).map_err(|_| "not an integer".to_string())
}

fn parse_bool(raw: &str) -> Result<bool, String> {
    match raw.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("not a boolean (true/false, 1/0, yes/no, on/off)".to_string()),
    }
}

/// Logs the resolution the way operators read it: one WARN per unusable
/// variable, then one INFO line with every value and its source.
pub fn log_resolution(local_id: u64, shard_id: u32, limits: &RaftLimits, invalid: &[InvalidEnv]) {
    for bad in invalid {
        tracing::warn!(
            local_id,
            shard_id,
            var = bad.var,
            value = %bad.value,
            default = bad.default,
            reason = %bad.reason,
            "invalid {} {:?} ({}); using the default {}",
            bad.var,
            bad.value,
            bad.reason,
            bad.default
        );
    }
    tracing::info!(
        local_id,
        shard_id,
        max_inflight_msgs = limits.max_inflight_msgs.value,
        max_inflight_msgs_source = %limits.max_inflight_msgs.source,
        max_size_per_msg_bytes = limits.max_size_per_msg.value,
        max_size_per_msg_source = %limits.max_size_per_msg.source,
        max_committed_size_per_ready_bytes = limits.max_committed_size_per_ready(),
        pre_vote = limits.pre_vote.value,
        pre_vote_source = %limits.pre_vote.source,
        snapshot_count = limits.snapshot_count.value,
        snapshot_count_source = %limits.snapshot_count.source,
        log_retain_entries = limits.log_retain_entries.value,
        log_retain_entries_source = %limits.log_retain_entries.source,
        step_queue_capacity = limits.step_queue_capacity(),
        "raft engine flow-control limits resolved"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |var| map.get(var).cloned()
    }

    fn resolve(pairs: &[(&str, &str)], config: LimitsConfig) -> (RaftLimits, Vec<InvalidEnv>) {
        RaftLimits::resolve(&config, env(pairs))
    }

    const CONFIGURED: LimitsConfig = LimitsConfig {
        max_inflight_msgs: Some(64),
        max_size_per_msg: Some(4096),
        pre_vote: Some(false),
        snapshot_count: Some(100),
        log_retain_entries: Some(50),
    };

    #[test]
    fn log_lifecycle_knobs_resolve_like_the_others() {
        let (limits, invalid) = resolve(&[], LimitsConfig::default());
        assert!(invalid.is_empty());
        assert_eq!(limits.snapshot_count.value, 10_000);
        assert_eq!(limits.log_retain_entries.value, 5_000);
        let (limits, _) = resolve(&[], CONFIGURED);
        assert_eq!(limits.snapshot_count.source, Source::Config);
        assert_eq!(limits.log_retain_entries.value, 50);
        let (limits, invalid) = resolve(
            &[(ENV_SNAPSHOT_COUNT, "7"), (ENV_LOG_RETAIN_ENTRIES, "0")],
            CONFIGURED,
        );
        assert!(invalid.is_empty());
        assert_eq!(limits.snapshot_count.value, 7);
        assert_eq!(limits.log_retain_entries.value, 0);
        // Zero snapshots apart is meaningless; negative retention too: both
        // fall back to the compiled defaults, not the config values.
        let (limits, invalid) = resolve(
            &[(ENV_SNAPSHOT_COUNT, "0"), (ENV_LOG_RETAIN_ENTRIES, "-1")],
            CONFIGURED,
        );
        assert_eq!(invalid.len(), 2);
        assert_eq!(
            limits.snapshot_count,
            Resolved {
                value: DEFAULT_SNAPSHOT_COUNT,
                source: Source::Default
            }
        );
        assert_eq!(limits.log_retain_entries.value, DEFAULT_LOG_RETAIN_ENTRIES);
        assert_eq!(invalid[0].var, ENV_SNAPSHOT_COUNT);
        assert_eq!(invalid[0].default, "10000");
        let err = LimitsConfig {
            snapshot_count: Some(0),
            ..LimitsConfig::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(err.key, "snapshot_count");
    }

    #[test]
    fn unset_uses_defaults() {
        let (limits, invalid) = resolve(&[], LimitsConfig::default());
        assert!(invalid.is_empty());
        assert_eq!(
            limits.max_inflight_msgs,
            Resolved {
                value: 512,
                source: Source::Default
            }
        );
        assert_eq!(
            limits.max_size_per_msg,
            Resolved {
                value: 2 * 1024 * 1024,
                source: Source::Default
            }
        );
        assert_eq!(limits.max_committed_size_per_ready(), 2 * 1024 * 1024);
    }

    #[test]
    fn empty_env_counts_as_unset() {
        let (limits, invalid) = resolve(&[(ENV_MAX_INFLIGHT_MSGS, "")], CONFIGURED);
        assert!(invalid.is_empty());
        assert_eq!(limits.max_inflight_msgs.source, Source::Config);
    }

    #[test]
    fn config_used_when_env_unset() {
        let (limits, invalid) = resolve(&[], CONFIGURED);
        assert!(invalid.is_empty());
        assert_eq!(
            limits.max_inflight_msgs,
            Resolved {
                value: 64,
                source: Source::Config
            }
        );
        assert_eq!(limits.max_size_per_msg.value, 4096);
        assert_eq!(limits.max_committed_size_per_ready(), 4096);
    }

    #[test]
    fn valid_env_beats_config() {
        let (limits, invalid) = resolve(
            &[
                (ENV_MAX_INFLIGHT_MSGS, "1024"),
                (ENV_MAX_SIZE_PER_MSG, " 1048576 "),
            ],
            CONFIGURED,
        );
        assert!(invalid.is_empty());
        assert_eq!(
            limits.max_inflight_msgs,
            Resolved {
                value: 1024,
                source: Source::Env
            }
        );
        assert_eq!(
            limits.max_size_per_msg,
            Resolved {
                value: 1 << 20,
                source: Source::Env
            }
        );
        assert_eq!(limits.max_committed_size_per_ready(), 1 << 20);
    }

    #[test]
    fn range_edges_are_accepted() {
        for (inflight, size) in [("1", "1024"), ("8192", "33554432")] {
            let (limits, invalid) = resolve(
                &[
                    (ENV_MAX_INFLIGHT_MSGS, inflight),
                    (ENV_MAX_SIZE_PER_MSG, size),
                ],
                LimitsConfig::default(),
            );
            assert!(invalid.is_empty(), "{inflight} {size}");
            assert_eq!(limits.max_inflight_msgs.value.to_string(), inflight);
            assert_eq!(limits.max_size_per_msg.value.to_string(), size);
        }
    }

    /// Every kind of bad value falls back to the compiled default, not to the
    /// config value, and is reported once with the variable, value and
    /// default.
    #[test]
    fn invalid_env_falls_back_to_compiled_default() {
        let bad_inflight = [
            "abc",
            "12x",
            "1.5",
            "0",
            "-1",
            "-512",
            "8193",
            "99999999999999999999999",
        ];
        for bad in bad_inflight {
            let (limits, invalid) = resolve(&[(ENV_MAX_INFLIGHT_MSGS, bad)], CONFIGURED);
            assert_eq!(
                limits.max_inflight_msgs,
                Resolved {
                    value: DEFAULT_MAX_INFLIGHT_MSGS,
                    source: Source::Default
                },
                "value {bad:?}"
            );
            assert_eq!(invalid.len(), 1, "value {bad:?}");
            assert_eq!(invalid[0].var, ENV_MAX_INFLIGHT_MSGS);
            assert_eq!(invalid[0].value, bad);
            assert_eq!(invalid[0].default, DEFAULT_MAX_INFLIGHT_MSGS.to_string());
            // The other knob is untouched.
            assert_eq!(limits.max_size_per_msg.source, Source::Config);
        }
        let bad_size = ["big", "0", "-2097152", "1023", "33554433"];
        for bad in bad_size {
            let (limits, invalid) = resolve(&[(ENV_MAX_SIZE_PER_MSG, bad)], CONFIGURED);
            assert_eq!(
                limits.max_size_per_msg,
                Resolved {
                    value: DEFAULT_MAX_SIZE_PER_MSG,
                    source: Source::Default
                },
                "value {bad:?}"
            );
            assert_eq!(
                limits.max_committed_size_per_ready(),
                DEFAULT_MAX_SIZE_PER_MSG
            );
            assert_eq!(invalid.len(), 1);
            assert_eq!(invalid[0].var, ENV_MAX_SIZE_PER_MSG);
            assert_eq!(invalid[0].default, DEFAULT_MAX_SIZE_PER_MSG.to_string());
        }
    }

    #[test]
    fn below_min_and_above_max_name_the_range() {
        let (_, invalid) = resolve(&[(ENV_MAX_SIZE_PER_MSG, "1023")], LimitsConfig::default());
        assert_eq!(invalid[0].reason, "out of range 1024..=33554432");
        let (_, invalid) = resolve(&[(ENV_MAX_INFLIGHT_MSGS, "8193")], LimitsConfig::default());
        assert_eq!(invalid[0].reason, "out of range 1..=8192");
        let (_, invalid) = resolve(&[(ENV_MAX_INFLIGHT_MSGS, "x")], LimitsConfig::default());
        assert_eq!(invalid[0].reason, "not an integer");
    }

    #[test]
    fn queue_and_lane_sizing() {
        let sized = |inflight: &str| {
            resolve(
                &[(ENV_MAX_INFLIGHT_MSGS, inflight)],
                LimitsConfig::default(),
            )
            .0
        };
        // The step queue never drops below its floor...
        assert_eq!(sized("1").step_queue_capacity(), STEP_QUEUE_FLOOR);
        assert_eq!(sized("255").step_queue_capacity(), STEP_QUEUE_FLOOR);
        assert_eq!(sized("256").step_queue_capacity(), 256);
        // ...and follows the window above it.
        assert_eq!(sized("257").step_queue_capacity(), 257);
        assert_eq!(sized("8192").step_queue_capacity(), 8192);
        // Outbound lanes are exactly the window.
        assert_eq!(sized("1").outbound_lane_capacity(), 1);
        assert_eq!(sized("4096").outbound_lane_capacity(), 4096);
        let (defaults, _) = resolve(&[], LimitsConfig::default());
        assert_eq!(defaults.step_queue_capacity(), 512);
        assert_eq!(defaults.worst_case_bytes_per_peer(), 1 << 30);
    }

    #[test]
    fn pre_vote_resolution() {
        let (limits, invalid) = resolve(&[], LimitsConfig::default());
        assert!(invalid.is_empty());
        assert_eq!(
            limits.pre_vote,
            Resolved {
                value: true,
                source: Source::Default
            }
        );
        let (limits, _) = resolve(&[], CONFIGURED);
        assert_eq!(
            limits.pre_vote,
            Resolved {
                value: false,
                source: Source::Config
            }
        );
        for (raw, value) in [
            ("true", true),
            ("0", false),
            ("OFF", false),
            (" yes ", true),
        ] {
            let (limits, invalid) = resolve(&[(ENV_PRE_VOTE, raw)], CONFIGURED);
            assert!(invalid.is_empty(), "{raw}");
            assert_eq!(
                limits.pre_vote,
                Resolved {
                    value,
                    source: Source::Env
                },
                "{raw}"
            );
        }
        // Garbage: the compiled default (true), not the config's false.
        let (limits, invalid) = resolve(&[(ENV_PRE_VOTE, "maybe")], CONFIGURED);
        assert_eq!(
            limits.pre_vote,
            Resolved {
                value: true,
                source: Source::Default
            }
        );
        assert_eq!(invalid.len(), 1);
        assert_eq!(
            (invalid[0].var, invalid[0].default.as_str()),
            (ENV_PRE_VOTE, "true")
        );
    }

    #[test]
    fn config_validation() {
        assert!(CONFIGURED.validate().is_ok());
        assert!(LimitsConfig::default().validate().is_ok());
        let err = LimitsConfig {
            max_inflight_msgs: Some(0),
            ..LimitsConfig::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "max_inflight_msgs = 0 is out of range; accepted: 1..=8192"
        );
        assert!(
            LimitsConfig {
                max_size_per_msg: Some(64 << 20),
                ..LimitsConfig::default()
            }
            .validate()
            .is_err()
        );
    }
}
