//! A real Kubernetes control plane for one test: either `e2e/local/up` in a temporary state dir,
//! with a kube client for its admin kubeconfig and `e2e/local/down` when dropped (also after a
//! failure), or an existing cluster (`KUBECONFIG`, e.g. a kind cluster made by `e2e/kind/up
//! --control-plane-storage=oxcd`) whose storage the `OXCD_KIND_STORAGE_*` variables name.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, LogParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use tempfile::TempDir;

use crate::existing::{self, StorageAccess};

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

/// Where the control plane runs.
enum Backend {
    /// Started by `e2e/local/up` in `state`; `e2e/local/down` stops it when dropped.
    Local {
        storage: Storage,
        facts: HashMap<String, String>,
        state: TempDir,
    },
    /// A cluster that was running before the suite and keeps running after it.
    Existing {
        storage: StorageAccess,
        /// When the suite attached: the apiserver log is read from then on (the cluster's earlier
        /// history belongs to whatever ran on it before).
        attached: Instant,
    },
}

/// A running control plane; a local one is stopped (`e2e/local/down`) when dropped.
pub struct ControlPlane {
    backend: Backend,
    client: Client,
    up_time: Duration,
    event_ttl: Duration,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("ControlPlane");
        match &self.backend {
            Backend::Local { storage, state, .. } => {
                d.field("storage", storage).field("state", &state.path())
            }
            Backend::Existing { storage, .. } => d.field("existing", storage),
        };
        d.finish_non_exhaustive()
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
        let facts = match read_env_file(&state.path().join("cluster.env")) {
            Ok(f) => f,
            Err(e) => {
                run_down(state.path());
                return Err(e);
            }
        };
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
        let ttl_arg = extra_args
            .iter()
            .rev()
            .find_map(|a| a.strip_prefix("--event-ttl="));
        let event_ttl = match ttl_arg.map(existing::parse_duration).transpose() {
            Ok(ttl) => ttl.unwrap_or(existing::DEFAULT_EVENT_TTL),
            Err(e) => {
                run_down(state.path());
                return Err(e);
            }
        };
        Ok(Self {
            backend: Backend::Local {
                storage,
                facts,
                state,
            },
            client,
            up_time,
            event_ttl,
        })
    }

    /// The cluster `KUBECONFIG` names, with its storage from `OXCD_KIND_STORAGE_ENDPOINTS`,
    /// `_CACERT`, `_CERT` and `_KEY` (what `e2e/kind/up --control-plane-storage=oxcd` exports),
    /// or `None` when `OXCD_KIND_STORAGE_ENDPOINTS` is not set. The suite's settings are read
    /// from the kube-apiserver pod: its `--event-ttl`.
    pub async fn existing() -> Result<Option<Self>> {
        let Some(storage) = StorageAccess::from_env()? else {
            return Ok(None);
        };
        let started = Instant::now();
        let kubeconfig = Kubeconfig::from_env()
            .context("failed to read the kubeconfig KUBECONFIG names")?
            .context("KUBECONFIG is not set")?;
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
        let client = Client::try_from(config)?;
        client
            .apiserver_version()
            .await
            .context("the cluster KUBECONFIG names does not answer")?;
        let event_ttl = existing::apiserver_flag(&client, "--event-ttl")
            .await?
            .map(|v| existing::parse_duration(&v))
            .transpose()?
            .unwrap_or(existing::DEFAULT_EVENT_TTL);
        storage
            .ctl(&["endpoint", "health"])
            .await
            .context("the storage of the existing cluster is not healthy")?;
        Ok(Some(Self {
            backend: Backend::Existing {
                storage,
                attached: Instant::now(),
            },
            client,
            up_time: started.elapsed(),
            event_ttl,
        }))
    }

    /// A client with cluster-admin rights.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// What the suite runs on, for messages: the storage of a local control plane, or
    /// "existing" for a cluster given by `KUBECONFIG`.
    pub fn label(&self) -> &'static str {
        match &self.backend {
            Backend::Local { storage, .. } => storage.name(),
            Backend::Existing { .. } => "existing",
        }
    }

    /// Whether the pods of this control plane run on kwok's fake nodes (a local control plane)
    /// rather than on real kubelets (an existing cluster).
    pub fn fake_nodes(&self) -> bool {
        matches!(self.backend, Backend::Local { .. })
    }

    /// kube-apiserver's `--event-ttl`: how long Events live in the storage.
    pub fn event_ttl(&self) -> Duration {
        self.event_ttl
    }

    /// How long `e2e/local/up` took.
    pub fn up_time(&self) -> Duration {
        self.up_time
    }

    /// A `KEY=value` fact that a local `up` wrote to `cluster.env`.
    pub fn fact(&self, key: &str) -> Result<&str> {
        match &self.backend {
            Backend::Local { facts, .. } => facts
                .get(key)
                .map(String::as_str)
                .with_context(|| format!("cluster.env has no {key}")),
            Backend::Existing { .. } => bail!("an existing cluster has no cluster.env ({key})"),
        }
    }

    /// Runs etcdctl against the storage cluster, returning stdout.
    pub async fn storagectl(&self, args: &[&str]) -> Result<String> {
        match &self.backend {
            Backend::Local { state, .. } => {
                existing::run_bounded(&state.path().join("bin/storagectl"), &[], args).await
            }
            Backend::Existing { storage, .. } => storage.ctl(args).await,
        }
    }

    /// Compacts the storage at `rev` and waits (at most 20 s) until every member has applied
    /// the compaction. etcdctl's `compaction` returns once the member it asked has applied it;
    /// kube-apiserver may read and watch through another member, which would still serve the
    /// compacted revisions for a moment.
    pub async fn compact_storage(&self, rev: u64) -> Result<()> {
        self.storagectl(&["compaction", &rev.to_string()]).await?;
        let endpoints: Vec<String> = match &self.backend {
            Backend::Local { .. } => self
                .fact("STORAGE_ENDPOINTS")?
                .split(',')
                .map(str::to_owned)
                .collect(),
            Backend::Existing { storage, .. } => storage.endpoints().to_vec(),
        };
        let before = (rev - 1).max(1).to_string();
        for endpoint in endpoints {
            let pinned = format!("--endpoints={endpoint}");
            let probe = [
                pinned.as_str(),
                "get",
                "--consistency=s",
                "--rev",
                before.as_str(),
                "compaction-probe",
            ];
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            loop {
                match self.storagectl(&probe).await {
                    Err(e) if format!("{e:#}").contains("required revision has been compacted") => {
                        break;
                    }
                    outcome if tokio::time::Instant::now() >= deadline => bail!(
                        "{endpoint} still serves revision {before} 20 s after compacting at {rev}: {outcome:?}"
                    ),
                    _ => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }
        Ok(())
    }

    /// The kube-apiserver log: all of it for a local control plane; for an existing cluster,
    /// every kube-apiserver pod's log since the suite attached.
    pub async fn apiserver_log(&self) -> Result<String> {
        match &self.backend {
            Backend::Local { .. } => {
                let path = self.fact("APISERVER_LOG")?;
                std::fs::read_to_string(path).with_context(|| format!("failed to read {path}"))
            }
            Backend::Existing { attached, .. } => {
                let pods: Api<Pod> = Api::namespaced(self.client.clone(), "kube-system");
                let list = pods
                    .list(&ListParams::default().labels(existing::APISERVER_SELECTOR))
                    .await?;
                if list.items.is_empty() {
                    bail!("no kube-apiserver pod ({})", existing::APISERVER_SELECTOR);
                }
                // A few seconds more than the suite ran: log lines carry their own time.
                let since = i64::try_from(attached.elapsed().as_secs() + 5).unwrap_or(i64::MAX);
                let mut log = String::new();
                for pod in list.items {
                    let name = pod.metadata.name.unwrap_or_default();
                    let params = LogParams {
                        since_seconds: Some(since),
                        ..LogParams::default()
                    };
                    log.push_str(
                        &pods
                            .logs(&name, &params)
                            .await
                            .with_context(|| format!("failed to read the log of {name}"))?,
                    );
                }
                Ok(log)
            }
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if let Backend::Local { storage, state, .. } = &self.backend {
            run_down_keeping_logs(state.path(), *storage);
        }
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
