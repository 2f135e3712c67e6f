//! The replicated version state: each member's advertised version and storage format, the
//! cluster version and the downgrade in progress. It changes only by applying log entries
//! (`MemberVersion`, `ClusterVersionSet`, `DowngradeInfoSet`) and lives in one record beside
//! the key-values, so snapshots carry it to new members as etcd's backend carries its cluster
//! version. [`decide`] is the leader's rule (etcd's `monitorClusterVersions`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Version;
use crate::proto::raftpb::{ClusterVersionSet, DowngradeInfoSet, MemberVersion};

/// The record holding the [`VersionState`] (not a Raft record: snapshots include it).
pub const META_VERSIONS: &[u8] = b"m/versions";

/// What one member advertised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Advertised {
    /// Its server version, `major.minor.patch`.
    pub server: String,
    /// Its data dir format.
    pub storage_format: u32,
}

/// The cluster's versions, as applied so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionState {
    /// What each member advertised, by member id (members removed since may remain; readers
    /// look only at the current membership).
    pub members: BTreeMap<u64, Advertised>,
    /// The cluster version (`major.minor.0`), once the leader decided it.
    pub cluster: Option<String>,
    /// The downgrade target while a downgrade is enabled.
    pub downgrade: Option<String>,
}

impl VersionState {
    /// Decodes the record (an absent record is the empty state).
    pub fn decode(bytes: Option<&[u8]>) -> Result<Self, postcard::Error> {
        bytes.map_or_else(|| Ok(Self::default()), postcard::from_bytes)
    }

    /// Encodes the record.
    pub fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        postcard::to_stdvec(self)
    }

    /// The cluster version, when decided and well-formed.
    pub fn cluster_version(&self) -> Option<Version> {
        self.cluster.as_deref().and_then(|v| v.parse().ok())
    }

    /// The enabled downgrade target.
    pub fn downgrade_target(&self) -> Option<Version> {
        self.downgrade.as_deref().and_then(|v| v.parse().ok())
    }

    /// The version `member` advertised.
    pub fn member_version(&self, member: u64) -> Option<Version> {
        self.members
            .get(&member)
            .and_then(|a| a.server.parse().ok())
    }

    /// Applies a member's advertisement.
    pub fn apply_member(&mut self, m: &MemberVersion) {
        self.members.insert(
            m.member_id,
            Advertised {
                server: m.server.clone(),
                storage_format: m.storage_format,
            },
        );
    }

    /// Applies the leader's cluster version.
    pub fn apply_cluster(&mut self, c: &ClusterVersionSet) {
        self.cluster = Some(c.version.clone());
    }

    /// Applies a downgrade ENABLE (with its target) or CANCEL.
    pub fn apply_downgrade(&mut self, d: &DowngradeInfoSet) {
        self.downgrade = d.enabled.then(|| d.target.clone());
    }
}

/// Reads the applied version state of `store`.
pub fn load(store: &crate::mvcc::MvccStore) -> Result<VersionState, crate::error::EtcdError> {
    let bytes = store.get_meta(META_VERSIONS)?;
    VersionState::decode(bytes.as_deref()).map_err(|e| {
        crate::error::EtcdError::Internal(format!("oxcd: undecodable version record: {e}"))
    })
}

/// What the leader should propose, judged from the state and the current membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Set the cluster version.
    SetCluster(Version),
    /// Every member runs the downgrade target: end the downgrade (etcd: "the cluster has been
    /// downgraded").
    FinishDowngrade,
    /// Nothing to change.
    Keep,
}

/// The lowest version among `members`, or None while any of them has not advertised yet.
pub fn lowest_member_version(state: &VersionState, members: &[u64]) -> Option<Version> {
    members
        .iter()
        .map(|id| state.member_version(*id))
        .collect::<Option<Vec<_>>>()?
        .into_iter()
        .min()
}

/// etcd's `decideClusterVersion` + `CancelDowngradeIfNeeded`: the cluster version starts at the
/// lowest member version, later only rises to it (within a major), and drops to an enabled
/// downgrade target that is one minor below it; a downgrade ends once all members run its target.
pub fn decide(state: &VersionState, members: &[u64]) -> Decision {
    let Some(lowest) = lowest_member_version(state, members).map(Version::minor_line) else {
        return Decision::Keep;
    };
    let current = state.cluster_version().map(Version::minor_line);
    if let Some(target) = state.downgrade_target() {
        let all_at_target = members
            .iter()
            .all(|id| state.member_version(*id).map(Version::minor_line) == Some(target));
        if all_at_target {
            return Decision::FinishDowngrade;
        }
        return match current {
            Some(cv) if cv == target => Decision::Keep,
            Some(cv) if cv.downgrade_target() == Some(target) => Decision::SetCluster(target),
            _ => Decision::Keep,
        };
    }
    match current {
        None => Decision::SetCluster(lowest),
        Some(cv) if cv < lowest && cv.major == lowest.major => Decision::SetCluster(lowest),
        Some(_) => Decision::Keep,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    fn state(
        members: &[(u64, &str)],
        cluster: Option<&str>,
        downgrade: Option<&str>,
    ) -> VersionState {
        let mut s = VersionState {
            cluster: cluster.map(str::to_string),
            downgrade: downgrade.map(str::to_string),
            ..Default::default()
        };
        for (id, server) in members {
            s.apply_member(&MemberVersion {
                member_id: *id,
                server: (*server).to_string(),
                storage_format: 1,
            });
        }
        s
    }

    #[test]
    fn the_cluster_version_waits_for_every_member_then_takes_the_lowest() {
        let s = state(&[(1, "0.2.3"), (2, "0.1.9")], None, None);
        assert_eq!(decide(&s, &[1, 2, 3]), Decision::Keep);
        assert_eq!(decide(&s, &[1, 2]), Decision::SetCluster(v("0.1.0")));
    }

    #[test]
    fn the_cluster_version_rises_but_never_falls_by_itself() {
        let s = state(&[(1, "0.2.0"), (2, "0.2.1")], Some("0.1.0"), None);
        assert_eq!(decide(&s, &[1, 2]), Decision::SetCluster(v("0.2.0")));
        let s = state(&[(1, "0.1.0"), (2, "0.2.1")], Some("0.2.0"), None);
        assert_eq!(decide(&s, &[1, 2]), Decision::Keep);
    }

    #[test]
    fn an_enabled_downgrade_lowers_the_cluster_version_then_ends_when_all_members_run_it() {
        let s = state(&[(1, "0.2.0"), (2, "0.2.0")], Some("0.2.0"), Some("0.1.0"));
        assert_eq!(decide(&s, &[1, 2]), Decision::SetCluster(v("0.1.0")));
        let s = state(&[(1, "0.1.4"), (2, "0.2.0")], Some("0.1.0"), Some("0.1.0"));
        assert_eq!(decide(&s, &[1, 2]), Decision::Keep);
        let s = state(&[(1, "0.1.4"), (2, "0.1.0")], Some("0.1.0"), Some("0.1.0"));
        assert_eq!(decide(&s, &[1, 2]), Decision::FinishDowngrade);
    }

    #[test]
    fn the_state_survives_its_record() {
        let s = state(&[(7, "0.1.0")], Some("0.1.0"), Some("0.0.0"));
        let bytes = s.encode().unwrap_or_default();
        assert_eq!(VersionState::decode(Some(&bytes)).ok(), Some(s));
        assert_eq!(
            VersionState::decode(None).ok(),
            Some(VersionState::default())
        );
    }
}
