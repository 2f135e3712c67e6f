//! The membership planner: scale out through a learner, scale in removing the highest member
//! (leader moved off first), replacing a member that lost its data, waiting while members are
//! unhealthy, and the bootstrap of clusters that never answered.

use super::*;
use crate::members::MemberHealth;
use crate::validate::fixtures::validated;

fn cluster(replicas: i32) -> ValidatedCluster {
    validated(&format!("spec: {{version: 0.1.0, replicas: {replicas}}}"))
}

fn member(ordinal: u32, learner: bool, applied: Option<u64>, leader: u64) -> ObservedMember {
    ObservedMember {
        id: 100 + u64::from(ordinal),
        name: format!("demo-{ordinal}"),
        ordinal: Some(ordinal),
        is_learner: learner,
        health: applied.map(|applied_index| MemberHealth {
            version: "0.1.0".to_owned(),
            release: None,
            applied_index,
            leader,
            downgrade: None,
        }),
        lost_data: false,
    }
}

fn voters(count: u32, leader_ordinal: u32) -> Vec<ObservedMember> {
    (0..count)
        .map(|o| member(o, false, Some(1000), 100 + u64::from(leader_ordinal)))
        .collect()
}

#[test]
fn scale_out_adds_the_next_ordinal_as_a_learner_before_its_pod() {
    let membership = Membership {
        members: voters(3, 0),
    };
    let plan = plan(&cluster(5), &membership);
    assert_eq!(plan.action, Some(MemberAction::AddLearner { ordinal: 3 }));
    assert_eq!(plan.statefulset_replicas, 4);
    assert_eq!(plan.bootstrap.state, ClusterState::Existing);
    assert_eq!(plan.bootstrap.members.len(), 4);
    assert_eq!(
        plan.bootstrap.members[3],
        (
            "demo-3".to_owned(),
            "https://demo-3.demo-peer.prod.svc:2380".to_owned()
        )
    );
}

#[test]
fn a_caught_up_learner_is_promoted_and_a_lagging_one_waits() {
    let mut members = voters(3, 0);
    members.push(member(3, true, Some(950), 100));
    let plan_now = plan(
        &cluster(5),
        &Membership {
            members: members.clone(),
        },
    );
    assert_eq!(
        plan_now.action,
        Some(MemberAction::Promote {
            member_id: 103,
            ordinal: 3
        })
    );
    assert_eq!(plan_now.statefulset_replicas, 4);

    members[3] = member(3, true, Some(10), 100);
    let lagging = plan(
        &cluster(5),
        &Membership {
            members: members.clone(),
        },
    );
    assert_eq!(lagging.action, None);
    assert_eq!(lagging.wait, Some(Wait::LearnerCatchingUp));

    members[3] = member(3, true, None, 0);
    let not_started = plan(&cluster(5), &Membership { members });
    assert_eq!(not_started.wait, Some(Wait::LearnerCatchingUp));
    assert_eq!(not_started.statefulset_replicas, 4, "its pod keeps running");
}

#[test]
fn scale_in_removes_the_highest_member_before_its_pod() {
    let membership = Membership {
        members: voters(5, 0),
    };
    let plan = plan(&cluster(3), &membership);
    assert_eq!(
        plan.action,
        Some(MemberAction::Remove {
            member_id: 104,
            ordinal: 4
        })
    );
    assert_eq!(plan.statefulset_replicas, 4);
    assert_eq!(plan.bootstrap.members.len(), 4);
}

#[test]
fn scale_in_moves_the_leadership_off_the_member_to_remove_first() {
    let membership = Membership {
        members: voters(5, 4),
    };
    let plan = plan(&cluster(3), &membership);
    assert_eq!(
        plan.action,
        Some(MemberAction::MoveLeader {
            from_ordinal: 4,
            to: 100
        })
    );
    assert_eq!(plan.statefulset_replicas, 5);
}

#[test]
fn no_membership_change_while_a_member_is_unhealthy() {
    let mut members = voters(3, 0);
    members[2].health = None;
    let plan = plan(&cluster(5), &Membership { members });
    assert_eq!(plan.action, None);
    assert_eq!(plan.wait, Some(Wait::MemberUnhealthy));
    assert_eq!(plan.statefulset_replicas, 3);
}

#[test]
fn no_membership_change_without_a_leader() {
    let members = (0..3).map(|o| member(o, false, Some(5), 0)).collect();
    let plan = plan(&cluster(1), &Membership { members });
    assert_eq!(plan.wait, Some(Wait::NoLeader));
}

#[test]
fn a_cluster_at_its_size_changes_nothing() {
    let plan = plan(
        &cluster(3),
        &Membership {
            members: voters(3, 1),
        },
    );
    assert_eq!(
        (plan.action, plan.wait, plan.statefulset_replicas),
        (None, None, 3)
    );
}

#[test]
fn a_cluster_never_reached_gets_its_initial_members() {
    let plan = plan_unreachable(&cluster(3), None, None);
    assert_eq!(plan.bootstrap.state, ClusterState::New);
    assert_eq!(plan.statefulset_replicas, 3);
}

#[test]
fn an_unreachable_existing_cluster_is_left_as_it_is() {
    let existing = Bootstrap {
        state: ClusterState::Existing,
        members: vec![("demo-0".to_owned(), "u".to_owned())],
    };
    let plan = plan_unreachable(&cluster(5), Some(existing.clone()), Some(4));
    assert_eq!((plan.statefulset_replicas, plan.bootstrap), (4, existing));
    assert_eq!(plan.action, None);
}

#[test]
fn a_member_that_lost_its_data_is_removed_then_added_again_under_its_ordinal() {
    let mut members = voters(3, 0);
    members[1].health = None;
    members[1].lost_data = true;
    let removal = plan(
        &cluster(3),
        &Membership {
            members: members.clone(),
        },
    );
    assert_eq!(
        removal.action,
        Some(MemberAction::Replace {
            member_id: 101,
            ordinal: 1
        })
    );
    // Ordinal 2 stays: the StatefulSet keeps its size, the bootstrap drops the removed member.
    assert_eq!(removal.statefulset_replicas, 3);
    assert_eq!(removal.bootstrap.members.len(), 2);

    // Once it is gone, the gap it left is refilled before anything grows past it.
    members.remove(1);
    let readd = plan(&cluster(3), &Membership { members });
    assert_eq!(readd.action, Some(MemberAction::AddLearner { ordinal: 1 }));
    assert_eq!(readd.statefulset_replicas, 3);
    assert_eq!(readd.bootstrap.members[1].0, "demo-1");
}

#[test]
fn a_lost_member_waits_while_another_member_is_unhealthy_or_leaderless() {
    let mut members = voters(3, 0);
    members[1].health = None;
    members[1].lost_data = true;
    members[2].health = None;
    let plan_unhealthy = plan(&cluster(3), &Membership { members });
    assert_eq!(
        (plan_unhealthy.action, plan_unhealthy.wait),
        (None, Some(Wait::MemberUnhealthy))
    );

    let mut members: Vec<ObservedMember> = (0..3).map(|o| member(o, false, Some(5), 0)).collect();
    members[2].health = None;
    members[2].lost_data = true;
    let plan_leaderless = plan(&cluster(3), &Membership { members });
    assert_eq!(
        (plan_leaderless.action, plan_leaderless.wait),
        (None, Some(Wait::NoLeader))
    );
}

#[test]
fn a_learner_that_lost_its_data_is_removed_instead_of_awaited() {
    let mut members = voters(3, 0);
    let mut learner = member(3, true, None, 0);
    learner.lost_data = true;
    members.push(learner);
    let plan = plan(&cluster(5), &Membership { members });
    assert_eq!(
        plan.action,
        Some(MemberAction::Replace {
            member_id: 103,
            ordinal: 3
        })
    );
    assert_eq!(plan.statefulset_replicas, 3);
}
