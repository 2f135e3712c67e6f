//! The restore of `spec.bootstrap.restore`, in two parts. First the Job `<name>-restore-source`
//! (before any member exists) runs `oxcd snapshot download`: it resolves `latest` (or the key),
//! downloads the object and verifies its size, SHA-256 and trailer, and writes the key,
//! revision, size and SHA-256 (or the error) as its termination message; the operator records
//! them as `status.restoredFrom`. Then every member pod has the init container `restore`, which
//! restores exactly that key, but only into the empty data dir of a member that bootstraps a
//! new cluster (`--skip-if-not-empty`, `--initial-cluster-state`): the first member. Members
//! added later join it and get the data from their leader; restarts leave data alone.

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvFromSource, EnvVar, PodSpec, PodTemplateSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use oxcd_crds::S3RestoreSource;

use super::backup::RESULT_FILE;
use super::pod::{container_security_context, mount, pod_security_context, scratch_volume};
use super::s3::{s3_env, s3_volumes};
use crate::validate::ValidatedCluster;

/// The container of the restore-source Job whose termination message is the result.
pub const SOURCE_CONTAINER: &str = "download";
/// The init container of member pods that restores the pinned snapshot.
pub const RESTORE_CONTAINER: &str = "restore";
/// Where the Job puts the snapshot it verifies (scratch space, dropped with the pod).
const SNAPSHOT_FILE: &str = "/tmp/snapshot";
/// A download stuck for an hour (tens of GiB) is a failure to report, not to wait on.
const DEADLINE_SECONDS: i64 = 3600;
/// Pod attempts after the first (each already retries S3 requests with backoff).
const BACKOFF_LIMIT: i32 = 2;
/// The Job goes a day after it finishes: its result is in the status by then, and a failed one
/// stays long enough to be read (deleting it retries at once).
const TTL_SECONDS: i32 = 86_400;

/// The declared restore source, if any.
pub fn restore_source(cluster: &ValidatedCluster) -> Option<&S3RestoreSource> {
    Some(&cluster.spec.bootstrap.as_ref()?.restore.source.s3)
}

/// Key prefix the source's `latest` looks under: the spec's, or `<namespace>/<name>` (where a
/// StoreCluster of the same name and namespace put its backups).
pub fn restore_prefix(cluster: &ValidatedCluster, source: &S3RestoreSource) -> String {
    source
        .location
        .prefix
        .clone()
        .unwrap_or_else(|| format!("{}/{}", cluster.names.namespace, cluster.names.cluster))
}

/// The Job that pins the snapshot of `spec.bootstrap.restore`; `None` without one.
pub fn build_restore_source_job(cluster: &ValidatedCluster) -> Option<Job> {
    let source = restore_source(cluster)?;
    let mut args = vec!["snapshot".to_owned(), "download".to_owned()];
    match &source.key {
        Some(key) => args.extend(["--s3-key".to_owned(), key.clone()]),
        None => args.push("--s3-latest".to_owned()),
    }
    args.extend([
        "--result-file".to_owned(),
        RESULT_FILE.to_owned(),
        SNAPSHOT_FILE.to_owned(),
    ]);
    let (mut volumes, mut mounts) = s3_volumes(&source.location);
    volumes.push(scratch_volume("tmp"));
    mounts.push(mount("tmp", "/tmp", false));
    let container = Container {
        name: SOURCE_CONTAINER.to_owned(),
        image: Some(cluster.image.clone()),
        args: Some(args),
        env: Some(s3_env(&source.location, restore_prefix(cluster, source))),
        volume_mounts: Some(mounts),
        // The result file is the message; when oxcd dies before writing it, its last log lines.
        termination_message_path: Some(RESULT_FILE.to_owned()),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        security_context: Some(container_security_context()),
        ..Container::default()
    };
    let mut metadata = super::child_meta(cluster, cluster.names.restore_job());
    metadata.labels = Some(cluster.names.restore_labels());
    Some(Job {
        metadata,
        spec: Some(JobSpec {
            backoff_limit: Some(BACKOFF_LIMIT),
            active_deadline_seconds: Some(DEADLINE_SECONDS),
            ttl_seconds_after_finished: Some(TTL_SECONDS),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(cluster.names.restore_labels()),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".to_owned()),
                    service_account_name: Some(cluster.names.statefulset()),
                    automount_service_account_token: Some(false),
                    containers: vec![container],
                    volumes: Some(volumes),
                    security_context: Some(pod_security_context()),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        ..Job::default()
    })
}

/// The member pods' init container that restores the pinned snapshot, with the volumes it
/// needs beyond the member's; `None` unless a restore is declared and pinned. It reads the
/// member's own flags (`env`, `env_from`: name, peer URLs, token, bootstrap ConfigMap), so the
/// restored identity is exactly the one the member starts with.
pub fn build_restore_init_container(
    cluster: &ValidatedCluster,
    env: Vec<EnvVar>,
    env_from: Vec<EnvFromSource>,
    member_mounts: Vec<VolumeMount>,
    data_dir: &str,
    download_dir: &str,
) -> Option<(Container, Vec<Volume>)> {
    let source = restore_source(cluster)?;
    let pinned = cluster.restored_from.as_ref()?;
    let (volumes, s3_mounts) = s3_volumes(&source.location);
    let mut vars = env;
    vars.extend(s3_env(&source.location, restore_prefix(cluster, source)));
    let flag = |name: &str, value: &str| [format!("--{name}"), value.to_owned()];
    let mut args = vec!["snapshot".to_owned(), "restore".to_owned()];
    args.extend(flag("s3-key", &pinned.key));
    args.extend(flag("s3-download-dir", download_dir));
    args.extend(flag("data-dir", data_dir));
    args.extend(flag("name", "$(ETCD_NAME)"));
    args.extend(flag("initial-cluster", "$(ETCD_INITIAL_CLUSTER)"));
    args.extend(flag(
        "initial-cluster-token",
        "$(ETCD_INITIAL_CLUSTER_TOKEN)",
    ));
    args.extend(flag(
        "initial-advertise-peer-urls",
        "$(ETCD_INITIAL_ADVERTISE_PEER_URLS)",
    ));
    args.extend(flag(
        "initial-cluster-state",
        "$(ETCD_INITIAL_CLUSTER_STATE)",
    ));
    args.push("--skip-if-not-empty".to_owned());
    let mut mounts = member_mounts;
    mounts.extend(s3_mounts);
    let container = Container {
        name: RESTORE_CONTAINER.to_owned(),
        image: Some(cluster.image.clone()),
        args: Some(args),
        env: Some(vars),
        env_from: Some(env_from),
        volume_mounts: Some(mounts),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        security_context: Some(container_security_context()),
        ..Container::default()
    };
    Some((container, volumes))
}

#[cfg(test)]
#[path = "restore_tests.rs"]
mod tests;
