//! The flushed-index watermark: the highest log index the store has flushed, kept in memory for
//! what must wait for durability and in a tiny file beside the store. If the engine later comes
//! up with a shorter log than the file records, its files were damaged or replaced and
//! acknowledged writes may be gone, so the member refuses to start instead of silently serving
//! less than it acknowledged.
//!
//! The leader reports its own appends to openraft before they are flushed, so replication
//! overlaps its fsync (as etcd does); everything that makes an entry count as committed outside
//! the leader's memory (applying it, answering the client, telling followers the commit index)
//! first waits here until the leader's own copy is flushed.
//!
//! The file is rewritten (without fsync) after every group-commit flush, so it can only lag the
//! durable log, never lead it; it is lowered, durably, before a log truncation.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

/// What has been flushed so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flushed {
    /// Every entry up to this index is on disk.
    Upto(u64),
    /// A flush failed: nothing queued since may be counted durable.
    Failed,
}

/// A flush failed, so the entries waited for may never become durable.
#[derive(Debug, thiserror::Error)]
#[error("the raft log could not be flushed")]
pub struct FlushFailed;

/// The watermark of one member.
#[derive(Debug)]
pub struct Watermark {
    file: File,
    path: PathBuf,
    flushed: watch::Sender<Flushed>,
    /// The highest index reported to openraft before it was flushed (the leader's own).
    reported: AtomicU64,
}

impl Watermark {
    /// Opens (creating if needed) the watermark at `path`; nothing counts as flushed in memory
    /// until [`Watermark::recovered`] says what the store holds.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
            flushed: watch::Sender::new(Flushed::Upto(0)),
            reported: AtomicU64::new(0),
        })
    }

    /// The recorded index; `None` for a new or unreadable file (which then proves nothing).
    pub fn load(path: &Path) -> Option<u64> {
        let bytes = std::fs::read(path).ok()?;
        let raw: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
        let index = u64::from_be_bytes(raw);
        let check: [u8; 8] = bytes.get(8..16)?.try_into().ok()?;
        (u64::from_be_bytes(check) == !index).then_some(index)
    }

    fn encode(index: u64) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&index.to_be_bytes());
        out[8..].copy_from_slice(&(!index).to_be_bytes());
        out
    }

    /// The index recorded in this watermark's file (see [`Watermark::load`]).
    pub fn stored(&self) -> Option<u64> {
        Self::load(&self.path)
    }

    /// Counts the log found on disk at start (up to `index`) as flushed: it was read back.
    pub fn recovered(&self, index: u64) {
        self.flushed.send_replace(Flushed::Upto(index));
    }

    /// Records `index` as flushed: wakes its waiters, then rewrites the file (no fsync: a
    /// lagging file is harmless).
    pub fn store(&self, index: u64) -> io::Result<()> {
        self.flushed.send_if_modified(|f| match f {
            Flushed::Upto(old) if *old < index => {
                *f = Flushed::Upto(index);
                true
            }
            _ => false,
        });
        self.file.write_all_at(&Self::encode(index), 0)
    }

    /// Records that entries up to `index` were reported to openraft before being flushed.
    pub fn reported_early(&self, index: u64) {
        self.reported.fetch_max(index, Ordering::AcqRel);
    }

    /// Lowers the watermark to `index` durably, before the log is cut back.
    pub fn lower(&self, index: u64) -> io::Result<()> {
        self.reported.fetch_min(index, Ordering::AcqRel);
        self.flushed.send_if_modified(|f| match f {
            Flushed::Upto(old) if *old > index => {
                *f = Flushed::Upto(index);
                true
            }
            _ => false,
        });
        self.file.write_all_at(&Self::encode(index), 0)?;
        self.file.sync_data()
    }

    /// Records that a flush failed: waiters get [`FlushFailed`] from now on.
    pub fn fail(&self) {
        self.flushed.send_replace(Flushed::Failed);
    }

    /// The highest index known flushed (`None` after a failed flush).
    pub fn flushed(&self) -> Option<u64> {
        match *self.flushed.borrow() {
            Flushed::Upto(index) => Some(index),
            Flushed::Failed => None,
        }
    }

    /// The highest index followers may be told is committed: the flushed index while entries
    /// reported early are still being flushed, any otherwise (`None` after a failed flush).
    pub fn commit_limit(&self) -> Option<u64> {
        let flushed = self.flushed()?;
        if self.reported.load(Ordering::Acquire) > flushed {
            Some(flushed)
        } else {
            Some(u64::MAX)
        }
    }

    /// Waits until the entries up to `index` that were reported early are flushed; the others
    /// were flushed before openraft learnt of them.
    pub async fn wait_reported(&self, index: u64) -> Result<(), FlushFailed> {
        let index = index.min(self.reported.load(Ordering::Acquire));
        if self.flushed().is_some_and(|at| at >= index) {
            return Ok(());
        }
        self.wait(index).await
    }

    /// Waits until every entry up to `index` is flushed.
    pub async fn wait(&self, index: u64) -> Result<(), FlushFailed> {
        let mut rx = self.flushed.subscribe();
        let reached = rx
            .wait_for(|f| match f {
                Flushed::Upto(at) => *at >= index,
                Flushed::Failed => true,
            })
            .await
            .map_err(|_| FlushFailed)?;
        match *reached {
            Flushed::Upto(_) => Ok(()),
            Flushed::Failed => Err(FlushFailed),
        }
    }

    /// Where the file lives.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The highest log index this member's state machine has applied, announced as soon as its
/// batch is in the store. Forwarded writes and ReadIndex reads wait on it: openraft's own
/// metrics learn it only after the result went back through the Raft core task, one more
/// hand-off on the path of every request a follower answers.
#[derive(Debug)]
pub struct AppliedIndex(watch::Sender<u64>);

impl Default for AppliedIndex {
    fn default() -> Self {
        Self(watch::Sender::new(0))
    }
}

impl AppliedIndex {
    /// Records that every entry up to `index` is applied.
    pub fn advance(&self, index: u64) {
        self.0.send_if_modified(|at| {
            let raised = *at < index;
            *at = (*at).max(index);
            raised
        });
    }

    /// Resolves once `index` is applied; never if this record stops (callers race it with
    /// openraft's metrics, which also cover what is applied outside `advance`).
    pub async fn reached(&self, index: u64) {
        let mut rx = self.0.subscribe();
        if rx.wait_for(|at| *at >= index).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn stored_index_reads_back_and_garbage_reads_as_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w");
        assert_eq!(Watermark::load(&path), None);
        let w = Watermark::open(&path).unwrap();
        w.store(42).unwrap();
        assert_eq!(Watermark::load(&path), Some(42));
        w.lower(7).unwrap();
        assert_eq!(Watermark::load(&path), Some(7));
        std::fs::write(&path, b"garbage garbage!").unwrap();
        assert_eq!(Watermark::load(&path), None);
    }

    #[tokio::test]
    async fn waiters_wake_once_their_index_is_flushed_and_fail_after_a_failed_flush() {
        let dir = tempfile::tempdir().unwrap();
        let w = std::sync::Arc::new(Watermark::open(&dir.path().join("w")).unwrap());
        w.recovered(3);
        assert!(w.wait(3).await.is_ok());
        let waiter = tokio::spawn({
            let w = w.clone();
            async move { w.wait(5).await }
        });
        w.store(4).unwrap();
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        w.store(5).unwrap();
        assert!(waiter.await.unwrap().is_ok());
        w.lower(2).unwrap();
        assert_eq!(w.flushed(), Some(2));
        // Only what was reported before its flush is waited for.
        assert!(w.wait_reported(100).await.is_ok());
        w.reported_early(4);
        let waiter = tokio::spawn({
            let w = w.clone();
            async move { w.wait_reported(100).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        w.store(4).unwrap();
        assert!(waiter.await.unwrap().is_ok());
        w.fail();
        assert!(w.wait(1).await.is_err());
    }
}
