//! Certificates for StoreClusters in TLS mode `Operator`: the operator keeps a CA (PEM certificate
//! and key) and signs with it the server, peer and client certificates of a cluster. Pure
//! functions over PEM texts and an explicit `now`, no Kubernetes client: [`new_ca`] and
//! [`issue`] make certificates, [`inspect`], [`verify_signed_by`] and [`needs_reissue`] decide
//! whether a stored one can stay.
//!
//! Keys are ECDSA P-256 (rcgen's default), which etcd clients, Go's TLS stack and rustls accept.

mod inspect;
mod issue;

use std::net::IpAddr;

use jiff::SignedDuration;
use x509_parser::error::{PEMError, X509Error};
use x509_parser::nom;

pub use inspect::{
    CertInfo, ReissueReason, inspect, needs_reissue, reissue_reason, renewal_due, verify_signed_by,
};
pub use issue::{issue, new_ca};

/// How long a CA made by [`new_ca`] is valid: 5 years.
pub const CA_VALIDITY: SignedDuration = SignedDuration::from_hours(5 * 365 * 24);

/// How long a leaf certificate made by [`issue`] is valid: 1 year.
pub const LEAF_VALIDITY: SignedDuration = SignedDuration::from_hours(365 * 24);

/// How far before `now` an issued certificate's notBefore lies, so that members whose clocks lag
/// a little behind the operator's accept it at once.
pub const CLOCK_SKEW: SignedDuration = SignedDuration::from_mins(5);

/// A certificate and its private key, as PEM texts (the `tls.crt` / `tls.key` of a Secret).
#[derive(Clone, PartialEq, Eq)]
pub struct Pem {
    /// The certificate, PEM ("CERTIFICATE").
    pub cert: String,
    /// The private key, PEM (PKCS#8 "PRIVATE KEY").
    pub key: String,
}

impl std::fmt::Debug for Pem {
    /// Shows the certificate, never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pem")
            .field("cert", &self.cert)
            .field("key", &"[elided]")
            .finish()
    }
}

/// What a leaf certificate is for; decides its extended key usages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Usage {
    /// A member's client-facing listener: serverAuth + clientAuth (members also dial as clients).
    Server,
    /// A member's peer listener: serverAuth + clientAuth (peers dial each other).
    Peer,
    /// A client of the cluster (the operator, kube-apiserver, users): clientAuth.
    Client,
}

impl Usage {
    /// Whether certificates of this usage carry the serverAuth extended key usage.
    pub fn server_auth(self) -> bool {
        matches!(self, Usage::Server | Usage::Peer)
    }

    /// Whether certificates of this usage carry the clientAuth extended key usage (all do).
    pub fn client_auth(self) -> bool {
        true
    }
}

/// What to put in a leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRequest {
    /// The subject's common name (for clients, the user name the store authenticates).
    pub common_name: String,
    /// DNS subject alternative names; wildcards such as `*.demo-peer.ns.svc` are allowed.
    pub dns_names: Vec<String>,
    /// IP subject alternative names.
    pub ip_addresses: Vec<IpAddr>,
    /// What the certificate is for.
    pub usage: Usage,
}

/// Why a certificate could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A new key pair could not be generated.
    #[error("failed to generate a key pair")]
    GenerateKey(#[source] rcgen::Error),
    /// A request could not be turned into certificate parameters (e.g. an invalid DNS name).
    #[error("failed to build the certificate parameters")]
    BuildParams(#[source] rcgen::Error),
    /// `now ± validity` is out of range.
    #[error("failed to compute the validity period")]
    ComputeValidity(#[source] jiff::Error),
    /// A time could not be converted between jiff and X.509.
    #[error("failed to convert a certificate time")]
    ConvertTime(#[source] X509Error),
    /// The certificate could not be signed.
    #[error("failed to sign the certificate")]
    SignCertificate(#[source] rcgen::Error),
    /// A text was not PEM.
    #[error("failed to parse the PEM text")]
    ParsePem(#[source] nom::Err<PEMError>),
    /// A PEM block was not an X.509 certificate.
    #[error("failed to parse the X.509 certificate")]
    ParseCertificate(#[source] nom::Err<X509Error>),
    /// An extension of a certificate was malformed or duplicated.
    #[error("failed to read the certificate extensions")]
    ReadExtensions(#[source] X509Error),
    /// A private key PEM could not be read.
    #[error("failed to parse the private key")]
    ParseKey(#[source] rcgen::Error),
    /// The CA certificate could not be used as an issuer.
    #[error("failed to load the CA certificate as issuer")]
    LoadIssuer(#[source] rcgen::Error),
    /// The CA key does not belong to the CA certificate.
    #[error("failed to match the CA key to the CA certificate")]
    MatchCaKey,
    /// A signature could not be checked (e.g. an algorithm ring does not support).
    #[error("failed to verify the certificate signature")]
    VerifySignature(#[source] X509Error),
}

#[cfg(test)]
mod tests;
