//! A cluster grown from a restored snapshot: the restored member makes its store the Raft
//! snapshot on its first start, so a learner added afterwards receives every key (not a replay
//! of the log onto an empty store) and hashes the same; the restore marker is gone once that
//! is done, and a restart does not seed again.

use std::time::Duration;

use etcd_client::{Client, GetOptions, MemberAddOptions};
use oxcd_server::proto::etcdserverpb::HashKvRequest;
use oxcd_server::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use oxcd_tests::{OxcdServer, free_ports};

use crate::s3_snapshots::{snapshot_cmd, write_history};

/// How long the learner may take to receive the snapshot.
const CATCH_UP: Duration = Duration::from_secs(60);

/// Runs `oxcd snapshot <args>` (`save`, `restore`), which must succeed.
async fn snapshot(args: &[&str]) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let out = snapshot_cmd(&args).await;
    assert!(
        out.status.success(),
        "oxcd snapshot {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn hash_kv(endpoint: &str, revision: i64) -> (u32, i64) {
    let channel = oxcd_tests::diff::channel(endpoint).await.expect("connect");
    let r = MaintenanceClient::new(channel)
        .hash_kv(HashKvRequest { revision })
        .await
        .expect("hash kv")
        .into_inner();
    (r.hash, r.compact_revision)
}

/// Every key and value, read without the leader (a learner serves serializable reads only).
async fn serializable_all(client: &mut Client) -> Option<String> {
    let options = GetOptions::new().with_all_keys().with_serializable();
    let reply = client.get("", Some(options)).await.ok()?;
    Some(format!("{:?}", reply.kvs()))
}

#[tokio::test]
async fn a_learner_added_to_a_restored_member_receives_the_restored_store() {
    let source = OxcdServer::start().await.expect("start oxcd");
    let mut client = source.client().await.expect("client");
    write_history(&mut client).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("s.db");
    let file = file.to_str().expect("utf-8");
    snapshot(&["save", file, "--endpoints", source.endpoint()]).await;
    let expected = serializable_all(&mut client).await.expect("read");
    drop(source);

    let mut restored = OxcdServer::prepare(&[]).expect("prepare");
    let peer = restored.peer_url();
    let data_dir = restored.data_dir();
    let initial = format!("harness={peer}");
    snapshot(&[
        "restore",
        file,
        "--data-dir",
        data_dir.to_str().expect("utf-8"),
        "--name",
        "harness",
        "--initial-cluster",
        &initial,
        "--initial-advertise-peer-urls",
        &peer,
    ])
    .await;
    let marker = data_dir.join("oxcd").join("restored");
    assert!(marker.exists(), "the restore marks the data dir");
    restored.restart().await.expect("start on the restored dir");
    assert!(!marker.exists(), "the first start seeds the Raft snapshot");
    let mut client = restored.client().await.expect("client");
    let revision = client
        .get("k00", None)
        .await
        .expect("get")
        .header()
        .map_or(0, |h| h.revision());

    let [client_port, peer_port] = free_ports::<2>().expect("ports");
    let learner_peer = format!("http://127.0.0.1:{peer_port}");
    client
        .member_add(
            [learner_peer.clone()],
            Some(MemberAddOptions::new().with_is_learner()),
        )
        .await
        .expect("add a learner");
    let cluster = format!("{initial},learner={learner_peer}");
    let mut learner = OxcdServer::prepare_member(
        "learner",
        client_port,
        peer_port,
        &[
            "--initial-cluster",
            &cluster,
            "--initial-cluster-state",
            "existing",
        ],
        &[],
    )
    .expect("prepare the learner");
    learner.spawn().expect("start the learner");
    let deadline = tokio::time::Instant::now() + CATCH_UP;
    let mut seen = None;
    while tokio::time::Instant::now() < deadline {
        if let Ok(mut reader) = learner.client().await {
            seen = serializable_all(&mut reader).await;
            if seen.as_deref() == Some(expected.as_str()) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        seen.as_deref(),
        Some(expected.as_str()),
        "the learner never held the restored keys"
    );
    assert_eq!(
        hash_kv(learner.endpoint(), revision).await,
        hash_kv(restored.endpoint(), revision).await,
        "the learner hashes as the restored member"
    );
    // A restart neither seeds again nor loses anything.
    restored.restart().await.expect("restart");
    let mut client = restored.client().await.expect("client");
    assert_eq!(serializable_all(&mut client).await, Some(expected));
}
