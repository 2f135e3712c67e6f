//! The kind cluster's own kube-apiserver stores in oxcd (`e2e/kind/up
//! --control-plane-storage=oxcd`): its `--etcd-servers` are exactly the client URLs of the oxcd
//! members that the test reaches directly, no etcd pod runs, the kube-system pods run, and a
//! ConfigMap written through the API appears under `/registry/` in oxcd with its data and with
//! its resourceVersion as the key's revision, follows an update, and leaves oxcd when deleted.
//!
//! On a cluster with kubeadm's stacked etcd (`--etcd-servers` on 127.0.0.1, no
//! `OXCD_KIND_STORAGE_ENDPOINTS`) the test skips; an external storage without those variables
//! fails it.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use oxcd_kind_tests::storage::{Storagectl, parse_fields};
use oxcd_kind_tests::{kind_client, with_temp_ns};
use serde_json::json;

/// Bound of the wait for the kube-system pods to be running.
const WAIT: Duration = Duration::from_secs(120);

/// kube-system pods that must run, by name prefix: the control plane kubeadm made (on oxcd), the
/// cluster DNS, kube-proxy and the CNI of e2e/kind/up.
const SYSTEM_PODS: &[&str] = &[
    "kube-apiserver-",
    "kube-controller-manager-",
    "kube-scheduler-",
    "coredns-",
    "kube-proxy-",
    "kube-router-",
];

#[tokio::test]
async fn kube_apiserver_stores_its_objects_in_the_oxcd_cluster() -> anyhow::Result<()> {
    let Some(client) = kind_client().await? else {
        return Ok(());
    };
    let etcd_servers = apiserver_etcd_servers(&client).await?;
    let Some(ctl) = Storagectl::from_env()? else {
        if etcd_servers.iter().all(|s| s.contains("127.0.0.1")) {
            println!(
                "SKIPPED: kube-apiserver stores in kubeadm's own etcd ({etcd_servers:?}); \
                 e2e/kind/up --control-plane-storage=oxcd puts it on oxcd"
            );
            return Ok(());
        }
        bail!(
            "kube-apiserver stores in {etcd_servers:?} but OXCD_KIND_STORAGE_ENDPOINTS is not set"
        );
    };

    // The apiserver talks to exactly the members the test reads from.
    let members = member_client_urls(&ctl).await?;
    let servers: BTreeSet<String> = etcd_servers.iter().cloned().collect();
    ensure!(
        servers == members,
        "kube-apiserver --etcd-servers {servers:?} are not the oxcd members' client URLs {members:?}"
    );
    system_pods_run(&client).await?;

    with_temp_ns(&client, "storage", |client, ns| async move {
        configmap_round_trip(&client, &ctl, &ns).await
    })
    .await
}

/// The `--etcd-servers` of the kube-apiserver static pod.
async fn apiserver_etcd_servers(client: &Client) -> anyhow::Result<Vec<String>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    let list = pods
        .list(&ListParams::default().labels("component=kube-apiserver"))
        .await?;
    let pod = list.items.first().context("no kube-apiserver pod")?;
    let flag = pod
        .spec
        .iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| c.command.iter().flatten().chain(c.args.iter().flatten()))
        .find_map(|a| a.strip_prefix("--etcd-servers="))
        .context("kube-apiserver has no --etcd-servers")?;
    Ok(flag.split(',').map(str::to_owned).collect())
}

/// Every member's client URLs, as the storage lists them.
async fn member_client_urls(ctl: &Storagectl) -> anyhow::Result<BTreeSet<String>> {
    let out = ctl.run(&["member", "list", "-w", "json"]).await?;
    let list: serde_json::Value = serde_json::from_str(&out).context("member list is not JSON")?;
    let members = list["members"]
        .as_array()
        .context("member list without members")?;
    ensure!(!members.is_empty(), "the storage lists no member");
    let mut urls = BTreeSet::new();
    for m in members {
        for u in m["clientURLs"].as_array().into_iter().flatten() {
            urls.insert(u.as_str().context("client URL is not a string")?.to_owned());
        }
    }
    Ok(urls)
}

/// Every pod of [`SYSTEM_PODS`] is Running with its containers ready, and no etcd pod exists.
async fn system_pods_run(client: &Client) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    let deadline = Instant::now() + WAIT;
    loop {
        let list = pods.list(&ListParams::default()).await?;
        let names: Vec<String> = list
            .items
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        ensure!(
            !names.iter().any(|n| n.starts_with("etcd-")),
            "an etcd pod runs in kube-system: {names:?}"
        );
        let missing: Vec<&str> = SYSTEM_PODS
            .iter()
            .copied()
            .filter(|prefix| {
                !list.items.iter().any(|p| {
                    p.metadata
                        .name
                        .as_deref()
                        .is_some_and(|n| n.starts_with(prefix))
                        && running_and_ready(p)
                })
            })
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "kube-system pods not running and ready after {WAIT:?}: {missing:?} (pods: {names:?})"
            );
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

fn running_and_ready(pod: &Pod) -> bool {
    let Some(status) = pod.status.as_ref() else {
        return false;
    };
    status.phase.as_deref() == Some("Running")
        && status.container_statuses.iter().flatten().all(|c| c.ready)
}

/// A ConfigMap through the API, read back from oxcd at each step.
async fn configmap_round_trip(client: &Client, ctl: &Storagectl, ns: &str) -> anyhow::Result<()> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let marker = format!("stored-in-oxcd-{}", std::process::id());
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("probe".into()),
            ..ObjectMeta::default()
        },
        data: Some([("marker".to_owned(), marker.clone())].into()),
        ..ConfigMap::default()
    };
    let created = api.create(&PostParams::default(), &cm).await?;
    let key = format!("/registry/configmaps/{ns}/probe");
    expect_stored(ctl, &key, &marker, resource_version(&created)?).await?;

    let updated_marker = format!("{marker}-updated");
    let updated = api
        .patch(
            "probe",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"marker": updated_marker}})),
        )
        .await?;
    expect_stored(ctl, &key, &updated_marker, resource_version(&updated)?).await?;

    api.delete("probe", &DeleteParams::default()).await?;
    let left = parse_fields(&ctl.run(&["get", &key, "-w", "fields"]).await?)?;
    ensure!(
        left.is_empty(),
        "{key} is still in oxcd after the delete: {left:?}"
    );
    Ok(())
}

/// `key` is in oxcd, its value holds `marker` and its revision is `revision`.
async fn expect_stored(
    ctl: &Storagectl,
    key: &str,
    marker: &str,
    revision: u64,
) -> anyhow::Result<()> {
    let keys = parse_fields(&ctl.run(&["get", key, "-w", "fields"]).await?)?;
    let [stored] = keys.as_slice() else {
        bail!("want exactly {key} in oxcd, got {keys:?}");
    };
    ensure!(stored.key == key, "oxcd returned {} for {key}", stored.key);
    ensure!(
        stored.value.contains(marker),
        "the value of {key} in oxcd lacks {marker}: {}",
        stored.value
    );
    ensure!(
        stored.mod_revision == revision,
        "{key} was last changed at revision {} in oxcd, its resourceVersion is {revision}",
        stored.mod_revision
    );
    Ok(())
}

fn resource_version(cm: &ConfigMap) -> anyhow::Result<u64> {
    let rv = cm
        .metadata
        .resource_version
        .as_deref()
        .context("no resourceVersion")?;
    rv.parse()
        .with_context(|| format!("resourceVersion {rv} is not a number"))
}
