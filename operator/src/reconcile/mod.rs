//! The reconcile of one StoreCluster, as a pipeline: observe (children, certificates, a
//! restore's snapshot, the membership through the etcd API) → validate → plan one membership
//! change → act → build and apply every child → observe the backups → status. Each step has
//! its own error type; the controller's error policy retries with a delay.

mod apply;
mod backup;
mod context;
mod lost_members;
mod membership;
mod restore;
mod rolling;
mod tls;

pub use apply::{APPLIED_HASH, Applier, ApplyError};
pub use backup::BackupError;
pub use context::Context;

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use oxcd_crds::{StoreCluster, StoreClusterStatus};

use crate::build::{self, Bootstrap};
use crate::members::{Members, MembersError};
use crate::names::FIELD_MANAGER;
use crate::plan::{MemberAction, Plan, plan, plan_unreachable};
use crate::rollout::RolloutStep;
use crate::status::{Outcome, build_status, invalid_status};
use crate::validate::{ValidatedCluster, validate};

/// How often a healthy cluster's members are polled (their health is not a Kubernetes event).
const STEADY_REQUEUE: Duration = Duration::from_secs(30);
/// How soon a cluster in motion (forming, scaling, unhealthy) is looked at again.
const BUSY_REQUEUE: Duration = Duration::from_secs(5);

/// Why a reconcile failed (it is retried).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// Reading a child failed.
    #[error("failed to read {what}")]
    Observe {
        /// What was read.
        what: &'static str,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Certificates could not be provided.
    #[error("failed to provide certificates")]
    Tls(#[source] tls::TlsError),
    /// Writing a child failed.
    #[error("failed to apply the children")]
    Apply(#[source] ApplyError),
    /// The snapshot Job before a rollout could not be read or created.
    #[error("failed to start or read the snapshot Job {job} before the rollout")]
    Snapshot {
        /// The Job.
        job: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Deleting a member pod (to restart it) failed.
    #[error("failed to restart member pod {pod}")]
    Restart {
        /// The pod.
        pod: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The backups could not be observed or started.
    #[error("failed to observe the backups")]
    Backup(#[source] BackupError),
    /// A membership change failed.
    #[error("failed to change the membership")]
    Membership(#[source] MembersError),
    /// Writing the status failed.
    #[error("failed to write the status")]
    Status(#[source] kube::Error),
}

fn now() -> Time {
    Time(jiff::Timestamp::now())
}

/// Reconciles one StoreCluster.
pub async fn reconcile(
    guarded: Arc<DeserializeGuard<StoreCluster>>,
    context: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let cluster = match &guarded.0 {
        Ok(cluster) => cluster,
        Err(invalid) => {
            // One malformed object must not stall the controller: report and move on.
            tracing::warn!(
                name = ?invalid.metadata.name,
                namespace = ?invalid.metadata.namespace,
                error = %invalid.error,
                "skipping a StoreCluster that does not deserialize"
            );
            return Ok(Action::await_change());
        }
    };
    if cluster.meta().deletion_timestamp.is_some() {
        // Children go with their owner; volumes follow spec.storage.reclaimPolicy.
        return Ok(Action::await_change());
    }
    let started = Instant::now();
    let result = reconcile_valid(cluster, &context).await;
    context
        .metrics
        .reconciled(result.is_ok(), started.elapsed());
    result
}

async fn reconcile_valid(
    cluster: &StoreCluster,
    context: &Context,
) -> Result<Action, ReconcileError> {
    let namespace = cluster.namespace().unwrap_or_default();
    let validated = match validate(cluster, &context.settings) {
        Ok(validated) => validated,
        Err(error) => {
            let message = error.to_string();
            let status = invalid_status(
                cluster.status.as_ref(),
                cluster.meta().generation,
                message.clone(),
                &now(),
            );
            // Reported once per change: a restarted operator must not repeat the event.
            if cluster.status.as_ref() != Some(&status) {
                context
                    .event(
                        cluster,
                        EventType::Warning,
                        "InvalidSpec",
                        "Validate",
                        message.clone(),
                    )
                    .await;
            }
            write_status(cluster, status, context).await?;
            return Ok(Action::await_change());
        }
    };
    let applier = Applier::new(context.client.clone(), &namespace, &context.metrics);
    let secrets: Api<Secret> = Api::namespaced(context.client.clone(), &namespace);
    let tls_state = tls::ensure_tls(&validated, &secrets, &applier, jiff::Timestamp::now())
        .await
        .map_err(ReconcileError::Tls)?;
    if tls_state.issued > 0 {
        let note = format!("issued {} certificate(s)", tls_state.issued);
        context
            .event(
                cluster,
                EventType::Normal,
                "CertificatesIssued",
                "Certificates",
                note,
            )
            .await;
    }

    // A restored cluster gets members only once its snapshot is pinned.
    if let Some(action) = restore::hold(cluster, &validated, &applier, context).await? {
        return Ok(action);
    }
    // Observe the bootstrap settings and the StatefulSet, then the members themselves.
    let config_maps: Api<ConfigMap> = Api::namespaced(context.client.clone(), &namespace);
    let bootstrap = config_maps
        .get_opt(&validated.names.bootstrap_config())
        .await
        .map_err(|source| ReconcileError::Observe {
            what: "the bootstrap ConfigMap",
            source,
        })?
        .and_then(|config| Bootstrap::from_config_map(&config));
    let statefulsets: Api<StatefulSet> = Api::namespaced(context.client.clone(), &namespace);
    let get_statefulset = || async {
        statefulsets
            .get_opt(&validated.names.statefulset())
            .await
            .map_err(|source| ReconcileError::Observe {
                what: "the StatefulSet",
                source,
            })
    };
    let statefulset_replicas = get_statefulset()
        .await?
        .and_then(|sts| sts.spec.and_then(|spec| spec.replicas));
    let reach = statefulset_replicas
        .unwrap_or(validated.spec.replicas)
        .max(1);
    let members = Members::new(
        validated.names.clone(),
        tls_state.client.clone(),
        u32::try_from(reach).unwrap_or(1),
    );
    let pods: Api<Pod> = Api::namespaced(context.client.clone(), &namespace);
    let member_pods = pods
        .list(&ListParams::default().labels(&validated.names.selector_string()))
        .await
        .map_err(|source| ReconcileError::Observe {
            what: "the members' pods",
            source,
        })?
        .items;
    let (membership, unreachable) = match members.observe().await {
        Ok(mut membership) => {
            let refused = lost_members::refusals(&member_pods, &validated.names);
            for member in &mut membership.members {
                member.lost_data = member.ordinal.and_then(|o| refused.get(&o)) == Some(&member.id);
            }
            (Some(membership), None)
        }
        Err(error) => (None, Some(crate::error_chain(&error))),
    };
    let plan = match &membership {
        Some(membership) => plan(&validated, membership),
        None => plan_unreachable(&validated, bootstrap, statefulset_replicas),
    };

    // One membership change, then the children that follow from it.
    if let Some(action) = &plan.action {
        membership::act(cluster, &validated, &members, action, context).await?;
    }
    let apply_error = apply_children(&validated, &plan, &applier, &tls_state.owned_secrets)
        .await
        .err()
        .map(|error| crate::error_chain(&error));
    // A member added again under the ordinal of one that lost its data finds its pod
    // crash-looping; restarted now, it reads the new bootstrap settings and joins at once.
    if let (Some(MemberAction::AddLearner { ordinal }), None) = (&plan.action, &apply_error) {
        // Failing only delays it: the pod restarts after its back-off anyway.
        if let Err(error) = lost_members::restart_stopped(&pods, &validated.names, *ordinal).await {
            tracing::warn!(error = %error, "could not restart the new member's stopped pod");
        }
    }

    let backups = backup::observe_backups(cluster, &validated, &context.client, &context.metrics)
        .await
        .map_err(ReconcileError::Backup)?;
    // With the membership settled, pods still on an older template are rolled one at a time.
    let rollout = match (&membership, &plan.action, plan.wait, &apply_error) {
        (Some(membership), None, None, None) => {
            // Read again: applying the children may just have changed its template.
            let statefulset = get_statefulset().await?;
            let observed = rolling::observe(statefulset.as_ref(), &member_pods, &validated.names);
            let rollout = rolling::Rollout {
                cluster,
                validated: &validated,
                members: &members,
                pods: &pods,
                context,
            };
            Some(rollout.step(membership, &observed).await?)
        }
        _ => None,
    };
    let outcome = Outcome {
        membership: membership.as_ref(),
        unreachable,
        plan: &plan,
        apply_error: apply_error.clone(),
        rollout: rollout.as_ref().map(|(step, _)| step),
        upgrade: match &rollout {
            Some((_, upgrade)) => upgrade.clone(),
            // A membership change pauses a rollout; its record stays.
            None => cluster.status.as_ref().and_then(|s| s.upgrade.clone()),
        },
        backup: backups.status,
    };
    let status = build_status(&validated, cluster.status.as_ref(), &outcome, &now());
    let rolling = rollout
        .as_ref()
        .is_some_and(|(step, _)| *step != RolloutStep::Done);
    let busy = plan.action.is_some() || plan.wait.is_some() || membership.is_none() || rolling;
    write_status(cluster, status, context).await?;
    backup::report(cluster, &backups.finished, context).await;
    if let Some(error) = apply_error {
        context
            .event(cluster, EventType::Warning, "ApplyFailed", "Apply", error)
            .await;
    }
    Ok(Action::requeue(if busy {
        BUSY_REQUEUE
    } else {
        STEADY_REQUEUE
    }))
}

async fn apply_children(
    cluster: &ValidatedCluster,
    plan: &Plan,
    applier: &Applier<'_>,
    owned_secrets: &[String],
) -> Result<(), ApplyError> {
    let name = cluster.names.cluster.clone();
    applier.apply(build::build_service_account(cluster)).await?;
    applier
        .apply(build::build_bootstrap_config(cluster, &plan.bootstrap))
        .await?;
    applier.apply(build::build_peer_service(cluster)).await?;
    applier.apply(build::build_client_service(cluster)).await?;
    applier
        .apply(build::build_pod_disruption_budget(cluster))
        .await?;
    let policies = match build::build_network_policy(cluster) {
        Some(policy) => {
            applier.apply(policy).await?;
            vec![cluster.names.statefulset()]
        }
        None => Vec::new(),
    };
    applier
        .apply(build::build_statefulset(cluster, plan.statefulset_replicas))
        .await?;
    let cronjobs = match build::build_backup_cronjob(cluster) {
        Some(cronjob) => {
            applier.apply(cronjob).await?;
            vec![cluster.names.backup_cronjob()]
        }
        None => Vec::new(),
    };
    applier.delete_orphans::<CronJob>(&name, &cronjobs).await?;
    applier
        .delete_orphans::<NetworkPolicy>(&name, &policies)
        .await?;
    applier
        .delete_orphans::<Secret>(&name, owned_secrets)
        .await?;
    applier
        .delete_orphans::<Service>(
            &name,
            &[cluster.names.peer_service(), cluster.names.client_service()],
        )
        .await?;
    applier
        .delete_orphans::<PodDisruptionBudget>(&name, &[cluster.names.statefulset()])
        .await?;
    applier
        .delete_orphans::<ServiceAccount>(&name, &[cluster.names.statefulset()])
        .await?;
    Ok(())
}

async fn write_status(
    cluster: &StoreCluster,
    status: StoreClusterStatus,
    context: &Context,
) -> Result<(), ReconcileError> {
    if cluster.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<StoreCluster> = Api::namespaced(
        context.client.clone(),
        &cluster.namespace().unwrap_or_default(),
    );
    let patch = serde_json::json!({
        "apiVersion": format!("{}/{}", oxcd_crds::GROUP, oxcd_crds::VERSION),
        "kind": "StoreCluster",
        "status": status,
    });
    api.patch_status(
        &cluster.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(ReconcileError::Status)?;
    context.metrics.wrote("StoreCluster", "status");
    Ok(())
}

/// The controller's answer to a failed reconcile: try again after a pause.
pub fn error_policy(
    _cluster: Arc<DeserializeGuard<StoreCluster>>,
    error: &ReconcileError,
    _context: Arc<Context>,
) -> Action {
    tracing::warn!(error = %crate::error_chain(error), "reconcile failed");
    Action::requeue(BUSY_REQUEUE)
}
