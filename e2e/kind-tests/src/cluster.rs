//! The kind cluster under test: a client built from the kubeconfig that `KUBECONFIG` names when
//! its current context is a kind cluster's, or `None` with the reason printed, so that a plain
//! `cargo test` without a cluster skips. `e2e/test` sets `OXCD_KIND_REQUIRED=1`, which turns a
//! missing cluster into an error: there the tests must run.

use anyhow::{Context, bail};
use kube::Client;
use kube::config::{Config, KubeConfigOptions, Kubeconfig};

/// Environment variable that, set to `1`, makes a missing kind cluster an error instead of a skip.
pub const REQUIRED_ENV: &str = "OXCD_KIND_REQUIRED";

/// Environment variable naming the busybox image of test pods (default [`DEFAULT_BUSYBOX_IMAGE`]).
pub const BUSYBOX_IMAGE_ENV: &str = "OXCD_E2E_BUSYBOX_IMAGE";

/// The busybox image `e2e/kind/up` builds (Debian's static busybox) and its registry serves.
pub const DEFAULT_BUSYBOX_IMAGE: &str = "oxcd.local/busybox:1.35";

/// The image of test pods that need a shell, `httpd`, `wget` and `sleep`.
pub fn busybox_image() -> String {
    std::env::var(BUSYBOX_IMAGE_ENV).unwrap_or_else(|_| DEFAULT_BUSYBOX_IMAGE.to_owned())
}

/// A client of the kind cluster `KUBECONFIG` points at, or `None` (after printing why) when there
/// is none and `OXCD_KIND_REQUIRED` is not `1`.
pub async fn kind_client() -> anyhow::Result<Option<Client>> {
    let required = std::env::var(REQUIRED_ENV).is_ok_and(|v| v == "1");
    let skip = |reason: String| -> anyhow::Result<Option<Client>> {
        if required {
            bail!("{REQUIRED_ENV}=1 but {reason}");
        }
        println!("SKIPPED: {reason}; run `eval \"$(e2e/kind/up)\"` first to test on kind");
        Ok(None)
    };
    if std::env::var_os("KUBECONFIG").is_none_or(|v| v.is_empty()) {
        return skip("KUBECONFIG is not set".to_owned());
    }
    let kubeconfig = Kubeconfig::from_env()
        .context("failed to read the kubeconfig KUBECONFIG names")?
        .context("KUBECONFIG names no kubeconfig")?;
    let context = kubeconfig.current_context.clone().unwrap_or_default();
    if !context.starts_with("kind-") {
        return skip(format!(
            "the current context of KUBECONFIG is {context:?}, not a kind cluster's (kind-*)"
        ));
    }
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .context("failed to configure a client from KUBECONFIG")?;
    let client = Client::try_from(config).context("failed to build a Kubernetes client")?;
    client
        .apiserver_version()
        .await
        .with_context(|| format!("kind cluster of context {context} does not answer"))?;
    Ok(Some(client))
}
