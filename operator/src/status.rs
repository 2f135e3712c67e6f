//! The status a reconcile writes: conditions `Available` / `Progressing` / `Degraded` whose
//! `lastTransitionTime` moves only on a real transition, the phase that sums them up, the
//! members table, the leader, the endpoints and the backups. Pure: built from what the reconcile observed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use oxcd_crds::{
    BackupStatus, MemberRole, MemberStatus, Phase, StoreClusterStatus, UpgradeStatus, condition,
    reason,
};

use crate::backups::FAILURES_DEGRADED;

use crate::members::Membership;
use crate::plan::{MemberAction, Plan, Wait};
use crate::rollout::{RolloutStep, RolloutWait, rolling_out};
use crate::validate::ValidatedCluster;

/// What the reconcile saw and did, for the status.
pub struct Outcome<'a> {
    /// The membership, when a member answered.
    pub membership: Option<&'a Membership>,
    /// Why the members could not be reached, when they could not.
    pub unreachable: Option<String>,
    /// The plan carried out.
    pub plan: &'a Plan,
    /// Why applying children failed, if it did.
    pub apply_error: Option<String>,
    /// The rollout step taken, when the membership was left alone.
    pub rollout: Option<&'a RolloutStep>,
    /// `status.upgrade` after that step.
    pub upgrade: Option<UpgradeStatus>,
    /// The backups, as observed this time (`None`: as they were).
    pub backup: Option<BackupStatus>,
}

/// Sets condition `type_` in `conditions`, keeping its transition time unless its status
/// changes.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) {
    let status = if status { "True" } else { "False" }.to_owned();
    let last_transition_time = conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
    conditions.retain(|c| c.type_ != type_);
    conditions.push(Condition {
        type_: type_.to_owned(),
        status,
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time,
    });
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
}

fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

/// Orders versions numerically (`0.10.0` after `0.9.0`); the cluster version is the lowest.
pub fn version_key(version: &str) -> Vec<u64> {
    version
        .trim_start_matches('v')
        .split(['.', '-'])
        .map_while(|part| part.parse().ok())
        .collect()
}

/// Whether the cluster has ever been available (then unreachable members are a fault, not a
/// start-up).
fn formed(previous: Option<&StoreClusterStatus>) -> bool {
    previous.is_some_and(|s| {
        s.phase
            .is_some_and(|p| p != Phase::Creating && p != Phase::Invalid)
    })
}

fn members_table(cluster: &ValidatedCluster, membership: &Membership) -> Vec<MemberStatus> {
    let leader = membership.leader();
    let mut table: Vec<MemberStatus> = membership
        .members
        .iter()
        .map(|m| MemberStatus {
            name: match (m.name.is_empty(), m.ordinal) {
                (true, Some(ordinal)) => cluster.names.member(ordinal),
                _ => m.name.clone(),
            },
            id: format!("{:x}", m.id),
            role: if m.is_learner {
                MemberRole::Learner
            } else if Some(m.id) == leader {
                MemberRole::Leader
            } else {
                MemberRole::Follower
            },
            version: m.health.as_ref().map(|h| h.version.clone()),
            healthy: m.health.is_some(),
            raft_applied_index: m
                .health
                .as_ref()
                .and_then(|h| i64::try_from(h.applied_index).ok()),
        })
        .collect();
    table.sort_by(|a, b| a.name.cmp(&b.name));
    table
}

/// The status after a reconcile of a valid StoreCluster.
pub fn build_status(
    cluster: &ValidatedCluster,
    previous: Option<&StoreClusterStatus>,
    outcome: &Outcome<'_>,
    now: &Time,
) -> StoreClusterStatus {
    let generation = cluster.generation;
    let mut conditions = previous.map(|s| s.conditions.clone()).unwrap_or_default();
    let mut set = |type_: &str, status: bool, reason: &str, message: String| {
        set_condition(
            &mut conditions,
            type_,
            status,
            reason,
            message,
            generation,
            now,
        );
    };
    let members = outcome
        .membership
        .map(|m| members_table(cluster, m))
        .unwrap_or_default();
    let voters: Vec<&MemberStatus> = members
        .iter()
        .filter(|m| m.role != MemberRole::Learner)
        .collect();
    let healthy_voters = voters.iter().filter(|m| m.healthy).count();
    let leader = members.iter().find(|m| m.role == MemberRole::Leader);
    let formed = formed(previous);

    match (outcome.membership, leader) {
        (Some(_), Some(leader)) if healthy_voters > voters.len() / 2 => set(
            condition::AVAILABLE,
            true,
            reason::QUORUM_HEALTHY,
            format!(
                "{healthy_voters} of {} voters healthy; leader {}",
                voters.len(),
                leader.name
            ),
        ),
        (Some(_), _) => set(
            condition::AVAILABLE,
            false,
            reason::QUORUM_LOST,
            format!(
                "{healthy_voters} of {} voters healthy, no leader with a quorum",
                voters.len()
            ),
        ),
        (None, _) if formed => set(
            condition::AVAILABLE,
            false,
            reason::MEMBERS_UNREACHABLE,
            outcome.unreachable.clone().unwrap_or_default(),
        ),
        (None, _) => set(
            condition::AVAILABLE,
            false,
            reason::MEMBERS_STARTING,
            "waiting for the members to form the cluster".to_owned(),
        ),
    }

    let progressing = match (&outcome.plan.action, outcome.plan.wait) {
        (Some(MemberAction::AddLearner { ordinal }), _) => Some((
            reason::ADDING_MEMBER,
            format!("adding {} as a learner", cluster.names.member(*ordinal)),
        )),
        (Some(MemberAction::Promote { member_id, .. }), _) => Some((
            reason::PROMOTING_LEARNER,
            format!("promoting learner {member_id:x}"),
        )),
        (Some(MemberAction::MoveLeader { from_ordinal, .. }), _) => Some((
            reason::REMOVING_MEMBER,
            format!(
                "moving the leadership off {} before removing it",
                cluster.names.member(*from_ordinal)
            ),
        )),
        (Some(MemberAction::Remove { ordinal, .. }), _) => Some((
            reason::REMOVING_MEMBER,
            format!("removing {}", cluster.names.member(*ordinal)),
        )),
        (Some(MemberAction::Replace { ordinal, .. }), _) => Some((
            reason::REPLACING_MEMBER,
            format!(
                "replacing {}: it lost its data; removing it, then adding it again",
                cluster.names.member(*ordinal)
            ),
        )),
        (None, Some(Wait::LearnerCatchingUp)) => Some((
            reason::ADDING_MEMBER,
            "waiting for the learner to catch up".to_owned(),
        )),
        (None, Some(Wait::MemberUnhealthy | Wait::NoLeader)) => Some((
            reason::ROLLING_OUT,
            format!(
                "{} voters, {} desired: waiting for every member to be healthy",
                voters.len(),
                cluster.spec.replicas
            ),
        )),
        (None, None) if outcome.membership.is_none() && !formed => {
            Some((reason::MEMBERS_STARTING, "starting the members".to_owned()))
        }
        (None, None) => outcome
            .rollout
            .and_then(|step| rolling_out(cluster, step))
            .map(|m| (reason::ROLLING_OUT, m)),
    };
    match progressing {
        Some((reason, message)) => set(condition::PROGRESSING, true, reason, message),
        None => set(
            condition::PROGRESSING,
            false,
            reason::RECONCILED,
            "the spec is carried out".to_owned(),
        ),
    }

    let backup = outcome
        .backup
        .clone()
        .or_else(|| previous.and_then(|s| s.backup.clone()));
    // Failures of backups no longer declared do not keep the cluster Degraded.
    let failing_backups = backup
        .as_ref()
        .filter(|b| cluster.spec.backup.is_some() && b.consecutive_failures >= FAILURES_DEGRADED);
    let unhealthy: Vec<&str> = members
        .iter()
        .filter(|m| !m.healthy)
        .map(|m| m.name.as_str())
        .collect();
    if let Some(error) = &outcome.apply_error {
        set(
            condition::DEGRADED,
            true,
            reason::APPLY_FAILED,
            error.clone(),
        );
    } else if let Some(RolloutStep::Stalled { ordinal }) = outcome.rollout {
        set(
            condition::DEGRADED,
            true,
            reason::UPGRADE_STALLED,
            format!(
                "{} did not become ready on the new pod template; the rollout is halted and the other members are untouched",
                cluster.names.member(*ordinal)
            ),
        );
    } else if let Some(RolloutStep::Wait(RolloutWait::VersionSkew)) = outcome.rollout {
        set(
            condition::DEGRADED,
            true,
            reason::VERSION_SKEW,
            format!(
                "spec.version {} is more than one minor above a member's version; members move one minor at a time: set an intermediate version first",
                cluster.spec.version
            ),
        );
    } else if outcome.membership.is_none() && formed {
        set(
            condition::DEGRADED,
            true,
            reason::MEMBERS_UNREACHABLE,
            outcome.unreachable.clone().unwrap_or_default(),
        );
    } else if !unhealthy.is_empty() {
        set(
            condition::DEGRADED,
            true,
            reason::MEMBER_UNHEALTHY,
            format!("not answering: {}", unhealthy.join(", ")),
        );
    } else if let Some(failing) = failing_backups {
        set(
            condition::DEGRADED,
            true,
            reason::BACKUP_FAILING,
            format!(
                "the last {} backups failed: {}",
                failing.consecutive_failures,
                failing.last_error.as_deref().unwrap_or("unknown error")
            ),
        );
    } else {
        let message = if outcome.membership.is_some() {
            "every member answers"
        } else {
            "the members are starting"
        };
        set(
            condition::DEGRADED,
            false,
            reason::AS_EXPECTED,
            message.to_owned(),
        );
    }

    let phase = if is_true(&conditions, condition::DEGRADED) && formed {
        Phase::Degraded
    } else if !is_true(&conditions, condition::AVAILABLE) && !formed {
        Phase::Creating
    } else if outcome.plan.action.is_some() || outcome.plan.wait == Some(Wait::LearnerCatchingUp) {
        Phase::Scaling
    } else if outcome.upgrade.is_some() {
        Phase::Updating
    } else if is_true(&conditions, condition::AVAILABLE) {
        Phase::Running
    } else {
        Phase::Degraded
    };
    let replicas = outcome
        .membership
        .map_or(outcome.plan.statefulset_replicas, |m| {
            i32::try_from(m.members.len()).unwrap_or(0)
        });
    let ready_replicas = i32::try_from(healthy_voters).unwrap_or(0);
    StoreClusterStatus {
        observed_generation: generation,
        replicas,
        ready_replicas,
        ready: format!("{ready_replicas}/{}", cluster.spec.replicas),
        selector: cluster.names.selector_string(),
        phase: Some(phase),
        leader: leader.map(|l| l.name.clone()),
        version: members
            .iter()
            .filter_map(|m| m.version.clone())
            .min_by_key(|v| version_key(v)),
        members,
        client_endpoints: vec![cluster.names.service_client_url(cluster.tls_enabled())],
        client_certificate_secret: cluster.tls.as_ref().map(|tls| tls.client.clone()),
        backup,
        restored_from: previous.and_then(|s| s.restored_from.clone()),
        conditions,
        upgrade: outcome.upgrade.clone(),
    }
}

/// The status of a StoreCluster that failed validation: Degraded `InvalidSpec`, everything
/// else as it was.
pub fn invalid_status(
    previous: Option<&StoreClusterStatus>,
    generation: Option<i64>,
    error: String,
    now: &Time,
) -> StoreClusterStatus {
    let mut status = previous.cloned().unwrap_or_default();
    set_condition(
        &mut status.conditions,
        condition::DEGRADED,
        true,
        reason::INVALID_SPEC,
        error,
        generation,
        now,
    );
    set_condition(
        &mut status.conditions,
        condition::PROGRESSING,
        false,
        reason::INVALID_SPEC,
        "the spec cannot be carried out".to_owned(),
        generation,
        now,
    );
    status.observed_generation = generation;
    status.phase = Some(Phase::Invalid);
    status
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
