//! Leader election on a real API server (kube-apiserver on oxcd, brought up by `e2e/local/up`):
//! one holder at a time, a prompt handover on release, a takeover only after a silent holder's
//! lease expired, and `lost` once another holder took the Lease or renewals failed for a lease
//! duration.
//!
//! Needs `target/debug/oxcd` (`cargo build -p oxcd-server`) and the toolchain binaries of
//! `e2e/toolchain/install`; all cases share one control plane (about a minute to start).

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use oxcd_k8s_suite::{ControlPlane, Storage};
use oxcd_operator::leader::{LeaderElection, LeaderGuard};
use tokio::time::{Instant, timeout};

const NAMESPACE: &str = "default";
const LEASE: &str = "oxcd-operator-leader-test";
const LEASE_DURATION: Duration = Duration::from_secs(4);
const RENEW_INTERVAL: Duration = Duration::from_secs(1);
const RETRY_INTERVAL: Duration = Duration::from_millis(250);
/// Generous bound for anything that should happen "soon" on a loaded machine.
const SOON: Duration = Duration::from_secs(30);

fn candidate(client: &kube::Client, identity: &str) -> LeaderElection {
    LeaderElection::new(client.clone(), NAMESPACE, LEASE, identity).with_timing(
        LEASE_DURATION,
        RENEW_INTERVAL,
        RETRY_INTERVAL,
    )
}

async fn acquire_soon(election: &LeaderElection) -> Result<LeaderGuard> {
    let guard = timeout(SOON, election.acquire())
        .await
        .with_context(|| format!("{} did not acquire within {SOON:?}", election.identity()))??;
    Ok(guard)
}

/// (holderIdentity, leaseTransitions, acquireTime, renewTime) of the Lease.
async fn lease_state(
    leases: &Api<Lease>,
) -> Result<(Option<String>, i32, Option<Timestamp>, Option<Timestamp>)> {
    let spec = leases.get(LEASE).await?.spec.unwrap_or_default();
    Ok((
        spec.holder_identity,
        spec.lease_transitions.unwrap_or(0),
        spec.acquire_time.map(|t| t.0),
        spec.renew_time.map(|t| t.0),
    ))
}

#[tokio::test]
async fn one_leader_at_a_time_hands_over_on_release_takes_over_on_expiry_and_reports_loss()
-> Result<()> {
    // The election's own logs (who holds the lease, takeovers, losses) show with --nocapture.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("oxcd_operator=debug")
        .with_test_writer()
        .try_init();
    let plane = ControlPlane::up(Storage::Oxcd, &["--members=1", "--nodes=0"]).await?;
    let client = plane.client();
    let leases: Api<Lease> = Api::namespaced(client.clone(), NAMESPACE);

    // A creates the Lease and holds it.
    let a = candidate(&client, "a");
    let guard_a = acquire_soon(&a).await?;
    let (holder, transitions, _, first_renew) = lease_state(&leases).await?;
    ensure!(
        holder.as_deref() == Some("a") && transitions == 0,
        "after A: {holder:?} {transitions}"
    );

    // B waits while A renews: B is still waiting after A renewed at least twice.
    let b = candidate(&client, "b");
    let mut b_acquire = tokio::spawn(async move { b.acquire().await });
    let mut renewals = Vec::from_iter(first_renew);
    let watched = Instant::now();
    while renewals.len() < 3 {
        ensure!(watched.elapsed() < SOON, "A renewed only {renewals:?}");
        tokio::time::sleep(RETRY_INTERVAL).await;
        let (holder, _, _, renewed) = lease_state(&leases).await?;
        ensure!(
            holder.as_deref() == Some("a"),
            "A lost the lease to {holder:?}"
        );
        if renewed.is_some() && renewed != renewals.last().copied() {
            renewals.extend(renewed);
        }
    }
    ensure!(!b_acquire.is_finished(), "B acquired while A was renewing");
    ensure!(
        timeout(Duration::ZERO, guard_a.lost()).await.is_err(),
        "A reports a loss while renewing"
    );

    // A releases: B takes over before A's lease could have expired (its last renewal is no
    // earlier than the one read here; times compared as stored, all from this machine's clock).
    let (_, _, _, a_renew) = lease_state(&leases).await?;
    let a_renew = a_renew.context("A's lease has no renewTime")?;
    guard_a.release().await;
    let guard_b = timeout(SOON, &mut b_acquire)
        .await
        .context("B did not acquire after A released")???;
    let (_, _, b_acquired, _) = lease_state(&leases).await?;
    let handover = b_acquired
        .context("B's lease has no acquireTime")?
        .duration_since(a_renew);
    ensure!(
        handover < SignedDuration::try_from(LEASE_DURATION)?,
        "B took over {handover:?} after A's last renewal: by expiry, not by the release"
    );
    let (holder, transitions, _, _) = lease_state(&leases).await?;
    ensure!(
        holder.as_deref() == Some("b") && transitions == 1,
        "after B: {holder:?} {transitions}"
    );

    // B stops renewing without releasing (as if it crashed): C takes over, but only once B's last
    // renewal is older than the lease duration (both times written by the API clients, compared
    // as stored).
    drop(guard_b);
    tokio::time::sleep(RENEW_INTERVAL).await;
    let (_, _, _, b_last_renew) = lease_state(&leases).await?;
    let b_last_renew = b_last_renew.context("B's lease has no renewTime")?;
    let c = candidate(&client, "c");
    let guard_c = acquire_soon(&c).await?;
    let (holder, transitions, c_acquired, _) = lease_state(&leases).await?;
    ensure!(
        holder.as_deref() == Some("c") && transitions == 2,
        "after C: {holder:?} {transitions}"
    );
    let c_acquired = c_acquired.context("C's lease has no acquireTime")?;
    let silent = c_acquired.duration_since(b_last_renew);
    ensure!(
        silent >= SignedDuration::try_from(LEASE_DURATION)?,
        "C took over {silent:?} after B's last renewal, before the lease expired"
    );

    // Someone else writes itself into the Lease: C's guard reports the loss.
    let mut lease = leases.get(LEASE).await?;
    if let Some(spec) = lease.spec.as_mut() {
        spec.holder_identity = Some("intruder".into());
    }
    leases
        .replace(LEASE, &PostParams::default(), &lease)
        .await?;
    timeout(SOON, guard_c.lost())
        .await
        .context("C did not notice that the lease was taken")?;
    let (holder, ..) = lease_state(&leases).await?;
    ensure!(
        holder.as_deref() == Some("intruder"),
        "C fought back: {holder:?}"
    );
    drop(guard_c);

    // The intruder never renews: D takes over once the lease expired. Then the API server goes
    // away under D: D's guard reports the loss once no renewal succeeded for the lease duration
    // (its last success started at most a renewal interval before the shutdown began).
    let d = candidate(&client, "d");
    let guard_d = acquire_soon(&d).await?;
    let (holder, transitions, ..) = lease_state(&leases).await?;
    ensure!(
        holder.as_deref() == Some("d") && transitions == 3,
        "after D: {holder:?} {transitions}"
    );
    let shutdown = Instant::now();
    drop(plane);
    timeout(SOON, guard_d.lost())
        .await
        .context("D did not notice that renewals fail")?;
    let margin = Duration::from_millis(500);
    ensure!(
        shutdown.elapsed() >= LEASE_DURATION - RENEW_INTERVAL - margin,
        "D gave up {:?} after the shutdown began, before its lease could expire",
        shutdown.elapsed()
    );
    Ok(())
}
