//! Making certificates: a self-signed CA ([`new_ca`]) and leaves signed by it ([`issue`]), the
//! issuer rebuilt each time from the CA's PEM certificate and key as stored in a Secret.

use jiff::{SignedDuration, Timestamp};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
};
use x509_parser::time::ASN1Time;

use super::{CLOCK_SKEW, CertError, CertRequest, Pem, Usage};

/// A new self-signed CA named `common_name`, valid from `now` for `validity`: basic constraints
/// CA (path length 0, it signs leaves only), key usages certificate sign and CRL sign.
pub fn new_ca(
    common_name: &str,
    now: Timestamp,
    validity: SignedDuration,
) -> Result<Pem, CertError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name_dn(common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    set_validity(&mut params, now, now, validity)?;
    let key = KeyPair::generate().map_err(CertError::GenerateKey)?;
    let cert = params
        .self_signed(&key)
        .map_err(CertError::SignCertificate)?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// A new leaf certificate for `request`, signed by `ca`, with a fresh key: valid from
/// `now - CLOCK_SKEW` until `now + validity`. Its serial number is derived (by rcgen) from the
/// fresh random public key, so every issued certificate has a different, unpredictable one.
pub fn issue(
    ca: &Pem,
    request: &CertRequest,
    now: Timestamp,
    validity: SignedDuration,
) -> Result<Pem, CertError> {
    let ca_key = KeyPair::from_pem(&ca.key).map_err(CertError::ParseKey)?;
    ensure_key_matches(&ca.cert, &ca_key)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, ca_key).map_err(CertError::LoadIssuer)?;

    let mut params = CertificateParams::default();
    params.distinguished_name = common_name_dn(&request.common_name);
    params.subject_alt_names = subject_alt_names(request)?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = extended_key_usages(request.usage);
    params.use_authority_key_identifier_extension = true;
    let not_before = now
        .checked_sub(CLOCK_SKEW)
        .map_err(CertError::ComputeValidity)?;
    set_validity(&mut params, not_before, now, validity)?;

    let key = KeyPair::generate().map_err(CertError::GenerateKey)?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(CertError::SignCertificate)?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// The extended key usages of `usage` (see [`Usage`]).
fn extended_key_usages(usage: Usage) -> Vec<ExtendedKeyUsagePurpose> {
    let mut ekus = Vec::with_capacity(2);
    if usage.server_auth() {
        ekus.push(ExtendedKeyUsagePurpose::ServerAuth);
    }
    if usage.client_auth() {
        ekus.push(ExtendedKeyUsagePurpose::ClientAuth);
    }
    ekus
}

/// The DNS and IP subject alternative names of `request`, DNS names first.
fn subject_alt_names(request: &CertRequest) -> Result<Vec<SanType>, CertError> {
    let dns = request.dns_names.iter().map(|name| {
        let name = name.clone().try_into().map_err(CertError::BuildParams)?;
        Ok(SanType::DnsName(name))
    });
    let ips = request
        .ip_addresses
        .iter()
        .map(|ip| Ok(SanType::IpAddress(*ip)));
    dns.chain(ips).collect()
}

/// A distinguished name holding only the common name (rcgen's default DN has a placeholder CN).
fn common_name_dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

/// Sets notBefore to `not_before` and notAfter to `now + validity`, both whole seconds (X.509
/// times have no fractions).
fn set_validity(
    params: &mut CertificateParams,
    not_before: Timestamp,
    now: Timestamp,
    validity: SignedDuration,
) -> Result<(), CertError> {
    let not_after = now
        .checked_add(validity)
        .map_err(CertError::ComputeValidity)?;
    params.not_before = asn1_time(not_before)?.to_datetime();
    params.not_after = asn1_time(not_after)?.to_datetime();
    Ok(())
}

/// `at` as an X.509 time (whole seconds), the bridge to the `time` crate rcgen uses.
fn asn1_time(at: Timestamp) -> Result<ASN1Time, CertError> {
    ASN1Time::from_timestamp(at.as_second()).map_err(CertError::ConvertTime)
}

/// Fails with [`CertError::MatchCaKey`] unless `key` is the key of the certificate `cert_pem`,
/// so that a Secret with a mismatched pair is not used to sign certificates nobody can verify.
fn ensure_key_matches(cert_pem: &str, key: &KeyPair) -> Result<(), CertError> {
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).map_err(CertError::ParsePem)?;
    let cert = pem.parse_x509().map_err(CertError::ParseCertificate)?;
    if cert.public_key().raw == key.subject_public_key_info().as_slice() {
        Ok(())
    } else {
        Err(CertError::MatchCaKey)
    }
}

/// Whether `key_pem` is the private key of `cert_pem` (false when either does not parse).
pub(super) fn key_matches(cert_pem: &str, key_pem: &str) -> bool {
    KeyPair::from_pem(key_pem).is_ok_and(|key| ensure_key_matches(cert_pem, &key).is_ok())
}
