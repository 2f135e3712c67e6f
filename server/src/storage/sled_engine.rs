//! The sled implementation of the engine traits; the only module of oxcd that imports sled.
//!
//! sled writes in the background and promises nothing until `flush` returns, so oxcd disables the
//! periodic flush and calls `flush` itself at the points where it must be durable (Raft appends
//! and votes): that keeps every fsync on the group-commit path where it can be batched. sled's
//! own flush is not enough across a power loss; `sled_sync` completes it.

use std::path::Path;
use std::sync::Arc;

use super::sled_sync::SledFiles;
use super::{Engine, Keyspace, Pair, PairIter, StorageError, WriteBatch, WriteOp};

/// Fewest pairs worth a loader thread of their own.
const MIN_PAIRS_PER_THREAD: usize = 1024;

/// Loader threads: one per core (a load is CPU-bound in sled's tree code).
fn load_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// A sled database opened from one directory.
#[derive(Clone)]
pub struct SledEngine {
    db: sled::Db,
    /// What sled's flush does not make durable (see `sled_sync`).
    files: Arc<SledFiles>,
}

fn engine_err(action: &'static str) -> impl FnOnce(sled::Error) -> StorageError {
    move |e| StorageError::Engine {
        action,
        source: Box::new(e),
    }
}

impl SledEngine {
    /// Opens (or creates) the database in `dir` with a page cache of `cache_bytes`.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self, StorageError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .flush_every_ms(None)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(engine_err("open the database"))?;
        let files = SledFiles::open(dir).map_err(|e| StorageError::Engine {
            action: "open the database files for syncing",
            source: Box::new(e),
        })?;
        Ok(Self {
            db,
            files: Arc::new(files),
        })
    }
}

impl Engine for SledEngine {
    fn keyspace(&self, name: &str) -> Result<Arc<dyn Keyspace>, StorageError> {
        let tree = self
            .db
            .open_tree(name)
            .map_err(engine_err("open a keyspace"))?;
        Ok(Arc::new(SledKeyspace { tree }))
    }

    fn flush(&self) -> Result<(), StorageError> {
        self.db.flush().map_err(engine_err("flush to disk"))?;
        self.files.sync().map_err(|e| StorageError::Engine {
            action: "sync to disk",
            source: Box::new(e),
        })
    }

    fn size_on_disk(&self) -> Result<u64, StorageError> {
        self.db
            .size_on_disk()
            .map_err(engine_err("measure its size"))
    }
}

struct SledKeyspace {
    tree: sled::Tree,
}

fn pairs<'a>(
    iter: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>> + Send + 'a,
) -> PairIter<'a> {
    Box::new(iter.map(|r| {
        r.map(|(k, v)| (k.to_vec(), v.to_vec()))
            .map_err(engine_err("read a range"))
    }))
}

impl Keyspace for SledKeyspace {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self
            .tree
            .get(key)
            .map_err(engine_err("read a key"))?
            .map(|v| v.to_vec()))
    }

    fn write(&self, batch: WriteBatch) -> Result<(), StorageError> {
        // A batch takes the tree's exclusive lock and seals an IO buffer of its own so that it
        // is recovered whole (sled's `pin_log`); a single op is atomic without either.
        if batch.len() == 1 {
            return self.write_in_order(batch);
        }
        let mut sled_batch = sled::Batch::default();
        for op in batch.into_ops() {
            match op {
                WriteOp::Put(k, v) => sled_batch.insert(k, v),
                WriteOp::Delete(k) => sled_batch.remove(k),
            }
        }
        self.tree
            .apply_batch(sled_batch)
            .map_err(engine_err("apply a batch"))
    }

    fn write_in_order(&self, batch: WriteBatch) -> Result<(), StorageError> {
        for op in batch.into_ops() {
            match op {
                WriteOp::Put(k, v) => self.tree.insert(k, v).map(drop),
                WriteOp::Delete(k) => self.tree.remove(k).map(drop),
            }
            .map_err(engine_err("write a pair"))?;
        }
        Ok(())
    }

    fn range<'a>(&'a self, start: &[u8], end: Option<&[u8]>) -> PairIter<'a> {
        match end {
            Some(end) if end <= start => Box::new(std::iter::empty()),
            Some(end) => pairs(self.tree.range(start.to_vec()..end.to_vec())),
            None => pairs(self.tree.range(start.to_vec()..)),
        }
    }

    fn range_rev<'a>(&'a self, start: &[u8], end: Option<&[u8]>) -> PairIter<'a> {
        match end {
            Some(end) if end <= start => Box::new(std::iter::empty()),
            Some(end) => pairs(self.tree.range(start.to_vec()..end.to_vec()).rev()),
            None => pairs(self.tree.range(start.to_vec()..).rev()),
        }
    }

    fn clear(&self) -> Result<(), StorageError> {
        self.tree.clear().map_err(engine_err("clear a keyspace"))
    }

    fn load(&self, pairs: Vec<Pair>) -> Result<(), StorageError> {
        // A sled batch takes the tree's exclusive lock and seals a log marker so that it is
        // recovered atomically; a load needs neither, and single inserts take the shared lock,
        // so contiguous slices of the (sorted) pairs go in from several threads at once, each
        // appending to its own leaves.
        let threads = load_threads()
            .min(pairs.len().div_ceil(MIN_PAIRS_PER_THREAD))
            .max(1);
        let per_thread = pairs.len().div_ceil(threads).max(1);
        let tree = &self.tree;
        let insert = |slice: &[Pair]| -> Result<(), StorageError> {
            for (key, value) in slice {
                tree.insert(key.as_slice(), value.as_slice())
                    .map_err(engine_err("load a pair"))?;
            }
            Ok(())
        };
        if threads == 1 {
            return insert(&pairs);
        }
        std::thread::scope(|scope| {
            let workers: Vec<_> = pairs
                .chunks(per_thread)
                .map(|slice| scope.spawn(move || insert(slice)))
                .collect();
            workers.into_iter().try_for_each(|w| {
                w.join().unwrap_or_else(|_| {
                    Err(StorageError::Engine {
                        action: "load pairs",
                        source: "a loader thread panicked".into(),
                    })
                })
            })
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn engine() -> (tempfile::TempDir, SledEngine) {
        let dir = tempfile::tempdir().unwrap();
        let engine = SledEngine::open(dir.path(), 8 << 20).unwrap();
        (dir, engine)
    }

    #[test]
    fn batch_is_visible_after_write_and_ranges_are_ordered() {
        let (_dir, engine) = engine();
        let ks = engine.keyspace("t").unwrap();
        let mut batch = WriteBatch::new();
        batch.put(b"b".to_vec(), b"2".to_vec());
        batch.put(b"a".to_vec(), b"1".to_vec());
        batch.put(b"c".to_vec(), b"3".to_vec());
        batch.delete(b"c".to_vec());
        ks.write(batch).unwrap();
        let keys: Vec<_> = ks.range(b"a", None).map(|p| p.unwrap().0).collect();
        assert_eq!(keys, vec![b"a".to_vec(), b"b".to_vec()]);
        let rev: Vec<_> = ks
            .range_rev(b"a", Some(b"c"))
            .map(|p| p.unwrap().0)
            .collect();
        assert_eq!(rev, vec![b"b".to_vec(), b"a".to_vec()]);
        assert_eq!(ks.get(b"a").unwrap(), Some(b"1".to_vec()));
        assert!(ks.range(b"b", Some(b"a")).next().is_none());
    }

    #[test]
    fn a_parallel_load_stores_every_pair() {
        let (_dir, engine) = engine();
        let ks = engine.keyspace("t").unwrap();
        let pairs: Vec<Pair> = (0u32..5000)
            .map(|i| (i.to_be_bytes().to_vec(), vec![(i % 251) as u8; 40]))
            .collect();
        ks.load(pairs.clone()).unwrap();
        let stored: Vec<Pair> = ks.range(&[], None).map(Result::unwrap).collect();
        assert_eq!(stored, pairs);
    }

    #[test]
    fn flushed_writes_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let engine = SledEngine::open(dir.path(), 8 << 20).unwrap();
            let ks = engine.keyspace("t").unwrap();
            let mut batch = WriteBatch::new();
            batch.put(b"k".to_vec(), b"v".to_vec());
            ks.write(batch).unwrap();
            engine.flush().unwrap();
        }
        let engine = SledEngine::open(dir.path(), 8 << 20).unwrap();
        let ks = engine.keyspace("t").unwrap();
        assert_eq!(ks.get(b"k").unwrap(), Some(b"v".to_vec()));
        assert!(engine.size_on_disk().unwrap() > 0);
    }
}
