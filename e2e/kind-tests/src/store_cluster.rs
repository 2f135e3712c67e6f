//! StoreClusters as the e2e tests see them: a dynamic API (the tests use the CRD as users do,
//! not the operator's types), readiness as the status reports it, bounded waits for it, and the
//! operator's Events about a cluster in the order they happened.

use std::time::Duration;

use anyhow::bail;
use k8s_openapi::api::core::v1::Event;
use kube::api::ListParams;
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Api, Client};

use crate::operator::{kubectl, operator_logs};

/// Bound of every wait for a StoreCluster to reach a state (members pull images, volumes are
/// provisioned).
pub const CLUSTER_WAIT: Duration = Duration::from_secs(240);

/// StoreClusters of namespace `ns`.
pub fn store_clusters(client: &Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("oxcd.io", "v1alpha1", "StoreCluster");
    Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk(&gvk))
}

/// The status condition `type_` is `True` (`None` when the status has no such condition).
pub fn condition_true(sc: &DynamicObject, type_: &str) -> Option<bool> {
    sc.data["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == type_)
        .map(|c| c["status"].as_str() == Some("True"))
}

/// The status condition `type_`'s reason, if the condition is there.
pub fn condition_reason(sc: &DynamicObject, type_: &str) -> Option<String> {
    sc.data["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == type_)
        .and_then(|c| c["reason"].as_str().map(str::to_owned))
}

/// Available with `voters` healthy voters, every member listed, and nothing in progress.
pub fn is_ready(sc: &DynamicObject, voters: usize) -> bool {
    let status = &sc.data["status"];
    let members = status["members"].as_array().map_or(0, Vec::len);
    status["ready"] == format!("{voters}/{voters}").as_str()
        && members == voters
        && condition_true(sc, "Available") == Some(true)
        && condition_true(sc, "Progressing") == Some(false)
}

/// Waits (at most `wait`) until StoreCluster `name` satisfies `done`; fails with its status and
/// the operator's log.
pub async fn await_store_cluster(
    client: &Client,
    ns: &str,
    name: &str,
    what: &str,
    wait: Duration,
    done: impl Fn(&DynamicObject) -> bool,
) -> anyhow::Result<DynamicObject> {
    let api = store_clusters(client, ns);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let sc = api.get_opt(name).await?;
        if let Some(sc) = sc.as_ref().filter(|sc| done(sc)) {
            return Ok(sc.clone());
        }
        if tokio::time::Instant::now() > deadline {
            let status = sc.map(|sc| sc.data["status"].to_string());
            bail!(
                "StoreCluster {name}: not {what} after {wait:?}\nstatus: {status:?}\noperator:\n{}\nmembers:\n{}",
                operator_logs().await,
                member_logs(ns, name).await
            );
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The last lines each member pod of StoreCluster `name` logged, this container's and, after a
/// restart, the previous one's (where a member that refuses to start says why).
async fn member_logs(ns: &str, name: &str) -> String {
    let selector = format!("app.kubernetes.io/name=oxcd,app.kubernetes.io/instance={name}");
    let mut logs = String::new();
    for previous in ["--previous=false", "--previous=true"] {
        let out = kubectl(&[
            "logs",
            "-n",
            ns,
            "-l",
            &selector,
            "-c",
            "oxcd",
            "--prefix",
            "--tail=20",
            previous,
        ])
        .await
        .unwrap_or_else(|error| format!("(no logs {previous}: {error:#})\n"));
        logs.push_str(&out);
    }
    logs
}

/// Waits (at most [`CLUSTER_WAIT`]) until StoreCluster `name` is Available with `voters` ready
/// voters and no change under way.
pub async fn await_ready(
    client: &Client,
    ns: &str,
    name: &str,
    voters: usize,
) -> anyhow::Result<DynamicObject> {
    let what = format!("Available with {voters} ready voters");
    await_store_cluster(client, ns, name, &what, CLUSTER_WAIT, |sc| {
        is_ready(sc, voters)
    })
    .await
}

/// Creates StoreCluster `name` (`replicas` members of `version`, small volumes, a NetworkPolicy
/// that admits kube-apiserver-labelled pods of this namespace) and waits until it is ready.
pub async fn create_ready(
    client: &Client,
    ns: &str,
    name: &str,
    version: &str,
    replicas: usize,
) -> anyhow::Result<DynamicObject> {
    let manifest: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "oxcd.io/v1alpha1",
        "kind": "StoreCluster",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "version": version,
            "storage": {"size": "256Mi"},
            // kube-apiserver-shaped clients of this namespace (the default is kube-system's).
            "networkPolicy": {"apiServer": {"podSelector": {"matchLabels": {"component": "kube-apiserver"}}}},
        },
    }))?;
    store_clusters(client, ns)
        .create(&kube::api::PostParams::default(), &manifest)
        .await?;
    await_ready(client, ns, name, replicas).await
}

/// The messages of the Events with one of `reasons` in namespace `ns`, oldest first.
pub async fn events(client: &Client, ns: &str, reasons: &[&str]) -> anyhow::Result<Vec<String>> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let mut list: Vec<Event> = events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref().is_some_and(|r| reasons.contains(&r)))
        .collect();
    list.sort_by_key(|e| {
        e.event_time
            .clone()
            .map(|t| t.0)
            .or(e.first_timestamp.clone().map(|t| t.0))
    });
    Ok(list.into_iter().filter_map(|e| e.message).collect())
}
