//! etcd's request semantics on top of the store: Range (filters, sort, limit), Put, DeleteRange
//! and Txn (compares, nested branches), returning the exact response shapes etcd returns,
//! including the revisions inside nested responses.

use std::cmp::Ordering;

use super::index::RangeEnd;
use super::store::{KvRead, KvWrite, RangeOptions};
use crate::error::EtcdError;
use crate::proto::etcdserverpb::{
    Compare, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest,
    RangeResponse, RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse, compare,
    range_request::{SortOrder, SortTarget},
    request_op::Request,
    response_op::Response,
};
use crate::proto::mvccpb::KeyValue;

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

/// Serves a Range request from `view` with etcd's filtering, sorting and limit rules.
pub fn range(view: &impl KvRead, r: &RangeRequest) -> Result<RangeResponse, EtcdError> {
    let filtered = r.sort_order != SortOrder::None as i32
        || r.min_mod_revision != 0
        || r.max_mod_revision != 0
        || r.min_create_revision != 0
        || r.max_create_revision != 0;
    // One extra key tells whether there are more; filters and sorting need every key.
    let limit = if filtered || r.limit <= 0 {
        0
    } else {
        r.limit.saturating_add(1)
    };
    let opts = RangeOptions {
        limit: usize::try_from(limit).unwrap_or(usize::MAX),
        rev: r.revision,
        count_only: r.count_only,
    };
    let mut rr = view.range(&r.key, &RangeEnd::from_request(&r.range_end), opts)?;
    let keep = |kv: &KeyValue| {
        (r.max_mod_revision == 0 || kv.mod_revision <= r.max_mod_revision)
            && (r.min_mod_revision == 0 || kv.mod_revision >= r.min_mod_revision)
            && (r.max_create_revision == 0 || kv.create_revision <= r.max_create_revision)
            && (r.min_create_revision == 0 || kv.create_revision >= r.min_create_revision)
    };
    rr.kvs.retain(keep);

    let target = SortTarget::try_from(r.sort_target).unwrap_or(SortTarget::Key);
    let mut order = SortOrder::try_from(r.sort_order).unwrap_or(SortOrder::None);
    // The store returns keys ascending, so KEY/ASCEND needs no sort and any other target
    // without an order sorts ascending.
    if target != SortTarget::Key && order == SortOrder::None {
        order = SortOrder::Ascend;
    } else if target == SortTarget::Key && order == SortOrder::Ascend {
        order = SortOrder::None;
    }
    if order != SortOrder::None {
        let cmp = |a: &KeyValue, b: &KeyValue| -> Ordering {
            match target {
                SortTarget::Key => a.key.cmp(&b.key),
                SortTarget::Version => a.version.cmp(&b.version),
                SortTarget::Create => a.create_revision.cmp(&b.create_revision),
                SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
                SortTarget::Value => a.value.cmp(&b.value),
            }
        };
        if order == SortOrder::Descend {
            rr.kvs.sort_by(|a, b| cmp(b, a));
        } else {
            rr.kvs.sort_by(cmp);
        }
    }

    let mut more = false;
    if let Ok(limit) = usize::try_from(r.limit)
        && limit > 0
        && rr.kvs.len() > limit
    {
        rr.kvs.truncate(limit);
        more = true;
    }
    if r.keys_only {
        for kv in &mut rr.kvs {
            kv.value.clear();
        }
    }
    Ok(RangeResponse {
        header: header(rr.rev),
        kvs: rr.kvs,
        more,
        count: rr.count,
    })
}

fn current(view: &impl KvRead, key: &[u8]) -> Result<Option<KeyValue>, EtcdError> {
    let rr = view.range(key, &RangeEnd::Single, RangeOptions::default())?;
    Ok(rr.kvs.into_iter().next())
}

/// Applies a Put (already validated against the lessor) inside `w`.
pub fn put(w: &mut impl KvWrite, p: &PutRequest) -> Result<PutResponse, EtcdError> {
    let prev = if p.ignore_value || p.ignore_lease || p.prev_kv {
        current(w, &p.key)?
    } else {
        None
    };
    if (p.ignore_value || p.ignore_lease) && prev.is_none() {
        return Err(EtcdError::KeyNotFound);
    }
    let value = match (&prev, p.ignore_value) {
        (Some(prev), true) => prev.value.clone(),
        _ => p.value.clone(),
    };
    let lease = match (&prev, p.ignore_lease) {
        (Some(prev), true) => prev.lease,
        _ => p.lease,
    };
    let rev = w.put(&p.key, value, lease)?;
    Ok(PutResponse {
        header: header(rev),
        prev_kv: if p.prev_kv { prev } else { None },
    })
}

/// Applies a DeleteRange inside `w`.
pub fn delete_range(
    w: &mut impl KvWrite,
    d: &DeleteRangeRequest,
) -> Result<DeleteRangeResponse, EtcdError> {
    let end = RangeEnd::from_request(&d.range_end);
    let prev_kvs = if d.prev_kv {
        w.range(&d.key, &end, RangeOptions::default())?.kvs
    } else {
        Vec::new()
    };
    let (deleted, rev) = w.delete_range(&d.key, &end)?;
    Ok(DeleteRangeResponse {
        header: header(rev),
        deleted,
        prev_kvs,
    })
}

fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    use compare::{CompareResult, CompareTarget, TargetUnion};
    let target = CompareTarget::try_from(c.target).unwrap_or(CompareTarget::Version);
    let int = |v: i64, want: Option<i64>| v.cmp(&want.unwrap_or(0));
    let ord = match target {
        CompareTarget::Value => {
            let want: &[u8] = match &c.target_union {
                Some(TargetUnion::Value(v)) => v,
                _ => &[],
            };
            kv.value.as_slice().cmp(want)
        }
        CompareTarget::Create => int(
            kv.create_revision,
            match c.target_union {
                Some(TargetUnion::CreateRevision(v)) => Some(v),
                _ => None,
            },
        ),
        CompareTarget::Mod => int(
            kv.mod_revision,
            match c.target_union {
                Some(TargetUnion::ModRevision(v)) => Some(v),
                _ => None,
            },
        ),
        CompareTarget::Version => int(
            kv.version,
            match c.target_union {
                Some(TargetUnion::Version(v)) => Some(v),
                _ => None,
            },
        ),
        CompareTarget::Lease => int(
            kv.lease,
            match c.target_union {
                Some(TargetUnion::Lease(v)) => Some(v),
                _ => None,
            },
        ),
    };
    match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => ord == Ordering::Equal,
        Ok(CompareResult::NotEqual) => ord != Ordering::Equal,
        Ok(CompareResult::Greater) => ord == Ordering::Greater,
        Ok(CompareResult::Less) => ord == Ordering::Less,
        Err(_) => true,
    }
}

fn compare_holds(view: &impl KvRead, c: &Compare) -> bool {
    let Ok(rr) = view.range(
        &c.key,
        &RangeEnd::from_request(&c.range_end),
        RangeOptions::default(),
    ) else {
        return false;
    };
    if rr.kvs.is_empty() {
        return c.target != compare::CompareTarget::Value as i32
            && compare_kv(c, &KeyValue::default());
    }
    rr.kvs.iter().all(|kv| compare_kv(c, kv))
}

/// The branch a Txn (and each nested Txn on the taken path) takes, evaluated before any write.
fn txn_path(view: &impl KvRead, t: &TxnRequest, path: &mut Vec<bool>) {
    let succeeded = t.compare.iter().all(|c| compare_holds(view, c));
    path.push(succeeded);
    let ops = if succeeded { &t.success } else { &t.failure };
    for op in ops {
        if let Some(Request::RequestTxn(nested)) = &op.request {
            txn_path(view, nested, path);
        }
    }
}

/// Checks, before writing anything, what etcd checks against the store: read revisions in range
/// and Put's key/lease preconditions. `lease_exists` answers for the lessor.
fn check_path(
    view: &impl KvRead,
    t: &TxnRequest,
    path: &mut std::slice::Iter<'_, bool>,
    lease_exists: &dyn Fn(i64) -> bool,
) -> Result<(), EtcdError> {
    let ops = if path.next().copied().unwrap_or(false) {
        &t.success
    } else {
        &t.failure
    };
    for op in ops {
        match &op.request {
            Some(Request::RequestRange(r)) => {
                if r.revision != 0 {
                    if r.revision > view.rev() {
                        return Err(EtcdError::FutureRev);
                    }
                    if r.revision < view.compact_rev() {
                        return Err(EtcdError::Compacted);
                    }
                }
            }
            Some(Request::RequestPut(p)) => check_put(view, p, lease_exists)?,
            Some(Request::RequestTxn(nested)) => check_path(view, nested, path, lease_exists)?,
            Some(Request::RequestDeleteRange(_)) | None => {}
        }
    }
    Ok(())
}

/// Put's preconditions that depend on the store: the key for ignore_* and the lease.
pub fn check_put(
    view: &impl KvRead,
    p: &PutRequest,
    lease_exists: &dyn Fn(i64) -> bool,
) -> Result<(), EtcdError> {
    if (p.ignore_value || p.ignore_lease) && current(view, &p.key)?.is_none() {
        return Err(EtcdError::KeyNotFound);
    }
    if p.lease != 0 && !lease_exists(p.lease) {
        return Err(EtcdError::LeaseNotFound);
    }
    Ok(())
}

/// Applies a (validated) Txn inside `w`.
pub fn txn(
    w: &mut impl KvWrite,
    t: &TxnRequest,
    lease_exists: &dyn Fn(i64) -> bool,
) -> Result<TxnResponse, EtcdError> {
    let mut path = Vec::new();
    txn_path(w, t, &mut path);
    check_path(w, t, &mut path.iter(), lease_exists)?;
    let mut resp = execute(w, t, &mut path.iter())?;
    resp.header = header(w.rev());
    Ok(resp)
}

fn execute(
    w: &mut impl KvWrite,
    t: &TxnRequest,
    path: &mut std::slice::Iter<'_, bool>,
) -> Result<TxnResponse, EtcdError> {
    let succeeded = path.next().copied().unwrap_or(false);
    let ops: &[RequestOp] = if succeeded { &t.success } else { &t.failure };
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        let response = match &op.request {
            Some(Request::RequestRange(r)) => Some(Response::ResponseRange(range(w, r)?)),
            Some(Request::RequestPut(p)) => Some(Response::ResponsePut(put(w, p)?)),
            Some(Request::RequestDeleteRange(d)) => {
                Some(Response::ResponseDeleteRange(delete_range(w, d)?))
            }
            Some(Request::RequestTxn(nested)) => {
                let mut inner = execute(w, nested, path)?;
                inner.header = Some(ResponseHeader::default());
                Some(Response::ResponseTxn(inner))
            }
            None => None,
        };
        responses.push(ResponseOp { response });
    }
    Ok(TxnResponse {
        header: None,
        succeeded,
        responses,
    })
}
