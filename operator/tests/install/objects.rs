//! What an installation must contain: the CRD established and documented, the operator's
//! Deployment, ServiceAccount, Service and RBAC field by field, the RBAC's effect, and nothing
//! left after removal.

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{EnvVar, Probe, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use oxcd_k8s_suite::eventually;

use crate::cx::{Access, Cx, access};
use crate::installs::Install;
use crate::{CRD_NAME, WAIT};

/// The CRD is Established and `kubectl explain` prints the field docs of crds/src/spec.rs.
pub(crate) async fn crd_is_established_and_explained(cx: &Cx) -> Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(cx.client.clone());
    eventually(WAIT, "CRD storeclusters.oxcd.io Established", || {
        let crds = crds.clone();
        async move {
            let crd = crds.get(CRD_NAME).await?;
            let established = crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            Ok(established.then_some(()))
        }
    })
    .await?;
    // The field docs (`///` in crds/src/spec.rs) are what kubectl explain prints, once the API
    // server has published the CRD's OpenAPI.
    eventually(
        WAIT,
        "kubectl explain storecluster.spec.replicas",
        || async {
            let (success, stdout, _) = cx
                .run("kubectl", &["explain", "storecluster.spec.replicas"], "")
                .await?;
            Ok((success && stdout.contains("Number of members: 1, 3, 5 or 7")).then_some(()))
        },
    )
    .await
}

/// The Deployment, ServiceAccount, Service and RBAC objects of an installation, field by field.
pub(crate) async fn operator_objects_are_as_specified(
    cx: &Cx,
    install: &Install<'_>,
) -> Result<()> {
    let ns = install.namespace;
    let deployments: Api<Deployment> = Api::namespaced(cx.client.clone(), ns);
    let deployment = deployments.get(install.name).await?;
    let labels = deployment.metadata.labels.clone().unwrap_or_default();
    ensure!(
        labels.get("app.kubernetes.io/name").map(String::as_str) == Some("oxcd-operator")
            && labels.get("app.kubernetes.io/instance").map(String::as_str)
                == Some(install.instance),
        "Deployment labels: {labels:?}"
    );
    let spec = deployment
        .spec
        .as_ref()
        .context("Deployment without spec")?;
    ensure!(spec.replicas == Some(1), "replicas: {:?}", spec.replicas);
    let pod_labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    ensure!(
        pod_labels.get("app.kubernetes.io/name").map(String::as_str) == Some("oxcd-operator")
            && pod_labels
                .get("app.kubernetes.io/instance")
                .map(String::as_str)
                == Some(install.instance),
        "pod labels: {pod_labels:?}"
    );
    let pod = spec.template.spec.as_ref().context("no pod spec")?;
    ensure!(
        pod.service_account_name.as_deref() == Some(install.name),
        "serviceAccountName: {:?}",
        pod.service_account_name
    );
    let pod_security = pod
        .security_context
        .as_ref()
        .context("no pod securityContext")?;
    ensure!(
        pod_security.run_as_non_root == Some(true)
            && pod_security.run_as_user == Some(65532)
            && pod_security.run_as_group == Some(65532)
            && pod_security
                .seccomp_profile
                .as_ref()
                .map(|p| p.type_.as_str())
                == Some("RuntimeDefault"),
        "pod securityContext: {pod_security:?}"
    );
    let [container] = pod.containers.as_slice() else {
        bail!("expected one container: {:?}", pod.containers);
    };
    ensure!(
        container.image.as_deref() == Some("oxcd.local/oxcd-operator:dev")
            && container.image_pull_policy.as_deref() == Some("IfNotPresent"),
        "image: {:?} {:?}",
        container.image,
        container.image_pull_policy
    );
    let security = container
        .security_context
        .as_ref()
        .context("no securityContext")?;
    let dropped = security
        .capabilities
        .as_ref()
        .and_then(|c| c.drop.clone())
        .unwrap_or_default();
    ensure!(
        security.run_as_non_root == Some(true)
            && security.run_as_user == Some(65532)
            && security.run_as_group == Some(65532)
            && security.read_only_root_filesystem == Some(true)
            && security.allow_privilege_escalation == Some(false)
            && dropped == ["ALL"]
            && security.seccomp_profile.as_ref().map(|p| p.type_.as_str())
                == Some("RuntimeDefault"),
        "container securityContext: {security:?}"
    );
    let env = container_env(&deployment)?;
    for (name, value) in [
        ("OXCD_WATCH_NAMESPACES", ""),
        ("OXCD_IMAGE_REPOSITORY", "oxcd.local/oxcd"),
        ("OXCD_OPERATOR_HTTP_ADDRESS", "0.0.0.0:8080"),
        ("RUST_LOG", "info"),
    ] {
        ensure!(env_value(&env, name) == Some(value), "env {name}: {env:?}");
    }
    for (name, path) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        let field = env
            .iter()
            .find(|e| e.name == name)
            .and_then(|e| e.value_from.as_ref())
            .and_then(|v| v.field_ref.as_ref())
            .map(|f| f.field_path.as_str());
        ensure!(
            field == Some(path),
            "env {name} from {field:?}, expected {path}"
        );
    }
    let probe_path = |probe: Option<&Probe>| {
        probe
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.clone())
    };
    ensure!(
        probe_path(container.liveness_probe.as_ref()).as_deref() == Some("/healthz")
            && probe_path(container.readiness_probe.as_ref()).as_deref() == Some("/readyz"),
        "probes: {:?} {:?}",
        container.liveness_probe,
        container.readiness_probe
    );
    let port = container
        .ports
        .as_ref()
        .and_then(|p| p.first())
        .map(|p| p.container_port);
    ensure!(port == Some(8080), "container port: {port:?}");

    let accounts: Api<ServiceAccount> = Api::namespaced(cx.client.clone(), ns);
    accounts.get(install.name).await.context("ServiceAccount")?;
    let services: Api<Service> = Api::namespaced(cx.client.clone(), ns);
    let service = services.get(&format!("{}-metrics", install.name)).await?;
    let service_port = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .and_then(|p| p.first())
        .map(|p| p.port);
    ensure!(
        service_port == Some(8080),
        "metrics Service port: {service_port:?}"
    );

    let cluster_roles: Api<ClusterRole> = Api::all(cx.client.clone());
    let rules = cluster_roles
        .get(install.name)
        .await?
        .rules
        .unwrap_or_default();
    ensure!(
        has_rule(
            &rules,
            "oxcd.io",
            "storeclusters",
            &["get", "list", "watch", "patch", "update"]
        ) && has_rule(
            &rules,
            "oxcd.io",
            "storeclusters/status",
            &["get", "patch", "update"]
        ) && has_rule(&rules, "oxcd.io", "storeclusters/finalizers", &["update"])
            && !rules
                .iter()
                .any(|r| r.resources.iter().flatten().any(|x| x == "leases")),
        "ClusterRole rules: {rules:?}"
    );
    let bindings: Api<ClusterRoleBinding> = Api::all(cx.client.clone());
    let subjects = bindings
        .get(install.name)
        .await?
        .subjects
        .unwrap_or_default();
    ensure!(
        subjects.iter().any(|s| s.kind == "ServiceAccount"
            && s.name == install.name
            && s.namespace.as_deref() == Some(ns)),
        "ClusterRoleBinding subjects: {subjects:?}"
    );
    let election = format!("{}-leader-election", install.name);
    let roles: Api<Role> = Api::namespaced(cx.client.clone(), ns);
    let lease_rules = roles.get(&election).await?.rules.unwrap_or_default();
    ensure!(
        lease_rules.iter().all(|r| r
            .api_groups
            .iter()
            .flatten()
            .all(|g| g == "coordination.k8s.io")),
        "leader-election Role rules: {lease_rules:?}"
    );
    let role_bindings: Api<RoleBinding> = Api::namespaced(cx.client.clone(), ns);
    role_bindings
        .get(&election)
        .await
        .context("leader-election RoleBinding")?;
    Ok(())
}

/// What the API server lets the operator's ServiceAccount do (SubjectAccessReviews).
pub(crate) async fn cluster_wide_rbac_is_least_privilege(
    cx: &Cx,
    install: &Install<'_>,
) -> Result<()> {
    let ns = install.namespace;
    let any = Some("anywhere");
    let named = |verb, name| Access {
        name: Some(name),
        ..access(verb, "coordination.k8s.io", "leases", Some(ns))
    };
    let status = Access {
        subresource: Some("status"),
        ..access("patch", "oxcd.io", "storeclusters", any)
    };
    let finalizers = Access {
        subresource: Some("finalizers"),
        ..access("update", "oxcd.io", "storeclusters", any)
    };
    cx.expect_access(
        (ns, install.name),
        &[
            (access("watch", "oxcd.io", "storeclusters", None), true),
            (access("update", "oxcd.io", "storeclusters", any), true),
            (status, true),
            (finalizers, true),
            (access("delete", "apps", "statefulsets", any), true),
            (access("create", "", "secrets", any), true),
            (access("patch", "", "serviceaccounts", any), true),
            (
                access("create", "policy", "poddisruptionbudgets", any),
                true,
            ),
            (
                access("create", "networking.k8s.io", "networkpolicies", any),
                true,
            ),
            (access("delete", "", "pods", any), true),
            (access("delete", "", "persistentvolumeclaims", any), true),
            (access("create", "", "events", any), true),
            (access("patch", "events.k8s.io", "events", any), true),
            (access("create", "batch", "cronjobs", any), true),
            (access("delete", "batch", "jobs", any), true),
            (
                access("create", "cert-manager.io", "certificates", any),
                true,
            ),
            (
                access("create", "coordination.k8s.io", "leases", Some(ns)),
                true,
            ),
            (named("update", "oxcd-operator"), true),
            (named("get", "oxcd-operator"), true),
            // What it must not do.
            (access("delete", "oxcd.io", "storeclusters", any), false),
            (access("create", "oxcd.io", "storeclusters", any), false),
            (access("create", "", "pods", any), false),
            (access("update", "", "persistentvolumeclaims", any), false),
            (access("create", "", "pods", any), false),
            (
                access("update", "cert-manager.io", "certificates", any),
                false,
            ),
            (named("update", "kube-scheduler"), false),
            (
                access("create", "coordination.k8s.io", "leases", any),
                false,
            ),
            (
                access(
                    "update",
                    "apiextensions.k8s.io",
                    "customresourcedefinitions",
                    None,
                ),
                false,
            ),
            (access("list", "", "nodes", None), false),
            (
                access("create", "rbac.authorization.k8s.io", "clusterroles", None),
                false,
            ),
            (
                access("create", "rbac.authorization.k8s.io", "rolebindings", any),
                false,
            ),
        ],
    )
    .await
}

/// None of an installation's objects is left.
pub(crate) async fn operator_objects_are_gone(cx: &Cx, install: &Install<'_>) -> Result<()> {
    let ns = install.namespace;
    let deployments: Api<Deployment> = Api::namespaced(cx.client.clone(), ns);
    let accounts: Api<ServiceAccount> = Api::namespaced(cx.client.clone(), ns);
    let roles: Api<Role> = Api::namespaced(cx.client.clone(), ns);
    let cluster_roles: Api<ClusterRole> = Api::all(cx.client.clone());
    let bindings: Api<ClusterRoleBinding> = Api::all(cx.client.clone());
    let election = format!("{}-leader-election", install.name);
    eventually(WAIT, "the operator's objects deleted", || async {
        let left = [
            deployments
                .get_opt(install.name)
                .await?
                .map(|_| "Deployment"),
            accounts
                .get_opt(install.name)
                .await?
                .map(|_| "ServiceAccount"),
            roles.get_opt(&election).await?.map(|_| "Role"),
            cluster_roles
                .get_opt(install.name)
                .await?
                .map(|_| "ClusterRole"),
            bindings
                .get_opt(install.name)
                .await?
                .map(|_| "ClusterRoleBinding"),
        ];
        let left: Vec<_> = left.into_iter().flatten().collect();
        if left.is_empty() {
            Ok(Some(()))
        } else {
            bail!("still there: {left:?}")
        }
    })
    .await
}

/// The environment of the Deployment's container.
pub(crate) fn container_env(deployment: &Deployment) -> Result<Vec<EnvVar>> {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.first())
        .and_then(|c| c.env.clone())
        .context("the Deployment's container has no env")
}

/// The literal value of an environment variable (`""` when it has none).
pub(crate) fn env_value<'a>(env: &'a [EnvVar], name: &str) -> Option<&'a str> {
    env.iter()
        .find(|e| e.name == name)
        .map(|e| e.value.as_deref().unwrap_or(""))
}

/// Whether one rule grants all of `verbs` on `group`/`resource`.
pub(crate) fn has_rule(rules: &[PolicyRule], group: &str, resource: &str, verbs: &[&str]) -> bool {
    rules.iter().any(|r| {
        r.api_groups.iter().flatten().any(|g| g == group)
            && r.resources.iter().flatten().any(|x| x == resource)
            && verbs.iter().all(|v| r.verbs.iter().any(|x| x == v))
    })
}
