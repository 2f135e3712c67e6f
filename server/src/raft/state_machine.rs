//! The replicated state machine: applies committed log entries, in order, to the MVCC store.
//!
//! Each `apply` call becomes one atomic engine batch that also records the last applied log id
//! and membership, so after a crash the member resumes exactly after the last entry whose effects
//! are on disk and never re-applies one. The engine is not flushed per apply: the Raft WAL is
//! the durable record, and what a crash took from the store is applied again from it. The
//! durable store is its own snapshot: building one only flushes, so Raft may then purge the log
//! before it.
//!
//! An entry is applied only once this member's copy of the log is flushed up to it: a leader
//! reports its appends to openraft before flushing them (see `raft::log_store`), so without
//! that wait it could answer a client for an entry that a crash would take back.

// openraft's trait methods fix the error type (`openraft::StorageError`, large); helpers
// returning it directly avoid a conversion at every call.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    AnyError, EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder, StorageIOError,
    StoredMembership,
};

use super::snapshot::{SnapshotData, Snapshots};
use super::types::{
    Applied, Command, CommandResult, Entry, LogId, MemberNode, StorageError, TypeConfig,
};
use super::watermark::{AppliedIndex, Watermark};
use crate::error::EtcdError;
use crate::mvcc::watch_hub::{WatchHub, group_by_revision};
use crate::mvcc::{ApplyBatch, KvRead, MvccStore, ops};
use crate::proto::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmResponse, AlarmType, CompactionResponse, LeaseGrantResponse,
    LeaseRevokeResponse, ResponseHeader, alarm_request::AlarmAction,
};
use crate::proto::raftpb::raft_command::Command as Cmd;
use crate::storage::Engine;
use crate::version::state::{META_VERSIONS, VersionState};

/// Where the last applied log id is recorded, in the same batch as the entries' effects.
pub const META_APPLIED: &[u8] = b"m/applied";
/// Where the last applied membership is recorded.
pub const META_MEMBERSHIP: &[u8] = b"m/membership";

type Membership = StoredMembership<u64, MemberNode>;

fn sm_err(verb: ErrorVerb, e: impl std::error::Error + 'static) -> StorageError {
    StorageError::IO {
        source: StorageIOError::new(ErrorSubject::StateMachine, verb, AnyError::new(&e)),
    }
}

/// The state machine of one member; clones share the store.
#[derive(Clone)]
pub struct StateMachine {
    store: Arc<MvccStore>,
    engine: Arc<dyn Engine>,
    hub: Arc<WatchHub>,
    metrics: Arc<crate::http::Metrics>,
    snapshots: Arc<Snapshots>,
    flushed: Arc<Watermark>,
    applied: Arc<AppliedIndex>,
}

impl StateMachine {
    /// A state machine applying to `store`, which lives in `engine`, announcing to `hub`
    /// and `applied`; entries are applied once `flushed` covers them.
    pub fn new(
        store: Arc<MvccStore>,
        engine: Arc<dyn Engine>,
        hub: Arc<WatchHub>,
        metrics: Arc<crate::http::Metrics>,
        snapshots: Arc<Snapshots>,
        (flushed, applied): (Arc<Watermark>, Arc<AppliedIndex>),
    ) -> Self {
        Self {
            store,
            engine,
            hub,
            metrics,
            snapshots,
            flushed,
            applied,
        }
    }

    fn applied(&self) -> Result<(Option<LogId>, Membership), StorageError> {
        let read = |key: &[u8]| {
            self.store
                .get_meta(key)
                .map_err(|e| sm_err(ErrorVerb::Read, e))
        };
        let applied = match read(META_APPLIED)? {
            Some(b) => postcard::from_bytes(&b).map_err(|e| sm_err(ErrorVerb::Read, e))?,
            None => None,
        };
        let membership = match read(META_MEMBERSHIP)? {
            Some(b) => postcard::from_bytes(&b).map_err(|e| sm_err(ErrorVerb::Read, e))?,
            None => Membership::default(),
        };
        Ok((applied, membership))
    }

    /// The snapshot of the state applied so far. The store itself is the snapshot (it is
    /// durable once flushed), so nothing is copied here: an image is written only when a member
    /// must be sent one (`raft::snapshot`).
    fn current_snapshot(&self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let (applied, _) = self.applied()?;
        if applied.is_none() {
            return Ok(None);
        }
        Ok(Some(self.snapshot_of_applied()?))
    }

    /// The snapshot of the store as applied now (empty before the first apply).
    fn snapshot_of_applied(&self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (applied, membership) = self.applied()?;
        let meta = SnapshotMeta {
            last_log_id: applied,
            last_membership: membership,
            snapshot_id: applied.map_or_else(
                || "empty".to_string(),
                |last| format!("{}-{}", last.leader_id, last.index),
            ),
        };
        Ok(Snapshot {
            meta,
            snapshot: Box::new(SnapshotData::Live(self.snapshots.clone())),
        })
    }
}

/// Applies one client command; request errors become the entry's result, not a failure.
/// `versions` is the version record as changed by earlier entries of the same apply call (the
/// batch cannot be read back before it commits).
fn apply_command(
    batch: &mut ApplyBatch<'_>,
    cmd: Command,
    versions: &mut Option<VersionState>,
) -> CommandResult {
    let store = batch.store();
    let lease_exists = |id: i64| store.lease_exists(id);
    // While NOSPACE is raised, writes that add data are refused; deletes and reads still run.
    let capped = store.alarm_raised(AlarmType::Nospace);
    let outcome = match cmd.0.command {
        Some(Cmd::Put(_)) | Some(Cmd::LeaseGrant(_)) if capped => Err(EtcdError::NoSpace),
        Some(Cmd::Txn(t)) if capped && txn_puts(&t) => Err(EtcdError::NoSpace),
        Some(Cmd::Put(p)) => {
            let mut w = batch.request();
            let result = if p.lease != 0 && !lease_exists(p.lease) {
                Err(EtcdError::LeaseNotFound)
            } else {
                ops::put(&mut w, &p)
            };
            w.finish();
            result.map(Applied::Put)
        }
        Some(Cmd::DeleteRange(d)) => {
            let mut w = batch.request();
            let result = ops::delete_range(&mut w, &d);
            w.finish();
            result.map(Applied::DeleteRange)
        }
        Some(Cmd::Txn(t)) => {
            let mut w = batch.request();
            let result = ops::txn(&mut w, &t, &lease_exists);
            w.finish();
            result.map(Applied::Txn)
        }
        Some(Cmd::Compaction(c)) => batch.compact(c.revision).map(|rev| {
            Applied::Compaction(CompactionResponse {
                header: Some(ResponseHeader {
                    revision: rev,
                    ..Default::default()
                }),
            })
        }),
        Some(Cmd::LeaseGrant(g)) => batch.lease_grant(g.id, g.ttl, 0).map(|ttl| {
            Applied::LeaseGrant(LeaseGrantResponse {
                header: Some(ResponseHeader {
                    revision: batch.rev(),
                    ..Default::default()
                }),
                id: g.id,
                ttl,
                error: String::new(),
            })
        }),
        Some(Cmd::LeaseRevoke(r)) => batch.lease_revoke(r.id).map(|rev| {
            Applied::LeaseRevoke(LeaseRevokeResponse {
                header: Some(ResponseHeader {
                    revision: rev,
                    ..Default::default()
                }),
            })
        }),
        Some(Cmd::Alarm(a)) => Ok(Applied::Alarm(apply_alarm(batch, &a))),
        Some(Cmd::Batch(b)) => Ok(Applied::Batch(
            b.commands
                .into_iter()
                .map(|c| apply_command(batch, Command(c), versions))
                .collect(),
        )),
        Some(Cmd::MemberVersion(m)) => update_versions(batch, versions, |s| s.apply_member(&m)),
        Some(Cmd::ClusterVersion(c)) => update_versions(batch, versions, |s| s.apply_cluster(&c)),
        Some(Cmd::Downgrade(d)) => update_versions(batch, versions, |s| s.apply_downgrade(&d)),
        None => Ok(Applied::Nothing),
    };
    CommandResult(outcome)
}

/// Applies a change to the version record, loading it on the first change of this apply call.
fn update_versions(
    batch: &ApplyBatch<'_>,
    versions: &mut Option<VersionState>,
    change: impl FnOnce(&mut VersionState),
) -> Result<Applied, EtcdError> {
    let mut state = match versions.take() {
        Some(s) => s,
        None => crate::version::state::load(batch.store())?,
    };
    change(&mut state);
    *versions = Some(state);
    Ok(Applied::Nothing)
}

/// etcd's quota cost of a Txn is its puts (top-level, in either branch).
fn txn_puts(t: &crate::proto::etcdserverpb::TxnRequest) -> bool {
    use crate::proto::etcdserverpb::request_op::Request;
    t.success
        .iter()
        .chain(&t.failure)
        .any(|op| matches!(op.request, Some(Request::RequestPut(_))))
}

fn apply_alarm(batch: &mut ApplyBatch<'_>, a: &AlarmRequest) -> AlarmResponse {
    let member = AlarmMember {
        member_id: a.member_id,
        alarm: a.alarm,
    };
    let alarms = match AlarmAction::try_from(a.action) {
        Ok(AlarmAction::Activate) if a.alarm != AlarmType::None as i32 => {
            batch.alarm_activate(a.member_id, a.alarm);
            vec![member]
        }
        Ok(AlarmAction::Deactivate) if batch.alarm_deactivate(a.member_id, a.alarm) => vec![member],
        _ => Vec::new(),
    };
    AlarmResponse {
        header: Some(ResponseHeader {
            revision: batch.rev(),
            ..Default::default()
        }),
        alarms,
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        // The store is the snapshot: make it durable so the log before it may be purged. It
        // holds every write since the last snapshot (only the WAL is synced per commit): keep
        // that long flush off the async workers.
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || engine.flush())
            .await
            .map_err(|e| sm_err(ErrorVerb::Write, std::io::Error::other(e.to_string())))?
            .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        self.snapshot_of_applied()
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), StorageError> {
        self.applied()
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        if let Some(last) = entries.last() {
            self.flushed
                .wait_reported(last.log_id.index)
                .await
                .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        }
        let mut batch = self.store.begin_apply();
        let mut results = Vec::with_capacity(entries.len());
        let mut last = None;
        let mut versions = None;
        for entry in entries {
            last = Some(entry.log_id);
            let result = match entry.payload {
                EntryPayload::Blank => CommandResult::default(),
                EntryPayload::Normal(cmd) => apply_command(&mut batch, cmd, &mut versions),
                EntryPayload::Membership(m) => {
                    let stored = Membership::new(Some(entry.log_id), m);
                    let bytes =
                        postcard::to_stdvec(&stored).map_err(|e| sm_err(ErrorVerb::Write, e))?;
                    batch.put_meta(META_MEMBERSHIP, bytes);
                    CommandResult::default()
                }
            };
            results.push(result);
        }
        if let Some(state) = versions {
            let bytes = state.encode().map_err(|e| sm_err(ErrorVerb::Write, e))?;
            batch.put_meta(META_VERSIONS, bytes);
        }
        if last.is_some() {
            let bytes = postcard::to_stdvec(&last).map_err(|e| sm_err(ErrorVerb::Write, e))?;
            batch.put_meta(META_APPLIED, bytes);
        }
        let started = std::time::Instant::now();
        let events = batch.commit().map_err(|e| sm_err(ErrorVerb::Write, e))?;
        self.metrics.observe_backend_commit(started.elapsed());
        self.hub
            .publish(group_by_revision(events), self.store.rev());
        if let Some(last) = last {
            self.applied.advance(last.index);
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotData>, StorageError> {
        // Between members, images arrive whole through the peer service (`peer::transfer`);
        // this is where such an image would be written.
        Ok(Box::new(SnapshotData::Image(
            self.snapshots.incoming_path(),
        )))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, MemberNode>,
        snapshot: Box<SnapshotData>,
    ) -> Result<(), StorageError> {
        let snapshots = self.snapshots.clone();
        let meta = meta.clone();
        // Loading a large image is long blocking I/O: keep it off the async workers.
        tokio::task::spawn_blocking(move || match *snapshot {
            SnapshotData::Image(path) => snapshots.install(&meta, &path),
            // Another store of this process (openraft's storage test suite): copy it through
            // an image file, exactly as a peer's would arrive.
            SnapshotData::Live(source) => {
                let path = snapshots.incoming_path();
                source.export_file(&path)?;
                snapshots.install(&meta, &path)
            }
        })
        .await
        .map_err(|e| sm_err(ErrorVerb::Write, std::io::Error::other(e.to_string())))?
        .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        self.current_snapshot()
    }
}
