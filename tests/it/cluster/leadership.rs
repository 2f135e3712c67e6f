//! Leadership: MoveLeader hands leadership to a named voter (and refuses what etcd refuses),
//! leases are expired by whoever leads, once, with their TTL renewed on a new leader, and watch
//! streams that require a leader are cancelled with "no leader" when their member loses it.

use std::time::Duration;

use etcd_client::PutOptions;
use oxcd_server::proto::etcdserverpb::watch_client::WatchClient;
use oxcd_server::proto::etcdserverpb::{WatchCreateRequest, WatchRequest, watch_request};
use oxcd_tests::OxcdCluster;
use tokio_stream::StreamExt;

const ELECTION: &[&str] = &["--heartbeat-interval", "100", "--election-timeout", "1000"];

#[tokio::test]
async fn move_leader_hands_leadership_to_the_named_voter() {
    let cluster = OxcdCluster::start(3, ELECTION).await.expect("cluster");
    for _ in 0..2 {
        let leader = cluster.leader().await.expect("leader");
        let target = (leader + 1) % 3;
        let target_id = cluster.member_id(target).await.expect("id");
        let mut via_leader = cluster.members()[leader].client().await.expect("client");
        via_leader
            .move_leader(target_id)
            .await
            .expect("move leader");
        assert_eq!(cluster.leader().await.expect("leader"), target);
        let mut client = cluster.client().await.expect("client");
        client.put("after-move", "ok", None).await.expect("put");
    }
    let leader = cluster.leader().await.expect("leader");
    let follower = (leader + 1) % 3;
    let mut via_follower = cluster.members()[follower].client().await.expect("client");
    let err = via_follower
        .move_leader(cluster.member_id(leader).await.expect("id"))
        .await
        .expect_err("only the leader moves leadership");
    assert!(err.to_string().contains("etcdserver: not leader"), "{err}");
    let mut via_leader = cluster.members()[leader].client().await.expect("client");
    let err = via_leader
        .move_leader(0x1234)
        .await
        .expect_err("unknown transferee");
    assert!(
        err.to_string()
            .contains("etcdserver: bad leader transferee"),
        "{err}"
    );
}

#[tokio::test]
async fn leases_expire_once_and_get_their_ttl_back_on_a_new_leader() {
    let mut cluster = OxcdCluster::start(3, ELECTION).await.expect("cluster");
    let mut client = cluster.client().await.expect("client");
    let lease = client.lease_grant(8, None).await.expect("grant").id();
    let put = client
        .put("leased", "v", Some(PutOptions::new().with_lease(lease)))
        .await
        .expect("put");
    let put_rev = put.header().expect("header").revision();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = client
        .lease_time_to_live(lease, None)
        .await
        .expect("ttl")
        .ttl();
    assert!(before <= 6, "the TTL counts down: {before}");

    let old = cluster.leader().await.expect("leader");
    cluster.member(old).kill().expect("kill the leader");
    cluster.leader().await.expect("a new leader");
    let mut client = cluster.client().await.expect("client");
    let after = client
        .lease_time_to_live(lease, None)
        .await
        .expect("ttl on the new leader")
        .ttl();
    assert!(
        after > before,
        "a new leader gives leases their TTL again (etcd's behaviour): {before} -> {after}"
    );
    cluster.member(old).restart().await.expect("restart");

    // Nobody keeps it alive: it expires, through the log, exactly once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got = client.get("leased", None).await.expect("get");
        if got.kvs().is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the lease never expired"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let hashes = cluster.converged_hashes().await.expect("converge");
    assert!(hashes.windows(2).all(|w| w[0].1 == w[1].1), "{hashes:?}");
    for member in cluster.members() {
        let mut client = member.client().await.expect("client");
        let got = client.get("leased", None).await.expect("get");
        assert!(got.kvs().is_empty(), "{} still has the key", member.name());
        let rev = got.header().expect("header").revision();
        assert_eq!(rev, put_rev + 1, "one revocation, one revision");
        let ttl = client
            .lease_time_to_live(lease, None)
            .await
            .expect("ttl")
            .ttl();
        assert_eq!(ttl, -1, "the lease is gone everywhere");
    }
}

#[tokio::test]
async fn watches_requiring_a_leader_are_cancelled_when_it_is_lost() {
    let mut cluster = OxcdCluster::start(3, ELECTION).await.expect("cluster");
    let watcher = cluster.leader().await.expect("leader");
    let channel = oxcd_tests::diff::channel(cluster.members()[watcher].endpoint())
        .await
        .expect("channel");
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(
            WatchCreateRequest {
                key: b"w".to_vec(),
                ..Default::default()
            },
        )),
    })
    .await
    .expect("queue");
    let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    request
        .metadata_mut()
        .insert("hasleader", "true".parse().expect("metadata"));
    let mut stream = WatchClient::new(channel)
        .watch(request)
        .await
        .expect("watch")
        .into_inner();
    let created = stream.next().await.expect("created").expect("ok");
    assert!(created.created);

    let others: Vec<usize> = (0..3).filter(|i| *i != watcher).collect();
    for i in &others {
        cluster.member(*i).pause().expect("SIGSTOP");
    }
    let ended = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match stream.next().await {
                Some(Ok(_)) => continue,
                other => return other,
            }
        }
    })
    .await;
    for i in &others {
        cluster.member(*i).resume().expect("SIGCONT");
    }
    drop(tx);
    match ended {
        Ok(Some(Err(status))) => {
            assert_eq!(status.code(), tonic::Code::Unavailable);
            assert_eq!(status.message(), "etcdserver: no leader");
        }
        other => panic!("expected the stream to end with 'no leader', got {other:?}"),
    }
}
