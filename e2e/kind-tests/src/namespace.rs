//! Temporary namespaces: each test works in a namespace of its own, deleted when the test is done,
//! whether it passed or failed.

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::{Api, Client};

/// Label on every namespace the harness makes, so that strays are easy to find and remove.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "oxcd-kind-tests");

/// How long the deletion of a temporary namespace may take before the test fails.
const DELETE_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `test` with a client and the name of a new namespace `oxcd-e2e-<prefix>-<random>`, then
/// deletes the namespace and waits until it is gone. The test's error wins over a deletion error.
pub async fn with_temp_ns<T, F, Fut>(client: &Client, prefix: &str, test: F) -> anyhow::Result<T>
where
    F: FnOnce(Client, String) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            generate_name: Some(format!("oxcd-e2e-{prefix}-")),
            labels: Some([(MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned())].into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    let created = namespaces
        .create(&PostParams::default(), &ns)
        .await
        .context("failed to create a temporary namespace")?;
    let name = created
        .metadata
        .name
        .context("the API server named no temporary namespace")?;
    println!("namespace {name}");

    let outcome = test(client.clone(), name.clone()).await;
    let deleted = delete_namespace(&namespaces, &name).await;
    match (outcome, deleted) {
        (Ok(value), Ok(())) => Ok(value),
        (Ok(_), Err(e)) => Err(e),
        (Err(e), Ok(())) => Err(e),
        (Err(e), Err(cleanup)) => Err(e.context(format!("(and {cleanup:#})"))),
    }
}

async fn delete_namespace(namespaces: &Api<Namespace>, name: &str) -> anyhow::Result<()> {
    namespaces
        .delete(name, &DeleteParams::foreground())
        .await
        .with_context(|| format!("failed to delete namespace {name}"))?;
    let deadline = tokio::time::Instant::now() + DELETE_TIMEOUT;
    while namespaces.get_opt(name).await?.is_some() {
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("namespace {name} still exists {DELETE_TIMEOUT:?} after its deletion");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}
