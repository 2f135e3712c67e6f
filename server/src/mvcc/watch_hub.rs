//! Where committed changes meet watchers: the state machine publishes each applied revision's
//! events here; watch streams are woken and read them from a bounded in-memory window of recent
//! revisions, or from the revision records once they have fallen out of it.
//!
//! Publishing never waits for a watcher, so a slow watcher cannot hold up writes, and it cannot
//! lose events either: whatever left the window is still on disk until compaction.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;
use prost::Message;
use tokio::sync::watch;

use crate::proto::mvccpb::Event;

/// All events of one revision.
#[derive(Debug, Clone, PartialEq)]
pub struct RevisionEvents {
    /// The revision.
    pub rev: i64,
    /// Its events, in the order they were applied.
    pub events: Vec<Event>,
}

/// Bounds of the in-memory window.
const WINDOW_REVISIONS: usize = 8192;
const WINDOW_BYTES: usize = 64 << 20;

struct Window {
    revisions: VecDeque<Arc<RevisionEvents>>,
    bytes: usize,
}

/// The publication point of applied revisions.
pub struct WatchHub {
    window: Mutex<Window>,
    latest: watch::Sender<i64>,
}

/// Splits events (in revision order) into per-revision groups.
pub fn group_by_revision(events: Vec<Event>) -> Vec<RevisionEvents> {
    let mut groups: Vec<RevisionEvents> = Vec::new();
    for event in events {
        let rev = event.kv.as_ref().map_or(0, |kv| kv.mod_revision);
        match groups.last_mut() {
            Some(group) if group.rev == rev => group.events.push(event),
            _ => groups.push(RevisionEvents {
                rev,
                events: vec![event],
            }),
        }
    }
    groups
}

impl WatchHub {
    /// A hub whose store is at `current_rev`.
    pub fn new(current_rev: i64) -> Self {
        let (latest, _) = watch::channel(current_rev);
        Self {
            window: Mutex::new(Window {
                revisions: VecDeque::new(),
                bytes: 0,
            }),
            latest,
        }
    }

    /// Makes `revisions` (already committed) visible to watchers and announces `current_rev`.
    pub fn publish(&self, revisions: Vec<RevisionEvents>, current_rev: i64) {
        if !revisions.is_empty() {
            let mut window = self.window.lock();
            for revision in revisions {
                window.bytes += revision
                    .events
                    .iter()
                    .map(Message::encoded_len)
                    .sum::<usize>();
                window.revisions.push_back(Arc::new(revision));
            }
            while window.revisions.len() > WINDOW_REVISIONS || window.bytes > WINDOW_BYTES {
                let Some(old) = window.revisions.pop_front() else {
                    break;
                };
                let size = old.events.iter().map(Message::encoded_len).sum::<usize>();
                window.bytes = window.bytes.saturating_sub(size);
            }
        }
        self.latest.send_replace(current_rev);
    }

    /// Forgets every buffered revision and announces `current_rev`: the store was replaced (a
    /// snapshot from the leader), so watchers must read what they miss from the store itself.
    pub fn reset(&self, current_rev: i64) {
        {
            let mut window = self.window.lock();
            window.revisions.clear();
            window.bytes = 0;
        }
        self.latest.send_replace(current_rev);
    }

    /// A receiver woken whenever a new revision is published.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.latest.subscribe()
    }

    /// The newest published revision.
    pub fn latest(&self) -> i64 {
        *self.latest.borrow()
    }

    /// The revisions `from..=to` if the window still holds every one of them.
    pub fn recent(&self, from: i64, to: i64) -> Option<Vec<Arc<RevisionEvents>>> {
        let window = self.window.lock();
        let first = window.revisions.front()?.rev;
        if from < first {
            return None;
        }
        let start = window.revisions.partition_point(|r| r.rev < from);
        Some(
            window
                .revisions
                .iter()
                .skip(start)
                .take_while(|r| r.rev <= to)
                .cloned()
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::mvccpb::KeyValue;

    fn ev(rev: i64) -> Event {
        Event {
            r#type: 0,
            kv: Some(KeyValue {
                mod_revision: rev,
                ..Default::default()
            }),
            prev_kv: None,
        }
    }

    #[test]
    fn events_group_per_revision_and_the_window_serves_ranges_it_holds() {
        let groups = group_by_revision(vec![ev(2), ev(2), ev(3)]);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].events.len(), 2);
        let hub = WatchHub::new(1);
        hub.publish(groups, 3);
        assert_eq!(hub.latest(), 3);
        assert_eq!(hub.recent(2, 3).map(|v| v.len()), Some(2));
        assert_eq!(hub.recent(3, 3).map(|v| v.len()), Some(1));
        assert!(
            hub.recent(1, 3).is_none(),
            "revision 1 was never in the window"
        );
    }
}
