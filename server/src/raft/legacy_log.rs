//! Moves the Raft log of a data dir of format 1 (kept in the storage engine's `raft` keyspace)
//! into the WAL, the first time a newer oxcd opens it.
//!
//! The WAL is built beside its final place and renamed into it once synced, so a crash part-way
//! leaves the old log in place and the move starts over; once the WAL is in place the old
//! keyspace is only cleared. The caller records the new format in the identity afterwards.

use std::path::Path;

use super::types::{Entry, LogId};
use super::wal::{SEGMENT_BYTES, Wal, WalError};
use super::wal_disk::{self, Meta};
use crate::storage::{Engine, StorageError};

const KEYSPACE: &str = "raft";
const ENTRY_PREFIX: u8 = b'e';
const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_PURGED: &[u8] = b"purged";
/// Entries written to the WAL per append while moving.
const CHUNK: usize = 1024;

/// Why the old log could not be moved.
#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    /// The storage engine failed or holds an undecodable record.
    #[error("cannot read the raft log of the storage engine")]
    Engine(#[from] StorageError),
    /// The WAL could not be written.
    #[error("cannot write the raft WAL")]
    Wal(#[from] WalError),
    /// The new WAL could not be moved into place.
    #[error("cannot move the new raft WAL into {path}")]
    Rename {
        /// Where the WAL goes.
        path: std::path::PathBuf,
        /// The filesystem's error.
        #[source]
        source: std::io::Error,
    },
}

fn corrupt(what: &str, e: postcard::Error) -> StorageError {
    StorageError::Corrupt {
        what: format!("the raft log's {what} ({e})"),
    }
}

/// Moves the log kept in `engine` into a WAL at `wal_dir` (unless one is there already) and
/// clears it from the engine.
pub fn move_into_wal(engine: &dyn Engine, wal_dir: &Path) -> Result<(), MoveError> {
    let ks = engine.keyspace(KEYSPACE)?;
    if !wal_dir.exists() {
        let staging = wal_dir.with_extension("moving");
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(|source| MoveError::Rename {
                path: staging.clone(),
                source,
            })?;
        }
        let vote = match ks.get(KEY_VOTE)? {
            Some(bytes) => Some(postcard::from_bytes(&bytes).map_err(|e| corrupt("vote", e))?),
            None => None,
        };
        let purged: Option<LogId> = match ks.get(KEY_PURGED)? {
            Some(bytes) => Some(postcard::from_bytes(&bytes).map_err(|e| corrupt("purged id", e))?),
            None => None,
        };
        let committed: Option<LogId> = match ks.get(KEY_COMMITTED)? {
            Some(bytes) => postcard::from_bytes::<Option<LogId>>(&bytes)
                .map_err(|e| corrupt("committed id", e))?,
            None => None,
        };
        std::fs::create_dir_all(&staging).map_err(|source| MoveError::Rename {
            path: staging.clone(),
            source,
        })?;
        wal_disk::store_meta(&staging, &Meta { vote, purged })?;
        let (wal, _) = Wal::open(&staging, SEGMENT_BYTES)?;
        let mut chunk = Vec::with_capacity(CHUNK);
        for pair in ks.range(&[ENTRY_PREFIX], Some(&[ENTRY_PREFIX + 1])) {
            let (_, bytes) = pair?;
            let entry: Entry = postcard::from_bytes(&bytes).map_err(|e| corrupt("entry", e))?;
            chunk.push((entry.log_id, bytes));
            if chunk.len() == CHUNK {
                wal.append(&std::mem::take(&mut chunk))?;
            }
        }
        // Written with the last append.
        wal.set_committed(committed);
        wal.append(&chunk)?;
        wal.sync()?;
        drop(wal);
        std::fs::rename(&staging, wal_dir).map_err(|source| MoveError::Rename {
            path: wal_dir.to_path_buf(),
            source,
        })?;
        if let Some(parent) = wal_dir.parent() {
            wal_disk::sync_dir(parent)?;
        }
    }
    ks.clear()?;
    engine.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::storage::WriteBatch;
    use crate::storage::sled_engine::SledEngine;
    use openraft::testing::log_id;
    use openraft::{EntryPayload, Vote};

    #[test]
    fn a_format_1_log_moves_into_the_wal_whole_and_leaves_the_engine() {
        let dir = tempfile::tempdir().unwrap();
        let engine = SledEngine::open(&dir.path().join("db"), 8 << 20).unwrap();
        let ks = engine.keyspace(KEYSPACE).unwrap();
        let mut batch = WriteBatch::new();
        let vote = Vote::new(4, 2);
        batch.put(KEY_VOTE.to_vec(), postcard::to_stdvec(&vote).unwrap());
        let purged = log_id(1, 1, 2);
        batch.put(KEY_PURGED.to_vec(), postcard::to_stdvec(&purged).unwrap());
        let committed = Some(log_id(3, 1, 2999));
        batch.put(
            KEY_COMMITTED.to_vec(),
            postcard::to_stdvec(&committed).unwrap(),
        );
        for index in 3..=3000u64 {
            let entry = Entry {
                log_id: log_id(3, 1, index),
                payload: EntryPayload::Blank,
            };
            let mut key = vec![ENTRY_PREFIX];
            key.extend_from_slice(&index.to_be_bytes());
            batch.put(key, postcard::to_stdvec(&entry).unwrap());
        }
        ks.write(batch).unwrap();

        let wal_dir = dir.path().join("wal");
        move_into_wal(&engine, &wal_dir).unwrap();
        assert_eq!(ks.count().unwrap(), 0, "the engine no longer holds the log");
        let (wal, recovered) = Wal::open(&wal_dir, SEGMENT_BYTES).unwrap();
        assert_eq!(
            recovered.meta,
            Meta {
                vote: Some(vote),
                purged: Some(purged)
            }
        );
        assert_eq!(recovered.committed, committed);
        assert_eq!(recovered.last_entry, Some(log_id(3, 1, 3000)));
        let read = wal.read(0, u64::MAX).unwrap();
        assert_eq!(read.len(), 2998);
        assert_eq!(read[0].log_id, log_id(3, 1, 3));
        // Moving again (a crash before the identity recorded the new format) keeps the WAL.
        move_into_wal(&engine, &wal_dir).unwrap();
        assert_eq!(
            Wal::open(&wal_dir, SEGMENT_BYTES).unwrap().1.last_entry,
            Some(log_id(3, 1, 3000))
        );
    }
}
