//! Snapshots in S3 against a real S3 API on loopback (moto): an uploaded snapshot restores with
//! the same keys, revision and HashKV; large snapshots go up in several parts; every
//! server-side encryption mode reaches S3; retention deletes the oldest and keeps the newest.

use std::process::Output;

use etcd_client::{Client, GetOptions};
use oxcd_server::proto::etcdserverpb::HashKvRequest;
use oxcd_server::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use oxcd_tests::s3::{CutProxy, Direction, MotoServer, s3_args};
use oxcd_tests::{OxcdServer, oxcd_binary};
use serde_json::Value;

/// Runs `oxcd snapshot <args>`.
pub(crate) async fn snapshot_cmd(args: &[String]) -> Output {
    tokio::process::Command::new(oxcd_binary().expect("oxcd binary"))
        .arg("snapshot")
        .args(args)
        .env_remove("AWS_PROFILE")
        .kill_on_drop(true)
        .output()
        .await
        .expect("run oxcd snapshot")
}

/// `args` as owned strings followed by `more`.
pub(crate) fn with(args: &[&str], more: &[String]) -> Vec<String> {
    args.iter()
        .map(|s| s.to_string())
        .chain(more.iter().cloned())
        .collect()
}

/// The JSON result line of a successful command.
pub(crate) fn ok_json(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().last().expect("a result line");
    serde_json::from_str(line).expect("JSON result line")
}

/// Puts `count` keys `big/NNNN` with `len`-byte values that do not compress.
pub(crate) async fn write_big(client: &mut Client, count: usize, len: usize) {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..count {
        let value: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        client
            .put(format!("big/{i:04}"), value, None)
            .await
            .expect("put");
    }
}

/// Keys `k00`..`k29` with `k07` deleted and history compacted at revision 12: what a restore
/// must carry over (live keys, a tombstone, the compaction).
pub(crate) async fn write_history(client: &mut Client) {
    for i in 0..30 {
        client
            .put(format!("k{i:02}"), format!("v{i}"), None)
            .await
            .expect("put");
    }
    client.delete("k07", None).await.expect("delete");
    client.compact(12, None).await.expect("compact");
}

/// Every key and value (debug-printed) and the revision.
pub(crate) async fn everything(client: &mut Client) -> (String, i64) {
    let r = client
        .get("", Some(GetOptions::new().with_all_keys()))
        .await
        .expect("get");
    (
        format!("{:?}", r.kvs()),
        r.header().expect("header").revision(),
    )
}

/// Keys, revision and HashKV: what identifies a store too large for one Range reply.
async fn fingerprint(member: &OxcdServer) -> (String, i64, (u32, i64)) {
    let mut client = member.client().await.expect("client");
    let r = client
        .get("", Some(GetOptions::new().with_all_keys().with_keys_only()))
        .await
        .expect("get");
    let keys = format!("{:?}", r.kvs());
    let revision = r.header().expect("header").revision();
    (keys, revision, hash_kv(member.endpoint()).await)
}

/// A member's HashKV at its current revision.
async fn hash_kv(endpoint: &str) -> (u32, i64) {
    let channel = oxcd_tests::diff::channel(endpoint).await.expect("channel");
    let r = MaintenanceClient::new(channel)
        .hash_kv(HashKvRequest { revision: 0 })
        .await
        .expect("hash kv")
        .into_inner();
    (r.hash, r.compact_revision)
}

/// moto with `bucket` and a fresh member.
pub(crate) async fn s3_and_member(bucket: &str) -> (MotoServer, OxcdServer) {
    let (moto, member) = tokio::join!(MotoServer::start(), OxcdServer::start());
    let moto = moto.expect("start moto");
    moto.create_bucket(bucket).await.expect("bucket");
    (moto, member.expect("start oxcd"))
}

/// `oxcd snapshot upload` from `member` with the S3 flags and `extra`.
pub(crate) async fn upload(member: &OxcdServer, s3: &[String], extra: &[&str]) -> Output {
    let mut args = with(&["upload", "--endpoints", member.endpoint()], s3);
    args.extend(extra.iter().map(|s| s.to_string()));
    snapshot_cmd(&args).await
}

/// Restores from S3 into a prepared member and starts it.
async fn restore_from_s3(s3: &[String], source: &[&str]) -> (OxcdServer, Value) {
    let mut restored = OxcdServer::prepare(&[]).expect("prepare");
    let data_dir = restored.data_dir().to_string_lossy().into_owned();
    let mut args = with(&["restore"], s3);
    args.extend(source.iter().map(|s| s.to_string()));
    args.extend(with(
        &[
            "--data-dir",
            &data_dir,
            "--name",
            "harness",
            "--initial-cluster",
            "harness=http://localhost:2380",
        ],
        &[],
    ));
    let result = ok_json(&snapshot_cmd(&args).await);
    restored.restart().await.expect("start on the restored dir");
    (restored, result)
}

#[tokio::test]
async fn an_uploaded_snapshot_restores_with_the_same_keys_revision_and_hash_kv() {
    let (moto, member) = s3_and_member("round-trip").await;
    let mut client = member.client().await.expect("client");
    write_history(&mut client).await;
    client.put("late", "1", None).await.expect("put");
    let (before, revision) = everything(&mut client).await;
    let hash = hash_kv(member.endpoint()).await;
    let s3 = moto.oxcd_args("round-trip", "backups/c1");

    let up = ok_json(&upload(&member, &s3, &["--compression", "gzip"]).await);
    let key = up["key"].as_str().expect("key").to_string();
    assert_eq!(up["revision"], revision);
    assert_eq!(up["compression"], "gzip");
    assert!(key.starts_with("backups/c1/"), "{key}");
    assert!(key.ends_with(&format!("-r{revision}.snapshot.gz")), "{key}");
    let head = moto
        .client()
        .head_object()
        .bucket("round-trip")
        .key(&key)
        .send()
        .await
        .expect("head");
    let meta = head.metadata().expect("metadata");
    assert_eq!(
        meta.get("oxcd-sha256").map(String::as_str),
        up["sha256"].as_str()
    );
    assert_eq!(meta.get("oxcd-size"), Some(&up["size"].to_string()));
    assert_eq!(meta.get("oxcd-revision"), Some(&revision.to_string()));
    assert_eq!(head.content_length(), up["size"].as_i64());
    drop(member);

    let (restored, result) = restore_from_s3(&s3, &["--s3-latest"]).await;
    assert_eq!(result["key"].as_str(), Some(key.as_str()));
    let mut client = restored.client().await.expect("client");
    assert_eq!(everything(&mut client).await, (before, revision));
    assert_eq!(hash_kv(restored.endpoint()).await, hash);
    let put = client.put("after", "1", None).await.expect("put");
    assert_eq!(put.header().map(|h| h.revision()), Some(revision + 1));

    // download by key gives a snapshot file that `status` reads.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("s.db").to_string_lossy().into_owned();
    let got = ok_json(&snapshot_cmd(&with(&["download", &file, "--s3-key", &key], &s3)).await);
    assert_eq!(got["sha256"], up["sha256"]);
    let status = snapshot_cmd(&with(&["status", &file, "-w", "json"], &[])).await;
    assert!(String::from_utf8_lossy(&status.stdout).contains(&format!("\"revision\":{revision}")));
}

#[tokio::test]
async fn a_large_snapshot_goes_up_in_several_parts_and_comes_back_whole() {
    let (moto, member) = s3_and_member("large").await;
    let mut client = member.client().await.expect("client");
    write_big(&mut client, 96, 128 << 10).await;
    let before = fingerprint(&member).await;
    let s3 = moto.oxcd_args("large", "big");
    let five_mib = (5u64 << 20).to_string();
    // The smallest part size S3 allows, and a multipart copy to publish (as above 5 GiB).
    let up = ok_json(
        &upload(
            &member,
            &s3,
            &["--part-size", &five_mib, "--max-single-copy", &five_mib],
        )
        .await,
    );
    assert!(up["size"].as_u64().expect("size") > 12 << 20, "{up}");
    assert!(up["parts"].as_u64().expect("parts") >= 3, "{up}");
    drop(member);
    let (restored, result) = restore_from_s3(&s3, &["--s3-latest"]).await;
    assert_eq!(result["sha256"], up["sha256"]);
    assert_eq!(fingerprint(&restored).await, before);
}

#[tokio::test]
async fn every_server_side_encryption_mode_reaches_s3() {
    let (moto, member) = s3_and_member("sse").await;
    member
        .client()
        .await
        .expect("client")
        .put("k", "v", None)
        .await
        .expect("put");
    let s3 = moto.oxcd_args("sse", "enc");
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("sse-c.key");
    std::fs::write(&key_file, [42u8; 32]).expect("key");
    let key_file = key_file.to_string_lossy().into_owned();

    let aes = ok_json(&upload(&member, &s3, &["--s3-sse", "aes256"]).await);
    let kms = ok_json(
        &upload(
            &member,
            &s3,
            &[
                "--s3-sse",
                "aws-kms",
                "--s3-sse-kms-key-id",
                "oxcd-test-key",
            ],
        )
        .await,
    );
    let proxy = CutProxy::start(moto.port(), Direction::Upstream, u64::MAX)
        .await
        .expect("proxy");
    let via_proxy = s3_args(
        &format!("http://127.0.0.1:{}", proxy.port()),
        "sse",
        "enc",
        &moto.credentials_dir(),
    );
    let ssec = ok_json(
        &upload(
            &member,
            &via_proxy,
            &["--s3-sse", "sse-c", "--s3-sse-c-key-file", &key_file],
        )
        .await,
    );
    let requests = proxy.requests();

    let head = |key: &Value| {
        moto.client()
            .head_object()
            .bucket("sse")
            .key(key["key"].as_str().expect("key"))
    };
    let h = head(&aes).send().await.expect("head");
    assert_eq!(
        h.server_side_encryption().map(|s| s.as_str()),
        Some("AES256")
    );
    let h = head(&kms).send().await.expect("head");
    assert_eq!(
        h.server_side_encryption().map(|s| s.as_str()),
        Some("aws:kms")
    );
    assert!(
        h.ssekms_key_id()
            .is_some_and(|k| k.contains("oxcd-test-key")),
        "{h:?}"
    );
    // moto ignores SSE-C, so the proof is on the wire: a proxy records the requests.
    // base64(md5([42; 32])), lower-cased as `requests` is.
    let md5 = "saadheejzuynjh8ew6aepq==";
    for request in [
        "?uploads http/1.1",
        "x-id=uploadpart&",
        "x-id=copyobject http/1.1",
    ] {
        let r = requests.split("\r\n\r\n").find(|r| r.contains(request));
        let r = r.unwrap_or_else(|| panic!("no {request} request in {requests}"));
        assert!(
            r.contains("x-amz-server-side-encryption-customer-algorithm: aes256"),
            "{r}"
        );
        assert!(
            r.contains(&format!(
                "x-amz-server-side-encryption-customer-key-md5: {md5}"
            )),
            "{r}"
        );
    }
    assert!(requests.contains(&format!(
        "x-amz-copy-source-server-side-encryption-customer-key-md5: {md5}"
    )));

    let file = dir.path().join("c.db").to_string_lossy().into_owned();
    let key = ssec["key"].as_str().expect("key");
    let got = snapshot_cmd(&with(
        &[
            "download",
            &file,
            "--s3-key",
            key,
            "--s3-sse",
            "sse-c",
            "--s3-sse-c-key-file",
            &key_file,
        ],
        &s3,
    ))
    .await;
    assert_eq!(ok_json(&got)["sha256"], ssec["sha256"]);
}

#[tokio::test]
async fn retention_deletes_the_oldest_first_and_never_the_newest() {
    let (moto, member) = s3_and_member("retention").await;
    let mut client = member.client().await.expect("client");
    let s3 = moto.oxcd_args("retention", "keep");
    let mut fresh = Vec::new();
    for i in 0..3 {
        client.put("k", format!("{i}"), None).await.expect("put");
        let up = ok_json(&upload(&member, &s3, &[]).await);
        fresh.push(up["key"].as_str().expect("key").to_string());
    }
    // Two old snapshots (by their names) and an object that is not a snapshot.
    let old = [
        "keep/20200101T000000.000Z-r2.snapshot",
        "keep/20210101T000000.000Z-r3.snapshot",
    ];
    for key in old.iter().chain(["keep/notes.txt"].iter()) {
        moto.client()
            .copy_object()
            .bucket("retention")
            .key(*key)
            .copy_source(format!("retention/{}", fresh[0]))
            .send()
            .await
            .expect("copy");
    }
    let by_age = ok_json(&snapshot_cmd(&with(&["prune", "--max-age", "30d"], &s3)).await);
    assert_eq!(by_age["deleted"], serde_json::json!(old));
    let by_count = ok_json(&snapshot_cmd(&with(&["prune", "--max-count", "1"], &s3)).await);
    assert_eq!(by_count["deleted"], serde_json::json!(fresh[..2]));
    assert_eq!(by_count["kept"], serde_json::json!(fresh[2..]));
    // Everything too old: the newest still stays.
    let all_old = ok_json(&snapshot_cmd(&with(&["prune", "--max-age", "1s"], &s3)).await);
    assert_eq!(all_old["deleted"], serde_json::json!([]));
    let left = moto
        .client()
        .list_objects_v2()
        .bucket("retention")
        .send()
        .await
        .expect("list");
    let left: Vec<_> = left.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(left, vec![fresh[2].as_str(), "keep/notes.txt"]);
}
