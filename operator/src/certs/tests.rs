//! Unit tests of the certificate module: what issued certificates contain, chain checks, and
//! when a stored certificate must be reissued.

#![allow(clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};

use jiff::{SignedDuration, Timestamp};

use super::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A fixed, whole-second `now` so validity dates compare exactly.
fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).expect("valid timestamp")
}

fn ca() -> Pem {
    new_ca("oxcd-demo-ca", now(), CA_VALIDITY).expect("CA")
}

fn request(usage: Usage) -> CertRequest {
    CertRequest {
        common_name: "demo".into(),
        dns_names: vec![
            "*.demo-peer.ns.svc".into(),
            "demo-client.ns.svc".into(),
            "localhost".into(),
        ],
        ip_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        usage,
    }
}

#[test]
fn issued_certificate_carries_wildcard_dns_and_ip_sans() -> TestResult {
    let ca = ca();
    let leaf = issue(&ca, &request(Usage::Peer), now(), LEAF_VALIDITY)?;
    let info = inspect(&leaf.cert)?;
    assert_eq!(
        info.dns_names,
        ["*.demo-peer.ns.svc", "demo-client.ns.svc", "localhost"]
    );
    assert_eq!(info.ip_addresses, [IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    assert_eq!(info.subject_cn.as_deref(), Some("demo"));
    assert_eq!(info.issuer_cn.as_deref(), Some("oxcd-demo-ca"));
    Ok(())
}

#[test]
fn usages_map_to_extended_key_usages() -> TestResult {
    let ca = ca();
    for (usage, server_auth, client_auth) in [
        (Usage::Server, true, true),
        (Usage::Peer, true, true),
        (Usage::Client, false, true),
    ] {
        let leaf = issue(&ca, &request(usage), now(), LEAF_VALIDITY)?;
        let info = inspect(&leaf.cert)?;
        assert_eq!(
            (info.server_auth, info.client_auth),
            (server_auth, client_auth),
            "{usage:?}"
        );
    }
    Ok(())
}

#[test]
fn ca_is_marked_as_ca_and_leaves_are_not() -> TestResult {
    let ca = ca();
    let info = inspect(&ca.cert)?;
    assert!(info.is_ca);
    assert_eq!(info.subject_cn, info.issuer_cn);
    let leaf = issue(&ca, &request(Usage::Server), now(), LEAF_VALIDITY)?;
    assert!(!inspect(&leaf.cert)?.is_ca);
    Ok(())
}

#[test]
fn leaf_verifies_against_its_ca_and_not_against_another() -> TestResult {
    let ca = ca();
    let other = new_ca("oxcd-demo-ca", now(), CA_VALIDITY)?;
    let leaf = issue(&ca, &request(Usage::Server), now(), LEAF_VALIDITY)?;
    assert!(verify_signed_by(&leaf.cert, &ca.cert)?);
    // Same name, other key: only the signature check tells them apart.
    assert!(!verify_signed_by(&leaf.cert, &other.cert)?);
    // A leaf is no CA, even for a certificate it "issued" by name.
    assert!(!verify_signed_by(&leaf.cert, &leaf.cert)?);
    Ok(())
}

#[test]
fn validity_ends_at_now_plus_validity_and_leaves_start_before_now() -> TestResult {
    let ca = ca();
    let ca_info = inspect(&ca.cert)?;
    assert_eq!(ca_info.not_before, now());
    assert_eq!(ca_info.not_after, now() + CA_VALIDITY);
    let leaf = issue(&ca, &request(Usage::Client), now(), LEAF_VALIDITY)?;
    let info = inspect(&leaf.cert)?;
    assert_eq!(info.not_before, now() - CLOCK_SKEW);
    assert_eq!(info.not_after, now() + LEAF_VALIDITY);
    Ok(())
}

#[test]
fn renewal_is_due_from_two_thirds_of_the_lifetime_and_not_before() {
    let info = CertInfo {
        not_before: now(),
        not_after: now() + SignedDuration::from_hours(300),
        dns_names: Vec::new(),
        ip_addresses: Vec::new(),
        is_ca: false,
        server_auth: true,
        client_auth: true,
        subject_cn: None,
        issuer_cn: None,
    };
    let at = |hours: i64, secs: i64| {
        now() + SignedDuration::from_hours(hours) + SignedDuration::from_secs(secs)
    };
    assert!(renewal_due(&info, at(0, -1)), "not yet valid");
    assert!(!renewal_due(&info, at(0, 0)));
    assert!(!renewal_due(&info, at(200, -1)), "just before 2/3");
    assert!(renewal_due(&info, at(200, 0)), "at 2/3");
    assert!(renewal_due(&info, at(300, 0)), "expired");
}

#[test]
fn fresh_certificate_needs_no_reissue() -> TestResult {
    let ca = ca();
    let request = request(Usage::Server);
    let leaf = issue(&ca, &request, now(), LEAF_VALIDITY)?;
    assert_eq!(reissue_reason(Some(&leaf), &ca, &request, now()), None);
    // Same names in another order and case: still the same set.
    let mut reordered = request.clone();
    reordered.dns_names.reverse();
    reordered.dns_names[0] = reordered.dns_names[0].to_uppercase();
    assert!(!needs_reissue(Some(&leaf), &ca, &reordered, now()));
    Ok(())
}

#[test]
fn needs_reissue_when_missing_or_garbage() {
    let ca = ca();
    let request = request(Usage::Server);
    assert_eq!(
        reissue_reason(None, &ca, &request, now()),
        Some(ReissueReason::Missing)
    );
    let garbage = Pem {
        cert: "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n".into(),
        key: "garbage".into(),
    };
    assert_eq!(
        reissue_reason(Some(&garbage), &ca, &request, now()),
        Some(ReissueReason::Unparsable)
    );
    let not_pem = Pem {
        cert: "not pem at all".into(),
        key: String::new(),
    };
    assert!(needs_reissue(Some(&not_pem), &ca, &request, now()));
}

#[test]
fn needs_reissue_when_sans_change() -> TestResult {
    let ca = ca();
    let request = request(Usage::Peer);
    let leaf = issue(&ca, &request, now(), LEAF_VALIDITY)?;
    let mut more_dns = request.clone();
    more_dns.dns_names.push("*.demo-peer.other.svc".into());
    let mut other_ip = request.clone();
    other_ip.ip_addresses = vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))];
    for changed in [more_dns, other_ip] {
        assert_eq!(
            reissue_reason(Some(&leaf), &ca, &changed, now()),
            Some(ReissueReason::SubjectAltNamesChanged)
        );
    }
    Ok(())
}

#[test]
fn needs_reissue_when_usage_or_key_changes() -> TestResult {
    let ca = ca();
    let request = request(Usage::Client);
    let leaf = issue(&ca, &request, now(), LEAF_VALIDITY)?;
    let mut as_server = request.clone();
    as_server.usage = Usage::Server;
    assert_eq!(
        reissue_reason(Some(&leaf), &ca, &as_server, now()),
        Some(ReissueReason::UsageChanged)
    );
    let other = issue(&ca, &request, now(), LEAF_VALIDITY)?;
    let swapped = Pem {
        cert: leaf.cert,
        key: other.key,
    };
    assert_eq!(
        reissue_reason(Some(&swapped), &ca, &request, now()),
        Some(ReissueReason::KeyMismatch)
    );
    Ok(())
}

#[test]
fn needs_reissue_when_the_ca_changes() -> TestResult {
    let ca = ca();
    let request = request(Usage::Server);
    let leaf = issue(&ca, &request, now(), LEAF_VALIDITY)?;
    let new_ca = new_ca("oxcd-demo-ca", now(), CA_VALIDITY)?;
    assert_eq!(
        reissue_reason(Some(&leaf), &new_ca, &request, now()),
        Some(ReissueReason::NotSignedByCa)
    );
    Ok(())
}

#[test]
fn needs_reissue_near_expiry() -> TestResult {
    let ca = ca();
    let request = request(Usage::Server);
    let leaf = issue(&ca, &request, now(), LEAF_VALIDITY)?;
    let early = now() + LEAF_VALIDITY / 2;
    let late = now() + LEAF_VALIDITY - SignedDuration::from_hours(24 * 30);
    assert!(!needs_reissue(Some(&leaf), &ca, &request, early));
    assert_eq!(
        reissue_reason(Some(&leaf), &ca, &request, late),
        Some(ReissueReason::RenewalDue)
    );
    Ok(())
}

#[test]
fn issue_refuses_a_ca_key_of_another_certificate() -> TestResult {
    let ca = ca();
    let other = new_ca("other", now(), CA_VALIDITY)?;
    let mismatched = Pem {
        cert: ca.cert,
        key: other.key,
    };
    let err = issue(&mismatched, &request(Usage::Server), now(), LEAF_VALIDITY);
    assert!(matches!(err, Err(CertError::MatchCaKey)), "{err:?}");
    Ok(())
}

#[test]
fn issue_rejects_an_invalid_dns_name() {
    let mut bad = request(Usage::Server);
    bad.dns_names = vec!["ünïcode.example".into()];
    let err = issue(&ca(), &bad, now(), LEAF_VALIDITY);
    assert!(matches!(err, Err(CertError::BuildParams(_))), "{err:?}");
}

#[tokio::test]
async fn rustls_serves_the_issued_certificate_and_both_sides_verify_with_the_ca() -> TestResult {
    use std::sync::Arc;

    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls::server::WebPkiClientVerifier;
    use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig, crypto};

    let now = Timestamp::now();
    let ca = new_ca("oxcd-demo-ca", now, CA_VALIDITY)?;
    let server = issue(&ca, &request(Usage::Server), now, LEAF_VALIDITY)?;
    let client_request = CertRequest {
        common_name: "root".into(),
        dns_names: Vec::new(),
        ip_addresses: Vec::new(),
        usage: Usage::Client,
    };
    let client = issue(&ca, &client_request, now, LEAF_VALIDITY)?;
    let chain = |pem: &Pem| CertificateDer::from_pem_slice(pem.cert.as_bytes()).map(|c| vec![c]);
    let key = |pem: &Pem| PrivateKeyDer::from_pem_slice(pem.key.as_bytes());

    let provider = Arc::new(crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca.cert.as_bytes())?)?;
    let roots = Arc::new(roots);
    let client_verifier =
        WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone()).build()?;
    let server_config = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(chain(&server)?, key(&server)?)?;
    let client_config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain(&client)?, key(&client)?)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config));

    // Once by a name the wildcard covers, once by the IP SAN.
    for name in ["demo-1.demo-peer.ns.svc", "127.0.0.1"] {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let acceptor = acceptor.clone();
        let echo = tokio::spawn(async move {
            let mut tls = acceptor.accept(server_io).await?;
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await?;
            tls.write_all(&buf).await?;
            tls.flush().await?;
            Ok::<_, std::io::Error>(())
        });
        let mut tls = connector
            .connect(ServerName::try_from(name)?.to_owned(), client_io)
            .await?;
        tls.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"ping", "{name}");
        echo.await??;
    }
    Ok(())
}
