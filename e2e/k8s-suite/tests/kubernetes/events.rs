//! Events expire through storage leases: kube-apiserver writes each Event with a lease of
//! --event-ttl (the suite's EVENT_TTL_SECS on a local control plane, the cluster's own setting
//! on an existing one), and the storage deletes the key when the lease runs out, without any
//! client asking. With a TTL longer than this check may wait (an existing cluster keeps the
//! default hour, because other tests read its Events later), the check proves the lease is
//! granted for the TTL and counts down instead of waiting for the expiry, which the local control
//! planes prove on the same storage.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::core::v1::{Event, ObjectReference};
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use oxcd_k8s_suite::{ControlPlane, eventually};

use crate::common::new_namespace;

/// The longest event TTL this check waits out.
const MAX_WAIT_TTL: Duration = Duration::from_secs(120);

pub async fn run(cp: &ControlPlane) -> Result<()> {
    let ttl_secs = cp.event_ttl().as_secs();
    let client = cp.client();
    let ns = new_namespace(&client, "events").await?;
    let events: Api<Event> = Api::namespaced(client, &ns);
    let event = Event {
        metadata: ObjectMeta {
            name: Some("probe.1".into()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            kind: Some("ConfigMap".into()),
            namespace: Some(ns.clone()),
            name: Some("probe".into()),
            api_version: Some("v1".into()),
            ..Default::default()
        },
        reason: Some("Probe".into()),
        message: Some("written by the oxcd Kubernetes suite".into()),
        type_: Some("Normal".into()),
        ..Default::default()
    };
    events.create(&PostParams::default(), &event).await?;
    ensure!(
        events.get_opt("probe.1").await?.is_some(),
        "event not readable"
    );

    // In the storage: the key carries a lease whose TTL is about the event TTL.
    let key = format!("/registry/events/{ns}/probe.1");
    let fields = cp.storagectl(&["get", &key, "-w", "fields"]).await?;
    let lease: i64 = fields
        .lines()
        .find_map(|l| l.strip_prefix("\"Lease\" : "))
        .context("etcdctl get printed no Lease field")?
        .trim()
        .parse()?;
    ensure!(lease != 0, "the event's key has no lease");
    let ttl = cp
        .storagectl(&["lease", "timetolive", &format!("{lease:x}")])
        .await?;
    let granted: u64 = ttl
        .split("granted with TTL(")
        .nth(1)
        .and_then(|s| s.split('s').next())
        .context("no granted TTL in etcdctl lease timetolive")?
        .parse()?;
    ensure!(
        (ttl_secs..=ttl_secs + 60).contains(&granted),
        "event lease granted with TTL {granted} s for --event-ttl={ttl_secs}s: {ttl}"
    );

    if cp.event_ttl() > MAX_WAIT_TTL {
        // The storage counts the lease down: its remaining TTL drops while time passes.
        let first = remaining(&ttl)?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let again = remaining(
            &cp.storagectl(&["lease", "timetolive", &format!("{lease:x}")])
                .await?,
        )?;
        ensure!(
            again < first && first <= granted,
            "the event's lease does not count down: remaining {first} s, then {again} s 3 s later \
             (granted {granted} s)"
        );
        eprintln!(
            "[{}] events: --event-ttl={ttl_secs}s is longer than this check waits: lease checked, \
             expiry not awaited",
            cp.label()
        );
        return Ok(());
    }
    let limit = Duration::from_secs(ttl_secs + 60);
    eventually(limit, "event expired", || async {
        Ok(events.get_opt("probe.1").await?.is_none().then_some(()))
    })
    .await?;
    let left = cp
        .storagectl(&["get", &key, "--count-only", "-w", "fields"])
        .await?;
    ensure!(
        left.lines().any(|l| l.trim() == "\"Count\" : 0"),
        "the expired event's key is still in the storage: {left}"
    );
    Ok(())
}

/// The remaining seconds in `etcdctl lease timetolive` output (`remaining(1234s)`).
fn remaining(ttl: &str) -> Result<u64> {
    Ok(ttl
        .split("remaining(")
        .nth(1)
        .and_then(|s| s.split('s').next())
        .with_context(|| format!("no remaining TTL in etcdctl lease timetolive: {ttl}"))?
        .parse()?)
}
