//! Raft's transport: openraft's messages to other members over the peer gRPC service, encoded
//! with openraft's own serde types; snapshots are streamed from an image file
//! (`peer::transfer`). Connection failures are reported as `Unreachable`, so openraft backs off
//! instead of spinning on a member that is down.

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
use super::types::{MemberNode, TypeConfig};
use crate::peer::Peers;
use crate::proto::peerpb::RaftRequest;

/// Creates peer clients.
#[derive(Clone)]
pub struct PeerNetwork {
    peers: Arc<Peers>,
    snapshots: Arc<Snapshots>,
}

impl PeerNetwork {
    /// Raft's transport over `peers`, sending snapshots of `snapshots`.
    pub fn new(peers: Arc<Peers>, snapshots: Arc<Snapshots>) -> Self {
        Self { peers, snapshots }
    }
}

/// The link to one peer.
pub struct PeerLink {
    target: u64,
    node: MemberNode,
    peers: Arc<Peers>,
    snapshots: Arc<Snapshots>,
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerLink;

    async fn new_client(&mut self, target: u64, node: &MemberNode) -> PeerLink {
        PeerLink {
            target,
            node: node.clone(),
            peers: self.peers.clone(),
            snapshots: self.snapshots.clone(),
        }
    }
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
    /// Sends an openraft request and decodes the peer's `Result` answer.
    async fn call<Req, Resp, E>(
        &self,
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
        let mut client = self
            .peers
            .client(&self.node)
            .map_err(|e| encoding_error(&e))?;
        let mut req = tonic::Request::new(RaftRequest {
            header: self.peers.header(self.target),
            payload,
        });
        req.set_timeout(option.hard_ttl());
        let reply = if vote {
            client.vote(req).await
        } else {
            client.append_entries(req).await
        }
        .map_err(|s| transport_error(&s))?
        .into_inner();
        let answer: Result<Resp, E> =
            postcard::from_bytes(&reply.payload).map_err(|e| encoding_error(&e))?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerLink {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, MemberNode, RaftError<u64>>> {
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
