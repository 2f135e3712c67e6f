//! The multi-version key-value store: revision records on the engine plus the in-memory key index.
//!
//! Reads run against the *published* state (the revision after the last committed apply batch)
//! under the index's read lock, so they never see a half-applied request. Writes happen only
//! through [`ApplyBatch`], which the Raft state machine drives in log order: it holds the index's
//! write lock, stages every record in one engine batch and publishes the new revision only after
//! that batch is written, so a crash leaves either all of a log entry's effects or none.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use parking_lot::{Mutex, RwLock};
use prost::Message;

use super::alarm::{ALARM_PREFIX, AlarmSet, parse_alarm_key};
use super::apply::ApplyBatch;
use super::index::{IndexEntry, KeyIndex, RangeEnd};
use super::lease::{LEASE_PREFIX, LeaseRecord, LeaseTable};
use super::revision::{REV_PREFIX, Revision};
use crate::error::EtcdError;
use crate::proto::mvccpb::{Event, KeyValue, event::EventType};
use crate::storage::{Keyspace, StorageError, WriteBatch};
use std::collections::HashMap;

pub(super) const META_REVISION: &[u8] = b"m/revision";
pub(super) const META_COMPACT: &[u8] = b"m/compact";

/// Options of a store-level range read.
#[derive(Debug, Clone, Copy, Default)]
pub struct RangeOptions {
    /// Maximum number of key-values to return (0 = all); `count` still covers the whole range.
    pub limit: usize,
    /// Revision to read at (0 or less = current).
    pub rev: i64,
    /// Return only the count.
    pub count_only: bool,
}

/// What a store-level range read found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RangeResult {
    /// Live key-values in key order (at most `limit`).
    pub kvs: Vec<KeyValue>,
    /// Number of live keys in the range.
    pub count: i64,
    /// The store revision the read was served at (header revision).
    pub rev: i64,
}

/// Anything ranges can be served from: the published store or a write in progress.
pub trait KvRead {
    /// Reads the live key-values of `[key, end)` per `opts`.
    fn range(
        &self,
        key: &[u8],
        end: &RangeEnd,
        opts: RangeOptions,
    ) -> Result<RangeResult, EtcdError>;
    /// The revision a read with `rev = 0` is served at.
    fn rev(&self) -> i64;
    /// The compacted revision (-1 before any compaction).
    fn compact_rev(&self) -> i64;
}

/// A view that Put, DeleteRange and Txn can write through.
pub trait KvWrite: KvRead {
    /// Stores `key` = `value` with `lease`; returns the revision of the change.
    fn put(&mut self, key: &[u8], value: Vec<u8>, lease: i64) -> Result<i64, EtcdError>;
    /// Deletes the live keys of the range; returns how many and the response revision.
    fn delete_range(&mut self, key: &[u8], end: &RangeEnd) -> Result<(i64, i64), EtcdError>;
}

/// The published store seen through [`KvWrite`], for read-only Txns served without the log;
/// a write through it is a bug in the caller's read-only check and fails.
pub struct ReadOnly<'a>(pub &'a MvccStore);

impl KvRead for ReadOnly<'_> {
    fn range(
        &self,
        key: &[u8],
        end: &RangeEnd,
        opts: RangeOptions,
    ) -> Result<RangeResult, EtcdError> {
        self.0.range(key, end, opts)
    }
    fn rev(&self) -> i64 {
        self.0.rev()
    }
    fn compact_rev(&self) -> i64 {
        KvRead::compact_rev(self.0)
    }
}

impl KvWrite for ReadOnly<'_> {
    fn put(&mut self, _: &[u8], _: Vec<u8>, _: i64) -> Result<i64, EtcdError> {
        Err(EtcdError::Internal(
            "oxcd: write inside a read-only transaction".into(),
        ))
    }
    fn delete_range(&mut self, _: &[u8], _: &RangeEnd) -> Result<(i64, i64), EtcdError> {
        Err(EtcdError::Internal(
            "oxcd: write inside a read-only transaction".into(),
        ))
    }
}

/// The MVCC store over one engine keyspace.
pub struct MvccStore {
    pub(super) ks: Arc<dyn Keyspace>,
    pub(super) index: RwLock<KeyIndex>,
    pub(super) current_rev: AtomicI64,
    pub(super) compact_rev: AtomicI64,
    pub(super) leases: Mutex<LeaseTable>,
    pub(super) alarms: Mutex<AlarmSet>,
    /// Bytes of revision records kept (keys + values): what the backend quota applies to.
    pub(super) in_use: AtomicI64,
}

fn read_i64(ks: &dyn Keyspace, key: &[u8]) -> Result<Option<i64>, StorageError> {
    match ks.get(key)? {
        None => Ok(None),
        Some(v) => {
            let bytes: [u8; 8] = v.as_slice().try_into().map_err(|_| StorageError::Corrupt {
                what: String::from_utf8_lossy(key).into_owned(),
            })?;
            Ok(Some(i64::from_be_bytes(bytes)))
        }
    }
}

fn decode_kv(bytes: &[u8], rev: Revision) -> Result<KeyValue, StorageError> {
    KeyValue::decode(bytes).map_err(|_| StorageError::Corrupt {
        what: format!("revision {rev:?}"),
    })
}

impl MvccStore {
    /// Opens the store in `ks`, rebuilding the key index from the revision records.
    pub fn open(ks: Arc<dyn Keyspace>) -> Result<Self, StorageError> {
        let (index, current, compact, in_use) = rebuild(ks.as_ref())?;
        let leases = load_leases(ks.as_ref(), &index, current)?;
        let alarms = load_alarms(ks.as_ref())?;
        Ok(Self {
            ks,
            index: RwLock::new(index),
            current_rev: AtomicI64::new(current),
            compact_rev: AtomicI64::new(compact),
            leases: Mutex::new(leases),
            alarms: Mutex::new(alarms),
            in_use: AtomicI64::new(in_use),
        })
    }

    /// Bytes of revision records kept: what `--quota-backend-bytes` applies to.
    pub fn bytes_in_use(&self) -> i64 {
        self.in_use.load(Ordering::Acquire)
    }

    /// The raised alarms of type `filter` (all for NONE).
    pub fn alarms(
        &self,
        filter: crate::proto::etcdserverpb::AlarmType,
    ) -> Vec<crate::proto::etcdserverpb::AlarmMember> {
        self.alarms.lock().list(filter)
    }

    /// True when some member has `alarm` raised.
    pub fn alarm_raised(&self, alarm: crate::proto::etcdserverpb::AlarmType) -> bool {
        self.alarms.lock().any(alarm)
    }

    /// True when lease `id` exists.
    pub fn lease_exists(&self, id: i64) -> bool {
        self.leases.lock().contains(id)
    }

    /// Renews lease `id` (leader only); its TTL, or `None` when unknown or expired.
    pub fn lease_renew(&self, id: i64) -> Option<i64> {
        self.leases.lock().renew(id, std::time::Instant::now())
    }

    /// LeaseTimeToLive of `id`.
    pub fn lease_time_to_live(&self, id: i64) -> Option<super::lease::TimeToLive> {
        self.leases
            .lock()
            .time_to_live(id, std::time::Instant::now())
    }

    /// Every lease id, ascending.
    pub fn lease_ids(&self) -> Vec<i64> {
        self.leases.lock().ids()
    }

    /// Leases past their expiry, soonest first (leader only).
    pub fn leases_expired(&self, limit: usize) -> Vec<i64> {
        self.leases.lock().expired(std::time::Instant::now(), limit)
    }

    /// Gives every lease its full TTL from now (on becoming leader).
    pub fn leases_refresh(&self) {
        self.leases.lock().refresh_all(std::time::Instant::now());
    }

    /// A caller-owned record stored beside the data (see [`ApplyBatch::put_meta`]).
    pub fn get_meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.ks.get(key)
    }

    /// Runs `read` on the raw keyspace while no apply or compaction can run, with the current
    /// and compacted revisions at that moment: a consistent point-in-time view for snapshots
    /// and hashes.
    pub fn read_frozen<R>(&self, read: impl FnOnce(&dyn Keyspace, i64, i64) -> R) -> R {
        let _frozen = self.index.read();
        let rev = self.current_rev.load(Ordering::Acquire);
        let compact = self.compact_rev.load(Ordering::Acquire);
        read(self.ks.as_ref(), rev, compact)
    }

    /// Number of keys with retained history (for metrics and snapshot status).
    pub fn key_count(&self) -> usize {
        self.index.read().key_count()
    }

    /// The events of revisions `from..=to` in revision order, read from the records, stopping
    /// after `max_revs` distinct revisions; fails with `Compacted` when `from` was compacted.
    pub fn events(&self, from: i64, to: i64, max_revs: usize) -> Result<Vec<Event>, EtcdError> {
        // The read lock keeps compaction from removing records under the scan.
        let _frozen = self.index.read();
        if from < self.compact_rev.load(Ordering::Acquire) {
            return Err(EtcdError::Compacted);
        }
        let mut events = Vec::new();
        let mut revs = 0;
        let end = Revision::scan_start(to.saturating_add(1));
        for pair in self
            .ks
            .range(&Revision::scan_start(from.max(0)), Some(&end))
        {
            let (key, value) = pair?;
            let (rev, tombstone) =
                Revision::from_key(&key).ok_or_else(|| StorageError::Corrupt {
                    what: "a revision key".into(),
                })?;
            if events
                .last()
                .is_none_or(|e: &Event| e.kv.as_ref().map(|kv| kv.mod_revision) != Some(rev.main))
            {
                revs += 1;
                if revs > max_revs {
                    break;
                }
            }
            let mut kv = decode_kv(&value, rev)?;
            let kind = if tombstone {
                kv.mod_revision = rev.main;
                EventType::Delete
            } else {
                EventType::Put
            };
            events.push(Event {
                r#type: kind as i32,
                kv: Some(kv),
                prev_kv: None,
            });
        }
        Ok(events)
    }

    /// Starts applying a batch of log entries; holds the index's write lock until committed.
    pub fn begin_apply(&self) -> ApplyBatch<'_> {
        let index = self.index.write();
        ApplyBatch {
            rev: self.current_rev.load(Ordering::Acquire),
            compact_rev: self.compact_rev.load(Ordering::Acquire),
            store: self,
            index,
            batch: WriteBatch::new(),
            overlay: HashMap::new(),
            events: Vec::new(),
            in_use_delta: 0,
        }
    }
}

/// Reads the lease records and attaches every live key that names one of them.
pub(super) fn load_leases(
    ks: &dyn Keyspace,
    index: &KeyIndex,
    current: i64,
) -> Result<LeaseTable, StorageError> {
    let mut table = LeaseTable::default();
    let now = std::time::Instant::now();
    for pair in ks.range(&[LEASE_PREFIX], Some(&[LEASE_PREFIX + 1])) {
        let (key, value) = pair?;
        let record: LeaseRecord =
            postcard::from_bytes(&value).map_err(|_| StorageError::Corrupt {
                what: format!("lease record {key:?}"),
            })?;
        table.grant(record, now);
    }
    index.for_each_live(&[], &RangeEnd::Unbounded, current, |key, entry| {
        if entry.lease != 0 {
            table.attach(entry.lease, key);
        }
        true
    });
    Ok(table)
}

/// Reads the raised alarms.
pub(super) fn load_alarms(ks: &dyn Keyspace) -> Result<AlarmSet, StorageError> {
    let mut set = AlarmSet::default();
    for pair in ks.range(&[ALARM_PREFIX], Some(&[ALARM_PREFIX + 1])) {
        let (key, _) = pair?;
        let (member, alarm) = parse_alarm_key(&key).ok_or_else(|| StorageError::Corrupt {
            what: "an alarm record".into(),
        })?;
        set.activate(member, alarm);
    }
    Ok(set)
}

/// Reads the index, current revision, compacted revision and bytes in use back from the records.
pub(super) fn rebuild(ks: &dyn Keyspace) -> Result<(KeyIndex, i64, i64, i64), StorageError> {
    let mut index = KeyIndex::new();
    let mut last_rev = 1;
    let mut in_use = 0i64;
    for pair in ks.range(&[REV_PREFIX], Some(&[REV_PREFIX + 1])) {
        let (key, value) = pair?;
        in_use += (key.len() + value.len()) as i64;
        let (rev, tombstone) = Revision::from_key(&key).ok_or_else(|| StorageError::Corrupt {
            what: "a revision key".into(),
        })?;
        let kv = decode_kv(&value, rev)?;
        let entry = if tombstone {
            IndexEntry {
                rev,
                create: 0,
                version: 0,
                lease: 0,
            }
        } else {
            IndexEntry {
                rev,
                create: kv.create_revision,
                version: kv.version,
                lease: kv.lease,
            }
        };
        index.record(&kv.key, entry);
        last_rev = rev.main;
    }
    let current = read_i64(ks, META_REVISION)?.unwrap_or(1).max(last_rev);
    let compact = read_i64(ks, META_COMPACT)?.unwrap_or(-1);
    if compact > 0 {
        // Records a crash left behind mid-compaction are unreachable; drop them now.
        let mut batch = WriteBatch::new();
        for (rev, tombstone) in index.compact(compact) {
            let key = rev.to_key(tombstone);
            if let Some(v) = ks.get(&key)? {
                in_use -= (key.len() + v.len()) as i64;
            }
            batch.delete(key);
        }
        ks.write(batch)?;
    }
    Ok((index, current, compact, in_use))
}

impl KvRead for MvccStore {
    fn range(
        &self,
        key: &[u8],
        end: &RangeEnd,
        opts: RangeOptions,
    ) -> Result<RangeResult, EtcdError> {
        let index = self.index.read();
        let rev = self.current_rev.load(Ordering::Acquire);
        let compact = self.compact_rev.load(Ordering::Acquire);
        range_at(&index, self.ks.as_ref(), None, rev, compact, key, end, opts)
    }

    fn rev(&self) -> i64 {
        self.current_rev.load(Ordering::Acquire)
    }

    fn compact_rev(&self) -> i64 {
        self.compact_rev.load(Ordering::Acquire)
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn range_at(
    index: &KeyIndex,
    ks: &dyn Keyspace,
    overlay: Option<&HashMap<Revision, KeyValue>>,
    cur_rev: i64,
    compact_rev: i64,
    key: &[u8],
    end: &RangeEnd,
    opts: RangeOptions,
) -> Result<RangeResult, EtcdError> {
    if opts.rev > cur_rev {
        return Err(EtcdError::FutureRev);
    }
    let at = if opts.rev <= 0 { cur_rev } else { opts.rev };
    if at < compact_rev {
        return Err(EtcdError::Compacted);
    }
    let mut count = 0i64;
    let mut revs = Vec::new();
    index.for_each_live(key, end, at, |_, entry| {
        count += 1;
        if !opts.count_only && (opts.limit == 0 || revs.len() < opts.limit) {
            revs.push(entry.rev);
        }
        true
    });
    let mut kvs = Vec::with_capacity(revs.len());
    for rev in revs {
        if let Some(kv) = overlay.and_then(|o| o.get(&rev)) {
            kvs.push(kv.clone());
            continue;
        }
        let bytes = ks
            .get(&rev.to_key(false))?
            .ok_or_else(|| StorageError::Corrupt {
                what: format!("missing revision {rev:?}"),
            })?;
        kvs.push(decode_kv(&bytes, rev)?);
    }
    Ok(RangeResult {
        kvs,
        count,
        rev: cur_rev,
    })
}
