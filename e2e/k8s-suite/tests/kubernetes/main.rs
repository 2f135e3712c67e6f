//! The Kubernetes-on-oxcd suite: one real control plane per storage (oxcd, and etcd 3.6 as the
//! reference), each running every check below in turn; a failed check does not stop the others,
//! and the test fails listing all failed checks. The kube-apiserver log is checked last.
//!
//! The same checks run on an existing cluster when `OXCD_KIND_STORAGE_ENDPOINTS` (and the other
//! variables `e2e/kind/up --control-plane-storage=oxcd` exports) name its storage:
//! `cargo test -p oxcd-k8s-suite --test kubernetes -- kubernetes_runs_on_the_existing_cluster`.
//! Without them that test skips, unless `OXCD_K8S_EXISTING_REQUIRED=1` (e2e/test sets it).

mod api_log;
mod common;
mod configmaps;
mod consistent_reads;
mod crds;
mod deployment;
mod events;
mod leases;
mod namespaces;
mod pagination;
mod watch;

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use oxcd_k8s_suite::{ControlPlane, Storage};

type Check = for<'a> fn(&'a ControlPlane) -> Pin<Box<dyn Future<Output = Result<()>> + 'a>>;

/// Every check, in the order they run (api_log last: it reads what the others caused).
const CHECKS: &[(&str, Check)] = &[
    ("namespaces", |cp| Box::pin(namespaces::run(cp))),
    ("configmaps", |cp| Box::pin(configmaps::run(cp))),
    ("optimistic_concurrency", |cp| {
        Box::pin(configmaps::run_conflicts(cp))
    }),
    ("crds", |cp| Box::pin(crds::run(cp))),
    ("pagination", |cp| Box::pin(pagination::run(cp))),
    ("consistent_reads", |cp| Box::pin(consistent_reads::run(cp))),
    ("watch", |cp| Box::pin(watch::run(cp))),
    ("leases", |cp| Box::pin(leases::run(cp))),
    ("events", |cp| Box::pin(events::run(cp))),
    ("deployment", |cp| Box::pin(deployment::run(cp))),
    ("api_log", |cp| Box::pin(api_log::run(cp))),
];

/// Event TTL of the suite's control planes: Events expire through storage leases that soon.
pub const EVENT_TTL_SECS: u64 = 10;

async fn run_suite(storage: Storage) -> Result<()> {
    let ttl = format!("--event-ttl={EVENT_TTL_SECS}s");
    let cp = ControlPlane::up(storage, &[&ttl, "--nodes=2"]).await?;
    run_checks(&cp).await
}

async fn run_checks(cp: &ControlPlane) -> Result<()> {
    let label = cp.label();
    let mut failed = Vec::new();
    for (name, check) in CHECKS {
        let started = Instant::now();
        let outcome = check(cp).await;
        let secs = started.elapsed().as_secs_f64();
        match outcome {
            Ok(()) => eprintln!("[{label}] {name}: ok ({secs:.1} s)"),
            Err(e) => {
                eprintln!("[{label}] {name}: FAILED ({secs:.1} s): {e:#}");
                failed.push(format!("{name}: {e:#}"));
            }
        }
    }
    if !failed.is_empty() {
        bail!(
            "{} check(s) failed on {label}:\n{}",
            failed.len(),
            failed.join("\n")
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_runs_on_oxcd() -> Result<()> {
    run_suite(Storage::Oxcd).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_runs_on_etcd() -> Result<()> {
    run_suite(Storage::Etcd).await
}

/// Environment variable that, set to `1`, makes a missing existing cluster an error, not a skip.
const EXISTING_REQUIRED_ENV: &str = "OXCD_K8S_EXISTING_REQUIRED";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_runs_on_the_existing_cluster() -> Result<()> {
    let required = std::env::var(EXISTING_REQUIRED_ENV).is_ok_and(|v| v == "1");
    let Some(cp) = ControlPlane::existing()
        .await
        .context("failed to attach to the existing cluster")?
    else {
        if required {
            bail!("{EXISTING_REQUIRED_ENV}=1 but OXCD_KIND_STORAGE_ENDPOINTS is not set");
        }
        println!(
            "SKIPPED: no existing cluster (OXCD_KIND_STORAGE_ENDPOINTS is not set; \
             eval \"$(e2e/kind/up --control-plane-storage=oxcd)\" sets it)"
        );
        return Ok(());
    };
    run_checks(&cp).await
}
