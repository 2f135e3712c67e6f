//! Applying log entries to the store: [`ApplyBatch`] covers a run of entries and commits them as
//! one engine batch; [`RequestWrite`] is one request inside it, mirroring etcd's write
//! transaction (all changes share one revision; reads inside it see its own writes).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use parking_lot::RwLockWriteGuard;
use prost::Message;

use super::index::{IndexEntry, KeyIndex, RangeEnd};
use super::lease::{LeaseRecord, lease_key};
use super::revision::Revision;
use super::store::{
    KvRead, KvWrite, META_COMPACT, META_REVISION, MvccStore, RangeOptions, RangeResult, range_at,
};
use crate::error::EtcdError;
use crate::proto::mvccpb::{Event, KeyValue, event::EventType};
use crate::storage::{StorageError, WriteBatch};

/// Applies a run of log entries to the store; see the module docs for its guarantees.
pub struct ApplyBatch<'a> {
    pub(super) store: &'a MvccStore,
    pub(super) index: RwLockWriteGuard<'a, KeyIndex>,
    pub(super) rev: i64,
    pub(super) compact_rev: i64,
    pub(super) batch: WriteBatch,
    pub(super) overlay: HashMap<Revision, KeyValue>,
    pub(super) events: Vec<Event>,
    pub(super) in_use_delta: i64,
}

impl<'a> ApplyBatch<'a> {
    /// Starts one request: all its changes share the next revision.
    pub fn request(&mut self) -> RequestWrite<'_, 'a> {
        let begin_rev = self.rev;
        RequestWrite {
            apply: self,
            begin_rev,
            changes: 0,
        }
    }

    /// Compacts history below `rev` (logically and physically) as part of this batch.
    pub fn compact(&mut self, rev: i64) -> Result<i64, EtcdError> {
        if rev <= self.compact_rev {
            return Err(EtcdError::Compacted);
        }
        if rev > self.rev {
            return Err(EtcdError::FutureRev);
        }
        for (r, tombstone) in self.index.compact(rev) {
            let key = r.to_key(tombstone);
            let size = match self.overlay.remove(&r) {
                Some(kv) => kv.encoded_len(),
                None => self
                    .store
                    .ks
                    .get(&key)
                    .map_err(EtcdError::from)?
                    .map_or(0, |v| v.len()),
            };
            self.in_use_delta -= (key.len() + size) as i64;
            self.batch.delete(key);
        }
        self.compact_rev = rev;
        self.batch
            .put(META_COMPACT.to_vec(), rev.to_be_bytes().to_vec());
        Ok(self.rev)
    }

    /// Raises `alarm` for `member`; true when it was not raised before.
    pub fn alarm_activate(&mut self, member: u64, alarm: i32) -> bool {
        let fresh = self.store.alarms.lock().activate(member, alarm);
        self.batch
            .put(super::alarm::alarm_key(member, alarm), Vec::new());
        fresh
    }

    /// Clears `alarm` for `member`; true when it was raised.
    pub fn alarm_deactivate(&mut self, member: u64, alarm: i32) -> bool {
        let was = self.store.alarms.lock().deactivate(member, alarm);
        self.batch.delete(super::alarm::alarm_key(member, alarm));
        was
    }

    /// The store being applied to (outliving this batch's borrows).
    pub fn store(&self) -> &'a MvccStore {
        self.store
    }

    /// Grants lease `id` with `ttl` seconds raised to `min_ttl`; returns the granted TTL.
    pub fn lease_grant(&mut self, id: i64, ttl: i64, min_ttl: i64) -> Result<i64, EtcdError> {
        if id == 0 {
            return Err(EtcdError::LeaseNotFound);
        }
        if ttl > super::lease::MAX_LEASE_TTL {
            return Err(EtcdError::LeaseTtlTooLarge);
        }
        let mut leases = self.store.leases.lock();
        if leases.contains(id) {
            return Err(EtcdError::LeaseExists);
        }
        let record = LeaseRecord {
            id,
            ttl: ttl.max(min_ttl),
        };
        let bytes = postcard::to_stdvec(&record)
            .map_err(|e| EtcdError::Internal(format!("oxcd: encode lease: {e}")))?;
        self.batch.put(lease_key(id), bytes);
        leases.grant(record, Instant::now());
        Ok(record.ttl)
    }

    /// Revokes lease `id`: its keys are deleted in one request (one revision), sorted as etcd
    /// deletes them. Returns the revision after the revoke.
    pub fn lease_revoke(&mut self, id: i64) -> Result<i64, EtcdError> {
        let keys = self
            .store
            .leases
            .lock()
            .revoke(id)
            .ok_or(EtcdError::LeaseNotFound)?;
        self.batch.delete(lease_key(id));
        let mut w = self.request();
        for key in &keys {
            w.delete_changes(key, &RangeEnd::Single);
        }
        Ok(w.finish())
    }

    /// Adds a caller-owned record (e.g. the applied log position) to the same atomic batch.
    pub fn put_meta(&mut self, key: &[u8], value: Vec<u8>) {
        self.batch.put(key.to_vec(), value);
    }

    /// The revision after everything applied so far in this batch.
    pub fn rev(&self) -> i64 {
        self.rev
    }

    /// Writes the batch and publishes the new revision; returns the events it produced in order.
    pub fn commit(mut self) -> Result<Vec<Event>, StorageError> {
        self.batch
            .put(META_REVISION.to_vec(), self.rev.to_be_bytes().to_vec());
        self.store.ks.write(std::mem::take(&mut self.batch))?;
        self.store
            .in_use
            .fetch_add(self.in_use_delta, Ordering::AcqRel);
        self.store
            .compact_rev
            .store(self.compact_rev, Ordering::Release);
        self.store.current_rev.store(self.rev, Ordering::Release);
        Ok(std::mem::take(&mut self.events))
    }
}

/// The changes of one request inside an [`ApplyBatch`], mirroring etcd's write transaction.
pub struct RequestWrite<'b, 'a> {
    apply: &'b mut ApplyBatch<'a>,
    begin_rev: i64,
    changes: i64,
}

impl RequestWrite<'_, '_> {
    fn read_rev(&self) -> i64 {
        if self.changes > 0 {
            self.begin_rev + 1
        } else {
            self.begin_rev
        }
    }

    fn put_change(&mut self, key: &[u8], value: Vec<u8>, lease: i64) -> i64 {
        let rev = self.begin_rev + 1;
        let (create, version, old_lease) = match self.apply.index.get(key, rev) {
            Some(prev) => (prev.create, prev.version + 1, prev.lease),
            None => (rev, 1, 0),
        };
        if old_lease != lease {
            let mut leases = self.apply.store.leases.lock();
            if old_lease != 0 {
                leases.detach(old_lease, key);
            }
            if lease != 0 {
                leases.attach(lease, key);
            }
        }
        let r = Revision::new(rev, self.changes);
        let kv = KeyValue {
            key: key.to_vec(),
            value,
            create_revision: create,
            mod_revision: rev,
            version,
            lease,
        };
        let record = kv.encode_to_vec();
        self.apply.in_use_delta += (17 + record.len()) as i64;
        self.apply.batch.put(r.to_key(false), record);
        self.apply.index.record(
            key,
            IndexEntry {
                rev: r,
                create,
                version,
                lease,
            },
        );
        self.apply.events.push(Event {
            r#type: EventType::Put as i32,
            kv: Some(kv.clone()),
            prev_kv: None,
        });
        self.apply.overlay.insert(r, kv);
        self.changes += 1;
        rev
    }

    pub(super) fn delete_changes(&mut self, key: &[u8], end: &RangeEnd) -> (i64, i64) {
        let at = self.read_rev();
        let mut keys = Vec::new();
        self.apply.index.for_each_live(key, end, at, |k, entry| {
            keys.push((k.to_vec(), entry.lease));
            true
        });
        let rev = self.begin_rev + 1;
        {
            let mut leases = self.apply.store.leases.lock();
            for (k, lease) in keys.iter().filter(|(_, lease)| *lease != 0) {
                leases.detach(*lease, k);
            }
        }
        for (k, _) in &keys {
            let r = Revision::new(rev, self.changes);
            let tomb = KeyValue {
                key: k.clone(),
                ..Default::default()
            };
            let record = tomb.encode_to_vec();
            self.apply.in_use_delta += (18 + record.len()) as i64;
            self.apply.batch.put(r.to_key(true), record);
            self.apply.index.record(
                k,
                IndexEntry {
                    rev: r,
                    create: 0,
                    version: 0,
                    lease: 0,
                },
            );
            let event_kv = KeyValue {
                key: k.clone(),
                mod_revision: rev,
                ..Default::default()
            };
            self.apply.events.push(Event {
                r#type: EventType::Delete as i32,
                kv: Some(event_kv),
                prev_kv: None,
            });
            self.changes += 1;
        }
        let deleted = keys.len() as i64;
        if deleted != 0 || self.changes > 0 {
            (deleted, rev)
        } else {
            (0, self.begin_rev)
        }
    }

    /// True once the request has changed anything (it then consumes a revision).
    pub fn changed(&self) -> bool {
        self.changes > 0
    }

    /// Ends the request; the batch's revision advances if anything changed.
    pub fn finish(self) -> i64 {
        if self.changes > 0 {
            self.apply.rev = self.begin_rev + 1;
        }
        self.apply.rev
    }
}

impl KvWrite for RequestWrite<'_, '_> {
    fn put(&mut self, key: &[u8], value: Vec<u8>, lease: i64) -> Result<i64, EtcdError> {
        Ok(self.put_change(key, value, lease))
    }
    fn delete_range(&mut self, key: &[u8], end: &RangeEnd) -> Result<(i64, i64), EtcdError> {
        Ok(self.delete_changes(key, end))
    }
}

impl KvRead for RequestWrite<'_, '_> {
    fn range(
        &self,
        key: &[u8],
        end: &RangeEnd,
        opts: RangeOptions,
    ) -> Result<RangeResult, EtcdError> {
        range_at(
            &self.apply.index,
            self.apply.store.ks.as_ref(),
            Some(&self.apply.overlay),
            self.read_rev(),
            self.apply.compact_rev,
            key,
            end,
            opts,
        )
    }

    fn rev(&self) -> i64 {
        self.read_rev()
    }

    fn compact_rev(&self) -> i64 {
        self.apply.compact_rev
    }
}
