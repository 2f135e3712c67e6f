//! Rolling upgrades on kind: a 3-member StoreCluster moves to the next minor release while a
//! client pod keeps writing through the client Service: followers restart first, one at a time,
//! the leader last after handing over; the operator, killed mid-upgrade, resumes and finishes;
//! no acknowledged write is lost and no write fails beyond the client's retries. A skipped minor
//! is refused by the API server; a broken target image stalls the rollout after one member with
//! the quorum intact, and reverting the version recovers it. Finally one minor back: refused
//! without `allowDowngrade`, done member by member with it.
//!
//! The versions are the workspace's and the next minor's (`e2e/kind/images` builds them: the same
//! binary, the newer one advertising its version through a test-only variable) and a broken patch
//! of the next minor (an image whose member exits at once).

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use etcd_client::GetOptions;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use kube::{Api, Client};
use oxcd_kind_tests::operator::{
    MemberClient, OPERATOR_NAMESPACE, install_operator, uninstall_operator,
};
use oxcd_kind_tests::store_cluster::{
    self, await_ready, await_store_cluster, condition_reason, condition_true, events,
    store_clusters,
};
use oxcd_kind_tests::{
    await_condition, deployment_available, exec, kind_client, pod_running, with_temp_ns,
};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(300);
const CLUSTER: &str = "up";
const CLIENT_SECRET: &str = "up-client-tls";
const WRITER: &str = "writer";
/// The operator's stall timeout in this test (the default is five minutes).
const STALL_SECONDS: u64 = 45;

/// The workspace version, the next minor, a broken patch of it and a minor two ahead.
struct Versions {
    from: String,
    next: String,
    broken: String,
    skipped: String,
}

fn versions() -> anyhow::Result<Versions> {
    let from = env!("CARGO_PKG_VERSION").to_owned();
    let mut parts = from.split('.');
    let major: u64 = parts.next().context("major")?.parse()?;
    let minor: u64 = parts.next().context("minor")?.parse()?;
    Ok(Versions {
        next: format!("{major}.{}.0", minor + 1),
        broken: format!("{major}.{}.1", minor + 1),
        skipped: format!("{major}.{}.0", minor + 3),
        from,
    })
}

#[tokio::test]
async fn upgrades_roll_followers_first_resume_after_an_operator_restart_and_stall_safely()
-> anyhow::Result<()> {
    let Some(client) = kind_client().await? else {
        return Ok(());
    };
    install_operator(&client).await?;
    let outcome = async {
        shorten_stall(&client).await?;
        with_temp_ns(&client, "upgrade", |client, ns| async move {
            scenario(&client, &ns).await
        })
        .await
    }
    .await;
    let removed = uninstall_operator().await;
    outcome.and(removed)
}

/// Sets the operator's stall timeout to [`STALL_SECONDS`] and waits for the new operator pod.
async fn shorten_stall(client: &Client) -> anyhow::Result<()> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let env = json!({"spec": {"template": {"spec": {"containers": [{
        "name": "operator",
        "env": [{"name": "OXCD_ROLLOUT_STALL_AFTER_SECONDS", "value": STALL_SECONDS.to_string()}],
    }]}}}});
    deployments
        .patch(
            "oxcd-operator",
            &PatchParams::default(),
            &Patch::Strategic(&env),
        )
        .await?;
    await_condition(
        &deployments,
        "oxcd-operator",
        "available with the stall setting",
        Duration::from_secs(120),
        |d: Option<&Deployment>| deployment_available(d),
    )
    .await?;
    Ok(())
}

async fn scenario(client: &Client, ns: &str) -> anyhow::Result<()> {
    let v = versions()?;
    let clusters = store_clusters(client, ns);
    let formed = store_cluster::create_ready(client, ns, CLUSTER, &v.from, 3).await?;
    let first_leader = formed.data["status"]["leader"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    ensure!(!first_leader.is_empty(), "no leader before the upgrade");

    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    start_writer(&pods).await?;

    // The upgrade, with the operator killed once the first member has been restarted.
    set_version(&clusters, &v.next, false).await?;
    await_events(client, ns, "RollingUpdate", 1).await?;
    kill_operator(client).await?;
    // Done when every member reports the new release (read by the operator from /version).
    let upgraded = await_release(client, ns, "upgraded", &v.next).await?;
    let member_versions = member_versions(&upgraded);
    ensure!(
        member_versions == [v.next.as_str(); 3],
        "member versions after the upgrade: {member_versions:?}"
    );
    let image = format!("oxcd.local/oxcd:{}", v.next);
    for ordinal in 0..3 {
        let pod = pods.get(&format!("{CLUSTER}-{ordinal}")).await?;
        let images: Vec<String> = pod
            .spec
            .iter()
            .flat_map(|s| &s.containers)
            .filter_map(|c| c.image.clone())
            .collect();
        ensure!(
            images == [image.clone()],
            "{CLUSTER}-{ordinal} runs {images:?} after the upgrade"
        );
    }

    // Followers one at a time, then the leadership handed over, then the old leader.
    let steps = events(client, ns, &["RollingUpdate", "LeaderMoved"]).await?;
    let restarted: Vec<&str> = steps
        .iter()
        .filter_map(|note| note.strip_prefix("restarting "))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    let distinct: BTreeSet<&str> = restarted.iter().copied().collect();
    ensure!(
        distinct.len() == 3 && restarted.last() == Some(&first_leader.as_str()),
        "members restarted as {restarted:?} (leader before: {first_leader}): {steps:#?}"
    );
    let handover = steps
        .iter()
        .position(|n| n.starts_with(&format!("moved the leadership from {first_leader}")));
    let leader_restart = steps
        .iter()
        .rposition(|n| n.starts_with(&format!("restarting {first_leader}")));
    ensure!(
        matches!((handover, leader_restart), (Some(h), Some(r)) if h < r),
        "the leader was not handed over before its restart: {steps:#?}"
    );

    // Every acknowledged write is there; none failed beyond retries.
    let (acked, failed) = stop_writer(&pods).await?;
    ensure!(failed.is_empty(), "writes failed after retries: {failed:?}");
    ensure!(
        acked.len() > 20,
        "too few writes during the upgrade: {}",
        acked.len()
    );
    let mut member =
        MemberClient::connect(client, ns, &format!("{CLUSTER}-0"), CLIENT_SECRET).await?;
    let stored: BTreeSet<String> = member
        .etcd
        .get(
            "/upgrade/",
            Some(GetOptions::new().with_prefix().with_keys_only()),
        )
        .await?
        .kvs()
        .iter()
        .filter_map(|kv| kv.key_str().ok().map(str::to_owned))
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|k| !stored.contains(*k)).collect();
    ensure!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    println!(
        "upgrade {} -> {}: {} writes acknowledged, none failed; restarts {restarted:?}",
        v.from,
        v.next,
        acked.len()
    );

    // A skipped minor never reaches the operator.
    let refused = set_version(&clusters, &v.skipped, false).await;
    let message = format!("{refused:?}");
    ensure!(
        message.contains("spec.version may change to another patch release or to the next minor"),
        "a skipped minor was not refused as expected: {message}"
    );

    // A broken image: one member restarts onto it and stays down; the rollout halts there.
    set_version(&clusters, &v.broken, false).await?;
    let stalled = await_store_cluster(client, ns, CLUSTER, "stalled", WAIT, |sc| {
        condition_reason(sc, "Degraded").as_deref() == Some("UpgradeStalled")
    })
    .await?;
    ensure!(
        condition_true(&stalled, "Available") == Some(true),
        "the quorum was lost by a stalled upgrade: {}",
        stalled.data["status"]
    );
    let mut down = 0;
    for ordinal in 0..3 {
        let pod = pods.get_opt(&format!("{CLUSTER}-{ordinal}")).await?;
        if !pod_running(pod.as_ref()) {
            down += 1;
        }
    }
    ensure!(
        down == 1,
        "{down} members down during a stalled upgrade (want exactly 1)"
    );

    // Back to the working version: the broken member is replaced and the cluster recovers.
    set_version(&clusters, &v.next, false).await?;
    await_ready(client, ns, CLUSTER, 3).await?;
    await_store_cluster(client, ns, CLUSTER, "done with the rollout", WAIT, |sc| {
        sc.data["status"]["upgrade"].is_null()
            && condition_reason(sc, "Degraded").as_deref() == Some("AsExpected")
    })
    .await?;
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let revision = statefulsets
        .get(CLUSTER)
        .await?
        .status
        .and_then(|s| s.update_revision)
        .unwrap_or_default();
    for pod in pods
        .list(&ListParams::default().labels(&format!(
            "app.kubernetes.io/name=oxcd,app.kubernetes.io/instance={CLUSTER}"
        )))
        .await?
        .items
    {
        let hash = pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("controller-revision-hash"))
            .cloned()
            .unwrap_or_default();
        ensure!(
            hash == revision,
            "{:?} on revision {hash}, want {revision}",
            pod.metadata.name
        );
    }

    downgrade(client, ns, &v).await
}

/// One minor back: refused without `allowDowngrade`; with it the operator enables the
/// downgrade of the cluster version (as etcd 3.6's `downgrade enable`) and rolls every member
/// back to the older release.
async fn downgrade(client: &Client, ns: &str, v: &Versions) -> anyhow::Result<()> {
    let clusters = store_clusters(client, ns);
    let refused = format!("{:?}", set_version(&clusters, &v.from, false).await);
    ensure!(
        refused.contains("one minor lower needs spec.allowDowngrade: true"),
        "a downgrade without allowDowngrade was not refused as expected: {refused}"
    );
    set_version(&clusters, &v.from, true).await?;
    let downgraded = await_release(client, ns, "downgraded", &v.from).await?;
    let member_versions = member_versions(&downgraded);
    ensure!(
        member_versions == [v.from.as_str(); 3],
        "member versions after the downgrade: {member_versions:?}"
    );
    let enabled = events(client, ns, &["DowngradeEnabled"]).await?;
    ensure!(
        !enabled.is_empty(),
        "the downgrade to {} ran without a DowngradeEnabled Event",
        v.from
    );
    println!(
        "downgrade {} -> {}: members {member_versions:?}",
        v.next, v.from
    );
    Ok(())
}

/// Waits until the rollout to `version` is over: every member ready and reporting it, the
/// cluster Available and no longer Progressing.
async fn await_release(
    client: &Client,
    ns: &str,
    what: &str,
    version: &str,
) -> anyhow::Result<DynamicObject> {
    let version = version.to_owned();
    await_store_cluster(client, ns, CLUSTER, what, WAIT, move |sc| {
        let status = &sc.data["status"];
        condition_true(sc, "Available") == Some(true)
            && condition_true(sc, "Progressing") == Some(false)
            && status["upgrade"].is_null()
            && status["ready"] == "3/3"
            && status["version"] == version.as_str()
    })
    .await
}

/// The release each member reports in the status.
fn member_versions(sc: &DynamicObject) -> Vec<&str> {
    sc.data["status"]["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["version"].as_str())
        .collect()
}

async fn set_version(
    clusters: &Api<DynamicObject>,
    version: &str,
    allow_downgrade: bool,
) -> anyhow::Result<()> {
    let mut spec = json!({"version": version});
    if allow_downgrade {
        spec["allowDowngrade"] = json!(true);
    }
    clusters
        .patch(
            CLUSTER,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": spec})),
        )
        .await?;
    Ok(())
}

/// Waits until at least `count` Events with `reason` exist.
async fn await_events(client: &Client, ns: &str, reason: &str, count: usize) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + WAIT;
    while events(client, ns, &[reason]).await?.len() < count {
        if tokio::time::Instant::now() > deadline {
            bail!("fewer than {count} {reason} events after {WAIT:?}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}

/// Deletes the operator's pods (the Deployment starts new ones, which must pick up the work).
async fn kill_operator(client: &Client) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let selector = "app.kubernetes.io/name=oxcd-operator";
    for pod in pods
        .list(&ListParams::default().labels(selector))
        .await?
        .items
    {
        if let Some(name) = pod.metadata.name {
            pods.delete(&name, &DeleteParams::default().grace_period(0))
                .await?;
        }
    }
    Ok(())
}

/// A pod that writes `/upgrade/<n>` through the client Service with the generated client
/// certificate, retrying each write up to 10 times (leader changes, restarting members), and
/// logs `ack <key>` or `fail <key>`; labelled like kube-apiserver so the NetworkPolicy admits it.
async fn start_writer(pods: &Api<Pod>) -> anyhow::Result<()> {
    let script = format!(
        r#"ctl() {{ etcdctl --endpoints=https://{CLUSTER}-client:2379 --cacert=/tls/ca.crt --cert=/tls/tls.crt --key=/tls/tls.key --dial-timeout=2s --command-timeout=5s "$@"; }}
i=0
while [ $i -lt 20000 ] && [ ! -f /tmp/stop ]; do
  key=$(printf '/upgrade/%06d' $i)
  n=0; ok=0
  while [ $n -lt 10 ]; do
    if ctl put "$key" x >/dev/null 2>>/tmp/errors; then ok=1; break; fi
    n=$((n+1)); sleep 0.5
  done
  if [ $ok = 1 ]; then echo "ack $key"; else echo "fail $key"; fi
  i=$((i+1)); sleep 0.1
done
echo finished
sleep 3600"#
    );
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": WRITER, "labels": {"component": "kube-apiserver"}},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "writer",
                "image": etcdctl_image()?,
                "command": ["sh", "-c", script],
                "volumeMounts": [{"name": "tls", "mountPath": "/tls", "readOnly": true}],
            }],
            "volumes": [{"name": "tls", "secret": {"secretName": CLIENT_SECRET}}],
        },
    }))?;
    pods.create(&PostParams::default(), &pod).await?;
    await_condition(
        pods,
        WRITER,
        "running",
        Duration::from_secs(120),
        |p: Option<&Pod>| pod_running(p),
    )
    .await?;
    Ok(())
}

/// Stops the writer and returns the keys it acknowledged and those it gave up on.
async fn stop_writer(pods: &Api<Pod>) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    exec(pods, WRITER, &["touch", "/tmp/stop"]).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let log = pods.logs(WRITER, &Default::default()).await?;
        if log.lines().any(|l| l == "finished") {
            let pick = |prefix: &str| {
                log.lines()
                    .filter_map(|l| l.strip_prefix(prefix))
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            };
            return Ok((pick("ack "), pick("fail ")));
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the writer did not stop within 120 s"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The etcdctl image `e2e/kind/images` builds (busybox's shell around etcdctl).
fn etcdctl_image() -> anyhow::Result<String> {
    let pinned = oxcd_kind_tests::pinned_version("ETCD_VERSION")?;
    Ok(format!("oxcd.local/etcdctl:{pinned}"))
}
