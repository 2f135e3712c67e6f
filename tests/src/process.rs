//! A child process owned by a test: output to a log file, a bounded wait until it is ready, and
//! SIGKILL plus reaping on drop, so nothing outlives the test even when it panics.

use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::error::{HarnessError, Result};

/// How many lines of the log an error or a panicking test shows.
const LOG_TAIL_LINES: usize = 60;
/// Pause between two readiness probes.
const PROBE_INTERVAL: Duration = Duration::from_millis(100);
/// Bound on a single readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A running child process whose stdout and stderr go to a log file; killed when dropped.
#[derive(Debug)]
pub struct ManagedProcess {
    name: String,
    program: PathBuf,
    log_path: PathBuf,
    child: Child,
    /// Set once the child has been reaped, with how it ended.
    exited: Option<ExitStatus>,
}

impl ManagedProcess {
    /// Spawns `command` with stdin closed and stdout and stderr appended to a new file at
    /// `log_path`. `name` identifies the process in errors and logs.
    pub fn spawn(name: &str, mut command: Command, log_path: &Path) -> Result<Self> {
        let program = PathBuf::from(command.get_program());
        let create_log = |source| HarnessError::CreateLog {
            path: log_path.to_path_buf(),
            source,
        };
        let stdout = File::create(log_path).map_err(create_log)?;
        let stderr = stdout.try_clone().map_err(create_log)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|source| HarnessError::Spawn {
                program: program.clone(),
                source,
            })?;
        Ok(Self {
            name: name.to_owned(),
            program,
            log_path: log_path.to_path_buf(),
            child,
            exited: None,
        })
    }

    /// The process's name in the harness.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The program that was started.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// The operating system's id of the process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The file that receives the process's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last `lines` lines of the log (a note instead if it cannot be read).
    pub fn log_tail(&self, lines: usize) -> String {
        match std::fs::read(&self.log_path) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let all: Vec<&str> = text.lines().collect();
                all[all.len().saturating_sub(lines)..].join("\n")
            }
            Err(err) => format!("(cannot read {}: {err})", self.log_path.display()),
        }
    }

    /// How the process ended, if it has; `None` while it runs. Reaps it once it has ended.
    pub fn exit_status(&mut self) -> Result<Option<ExitStatus>> {
        if self.exited.is_none() {
            self.exited = self
                .child
                .try_wait()
                .map_err(|source| self.wait_error(source))?;
        }
        Ok(self.exited)
    }

    /// Polls `probe` until it returns true (ready), failing when the process exits first or
    /// `timeout` passes; either error carries the end of the log. Each probe is bounded too.
    pub async fn wait_ready<F, Fut>(&mut self, timeout: Duration, mut probe: F) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status()? {
                return Err(HarnessError::ExitedBeforeReady {
                    name: self.name.clone(),
                    status,
                    log: self.log_tail(LOG_TAIL_LINES),
                });
            }
            if matches!(tokio::time::timeout(PROBE_TIMEOUT, probe()).await, Ok(true)) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(HarnessError::NotReady {
                    name: self.name.clone(),
                    timeout,
                    log: self.log_tail(LOG_TAIL_LINES),
                });
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }

    /// Kills the process with SIGKILL and reaps it. Idempotent.
    pub fn kill(&mut self) -> Result<()> {
        if self.exit_status()?.is_some() {
            return Ok(());
        }
        // Fails only when the process has already exited; `wait` then reaps it all the same.
        let _ = self.child.kill();
        let status = self
            .child
            .wait()
            .map_err(|source| self.wait_error(source))?;
        self.exited = Some(status);
        Ok(())
    }

    fn wait_error(&self, source: std::io::Error) -> HarnessError {
        HarnessError::WaitProcess {
            name: self.name.clone(),
            pid: self.child.id(),
            source,
        }
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- last lines of {} ({}) ---\n{}\n--- end of {} log ---",
                self.name,
                self.log_path.display(),
                self.log_tail(LOG_TAIL_LINES),
                self.name
            );
        }
        if let Err(err) = self.kill() {
            eprintln!("harness: {err}");
        }
    }
}

/// Removes the caller's environment variables named `prefix*` from `command`: etcd, etcdctl and
/// oxcd read flags from `ETCD_*`/`ETCDCTL_*` variables, which must not leak into a test.
pub(crate) fn scrub_env(command: &mut Command, prefix: &str) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with(prefix) {
            command.env_remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleeper(dir: &Path) -> Result<ManagedProcess> {
        let mut command = Command::new("sh");
        command.args(["-c", "echo started; exec sleep 60"]);
        ManagedProcess::spawn("sleeper", command, &dir.join("sleeper.log"))
    }

    #[tokio::test]
    async fn readiness_waits_for_the_probe_and_kill_reaps() -> Result<()> {
        let dir = tempfile::tempdir().map_err(HarnessError::CreateTempDir)?;
        let mut process = sleeper(dir.path())?;
        let mut probes = 0;
        process
            .wait_ready(Duration::from_secs(5), || {
                probes += 1;
                std::future::ready(probes >= 3)
            })
            .await?;
        assert!(process.exit_status()?.is_none());
        let pid = process.pid();
        process.kill()?;
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
        assert!(process.log_tail(5).contains("started"));
        Ok(())
    }

    #[tokio::test]
    async fn a_process_that_exits_early_is_reported_with_its_log() -> Result<()> {
        let dir = tempfile::tempdir().map_err(HarnessError::CreateTempDir)?;
        let mut command = Command::new("sh");
        command.args(["-c", "echo no such flag >&2; exit 3"]);
        let mut process = ManagedProcess::spawn("failing", command, &dir.path().join("f.log"))?;
        let err = process
            .wait_ready(Duration::from_secs(5), || std::future::ready(false))
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("exited"), "{err}");
        assert!(err.contains("no such flag"), "{err}");
        Ok(())
    }

    #[tokio::test]
    async fn readiness_gives_up_after_the_timeout() -> Result<()> {
        let dir = tempfile::tempdir().map_err(HarnessError::CreateTempDir)?;
        let mut process = sleeper(dir.path())?;
        let result = process
            .wait_ready(Duration::from_millis(300), || std::future::ready(false))
            .await;
        assert!(matches!(result, Err(HarnessError::NotReady { .. })));
        Ok(())
    }
}
