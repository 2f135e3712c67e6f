//! Commands run inside a pod's container (the API server's exec subresource), with their output
//! and whether they succeeded.

use anyhow::Context;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::AttachParams;
use tokio::io::AsyncReadExt;

/// What a command run in a pod printed, and whether it exited with status 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// True when the command exited with status 0.
    pub success: bool,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error, or the API server's message about a non-zero exit.
    pub stderr: String,
}

/// Runs `command` in the first container of `pod` and waits for it to exit.
pub async fn exec(pods: &Api<Pod>, pod: &str, command: &[&str]) -> anyhow::Result<ExecOutput> {
    let params = AttachParams::default()
        .stdout(true)
        .stderr(true)
        .stdin(false);
    let mut attached = pods
        .exec(pod, command.iter().copied(), &params)
        .await
        .with_context(|| format!("failed to exec {command:?} in pod {pod}"))?;
    let mut stdout = String::new();
    let mut stderr = String::new();
    let mut out = attached.stdout().context("exec gave no stdout")?;
    let mut err = attached.stderr().context("exec gave no stderr")?;
    let (o, e) = tokio::join!(
        out.read_to_string(&mut stdout),
        err.read_to_string(&mut stderr)
    );
    o.context("failed to read the command's stdout")?;
    e.context("failed to read the command's stderr")?;
    let status = attached
        .take_status()
        .context("exec gave no status")?
        .await
        .context("the API server sent no exit status")?;
    attached
        .join()
        .await
        .context("failed to finish the exec session")?;
    let success = status.status.as_deref() == Some("Success");
    if !success && let Some(message) = status.message {
        stderr.push_str(&message);
    }
    Ok(ExecOutput {
        success,
        stdout,
        stderr,
    })
}
