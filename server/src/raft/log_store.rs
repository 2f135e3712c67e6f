//! The Raft log and vote on the WAL (`raft::wal`), with group commit.
//!
//! openraft 0.9 awaits the append callback inside its core task, before it sends the entries
//! to followers, which would serialize the leader's fsync and the replication round trip. So
//! the leader's own appends (entries of the vote it holds as leader) are reported at once and
//! queued for a flusher thread, which takes everything queued, syncs the WAL once (group
//! commit) and records it in the [`Watermark`]. Nothing a leader has not flushed is applied or
//! announced as committed: the state machine and the transport wait on the watermark.
//!
//! A replicated append is flushed before it is reported, since the follower's answer counts
//! toward the commit; openraft hands over no other append meanwhile, so it is flushed in place.
//! Votes are durable before `save_vote` returns.
//!
//! The committed log id (which lets a restarted member re-apply committed entries before it
//! hears from a leader) is written with the next append instead of on its own: openraft saves
//! it inside its core task on every commit. What is on disk may lag (a lower committed id is
//! still committed: the restarted member only re-applies less before catching up).
//!
//! openraft reads every entry back soon after appending it (replication sends it, apply hands it
//! to the state machine); the latest entries are kept decoded in a bounded window
//! ([`LogCache`]) that serves those reads, and the WAL serves the rest.

// openraft's trait methods fix the error type (`openraft::StorageError`, large); helpers
// returning it directly avoid a conversion at every call.
#![allow(clippy::result_large_err)]

use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{AnyError, ErrorSubject, ErrorVerb, OptionalSend, StorageIOError, Vote};

use super::group_commit::{Flusher, flush_upto};
use super::log_cache::LogCache;
use super::types::{Entry, LogId, StorageError, TypeConfig};
use super::wal::{SEGMENT_BYTES, Wal, WalError};
use super::watermark::Watermark;

/// Bounds of the in-memory tail (see `raft::log_cache`): enough for apply and replication to
/// keep up under a 256-client load, small next to etcd, which keeps its whole log in memory.
const CACHE_MAX_ENTRIES: usize = 2048;
const CACHE_MAX_BYTES: usize = 16 << 20;

fn io_err(
    subject: ErrorSubject<u64>,
    verb: ErrorVerb,
    e: impl std::error::Error + 'static,
) -> StorageError {
    StorageError::IO {
        source: StorageIOError::new(subject, verb, AnyError::new(&e)),
    }
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError {
    io_err(ErrorSubject::Logs, ErrorVerb::Read, e)
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError {
    io_err(ErrorSubject::Logs, ErrorVerb::Write, e)
}

/// The Raft log of one member; cheap to clone (clones share the keyspace and flusher).
#[derive(Clone)]
pub struct LogStore {
    id: u64,
    wal: Arc<Wal>,
    flusher: Flusher,
    /// The recent tail, decoded; shared with the readers openraft takes from this store.
    cache: Arc<LogCache>,
    watermark: Arc<Watermark>,
    metrics: Arc<crate::http::Metrics>,
    /// The last vote saved, which tells the leader's own appends from replicated ones.
    vote: Option<Vote<u64>>,
    /// The latest committed log id openraft saved (the WAL writes it with the next append).
    committed: Option<LogId>,
    /// The purged id and the last entry's id.
    purged: Option<LogId>,
    last_entry: Option<LogId>,
}

impl LogStore {
    /// Opens the log of member `id` in the WAL directory `dir` and starts its flusher thread,
    /// which records every flushed index in `watermark`.
    pub fn open(
        id: u64,
        dir: &Path,
        watermark: Arc<Watermark>,
        metrics: Arc<crate::http::Metrics>,
    ) -> Result<Self, WalError> {
        let (wal, recovered) = Wal::open(dir, SEGMENT_BYTES)?;
        let wal = Arc::new(wal);
        let flusher =
            Flusher::start(wal.clone(), watermark.clone(), metrics.clone()).map_err(|source| {
                WalError::Io {
                    action: "start the flusher of",
                    path: dir.to_path_buf(),
                    source,
                }
            })?;
        let last = recovered.last_entry.or(recovered.meta.purged);
        // What the WAL holds after opening is on disk.
        watermark.recovered(last.map_or(0, |l| l.index));
        Ok(Self {
            id,
            wal,
            flusher,
            cache: Arc::new(LogCache::new(CACHE_MAX_ENTRIES, CACHE_MAX_BYTES)),
            watermark,
            metrics,
            vote: recovered.meta.vote,
            committed: recovered.committed,
            purged: recovered.meta.purged,
            last_entry: recovered.last_entry,
        })
    }

    /// True when `entry` was proposed by this member as the leader of the vote it holds: only
    /// such an append may be reported before it is flushed (a replicated one never is).
    fn own_leader_entry(&self, entry: &Entry) -> bool {
        self.vote.as_ref().is_some_and(|vote| {
            vote.is_committed()
                && vote.leader_id().voted_for() == Some(self.id)
                && entry.log_id.leader_id == *vote.leader_id()
        })
    }

    /// Waits until every append queued so far is flushed.
    fn flush_queued(&self) -> Result<(), StorageError> {
        self.flusher.wait_queued().map_err(write_err)?;
        match self.watermark.flushed() {
            Some(_) => Ok(()),
            None => Err(write_err(std::io::Error::other(
                "the raft log could not be flushed",
            ))),
        }
    }

    /// Writes `entries` (not yet flushed) with the pending committed id, and keeps them in the
    /// cache; returns the last index and whether all were this leader's own.
    fn write_entries(
        &mut self,
        entries: impl IntoIterator<Item = Entry>,
    ) -> Result<(u64, bool), StorageError> {
        let mut own = true;
        let mut encoded = Vec::new();
        let mut decoded = Vec::new();
        for entry in entries {
            own &= self.own_leader_entry(&entry);
            let bytes = postcard::to_stdvec(&entry).map_err(write_err)?;
            decoded.push((entry, bytes.len()));
            encoded.push((decoded[decoded.len() - 1].0.log_id, bytes));
        }
        let Some((last, _)) = encoded.last() else {
            return Ok((self.last_entry.or(self.purged).map_or(0, |l| l.index), own));
        };
        let last = *last;
        self.wal.append(&encoded).map_err(write_err)?;
        self.last_entry = Some(last);
        // Only after the WAL write, so the cache never holds what the WAL lacks.
        self.cache.append(decoded);
        Ok((last.index, own))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&i) => i.saturating_add(1),
            Bound::Excluded(&i) => i,
            Bound::Unbounded => u64::MAX,
        };
        if let Some(cached) = self.cache.get(start, end) {
            return Ok(cached.iter().map(|e| Entry::clone(e)).collect());
        }
        self.wal.read(start, end).map_err(read_err)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        Ok(LogState {
            last_purged_log_id: self.purged,
            last_log_id: self.last_entry.or(self.purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError> {
        self.wal
            .save_vote(*vote)
            .map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Write, e))?;
        self.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError> {
        Ok(self.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        if let Some(id) = committed {
            self.metrics.set_committed_index(id.index);
        }
        // Written with the next append (see the module documentation).
        self.committed = committed;
        self.wal.set_committed(committed);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let (last_index, own) = self.write_entries(entries)?;
        if !own {
            // A replicated append: openraft hands over no other append until this one is
            // reported, so nothing could share its flush; flushing here spares the follower's
            // answer two thread hand-offs.
            let result = flush_upto(&self.wal, &self.watermark, &self.metrics, last_index)
                .map_err(|e| std::io::Error::other(crate::error::chain(&e)));
            callback.log_io_completed(result);
            return Ok(());
        }
        // The leader's own entries are readable now, so replication may send them while the
        // flusher makes them durable.
        self.watermark.reported_early(last_index);
        callback.log_io_completed(Ok(()));
        self.flusher.queue(last_index).map_err(write_err)
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Before the WAL cut, so the cache never holds what the WAL lacks.
        self.cache.truncate(log_id.index);
        // Appends of this member's time as leader may still be queued: let them land first, or
        // their flush would raise the watermark again over the cut.
        self.flush_queued()?;
        // Lower the watermark first: a crash mid-way must not make the shorter log look damaged.
        self.watermark
            .lower(log_id.index.saturating_sub(1))
            .map_err(write_err)?;
        self.last_entry = self.wal.truncate(log_id.index).map_err(write_err)?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.cache.purge(log_id.index);
        self.wal.purge(log_id).map_err(write_err)?;
        self.purged = Some(log_id);
        if self.last_entry.is_some_and(|l| l.index <= log_id.index) {
            self.last_entry = None;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "log_store_tests.rs"]
mod tests;
