//! The storage-engine seam: a narrow, ordered key-value interface with atomic batches and an
//! explicit durability point. Everything above (MVCC, Raft log, leases) is written against these
//! traits; `sled_engine` is the only module that knows which engine sits below.

pub mod sled_engine;
mod sled_sync;

use std::sync::Arc;

/// An owned key or value as the engine returns it.
pub type Bytes = Vec<u8>;

/// One key-value pair read from a keyspace.
pub type Pair = (Bytes, Bytes);

/// Iterator over an ordered slice of a keyspace.
pub type PairIter<'a> = Box<dyn Iterator<Item = Result<Pair, StorageError>> + Send + 'a>;

/// Failure of the engine below; fatal for the operation that saw it.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The engine reported an I/O or consistency failure.
    #[error("storage engine failed to {action}")]
    Engine {
        /// What the store was doing.
        action: &'static str,
        /// The engine's own error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A stored record could not be decoded: the data on disk is not what oxcd wrote.
    #[error("stored record under {what} is corrupt")]
    Corrupt {
        /// Which record.
        what: String,
    },
}

/// One change inside an atomic [`WriteBatch`].
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// Set `key` to `value`.
    Put(Bytes, Bytes),
    /// Remove `key` (absent keys are ignored).
    Delete(Bytes),
}

/// Changes to one keyspace that become visible (and durable, after the next flush) together.
#[derive(Debug, Default, Clone)]
pub struct WriteBatch {
    ops: Vec<WriteOp>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a put of `key` = `value`.
    pub fn put(&mut self, key: impl Into<Bytes>, value: impl Into<Bytes>) {
        self.ops.push(WriteOp::Put(key.into(), value.into()));
    }

    /// Adds a removal of `key`.
    pub fn delete(&mut self, key: impl Into<Bytes>) {
        self.ops.push(WriteOp::Delete(key.into()));
    }

    /// Number of changes in the batch.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when the batch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The changes, in the order they were added.
    pub fn into_ops(self) -> Vec<WriteOp> {
        self.ops
    }
}

/// A storage engine: named, independently ordered keyspaces sharing one durability point.
pub trait Engine: Send + Sync + 'static {
    /// Opens (creating if needed) the keyspace called `name`.
    fn keyspace(&self, name: &str) -> Result<Arc<dyn Keyspace>, StorageError>;

    /// Makes every write issued before this call durable; returns only once it is on disk.
    fn flush(&self) -> Result<(), StorageError>;

    /// Bytes the engine occupies on disk (etcd's `dbSize`).
    fn size_on_disk(&self) -> Result<u64, StorageError>;
}

/// An ordered map of byte strings inside an [`Engine`].
pub trait Keyspace: Send + Sync {
    /// The value stored under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StorageError>;

    /// Applies `batch` atomically: after a crash either all or none of it is present.
    fn write(&self, batch: WriteBatch) -> Result<(), StorageError>;

    /// Pairs with `start <= key < end` (no upper bound when `end` is `None`), ascending.
    fn range<'a>(&'a self, start: &[u8], end: Option<&[u8]>) -> PairIter<'a>;

    /// Pairs with `start <= key < end`, descending.
    fn range_rev<'a>(&'a self, start: &[u8], end: Option<&[u8]>) -> PairIter<'a>;

    /// Applies `batch` op by op, in order, without atomicity: after a crash a prefix of it may
    /// be present (engines recover their write log in order). Cheaper than [`Keyspace::write`]
    /// where the reader can tell and repair a torn end, as the Raft log does with a gap check.
    fn write_in_order(&self, batch: WriteBatch) -> Result<(), StorageError> {
        self.write(batch)
    }

    /// Removes every pair.
    fn clear(&self) -> Result<(), StorageError>;

    /// Inserts `pairs` (ascending) as fast as the engine can: without atomicity between them
    /// and without durability before the next [`Engine::flush`]. Only for filling a keyspace
    /// nobody reads yet whose result is published after a flush (a staged restore): a crash
    /// part-way leaves an arbitrary subset of `pairs`.
    fn load(&self, pairs: Vec<Pair>) -> Result<(), StorageError> {
        let mut batch = WriteBatch::new();
        for (key, value) in pairs {
            batch.put(key, value);
        }
        self.write(batch)
    }

    /// Number of pairs (walks the keyspace; for tests and diagnostics).
    fn count(&self) -> Result<usize, StorageError> {
        let mut n = 0;
        for pair in self.range(&[], None) {
            pair?;
            n += 1;
        }
        Ok(n)
    }
}
