//! Manifests of the repository applied to a test's namespace: `kubectl apply` of a YAML file with
//! its `@NAME@` placeholders filled in (kubectl is the pinned one `e2e/kind/up` puts on PATH, and
//! talks to the cluster KUBECONFIG names, as the test's client does).

use std::path::Path;
use std::process::Stdio;

use anyhow::{Context, bail};
use tokio::io::AsyncWriteExt;

/// Applies the manifest at `path` (relative to the repository root) in `namespace`, each
/// `(placeholder, value)` of `values` replaced first.
pub async fn apply_manifest(
    namespace: &str,
    path: &str,
    values: &[(&str, &str)],
) -> anyhow::Result<()> {
    let file = repo_root().join(path);
    let mut manifest = tokio::fs::read_to_string(&file)
        .await
        .with_context(|| format!("failed to read {}", file.display()))?;
    for (placeholder, value) in values {
        manifest = manifest.replace(placeholder, value);
    }
    let mut kubectl = tokio::process::Command::new("kubectl")
        .args(["apply", "--namespace", namespace, "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("failed to start kubectl (is e2e/kind/up's PATH exported?)")?;
    let mut stdin = kubectl.stdin.take().context("kubectl has no stdin")?;
    stdin.write_all(manifest.as_bytes()).await?;
    drop(stdin);
    let out = kubectl.wait_with_output().await?;
    if !out.status.success() {
        bail!(
            "kubectl apply of {path} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A pinned version from `e2e/toolchain/versions.env` (`KEY=value` lines).
pub fn pinned_version(key: &str) -> anyhow::Result<String> {
    let file = repo_root().join("e2e/toolchain/versions.env");
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("failed to read {}", file.display()))?;
    text.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_owned)
        .with_context(|| format!("no {key}= in {}", file.display()))
}

/// The repository root (two levels above this crate).
pub fn repo_root() -> &'static Path {
    // This crate is <repo>/e2e/kind-tests.
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}
