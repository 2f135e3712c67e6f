//! The two ways to install the operator, each installed, checked and removed: `helm install`
//! (watching every namespace, or only some) and `kubectl apply -f deploy/`.

use anyhow::{Result, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::ListParams;
use oxcd_k8s_suite::eventually;

use crate::cx::{Access, Cx, access};
use crate::objects::{
    cluster_wide_rbac_is_least_privilege, container_env, crd_is_established_and_explained,
    env_value, operator_objects_are_as_specified, operator_objects_are_gone,
};
use crate::{CRD_NAME, WAIT};

/// The names an installation of the chart uses.
pub(crate) struct Install<'a> {
    pub(crate) namespace: &'a str,
    /// Full name of the chart's objects (the release name here, which contains the chart name).
    pub(crate) name: &'a str,
    pub(crate) instance: &'a str,
}

/// `helm install` watching every namespace: the CRD and every object as specified; `helm
/// uninstall` removes them and keeps the CRD.
pub(crate) async fn helm_install_then_uninstall(cx: &Cx) -> Result<()> {
    let install = Install {
        namespace: "oxcd-helm",
        name: "oxcd-operator",
        instance: "oxcd-operator",
    };
    cx.ok(
        "helm",
        &[
            "install",
            "oxcd-operator",
            "charts/oxcd-operator",
            "--namespace",
            install.namespace,
            "--create-namespace",
            "--wait=false",
        ],
    )
    .await?;
    crd_is_established_and_explained(cx).await?;
    operator_objects_are_as_specified(cx, &install).await?;
    cluster_wide_rbac_is_least_privilege(cx, &install).await?;

    cx.ok(
        "helm",
        &[
            "uninstall",
            "oxcd-operator",
            "--namespace",
            install.namespace,
            "--wait",
        ],
    )
    .await?;
    operator_objects_are_gone(cx, &install).await?;
    // Helm never deletes the CRDs of a chart's crds/ (that would delete every StoreCluster).
    let crds: Api<CustomResourceDefinition> = Api::all(cx.client.clone());
    ensure!(
        crds.get_opt(CRD_NAME).await?.is_some(),
        "helm uninstall removed the CRD"
    );
    cx.ok(
        "kubectl",
        &["delete", "namespace", install.namespace, "--wait=false"],
    )
    .await?;
    Ok(())
}

/// `watchNamespaces` turns the ClusterRole into Roles in exactly those namespaces.
pub(crate) async fn helm_install_watching_namespaces_grants_only_those(cx: &Cx) -> Result<()> {
    let (namespace, release) = ("oxcd-scoped", "scoped");
    for ns in ["team-a", "team-b"] {
        cx.ok("kubectl", &["create", "namespace", ns]).await?;
    }
    cx.ok(
        "helm",
        &[
            "install",
            release,
            "charts/oxcd-operator",
            "--namespace",
            namespace,
            "--create-namespace",
            "--set",
            "watchNamespaces={team-a}",
        ],
    )
    .await?;
    let name = "scoped-oxcd-operator";
    let deployments: Api<Deployment> = Api::namespaced(cx.client.clone(), namespace);
    let env = container_env(&deployments.get(name).await?)?;
    ensure!(
        env_value(&env, "OXCD_WATCH_NAMESPACES") == Some("team-a"),
        "OXCD_WATCH_NAMESPACES: {env:?}"
    );
    let cluster_roles: Api<ClusterRole> = Api::all(cx.client.clone());
    ensure!(
        cluster_roles.get_opt(name).await?.is_none(),
        "a ClusterRole exists although only team-a is watched"
    );
    let lease = Access {
        name: Some("oxcd-operator"),
        ..access("update", "coordination.k8s.io", "leases", Some(namespace))
    };
    cx.expect_access(
        (namespace, name),
        &[
            (
                access("patch", "oxcd.io", "storeclusters", Some("team-a")),
                true,
            ),
            (
                access("create", "apps", "statefulsets", Some("team-a")),
                true,
            ),
            (
                access("patch", "oxcd.io", "storeclusters", Some("team-b")),
                false,
            ),
            (access("get", "", "secrets", Some("team-b")), false),
            (access("list", "oxcd.io", "storeclusters", None), false),
            (lease, true),
        ],
    )
    .await?;
    cx.ok(
        "helm",
        &["uninstall", release, "--namespace", namespace, "--wait"],
    )
    .await?;
    let roles: Api<Role> = Api::namespaced(cx.client.clone(), "team-a");
    ensure!(
        roles.get_opt(name).await?.is_none(),
        "helm uninstall left the Role in team-a"
    );
    for ns in [namespace, "team-a", "team-b"] {
        cx.ok("kubectl", &["delete", "namespace", ns, "--wait=false"])
            .await?;
    }
    Ok(())
}

/// `kubectl apply -f deploy/` installs the same objects (and only deploy/oxcd-operator.yaml);
/// `kubectl delete -f deploy/` removes them, the namespace and the CRD.
pub(crate) async fn kubectl_apply_deploy_then_delete(cx: &Cx) -> Result<()> {
    let install = Install {
        namespace: "oxcd-system",
        name: "oxcd-operator",
        instance: "oxcd-operator",
    };
    let applied = cx.ok("kubectl", &["apply", "-f", "deploy/"]).await?;
    // Only deploy/oxcd-operator.yaml: kubectl skips the Dockerfile and deploy/examples/.
    let mut kinds: Vec<&str> = applied
        .lines()
        .filter_map(|line| line.split_once('/').map(|(kind, _)| kind))
        .collect();
    kinds.sort_unstable();
    let expected = [
        "clusterrole.rbac.authorization.k8s.io",
        "clusterrolebinding.rbac.authorization.k8s.io",
        "customresourcedefinition.apiextensions.k8s.io",
        "deployment.apps",
        "namespace",
        "role.rbac.authorization.k8s.io",
        "rolebinding.rbac.authorization.k8s.io",
        "service",
        "serviceaccount",
    ];
    ensure!(
        kinds == expected,
        "kubectl apply -f deploy/ applied:\n{applied}"
    );

    crd_is_established_and_explained(cx).await?;
    operator_objects_are_as_specified(cx, &install).await?;
    cluster_wide_rbac_is_least_privilege(cx, &install).await?;
    // The namespace enforces the restricted Pod Security Standard; the operator's pod passes it
    // (the ReplicaSet could not create it otherwise).
    let pods: Api<Pod> = Api::namespaced(cx.client.clone(), install.namespace);
    let selector = format!(
        "app.kubernetes.io/name=oxcd-operator,app.kubernetes.io/instance={}",
        install.instance
    );
    eventually(WAIT, "an operator pod admitted in oxcd-system", || {
        let (pods, selector) = (pods.clone(), selector.clone());
        async move {
            let list = pods.list(&ListParams::default().labels(&selector)).await?;
            Ok((!list.items.is_empty()).then_some(()))
        }
    })
    .await?;

    cx.ok(
        "kubectl",
        &["delete", "-f", "deploy/", "--wait=true", "--timeout=120s"],
    )
    .await?;
    operator_objects_are_gone(cx, &install).await?;
    let namespaces: Api<Namespace> = Api::all(cx.client.clone());
    let crds: Api<CustomResourceDefinition> = Api::all(cx.client.clone());
    eventually(WAIT, "namespace oxcd-system and the CRD deleted", || {
        let (namespaces, crds) = (namespaces.clone(), crds.clone());
        async move {
            let gone = namespaces.get_opt(install.namespace).await?.is_none()
                && crds.get_opt(CRD_NAME).await?.is_none();
            Ok(gone.then_some(()))
        }
    })
    .await
}
