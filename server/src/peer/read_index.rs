//! Batched ReadIndex: every linearizable read needs the leader to confirm, with a quorum, that it
//! still leads (openraft sends a round of heartbeats per request). Reads that arrive while a
//! round is running wait for the next one and then share it, so a burst of reads costs one
//! round, as etcd batches its read requests. A read never uses a round that started before it
//! did: that is what keeps it linearizable.

use std::sync::Weak;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::api::{Member, REQUEST_TIMEOUT};
use crate::error::EtcdError;

type Waiter = oneshot::Sender<Result<u64, EtcdError>>;

/// Reads waiting for a ReadIndex round.
pub struct ReadIndexBatcher {
    queue: mpsc::UnboundedSender<Waiter>,
}

impl ReadIndexBatcher {
    /// Starts the round loop of `member` (held weakly: the member owns its batcher).
    pub fn start(member: Weak<Member>) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(rounds(member, rx));
        Self { queue }
    }

    /// The read index for a read starting now.
    pub async fn read_index(&self) -> Result<u64, EtcdError> {
        let (tx, rx) = oneshot::channel();
        self.queue.send(tx).map_err(|_| EtcdError::Stopped)?;
        rx.await.map_err(|_| EtcdError::Stopped)?
    }
}

async fn rounds(member: Weak<Member>, mut rx: mpsc::UnboundedReceiver<Waiter>) {
    while let Some(first) = rx.recv().await {
        // Everyone queued now started before this round does.
        let mut waiters = vec![first];
        while let Ok(w) = rx.try_recv() {
            waiters.push(w);
        }
        let Some(member) = member.upgrade() else {
            return;
        };
        let result = member
            .read_index_round(Instant::now() + REQUEST_TIMEOUT)
            .await;
        for waiter in waiters {
            let _ = waiter.send(result.clone());
        }
    }
}
