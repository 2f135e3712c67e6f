//! The Maintenance service. Status reports what kube-apiserver and etcdctl read from it; Alarm
//! lists and raises/disarms alarms (`api::quota`); HashKV
//! and Hash hash the store (`mvcc::hash`), Snapshot streams a point-in-time image of it
//! (`snapshot::export`), Defragment does what sled allows, and Downgrade is `api::downgrade`.
//!
//! Defragment: etcd rewrites its bbolt file to return free pages to the filesystem. sled has no
//! online compaction of its files (it reclaims segments itself as it goes), so oxcd's Defragment
//! only flushes everything to disk and answers as etcd does; the size on disk does not shrink.

use std::path::PathBuf;
use std::sync::Arc;

use futures::Stream;
use tonic::{Request, Response, Status};

use super::Member;
use crate::error::EtcdError;
use crate::mvcc::hash;
use crate::proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, AlarmType, DefragmentRequest, DefragmentResponse, DowngradeInfo,
    DowngradeRequest, DowngradeResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse,
    MoveLeaderRequest, MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest,
    StatusResponse, maintenance_server::Maintenance,
};
use crate::snapshot::export;

/// The etcd API version oxcd implements. kube-apiserver parses this and keeps features such as
/// RequestWatchProgress only from 3.5.13 on; oxcd's own version is in `oxcd --version`.
pub const ETCD_API_VERSION: &str = "3.6.0";

/// The stream of a Snapshot call.
type SnapshotStream =
    std::pin::Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

/// The Maintenance service of one member.
pub struct MaintenanceService {
    member: Arc<Member>,
    scratch_dir: PathBuf,
}

impl MaintenanceService {
    /// A Maintenance service over `member`; snapshot images are staged in the system's
    /// temporary directory until [`MaintenanceService::with_scratch_dir`] names another.
    pub fn new(member: Arc<Member>) -> Self {
        Self {
            member,
            scratch_dir: std::env::temp_dir(),
        }
    }

    /// Stages snapshot images in `dir` (best on the data dir's filesystem, which has room for
    /// a copy of the store).
    pub fn with_scratch_dir(mut self, dir: PathBuf) -> Self {
        self.scratch_dir = dir;
        self
    }
}

/// Runs blocking store work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, EtcdError> + Send + 'static,
) -> Result<T, Status> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(Status::from),
        Err(e) => Err(Status::internal(format!(
            "oxcd: maintenance task failed: {e}"
        ))),
    }
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let db_size = self.member.engine.size_on_disk().map_err(EtcdError::from)?;
        let db_size = i64::try_from(db_size).unwrap_or(i64::MAX);
        let metrics = self.member.raft.metrics().borrow().clone();
        let mut errors = Vec::new();
        if metrics.current_leader.is_none() {
            errors.push(EtcdError::NoLeader.to_string());
        }
        errors.extend(
            self.member
                .store
                .alarms(AlarmType::None)
                .iter()
                .map(crate::mvcc::alarm::describe),
        );
        let header = self
            .member
            .header(crate::mvcc::KvRead::rev(self.member.store.as_ref()));
        // Status feeds kube-apiserver's health and size metrics: it answers even if the version
        // record cannot be read (a damaged record stops the member at its next start).
        let downgrade = self.member.versions().ok().and_then(|v| v.downgrade);
        Ok(Response::new(StatusResponse {
            header,
            version: ETCD_API_VERSION.to_string(),
            db_size,
            leader: metrics.current_leader.unwrap_or(0),
            raft_index: metrics.last_log_index.unwrap_or(0),
            raft_term: metrics.current_term,
            raft_applied_index: metrics.last_applied.map(|l| l.index).unwrap_or(0),
            errors,
            // The data in use (what the quota applies to); sled's files are larger.
            db_size_in_use: self.member.store.bytes_in_use().min(db_size),
            is_learner: !metrics
                .membership_config
                .membership()
                .voter_ids()
                .any(|v| v == self.member.identity.member_id),
            storage_version: ETCD_API_VERSION.to_string(),
            db_size_quota: self.member.limits.quota_bytes,
            // In oxcd release versions, as Maintenance.Downgrade takes them (`version`).
            downgrade_info: Some(DowngradeInfo {
                enabled: downgrade.is_some(),
                target_version: downgrade.unwrap_or_default(),
            }),
        }))
    }

    async fn downgrade(
        &self,
        request: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        Ok(Response::new(
            self.member.downgrade(request.into_inner()).await?,
        ))
    }

    async fn move_leader(
        &self,
        request: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        let target = request.get_ref().target_id;
        self.member
            .move_leader(target, self.member.election_timeout)
            .await?;
        let header = self
            .member
            .header(crate::mvcc::KvRead::rev(self.member.store.as_ref()));
        Ok(Response::new(MoveLeaderResponse { header }))
    }

    async fn alarm(
        &self,
        request: Request<AlarmRequest>,
    ) -> Result<Response<AlarmResponse>, Status> {
        Ok(Response::new(
            self.member.alarm(request.into_inner()).await?,
        ))
    }

    async fn hash_kv(
        &self,
        request: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        let revision = request.into_inner().revision;
        let store = self.member.store.clone();
        let (h, current) = blocking(move || {
            store.read_frozen(|ks, current, compact| {
                hash::hash_kv(ks, current, compact, revision).map(|h| (h, current))
            })
        })
        .await?;
        Ok(Response::new(HashKvResponse {
            header: self.member.header(current),
            hash: h.hash,
            compact_revision: h.compact_revision,
            hash_revision: h.revision,
        }))
    }

    async fn hash(&self, _: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        let store = self.member.store.clone();
        let (h, current) = blocking(move || {
            store.read_frozen(|ks, current, _| {
                hash::hash_store(ks)
                    .map(|h| (h, current))
                    .map_err(EtcdError::from)
            })
        })
        .await?;
        Ok(Response::new(HashResponse {
            header: self.member.header(current),
            hash: h,
        }))
    }

    async fn defragment(
        &self,
        _: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        tracing::info!("starting defragment (sled: flush only)");
        let engine = self.member.engine.clone();
        blocking(move || engine.flush().map_err(EtcdError::from)).await?;
        tracing::info!("finished defragment");
        Ok(Response::new(DefragmentResponse { header: None }))
    }

    async fn snapshot(
        &self,
        _: Request<SnapshotRequest>,
    ) -> Result<Response<SnapshotStream>, Status> {
        let store = self.member.store.clone();
        let scratch = self.scratch_dir.clone();
        let exported = blocking(move || {
            export::write_image(&store, &scratch, ETCD_API_VERSION)
                .map_err(|e| EtcdError::Internal(format!("oxcd: {}", crate::error::chain(&e))))
        })
        .await?;
        tracing::info!(
            total_bytes = exported.content_len,
            revision = exported.header.revision,
            "sending database snapshot to client"
        );
        let stream = export::stream(exported, ETCD_API_VERSION.to_string());
        Ok(Response::new(Box::pin(stream)))
    }
}
