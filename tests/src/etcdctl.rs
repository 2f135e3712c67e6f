//! Runs the reference etcdctl (3.6 or 3.4) against an endpoint and captures what it printed.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::error::{HarnessError, Result};
use crate::etcd::EtcdVersion;

/// How long one etcdctl invocation may take before it is killed.
const ETCDCTL_TIMEOUT: Duration = Duration::from_secs(30);

/// What an etcdctl invocation printed and how it exited.
#[derive(Debug, Clone)]
pub struct CtlOutput {
    /// Its exit status.
    pub status: ExitStatus,
    /// Its standard output (lossily decoded).
    pub stdout: String,
    /// Its standard output as raw bytes (for `-w protobuf`).
    pub stdout_bytes: Vec<u8>,
    /// Its standard error (lossily decoded).
    pub stderr: String,
}

impl CtlOutput {
    /// True when etcdctl exited with status 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

/// Runs `etcdctl --endpoints=<endpoint> <args>` of `version` with no input. A non-zero exit is
/// not an error: check [`CtlOutput::status`].
pub async fn etcdctl(version: EtcdVersion, endpoint: &str, args: &[&str]) -> Result<CtlOutput> {
    run(version, endpoint, args, None).await
}

/// Like [`etcdctl`], with `input` on etcdctl's standard input (e.g. a value for `put`).
pub async fn etcdctl_with_input(
    version: EtcdVersion,
    endpoint: &str,
    args: &[&str],
    input: &[u8],
) -> Result<CtlOutput> {
    run(version, endpoint, args, Some(input)).await
}

/// etcdctl at `program` for `endpoint` with `args`: no inherited `ETCDCTL_*` variables, the v3
/// API asked for (etcdctl 3.4 needs it), output captured, stdin a pipe when `stdin_piped`.
pub(crate) fn etcdctl_command(
    program: &std::path::Path,
    endpoint: &str,
    args: &[&str],
    stdin_piped: bool,
) -> Command {
    let mut command = Command::new(program);
    crate::process::scrub_env(command.as_std_mut(), "ETCDCTL");
    command
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(args)
        .stdin(if stdin_piped {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

async fn run(
    version: EtcdVersion,
    endpoint: &str,
    args: &[&str],
    input: Option<&[u8]>,
) -> Result<CtlOutput> {
    let program = version.etcdctl_binary()?;
    let run_error = |source| HarnessError::RunCommand {
        program: program.clone(),
        source,
    };
    let mut command = etcdctl_command(&program, endpoint, args, input.is_some());
    let mut child = command.spawn().map_err(run_error)?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(input).await.map_err(run_error)?;
        // Dropping stdin closes it: etcdctl sees the end of its input.
    }
    let output = tokio::time::timeout(ETCDCTL_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| HarnessError::CommandTimeout {
            program: program.clone(),
            timeout: ETCDCTL_TIMEOUT,
        })?
        .map_err(run_error)?;
    Ok(CtlOutput {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stdout_bytes: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}
