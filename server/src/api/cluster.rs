//! The Cluster service. MemberList reports the Raft membership; membership changes arrive with
//! replication and answer `Unimplemented` until then.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::Member;
use crate::proto::etcdserverpb::{
    Member as PbMember, MemberListRequest, MemberListResponse, cluster_server::Cluster,
};

/// The Cluster service of one member.
pub struct ClusterService {
    member: Arc<Member>,
}

impl ClusterService {
    /// A Cluster service over `member`.
    pub fn new(member: Arc<Member>) -> Self {
        Self { member }
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_list(
        &self,
        request: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        if request.get_ref().linearizable {
            self.member.linearizable().await?;
        }
        let membership = self
            .member
            .raft
            .metrics()
            .borrow()
            .membership_config
            .clone();
        let config = membership.membership();
        let members = config
            .nodes()
            .map(|(id, node)| PbMember {
                id: *id,
                name: node.name.clone(),
                peer_ur_ls: node.peer_urls.clone(),
                client_ur_ls: node.client_urls.clone(),
                is_learner: !config.voter_ids().any(|v| v == *id),
            })
            .collect();
        let header = self
            .member
            .header(crate::mvcc::KvRead::rev(self.member.store.as_ref()));
        Ok(Response::new(MemberListResponse { header, members }))
    }
}
