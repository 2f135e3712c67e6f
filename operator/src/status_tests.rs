//! Status from observations: conditions and their transitions, phase, members table.

use super::*;
use crate::build::Bootstrap;
use crate::members::{MemberHealth, ObservedMember};
use crate::validate::fixtures::{MINIMAL, validated};

fn at(seconds: i64) -> Time {
    Time(jiff::Timestamp::from_second(seconds).unwrap_or_default())
}

fn membership(healthy: &[bool], leader_ordinal: u32, versions: &[&str]) -> Membership {
    Membership {
        members: healthy
            .iter()
            .enumerate()
            .map(|(i, &ok)| {
                let ordinal = u32::try_from(i).unwrap_or_default();
                ObservedMember {
                    id: 0xa0 + u64::from(ordinal),
                    name: format!("demo-{ordinal}"),
                    ordinal: Some(ordinal),
                    is_learner: false,
                    health: ok.then(|| MemberHealth {
                        version: versions.get(i).copied().unwrap_or("0.1.0").to_owned(),
                        release: None,
                        applied_index: 10,
                        leader: 0xa0 + u64::from(leader_ordinal),
                        downgrade: None,
                    }),
                    lost_data: false,
                }
            })
            .collect(),
    }
}

/// What a reconcile that reached the members saw.
fn reached<'a>(membership: &'a Membership, plan: &'a Plan) -> Outcome<'a> {
    Outcome {
        membership: Some(membership),
        unreachable: None,
        plan,
        apply_error: None,
        rollout: None,
        upgrade: None,
        backup: None,
    }
}

fn steady_plan() -> Plan {
    let cluster = validated(MINIMAL);
    Plan {
        action: None,
        wait: None,
        statefulset_replicas: 3,
        bootstrap: Bootstrap::new_cluster(&cluster),
    }
}

fn condition<'a>(status: &'a StoreClusterStatus, type_: &str) -> &'a Condition {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_}"))
}

#[test]
fn a_healthy_cluster_is_available_running_and_lists_its_members() {
    let cluster = validated(MINIMAL);
    let members = membership(&[true, true, true], 1, &["0.1.0", "0.2.0", "0.10.0"]);
    let plan = steady_plan();
    let outcome = reached(&members, &plan);
    let status = build_status(&cluster, None, &outcome, &at(100));
    assert_eq!(condition(&status, "Available").status, "True");
    assert_eq!(condition(&status, "Available").reason, "QuorumHealthy");
    assert_eq!(condition(&status, "Progressing").status, "False");
    assert_eq!(condition(&status, "Degraded").status, "False");
    assert_eq!(status.phase, Some(Phase::Running));
    assert_eq!(status.leader.as_deref(), Some("demo-1"));
    assert_eq!(status.ready, "3/3");
    assert_eq!(status.version.as_deref(), Some("0.1.0"));
    assert_eq!(status.members[1].role, MemberRole::Leader);
    assert_eq!(status.members[1].id, "a1");
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(
        status.client_endpoints,
        ["https://demo-client.prod.svc:2379"]
    );
    assert_eq!(
        status.client_certificate_secret.as_deref(),
        Some("demo-client-tls")
    );
}

#[test]
fn transition_times_move_only_when_a_condition_changes() {
    let cluster = validated(MINIMAL);
    let plan = steady_plan();
    let healthy = membership(&[true, true, true], 0, &[]);
    let first = build_status(&cluster, None, &reached(&healthy, &plan), &at(100));
    let same = build_status(&cluster, Some(&first), &reached(&healthy, &plan), &at(200));
    assert_eq!(first, same, "a steady cluster's status does not change");

    let one_down = membership(&[true, true, false], 0, &[]);
    let degraded = build_status(&cluster, Some(&same), &reached(&one_down, &plan), &at(300));
    assert_eq!(condition(&degraded, "Degraded").status, "True");
    assert_eq!(condition(&degraded, "Degraded").reason, "MemberUnhealthy");
    assert_eq!(
        condition(&degraded, "Degraded").last_transition_time,
        at(300)
    );
    assert_eq!(
        condition(&degraded, "Available").last_transition_time,
        at(100)
    );
    assert_eq!(degraded.phase, Some(Phase::Degraded));
    assert_eq!(degraded.ready, "2/3");
}

#[test]
fn quorum_loss_makes_the_cluster_unavailable() {
    let cluster = validated(MINIMAL);
    let plan = steady_plan();
    let members = membership(&[true, false, false], 0, &[]);
    let status = build_status(&cluster, None, &reached(&members, &plan), &at(1));
    assert_eq!(condition(&status, "Available").reason, "QuorumLost");
}

#[test]
fn a_new_cluster_is_creating_until_its_members_answer_and_unreachable_afterwards() {
    let cluster = validated(MINIMAL);
    let plan = steady_plan();
    let unreachable = Outcome {
        membership: None,
        unreachable: Some("failed to reach any member".to_owned()),
        plan: &plan,
        apply_error: None,
        rollout: None,
        upgrade: None,
        backup: None,
    };
    let creating = build_status(&cluster, None, &unreachable, &at(1));
    assert_eq!(creating.phase, Some(Phase::Creating));
    assert_eq!(condition(&creating, "Available").reason, "MembersStarting");
    assert_eq!(condition(&creating, "Progressing").status, "True");

    let healthy = membership(&[true, true, true], 0, &[]);
    let running = build_status(&cluster, Some(&creating), &reached(&healthy, &plan), &at(2));
    let lost = build_status(&cluster, Some(&running), &unreachable, &at(3));
    assert_eq!(lost.phase, Some(Phase::Degraded));
    assert_eq!(condition(&lost, "Degraded").reason, "MembersUnreachable");
    assert_eq!(condition(&lost, "Available").reason, "MembersUnreachable");
}

#[test]
fn scaling_shows_in_progressing_and_the_phase() {
    let cluster = validated("spec: {version: 0.1.0, replicas: 5}");
    let mut plan = steady_plan();
    plan.action = Some(MemberAction::AddLearner { ordinal: 3 });
    let members = membership(&[true, true, true], 0, &[]);
    let status = build_status(&cluster, None, &reached(&members, &plan), &at(1));
    assert_eq!(condition(&status, "Progressing").reason, "AddingMember");
    assert_eq!(
        condition(&status, "Progressing").message,
        "adding demo-3 as a learner"
    );
    assert_eq!(status.phase, Some(Phase::Scaling));
    assert_eq!(status.ready, "3/5");
}

#[test]
fn an_invalid_spec_is_degraded_without_touching_the_rest() {
    let previous = StoreClusterStatus {
        leader: Some("demo-0".to_owned()),
        ..Default::default()
    };
    let status = invalid_status(
        Some(&previous),
        Some(4),
        "spec.replicas 2 must be odd".to_owned(),
        &at(9),
    );
    assert_eq!(status.phase, Some(Phase::Invalid));
    assert_eq!(condition(&status, "Degraded").reason, "InvalidSpec");
    assert_eq!(status.leader.as_deref(), Some("demo-0"));
    assert_eq!(status.observed_generation, Some(4));
}

#[test]
fn a_rollout_shows_as_updating_and_a_stalled_one_as_degraded_with_its_member() {
    use crate::rollout::RolloutStep;
    use oxcd_crds::{UpgradePhase, UpgradeStatus};

    let cluster = validated(MINIMAL);
    let members = membership(&[true, true, true], 0, &["0.1.0", "0.1.0", "0.1.0"]);
    let plan = steady_plan();
    let upgrade = UpgradeStatus {
        from: Some("0.1.0".to_owned()),
        to: "0.2.0".to_owned(),
        revision: "demo-7c41".to_owned(),
        phase: UpgradePhase::Followers,
        updated: vec!["demo-2".to_owned()],
    };
    let restarting = RolloutStep::DeletePod { ordinal: 1 };
    let outcome = Outcome {
        rollout: Some(&restarting),
        upgrade: Some(upgrade.clone()),
        ..reached(&members, &plan)
    };
    let rolling = build_status(&cluster, None, &outcome, &at(1));
    assert_eq!(rolling.phase, Some(Phase::Updating));
    assert_eq!(condition(&rolling, "Progressing").reason, "RollingOut");
    assert!(
        condition(&rolling, "Progressing")
            .message
            .contains("demo-1")
    );
    assert_eq!(rolling.upgrade, Some(upgrade.clone()));

    let stalled_step = RolloutStep::Stalled { ordinal: 2 };
    let stalled_upgrade = UpgradeStatus {
        phase: UpgradePhase::Stalled,
        ..upgrade
    };
    let outcome = Outcome {
        rollout: Some(&stalled_step),
        upgrade: Some(stalled_upgrade),
        ..reached(&members, &plan)
    };
    let stalled = build_status(&cluster, Some(&rolling), &outcome, &at(2));
    assert_eq!(stalled.phase, Some(Phase::Degraded));
    let degraded = condition(&stalled, "Degraded");
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "UpgradeStalled")
    );
    assert!(degraded.message.contains("demo-2"), "{}", degraded.message);
    // The quorum is intact: still available.
    assert_eq!(condition(&stalled, "Available").status, "True");

    let done = RolloutStep::Done;
    let outcome = Outcome {
        rollout: Some(&done),
        ..reached(&members, &plan)
    };
    let finished = build_status(&cluster, Some(&stalled), &outcome, &at(3));
    assert_eq!(finished.phase, Some(Phase::Running));
    assert_eq!(finished.upgrade, None);
    assert_eq!(condition(&finished, "Progressing").reason, "Reconciled");
}

#[test]
fn repeated_backup_failures_degrade_a_healthy_cluster_until_a_backup_succeeds() {
    let cluster = validated(
        "
spec:
  version: 0.1.0
  backup: {schedule: '@daily', s3: {bucket: snapshots}}
",
    );
    let members = membership(&[true, true, true], 0, &[]);
    let plan = steady_plan();
    let healthy = build_status(&cluster, None, &reached(&members, &plan), &at(100));
    let failing = |failures: i32| Outcome {
        backup: Some(BackupStatus {
            consecutive_failures: failures,
            last_error: Some("failed to upload the snapshot".to_owned()),
            ..BackupStatus::default()
        }),
        ..reached(&members, &plan)
    };
    let two = build_status(&cluster, Some(&healthy), &failing(2), &at(200));
    assert_eq!(condition(&two, "Degraded").status, "False");
    let three = build_status(&cluster, Some(&two), &failing(3), &at(300));
    let degraded = condition(&three, "Degraded");
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "BackupFailing")
    );
    assert!(
        degraded
            .message
            .contains("the last 3 backups failed: failed to upload")
    );
    assert_eq!(degraded.last_transition_time, at(300));
    assert_eq!(three.phase, Some(Phase::Degraded));
    // Still failing later: no new transition, and the backup status carries over.
    let later = build_status(&cluster, Some(&three), &reached(&members, &plan), &at(400));
    assert_eq!(condition(&later, "Degraded").last_transition_time, at(300));
    assert_eq!(later.backup, three.backup);
    let recovered = build_status(&cluster, Some(&later), &failing(0), &at(500));
    assert_eq!(condition(&recovered, "Degraded").status, "False");
    assert_eq!(recovered.phase, Some(Phase::Running));
    // Removing spec.backup ends BackupFailing too.
    let removed = build_status(&validated(MINIMAL), Some(&three), &failing(3), &at(600));
    assert_eq!(condition(&removed, "Degraded").status, "False");
}
