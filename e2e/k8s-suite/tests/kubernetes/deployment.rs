//! A Deployment end to end through the controllers: the deployment and replicaset controllers
//! create pods, the scheduler binds them to kwok's fake nodes, kwok runs them; scaling up adds
//! pods, and a foreground delete lets the garbage collector remove them all.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use oxcd_k8s_suite::{ControlPlane, eventually};
use serde_json::json;

use crate::common::new_namespace;

pub async fn run(cp: &ControlPlane) -> Result<()> {
    let client = cp.client();
    let ns = new_namespace(&client, "deploy").await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "registry.invalid/web:1"}]}
            }
        }
    }))?;
    deployments
        .create(&PostParams::default(), &deployment)
        .await?;
    wait_available(&deployments, 3).await?;
    check_pods(&pods, 3).await?;

    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await?;
    wait_available(&deployments, 5).await?;
    check_pods(&pods, 5).await?;

    deployments
        .delete("web", &DeleteParams::foreground())
        .await?;
    eventually(
        Duration::from_secs(90),
        "deployment and its pods deleted",
        || async {
            let gone = deployments.get_opt("web").await?.is_none()
                && pods.list(&ListParams::default()).await?.items.is_empty();
            Ok(gone.then_some(()))
        },
    )
    .await?;
    Ok(())
}

async fn wait_available(api: &Api<Deployment>, n: i32) -> Result<()> {
    eventually(
        Duration::from_secs(90),
        &format!("{n} replicas available"),
        || async {
            let d = api.get("web").await?;
            let st = d.status.unwrap_or_default();
            let done = st.available_replicas == Some(n)
                && st.updated_replicas == Some(n)
                && st.replicas == Some(n)
                && st.observed_generation == d.metadata.generation;
            Ok(done.then_some(()))
        },
    )
    .await
}

/// Exactly `n` pods, each bound to a kwok node, Running with a pod IP.
async fn check_pods(api: &Api<Pod>, n: usize) -> Result<()> {
    let list = api.list(&ListParams::default().labels("app=web")).await?;
    let live: Vec<&Pod> = list
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    ensure!(live.len() == n, "{} pods for {n} replicas", live.len());
    for pod in live {
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .with_context(|| format!("pod {name} is not bound"))?;
        ensure!(node.starts_with("kwok-node-"), "pod {name} on node {node}");
        let status = pod.status.as_ref().context("pod without status")?;
        ensure!(
            status.phase.as_deref() == Some("Running"),
            "pod {name} phase {:?}",
            status.phase
        );
        ensure!(status.pod_ip.is_some(), "pod {name} has no IP");
    }
    Ok(())
}
