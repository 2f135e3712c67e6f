//! The operator against a real API server (the local control plane of `e2e/local/up`: real
//! kube-apiserver, controller-manager and scheduler on oxcd, kwok nodes whose pods do not really
//! run). It proves what needs no running member: every child is made with the right content and
//! owner, certificates are valid for every member name, the status says the cluster is being
//! created, turning the NetworkPolicy off deletes it, an invalid spec is reported, a restart at
//! steady state writes nothing, and deleting the StoreCluster removes the children but keeps the
//! volumes. Members forming a cluster are the kind suite's job.

use anyhow::{Context as _, Result};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use kube::{Client, ResourceExt};
use oxcd_crds::{Phase, StoreCluster};
use oxcd_k8s_suite::{ControlPlane, Storage, eventually};

mod common;

use common::{NS, Operator, WAIT, create_namespace, exists, install_crd, store_cluster};

/// cert-manager's Certificate kind, as a schemaless CRD: cert-manager itself does not run here,
/// the test checks what the operator asks of it.
async fn install_certificate_crd(client: &Client) -> Result<()> {
    let crd: CustomResourceDefinition = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "certificates.cert-manager.io"},
        "spec": {
            "group": "cert-manager.io",
            "names": {"kind": "Certificate", "plural": "certificates", "singular": "certificate"},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
            }],
        },
    }))?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &crd).await?;
    eventually(WAIT, "the Certificate CRD to be served", || {
        let client = client.clone();
        async move {
            let found = client
                .list_api_group_resources("cert-manager.io/v1")
                .await
                .map(|list| list.resources.iter().any(|r| r.name == "certificates"))
                .unwrap_or(false);
            Ok(found.then_some(()))
        }
    })
    .await
}

fn dns_names(pem: &[u8]) -> Result<Vec<String>> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem)?;
    let cert = block.parse_x509()?;
    let names = cert
        .subject_alternative_name()?
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    x509_parser::extensions::GeneralName::DNSName(dns) => Some((*dns).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(names)
}

#[tokio::test]
async fn operator_builds_children_reports_status_and_stays_quiet_when_steady() -> Result<()> {
    let plane = ControlPlane::up(Storage::Oxcd, &[]).await?;
    let client = plane.client();
    let kubeconfig = plane.fact("KUBECONFIG")?.to_owned();
    install_crd(&client).await?;
    create_namespace(&client).await?;
    let operator = Operator::start(&kubeconfig)?;

    let clusters: Api<StoreCluster> = Api::namespaced(client.clone(), NS);
    clusters
        .create(
            &PostParams::default(),
            &store_cluster("demo", serde_json::json!({"version": "0.1.0"}))?,
        )
        .await?;

    // Children, with their content.
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let sts = eventually(WAIT, "the StatefulSet", || exists(&statefulsets, "demo")).await?;
    let spec = sts.spec.clone().unwrap_or_default();
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(spec.service_name.as_deref(), Some("demo-peer"));
    let owner = sts
        .owner_references()
        .first()
        .cloned()
        .context("no owner")?;
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("StoreCluster", Some(true))
    );
    let services: Api<Service> = Api::namespaced(client.clone(), NS);
    for name in ["demo-peer", "demo-client"] {
        eventually(WAIT, name, || exists(&services, name)).await?;
    }
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), NS);
    let pdb = eventually(WAIT, "the PDB", || exists(&pdbs, "demo")).await?;
    let min_available = pdb.spec.and_then(|s| s.min_available);
    assert_eq!(
        min_available,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(2))
    );
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), NS);
    eventually(WAIT, "the NetworkPolicy", || exists(&policies, "demo")).await?;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let bootstrap = eventually(WAIT, "the bootstrap ConfigMap", || {
        exists(&config_maps, "demo-bootstrap")
    })
    .await?;
    let data = bootstrap.data.unwrap_or_default();
    assert_eq!(
        data.get("ETCD_INITIAL_CLUSTER_STATE").map(String::as_str),
        Some("new")
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    for name in [
        "demo-ca",
        "demo-server-tls",
        "demo-peer-tls",
        "demo-client-tls",
    ] {
        eventually(WAIT, name, || exists(&secrets, name)).await?;
    }
    let server = secrets.get("demo-server-tls").await?;
    let cert = server
        .data
        .and_then(|d| d.get("tls.crt").cloned())
        .context("no tls.crt")?;
    let names = dns_names(&cert.0)?;
    for expected in ["demo-client.prod.svc", "*.demo-peer.prod.svc"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not in {names:?}"
        );
    }

    // Status of a cluster whose members cannot form (kwok pods do not run).
    let status = eventually(WAIT, "a status", || {
        let clusters = clusters.clone();
        async move {
            Ok(clusters
                .get("demo")
                .await?
                .status
                .filter(|s| s.phase.is_some()))
        }
    })
    .await?;
    assert_eq!(status.phase, Some(Phase::Creating));
    assert_eq!(status.observed_generation, Some(1));
    let available = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Available")
        .context("no Available")?;
    assert_eq!(
        (available.status.as_str(), available.reason.as_str()),
        ("False", "MembersStarting")
    );
    assert_eq!(
        status.client_certificate_secret.as_deref(),
        Some("demo-client-tls")
    );

    // TLS mode CertManager: Certificates for cert-manager instead of operator-made Secrets.
    install_certificate_crd(&client).await?;
    let spec = serde_json::json!({
        "version": "0.1.0",
        "tls": {"mode": "CertManager", "certManager": {"issuerName": "store-ca", "issuerKind": "ClusterIssuer"}},
    });
    clusters
        .create(&PostParams::default(), &store_cluster("cm", spec)?)
        .await?;
    let certificates: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        NS,
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "cert-manager.io",
            "v1",
            "Certificate",
        )),
    );
    for name in ["cm-server-tls", "cm-peer-tls", "cm-client-tls"] {
        let certificate = eventually(WAIT, name, || exists(&certificates, name)).await?;
        let spec = &certificate.data["spec"];
        assert_eq!(spec["secretName"], name);
        assert_eq!(spec["issuerRef"]["name"], "store-ca");
        assert_eq!(spec["issuerRef"]["kind"], "ClusterIssuer");
    }
    let server = certificates.get("cm-server-tls").await?;
    let hosts = server.data["spec"]["dnsNames"].to_string();
    assert!(hosts.contains("*.cm-peer.prod.svc"), "{hosts}");
    assert!(
        secrets.get_opt("cm-ca").await?.is_none(),
        "no operator CA in CertManager mode"
    );
    clusters.delete("cm", &DeleteParams::default()).await?;

    // Turning the NetworkPolicy off deletes it.
    let patch = serde_json::json!({"spec": {"networkPolicy": {"enabled": false}}});
    clusters
        .patch("demo", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    eventually(WAIT, "the NetworkPolicy to go", || {
        let policies = policies.clone();
        async move { Ok(policies.get_opt("demo").await?.is_none().then_some(())) }
    })
    .await?;

    // A spec the API accepts but the operator cannot carry out is reported.
    let long = "x".repeat(53);
    clusters
        .create(
            &PostParams::default(),
            &store_cluster(&long, serde_json::json!({"version": "0.1.0"}))?,
        )
        .await?;
    let invalid = eventually(WAIT, "the invalid cluster's status", || {
        let (clusters, long) = (clusters.clone(), long.clone());
        async move {
            Ok(clusters
                .get(&long)
                .await?
                .status
                .filter(|s| s.phase.is_some()))
        }
    })
    .await?;
    assert_eq!(invalid.phase, Some(Phase::Invalid));
    let degraded = invalid
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .context("no Degraded")?;
    assert_eq!(degraded.reason, "InvalidSpec");
    assert!(
        degraded.message.contains("longer than 52"),
        "{}",
        degraded.message
    );

    // Steady state: a restarted operator reconciles everything again and writes nothing.
    let generation = clusters.get("demo").await?.metadata.generation;
    eventually(WAIT, "the status to catch up", || {
        let clusters = clusters.clone();
        async move {
            let sc = clusters.get("demo").await?;
            Ok((sc.status.and_then(|s| s.observed_generation) == generation).then_some(()))
        }
    })
    .await?;
    // Two clusters (demo and the invalid one), two reconciles each.
    let operator = operator.restart_quietly(&kubeconfig, 4.0).await?;

    // Deleting the StoreCluster removes its children and keeps the member volumes.
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    eventually(WAIT, "the members' volume claims", || {
        let claims = claims.clone();
        async move {
            let list = claims.list(&ListParams::default()).await?;
            Ok((list.items.len() == 3).then_some(()))
        }
    })
    .await?;
    clusters.delete("demo", &DeleteParams::foreground()).await?;
    for name in ["demo-server-tls", "demo-ca"] {
        eventually(WAIT, "the Secrets to go", || {
            let secrets = secrets.clone();
            async move { Ok(secrets.get_opt(name).await?.is_none().then_some(())) }
        })
        .await?;
    }
    eventually(WAIT, "the StatefulSet to go", || {
        let statefulsets = statefulsets.clone();
        async move { Ok(statefulsets.get_opt("demo").await?.is_none().then_some(())) }
    })
    .await?;
    let kept = claims.list(&ListParams::default()).await?;
    assert_eq!(
        kept.items.len(),
        3,
        "volumes must outlive their StoreCluster by default"
    );
    operator.stop().await?;
    Ok(())
}
