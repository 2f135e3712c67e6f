//! The `oxcd-operator` binary: reads its settings from flags or environment, serves metrics and
//! health, waits to lead (several replicas may run), then runs the StoreCluster controller
//! until it is told to stop or loses the leadership.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use futures::future::join_all;
use oxcd_operator::http::{Readiness, serve};
use oxcd_operator::leader::LeaderElection;
use oxcd_operator::reconcile::Context;
use oxcd_operator::validate::Settings;
use tokio::signal::unix::{SignalKind, signal};

/// Command line of the oxcd operator.
#[derive(Debug, Parser)]
#[command(
    name = "oxcd-operator",
    version,
    about = "Kubernetes operator for oxcd clusters"
)]
struct Args {
    /// Namespaces whose StoreClusters are reconciled (comma-separated); empty means all.
    #[arg(long, env = "OXCD_WATCH_NAMESPACES", value_delimiter = ',')]
    watch_namespaces: Vec<String>,
    /// Repository of the oxcd image; a StoreCluster's version is the tag.
    #[arg(long, env = "OXCD_IMAGE_REPOSITORY", default_value = "oxcd.local/oxcd")]
    image_repository: String,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(
        long,
        env = "OXCD_OPERATOR_HTTP_ADDRESS",
        default_value = "0.0.0.0:8080"
    )]
    http_address: SocketAddr,
    /// Namespace the operator runs in (its leader-election Lease lives there).
    #[arg(long, env = "POD_NAMESPACE", default_value = "oxcd-system")]
    namespace: String,
    /// This replica's name (the Lease holder identity).
    #[arg(long, env = "POD_NAME")]
    pod_name: Option<String>,
    /// Elect a leader among replicas through a Lease (turn off only for a single replica).
    #[arg(long, env = "OXCD_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Name of the leader-election Lease.
    #[arg(
        long,
        env = "OXCD_LEADER_ELECTION_LEASE",
        default_value = "oxcd-operator"
    )]
    lease_name: String,
    /// Seconds a member restarted onto a new pod template (an upgrade) may take to become ready
    /// before the rollout halts with Degraded/UpgradeStalled.
    #[arg(long, env = "OXCD_ROLLOUT_STALL_AFTER_SECONDS", default_value_t = 300)]
    rollout_stall_after_seconds: i64,
}

async fn shutdown_signal() {
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(terminate) => terminate,
        Err(error) => {
            tracing::warn!(%error, "cannot watch SIGTERM; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let client = kube::Client::try_default()
        .await
        .context("failed to configure the Kubernetes client")?;
    let identity = args
        .pod_name
        .clone()
        .unwrap_or_else(|| format!("oxcd-operator-{}", std::process::id()));
    let settings = Settings {
        image_repository: args.image_repository.clone(),
        operator_namespace: args.namespace.clone(),
        rollout_stall_after: jiff::SignedDuration::from_secs(args.rollout_stall_after_seconds),
    };
    let context = Arc::new(Context::new(
        client.clone(),
        settings,
        Some(identity.clone()),
    ));
    let readiness = Readiness::default();
    let http = tokio::spawn(serve(args.http_address, context.clone(), readiness.clone()));

    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let guard = if args.leader_election {
        // A standby is ready: it serves its purpose by waiting.
        readiness.set_ready();
        let election =
            LeaderElection::new(client.clone(), &args.namespace, &args.lease_name, &identity);
        tokio::select! {
            guard = election.acquire() => Some(guard.context("failed to acquire the leader lease")?),
            () = &mut shutdown => return Ok(()),
        }
    } else {
        None
    };
    tracing::info!(%identity, namespaces = ?args.watch_namespaces, "running the StoreCluster controller");
    readiness.set_ready();

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let namespaces: Vec<Option<String>> = if args.watch_namespaces.iter().all(String::is_empty) {
        vec![None]
    } else {
        args.watch_namespaces
            .iter()
            .filter(|ns| !ns.is_empty())
            .cloned()
            .map(Some)
            .collect()
    };
    let controllers = join_all(namespaces.into_iter().map(|namespace| {
        let mut stopped = stopped.clone();
        let stop_signal = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        oxcd_operator::controller::run(context.clone(), namespace, stop_signal)
    }));
    tokio::pin!(controllers);
    let lost = async {
        match &guard {
            Some(guard) => guard.lost().await,
            None => std::future::pending().await,
        }
    };
    let result = tokio::select! {
        _ = &mut controllers => Ok(()),
        () = &mut shutdown => {
            let _ = stop.send(true);
            // Let reconciles in flight finish, within the pod's grace period.
            let _ = tokio::time::timeout(Duration::from_secs(20), &mut controllers).await;
            Ok(())
        }
        () = lost => Err(anyhow::anyhow!("lost the leader lease; exiting so a standby takes over")),
    };
    if let Some(guard) = guard {
        guard.release().await;
    }
    http.abort();
    result
}
