//! A long-running etcdctl (`watch`, `watch -i`, `lease keep-alive`): its standard input stays
//! open for interactive commands, its standard output is read while it runs, and it is killed (or
//! allowed to exit by itself) at the end. Every wait is bounded by the caller's timeout.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::{HarnessError, Result};
use crate::etcd::EtcdVersion;
use crate::etcdctl::{CtlOutput, etcdctl_command};

/// How long [`CtlSession::finish`] waits for the output pipes to close once etcdctl is gone.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// A running `etcdctl --endpoints=<endpoint> <args>`; killed when dropped.
#[derive(Debug)]
pub struct CtlSession {
    program: std::path::PathBuf,
    child: Child,
    stdin: Option<ChildStdin>,
    chunks: mpsc::UnboundedReceiver<Vec<u8>>,
    stdout: Vec<u8>,
    cursor: usize,
    stderr: JoinHandle<Vec<u8>>,
}

/// Forwards everything `reader` yields, chunk by chunk, until it ends or fails.
fn forward(
    mut reader: impl AsyncRead + Unpin + Send + 'static,
) -> mpsc::UnboundedReceiver<Vec<u8>> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 8192];
        while let Ok(n) = reader.read(&mut buf).await {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    rx
}

impl CtlSession {
    /// Starts etcdctl `version` with `args`; with `interactive`, its standard input is a pipe fed
    /// by [`CtlSession::send_line`] (and never closed before the end), otherwise it is closed.
    pub fn spawn(
        version: EtcdVersion,
        endpoint: &str,
        args: &[&str],
        interactive: bool,
    ) -> Result<Self> {
        let program = version.etcdctl_binary()?;
        let mut command = etcdctl_command(&program, endpoint, args, interactive);
        let mut child = command.spawn().map_err(|source| HarnessError::Spawn {
            program: program.clone(),
            source,
        })?;
        let stdin = child.stdin.take();
        let chunks = match child.stdout.take() {
            Some(out) => forward(out),
            None => mpsc::unbounded_channel().1,
        };
        let mut err_pipe = child.stderr.take();
        let stderr = tokio::spawn(async move {
            let mut bytes = Vec::new();
            if let Some(pipe) = err_pipe.as_mut() {
                let _ = pipe.read_to_end(&mut bytes).await;
            }
            bytes
        });
        Ok(Self {
            program,
            child,
            stdin,
            chunks,
            stdout: Vec::new(),
            cursor: 0,
            stderr,
        })
    }

    /// Writes `line` and a newline to etcdctl's standard input (interactive sessions only).
    pub async fn send_line(&mut self, line: &str) -> Result<()> {
        let run_error = |source| HarnessError::RunCommand {
            program: self.program.clone(),
            source,
        };
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(run_error(std::io::Error::other("stdin is not a pipe")));
        };
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .map_err(run_error)?;
        stdin.flush().await.map_err(run_error)
    }

    /// Reads standard output until `pattern` appears after the previous match (or the start),
    /// for at most `timeout`. False when it did not appear in time or the output ended first.
    pub async fn wait_for(&mut self, pattern: &str, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(at) = find(&self.stdout[self.cursor..], pattern.as_bytes()) {
                self.cursor += at + pattern.len();
                return true;
            }
            match tokio::time::timeout_at(deadline, self.chunks.recv()).await {
                Ok(Some(chunk)) => self.stdout.extend(chunk),
                Ok(None) | Err(_) => return false,
            }
        }
    }

    /// Ends the session: waits up to `exit_within` for etcdctl to exit by itself (zero: not at
    /// all), kills it if it has not, and returns everything it printed. A killed etcdctl has no
    /// exit code ([`std::process::ExitStatus::code`] is `None`).
    pub async fn finish(mut self, exit_within: Duration) -> Result<CtlOutput> {
        let wait_error = |source| HarnessError::RunCommand {
            program: self.program.clone(),
            source,
        };
        let status = match tokio::time::timeout(exit_within, self.child.wait()).await {
            Ok(status) => status.map_err(wait_error)?,
            Err(_) => {
                // Fails only when it has just exited; `wait` reaps it all the same.
                let _ = self.child.start_kill();
                self.child.wait().await.map_err(wait_error)?
            }
        };
        let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
        while let Ok(Some(chunk)) = tokio::time::timeout_at(deadline, self.chunks.recv()).await {
            self.stdout.extend(chunk);
        }
        let stderr = match tokio::time::timeout_at(deadline, &mut self.stderr).await {
            Ok(Ok(bytes)) => bytes,
            _ => b"(standard error not collected)".to_vec(),
        };
        Ok(CtlOutput {
            status,
            stdout: String::from_utf8_lossy(&self.stdout).into_owned(),
            stdout_bytes: std::mem::take(&mut self.stdout),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        })
    }
}

impl Drop for CtlSession {
    fn drop(&mut self) {
        self.stderr.abort();
    }
}

/// Position of the first `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::find;

    #[test]
    fn find_locates_the_first_occurrence() {
        assert_eq!(find(b"abcabc", b"ca"), Some(2));
        assert_eq!(find(b"abc", b"x"), None);
        assert_eq!(find(b"ab", b"abc"), None);
        assert_eq!(find(b"ab", b""), Some(0));
    }
}
