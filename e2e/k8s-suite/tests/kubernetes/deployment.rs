//! A Deployment end to end through the controllers: the deployment and replicaset controllers
//! create pods, the scheduler binds them to nodes (kwok's fake nodes, which run them without an
//! image, or an existing cluster's real kubelets, which run a busybox); scaling up adds pods, and
//! a foreground delete lets the garbage collector remove them all.

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
    // Real kubelets pull and run the image: the kind cluster's local busybox, which sleeps. A
    // second of grace: sleep, as pid 1, ignores the SIGTERM of the delete.
    let container = if cp.fake_nodes() {
        json!({"name": "web", "image": "registry.invalid/web:1"})
    } else {
        json!({"name": "web", "image": busybox_image(), "command": ["sleep", "3600"]})
    };
    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [container], "terminationGracePeriodSeconds": 1}
            }
        }
    }))?;
    deployments
        .create(&PostParams::default(), &deployment)
        .await?;
    wait_available(&deployments, 3).await?;
    check_pods(cp, &pods, 3).await?;

    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await?;
    wait_available(&deployments, 5).await?;
    check_pods(cp, &pods, 5).await?;

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

/// The image of the pods on real nodes: `OXCD_E2E_BUSYBOX_IMAGE` (as the kind suite), by default
/// the busybox `e2e/kind/up` builds and serves from its local registry.
fn busybox_image() -> String {
    std::env::var("OXCD_E2E_BUSYBOX_IMAGE").unwrap_or_else(|_| "oxcd.local/busybox:1.35".into())
}

/// Exactly `n` pods, each bound to a node (a kwok node on a local control plane), Running with a
/// pod IP.
async fn check_pods(cp: &ControlPlane, api: &Api<Pod>, n: usize) -> Result<()> {
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
        ensure!(
            !cp.fake_nodes() || node.starts_with("kwok-node-"),
            "pod {name} on node {node}"
        );
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
