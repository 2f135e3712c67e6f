//! oxcd-operator: reconciles `StoreCluster` resources into running oxcd clusters. The pipeline
//! per resource is observe → validate → build → apply → status; members are reached only
//! through the etcd API.

pub mod certs;
pub mod leader;
