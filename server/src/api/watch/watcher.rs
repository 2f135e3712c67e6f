//! One watcher of a watch stream: what it watches, where it is in the history, and how its
//! events become responses (filters, per-revision or catch-up batching, fragmentation).

use prost::Message;

use crate::error::EtcdError;
use crate::mvcc::{KvRead, RangeEnd, RangeOptions};
use crate::proto::etcdserverpb::{
    WatchCreateRequest, WatchResponse, watch_create_request::FilterType,
};
use crate::proto::mvccpb::{Event, event::EventType};

/// Most revisions one catch-up response carries, as etcd batches unsynced watchers.
pub const CATCH_UP_MAX_REVS: usize = 1000;

/// A watcher's state.
#[derive(Debug, Clone)]
pub struct Watcher {
    /// Id on its stream.
    pub id: i64,
    key: Vec<u8>,
    end: RangeEnd,
    /// First revision not yet delivered.
    pub next_rev: i64,
    /// The requested start revision (0 = from now).
    pub start_rev: i64,
    no_put: bool,
    no_delete: bool,
    /// Attach the previous key-value to non-create events.
    pub prev_kv: bool,
    /// Split oversized responses.
    pub fragment: bool,
    /// Wants periodic progress notifications.
    pub progress_notify: bool,
    /// Nothing was sent since the last progress tick (etcd's per-watcher progress flag).
    pub progress_due: bool,
    /// Caught up with the live stream of revisions (etcd's "synced" group).
    pub synced: bool,
}

impl Watcher {
    /// A watcher for `req` with id `id` on a store at `current_rev`.
    pub fn new(id: i64, req: &WatchCreateRequest, current_rev: i64) -> Self {
        let key = if req.key.is_empty() {
            vec![0]
        } else {
            req.key.clone()
        };
        let synced = req.start_revision == 0 || req.start_revision > current_rev;
        let next_rev = if synced {
            (current_rev + 1).max(req.start_revision)
        } else {
            req.start_revision
        };
        Self {
            id,
            key,
            end: RangeEnd::from_request(&req.range_end),
            next_rev,
            start_rev: req.start_revision,
            no_put: req.filters.contains(&(FilterType::Noput as i32)),
            no_delete: req.filters.contains(&(FilterType::Nodelete as i32)),
            prev_kv: req.prev_kv,
            fragment: req.fragment,
            progress_notify: req.progress_notify,
            progress_due: true,
            synced,
        }
    }

    /// Whether the watched range is empty (etcd refuses such watchers).
    pub fn range_is_empty(req: &WatchCreateRequest) -> bool {
        let key: &[u8] = if req.key.is_empty() { &[0] } else { &req.key };
        matches!(RangeEnd::from_request(&req.range_end), RangeEnd::Before(end) if key >= end.as_slice())
    }

    /// Whether `key` is in the watched range.
    pub fn contains(&self, key: &[u8]) -> bool {
        match &self.end {
            RangeEnd::Single => key == self.key.as_slice(),
            RangeEnd::Unbounded => key >= self.key.as_slice(),
            RangeEnd::Before(end) => key >= self.key.as_slice() && key < end.as_slice(),
        }
    }

    /// Whether the NOPUT/NODELETE filters drop `event`.
    pub fn filtered(&self, event: &Event) -> bool {
        (self.no_put && event.r#type == EventType::Put as i32)
            || (self.no_delete && event.r#type == EventType::Delete as i32)
    }
}

/// Attaches each non-create event's previous key-value, read at the revision before the event.
/// A previous value below `compacted` (the compact revision when this delivery began) is left
/// out, as etcd leaves it out (an event at the compaction revision itself); one removed by a
/// compaction that applied during the delivery fails with the new compact revision: the
/// watcher then had revisions the store no longer has, and must be cancelled as compacted.
pub fn attach_prev_kvs(
    store: &impl KvRead,
    events: &mut [Event],
    compacted: i64,
) -> Result<(), i64> {
    for event in events.iter_mut().filter(|e| !is_create(e)) {
        let Some(kv) = &event.kv else { continue };
        let opts = RangeOptions {
            rev: kv.mod_revision - 1,
            ..Default::default()
        };
        match store.range(&kv.key, &RangeEnd::Single, opts) {
            Ok(rr) => event.prev_kv = rr.kvs.into_iter().next(),
            Err(EtcdError::Compacted) if store.compact_rev() > compacted => {
                return Err(store.compact_rev());
            }
            // Any other failure leaves the event as etcd would: without its previous value.
            Err(_) => {}
        }
    }
    Ok(())
}

/// True for the event that created a key (no previous value to attach).
pub fn is_create(event: &Event) -> bool {
    event.r#type == EventType::Put as i32
        && event
            .kv
            .as_ref()
            .is_some_and(|kv| kv.create_revision == kv.mod_revision)
}

/// Splits `resp` into fragments below `max_bytes`, as etcd does for watchers created with
/// `fragment`: every part but the last carries `fragment = true`; a single event is never split.
pub fn fragments(resp: WatchResponse, max_bytes: usize) -> Vec<WatchResponse> {
    if resp.encoded_len() < max_bytes || resp.events.len() < 2 {
        return vec![resp];
    }
    let mut parts = Vec::new();
    let mut shell = resp.clone();
    shell.events.clear();
    shell.fragment = true;
    let mut current = shell.clone();
    for event in resp.events {
        current.events.push(event);
        if current.events.len() > 1 && current.encoded_len() >= max_bytes {
            let overflow = current.events.pop();
            parts.push(std::mem::replace(&mut current, shell.clone()));
            current.events.extend(overflow);
        }
    }
    current.fragment = false;
    parts.push(current);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::mvccpb::KeyValue;

    fn put(key: &str, value_len: usize) -> Event {
        Event {
            r#type: EventType::Put as i32,
            kv: Some(KeyValue {
                key: key.into(),
                value: vec![b'x'; value_len],
                ..Default::default()
            }),
            prev_kv: None,
        }
    }

    #[test]
    fn prefix_and_single_key_watchers_match_their_keys() {
        let req = WatchCreateRequest {
            key: b"a".to_vec(),
            range_end: b"b".to_vec(),
            ..Default::default()
        };
        let w = Watcher::new(0, &req, 5);
        assert!(w.contains(b"a/1") && !w.contains(b"b"));
        assert_eq!(w.next_rev, 6);
        let single = Watcher::new(
            1,
            &WatchCreateRequest {
                key: b"k".to_vec(),
                ..Default::default()
            },
            5,
        );
        assert!(single.contains(b"k") && !single.contains(b"k2"));
    }

    #[test]
    fn large_responses_split_into_fragments_with_the_flag_on_all_but_the_last() {
        let resp = WatchResponse {
            events: (0..10).map(|i| put(&format!("k{i}"), 100)).collect(),
            ..Default::default()
        };
        let parts = fragments(resp, 350);
        assert!(parts.len() > 1);
        assert!(parts[..parts.len() - 1].iter().all(|p| p.fragment));
        assert!(!parts[parts.len() - 1].fragment);
        assert_eq!(parts.iter().map(|p| p.events.len()).sum::<usize>(), 10);
    }

    /// One key's history: value `v<rev>` at every revision from 2 on, compacted at `compacted`.
    struct History {
        compacted: i64,
    }

    impl KvRead for History {
        fn range(
            &self,
            key: &[u8],
            _end: &RangeEnd,
            opts: RangeOptions,
        ) -> Result<crate::mvcc::store::RangeResult, EtcdError> {
            if opts.rev < self.compacted {
                return Err(EtcdError::Compacted);
            }
            let kv = KeyValue {
                key: key.to_vec(),
                value: format!("v{}", opts.rev).into_bytes(),
                mod_revision: opts.rev,
                create_revision: 2,
                ..Default::default()
            };
            Ok(crate::mvcc::store::RangeResult {
                kvs: vec![kv],
                count: 1,
                rev: opts.rev,
            })
        }
        fn rev(&self) -> i64 {
            10
        }
        fn compact_rev(&self) -> i64 {
            self.compacted
        }
    }

    fn update(rev: i64) -> Event {
        Event {
            r#type: EventType::Put as i32,
            kv: Some(KeyValue {
                key: b"k".to_vec(),
                mod_revision: rev,
                create_revision: 2,
                ..Default::default()
            }),
            prev_kv: None,
        }
    }

    #[test]
    fn previous_values_come_from_the_revision_before_each_event() {
        let mut events = vec![update(2), update(5), update(6)];
        assert_eq!(
            attach_prev_kvs(&History { compacted: 4 }, &mut events, 4),
            Ok(())
        );
        // The create has no previous value; the updates carry the value one revision earlier.
        assert!(events[0].prev_kv.is_none());
        assert_eq!(
            events[1].prev_kv.as_ref().map(|kv| kv.value.as_slice()),
            Some(&b"v4"[..])
        );
        assert_eq!(
            events[2].prev_kv.as_ref().map(|kv| kv.value.as_slice()),
            Some(&b"v5"[..])
        );
    }

    #[test]
    fn a_previous_value_compacted_during_the_delivery_fails_with_the_compact_revision() {
        let mut events = vec![update(5), update(8)];
        assert_eq!(
            attach_prev_kvs(&History { compacted: 7 }, &mut events, 3),
            Err(7)
        );
    }

    #[test]
    fn a_previous_value_compacted_before_the_delivery_is_left_out_as_etcd_does() {
        // Watching from the compaction revision: the event there has its previous value below.
        let mut events = vec![update(7), update(8)];
        assert_eq!(
            attach_prev_kvs(&History { compacted: 7 }, &mut events, 7),
            Ok(())
        );
        assert!(events[0].prev_kv.is_none());
        assert!(events[1].prev_kv.is_some());
    }
}
