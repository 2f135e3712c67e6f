//! The bootstrap ConfigMap: the `--initial-cluster` and `--initial-cluster-state` a member that
//! starts with an empty data dir uses (as environment variables). The first members get `new`
//! and each other; once the cluster exists, a member added later gets `existing` and the
//! membership as it was when it was added. Members that restart with data ignore both.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;

use super::child_meta;
use crate::validate::ValidatedCluster;

/// Key of `--initial-cluster` in the ConfigMap (read through `envFrom`).
pub const INITIAL_CLUSTER_KEY: &str = "ETCD_INITIAL_CLUSTER";
/// Key of `--initial-cluster-state`.
pub const INITIAL_CLUSTER_STATE_KEY: &str = "ETCD_INITIAL_CLUSTER_STATE";

/// etcd's `--initial-cluster-state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterState {
    /// The members form a new cluster together.
    New,
    /// The member joins a running cluster that already added it.
    Existing,
}

impl ClusterState {
    /// The flag value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Existing => "existing",
        }
    }
}

/// How members that start empty bootstrap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bootstrap {
    /// `new` or `existing`.
    pub state: ClusterState,
    /// `name=peer-url` of every member they should know.
    pub members: Vec<(String, String)>,
}

impl Bootstrap {
    /// A new cluster of the spec's size: members 0..replicas. A restored cluster starts with
    /// member 0 alone (a snapshot restores into a one-member cluster); the others join it as
    /// learners and receive the restored data from it.
    pub fn new_cluster(cluster: &ValidatedCluster) -> Self {
        let tls = cluster.tls_enabled();
        let count = match cluster.spec.bootstrap {
            Some(_) => 1,
            None => u32::try_from(cluster.spec.replicas).unwrap_or(1),
        };
        Self {
            state: ClusterState::New,
            members: (0..count)
                .map(|ordinal| {
                    (
                        cluster.names.member(ordinal),
                        cluster.names.peer_url(ordinal, tls),
                    )
                })
                .collect(),
        }
    }

    /// The `--initial-cluster` value.
    pub fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|(name, url)| format!("{name}={url}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Reads the bootstrap back from the ConfigMap the operator wrote.
    pub fn from_config_map(config_map: &ConfigMap) -> Option<Self> {
        let data = config_map.data.as_ref()?;
        let state = match data.get(INITIAL_CLUSTER_STATE_KEY)?.as_str() {
            "new" => ClusterState::New,
            "existing" => ClusterState::Existing,
            _ => return None,
        };
        let members = data
            .get(INITIAL_CLUSTER_KEY)?
            .split(',')
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                entry
                    .split_once('=')
                    .map(|(name, url)| (name.to_owned(), url.to_owned()))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self { state, members })
    }
}

/// The bootstrap ConfigMap.
pub fn build_bootstrap_config(cluster: &ValidatedCluster, bootstrap: &Bootstrap) -> ConfigMap {
    ConfigMap {
        metadata: child_meta(cluster, cluster.names.bootstrap_config()),
        data: Some(BTreeMap::from([
            (INITIAL_CLUSTER_KEY.to_owned(), bootstrap.initial_cluster()),
            (
                INITIAL_CLUSTER_STATE_KEY.to_owned(),
                bootstrap.state.as_str().to_owned(),
            ),
        ])),
        ..ConfigMap::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::fixtures::{MINIMAL, validated};

    #[test]
    fn a_new_cluster_names_every_initial_member_with_its_peer_url() {
        let cluster = validated(MINIMAL);
        let config = build_bootstrap_config(&cluster, &Bootstrap::new_cluster(&cluster));
        let data = config.data.clone().unwrap_or_default();
        assert_eq!(
            data.get("ETCD_INITIAL_CLUSTER_STATE").map(String::as_str),
            Some("new")
        );
        assert_eq!(
            data.get("ETCD_INITIAL_CLUSTER").map(String::as_str),
            Some(
                "demo-0=https://demo-0.demo-peer.prod.svc:2380,\
                 demo-1=https://demo-1.demo-peer.prod.svc:2380,\
                 demo-2=https://demo-2.demo-peer.prod.svc:2380"
            )
        );
        assert_eq!(
            Bootstrap::from_config_map(&config),
            Some(Bootstrap::new_cluster(&cluster))
        );
    }

    #[test]
    fn a_restored_cluster_starts_with_its_first_member_alone() {
        let cluster = validated(
            "
spec:
  version: 0.1.0
  replicas: 3
  bootstrap: {restore: {source: {s3: {bucket: backups, latest: true}}}}
",
        );
        let bootstrap = Bootstrap::new_cluster(&cluster);
        assert_eq!(bootstrap.state, ClusterState::New);
        assert_eq!(
            bootstrap.initial_cluster(),
            "demo-0=https://demo-0.demo-peer.prod.svc:2380"
        );
    }

    #[test]
    fn plain_text_clusters_use_http_peer_urls() {
        let cluster = validated("spec: {version: 0.1.0, replicas: 1, tls: {mode: Disabled}}");
        assert_eq!(
            Bootstrap::new_cluster(&cluster).initial_cluster(),
            "demo-0=http://demo-0.demo-peer.prod.svc:2380"
        );
    }
}
