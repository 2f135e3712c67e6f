//! The kind environment itself: pods of a Deployment run and serve through a Service, and a
//! NetworkPolicy is enforced — it blocks one client pod and allows another, and the blocked pod
//! connects before the policy exists and again once it is removed, so the block is the policy's.

use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use oxcd_kind_tests::{
    await_condition, busybox_image, deployment_available, exec, kind_client, pod_running,
    with_temp_ns,
};
use serde_json::json;

/// Bound of every wait for the cluster to reach a state (pods scheduled, policy programmed).
const WAIT: Duration = Duration::from_secs(120);
/// What the web pods answer, so a response is known to come from them.
const GREETING: &str = "hello from oxcd-e2e-web";

#[tokio::test]
async fn network_policy_blocks_one_client_and_allows_another() -> anyhow::Result<()> {
    let Some(client) = kind_client().await? else {
        return Ok(());
    };
    with_temp_ns(&client, "netpol", |client, ns| async move {
        network_policy_scenario(client, &ns).await
    })
    .await
}

async fn network_policy_scenario(client: Client, ns: &str) -> anyhow::Result<()> {
    let image = busybox_image();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let policies: Api<NetworkPolicy> = Api::namespaced(client, ns);
    let create = PostParams::default();

    // A Deployment of two web servers, spread over the nodes, behind the Service "web".
    deployments
        .create(&create, &serde_json::from_value(web_deployment(&image))?)
        .await?;
    services
        .create(&create, &serde_json::from_value(web_service())?)
        .await?;
    for role in ["allowed", "blocked"] {
        pods.create(&create, &serde_json::from_value(client_pod(role, &image))?)
            .await?;
    }
    await_condition(&deployments, "web", "available", WAIT, deployment_available).await?;
    for role in ["allowed", "blocked"] {
        await_condition(
            &pods,
            &format!("client-{role}"),
            "running",
            WAIT,
            pod_running,
        )
        .await?;
    }

    // Without a policy, both clients reach the web pods through the Service.
    for role in ["allowed", "blocked"] {
        wait_for_fetch(&pods, role, true).await?;
    }

    // The policy admits only the pods labelled role=allowed to the web pods.
    policies
        .create(&create, &serde_json::from_value(web_policy())?)
        .await?;
    wait_for_fetch(&pods, "blocked", false).await?;
    for attempt in 1..=3 {
        let (ok, detail) = fetch(&pods, "blocked").await?;
        if ok {
            bail!(
                "blocked client reached the web pods under the policy (check {attempt}): {detail}"
            );
        }
    }
    wait_for_fetch(&pods, "allowed", true).await?;

    // With the policy removed the blocked client connects again: the policy did the blocking.
    policies
        .delete("web-ingress", &DeleteParams::default())
        .await?;
    wait_for_fetch(&pods, "blocked", true).await?;
    Ok(())
}

/// Sends an HTTP GET to the Service from the client pod `client-<role>` (busybox `nc`, which gives
/// up after 3 s): whether the web pods' greeting came back, and what the client got.
async fn fetch(pods: &Api<Pod>, role: &str) -> anyhow::Result<(bool, String)> {
    let request = r"printf 'GET /index.html HTTP/1.0\r\nHost: web\r\n\r\n' | nc -w 3 web 80";
    let out = exec(pods, &format!("client-{role}"), &["sh", "-c", request]).await?;
    let ok = out.success && out.stdout.contains(GREETING);
    Ok((ok, format!("{}{}", out.stdout.trim(), out.stderr.trim())))
}

/// Fetches from `client-<role>` until the outcome is `reachable`, within [`WAIT`].
async fn wait_for_fetch(pods: &Api<Pod>, role: &str, reachable: bool) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        let (ok, detail) = fetch(pods, role).await?;
        if ok == reachable {
            println!(
                "client-{role}: reachable={reachable} ({})",
                detail.lines().next().unwrap_or("")
            );
            return Ok(());
        }
        last = detail;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let want = if reachable {
        "reach"
    } else {
        "be blocked from"
    };
    Err(anyhow::anyhow!("last attempt: {last}"))
        .with_context(|| format!("client-{role} did not {want} the web pods within {WAIT:?}"))
}

fn web_deployment(image: &str) -> serde_json::Value {
    let script = format!(
        "mkdir -p /tmp/www && echo \"{GREETING} $(hostname)\" > /tmp/www/index.html \
         && exec httpd -f -v -p 8080 -h /tmp/www"
    );
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": "web" },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "topologySpreadConstraints": [{
                        "maxSkew": 1,
                        "topologyKey": "kubernetes.io/hostname",
                        "whenUnsatisfiable": "ScheduleAnyway",
                        "labelSelector": { "matchLabels": { "app": "web" } }
                    }],
                    "containers": [{
                        "name": "httpd",
                        "image": image,
                        "command": ["/bin/sh", "-c", script],
                        "ports": [{ "name": "http", "containerPort": 8080 }],
                        "readinessProbe": {
                            "httpGet": { "path": "/index.html", "port": "http" },
                            "periodSeconds": 1
                        },
                        "securityContext": { "runAsUser": 65534, "allowPrivilegeEscalation": false }
                    }]
                }
            }
        }
    })
}

fn web_service() -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "name": "web" },
        "spec": {
            "selector": { "app": "web" },
            "ports": [{ "name": "http", "port": 80, "targetPort": "http" }]
        }
    })
}

fn client_pod(role: &str, image: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": format!("client-{role}"), "labels": { "role": role } },
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "client",
                "image": image,
                "command": ["sleep", "3600"],
                "securityContext": { "runAsUser": 65534, "allowPrivilegeEscalation": false }
            }]
        }
    })
}

fn web_policy() -> serde_json::Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": { "name": "web-ingress" },
        "spec": {
            "podSelector": { "matchLabels": { "app": "web" } },
            "policyTypes": ["Ingress"],
            "ingress": [{
                "from": [{ "podSelector": { "matchLabels": { "role": "allowed" } } }],
                "ports": [{ "protocol": "TCP", "port": 8080 }]
            }]
        }
    })
}
