//! Reading certificates back: what a stored certificate says ([`inspect`]), whether a CA signed
//! it ([`verify_signed_by`]), and whether the operator must replace it ([`needs_reissue`]).

use std::collections::BTreeSet;
use std::net::IpAddr;

use jiff::Timestamp;
use x509_parser::certificate::X509Certificate;
use x509_parser::error::X509Error;
use x509_parser::extensions::GeneralName;
use x509_parser::x509::X509Name;

use super::issue::key_matches;
use super::{CertError, CertRequest, Pem};

/// What a certificate says, as far as the operator cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Start of validity.
    pub not_before: Timestamp,
    /// End of validity.
    pub not_after: Timestamp,
    /// DNS subject alternative names, in certificate order.
    pub dns_names: Vec<String>,
    /// IP subject alternative names, in certificate order.
    pub ip_addresses: Vec<IpAddr>,
    /// Whether basic constraints mark it as a CA.
    pub is_ca: bool,
    /// Whether it carries the serverAuth extended key usage.
    pub server_auth: bool,
    /// Whether it carries the clientAuth extended key usage.
    pub client_auth: bool,
    /// The subject's common name, if any.
    pub subject_cn: Option<String>,
    /// The issuer's common name, if any.
    pub issuer_cn: Option<String>,
}

/// Why [`reissue_reason`] wants a certificate replaced (for logs and events).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReissueReason {
    /// There is no certificate yet.
    #[error("no certificate")]
    Missing,
    /// The certificate does not parse.
    #[error("certificate unparsable")]
    Unparsable,
    /// Less than a third of its lifetime remains, or it is not (yet) valid.
    #[error("renewal due")]
    RenewalDue,
    /// The subject common name differs from the request.
    #[error("common name changed")]
    CommonNameChanged,
    /// The DNS or IP names differ from the request (compared as sets).
    #[error("subject alternative names changed")]
    SubjectAltNamesChanged,
    /// The extended key usages do not fit the request's usage.
    #[error("usage changed")]
    UsageChanged,
    /// The private key is not the certificate's key.
    #[error("key does not match the certificate")]
    KeyMismatch,
    /// The given CA did not sign it (e.g. the CA was replaced).
    #[error("not signed by the current CA")]
    NotSignedByCa,
}

/// Parses a PEM certificate (the first PEM block of `cert_pem`).
pub fn inspect(cert_pem: &str) -> Result<CertInfo, CertError> {
    with_parsed(cert_pem, |cert| {
        let validity = cert.validity();
        let mut dns_names = Vec::new();
        let mut ip_addresses = Vec::new();
        let sans = cert
            .subject_alternative_name()
            .map_err(CertError::ReadExtensions)?;
        for name in sans.iter().flat_map(|ext| &ext.value.general_names) {
            match name {
                GeneralName::DNSName(dns) => dns_names.push((*dns).to_string()),
                GeneralName::IPAddress(bytes) => ip_addresses.extend(ip_from_bytes(bytes)),
                _ => {}
            }
        }
        let eku = cert
            .extended_key_usage()
            .map_err(CertError::ReadExtensions)?;
        Ok(CertInfo {
            not_before: timestamp(validity.not_before.timestamp())?,
            not_after: timestamp(validity.not_after.timestamp())?,
            dns_names,
            ip_addresses,
            is_ca: cert.is_ca(),
            server_auth: eku.as_ref().is_some_and(|e| e.value.server_auth),
            client_auth: eku.as_ref().is_some_and(|e| e.value.client_auth),
            subject_cn: common_name(cert.subject()),
            issuer_cn: common_name(cert.issuer()),
        })
    })
}

/// Whether the CA certificate `ca_cert_pem` signed `cert_pem`: the issuer name equals the CA's
/// subject and the signature verifies with the CA's public key (a real signature check, by
/// x509-parser's `verify` feature on ring). `Ok(false)` for a wrong issuer or a bad signature;
/// errors only for texts that do not parse or a signature algorithm ring cannot check.
pub fn verify_signed_by(cert_pem: &str, ca_cert_pem: &str) -> Result<bool, CertError> {
    with_parsed(ca_cert_pem, |ca| {
        with_parsed(cert_pem, |cert| {
            if !ca.is_ca() || cert.issuer().as_raw() != ca.subject().as_raw() {
                return Ok(false);
            }
            match cert.verify_signature(Some(ca.public_key())) {
                Ok(()) => Ok(true),
                Err(X509Error::SignatureVerificationError) => Ok(false),
                Err(e) => Err(CertError::VerifySignature(e)),
            }
        })
    })
}

/// Whether a certificate should be renewed at `now`: when at most a third of its lifetime
/// remains, when it has expired, or when it is not valid yet.
pub fn renewal_due(info: &CertInfo, now: Timestamp) -> bool {
    if now < info.not_before || now >= info.not_after {
        return true;
    }
    let lifetime = info.not_after.duration_since(info.not_before);
    let remaining = info.not_after.duration_since(now);
    remaining <= lifetime / 3
}

/// Whether `existing` must be replaced by a certificate for `request` signed by `ca`: see
/// [`reissue_reason`].
pub fn needs_reissue(
    existing: Option<&Pem>,
    ca: &Pem,
    request: &CertRequest,
    now: Timestamp,
) -> bool {
    reissue_reason(existing, ca, request, now).is_some()
}

/// Why `existing` must be replaced, or `None` when it can stay: it is missing or unparsable,
/// its renewal is due, its common name, SANs (as sets) or usage differ from `request`, its key
/// is not its own, or `ca` did not sign it.
pub fn reissue_reason(
    existing: Option<&Pem>,
    ca: &Pem,
    request: &CertRequest,
    now: Timestamp,
) -> Option<ReissueReason> {
    let Some(existing) = existing else {
        return Some(ReissueReason::Missing);
    };
    let Ok(info) = inspect(&existing.cert) else {
        return Some(ReissueReason::Unparsable);
    };
    if renewal_due(&info, now) {
        return Some(ReissueReason::RenewalDue);
    }
    if info.subject_cn.as_deref() != Some(request.common_name.as_str()) {
        return Some(ReissueReason::CommonNameChanged);
    }
    if dns_set(&info.dns_names) != dns_set(&request.dns_names)
        || ip_set(&info.ip_addresses) != ip_set(&request.ip_addresses)
    {
        return Some(ReissueReason::SubjectAltNamesChanged);
    }
    if info.server_auth != request.usage.server_auth()
        || info.client_auth != request.usage.client_auth()
    {
        return Some(ReissueReason::UsageChanged);
    }
    if !key_matches(&existing.cert, &existing.key) {
        return Some(ReissueReason::KeyMismatch);
    }
    if !matches!(verify_signed_by(&existing.cert, &ca.cert), Ok(true)) {
        return Some(ReissueReason::NotSignedByCa);
    }
    None
}

/// Parses the first PEM block of `pem` as a certificate and hands it to `f`.
fn with_parsed<T>(
    pem: &str,
    f: impl FnOnce(&X509Certificate<'_>) -> Result<T, CertError>,
) -> Result<T, CertError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(CertError::ParsePem)?;
    let cert = pem.parse_x509().map_err(CertError::ParseCertificate)?;
    f(&cert)
}

/// The first common name of `name`, if it is a string.
fn common_name(name: &X509Name<'_>) -> Option<String> {
    name.iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string)
}

/// An IP SAN's 4 or 16 bytes as an address (`None` for other lengths).
fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        Some(IpAddr::from(v4))
    } else {
        <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from)
    }
}

/// Unix seconds as a timestamp.
fn timestamp(seconds: i64) -> Result<Timestamp, CertError> {
    Timestamp::from_second(seconds).map_err(CertError::ComputeValidity)
}

/// DNS names as a set; DNS names compare case-insensitively.
fn dns_set(names: &[String]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_ascii_lowercase()).collect()
}

/// IP addresses as a set.
fn ip_set(ips: &[IpAddr]) -> BTreeSet<IpAddr> {
    ips.iter().copied().collect()
}
