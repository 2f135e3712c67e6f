//! The background work of versions on one member: publishing its own version through the log
//! once it is a member, the leader deciding the cluster version (etcd's
//! `monitorClusterVersions`), and the skew guard that stops a member whose version the cluster
//! cannot accept (etcd's `MustDetectDowngrade`, checked again whenever the cluster version moves).

use std::sync::Arc;
use std::time::Duration;

use super::state::{Decision, VersionState, decide, load};
use super::{SkewError, Version, check_skew};
use crate::api::Member;
use crate::error::EtcdError;
use crate::proto::raftpb::raft_command::Command as Cmd;
use crate::proto::raftpb::{ClusterVersionSet, DowngradeInfoSet, MemberVersion, RaftCommand};

/// Pause between attempts to publish, and between looks at the version state (etcd's leader
/// looks every 4 s; a shorter period makes upgrades and tests observe the cluster version sooner,
/// and costs one local read).
const INTERVAL: Duration = Duration::from_millis(500);

impl Member {
    /// The applied version state of the cluster (serializable: as this member has applied it).
    pub fn versions(&self) -> Result<VersionState, EtcdError> {
        load(&self.store)
    }

    /// The cluster version, once decided.
    pub fn cluster_version(&self) -> Option<Version> {
        self.versions().ok().and_then(|s| s.cluster_version())
    }

    /// The ids of every member (voters and learners) of the current membership.
    pub fn member_ids(&self) -> Vec<u64> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        metrics
            .membership_config
            .membership()
            .nodes()
            .map(|(id, _)| *id)
            .collect()
    }

    /// Commits an internal entry through the leader. Unlike client writes this also works on
    /// learners, which must publish their version too.
    pub(crate) async fn propose_internal(&self, command: Cmd) -> Result<(), EtcdError> {
        let command = RaftCommand {
            command: Some(command),
        };
        tokio::time::timeout(crate::api::REQUEST_TIMEOUT, self.proposer.propose(command))
            .await
            .map_err(|_| EtcdError::Timeout)??;
        Ok(())
    }
}

/// Publishes this member's version and storage format once it is in the membership, and again
/// whenever the applied record differs (a restart with another binary).
pub async fn publish(member: Arc<Member>) {
    let mine = MemberVersion {
        member_id: member.identity.member_id,
        server: member.server_version.to_string(),
        storage_format: crate::datadir::FORMAT,
    };
    loop {
        let recorded = member
            .versions()
            .ok()
            .and_then(|s| s.members.get(&mine.member_id).cloned());
        let published = recorded
            .is_some_and(|r| r.server == mine.server && r.storage_format == mine.storage_format);
        if published {
            return;
        }
        if member.member_ids().contains(&mine.member_id) {
            match member
                .propose_internal(Cmd::MemberVersion(mine.clone()))
                .await
            {
                Ok(()) => tracing::info!(version = %mine.server, "published the server version"),
                Err(e) => {
                    tracing::debug!(error = %e, "publishing the server version failed; retrying")
                }
            }
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

/// On the leader, keeps the cluster version at what [`decide`] says, and ends a downgrade once
/// every member runs its target.
pub async fn decide_cluster_version(member: Arc<Member>) {
    loop {
        tokio::time::sleep(INTERVAL).await;
        let leading =
            member.raft.metrics().borrow().current_leader == Some(member.identity.member_id);
        // Not while handing leadership over: the transferee must have the whole log.
        if !leading || member.leadership.transferring() {
            continue;
        }
        let Ok(state) = member.versions() else {
            continue;
        };
        let command = match decide(&state, &member.member_ids()) {
            Decision::Keep => continue,
            Decision::SetCluster(v) => {
                tracing::info!(from = ?state.cluster, to = %v, "setting the cluster version");
                Cmd::ClusterVersion(ClusterVersionSet {
                    version: v.to_string(),
                })
            }
            Decision::FinishDowngrade => {
                tracing::info!(cluster_version = ?state.cluster, "the cluster has been downgraded");
                Cmd::Downgrade(DowngradeInfoSet::default())
            }
        };
        if let Err(e) = member.propose_internal(command).await {
            tracing::warn!(error = %e, "failed to update the cluster version; retrying");
        }
    }
}

/// Whether `server` may run with the applied `state` (always, before a cluster version exists).
pub fn check_state(server: Version, state: &VersionState) -> Result<(), SkewError> {
    match state.cluster_version() {
        Some(cluster) => check_skew(server, cluster, state.downgrade_target()),
        None => Ok(()),
    }
}

/// Returns (and the member then stops) once the applied cluster version no longer admits this
/// member's version: a member that joined a cluster too far away, or was left behind by it.
/// It looks every [`INTERVAL`] rather than after every apply, which costs nothing under load.
pub async fn guard(member: Arc<Member>) -> SkewError {
    let mut every = tokio::time::interval(INTERVAL);
    loop {
        every.tick().await;
        if let Ok(state) = member.versions()
            && let Err(e) = check_state(member.server_version, &state)
        {
            return e;
        }
    }
}
