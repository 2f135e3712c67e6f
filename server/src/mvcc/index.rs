//! The in-memory key index: for every key, the revisions at which it changed.
//!
//! Like etcd's tree index it is rebuilt from the revision records at start-up and answers
//! "which revision of each key in this range was live at revision R" without touching disk. Each
//! entry also carries the key's create revision, version and lease at that change, so a write
//! never has to read the previous record.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::revision::Revision;

/// One change of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// When the change happened.
    pub rev: Revision,
    /// Revision that created the key's current incarnation (0 for a deletion).
    pub create: i64,
    /// Number of puts since creation; 0 marks a deletion.
    pub version: i64,
    /// Lease attached by the change (0 for none).
    pub lease: i64,
}

impl IndexEntry {
    /// True for a deletion.
    pub fn is_tombstone(&self) -> bool {
        self.version == 0
    }
}

/// Upper end of a key range, in etcd's three flavours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeEnd {
    /// Only the start key itself (empty `range_end`).
    Single,
    /// Every key at or after the start key (`range_end` = `\0`).
    Unbounded,
    /// Keys before this one.
    Before(Vec<u8>),
}

impl RangeEnd {
    /// Interprets an etcd `range_end` field.
    pub fn from_request(range_end: &[u8]) -> Self {
        match range_end {
            [] => Self::Single,
            [0] => Self::Unbounded,
            end => Self::Before(end.to_vec()),
        }
    }
}

/// Key → ordered history of changes.
#[derive(Debug, Default)]
pub struct KeyIndex {
    keys: BTreeMap<Vec<u8>, Vec<IndexEntry>>,
}

fn live_at(history: &[IndexEntry], at: i64) -> Option<&IndexEntry> {
    let n = history.partition_point(|e| e.rev.main <= at);
    let entry = history.get(n.checked_sub(1)?)?;
    (!entry.is_tombstone()).then_some(entry)
}

impl KeyIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of keys with any retained history.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// The live entry of `key` at revision `at`, if the key existed then.
    pub fn get(&self, key: &[u8], at: i64) -> Option<IndexEntry> {
        live_at(self.keys.get(key)?, at).copied()
    }

    /// Visits, in key order, every key of the range that was live at `at` with its entry; stops
    /// when `visit` returns false.
    pub fn for_each_live(
        &self,
        start: &[u8],
        end: &RangeEnd,
        at: i64,
        mut visit: impl FnMut(&[u8], &IndexEntry) -> bool,
    ) {
        let upper = match end {
            RangeEnd::Single => {
                if let Some(entry) = self.get(start, at) {
                    visit(start, &entry);
                }
                return;
            }
            RangeEnd::Unbounded => Bound::Unbounded,
            RangeEnd::Before(end) if end.as_slice() <= start => return,
            RangeEnd::Before(end) => Bound::Excluded(end.as_slice()),
        };
        let range = self.keys.range::<[u8], _>((Bound::Included(start), upper));
        for (key, history) in range {
            if let Some(entry) = live_at(history, at)
                && !visit(key, entry)
            {
                return;
            }
        }
    }

    /// Records a change of `key`.
    pub fn record(&mut self, key: &[u8], entry: IndexEntry) {
        match self.keys.get_mut(key) {
            Some(history) => history.push(entry),
            None => {
                self.keys.insert(key.to_vec(), vec![entry]);
            }
        }
    }

    /// Drops history no read at or after `at` can need and returns the revisions whose records
    /// may be removed from disk. For each key the change live at `at` is kept unless it is a
    /// deletion; keys with nothing left disappear.
    pub fn compact(&mut self, at: i64) -> Vec<(Revision, bool)> {
        let mut removable = Vec::new();
        self.keys.retain(|_, history| {
            let n = history.partition_point(|e| e.rev.main <= at);
            let keep_from = match n
                .checked_sub(1)
                .and_then(|i| history.get(i).map(|e| (i, e)))
            {
                // A deletion exactly at `at` stays: a watch opened at the compaction revision
                // must still be able to replay it. Older deletions go with their history.
                Some((i, e)) if e.is_tombstone() && e.rev.main < at => i + 1,
                Some((i, _)) => i,
                None => 0,
            };
            removable.extend(
                history
                    .drain(..keep_from)
                    .map(|e| (e.rev, e.is_tombstone())),
            );
            !history.is_empty()
        });
        removable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(main: i64, create: i64, version: i64) -> IndexEntry {
        IndexEntry {
            rev: Revision::new(main, 0),
            create,
            version,
            lease: 0,
        }
    }

    fn tomb(main: i64) -> IndexEntry {
        IndexEntry {
            rev: Revision::new(main, 0),
            create: 0,
            version: 0,
            lease: 0,
        }
    }

    #[test]
    fn historical_reads_see_the_change_live_at_that_revision() {
        let mut idx = KeyIndex::new();
        idx.record(b"a", put(2, 2, 1));
        idx.record(b"a", put(4, 2, 2));
        idx.record(b"a", tomb(6));
        idx.record(b"a", put(8, 8, 1));
        assert_eq!(idx.get(b"a", 1), None);
        assert_eq!(idx.get(b"a", 3).map(|e| e.version), Some(1));
        assert_eq!(idx.get(b"a", 5).map(|e| e.version), Some(2));
        assert_eq!(idx.get(b"a", 6), None);
        assert_eq!(idx.get(b"a", 9).map(|e| e.create), Some(8));
    }

    #[test]
    fn ranges_honour_single_bounded_and_unbounded_ends() {
        let mut idx = KeyIndex::new();
        for (i, k) in [b"a", b"b", b"c"].iter().enumerate() {
            idx.record(*k, put(i as i64 + 2, i as i64 + 2, 1));
        }
        let collect = |end: RangeEnd, start: &[u8]| {
            let mut keys = Vec::new();
            idx.for_each_live(start, &end, 10, |k, _| {
                keys.push(k.to_vec());
                true
            });
            keys
        };
        assert_eq!(collect(RangeEnd::Single, b"b"), vec![b"b".to_vec()]);
        assert_eq!(collect(RangeEnd::Before(b"c".to_vec()), b"a").len(), 2);
        assert_eq!(collect(RangeEnd::Unbounded, b"b").len(), 2);
        assert!(collect(RangeEnd::Before(b"a".to_vec()), b"c").is_empty());
    }

    #[test]
    fn compaction_keeps_the_live_change_and_drops_deleted_keys() {
        let mut idx = KeyIndex::new();
        idx.record(b"a", put(2, 2, 1));
        idx.record(b"a", put(3, 2, 2));
        idx.record(b"b", put(4, 4, 1));
        idx.record(b"b", tomb(5));
        let removed = idx.compact(5);
        assert_eq!(
            removed.len(),
            2,
            "b's put and a's first put go; b's deletion at 5 stays"
        );
        assert_eq!(idx.get(b"a", 5).map(|e| e.version), Some(2));
        assert_eq!(idx.get(b"b", 5), None);
        let removed = idx.compact(6);
        assert_eq!(removed.len(), 1);
        assert_eq!(idx.key_count(), 1);
    }
}
