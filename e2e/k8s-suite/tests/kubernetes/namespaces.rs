//! Namespaces: create, read, and deletion through the namespace controller, which removes the
//! namespace's content and then the namespace itself (finalizer `kubernetes`).

use std::time::Duration;

use anyhow::{Result, ensure};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Api;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use oxcd_k8s_suite::{ControlPlane, eventually};

use crate::common::new_namespace;

pub async fn run(cp: &ControlPlane) -> Result<()> {
    let client = cp.client();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let name = new_namespace(&client, "ns-life").await?;
    let ns = namespaces.get(&name).await?;
    let phase = ns.status.and_then(|s| s.phase);
    ensure!(
        phase.as_deref() == Some("Active"),
        "new namespace phase is {phase:?}"
    );
    ensure!(
        ns.spec.and_then(|s| s.finalizers) == Some(vec!["kubernetes".to_string()]),
        "new namespace lacks the `kubernetes` finalizer"
    );

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &name);
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("content".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    cms.create(&PostParams::default(), &cm).await?;

    namespaces.delete(&name, &DeleteParams::default()).await?;
    eventually(Duration::from_secs(60), "namespace deleted", || async {
        Ok(namespaces.get_opt(&name).await?.is_none().then_some(()))
    })
    .await?;
    ensure!(
        cms.get_opt("content").await?.is_none(),
        "a configmap outlived its namespace"
    );
    let all = namespaces.list(&Default::default()).await?;
    ensure!(
        all.items
            .iter()
            .any(|n| n.metadata.name.as_deref() == Some("kube-system")),
        "kube-system is not listed"
    );
    Ok(())
}
