//! Leader election over a `coordination.k8s.io/v1` Lease, so that several operator replicas run
//! with one active (kube-runtime has none). A candidate [`LeaderElection::acquire`]s the Lease
//! (creating it, or taking it over once unheld or expired); the returned [`LeaderGuard`] renews
//! it in the background and tells through [`LeaderGuard::lost`] when leadership ended.
//!
//! Safety rests on the API server's optimistic concurrency: every write is a replace carrying the
//! resourceVersion that was read, so of two candidates racing for one Lease only one write lands.
//! Expiry is judged as client-go's first check does, `renewTime + leaseDurationSeconds < now` on
//! the candidate's clock, so replicas need roughly synchronised clocks (as Kubernetes nodes have).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Why leadership could not be sought.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The Lease could not be read.
    #[error("failed to read the lease")]
    ReadLease(#[source] kube::Error),
    /// The Lease could not be created.
    #[error("failed to create the lease")]
    CreateLease(#[source] kube::Error),
    /// The Lease could not be replaced.
    #[error("failed to replace the lease")]
    ReplaceLease(#[source] kube::Error),
}

impl LeaderError {
    /// Whether retrying cannot help (bad request, unauthenticated, forbidden, invalid object):
    /// `acquire` returns these and retries everything else (conflicts, outages, throttling).
    fn is_permanent(&self) -> bool {
        let (Self::ReadLease(e) | Self::CreateLease(e) | Self::ReplaceLease(e)) = self;
        matches!(e, kube::Error::Api(status) if matches!(status.code, 400 | 401 | 403 | 422))
    }
}

/// One candidate for the leadership held in one Lease.
#[derive(Clone, Debug)]
pub struct LeaderElection {
    api: Api<Lease>,
    lease_name: String,
    identity: String,
    lease_duration: Duration,
    renew_interval: Duration,
    retry_interval: Duration,
}

/// What a renewal found.
enum Renewal {
    /// The Lease is still ours and now carries a fresh renewTime.
    Renewed,
    /// Someone else holds the Lease, or it is gone.
    Taken(Option<String>),
}

impl LeaderElection {
    /// The candidate `identity` (unique per replica, e.g. the pod name) for the Lease
    /// `namespace/lease_name`; lease 15 s, renewed every 5 s, retried every 2 s.
    pub fn new(
        client: kube::Client,
        namespace: &str,
        lease_name: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            lease_name: lease_name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_interval: Duration::from_secs(5),
            retry_interval: Duration::from_secs(2),
        }
    }

    /// The same candidate with other timings; `renew_interval` should be well below
    /// `lease_duration` (client-go's ratio is 10 s to 15 s at most; ours is 5 s to 15 s).
    pub fn with_timing(
        mut self,
        lease_duration: Duration,
        renew_interval: Duration,
        retry_interval: Duration,
    ) -> Self {
        self.lease_duration = lease_duration;
        self.renew_interval = renew_interval;
        self.retry_interval = retry_interval;
        self
    }

    /// This candidate's identity (the Lease's holderIdentity while it leads).
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Waits until this candidate holds the Lease, then renews it in the background. Returns an
    /// error only for failures retrying cannot fix (e.g. RBAC); logs and retries the rest.
    pub async fn acquire(&self) -> Result<LeaderGuard, LeaderError> {
        let mut last_holder = None;
        loop {
            let attempt_started = Instant::now();
            match self.try_acquire().await {
                Ok(Ok(())) => {
                    info!(lease = %self.lease_name, identity = %self.identity, "acquired");
                    return Ok(self.spawn_renewal(attempt_started));
                }
                Ok(Err(holder)) => {
                    if holder != last_holder {
                        let shown = holder.as_deref().unwrap_or("");
                        info!(lease = %self.lease_name, holder = shown, "held by another; waiting");
                        last_holder = holder;
                    }
                }
                Err(e) if e.is_permanent() => return Err(e),
                Err(e) => {
                    let error = &e as &dyn std::error::Error;
                    warn!(lease = %self.lease_name, error, "failed to acquire; retrying");
                }
            }
            tokio::time::sleep(self.retry_interval).await;
        }
    }

    /// One attempt: `Ok(Ok(()))` when this candidate now holds the Lease, `Ok(Err(holder))`
    /// when another holds it (or won the race for it).
    async fn try_acquire(&self) -> Result<Result<(), Option<String>>, LeaderError> {
        let now = Timestamp::now();
        let Some(mut lease) = self.get().await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.lease_name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.held_spec(now, now, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Ok(())),
                Err(kube::Error::Api(s)) if s.is_already_exists() => Ok(Err(None)),
                Err(e) => Err(LeaderError::CreateLease(e)),
            };
        };
        let spec = lease.spec.take().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let ours = holder.as_deref() == Some(self.identity.as_str());
        if holder.is_some() && !ours && !expired(&spec, now) {
            return Ok(Err(holder));
        }
        // Ours already (a restart with the same identity): keep acquireTime and the count.
        let (acquired, transitions) = match (ours, spec.acquire_time) {
            (true, Some(at)) => (at.0, spec.lease_transitions.unwrap_or(0)),
            _ => (now, spec.lease_transitions.unwrap_or(0).saturating_add(1)),
        };
        if !ours {
            let previous = holder.as_deref().unwrap_or("");
            info!(lease = %self.lease_name, previous, transitions, "taking over the lease");
        }
        lease.spec = Some(self.held_spec(now, acquired, transitions));
        match self.replace(&lease).await {
            Ok(()) => Ok(Ok(())),
            Err(LeaderError::ReplaceLease(kube::Error::Api(s))) if s.is_conflict() => {
                Ok(Err(holder))
            }
            Err(e) => Err(e),
        }
    }

    /// Renews the Lease if this candidate still holds it.
    async fn renew(&self) -> Result<Renewal, LeaderError> {
        let Some(mut lease) = self.get().await? else {
            return Ok(Renewal::Taken(None));
        };
        let spec = lease.spec.take().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(Renewal::Taken(spec.holder_identity));
        }
        let now = Timestamp::now();
        let acquired = spec.acquire_time.map_or(now, |t| t.0);
        let transitions = spec.lease_transitions.unwrap_or(0);
        lease.spec = Some(self.held_spec(now, acquired, transitions));
        self.replace(&lease).await?;
        Ok(Renewal::Renewed)
    }

    /// Clears holderIdentity if this candidate holds the Lease, so a standby takes it at once;
    /// reads again after a conflict (a renewal sent just before the renewal task was aborted).
    async fn clear_holder(&self) -> Result<(), LeaderError> {
        let mut conflicts = 0;
        loop {
            let Some(mut lease) = self.get().await? else {
                return Ok(());
            };
            let ours =
                |spec: &&mut LeaseSpec| spec.holder_identity.as_ref() == Some(&self.identity);
            let Some(spec) = lease.spec.as_mut().filter(ours) else {
                return Ok(());
            };
            spec.holder_identity = None;
            spec.renew_time = Some(MicroTime(Timestamp::now()));
            match self.replace(&lease).await {
                Err(LeaderError::ReplaceLease(kube::Error::Api(s)))
                    if s.is_conflict() && conflicts < 2 =>
                {
                    conflicts += 1;
                }
                done => return done,
            }
        }
    }

    /// The spec of a Lease this candidate holds.
    fn held_spec(&self, now: Timestamp, acquired: Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(whole_seconds(self.lease_duration)),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// Replaces the Lease; its metadata still carries the resourceVersion that was read, so the
    /// API server refuses the write (409) if anyone wrote in between.
    async fn replace(&self, lease: &Lease) -> Result<(), LeaderError> {
        self.api
            .replace(&self.lease_name, &PostParams::default(), lease)
            .await
            .map(drop)
            .map_err(LeaderError::ReplaceLease)
    }

    /// The Lease, if it exists.
    async fn get(&self) -> Result<Option<Lease>, LeaderError> {
        self.api
            .get_opt(&self.lease_name)
            .await
            .map_err(LeaderError::ReadLease)
    }

    /// Starts renewing; `renewed_at` is when the winning write was started (no later than the
    /// renewTime it carried), from which the lease duration counts.
    fn spawn_renewal(&self, renewed_at: Instant) -> LeaderGuard {
        let (lost_tx, lost_rx) = watch::channel(false);
        let election = self.clone();
        let task = tokio::spawn(async move {
            election.renew_until_lost(renewed_at).await;
            // Receivers also see the loss if this task ends any other way (the sender drops).
            let _ = lost_tx.send(true);
        });
        LeaderGuard {
            election: self.clone(),
            lost: lost_rx,
            task,
        }
    }

    /// Renews every `renew_interval` (retrying every `retry_interval` after a failure) until
    /// another holder took the Lease or no renewal succeeded for `lease_duration`: from then on
    /// a standby may take over, so this replica must stop leading no later than that.
    async fn renew_until_lost(&self, mut renewed_at: Instant) {
        let mut next_attempt = renewed_at + self.renew_interval;
        loop {
            let deadline = renewed_at + self.lease_duration;
            tokio::time::sleep_until(next_attempt.min(deadline)).await;
            let started = Instant::now();
            if started >= deadline {
                warn!(lease = %self.lease_name, "not renewed within the lease duration; lost");
                return;
            }
            match tokio::time::timeout_at(deadline, self.renew()).await {
                Ok(Ok(Renewal::Renewed)) => {
                    debug!(lease = %self.lease_name, "renewed the lease");
                    renewed_at = started;
                    next_attempt = started + self.renew_interval;
                }
                Ok(Ok(Renewal::Taken(holder))) => {
                    let holder = holder.as_deref().unwrap_or("");
                    warn!(lease = %self.lease_name, holder, "lease taken by another; lost");
                    return;
                }
                Ok(Err(e)) => {
                    let error = &e as &dyn std::error::Error;
                    warn!(lease = %self.lease_name, error, "failed to renew; retrying");
                    next_attempt = Instant::now() + self.retry_interval;
                }
                // The deadline passed during the request: the next turn reports the loss.
                Err(_elapsed) => next_attempt = deadline,
            }
        }
    }
}

/// Leadership while held: renews the Lease in the background until dropped or released.
#[derive(Debug)]
pub struct LeaderGuard {
    election: LeaderElection,
    lost: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl LeaderGuard {
    /// Resolves once leadership is lost: renewal failed for longer than the lease duration, or
    /// another holder took the Lease. The leader must stop acting when it resolves.
    pub async fn lost(&self) {
        let mut lost = self.lost.clone();
        // An error means the renewal task ended without a word: also a loss.
        let _ = lost.wait_for(|lost| *lost).await;
    }

    /// Stops renewing and clears holderIdentity (best effort, failures are logged) so that a
    /// standby takes over at once instead of after the lease duration.
    pub async fn release(mut self) {
        self.task.abort();
        // Wait for the task to end so that no renewal in flight lands after the release.
        let _ = (&mut self.task).await;
        let lease = &self.election.lease_name;
        match self.election.clear_holder().await {
            Ok(()) => info!(%lease, identity = %self.election.identity, "released the lease"),
            Err(e) => {
                let error = &e as &dyn std::error::Error;
                warn!(%lease, error, "failed to release; a standby waits for expiry");
            }
        }
    }
}

impl Drop for LeaderGuard {
    /// Stops renewing without touching the Lease (a standby takes over once it expires).
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether the holder let the Lease expire: `renewTime + leaseDurationSeconds` has passed (a
/// Lease without renewTime or duration counts as expired).
fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let (Some(renewed), Some(seconds)) = (&spec.renew_time, spec.lease_duration_seconds) else {
        return true;
    };
    renewed
        .0
        .checked_add(SignedDuration::from_secs(i64::from(seconds)))
        .is_ok_and(|until| until < now)
}

/// `d` rounded up to whole seconds for leaseDurationSeconds (others never wait less than this
/// replica leads), at least 1.
fn whole_seconds(d: Duration) -> i32 {
    let secs = d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0));
    i32::try_from(secs).unwrap_or(i32::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(renewed: Option<Timestamp>, seconds: Option<i32>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some("a".into()),
            renew_time: renewed.map(MicroTime),
            lease_duration_seconds: seconds,
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn lease_expires_only_after_renew_time_plus_duration() {
        let renewed = Timestamp::UNIX_EPOCH + SignedDuration::from_secs(1_000);
        let at = |secs| Timestamp::UNIX_EPOCH + SignedDuration::from_secs(secs);
        assert!(!expired(&spec(Some(renewed), Some(15)), at(1_010)));
        assert!(!expired(&spec(Some(renewed), Some(15)), at(1_015)));
        assert!(expired(&spec(Some(renewed), Some(15)), at(1_016)));
    }

    #[test]
    fn lease_without_renew_time_or_duration_counts_as_expired() {
        let now = Timestamp::UNIX_EPOCH;
        assert!(expired(&spec(None, Some(15)), now));
        assert!(expired(&spec(Some(now), None), now));
    }

    #[test]
    fn lease_duration_is_rounded_up_to_whole_seconds() {
        assert_eq!(whole_seconds(Duration::from_secs(15)), 15);
        assert_eq!(whole_seconds(Duration::from_millis(15_100)), 16);
        assert_eq!(whole_seconds(Duration::from_millis(200)), 1);
    }
}
