//! oxcd's own release versions and the rules between them, as etcd applies them to its versions:
//! every member advertises its server version (this binary's `major.minor.patch`) and storage
//! format through the log; the leader sets the **cluster version** to the lowest member version
//! (`major.minor.0`, only ever upwards, or down to a downgrade target); a member whose version is
//! below the cluster version or more than one minor above it stops with an error; features that
//! put new kinds of entries in the log are gated by the cluster version ([`Feature`]).
//!
//! Two version lines exist side by side. Clients that parse a version (kube-apiserver reads
//! `Maintenance.Status.version`, etcdctl prints it) keep seeing the etcd API version oxcd
//! implements ([`crate::api::maintenance::ETCD_API_VERSION`]), because both oxcd 0.1 and a later
//! oxcd implement etcd 3.6. Skew rules, the cluster version and Maintenance.Downgrade are about
//! oxcd's release version, which is where upgrades happen.
//!
//! How to read them (for operators and tools):
//! - HTTP `GET /version` on the metrics port (2381): etcd's `etcdserver`, `etcdcluster` and
//!   `storage` (the etcd API version) plus `oxcd` (this member's version), `oxcdcluster` (the
//!   cluster version `major.minor.0`,
//!   `null` until decided), `oxcdstorage` (storage format), `oxcdmembers` (every member's
//!   advertised version by hex member id, as this member has applied them) and `downgrade`
//!   (`{"target-version","enabled"}`, etcd's `DowngradeInfo` JSON).
//! - Prometheus: `oxcd_cluster_version{cluster_version="major.minor"} 1` on `/metrics`.
//! - gRPC `Maintenance.Status`: `downgradeInfo` carries the downgrade state in oxcd versions;
//!   `Maintenance.Downgrade(VALIDATE, v)` answers with the cluster version (`major.minor`).
//! - Upgrades go one minor at a time: replace members one by one with the next minor; the leader
//!   raises the cluster version once every member advertises it. Downgrades likewise:
//!   `Maintenance.Downgrade(ENABLE, "major.minor−1")` (etcdctl `downgrade enable`) records the
//!   target and the leader lowers the cluster version to it within a second; members are then
//!   replaced by the older binary one by one, and the leader ends the downgrade by itself once
//!   every member advertises the target (CANCEL ends it early; the version then rises again).
//! - A member refused by these rules logs the reason and exits non-zero: at start when its data
//!   dir already holds a cluster version, else as soon as it has caught up with the cluster.

pub mod monitor;
pub mod state;

use std::fmt;
use std::str::FromStr;

/// Environment variable that overrides the version this process advertises. Test-only: a
/// mixed-version cluster needs two binaries otherwise; it is read once at start and logged.
pub const ADVERTISED_VERSION_ENV: &str = "OXCD_TEST_ADVERTISED_VERSION";

/// A release version `major.minor.patch` (pre-release and build suffixes are ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Major.
    pub major: u64,
    /// Minor.
    pub minor: u64,
    /// Patch.
    pub patch: u64,
}

/// A version string that is not `major.minor[.patch]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid version {0:?}: expected major.minor.patch")]
pub struct ParseVersionError(pub String);

impl FromStr for Version {
    type Err = ParseVersionError;

    /// Parses `major.minor.patch`, or `major.minor` (etcd accepts it for downgrade targets).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseVersionError(s.to_string());
        let core = s.trim_start_matches('v');
        let core = core.split(['-', '+']).next().unwrap_or(core);
        let mut parts = core.split('.');
        let mut next = |required: bool| match parts.next() {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u64>().map_err(|_| bad())
            }
            None if !required => Ok(0),
            _ => Err(bad()),
        };
        let version = Version {
            major: next(true)?,
            minor: next(true)?,
            patch: next(false)?,
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(version)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl Version {
    /// The version with its patch dropped: cluster versions only keep `major.minor`.
    pub fn minor_line(self) -> Self {
        Self { patch: 0, ..self }
    }

    /// etcd's short cluster form, `major.minor` (`version.Cluster`).
    pub fn cluster_string(self) -> String {
        format!("{}.{}", self.major, self.minor)
    }

    /// The one version a cluster at `self` may be downgraded to: one minor lower.
    pub fn downgrade_target(self) -> Option<Self> {
        self.minor.checked_sub(1).map(|minor| Self {
            major: self.major,
            minor,
            patch: 0,
        })
    }
}

/// The version of this binary, the one it advertises unless [`ADVERTISED_VERSION_ENV`] is set.
pub fn binary_version() -> Version {
    // The workspace version is always major.minor.patch; a build that breaks this fails its tests.
    env!("CARGO_PKG_VERSION").parse().unwrap_or(Version {
        major: 0,
        minor: 0,
        patch: 0,
    })
}

/// The version this member advertises: the binary's, or the test override.
pub fn advertised() -> Result<Version, ParseVersionError> {
    match std::env::var(ADVERTISED_VERSION_ENV) {
        Ok(v) => {
            let version = v.parse()?;
            tracing::warn!(%version, "advertising an overridden server version ({ADVERTISED_VERSION_ENV}); for tests only");
            Ok(version)
        }
        Err(_) => Ok(binary_version()),
    }
}

/// Why a member may not run in a cluster.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkewError {
    /// The member is older than the cluster (etcd: "invalid downgrade; server version is lower
    /// than determined cluster version").
    #[error(
        "server version {server} is lower than the cluster version {cluster}: start oxcd {cluster} or newer, or enable a downgrade to {server_line} first (Maintenance.Downgrade ENABLE)",
        server_line = server.cluster_string(),
        cluster = cluster.cluster_string()
    )]
    TooOld {
        /// This member's version.
        server: Version,
        /// The cluster version.
        cluster: Version,
    },
    /// The member is more than one minor newer than the cluster, or of another major.
    #[error(
        "server version {server} is more than one minor version away from the cluster version {cluster}: upgrade the cluster one minor version at a time",
        cluster = cluster.cluster_string()
    )]
    TooNew {
        /// This member's version.
        server: Version,
        /// The cluster version.
        cluster: Version,
    },
}

/// Whether a member of version `server` may run in a cluster at `cluster`, with the downgrade
/// target `downgrade` enabled (or none): at the cluster version or one minor above, or at the
/// downgrade target while a downgrade is under way.
pub fn check_skew(
    server: Version,
    cluster: Version,
    downgrade: Option<Version>,
) -> Result<(), SkewError> {
    let line = server.minor_line();
    let cluster = cluster.minor_line();
    if downgrade == Some(line) {
        return Ok(());
    }
    if line < cluster {
        return Err(SkewError::TooOld { server, cluster });
    }
    if line.major != cluster.major || line.minor > cluster.minor + 1 {
        return Err(SkewError::TooNew { server, cluster });
    }
    Ok(())
}

/// A capability that members of older versions would not understand (typically a new kind of
/// log entry): it may be used only once the cluster version has reached [`Feature::since`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    /// Maintenance.Downgrade: the downgrade entries in the log (etcd gates its downgrade the
    /// same way, answering "cluster version not found" before the cluster version is decided).
    Downgrade,
}

impl Feature {
    /// The first cluster version whose members all understand this feature.
    pub fn since(self) -> Version {
        match self {
            Feature::Downgrade => Version {
                major: 0,
                minor: 1,
                patch: 0,
            },
        }
    }

    /// True when a cluster at `cluster` (None: not decided yet) may use this feature.
    pub fn enabled(self, cluster: Option<Version>) -> bool {
        cluster.is_some_and(|c| c.minor_line() >= self.since())
    }
}

#[cfg(test)]
mod tests;
