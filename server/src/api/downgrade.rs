//! `Maintenance.Downgrade` with etcd 3.6's semantics, over oxcd's release versions (`version`):
//! VALIDATE checks that the target is exactly one minor below the cluster version and that no
//! downgrade is enabled; ENABLE validates, then records the target through the log, after which
//! the leader lowers the cluster version to it, so members of the older binary may replace the
//! newer ones one at a time; the leader ends the downgrade once every member runs the target.
//! CANCEL records the end (and, as etcd 3.6 does, answers success even with none in flight).
//! Every answer carries the cluster version as `major.minor`, as etcd's does.

use crate::error::EtcdError;
use crate::proto::etcdserverpb::downgrade_request::DowngradeAction;
use crate::proto::etcdserverpb::{DowngradeRequest, DowngradeResponse};
use crate::proto::raftpb::DowngradeInfoSet;
use crate::proto::raftpb::raft_command::Command as Cmd;
use crate::version::{Feature, Version};

use super::Member;

/// etcd's `convertToClusterVersion`: `major.minor.patch` or `major.minor`, patch dropped.
fn parse_target(v: &str) -> Result<Version, EtcdError> {
    // etcd parses with semver, which refuses a leading `v`; so do we.
    if v.starts_with('v') {
        return Err(EtcdError::WrongDowngradeVersionFormat);
    }
    v.parse::<Version>()
        .map(Version::minor_line)
        .map_err(|_| EtcdError::WrongDowngradeVersionFormat)
}

impl Member {
    /// Serves one Downgrade request.
    pub async fn downgrade(
        &self,
        request: DowngradeRequest,
    ) -> Result<DowngradeResponse, EtcdError> {
        match DowngradeAction::try_from(request.action) {
            Ok(DowngradeAction::Validate) => {
                let target = parse_target(&request.version)?;
                let cluster = self.downgrade_cluster_version()?;
                self.downgrade_validate(target).await?;
                self.downgrade_response(cluster)
            }
            Ok(DowngradeAction::Enable) => {
                let target = parse_target(&request.version)?;
                self.downgrade_cluster_version()?;
                self.downgrade_validate(target).await?;
                tracing::info!(%target, "enabling a downgrade");
                self.propose_internal(Cmd::Downgrade(DowngradeInfoSet {
                    enabled: true,
                    target: target.to_string(),
                }))
                .await?;
                self.downgrade_response(self.downgrade_cluster_version()?)
            }
            Ok(DowngradeAction::Cancel) => {
                self.linearizable().await?;
                if self.versions()?.downgrade.is_some() {
                    tracing::info!("cancelling the downgrade");
                    self.propose_internal(Cmd::Downgrade(DowngradeInfoSet::default()))
                        .await?;
                } else {
                    // etcd 3.6 logs ErrNoInflightDowngrade here and still answers success.
                    tracing::warn!(error = %EtcdError::NoInflightDowngrade, "failed to cancel downgrade");
                }
                self.downgrade_response(self.downgrade_cluster_version()?)
            }
            Err(_) => Err(EtcdError::UnknownMethod),
        }
    }

    /// The cluster version, once decided and new enough to know about downgrades.
    fn downgrade_cluster_version(&self) -> Result<Version, EtcdError> {
        let cluster = self.versions()?.cluster_version();
        match cluster {
            Some(cv) if Feature::Downgrade.enabled(Some(cv)) => Ok(cv),
            _ => Err(EtcdError::ClusterVersionUnavailable),
        }
    }

    /// etcd's `DowngradeValidate`: after a linearizable read, the target must be one minor
    /// below the cluster version and no downgrade may be enabled.
    async fn downgrade_validate(&self, target: Version) -> Result<(), EtcdError> {
        self.linearizable().await?;
        let state = self.versions()?;
        let allowed = state.cluster_version().and_then(Version::downgrade_target);
        if allowed != Some(target) {
            return Err(EtcdError::InvalidDowngradeTargetVersion);
        }
        if state.downgrade.is_some() {
            return Err(EtcdError::DowngradeInProcess);
        }
        Ok(())
    }

    fn downgrade_response(&self, cluster: Version) -> Result<DowngradeResponse, EtcdError> {
        Ok(DowngradeResponse {
            header: self.header(crate::mvcc::KvRead::rev(self.store.as_ref())),
            version: cluster.cluster_string(),
        })
    }
}
