//! Snapshots end to end: etcdctl 3.4 and 3.6 save them from oxcd as from etcd, `oxcd snapshot
//! status` reports the member's state, a restored snapshot serves the same keys, revision and
//! HashKV, and damaged files are refused before anything is written.

use std::path::{Path, PathBuf};
use std::process::Output;

use etcd_client::{Client, GetOptions};
use oxcd_server::proto::etcdserverpb::{
    HashKvRequest, HashKvResponse, HashRequest, maintenance_client::MaintenanceClient,
};
use oxcd_tests::{EtcdServer, EtcdVersion, OxcdServer, etcdctl, oxcd_binary};
use tonic::transport::Channel;

/// Runs `oxcd snapshot <args>`.
async fn oxcd_snapshot(args: &[&str]) -> Output {
    tokio::process::Command::new(oxcd_binary().expect("oxcd binary"))
        .arg("snapshot")
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .expect("run oxcd snapshot")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The same small history on any etcd-API server: puts, an overwrite, a delete, a compaction.
async fn write_history(client: &mut Client) {
    for i in 0..20 {
        client
            .put(format!("k{i:02}"), format!("v{i}"), None)
            .await
            .expect("put");
    }
    client.put("k03", "again", None).await.expect("put");
    client.delete("k05", None).await.expect("delete");
    client.compact(10, None).await.expect("compact");
    client.put("late", "1", None).await.expect("put");
}

async fn maintenance(endpoint: &str) -> MaintenanceClient<Channel> {
    let channel = oxcd_tests::diff::channel(endpoint).await.expect("connect");
    MaintenanceClient::new(channel)
}

async fn hash_kv(endpoint: &str, revision: i64) -> HashKvResponse {
    let mut resp = maintenance(endpoint)
        .await
        .hash_kv(HashKvRequest { revision })
        .await
        .expect("hash kv")
        .into_inner();
    if let Some(h) = resp.header.as_mut() {
        h.raft_term = 0;
    }
    resp
}

/// The `msg` fields of etcdctl's JSON log lines, in order.
fn log_messages(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| l.split("\"msg\":\"").nth(1))
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn etcdctl_snapshot_save_against_oxcd_prints_what_it_prints_for_etcd() {
    let (etcd, oxcd) = tokio::join!(EtcdServer::start(EtcdVersion::V3_6), OxcdServer::start());
    let (etcd, oxcd) = (etcd.expect("start etcd"), oxcd.expect("start oxcd"));
    write_history(&mut etcd.client().await.expect("client")).await;
    write_history(&mut oxcd.client().await.expect("client")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    for version in EtcdVersion::ALL {
        let mut seen = Vec::new();
        for (server, endpoint) in [("etcd", etcd.endpoint()), ("oxcd", oxcd.endpoint())] {
            let file = dir.path().join(format!("{server}-{}.db", version.minor()));
            let file = file.to_str().expect("utf-8 path");
            let out = etcdctl(version, endpoint, &["snapshot", "save", file])
                .await
                .expect("run etcdctl");
            assert!(
                out.success(),
                "{version} save from {server}: {}",
                out.stderr
            );
            let size = std::fs::metadata(file).expect("saved file").len();
            assert_eq!(size % 512, 32, "{server}: blocks plus the sha256 trailer");
            seen.push((
                out.stdout.replace(file, "<file>"),
                log_messages(&out.stderr),
            ));
        }
        assert_eq!(seen[0], seen[1], "etcdctl {version}: etcd vs oxcd");
        let oxcd_file = dir.path().join(format!("oxcd-{}.db", version.minor()));
        let status = oxcd_snapshot(&["status", oxcd_file.to_str().expect("utf-8")]).await;
        assert!(status.status.success(), "{}", text(&status.stderr));
    }
}

#[tokio::test]
async fn snapshot_status_reports_the_members_revision_keys_and_hash() {
    let oxcd = OxcdServer::start().await.expect("start oxcd");
    let mut client = oxcd.client().await.expect("client");
    write_history(&mut client).await;
    let all = client
        .get(
            "",
            Some(GetOptions::new().with_all_keys().with_count_only()),
        )
        .await
        .expect("count");
    let revision = all.header().expect("header").revision();
    let hash = maintenance(oxcd.endpoint())
        .await
        .hash(HashRequest {})
        .await
        .expect("hash")
        .into_inner()
        .hash;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("s.db");
    let file = file.to_str().expect("utf-8");
    let save = oxcd_snapshot(&["save", file, "--endpoints", oxcd.endpoint()]).await;
    assert!(save.status.success(), "{}", text(&save.stderr));
    assert_eq!(
        text(&save.stdout),
        format!("Snapshot saved at {file}\nServer version 3.6.0\n")
    );
    let size = std::fs::metadata(file).expect("saved").len() - 32;
    let json = oxcd_snapshot(&["status", file, "-w", "json"]).await;
    assert_eq!(
        text(&json.stdout),
        format!(
            "{{\"hash\":{hash},\"revision\":{revision},\"totalKey\":{},\"totalSize\":{size},\"version\":\"3.6.0\"}}\n",
            all.count()
        )
    );
    let simple = text(&oxcd_snapshot(&["status", file]).await.stdout);
    let prefix = format!("{hash:x}, {revision}, {}, ", all.count());
    assert!(
        simple.starts_with(&prefix) && simple.ends_with(" kB, 3.6.0\n"),
        "{simple}"
    );
    let table = oxcd_snapshot(&["-w", "table", "status", file]).await;
    assert!(
        text(&table.stdout).contains("|   HASH   | REVISION | TOTAL KEYS | TOTAL SIZE | VERSION |")
    );
}

/// Restores `file` into a prepared member's data dir with the harness member's flags.
async fn restore_into(member: &OxcdServer, file: &str, extra: &[&str]) -> Output {
    let data_dir = member.data_dir();
    let mut args = vec![
        "restore",
        file,
        "--data-dir",
        data_dir.to_str().expect("utf-8"),
        "--name",
        "harness",
        "--initial-cluster",
        "harness=http://localhost:2380",
    ];
    args.extend_from_slice(extra);
    oxcd_snapshot(&args).await
}

async fn saved_snapshot(member: &OxcdServer, dir: &Path) -> PathBuf {
    let file = dir.join("s.db");
    let save = oxcd_snapshot(&[
        "save",
        file.to_str().expect("utf-8"),
        "--endpoints",
        member.endpoint(),
    ])
    .await;
    assert!(save.status.success(), "{}", text(&save.stderr));
    file
}

#[tokio::test]
async fn a_restored_snapshot_serves_the_same_keys_revision_and_hash_kv() {
    let source = OxcdServer::start().await.expect("start oxcd");
    let mut client = source.client().await.expect("client");
    write_history(&mut client).await;
    let everything = || Some(GetOptions::new().with_all_keys());
    let before = client.get("", everything()).await.expect("get");
    let hashes = [
        hash_kv(source.endpoint(), 0).await,
        hash_kv(source.endpoint(), 15).await,
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let file = saved_snapshot(&source, dir.path()).await;
    drop(source);

    let mut restored = OxcdServer::prepare(&[]).expect("prepare");
    let out = restore_into(&restored, file.to_str().expect("utf-8"), &[]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    restored.restart().await.expect("start on the restored dir");
    let mut client = restored.client().await.expect("client");
    let after = client.get("", everything()).await.expect("get");
    let flat = |r: &etcd_client::GetResponse| format!("{:?}", r.kvs());
    assert_eq!(flat(&after), flat(&before));
    assert_eq!(
        after.header().map(|h| h.revision()),
        before.header().map(|h| h.revision())
    );
    let again = [
        hash_kv(restored.endpoint(), 0).await,
        hash_kv(restored.endpoint(), 15).await,
    ];
    assert_eq!(
        again
            .iter()
            .map(|h| (h.hash, h.compact_revision, h.hash_revision))
            .collect::<Vec<_>>(),
        hashes
            .iter()
            .map(|h| (h.hash, h.compact_revision, h.hash_revision))
            .collect::<Vec<_>>()
    );
    let compacted = client
        .get("k01", Some(GetOptions::new().with_revision(5)))
        .await;
    assert!(compacted.is_err(), "the compaction survives the restore");
    let put = client.put("new", "1", None).await.expect("put");
    assert_eq!(
        put.header().map(|h| h.revision()),
        before.header().map(|h| h.revision() + 1)
    );
}

#[tokio::test]
async fn bump_revision_and_mark_compacted_move_the_restored_revision_forward() {
    let source = OxcdServer::start().await.expect("start oxcd");
    let mut client = source.client().await.expect("client");
    write_history(&mut client).await;
    let revision = client
        .get("k01", None)
        .await
        .expect("get")
        .header()
        .map(|h| h.revision());
    let dir = tempfile::tempdir().expect("tempdir");
    let file = saved_snapshot(&source, dir.path()).await;
    let file = file.to_str().expect("utf-8");
    let mut restored = OxcdServer::prepare(&[]).expect("prepare");
    let refused = restore_into(&restored, file, &["--bump-revision", "1000"]).await;
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains("--mark-compacted required"));
    assert!(!restored.data_dir().exists());
    let out = restore_into(
        &restored,
        file,
        &["--bump-revision", "1000", "--mark-compacted"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    restored.restart().await.expect("start on the restored dir");
    let mut client = restored.client().await.expect("client");
    let got = client.get("k01", None).await.expect("get");
    assert_eq!(
        got.header().map(|h| h.revision()),
        revision.map(|r| r + 1000)
    );
    assert_eq!(got.kvs().len(), 1);
    assert!(
        client
            .get(
                "k01",
                Some(GetOptions::new().with_revision(revision.unwrap_or(1)))
            )
            .await
            .is_err()
    );
}

#[tokio::test]
async fn damaged_snapshots_are_refused_before_anything_is_written() {
    let source = OxcdServer::start().await.expect("start oxcd");
    let mut client = source.client().await.expect("client");
    for i in 0..200 {
        client
            .put(format!("k{i}"), vec![b'x'; 100], None)
            .await
            .expect("put");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let good = std::fs::read(saved_snapshot(&source, dir.path()).await).expect("read");
    assert!(good.len() > 2048);
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x40;
    let cases: [(&str, Vec<u8>, &str); 5] = [
        ("flipped", flipped, "sha256"),
        ("truncated", good[..good.len() - 100].to_vec(), "truncated"),
        (
            "cut-by-blocks",
            good[..good.len() - 1024].to_vec(),
            "sha256",
        ),
        ("no-trailer", good[..good.len() - 32].to_vec(), "truncated"),
        (
            "foreign",
            b"not a snapshot at all".to_vec(),
            "not an oxcd snapshot",
        ),
    ];
    for (name, bytes, message) in cases {
        let file = dir.path().join(format!("{name}.db"));
        std::fs::write(&file, &bytes).expect("write");
        let target = dir.path().join(format!("{name}-data"));
        let out = oxcd_snapshot(&[
            "restore",
            file.to_str().expect("utf-8"),
            "--data-dir",
            target.to_str().expect("utf-8"),
        ])
        .await;
        assert!(!out.status.success(), "{name} was restored");
        assert!(
            text(&out.stderr).contains(message),
            "{name}: {}",
            text(&out.stderr)
        );
        assert!(!target.exists(), "{name}: the data dir was created");
    }
}

#[tokio::test]
async fn an_init_container_restore_fills_only_an_empty_data_dir_of_a_new_cluster() {
    let source = OxcdServer::start().await.expect("start oxcd");
    let mut client = source.client().await.expect("client");
    write_history(&mut client).await;
    let before = hash_kv(source.endpoint(), 0).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = saved_snapshot(&source, dir.path()).await;
    drop(source);
    let file = file.to_str().expect("utf-8");

    // A member joining an existing cluster gets nothing: its leader sends the data.
    let mut restored = OxcdServer::prepare(&[]).expect("prepare");
    let joining = ["--initial-cluster-state", "existing", "--skip-if-not-empty"];
    let out = restore_into(&restored, file, &joining).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("nothing restored"));
    let empty = |path: &Path| std::fs::read_dir(path).map_or(true, |mut d| d.next().is_none());
    assert!(empty(&restored.data_dir()), "a joining member got data");

    // The first start of a new cluster's member restores (staged, then renamed into place).
    let out = restore_into(&restored, file, &["--skip-if-not-empty"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!empty(&restored.data_dir()));
    let staging = restored.dir().join("data.restoring");
    assert!(!staging.exists(), "the staging directory stayed");
    restored.restart().await.expect("start on the restored dir");
    let mut client = restored.client().await.expect("client");
    client.put("after", "1", None).await.expect("put");
    let after = hash_kv(restored.endpoint(), before.hash_revision).await;
    assert_eq!(after.hash, before.hash, "HashKV at the snapshot's revision");

    // Every later start leaves the data dir alone.
    restored.kill().expect("stop");
    let out = restore_into(&restored, file, &["--skip-if-not-empty"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("already holds data"));
    restored.restart().await.expect("start again");
    let mut client = restored.client().await.expect("client");
    let kept = client.get("after", None).await.expect("get");
    assert_eq!(kept.kvs().len(), 1, "the write after the restore survived");
}
