//! Raft's transport: openraft's messages to other members over the peer gRPC service, encoded
//! with openraft's own serde types; snapshots are streamed from an image file
//! (`peer::transfer`). Connection failures are reported as `Unreachable`, so openraft backs off
//! instead of spinning on a member that is down.
//!
//! A leader tells followers a commit index only as far as its own log is flushed: it counts
//! itself toward the quorum before its flush completes (`raft::log_store`), and a follower that
//! applied an entry the leader then lost in a crash could be asked to truncate it.

use std::future::Future;
use std::sync::Arc;

use openraft::error::{
    Fatal, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed, StreamingError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::storage::Snapshot;
use openraft::{OptionalSend, Vote};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::Code;

use super::snapshot::Snapshots;
use super::types::{LogId, MemberNode, TypeConfig};
use super::watermark::Watermark;
use crate::peer::Peers;
use crate::peer::append_stream::AppendStream;
use crate::proto::peerpb::RaftRequest;

/// Creates peer clients.
#[derive(Clone)]
pub struct PeerNetwork {
    peers: Arc<Peers>,
    snapshots: Arc<Snapshots>,
    flushed: Arc<Watermark>,
}

impl PeerNetwork {
    /// Raft's transport over `peers`, sending snapshots of `snapshots`; commit indexes sent
    /// stay within `flushed`.
    pub fn new(peers: Arc<Peers>, snapshots: Arc<Snapshots>, flushed: Arc<Watermark>) -> Self {
        Self {
            peers,
            snapshots,
            flushed,
        }
    }
}

/// The link to one peer.
pub struct PeerLink {
    target: u64,
    node: MemberNode,
    peers: Arc<Peers>,
    snapshots: Arc<Snapshots>,
    flushed: Arc<Watermark>,
    /// AppendEntries go over one stream (`peer::append_stream`).
    stream: AppendStream,
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerLink;

    async fn new_client(&mut self, target: u64, node: &MemberNode) -> PeerLink {
        PeerLink {
            target,
            node: node.clone(),
            peers: self.peers.clone(),
            snapshots: self.snapshots.clone(),
            flushed: self.flushed.clone(),
            stream: AppendStream::default(),
        }
    }
}

/// The commit index `rpc` may carry when this member's log is flushed up to `flushed`: the
/// leader's, or the highest entry of the message within the flushed part (entries below the
/// leader's commit index are committed too), or none (the next message carries it).
fn flushed_commit(rpc: &AppendEntriesRequest<TypeConfig>, flushed: Option<u64>) -> Option<LogId> {
    let commit = rpc.leader_commit?;
    let flushed = flushed?;
    if commit.index <= flushed {
        return Some(commit);
    }
    rpc.entries
        .iter()
        .rev()
        .map(|e| e.log_id)
        .chain(rpc.prev_log_id)
        .find(|id| id.index <= flushed)
}

/// A transport failure as openraft classifies it: a peer that is down or not listening is
/// unreachable (back off); anything else is a network error (retry).
fn transport_error<E: std::error::Error>(status: &tonic::Status) -> RPCError<u64, MemberNode, E> {
    let err = std::io::Error::other(format!("{}: {}", status.code(), status.message()));
    match status.code() {
        Code::Unavailable | Code::Unknown | Code::Cancelled => {
            RPCError::Unreachable(Unreachable::new(&err))
        }
        _ => RPCError::Network(NetworkError::new(&err)),
    }
}

fn encoding_error<E: std::error::Error>(e: &dyn std::error::Error) -> RPCError<u64, MemberNode, E> {
    RPCError::Network(NetworkError::new(&std::io::Error::other(e.to_string())))
}

impl PeerLink {
    /// Sends an openraft request and decodes the peer's `Result` answer; AppendEntries go
    /// over the stream to the peer when it serves one.
    async fn call<Req, Resp, E>(
        &mut self,
        request: &Req,
        option: &RPCOption,
        vote: bool,
    ) -> Result<Resp, RPCError<u64, MemberNode, E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let payload = postcard::to_stdvec(request).map_err(|e| encoding_error(&e))?;
        let message = RaftRequest {
            header: self.peers.header(self.target),
            payload: payload.into(),
        };
        let streamed = if vote {
            None
        } else {
            // A follower without the stream gets the (cheaply cloned) message as a unary call.
            self.stream
                .call(&self.peers, &self.node, message.clone())
                .await
        };
        let reply = match streamed {
            Some(reply) => reply,
            None => {
                let mut client = self
                    .peers
                    .client(&self.node)
                    .map_err(|e| encoding_error(&e))?;
                let mut req = tonic::Request::new(message);
                req.set_timeout(option.hard_ttl());
                if vote {
                    client.vote(req).await
                } else {
                    client.append_entries(req).await
                }
                .map(tonic::Response::into_inner)
            }
        }
        .map_err(|s| transport_error(&s))?;
        let answer: Result<Resp, E> =
            postcard::from_bytes(&reply.payload).map_err(|e| encoding_error(&e))?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerLink {
    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, MemberNode, RaftError<u64>>> {
        rpc.leader_commit = flushed_commit(&rpc, self.flushed.commit_limit());
        self.call(&rpc, &option, false).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, MemberNode, RaftError<u64>>> {
        self.call(&rpc, &option, true).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote<u64>,
        _offered: Snapshot<TypeConfig>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<u64>, StreamingError<TypeConfig, Fatal<u64>>> {
        // The offered snapshot is the live store; an image of it is made now, at the applied
        // position of this moment, which its metadata then names (see `raft::snapshot`). No
        // deadline: a multi-gigabyte image takes as long as it takes; `cancel` stops it.
        let send = crate::peer::transfer::send(
            &self.peers,
            &self.snapshots,
            self.target,
            &self.node,
            vote,
        );
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            sent = send => sent,
        }
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, Entry, EntryPayload, Vote};

    use super::*;

    fn log_id(index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(2, 1), index)
    }

    fn request(prev: u64, last: u64, commit: u64) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: Vote::new_committed(2, 1),
            prev_log_id: Some(log_id(prev)),
            entries: (prev + 1..=last)
                .map(|i| Entry {
                    log_id: log_id(i),
                    payload: EntryPayload::Blank,
                })
                .collect(),
            leader_commit: Some(log_id(commit)),
        }
    }

    #[test]
    fn followers_learn_a_commit_index_only_as_far_as_the_leader_has_flushed() {
        assert_eq!(flushed_commit(&request(5, 8, 7), Some(9)), Some(log_id(7)));
        assert_eq!(flushed_commit(&request(5, 8, 7), Some(6)), Some(log_id(6)));
        assert_eq!(flushed_commit(&request(5, 8, 7), Some(5)), Some(log_id(5)));
        assert_eq!(flushed_commit(&request(5, 8, 7), Some(4)), None);
        assert_eq!(flushed_commit(&request(5, 8, 7), None), None);
    }
}
