//! Auto-compaction (`--auto-compaction-mode/-retention`): the leader periodically proposes a
//! Compact through the log, so every member compacts at the same revision.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::api::Member;
use crate::config::Retention;
use crate::mvcc::KvRead;
use crate::proto::etcdserverpb::CompactionRequest;
use crate::proto::raftpb::raft_command::Command;

/// How often revision-mode retention is checked (etcd checks every five minutes).
const REVISION_CHECK: Duration = Duration::from_secs(300);

/// Decides, from revisions sampled over time, which revision periodic retention allows
/// compacting to: the newest sample at least `retention` old.
#[derive(Debug)]
pub struct PeriodicPolicy {
    retention: Duration,
    samples: VecDeque<(Instant, i64)>,
}

impl PeriodicPolicy {
    /// A policy keeping `retention` of history.
    pub fn new(retention: Duration) -> Self {
        Self {
            retention,
            samples: VecDeque::new(),
        }
    }

    /// How often to sample: a tenth of the retention, at least every 100 ms.
    pub fn tick(&self) -> Duration {
        (self.retention / 10).max(Duration::from_millis(100))
    }

    /// Records `rev` observed at `now`; returns the revision to compact to, if any.
    pub fn observe(&mut self, now: Instant, rev: i64) -> Option<i64> {
        self.samples.push_back((now, rev));
        let mut target = None;
        while let Some(&(at, r)) = self.samples.front() {
            if now.duration_since(at) < self.retention {
                break;
            }
            target = Some(r);
            // Keep the sample itself until a newer one is also old enough.
            if self
                .samples
                .get(1)
                .is_some_and(|&(next, _)| now.duration_since(next) >= self.retention)
            {
                self.samples.pop_front();
            } else {
                break;
            }
        }
        target
    }
}

/// The revision revision-mode retention allows compacting to.
pub fn revision_target(current: i64, keep: i64) -> Option<i64> {
    let target = current - keep;
    (target > 0).then_some(target)
}

/// Runs auto-compaction for `member` until the task is dropped.
pub async fn run(member: Arc<Member>, retention: Retention) {
    let mut periodic = match retention {
        Retention::Off => return,
        Retention::Period(d) => Some(PeriodicPolicy::new(d)),
        Retention::Revisions(_) => None,
    };
    let tick = periodic
        .as_ref()
        .map_or(REVISION_CHECK, PeriodicPolicy::tick);
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let current = member.store.rev();
        let target = match (&mut periodic, retention) {
            (Some(policy), _) => policy.observe(Instant::now(), current),
            (None, Retention::Revisions(keep)) => revision_target(current, keep),
            _ => None,
        };
        let is_leader =
            member.raft.metrics().borrow().current_leader == Some(member.identity.member_id);
        let Some(target) = target else { continue };
        if !is_leader || target <= member.store.compact_rev() {
            continue;
        }
        let request = CompactionRequest {
            revision: target,
            physical: false,
        };
        match member.propose(Command::Compaction(request)).await {
            Ok(_) => tracing::info!(revision = target, "auto-compaction finished"),
            Err(e) => tracing::warn!(revision = target, error = %e, "auto-compaction failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periodic_retention_compacts_to_the_newest_sample_old_enough() {
        let mut p = PeriodicPolicy::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(p.observe(t0, 5), None);
        assert_eq!(p.observe(t0 + Duration::from_secs(5), 9), None);
        assert_eq!(p.observe(t0 + Duration::from_secs(10), 12), Some(5));
        assert_eq!(p.observe(t0 + Duration::from_secs(16), 20), Some(9));
    }

    #[test]
    fn revision_retention_keeps_the_last_n_revisions() {
        assert_eq!(revision_target(100, 10), Some(90));
        assert_eq!(revision_target(5, 10), None);
    }
}
