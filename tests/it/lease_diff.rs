//! Differential Lease suite: grants, keep-alives, time-to-live, revocation and expiry against
//! etcd 3.6 and oxcd, including the DELETE events (with prev_kv) that revocation and expiry send
//! to watchers; plus lease state across an oxcd restart.

use std::time::Duration;

use oxcd_server::proto::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseLeasesRequest, LeaseRevokeRequest,
    LeaseTimeToLiveRequest, PutRequest, RangeRequest, WatchCreateRequest, WatchRequest,
    lease_client::LeaseClient, watch_request::RequestUnion,
};
use oxcd_tests::diff::{Outcome, Pair, Step, normalize_header, report};
use tonic::transport::Channel;

fn outcome<T: std::fmt::Debug>(
    r: Result<tonic::Response<T>, tonic::Status>,
    fix: impl FnOnce(&mut T),
) -> Outcome {
    match r {
        Ok(resp) => {
            let mut resp = resp.into_inner();
            fix(&mut resp);
            Ok(format!("{resp:?}"))
        }
        Err(s) => Err((s.code(), s.message().to_string())),
    }
}

struct Leases {
    etcd: LeaseClient<Channel>,
    oxcd: LeaseClient<Channel>,
}

impl Leases {
    fn new(pair: &Pair) -> Self {
        let (etcd, oxcd) = pair.channels();
        Self {
            etcd: LeaseClient::new(etcd),
            oxcd: LeaseClient::new(oxcd),
        }
    }

    async fn grant(&mut self, id: i64, ttl: i64) -> (Outcome, Outcome) {
        let req = LeaseGrantRequest { id, ttl };
        let fix = |r: &mut oxcd_server::proto::etcdserverpb::LeaseGrantResponse| {
            normalize_header(&mut r.header)
        };
        (
            outcome(self.etcd.lease_grant(req).await, fix),
            outcome(self.oxcd.lease_grant(req).await, fix),
        )
    }

    async fn revoke(&mut self, id: i64) -> (Outcome, Outcome) {
        let req = LeaseRevokeRequest { id };
        let fix = |r: &mut oxcd_server::proto::etcdserverpb::LeaseRevokeResponse| {
            normalize_header(&mut r.header)
        };
        (
            outcome(self.etcd.lease_revoke(req).await, fix),
            outcome(self.oxcd.lease_revoke(req).await, fix),
        )
    }

    /// TimeToLive with the remaining TTL rounded to a 2-second bucket (the two servers read the
    /// clock at slightly different moments).
    async fn ttl(&mut self, id: i64, keys: bool) -> (Outcome, Outcome) {
        let req = LeaseTimeToLiveRequest { id, keys };
        let fix = |r: &mut oxcd_server::proto::etcdserverpb::LeaseTimeToLiveResponse| {
            normalize_header(&mut r.header);
            if r.ttl > 0 {
                r.ttl = (r.ttl + 1) / 2;
            }
            // etcd lists a lease's keys in map order.
            r.keys.sort();
        };
        (
            outcome(self.etcd.lease_time_to_live(req).await, fix),
            outcome(self.oxcd.lease_time_to_live(req).await, fix),
        )
    }

    async fn leases(&mut self) -> (Outcome, Outcome) {
        let fix = |r: &mut oxcd_server::proto::etcdserverpb::LeaseLeasesResponse| {
            normalize_header(&mut r.header);
            r.leases.sort_by_key(|l| l.id);
        };
        (
            outcome(self.etcd.lease_leases(LeaseLeasesRequest {}).await, fix),
            outcome(self.oxcd.lease_leases(LeaseLeasesRequest {}).await, fix),
        )
    }

    async fn keep_alive_once(client: &mut LeaseClient<Channel>, id: i64) -> Outcome {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let _ = tx.send(LeaseKeepAliveRequest { id }).await;
        let mut stream = match client
            .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
        {
            Ok(s) => s.into_inner(),
            Err(s) => return Err((s.code(), s.message().to_string())),
        };
        match tokio::time::timeout(Duration::from_secs(10), stream.message()).await {
            Ok(Ok(Some(mut resp))) => {
                normalize_header(&mut resp.header);
                Ok(format!("{resp:?}"))
            }
            other => Err((tonic::Code::Unknown, format!("{other:?}"))),
        }
    }

    async fn keep_alive(&mut self, id: i64) -> (Outcome, Outcome) {
        (
            Self::keep_alive_once(&mut self.etcd, id).await,
            Self::keep_alive_once(&mut self.oxcd, id).await,
        )
    }
}

fn put_leased(key: &str, lease: i64) -> Step {
    Step::Put(PutRequest {
        key: key.into(),
        value: b"v".to_vec(),
        lease,
        ..Default::default()
    })
}

#[tokio::test]
async fn grant_keepalive_ttl_and_revoke_match_etcd() {
    let mut pair = Pair::start().await.expect("start");
    let mut l = Leases::new(&pair);
    let same = |what: &str, (etcd, oxcd): (Outcome, Outcome)| assert_eq!(etcd, oxcd, "{what}");
    same("grant", l.grant(100, 60).await);
    same("grant below the minimum TTL", l.grant(104, 1).await);
    same("revoke a lease without keys", l.revoke(104).await);
    same("a second lease", l.grant(101, 60).await);
    same("grant an existing id", l.grant(100, 30).await);
    same("grant too large a TTL", l.grant(102, 9_000_000_001).await);
    same("grant the largest TTL", l.grant(103, 9_000_000_000).await);
    let mismatches = pair
        .run(&[
            put_leased("l/a", 100),
            put_leased("l/b", 100),
            put_leased("l/c", 101),
            put_leased("l/x", 999),
            // Moving a key to another lease detaches it from the first.
            put_leased("l/b", 101),
            Step::Put(PutRequest {
                key: b"l/c".to_vec(),
                ignore_value: true,
                ignore_lease: true,
                ..Default::default()
            }),
            Step::Range(RangeRequest {
                key: b"l/".to_vec(),
                range_end: b"l0".to_vec(),
                ..Default::default()
            }),
        ])
        .await;
    assert!(mismatches.is_empty(), "{}", report(&mismatches));
    same("ttl with keys", l.ttl(100, true).await);
    same("ttl of the moved key's lease", l.ttl(101, true).await);
    same("ttl without keys", l.ttl(100, false).await);
    same("ttl of an unknown lease", l.ttl(4242, true).await);
    same("leases", l.leases().await);
    same("keep-alive", l.keep_alive(100).await);
    same("keep-alive of an unknown lease", l.keep_alive(4242).await);
    same("revoke", l.revoke(100).await);
    same("revoke again", l.revoke(100).await);
    let mismatches = pair
        .run(&[Step::Range(RangeRequest {
            key: b"l/".to_vec(),
            range_end: b"l0".to_vec(),
            ..Default::default()
        })])
        .await;
    assert!(mismatches.is_empty(), "{}", report(&mismatches));
    same("leases after revoke", l.leases().await);
}

#[tokio::test]
async fn revoked_and_expired_leases_delete_their_keys_in_one_revision_with_prev_kv_events() {
    let mut pair = Pair::start().await.expect("start");
    let mut l = Leases::new(&pair);
    assert!(l.grant(7, 60).await.0.is_ok());
    let _ = l.grant(8, 2).await;
    let mismatches = pair
        .run(&[
            put_leased("e/1", 7),
            put_leased("e/2", 7),
            put_leased("e/3", 8),
            put_leased("e/4", 8),
        ])
        .await;
    assert!(mismatches.is_empty(), "{}", report(&mismatches));
    let mut w = pair.watch().await.expect("watch");
    w.send(WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: b"e/".to_vec(),
            range_end: b"e0".to_vec(),
            prev_kv: true,
            ..Default::default()
        })),
    })
    .await;
    let (etcd, oxcd) = w.next(1).await;
    assert_eq!(etcd, oxcd, "created");
    // Lease 8 (TTL 2 s) expires by itself; the expiry deletes both keys in one revision.
    let (etcd, oxcd) = w.next(1).await;
    assert!(etcd[0].is_some(), "etcd expired the lease");
    assert_eq!(etcd, oxcd, "expiry events");
    assert!(l.revoke(7).await.0.is_ok());
    let (etcd, oxcd) = w.next(1).await;
    assert_eq!(etcd, oxcd, "revoke events");
    let (etcd, oxcd) = l.ttl(8, false).await;
    assert_eq!(etcd, oxcd, "an expired lease is gone");
}

#[tokio::test]
async fn leases_and_their_keys_survive_a_restart_with_the_full_ttl_again() {
    let mut server = oxcd_tests::OxcdServer::start().await.expect("start");
    let mut client = server.client().await.expect("client");
    let long = client.lease_grant(100, None).await.expect("grant").id();
    let short = client.lease_grant(3, None).await.expect("grant").id();
    client
        .put(
            "r/long",
            "v",
            Some(etcd_client::PutOptions::new().with_lease(long)),
        )
        .await
        .expect("put");
    client
        .put(
            "r/short",
            "v",
            Some(etcd_client::PutOptions::new().with_lease(short)),
        )
        .await
        .expect("put");
    server.kill().expect("kill");
    tokio::time::sleep(Duration::from_secs(4)).await;
    server.restart().await.expect("restart");
    let mut client = server.client().await.expect("client");
    let ttl = client
        .lease_time_to_live(
            long,
            Some(etcd_client::LeaseTimeToLiveOptions::new().with_keys()),
        )
        .await
        .expect("ttl");
    assert!(
        ttl.ttl() > 90,
        "remaining TTL starts over on the new leader: {}",
        ttl.ttl()
    );
    assert_eq!(ttl.keys(), [b"r/long".to_vec()]);
    // The short lease outlived its TTL while the member was down, but restarts with its full TTL.
    let kv = client.get("r/short", None).await.expect("get");
    assert_eq!(kv.kvs().len(), 1, "not expired right at start");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let kv = client.get("r/short", None).await.expect("get");
        if kv.kvs().is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the short lease never expired"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
