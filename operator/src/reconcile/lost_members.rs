//! Members that lost their data dir (their PersistentVolumeClaim was deleted or replaced) and
//! that the cluster still lists: oxcd refuses to rejoin under a started member's id with an
//! empty data dir and exits with "member <id> has already been bootstrapped". The pod's
//! termination message (the container's last log lines) carries that refusal, so the operator
//! learns of the loss from the member itself instead of guessing from volumes. The planner then
//! replaces such a member: remove it, add it again as a learner, restart its pod.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams};

use crate::names::Names;

/// The refusal oxcd prints when it starts empty under a started member's id.
const REFUSAL_SUFFIX: &str = " has already been bootstrapped";
/// The member container's name in the StatefulSet's pod template.
const CONTAINER: &str = "oxcd";

/// The id of the member whose refusal to rejoin `pod`'s member container last reported, if any.
/// Only the id the refusal names counts: once the member has been replaced, the new member's id
/// differs, so an old message cannot cause a second replacement.
pub fn refused_member_id(pod: &Pod) -> Option<u64> {
    let status = pod
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|status| status.name == CONTAINER)?;
    let terminated = [
        status.state.as_ref().and_then(|s| s.terminated.as_ref()),
        status
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref()),
    ];
    terminated
        .into_iter()
        .flatten()
        .filter_map(|t| t.message.as_deref())
        .find_map(parse_refusal)
}

/// The member id in "member <hex id> has already been bootstrapped" anywhere in `message`.
fn parse_refusal(message: &str) -> Option<u64> {
    let before = &message[..message.rfind(REFUSAL_SUFFIX)?];
    let hex = before.rsplit("member ").next()?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// Whether `pod`'s member container has stopped at least once (it is crash-looping or waiting
/// to restart): such a pod is deleted so that it starts again at once with the new membership.
pub fn has_restarted(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter(|status| status.name == CONTAINER)
        .any(|status| {
            status.restart_count > 0
                || status
                    .last_state
                    .as_ref()
                    .is_some_and(|s| s.terminated.is_some())
        })
}

/// The members' pods that report a refused rejoin: ordinal → the refused member's id.
pub fn refusals(pods: &[Pod], names: &Names) -> BTreeMap<u32, u64> {
    pods.iter()
        .filter_map(|pod| {
            let ordinal = names.ordinal(pod.metadata.name.as_deref()?)?;
            Some((ordinal, refused_member_id(pod)?))
        })
        .collect()
}

/// Deletes member `ordinal`'s pod when its container has already stopped, so the StatefulSet
/// starts it again now (a crash-looping pod would otherwise wait out its back-off). Returns
/// whether a pod was deleted.
pub async fn restart_stopped(
    pods: &Api<Pod>,
    names: &Names,
    ordinal: u32,
) -> Result<bool, kube::Error> {
    let name = names.member(ordinal);
    match pods.get_opt(&name).await? {
        Some(pod) if has_restarted(&pod) => {
            pods.delete(&name, &DeleteParams::default()).await?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pod(yaml: &str) -> Pod {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    const CRASH_LOOPING: &str = r#"
metadata: {name: demo-2}
status:
  containerStatuses:
  - name: oxcd
    image: oxcd.local/oxcd:0.1.0
    imageID: ""
    ready: false
    restartCount: 3
    state:
      waiting: {reason: CrashLoopBackOff}
    lastState:
      terminated:
        exitCode: 1
        reason: Error
        message: |
          2026-11-24T17:00:00Z  INFO oxcd: starting member demo-2
          Error: member 8e9e05c52164694d has already been bootstrapped, but its data dir is empty: remove it (etcdctl member remove 8e9e05c52164694d) and add it again (etcdctl member add demo-2 --peer-urls=https://demo-2.demo-peer.prod.svc:2380)
"#;

    #[test]
    fn a_refused_rejoin_names_the_member_from_the_termination_message() {
        let pod = pod(CRASH_LOOPING);
        assert_eq!(refused_member_id(&pod), Some(0x8e9e05c52164694d));
        assert!(has_restarted(&pod));
    }

    #[test]
    fn other_failures_and_running_members_are_not_refusals() {
        let other = CRASH_LOOPING.replace("has already been bootstrapped", "failed to bind");
        assert_eq!(refused_member_id(&pod(&other)), None);
        let running = pod(r#"
metadata: {name: demo-0}
status:
  containerStatuses:
  - name: oxcd
    image: oxcd.local/oxcd:0.1.0
    imageID: ""
    ready: true
    restartCount: 0
    state:
      running: {startedAt: "2026-11-24T17:00:00Z"}
"#);
        assert_eq!(refused_member_id(&running), None);
        assert!(!has_restarted(&running));
        assert_eq!(
            parse_refusal("member zz has already been bootstrapped"),
            None
        );
    }
}
