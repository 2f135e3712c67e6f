//! An oxcd member under test: the workspace's `oxcd` binary on random loopback ports, with a data
//! dir that outlives restarts (for crash tests) and is removed with the server.

use std::path::{Path, PathBuf};
use std::process::Command;

use etcd_client::Client;
use tempfile::TempDir;

use crate::error::{HarnessError, Result};
use crate::etcd::{READY_TIMEOUT, kv_answers};
use crate::net::free_ports;
use crate::paths::workspace_root;
use crate::process::ManagedProcess;

/// Environment variable naming the oxcd binary to test (default: `target/debug/oxcd`).
const OXCD_BIN_VAR: &str = "OXCD_BIN";

/// Path of the oxcd binary under test.
pub fn oxcd_binary() -> Result<PathBuf> {
    let path = match std::env::var_os(OXCD_BIN_VAR) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => workspace_root().join("target").join("debug").join("oxcd"),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(HarnessError::MissingOxcd { path })
    }
}

/// A single oxcd member on 127.0.0.1; killed (SIGKILL) when dropped, its directory removed.
#[derive(Debug)]
pub struct OxcdServer {
    // Declared before `dir`: the process dies before its directory is removed.
    process: Option<ManagedProcess>,
    endpoint: String,
    client_port: u16,
    extra_args: Vec<String>,
    env: Vec<(String, String)>,
    starts: usize,
    dir: TempDir,
}

impl OxcdServer {
    /// Starts a fresh member with default flags and waits until it serves KV requests.
    pub async fn start() -> Result<Self> {
        Self::start_with(&[]).await
    }

    /// Starts a fresh member with `extra_args` appended to the harness's flags.
    pub async fn start_with(extra_args: &[&str]) -> Result<Self> {
        let mut server = Self::prepare(extra_args)?;
        server.launch().await?;
        Ok(server)
    }

    /// Starts a fresh member with `extra_args` and the environment variables `env` (e.g.
    /// `ETCD_*` settings, which the harness otherwise keeps from reaching the member).
    pub async fn start_with_env(extra_args: &[&str], env: &[(&str, &str)]) -> Result<Self> {
        let mut server = Self::prepare(extra_args)?;
        server.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        server.launch().await?;
        Ok(server)
    }

    /// A member whose directory and port are chosen but which is not started: fill
    /// [`OxcdServer::data_dir`] (e.g. by restoring a snapshot into it), then start it with
    /// [`OxcdServer::restart`].
    pub fn prepare(extra_args: &[&str]) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("oxcd-member-")
            .tempdir()
            .map_err(HarnessError::CreateTempDir)?;
        let [client_port] = free_ports::<1>()?;
        Ok(Self {
            process: None,
            endpoint: format!("http://127.0.0.1:{client_port}"),
            client_port,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            starts: 0,
            dir,
        })
    }

    async fn launch(&mut self) -> Result<()> {
        let binary = oxcd_binary()?;
        let mut command = Command::new(binary);
        crate::process::scrub_env(&mut command, "ETCD");
        command
            .arg("--name")
            .arg("harness")
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--listen-client-urls")
            .arg(&self.endpoint)
            .arg("--advertise-client-urls")
            .arg(&self.endpoint)
            .args(&self.extra_args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(self.dir.path());
        self.starts += 1;
        let log = self.dir.path().join(format!("oxcd-{}.log", self.starts));
        let name = format!("oxcd on {}", self.endpoint);
        let mut process = ManagedProcess::spawn(&name, command, &log)?;
        let endpoint = self.endpoint.clone();
        process
            .wait_ready(READY_TIMEOUT, || kv_answers(&endpoint))
            .await?;
        self.process = Some(process);
        Ok(())
    }

    /// The client URL, `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.client_port
    }

    /// The member's data directory (kept across restarts).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The directory holding the data dir and the logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The running process, if any.
    pub fn process(&self) -> Option<&ManagedProcess> {
        self.process.as_ref()
    }

    /// Kills the member (SIGKILL, no chance to flush) and reaps it.
    pub fn kill(&mut self) -> Result<()> {
        match self.process.take() {
            Some(mut p) => p.kill(),
            None => Ok(()),
        }
    }

    /// Starts the member again on the same data dir and port.
    pub async fn restart(&mut self) -> Result<()> {
        self.kill()?;
        self.launch().await
    }

    /// A new etcd client connected to this member.
    pub async fn client(&self) -> Result<Client> {
        Client::connect([self.endpoint.as_str()], None)
            .await
            .map_err(|source| HarnessError::Connect {
                endpoint: self.endpoint.clone(),
                source,
            })
    }
}
