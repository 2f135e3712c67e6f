//! The one membership change of a reconcile, carried out through the etcd API: add a learner,
//! promote it, move the leadership, remove or replace a member; each change is counted in the
//! metrics and reported as an Event about the member's pod.

use oxcd_crds::StoreCluster;

use super::{Context, ReconcileError};
use crate::members::Members;
use crate::plan::MemberAction;
use crate::validate::ValidatedCluster;

/// Makes `action`'s change. A promotion the leader refuses (the learner is not caught up in its
/// eyes yet) is not an error: the next reconcile tries again.
pub async fn act(
    cluster: &StoreCluster,
    validated: &ValidatedCluster,
    members: &Members,
    action: &MemberAction,
    context: &Context,
) -> Result<(), ReconcileError> {
    let (label, ordinal, note) = match action {
        MemberAction::AddLearner { ordinal } => {
            let id = members
                .add_learner(*ordinal)
                .await
                .map_err(ReconcileError::Membership)?;
            (
                "add_learner",
                *ordinal,
                format!(
                    "added {} as learner {id:x}",
                    validated.names.member(*ordinal)
                ),
            )
        }
        MemberAction::Promote { member_id, ordinal } => {
            if let Err(error) = members.promote(*member_id).await {
                // The leader judges "caught up" itself and may still refuse; try again soon.
                tracing::info!(error = %crate::error_chain(&error), "learner not promoted yet");
                return Ok(());
            }
            (
                "promote",
                *ordinal,
                format!(
                    "promoted learner {} ({member_id:x})",
                    validated.names.member(*ordinal)
                ),
            )
        }
        MemberAction::MoveLeader { from_ordinal, to } => {
            let leader_url = members.client_url(*from_ordinal);
            members
                .move_leader(&leader_url, *to)
                .await
                .map_err(ReconcileError::Membership)?;
            (
                "move_leader",
                *from_ordinal,
                format!("moved the leadership to {to:x}"),
            )
        }
        MemberAction::Remove { member_id, ordinal }
        | MemberAction::Replace { member_id, ordinal } => {
            members
                .remove(*member_id)
                .await
                .map_err(ReconcileError::Membership)?;
            let member = validated.names.member(*ordinal);
            if matches!(action, MemberAction::Replace { .. }) {
                let note = format!(
                    "removed member {member} ({member_id:x}): it lost its data and is added again"
                );
                ("replace", *ordinal, note)
            } else {
                let note = format!("removed member {member} ({member_id:x})");
                ("remove", *ordinal, note)
            }
        }
    };
    context.metrics.changed_membership(label);
    tracing::info!(cluster = %validated.names.cluster, "{note}");
    // The member's pod is the event's related object: events of one kind about different
    // members stay separate instead of folding into one series.
    let pod = validated.names.member(ordinal);
    context
        .member_event(cluster, &pod, "MembershipChanged", label, note)
        .await;
    Ok(())
}
