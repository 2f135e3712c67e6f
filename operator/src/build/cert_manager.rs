//! TLS mode `CertManager`: one cert-manager `Certificate` per role (server, peer, client),
//! naming the same hosts the operator's own certificates would, issued by the StoreCluster's
//! issuer into the Secrets the members mount. cert-manager renews them; members reload the files.
//! Pure: returns the objects as dynamic objects (no cert-manager crate is needed for three).

use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::json;

use super::child_meta;
use super::tls::{Role, cert_request, secret_name};
use crate::certs::LEAF_VALIDITY;
use crate::validate::ValidatedCluster;

/// cert-manager's Certificate kind.
pub fn certificate_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "cert-manager.io",
        "v1",
        "Certificate",
    ))
}

fn hours(duration: jiff::SignedDuration) -> String {
    format!("{}h", duration.as_secs() / 3600)
}

/// The Certificate of `role`, or `None` when the spec has no cert-manager issuer.
pub fn build_certificate(cluster: &ValidatedCluster, role: Role) -> Option<DynamicObject> {
    let issuer = cluster.spec.tls.cert_manager.as_ref()?;
    let request = cert_request(cluster, role);
    let mut usages = vec!["digital signature", "key encipherment"];
    if request.usage.server_auth() {
        usages.push("server auth");
    }
    if request.usage.client_auth() {
        usages.push("client auth");
    }
    let name = secret_name(cluster, role);
    let mut object = DynamicObject::new(&name, &certificate_resource());
    object.metadata = child_meta(cluster, name.clone());
    object.data = json!({
        "spec": {
            "secretName": name,
            "commonName": request.common_name,
            "dnsNames": request.dns_names,
            "ipAddresses": request.ip_addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "usages": usages,
            "duration": hours(LEAF_VALIDITY),
            // Renewed with a third of the lifetime left, as the operator's own certificates.
            "renewBefore": hours(LEAF_VALIDITY / 3),
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
            "secretTemplate": {"labels": cluster.names.labels()},
            "issuerRef": {
                "name": issuer.issuer_name,
                "kind": issuer.issuer_kind,
                "group": issuer.issuer_group,
            },
        }
    });
    Some(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::fixtures::{MINIMAL, validated};

    const CERT_MANAGER: &str = "
spec:
  version: 0.1.0
  tls: {mode: CertManager, certManager: {issuerName: store-ca, issuerKind: ClusterIssuer}}
";

    #[test]
    fn server_certificate_names_every_member_and_uses_the_declared_issuer() {
        let cluster = validated(CERT_MANAGER);
        let object = build_certificate(&cluster, Role::Server).unwrap_or_else(|| panic!("none"));
        let spec = &object.data["spec"];
        assert_eq!(object.metadata.name.as_deref(), Some("demo-server-tls"));
        assert_eq!(spec["secretName"], "demo-server-tls");
        let names: Vec<&str> = spec["dnsNames"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
            .collect();
        assert!(names.contains(&"*.demo-peer.prod.svc"), "{names:?}");
        assert!(names.contains(&"demo-client.prod.svc"), "{names:?}");
        assert_eq!(spec["ipAddresses"], json!(["127.0.0.1"]));
        assert_eq!(
            spec["issuerRef"],
            json!({"name": "store-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"})
        );
        assert_eq!(
            spec["usages"],
            json!([
                "digital signature",
                "key encipherment",
                "server auth",
                "client auth"
            ])
        );
        assert_eq!(
            (spec["duration"].as_str(), spec["renewBefore"].as_str()),
            (Some("8760h"), Some("2920h"))
        );
        assert_eq!(object.metadata.owner_references.map(|o| o.len()), Some(1));
    }

    #[test]
    fn client_certificate_is_for_client_auth_only() {
        let object = build_certificate(&validated(CERT_MANAGER), Role::Client)
            .unwrap_or_else(|| panic!("none"));
        assert_eq!(
            object.data["spec"]["usages"],
            json!(["digital signature", "key encipherment", "client auth"])
        );
        assert_eq!(object.data["spec"]["dnsNames"], json!([]));
    }

    #[test]
    fn no_certificates_without_an_issuer() {
        assert!(build_certificate(&validated(MINIMAL), Role::Server).is_none());
    }
}
