//! The disaster-recovery runbook (`docs/disaster-recovery.md`) on kind with real oxcd pods and
//! the in-cluster S3 server, with the runbook's own StoreCluster manifest and kubectl commands:
//! keys written to a 3-member cluster → a scheduled backup lands → the StoreCluster and its
//! PVCs are deleted → a new StoreCluster restored from `latest` grows to 3 members with the
//! same keys and the same HashKV at the backup's revision on every member, its history
//! continuing above it, and `status.restoredFrom` naming the snapshot. Then a StoreCluster
//! declaring a corrupt object is never created: no StatefulSet, no pod, `Degraded`
//! `RestoreFailed` saying why.

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use etcd_client::GetOptions;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client};
use oxcd_kind_tests::operator::{MemberClient, operator_logs, with_operator};
use oxcd_kind_tests::repo_root;
use oxcd_kind_tests::s3::deploy_s3;
use oxcd_kind_tests::store_cluster::{await_store_cluster, condition_reason, events, is_ready};

const CLUSTER: &str = "store";
const BROKEN: &str = "broken";
const RUNBOOK: &str = "docs/disaster-recovery.md";
/// The runbook's S3 endpoint, and the in-cluster server's in the test namespace.
const RUNBOOK_ENDPOINT: &str = "http://minio.storage.svc:9000";
const TEST_ENDPOINT: &str = "http://s3:9000";
const KEYS: usize = 40;
/// The CronJob runs every minute here.
const BACKUP_WAIT: Duration = Duration::from_secs(240);
/// Pin, restore, then two learners added and promoted one after the other.
const RESTORE_WAIT: Duration = Duration::from_secs(480);
/// Three download attempts with the Job's back-off between them.
const FAILURE_WAIT: Duration = Duration::from_secs(300);

#[tokio::test]
async fn a_lost_cluster_comes_back_from_its_latest_backup_and_a_corrupt_one_is_never_created()
-> anyhow::Result<()> {
    with_operator("restore", |client, ns| async move {
        scenario(&client, &ns).await
    })
    .await
}

/// The runbook's restored StoreCluster (its only YAML block), aimed at the test's S3 server.
fn runbook_manifest() -> anyhow::Result<String> {
    let text = std::fs::read_to_string(repo_root().join(RUNBOOK))?;
    let start = text
        .find("```yaml\n")
        .context("no yaml block in the runbook")?
        + 8;
    let end = start
        + text[start..]
            .find("```")
            .context("unterminated yaml block")?;
    Ok(text[start..end].replace(RUNBOOK_ENDPOINT, TEST_ENDPOINT))
}

async fn kubectl(args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("kubectl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("failed to run kubectl")?;
    if let Some(mut input) = child.stdin.take() {
        input
            .write_all(stdin.unwrap_or_default().as_bytes())
            .await?;
    }
    let out = child.wait_with_output().await?;
    ensure!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Every key and value, and the HashKV at `revision`, as member `pod` serves them.
async fn contents(
    client: &Client,
    ns: &str,
    pod: &str,
    revision: i64,
) -> anyhow::Result<(Vec<(Vec<u8>, Vec<u8>)>, u32)> {
    let secret = format!("{CLUSTER}-client-tls");
    let mut member = MemberClient::connect(client, ns, pod, &secret).await?;
    let all = member
        .etcd
        .get("", Some(GetOptions::new().with_all_keys()))
        .await?;
    let kvs = all
        .kvs()
        .iter()
        .map(|kv| (kv.key().to_vec(), kv.value().to_vec()))
        .collect();
    let hash = member.etcd.hash_kv(revision).await?.hash();
    Ok((kvs, hash))
}

async fn scenario(client: &Client, ns: &str) -> anyhow::Result<()> {
    let s3 = deploy_s3(client, ns).await?;
    let bucket = s3.request("PUT", "/backups", b"").await?;
    ensure!(
        bucket.status == 200,
        "create bucket: HTTP {}",
        bucket.status
    );
    let manifest = runbook_manifest()?;
    let apply = ["apply", "-n", ns, "-f", "-"];

    // The cluster before the loss: the runbook's spec without bootstrap, backing up each minute.
    let cut = manifest
        .find("  bootstrap:")
        .context("no bootstrap in the runbook")?;
    let original = manifest[..cut].replace("0 */6 * * *", "* * * * *");
    kubectl(&apply, Some(&original)).await?;
    let ready = |sc: &kube::core::DynamicObject| is_ready(sc, 3);
    await_store_cluster(client, ns, CLUSTER, "ready", RESTORE_WAIT, ready).await?;
    let secret = format!("{CLUSTER}-client-tls");
    let mut member = MemberClient::connect(client, ns, &format!("{CLUSTER}-0"), &secret).await?;
    let mut written = 0;
    for i in 0..KEYS {
        let put = member
            .etcd
            .put(format!("/registry/dr/{i:03}"), format!("value-{i}"), None)
            .await?;
        written = put.header().map_or(0, |h| h.revision());
    }
    drop(member);

    // Runbook 1: a backup covering the writes.
    let backed_up = |sc: &kube::core::DynamicObject| {
        sc.data["status"]["backup"]["revision"]
            .as_i64()
            .is_some_and(|r| r >= written)
    };
    let sc = await_store_cluster(client, ns, CLUSTER, "backed up", BACKUP_WAIT, backed_up).await?;
    let revision = sc.data["status"]["backup"]["revision"]
        .as_i64()
        .context("no backup revision")?;
    ensure!(
        revision == written,
        "backup at {revision}, last write at {written}"
    );
    let (keys, hash) = contents(client, ns, &format!("{CLUSTER}-0"), revision).await?;
    ensure!(keys.len() == KEYS, "{} keys before the loss", keys.len());

    // Runbook 2: the loss.
    kubectl(
        &["delete", "-n", ns, "storecluster", CLUSTER, "--wait"],
        None,
    )
    .await?;
    let selector = format!("app.kubernetes.io/instance={CLUSTER}");
    kubectl(
        &["delete", "-n", ns, "pvc", "-l", &selector, "--wait"],
        None,
    )
    .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let members = format!("app.kubernetes.io/name=oxcd,{selector}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while !pods
        .list(&ListParams::default().labels(&members))
        .await?
        .items
        .is_empty()
    {
        ensure!(tokio::time::Instant::now() < deadline, "member pods stay");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    // Runbook 3: the new StoreCluster from the latest backup.
    kubectl(&apply, Some(&manifest)).await?;
    let sc = await_store_cluster(
        client,
        ns,
        CLUSTER,
        "restored and ready",
        RESTORE_WAIT,
        ready,
    )
    .await?;

    // Runbook 4: verify.
    let restored = &sc.data["status"]["restoredFrom"];
    ensure!(
        restored["revision"].as_i64() == Some(revision)
            && restored["key"]
                .as_str()
                .is_some_and(|k| k.starts_with(&format!("{ns}/{CLUSTER}/"))),
        "status.restoredFrom: {restored}"
    );
    for ordinal in 0..3 {
        let pod = format!("{CLUSTER}-{ordinal}");
        let (got, got_hash) = contents(client, ns, &pod, revision).await?;
        ensure!(got == keys, "{pod} serves other keys than the lost cluster");
        ensure!(got_hash == hash, "{pod}: HashKV at {revision} differs");
    }
    let mut member = MemberClient::connect(client, ns, &format!("{CLUSTER}-0"), &secret).await?;
    let put = member.etcd.put("/registry/dr/after", "1", None).await?;
    let next = put.header().map_or(0, |h| h.revision());
    ensure!(next == revision + 1, "the first write got revision {next}");
    drop(member);
    let pinned = events(client, ns, &["RestoreSourcePinned"]).await?;
    ensure!(pinned.len() == 1, "RestoreSourcePinned events: {pinned:?}");

    // A corrupt object declared by key: nothing is created, and the condition says why.
    let key = format!("{ns}/{BROKEN}/20260101T000000Z-r1.snapshot");
    let garbage = s3
        .request("PUT", &format!("/backups/{key}"), b"not a snapshot")
        .await?;
    ensure!(
        garbage.status == 200,
        "PUT garbage: HTTP {}",
        garbage.status
    );
    let broken = manifest
        .replacen("name: store", &format!("name: {BROKEN}"), 1)
        .replace("latest: true", &format!("key: {key}"));
    kubectl(&apply, Some(&broken)).await?;
    let failed = |sc: &kube::core::DynamicObject| {
        condition_reason(sc, "Degraded").as_deref() == Some("RestoreFailed")
    };
    let sc = await_store_cluster(client, ns, BROKEN, "RestoreFailed", FAILURE_WAIT, failed).await?;
    let message = sc.data["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Degraded")
        .and_then(|c| c["message"].as_str())
        .unwrap_or_default()
        .to_owned();
    ensure!(
        message.contains(&key) && message.contains("failed to"),
        "the condition does not say why: {message}"
    );
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    ensure!(
        statefulsets.get_opt(BROKEN).await?.is_none(),
        "a StatefulSet exists for the corrupt restore"
    );
    let broken_members = format!("app.kubernetes.io/name=oxcd,app.kubernetes.io/instance={BROKEN}");
    let any = pods
        .list(&ListParams::default().labels(&broken_members))
        .await?
        .items;
    if !any.is_empty() {
        bail!(
            "member pods exist for the corrupt restore: {}\noperator:\n{}",
            any.len(),
            operator_logs().await
        );
    }
    let warned = events(client, ns, &["RestoreFailed"]).await?;
    ensure!(!warned.is_empty(), "no RestoreFailed Event");
    Ok(())
}
