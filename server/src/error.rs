//! etcd's client-visible errors: the gRPC code and the exact message etcd sends, because client
//! libraries rebuild their typed errors from that message.

use tonic::{Code, Status};

/// A request failure that etcd reports with a fixed code and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum EtcdError {
    /// The key (or compare key) is empty.
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    /// `ignore_value`/`ignore_lease` on a key that does not exist, or an empty txn op.
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// `ignore_value` together with a value.
    #[error("etcdserver: value is provided")]
    ValueProvided,
    /// `ignore_lease` together with a lease.
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    /// More than the allowed operations in one txn branch.
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    /// A key written twice, or written and deleted, in one txn.
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// Unknown sort order or target.
    #[error("etcdserver: invalid sort option")]
    InvalidSortOption,
    /// The revision asked for was compacted away.
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    /// The revision asked for does not exist yet.
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRev,
    /// The backend quota is exhausted (NOSPACE alarm).
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    /// The encoded request exceeds `--max-request-bytes`.
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    /// The lease named by the request does not exist.
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// A lease with the requested id exists already.
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    /// The requested lease TTL exceeds etcd's maximum.
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    /// The member has no leader.
    #[error("etcdserver: no leader")]
    NoLeader,
    /// The member is shutting down.
    #[error("etcdserver: server stopped")]
    Stopped,
    /// The request did not complete in time.
    #[error("etcdserver: request timed out")]
    Timeout,
    /// An unexpected internal failure (storage, replication); the message says which.
    #[error("{0}")]
    Internal(String),
    // Variants below were added after `Internal`; results in existing logs encode the variant
    // index, so new ones go at the end.
    /// Leadership moved while a forwarded request was in flight; its outcome is unknown.
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    /// No member has the id the request names.
    #[error("etcdserver: member not found")]
    MemberNotFound,
    /// A peer URL of the request is used by another member.
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    /// A peer URL of the request does not parse.
    #[error("etcdserver: given member URLs are invalid")]
    MemberBadUrls,
    /// MemberPromote of a voting member.
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner,
    /// MemberPromote of a learner that has not caught up with the leader.
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    /// MemberAdd of a learner beyond `--max-learners`.
    #[error("etcdserver: too many learner members in cluster")]
    TooManyLearners,
    /// A leader-only request reached a member that does not lead.
    #[error("etcdserver: not leader")]
    NotLeader,
    /// MoveLeader to a member that cannot lead.
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    /// A membership change would leave the cluster without a quorum.
    #[error("etcdserver: unhealthy cluster")]
    Unhealthy,
    /// A learner was asked for something only voting members serve.
    #[error("etcdserver: rpc not supported for learner")]
    NotSupportedForLearner,
    /// Maintenance.Downgrade before the cluster version is decided.
    #[error("etcdserver: cluster version not found during downgrade")]
    ClusterVersionUnavailable,
    /// A downgrade target that is not `major.minor[.patch]`.
    #[error("etcdserver: wrong downgrade target version format")]
    WrongDowngradeVersionFormat,
    /// A downgrade target other than one minor below the cluster version.
    #[error("etcdserver: invalid downgrade target version")]
    InvalidDowngradeTargetVersion,
    /// Downgrade VALIDATE/ENABLE while a downgrade is enabled.
    #[error("etcdserver: cluster has a downgrade job in progress")]
    DowngradeInProcess,
    /// Downgrade CANCEL with no downgrade enabled.
    #[error("etcdserver: no inflight downgrade job")]
    NoInflightDowngrade,
    /// A request whose action etcd does not know (etcd sends it with code Unknown).
    #[error("etcdserver: unknown method")]
    UnknownMethod,
}

impl EtcdError {
    /// The gRPC code etcd uses for this error.
    pub fn code(&self) -> Code {
        match self {
            Self::EmptyKey
            | Self::KeyNotFound
            | Self::ValueProvided
            | Self::LeaseProvided
            | Self::TooManyOps
            | Self::DuplicateKey
            | Self::InvalidSortOption
            | Self::RequestTooLarge => Code::InvalidArgument,
            Self::Compacted | Self::FutureRev | Self::LeaseTtlTooLarge => Code::OutOfRange,
            Self::LeaseExists => Code::FailedPrecondition,
            Self::NoSpace => Code::ResourceExhausted,
            Self::LeaseNotFound => Code::NotFound,
            Self::NoLeader
            | Self::Stopped
            | Self::Timeout
            | Self::LeaderChanged
            | Self::Unhealthy => Code::Unavailable,
            Self::Internal(_) => Code::Internal,
            Self::UnknownMethod => Code::Unknown,
            Self::MemberNotFound => Code::NotFound,
            Self::MemberBadUrls
            | Self::WrongDowngradeVersionFormat
            | Self::InvalidDowngradeTargetVersion => Code::InvalidArgument,
            Self::ClusterVersionUnavailable
            | Self::DowngradeInProcess
            | Self::NoInflightDowngrade => Code::FailedPrecondition,
            Self::PeerUrlExists
            | Self::MemberNotLearner
            | Self::LearnerNotReady
            | Self::TooManyLearners
            | Self::NotLeader
            | Self::BadLeaderTransferee
            | Self::NotSupportedForLearner => Code::FailedPrecondition,
        }
    }
}

impl From<EtcdError> for Status {
    fn from(e: EtcdError) -> Self {
        Status::new(e.code(), e.to_string())
    }
}

impl From<crate::storage::StorageError> for EtcdError {
    fn from(e: crate::storage::StorageError) -> Self {
        Self::Internal(format!("oxcd: {}", crate::error::chain(&e)))
    }
}

/// Renders an error with its sources, for logs and internal-error messages.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compacted_maps_to_out_of_range_with_etcd_message() {
        let status = Status::from(EtcdError::Compacted);
        assert_eq!(status.code(), Code::OutOfRange);
        assert_eq!(
            status.message(),
            "etcdserver: mvcc: required revision has been compacted"
        );
    }

    #[test]
    fn duplicate_key_is_invalid_argument() {
        let status = Status::from(EtcdError::DuplicateKey);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "etcdserver: duplicate key given in txn request"
        );
    }
}
