//! The oxcd operator installed in the kind cluster from `deploy/` (the rendered chart), removed
//! again when the test is done, and an etcd client for a StoreCluster's members that presents
//! the client certificate the operator generated.

use std::time::Duration;

use anyhow::{Context, bail};
use etcd_client::{Certificate, Client as EtcdClient, ConnectOptions, Identity, TlsOptions};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use crate::manifest::repo_root;
use crate::port_forward::PortForward;
use crate::wait::{await_condition, deployment_available};

/// Namespace of the operator installed from `deploy/`.
pub const OPERATOR_NAMESPACE: &str = "oxcd-system";

pub(crate) async fn kubectl(args: &[&str]) -> anyhow::Result<String> {
    let out = tokio::process::Command::new("kubectl")
        .args(args)
        .current_dir(repo_root())
        .kill_on_drop(true)
        .output()
        .await
        .context("failed to run kubectl")?;
    if !out.status.success() {
        bail!(
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `scenario` against the operator of `deploy/` in a temporary namespace named after
/// `prefix`: installs the operator first and removes it afterwards, also when the scenario
/// fails. Without a kind cluster (and `OXCD_KIND_REQUIRED` unset) it does nothing.
pub async fn with_operator<F, Fut>(prefix: &str, scenario: F) -> anyhow::Result<()>
where
    F: FnOnce(Client, String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let Some(client) = crate::kind_client().await? else {
        return Ok(());
    };
    install_operator(&client).await?;
    let outcome = crate::with_temp_ns(&client, prefix, scenario).await;
    let removed = uninstall_operator().await;
    outcome.and(removed)
}

/// Installs the operator with `kubectl apply -f deploy/` and waits until it runs; `uninstall`
/// removes it.
pub async fn install_operator(client: &Client) -> anyhow::Result<()> {
    kubectl(&["apply", "-f", "deploy/"]).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    await_condition(
        &deployments,
        "oxcd-operator",
        "available",
        Duration::from_secs(120),
        |d: Option<&Deployment>| deployment_available(d),
    )
    .await?;
    Ok(())
}

/// Removes what `install_operator` applied.
pub async fn uninstall_operator() -> anyhow::Result<()> {
    kubectl(&[
        "delete",
        "--ignore-not-found",
        "--wait=true",
        "-f",
        "deploy/",
    ])
    .await?;
    Ok(())
}

/// The operator's logs (for failure messages).
pub async fn operator_logs() -> String {
    kubectl(&[
        "logs",
        "-n",
        OPERATOR_NAMESPACE,
        "deployment/oxcd-operator",
        "--tail=60",
    ])
    .await
    .unwrap_or_else(|error| format!("(no logs: {error:#})"))
}

/// An etcd client of one member through a port-forward, presenting the client certificate in
/// Secret `client_secret` (`tls.crt`, `tls.key`, `ca.crt`).
pub struct MemberClient {
    /// The client.
    pub etcd: EtcdClient,
    _forward: PortForward,
}

impl MemberClient {
    /// Connects to `pod` of `namespace` over mTLS with the certificate of `client_secret`.
    pub async fn connect(
        client: &Client,
        namespace: &str,
        pod: &str,
        client_secret: &str,
    ) -> anyhow::Result<Self> {
        Self::connect_tls(client, namespace, pod, client_secret, true).await
    }

    /// Connects to `pod` over TLS trusting the cluster's CA but presenting no certificate.
    pub async fn connect_without_certificate(
        client: &Client,
        namespace: &str,
        pod: &str,
        client_secret: &str,
    ) -> anyhow::Result<Self> {
        Self::connect_tls(client, namespace, pod, client_secret, false).await
    }

    async fn connect_tls(
        client: &Client,
        namespace: &str,
        pod: &str,
        client_secret: &str,
        present_certificate: bool,
    ) -> anyhow::Result<Self> {
        let forward = PortForward::start(namespace, pod, 2379).await?;
        let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let data = secrets.get(client_secret).await?.data.unwrap_or_default();
        let text = |key: &str| -> anyhow::Result<String> {
            let bytes = data
                .get(key)
                .with_context(|| format!("{client_secret} has no {key}"))?;
            Ok(String::from_utf8(bytes.0.clone())?)
        };
        let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(text("ca.crt")?));
        if present_certificate {
            tls = tls.identity(Identity::from_pem(text("tls.crt")?, text("tls.key")?));
        }
        let options = ConnectOptions::new()
            .with_tls(tls)
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(10));
        let endpoint = format!("https://127.0.0.1:{}", forward.port);
        let etcd = EtcdClient::connect([endpoint], Some(options)).await?;
        Ok(Self {
            etcd,
            _forward: forward,
        })
    }
}
