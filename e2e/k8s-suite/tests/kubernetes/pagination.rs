//! List pagination: 520 configmaps (+ the namespace's kube-root-ca.crt) read 50 at a time with
//! continue tokens, every page from one snapshot (same resourceVersion; a write between pages
//! does not show), each object once, in key order.

use std::collections::BTreeSet;

use anyhow::{Result, ensure};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{ListParams, ObjectMeta, PostParams};
use oxcd_k8s_suite::ControlPlane;

use crate::common::new_namespace;

/// Ours plus kube-root-ca.crt.
const OBJECTS: usize = 521;
const PAGE: u32 = 50;

fn named(name: String) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name),
            ..Default::default()
        },
        ..Default::default()
    }
}

pub async fn run(cp: &ControlPlane) -> Result<()> {
    let client = cp.client();
    let ns = new_namespace(&client, "paging").await?;
    let api: Api<ConfigMap> = Api::namespaced(client, &ns);
    stream::iter(0..OBJECTS - 1)
        .map(|i| {
            let api = api.clone();
            async move {
                api.create(&PostParams::default(), &named(format!("cm-{i:04}")))
                    .await
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;

    let mut names = Vec::new();
    let mut snapshot_rv: Option<String> = None;
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut lp = ListParams::default().limit(PAGE);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = api.list(&lp).await?;
        pages += 1;
        ensure!(
            page.items.len() <= PAGE as usize,
            "page of {} items",
            page.items.len()
        );
        let rv = page.metadata.resource_version.clone();
        match &snapshot_rv {
            None => {
                snapshot_rv = rv;
                let remaining = page.metadata.remaining_item_count;
                ensure!(
                    remaining == Some((OBJECTS - PAGE as usize) as i64),
                    "first page remainingItemCount {remaining:?}"
                );
                // Written after the snapshot: must not appear on later pages.
                api.create(&PostParams::default(), &named("cm-9999-late".into()))
                    .await?;
            }
            Some(first) => ensure!(
                rv.as_ref() == Some(first),
                "page {pages} at resourceVersion {rv:?}, first page at {first}"
            ),
        }
        names.extend(page.items.into_iter().filter_map(|c| c.metadata.name));
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() || pages > OBJECTS {
            break;
        }
    }
    let unique: BTreeSet<&String> = names.iter().collect();
    ensure!(
        unique.len() == names.len(),
        "a paginated list repeated objects"
    );
    ensure!(
        names.len() == OBJECTS,
        "paginated list returned {} of {OBJECTS}",
        names.len()
    );
    ensure!(
        pages == OBJECTS.div_ceil(PAGE as usize),
        "{pages} pages for {OBJECTS} objects"
    );
    let sorted: Vec<&String> = unique.into_iter().collect();
    ensure!(
        names.iter().collect::<Vec<_>>() == sorted,
        "pages are not in key order"
    );
    let all = api.list(&ListParams::default()).await?;
    ensure!(
        all.items.len() == OBJECTS + 1,
        "unpaginated list has {}",
        all.items.len()
    );
    Ok(())
}
