//! Wiring of the controller: watches StoreClusters (through a deserialization guard) in the
//! configured namespaces, the children they own and their backup Jobs, and runs the reconcile
//! pipeline.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Client;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use oxcd_crds::StoreCluster;

use crate::names::{BACKUP_LABEL, INSTANCE_LABEL, MANAGED_BY, MANAGED_BY_LABEL, RESTORE_LABEL};
use crate::reconcile::{Context, error_policy, reconcile};

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// The StoreCluster a backup Job belongs to.
fn backup_owner(job: Job) -> Option<ObjectRef<DeserializeGuard<StoreCluster>>> {
    let cluster = job.metadata.labels.as_ref()?.get(INSTANCE_LABEL)?;
    let namespace = job.metadata.namespace.as_deref()?;
    Some(ObjectRef::new(cluster).within(namespace))
}

/// Runs the controller for one namespace (or all, with `None`) until `shutdown` resolves.
pub async fn run(
    context: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = context.client.clone();
    let ns = namespace.as_deref();
    // Only children carrying the operator's label are watched: less memory, less noise.
    let children = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    Controller::new(
        api::<DeserializeGuard<StoreCluster>>(&client, ns),
        watcher::Config::default(),
    )
    .owns(api::<StatefulSet>(&client, ns), children.clone())
    .owns(api::<Service>(&client, ns), children.clone())
    .owns(api::<ConfigMap>(&client, ns), children.clone())
    .owns(api::<Secret>(&client, ns), children.clone())
    .owns(api::<PodDisruptionBudget>(&client, ns), children.clone())
    .owns(api::<NetworkPolicy>(&client, ns), children.clone())
    .owns(api::<CronJob>(&client, ns), children.clone())
    // Scheduled backup Jobs belong to the CronJob, not to the StoreCluster: they are mapped
    // back by their instance label, so a finished backup updates the status at once.
    .watches(
        api::<Job>(&client, ns),
        children
            .clone()
            .labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY},{BACKUP_LABEL}")),
        backup_owner,
    )
    // The restore-source Job is owned by its StoreCluster: its end moves the restore on.
    .owns(
        api::<Job>(&client, ns),
        children.labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY},{RESTORE_LABEL}")),
    )
    .graceful_shutdown_on(shutdown)
    .run(reconcile, error_policy, context)
    .for_each(|result| async move {
        match result {
            Ok((object, _)) => tracing::debug!(%object, "reconciled"),
            Err(error) => tracing::debug!(error = %crate::error_chain(&error), "controller event"),
        }
    })
    .await;
}
