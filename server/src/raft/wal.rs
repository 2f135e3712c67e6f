//! The Raft write-ahead log: entries, the vote, the committed and the purged log id as records
//! appended to segment files (`<seq>.wal`, 16 hex digits), each append one `write`, each flush
//! one `fdatasync` of the files written since the last, as etcd's WAL does. The state machine's
//! store is not flushed per commit: what it lacks after a crash is applied again from here, and
//! entries are only purged once a snapshot flushed the store past them.
//!
//! Every segment starts with the vote, committed and purged ids current when it was created,
//! so deleting older segments never loses them. A crash can leave the last segment with a torn
//! tail (a record cut short or failing its checksum); it is cut off when the log is opened.
//! Nothing after a truncation survives it on disk (the file is cut and synced), so the entries
//! of all segments read in order are contiguous, except right after a purge past the end of the
//! log (installing a snapshot), where the next entry follows the purged id.
//!
//! Reads look up an entry's offset in memory (8 bytes per entry of the live segments) and read
//! the span with one `pread`.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::Vote;
use parking_lot::{Mutex, RwLock};

use super::types::{Entry, LogId};
use super::wal_disk::{self, Meta, Segment};
use super::wal_record::{Record, encode_entry};

/// Size past which appends go to a new segment (etcd's segment size).
pub const SEGMENT_BYTES: u64 = 64 << 20;

/// What went wrong with the WAL.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// The filesystem failed.
    #[error("failed to {action} {path}")]
    Io {
        /// What the WAL was doing.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The filesystem's error.
        #[source]
        source: io::Error,
    },
    /// A segment holds something oxcd never writes there.
    #[error("the raft WAL segment {path} is corrupt: {what}")]
    Corrupt {
        /// The segment.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
}

pub(super) fn io_error<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> WalError + 'a {
    move |source| WalError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug)]
struct Inner {
    /// Ascending by `seq`; the last is the one appended to. Never empty.
    segments: Vec<Segment>,
    meta: Meta,
    committed: Option<LogId>,
    /// `committed` changed since it was last written.
    committed_unwritten: bool,
    /// The last entry's log id.
    last_entry: Option<LogId>,
    /// Files written since their last sync.
    unsynced: Vec<Arc<File>>,
}

/// The WAL of one member.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    segment_bytes: u64,
    inner: RwLock<Inner>,
    /// Held across a whole sync, so a sync that finds nothing to do knows that the syncs of
    /// what was written before it have finished.
    syncing: Mutex<()>,
}

/// What the WAL holds when opened.
#[derive(Debug, Clone, Copy)]
pub struct Recovered {
    /// The vote and the purged id.
    pub meta: Meta,
    /// The latest committed id written.
    pub committed: Option<LogId>,
    /// The last entry's log id (`None` when no entry is left past the purged id).
    pub last_entry: Option<LogId>,
}

impl Wal {
    /// Opens the WAL in `dir` (creating it), cutting a torn tail off the last segment.
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<(Self, Recovered), WalError> {
        let opened = wal_disk::open(dir, segment_bytes)?;
        let mut inner = Inner {
            segments: opened.segments,
            meta: opened.meta,
            committed: opened.committed,
            committed_unwritten: false,
            last_entry: opened.last_entry,
            unsynced: Vec::new(),
        };
        if inner.segments.is_empty() {
            inner
                .segments
                .push(wal_disk::create_segment(dir, 1, segment_bytes)?);
        }
        let purged = inner.meta.purged;
        if inner
            .last_entry
            .is_some_and(|l| purged.is_some_and(|p| l.index <= p.index))
        {
            // Everything was purged (a crash came before the older segments were deleted):
            // the next entry follows the purged id, not these.
            inner.segments.iter_mut().for_each(Segment::forget_entries);
        }
        let recovered = Recovered {
            meta: inner.meta,
            committed: inner.committed,
            last_entry: inner
                .last_entry
                .filter(|l| purged.is_none_or(|p| l.index > p.index)),
        };
        let wal = Self {
            dir: dir.to_path_buf(),
            segment_bytes,
            inner: RwLock::new(inner),
            syncing: Mutex::new(()),
        };
        Ok((wal, recovered))
    }

    /// Appends `entries` (log id and encoded entry, contiguous after the last one) with the
    /// committed id if it changed, in one write; durable after the next [`Wal::sync`].
    pub fn append(&self, entries: &[(LogId, Vec<u8>)]) -> Result<(), WalError> {
        let mut inner = self.inner.write();
        let mut buf =
            Vec::with_capacity(entries.iter().map(|(_, b)| b.len() + 17).sum::<usize>() + 64);
        if inner.committed_unwritten {
            Record::Committed(inner.committed)
                .encode_into(&mut buf)
                .map_err(|e| self.unencodable(e))?;
            inner.committed_unwritten = false;
        }
        let mut placed = Vec::with_capacity(entries.len());
        for (id, bytes) in entries {
            placed.push((id.index, buf.len() as u64));
            encode_entry(id.index, bytes, &mut buf);
        }
        let base = self.write(&mut inner, &buf)?;
        if let Some(active) = inner.segments.last_mut() {
            for (index, at) in placed {
                active.push_entry(index, base + at);
            }
        }
        if let Some((id, _)) = entries.last() {
            inner.last_entry = Some(*id);
        }
        Ok(())
    }

    /// Makes everything written so far durable.
    pub fn sync(&self) -> Result<(), WalError> {
        let _one_at_a_time = self.syncing.lock();
        let files = std::mem::take(&mut self.inner.write().unsynced);
        for file in files {
            file.sync_data().map_err(io_error("sync", &self.dir))?;
        }
        Ok(())
    }

    /// Records the vote, durably.
    pub fn save_vote(&self, vote: Vote<u64>) -> Result<(), WalError> {
        let mut inner = self.inner.write();
        let meta = Meta {
            vote: Some(vote),
            ..inner.meta
        };
        wal_disk::store_meta(&self.dir, &meta)?;
        inner.meta = meta;
        Ok(())
    }

    /// Remembers the committed id; it is written with the next append.
    pub fn set_committed(&self, committed: Option<LogId>) {
        let mut inner = self.inner.write();
        inner.committed = committed;
        inner.committed_unwritten = true;
    }

    /// The entries with `start <= index < end` that the WAL holds.
    pub fn read(&self, start: u64, end: u64) -> Result<Vec<Entry>, WalError> {
        let inner = self.inner.read();
        let start = match inner.meta.purged {
            Some(purged) => start.max(purged.index.saturating_add(1)),
            None => start,
        };
        wal_disk::read_entries(&inner.segments, start, end)
    }

    /// Removes every entry from `index` on, durably; returns the new last entry's id.
    pub fn truncate(&self, index: u64) -> Result<Option<LogId>, WalError> {
        let mut inner = self.inner.write();
        let mut removed_files = false;
        // From the last segment back: remove those holding only entries from `index` on, cut
        // the one holding `index`; segments without entries stay where they are.
        let mut n = inner.segments.len();
        while n > 0 {
            n -= 1;
            let segment = &mut inner.segments[n];
            let Some(last) = segment.last_index() else {
                continue;
            };
            if last < index {
                break;
            }
            if segment.first_index >= index && n > 0 {
                let segment = inner.segments.remove(n);
                fs::remove_file(&segment.path).map_err(io_error("remove", &segment.path))?;
                removed_files = true;
                continue;
            }
            let keep = index.saturating_sub(segment.first_index) as usize;
            let cut_at = segment.offsets.get(keep).copied().unwrap_or(segment.len);
            wal_disk::cut(
                &segment.file,
                &segment.path,
                cut_at,
                self.segment_bytes.max(cut_at),
            )?;
            segment.offsets.truncate(keep);
            segment.len = cut_at;
            break;
        }
        if removed_files {
            wal_disk::sync_dir(&self.dir)?;
        }
        let purged = inner.meta.purged.map(|p| p.index);
        inner.last_entry = match index.checked_sub(1) {
            Some(prev) if purged.is_none_or(|p| p < prev) => {
                wal_disk::read_entries(&inner.segments, prev, index)?
                    .last()
                    .map(|e| e.log_id)
            }
            _ => None,
        };
        // A committed id written after the cut went with it.
        inner.committed_unwritten = true;
        Ok(inner.last_entry)
    }

    /// Records that every entry up to `upto` is purged, durably, and deletes the segments that
    /// hold nothing after it.
    pub fn purge(&self, upto: LogId) -> Result<(), WalError> {
        let mut inner = self.inner.write();
        let meta = Meta {
            purged: Some(upto),
            ..inner.meta
        };
        wal_disk::store_meta(&self.dir, &meta)?;
        inner.meta = meta;
        // Purged past the last entry (a snapshot was installed): the next entry follows the
        // purged id, so it starts a segment of its own and the older ones can all go.
        if inner.last_entry.is_none_or(|l| l.index <= upto.index) {
            inner.segments.iter_mut().for_each(Segment::forget_entries);
            inner.last_entry = None;
            if inner.segments.last().is_some_and(|s| s.len > 0) {
                self.roll(&mut inner)?;
            }
        }
        let mut removed = 0;
        while inner.segments.len() > removed + 1 {
            let segment = &inner.segments[removed];
            if segment.last_index().is_some_and(|last| last > upto.index) {
                break;
            }
            fs::remove_file(&segment.path).map_err(io_error("remove", &segment.path))?;
            removed += 1;
        }
        if removed > 0 {
            inner.segments.drain(..removed);
            wal_disk::sync_dir(&self.dir)?;
        }
        Ok(())
    }

    fn unencodable(&self, e: postcard::Error) -> WalError {
        WalError::Corrupt {
            path: self.dir.clone(),
            what: format!("a record cannot be encoded: {e}"),
        }
    }

    /// Writes `buf` at the end of the active segment (after starting a new one if it is full);
    /// returns the offset it was written at.
    fn write(&self, inner: &mut Inner, buf: &[u8]) -> Result<u64, WalError> {
        if inner
            .segments
            .last()
            .is_some_and(|s| s.len >= self.segment_bytes)
        {
            self.roll(inner)?;
        }
        let Some(active) = inner.segments.last_mut() else {
            return Err(WalError::Corrupt {
                path: self.dir.clone(),
                what: "no segment to append to".into(),
            });
        };
        let at = active.len;
        active
            .file
            .write_all_at(buf, at)
            .map_err(io_error("append to", &active.path))?;
        active.len += buf.len() as u64;
        let file = active.file.clone();
        if !inner.unsynced.iter().any(|f| Arc::ptr_eq(f, &file)) {
            inner.unsynced.push(file);
        }
        Ok(at)
    }

    /// Syncs the active segment and starts the next: a segment is whole before the next one
    /// begins, so only the last can have a torn tail.
    fn roll(&self, inner: &mut Inner) -> Result<(), WalError> {
        let seq = match inner.segments.last() {
            Some(active) => {
                active
                    .file
                    .sync_data()
                    .map_err(io_error("sync", &active.path))?;
                active.seq + 1
            }
            None => 1,
        };
        inner.segments.push(wal_disk::create_segment(
            &self.dir,
            seq,
            self.segment_bytes,
        )?);
        // The new segment should open with the committed id too.
        inner.committed_unwritten = true;
        Ok(())
    }
}

#[cfg(test)]
#[path = "wal_tests.rs"]
mod tests;
