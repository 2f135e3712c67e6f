//! The harness starts each reference etcd, and clients talk to it.

use oxcd_tests::{EtcdServer, EtcdVersion};

async fn put_then_get_round_trips(version: EtcdVersion) {
    let server = EtcdServer::start(version).await.expect("etcd starts");
    assert!(server.endpoint().starts_with("http://127.0.0.1:"));
    let mut client = server.client().await.expect("client connects");
    client
        .put("harness/key", "value", None)
        .await
        .expect("put succeeds");
    let response = client.get("harness/key", None).await.expect("get succeeds");
    let values: Vec<&[u8]> = response.kvs().iter().map(|kv| kv.value()).collect();
    assert_eq!(values, [b"value".as_slice()], "{version}");
}

#[tokio::test]
async fn etcd_3_6_started_by_the_harness_round_trips_a_put_through_etcd_client() {
    put_then_get_round_trips(EtcdVersion::V3_6).await;
}

#[tokio::test]
async fn etcd_3_4_started_by_the_harness_round_trips_a_put_through_etcd_client() {
    put_then_get_round_trips(EtcdVersion::V3_4).await;
}

#[tokio::test]
async fn the_harness_runs_the_pinned_etcd_3_6_and_debians_3_4() {
    for (version, expected) in [(EtcdVersion::V3_6, "3.6."), (EtcdVersion::V3_4, "3.4.")] {
        let server = EtcdServer::start(version).await.expect("etcd starts");
        let mut client = server.client().await.expect("client connects");
        let status = client.status().await.expect("status succeeds");
        assert!(
            status.version().starts_with(expected),
            "{version} reports {}",
            status.version()
        );
    }
}
