//! Observing and renewing certificates. Mode `Operator`: the CA is made once, and each of the
//! server, peer and client certificates is (re)issued when missing, due for renewal (a third of
//! its lifetime left), naming other hosts than it must, or signed by another CA; members reload
//! the renewed files without a restart. Other modes only read the client certificate the
//! operator presents.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use oxcd_crds::TlsMode;

use super::apply::{Applier, ApplyError};
use crate::build::cert_manager::{build_certificate, certificate_resource};
use crate::build::tls::{
    CA_KEY, CA_PRIVATE_KEY, CERT_KEY, KEY_KEY, Role, build_ca_secret, build_tls_secret,
    cert_request, read_pem, secret_name,
};
use crate::certs::{self, CA_VALIDITY, LEAF_VALIDITY, Pem};
use crate::members::ClientTls;
use crate::validate::ValidatedCluster;

/// Why certificates could not be provided.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Reading a Secret failed.
    #[error("failed to read Secret {name}")]
    ReadSecret {
        /// The Secret.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// A certificate could not be made.
    #[error("failed to make the {role:?} certificate")]
    Issue {
        /// Which one.
        role: Option<Role>,
        /// The certificate error.
        #[source]
        source: certs::CertError,
    },
    /// A Secret could not be written.
    #[error("failed to store a certificate")]
    Store(#[source] ApplyError),
    /// The client certificate Secret is missing or incomplete (modes Secrets, CertManager).
    #[error("Secret {name} has no tls.crt, tls.key and ca.crt")]
    Incomplete {
        /// The Secret.
        name: String,
    },
}

/// The certificates of a cluster after this reconcile, and how many were (re)issued.
pub struct TlsState {
    /// What the operator presents to members.
    pub client: Option<ClientTls>,
    /// Names of the Secrets the operator owns (kept by orphan deletion).
    pub owned_secrets: Vec<String>,
    /// Certificates issued in this reconcile.
    pub issued: usize,
}

async fn get(api: &Api<Secret>, name: &str) -> Result<Option<Secret>, TlsError> {
    api.get_opt(name)
        .await
        .map_err(|source| TlsError::ReadSecret {
            name: name.to_owned(),
            source,
        })
}

/// Makes sure the cluster's certificates exist and are current; returns the client's.
pub async fn ensure_tls(
    cluster: &ValidatedCluster,
    secrets: &Api<Secret>,
    applier: &Applier<'_>,
    now: Timestamp,
) -> Result<TlsState, TlsError> {
    let Some(names) = &cluster.tls else {
        return Ok(TlsState {
            client: None,
            owned_secrets: Vec::new(),
            issued: 0,
        });
    };
    if cluster.spec.tls.mode == TlsMode::CertManager {
        let resource = certificate_resource();
        for role in Role::ALL {
            if let Some(certificate) = build_certificate(cluster, role) {
                applier
                    .apply_dynamic(certificate, &resource)
                    .await
                    .map_err(TlsError::Store)?;
            }
        }
    }
    if cluster.spec.tls.mode != TlsMode::Operator {
        let secret = get(secrets, &names.client).await?;
        let client = secret.as_ref().and_then(|s| {
            let pem = read_pem(s, CERT_KEY, KEY_KEY)?;
            let ca = read_pem(s, CA_KEY, KEY_KEY)?.cert;
            Some(ClientTls {
                ca,
                cert: pem.cert,
                key: pem.key,
            })
        });
        let client = client.ok_or_else(|| TlsError::Incomplete {
            name: names.client.clone(),
        })?;
        return Ok(TlsState {
            client: Some(client),
            owned_secrets: Vec::new(),
            issued: 0,
        });
    }

    let mut issued = 0;
    let ca_name = cluster.names.ca_secret();
    let ca = match get(secrets, &ca_name)
        .await?
        .and_then(|s| read_pem(&s, CA_KEY, CA_PRIVATE_KEY))
    {
        Some(ca) => ca,
        None => {
            let ca = certs::new_ca(&format!("{}-ca", cluster.names.cluster), now, CA_VALIDITY)
                .map_err(|source| TlsError::Issue { role: None, source })?;
            applier
                .apply(build_ca_secret(cluster, &ca))
                .await
                .map_err(TlsError::Store)?;
            issued += 1;
            ca
        }
    };
    let mut client = None;
    let mut owned_secrets = vec![ca_name];
    for role in Role::ALL {
        let name = secret_name(cluster, role);
        let request = cert_request(cluster, role);
        let existing = get(secrets, &name)
            .await?
            .and_then(|s| read_pem(&s, CERT_KEY, KEY_KEY));
        let pem: Pem = match existing {
            Some(pem) if !certs::needs_reissue(Some(&pem), &ca, &request, now) => pem,
            _ => {
                let pem = certs::issue(&ca, &request, now, LEAF_VALIDITY).map_err(|source| {
                    TlsError::Issue {
                        role: Some(role),
                        source,
                    }
                })?;
                applier
                    .apply(build_tls_secret(cluster, role, &pem, &ca.cert))
                    .await
                    .map_err(TlsError::Store)?;
                tracing::info!(secret = %name, "issued a certificate");
                issued += 1;
                pem
            }
        };
        if role == Role::Client {
            client = Some(ClientTls {
                ca: ca.cert.clone(),
                cert: pem.cert.clone(),
                key: pem.key.clone(),
            });
        }
        owned_secrets.push(name);
    }
    Ok(TlsState {
        client,
        owned_secrets,
        issued,
    })
}
