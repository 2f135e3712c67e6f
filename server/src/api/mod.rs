//! The etcd v3 gRPC services, one module per service, over one shared [`Member`] context.

pub mod cluster;
pub mod downgrade;
pub mod grpc_status;
pub mod kv;
pub mod leadership;
pub mod lease;
pub mod maintenance;
pub mod membership;
pub mod move_leader;
pub mod proposer;
pub mod quota;
pub mod unimplemented;
pub mod watch;

use std::sync::Arc;
use std::time::Duration;

use prost::Message;

use crate::datadir::Identity;
use crate::error::EtcdError;
use crate::mvcc::MvccStore;
use crate::mvcc::watch_hub::WatchHub;
use crate::proto::etcdserverpb::{self, ResponseHeader};
use crate::proto::raftpb::{RaftCommand, raft_command};
use crate::raft::{Applied, OxRaft};
use crate::storage::Engine;

/// gRPC framing allowance on top of `--max-request-bytes`, as etcd grants.
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// How long a proposal may wait for the log before the client hears etcd's timeout.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(7);

/// Request limits from the flags.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `--max-request-bytes`.
    pub max_request_bytes: usize,
    /// `--max-txn-ops`.
    pub max_txn_ops: usize,
    /// Effective `--quota-backend-bytes`.
    pub quota_bytes: i64,
    /// Shortest lease TTL granted, in seconds (etcd: 1.5 election timeouts, rounded up).
    pub min_lease_ttl: i64,
}

/// Everything the services share: this member's Raft node, store and identity.
pub struct Member {
    /// The Raft node.
    pub raft: OxRaft,
    /// What the state machine has applied, announced before openraft's metrics learn it.
    pub applied: Arc<crate::raft::watermark::AppliedIndex>,
    /// The multi-version store.
    pub store: Arc<MvccStore>,
    /// The storage engine under the store.
    pub engine: Arc<dyn Engine>,
    /// Where applied revisions are announced to watchers.
    pub hub: Arc<WatchHub>,
    /// Ids recorded in the data dir.
    pub identity: Identity,
    /// Request limits.
    pub limits: Limits,
    /// Batches proposals into log entries.
    pub proposer: proposer::Proposer,
    /// Prometheus metrics the request path updates.
    pub metrics: Arc<crate::http::Metrics>,
    /// Channels to the other members.
    pub peers: Arc<crate::peer::Peers>,
    /// Makes and installs snapshots of the store.
    pub snapshots: Arc<crate::raft::snapshot::Snapshots>,
    /// `--name` and the client URLs this member announces to the cluster.
    pub announced: crate::proto::etcdserverpb::Member,
    /// `--max-learners`.
    pub max_learners: usize,
    /// `--election-timeout`.
    pub election_timeout: Duration,
    /// Check-quorum and lease-promotion state.
    pub leadership: leadership::LeaderState,
    /// Shares ReadIndex rounds between concurrent linearizable reads.
    pub reads: crate::peer::read_index::ReadIndexBatcher,
    /// The oxcd release version this member advertises (`version`).
    pub server_version: crate::version::Version,
}

impl Member {
    /// A response header at `revision` with this member's ids and the current term.
    pub fn header(&self, revision: i64) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            cluster_id: self.identity.cluster_id,
            member_id: self.identity.member_id,
            revision,
            raft_term: self.raft.metrics().borrow().current_term,
        })
    }

    /// Completes a header produced by the store (which knows only the revision).
    pub fn fill(&self, header: &mut Option<ResponseHeader>) {
        let revision = match header {
            Some(h) if h.revision != 0 => h.revision,
            _ => self.store_rev(),
        };
        *header = self.header(revision);
    }

    fn store_rev(&self) -> i64 {
        crate::mvcc::KvRead::rev(self.store.as_ref())
    }

    /// Sends a mutating request through the log (batched with concurrent ones) and returns
    /// what applying it produced.
    pub async fn propose(&self, command: raft_command::Command) -> Result<Applied, EtcdError> {
        let command = RaftCommand {
            command: Some(command),
        };
        if self.is_learner() {
            return Err(EtcdError::NotSupportedForLearner);
        }
        if command.encoded_len() > self.limits.max_request_bytes {
            return Err(EtcdError::RequestTooLarge);
        }
        let _pending = self.metrics.proposal_pending();
        let outcome = tokio::time::timeout(REQUEST_TIMEOUT, self.proposer.propose(command)).await;
        if !matches!(outcome, Ok(Ok(_))) {
            self.metrics.proposal_failed();
        }
        outcome.map_err(|_| EtcdError::Timeout)?
    }
}

/// A response type that a log entry's [`Applied`] outcome carries.
pub trait FromApplied: Sized {
    /// The response, when `applied` is this type's variant.
    fn from_applied(applied: Applied) -> Option<Self>;
    /// The response's header, for [`Member::fill`].
    fn header_mut(&mut self) -> &mut Option<ResponseHeader>;
}

macro_rules! from_applied {
    ($($variant:ident => $response:ty),* $(,)?) => {$(
        impl FromApplied for $response {
            fn from_applied(applied: Applied) -> Option<Self> {
                match applied {
                    Applied::$variant(r) => Some(r),
                    _ => None,
                }
            }
            fn header_mut(&mut self) -> &mut Option<ResponseHeader> {
                &mut self.header
            }
        }
    )*};
}

from_applied!(
    Put => etcdserverpb::PutResponse,
    DeleteRange => etcdserverpb::DeleteRangeResponse,
    Txn => etcdserverpb::TxnResponse,
    Compaction => etcdserverpb::CompactionResponse,
    LeaseGrant => etcdserverpb::LeaseGrantResponse,
    LeaseRevoke => etcdserverpb::LeaseRevokeResponse,
    Alarm => etcdserverpb::AlarmResponse,
);

impl Member {
    /// Proposes `command` and returns its response with a complete header.
    pub async fn write<T: FromApplied>(
        &self,
        command: raft_command::Command,
    ) -> Result<T, EtcdError> {
        let applied = self.propose(command).await?;
        let what = format!("{applied:?}");
        let mut resp = T::from_applied(applied)
            .ok_or_else(|| EtcdError::Internal(format!("oxcd: unexpected apply result {what}")))?;
        self.fill(resp.header_mut());
        Ok(resp)
    }
}

impl crate::http::MemberProbe for Member {
    fn active_alarms(&self) -> Vec<crate::proto::etcdserverpb::AlarmType> {
        use crate::proto::etcdserverpb::AlarmType;
        self.store
            .alarms(AlarmType::None)
            .iter()
            .filter_map(|a| AlarmType::try_from(a.alarm).ok())
            .collect()
    }

    fn db_size_in_use(&self) -> Option<u64> {
        u64::try_from(self.store.bytes_in_use()).ok()
    }
}
