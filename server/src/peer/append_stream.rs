//! AppendEntries over one long-lived gRPC stream per leader and follower.
//!
//! A unary call per message costs a new HTTP/2 stream (headers both ways), a hop through
//! tonic's channel buffer task on the leader and a newly spawned handler task on the follower;
//! at one write in flight that is a good part of the replication round trip. openraft sends a
//! follower one AppendEntries at a time and waits for its answer, so one bidirectional stream
//! carries them in order, one reply per request.
//!
//! A stream whose call was abandoned (openraft's timeout drops the future mid-way) could hand
//! the stale reply to the next request, so the stream is taken out of the link for the duration
//! of each call and put back only after its reply arrived: an interrupted stream is dropped and
//! the next call opens a new one. A member without the method (an older version during a
//! rolling upgrade) answers UNIMPLEMENTED, and the link falls back to unary calls.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use openraft::raft::AppendEntriesRequest;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, Streaming};

use super::Peers;
use crate::api::Member;
use crate::proto::peerpb::{RaftReply, RaftRequest};
use crate::raft::{MemberNode, TypeConfig};

/// The replies a follower streams back to its leader.
pub type ReplyStream = Pin<Box<dyn Stream<Item = Result<RaftReply, Status>> + Send>>;

/// An open stream to one follower.
struct Open {
    requests: mpsc::Sender<RaftRequest>,
    replies: Streaming<RaftReply>,
}

/// The leader's end of the AppendEntries stream to one follower.
#[derive(Default)]
pub struct AppendStream {
    open: Option<Open>,
    /// The follower does not serve the stream: use unary calls.
    unsupported: bool,
}

impl AppendStream {
    /// Sends `request` to `node` and waits for its reply, on the open stream or a new one.
    /// `None` when the follower does not serve streams (send it as a unary call instead).
    pub async fn call(
        &mut self,
        peers: &Peers,
        node: &MemberNode,
        request: RaftRequest,
    ) -> Option<Result<RaftReply, Status>> {
        if self.unsupported {
            return None;
        }
        // Taken out until the reply arrives: if this future is dropped mid-way, the stream
        // goes with it (see the module documentation).
        let mut open = match self.open.take() {
            Some(open) => match open.requests.send(request).await {
                Ok(()) => open,
                // The stream ended (the follower restarted, say): open a new one.
                Err(mpsc::error::SendError(request)) => {
                    match self.connect_or_fall_back(peers, node, request).await? {
                        Ok(open) => open,
                        Err(status) => return Some(Err(status)),
                    }
                }
            },
            None => match self.connect_or_fall_back(peers, node, request).await? {
                Ok(open) => open,
                Err(status) => return Some(Err(status)),
            },
        };
        let reply = match open.replies.message().await {
            Ok(Some(reply)) => reply,
            Ok(None) => return Some(Err(Status::unavailable("oxcd: append stream ended"))),
            Err(status) => return Some(Err(status)),
        };
        self.open = Some(open);
        Some(Ok(reply))
    }

    /// Opens a stream to `node` whose first message is `first`; `None` (and unary calls from
    /// now on) when the follower does not serve streams.
    async fn connect_or_fall_back(
        &mut self,
        peers: &Peers,
        node: &MemberNode,
        first: RaftRequest,
    ) -> Option<Result<Open, Status>> {
        match Self::connect(peers, node, first).await {
            Err(status) if status.code() == Code::Unimplemented => {
                self.unsupported = true;
                None
            }
            opened => Some(opened),
        }
    }

    /// Opens a stream to `node` whose first message is `first`.
    async fn connect(peers: &Peers, node: &MemberNode, first: RaftRequest) -> Result<Open, Status> {
        let mut client = peers
            .client(node)
            .map_err(|e| Status::unavailable(e.to_string()))?;
        // One message in flight at a time; room for one more keeps a send from waiting.
        let (requests, rx) = mpsc::channel(2);
        // Queued before the call, so it travels with the stream's headers.
        requests
            .send(first)
            .await
            .map_err(|_| Status::internal("oxcd: append stream closed"))?;
        let replies = client
            .append_entries_stream(ReceiverStream::new(rx))
            .await?
            .into_inner();
        Ok(Open { requests, replies })
    }
}

/// The follower's end: answers each AppendEntries of the stream in order, until the leader
/// closes it, sends something this member refuses, or `stop` turns true (a long-lived stream
/// would otherwise hold the member's graceful shutdown open).
pub fn serve(
    member: Arc<Member>,
    mut incoming: Streaming<RaftRequest>,
    mut stop: watch::Receiver<bool>,
) -> ReplyStream {
    Box::pin(async_stream::try_stream! {
        loop {
            let request = tokio::select! {
                next = incoming.message() => next,
                _ = stop.wait_for(|s| *s) => Ok(None),
            };
            let Some(request) = request? else { break };
            super::service::check_header(&member, request.header.as_ref())?;
            let rpc: AppendEntriesRequest<TypeConfig> = super::service::decode(&request.payload)?;
            let answer = member.raft.append_entries(rpc).await;
            yield RaftReply {
                payload: super::service::encode(&answer)?,
            };
        }
    })
}
