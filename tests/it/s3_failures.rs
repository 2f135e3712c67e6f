//! Snapshots in S3 when things go wrong, against moto on loopback: a tampered object is refused
//! and nothing is written; a missing object is a clear error; S3 that is down or drops every
//! connection fails after a bounded number of attempts with a message naming endpoint and
//! bucket; an upload broken midway (member cut off, or S3 gone) leaves no object behind.

use std::net::{Ipv4Addr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use oxcd_tests::s3::{CutProxy, Direction, MotoServer, s3_args};
use oxcd_tests::{OxcdServer, free_port};

use crate::s3_snapshots::{ok_json, s3_and_member, snapshot_cmd, upload, with, write_big};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every key in `bucket`, staging area included.
async fn all_keys(moto: &MotoServer, bucket: &str) -> Vec<String> {
    let out = moto
        .client()
        .list_objects_v2()
        .bucket(bucket)
        .send()
        .await
        .expect("list");
    out.contents()
        .iter()
        .filter_map(|o| o.key())
        .map(str::to_string)
        .collect()
}

/// Files left in `dir`.
fn files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test]
async fn a_tampered_object_is_refused_and_nothing_is_written() {
    let (moto, member) = s3_and_member("tamper").await;
    member
        .client()
        .await
        .expect("client")
        .put("k", "v", None)
        .await
        .expect("put");
    let s3 = moto.oxcd_args("tamper", "t");
    let up = ok_json(&upload(&member, &s3, &[]).await);
    let key = up["key"].as_str().expect("key");
    let get = moto
        .client()
        .get_object()
        .bucket("tamper")
        .key(key)
        .send()
        .await
        .expect("get");
    let meta = get.metadata().cloned().expect("metadata");
    let mut bytes = get
        .body
        .collect()
        .await
        .expect("body")
        .into_bytes()
        .to_vec();
    bytes[100] ^= 0x01;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("s.db").to_string_lossy().into_owned();
    let data_dir = dir.path().join("data").to_string_lossy().into_owned();

    // Same size, one bit flipped, metadata as uploaded: the object's sha256 catches it.
    // Then the metadata made to match: the snapshot's own trailer catches it.
    let forged_sha = {
        use sha2::Digest;
        sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    for (what, sha) in [("sha256", None), ("corrupt", Some(forged_sha))] {
        let mut put = moto
            .client()
            .put_object()
            .bucket("tamper")
            .key(key)
            .body(ByteStream::from(bytes.clone()));
        for (k, v) in &meta {
            let v = if k == "oxcd-sha256" {
                sha.clone().unwrap_or(v.clone())
            } else {
                v.clone()
            };
            put = put.metadata(k, v);
        }
        put.send().await.expect("put tampered");
        let down = snapshot_cmd(&with(&["download", &file, "--s3-key", key], &s3)).await;
        assert!(!down.status.success());
        assert!(stderr(&down).contains(what), "{}", stderr(&down));
        let restore = snapshot_cmd(&with(
            &["restore", "--s3-latest", "--data-dir", &data_dir],
            &s3,
        ))
        .await;
        assert!(!restore.status.success());
        assert!(stderr(&restore).contains(what), "{}", stderr(&restore));
        assert_eq!(files(dir.path()), Vec::<String>::new(), "nothing written");
    }
}

#[tokio::test]
async fn a_missing_object_or_an_empty_prefix_is_a_clear_error() {
    let moto = MotoServer::start().await.expect("moto");
    moto.create_bucket("empty").await.expect("bucket");
    let s3 = moto.oxcd_args("empty", "none");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("s.db").to_string_lossy().into_owned();
    let down = snapshot_cmd(&with(
        &["download", &file, "--s3-key", "none/nope.snapshot"],
        &s3,
    ))
    .await;
    assert!(!down.status.success());
    assert!(
        stderr(&down).contains("failed to get s3://empty/none/nope.snapshot"),
        "{}",
        stderr(&down)
    );
    assert!(stderr(&down).contains("NoSuchKey"), "{}", stderr(&down));
    let data_dir = dir.path().join("data").to_string_lossy().into_owned();
    let restore = snapshot_cmd(&with(
        &["restore", "--s3-latest", "--data-dir", &data_dir],
        &s3,
    ))
    .await;
    assert!(!restore.status.success());
    assert!(
        stderr(&restore).contains("failed to find any snapshot under s3://empty/none"),
        "{}",
        stderr(&restore)
    );
    assert_eq!(files(dir.path()), Vec::<String>::new());
}

#[tokio::test]
async fn s3_down_fails_after_bounded_retries_with_a_message_naming_endpoint_and_bucket() {
    let member = OxcdServer::start().await.expect("oxcd");
    let creds = tempfile::tempdir().expect("tempdir");
    std::fs::write(creds.path().join("AWS_ACCESS_KEY_ID"), "a").expect("write");
    std::fs::write(creds.path().join("AWS_SECRET_ACCESS_KEY"), "b").expect("write");
    let creds = creds.path().to_string_lossy().into_owned();
    let result = tempfile::NamedTempFile::new().expect("result file");
    let result_path = result.path().to_string_lossy().into_owned();
    let retry = [
        "--s3-max-attempts",
        "3",
        "--s3-initial-backoff-ms",
        "100",
        "--result-file",
        &result_path,
    ];

    // Nothing listening at all.
    let endpoint = format!("http://127.0.0.1:{}", free_port().expect("port"));
    let started = Instant::now();
    let out = upload(
        &member,
        &s3_args(&endpoint, "nobucket", "p", &creds),
        &retry,
    )
    .await;
    assert!(!out.status.success());
    assert!(started.elapsed() < Duration::from_secs(60));
    let err = stderr(&out);
    assert!(
        err.contains(&endpoint) && err.contains("s3://nobucket/"),
        "{err}"
    );
    assert!(err.contains("up to 3 attempts"), "{err}");
    let written = std::fs::read_to_string(result.path()).expect("result");
    assert!(written.starts_with("{\"error\":"), "{written}");

    // A server that accepts and drops every connection: exactly the bounded number of attempts.
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    let endpoint = format!("http://127.0.0.1:{port}");
    let out = upload(&member, &s3_args(&endpoint, "dropper", "p", &creds), &retry).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("s3://dropper/"), "{}", stderr(&out));
    assert_eq!(accepted.load(Ordering::SeqCst), 3, "{}", stderr(&out));
}

#[tokio::test]
async fn a_member_cut_off_midway_leaves_no_object_and_no_upload() {
    let (moto, member) = s3_and_member("cut-member").await;
    write_big(&mut member.client().await.expect("client"), 96, 128 << 10).await;
    // The snapshot stream (12 MiB) breaks after 7 MiB: one 5 MiB part is already in S3.
    let proxy = CutProxy::start(member.port(), Direction::Downstream, 7 << 20)
        .await
        .expect("proxy");
    let s3 = moto.oxcd_args("cut-member", "c");
    let endpoint = format!("127.0.0.1:{}", proxy.port());
    let args = with(
        &[
            "upload",
            "--endpoints",
            &endpoint,
            "--part-size",
            &(5u64 << 20).to_string(),
        ],
        &s3,
    );
    let out = snapshot_cmd(&args).await;
    assert!(proxy.has_cut());
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("failed to stream the snapshot from the member"),
        "{}",
        stderr(&out)
    );
    assert_eq!(all_keys(&moto, "cut-member").await, Vec::<String>::new());
    let uploads = moto
        .client()
        .list_multipart_uploads()
        .bucket("cut-member")
        .send()
        .await
        .expect("list uploads");
    assert_eq!(
        uploads.uploads().len(),
        0,
        "the multipart upload was aborted"
    );
    let latest = snapshot_cmd(&with(&["download", "/dev/null", "--s3-latest"], &s3)).await;
    assert!(
        stderr(&latest).contains("failed to find any snapshot"),
        "{}",
        stderr(&latest)
    );
}

#[tokio::test]
async fn s3_gone_midway_leaves_no_object() {
    let (moto, member) = s3_and_member("cut-s3").await;
    write_big(&mut member.client().await.expect("client"), 96, 128 << 10).await;
    // S3 accepts the first 5 MiB part, then every connection breaks.
    let proxy = CutProxy::start(moto.port(), Direction::Upstream, 7 << 20)
        .await
        .expect("proxy");
    let via_proxy = s3_args(
        &format!("http://127.0.0.1:{}", proxy.port()),
        "cut-s3",
        "c",
        &moto.credentials_dir(),
    );
    let out = upload(
        &member,
        &via_proxy,
        &[
            "--part-size",
            &(5u64 << 20).to_string(),
            "--s3-max-attempts",
            "2",
            "--s3-initial-backoff-ms",
            "100",
        ],
    )
    .await;
    assert!(proxy.has_cut());
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("failed to upload a part of s3://cut-s3/c/.incoming/"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        all_keys(&moto, "cut-s3").await,
        Vec::<String>::new(),
        "no object"
    );
    let direct = moto.oxcd_args("cut-s3", "c");
    let latest = snapshot_cmd(&with(&["download", "/dev/null", "--s3-latest"], &direct)).await;
    assert!(
        stderr(&latest).contains("failed to find any snapshot"),
        "{}",
        stderr(&latest)
    );
}

#[tokio::test]
async fn an_mtls_member_is_reached_with_etcdctls_client_flags_after_a_dead_one() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = oxcd_tests::pki::Ca::new(dir.path(), "ca").expect("ca");
    let server_cert = ca.member("member").expect("member cert");
    let client_cert = ca.client("client").expect("client cert");
    let s = |p: &std::path::Path| p.to_string_lossy().into_owned();
    let flags = [
        "--cert-file".to_string(),
        s(&server_cert.cert),
        "--key-file".into(),
        s(&server_cert.key),
        "--trusted-ca-file".into(),
        s(&ca.cert),
        "--client-cert-auth".into(),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut member = OxcdServer::prepare(&flags).expect("prepare");
    let tls = oxcd_tests::ClientTls::from_files(&ca.cert, Some(&client_cert)).expect("tls");
    member.use_tls(Some(tls), false);
    member.restart().await.expect("start mTLS member");
    member
        .client()
        .await
        .expect("client")
        .put("k", "v", None)
        .await
        .expect("put");
    let moto = MotoServer::start().await.expect("moto");
    moto.create_bucket("mtls").await.expect("bucket");
    let s3 = moto.oxcd_args("mtls", "m");
    let dead = format!("127.0.0.1:{}", free_port().expect("port"));
    let endpoints = format!("{dead},{}", member.endpoint());
    let (ca_file, cert, key) = (s(&ca.cert), s(&client_cert.cert), s(&client_cert.key));
    let base = ["upload", "--endpoints", &endpoints, "--cacert", &ca_file];

    let no_cert = snapshot_cmd(&with(&base, &s3)).await;
    assert!(
        !no_cert.status.success(),
        "a member requiring client certificates refuses"
    );
    assert!(
        stderr(&no_cert).contains(member.endpoint()),
        "{}",
        stderr(&no_cert)
    );
    let mut args = with(&base, &s3);
    args.extend(with(&["--cert", &cert, "--key", &key], &[]));
    let up = ok_json(&snapshot_cmd(&args).await);
    assert_eq!(up["member"].as_str(), Some(member.endpoint()));
    assert_eq!(up["revision"], 2);
}

#[tokio::test]
async fn restore_from_s3_refuses_a_data_dir_in_use_before_downloading() {
    let (moto, member) = s3_and_member("in-use").await;
    let s3 = moto.oxcd_args("in-use", "u");
    ok_json(&upload(&member, &s3, &[]).await);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("precious"), "data").expect("write");
    let data_dir = dir.path().to_string_lossy().into_owned();
    let out = snapshot_cmd(&with(
        &["restore", "--s3-latest", "--data-dir", &data_dir],
        &s3,
    ))
    .await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not empty"), "{}", stderr(&out));
    assert_eq!(files(dir.path()), vec!["precious".to_string()]);
}
