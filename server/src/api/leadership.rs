//! What leading means beyond Raft's own bookkeeping, as etcd defines it:
//!
//! - Check quorum: a leader that has not heard from a quorum within an election timeout does not
//!   count as a leader (etcd's leader steps down then; openraft 0.9's does not, so the member
//!   stops claiming one): `hasleader` watches end, keep-alives fail, like etcd.
//! - Lease promotion: when a member starts leading a new term, every lease gets its full TTL
//!   again, before it answers any lease request, since the old leader's countdown is unknown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::Member;

/// Leadership facts the API reads.
#[derive(Debug)]
pub struct LeaderState {
    quorum_ok: AtomicBool,
    lease_term: AtomicU64,
    /// A MoveLeader is under way: this member's own background writes wait (etcd's leader drops
    /// proposals while it transfers), since an entry the transferee lacks loses it the election.
    transferring: AtomicBool,
    /// Held shared by every append this member makes as leader (proposals, membership changes)
    /// and exclusively by a leadership transfer, so no entry reaches the log between the
    /// transferee catching up and its election: the other voters would refuse it for that entry.
    appends: RwLock<()>,
}

impl Default for LeaderState {
    fn default() -> Self {
        Self {
            quorum_ok: AtomicBool::new(true),
            lease_term: AtomicU64::new(0),
            transferring: AtomicBool::new(false),
            appends: RwLock::new(()),
        }
    }
}

impl LeaderState {
    /// Marks a leadership transfer as started (true) or ended (false).
    pub(crate) fn set_transferring(&self, on: bool) {
        self.transferring.store(on, Ordering::Release);
    }

    /// True while this member hands its leadership over.
    pub fn transferring(&self) -> bool {
        self.transferring.load(Ordering::Acquire)
    }

    /// Waits until no leadership transfer is under way and keeps one from starting until the
    /// permit is dropped; hold it across each append to the Raft log.
    pub(crate) async fn append_permit(&self) -> RwLockReadGuard<'_, ()> {
        self.appends.read().await
    }

    /// Waits for the appends in flight to finish and holds new ones back until dropped (the
    /// lock is fair: appends asked for after this call wait behind it).
    pub(crate) async fn transfer_permit(&self) -> RwLockWriteGuard<'_, ()> {
        self.appends.write().await
    }
}

impl Member {
    /// True while this member knows a leader: another member, or itself with a quorum that
    /// answered within the last election timeout.
    pub fn has_leader(&self) -> bool {
        let leader = self.raft.metrics().borrow().current_leader;
        match leader {
            None => false,
            Some(id) if id == self.identity.member_id => {
                self.leadership.quorum_ok.load(Ordering::Acquire)
            }
            Some(_) => true,
        }
    }

    /// Gives every lease its full TTL if this member leads a term it has not promoted yet.
    pub fn promote_leases(&self) {
        let (leader, term) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            (m.current_leader, m.current_term)
        };
        if leader == Some(self.identity.member_id)
            && self.leadership.lease_term.swap(term, Ordering::AcqRel) != term
        {
            self.store.leases_refresh();
            tracing::info!(term, "leading: every lease gets its full TTL again");
        }
    }
}

/// Confirms, while this member leads, that a quorum still follows it; runs until dropped.
pub async fn check_quorum(member: Arc<Member>) {
    let election = member.election_timeout;
    let every = (election / 3).max(Duration::from_millis(10));
    loop {
        tokio::time::sleep(every).await;
        if !member.is_leader() {
            member.leadership.quorum_ok.store(true, Ordering::Release);
            continue;
        }
        member.promote_leases();
        let confirmed = matches!(
            tokio::time::timeout(election, member.raft.get_read_log_id()).await,
            Ok(Ok(_))
        );
        let was = member
            .leadership
            .quorum_ok
            .swap(confirmed, Ordering::AcqRel);
        if was != confirmed {
            if confirmed {
                tracing::info!("a quorum follows this leader again");
            } else {
                tracing::warn!(
                    "no quorum answered within an election timeout: not counting as leader"
                );
            }
        }
    }
}
