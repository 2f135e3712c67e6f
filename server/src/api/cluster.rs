//! The Cluster service: MemberList from this member's Raft state (after a ReadIndex when the
//! client asks for a linearizable list) and membership changes through the leader
//! (`api::membership`).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::Member;
use crate::proto::etcdserverpb::{
    MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse, cluster_server::Cluster,
};
use crate::proto::peerpb::membership_request::Request as Change;

/// The Cluster service of one member.
pub struct ClusterService {
    member: Arc<Member>,
}

impl ClusterService {
    /// A Cluster service over `member`.
    pub fn new(member: Arc<Member>) -> Self {
        Self { member }
    }

    fn header(&self) -> Option<crate::proto::etcdserverpb::ResponseHeader> {
        self.member
            .header(crate::mvcc::KvRead::rev(self.member.store.as_ref()))
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        request: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        let reply = self
            .member
            .change_membership(Change::Add(request.into_inner()))
            .await?;
        Ok(Response::new(MemberAddResponse {
            header: self.header(),
            member: reply.member,
            members: reply.members,
        }))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        let reply = self
            .member
            .change_membership(Change::Remove(request.into_inner()))
            .await?;
        Ok(Response::new(MemberRemoveResponse {
            header: self.header(),
            members: reply.members,
        }))
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        let reply = self
            .member
            .change_membership(Change::Update(request.into_inner()))
            .await?;
        Ok(Response::new(MemberUpdateResponse {
            header: self.header(),
            members: reply.members,
        }))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let reply = self
            .member
            .change_membership(Change::Promote(request.into_inner()))
            .await?;
        Ok(Response::new(MemberPromoteResponse {
            header: self.header(),
            members: reply.members,
        }))
    }

    async fn member_list(
        &self,
        request: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        if request.get_ref().linearizable {
            self.member.linearizable().await?;
        }
        Ok(Response::new(MemberListResponse {
            header: self.header(),
            members: self.member.members(),
        }))
    }
}
