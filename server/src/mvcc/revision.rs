//! Revisions and how they are laid out on disk.
//!
//! Every mutating request gets one main revision; each change inside it gets a sub revision.
//! Records are stored under `r | main | sub` (big-endian, so byte order is revision order), with a
//! trailing `t` on deletion records, as etcd's backend does: a scan of the `r` prefix is the
//! complete, ordered history that watch replay and index rebuilds read.

/// Prefix of revision records in the MVCC keyspace.
pub const REV_PREFIX: u8 = b'r';
/// Marker appended to the key of a deletion (tombstone) record.
const TOMBSTONE_MARK: u8 = b't';

/// A (main, sub) revision pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Revision {
    /// The store revision of the request that made the change.
    pub main: i64,
    /// The position of the change inside that request.
    pub sub: i64,
}

impl Revision {
    /// A revision pair.
    pub fn new(main: i64, sub: i64) -> Self {
        Self { main, sub }
    }

    /// The storage key of the record for this revision; `tombstone` marks deletions.
    pub fn to_key(self, tombstone: bool) -> Vec<u8> {
        let mut key = Vec::with_capacity(18);
        key.push(REV_PREFIX);
        key.extend_from_slice(&self.main.to_be_bytes());
        key.extend_from_slice(&self.sub.to_be_bytes());
        if tombstone {
            key.push(TOMBSTONE_MARK);
        }
        key
    }

    /// The first storage key of main revision `main` (for scans starting there).
    pub fn scan_start(main: i64) -> Vec<u8> {
        Self::new(main, 0).to_key(false)
    }

    /// Parses a storage key back into the revision and its tombstone mark.
    pub fn from_key(key: &[u8]) -> Option<(Self, bool)> {
        let (&prefix, rest) = key.split_first()?;
        if prefix != REV_PREFIX || (rest.len() != 16 && rest.len() != 17) {
            return None;
        }
        let main = i64::from_be_bytes(rest.get(0..8)?.try_into().ok()?);
        let sub = i64::from_be_bytes(rest.get(8..16)?.try_into().ok()?);
        let tombstone = match rest.get(16) {
            None => false,
            Some(&TOMBSTONE_MARK) => true,
            Some(_) => return None,
        };
        Some((Self::new(main, sub), tombstone))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_in_revision_order_and_round_trip() {
        let a = Revision::new(2, 7).to_key(false);
        let b = Revision::new(10, 0).to_key(true);
        let c = Revision::new(256, 1).to_key(false);
        assert!(a < b && b < c);
        assert_eq!(Revision::from_key(&b), Some((Revision::new(10, 0), true)));
        assert_eq!(Revision::from_key(&c), Some((Revision::new(256, 1), false)));
        assert_eq!(Revision::from_key(b"mkey"), None);
    }
}
