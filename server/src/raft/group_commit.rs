//! The leader's group commit: a thread that syncs the WAL once for every run of queued
//! appends and records each flush in the [`Watermark`] (see `raft::log_store` for why the
//! leader's appends are reported before they are flushed).

use std::sync::{Arc, mpsc};

use super::wal::{Wal, WalError};
use super::watermark::Watermark;

/// The handle of the flusher thread; clones queue to the same thread, which ends when the last
/// clone is dropped.
#[derive(Clone)]
pub(super) struct Flusher {
    tx: mpsc::Sender<Flush>,
}

/// The flusher thread has stopped (it only does when its handles are gone or it panicked).
#[derive(Debug, thiserror::Error)]
#[error("the raft log flusher stopped")]
pub(super) struct Stopped;

impl Flusher {
    /// Starts the flusher thread of `wal`, which records every flush in `watermark`.
    pub(super) fn start(
        wal: Arc<Wal>,
        watermark: Arc<Watermark>,
        metrics: Arc<crate::http::Metrics>,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Flush>();
        std::thread::Builder::new()
            .name("oxcd-log-flush".into())
            .spawn(move || group_commit(&wal, &watermark, &metrics, &rx))?;
        Ok(Self { tx })
    }

    /// Queues a flush of the entries written up to `index` (already reported to openraft).
    pub(super) fn queue(&self, index: u64) -> Result<(), Stopped> {
        self.tx.send(Flush::Append(index)).map_err(|_| Stopped)
    }

    /// Waits until every flush queued before has been done (or has failed: the watermark
    /// tells which).
    pub(super) fn wait_queued(&self) -> Result<(), Stopped> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.tx.send(Flush::Barrier(tx)).map_err(|_| Stopped)?;
        rx.recv().map_err(|_| Stopped)
    }
}

/// Work for the flusher thread.
enum Flush {
    /// The leader's own entries up to this index were written (and already reported).
    Append(u64),
    /// Answer once everything queued before has been flushed.
    Barrier(mpsc::SyncSender<()>),
}

/// Syncs the WAL, so every entry written up to `index` is durable, and records it.
pub(super) fn flush_upto(
    wal: &Wal,
    watermark: &Watermark,
    metrics: &crate::http::Metrics,
    index: u64,
) -> Result<(), WalError> {
    let started = std::time::Instant::now();
    let result = wal.sync();
    metrics.observe_wal_fsync(started.elapsed());
    match &result {
        Ok(()) => {
            if let Err(e) = watermark.store(index) {
                tracing::warn!(path = %watermark.path().display(), error = %e, "cannot record the flushed index");
            }
        }
        Err(_) => watermark.fail(),
    }
    result
}

/// Flushes once for every run of queued appends, then completes all of them.
fn group_commit(
    wal: &Wal,
    watermark: &Watermark,
    metrics: &crate::http::Metrics,
    rx: &mpsc::Receiver<Flush>,
) {
    while let Ok(first) = rx.recv() {
        let mut waiting = vec![first];
        waiting.extend(rx.try_iter());
        let highest = waiting
            .iter()
            .filter_map(|f| match f {
                Flush::Append(index) => Some(*index),
                Flush::Barrier(_) => None,
            })
            .max();
        // Barriers alone need no flush: everything queued before them already was.
        if let Some(highest) = highest
            && let Err(e) = flush_upto(wal, watermark, metrics, highest)
        {
            // The watermark now fails every wait, which stops the member (see `raft::watermark`).
            tracing::error!(error = %crate::error::chain(&e), "cannot flush the raft log");
        }
        for flush in waiting {
            if let Flush::Barrier(answer) = flush {
                let _ = answer.send(());
            }
        }
    }
}
