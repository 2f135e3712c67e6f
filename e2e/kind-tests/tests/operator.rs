//! The operator on kind with real oxcd pods: a StoreCluster of 3 becomes Available as one
//! cluster; data written survives deleting a pod; only a pod labelled like kube-apiserver
//! reaches the client port, and only with the generated client certificate; 3→5→3 adds learners,
//! promotes them and removes members in that order while a client keeps writing; a member whose
//! pod and volume are lost is replaced by a new member under the same name.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{bail, ensure};
use etcd_client::GetOptions;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use kube::{Api, Client};
use oxcd_kind_tests::operator::{MemberClient, operator_logs, with_operator};
use oxcd_kind_tests::store_cluster::{self, CLUSTER_WAIT, await_ready, is_ready, store_clusters};
use oxcd_kind_tests::{await_condition, busybox_image, exec, pod_running};
use serde_json::json;

/// Bound of every wait for the cluster to reach a state.
const WAIT: Duration = CLUSTER_WAIT;
const CLUSTER: &str = "store";
const CLIENT_SECRET: &str = "store-client-tls";

#[tokio::test]
async fn store_cluster_forms_survives_pod_loss_enforces_policy_and_scales() -> anyhow::Result<()> {
    with_operator("operator", |client, ns| async move {
        scenario(&client, &ns).await
    })
    .await
}

async fn scenario(client: &Client, ns: &str) -> anyhow::Result<()> {
    let clusters = store_clusters(client, ns);
    let formed = store_cluster::create_ready(client, ns, CLUSTER, "0.1.0", 3).await?;
    let leader = formed.data["status"]["leader"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    ensure!(
        leader.starts_with("store-"),
        "no leader in {}",
        formed.data["status"]
    );

    // Data written through a member survives deleting another member's pod.
    let mut first = MemberClient::connect(client, ns, "store-0", CLIENT_SECRET).await?;
    for i in 0..100 {
        first
            .etcd
            .put(format!("/registry/e2e/{i:03}"), format!("value-{i}"), None)
            .await?;
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let uid = pods.get("store-1").await?.metadata.uid;
    pods.delete("store-1", &DeleteParams::default()).await?;
    await_condition(
        &pods,
        "store-1",
        "recreated and ready",
        WAIT,
        move |pod: Option<&Pod>| pod.is_some_and(|p| p.metadata.uid != uid) && pod_running(pod),
    )
    .await?;
    await_ready(client, ns, CLUSTER, 3).await?;
    let held = local_keys(client, ns, "store-1", "/registry/e2e/").await?;
    ensure!(
        held == 100,
        "store-1 has {held} of 100 keys after its pod was replaced"
    );

    // mTLS: the generated client certificate is required.
    let mut anonymous =
        MemberClient::connect_without_certificate(client, ns, "store-0", CLIENT_SECRET).await;
    let refused = match anonymous.as_mut() {
        Ok(member) => member.etcd.get("/registry/e2e/000", None).await.is_err(),
        Err(_) => true,
    };
    ensure!(refused, "a client without a certificate was served");

    // NetworkPolicy: a kube-apiserver-labelled pod reaches 2379, another pod does not.
    check_policy(client, ns).await?;

    // 3 → 5 → 3 under continuous writes.
    let failures = Arc::new(AtomicU64::new(0));
    let written = Arc::new(AtomicU64::new(0));
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let writer = {
        let (failures, written) = (failures.clone(), written.clone());
        let mut etcd = first.etcd.clone();
        tokio::spawn(async move {
            let mut i = 0u64;
            while !*stopped.borrow_and_update() {
                // A write may meet a leader change: retry a few times, as clients do.
                let mut ok = false;
                for _ in 0..5 {
                    if etcd
                        .put(format!("/registry/scale/{i:06}"), "x", None)
                        .await
                        .is_ok()
                    {
                        ok = true;
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                if ok {
                    written.fetch_add(1, Ordering::Relaxed);
                } else {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let scale = |replicas: i32| json!({"spec": {"replicas": replicas}});
    clusters
        .patch(CLUSTER, &PatchParams::default(), &Patch::Merge(&scale(5)))
        .await?;
    await_ready(client, ns, CLUSTER, 5).await?;
    clusters
        .patch(CLUSTER, &PatchParams::default(), &Patch::Merge(&scale(3)))
        .await?;
    await_ready(client, ns, CLUSTER, 3).await?;
    let _ = stop.send(true);
    writer.await?;
    let (written, failures) = (
        written.load(Ordering::Relaxed),
        failures.load(Ordering::Relaxed),
    );
    println!("writes during scaling: {written} acknowledged, {failures} failed after retries");
    ensure!(
        failures == 0,
        "{failures} writes failed beyond leader-change retries"
    );
    ensure!(written > 0, "no write happened while scaling");
    let after = first
        .etcd
        .get(
            "/registry/scale/",
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await?;
    ensure!(
        after.count() == i64::try_from(written)?,
        "{} keys stored, {written} acknowledged",
        after.count()
    );

    // The membership changed in the right order, one change at a time.
    let changes = membership_events(client, ns).await?;
    let expected = [
        "added store-3 as learner",
        "promoted learner store-3",
        "added store-4 as learner",
        "promoted learner store-4",
        "removed member store-4",
        "removed member store-3",
    ];
    let mut remaining = expected.iter().peekable();
    for note in &changes {
        if remaining
            .peek()
            .is_some_and(|want| note.starts_with(**want))
        {
            remaining.next();
        }
    }
    ensure!(
        remaining.peek().is_none(),
        "membership changes out of order: {changes:#?}"
    );

    // Removed members' pods and volumes are gone.
    // The StatefulSet controller deletes their pods after the membership shrank (graceful
    // termination takes up to 30 s), and their claims after the pods.
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let mut left = Vec::new();
        for gone in ["store-3", "store-4"] {
            if pods.get_opt(gone).await?.is_some() {
                left.push(format!("pod {gone}"));
            }
        }
        let claims_left = claims.list(&ListParams::default()).await?;
        left.extend(
            claims_left
                .items
                .iter()
                .filter(|c| c.metadata.deletion_timestamp.is_none())
                .filter_map(|c| c.metadata.name.clone())
                .filter(|n| n.ends_with("store-3") || n.ends_with("store-4")),
        );
        if left.is_empty() {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "scaled-in members left behind: {left:?}"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    replace_lost_member(client, ns, &pods, &claims).await
}

/// A member whose pod and volume are lost comes back as a new member under the same name: the
/// operator removes the old member (the new pod refuses to rejoin under its id with no data),
/// adds it again as a learner and promotes it once it caught up.
async fn replace_lost_member(
    client: &Client,
    ns: &str,
    pods: &Api<Pod>,
    claims: &Api<PersistentVolumeClaim>,
) -> anyhow::Result<()> {
    let member_id = |sc: &DynamicObject| {
        sc.data["status"]["members"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["name"] == "store-1")
            .and_then(|m| m["id"].as_str().map(str::to_owned))
    };
    let before = member_id(&await_ready(client, ns, CLUSTER, 3).await?);
    ensure!(before.is_some(), "store-1 is not in the members table");
    claims
        .delete("data-store-1", &DeleteParams::default())
        .await?;
    pods.delete("store-1", &DeleteParams::default()).await?;
    let clusters = store_clusters(client, ns);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let sc = clusters.get(CLUSTER).await?;
        let now = member_id(&sc);
        if is_ready(&sc, 3) && now.is_some() && now != before {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "store-1 not replaced after {WAIT:?} (member id {before:?} → {now:?})\nstatus: {}\noperator:\n{}",
                sc.data["status"],
                operator_logs().await
            );
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    // The new member holds everything the old one had.
    let held = local_keys(client, ns, "store-1", "/registry/e2e/").await?;
    ensure!(held == 100, "the replaced store-1 has {held} of 100 keys");
    let changes = membership_events(client, ns).await?;
    let replacement = changes
        .iter()
        .skip_while(|note| !note.starts_with("removed member store-1"))
        .collect::<Vec<_>>();
    ensure!(
        replacement
            .first()
            .is_some_and(|n| n.contains("lost its data"))
            && replacement
                .get(1)
                .is_some_and(|n| n.starts_with("added store-1 as learner"))
            && replacement
                .get(2)
                .is_some_and(|n| n.starts_with("promoted learner store-1")),
        "store-1 was not replaced by remove → add learner → promote: {changes:#?}"
    );
    Ok(())
}

/// How many keys under `prefix` member `pod` holds itself (a serializable read, answered from
/// its own store).
async fn local_keys(client: &Client, ns: &str, pod: &str, prefix: &str) -> anyhow::Result<usize> {
    let mut member = MemberClient::connect(client, ns, pod, CLIENT_SECRET).await?;
    let read = member
        .etcd
        .get(
            prefix,
            Some(GetOptions::new().with_prefix().with_serializable()),
        )
        .await?;
    Ok(read.kvs().len())
}

async fn membership_events(client: &Client, ns: &str) -> anyhow::Result<Vec<String>> {
    store_cluster::events(client, ns, &["MembershipChanged"]).await
}

async fn connects(pods: &Api<Pod>, pod: &str, host: &str, port: u16) -> anyhow::Result<bool> {
    let probe = format!("echo | timeout 10 nc -w 3 {host} {port}");
    Ok(exec(pods, pod, &["sh", "-c", &probe]).await?.success)
}

async fn check_policy(client: &Client, ns: &str) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    for (name, labels) in [
        ("apiserver", json!({"component": "kube-apiserver"})),
        ("intruder", json!({})),
    ] {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "main", "image": busybox_image(), "command": ["sleep", "3600"]}]},
        }))?;
        pods.create(&PostParams::default(), &pod).await?;
        await_condition(&pods, name, "running", WAIT, pod_running).await?;
    }
    let target = format!("{CLUSTER}-client.{ns}.svc");
    let reach = |pod: &'static str| {
        let (pods, target) = (pods.clone(), target.clone());
        async move { anyhow::Ok(connects(&pods, pod, &target, 2379).await?) }
    };
    // Policies take a moment to be programmed: the allowed pod must connect within the wait.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !reach("apiserver").await? {
        if tokio::time::Instant::now() > deadline {
            bail!("the kube-apiserver-labelled pod cannot reach {target}:2379");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    ensure!(
        !reach("intruder").await?,
        "an unlabelled pod reached {target}:2379"
    );
    let peer = exec(
        &pods,
        "intruder",
        &[
            "nc",
            "-z",
            "-w",
            "3",
            &format!("store-0.store-peer.{ns}.svc"),
            "2380",
        ],
    )
    .await?;
    ensure!(!peer.success, "an unlabelled pod reached the peer port");
    Ok(())
}
