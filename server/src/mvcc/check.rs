//! Stateless request validation, run before a request reaches the log, with etcd's rules and
//! errors: empty keys, ignore_* combinations, sort options, the per-branch operation limit and the
//! rule that a Txn may not write one key twice (or write a key it also deletes).

use std::collections::HashSet;

use crate::error::EtcdError;
use crate::proto::etcdserverpb::{
    DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
    range_request::{SortOrder, SortTarget},
    request_op::Request,
};

/// Validates a Range request.
pub fn range(r: &RangeRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if SortOrder::try_from(r.sort_order).is_err() || SortTarget::try_from(r.sort_target).is_err() {
        return Err(EtcdError::InvalidSortOption);
    }
    Ok(())
}

/// Validates a Put request.
pub fn put(p: &PutRequest) -> Result<(), EtcdError> {
    if p.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if p.ignore_value && !p.value.is_empty() {
        return Err(EtcdError::ValueProvided);
    }
    if p.ignore_lease && p.lease != 0 {
        return Err(EtcdError::LeaseProvided);
    }
    Ok(())
}

/// Validates a DeleteRange request.
pub fn delete_range(d: &DeleteRangeRequest) -> Result<(), EtcdError> {
    if d.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    Ok(())
}

/// Validates a Txn: operation counts and every operation, then the duplicate-key rule.
pub fn txn(t: &TxnRequest, max_ops: usize) -> Result<(), EtcdError> {
    txn_ops(t, max_ops)?;
    intervals(&t.success)?;
    intervals(&t.failure)?;
    Ok(())
}

fn txn_ops(t: &TxnRequest, max_ops: usize) -> Result<(), EtcdError> {
    let ops = t.compare.len().max(t.success.len()).max(t.failure.len());
    if ops > max_ops {
        return Err(EtcdError::TooManyOps);
    }
    if t.compare.iter().any(|c| c.key.is_empty()) {
        return Err(EtcdError::EmptyKey);
    }
    // Nested transactions share the budget left by their parent, as etcd counts it.
    let budget = max_ops - ops;
    for op in t.success.iter().chain(&t.failure) {
        request_op(op, budget)?;
    }
    Ok(())
}

fn request_op(op: &RequestOp, max_ops: usize) -> Result<(), EtcdError> {
    match &op.request {
        Some(Request::RequestRange(r)) => range(r),
        Some(Request::RequestPut(p)) => put(p),
        Some(Request::RequestDeleteRange(d)) => delete_range(d),
        Some(Request::RequestTxn(t)) => txn_ops(t, max_ops),
        None => Err(EtcdError::KeyNotFound),
    }
}

/// A deleted interval `[start, end)`; an empty `end` is unbounded, as in etcd's interval tree.
#[derive(Clone)]
struct Deleted {
    start: Vec<u8>,
    end: Vec<u8>,
}

impl Deleted {
    fn covers(&self, key: &[u8]) -> bool {
        self.start.as_slice() <= key && (self.end.is_empty() || key < self.end.as_slice())
    }
}

fn any_covers(dels: &[Deleted], key: &[u8]) -> bool {
    dels.iter().any(|d| d.covers(key))
}

/// Collects the keys a branch puts and the ranges it deletes, failing on etcd's conflicts.
fn intervals(ops: &[RequestOp]) -> Result<(HashSet<Vec<u8>>, Vec<Deleted>), EtcdError> {
    let mut dels: Vec<Deleted> = Vec::new();
    for op in ops {
        if let Some(Request::RequestDeleteRange(d)) = &op.request {
            let end = if d.range_end.is_empty() {
                let mut point = d.key.clone();
                point.push(0);
                point
            } else {
                d.range_end.clone()
            };
            dels.push(Deleted {
                start: d.key.clone(),
                end,
            });
        }
    }
    let mut puts: HashSet<Vec<u8>> = HashSet::new();
    for op in ops {
        let Some(Request::RequestTxn(t)) = &op.request else {
            continue;
        };
        let (puts_then, dels_then) = intervals(&t.success)?;
        let (puts_else, dels_else) = intervals(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || any_covers(&dels, k) {
                return Err(EtcdError::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        for k in puts_else {
            // Then and else are exclusive: the same key in both is fine.
            if (puts.contains(&k) && !puts_then.contains(&k)) || any_covers(&dels, &k) {
                return Err(EtcdError::DuplicateKey);
            }
            puts.insert(k);
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for op in ops {
        let Some(Request::RequestPut(p)) = &op.request else {
            continue;
        };
        if puts.contains(&p.key) || any_covers(&dels, &p.key) {
            return Err(EtcdError::DuplicateKey);
        }
        puts.insert(p.key.clone());
    }
    Ok((puts, dels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_op(key: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestPut(PutRequest {
                key: key.into(),
                value: b"v".to_vec(),
                ..Default::default()
            })),
        }
    }

    fn del_op(key: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                key: key.into(),
                range_end: end.into(),
                prev_kv: false,
            })),
        }
    }

    fn txn_of(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
        TxnRequest {
            compare: vec![],
            success,
            failure,
        }
    }

    #[test]
    fn a_key_put_twice_in_one_branch_is_a_duplicate() {
        let t = txn_of(vec![put_op("a"), put_op("a")], vec![]);
        assert_eq!(txn(&t, 128), Err(EtcdError::DuplicateKey));
    }

    #[test]
    fn a_put_inside_a_deleted_range_is_a_duplicate_but_deletes_may_overlap() {
        let t = txn_of(vec![del_op("a", "c"), put_op("b")], vec![]);
        assert_eq!(txn(&t, 128), Err(EtcdError::DuplicateKey));
        let t = txn_of(
            vec![del_op("a", "c"), del_op("b", "d"), put_op("e")],
            vec![],
        );
        assert_eq!(txn(&t, 128), Ok(()));
    }

    #[test]
    fn nested_then_and_else_may_put_the_same_key_but_not_the_parent() {
        let nested = RequestOp {
            request: Some(Request::RequestTxn(txn_of(
                vec![put_op("k")],
                vec![put_op("k")],
            ))),
        };
        assert_eq!(txn(&txn_of(vec![nested.clone()], vec![]), 128), Ok(()));
        let t = txn_of(vec![nested, put_op("k")], vec![]);
        assert_eq!(txn(&t, 128), Err(EtcdError::DuplicateKey));
    }

    #[test]
    fn more_than_max_ops_in_a_branch_is_rejected() {
        let ops: Vec<_> = (0..129).map(|i| put_op(&format!("k{i}"))).collect();
        assert_eq!(txn(&txn_of(ops, vec![]), 128), Err(EtcdError::TooManyOps));
    }

    #[test]
    fn an_empty_operation_is_key_not_found() {
        let t = txn_of(vec![RequestOp { request: None }], vec![]);
        assert_eq!(txn(&t, 128), Err(EtcdError::KeyNotFound));
    }
}
