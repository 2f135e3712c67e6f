//! The reference etcd server (3.6 built from source, or Debian's 3.4) on random loopback ports.

use std::fmt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use tempfile::TempDir;

use crate::error::{HarnessError, Result};
use crate::net::free_ports;
use crate::paths::tool;
use crate::process::ManagedProcess;

/// How long [`EtcdServer::start`] waits for the client port to answer.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How often [`EtcdServer::start`] tries again with fresh ports when etcd exits at startup
/// (a port taken between choosing and binding it).
const START_ATTEMPTS: usize = 3;
/// The member name every harness etcd uses.
const MEMBER_NAME: &str = "harness";

/// Which reference etcd to run; the binaries are `etcd-<minor>` and `etcdctl-<minor>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EtcdVersion {
    /// etcd 3.6 (the version pinned in `e2e/toolchain/versions.env`), built from source.
    V3_6,
    /// etcd 3.4 from Debian's etcd-server and etcd-client packages.
    V3_4,
}

impl EtcdVersion {
    /// Both reference versions, newest first.
    pub const ALL: [EtcdVersion; 2] = [EtcdVersion::V3_6, EtcdVersion::V3_4];

    /// The minor version, as in the binaries' names ("3.6").
    pub fn minor(self) -> &'static str {
        match self {
            EtcdVersion::V3_6 => "3.6",
            EtcdVersion::V3_4 => "3.4",
        }
    }

    /// Path of this version's server binary.
    pub fn server_binary(self) -> Result<PathBuf> {
        tool(&format!("etcd-{}", self.minor()))
    }

    /// Path of this version's etcdctl binary.
    pub fn etcdctl_binary(self) -> Result<PathBuf> {
        tool(&format!("etcdctl-{}", self.minor()))
    }
}

impl fmt::Display for EtcdVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "etcd {}", self.minor())
    }
}

/// A single-member etcd cluster listening on 127.0.0.1 only, in a temporary directory that also
/// holds its log; killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct EtcdServer {
    // Declared before `dir`: the process is killed before its directory is removed.
    process: ManagedProcess,
    version: EtcdVersion,
    endpoint: String,
    dir: TempDir,
}

impl EtcdServer {
    /// Starts etcd `version` on fresh loopback client, peer and metrics ports and waits (at most
    /// [`READY_TIMEOUT`]) until its client port answers a KV request.
    pub async fn start(version: EtcdVersion) -> Result<Self> {
        Self::start_with(version, &[]).await
    }

    /// Like [`EtcdServer::start`], with `extra_args` appended to the harness's flags (e.g.
    /// `--max-request-bytes`).
    pub async fn start_with(version: EtcdVersion, extra_args: &[&str]) -> Result<Self> {
        let binary = version.server_binary()?;
        let mut attempt = 1;
        loop {
            match Self::start_once(version, &binary, extra_args).await {
                Err(HarnessError::ExitedBeforeReady { .. }) if attempt < START_ATTEMPTS => {
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn start_once(
        version: EtcdVersion,
        binary: &std::path::Path,
        extra_args: &[&str],
    ) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("oxcd-etcd-")
            .tempdir()
            .map_err(HarnessError::CreateTempDir)?;
        let [client, peer, metrics] = free_ports::<3>()?;
        let endpoint = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let mut command = Command::new(binary);
        crate::process::scrub_env(&mut command, "ETCD");
        command
            .arg("--name")
            .arg(MEMBER_NAME)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--listen-client-urls")
            .arg(&endpoint)
            .arg("--advertise-client-urls")
            .arg(&endpoint)
            .arg("--listen-peer-urls")
            .arg(&peer_url)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer_url)
            .arg("--initial-cluster")
            .arg(format!("{MEMBER_NAME}={peer_url}"))
            .arg("--listen-metrics-urls")
            .arg(format!("http://127.0.0.1:{metrics}"))
            .args(extra_args)
            .current_dir(dir.path());
        let name = format!("{version} on {endpoint}");
        let mut process = ManagedProcess::spawn(&name, command, &dir.path().join("etcd.log"))?;
        process
            .wait_ready(READY_TIMEOUT, || kv_answers(&endpoint))
            .await?;
        Ok(Self {
            process,
            version,
            endpoint,
            dir,
        })
    }

    /// Which etcd this is.
    pub fn version(&self) -> EtcdVersion {
        self.version
    }

    /// The client URL, `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The operating system's id of the etcd process.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The temporary directory holding the data dir (`data/`) and the log (`etcd.log`).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The process, e.g. for its log.
    pub fn process(&self) -> &ManagedProcess {
        &self.process
    }

    /// A new etcd client connected to this server.
    pub async fn client(&self) -> Result<Client> {
        Client::connect([self.endpoint.as_str()], None)
            .await
            .map_err(|source| HarnessError::Connect {
                endpoint: self.endpoint.clone(),
                source,
            })
    }

    /// Kills etcd now (SIGKILL) and reaps it; dropping the server does the same.
    pub fn kill(&mut self) -> Result<()> {
        self.process.kill()
    }
}

/// True when the etcd-API server at `endpoint` answers a KV range request within a second: the
/// readiness probe of etcd, and of any server speaking its API (oxcd members).
pub async fn kv_answers(endpoint: &str) -> bool {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(1))
        .with_timeout(Duration::from_secs(1));
    match Client::connect([endpoint], Some(options)).await {
        Ok(mut client) => client.get("oxcd-harness-ready-probe", None).await.is_ok(),
        Err(_) => false,
    }
}
