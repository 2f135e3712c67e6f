//! The two systems under comparison, started the same way: `size` members on loopback with
//! etcd's flags (fsync on, default snapshot count), data in a temporary directory on the same
//! filesystem, a client URL per member. Stopped (SIGKILL after the run) when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use etcd_client::{Client, ConnectOptions};

/// Which store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    /// The reference etcd 3.6.
    Etcd,
    /// oxcd, release build.
    Oxcd,
}

impl System {
    /// Its name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::Etcd => "etcd",
            Self::Oxcd => "oxcd",
        }
    }
}

/// Where the binaries are.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// etcd 3.6.
    pub etcd: PathBuf,
    /// etcdctl 3.6 (snapshot save for etcd).
    pub etcdctl: PathBuf,
    /// etcdutl 3.6 (snapshot restore for etcd).
    pub etcdutl: PathBuf,
    /// etcd's benchmark tool.
    pub benchmark: PathBuf,
    /// oxcd (release).
    pub oxcd: PathBuf,
}

impl Binaries {
    /// Finds the toolchain binaries and builds oxcd in release mode.
    pub fn locate() -> Result<Self> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let bin_dir = match std::env::var_os("OXCD_BIN_DIR") {
            Some(d) => PathBuf::from(d),
            None => root.join(".cache/bin"),
        };
        let need = |name: &str| -> Result<PathBuf> {
            let p = bin_dir.join(name);
            if p.is_file() {
                Ok(p)
            } else {
                bail!("{} not found: run e2e/toolchain/install", p.display())
            }
        };
        // A prebuilt binary (e.g. one kept per commit for a before/after run) skips the build.
        if let Some(oxcd) = std::env::var_os("OXCD_BENCH_OXCD") {
            return Ok(Self {
                etcd: need("etcd-3.6")?,
                etcdctl: need("etcdctl-3.6")?,
                etcdutl: need("etcdutl-3.6")?,
                benchmark: need("benchmark")?,
                oxcd: PathBuf::from(oxcd),
            });
        }
        eprintln!("building oxcd (release)...");
        // A target dir of its own: building the oxcd package alone resolves shared
        // dependencies' features differently from building this tool, and in one target dir
        // each build would undo the other's.
        let target = root.join("target/bench-oxcd");
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--release", "--bin", "oxcd", "--target-dir"])
            .arg(&target)
            .current_dir(&root)
            .status()
            .context("cargo build")?;
        if !status.success() {
            bail!("building oxcd failed");
        }
        Ok(Self {
            etcd: need("etcd-3.6")?,
            etcdctl: need("etcdctl-3.6")?,
            etcdutl: need("etcdutl-3.6")?,
            benchmark: need("benchmark")?,
            oxcd: target.join("release/oxcd"),
        })
    }
}

struct Member {
    child: Child,
    data_dir: PathBuf,
}

/// A running cluster of one system.
pub struct Cluster {
    /// Which system.
    pub system: System,
    members: Vec<Member>,
    endpoints: Vec<String>,
    _dir: tempfile::TempDir,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Cluster {
    /// Starts `size` members of `system` and waits until they serve.
    pub async fn start(system: System, size: usize, bins: &Binaries) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("oxcd-bench-{}-", system.name()))
            .tempdir_in(std::env::temp_dir())?;
        let mut ports = Vec::new();
        for _ in 0..size {
            ports.push((free_port()?, free_port()?, free_port()?));
        }
        let initial = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer, _))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let binary = match system {
            System::Etcd => &bins.etcd,
            System::Oxcd => &bins.oxcd,
        };
        let mut members = Vec::new();
        let mut endpoints = Vec::new();
        for (i, (client, peer, metrics)) in ports.iter().enumerate() {
            let data_dir = dir.path().join(format!("m{i}"));
            let log = std::fs::File::create(dir.path().join(format!("m{i}.log")))?;
            let client_url = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let child = Command::new(binary)
                .args(["--name", &format!("m{i}")])
                .arg("--data-dir")
                .arg(&data_dir)
                .args(["--listen-client-urls", &client_url])
                .args(["--advertise-client-urls", &client_url])
                .args(["--listen-peer-urls", &peer_url])
                .args(["--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &initial])
                .args(["--initial-cluster-token", "bench"])
                .args([
                    "--listen-metrics-urls",
                    &format!("http://127.0.0.1:{metrics}"),
                ])
                .args(["--quota-backend-bytes", "8589934592"])
                .args(["--log-level", "error"])
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {}", binary.display()))?;
            members.push(Member { child, data_dir });
            endpoints.push(client_url);
        }
        let cluster = Self {
            system,
            members,
            endpoints,
            _dir: dir,
        };
        cluster.wait_ready().await?;
        Ok(cluster)
    }

    async fn wait_ready(&self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        for endpoint in &self.endpoints {
            loop {
                let options = ConnectOptions::new()
                    .with_connect_timeout(Duration::from_secs(1))
                    .with_timeout(Duration::from_secs(2));
                if let Ok(mut c) = Client::connect([endpoint.as_str()], Some(options)).await
                    && c.get("bench-ready", None).await.is_ok()
                {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    bail!("{} at {endpoint} did not become ready", self.system.name());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// Client URLs of the members.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The largest peak resident set (VmHWM) of any member, in bytes.
    pub fn peak_rss(&self) -> u64 {
        self.members
            .iter()
            .filter_map(|m| {
                let status =
                    std::fs::read_to_string(format!("/proc/{}/status", m.child.id())).ok()?;
                let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
                let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
                Some(kib * 1024)
            })
            .max()
            .unwrap_or(0)
    }

    /// The largest data directory of any member, in bytes.
    pub fn disk_usage(&self) -> u64 {
        self.members
            .iter()
            .map(|m| dir_size(&m.data_dir))
            .max()
            .unwrap_or(0)
    }
}

/// Bytes of the files below `path`.
pub fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            let _ = m.child.kill();
            let _ = m.child.wait();
        }
    }
}
