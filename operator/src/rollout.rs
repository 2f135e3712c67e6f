//! The rollout planner: moves every member's pod to the StatefulSet's current template (a new
//! version, resources, configuration) one pod at a time, quorum-safe and leader last. The
//! StatefulSet uses `OnDelete`, so a pod changes only when the operator deletes it: followers
//! first, each only once every member is ready, healthy and caught up with the leader; then the
//! leadership moves to an updated member and the old leader goes last. Everything it needs is
//! observed (pod revisions, member health), so a restarted operator resumes where it stopped.
//! Pure: unit-tested from fixtures (`rollout_tests.rs`).

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use oxcd_crds::{UpgradePhase, UpgradeStatus};

use crate::members::Membership;
use crate::names::Names;
use crate::validate::ValidatedCluster;

/// A member whose applied index is at most this far behind the leader's counts as caught up.
pub const MAX_APPLY_LAG: u64 = 1000;
/// A replaced pod that is not ready after this long stalls the rollout (the default of the
/// operator's `OXCD_ROLLOUT_STALL_AFTER_SECONDS`).
pub const STALL_AFTER: SignedDuration = SignedDuration::from_mins(5);

/// One member pod as observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodState {
    /// The StatefulSet revision its template came from (`controller-revision-hash`).
    pub revision: String,
    /// Ready (passes its readiness probe).
    pub ready: bool,
    /// When it was created.
    pub created: Option<Timestamp>,
}

/// The StatefulSet as observed: its current template's revision and the pods by ordinal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// `status.updateRevision`, once the StatefulSet controller has seen the current spec
    /// (`status.observedGeneration == metadata.generation`); `None` before.
    pub update_revision: Option<String>,
    /// Member pods by ordinal.
    pub pods: BTreeMap<u32, PodState>,
}

/// What the rollout does in this reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RolloutStep {
    /// Every member runs the current template.
    Done,
    /// Delete member `ordinal`'s pod: the StatefulSet recreates it from the current template.
    DeletePod {
        /// Its ordinal.
        ordinal: u32,
    },
    /// Only the leader is left: hand the leadership to `to` (an updated voter) first.
    MoveLeader {
        /// The leader's ordinal.
        from_ordinal: u32,
        /// The updated member that takes over.
        to: u64,
    },
    /// Something must settle first.
    Wait(RolloutWait),
    /// Member `ordinal`'s new pod has not become ready for [`STALL_AFTER`]; nothing else is
    /// touched, so the other members keep their quorum.
    Stalled {
        /// Its ordinal.
        ordinal: u32,
    },
}

/// Why the rollout waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RolloutWait {
    /// The StatefulSet controller has not computed the current revision yet.
    RevisionPending,
    /// A member pod is missing or not ready.
    PodNotReady,
    /// A member does not answer, or no leader is known.
    MemberUnhealthy,
    /// A member is more than [`MAX_APPLY_LAG`] entries behind the leader.
    CatchingUp,
    /// The target version is more than one minor above the lowest version a member runs (or
    /// another major): the members would refuse it. Set an intermediate version first.
    VersionSkew,
    /// The snapshot taken before the first member restarts (backups configured) is running.
    SnapshotPending,
    /// That snapshot failed: no member is restarted without one.
    SnapshotFailed,
    /// A downgrade was enabled but a member has not applied it yet.
    DowngradePending,
}

/// Whether `step` would start the rollout to `observed`'s current revision: it touches a
/// member while none runs that revision yet. Backups are taken at that point.
pub fn starts_rollout(step: &RolloutStep, membership: &Membership, observed: &Observed) -> bool {
    let touches = matches!(
        step,
        RolloutStep::DeletePod { .. } | RolloutStep::MoveLeader { .. }
    );
    let Some(revision) = observed.update_revision.as_deref() else {
        return false;
    };
    touches
        && !membership
            .members
            .iter()
            .filter_map(|m| observed.pods.get(&m.ordinal?))
            .any(|pod| pod.revision == revision)
}

/// The cluster version (`major.minor`) a downgrade to `target` needs enabled first, when the spec
/// allows a downgrade and a member still runs the minor above `target`. Once every member runs
/// `target`, the members end the downgrade themselves.
pub fn downgrade_target(target: &str, allowed: bool, membership: &Membership) -> Option<String> {
    let key = crate::status::version_key;
    let highest = membership
        .members
        .iter()
        .filter_map(|m| m.health.as_ref()?.release.as_deref())
        .max_by_key(|v| key(v))?;
    match (key(target).as_slice(), key(highest).as_slice()) {
        ([major, minor, ..], [high_major, high_minor, ..])
            if allowed && major == high_major && minor + 1 == *high_minor =>
        {
            Some(format!("{major}.{minor}"))
        }
        _ => None,
    }
}

/// Whether every member has applied the enabled downgrade to `target` (`major.minor`), as its
/// own Status reports it. Until then no member may restart on the older release: one that had not
/// applied the enable entry would find "cluster version above mine, no downgrade" in its store,
/// refuse to start, and never catch up (etcd asks the same wait of its operators before
/// replacing binaries). A member that does not answer has not shown it.
pub fn downgrade_applied(target: &str, membership: &Membership) -> bool {
    let prefix = format!("{target}.");
    membership.members.iter().all(|m| {
        m.health
            .as_ref()
            .and_then(|h| h.downgrade.as_deref())
            .is_some_and(|applied| applied == target || applied.starts_with(&prefix))
    })
}

/// Whether `target` is out of reach of the members in one step: another major, a minor more
/// than one above the lowest release a member runs, or more than one below the highest. Unknown
/// releases (members that did not tell) never block.
pub fn skips_a_minor(target: &str, membership: &Membership) -> bool {
    let key = crate::status::version_key;
    let mut releases: Vec<Vec<u64>> = membership
        .members
        .iter()
        .filter_map(|m| m.health.as_ref()?.release.as_deref())
        .map(key)
        .collect();
    releases.sort();
    match (
        key(target).as_slice(),
        releases.first().map(Vec::as_slice),
        releases.last().map(Vec::as_slice),
    ) {
        (
            [major, minor, ..],
            Some([low_major, low_minor, ..]),
            Some([high_major, high_minor, ..]),
        ) => {
            major != low_major
                || major != high_major
                || *minor > low_minor + 1
                || minor + 1 < *high_minor
        }
        _ => false,
    }
}

/// The rollout step for `membership` (no membership change under way) and `observed` at `now`;
/// a new pod not ready for `stall_after` stalls it.
pub fn plan_rollout(
    membership: &Membership,
    observed: &Observed,
    now: Timestamp,
    stall_after: SignedDuration,
) -> RolloutStep {
    let Some(revision) = observed.update_revision.as_deref() else {
        return RolloutStep::Wait(RolloutWait::RevisionPending);
    };
    let members: Vec<(u32, &crate::members::ObservedMember)> = membership
        .members
        .iter()
        .filter_map(|m| Some((m.ordinal?, m)))
        .collect();
    let outdated: Vec<u32> = members
        .iter()
        .map(|(ordinal, _)| *ordinal)
        .filter(|o| observed.pods.get(o).is_none_or(|p| p.revision != revision))
        .collect();
    if outdated.is_empty() {
        return RolloutStep::Done;
    }

    // A pod on the current revision that does not come up stalls the rollout; a missing pod
    // makes it wait. An outdated pod that is down (say, on a broken template the spec has since
    // moved away from) is replaced first: it serves nothing, so restarting it costs nothing,
    // as long as everyone else is up.
    let mut down_outdated = None;
    for (ordinal, _) in &members {
        match observed.pods.get(ordinal) {
            Some(pod) if pod.ready => {}
            Some(pod) if pod.revision == revision => {
                let stalled = pod
                    .created
                    .is_some_and(|c| now.duration_since(c) >= stall_after);
                return if stalled {
                    RolloutStep::Stalled { ordinal: *ordinal }
                } else {
                    RolloutStep::Wait(RolloutWait::PodNotReady)
                };
            }
            Some(_) if down_outdated.is_none() => down_outdated = Some(*ordinal),
            _ => return RolloutStep::Wait(RolloutWait::PodNotReady),
        }
    }
    let Some(leader) = membership.leader() else {
        return RolloutStep::Wait(RolloutWait::MemberUnhealthy);
    };
    if let Some(ordinal) = down_outdated {
        let others_healthy = members
            .iter()
            .filter(|(o, _)| *o != ordinal)
            .all(|(_, m)| m.health.is_some());
        return if others_healthy {
            RolloutStep::DeletePod { ordinal }
        } else {
            RolloutStep::Wait(RolloutWait::MemberUnhealthy)
        };
    }
    if members.iter().any(|(_, m)| m.health.is_none()) {
        return RolloutStep::Wait(RolloutWait::MemberUnhealthy);
    }
    let leader_applied = membership
        .member(leader)
        .and_then(|m| m.health.as_ref())
        .map_or(0, |h| h.applied_index);
    let lagging = members.iter().any(|(_, m)| {
        m.health
            .as_ref()
            .is_some_and(|h| h.applied_index.saturating_add(MAX_APPLY_LAG) < leader_applied)
    });
    if lagging {
        return RolloutStep::Wait(RolloutWait::CatchingUp);
    }

    let leader_ordinal = members
        .iter()
        .find(|(_, m)| m.id == leader)
        .map(|(o, _)| *o);
    // Followers first, highest ordinal first (as the StatefulSet controller would).
    if let Some(follower) = outdated.iter().rev().find(|o| Some(**o) != leader_ordinal) {
        return RolloutStep::DeletePod { ordinal: *follower };
    }
    let Some(from_ordinal) = leader_ordinal else {
        return RolloutStep::Wait(RolloutWait::MemberUnhealthy);
    };
    // Only the leader is outdated. A single member has nobody to hand over to.
    let successor = members
        .iter()
        .filter(|(o, m)| *o != from_ordinal && !m.is_learner)
        .min_by_key(|(o, _)| *o)
        .map(|(_, m)| m.id);
    match successor {
        Some(to) => RolloutStep::MoveLeader { from_ordinal, to },
        None => RolloutStep::DeletePod {
            ordinal: from_ordinal,
        },
    }
}

/// `status.upgrade` for `step`: `None` once every member runs the current template. `from` is
/// kept from `previous` while the target revision is the same, so it names the version the
/// rollout started from even after members moved on.
pub fn upgrade_status(
    step: &RolloutStep,
    previous: Option<&UpgradeStatus>,
    membership: &Membership,
    observed: &Observed,
    target_version: &str,
    names: &Names,
) -> Option<UpgradeStatus> {
    let revision = match (step, observed.update_revision.as_deref()) {
        (RolloutStep::Done, _) => return None,
        (_, Some(revision)) => revision,
        (_, None) => return previous.cloned(),
    };
    let leader = membership.leader();
    let on_revision = |ordinal: u32| {
        observed
            .pods
            .get(&ordinal)
            .is_some_and(|p| p.revision == revision)
    };
    let mut updated = Vec::new();
    let mut followers_left = false;
    for member in &membership.members {
        let Some(ordinal) = member.ordinal else {
            continue;
        };
        if on_revision(ordinal) {
            updated.push(names.member(ordinal));
        } else if Some(member.id) != leader {
            followers_left = true;
        }
    }
    // Once the leadership has been handed over, the old leader is a follower again but still the
    // rollout's last member: the phase stays Leader.
    let handed_over =
        previous.is_some_and(|p| p.revision == revision && p.phase == UpgradePhase::Leader);
    let phase = match step {
        RolloutStep::Stalled { .. } => UpgradePhase::Stalled,
        RolloutStep::MoveLeader { .. } => UpgradePhase::Leader,
        _ if handed_over || !followers_left => UpgradePhase::Leader,
        _ => UpgradePhase::Followers,
    };
    let from = match previous {
        Some(previous) if previous.revision == revision => previous.from.clone(),
        _ => membership
            .members
            .iter()
            .filter_map(|m| m.health.as_ref().map(|h| h.version.clone()))
            .min_by_key(|v| crate::status::version_key(v)),
    };
    Some(UpgradeStatus {
        from,
        to: target_version.to_owned(),
        revision: revision.to_owned(),
        phase,
        updated,
    })
}

/// Progressing's message while a rollout is under way (`None` once it is done).
pub fn rolling_out(cluster: &ValidatedCluster, step: &RolloutStep) -> Option<String> {
    let message = match step {
        RolloutStep::Done => return None,
        RolloutStep::DeletePod { ordinal } => format!(
            "restarting {} on the new pod template",
            cluster.names.member(*ordinal)
        ),
        RolloutStep::MoveLeader { from_ordinal, .. } => format!(
            "moving the leadership off {} before restarting it last",
            cluster.names.member(*from_ordinal)
        ),
        RolloutStep::Stalled { ordinal } => format!(
            "halted: {} does not become ready on the new pod template",
            cluster.names.member(*ordinal)
        ),
        RolloutStep::Wait(wait) => format!(
            "rolling out the new pod template: waiting until {}",
            match wait {
                RolloutWait::RevisionPending => "the StatefulSet has taken the new template",
                RolloutWait::PodNotReady => "every member pod is ready",
                RolloutWait::MemberUnhealthy => "every member answers and a leader is known",
                RolloutWait::CatchingUp => "every member has caught up with the leader",
                RolloutWait::VersionSkew => {
                    "spec.version is at most one minor above the lowest member version (set an intermediate version first)"
                }
                RolloutWait::SnapshotPending => "the snapshot taken before the rollout is uploaded",
                RolloutWait::DowngradePending => {
                    "every member has applied the enabled downgrade"
                }
                RolloutWait::SnapshotFailed => {
                    "a snapshot before the rollout succeeds (it failed: see status.backup; fix the backups or remove spec.backup)"
                }
            }
        ),
    };
    Some(message)
}

#[cfg(test)]
#[path = "rollout_tests.rs"]
mod tests;
