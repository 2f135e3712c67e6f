//! Proposal batching: concurrent client requests are gathered into one log entry, so one append,
//! one flush and one apply batch serve them all, the way etcd's raft loop batches proposals.
//!
//! Requests queue while earlier batches are being committed; the batcher takes everything queued
//! (bounded in count and bytes) into the next entry. Each request in a batch is still applied as
//! its own request with its own revision and result, in queue order.

use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use prost::Message;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::error::EtcdError;
use crate::proto::raftpb::{RaftBatch, RaftCommand, raft_command};
use crate::raft::{Applied, Command, OxRaft};

/// Most requests in one log entry.
const MAX_BATCH: usize = 512;
/// Most encoded bytes in one log entry (a single larger request still goes alone).
const MAX_BATCH_BYTES: usize = 4 << 20;
/// Batches submitted to Raft at once: one being committed while the next one fills.
const IN_FLIGHT: usize = 2;
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
    /// Starts the batcher for `raft`.
    pub fn start(raft: OxRaft) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(batch_loop(raft, rx));
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

async fn batch_loop(raft: OxRaft, mut rx: mpsc::Receiver<Pending>) {
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
        let raft = raft.clone();
        tokio::spawn(async move {
            submit(&raft, batch).await;
            drop(slot);
        });
    }
}

fn raft_error(e: RaftError<u64, ClientWriteError<u64, crate::raft::MemberNode>>) -> EtcdError {
    match e {
        RaftError::Fatal(_) => EtcdError::Stopped,
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => EtcdError::NoLeader,
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            EtcdError::Internal(format!("oxcd: {e}"))
        }
    }
}

async fn submit(raft: &OxRaft, mut batch: Vec<Pending>) {
    if batch.len() == 1 {
        if let Some(one) = batch.pop() {
            let result = raft.client_write(Command(one.command)).await;
            let _ = one
                .reply
                .send(result.map_err(raft_error).and_then(|r| r.data.0));
        }
        return;
    }
    let (commands, replies): (Vec<RaftCommand>, Vec<Reply>) =
        batch.into_iter().map(|p| (p.command, p.reply)).unzip();
    let entry = RaftCommand {
        command: Some(raft_command::Command::Batch(RaftBatch { commands })),
    };
    match raft
        .client_write(Command(entry))
        .await
        .map_err(raft_error)
        .and_then(|r| r.data.0)
    {
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
