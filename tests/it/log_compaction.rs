//! Raft log compaction (`--snapshot-count`): the durable store is the snapshot, so the log
//! before it is purged while every write stays readable, also after a restart and a crash.

use oxcd_tests::OxcdServer;

#[tokio::test]
async fn writes_survive_log_purges_restarts_and_kills_with_a_small_snapshot_count() {
    let mut server = OxcdServer::start_with(&["--snapshot-count", "50"])
        .await
        .expect("start");
    let mut client = server.client().await.expect("client");
    for i in 0..400 {
        client
            .put(format!("s/{i:04}"), format!("v{i}"), None)
            .await
            .expect("put");
    }
    server.restart().await.expect("restart");
    let mut client = server.client().await.expect("client");
    for i in 400..600 {
        client
            .put(format!("s/{i:04}"), format!("v{i}"), None)
            .await
            .expect("put");
    }
    server.kill().expect("kill");
    server.restart().await.expect("restart after kill");
    let mut client = server.client().await.expect("client");
    let all = client
        .get("s/", Some(etcd_client::GetOptions::new().with_prefix()))
        .await
        .expect("get");
    assert_eq!(all.count(), 600, "every write is present");
    assert_eq!(
        all.header().map(|h| h.revision()),
        Some(601),
        "revision continues"
    );
    for (i, kv) in all.kvs().iter().enumerate() {
        assert_eq!(kv.value(), format!("v{i}").as_bytes());
    }
    let next = client.put("s/next", "x", None).await.expect("put");
    assert_eq!(next.header().map(|h| h.revision()), Some(602));
}
