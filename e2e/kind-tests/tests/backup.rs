//! Scheduled backups on kind with real oxcd pods and the in-cluster S3 server: keys written to a
//! StoreCluster are in the snapshot its CronJob uploads (its revision covers them), the object in
//! S3 has the size and SHA-256 that `status.backup` reports, the backup pod's restore drill
//! restored it into an ephemeral member at the same revision, the `oxcd.io/backup-now`
//! annotation runs exactly one more backup, and the cluster is not Degraded; then a rollout
//! to the next minor starts only after a snapshot taken for it has completed.
//! The backup pod reaches the members through the operator's NetworkPolicy (enforced here by
//! kube-router) with the operator's client certificate.

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use kube::{Api, Client};
use oxcd_kind_tests::operator::{MemberClient, operator_logs, with_operator};
use oxcd_kind_tests::s3::deploy_s3;
use oxcd_kind_tests::store_cluster::{await_ready, await_store_cluster, store_clusters};
use serde_json::json;
use sha2::{Digest, Sha256};

const CLUSTER: &str = "store";
/// The CronJob runs every minute; a member's image is already on the node.
const BACKUP_WAIT: Duration = Duration::from_secs(240);
const KEYS: usize = 50;

#[tokio::test]
async fn scheduled_backup_lands_in_s3_with_the_checksum_and_revision_the_status_reports()
-> anyhow::Result<()> {
    with_operator("backup", |client, ns| async move {
        scenario(&client, &ns).await
    })
    .await
}

async fn scenario(client: &Client, ns: &str) -> anyhow::Result<()> {
    let s3 = deploy_s3(client, ns).await?;
    let bucket = s3.request("PUT", "/backups", b"").await?;
    ensure!(
        bucket.status == 200,
        "create bucket: HTTP {}",
        bucket.status
    );

    let manifest: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "oxcd.io/v1alpha1",
        "kind": "StoreCluster",
        "metadata": {"name": CLUSTER},
        "spec": {
            "replicas": 1,
            "version": "0.1.0",
            "storage": {"size": "256Mi"},
            "backup": {
                "schedule": "* * * * *",
                "s3": {
                    "bucket": "backups",
                    "endpoint": "http://s3:9000",
                    "forcePathStyle": true,
                    "credentialsSecretRef": {"name": "s3-credentials"},
                },
                "retention": {"maxCount": 2},
            },
        },
    }))?;
    let clusters = store_clusters(client, ns);
    clusters.create(&PostParams::default(), &manifest).await?;
    await_ready(client, ns, CLUSTER, 1).await?;

    let secret = format!("{CLUSTER}-client-tls");
    let mut member = MemberClient::connect(client, ns, &format!("{CLUSTER}-0"), &secret).await?;
    let mut written = 0;
    for i in 0..KEYS {
        let put = member
            .etcd
            .put(
                format!("/registry/backup/{i:03}"),
                format!("value-{i}"),
                None,
            )
            .await?;
        written = put.header().map_or(0, |h| h.revision());
    }

    // A scheduled backup taken after the writes.
    let deadline = tokio::time::Instant::now() + BACKUP_WAIT;
    let backup = loop {
        let sc = clusters.get(CLUSTER).await?;
        let backup = sc.data["status"]["backup"].clone();
        if backup["revision"].as_i64().is_some_and(|r| r >= written) {
            break backup;
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "no backup at revision {written} or later after {BACKUP_WAIT:?}\nstatus.backup: {backup}\njobs: {}\noperator:\n{}",
                jobs(client, ns).await,
                operator_logs().await
            );
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    };
    ensure!(backup["consecutiveFailures"] == 0, "failures: {backup}");
    ensure!(backup.get("lastError").is_none(), "an error: {backup}");
    let key = backup["lastKey"].as_str().context("no lastKey")?;
    ensure!(
        key.starts_with(&format!("{ns}/{CLUSTER}/")),
        "key {key} is not under the default prefix"
    );

    // The object in S3 is the one the status describes.
    let object = s3.request("GET", &format!("/backups/{key}"), b"").await?;
    ensure!(object.status == 200, "GET {key}: HTTP {}", object.status);
    ensure!(
        backup["size"].as_u64() == u64::try_from(object.body.len()).ok(),
        "status says {} bytes, S3 has {}",
        backup["size"],
        object.body.len()
    );
    let sha256 = format!("{:x}", Sha256::digest(&object.body));
    ensure!(
        backup["sha256"].as_str() == Some(sha256.as_str()),
        "status says sha256 {}, the object's is {sha256}",
        backup["sha256"]
    );

    // The Job restored what it uploaded into an ephemeral member before anything else.
    let drill = &backup["lastDrill"];
    ensure!(
        drill["result"] == "Passed" && drill["key"].as_str() == Some(key),
        "the restore drill of {key} did not pass: {drill}"
    );
    ensure!(
        drill["revision"] == backup["revision"] && drill["hashKV"].as_i64().is_some(),
        "the drill restored another revision, or no HashKV: {drill}"
    );

    // On demand: the annotation runs one more backup, recorded in the status.
    let patch = json!({"metadata": {"annotations": {"oxcd.io/backup-now": "e2e-1"}}});
    clusters
        .patch(CLUSTER, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    let deadline = tokio::time::Instant::now() + BACKUP_WAIT;
    let finished = loop {
        let on_demand = list_jobs(client, ns, "oxcd.io/backup=on-demand").await?;
        let completed = on_demand
            .iter()
            .find_map(|j| j.status.as_ref()?.completion_time.clone());
        if let Some(time) = completed {
            break time.0.to_string();
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "no on-demand backup Job completed\njobs: {}",
                jobs(client, ns).await
            );
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    };
    // Accounted for once the status's last Job finished no earlier (RFC 3339 UTC sorts).
    let deadline = tokio::time::Instant::now() + BACKUP_WAIT;
    loop {
        let backup = clusters.get(CLUSTER).await?.data["status"]["backup"].clone();
        let last = backup["lastJobTime"].as_str().unwrap_or_default();
        if backup["onDemandToken"] == "e2e-1" && last >= finished.as_str() {
            ensure!(backup["consecutiveFailures"] == 0, "failures: {backup}");
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the on-demand backup finished at {finished} is not in the status: {backup}");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    ensure!(
        list_jobs(client, ns, "oxcd.io/backup=on-demand")
            .await?
            .len()
            == 1,
        "one token, one Job"
    );

    let sc = clusters.get(CLUSTER).await?;
    let degraded = sc.data["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Degraded")
        .cloned()
        .unwrap_or_default();
    ensure!(degraded["status"] == "False", "Degraded: {degraded}");

    snapshot_before_rollout(client, ns).await
}

/// With backups configured, a rollout (here: the next minor) first takes a snapshot: the Job
/// `before-rollout-<revision>` completes before the member restarts onto the new template.
async fn snapshot_before_rollout(client: &Client, ns: &str) -> anyhow::Result<()> {
    let version = env!("CARGO_PKG_VERSION");
    let mut parts = version.split('.');
    let major = parts.next().context("major")?;
    let minor: u64 = parts.next().context("minor")?.parse()?;
    let next = format!("{major}.{}.0", minor + 1);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let member = format!("{CLUSTER}-0");
    let before = pods.get(&member).await?.metadata.uid;
    let clusters = store_clusters(client, ns);
    let patch = json!({"spec": {"version": next}});
    clusters
        .patch(CLUSTER, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    let wanted = next.clone();
    await_store_cluster(
        client,
        ns,
        CLUSTER,
        "on the next minor",
        BACKUP_WAIT,
        move |sc| {
            sc.data["status"]["version"] == wanted.as_str()
                && sc.data["status"]["upgrade"].is_null()
                && sc.data["status"]["ready"] == "1/1"
        },
    )
    .await?;
    let restarted = pods.get(&member).await?;
    ensure!(
        restarted.metadata.uid != before,
        "{member} was not restarted"
    );
    let started = restarted
        .metadata
        .creation_timestamp
        .context("no creation time")?;
    let snapshots: Vec<Job> = list_jobs(client, ns, "oxcd.io/backup=on-demand")
        .await?
        .into_iter()
        .filter(|job| {
            job.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("oxcd.io/backup-now"))
                .is_some_and(|token| token.starts_with("before-rollout-"))
        })
        .collect();
    let completed = snapshots
        .iter()
        .find_map(|job| job.status.as_ref()?.completion_time.clone())
        .with_context(|| {
            format!("no completed snapshot before the rollout\njobs: {snapshots:?}")
        })?;
    ensure!(
        completed.0 <= started.0,
        "the snapshot completed at {} after {member} restarted at {}",
        completed.0,
        started.0
    );
    Ok(())
}

async fn list_jobs(client: &Client, ns: &str, selector: &str) -> anyhow::Result<Vec<Job>> {
    let api: Api<Job> = Api::namespaced(client.clone(), ns);
    Ok(api
        .list(&ListParams::default().labels(selector))
        .await?
        .items)
}

/// The backup Jobs and their state, for failure messages.
async fn jobs(client: &Client, ns: &str) -> String {
    match list_jobs(client, ns, "oxcd.io/backup").await {
        Ok(list) => list
            .iter()
            .map(|job| {
                let name = job.metadata.name.clone().unwrap_or_default();
                let status = serde_json::to_string(&job.status).unwrap_or_default();
                format!("{name}: {status}")
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Err(error) => format!("(cannot list Jobs: {error})"),
    }
}
