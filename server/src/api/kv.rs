//! The KV service: Range, Put, DeleteRange, Txn and Compact.
//!
//! Reads are served locally (after a ReadIndex barrier unless serializable); read-only Txns
//! likewise. Everything that writes goes through the log.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::Member;
use crate::mvcc::{ReadOnly, check, ops};
use crate::proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse, kv_server::Kv,
    request_op::Request as Op,
};
use crate::proto::raftpb::raft_command::Command;

/// The KV service of one member.
pub struct KvService {
    member: Arc<Member>,
}

impl KvService {
    /// A KV service over `member`.
    pub fn new(member: Arc<Member>) -> Self {
        Self { member }
    }
}

/// etcd serves a Txn without the log when every top-level operation is a Range.
fn is_read_only(t: &TxnRequest) -> bool {
    t.success
        .iter()
        .chain(&t.failure)
        .all(|op| matches!(op.request, Some(Op::RequestRange(_))))
}

/// A read-only Txn may skip the ReadIndex barrier only when every Range is serializable.
fn is_serializable(t: &TxnRequest) -> bool {
    t.success
        .iter()
        .chain(&t.failure)
        .all(|op| matches!(&op.request, Some(Op::RequestRange(r)) if r.serializable))
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(
        &self,
        request: Request<RangeRequest>,
    ) -> Result<Response<RangeResponse>, Status> {
        let r = request.into_inner();
        check::range(&r)?;
        if !r.serializable {
            self.member.linearizable().await?;
        }
        let mut resp = ops::range(self.member.store.as_ref(), &r)?;
        self.member.fill(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let p = request.into_inner();
        check::put(&p)?;
        self.member.check_quota(super::quota::put_cost(&p)).await?;
        let resp = self.member.write(Command::Put(p)).await?;
        Ok(Response::new(resp))
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let d = request.into_inner();
        check::delete_range(&d)?;
        let resp = self.member.write(Command::DeleteRange(d)).await?;
        Ok(Response::new(resp))
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let t = request.into_inner();
        check::txn(&t, self.member.limits.max_txn_ops)?;
        if !is_read_only(&t) {
            self.member.check_quota(super::quota::txn_cost(&t)).await?;
            return Ok(Response::new(self.member.write(Command::Txn(t)).await?));
        }
        if !is_serializable(&t) {
            self.member.linearizable().await?;
        }
        let mut view = ReadOnly(self.member.store.as_ref());
        let mut resp = ops::txn(&mut view, &t, &|id| self.member.store.lease_exists(id))?;
        self.member.fill(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn compact(
        &self,
        request: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        let c = request.into_inner();
        Ok(Response::new(
            self.member.write(Command::Compaction(c)).await?,
        ))
    }
}
