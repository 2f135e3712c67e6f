//! A bounded in-memory window over the tail of the Raft log, so replication and apply get
//! recent entries already decoded instead of reading them back from the engine.
//!
//! The window is either empty or ends at the log's last entry: appends extend it, truncation
//! cuts its tail, purging drops its head, and an append that does not continue it starts it
//! over. Everything it holds is also in the engine (it is filled after the engine write and cut
//! before the engine delete), so a read it cannot serve whole goes to the engine and gets the
//! same answer. A restarted member starts with an empty window and reads the engine until new
//! appends refill it.
//!
//! Entries are kept behind `Arc`s so the lock is held only to copy pointers; the entries
//! themselves are cloned (openraft wants owned ones) after it is released.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;

use super::types::Entry;

/// What one cached entry counts for beyond its encoded size: the `Entry` itself and the
/// queue slot, so a window of tiny entries is still bounded sensibly by bytes.
const ENTRY_OVERHEAD: usize = std::mem::size_of::<Entry>() + 16;

/// The recent tail of the Raft log, shared by the log store and its readers.
pub struct LogCache {
    window: Mutex<Window>,
    max_entries: usize,
    max_bytes: usize,
}

#[derive(Default)]
struct Window {
    /// Consecutive entries, the last being the log's last; each with what it counts in bytes.
    entries: VecDeque<(Arc<Entry>, usize)>,
    bytes: usize,
}

impl Window {
    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|(e, _)| e.log_id.index)
    }

    fn last_index(&self) -> Option<u64> {
        self.entries.back().map(|(e, _)| e.log_id.index)
    }

    fn pop_front(&mut self) -> Option<Arc<Entry>> {
        let (entry, size) = self.entries.pop_front()?;
        self.bytes -= size;
        Some(entry)
    }

    fn pop_back(&mut self) -> Option<Arc<Entry>> {
        let (entry, size) = self.entries.pop_back()?;
        self.bytes -= size;
        Some(entry)
    }
}

impl LogCache {
    /// An empty window holding at most `max_entries` entries and about `max_bytes` bytes.
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            window: Mutex::new(Window::default()),
            max_entries,
            max_bytes,
        }
    }

    /// Adds entries just written at the end of the log, each with its encoded size. Oldest
    /// entries leave first when the bounds are exceeded; an entry larger than the whole byte
    /// bound leaves the window empty (reads then go to the engine).
    pub fn append(&self, entries: Vec<(Entry, usize)>) {
        let entries: Vec<(Arc<Entry>, usize)> = entries
            .into_iter()
            .map(|(e, size)| (Arc::new(e), size.saturating_add(ENTRY_OVERHEAD)))
            .collect();
        // Dropped after the lock is released: freeing large entries takes time.
        let mut evicted = Vec::new();
        {
            let mut w = self.window.lock();
            for (entry, size) in entries {
                let continues = w
                    .last_index()
                    .is_none_or(|last| last.checked_add(1) == Some(entry.log_id.index));
                if !continues {
                    // openraft truncates before it overwrites, so this is a jump past a gap (a
                    // snapshot); the old window no longer ends at the log's last entry.
                    evicted.extend(w.entries.drain(..).map(|(e, _)| e));
                    w.bytes = 0;
                }
                w.bytes += size;
                w.entries.push_back((entry, size));
                while w.entries.len() > self.max_entries || w.bytes > self.max_bytes {
                    evicted.extend(w.pop_front());
                }
            }
        }
        drop(evicted);
    }

    /// The entries of `start..end` (`end` exclusive), or `None` when the window does not hold
    /// all of them that exist (the caller reads the engine instead). Indexes past the log's end
    /// are absent from the answer, as from the engine.
    pub fn get(&self, start: u64, end: u64) -> Option<Vec<Arc<Entry>>> {
        if start >= end {
            return Some(Vec::new());
        }
        let w = self.window.lock();
        let first = w.first_index()?;
        if start < first {
            return None;
        }
        let skip = usize::try_from(start - first).unwrap_or(usize::MAX);
        let take = usize::try_from(end - start).unwrap_or(usize::MAX);
        Some(
            w.entries
                .iter()
                .skip(skip)
                .take(take)
                .map(|(e, _)| e.clone())
                .collect(),
        )
    }

    /// Forgets the entries from `index` on; call before they are deleted from the engine.
    pub fn truncate(&self, index: u64) {
        let mut evicted = Vec::new();
        {
            let mut w = self.window.lock();
            while w.last_index().is_some_and(|last| last >= index) {
                evicted.extend(w.pop_back());
            }
        }
        drop(evicted);
    }

    /// Forgets the entries up to `index` inclusive; call before they are deleted from the engine.
    pub fn purge(&self, index: u64) {
        let mut evicted = Vec::new();
        {
            let mut w = self.window.lock();
            while w.first_index().is_some_and(|first| first <= index) {
                evicted.extend(w.pop_front());
            }
        }
        drop(evicted);
    }

    /// The number of entries held and what they count in bytes.
    pub fn usage(&self) -> (usize, usize) {
        let w = self.window.lock();
        (w.entries.len(), w.bytes)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use openraft::EntryPayload;
    use openraft::testing::log_id;

    use super::*;

    fn entry(term: u64, index: u64) -> (Entry, usize) {
        let entry = Entry {
            log_id: log_id(term, 1, index),
            payload: EntryPayload::Blank,
        };
        (entry, 100)
    }

    fn run(term: u64, indexes: std::ops::RangeInclusive<u64>) -> Vec<(Entry, usize)> {
        indexes.map(|i| entry(term, i)).collect()
    }

    /// The (term, index) of each entry `get` answers, or `None` when it sends the caller to the
    /// engine.
    fn ids(cache: &LogCache, start: u64, end: u64) -> Option<Vec<(u64, u64)>> {
        cache.get(start, end).map(|entries| {
            entries
                .iter()
                .map(|e| (e.log_id.leader_id.term, e.log_id.index))
                .collect()
        })
    }

    #[test]
    fn serves_ranges_within_the_window_and_past_the_end() {
        let cache = LogCache::new(100, 1 << 20);
        assert_eq!(ids(&cache, 1, 2), None, "an empty window knows nothing");
        cache.append(run(1, 5..=9));
        assert_eq!(ids(&cache, 6, 8), Some(vec![(1, 6), (1, 7)]));
        assert_eq!(ids(&cache, 8, u64::MAX), Some(vec![(1, 8), (1, 9)]));
        assert_eq!(ids(&cache, 10, 20), Some(vec![]), "past the log's end");
        assert_eq!(ids(&cache, 7, 7), Some(vec![]));
        assert_eq!(ids(&cache, 4, 6), None, "starts before the window");
    }

    #[test]
    fn truncate_forgets_the_conflicting_tail() {
        let cache = LogCache::new(100, 1 << 20);
        cache.append(run(1, 1..=10));
        cache.truncate(6);
        assert_eq!(ids(&cache, 5, 11), Some(vec![(1, 5)]));
        // The new leader's entries replace the cut ones.
        cache.append(run(2, 6..=7));
        assert_eq!(ids(&cache, 5, 11), Some(vec![(1, 5), (2, 6), (2, 7)]));
        cache.truncate(1);
        assert_eq!(cache.usage(), (0, 0));
        assert_eq!(ids(&cache, 1, 11), None);
    }

    #[test]
    fn purge_forgets_the_head() {
        let cache = LogCache::new(100, 1 << 20);
        cache.append(run(1, 1..=10));
        cache.purge(4);
        assert_eq!(ids(&cache, 4, 6), None, "purged entries are not served");
        assert_eq!(ids(&cache, 5, 7), Some(vec![(1, 5), (1, 6)]));
        // A snapshot past the whole log purges everything; appends then start after it.
        cache.purge(20);
        assert_eq!(cache.usage(), (0, 0));
        cache.append(run(3, 21..=22));
        assert_eq!(ids(&cache, 21, 30), Some(vec![(3, 21), (3, 22)]));
        assert_eq!(ids(&cache, 10, 30), None);
    }

    #[test]
    fn an_append_that_does_not_continue_the_window_starts_it_over() {
        let cache = LogCache::new(100, 1 << 20);
        cache.append(run(1, 1..=5));
        cache.append(run(2, 9..=10));
        assert_eq!(ids(&cache, 9, 11), Some(vec![(2, 9), (2, 10)]));
        assert_eq!(ids(&cache, 5, 11), None, "nothing from before the gap");
        cache.append(run(3, 3..=3));
        assert_eq!(ids(&cache, 3, 11), Some(vec![(3, 3)]));
    }

    #[test]
    fn the_window_is_bounded_by_count_and_bytes() {
        let per_entry = 100 + ENTRY_OVERHEAD;
        let cache = LogCache::new(4, 1 << 20);
        cache.append(run(1, 1..=10));
        assert_eq!(cache.usage(), (4, 4 * per_entry));
        assert_eq!(ids(&cache, 6, 7), None);
        assert_eq!(ids(&cache, 7, 11).map(|v| v.len()), Some(4));

        let cache = LogCache::new(100, 3 * per_entry);
        cache.append(run(1, 1..=10));
        assert_eq!(cache.usage(), (3, 3 * per_entry));
        assert_eq!(ids(&cache, 8, 11).map(|v| v.len()), Some(3));
        // One entry larger than the byte bound empties the window rather than breaking it.
        let (big, _) = entry(1, 11);
        cache.append(vec![(big, 10 * per_entry)]);
        assert_eq!(cache.usage(), (0, 0));
        assert_eq!(ids(&cache, 11, 12), None);
        cache.append(run(1, 12..=12));
        assert_eq!(ids(&cache, 12, 13), Some(vec![(1, 12)]));
    }

    #[test]
    fn readers_share_the_window() {
        let cache = Arc::new(LogCache::new(100, 1 << 20));
        let reader = cache.clone();
        let handle = std::thread::spawn(move || {
            // Every answer is a consecutive run, whatever the writer is doing.
            for _ in 0..1000 {
                if let Some(got) = ids(&reader, 1, u64::MAX) {
                    assert!(got.windows(2).all(|w| w[1].1 == w[0].1 + 1));
                }
            }
        });
        for i in 1..=500 {
            cache.append(run(1, i..=i));
            if i % 50 == 0 {
                cache.truncate(i - 10);
                cache.append(run(1, (i - 10)..=i));
            }
        }
        handle.join().unwrap();
        assert_eq!(ids(&cache, 500, 501), Some(vec![(1, 500)]));
    }
}
