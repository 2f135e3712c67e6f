//! `oxcd snapshot drill` against a real S3 API on loopback (moto) and a real member: the upload
//! records the member's HashKV with the object; the drill restores the object into an
//! ephemeral member and passes only when its revision and HashKV are the recorded ones. A
//! snapshot whose recorded hash does not match what it restores to, a failed upload, and a
//! missing object each fail the drill with a message saying which.

use oxcd_server::proto::etcdserverpb::HashKvRequest;
use oxcd_server::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use serde_json::Value;

use crate::s3_snapshots::{ok_json, s3_and_member, snapshot_cmd, upload, with, write_history};

/// `drill` with the S3 flags and `extra`; its stdout JSON (or stderr) and whether it passed.
async fn drill(s3: &[String], extra: &[&str]) -> (bool, String) {
    let mut args = with(&["drill"], s3);
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = snapshot_cmd(&args).await;
    let text = if out.status.success() {
        String::from_utf8_lossy(&out.stdout).into_owned()
    } else {
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    (out.status.success(), text)
}

#[tokio::test]
async fn a_drill_restores_the_uploaded_snapshot_and_matches_its_revision_and_hash_kv() {
    let (moto, member) = s3_and_member("drill").await;
    let mut client = member.client().await.expect("client");
    write_history(&mut client).await;
    client.delete("k20", None).await.expect("delete");
    let s3 = moto.oxcd_args("drill", "backups/d1");
    let results = tempfile::tempdir().expect("tempdir");
    let result_file = results.path().join("upload.json");
    let termination = results.path().join("termination-log");
    let both = format!("{},{}", result_file.display(), termination.display());

    let up = ok_json(&upload(&member, &s3, &["--result-file", &both]).await);
    let channel = oxcd_tests::diff::channel(member.endpoint())
        .await
        .expect("channel");
    let live = MaintenanceClient::new(channel)
        .hash_kv(HashKvRequest {
            revision: up["revision"].as_i64().expect("revision"),
        })
        .await
        .expect("hash kv")
        .into_inner();
    assert_eq!(up["hash_kv"], live.hash, "the upload records the HashKV");
    assert_eq!(up["compact_revision"], 12);
    for file in [&result_file, &termination] {
        let written: Value =
            serde_json::from_str(&std::fs::read_to_string(file).expect("result file"))
                .expect("JSON");
        assert_eq!(written, up, "every --result-file gets the line");
    }

    let (passed, text) = drill(&s3, &["--upload-result", &result_file.to_string_lossy()]).await;
    assert!(passed, "{text}");
    let drilled: Value = serde_json::from_str(text.trim()).expect("JSON");
    assert_eq!(drilled["key"], up["key"]);
    assert_eq!(drilled["revision"], up["revision"]);
    assert_eq!(drilled["hash_kv"], live.hash);
    assert_eq!(drilled["hash_compared"], true);
    assert_eq!(drilled["compact_revision"], 12);

    // The same object with a recorded hash it does not restore to: the drill must say so.
    let key = up["key"].as_str().expect("key");
    let forged = format!("{key}.forged");
    let head = moto
        .client()
        .head_object()
        .bucket("drill")
        .key(key)
        .send()
        .await
        .expect("head");
    let mut copy = moto
        .client()
        .copy_object()
        .bucket("drill")
        .key(&forged)
        .copy_source(format!("drill/{key}"))
        .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace);
    for (k, v) in head.metadata().expect("metadata") {
        let v = if k == "oxcd-hashkv" {
            live.hash.wrapping_add(1).to_string()
        } else {
            v.clone()
        };
        copy = copy.metadata(k, v);
    }
    copy.send().await.expect("copy");
    let (passed, text) = drill(&s3, &["--s3-key", &forged]).await;
    assert!(!passed, "a wrong hash passed: {text}");
    assert!(
        text.contains("HashKV at revision") && text.contains("the backup recorded"),
        "{text}"
    );

    // A failed upload's result, and a key that does not exist.
    std::fs::write(&result_file, r#"{"error":"no member answered"}"#).expect("write");
    let (passed, text) = drill(&s3, &["--upload-result", &result_file.to_string_lossy()]).await;
    assert!(!passed);
    assert!(
        text.contains("the upload failed: no member answered"),
        "{text}"
    );
    let (passed, text) = drill(&s3, &["--s3-key", "backups/d1/missing.snapshot"]).await;
    assert!(!passed);
    assert!(text.contains("missing.snapshot"), "{text}");
    drop(moto);
}
