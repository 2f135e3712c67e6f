//! oxcd-operator: reconciles `StoreCluster` resources into running oxcd clusters. The pipeline
//! per resource is observe → validate → build → apply → status; members are reached only
//! through the etcd API.

pub mod backups;
pub mod build;
pub mod certs;
pub mod controller;
pub mod cron;
pub mod http;
pub mod leader;
pub mod members;
pub mod metrics;
pub mod names;
pub mod plan;
pub mod reconcile;
pub mod restores;
pub mod rollout;
pub mod status;
pub mod validate;
pub mod versions;

/// An error and its sources, joined with ": " (our error messages never repeat their source).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
