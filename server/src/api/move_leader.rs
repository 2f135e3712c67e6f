//! Maintenance.MoveLeader: the leader hands leadership to a voting member it names.
//!
//! openraft 0.9 has no leadership transfer, and its followers refuse votes for an election
//! timeout after the leader's last heartbeat (its leader lease). So the leader stops sending
//! heartbeats and asks the transferee to campaign; the transferee keeps campaigning (its log is
//! up to date, and its rising term makes the old leader step down) until it wins once the
//! leases run out, or the deadline passes with etcd's "leader transfer took too long".

use std::time::Duration;

use tokio::time::Instant;
use tonic::Status;

use super::Member;
use crate::error::EtcdError;
use crate::proto::peerpb::CampaignRequest;

/// How long a transfer may take, in election timeouts.
const TRANSFER_ELECTIONS: u32 = 5;

impl Member {
    /// Hands leadership to voter `target`; this member must lead.
    pub async fn move_leader(&self, target: u64, election: Duration) -> Result<(), Status> {
        if !self.is_leader() {
            return Err(EtcdError::NotLeader.into());
        }
        if target == self.identity.member_id {
            return Ok(());
        }
        let node = {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow();
            let config = metrics.membership_config.membership();
            if !config.voter_ids().any(|v| v == target) {
                return Err(EtcdError::BadLeaderTransferee.into());
            }
            config.get_node(&target).cloned()
        };
        let Some(node) = node else {
            return Err(EtcdError::BadLeaderTransferee.into());
        };
        let timeout = election * TRANSFER_ELECTIONS;
        let deadline = Instant::now() + timeout;
        self.leadership.set_transferring(true);
        // As etcd's raft: no new entries while the transfer lasts, and the transferee campaigns
        // only once it has the whole log, or the voters that have an entry it lacks would
        // refuse it.
        let Ok(_no_appends) =
            tokio::time::timeout_at(deadline, self.leadership.transfer_permit()).await
        else {
            self.leadership.set_transferring(false);
            return Err(EtcdError::Timeout.into());
        };
        self.wait_caught_up(target, deadline).await;
        self.raft.runtime_config().heartbeat(false);
        let outcome = async {
            let mut client = self
                .peers
                .client(&node)
                .map_err(|e| Status::unavailable(format!("oxcd: {e}")))?;
            let mut req = tonic::Request::new(CampaignRequest {
                header: self.peers.header(target),
                timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            });
            req.set_timeout(timeout + Duration::from_secs(1));
            client.campaign(req).await?;
            // The transferee leads; wait until this member has heard of it too.
            let left = deadline.saturating_duration_since(Instant::now());
            self.raft
                .wait(Some(left.max(election)))
                .metrics(|m| m.current_leader == Some(target), "moved leader")
                .await
                .map_err(|_| Status::from(EtcdError::Timeout))?;
            Ok::<(), Status>(())
        }
        .await;
        // Heartbeats matter again whenever this member leads in the future.
        self.raft.runtime_config().heartbeat(true);
        self.leadership.set_transferring(false);
        outcome
    }

    /// Waits (until `deadline` at most) for `target` to have replicated this leader's last entry.
    async fn wait_caught_up(&self, target: u64, deadline: Instant) {
        let left = deadline.saturating_duration_since(Instant::now());
        let caught_up = self
            .raft
            .wait(Some(left))
            .metrics(
                |m| {
                    let matched = m
                        .replication
                        .as_ref()
                        .and_then(|r| r.get(&target).cloned().flatten())
                        .map(|l| l.index);
                    matched >= m.last_log_index
                },
                "transferee caught up",
            )
            .await;
        if caught_up.is_err() {
            tracing::warn!(
                target,
                "the transferee has not caught up; asking it to campaign anyway"
            );
        }
    }

    /// Campaigns until this member leads or `timeout` passes (asked by the leader).
    pub async fn campaign(&self, timeout: Duration, election: Duration) -> Result<(), Status> {
        let deadline = Instant::now() + timeout;
        let pause = (election / 4).max(Duration::from_millis(10));
        loop {
            if self.is_leader() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Status::deadline_exceeded(
                    "etcdserver: request timed out, leader transfer took too long",
                ));
            }
            self.raft
                .trigger()
                .elect()
                .await
                .map_err(|_| Status::from(EtcdError::Stopped))?;
            tokio::time::sleep(pause).await;
        }
    }
}
