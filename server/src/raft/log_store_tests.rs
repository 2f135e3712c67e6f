//! Tests of the log store's in-memory tail against the engine beneath it: reads are served from
//! memory while the entries are there, and from the engine, with the same answer, after a
//! restart, a truncation or a purge. openraft's own suite (`raft::suite`) covers the rest.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use openraft::EntryPayload;
use openraft::storage::{RaftLogReader, RaftLogStorage};
use openraft::testing::log_id;

use super::*;
use crate::storage::sled_engine::SledEngine;

struct Fixture {
    dir: tempfile::TempDir,
    engine: Arc<dyn Engine>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine: Arc<dyn Engine> =
            Arc::new(SledEngine::open(&dir.path().join("db"), 8 << 20).expect("engine"));
        Self { dir, engine }
    }

    /// A log store on the fixture's engine, with an empty cache as after a restart.
    fn open(&self) -> LogStore {
        let mark = Arc::new(Watermark::open(&self.dir.path().join("flushed-index")).unwrap());
        let metrics = Arc::new(crate::http::Metrics::new());
        LogStore::open(1, self.engine.clone(), mark, metrics).expect("log store")
    }
}

fn entries(term: u64, indexes: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
    indexes
        .map(|i| Entry {
            log_id: log_id(term, 1, i),
            payload: EntryPayload::Blank,
        })
        .collect()
}

/// Removes entry `index` from the engine only, so a read that still returns it came from memory.
fn hide_from_engine(log: &LogStore, index: u64) {
    let mut batch = WriteBatch::new();
    batch.delete(entry_key(index));
    log.ks.write(batch).unwrap();
}

/// The index of the last entry the log reports (the purged id's when no entry is left).
async fn last_index(log: &mut LogStore) -> Option<u64> {
    let state = log.get_log_state().await.unwrap();
    state.last_log_id.map(|l| l.index)
}

async fn read(log: &mut LogStore, range: std::ops::RangeInclusive<u64>) -> Vec<(u64, u64)> {
    log.try_get_log_entries(range)
        .await
        .unwrap()
        .iter()
        .map(|e| (e.log_id.leader_id.term, e.log_id.index))
        .collect()
}

#[tokio::test]
async fn appended_entries_are_read_from_memory_and_from_the_engine_after_a_restart() {
    let fx = Fixture::new();
    let mut log = fx.open();
    log.write_entries(entries(1, 1..=5)).unwrap();
    hide_from_engine(&log, 5);
    // The reader openraft takes shares the cache.
    let mut reader = log.get_log_reader().await;
    assert_eq!(
        read(&mut reader, 1..=5).await.len(),
        5,
        "served from memory"
    );

    let mut restarted = fx.open();
    assert_eq!(restarted.cache.usage().0, 0);
    let got = read(&mut restarted, 1..=5).await;
    assert_eq!(
        got,
        vec![(1, 1), (1, 2), (1, 3), (1, 4)],
        "served by the engine"
    );
    // New appends refill the cache; a range starting before them still goes to the engine.
    restarted.write_entries(entries(1, 5..=6)).unwrap();
    assert_eq!(read(&mut restarted, 5..=9).await, vec![(1, 5), (1, 6)]);
    assert_eq!(read(&mut restarted, 2..=6).await.len(), 5);
}

#[tokio::test]
async fn truncated_entries_are_gone_from_memory_and_engine() {
    let fx = Fixture::new();
    let mut log = fx.open();
    let mut reader = log.get_log_reader().await;
    log.write_entries(entries(1, 1..=8)).unwrap();
    log.truncate(log_id(1, 1, 5)).await.unwrap();
    assert_eq!(read(&mut reader, 4..=8).await, vec![(1, 4)]);
    // A new leader's entries take the place of the cut ones, in memory and on disk alike.
    log.write_entries(entries(2, 5..=6)).unwrap();
    let want = vec![(1, 4), (2, 5), (2, 6)];
    assert_eq!(read(&mut reader, 4..=8).await, want);
    assert_eq!(read(&mut fx.open(), 4..=8).await, want);
}

#[tokio::test]
async fn purged_entries_are_not_served_and_a_snapshot_jump_restarts_the_cache() {
    let fx = Fixture::new();
    let mut log = fx.open();
    log.write_entries(entries(1, 1..=8)).unwrap();
    log.purge(log_id(1, 1, 3)).await.unwrap();
    assert_eq!(read(&mut log, 1..=5).await, vec![(1, 4), (1, 5)]);
    // Installing a snapshot ahead of the log purges all of it; the log continues after it.
    log.purge(log_id(1, 1, 20)).await.unwrap();
    assert_eq!(log.cache.usage().0, 0);
    assert_eq!(read(&mut log, 1..=30).await, vec![]);
    log.write_entries(entries(3, 21..=22)).unwrap();
    hide_from_engine(&log, 21);
    assert_eq!(read(&mut log, 21..=30).await, vec![(3, 21), (3, 22)]);
    assert_eq!(last_index(&mut log).await, Some(22));
}

#[tokio::test]
async fn a_crash_that_kept_entries_past_a_gap_leaves_the_log_cut_at_the_gap() {
    let fx = Fixture::new();
    let mut log = fx.open();
    log.write_entries(entries(1, 1..=8)).unwrap();
    log.save_committed(Some(log_id(1, 1, 7))).await.unwrap();
    log.write_entries(entries(1, 9..=9)).unwrap();
    // As if the engine recovered entry 5 lost but later ones written (none flushed).
    hide_from_engine(&log, 5);
    drop(log);
    let mut log = fx.open();
    assert_eq!(last_index(&mut log).await, Some(4));
    assert_eq!(
        log.ks.count().unwrap(),
        4,
        "entries 1..=4 and no committed id"
    );
    assert_eq!(log.read_committed().await.unwrap(), None);
    // Appends continue where the cut left the log.
    log.write_entries(entries(2, 5..=6)).unwrap();
    assert_eq!(
        read(&mut fx.open(), 4..=9).await,
        vec![(1, 4), (2, 5), (2, 6)]
    );
}

#[tokio::test]
async fn a_crash_that_lost_the_first_entry_after_a_purge_leaves_only_the_purged_prefix() {
    let fx = Fixture::new();
    let mut log = fx.open();
    log.purge(log_id(1, 1, 20)).await.unwrap();
    log.write_entries(entries(3, 21..=23)).unwrap();
    hide_from_engine(&log, 21);
    drop(log);
    let mut log = fx.open();
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(20));
    assert_eq!(last_index(&mut log).await, Some(20));
}

#[tokio::test]
async fn a_contiguous_log_is_left_as_it_is() {
    let fx = Fixture::new();
    let mut log = fx.open();
    log.write_entries(entries(1, 1..=6)).unwrap();
    log.purge(log_id(1, 1, 2)).await.unwrap();
    drop(log);
    let mut log = fx.open();
    assert_eq!(
        read(&mut log, 1..=9).await,
        vec![(1, 3), (1, 4), (1, 5), (1, 6)]
    );
}
