//! Proposal batching: concurrent client requests are gathered into one log entry, so one append,
//! one flush and one apply batch serve them all, the way etcd's raft loop batches proposals.
//!
//! Requests queue while earlier batches are being committed; the batcher takes everything queued
//! (bounded in count and bytes) into the next entry. Each request in a batch is still applied as
//! its own request with its own revision and result, in queue order. A follower batches the
//! same way and hands each batch to the leader (`peer::forward`).

use std::sync::{Arc, Weak};
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::raft::ClientWriteResponse;
use prost::Message;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;

use super::{Member, REQUEST_TIMEOUT};
use crate::error::EtcdError;
use crate::peer::forward::{Route, from_status, retryable};
use crate::peer::is_not_leader;
use crate::proto::peerpb::ProposeRequest;
use crate::proto::raftpb::{RaftBatch, RaftCommand, raft_command};
use crate::raft::{Applied, Command, CommandResult, MemberNode, TypeConfig};

/// Pause before trying again after leadership moved.
const RETRY_PAUSE: Duration = Duration::from_millis(30);

/// Most requests in one log entry.
const MAX_BATCH: usize = 512;
/// Most encoded bytes in one log entry (a single larger request still goes alone).
const MAX_BATCH_BYTES: usize = 4 << 20;
/// Batches submitted to Raft at once. The leader's flush no longer holds up its Raft core, so
/// several batches can be on their way through replication while the next one fills.
const IN_FLIGHT: usize = 4;
/// Requests waiting for a batch before callers wait to enqueue.
const QUEUE: usize = 4096;

type Reply = oneshot::Sender<Result<Applied, EtcdError>>;

struct Pending {
    command: RaftCommand,
    reply: Reply,
}

/// The entry point for proposals; cheap to share.
pub struct Proposer {
    queue: mpsc::Sender<Pending>,
}

impl Proposer {
    /// Starts the batcher of `member` (held weakly: the member owns its proposer).
    pub fn start(member: Weak<Member>) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(batch_loop(member, rx));
        Self { queue }
    }

    /// Proposes `command` and waits for what applying it produced.
    pub async fn propose(&self, command: RaftCommand) -> Result<Applied, EtcdError> {
        let (reply, result) = oneshot::channel();
        self.queue
            .send(Pending { command, reply })
            .await
            .map_err(|_| EtcdError::Stopped)?;
        result.await.map_err(|_| EtcdError::Stopped)?
    }
}

fn drain(rx: &mut mpsc::Receiver<Pending>, batch: &mut Vec<Pending>, bytes: &mut usize) {
    while batch.len() < MAX_BATCH && *bytes < MAX_BATCH_BYTES {
        match rx.try_recv() {
            Ok(p) => {
                *bytes += p.command.encoded_len();
                batch.push(p);
            }
            Err(_) => break,
        }
    }
}

async fn batch_loop(member: Weak<Member>, mut rx: mpsc::Receiver<Pending>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        let mut bytes = first.command.encoded_len();
        let mut batch = vec![first];
        drain(&mut rx, &mut batch, &mut bytes);
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        // Whatever arrived while waiting for a slot joins this batch.
        drain(&mut rx, &mut batch, &mut bytes);
        let Some(member) = member.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            submit(&member, batch).await;
            drop(slot);
        });
    }
}

/// Commits `command` through the leader (this member or the one it follows) and returns what
/// applying it produced; retries only where the entry cannot have been appended.
async fn commit(member: &Member, command: RaftCommand) -> Result<Applied, EtcdError> {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    loop {
        match member.route(deadline).await? {
            Route::Local => match write_locally(member, &command).await {
                Ok(r) => return r.data.0,
                // Not the leader when it was submitted: nothing was appended.
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {}
                Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                    return Err(EtcdError::Internal(format!("oxcd: {e}")));
                }
                Err(RaftError::Fatal(_)) => return Err(EtcdError::Stopped),
            },
            Route::Remote(mut client, header) => {
                let mut req = tonic::Request::new(ProposeRequest {
                    header,
                    command: Some(command.clone()),
                });
                req.set_timeout(deadline.saturating_duration_since(Instant::now()));
                match client.propose(req).await {
                    Ok(reply) => {
                        let reply = reply.into_inner();
                        // Answer once this member has applied it too (read-your-writes here).
                        member.wait_applied(reply.index, deadline).await?;
                        let result = CommandResult::from_proto(reply.result.unwrap_or_default())
                            .map_err(|e| EtcdError::Internal(format!("oxcd: {e}")))?;
                        return result.0;
                    }
                    Err(s) if is_not_leader(&s) => {}
                    // The leader may or may not have appended it: the client must decide.
                    Err(s) if s.code() == tonic::Code::Unavailable && retryable(&s) => {
                        return Err(EtcdError::LeaderChanged);
                    }
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

/// Appends `command` to this member's log (it leads) and waits for it to apply.
async fn write_locally(
    member: &Member,
    command: &RaftCommand,
) -> Result<ClientWriteResponse<TypeConfig>, RaftError<u64, ClientWriteError<u64, MemberNode>>> {
    let _permit = member.leadership.append_permit().await;
    member.raft.client_write(Command(command.clone())).await
}

async fn submit(member: &Member, mut batch: Vec<Pending>) {
    if batch.len() == 1 {
        if let Some(one) = batch.pop() {
            let _ = one.reply.send(commit(member, one.command).await);
        }
        return;
    }
    let (commands, replies): (Vec<RaftCommand>, Vec<Reply>) =
        batch.into_iter().map(|p| (p.command, p.reply)).unzip();
    let entry = RaftCommand {
        command: Some(raft_command::Command::Batch(RaftBatch { commands })),
    };
    match commit(member, entry).await {
        Ok(Applied::Batch(results)) if results.len() == replies.len() => {
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(result.0);
            }
        }
        Ok(other) => {
            let e = EtcdError::Internal(format!("oxcd: unexpected batch result {other:?}"));
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}
