//! The Lease service. Grant and Revoke go through the log; KeepAlive and TimeToLive are answered
//! by the leader's lease table (a follower asks its leader); Leases lists the applied leases
//! after a ReadIndex. Expiry is the leader's: it revokes through the log, so every member drops
//! a lease at the same point of the log, once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::Member;
use crate::error::EtcdError;
use crate::mvcc::KvRead;
use crate::mvcc::lease::MAX_LEASE_TTL;
use crate::peer::forward::{Route, retryable};
use crate::peer::is_not_leader;
use crate::proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse, lease_server::Lease,
};
use crate::proto::peerpb::{LeaseRenewRequest, LeaseTimeToLiveRequest as PeerTtlRequest};
use crate::proto::raftpb::raft_command::Command;
use tokio::time::Instant;

type KeepAliveStream =
    std::pin::Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

/// The Lease service of one member.
pub struct LeaseService {
    member: Arc<Member>,
    next_id: AtomicU64,
}

/// SplitMix64: spreads a counter into well-mixed ids, like etcd's request-id generator does.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl LeaseService {
    /// A Lease service over `member`.
    pub fn new(member: Arc<Member>) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let seed = member.identity.member_id ^ nanos;
        Self {
            member,
            next_id: AtomicU64::new(seed),
        }
    }

    /// A fresh positive lease id not in use.
    fn new_id(&self) -> i64 {
        loop {
            let id = (mix(self.next_id.fetch_add(1, Ordering::Relaxed)) >> 1) as i64;
            if id != 0 && !self.member.store.lease_exists(id) {
                return id;
            }
        }
    }
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        let mut g = request.into_inner();
        if g.ttl > MAX_LEASE_TTL {
            return Err(EtcdError::LeaseTtlTooLarge.into());
        }
        if g.id == 0 {
            g.id = self.new_id();
        }
        g.ttl = g.ttl.max(self.member.limits.min_lease_ttl);
        self.member.check_quota(super::quota::lease_cost()).await?;
        let resp = self.member.write(Command::LeaseGrant(g)).await?;
        Ok(Response::new(resp))
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let r = request.into_inner();
        let resp = self.member.write(Command::LeaseRevoke(r)).await?;
        Ok(Response::new(resp))
    }

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<KeepAliveStream>, Status> {
        let mut inbound = request.into_inner();
        let member = self.member.clone();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            while let Some(Ok(req)) = inbound.next().await {
                if !member.has_leader() {
                    let _ = tx.send(Err(EtcdError::NoLeader.into())).await;
                    return;
                }
                // etcd answers an unknown or expired lease with TTL 0, not an error.
                let ttl = match member.lease_renew(req.id).await {
                    Ok(ttl) => ttl,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                let resp = LeaseKeepAliveResponse {
                    header: member.header(member.store.rev()),
                    id: req.id,
                    ttl,
                };
                if tx.send(Ok(resp)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let r = request.into_inner();
        Ok(Response::new(self.member.lease_time_to_live(r).await?))
    }

    async fn lease_leases(
        &self,
        _: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        self.member.linearizable().await?;
        let leases = self
            .member
            .store
            .lease_ids()
            .into_iter()
            .map(|id| LeaseStatus { id })
            .collect();
        let header = self.member.header(self.member.store.rev());
        Ok(Response::new(LeaseLeasesResponse { header, leases }))
    }
}

impl Member {
    /// Renews lease `id` on the leader (here or through it); its TTL, 0 when unknown.
    pub async fn lease_renew(&self, id: i64) -> Result<i64, Status> {
        if self.is_learner() {
            return Err(EtcdError::NotSupportedForLearner.into());
        }
        let deadline = Instant::now() + super::REQUEST_TIMEOUT;
        loop {
            match self.route(deadline).await? {
                Route::Local => {
                    self.promote_leases();
                    return Ok(self.store.lease_renew(id).unwrap_or(0));
                }
                Route::Remote(mut client, header) => {
                    match client.lease_renew(LeaseRenewRequest { header, id }).await {
                        Ok(r) => return Ok(r.into_inner().ttl),
                        Err(s) if is_not_leader(&s) || retryable(&s) => {}
                        Err(s) => return Err(s),
                    }
                }
            }
            pause(deadline).await?;
        }
    }

    /// The leader's view of a lease (remaining TTL is only known there).
    pub async fn lease_time_to_live(
        &self,
        r: LeaseTimeToLiveRequest,
    ) -> Result<LeaseTimeToLiveResponse, Status> {
        let deadline = Instant::now() + super::REQUEST_TIMEOUT;
        loop {
            match self.route(deadline).await? {
                Route::Local => {
                    self.linearizable().await?;
                    self.promote_leases();
                    return Ok(self.lease_time_to_live_local(&r));
                }
                Route::Remote(mut client, header) => {
                    let req = PeerTtlRequest {
                        header,
                        request: Some(r),
                    };
                    match client.lease_time_to_live(req).await {
                        Ok(resp) => {
                            let mut resp = resp.into_inner();
                            self.fill(&mut resp.header);
                            return Ok(resp);
                        }
                        Err(s) if is_not_leader(&s) || retryable(&s) => {}
                        Err(s) => return Err(s),
                    }
                }
            }
            pause(deadline).await?;
        }
    }

    /// This member's lease table's view of a lease.
    pub fn lease_time_to_live_local(&self, r: &LeaseTimeToLiveRequest) -> LeaseTimeToLiveResponse {
        let header = self.header(self.store.rev());
        match self.store.lease_time_to_live(r.id) {
            // etcd reports an unknown lease as TTL -1, not as an error.
            None => LeaseTimeToLiveResponse {
                header,
                id: r.id,
                ttl: -1,
                ..Default::default()
            },
            Some(t) => LeaseTimeToLiveResponse {
                header,
                id: r.id,
                ttl: t.remaining,
                granted_ttl: t.granted,
                keys: if r.keys { t.keys } else { Vec::new() },
            },
        }
    }
}

async fn pause(deadline: Instant) -> Result<(), EtcdError> {
    let pause = std::time::Duration::from_millis(30);
    if Instant::now() + pause >= deadline {
        return Err(EtcdError::Timeout);
    }
    tokio::time::sleep(pause).await;
    Ok(())
}

/// How often the leader looks for expired leases.
const EXPIRY_CHECK: std::time::Duration = std::time::Duration::from_millis(500);
/// Most leases revoked per check (etcd revokes at most 1000 per second).
const REVOKES_PER_CHECK: usize = 500;

/// Revokes expired leases through the log while this member leads; gives every lease its full
/// TTL again whenever it becomes leader. Runs until the task is dropped.
pub async fn expire_leases(member: Arc<Member>) {
    let mut interval = tokio::time::interval(EXPIRY_CHECK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if !member.is_leader() {
            continue;
        }
        member.promote_leases();
        for id in member.store.leases_expired(REVOKES_PER_CHECK) {
            match member
                .propose(Command::LeaseRevoke(LeaseRevokeRequest { id }))
                .await
            {
                Ok(_) | Err(EtcdError::LeaseNotFound) => {}
                Err(e) => {
                    tracing::warn!(lease = id, error = %e, "failed to revoke an expired lease");
                    break;
                }
            }
        }
    }
}
