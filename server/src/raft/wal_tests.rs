//! Tests of the WAL across segment files: appends roll over into new segments, a purge deletes
//! the segments it covers, a truncation removes whole segments and cuts one, and a reopened WAL
//! reads back what the running one held.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use openraft::EntryPayload;
use openraft::testing::log_id;

use super::*;

/// Small enough that every few entries start a segment.
const SMALL_SEGMENT: u64 = 100;

fn append(wal: &Wal, term: u64, indexes: std::ops::RangeInclusive<u64>) {
    for i in indexes {
        let entry = Entry {
            log_id: log_id(term, 1, i),
            payload: EntryPayload::Blank,
        };
        wal.append(&[(entry.log_id, postcard::to_stdvec(&entry).unwrap())])
            .unwrap();
    }
    wal.sync().unwrap();
}

fn ids(wal: &Wal, start: u64, end: u64) -> Vec<(u64, u64)> {
    wal.read(start, end)
        .unwrap()
        .iter()
        .map(|e| (e.log_id.leader_id.term, e.log_id.index))
        .collect()
}

fn segment_files(dir: &Path) -> usize {
    fs::read_dir(dir)
        .unwrap()
        .filter(|d| {
            d.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|e| e == "wal")
        })
        .count()
}

#[test]
fn entries_span_segments_and_read_back_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), SMALL_SEGMENT).unwrap();
    append(&wal, 1, 1..=40);
    assert!(segment_files(dir.path()) > 5);
    let want: Vec<_> = (1..=40).map(|i| (1, i)).collect();
    assert_eq!(ids(&wal, 1, 41), want);
    assert_eq!(ids(&wal, 17, 23), want[16..22]);
    drop(wal);
    let (wal, recovered) = Wal::open(dir.path(), SMALL_SEGMENT).unwrap();
    assert_eq!(recovered.last_entry, Some(log_id(1, 1, 40)));
    assert_eq!(ids(&wal, 0, u64::MAX), want);
}

#[test]
fn a_purge_deletes_covered_segments_and_a_truncation_cuts_across_them() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), SMALL_SEGMENT).unwrap();
    append(&wal, 1, 1..=40);
    let before = segment_files(dir.path());
    wal.purge(log_id(1, 1, 20)).unwrap();
    assert!(segment_files(dir.path()) < before);
    assert_eq!(
        ids(&wal, 0, 25),
        (21..=24).map(|i| (1, i)).collect::<Vec<_>>()
    );

    assert_eq!(wal.truncate(26).unwrap(), Some(log_id(1, 1, 25)));
    append(&wal, 2, 26..=30);
    drop(wal);
    let (wal, recovered) = Wal::open(dir.path(), SMALL_SEGMENT).unwrap();
    assert_eq!(recovered.meta.purged, Some(log_id(1, 1, 20)));
    assert_eq!(recovered.last_entry, Some(log_id(2, 1, 30)));
    let mut want: Vec<_> = (21..=25).map(|i| (1, i)).collect();
    want.extend((26..=30).map(|i| (2, i)));
    assert_eq!(ids(&wal, 0, u64::MAX), want);
}

#[test]
fn a_purge_past_the_end_leaves_one_segment_and_the_log_continues_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), SMALL_SEGMENT).unwrap();
    append(&wal, 1, 1..=10);
    wal.purge(log_id(3, 1, 100)).unwrap();
    assert_eq!(segment_files(dir.path()), 1);
    append(&wal, 4, 101..=102);
    drop(wal);
    let (wal, recovered) = Wal::open(dir.path(), SMALL_SEGMENT).unwrap();
    assert_eq!(recovered.last_entry, Some(log_id(4, 1, 102)));
    assert_eq!(ids(&wal, 0, u64::MAX), vec![(4, 101), (4, 102)]);
}

#[test]
fn a_damaged_record_before_the_last_segment_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), SMALL_SEGMENT).unwrap();
    append(&wal, 1, 1..=20);
    drop(wal);
    let first = dir.path().join(wal_disk::segment_name(1));
    let mut bytes = fs::read(&first).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&first, bytes).unwrap();
    let err = Wal::open(dir.path(), SMALL_SEGMENT).unwrap_err();
    assert!(matches!(err, WalError::Corrupt { .. }), "{err}");
    assert!(
        err.to_string().contains(&wal_disk::segment_name(1)),
        "{err}"
    );
}

#[test]
fn nothing_past_the_last_whole_record_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), 4096).unwrap();
    append(&wal, 1, 1..=3);
    drop(wal);
    // An unsynced append that reached the disk after a gap of zeros (out of order).
    let path = dir.path().join(wal_disk::segment_name(1));
    let bytes = fs::read(&path).unwrap();
    let mut reader = super::super::wal_record::Reader::new(&bytes, 0);
    while reader.next_record().unwrap().is_some() {}
    let end = reader.offset();
    let stale = Entry {
        log_id: log_id(1, 1, 4),
        payload: EntryPayload::Blank,
    };
    let mut record = Vec::new();
    encode_entry(4, &postcard::to_stdvec(&stale).unwrap(), &mut record);
    let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &record, end + 16).unwrap();

    let (wal, recovered) = Wal::open(dir.path(), 4096).unwrap();
    assert_eq!(recovered.last_entry, Some(log_id(1, 1, 3)));
    let after = fs::read(&path).unwrap();
    assert!(
        after[end as usize..].iter().all(|b| *b == 0),
        "the stale record is gone"
    );
    // Appends continue at the end; entry 4 is the new one.
    append(&wal, 2, 4..=4);
    drop(wal);
    let (wal, _) = Wal::open(dir.path(), 4096).unwrap();
    assert_eq!(ids(&wal, 4, 5), vec![(2, 4)]);
}
