//! The backend quota and the NOSPACE alarm: writes past `--quota-backend-bytes` are refused with
//! etcd's error while reads, deletes and compaction still work; the alarm is replicated state
//! that survives a restart and is disarmed through the Alarm RPC once space is freed.

use oxcd_server::proto::etcdserverpb::{
    AlarmRequest, AlarmType, alarm_request::AlarmAction, maintenance_client::MaintenanceClient,
};
use oxcd_tests::OxcdServer;
use tonic::Code;

async fn alarms(endpoint: &str) -> Vec<(u64, i32)> {
    let mut m = MaintenanceClient::connect(endpoint.to_string())
        .await
        .expect("connect");
    let req = AlarmRequest {
        action: AlarmAction::Get as i32,
        member_id: 0,
        alarm: AlarmType::None as i32,
    };
    let resp = m.alarm(req).await.expect("alarm get").into_inner();
    resp.alarms.iter().map(|a| (a.member_id, a.alarm)).collect()
}

async fn disarm(endpoint: &str, member_id: u64) {
    let mut m = MaintenanceClient::connect(endpoint.to_string())
        .await
        .expect("connect");
    let req = AlarmRequest {
        action: AlarmAction::Deactivate as i32,
        member_id,
        alarm: AlarmType::Nospace as i32,
    };
    let resp = m.alarm(req).await.expect("disarm").into_inner();
    assert_eq!(resp.alarms.len(), 1, "the disarmed alarm is reported");
}

fn is_no_space(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s)
        if s.code() == Code::ResourceExhausted && s.message() == "etcdserver: mvcc: database space exceeded")
}

#[tokio::test]
async fn writes_past_the_quota_raise_nospace_and_only_reads_and_deletes_pass_until_disarmed() {
    let mut server = OxcdServer::start_with(&["--quota-backend-bytes", "300000"])
        .await
        .expect("start");
    let mut client = server.client().await.expect("client");
    let value = "v".repeat(10_000);
    let mut acked = Vec::new();
    let mut refused = None;
    for i in 0..100 {
        let key = format!("q/{i:03}");
        match client.put(key.clone(), value.clone(), None).await {
            Ok(_) => acked.push(key),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let refused = refused.expect("the quota stopped the writes before 1 MB");
    assert!(is_no_space(&refused), "etcd's NOSPACE error: {refused:?}");
    assert!(
        acked.len() > 10,
        "the quota is not hit early: {} writes",
        acked.len()
    );
    let raised = alarms(server.endpoint()).await;
    assert_eq!(raised.len(), 1);
    assert_eq!(raised[0].1, AlarmType::Nospace as i32);
    let member_id = raised[0].0;

    // Reads and deletes still work; small writes and lease grants do not.
    let got = client
        .get(
            "q/",
            Some(
                etcd_client::GetOptions::new()
                    .with_prefix()
                    .with_count_only(),
            ),
        )
        .await
        .expect("get");
    assert_eq!(
        got.count(),
        acked.len() as i64,
        "every acknowledged write is there"
    );
    assert!(
        client
            .put("tiny", "x", None)
            .await
            .err()
            .as_ref()
            .is_some_and(is_no_space)
    );
    assert!(
        client
            .lease_grant(60, None)
            .await
            .err()
            .as_ref()
            .is_some_and(is_no_space)
    );
    let deleted = client
        .delete("q/", Some(etcd_client::DeleteOptions::new().with_prefix()))
        .await
        .expect("delete");
    assert_eq!(deleted.deleted(), acked.len() as i64);

    // The alarm is replicated state: it survives a restart.
    server.restart().await.expect("restart");
    assert_eq!(alarms(server.endpoint()).await, raised);
    let mut client = server.client().await.expect("client");
    let rev = client
        .get("x", None)
        .await
        .expect("get")
        .header()
        .map(|h| h.revision())
        .unwrap_or(0);
    client.compact(rev, None).await.expect("compact");
    assert!(
        client
            .put("tiny", "x", None)
            .await
            .err()
            .as_ref()
            .is_some_and(is_no_space),
        "still raised"
    );
    disarm(server.endpoint(), member_id).await;
    assert!(alarms(server.endpoint()).await.is_empty());
    client
        .put("tiny", "x", None)
        .await
        .expect("writes pass once space is freed and the alarm disarmed");
}
