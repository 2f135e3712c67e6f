//! Consistent reads from the watch cache: a list without resourceVersion is served by the cache
//! once it has caught up with the storage's current revision (a watch progress request, etcd's
//! RequestWatchProgress), so it shows every write acknowledged before it; the apiserver's metric
//! shows the cache (not the storage fallback) served them, and the cache's view equals what
//! the storage holds, key by key and revision by revision.

use std::collections::BTreeMap;

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{ListParams, ObjectMeta, PostParams};
use oxcd_k8s_suite::ControlPlane;

use crate::common::{new_namespace, rv};

const WRITES: usize = 20;

pub async fn run(cp: &ControlPlane) -> Result<()> {
    let client = cp.client();
    let before = cache_consistent_reads(cp).await?;
    let ns = new_namespace(&client, "consistent").await?;
    let api: Api<ConfigMap> = Api::namespaced(client, &ns);
    for i in 0..WRITES {
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(format!("w-{i:02}")),
                ..Default::default()
            },
            ..Default::default()
        };
        let written = api.create(&PostParams::default(), &cm).await?;
        let list = api.list(&ListParams::default()).await?;
        let list_rv: u64 = list
            .metadata
            .resource_version
            .as_deref()
            .context("list without resourceVersion")?
            .parse()?;
        ensure!(
            list.items.len() == i + 2,
            "list right after write {i} shows {} objects (want ours and kube-root-ca.crt)",
            list.items.len()
        );
        ensure!(
            list_rv >= rv(&written)?,
            "list at {list_rv} is older than the write it follows ({})",
            rv(&written)?
        );
    }
    let after = cache_consistent_reads(cp).await?;
    ensure!(
        after >= before + WRITES as u64,
        "apiserver_watch_cache_consistent_read_total for configmaps (served by the cache) rose by \
         {} for {WRITES} consistent lists: the cache could not confirm freshness (watch progress)",
        after.saturating_sub(before)
    );

    // The cache's view of the namespace equals the storage's.
    let cached: BTreeMap<String, u64> = api
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(|c| Ok((c.metadata.name.clone().unwrap_or_default(), rv(c)?)))
        .collect::<Result<_>>()?;
    let prefix = format!("/registry/configmaps/{ns}/");
    let out = cp
        .storagectl(&["get", &prefix, "--prefix", "-w", "fields"])
        .await?;
    let stored = parse_fields(&out, &prefix)?;
    ensure!(
        cached == stored,
        "watch cache and storage differ:\n cache   {cached:?}\n storage {stored:?}"
    );
    Ok(())
}

/// Sum of `apiserver_watch_cache_consistent_read_total` for configmaps served by the cache
/// successfully (fallback="false", success="true").
async fn cache_consistent_reads(cp: &ControlPlane) -> Result<u64> {
    let req = http::Request::get("/metrics").body(Vec::new())?;
    let text = cp.client().request_text(req).await?;
    let mut total = 0u64;
    for line in text.lines() {
        if line.starts_with("apiserver_watch_cache_consistent_read_total{")
            && line.contains("resource=\"configmaps\"")
            && line.contains("fallback=\"false\"")
            && line.contains("success=\"true\"")
        {
            let value = line.rsplit(' ').next().unwrap_or_default();
            total += value
                .parse::<f64>()
                .with_context(|| format!("metric line {line}"))? as u64;
        }
    }
    Ok(total)
}

/// Name → mod revision from `etcdctl get -w fields` output for keys under `prefix`.
fn parse_fields(out: &str, prefix: &str) -> Result<BTreeMap<String, u64>> {
    let mut map = BTreeMap::new();
    let mut key: Option<String> = None;
    for line in out.lines() {
        if let Some(k) = line.strip_prefix("\"Key\" : ") {
            let k = k.trim().trim_matches('"');
            key = Some(k.strip_prefix(prefix).unwrap_or(k).to_string());
        } else if let Some(m) = line.strip_prefix("\"ModRevision\" : ") {
            let k = key
                .take()
                .context("ModRevision before Key in etcdctl output")?;
            map.insert(k, m.trim().parse()?);
        }
    }
    Ok(map)
}
