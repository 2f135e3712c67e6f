//! The NetworkPolicy of a cluster: only kube-apiserver pods (by the spec's selector), further
//! declared clients, the operator and the cluster's own backup pods reach the client port 2379;
//! only members reach each other on 2380; only the operator (member versions, `/version`) and
//! the monitoring selector reach 2381. Every other ingress is denied.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use oxcd_crds::PeerSelector;

use super::child_meta;
use crate::names::{CLIENT_PORT, METRICS_PORT, NAME_LABEL, PEER_PORT};
use crate::validate::ValidatedCluster;

/// [`NAME_LABEL`] value of the operator's own pods (set by its chart and manifests).
pub const OPERATOR_APP_NAME: &str = "oxcd-operator";

fn match_labels(labels: BTreeMap<String, String>) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels),
        ..LabelSelector::default()
    }
}

fn peer(selector: &PeerSelector) -> NetworkPolicyPeer {
    // A peer needs at least one selector; with neither, the user means every pod of the
    // cluster's namespace, which an empty pod selector says.
    let pod_selector = match (&selector.namespace_selector, &selector.pod_selector) {
        (None, None) => Some(LabelSelector::default()),
        (_, pods) => pods.clone(),
    };
    NetworkPolicyPeer {
        namespace_selector: selector.namespace_selector.clone(),
        pod_selector,
        ..NetworkPolicyPeer::default()
    }
}

fn rule(port: i32, from: Vec<NetworkPolicyPeer>) -> NetworkPolicyIngressRule {
    NetworkPolicyIngressRule {
        from: Some(from),
        ports: Some(vec![NetworkPolicyPort {
            port: Some(IntOrString::Int(port)),
            protocol: Some("TCP".to_owned()),
            ..NetworkPolicyPort::default()
        }]),
    }
}

/// The cluster's NetworkPolicy, or `None` when `spec.networkPolicy.enabled` is false.
pub fn build_network_policy(cluster: &ValidatedCluster) -> Option<NetworkPolicy> {
    let policy = &cluster.spec.network_policy;
    if !policy.enabled {
        return None;
    }
    let operator = NetworkPolicyPeer {
        namespace_selector: Some(match_labels(BTreeMap::from([(
            "kubernetes.io/metadata.name".to_owned(),
            cluster.settings.operator_namespace.clone(),
        )]))),
        pod_selector: Some(match_labels(BTreeMap::from([(
            NAME_LABEL.to_owned(),
            OPERATOR_APP_NAME.to_owned(),
        )]))),
        ..NetworkPolicyPeer::default()
    };
    let mut clients = vec![peer(&policy.api_server), operator.clone()];
    clients.extend(policy.additional_clients.iter().map(peer));
    if cluster.spec.backup.is_some() {
        // The backup Jobs stream snapshots from the members.
        clients.push(NetworkPolicyPeer {
            pod_selector: Some(match_labels(cluster.names.backup_selector_labels())),
            ..NetworkPolicyPeer::default()
        });
    }
    let members = NetworkPolicyPeer {
        pod_selector: Some(match_labels(cluster.names.selector_labels())),
        ..NetworkPolicyPeer::default()
    };
    // The operator reads the members' release versions from the metrics port (`/version`).
    let mut metrics_clients = vec![operator.clone()];
    metrics_clients.extend(policy.monitoring.iter().map(peer));
    let ingress = vec![
        rule(CLIENT_PORT, clients),
        rule(PEER_PORT, vec![members]),
        rule(METRICS_PORT, metrics_clients),
    ];
    Some(NetworkPolicy {
        metadata: child_meta(cluster, cluster.names.statefulset()),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(match_labels(cluster.names.selector_labels())),
            policy_types: Some(vec!["Ingress".to_owned()]),
            ingress: Some(ingress),
            ..NetworkPolicySpec::default()
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::fixtures::{MINIMAL, validated};

    fn rules(yaml: &str) -> Vec<NetworkPolicyIngressRule> {
        build_network_policy(&validated(yaml))
            .and_then(|policy| policy.spec)
            .and_then(|spec| spec.ingress)
            .unwrap_or_default()
    }

    fn port_of(rule: &NetworkPolicyIngressRule) -> Option<IntOrString> {
        rule.ports.as_ref()?.first()?.port.clone()
    }

    #[test]
    fn client_port_admits_kube_apiserver_in_kube_system_and_the_operator_only() {
        let rules = rules(MINIMAL);
        assert_eq!(port_of(&rules[0]), Some(IntOrString::Int(2379)));
        let from = rules[0].from.clone().unwrap_or_default();
        assert_eq!(from.len(), 2);
        let yaml = serde_json::to_string(&from).unwrap_or_default();
        assert!(yaml.contains(r#""component":"kube-apiserver""#), "{yaml}");
        assert!(
            yaml.contains(r#""kubernetes.io/metadata.name":"kube-system""#),
            "{yaml}"
        );
        assert!(
            yaml.contains(r#""kubernetes.io/metadata.name":"oxcd-system""#),
            "{yaml}"
        );
        assert!(
            yaml.contains(r#""app.kubernetes.io/name":"oxcd-operator""#),
            "{yaml}"
        );
    }

    #[test]
    fn peer_port_admits_only_members_and_metrics_only_the_operator_without_a_monitoring_selector() {
        let rules = rules(MINIMAL);
        assert_eq!(rules.len(), 3);
        assert_eq!(port_of(&rules[2]), Some(IntOrString::Int(2381)));
        let metrics = serde_json::to_string(&rules[2].from).unwrap_or_default();
        assert_eq!(rules[2].from.as_ref().map(Vec::len), Some(1));
        assert!(metrics.contains("oxcd-operator"), "{metrics}");
        assert_eq!(port_of(&rules[1]), Some(IntOrString::Int(2380)));
        let from = rules[1].from.clone().unwrap_or_default();
        assert_eq!(from.len(), 1);
        assert!(
            from[0].namespace_selector.is_none(),
            "members of this namespace only"
        );
        let labels = from[0].pod_selector.clone().and_then(|s| s.match_labels);
        assert_eq!(
            labels
                .and_then(|l| l.get("app.kubernetes.io/instance").cloned())
                .as_deref(),
            Some("demo")
        );
    }

    #[test]
    fn monitoring_selector_opens_the_metrics_port_and_extra_clients_join_the_client_rule() {
        let rules = rules(
            "
spec:
  version: 0.1.0
  networkPolicy:
    monitoring: {namespaceSelector: {matchLabels: {team: monitoring}}}
    additionalClients: [{podSelector: {matchLabels: {app: backup}}}]
",
        );
        assert_eq!(rules.len(), 3);
        assert_eq!(port_of(&rules[2]), Some(IntOrString::Int(2381)));
        assert_eq!(rules[2].from.as_ref().map(Vec::len), Some(2));
        assert_eq!(rules[0].from.as_ref().map(Vec::len), Some(3));
    }

    #[test]
    fn a_disabled_policy_is_not_built() {
        let cluster = validated("spec: {version: 0.1.0, networkPolicy: {enabled: false}}");
        assert!(build_network_policy(&cluster).is_none());
    }

    #[test]
    fn backup_pods_of_this_cluster_reach_the_client_port_when_backups_are_on() {
        let rules = rules(
            "
spec:
  version: 0.1.0
  backup: {schedule: '@daily', s3: {bucket: snapshots}}
",
        );
        let from = rules[0].from.clone().unwrap_or_default();
        assert_eq!(from.len(), 3);
        let backup = from[2].pod_selector.clone().and_then(|s| s.match_labels);
        assert_eq!(
            backup,
            Some(BTreeMap::from([
                ("app.kubernetes.io/instance".to_owned(), "demo".to_owned()),
                (
                    "app.kubernetes.io/name".to_owned(),
                    "oxcd-backup".to_owned()
                ),
            ]))
        );
        assert!(from[2].namespace_selector.is_none());
    }
}
