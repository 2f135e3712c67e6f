//! The Raft log and vote on the storage engine, with group commit.
//!
//! openraft 0.9 awaits the append callback inside its core task, before it sends the entries
//! to followers, which would serialize the leader's fsync and the replication round trip. So
//! the leader's own appends (entries of the vote it holds as leader) are reported at once and
//! queued for a flusher thread, which takes everything queued, issues one engine flush (group
//! commit) and records it in the [`Watermark`]. Nothing a leader has not flushed is applied or
//! announced as committed: the state machine and the transport wait on the watermark.
//!
//! A replicated append is flushed before it is reported, since the follower's answer counts
//! toward the commit; openraft hands over no other append meanwhile, so it is flushed in place.
//! Votes are flushed before `save_vote` returns.
//!
//! The committed log id (which lets a restarted member re-apply committed entries before it
//! hears from a leader) is written with the next append's batch instead of a batch of its own:
//! openraft saves it inside its core task on every commit, where an engine batch took a large
//! share of the time between commit and apply. What is on disk may lag (a lower committed id
//! is still committed: the restarted member only re-applies less before catching up).
//!
//! openraft reads every entry back soon after appending it (replication sends it, apply hands it
//! to the state machine); the latest entries are kept decoded in a bounded window
//! ([`LogCache`]) that serves those reads, and the engine serves the rest.

// openraft's trait methods fix the error type (`openraft::StorageError`, large); helpers
// returning it directly avoid a conversion at every call.
#![allow(clippy::result_large_err)]

use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{AnyError, ErrorSubject, ErrorVerb, OptionalSend, StorageIOError, Vote};

use super::group_commit::{Flusher, flush_upto};
use super::log_cache::LogCache;
use super::types::{Entry, LogId, StorageError, TypeConfig};
use super::watermark::Watermark;
use crate::storage::{Engine, Keyspace, WriteBatch};

const ENTRY_PREFIX: u8 = b'e';
const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_PURGED: &[u8] = b"purged";
/// Bounds of the in-memory tail (see `raft::log_cache`): enough for apply and replication to
/// keep up under a 256-client load, small next to etcd, which keeps its whole log in memory.
const CACHE_MAX_ENTRIES: usize = 2048;
const CACHE_MAX_BYTES: usize = 16 << 20;

fn entry_key(index: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(9);
    key.push(ENTRY_PREFIX);
    key.extend_from_slice(&index.to_be_bytes());
    key
}

/// The index an entry key names (`None` for a key that is not one).
fn entry_index(key: &[u8]) -> Option<u64> {
    match key {
        [ENTRY_PREFIX, rest @ ..] => Some(u64::from_be_bytes(rest.try_into().ok()?)),
        _ => None,
    }
}

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
    ks: Arc<dyn Keyspace>,
    engine: Arc<dyn Engine>,
    flusher: Flusher,
    /// The recent tail, decoded; shared with the readers openraft takes from this store.
    cache: Arc<LogCache>,
    watermark: Arc<Watermark>,
    metrics: Arc<crate::http::Metrics>,
    /// The last vote saved, which tells the leader's own appends from replicated ones.
    vote: Option<Vote<u64>>,
    /// The latest committed log id openraft saved; written with the next append.
    committed: Option<LogId>,
    /// `committed` changed since it was last written.
    committed_unwritten: bool,
}

impl LogStore {
    /// Opens the log of member `id` in the engine's `raft` keyspace and starts its flusher
    /// thread, which records every flushed index in `watermark`.
    pub fn open(
        id: u64,
        engine: Arc<dyn Engine>,
        watermark: Arc<Watermark>,
        metrics: Arc<crate::http::Metrics>,
    ) -> Result<Self, crate::storage::StorageError> {
        let ks = engine.keyspace("raft")?;
        let flusher = Flusher::start(engine.clone(), watermark.clone(), metrics.clone())?;
        let mut log = Self {
            id,
            ks,
            engine,
            flusher,
            cache: Arc::new(LogCache::new(CACHE_MAX_ENTRIES, CACHE_MAX_BYTES)),
            watermark,
            metrics,
            vote: None,
            committed: None,
            committed_unwritten: false,
        };
        let unreadable = |e: StorageError| crate::storage::StorageError::Engine {
            action: "read the raft log",
            source: Box::new(e),
        };
        log.vote = log.get_meta(KEY_VOTE).map_err(unreadable)?;
        log.drop_torn_tail().map_err(unreadable)?;
        // What the engine holds after opening is on disk.
        let last = match log.last_entry().map_err(unreadable)? {
            Some(entry) => Some(entry.log_id),
            None => log.get_meta::<LogId>(KEY_PURGED).map_err(unreadable)?,
        };
        log.watermark.recovered(last.map_or(0, |l| l.index));
        Ok(log)
    }

    /// Entries are written one by one (see `write_entries`), so a crash before their flush may
    /// keep some of them and not others. Everything the watermark file records was flushed
    /// whole; past it, the log is cut at the first gap (none of that was acknowledged), so
    /// openraft finds it contiguous and right after the purged prefix.
    fn drop_torn_tail(&self) -> Result<(), StorageError> {
        let start = self.watermark.stored().unwrap_or(0);
        let purged = self.get_meta::<LogId>(KEY_PURGED)?;
        let mut expected = purged
            .map(|p| p.index.saturating_add(1))
            .filter(|next| *next >= start);
        let end = [ENTRY_PREFIX + 1];
        let mut cut = WriteBatch::new();
        let mut first_missing = None;
        for pair in self.ks.range(&entry_key(start), Some(&end)) {
            let (key, _) = pair.map_err(read_err)?;
            let index = entry_index(&key).ok_or_else(|| {
                read_err(crate::storage::StorageError::Corrupt {
                    what: format!("raft log key {key:?}"),
                })
            })?;
            if first_missing.is_none() && expected.is_some_and(|e| e != index) {
                first_missing = expected;
            }
            if first_missing.is_some() {
                cut.delete(key);
            } else {
                expected = Some(index.saturating_add(1));
            }
        }
        let Some(missing) = first_missing else {
            return Ok(());
        };
        // The committed id is written with appends too; it must not name a dropped entry.
        let committed = self.get_meta::<Option<LogId>>(KEY_COMMITTED)?.flatten();
        if committed.is_some_and(|c| c.index >= missing) {
            cut.delete(KEY_COMMITTED.to_vec());
        }
        tracing::warn!(
            missing,
            dropped = cut.len(),
            "the raft log lost unflushed entries in a crash: dropping those after the gap"
        );
        self.ks.write(cut).map_err(write_err)?;
        self.engine.flush().map_err(write_err)
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

    /// Writes `entries` (not yet flushed) and the pending committed id, and keeps the entries in
    /// the cache; returns the last index and whether all were this leader's own.
    fn write_entries(
        &mut self,
        entries: impl IntoIterator<Item = Entry>,
    ) -> Result<(u64, bool), StorageError> {
        let mut batch = WriteBatch::new();
        if self.committed_unwritten {
            batch.put(
                KEY_COMMITTED.to_vec(),
                postcard::to_stdvec(&self.committed).map_err(write_err)?,
            );
            self.committed_unwritten = false;
        }
        let mut last_index = 0;
        let mut own = true;
        let mut written = Vec::new();
        for entry in entries {
            last_index = entry.log_id.index;
            own &= self.own_leader_entry(&entry);
            let bytes = postcard::to_stdvec(&entry).map_err(write_err)?;
            written.push((entry, bytes.len()));
            batch.put(entry_key(last_index), bytes);
        }
        // In order, not atomically: a torn end is cut when the log is opened again, and a
        // sled batch would seal an IO buffer of its own for every append.
        self.ks.write_in_order(batch).map_err(write_err)?;
        // Only after the engine write, so the cache never holds what the engine lacks.
        self.cache.append(written);
        Ok((last_index, own))
    }

    fn get_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, StorageError> {
        match self.ks.get(key).map_err(read_err)? {
            None => Ok(None),
            Some(bytes) => postcard::from_bytes(&bytes).map(Some).map_err(read_err),
        }
    }

    fn put_meta<T: serde::Serialize>(&self, key: &[u8], value: &T) -> Result<(), StorageError> {
        let mut batch = WriteBatch::new();
        batch.put(key.to_vec(), postcard::to_stdvec(value).map_err(write_err)?);
        self.ks.write(batch).map_err(write_err)
    }

    fn last_entry(&self) -> Result<Option<Entry>, StorageError> {
        let start = entry_key(0);
        let end = [ENTRY_PREFIX + 1];
        match self.ks.range_rev(&start, Some(&end)).next() {
            None => Ok(None),
            Some(pair) => {
                let (_, v) = pair.map_err(read_err)?;
                postcard::from_bytes(&v).map(Some).map_err(read_err)
            }
        }
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
        let mut entries = Vec::new();
        // `end` saturated at the largest index, which the range must then include.
        let end_key = match end {
            u64::MAX => vec![ENTRY_PREFIX + 1],
            end => entry_key(end),
        };
        for pair in self.ks.range(&entry_key(start), Some(&end_key)) {
            let (_, v) = pair.map_err(read_err)?;
            entries.push(postcard::from_bytes(&v).map_err(read_err)?);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> = self.get_meta(KEY_PURGED)?;
        let last = self.last_entry()?.map(|e| e.log_id).or(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError> {
        self.put_meta(KEY_VOTE, vote).and_then(|()| {
            self.engine
                .flush()
                .map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Write, e))
        })?;
        self.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError> {
        self.get_meta(KEY_VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        if let Some(id) = committed {
            self.metrics.set_committed_index(id.index);
        }
        // Written with the next append (see the module documentation).
        self.committed = committed;
        self.committed_unwritten = true;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        if self.committed.is_some() {
            return Ok(self.committed);
        }
        Ok(self.get_meta::<Option<LogId>>(KEY_COMMITTED)?.flatten())
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
            let result = flush_upto(&*self.engine, &self.watermark, &self.metrics, last_index)
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
        // Before the engine delete, so the cache never holds what the engine lacks.
        self.cache.truncate(log_id.index);
        // Appends of this member's time as leader may still be queued: let them land first, or
        // their flush would raise the watermark again over the cut.
        self.flush_queued()?;
        // Lower the watermark first: a crash mid-way must not make the shorter log look damaged.
        self.watermark
            .lower(log_id.index.saturating_sub(1))
            .map_err(write_err)?;
        let mut batch = WriteBatch::new();
        for pair in self
            .ks
            .range(&entry_key(log_id.index), Some(&[ENTRY_PREFIX + 1]))
        {
            batch.delete(pair.map_err(read_err)?.0);
        }
        self.ks.write(batch).map_err(write_err)?;
        // Conflicting entries must not come back after a crash.
        self.engine.flush().map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.cache.purge(log_id.index);
        let mut batch = WriteBatch::new();
        batch.put(
            KEY_PURGED.to_vec(),
            postcard::to_stdvec(&log_id).map_err(write_err)?,
        );
        for pair in self.ks.range(
            &entry_key(0),
            Some(&entry_key(log_id.index.saturating_add(1))),
        ) {
            batch.delete(pair.map_err(read_err)?.0);
        }
        self.ks.write(batch).map_err(write_err)
    }
}

#[cfg(test)]
#[path = "log_store_tests.rs"]
mod tests;
