//! The storage under the kind cluster's kube-apiserver, read directly: etcdctl 3.6 (the
//! toolchain's) with the endpoints and admin client certificate that `e2e/kind/up
//! --control-plane-storage=oxcd` exports as `OXCD_KIND_STORAGE_{ENDPOINTS,CACERT,CERT,KEY}`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};

/// Comma-separated client URLs of the oxcd storage, published on the host's loopback.
pub const STORAGE_ENDPOINTS_ENV: &str = "OXCD_KIND_STORAGE_ENDPOINTS";

/// How long one etcdctl command may take.
const CTL_TIMEOUT: Duration = Duration::from_secs(30);

/// etcdctl aimed at the kind cluster's oxcd storage.
#[derive(Debug, Clone)]
pub struct Storagectl {
    etcdctl: PathBuf,
    flags: Vec<String>,
}

impl Storagectl {
    /// From the `OXCD_KIND_STORAGE_*` variables, or `None` when the endpoints variable is unset
    /// (a cluster on kubeadm's own etcd); the certificate variables are then required.
    pub fn from_env() -> anyhow::Result<Option<Self>> {
        let Some(endpoints) = std::env::var(STORAGE_ENDPOINTS_ENV)
            .ok()
            .filter(|e| !e.is_empty())
        else {
            return Ok(None);
        };
        let var = |name: &str| {
            std::env::var(name)
                .with_context(|| format!("{STORAGE_ENDPOINTS_ENV} is set but {name} is not"))
        };
        let flags = vec![
            format!("--endpoints={endpoints}"),
            format!("--cacert={}", var("OXCD_KIND_STORAGE_CACERT")?),
            format!("--cert={}", var("OXCD_KIND_STORAGE_CERT")?),
            format!("--key={}", var("OXCD_KIND_STORAGE_KEY")?),
        ];
        let bin_dir = std::env::var_os("OXCD_BIN_DIR")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("OXCD_CACHE")
                    .filter(|d| !d.is_empty())
                    .map(|c| PathBuf::from(c).join("bin"))
            })
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/oxcd/bin")))
            .context("neither OXCD_BIN_DIR, OXCD_CACHE nor HOME is set: no etcdctl")?;
        Ok(Some(Self {
            etcdctl: bin_dir.join("etcdctl-3.6"),
            flags,
        }))
    }

    /// Runs `etcdctl <args>` (bounded to 30 s), returning stdout.
    pub async fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = tokio::process::Command::new(&self.etcdctl)
            .args(&self.flags)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(CTL_TIMEOUT, out)
            .await
            .context("etcdctl did not finish in 30 s")?
            .with_context(|| format!("failed to run {}", self.etcdctl.display()))?;
        if !out.status.success() {
            bail!(
                "etcdctl {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// One key of `etcdctl get -w fields` output: its value (Go-quoted, as etcdctl prints it) and
/// its revisions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredKey {
    /// The key.
    pub key: String,
    /// The value as etcdctl prints it (a Go-quoted string: protobuf bytes escaped).
    pub value: String,
    /// The revision of the key's last change: the object's resourceVersion.
    pub mod_revision: u64,
}

/// Parses the keys of `etcdctl get -w fields` output.
pub fn parse_fields(out: &str) -> anyhow::Result<Vec<StoredKey>> {
    let mut keys: Vec<StoredKey> = Vec::new();
    for line in out.lines() {
        let Some((name, value)) = line.split_once(" : ") else {
            continue;
        };
        match name {
            "\"Key\"" => keys.push(StoredKey {
                key: value.trim().trim_matches('"').to_owned(),
                ..StoredKey::default()
            }),
            "\"Value\"" => {
                keys.last_mut().context("Value before Key")?.value = value.trim().to_owned()
            }
            "\"ModRevision\"" => {
                keys.last_mut()
                    .context("ModRevision before Key")?
                    .mod_revision = value
                    .trim()
                    .parse()
                    .context("ModRevision is not a number")?
            }
            _ => {}
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_output_yields_each_key_with_value_and_revision() -> anyhow::Result<()> {
        let out = "\"ClusterID\" : 1\n\"Revision\" : 9\n\"Key\" : \"/registry/a\"\n\
                   \"CreateRevision\" : 3\n\"ModRevision\" : 7\n\"Version\" : 2\n\
                   \"Value\" : \"k8s\\x00v\"\n\"Lease\" : 0\n\"Key\" : \"/registry/b\"\n\
                   \"ModRevision\" : 8\n\"Value\" : \"x\"\n\"More\" : false\n\"Count\" : 2\n";
        let keys = parse_fields(out)?;
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].key, "/registry/a");
        assert_eq!(keys[0].mod_revision, 7);
        assert_eq!(keys[0].value, "\"k8s\\x00v\"");
        assert_eq!(keys[1].mod_revision, 8);
        Ok(())
    }
}
