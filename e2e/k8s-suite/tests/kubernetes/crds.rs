//! CustomResourceDefinitions: a CRD becomes Established and served, its objects keep spec and
//! status apart (status subresource: the main endpoint ignores status, the status endpoint
//! ignores spec, only spec changes bump metadata.generation), and deleting the CRD deletes them.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use oxcd_k8s_suite::{ControlPlane, eventually};
use serde_json::json;

use crate::common::new_namespace;

const GROUP: &str = "e2e.oxcd.example.com";
const CRD_NAME: &str = "widgets.e2e.oxcd.example.com";

fn widget_crd() -> Result<CustomResourceDefinition> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {"type": "object", "properties": {
                            "size": {"type": "integer", "minimum": 0}
                        }},
                        "status": {"type": "object", "properties": {
                            "ready": {"type": "boolean"}
                        }}
                    }
                }}
            }]
        }
    }))?)
}

fn field<'a>(obj: &'a DynamicObject, path: &[&str]) -> Option<&'a serde_json::Value> {
    path.iter().try_fold(&obj.data, |v, k| v.get(k))
}

pub async fn run(cp: &ControlPlane) -> Result<()> {
    let client = cp.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &widget_crd()?).await?;
    eventually(Duration::from_secs(30), "CRD Established", || async {
        let crd = crds.get(CRD_NAME).await?;
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        Ok(established.then_some(()))
    })
    .await?;

    let ns = new_namespace(&client, "crd").await?;
    let gvk = GroupVersionKind::gvk(GROUP, "v1", "Widget");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "widgets");
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
    let w: DynamicObject = serde_json::from_value(json!({
        "apiVersion": format!("{GROUP}/v1"),
        "kind": "Widget",
        "metadata": {"name": "w1"},
        "spec": {"size": 1},
        "status": {"ready": true}
    }))?;
    // The CRD is Established, but its REST endpoint may take a moment to be served.
    let created = eventually(Duration::from_secs(30), "widget created", || async {
        Ok(widgets.create(&PostParams::default(), &w).await.ok())
    })
    .await?;
    ensure!(
        field(&created, &["status"]).is_none(),
        "create kept the status: {:?}",
        created.data
    );
    ensure!(
        created.metadata.generation == Some(1),
        "generation after create"
    );

    let pp = PatchParams::default();
    let st = widgets
        .patch_status(
            "w1",
            &pp,
            &Patch::Merge(json!({"status": {"ready": true}, "spec": {"size": 7}})),
        )
        .await?;
    ensure!(
        field(&st, &["status", "ready"]) == Some(&json!(true)),
        "status patch did not set status: {:?}",
        st.data
    );
    ensure!(
        field(&st, &["spec", "size"]) == Some(&json!(1)),
        "status endpoint changed spec: {:?}",
        st.data
    );
    ensure!(
        st.metadata.generation == Some(1),
        "a status write bumped generation"
    );

    let sp = widgets
        .patch(
            "w1",
            &pp,
            &Patch::Merge(json!({"spec": {"size": 2}, "status": {"ready": false}})),
        )
        .await?;
    ensure!(
        field(&sp, &["spec", "size"]) == Some(&json!(2)),
        "spec patch lost"
    );
    ensure!(
        field(&sp, &["status", "ready"]) == Some(&json!(true)),
        "main endpoint changed status: {:?}",
        sp.data
    );
    ensure!(
        sp.metadata.generation == Some(2),
        "a spec write did not bump generation"
    );

    let invalid = widgets
        .patch("w1", &pp, &Patch::Merge(json!({"spec": {"size": -1}})))
        .await;
    ensure!(invalid.is_err(), "schema validation accepted size -1");

    let list = widgets.list(&Default::default()).await?;
    ensure!(list.items.len() == 1, "listed {} widgets", list.items.len());

    crds.delete(CRD_NAME, &DeleteParams::default()).await?;
    eventually(
        Duration::from_secs(60),
        "CRD and its objects deleted",
        || async { Ok(crds.get_opt(CRD_NAME).await?.is_none().then_some(())) },
    )
    .await
    .context("deleting the CRD")?;
    Ok(())
}
