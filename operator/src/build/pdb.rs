//! The quorum-aware PodDisruptionBudget: voluntary disruptions (drains) may take members only
//! while a quorum of the desired size stays up.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::child_meta;
use crate::validate::ValidatedCluster;

/// The PodDisruptionBudget of the members: `minAvailable` = quorum. A single member has no
/// quorum to protect, and a budget of 1 would block every node drain forever, so it gets 0.
pub fn build_pod_disruption_budget(cluster: &ValidatedCluster) -> PodDisruptionBudget {
    let min_available = if cluster.spec.replicas == 1 {
        0
    } else {
        cluster.quorum()
    };
    PodDisruptionBudget {
        metadata: child_meta(cluster, cluster.names.statefulset()),
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(min_available)),
            selector: Some(LabelSelector {
                match_labels: Some(cluster.names.selector_labels()),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::fixtures::validated;

    fn min_available(replicas: i32) -> Option<IntOrString> {
        let cluster = validated(&format!("spec: {{version: 0.1.0, replicas: {replicas}}}"));
        build_pod_disruption_budget(&cluster)
            .spec
            .and_then(|spec| spec.min_available)
    }

    #[test]
    fn budget_keeps_a_quorum_of_the_desired_size() {
        assert_eq!(min_available(3), Some(IntOrString::Int(2)));
        assert_eq!(min_available(5), Some(IntOrString::Int(3)));
        assert_eq!(min_available(7), Some(IntOrString::Int(4)));
    }

    #[test]
    fn a_single_member_does_not_block_node_drains() {
        assert_eq!(min_available(1), Some(IntOrString::Int(0)));
    }
}
