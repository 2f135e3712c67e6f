//! A real Kubernetes control plane for one test: `e2e/local/up` in a temporary state dir, a kube
//! client for its admin kubeconfig, and `e2e/local/down` when dropped (also after a failure).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use tempfile::TempDir;

/// The storage under kube-apiserver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// The workspace's oxcd binary (`$OXCD_BIN`, default `target/debug/oxcd`).
    Oxcd,
    /// The reference etcd 3.6 from the toolchain cache.
    Etcd,
}

impl Storage {
    /// The `--storage=` value of `e2e/local/up`.
    pub fn name(self) -> &'static str {
        match self {
            Storage::Oxcd => "oxcd",
            Storage::Etcd => "etcd",
        }
    }
}

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .and_then(Path::parent)
        .unwrap_or(manifest_dir)
        .to_path_buf()
}

/// A running control plane; `e2e/local/down` stops it when dropped.
pub struct ControlPlane {
    storage: Storage,
    facts: HashMap<String, String>,
    client: Client,
    up_time: Duration,
    // Last: the directory goes after `down` ran in `drop`.
    state: TempDir,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("storage", &self.storage)
            .field("state", &self.state.path())
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// Runs `e2e/local/up --storage=<storage> <extra_args>` in a fresh temporary state dir and
    /// connects a client with its admin kubeconfig.
    pub async fn up(storage: Storage, extra_args: &[&str]) -> Result<Self> {
        let root = workspace_root();
        let state = tempfile::Builder::new()
            .prefix(&format!("oxcd-k8s-{}-", storage.name()))
            .tempdir()
            .context("failed to create the state dir")?;
        let mut cmd = tokio::process::Command::new(root.join("e2e/local/up"));
        cmd.arg(format!("--storage={}", storage.name()))
            .arg(format!("--state-dir={}", state.path().display()))
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if storage == Storage::Oxcd && std::env::var_os("OXCD_BIN").is_none() {
            cmd.env("OXCD_BIN", root.join("target/debug/oxcd"));
        }
        let started = Instant::now();
        let out = tokio::time::timeout(Duration::from_secs(300), cmd.output())
            .await
            .context("e2e/local/up did not finish in 300 s")?
            .context("failed to run e2e/local/up")?;
        let up_time = started.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            // up stops what it started when it fails; down also removes the rest.
            run_down(state.path());
            bail!(
                "e2e/local/up --storage={} failed:\n{stderr}",
                storage.name()
            );
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let last = stdout.lines().last().unwrap_or_default();
        let kubeconfig_path = state.path().join("admin.kubeconfig");
        if !last.starts_with("export KUBECONFIG=") {
            run_down(state.path());
            bail!("the last line of e2e/local/up is not `export KUBECONFIG=...`: {stdout}");
        }
        // From here on, dropping `plane` runs `down`.
        let facts = read_env_file(&state.path().join("cluster.env"))?;
        let client = match connect(&kubeconfig_path).await {
            Ok(c) => c,
            Err(e) => {
                run_down(state.path());
                return Err(e);
            }
        };
        eprintln!(
            "control plane on {} up in {:.1} s:\n{stderr}",
            storage.name(),
            up_time.as_secs_f64()
        );
        Ok(Self {
            storage,
            facts,
            client,
            up_time,
            state,
        })
    }

    /// A client with cluster-admin rights.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The storage this control plane runs on.
    pub fn storage(&self) -> Storage {
        self.storage
    }

    /// How long `e2e/local/up` took.
    pub fn up_time(&self) -> Duration {
        self.up_time
    }

    /// A `KEY=value` fact that `up` wrote to `cluster.env`.
    pub fn fact(&self, key: &str) -> Result<&str> {
        self.facts
            .get(key)
            .map(String::as_str)
            .with_context(|| format!("cluster.env has no {key}"))
    }

    /// Runs etcdctl against the storage cluster (the state dir's `storagectl`), returning stdout.
    pub async fn storagectl(&self, args: &[&str]) -> Result<String> {
        let out = tokio::process::Command::new(self.state.path().join("bin/storagectl"))
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(30), out)
            .await
            .context("storagectl did not finish in 30 s")??;
        if !out.status.success() {
            bail!(
                "storagectl {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    /// The kube-apiserver log so far.
    pub fn apiserver_log(&self) -> Result<String> {
        let path = self.fact("APISERVER_LOG")?;
        std::fs::read_to_string(path).with_context(|| format!("failed to read {path}"))
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        run_down_keeping_logs(self.state.path(), self.storage);
    }
}

/// Environment variable naming a directory to keep each control plane's logs in (for CI
/// artifacts and for reading the apiserver's log after a run): `<dir>/<storage>/*.log`.
const KEEP_LOGS_VAR: &str = "OXCD_K8S_KEEP_LOGS";

/// Stops the control plane, copying its logs to `$OXCD_K8S_KEEP_LOGS/<storage>/` first if set.
fn run_down_keeping_logs(state: &Path, storage: Storage) {
    run_down_inner(state, false);
    if let Some(dir) = std::env::var_os(KEEP_LOGS_VAR).filter(|d| !d.is_empty()) {
        let dest = PathBuf::from(dir).join(storage.name());
        let copied = std::fs::create_dir_all(&dest).and_then(|()| {
            for entry in std::fs::read_dir(state.join("logs"))? {
                let entry = entry?;
                std::fs::copy(entry.path(), dest.join(entry.file_name()))?;
            }
            Ok(())
        });
        if let Err(e) = copied {
            eprintln!("failed to keep the logs in {}: {e}", dest.display());
        }
    }
    run_down_inner(state, true);
}

/// Runs `e2e/local/down --purge` for the state dir (blocking; bounded by down's own timeouts).
fn run_down(state: &Path) {
    run_down_inner(state, true);
}

fn run_down_inner(state: &Path, purge: bool) {
    let mut cmd = Command::new(workspace_root().join("e2e/local/down"));
    cmd.arg(format!("--state-dir={}", state.display()));
    if purge {
        cmd.arg("--purge");
    }
    let status = cmd.stdin(Stdio::null()).status();
    match status {
        Ok(s) if s.success() => {}
        other => eprintln!("e2e/local/down for {} failed: {other:?}", state.display()),
    }
}

async fn connect(kubeconfig: &Path) -> Result<Client> {
    let kc = Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("failed to read {}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

fn read_env_file(path: &Path) -> Result<HashMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read {}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}
