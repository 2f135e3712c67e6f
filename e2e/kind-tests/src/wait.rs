//! Bounded waits: a condition on one object, watched until it holds or the time is up.

use std::fmt::Debug;
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::wait::{self, Condition};
use kube::{Api, Resource};

/// Waits until `condition` holds for the object `name` (which may not exist yet), for at most
/// `timeout`; returns the object as it was then. `what` names the condition in the error.
pub async fn await_condition<K>(
    api: &Api<K>,
    name: &str,
    what: &str,
    timeout: Duration,
    condition: impl Condition<K>,
) -> anyhow::Result<K>
where
    K: Resource + Clone + Debug + Send + serde::de::DeserializeOwned + 'static,
    K::DynamicType: Default,
{
    let found = tokio::time::timeout(timeout, wait::await_condition(api.clone(), name, condition))
        .await
        .with_context(|| {
            format!(
                "timed out after {timeout:?} waiting for {} {name} to be {what}",
                K::kind(&K::DynamicType::default())
            )
        })?
        .with_context(|| format!("failed to watch {name}"))?;
    found.with_context(|| format!("{name} was deleted while waiting for it to be {what}"))
}

/// The Deployment has as many ready replicas as it asks for, all of its current revision.
pub fn deployment_available(deployment: Option<&Deployment>) -> bool {
    let Some(d) = deployment else { return false };
    let wanted = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(status) = &d.status else {
        return false;
    };
    status.observed_generation == d.metadata.generation
        && status.updated_replicas == Some(wanted)
        && status.ready_replicas == Some(wanted)
        && status.available_replicas == Some(wanted)
}

/// The pod runs and every container is ready.
pub fn pod_running(pod: Option<&Pod>) -> bool {
    let Some(status) = pod.and_then(|p| p.status.as_ref()) else {
        return false;
    };
    status.phase.as_deref() == Some("Running")
        && status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}
