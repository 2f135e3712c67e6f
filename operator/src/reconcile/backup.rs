//! The backups of one reconcile: the on-demand Job for a new `oxcd.io/backup-now` token
//! (created once: its token is remembered in the status, so a Job gone after its TTL is not
//! made again), and the Jobs that finished since the status last accounted for one, read with
//! their pods, each reported once as an Event. A steady cluster only lists Jobs here: nothing
//! is written.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::events::EventType;
use kube::{Client, ResourceExt};
use oxcd_crds::{BackupStatus, StoreCluster};

use super::Context;
use crate::backups::{Drill, FinishedBackup, finished_backup, fold, is_new, job_finish};
use crate::build::build_backup_job;
use crate::metrics::Metrics;
use crate::names::{BACKUP_LABEL, BACKUP_NOW_ANNOTATION, INSTANCE_LABEL};
use crate::validate::ValidatedCluster;

/// Why the backups could not be observed or started.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Listing the backup Jobs or their pods failed.
    #[error("failed to list the backup {what}")]
    List {
        /// Jobs or pods.
        what: &'static str,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Creating the on-demand Job failed.
    #[error("failed to create the on-demand backup Job {name}")]
    CreateJob {
        /// The Job.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

/// What the backups came to in one reconcile.
#[derive(Debug, Default)]
pub struct BackupObservation {
    /// The new `status.backup`; `None` when the cluster never had backups.
    pub status: Option<BackupStatus>,
    /// The backup Jobs that finished since the last status.
    pub finished: Vec<FinishedBackup>,
}

/// Starts the on-demand backup if asked and reads finished backups.
pub async fn observe_backups(
    cluster: &StoreCluster,
    validated: &ValidatedCluster,
    client: &Client,
    metrics: &Metrics,
) -> Result<BackupObservation, BackupError> {
    let previous = cluster.status.as_ref().and_then(|s| s.backup.as_ref());
    if validated.spec.backup.is_none() && previous.is_none() {
        return Ok(BackupObservation::default());
    }
    let namespace = &validated.names.namespace;
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let mut status = previous.cloned().unwrap_or_default();

    let token = cluster.annotations().get(BACKUP_NOW_ANNOTATION);
    if let Some(token) = token.filter(|t| status.on_demand_token.as_ref() != Some(*t))
        && let Some(job) = build_backup_job(validated, token)
    {
        let name = job.name_any();
        match jobs.create(&PostParams::default(), &job).await {
            Ok(_) => {
                metrics.wrote("Job", "create");
                tracing::info!(job = %name, %token, "started an on-demand backup");
            }
            // Made by a reconcile whose status write did not land.
            Err(kube::Error::Api(response)) if response.code == 409 => {}
            Err(source) => return Err(BackupError::CreateJob { name, source }),
        }
        status.on_demand_token = Some(token.clone());
    }

    let selector = format!(
        "{INSTANCE_LABEL}={},{BACKUP_LABEL}",
        validated.names.cluster
    );
    let list = jobs
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|source| BackupError::List {
            what: "Jobs",
            source,
        })?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut finished: Vec<FinishedBackup> = Vec::new();
    for job in &list.items {
        let name = job.name_any();
        let Some((time, _)) = job_finish(job) else {
            continue;
        };
        if !is_new(previous, &name, &time) {
            continue;
        }
        // Pods are read only for Jobs not accounted for yet.
        let pod_list = pods
            .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={name}")))
            .await
            .map_err(|source| BackupError::List {
                what: "pods",
                source,
            })?;
        finished.extend(finished_backup(job, &pod_list.items));
    }
    Ok(BackupObservation {
        status: Some(fold(Some(&status), finished.clone())),
        finished,
    })
}

/// One Event per newly finished backup (after the status that accounts for it is written, so
/// a retried reconcile does not repeat it): Normal `BackupSucceeded` or Warning `BackupFailed`.
pub async fn report(cluster: &StoreCluster, finished: &[FinishedBackup], context: &Context) {
    for backup in finished {
        let (type_, reason, note) = match (&backup.error, &backup.uploaded) {
            (Some(error), _) => (
                EventType::Warning,
                "BackupFailed",
                format!("backup Job {} failed: {error}", backup.job),
            ),
            (None, Some(up)) => (
                EventType::Normal,
                "BackupSucceeded",
                format!(
                    "uploaded {} ({} bytes, revision {}){}",
                    up.key,
                    up.size,
                    up.revision,
                    match &backup.drill {
                        Some(Drill::Passed(d)) => format!(
                            "; restore drill passed: revision {}, HashKV {}{}",
                            d.revision,
                            d.hash_kv,
                            if d.hash_compared {
                                " (as recorded)"
                            } else {
                                " (not recorded)"
                            }
                        ),
                        _ => String::new(),
                    }
                ),
            ),
            (None, None) => (
                EventType::Normal,
                "BackupSucceeded",
                format!("backup Job {} completed", backup.job),
            ),
        };
        context.event(cluster, type_, reason, "Backup", note).await;
    }
}
