//! What the suite needs to know about a cluster it did not start: how to reach its storage with
//! etcdctl (from the `OXCD_KIND_STORAGE_*` variables `e2e/kind/up --control-plane-storage=oxcd`
//! exports), and the kube-apiserver's own flags (read from its static pod).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client};

/// Comma-separated client URLs of the storage, reachable from the test's host.
pub const ENDPOINTS_ENV: &str = "OXCD_KIND_STORAGE_ENDPOINTS";
/// CA certificate of the storage's serving certificates.
pub const CACERT_ENV: &str = "OXCD_KIND_STORAGE_CACERT";
/// Client certificate the storage accepts (an admin's).
pub const CERT_ENV: &str = "OXCD_KIND_STORAGE_CERT";
/// Key of [`CERT_ENV`].
pub const KEY_ENV: &str = "OXCD_KIND_STORAGE_KEY";

/// Label selector of kubeadm's kube-apiserver static pods.
pub const APISERVER_SELECTOR: &str = "component=kube-apiserver";

/// kube-apiserver's `--event-ttl` when the flag is absent.
pub const DEFAULT_EVENT_TTL: Duration = Duration::from_secs(3600);

/// How long one etcdctl command may take.
const CTL_TIMEOUT: Duration = Duration::from_secs(30);

/// etcdctl 3.6 (the toolchain's) aimed at a storage cluster with client certificates.
#[derive(Debug, Clone)]
pub struct StorageAccess {
    etcdctl: PathBuf,
    flags: Vec<String>,
    endpoints: Vec<String>,
}

impl StorageAccess {
    /// The storage the `OXCD_KIND_STORAGE_*` variables name, or `None` when
    /// `OXCD_KIND_STORAGE_ENDPOINTS` is unset or empty; the other three are then required.
    pub fn from_env() -> Result<Option<Self>> {
        let Some(endpoints) = std::env::var(ENDPOINTS_ENV).ok().filter(|e| !e.is_empty()) else {
            return Ok(None);
        };
        let var = |name: &str| {
            std::env::var(name).with_context(|| format!("{ENDPOINTS_ENV} is set but {name} is not"))
        };
        let flags = vec![
            format!("--endpoints={endpoints}"),
            format!("--cacert={}", var(CACERT_ENV)?),
            format!("--cert={}", var(CERT_ENV)?),
            format!("--key={}", var(KEY_ENV)?),
        ];
        Ok(Some(Self {
            etcdctl: toolchain_etcdctl(),
            flags,
            endpoints: endpoints.split(',').map(str::to_owned).collect(),
        }))
    }

    /// The storage's client URLs, one per member.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Runs `etcdctl <args>` against the storage, returning stdout.
    pub async fn ctl(&self, args: &[&str]) -> Result<String> {
        run_bounded(&self.etcdctl, &self.flags, args).await
    }
}

/// The toolchain's etcdctl 3.6: `$OXCD_BIN_DIR`, else `$OXCD_CACHE/bin`, else `~/.cache/oxcd/bin`
/// (where `e2e/toolchain/install` puts it).
fn toolchain_etcdctl() -> PathBuf {
    let dir = std::env::var_os("OXCD_BIN_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("OXCD_CACHE")
                .filter(|d| !d.is_empty())
                .map(|c| PathBuf::from(c).join("bin"))
        })
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/oxcd/bin")))
        .unwrap_or_default();
    dir.join("etcdctl-3.6")
}

/// Runs `program <flags> <args>` for at most 30 s, returning its stdout; fails with its stderr
/// when it exits non-zero.
pub async fn run_bounded(program: &Path, flags: &[String], args: &[&str]) -> Result<String> {
    let out = tokio::process::Command::new(program)
        .args(flags)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(CTL_TIMEOUT, out)
        .await
        .with_context(|| format!("{} did not finish in 30 s", program.display()))?
        .with_context(|| format!("failed to run {}", program.display()))?;
    if !out.status.success() {
        bail!(
            "{} {args:?} failed: {}",
            program.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// The value of `flag` (`--name`) on the command line of the cluster's kube-apiserver pod, or
/// `None` when the pod does not set it.
pub async fn apiserver_flag(client: &Client, flag: &str) -> Result<Option<String>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    let list = pods
        .list(&ListParams::default().labels(APISERVER_SELECTOR))
        .await?;
    let pod = list
        .items
        .first()
        .with_context(|| format!("no kube-apiserver pod in kube-system ({APISERVER_SELECTOR})"))?;
    let prefix = format!("{flag}=");
    Ok(pod
        .spec
        .iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| c.command.iter().flatten().chain(c.args.iter().flatten()))
        .find_map(|a| a.strip_prefix(&prefix).map(str::to_owned)))
}

/// Parses a Go duration made of hours, minutes and seconds (`10s`, `1m30s`, `1h`).
pub fn parse_duration(text: &str) -> Result<Duration> {
    let mut total = 0u64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => bail!("duration {text:?}: unit {c:?} is not h, m or s"),
        };
        let n: u64 = number
            .parse()
            .with_context(|| format!("duration {text:?}: no number before {c:?}"))?;
        total += n * unit;
        number.clear();
    }
    if !number.is_empty() || text.is_empty() {
        bail!("duration {text:?} does not end with a unit");
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_of_hours_minutes_and_seconds_parse() -> Result<()> {
        assert_eq!(parse_duration("10s")?, Duration::from_secs(10));
        assert_eq!(parse_duration("1h2m3s")?, Duration::from_secs(3723));
        assert_eq!(parse_duration("5m")?, Duration::from_secs(300));
        Ok(())
    }

    #[test]
    fn durations_without_unit_or_with_other_units_are_refused() {
        for bad in ["", "10", "5ms", "s", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} parsed");
        }
    }
}
