//! Backups against a real API server (the local control plane of `e2e/local/up`: real
//! kube-apiserver, controller-manager with its CronJob and Job controllers, kwok nodes whose
//! pods "complete" without running). It proves what needs no S3: `spec.backup` becomes a
//! CronJob with the right content, the NetworkPolicy admits the backup pods, the annotation
//! makes exactly one Job whose completion lands in `status.backup` and in an Event, a steady
//! cluster writes nothing after a restart, a bad schedule is reported, and removing
//! `spec.backup` deletes the CronJob. Uploads into a real S3 are the kind suite's and the server's tests' job.

use anyhow::{Context as _, Result};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use oxcd_crds::{Phase, StoreCluster};
use oxcd_k8s_suite::{ControlPlane, Storage, eventually};

mod common;

use common::{NS, Operator, WAIT, create_namespace, exists, install_crd, store_cluster};

const TOKEN: &str = "2026-11-24T10:00";

fn backup_spec(schedule: &str) -> serde_json::Value {
    serde_json::json!({
        "schedule": schedule,
        "s3": {
            "bucket": "snapshots",
            "endpoint": "http://s3.storage.svc:9000",
            "forcePathStyle": true,
            "credentialsSecretRef": {"name": "s3-creds"},
        },
        "retention": {"maxCount": 3},
    })
}

async fn merge(clusters: &Api<StoreCluster>, patch: serde_json::Value) -> Result<()> {
    clusters
        .patch("demo", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

async fn on_demand_jobs(jobs: &Api<Job>) -> Result<Vec<Job>> {
    let selector = "app.kubernetes.io/instance=demo,oxcd.io/backup=on-demand";
    Ok(jobs
        .list(&ListParams::default().labels(selector))
        .await?
        .items)
}

#[tokio::test]
async fn backups_become_a_cronjob_an_on_demand_job_and_a_status_and_go_with_the_spec() -> Result<()>
{
    let plane = ControlPlane::up(Storage::Oxcd, &[]).await?;
    let client = plane.client();
    let kubeconfig = plane.fact("KUBECONFIG")?.to_owned();
    install_crd(&client).await?;
    create_namespace(&client).await?;
    let operator = Operator::start(&kubeconfig)?;
    let clusters: Api<StoreCluster> = Api::namespaced(client.clone(), NS);
    // A schedule that does not come round during the test.
    let spec = serde_json::json!({"version": "0.1.0", "backup": backup_spec("0 0 1 1 *")});
    clusters
        .create(&PostParams::default(), &store_cluster("demo", spec)?)
        .await?;

    // The CronJob, as the API server stored it.
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), NS);
    let cronjob = eventually(WAIT, "the backup CronJob", || {
        exists(&cronjobs, "demo-backup")
    })
    .await?;
    let owner = cronjob
        .metadata
        .owner_references
        .clone()
        .unwrap_or_default();
    assert_eq!(owner.first().map(|o| o.kind.as_str()), Some("StoreCluster"));
    let spec = cronjob.spec.clone().context("no CronJob spec")?;
    assert_eq!(spec.schedule, "0 0 1 1 *");
    assert_eq!(spec.concurrency_policy.as_deref(), Some("Forbid"));
    let pod = spec
        .job_template
        .spec
        .and_then(|job| job.template.spec)
        .context("no pod spec")?;
    let init = pod.init_containers.unwrap_or_default();
    let steps: Vec<Vec<String>> = init
        .iter()
        .map(|c| c.args.clone().unwrap_or_default()[..2].to_vec())
        .collect();
    assert_eq!(steps, [["snapshot", "upload"], ["snapshot", "drill"]]);
    let prune = pod.containers.first().context("no prune container")?;
    assert_eq!(
        prune.args.clone().unwrap_or_default()[..4],
        ["snapshot", "prune", "--max-count", "3"]
    );
    let secrets: Vec<String> = pod
        .volumes
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| v.secret.and_then(|s| s.secret_name))
        .collect();
    assert_eq!(secrets, ["demo-client-tls", "s3-creds"]);
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), NS);
    let policy = eventually(WAIT, "the NetworkPolicy", || exists(&policies, "demo")).await?;
    let text = serde_json::to_string(&policy.spec)?;
    assert!(
        text.contains(r#""app.kubernetes.io/name":"oxcd-backup""#),
        "{text}"
    );

    // The annotation makes one Job; kwok completes its pod, the status records it.
    let annotate = serde_json::json!({"metadata": {"annotations": {"oxcd.io/backup-now": TOKEN}}});
    merge(&clusters, annotate.clone()).await?;
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);
    let job = eventually(WAIT, "the on-demand Job", || async {
        Ok(on_demand_jobs(&jobs).await?.into_iter().next())
    })
    .await?;
    let job_name = job.metadata.name.clone().context("no Job name")?;
    assert!(job_name.starts_with("demo-backup-"), "{job_name}");
    let backup = eventually(WAIT, "the on-demand backup in the status", || async {
        let status = clusters.get("demo").await?.status.and_then(|s| s.backup);
        Ok(status.filter(|b| b.last_job.as_deref() == Some(job_name.as_str())))
    })
    .await?;
    assert_eq!(backup.on_demand_token.as_deref(), Some(TOKEN));
    assert_eq!(backup.consecutive_failures, 0);
    assert_eq!(backup.last_error, None);
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    eventually(WAIT, "the BackupSucceeded event", || async {
        let list = events
            .list(&ListParams::default().fields("reason=BackupSucceeded"))
            .await?;
        Ok(list.items.into_iter().find(|event| {
            event
                .message
                .as_deref()
                .is_some_and(|m| m.contains(&job_name))
        }))
    })
    .await?;
    merge(&clusters, annotate).await?;
    assert_eq!(on_demand_jobs(&jobs).await?.len(), 1);

    // Steady state: a restarted operator writes nothing (no second Job, no status change).
    let operator = operator.restart_quietly(&kubeconfig, 2.0).await?;
    assert_eq!(on_demand_jobs(&jobs).await?.len(), 1);

    // A schedule Kubernetes would refuse is reported on the StoreCluster.
    merge(
        &clusters,
        serde_json::json!({"spec": {"backup": {"schedule": "0 0 L * *"}}}),
    )
    .await?;
    let invalid = eventually(WAIT, "the invalid schedule in the status", || async {
        let status = clusters.get("demo").await?.status;
        Ok(status.filter(|s| s.phase == Some(Phase::Invalid)))
    })
    .await?;
    let degraded = invalid
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .context("no Degraded")?;
    assert!(
        degraded.message.contains("spec.backup.schedule"),
        "{}",
        degraded.message
    );

    // Removing spec.backup deletes the CronJob.
    merge(&clusters, serde_json::json!({"spec": {"backup": null}})).await?;
    eventually(WAIT, "the CronJob to go", || async {
        Ok(cronjobs
            .get_opt("demo-backup")
            .await?
            .is_none()
            .then_some(()))
    })
    .await?;
    operator.stop().await?;
    Ok(())
}
