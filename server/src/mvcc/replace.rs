//! Replacing the whole store with another member's image (Raft snapshot installation).
//!
//! The keyspace is cleared and refilled in bounded batches while the index's write lock keeps
//! readers and appliers out; afterwards the in-memory index, revisions, leases and alarms are
//! rebuilt from the new records exactly as at start-up. The caller makes this crash-safe by
//! keeping the image and a marker until the replacement is flushed (see `raft::snapshot`).

use std::sync::atomic::Ordering;

use super::store::{MvccStore, load_alarms, load_leases, rebuild};
use crate::storage::{StorageError, WriteBatch};

/// Records per engine batch while loading an image.
const BATCH_RECORDS: usize = 10_000;
/// Bytes per engine batch while loading (values may be up to the request limit each).
const BATCH_BYTES: usize = 16 << 20;

impl MvccStore {
    /// Replaces every record with `records` followed by `extra` (per-member bookkeeping such as
    /// the applied log position), then reloads the in-memory state. Returns the new revision.
    pub fn replace<E>(
        &self,
        records: impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), E>>,
        extra: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<i64, ReplaceError<E>> {
        let mut index = self.index.write();
        self.ks.clear().map_err(ReplaceError::Storage)?;
        let mut batch = WriteBatch::new();
        let mut batch_bytes = 0;
        for record in records {
            let (key, value) = record.map_err(ReplaceError::Source)?;
            batch_bytes += key.len() + value.len();
            batch.put(key, value);
            if batch.len() >= BATCH_RECORDS || batch_bytes >= BATCH_BYTES {
                self.ks
                    .write(std::mem::take(&mut batch))
                    .map_err(ReplaceError::Storage)?;
                batch_bytes = 0;
            }
        }
        for (key, value) in extra {
            batch.put(key, value);
        }
        self.ks.write(batch).map_err(ReplaceError::Storage)?;
        let (new_index, current, compact, in_use) =
            rebuild(self.ks.as_ref()).map_err(ReplaceError::Storage)?;
        let leases =
            load_leases(self.ks.as_ref(), &new_index, current).map_err(ReplaceError::Storage)?;
        let alarms = load_alarms(self.ks.as_ref()).map_err(ReplaceError::Storage)?;
        *index = new_index;
        *self.leases.lock() = leases;
        *self.alarms.lock() = alarms;
        self.current_rev.store(current, Ordering::Release);
        self.compact_rev.store(compact, Ordering::Release);
        self.in_use.store(in_use, Ordering::Release);
        Ok(current)
    }
}

/// Why a replacement failed (the store must then be replaced again before it is used).
#[derive(Debug, thiserror::Error)]
pub enum ReplaceError<E> {
    /// Reading the image failed.
    #[error("failed to read the image")]
    Source(#[source] E),
    /// Writing the engine failed.
    #[error("failed to write the store")]
    Storage(#[source] StorageError),
}
