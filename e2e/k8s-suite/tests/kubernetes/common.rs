//! Helpers shared by the checks: fresh namespaces, resource versions, API error codes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client, Resource};
use oxcd_k8s_suite::eventually;

/// The configmap every namespace gets from the controller-manager's root-ca-cert-publisher.
pub const ROOT_CA: &str = "kube-root-ca.crt";

/// Creates a namespace named `<prefix>-<suffix>` (unique per run) and returns its name once the
/// controller-manager has published `kube-root-ca.crt` into it, so that the namespace's content
/// no longer changes by itself (checks count its configmaps).
pub async fn new_namespace(client: &Client, prefix: &str) -> Result<String> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let name = format!("{prefix}-{nanos:08x}");
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .with_context(|| format!("failed to create namespace {name}"))?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &name);
    eventually(
        Duration::from_secs(30),
        "kube-root-ca.crt published",
        || async { Ok(cms.get_opt(ROOT_CA).await?.map(|_| ())) },
    )
    .await?;
    Ok(name)
}

/// The object's resourceVersion as a number (etcd revision); an error when absent or not numeric.
pub fn rv<K: Resource>(obj: &K) -> Result<u64> {
    let rv = obj
        .meta()
        .resource_version
        .as_deref()
        .context("object has no resourceVersion")?;
    rv.parse()
        .with_context(|| format!("resourceVersion {rv} is not a number"))
}

/// The HTTP code of a Kubernetes API error, if `err` is one.
pub fn api_code(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}
