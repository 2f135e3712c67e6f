//! The backup CronJob (from `spec.backup`) and the on-demand backup Job (from the
//! `oxcd.io/backup-now` annotation), both from one Job template. The image has no shell, so the
//! pod runs `oxcd` up to three times: the init container `upload` streams a member's snapshot
//! into S3 and writes its JSON result (key, revision, size, SHA-256, HashKV, or the error) to
//! its termination message, where the operator reads it, and to the pod's scratch volume; the
//! restore drill `drill` reads the key there, restores the snapshot into an ephemeral member
//! and checks its revision and HashKV; then the container `prune` applies the retention, so
//! older snapshots are only ever deleted once a newer one has been proven to restore.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{
    CronJob, CronJobSpec, Job, JobSpec, JobTemplateSpec, PodFailurePolicy,
    PodFailurePolicyOnExitCodesRequirement, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec, Volume, VolumeMount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use oxcd_crds::BackupSpec;

use super::pod::{
    container_security_context, env, mount, pod_security_context, scratch_volume, secret_volume,
};
use super::s3::{s3_env, s3_volumes};
use crate::names::BACKUP_NOW_ANNOTATION;
use crate::validate::ValidatedCluster;

/// Name of the init container that uploads the snapshot.
pub const UPLOAD_CONTAINER: &str = "upload";
/// Name of the container that restores the uploaded snapshot into an ephemeral member.
pub const DRILL_CONTAINER: &str = "drill";
/// Name of the container that applies the retention.
pub const PRUNE_CONTAINER: &str = "prune";
/// The upload's result on the scratch volume, where the drill finds the key.
const UPLOAD_RESULT: &str = "/tmp/oxcd-upload.json";
/// Where `oxcd snapshot upload|prune` write their JSON result: the termination message, which
/// the kubelet copies into the pod's status.
pub const RESULT_FILE: &str = "/dev/termination-log";
/// [`crate::names::BACKUP_LABEL`] of Jobs made by the CronJob.
pub const SCHEDULED: &str = "scheduled";
/// [`crate::names::BACKUP_LABEL`] of Jobs made for the annotation.
pub const ON_DEMAND: &str = "on-demand";

const CLIENT_TLS_MOUNT: &str = "/etc/oxcd/client-tls";
/// How long the upload keeps trying to reach a member.
const DIAL_TIMEOUT: &str = "60s";
/// A stuck upload must not block the next ones forever (concurrency is Forbid): an hour
/// streams tens of GiB, far above a store's quota.
const DEADLINE_SECONDS: i64 = 3600;
/// Pod attempts after the first: a member restarting or a node going away mid-upload.
const BACKOFF_LIMIT: i32 = 2;
/// Finished Jobs the CronJob keeps (their pods hold the results the status is read from).
const HISTORY: i32 = 3;
/// A missed schedule (controller down) still runs within this many seconds, else it waits for
/// the next one.
const STARTING_DEADLINE_SECONDS: i64 = 600;
/// On-demand Jobs disappear a day after they finish (the status keeps their result).
const ON_DEMAND_TTL_SECONDS: i32 = 86_400;

/// Key prefix of the cluster's snapshots: the spec's, or `<namespace>/<name>`.
pub fn backup_prefix(cluster: &ValidatedCluster, backup: &BackupSpec) -> String {
    backup
        .s3
        .prefix
        .clone()
        .unwrap_or_else(|| format!("{}/{}", cluster.names.namespace, cluster.names.cluster))
}

/// The `OXCD_S3_*` settings both containers read, and the members to stream from.
fn environment(
    cluster: &ValidatedCluster,
    backup: &BackupSpec,
) -> Vec<k8s_openapi::api::core::v1::EnvVar> {
    let endpoints: Vec<String> = (0..u32::try_from(cluster.spec.replicas).unwrap_or(1))
        .map(|ordinal| {
            cluster
                .names
                .member_client_url(ordinal, cluster.tls_enabled())
        })
        .collect();
    let mut vars = vec![
        env("ETCDCTL_ENDPOINTS", endpoints.join(",")),
        // A new pod may be refused until the NetworkPolicy enforcer admits its address, and a
        // member may be restarting: keep dialing for a while, as etcdctl's blocking dial does.
        env("ETCDCTL_DIAL_TIMEOUT", DIAL_TIMEOUT),
    ];
    if cluster.tls_enabled() {
        vars.push(env("ETCDCTL_CACERT", format!("{CLIENT_TLS_MOUNT}/ca.crt")));
        vars.push(env("ETCDCTL_CERT", format!("{CLIENT_TLS_MOUNT}/tls.crt")));
        vars.push(env("ETCDCTL_KEY", format!("{CLIENT_TLS_MOUNT}/tls.key")));
    }
    vars.extend(s3_env(&backup.s3, backup_prefix(cluster, backup)));
    vars
}

/// Volumes of the pod and the mounts both containers share.
fn volumes(cluster: &ValidatedCluster, backup: &BackupSpec) -> (Vec<Volume>, Vec<VolumeMount>) {
    let mut volumes = vec![scratch_volume("tmp")];
    let mut mounts = vec![mount("tmp", "/tmp", false)];
    if let Some(tls) = &cluster.tls {
        volumes.push(secret_volume("client-tls", &tls.client));
        mounts.push(mount("client-tls", CLIENT_TLS_MOUNT, true));
    }
    let (s3_volumes, s3_mounts) = s3_volumes(&backup.s3);
    volumes.extend(s3_volumes);
    mounts.extend(s3_mounts);
    (volumes, mounts)
}

fn container(
    cluster: &ValidatedCluster,
    backup: &BackupSpec,
    name: &str,
    args: Vec<String>,
    mounts: &[VolumeMount],
) -> Container {
    Container {
        name: name.to_owned(),
        image: Some(cluster.image.clone()),
        args: Some(args),
        env: Some(environment(cluster, backup)),
        volume_mounts: Some(mounts.to_vec()),
        // The result file is the message; when oxcd dies before writing it (bad flags), its
        // last log lines say why.
        termination_message_path: Some(RESULT_FILE.to_owned()),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        security_context: Some(container_security_context()),
        ..Container::default()
    }
}

fn prune_args(backup: &BackupSpec) -> Vec<String> {
    let mut args = vec!["snapshot".to_owned(), "prune".to_owned()];
    if let Some(retention) = &backup.retention {
        if let Some(count) = retention.max_count {
            args.extend(["--max-count".to_owned(), count.to_string()]);
        }
        if let Some(age) = &retention.max_age {
            args.extend(["--max-age".to_owned(), age.clone()]);
        }
    }
    args.extend(["--result-file".to_owned(), RESULT_FILE.to_owned()]);
    args
}

/// The Job every backup runs, labelled `kind` (`scheduled` or `on-demand`).
fn job_spec(cluster: &ValidatedCluster, backup: &BackupSpec, kind: &str) -> JobSpec {
    let (volumes, mounts) = volumes(cluster, backup);
    let upload_args = vec![
        "snapshot".to_owned(),
        "upload".to_owned(),
        "--result-file".to_owned(),
        format!("{RESULT_FILE},{UPLOAD_RESULT}"),
    ];
    let drill_args = [
        "snapshot",
        "drill",
        "--upload-result",
        UPLOAD_RESULT,
        "--work-dir",
        "/tmp",
        "--result-file",
        RESULT_FILE,
    ]
    .map(str::to_owned)
    .to_vec();
    let upload = container(cluster, backup, UPLOAD_CONTAINER, upload_args, &mounts);
    let drill = container(cluster, backup, DRILL_CONTAINER, drill_args, &mounts);
    // Without a retention nothing runs after the drill: it is the pod's main container.
    let (init, main) = match &backup.retention {
        Some(_) => (
            vec![upload, drill],
            container(
                cluster,
                backup,
                PRUNE_CONTAINER,
                prune_args(backup),
                &mounts,
            ),
        ),
        None => (vec![upload], drill),
    };
    // A failed drill or prune must not upload the snapshot again: the Job fails at once, and
    // the status reports the uploaded snapshot and the drill's or the retention's error.
    let fail_job_on = |container: &str| PodFailurePolicyRule {
        action: "FailJob".to_owned(),
        on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
            container_name: Some(container.to_owned()),
            operator: "NotIn".to_owned(),
            values: vec![0],
        }),
        ..PodFailurePolicyRule::default()
    };
    let mut rules = vec![fail_job_on(DRILL_CONTAINER)];
    if backup.retention.is_some() {
        rules.push(fail_job_on(PRUNE_CONTAINER));
    }
    JobSpec {
        backoff_limit: Some(BACKOFF_LIMIT),
        active_deadline_seconds: Some(DEADLINE_SECONDS),
        pod_failure_policy: Some(PodFailurePolicy { rules }),
        template: PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(cluster.names.backup_labels(kind)),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                restart_policy: Some("Never".to_owned()),
                service_account_name: Some(cluster.names.statefulset()),
                automount_service_account_token: Some(false),
                init_containers: Some(init),
                containers: vec![main],
                volumes: Some(volumes),
                security_context: Some(pod_security_context()),
                ..PodSpec::default()
            }),
        },
        ..JobSpec::default()
    }
}

/// The CronJob of `spec.backup`, or `None` without one.
pub fn build_backup_cronjob(cluster: &ValidatedCluster) -> Option<CronJob> {
    let backup = cluster.spec.backup.as_ref()?;
    let mut metadata = super::child_meta(cluster, cluster.names.backup_cronjob());
    metadata.labels = Some(cluster.names.backup_labels(SCHEDULED));
    Some(CronJob {
        metadata,
        spec: Some(CronJobSpec {
            schedule: backup.schedule.trim().to_owned(),
            time_zone: backup.time_zone.clone(),
            concurrency_policy: Some("Forbid".to_owned()),
            starting_deadline_seconds: Some(STARTING_DEADLINE_SECONDS),
            successful_jobs_history_limit: Some(HISTORY),
            failed_jobs_history_limit: Some(HISTORY),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(cluster.names.backup_labels(SCHEDULED)),
                    ..ObjectMeta::default()
                }),
                spec: Some(job_spec(cluster, backup, SCHEDULED)),
            },
            ..CronJobSpec::default()
        }),
        ..CronJob::default()
    })
}

/// The Job of the on-demand backup asked for with `token`, or `None` without `spec.backup`.
pub fn build_backup_job(cluster: &ValidatedCluster, token: &str) -> Option<Job> {
    let backup = cluster.spec.backup.as_ref()?;
    let mut metadata = super::child_meta(cluster, cluster.names.backup_job(token));
    metadata.labels = Some(cluster.names.backup_labels(ON_DEMAND));
    metadata.annotations = Some(BTreeMap::from([(
        BACKUP_NOW_ANNOTATION.to_owned(),
        token.to_owned(),
    )]));
    let mut spec = job_spec(cluster, backup, ON_DEMAND);
    spec.ttl_seconds_after_finished = Some(ON_DEMAND_TTL_SECONDS);
    Some(Job {
        metadata,
        spec: Some(spec),
        ..Job::default()
    })
}

#[cfg(test)]
#[path = "backup_tests.rs"]
mod tests;
