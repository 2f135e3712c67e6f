//! etcd's flags and `ETCD_*` environment variables drive a member: auto-compaction keeps only
//! the configured history, and an environment variable counts like its flag.

use std::time::Duration;

use oxcd_tests::OxcdServer;

async fn compacted_below(client: &mut etcd_client::Client, rev: i64) -> bool {
    matches!(
        client.get("k", Some(etcd_client::GetOptions::new().with_revision(rev))).await,
        Err(etcd_client::Error::GRpcStatus(s)) if s.message() == "etcdserver: mvcc: required revision has been compacted"
    )
}

#[tokio::test]
async fn periodic_auto_compaction_compacts_history_older_than_the_retention() {
    let server = OxcdServer::start_with(&[
        "--auto-compaction-mode",
        "periodic",
        "--auto-compaction-retention",
        "1s",
    ])
    .await
    .expect("start");
    let mut client = server.client().await.expect("client");
    for i in 0..5 {
        client.put("k", format!("{i}"), None).await.expect("put");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !compacted_below(&mut client, 2).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "history older than 1 s was never compacted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let latest = client.get("k", None).await.expect("get");
    assert_eq!(
        latest.kvs()[0].value(),
        b"4",
        "compaction keeps the live value"
    );
}

#[tokio::test]
async fn an_etcd_environment_variable_sets_its_flag() {
    let server = OxcdServer::start_with_env(&[], &[("ETCD_MAX_TXN_OPS", "2")])
        .await
        .expect("start");
    let mut client = server.client().await.expect("client");
    let ops = |n: usize| {
        etcd_client::Txn::new().and_then(
            (0..n)
                .map(|i| etcd_client::TxnOp::put(format!("t{i}"), "v", None))
                .collect::<Vec<_>>(),
        )
    };
    client.txn(ops(2)).await.expect("two ops are allowed");
    let err = client
        .txn(ops(3))
        .await
        .expect_err("three ops exceed ETCD_MAX_TXN_OPS");
    assert!(
        err.to_string()
            .contains("too many operations in txn request"),
        "{err}"
    );
}
