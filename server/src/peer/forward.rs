//! What a follower hands to its leader: proposals, ReadIndex, lease renewals and time-to-live,
//! and membership changes. Each call finds the current leader, retries while there is none or
//! while leadership moves (bounded by the request deadline), and relays the leader's answer.
//! After a forwarded write or ReadIndex the follower waits until it has applied the entry too,
//! so a client reading from the same member sees its own writes, as with etcd.

use std::time::Duration;

use openraft::error::{CheckIsLeaderError, RaftError};
use tokio::time::Instant;
use tonic::Status;
use tonic::transport::Channel;

use super::is_not_leader;
use crate::api::Member;
use crate::error::EtcdError;
use crate::proto::peerpb::peer_client::PeerClient;
use crate::proto::peerpb::{PeerHeader, ReadIndexRequest};

/// Pause before asking again when there is no leader or it just changed.
const RETRY_PAUSE: Duration = Duration::from_millis(30);

/// Where a request must run.
pub enum Route {
    /// This member leads.
    Local,
    /// Another member leads: a client for it and the header to send.
    Remote(PeerClient<Channel>, Option<PeerHeader>),
}

impl Member {
    /// True while this member is the leader.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.identity.member_id)
    }

    /// True while this member is a learner (a non-voting member catching up).
    pub fn is_learner(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        let config = m.membership_config.membership();
        config.get_node(&self.identity.member_id).is_some()
            && !config.voter_ids().any(|v| v == self.identity.member_id)
    }

    /// Waits (until `deadline`) for a leader and says where requests must go.
    pub async fn route(&self, deadline: Instant) -> Result<Route, EtcdError> {
        loop {
            let target = {
                let m = self.raft.metrics();
                let m = m.borrow();
                m.current_leader.map(|id| {
                    let node = m.membership_config.membership().get_node(&id).cloned();
                    (id, node)
                })
            };
            match target {
                Some((id, _)) if id == self.identity.member_id => return Ok(Route::Local),
                Some((id, Some(node))) => {
                    let client = self.peers.client(&node).map_err(|e| {
                        EtcdError::Internal(format!("oxcd: cannot reach the leader: {e}"))
                    })?;
                    return Ok(Route::Remote(client, self.peers.header(id)));
                }
                _ => {}
            }
            if Instant::now() + RETRY_PAUSE >= deadline {
                return Err(EtcdError::Timeout);
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// Waits (until `deadline`) until this member has applied log index `index`: whichever
    /// learns it first of the state machine's own record and openraft's metrics (which also
    /// see snapshot installations).
    pub async fn wait_applied(&self, index: u64, deadline: Instant) -> Result<(), EtcdError> {
        let left = deadline.saturating_duration_since(Instant::now());
        let wait = self.raft.wait(Some(left));
        let metrics = wait.applied_index_at_least(Some(index), "forwarded request");
        tokio::select! {
            biased;
            () = self.applied.reached(index) => Ok(()),
            waited = metrics => waited.map(|_| ()).map_err(|e| match e {
                openraft::metrics::WaitError::Timeout(..) => EtcdError::Timeout,
                openraft::metrics::WaitError::ShuttingDown => EtcdError::Stopped,
            }),
        }
    }

    /// Waits until this member has applied everything committed before the call (ReadIndex,
    /// asked of the leader when this member follows). Concurrent callers share one ReadIndex
    /// round (`peer::read_index`), as etcd batches its read requests.
    pub async fn linearizable(&self) -> Result<(), EtcdError> {
        // As etcd: a learner serves serializable reads only.
        if self.is_learner() {
            return Err(EtcdError::NotSupportedForLearner);
        }
        let deadline = Instant::now() + super::super::api::REQUEST_TIMEOUT;
        let index = self.reads.read_index().await?;
        self.wait_applied(index, deadline).await
    }

    /// One ReadIndex round: the index a read starting now must wait for, confirmed by the
    /// leader's quorum (here or at the leader).
    pub async fn read_index_round(&self, deadline: Instant) -> Result<u64, EtcdError> {
        loop {
            match self.route(deadline).await? {
                Route::Local => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match tokio::time::timeout(left, self.raft.get_read_log_id()).await {
                        Err(_) => return Err(EtcdError::Timeout),
                        Ok(Ok((read, _))) => return Ok(read.map_or(0, |l| l.index)),
                        Ok(Err(RaftError::Fatal(_))) => return Err(EtcdError::Stopped),
                        // Leadership moved, or a quorum did not confirm it: ask again.
                        Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_))))
                        | Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_)))) => {}
                    }
                }
                Route::Remote(mut client, header) => {
                    let mut req = tonic::Request::new(ReadIndexRequest { header });
                    req.set_timeout(deadline.saturating_duration_since(Instant::now()));
                    match client.read_index(req).await {
                        Ok(reply) => return Ok(reply.into_inner().index),
                        Err(s) if is_not_leader(&s) || retryable(&s) => {}
                        Err(s) => return Err(from_status(&s)),
                    }
                }
            }
            if Instant::now() + RETRY_PAUSE >= deadline {
                return Err(EtcdError::Timeout);
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
}

/// A transport failure worth retrying against the (possibly new) leader.
pub fn retryable(status: &Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::Cancelled | tonic::Code::Unknown
    ) && !status.message().starts_with("etcdserver:")
}

/// The etcd error a leader's answer stands for.
pub fn from_status(status: &Status) -> EtcdError {
    let message = status.message();
    match message {
        m if m == EtcdError::Timeout.to_string() => EtcdError::Timeout,
        m if m == EtcdError::Stopped.to_string() => EtcdError::Stopped,
        m if m == EtcdError::NoLeader.to_string() => EtcdError::NoLeader,
        _ if status.code() == tonic::Code::DeadlineExceeded => EtcdError::Timeout,
        _ => EtcdError::Internal(format!(
            "oxcd: leader answered {}: {message}",
            status.code()
        )),
    }
}
