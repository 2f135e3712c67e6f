//! Command-line flags and `ETCD_*` environment variables, with etcd's names and defaults, so a
//! member can be started exactly as an etcd member would be.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// How `--auto-compaction-retention` is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AutoCompactionMode {
    /// Keep the history of the last retention period (a duration; a bare number means hours).
    Periodic,
    /// Keep the last N revisions.
    Revision,
}

/// Whether this member starts a new cluster or joins an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InitialClusterState {
    /// Bootstrap a new cluster from `--initial-cluster`.
    New,
    /// Join a running cluster.
    Existing,
}

/// The flags of an oxcd member (a subset of etcd's, growing with the server).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "oxcd",
    version,
    about = "An etcd v3 compatible key-value store"
)]
pub struct MemberConfig {
    /// Human-readable name of this member.
    #[arg(long, env = "ETCD_NAME", default_value = "default")]
    pub name: String,
    /// Path to the data directory (default: `<name>.oxcd`).
    #[arg(long, env = "ETCD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// URLs to listen on for client traffic (comma-separated).
    #[arg(
        long,
        env = "ETCD_LISTEN_CLIENT_URLS",
        default_value = "http://localhost:2379",
        value_delimiter = ','
    )]
    pub listen_client_urls: Vec<String>,
    /// URLs to listen on for the metrics and health endpoints (comma-separated). Unset:
    /// `http://127.0.0.1:2381` if that port is free.
    #[arg(long, env = "ETCD_LISTEN_METRICS_URLS", value_delimiter = ',')]
    pub listen_metrics_urls: Vec<String>,
    /// Client URLs advertised to the cluster and clients (comma-separated).
    #[arg(
        long,
        env = "ETCD_ADVERTISE_CLIENT_URLS",
        default_value = "http://localhost:2379",
        value_delimiter = ','
    )]
    pub advertise_client_urls: Vec<String>,
    /// URLs to listen on for peer traffic (comma-separated).
    #[arg(
        long,
        env = "ETCD_LISTEN_PEER_URLS",
        default_value = "http://localhost:2380",
        value_delimiter = ','
    )]
    pub listen_peer_urls: Vec<String>,
    /// This member's peer URLs advertised to the cluster (comma-separated).
    #[arg(
        long,
        env = "ETCD_INITIAL_ADVERTISE_PEER_URLS",
        default_value = "http://localhost:2380",
        value_delimiter = ','
    )]
    pub initial_advertise_peer_urls: Vec<String>,
    /// Initial cluster configuration for bootstrapping: `name=peerURL,...`.
    #[arg(long, env = "ETCD_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,
    /// Initial cluster state.
    #[arg(
        long,
        env = "ETCD_INITIAL_CLUSTER_STATE",
        value_enum,
        default_value = "new"
    )]
    pub initial_cluster_state: InitialClusterState,
    /// Initial cluster token, distinguishing clusters bootstrapped from the same configuration.
    #[arg(
        long,
        env = "ETCD_INITIAL_CLUSTER_TOKEN",
        default_value = "etcd-cluster"
    )]
    pub initial_cluster_token: String,
    /// Maximum number of learners in the cluster.
    #[arg(long, env = "ETCD_MAX_LEARNERS", default_value_t = 1)]
    pub max_learners: usize,
    /// Maximum client request size in bytes the server accepts.
    #[arg(long, env = "ETCD_MAX_REQUEST_BYTES", default_value_t = 1_572_864)]
    pub max_request_bytes: u32,
    /// Maximum number of operations permitted in one transaction branch.
    #[arg(long, env = "ETCD_MAX_TXN_OPS", default_value_t = 128)]
    pub max_txn_ops: u32,
    /// Backend size quota in bytes (0 = default of 2 GiB).
    #[arg(long, env = "ETCD_QUOTA_BACKEND_BYTES", default_value_t = 0)]
    pub quota_backend_bytes: i64,
    /// Interpretation of `--auto-compaction-retention`.
    #[arg(
        long,
        env = "ETCD_AUTO_COMPACTION_MODE",
        value_enum,
        default_value = "periodic"
    )]
    pub auto_compaction_mode: AutoCompactionMode,
    /// History to keep: a duration (`30m`, `1h`; bare number = hours) or a revision count; 0 = off.
    #[arg(long, env = "ETCD_AUTO_COMPACTION_RETENTION", default_value = "0")]
    pub auto_compaction_retention: String,
    /// Time (ms) of a heartbeat interval.
    #[arg(long, env = "ETCD_HEARTBEAT_INTERVAL", default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// Time (ms) for an election to time out.
    #[arg(long, env = "ETCD_ELECTION_TIMEOUT", default_value_t = 1000)]
    pub election_timeout: u64,
    /// Number of committed entries between Raft snapshots (log compaction).
    #[arg(long, env = "ETCD_SNAPSHOT_COUNT", default_value_t = 10_000)]
    pub snapshot_count: u64,
    /// Log level: debug, info, warn, error.
    #[arg(long, env = "ETCD_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Interval of periodic watch progress notifications (etcd's default: 10m).
    #[arg(
        long,
        env = "ETCD_WATCH_PROGRESS_NOTIFY_INTERVAL",
        default_value = "10m",
        alias = "experimental-watch-progress-notify-interval"
    )]
    pub watch_progress_notify_interval: String,
    /// oxcd: bytes of page cache the storage engine may use. 64 MiB: with 1 M keys loaded a
    /// member then peaks below etcd's resident size, and writes over a 100 000-key space ran as
    /// fast as with 256 MiB (docs/benchmarks.md); pages outside it are read back through the
    /// kernel's page cache.
    #[arg(long, env = "OXCD_BACKEND_CACHE_BYTES", default_value_t = 64 << 20)]
    pub backend_cache_bytes: u64,
    /// TLS for clients and peers.
    #[command(flatten)]
    pub tls: crate::tls::flags::TlsFlags,
}

/// A flag value that parses but makes no sense.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// An auto-compaction retention that is neither a duration nor a number.
    #[error(
        "invalid --auto-compaction-retention {value:?}: expected a duration like 1h or 30m, or a number"
    )]
    Retention {
        /// The value given.
        value: String,
    },
    /// A listen URL that is not `http://host:port` or `https://host:port`.
    #[error("invalid URL {value:?} in {flag}: expected scheme://host:port")]
    Url {
        /// The flag.
        flag: &'static str,
        /// The value given.
        value: String,
    },
    /// A duration flag that does not parse.
    #[error("invalid {flag} {value:?}: expected a duration like 10m or 500ms")]
    Duration {
        /// The flag.
        flag: &'static str,
        /// The value given.
        value: String,
    },
    /// `--election-timeout` must exceed five heartbeats, as etcd requires.
    #[error(
        "--election-timeout[{election}ms] should be at least as 5 times as --heartbeat-interval[{heartbeat}ms]"
    )]
    Timing {
        /// Election timeout in ms.
        election: u64,
        /// Heartbeat interval in ms.
        heartbeat: u64,
    },
}

/// What auto-compaction should keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Auto-compaction off.
    Off,
    /// Keep this much time of history.
    Period(Duration),
    /// Keep this many revisions.
    Revisions(i64),
}

/// Default backend quota (2 GiB), as etcd.
pub const DEFAULT_QUOTA_BYTES: i64 = 2 << 30;

impl MemberConfig {
    /// The data directory, defaulting to `<name>.oxcd`.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}.oxcd", self.name)))
    }

    /// The effective backend quota.
    pub fn quota_bytes(&self) -> i64 {
        if self.quota_backend_bytes <= 0 {
            DEFAULT_QUOTA_BYTES
        } else {
            self.quota_backend_bytes
        }
    }

    /// etcd's minimum lease TTL: 1.5 election timeouts in whole heartbeats, rounded up to seconds.
    pub fn min_lease_ttl(&self) -> i64 {
        let heartbeat = self.heartbeat_interval.max(1);
        let election_ticks = self.election_timeout / heartbeat;
        let min_ms = (3 * election_ticks / 2) * heartbeat;
        i64::try_from(min_ms.div_ceil(1000)).unwrap_or(i64::MAX)
    }

    /// Checks cross-flag rules and parses the retention.
    pub fn retention(&self) -> Result<Retention, ConfigError> {
        let value = self.auto_compaction_retention.trim();
        let bad = || ConfigError::Retention {
            value: value.to_string(),
        };
        if let Ok(n) = value.parse::<i64>() {
            if n < 0 {
                return Err(bad());
            }
            return Ok(match (n, self.auto_compaction_mode) {
                (0, _) => Retention::Off,
                (n, AutoCompactionMode::Revision) => Retention::Revisions(n),
                (n, AutoCompactionMode::Periodic) => Retention::Period(Duration::from_secs(
                    u64::try_from(n).map_err(|_| bad())? * 3600,
                )),
            });
        }
        if self.auto_compaction_mode == AutoCompactionMode::Revision {
            return Err(bad());
        }
        let d = parse_duration(value).ok_or_else(bad)?;
        Ok(if d.is_zero() {
            Retention::Off
        } else {
            Retention::Period(d)
        })
    }

    /// The periodic watch progress interval.
    pub fn watch_progress_notify_interval(&self) -> Result<Duration, ConfigError> {
        match parse_duration(self.watch_progress_notify_interval.trim()) {
            Some(d) if !d.is_zero() => Ok(d),
            _ => Err(ConfigError::Duration {
                flag: "--watch-progress-notify-interval",
                value: self.watch_progress_notify_interval.clone(),
            }),
        }
    }

    /// Validates flag combinations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.election_timeout < 5 * self.heartbeat_interval {
            return Err(ConfigError::Timing {
                election: self.election_timeout,
                heartbeat: self.heartbeat_interval,
            });
        }
        for url in &self.listen_client_urls {
            listen_addr("--listen-client-urls", url)?;
        }
        for url in &self.listen_metrics_urls {
            listen_addr("--listen-metrics-urls", url)?;
        }
        for url in &self.listen_peer_urls {
            listen_addr("--listen-peer-urls", url)?;
        }
        self.retention()?;
        self.watch_progress_notify_interval()?;
        Ok(())
    }
}

/// Parses Go-style durations such as `90s`, `30m`, `1h30m`.
fn parse_duration(s: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (num, tail) = rest.split_at(num_len);
        let num: f64 = num.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += num * scale;
        rest = tail;
    }
    Some(Duration::from_secs_f64(total))
}

/// Turns `http://host:port` into something a listener can bind.
pub fn listen_addr(flag: &'static str, url: &str) -> Result<String, ConfigError> {
    let bad = || ConfigError::Url {
        flag,
        value: url.to_string(),
    };
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .or_else(|| url.strip_prefix("unix://"))
        .ok_or_else(bad)?;
    let host_port = rest.trim_end_matches('/');
    let (host, port) = host_port.rsplit_once(':').ok_or_else(bad)?;
    port.parse::<u16>().map_err(|_| bad())?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok(host_port.to_string())
}

/// Rewrites Go-style single-dash long flags (`-name x`) to `--name x`, as etcd accepts both.
pub fn normalize_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    args.into_iter()
        .enumerate()
        .map(|(i, a)| {
            let single_dash_long =
                i > 0 && a.starts_with('-') && !a.starts_with("--") && a.len() > 2;
            if single_dash_long { format!("-{a}") } else { a }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(args: &[&str]) -> Result<MemberConfig, clap::Error> {
        let argv = std::iter::once("oxcd")
            .chain(args.iter().copied())
            .map(String::from);
        MemberConfig::try_parse_from(normalize_args(argv))
    }

    #[test]
    fn etcd_style_flags_parse_with_single_or_double_dash() {
        let c = parse(&[
            "-name",
            "m1",
            "--data-dir=/tmp/x",
            "--auto-compaction-retention=30m",
        ])
        .unwrap();
        assert_eq!(c.name, "m1");
        assert_eq!(c.data_dir(), PathBuf::from("/tmp/x"));
        assert_eq!(
            c.retention().unwrap(),
            Retention::Period(Duration::from_secs(1800))
        );
    }

    #[test]
    fn unknown_flags_are_rejected() {
        let err = parse(&["--no-such-flag"]).unwrap_err();
        assert!(err.to_string().contains("--no-such-flag"));
    }

    #[test]
    fn bare_periodic_retention_means_hours_and_revision_mode_counts() {
        let c = parse(&["--auto-compaction-retention", "2"]).unwrap();
        assert_eq!(
            c.retention().unwrap(),
            Retention::Period(Duration::from_secs(7200))
        );
        let c = parse(&[
            "--auto-compaction-mode",
            "revision",
            "--auto-compaction-retention",
            "1000",
        ])
        .unwrap();
        assert_eq!(c.retention().unwrap(), Retention::Revisions(1000));
        let c = parse(&[
            "--auto-compaction-mode",
            "revision",
            "--auto-compaction-retention",
            "1h",
        ])
        .unwrap();
        assert!(c.retention().is_err());
    }

    #[test]
    fn election_timeout_must_cover_five_heartbeats() {
        let c = parse(&["--heartbeat-interval", "100", "--election-timeout", "300"]).unwrap();
        assert!(matches!(c.validate(), Err(ConfigError::Timing { .. })));
    }

    #[test]
    fn listen_urls_become_bind_addresses() {
        assert_eq!(
            listen_addr("f", "http://127.0.0.1:2379").unwrap(),
            "127.0.0.1:2379"
        );
        assert!(listen_addr("f", "127.0.0.1:2379").is_err());
    }
}
