//! The two Services of a cluster: a headless peer Service that gives each member a stable DNS
//! name (published before the member is ready, so members can find each other while forming
//! the cluster), and the client Service kube-apiserver connects to.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::child_meta;
use crate::names::{CLIENT_PORT, PEER_PORT};
use crate::validate::ValidatedCluster;

fn port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port,
        target_port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".to_owned()),
        ..ServicePort::default()
    }
}

/// The headless Service behind the members' DNS names.
pub fn build_peer_service(cluster: &ValidatedCluster) -> Service {
    Service {
        metadata: child_meta(cluster, cluster.names.peer_service()),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            publish_not_ready_addresses: Some(true),
            selector: Some(cluster.names.selector_labels()),
            ports: Some(vec![port("client", CLIENT_PORT), port("peer", PEER_PORT)]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The Service clients use; only ready members receive traffic.
pub fn build_client_service(cluster: &ValidatedCluster) -> Service {
    Service {
        metadata: child_meta(cluster, cluster.names.client_service()),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(cluster.names.selector_labels()),
            ports: Some(vec![port("client", CLIENT_PORT)]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::fixtures::{MINIMAL, validated};

    #[test]
    fn peer_service_is_headless_and_publishes_members_before_they_are_ready() {
        let service = build_peer_service(&validated(MINIMAL));
        assert_eq!(service.metadata.name.as_deref(), Some("demo-peer"));
        let spec = service.spec.unwrap_or_default();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
        let ports: Vec<i32> = spec
            .ports
            .unwrap_or_default()
            .iter()
            .map(|p| p.port)
            .collect();
        assert_eq!(ports, [2379, 2380]);
    }

    #[test]
    fn client_service_exposes_only_the_client_port_of_this_cluster() {
        let service = build_client_service(&validated(MINIMAL));
        assert_eq!(service.metadata.name.as_deref(), Some("demo-client"));
        let spec = service.spec.unwrap_or_default();
        let ports: Vec<i32> = spec
            .ports
            .unwrap_or_default()
            .iter()
            .map(|p| p.port)
            .collect();
        assert_eq!(ports, [2379]);
        let selector = spec.selector.unwrap_or_default();
        assert_eq!(
            selector
                .get("app.kubernetes.io/instance")
                .map(String::as_str),
            Some("demo")
        );
    }
}
