//! The test's access to the control plane: helm and kubectl with its kubeconfig, and
//! SubjectAccessReviews for what a ServiceAccount may do.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Api;
use kube::api::PostParams;
use oxcd_k8s_suite::{ControlPlane, workspace_root};

/// What every check needs: a client, and helm and kubectl aimed at the control plane.
pub(crate) struct Cx {
    pub(crate) client: kube::Client,
    kubeconfig: PathBuf,
    bin_dir: PathBuf,
    /// helm's cache, config and data, inside the control plane's state dir (removed with it).
    helm_home: PathBuf,
}

impl Cx {
    pub(crate) fn new(plane: &ControlPlane) -> Result<Self> {
        let bin_dir = std::env::var_os("OXCD_BIN_DIR")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("OXCD_CACHE").map(|c| PathBuf::from(c).join("bin")))
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/oxcd/bin")))
            .context("neither OXCD_BIN_DIR, OXCD_CACHE nor HOME is set")?;
        for tool in ["helm", "kubectl"] {
            ensure!(
                bin_dir.join(tool).is_file(),
                "no {tool} in {} (run e2e/toolchain/install)",
                bin_dir.display()
            );
        }
        let kubeconfig = PathBuf::from(plane.fact("KUBECONFIG")?);
        let helm_home = kubeconfig
            .parent()
            .context("the kubeconfig has no parent dir")?
            .join("helm");
        Ok(Self {
            client: plane.client(),
            kubeconfig,
            bin_dir,
            helm_home,
        })
    }

    /// Runs helm or kubectl (with `stdin` as its input), returning (success, stdout, stderr).
    pub(crate) async fn run(
        &self,
        tool: &str,
        args: &[&str],
        stdin: &str,
    ) -> Result<(bool, String, String)> {
        use tokio::io::AsyncWriteExt;
        let mut child = tokio::process::Command::new(self.bin_dir.join(tool))
            .args(args)
            .current_dir(workspace_root())
            .env("KUBECONFIG", &self.kubeconfig)
            // helm keeps its own state out of the user's home.
            .env("HELM_CACHE_HOME", self.helm_home.join("cache"))
            .env("HELM_CONFIG_HOME", self.helm_home.join("config"))
            .env("HELM_DATA_HOME", self.helm_home.join("data"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("failed to start {tool}"))?;
        if let Some(mut input) = child.stdin.take() {
            input.write_all(stdin.as_bytes()).await?;
        }
        let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
            .await
            .with_context(|| format!("{tool} {args:?} did not finish in 120 s"))??;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    /// Runs helm or kubectl and fails unless it succeeds; returns stdout.
    pub(crate) async fn ok(&self, tool: &str, args: &[&str]) -> Result<String> {
        self.ok_with_input(tool, args, "").await
    }

    pub(crate) async fn ok_with_input(
        &self,
        tool: &str,
        args: &[&str],
        stdin: &str,
    ) -> Result<String> {
        let (success, stdout, stderr) = self.run(tool, args, stdin).await?;
        ensure!(success, "{tool} {args:?} failed:\n{stderr}{stdout}");
        Ok(stdout)
    }

    /// Runs kubectl expecting a refusal whose message contains `message`.
    pub(crate) async fn refused(&self, args: &[&str], stdin: &str, message: &str) -> Result<()> {
        let (success, stdout, stderr) = self.run("kubectl", args, stdin).await?;
        ensure!(
            !success,
            "kubectl {args:?} succeeded, expected {message:?}: {stdout}"
        );
        ensure!(
            stderr.contains(message),
            "kubectl {args:?} failed without {message:?}:\n{stderr}"
        );
        Ok(())
    }

    /// Whether the API server allows `access` to the ServiceAccount `namespace/name`
    /// (a SubjectAccessReview: exactly the group and resource given, no discovery involved).
    pub(crate) async fn allowed(
        &self,
        (namespace, name): (&str, &str),
        access: &Access<'_>,
    ) -> Result<bool> {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(format!("system:serviceaccount:{namespace}:{name}")),
                groups: Some(vec![
                    "system:serviceaccounts".to_owned(),
                    format!("system:serviceaccounts:{namespace}"),
                    "system:authenticated".to_owned(),
                ]),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(access.verb.to_owned()),
                    group: Some(access.group.to_owned()),
                    resource: Some(access.resource.to_owned()),
                    subresource: access.subresource.map(str::to_owned),
                    namespace: access.namespace.map(str::to_owned),
                    name: access.name.map(str::to_owned),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let reviews: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let answer = reviews.create(&PostParams::default(), &review).await?;
        Ok(answer.status.is_some_and(|s| s.allowed))
    }

    /// Fails unless each access is allowed (`true`) or denied (`false`) as listed.
    pub(crate) async fn expect_access(
        &self,
        account: (&str, &str),
        table: &[(Access<'_>, bool)],
    ) -> Result<()> {
        let mut wrong = Vec::new();
        for (access, expected) in table {
            if self.allowed(account, access).await? != *expected {
                wrong.push(format!("{access:?}: expected allowed={expected}"));
            }
        }
        ensure!(
            wrong.is_empty(),
            "RBAC of {account:?}:\n{}",
            wrong.join("\n")
        );
        Ok(())
    }
}

/// One request a ServiceAccount may or may not make.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Access<'a> {
    pub(crate) verb: &'a str,
    pub(crate) group: &'a str,
    pub(crate) resource: &'a str,
    pub(crate) subresource: Option<&'a str>,
    pub(crate) namespace: Option<&'a str>,
    pub(crate) name: Option<&'a str>,
}

/// `verb` on `group`/`resource` in `namespace` (None: cluster-wide or all namespaces).
pub(crate) fn access<'a>(
    verb: &'a str,
    group: &'a str,
    resource: &'a str,
    namespace: Option<&'a str>,
) -> Access<'a> {
    Access {
        verb,
        group,
        resource,
        namespace,
        ..Access::default()
    }
}
