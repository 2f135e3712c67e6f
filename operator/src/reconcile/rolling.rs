//! The Kubernetes side of a rollout: what the StatefulSet and the member pods say (the current
//! template's revision, each pod's revision and readiness), enabling a downgrade of the cluster
//! version when one is under way, and carrying out the planner's step (delete one pod, or move
//! the leadership off the last outdated member first).

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::events::EventType;
use oxcd_crds::{StoreCluster, UpgradeStatus};

use super::{Context, ReconcileError};
use crate::backups::job_finish;
use crate::build::build_backup_job;
use crate::members::{Members, Membership};
use crate::names::Names;
use crate::rollout::{
    Observed, PodState, RolloutStep, RolloutWait, downgrade_applied, downgrade_target,
    plan_rollout, skips_a_minor, starts_rollout, upgrade_status,
};
use crate::validate::ValidatedCluster;

/// The label the StatefulSet controller puts on each pod: the revision of its template.
const REVISION_LABEL: &str = "controller-revision-hash";

/// The rollout's view of `statefulset` and its member `pods`. The current revision counts only
/// once the StatefulSet controller has seen the newest spec; a pod being deleted counts as not
/// ready (it is on its way out even while its readiness still says otherwise).
pub fn observe(statefulset: Option<&StatefulSet>, pods: &[Pod], names: &Names) -> Observed {
    let update_revision = statefulset.and_then(|sts| {
        let status = sts.status.as_ref()?;
        let current = status.observed_generation? >= sts.metadata.generation?;
        status.update_revision.clone().filter(|_| current)
    });
    let pods = pods
        .iter()
        .filter_map(|pod| {
            let ordinal = names.ordinal(pod.metadata.name.as_deref()?)?;
            let revision = pod.metadata.labels.as_ref()?.get(REVISION_LABEL)?.clone();
            let ready = pod.metadata.deletion_timestamp.is_none()
                && pod
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .into_iter()
                    .flatten()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
            let created = pod.metadata.creation_timestamp.as_ref().map(|t| t.0);
            Some((
                ordinal,
                PodState {
                    revision,
                    ready,
                    created,
                },
            ))
        })
        .collect();
    Observed {
        update_revision,
        pods,
    }
}

/// What a rollout step needs from the reconcile.
pub struct Rollout<'a> {
    /// The StoreCluster as read.
    pub cluster: &'a StoreCluster,
    /// Its validated spec.
    pub validated: &'a ValidatedCluster,
    /// Its members, through the etcd API.
    pub members: &'a Members,
    /// Its namespace's pods.
    pub pods: &'a Api<Pod>,
    /// The operator's shared state.
    pub context: &'a Context,
}

impl Rollout<'_> {
    /// Decides and carries out this reconcile's rollout step (enabling a downgrade first when
    /// one is under way) and returns it with the `status.upgrade` that follows.
    pub async fn step(
        &self,
        membership: &Membership,
        observed: &Observed,
    ) -> Result<(RolloutStep, Option<UpgradeStatus>), ReconcileError> {
        let spec = &self.validated.spec;
        // A downgrade lowers the cluster version first: older members are refused until then.
        let allowed = spec.allow_downgrade.unwrap_or(false);
        let downgrade = downgrade_target(&spec.version, allowed, membership);
        if let Some(target) = &downgrade
            && self
                .members
                .ensure_downgrade(target)
                .await
                .map_err(ReconcileError::Membership)?
        {
            let note = format!("enabled the downgrade of the cluster version to {target}");
            self.context
                .event(
                    self.cluster,
                    EventType::Normal,
                    "DowngradeEnabled",
                    "Downgrade",
                    note,
                )
                .await;
        }
        let mut step = if skips_a_minor(&spec.version, membership) {
            RolloutStep::Wait(RolloutWait::VersionSkew)
        } else if downgrade
            .as_deref()
            .is_some_and(|target| !downgrade_applied(target, membership))
        {
            // `membership` was read before this reconcile enabled it: the next one looks again.
            RolloutStep::Wait(RolloutWait::DowngradePending)
        } else {
            plan_rollout(
                membership,
                observed,
                jiff::Timestamp::now(),
                self.context.settings.rollout_stall_after,
            )
        };
        if starts_rollout(&step, membership, observed)
            && let Some(revision) = observed.update_revision.as_deref()
            && let Some(wait) = self.snapshot_first(revision).await?
        {
            step = RolloutStep::Wait(wait);
        }
        act(
            &step,
            self.cluster,
            self.validated,
            self.members,
            self.pods,
            self.context,
        )
        .await?;
        let previous = self
            .cluster
            .status
            .as_ref()
            .and_then(|s| s.upgrade.as_ref());
        let upgrade = upgrade_status(
            &step,
            previous,
            membership,
            observed,
            &spec.version,
            &self.validated.names,
        );
        Ok((step, upgrade))
    }
}

impl Rollout<'_> {
    /// With backups configured, a rollout starts only after a snapshot: an on-demand backup Job
    /// for the target revision (created once; its name comes from the revision, so a restarted
    /// operator finds it) must have succeeded. Returns what to wait for, if anything.
    async fn snapshot_first(&self, revision: &str) -> Result<Option<RolloutWait>, ReconcileError> {
        let token = format!("before-rollout-{revision}");
        let Some(job) = build_backup_job(self.validated, &token) else {
            return Ok(None);
        };
        let jobs: Api<Job> =
            Api::namespaced(self.context.client.clone(), &self.validated.names.namespace);
        let name = self.validated.names.backup_job(&token);
        let failed = |source| ReconcileError::Snapshot {
            job: name.clone(),
            source,
        };
        let existing = jobs.get_opt(&name).await.map_err(failed)?;
        let Some(existing) = existing else {
            match jobs.create(&PostParams::default(), &job).await {
                // Made by a reconcile whose status write did not land.
                Ok(_) => {}
                Err(kube::Error::Api(response)) if response.code == 409 => {}
                Err(source) => return Err(failed(source)),
            }
            self.context.metrics.wrote("Job", "create");
            let note = format!("started backup Job {name}: a snapshot before the rollout");
            self.context
                .event(
                    self.cluster,
                    EventType::Normal,
                    "SnapshotBeforeRollout",
                    "Backup",
                    note,
                )
                .await;
            return Ok(Some(RolloutWait::SnapshotPending));
        };
        Ok(match job_finish(&existing) {
            None => Some(RolloutWait::SnapshotPending),
            Some((_, true)) => None,
            Some((_, false)) => Some(RolloutWait::SnapshotFailed),
        })
    }
}

/// Carries out `step`: deletes one outdated pod (the StatefulSet recreates it from the current
/// template) or hands the leadership to an updated member. Waiting, a stall and a finished
/// rollout change nothing.
pub async fn act(
    step: &RolloutStep,
    cluster: &StoreCluster,
    validated: &ValidatedCluster,
    members: &Members,
    pods: &Api<Pod>,
    context: &Context,
) -> Result<(), ReconcileError> {
    // Distinct reasons: Events of one reason about one pod fold into a series, which would hide
    // the old leader's restart behind its handover.
    let (ordinal, reason, note) = match step {
        RolloutStep::DeletePod { ordinal } => {
            let pod = validated.names.member(*ordinal);
            match pods.delete(&pod, &DeleteParams::default()).await {
                // Already gone: the StatefulSet is recreating it, which is what was asked.
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(source) => return Err(ReconcileError::Restart { pod, source }),
                Ok(_) => {}
            }
            (
                *ordinal,
                "RollingUpdate",
                format!("restarting {pod} on the new pod template"),
            )
        }
        RolloutStep::MoveLeader { from_ordinal, to } => {
            members
                .move_leader(&members.client_url(*from_ordinal), *to)
                .await
                .map_err(ReconcileError::Membership)?;
            let from = validated.names.member(*from_ordinal);
            (
                *from_ordinal,
                "LeaderMoved",
                format!("moved the leadership from {from} to {to:x} before restarting {from}"),
            )
        }
        RolloutStep::Done | RolloutStep::Wait(_) | RolloutStep::Stalled { .. } => return Ok(()),
    };
    tracing::info!(cluster = %validated.names.cluster, "{note}");
    let pod = validated.names.member(ordinal);
    context
        .member_event(cluster, &pod, reason, "rollout", note)
        .await;
    Ok(())
}
