//! The backend quota and alarms: a write that would take the data in use past
//! `--quota-backend-bytes` raises the NOSPACE alarm (through the log, so every member refuses
//! the same writes) and fails with etcd's error; the Alarm RPC lists, raises and disarms alarms.

use super::Member;
use crate::error::EtcdError;
use crate::mvcc::KvRead;
use crate::proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, AlarmType, PutRequest, TxnRequest, alarm_request::AlarmAction,
    request_op::Request,
};
use crate::proto::raftpb::raft_command::Command;

/// Per-key bookkeeping etcd adds to a put's cost.
const PUT_OVERHEAD: usize = 256;
/// What etcd charges a lease grant.
const LEASE_OVERHEAD: usize = 64;

/// Quota cost of a Put.
pub fn put_cost(p: &PutRequest) -> usize {
    p.key.len() + p.value.len() + PUT_OVERHEAD
}

/// Quota cost of a Txn: its larger branch's top-level puts, as etcd counts it.
pub fn txn_cost(t: &TxnRequest) -> usize {
    let branch = |ops: &[crate::proto::etcdserverpb::RequestOp]| -> usize {
        ops.iter()
            .map(|op| match &op.request {
                Some(Request::RequestPut(p)) => put_cost(p),
                _ => 0,
            })
            .sum()
    };
    branch(&t.success).max(branch(&t.failure))
}

/// Quota cost of a lease grant.
pub fn lease_cost() -> usize {
    LEASE_OVERHEAD
}

impl Member {
    /// Refuses a write of `cost` bytes that does not fit the quota, raising NOSPACE first.
    pub async fn check_quota(&self, cost: usize) -> Result<(), EtcdError> {
        if cost == 0 {
            return Ok(());
        }
        let after = self
            .store
            .bytes_in_use()
            .saturating_add(i64::try_from(cost).unwrap_or(i64::MAX));
        if after < self.limits.quota_bytes {
            return Ok(());
        }
        let raise = AlarmRequest {
            action: AlarmAction::Activate as i32,
            member_id: self.identity.member_id,
            alarm: AlarmType::Nospace as i32,
        };
        if let Err(e) = self.propose(Command::Alarm(raise)).await {
            tracing::warn!(error = %e, "failed to raise the NOSPACE alarm");
        }
        Err(EtcdError::NoSpace)
    }

    /// The Alarm RPC: GET is answered locally, ACTIVATE and DEACTIVATE go through the log.
    pub async fn alarm(&self, req: AlarmRequest) -> Result<AlarmResponse, EtcdError> {
        if req.action == AlarmAction::Get as i32 {
            let filter = AlarmType::try_from(req.alarm).unwrap_or(AlarmType::None);
            return Ok(AlarmResponse {
                header: self.header(self.store.rev()),
                alarms: self.store.alarms(filter),
            });
        }
        let resp = self.write(Command::Alarm(req)).await?;
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::RequestOp;

    fn put(value_len: usize) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestPut(PutRequest {
                key: b"k".to_vec(),
                value: vec![0; value_len],
                ..Default::default()
            })),
        }
    }

    #[test]
    fn a_txn_costs_its_larger_branch_of_puts() {
        let t = TxnRequest {
            compare: vec![],
            success: vec![put(10)],
            failure: vec![put(100), put(100)],
        };
        assert_eq!(txn_cost(&t), 2 * (1 + 100 + PUT_OVERHEAD));
        let deletes_only = TxnRequest {
            compare: vec![],
            success: vec![],
            failure: vec![],
        };
        assert_eq!(txn_cost(&deletes_only), 0);
    }
}
