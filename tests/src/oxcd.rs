//! An oxcd member under test: the workspace's `oxcd` binary on random loopback ports, with a data
//! dir that outlives restarts (for crash tests) and is removed with the server.

use std::path::{Path, PathBuf};
use std::process::Command;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use tempfile::TempDir;

use crate::error::{HarnessError, Result};
use crate::etcd::READY_TIMEOUT;
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

/// What a client presents to a member serving https: the CA to trust and its own certificate.
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// PEM of the CA that signed the member's certificate.
    pub ca: Vec<u8>,
    /// PEM certificate and key of the client, if it presents one.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl ClientTls {
    /// Reads the files.
    pub fn from_files(ca: &Path, identity: Option<&crate::pki::CertFiles>) -> Result<Self> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| HarnessError::CreateLog {
                path: p.to_path_buf(),
                source,
            })
        };
        Ok(Self {
            ca: read(ca)?,
            identity: match identity {
                Some(f) => Some((read(&f.cert)?, read(&f.key)?)),
                None => None,
            },
        })
    }

    fn options(&self) -> TlsOptions {
        let options = TlsOptions::new().ca_certificate(Certificate::from_pem(self.ca.clone()));
        match &self.identity {
            Some((cert, key)) => options.identity(Identity::from_pem(cert.clone(), key.clone())),
            None => options,
        }
    }
}

/// An oxcd member on 127.0.0.1 (alone, or one of an [`crate::OxcdCluster`]); killed (SIGKILL)
/// when dropped, its directory removed.
#[derive(Debug)]
pub struct OxcdServer {
    // Declared before `dir`: the process dies before its directory is removed.
    pub(crate) process: Option<ManagedProcess>,
    name: String,
    endpoint: String,
    client_port: u16,
    peer_port: u16,
    /// `--initial-cluster` and `--initial-cluster-state`.
    cluster_args: Vec<String>,
    /// How clients reach it over TLS (https client URL), if they do.
    client_tls: Option<ClientTls>,
    /// Whether its peer URL is https.
    peer_https: bool,
    /// The cgroup it runs in, when a test may partition it.
    cgroup: Option<PathBuf>,
    pub(crate) extra_args: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
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
        let [client_port, peer_port] = free_ports::<2>()?;
        let cluster = format!("harness=http://127.0.0.1:{peer_port}");
        Self::prepare_member(
            "harness",
            client_port,
            peer_port,
            &["--initial-cluster", &cluster],
            extra_args,
        )
    }

    /// A member of a cluster, not started: `name` on `client_port` and `peer_port`, with
    /// `cluster_args` (`--initial-cluster ...`, `--initial-cluster-state ...`) and `extra_args`.
    pub fn prepare_member(
        name: &str,
        client_port: u16,
        peer_port: u16,
        cluster_args: &[&str],
        extra_args: &[&str],
    ) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("oxcd-member-")
            .tempdir()
            .map_err(HarnessError::CreateTempDir)?;
        Ok(Self {
            process: None,
            name: name.to_string(),
            endpoint: format!("http://127.0.0.1:{client_port}"),
            client_port,
            peer_port,
            cluster_args: cluster_args.iter().map(|s| s.to_string()).collect(),
            client_tls: None,
            peer_https: false,
            cgroup: None,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            starts: 0,
            dir,
        })
    }

    async fn launch(&mut self) -> Result<()> {
        self.spawn()?;
        self.wait_serving().await
    }

    /// Starts the process without waiting for it to serve (a cluster's members must all be
    /// started before any of them can answer).
    pub fn spawn(&mut self) -> Result<()> {
        let binary = oxcd_binary()?;
        let mut command = match &self.cgroup {
            // Started inside its cgroup, so every socket it opens belongs to it (a socket
            // keeps the cgroup it was created in): see `Partition`.
            Some(cgroup) => {
                std::fs::create_dir_all(cgroup).map_err(HarnessError::CreateTempDir)?;
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg("echo $$ > \"$0/cgroup.procs\" && exec \"$@\"")
                    .arg(cgroup)
                    .arg(binary);
                c
            }
            None => Command::new(binary),
        };
        crate::process::scrub_env(&mut command, "ETCD");
        let peer_url = self.peer_url();
        command
            .arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--listen-client-urls")
            .arg(&self.endpoint)
            .arg("--advertise-client-urls")
            .arg(&self.endpoint)
            .arg("--listen-peer-urls")
            .arg(&peer_url)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer_url)
            .args(&self.cluster_args)
            .args(&self.extra_args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(self.dir.path());
        self.starts += 1;
        let log = self.dir.path().join(format!("oxcd-{}.log", self.starts));
        let name = format!("oxcd {} on {}", self.name, self.endpoint);
        self.process = Some(ManagedProcess::spawn(&name, command, &log)?);
        Ok(())
    }

    /// Waits until the started process answers a linearizable read (it has a leader).
    pub async fn wait_serving(&mut self) -> Result<()> {
        let endpoint = self.endpoint.clone();
        let options = self.connect_options();
        match self.process.as_mut() {
            Some(process) => {
                process
                    .wait_ready(READY_TIMEOUT, || {
                        kv_answers_with(&endpoint, options.clone())
                    })
                    .await
            }
            None => Err(HarnessError::NotStarted {
                name: self.name.clone(),
            }),
        }
    }

    /// Serves clients on https (reached with `client_tls`) and peers on https when
    /// `peer_https`; the certificate flags themselves go in the extra arguments.
    pub fn use_tls(&mut self, client_tls: Option<ClientTls>, peer_https: bool) {
        let scheme = if client_tls.is_some() {
            "https"
        } else {
            "http"
        };
        self.endpoint = format!("{scheme}://127.0.0.1:{}", self.client_port);
        self.client_tls = client_tls;
        self.peer_https = peer_https;
    }

    /// Runs the member in a cgroup of its own from its next start, so a test can cut it off
    /// from its peers ([`crate::Partition`]). Needs root.
    pub fn use_own_cgroup(&mut self) {
        let unique = self.dir.path().file_name().map_or_else(
            || format!("{}", self.client_port),
            |n| n.to_string_lossy().into_owned(),
        );
        self.cgroup = Some(PathBuf::from(crate::partition::CGROUP_ROOT).join(unique));
    }

    /// The cgroup the member runs in, if it has its own.
    pub fn cgroup(&self) -> Option<&Path> {
        self.cgroup.as_deref()
    }

    /// `--name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The peer port.
    pub fn peer_port(&self) -> u16 {
        self.peer_port
    }

    /// The peer URL, `http(s)://127.0.0.1:<peer port>`.
    pub fn peer_url(&self) -> String {
        let scheme = if self.peer_https { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.peer_port)
    }

    /// Replaces the cluster flags used by the next start.
    pub fn set_cluster_args(&mut self, cluster_args: &[&str]) {
        self.cluster_args = cluster_args.iter().map(|s| s.to_string()).collect();
    }

    /// Options for clients of this member (TLS when it serves https).
    pub fn connect_options(&self) -> ConnectOptions {
        let options = ConnectOptions::new()
            .with_connect_timeout(std::time::Duration::from_secs(1))
            .with_timeout(std::time::Duration::from_secs(10));
        match &self.client_tls {
            Some(tls) => options.with_tls(tls.options()),
            None => options,
        }
    }

    /// The client URL, `http(s)://127.0.0.1:<port>`.
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

    /// Freezes the member (SIGSTOP): it keeps its sockets but answers nothing, like a stalled
    /// machine. [`OxcdServer::resume`] undoes it.
    pub fn pause(&self) -> Result<()> {
        self.signal("-STOP")
    }

    /// Lets a paused member run again (SIGCONT).
    pub fn resume(&self) -> Result<()> {
        self.signal("-CONT")
    }

    fn signal(&self, signal: &str) -> Result<()> {
        let Some(process) = self.process.as_ref() else {
            return Err(HarnessError::NotStarted {
                name: self.name.clone(),
            });
        };
        let status = Command::new("kill")
            .arg(signal)
            .arg(process.pid().to_string())
            .status()
            .map_err(|source| HarnessError::Spawn {
                program: "kill".into(),
                source,
            })?;
        if status.success() {
            Ok(())
        } else {
            Err(HarnessError::Cluster(format!(
                "kill {signal} {} failed: {status}",
                process.pid()
            )))
        }
    }

    /// Starts the member again on the same data dir and port.
    pub async fn restart(&mut self) -> Result<()> {
        self.kill()?;
        self.launch().await
    }

    /// A new etcd client connected to this member.
    pub async fn client(&self) -> Result<Client> {
        Client::connect(
            [self.endpoint.as_str()],
            self.client_tls.as_ref().map(|_| self.connect_options()),
        )
        .await
        .map_err(|source| HarnessError::Connect {
            endpoint: self.endpoint.clone(),
            source,
        })
    }
}

/// True when `endpoint` answers a KV request with `options` (a member serving with a leader).
async fn kv_answers_with(endpoint: &str, options: ConnectOptions) -> bool {
    match Client::connect([endpoint], Some(options)).await {
        Ok(mut client) => client.get("oxcd-harness-ready-probe", None).await.is_ok(),
        Err(_) => false,
    }
}

impl Drop for OxcdServer {
    fn drop(&mut self) {
        if let Some(cgroup) = self.cgroup.take() {
            // The process must be gone before its cgroup can be removed.
            let _ = self.kill();
            let _ = std::fs::remove_dir(cgroup);
        }
    }
}
