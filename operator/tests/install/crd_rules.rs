//! The StoreCluster CRD's rules as the API server enforces them: CEL messages, schema bounds,
//! defaults, printer columns, the category and the scale subresource, and both examples.

use anyhow::{Result, ensure};
use oxcd_k8s_suite::workspace_root;
use serde_json::Value;

use crate::cx::Cx;
use crate::objects::crd_is_established_and_explained;

/// The API server refuses invalid StoreClusters with the CRD's messages and fills in defaults.
pub(crate) async fn crd_rules_enforced_by_the_api_server(cx: &Cx) -> Result<()> {
    cx.ok("kubectl", &["apply", "-f", "crds/"]).await?;
    crd_is_established_and_explained(cx).await?;
    let ns = "cel";
    cx.ok("kubectl", &["create", "namespace", ns]).await?;
    let create = ["create", "-n", ns, "-f", "-"];
    let cluster = |name: &str, spec: &str| {
        format!(
            "apiVersion: oxcd.io/v1alpha1\nkind: StoreCluster\nmetadata: {{name: {name}}}\nspec: {spec}\n"
        )
    };

    cx.refused(
        &create,
        &cluster("even", "{version: 0.1.0, replicas: 4}"),
        "replicas must be odd",
    )
    .await?;
    cx.refused(
        &create,
        &cluster("nine", "{version: 0.1.0, replicas: 9}"),
        "should be less than or equal to 7",
    )
    .await?;
    cx.refused(
        &create,
        &cluster("secrets", "{version: 0.1.0, tls: {mode: Secrets}}"),
        "tls.secrets is required when tls.mode is Secrets",
    )
    .await?;
    cx.refused(
        &create,
        &cluster("badsize", "{version: 0.1.0, storage: {size: lots}}"),
        "storage.size must be a quantity",
    )
    .await?;

    // The minimal example, accepted with the server's defaults filled in.
    let minimal = std::fs::read_to_string(workspace_root().join("deploy/examples/minimal.yaml"))?;
    cx.ok_with_input(
        "kubectl",
        &create,
        &minimal.replace("namespace: default", &format!("namespace: {ns}")),
    )
    .await?;
    let demo: Value = serde_json::from_str(
        &cx.ok("kubectl", &["get", "-n", ns, "oxsc", "demo", "-o", "json"])
            .await?,
    )?;
    let spec = &demo["spec"];
    ensure!(
        spec["replicas"] == 3
            && spec["storage"]["size"] == "8Gi"
            && spec["storage"]["reclaimPolicy"] == "Retain"
            && spec["networkPolicy"]["enabled"] == true
            && spec["networkPolicy"]["apiServer"]["podSelector"]["matchLabels"]["component"]
                == "kube-apiserver"
            && spec["tls"]["mode"] == "Operator",
        "defaults not filled in: {spec}"
    );

    let patch = |body: &'static str| {
        [
            "patch", "-n", ns, "oxsc", "demo", "--type", "merge", "-p", body,
        ]
    };
    cx.refused(
        &patch(r#"{"spec":{"storage":{"size":"4Gi"}}}"#),
        "",
        "storage.size cannot shrink",
    )
    .await?;
    cx.ok("kubectl", &patch(r#"{"spec":{"storage":{"size":"16Gi"}}}"#))
        .await?;
    cx.refused(
        &patch(r#"{"spec":{"tls":{"mode":"Disabled"}}}"#),
        "",
        "tls.mode is immutable",
    )
    .await?;
    // Version skew: no skipped minor, no silent downgrade.
    cx.refused(
        &patch(r#"{"spec":{"version":"0.3.0"}}"#),
        "",
        "spec.version may change to another patch release or to the next minor release only",
    )
    .await?;
    cx.ok("kubectl", &patch(r#"{"spec":{"version":"0.2.0"}}"#))
        .await?;
    cx.refused(
        &patch(r#"{"spec":{"version":"0.1.0"}}"#),
        "",
        "one minor lower needs spec.allowDowngrade: true",
    )
    .await?;
    cx.ok(
        "kubectl",
        &patch(r#"{"spec":{"version":"0.1.0","allowDowngrade":true}}"#),
    )
    .await?;

    // A restore source: exactly one of key or latest, set at creation only, never changed.
    cx.refused(
        &create,
        &cluster(
            "bothsources",
            "{version: 0.1.0, bootstrap: {restore: {source: {s3: {bucket: backups, key: k, latest: true}}}}}",
        ),
        "needs exactly one of key or latest: true",
    )
    .await?;
    cx.refused(
        &patch(r#"{"spec":{"bootstrap":{"restore":{"source":{"s3":{"bucket":"backups","latest":true}}}}}}"#),
        "",
        "spec.bootstrap can be set only when the StoreCluster is created",
    )
    .await?;
    cx.ok_with_input(
        "kubectl",
        &create,
        &cluster(
            "restored",
            "{version: 0.1.0, bootstrap: {restore: {source: {s3: {bucket: backups, latest: true}}}}}",
        ),
    )
    .await?;
    let restored = |body: &'static str| {
        [
            "patch", "-n", ns, "oxsc", "restored", "--type", "merge", "-p", body,
        ]
    };
    cx.refused(
        &restored(r#"{"spec":{"bootstrap":{"restore":{"source":{"s3":{"bucket":"other"}}}}}}"#),
        "",
        "spec.bootstrap is immutable",
    )
    .await?;
    cx.refused(
        &restored(r#"{"spec":{"bootstrap":null}}"#),
        "",
        "spec.bootstrap can be set only when the StoreCluster is created",
    )
    .await?;
    cx.ok("kubectl", &restored(r#"{"spec":{"replicas":5}}"#))
        .await?;

    // Printer columns.
    let table = cx.ok("kubectl", &["get", "-n", ns, "oxsc"]).await?;
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    ensure!(
        header == ["NAME", "READY", "VERSION", "LEADER", "PHASE", "AGE"],
        "kubectl get oxsc:\n{table}"
    );
    ensure!(
        table.contains("0.1.0"),
        "kubectl get oxsc shows no version:\n{table}"
    );

    // The category: `kubectl get oxcd` lists StoreClusters (and later oxcd kinds).
    let category = cx
        .ok("kubectl", &["get", "-n", ns, "oxcd", "-o", "name"])
        .await?;
    ensure!(
        category.contains("storecluster.oxcd.io/demo"),
        "kubectl get oxcd:\n{category}"
    );

    // The scale subresource.
    cx.ok("kubectl", &["scale", "-n", ns, "oxsc/demo", "--replicas=5"])
        .await?;
    let replicas = cx
        .ok(
            "kubectl",
            &[
                "get",
                "-n",
                ns,
                "oxsc",
                "demo",
                "-o",
                "jsonpath={.spec.replicas}",
            ],
        )
        .await?;
    ensure!(
        replicas == "5",
        "spec.replicas after kubectl scale: {replicas}"
    );
    cx.refused(
        &["scale", "-n", ns, "oxsc/demo", "--replicas=4"],
        "",
        "replicas must be odd",
    )
    .await?;

    // The production example is valid too.
    let production =
        std::fs::read_to_string(workspace_root().join("deploy/examples/production.yaml"))?;
    cx.ok_with_input(
        "kubectl",
        &create,
        &production.replace("namespace: storage", &format!("namespace: {ns}")),
    )
    .await?;

    cx.ok("kubectl", &["delete", "namespace", ns, "--wait=false"])
        .await?;
    Ok(())
}
