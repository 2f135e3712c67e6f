//! The membership planner: from the desired size and the observed membership, the one
//! membership change of this reconcile (add a learner, promote it, move the leadership off a
//! member about to go, remove it, replace a member that lost its data) and the StatefulSet size
//! and bootstrap settings that follow.
//! Pure: unit-tested from fixtures. Never acts while the change would risk quorum.

use crate::build::{Bootstrap, ClusterState};
use crate::members::{Membership, ObservedMember};
use crate::validate::ValidatedCluster;

/// A learner is promoted once it has applied this share of the leader's log (etcd's rule).
const CATCH_UP_PERCENT: u64 = 90;

/// The membership change of one reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberAction {
    /// Add member `ordinal` as a learner (its pod starts after).
    AddLearner {
        /// Ordinal of the new member.
        ordinal: u32,
    },
    /// Promote the learner `member_id`.
    Promote {
        /// The learner.
        member_id: u64,
        /// Its ordinal.
        ordinal: u32,
    },
    /// Move the leadership from the member about to be removed to `to`.
    MoveLeader {
        /// The current leader (the member to remove).
        from_ordinal: u32,
        /// The new leader.
        to: u64,
    },
    /// Remove member `member_id` (its pod goes after).
    Remove {
        /// The member.
        member_id: u64,
        /// Its ordinal.
        ordinal: u32,
    },
    /// Remove member `member_id`, which lost its data, so that it can be added again as a new
    /// learner under the same ordinal (by a later reconcile).
    Replace {
        /// The member.
        member_id: u64,
        /// Its ordinal.
        ordinal: u32,
    },
}

/// Why the plan waits instead of acting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// A learner is catching up.
    LearnerCatchingUp,
    /// A member does not answer; changes wait until all do.
    MemberUnhealthy,
    /// The cluster has no leader.
    NoLeader,
}

/// What this reconcile does to the membership and the StatefulSet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The membership change to make first, if any.
    pub action: Option<MemberAction>,
    /// Why nothing changes although the size differs, if so.
    pub wait: Option<Wait>,
    /// StatefulSet replicas after the action.
    pub statefulset_replicas: i32,
    /// Bootstrap settings for members that start empty.
    pub bootstrap: Bootstrap,
}

fn healthy(member: &ObservedMember) -> bool {
    member.health.is_some() && member.ordinal.is_some()
}

/// The plan when no member answers: a cluster never formed gets its initial members; an
/// existing one is left exactly as it is.
pub fn plan_unreachable(
    cluster: &ValidatedCluster,
    bootstrap: Option<Bootstrap>,
    statefulset_replicas: Option<i32>,
) -> Plan {
    match (bootstrap, statefulset_replicas) {
        (Some(bootstrap), Some(replicas)) => Plan {
            action: None,
            wait: None,
            statefulset_replicas: replicas,
            bootstrap,
        },
        (Some(bootstrap), None) if bootstrap.state == ClusterState::New => Plan {
            action: None,
            wait: None,
            statefulset_replicas: i32::try_from(bootstrap.members.len()).unwrap_or(1),
            bootstrap,
        },
        _ => {
            let bootstrap = Bootstrap::new_cluster(cluster);
            Plan {
                action: None,
                wait: None,
                statefulset_replicas: cluster.spec.replicas,
                bootstrap,
            }
        }
    }
}

/// The plan for a cluster whose membership was read.
pub fn plan(cluster: &ValidatedCluster, membership: &Membership) -> Plan {
    let tls = cluster.tls_enabled();
    let desired = usize::try_from(cluster.spec.replicas).unwrap_or(1);
    let voters: Vec<&ObservedMember> = membership
        .members
        .iter()
        .filter(|m| !m.is_learner)
        .collect();
    let learner = membership.members.iter().find(|m| m.is_learner);
    let all_healthy = membership.members.iter().all(healthy);
    let leader = membership.leader();

    let mut action = None;
    let mut wait = None;
    if let Some(lost) = membership.members.iter().find(|m| m.lost_data) {
        // A member that lost its data cannot come back under its id; replacing it starts by
        // removing it, once everyone else is healthy and led (so the removal commits and the
        // remaining voters keep their quorum). The re-add below fills its ordinal again.
        let others_healthy = membership
            .members
            .iter()
            .filter(|m| m.id != lost.id)
            .all(healthy);
        if !others_healthy {
            wait = Some(Wait::MemberUnhealthy);
        } else if leader.is_none() {
            wait = Some(Wait::NoLeader);
        } else {
            action = Some(MemberAction::Replace {
                member_id: lost.id,
                ordinal: lost.ordinal.unwrap_or_default(),
            });
        }
    } else if let Some(learner) = learner {
        // Finish an addition before anything else; a learner counts toward nothing.
        let leader_applied = leader
            .and_then(|id| membership.member(id))
            .and_then(|m| m.health.as_ref())
            .map(|h| h.applied_index);
        match (learner.health.as_ref(), leader_applied) {
            (Some(health), Some(leader_applied))
                if health.applied_index * 100 >= leader_applied * CATCH_UP_PERCENT =>
            {
                action = Some(MemberAction::Promote {
                    member_id: learner.id,
                    ordinal: learner.ordinal.unwrap_or_default(),
                });
            }
            _ => wait = Some(Wait::LearnerCatchingUp),
        }
    } else if voters.len() != desired {
        if !all_healthy {
            wait = Some(Wait::MemberUnhealthy);
        } else if leader.is_none() {
            wait = Some(Wait::NoLeader);
        } else if voters.len() < desired {
            // The lowest free ordinal: the next one when growing, the gap a replaced member
            // left otherwise.
            let taken: Vec<u32> = membership
                .members
                .iter()
                .filter_map(|m| m.ordinal)
                .collect();
            let ordinal = (0..).find(|o| !taken.contains(o)).unwrap_or_default();
            action = Some(MemberAction::AddLearner { ordinal });
        } else if let Some(last) = voters.iter().max_by_key(|m| m.ordinal) {
            let ordinal = last.ordinal.unwrap_or_default();
            action = Some(if leader == Some(last.id) {
                let successor = voters
                    .iter()
                    .filter(|m| m.id != last.id)
                    .min_by_key(|m| m.ordinal)
                    .map_or(0, |m| m.id);
                MemberAction::MoveLeader {
                    from_ordinal: ordinal,
                    to: successor,
                }
            } else {
                MemberAction::Remove {
                    member_id: last.id,
                    ordinal,
                }
            });
        }
    }

    // The membership after the action decides the StatefulSet's size and what members that
    // start empty are told.
    let mut ordinals: Vec<u32> = membership
        .members
        .iter()
        .filter_map(|m| m.ordinal)
        .collect();
    match &action {
        Some(MemberAction::AddLearner { ordinal }) => ordinals.push(*ordinal),
        Some(MemberAction::Remove { ordinal, .. } | MemberAction::Replace { ordinal, .. }) => {
            ordinals.retain(|o| o != ordinal);
        }
        _ => {}
    }
    ordinals.sort_unstable();
    let statefulset_replicas = ordinals.last().map_or(0, |max| {
        i32::try_from(*max).unwrap_or(i32::MAX).saturating_add(1)
    });
    let bootstrap = Bootstrap {
        state: ClusterState::Existing,
        members: ordinals
            .iter()
            .map(|&o| (cluster.names.member(o), cluster.names.peer_url(o, tls)))
            .collect(),
    };
    Plan {
        action,
        wait,
        statefulset_replicas,
        bootstrap,
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
