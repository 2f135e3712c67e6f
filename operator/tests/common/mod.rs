//! What the operator's integration tests share: the operator binary run against a local
//! control plane (with its metrics read back), the StoreCluster CRD installed and established,
//! and StoreClusters from JSON specs.

use std::net::{SocketAddr, TcpListener};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, PostParams};
use oxcd_crds::StoreCluster;
use oxcd_k8s_suite::eventually;
use tokio::process::{Child, Command};

/// Namespace of the tests' StoreClusters.
pub const NS: &str = "prod";
/// How long anything may take to appear.
pub const WAIT: Duration = Duration::from_secs(90);

/// The operator binary running against the control plane, killed when dropped.
pub struct Operator {
    child: Child,
    http: SocketAddr,
}

impl Operator {
    /// Starts the operator binary (no leader election) against `kubeconfig`.
    pub fn start(kubeconfig: &str) -> Result<Self> {
        let http = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let child = Command::new(env!("CARGO_BIN_EXE_oxcd-operator"))
            .env("KUBECONFIG", kubeconfig)
            .env("OXCD_OPERATOR_HTTP_ADDRESS", http.to_string())
            .env("OXCD_LEADER_ELECTION", "false")
            .env("POD_NAMESPACE", "oxcd-system")
            .env("RUST_LOG", "info,kube=warn")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("failed to start oxcd-operator")?;
        Ok(Self { child, http })
    }

    /// The metrics text.
    pub async fn metrics(&self) -> Result<String> {
        let output = Command::new("curl")
            .args(["-sf", &format!("http://{}/metrics", self.http)])
            .output()
            .await?;
        if !output.status.success() {
            bail!("metrics not served yet");
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Sum of a counter family's samples in the metrics text.
    pub async fn counter(&self, family: &str, filter: &str) -> Result<f64> {
        let text = self.metrics().await?;
        Ok(text
            .lines()
            .filter(|line| line.starts_with(family) && line.contains(filter))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    /// Restarts the operator, waits for `reconciles` successful reconciles and checks that it
    /// wrote nothing: what a steady cluster must cause.
    pub async fn restart_quietly(self, kubeconfig: &str, reconciles: f64) -> Result<Self> {
        self.stop().await?;
        let operator = Self::start(kubeconfig)?;
        eventually(WAIT, "the reconciles after a restart", || async {
            let ok = operator
                .counter("oxcd_operator_reconciles_total", "result=\"ok\"")
                .await
                .unwrap_or(0.0);
            Ok((ok >= reconciles).then_some(()))
        })
        .await?;
        let writes = operator.counter("oxcd_operator_writes_total", "").await?;
        if writes != 0.0 {
            bail!(
                "a restart at steady state wrote:\n{}",
                operator.metrics().await?
            );
        }
        Ok(operator)
    }

    /// Stops the operator.
    pub async fn stop(mut self) -> Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}

/// Creates the namespace [`NS`].
pub async fn create_namespace(client: &Client) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": NS}}))?;
    namespaces
        .create(&PostParams::default(), &namespace)
        .await?;
    Ok(())
}

/// Installs the StoreCluster CRD and waits until it is established.
pub async fn install_crd(client: &Client) -> Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &oxcd_crds::crd())
        .await?;
    eventually(WAIT, "the StoreCluster CRD to be established", || {
        let crds = crds.clone();
        async move {
            let crd = crds.get("storeclusters.oxcd.io").await?;
            let established = crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            Ok(established.then_some(()))
        }
    })
    .await
}

/// A StoreCluster named `name` in [`NS`] with `spec`.
pub fn store_cluster(name: &str, spec: serde_json::Value) -> Result<StoreCluster> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "oxcd.io/v1alpha1",
        "kind": "StoreCluster",
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
    }))?)
}

/// The object named `name`, if it exists.
pub async fn exists<K>(api: &Api<K>, name: &str) -> Result<Option<K>>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    Ok(api.get_opt(name).await?)
}
