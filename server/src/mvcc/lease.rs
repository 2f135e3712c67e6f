//! The lease table: every lease's TTL and attached keys, plus, on the leader, when it expires.
//!
//! Leases and their TTLs are replicated state (granted and revoked through the log, persisted as
//! `l|id` records beside the key-value records); the attached keys are derived from the keys'
//! `lease` fields. Expiry times are leader-local, as in etcd: a new leader (or a restarted
//! member) gives every lease its full TTL again.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Prefix of lease records in the MVCC keyspace.
pub const LEASE_PREFIX: u8 = b'l';

/// etcd's largest grantable TTL in seconds.
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// The storage key of lease `id`.
pub fn lease_key(id: i64) -> Vec<u8> {
    let mut key = Vec::with_capacity(9);
    key.push(LEASE_PREFIX);
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// A lease as persisted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The lease id.
    pub id: i64,
    /// Granted TTL in seconds (after raising to the minimum).
    pub ttl: i64,
}

/// One lease in memory.
#[derive(Debug, Clone)]
struct Lease {
    ttl: i64,
    keys: BTreeSet<Vec<u8>>,
    expiry: Option<Instant>,
}

/// What LeaseTimeToLive reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeToLive {
    /// Whole seconds left (etcd truncates).
    pub remaining: i64,
    /// Granted TTL.
    pub granted: i64,
    /// Attached keys, sorted.
    pub keys: Vec<Vec<u8>>,
}

/// All leases of a member.
#[derive(Debug, Default)]
pub struct LeaseTable {
    leases: BTreeMap<i64, Lease>,
}

impl LeaseTable {
    /// Adds a lease that expires `ttl` seconds after `now`.
    pub fn grant(&mut self, record: LeaseRecord, now: Instant) {
        let expiry = Some(now + Duration::from_secs(u64::try_from(record.ttl).unwrap_or(0)));
        self.leases.insert(
            record.id,
            Lease {
                ttl: record.ttl,
                keys: BTreeSet::new(),
                expiry,
            },
        );
    }

    /// Removes a lease; returns its attached keys, sorted.
    pub fn revoke(&mut self, id: i64) -> Option<Vec<Vec<u8>>> {
        self.leases
            .remove(&id)
            .map(|l| l.keys.into_iter().collect())
    }

    /// True when lease `id` exists.
    pub fn contains(&self, id: i64) -> bool {
        self.leases.contains_key(&id)
    }

    /// Attaches `key` to lease `id` (ignored for unknown leases).
    pub fn attach(&mut self, id: i64, key: &[u8]) {
        if let Some(l) = self.leases.get_mut(&id) {
            l.keys.insert(key.to_vec());
        }
    }

    /// Detaches `key` from lease `id`.
    pub fn detach(&mut self, id: i64, key: &[u8]) {
        if let Some(l) = self.leases.get_mut(&id) {
            l.keys.remove(key);
        }
    }

    /// Restarts every lease's full TTL from `now` (a member becoming leader).
    pub fn refresh_all(&mut self, now: Instant) {
        for l in self.leases.values_mut() {
            l.expiry = Some(now + Duration::from_secs(u64::try_from(l.ttl).unwrap_or(0)));
        }
    }

    /// Renews lease `id` from `now`; its TTL, or `None` when it does not exist or already expired.
    pub fn renew(&mut self, id: i64, now: Instant) -> Option<i64> {
        let l = self.leases.get_mut(&id)?;
        if l.expiry.is_some_and(|e| e <= now) {
            return None;
        }
        l.expiry = Some(now + Duration::from_secs(u64::try_from(l.ttl).unwrap_or(0)));
        Some(l.ttl)
    }

    /// Leases whose expiry has passed at `now`, soonest first, at most `limit`.
    pub fn expired(&self, now: Instant, limit: usize) -> Vec<i64> {
        let mut due: Vec<(Instant, i64)> = self
            .leases
            .iter()
            .filter_map(|(id, l)| l.expiry.filter(|e| *e <= now).map(|e| (e, *id)))
            .collect();
        due.sort();
        due.into_iter().take(limit).map(|(_, id)| id).collect()
    }

    /// LeaseTimeToLive of `id` at `now`.
    pub fn time_to_live(&self, id: i64, now: Instant) -> Option<TimeToLive> {
        let l = self.leases.get(&id)?;
        let remaining = l.expiry.map_or(l.ttl, |e| {
            i64::try_from(e.saturating_duration_since(now).as_secs()).unwrap_or(i64::MAX)
        });
        Some(TimeToLive {
            remaining,
            granted: l.ttl,
            keys: l.keys.iter().cloned().collect(),
        })
    }

    /// Every lease id, ascending.
    pub fn ids(&self) -> Vec<i64> {
        self.leases.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_attach_and_detach_and_revoke_returns_them_sorted() {
        let now = Instant::now();
        let mut t = LeaseTable::default();
        t.grant(LeaseRecord { id: 7, ttl: 10 }, now);
        t.attach(7, b"b");
        t.attach(7, b"a");
        t.attach(8, b"x");
        t.detach(7, b"b");
        t.attach(7, b"c");
        assert_eq!(t.revoke(7), Some(vec![b"a".to_vec(), b"c".to_vec()]));
        assert!(!t.contains(7));
    }

    #[test]
    fn expiry_renewal_and_time_to_live_follow_the_ttl() {
        let now = Instant::now();
        let mut t = LeaseTable::default();
        t.grant(LeaseRecord { id: 1, ttl: 5 }, now);
        t.grant(LeaseRecord { id: 2, ttl: 60 }, now);
        assert_eq!(
            t.time_to_live(1, now).map(|x| (x.remaining, x.granted)),
            Some((5, 5))
        );
        let later = now + Duration::from_secs(6);
        assert_eq!(t.expired(later, 10), vec![1]);
        assert_eq!(
            t.renew(1, later),
            None,
            "an expired lease cannot be renewed"
        );
        assert_eq!(t.renew(2, later), Some(60));
        assert_eq!(t.time_to_live(2, later).map(|x| x.remaining), Some(60));
    }
}
