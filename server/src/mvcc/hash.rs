//! Consistency hashes of the store: HashKV, which is bit for bit etcd's value for the same
//! history, and the whole-store hash of the Hash RPC, which is oxcd's own.
//!
//! HashKV follows etcd's `kvHasher`: a CRC-32C (Castagnoli) that starts with etcd's bucket name
//! `key`, then takes every revision record up to the hashed revision, in revision order, as etcd
//! stores it: the revision key (`main` 8 bytes big-endian, `_`, `sub` 8 bytes big-endian, and `t`
//! for a deletion) followed by the `mvccpb.KeyValue` protobuf (prost encodes it exactly as etcd
//! does). Records at or below the compaction revision count only when they are what a compaction
//! at the hashed revision would keep (the change of each key live there), unless nothing would be
//! kept at all, and a deletion exactly at the compaction revision never counts (etcd skips it so
//! members that did and did not keep it agree). Our records and compaction rules are etcd's, so
//! the same history hashes to the same value.
//!
//! etcd also remembers the hashes it computed while compacting (the ten newest, in memory) and
//! answers HashKV at exactly such a revision from that cache; oxcd always hashes the records, which
//! is what an etcd member answers once it has restarted since the compaction.
//!
//! The Hash RPC hashes etcd's bbolt file, whose bytes oxcd cannot reproduce. oxcd's Hash is a
//! CRC-32C over every record of the MVCC keyspace except Raft's own (applied position and
//! membership), key then value, in key order: equal on members with equal state, and equal to
//! the hash `oxcd snapshot status` prints for a snapshot taken at the same moment.

use std::collections::{HashMap, HashSet};

use prost::Message;

use super::revision::Revision;
use crate::error::EtcdError;
use crate::storage::{Keyspace, StorageError};

/// The bucket name etcd's HashKV hash starts with.
const KEY_BUCKET: &[u8] = b"key";

/// Records of the MVCC keyspace that belong to Raft (applied log position, membership): they are
/// per-member bookkeeping, not replicated data, so hashes and snapshots leave them out.
const RAFT_RECORDS: [&[u8]; 2] = [b"m/applied", b"m/membership"];

/// True for a record that belongs to Raft rather than to the replicated data.
pub fn is_raft_record(key: &[u8]) -> bool {
    RAFT_RECORDS.contains(&key)
}

/// What HashKV reports: the hash, the compaction revision it honoured and the revision hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvHash {
    /// CRC-32C of the history, etcd's value.
    pub hash: u32,
    /// The store's compaction revision when hashing (-1 before any compaction).
    pub compact_revision: i64,
    /// The revision the history was hashed up to.
    pub revision: i64,
}

/// Only the key of an `mvccpb.KeyValue`; decoding skips the other fields without copying them.
#[derive(Clone, PartialEq, prost::Message)]
struct KeyOnly {
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
}

fn corrupt_revision_key() -> StorageError {
    StorageError::Corrupt {
        what: "a revision key".into(),
    }
}

/// The revision records with `main <= upto` in revision order.
fn records_upto(
    ks: &dyn Keyspace,
    upto: i64,
) -> impl Iterator<Item = Result<(Revision, bool, Vec<u8>), StorageError>> + '_ {
    let end = Revision::scan_start(upto.max(0).saturating_add(1));
    ks.range(&Revision::scan_start(0), Some(&end)).map(|pair| {
        let (key, value) = pair?;
        let (rev, tombstone) = Revision::from_key(&key).ok_or_else(corrupt_revision_key)?;
        Ok((rev, tombstone, value))
    })
}

/// etcd's `Keep(rev)`: the revision of every key's change live at `rev` (deleted keys have none).
fn keep_at(ks: &dyn Keyspace, rev: i64) -> Result<HashSet<Revision>, StorageError> {
    let mut latest: HashMap<Vec<u8>, (Revision, bool)> = HashMap::new();
    for record in records_upto(ks, rev) {
        let (r, tombstone, value) = record?;
        let key = KeyOnly::decode(value.as_slice())
            .map_err(|_| StorageError::Corrupt {
                what: format!("revision {r:?}"),
            })?
            .key;
        latest.insert(key, (r, tombstone));
    }
    Ok(latest
        .into_values()
        .filter(|(_, tombstone)| !tombstone)
        .map(|(r, _)| r)
        .collect())
}

/// etcd's key of a revision record: `main`, `_`, `sub` (big-endian), `t` for a deletion.
pub fn etcd_revision_key(rev: Revision, tombstone: bool) -> Vec<u8> {
    let mut key = Vec::with_capacity(18);
    key.extend_from_slice(&rev.main.to_be_bytes());
    key.push(b'_');
    key.extend_from_slice(&rev.sub.to_be_bytes());
    if tombstone {
        key.push(b't');
    }
    key
}

/// etcd's `kvHasher`: decides which records count and folds them into the CRC.
struct KvHasher {
    crc: u32,
    compact_revision: i64,
    revision: i64,
    keep: HashSet<Revision>,
}

impl KvHasher {
    fn new(compact_revision: i64, revision: i64, keep: HashSet<Revision>) -> Self {
        Self {
            crc: crc32c::crc32c(KEY_BUCKET),
            compact_revision,
            revision,
            keep,
        }
    }

    fn write(&mut self, rev: Revision, tombstone: bool, value: &[u8]) {
        if rev.main > self.revision {
            return;
        }
        // At or below the compaction only what a compaction at `revision` keeps counts, unless
        // it would keep nothing.
        if rev.main <= self.compact_revision && !self.keep.is_empty() && !self.keep.contains(&rev) {
            return;
        }
        if rev.main == self.compact_revision && tombstone {
            return;
        }
        self.crc = crc32c::crc32c_append(self.crc, &etcd_revision_key(rev, tombstone));
        self.crc = crc32c::crc32c_append(self.crc, value);
    }

    fn finish(self) -> KvHash {
        KvHash {
            hash: self.crc,
            compact_revision: self.compact_revision,
            revision: self.revision,
        }
    }
}

/// etcd's HashKV over a frozen view of the keyspace at store revision `current` with compaction
/// revision `compact`: `rev` 0 hashes the current revision; a compacted or future `rev` fails
/// with etcd's errors.
pub fn hash_kv(
    ks: &dyn Keyspace,
    current: i64,
    compact: i64,
    rev: i64,
) -> Result<KvHash, EtcdError> {
    if rev > 0 && rev < compact {
        return Err(EtcdError::Compacted);
    }
    if rev > 0 && rev > current {
        return Err(EtcdError::FutureRev);
    }
    let rev = if rev == 0 { current } else { rev };
    // Before any compaction no record lies at or below it, so the keep set is never consulted.
    let keep = if compact >= 1 {
        keep_at(ks, rev)?
    } else {
        HashSet::new()
    };
    let mut hasher = KvHasher::new(compact, rev, keep);
    if rev >= 1 {
        for record in records_upto(ks, rev) {
            let (r, tombstone, value) = record?;
            hasher.write(r, tombstone, &value);
        }
    }
    Ok(hasher.finish())
}

/// Folds one record into oxcd's record hash (the Hash RPC and `snapshot status`).
pub fn crc_record(crc: u32, key: &[u8], value: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c_append(crc, key), value)
}

/// oxcd's Hash RPC value: CRC-32C over every record of the MVCC keyspace except Raft's.
pub fn hash_store(ks: &dyn Keyspace) -> Result<u32, StorageError> {
    let mut crc = 0;
    for pair in ks.range(&[], None) {
        let (key, value) = pair?;
        if !is_raft_record(&key) {
            crc = crc_record(crc, &key, &value);
        }
    }
    Ok(crc)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::proto::mvccpb::KeyValue;
    use crate::storage::{Engine, WriteBatch, sled_engine::SledEngine};

    fn put(batch: &mut WriteBatch, main: i64, key: &str, create: i64, version: i64) {
        let kv = KeyValue {
            key: key.as_bytes().to_vec(),
            value: format!("v{main}").into_bytes(),
            create_revision: create,
            mod_revision: main,
            version,
            lease: 0,
        };
        batch.put(Revision::new(main, 0).to_key(false), kv.encode_to_vec());
    }

    fn tomb(batch: &mut WriteBatch, main: i64, key: &str) {
        let kv = KeyValue {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        };
        batch.put(Revision::new(main, 0).to_key(true), kv.encode_to_vec());
    }

    #[test]
    fn crc32c_is_castagnoli() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn revision_keys_are_etcds() {
        let key = etcd_revision_key(Revision::new(258, 1), true);
        assert_eq!(key, b"\0\0\0\0\0\0\x01\x02_\0\0\0\0\0\0\0\x01t".to_vec());
    }

    #[test]
    fn hash_kv_honours_compaction_keep_and_refuses_compacted_and_future_revisions() {
        let dir = tempfile::tempdir().unwrap();
        let engine = SledEngine::open(dir.path(), 1 << 20).unwrap();
        let ks = engine.keyspace("mvcc").unwrap();
        let mut batch = WriteBatch::new();
        // a: put 2, put 4; b: put 3, deleted 5 (kept: the deletion is at the compaction).
        put(&mut batch, 2, "a", 2, 1);
        put(&mut batch, 3, "b", 3, 1);
        put(&mut batch, 4, "a", 2, 2);
        tomb(&mut batch, 5, "b");
        put(&mut batch, 6, "c", 6, 1);
        ks.write(batch).unwrap();
        let full = hash_kv(ks.as_ref(), 6, -1, 0).unwrap();
        assert_eq!((full.revision, full.compact_revision), (6, -1));
        // After a compaction at 5 the records etcd keeps are a@4 and b's deletion@5.
        let mut batch = WriteBatch::new();
        batch.delete(Revision::new(2, 0).to_key(false));
        batch.delete(Revision::new(3, 0).to_key(false));
        ks.write(batch).unwrap();
        let compacted = hash_kv(ks.as_ref(), 6, 5, 0).unwrap();
        let mut crc = crc32c::crc32c(b"key");
        for (main, tombstone) in [(4, false), (6, false)] {
            let rev = Revision::new(main, 0);
            let value = ks.get(&rev.to_key(tombstone)).unwrap().unwrap();
            crc = crc_record(crc, &etcd_revision_key(rev, tombstone), &value);
        }
        assert_eq!(compacted.hash, crc);
        assert_eq!(hash_kv(ks.as_ref(), 6, 5, 4), Err(EtcdError::Compacted));
        assert_eq!(hash_kv(ks.as_ref(), 6, 5, 7), Err(EtcdError::FutureRev));
        assert_eq!(hash_kv(ks.as_ref(), 6, 5, 5).unwrap().revision, 5);
    }

    #[test]
    fn store_hash_ignores_raft_records() {
        let dir = tempfile::tempdir().unwrap();
        let engine = SledEngine::open(dir.path(), 1 << 20).unwrap();
        let ks = engine.keyspace("mvcc").unwrap();
        let mut batch = WriteBatch::new();
        put(&mut batch, 2, "a", 2, 1);
        ks.write(batch).unwrap();
        let before = hash_store(ks.as_ref()).unwrap();
        let mut batch = WriteBatch::new();
        batch.put(b"m/applied".to_vec(), b"x".to_vec());
        ks.write(batch).unwrap();
        assert_eq!(hash_store(ks.as_ref()).unwrap(), before);
    }
}
