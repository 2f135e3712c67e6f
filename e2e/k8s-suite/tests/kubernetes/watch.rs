//! Watches from a resourceVersion: served by the watch cache (configmaps) and straight from the
//! storage (podtemplates, whose cache `up` disables), each replaying exactly the changes after
//! that version in order; after the storage compacts past a version, a watch or an exact list
//! from it fails with 410 Gone, while a watch from after the compaction still works.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, PodTemplate};
use kube::api::{ListParams, ObjectMeta, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::{Api, Resource};
use oxcd_k8s_suite::ControlPlane;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::common::{api_code, new_namespace, rv};

const UPDATES: usize = 3;

pub async fn run(cp: &ControlPlane) -> Result<()> {
    let client = cp.client();
    let ns = new_namespace(&client, "watch").await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    replay_from_version(&cms, named::<ConfigMap>("replay"), "cache").await?;
    let pts: Api<PodTemplate> = Api::namespaced(client.clone(), &ns);
    replay_from_version(&pts, pod_template("replay")?, "storage").await?;

    // 410 Gone after compaction, through the storage path.
    let first = pts
        .create(&PostParams::default(), &pod_template("old")?)
        .await?;
    let old_rv = rv(&first)?;
    let mut last_rv = old_rv;
    for i in 0..UPDATES {
        last_rv = rv(&label(&pts, "old", i).await?)?;
    }
    cp.compact_storage(last_rv).await?;

    let mut stream = pts
        .watch(&WatchParams::default().timeout(10), &old_rv.to_string())
        .await
        .map(StreamExt::boxed);
    match &mut stream {
        Err(e) if api_code(e) == Some(410) => {}
        Err(e) => bail!("watch from a compacted version: want 410, got {e}"),
        Ok(s) => match tokio::time::timeout(Duration::from_secs(15), s.next()).await {
            Ok(Some(Ok(WatchEvent::Error(status)))) if status.code == 410 => {}
            other => bail!("watch from a compacted version: want a 410 error event, got {other:?}"),
        },
    }
    let lp = ListParams::default()
        .at(&old_rv.to_string())
        .matching(kube::api::VersionMatch::Exact);
    match pts.list(&lp).await {
        Err(e) if api_code(&e) == Some(410) => {}
        other => bail!(
            "exact list at a compacted version: want 410, got {:?}",
            other.map(|l| l.metadata)
        ),
    }
    let mut live = pts
        .watch(
            &WatchParams::default()
                .timeout(10)
                .fields("metadata.name=old"),
            &last_rv.to_string(),
        )
        .await?
        .boxed();
    let after = label(&pts, "old", 99).await?;
    let events = collect(&mut live, 1).await?;
    ensure!(
        events == vec![("MODIFIED".to_string(), rv(&after)?)],
        "watch from the compaction revision: {events:?}"
    );
    Ok(())
}

fn named<K: Resource<DynamicType = ()> + Default>(name: &str) -> K {
    let mut obj = K::default();
    *obj.meta_mut() = ObjectMeta {
        name: Some(name.into()),
        ..Default::default()
    };
    obj
}

fn pod_template(name: &str) -> Result<PodTemplate> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "template": {"spec": {"containers": [{"name": "c", "image": "registry.invalid/c:1"}]}}
    }))?)
}

async fn label<K>(api: &Api<K>, name: &str, i: usize) -> Result<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    Ok(api
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"step": i.to_string()}}})),
        )
        .await?)
}

/// Creates `obj` (named "replay"), updates it UPDATES times and deletes it; a watch from the creation's
/// resourceVersion must report exactly those updates and the delete, in order, with their RVs.
async fn replay_from_version<K>(api: &Api<K>, obj: K, path: &str) -> Result<()>
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Default
        + serde::Serialize
        + Send
        + 'static,
{
    let created = api.create(&PostParams::default(), &obj).await?;
    let from = rv(&created)?;
    let mut want = Vec::new();
    for i in 0..UPDATES {
        want.push(("MODIFIED".to_string(), rv(&label(api, "replay", i).await?)?));
    }
    // The delete's RV is the deletion revision, reported by the DELETED event's object.
    api.delete("replay", &Default::default()).await?;
    let wp = WatchParams::default()
        .timeout(10)
        .fields("metadata.name=replay");
    let mut stream = api.watch(&wp, &from.to_string()).await?.boxed();
    let got = collect(&mut stream, UPDATES + 1).await?;
    ensure!(
        got[..UPDATES] == want[..],
        "{path} watch from {from}: got {got:?}, want {want:?} then DELETED"
    );
    let (kind, del_rv) = &got[UPDATES];
    ensure!(
        kind == "DELETED" && *del_rv > want[UPDATES - 1].1,
        "{path} watch: last event {kind} at {del_rv}"
    );
    Ok(())
}

/// The first `n` ADDED/MODIFIED/DELETED events (type, resourceVersion), within 15 s.
async fn collect<K, S>(stream: &mut S, n: usize) -> Result<Vec<(String, u64)>>
where
    K: Resource,
    S: Stream<Item = kube::Result<WatchEvent<K>>> + Unpin,
{
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while out.len() < n {
        let next = tokio::time::timeout_at(deadline, stream.next())
            .await
            .with_context(|| format!("only {} of {n} watch events in 15 s: {out:?}", out.len()))?;
        match next {
            None => bail!("watch ended after {} of {n} events: {out:?}", out.len()),
            Some(ev) => match ev? {
                WatchEvent::Added(o) => out.push(("ADDED".into(), rv(&o)?)),
                WatchEvent::Modified(o) => out.push(("MODIFIED".into(), rv(&o)?)),
                WatchEvent::Deleted(o) => out.push(("DELETED".into(), rv(&o)?)),
                WatchEvent::Bookmark(_) => {}
                WatchEvent::Error(s) => bail!("watch error event: {s:?}"),
            },
        }
    }
    Ok(out)
}
