//! Pure builders of every child object of a StoreCluster, one module per kind:
//! `fn build_<what>(cluster: &ValidatedCluster, ...) -> <Kubernetes type>`. They take no client
//! and are unit-tested from YAML fixtures.

mod account;
pub mod backup;
mod bootstrap;
pub mod cert_manager;
mod network_policy;
mod pdb;
mod pod;
pub mod restore;
pub mod s3;
mod services;
mod statefulset;
pub mod tls;

pub use account::build_service_account;
pub use backup::{build_backup_cronjob, build_backup_job};
pub use bootstrap::{Bootstrap, ClusterState, build_bootstrap_config};
pub use network_policy::build_network_policy;
pub use pdb::build_pod_disruption_budget;
pub use restore::build_restore_source_job;
pub use services::{build_client_service, build_peer_service};
pub use statefulset::{DATA_DIR, build_statefulset};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::validate::ValidatedCluster;

/// Metadata of a child named `name`: the cluster's namespace and labels, owned by the
/// StoreCluster.
pub fn child_meta(cluster: &ValidatedCluster, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(cluster.names.namespace.clone()),
        labels: Some(cluster.names.labels()),
        owner_references: Some(vec![cluster.owner_reference()]),
        ..ObjectMeta::default()
    }
}
