//! `kubectl port-forward` to one pod, on a free loopback port, stopped when dropped. Traffic
//! enters the pod's own network namespace, so it reaches members whatever their NetworkPolicy
//! says: tests use it for data, and in-cluster pods for policy.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running port-forward.
pub struct PortForward {
    _kubectl: Child,
    /// The local port.
    pub port: u16,
}

/// Attempts before giving up: kubectl exits at once when the pod is being replaced or its
/// sandbox is not ready yet, which a rollout that just finished can still cause.
const ATTEMPTS: u32 = 5;
const RETRY_PAUSE: Duration = Duration::from_secs(3);

impl PortForward {
    /// Forwards a free local port to `port` of `pod` in `namespace`, trying again while kubectl
    /// exits without forwarding.
    pub async fn start(namespace: &str, pod: &str, port: u16) -> anyhow::Result<Self> {
        let mut attempt = 1;
        loop {
            match Self::start_once(namespace, pod, port).await {
                Ok(Some(forward)) => return Ok(forward),
                Ok(None) if attempt < ATTEMPTS => {
                    attempt += 1;
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Ok(None) => bail!("kubectl port-forward to {pod} ended {ATTEMPTS} times"),
                Err(error) => return Err(error),
            }
        }
    }

    /// One kubectl; `None` when it ended before forwarding.
    async fn start_once(namespace: &str, pod: &str, port: u16) -> anyhow::Result<Option<Self>> {
        let mut kubectl = Command::new("kubectl")
            .args([
                "port-forward",
                "--namespace",
                namespace,
                "--address",
                "127.0.0.1",
            ])
            .arg(format!("pod/{pod}"))
            .arg(format!(":{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("failed to start kubectl port-forward")?;
        let stdout = kubectl.stdout.take().context("kubectl has no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        // "Forwarding from 127.0.0.1:40123 -> 2379"
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .with_context(|| format!("kubectl port-forward to {pod} printed nothing in 30 s"))??;
        let Some(line) = line else {
            return Ok(None);
        };
        let local = line
            .split_whitespace()
            .nth(2)
            .and_then(|address| address.rsplit(':').next())
            .and_then(|port| port.parse().ok());
        let Some(local) = local else {
            bail!("unexpected kubectl port-forward output: {line}");
        };
        // Keep draining stdout so kubectl never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Some(Self {
            _kubectl: kubectl,
            port: local,
        }))
    }
}
