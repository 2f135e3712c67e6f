//! mTLS with etcd's flags: a 3-member cluster on https client and peer URLs with client
//! certificate authentication on both; etcdctl with `--cacert --cert --key` works and without a
//! certificate is refused; a member whose peer certificate comes from another CA cannot join;
//! rotating the certificate files takes effect without a restart.

use std::path::Path;
use std::time::Duration;

use oxcd_tests::pki::{Ca, CertFiles};
use oxcd_tests::{ClientTls, CtlOutput, EtcdVersion, OxcdCluster, OxcdServer, free_ports};

/// etcdctl 3.6 with `args`, which name their own `--endpoints`.
async fn etcdctl(args: &[&str]) -> oxcd_tests::Result<CtlOutput> {
    let (endpoint, rest) = match args {
        ["--endpoints", endpoint, rest @ ..] => (*endpoint, rest),
        _ => panic!("etcdctl args start with --endpoints"),
    };
    oxcd_tests::etcdctl(EtcdVersion::V3_6, endpoint, rest).await
}

fn tls_flags(ca: &Path, member: &CertFiles) -> Vec<String> {
    let s = |p: &Path| p.to_string_lossy().into_owned();
    vec![
        "--cert-file".into(),
        s(&member.cert),
        "--key-file".into(),
        s(&member.key),
        "--trusted-ca-file".into(),
        s(ca),
        "--client-cert-auth".into(),
        "--peer-cert-file".into(),
        s(&member.cert),
        "--peer-key-file".into(),
        s(&member.key),
        "--peer-trusted-ca-file".into(),
        s(ca),
        "--peer-client-cert-auth".into(),
    ]
}

#[tokio::test]
async fn an_mtls_cluster_serves_etcdctl_with_certificates_and_refuses_strangers() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = Ca::new(dir.path(), "ca").expect("ca");
    let member_cert = ca.member("member").expect("member cert");
    let client_cert = ca.client("client").expect("client cert");
    let flags = tls_flags(&ca.cert, &member_cert);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let client_tls = ClientTls::from_files(&ca.cert, Some(&client_cert)).expect("client tls");
    let cluster =
        OxcdCluster::start_configured(3, &flags, |m| m.use_tls(Some(client_tls.clone()), true))
            .await
            .expect("mTLS cluster");
    let endpoints = cluster.endpoints().join(",");
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let (ca_file, cert, key) = (s(&ca.cert), s(&client_cert.cert), s(&client_cert.key));
    let with_cert = [
        "--endpoints",
        &endpoints,
        "--cacert",
        &ca_file,
        "--cert",
        &cert,
        "--key",
        &key,
    ];
    let put = etcdctl(&[&with_cert[..], &["put", "secure", "yes"]].concat())
        .await
        .expect("etcdctl");
    assert!(put.success(), "{put:?}");
    let get = etcdctl(&[&with_cert[..], &["get", "secure", "--print-value-only"]].concat())
        .await
        .expect("etcdctl");
    assert_eq!(get.stdout.trim(), "yes", "{get:?}");
    let list = etcdctl(&[&with_cert[..], &["member", "list"]].concat())
        .await
        .expect("etcdctl");
    assert_eq!(list.stdout.lines().count(), 3, "{list:?}");
    assert!(list.stdout.contains("https://127.0.0.1:"), "{list:?}");

    let without = etcdctl(&[
        "--endpoints",
        &endpoints,
        "--cacert",
        &ca_file,
        "--command-timeout",
        "3s",
        "get",
        "secure",
    ])
    .await
    .expect("etcdctl");
    assert!(
        !without.success(),
        "a client without a certificate is refused: {without:?}"
    );

    // A member with a peer certificate from another CA: added as a learner, it never joins.
    let other_dir = tempfile::tempdir().expect("dir");
    let other = Ca::new(other_dir.path(), "other-ca").expect("ca");
    let stranger_cert = other.member("stranger").expect("cert");
    let [client_port, peer_port] = free_ports::<2>().expect("ports");
    let mut stranger = OxcdServer::prepare_member(
        "stranger",
        client_port,
        peer_port,
        &[],
        &tls_flags(&other.cert, &stranger_cert)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    )
    .expect("prepare");
    stranger.use_tls(Some(client_tls.clone()), true);
    let add = etcdctl(
        &[
            &with_cert[..],
            &[
                "member",
                "add",
                "stranger",
                "--learner",
                "--peer-urls",
                &stranger.peer_url(),
            ],
        ]
        .concat(),
    )
    .await
    .expect("etcdctl");
    assert!(add.success(), "{add:?}");
    let mut initial: Vec<String> = cluster
        .members()
        .iter()
        .map(|m| format!("{}={}", m.name(), m.peer_url()))
        .collect();
    initial.push(format!("stranger={}", stranger.peer_url()));
    let initial = initial.join(",");
    stranger.set_cluster_args(&[
        "--initial-cluster",
        &initial,
        "--initial-cluster-state",
        "existing",
    ]);
    stranger.spawn().expect("spawn");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let list = etcdctl(&[&with_cert[..], &["member", "list"]].concat())
        .await
        .expect("etcdctl");
    let line = list
        .stdout
        .lines()
        .find(|l| l.contains(&stranger.peer_url()))
        .expect("the added member is listed");
    assert!(
        line.contains("unstarted"),
        "a member with another CA's certificate never joined: {line}"
    );
    let put = etcdctl(&[&with_cert[..], &["put", "still", "serving"]].concat())
        .await
        .expect("etcdctl");
    assert!(put.success(), "{put:?}");
}

#[tokio::test]
async fn rotated_certificate_files_take_effect_without_a_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let first = Ca::new(dir.path(), "first-ca").expect("ca");
    let second = Ca::new(dir.path(), "second-ca").expect("ca");
    let served = first.member("served").expect("cert");
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let (cert, key) = (s(&served.cert), s(&served.key));
    let mut member =
        OxcdServer::prepare(&["--cert-file", &cert, "--key-file", &key]).expect("prepare");
    member.use_tls(
        Some(ClientTls::from_files(&first.cert, None).expect("tls")),
        false,
    );
    member.restart().await.expect("start on https");
    let pid = member.process().expect("running").pid();
    let get = |ca: String| {
        let endpoint = member.endpoint().to_string();
        async move {
            etcdctl(&[
                "--endpoints",
                &endpoint,
                "--cacert",
                &ca,
                "--command-timeout",
                "3s",
                "get",
                "k",
            ])
            .await
            .expect("etcdctl")
        }
    };
    assert!(get(s(&first.cert)).await.success());
    assert!(!get(s(&second.cert)).await.success(), "not trusted yet");

    // Replace the files in place with a certificate from the second CA.
    let rotated = second.member("rotated").expect("cert");
    std::fs::copy(&rotated.key, &served.key).expect("key");
    std::fs::copy(&rotated.cert, &served.cert).expect("cert");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !get(s(&second.cert)).await.success() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rotated certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        !get(s(&first.cert)).await.success(),
        "the old certificate is gone"
    );
    assert_eq!(member.process().expect("running").pid(), pid, "no restart");
}
