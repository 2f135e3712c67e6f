//! Tests of the log store's in-memory tail and of its WAL beneath it: reads are served from
//! memory while the entries are there, and from the WAL, with the same answer, after a
//! restart, a truncation or a purge; a torn tail left by a crash is cut. openraft's own suite
//! (`raft::suite`) covers the rest.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use openraft::EntryPayload;
use openraft::storage::{RaftLogReader, RaftLogStorage};
use openraft::testing::log_id;

use super::*;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// A log store in the fixture's directory, with an empty cache as after a restart.
    fn open(&self) -> LogStore {
        let mark = Arc::new(Watermark::open(&self.dir.path().join("flushed-index")).unwrap());
        let metrics = Arc::new(crate::http::Metrics::new());
        LogStore::open(1, &self.wal_dir(), mark, metrics).expect("log store")
    }

    fn wal_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("wal")
    }

    /// The only segment file.
    fn segment(&self) -> std::path::PathBuf {
        let mut segments: Vec<_> = std::fs::read_dir(self.wal_dir())
            .unwrap()
            .map(|d| d.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "wal"))
            .collect();
        assert_eq!(segments.len(), 1, "{segments:?}");
        segments.remove(0)
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
async fn appended_entries_are_read_from_memory_and_from_the_wal_after_a_restart() {
    let fx = Fixture::new();
    let mut log = fx.open();
    log.write_entries(entries(1, 1..=5)).unwrap();
    assert_eq!(log.cache.usage().0, 5, "kept in memory");
    // The reader openraft takes shares the cache.
    let mut reader = log.get_log_reader().await;
    let want: Vec<_> = (1..=5).map(|i| (1, i)).collect();
    assert_eq!(read(&mut reader, 1..=5).await, want);

    let mut restarted = fx.open();
    assert_eq!(restarted.cache.usage().0, 0);
    assert_eq!(read(&mut restarted, 1..=5).await, want, "served by the WAL");
    // New appends refill the cache; a range starting before them still goes to the WAL.
    restarted.write_entries(entries(1, 6..=7)).unwrap();
    assert_eq!(read(&mut restarted, 6..=9).await, vec![(1, 6), (1, 7)]);
    assert_eq!(read(&mut restarted, 2..=7).await.len(), 6);
}

#[tokio::test]
async fn truncated_entries_are_gone_from_memory_and_wal() {
    let fx = Fixture::new();
    let mut log = fx.open();
    let mut reader = log.get_log_reader().await;
    log.write_entries(entries(1, 1..=8)).unwrap();
    log.truncate(log_id(1, 1, 5)).await.unwrap();
    assert_eq!(read(&mut reader, 4..=8).await, vec![(1, 4)]);
    assert_eq!(last_index(&mut fx.open()).await, Some(4));
    // A new leader's entries take the place of the cut ones, in memory and on disk alike.
    log.write_entries(entries(2, 5..=6)).unwrap();
    let want = vec![(1, 4), (2, 5), (2, 6)];
    assert_eq!(read(&mut reader, 4..=8).await, want);
    assert_eq!(read(&mut fx.open(), 4..=8).await, want);
}

#[tokio::test]
async fn purged_entries_are_not_served_and_a_snapshot_jump_restarts_the_log() {
    let fx = Fixture::new();
    let mut log = fx.open();
    log.write_entries(entries(1, 1..=8)).unwrap();
    log.purge(log_id(1, 1, 3)).await.unwrap();
    assert_eq!(read(&mut log, 1..=5).await, vec![(1, 4), (1, 5)]);
    // Installing a snapshot ahead of the log purges all of it; the log continues after it.
    log.purge(log_id(1, 1, 20)).await.unwrap();
    assert_eq!(log.cache.usage().0, 0);
    assert_eq!(read(&mut log, 1..=30).await, vec![]);
    assert_eq!(last_index(&mut fx.open()).await, Some(20));
    log.write_entries(entries(3, 21..=22)).unwrap();
    assert_eq!(read(&mut log, 21..=30).await, vec![(3, 21), (3, 22)]);
    assert_eq!(last_index(&mut log).await, Some(22));
    let mut restarted = fx.open();
    assert_eq!(read(&mut restarted, 1..=30).await, vec![(3, 21), (3, 22)]);
    assert_eq!(last_index(&mut restarted).await, Some(22));
}

/// Cuts the segment file `keep_short_by` bytes short of its last record's end, as a crash
/// mid-write can (the zeros of the preallocated rest go too).
fn tear(fx: &Fixture, keep_short_by: u64) {
    let path = fx.segment();
    let bytes = std::fs::read(&path).unwrap();
    let mut reader = super::super::wal_record::Reader::new(&bytes, 0);
    while reader.next_record().unwrap().is_some() {}
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(reader.offset() - keep_short_by).unwrap();
}

#[tokio::test]
async fn a_torn_last_append_is_cut_and_the_committed_id_never_names_a_lost_entry() {
    let fx = Fixture::new();
    let mut log = fx.open();
    log.write_entries(entries(1, 1..=8)).unwrap();
    log.save_committed(Some(log_id(1, 1, 7))).await.unwrap();
    log.write_entries(entries(1, 9..=9)).unwrap();
    drop(log);
    // Entry 9's record loses its last byte.
    tear(&fx, 1);
    let mut log = fx.open();
    assert_eq!(last_index(&mut log).await, Some(8));
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(1, 1, 7)));
    // Appends continue where the cut left the log.
    log.write_entries(entries(2, 9..=10)).unwrap();
    drop(log);
    assert_eq!(
        read(&mut fx.open(), 7..=12).await,
        vec![(1, 7), (1, 8), (2, 9), (2, 10)]
    );
    // Torn inside the committed id's record (written before entry 9): both go.
    let mut log = fx.open();
    log.save_committed(Some(log_id(2, 1, 9))).await.unwrap();
    log.write_entries(entries(2, 11..=11)).unwrap();
    drop(log);
    let entry_11 = 8 + 1 + 8 + postcard::to_stdvec(&entries(2, 11..=11)[0]).unwrap().len() as u64;
    tear(&fx, entry_11 + 3);
    let mut log = fx.open();
    assert_eq!(last_index(&mut log).await, Some(10));
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(1, 1, 7)));
}

#[tokio::test]
async fn a_crash_that_lost_the_first_entry_after_a_purge_leaves_only_the_purged_prefix() {
    let fx = Fixture::new();
    let mut log = fx.open();
    log.purge(log_id(1, 1, 20)).await.unwrap();
    log.write_entries(entries(3, 21..=21)).unwrap();
    drop(log);
    tear(&fx, 2);
    let mut log = fx.open();
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(20));
    assert_eq!(last_index(&mut log).await, Some(20));
}

#[tokio::test]
async fn the_vote_survives_a_restart_and_truncations() {
    let fx = Fixture::new();
    let mut log = fx.open();
    log.write_entries(entries(1, 1..=4)).unwrap();
    let vote = openraft::Vote::new(5, 2);
    log.save_vote(&vote).await.unwrap();
    log.write_entries(entries(1, 5..=6)).unwrap();
    log.truncate(log_id(1, 1, 2)).await.unwrap();
    assert_eq!(fx.open().read_vote().await.unwrap(), Some(vote));
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
