//! The peer gRPC service a member serves on `--listen-peer-urls`: Raft's messages, snapshot
//! installation, and what followers hand to the leader. Requests from another cluster (or meant
//! for another member id) are refused, so a member bootstrapped with a different token or a
//! stale address cannot disturb this cluster.

use std::sync::Arc;

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::storage::Snapshot;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::not_leader;
use crate::api::Member;
use crate::error::EtcdError;
use crate::proto::etcdserverpb::LeaseTimeToLiveResponse;
use crate::proto::peerpb::peer_server::Peer;
use crate::proto::peerpb::{
    CampaignReply, CampaignRequest, ClusterInfoReply, ClusterInfoRequest, LeaseRenewReply,
    LeaseRenewRequest, LeaseTimeToLiveRequest, MembershipReply, MembershipRequest, PeerHeader,
    ProposeReply, ProposeRequest, RaftReply, RaftRequest, ReadIndexReply, ReadIndexRequest,
    SnapshotChunk, SnapshotReply,
};
use crate::raft::snapshot::SnapshotData;
use crate::raft::{Command, TypeConfig};

/// The peer service of one member.
pub struct PeerService {
    member: Arc<Member>,
    /// Turns true when the member shuts down: ends the long-lived AppendEntries streams.
    stop: tokio::sync::watch::Receiver<bool>,
}

impl PeerService {
    /// The peer service of `member`, until `stop` turns true.
    pub fn new(member: Arc<Member>, stop: tokio::sync::watch::Receiver<bool>) -> Self {
        Self { member, stop }
    }

    fn check(&self, header: Option<&PeerHeader>) -> Result<(), Status> {
        check_header(&self.member, header)
    }

    fn require_leader(&self) -> Result<(), Status> {
        if self.member.is_leader() {
            Ok(())
        } else {
            Err(not_leader())
        }
    }
}

/// Refuses a request from another cluster, or meant for another member than `member`.
pub(super) fn check_header(member: &Member, header: Option<&PeerHeader>) -> Result<(), Status> {
    let Some(h) = header else {
        return Err(Status::invalid_argument(
            "oxcd: peer request without header",
        ));
    };
    let ours = member.identity.cluster_id;
    if h.cluster_id != ours {
        tracing::warn!(from = %format!("{:x}", h.from), cluster = %format!("{:x}", h.cluster_id), "refused a peer request from another cluster");
        return Err(Status::failed_precondition(format!(
            "oxcd: request from cluster {:x}, this member belongs to cluster {ours:x} (different --initial-cluster-token or --initial-cluster?)",
            h.cluster_id
        )));
    }
    if h.to != member.identity.member_id {
        return Err(Status::failed_precondition(format!(
            "oxcd: request for member {:x} reached member {:x}",
            h.to, member.identity.member_id
        )));
    }
    Ok(())
}

pub(super) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Status> {
    postcard::from_bytes(bytes)
        .map_err(|e| Status::invalid_argument(format!("oxcd: undecodable raft message: {e}")))
}

pub(super) fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, Status> {
    postcard::to_stdvec(value)
        .map_err(|e| Status::internal(format!("oxcd: unencodable raft message: {e}")))
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn append_entries(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let r = request.into_inner();
        self.check(r.header.as_ref())?;
        let rpc: AppendEntriesRequest<TypeConfig> = decode(&r.payload)?;
        let answer = self.member.raft.append_entries(rpc).await;
        Ok(Response::new(RaftReply {
            payload: encode(&answer)?,
        }))
    }

    async fn append_entries_stream(
        &self,
        request: Request<Streaming<RaftRequest>>,
    ) -> Result<Response<super::append_stream::ReplyStream>, Status> {
        Ok(Response::new(super::append_stream::serve(
            self.member.clone(),
            request.into_inner(),
            self.stop.clone(),
        )))
    }

    async fn vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let r = request.into_inner();
        self.check(r.header.as_ref())?;
        let rpc: VoteRequest<u64> = decode(&r.payload)?;
        let answer = self.member.raft.vote(rpc).await;
        Ok(Response::new(RaftReply {
            payload: encode(&answer)?,
        }))
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<SnapshotReply>, Status> {
        let mut stream = request.into_inner();
        let first = stream
            .next()
            .await
            .ok_or_else(|| Status::invalid_argument("oxcd: empty snapshot transfer"))??;
        self.check(first.header.as_ref())?;
        let received = super::transfer::receive(first, stream, self.member.snapshots.dir()).await?;
        let path = received.path.clone();
        let snapshot = Snapshot {
            meta: received.meta,
            snapshot: Box::new(SnapshotData::Image(received.path)),
        };
        let outcome = self
            .member
            .raft
            .install_full_snapshot(received.vote, snapshot)
            .await;
        // Installed images are moved away; one refused for a stale vote is still here.
        let _ = std::fs::remove_file(&path);
        let resp = outcome.map_err(|e| Status::unavailable(format!("oxcd: {e}")))?;
        Ok(Response::new(SnapshotReply {
            vote: encode(&resp.vote)?,
        }))
    }

    async fn propose(
        &self,
        request: Request<ProposeRequest>,
    ) -> Result<Response<ProposeReply>, Status> {
        let r = request.into_inner();
        self.check(r.header.as_ref())?;
        self.require_leader()?;
        let command = r
            .command
            .ok_or_else(|| Status::invalid_argument("oxcd: proposal without command"))?;
        let written = {
            let _permit = self.member.leadership.append_permit().await;
            self.member.raft.client_write(Command(command)).await
        };
        match written {
            Ok(resp) => {
                // The follower answers its client once it has applied the entry too, which
                // needs the new commit index: send it now rather than with the next heartbeat.
                let _ = self.member.raft.trigger().heartbeat().await;
                Ok(Response::new(ProposeReply {
                    result: Some(resp.data.to_proto()),
                    index: resp.log_id.index,
                }))
            }
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Err(not_leader()),
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                Err(Status::internal(format!("oxcd: {e}")))
            }
            Err(RaftError::Fatal(_)) => Err(EtcdError::Stopped.into()),
        }
    }

    async fn read_index(
        &self,
        request: Request<ReadIndexRequest>,
    ) -> Result<Response<ReadIndexReply>, Status> {
        self.check(request.get_ref().header.as_ref())?;
        match self.member.raft.get_read_log_id().await {
            Ok((read, _)) => Ok(Response::new(ReadIndexReply {
                index: read.map_or(0, |l| l.index),
            })),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_))) => Err(not_leader()),
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_))) => {
                Err(EtcdError::Timeout.into())
            }
            Err(RaftError::Fatal(_)) => Err(EtcdError::Stopped.into()),
        }
    }

    async fn lease_renew(
        &self,
        request: Request<LeaseRenewRequest>,
    ) -> Result<Response<LeaseRenewReply>, Status> {
        let r = request.into_inner();
        self.check(r.header.as_ref())?;
        self.require_leader()?;
        self.member.promote_leases();
        let ttl = self.member.store.lease_renew(r.id).unwrap_or(0);
        Ok(Response::new(LeaseRenewReply { ttl }))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let r = request.into_inner();
        self.check(r.header.as_ref())?;
        self.require_leader()?;
        self.member.promote_leases();
        let req = r.request.unwrap_or_default();
        Ok(Response::new(self.member.lease_time_to_live_local(&req)))
    }

    async fn change_membership(
        &self,
        request: Request<MembershipRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        let r = request.into_inner();
        self.check(r.header.as_ref())?;
        self.require_leader()?;
        let change = r
            .request
            .ok_or_else(|| Status::invalid_argument("oxcd: empty membership request"))?;
        Ok(Response::new(
            self.member.change_membership_local(change).await?,
        ))
    }

    async fn campaign(
        &self,
        request: Request<CampaignRequest>,
    ) -> Result<Response<CampaignReply>, Status> {
        let r = request.into_inner();
        self.check(r.header.as_ref())?;
        let timeout = std::time::Duration::from_millis(r.timeout_ms);
        self.member
            .campaign(timeout, self.member.election_timeout)
            .await?;
        Ok(Response::new(CampaignReply {}))
    }

    async fn cluster_info(
        &self,
        request: Request<ClusterInfoRequest>,
    ) -> Result<Response<ClusterInfoReply>, Status> {
        let token = &request.get_ref().token;
        if *token != self.member.identity.cluster_token {
            return Err(Status::failed_precondition(format!(
                "oxcd: cluster token mismatch: this cluster's --initial-cluster-token is {:?}, the joining member has {token:?}",
                self.member.identity.cluster_token
            )));
        }
        let versions = self.member.versions()?;
        Ok(Response::new(ClusterInfoReply {
            cluster_id: self.member.identity.cluster_id,
            members: self.member.members(),
            cluster_version: versions.cluster.unwrap_or_default(),
            downgrade_target: versions.downgrade.unwrap_or_default(),
        }))
    }
}
