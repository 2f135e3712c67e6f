//! The Maintenance service. Status reports what kube-apiserver and etcdctl read from it; the
//! other maintenance RPCs (snapshot, defragment, alarms, hashes) arrive with their own issue.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::Member;
use crate::error::EtcdError;
use crate::proto::etcdserverpb::{StatusRequest, StatusResponse, maintenance_server::Maintenance};

/// The etcd API version oxcd implements. kube-apiserver parses this and keeps features such as
/// RequestWatchProgress only from 3.5.13 on; oxcd's own version is in `oxcd --version`.
pub const ETCD_API_VERSION: &str = "3.6.0";

/// The Maintenance service of one member.
pub struct MaintenanceService {
    member: Arc<Member>,
}

impl MaintenanceService {
    /// A Maintenance service over `member`.
    pub fn new(member: Arc<Member>) -> Self {
        Self { member }
    }
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let db_size = self.member.engine.size_on_disk().map_err(EtcdError::from)?;
        let db_size = i64::try_from(db_size).unwrap_or(i64::MAX);
        let metrics = self.member.raft.metrics().borrow().clone();
        let header = self
            .member
            .header(crate::mvcc::KvRead::rev(self.member.store.as_ref()));
        Ok(Response::new(StatusResponse {
            header,
            version: ETCD_API_VERSION.to_string(),
            db_size,
            leader: metrics.current_leader.unwrap_or(0),
            raft_index: metrics.last_log_index.unwrap_or(0),
            raft_term: metrics.current_term,
            raft_applied_index: metrics.last_applied.map(|l| l.index).unwrap_or(0),
            errors: Vec::new(),
            db_size_in_use: db_size,
            is_learner: false,
            storage_version: ETCD_API_VERSION.to_string(),
            db_size_quota: self.member.limits.quota_bytes,
            downgrade_info: None,
        }))
    }
}
