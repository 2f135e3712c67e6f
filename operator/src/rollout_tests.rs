//! The rollout planner: followers one at a time, each gated on ready pods, healthy and caught-up
//! members; the leader last after handing over; resuming from any observed point; stalling on a
//! new pod that never becomes ready.

use super::*;
use crate::members::{MemberHealth, ObservedMember};

const OLD: &str = "store-5d8f";
const NEW: &str = "store-7c41";

fn now() -> Timestamp {
    "2026-11-24T17:00:00Z".parse().unwrap_or_default()
}

/// Three voters; member `leader` leads; every member applied `applied[ordinal]`.
fn membership(leader: u32, applied: [u64; 3]) -> Membership {
    Membership {
        members: (0..3u32)
            .map(|o| ObservedMember {
                id: 100 + u64::from(o),
                name: format!("store-{o}"),
                ordinal: Some(o),
                is_learner: false,
                health: Some(MemberHealth {
                    version: "0.1.0".to_owned(),
                    release: None,
                    applied_index: applied[o as usize],
                    leader: 100 + u64::from(leader),
                    downgrade: None,
                }),
                lost_data: false,
            })
            .collect(),
    }
}

/// Pods on the given revisions, all ready and an hour old.
fn pods(revisions: [&str; 3]) -> Observed {
    let created = now().checked_sub(SignedDuration::from_hours(1)).ok();
    Observed {
        update_revision: Some(NEW.to_owned()),
        pods: (0..3u32)
            .map(|o| {
                let pod = PodState {
                    revision: revisions[o as usize].to_owned(),
                    ready: true,
                    created,
                };
                (o, pod)
            })
            .collect(),
    }
}

#[test]
fn followers_go_first_highest_ordinal_first_and_the_leader_last_after_handing_over() {
    let cluster = membership(1, [50, 50, 50]);
    let step = |revisions| plan_rollout(&cluster, &pods(revisions), now(), STALL_AFTER);
    assert_eq!(step([OLD, OLD, OLD]), RolloutStep::DeletePod { ordinal: 2 });
    assert_eq!(step([OLD, OLD, NEW]), RolloutStep::DeletePod { ordinal: 0 });
    // Only the leader (store-1) is left: leadership to the lowest updated voter first.
    assert_eq!(
        step([NEW, OLD, NEW]),
        RolloutStep::MoveLeader {
            from_ordinal: 1,
            to: 100
        }
    );
    // Resumed after the handover (store-0 leads now): the old leader's pod goes.
    let handed_over = membership(0, [50, 50, 50]);
    assert_eq!(
        plan_rollout(&handed_over, &pods([NEW, OLD, NEW]), now(), STALL_AFTER),
        RolloutStep::DeletePod { ordinal: 1 }
    );
    assert_eq!(step([NEW, NEW, NEW]), RolloutStep::Done);
}

#[test]
fn nothing_moves_until_the_statefulset_computed_its_revision() {
    let mut observed = pods([OLD, OLD, OLD]);
    observed.update_revision = None;
    assert_eq!(
        plan_rollout(&membership(0, [1, 1, 1]), &observed, now(), STALL_AFTER),
        RolloutStep::Wait(RolloutWait::RevisionPending)
    );
}

#[test]
fn the_next_pod_waits_for_the_last_one_to_be_ready_healthy_and_caught_up() {
    let cluster = membership(0, [5000, 5000, 5000]);
    // store-2 was just replaced and is not ready yet.
    let mut restarting = pods([OLD, OLD, NEW]);
    if let Some(pod) = restarting.pods.get_mut(&2) {
        pod.ready = false;
        pod.created = Some(now());
    }
    assert_eq!(
        plan_rollout(&cluster, &restarting, now(), STALL_AFTER),
        RolloutStep::Wait(RolloutWait::PodNotReady)
    );
    // Its pod is gone altogether (being recreated).
    let mut missing = pods([OLD, OLD, NEW]);
    missing.pods.remove(&2);
    assert_eq!(
        plan_rollout(&cluster, &missing, now(), STALL_AFTER),
        RolloutStep::Wait(RolloutWait::PodNotReady)
    );
    // Ready but far behind the leader.
    let lagging = membership(0, [5000, 5000, 3000]);
    assert_eq!(
        plan_rollout(&lagging, &pods([OLD, OLD, NEW]), now(), STALL_AFTER),
        RolloutStep::Wait(RolloutWait::CatchingUp)
    );
    // Ready but not answering.
    let mut silent = membership(0, [5000, 5000, 5000]);
    silent.members[2].health = None;
    assert_eq!(
        plan_rollout(&silent, &pods([OLD, OLD, NEW]), now(), STALL_AFTER),
        RolloutStep::Wait(RolloutWait::MemberUnhealthy)
    );
    // Within the allowed lag, the rollout goes on.
    let close = membership(0, [5000, 5000, 5000 - MAX_APPLY_LAG]);
    assert_eq!(
        plan_rollout(&close, &pods([OLD, OLD, NEW]), now(), STALL_AFTER),
        RolloutStep::DeletePod { ordinal: 1 }
    );
}

#[test]
fn a_new_pod_that_never_becomes_ready_stalls_without_touching_the_others() {
    let cluster = membership(0, [10, 10, 10]);
    let mut broken = pods([OLD, OLD, NEW]);
    if let Some(pod) = broken.pods.get_mut(&2) {
        pod.ready = false;
        pod.created = now().checked_sub(STALL_AFTER).ok();
    }
    assert_eq!(
        plan_rollout(&cluster, &broken, now(), STALL_AFTER),
        RolloutStep::Stalled { ordinal: 2 }
    );
    // An old pod that is not ready is never declared stalled: it is next to be replaced.
    let mut old_not_ready = pods([OLD, OLD, NEW]);
    if let Some(pod) = old_not_ready.pods.get_mut(&1) {
        pod.ready = false;
        pod.created = now().checked_sub(SignedDuration::from_hours(2)).ok();
    }
    assert_eq!(
        plan_rollout(&cluster, &old_not_ready, now(), STALL_AFTER),
        RolloutStep::DeletePod { ordinal: 1 }
    );
}

#[test]
fn a_down_pod_on_an_old_template_is_replaced_first_once_the_others_are_up() {
    // The spec moved back from a broken template: store-2 crash-loops on it, now outdated.
    let mut cluster = membership(0, [10, 10, 10]);
    cluster.members[2].health = None;
    let mut reverted = pods([NEW, NEW, OLD]);
    if let Some(pod) = reverted.pods.get_mut(&2) {
        pod.ready = false;
    }
    assert_eq!(
        plan_rollout(&cluster, &reverted, now(), STALL_AFTER),
        RolloutStep::DeletePod { ordinal: 2 }
    );
    // Never while another member is down too: that would cost the quorum.
    cluster.members[1].health = None;
    assert_eq!(
        plan_rollout(&cluster, &reverted, now(), STALL_AFTER),
        RolloutStep::Wait(RolloutWait::MemberUnhealthy)
    );
    // Two outdated pods down: wait for one to come back.
    let mut two_down = pods([OLD, OLD, NEW]);
    for o in [0, 1] {
        if let Some(pod) = two_down.pods.get_mut(&o) {
            pod.ready = false;
        }
    }
    assert_eq!(
        plan_rollout(&membership(2, [10, 10, 10]), &two_down, now(), STALL_AFTER),
        RolloutStep::Wait(RolloutWait::PodNotReady)
    );
}

#[test]
fn a_single_member_is_replaced_in_place() {
    let single = Membership {
        members: membership(0, [1, 1, 1])
            .members
            .into_iter()
            .take(1)
            .collect(),
    };
    let mut observed = pods([OLD, OLD, OLD]);
    observed.pods.retain(|o, _| *o == 0);
    assert_eq!(
        plan_rollout(&single, &observed, now(), STALL_AFTER),
        RolloutStep::DeletePod { ordinal: 0 }
    );
}

#[test]
fn the_upgrade_status_names_updated_members_and_keeps_where_it_started() {
    let names = crate::validate::fixtures::validated("spec: {version: 0.2.0, replicas: 3}")
        .names
        .clone();
    let cluster = membership(1, [50, 50, 50]);
    let observed = pods([OLD, OLD, NEW]);
    let step = plan_rollout(&cluster, &observed, now(), STALL_AFTER);
    let started = upgrade_status(&step, None, &cluster, &observed, "0.2.0", &names);
    let Some(started) = started else {
        panic!("a rollout under way has an upgrade status");
    };
    assert_eq!(started.from.as_deref(), Some("0.1.0"));
    assert_eq!(started.to, "0.2.0");
    assert_eq!(started.revision, NEW);
    assert_eq!(started.phase, UpgradePhase::Followers);
    assert_eq!(started.updated, vec![names.member(2)]);

    // Only the leader is left: the leadership moves first.
    let handing_over = pods([NEW, OLD, NEW]);
    let step = plan_rollout(&cluster, &handing_over, now(), STALL_AFTER);
    let handover = upgrade_status(
        &step,
        Some(&started),
        &cluster,
        &handing_over,
        "0.2.0",
        &names,
    );
    assert_eq!(
        handover.as_ref().map(|u| u.phase),
        Some(UpgradePhase::Leader)
    );
    let started = handover.unwrap_or(started);

    // Later the members report the new version; `from` stays what the rollout started from.
    let mut moved_on = membership(0, [50, 50, 50]);
    for m in &mut moved_on.members {
        if let Some(h) = m.health.as_mut() {
            h.version = "0.2.0".to_owned();
        }
    }
    let last = pods([NEW, OLD, NEW]);
    let step = plan_rollout(&moved_on, &last, now(), STALL_AFTER);
    let leader_phase = upgrade_status(&step, Some(&started), &moved_on, &last, "0.2.0", &names);
    assert_eq!(
        leader_phase.as_ref().map(|u| (u.from.as_deref(), u.phase)),
        Some((Some("0.1.0"), UpgradePhase::Leader))
    );
    let finished = pods([NEW, NEW, NEW]);
    let step = plan_rollout(&moved_on, &finished, now(), STALL_AFTER);
    assert_eq!(
        upgrade_status(
            &step,
            leader_phase.as_ref(),
            &moved_on,
            &finished,
            "0.2.0",
            &names
        ),
        None
    );
}

#[test]
fn a_target_more_than_one_minor_above_the_lowest_member_is_out_of_reach() {
    let mut cluster = membership(0, [1, 1, 1]);
    let releases = ["0.1.4", "0.2.0", "0.2.0"];
    for (member, release) in cluster.members.iter_mut().zip(releases) {
        if let Some(h) = member.health.as_mut() {
            h.release = Some(release.to_owned());
        }
    }
    assert!(!skips_a_minor("0.2.1", &cluster));
    // 0.1 is still running: 0.3 would skip 0.2 for that member.
    assert!(skips_a_minor("0.3.0", &cluster));
    assert!(skips_a_minor("1.2.0", &cluster));
    // Members that did not tell their release block nothing.
    assert!(!skips_a_minor("0.9.0", &membership(0, [1, 1, 1])));
}

#[test]
fn a_downgrade_enables_the_lower_cluster_version_first_and_skips_are_refused() {
    let with_releases = |releases: [&str; 3]| {
        let mut cluster = membership(0, [1, 1, 1]);
        for (member, release) in cluster.members.iter_mut().zip(releases) {
            if let Some(h) = member.health.as_mut() {
                h.release = Some(release.to_owned());
            }
        }
        cluster
    };
    let running = with_releases(["0.2.1", "0.2.1", "0.2.1"]);
    assert_eq!(
        downgrade_target("0.1.3", true, &running).as_deref(),
        Some("0.1")
    );
    assert_eq!(downgrade_target("0.1.3", false, &running), None);
    assert_eq!(
        downgrade_target("0.2.0", true, &running),
        None,
        "a patch is no downgrade"
    );
    assert!(!skips_a_minor("0.1.3", &running));
    assert!(skips_a_minor("0.0.9", &running), "two minors down");
    // Half-way: still enabled while a member runs 0.2; over once none does.
    let half = with_releases(["0.1.3", "0.2.1", "0.2.1"]);
    assert_eq!(
        downgrade_target("0.1.3", true, &half).as_deref(),
        Some("0.1")
    );
    let done = with_releases(["0.1.3", "0.1.3", "0.1.3"]);
    assert_eq!(downgrade_target("0.1.3", true, &done), None);
}

#[test]
fn no_member_restarts_onto_a_downgrade_before_every_member_applied_it() {
    let with_applied = |applied: [Option<&str>; 3]| {
        let mut cluster = membership(0, [1, 1, 1]);
        for (member, target) in cluster.members.iter_mut().zip(applied) {
            if let Some(h) = member.health.as_mut() {
                h.downgrade = target.map(str::to_owned);
            }
        }
        cluster
    };
    assert!(downgrade_applied(
        "0.1",
        &with_applied([Some("0.1.0"), Some("0.1.0"), Some("0.1")])
    ));
    // The member that served the Downgrade call applied it; one follower has not yet.
    assert!(!downgrade_applied(
        "0.1",
        &with_applied([Some("0.1.0"), None, Some("0.1.0")])
    ));
    assert!(
        !downgrade_applied("0.1", &with_applied([Some("0.10.0"); 3])),
        "another minor is not this target"
    );
    let mut silent = with_applied([Some("0.1.0"); 3]);
    silent.members[2].health = None;
    assert!(
        !downgrade_applied("0.1", &silent),
        "a member that does not answer has not shown it"
    );
}

#[test]
fn the_rollout_starts_with_its_first_restart_onto_the_new_revision() {
    let cluster = membership(1, [50, 50, 50]);
    let fresh = pods([OLD, OLD, OLD]);
    let first = plan_rollout(&cluster, &fresh, now(), STALL_AFTER);
    assert!(starts_rollout(&first, &cluster, &fresh));
    // Once one member runs the new revision, it has started (a snapshot is not taken again).
    let going = pods([OLD, OLD, NEW]);
    let next = plan_rollout(&cluster, &going, now(), STALL_AFTER);
    assert!(!starts_rollout(&next, &cluster, &going));
    let done = pods([NEW, NEW, NEW]);
    assert!(!starts_rollout(&RolloutStep::Done, &cluster, &done));
}
