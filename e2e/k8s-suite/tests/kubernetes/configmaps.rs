//! ConfigMap CRUD, and optimistic concurrency: every write is a compare-and-swap on the object's
//! resourceVersion (an etcd Txn on mod_revision), so stale writes conflict and concurrent
//! read-modify-write loops lose no update.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail, ensure};
use futures::future::try_join_all;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams, Preconditions};
use kube::{Api, Client};
use oxcd_k8s_suite::ControlPlane;
use serde_json::json;

use crate::common::{api_code, new_namespace, rv};

fn config_map(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..Default::default()
    }
}

fn data_of(cm: &ConfigMap, key: &str) -> Option<String> {
    cm.data.as_ref().and_then(|d| d.get(key)).cloned()
}

pub async fn run(cp: &ControlPlane) -> Result<()> {
    let client = cp.client();
    let ns = new_namespace(&client, "cm-crud").await?;
    let api: Api<ConfigMap> = Api::namespaced(client, &ns);
    let pp = PostParams::default();

    let created = api.create(&pp, &config_map("app", &[("a", "1")])).await?;
    let got = api.get("app").await?;
    ensure!(
        got.metadata.uid == created.metadata.uid,
        "get returned another uid"
    );
    ensure!(
        rv(&got)? == rv(&created)?,
        "get returned another resourceVersion"
    );
    ensure!(
        data_of(&got, "a").as_deref() == Some("1"),
        "data lost: {:?}",
        got.data
    );

    let mut changed = got.clone();
    changed.data = Some(BTreeMap::from([("a".into(), "2".into())]));
    let replaced = api.replace("app", &pp, &changed).await?;
    ensure!(
        rv(&replaced)? > rv(&got)?,
        "replace did not raise the resourceVersion"
    );

    let patched = api
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"b": "3"}})),
        )
        .await?;
    ensure!(
        data_of(&patched, "a").as_deref() == Some("2")
            && data_of(&patched, "b").as_deref() == Some("3"),
        "merge patch result: {:?}",
        patched.data
    );
    ensure!(
        rv(&patched)? > rv(&replaced)?,
        "patch did not raise the resourceVersion"
    );

    let listed = api.list(&Default::default()).await?;
    ensure!(
        listed
            .items
            .iter()
            .any(|c| c.metadata.name.as_deref() == Some("app")),
        "list misses the configmap"
    );

    api.delete("app", &DeleteParams::default()).await?;
    ensure!(
        api.get_opt("app").await?.is_none(),
        "deleted configmap still readable"
    );
    let again = api.create(&pp, &config_map("app", &[("a", "1")])).await?;
    ensure!(
        again.metadata.uid != created.metadata.uid,
        "re-created object kept its uid"
    );
    Ok(())
}

pub async fn run_conflicts(cp: &ControlPlane) -> Result<()> {
    let client = cp.client();
    let ns = new_namespace(&client, "cm-occ").await?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let pp = PostParams::default();

    api.create(&pp, &config_map("c", &[("n", "0")])).await?;
    match api.create(&pp, &config_map("c", &[("n", "0")])).await {
        Err(e) if api_code(&e) == Some(409) => {}
        other => bail!("second create of the same name: want 409 AlreadyExists, got {other:?}"),
    }

    let stale = api.get("c").await?;
    let mut fresh = stale.clone();
    fresh.data = Some(BTreeMap::from([("n".into(), "1".into())]));
    api.replace("c", &pp, &fresh).await?;
    let mut late = stale.clone();
    late.data = Some(BTreeMap::from([("n".into(), "99".into())]));
    match api.replace("c", &pp, &late).await {
        Err(e) if api_code(&e) == Some(409) => {}
        other => bail!("replace with a stale resourceVersion: want 409 Conflict, got {other:?}"),
    }
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            resource_version: stale.metadata.resource_version.clone(),
            uid: None,
        }),
        ..Default::default()
    };
    match api.delete("c", &dp).await {
        Err(e) if api_code(&e) == Some(409) => {}
        other => bail!("delete with a stale resourceVersion precondition: want 409, got {other:?}"),
    }
    ensure!(
        data_of(&api.get("c").await?, "n").as_deref() == Some("1"),
        "a rejected write changed the object"
    );

    // Four writers, ten increments each, every one a read-modify-write retried on conflict.
    const WRITERS: usize = 4;
    const INCREMENTS: usize = 10;
    api.create(&pp, &config_map("counter", &[("n", "0")]))
        .await?;
    let conflicts: Vec<usize> =
        try_join_all((0..WRITERS).map(|_| increment(client.clone(), ns.clone(), INCREMENTS)))
            .await?;
    let n = data_of(&api.get("counter").await?, "n").unwrap_or_default();
    ensure!(
        n == (WRITERS * INCREMENTS).to_string(),
        "counter is {n} after {WRITERS}x{INCREMENTS} increments (conflicts seen: {conflicts:?})"
    );
    Ok(())
}

/// Increments `counter` in `ns` `times` times; returns how many conflicts it retried.
async fn increment(client: Client, ns: String, times: usize) -> Result<usize> {
    let api: Api<ConfigMap> = Api::namespaced(client, &ns);
    let mut conflicts = 0;
    for _ in 0..times {
        let mut done = false;
        for _attempt in 0..200 {
            let mut cm = api.get("counter").await?;
            let n: u64 = data_of(&cm, "n")
                .context("counter lost its data")?
                .parse()?;
            cm.data = Some(BTreeMap::from([("n".into(), (n + 1).to_string())]));
            match api.replace("counter", &PostParams::default(), &cm).await {
                Ok(_) => {
                    done = true;
                    break;
                }
                Err(e) if api_code(&e) == Some(409) => conflicts += 1,
                Err(e) => return Err(e.into()),
            }
        }
        ensure!(done, "an increment conflicted 200 times in a row");
    }
    Ok(conflicts)
}
