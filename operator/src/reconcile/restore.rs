//! The gate of a restored cluster: while `spec.bootstrap.restore` is declared, no snapshot is
//! pinned yet (`status.restoredFrom`) and no StatefulSet exists, nothing else is made. The
//! restore-source Job resolves and verifies the snapshot; once it reports, the pin is written
//! to the status first, and only the next reconcile creates the members, so every member that
//! ever restores uses that one object, even if a newer backup lands meanwhile. A missing or
//! corrupt object leaves the cluster uncreated with `Degraded` `RestoreFailed`; deleting the
//! failed Job tries again.

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use oxcd_crds::StoreCluster;

use super::{Applier, Context, ReconcileError, now, write_status};
use crate::build::{build_restore_source_job, build_service_account};
use crate::restores::{SourceState, restoring_status, source_state};
use crate::validate::ValidatedCluster;

/// How soon a running restore-source Job is looked at again (its changes are watched too).
const RESOLVING_REQUEUE: Duration = Duration::from_secs(5);
/// How often a failed restore is looked at again (deleting its Job triggers one at once).
const FAILED_REQUEUE: Duration = Duration::from_secs(60);

/// Holds the reconcile of a restored cluster until its snapshot is pinned: `Some(action)`
/// ends this reconcile; `None` lets it go on to the members.
pub async fn hold(
    cluster: &StoreCluster,
    validated: &ValidatedCluster,
    applier: &Applier<'_>,
    context: &Context,
) -> Result<Option<Action>, ReconcileError> {
    let Some(job) = build_restore_source_job(validated) else {
        return Ok(None);
    };
    if validated.restored_from.is_some() {
        return Ok(None);
    }
    let namespace = &validated.names.namespace;
    let observe = |what| move |source| ReconcileError::Observe { what, source };
    let statefulsets: Api<StatefulSet> = Api::namespaced(context.client.clone(), namespace);
    if statefulsets
        .get_opt(&validated.names.statefulset())
        .await
        .map_err(observe("the StatefulSet"))?
        .is_some()
    {
        // Members exist (a status lost with its pin): they hold data, nothing is restored.
        tracing::warn!(
            cluster = %validated.names.cluster,
            "a restore is declared but members exist without status.restoredFrom; leaving them as they are"
        );
        return Ok(None);
    }

    let name = validated.names.restore_job();
    let jobs: Api<Job> = Api::namespaced(context.client.clone(), namespace);
    let state = match jobs
        .get_opt(&name)
        .await
        .map_err(observe("the restore-source Job"))?
    {
        None => {
            // Its pod runs as the members' service account.
            applier
                .apply(build_service_account(validated))
                .await
                .map_err(ReconcileError::Apply)?;
            match jobs.create(&PostParams::default(), &job).await {
                Ok(_) => context.metrics.wrote("Job", "create"),
                // Made by a reconcile whose status write did not land.
                Err(kube::Error::Api(response)) if response.code == 409 => {}
                Err(source) => {
                    return Err(ReconcileError::Observe {
                        what: "the restore-source Job (create)",
                        source,
                    });
                }
            }
            SourceState::Resolving
        }
        Some(job) => {
            let pods: Api<Pod> = Api::namespaced(context.client.clone(), namespace);
            let selector = format!("batch.kubernetes.io/job-name={name}");
            let pods = pods
                .list(&ListParams::default().labels(&selector))
                .await
                .map_err(observe("the restore-source Job's pods"))?
                .items;
            source_state(&job, &pods)
        }
    };
    let status = restoring_status(
        cluster.status.as_ref(),
        validated.generation,
        &state,
        &name,
        &now(),
    );
    let changed = cluster.status.as_ref() != Some(&status);
    write_status(cluster, status, context).await?;
    // Events once per change, after the status that records it (a restart does not repeat).
    match &state {
        SourceState::Pinned(pinned) if changed => {
            let note = format!(
                "restoring s3://{}/{} (revision {}, {} bytes, sha256 {})",
                pinned.bucket, pinned.key, pinned.revision, pinned.size, pinned.sha256
            );
            context
                .event(
                    cluster,
                    EventType::Normal,
                    "RestoreSourcePinned",
                    "Restore",
                    note,
                )
                .await;
        }
        SourceState::Failed(error) if changed => {
            let note = format!("the snapshot to restore cannot be used: {error}");
            context
                .event(
                    cluster,
                    EventType::Warning,
                    "RestoreFailed",
                    "Restore",
                    note,
                )
                .await;
        }
        _ => {}
    }
    Ok(Some(match state {
        // The pin is recorded: the next reconcile (the status change) creates the members.
        SourceState::Pinned(_) => Action::requeue(Duration::from_secs(1)),
        SourceState::Resolving => Action::requeue(RESOLVING_REQUEUE),
        SourceState::Failed(_) => Action::requeue(FAILED_REQUEUE),
    }))
}
