//! The Kubernetes-on-oxcd suite: one real control plane per storage (oxcd, and etcd 3.6 as the
//! reference), each running every check below in turn; a failed check does not stop the others,
//! and the test fails listing all failed checks. The kube-apiserver log is checked last.

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

use anyhow::{Result, bail};
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
    let mut failed = Vec::new();
    for (name, check) in CHECKS {
        let started = Instant::now();
        let outcome = check(&cp).await;
        let secs = started.elapsed().as_secs_f64();
        match outcome {
            Ok(()) => eprintln!("[{}] {name}: ok ({secs:.1} s)", storage.name()),
            Err(e) => {
                eprintln!("[{}] {name}: FAILED ({secs:.1} s): {e:#}", storage.name());
                failed.push(format!("{name}: {e:#}"));
            }
        }
    }
    if !failed.is_empty() {
        bail!(
            "{} check(s) failed on {}:\n{}",
            failed.len(),
            storage.name(),
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
