//! Certificates of TLS mode `Operator`: what each certificate must name (every pod and Service
//! name members and clients use) and the Secrets that hold them (`tls.crt`, `tls.key`,
//! `ca.crt`, type `kubernetes.io/tls`; the CA's Secret also holds its key). Pure.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;

use super::child_meta;
use crate::certs::{CertRequest, Pem, Usage};
use crate::validate::ValidatedCluster;

/// Key of the certificate in a TLS Secret.
pub const CERT_KEY: &str = "tls.crt";
/// Key of the private key in a TLS Secret.
pub const KEY_KEY: &str = "tls.key";
/// Key of the CA certificate in a TLS Secret.
pub const CA_KEY: &str = "ca.crt";
/// Key of the CA's private key in the CA Secret.
pub const CA_PRIVATE_KEY: &str = "ca.key";

/// The three certificates of a cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Members on 2379.
    Server,
    /// Members between each other on 2380.
    Peer,
    /// kube-apiserver and the operator as clients.
    Client,
}

impl Role {
    /// Every role, in the order they are made.
    pub const ALL: [Role; 3] = [Role::Server, Role::Peer, Role::Client];
}

fn service_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_owned(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

fn member_wildcards(cluster: &ValidatedCluster) -> Vec<String> {
    let (peer, namespace) = (cluster.names.peer_service(), &cluster.names.namespace);
    vec![
        format!("*.{peer}.{namespace}.svc"),
        format!("*.{peer}.{namespace}.svc.cluster.local"),
    ]
}

/// What the certificate of `role` must say.
pub fn cert_request(cluster: &ValidatedCluster, role: Role) -> CertRequest {
    let namespace = &cluster.names.namespace;
    match role {
        Role::Server => {
            let mut dns_names = service_names(&cluster.names.client_service(), namespace);
            dns_names.extend(member_wildcards(cluster));
            dns_names.push("localhost".to_owned());
            CertRequest {
                common_name: cluster.names.client_service(),
                dns_names,
                ip_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
                usage: Usage::Server,
            }
        }
        Role::Peer => CertRequest {
            common_name: cluster.names.peer_service(),
            dns_names: member_wildcards(cluster),
            ip_addresses: Vec::new(),
            usage: Usage::Peer,
        },
        Role::Client => CertRequest {
            common_name: format!("{}-client", cluster.names.cluster),
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            usage: Usage::Client,
        },
    }
}

/// Name of the Secret of `role`.
pub fn secret_name(cluster: &ValidatedCluster, role: Role) -> String {
    match role {
        Role::Server => cluster.names.server_secret(),
        Role::Peer => cluster.names.peer_secret(),
        Role::Client => cluster.names.client_secret(),
    }
}

fn bytes(text: &str) -> ByteString {
    ByteString(text.as_bytes().to_vec())
}

/// The Secret holding certificate `pem` of `role`, with the CA certificate beside it.
pub fn build_tls_secret(
    cluster: &ValidatedCluster,
    role: Role,
    pem: &Pem,
    ca_cert: &str,
) -> Secret {
    Secret {
        metadata: child_meta(cluster, secret_name(cluster, role)),
        type_: Some("kubernetes.io/tls".to_owned()),
        data: Some(BTreeMap::from([
            (CERT_KEY.to_owned(), bytes(&pem.cert)),
            (KEY_KEY.to_owned(), bytes(&pem.key)),
            (CA_KEY.to_owned(), bytes(ca_cert)),
        ])),
        ..Secret::default()
    }
}

/// The CA's Secret (certificate and key).
pub fn build_ca_secret(cluster: &ValidatedCluster, ca: &Pem) -> Secret {
    Secret {
        metadata: child_meta(cluster, cluster.names.ca_secret()),
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([
            (CA_KEY.to_owned(), bytes(&ca.cert)),
            (CA_PRIVATE_KEY.to_owned(), bytes(&ca.key)),
        ])),
        ..Secret::default()
    }
}

/// Reads `(certificate, key)` PEM back from a Secret, under `cert_key` and `key_key`.
pub fn read_pem(secret: &Secret, cert_key: &str, key_key: &str) -> Option<Pem> {
    let data = secret.data.as_ref()?;
    let text = |key: &str| String::from_utf8(data.get(key)?.0.clone()).ok();
    Some(Pem {
        cert: text(cert_key)?,
        key: text(key_key)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::fixtures::{MINIMAL, validated};

    #[test]
    fn server_certificate_names_the_client_service_and_every_member() {
        let request = cert_request(&validated(MINIMAL), Role::Server);
        for name in [
            "demo-client",
            "demo-client.prod.svc",
            "demo-client.prod.svc.cluster.local",
            "*.demo-peer.prod.svc",
            "localhost",
        ] {
            assert!(
                request.dns_names.iter().any(|n| n == name),
                "{name} missing"
            );
        }
        assert_eq!(request.ip_addresses, [IpAddr::V4(Ipv4Addr::LOCALHOST)]);
        assert_eq!(request.usage, Usage::Server);
    }

    #[test]
    fn peer_certificate_names_only_members_and_client_names_nothing() {
        let cluster = validated(MINIMAL);
        assert_eq!(
            cert_request(&cluster, Role::Peer).dns_names,
            ["*.demo-peer.prod.svc", "*.demo-peer.prod.svc.cluster.local"]
        );
        let client = cert_request(&cluster, Role::Client);
        assert!(client.dns_names.is_empty() && client.usage == Usage::Client);
    }

    #[test]
    fn tls_secrets_carry_certificate_key_and_ca_and_read_back() {
        let cluster = validated(MINIMAL);
        let pem = Pem {
            cert: "CERT".to_owned(),
            key: "KEY".to_owned(),
        };
        let secret = build_tls_secret(&cluster, Role::Client, &pem, "CA");
        assert_eq!(secret.metadata.name.as_deref(), Some("demo-client-tls"));
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
        assert_eq!(read_pem(&secret, CERT_KEY, KEY_KEY), Some(pem));
        let ca = read_pem(&secret, CA_KEY, KEY_KEY).map(|p| p.cert);
        assert_eq!(ca.as_deref(), Some("CA"));
    }
}
