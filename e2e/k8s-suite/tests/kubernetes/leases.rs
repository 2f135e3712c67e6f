//! coordination.k8s.io Leases: the objects leader election and node heartbeats live on. Ours are
//! created, renewed and conflict on stale renewals; the controller-manager's and scheduler's
//! leader leases keep being renewed; every kwok node has its node lease.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use oxcd_k8s_suite::{ControlPlane, eventually};

use crate::common::{api_code, new_namespace, rv};

pub async fn run(cp: &ControlPlane) -> Result<()> {
    let client = cp.client();
    let ns = new_namespace(&client, "lease").await?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let pp = PostParams::default();
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some("leader".into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some("a".into()),
            lease_duration_seconds: Some(15),
            acquire_time: Some(MicroTime(Timestamp::now())),
            renew_time: Some(MicroTime(Timestamp::now())),
            ..Default::default()
        }),
    };
    let held = leases.create(&pp, &lease).await?;
    let mut renewed = held.clone();
    if let Some(spec) = renewed.spec.as_mut() {
        spec.renew_time = Some(MicroTime(Timestamp::now()));
    }
    let renewed = leases.replace("leader", &pp, &renewed).await?;
    ensure!(
        rv(&renewed)? > rv(&held)?,
        "renewal did not raise the resourceVersion"
    );
    // A second candidate acting on the stale copy must lose.
    let mut takeover = held.clone();
    if let Some(spec) = takeover.spec.as_mut() {
        spec.holder_identity = Some("b".into());
    }
    match leases.replace("leader", &pp, &takeover).await {
        Err(e) if api_code(&e) == Some(409) => {}
        other => bail!("takeover from a stale lease: want 409, got {other:?}"),
    }
    let holder = leases
        .get("leader")
        .await?
        .spec
        .and_then(|s| s.holder_identity);
    ensure!(holder.as_deref() == Some("a"), "lease holder is {holder:?}");

    let system: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    for name in ["kube-controller-manager", "kube-scheduler"] {
        let first = renew_time(&system.get(name).await?)?;
        eventually(
            Duration::from_secs(20),
            &format!("{name} renews its lease"),
            || async { Ok((renew_time(&system.get(name).await?)? > first).then_some(())) },
        )
        .await?;
    }

    let node_leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let nodes = Api::<Node>::all(client).list(&Default::default()).await?;
    ensure!(!nodes.items.is_empty(), "no nodes");
    for node in nodes.items {
        let name = node.metadata.name.context("node without name")?;
        let lease = node_leases.get(&name).await?;
        let holder = lease.spec.and_then(|s| s.holder_identity);
        ensure!(holder.is_some(), "node lease {name} has no holder");
    }
    Ok(())
}

fn renew_time(lease: &Lease) -> Result<Timestamp> {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.renew_time.as_ref())
        .map(|t| t.0)
        .context("lease without renewTime")
}
